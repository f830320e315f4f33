/* SPDX-License-Identifier: MIT */
/*
 * What the huge-folio tests share (test_huge*.c): flags, a bound 2 MiB or
 * 1 GiB file, its folio order and frame, the pool's count, guest bytes.
 */
#ifndef GMEM_TESTS_HUGE_HELPERS_H
#define GMEM_TESTS_HUGE_HELPERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "harness.h"

#define PG	GMEM_PAGE_SIZE
#define MiB	(1ULL << 20)
#define GiB	(1ULL << 30)
#define PRIV	GMEM_ATTR_PRIVATE
#define H2M	GMEM_FLAG_HUGE_2M
#define H1G	GMEM_FLAG_HUGE_1G

#define SHARED_W	GMEM_FAULT_WRITE
#define PRIVATE_W	(GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE)

/* Guest address of every test's file: aligned for 1 GiB folios. */
#define GPA		(4 * GiB)

static inline int convert(int fd, uint64_t offset, uint64_t size, uint64_t attr)
{
	return gmem_set_attributes(fd, offset, size, attr, 0, NULL);
}

static inline int order_at(int fd, uint64_t offset)
{
	int order = -1;

	ASSERT_EQ(gmem_folio_info(fd, offset, NULL, &order, NULL), 1);
	return order;
}

static inline uint64_t frame_of(int fd, uint64_t offset)
{
	uint64_t pfn = 0;

	ASSERT_EQ(gmem_folio_info(fd, offset, &pfn, NULL, NULL), 1);
	return pfn;
}

static inline uint64_t in_use(struct env *e)
{
	struct gmem_pool_stats st;

	ASSERT_EQ(gmem_pool_stats(e->pool, &st), 0);
	return st.frames_in_use;
}

static inline int bound_file(struct env *e, uint64_t size, uint64_t flags)
{
	int fd = gmem_create(e->vm, size, flags);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(e->vm, 0, GPA, size, fd, 0), 0);
	return fd;
}

static inline struct env check_env(const char *arch)
{
	struct env e;

	e.pool = gmem_pool_create(64 * GiB);
	ASSERT_GE(e.pool, 0);
	e.vm = gmem_vm_create(e.pool, arch, GMEM_VM_CHECK);
	ASSERT_GE(e.vm, 0);
	return e;
}

static inline void assert_clean(struct env *e)
{
	struct gmem_violation v[4];
	int64_t n = gmem_vm_violations(e->vm, v, 4);

	for (int64_t i = 0; i < n && i < 4; i++)
		printf("#   violation %d after %s at %#llx: %s\n", v[i].invariant,
		       v[i].op, (unsigned long long)v[i].offset, v[i].rule);
	ASSERT_EQ(n, 0);
}

/* The arch model's words for frame @pfn contain @what (printed if not). */
static inline int frame_is(int pool, uint64_t pfn, const char *what)
{
	char buf[128];

	ASSERT_GT(gmem_pool_frame_state(pool, pfn, buf, sizeof(buf)), 0);
	if (!strstr(buf, what))
		printf("#   frame %#llx: %s, want %s\n", (unsigned long long)pfn,
		       buf, what);
	return strstr(buf, what) != NULL;
}

/* The guest writes a page-specific pattern into page @page (as @flags). */
static inline void guest_write(struct env *e, uint64_t page, unsigned int flags)
{
	uint8_t buf[64];
	struct gmem_exit ex;

	memset(buf, (int)(page * 7 + 1), sizeof(buf));
	memcpy(buf, &page, sizeof(page));
	ASSERT_EQ(gmem_vm_access(e->vm, GPA + page * PG, buf, sizeof(buf),
				 flags | GMEM_FAULT_WRITE, &ex), 0);
}

/* Page @page holds the pattern guest_write() left (read as @flags). */
static inline void guest_expect(struct env *e, uint64_t page, unsigned int flags)
{
	uint8_t buf[64], want[64];
	struct gmem_exit ex;

	memset(want, (int)(page * 7 + 1), sizeof(want));
	memcpy(want, &page, sizeof(page));
	ASSERT_EQ(gmem_vm_access(e->vm, GPA + page * PG, buf, sizeof(buf),
				 flags & ~GMEM_FAULT_WRITE, &ex), 0);
	ASSERT_EQ(memcmp(buf, want, sizeof(buf)), 0);
}

#endif
