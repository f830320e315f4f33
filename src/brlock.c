// SPDX-License-Identifier: MIT
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "brlock.h"

#define BRLOCK_SPINS	2000

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* ---------------------------------------------------------- reader slots */

_Thread_local unsigned int brlock_thread_slot = ~0u;
bool brlock_readers_fence;

static atomic_uint slots_owned;		/* bit i: slot i has its thread */
static pthread_key_t slot_key;
static pthread_once_t slot_once = PTHREAD_ONCE_INIT;

/* A thread that exits holds no brlock: its slot is free for the next thread. */
static void release_slot(void *arg)
{
	unsigned int i = (unsigned int)(uintptr_t)arg - 1;

	/* A later destructor of this thread that takes a brlock counts shared. */
	brlock_thread_slot = BRLOCK_SHARED_SLOT;
	atomic_fetch_and(&slots_owned, ~(1u << i));
}

static long membarrier(int cmd)
{
	return syscall(SYS_membarrier, cmd, 0, 0);
}

/*
 * Once per process, before the first brlock exists: register for private
 * expedited membarrier, or make every reader fence itself where that fails.
 */
static void slots_setup(void)
{
	if (pthread_key_create(&slot_key, release_slot) ||
	    membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED))
		brlock_readers_fence = true;
}

unsigned int brlock_claim_slot(void)
{
	unsigned int owned = atomic_load(&slots_owned), i;

	do {
		if (owned == (1u << BRLOCK_OWNED) - 1) {
			brlock_thread_slot = BRLOCK_SHARED_SLOT;
			return BRLOCK_SHARED_SLOT;
		}
		i = __builtin_ctz(~owned);
	} while (!atomic_compare_exchange_weak(&slots_owned, &owned,
					       owned | (1u << i)));
	/*
	 * A writer that read the mask before this claim sent no membarrier:
	 * this fence orders its flag before this thread's loads of it.
	 */
	atomic_thread_fence(memory_order_seq_cst);
	if (pthread_setspecific(slot_key, (void *)(uintptr_t)(i + 1))) {
		release_slot((void *)(uintptr_t)(i + 1));
		i = BRLOCK_SHARED_SLOT;
	}
	brlock_thread_slot = i;
	return i;
}

/*
 * The full barrier each reader's plain count owes: every running thread of
 * the process executes one before this returns. Only threads that own a
 * slot count without a barrier of their own; if the caller is the only one,
 * there is nothing to order.
 */
static void sync_readers(void)
{
	unsigned int others = atomic_load(&slots_owned);

	if (brlock_thread_slot < BRLOCK_OWNED)
		others &= ~(1u << brlock_thread_slot);
	if (brlock_readers_fence || !others)
		return;
	/* Registered in slots_setup (a fork child inherits it): retry once registered anew. */
	if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
	    (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) ||
	     membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED))) {
		fprintf(stderr, "gmem: membarrier failed, readers cannot be ordered\n");
		abort();
	}
}

/* ---------------------------------------------------------------- locks */

void brlock_init(struct brlock *l)
{
	pthread_once(&slot_once, slots_setup);
	for (int i = 0; i < BRLOCK_SLOTS; i++)
		atomic_init(&l->slot[i].readers, 0);
	atomic_init(&l->writer, 0);
	atomic_init(&l->waiting, 0);
	pthread_mutex_init(&l->writers, NULL);
}

void brlock_destroy(struct brlock *l)
{
	pthread_mutex_destroy(&l->writers);
}

static void futex_wait(atomic_int *addr, int val)
{
	syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake_all(atomic_int *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
}

/* A writer holds or wants the lock: step out, sleep until it is gone, retry. */
void brlock_read_lock_slow(struct brlock *l, unsigned int i)
{
	atomic_fetch_add(&l->waiting, 1);
	do {
		int w;

		brlock_reader_out(l, i);
		/*
		 * Writers hold the lock for about a microsecond: spin that
		 * long before paying for a sleep and a wake-up.
		 */
		for (int spin = 0; spin < BRLOCK_SPINS && atomic_load(&l->writer); spin++)
			cpu_relax();
		while ((w = atomic_load(&l->writer))) {
			if (w == 1 && !atomic_compare_exchange_strong(&l->writer, &w, 2))
				continue;
			futex_wait(&l->writer, 2);
		}
		brlock_reader_in(l, i);
	} while (atomic_load(&l->writer));
	atomic_fetch_sub_explicit(&l->waiting, 1, memory_order_relaxed);
}

void brlock_write_lock(struct brlock *l)
{
	pthread_mutex_lock(&l->writers);
	/* The readers that waited for the last writer go first, within a bound. */
	for (int spin = 0; spin < BRLOCK_SPINS && atomic_load_explicit(&l->waiting, memory_order_relaxed); spin++)
		cpu_relax();
	atomic_store(&l->writer, 1);
	sync_readers();
	for (int i = 0; i < BRLOCK_SLOTS; i++)
		while (atomic_load_explicit(&l->slot[i].readers, memory_order_acquire))
			sched_yield();
	lock_acquired(l, LOCK_EXCLUSIVE);
}

void brlock_write_unlock(struct brlock *l)
{
	lock_released(l);
	if (atomic_exchange(&l->writer, 0) == 2)
		futex_wake_all(&l->writer);
	pthread_mutex_unlock(&l->writers);
}
