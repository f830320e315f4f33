// SPDX-License-Identifier: MIT
/*
 * The map is a bitmap, one bit per page, under summary
 * levels of a 64-way tree: bit i of summary level k says whether word i of
 * level k-1 is all ones ("full") and whether it has any one ("any"). A range
 * is a run of equal bits; its ends are found by searching for the first bit
 * that differs, which climbs the summaries only as far as the run is long and
 * comes down the same way: O(log64 npages), at most 2 x 4 word reads in a
 * file of 64 GiB.
 *
 * Why not a tree of ranges (the kernel's maple tree): the one attribute a
 * file stores is a bit, and the worst case for a tree, a map of a million
 * alternating ranges, is the best case for a bitmap. The bitmap costs one bit
 * per page however fragmented the map is (plus 2/64 of that for the
 * summaries): 0.003% of the memory it describes, where a tree node per range
 * costs tens of bytes per range. Updates write the bits of the range and a
 * few summary words per level, in place: no node to allocate, split or
 * rebalance, so attr_set() has nothing that can fail. Searches and updates touch one
 * word per level, not a pointer chase through a node per level.
 *
 * The cost is memory in proportion to the file, not to its ranges; the
 * file's other per-page bitmaps (page cache, fault-path bits) are the same
 * size. A bit says "differs from the file's initial attribute", so a new
 * map is all zero: calloc'd pages the process does not touch until pages
 * are converted. Padding: level-0 bits past npages stay 0 and searches clamp to
 * npages; "full" bits for words past the end of a level are set, "any" bits
 * clear, so no search descends into a word that does not exist.
 */
#include <stdlib.h>

#include "common.h"
#include "attr.h"
#include "inject.h"

#define BIT(i)		(1ULL << ((i) & 63))

static bool test_bit(const uint64_t *w, uint64_t i)
{
	return w[i >> 6] & BIT(i);
}

static void assign_bit(uint64_t *w, uint64_t i, bool v)
{
	if (v)
		w[i >> 6] |= BIT(i);
	else
		w[i >> 6] &= ~BIT(i);
}

/* Set (@v) or clear bits [start, end) of @w. */
static void assign_bits(uint64_t *w, uint64_t start, uint64_t end, bool v)
{
	while (start < end) {
		uint64_t off = start & 63;
		uint64_t n = MIN(end - start, 64 - off);
		uint64_t mask = (n == 64 ? ~0ULL : (1ULL << n) - 1) << off;

		if (v)
			w[start >> 6] |= mask;
		else
			w[start >> 6] &= ~mask;
		start += n;
	}
}

/* Word @i of level @k with a bit set where a page (or subtree) of value @v is. */
static uint64_t level_word(const struct attr_map *map, int k, uint64_t i,
			   bool v)
{
	if (k == 0)
		return v ? map->bits[i] : ~map->bits[i];
	return v ? map->any[k][i] : ~map->full[k][i];
}

/* First page >= @index whose bit is @v, or npages. */
static uint64_t find_next(const struct attr_map *map, uint64_t index, bool v)
{
	uint64_t pos = index, x;
	int k = 0;

	for (;;) {
		if ((pos >> 6) >= map->nwords[k])
			return map->npages;
		x = level_word(map, k, pos >> 6, v) & (~0ULL << (pos & 63));
		if (x)
			break;
		if (k == map->nlevels)
			return map->npages;
		pos = (pos >> 6) + 1;
		k++;
	}
	pos = (pos & ~63ULL) + (uint64_t)__builtin_ctzll(x);
	while (k > 0) {
		k--;
		x = level_word(map, k, pos, v);
		pos = (pos << 6) + (uint64_t)__builtin_ctzll(x);
	}
	return MIN(pos, map->npages);
}

/* Last page <= @index whose bit is @v, or -1. */
static int64_t find_prev(const struct attr_map *map, uint64_t index, bool v)
{
	uint64_t pos = index, x;
	int k = 0;

	for (;;) {
		x = level_word(map, k, pos >> 6, v) & (~0ULL >> (63 - (pos & 63)));
		if (x)
			break;
		if ((pos >> 6) == 0 || k == map->nlevels)
			return -1;
		pos = (pos >> 6) - 1;
		k++;
	}
	pos = (pos & ~63ULL) + 63 - (uint64_t)__builtin_clzll(x);
	while (k > 0) {
		k--;
		x = level_word(map, k, pos, v);
		pos = (pos << 6) + 63 - (uint64_t)__builtin_clzll(x);
	}
	return (int64_t)pos;
}

/* Bring summary bit @c of level @k in line with word @c of level k-1. */
static void refresh(struct attr_map *map, int k, uint64_t c)
{
	uint64_t ones = level_word(map, k - 1, c, true);
	uint64_t zeros = level_word(map, k - 1, c, false);

	assign_bit(map->full[k], c, !zeros);
	assign_bit(map->any[k], c, ones);
}

/* Set pages [start, end) to @v, then the summaries above them. */
static void assign(struct attr_map *map, uint64_t start, uint64_t end, bool v)
{
	uint64_t lo = start >> 6, hi = (end - 1) >> 6;

	assign_bits(map->bits, start, end, v);
	for (int k = 1; k <= map->nlevels; k++) {
		/* Words strictly inside the range are now uniform. */
		if (lo + 1 < hi) {
			assign_bits(map->full[k], lo + 1, hi, v);
			assign_bits(map->any[k], lo + 1, hi, v);
		}
		refresh(map, k, lo);
		if (hi != lo)
			refresh(map, k, hi);
		lo >>= 6;
		hi >>= 6;
	}
}

/* Pages p in [lo, hi), lo >= 1, whose bit differs from page p-1's. */
static uint64_t changes(const struct attr_map *map, uint64_t lo, uint64_t hi)
{
	uint64_t count = 0;

	while (lo < hi) {
		uint64_t i = lo >> 6, off = lo & 63;
		uint64_t n = MIN(hi - lo, 64 - off);
		uint64_t w = map->bits[i];
		uint64_t prev = (w << 1) | (i ? map->bits[i - 1] >> 63 : 0);
		uint64_t mask = (n == 64 ? ~0ULL : (1ULL << n) - 1) << off;

		count += (uint64_t)__builtin_popcountll((w ^ prev) & mask);
		lo += n;
	}
	return count;
}

/* The map's one allocation: every level, in one block. */
int attr_init(struct attr_map *map, uint64_t npages, uint64_t attr)
{
	uint64_t total = 0, n;
	uint64_t *mem;
	int k = 0;

	*map = (struct attr_map){ .npages = npages, .nranges = 1 };
	n = MAX((npages + 63) / 64, 1);
	map->nwords[0] = n;
	total = n;
	while (n > 1) {
		n = (n + 63) / 64;
		map->nwords[++k] = n;
		total += 2 * n;
	}
	map->nlevels = k;
	mem = try_calloc(total, sizeof(uint64_t));
	if (!mem)
		return -1;
	map->bytes = total * sizeof(uint64_t);
	map->bits = mem;
	mem += map->nwords[0];
	for (k = 1; k <= map->nlevels; k++) {
		map->full[k] = mem;
		map->any[k] = mem + map->nwords[k];
		mem += 2 * map->nwords[k];
		/* Children that do not exist count as full. */
		assign_bits(map->full[k], map->nwords[k - 1],
			    map->nwords[k] * 64, true);
	}
	map->init_private = attr & GMEM_ATTR_PRIVATE;
	return 0;
}

void attr_destroy(struct attr_map *map)
{
	free(map->bits);
	map->bits = NULL;
	map->nranges = 0;
}

uint64_t attr_lookup(const struct attr_map *map, uint64_t index,
		     uint64_t *start, uint64_t *end)
{
	bool v = test_bit(map->bits, index);

	if (start) {
		int64_t p = index ? find_prev(map, index - 1, !v) : -1;

		*start = (uint64_t)(p + 1);
	}
	if (end)
		*end = find_next(map, index, !v);
	return v != map->init_private ? GMEM_ATTR_PRIVATE : 0;
}

bool attr_range_is(const struct attr_map *map, uint64_t start, uint64_t end,
		   uint64_t attr)
{
	bool v = !(attr & GMEM_ATTR_PRIVATE) != !map->init_private;

	if (attr & ~GMEM_ATTR_PRIVATE)
		return false;
	return test_bit(map->bits, start) == v && find_next(map, start, !v) >= end;
}

/*
 * One pass over the range: count the range boundaries inside it (they go),
 * write its bits, and see whether its ends now differ from their neighbours.
 */
void attr_set(struct attr_map *map, uint64_t start, uint64_t end,
	      uint64_t attr)
{
	bool v = !(attr & GMEM_ATTR_PRIVATE) != !map->init_private;
	uint64_t lo = MAX(start, 1), hi = MIN(end + 1, map->npages);

	if (start >= end)
		return;
	if (lo < hi)
		map->nranges -= changes(map, lo, hi);
	assign(map, start, end, v);
	if (start > 0 && test_bit(map->bits, start - 1) != v)
		map->nranges++;
	if (end < map->npages && test_bit(map->bits, end) != v)
		map->nranges++;
}

size_t attr_bytes(const struct attr_map *map)
{
	return map->bytes;
}
