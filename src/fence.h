/* SPDX-License-Identifier: MIT */
/*
 * Fences (fence.c): how gmem makes pages of a host mapping unreachable and
 * reachable again.
 *
 * Guard regions (MADV_GUARD_INSTALL) where the kernel has them for shared
 * file mappings (6.15 on): per page-table entry, so they never split a VMA,
 * and an access faults with SIGSEGV (SEGV_MAPERR), which sigbus.c turns into
 * SIGBUS. A guard is a page-table entry, so guarding a 2 MiB chunk costs a
 * page-table page (4 KiB per 2 MiB: 2 MiB per GiB).
 *
 * Chunk fences, over a whole 2 MiB-aligned chunk of a host mapping that a
 * fence closes entirely (fence_close_map, with guards): the chunk is mapped
 * from the empty past-EOF memfd instead of the pool (mmap MAP_FIXED, the
 * offset the pool had there, so neighbouring fenced chunks merge into one
 * VMA). The kernel itself raises SIGBUS (BUS_ADRERR, si_addr) there, with
 * no handler, and the chunk costs no page table (the pool's tables there
 * are freed with the unmap). It costs VMAs instead: none where it covers
 * whole VMAs (a mapping private throughout stays one VMA), two where it
 * cuts one in the middle. Out of VMAs (vm.max_map_count), the chunk is
 * guarded instead. Opening part of such a chunk maps the pool back
 * inaccessible, guards the pages that stay private, then gives the
 * mapping's protection: no private page is reachable at any moment.
 *
 * Without guards: mprotect(PROT_NONE), a VMA per fenced range, SEGV_ACCERR;
 * no chunk fences.
 */
#ifndef GMEM_FENCE_H
#define GMEM_FENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL	102
#define MADV_GUARD_REMOVE	103
#endif

/* /proc/self/pagemap entry bits. */
#define PM_PRESENT	(1ULL << 63)
#define PM_GUARD	(1ULL << 58)	/* a guard region's marker */

/* A chunk: what one page-table page maps. */
#define CHUNK_SHIFT	21
#define CHUNK_SIZE	(1ULL << CHUNK_SHIFT)
#define CHUNK_DOWN(a)	((uintptr_t)(a) & ~(uintptr_t)(CHUNK_SIZE - 1))

/* Does this kernel have guard regions for shared file mappings? */
bool fence_uses_guards(void);

/* The empty memfd every access to a mapping of which raises SIGBUS; -1 if none. */
int fence_past_eof_fd(void);

/*
 * Fence [addr, addr + len): no access reaches the pages. fence_open gives
 * access back, with protection @prot where fences are mprotect. Both return
 * 0 or -ENOMEM (no memory for a VMA split). Async-signal-safe once
 * fence_uses_guards() has been called. Guards only: no chunk fences.
 */
int fence_close(void *addr, size_t len);
int fence_open(void *addr, size_t len, int prot);

/*
 * A host mapping as the chunk fences see it: at @addr it shows file pages
 * [pgoff, pgoff + npages), which are the pool memfd's bytes from @pool_pos;
 * @whole has a bit per 2 MiB chunk of addresses from @whole_base, set while
 * the chunk is fenced whole (NULL: guards only). Where @pool_ino is not 0,
 * @pool_fd is checked to still be that file before it is mapped (a fork
 * child may have closed it).
 */
struct fence_map {
	uint8_t *addr;
	uint64_t pgoff, npages;
	int prot;
	bool huge;		/* MADV_HUGEPAGE on the pool's pages */
	int pool_fd;
	off_t pool_pos;
	dev_t pool_dev;
	ino_t pool_ino;
	uint64_t *whole;
	uintptr_t whole_base;
};

/*
 * Fence, or open, file pages [start, end) in @fm. With @whole, the chunks
 * the range covers entirely are fenced whole (a close that only completes a
 * chunk guards its pages: a page converted back and forth inside a private
 * chunk costs a guard each way, not a remap); other pages are guarded.
 * Return 0 or -ENOMEM, with what could be done done: a close that fails
 * leaves the pages it did not fence reachable, an open the pages it did not
 * open fenced. Async-signal-safe (system calls).
 */
int fence_close_map(struct fence_map *fm, uint64_t start, uint64_t end,
		    bool whole);
int fence_open_map(struct fence_map *fm, uint64_t start, uint64_t end);

/* Is the chunk at @va fenced whole in @fm? */
static inline bool fence_chunk_whole(const struct fence_map *fm, uintptr_t va)
{
	uintptr_t i = (CHUNK_DOWN(va) - fm->whole_base) >> CHUNK_SHIFT;

	return fm->whole && (fm->whole[i / 64] >> (i % 64) & 1);
}

/*
 * The part of a mapping that shows file pages [start, end): the mapping is
 * at @base and shows pages [pgoff, pgoff + npages). Returns its length, 0 if
 * none, and its address in *@addr.
 */
static inline size_t fence_span(uint8_t *base, uint64_t pgoff, uint64_t npages,
				uint64_t start, uint64_t end, uint8_t **addr)
{
	uint64_t lo = MAX(start, pgoff), hi = MIN(end, pgoff + npages);

	if (lo >= hi)
		return 0;
	*addr = base + ((lo - pgoff) << PAGE_SHIFT);
	return (hi - lo) << PAGE_SHIFT;
}

#endif
