// SPDX-License-Identifier: MIT
/*
 * The lock assertions of lock.h (GMEM_LOCK_ASSERT builds only): each thread
 * keeps the locks it holds in a small table, as lockdep's held_locks. The
 * table is also written from the shootdown handler (hm_lock), so an entry is
 * reserved before it is filled and removed after its slot is reused: a
 * handler that interrupts either step pushes and pops above it.
 */
#include "lock.h"

#if GMEM_LOCK_ASSERT
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define HELD_MAX	48

struct held_lock {
	const void *lock;
	enum lock_mode mode;
};

static _Thread_local struct held_lock held[HELD_MAX];
static _Thread_local unsigned int nheld;
static _Thread_local unsigned int lost;	/* acquired past HELD_MAX */

void lock_acquired(const void *lock, enum lock_mode mode)
{
	unsigned int n = nheld;

	if (n == HELD_MAX) {
		lost++;
		return;
	}
	nheld = n + 1;
	atomic_signal_fence(memory_order_seq_cst);
	held[n] = (struct held_lock){ lock, mode };
}

void lock_released(const void *lock)
{
	for (unsigned int i = nheld; i-- > 0;) {
		if (held[i].lock == lock) {
			held[i] = held[nheld - 1];
			atomic_signal_fence(memory_order_seq_cst);
			nheld--;
			return;
		}
	}
	if (lost)
		lost--;
}

void lock_check_held(const void *lock, unsigned int modes, const char *name,
		     const char *func)
{
	for (unsigned int i = nheld; i-- > 0;)
		if (held[i].lock == lock && (held[i].mode & modes))
			return;
	if (lost)	/* the table overflowed: cannot tell */
		return;
	fprintf(stderr, "gmem: %s: lock assertion failed: %s is not held%s by this thread\n",
		func, name, modes == LOCK_SHARED ? " shared" :
			    modes == LOCK_EXCLUSIVE ? " exclusive" : "");
	abort();
}
#endif
