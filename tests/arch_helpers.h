/* SPDX-License-Identifier: MIT */
/*
 * What the arch backend tests share (test_arch*.c): fault flags, a bound
 * file, guest reads and writes, a frame's bytes and its model state.
 */
#ifndef GMEM_TESTS_ARCH_HELPERS_H
#define GMEM_TESTS_ARCH_HELPERS_H

#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

#include "harness.h"

#define PG	GMEM_PAGE_SIZE
#define MiB	(1ULL << 20)
#define GiB	(1ULL << 30)
#define PRIV	GMEM_ATTR_PRIVATE

#define SHARED_R	0
#define SHARED_W	GMEM_FAULT_WRITE
#define PRIVATE_R	GMEM_FAULT_PRIVATE
#define PRIVATE_W	(GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE)

/* Guest address where the tests bind their file (slot 0, file offset 0). */
#define GPA		(16 * MiB)
#define GFN		(GPA / PG)

static inline int convert(int fd, uint64_t offset, uint64_t size, uint64_t attr)
{
	return gmem_set_attributes(fd, offset, size, attr, 0, NULL);
}

static inline uint64_t frame_of(int fd, uint64_t offset)
{
	uint64_t pfn = 0;

	ASSERT_EQ(gmem_folio_info(fd, offset, &pfn, NULL, NULL), 1);
	return pfn;
}

static inline void fill(uint8_t *p, size_t n, unsigned int seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 131 + (i >> 8));
}

static inline bool is_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

/* The arch model's words for frame @pfn contain @want. */
static inline void assert_state(int pool, uint64_t pfn, const char *want)
{
	char buf[160] = "";

	ASSERT_GT(gmem_pool_frame_state(pool, pfn, buf, sizeof(buf)), 0);
	if (!strstr(buf, want))
		printf("#   frame %#llx is \"%s\", expected \"%s\"\n",
		       (unsigned long long)pfn, buf, want);
	ASSERT_TRUE(strstr(buf, want));
}

static inline void guest_write(int vm, uint64_t gpa, const void *buf, size_t len)
{
	struct gmem_exit exit;

	ASSERT_EQ(gmem_vm_access(vm, gpa, (void *)buf, len, PRIVATE_W, &exit), 0);
}

static inline void guest_read(int vm, uint64_t gpa, void *buf, size_t len,
		       unsigned int flags)
{
	struct gmem_exit exit;

	memset(buf, 0xa5, len);
	ASSERT_EQ(gmem_vm_access(vm, gpa, buf, len, flags, &exit), 0);
}

/* A file of @size bytes on @vm, bound at GPA as slot 0. */
static inline int bound_file(int vm, uint64_t size, uint64_t flags)
{
	int fd = gmem_create(vm, size, flags);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(vm, 0, GPA, size, fd, 0), 0);
	return fd;
}

#endif
