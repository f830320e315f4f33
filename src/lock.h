/* SPDX-License-Identifier: MIT */
/*
 * Every lock of the engine, in order, and the assertions that check the
 * "caller holds" rules.
 *
 * Order, outermost first: a thread holding a lock takes only locks below it.
 *
 *   handles_lock               handle.c: the handle table and the free
 *                              objects. A leaf, except at fork, where
 *                              all_mappings_lock nests inside it.
 *   vm->slots_lock             brlock: the VM's memslots. Shared across a
 *                              whole guest access (vm_enter), as KVM holds
 *                              SRCU; exclusive in bind, unbind, file release.
 *                              Rare writers: a reader that owns its slot
 *                              takes no fence (brlock_init_rare_writers).
 *   vm->files_lock             the VM's list of files, for the checker;
 *                              check_after() holds it over every file.
 *   file->invalidate_lock      brlock: the filemap invalidate lock. Shared by
 *                              faults, pins, allocation, host-mapping setup;
 *                              exclusive in conversion, punch, populate, bind,
 *                              unbind, release.
 *   all_mappings_lock          mapping.c: the process's host mappings;
 *                              makes each gmem_mmap/gmem_munmap one step.
 *   file->mappings_lock        one file's host mappings, one file at a time.
 *   hm_lock                    sigbus.c: the signal handlers' table of
 *                              mappings, taken with the shootdown signal
 *                              blocked (and by the shootdown handler).
 *   vm->mmu_lock               brlock: stage-2 and the invalidation state.
 *                              Shared by faults (install), exclusive around
 *                              zaps and invalidate start/end. Never held
 *                              together with the three locks above it. A
 *                              present fault's lookup takes it only when
 *                              zaps raced it twice (s2_lookup_unlocked).
 *   leaves, which never have another lock taken under them:
 *   s2->free_lock              stage2.c: the VM's stage-2 tables out of the
 *                              tree, kept for reuse.
 *   file->pins_lock            pin.c: the pinned runs.
 *   sd slot lock               process.c: one fork child's shootdown slot, a
 *                              spin lock in memory shared across processes.
 *   pool->lock                 pool.c: free windows and the arch claim.
 *   check->lock                check.c: a GMEM_VM_CHECK VM's record of
 *                              violations. A leaf everywhere: check_after()
 *                              too takes it inside the locks of its walk.
 *
 * brlock's own writers mutex is internal to brlock.c.
 *
 * Assertions. lock_assert_held(&l), lock_assert_held_shared(&l) and
 * lock_assert_held_exclusive(&l) state what a function requires, as the
 * kernel's lockdep_assert_held() does, and abort with the lock's name and
 * the function when the calling thread does not hold it so. They run where
 * GMEM_LOCK_ASSERT is 1: set it with -DGMEM_LOCK_ASSERT, and it is on by
 * itself in the sanitizer builds (make check-asan, check-tsan, fuzz). Each
 * thread then keeps the locks it holds in a small table (lock.c), updated
 * by mutex_lock/mutex_unlock, the brlock calls and hm_lock. Otherwise every
 * helper here compiles to nothing: a plain build pays no store, no branch.
 */
#ifndef GMEM_LOCK_H
#define GMEM_LOCK_H

#include <pthread.h>

#ifndef GMEM_LOCK_ASSERT
# if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#  define GMEM_LOCK_ASSERT 1
# elif defined(__has_feature)
#  if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#   define GMEM_LOCK_ASSERT 1
#  endif
# endif
#endif
#ifndef GMEM_LOCK_ASSERT
# define GMEM_LOCK_ASSERT 0
#endif

enum lock_mode {
	LOCK_SHARED = 1,
	LOCK_EXCLUSIVE = 2,
};

#if GMEM_LOCK_ASSERT
/* The calling thread now holds @lock in @mode / no longer holds it. */
void lock_acquired(const void *lock, enum lock_mode mode);
void lock_released(const void *lock);
/* Abort unless the calling thread holds @lock in one of @modes. */
void lock_check_held(const void *lock, unsigned int modes, const char *name,
		     const char *func);

#define lock_assert_held(l) \
	lock_check_held((l), LOCK_SHARED | LOCK_EXCLUSIVE, #l, __func__)
#define lock_assert_held_shared(l) \
	lock_check_held((l), LOCK_SHARED, #l, __func__)
#define lock_assert_held_exclusive(l) \
	lock_check_held((l), LOCK_EXCLUSIVE, #l, __func__)
#else
static inline void lock_acquired(const void *lock, enum lock_mode mode) {}
static inline void lock_released(const void *lock) {}

#define lock_assert_held(l)		((void)(l))
#define lock_assert_held_shared(l)	((void)(l))
#define lock_assert_held_exclusive(l)	((void)(l))
#endif

/* pthread mutexes, recorded for the assertions. */
static inline void mutex_lock(pthread_mutex_t *m)
{
	pthread_mutex_lock(m);
	lock_acquired(m, LOCK_EXCLUSIVE);
}

static inline void mutex_unlock(pthread_mutex_t *m)
{
	lock_released(m);
	pthread_mutex_unlock(m);
}

#endif
