// SPDX-License-Identifier: MIT
/*
 * gmem - the command line. One table names every subcommand, the function
 * that runs it (each in its own folder: tools/NAME/) and its line of help,
 * so --help and the dispatch cannot disagree.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#ifndef GMEM_VERSION
#define GMEM_VERSION "unknown"	/* the Makefile passes its VERSION */
#endif

static const struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
} commands[] = {
	{ "info",  cmd_info,  "print what works on this machine" },
	{ "check", cmd_check, "random workloads on every backend, invariants checked" },
	{ "bench", cmd_bench, "every performance target against its baseline" },
	{ "run",   cmd_run,   "replay a scenario file" },
	{ "vm",    cmd_vm,    "boot a KVM guest on gmem memory; it checks its arch" },
	{ "exec",  cmd_exec,  "run a program that speaks KVM on gmem, any KVM host" },
};

static int usage(FILE *out)
{
	fprintf(out, "usage: gmem [--help] [--version] COMMAND [ARGS...]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].help);
	fprintf(out, "\ngmem COMMAND --help describes each.\n");
	return out == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return usage(stdout);
	if (!strcmp(argv[1], "--version")) {
		printf("gmem %s\n", GMEM_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "gmem: unknown command '%s' (try gmem --help)\n", argv[1]);
	return 2;
}
