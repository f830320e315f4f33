// SPDX-License-Identifier: MIT
/*
 * Stage-2 table. Levels 3 to 1 are upper tables of 512 64-bit entries
 * (4 KiB): an entry is either a pointer to the next table (bit 0 clear:
 * tables are at least 16-byte aligned) or a huge leaf (present bit set) that
 * maps the whole span below it: 2 MiB at level 1, 1 GiB at level 2. Level 0
 * tables hold only 4 KiB leaves, so their entries are 32 bits (a 2 KiB
 * table): present bit, private bit and a 30-bit frame number, which bounds
 * a pool at S2_MAX_PFN frames (4 TiB; gmem_pool_create refuses more).
 *
 * A table is taken out only under the mmu_lock held exclusive (s2_zap), so
 * lookups and installs, which hold it shared, never walk a table that goes.
 * s2_lookup_unlocked holds nothing. A table a zap takes out goes on the
 * VM's free list of its level and is reused only as a table of that level
 * until s2_destroy, so a walk that raced the zap reads memory of the table
 * kind it expects, never freed memory and never past a 2 KiB leaf table it
 * took for a 4 KiB one; and s2_zap keeps s2->seq odd while it runs, so the
 * walk, whose loads are all acquires, finds the count moved and discards
 * what it read. A free table's link to the next has the present bit set: a
 * walk reads it as a leaf and never follows it. The zap's stores (cleared
 * entries, free-list links) are releases: a walk that read one of them
 * finds the count moved too.
 */
#include <stdlib.h>
#include <errno.h>

#include "inject.h"
#include "lock.h"
#include "stage2.h"

#define S2_ENTRIES	(1U << S2_BITS)

/* A leaf entry: present bit, private bit, then the frame number. */
#define E_PRESENT	(1ULL << 0)
#define E_PRIVATE	(1ULL << 1)
#define E_PFN_SHIFT	12	/* a huge leaf, 64 bits */
#define L_PFN_SHIFT	2	/* a 4 KiB leaf, 32 bits */

/* Levels 1 to 3: table pointers and huge leaves. */
struct s2_table {
	_Atomic uint64_t e[S2_ENTRIES];
};

/* Level 0: 4 KiB leaves only. */
struct s2_leaf {
	_Atomic uint32_t e[S2_ENTRIES];
};

_Static_assert(sizeof(struct s2_leaf) == 2048, "a leaf table is 2 KiB");
_Static_assert(S2_MAX_PFN << L_PFN_SHIFT <= 1ULL << 32,
	       "a 4 KiB leaf holds every frame number below S2_MAX_PFN");

static unsigned int idx(uint64_t gfn, int level)
{
	return (gfn >> (level * S2_BITS)) & (S2_ENTRIES - 1);
}

static uint64_t span_of(int level)
{
	return 1ULL << (level * S2_BITS);
}

static size_t table_bytes(int level)
{
	return level ? sizeof(struct s2_table) : sizeof(struct s2_leaf);
}

static bool is_leaf(uint64_t v)
{
	return v & E_PRESENT;
}

static struct s2_table *table_of(uint64_t v)
{
	return (struct s2_table *)(uintptr_t)v;
}

static struct s2_leaf *leaf_table_of(uint64_t v)
{
	return (struct s2_leaf *)(uintptr_t)v;
}

int s2_init(struct stage2 *s2, const void *mmu_lock)
{
	s2->lock = mmu_lock;
	s2->root = try_calloc(1, sizeof(*s2->root));
	atomic_init(&s2->seq, 0);
	atomic_init(&s2->bytes, sizeof(*s2->root));
	for (int level = 0; level < S2_LEVELS - 1; level++)
		s2->free[level] = NULL;
	pthread_mutex_init(&s2->free_lock, NULL);
	return s2->root ? 0 : -ENOMEM;
}

/*
 * The free lists, one per level, linked through a table's first entry (an
 * upper table) or its first two (a leaf table: low and high half), the
 * present bit set in the first.
 */
static void free_link(void *t, int level, void *next)
{
	uint64_t v = (uint64_t)(uintptr_t)next | E_PRESENT;

	if (level) {
		atomic_store_explicit(&((struct s2_table *)t)->e[0], v,
				      memory_order_release);
	} else {
		struct s2_leaf *l = t;

		atomic_store_explicit(&l->e[0], (uint32_t)v, memory_order_release);
		atomic_store_explicit(&l->e[1], (uint32_t)(v >> 32),
				      memory_order_release);
	}
}

static void *free_next(void *t, int level)
{
	uint64_t v;

	if (level) {
		v = atomic_load_explicit(&((struct s2_table *)t)->e[0],
					 memory_order_relaxed);
	} else {
		struct s2_leaf *l = t;

		v = atomic_load_explicit(&l->e[0], memory_order_relaxed) |
		    (uint64_t)atomic_load_explicit(&l->e[1],
						   memory_order_relaxed) << 32;
	}
	return (void *)(uintptr_t)(v & ~E_PRESENT);
}

/* Clears the link: the table is empty again. */
static void free_unlink(void *t, int level)
{
	if (level) {
		atomic_store_explicit(&((struct s2_table *)t)->e[0], 0,
				      memory_order_relaxed);
	} else {
		struct s2_leaf *l = t;

		atomic_store_explicit(&l->e[0], 0, memory_order_relaxed);
		atomic_store_explicit(&l->e[1], 0, memory_order_relaxed);
	}
}

/* An empty table of @level out of the tree: zapped, or unused by a fault. */
static void table_put(struct stage2 *s2, void *t, int level)
{
	mutex_lock(&s2->free_lock);
	free_link(t, level, s2->free[level]);
	s2->free[level] = t;
	mutex_unlock(&s2->free_lock);
}

unsigned long s2_free_tables(struct stage2 *s2, int level)
{
	unsigned long n = 0;

	mutex_lock(&s2->free_lock);
	for (void *t = s2->free[level]; t; t = free_next(t, level))
		n++;
	mutex_unlock(&s2->free_lock);
	return n;
}

/* An empty table of @level: a reused one first, so table memory never shrinks back to malloc. */
static void *table_get(struct stage2 *s2, int level)
{
	void *t;

	mutex_lock(&s2->free_lock);
	t = s2->free[level];
	if (t) {
		s2->free[level] = free_next(t, level);
		free_unlink(t, level);
	}
	mutex_unlock(&s2->free_lock);
	if (t)
		return t;
	t = try_calloc(1, table_bytes(level));
	if (t)
		atomic_fetch_add(&s2->bytes, table_bytes(level));
	return t;
}

static void free_table(struct s2_table *t, int level)
{
	for (unsigned int i = 0; i < S2_ENTRIES; i++) {
		uint64_t v = atomic_load_explicit(&t->e[i], memory_order_relaxed);

		if (!v || is_leaf(v))
			continue;
		if (level > 1)
			free_table(table_of(v), level - 1);
		else
			free(leaf_table_of(v));
	}
	free(t);
}

void s2_destroy(struct stage2 *s2)
{
	if (s2->root)
		free_table(s2->root, S2_LEVELS - 1);
	s2->root = NULL;
	for (int level = 0; level < S2_LEVELS - 1; level++) {
		while (s2->free[level]) {
			void *t = s2->free[level];

			s2->free[level] = free_next(t, level);
			free(t);
		}
	}
	pthread_mutex_destroy(&s2->free_lock);
}

static uint64_t make_huge_leaf(uint64_t pfn, bool private)
{
	return (pfn << E_PFN_SHIFT) | E_PRESENT | (private ? E_PRIVATE : 0);
}

static uint32_t make_leaf(uint64_t pfn, bool private)
{
	return (uint32_t)(pfn << L_PFN_SHIFT) | E_PRESENT | (private ? E_PRIVATE : 0);
}

/*
 * Install a huge leaf in @slot at @level for the page (@gfn, @pfn). Returns
 * the level installed, 1 + @level to ask the caller to go one level down (a
 * table is there). *@stored says whether the entry changed.
 */
static int install_huge(_Atomic uint64_t *slot, int level, uint64_t pfn,
			bool private, bool *stored)
{
	uint64_t v = make_huge_leaf(pfn & ~(span_of(level) - 1), private);
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

/* The same for a 4 KiB leaf, which has no table below it: returns 0. */
static int install_leaf(_Atomic uint32_t *slot, uint64_t pfn, bool private,
			bool *stored)
{
	uint32_t v = make_leaf(pfn, private);
	uint32_t old = atomic_load_explicit(slot, memory_order_acquire);

	while (old != v) {
		if (atomic_compare_exchange_weak(slot, &old, v)) {
			*stored = true;
			break;
		}
	}
	return 0;
}

int s2_topup(struct stage2 *s2, struct s2_cache *c, int want)
{
	for (int level = 0; level < want && level < S2_LEVELS - 1; level++) {
		if (!c->t[level])
			c->t[level] = table_get(s2, level);
		if (!c->t[level])
			return -ENOMEM;
	}
	return 0;
}

void s2_cache_release(struct stage2 *s2, struct s2_cache *c)
{
	for (int level = 0; level < S2_LEVELS - 1; level++) {
		if (c->t[level])
			table_put(s2, c->t[level], level);
		c->t[level] = NULL;
	}
}

int s2_map(struct stage2 *s2, uint64_t gfn, uint64_t pfn, bool private,
	   int want, bool *stored, struct s2_cache *c)
{
	struct s2_table *t = s2->root;

	lock_assert_held_shared(s2->lock);
	*stored = false;
	if (gfn >= S2_MAX_GFN || pfn >= S2_MAX_PFN || want < 0 ||
	    want >= S2_LEVELS - 1)
		return -EINVAL;
	for (int level = S2_LEVELS - 1; level > 0; level--) {
		_Atomic uint64_t *slot = &t->e[idx(gfn, level)];
		uint64_t next;

		if (level == want) {
			int ret = install_huge(slot, level, pfn, private, stored);

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
			void *n = c->t[level - 1];
			uint64_t expected = 0;

			/* A zap took tables out since the top-up: top up again. */
			if (!n)
				return -EAGAIN;
			if (atomic_compare_exchange_strong(slot, &expected,
							   (uint64_t)(uintptr_t)n)) {
				c->t[level - 1] = NULL;
				next = (uint64_t)(uintptr_t)n;
			} else {
				next = expected;	/* another fault won the race */
				if (is_leaf(next)) {
					level++;	/* look at the leaf again */
					continue;
				}
			}
		}
		if (level == 1)
			return install_leaf(&leaf_table_of(next)->e[idx(gfn, 0)],
					    pfn, private, stored);
		t = table_of(next);
	}
	return -EINVAL;	/* not reached: level 1 always goes down to a leaf */
}

static void decode(uint64_t v, uint64_t gfn, int level, struct s2_entry *e)
{
	e->pfn = (v >> E_PFN_SHIFT) + (gfn & (span_of(level) - 1));
	e->private = v & E_PRIVATE;
	e->level = level;
}

static void decode_leaf(uint32_t v, struct s2_entry *e)
{
	e->pfn = v >> L_PFN_SHIFT;
	e->private = v & E_PRIVATE;
	e->level = 0;
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
	for (int level = S2_LEVELS - 1; level > 0; level--) {
		uint64_t v = atomic_load_explicit(&t->e[idx(gfn, level)],
						  memory_order_acquire);
		uint32_t l;

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
		if (level > 1) {
			t = table_of(v);
			continue;
		}
		l = atomic_load_explicit(&leaf_table_of(v)->e[idx(gfn, 0)],
					 memory_order_acquire);
		if (!(l & E_PRESENT))
			return false;
		if (e)
			decode_leaf(l, e);
		return true;
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
	bool mapped;

	if (seq & 1)
		return -EAGAIN;
	/* The walk's loads are acquires: the re-read below cannot pass them. */
	mapped = lookup(s2, gfn, e, missing);
	if (atomic_load_explicit(&s2->seq, memory_order_relaxed) != seq)
		return -EAGAIN;
	return mapped;
}

static bool zap_matches(uint64_t v, unsigned int filter)
{
	if (!(v & E_PRESENT))
		return false;
	return (v & E_PRIVATE) ? (filter & S2_ZAP_PRIVATE)
			       : (filter & S2_ZAP_SHARED);
}

static bool table_empty(void *t, int level)
{
	for (unsigned int i = 0; i < S2_ENTRIES; i++) {
		if (level ? atomic_load_explicit(&((struct s2_table *)t)->e[i],
						 memory_order_relaxed)
			  : atomic_load_explicit(&((struct s2_leaf *)t)->e[i],
						 memory_order_relaxed))
			return false;
	}
	return true;
}

/* Zap [start, end) in leaf table @l that covers gfns from @base. */
static uint64_t zap_leaves(struct s2_leaf *l, uint64_t base, uint64_t start,
			   uint64_t end, unsigned int filter)
{
	unsigned int first = start > base ? start - base : 0;
	uint64_t zapped = 0;

	for (unsigned int i = first; i < S2_ENTRIES && base + i < end; i++) {
		uint32_t v = atomic_load_explicit(&l->e[i], memory_order_relaxed);

		if (zap_matches(v, filter)) {
			atomic_store_explicit(&l->e[i], 0, memory_order_release);
			zapped++;
		}
	}
	return zapped;
}

/*
 * Zap [start, end) below upper table @t that covers gfns from @base. A huge
 * leaf that overlaps the range goes whole; a table the range covers entirely
 * goes too once empty, so a huge leaf can take its place later.
 */
static uint64_t zap_table(struct stage2 *s2, struct s2_table *t, int level,
			  uint64_t base, uint64_t start, uint64_t end,
			  unsigned int filter)
{
	uint64_t span = span_of(level), zapped = 0;
	unsigned int first = start > base ? (start - base) / span : 0;

	for (unsigned int i = first; i < S2_ENTRIES; i++) {
		uint64_t lo = base + i * span;
		void *below;
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
		below = (void *)(uintptr_t)v;
		if (level > 1)
			zapped += zap_table(s2, below, level - 1, lo, start, end,
					    filter);
		else
			zapped += zap_leaves(below, lo, start, end, filter);
		if (start <= lo && lo + span <= end && table_empty(below, level - 1)) {
			atomic_store_explicit(&t->e[i], 0, memory_order_release);
			table_put(s2, below, level - 1);
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

typedef int (*walk_fn)(uint64_t, const struct s2_entry *, void *);

static int walk_leaves(struct s2_leaf *l, uint64_t base, walk_fn fn, void *arg)
{
	for (unsigned int i = 0; i < S2_ENTRIES; i++) {
		uint32_t v = atomic_load_explicit(&l->e[i], memory_order_acquire);
		struct s2_entry e;
		int ret;

		if (!v)
			continue;
		decode_leaf(v, &e);
		ret = fn(base + i, &e, arg);
		if (ret)
			return ret;
	}
	return 0;
}

static int walk_table(struct s2_table *t, int level, uint64_t base,
		      walk_fn fn, void *arg)
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
		} else if (level > 1) {
			ret = walk_table(table_of(v), level - 1,
					 base + i * span, fn, arg);
		} else {
			ret = walk_leaves(leaf_table_of(v), base + i * span,
					  fn, arg);
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
