// SPDX-License-Identifier: MIT
/*
 * Huge folios: 2 MiB and 1 GiB files, split on conversion inside a folio,
 * merge back, huge stage-2 entries, punch, pins, SNP 2 MiB RMP entries, and
 * the pool's accounting (no frame counted twice).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "harness.h"
#include "internal.h"	/* white box: a recording arch */

#define PG	GMEM_PAGE_SIZE
#define MiB	(1ULL << 20)
#define GiB	(1ULL << 30)
#define PRIV	GMEM_ATTR_PRIVATE
#define H2M	GMEM_FLAG_HUGE_2M
#define H1G	GMEM_FLAG_HUGE_1G

#define SHARED_W	GMEM_FAULT_WRITE
#define PRIVATE_W	(GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE)

/* Guest address of every test's file: aligned for 1 GiB folios. */
#define GPA		(4 * GiB)

static int convert(int fd, uint64_t offset, uint64_t size, uint64_t attr)
{
	return gmem_set_attributes(fd, offset, size, attr, 0, NULL);
}

static int order_at(int fd, uint64_t offset)
{
	int order = -1;

	ASSERT_EQ(gmem_folio_info(fd, offset, NULL, &order, NULL), 1);
	return order;
}

static uint64_t frame_of(int fd, uint64_t offset)
{
	uint64_t pfn = 0;

	ASSERT_EQ(gmem_folio_info(fd, offset, &pfn, NULL, NULL), 1);
	return pfn;
}

static uint64_t in_use(struct env *e)
{
	struct gmem_pool_stats st;

	ASSERT_EQ(gmem_pool_stats(e->pool, &st), 0);
	return st.frames_in_use;
}

static int bound_file(struct env *e, uint64_t size, uint64_t flags)
{
	int fd = gmem_create(e->vm, size, flags);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_bind(e->vm, 0, GPA, size, fd, 0), 0);
	return fd;
}

static struct env check_env(const char *arch)
{
	struct env e;

	e.pool = gmem_pool_create(64 * GiB);
	ASSERT_GE(e.pool, 0);
	e.vm = gmem_vm_create(e.pool, arch, GMEM_VM_CHECK);
	ASSERT_GE(e.vm, 0);
	return e;
}

static void assert_clean(struct env *e)
{
	struct gmem_violation v[4];
	int64_t n = gmem_vm_violations(e->vm, v, 4);

	for (int64_t i = 0; i < n && i < 4; i++)
		printf("#   violation %d after %s at %#llx: %s\n", v[i].invariant,
		       v[i].op, (unsigned long long)v[i].offset, v[i].rule);
	ASSERT_EQ(n, 0);
}

/* The guest writes a page-specific pattern into page @page (as @flags). */
static void guest_write(struct env *e, uint64_t page, unsigned int flags)
{
	uint8_t buf[64];
	struct gmem_exit ex;

	memset(buf, (int)(page * 7 + 1), sizeof(buf));
	memcpy(buf, &page, sizeof(page));
	ASSERT_EQ(gmem_vm_access(e->vm, GPA + page * PG, buf, sizeof(buf),
				 flags | GMEM_FAULT_WRITE, &ex), 0);
}

/* Page @page holds the pattern guest_write() left (read as @flags). */
static void guest_expect(struct env *e, uint64_t page, unsigned int flags)
{
	uint8_t buf[64], want[64];
	struct gmem_exit ex;

	memset(want, (int)(page * 7 + 1), sizeof(want));
	memcpy(want, &page, sizeof(page));
	ASSERT_EQ(gmem_vm_access(e->vm, GPA + page * PG, buf, sizeof(buf),
				 flags & ~GMEM_FAULT_WRITE, &ex), 0);
	ASSERT_EQ(memcmp(buf, want, sizeof(buf)), 0);
}

TEST(huge_files_refuse_bad_sizes_flags_bindings_and_mappings)
{
	struct env e = env_new("sw");
	struct gmem_pool_stats before, after;
	void *addr = NULL;
	int fd;

	ASSERT_EQ(gmem_pool_stats(e.pool, &before), 0);
	ASSERT_EQ(gmem_create(e.vm, 2 * MiB, H2M | H1G), -EINVAL);
	ASSERT_EQ(gmem_create(e.vm, 2 * MiB + PG, H2M), -EINVAL);
	ASSERT_EQ(gmem_create(e.vm, MiB, H2M), -EINVAL);
	ASSERT_EQ(gmem_create(e.vm, 2 * MiB, H1G), -EINVAL);
	ASSERT_EQ(gmem_create(e.vm, GiB + 2 * MiB, H1G), -EINVAL);
	ASSERT_EQ(gmem_create(e.vm, 2 * MiB, 1ULL << 4), -EINVAL);
	ASSERT_EQ(gmem_pool_stats(e.pool, &after), 0);
	ASSERT_EQ(after.files, before.files);
	ASSERT_EQ(after.frames_reserved, before.frames_reserved);

	fd = gmem_create(e.vm, 4 * MiB, H2M | GMEM_FLAG_MMAP);
	ASSERT_GE(fd, 0);
	/* Bindings: gpa, offset and size in whole folios. */
	ASSERT_EQ(gmem_bind(e.vm, 0, GPA + PG, 2 * MiB, fd, 0), -EINVAL);
	ASSERT_EQ(gmem_bind(e.vm, 0, GPA, 2 * MiB, fd, PG), -EINVAL);
	ASSERT_EQ(gmem_bind(e.vm, 0, GPA, MiB, fd, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_translate(e.vm, GPA, NULL, NULL, NULL), -EFAULT);
	ASSERT_EQ(gmem_bind(e.vm, 0, GPA, 2 * MiB, fd, 2 * MiB), 0);
	/* Host mappings: offset and length in whole folios, address aligned. */
	ASSERT_EQ(gmem_mmap(fd, PG, 2 * MiB, PROT_READ, MAP_SHARED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, MiB, PROT_READ, MAP_SHARED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 2 * MiB, 2 * MiB, PROT_READ, MAP_SHARED, &addr), 0);
	ASSERT_EQ((uintptr_t)addr % (2 * MiB), 0);
	ASSERT_EQ(gmem_munmap(addr, 2 * MiB), 0);
	/* Conversion, punch and pins work on any 4 KiB page. */
	ASSERT_EQ(convert(fd, PG, PG, 0), 0);
	ASSERT_EQ(gmem_pin(fd, PG, PG), 0);
	ASSERT_EQ(gmem_unpin(fd, PG, PG), 0);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 PG, PG), 0);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA), -ENOENT);
	ASSERT_EQ(gmem_vm_stage2_level(9999, GPA), -EBADF);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(first_fault_allocates_the_whole_2m_folio_and_maps_it_with_one_entry)
{
	struct env e = check_env("sw");
	int fd = bound_file(&e, 4 * MiB, H2M);
	uint64_t pfn = 0, base;
	int private = 0;

	ASSERT_EQ(gmem_folio_info(fd, 2 * MiB, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 2 * MiB + 5 * PG, PRIVATE_W, &pfn,
				NULL), 0);
	base = frame_of(fd, 2 * MiB);
	ASSERT_EQ(base % 512, 0);
	ASSERT_EQ(pfn, base + 5);
	ASSERT_EQ(order_at(fd, 2 * MiB), 9);
	ASSERT_EQ(order_at(fd, 4 * MiB - PG), 9);
	ASSERT_EQ(gmem_folio_info(fd, 0, NULL, NULL, NULL), 0);
	ASSERT_EQ(in_use(&e), 512);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 2 * MiB), 1);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA + 4 * MiB - PG, &pfn, &private), 1);
	ASSERT_EQ(pfn, base + 511);
	ASSERT_EQ(private, 1);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA, NULL, NULL), 0);
	/* Allocation of any page of the other block brings in all of it. */
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 3 * PG, PG), 0);
	ASSERT_EQ(in_use(&e), 1024);
	ASSERT_EQ(order_at(fd, 0), 9);
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(in_use(&e), 0);
	assert_clean(&e);
	env_free(&e);
}

/* Split by a 4 KiB conversion, merged back; content, frames and accounting kept. */
static void split_and_merge_2m(const char *arch)
{
	struct env e = check_env(arch);
	int fd = bound_file(&e, 2 * MiB, H2M);
	uint64_t base, eo = 0;
	static const uint64_t pages[] = { 0, 6, 7, 8, 300, 511 };

	for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		guest_write(&e, pages[i], GMEM_FAULT_PRIVATE);
	base = frame_of(fd, 0);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA), 1);
	ASSERT_EQ(in_use(&e), 512);

	/* One page to shared: the folio splits, the huge entry goes whole. */
	ASSERT_EQ(gmem_set_attributes(fd, 7 * PG, PG, 0, 0, &eo), 0);
	ASSERT_EQ(order_at(fd, 0), 0);
	ASSERT_EQ(order_at(fd, 7 * PG), 0);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA + 300 * PG, NULL, NULL), 0);
	ASSERT_EQ(frame_of(fd, 7 * PG), base + 7);
	ASSERT_EQ(in_use(&e), 512);
	/* Pages of a split folio map at 4 KiB; the shared page keeps its bytes. */
	guest_expect(&e, 7, 0);
	guest_expect(&e, 6, GMEM_FAULT_PRIVATE);
	guest_expect(&e, 8, GMEM_FAULT_PRIVATE);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 6 * PG), 0);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 7 * PG), 0);
	ASSERT_EQ(in_use(&e), 512);

	/* Back to private: uniform again, merged on the same frames. */
	ASSERT_EQ(convert(fd, 7 * PG, PG, PRIV), 0);
	ASSERT_EQ(order_at(fd, 0), 9);
	ASSERT_EQ(order_at(fd, 511 * PG), 9);
	ASSERT_EQ(frame_of(fd, 0), base);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA + 6 * PG, NULL, NULL), 0);
	for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		guest_expect(&e, pages[i], GMEM_FAULT_PRIVATE);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 200 * PG), 1);
	ASSERT_EQ(in_use(&e), 512);
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(in_use(&e), 0);
	assert_clean(&e);
	env_free(&e);
}

TEST(sw_4k_conversion_splits_a_2m_folio_and_converting_back_merges_it)
{
	split_and_merge_2m("sw");
}

TEST(pkvm_4k_conversion_splits_a_2m_folio_and_converting_back_merges_it)
{
	split_and_merge_2m("pkvm");
}

/* The same inside one 1 GiB folio: metadata only, 262144 frames counted once. */
static void split_and_merge_1g(const char *arch)
{
	struct env e = env_new(arch);
	int fd = bound_file(&e, GiB, H1G);
	uint64_t base, mid = 131072 + 5;
	static const uint64_t pages[] = { 0, 1, 511, 512, 131077, 262143 };

	for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		guest_write(&e, pages[i], GMEM_FAULT_PRIVATE);
	base = frame_of(fd, 0);
	ASSERT_EQ(base % 262144, 0);
	ASSERT_EQ(order_at(fd, GiB - PG), 18);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + GiB - PG), 2);
	ASSERT_EQ(in_use(&e), 262144);

	ASSERT_EQ(convert(fd, mid * PG, PG, 0), 0);
	ASSERT_EQ(order_at(fd, 0), 0);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA, NULL, NULL), 0);
	ASSERT_EQ(in_use(&e), 262144);
	guest_expect(&e, mid, 0);
	guest_expect(&e, 512, GMEM_FAULT_PRIVATE);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 512 * PG), 0);
	ASSERT_EQ(frame_of(fd, mid * PG), base + mid);

	ASSERT_EQ(convert(fd, mid * PG, PG, PRIV), 0);
	ASSERT_EQ(order_at(fd, mid * PG), 18);
	ASSERT_EQ(frame_of(fd, 0), base);
	for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		guest_expect(&e, pages[i], GMEM_FAULT_PRIVATE);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 7 * PG), 2);
	ASSERT_EQ(in_use(&e), 262144);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(in_use(&e), 0);
	env_free(&e);
}

TEST(sw_4k_conversion_splits_a_1g_folio_and_converting_back_merges_it)
{
	split_and_merge_1g("sw");
}

TEST(pkvm_4k_conversion_splits_a_1g_folio_and_converting_back_merges_it)
{
	split_and_merge_1g("pkvm");
}

TEST(shared_huge_folio_maps_huge_and_host_writes_reach_the_guest)
{
	struct env e = check_env("sw");
	int fd = gmem_create(e.vm, 2 * MiB, H2M | GMEM_FLAG_MMAP |
			     GMEM_FLAG_INIT_SHARED);
	uint8_t *p = NULL, buf[8];
	struct gmem_exit ex;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_bind(e.vm, 0, GPA, 2 * MiB, fd, 0), 0);
	ASSERT_EQ(gmem_mmap(fd, 0, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED,
			    (void **)&p), 0);
	memcpy(p + 9 * PG, "hugepage", 8);
	ASSERT_EQ(gmem_vm_access(e.vm, GPA + 9 * PG, buf, 8, 0, &ex), 0);
	ASSERT_EQ(memcmp(buf, "hugepage", 8), 0);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA), 1);
	ASSERT_EQ(order_at(fd, 0), 9);
	ASSERT_EQ(in_use(&e), 512);
	/* One page private: split; the host loses that page only. */
	ASSERT_EQ(convert(fd, 9 * PG, PG, PRIV), 0);
	ASSERT_EQ(order_at(fd, 0), 0);
	ASSERT_EQ(probe_write(p + 10 * PG, 1), 0);
	ASSERT_NE(probe_write(p + 9 * PG, 1), 0);
	ASSERT_EQ(convert(fd, 9 * PG, PG, 0), 0);
	ASSERT_EQ(order_at(fd, 0), 9);
	ASSERT_EQ(probe_write(p + 9 * PG, 1), 0);
	ASSERT_EQ(in_use(&e), 512);
	assert_clean(&e);
	ASSERT_EQ(gmem_munmap(p, 2 * MiB), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(memory_in_use_equals_pages_allocated_whatever_the_mix)
{
	struct env e = check_env("pkvm");
	int fd = bound_file(&e, 8 * MiB, H2M);
	uint64_t expect = 0;

	ASSERT_EQ(in_use(&e), 0);
	/* Conversions of absent blocks allocate nothing. */
	ASSERT_EQ(convert(fd, 0, 3 * MiB, 0), 0);
	ASSERT_EQ(in_use(&e), 0);
	/* Block 0 uniform shared, block 1 mixed: both allocated whole. */
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, SHARED_W, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 3 * MiB, PRIVATE_W, NULL, NULL), 0);
	expect = 1024;
	ASSERT_EQ(in_use(&e), expect);
	ASSERT_EQ(order_at(fd, 0), 9);
	ASSERT_EQ(order_at(fd, 2 * MiB), 0);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 3 * MiB), 0);
	/* Flip pages back and forth: never a second frame for a page. */
	for (int i = 0; i < 8; i++) {
		ASSERT_EQ(convert(fd, (uint64_t)i * 64 * PG, 3 * PG, i & 1 ? PRIV : 0), 0);
		ASSERT_EQ(convert(fd, 2 * MiB + (uint64_t)i * 100 * PG, PG, PRIV), 0);
		ASSERT_EQ(in_use(&e), expect);
	}
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 4 * MiB, 4 * MiB), 0);
	expect += 1024;
	ASSERT_EQ(in_use(&e), expect);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 2 * MiB + PG, 10 * PG), 0);
	expect -= 10;
	ASSERT_EQ(in_use(&e), expect);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 0, 8 * MiB), 0);
	ASSERT_EQ(in_use(&e), 0);
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(punching_part_of_a_huge_folio_splits_it_and_frees_only_that_part)
{
	struct env e = check_env("sw");
	int fd = bound_file(&e, 2 * MiB, H2M);
	uint64_t base;

	guest_write(&e, 3, GMEM_FAULT_PRIVATE);
	guest_write(&e, 4, GMEM_FAULT_PRIVATE);
	base = frame_of(fd, 0);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA), 1);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 4 * PG, PG), 0);
	/* The whole huge entry went; page 4 is a hole; the rest 4 KiB folios. */
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA + 100 * PG, NULL, NULL), 0);
	ASSERT_EQ(gmem_folio_info(fd, 4 * PG, NULL, NULL, NULL), 0);
	ASSERT_EQ(order_at(fd, 3 * PG), 0);
	ASSERT_EQ(frame_of(fd, 3 * PG), base + 3);
	ASSERT_EQ(in_use(&e), 511);
	guest_expect(&e, 3, GMEM_FAULT_PRIVATE);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 3 * PG), 0);

	/* Uniform but holed: a conversion round trip leaves it split. */
	ASSERT_EQ(convert(fd, 0, 2 * MiB, 0), 0);
	ASSERT_EQ(convert(fd, 0, 2 * MiB, PRIV), 0);
	ASSERT_EQ(order_at(fd, 3 * PG), 0);
	ASSERT_EQ(in_use(&e), 511);
	/* The hole refills as a 4 KiB folio reading zero... */
	{
		uint8_t buf[16], zero[16] = { 0 };
		struct gmem_exit ex;

		ASSERT_EQ(gmem_vm_access(e.vm, GPA + 4 * PG, buf, sizeof(buf),
					 GMEM_FAULT_PRIVATE, &ex), 0);
		ASSERT_EQ(memcmp(buf, zero, sizeof(buf)), 0);
	}
	ASSERT_EQ(in_use(&e), 512);
	ASSERT_EQ(frame_of(fd, 4 * PG), base + 4);
	/* ...and the next conversion that leaves the block uniform merges it. */
	ASSERT_EQ(convert(fd, 0, PG, 0), 0);
	ASSERT_EQ(convert(fd, 0, PG, PRIV), 0);
	ASSERT_EQ(order_at(fd, 4 * PG), 9);
	guest_expect(&e, 3, GMEM_FAULT_PRIVATE);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 3 * PG), 1);

	/* Punching the whole folio frees it whole. */
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 0, 2 * MiB), 0);
	ASSERT_EQ(in_use(&e), 0);
	ASSERT_EQ(gmem_folio_info(fd, 0, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + PG, PRIVATE_W, NULL, NULL), 0);
	ASSERT_EQ(order_at(fd, 0), 9);
	ASSERT_EQ(in_use(&e), 512);
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

static int frame_is(int pool, uint64_t pfn, const char *what)
{
	char buf[128];

	ASSERT_GT(gmem_frame_state(pool, pfn, buf, sizeof(buf)), 0);
	if (!strstr(buf, what))
		printf("#   frame %#llx: %s, want %s\n", (unsigned long long)pfn,
		       buf, what);
	return strstr(buf, what) != NULL;
}

TEST(snp_rmp_2m_entries_are_smashed_on_split_and_re_formed_on_merge)
{
	struct env e = check_env("snp");
	int fd = bound_file(&e, 4 * MiB, H2M);
	uint64_t base;

	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 2 * MiB + 9 * PG, PRIVATE_W, NULL,
				NULL), 0);
	base = frame_of(fd, 2 * MiB);
	ASSERT_TRUE(frame_is(e.pool, base, "2M"));
	ASSERT_TRUE(frame_is(e.pool, base + 511, "2M"));
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 2 * MiB), 1);

	/* A 4 KiB page to shared: PSMASH, then that page alone leaves the guest. */
	ASSERT_EQ(convert(fd, 2 * MiB + 9 * PG, PG, 0), 0);
	ASSERT_TRUE(frame_is(e.pool, base + 9, "rmp hypervisor"));
	ASSERT_TRUE(frame_is(e.pool, base, "4K"));
	ASSERT_TRUE(frame_is(e.pool, base + 10, "4K"));
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 2 * MiB + 10 * PG, PRIVATE_W, NULL,
				NULL), 0);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 2 * MiB + 10 * PG), 0);
	ASSERT_TRUE(frame_is(e.pool, base + 10, "4K"));

	/* Back to private: merged; the next fault re-forms the 2 MiB entry. */
	ASSERT_EQ(convert(fd, 2 * MiB + 9 * PG, PG, PRIV), 0);
	ASSERT_EQ(order_at(fd, 2 * MiB), 9);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 2 * MiB + 10 * PG, PRIVATE_W, NULL,
				NULL), 0);
	ASSERT_TRUE(frame_is(e.pool, base + 9, "2M"));
	ASSERT_TRUE(frame_is(e.pool, base + 10, "2M"));
	ASSERT_TRUE(frame_is(e.pool, base + 9, "gfn"));
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 2 * MiB + 9 * PG), 1);

	/* Punching part of it smashes the entry too; the rest stays assigned. */
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 2 * MiB, PG), 0);
	ASSERT_TRUE(frame_is(e.pool, base, "rmp hypervisor"));
	ASSERT_TRUE(frame_is(e.pool, base + 1, "4K"));
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_TRUE(frame_is(e.pool, base + 1, "rmp hypervisor"));
	assert_clean(&e);
	env_free(&e);
}

TEST(snp_maps_a_1g_folio_with_2m_entries_the_size_of_its_rmp_entries)
{
	struct env e = env_new("snp");
	int fd = bound_file(&e, GiB, H1G);
	uint64_t base;

	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 3 * MiB, PRIVATE_W, NULL, NULL), 0);
	base = frame_of(fd, 0);
	ASSERT_EQ(order_at(fd, 0), 18);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 3 * MiB), 1);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA, NULL, NULL), 0);
	ASSERT_TRUE(frame_is(e.pool, base + 262143, "2M"));
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, PRIVATE_W, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA), 1);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_TRUE(frame_is(e.pool, base + 262143, "rmp hypervisor"));
	env_free(&e);
}

TEST(a_pinned_subpage_blocks_the_to_private_conversion_that_would_merge)
{
	struct env e = check_env("sw");
	int fd = bound_file(&e, 2 * MiB, H2M);
	uint64_t eo = 0, attr = 0;

	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, PRIVATE_W, NULL, NULL), 0);
	ASSERT_EQ(convert(fd, 0, 8 * PG, 0), 0);
	ASSERT_EQ(order_at(fd, 0), 0);
	ASSERT_EQ(gmem_pin(fd, 2 * PG, PG), 0);
	ASSERT_EQ(gmem_set_attributes(fd, 0, 8 * PG, PRIV, 0, &eo), -EAGAIN);
	ASSERT_EQ(eo, 2 * PG);
	/* Nothing changed. */
	ASSERT_EQ(gmem_get_attributes(fd, 0, &attr, NULL), 0);
	ASSERT_EQ(attr, 0);
	ASSERT_EQ(gmem_get_attributes(fd, 7 * PG, &attr, NULL), 0);
	ASSERT_EQ(attr, 0);
	ASSERT_EQ(order_at(fd, 0), 0);
	ASSERT_EQ(in_use(&e), 512);
	/* Converting the unpinned pages only leaves the block mixed: fine. */
	ASSERT_EQ(convert(fd, 4 * PG, 4 * PG, PRIV), 0);
	ASSERT_EQ(order_at(fd, 0), 0);
	ASSERT_EQ(gmem_unpin(fd, 2 * PG, PG), 0);
	ASSERT_EQ(convert(fd, 0, 4 * PG, PRIV), 0);
	ASSERT_EQ(order_at(fd, 0), 9);
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(a_pinned_page_blocks_the_split_and_the_merge_of_its_huge_folio)
{
	struct env e = check_env("sw");
	int fd = bound_file(&e, 2 * MiB, H2M | GMEM_FLAG_INIT_SHARED);
	uint64_t eo = 0, attr = 1;

	ASSERT_EQ(gmem_pin(fd, 9 * PG, PG), 0);
	ASSERT_EQ(order_at(fd, 0), 9);
	/* Splitting the pinned folio for a private page elsewhere in it: no. */
	ASSERT_EQ(gmem_set_attributes(fd, 5 * PG, PG, PRIV, 0, &eo), -EAGAIN);
	ASSERT_EQ(eo, 9 * PG);
	ASSERT_EQ(gmem_get_attributes(fd, 5 * PG, &attr, NULL), 0);
	ASSERT_EQ(attr, 0);
	ASSERT_EQ(order_at(fd, 0), 9);
	ASSERT_EQ(gmem_unpin(fd, 9 * PG, PG), 0);
	ASSERT_EQ(convert(fd, 5 * PG, PG, PRIV), 0);
	ASSERT_EQ(order_at(fd, 0), 0);
	/* Merging it back while a page is pinned: no, and nothing changes. */
	ASSERT_EQ(gmem_pin(fd, 9 * PG, PG), 0);
	eo = 0;
	ASSERT_EQ(gmem_set_attributes(fd, 5 * PG, PG, 0, 0, &eo), -EAGAIN);
	ASSERT_EQ(eo, 9 * PG);
	ASSERT_EQ(gmem_get_attributes(fd, 5 * PG, &attr, NULL), 0);
	ASSERT_EQ(attr, PRIV);
	ASSERT_EQ(gmem_unpin(fd, 9 * PG, PG), 0);
	ASSERT_EQ(convert(fd, 5 * PG, PG, 0), 0);
	ASSERT_EQ(order_at(fd, 0), 9);
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

/* A seeded mix of calls on 2 MiB files, checked after each one, per backend. */
static void random_workload(const char *arch, uint64_t vm_flags)
{
	struct env e;
	uint64_t seed = 0x9e3779b97f4a7c15ULL, pinned[64];
	unsigned int npinned = 0;
	int fd;

	e.pool = gmem_pool_create(64 * GiB);
	ASSERT_GE(e.pool, 0);
	e.vm = gmem_vm_create(e.pool, arch, GMEM_VM_CHECK | vm_flags);
	ASSERT_GE(e.vm, 0);
	fd = bound_file(&e, 4 * MiB, H2M);
	for (int step = 0; step < 300; step++) {
		uint64_t page, n, r;

		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		r = seed;
		page = (r >> 8) % 1024;
		n = (r >> 24) % 3 == 0 ? 1 : (r >> 24) % 3 == 1 ? 4 : 512 - page % 512;
		if (n > 1024 - page)
			n = 1024 - page;
		switch (r % 6) {
		case 0:
		case 1:
			gmem_set_attributes(fd, page * PG, n * PG,
					    (r >> 40) & 1 ? PRIV : 0, 0, NULL);
			break;
		case 2: {
			uint64_t attr = 0;

			ASSERT_EQ(gmem_get_attributes(fd, page * PG, &attr, NULL), 0);
			ASSERT_EQ(gmem_vm_fault(e.vm, GPA + page * PG,
						attr ? PRIVATE_W : SHARED_W,
						NULL, NULL), 0);
			break;
		}
		case 3:
			ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE |
						 GMEM_FALLOC_PUNCH_HOLE,
						 page * PG, n * PG), 0);
			break;
		case 4:
			if (npinned < 64 && !gmem_pin(fd, page * PG, PG))
				pinned[npinned++] = page;
			break;
		case 5:
			if (npinned)
				ASSERT_EQ(gmem_unpin(fd, pinned[--npinned] * PG, PG), 0);
			break;
		}
	}
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(in_use(&e), 0);
	assert_clean(&e);
	env_free(&e);
}

TEST(random_calls_on_2m_files_keep_every_invariant_on_sw)
{
	random_workload("sw", 0);
}

TEST(random_calls_on_2m_files_keep_every_invariant_on_snp)
{
	random_workload("snp", 0);
}

TEST(random_calls_on_2m_files_keep_every_invariant_on_tdx)
{
	random_workload("tdx", 0);
}

TEST(random_calls_on_2m_files_keep_every_invariant_on_pkvm)
{
	random_workload("pkvm", 0);
}

/* ------------------------------------------------------------ threads */

struct race {
	struct env *e;
	int fd;
	atomic_bool stop;
	atomic_int errors;
};

/* Faults everywhere in the file as whatever the page is now. */
static void *faulter(void *arg)
{
	struct race *r = arg;
	uint64_t seed = (uint64_t)(uintptr_t)&seed;

	while (!atomic_load(&r->stop)) {
		uint64_t page, attr = 0;
		struct gmem_exit ex;
		int ret;

		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		page = (seed >> 33) % 1024;
		if (gmem_get_attributes(r->fd, page * PG, &attr, NULL))
			atomic_fetch_add(&r->errors, 1);
		ret = gmem_vm_fault(r->e->vm, GPA + page * PG,
				    attr ? PRIVATE_W : SHARED_W, NULL, &ex);
		if (ret < 0)
			atomic_fetch_add(&r->errors, 1);
	}
	return NULL;
}

TEST(faults_racing_splits_merges_and_punches_never_map_a_stale_entry)
{
	struct env e = env_new("pkvm");
	struct race r = { .e = &e };
	pthread_t t;
	uint64_t seed = 42;

	r.fd = bound_file(&e, 4 * MiB, H2M);
	ASSERT_EQ(pthread_create(&t, NULL, faulter, &r), 0);
	for (int i = 0; i < 400; i++) {
		uint64_t page;

		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		page = (seed >> 33) % 1024;
		if (i % 7 == 6)
			gmem_fallocate(r.fd, GMEM_FALLOC_KEEP_SIZE |
				       GMEM_FALLOC_PUNCH_HOLE, page * PG, PG);
		else
			convert(r.fd, page * PG, PG, i & 1 ? PRIV : 0);
		if (i % 50 == 49)
			convert(r.fd, 0, 4 * MiB, PRIV);
	}
	atomic_store(&r.stop, true);
	pthread_join(t, NULL);
	ASSERT_EQ(atomic_load(&r.errors), 0);
	/* Every mapping left agrees with the file: attribute and frame. */
	for (uint64_t page = 0; page < 1024; page++) {
		uint64_t pfn = 0, attr = 0, fpfn = 0;
		int private = -1;

		if (gmem_vm_stage2(e.vm, GPA + page * PG, &pfn, &private) != 1)
			continue;
		ASSERT_EQ(gmem_get_attributes(r.fd, page * PG, &attr, NULL), 0);
		ASSERT_EQ(private, !!attr);
		ASSERT_EQ(gmem_folio_info(r.fd, page * PG, &fpfn, NULL, NULL), 1);
		ASSERT_EQ(pfn, fpfn);
	}
	ASSERT_EQ(gmem_close(r.fd), 0);
	ASSERT_EQ(in_use(&e), 0);
	env_free(&e);
}

#ifndef MADV_GUARD_REMOVE
#define MADV_GUARD_REMOVE	103
#endif

TEST(check_mode_sees_a_host_reachable_private_page_in_a_huge_mapping)
{
	struct env e = check_env("sw");
	int fd = gmem_create(e.vm, 4 * MiB, H2M | GMEM_FLAG_MMAP);
	struct gmem_violation v[4];
	volatile uint8_t *p = NULL;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_mmap(fd, 0, 4 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED,
			    (void **)&p), 0);
	assert_clean(&e);
	/* Knock the fence off one private page behind gmem's back. */
	if (madvise((void *)(p + 700 * PG), PG, MADV_GUARD_REMOVE)) {
		ASSERT_EQ(gmem_munmap((void *)p, 4 * MiB), 0);
		ASSERT_EQ(gmem_close(fd), 0);
		env_free(&e);
		test_skip("no guard regions on this kernel");
	}
	p[700 * PG] = 1;
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, PG), 0);
	ASSERT_EQ(gmem_vm_violations(e.vm, v, 4), 1);
	ASSERT_EQ(v[0].invariant, 1);
	ASSERT_EQ(v[0].offset, 700 * PG);
	ASSERT_EQ(gmem_munmap((void *)p, 4 * MiB), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(a_folio_emptied_page_by_page_maps_huge_again_once_refilled)
{
	struct env e = check_env("sw");
	int fd = bound_file(&e, 2 * MiB, H2M);

	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, PRIVATE_W, NULL, NULL), 0);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 0, PG), 0);
	/* Split now: the rest maps page by page. */
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + PG, PRIVATE_W, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 9 * PG, PRIVATE_W, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 9 * PG), 0);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 PG, 100 * PG), 0);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 101 * PG, 2 * MiB - 101 * PG), 0);
	ASSERT_EQ(in_use(&e), 0);
	ASSERT_EQ(gmem_folio_info(fd, 0, NULL, NULL, NULL), 0);
	/* Absent again: the next fault brings the whole folio back, mapped huge. */
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 9 * PG, PRIVATE_W, NULL, NULL), 0);
	ASSERT_EQ(order_at(fd, 0), 9);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 9 * PG), 1);
	ASSERT_EQ(in_use(&e), 512);
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(a_1g_file_gets_a_1g_aligned_window_after_smaller_files)
{
	struct env e = env_new("sw");
	int small = gmem_create(e.vm, 4 * PG, 0);
	int two = gmem_create(e.vm, 2 * MiB, H2M);
	int big = gmem_create(e.vm, GiB, H1G);
	struct gmem_pool_stats st;

	ASSERT_GE(small, 0);
	ASSERT_GE(two, 0);
	ASSERT_GE(big, 0);
	ASSERT_EQ(gmem_fallocate(big, GMEM_FALLOC_KEEP_SIZE, GiB - PG, PG), 0);
	ASSERT_EQ(frame_of(big, 0) % (GiB / PG), 0);
	ASSERT_EQ(gmem_fallocate(two, GMEM_FALLOC_KEEP_SIZE, 0, PG), 0);
	ASSERT_EQ(frame_of(two, 0) % 512, 0);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.frames_in_use, GiB / PG + 512);
	ASSERT_EQ(gmem_close(small), 0);
	ASSERT_EQ(gmem_close(two), 0);
	ASSERT_EQ(gmem_close(big), 0);
	/* A pool with no 1 GiB-aligned room left refuses, changing nothing. */
	{
		int pool = gmem_pool_create(GiB), vm, fd;

		ASSERT_GE(pool, 0);
		vm = gmem_vm_create(pool, "sw", 0);
		ASSERT_GE(vm, 0);
		fd = gmem_create(vm, 2 * MiB, 0);
		ASSERT_GE(fd, 0);
		ASSERT_EQ(gmem_create(vm, GiB, H1G), -ENOSPC);
		ASSERT_EQ(gmem_pool_stats(pool, &st), 0);
		ASSERT_EQ(st.files, 1);
		ASSERT_EQ(gmem_close(fd), 0);
		fd = gmem_create(vm, GiB, H1G);
		ASSERT_GE(fd, 0);
		ASSERT_EQ(gmem_close(fd), 0);
		ASSERT_EQ(gmem_vm_destroy(vm), 0);
		ASSERT_EQ(gmem_pool_destroy(pool), 0);
	}
	env_free(&e);
}

TEST(populated_pages_of_a_huge_folio_keep_their_content_when_it_maps_huge)
{
	struct env e = check_env("snp");
	int fd = bound_file(&e, 2 * MiB, H2M);
	uint8_t image[2 * 4096], buf[sizeof(image)];
	struct gmem_exit ex;

	for (size_t i = 0; i < sizeof(image); i++)
		image[i] = (uint8_t)(i * 13 + 5);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA + 10 * PG, image, sizeof(image), 0), 2);
	ASSERT_EQ(order_at(fd, 0), 9);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA + 10 * PG, image, PG, 0), -EEXIST);
	/* The first fault takes the rest over with 2 MiB RMP entries; content stays. */
	ASSERT_EQ(gmem_vm_access(e.vm, GPA + 10 * PG, buf, sizeof(buf),
				 GMEM_FAULT_PRIVATE, &ex), 0);
	ASSERT_EQ(memcmp(buf, image, sizeof(image)), 0);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA), 1);
	ASSERT_TRUE(frame_is(e.pool, frame_of(fd, 10 * PG), "2M"));
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	assert_clean(&e);
	env_free(&e);
}

TEST(legacy_contract_on_huge_folios_smashes_only_the_folio_a_4k_conversion_cuts)
{
	struct env e;
	int fd;
	uint64_t base;

	e.pool = gmem_pool_create(64 * GiB);
	ASSERT_GE(e.pool, 0);
	e.vm = gmem_vm_create(e.pool, "snp", GMEM_VM_CHECK | GMEM_VM_LEGACY_CONTRACT);
	ASSERT_GE(e.vm, 0);
	fd = bound_file(&e, 4 * MiB, H2M);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, 4 * MiB), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, PRIVATE_W, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 2 * MiB, PRIVATE_W, NULL, NULL), 0);
	base = frame_of(fd, 0);
	/* One page in the middle of the first folio: smashed, that page shared. */
	ASSERT_EQ(convert(fd, 100 * PG, PG, 0), 0);
	ASSERT_TRUE(frame_is(e.pool, base + 100, "rmp hypervisor"));
	ASSERT_TRUE(frame_is(e.pool, base + 99, "4K"));
	ASSERT_TRUE(frame_is(e.pool, base + 512, "2M"));
	/* Both folios to shared at once: each a run of its own, none smashed. */
	ASSERT_EQ(convert(fd, 0, 4 * MiB, 0), 0);
	ASSERT_TRUE(frame_is(e.pool, base + 99, "rmp hypervisor"));
	ASSERT_TRUE(frame_is(e.pool, base + 1023, "rmp hypervisor"));
	ASSERT_EQ(order_at(fd, 0), 9);
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	assert_clean(&e);
	env_free(&e);
}

/* ----------------------------------------------- hooks see folio runs */

#define MAX_CALLS	16

static struct {
	int n;
	uint64_t pfn[MAX_CALLS], nr[MAX_CALLS];
} calls;

static void record(struct gmem_pool *pool, uint64_t pfn, uint64_t nr)
{
	if (calls.n < MAX_CALLS) {
		calls.pfn[calls.n] = pfn;
		calls.nr[calls.n] = nr;
	}
	calls.n++;
}

static const struct gmem_arch recording = {
	.name = "sw",
	.keeps_content = true,
	.make_shared = record,
	.reclaim = record,
};

static void assert_calls(uint64_t base, const uint64_t (*want)[2], int n)
{
	ASSERT_EQ(calls.n, n);
	for (int i = 0; i < n; i++) {
		ASSERT_EQ(calls.pfn[i], base + want[i][0]);
		ASSERT_EQ(calls.nr[i], want[i][1]);
	}
	calls.n = 0;
}

TEST(arch_hooks_see_each_folio_clipped_to_the_range_as_one_run)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 6 * MiB, H2M);
	struct gmem_vm *vm = (struct gmem_vm *)obj_peek(e.vm);
	static const uint64_t shared[][2] = {
		{ 100, 412 }, { 512, 512 }, { 1024, 76 },
	};
	static const uint64_t punched[][2] = {
		{ 300, 10 }, { 320, 192 }, { 512, 512 }, { 1024, 1 },
	};
	uint64_t base;

	ASSERT_GE(fd, 0);
	vm->arch = &recording;
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, 6 * MiB), 0);
	base = frame_of(fd, 0);
	calls.n = 0;
	/* Across three huge folios: the tail of one, one whole, the head of one. */
	ASSERT_EQ(convert(fd, 100 * PG, 1000 * PG, 0), 0);
	assert_calls(base, shared, 3);
	ASSERT_EQ(order_at(fd, 0), 0);
	ASSERT_EQ(order_at(fd, 2 * MiB), 9);
	ASSERT_EQ(order_at(fd, 4 * MiB), 0);
	/* Punch: 4 KiB pieces of a split folio (around a hole), a whole folio. */
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 310 * PG, 10 * PG), 0);
	calls.n = 0;
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 300 * PG, 725 * PG), 0);
	assert_calls(base, punched, 4);
	ASSERT_EQ(gmem_folio_info(fd, 2 * MiB, NULL, NULL, NULL), 0);
	ASSERT_EQ(in_use(&e), 3 * 512 - 725);	/* 10 of the 725 were holes already */
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

/* ------------------------------------------- racing first allocations */

struct first {
	struct env *e;
	pthread_barrier_t *go;
	unsigned int seed;
	atomic_int *errors;
};

static void *first_faulter(void *arg)
{
	struct first *f = arg;
	uint64_t s = f->seed;

	pthread_barrier_wait(f->go);
	for (int i = 0; i < 4096; i++) {
		uint64_t page;

		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		page = (s >> 33) % (32 * 512);
		if (gmem_vm_fault(f->e->vm, GPA + page * PG, PRIVATE_W, NULL, NULL))
			atomic_fetch_add(f->errors, 1);
	}
	return NULL;
}

TEST(racing_first_faults_allocate_each_huge_folio_once)
{
	struct env e = env_new("pkvm");
	int fd = bound_file(&e, 64 * MiB, H2M);
	pthread_barrier_t go;
	atomic_int errors = 0;
	struct first args[2] = {
		{ &e, &go, 1, &errors }, { &e, &go, 2, &errors },
	};
	pthread_t t[2];

	pthread_barrier_init(&go, NULL, 2);
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(pthread_create(&t[i], NULL, first_faulter, &args[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&go);
	ASSERT_EQ(atomic_load(&errors), 0);
	ASSERT_EQ(in_use(&e), 32 * 512);
	for (uint64_t b = 0; b < 32; b++) {
		ASSERT_EQ(order_at(fd, b * 2 * MiB + 77 * PG), 9);
		ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + b * 2 * MiB), 1);
	}
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(in_use(&e), 0);
	env_free(&e);
}
