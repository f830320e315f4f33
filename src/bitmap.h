/* SPDX-License-Identifier: MIT */
/* Atomic bitmaps of pages: the page cache and the fault path's attribute bits. */
#ifndef GMEM_BITMAP_H
#define GMEM_BITMAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
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

/* Set bit @i; returns whether it was set already. */
static inline bool bitmap_test_and_set(atomic_uint_least64_t *map, uint64_t i)
{
	uint64_t bit = 1ULL << (i % BITMAP_BITS);

	return atomic_fetch_or(&map[i / BITMAP_BITS], bit) & bit;
}

/* The bits of [i, end) in @i's word, as a mask; *@n gets how many. */
static inline uint64_t bitmap_word_mask(uint64_t i, uint64_t end, uint64_t *n)
{
	uint64_t off = i % BITMAP_BITS;

	*n = end - i < BITMAP_BITS - off ? end - i : BITMAP_BITS - off;
	return (*n == BITMAP_BITS ? ~0ULL : ((1ULL << *n) - 1)) << off;
}

/* Set (@val) or clear every bit of [start, end), a word at a time. */
static inline void bitmap_assign(atomic_uint_least64_t *map, uint64_t start,
				 uint64_t end, bool val)
{
	for (uint64_t i = start, n; i < end; i += n) {
		uint64_t mask = bitmap_word_mask(i, end, &n);

		if (val)
			atomic_fetch_or(&map[i / BITMAP_BITS], mask);
		else
			atomic_fetch_and(&map[i / BITMAP_BITS], ~mask);
	}
}

/* Set every bit of [start, end); returns how many of them were clear. */
static inline uint64_t bitmap_set_range(atomic_uint_least64_t *map,
					uint64_t start, uint64_t end)
{
	uint64_t added = 0;

	for (uint64_t i = start, n; i < end; i += n) {
		uint64_t mask = bitmap_word_mask(i, end, &n);
		uint64_t old = atomic_fetch_or(&map[i / BITMAP_BITS], mask);

		added += (uint64_t)__builtin_popcountll(mask & ~old);
	}
	return added;
}

/* First index in [i, end) whose bit is @set, or @end. */
static inline uint64_t bitmap_find(atomic_uint_least64_t *map, uint64_t i,
				   uint64_t end, bool set)
{
	while (i < end) {
		uint64_t w = atomic_load_explicit(&map[i / BITMAP_BITS],
						  memory_order_relaxed);

		if (!set)
			w = ~w;
		w &= ~((1ULL << (i % BITMAP_BITS)) - 1);	/* bits below i */
		if (w) {
			uint64_t found = i - i % BITMAP_BITS + (uint64_t)__builtin_ctzll(w);

			return found < end ? found : end;
		}
		i = i - i % BITMAP_BITS + BITMAP_BITS;
	}
	return end;
}

#endif
