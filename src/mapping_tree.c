// SPDX-License-Identifier: MIT
/*
 * A file's host mappings by the file pages they show: an interval tree, so a
 * conversion visits the mappings of its range, not every mapping of the file
 * (as the kernel's i_mmap tree does for unmap_mapping_range).
 *
 * The tree is a treap ordered by first file page (ties by record address),
 * each node carrying the end of the furthest interval below it. The records
 * are the nodes: inserting and removing allocate nothing, so they cannot
 * fail halfway through a cut. A node's priority is a hash of its address,
 * which keeps the expected depth logarithmic without a random state.
 * Callers hold the file's mappings_lock and change a record's pgoff or
 * file_pages only while it is out of the tree.
 */
#include <stdint.h>

#include "common.h"
#include "mapping.h"

static uint64_t priority(const struct host_mapping *m)
{
	uint64_t x = (uintptr_t)m;

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;	/* splitmix64's finish */
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static bool before(const struct host_mapping *a, const struct host_mapping *b)
{
	if (a->pgoff != b->pgoff)
		return a->pgoff < b->pgoff;
	return (uintptr_t)a < (uintptr_t)b;
}

static void recompute_end(struct host_mapping *t)
{
	uint64_t end = t->pgoff + t->file_pages;

	if (t->left && t->left->subtree_end > end)
		end = t->left->subtree_end;
	if (t->right && t->right->subtree_end > end)
		end = t->right->subtree_end;
	t->subtree_end = end;
}

/* Split @t into the records before @key (*@lo) and the rest (*@hi). */
static void split(struct host_mapping *t, const struct host_mapping *key,
		  struct host_mapping **lo, struct host_mapping **hi)
{
	if (!t) {
		*lo = *hi = NULL;
	} else if (before(t, key)) {
		split(t->right, key, &t->right, hi);
		recompute_end(t);
		*lo = t;
	} else {
		split(t->left, key, lo, &t->left);
		recompute_end(t);
		*hi = t;
	}
}

/* Join two trees, every record of @lo before every record of @hi. */
static struct host_mapping *join(struct host_mapping *lo, struct host_mapping *hi)
{
	if (!lo || !hi)
		return lo ? lo : hi;
	if (priority(lo) > priority(hi)) {
		lo->right = join(lo->right, hi);
		recompute_end(lo);
		return lo;
	}
	hi->left = join(lo, hi->left);
	recompute_end(hi);
	return hi;
}

void mapping_tree_insert(struct host_mapping **root, struct host_mapping *m)
{
	struct host_mapping *lo, *hi;

	split(*root, m, &lo, &hi);
	m->left = m->right = NULL;
	recompute_end(m);
	*root = join(join(lo, m), hi);
}

static struct host_mapping *erase(struct host_mapping *t, struct host_mapping *m)
{
	if (t == m)
		return join(t->left, t->right);
	if (before(m, t))
		t->left = erase(t->left, m);
	else
		t->right = erase(t->right, m);
	recompute_end(t);
	return t;
}

void mapping_tree_remove(struct host_mapping **root, struct host_mapping *m)
{
	*root = erase(*root, m);
}

int mapping_tree_each(struct host_mapping *t, uint64_t start, uint64_t end,
		      int (*fn)(struct host_mapping *m, void *arg), void *arg)
{
	int ret = 0;

	/* Nothing below ends after @start; nothing right of a node past @end starts before it. */
	for (; t && t->subtree_end > start; t = t->right) {
		if (t->left)
			ret = mapping_tree_each(t->left, start, end, fn, arg);
		if (ret || t->pgoff >= end)
			break;
		if (MAX(t->pgoff, start) < MIN(t->pgoff + t->file_pages, end)) {
			ret = fn(t, arg);
			if (ret)
				break;
		}
	}
	return ret;
}
