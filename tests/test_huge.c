// SPDX-License-Identifier: MIT
/*
 * Huge folios: 2 MiB and 1 GiB files, split on conversion inside a folio,
 * merge back, huge stage-2 entries, punch, pins, a huge folio refilled, and
 * the pool's accounting (no frame counted twice).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "huge_helpers.h"

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
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA + PG, 2 * MiB, fd, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA, 2 * MiB, fd, PG), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA, MiB, fd, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_translate(e.vm, GPA, NULL, NULL, NULL), -EFAULT);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA, 2 * MiB, fd, 2 * MiB), 0);
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
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA, 2 * MiB, fd, 0), 0);
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

/*
 * A pin outside the converted range fails no conversion, in either
 * direction: the folio splits around it (the pinned page stays, pinned, as a
 * 4 KiB folio), and a merge it stands in the way of waits. Once unpinned, a
 * conversion of the block to the state it is already in merges it.
 */
static void pin_outside_the_range(uint64_t size, uint64_t flags, int order)
{
	struct env e = check_env("sw");
	int fd = bound_file(&e, size, flags | GMEM_FLAG_INIT_SHARED);
	uint64_t eo = 0x1234, attr = 1;
	uint32_t pins = 0;

	ASSERT_EQ(gmem_pin(fd, 9 * PG, PG), 0);
	ASSERT_EQ(order_at(fd, 0), order);
	/* To private elsewhere in the pinned folio: it splits. */
	ASSERT_EQ(gmem_set_attributes(fd, 5 * PG, PG, PRIV, 0, &eo), 0);
	ASSERT_EQ(eo, 0x1234);
	ASSERT_EQ(gmem_get_attributes(fd, 5 * PG, &attr, NULL), 0);
	ASSERT_EQ(attr, PRIV);
	ASSERT_EQ(order_at(fd, 0), 0);
	ASSERT_EQ(gmem_folio_info(fd, 9 * PG, NULL, NULL, &pins), 1);
	ASSERT_EQ(pins, 1);
	guest_write(&e, 5, GMEM_FAULT_PRIVATE);
	/* To shared: never refused for a reference; the pin keeps it split. */
	ASSERT_EQ(gmem_set_attributes(fd, 5 * PG, PG, 0, 0, &eo), 0);
	ASSERT_EQ(eo, 0x1234);
	ASSERT_EQ(gmem_get_attributes(fd, 0, &attr, NULL), 0);
	ASSERT_EQ(attr, 0);
	ASSERT_EQ(order_at(fd, 0), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 7 * PG, SHARED_W, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 7 * PG), 0);
	ASSERT_EQ(in_use(&e), size / PG);
	/* Unpinned: converting to the current state merges it. */
	ASSERT_EQ(gmem_unpin(fd, 9 * PG, PG), 0);
	ASSERT_EQ(order_at(fd, 0), 0);
	ASSERT_EQ(convert(fd, 0, PG, 0), 0);
	ASSERT_EQ(order_at(fd, 0), order);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 7 * PG), -ENOENT);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 7 * PG, SHARED_W, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 7 * PG), order == 9 ? 1 : 2);
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(a_pin_outside_the_range_fails_no_conversion_of_its_2m_folio)
{
	pin_outside_the_range(2 * MiB, H2M, 9);
}

TEST(a_pin_outside_the_range_fails_no_conversion_of_its_1g_folio)
{
	pin_outside_the_range(GiB, H1G, 18);
}

/*
 * What the kernel refuses: a referenced page inside a to-private range,
 * -EAGAIN at that page (inside the range, in both forms of the call), and
 * nothing changed. The same conversion without the pinned page succeeds and
 * leaves the block split.
 */
TEST(a_pin_inside_a_to_private_range_fails_it_at_that_page_in_a_1g_folio)
{
	struct env e = check_env("sw");
	int fd = bound_file(&e, GiB, H1G | GMEM_FLAG_INIT_SHARED);
	uint64_t eo = 0, attr = 1;

	ASSERT_EQ(gmem_pin(fd, 600 * PG, PG), 0);
	ASSERT_EQ(gmem_set_attributes(fd, 512 * PG, 512 * PG, PRIV, 0, &eo), -EAGAIN);
	ASSERT_EQ(eo, 600 * PG);
	ASSERT_EQ(gmem_vm_set_attributes(e.vm, GPA + 512 * PG, 512 * PG, PRIV, 0,
					 &eo), -EAGAIN);
	ASSERT_EQ(eo, GPA + 600 * PG);
	ASSERT_EQ(gmem_get_attributes(fd, 512 * PG, &attr, NULL), 0);
	ASSERT_EQ(attr, 0);
	ASSERT_EQ(order_at(fd, 0), 18);
	/* [601, 1024): the pin is outside it now. */
	ASSERT_EQ(gmem_set_attributes(fd, 601 * PG, 423 * PG, PRIV, 0, &eo), 0);
	ASSERT_EQ(order_at(fd, 0), 0);
	ASSERT_EQ(order_at(fd, 600 * PG), 0);
	ASSERT_EQ(gmem_get_attributes(fd, 601 * PG, &attr, NULL), 0);
	ASSERT_EQ(attr, PRIV);
	ASSERT_EQ(gmem_unpin(fd, 600 * PG, PG), 0);
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

/* Fault the file's first folio in whole (private), then punch page @page out. */
static void fault_folio_punch_page(struct env *e, int fd, uint64_t page)
{
	ASSERT_EQ(gmem_vm_fault(e->vm, GPA, PRIVATE_W, NULL, NULL), 0);
	ASSERT_EQ(order_at(fd, 0), 9);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 page * PG, PG), 0);
}

/*
 * Faults refill a split block's holes one 4 KiB folio at a time; the block
 * merges at the next conversion that touches it, even one to the state its
 * pages are in already.
 */
TEST(a_refilled_block_merges_at_a_conversion_to_its_current_state)
{
	struct env e = check_env("sw");
	int fd = bound_file(&e, 2 * MiB, H2M);

	fault_folio_punch_page(&e, fd, 3);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 3 * PG, PRIVATE_W, NULL, NULL), 0);
	ASSERT_EQ(in_use(&e), 512);
	ASSERT_EQ(order_at(fd, 0), 0);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 3 * PG), 0);
	ASSERT_EQ(convert(fd, 3 * PG, PG, PRIV), 0);
	ASSERT_EQ(order_at(fd, 0), 9);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 3 * PG), -ENOENT);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 3 * PG, PRIVATE_W, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 3 * PG), 1);
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(a_folio_emptied_page_by_page_maps_huge_again_once_refilled)
{
	struct env e = check_env("sw");
	int fd = bound_file(&e, 2 * MiB, H2M);

	fault_folio_punch_page(&e, fd, 0);
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
		ASSERT_EQ(gmem_vm_close(vm), 0);
		ASSERT_EQ(gmem_pool_close(pool), 0);
	}
	env_free(&e);
}

/*
 * snp maps a private 1 GiB folio with 2 MiB entries (its RMP entries are
 * 2 MiB at most). A 4 KiB conversion anywhere in the folio splits it, and
 * every one of those entries must go with it, not only the one under the
 * converted page: none of them maps a whole folio any more.
 */
TEST(snp_split_of_a_1g_folio_zaps_every_2m_entry_it_had)
{
	struct env e = check_env("snp");
	int fd = bound_file(&e, GiB, H1G);

	guest_write(&e, 0, GMEM_FAULT_PRIVATE);
	guest_write(&e, 3 * 512, GMEM_FAULT_PRIVATE);
	guest_write(&e, 100 * 512 + 7, GMEM_FAULT_PRIVATE);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 3 * 512 * PG), 1);
	ASSERT_EQ(convert(fd, 200 * 512 * PG + 5 * PG, PG, 0), 0);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 3 * 512 * PG), -ENOENT);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 100 * 512 * PG), -ENOENT);
	guest_expect(&e, 3 * 512, GMEM_FAULT_PRIVATE);
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

/* The same for a punch, which splits the folio to free one page of it. */
TEST(snp_punch_in_a_1g_folio_zaps_every_2m_entry_it_had)
{
	struct env e = check_env("snp");
	int fd = bound_file(&e, GiB, H1G);

	guest_write(&e, 0, GMEM_FAULT_PRIVATE);
	guest_write(&e, 3 * 512, GMEM_FAULT_PRIVATE);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 3 * 512 * PG), 1);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 200 * 512 * PG + 5 * PG, PG), 0);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 3 * 512 * PG), -ENOENT);
	guest_expect(&e, 3 * 512, GMEM_FAULT_PRIVATE);
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}
