// SPDX-License-Identifier: MIT
/*
 * gmem - the command line: dispatches to the subcommands, each in its own
 * file (check.c, bench.c, run.c, vm.c). "info" reports what works on this machine.
 */
#include <stdio.h>
#include <string.h>

#include "gmem.h"
#include "cli.h"

static int usage(FILE *out)
{
	fprintf(out,
		"usage: gmem [--help] [--version] COMMAND\n"
		"\n"
		"commands:\n"
		"  info     create a pool, a VM and a file; print what works here\n"
		"  check    run a random workload on every backend and contract with\n"
		"           the invariant checker on; print the violations\n"
		"           (gmem check --help for its options)\n"
		"  bench    measure every performance target against its baseline\n"
		"  run      replay a scenario file (gmem run --help)\n"
		"  vm       boot a KVM guest on gmem memory and let it check its\n"
		"           arch's conversions (gmem vm --help)\n"
		"  exec     run a program that speaks KVM on gmem, any KVM host\n"
		"           (gmem exec --help)\n");
	return out == stdout ? 0 : 2;
}

static int info(void)
{
	struct gmem_pool_stats st;
	int pool, vm, fd;

	pool = gmem_pool_create(0);
	if (pool < 0)
		goto fail;
	vm = gmem_vm_create(pool, "sw", 0);
	if (vm < 0)
		goto fail;
	fd = gmem_create(vm, 1ULL << 30, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	if (fd < 0)
		goto fail;
	if (gmem_pool_stats(pool, &st) < 0)
		goto fail;
	printf("pool: %llu GiB reserved, %llu frames in use\n",
	       (unsigned long long)(st.capacity_frames >> 18),
	       (unsigned long long)st.frames_in_use);
	printf("file: 1 GiB, %llu bytes of metadata\n",
	       (unsigned long long)st.metadata_bytes);
	return 0;
fail:
	fprintf(stderr, "gmem: %s\n", gmem_last_error());
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage(stderr);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return usage(stdout);
	if (!strcmp(argv[1], "--version")) {
		printf("gmem 0.1\n");
		return 0;
	}
	if (!strcmp(argv[1], "info"))
		return info();
	if (!strcmp(argv[1], "check"))
		return cmd_check(argc - 1, argv + 1);
	if (!strcmp(argv[1], "bench"))
		return cmd_bench(argc - 1, argv + 1);
	if (!strcmp(argv[1], "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "exec"))
		return cmd_exec(argc - 1, argv + 1);
	if (!strcmp(argv[1], "vm"))
		return cmd_vm(argc - 1, argv + 1);
	fprintf(stderr, "gmem: unknown command '%s' (try gmem --help)\n", argv[1]);
	return 2;
}
