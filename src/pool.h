/* SPDX-License-Identifier: MIT */
/*
 * The host memory pool (pool.c): one sparse memfd holding every frame of
 * every file made from it, mapped once (the direct map), handed out in
 * windows of contiguous frames, one per file. The arch's frame model lives
 * here too (pool->frames); backends reach it through arch.h only.
 */
#ifndef GMEM_POOL_H
#define GMEM_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "arch.h"
#include "handle.h"

struct window;

#define POOL_HUGE_FRAMES	512	/* one host huge page (a PMD): 2 MiB */

struct gmem_pool {
	struct obj obj;
	int memfd;			/* the pool file (pool.c) */
	bool huge_pages;		/* on a huge=advise tmpfs: see pool.c */
	uint8_t *direct_map;
	uint64_t nframes;
	pthread_mutex_t lock;		/* the window list and the arch claim */
	struct window *windows;		/* free extents, sorted by pfn */
	struct window *spares;		/* one per window in use: its release needs no memory */
	atomic_uint_least64_t frames_in_use;
	atomic_uint_least64_t frames_reserved;
	atomic_uint_least64_t files;
	atomic_uint_least64_t metadata_bytes;
	atomic_uint_least64_t *frames;	/* arch model, one word per frame */
	atomic_uint_least64_t *was_private;	/* the engine's mark, a bit per frame */
	/* One machine, one arch: set by the first VM (pool_claim_arch). */
	_Atomic(const struct gmem_arch *) arch;
	unsigned int arch_claims;	/* VM creates in flight; under lock */
	bool arch_bound;		/* a VM was created: the arch is for good */
	atomic_uint next_vm_id;
};

void pool_put(struct gmem_pool *pool);
int pool_reserve_window(struct gmem_pool *pool, uint64_t nframes,
			uint64_t align, uint64_t *base);
void pool_release_window(struct gmem_pool *pool, uint64_t base,
			 uint64_t nframes);
void pool_discard(struct gmem_pool *pool, uint64_t pfn, uint64_t nr);
int pool_allocate(struct gmem_pool *pool, uint64_t pfn, uint64_t nr, bool huge);
void *pool_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int pool_advise_huge(struct gmem_pool *pool, uint64_t base, uint64_t nframes,
		     bool huge);
int pool_claim_arch(struct gmem_pool *pool, const struct gmem_arch *arch);
void pool_settle_arch(struct gmem_pool *pool, bool created);

static inline void *pool_va(struct gmem_pool *pool, uint64_t pfn)
{
	return pool->direct_map + (pfn << PAGE_SHIFT);
}

/*
 * The engine's mark on a frame, beside the arch model: the frame now holds
 * guest-private data and must be reclaimed before reuse; or it no longer
 * does (reclaimed, or its content destroyed). A bit per frame, so a backend
 * without hardware state (sw) spends 32 KiB per GiB on it, not a word per
 * frame, and a first fault reads a line 64 frames share.
 */
static inline bool frame_was_private(struct gmem_pool *pool, uint64_t pfn)
{
	return atomic_load_explicit(&pool->was_private[pfn / 64],
				    memory_order_relaxed) & (1ULL << (pfn % 64));
}

static inline void frame_mark_private(struct gmem_pool *pool, uint64_t pfn)
{
	if (!frame_was_private(pool, pfn))
		atomic_fetch_or(&pool->was_private[pfn / 64], 1ULL << (pfn % 64));
}

static inline void frame_forget_private(struct gmem_pool *pool, uint64_t pfn)
{
	if (frame_was_private(pool, pfn))
		atomic_fetch_and(&pool->was_private[pfn / 64],
				 ~(1ULL << (pfn % 64)));
}

bool frame_is_zero(struct gmem_pool *pool, uint64_t pfn);

#endif
