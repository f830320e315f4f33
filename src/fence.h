/* SPDX-License-Identifier: MIT */
/*
 * Fences (fence.c): how gmem makes pages of a host mapping unreachable and
 * reachable again. Guard regions (MADV_GUARD_INSTALL) where the kernel has
 * them for shared file mappings (6.15 on): per page-table entry, so they
 * never split a VMA, and an access faults with SIGSEGV (SEGV_MAPERR).
 * Otherwise mprotect(PROT_NONE): a VMA per fenced range, SEGV_ACCERR.
 */
#ifndef GMEM_FENCE_H
#define GMEM_FENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL	102
#define MADV_GUARD_REMOVE	103
#endif

/* /proc/self/pagemap entry bits. */
#define PM_PRESENT	(1ULL << 63)
#define PM_GUARD	(1ULL << 58)	/* a guard region's marker */

/* Does this kernel have guard regions for shared file mappings? */
bool fence_uses_guards(void);

/*
 * Fence [addr, addr + len): no access reaches the pages. fence_open gives
 * access back, with protection @prot where fences are mprotect. Both return
 * 0 or -ENOMEM (no memory for a VMA split). Async-signal-safe once
 * fence_uses_guards() has been called.
 */
int fence_close(void *addr, size_t len);
int fence_open(void *addr, size_t len, int prot);

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
