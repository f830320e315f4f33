// SPDX-License-Identifier: MIT
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "brlock.h"

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

void brlock_wait_writer(struct brlock *l)
{
	while (atomic_load(&l->writer))
		futex_wait(&l->writer, 1);
}

void brlock_write_lock(struct brlock *l)
{
	pthread_mutex_lock(&l->writers);
	atomic_store(&l->writer, 1);
	for (int i = 0; i < BRLOCK_SLOTS; i++)
		while (atomic_load(&l->slot[i].readers))
			sched_yield();
}

void brlock_write_unlock(struct brlock *l)
{
	atomic_store(&l->writer, 0);
	futex_wake_all(&l->writer);
	pthread_mutex_unlock(&l->writers);
}
