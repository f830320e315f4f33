// SPDX-License-Identifier: MIT
/*
 * errno belongs to the caller: every call, successful or failed, leaves it
 * as it found it, although the engine makes system calls underneath (lseek
 * SEEK_DATA finding no data, madvise, mmap failing, ...).
 */
#include <string.h>
#include <sys/mman.h>

#include "harness.h"

#define PG	GMEM_PAGE_SIZE
#define MiB	(1ULL << 20)
#define GiB	(1ULL << 30)
#define RW	(PROT_READ | PROT_WRITE)
#define PUNCH	(GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE)
#define GPA	(16 * MiB)

/* A value no system call sets. */
#define SENTINEL	4242

static long long errno_kept(long long ret)
{
	ASSERT_EQ(errno, SENTINEL);
	return ret;
}

/* Run @call with errno at SENTINEL; it must still be there after. */
#define KEEPS(call)	(errno = SENTINEL, errno_kept((long long)(call)))
#define KEEPS_PTR(call)	(errno = SENTINEL, errno_kept((long long)(uintptr_t)(call)))

static void trace(void *arg, const struct gmem_hook_call *call)
{
	(void)arg;
	(void)call;
}

TEST(successful_calls_leave_errno_alone)
{
	static uint8_t buf[2 * PG];
	struct gmem_pool_stats st;
	struct gmem_violation v;
	struct gmem_exit ex;
	uint64_t pfn, attr, off, len;
	void *p = NULL, *view = NULL;
	char state[64];
	int pool, vm, fd, f, priv;

	pool = KEEPS(gmem_pool_create(16 * GiB));
	ASSERT_GE(pool, 0);
	vm = KEEPS(gmem_vm_create(pool, "snp", GMEM_VM_CHECK));
	ASSERT_GE(vm, 0);
	ASSERT_EQ(KEEPS(gmem_vm_trace_hooks(vm, trace, NULL)), 0);
	fd = KEEPS(gmem_create(vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED));
	ASSERT_GE(fd, 0);
	ASSERT_EQ(KEEPS(gmem_size(fd)), 4 * PG);
	ASSERT_EQ(KEEPS(gmem_mmap(fd, 0, 8 * PG, RW, MAP_SHARED, &p)), 0);
	memset(p, 1, 2 * PG);	/* the host touches pages gmem has not seen */
	ASSERT_EQ(KEEPS(gmem_mapping_find(p, &f, &off)), 1);
	/* Pages the host touched are found with lseek(SEEK_DATA): ENXIO at the end. */
	ASSERT_EQ(KEEPS(gmem_folio_info(fd, 3 * PG, &pfn, NULL, NULL)), 0);
	ASSERT_EQ(KEEPS(gmem_folio_info(fd, 0, &pfn, NULL, NULL)), 1);
	ASSERT_GT(KEEPS(gmem_pool_frame_state(pool, pfn, state, sizeof(state))), 0);
	ASSERT_TRUE(KEEPS_PTR(gmem_pool_frame(pool, pfn)) != 0);
	ASSERT_EQ(KEEPS(gmem_pool_stats(pool, &st)), 0);
	ASSERT_EQ(KEEPS(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 2 * PG, PG)), 0);
	ASSERT_EQ(KEEPS(gmem_fallocate(fd, PUNCH, PG, PG)), 0);
	ASSERT_EQ(KEEPS(gmem_pin(fd, 0, PG)), 0);
	ASSERT_EQ(KEEPS(gmem_unpin(fd, 0, PG)), 0);
	ASSERT_EQ(KEEPS(gmem_vm_bind(vm, 0, GPA, 4 * PG, fd, 0)), 0);
	ASSERT_EQ(KEEPS(gmem_vm_view_mmap(vm, 0, GMEM_ATTR_PRIVATE, &view)), 0);
	ASSERT_EQ(KEEPS(gmem_set_attributes(fd, 0, 2 * PG, GMEM_ATTR_PRIVATE, 0, NULL)), 0);
	ASSERT_EQ(KEEPS(gmem_get_attributes(fd, 0, &attr, NULL)), 0);
	ASSERT_EQ(KEEPS(gmem_attribute_ranges(fd)), 2);
	ASSERT_EQ(KEEPS(gmem_vm_translate(vm, GPA, &f, &off, &len)), 0);
	ASSERT_EQ(KEEPS(gmem_vm_populate(vm, GPA, buf, PG, 0)), 1);
	ASSERT_EQ(KEEPS(gmem_vm_fault(vm, GPA + PG, GMEM_FAULT_PRIVATE, &pfn, &ex)), 0);
	ASSERT_EQ(KEEPS(gmem_vm_access(vm, GPA + PG, buf, PG, GMEM_FAULT_PRIVATE, &ex)), 0);
	ASSERT_EQ(KEEPS(gmem_vm_stage2(vm, GPA + PG, &pfn, &priv)), 1);
	ASSERT_EQ(KEEPS(gmem_vm_stage2_level(vm, GPA + PG)), 0);
	ASSERT_GE(KEEPS(gmem_vm_invalidate_seq(vm)), 0);
	ASSERT_EQ(KEEPS(gmem_set_attributes(fd, PG, PG, 0, 0, NULL)), 0);
	ASSERT_EQ(KEEPS(gmem_vm_violations(vm, &v, 1)), 0);
	ASSERT_EQ(KEEPS(gmem_vm_unbind(vm, 0)), 0);
	ASSERT_EQ(KEEPS(gmem_munmap(p, PG)), 0);
	/* Close with a mapping left, then the last munmap releases the file. */
	ASSERT_EQ(KEEPS(gmem_close(fd)), 0);
	ASSERT_EQ(KEEPS(gmem_munmap((uint8_t *)p + PG, 7 * PG)), 0);
	ASSERT_EQ(munmap(view, 4 * PG), 0);
	ASSERT_EQ(KEEPS(gmem_vm_close(vm)), 0);
	ASSERT_EQ(KEEPS(gmem_pool_close(pool)), 0);
	ASSERT_TRUE(KEEPS_PTR(gmem_last_error()) != 0);
}

TEST(failed_calls_leave_errno_alone)
{
	struct gmem_pool_stats st;
	struct gmem_exit ex;
	uint64_t attr, pfn;
	void *p = NULL;
	char state[8];
	int pool, vm, fd;

	ASSERT_EQ(KEEPS(gmem_pool_create(1)), -EINVAL);
	pool = gmem_pool_create(16 * GiB);
	ASSERT_GE(pool, 0);
	ASSERT_EQ(KEEPS(gmem_vm_create(pool, "no-such-arch", 0)), -ENOENT);
	vm = gmem_vm_create(pool, "sw", 0);
	ASSERT_GE(vm, 0);
	ASSERT_EQ(KEEPS(gmem_create(vm, 1, 0)), -EINVAL);
	fd = gmem_create(vm, 4 * PG, GMEM_FLAG_MMAP);
	ASSERT_GE(fd, 0);
	/* mmap(2) itself fails here: no room for a 64 TiB reservation. */
	ASSERT_EQ(KEEPS(gmem_mmap(fd, 0, (size_t)1 << 62, RW, MAP_SHARED, &p)), -ENOMEM);
	ASSERT_EQ(KEEPS(gmem_mmap(fd, 0, PG, RW, MAP_PRIVATE, &p)), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_munmap(&p, PG)), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_fallocate(fd, 0, 0, PG)), -EOPNOTSUPP);
	ASSERT_EQ(KEEPS(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, 0)), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_set_attributes(fd, 1, PG, 0, 0, NULL)), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_get_attributes(fd, 1, &attr, NULL)), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_folio_info(fd, 1, NULL, NULL, NULL)), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_pin(fd, 0, PG)), -EFAULT);
	ASSERT_EQ(KEEPS(gmem_unpin(fd, 0, 0)), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_vm_bind(vm, GMEM_MAX_SLOTS, 0, PG, fd, 0)), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_vm_unbind(vm, 0)), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_vm_view_mmap(vm, 0, 0, &p)), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_vm_translate(vm, 0, NULL, NULL, NULL)), -EFAULT);
	ASSERT_EQ(KEEPS(gmem_vm_fault(vm, 0, 0, &pfn, &ex)), -EFAULT);
	ASSERT_EQ(KEEPS(gmem_vm_access(vm, 0, NULL, 1, 0, &ex)), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_vm_stage2_level(vm, 0)), -ENOENT);
	ASSERT_EQ(KEEPS(gmem_vm_populate(vm, 0, NULL, 0, 0)), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_vm_violations(vm, NULL, 1)), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_vm_trace_hooks(fd, trace, NULL)), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_pool_frame_state(pool, ~0ULL, state, sizeof(state))), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_pool_stats(pool, NULL)), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_pool_stats(9999, &st)), -EBADF);
	ASSERT_TRUE(KEEPS_PTR(gmem_pool_frame(9999, 0)) == 0);
	ASSERT_EQ(KEEPS(gmem_size(9999)), -EBADF);
	ASSERT_EQ(KEEPS(gmem_attribute_ranges(vm)), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_vm_stage2(fd, 0, NULL, NULL)), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_vm_invalidate_seq(fd)), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_close(vm)), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_vm_close(fd)), -EINVAL);
	ASSERT_EQ(KEEPS(gmem_pool_close(vm)), -EINVAL);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(gmem_vm_close(vm), 0);
	ASSERT_EQ(gmem_pool_close(pool), 0);
}
