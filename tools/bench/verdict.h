/* SPDX-License-Identifier: MIT */
/*
 * verdict.h - how gmem bench judges a target from the samples of a row: the
 * median and the spread of the samples, and met, missed, noisy or no
 * verdict. Pure functions of numbers, so the tests check them on samples.
 */
#ifndef GMEM_BENCH_VERDICT_H
#define GMEM_BENCH_VERDICT_H

#include <stdbool.h>
#include <stddef.h>

#define MAX_SAMPLES	12

/*
 * The median of the samples and its spread: the order statistics that bound
 * the median with at least 90% confidence (whatever the distribution), or
 * min..max where too few samples give less. More samples narrow the spread;
 * an outlier does not widen it once there are ten.
 */
struct stat3 {
	double med, lo, hi;
	bool valid;
};

struct stat3 summarize(const double *v, int n);
struct stat3 single(double v);

/* A target of the design, on a row's ratio or on its measured value. */
struct target {
	const char *text;	/* as printed: "< 1000 ns", ">= 0.80x"; NULL: none */
	double limit;
	bool at_most;		/* met at or below the limit (a time), else at or above */
	bool on_measured;	/* the limit is on the measured value, not the ratio */
	double control_min;	/* >0: no verdict unless the control's median reaches it */
};

enum verdict {
	VERDICT_NONE,		/* the row has no target */
	VERDICT_MET,		/* the whole spread is on the target's side */
	VERDICT_MISSED,		/* the whole spread is on the wrong side */
	VERDICT_NOISY,		/* the spread straddles the limit */
	VERDICT_NO_CONTROL,	/* the control itself did not reach its minimum */
};

/* The verdict of the samples' @s against @t, given the control's @control. */
enum verdict judge(const struct target *t, struct stat3 s, struct stat3 control);

/*
 * Should one more run be made? Yes below @min_runs; then, up to @max_runs,
 * as long as the verdict is noisy.
 */
bool want_more(const struct target *t, struct stat3 s, struct stat3 control, int n,
	       int min_runs, int max_runs);

/* "met", "MISSED", "noisy", "no verdict: control scaled 0.60x", "-". */
const char *verdict_text(enum verdict v, struct stat3 control, char *buf, size_t len);

#endif
