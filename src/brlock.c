// SPDX-License-Identifier: MIT
#include <errno.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <stdbool.h>
#include <stddef.h>
#include <sched.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "brlock.h"

/*
 * A writer waiting for readers spins about as long as a reader holds the
 * lock before it yields; a waiting reader spins about as long as a batch of
 * writes before it sleeps (a pause takes 31 ns on the 2-CPU host of
 * docs/PERFORMANCE.md).
 */
#define BRLOCK_SPINS		64
#define BRLOCK_READER_SPINS	2000

/*
 * A hand-off costs cache-line round trips between CPUs (one line passed
 * back and forth takes 390-470 ns on that host), so turns come in batches:
 * a writer keeps the lock from spinning readers for up to
 * BRLOCK_WRITE_BATCH unlocks (brlock.h), and after a hand-off the next
 * writer lets readers run for BRLOCK_READ_TURN_NS before it raises its flag.
 */
#define BRLOCK_READ_TURN_NS	20000L

/*
 * A spinning reader looks at the writer's flag once every BRLOCK_FLAG_POLL
 * pauses. Each look that finds it down takes the gap between two write
 * sections: the reader goes in, the next writer waits for it, and lines
 * cross between the CPUs both ways. Looking at every pause took nearly every
 * gap: a thread converting flat out and one faulting beside it ran at
 * 0.20-0.21x and 0.22-0.34x of their rates alone (gmem bench 6a, 6b, four
 * interleaved runs); looking every 32nd, with the writers' own fields on a
 * line of their own (brlock.h), at 0.27-0.28x and 0.28-0.43x. The line
 * alone is worth 0.02-0.03x of either.
 */
#define BRLOCK_FLAG_POLL	32
_Static_assert(offsetof(struct brlock, writers) / 64 !=
	       offsetof(struct brlock, waiting) / 64,
	       "the writers' own fields share no line with what readers poll");

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/*
 * Slot ownership: bit i of slots_owned is set while a thread owns slot i.
 * A thread gives its slot back when it exits (the key's destructor); in a
 * fork child, only the forking thread is left to own one.
 */
static atomic_uint slots_owned;
static pthread_once_t slots_once = PTHREAD_ONCE_INIT;
static pthread_key_t slot_key;
_Thread_local unsigned int brlock_thread_slot = ~0u;

static void slot_give_back(void *v)
{
	unsigned int i = (unsigned int)(uintptr_t)v - 1;

	/* A later read lock of this thread (another destructor) shares. */
	brlock_thread_slot = BRLOCK_SHARED_SLOT;
	atomic_fetch_and(&slots_owned, ~(1u << i));
}

static void slots_after_fork(void)
{
	unsigned int i = brlock_thread_slot;

	atomic_store(&slots_owned, i < BRLOCK_SHARED_SLOT ? 1u << i : 0);
}

static void slots_setup(void)
{
	if (pthread_key_create(&slot_key, slot_give_back) ||
	    pthread_atfork(NULL, NULL, slots_after_fork))
		atomic_store(&slots_owned, ~0u);	/* nobody owns: all share */
}

/* Own the lowest free slot, or share the last one if none is free. */
unsigned int brlock_my_slot_slow(void)
{
	unsigned int owned, i;

	pthread_once(&slots_once, slots_setup);
	owned = atomic_load(&slots_owned);
	do {
		unsigned int free = ~owned & ((1u << BRLOCK_SHARED_SLOT) - 1);

		if (!free) {
			brlock_thread_slot = BRLOCK_SHARED_SLOT;
			return brlock_thread_slot;
		}
		i = (unsigned int)__builtin_ctz(free);
	} while (!atomic_compare_exchange_weak(&slots_owned, &owned, owned | 1u << i));
	if (pthread_setspecific(slot_key, (void *)(uintptr_t)(i + 1))) {
		atomic_fetch_and(&slots_owned, ~(1u << i));
		i = BRLOCK_SHARED_SLOT;
	}
	brlock_thread_slot = i;
	return brlock_thread_slot;
}

void brlock_init(struct brlock *l)
{
	for (int i = 0; i < BRLOCK_SLOTS; i++)
		atomic_init(&l->slot[i].readers, 0);
	atomic_init(&l->writer, 0);
	atomic_init(&l->waiting, 0);
	atomic_init(&l->granted, 0);
	l->rare_writers = false;
	l->kept = 0;
	l->readers_until = 0;
	pthread_mutex_init(&l->writers, NULL);
}

static int membarrier(int cmd)
{
	return (int)syscall(SYS_membarrier, cmd, 0, 0);
}

static pthread_once_t membarrier_once = PTHREAD_ONCE_INIT;
static bool have_membarrier;

static void membarrier_register(void)
{
	int cmds = membarrier(MEMBARRIER_CMD_QUERY);

	have_membarrier = cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
			  !membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
}

/*
 * Readers that own a slot take @l with plain stores; its writers call
 * membarrier(). Where the kernel lacks the private expedited command, @l is
 * a plain brlock.
 */
void brlock_init_rare_writers(struct brlock *l)
{
	brlock_init(l);
	pthread_once(&membarrier_once, membarrier_register);
	l->rare_writers = have_membarrier;
}

/*
 * Every CPU that runs a thread of this process has passed a full barrier:
 * a reader's count stored before it is visible. The registration is the
 * process's (a fork child inherits it); EPERM registers again. The writer
 * may not go on without the barrier, so any other failure (ENOMEM, where
 * the kernel allocates a CPU mask for it) is retried.
 */
static void fence_readers(void)
{
	while (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)) {
		if (errno == EPERM)
			membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
		else
			sched_yield();
	}
}

void brlock_destroy(struct brlock *l)
{
	pthread_mutex_destroy(&l->writers);
}

static void futex_wait(atomic_uint *addr, unsigned int val)
{
	syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake_all(atomic_uint *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
}

/*
 * Stop waiting for @turn to pass: true if done, false if it passed first
 * (the unlock that passed it let us in and counted on us).
 */
static bool stop_waiting(struct brlock *l, unsigned int turn)
{
	unsigned int w = atomic_load(&l->waiting);

	while (w >> BRLOCK_TURN_SHIFT == turn)
		if (atomic_compare_exchange_weak(&l->waiting, &w, w - 1))
			return true;
	return false;
}

/*
 * A writer holds or wants the lock: step out, count ourselves in `waiting`
 * and wait for a write unlock to pass our turn, which lets us in.
 */
void brlock_read_lock_slow(struct brlock *l, struct brlock_slot *s)
{
	unsigned int w, turn;
	int spin = 0;

	for (;;) {
		atomic_fetch_sub_explicit(&s->readers, 1, memory_order_release);
		turn = atomic_fetch_add(&l->waiting, 1) >> BRLOCK_TURN_SHIFT;
		/*
		 * The writer we saw may have unlocked before we counted
		 * ourselves: the next turn needs a writer to pass it.
		 */
		if (atomic_load(&l->writer) || !stop_waiting(l, turn))
			break;
		atomic_fetch_add(&s->readers, 1);
		if (!atomic_load(&l->writer))
			return;
	}
	while ((w = atomic_load(&l->waiting)) >> BRLOCK_TURN_SHIFT == turn) {
		if (spin < BRLOCK_READER_SPINS && ++spin % BRLOCK_FLAG_POLL) {
			cpu_relax();
			continue;
		}
		if (!atomic_load(&l->writer)) {
			/* A writer kept the turn and went: take the gap. */
			if (stop_waiting(l, turn)) {
				atomic_fetch_add(&s->readers, 1);
				if (!atomic_load(&l->writer))
					return;
				atomic_fetch_sub_explicit(&s->readers, 1, memory_order_release);
				turn = atomic_fetch_add(&l->waiting, 1) >> BRLOCK_TURN_SHIFT;
			}
			continue;
		}
		if (spin < BRLOCK_READER_SPINS) {
			cpu_relax();
		} else if ((w & BRLOCK_SLEEPERS) ||
			   atomic_compare_exchange_weak(&l->waiting, &w, w | BRLOCK_SLEEPERS)) {
			/* An unlock that saw no sleeper may have kept the turn. */
			if (atomic_load(&l->writer))
				futex_wait(&l->waiting, w | BRLOCK_SLEEPERS);
		}
	}
	/* Let in: the next writer waits until we are counted. */
	atomic_fetch_add(&s->readers, 1);
	atomic_fetch_sub_explicit(&l->granted, 1, memory_order_release);
}

static void wait_for_zero(atomic_long *count)
{
	for (int spin = 0; atomic_load(count); spin++) {
		if (spin < BRLOCK_SPINS)
			cpu_relax();
		else
			sched_yield();
	}
}

static long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

void brlock_write_lock(struct brlock *l)
{
	pthread_mutex_lock(&l->writers);
	if (l->readers_until) {
		while (now_ns() < l->readers_until)
			cpu_relax();
		l->readers_until = 0;
	}
	atomic_store(&l->writer, 1);
	if (l->rare_writers)
		fence_readers();
	/* The readers the last unlock let in go first. */
	wait_for_zero(&l->granted);
	for (int i = 0; i < BRLOCK_SLOTS; i++)
		wait_for_zero(&l->slot[i].readers);
	lock_acquired(l, LOCK_EXCLUSIVE);
}

/*
 * The flag drops before the turn passes: a reader that counts itself in
 * `waiting` after this unlock read it sees either no writer, or a later
 * one, whose unlocks pass its turn within a batch. An unlock that keeps the turn leaves
 * no reader stranded: those spinning see the flag down and take the gap,
 * and one that sleeps makes the unlock pass the turn.
 */
void brlock_write_unlock(struct brlock *l)
{
	unsigned int w;

	lock_released(l);
	atomic_store(&l->writer, 0);
	w = atomic_load(&l->waiting);
	if ((w & BRLOCK_SLEEPERS) ||
	    ((w & BRLOCK_WAITERS) && ++l->kept >= BRLOCK_WRITE_BATCH)) {
		l->kept = 0;
		if (w & BRLOCK_WAITERS)
			l->readers_until = now_ns() + BRLOCK_READ_TURN_NS;
		while (!atomic_compare_exchange_weak(&l->waiting, &w,
				(w & ~0xffffu) + (1u << BRLOCK_TURN_SHIFT)))
			;
		atomic_fetch_add(&l->granted, w & BRLOCK_WAITERS);
		if (w & BRLOCK_SLEEPERS)
			futex_wake_all(&l->waiting);
	}
	pthread_mutex_unlock(&l->writers);
}
