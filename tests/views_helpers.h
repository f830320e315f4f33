/* SPDX-License-Identifier: MIT */
/*
 * What the stage-2 view tests share (test_vmm_views.c, test_vmm_any_view.c):
 * a bound slot with its shared and private views, opening probes and faults.
 */
#ifndef GMEM_TESTS_VIEWS_HELPERS_H
#define GMEM_TESTS_VIEWS_HELPERS_H

#include <fcntl.h>
#include <limits.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define PG	GMEM_PAGE_SIZE
#define GPA	0x40000000ULL
#define NPAGES	16
#define PRIV	GMEM_ATTR_PRIVATE
#define PUNCH	(GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE)

/* ------------------------------------------------------------- views */

struct views {
	struct env e;
	int fd;
	uint8_t *view[2];	/* [0] shared, [1] private */
};

static inline struct views views_new(const char *arch, uint64_t flags)
{
	struct views v = { .e = env_new(arch) };
	void *p = NULL, *s = NULL;

	v.fd = gmem_create(v.e.vm, NPAGES * PG, flags);
	ASSERT_GE(v.fd, 0);
	ASSERT_EQ(gmem_vm_bind(v.e.vm, 0, GPA, NPAGES * PG, v.fd, 0), 0);
	ASSERT_EQ(gmem_vm_view_mmap(v.e.vm, 0, PRIV, &p), 0);
	ASSERT_EQ(gmem_vm_view_mmap(v.e.vm, 0, 0, &s), 0);
	v.view[1] = p;
	v.view[0] = s;
	return v;
}

static inline void views_free(struct views *v)
{
	if (v->fd >= 0)
		ASSERT_EQ(gmem_close(v->fd), 0);
	for (int k = 0; k < 2; k++)
		ASSERT_EQ(munmap(v->view[k], NPAGES * PG), 0);
	env_free(&v->e);
}

/* Can the host reach page @i of view @kind? */
static inline bool open_in(struct views *v, int kind, uint64_t i)
{
	return probe_read(v->view[kind] + i * PG, NULL) == 0;
}

static inline int fault(struct views *v, uint64_t i, unsigned int flags)
{
	return gmem_vm_fault(v->e.vm, GPA + i * PG, flags, NULL, NULL);
}

#ifndef MADV_GUARD_REMOVE
#define MADV_GUARD_INSTALL	102
#define MADV_GUARD_REMOVE	103
#endif

#endif
