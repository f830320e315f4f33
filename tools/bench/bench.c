// SPDX-License-Identifier: MIT
/*
 * gmem bench - the benchmark suite: each case of docs/PERFORMANCE.md run
 * several times, its baseline (the physical floor or a peer doing the same
 * work) or its compute control measured in the same runs, interleaved; the
 * median and spread of the per-run ratios, and the verdict on the design's
 * target (verdict.c): met, missed, noisy, or no verdict.
 *
 * Times come from CLOCK_MONOTONIC. Nothing here asserts on a time: a missed
 * target is a line of output, not a failure. A failed library call ends its
 * case with an "error:" row and makes the exit status 1.
 *
 * This file holds the options, the series of samples, the rows and their
 * output, the threads and the compute control, and the command; the cases
 * are in convert.c (1, 2, 6), fault.c (3, 5), grow.c (7), folio.c (4, 8)
 * and kvm.c (9).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gmem.h"
#include "cli.h"
#include "bench.h"
#include "lib/json.h"

/* ------------------------------------------------------------ options */

bool quick;
int min_runs, max_runs;
static bool json, failed;
static int verdicts[VERDICT_NO_CONTROL + 1], rows;	/* for the summary */

/* ------------------------------------------------------------ series */

void series_add(struct series *s, double m, double b, double c)
{
	if (s->n >= MAX_SAMPLES)
		return;
	s->m[s->n] = m;
	s->b[s->n] = b;
	s->c[s->n] = c;
	s->n++;
}

static struct stat3 ratios(const struct series *s)
{
	double r[MAX_SAMPLES];
	int i;

	for (i = 0; i < s->n; i++) {
		if (isnan(s->b[i]))
			return (struct stat3){ 0 };
		r[i] = s->m[i] / s->b[i];
	}
	return summarize(r, s->n);
}

static struct stat3 controls(const struct series *s)
{
	int i;

	for (i = 0; i < s->n; i++)
		if (isnan(s->c[i]))
			return (struct stat3){ 0 };
	return summarize(s->c, s->n);
}

bool series_more(const struct series *s, const struct target *t)
{
	struct stat3 v = t && t->on_measured ? summarize(s->m, s->n) : ratios(s);

	return want_more(t, v, controls(s), s->n, min_runs, max_runs);
}

void row_from(struct row *r, const struct series *s, const struct target *t,
	      const char *base_name, const char *ratio_of)
{
	r->runs = s->n;
	r->m = summarize(s->m, s->n);
	r->ratio = ratios(s);
	r->control = controls(s);
	if (r->ratio.valid) {
		r->base_name = base_name;
		r->b = summarize(s->b, s->n);
		r->ratio_of = ratio_of;
	}
	if (t)
		r->t = *t;
	r->v = judge(&r->t, r->t.on_measured ? r->m : r->ratio, r->control);
}

/* ------------------------------------------------------------ rows */

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
	else if (v == 0 || fabs(v) >= 0.1)
		snprintf(buf, len, "%.2f", v);
	else
		snprintf(buf, len, "%.2g", v);
}

static void fmt_stat(char *buf, size_t len, struct stat3 s, const char *unit,
		     bool spread)
{
	char a[24], b[24], c[24];
	const char *sep;

	if (!s.valid) {
		snprintf(buf, len, "-");
		return;
	}
	fmt_num(a, sizeof(a), s.med);
	fmt_num(b, sizeof(b), s.lo);
	fmt_num(c, sizeof(c), s.hi);
	sep = strcmp(unit, "x") ? " " : "";
	if (spread && s.lo != s.hi)
		snprintf(buf, len, "%s%s%s [%s..%s]", a, sep, unit, b, c);
	else
		snprintf(buf, len, "%s%s%s", a, sep, unit);
}

static void json_str(const char *key, const char *s, bool comma)
{
	printf("\"%s\":", key);
	json_string(stdout, s);
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

/* What stands behind huge folios here: the huge-folio rows depend on it. */
static void print_host_pages(void)
{
	int pool = gmem_pool_create(1ULL << 30);
	int64_t size = pool >= 0 ? gmem_pool_huge_page_size(pool) : -1;

	printf("host pages behind huge folios: %s\n\n",
	       size == 2 << 20 ? "2 MiB (shmem THP)" : size > 0 ? "4 KiB" : "unknown");
	if (pool >= 0)
		gmem_pool_close(pool);
}

static void table_header(void)
{
	printf("%-4s %-46s %-30s %-34s %-22s %-12s %s\n", "case", "what",
	       "measured: median [spread]", "baseline (same runs)", "ratio [spread]",
	       "target", "verdict");
	printf("%.*s\n", 170, "--------------------------------------------------"
	       "--------------------------------------------------"
	       "--------------------------------------------------"
	       "--------------------------------------------------");
}

static void emit_json(const struct row *r)
{
	bool ok = !r->skip[0];
	char vb[64];

	printf("{\"type\":\"result\",");
	json_str("case", r->id, true);
	json_str("name", r->name, true);
	json_str("unit", ok ? r->unit : NULL, true);
	json_num("median", r->m.med, ok && r->m.valid, true);
	json_num("min", r->m.lo, ok && r->m.valid, true);
	json_num("max", r->m.hi, ok && r->m.valid, true);
	json_num("runs", r->runs, ok, true);
	json_str("baseline", r->b.valid ? r->base_name : NULL, true);
	json_num("baseline_median", r->b.med, r->b.valid, true);
	json_num("baseline_min", r->b.lo, r->b.valid, true);
	json_num("baseline_max", r->b.hi, r->b.valid, true);
	json_num("ratio", r->ratio.med, r->ratio.valid, true);
	json_num("ratio_min", r->ratio.lo, r->ratio.valid, true);
	json_num("ratio_max", r->ratio.hi, r->ratio.valid, true);
	json_str("ratio_of", r->ratio.valid ? r->ratio_of : NULL, true);
	json_num("control", r->control.med, r->control.valid, true);
	json_str("target", r->t.text ? r->t.text : "-", true);
	json_str("verdict", ok ? verdict_text(r->v, r->control, vb, sizeof(vb)) : NULL,
		 true);
	json_str("skipped", ok ? NULL : r->skip, true);
	json_str("note", r->note[0] ? r->note : NULL, false);
	printf("}\n");
}

void emit(const struct row *r)
{
	rows++;
	if (!r->skip[0])
		verdicts[r->v]++;
	char m[128], b[192], bs[128], ra[128], vb[64];

	if (json) {
		emit_json(r);
		fflush(stdout);
		return;
	}
	if (r->skip[0]) {
		printf("%-4s %-46s %s\n", r->id, r->name, r->skip);
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
	fmt_stat(ra, sizeof(ra), r->ratio, "x", true);
	printf("%-4s %-46s %-30s %-34s %-22s %-12s %s\n", r->id, r->name, m, b,
	       r->ratio.valid ? ra : "-", r->t.text ? r->t.text : "-",
	       verdict_text(r->v, r->control, vb, sizeof(vb)));
	if (r->note[0])
		printf("     %s\n", r->note);
	fflush(stdout);
}

void emit_series(const char *id, const char *name, const char *unit,
		 const struct series *s, const struct target *t, const char *base_name,
		 const char *ratio_of, const char *fmt, ...)
{
	struct row r = row_new(id, name, unit);
	va_list ap;

	row_from(&r, s, t, base_name, ratio_of);
	va_start(ap, fmt);
	vsnprintf(r.note, sizeof(r.note), fmt, ap);
	va_end(ap);
	emit(&r);
}

struct row row_new(const char *id, const char *name, const char *unit)
{
	struct row r = { .id = id, .name = name, .unit = unit, .runs = 0 };

	return r;
}

void emit_skip(const char *id, const char *name, const char *why)
{
	struct row r = row_new(id, name, "");

	snprintf(r.skip, sizeof(r.skip), "%s", why);
	emit(&r);
}

/*
 * The baseline's memory: a MAP_SHARED mapping of a fresh @len-byte memfd,
 * the shmem that gmem's own host mappings are made of. Its fd in *@fd.
 * Returns MAP_FAILED (with a row for @id saying why) on failure.
 */
uint8_t *map_memfd(size_t len, int *fd, const char *id, const char *name)
{
	uint8_t *p;

	*fd = memfd_create("gmem-bench", 0);
	if (*fd < 0 || ftruncate(*fd, (off_t)len) < 0) {
		emit_error(id, name, "memfd_create/ftruncate", -errno);
		return MAP_FAILED;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
	if (p == MAP_FAILED)
		emit_error(id, name, "mmap", -errno);
	return p;
}

void unmap_memfd(uint8_t *p, size_t len, int *fd)
{
	if (p != MAP_FAILED)
		munmap(p, len);
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* A row for a case that a failed call ended; the exit status becomes 1. */
void emit_error(const char *id, const char *name, const char *call, int err)
{
	struct row r = row_new(id, name, "");

	snprintf(r.skip, sizeof(r.skip), "error: %s = %d (%s): %s", call, err,
		 strerror(-err), gmem_last_error());
	emit(&r);
	failed = true;
}

/* ------------------------------------------------------------ environment */

int env_open(struct env *e, uint64_t capacity, const char *arch)
{
	e->pool = gmem_pool_create(capacity);
	e->vm = -1;
	if (e->pool < 0)
		return e->pool;
	e->vm = gmem_vm_create(e->pool, arch, 0);
	return e->vm < 0 ? e->vm : 0;
}

void env_close(struct env *e)
{
	if (e->vm >= 0)
		gmem_vm_close(e->vm);
	if (e->pool >= 0)
		gmem_pool_close(e->pool);
	e->vm = e->pool = -1;
}

void close_fd(int *fd)
{
	if (*fd >= 0)
		gmem_close(*fd);
	*fd = -1;
}

/* ----------------------------------------------------------- threads */

struct worker {
	void *(*fn)(void *);
	void *arg;
	atomic_int *go;		/* 1: start; -1: a thread could not be made */
	uint64_t t0, t1;
};

static void *worker_main(void *p)
{
	struct worker *w = p;
	int go;

	while (!(go = atomic_load(w->go)))
		;
	if (go < 0)
		return NULL;
	w->t0 = now_ns();
	w->fn(w->arg);
	w->t1 = now_ns();
	return NULL;
}

double run_threads(int n, void *(*const *fn)(void *), void *const *arg)
{
	struct worker w[8];
	pthread_t th[8];
	atomic_int go = 0;
	uint64_t t0 = UINT64_MAX, t1 = 0;
	int i, made;

	if (n < 1 || n > 8)
		return NAN;
	for (i = 0; i < n; i++)
		w[i] = (struct worker){ .fn = fn[i], .arg = arg[i], .go = &go };
	for (made = 1; made < n; made++)
		if (pthread_create(&th[made], NULL, worker_main, &w[made]))
			break;
	atomic_store(&go, made == n ? 1 : -1);
	if (made == n)
		worker_main(&w[0]);
	for (i = 1; i < made; i++)
		pthread_join(th[i], NULL);
	if (made < n)
		return NAN;
	for (i = 0; i < n; i++) {
		t0 = w[i].t0 < t0 ? w[i].t0 : t0;
		t1 = w[i].t1 > t1 ? w[i].t1 : t1;
	}
	return (double)(t1 - t0);
}

struct compute {
	uint64_t iters, sink;
	atomic_bool *stop;	/* a spinner: run until set */
};

/* A loop of multiply-adds on a local: no memory shared with any thread. */
static void *compute_main(void *p)
{
	struct compute *c = p;
	uint64_t x = 1, i;

	if (c->stop) {
		while (!atomic_load_explicit(c->stop, memory_order_relaxed))
			for (i = 0; i < 1000; i++)
				x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	} else {
		for (i = 0; i < c->iters; i++)
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	}
	c->sink = x;
	return NULL;
}

double compute_ns(int nthreads, uint64_t iters, bool spinner)
{
	struct compute c[8], spin = { 0 };
	void *(*fn[8])(void *);
	void *arg[8];
	atomic_bool stop = false;
	pthread_t th;
	double ns;
	int i;

	if (nthreads < 1 || nthreads > 8)
		return NAN;
	for (i = 0; i < nthreads; i++) {
		c[i] = (struct compute){ .iters = iters };
		fn[i] = compute_main;
		arg[i] = &c[i];
	}
	spin.stop = &stop;
	if (spinner && pthread_create(&th, NULL, compute_main, &spin))
		return NAN;
	ns = run_threads(nthreads, fn, arg);
	if (spinner) {
		atomic_store(&stop, true);
		pthread_join(th, NULL);
	}
	return ns;
}

/* ------------------------------------------------------- measuring children */

int run_self(const char *const *argv, char *out, size_t len)
{
	int pipefd[2], st;
	size_t got = 0;
	ssize_t r;
	pid_t pid;

	out[0] = '\0';
	if (pipe(pipefd))
		return -1;
	pid = fork();
	if (pid < 0) {
		close(pipefd[0]);
		close(pipefd[1]);
		return -1;
	}
	if (pid == 0) {
		dup2(pipefd[1], 1);
		close(pipefd[0]);
		close(pipefd[1]);
		close(2);
		execv("/proc/self/exe", (char *const *)argv);
		_exit(127);
	}
	close(pipefd[1]);
	while (got < len - 1 && (r = read(pipefd[0], out + got, len - 1 - got)) > 0)
		got += (size_t)r;
	out[got] = '\0';
	close(pipefd[0]);
	waitpid(pid, &st, 0);
	return got && WIFEXITED(st) && !WEXITSTATUS(st) ? 0 : -1;
}

/* ----------------------------------------------------------- command */

static int usage(FILE *out)
{
	fprintf(out,
		"usage: gmem bench [--quick] [--json] [CASE...]\n"
		"\n"
		"Run the benchmark cases (all, or those numbered). Each row runs several\n"
		"times, its baseline or control interleaved run by run; it prints the\n"
		"median and its spread (the order statistics bounding the median with\n"
		"90%% confidence), the ratio, and the verdict on the design's target:\n"
		"met, MISSED, noisy (the spread straddles the target after more runs),\n"
		"or no verdict (the control did not reach the target itself).\n"
		"\n"
		"cases:\n"
		"  1  conversion of a 4 KiB page: random pages of a map of 1,000,000\n"
		"     ranges (vs the same lookups in a sorted array); host-mapped, the\n"
		"     host touching the page after each pair (vs an mprotect pair)\n"
		"  2  destructive conversion of 1 GiB the guest has written, snp and\n"
		"     tdx (vs memset of 1 GiB, interleaved)\n"
		"  3  faults with 1,000,000 ranges: first faults on absent entries,\n"
		"     present pages, two threads (vs a compute control)\n"
		"  4  metadata per GiB, counted by gmem and as the process's growth\n"
		"  5  beside the kernel's guest_memfd: first-touch faults, punch hole,\n"
		"     fallocate allocate (skipped without /dev/kvm)\n"
		"  6  conversions and faults together, 2 threads (vs a compute control)\n"
		"  7  growth: file size, ranges, bindings, host mappings, VMs\n"
		"  8  huge folios: split and merge, first faults on a 1 GiB folio\n"
		"  9  the KVM layer under gmem exec vs bare / gmem.h\n"
		"     (skipped without /dev/kvm)\n"
		"\n"
		"options:\n"
		"  --quick   3 runs (up to 8 if noisy), shorter loops, same scale (~30 s)\n"
		"  --json    one JSON object per result line\n"
		"  --help    this text\n");
	return out == stdout ? 0 : 2;
}

int cmd_bench(int argc, char **argv)
{
	static void (*const cases[])(void) = {
		case1, case2, case3, case4, case5, case6, case7, case8, case9,
	};
	bool want[9] = { false };
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
		} else if (!strcmp(a, "--kvm-child") && i + 2 < argc) {
			return bench_kvm_child(argv[i + 1], atol(argv[i + 2]));
		} else if (!strcmp(a, "--metadata-child") && i + 1 < argc) {
			return bench_metadata_child(argv[i + 1]);
		} else if (a[0] >= '1' && a[0] <= '9' && !a[1]) {
			want[a[0] - '1'] = true;
			any = true;
		} else {
			fprintf(stderr, "gmem bench: unknown argument '%s' (try gmem bench --help)\n",
				a);
			return 2;
		}
	}
	min_runs = quick ? 3 : 5;
	max_runs = quick ? 8 : MAX_SAMPLES;
	/* 7b reuses what case 3 measures. */
	if (want[6])
		want[2] = true;
	if (json)
		json_header(stdout, "bench");
	else {
		if (uname(&u))
			memset(&u, 0, sizeof(u));
		printf("gmem bench%s: %d runs per row (up to %d while noisy); %ld CPUs, %s %s\n\n",
		       quick ? " --quick" : "", min_runs, max_runs,
		       sysconf(_SC_NPROCESSORS_ONLN), u.sysname, u.release);
		print_host_pages();
		table_header();
	}
	t0 = now_ns();
	for (i = 0; i < 9; i++)
		if (!any || want[i])
			cases[i]();
	if (!json)
		printf("\ntotal %.1f s%s\n", (double)(now_ns() - t0) / 1e9,
		       failed ? "; some cases failed (error rows above)" : "");
	else {
		printf("{\"type\":\"summary\",\"schema\":%d,\"rows\":%d,\"met\":%d,"
		       "\"missed\":%d,\"noisy\":%d,\"no_verdict\":%d,\"seconds\":%.1f,"
		       "\"status\":%d,\"message\":", GMEM_JSON_SCHEMA, rows,
		       verdicts[VERDICT_MET], verdicts[VERDICT_MISSED],
		       verdicts[VERDICT_NOISY], verdicts[VERDICT_NO_CONTROL],
		       (double)(now_ns() - t0) / 1e9, failed ? 1 : 0);
		json_string(stdout, failed ? "some cases failed: see the rows whose skipped is set" : NULL);
		printf("}\n");
	}
	return failed ? 1 : 0;
}
