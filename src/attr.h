/* SPDX-License-Identifier: MIT */
/*
 * Attribute map: the per-file ordered map of page ranges to attribute words
 * (the maple tree of guest_memfd). It covers [0, npages) with no gaps and
 * never holds two neighbours with equal attributes.
 *
 * Updates are two-phase: attr_reserve() allocates every node the update may
 * need, so attr_commit(), called past the point of no return, cannot fail.
 * Callers serialise updates; lookups may run concurrently with each other.
 */
#ifndef GMEM_ATTR_H
#define GMEM_ATTR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct attr_node;

struct attr_map {
	struct attr_node *root;
	uint64_t npages;
	size_t nranges;
	uint32_t seed;		/* treap priorities */
};

/* An update needs at most two new nodes: one per cut range boundary. */
struct attr_reservation {
	struct attr_node *node[2];
};

int attr_init(struct attr_map *map, uint64_t npages, uint64_t attr);
void attr_destroy(struct attr_map *map);

/* Attribute at @index; *@end (if set) gets the end of its range. */
uint64_t attr_lookup(const struct attr_map *map, uint64_t index,
		     uint64_t *start, uint64_t *end);
/* Does every page of [start, end) have @attr? */
bool attr_range_is(const struct attr_map *map, uint64_t start, uint64_t end,
		   uint64_t attr);

int attr_reserve(struct attr_map *map, struct attr_reservation *res);
void attr_commit(struct attr_map *map, uint64_t start, uint64_t end,
		 uint64_t attr, struct attr_reservation *res);
void attr_unreserve(struct attr_reservation *res);

/* Memory the map uses now, in bytes. */
size_t attr_bytes(const struct attr_map *map);

#endif
