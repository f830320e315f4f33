// SPDX-License-Identifier: MIT
/* gmem files: creation rules, fallocate modes and errors, zero on first use, release. */
#include <string.h>

#include "harness.h"

#define MiB (1ULL << 20)

TEST(create_rejects_bad_size_and_flags_as_the_kernel)
{
	struct env e = env_new("sw");

	ASSERT_EQ(gmem_create(e.vm, 0, 0), -EINVAL);
	ASSERT_EQ(gmem_create(e.vm, 4095, 0), -EINVAL);
	ASSERT_EQ(gmem_create(e.vm, 4097, 0), -EINVAL);
	ASSERT_EQ(gmem_create(e.vm, 4096, 1ULL << 2), -EINVAL);
	ASSERT_EQ(gmem_create(e.vm, 4096, ~0ULL), -EINVAL);
	ASSERT_EQ(gmem_create(e.pool, 4096, 0), -EINVAL);	/* not a VM */
	ASSERT_EQ(gmem_create(9999, 4096, 0), -EBADF);
	env_free(&e);
}

TEST(create_returns_distinct_handles_and_size_is_fixed)
{
	struct env e = env_new("sw");
	int a = gmem_create(e.vm, MiB, 0), b = gmem_create(e.vm, 2 * MiB, GMEM_FLAG_MMAP);

	ASSERT_GE(a, 0);
	ASSERT_GE(b, 0);
	ASSERT_NE(a, b);
	ASSERT_EQ(gmem_size(a), MiB);
	ASSERT_EQ(gmem_size(b), 2 * MiB);
	ASSERT_EQ(gmem_close(a), 0);
	ASSERT_EQ(gmem_close(a), -EBADF);
	ASSERT_EQ(gmem_size(a), -EBADF);
	ASSERT_EQ(gmem_close(b), 0);
	env_free(&e);
}

/*
 * Handles come lowest-first, as file descriptors do, however many are open:
 * closed ones, at word and summary-word boundaries of the table's bitmap,
 * come back in increasing order.
 */
TEST(closed_handles_are_reused_lowest_first_past_thousands_open)
{
	enum { N = 4300 };
	static const int closed[] = { 4150, 64, 4095, 4096, 63, 0, 4299 };
	enum { NC = sizeof(closed) / sizeof(closed[0]) };
	struct env e = env_new("sw");
	static int fds[N];
	int want[NC];

	for (int i = 0; i < N; i++) {
		fds[i] = gmem_create(e.vm, GMEM_PAGE_SIZE, 0);
		ASSERT_GE(fds[i], 0);
		if (i)
			ASSERT_EQ(fds[i], fds[i - 1] + 1);
	}
	for (int k = 0; k < NC; k++) {
		ASSERT_EQ(gmem_close(fds[closed[k]]), 0);
		want[k] = fds[closed[k]];
	}
	for (int k = 0; k < NC; k++)	/* sort */
		for (int j = k + 1; j < NC; j++)
			if (want[j] < want[k]) {
				int t = want[k];

				want[k] = want[j];
				want[j] = t;
			}
	for (int k = 0; k < NC; k++) {
		int fd = gmem_create(e.vm, GMEM_PAGE_SIZE, 0);

		ASSERT_EQ(fd, want[k]);
	}
	ASSERT_EQ(gmem_create(e.vm, GMEM_PAGE_SIZE, 0), fds[N - 1] + 1);
	ASSERT_EQ(gmem_close(fds[N - 1] + 1), 0);
	for (int i = 0; i < N; i++)
		ASSERT_EQ(gmem_close(fds[i]), 0);
	env_free(&e);
}

TEST(initial_attributes_follow_init_shared)
{
	struct env e = env_new("sw");
	int priv = gmem_create(e.vm, MiB, 0);
	int shared = gmem_create(e.vm, MiB, GMEM_FLAG_INIT_SHARED);
	uint64_t attr, end;

	ASSERT_EQ(gmem_get_attributes(priv, 0, &attr, &end), 0);
	ASSERT_EQ(attr, GMEM_ATTR_PRIVATE);
	ASSERT_EQ(end, MiB);
	ASSERT_EQ(gmem_get_attributes(shared, 4096, &attr, &end), 0);
	ASSERT_EQ(attr, 0);
	ASSERT_EQ(gmem_attribute_ranges(shared), 1);
	ASSERT_EQ(gmem_get_attributes(shared, MiB, &attr, NULL), -EINVAL);
	gmem_close(priv);
	gmem_close(shared);
	env_free(&e);
}

TEST(fallocate_modes_and_errors_follow_the_kernel)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, MiB, 0);

	ASSERT_EQ(gmem_fallocate(fd, 0, 0, 4096), -EOPNOTSUPP);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_PUNCH_HOLE, 0, 4096), -EOPNOTSUPP);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | 0x10, 0, 4096), -EOPNOTSUPP);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 1, 4096), -EINVAL);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, 4095), -EINVAL);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, MiB + 4096), -EINVAL);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, MiB, 4096), -EINVAL);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 4096, ~0ULL - 4095), -EINVAL);
	/* Punching at or past the end succeeds and does nothing. */
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE, MiB, 4096), 0);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE, 4 * MiB, MiB), 0);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, MiB), 0);
	gmem_close(fd);
	env_free(&e);
}

TEST(fallocate_of_length_zero_is_einval_before_the_mode_as_the_kernel)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, MiB, 0);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, 0), -EINVAL);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE, 0, 0), -EINVAL);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, MiB, 0), -EINVAL);
	/* vfs_fallocate looks at len before the mode. */
	ASSERT_EQ(gmem_fallocate(fd, 0, 0, 0), -EINVAL);
	ASSERT_EQ(gmem_fallocate(fd, 0x40, 0, 0), -EINVAL);
	/* The handle still comes first. */
	ASSERT_EQ(gmem_fallocate(9999, GMEM_FALLOC_KEEP_SIZE, 0, 0), -EBADF);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(allocate_then_punch_accounts_frames)
{
	struct env e = env_new("sw");
	struct gmem_pool_stats st;
	int fd = gmem_create(e.vm, MiB, 0);

	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, 64 * 1024), 0);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.frames_in_use, 16);
	ASSERT_EQ(gmem_folio_info(fd, 0, NULL, NULL, NULL), 1);
	ASSERT_EQ(gmem_folio_info(fd, 64 * 1024, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE, 4096, 8192), 0);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.frames_in_use, 14);
	ASSERT_EQ(gmem_folio_info(fd, 4096, NULL, NULL, NULL), 0);
	gmem_close(fd);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.frames_in_use, 0);
	ASSERT_EQ(st.files, 0);
	ASSERT_EQ(st.frames_reserved, 0);
	env_free(&e);
}

TEST(folios_read_zero_on_first_use_even_on_reused_frames)
{
	struct env e = env_new("sw");
	/* Shared pages: the test writes their frames through the direct map. */
	int fd = gmem_create(e.vm, MiB, GMEM_FLAG_INIT_SHARED);
	uint64_t pfn, pfn2;
	uint8_t *p;

	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, 4096), 0);
	ASSERT_EQ(gmem_folio_info(fd, 0, &pfn, NULL, NULL), 1);
	p = gmem_pool_frame(e.pool, pfn);
	ASSERT_TRUE(p);
	ASSERT_EQ(p[0] | p[4095], 0);
	memset(p, 0xaa, 4096);			/* the old owner's data */
	gmem_close(fd);
	/* A new file reuses the freed window: the frame must read zero. */
	fd = gmem_create(e.vm, MiB, GMEM_FLAG_INIT_SHARED);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, 4096), 0);
	ASSERT_EQ(gmem_folio_info(fd, 0, &pfn2, NULL, NULL), 1);
	ASSERT_EQ(pfn2, pfn);
	for (int i = 0; i < 4096; i++)
		ASSERT_EQ(p[i], 0);
	gmem_close(fd);
	env_free(&e);
}

TEST(closed_handles_and_wrong_kinds_are_refused)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, MiB, 0);

	ASSERT_EQ(gmem_fallocate(e.vm, GMEM_FALLOC_KEEP_SIZE, 0, 4096), -EINVAL);
	ASSERT_EQ(gmem_close(e.vm), -EINVAL);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, 4096), -EBADF);
	ASSERT_EQ(gmem_set_attributes(fd, 0, 4096, 0, 0, NULL), -EBADF);
	ASSERT_EQ(gmem_close(-1), -EBADF);
	env_free(&e);
}
