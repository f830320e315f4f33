// SPDX-License-Identifier: MIT
/*
 * The layout of docs/vmm.md, "RAM around a hole": one file bound as two
 * memslots, so that gpa and file offset differ, and the function that page
 * gives for a guest's conversion request, as written there.
 */
#include <stdbool.h>
#include <string.h>

#include "harness.h"

#define PG	GMEM_PAGE_SIZE
#define LOW	(16 * PG)		/* RAM below the hole */
#define HIGH	(1ULL << 20)		/* where the rest starts */
#define RAM	(32 * PG)

/* docs/vmm.md, unchanged. */
static int convert_gpa_range(int gvm, uint64_t gpa, uint64_t size,
			     bool private, uint64_t *err_gpa)
{
	while (size) {
		uint64_t left, n;
		int ret = gmem_vm_translate(gvm, gpa, NULL, NULL, &left);

		if (ret)		/* -EFAULT: the hole, not RAM */
			return ret;
		n = size < left ? size : left;
		ret = gmem_vm_set_attributes(gvm, gpa, n,
					     private ? GMEM_ATTR_PRIVATE : 0,
					     0, err_gpa);
		if (ret)
			return ret;
		gpa += n;
		size -= n;
	}
	return 0;
}

/* The attribute of every page of the file, as a string of 'p' and 's'. */
static void file_attrs(int fd, char *out)
{
	for (uint64_t i = 0; i < RAM / PG; i++) {
		uint64_t attr;

		ASSERT_EQ(gmem_get_attributes(fd, i * PG, &attr, NULL), 0);
		out[i] = attr & GMEM_ATTR_PRIVATE ? 'p' : 's';
	}
	out[RAM / PG] = 0;
}

static void expect_attrs(int fd, const char *want)
{
	char got[RAM / PG + 1];

	file_attrs(fd, got);
	if (strcmp(got, want))
		printf("#   file: %s\n#   want: %s\n", got, want);
	ASSERT_EQ(strcmp(got, want), 0);
}

TEST(a_conversion_above_the_hole_converts_the_file_offsets_behind_it)
{
	struct env e = env_new("snp");
	uint64_t err = 0;
	int fd = gmem_create(e.vm, RAM, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, LOW, fd, 0), 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, HIGH, RAM - LOW, fd, LOW), 0);
	/* gpa HIGH+2 pages is file offset LOW+2 pages, not HIGH+2 pages. */
	ASSERT_EQ(convert_gpa_range(e.vm, HIGH + 2 * PG, 3 * PG, true, &err), 0);
	expect_attrs(fd, "ssssssssssssssss" "ssppps" "ssssssssss");
	/* A request that runs into the hole stops there, with -EFAULT. */
	ASSERT_EQ(convert_gpa_range(e.vm, LOW - PG, 2 * PG, true, &err), -EFAULT);
	expect_attrs(fd, "sssssssssssssssp" "ssppps" "ssssssssss");
	/* A pinned page is named by its gpa, the address the guest used. */
	ASSERT_EQ(convert_gpa_range(e.vm, HIGH, 4 * PG, false, &err), 0);
	ASSERT_EQ(gmem_pin(fd, LOW + PG, PG), 0);
	ASSERT_EQ(convert_gpa_range(e.vm, HIGH, 4 * PG, true, &err), -EAGAIN);
	ASSERT_EQ(err, HIGH + PG);
	ASSERT_TRUE(strstr(gmem_last_error(), "file offset 0x11000"));
	/* The failed call changed nothing: gpa HIGH+4 pages is still private. */
	expect_attrs(fd, "sssssssssssssssp" "ssssps" "ssssssssss");
	ASSERT_EQ(gmem_unpin(fd, LOW + PG, PG), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(a_request_across_two_memslots_converts_each_part_in_its_file_place)
{
	struct env e = env_new("tdx");
	uint64_t err = 0;
	int fd = gmem_create(e.vm, RAM, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);

	ASSERT_GE(fd, 0);
	/* Adjacent in gpa, swapped in the file. */
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, 0, LOW, fd, LOW), 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, LOW, RAM - LOW, fd, 0), 0);
	ASSERT_EQ(convert_gpa_range(e.vm, LOW - 2 * PG, 3 * PG, true, &err), 0);
	/* gpa LOW-2, LOW-1: file RAM-2, RAM-1; gpa LOW: file 0. */
	expect_attrs(fd, "psssssssssssssss" "ssssssssssssss" "pp");
	/* One gmem_vm_set_attributes may not cross the memslot's end. */
	ASSERT_EQ(gmem_vm_set_attributes(e.vm, LOW - PG, 2 * PG, 0, 0, &err), -EINVAL);
	expect_attrs(fd, "psssssssssssssss" "ssssssssssssss" "pp");
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}
