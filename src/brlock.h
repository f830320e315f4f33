/* SPDX-License-Identifier: MIT */
/*
 * Big-reader lock, the percpu_rw_semaphore of userspace: each thread counts
 * itself in on its own cache line, so readers on different cores never
 * share a written line, and a reader runs no locked instruction. Writers are
 * rare (conversion, punch, bind) and pay for it: they raise a flag, then
 * wait for every reader slot to drain.
 *
 * Slots. The first BRLOCK_OWNED threads that take any brlock each own one
 * slot index, in every brlock, until they exit; a slot with one writer is
 * counted with a plain load and store. Threads beyond those share the last
 * slot and count with an atomic add.
 *
 * Ordering. A reader's count and the writer's flag form a Dekker pair:
 * either the reader sees the flag and backs off, or the writer sees the
 * count and waits. An owned slot's store is followed by a compiler barrier
 * only; the writer supplies the full barrier on the readers' behalf with
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) between raising the flag and
 * reading the slots (the asymmetric fence of liburcu's memb flavour and of
 * the kernel's sys_membarrier users). Where membarrier cannot be used the
 * readers count with an atomic add, as on the shared slot
 * (brlock_readers_fence). That add and the flag are both sequentially
 * consistent. The happens-before
 * edges a race detector needs are plain C11: a reader leaves with a release
 * store the writer's acquire load of the slot reads, and a writer leaves
 * with a release store of the flag the reader's acquire load reads.
 *
 * Readers that back off sleep on the flag with a futex; the flag reads 2
 * while someone sleeps, so an unlock without sleepers makes no system call.
 * A reader that finds the flag spins about as long as a writer holds the
 * lock before it sleeps, and the next writer lets the readers that waited
 * in first, for at most as long again. Without both, a thread converting in
 * a loop takes the lock back before the readers are in, and faults starve.
 * A strict turn for those readers would starve writers when readers keep
 * arriving; a bounded one cannot.
 */
#ifndef GMEM_BRLOCK_H
#define GMEM_BRLOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <pthread.h>

#include "lock.h"

#define BRLOCK_SLOTS		16
#define BRLOCK_OWNED		(BRLOCK_SLOTS - 1)	/* slots with one thread each */
#define BRLOCK_SHARED_SLOT	BRLOCK_OWNED		/* the rest count here */

struct brlock_slot {
	atomic_long readers;
	char pad[64 - sizeof(atomic_long)];
};

struct brlock {
	struct brlock_slot slot[BRLOCK_SLOTS];
	atomic_int writer;		/* 0 free, 1 held or wanted, 2 and readers sleep */
	atomic_int waiting;		/* readers that found a writer and wait */
	pthread_mutex_t writers;	/* serialises writers */
} __attribute__((aligned(64)));

void brlock_init(struct brlock *l);
void brlock_destroy(struct brlock *l);
void brlock_write_lock(struct brlock *l);
void brlock_write_unlock(struct brlock *l);
void brlock_read_lock_slow(struct brlock *l, unsigned int i);
unsigned int brlock_claim_slot(void);

extern _Thread_local unsigned int brlock_thread_slot;
extern bool brlock_readers_fence;

/* The calling thread's slot index: its own, or BRLOCK_SHARED_SLOT. */
static inline unsigned int brlock_my_slot(void)
{
	unsigned int i = brlock_thread_slot;

	if (__builtin_expect(i >= BRLOCK_SLOTS, 0))
		i = brlock_claim_slot();
	return i;
}

/* Count the calling thread in on slot @i (not yet ordered against the flag). */
static inline void brlock_reader_in(struct brlock *l, unsigned int i)
{
	atomic_long *r = &l->slot[i].readers;

	/*
	 * A sequentially consistent add orders itself before the flag's load:
	 * the shared slot's, and an owned slot's where no membarrier does it
	 * (in place of a store and a full fence, which TSan does not model).
	 */
	if (__builtin_expect(i == BRLOCK_SHARED_SLOT || brlock_readers_fence, 0)) {
		atomic_fetch_add(r, 1);
		return;
	}
	atomic_store_explicit(r, atomic_load_explicit(r, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	/* The writer's membarrier orders the store before the flag's load. */
	atomic_signal_fence(memory_order_seq_cst);
}

/* Count the calling thread out: its critical section happens before the writer's. */
static inline void brlock_reader_out(struct brlock *l, unsigned int i)
{
	atomic_long *r = &l->slot[i].readers;

	if (__builtin_expect(i == BRLOCK_SHARED_SLOT, 0)) {
		atomic_fetch_sub_explicit(r, 1, memory_order_release);
		return;
	}
	atomic_store_explicit(r, atomic_load_explicit(r, memory_order_relaxed) - 1,
			      memory_order_release);
}

static inline void brlock_read_lock(struct brlock *l)
{
	unsigned int i = brlock_my_slot();

	brlock_reader_in(l, i);
	/* seq_cst for the shared slot's Dekker pair; a plain load on x86 either way. */
	if (__builtin_expect(atomic_load(&l->writer), 0))
		brlock_read_lock_slow(l, i);
	lock_acquired(l, LOCK_SHARED);
}

static inline void brlock_read_unlock(struct brlock *l)
{
	lock_released(l);
	brlock_reader_out(l, brlock_my_slot());
}

#endif
