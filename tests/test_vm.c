// SPDX-License-Identifier: MIT
/* VMs, memslot bindings, translation and guest faults: errors, exits, zaps, lifetime. */
#include <stdbool.h>
#include <string.h>

#include "harness.h"
#include "inject.h"

#define PG	GMEM_PAGE_SIZE
#define MiB	(1ULL << 20)
#define GiB	(1ULL << 30)

#define SHARED_R	0
#define SHARED_W	GMEM_FAULT_WRITE
#define PRIVATE_R	GMEM_FAULT_PRIVATE
#define PRIVATE_W	(GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE)

/* A handle number no test ever reaches. */
#define NEVER_OPEN	9999

static void assert_unbound(int vm, uint64_t gpa)
{
	ASSERT_EQ(gmem_vm_translate(vm, gpa, NULL, NULL, NULL), -EFAULT);
}

static void assert_translates(int vm, uint64_t gpa, int fd, uint64_t offset,
			      uint64_t len)
{
	uint64_t off = ~0ULL, left = ~0ULL;
	int f = -1;

	ASSERT_EQ(gmem_vm_translate(vm, gpa, &f, &off, &left), 0);
	ASSERT_EQ(f, fd);
	ASSERT_EQ(off, offset);
	ASSERT_EQ(left, len);
}

static void fill(uint8_t *p, size_t n, unsigned int seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 131 + (i >> 8));
}

/* Read @n bytes of file @fd at @offset through its frames in the direct map. */
static void read_file(int pool, int fd, uint64_t offset, uint8_t *out, size_t n)
{
	while (n) {
		size_t chunk = PG - offset % PG;
		uint64_t pfn;
		const uint8_t *p;

		if (chunk > n)
			chunk = n;
		ASSERT_EQ(gmem_folio_info(fd, offset - offset % PG, &pfn, NULL, NULL), 1);
		p = frame_bytes(pool, pfn);	/* private content too */
		ASSERT_TRUE(p);
		for (size_t i = 0; i < chunk; i++)
			out[i] = p[offset % PG + i];
		out += chunk;
		offset += chunk;
		n -= chunk;
	}
}

TEST(vm_create_rejects_unknown_arch_nonzero_flags_and_bad_pools)
{
	int pool = gmem_pool_create(GiB), vm;

	ASSERT_GE(pool, 0);
	ASSERT_EQ(gmem_vm_create(pool, "no-such-arch", 0), -ENOENT);
	ASSERT_EQ(gmem_vm_create(pool, "", 0), -ENOENT);
	ASSERT_EQ(gmem_vm_create(pool, "sw ", 0), -ENOENT);
	ASSERT_EQ(gmem_vm_create(pool, "sw", 1ULL << 5), -EINVAL);
	ASSERT_EQ(gmem_vm_create(pool, "sw", 1ULL << 63), -EINVAL);
	ASSERT_EQ(gmem_vm_create(pool, "sw", ~0ULL), -EINVAL);
	vm = gmem_vm_create(pool, "sw", 0);
	ASSERT_GE(vm, 0);
	ASSERT_EQ(gmem_vm_create(vm, "sw", 0), -EINVAL);	/* not a pool */
	ASSERT_EQ(gmem_vm_create(NEVER_OPEN, "sw", 0), -EBADF);
	ASSERT_EQ(gmem_vm_create(-1, "sw", 0), -EBADF);
	/* In the documented order: pool, then flags, then arch. */
	ASSERT_EQ(gmem_vm_create(NEVER_OPEN, "no-such-arch", 1ULL << 5), -EBADF);
	ASSERT_EQ(gmem_vm_create(pool, "no-such-arch", 1ULL << 5), -EINVAL);
	ASSERT_EQ(gmem_vm_close(pool), -EINVAL);
	ASSERT_EQ(gmem_vm_close(vm), 0);
	ASSERT_EQ(gmem_vm_close(vm), -EBADF);
	ASSERT_EQ(gmem_pool_close(pool), 0);
	ASSERT_EQ(gmem_vm_create(pool, "sw", 0), -EBADF);	/* closed pool */
}


TEST(failed_vm_create_leaves_the_pool_free_for_another_arch)
{
	int pool = gmem_pool_create(GiB), vm;

	ASSERT_GE(pool, 0);
	/* EMFILE: the handle table is full once the VM is built. */
	inject_arm(0, 1.0, 1, "(handle slot)");
	ASSERT_EQ(gmem_vm_create(pool, "snp", 0), -EMFILE);
	ASSERT_EQ(gmem_vm_create(pool, "snp", GMEM_VM_CHECK), -EMFILE);
	inject_disarm();
	/* The pool never ran an snp VM: a tdx one is welcome. */
	vm = gmem_vm_create(pool, "tdx", 0);
	ASSERT_GE(vm, 0);
	/* A VM that was created binds the arch for good, even once destroyed. */
	ASSERT_EQ(gmem_vm_create(pool, "snp", 0), -EINVAL);
	ASSERT_EQ(gmem_vm_close(vm), 0);
	ASSERT_EQ(gmem_vm_create(pool, "snp", 0), -EINVAL);
	vm = gmem_vm_create(pool, "tdx", 0);
	ASSERT_GE(vm, 0);
	ASSERT_EQ(gmem_vm_close(vm), 0);
	ASSERT_EQ(gmem_pool_close(pool), 0);
}

TEST(bind_rejects_bad_vm_slot_and_guest_range_before_looking_at_the_file)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, MiB, 0);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(NEVER_OPEN, 0, 0, PG, fd, 0), -EBADF);
	ASSERT_EQ(gmem_vm_bind(fd, 0, 0, PG, fd, 0), -EINVAL);	/* not a VM */
	ASSERT_EQ(gmem_vm_bind(e.pool, 0, 0, PG, fd, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, GMEM_MAX_SLOTS, 0, PG, fd, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, UINT32_MAX, 0, PG, fd, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, 0, fd, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 1, PG, fd, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, PG / 2, PG, fd, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, PG - 1, fd, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, PG + 1, fd, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, ~0ULL - PG + 1, 2 * PG, fd, 0), -EINVAL);
	/* Slot and guest range are checked before the file is even looked up. */
	ASSERT_EQ(gmem_vm_bind(e.vm, GMEM_MAX_SLOTS, 0, PG, NEVER_OPEN, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 1, PG, NEVER_OPEN, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, 0, NEVER_OPEN, 0), -EINVAL);
	assert_unbound(e.vm, 0);
	/* The highest slot id is a valid one. */
	ASSERT_EQ(gmem_vm_bind(e.vm, GMEM_MAX_SLOTS - 1, 0, PG, fd, 0), 0);
	assert_translates(e.vm, 0, fd, 0, PG);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(bind_rejects_closed_foreign_and_non_file_handles_and_bad_file_ranges)
{
	struct env e = env_new("sw");
	int vm2 = gmem_vm_create(e.pool, "sw", 0);
	int fd = gmem_create(e.vm, MiB, 0);
	int foreign = gmem_create(vm2, MiB, 0);
	int closed = gmem_create(e.vm, MiB, 0);

	ASSERT_GE(vm2, 0);
	ASSERT_GE(fd, 0);
	ASSERT_GE(foreign, 0);
	ASSERT_EQ(gmem_close(closed), 0);

	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, PG, closed, 0), -EBADF);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, PG, -1, 0), -EBADF);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, PG, NEVER_OPEN, 0), -EBADF);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, PG, e.vm, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, PG, vm2, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, PG, e.pool, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, PG, foreign, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, PG, fd, 1), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, PG, fd, PG / 2), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, PG, fd, MiB), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, 2 * PG, fd, MiB - PG), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, MiB + PG, fd, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, 2 * PG, fd, ~0ULL - PG + 1), -EINVAL);
	/* A failed bind changes nothing. */
	assert_unbound(e.vm, 0);
	/* The file of the other VM binds there; a range ending at EOF binds here. */
	ASSERT_EQ(gmem_vm_bind(vm2, 0, 0, MiB, foreign, 0), 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, MiB, fd, 0), 0);
	assert_translates(e.vm, MiB - 1, fd, MiB - 1, 1);
	assert_translates(vm2, 0, foreign, 0, MiB);
	ASSERT_EQ(gmem_close(foreign), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(gmem_vm_close(vm2), 0);
	env_free(&e);
}

TEST(bind_rejects_a_used_slot_id_with_einval_and_overlapping_guest_ranges_with_eexist)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * MiB, 0);
	int fd2 = gmem_create(e.vm, 4 * MiB, 0);

	ASSERT_GE(fd, 0);
	ASSERT_GE(fd2, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, MiB, MiB, fd, 0), 0);
	/*
	 * Same id, everything else free: a guest_memfd memslot is created or
	 * deleted, never changed, so KVM answers EINVAL (EEXIST is for overlaps).
	 */
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, 8 * MiB, PG, fd2, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, MiB, MiB, fd, 0), -EINVAL);	/* the same again */
	/* Guest overlaps (another file, so only the guest range collides). */
	ASSERT_EQ(gmem_vm_bind(e.vm, 2, MiB, PG, fd2, 0), -EEXIST);
	ASSERT_EQ(gmem_vm_bind(e.vm, 2, MiB + 3 * PG, PG, fd2, 0), -EEXIST);
	ASSERT_EQ(gmem_vm_bind(e.vm, 2, 2 * MiB - PG, 2 * PG, fd2, 0), -EEXIST);
	ASSERT_EQ(gmem_vm_bind(e.vm, 2, MiB - PG, 2 * PG, fd2, 0), -EEXIST);
	ASSERT_EQ(gmem_vm_bind(e.vm, 2, 0, 4 * MiB, fd2, 0), -EEXIST);
	/* Nothing changed: the old slot is intact and nothing new appeared. */
	assert_translates(e.vm, MiB + 3 * PG, fd, 3 * PG, MiB - 3 * PG);
	assert_unbound(e.vm, 8 * MiB);
	assert_unbound(e.vm, MiB - PG);
	assert_unbound(e.vm, 2 * MiB);
	/* Ranges that only touch are fine, and the refused id is still free. */
	ASSERT_EQ(gmem_vm_bind(e.vm, 2, 2 * MiB, PG, fd2, 0), 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 3, MiB - PG, PG, fd2, PG), 0);
	assert_translates(e.vm, 2 * MiB, fd2, 0, PG);
	assert_translates(e.vm, MiB - PG, fd2, PG, PG);
	assert_translates(e.vm, MiB, fd, 0, MiB);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(gmem_close(fd2), 0);
	env_free(&e);
}

TEST(bind_rejects_a_file_range_already_bound_at_any_guest_address)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * MiB, 0);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, MiB, fd, MiB), 0);
	/* Disjoint guest ranges, same or overlapping file ranges. */
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, 16 * MiB, MiB, fd, MiB), -EEXIST);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, 16 * MiB, MiB, fd, MiB - PG), -EEXIST);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, 16 * MiB, 2 * PG, fd, 2 * MiB - PG), -EEXIST);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, 16 * MiB, PG, fd, MiB + 5 * PG), -EEXIST);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, 16 * MiB, 4 * MiB, fd, 0), -EEXIST);
	/* Overlapping guest and file ranges. */
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, PG, PG, fd, MiB + PG), -EEXIST);
	assert_unbound(e.vm, 16 * MiB);
	assert_translates(e.vm, PG, fd, MiB + PG, MiB - PG);
	/* File ranges that only touch the bound one are fine. */
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, 16 * MiB, MiB, fd, 0), 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 2, 32 * MiB, PG, fd, 2 * MiB), 0);
	assert_translates(e.vm, 16 * MiB, fd, 0, MiB);
	assert_translates(e.vm, 32 * MiB, fd, 2 * MiB, PG);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

#define NFILES		8
#define SLOTS_PER_FILE	16
#define SLOT_PAGES	4
#define NSLOTS		(NFILES * SLOTS_PER_FILE)

TEST(many_slots_of_many_files_bound_in_any_order_translate_and_fault)
{
	struct env e = env_new("sw");
	int fds[NFILES];

	for (int f = 0; f < NFILES; f++) {
		fds[f] = gmem_create(e.vm, SLOTS_PER_FILE * SLOT_PAGES * PG,
				     f % 2 ? GMEM_FLAG_INIT_SHARED : 0);
		ASSERT_GE(fds[f], 0);
	}
	/* Slot i: file i % NFILES, its (i / NFILES)-th chunk; bound scrambled. */
	for (int n = 0; n < NSLOTS; n++) {
		int i = (n * 37) % NSLOTS;

		ASSERT_EQ(gmem_vm_bind(e.vm, i * 255, GiB + i * SLOT_PAGES * PG,
				    SLOT_PAGES * PG, fds[i % NFILES],
				    (i / NFILES) * SLOT_PAGES * PG), 0);
	}
	for (int i = 0; i < NSLOTS; i++) {
		uint64_t gpa = GiB + i * SLOT_PAGES * PG + PG + 8;
		uint64_t off = (i / NFILES) * SLOT_PAGES * PG + PG + 8;
		unsigned int access = (i % NFILES) % 2 ? SHARED_W : PRIVATE_W;
		uint64_t pfn, frame;

		assert_translates(e.vm, gpa, fds[i % NFILES], off,
				  SLOT_PAGES * PG - PG - 8);
		ASSERT_EQ(gmem_vm_fault(e.vm, gpa, access, &pfn, NULL), 0);
		ASSERT_EQ(gmem_folio_info(fds[i % NFILES], off - 8, &frame,
					  NULL, NULL), 1);
		ASSERT_EQ(pfn, frame);
	}
	assert_unbound(e.vm, GiB - 1);
	assert_unbound(e.vm, GiB + NSLOTS * SLOT_PAGES * PG);
	/* Deleting every other slot leaves the rest in place. */
	for (int i = 0; i < NSLOTS; i += 2)
		ASSERT_EQ(gmem_vm_unbind(e.vm, i * 255), 0);
	for (int i = 0; i < NSLOTS; i++) {
		uint64_t gpa = GiB + i * SLOT_PAGES * PG;

		if (i % 2)
			assert_translates(e.vm, gpa, fds[i % NFILES],
					  (i / NFILES) * SLOT_PAGES * PG,
					  SLOT_PAGES * PG);
		else
			assert_unbound(e.vm, gpa);
	}
	for (int f = 0; f < NFILES; f++)
		ASSERT_EQ(gmem_close(fds[f]), 0);
	for (int i = 0; i < NSLOTS; i++)
		assert_unbound(e.vm, GiB + i * SLOT_PAGES * PG);
	env_free(&e);
}

TEST(translate_reports_file_offset_and_bytes_left_in_the_binding)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, MiB, 0), f = -1;
	uint64_t base = 64 * MiB, len = 64 * 1024, off = 8192;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 3, base, len, fd, off), 0);
	assert_translates(e.vm, base, fd, off, len);
	assert_translates(e.vm, base + 0x1234, fd, off + 0x1234, len - 0x1234);
	assert_translates(e.vm, base + len - 1, fd, off + len - 1, 1);
	assert_unbound(e.vm, base + len);
	assert_unbound(e.vm, base - 1);
	assert_unbound(e.vm, 0);
	/* Outputs are optional, one at a time too. */
	ASSERT_EQ(gmem_vm_translate(e.vm, base, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_translate(e.vm, base, &f, NULL, NULL), 0);
	ASSERT_EQ(f, fd);
	ASSERT_EQ(gmem_vm_translate(fd, base, NULL, NULL, NULL), -EINVAL);
	ASSERT_EQ(gmem_vm_translate(NEVER_OPEN, base, NULL, NULL, NULL), -EBADF);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(fault_where_nothing_is_bound_fails_with_efault)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, MiB, GMEM_FLAG_INIT_SHARED);
	struct gmem_exit exit;
	uint64_t pfn;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, 0, SHARED_R, &pfn, &exit), -EFAULT);
	ASSERT_EQ(gmem_vm_fault(e.vm, 0, PRIVATE_W, &pfn, &exit), -EFAULT);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, MiB, MiB, fd, 0), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, MiB - 1, SHARED_R, NULL, NULL), -EFAULT);
	ASSERT_EQ(gmem_vm_fault(e.vm, 2 * MiB, SHARED_R, NULL, NULL), -EFAULT);
	ASSERT_EQ(gmem_vm_fault(e.vm, MiB, SHARED_R, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, MiB, 1U << 2, NULL, NULL), -EINVAL);
	ASSERT_EQ(gmem_vm_fault(fd, MiB, SHARED_R, NULL, NULL), -EINVAL);
	ASSERT_EQ(gmem_vm_fault(NEVER_OPEN, MiB, SHARED_R, NULL, NULL), -EBADF);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

static void assert_memory_fault_exit(const struct gmem_exit *exit,
				     uint64_t gpa, bool private_access)
{
	ASSERT_EQ(exit->reason, GMEM_EXIT_MEMORY_FAULT);
	ASSERT_EQ(exit->gpa, gpa);
	ASSERT_EQ(exit->size, PG);
	ASSERT_EQ(exit->flags, private_access ? GMEM_MEMORY_EXIT_FLAG_PRIVATE : 0);
}

TEST(shared_access_to_a_private_page_exits_with_the_private_flag_clear)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, MiB, 0);
	struct gmem_exit exit;
	uint64_t pfn = 0x5a5a;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, MiB, MiB, fd, 0), 0);
	memset(&exit, 0xff, sizeof(exit));
	ASSERT_EQ(gmem_vm_fault(e.vm, MiB + 5 * PG + 0x123, SHARED_R, &pfn, &exit), 1);
	assert_memory_fault_exit(&exit, MiB + 5 * PG, false);
	memset(&exit, 0xff, sizeof(exit));
	ASSERT_EQ(gmem_vm_fault(e.vm, MiB + 5 * PG + PG - 1, SHARED_W, &pfn, &exit), 1);
	assert_memory_fault_exit(&exit, MiB + 5 * PG, false);
	ASSERT_EQ(gmem_vm_fault(e.vm, MiB + 5 * PG, SHARED_R, NULL, NULL), 1);
	/* The exit maps nothing and allocates nothing. */
	ASSERT_EQ(pfn, 0x5a5a);
	ASSERT_EQ(gmem_vm_stage2(e.vm, MiB + 5 * PG, NULL, NULL), 0);
	ASSERT_EQ(gmem_folio_info(fd, 5 * PG, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(private_access_to_a_shared_page_exits_with_the_private_flag_set)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, MiB, GMEM_FLAG_INIT_SHARED);
	struct gmem_exit exit;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 2 * MiB, MiB, fd, 0), 0);
	memset(&exit, 0xff, sizeof(exit));
	ASSERT_EQ(gmem_vm_fault(e.vm, 2 * MiB + 0xfff, PRIVATE_R, NULL, &exit), 1);
	assert_memory_fault_exit(&exit, 2 * MiB, true);
	memset(&exit, 0xff, sizeof(exit));
	ASSERT_EQ(gmem_vm_fault(e.vm, 3 * MiB - 1, PRIVATE_W, NULL, &exit), 1);
	assert_memory_fault_exit(&exit, 3 * MiB - PG, true);
	ASSERT_EQ(gmem_vm_stage2(e.vm, 2 * MiB, NULL, NULL), 0);
	ASSERT_EQ(gmem_folio_info(fd, 0, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(matching_fault_allocates_a_zeroed_folio_and_maps_its_frame)
{
	struct env e = env_new("sw");
	int priv = gmem_create(e.vm, MiB, 0);
	int shared = gmem_create(e.vm, MiB, GMEM_FLAG_INIT_SHARED);
	uint64_t pfn, frame, s2pfn, again;
	struct gmem_pool_stats st;
	uint8_t buf[PG];
	const uint8_t *p;
	int is_private = -1;

	ASSERT_GE(priv, 0);
	ASSERT_GE(shared, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, MiB, MiB, priv, 0), 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, 4 * MiB, MiB, shared, 0), 0);

	ASSERT_EQ(gmem_folio_info(priv, 2 * PG, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, MiB + 2 * PG + 7, PRIVATE_W, &pfn, NULL), 0);
	ASSERT_EQ(gmem_folio_info(priv, 2 * PG, &frame, NULL, NULL), 1);
	ASSERT_EQ(pfn, frame);
	ASSERT_EQ(gmem_vm_stage2(e.vm, MiB + 2 * PG, &s2pfn, &is_private), 1);
	ASSERT_EQ(s2pfn, pfn);
	ASSERT_EQ(is_private, 1);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.frames_in_use, 1);
	/* Faulting again maps the same frame and allocates nothing more. */
	ASSERT_EQ(gmem_vm_fault(e.vm, MiB + 2 * PG, PRIVATE_R, &again, NULL), 0);
	ASSERT_EQ(again, pfn);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.frames_in_use, 1);
	memset(buf, 0xee, sizeof(buf));
	ASSERT_EQ(gmem_vm_access(e.vm, MiB + 2 * PG, buf, PG, PRIVATE_R, NULL), 0);
	for (size_t i = 0; i < PG; i++)
		ASSERT_EQ(buf[i], 0);
	p = frame_bytes(e.pool, pfn);	/* the private frame itself */
	ASSERT_TRUE(p);
	ASSERT_EQ(p[0] | p[PG - 1], 0);

	ASSERT_EQ(gmem_folio_info(shared, 0, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, 4 * MiB, SHARED_R, &pfn, NULL), 0);
	ASSERT_EQ(gmem_folio_info(shared, 0, &frame, NULL, NULL), 1);
	ASSERT_EQ(pfn, frame);
	ASSERT_EQ(gmem_vm_stage2(e.vm, 4 * MiB, &s2pfn, &is_private), 1);
	ASSERT_EQ(s2pfn, pfn);
	ASSERT_EQ(is_private, 0);
	memset(buf, 0xee, sizeof(buf));
	ASSERT_EQ(gmem_vm_access(e.vm, 4 * MiB, buf, PG, SHARED_R, NULL), 0);
	for (size_t i = 0; i < PG; i++)
		ASSERT_EQ(buf[i], 0);
	/* Nothing else was mapped on the way. */
	ASSERT_EQ(gmem_vm_stage2(e.vm, MiB + PG, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_stage2(e.vm, 4 * MiB + PG, NULL, NULL), 0);
	ASSERT_EQ(gmem_close(priv), 0);
	ASSERT_EQ(gmem_close(shared), 0);
	env_free(&e);
}

TEST(unbind_zaps_stage2_and_later_faults_fail_with_efault)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, MiB, 0);
	uint64_t pfn, again;
	int64_t seq;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 5, MiB, 64 * 1024, fd, 0), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, MiB, PRIVATE_W, &pfn, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, MiB + PG, PRIVATE_W, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_stage2(e.vm, MiB, NULL, NULL), 1);
	ASSERT_EQ(gmem_vm_stage2(e.vm, MiB + PG, NULL, NULL), 1);
	seq = gmem_vm_invalidate_seq(e.vm);
	ASSERT_GE(seq, 0);

	ASSERT_EQ(gmem_vm_unbind(e.vm, 5), 0);
	ASSERT_GT(gmem_vm_invalidate_seq(e.vm), seq);
	ASSERT_EQ(gmem_vm_stage2(e.vm, MiB, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_stage2(e.vm, MiB + PG, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, MiB, PRIVATE_W, NULL, NULL), -EFAULT);
	ASSERT_EQ(gmem_vm_fault(e.vm, MiB + PG, SHARED_R, NULL, NULL), -EFAULT);
	assert_unbound(e.vm, MiB);
	/* Unbinding frees no memory. */
	ASSERT_EQ(gmem_folio_info(fd, 0, NULL, NULL, NULL), 1);

	ASSERT_EQ(gmem_vm_unbind(e.vm, 5), -EINVAL);
	ASSERT_EQ(gmem_vm_unbind(e.vm, 6), -EINVAL);
	ASSERT_EQ(gmem_vm_unbind(e.vm, GMEM_MAX_SLOTS), -EINVAL);
	ASSERT_EQ(gmem_vm_unbind(e.vm, UINT32_MAX), -EINVAL);
	ASSERT_EQ(gmem_vm_unbind(fd, 5), -EINVAL);
	ASSERT_EQ(gmem_vm_unbind(NEVER_OPEN, 5), -EBADF);

	/* The id and both ranges are free again; the folio is the same one. */
	ASSERT_EQ(gmem_vm_bind(e.vm, 5, MiB, 64 * 1024, fd, 0), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, MiB, PRIVATE_R, &again, NULL), 0);
	ASSERT_EQ(again, pfn);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(closing_a_file_removes_its_bindings_and_only_its_own)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, MiB, 0), fd2 = gmem_create(e.vm, MiB, 0);
	struct gmem_pool_stats st;
	int64_t seq;

	ASSERT_GE(fd, 0);
	ASSERT_GE(fd2, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, MiB, 64 * 1024, fd, 0), 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, 2 * MiB, 64 * 1024, fd2, 0), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, MiB, PRIVATE_W, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, 2 * MiB, PRIVATE_W, NULL, NULL), 0);
	seq = gmem_vm_invalidate_seq(e.vm);

	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_GT(gmem_vm_invalidate_seq(e.vm), seq);
	ASSERT_EQ(gmem_vm_stage2(e.vm, MiB, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, MiB, PRIVATE_W, NULL, NULL), -EFAULT);
	ASSERT_EQ(gmem_vm_fault(e.vm, MiB, SHARED_R, NULL, NULL), -EFAULT);
	assert_unbound(e.vm, MiB);

	ASSERT_EQ(gmem_vm_stage2(e.vm, 2 * MiB, NULL, NULL), 1);
	ASSERT_EQ(gmem_vm_fault(e.vm, 2 * MiB + PG, PRIVATE_W, NULL, NULL), 0);
	assert_translates(e.vm, 2 * MiB, fd2, 0, 64 * 1024);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 1);
	ASSERT_EQ(st.frames_in_use, 2);
	ASSERT_EQ(gmem_close(fd2), 0);
	env_free(&e);
}

/*
 * A pin is a host reference on pages, not on the handle: once the last handle
 * is closed (and nothing maps the file) the bindings go, as in KVM, where a
 * GUP pin holds folios but not the guest_memfd file. No one could unpin after
 * the close anyway.
 */
TEST(closing_a_file_removes_its_bindings_even_with_pinned_pages)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, MiB, GMEM_FLAG_INIT_SHARED);
	struct gmem_pool_stats st;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, MiB, MiB, fd, 0), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, MiB + PG, SHARED_W, NULL, NULL), 0);
	ASSERT_EQ(gmem_pin(fd, 0, PG), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, MiB + 2 * PG, SHARED_W, NULL, NULL), -EFAULT);
	ASSERT_EQ(gmem_vm_stage2(e.vm, MiB + PG, NULL, NULL), 0);
	assert_unbound(e.vm, MiB);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 0);
	ASSERT_EQ(st.frames_in_use, 0);
	env_free(&e);
}

TEST(files_keep_their_vm_alive_after_vm_destroy)
{
	int pool = gmem_pool_create(GiB), vm, fd;
	struct gmem_pool_stats st;
	uint8_t data[64], back[64];
	uint64_t attr;

	ASSERT_GE(pool, 0);
	vm = gmem_vm_create(pool, "sw", 0);
	ASSERT_GE(vm, 0);
	fd = gmem_create(vm, MiB, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(vm, 0, 0, MiB, fd, 0), 0);
	fill(data, sizeof(data), 7);
	ASSERT_EQ(gmem_vm_access(vm, PG - 32, data, sizeof(data), PRIVATE_W, NULL), 0);

	ASSERT_EQ(gmem_vm_close(vm), 0);
	ASSERT_EQ(gmem_vm_fault(vm, 0, PRIVATE_R, NULL, NULL), -EBADF);
	ASSERT_EQ(gmem_vm_translate(vm, 0, NULL, NULL, NULL), -EBADF);
	ASSERT_EQ(gmem_create(vm, MiB, 0), -EBADF);

	/* Every file operation still works, bound VM and all. */
	ASSERT_EQ(gmem_size(fd), MiB);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, 64 * 1024), 0);
	ASSERT_EQ(gmem_set_attributes(fd, 0, 2 * PG, 0, 0, NULL), 0);
	ASSERT_EQ(gmem_get_attributes(fd, 0, &attr, NULL), 0);
	ASSERT_EQ(attr, 0);
	ASSERT_EQ(gmem_pin(fd, 0, 2 * PG), 0);
	ASSERT_EQ(gmem_unpin(fd, 0, 2 * PG), 0);
	ASSERT_EQ(gmem_set_attributes(fd, 0, 2 * PG, GMEM_ATTR_PRIVATE, 0, NULL), 0);
	read_file(pool, fd, PG - 32, back, sizeof(back));
	ASSERT_EQ(memcmp(back, data, sizeof(data)), 0);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 PG, PG), 0);
	ASSERT_EQ(gmem_pool_stats(pool, &st), 0);
	ASSERT_EQ(st.files, 1);
	ASSERT_EQ(st.frames_in_use, 15);

	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(gmem_pool_stats(pool, &st), 0);
	ASSERT_EQ(st.files, 0);
	ASSERT_EQ(st.frames_in_use, 0);
	ASSERT_EQ(st.frames_reserved, 0);
	ASSERT_EQ(gmem_pool_close(pool), 0);
}

TEST(guest_access_writes_and_reads_back_across_page_boundaries)
{
	struct env e = env_new("sw");
	int priv = gmem_create(e.vm, MiB, 0);
	int shared = gmem_create(e.vm, MiB, GMEM_FLAG_INIT_SHARED);
	static uint8_t data[6000], back[6000];
	uint64_t gpa = MiB + PG - 1000;
	struct gmem_exit exit;

	ASSERT_GE(priv, 0);
	ASSERT_GE(shared, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, MiB, priv, 0), 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, MiB, MiB, shared, 0), 0);

	/* A private file: pages 0..2 of it, from 1000 bytes before page 1. */
	fill(data, sizeof(data), 1);
	ASSERT_EQ(gmem_vm_access(e.vm, PG - 1000, data, sizeof(data), PRIVATE_W, NULL), 0);
	memset(back, 0, sizeof(back));
	ASSERT_EQ(gmem_vm_access(e.vm, PG - 1000, back, sizeof(back), PRIVATE_R, NULL), 0);
	ASSERT_EQ(memcmp(back, data, sizeof(data)), 0);
	/* The bytes are where the frames say they are. */
	memset(back, 0, sizeof(back));
	read_file(e.pool, priv, PG - 1000, back, sizeof(back));
	ASSERT_EQ(memcmp(back, data, sizeof(data)), 0);

	/* A shared file converted to private first. */
	ASSERT_EQ(gmem_set_attributes(shared, 0, 4 * PG, GMEM_ATTR_PRIVATE, 0, NULL), 0);
	fill(data, sizeof(data), 2);
	ASSERT_EQ(gmem_vm_access(e.vm, gpa, data, sizeof(data), PRIVATE_W, NULL), 0);
	memset(back, 0, sizeof(back));
	ASSERT_EQ(gmem_vm_access(e.vm, gpa, back, sizeof(back), PRIVATE_R, NULL), 0);
	ASSERT_EQ(memcmp(back, data, sizeof(data)), 0);
	/* Shared reads of it exit at the first page. */
	ASSERT_EQ(gmem_vm_access(e.vm, gpa, back, sizeof(back), SHARED_R, &exit), 1);
	assert_memory_fault_exit(&exit, MiB, false);
	/* Empty accesses are fine; a missing buffer is not. */
	ASSERT_EQ(gmem_vm_access(e.vm, gpa, NULL, 0, PRIVATE_R, NULL), 0);
	ASSERT_EQ(gmem_vm_access(e.vm, gpa, NULL, 1, PRIVATE_R, NULL), -EINVAL);
	ASSERT_EQ(gmem_vm_access(e.vm, gpa, back, 1, 1U << 2, NULL), -EINVAL);
	ASSERT_EQ(gmem_vm_access(e.vm, 4 * MiB, back, 1, PRIVATE_R, NULL), -EFAULT);
	ASSERT_EQ(gmem_close(priv), 0);
	ASSERT_EQ(gmem_close(shared), 0);
	env_free(&e);
}

TEST(guest_access_stops_at_the_first_page_whose_attribute_disagrees)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, MiB, GMEM_FLAG_INIT_SHARED);
	uint8_t data[2 * PG], back[2 * PG];
	struct gmem_exit exit;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, MiB, MiB, fd, 0), 0);
	ASSERT_EQ(gmem_set_attributes(fd, PG, PG, GMEM_ATTR_PRIVATE, 0, NULL), 0);
	fill(data, sizeof(data), 3);
	memset(&exit, 0xff, sizeof(exit));
	ASSERT_EQ(gmem_vm_access(e.vm, MiB + PG / 2, data, sizeof(data), SHARED_W, &exit), 1);
	assert_memory_fault_exit(&exit, MiB + PG, false);
	/* The bytes before the private page were written, none after. */
	ASSERT_EQ(gmem_vm_access(e.vm, MiB + PG / 2, back, PG / 2, SHARED_R, NULL), 0);
	ASSERT_EQ(memcmp(back, data, PG / 2), 0);
	ASSERT_EQ(gmem_vm_access(e.vm, MiB + PG, back, PG, PRIVATE_R, NULL), 0);
	for (size_t i = 0; i < PG; i++)
		ASSERT_EQ(back[i], 0);
	ASSERT_EQ(gmem_vm_access(e.vm, MiB + 2 * PG, back, PG, SHARED_R, NULL), 0);
	for (size_t i = 0; i < PG; i++)
		ASSERT_EQ(back[i], 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(guest_access_crosses_from_one_slot_into_the_next)
{
	struct env e = env_new("sw");
	int a = gmem_create(e.vm, MiB, 0), b = gmem_create(e.vm, MiB, 0);
	uint8_t data[2 * PG], back[2 * PG];

	ASSERT_GE(a, 0);
	ASSERT_GE(b, 0);
	/* The last page of a's slot is followed by the first of b's. */
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, MiB - PG, PG, a, 5 * PG), 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, MiB, PG, b, 9 * PG), 0);
	fill(data, sizeof(data), 5);
	ASSERT_EQ(gmem_vm_access(e.vm, MiB - PG, data, sizeof(data), PRIVATE_W, NULL), 0);
	ASSERT_EQ(gmem_vm_access(e.vm, MiB - PG, back, sizeof(back), PRIVATE_R, NULL), 0);
	ASSERT_EQ(memcmp(back, data, sizeof(data)), 0);
	/* Each half landed in its own file, at the bound offset. */
	read_file(e.pool, a, 5 * PG, back, PG);
	read_file(e.pool, b, 9 * PG, back + PG, PG);
	ASSERT_EQ(memcmp(back, data, sizeof(data)), 0);
	ASSERT_EQ(gmem_folio_info(a, 6 * PG, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_folio_info(b, 8 * PG, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_close(a), 0);
	ASSERT_EQ(gmem_close(b), 0);
	env_free(&e);
}

TEST(the_top_page_of_the_guest_address_space_binds_and_faults)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, MiB, 0);
	uint64_t top = (1ULL << 48) - PG, pfn, s2pfn;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, top, PG, fd, 0), 0);
	assert_translates(e.vm, top + 5, fd, 5, PG - 5);
	ASSERT_EQ(gmem_vm_fault(e.vm, top, PRIVATE_W, &pfn, NULL), 0);
	ASSERT_EQ(gmem_vm_stage2(e.vm, top, &s2pfn, NULL), 1);
	ASSERT_EQ(s2pfn, pfn);
	ASSERT_EQ(gmem_vm_unbind(e.vm, 0), 0);
	ASSERT_EQ(gmem_vm_stage2(e.vm, top, NULL, NULL), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

/*
 * Many bindings of one file, every other chunk bound, bound in scrambled order
 * at scrambled guest addresses and slot ids: a conversion zaps the stage-2
 * entries of exactly the bound pages in its range, a conversion of an
 * unbound chunk starts no invalidation at all, and a new binding finds its
 * neighbours wherever they are.
 */
#define CHUNKS		512
#define CHUNK		2	/* pages */

static uint64_t chunk_gpa(int i)	/* binding i's guest address */
{
	return GiB + (uint64_t)((i * 37) % CHUNKS) * CHUNK * PG;
}

static void expect_stage2(int vm, uint64_t lo, uint64_t hi)
{
	for (int i = 0; i < CHUNKS; i++) {
		for (int j = 0; j < CHUNK; j++) {
			uint64_t page = 2 * CHUNK * i + j;
			int want = page >= lo && page < hi ? 0 : 1;

			ASSERT_EQ(gmem_vm_stage2(vm, chunk_gpa(i) + j * PG,
						 NULL, NULL), want);
		}
	}
}

TEST(conversion_zaps_only_the_bindings_its_range_overlaps)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 2 * CHUNKS * CHUNK * PG, 0);
	uint64_t lo, hi;
	int64_t seq;

	ASSERT_GE(fd, 0);
	for (int n = 0; n < CHUNKS; n++) {
		int i = (n * 101) % CHUNKS;

		ASSERT_EQ(gmem_vm_bind(e.vm, i * 61, chunk_gpa(i), CHUNK * PG,
				       fd, 2 * CHUNK * i * PG), 0);
	}
	for (int i = 0; i < CHUNKS; i++)
		for (int j = 0; j < CHUNK; j++)
			ASSERT_EQ(gmem_vm_fault(e.vm, chunk_gpa(i) + j * PG,
						PRIVATE_W, NULL, NULL), 0);
	expect_stage2(e.vm, 0, 0);

	/* An unbound chunk: nothing to invalidate. */
	seq = gmem_vm_invalidate_seq(e.vm);
	ASSERT_EQ(gmem_set_attributes(fd, (2 * CHUNK * 10 + CHUNK) * PG,
				      CHUNK * PG, 0, 0, NULL), 0);
	ASSERT_EQ(gmem_vm_invalidate_seq(e.vm), seq);
	expect_stage2(e.vm, 0, 0);

	/* From inside binding 100 into the gap after binding 300. */
	lo = 2 * CHUNK * 100 + 1;
	hi = 2 * CHUNK * 300 + CHUNK + 1;
	ASSERT_EQ(gmem_set_attributes(fd, lo * PG, (hi - lo) * PG, 0, 0, NULL), 0);
	ASSERT_EQ(gmem_vm_invalidate_seq(e.vm), seq + 1);
	expect_stage2(e.vm, lo, hi);

	/* Binding: a range touching binding 50 from either side is refused. */
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, 4 * GiB, 2 * PG, fd,
			       (2 * CHUNK * 50 + CHUNK - 1) * PG), -EEXIST);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, 4 * GiB, 2 * PG, fd,
			       (2 * CHUNK * 50 - 1) * PG), -EEXIST);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, chunk_gpa(7) + PG, PG, fd,
			       (2 * CHUNK * 50 + CHUNK) * PG), -EEXIST);
	/* The gap after it exactly fits; then it is taken. */
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, 4 * GiB, CHUNK * PG, fd,
			       (2 * CHUNK * 50 + CHUNK) * PG), 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 2, 5 * GiB, PG, fd,
			       (2 * CHUNK * 50 + CHUNK) * PG), -EEXIST);
	assert_translates(e.vm, 4 * GiB, fd, (2 * CHUNK * 50 + CHUNK) * PG,
			  CHUNK * PG);
	/* Unbinding ids found by their id, in any order. */
	ASSERT_EQ(gmem_vm_unbind(e.vm, 1), 0);
	for (int i = CHUNKS - 1; i >= 0; i -= 3)
		ASSERT_EQ(gmem_vm_unbind(e.vm, i * 61), 0);
	for (int i = 0; i < CHUNKS; i++) {
		if ((CHUNKS - 1 - i) % 3 == 0)
			assert_unbound(e.vm, chunk_gpa(i));
		else
			assert_translates(e.vm, chunk_gpa(i), fd,
					  2 * CHUNK * i * PG, CHUNK * PG);
	}
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}
