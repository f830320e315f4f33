// SPDX-License-Identifier: MIT
/*
 * gmem bench - the benchmark suite: each case of docs/PERFORMANCE.md run
 * several times, median and min..max, a baseline measured in the same run,
 * the ratio and the target of the design, met or not.
 *
 * Times come from CLOCK_MONOTONIC. Nothing here asserts on a time: a missed
 * target is a line of output, not a failure. A failed library call ends its
 * case with an "error:" row and makes the exit status 1.
 *
 * This file holds the options, the statistics, the rows and their output,
 * and the command; the cases are in convert.c (1, 2, 6), fault.c
 * (3, 5, 7) and folio.c (4, 8).
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "gmem.h"
#include "cli.h"
#include "bench.h"

/* ------------------------------------------------------------ options */

bool quick;
int nruns;
static bool json, failed;

/* ------------------------------------------------------------ timing */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct stat3 summarize(const double *v, int n)
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

struct stat3 single(double v)
{
	struct stat3 r = { v, v, v, true };

	return r;
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

void emit(const struct row *r)
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

struct row row_new(const char *id, const char *name, const char *unit)
{
	struct row r = { .id = id, .name = name, .unit = unit, .runs = nruns,
			 .ratio = NAN, .target = "-", .met = MET_NA };

	return r;
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

/* The baseline of @r and the ratio of the medians, measured / baseline. */
void row_compare(struct row *r, const char *base_name, struct stat3 b,
		 const char *ratio_of)
{
	r->base_name = base_name;
	r->b = b;
	r->ratio = r->m.med / b.med;
	r->ratio_of = ratio_of;
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
		"  9  the KVM layer: a passed-through ioctl and a conversion through\n"
		"     KVM_SET_MEMORY_ATTRIBUTES2 under gmem exec vs bare / gmem.h\n"
		"     (skipped without /dev/kvm)\n"
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
		} else if (a[0] >= '1' && a[0] <= '9' && !a[1]) {
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
	for (i = 0; i < 9; i++)
		if (!any || want[i])
			cases[i]();
	if (!json)
		printf("\ntotal %.1f s%s\n", (double)(now_ns() - t0) / 1e9,
		       failed ? "; some cases failed (error rows above)" : "");
	return failed ? 1 : 0;
}
