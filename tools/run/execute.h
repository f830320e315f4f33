/* SPDX-License-Identifier: MIT */
/*
 * execute.h - the state of one run of a scenario, shared by the executor
 * (execute.c) and the trace (trace.c). Private to the files of
 * "gmem run".
 */
#ifndef GMEM_SCENARIO_RUN_H
#define GMEM_SCENARIO_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gmem.h"
#include "model.h"

#define TRACE_PAGES	64		/* pages the trace looks at per command */

enum { POOL_SW, POOL_SNP, POOL_TDX, POOL_PKVM, POOL_OTHER, NPOOLS };

struct rt_obj {
	int h;			/* handle, -1 when closed or never made */
	int pool;		/* vm: POOL_* */
	int arch;		/* vm: POOL_* */
	bool legacy;
	int vm;			/* file: its vm object */
	int file;		/* mapping: its file object */
	uint8_t *addr;		/* mapping */
	uint64_t len, off;
	int pins;
};

struct binding {
	int vm, file;
	uint32_t slot;
	uint64_t gpa, off, size;
	bool live;
};

struct page_snap {
	int fd, pool;		/* handles */
	uint64_t off;
	int vm;			/* handle, or -1 */
	uint64_t gpa;
	int present;
	uint64_t pfn;
	char state[96];
	uint64_t hash;
	int s2;
	uint64_t s2pfn;
	int s2priv;
};

struct snap {
	struct page_snap pg[TRACE_PAGES];
	int n;
	int64_t seq[64];	/* per object (vms only) */
};

struct run {
	struct scenario *s;
	const struct scn_opts *o;
	struct rt_obj *rt;
	int pools[NPOOLS];
	struct binding *b;
	int nb;
	char *buf;		/* read and write buffer */
	struct scn_cmd *c;
	/* outcome of the current command */
	int ret;		/* 0, -errno, 1 exit, 2 fault */
	struct gmem_exit exit;
	uint64_t err_off;
	int sig;
	size_t done;
	char why[256];		/* gmem_last_error() of a failure */
	/* trace */
	struct snap before, after;
	char hooks[2048];
	size_t hlen;
};

/* execute.c: the outcome of the current command, "ok", "exit ...", ... */
const char *outcome(struct run *r, char *buf, size_t len);

/* trace.c: the pages the current command touches, and their state. */
void snap_pages(struct run *r, struct snap *sn);
void snap_take(struct run *r, struct snap *sn, const struct snap *prev);

/* trace.c: a line for the current command's record. */
void hook(struct run *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* trace.c: the gmem_vm_trace_hooks callback, with the run as @arg. */
void record_hook(void *arg, const struct gmem_hook_call *call);

/* trace.c: what changed between r->before and r->after. */
void describe_changes(struct run *r);

/* trace.c: the record of the current command, as text or JSON. */
void trace(struct run *r, const char *verdict);

#endif
