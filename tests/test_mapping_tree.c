// SPDX-License-Identifier: MIT
/*
 * The tree of a file's host mappings (mapping_tree.c): a conversion must
 * visit exactly the mappings that show a page of its range, whatever the
 * mappings' sizes, overlaps and order of arrival, and only those.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mapping.h"

#define NREC	512

/* What a query saw, in visiting order. */
struct seen {
	struct host_mapping *m[NREC];
	unsigned int n, stop_after;
};

static int note(struct host_mapping *m, void *arg)
{
	struct seen *s = arg;

	s->m[s->n++] = m;
	return s->n == s->stop_after ? 7 : 0;
}

static bool shows(const struct host_mapping *m, uint64_t start, uint64_t end)
{
	uint64_t lo = m->pgoff > start ? m->pgoff : start;
	uint64_t hi = m->pgoff + m->file_pages < end ? m->pgoff + m->file_pages : end;

	return lo < hi;
}

static uint64_t rnd(uint64_t *x, uint64_t n)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x % n;
}

/* Every query visits the records of a brute-force scan, each once, in file order. */
static void expect_query(struct host_mapping *root, struct host_mapping *recs,
			 const bool *in, uint64_t start, uint64_t end)
{
	struct seen s = { .stop_after = 0 };
	unsigned int want = 0;

	ASSERT_EQ(mapping_tree_each(root, start, end, note, &s), 0);
	for (unsigned int i = 0; i < NREC; i++)
		want += in[i] && shows(&recs[i], start, end);
	ASSERT_EQ(s.n, want);
	for (unsigned int i = 0; i < s.n; i++) {
		ASSERT_TRUE(in[s.m[i] - recs]);
		ASSERT_TRUE(shows(s.m[i], start, end));
		if (i)
			ASSERT_LE(s.m[i - 1]->pgoff, s.m[i]->pgoff);
		for (unsigned int j = 0; j < i; j++)
			ASSERT_NE(s.m[j], s.m[i]);
	}
}

TEST(every_query_visits_exactly_the_mappings_that_show_its_pages)
{
	static struct host_mapping recs[NREC];
	static bool in[NREC];
	struct host_mapping *root = NULL;
	uint64_t x = 0x9e3779b97f4a7c15ULL;

	memset(recs, 0, sizeof(recs));
	memset(in, 0, sizeof(in));
	for (int step = 0; step < 20000; step++) {
		unsigned int i = (unsigned int)rnd(&x, NREC);
		uint64_t start = rnd(&x, 4096), len = rnd(&x, 300);

		if (in[i]) {
			mapping_tree_remove(&root, &recs[i]);
			in[i] = false;
		}
		if (rnd(&x, 3)) {	/* back in with a new range: a trim or a split's part */
			recs[i].pgoff = rnd(&x, 4096);
			/* mostly small, some whole-file, some past EOF (no pages) */
			recs[i].file_pages = rnd(&x, 10) == 0 ? 4096 :
					     rnd(&x, 10) == 0 ? 0 : rnd(&x, 64);
			mapping_tree_insert(&root, &recs[i]);
			in[i] = true;
		}
		expect_query(root, recs, in, start, start + len);
	}
	expect_query(root, recs, in, 0, UINT64_MAX);
}

TEST(a_query_stops_at_the_first_nonzero_return_and_returns_it)
{
	static struct host_mapping recs[8];
	struct host_mapping *root = NULL;
	struct seen s = { .stop_after = 3 };

	for (unsigned int i = 0; i < 8; i++) {
		recs[i] = (struct host_mapping){ .pgoff = 100 - i * 10, .file_pages = 10 };
		mapping_tree_insert(&root, &recs[i]);
	}
	ASSERT_EQ(mapping_tree_each(root, 0, 1000, note, &s), 7);
	ASSERT_EQ(s.n, 3);
	/* in file order: the three that start first */
	ASSERT_EQ(s.m[0], &recs[7]);
	ASSERT_EQ(s.m[1], &recs[6]);
	ASSERT_EQ(s.m[2], &recs[5]);
}

TEST(a_page_under_a_whole_file_mapping_and_many_small_ones_finds_both)
{
	enum { N = 1 << 14 };
	struct host_mapping *recs = calloc(N, sizeof(*recs));
	struct host_mapping *root = NULL, whole = { .pgoff = 0, .file_pages = N * 16ULL };
	struct seen s = { .stop_after = 0 };

	ASSERT_TRUE(recs);
	for (unsigned int i = 0; i < N; i++) {
		recs[i].pgoff = i * 16ULL;
		recs[i].file_pages = 16;
		mapping_tree_insert(&root, &recs[i]);
	}
	mapping_tree_insert(&root, &whole);	/* one mapping of the whole file beside them */
	ASSERT_EQ(mapping_tree_each(root, 5000 * 16 + 3, 5000 * 16 + 4, note, &s), 0);
	ASSERT_EQ(s.n, 2);
	ASSERT_TRUE(s.m[0] == &whole || s.m[1] == &whole);
	ASSERT_TRUE(s.m[0] == &recs[5000] || s.m[1] == &recs[5000]);
	free(recs);
}
