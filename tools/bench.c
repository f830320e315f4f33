// SPDX-License-Identifier: MIT
/*
 * gmem bench - the benchmark suite: each case of docs/PERFORMANCE.md run
 * several times, median and min..max, a baseline measured in the same run,
 * the ratio and the target of the design, met or not.
 *
 * Times come from CLOCK_MONOTONIC. Nothing here asserts on a time: a missed
 * target is a line of output, not a failure. A failed library call ends its
 * case with an "error:" row and makes the exit status 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "gmem.h"
#include "cli.h"

#define KiB		(1ULL << 10)
#define MiB		(1ULL << 20)
#define GiB		(1ULL << 30)
#define TiB		(1ULL << 40)
#define PAGE		GMEM_PAGE_SIZE
#define MAX_RUNS	5

/* ------------------------------------------------------------ options */

static bool quick, json;
static int nruns;
static bool failed;

/* ------------------------------------------------------------ timing */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

struct stat3 {
	double med, lo, hi;
	bool valid;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static struct stat3 summarize(const double *v, int n)
{
	double s[MAX_RUNS * 4];
	struct stat3 r = { 0 };

	if (n <= 0)
		return r;
	memcpy(s, v, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_double);
	r.med = n & 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	r.lo = s[0];
	r.hi = s[n - 1];
	r.valid = true;
	return r;
}

static struct stat3 single(double v)
{
	struct stat3 r = { v, v, v, true };

	return r;
}

/* xorshift64*: fixed seeds, so every run converts and faults the same pages. */
static uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* ------------------------------------------------------------ rows */

enum met { MET_NA = -1, MET_NO = 0, MET_YES = 1 };

struct row {
	const char *id;		/* "1a" */
	const char *name;	/* what is measured */
	const char *unit;
	struct stat3 m;		/* measured */
	int runs;
	const char *base_name;
	struct stat3 b;		/* baseline, if valid */
	double ratio;		/* NAN if none */
	const char *ratio_of;	/* what the ratio divides */
	const char *target;	/* "-" if the design has none */
	enum met met;
	char skip[200];		/* non-empty: the row was not measured */
	char note[200];
};

static void fmt_num(char *buf, size_t len, double v)
{
	if (isnan(v))
		snprintf(buf, len, "-");
	else if (fabs(v) >= 1e7)
		snprintf(buf, len, "%.3g", v);
	else if (fabs(v) >= 100)
		snprintf(buf, len, "%.0f", v);
	else if (fabs(v) >= 10)
		snprintf(buf, len, "%.1f", v);
	else
		snprintf(buf, len, "%.2f", v);
}

static void fmt_stat(char *buf, size_t len, struct stat3 s, const char *unit,
		     bool spread)
{
	char a[32], b[32], c[32];

	if (!s.valid) {
		snprintf(buf, len, "-");
		return;
	}
	fmt_num(a, sizeof(a), s.med);
	fmt_num(b, sizeof(b), s.lo);
	fmt_num(c, sizeof(c), s.hi);
	if (spread && s.lo != s.hi)
		snprintf(buf, len, "%s %s [%s..%s]", a, unit, b, c);
	else
		snprintf(buf, len, "%s %s", a, unit);
}

static void json_str(const char *key, const char *s, bool comma)
{
	printf("\"%s\":", key);
	if (!s) {
		printf("null");
	} else {
		putchar('"');
		for (; *s; s++) {
			if (*s == '"' || *s == '\\')
				printf("\\%c", *s);
			else if ((unsigned char)*s < 0x20)
				printf("\\u%04x", *s);
			else
				putchar(*s);
		}
		putchar('"');
	}
	if (comma)
		putchar(',');
}

static void json_num(const char *key, double v, bool ok, bool comma)
{
	if (ok && !isnan(v) && !isinf(v))
		printf("\"%s\":%.6g", key, v);
	else
		printf("\"%s\":null", key);
	if (comma)
		putchar(',');
}

static void table_header(void)
{
	printf("%-4s %-44s %-32s %-36s %-8s %-14s %s\n", "case", "what",
	       "measured: median [min..max]", "baseline (same run)", "ratio",
	       "target", "met?");
	printf("%.*s\n", 150, "--------------------------------------------------"
	       "--------------------------------------------------"
	       "--------------------------------------------------");
}

static void emit(const struct row *r)
{
	char m[160], b[224], bs[160], ra[32];
	const char *met = r->met == MET_YES ? "yes" : r->met == MET_NO ? "NO" : "-";

	if (json) {
		putchar('{');
		json_str("case", r->id, true);
		json_str("name", r->name, true);
		json_str("unit", r->skip[0] ? NULL : r->unit, true);
		json_num("median", r->m.med, r->m.valid && !r->skip[0], true);
		json_num("min", r->m.lo, r->m.valid && !r->skip[0], true);
		json_num("max", r->m.hi, r->m.valid && !r->skip[0], true);
		json_num("runs", r->runs, !r->skip[0], true);
		json_str("baseline", r->b.valid ? r->base_name : NULL, true);
		json_num("baseline_median", r->b.med, r->b.valid, true);
		json_num("baseline_min", r->b.lo, r->b.valid, true);
		json_num("baseline_max", r->b.hi, r->b.valid, true);
		json_num("ratio", r->ratio, true, true);
		json_str("ratio_of", isnan(r->ratio) ? NULL : r->ratio_of, true);
		json_str("target", r->target, true);
		printf("\"met\":%s,", r->met == MET_YES ? "true" :
		       r->met == MET_NO ? "false" : "null");
		json_str("skipped", r->skip[0] ? r->skip : NULL, true);
		json_str("note", r->note[0] ? r->note : NULL, false);
		printf("}\n");
		fflush(stdout);
		return;
	}
	if (r->skip[0]) {
		printf("%-4s %-44s %s\n", r->id, r->name, r->skip);
		fflush(stdout);
		return;
	}
	fmt_stat(m, sizeof(m), r->m, r->unit, true);
	if (r->b.valid) {
		fmt_stat(bs, sizeof(bs), r->b, r->unit, false);
		snprintf(b, sizeof(b), "%s %s", r->base_name, bs);
	} else {
		snprintf(b, sizeof(b), "-");
	}
	if (isnan(r->ratio))
		snprintf(ra, sizeof(ra), "-");
	else
		snprintf(ra, sizeof(ra), r->ratio < 0.01 ? "%.4fx" : "%.2fx", r->ratio);
	printf("%-4s %-44s %-32s %-36s %-8s %-14s %s\n", r->id, r->name, m, b, ra,
	       r->target, met);
	if (r->note[0])
		printf("     %s\n", r->note);
	fflush(stdout);
}

static struct row row_new(const char *id, const char *name, const char *unit)
{
	struct row r = { .id = id, .name = name, .unit = unit, .runs = nruns,
			 .ratio = NAN, .target = "-", .met = MET_NA };

	return r;
}

/* A row for a case that a failed call ended; the exit status becomes 1. */
static void emit_error(const char *id, const char *name, const char *call, int err)
{
	struct row r = row_new(id, name, "");

	snprintf(r.skip, sizeof(r.skip), "error: %s = %d (%s): %s", call, err,
		 strerror(-err), gmem_last_error());
	emit(&r);
	failed = true;
}

/* Jump to "out" with an error row when a gmem call fails. */
#define TRY(id, name, call) do {					\
	long long _rc = (call);						\
	if (_rc < 0) {							\
		emit_error(id, name, #call, (int)_rc);			\
		goto out;						\
	}								\
} while (0)

/* ------------------------------------------------------------ environment */

struct env {
	int pool, vm;
};

static int env_open(struct env *e, uint64_t capacity, const char *arch)
{
	e->pool = gmem_pool_create(capacity);
	e->vm = -1;
	if (e->pool < 0)
		return e->pool;
	e->vm = gmem_vm_create(e->pool, arch, 0);
	return e->vm < 0 ? e->vm : 0;
}

static void env_close(struct env *e)
{
	if (e->vm >= 0)
		gmem_vm_destroy(e->vm);
	if (e->pool >= 0)
		gmem_pool_destroy(e->pool);
	e->vm = e->pool = -1;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		gmem_close(*fd);
	*fd = -1;
}

/* ------------------------------------------------- 1. metadata-only conversion */

static double time_convert_pairs(int fd, uint64_t off, int iters, int *err)
{
	uint64_t t0 = now_ns();
	int i, rc;

	for (i = 0; i < iters; i++) {
		rc = gmem_set_attributes(fd, off, PAGE, 0, 0, NULL);
		if (!rc)
			rc = gmem_set_attributes(fd, off, PAGE, GMEM_ATTR_PRIVATE, 0, NULL);
		if (rc) {
			*err = rc;
			return 0;
		}
	}
	return (double)(now_ns() - t0) / iters;
}

static void case1(void)
{
	const char *n1 = "convert 4K <->, 1 GiB file, no host mapping";
	const char *n2 = "convert 4K <->, 1 GiB file, host-mapped";
	double conv[MAX_RUNS], base[MAX_RUNS], pair[MAX_RUNS], mp[MAX_RUNS];
	int iters = quick ? 20000 : 100000, miters = quick ? 5000 : 20000;
	struct env e = { -1, -1 };
	int fd = -1, fd2 = -1, mfd = -1, r, i, err = 0;
	uint64_t off = GiB / 2, attr;
	void *map = NULL;
	uint8_t *mem = MAP_FAILED;
	struct row row;

	TRY("1a", n1, env_open(&e, 0, "sw"));
	TRY("1a", n1, fd = gmem_create(e.vm, GiB, 0));
	TRY("1a", n1, gmem_bind(e.vm, 0, 0, GiB, fd, 0));
	/* The page exists and is mapped in stage 2 before the first conversion. */
	TRY("1a", n1, gmem_vm_fault(e.vm, off, GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE,
				    NULL, NULL));
	for (r = 0; r < nruns; r++) {
		conv[r] = time_convert_pairs(fd, off, iters, &err) / 2;
		TRY("1a", n1, err);
		uint64_t t0 = now_ns();
		for (i = 0; i < iters; i++)
			TRY("1a", n1, gmem_get_attributes(fd, off, &attr, NULL));
		base[r] = (double)(now_ns() - t0) / iters;
	}
	row = row_new("1a", n1, "ns");
	row.m = summarize(conv, nruns);
	row.base_name = "get_attributes";
	row.b = summarize(base, nruns);
	row.ratio = row.m.med / row.b.med;
	row.ratio_of = "conversion / get_attributes";
	row.target = "< 1000 ns";
	row.met = row.m.med < 1000 ? MET_YES : MET_NO;
	snprintf(row.note, sizeof(row.note),
		 "ns per conversion (one gmem_set_attributes call), sw VM, file bound, %d pairs per run",
		 iters);
	emit(&row);

	/* The same with a host mapping of the whole file, vs a bare mprotect pair. */
	TRY("1b", n2, fd2 = gmem_create(e.vm, GiB, GMEM_FLAG_MMAP));
	TRY("1b", n2, gmem_bind(e.vm, 1, GiB, GiB, fd2, 0));
	TRY("1b", n2, gmem_mmap(fd2, 0, GiB, PROT_READ | PROT_WRITE, MAP_SHARED, &map));
	TRY("1b", n2, gmem_set_attributes(fd2, off, PAGE, 0, 0, NULL));
	((volatile uint8_t *)map)[off] = 1;
	mfd = memfd_create("gmem-bench", 0);
	if (mfd < 0 || ftruncate(mfd, GiB) < 0) {
		emit_error("1b", n2, "memfd_create/ftruncate", -errno);
		goto out;
	}
	mem = mmap(NULL, GiB, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (mem == MAP_FAILED) {
		emit_error("1b", n2, "mmap", -errno);
		goto out;
	}
	mem[off] = 1;
	for (r = 0; r < nruns; r++) {
		/* private then shared: one revocation and one restore of the page */
		uint64_t t0 = now_ns();
		for (i = 0; i < miters; i++) {
			TRY("1b", n2, gmem_set_attributes(fd2, off, PAGE, GMEM_ATTR_PRIVATE,
							  0, NULL));
			TRY("1b", n2, gmem_set_attributes(fd2, off, PAGE, 0, 0, NULL));
		}
		pair[r] = (double)(now_ns() - t0) / miters;
		t0 = now_ns();
		for (i = 0; i < miters; i++) {
			if (mprotect(mem + off, PAGE, PROT_NONE) ||
			    mprotect(mem + off, PAGE, PROT_READ | PROT_WRITE)) {
				emit_error("1b", n2, "mprotect", -errno);
				goto out;
			}
		}
		mp[r] = (double)(now_ns() - t0) / miters;
	}
	row = row_new("1b", n2, "ns");
	row.m = summarize(pair, nruns);
	row.base_name = "mprotect pair";
	row.b = summarize(mp, nruns);
	row.ratio = row.m.med / row.b.med;
	row.ratio_of = "conversion pair / mprotect NONE+RW pair";
	row.target = "<= 1.20x";
	row.met = row.ratio <= 1.2 ? MET_YES : MET_NO;
	snprintf(row.note, sizeof(row.note),
		 "ns per pair (to private + to shared) vs mprotect PROT_NONE + RW of 4 KiB in a 1 GiB MAP_SHARED memfd; %d pairs per run",
		 miters);
	emit(&row);
out:
	if (mem != MAP_FAILED)
		munmap(mem, GiB);
	if (mfd >= 0)
		close(mfd);
	if (map)
		gmem_munmap(map, GiB);
	close_fd(&fd2);
	close_fd(&fd);
	env_close(&e);
}

/* --------------------------------------------- 2. destructive conversion */

static int fault_all(int vm, uint64_t gpa, uint64_t len, unsigned int flags)
{
	uint64_t a;
	int rc;

	for (a = gpa; a < gpa + len; a += PAGE) {
		rc = gmem_vm_fault(vm, a, flags, NULL, NULL);
		if (rc)
			return rc > 0 ? -EPROTO : rc;
	}
	return 0;
}

static double memset_gbs(uint8_t *buf, uint64_t len, int val)
{
	uint64_t t0 = now_ns();

	memset(buf, val, len);
	__asm__ volatile("" : : "r"(buf) : "memory");
	return (double)len / (double)(now_ns() - t0);
}

static void case2(void)
{
	static const char *const archs[] = { "snp", "tdx" };
	static const char *const names[] = {
		"destructive convert 1 GiB to shared, snp",
		"destructive convert 1 GiB to shared, tdx",
	};
	static const char *const ids[] = { "2a", "2b" };
	double bw[2][MAX_RUNS], ms[MAX_RUNS];
	uint8_t *buf;
	int a, r;

	buf = mmap(NULL, GiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) {
		emit_error("2a", names[0], "mmap", -errno);
		return;
	}
	memset(buf, 0xff, GiB);		/* fault it in: untimed */
	for (r = 0; r < nruns; r++)
		ms[r] = memset_gbs(buf, GiB, r);
	munmap(buf, GiB);

	for (a = 0; a < 2; a++) {
		struct env e = { -1, -1 };
		int fd = -1;
		struct row row;

		TRY(ids[a], names[a], env_open(&e, 0, archs[a]));
		TRY(ids[a], names[a], fd = gmem_create(e.vm, GiB, 0));
		TRY(ids[a], names[a], gmem_bind(e.vm, 0, 0, GiB, fd, 0));
		for (r = 0; r < nruns; r++) {
			uint64_t t0;

			/* untimed: every page private, faulted, prepared by the arch */
			TRY(ids[a], names[a], fault_all(e.vm, 0, GiB,
					GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE));
			t0 = now_ns();
			TRY(ids[a], names[a], gmem_set_attributes(fd, 0, GiB, 0, 0, NULL));
			bw[a][r] = (double)GiB / (double)(now_ns() - t0);
			TRY(ids[a], names[a], gmem_set_attributes(fd, 0, GiB,
						GMEM_ATTR_PRIVATE, 0, NULL));
		}
		row = row_new(ids[a], names[a], "GB/s");
		row.m = summarize(bw[a], nruns);
		row.base_name = "memset 1 GiB";
		row.b = summarize(ms, nruns);
		row.ratio = row.m.med / row.b.med;
		row.ratio_of = "conversion bandwidth / memset bandwidth";
		row.target = ">= 0.80x";
		row.met = row.ratio >= 0.8 ? MET_YES : MET_NO;
		snprintf(row.note, sizeof(row.note),
			 "262144 populated private 4 KiB pages (faulted untimed), one gmem_set_attributes call");
		emit(&row);
out:
		close_fd(&fd);
		env_close(&e);
	}
}

/* --------------------------------- 3 and 7b. faults under a fragmented map */

struct fault_set {
	int vm;
	uint64_t *gpa;
	unsigned int *flags;
	unsigned int n;
};

struct fault_thread {
	const struct fault_set *fs;
	unsigned int start;
	uint64_t count;
	pthread_barrier_t *bar;
	uint64_t t0, t1;
	int err;
};

static int fault_loop(const struct fault_set *fs, unsigned int start, uint64_t count)
{
	unsigned int i = start;
	uint64_t k;
	int rc;

	for (k = 0; k < count; k++) {
		rc = gmem_vm_fault(fs->vm, fs->gpa[i], fs->flags[i], NULL, NULL);
		if (rc)
			return rc > 0 ? -EPROTO : rc;
		if (++i == fs->n)
			i = 0;
	}
	return 0;
}

static void *fault_thread_fn(void *arg)
{
	struct fault_thread *t = arg;

	pthread_barrier_wait(t->bar);
	t->t0 = now_ns();
	t->err = fault_loop(t->fs, t->start, t->count);
	t->t1 = now_ns();
	return NULL;
}

/* Attribute of every sample page, as its access must be; prefaults them. */
static int fault_set_refresh(struct fault_set *fs, int fd)
{
	uint64_t attr;
	unsigned int i;
	int rc;

	for (i = 0; i < fs->n; i++) {
		rc = gmem_get_attributes(fd, fs->gpa[i], &attr, NULL);
		if (rc)
			return rc;
		fs->flags[i] = attr ? GMEM_FAULT_PRIVATE : 0;
	}
	return fault_loop(fs, 0, fs->n);
}

static double fault_ns(const struct fault_set *fs, uint64_t count, int *err)
{
	uint64_t t0 = now_ns();

	*err = fault_loop(fs, 0, count);
	return (double)(now_ns() - t0) / count;
}

/* Random sample pages of a file bound at gpa 0 (gpa == offset). */
static int fault_set_init(struct fault_set *fs, int vm, uint64_t size, unsigned int n,
			  uint64_t seed)
{
	unsigned int i;

	fs->vm = vm;
	fs->n = n;
	fs->gpa = calloc(n, sizeof(*fs->gpa));
	fs->flags = calloc(n, sizeof(*fs->flags));
	if (!fs->gpa || !fs->flags)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		fs->gpa[i] = rnd(&seed) % (size / PAGE) * PAGE;
	return 0;
}

static void fault_set_free(struct fault_set *fs)
{
	free(fs->gpa);
	free(fs->flags);
	fs->gpa = NULL;
	fs->flags = NULL;
}

#define NSTAGES 4
static const uint64_t stage_ranges[NSTAGES] = { 1, 1000, 100000, 1000000 };

/* What case 3 measured along the way, for case 7b. */
static struct {
	bool done;
	int nstages;
	int64_t ranges[NSTAGES];
	struct stat3 conv[NSTAGES], fault[NSTAGES];
	char skip[200];
} frag;

static void case3(void)
{
	const char *n1 = "fault, page present, 1 thread";
	const char *n2 = "fault, page present, 2 threads";
	uint64_t max_ranges = quick ? 100000 : 1000000;
	/* Every other page shared from page 1: 2k+1 ranges take 2k+1 pages. */
	uint64_t size = ((max_ranges + 1) * PAGE + 2 * MiB - 1) & ~(2 * MiB - 1);
	uint64_t nfaults = quick ? 200000 : 1000000, flipped = 0, last = size - PAGE;
	double f1[MAX_RUNS], f2[MAX_RUNS], scale[MAX_RUNS], conv[MAX_RUNS];
	double one_thread_rate[MAX_RUNS];
	struct fault_set fs = { 0 };
	struct env e = { -1, -1 };
	int fd = -1, s, r, err = 0;
	struct row row;
	const char *id = "3a";
	const char *name = n1;

	memset(&frag, 0, sizeof(frag));
	snprintf(frag.skip, sizeof(frag.skip), "skipped: case 3 did not run");
	TRY(id, name, env_open(&e, 0, "sw"));
	TRY(id, name, fd = gmem_create(e.vm, size, 0));
	TRY(id, name, gmem_bind(e.vm, 0, 0, size, fd, 0));
	TRY(id, name, fault_set_init(&fs, e.vm, size, 65536, 42));

	for (s = 0; s < NSTAGES && stage_ranges[s] <= max_ranges; s++) {
		/* Build untimed: shared pages 1, 3, 5, ... until the count is reached. */
		while (2 * flipped + 1 < stage_ranges[s]) {
			TRY(id, name, gmem_set_attributes(fd, (2 * flipped + 1) * PAGE, PAGE,
							  0, 0, NULL));
			flipped++;
		}
		TRY(id, name, frag.ranges[s] = gmem_attribute_ranges(fd));
		TRY(id, name, fault_set_refresh(&fs, fd));
		for (r = 0; r < nruns; r++) {
			f1[r] = fault_ns(&fs, nfaults, &err);
			TRY(id, name, err);
			conv[r] = time_convert_pairs(fd, last, quick ? 5000 : 20000, &err) / 2;
			TRY(id, name, err);
		}
		frag.fault[s] = summarize(f1, nruns);
		frag.conv[s] = summarize(conv, nruns);
		frag.nstages = s + 1;
	}
	frag.done = true;
	TRY(id, name, fault_set_refresh(&fs, fd));

	/* At the largest map: one thread, then two threads in parallel. */
	id = "3b";
	name = n2;
	for (r = 0; r < nruns; r++) {
		pthread_barrier_t bar;
		struct fault_thread t[2];
		pthread_t th[2];
		uint64_t t0, t1;
		int i;

		one_thread_rate[r] = 1e9 / fault_ns(&fs, nfaults, &err);
		TRY(id, name, err);
		pthread_barrier_init(&bar, NULL, 2);
		for (i = 0; i < 2; i++) {
			t[i] = (struct fault_thread){ .fs = &fs, .start = i * fs.n / 2,
						      .count = nfaults, .bar = &bar };
			if (pthread_create(&th[i], NULL, fault_thread_fn, &t[i])) {
				emit_error(id, name, "pthread_create", -EAGAIN);
				if (i)
					pthread_join(th[0], NULL);
				pthread_barrier_destroy(&bar);
				goto out;
			}
		}
		for (i = 0; i < 2; i++)
			pthread_join(th[i], NULL);
		pthread_barrier_destroy(&bar);
		TRY(id, name, t[0].err);
		TRY(id, name, t[1].err);
		t0 = t[0].t0 < t[1].t0 ? t[0].t0 : t[1].t0;
		t1 = t[0].t1 > t[1].t1 ? t[0].t1 : t[1].t1;
		f2[r] = 2.0 * nfaults * 1e9 / (double)(t1 - t0);
		scale[r] = f2[r] / one_thread_rate[r];
	}

	s = frag.nstages - 1;
	row = row_new("3a", n1, "ns");
	row.m = frag.fault[s];
	row.base_name = "same, 1 range";
	row.b = frag.fault[0];
	row.ratio = row.m.med / row.b.med;
	row.ratio_of = "fault with fragmented map / fault with 1 range";
	row.target = "< 100 ns";
	row.met = row.m.med < 100 ? MET_YES : MET_NO;
	snprintf(row.note, sizeof(row.note),
		 "%lld attribute ranges%s, %.2f GiB file, 65536 random present pages, %llu faults per run",
		 (long long)frag.ranges[s],
		 quick ? " (--quick: fewer than the 1,000,000 of the target)" : "",
		 (double)size / GiB, (unsigned long long)nfaults);
	emit(&row);

	row = row_new("3b", n2, "Mfaults/s");
	for (r = 0; r < nruns; r++) {
		f2[r] /= 1e6;
		one_thread_rate[r] /= 1e6;
	}
	row.m = summarize(f2, nruns);
	row.base_name = "1 thread";
	row.b = summarize(one_thread_rate, nruns);
	row.ratio = summarize(scale, nruns).med;
	row.ratio_of = "2-thread aggregate throughput / 1-thread throughput (median of per-run ratios)";
	row.target = ">= 1.80x";
	row.met = row.ratio >= 1.8 ? MET_YES : MET_NO;
	snprintf(row.note, sizeof(row.note),
		 "same map and pages as 3a; scaling per run: %.2f..%.2f",
		 summarize(scale, nruns).lo, summarize(scale, nruns).hi);
	emit(&row);
out:
	if (!frag.done)
		snprintf(frag.skip, sizeof(frag.skip), "skipped: case 3 failed");
	fault_set_free(&fs);
	close_fd(&fd);
	env_close(&e);
}

/* ----------------------------------------------------- 4. metadata bytes */

static void case4(void)
{
	const char *n1 = "metadata per GiB, 4 KiB folios";
	const char *n2 = "metadata per GiB, 2 MiB folios";
	struct gmem_pool_stats st;
	struct env e = { -1, -1 };
	int fd = -1;
	struct row row;
	double pct;

	TRY("4a", n1, env_open(&e, 0, "sw"));
	TRY("4a", n1, fd = gmem_create(e.vm, GiB, 0));
	TRY("4a", n1, gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, GiB));
	TRY("4a", n1, gmem_pool_stats(e.pool, &st));
	pct = 100.0 * (double)st.metadata_bytes / (double)GiB;
	row = row_new("4a", n1, "KiB");
	row.runs = 1;
	row.m = single((double)st.metadata_bytes / KiB);
	row.base_name = "struct page";
	row.b = single(16.0 * 1024);
	row.ratio = row.m.med / row.b.med;
	row.ratio_of = "gmem metadata / kernel struct page (64 B per 4 KiB)";
	row.target = "<= 0.40%";
	row.met = pct <= 0.4 ? MET_YES : MET_NO;
	snprintf(row.note, sizeof(row.note),
		 "%.4f%% of guest memory (struct page: 1.5625%%); gmem_pool_stats metadata_bytes = %llu, 1 GiB fully allocated, %llu frames in use",
		 pct, (unsigned long long)st.metadata_bytes,
		 (unsigned long long)st.frames_in_use);
	emit(&row);

	close_fd(&fd);
	TRY("4b", n2, fd = gmem_create(e.vm, GiB, GMEM_FLAG_HUGE_2M));
	TRY("4b", n2, gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, GiB));
	TRY("4b", n2, gmem_pool_stats(e.pool, &st));
	pct = 100.0 * (double)st.metadata_bytes / (double)GiB;
	row = row_new("4b", n2, "KiB");
	row.runs = 1;
	row.m = single((double)st.metadata_bytes / KiB);
	row.base_name = "struct page";
	row.b = single(16.0 * 1024);
	row.ratio = row.m.med / row.b.med;
	row.ratio_of = "gmem metadata / kernel struct page (64 B per 4 KiB)";
	row.target = "<= 0.05%";
	row.met = pct <= 0.05 ? MET_YES : MET_NO;
	snprintf(row.note, sizeof(row.note),
		 "%.4f%% of guest memory; 1 GiB in 512 huge folios, %llu frames in use",
		 pct, (unsigned long long)st.frames_in_use);
	emit(&row);
out:
	close_fd(&fd);
	env_close(&e);
}

/* ------------------------------------ 5. side by side with the kernel */

#define BENCH_KVMIO			0xAE
#define BENCH_KVM_CREATE_VM		_IO(BENCH_KVMIO, 0x01)

struct bench_kvm_create_guest_memfd {
	uint64_t size;
	uint64_t flags;
	uint64_t reserved[6];
};

#define BENCH_KVM_CREATE_GUEST_MEMFD	\
	_IOWR(BENCH_KVMIO, 0xd4, struct bench_kvm_create_guest_memfd)
#define BENCH_GUEST_MEMFD_FLAG_MMAP		(1ULL << 0)
#define BENCH_GUEST_MEMFD_FLAG_INIT_SHARED	(1ULL << 1)

static double touch_ms(volatile uint8_t *p, uint64_t len)
{
	uint64_t t0 = now_ns(), off;

	for (off = 0; off < len; off += PAGE)
		p[off] = 1;
	return (double)(now_ns() - t0) / 1e6;
}

static void case5(void)
{
	const char *n1 = "first-touch write faults, 1 GiB via mmap";
	const char *n2 = "punch hole 1 GiB";
	struct bench_kvm_create_guest_memfd cg = {
		.size = GiB,
		.flags = BENCH_GUEST_MEMFD_FLAG_MMAP | BENCH_GUEST_MEMFD_FLAG_INIT_SHARED,
	};
	double kt[MAX_RUNS], kp[MAX_RUNS], gt[MAX_RUNS], gp[MAX_RUNS];
	double st[MAX_RUNS], sp[MAX_RUNS];
	int kvm = -1, kvm_vm = -1, kfd = -1, fd = -1, smfd = -1, r;
	uint8_t *kmap = MAP_FAILED, *smap = MAP_FAILED;
	struct env e = { -1, -1 };
	char why[160] = "";
	void *gmap = NULL;
	struct row row;
	uint64_t t0;

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		snprintf(why, sizeof(why), "skipped: open /dev/kvm: %s", strerror(errno));
		goto skip;
	}
	kvm_vm = ioctl(kvm, BENCH_KVM_CREATE_VM, 0);
	if (kvm_vm < 0) {
		snprintf(why, sizeof(why), "skipped: KVM_CREATE_VM: %s", strerror(errno));
		goto skip;
	}
	kfd = ioctl(kvm_vm, BENCH_KVM_CREATE_GUEST_MEMFD, &cg);
	if (kfd < 0) {
		snprintf(why, sizeof(why), "skipped: KVM_CREATE_GUEST_MEMFD: %s",
			 strerror(errno));
		goto skip;
	}
	kmap = mmap(NULL, GiB, PROT_READ | PROT_WRITE, MAP_SHARED, kfd, 0);
	if (kmap == MAP_FAILED) {
		snprintf(why, sizeof(why), "skipped: mmap of the kernel guest_memfd: %s",
			 strerror(errno));
		goto skip;
	}

	TRY("5a", n1, env_open(&e, 0, "sw"));
	TRY("5a", n1, fd = gmem_create(e.vm, GiB, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED));
	TRY("5a", n1, gmem_mmap(fd, 0, GiB, PROT_READ | PROT_WRITE, MAP_SHARED, &gmap));
	smfd = memfd_create("gmem-bench-shmem", 0);
	if (smfd < 0 || ftruncate(smfd, GiB) < 0) {
		emit_error("5a", n1, "memfd_create/ftruncate", -errno);
		goto out;
	}
	smap = mmap(NULL, GiB, PROT_READ | PROT_WRITE, MAP_SHARED, smfd, 0);
	if (smap == MAP_FAILED) {
		emit_error("5a", n1, "mmap", -errno);
		goto out;
	}
	/*
	 * Rotate which side goes first: each side reuses the memory the one
	 * before it just freed, and freed memory may have been reported to the
	 * hypervisor (free page reporting) and cost more to fault back. The
	 * third side, a plain memfd, is what gmem's host fault is made of.
	 */
	for (r = 0; r < nruns; r++) {
		int k;

		for (k = 0; k < 3; k++) {
			int side = (k + r) % 3;

			if (side == 0) {
				kt[r] = touch_ms(kmap, GiB);
				t0 = now_ns();
				if (fallocate(kfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					      0, GiB)) {
					snprintf(why, sizeof(why),
						 "skipped: fallocate on the kernel guest_memfd: %s",
						 strerror(errno));
					goto skip;
				}
				kp[r] = (double)(now_ns() - t0) / 1e6;
			} else if (side == 1) {
				gt[r] = touch_ms(gmap, GiB);
				t0 = now_ns();
				TRY("5b", n2, gmem_fallocate(fd, GMEM_FALLOC_PUNCH_HOLE |
							     GMEM_FALLOC_KEEP_SIZE, 0, GiB));
				gp[r] = (double)(now_ns() - t0) / 1e6;
			} else {
				st[r] = touch_ms(smap, GiB);
				t0 = now_ns();
				if (fallocate(smfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					      0, GiB)) {
					emit_error("5b", n2, "fallocate memfd", -errno);
					goto out;
				}
				sp[r] = (double)(now_ns() - t0) / 1e6;
			}
		}
		if (getenv("GMEM_BENCH_DEBUG"))
			fprintf(stderr, "5 run %d: kernel touch %.0f punch %.0f, gmem touch %.0f punch %.0f, memfd touch %.0f punch %.0f ms\n",
				r, kt[r], kp[r], gt[r], gp[r], st[r], sp[r]);
	}
	row = row_new("5a", n1, "ms");
	row.m = summarize(gt, nruns);
	row.base_name = "kernel guest_memfd";
	row.b = summarize(kt, nruns);
	row.ratio = row.m.med / row.b.med;
	row.ratio_of = "gmem / kernel guest_memfd";
	row.target = "<= 1.00x";
	row.met = row.ratio <= 1.0 ? MET_YES : MET_NO;
	snprintf(row.note, sizeof(row.note),
		 "one byte written per 4 KiB page, gmem via gmem_mmap of a GMEM_FLAG_MMAP|INIT_SHARED file; plain memfd (shmem), same loop: %.0f ms [%.0f..%.0f]",
		 summarize(st, nruns).med, summarize(st, nruns).lo, summarize(st, nruns).hi);
	emit(&row);

	row = row_new("5b", n2, "ms");
	row.m = summarize(gp, nruns);
	row.base_name = "kernel guest_memfd";
	row.b = summarize(kp, nruns);
	row.ratio = row.m.med / row.b.med;
	row.ratio_of = "gmem / kernel guest_memfd";
	row.target = "<= 1.00x";
	row.met = row.ratio <= 1.0 ? MET_YES : MET_NO;
	snprintf(row.note, sizeof(row.note),
		 "fallocate(PUNCH_HOLE|KEEP_SIZE) of the 1 GiB 5a populated; gmem via gmem_fallocate; plain memfd: %.0f ms",
		 summarize(sp, nruns).med);
	emit(&row);
	goto out;
skip:
	row = row_new("5a", n1, "");
	snprintf(row.skip, sizeof(row.skip), "%s", why);
	emit(&row);
	row = row_new("5b", n2, "");
	snprintf(row.skip, sizeof(row.skip), "%s", why);
	emit(&row);
out:
	if (gmap)
		gmem_munmap(gmap, GiB);
	close_fd(&fd);
	env_close(&e);
	if (smap != MAP_FAILED)
		munmap(smap, GiB);
	if (smfd >= 0)
		close(smfd);
	if (kmap != MAP_FAILED)
		munmap(kmap, GiB);
	if (kfd >= 0)
		close(kfd);
	if (kvm_vm >= 0)
		close(kvm_vm);
	if (kvm >= 0)
		close(kvm);
}

/* ------------------------------- 6. conversions under concurrent faults */

#define C6_PAGES	16384		/* 64 MiB shared by both threads */

struct c6 {
	int vm, fd;
	atomic_bool stop;
	pthread_barrier_t bar;
	uint64_t convs, faults, exits;
	int conv_err, fault_err;
	uint8_t priv[C6_PAGES];		/* the converter's view: 1 = private */
};

static void *c6_converter(void *arg)
{
	struct c6 *c = arg;
	uint64_t seed = 7, p;
	int rc;

	pthread_barrier_wait(&c->bar);
	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		p = rnd(&seed) % C6_PAGES;
		rc = gmem_set_attributes(c->fd, p * PAGE, PAGE,
					 c->priv[p] ? 0 : GMEM_ATTR_PRIVATE, 0, NULL);
		if (rc) {
			c->conv_err = rc;
			break;
		}
		c->priv[p] ^= 1;
		c->convs++;
	}
	return NULL;
}

static void *c6_faulter(void *arg)
{
	struct c6 *c = arg;
	unsigned int flags = GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE;
	uint64_t seed = 11, p, val = 0;
	struct gmem_exit ex;
	int rc;

	pthread_barrier_wait(&c->bar);
	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		p = rnd(&seed) % C6_PAGES;
		rc = gmem_vm_access(c->vm, p * PAGE, &val, sizeof(val), flags, &ex);
		if (rc == 1) {
			flags ^= GMEM_FAULT_PRIVATE;
			c->exits++;
		} else if (rc) {
			c->fault_err = rc;
			break;
		} else {
			c->faults++;
		}
	}
	return NULL;
}

/* Runs the converter, the faulter or both for @sec seconds. */
static int c6_run(struct c6 *c, bool conv, bool fault, double sec)
{
	pthread_t th[2];
	int n = 0, i;
	struct timespec ts = { (time_t)sec, (long)((sec - (time_t)sec) * 1e9) };

	c->convs = c->faults = c->exits = 0;
	c->conv_err = c->fault_err = 0;
	atomic_store(&c->stop, false);
	pthread_barrier_init(&c->bar, NULL, (conv + fault) + 1);
	if (conv && !pthread_create(&th[n], NULL, c6_converter, c))
		n++;
	if (fault && !pthread_create(&th[n], NULL, c6_faulter, c))
		n++;
	if (n != conv + fault) {
		/* Let the started thread go and stop it at once. */
		atomic_store(&c->stop, true);
		for (i = n; i < conv + fault; i++)
			pthread_barrier_wait(&c->bar);
	}
	pthread_barrier_wait(&c->bar);
	if (n == conv + fault)
		nanosleep(&ts, NULL);
	atomic_store(&c->stop, true);
	for (i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&c->bar);
	if (n != conv + fault)
		return -EAGAIN;
	return c->conv_err ? c->conv_err : c->fault_err;
}

static void case6(void)
{
	const char *n1 = "conversions/s with a concurrent faulter";
	const char *n2 = "faults/s with a concurrent converter";
	double sec = quick ? 0.3 : 1.0;
	double cv[MAX_RUNS], ft[MAX_RUNS], cv0[MAX_RUNS], ft0[MAX_RUNS], ex[MAX_RUNS];
	struct env e = { -1, -1 };
	struct c6 *c = NULL;
	struct row row;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c) {
		emit_error("6a", n1, "calloc", -ENOMEM);
		return;
	}
	c->fd = -1;
	memset(c->priv, 1, sizeof(c->priv));
	TRY("6a", n1, env_open(&e, 0, "sw"));
	c->vm = e.vm;
	TRY("6a", n1, c->fd = gmem_create(e.vm, GiB, 0));
	TRY("6a", n1, gmem_bind(e.vm, 0, 0, GiB, c->fd, 0));
	for (r = 0; r < nruns; r++) {
		TRY("6a", n1, c6_run(c, true, true, sec));
		cv[r] = c->convs / sec / 1e3;
		ft[r] = c->faults / sec / 1e3;
		ex[r] = (double)c->exits / sec / 1e3;
		TRY("6a", n1, c6_run(c, true, false, sec));
		cv0[r] = c->convs / sec / 1e3;
		TRY("6b", n2, c6_run(c, false, true, sec));
		ft0[r] = c->faults / sec / 1e3;
	}
	row = row_new("6a", n1, "k/s");
	row.m = summarize(cv, nruns);
	row.base_name = "converter alone";
	row.b = summarize(cv0, nruns);
	row.ratio = row.m.med / row.b.med;
	row.ratio_of = "with faulter / alone";
	snprintf(row.note, sizeof(row.note),
		 "2 threads for %.1f s per run over 64 MiB (16384 pages): random 4 KiB pages converted both ways; no design target",
		 sec);
	emit(&row);
	row = row_new("6b", n2, "k/s");
	row.m = summarize(ft, nruns);
	row.base_name = "faulter alone";
	row.b = summarize(ft0, nruns);
	row.ratio = row.m.med / row.b.med;
	row.ratio_of = "with converter / alone";
	snprintf(row.note, sizeof(row.note),
		 "gmem_vm_access 8-byte writes; memory-fault exits (flag flipped, retried): median %.1f k/s; no design target",
		 summarize(ex, nruns).med);
	emit(&row);
out:
	if (c)
		close_fd(&c->fd);
	env_close(&e);
	free(c);
}

/* ----------------------------------------------------------- 7. scaling */

#define NSIZES 4

static void case7(void)
{
	static const uint64_t sizes[NSIZES] = { GiB, 16 * GiB, 256 * GiB, TiB };
	static const char *const conv_names[NSIZES] = {
		"convert 4K, file 1 GiB", "convert 4K, file 16 GiB",
		"convert 4K, file 256 GiB", "convert 4K, file 1 TiB",
	};
	static const char *const fault_names[NSIZES] = {
		"fault present, file 1 GiB", "fault present, file 16 GiB",
		"fault present, file 256 GiB", "fault present, file 1 TiB",
	};
	static const char *const rconv_names[NSTAGES] = {
		"convert 4K, map of 1 range", "convert 4K, map of 1k ranges",
		"convert 4K, map of 100k ranges", "convert 4K, map of 1M ranges",
	};
	static const char *const rfault_names[NSTAGES] = {
		"fault present, map of 1 range", "fault present, map of 1k ranges",
		"fault present, map of 100k ranges", "fault present, map of 1M ranges",
	};
	struct stat3 conv[NSIZES] = { 0 }, flt[NSIZES] = { 0 };
	double v[MAX_RUNS];
	struct env e = { -1, -1 };
	struct fault_set fs = { 0 };
	int fd = -1, s, r, err = 0, done = 0, pass;
	uint64_t nfaults = quick ? 100000 : 500000;
	struct row row;

	TRY("7a", conv_names[0], env_open(&e, 2 * TiB, "sw"));
	for (s = 0; s < NSIZES; s++) {
		TRY("7a", conv_names[s], fd = gmem_create(e.vm, sizes[s], 0));
		TRY("7a", conv_names[s], gmem_bind(e.vm, 0, 0, sizes[s], fd, 0));
		TRY("7a", conv_names[s], fault_set_init(&fs, e.vm, sizes[s], 4096, 99));
		TRY("7a", conv_names[s], fault_set_refresh(&fs, fd));
		for (r = 0; r < nruns; r++) {
			v[r] = time_convert_pairs(fd, sizes[s] / 2, quick ? 5000 : 20000,
						  &err) / 2;
			TRY("7a", conv_names[s], err);
		}
		conv[s] = summarize(v, nruns);
		for (r = 0; r < nruns; r++) {
			v[r] = fault_ns(&fs, nfaults, &err);
			TRY("7a", fault_names[s], err);
		}
		flt[s] = summarize(v, nruns);
		fault_set_free(&fs);
		TRY("7a", conv_names[s], gmem_unbind(e.vm, 0));
		close_fd(&fd);
		done = s + 1;
	}
out:
	fault_set_free(&fs);
	close_fd(&fd);
	env_close(&e);
	for (pass = 0; pass < 2; pass++) {
		for (s = 0; s < done; s++) {
			row = row_new("7a", pass ? fault_names[s] : conv_names[s], "ns");
			row.m = pass ? flt[s] : conv[s];
			row.base_name = "at 1 GiB";
			row.b = pass ? flt[0] : conv[0];
			row.ratio = row.m.med / row.b.med;
			row.ratio_of = "cost at this size / cost at 1 GiB";
			if (s == NSIZES - 1)
				snprintf(row.note, sizeof(row.note),
					 "growth factor 1 TiB / 1 GiB: %.2fx (sparse files, one sw VM, 4096 random present pages)",
					 row.ratio);
			emit(&row);
		}
	}

	/* 7b: measured by case 3 while it built its map. */
	if (!frag.done) {
		row = row_new("7b", rconv_names[0], "");
		snprintf(row.skip, sizeof(row.skip), "%s", frag.skip);
		emit(&row);
		return;
	}
	for (pass = 0; pass < 2; pass++) {
		for (s = 0; s < frag.nstages; s++) {
			row = row_new("7b", pass ? rfault_names[s] : rconv_names[s], "ns");
			row.m = pass ? frag.fault[s] : frag.conv[s];
			row.base_name = "with 1 range";
			row.b = pass ? frag.fault[0] : frag.conv[0];
			row.ratio = row.m.med / row.b.med;
			row.ratio_of = "cost with this map / cost with 1 range";
			if (s == frag.nstages - 1)
				snprintf(row.note, sizeof(row.note),
					 "growth factor %lld / 1 ranges: %.2fx%s",
					 (long long)frag.ranges[s], row.ratio,
					 quick ? " (--quick: stops at 100k ranges)" : "");
			else
				snprintf(row.note, sizeof(row.note), "%lld ranges",
					 (long long)frag.ranges[s]);
			emit(&row);
		}
	}
}

/* ------------------------------------------------------ 8. huge folios */

/* Punch the whole file, then time one private fault that brings it back. */
static double time_first_fault(int vm, int fd, uint64_t gpa, int *err)
{
	uint64_t t0;
	int rc = gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				0, GiB);

	if (rc) {
		*err = rc;
		return 0;
	}
	t0 = now_ns();
	rc = gmem_vm_fault(vm, gpa, GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE, NULL, NULL);
	if (rc)
		*err = rc < 0 ? rc : -EFAULT;
	return (double)(now_ns() - t0) / 1e3;
}

static void case8(void)
{
	const char *n1 = "convert 4K <->, inside a 1 GiB folio";
	const char *n2 = "first fault on a 1 GiB folio, sw";
	const char *n3 = "first fault on a merged 1 GiB folio, pkvm";
	double v[MAX_RUNS], base[MAX_RUNS];
	int iters = quick ? 5000 : 20000;
	struct env e = { -1, -1 }, p = { -1, -1 };
	int fd = -1, fd4 = -1, r, err = 0;
	uint64_t off = GiB / 2 + 5 * PAGE;
	struct row row;

	TRY("8a", n1, env_open(&e, 0, "sw"));
	TRY("8a", n1, fd = gmem_create(e.vm, GiB, GMEM_FLAG_HUGE_1G));
	TRY("8a", n1, gmem_bind(e.vm, 0, 0, GiB, fd, 0));
	TRY("8a", n1, fd4 = gmem_create(e.vm, GiB, 0));
	TRY("8a", n1, gmem_bind(e.vm, 1, GiB, GiB, fd4, 0));
	TRY("8a", n1, gmem_vm_fault(e.vm, off, GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE,
				    NULL, NULL));
	TRY("8a", n1, gmem_vm_fault(e.vm, GiB + off,
				    GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE, NULL, NULL));
	for (r = 0; r < nruns; r++) {
		v[r] = time_convert_pairs(fd, off, iters, &err);
		TRY("8a", n1, err);
		base[r] = time_convert_pairs(fd4, off, iters, &err);
		TRY("8a", n1, err);
	}
	row = row_new("8a", n1, "ns");
	row.m = summarize(v, nruns);
	row.base_name = "same, 4 KiB folios";
	row.b = summarize(base, nruns);
	row.ratio = row.m.med / row.b.med;
	row.ratio_of = "split + merge pair / plain pair";
	snprintf(row.note, sizeof(row.note),
		 "ns per pair (to shared: split, to private: merge), sw VM, 1 GiB file bound; %d pairs per run",
		 iters);
	emit(&row);

	/* One fault allocates and maps the whole folio, vs faulting in 1 GiB page by page. */
	for (r = 0; r < nruns; r++) {
		v[r] = time_first_fault(e.vm, fd, off, &err);
		TRY("8b", n2, err);
		TRY("8b", n2, gmem_fallocate(fd4, GMEM_FALLOC_KEEP_SIZE |
					     GMEM_FALLOC_PUNCH_HOLE, 0, GiB));
		uint64_t t0 = now_ns();
		TRY("8b", n2, fault_all(e.vm, GiB, GiB,
					GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE));
		base[r] = (double)(now_ns() - t0) / 1e3;
	}
	TRY("8b", n2, gmem_vm_stage2_level(e.vm, 0));
	row = row_new("8b", n2, "us");
	row.m = summarize(v, nruns);
	row.base_name = "262144 faults, 4 KiB folios";
	row.b = summarize(base, nruns);
	row.ratio = row.m.med / row.b.med;
	row.ratio_of = "one huge fault / 1 GiB of 4 KiB faults";
	snprintf(row.note, sizeof(row.note),
		 "us to allocate and map 1 GiB from a hole; the huge fault installs one level-%d stage-2 entry",
		 gmem_vm_stage2_level(e.vm, 0));
	emit(&row);

	/* pKVM: the fault after a merge donates every frame of the folio again. */
	close_fd(&fd);
	close_fd(&fd4);
	env_close(&e);
	TRY("8c", n3, env_open(&p, 0, "pkvm"));
	TRY("8c", n3, fd = gmem_create(p.vm, GiB, GMEM_FLAG_HUGE_1G));
	TRY("8c", n3, gmem_bind(p.vm, 0, 0, GiB, fd, 0));
	TRY("8c", n3, gmem_vm_fault(p.vm, off, GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE,
				    NULL, NULL));
	for (r = 0; r < nruns; r++) {
		uint64_t t0;

		TRY("8c", n3, gmem_set_attributes(fd, off, PAGE, 0, 0, NULL));
		TRY("8c", n3, gmem_set_attributes(fd, off, PAGE, GMEM_ATTR_PRIVATE,
						  0, NULL));
		t0 = now_ns();
		TRY("8c", n3, gmem_vm_fault(p.vm, off + PAGE,
					    GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE,
					    NULL, NULL));
		v[r] = (double)(now_ns() - t0) / 1e3;
	}
	row = row_new("8c", n3, "us");
	row.m = summarize(v, nruns);
	snprintf(row.note, sizeof(row.note),
		 "us: make_private donates 262144 frames, then one 1 GiB stage-2 entry");
	emit(&row);
out:
	close_fd(&fd);
	close_fd(&fd4);
	env_close(&e);
	env_close(&p);
}

/* ----------------------------------------------------------- command */

static int usage(FILE *out)
{
	fprintf(out,
		"usage: gmem bench [--quick] [--json] [CASE...]\n"
		"\n"
		"Run the benchmark cases (all, or those numbered), each several times;\n"
		"print median [min..max], a baseline measured in the same run, the\n"
		"ratio, and the design target with whether it is met.\n"
		"\n"
		"cases:\n"
		"  1  metadata-only conversion of 4 KiB in a 1 GiB file, without and\n"
		"     with a host mapping (vs get_attributes, vs an mprotect pair)\n"
		"  2  destructive conversion of 1 GiB, snp and tdx (vs memset)\n"
		"  3  fault lookup with 1,000,000 attribute ranges, 1 and 2 threads\n"
		"  4  metadata bytes per GiB (vs struct page)\n"
		"  5  first-touch faults and punch hole vs the kernel's guest_memfd\n"
		"     (skipped without /dev/kvm)\n"
		"  6  conversions and faults together, 2 threads\n"
		"  7  scaling with file size (1 GiB..1 TiB) and map size (1..1M ranges)\n"
		"  8  huge folios: 4 KiB conversion inside a 1 GiB folio (split and\n"
		"     merge), first faults on a 1 GiB folio\n"
		"\n"
		"options:\n"
		"  --quick   3 runs, shorter loops, 100k ranges instead of 1M (~30 s)\n"
		"  --json    one JSON object per result line\n"
		"  --help    this text\n");
	return out == stdout ? 0 : 2;
}

int cmd_bench(int argc, char **argv)
{
	static void (*const cases[])(void) = {
		case1, case2, case3, case4, case5, case6, case7, case8,
	};
	bool want[8] = { false };
	bool any = false;
	struct utsname u;
	uint64_t t0;
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--quick")) {
			quick = true;
		} else if (!strcmp(a, "--json")) {
			json = true;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			return usage(stdout);
		} else if (a[0] >= '1' && a[0] <= '8' && !a[1]) {
			want[a[0] - '1'] = true;
			any = true;
		} else {
			fprintf(stderr, "gmem bench: unknown argument '%s' (try gmem bench --help)\n",
				a);
			return 2;
		}
	}
	nruns = quick ? 3 : MAX_RUNS;
	/* 7b reuses what case 3 measures. */
	if (want[6])
		want[2] = true;
	if (!json) {
		if (uname(&u))
			memset(&u, 0, sizeof(u));
		printf("gmem bench%s: %d runs per case; %ld CPUs, %s %s\n\n",
		       quick ? " --quick" : "", nruns, sysconf(_SC_NPROCESSORS_ONLN),
		       u.sysname, u.release);
		table_header();
	}
	t0 = now_ns();
	for (i = 0; i < 8; i++)
		if (!any || want[i])
			cases[i]();
	if (!json)
		printf("\ntotal %.1f s%s\n", (double)(now_ns() - t0) / 1e9,
		       failed ? "; some cases failed (error rows above)" : "");
	return failed ? 1 : 0;
}
