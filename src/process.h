/* SPDX-License-Identifier: MIT */
/*
 * Processes (process.c): this process's pid, cached and updated in a fork
 * child, and the shootdown that carries conversions to the mappings fork
 * children inherited.
 */
#ifndef GMEM_PROCESS_H
#define GMEM_PROCESS_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define SHOOTDOWN_UIDS	16	/* files a fork child's slot names, or "all" */

#include <stdatomic.h>

/* This process's pid, 0 until process_pid_slow first runs (process.c). */
extern atomic_int process_cached_pid;
pid_t process_pid_slow(void);

static inline pid_t process_pid(void)
{
	int pid = atomic_load_explicit(&process_cached_pid, memory_order_relaxed);

	return __builtin_expect(pid != 0, 1) ? pid : process_pid_slow();
}

int sd_broadcast(uint64_t uid, uint64_t start, uint64_t end, bool open);
void sd_fork_prepare(const uint64_t *uids, unsigned int n);
void sd_fork_parent(bool failed);
bool sd_fork_child(void);
bool process_answers_shootdowns(void);
void process_block_shootdown(sigset_t *saved);

#endif
