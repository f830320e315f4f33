// SPDX-License-Identifier: MIT
/*
 * gmem bench: the verdicts (met, missed, noisy, no verdict) on given
 * samples; the command runs every case and prints a row for each, --json
 * lines carry the expected keys, an unknown option is refused. No assertion
 * on any time: only on the verdict logic, what is printed and the exit status.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "bench/verdict.h"

/* ------------------------------------------------ the verdict on samples */

static const struct target at_most_100 = { "< 100 ns", 100, true, true, 0 };
static const struct target at_least_08 = { ">= 0.80x", 0.8, false, false, 0 };
static const struct target scaling_09 = { ">= 0.90x", 0.9, false, false, 1.8 };
static const struct stat3 no_control;

static struct stat3 of(const double *v, int n)
{
	return summarize(v, n);
}

TEST(spread_is_min_to_max_up_to_seven_samples_then_narrows)
{
	static const double v[12] = { 9, 1, 5, 12, 3, 7, 11, 2, 8, 4, 10, 6 };
	struct stat3 s;

	s = of(v, 5);		/* 9 1 5 12 3 */
	ASSERT_EQ(s.med, 5);
	ASSERT_EQ(s.lo, 1);
	ASSERT_EQ(s.hi, 12);
	s = of(v, 7);		/* + 7 11 */
	ASSERT_EQ(s.med, 7);
	ASSERT_EQ(s.lo, 1);
	ASSERT_EQ(s.hi, 12);
	/* Eight: the 2nd smallest and 2nd largest bound the median at >= 90%. */
	s = of(v, 8);		/* 1 2 3 5 7 9 11 12 */
	ASSERT_EQ(s.lo, 2);
	ASSERT_EQ(s.hi, 11);
	ASSERT_EQ(s.med * 2, 12);
	/* Twelve: the 3rd of each end. */
	s = of(v, 12);
	ASSERT_EQ(s.lo, 3);
	ASSERT_EQ(s.hi, 10);
	ASSERT_TRUE(!of(v, 0).valid);
	ASSERT_TRUE(!of(v, MAX_SAMPLES + 1).valid);
}

/*
 * Met when the whole spread is on the target's side, missed when it is all on
 * the wrong side, noisy when it straddles the limit (here the median meets
 * the target and one run does not).
 */
TEST(verdict_is_met_missed_or_noisy_by_where_the_spread_lies)
{
	static const struct {
		const struct target *t;
		double v[5];
		int n;
		enum verdict want;
	} c[] = {
		{ &at_most_100, { 60, 70, 80, 90, 99 }, 5, VERDICT_MET },
		{ &at_least_08, { 0.81, 0.95, 1.2 }, 3, VERDICT_MET },
		{ &at_most_100, { 101, 150, 884, 900, 1200 }, 5, VERDICT_MISSED },
		{ &at_least_08, { 0.15, 0.19, 0.22, 0.29, 0.79 }, 5, VERDICT_MISSED },
		{ &at_most_100, { 74, 80, 85, 90, 285 }, 5, VERDICT_NOISY },
		{ &at_least_08, { 0.79, 1.03, 1.05 }, 3, VERDICT_NOISY },
	};
	unsigned int i;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++)
		ASSERT_EQ(judge(c[i].t, of(c[i].v, c[i].n), no_control), c[i].want);
}

TEST(more_runs_are_taken_while_noisy_and_one_outlier_then_stops_mattering)
{
	double v[MAX_SAMPLES] = { 74, 80, 285, 85, 90 };
	int n = 5;

	ASSERT_TRUE(want_more(&at_most_100, of(v, 3), no_control, 3, 5, 12));
	ASSERT_TRUE(want_more(&at_most_100, of(v, n), no_control, n, 5, 12));
	/* Runs that meet it: from eight on the outlier leaves the spread. */
	while (want_more(&at_most_100, of(v, n), no_control, n, 5, 12))
		v[n++] = 82;
	ASSERT_EQ(n, 8);
	ASSERT_EQ(judge(&at_most_100, of(v, n), no_control), VERDICT_MET);
	/* Still straddling at the most runs allowed: noisy, and no more runs. */
	{
		double w[6] = { 50, 150, 50, 150, 50, 150 };

		ASSERT_TRUE(!want_more(&at_most_100, of(w, 6), no_control, 6, 3, 6));
		ASSERT_EQ(judge(&at_most_100, of(w, 6), no_control), VERDICT_NOISY);
	}
	/* Met or missed at the minimum: no more runs. */
	{
		double w[3] = { 10, 20, 30 };

		ASSERT_TRUE(!want_more(&at_most_100, of(w, 3), no_control, 3, 3, 8));
	}
}

TEST(no_verdict_when_the_control_is_below_its_minimum)
{
	static const double ratio[5] = { 1.0, 1.0, 1.1, 1.2, 1.3 };
	static const double low[5] = { 0.5, 0.6, 0.6, 0.7, 1.9 };
	static const double good[5] = { 1.8, 1.9, 1.9, 2.0, 2.0 };
	char buf[64];

	ASSERT_EQ(judge(&scaling_09, of(ratio, 5), of(low, 5)), VERDICT_NO_CONTROL);
	ASSERT_TRUE(!strcmp(verdict_text(VERDICT_NO_CONTROL, of(low, 5), buf, sizeof(buf)),
			    "no verdict: control scaled 0.60x"));
	/* A control never measured is no control either. */
	ASSERT_EQ(judge(&scaling_09, of(ratio, 5), no_control), VERDICT_NO_CONTROL);
	ASSERT_EQ(judge(&scaling_09, of(ratio, 5), of(good, 5)), VERDICT_MET);
	/* A target without a control ignores it. */
	ASSERT_EQ(judge(&at_least_08, of(ratio, 5), of(low, 5)), VERDICT_MET);
}

TEST(a_row_without_target_has_no_verdict)
{
	static const double v[3] = { 1, 2, 3 };
	static const struct target none = { 0 };
	char buf[64];

	ASSERT_EQ(judge(&none, of(v, 3), no_control), VERDICT_NONE);
	ASSERT_EQ(judge(NULL, of(v, 3), no_control), VERDICT_NONE);
	ASSERT_TRUE(!strcmp(verdict_text(VERDICT_NONE, no_control, buf, sizeof(buf)), "-"));
	ASSERT_TRUE(!strcmp(verdict_text(VERDICT_MET, no_control, buf, sizeof(buf)), "met"));
	ASSERT_TRUE(!strcmp(verdict_text(VERDICT_MISSED, no_control, buf, sizeof(buf)),
			    "MISSED"));
	ASSERT_TRUE(!strcmp(verdict_text(VERDICT_NOISY, no_control, buf, sizeof(buf)),
			    "noisy"));
}

/* ---------------------------------------------------------- the command */

/* Does some line of @out start with @id (case column) and contain @what? */
static int has_row(const char *out, const char *id, const char *what)
{
	const char *line = out;

	while (line && *line) {
		const char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);
		char buf[512];

		if (len >= sizeof(buf))
			len = sizeof(buf) - 1;
		memcpy(buf, line, len);
		buf[len] = '\0';
		if (!strncmp(buf, id, strlen(id)) && buf[strlen(id)] == ' ' &&
		    strstr(buf, what))
			return 1;
		line = nl ? nl + 1 : NULL;
	}
	return 0;
}

static struct output run;

static void bench(const char *const *args)
{
	output_free(&run);
	run = run_gmem(args);
}

TEST(bench_quick_exits_0_and_prints_every_case)
{
	static const char *const args[] = { "bench", "--quick", NULL };

	bench(args);
	ASSERT_EQ(run.status, 0);
	ASSERT_TRUE(strstr(run.out, "measured"));
	ASSERT_TRUE(has_row(run.out, "1a", "1M ranges"));
	ASSERT_TRUE(has_row(run.out, "1b", "host touches"));
	ASSERT_TRUE(has_row(run.out, "2a", "snp"));
	ASSERT_TRUE(has_row(run.out, "2b", "tdx"));
	ASSERT_TRUE(has_row(run.out, "3a", "first fault"));
	ASSERT_TRUE(has_row(run.out, "3b", "2 threads"));
	ASSERT_TRUE(has_row(run.out, "3c", "present-page"));
	ASSERT_TRUE(has_row(run.out, "4a", "4 KiB folios"));
	ASSERT_TRUE(has_row(run.out, "4b", "2 MiB folios"));
	/* Measured side by side, or "skipped: <reason>" without /dev/kvm. */
	ASSERT_TRUE(has_row(run.out, "5a", "first-touch"));
	ASSERT_TRUE(has_row(run.out, "5b", "punch"));
	ASSERT_TRUE(has_row(run.out, "5c", "fallocate allocate"));
	ASSERT_TRUE(has_row(run.out, "6a", "conversions/s"));
	ASSERT_TRUE(has_row(run.out, "6b", "faults/s"));
	ASSERT_TRUE(has_row(run.out, "7a", "1 TiB"));
	ASSERT_TRUE(has_row(run.out, "7b", "1M ranges"));
	ASSERT_TRUE(has_row(run.out, "7c", "16384 bindings"));
	ASSERT_TRUE(has_row(run.out, "7d", "4096 host mappings"));
	ASSERT_TRUE(has_row(run.out, "7e", "64 VMs"));
	ASSERT_TRUE(has_row(run.out, "8a", "inside a 1 GiB folio"));
	ASSERT_TRUE(has_row(run.out, "8b", "first fault on a 1 GiB folio"));
	ASSERT_TRUE(has_row(run.out, "8c", "merged 1 GiB folio"));
	ASSERT_TRUE(strstr(run.out, "--quick"));
	/* --quick measures the targets' scale: a million ranges, not fewer. */
	ASSERT_TRUE(strstr(run.out, "1000001 ranges in a"));
	ASSERT_TRUE(!strstr(run.out, "error:"));
}

TEST(bench_json_lines_have_the_expected_keys_and_a_verdict)
{
	static const char *const args[] = { "bench", "--quick", "--json", "1", "4", NULL };
	static const char *const keys[] = {
		"\"case\":", "\"name\":", "\"unit\":", "\"median\":", "\"min\":",
		"\"max\":", "\"runs\":", "\"baseline\":", "\"baseline_median\":",
		"\"ratio\":", "\"ratio_min\":", "\"ratio_max\":", "\"control\":",
		"\"target\":", "\"verdict\":", "\"skipped\":", "\"note\":",
	};
	static const char *const verdicts[] = {
		"\"verdict\":\"met\"", "\"verdict\":\"MISSED\"", "\"verdict\":\"noisy\"",
	};
	char *line, *save = NULL;
	unsigned int k;
	int lines = 0;

	bench(args);
	ASSERT_EQ(run.status, 0);
	for (line = strtok_r(run.out, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		int judged = 0;

		ASSERT_EQ(line[0], '{');
		ASSERT_EQ(line[strlen(line) - 1], '}');
		/* The header and the summary: test_cli_json checks them. */
		if (strncmp(line, "{\"type\":\"result\",", 17))
			continue;
		for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			ASSERT_TRUE(strstr(line, keys[k]));
		/* 1a, 1b, 4a and 4b all have a target: each gets a verdict. */
		for (k = 0; k < sizeof(verdicts) / sizeof(verdicts[0]); k++)
			judged += !!strstr(line, verdicts[k]);
		ASSERT_EQ(judged, 1);
		lines++;
	}
	ASSERT_EQ(lines, 4);
}

TEST(bench_unknown_option_exits_2_with_one_line)
{
	static const char *const args[] = { "bench", "--no-such-option", NULL };

	bench(args);
	ASSERT_EQ(run.status, 2);
	ASSERT_EQ(count_lines(run.err), 1);
	ASSERT_TRUE(strstr(run.err, "--no-such-option"));
	ASSERT_EQ(run.out[0], '\0');
}

TEST(bench_help_exits_0)
{
	static const char *const args[] = { "bench", "--help", NULL };

	bench(args);
	ASSERT_EQ(run.status, 0);
	ASSERT_TRUE(strstr(run.out, "--quick"));
	ASSERT_TRUE(strstr(run.out, "--json"));
}
