// SPDX-License-Identifier: MIT
/*
 * Huge folios and the arch: SNP's 2 MiB RMP entries smashed and kept smashed,
 * populated content, the legacy contract, check mode on a huge mapping, and
 * the folio runs each hook sees (white box: a recording arch).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "huge_helpers.h"
#include "arch.h"	/* white box: a recording arch */
#include "handle.h"
#include "vm.h"

TEST(snp_rmp_2m_entries_are_smashed_on_split_and_stay_smashed_after_merge)
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

	/*
	 * Back to private: merged, and the next fault assigns that page as a
	 * 4 KiB entry, as sev_gmem_prepare does (a 2 MiB entry only over a
	 * chunk no frame of which is assigned): the RMP has no un-smash, so
	 * the folio maps at 4 KiB.
	 */
	ASSERT_EQ(convert(fd, 2 * MiB + 9 * PG, PG, PRIV), 0);
	ASSERT_EQ(order_at(fd, 2 * MiB), 9);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 2 * MiB + 10 * PG, PRIVATE_W, NULL,
				NULL), 0);
	ASSERT_TRUE(frame_is(e.pool, base + 9, "4K"));
	ASSERT_TRUE(frame_is(e.pool, base + 10, "4K"));
	ASSERT_TRUE(frame_is(e.pool, base + 9, "gfn"));
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 2 * MiB + 10 * PG), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 2 * MiB + 9 * PG, PRIVATE_W, NULL,
				NULL), 0);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 2 * MiB + 9 * PG), 0);

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
	/*
	 * A private folio mapped whole is fenced whole, with no guard to
	 * remove: one page of it shared puts guards on the rest.
	 */
	ASSERT_EQ(gmem_set_attributes(fd, 600 * PG, PG, 0, 0, NULL), 0);
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

TEST(populated_pages_of_a_huge_folio_keep_their_content_and_their_4k_entries)
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
	/*
	 * The first fault takes the rest over; content stays. Part of the chunk
	 * is assigned already, so, as sev_gmem_prepare, the rest gets 4 KiB
	 * entries too and the folio maps at 4 KiB.
	 */
	ASSERT_EQ(gmem_vm_access(e.vm, GPA + 10 * PG, buf, sizeof(buf),
				 GMEM_FAULT_PRIVATE, &ex), 0);
	ASSERT_EQ(memcmp(buf, image, sizeof(image)), 0);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + 10 * PG), 0);
	ASSERT_TRUE(frame_is(e.pool, frame_of(fd, 10 * PG), "4K"));
	ASSERT_TRUE(frame_is(e.pool, frame_of(fd, 0), "4K"));
	ASSERT_TRUE(frame_is(e.pool, frame_of(fd, 0), "assigned"));
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
