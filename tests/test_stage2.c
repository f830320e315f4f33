// SPDX-License-Identifier: MIT
/*
 * The stage-2 table (src/stage2.c), white box: 4 KiB leaves are 32-bit
 * entries in 2 KiB tables, upper tables 4 KiB; a frame number at the limit
 * round-trips and one past it is refused, as is a pool above 4 TiB; tables a
 * zap takes out are reused only at their own level, and unlocked lookups
 * racing zaps and reuse read only entries that were installed.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

#include "harness.h"
#include "brlock.h"
#include "stage2.h"

#define PG		GMEM_PAGE_SIZE
#define UPPER		4096
#define LEAF		2048
#define BLOCK		512ULL			/* gfns under one level-1 entry */
#define GIB_GFNS	(BLOCK * 512)		/* gfns under one level-2 entry */
#define L2_GFNS		(GIB_GFNS * 512)	/* gfns under one root entry */

struct s2_env {
	struct brlock mmu;
	struct stage2 s2;
};

static void s2_env_init(struct s2_env *t)
{
	brlock_init(&t->mmu);
	ASSERT_EQ(s2_init(&t->s2, &t->mmu), 0);
}

static void s2_env_free(struct s2_env *t)
{
	s2_destroy(&t->s2);
	brlock_destroy(&t->mmu);
}

/*
 * Map as a fault does: top up the tables the unlocked walk found lacking
 * (all a walk can need if a zap raced it or took them since), map, give back
 * the rest.
 */
static int map(struct s2_env *t, uint64_t gfn, uint64_t pfn, bool private, int level)
{
	struct s2_cache c = { 0 };
	bool stored;
	int missing = S2_LEVELS - 1, ret;

	if (s2_lookup_unlocked(&t->s2, gfn, NULL, &missing) < 0)
		missing = S2_LEVELS - 1;
	do {
		ret = s2_topup(&t->s2, &c, missing);
		if (ret)
			break;
		brlock_read_lock(&t->mmu);
		ret = s2_map(&t->s2, gfn, pfn, private, level, &stored, &c);
		brlock_read_unlock(&t->mmu);
		missing = S2_LEVELS - 1;
	} while (ret == -EAGAIN);
	s2_cache_release(&t->s2, &c);
	return ret;
}

static bool lookup(struct s2_env *t, uint64_t gfn, struct s2_entry *e)
{
	bool mapped;

	brlock_read_lock(&t->mmu);
	mapped = s2_lookup(&t->s2, gfn, e);
	brlock_read_unlock(&t->mmu);
	return mapped;
}

static uint64_t zap(struct s2_env *t, uint64_t start, uint64_t end)
{
	uint64_t n;

	brlock_write_lock(&t->mmu);
	n = s2_zap(&t->s2, start, end, S2_ZAP_ALL);
	brlock_write_unlock(&t->mmu);
	return n;
}

static uint64_t table_bytes(struct s2_env *t)
{
	return atomic_load(&t->s2.bytes);
}

TEST(a_4k_page_takes_three_upper_tables_and_one_2k_leaf_table)
{
	struct s2_env t;
	struct s2_entry e;

	s2_env_init(&t);
	ASSERT_EQ(table_bytes(&t), UPPER);			/* the root */
	ASSERT_EQ(map(&t, 5, 77, true, 0), 0);
	ASSERT_EQ(table_bytes(&t), 3 * UPPER + LEAF);
	/* The other 511 pages of the 2 MiB block share the leaf table. */
	for (uint64_t g = 0; g < BLOCK; g++)
		ASSERT_EQ(map(&t, g, 1000 + g, g & 1, 0), 0);
	ASSERT_EQ(table_bytes(&t), 3 * UPPER + LEAF);
	ASSERT_EQ(map(&t, BLOCK, 9, false, 0), 0);		/* the next block */
	ASSERT_EQ(table_bytes(&t), 3 * UPPER + 2 * LEAF);
	ASSERT_TRUE(lookup(&t, 5, &e));
	ASSERT_EQ(e.pfn, 1005);
	ASSERT_EQ(e.private, true);
	ASSERT_EQ(e.level, 0);
	ASSERT_TRUE(lookup(&t, 6, &e));
	ASSERT_EQ(e.private, false);
	/*
	 * A huge leaf takes no leaf table: the one its top-up took (a fault
	 * learns the level after it tops up) waits on the free list.
	 */
	ASSERT_EQ(map(&t, 2 * BLOCK + 3, 4 * BLOCK + 3, true, 1), 1);
	ASSERT_EQ(table_bytes(&t), 3 * UPPER + 3 * LEAF);
	ASSERT_EQ(s2_free_tables(&t.s2, 0), 1);
	ASSERT_TRUE(lookup(&t, 2 * BLOCK + 511, &e));
	ASSERT_EQ(e.pfn, 4 * BLOCK + 511);
	ASSERT_EQ(e.level, 1);
	s2_env_free(&t);
}

TEST(a_frame_number_at_the_limit_round_trips_and_one_past_is_refused)
{
	struct s2_env t;
	struct s2_entry e;
	bool stored;
	struct s2_cache c = { 0 };

	s2_env_init(&t);
	ASSERT_EQ(S2_MAX_PFN, 1ULL << 30);
	ASSERT_EQ(map(&t, 7, S2_MAX_PFN - 1, true, 0), 0);
	ASSERT_EQ(map(&t, 8, S2_MAX_PFN - 1, false, 0), 0);
	ASSERT_TRUE(lookup(&t, 7, &e));
	ASSERT_EQ(e.pfn, S2_MAX_PFN - 1);
	ASSERT_EQ(e.private, true);
	ASSERT_TRUE(lookup(&t, 8, &e));
	ASSERT_EQ(e.pfn, S2_MAX_PFN - 1);
	ASSERT_EQ(e.private, false);
	/* The last 2 MiB of frames as a huge leaf. */
	ASSERT_EQ(map(&t, 3 * BLOCK, S2_MAX_PFN - BLOCK, true, 1), 1);
	ASSERT_TRUE(lookup(&t, 4 * BLOCK - 1, &e));
	ASSERT_EQ(e.pfn, S2_MAX_PFN - 1);

	/* One past: refused, on an empty gfn and over a mapped one alike. */
	ASSERT_EQ(map(&t, 9, S2_MAX_PFN, true, 0), -EINVAL);
	ASSERT_TRUE(!lookup(&t, 9, &e));
	ASSERT_EQ(map(&t, 7, S2_MAX_PFN, true, 0), -EINVAL);
	ASSERT_EQ(map(&t, 7, S2_MAX_PFN + 7, true, 0), -EINVAL);
	ASSERT_TRUE(lookup(&t, 7, &e));
	ASSERT_EQ(e.pfn, S2_MAX_PFN - 1);
	ASSERT_EQ(map(&t, 5 * BLOCK, S2_MAX_PFN, true, 1), -EINVAL);
	ASSERT_TRUE(!lookup(&t, 5 * BLOCK, &e));

	/* s2_map refuses before it takes a table. */
	ASSERT_EQ(s2_topup(&t.s2, &c, S2_LEVELS - 1), 0);
	brlock_read_lock(&t.mmu);
	ASSERT_EQ(s2_map(&t.s2, 7 * GIB_GFNS, S2_MAX_PFN, false, 0, &stored, &c), -EINVAL);
	brlock_read_unlock(&t.mmu);
	ASSERT_EQ(stored, false);
	for (int level = 0; level < S2_LEVELS - 1; level++)
		ASSERT_TRUE(c.t[level] != NULL);
	s2_cache_release(&t.s2, &c);
	s2_env_free(&t);
}

/* The bound, through gmem.h: a 4 TiB pool's last frame is mapped exactly. */
TEST(a_pool_of_4_tib_maps_its_last_frame_and_a_larger_pool_is_refused)
{
	const uint64_t tib = 1ULL << 40, gib = 1ULL << 30;
	uint64_t pfn = 0;
	int pool, vm, big, top;

	ASSERT_EQ(gmem_pool_create(4 * tib + gib), -EINVAL);
	ASSERT_EQ(gmem_pool_create(64 * tib), -EINVAL);
	pool = gmem_pool_create(4 * tib);
	if (pool == -ENOMEM) {
		test_skip("no address space for a 4 TiB pool");
		return;
	}
	ASSERT_GE(pool, 0);
	vm = gmem_vm_create(pool, "sw", 0);
	ASSERT_GE(vm, 0);
	/* Windows are first fit: the second file ends at the pool's end. */
	big = gmem_create(vm, 4 * tib - gib, 0);
	ASSERT_GE(big, 0);
	top = gmem_create(vm, gib, 0);
	ASSERT_GE(top, 0);
	ASSERT_EQ(gmem_vm_bind(vm, 0, 0, gib, top, 0), 0);
	ASSERT_EQ(gmem_vm_fault(vm, gib - PG, GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE,
				&pfn, NULL), 0);
	ASSERT_EQ(pfn, S2_MAX_PFN - 1);
	pfn = 0;
	ASSERT_EQ(gmem_vm_stage2(vm, gib - PG, &pfn, NULL), 1);
	ASSERT_EQ(pfn, S2_MAX_PFN - 1);
	ASSERT_EQ(gmem_close(top), 0);
	ASSERT_EQ(gmem_close(big), 0);
	ASSERT_EQ(gmem_vm_close(vm), 0);
	ASSERT_EQ(gmem_pool_close(pool), 0);
}

TEST(zapped_tables_are_reused_only_at_their_own_level)
{
	struct s2_env t;
	struct s2_entry e;
	uint64_t bytes;

	s2_env_init(&t);
	/* Two 1 GiB spans, 4 blocks of 4 KiB pages in each. */
	for (uint64_t s = 0; s < 2; s++)
		for (uint64_t b = 0; b < 4; b++)
			ASSERT_EQ(map(&t, s * GIB_GFNS + b * BLOCK + 1, 100 + b, false, 0), 0);
	bytes = table_bytes(&t);
	ASSERT_EQ(bytes, 4 * UPPER + 8 * LEAF);		/* root, L2, two L1 */
	ASSERT_EQ(zap(&t, 0, L2_GFNS), 8);
	ASSERT_EQ(s2_free_tables(&t.s2, 0), 8);
	ASSERT_EQ(s2_free_tables(&t.s2, 1), 2);
	ASSERT_EQ(s2_free_tables(&t.s2, 2), 1);

	/* Huge leaves need an L2 and two L1 tables: no leaf table goes up. */
	ASSERT_EQ(map(&t, 0, 0, true, 1), 1);
	ASSERT_EQ(map(&t, GIB_GFNS, 0, true, 1), 1);
	ASSERT_EQ(s2_free_tables(&t.s2, 0), 8);
	ASSERT_EQ(s2_free_tables(&t.s2, 1), 0);
	ASSERT_EQ(s2_free_tables(&t.s2, 2), 0);
	/* A third span would need an L1 table: a new one, not a leaf table. */
	ASSERT_EQ(map(&t, 2 * GIB_GFNS, 0, true, 1), 1);
	ASSERT_EQ(table_bytes(&t), bytes + UPPER);
	ASSERT_EQ(s2_free_tables(&t.s2, 0), 8);

	/* 4 KiB pages take the zapped leaf tables back, and nothing new. */
	for (uint64_t b = 1; b < 9; b++)
		ASSERT_EQ(map(&t, b * BLOCK + 3, b, true, 0), 0);
	ASSERT_EQ(s2_free_tables(&t.s2, 0), 0);
	ASSERT_EQ(table_bytes(&t), bytes + UPPER);
	ASSERT_TRUE(lookup(&t, 8 * BLOCK + 3, &e));
	ASSERT_EQ(e.pfn, 8);
	ASSERT_EQ(e.level, 0);
	ASSERT_TRUE(lookup(&t, GIB_GFNS + 17, &e));
	ASSERT_EQ(e.pfn, 17);
	ASSERT_EQ(e.level, 1);
	s2_env_free(&t);
}

/* --------------------------- unlocked lookups racing zaps and reuse */

#define R_SPANS		2		/* 1 GiB spans under the one L2 table */
#define R_BLOCKS	8		/* 2 MiB blocks used in each span */
#define R_OFF		(1ULL << 20)	/* pfn = gfn + R_OFF: 512-aligned */
#define R_MAPPERS	2
#define R_READERS	2

struct race {
	struct s2_env t;
	atomic_bool stop;
	atomic_ulong bad, read, mapped, again;
	unsigned long rounds;
};

static bool r_private(uint64_t gfn)
{
	return (gfn / BLOCK) & 1;
}

static uint64_t r_gfn(unsigned int span, unsigned int block, unsigned int page)
{
	return span * GIB_GFNS + block * 2 * BLOCK + page;
}

/* Mapper 0 zaps everything each round: every table below the root goes. */
static void *r_mapper(void *arg)
{
	struct race *r = ((void **)arg)[0];
	unsigned int id = (unsigned int)(uintptr_t)((void **)arg)[1];

	for (unsigned long round = 0; round < r->rounds; round++) {
		for (unsigned int s = 0; s < R_SPANS; s++) {
			for (unsigned int b = 0; b < R_BLOCKS; b++) {
				bool huge = (round + b + id) % 3 == 0;

				for (unsigned int p = id; p < BLOCK; p += huge ? BLOCK : 37) {
					uint64_t g = r_gfn(s, b, p);
					int ret = map(&r->t, g, g + R_OFF, r_private(g), huge);

					/* A huge leaf over 4 KiB leaves maps at 0; 4 KiB under a huge leaf agrees. */
					if (ret < 0 || ret > 1)
						atomic_fetch_add(&r->bad, 1);
				}
			}
		}
		if (id == 0)
			zap(&r->t, 0, L2_GFNS);
	}
	return NULL;
}

static void *r_reader(void *arg)
{
	struct race *r = arg;
	uint64_t x = (uintptr_t)&x | 1;		/* a seed per thread */

	while (!atomic_load(&r->stop)) {
		struct s2_entry e;
		uint64_t g;
		int ret;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		g = r_gfn(x % R_SPANS, (x >> 8) % R_BLOCKS, (x >> 16) % BLOCK);
		ret = s2_lookup_unlocked(&r->t.s2, g, &e, NULL);
		if (ret == -EAGAIN) {
			atomic_fetch_add(&r->again, 1);
			continue;
		}
		atomic_fetch_add(&r->read, 1);
		if (ret == 1)
			atomic_fetch_add(&r->mapped, 1);
		if (ret == 1 && (e.pfn != g + R_OFF || e.private != r_private(g) ||
				 e.level > 1))
			atomic_fetch_add(&r->bad, 1);
	}
	return NULL;
}

TEST(unlocked_lookups_racing_zaps_and_table_reuse_read_only_installed_entries)
{
	static struct race r;
	pthread_t m[R_MAPPERS], rd[R_READERS];
	void *marg[R_MAPPERS][2];

	s2_env_init(&r.t);
	atomic_store(&r.stop, false);
	r.rounds = 2000;
	for (int i = 0; i < R_READERS; i++)
		ASSERT_EQ(pthread_create(&rd[i], NULL, r_reader, &r), 0);
	for (int i = 0; i < R_MAPPERS; i++) {
		marg[i][0] = &r;
		marg[i][1] = (void *)(uintptr_t)i;
		ASSERT_EQ(pthread_create(&m[i], NULL, r_mapper, marg[i]), 0);
	}
	for (int i = 0; i < R_MAPPERS; i++)
		pthread_join(m[i], NULL);
	atomic_store(&r.stop, true);
	for (int i = 0; i < R_READERS; i++)
		pthread_join(rd[i], NULL);
	printf("# %lu unlocked lookups, %lu found an entry, %lu retried on a zap\n",
	       atomic_load(&r.read), atomic_load(&r.mapped), atomic_load(&r.again));
	ASSERT_EQ(atomic_load(&r.bad), 0);
	ASSERT_GT(atomic_load(&r.mapped), 0);
	/* Every zap emptied the tree: what is left went to the free lists by level. */
	zap(&r.t, 0, L2_GFNS);
	ASSERT_EQ(table_bytes(&r.t), UPPER +
		  (s2_free_tables(&r.t.s2, 2) + s2_free_tables(&r.t.s2, 1)) * UPPER +
		  s2_free_tables(&r.t.s2, 0) * LEAF);
	s2_env_free(&r.t);
}
