/* SPDX-License-Identifier: MIT */
/* Atomic bitmaps of pages: the page cache and the fault path's attribute bits. */
#ifndef GMEM_BITMAP_H
#define GMEM_BITMAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define BITMAP_BITS 64

static inline size_t bitmap_bytes(uint64_t nbits)
{
	return (nbits + BITMAP_BITS - 1) / BITMAP_BITS * sizeof(uint64_t);
}

static inline bool bitmap_test(atomic_uint_least64_t *map, uint64_t i)
{
	return atomic_load_explicit(&map[i / BITMAP_BITS], memory_order_relaxed) &
	       (1ULL << (i % BITMAP_BITS));
}

/* Set (@val) or clear every bit of [start, end), a word at a time. */
static inline void bitmap_assign(atomic_uint_least64_t *map, uint64_t start,
				 uint64_t end, bool val)
{
	for (uint64_t i = start; i < end; ) {
		uint64_t n = end - i < BITMAP_BITS - i % BITMAP_BITS ?
			     end - i : BITMAP_BITS - i % BITMAP_BITS;
		uint64_t mask = (n == BITMAP_BITS ? ~0ULL : ((1ULL << n) - 1))
				<< (i % BITMAP_BITS);

		if (val)
			atomic_fetch_or(&map[i / BITMAP_BITS], mask);
		else
			atomic_fetch_and(&map[i / BITMAP_BITS], ~mask);
		i += n;
	}
}

#endif
