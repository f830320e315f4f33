/* SPDX-License-Identifier: MIT */
/*
 * Big-reader lock, the percpu_rw_semaphore of userspace: each thread counts
 * itself in on its own cache line, so readers on different cores never
 * share a written line. Writers are rare (conversion, punch, bind) and pay
 * for it: they raise a flag, then wait for every reader slot to drain.
 *
 * The reader's increment and the writer's flag are both sequentially
 * consistent: either the reader sees the flag and backs off, or the writer
 * sees the reader's count and waits.
 *
 * Slots are owned: the first BRLOCK_SLOTS - 1 threads that take a read lock
 * own one each, until they exit; later threads share the last one. Only its
 * owner writes an owned slot, so a read unlock there is a plain store, not a
 * read-modify-write. A lock whose writers are rare (brlock_init_rare_writers:
 * a VM's memslots) goes further: an owner's read lock is a plain store too,
 * with no fence, and each write lock pays for the missing fence with one
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), which runs a full barrier
 * on every CPU running a thread of the process before the writer reads the
 * slots (the asymmetric fence of userspace RCU): a reader's count is then
 * visible to the writer, or the reader's later load sees the flag.
 *
 * Hand-off in batches: a reader that backs off counts itself in `waiting`
 * and waits for a write unlock to pass its turn, which lets in every reader
 * counted there (moves them to `granted`); the next writer waits until they
 * are in and out again. An unlock passes the turn when a waiter sleeps, or
 * when it is the BRLOCK_WRITE_BATCH-th that found waiters since the last
 * hand-off; the others keep it, and a spinning reader takes the gap if the
 * flag stays down. After a hand-off the next writer lets readers run for
 * BRLOCK_READ_TURN_NS (brlock.c) before it raises its flag. So a reader,
 * once counted while a writer holds or wants the lock, gets in within
 * BRLOCK_WRITE_BATCH write unlocks, however fast writers come back for the
 * lock; a writer waits for the readers already in, the ones its predecessor
 * let in, and the read turn, while readers that come after its flag wait:
 * a stream of readers cannot keep it out. Batches, because a hand-off costs
 * cache-line round trips between CPUs: with one at every unlock, a thread
 * converting in a loop and one faulting beside it both fell far below their
 * rates alone (docs/design.md has the figures).
 *
 * `waiting` packs the number of waiting readers (bits 0-14: fewer than
 * 32768 threads may wait on one lock at once), a flag that one of them
 * sleeps on the word with a futex (bit 15), and the turn they wait to pass,
 * the count of hand-offs modulo 2^16 (bits 16-31). An unlock that does not
 * hand off writes nothing there and makes no system call.
 */
#ifndef GMEM_BRLOCK_H
#define GMEM_BRLOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <pthread.h>

#include "lock.h"

#define BRLOCK_SLOTS 16
#define BRLOCK_SHARED_SLOT	(BRLOCK_SLOTS - 1)	/* threads beyond the owners */

#define BRLOCK_WAITERS		0x7fffu		/* readers waiting for the unlock */
#define BRLOCK_SLEEPERS		0x8000u		/* one of them sleeps on `waiting` */
#define BRLOCK_TURN_SHIFT	16		/* the turn they wait to pass */
#define BRLOCK_WRITE_BATCH	64		/* unlocks that may keep the turn */

struct brlock_slot {
	atomic_long readers;
	char pad[64 - sizeof(atomic_long)];
};

struct brlock {
	struct brlock_slot slot[BRLOCK_SLOTS];
	atomic_int writer;		/* 0 free, 1 held or wanted */
	bool rare_writers;		/* owners read-lock with no fence (see above) */
	atomic_uint waiting;		/* waiters, sleepers, turn: see above */
	atomic_long granted;		/* let in by the last unlock, not yet counted in */
	/*
	 * The writers' own, on a line of their own: waiting readers poll the
	 * line above, and each write to a line they poll costs the writer a
	 * round trip between CPUs to take it back.
	 */
	pthread_mutex_t writers __attribute__((aligned(64)));	/* serialises writers, and guards: */
	unsigned int kept;		/* unlocks that kept the turn from waiters */
	long readers_until;		/* after a hand-off, readers run until then (ns) */
} __attribute__((aligned(64)));

void brlock_init(struct brlock *l);
void brlock_init_rare_writers(struct brlock *l);
void brlock_destroy(struct brlock *l);
void brlock_write_lock(struct brlock *l);
void brlock_write_unlock(struct brlock *l);
void brlock_read_lock_slow(struct brlock *l, struct brlock_slot *s);
/*
 * The calling thread's slot; ~0u until its first read lock (brlock.c).
 * Inline: where libgmem is linked into the program, one load from the
 * thread pointer. (Not initial-exec TLS: libgmem.so must stay loadable by
 * dlopen, which then may find no static TLS left.)
 */
extern _Thread_local unsigned int brlock_thread_slot;
unsigned int brlock_my_slot_slow(void);

static inline unsigned int brlock_my_slot(void)
{
	unsigned int i = brlock_thread_slot;

	if (__builtin_expect(i == ~0u, 0))
		return brlock_my_slot_slow();
	return i;
}

static inline void brlock_read_lock(struct brlock *l)
{
	unsigned int i = brlock_my_slot();
	struct brlock_slot *s = &l->slot[i];

	if (l->rare_writers && i != BRLOCK_SHARED_SLOT) {
		atomic_store_explicit(&s->readers, atomic_load_explicit(&s->readers,
				      memory_order_relaxed) + 1, memory_order_relaxed);
		/* The writer's membarrier() orders this store before the load. */
		atomic_signal_fence(memory_order_seq_cst);
	} else {
		atomic_fetch_add(&s->readers, 1);
	}
	if (__builtin_expect(atomic_load(&l->writer), 0))
		brlock_read_lock_slow(l, s);
	lock_acquired(l, LOCK_SHARED);
}

static inline void brlock_read_unlock(struct brlock *l)
{
	unsigned int i = brlock_my_slot();
	struct brlock_slot *s = &l->slot[i];

	lock_released(l);
	if (i != BRLOCK_SHARED_SLOT)
		atomic_store_explicit(&s->readers, atomic_load_explicit(&s->readers,
				      memory_order_relaxed) - 1, memory_order_release);
	else
		atomic_fetch_sub_explicit(&s->readers, 1, memory_order_release);
}

#endif
