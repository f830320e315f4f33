// SPDX-License-Identifier: MIT
#include <stdlib.h>
#include <errno.h>

#include "stage2.h"

#define S2_ENTRIES	(1U << S2_BITS)

/* A leaf entry: present bit, private bit, pfn from bit 12 up. */
#define E_PRESENT	(1ULL << 0)
#define E_PRIVATE	(1ULL << 1)
#define E_PFN_SHIFT	12

struct s2_table {
	/* Upper levels hold table pointers, the last level leaf entries. */
	_Atomic uint64_t e[S2_ENTRIES];
};

static unsigned int idx(uint64_t gfn, int level)
{
	return (gfn >> (level * S2_BITS)) & (S2_ENTRIES - 1);
}

int s2_init(struct stage2 *s2)
{
	s2->root = calloc(1, sizeof(*s2->root));
	atomic_init(&s2->tables, 1);
	return s2->root ? 0 : -ENOMEM;
}

static void free_table(struct s2_table *t, int level)
{
	if (!t)
		return;
	if (level > 0)
		for (unsigned int i = 0; i < S2_ENTRIES; i++)
			free_table((struct s2_table *)(uintptr_t)
				   atomic_load_explicit(&t->e[i],
							memory_order_relaxed),
				   level - 1);
	free(t);
}

void s2_destroy(struct stage2 *s2)
{
	free_table(s2->root, S2_LEVELS - 1);
	s2->root = NULL;
}

/* Find (or, with @alloc, build) the last-level table covering @gfn. */
static struct s2_table *leaf_table(struct stage2 *s2, uint64_t gfn, bool alloc)
{
	struct s2_table *t = s2->root;

	for (int level = S2_LEVELS - 1; level > 0; level--) {
		_Atomic uint64_t *slot = &t->e[idx(gfn, level)];
		uint64_t next = atomic_load_explicit(slot, memory_order_acquire);

		if (!next) {
			struct s2_table *n;
			uint64_t expected = 0;

			if (!alloc)
				return NULL;
			n = calloc(1, sizeof(*n));
			if (!n)
				return NULL;
			if (atomic_compare_exchange_strong(slot, &expected,
							   (uint64_t)(uintptr_t)n)) {
				next = (uint64_t)(uintptr_t)n;
				atomic_fetch_add(&s2->tables, 1);
			} else {
				free(n);	/* another fault won the race */
				next = expected;
			}
		}
		t = (struct s2_table *)(uintptr_t)next;
	}
	return t;
}

int s2_map(struct stage2 *s2, uint64_t gfn, uint64_t pfn, bool private)
{
	struct s2_table *t = leaf_table(s2, gfn, true);
	uint64_t v = (pfn << E_PFN_SHIFT) | E_PRESENT | (private ? E_PRIVATE : 0);

	if (!t)
		return -ENOMEM;
	/* Refaulting a mapped page writes nothing: no line bounces between vCPUs. */
	if (atomic_load_explicit(&t->e[idx(gfn, 0)], memory_order_relaxed) != v)
		atomic_store_explicit(&t->e[idx(gfn, 0)], v, memory_order_release);
	return 0;
}

static void decode(uint64_t v, struct s2_entry *e)
{
	e->pfn = v >> E_PFN_SHIFT;
	e->private = v & E_PRIVATE;
	e->level = 0;
}

bool s2_lookup(struct stage2 *s2, uint64_t gfn, struct s2_entry *e)
{
	struct s2_table *t;
	uint64_t v;

	if (gfn >= S2_MAX_GFN)
		return false;
	t = leaf_table(s2, gfn, false);
	if (!t)
		return false;
	v = atomic_load_explicit(&t->e[idx(gfn, 0)], memory_order_acquire);
	if (!(v & E_PRESENT))
		return false;
	if (e)
		decode(v, e);
	return true;
}

static bool zap_matches(uint64_t v, unsigned int filter)
{
	if (!(v & E_PRESENT))
		return false;
	return (v & E_PRIVATE) ? (filter & S2_ZAP_PRIVATE)
			       : (filter & S2_ZAP_SHARED);
}

/* Zap [start, end) below table @t that covers gfns from @base. */
static uint64_t zap_table(struct s2_table *t, int level, uint64_t base,
			  uint64_t start, uint64_t end, unsigned int filter)
{
	uint64_t span = 1ULL << (level * S2_BITS), zapped = 0;
	unsigned int first = start > base ? (start - base) / span : 0;

	for (unsigned int i = first; i < S2_ENTRIES; i++) {
		uint64_t lo = base + i * span;
		uint64_t v;

		if (lo >= end)
			break;
		v = atomic_load_explicit(&t->e[i], memory_order_relaxed);
		if (!v)
			continue;
		if (level > 0) {
			zapped += zap_table((struct s2_table *)(uintptr_t)v,
					    level - 1, lo, start, end, filter);
		} else if (zap_matches(v, filter)) {
			atomic_store_explicit(&t->e[i], 0, memory_order_relaxed);
			zapped++;
		}
	}
	return zapped;
}

uint64_t s2_zap(struct stage2 *s2, uint64_t start, uint64_t end,
		unsigned int filter)
{
	if (end > S2_MAX_GFN)
		end = S2_MAX_GFN;
	if (start >= end)
		return 0;
	return zap_table(s2->root, S2_LEVELS - 1, 0, start, end, filter);
}

static int walk_table(struct s2_table *t, int level, uint64_t base,
		      int (*fn)(uint64_t, const struct s2_entry *, void *),
		      void *arg)
{
	uint64_t span = 1ULL << (level * S2_BITS);

	for (unsigned int i = 0; i < S2_ENTRIES; i++) {
		uint64_t v = atomic_load_explicit(&t->e[i], memory_order_acquire);
		int ret;

		if (!v)
			continue;
		if (level > 0) {
			ret = walk_table((struct s2_table *)(uintptr_t)v,
					 level - 1, base + i * span, fn, arg);
		} else {
			struct s2_entry e;

			if (!(v & E_PRESENT))
				continue;
			decode(v, &e);
			ret = fn(base + i, &e, arg);
		}
		if (ret)
			return ret;
	}
	return 0;
}

int s2_walk(struct stage2 *s2, int (*fn)(uint64_t gfn,
		const struct s2_entry *e, void *arg), void *arg)
{
	return walk_table(s2->root, S2_LEVELS - 1, 0, fn, arg);
}
