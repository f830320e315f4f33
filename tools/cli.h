/* SPDX-License-Identifier: MIT */
/*
 * cli.h - what the folders of the gmem command share: each subcommand
 * (tools/NAME/) takes the arguments after its own name (argv[0] is the
 * subcommand) and returns the exit status; tools/gmem.c dispatches.
 */
#ifndef GMEM_CLI_H
#define GMEM_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "gmem.h"

int cmd_info(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_vm(int argc, char **argv);
int cmd_exec(int argc, char **argv);

/* What one run of the check workload saw. */
struct check_result {
	const char *backend, *contract;
	bool setup_failed;		/* the pool or VM could not be made */
	char setup_error[200];
	int64_t violations;		/* total the checker recorded */
	struct gmem_violation first;	/* valid when violations > 0 */
	uint64_t exits;			/* memory-fault exits the guest took */
	uint64_t failures;		/* calls that failed in ways the API forbids */
};

void check_workload(const char *backend, const char *contract, uint64_t seed,
		    uint64_t ops, struct check_result *res);

#endif
