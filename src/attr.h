/* SPDX-License-Identifier: MIT */
/*
 * Attribute map: the per-file ordered map of page ranges to attribute words
 * (the maple tree of guest_memfd). It covers [0, npages); a range is a
 * maximal run of pages with equal attributes, so two neighbouring ranges
 * always differ. The one attribute a file stores is GMEM_ATTR_PRIVATE (as
 * KVM_MEMORY_ATTRIBUTE_PRIVATE is the one guest_memfd stores): words are 0
 * or GMEM_ATTR_PRIVATE.
 *
 * The map allocates all it will ever need in attr_init(), so attr_set()
 * cannot fail: a conversion calls it past its point of no return. Callers
 * serialise updates; lookups may run concurrently with each other, not with
 * an update.
 */
#ifndef GMEM_ATTR_H
#define GMEM_ATTR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* attr.c: why a bitmap with summary levels. */
#define ATTR_MAX_LEVELS	11	/* 64^11 > 2^64 pages */

struct attr_map {
	/*
	 * Level 0: one bit per page, set where the page's attribute differs
	 * from the file's initial one (@init_private), so that a new map is
	 * all zero and its memory is not touched until pages are converted.
	 */
	uint64_t *bits;
	bool init_private;
	/*
	 * Summary levels 1..nlevels: bit i of level k says whether child word i
	 * of level k-1 is all ones (full) or has any one (any).
	 */
	uint64_t *full[ATTR_MAX_LEVELS + 1];
	uint64_t *any[ATTR_MAX_LEVELS + 1];
	uint64_t nwords[ATTR_MAX_LEVELS + 1];
	int nlevels;
	uint64_t npages;
	size_t nranges;
	size_t bytes;
};

int attr_init(struct attr_map *map, uint64_t npages, uint64_t attr);
void attr_destroy(struct attr_map *map);

/* Attribute at @index; *@start and *@end (if set) get its range. */
uint64_t attr_lookup(const struct attr_map *map, uint64_t index,
		     uint64_t *start, uint64_t *end);
/* Does every page of [start, end) have @attr? */
bool attr_range_is(const struct attr_map *map, uint64_t start, uint64_t end,
		   uint64_t attr);

/* Give [start, end) @attr. */
void attr_set(struct attr_map *map, uint64_t start, uint64_t end,
	      uint64_t attr);

/* Memory the map uses, in bytes: fixed from attr_init() on. */
size_t attr_bytes(const struct attr_map *map);

#endif
