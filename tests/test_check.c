// SPDX-License-Identifier: MIT
/* Check mode (GMEM_VM_CHECK): clean workloads stay clean, the legacy contract's breakage is reported. */
#include <pthread.h>
#include <stdatomic.h>

#include "arch_helpers.h"

/* A handle number no test ever reaches. */
#define NEVER_OPEN	9999

/* Where the workload binds its file: slot 0 for pages 0-11, slot 1 for 12-15. */
#define GPA2		(256 * MiB)
#define PAGES		16

#define PUNCH		(GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE)

static void guest(int vm, uint64_t gpa, void *buf, size_t len,
		   unsigned int flags)
{
	struct gmem_exit exit;

	ASSERT_EQ(gmem_vm_access(vm, gpa, buf, len, flags, &exit), 0);
}

/* A 16 GiB pool and a check-mode VM of @arch. */
static void checked_vm(const char *arch, uint64_t flags, int *pool, int *vm)
{
	*pool = gmem_pool_create(16 * GiB);
	ASSERT_GE(*pool, 0);
	*vm = gmem_vm_create(*pool, arch, GMEM_VM_CHECK | flags);
	ASSERT_GE(*vm, 0);
}

static void free_vm(int pool, int vm)
{
	ASSERT_EQ(gmem_vm_close(vm), 0);
	ASSERT_EQ(gmem_pool_close(pool), 0);
}

static void print_violations(const char *what, int vm)
{
	static struct gmem_violation v[16];
	int64_t n = gmem_vm_violations(vm, v, 16);

	for (int64_t i = 0; i < n && i < 16; i++)
		printf("#   %s: %s: invariant %d offset %#llx pfn %#llx: %s\n",
		       what, v[i].op, v[i].invariant,
		       (unsigned long long)v[i].offset,
		       (unsigned long long)v[i].pfn, v[i].rule);
	if (n > 16)
		printf("#   %s: ... %lld in all\n", what, (long long)n);
}

/*
 * Every operation once or more on a check-mode VM: bind, private and shared
 * faults, conversions both ways (including of pages holding data), a
 * conversion refused by a pin, pin and unpin, host writes through a mapping,
 * populate from a buffer and in place, allocate, punch, unbind, close, and a
 * new file on the frames the first one gave back. Returns the first file's
 * first frame in *@base.
 */
static void workload(int vm, uint64_t *base)
{
	static uint8_t data[4 * PG], buf[PG], image[PG];
	uint64_t eo = 0;
	uint8_t *map;
	void *addr;
	int fd;

	fd = gmem_create(vm, PAGES * PG, GMEM_FLAG_MMAP);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(vm, 0, GPA, 12 * PG, fd, 0), 0);
	ASSERT_EQ(gmem_vm_bind(vm, 1, GPA2, 4 * PG, fd, 12 * PG), 0);
	ASSERT_EQ(gmem_mmap(fd, 0, PAGES * PG, PROT_READ | PROT_WRITE,
			    MAP_SHARED, &addr), 0);
	map = addr;

	/* Private data in pages 0-3; populate page 8 from a buffer. */
	fill(data, sizeof(data), 1);
	guest(vm, GPA, data, sizeof(data), PRIVATE_W);
	*base = frame_of(fd, 0);
	fill(image, PG, 2);
	ASSERT_EQ(gmem_vm_populate(vm, GPA + 8 * PG, image, PG, 0), 1);

	/* Page 9 in place: host writes it shared, then it goes private. */
	ASSERT_EQ(convert(fd, 9 * PG, PG, 0), 0);
	memset(map + 9 * PG, 0x99, PG);
	ASSERT_EQ(convert(fd, 9 * PG, PG, PRIV), 0);
	ASSERT_EQ(gmem_vm_populate(vm, GPA + 9 * PG, NULL, PG, 0), 1);
	guest(vm, GPA + 9 * PG, buf, PG, PRIVATE_R);
	ASSERT_EQ(buf[17], 0x99);

	/* Pages 4-6 shared: guest and host write them. */
	ASSERT_EQ(convert(fd, 4 * PG, 3 * PG, 0), 0);
	guest(vm, GPA + 4 * PG, memset(buf, 0x44, PG), PG, SHARED_W);
	memset(map + 5 * PG, 0x55, PG);
	memset(map + 6 * PG, 0x66, PG);
	ASSERT_EQ(map[4 * PG], 0x44);

	/* A pin blocks conversion of page 4; nothing changes. */
	ASSERT_EQ(gmem_pin(fd, 4 * PG, PG), 0);
	ASSERT_EQ(gmem_set_attributes(fd, 4 * PG, 2 * PG, PRIV, 0, &eo), -EAGAIN);
	ASSERT_EQ(eo, 4 * PG);
	ASSERT_EQ(map[5 * PG], 0x55);
	ASSERT_EQ(gmem_unpin(fd, 4 * PG, PG), 0);
	ASSERT_EQ(convert(fd, 4 * PG, 2 * PG, PRIV), 0);
	guest(vm, GPA + 4 * PG, buf, PG, PRIVATE_R);
	guest(vm, GPA + 5 * PG, buf, PG, PRIVATE_W);

	/* Private data back and forth: page 1 round trip, page 3 stays shared. */
	ASSERT_EQ(convert(fd, PG, PG, 0), 0);
	guest(vm, GPA + PG, buf, PG, SHARED_R);
	ASSERT_EQ(convert(fd, PG, PG, PRIV), 0);
	guest(vm, GPA + PG, buf, PG, PRIVATE_R);
	ASSERT_EQ(convert(fd, 3 * PG, PG, 0), 0);
	guest(vm, GPA + 3 * PG, buf, PG, SHARED_R);
	memset(map + 3 * PG, 0x33, PG);

	/* Allocate, then punch private (0, 2), shared (3, 6) and populated (8) pages. */
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 10 * PG, 2 * PG), 0);
	ASSERT_EQ(gmem_fallocate(fd, PUNCH, 0, PG), 0);
	ASSERT_EQ(gmem_fallocate(fd, PUNCH, 2 * PG, 2 * PG), 0);
	ASSERT_EQ(gmem_fallocate(fd, PUNCH, 6 * PG, PG), 0);
	ASSERT_EQ(gmem_fallocate(fd, PUNCH, 8 * PG, PG), 0);
	guest(vm, GPA, buf, PG, PRIVATE_R);
	ASSERT_TRUE(is_zero(buf, PG));

	/* Slot 1: private and shared use, then unbind it. */
	guest(vm, GPA2, data, PG, PRIVATE_W);
	ASSERT_EQ(convert(fd, 13 * PG, PG, 0), 0);
	guest(vm, GPA2 + PG, buf, PG, SHARED_W);
	ASSERT_EQ(gmem_vm_unbind(vm, 1), 0);
	ASSERT_EQ(convert(fd, 12 * PG, PG, 0), 0);
	ASSERT_EQ(convert(fd, 12 * PG, 2 * PG, PRIV), 0);

	ASSERT_EQ(gmem_munmap(addr, PAGES * PG), 0);
	ASSERT_EQ(gmem_close(fd), 0);

	/* A new file on the same frames: fresh zero pages, used again. */
	fd = gmem_create(vm, PAGES * PG, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(vm, 0, GPA, PAGES * PG, fd, 0), 0);
	guest(vm, GPA, buf, PG, PRIVATE_R);
	ASSERT_TRUE(is_zero(buf, PG));
	ASSERT_EQ(frame_of(fd, 0), *base);
	ASSERT_EQ(gmem_vm_populate(vm, GPA + PG, image, PG, 0), 1);
	guest(vm, GPA + 2 * PG, data, PG, PRIVATE_W);
	ASSERT_EQ(convert(fd, 2 * PG, PG, 0), 0);
	ASSERT_EQ(gmem_close(fd), 0);
}

static void split_workload_is_clean(const char *arch)
{
	uint64_t base;
	int pool, vm;

	checked_vm(arch, 0, &pool, &vm);
	workload(vm, &base);
	print_violations(arch, vm);
	ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), 0);
	free_vm(pool, vm);
}

TEST(check_split_contract_workload_has_no_violations_on_sw)
{
	split_workload_is_clean("sw");
}

TEST(check_split_contract_workload_has_no_violations_on_snp)
{
	split_workload_is_clean("snp");
}

TEST(check_split_contract_workload_has_no_violations_on_tdx)
{
	split_workload_is_clean("tdx");
}

TEST(check_split_contract_workload_has_no_violations_on_pkvm)
{
	split_workload_is_clean("pkvm");
}

static void legacy_workload_is_clean(const char *arch)
{
	uint64_t base;
	int pool, vm;

	checked_vm(arch, GMEM_VM_LEGACY_CONTRACT, &pool, &vm);
	workload(vm, &base);
	print_violations(arch, vm);
	ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), 0);
	free_vm(pool, vm);
}

TEST(check_legacy_contract_workload_has_no_violations_on_sw)
{
	legacy_workload_is_clean("sw");
}

TEST(check_legacy_contract_workload_has_no_violations_on_snp)
{
	legacy_workload_is_clean("snp");
}

TEST(check_legacy_contract_workload_has_no_violations_on_tdx)
{
	legacy_workload_is_clean("tdx");
}

TEST(check_legacy_contract_workload_on_pkvm_reports_conversions_that_lost_content)
{
	static struct gmem_violation v[64];
	int64_t n, lost = 0;
	uint64_t base;
	int pool, vm;

	checked_vm("pkvm", GMEM_VM_LEGACY_CONTRACT, &pool, &vm);
	workload(vm, &base);
	n = gmem_vm_violations(vm, v, 64);
	ASSERT_GT(n, 0);
	ASSERT_LE(n, 64);
	for (int64_t i = 0; i < n; i++) {
		if (v[i].invariant != 4 || strcmp(v[i].op, "gmem_set_attributes"))
			print_violations("pkvm legacy", vm);
		ASSERT_EQ(v[i].invariant, 4);
		ASSERT_EQ(strcmp(v[i].op, "gmem_set_attributes"), 0);
		ASSERT_TRUE(strstr(v[i].rule, "conversion lost the content"));
		ASSERT_EQ(v[i].offset % PG, 0);
		ASSERT_LT(v[i].offset, PAGES * PG);
		/* The frame named is the page's own. */
		ASSERT_EQ(v[i].pfn, base + v[i].offset / PG);
		lost += v[i].offset == PG || v[i].offset == 3 * PG;
	}
	/* Pages 1 and 3 held guest data when they went shared. */
	ASSERT_GE(lost, 2);
	free_vm(pool, vm);
}

/* ---------------------------------------------------- focused cases */

TEST(check_legacy_pkvm_reports_the_page_that_lost_its_content)
{
	static struct gmem_violation v[4];
	static uint8_t data[PG];
	uint64_t pfn;
	int pool, vm, fd;

	checked_vm("pkvm", GMEM_VM_LEGACY_CONTRACT, &pool, &vm);
	fd = gmem_create(vm, 8 * PG, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(vm, 0, GPA, 8 * PG, fd, 0), 0);
	fill(data, PG, 3);
	guest(vm, GPA + 5 * PG, data, PG, PRIVATE_W);
	pfn = frame_of(fd, 5 * PG);
	ASSERT_EQ(gmem_vm_violations(vm, v, 4), 0);
	ASSERT_EQ(convert(fd, 0, 8 * PG, 0), 0);
	ASSERT_EQ(gmem_vm_violations(vm, v, 4), 1);
	ASSERT_EQ(v[0].invariant, 4);
	ASSERT_EQ(strcmp(v[0].op, "gmem_set_attributes"), 0);
	ASSERT_EQ(v[0].offset, 5 * PG);
	ASSERT_EQ(v[0].pfn, pfn);
	ASSERT_GT(strlen(v[0].rule), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	free_vm(pool, vm);
}

TEST(check_split_pkvm_conversion_of_the_same_page_is_clean)
{
	static uint8_t data[PG], buf[PG];
	int pool, vm, fd;

	checked_vm("pkvm", 0, &pool, &vm);
	fd = gmem_create(vm, 8 * PG, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(vm, 0, GPA, 8 * PG, fd, 0), 0);
	fill(data, PG, 3);
	guest(vm, GPA + 5 * PG, data, PG, PRIVATE_W);
	ASSERT_EQ(convert(fd, 0, 8 * PG, 0), 0);
	guest(vm, GPA + 5 * PG, buf, PG, SHARED_R);
	ASSERT_EQ(memcmp(buf, data, PG), 0);
	ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	free_vm(pool, vm);
}

static void failed_conversion_records_nothing(const char *arch)
{
	uint64_t eo = 0, attr = 0;
	int pool, vm, fd;
	uint8_t *map;
	void *addr;

	checked_vm(arch, 0, &pool, &vm);
	fd = gmem_create(vm, 8 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(vm, 0, GPA, 8 * PG, fd, 0), 0);
	ASSERT_EQ(gmem_mmap(fd, 0, 8 * PG, PROT_READ | PROT_WRITE, MAP_SHARED,
			    &addr), 0);
	map = addr;
	memset(map, 0x77, 8 * PG);
	ASSERT_EQ(gmem_vm_fault(vm, GPA + 2 * PG, SHARED_W, NULL, NULL), 0);
	ASSERT_EQ(gmem_pin(fd, 6 * PG, PG), 0);
	ASSERT_EQ(gmem_set_attributes(fd, 0, 8 * PG, PRIV, 0, &eo), -EAGAIN);
	ASSERT_EQ(eo, 6 * PG);
	ASSERT_EQ(gmem_get_attributes(fd, 0, &attr, NULL), 0);
	ASSERT_EQ(attr, 0);
	ASSERT_EQ(map[0], 0x77);
	ASSERT_EQ(map[7 * PG + 5], 0x77);
	ASSERT_EQ(gmem_vm_stage2(vm, GPA + 2 * PG, NULL, NULL), 1);
	ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), 0);
	ASSERT_EQ(gmem_unpin(fd, 6 * PG, PG), 0);
	ASSERT_EQ(gmem_munmap(addr, 8 * PG), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), 0);
	free_vm(pool, vm);
}

TEST(check_failed_conversion_of_a_pinned_page_records_no_violation)
{
	static const char *const archs[] = { "sw", "snp", "tdx", "pkvm" };

	for (int a = 0; a < 4; a++)
		failed_conversion_records_nothing(archs[a]);
}

TEST(check_host_mapping_over_private_pages_is_clean)
{
	static const char *const archs[] = { "sw", "snp", "tdx", "pkvm" };

	for (int a = 0; a < 4; a++) {
		static uint8_t data[PG];
		uint8_t byte;
		int pool, vm, fd;
		void *addr;

		checked_vm(archs[a], 0, &pool, &vm);
		fd = gmem_create(vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
		ASSERT_GE(fd, 0);
		ASSERT_EQ(gmem_vm_bind(vm, 0, GPA, 4 * PG, fd, 0), 0);
		ASSERT_EQ(gmem_mmap(fd, 0, 4 * PG, PROT_READ | PROT_WRITE,
				    MAP_SHARED, &addr), 0);
		memset(addr, 0x12, 4 * PG);
		ASSERT_EQ(convert(fd, PG, 2 * PG, PRIV), 0);
		ASSERT_NE(probe_read((uint8_t *)addr + PG, &byte), 0);
		fill(data, PG, 8);
		guest(vm, GPA + PG, data, PG, PRIVATE_W);
		ASSERT_EQ(probe_read((uint8_t *)addr, &byte), 0);
		print_violations(archs[a], vm);
		ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), 0);
		ASSERT_EQ(gmem_munmap(addr, 4 * PG), 0);
		ASSERT_EQ(gmem_close(fd), 0);
		ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), 0);
		free_vm(pool, vm);
	}
}

/*
 * A frame that was private, went shared (snp, tdx: returned to the host and
 * cleared) and then received shared data holds nothing the host may not see:
 * freeing it is no leak, whoever wrote the data and however it is freed.
 */
static void shared_data_in_a_once_private_frame_is_no_leak(const char *arch,
							  bool host_writes,
							  bool close_it)
{
	static uint8_t data[PG];
	int pool, vm, fd;
	void *addr;

	checked_vm(arch, 0, &pool, &vm);
	fd = gmem_create(vm, 4 * PG, GMEM_FLAG_MMAP);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(vm, 0, GPA, 4 * PG, fd, 0), 0);
	fill(data, PG, 13);
	guest(vm, GPA, data, PG, PRIVATE_W);
	ASSERT_EQ(convert(fd, 0, PG, 0), 0);
	if (host_writes) {
		ASSERT_EQ(gmem_mmap(fd, 0, PG, PROT_READ | PROT_WRITE, MAP_SHARED,
				    &addr), 0);
		memset(addr, 0x33, PG);
		ASSERT_EQ(gmem_munmap(addr, PG), 0);
	} else {
		guest(vm, GPA, data, PG, SHARED_W);
	}
	if (!close_it)
		ASSERT_EQ(gmem_fallocate(fd, PUNCH, 0, PG), 0);
	print_violations(arch, vm);
	ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	print_violations(arch, vm);
	ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), 0);
	free_vm(pool, vm);
}

TEST(check_snp_freeing_shared_data_in_a_once_private_frame_is_no_leak)
{
	shared_data_in_a_once_private_frame_is_no_leak("snp", true, false);
	shared_data_in_a_once_private_frame_is_no_leak("snp", false, false);
	shared_data_in_a_once_private_frame_is_no_leak("snp", true, true);
}

TEST(check_tdx_freeing_shared_data_in_a_once_private_frame_is_no_leak)
{
	shared_data_in_a_once_private_frame_is_no_leak("tdx", true, false);
	shared_data_in_a_once_private_frame_is_no_leak("tdx", false, false);
	shared_data_in_a_once_private_frame_is_no_leak("tdx", true, true);
}

TEST(check_pkvm_freeing_shared_data_in_a_once_private_frame_is_no_leak)
{
	shared_data_in_a_once_private_frame_is_no_leak("pkvm", true, false);
	shared_data_in_a_once_private_frame_is_no_leak("pkvm", false, true);
}

/*
 * Slots are deleted and created, never moved; a file range may be bound
 * again at another gpa. The guest's private fault there must leave the arch
 * rule intact (snp: the RMP entry names this gfn).
 */
static void rebinding_at_another_gpa_keeps_the_arch_rule(const char *arch)
{
	static uint8_t data[PG], buf[PG];
	int pool, vm, fd;

	checked_vm(arch, 0, &pool, &vm);
	fd = gmem_create(vm, 4 * PG, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(vm, 0, GPA, 4 * PG, fd, 0), 0);
	fill(data, PG, 17);
	guest(vm, GPA, data, PG, PRIVATE_W);
	ASSERT_EQ(gmem_vm_unbind(vm, 0), 0);
	ASSERT_EQ(gmem_vm_bind(vm, 1, GPA2, 4 * PG, fd, 0), 0);
	guest(vm, GPA2, buf, PG, PRIVATE_R);
	print_violations(arch, vm);
	ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), 0);
	free_vm(pool, vm);
}

TEST(check_sw_private_fault_after_rebinding_at_another_gpa_keeps_the_page)
{
	rebinding_at_another_gpa_keeps_the_arch_rule("sw");
}

TEST(check_snp_private_fault_after_rebinding_at_another_gpa_keeps_the_rmp_entry_at_the_new_gfn)
{
	rebinding_at_another_gpa_keeps_the_arch_rule("snp");
}

TEST(check_tdx_private_fault_after_rebinding_at_another_gpa_keeps_the_td_page)
{
	rebinding_at_another_gpa_keeps_the_arch_rule("tdx");
}

TEST(check_pkvm_private_fault_after_rebinding_at_another_gpa_keeps_guest_ownership)
{
	rebinding_at_another_gpa_keeps_the_arch_rule("pkvm");
}

/* ------------------------------------------------ gmem_vm_violations */

TEST(violations_of_a_vm_without_check_mode_are_zero)
{
	static uint8_t data[PG], buf[PG];
	struct gmem_violation v = { .invariant = 99 };
	int pool, vm, fd;

	pool = gmem_pool_create(16 * GiB);
	ASSERT_GE(pool, 0);
	vm = gmem_vm_create(pool, "pkvm", GMEM_VM_LEGACY_CONTRACT);
	ASSERT_GE(vm, 0);
	fd = gmem_create(vm, 4 * PG, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(vm, 0, GPA, 4 * PG, fd, 0), 0);
	fill(data, PG, 5);
	guest(vm, GPA, data, PG, PRIVATE_W);
	ASSERT_EQ(convert(fd, 0, PG, 0), 0);
	guest(vm, GPA, buf, PG, SHARED_R);
	ASSERT_TRUE(is_zero(buf, PG));	/* content lost, but nobody checks */
	ASSERT_EQ(gmem_vm_violations(vm, &v, 1), 0);
	ASSERT_EQ(v.invariant, 99);
	ASSERT_EQ(gmem_close(fd), 0);
	free_vm(pool, vm);
}

TEST(violations_rejects_bad_handles)
{
	struct gmem_violation v;
	int pool, vm, fd, dead;

	checked_vm("sw", 0, &pool, &vm);
	fd = gmem_create(vm, PG, 0);
	ASSERT_GE(fd, 0);
	dead = gmem_vm_create(pool, "sw", GMEM_VM_CHECK);
	ASSERT_GE(dead, 0);
	ASSERT_EQ(gmem_vm_close(dead), 0);
	ASSERT_EQ(gmem_vm_violations(NEVER_OPEN, &v, 1), -EBADF);
	ASSERT_EQ(gmem_vm_violations(-1, &v, 1), -EBADF);
	ASSERT_EQ(gmem_vm_violations(dead, &v, 1), -EBADF);
	ASSERT_EQ(gmem_vm_violations(pool, &v, 1), -EINVAL);
	ASSERT_EQ(gmem_vm_violations(fd, &v, 1), -EINVAL);
	ASSERT_EQ(gmem_vm_violations(vm, &v, 1), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	free_vm(pool, vm);
}

TEST(violations_with_no_buffer_and_a_nonzero_max_is_einval)
{
	static uint8_t data[PG];
	struct gmem_violation v;
	int pool, vm, fd;

	/* A VM with violations to copy: the legacy pkvm loses converted content. */
	checked_vm("pkvm", GMEM_VM_LEGACY_CONTRACT, &pool, &vm);
	fd = gmem_create(vm, 4 * PG, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(vm, 0, GPA, 4 * PG, fd, 0), 0);
	fill(data, PG, 7);
	guest(vm, GPA, data, PG, PRIVATE_W);
	ASSERT_EQ(convert(fd, 0, PG, 0), 0);
	ASSERT_GT(gmem_vm_violations(vm, &v, 1), 0);
	ASSERT_EQ(gmem_vm_violations(vm, NULL, 1), -EINVAL);
	ASSERT_EQ(gmem_vm_violations(vm, NULL, ~0U), -EINVAL);
	/* Counting alone needs no buffer. */
	ASSERT_GT(gmem_vm_violations(vm, NULL, 0), 0);
	/* The handle is still checked first. */
	ASSERT_EQ(gmem_vm_violations(NEVER_OPEN, NULL, 1), -EBADF);
	ASSERT_EQ(gmem_close(fd), 0);
	free_vm(pool, vm);
}

TEST(violations_copies_at_most_max_entries_and_returns_the_total)
{
	static struct gmem_violation v[8];
	static uint8_t data[3 * PG];
	int pool, vm, fd;

	checked_vm("pkvm", GMEM_VM_LEGACY_CONTRACT, &pool, &vm);
	fd = gmem_create(vm, 4 * PG, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(vm, 0, GPA, 4 * PG, fd, 0), 0);
	fill(data, sizeof(data), 9);
	guest(vm, GPA, data, sizeof(data), PRIVATE_W);
	ASSERT_EQ(convert(fd, 0, 4 * PG, 0), 0);	/* three pages lose data */

	memset(v, 0xee, sizeof(v));
	ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), 3);
	ASSERT_EQ(gmem_vm_violations(vm, v, 0), 3);
	ASSERT_EQ(v[0].invariant, (int)0xeeeeeeee);
	ASSERT_EQ(gmem_vm_violations(vm, v, 1), 3);
	ASSERT_EQ(v[0].invariant, 4);
	ASSERT_EQ(v[1].invariant, (int)0xeeeeeeee);
	ASSERT_EQ(gmem_vm_violations(vm, v, 8), 3);
	for (int i = 0; i < 3; i++) {
		ASSERT_EQ(v[i].invariant, 4);
		ASSERT_EQ(v[i].offset, (uint64_t)i * PG);
		ASSERT_EQ(strcmp(v[i].op, "gmem_set_attributes"), 0);
		ASSERT_GT(strlen(v[i].rule), 0);
		ASSERT_TRUE(memchr(v[i].rule, 0, sizeof(v[i].rule)));
		ASSERT_TRUE(memchr(v[i].op, 0, sizeof(v[i].op)));
	}
	ASSERT_EQ(v[3].invariant, (int)0xeeeeeeee);
	/* Violations stay recorded: later clean calls add none. */
	guest(vm, GPA, data, PG, SHARED_R);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(gmem_vm_violations(vm, v, 8), 3);
	free_vm(pool, vm);
}

TEST(violations_returns_the_total_beyond_what_it_can_record)
{
	enum { N = 1100 };
	static struct gmem_violation v[N];
	static uint8_t data[PG];
	int pool, vm, fd;

	checked_vm("pkvm", GMEM_VM_LEGACY_CONTRACT, &pool, &vm);
	fd = gmem_create(vm, N * PG, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(vm, 0, GPA, N * PG, fd, 0), 0);
	fill(data, PG, 21);
	for (int i = 0; i < N; i++)
		guest(vm, GPA + i * PG, data, PG, PRIVATE_W);
	ASSERT_EQ(convert(fd, 0, N * PG, 0), 0);
	ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), N);
	ASSERT_EQ(gmem_vm_violations(vm, v, N), N);
	ASSERT_EQ(v[0].invariant, 4);
	ASSERT_EQ(v[0].offset, 0);
	ASSERT_EQ(strcmp(v[0].op, "gmem_set_attributes"), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	free_vm(pool, vm);
}

/*
 * Check mode beside another thread's faults: a fault installs its stage-2
 * entry and then opens the views, both under mmu_lock shared, so a check
 * that read the views under mmu_lock shared too could catch a page mapped
 * but not yet open. One thread faults fresh pages of a bound file with an
 * any view (punching them again each round); this one makes checked calls
 * meanwhile. No violation may be recorded.
 */
enum { FRESH_PAGES = 16 };

struct faulter {
	int vm, fd;
	atomic_bool stop;
	atomic_ulong faults;
};

static void *fault_fresh_pages(void *arg)
{
	struct faulter *f = arg;

	while (!atomic_load(&f->stop)) {
		for (int i = 0; i < FRESH_PAGES; i++) {
			if (gmem_vm_fault(f->vm, GPA + i * PG, SHARED_W, NULL, NULL))
				return (void *)1;
			atomic_fetch_add(&f->faults, 1);
		}
		if (gmem_fallocate(f->fd, PUNCH, 0, FRESH_PAGES * PG))
			return (void *)1;
	}
	return NULL;
}

TEST(check_beside_another_threads_faults_sees_no_half_installed_entry)
{
	static struct faulter f;
	pthread_t t;
	void *p, *ret;
	int pool, vm;

	checked_vm("sw", 0, &pool, &vm);
	f = (struct faulter){ .vm = vm };
	f.fd = gmem_create(vm, FRESH_PAGES * PG, GMEM_FLAG_INIT_SHARED);
	ASSERT_GE(f.fd, 0);
	ASSERT_EQ(gmem_vm_bind(vm, 0, GPA, FRESH_PAGES * PG, f.fd, 0), 0);
	ASSERT_EQ(gmem_vm_view_mmap(vm, 0, GMEM_VIEW_ANY, &p), 0);
	ASSERT_EQ(pthread_create(&t, NULL, fault_fresh_pages, &f), 0);
	/*
	 * Each fault of a present page is a checked call: a whole check.
	 * The faulter checks after its own calls too, so the two mostly take
	 * turns: give the window many chances, two thousand rounds of fresh pages.
	 */
	while (atomic_load(&f.faults) < 2000 * FRESH_PAGES &&
	       !gmem_vm_violations(vm, NULL, 0))
		ASSERT_EQ(gmem_vm_fault(vm, GPA, SHARED_R, NULL, NULL), 0);
	atomic_store(&f.stop, true);
	ASSERT_EQ(pthread_join(t, &ret), 0);
	ASSERT_EQ(ret, NULL);
	print_violations("beside a faulting thread", vm);
	ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), 0);
	ASSERT_GE(atomic_load(&f.faults), 2000 * FRESH_PAGES);
	ASSERT_EQ(gmem_vm_unbind(vm, 0), 0);
	munmap(p, FRESH_PAGES * PG);
	ASSERT_EQ(gmem_close(f.fd), 0);
	free_vm(pool, vm);
}

/*
 * Check mode beside another thread's gmem_mmap and gmem_munmap: a check
 * that read /proc/self/maps before it held what keeps host mappings still
 * would see a mapping made, dropped or fenced after its read as one moved
 * behind gmem's back, or a private page reachable where the maps are stale.
 * One thread maps the file whole, writes a shared page and unmaps it; this
 * one converts pages of the same file both ways meanwhile, each a checked
 * call. No violation may be recorded.
 */
enum { MAPPER_PAGES = 1024 };	/* 4 MiB: two whole chunks, fenced whole and not */

struct mapper {
	int fd;
	atomic_bool stop;
	atomic_ulong maps;
};

static void *map_and_unmap(void *arg)
{
	struct mapper *m = arg;
	void *addr;

	while (!atomic_load(&m->stop)) {
		if (gmem_mmap(m->fd, 0, MAPPER_PAGES * PG, PROT_READ | PROT_WRITE,
			      MAP_SHARED, &addr))
			return (void *)1;
		((volatile uint8_t *)addr)[(MAPPER_PAGES - 1) * PG] = 1;
		if (gmem_munmap(addr, MAPPER_PAGES * PG))
			return (void *)1;
		atomic_fetch_add(&m->maps, 1);
	}
	return NULL;
}

TEST(check_beside_another_threads_mmap_and_munmap_sees_no_moved_mapping)
{
	static struct mapper m;
	pthread_t t;
	void *ret;
	int pool, vm, round = 0;

	checked_vm("sw", 0, &pool, &vm);
	m = (struct mapper){ .fd = -1 };
	m.fd = gmem_create(vm, MAPPER_PAGES * PG, GMEM_FLAG_MMAP);
	ASSERT_GE(m.fd, 0);
	/* The second chunk private whole, the first private but its last page. */
	ASSERT_EQ(convert(m.fd, 511 * PG, PG, 0), 0);
	ASSERT_EQ(convert(m.fd, (MAPPER_PAGES - 1) * PG, PG, 0), 0);
	ASSERT_EQ(pthread_create(&t, NULL, map_and_unmap, &m), 0);
	while (atomic_load(&m.maps) < 60 && !gmem_vm_violations(vm, NULL, 0)) {
		uint64_t page = (uint64_t)(round++ % 8) * 64;

		ASSERT_EQ(convert(m.fd, page * PG, 64 * PG, 0), 0);
		ASSERT_EQ(convert(m.fd, page * PG, 64 * PG, PRIV), 0);
		ASSERT_EQ(convert(m.fd, 512 * PG, 512 * PG - PG, 0), 0);
		ASSERT_EQ(convert(m.fd, 512 * PG, 512 * PG - PG, PRIV), 0);
	}
	atomic_store(&m.stop, true);
	ASSERT_EQ(pthread_join(t, &ret), 0);
	ASSERT_EQ(ret, NULL);
	print_violations("beside a mapping thread", vm);
	ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), 0);
	ASSERT_GE(atomic_load(&m.maps), 60);
	ASSERT_EQ(gmem_close(m.fd), 0);
	free_vm(pool, vm);
}

/*
 * Check mode beside another thread's private faults, on every arch, in
 * files of 4 KiB and of 2 MiB folios, with an any view: a fault allocates
 * and prepares its folio under the file's invalidate lock shared, beside
 * the page checks of a checked call on this thread. One thread faults
 * private pages and punches them again; this one makes checked calls
 * meanwhile. No violation may be recorded (evidence, not proof:
 * docs/design.md, "Locks").
 */
enum { PRIVATE_PAGES = 512, PRIVATE_FAULTS = 5000 };

static void *fault_private_pages(void *arg)
{
	struct faulter *f = arg;

	while (!atomic_load(&f->stop)) {
		for (int i = 0; i < PRIVATE_PAGES; i += 7) {
			if (gmem_vm_fault(f->vm, GPA + (uint64_t)i * PG, PRIVATE_W,
					  NULL, NULL))
				return (void *)1;
			atomic_fetch_add(&f->faults, 1);
		}
		if (gmem_fallocate(f->fd, PUNCH, 0, PRIVATE_PAGES * PG))
			return (void *)1;
	}
	return NULL;
}

static void private_faults_beside_checks(const char *arch, uint64_t flags)
{
	static struct faulter f;
	pthread_t t;
	void *ret, *view;
	int pool, vm;

	checked_vm(arch, 0, &pool, &vm);
	f = (struct faulter){ .vm = vm };
	f.fd = gmem_create(vm, PRIVATE_PAGES * PG, flags);
	ASSERT_GE(f.fd, 0);
	ASSERT_EQ(gmem_vm_bind(vm, 0, GPA, PRIVATE_PAGES * PG, f.fd, 0), 0);
	ASSERT_EQ(gmem_vm_view_mmap(vm, 0, GMEM_VIEW_ANY, &view), 0);
	ASSERT_EQ(gmem_vm_fault(vm, GPA + PG, PRIVATE_W, NULL, NULL), 0);
	ASSERT_EQ(pthread_create(&t, NULL, fault_private_pages, &f), 0);
	while (atomic_load(&f.faults) < PRIVATE_FAULTS &&
	       !gmem_vm_violations(vm, NULL, 0))
		ASSERT_EQ(gmem_vm_fault(vm, GPA + 3 * PG, PRIVATE_W, NULL, NULL), 0);
	atomic_store(&f.stop, true);
	ASSERT_EQ(pthread_join(t, &ret), 0);
	ASSERT_EQ(ret, NULL);
	print_violations(arch, vm);
	ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), 0);
	ASSERT_EQ(gmem_vm_unbind(vm, 0), 0);
	munmap(view, PRIVATE_PAGES * PG);
	ASSERT_EQ(gmem_close(f.fd), 0);
	free_vm(pool, vm);
}

TEST(check_beside_another_threads_private_faults_reports_nothing_on_any_arch)
{
	static const char *const archs[] = { "sw", "snp", "tdx", "pkvm" };

	for (int i = 0; i < 4; i++) {
		private_faults_beside_checks(archs[i], 0);
		private_faults_beside_checks(archs[i], GMEM_FLAG_HUGE_2M);
	}
}
