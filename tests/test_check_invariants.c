// SPDX-License-Identifier: MIT
/*
 * Each rule of check mode (src/check.c) catches its own breakage: the state
 * is corrupted behind gmem's back (white box: stage-2, the attribute bit, the
 * page cache, huge block states, the frame model), the checker runs, and
 * exactly that violation is reported, with its invariant, page and frame.
 * The host-mapping rules of invariant 1 are broken from outside in
 * test_security.c, and a stage-2 view's in test_vmm_views.c. Last, the
 * frame mark the free path's checks rely on.
 */
#include <string.h>

#include "arch_helpers.h"
#include "arch.h"
#include "bitmap.h"
#include "check.h"
#include "file.h"
#include "handle.h"
#include "lock.h"
#include "poison.h"
#include "pool.h"
#include "vm.h"

struct fixture {
	int pool, vm, fd;
	struct gmem_vm *v;
	struct gmem_file *f;
};

/* A check-mode VM of @arch and a file of @size bytes bound at GPA. */
static struct fixture setup(const char *arch, uint64_t size, uint64_t flags)
{
	struct fixture x;

	x.pool = gmem_pool_create(16 * GiB);
	ASSERT_GE(x.pool, 0);
	x.vm = gmem_vm_create(x.pool, arch, GMEM_VM_CHECK);
	ASSERT_GE(x.vm, 0);
	x.fd = bound_file(x.vm, size, flags);
	x.v = (struct gmem_vm *)obj_peek(x.vm);
	x.f = (struct gmem_file *)obj_peek(x.fd);
	return x;
}

static void teardown(struct fixture *x)
{
	ASSERT_EQ(gmem_close(x->fd), 0);
	ASSERT_EQ(gmem_vm_close(x->vm), 0);
	ASSERT_EQ(gmem_pool_close(x->pool), 0);
}

/* Run the whole checker now, as after a call. */
static void check_now(struct fixture *x)
{
	check_after(x->v, "corrupted");
}

/* Exactly one violation: of @inv, at @offset and @pfn, its rule containing @rule. */
static void expect_one(struct fixture *x, int inv, uint64_t offset,
		       uint64_t pfn, const char *rule, const char *op)
{
	static struct gmem_violation v[8];
	int64_t n = gmem_vm_violations(x->vm, v, 8);

	for (int64_t i = 0; i < n && i < 8; i++)
		printf("#   %s: invariant %d at %#llx pfn %#llx: %s\n", v[i].op,
		       v[i].invariant, (unsigned long long)v[i].offset,
		       (unsigned long long)v[i].pfn, v[i].rule);
	ASSERT_EQ(n, 1);
	ASSERT_EQ(v[0].invariant, inv);
	ASSERT_EQ(v[0].offset, offset);
	ASSERT_EQ(v[0].pfn, pfn);
	ASSERT_TRUE(strstr(v[0].rule, rule));
	ASSERT_EQ(strcmp(v[0].op, op), 0);
}

static void expect_none(struct fixture *x)
{
	ASSERT_EQ(gmem_vm_violations(x->vm, NULL, 0), 0);
}

static void s2_set(struct fixture *x, uint64_t gfn, uint64_t pfn, bool private,
		   int level)
{
	struct s2_cache cache = { 0 };
	bool stored;

	ASSERT_EQ(s2_topup(&x->v->s2, &cache, S2_LEVELS - 1), 0);
	/* Installs run under mmu_lock shared, as a fault's. */
	brlock_read_lock(&x->v->mmu_lock);
	ASSERT_GE(s2_map(&x->v->s2, gfn, pfn, private, level, &stored, &cache), 0);
	ASSERT_TRUE(stored);
	brlock_read_unlock(&x->v->mmu_lock);
	s2_cache_release(&x->v->s2, &cache);
}

static void s2_clear(struct fixture *x, uint64_t gfn, uint64_t n)
{
	brlock_write_lock(&x->v->mmu_lock);
	s2_zap(&x->v->s2, gfn, gfn + n, S2_ZAP_ALL);
	brlock_write_unlock(&x->v->mmu_lock);
}

/* ------------------------------------------------------- invariant 2 */

TEST(the_fault_paths_attribute_bit_disagreeing_with_the_map_is_invariant_2)
{
	struct fixture x = setup("sw", 4 * PG, 0);

	ASSERT_EQ(gmem_vm_fault(x.vm, GPA + PG, PRIVATE_W, NULL, NULL), 0);
	expect_none(&x);
	bitmap_assign(x.f->flipped, 2, 3, true);	/* page 2 reads shared */
	check_now(&x);
	expect_one(&x, 2, 2 * PG, frame_of(x.fd, PG) + 1,
		   "attribute bit disagrees", "corrupted");
	bitmap_assign(x.f->flipped, 2, 3, false);
	teardown(&x);
}

TEST(a_stage2_entry_of_the_wrong_kind_is_invariant_2)
{
	struct fixture x = setup("sw", 4 * PG, 0);
	uint64_t pfn;

	ASSERT_EQ(gmem_vm_fault(x.vm, GPA + PG, PRIVATE_W, &pfn, NULL), 0);
	s2_clear(&x, GFN + 1, 1);
	s2_set(&x, GFN + 1, pfn, false, 0);	/* the private page, mapped shared */
	check_now(&x);
	expect_one(&x, 2, PG, pfn, "as shared but the page is private", "corrupted");
	s2_clear(&x, GFN + 1, 1);
	teardown(&x);
}

TEST(a_stage2_entry_where_nothing_is_bound_is_invariant_2)
{
	struct fixture x = setup("sw", 4 * PG, 0);
	uint64_t pfn;

	ASSERT_EQ(gmem_vm_fault(x.vm, GPA, PRIVATE_W, &pfn, NULL), 0);
	s2_set(&x, GFN + 100, pfn, true, 0);
	check_now(&x);
	expect_one(&x, 2, ~0ULL, pfn, "which nothing binds", "corrupted");
	s2_clear(&x, GFN + 100, 1);
	teardown(&x);
}

TEST(a_huge_stage2_entry_over_no_whole_huge_folio_is_invariant_2)
{
	struct fixture x = setup("sw", 2 * MiB, 0);
	uint64_t base;

	/* Every page present, private, at its own frame: only the size is wrong. */
	ASSERT_EQ(gmem_fallocate(x.fd, GMEM_FALLOC_KEEP_SIZE, 0, 2 * MiB), 0);
	base = frame_of(x.fd, 0);
	expect_none(&x);
	s2_set(&x, GFN, base, true, 1);
	check_now(&x);
	expect_one(&x, 2, 0, base, "maps no whole huge folio", "corrupted");
	s2_clear(&x, GFN, 512);
	teardown(&x);
}

/* ------------------------------------------------------- invariant 4 */

TEST(a_stage2_entry_to_another_pages_frame_is_invariant_4)
{
	struct fixture x = setup("sw", 4 * PG, 0);
	uint64_t p1, p2;

	ASSERT_EQ(gmem_vm_fault(x.vm, GPA + PG, PRIVATE_W, &p1, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(x.vm, GPA + 2 * PG, PRIVATE_W, &p2, NULL), 0);
	s2_clear(&x, GFN + 2, 1);
	s2_set(&x, GFN + 2, p1, true, 0);
	check_now(&x);
	expect_one(&x, 4, 2 * PG, p1, "not its folio's", "corrupted");
	s2_clear(&x, GFN + 2, 1);
	teardown(&x);
}

/* A conversion's before and after, as set_attributes takes them. */
static void conversion_changes_content(struct fixture *x, bool failed)
{
	struct conversion_snapshot *snap;
	uint64_t pfn = frame_of(x->fd, PG);

	brlock_write_lock(&x->f->invalidate_lock);
	snap = check_snapshot(x->f, 0, 4);
	ASSERT_TRUE(snap);
	/* The page is shared: its frame is the host's to write. */
	((uint8_t *)gmem_pool_frame(x->pool, pfn))[7] ^= 0xff;
	check_conversion(x->f, snap, failed);
	brlock_write_unlock(&x->f->invalidate_lock);
}

TEST(a_conversion_that_changes_a_kept_page_is_invariant_4)
{
	struct fixture x = setup("sw", 4 * PG, GMEM_FLAG_INIT_SHARED);

	ASSERT_EQ(gmem_vm_fault(x.vm, GPA + PG, SHARED_W, NULL, NULL), 0);
	conversion_changes_content(&x, false);
	check_now(&x);
	expect_one(&x, 4, PG, frame_of(x.fd, PG), "lost the content",
		   "corrupted");
	teardown(&x);
}

/* ------------------------------------------------------- invariant 5 */

TEST(a_failed_conversion_that_changes_a_page_is_invariant_5)
{
	struct fixture x = setup("sw", 4 * PG, GMEM_FLAG_INIT_SHARED);

	ASSERT_EQ(gmem_vm_fault(x.vm, GPA + PG, SHARED_W, NULL, NULL), 0);
	conversion_changes_content(&x, true);
	check_now(&x);	/* names the "call" the violation came from */
	expect_one(&x, 5, PG, frame_of(x.fd, PG), "failed conversion changed",
		   "corrupted");
	teardown(&x);
}

TEST(a_private_frame_without_its_folio_is_invariant_5)
{
	struct fixture x = setup("sw", 4 * PG, 0);
	struct gmem_pool *pool = x.v->pool;
	uint64_t pfn = x.f->base_pfn + 3;	/* page 3 is a hole */

	frame_mark_private(pool, pfn);
	check_now(&x);
	expect_one(&x, 5, 3 * PG, pfn, "left its folio without reclaim",
		   "corrupted");
	frame_forget_private(pool, pfn);
	teardown(&x);
}

static struct fixture huge_whole_block(void)
{
	struct fixture x = setup("sw", 2 * MiB, GMEM_FLAG_HUGE_2M |
				 GMEM_FLAG_INIT_SHARED);

	ASSERT_EQ(gmem_fallocate(x.fd, GMEM_FALLOC_KEEP_SIZE, 0, 2 * MiB), 0);
	ASSERT_EQ(huge_block_state(x.f, 0), BLOCK_WHOLE);
	expect_none(&x);
	return x;
}

TEST(a_whole_huge_folio_with_a_hole_is_invariant_5)
{
	struct fixture x = huge_whole_block();

	bitmap_assign(x.f->present, 5, 6, false);
	x.f->block_pages[0]--;			/* the count agrees: only the hole is wrong */
	check_now(&x);
	expect_one(&x, 5, 0, x.f->base_pfn, "has a hole or mixed attributes",
		   "corrupted");
	bitmap_assign(x.f->present, 5, 6, true);
	x.f->block_pages[0]++;
	teardown(&x);
}

TEST(a_page_cached_in_a_block_marked_absent_is_invariant_5)
{
	struct fixture x = huge_whole_block();
	uint8_t old = x.f->blocks[0];

	x.f->blocks[0] = (uint8_t)((old & ~BLOCK_STATE) | BLOCK_ABSENT);
	check_now(&x);
	expect_one(&x, 5, 0, x.f->base_pfn, "huge block marked absent",
		   "corrupted");
	x.f->blocks[0] = old;
	teardown(&x);
}

TEST(a_huge_block_miscounting_its_pages_is_invariant_5)
{
	struct fixture x = huge_whole_block();

	x.f->block_pages[0]++;
	check_now(&x);
	expect_one(&x, 5, 0, x.f->base_pfn, "counts 513 pages present, not 512",
		   "corrupted");
	x.f->block_pages[0]--;
	teardown(&x);
}

/* ------------------------------------------------- invariants 3 and 6 */

TEST(a_private_page_whose_frame_the_arch_lost_is_invariant_6)
{
	struct fixture x = setup("snp", 4 * PG, 0);
	struct gmem_pool *pool = x.v->pool;
	uint64_t pfn, word;

	ASSERT_EQ(gmem_vm_fault(x.vm, GPA + PG, PRIVATE_W, &pfn, NULL), 0);
	expect_none(&x);
	word = frame_get(pool, pfn);
	frame_set_arch(pool, pfn, 0);		/* the RMP entry is gone */
	check_now(&x);
	expect_one(&x, 6, PG, pfn, "RMP: a private page is mapped", "corrupted");
	frame_set_arch(pool, pfn, word);
	teardown(&x);
}

TEST(a_freed_frame_still_holding_guest_data_is_invariant_3)
{
	struct fixture x = setup("tdx", 4 * PG, 0);
	static uint8_t data[PG];
	uint64_t pfn;

	fill(data, PG, 5);
	guest_write(x.vm, GPA + PG, data, PG);
	pfn = frame_of(x.fd, PG);
	/*
	 * The S-EPT no longer owns the frame, behind gmem's back, so neither
	 * the invalidation nor reclaim, which clear what the TD owns, clears
	 * it: the guest's bytes stay in the frame.
	 */
	frame_set_arch(x.v->pool, pfn, 0);
	ASSERT_EQ(gmem_fallocate(x.fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 PG, PG), 0);
	expect_one(&x, 3, PG, pfn, "still holds guest data", "gmem_fallocate");
	teardown(&x);
}

TEST(a_freed_frame_the_arch_still_owns_is_invariant_3)
{
	struct fixture x = setup("tdx", 4 * PG, 0);
	struct gmem_pool *pool = x.v->pool;
	uint64_t pfn;

	ASSERT_EQ(gmem_vm_fault(x.vm, GPA + PG, PRIVATE_W, &pfn, NULL), 0);
	/* The free path's check, on a frame no reclaim has released (zero, still in the TD). */
	brlock_write_lock(&x.f->invalidate_lock);
	frames_unpoison(pool, pfn, 1);
	check_reclaimed(x.f, pfn, 1);
	frames_poison(pool, pfn, 1);
	brlock_write_unlock(&x.f->invalidate_lock);
	check_now(&x);
	expect_one(&x, 3, PG, pfn, "S-EPT: a freed frame is still in a TD",
		   "corrupted");
	teardown(&x);
}

/*
 * The engine's mark of a frame that holds private data, which the free path
 * checks: to-shared conversion on an arch that destroys the content (snp,
 * tdx) drops it, as the frame owes no reclaim for data it no longer holds;
 * where the content is kept (sw, pkvm) the mark stays.
 */
static void to_shared_mark(const char *arch, bool kept)
{
	struct fixture x = setup(arch, 4 * PG, 0);
	uint64_t pfn;

	ASSERT_EQ(gmem_vm_fault(x.vm, GPA + PG, PRIVATE_W, &pfn, NULL), 0);
	ASSERT_TRUE(frame_was_private(x.v->pool, pfn));
	ASSERT_EQ(convert(x.fd, PG, PG, 0), 0);
	ASSERT_EQ(frame_was_private(x.v->pool, pfn), kept);
	expect_none(&x);
	teardown(&x);
}

TEST(to_shared_conversion_that_destroys_content_drops_the_private_mark)
{
	to_shared_mark("snp", false);
	to_shared_mark("tdx", false);
	to_shared_mark("sw", true);
	to_shared_mark("pkvm", true);
}
