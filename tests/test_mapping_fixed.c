// SPDX-License-Identifier: MIT
/* gmem_mmap with MAP_FIXED: at the address, over private pages, over other gmem mappings. */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mapping_helpers.h"

/* ------------------------------------------------------------- MAP_FIXED */

TEST(mmap_fixed_maps_at_the_address_inside_a_reserved_region_and_fences_private_pages)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *r = reserve(8 * PG), *p = r + 2 * PG, v = 0x77;
	int h;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(map_fixed(fd, 0, 4 * PG, p), 0);
	fill_pages(p, 4, 30);
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(mismatch(frame_of(&e, fd, i * PG), PG, (uint8_t)(30 + i)), -1);
	/* The rest of the reservation is as it was. */
	ASSERT_EQ(probe_read(r + PG, &v), SIGSEGV);
	ASSERT_EQ(probe_read(r + 6 * PG, &v), SIGSEGV);
	ASSERT_TRUE(!unmapped(r + 6 * PG));
	ASSERT_EQ(find(p + PG + 5, &h), PG + 5);
	ASSERT_EQ(h, fd);
	ASSERT_EQ(find(r + PG, NULL), -1);
	ASSERT_EQ(find(r + 6 * PG, NULL), -1);

	/* Conversions reach the mapping at its fixed address. */
	ASSERT_EQ(to_private(fd, PG, 2 * PG), 0);
	ASSERT_EQ(probe_read(p + PG, &v), SIGSEGV);
	ASSERT_EQ(probe_write(p + 2 * PG + 4095, 0), SIGSEGV);
	ASSERT_EQ(v, 0x77);
	ASSERT_EQ(pages_match(p, 0, 1, 30), 1);
	ASSERT_EQ(pages_match(p, 3, 4, 30), 1);
	ASSERT_EQ(to_shared(fd, PG, 2 * PG), 0);
	ASSERT_EQ(pages_match(p, 0, 4, 30), 4);

	unmap(p, 4 * PG);
	ASSERT_TRUE(unmapped(p));
	ASSERT_EQ(munmap(r, 8 * PG), 0);
	close_file(&e, fd);
	env_free(&e);
}

TEST(mmap_fixed_over_private_pages_never_shows_them_and_may_extend_past_the_end)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 3 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *r, v = 0x77;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, 3 * PG), 0);
	for (int i = 0; i < 3; i++)
		fill(frame_of(&e, fd, i * PG), PG, (uint8_t)(40 + i));
	ASSERT_EQ(to_private(fd, PG, PG), 0);

	/* Over ordinary readable memory: it is replaced, page 1 fenced at once. */
	r = mmap(NULL, 5 * PG, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(r != MAP_FAILED);
	memset(r, 0xab, 5 * PG);
	ASSERT_EQ(map_fixed(fd, 0, 5 * PG, r), 0);
	ASSERT_EQ(pages_match(r, 0, 1, 40), 1);
	ASSERT_EQ(probe_read(r + PG, &v), SIGSEGV);
	ASSERT_EQ(probe_read(r + 2 * PG - 1, &v), SIGSEGV);
	ASSERT_EQ(v, 0x77);
	ASSERT_EQ(pages_match(r, 2, 3, 40), 1);
	ASSERT_EQ(probe_read(r + 3 * PG, &v), SIGBUS);		/* past the end */
	ASSERT_EQ(probe_read(r + 5 * PG - 1, &v), SIGBUS);
	ASSERT_EQ(find(r + 4 * PG, NULL), 4 * PG);
	ASSERT_EQ(to_shared(fd, PG, PG), 0);
	ASSERT_EQ(pages_match(r, 0, 3, 40), 3);
	unmap(r, 5 * PG);
	close_file(&e, fd);
	env_free(&e);
}

TEST(mmap_fixed_refuses_bad_addresses_and_changes_nothing)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	int huge = gmem_create(e.vm, 2 * MiB, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED |
			       GMEM_FLAG_HUGE_2M);
	uint8_t *r = reserve(6 * MiB), *at;
	void *addr;
	long before;

	ASSERT_GE(fd, 0);
	ASSERT_GE(huge, 0);
	at = (uint8_t *)(((uintptr_t)r + 2 * MiB - 1) & ~(uintptr_t)(2 * MiB - 1));
	before = count_process_mappings();
	addr = NULL;
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, MAP_SHARED | MAP_FIXED, &addr), -EINVAL);
	addr = at + 1;
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, MAP_SHARED | MAP_FIXED, &addr), -EINVAL);
	addr = at + PG / 2;
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, MAP_SHARED | MAP_FIXED, &addr), -EINVAL);
	addr = (void *)(UINTPTR_MAX & ~(uintptr_t)(PG - 1));
	ASSERT_EQ(gmem_mmap(fd, 0, 2 * PG, RW, MAP_SHARED | MAP_FIXED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, MAP_SHARED | MAP_FIXED, NULL), -EINVAL);
	/* A huge file's mapping starts on a folio boundary. */
	ASSERT_EQ(map_fixed(huge, 0, 2 * MiB, at + PG), -EINVAL);
	ASSERT_EQ(map_fixed(huge, 0, 2 * MiB, at + MiB), -EINVAL);
	ASSERT_EQ(count_process_mappings(), before);
	ASSERT_EQ(probe_read(at, NULL), SIGSEGV);
	ASSERT_EQ(find(at, NULL), -1);

	ASSERT_EQ(map_fixed(huge, 0, 2 * MiB, at), 0);
	at[5] = 9;
	ASSERT_EQ(gmem_folio_info(huge, 0, NULL, NULL, NULL), 1);
	ASSERT_EQ(to_private(huge, 7 * PG, PG), 0);
	ASSERT_EQ(probe_read(at + 7 * PG, NULL), SIGSEGV);
	ASSERT_EQ(probe_read(at + 8 * PG, NULL), 0);
	/* 4 KiB pieces of a huge mapping unmap like any other. */
	ASSERT_EQ(gmem_munmap(at + 100 * PG, PG), 0);
	ASSERT_TRUE(unmapped(at + 100 * PG));
	ASSERT_EQ(to_private(huge, 0, 2 * MiB), 0);
	ASSERT_EQ(probe_read(at + 99 * PG, NULL), SIGSEGV);
	ASSERT_EQ(probe_read(at + 101 * PG, NULL), SIGSEGV);
	ASSERT_TRUE(unmapped(at + 100 * PG));
	ASSERT_EQ(to_shared(huge, 0, 2 * MiB), 0);
	ASSERT_EQ(at[5], 9);
	ASSERT_EQ(gmem_munmap(at, 2 * MiB), 0);
	ASSERT_EQ(munmap(r, 6 * MiB), 0);
	ASSERT_EQ(gmem_close(huge), 0);
	close_file(&e, fd);
	env_free(&e);
}

/*
 * MAP_FIXED over the middle of another gmem mapping takes that part out of
 * the other mapping's record: its conversions no longer touch it, even
 * once something else entirely is mapped there.
 */
TEST(mmap_fixed_over_part_of_a_gmem_mapping_drops_that_part_from_its_record)
{
	struct env e = env_new("sw");
	int a = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	int b = gmem_create(e.vm, 2 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	struct gmem_pool_stats st;
	uint8_t *p, *anon, v = 0x77;
	int h;

	ASSERT_GE(a, 0);
	ASSERT_GE(b, 0);
	p = map(a, 0, 4 * PG, RW);
	fill_pages(p, 4, 50);
	ASSERT_EQ(map_fixed(b, 0, 2 * PG, p + PG), 0);
	fill_pages(p + PG, 2, 60);
	ASSERT_EQ(mismatch(frame_of(&e, b, PG), PG, 61), -1);
	ASSERT_EQ(find(p, &h), 0);
	ASSERT_EQ(h, a);
	ASSERT_EQ(find(p + PG + 3, &h), 3);
	ASSERT_EQ(h, b);
	ASSERT_EQ(find(p + 3 * PG, &h), 3 * PG);
	ASSERT_EQ(h, a);

	/* a's conversion fences a's two pieces only. */
	ASSERT_EQ(to_private(a, 0, 4 * PG), 0);
	ASSERT_EQ(probe_read(p, &v), SIGSEGV);
	ASSERT_EQ(probe_read(p + 3 * PG, &v), SIGSEGV);
	ASSERT_EQ(v, 0x77);
	ASSERT_EQ(pages_match(p + PG, 0, 2, 60), 2);
	ASSERT_EQ(to_shared(a, 0, 4 * PG), 0);
	ASSERT_EQ(pages_match(p, 0, 1, 50), 1);
	ASSERT_EQ(pages_match(p, 3, 4, 50), 1);
	/* The bytes a's pages 1 and 2 held are still there, behind b. */
	ASSERT_EQ(mismatch(frame_of(&e, a, PG), PG, 51), -1);

	/* b goes; plain anonymous memory takes its place. */
	unmap(p + PG, 2 * PG);
	anon = mmap(p + PG, 2 * PG, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
		    -1, 0);
	ASSERT_TRUE(anon == p + PG);
	memset(anon, 0x5c, 2 * PG);
	ASSERT_EQ(find(anon, NULL), -1);
	ASSERT_EQ(to_private(a, 0, 4 * PG), 0);
	ASSERT_EQ(to_private(b, 0, 2 * PG), 0);
	ASSERT_EQ(probe_read(anon, &v), 0);
	ASSERT_EQ(v, 0x5c);
	ASSERT_EQ(probe_write(anon + 2 * PG - 1, 1), 0);
	ASSERT_EQ(probe_read(p, NULL), SIGSEGV);
	ASSERT_EQ(probe_read(p + 3 * PG, NULL), SIGSEGV);

	/* b is released with its last mapping; a's pieces around anon go in one call. */
	ASSERT_EQ(gmem_close(b), 0);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 1);
	ASSERT_EQ(gmem_munmap(p, 4 * PG), 0);
	ASSERT_TRUE(unmapped(p));
	ASSERT_TRUE(unmapped(p + 3 * PG));
	ASSERT_EQ(probe_read(anon, &v), 0);	/* not gmem: left alone */
	ASSERT_EQ(munmap(anon, 2 * PG), 0);
	close_file(&e, a);
	env_free(&e);
}

TEST(mmap_fixed_over_its_own_file_replaces_the_old_part)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *p;

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 4 * PG, RW);
	fill_pages(p, 4, 70);
	/* Pages 2 and 3 of the file, again, over the mapping's pages 0 and 1. */
	ASSERT_EQ(map_fixed(fd, 2 * PG, 2 * PG, p), 0);
	ASSERT_EQ(mismatch(p, PG, 72), -1);
	ASSERT_EQ(mismatch(p + PG, PG, 73), -1);
	ASSERT_EQ(find(p, NULL), 2 * PG);
	ASSERT_EQ(find(p + 2 * PG, NULL), 2 * PG);
	ASSERT_EQ(to_private(fd, 0, PG), 0);	/* no longer mapped anywhere */
	ASSERT_EQ(pages_match(p, 1, 2, 72), 1);
	ASSERT_EQ(to_private(fd, 2 * PG, PG), 0);	/* mapped twice now */
	ASSERT_EQ(probe_read(p, NULL), SIGSEGV);
	ASSERT_EQ(probe_read(p + 2 * PG, NULL), SIGSEGV);
	ASSERT_EQ(mismatch(p + 3 * PG, PG, 73), -1);
	ASSERT_EQ(gmem_munmap(p, 4 * PG), 0);
	close_file(&e, fd);
	env_free(&e);
}
