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

#define TRACE_EVENTS	96		/* events the trace keeps per command */

/* One thing a command did, as the trace reports it. */
enum event_kind {
	EV_HOOK,		/* the engine called an arch hook */
	EV_INVALIDATION,	/* a VM's mmu_invalidate_seq moved */
	EV_FOLIO_ALLOCATED,
	EV_FOLIO_FREED,
	EV_FRAME_STATE,		/* the arch's model of a frame changed */
	EV_STAGE2_MAP,
	EV_STAGE2_ZAP,
	EV_CONTENT,		/* what a conversion did to page contents */
};

struct event {
	enum event_kind kind;
	char hook[32], path[16];	/* hook */
	int ret;			/* hook: its return, or the level */
	uint64_t pfn, gfn, nr;		/* hook; pfn for folios, frames, stage-2 */
	uint64_t off, gpa;		/* folio offset; stage-2 gpa */
	const char *vm;			/* invalidation: the VM's name */
	long long seq_from, seq_to;
	char from[96], to[96];		/* frame states */
	bool priv;			/* stage-2 map */
	const char *content;		/* "zeroed", "changed" or "kept"; nr pages */
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
	struct event ev[TRACE_EVENTS];
	int nev, dropped;	/* events kept, and those past TRACE_EVENTS */
	char message[512];	/* why a check failed */
};

/* execute.c: the outcome of the current command, "ok", "exit ...", ... */
const char *outcome(struct run *r, char *buf, size_t len);

/* trace.c: the pages the current command touches, and their state. */
void snap_pages(struct run *r, struct snap *sn);
void snap_take(struct run *r, struct snap *sn, const struct snap *prev);

/* trace.c: forget the current command's events. */
void trace_reset(struct run *r);

/* trace.c: the gmem_vm_trace_hooks callback, with the run as @arg. */
void record_hook(void *arg, const struct gmem_hook_call *call);

/* trace.c: what changed between r->before and r->after. */
void describe_changes(struct run *r);

/* trace.c: the record of the current command, as text or JSON. */
void trace(struct run *r, const char *verdict);

#endif
