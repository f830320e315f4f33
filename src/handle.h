/* SPDX-License-Identifier: MIT */
/*
 * Handles: the process-wide table of objects behind every int a public call
 * takes (pools, VMs, files), allocated lowest-first like file descriptors.
 */
#ifndef GMEM_HANDLE_H
#define GMEM_HANDLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "process.h"

enum obj_type { OBJ_FREE, OBJ_POOL, OBJ_VM, OBJ_FILE };

/*
 * Every object starts with this. Objects are type-stable: their memory is
 * never returned to malloc, only reused for an object of the same type, so a
 * racing handle lookup may touch a dead object but never freed memory.
 */
struct obj {
	enum obj_type type;
	atomic_int pid;		/* the process that created it: others get EIO */
	atomic_int refs;	/* handle + dependants; 0 = dead */
	atomic_int handle;	/* -1 once closed */
	void (*release)(struct obj *o);	/* called when refs drops to 0 */
	struct obj *next_free;
};

#define MAX_HANDLES 65536

/* The table (handle.c); read here by the lookups every call starts with. */
extern _Atomic(struct obj *) handles[MAX_HANDLES];

void *obj_alloc(enum obj_type type, size_t size, size_t keep, bool *fresh);
void obj_recycle(struct obj *o);
int obj_install(struct obj *o);			/* returns handle */
int obj_get(int h, enum obj_type type, const char *fn, void **out);
int obj_foreign_error(struct obj *o, int h, const char *fn);
int obj_close(int h, enum obj_type type, const char *fn, struct obj **o);
int obj_destroy(int h, enum obj_type type, const char *fn);
void obj_get_ref(struct obj *o);
void obj_put(struct obj *o);

/* The object behind handle @h, or NULL; no reference taken. */
static inline struct obj *obj_peek(int h)
{
	if (h < 0 || h >= MAX_HANDLES)
		return NULL;
	return atomic_load_explicit(&handles[h], memory_order_acquire);
}

/*
 * -EIO if @o was created by another process (this is a fork child with a copy
 * of the parent's handles), as KVM answers a VM's ioctls from another mm.
 */
static inline int obj_foreign(struct obj *o, int h, const char *fn)
{
	if (__builtin_expect(atomic_load_explicit(&o->pid, memory_order_relaxed) ==
			     process_pid(), 1))
		return 0;
	return obj_foreign_error(o, h, fn);
}

/* fork (process.c): the table's lock is held across it. */
void handles_fork_prepare(void);
void handles_fork_parent(void);
void handles_fork_child(void);

#endif
