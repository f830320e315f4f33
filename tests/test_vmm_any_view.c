// SPDX-License-Identifier: MIT
/*
 * The any view (GMEM_VIEW_ANY): open wherever stage-2 maps a page of either
 * kind, closed on conversion both ways and on punch, huge entries included.
 */
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

#include "views_helpers.h"

/* ------------------------------------------------------------ any view */

/*
 * A slot of a software-protected VM, whose guest has no shared alias: the
 * any view is its one address, open wherever stage-2 maps a page of either
 * kind. The VM runs in check mode: after every call, every view's page
 * tables must agree with stage-2.
 */
struct any {
	struct env e;
	int vm, fd;
	uint8_t *any, *view[2];		/* [0] shared, [1] private, or NULL */
};

static struct any any_new(uint64_t flags, bool others)
{
	struct any a = { .e = env_new("sw") };
	void *p = NULL;

	a.vm = gmem_vm_create(a.e.pool, "sw", GMEM_VM_CHECK);
	ASSERT_GE(a.vm, 0);
	a.fd = gmem_create(a.vm, NPAGES * PG, flags);
	ASSERT_GE(a.fd, 0);
	ASSERT_EQ(gmem_vm_bind(a.vm, 0, GPA, NPAGES * PG, a.fd, 0), 0);
	ASSERT_EQ(gmem_vm_view_mmap(a.vm, 0, GMEM_VIEW_ANY, &p), 0);
	a.any = p;
	for (int k = 0; others && k < 2; k++) {
		ASSERT_EQ(gmem_vm_view_mmap(a.vm, 0, k ? PRIV : 0, &p), 0);
		a.view[k] = p;
	}
	return a;
}

static void any_free(struct any *a)
{
	ASSERT_EQ(gmem_vm_violations(a->vm, NULL, 0), 0);
	ASSERT_EQ(gmem_close(a->fd), 0);
	ASSERT_EQ(munmap(a->any, NPAGES * PG), 0);
	for (int k = 0; k < 2; k++)
		if (a->view[k])
			ASSERT_EQ(munmap(a->view[k], NPAGES * PG), 0);
	ASSERT_EQ(gmem_vm_close(a->vm), 0);
	env_free(&a->e);
}

static bool any_open(struct any *a, uint64_t i)
{
	return probe_read(a->any + i * PG, NULL) == 0;
}

static int any_fault(struct any *a, uint64_t i, unsigned int flags)
{
	return gmem_vm_fault(a->vm, GPA + i * PG, flags, NULL, NULL);
}

static int any_convert(struct any *a, uint64_t i, uint64_t n, uint64_t attr)
{
	return gmem_set_attributes(a->fd, i * PG, n * PG, attr, 0, NULL);
}

TEST(any_view_opens_on_a_private_and_on_a_shared_fault)
{
	struct any a = any_new(0, false);

	for (uint64_t i = 0; i < NPAGES; i++)
		ASSERT_TRUE(!any_open(&a, i));
	ASSERT_EQ(any_fault(&a, 3, GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE), 0);
	ASSERT_TRUE(any_open(&a, 3));
	ASSERT_TRUE(!any_open(&a, 2));
	ASSERT_TRUE(!any_open(&a, 4));
	ASSERT_EQ(any_convert(&a, 5, 1, 0), 0);
	ASSERT_EQ(any_fault(&a, 5, GMEM_FAULT_WRITE), 0);
	ASSERT_TRUE(any_open(&a, 5));
	/* A fault whose kind disagrees maps nothing, so opens nothing. */
	ASSERT_EQ(gmem_vm_fault(a.vm, GPA + 6 * PG, 0, NULL, NULL), 1);
	ASSERT_TRUE(!any_open(&a, 6));
	/* One address, the guest's bytes whatever the kind. */
	ASSERT_EQ(gmem_vm_access(a.vm, GPA + 3 * PG + 8, "private", 8,
				 GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE, NULL), 0);
	ASSERT_EQ(gmem_vm_access(a.vm, GPA + 5 * PG + 8, "shared", 7,
				 GMEM_FAULT_WRITE, NULL), 0);
	ASSERT_EQ(memcmp(a.any + 3 * PG + 8, "private", 8), 0);
	ASSERT_EQ(memcmp(a.any + 5 * PG + 8, "shared", 7), 0);
	any_free(&a);
}

TEST(any_view_closes_on_conversion_both_ways_and_on_punch)
{
	struct any a = any_new(0, false);

	/* private -> shared */
	ASSERT_EQ(any_fault(&a, 1, GMEM_FAULT_PRIVATE), 0);
	ASSERT_TRUE(any_open(&a, 1));
	ASSERT_EQ(any_convert(&a, 1, 1, 0), 0);
	ASSERT_TRUE(!any_open(&a, 1));
	ASSERT_EQ(any_fault(&a, 1, 0), 0);
	ASSERT_TRUE(any_open(&a, 1));
	/* shared -> private */
	ASSERT_EQ(any_convert(&a, 1, 1, PRIV), 0);
	ASSERT_TRUE(!any_open(&a, 1));
	ASSERT_EQ(any_fault(&a, 1, GMEM_FAULT_PRIVATE), 0);
	ASSERT_TRUE(any_open(&a, 1));
	/* punch, of a private and a shared page */
	ASSERT_EQ(any_convert(&a, 2, 1, 0), 0);
	ASSERT_EQ(any_fault(&a, 2, GMEM_FAULT_WRITE), 0);
	ASSERT_TRUE(any_open(&a, 2));
	ASSERT_EQ(gmem_fallocate(a.fd, PUNCH, PG, 2 * PG), 0);
	ASSERT_TRUE(!any_open(&a, 1));
	ASSERT_TRUE(!any_open(&a, 2));
	ASSERT_EQ(any_fault(&a, 2, 0), 0);
	ASSERT_EQ(a.any[2 * PG + 5], 0);
	any_free(&a);
}

/*
 * A conversion zaps only entries of the old kind: a page of the range that
 * already had the new attribute keeps its entry, and so stays open in the
 * any view (a refault finds the entry in place and opens nothing).
 */
TEST(any_view_keeps_open_what_a_conversion_leaves_mapped)
{
	struct any a = any_new(0, false);

	ASSERT_EQ(any_convert(&a, 5, 1, 0), 0);
	ASSERT_EQ(any_fault(&a, 4, GMEM_FAULT_PRIVATE), 0);
	ASSERT_EQ(any_fault(&a, 5, 0), 0);
	ASSERT_EQ(any_fault(&a, 7, GMEM_FAULT_PRIVATE), 0);
	ASSERT_EQ(any_convert(&a, 4, 4, PRIV), 0);	/* only 5 was shared */
	ASSERT_TRUE(any_open(&a, 4));
	ASSERT_TRUE(!any_open(&a, 5));
	ASSERT_TRUE(any_open(&a, 7));
	ASSERT_EQ(gmem_vm_stage2(a.vm, GPA + 4 * PG, NULL, NULL), 1);
	ASSERT_EQ(any_convert(&a, 0, NPAGES, 0), 0);
	for (uint64_t i = 0; i < NPAGES; i++)
		ASSERT_TRUE(!any_open(&a, i));
	any_free(&a);
}

TEST(any_view_is_one_per_slot_and_the_other_views_keep_working)
{
	struct any a = any_new(0, true);
	void *p = NULL;

	ASSERT_EQ(gmem_vm_view_mmap(a.vm, 0, GMEM_VIEW_ANY, &p), -EEXIST);
	ASSERT_EQ(gmem_vm_view_mmap(a.vm, 0, PRIV, &p), -EEXIST);
	ASSERT_EQ(gmem_vm_view_mmap(a.vm, 0, 0, &p), -EEXIST);
	ASSERT_EQ(gmem_vm_view_mmap(a.vm, 0, GMEM_VIEW_ANY | PRIV, &p), -EINVAL);
	ASSERT_EQ(gmem_vm_view_mmap(a.vm, 0, 1ULL << 62, &p), -EINVAL);
	ASSERT_EQ(gmem_vm_view_mmap(a.vm, 0, GMEM_VIEW_ANY, NULL), -EINVAL);
	ASSERT_EQ(gmem_vm_view_mmap(a.vm, 1, GMEM_VIEW_ANY, &p), -EINVAL);
	ASSERT_EQ(p, NULL);

	ASSERT_EQ(any_fault(&a, 0, GMEM_FAULT_PRIVATE), 0);
	ASSERT_EQ(any_convert(&a, 1, 1, 0), 0);
	ASSERT_EQ(any_fault(&a, 1, 0), 0);
	ASSERT_EQ(probe_read(a.view[1], NULL), 0);
	ASSERT_NE(probe_read(a.view[0], NULL), 0);
	ASSERT_EQ(probe_read(a.view[0] + PG, NULL), 0);
	ASSERT_NE(probe_read(a.view[1] + PG, NULL), 0);
	ASSERT_TRUE(any_open(&a, 0));
	ASSERT_TRUE(any_open(&a, 1));
	ASSERT_EQ(any_convert(&a, 0, 2, PRIV), 0);	/* page 1 to private */
	ASSERT_EQ(probe_read(a.view[1], NULL), 0);
	ASSERT_NE(probe_read(a.view[0] + PG, NULL), 0);
	ASSERT_TRUE(any_open(&a, 0));
	ASSERT_TRUE(!any_open(&a, 1));
	any_free(&a);
}

TEST(any_view_made_late_opens_what_stage2_maps_of_either_kind)
{
	struct env e = env_new("pkvm");
	int fd = gmem_create(e.vm, NPAGES * PG, 0);
	uint8_t *p = NULL;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 7, GPA, NPAGES * PG, fd, 0), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 2 * PG, GMEM_FAULT_PRIVATE, NULL, NULL), 0);
	ASSERT_EQ(gmem_set_attributes(fd, 4 * PG, PG, 0, 0, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 4 * PG, 0, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_view_mmap(e.vm, 7, GMEM_VIEW_ANY, (void **)&p), 0);
	ASSERT_EQ(probe_read(p + 2 * PG, NULL), 0);
	ASSERT_EQ(probe_read(p + 4 * PG, NULL), 0);
	ASSERT_NE(probe_read(p + 3 * PG, NULL), 0);
	/* Unbinding leaves an inaccessible reservation. */
	ASSERT_EQ(gmem_vm_unbind(e.vm, 7), 0);
	ASSERT_NE(probe_read(p + 2 * PG, NULL), 0);
	ASSERT_NE(probe_read(p + 4 * PG, NULL), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(munmap(p, NPAGES * PG), 0);
	env_free(&e);
}

TEST(check_mode_catches_an_any_view_that_shows_an_unmapped_page)
{
	struct any a = any_new(0, false);
	struct gmem_violation viol;

	ASSERT_EQ(any_fault(&a, 0, GMEM_FAULT_PRIVATE), 0);
	ASSERT_EQ(gmem_vm_violations(a.vm, NULL, 0), 0);
	if (madvise(a.any + 5 * PG, PG, MADV_GUARD_REMOVE))
		test_skip("no guard regions: check mode cannot see view fences");
	ASSERT_EQ(any_fault(&a, 1, GMEM_FAULT_PRIVATE), 0);
	ASSERT_EQ(gmem_vm_violations(a.vm, &viol, 1), 1);
	ASSERT_EQ(viol.invariant, 2);
	ASSERT_EQ(viol.offset, 5 * PG);
	ASSERT_TRUE(strstr(viol.rule, "the any view shows gfn"));
	/* Fence it again by hand so any_free() sees a clean slate from here on. */
	ASSERT_EQ(madvise(a.any + 5 * PG, PG, MADV_GUARD_INSTALL), 0);
	ASSERT_EQ(gmem_close(a.fd), 0);
	ASSERT_EQ(munmap(a.any, NPAGES * PG), 0);
	ASSERT_EQ(gmem_vm_close(a.vm), 0);
	env_free(&a.e);
}

/* A huge entry opens its whole folio in the any view; a split closes it all. */
TEST(any_view_follows_huge_entries)
{
	enum { BLOCK = 512 };
	struct env e = env_new("sw");
	int vm = gmem_vm_create(e.pool, "sw", GMEM_VM_CHECK), fd;
	uint8_t *p = NULL;

	ASSERT_GE(vm, 0);
	fd = gmem_create(vm, 2 * BLOCK * PG, GMEM_FLAG_HUGE_2M);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(vm, 0, GPA, 2 * BLOCK * PG, fd, 0), 0);
	ASSERT_EQ(gmem_vm_view_mmap(vm, 0, GMEM_VIEW_ANY, (void **)&p), 0);
	ASSERT_EQ(gmem_vm_fault(vm, GPA + 7 * PG, GMEM_FAULT_PRIVATE, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_stage2_level(vm, GPA), 1);
	ASSERT_EQ(probe_read(p, NULL), 0);
	ASSERT_EQ(probe_read(p + (BLOCK - 1) * PG, NULL), 0);
	ASSERT_EQ(probe_read(p + BLOCK * PG, NULL), SIGSEGV);
	ASSERT_EQ(gmem_set_attributes(fd, 100 * PG, PG, 0, 0, NULL), 0);
	ASSERT_EQ(probe_read(p, NULL), SIGSEGV);
	ASSERT_EQ(probe_read(p + (BLOCK - 1) * PG, NULL), SIGSEGV);
	ASSERT_EQ(gmem_vm_fault(vm, GPA + 100 * PG, 0, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(vm, GPA + 7 * PG, GMEM_FAULT_PRIVATE, NULL, NULL), 0);
	ASSERT_EQ(probe_read(p + 100 * PG, NULL), 0);
	ASSERT_EQ(probe_read(p + 7 * PG, NULL), 0);
	ASSERT_EQ(probe_read(p + 8 * PG, NULL), SIGSEGV);
	/* Back to private: the shared entry goes, the private one stays. */
	ASSERT_EQ(gmem_set_attributes(fd, 100 * PG, PG, PRIV, 0, NULL), 0);
	ASSERT_EQ(probe_read(p + 100 * PG, NULL), SIGSEGV);
	ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(munmap(p, 2 * BLOCK * PG), 0);
	ASSERT_EQ(gmem_vm_close(vm), 0);
	env_free(&e);
}
