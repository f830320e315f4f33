// SPDX-License-Identifier: MIT
/*
 * gmem check - run the workload (workload.c) on every backend under both hook
 * contracts with the invariant checker on, and print what broke: a table, or
 * one JSON object per line.
 *
 * Exit status: 1 when a split-contract run shows a violation, or any run a
 * tool failure; a legacy-contract violation is the expected finding (the
 * legacy contract breaks pkvm) and leaves the status alone. 2 for bad usage.
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

static void print_header(void)
{
	printf("%-9s%-10s%-12s%-12s%s\n", "backend", "contract", "operations",
	       "violations", "first violation");
}

static void print_row(const struct options *o, const struct check_result *res)
{
	const struct gmem_violation *v = &res->first;

	printf("%-9s%-10s%-12llu", res->backend, res->contract,
	       (unsigned long long)o->ops);
	if (res->setup_failed) {
		printf("%-12s%s\n", "?", res->setup_error);
		return;
	}
	printf("%-12lld", (long long)res->violations);
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

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = *s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c == '\n')
			printf("\\n");
		else if (c == '\t')
			printf("\\t");
		else if (c < 0x20 || c == 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

/* ~0 means "no such page or frame": null, not a number JSON would round. */
static void json_u64(uint64_t v)
{
	if (v == NONE)
		printf("null");
	else
		printf("%llu", (unsigned long long)v);
}

static void print_json(const struct options *o, const struct check_result *res)
{
	const struct gmem_violation *v = &res->first;

	printf("{\"backend\":");
	json_string(res->backend);
	printf(",\"contract\":");
	json_string(res->contract);
	printf(",\"seed\":%llu,\"operations\":%llu,",
	       (unsigned long long)o->seed, (unsigned long long)o->ops);
	if (res->setup_failed) {
		printf("\"violations\":null,\"exits\":null,\"failures\":null,\"first\":null,\"error\":");
		json_string(res->setup_error);
		printf("}\n");
		return;
	}
	printf("\"violations\":%lld,\"exits\":%llu,\"failures\":%llu,\"first\":",
	       (long long)res->violations, (unsigned long long)res->exits,
	       (unsigned long long)res->failures);
	if (!res->violations) {
		printf("null}\n");
		return;
	}
	printf("{\"op\":");
	json_string(v->op);
	printf(",\"invariant\":%d,\"offset\":", v->invariant);
	json_u64(v->offset);
	printf(",\"pfn\":");
	json_u64(v->pfn);
	printf(",\"rule\":");
	json_string(v->rule);
	printf("}}\n");
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
		"Exit status: 0 clean, 1 a violation under the split contract or a tool\n"
		"failure, 2 bad usage. Legacy-contract violations are the expected\n"
		"finding and do not change the status.\n",
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
	struct options o;
	int status = 0, ret;

	ret = parse_options(argc, argv, &o);
	if (ret)
		return ret > 0 ? usage(stdout) : 2;
	if (!o.json)
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
			if (res.setup_failed || res.failures ||
			    (!strcmp(contracts[c], "split") && res.violations))
				status = 1;
		}
	}
	return status;
}
