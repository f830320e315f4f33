/* SPDX-License-Identifier: MIT */
/*
 * bench.h - what the files of gmem bench share: the options, the series of
 * samples a row collects and the verdict it gets (verdict.h), the rows and
 * their output (bench.c); the compute control of the thread-scaling rows
 * and the VM a case runs in; the cases.
 */
#ifndef GMEM_BENCH_H
#define GMEM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gmem.h"
#include "lib/util.h"
#include "verdict.h"

#define KiB		(1ULL << 10)
#define MiB		(1ULL << 20)
#define GiB		(1ULL << 30)
#define TiB		(1ULL << 40)
#define PAGE		GMEM_PAGE_SIZE

/*
 * The pool of every case but 7a: room for the files a case makes, and
 * address space a sanitizer's shadow memory leaves room for (the default
 * 4 TiB is not).
 */
#define POOL_BYTES	(16 * GiB)

/* --quick; the runs every row takes, and the most a noisy one may take. */
extern bool quick;
extern int min_runs, max_runs;

/*
 * The samples of one row, run by run: the measured value, the baseline
 * measured in the same run (NAN if none) and the control beside it (NAN if
 * none). The ratio of a run is measured / baseline.
 */
struct series {
	int n;
	double m[MAX_SAMPLES], b[MAX_SAMPLES], c[MAX_SAMPLES];
};

void series_add(struct series *s, double m, double b, double c);
/* One more run for this row? (want_more on the value the target is on) */
bool series_more(const struct series *s, const struct target *t);

struct row {
	const char *id;		/* "1a" */
	const char *name;	/* what is measured */
	const char *unit;
	struct stat3 m;		/* measured */
	int runs;
	const char *base_name;
	struct stat3 b;		/* baseline, if valid */
	struct stat3 ratio;	/* of the per-run ratios, if valid */
	const char *ratio_of;	/* what the ratio divides */
	struct stat3 control;	/* of the control, if valid */
	struct target t;
	enum verdict v;
	char skip[200];		/* non-empty: the row was not measured */
	char note[400];
};

/* A row with no baseline, ratio or target yet. */
struct row row_new(const char *id, const char *name, const char *unit);
/* Fill @r from @s: the statistics, the baseline and ratio, and the verdict on @t. */
void row_from(struct row *r, const struct series *s, const struct target *t,
	      const char *base_name, const char *ratio_of);

/* Make a row of @s as row_from does, its note from @fmt, and print it. */
void emit_series(const char *id, const char *name, const char *unit,
		 const struct series *s, const struct target *t, const char *base_name,
		 const char *ratio_of, const char *fmt, ...)
	__attribute__((format(printf, 8, 9)));

/* Print a row: a line of the table, or a JSON object with --json. */
void emit(const struct row *r);
/* A row that says why it was not measured. */
void emit_skip(const char *id, const char *name, const char *why);
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

uint8_t *map_memfd(size_t len, int *fd, const char *id, const char *name);
void unmap_memfd(uint8_t *p, size_t len, int *fd);

struct env {
	int pool, vm;
};

/* A pool of @capacity bytes and a VM of @arch in it. */
int env_open(struct env *e, uint64_t capacity, const char *arch);
void env_close(struct env *e);
void close_fd(int *fd);

/*
 * The compute control: @nthreads threads each running @iters rounds of a
 * loop that touches no shared memory; ns from the first start to the last
 * end. With @spinner, one more thread spins beside them until they end.
 */
double compute_ns(int nthreads, uint64_t iters, bool spinner);

/*
 * Run @fn[i](@arg[i]) in @n threads (at most 8) released together; ns from
 * the first start to the last end, NAN if a thread could not be made.
 */
double run_threads(int n, void *(*const *fn)(void *), void *const *arg);

/* A page attribute of a file fragmented as frag_build leaves it. */
struct frag {
	int fd;
	uint64_t size, pairs;	/* pages 1, 3, ... 2*pairs-1 are shared */
};

/* Make @ranges attribute ranges (or the next odd count above) in @f. */
int frag_build(struct frag *f, uint64_t ranges);
static inline bool frag_shared(const struct frag *f, uint64_t page)
{
	return (page & 1) && page < 2 * f->pairs;
}
/* ns per conversion: @pairs random pages of @f flipped and flipped back. */
double frag_convert_ns(const struct frag *f, uint64_t pairs, uint64_t seed, int *err);

/* What case 3 measures while its map grows to 1M ranges (fault.c), for 7b. */
#define NSTAGES 4
struct frag_growth {
	bool done;
	int nstages;
	int64_t ranges[NSTAGES];
	/* each stage's runs, min_runs of them */
	double first[NSTAGES][MAX_SAMPLES], present[NSTAGES][MAX_SAMPLES];
	double conv[NSTAGES][MAX_SAMPLES];
	char skip[200];
};
extern struct frag_growth growth;

/* convert.c: fault every page of [@gpa, @gpa + @len) with @flags. */
int fault_all(int vm, uint64_t gpa, uint64_t len, unsigned int flags);

/*
 * Run this gmem binary with @argv (NULL-terminated, argv[0] its name), its
 * stderr closed; its stdout in @out (@len bytes, NUL-terminated). 0 if it
 * printed something and exited 0, else -1.
 */
int run_self(const char *const *argv, char *out, size_t len);

/* The cases, in convert.c, fault.c, folio.c, grow.c, kvm.c. */
void case1(void);
void case2(void);
void case3(void);
void case4(void);
void case5(void);
void case6(void);
void case7(void);
void case8(void);
void case9(void);
/* Measuring children of case 4 (folio.c) and case 9 (kvm.c). */
int bench_metadata_child(const char *kind);
int bench_kvm_child(const char *kind, long iters);

#endif
