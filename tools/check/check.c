// SPDX-License-Identifier: MIT
/*
 * gmem check - run the workload (workload.c) on every backend under both hook
 * contracts with the invariant checker on, and print what broke: a table, or
 * one JSON object per line.
 *
 * Exit status: 1 when a run shows a violation or a tool failure, but for the
 * expected finding: pkvm's violations under the legacy contract (its one hook
 * scrubs pages pkvm must keep), which leave the status alone. 2 bad usage.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gmem.h"
#include "cli.h"
#include "lib/json.h"

#define DEFAULT_OPS	10000
#define NONE		(~0ULL)

static const char *const backends[] = { "sw", "snp", "tdx", "pkvm" };
static const char *const contracts[] = { "split", "legacy" };

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

struct options {
	uint64_t seed;
	uint64_t ops;
	const char *backend;	/* NULL: every backend */
	const char *contract;	/* NULL: both contracts */
	bool json;
};

/* ------------------------------------------------------------------ output */

/*
 * The finding gmem check exists to show: the legacy contract's one hook
 * scrubs pages pkvm must keep on private->shared conversion. Its violations
 * are expected; anywhere else a violation is a bug.
 */
static bool expected_finding(const struct check_result *res)
{
	return !strcmp(res->backend, "pkvm") && !strcmp(res->contract, "legacy");
}

/* clean, expected, violation or error: the row's verdict. */
static const char *verdict(const struct check_result *res)
{
	if (res->setup_failed || res->failures)
		return "error";
	if (!res->violations)
		return "clean";
	return expected_finding(res) ? "expected" : "violation";
}

static void print_header(void)
{
	printf("%-9s%-10s%-12s%-18s%s\n", "backend", "contract", "operations",
	       "violations", "first violation");
}

static void print_row(const struct options *o, const struct check_result *res)
{
	const struct gmem_violation *v = &res->first;
	char buf[32];

	snprintf(buf, sizeof(buf), "%lld%s", (long long)res->violations,
		 res->violations && expected_finding(res) ? " (expected)" : "");
	printf("%-9s%-10s%-12llu", res->backend, res->contract,
	       (unsigned long long)o->ops);
	if (res->setup_failed) {
		printf("%-18s%s\n", "?", res->setup_error);
		return;
	}
	printf("%-18s", buf);
	if (!res->violations) {
		printf("-\n");
		return;
	}
	printf("%s: invariant %d: %s", v->op, v->invariant, v->rule);
	if (v->offset != NONE && v->pfn != NONE)
		printf(" (offset 0x%llx, pfn 0x%llx)",
		       (unsigned long long)v->offset,
		       (unsigned long long)v->pfn);
	else if (v->offset != NONE)
		printf(" (offset 0x%llx)", (unsigned long long)v->offset);
	else if (v->pfn != NONE)
		printf(" (pfn 0x%llx)", (unsigned long long)v->pfn);
	printf("\n");
}

static void print_json(const struct options *o, const struct check_result *res)
{
	const struct gmem_violation *v = &res->first;

	printf("{\"type\":\"result\",\"backend\":");
	json_string(stdout, res->backend);
	printf(",\"contract\":");
	json_string(stdout, res->contract);
	printf(",\"seed\":%llu,\"operations\":%llu,\"verdict\":\"%s\",",
	       (unsigned long long)o->seed, (unsigned long long)o->ops,
	       verdict(res));
	if (res->setup_failed) {
		printf("\"violations\":null,\"exits\":null,\"failures\":null,\"first\":null,\"message\":");
		json_string(stdout, res->setup_error);
		printf("}\n");
		return;
	}
	printf("\"violations\":%lld,\"exits\":%llu,\"failures\":%llu,\"first\":",
	       (long long)res->violations, (unsigned long long)res->exits,
	       (unsigned long long)res->failures);
	if (!res->violations) {
		printf("null,\"message\":null}\n");
		return;
	}
	printf("{\"op\":");
	json_string(stdout, v->op);
	printf(",\"invariant\":%d,\"offset\":", v->invariant);
	json_u64(stdout, v->offset);
	printf(",\"pfn\":");
	json_u64(stdout, v->pfn);
	printf(",\"rule\":");
	json_string(stdout, v->rule);
	printf("},\"message\":");
	json_string(stdout, expected_finding(res) ?
		    "expected: the legacy contract's one hook scrubs pages pkvm must keep" :
		    "a violation of the invariants (docs/arch.md)");
	printf("}\n");
}

/* The verdicts of every row, counted. */
struct tally {
	int rows, clean, expected, violation, error;
};

static void count(struct tally *t, const struct check_result *res)
{
	const char *v = verdict(res);

	t->rows++;
	t->clean += !strcmp(v, "clean");
	t->expected += !strcmp(v, "expected");
	t->violation += !strcmp(v, "violation");
	t->error += !strcmp(v, "error");
}

static void print_summary(const struct options *o, const struct tally *t,
			  int status)
{
	if (o->json) {
		printf("{\"type\":\"summary\",\"schema\":%d,\"rows\":%d,\"clean\":%d,"
		       "\"expected\":%d,\"violation\":%d,\"error\":%d,\"status\":%d,"
		       "\"message\":", GMEM_JSON_SCHEMA, t->rows, t->clean,
		       t->expected, t->violation, t->error, status);
		json_string(stdout, status ? "a violation or a tool failure: see the rows" : NULL);
		printf("}\n");
		return;
	}
	if (t->expected)
		printf("\n(expected) pkvm under the legacy contract: its one hook scrubs pages\n"
		       "pkvm must keep on conversion to shared, the finding this check shows\n"
		       "(docs/arch.md); it leaves the exit status at 0.\n");
}

/* ------------------------------------------------------------------ options */

static int usage(FILE *out)
{
	fprintf(out,
		"usage: gmem check [--seed N] [--ops N] [--backend NAME]\n"
		"                  [--contract split|legacy] [--json] [--help]\n"
		"\n"
		"Run a seeded random VMM workload on every backend under both hook\n"
		"contracts with the invariant checker on, and print the violations.\n"
		"\n"
		"  --seed N          workload seed (default 1); same seed, same output\n"
		"  --ops N           operations per combination (default %d)\n"
		"  --backend NAME    only this backend: sw, snp, tdx or pkvm\n"
		"  --contract NAME   only this contract: split or legacy\n"
		"  --json            one JSON object per line per combination\n"
		"  --help            print this help\n"
		"\n"
		"Exit status: 0 clean, 1 a violation or a tool failure, 2 bad usage.\n"
		"pkvm's violations under the legacy contract are the expected finding\n"
		"(its one hook scrubs pages pkvm must keep): marked \"(expected)\" and\n"
		"leaving the status at 0.\n",
		DEFAULT_OPS);
	return 0;
}

__attribute__((format(printf, 1, 2)))
static int bad_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "gmem check: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (try gmem check --help)\n");
	return -1;
}

/*
 * The value of option @name at argv[*i], as "--name VALUE" or "--name=VALUE".
 * Returns 1 and the value (NULL if missing) when argv[*i] is that option.
 */
static int opt_value(int argc, char **argv, int *i, const char *name,
		     const char **val)
{
	size_t len = strlen(name);

	if (strncmp(argv[*i], name, len))
		return 0;
	if (argv[*i][len] == '=') {
		*val = argv[*i] + len + 1;
		return 1;
	}
	if (argv[*i][len])
		return 0;
	*val = *i + 1 < argc ? argv[++*i] : NULL;
	return 1;
}

static int parse_number(const char *opt, const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!s)
		return bad_usage("%s needs a number", opt);
	/* strtoull would take "-1", " 1" and "" without complaint. */
	if (!isdigit((unsigned char)s[0]))
		return bad_usage("bad number '%s' for %s", s, opt);
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return bad_usage("bad number '%s' for %s", s, opt);
	*out = v;
	return 0;
}

static int parse_name(const char *opt, const char *s,
		      const char *const *names, size_t count, const char **out)
{
	if (!s)
		return bad_usage("%s needs a name", opt);
	for (size_t i = 0; i < count; i++) {
		if (!strcmp(s, names[i])) {
			*out = names[i];
			return 0;
		}
	}
	return bad_usage("unknown %s '%s'", opt + 2, s);
}

/* Returns 0, 1 for --help, -1 for bad usage (already reported). */
static int parse_options(int argc, char **argv, struct options *o)
{
	const char *val;

	*o = (struct options){ .seed = 1, .ops = DEFAULT_OPS };
	for (int i = 1; i < argc; i++) {
		int ret = 0;

		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return 1;
		if (!strcmp(argv[i], "--json"))
			o->json = true;
		else if (opt_value(argc, argv, &i, "--seed", &val))
			ret = parse_number("--seed", val, &o->seed);
		else if (opt_value(argc, argv, &i, "--ops", &val))
			ret = parse_number("--ops", val, &o->ops);
		else if (opt_value(argc, argv, &i, "--backend", &val))
			ret = parse_name("--backend", val, backends,
					 COUNT(backends), &o->backend);
		else if (opt_value(argc, argv, &i, "--contract", &val))
			ret = parse_name("--contract", val, contracts,
					 COUNT(contracts), &o->contract);
		else
			ret = bad_usage("unknown option '%s'", argv[i]);
		if (ret)
			return -1;
	}
	return 0;
}

/* -------------------------------------------------------------------- main */

int cmd_check(int argc, char **argv)
{
	struct check_result res;
	struct tally t = { 0 };
	struct options o;
	int status = 0, ret;

	ret = parse_options(argc, argv, &o);
	if (ret)
		return ret > 0 ? usage(stdout) : 2;
	if (o.json)
		json_header(stdout, "check");
	else
		print_header();
	for (size_t b = 0; b < COUNT(backends); b++) {
		for (size_t c = 0; c < COUNT(contracts); c++) {
			if ((o.backend && o.backend != backends[b]) ||
			    (o.contract && o.contract != contracts[c]))
				continue;
			check_workload(backends[b], contracts[c], o.seed, o.ops,
				       &res);
			if (o.json)
				print_json(&o, &res);
			else
				print_row(&o, &res);
			fflush(stdout);
			count(&t, &res);
			if (strcmp(verdict(&res), "clean") &&
			    strcmp(verdict(&res), "expected"))
				status = 1;
		}
	}
	print_summary(&o, &t, status);
	return status;
}
