// SPDX-License-Identifier: MIT
#include <linux/futex.h>
#include <sched.h>
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
void brlock_read_lock_slow(struct brlock *l, struct brlock_slot *s)
{
	do {
		int w;

		atomic_fetch_sub_explicit(&s->readers, 1, memory_order_release);
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
		atomic_fetch_add(&s->readers, 1);
	} while (atomic_load(&l->writer));
}

void brlock_write_lock(struct brlock *l)
{
	pthread_mutex_lock(&l->writers);
	atomic_store(&l->writer, 1);
	for (int i = 0; i < BRLOCK_SLOTS; i++)
		while (atomic_load(&l->slot[i].readers))
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
