// SPDX-License-Identifier: MIT
#include <linux/futex.h>
#include <stdbool.h>
#include <sched.h>
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

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static atomic_uint next_slot;
static _Thread_local unsigned int my_slot = ~0u;

/* Threads take slots round robin, so the first BRLOCK_SLOTS never share. */
unsigned int brlock_my_slot(void)
{
	if (__builtin_expect(my_slot == ~0u, 0))
		my_slot = atomic_fetch_add(&next_slot, 1) % BRLOCK_SLOTS;
	return my_slot;
}

void brlock_init(struct brlock *l)
{
	for (int i = 0; i < BRLOCK_SLOTS; i++)
		atomic_init(&l->slot[i].readers, 0);
	atomic_init(&l->writer, 0);
	atomic_init(&l->waiting, 0);
	atomic_init(&l->granted, 0);
	l->kept = 0;
	l->readers_until = 0;
	pthread_mutex_init(&l->writers, NULL);
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
			spin++;
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
