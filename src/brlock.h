/* SPDX-License-Identifier: MIT */
/*
 * Big-reader lock, the percpu_rw_semaphore of userspace: each thread counts
 * itself in on its own cache line, so readers on different cores never
 * share a written line. Writers are rare (conversion, punch, bind) and pay
 * for it: they raise a flag, then wait for every reader slot to drain.
 *
 * The reader's increment and the writer's flag are both sequentially
 * consistent: either the reader sees the flag and backs off, or the writer
 * sees the reader's count and waits. Readers that back off sleep on the flag
 * with a futex; the flag reads 2 while someone sleeps, so an unlock without
 * sleepers makes no system call.
 *
 * A reader that finds the flag spins about as long as a writer holds the
 * lock before it sleeps. Without that, a thread converting in a loop takes
 * the lock back before the readers it woke are scheduled, and faults starve.
 */
#ifndef GMEM_BRLOCK_H
#define GMEM_BRLOCK_H

#include <stdatomic.h>
#include <pthread.h>

#include "lock.h"

#define BRLOCK_SLOTS 16

struct brlock_slot {
	atomic_long readers;
	char pad[64 - sizeof(atomic_long)];
};

struct brlock {
	struct brlock_slot slot[BRLOCK_SLOTS];
	atomic_int writer;		/* 0 free, 1 held or wanted, 2 and readers sleep */
	pthread_mutex_t writers;	/* serialises writers */
} __attribute__((aligned(64)));

void brlock_init(struct brlock *l);
void brlock_destroy(struct brlock *l);
void brlock_write_lock(struct brlock *l);
void brlock_write_unlock(struct brlock *l);
void brlock_read_lock_slow(struct brlock *l, struct brlock_slot *s);
unsigned int brlock_my_slot(void);

static inline void brlock_read_lock(struct brlock *l)
{
	struct brlock_slot *s = &l->slot[brlock_my_slot()];

	atomic_fetch_add(&s->readers, 1);
	if (__builtin_expect(atomic_load(&l->writer), 0))
		brlock_read_lock_slow(l, s);
	lock_acquired(l, LOCK_SHARED);
}

static inline void brlock_read_unlock(struct brlock *l)
{
	lock_released(l);
	atomic_fetch_sub_explicit(&l->slot[brlock_my_slot()].readers, 1,
				  memory_order_release);
}

#endif
