// SPDX-License-Identifier: MIT
/*
 * One pool, one arch: a second arch refused, distinct guest ids, frames freed
 * by one VM serving the next, and gmem_pool_frame_state.
 */
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

#include "arch_helpers.h"

/* --------------------------------------------------------- pools and ids */

TEST(pool_refuses_a_vm_of_a_second_arch_with_einval)
{
	static const char *const archs[] = { "sw", "snp", "tdx", "pkvm" };

	for (int first = 0; first < 4; first++) {
		int pool = gmem_pool_create(16 * GiB), vm, vm2;

		ASSERT_GE(pool, 0);
		vm = gmem_vm_create(pool, archs[first], 0);
		ASSERT_GE(vm, 0);
		for (int other = 0; other < 4; other++) {
			if (other == first)
				continue;
			ASSERT_EQ(gmem_vm_create(pool, archs[other], 0), -EINVAL);
			ASSERT_EQ(gmem_vm_create(pool, archs[other],
						 GMEM_VM_CHECK), -EINVAL);
		}
		/* The same arch is still welcome. */
		vm2 = gmem_vm_create(pool, archs[first], GMEM_VM_LEGACY_CONTRACT);
		ASSERT_GE(vm2, 0);
		ASSERT_EQ(gmem_vm_close(vm2), 0);
		ASSERT_EQ(gmem_vm_close(vm), 0);
		ASSERT_EQ(gmem_pool_close(pool), 0);
	}
}

TEST(pool_refusing_a_second_arch_leaves_a_reason)
{
	int pool = gmem_pool_create(16 * GiB), vm;

	ASSERT_GE(pool, 0);
	vm = gmem_vm_create(pool, "snp", 0);
	ASSERT_GE(vm, 0);
	ASSERT_EQ(gmem_vm_create(pool, "tdx", 0), -EINVAL);
	ASSERT_TRUE(strstr(gmem_last_error(), "gmem_vm_create"));
	/* An unknown arch is still -ENOENT, not a mismatch. */
	ASSERT_EQ(gmem_vm_create(pool, "nope", 0), -ENOENT);
	ASSERT_EQ(gmem_vm_close(vm), 0);
	ASSERT_EQ(gmem_pool_close(pool), 0);
}

/* Two VMs of @arch on one pool: each one's private frame names its own id. */
static void vms_get_distinct_ids(const char *arch, const char *fmt)
{
	int pool = gmem_pool_create(16 * GiB), vm[2], fd[2];
	char want[64];
	uint64_t pfn[2];

	ASSERT_GE(pool, 0);
	for (int i = 0; i < 2; i++) {
		vm[i] = gmem_vm_create(pool, arch, 0);
		ASSERT_GE(vm[i], 0);
		fd[i] = bound_file(vm[i], 2 * PG, 0);
		ASSERT_EQ(gmem_vm_fault(vm[i], GPA, PRIVATE_W, &pfn[i], NULL), 0);
	}
	ASSERT_NE(pfn[0], pfn[1]);
	for (int i = 0; i < 2; i++) {
		snprintf(want, sizeof(want), fmt, i + 1);
		assert_state(pool, pfn[i], want);
	}
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(gmem_close(fd[i]), 0);
		ASSERT_EQ(gmem_vm_close(vm[i]), 0);
	}
	ASSERT_EQ(gmem_pool_close(pool), 0);
}

TEST(snp_vms_of_one_pool_get_distinct_asids)
{
	vms_get_distinct_ids("snp", "rmp assigned asid=%d ");
}

TEST(tdx_vms_of_one_pool_get_distinct_td_ids)
{
	vms_get_distinct_ids("tdx", "tdx td=%d");
}

TEST(pkvm_vms_of_one_pool_get_distinct_vmids)
{
	vms_get_distinct_ids("pkvm", "pkvm guest vm=%d");
}

/*
 * Reclaim leaves frames fit for anyone: a file of a second VM that gets the
 * frames of a closed file of the first takes them over, and reads zeroes.
 */
static void freed_frames_serve_another_vm(const char *arch, uint64_t flags,
					  const char *fmt)
{
	int pool = gmem_pool_create(16 * GiB), vm1, vm2, fd;
	static uint8_t data[PG], buf[PG];
	uint64_t pfn, again;
	char want[64];

	ASSERT_GE(pool, 0);
	vm1 = gmem_vm_create(pool, arch, flags);
	ASSERT_GE(vm1, 0);
	vm2 = gmem_vm_create(pool, arch, flags);
	ASSERT_GE(vm2, 0);
	fd = bound_file(vm1, 4 * PG, 0);
	fill(data, PG, 59);
	guest_write(vm1, GPA, data, PG);
	pfn = frame_of(fd, 0);
	ASSERT_EQ(gmem_close(fd), 0);

	fd = bound_file(vm2, 4 * PG, 0);
	ASSERT_EQ(gmem_vm_fault(vm2, GPA, PRIVATE_R, &again, NULL), 0);
	ASSERT_EQ(again, pfn);	/* first fit: the same window */
	snprintf(want, sizeof(want), fmt, 2);
	assert_state(pool, pfn, want);
	guest_read(vm2, GPA, buf, PG, PRIVATE_R);
	ASSERT_TRUE(is_zero(buf, PG));
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(gmem_vm_close(vm1), 0);
	ASSERT_EQ(gmem_vm_close(vm2), 0);
	ASSERT_EQ(gmem_pool_close(pool), 0);
}

TEST(sw_frames_freed_by_one_vm_read_zero_for_the_next)
{
	freed_frames_serve_another_vm("sw", 0, "no hardware state");
	freed_frames_serve_another_vm("sw", GMEM_VM_LEGACY_CONTRACT,
				      "no hardware state");
}

TEST(snp_frames_freed_by_one_vm_are_assigned_to_the_next)
{
	freed_frames_serve_another_vm("snp", 0, "rmp assigned asid=%d ");
	freed_frames_serve_another_vm("snp", GMEM_VM_LEGACY_CONTRACT,
				      "rmp assigned asid=%d ");
}

TEST(tdx_frames_freed_by_one_td_join_the_next)
{
	freed_frames_serve_another_vm("tdx", 0, "tdx td=%d");
	freed_frames_serve_another_vm("tdx", GMEM_VM_LEGACY_CONTRACT, "tdx td=%d");
}

TEST(pkvm_frames_freed_by_one_vm_are_donated_to_the_next)
{
	freed_frames_serve_another_vm("pkvm", 0, "pkvm guest vm=%d");
	freed_frames_serve_another_vm("pkvm", GMEM_VM_LEGACY_CONTRACT,
				      "pkvm guest vm=%d");
}

TEST(frame_state_of_a_pool_without_vms_is_no_hardware_state)
{
	int pool = gmem_pool_create(16 * GiB);
	char buf[64] = "";

	ASSERT_GE(pool, 0);
	ASSERT_GT(gmem_pool_frame_state(pool, 0, buf, sizeof(buf)), 0);
	ASSERT_EQ(strcmp(buf, "no hardware state"), 0);
	ASSERT_EQ(gmem_pool_frame_state(pool, 0, NULL, 0), 0);
	ASSERT_EQ(gmem_pool_close(pool), 0);
}

TEST(frame_state_with_a_length_above_int_max_returns_the_length_written)
{
	struct env e = env_new("snp");
	char want[128], buf[128];
	int n = gmem_pool_frame_state(e.pool, 0, want, sizeof(want));

	ASSERT_GT(n, 0);
	ASSERT_LT(n, (int)sizeof(want) - 1);	/* not truncated */
	/* The buffer is shorter than @len claims, but the string is shorter still. */
	memset(buf, 'x', sizeof(buf));
	ASSERT_EQ(gmem_pool_frame_state(e.pool, 0, buf, (size_t)INT32_MAX + 2), n);
	ASSERT_EQ(strcmp(buf, want), 0);
	ASSERT_EQ(gmem_pool_frame_state(e.pool, 0, buf, SIZE_MAX), n);
	ASSERT_EQ(gmem_pool_frame_state(e.pool, 0, buf, (size_t)INT32_MAX + 1), n);
	ASSERT_EQ(gmem_pool_frame_state(e.pool, 0, buf, (size_t)UINT32_MAX + 1), n);
	env_free(&e);
}

TEST(frame_state_rejects_bad_pool_pfn_and_buffer)
{
	struct env e = env_new("snp");
	char buf[8];

	ASSERT_EQ(gmem_pool_frame_state(9999, 0, buf, sizeof(buf)), -EBADF);
	ASSERT_EQ(gmem_pool_frame_state(e.vm, 0, buf, sizeof(buf)), -EINVAL);
	ASSERT_EQ(gmem_pool_frame_state(e.pool, (64 * GiB) / PG, buf, sizeof(buf)), -EINVAL);
	ASSERT_EQ(gmem_pool_frame_state(e.pool, 0, NULL, 4), -EINVAL);
	/* Truncated to len - 1, NUL-terminated. */
	ASSERT_EQ(gmem_pool_frame_state(e.pool, 0, buf, sizeof(buf)), (int)sizeof(buf) - 1);
	ASSERT_EQ(strcmp(buf, "rmp hyp"), 0);
	env_free(&e);
}
