// SPDX-License-Identifier: MIT
/*
 * Stage-2 table. An entry of an upper-level table is either a pointer to the
 * next table (bit 0 clear: tables are malloc-aligned) or a huge leaf (present
 * bit set) that maps the whole span below it: 2 MiB at level 1, 1 GiB at
 * level 2.
 *
 * A table is taken out only under the mmu_lock held exclusive (s2_zap), so
 * lookups and installs, which hold it shared, never walk a table that goes.
 * s2_lookup_unlocked holds nothing. A table a zap takes out goes on the
 * VM's free list (linked through its first entry) and is reused only as a
 * table until s2_destroy, so a walk that raced the zap reads table memory,
 * never freed memory; and s2_zap keeps s2->seq odd while it runs, so the
 * walk, whose loads are all acquires, finds the count moved and discards
 * what it read. The zap's stores (cleared entries, free-list links) are
 * releases: a walk that read one of them finds the count moved too.
 */
#include <stdlib.h>
#include <errno.h>

#include "inject.h"
#include "lock.h"
#include "stage2.h"

#define S2_ENTRIES	(1U << S2_BITS)

/* A leaf entry: present bit, private bit, pfn from bit 12 up. */
#define E_PRESENT	(1ULL << 0)
#define E_PRIVATE	(1ULL << 1)
#define E_PFN_SHIFT	12

struct s2_table {
	/* Upper levels hold table pointers or huge leaves, the last level leaves. */
	_Atomic uint64_t e[S2_ENTRIES];
};

static unsigned int idx(uint64_t gfn, int level)
{
	return (gfn >> (level * S2_BITS)) & (S2_ENTRIES - 1);
}

static uint64_t span_of(int level)
{
	return 1ULL << (level * S2_BITS);
}

static bool is_leaf(uint64_t v)
{
	return v & E_PRESENT;
}

static struct s2_table *table_of(uint64_t v)
{
	return (struct s2_table *)(uintptr_t)v;
}

int s2_init(struct stage2 *s2, const void *mmu_lock)
{
	s2->lock = mmu_lock;
	s2->root = try_calloc(1, sizeof(*s2->root));
	atomic_init(&s2->seq, 0);
	atomic_init(&s2->tables, 1);
	s2->free = NULL;
	pthread_mutex_init(&s2->free_lock, NULL);
	return s2->root ? 0 : -ENOMEM;
}

/* The next table of the free list, linked through its first entry. */
static struct s2_table *free_next(struct s2_table *t)
{
	return table_of(atomic_load_explicit(&t->e[0], memory_order_relaxed));
}

/* An empty table out of the tree: zapped, or lost to another fault's install. */
static void table_put(struct stage2 *s2, struct s2_table *t)
{
	mutex_lock(&s2->free_lock);
	atomic_store_explicit(&t->e[0], (uint64_t)(uintptr_t)s2->free,
			      memory_order_release);
	s2->free = t;
	mutex_unlock(&s2->free_lock);
}

/* An empty table: a reused one first, so table memory never shrinks back to malloc. */
static struct s2_table *table_get(struct stage2 *s2)
{
	struct s2_table *t;

	mutex_lock(&s2->free_lock);
	t = s2->free;
	if (t) {
		s2->free = free_next(t);
		atomic_store_explicit(&t->e[0], 0, memory_order_relaxed);
	}
	mutex_unlock(&s2->free_lock);
	if (t)
		return t;
	t = try_calloc(1, sizeof(*t));
	if (t)
		atomic_fetch_add(&s2->tables, 1);
	return t;
}

static void free_table(struct s2_table *t, int level)
{
	if (!t)
		return;
	if (level > 0) {
		for (unsigned int i = 0; i < S2_ENTRIES; i++) {
			uint64_t v = atomic_load_explicit(&t->e[i],
							  memory_order_relaxed);

			if (v && !is_leaf(v))
				free_table(table_of(v), level - 1);
		}
	}
	free(t);
}

void s2_destroy(struct stage2 *s2)
{
	free_table(s2->root, S2_LEVELS - 1);
	s2->root = NULL;
	while (s2->free) {
		struct s2_table *t = s2->free;

		s2->free = free_next(t);
		free(t);
	}
	pthread_mutex_destroy(&s2->free_lock);
}

static uint64_t make_leaf(uint64_t pfn, bool private)
{
	return (pfn << E_PFN_SHIFT) | E_PRESENT | (private ? E_PRIVATE : 0);
}

/*
 * Install @v in @slot at @level for the page (@gfn, @pfn). Returns the level
 * installed, 1 + @level to ask the caller to go one level down (a table is
 * there), or -errno. *@stored says whether the entry changed.
 */
static int install(_Atomic uint64_t *slot, int level, uint64_t gfn,
		   uint64_t pfn, bool private, bool *stored)
{
	uint64_t mask = span_of(level) - 1;
	uint64_t v = make_leaf(pfn & ~mask, private);
	uint64_t old = atomic_load_explicit(slot, memory_order_acquire);

	for (;;) {
		if (old && !is_leaf(old))
			return level + 1;	/* smaller entries live here */
		/* Refaulting a mapped page writes nothing: no line bounces between vCPUs. */
		if (old == v)
			return level;
		/* Empty, or a leaf of another frame or attribute: the newer fault wins. */
		if (atomic_compare_exchange_weak(slot, &old, v)) {
			*stored = true;
			return level;
		}
	}
}

int s2_topup(struct stage2 *s2, struct s2_cache *c, int want)
{
	while (c->n < want) {
		struct s2_table *t = table_get(s2);

		if (!t)
			return -ENOMEM;
		c->t[c->n++] = t;
	}
	return 0;
}

void s2_cache_release(struct stage2 *s2, struct s2_cache *c)
{
	while (c->n)
		table_put(s2, c->t[--c->n]);
}

int s2_map(struct stage2 *s2, uint64_t gfn, uint64_t pfn, bool private,
	   int want, bool *stored, struct s2_cache *c)
{
	struct s2_table *t = s2->root;

	lock_assert_held_shared(s2->lock);
	*stored = false;
	if (gfn >= S2_MAX_GFN || want < 0 || want >= S2_LEVELS - 1)
		return -EINVAL;
	for (int level = S2_LEVELS - 1; level >= 0; level--) {
		_Atomic uint64_t *slot = &t->e[idx(gfn, level)];
		uint64_t next;

		if (level == want) {
			int ret = install(slot, level, gfn, pfn, private, stored);

			if (ret <= level)
				return ret;
			/* A table is in the way: map this page alone. */
			want = 0;
		}
		next = atomic_load_explicit(slot, memory_order_acquire);
		if (next && is_leaf(next)) {
			/* A huge leaf covers the page already; it must agree. */
			uint64_t off = gfn & (span_of(level) - 1);

			if ((next >> E_PFN_SHIFT) + off == pfn &&
			    !!(next & E_PRIVATE) == private)
				return level;
			return -EEXIST;
		}
		if (!next) {
			struct s2_table *n;
			uint64_t expected = 0;

			/* A zap took tables out since the top-up: top up again. */
			if (!c->n)
				return -EAGAIN;
			n = c->t[--c->n];
			if (atomic_compare_exchange_strong(slot, &expected,
							   (uint64_t)(uintptr_t)n)) {
				next = (uint64_t)(uintptr_t)n;
			} else {
				c->t[c->n++] = n;	/* another fault won the race */
				next = expected;
				if (is_leaf(next)) {
					level++;	/* look at the leaf again */
					continue;
				}
			}
		}
		t = table_of(next);
	}
	return -EINVAL;	/* not reached: level 0 always installs */
}

static void decode(uint64_t v, uint64_t gfn, int level, struct s2_entry *e)
{
	e->pfn = (v >> E_PFN_SHIFT) + (gfn & (span_of(level) - 1));
	e->private = v & E_PRIVATE;
	e->level = level;
}

/* Not found: *@missing (if asked) is how many tables the walk lacks. */
static bool lookup(struct stage2 *s2, uint64_t gfn, struct s2_entry *e,
		   int *missing)
{
	struct s2_table *t = s2->root;

	if (missing)
		*missing = gfn >= S2_MAX_GFN ? S2_LEVELS - 1 : 0;
	if (gfn >= S2_MAX_GFN)
		return false;
	for (int level = S2_LEVELS - 1; level >= 0; level--) {
		uint64_t v = atomic_load_explicit(&t->e[idx(gfn, level)],
						  memory_order_acquire);

		if (!v) {
			if (missing)
				*missing = level;
			return false;
		}
		if (is_leaf(v)) {
			if (e)
				decode(v, gfn, level, e);
			return true;
		}
		if (level == 0)
			return false;
		t = table_of(v);
	}
	return false;
}

bool s2_lookup(struct stage2 *s2, uint64_t gfn, struct s2_entry *e)
{
	lock_assert_held(s2->lock);
	return lookup(s2, gfn, e, NULL);
}

int s2_lookup_unlocked(struct stage2 *s2, uint64_t gfn, struct s2_entry *e,
		       int *missing)
{
	unsigned int seq = atomic_load_explicit(&s2->seq, memory_order_acquire);
	struct s2_entry found;
	bool mapped;

	if (seq & 1)
		return -EAGAIN;
	/* The walk's loads are acquires: the re-read below cannot pass them. */
	mapped = lookup(s2, gfn, &found, missing);
	if (atomic_load_explicit(&s2->seq, memory_order_relaxed) != seq)
		return -EAGAIN;
	if (mapped && e)
		*e = found;
	return mapped;
}

static bool zap_matches(uint64_t v, unsigned int filter)
{
	if (!(v & E_PRESENT))
		return false;
	return (v & E_PRIVATE) ? (filter & S2_ZAP_PRIVATE)
			       : (filter & S2_ZAP_SHARED);
}

static bool table_empty(struct s2_table *t)
{
	for (unsigned int i = 0; i < S2_ENTRIES; i++)
		if (atomic_load_explicit(&t->e[i], memory_order_relaxed))
			return false;
	return true;
}

/*
 * Zap [start, end) below table @t that covers gfns from @base. A huge leaf
 * that overlaps the range goes whole; a table the range covers entirely goes
 * too once empty, so a huge leaf can take its place later.
 */
static uint64_t zap_table(struct stage2 *s2, struct s2_table *t, int level,
			  uint64_t base, uint64_t start, uint64_t end,
			  unsigned int filter)
{
	uint64_t span = span_of(level), zapped = 0;
	unsigned int first = start > base ? (start - base) / span : 0;

	for (unsigned int i = first; i < S2_ENTRIES; i++) {
		uint64_t lo = base + i * span;
		uint64_t v;

		if (lo >= end)
			break;
		v = atomic_load_explicit(&t->e[i], memory_order_relaxed);
		if (!v)
			continue;
		if (is_leaf(v)) {
			if (zap_matches(v, filter)) {
				atomic_store_explicit(&t->e[i], 0,
						      memory_order_release);
				zapped += span;
			}
			continue;
		}
		zapped += zap_table(s2, table_of(v), level - 1, lo, start, end,
				    filter);
		if (start <= lo && lo + span <= end && table_empty(table_of(v))) {
			atomic_store_explicit(&t->e[i], 0, memory_order_release);
			table_put(s2, table_of(v));
		}
	}
	return zapped;
}

/* Tables may be taken out: mmu_lock exclusive, and s2->seq odd meanwhile. */
uint64_t s2_zap(struct stage2 *s2, uint64_t start, uint64_t end,
		unsigned int filter)
{
	unsigned int seq = atomic_load_explicit(&s2->seq, memory_order_relaxed);
	uint64_t zapped;

	lock_assert_held_exclusive(s2->lock);
	if (end > S2_MAX_GFN)
		end = S2_MAX_GFN;
	if (start >= end)
		return 0;
	atomic_store_explicit(&s2->seq, seq + 1, memory_order_relaxed);
	zapped = zap_table(s2, s2->root, S2_LEVELS - 1, 0, start, end, filter);
	atomic_store_explicit(&s2->seq, seq + 2, memory_order_release);
	return zapped;
}

static int walk_table(struct s2_table *t, int level, uint64_t base,
		      int (*fn)(uint64_t, const struct s2_entry *, void *),
		      void *arg)
{
	uint64_t span = span_of(level);

	for (unsigned int i = 0; i < S2_ENTRIES; i++) {
		uint64_t v = atomic_load_explicit(&t->e[i], memory_order_acquire);
		int ret;

		if (!v)
			continue;
		if (is_leaf(v)) {
			struct s2_entry e;

			decode(v, base + i * span, level, &e);
			ret = fn(base + i * span, &e, arg);
		} else if (level > 0) {
			ret = walk_table(table_of(v), level - 1,
					 base + i * span, fn, arg);
		} else {
			continue;
		}
		if (ret)
			return ret;
	}
	return 0;
}

int s2_walk(struct stage2 *s2, int (*fn)(uint64_t gfn,
		const struct s2_entry *e, void *arg), void *arg)
{
	lock_assert_held(s2->lock);
	return walk_table(s2->root, S2_LEVELS - 1, 0, fn, arg);
}
