// SPDX-License-Identifier: MIT
/*
 * gmem_last_error(): a failed call names the one condition that failed, in
 * the address space of the argument (file offset or gpa), and an unknown
 * value lists the valid ones.
 */
#include <string.h>
#include <sys/mman.h>

#include "harness.h"

#define PG	GMEM_PAGE_SIZE
#define MiB	(1ULL << 20)
#define GiB	(1ULL << 30)
#define RW	(PROT_READ | PROT_WRITE)

/* @ret is @err and the message holds @want, but none of " or ". */
#define FAILS_SAYING(call, err, want) do {				\
	int ret_ = (call);						\
	const char *msg_ = gmem_last_error();				\
	ASSERT_EQ(ret_, -(err));					\
	if (!strstr(msg_, (want)) || strstr(msg_, " or ")) {		\
		printf("#   message: %s\n", msg_);				\
		test_fail(__FILE__, __LINE__, "message says \"" want "\" alone", 0, 1); \
	}								\
} while (0)

static int pool, vm;

static void setup(const char *arch)
{
	pool = gmem_pool_create(4 * GiB);
	ASSERT_GE(pool, 0);
	vm = gmem_vm_create(pool, arch, 0);
	ASSERT_GE(vm, 0);
}

static void teardown(void)
{
	ASSERT_EQ(gmem_vm_close(vm), 0);
	ASSERT_EQ(gmem_pool_close(pool), 0);
}

TEST(create_names_each_bad_size_and_flag_alone)
{
	setup("sw");
	FAILS_SAYING(gmem_create(vm, 0, 0), EINVAL, "size is 0");
	FAILS_SAYING(gmem_create(vm, 3 * PG, GMEM_FLAG_HUGE_2M), EINVAL,
		     "not a multiple of the folio size (2048 KiB)");
	FAILS_SAYING(gmem_create(vm, 1ULL << 47, 0), EINVAL, "above 64 TiB");
	FAILS_SAYING(gmem_create(vm, 2 * MiB, GMEM_FLAG_HUGE_2M | GMEM_FLAG_HUGE_1G),
		     EINVAL, "GMEM_FLAG_HUGE_2M and GMEM_FLAG_HUGE_1G together");
	FAILS_SAYING(gmem_create(vm, PG, 1ULL << 40), EINVAL,
		     "unknown flags 0x10000000000");
	teardown();
}

TEST(pool_capacity_names_one_condition)
{
	FAILS_SAYING(gmem_pool_create(GiB + PG), EINVAL, "is not a multiple of 1 GiB");
	FAILS_SAYING(gmem_pool_create(5ULL << 40), EINVAL, "is above 4 TiB");
}

TEST(a_second_arch_on_one_pool_says_which_arch_the_pool_runs)
{
	setup("snp");
	FAILS_SAYING(gmem_vm_create(pool, "tdx", 0), EINVAL,
		     "the pool already runs snp VMs, not tdx");
	teardown();
}

TEST(an_unknown_arch_lists_the_known_ones)
{
	pool = gmem_pool_create(GiB);
	ASSERT_GE(pool, 0);
	ASSERT_EQ(gmem_vm_create(pool, "sev", 0), -ENOENT);
	ASSERT_TRUE(strstr(gmem_last_error(), "\"sev\" (sw, snp, tdx or pkvm)"));
	ASSERT_EQ(gmem_pool_close(pool), 0);
}

TEST(file_ranges_are_named_as_file_offsets)
{
	int fd;

	setup("sw");
	fd = gmem_create(vm, 4 * PG, GMEM_FLAG_MMAP);
	ASSERT_GE(fd, 0);
	FAILS_SAYING(gmem_set_attributes(fd, 0, 0, GMEM_ATTR_PRIVATE, 0, NULL),
		     EINVAL, "size is 0");
	FAILS_SAYING(gmem_set_attributes(fd, 1, PG, GMEM_ATTR_PRIVATE, 0, NULL),
		     EINVAL, "file offset 0x1 is not 4 KiB aligned");
	FAILS_SAYING(gmem_set_attributes(fd, 0, PG + 1, GMEM_ATTR_PRIVATE, 0, NULL),
		     EINVAL, "size 0x1001 is not a multiple of 4 KiB");
	FAILS_SAYING(gmem_set_attributes(fd, 4 * PG, PG, GMEM_ATTR_PRIVATE, 0, NULL),
		     EINVAL, "file range [0x4000, 0x5000) is past the end");
	FAILS_SAYING(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 1, PG), EINVAL,
		     "file offset 0x1 is not 4 KiB aligned");
	FAILS_SAYING(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, 1), EINVAL,
		     "len 0x1 is not a multiple of 4 KiB");
	FAILS_SAYING(gmem_fallocate(fd, 0, 0, PG), EOPNOTSUPP,
		     "mode 0: the valid modes are GMEM_FALLOC_KEEP_SIZE and");
	ASSERT_EQ(gmem_close(fd), 0);
	teardown();
}

TEST(a_pinned_page_is_named_by_its_file_offset)
{
	uint64_t err = 0;
	int fd;

	setup("snp");
	fd = gmem_create(vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_pin(fd, 2 * PG, PG), 0);
	FAILS_SAYING(gmem_set_attributes(fd, 0, 4 * PG, GMEM_ATTR_PRIVATE, 0, &err),
		     EAGAIN, "page at file offset 0x2000 is pinned");
	ASSERT_EQ(err, 2 * PG);
	ASSERT_EQ(gmem_unpin(fd, 2 * PG, PG), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	teardown();
}

TEST(bind_names_gpa_file_offset_and_size_apart)
{
	int fd;

	setup("sw");
	fd = gmem_create(vm, 4 * MiB, GMEM_FLAG_HUGE_2M);
	ASSERT_GE(fd, 0);
	FAILS_SAYING(gmem_vm_bind(vm, 0, PG, 2 * MiB, fd, 0), EINVAL,
		     "gpa 0x1000 is not a multiple of the file's folio size (2048 KiB)");
	FAILS_SAYING(gmem_vm_bind(vm, 0, 0, 2 * MiB, fd, PG), EINVAL,
		     "file offset 0x1000 is not a multiple of the file's folio size");
	FAILS_SAYING(gmem_vm_bind(vm, 0, 0, PG, fd, 0), EINVAL,
		     "size 0x1000 is not a multiple of the file's folio size");
	FAILS_SAYING(gmem_vm_bind(vm, 0, 0, 4 * MiB, fd, 2 * MiB), EINVAL,
		     "is past the end of the file (0x400000)");
	FAILS_SAYING(gmem_vm_bind(vm, 0, 0, 0, fd, 0), EINVAL, "size is 0");
	ASSERT_EQ(gmem_close(fd), 0);
	teardown();
}

TEST(mmap_and_munmap_name_one_condition)
{
	void *p = NULL;
	int fd;

	setup("sw");
	fd = gmem_create(vm, 4 * MiB, GMEM_FLAG_MMAP | GMEM_FLAG_HUGE_2M);
	ASSERT_GE(fd, 0);
	FAILS_SAYING(gmem_mmap(fd, 0, 0, RW, MAP_SHARED, &p), EINVAL, "length is 0");
	FAILS_SAYING(gmem_mmap(fd, PG, 2 * MiB, RW, MAP_SHARED, &p), EINVAL,
		     "file offset 0x1000 is not a multiple of the folio size");
	FAILS_SAYING(gmem_mmap(fd, 0, PG, RW, MAP_SHARED, &p), EINVAL,
		     "length 0x1000 is not a multiple of the folio size");
	FAILS_SAYING(gmem_mmap(fd, 4 * MiB, 2 * MiB, RW, MAP_SHARED, &p), EINVAL,
		     "file offset 0x400000 is past the end of the file");
	p = NULL;
	FAILS_SAYING(gmem_mmap(fd, 0, 2 * MiB, RW, MAP_SHARED | MAP_FIXED, &p),
		     EINVAL, "MAP_FIXED address is NULL");
	FAILS_SAYING(gmem_munmap((void *)0x10000, 0), EINVAL, "length is 0");
	FAILS_SAYING(gmem_munmap((void *)0x10001, PG), EINVAL, "not 4 KiB aligned");
	ASSERT_EQ(gmem_close(fd), 0);
	teardown();
}

TEST(populate_names_one_condition)
{
	static uint8_t buf[PG];

	setup("snp");
	FAILS_SAYING(gmem_vm_populate(vm, 0, buf, 0, 0), EINVAL, "len is 0");
	FAILS_SAYING(gmem_vm_populate(vm, 1, buf, PG, 0), EINVAL,
		     "gpa 0x1 len 0x1000 is not 4 KiB aligned");
	FAILS_SAYING(gmem_vm_populate(vm, -PG, buf, 2 * PG, 0), EINVAL, "wraps");
	teardown();
}

TEST(frame_state_names_one_condition)
{
	char s[64];

	setup("sw");
	FAILS_SAYING(gmem_pool_frame_state(pool, 1ULL << 40, s, sizeof(s)), EINVAL,
		     "pfn 0x10000000000 is outside the pool (0x100000 frames)");
	FAILS_SAYING(gmem_pool_frame_state(pool, 0, NULL, 8), EINVAL, "no buffer");
	teardown();
}
