// SPDX-License-Identifier: MIT
/*
 * gmem check, run the way a user runs it: the built binary ($(O)/gmem, beside
 * this program's tests/ directory), its table, its determinism, its JSON, its
 * exit status and its usage errors.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static const char *const backends[] = { "sw", "snp", "tdx", "pkvm" };
static const char *const contracts[] = { "split", "legacy" };

/* Print @s as TAP comment lines. */
static void print_comment(const char *s)
{
	while (*s) {
		int len = strcspn(s, "\n");

		printf("#     %.*s\n", len, s);
		s += len + (s[len] == '\n');
	}
}

/* The default comparison run, made once: several tests read it. */
static const struct output *seed7(void)
{
	static const char *const args[] = { "check", "--ops", "300", "--seed", "7", NULL };
	static struct output o;
	static bool done;

	if (!done) {
		o = run_gmem(args);
		done = true;
		if (o.status) {
			printf("#   gmem check --ops 300 --seed 7 exited %d:\n",
			       o.status);
			print_comment(o.out);
			print_comment(o.err);
		}
	}
	return &o;
}

struct row {
	char backend[16], contract[16];
	unsigned long long ops;
	long long violations;
};

/* Rows of a table; returns how many, -1 if a line does not read as one. */
static int parse_table(const char *s, struct row *rows, int max)
{
	const char *line = strchr(s, '\n');
	int n = 0;

	if (strncmp(s, "backend", 7) || !line)
		return -1;
	/* The rows end at the first empty line (the note under the table). */
	for (line++; *line && *line != '\n' && n < max; n++) {
		if (sscanf(line, "%15s %15s %llu %lld", rows[n].backend,
			   rows[n].contract, &rows[n].ops,
			   &rows[n].violations) != 4)
			return -1;
		line = strchr(line, '\n');
		if (!line)
			return -1;
		line++;
	}
	return n;
}

static int find_row(const struct row *rows, int n, const char *backend,
		    const char *contract)
{
	int found = -1;

	for (int i = 0; i < n; i++) {
		if (strcmp(rows[i].backend, backend) ||
		    strcmp(rows[i].contract, contract))
			continue;
		if (found >= 0)
			return -2;	/* twice */
		found = i;
	}
	return found;
}

TEST(check_exits_zero_and_prints_a_row_for_every_backend_and_contract)
{
	const struct output *o = seed7();
	struct row rows[16];
	int n = parse_table(o->out, rows, 16);

	ASSERT_EQ(o->status, 0);
	ASSERT_EQ(n, 8);
	for (int b = 0; b < 4; b++) {
		for (int c = 0; c < 2; c++) {
			int i = find_row(rows, n, backends[b], contracts[c]);

			ASSERT_GE(i, 0);
			ASSERT_EQ(rows[i].ops, 300);
		}
	}
}

TEST(check_split_contract_rows_show_no_violations)
{
	const struct output *o = seed7();
	struct row rows[16];
	int n = parse_table(o->out, rows, 16);

	ASSERT_EQ(n, 8);
	for (int i = 0; i < n; i++) {
		if (strcmp(rows[i].contract, "split"))
			continue;
		if (rows[i].violations)
			printf("#   %s/split: %lld violations\n", rows[i].backend,
			       rows[i].violations);
		ASSERT_EQ(rows[i].violations, 0);
	}
}

TEST(check_prints_the_same_table_for_the_same_seed)
{
	static const char *const args[] = { "check", "--ops", "300", "--seed", "7", NULL };
	const struct output *first = seed7();
	struct output again = run_gmem(args);

	ASSERT_EQ(again.status, first->status);
	ASSERT_EQ(strcmp(again.out, first->out), 0);
	output_free(&again);
}

static long long sum_of(const char *s, const char *key)
{
	long long sum = 0;

	while ((s = strstr(s, key)))
		sum += strtoll(s += strlen(key), NULL, 10);
	return sum;
}

TEST(check_workload_depends_on_the_seed)
{
	static const char *const args8[] = { "check", "--ops", "300", "--seed", "8",
					     "--json", NULL };
	static const char *const args7[] = { "check", "--ops", "300", "--seed", "7",
					     "--json", NULL };
	struct output a = run_gmem(args8), b = run_gmem(args7);

	ASSERT_TRUE(strstr(a.out, "\"seed\":8,"));
	/* Another seed, another workload: the guest sees other exits. */
	ASSERT_NE(sum_of(a.out, "\"exits\":"), sum_of(b.out, "\"exits\":"));
	output_free(&a);
	output_free(&b);
}

/* The JSON of gmem check is tested by test_cli_json, with jq. */

/* ------------------------------------------------------- expected finding */

TEST(check_finds_the_legacy_contract_breaking_pkvm)
{
	static const char *const args[] = { "check", "--backend", "pkvm",
					    "--contract", "legacy", "--ops",
					    "2000", NULL };
	struct output o = run_gmem(args);
	struct row rows[4];

	/* A legacy-contract violation is the expected finding, not a failure. */
	ASSERT_EQ(o.status, 0);
	ASSERT_EQ(parse_table(o.out, rows, 4), 1);
	ASSERT_EQ(strcmp(rows[0].backend, "pkvm"), 0);
	ASSERT_EQ(strcmp(rows[0].contract, "legacy"), 0);
	ASSERT_EQ(rows[0].ops, 2000);
	ASSERT_GT(rows[0].violations, 0);
	/* Marked as the expected finding, in the row and under the table. */
	ASSERT_TRUE(strstr(o.out, " (expected) "));
	ASSERT_TRUE(strstr(o.out, "\n(expected) pkvm under the legacy contract"));
	output_free(&o);
}

/* --------------------------------------------------------------- usage */

/* Bad usage: status 2, nothing on stdout, one line on stderr naming gmem check. */
static void expect_usage_error(const char *const *args)
{
	struct output o = run_gmem(args);

	if (o.status != 2 || count_lines(o.err) != 1) {
		printf("#   gmem %s %s: status %d, stderr:\n", args[0],
		       args[1] ? args[1] : "", o.status);
		print_comment(o.err);
	}
	ASSERT_EQ(o.status, 2);
	ASSERT_EQ(o.out[0], 0);
	ASSERT_EQ(count_lines(o.err), 1);
	ASSERT_EQ(strncmp(o.err, "gmem check: ", 12), 0);
	output_free(&o);
}

TEST(check_rejects_an_unknown_option_with_one_line_and_status_2)
{
	static const char *const a[] = { "check", "--frobnicate", NULL };
	static const char *const b[] = { "check", "--ops", "10", "extra", NULL };

	expect_usage_error(a);
	expect_usage_error(b);
}

TEST(check_rejects_garbage_negative_and_overflowing_numbers)
{
	static const char *const args[][4] = {
		{ "check", "--ops", "12x", NULL },
		{ "check", "--ops", "", NULL },
		{ "check", "--ops", "-1", NULL },
		{ "check", "--ops", " 5", NULL },
		{ "check", "--seed", "18446744073709551616", NULL },
		{ "check", "--seed", "0x10", NULL },
		{ "check", "--seed", NULL },
	};

	for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++)
		expect_usage_error(args[i]);
}

TEST(check_rejects_unknown_backends_and_contracts)
{
	static const char *const args[][4] = {
		{ "check", "--backend", "sev", NULL },
		{ "check", "--backend", NULL },
		{ "check", "--contract", "split,legacy", NULL },
		{ "check", "--contract=", NULL },
	};

	for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++)
		expect_usage_error(args[i]);
}

TEST(check_accepts_the_largest_seed_and_equals_forms)
{
	static const char *const args[] = { "check", "--seed=18446744073709551615",
					    "--ops=50", "--backend=sw",
					    "--contract=split", NULL };
	struct output o = run_gmem(args);
	struct row rows[4];

	ASSERT_EQ(o.status, 0);
	ASSERT_EQ(parse_table(o.out, rows, 4), 1);
	ASSERT_EQ(rows[0].ops, 50);
	output_free(&o);
}

TEST(check_help_lists_every_option_and_gmem_help_lists_check)
{
	static const char *const check_help[] = { "check", "--help", NULL };
	static const char *const help[] = { "--help", NULL };
	static const char *const opts[] = { "--seed", "--ops", "--backend",
					    "--contract", "--json", "--help" };
	struct output o = run_gmem(check_help), g = run_gmem(help);

	ASSERT_EQ(o.status, 0);
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		ASSERT_TRUE(strstr(o.out, opts[i]));
	ASSERT_EQ(g.status, 0);
	ASSERT_TRUE(strstr(g.out, "  check "));
	output_free(&o);
	output_free(&g);
}

/* ------------------------------------------------------------ gmem info */

TEST(info_says_what_works_here_one_line_each)
{
	static const char *const args[] = { "info", NULL };
	static const char *const help[] = { "info", "--help", NULL };
	static const char *const lines[] = {
		"pool: 4096 GiB reserved, ", "file: 1 GiB, ", "backends: sw snp tdx pkvm",
		"host mappings: private pages fenced by ", "huge folios: on ", "/dev/kvm: ",
	};
	struct output o = run_gmem(args);
	const char *p = o.out;

	ASSERT_EQ(o.status, 0);
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		ASSERT_EQ(strncmp(p, lines[i], strlen(lines[i])), 0);
		p = strchr(p, '\n') + 1;
	}
	ASSERT_EQ(*p, 0);
	output_free(&o);
	/* --help describes, it does not run. */
	o = run_gmem(help);
	ASSERT_EQ(o.status, 0);
	ASSERT_EQ(strncmp(o.out, "usage: gmem info\n", 17), 0);
	ASSERT_TRUE(!strstr(o.out, "GiB reserved"));
	output_free(&o);
}
