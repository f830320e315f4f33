// SPDX-License-Identifier: MIT
/*
 * gmem run FILE [--trace] [--json] - run a scenario (docs/scenarios.md).
 *
 * Exit status: 0 every command and expectation held; 1 one failed (its
 * FILE:LINE:COL on stderr); 2 bad usage or unreadable file; 3 the scenario
 * does not parse (FILE:LINE:COL on stderr).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scenario.h"
#include "lib/json.h"

static int run_usage(FILE *out)
{
	fprintf(out,
		"usage: gmem run FILE [--trace] [--json]\n"
		"\n"
		"Run a scenario: a text of commands (create VMs and files, bind,\n"
		"map, convert, punch, pin, guest and host reads and writes) with\n"
		"the outcome each expects (docs/scenarios.md). FILE - reads it\n"
		"from stdin. The run stops at the first command that fails without\n"
		"an expectation saying so, or the first expectation that does not\n"
		"hold, and prints FILE:LINE:COL and why on stderr.\n"
		"\n"
		"  --trace   print each command, its outcome, the arch hooks the\n"
		"            engine called and what changed (folios, frame states,\n"
		"            stage-2, contents)\n"
		"  --json    the same as JSON lines: a header, one object per\n"
		"            command, a summary (docs/json.md)\n"
		"  --help    print this help\n"
		"\n"
		"Exit status: 0 every command and expectation held; 1 one failed;\n"
		"2 bad usage or an unreadable file; 3 the scenario does not parse.\n");
	return 0;
}

/* The last line of --json: how the run ended, and why when it failed. */
static int json_summary(const char *path, const struct scenario *s, int status,
			const char *message)
{
	static const char *const results[] = {
		[SCN_EXIT_OK] = "pass", [SCN_EXIT_FAILED] = "failed",
		[SCN_EXIT_USAGE] = "usage", [SCN_EXIT_PARSE] = "parse error",
	};

	printf("{\"type\":\"summary\",\"schema\":%d,\"file\":", GMEM_JSON_SCHEMA);
	json_string(stdout, path);
	printf(",\"commands\":%d,\"ran\":%d,\"status\":%d,\"result\":\"%s\",\"message\":",
	       s ? s->ncmds : 0, s ? s->ran : 0, status, results[status]);
	json_string(stdout, message);
	printf("}\n");
	return status;
}

/* A usage error: on stderr, and in the summary under --json. */
static int usage_error(bool json, const char *path, const char *msg)
{
	fprintf(stderr, "gmem run: %s\n", msg);
	return json ? json_summary(path, NULL, SCN_EXIT_USAGE, msg) : SCN_EXIT_USAGE;
}

static char *read_all(FILE *f, size_t *len)
{
	size_t cap = 4096, n = 0, got;
	char *buf = malloc(cap), *nb;

	while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n == cap) {
			cap *= 2;
			nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				return NULL;
			}
			buf = nb;
		}
	}
	if (buf && ferror(f)) {
		free(buf);
		return NULL;
	}
	*len = n;
	return buf;
}

int cmd_run(int argc, char **argv)
{
	struct scn_opts o = { .out = stdout, .err = stderr };
	struct scenario s = { 0 };
	const char *path = NULL;
	char msg[600], *text;
	size_t len;
	FILE *f;
	int ret;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return run_usage(stdout);
		if (!strcmp(argv[i], "--json"))
			o.trace = o.json = true;
	}
	if (o.json)
		json_header(stdout, "run");
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--trace") || !strcmp(argv[i], "--json")) {
			o.trace = true;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			snprintf(msg, sizeof(msg), "unknown option '%s' (try gmem run --help)",
				 argv[i]);
			return usage_error(o.json, path, msg);
		} else if (path) {
			snprintf(msg, sizeof(msg), "one scenario file at a time ('%s' and '%s')",
				 path, argv[i]);
			return usage_error(o.json, path, msg);
		} else {
			path = argv[i];
		}
	}
	if (!path)
		return usage_error(o.json, path, "missing scenario file (try gmem run --help)");
	f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	if (!f) {
		snprintf(msg, sizeof(msg), "%s: %s", path, strerror(errno));
		return usage_error(o.json, path, msg);
	}
	text = read_all(f, &len);
	if (f != stdin)
		fclose(f);
	if (!text) {
		snprintf(msg, sizeof(msg), "%s: cannot read", path);
		return usage_error(o.json, path, msg);
	}
	if (scenario_parse(&s, path, text, len)) {
		fprintf(stderr, "%s\n", s.err);
		ret = SCN_EXIT_PARSE;
	} else {
		ret = scenario_run(&s, &o);
	}
	if (o.json)
		json_summary(path, &s, ret, ret ? s.err : NULL);
	scenario_free(&s);
	free(text);
	return ret;
}
