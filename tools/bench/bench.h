/* SPDX-License-Identifier: MIT */
/*
 * bench.h - what the files of gmem bench share: the options, the clock and
 * the statistics, the rows a case emits, and the VM a case runs in
 * (bench.c); the measuring helpers more than one case uses; the cases.
 */
#ifndef GMEM_BENCH_H
#define GMEM_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "gmem.h"
#include "lib/util.h"

#define KiB		(1ULL << 10)
#define MiB		(1ULL << 20)
#define GiB		(1ULL << 30)
#define TiB		(1ULL << 40)
#define PAGE		GMEM_PAGE_SIZE
#define MAX_RUNS	5

/* --quick, and how many times each case runs. */
extern bool quick;
extern int nruns;


struct stat3 {
	double med, lo, hi;
	bool valid;
};

/* Median, min and max of @n values; one value as all three. */
struct stat3 summarize(const double *v, int n);
struct stat3 single(double v);


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

/* A row with no baseline, ratio or target yet. */
struct row row_new(const char *id, const char *name, const char *unit);
uint8_t *map_memfd(size_t len, int *fd, const char *id, const char *name);
void unmap_memfd(uint8_t *p, size_t len, int *fd);
void row_compare(struct row *r, const char *base_name, struct stat3 b,
		 const char *ratio_of);

/* Print a row: a line of the table, or a JSON object with --json. */
void emit(const struct row *r);

/* A row for a case that a failed call ended; the exit status becomes 1. */
void emit_error(const char *id, const char *name, const char *call, int err);

/* Jump to "out" with an error row when a gmem call fails. */
#define TRY(id, name, call) do {					\
	long long _rc = (call);						\
	if (_rc < 0) {							\
		emit_error(id, name, #call, (int)_rc);			\
		goto out;						\
	}								\
} while (0)

struct env {
	int pool, vm;
};

/* A pool (0: the default capacity) and a VM of @arch in it. */
int env_open(struct env *e, uint64_t capacity, const char *arch);
void env_close(struct env *e);
void close_fd(int *fd);

/* convert.c: ns per pair of 4 KiB conversions, to shared and back. */
double time_convert_pairs(int fd, uint64_t off, int iters, int *err);

/* convert.c: fault every page of [@gpa, @gpa + @len) with @flags. */
int fault_all(int vm, uint64_t gpa, uint64_t len, unsigned int flags);

/* The cases, in convert.c, fault.c, folio.c, kvm.c. */
void case1(void);
void case2(void);
void case3(void);
void case4(void);
void case5(void);
void case6(void);
void case7(void);
void case8(void);
void case9(void);
/* kvm.c: a measuring child of case 9. */
int bench_kvm_child(const char *kind, long iters);

#endif
