// SPDX-License-Identifier: MIT
/* Conversion (gmem_set_attributes): validation, attribute map, stage-2 zaps, content, pins. */
#include <stdbool.h>
#include <string.h>

#include "harness.h"

#define PG	GMEM_PAGE_SIZE
#define MiB	(1ULL << 20)
#define PRIV	GMEM_ATTR_PRIVATE

#define SHARED_R	0
#define SHARED_W	GMEM_FAULT_WRITE
#define PRIVATE_R	GMEM_FAULT_PRIVATE
#define PRIVATE_W	(GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE)

/* A handle number no test ever reaches. */
#define NEVER_OPEN	9999

/* Guest address where the tests bind their file (slot 0, file offset 0). */
#define GPA		(16 * MiB)

static int convert(int fd, uint64_t offset, uint64_t size, uint64_t attr)
{
	return gmem_set_attributes(fd, offset, size, attr, 0, NULL);
}

static uint64_t attr_at(int fd, uint64_t offset)
{
	uint64_t attr = 0xbad;

	ASSERT_EQ(gmem_get_attributes(fd, offset, &attr, NULL), 0);
	return attr;
}

/* The page at @offset has @attr, in a run of equal pages ending at @end. */
static void assert_run(int fd, uint64_t offset, uint64_t attr, uint64_t end)
{
	uint64_t a = 0xbad, e = 0;

	ASSERT_EQ(gmem_get_attributes(fd, offset, &a, &e), 0);
	ASSERT_EQ(a, attr);
	ASSERT_EQ(e, end);
}

static void assert_uniform(int fd, uint64_t attr)
{
	ASSERT_EQ(gmem_attribute_ranges(fd), 1);
	assert_run(fd, 0, attr, (uint64_t)gmem_size(fd));
}

static uint32_t pins_at(int fd, uint64_t offset)
{
	uint32_t pins = 0xbad;

	ASSERT_GE(gmem_folio_info(fd, offset, NULL, NULL, &pins), 0);
	return pins;
}

static uint64_t frame_of(int fd, uint64_t offset)
{
	uint64_t pfn = 0;

	ASSERT_EQ(gmem_folio_info(fd, offset, &pfn, NULL, NULL), 1);
	return pfn;
}

static void fill(uint8_t *p, size_t n, unsigned int seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 131 + (i >> 8));
}

/* A file of @size bytes on @e, bound at GPA. */
static int bound_file(struct env *e, uint64_t size, uint64_t flags)
{
	int fd = gmem_create(e->vm, size, flags);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(e->vm, 0, GPA, size, fd, 0), 0);
	return fd;
}

TEST(set_attributes_rejects_each_bad_argument_with_einval)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 16 * PG, 0);
	uint64_t eo = 0xdead;

	ASSERT_GE(fd, 0);
	/* flags */
	ASSERT_EQ(gmem_set_attributes(fd, 0, PG, 0, 1, &eo), -EINVAL);
	ASSERT_EQ(gmem_set_attributes(fd, 0, PG, PRIV, 1ULL << 63, &eo), -EINVAL);
	ASSERT_EQ(gmem_set_attributes(fd, 0, PG, 0, ~0ULL, &eo), -EINVAL);
	/* attribute bits other than PRIVATE */
	ASSERT_EQ(gmem_set_attributes(fd, 0, PG, 1, 0, &eo), -EINVAL);
	ASSERT_EQ(gmem_set_attributes(fd, 0, PG, 1ULL << 2, 0, &eo), -EINVAL);
	ASSERT_EQ(gmem_set_attributes(fd, 0, PG, 1ULL << 4, 0, &eo), -EINVAL);
	ASSERT_EQ(gmem_set_attributes(fd, 0, PG, PRIV | 1, 0, &eo), -EINVAL);
	ASSERT_EQ(gmem_set_attributes(fd, 0, PG, ~0ULL, 0, &eo), -EINVAL);
	/* size 0, overflow */
	ASSERT_EQ(gmem_set_attributes(fd, 0, 0, 0, 0, &eo), -EINVAL);
	ASSERT_EQ(gmem_set_attributes(fd, PG, 0, 0, 0, &eo), -EINVAL);
	ASSERT_EQ(gmem_set_attributes(fd, PG, ~0ULL - PG + 1, 0, 0, &eo), -EINVAL);
	ASSERT_EQ(gmem_set_attributes(fd, 1ULL << 63, 1ULL << 63, 0, 0, &eo), -EINVAL);
	ASSERT_EQ(gmem_set_attributes(fd, ~0ULL - PG + 1, 2 * PG, 0, 0, &eo), -EINVAL);
	/* alignment */
	ASSERT_EQ(gmem_set_attributes(fd, 1, PG, 0, 0, &eo), -EINVAL);
	ASSERT_EQ(gmem_set_attributes(fd, PG / 2, PG, 0, 0, &eo), -EINVAL);
	ASSERT_EQ(gmem_set_attributes(fd, 0, 1, 0, 0, &eo), -EINVAL);
	ASSERT_EQ(gmem_set_attributes(fd, 0, PG + 1, 0, 0, &eo), -EINVAL);
	ASSERT_EQ(gmem_set_attributes(fd, 0, PG - 1, 0, 0, &eo), -EINVAL);
	/* past the end */
	ASSERT_EQ(gmem_set_attributes(fd, 16 * PG, PG, 0, 0, &eo), -EINVAL);
	ASSERT_EQ(gmem_set_attributes(fd, 15 * PG, 2 * PG, 0, 0, &eo), -EINVAL);
	ASSERT_EQ(gmem_set_attributes(fd, 0, 17 * PG, 0, 0, &eo), -EINVAL);
	ASSERT_EQ(gmem_set_attributes(fd, 1ULL << 40, PG, 0, 0, &eo), -EINVAL);
	/* Nothing changed, and no error offset is reported for these. */
	assert_uniform(fd, PRIV);
	ASSERT_EQ(eo, 0xdead);
	/* The last page alone is in range. */
	ASSERT_EQ(gmem_set_attributes(fd, 15 * PG, PG, 0, 0, &eo), 0);
	assert_run(fd, 15 * PG, 0, 16 * PG);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(set_attributes_checks_the_handle_before_anything_else)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 16 * PG, 0);
	int closed = gmem_create(e.vm, 16 * PG, 0);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_close(closed), 0);
	ASSERT_EQ(gmem_set_attributes(closed, 0, PG, 0, 0, NULL), -EBADF);
	ASSERT_EQ(gmem_set_attributes(-1, 0, PG, 0, 0, NULL), -EBADF);
	ASSERT_EQ(gmem_set_attributes(NEVER_OPEN, 1, 0, ~0ULL, 1, NULL), -EBADF);
	ASSERT_EQ(gmem_set_attributes(e.vm, 0, PG, 0, 0, NULL), -EINVAL);
	ASSERT_EQ(gmem_set_attributes(e.pool, 0, PG, 0, 0, NULL), -EINVAL);
	ASSERT_EQ(gmem_get_attributes(closed, 0, NULL, NULL), -EBADF);
	ASSERT_EQ(gmem_attribute_ranges(closed), -EBADF);
	ASSERT_EQ(gmem_attribute_ranges(e.vm), -EINVAL);
	assert_uniform(fd, PRIV);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(failed_conversion_leaves_a_reason_in_last_error)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 16 * PG, 0);
	const char *msg;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_set_attributes(fd, 1, PG, 0, 0, NULL), -EINVAL);
	msg = gmem_last_error();
	ASSERT_TRUE(msg);
	ASSERT_TRUE(strstr(msg, "gmem_set_attributes"));
	ASSERT_EQ(gmem_set_attributes(NEVER_OPEN, 0, PG, 0, 0, NULL), -EBADF);
	ASSERT_TRUE(strstr(gmem_last_error(), "gmem_set_attributes"));
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(converting_a_range_already_in_that_state_succeeds_without_invalidation)
{
	struct env e = env_new("sw");
	int fd = bound_file(&e, 16 * PG, 0);
	int64_t seq;
	int is_private = -1;

	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 3 * PG, PRIVATE_W, NULL, NULL), 0);
	seq = gmem_vm_invalidate_seq(e.vm);
	ASSERT_GE(seq, 0);
	ASSERT_EQ(convert(fd, 0, 16 * PG, PRIV), 0);
	ASSERT_EQ(convert(fd, 3 * PG, PG, PRIV), 0);
	ASSERT_EQ(gmem_vm_invalidate_seq(e.vm), seq);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA + 3 * PG, NULL, &is_private), 1);
	ASSERT_EQ(is_private, 1);
	assert_uniform(fd, PRIV);

	ASSERT_EQ(convert(fd, 5 * PG, 2 * PG, 0), 0);
	seq = gmem_vm_invalidate_seq(e.vm);
	ASSERT_EQ(convert(fd, 5 * PG, 2 * PG, 0), 0);
	ASSERT_EQ(convert(fd, 6 * PG, PG, 0), 0);
	ASSERT_EQ(gmem_vm_invalidate_seq(e.vm), seq);
	ASSERT_EQ(gmem_attribute_ranges(fd), 3);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(converting_bound_pages_invalidates_and_unbound_pages_do_not)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 16 * PG, 0);
	int64_t seq;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA, 4 * PG, fd, 4 * PG), 0);
	seq = gmem_vm_invalidate_seq(e.vm);
	ASSERT_EQ(convert(fd, 0, 4 * PG, 0), 0);
	ASSERT_EQ(convert(fd, 8 * PG, 8 * PG, 0), 0);
	ASSERT_EQ(gmem_vm_invalidate_seq(e.vm), seq);
	ASSERT_EQ(convert(fd, 7 * PG, 2 * PG, 0), 0);	/* one bound page */
	ASSERT_GT(gmem_vm_invalidate_seq(e.vm), seq);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(converting_before_any_folio_exists_changes_only_attributes)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, 0);
	struct gmem_pool_stats st;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(convert(fd, 2 * PG, PG, 0), 0);
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(gmem_folio_info(fd, i * PG, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.frames_in_use, 0);
	ASSERT_EQ(attr_at(fd, 2 * PG), 0);
	ASSERT_EQ(convert(fd, 0, 4 * PG, 0), 0);
	assert_uniform(fd, 0);
	ASSERT_EQ(convert(fd, 0, 4 * PG, PRIV), 0);
	assert_uniform(fd, PRIV);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.frames_in_use, 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(converting_one_page_of_four_changes_only_that_page)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, 0);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(convert(fd, 2 * PG, PG, 0), 0);
	ASSERT_EQ(gmem_attribute_ranges(fd), 3);
	assert_run(fd, 0, PRIV, 2 * PG);
	assert_run(fd, PG, PRIV, 2 * PG);
	assert_run(fd, 2 * PG, 0, 3 * PG);
	assert_run(fd, 3 * PG, PRIV, 4 * PG);
	ASSERT_EQ(convert(fd, 2 * PG, PG, PRIV), 0);
	assert_uniform(fd, PRIV);

	/* The edges: first and last page. */
	ASSERT_EQ(convert(fd, 0, PG, 0), 0);
	ASSERT_EQ(gmem_attribute_ranges(fd), 2);
	assert_run(fd, 0, 0, PG);
	assert_run(fd, PG, PRIV, 4 * PG);
	ASSERT_EQ(convert(fd, 3 * PG, PG, 0), 0);
	ASSERT_EQ(gmem_attribute_ranges(fd), 3);
	assert_run(fd, 3 * PG, 0, 4 * PG);
	/* Filling the middle merges all three. */
	ASSERT_EQ(convert(fd, PG, 2 * PG, 0), 0);
	assert_uniform(fd, 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

#define MODEL_PAGES	256

static uint32_t xorshift(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

TEST(attribute_map_matches_a_page_by_page_model_under_random_conversions)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, MODEL_PAGES * PG, GMEM_FLAG_INIT_SHARED);
	static uint64_t model[MODEL_PAGES];
	uint32_t seed = 12345;

	ASSERT_GE(fd, 0);
	memset(model, 0, sizeof(model));
	for (int round = 0; round < 2000; round++) {
		uint64_t start = xorshift(&seed) % MODEL_PAGES;
		uint64_t len = 1 + xorshift(&seed) % (round % 3 ? 8 : MODEL_PAGES);
		uint64_t attr = xorshift(&seed) % 2 ? PRIV : 0;
		int64_t runs = 1;

		if (start + len > MODEL_PAGES)
			len = MODEL_PAGES - start;
		ASSERT_EQ(convert(fd, start * PG, len * PG, attr), 0);
		for (uint64_t i = start; i < start + len; i++)
			model[i] = attr;
		for (int i = 1; i < MODEL_PAGES; i++)
			runs += model[i] != model[i - 1];
		ASSERT_EQ(gmem_attribute_ranges(fd), runs);
		for (uint64_t i = 0, end = 0; i < MODEL_PAGES; i++) {
			if (i == end)	/* a run starts: find where it ends */
				for (end = i + 1; end < MODEL_PAGES &&
				     model[end] == model[i]; end++)
					;
			assert_run(fd, i * PG, model[i], end * PG);
		}
	}
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(conversion_zaps_stage2_of_its_range_and_keeps_the_frame)
{
	struct env e = env_new("sw");
	int fd = bound_file(&e, 4 * PG, GMEM_FLAG_INIT_SHARED);
	uint64_t pfn0, pfn1, pfn, s2pfn;
	struct gmem_exit exit;
	int is_private = -1;
	int64_t seq;

	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, SHARED_W, &pfn0, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + PG, SHARED_W, &pfn1, NULL), 0);
	seq = gmem_vm_invalidate_seq(e.vm);

	/* To private zaps the shared entry of the page, nothing else. */
	ASSERT_EQ(convert(fd, 0, PG, PRIV), 0);
	ASSERT_GT(gmem_vm_invalidate_seq(e.vm), seq);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA + PG, &s2pfn, &is_private), 1);
	ASSERT_EQ(s2pfn, pfn1);
	ASSERT_EQ(is_private, 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, SHARED_R, NULL, &exit), 1);
	ASSERT_EQ(exit.reason, GMEM_EXIT_MEMORY_FAULT);
	ASSERT_EQ(exit.gpa, GPA);
	ASSERT_EQ(exit.flags, 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, PRIVATE_R, &pfn, NULL), 0);
	ASSERT_EQ(pfn, pfn0);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA, &s2pfn, &is_private), 1);
	ASSERT_EQ(s2pfn, pfn0);
	ASSERT_EQ(is_private, 1);

	/* To shared zaps the private entry; the same frame comes back shared. */
	seq = gmem_vm_invalidate_seq(e.vm);
	ASSERT_EQ(convert(fd, 0, PG, 0), 0);
	ASSERT_GT(gmem_vm_invalidate_seq(e.vm), seq);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA + PG, NULL, NULL), 1);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, PRIVATE_W, NULL, &exit), 1);
	ASSERT_EQ(exit.flags, GMEM_MEMORY_EXIT_FLAG_PRIVATE);
	ASSERT_EQ(exit.gpa, GPA);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, SHARED_R, &pfn, NULL), 0);
	ASSERT_EQ(pfn, pfn0);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA, &s2pfn, &is_private), 1);
	ASSERT_EQ(s2pfn, pfn0);
	ASSERT_EQ(is_private, 0);
	ASSERT_EQ(frame_of(fd, 0), pfn0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(conversion_zaps_only_entries_of_the_old_type_in_a_mixed_range)
{
	struct env e = env_new("sw");
	int fd = bound_file(&e, 2 * PG, 0);
	uint64_t pfn0, s2pfn;
	int is_private = -1;

	/* Page 0 private and mapped private, page 1 shared and mapped shared. */
	ASSERT_EQ(convert(fd, PG, PG, 0), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, PRIVATE_W, &pfn0, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + PG, SHARED_W, NULL, NULL), 0);
	ASSERT_EQ(convert(fd, 0, 2 * PG, PRIV), 0);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA, &s2pfn, &is_private), 1);
	ASSERT_EQ(s2pfn, pfn0);
	ASSERT_EQ(is_private, 1);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA + PG, NULL, NULL), 0);

	/* Page 0 shared and mapped shared, page 1 private and mapped private. */
	ASSERT_EQ(convert(fd, 0, PG, 0), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, SHARED_W, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + PG, PRIVATE_W, NULL, NULL), 0);
	ASSERT_EQ(convert(fd, 0, 2 * PG, 0), 0);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA, &s2pfn, &is_private), 1);
	ASSERT_EQ(s2pfn, pfn0);
	ASSERT_EQ(is_private, 0);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA + PG, NULL, NULL), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(conversion_zaps_every_slot_binding_the_range_at_its_own_gpa)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 16 * PG, GMEM_FLAG_INIT_SHARED);
	uint64_t a = GPA, b = 2 * GPA;

	ASSERT_GE(fd, 0);
	/* File pages 4..7 at a, 8..11 at b, other pages unbound. */
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, a, 4 * PG, fd, 4 * PG), 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, b, 4 * PG, fd, 8 * PG), 0);
	for (int i = 0; i < 4; i++) {
		ASSERT_EQ(gmem_vm_fault(e.vm, a + i * PG, SHARED_W, NULL, NULL), 0);
		ASSERT_EQ(gmem_vm_fault(e.vm, b + i * PG, SHARED_W, NULL, NULL), 0);
	}
	/* File pages 6..9: the last two of a, the first two of b. */
	ASSERT_EQ(convert(fd, 6 * PG, 4 * PG, PRIV), 0);
	for (int i = 0; i < 4; i++) {
		ASSERT_EQ(gmem_vm_stage2(e.vm, a + i * PG, NULL, NULL), i < 2);
		ASSERT_EQ(gmem_vm_stage2(e.vm, b + i * PG, NULL, NULL), i >= 2);
	}
	ASSERT_EQ(gmem_vm_fault(e.vm, a + 2 * PG, PRIVATE_R, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, b + PG, PRIVATE_R, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, b + 2 * PG, PRIVATE_R, NULL, NULL), 1);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(sw_conversion_keeps_every_byte_both_ways)
{
	struct env e = env_new("sw");
	int fd = bound_file(&e, 8 * PG, 0);
	static uint8_t data[3 * PG + 100], back[3 * PG + 100];
	uint64_t at = PG - 50, pfns[5];

	fill(data, sizeof(data), 9);
	ASSERT_EQ(gmem_vm_access(e.vm, GPA + at, data, sizeof(data), PRIVATE_W, NULL), 0);
	for (int i = 0; i < 5; i++)
		pfns[i] = frame_of(fd, i * PG);

	ASSERT_EQ(convert(fd, 0, 8 * PG, 0), 0);
	for (int i = 0; i < 5; i++)
		ASSERT_EQ(frame_of(fd, i * PG), pfns[i]);
	memset(back, 0, sizeof(back));
	ASSERT_EQ(gmem_vm_access(e.vm, GPA + at, back, sizeof(back), SHARED_R, NULL), 0);
	ASSERT_EQ(memcmp(back, data, sizeof(data)), 0);
	/* The host sees the same bytes in the frames, page by page. */
	for (uint64_t off = at; off < at + sizeof(data); ) {
		uint64_t n = PG - off % PG;
		uint8_t *p = gmem_pool_frame(e.pool, pfns[off / PG]);

		if (n > at + sizeof(data) - off)
			n = at + sizeof(data) - off;
		ASSERT_TRUE(p);
		ASSERT_EQ(memcmp(p + off % PG, data + (off - at), n), 0);
		off += n;
	}

	/* The guest changes some of it while shared; back to private, all kept. */
	fill(data + 1000, 5000, 77);
	ASSERT_EQ(gmem_vm_access(e.vm, GPA + at + 1000, data + 1000, 5000, SHARED_W, NULL), 0);
	ASSERT_EQ(convert(fd, 0, 8 * PG, PRIV), 0);
	for (int i = 0; i < 5; i++)
		ASSERT_EQ(frame_of(fd, i * PG), pfns[i]);
	memset(back, 0, sizeof(back));
	ASSERT_EQ(gmem_vm_access(e.vm, GPA + at, back, sizeof(back), PRIVATE_R, NULL), 0);
	ASSERT_EQ(memcmp(back, data, sizeof(data)), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(punched_private_page_reads_zero_afterwards_and_stays_private)
{
	struct env e = env_new("sw");
	int fd = bound_file(&e, 4 * PG, 0);
	static uint8_t data[3 * PG], back[3 * PG];
	struct gmem_exit exit;

	memset(data, 0xaa, sizeof(data));
	ASSERT_EQ(gmem_vm_access(e.vm, GPA, data, sizeof(data), PRIVATE_W, NULL), 0);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 PG, PG), 0);
	ASSERT_EQ(gmem_folio_info(fd, PG, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA + PG, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA, NULL, NULL), 1);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA + 2 * PG, NULL, NULL), 1);
	assert_uniform(fd, PRIV);

	ASSERT_EQ(gmem_vm_access(e.vm, GPA + PG, back, PG, SHARED_R, &exit), 1);
	ASSERT_EQ(exit.gpa, GPA + PG);
	ASSERT_EQ(gmem_vm_access(e.vm, GPA, back, sizeof(back), PRIVATE_R, NULL), 0);
	ASSERT_EQ(gmem_folio_info(fd, PG, NULL, NULL, NULL), 1);
	for (size_t i = 0; i < PG; i++) {
		ASSERT_EQ(back[i], 0xaa);
		ASSERT_EQ(back[PG + i], 0);
		ASSERT_EQ(back[2 * PG + i], 0xaa);
	}
	assert_uniform(fd, PRIV);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(pin_refuses_private_pages_and_bad_ranges_and_changes_nothing)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 8 * PG, 0);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_pin(fd, 0, PG), -EFAULT);
	ASSERT_EQ(convert(fd, 0, PG, 0), 0);
	ASSERT_EQ(gmem_pin(fd, 0, 2 * PG), -EFAULT);	/* page 1 is private */
	ASSERT_EQ(gmem_folio_info(fd, 0, NULL, NULL, NULL), 0);
	ASSERT_EQ(pins_at(fd, 0), 0);
	ASSERT_EQ(gmem_pin(fd, 0, 0), -EINVAL);
	ASSERT_EQ(gmem_pin(fd, 1, PG), -EINVAL);
	ASSERT_EQ(gmem_pin(fd, 0, PG + 1), -EINVAL);
	ASSERT_EQ(gmem_pin(fd, 8 * PG, PG), -EINVAL);
	ASSERT_EQ(gmem_pin(fd, 0, 9 * PG), -EINVAL);
	ASSERT_EQ(gmem_pin(fd, PG, ~0ULL - PG + 1), -EINVAL);
	ASSERT_EQ(gmem_pin(e.vm, 0, PG), -EINVAL);
	ASSERT_EQ(gmem_pin(NEVER_OPEN, 0, PG), -EBADF);
	ASSERT_EQ(gmem_unpin(NEVER_OPEN, 0, PG), -EBADF);
	ASSERT_EQ(gmem_folio_info(fd, 0, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_pin(fd, 0, PG), 0);
	ASSERT_EQ(gmem_unpin(fd, 0, PG), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(pin_allocates_folios_and_folio_info_reports_pin_counts)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 8 * PG, GMEM_FLAG_INIT_SHARED);
	uint64_t pfn;
	uint32_t pins = 0xbad;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_pin(fd, 2 * PG, 3 * PG), 0);
	ASSERT_EQ(gmem_pin(fd, 3 * PG, PG), 0);
	ASSERT_EQ(gmem_folio_info(fd, PG, NULL, NULL, &pins), 0);
	ASSERT_EQ(pins, 0);
	ASSERT_EQ(gmem_folio_info(fd, 2 * PG, &pfn, NULL, &pins), 1);
	ASSERT_EQ(pins, 1);
	ASSERT_EQ(gmem_folio_info(fd, 3 * PG, &pfn, NULL, &pins), 1);
	ASSERT_EQ(pins, 2);
	ASSERT_EQ(gmem_folio_info(fd, 4 * PG, &pfn, NULL, &pins), 1);
	ASSERT_EQ(pins, 1);
	ASSERT_EQ(gmem_folio_info(fd, 5 * PG, NULL, NULL, &pins), 0);
	ASSERT_EQ(pins, 0);
	/* A pin around pinned pages adds one everywhere, gaps included. */
	ASSERT_EQ(gmem_pin(fd, 0, 8 * PG), 0);
	for (int i = 0; i < 8; i++) {
		uint32_t want = 1 + (i >= 2 && i <= 4) + (i == 3);

		ASSERT_EQ(gmem_folio_info(fd, i * PG, NULL, NULL, &pins), 1);
		ASSERT_EQ(pins, want);
	}
	ASSERT_EQ(gmem_unpin(fd, 0, 8 * PG), 0);
	ASSERT_EQ(gmem_unpin(fd, 2 * PG, 3 * PG), 0);
	ASSERT_EQ(pins_at(fd, 0), 0);
	ASSERT_EQ(pins_at(fd, 2 * PG), 0);
	ASSERT_EQ(pins_at(fd, 3 * PG), 1);
	ASSERT_EQ(pins_at(fd, 4 * PG), 0);
	ASSERT_EQ(gmem_unpin(fd, 3 * PG, PG), 0);
	ASSERT_EQ(pins_at(fd, 3 * PG), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(pinned_page_blocks_conversion_to_private_and_names_its_offset)
{
	struct env e = env_new("sw");
	int fd = bound_file(&e, 64 * PG, GMEM_FLAG_INIT_SHARED);
	uint64_t eo = 0, pfn;
	int64_t seq;
	int is_private = -1;

	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, SHARED_W, &pfn, NULL), 0);
	ASSERT_EQ(gmem_pin(fd, 37 * PG, PG), 0);
	seq = gmem_vm_invalidate_seq(e.vm);

	ASSERT_EQ(gmem_set_attributes(fd, 0, 64 * PG, PRIV, 0, &eo), -EAGAIN);
	ASSERT_EQ(eo, 37 * PG);
	ASSERT_TRUE(strstr(gmem_last_error(), "gmem_set_attributes"));
	/* All or nothing: attributes, stage-2 and the sequence are as before. */
	assert_uniform(fd, 0);
	ASSERT_EQ(gmem_vm_invalidate_seq(e.vm), seq);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA, NULL, &is_private), 1);
	ASSERT_EQ(is_private, 0);
	ASSERT_EQ(pins_at(fd, 37 * PG), 1);
	/* Without an error offset pointer it fails the same way. */
	ASSERT_EQ(convert(fd, 36 * PG, 2 * PG, PRIV), -EAGAIN);
	eo = 0;
	ASSERT_EQ(gmem_set_attributes(fd, 37 * PG, PG, PRIV, 0, &eo), -EAGAIN);
	ASSERT_EQ(eo, 37 * PG);
	/* Ranges around the pinned page convert. */
	ASSERT_EQ(convert(fd, 0, 37 * PG, PRIV), 0);
	ASSERT_EQ(convert(fd, 38 * PG, 26 * PG, PRIV), 0);
	ASSERT_EQ(gmem_attribute_ranges(fd), 3);
	assert_run(fd, 37 * PG, 0, 38 * PG);

	ASSERT_EQ(gmem_unpin(fd, 37 * PG, PG), 0);
	ASSERT_EQ(gmem_set_attributes(fd, 0, 64 * PG, PRIV, 0, &eo), 0);
	assert_uniform(fd, PRIV);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(error_offset_names_the_first_pinned_page_inside_the_range)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 64 * PG, GMEM_FLAG_INIT_SHARED);
	uint64_t eo;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_pin(fd, 10 * PG, 10 * PG), 0);
	ASSERT_EQ(gmem_pin(fd, 30 * PG, PG), 0);
	eo = 0;
	ASSERT_EQ(gmem_set_attributes(fd, 0, 64 * PG, PRIV, 0, &eo), -EAGAIN);
	ASSERT_EQ(eo, 10 * PG);
	eo = 0;
	ASSERT_EQ(gmem_set_attributes(fd, 15 * PG, 10 * PG, PRIV, 0, &eo), -EAGAIN);
	ASSERT_EQ(eo, 15 * PG);
	eo = 0;
	ASSERT_EQ(gmem_set_attributes(fd, 20 * PG, 44 * PG, PRIV, 0, &eo), -EAGAIN);
	ASSERT_EQ(eo, 30 * PG);
	assert_uniform(fd, 0);
	ASSERT_EQ(gmem_unpin(fd, 10 * PG, 10 * PG), 0);
	eo = 0;
	ASSERT_EQ(gmem_set_attributes(fd, 0, 64 * PG, PRIV, 0, &eo), -EAGAIN);
	ASSERT_EQ(eo, 30 * PG);
	ASSERT_EQ(gmem_unpin(fd, 30 * PG, PG), 0);
	ASSERT_EQ(convert(fd, 0, 64 * PG, PRIV), 0);
	assert_uniform(fd, PRIV);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(pins_nest_and_block_until_the_last_unpin)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_INIT_SHARED);
	uint64_t eo = 0;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_pin(fd, PG, PG), 0);
	ASSERT_EQ(gmem_pin(fd, PG, PG), 0);
	ASSERT_EQ(pins_at(fd, PG), 2);
	ASSERT_EQ(gmem_unpin(fd, PG, PG), 0);
	ASSERT_EQ(pins_at(fd, PG), 1);
	ASSERT_EQ(gmem_set_attributes(fd, 0, 4 * PG, PRIV, 0, &eo), -EAGAIN);
	ASSERT_EQ(eo, PG);
	assert_uniform(fd, 0);
	ASSERT_EQ(gmem_unpin(fd, PG, PG), 0);
	ASSERT_EQ(pins_at(fd, PG), 0);
	ASSERT_EQ(gmem_unpin(fd, PG, PG), -EINVAL);
	ASSERT_EQ(convert(fd, 0, 4 * PG, PRIV), 0);
	assert_uniform(fd, PRIV);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(unpin_of_a_page_not_pinned_fails_and_changes_nothing)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_INIT_SHARED);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_unpin(fd, 0, PG), -EINVAL);
	ASSERT_EQ(gmem_pin(fd, 2 * PG, PG), 0);
	ASSERT_EQ(gmem_unpin(fd, PG, 2 * PG), -EINVAL);	/* page 1 is not */
	ASSERT_EQ(gmem_unpin(fd, 2 * PG, 2 * PG), -EINVAL);	/* page 3 is not */
	ASSERT_EQ(pins_at(fd, 2 * PG), 1);
	ASSERT_EQ(gmem_unpin(fd, 0, 0), -EINVAL);
	ASSERT_EQ(gmem_unpin(fd, 2 * PG, PG), 0);
	ASSERT_EQ(pins_at(fd, 2 * PG), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(conversion_to_shared_is_not_blocked_by_pins)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_INIT_SHARED);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(convert(fd, 2 * PG, 2 * PG, PRIV), 0);
	ASSERT_EQ(gmem_pin(fd, 0, 2 * PG), 0);
	ASSERT_EQ(convert(fd, 0, 4 * PG, 0), 0);
	assert_uniform(fd, 0);
	ASSERT_EQ(pins_at(fd, 0), 1);
	ASSERT_EQ(gmem_unpin(fd, 0, 2 * PG), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(punching_a_pinned_page_leaves_it_present_with_its_content)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_INIT_SHARED);
	struct gmem_pool_stats st;
	uint64_t pfn, after;
	uint32_t pins = 0;
	uint8_t *p;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, 4 * PG), 0);
	ASSERT_EQ(gmem_pin(fd, PG, PG), 0);
	pfn = frame_of(fd, PG);
	p = gmem_pool_frame(e.pool, pfn);
	ASSERT_TRUE(p);
	memset(p, 0x5c, PG);

	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 0, 4 * PG), 0);
	ASSERT_EQ(gmem_folio_info(fd, PG, &after, NULL, &pins), 1);
	ASSERT_EQ(after, pfn);
	ASSERT_EQ(pins, 1);
	ASSERT_EQ(p[0], 0x5c);
	ASSERT_EQ(p[PG - 1], 0x5c);
	ASSERT_EQ(gmem_folio_info(fd, 0, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_folio_info(fd, 2 * PG, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_folio_info(fd, 3 * PG, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.frames_in_use, 1);

	/* Once unpinned, the next punch frees it. */
	ASSERT_EQ(gmem_unpin(fd, PG, PG), 0);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 PG, PG), 0);
	ASSERT_EQ(gmem_folio_info(fd, PG, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.frames_in_use, 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

/*
 * The gpa form converts the file range the memslot at the gpa names: with
 * RAM split in two memslots around a hole (one file, two ranges of it), a
 * gpa in the second memslot converts the second range, not the file offset
 * equal to the gpa.
 */
TEST(vm_set_attributes_converts_what_the_memslot_at_the_gpa_binds)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 8 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	const uint64_t low = GPA, high = GPA + 64 * PG;	/* a hole between */
	uint64_t err = ~0ULL;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, low, 4 * PG, fd, 0), 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, high, 4 * PG, fd, 4 * PG), 0);

	/* gpa high + 1 page is file page 5. */
	ASSERT_EQ(gmem_vm_set_attributes(e.vm, high + PG, 2 * PG, PRIV, 0, &err), 0);
	ASSERT_EQ(attr_at(fd, 5 * PG), PRIV);
	ASSERT_EQ(attr_at(fd, 6 * PG), PRIV);
	ASSERT_EQ(attr_at(fd, 1 * PG), 0);
	ASSERT_EQ(gmem_attribute_ranges(fd), 3);

	/* Not across a memslot's end, not where nothing is bound. */
	ASSERT_EQ(gmem_vm_set_attributes(e.vm, low + 3 * PG, 2 * PG, PRIV, 0, NULL), -EINVAL);
	ASSERT_EQ(gmem_vm_set_attributes(e.vm, low + 8 * PG, PG, PRIV, 0, NULL), -EFAULT);
	ASSERT_EQ(gmem_vm_set_attributes(e.vm, high, PG, 1, 0, NULL), -EINVAL);
	ASSERT_EQ(gmem_vm_set_attributes(e.vm, high, PG, PRIV, 1, NULL), -EINVAL);
	ASSERT_EQ(gmem_attribute_ranges(fd), 3);

	/* A pin fails it; the error names the gpa of the pinned page. */
	ASSERT_EQ(gmem_pin(fd, 4 * PG, PG), 0);
	ASSERT_EQ(gmem_vm_set_attributes(e.vm, high, PG, PRIV, 0, &err), -EAGAIN);
	ASSERT_EQ(err, high);
	ASSERT_EQ(attr_at(fd, 4 * PG), 0);
	ASSERT_EQ(gmem_unpin(fd, 4 * PG, PG), 0);

	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}
