// SPDX-License-Identifier: MIT
/* The attribute map: coverage, merging of equal neighbours, lookups, reserve failure. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "harness.h"
#include "attr.h"
#include "inject.h"

#define P	GMEM_ATTR_PRIVATE

static void update(struct attr_map *map, uint64_t start, uint64_t end,
		   uint64_t attr)
{
	attr_set(map, start, end, attr);
}

/* The range holding @index must be exactly [start, end) with @attr. */
static void expect_range(const struct attr_map *map, uint64_t index,
			 uint64_t start, uint64_t end, uint64_t attr)
{
	uint64_t s = ~0ULL, e = ~0ULL;

	ASSERT_EQ(attr_lookup(map, index, &s, &e), attr);
	ASSERT_EQ(s, start);
	ASSERT_EQ(e, end);
}

/* ------------------------------------------------------ reference model */

/* The run of equal values around @i in a per-page array. */
static void array_run(const uint64_t *a, uint64_t n, uint64_t i,
		      uint64_t *start, uint64_t *end)
{
	uint64_t s = i, e = i + 1;

	while (s > 0 && a[s - 1] == a[i])
		s--;
	while (e < n && a[e] == a[i])
		e++;
	*start = s;
	*end = e;
}

static uint64_t model_iter;	/* for failure reports */

/* Lookup of @i must agree with the array: value, start and end. */
static void check_index(const struct attr_map *map, const uint64_t *a,
			uint64_t n, uint64_t i)
{
	uint64_t s, e, ms = ~0ULL, me = ~0ULL, v;

	array_run(a, n, i, &s, &e);
	v = attr_lookup(map, i, &ms, &me);
	if (v != a[i] || ms != s || me != e)
		printf("#   update %llu: page %llu: map [%llu, %llu) = %llu, array [%llu, %llu) = %llu\n",
		       (unsigned long long)model_iter, (unsigned long long)i,
		       (unsigned long long)ms, (unsigned long long)me,
		       (unsigned long long)v, (unsigned long long)s,
		       (unsigned long long)e, (unsigned long long)a[i]);
	ASSERT_EQ(v, a[i]);
	ASSERT_EQ(ms, s);
	ASSERT_EQ(me, e);
}

/* After an update of [start, end): its ends and the pages just outside. */
static void check_update_ends(const struct attr_map *map, const uint64_t *a,
			      uint64_t n, uint64_t start, uint64_t end)
{
	check_index(map, a, n, start);
	check_index(map, a, n, end - 1);
	if (start > 0)
		check_index(map, a, n, start - 1);
	if (end < n)
		check_index(map, a, n, end);
}

/*
 * Walk the whole map range by range: ranges tile [0, n) in order, every page
 * of a range looks up to that same range and holds its value in the array,
 * neighbours differ, and nranges is the number of value changes + 1.
 */
static void check_whole_map(const struct attr_map *map, const uint64_t *a,
			    uint64_t n)
{
	uint64_t i = 0, ranges = 0, changes = 0;

	for (uint64_t p = 1; p < n; p++)
		changes += a[p] != a[p - 1];
	while (i < n) {
		uint64_t s, e, v = attr_lookup(map, i, &s, &e);

		ASSERT_EQ(s, i);
		ASSERT_GT(e, s);
		ASSERT_LE(e, n);
		for (uint64_t p = s; p < e; p++) {
			uint64_t ps, pe;

			ASSERT_EQ(a[p], v);
			ASSERT_EQ(attr_lookup(map, p, &ps, &pe), v);
			ASSERT_EQ(ps, s);
			ASSERT_EQ(pe, e);
		}
		if (e < n)
			ASSERT_NE(a[e], v);
		ranges++;
		i = e;
	}
	ASSERT_EQ(ranges, changes + 1);
	ASSERT_EQ(map->nranges, ranges);
}

/* Value changes between neighbours p-1, p for p in [lo, hi] within (0, n). */
static uint64_t changes_in(const uint64_t *a, uint64_t n, uint64_t lo,
			   uint64_t hi)
{
	uint64_t c = 0;

	if (lo < 1)
		lo = 1;
	if (hi > n - 1)
		hi = n - 1;
	for (uint64_t p = lo; p <= hi; p++)
		c += a[p] != a[p - 1];
	return c;
}

static uint64_t rng_state;

static uint64_t rng_next(void)	/* splitmix64 */
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t n)
{
	return rng_next() % n;
}

/* ----------------------------------------------------------- the tests */

TEST(new_map_is_one_range_covering_every_page)
{
	struct attr_map map;

	ASSERT_EQ(attr_init(&map, 1024, P), 0);
	ASSERT_EQ(map.nranges, 1);
	ASSERT_EQ(map.npages, 1024);
	expect_range(&map, 0, 0, 1024, P);
	expect_range(&map, 512, 0, 1024, P);
	expect_range(&map, 1023, 0, 1024, P);
	ASSERT_TRUE(attr_range_is(&map, 0, 1024, P));
	ASSERT_TRUE(attr_range_is(&map, 1023, 1024, P));
	ASSERT_TRUE(!attr_range_is(&map, 0, 1024, 0));
	ASSERT_EQ(attr_lookup(&map, 7, NULL, NULL), P);
	attr_destroy(&map);
}

TEST(one_page_map_takes_updates_of_its_only_page)
{
	struct attr_map map;

	ASSERT_EQ(attr_init(&map, 1, 0), 0);
	update(&map, 0, 1, P);
	expect_range(&map, 0, 0, 1, P);
	ASSERT_EQ(map.nranges, 1);
	update(&map, 0, 1, P);
	expect_range(&map, 0, 0, 1, P);
	ASSERT_EQ(map.nranges, 1);
	update(&map, 0, 1, 0);
	expect_range(&map, 0, 0, 1, 0);
	ASSERT_EQ(map.nranges, 1);
	attr_destroy(&map);
}

TEST(setting_one_middle_page_splits_the_map_into_three_ranges)
{
	struct attr_map map;

	ASSERT_EQ(attr_init(&map, 1024, P), 0);
	update(&map, 500, 501, 0);
	ASSERT_EQ(map.nranges, 3);
	expect_range(&map, 0, 0, 500, P);
	expect_range(&map, 499, 0, 500, P);
	expect_range(&map, 500, 500, 501, 0);
	expect_range(&map, 501, 501, 1024, P);
	expect_range(&map, 1023, 501, 1024, P);
	ASSERT_TRUE(attr_range_is(&map, 500, 501, 0));
	ASSERT_TRUE(!attr_range_is(&map, 499, 501, 0));
	ASSERT_TRUE(!attr_range_is(&map, 500, 502, 0));
	ASSERT_TRUE(!attr_range_is(&map, 0, 1024, P));
	ASSERT_TRUE(attr_range_is(&map, 0, 500, P));
	ASSERT_TRUE(attr_range_is(&map, 501, 1024, P));
	attr_destroy(&map);
}

TEST(setting_the_middle_page_back_merges_into_one_range)
{
	struct attr_map map;

	ASSERT_EQ(attr_init(&map, 1024, P), 0);
	update(&map, 500, 501, 0);
	update(&map, 500, 501, P);
	ASSERT_EQ(map.nranges, 1);
	expect_range(&map, 0, 0, 1024, P);
	expect_range(&map, 500, 0, 1024, P);
	expect_range(&map, 1023, 0, 1024, P);
	ASSERT_TRUE(attr_range_is(&map, 0, 1024, P));
	attr_destroy(&map);
}

TEST(update_of_the_first_page_splits_and_merges_back)
{
	struct attr_map map;

	ASSERT_EQ(attr_init(&map, 64, 0), 0);
	update(&map, 0, 1, P);
	ASSERT_EQ(map.nranges, 2);
	expect_range(&map, 0, 0, 1, P);
	expect_range(&map, 1, 1, 64, 0);
	/* Growing the first range to the right keeps two ranges. */
	update(&map, 1, 3, P);
	ASSERT_EQ(map.nranges, 2);
	expect_range(&map, 0, 0, 3, P);
	expect_range(&map, 2, 0, 3, P);
	expect_range(&map, 3, 3, 64, 0);
	update(&map, 0, 3, 0);
	ASSERT_EQ(map.nranges, 1);
	expect_range(&map, 0, 0, 64, 0);
	attr_destroy(&map);
}

TEST(update_of_the_last_page_splits_and_merges_back)
{
	struct attr_map map;

	ASSERT_EQ(attr_init(&map, 64, 0), 0);
	update(&map, 63, 64, P);
	ASSERT_EQ(map.nranges, 2);
	expect_range(&map, 62, 0, 63, 0);
	expect_range(&map, 63, 63, 64, P);
	/* Growing the last range to the left keeps two ranges. */
	update(&map, 60, 63, P);
	ASSERT_EQ(map.nranges, 2);
	expect_range(&map, 59, 0, 60, 0);
	expect_range(&map, 60, 60, 64, P);
	expect_range(&map, 63, 60, 64, P);
	update(&map, 60, 64, 0);
	ASSERT_EQ(map.nranges, 1);
	expect_range(&map, 63, 0, 64, 0);
	attr_destroy(&map);
}

TEST(first_and_last_pages_set_together_with_the_middle_make_one_range)
{
	struct attr_map map;

	ASSERT_EQ(attr_init(&map, 64, 0), 0);
	update(&map, 0, 1, P);
	update(&map, 63, 64, P);
	ASSERT_EQ(map.nranges, 3);
	expect_range(&map, 0, 0, 1, P);
	expect_range(&map, 30, 1, 63, 0);
	expect_range(&map, 63, 63, 64, P);
	update(&map, 1, 63, P);
	ASSERT_EQ(map.nranges, 1);
	expect_range(&map, 0, 0, 64, P);
	expect_range(&map, 63, 0, 64, P);
	attr_destroy(&map);
}

TEST(update_covering_the_whole_map_leaves_one_range)
{
	struct attr_map map;

	ASSERT_EQ(attr_init(&map, 256, 0), 0);
	for (uint64_t i = 0; i < 256; i += 3)
		update(&map, i, i + 1, P);
	ASSERT_GT(map.nranges, 100);
	update(&map, 0, 256, P);
	ASSERT_EQ(map.nranges, 1);
	expect_range(&map, 0, 0, 256, P);
	expect_range(&map, 255, 0, 256, P);
	/* The same again, and to the value the map already has. */
	update(&map, 0, 256, P);
	ASSERT_EQ(map.nranges, 1);
	update(&map, 0, 256, 0);
	ASSERT_EQ(map.nranges, 1);
	expect_range(&map, 128, 0, 256, 0);
	attr_destroy(&map);
}

TEST(update_spanning_many_ranges_collapses_them)
{
	struct attr_map map;

	ASSERT_EQ(attr_init(&map, 200, 0), 0);
	/* Every odd page private: 0 1 0 1 ... up to page 100. */
	for (uint64_t i = 1; i < 100; i += 2)
		update(&map, i, i + 1, P);
	ASSERT_EQ(map.nranges, 101);		/* 100 one-page ranges + [100, 200) */
	expect_range(&map, 98, 98, 99, 0);
	expect_range(&map, 99, 99, 100, P);
	expect_range(&map, 100, 100, 200, 0);
	/* [10, 90) private: it starts on a shared page, ends after one. */
	update(&map, 10, 90, P);
	expect_range(&map, 8, 8, 9, 0);
	expect_range(&map, 9, 9, 90, P);	/* swallowed private page 9 */
	expect_range(&map, 89, 9, 90, P);
	expect_range(&map, 90, 90, 91, 0);
	expect_range(&map, 91, 91, 92, P);
	/* Pages 0..8: 9 ranges; [9, 90); 90..99: 10 ranges; [100, 200). */
	ASSERT_EQ(map.nranges, 9 + 1 + 10 + 1);
	/* Now shared over [9, 100): joins page 8 and [100, 200). */
	update(&map, 9, 100, 0);
	expect_range(&map, 7, 7, 8, P);
	expect_range(&map, 8, 8, 200, 0);
	expect_range(&map, 199, 8, 200, 0);
	ASSERT_EQ(map.nranges, 8 + 1);
	attr_destroy(&map);
}

TEST(update_joins_equal_neighbours_on_both_sides)
{
	struct attr_map map;

	ASSERT_EQ(attr_init(&map, 30, P), 0);
	update(&map, 10, 20, 0);
	ASSERT_EQ(map.nranges, 3);
	/* Partly: the left neighbour grows, the middle shrinks. */
	update(&map, 10, 12, P);
	ASSERT_EQ(map.nranges, 3);
	expect_range(&map, 11, 0, 12, P);
	expect_range(&map, 12, 12, 20, 0);
	/* Partly from the right. */
	update(&map, 18, 20, P);
	ASSERT_EQ(map.nranges, 3);
	expect_range(&map, 18, 18, 30, P);
	expect_range(&map, 17, 12, 18, 0);
	/* Exactly the middle range: all three become one. */
	update(&map, 12, 18, P);
	ASSERT_EQ(map.nranges, 1);
	expect_range(&map, 15, 0, 30, P);
	attr_destroy(&map);
}

TEST(update_to_the_value_already_there_changes_nothing)
{
	struct attr_map map;

	ASSERT_EQ(attr_init(&map, 100, 0), 0);
	update(&map, 20, 40, P);
	ASSERT_EQ(map.nranges, 3);
	update(&map, 25, 35, P);		/* inside */
	update(&map, 20, 40, P);		/* exactly */
	update(&map, 0, 10, 0);			/* another range */
	update(&map, 50, 100, 0);		/* up to the end */
	ASSERT_EQ(map.nranges, 3);
	expect_range(&map, 0, 0, 20, 0);
	expect_range(&map, 30, 20, 40, P);
	expect_range(&map, 99, 40, 100, 0);
	attr_destroy(&map);
}

TEST(every_other_page_alternating_gives_one_range_per_page)
{
	enum { N = 4096 };
	struct attr_map map;
	static uint64_t a[N];

	ASSERT_EQ(attr_init(&map, N, 0), 0);
	memset(a, 0, sizeof(a));
	for (uint64_t i = 1; i < N; i += 2) {
		update(&map, i, i + 1, P);
		a[i] = P;
	}
	ASSERT_EQ(map.nranges, N);
	check_whole_map(&map, a, N);
	/* Fill the gaps from the far end: one range again. */
	for (uint64_t i = N; i >= 2; i -= 2) {
		update(&map, i - 2, i - 1, P);
		a[i - 2] = P;
	}
	ASSERT_EQ(map.nranges, 1);
	check_whole_map(&map, a, N);
	attr_destroy(&map);
}

/*
 * A million random updates against a per-page array. Attributes come from a
 * small set so that neighbours often end up equal and must be merged; most
 * updates are short, a few span a large part of the map or one of its ends.
 */
TEST(random_updates_match_a_per_page_array_and_stay_merged)
{
	enum { N = 1 << 16, UPDATES = 1000000, FULL_EVERY = 10000 };
	static const uint64_t attrs[] = { 0, P };
	static uint64_t a[N];
	struct attr_map map;
	uint64_t nranges = 1, pages_written = 0, sum_ranges = 0, max_ranges = 0;

	rng_state = 20240611;
	memset(a, 0, sizeof(a));
	ASSERT_EQ(attr_init(&map, N, 0), 0);
	for (model_iter = 0; model_iter < UPDATES; model_iter++) {
		uint64_t r = rng_below(1000), len, start, end;
		uint64_t attr = attrs[rng_below(2)];

		if (r < 700)
			len = 1 + rng_below(8);
		else if (r < 950)
			len = 1 + rng_below(64);
		else if (r < 999)
			len = 1 + rng_below(1024);
		else
			len = 1 + rng_below(N);
		start = rng_below(N);
		r = rng_below(100);
		if (r < 2)
			start = 0;
		else if (r < 4)
			start = len < N ? N - len : 0;
		end = start + len < N ? start + len : N;

		nranges -= changes_in(a, N, start, end);
		for (uint64_t p = start; p < end; p++)
			a[p] = attr;
		pages_written += end - start;
		nranges += changes_in(a, N, start, end);

		update(&map, start, end, attr);
		ASSERT_EQ(map.nranges, nranges);
		sum_ranges += nranges;
		if (nranges > max_ranges)
			max_ranges = nranges;
		ASSERT_TRUE(attr_range_is(&map, start, end, attr));

		/* The updated range, its ends and its outside neighbours. */
		check_update_ends(&map, a, N, start, end);
		/* And a few pages anywhere. */
		for (int k = 0; k < 3; k++)
			check_index(&map, a, N, rng_below(N));

		/* attr_range_is on a random short range. */
		{
			uint64_t s = rng_below(N), e = s + 1 + rng_below(64);
			uint64_t want = rng_below(2) ? a[s] : attrs[rng_below(2)];
			bool all = true;

			if (e > N)
				e = N;
			for (uint64_t p = s; p < e && all; p++)
				all = a[p] == want;
			ASSERT_EQ(attr_range_is(&map, s, e, want), all);
		}

		if ((model_iter + 1) % FULL_EVERY == 0)
			check_whole_map(&map, a, N);
	}
	printf("#   %d updates, %llu pages written, ranges: %llu on average, %llu at most\n",
	       UPDATES, (unsigned long long)pages_written,
	       (unsigned long long)(sum_ranges / UPDATES),
	       (unsigned long long)max_ranges);
	attr_destroy(&map);
}

/*
 * Runs whose ends sit on either side of a word (64 pages) and of a summary
 * word (4096 pages), in maps whose last word is partial or exact: each
 * update is checked page by page against the array.
 */
TEST(runs_ending_at_word_and_summary_boundaries_match_the_array)
{
	static const uint64_t sizes[] = { 1, 63, 64, 65, 4095, 4096, 4097,
					  64 * 4096 + 1 };
	static const uint64_t edges[] = { 0, 1, 63, 64, 65, 127, 128, 4095,
					  4096, 4097, 8191, 8192, 64 * 4096 };
	enum { NE = sizeof(edges) / sizeof(edges[0]) };

	for (unsigned int z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
		uint64_t n = sizes[z];
		uint64_t *a = calloc(n, sizeof(*a));
		struct attr_map map;

		ASSERT_TRUE(a != NULL);
		ASSERT_EQ(attr_init(&map, n, 0), 0);
		model_iter = 0;
		for (unsigned int i = 0; i < NE; i++) {
			for (unsigned int j = 0; j < NE; j++) {
				uint64_t s = edges[i], e = edges[j] + 1;
				uint64_t v = (i + j) % 3 ? P : 0;

				if (s >= n || e > n || s >= e)
					continue;
				update(&map, s, e, v);
				for (uint64_t p = s; p < e; p++)
					a[p] = v;
				model_iter++;
				check_update_ends(&map, a, n, s, e);
				ASSERT_TRUE(attr_range_is(&map, s, e, v));
			}
		}
		check_whole_map(&map, a, n);
		/* All back to one value: one range, whatever was there. */
		update(&map, 0, n, P);
		ASSERT_EQ(map.nranges, 1);
		expect_range(&map, n - 1, 0, n, P);
		attr_destroy(&map);
		free(a);
	}
}

/* The map of a new private file reports one range even where n is not a word multiple. */
TEST(new_private_map_of_a_partial_last_word_is_one_range)
{
	struct attr_map map;

	ASSERT_EQ(attr_init(&map, 4097, P), 0);
	expect_range(&map, 0, 0, 4097, P);
	expect_range(&map, 4096, 0, 4097, P);
	ASSERT_TRUE(attr_range_is(&map, 0, 4097, P));
	ASSERT_TRUE(!attr_range_is(&map, 4096, 4097, 0));
	update(&map, 4096, 4097, 0);
	ASSERT_EQ(map.nranges, 2);
	expect_range(&map, 4095, 0, 4096, P);
	expect_range(&map, 4096, 4096, 4097, 0);
	attr_destroy(&map);
}

/*
 * A million ranges, every other page of 2^20 private: lookups still find
 * one-page ranges, the map's memory does not grow with them (one bit a
 * page and its summaries), and one update collapses them.
 */
TEST(a_million_one_page_ranges_cost_no_more_memory_than_one)
{
	enum { N = 1 << 20 };
	struct attr_map map;
	size_t bytes;

	ASSERT_EQ(attr_init(&map, N, 0), 0);
	bytes = attr_bytes(&map);
	ASSERT_LE(bytes, N / 8 + N / 8 / 16);
	for (uint64_t i = 1; i < N; i += 2)
		update(&map, i, i + 1, P);
	ASSERT_EQ(map.nranges, N);
	ASSERT_EQ(attr_bytes(&map), bytes);
	rng_state = 7;
	for (int k = 0; k < 100000; k++) {
		uint64_t i = rng_below(N);

		expect_range(&map, i, i, i + 1, i % 2 ? P : 0);
		ASSERT_TRUE(!attr_range_is(&map, i, i + 2, i % 2 ? P : 0));
	}
	printf("#   %d ranges in %zu bytes: %.3f bytes a range\n", N, bytes,
	       (double)bytes / N);
	/* Private over most of it: the ranges inside go, the ends stay. */
	update(&map, 1000, N - 1000, P);
	ASSERT_EQ(map.nranges, 1000 + 1 + 999);
	expect_range(&map, 998, 998, 999, 0);
	expect_range(&map, 999, 999, N - 1000, P);
	expect_range(&map, 1000, 999, N - 1000, P);
	expect_range(&map, N - 1000, N - 1000, N - 999, 0);
	attr_destroy(&map);
}

/*
 * Random updates over a private map three summary levels deep (not a
 * multiple of a word), long runs included, checked against the array as the other test
 * does but where runs cross every level of the summaries.
 */
TEST(random_long_updates_of_a_private_map_over_three_summary_levels_match_the_array)
{
	enum { N = 300007, UPDATES = 30000, FULL_EVERY = 5000 };
	uint64_t *a = calloc(N, sizeof(*a));
	struct attr_map map;
	uint64_t nranges = 1;

	ASSERT_TRUE(a != NULL);
	rng_state = 99;
	/* A private map (the other test's starts shared). */
	for (uint64_t p = 0; p < N; p++)
		a[p] = P;
	ASSERT_EQ(attr_init(&map, N, P), 0);
	ASSERT_EQ(map.nlevels, 3);
	for (model_iter = 0; model_iter < UPDATES; model_iter++) {
		uint64_t r = rng_below(100), len, start, end;
		uint64_t attr = rng_below(2) ? P : 0;

		len = r < 60 ? 1 + rng_below(100) :
		      r < 95 ? 1 + rng_below(20000) : 1 + rng_below(N);
		start = rng_below(N);
		end = start + len < N ? start + len : N;
		nranges -= changes_in(a, N, start, end);
		for (uint64_t p = start; p < end; p++)
			a[p] = attr;
		nranges += changes_in(a, N, start, end);
		update(&map, start, end, attr);
		ASSERT_EQ(map.nranges, nranges);
		check_update_ends(&map, a, N, start, end);
		for (int k = 0; k < 3; k++)
			check_index(&map, a, N, rng_below(N));
		if ((model_iter + 1) % FULL_EVERY == 0)
			check_whole_map(&map, a, N);
	}
	attr_destroy(&map);
	free(a);
}

/* ------------------------------------------- no allocation on update */

TEST(only_init_allocates_and_its_failure_leaves_no_map)
{
	struct attr_map map;

	inject_arm(0, 1.0, 1, "src/attr.c");
	ASSERT_EQ(attr_init(&map, 1 << 20, 0), -1);
	inject_disarm();
	ASSERT_EQ(attr_init(&map, 1 << 20, 0), 0);
	/* Every allocation of the map failing: updates do not notice. */
	inject_arm(0, 1.0, 1, "src/attr.c");
	for (uint64_t i = 0; i < 1000; i++)
		update(&map, i * 7, i * 7 + 3, P);
	inject_disarm();
	ASSERT_EQ(map.nranges, 2000);	/* the first run starts at 0 */
	expect_range(&map, 7 * 999 + 1, 7 * 999, 7 * 999 + 3, P);
	attr_destroy(&map);
}

#define PAGES	64

TEST(a_conversion_needs_no_memory_for_its_attributes)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, PAGES * GMEM_PAGE_SIZE, GMEM_FLAG_MMAP);
	uint64_t attr = 0;

	ASSERT_GE(fd, 0);
	inject_arm(0, 1.0, 1, "src/attr.c");
	ASSERT_EQ(gmem_set_attributes(fd, 4 * GMEM_PAGE_SIZE, 4 * GMEM_PAGE_SIZE,
				      0, 0, NULL), 0);
	ASSERT_EQ(gmem_set_attributes(fd, 5 * GMEM_PAGE_SIZE, GMEM_PAGE_SIZE,
				      GMEM_ATTR_PRIVATE, 0, NULL), 0);
	inject_disarm();
	ASSERT_EQ(gmem_attribute_ranges(fd), 5);
	ASSERT_EQ(gmem_get_attributes(fd, 4 * GMEM_PAGE_SIZE, &attr, NULL), 0);
	ASSERT_EQ(attr, 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}
