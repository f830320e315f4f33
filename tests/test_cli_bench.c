// SPDX-License-Identifier: MIT
/*
 * gmem bench: the command runs every case and prints a row for each, --json
 * lines carry the expected keys, an unknown option is refused. No assertion
 * on any time: only on what is printed and the exit status.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

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
	ASSERT_TRUE(has_row(run.out, "1a", "no host mapping"));
	ASSERT_TRUE(has_row(run.out, "1b", "host-mapped"));
	ASSERT_TRUE(has_row(run.out, "2a", "snp"));
	ASSERT_TRUE(has_row(run.out, "2b", "tdx"));
	ASSERT_TRUE(has_row(run.out, "3a", "1 thread"));
	ASSERT_TRUE(has_row(run.out, "3b", "2 threads"));
	ASSERT_TRUE(has_row(run.out, "4a", "4 KiB folios"));
	ASSERT_TRUE(has_row(run.out, "4b", "2 MiB folios"));
	/* Measured side by side, or "skipped: <reason>" without /dev/kvm. */
	ASSERT_TRUE(has_row(run.out, "5a", "first-touch"));
	ASSERT_TRUE(has_row(run.out, "5b", "punch"));
	ASSERT_TRUE(has_row(run.out, "6a", "conversions/s"));
	ASSERT_TRUE(has_row(run.out, "6b", "faults/s"));
	ASSERT_TRUE(has_row(run.out, "7a", "1 TiB"));
	ASSERT_TRUE(has_row(run.out, "7b", "ranges"));
	ASSERT_TRUE(has_row(run.out, "8a", "inside a 1 GiB folio"));
	ASSERT_TRUE(has_row(run.out, "8b", "first fault on a 1 GiB folio"));
	ASSERT_TRUE(has_row(run.out, "8c", "merged 1 GiB folio"));
	ASSERT_TRUE(strstr(run.out, "--quick"));
	ASSERT_TRUE(!strstr(run.out, "error:"));
}

TEST(bench_json_lines_have_the_expected_keys)
{
	static const char *const args[] = { "bench", "--quick", "--json", "1", "4", NULL };
	static const char *const keys[] = {
		"\"case\":", "\"name\":", "\"unit\":", "\"median\":", "\"min\":",
		"\"max\":", "\"runs\":", "\"baseline\":", "\"baseline_median\":",
		"\"ratio\":", "\"target\":", "\"met\":", "\"skipped\":", "\"note\":",
	};
	char *line, *save = NULL;
	unsigned int k;
	int lines = 0;

	bench(args);
	ASSERT_EQ(run.status, 0);
	for (line = strtok_r(run.out, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		ASSERT_EQ(line[0], '{');
		ASSERT_EQ(line[strlen(line) - 1], '}');
		for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			ASSERT_TRUE(strstr(line, keys[k]));
		lines++;
	}
	/* 1a, 1b, 4a, 4b */
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
