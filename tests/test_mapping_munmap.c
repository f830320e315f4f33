// SPDX-License-Identifier: MIT
/*
 * gmem_munmap: its errors, partial unmaps that leave records fencing exactly
 * what is left, gmem_mapping_find, and unmaps racing conversions.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mapping_helpers.h"

TEST(munmap_refuses_bad_input_and_ranges_without_gmem_and_changes_nothing)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	static uint8_t not_gmem[2 * PG] __attribute__((aligned(4096)));
	uint8_t *p, *anon;

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 4 * PG, RW);
	fill_pages(p, 4, 20);
	anon = mmap(NULL, PG, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(anon != MAP_FAILED);

	/* Bad input. */
	ASSERT_EQ(gmem_munmap(NULL, 0), -EINVAL);
	ASSERT_EQ(gmem_munmap(p, 0), -EINVAL);
	ASSERT_EQ(gmem_munmap(p + 1, 4 * PG), -EINVAL);
	ASSERT_EQ(gmem_munmap(p + PG / 2, PG), -EINVAL);
	ASSERT_EQ(gmem_munmap(p, SIZE_MAX), -EINVAL);
	ASSERT_EQ(gmem_munmap(p, SIZE_MAX - PG + 2), -EINVAL);
	ASSERT_EQ(gmem_munmap((void *)(UINTPTR_MAX & ~(uintptr_t)(PG - 1)), 2 * PG),
		  -EINVAL);
	/* No gmem mapping in the range. */
	ASSERT_EQ(gmem_munmap(NULL, PG), -EINVAL);
	ASSERT_EQ(gmem_munmap(not_gmem, 2 * PG), -EINVAL);
	ASSERT_EQ(gmem_munmap(anon, PG), -EINVAL);
	ASSERT_EQ(gmem_munmap(p + 4 * PG, PG), -EINVAL);	/* just after */
	ASSERT_EQ(gmem_munmap(p - PG, PG), -EINVAL);		/* just before */

	/* Nothing changed: every page readable, and all fenced by a conversion. */
	ASSERT_EQ(probe_write(anon, 1), 0);
	ASSERT_EQ(pages_match(p, 0, 4, 20), 4);
	ASSERT_EQ(to_private(fd, 0, 4 * PG), 0);
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(probe_read(p + i * PG, NULL), SIGSEGV);
	ASSERT_EQ(to_shared(fd, 0, 4 * PG), 0);
	ASSERT_EQ(pages_match(p, 0, 4, 20), 4);
	ASSERT_EQ(munmap(anon, PG), 0);

	/* A length is rounded up to whole pages, as munmap(2) does. */
	ASSERT_EQ(gmem_munmap(p, 1), 0);
	ASSERT_TRUE(unmapped(p));
	ASSERT_EQ(pages_match(p, 1, 4, 20), 3);
	ASSERT_EQ(gmem_munmap(p, PG), -EINVAL);		/* gone already */
	unmap(p + PG, 3 * PG);
	ASSERT_EQ(gmem_munmap(p, 4 * PG), -EINVAL);	/* twice */
	close_file(&e, fd);
	env_free(&e);
}

/* ------------------------------------------------------- partial munmap */

TEST(munmap_of_head_tail_and_middle_leaves_records_that_fence_exactly_the_rest)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 8 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	struct gmem_pool_stats st;
	uint8_t *p, *anon;
	int h;

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 8 * PG, RW);
	fill_pages(p, 8, 80);

	ASSERT_EQ(gmem_munmap(p, PG), 0);			/* head */
	ASSERT_EQ(gmem_munmap(p + 7 * PG, PG), 0);		/* tail */
	ASSERT_EQ(gmem_munmap(p + 3 * PG, 2 * PG), 0);	/* middle */
	/* Left: pages 1-2 and 5-6, each at its own file offset. */
	for (int i = 0; i < 8; i++) {
		bool kept = i == 1 || i == 2 || i == 5 || i == 6;

		ASSERT_EQ(unmapped(p + i * PG), !kept);
		ASSERT_EQ(find(p + i * PG + 9, &h), kept ? i * (long long)PG + 9 : -1);
		if (kept)
			ASSERT_EQ(h, fd);
	}
	ASSERT_EQ(pages_match(p, 1, 3, 80), 2);
	ASSERT_EQ(pages_match(p, 5, 7, 80), 2);

	/* Something else in the hole: conversions must not fence it. */
	anon = mmap(p + 3 * PG, 2 * PG, RW,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	ASSERT_TRUE(anon == p + 3 * PG);
	anon[0] = 1;
	ASSERT_EQ(to_private(fd, 0, 8 * PG), 0);
	for (int i = 1; i < 7; i++)
		ASSERT_EQ(probe_read(p + i * PG, NULL), i == 3 || i == 4 ? 0 : SIGSEGV);
	ASSERT_TRUE(unmapped(p));
	ASSERT_TRUE(unmapped(p + 7 * PG));
	ASSERT_EQ(to_shared(fd, 0, 8 * PG), 0);
	ASSERT_EQ(pages_match(p, 1, 3, 80), 2);
	ASSERT_EQ(pages_match(p, 5, 7, 80), 2);
	/* Part of each piece: exactly those pages. */
	ASSERT_EQ(to_private(fd, 2 * PG, 4 * PG), 0);
	ASSERT_EQ(pages_match(p, 1, 2, 80), 1);
	ASSERT_EQ(probe_read(p + 2 * PG, NULL), SIGSEGV);
	ASSERT_EQ(probe_read(p + 5 * PG, NULL), SIGSEGV);
	ASSERT_EQ(pages_match(p, 6, 7, 80), 1);
	ASSERT_EQ(anon[0], 1);
	ASSERT_EQ(to_shared(fd, 2 * PG, 4 * PG), 0);
	ASSERT_EQ(munmap(anon, 2 * PG), 0);

	/* The file outlives its handle until the last piece goes. */
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(find(p + PG, &h), PG);
	ASSERT_EQ(h, -1);
	unmap(p + PG, 2 * PG);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 1);
	ASSERT_EQ(pages_match(p, 5, 7, 80), 2);
	unmap(p + 5 * PG, PG);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 1);
	unmap(p + 6 * PG, PG);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 0);
	ASSERT_EQ(st.frames_in_use, 0);
	ASSERT_EQ(st.frames_reserved, 0);
	env_free(&e);
}

TEST(munmap_over_two_mappings_and_a_gap_unmaps_both_parts_and_leaves_the_gap)
{
	struct env e = env_new("snp");
	int a = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	int b = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *r = reserve(10 * PG), *gap = r + 5 * PG;
	struct gmem_pool_stats st;
	int h;

	ASSERT_GE(a, 0);
	ASSERT_GE(b, 0);
	ASSERT_EQ(map_fixed(a, 0, 4 * PG, r + PG), 0);		/* r+1 .. r+5 */
	ASSERT_EQ(map_fixed(b, 0, 4 * PG, r + 6 * PG), 0);	/* r+6 .. r+10 */
	ASSERT_TRUE(mmap(gap, PG, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == gap);
	gap[0] = 0x3c;
	fill_pages(r + PG, 4, 90);
	fill_pages(r + 6 * PG, 4, 100);

	/* a's pages 2-3, the gap, b's pages 0-1. */
	ASSERT_EQ(gmem_munmap(r + 3 * PG, 5 * PG), 0);
	ASSERT_EQ(pages_match(r + PG, 0, 2, 90), 2);
	ASSERT_TRUE(unmapped(r + 3 * PG));
	ASSERT_TRUE(unmapped(r + 4 * PG));
	ASSERT_EQ(gap[0], 0x3c);
	ASSERT_TRUE(unmapped(r + 6 * PG));
	ASSERT_TRUE(unmapped(r + 7 * PG));
	ASSERT_EQ(pages_match(r + 6 * PG, 2, 4, 100), 2);
	ASSERT_EQ(find(r + 2 * PG, &h), PG);
	ASSERT_EQ(h, a);
	ASSERT_EQ(find(r + 8 * PG, &h), 2 * PG);
	ASSERT_EQ(h, b);
	ASSERT_EQ(find(r + 3 * PG, NULL), -1);
	ASSERT_EQ(find(gap, NULL), -1);

	/* Each file's conversion fences its piece and nothing else. */
	ASSERT_EQ(to_private(a, 0, 4 * PG), 0);
	ASSERT_EQ(probe_read(r + PG, NULL), SIGSEGV);
	ASSERT_EQ(probe_read(r + 2 * PG, NULL), SIGSEGV);
	ASSERT_EQ(pages_match(r + 6 * PG, 2, 4, 100), 2);
	ASSERT_EQ(to_private(b, 0, 4 * PG), 0);
	ASSERT_EQ(probe_read(r + 8 * PG, NULL), SIGSEGV);
	ASSERT_EQ(probe_read(r + 9 * PG, NULL), SIGSEGV);
	ASSERT_EQ(probe_write(gap, 1), 0);

	/* The last pieces go together; both files are released. */
	ASSERT_EQ(gmem_close(a), 0);
	ASSERT_EQ(gmem_close(b), 0);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 2);
	ASSERT_EQ(gmem_munmap(r, 10 * PG), 0);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 0);
	ASSERT_EQ(st.frames_in_use, 0);
	ASSERT_EQ(st.frames_reserved, 0);
	ASSERT_EQ(probe_read(gap, NULL), 0);
	ASSERT_EQ(gmem_munmap(r, 10 * PG), -EINVAL);
	ASSERT_EQ(munmap(r, 10 * PG), 0);
	env_free(&e);
}

/* The part of a mapping past the end of the file cuts like the rest. */
TEST(munmap_around_the_end_of_the_file_keeps_sigbus_and_fences_right)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 2 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *p, *q;

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 6 * PG, RW);		/* pages 2-5 past the end */
	q = map(fd, 0, 6 * PG, RW);
	fill_pages(p, 2, 110);

	/* p: only past-the-end pages left, at offsets past the end. */
	ASSERT_EQ(gmem_munmap(p, 3 * PG), 0);
	ASSERT_EQ(find(p + 3 * PG, NULL), 3 * PG);
	ASSERT_EQ(find(p + 5 * PG + 4095, NULL), 5 * PG + 4095);
	ASSERT_EQ(probe_read(p + 3 * PG, NULL), SIGBUS);
	ASSERT_EQ(probe_read(p + 5 * PG, NULL), SIGBUS);
	ASSERT_EQ(gmem_munmap(p + 4 * PG, PG), 0);	/* a middle past the end */
	ASSERT_EQ(probe_read(p + 3 * PG, NULL), SIGBUS);
	ASSERT_EQ(probe_read(p + 5 * PG, NULL), SIGBUS);
	ASSERT_TRUE(unmapped(p + 4 * PG));

	/* q: cut in the middle across the end: [0, 1) and [3, 6) stay. */
	ASSERT_EQ(gmem_munmap(q + PG, 2 * PG), 0);
	ASSERT_EQ(to_private(fd, 0, 2 * PG), 0);
	ASSERT_EQ(probe_read(q, NULL), SIGSEGV);
	ASSERT_EQ(probe_read(q + 3 * PG, NULL), SIGBUS);
	ASSERT_EQ(to_shared(fd, 0, 2 * PG), 0);
	ASSERT_EQ(pages_match(q, 0, 1, 110), 1);
	ASSERT_EQ(probe_read(q + 3 * PG, NULL), SIGBUS);

	ASSERT_EQ(gmem_munmap(p, 6 * PG), 0);
	ASSERT_EQ(gmem_munmap(q, 6 * PG), 0);
	close_file(&e, fd);
	env_free(&e);
}

TEST(mapping_find_answers_for_inside_outside_and_null_outputs)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	static uint8_t not_gmem[PG] __attribute__((aligned(4096)));
	uint64_t off = 0;
	uint8_t *p;
	int h = 0;

	ASSERT_GE(fd, 0);
	p = map(fd, PG, 3 * PG, RW);
	ASSERT_EQ(gmem_mapping_find(p, NULL, NULL), 1);
	ASSERT_EQ(gmem_mapping_find(p + 3 * PG - 1, &h, &off), 1);
	ASSERT_EQ(h, fd);
	ASSERT_EQ(off, 4 * PG - 1);
	ASSERT_EQ(gmem_mapping_find(p + 3 * PG, &h, &off), 0);
	ASSERT_EQ(gmem_mapping_find(p - 1, NULL, NULL), 0);
	ASSERT_EQ(gmem_mapping_find(NULL, &h, &off), 0);
	ASSERT_EQ(gmem_mapping_find(not_gmem, &h, &off), 0);
	ASSERT_EQ(gmem_mapping_find(&h, &h, &off), 0);
	ASSERT_EQ(h, fd);	/* untouched on a miss */
	ASSERT_EQ(off, 4 * PG - 1);
	unmap(p + PG, PG);
	ASSERT_EQ(find(p + PG, NULL), -1);
	ASSERT_EQ(find(p, NULL), PG);
	ASSERT_EQ(find(p + 2 * PG, NULL), 3 * PG);
	unmap(p, 3 * PG);
	ASSERT_EQ(find(p, NULL), -1);
	ASSERT_EQ(find(p + 2 * PG, NULL), -1);
	close_file(&e, fd);
	env_free(&e);
}

/*
 * Conversions run flat out while mappings are cut to pieces, replaced with
 * MAP_FIXED and unmapped: no conversion ever fails (a fence of an address
 * no longer mapped would), and memory put where a piece was is never fenced.
 */
struct churn {
	int fd;
	atomic_bool stop;
	atomic_int failures;
	atomic_uint rounds;
};

static void *convert_flat_out(void *arg)
{
	struct churn *c = arg;

	for (unsigned int i = 0; !atomic_load(&c->stop); i++) {
		if (gmem_set_attributes(c->fd, (i % 7) * PG, 2 * PG,
					i & 1 ? GMEM_ATTR_PRIVATE : 0, 0, NULL))
			atomic_fetch_add(&c->failures, 1);
		atomic_fetch_add(&c->rounds, 1);
	}
	return NULL;
}

TEST(conversions_racing_partial_munmaps_and_map_fixed_never_fence_a_lost_address)
{
	struct env e = env_new("sw");
	struct churn c = {
		.fd = gmem_create(e.vm, 8 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED),
	};
	static const int order[8] = { 3, 0, 7, 5, 1, 6, 2, 4 };
	unsigned int rounds;
	int failures;
	pthread_t t;

	ASSERT_GE(c.fd, 0);
	ASSERT_EQ(pthread_create(&t, NULL, convert_flat_out, &c), 0);
	/* On a loaded host the converter may not run at all unless waited for. */
	while (!atomic_load(&c.rounds))
		sched_yield();
	for (int round = 0; round < 200; round++) {
		uint8_t *p = map(c.fd, 0, 8 * PG, RW);

		bool ours[8];

		/* A piece of the file again over pages 2-3, by MAP_FIXED. */
		ASSERT_EQ(map_fixed(c.fd, 6 * PG, 2 * PG, p + 2 * PG), 0);
		for (int k = 0; k < 8; k++) {
			int i = (order[k] + round) % 8;
			uint8_t *anon;

			ASSERT_EQ(gmem_munmap(p + i * PG, PG), 0);
			anon = mmap(p + i * PG, PG, RW, MAP_PRIVATE | MAP_ANONYMOUS |
				    MAP_FIXED_NOREPLACE, -1, 0);
			/*
			 * The hole is free for anyone: another thread's
			 * allocation (the converter's, a sanitizer's) may
			 * take it first. Then it is not ours to touch.
			 */
			ours[i] = anon == p + i * PG;
			ASSERT_TRUE(ours[i] || (anon == MAP_FAILED && errno == EEXIST));
			if (ours[i])
				ASSERT_EQ(probe_write(anon, 1), 0);
		}
		for (int i = 0; i < 8; i++)
			if (ours[i])
				ASSERT_EQ(probe_write(p + i * PG + 9, 2), 0);
		ASSERT_EQ(gmem_munmap(p, 8 * PG), -EINVAL);
		for (int i = 0; i < 8; i++)
			if (ours[i])
				ASSERT_EQ(munmap(p + i * PG, PG), 0);
	}
	atomic_store(&c.stop, true);
	pthread_join(t, NULL);
	failures = atomic_load(&c.failures);
	rounds = atomic_load(&c.rounds);
	ASSERT_EQ(failures, 0);
	ASSERT_GT(rounds, 0);
	close_file(&e, c.fd);
	env_free(&e);
}
