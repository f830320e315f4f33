// SPDX-License-Identifier: MIT
/*
 * The map is a treap keyed by range start. Range updates are split/merge
 * operations: cut the ranges that straddle the new boundaries, split the
 * tree around [start, end), replace the middle by one node, swallow equal
 * neighbours, merge back. Expected O(log n) per update plus the ranges it
 * removes, each of which some earlier update inserted.
 */
#include <stdlib.h>

#include "attr.h"
#include "inject.h"

struct attr_node {
	uint64_t start, end;
	uint64_t attr;
	uint32_t prio;
	struct attr_node *left, *right;
};

static uint32_t next_prio(struct attr_map *map)
{
	uint32_t x = map->seed;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	map->seed = x;
	return x;
}

int attr_init(struct attr_map *map, uint64_t npages, uint64_t attr)
{
	struct attr_node *n = try_calloc(1, sizeof(*n));

	if (!n)
		return -1;
	map->seed = 2463534242u;
	n->start = 0;
	n->end = npages;
	n->attr = attr;
	n->prio = next_prio(map);
	map->root = n;
	map->npages = npages;
	map->nranges = 1;
	return 0;
}

static void free_tree(struct attr_node *n)
{
	while (n) {
		struct attr_node *right = n->right;

		free_tree(n->left);
		free(n);
		n = right;
	}
}

void attr_destroy(struct attr_map *map)
{
	free_tree(map->root);
	map->root = NULL;
	map->nranges = 0;
}

static struct attr_node *find(const struct attr_map *map, uint64_t index)
{
	struct attr_node *n = map->root;

	while (n) {
		if (index < n->start)
			n = n->left;
		else if (index >= n->end)
			n = n->right;
		else
			return n;
	}
	return NULL;
}

uint64_t attr_lookup(const struct attr_map *map, uint64_t index,
		     uint64_t *start, uint64_t *end)
{
	const struct attr_node *n = find(map, index);

	if (start)
		*start = n->start;
	if (end)
		*end = n->end;
	return n->attr;
}

bool attr_range_is(const struct attr_map *map, uint64_t start, uint64_t end,
		   uint64_t attr)
{
	const struct attr_node *n = find(map, start);

	/* Equal neighbours are merged, so a uniform range is one node. */
	return n->attr == attr && n->end >= end;
}

int attr_reserve(struct attr_map *map, struct attr_reservation *res)
{
	(void)map;
	res->node[0] = res->node[1] = NULL;
	for (int i = 0; i < 2; i++) {
		res->node[i] = try_malloc(sizeof(struct attr_node));
		if (!res->node[i]) {
			attr_unreserve(res);
			return -1;
		}
	}
	return 0;
}

void attr_unreserve(struct attr_reservation *res)
{
	for (int i = 0; i < 2; i++) {
		free(res->node[i]);
		res->node[i] = NULL;
	}
}

static struct attr_node *take_reserved(struct attr_reservation *res)
{
	for (int i = 0; i < 2; i++) {
		struct attr_node *n = res->node[i];

		if (n) {
			res->node[i] = NULL;
			return n;
		}
	}
	return NULL;	/* unreachable: at most two cuts per update */
}

/* Split @t into keys < @key (*l) and keys >= @key (*r). */
static void split(struct attr_node *t, uint64_t key, struct attr_node **l,
		  struct attr_node **r)
{
	if (!t) {
		*l = *r = NULL;
	} else if (t->start < key) {
		split(t->right, key, &t->right, r);
		*l = t;
	} else {
		split(t->left, key, l, &t->left);
		*r = t;
	}
}

/* Every key of @l is below every key of @r. */
static struct attr_node *merge(struct attr_node *l, struct attr_node *r)
{
	if (!l)
		return r;
	if (!r)
		return l;
	if (l->prio > r->prio) {
		l->right = merge(l->right, r);
		return l;
	}
	r->left = merge(l, r->left);
	return r;
}

static void insert(struct attr_map *map, struct attr_node *n)
{
	struct attr_node *l, *r;

	n->left = n->right = NULL;
	split(map->root, n->start, &l, &r);
	map->root = merge(merge(l, n), r);
	map->nranges++;
}

/* Make @index the start of a range, cutting the range that straddles it. */
static void cut(struct attr_map *map, uint64_t index,
		struct attr_reservation *res)
{
	struct attr_node *n, *tail;

	if (index == 0 || index >= map->npages)
		return;
	n = find(map, index);
	if (n->start == index)
		return;
	tail = take_reserved(res);
	tail->start = index;
	tail->end = n->end;
	tail->attr = n->attr;
	tail->prio = next_prio(map);
	n->end = index;
	insert(map, tail);
}

static struct attr_node *remove_max(struct attr_node **t)
{
	struct attr_node *n;

	if (!*t)
		return NULL;
	while ((*t)->right)
		t = &(*t)->right;
	n = *t;
	*t = n->left;
	n->left = NULL;
	return n;
}

static struct attr_node *remove_min(struct attr_node **t)
{
	struct attr_node *n;

	if (!*t)
		return NULL;
	while ((*t)->left)
		t = &(*t)->left;
	n = *t;
	*t = n->right;
	n->right = NULL;
	return n;
}

static size_t count_and_free(struct attr_node *n, struct attr_node *keep)
{
	size_t count = 0;

	while (n) {
		struct attr_node *right = n->right;

		count += count_and_free(n->left, keep) + 1;
		if (n != keep)
			free(n);
		n = right;
	}
	return count;
}

void attr_commit(struct attr_map *map, uint64_t start, uint64_t end,
		 uint64_t attr, struct attr_reservation *res)
{
	struct attr_node *l, *mid, *r, *n, *nb;

	cut(map, start, res);
	cut(map, end, res);
	attr_unreserve(res);

	split(map->root, start, &l, &mid);
	split(mid, end, &mid, &r);

	/* The middle tiles [start, end) exactly; keep its root as the range. */
	n = mid;
	map->nranges -= count_and_free(mid, n) - 1;
	n->left = n->right = NULL;
	n->start = start;
	n->end = end;
	n->attr = attr;

	nb = remove_max(&l);
	if (nb && nb->attr == attr) {
		n->start = nb->start;
		free(nb);
		map->nranges--;
	} else if (nb) {
		l = merge(l, nb);
	}
	nb = remove_min(&r);
	if (nb && nb->attr == attr) {
		n->end = nb->end;
		free(nb);
		map->nranges--;
	} else if (nb) {
		r = merge(nb, r);
	}
	map->root = merge(merge(l, n), r);
}

size_t attr_bytes(const struct attr_map *map)
{
	return map->nranges * sizeof(struct attr_node);
}
