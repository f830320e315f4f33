// SPDX-License-Identifier: MIT
/*
 * Handles: a process-wide table of object pointers, allocated lowest-first
 * like file descriptors. A bitmap of the handles in use, and above it one
 * bit per bitmap word that is full, find the lowest free handle in two
 * searches of at most 16 words and 1 word: O(1) whatever the table holds.
 * Lookups read the table without a lock; objects are
 * type-stable (see struct obj), so a lookup racing with a close may see a
 * dead object, notice it by its zero refcount, and fail with -EBADF.
 *
 * A fork child inherits a copy of the table; a handle whose object another
 * process created fails with -EIO (process.c), before anything is locked.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "handle.h"
#include "inject.h"
#include "lock.h"
#include "process.h"

_Atomic(struct obj *) handles[MAX_HANDLES];
/* Under handles_lock: handles in use, and the words of that map that are full. */
static uint64_t handles_used[MAX_HANDLES / 64];
static uint64_t handles_full[MAX_HANDLES / 64 / 64];
static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static struct obj *free_objs[OBJ_FILE + 1];

static const char *const type_names[] = {
	[OBJ_POOL] = "pool", [OBJ_VM] = "vm", [OBJ_FILE] = "file",
};

/*
 * A new object of @type, zeroed past its first @keep bytes. Those bytes
 * (the object's locks) are zeroed only when the memory is fresh, which
 * *@fresh reports: a recycled object's locks may still be touched by a late
 * lookup and must stay valid.
 */
void *obj_alloc(enum obj_type type, size_t size, size_t keep, bool *fresh)
{
	struct obj *o;

	mutex_lock(&handles_lock);
	o = free_objs[type];
	if (o)
		free_objs[type] = o->next_free;
	mutex_unlock(&handles_lock);
	*fresh = !o;
	if (!o) {
		o = try_aligned_alloc(64, (size + 63) & ~(size_t)63);
		if (!o)
			return NULL;
		memset(o, 0, size);
	} else {
		memset((char *)o + keep, 0, size - keep);
	}
	/* A recycled object already has @type; racing lookups may be reading it. */
	if (*fresh)
		o->type = type;
	atomic_store_explicit(&o->pid, process_pid(), memory_order_relaxed);
	atomic_store(&o->handle, -1);
	o->next_free = NULL;
	atomic_store(&o->refs, 1);
	return o;
}

void obj_recycle(struct obj *o)
{
	mutex_lock(&handles_lock);
	o->next_free = free_objs[o->type];
	free_objs[o->type] = o;
	mutex_unlock(&handles_lock);
}

/* The lowest handle not in use, or -1. */
static int lowest_free_handle(void)
{
	for (unsigned int i = 0; i < MAX_HANDLES / 64 / 64; i++) {
		if (~handles_full[i]) {
			unsigned int w = i * 64 + __builtin_ctzll(~handles_full[i]);

			return (int)(w * 64 + __builtin_ctzll(~handles_used[w]));
		}
	}
	return -1;
}

static void mark_handle(int h, bool used)
{
	unsigned int w = (unsigned int)h / 64;
	uint64_t bit = 1ULL << (h % 64), wbit = 1ULL << (w % 64);

	if (used)
		handles_used[w] |= bit;
	else
		handles_used[w] &= ~bit;
	if (handles_used[w] == ~0ULL)
		handles_full[w / 64] |= wbit;
	else
		handles_full[w / 64] &= ~wbit;
}

int obj_install(struct obj *o)
{
	int h = -EMFILE, i;

	if (inject_fail(INJECT_NAMED("handle slot")))
		return h;
	mutex_lock(&handles_lock);
	i = lowest_free_handle();
	if (i >= 0) {
		o->handle = i;
		mark_handle(i, true);
		atomic_store_explicit(&handles[i], o, memory_order_release);
		h = i;
	}
	mutex_unlock(&handles_lock);
	return h;
}

static bool get_unless_zero(atomic_int *refs)
{
	int r = atomic_load(refs);

	while (r > 0)
		if (atomic_compare_exchange_weak(refs, &r, r + 1))
			return true;
	return false;
}

/* obj_foreign's error path. */
int obj_foreign_error(struct obj *o, int h, const char *fn)
{
	return gmem_err(EIO, "%s: handle %d belongs to process %d, not to this one",
			fn, h, atomic_load_explicit(&o->pid, memory_order_relaxed));
}

/* A counted reference on handle @h of @type in *@out, or -errno. */
int obj_get(int h, enum obj_type type, const char *fn, void **out)
{
	struct obj *o = obj_peek(h);
	int ret;

	if (o && (ret = obj_foreign(o, h, fn)))
		return ret;
	if (!o || !get_unless_zero(&o->refs))
		return gmem_err(EBADF, "%s: handle %d is not open", fn, h);
	if (obj_peek(h) != o) {
		obj_put(o);
		return gmem_err(EBADF, "%s: handle %d is not open", fn, h);
	}
	if (o->type != type) {
		enum obj_type t = o->type;

		obj_put(o);
		return gmem_err(EINVAL, "%s: handle %d is a %s, not a %s", fn,
				h, type_names[t], type_names[type]);
	}
	*out = o;
	return 0;
}

/* Remove handle @h from the table; the caller drops the handle's reference. */
int obj_close(int h, enum obj_type type, const char *fn, struct obj **out)
{
	struct obj *o;
	int ret = 0;

	o = obj_peek(h);
	if (o && (ret = obj_foreign(o, h, fn)))
		return ret;
	mutex_lock(&handles_lock);
	o = obj_peek(h);
	if (!o)
		ret = gmem_err(EBADF, "%s: handle %d is not open", fn, h);
	else if (o->type != type)
		ret = gmem_err(EINVAL, "%s: handle %d is a %s, not a %s", fn, h,
			       type_names[o->type], type_names[type]);
	else {
		atomic_store(&handles[h], NULL);
		mark_handle(h, false);
		o->handle = -1;
		*out = o;
	}
	mutex_unlock(&handles_lock);
	return ret;
}

/* Close handle @h and drop the reference it held: the object may live on. */
int obj_destroy(int h, enum obj_type type, const char *fn)
{
	struct obj *o;
	int ret = obj_close(h, type, fn, &o);

	if (!ret)
		obj_put(o);
	return ret;
}

void obj_put(struct obj *o)
{
	if (atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) == 1)
		o->release(o);
}

void obj_get_ref(struct obj *o)
{
	atomic_fetch_add_explicit(&o->refs, 1, memory_order_relaxed);
}

/* fork: the child's copy of the table's lock must not be held by a thread it lacks. */
void handles_fork_prepare(void)
{
	mutex_lock(&handles_lock);
}

void handles_fork_parent(void)
{
	mutex_unlock(&handles_lock);
}

void handles_fork_child(void)
{
	mutex_unlock(&handles_lock);
}
