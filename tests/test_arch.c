// SPDX-License-Identifier: MIT
/* Arch backends: what sw, snp, tdx and pkvm do to frames and content under the split contract. */
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

#include "arch_helpers.h"

/* ------------------------------------------------ content-keeping archs */

/* sw and pkvm: private data survives both conversions, in the same frame. */
static void conversion_keeps_frame_and_content(const char *arch)
{
	struct env e = env_new(arch);
	int fd = bound_file(e.vm, 4 * PG, 0);
	static uint8_t data[PG], again[PG], buf[PG];
	uint64_t pfn;

	fill(data, PG, 7);
	guest_write(e.vm, GPA + PG, data, PG);
	pfn = frame_of(fd, PG);

	ASSERT_EQ(convert(fd, PG, PG, 0), 0);
	ASSERT_EQ(frame_of(fd, PG), pfn);
	guest_read(e.vm, GPA + PG, buf, PG, SHARED_R);
	ASSERT_EQ(memcmp(buf, data, PG), 0);
	ASSERT_EQ(memcmp(gmem_pool_frame(e.pool, pfn), data, PG), 0);

	/* What the guest writes while shared comes back private too. */
	fill(again, PG, 99);
	ASSERT_EQ(gmem_vm_access(e.vm, GPA + PG, again, PG, SHARED_W, NULL), 0);
	ASSERT_EQ(convert(fd, PG, PG, PRIV), 0);
	ASSERT_EQ(frame_of(fd, PG), pfn);
	guest_read(e.vm, GPA + PG, buf, PG, PRIVATE_R);
	ASSERT_EQ(memcmp(buf, again, PG), 0);
	ASSERT_EQ(memcmp(frame_bytes(e.pool, pfn), again, PG), 0);

	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(sw_conversion_keeps_frame_and_every_byte_both_ways)
{
	conversion_keeps_frame_and_content("sw");
}

TEST(pkvm_conversion_keeps_frame_and_every_byte_both_ways)
{
	conversion_keeps_frame_and_content("pkvm");
}

TEST(sw_frames_have_no_hardware_state)
{
	struct env e = env_new("sw");
	int fd = bound_file(e.vm, 2 * PG, 0);
	uint64_t pfn;

	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, PRIVATE_W, &pfn, NULL), 0);
	assert_state(e.pool, pfn, "no hardware state");
	ASSERT_EQ(convert(fd, 0, PG, 0), 0);
	assert_state(e.pool, pfn, "no hardware state");
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

/* -------------------------------------------------------------------- snp */

TEST(snp_private_fault_assigns_the_rmp_entry_to_the_guest_at_its_gfn)
{
	struct env e = env_new("snp");
	int fd = bound_file(e.vm, 4 * PG, 0);
	uint64_t pfn, fpfn;
	char want[64];

	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 2 * PG, PG), 0);
	fpfn = frame_of(fd, 2 * PG);
	assert_state(e.pool, fpfn, "rmp hypervisor");

	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 2 * PG, PRIVATE_W, &pfn, NULL), 0);
	ASSERT_EQ(pfn, fpfn);
	snprintf(want, sizeof(want), "rmp assigned asid=1 gfn=%#llx 4K",
		 (unsigned long long)(GFN + 2));
	assert_state(e.pool, pfn, want);
	assert_state(e.pool, pfn, "validated");
	/* Only the faulted page. */
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 3 * PG, PRIVATE_W, &pfn, NULL), 0);
	snprintf(want, sizeof(want), "gfn=%#llx ", (unsigned long long)(GFN + 3));
	assert_state(e.pool, pfn, want);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(snp_shared_fault_leaves_the_frame_with_the_hypervisor)
{
	struct env e = env_new("snp");
	int fd = bound_file(e.vm, 2 * PG, GMEM_FLAG_INIT_SHARED);
	uint64_t pfn;

	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, SHARED_W, &pfn, NULL), 0);
	assert_state(e.pool, pfn, "rmp hypervisor");
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(snp_private_to_shared_returns_the_frame_to_the_hypervisor_content_lost)
{
	struct env e = env_new("snp");
	int fd = bound_file(e.vm, 4 * PG, 0);
	static uint8_t data[PG], buf[PG];
	uint64_t pfn;

	fill(data, PG, 3);
	guest_write(e.vm, GPA + PG, data, PG);
	pfn = frame_of(fd, PG);
	assert_state(e.pool, pfn, "rmp assigned asid=1");

	ASSERT_EQ(convert(fd, PG, PG, 0), 0);
	ASSERT_EQ(frame_of(fd, PG), pfn);
	assert_state(e.pool, pfn, "rmp hypervisor");
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, pfn), PG));
	guest_read(e.vm, GPA + PG, buf, PG, SHARED_R);
	ASSERT_TRUE(is_zero(buf, PG));
	/* The shared fault does not assign it again. */
	assert_state(e.pool, pfn, "rmp hypervisor");

	/* Back to private: a new assignment, still nothing of the old data. */
	ASSERT_EQ(convert(fd, PG, PG, PRIV), 0);
	guest_read(e.vm, GPA + PG, buf, PG, PRIVATE_R);
	ASSERT_TRUE(is_zero(buf, PG));
	assert_state(e.pool, pfn, "rmp assigned asid=1");
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(snp_punching_a_private_page_leaves_its_frame_hypervisor_owned)
{
	struct env e = env_new("snp");
	int fd = bound_file(e.vm, 4 * PG, 0);
	static uint8_t data[PG], buf[PG];
	uint64_t pfn;

	fill(data, PG, 5);
	guest_write(e.vm, GPA, data, PG);
	pfn = frame_of(fd, 0);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 0, PG), 0);
	ASSERT_EQ(gmem_folio_info(fd, 0, NULL, NULL, NULL), 0);
	assert_state(e.pool, pfn, "rmp hypervisor");
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, pfn), PG));
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA, NULL, NULL), 0);
	/* The next private access sees a fresh zero page. */
	guest_read(e.vm, GPA, buf, PG, PRIVATE_R);
	ASSERT_TRUE(is_zero(buf, PG));
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(snp_a_second_make_private_of_an_assigned_page_is_harmless)
{
	struct env e = env_new("snp");
	int fd = bound_file(e.vm, 2 * PG, 0);
	static uint8_t data[PG], buf[PG];
	uint64_t pfn, again;
	char want[64];

	fill(data, PG, 11);
	guest_write(e.vm, GPA, data, PG);
	pfn = frame_of(fd, 0);
	for (int i = 0; i < 3; i++) {
		ASSERT_EQ(gmem_vm_fault(e.vm, GPA, PRIVATE_R, &again, NULL), 0);
		ASSERT_EQ(again, pfn);
	}
	/* Converting an already private page is a no-op too. */
	ASSERT_EQ(convert(fd, 0, PG, PRIV), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, PRIVATE_W, &again, NULL), 0);
	snprintf(want, sizeof(want), "rmp assigned asid=1 gfn=%#llx 4K validated",
		 (unsigned long long)GFN);
	assert_state(e.pool, pfn, want);
	guest_read(e.vm, GPA, buf, PG, PRIVATE_R);
	ASSERT_EQ(memcmp(buf, data, PG), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(snp_closing_a_file_returns_every_private_frame_to_the_hypervisor)
{
	struct env e = env_new("snp");
	int fd = bound_file(e.vm, 4 * PG, 0);
	uint64_t pfn[4];

	for (int i = 0; i < 4; i++) {
		ASSERT_EQ(gmem_vm_fault(e.vm, GPA + i * PG, PRIVATE_W, &pfn[i], NULL), 0);
		assert_state(e.pool, pfn[i], "rmp assigned");
	}
	ASSERT_EQ(gmem_close(fd), 0);
	for (int i = 0; i < 4; i++)
		assert_state(e.pool, pfn[i], "rmp hypervisor");
	env_free(&e);
}

/* -------------------------------------------------------------------- tdx */

TEST(tdx_private_fault_adds_the_frame_to_the_td)
{
	struct env e = env_new("tdx");
	int fd = bound_file(e.vm, 4 * PG, 0);
	uint64_t pfn;

	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, 4 * PG), 0);
	assert_state(e.pool, frame_of(fd, PG), "tdx host");
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + PG, PRIVATE_R, &pfn, NULL), 0);
	ASSERT_EQ(pfn, frame_of(fd, PG));
	assert_state(e.pool, pfn, "tdx td=1");
	assert_state(e.pool, frame_of(fd, 2 * PG), "tdx host");
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(tdx_private_to_shared_removes_the_frame_from_the_td_content_lost)
{
	struct env e = env_new("tdx");
	int fd = bound_file(e.vm, 4 * PG, 0);
	static uint8_t data[PG], buf[PG];
	uint64_t pfn;

	fill(data, PG, 17);
	guest_write(e.vm, GPA + 2 * PG, data, PG);
	pfn = frame_of(fd, 2 * PG);
	assert_state(e.pool, pfn, "tdx td=1");
	ASSERT_EQ(memcmp(frame_bytes(e.pool, pfn), data, PG), 0);

	ASSERT_EQ(convert(fd, 2 * PG, PG, 0), 0);
	ASSERT_EQ(frame_of(fd, 2 * PG), pfn);
	assert_state(e.pool, pfn, "tdx host");
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, pfn), PG));
	guest_read(e.vm, GPA + 2 * PG, buf, PG, SHARED_R);
	ASSERT_TRUE(is_zero(buf, PG));
	assert_state(e.pool, pfn, "tdx host");
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

/* Whether the pool holds memory for frame @pfn (its page cache, not a hole). */
static bool frame_resident(int pool, uint64_t pfn)
{
	unsigned char vec = 0;

	ASSERT_EQ(mincore(gmem_pool_frame(pool, pfn), PG, &vec), 0);
	return vec & 1;
}

/*
 * Destructive conversion clears a written page where it is, as the hardware
 * does: the frame reads zero and keeps its memory; a page never written
 * stays a hole, since clearing it would allocate it.
 */
static void destructive_conversion_clears_in_place(const char *arch)
{
	struct env e = env_new(arch);
	int fd = bound_file(e.vm, 4 * PG, 0);
	static uint8_t data[PG];
	uint64_t pfn, untouched;
	bool was_resident;

	fill(data, PG, 31);
	guest_write(e.vm, GPA, data, PG);
	pfn = frame_of(fd, 0);
	/* A private page the guest maps but never writes. */
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + PG, PRIVATE_R, &untouched, NULL), 0);
	ASSERT_TRUE(frame_resident(e.pool, pfn));
	was_resident = frame_resident(e.pool, untouched);

	ASSERT_EQ(convert(fd, 0, 2 * PG, 0), 0);
	ASSERT_EQ(frame_of(fd, 0), pfn);
	/* Before anything reads them: a read of a hole would allocate it. */
	ASSERT_TRUE(frame_resident(e.pool, pfn));
	ASSERT_EQ(frame_resident(e.pool, untouched), was_resident);
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, pfn), PG));
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, untouched), PG));
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(tdx_destructive_conversion_clears_in_place_and_keeps_the_memory)
{
	destructive_conversion_clears_in_place("tdx");
}

TEST(snp_destructive_conversion_clears_in_place_and_keeps_the_memory)
{
	destructive_conversion_clears_in_place("snp");
}

TEST(tdx_reconverted_page_is_accepted_zeroed_even_after_host_writes)
{
	struct env e = env_new("tdx");
	int fd = bound_file(e.vm, 4 * PG, GMEM_FLAG_MMAP);
	static uint8_t data[PG], buf[PG];
	void *addr;
	uint64_t pfn;

	fill(data, PG, 23);
	guest_write(e.vm, GPA + PG, data, PG);
	pfn = frame_of(fd, PG);
	ASSERT_EQ(convert(fd, PG, PG, 0), 0);

	/* The host fills the shared page through its mapping. */
	ASSERT_EQ(gmem_mmap(fd, 0, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED,
			    &addr), 0);
	memset((uint8_t *)addr + PG, 0x5a, PG);
	ASSERT_EQ(((uint8_t *)gmem_pool_frame(e.pool, pfn))[100], 0x5a);

	ASSERT_EQ(convert(fd, PG, PG, PRIV), 0);
	guest_read(e.vm, GPA + PG, buf, PG, PRIVATE_R);
	ASSERT_TRUE(is_zero(buf, PG));
	ASSERT_TRUE(is_zero(frame_bytes(e.pool, pfn), PG));
	ASSERT_EQ(frame_of(fd, PG), pfn);
	assert_state(e.pool, pfn, "tdx td=1");
	ASSERT_EQ(gmem_munmap(addr, 4 * PG), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(tdx_reconverted_page_is_zeroed_after_guest_shared_writes)
{
	struct env e = env_new("tdx");
	int fd = bound_file(e.vm, 2 * PG, 0);
	static uint8_t data[PG], buf[PG];

	guest_write(e.vm, GPA, memset(data, 0x11, PG), PG);
	ASSERT_EQ(convert(fd, 0, PG, 0), 0);
	fill(data, PG, 29);
	ASSERT_EQ(gmem_vm_access(e.vm, GPA, data, PG, SHARED_W, NULL), 0);
	ASSERT_EQ(convert(fd, 0, PG, PRIV), 0);
	guest_read(e.vm, GPA, buf, PG, PRIVATE_R);
	ASSERT_TRUE(is_zero(buf, PG));
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(tdx_unbinding_a_slot_removes_only_its_private_frames_from_the_td)
{
	struct env e = env_new("tdx");
	int fd = gmem_create(e.vm, 8 * PG, 0);
	static uint8_t a[PG], b[PG];
	uint64_t gpa2 = GPA + 64 * MiB, pa, pb;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA, 4 * PG, fd, 0), 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, gpa2, 4 * PG, fd, 4 * PG), 0);
	fill(a, PG, 31);
	fill(b, PG, 37);
	guest_write(e.vm, GPA + PG, a, PG);
	guest_write(e.vm, gpa2 + PG, b, PG);
	pa = frame_of(fd, PG);
	pb = frame_of(fd, 5 * PG);
	assert_state(e.pool, pa, "tdx td=1");
	assert_state(e.pool, pb, "tdx td=1");

	ASSERT_EQ(gmem_vm_unbind(e.vm, 0), 0);
	assert_state(e.pool, pa, "tdx host");
	ASSERT_TRUE(is_zero(frame_bytes(e.pool, pa), PG));
	/* The folio stays in the file; only the TD lost it. */
	ASSERT_EQ(frame_of(fd, PG), pa);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + PG, PRIVATE_R, NULL, NULL), -EFAULT);
	/* The other slot is untouched. */
	assert_state(e.pool, pb, "tdx td=1");
	ASSERT_EQ(memcmp(frame_bytes(e.pool, pb), b, PG), 0);

	/* Bound again, the page is accepted afresh: zero. */
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA, 4 * PG, fd, 0), 0);
	guest_read(e.vm, GPA + PG, a, PG, PRIVATE_R);
	ASSERT_TRUE(is_zero(a, PG));
	assert_state(e.pool, pa, "tdx td=1");
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(tdx_punch_leaves_frames_out_of_every_td)
{
	struct env e = env_new("tdx");
	int fd = bound_file(e.vm, 4 * PG, 0);
	static uint8_t data[2 * PG];
	uint64_t p0, p1;

	fill(data, sizeof(data), 41);
	guest_write(e.vm, GPA, data, sizeof(data));
	p0 = frame_of(fd, 0);
	p1 = frame_of(fd, PG);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 0, 2 * PG), 0);
	assert_state(e.pool, p0, "tdx host");
	assert_state(e.pool, p1, "tdx host");
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, p0), PG));
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, p1), PG));
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

/* ------------------------------------------------------------------- pkvm */

TEST(pkvm_ownership_follows_private_fault_and_both_conversions)
{
	struct env e = env_new("pkvm");
	int fd = bound_file(e.vm, 4 * PG, 0);
	uint64_t pfn;

	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, PG), 0);
	assert_state(e.pool, frame_of(fd, 0), "pkvm host");
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, PRIVATE_W, &pfn, NULL), 0);
	assert_state(e.pool, pfn, "pkvm guest vm=1");
	ASSERT_EQ(convert(fd, 0, PG, 0), 0);
	assert_state(e.pool, pfn, "pkvm shared vm=1");
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, SHARED_W, NULL, NULL), 0);
	assert_state(e.pool, pfn, "pkvm shared vm=1");
	ASSERT_EQ(convert(fd, 0, PG, PRIV), 0);
	assert_state(e.pool, pfn, "pkvm guest vm=1");
	ASSERT_EQ(frame_of(fd, 0), pfn);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(pkvm_punch_and_close_scrub_frames_and_return_them_to_the_host)
{
	struct env e = env_new("pkvm");
	int fd = bound_file(e.vm, 4 * PG, 0);
	static uint8_t data[3 * PG];
	uint64_t p0, p1, p2;

	fill(data, sizeof(data), 43);
	guest_write(e.vm, GPA, data, sizeof(data));
	p0 = frame_of(fd, 0);
	p1 = frame_of(fd, PG);
	p2 = frame_of(fd, 2 * PG);
	ASSERT_EQ(convert(fd, PG, PG, 0), 0);	/* p1 guest-owned, shared */
	assert_state(e.pool, p1, "pkvm shared vm=1");

	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 0, 2 * PG), 0);
	assert_state(e.pool, p0, "pkvm host");
	assert_state(e.pool, p1, "pkvm host");
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, p0), PG));
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, p1), PG));
	assert_state(e.pool, p2, "pkvm guest vm=1");

	ASSERT_EQ(gmem_close(fd), 0);
	assert_state(e.pool, p2, "pkvm host");
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, p2), PG));
	env_free(&e);
}
