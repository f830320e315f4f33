// SPDX-License-Identifier: MIT
/*
 * verdict.c - the median of a row's samples, its spread, and the verdict
 * against the design's target (verdict.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verdict.h"

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/*
 * The k-th smallest and k-th largest of n samples bound the median with
 * probability 1 - 2 * P(Binomial(n, 1/2) < k). Return the largest k that
 * keeps 90%, at least 1 (min..max).
 */
static int spread_rank(int n)
{
	double below = 0, c = 1;	/* sum of C(n, i) for i < k; C(n, k) */
	int k;

	for (k = 1; 2 * k < n; k++) {
		below += c;
		c = c * (n - (k - 1)) / k;
		/* now below = sum_{i<k} C(n,i), c = C(n,k) */
		if (1.0 - 2.0 * (below + c) / (double)(1u << n) < 0.90)
			break;
	}
	return k;
}

struct stat3 summarize(const double *v, int n)
{
	double s[MAX_SAMPLES];
	struct stat3 r = { 0 };
	int k;

	if (n <= 0 || n > MAX_SAMPLES)
		return r;
	memcpy(s, v, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_double);
	k = spread_rank(n);
	r.med = n & 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	r.lo = s[k - 1];
	r.hi = s[n - k];
	r.valid = true;
	return r;
}

struct stat3 single(double v)
{
	struct stat3 r = { v, v, v, true };

	return r;
}

enum verdict judge(const struct target *t, struct stat3 s, struct stat3 control)
{
	bool good_lo, good_hi;

	if (!t || !t->text || !s.valid || isnan(s.med))
		return VERDICT_NONE;
	if (t->control_min > 0 && (!control.valid || control.med < t->control_min))
		return VERDICT_NO_CONTROL;
	good_lo = t->at_most ? s.lo <= t->limit : s.lo >= t->limit;
	good_hi = t->at_most ? s.hi <= t->limit : s.hi >= t->limit;
	if (good_lo && good_hi)
		return VERDICT_MET;
	if (!good_lo && !good_hi)
		return VERDICT_MISSED;
	return VERDICT_NOISY;
}

bool want_more(const struct target *t, struct stat3 s, struct stat3 control, int n,
	       int min_runs, int max_runs)
{
	if (n < min_runs)
		return true;
	return n < max_runs && n < MAX_SAMPLES && judge(t, s, control) == VERDICT_NOISY;
}

const char *verdict_text(enum verdict v, struct stat3 control, char *buf, size_t len)
{
	switch (v) {
	case VERDICT_MET:
		return "met";
	case VERDICT_MISSED:
		return "MISSED";
	case VERDICT_NOISY:
		return "noisy";
	case VERDICT_NO_CONTROL:
		snprintf(buf, len, "no verdict: control scaled %.2fx", control.med);
		return buf;
	default:
		return "-";
	}
}
