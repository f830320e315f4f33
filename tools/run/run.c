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

static int run_usage(FILE *out)
{
	fprintf(out, "usage: gmem run FILE [--trace] [--json]\n");
	return out == stdout ? 0 : SCN_EXIT_USAGE;
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
	struct scenario s;
	const char *path = NULL;
	char *text;
	size_t len;
	FILE *f;
	int ret;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--trace")) {
			o.trace = true;
		} else if (!strcmp(argv[i], "--json")) {
			o.trace = o.json = true;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			return run_usage(stdout);
		} else if (argv[i][0] == '-' && argv[i][1]) {
			fprintf(stderr, "gmem run: unknown option '%s' (usage: "
				"gmem run FILE [--trace] [--json])\n", argv[i]);
			return SCN_EXIT_USAGE;
		} else if (path) {
			fprintf(stderr, "gmem run: one scenario file at a time "
				"('%s' and '%s')\n", path, argv[i]);
			return SCN_EXIT_USAGE;
		} else {
			path = argv[i];
		}
	}
	if (!path) {
		fprintf(stderr, "gmem run: missing scenario file (usage: gmem "
			"run FILE [--trace] [--json])\n");
		return SCN_EXIT_USAGE;
	}
	f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
	if (!f) {
		fprintf(stderr, "gmem run: %s: %s\n", path, strerror(errno));
		return SCN_EXIT_USAGE;
	}
	text = read_all(f, &len);
	if (f != stdin)
		fclose(f);
	if (!text) {
		fprintf(stderr, "gmem run: %s: cannot read\n", path);
		return SCN_EXIT_USAGE;
	}
	if (scenario_parse(&s, path, text, len)) {
		fprintf(stderr, "%s\n", s.err);
		ret = SCN_EXIT_PARSE;
	} else {
		ret = scenario_run(&s, &o);
	}
	scenario_free(&s);
	free(text);
	return ret;
}
