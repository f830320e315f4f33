/* SPDX-License-Identifier: MIT */
/*
 * scenario.h - the gmem scenario language (docs/scenarios.md): a parser that
 * turns a text into a list of commands (parse.c), and an executor that
 * runs them against the library (execute.c), with an optional trace of
 * each command: the hooks the engine called, recorded as it calls them, and
 * what changed (trace.c). The parser never touches the library, so
 * a fuzzer can call it alone.
 */
#ifndef GMEM_SCENARIO_H
#define GMEM_SCENARIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit statuses of "gmem run". */
#define SCN_EXIT_OK		0
#define SCN_EXIT_FAILED		1	/* an expectation or an operation failed */
#define SCN_EXIT_USAGE		2	/* bad option, unreadable file */
#define SCN_EXIT_PARSE		3	/* the scenario text is malformed */

struct scn_cmd;

struct scenario {
	const char *name;	/* file name used in messages */
	struct scn_cmd *cmds;
	int ncmds;
	struct scn_obj *objs;
	int nobjs;
	int ran;		/* commands scenario_run() ran */
	char err[512];		/* "FILE:LINE:COL: message" after a failure */
};

struct scn_opts {
	FILE *out;		/* trace output, or NULL */
	FILE *err;		/* failure messages, or NULL */
	bool trace;		/* one record per command, with the recorded hooks */
	bool json;		/* the trace as JSON lines */
	uint64_t pool_capacity;	/* bytes per pool; 0: 64 GiB */
};

/*
 * Parse @len bytes of @text (any bytes) named @name. Returns 0, or -1 with
 * s->err set to "NAME:LINE:COL: message". scenario_free() either way.
 */
int scenario_parse(struct scenario *s, const char *name, const char *text,
		   size_t len);

/* Run a parsed scenario: SCN_EXIT_OK or SCN_EXIT_FAILED (s->err set). */
int scenario_run(struct scenario *s, const struct scn_opts *o);

void scenario_free(struct scenario *s);

/* "gmem run": @argv[0] is "run". */
int cmd_run(int argc, char **argv);

#endif
