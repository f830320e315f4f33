/* SPDX-License-Identifier: MIT */
/*
 * Stage-2: a VM's gfn -> (pfn, level, private) table, shaped like a
 * four-level EPT/NPT. Leaves sit at level 0 (4 KiB), 1 (2 MiB) or 2 (1 GiB).
 * Installs run in parallel under the VM's mmu_lock held shared
 * (compare-and-swap on entries and tables); zaps run under it exclusive, and
 * a zap that touches any part of a huge leaf removes the whole leaf. Lookups
 * and walks hold it either way, except s2_lookup_unlocked, which holds
 * nothing and reads under the zaps' sequence count instead. Each call
 * asserts its part of this rule.
 */
#ifndef GMEM_STAGE2_H
#define GMEM_STAGE2_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define S2_LEVELS	4
#define S2_BITS		9
#define S2_MAX_GFN	(1ULL << (S2_LEVELS * S2_BITS))	/* 48-bit GPA */
/* A 4 KiB leaf is 32 bits: present, private, a 30-bit pool frame number. */
#define S2_PFN_BITS	30
#define S2_MAX_PFN	(1ULL << S2_PFN_BITS)	/* frames of 4 KiB: 4 TiB */

#define S2_ZAP_SHARED	(1U << 0)
#define S2_ZAP_PRIVATE	(1U << 1)
#define S2_ZAP_ALL	(S2_ZAP_SHARED | S2_ZAP_PRIVATE)

struct s2_table;

struct stage2 {
	struct s2_table *root;
	atomic_uint seq;		/* odd while s2_zap runs, bumped twice by each */
	pthread_mutex_t free_lock;	/* leaf: guards free */
	void *free[S2_LEVELS - 1];	/* empty tables out of the tree, by level */
	atomic_uint_least64_t bytes;	/* table memory allocated, root included */
	const void *lock;		/* the VM's mmu_lock, for lock.h's assertions */
};

struct s2_entry {
	uint64_t pfn;		/* s2_lookup: the frame of the gfn asked for;
				 * s2_walk: the first frame of the leaf */
	bool private;
	int level;		/* 0 = 4 KiB, 1 = 2 MiB, 2 = 1 GiB */
};

int s2_init(struct stage2 *s2, const void *mmu_lock);
void s2_destroy(struct stage2 *s2);
/*
 * The tables a fault may need, taken before it changes anything, as KVM
 * tops up its caches before it faults a page in: s2_map then cannot fail
 * for want of memory. s2_topup makes @c hold a table for each of the @want
 * lowest levels (the walk's lack that s2_lookup_unlocked reported, or
 * S2_LEVELS - 1, all a walk can need): a 2 KiB leaf table for level 0 and
 * 4 KiB upper tables above it. 0 or -ENOMEM; what s2_map did not use goes
 * back with s2_cache_release. A cache starts zeroed.
 */
struct s2_cache {
	void *t[S2_LEVELS - 1];		/* t[l]: a table of level l, 0 a leaf table */
};

int s2_topup(struct stage2 *s2, struct s2_cache *c, int want);
void s2_cache_release(struct stage2 *s2, struct s2_cache *c);

/*
 * Map page @gfn -> @pfn with a leaf of level @level (covering the aligned
 * span around both), taking the tables it lacks from @c. Where smaller
 * entries still fill that span, maps the page alone at level 0. Returns the
 * level of the entry that maps the page, -EAGAIN if @c ran short (a zap
 * took tables out since s2_topup: top up all and retry), -EINVAL for a
 * @gfn or @pfn out of range (S2_MAX_GFN, S2_MAX_PFN), or -EEXIST (a
 * huge leaf maps the page to another frame or kind);
 * *@stored is false when that entry was there already.
 */
int s2_map(struct stage2 *s2, uint64_t gfn, uint64_t pfn, bool private,
	   int level, bool *stored, struct s2_cache *c);
bool s2_lookup(struct stage2 *s2, uint64_t gfn, struct s2_entry *e);
/*
 * s2_lookup with no lock held: 1 mapped (*@e filled), 0 not, -EAGAIN if a
 * zap ran meanwhile (*@e may hold what the discarded walk read). What it
 * returns was the entry at the moment of one of its reads, as a lookup
 * under mmu_lock that ended just before the zap.
 * On 0, *@missing (if non-NULL) is how many tables the walk to @gfn's
 * 4 KiB entry lacked, what a fault tops up (a guess once zaps run).
 * Only while the VM lives (vm_enter): s2_destroy frees the tables.
 */
int s2_lookup_unlocked(struct stage2 *s2, uint64_t gfn, struct s2_entry *e,
		       int *missing);
uint64_t s2_zap(struct stage2 *s2, uint64_t start, uint64_t end,
		unsigned int filter);
/* Tables of @level (0: leaf tables) on the free list, kept for reuse. */
unsigned long s2_free_tables(struct stage2 *s2, int level);
/* Calls @fn for every leaf, at its first gfn; stops early if it returns non-zero. */
int s2_walk(struct stage2 *s2, int (*fn)(uint64_t gfn,
		const struct s2_entry *e, void *arg), void *arg);

#endif
