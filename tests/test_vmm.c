// SPDX-License-Identifier: MIT
/*
 * Real guests. First the stage-2 views without KVM (gmem_vm_view_mmap): a
 * page is reachable in a view only while stage-2 maps it with the view's
 * kind, and conversion, punch, release and unbind take it away (SIGSEGV
 * probes). Then gmem vm, the way a user runs it ($(O)/gmem): the guest's own
 * checks on every backend, more vCPUs, the refuse policy, usage errors.
 * The guest tests skip when /dev/kvm is not usable here.
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

static struct views views_new(const char *arch, uint64_t flags)
{
	struct views v = { .e = env_new(arch) };
	void *p = NULL, *s = NULL;

	v.fd = gmem_create(v.e.vm, NPAGES * PG, flags);
	ASSERT_GE(v.fd, 0);
	ASSERT_EQ(gmem_bind(v.e.vm, 0, GPA, NPAGES * PG, v.fd, 0), 0);
	ASSERT_EQ(gmem_vm_view_mmap(v.e.vm, 0, PRIV, &p), 0);
	ASSERT_EQ(gmem_vm_view_mmap(v.e.vm, 0, 0, &s), 0);
	v.view[1] = p;
	v.view[0] = s;
	return v;
}

static void views_free(struct views *v)
{
	if (v->fd >= 0)
		ASSERT_EQ(gmem_close(v->fd), 0);
	for (int k = 0; k < 2; k++)
		ASSERT_EQ(munmap(v->view[k], NPAGES * PG), 0);
	env_free(&v->e);
}

/* Can the host reach page @i of view @kind? */
static bool open_in(struct views *v, int kind, uint64_t i)
{
	return probe_read(v->view[kind] + i * PG, NULL) == 0;
}

static int fault(struct views *v, uint64_t i, unsigned int flags)
{
	return gmem_vm_fault(v->e.vm, GPA + i * PG, flags, NULL, NULL);
}

TEST(view_pages_are_fenced_until_stage2_maps_them)
{
	struct views v = views_new("sw", 0);

	for (uint64_t i = 0; i < NPAGES; i++) {
		ASSERT_TRUE(!open_in(&v, 1, i));
		ASSERT_TRUE(!open_in(&v, 0, i));
	}
	ASSERT_EQ(fault(&v, 3, GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE), 0);
	ASSERT_TRUE(open_in(&v, 1, 3));
	ASSERT_TRUE(!open_in(&v, 0, 3));	/* the other view stays shut */
	ASSERT_TRUE(!open_in(&v, 1, 2));	/* and so do its neighbours */
	ASSERT_TRUE(!open_in(&v, 1, 4));
	views_free(&v);
}

TEST(a_wrong_view_fault_opens_nothing)
{
	struct views v = views_new("sw", 0);
	struct gmem_exit exit;

	ASSERT_EQ(gmem_vm_fault(v.e.vm, GPA, 0, NULL, &exit), 1);
	ASSERT_EQ(exit.reason, GMEM_EXIT_MEMORY_FAULT);
	ASSERT_TRUE(!open_in(&v, 0, 0));
	ASSERT_TRUE(!open_in(&v, 1, 0));
	views_free(&v);
}

TEST(an_open_view_page_is_the_guest_page)
{
	struct views v = views_new("sw", 0);
	uint8_t buf[8] = "private", back[8] = { 0 };

	ASSERT_EQ(gmem_vm_access(v.e.vm, GPA + 5 * PG + 100, buf, sizeof(buf),
				 GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE, NULL), 0);
	ASSERT_EQ(memcmp(v.view[1] + 5 * PG + 100, buf, sizeof(buf)), 0);
	memcpy(v.view[1] + 5 * PG + 200, "written", 8);
	ASSERT_EQ(gmem_vm_access(v.e.vm, GPA + 5 * PG + 200, back, sizeof(back),
				 GMEM_FAULT_PRIVATE, NULL), 0);
	ASSERT_EQ(memcmp(back, "written", 8), 0);
	views_free(&v);
}

TEST(conversion_closes_the_page_in_its_view)
{
	struct views v = views_new("sw", GMEM_FLAG_MMAP);

	ASSERT_EQ(fault(&v, 1, GMEM_FAULT_PRIVATE), 0);
	ASSERT_EQ(gmem_set_attributes(v.fd, PG, PG, 0, 0, NULL), 0);
	ASSERT_TRUE(!open_in(&v, 1, 1));
	ASSERT_TRUE(!open_in(&v, 0, 1));	/* shared only once faulted */
	ASSERT_EQ(fault(&v, 1, GMEM_FAULT_WRITE), 0);
	ASSERT_TRUE(open_in(&v, 0, 1));
	ASSERT_EQ(gmem_set_attributes(v.fd, PG, PG, PRIV, 0, NULL), 0);
	ASSERT_TRUE(!open_in(&v, 0, 1));
	ASSERT_TRUE(!open_in(&v, 1, 1));
	views_free(&v);
}

TEST(conversion_of_other_pages_leaves_a_view_page_open)
{
	struct views v = views_new("snp", 0);

	ASSERT_EQ(fault(&v, 0, GMEM_FAULT_PRIVATE), 0);
	ASSERT_EQ(fault(&v, 2, GMEM_FAULT_PRIVATE), 0);
	ASSERT_EQ(gmem_set_attributes(v.fd, PG, PG, 0, 0, NULL), 0);
	ASSERT_TRUE(open_in(&v, 1, 0));
	ASSERT_TRUE(open_in(&v, 1, 2));
	views_free(&v);
}

TEST(punch_closes_the_page_in_both_views)
{
	struct views v = views_new("tdx", 0);

	ASSERT_EQ(gmem_set_attributes(v.fd, 0, PG, 0, 0, NULL), 0);
	ASSERT_EQ(fault(&v, 0, GMEM_FAULT_WRITE), 0);
	ASSERT_EQ(fault(&v, 1, GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE), 0);
	ASSERT_TRUE(open_in(&v, 0, 0));
	ASSERT_TRUE(open_in(&v, 1, 1));
	ASSERT_EQ(gmem_fallocate(v.fd, PUNCH, 0, 2 * PG), 0);
	ASSERT_TRUE(!open_in(&v, 0, 0));
	ASSERT_TRUE(!open_in(&v, 1, 1));
	/* The next fault opens a zeroed page. */
	ASSERT_EQ(fault(&v, 1, GMEM_FAULT_PRIVATE), 0);
	ASSERT_EQ(v.view[1][PG + 7], 0);
	views_free(&v);
}

TEST(pages_mapped_before_the_view_is_made_are_open)
{
	struct env e = env_new("pkvm");
	int fd = gmem_create(e.vm, NPAGES * PG, 0);
	void *p = NULL;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_bind(e.vm, 7, GPA, NPAGES * PG, fd, 0), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 2 * PG, GMEM_FAULT_PRIVATE, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_view_mmap(e.vm, 7, PRIV, &p), 0);
	ASSERT_EQ(probe_read((uint8_t *)p + 2 * PG, NULL), 0);
	ASSERT_NE(probe_read((uint8_t *)p + 3 * PG, NULL), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(munmap(p, NPAGES * PG), 0);
	env_free(&e);
}

TEST(unbind_leaves_an_inaccessible_reservation)
{
	struct views v = views_new("sw", 0);

	ASSERT_EQ(fault(&v, 0, GMEM_FAULT_PRIVATE), 0);
	ASSERT_TRUE(open_in(&v, 1, 0));
	ASSERT_EQ(gmem_unbind(v.e.vm, 0), 0);
	for (uint64_t i = 0; i < NPAGES; i++) {
		ASSERT_TRUE(!open_in(&v, 1, i));
		ASSERT_TRUE(!open_in(&v, 0, i));
	}
	/* A new binding of the same slot gets fresh views. */
	ASSERT_EQ(gmem_bind(v.e.vm, 0, GPA, NPAGES * PG, v.fd, 0), 0);
	ASSERT_EQ(fault(&v, 0, GMEM_FAULT_PRIVATE), 0);
	ASSERT_TRUE(!open_in(&v, 1, 0));
	views_free(&v);
}

TEST(closing_the_file_closes_its_views)
{
	struct views v = views_new("snp", 0);

	ASSERT_EQ(fault(&v, 4, GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE), 0);
	ASSERT_TRUE(open_in(&v, 1, 4));
	ASSERT_EQ(gmem_close(v.fd), 0);
	v.fd = -1;
	ASSERT_TRUE(!open_in(&v, 1, 4));
	views_free(&v);
}

/* In a child: read @p with the default SIGSEGV action, so a fault kills it. */
static void read_view(void *p)
{
	signal(SIGSEGV, SIG_DFL);
	(void)*(volatile uint8_t *)p;
}

TEST(a_forked_child_has_no_view)
{
	struct views v = views_new("pkvm", 0);

	ASSERT_EQ(fault(&v, 0, GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE), 0);
	ASSERT_TRUE(open_in(&v, 1, 0));
	ASSERT_EQ(run_in_child(read_view, v.view[1]), SIGSEGV);
	views_free(&v);
}

TEST(view_mmap_reports_its_errors)
{
	struct views v = views_new("sw", 0);
	void *p = NULL;

	ASSERT_EQ(gmem_vm_view_mmap(v.e.vm, 0, 1, &p), -EINVAL);
	ASSERT_EQ(gmem_vm_view_mmap(v.e.vm, 0, PRIV, NULL), -EINVAL);
	ASSERT_EQ(gmem_vm_view_mmap(v.fd, 0, PRIV, &p), -EINVAL);
	ASSERT_EQ(gmem_vm_view_mmap(9999, 0, PRIV, &p), -EBADF);
	ASSERT_EQ(gmem_vm_view_mmap(v.e.vm, 1, PRIV, &p), -EINVAL);
	ASSERT_EQ(gmem_vm_view_mmap(v.e.vm, GMEM_MAX_SLOTS, 0, &p), -EINVAL);
	ASSERT_EQ(gmem_vm_view_mmap(v.e.vm, 0, PRIV, &p), -EEXIST);
	ASSERT_EQ(gmem_vm_view_mmap(v.e.vm, 0, 0, &p), -EEXIST);
	ASSERT_EQ(p, NULL);
	views_free(&v);
}

#ifndef MADV_GUARD_REMOVE
#define MADV_GUARD_INSTALL	102
#define MADV_GUARD_REMOVE	103
#endif

TEST(check_mode_catches_a_view_that_shows_an_unmapped_page)
{
	struct env e = env_new("sw");
	struct gmem_violation viol;
	int vm = gmem_vm_create(e.pool, "sw", GMEM_VM_CHECK), fd;
	uint8_t *p = NULL;

	ASSERT_GE(vm, 0);
	fd = gmem_create(vm, NPAGES * PG, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_bind(vm, 0, GPA, NPAGES * PG, fd, 0), 0);
	ASSERT_EQ(gmem_vm_view_mmap(vm, 0, PRIV, (void **)&p), 0);
	ASSERT_EQ(gmem_vm_fault(vm, GPA, GMEM_FAULT_PRIVATE, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), 0);
	/* Open page 5 behind gmem's back, as a missed fence would leave it. */
	if (madvise(p + 5 * PG, PG, MADV_GUARD_REMOVE))
		test_skip("no guard regions: check mode cannot see view fences");
	ASSERT_EQ(gmem_vm_fault(vm, GPA + PG, GMEM_FAULT_PRIVATE, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_violations(vm, &viol, 1), 1);
	ASSERT_EQ(viol.invariant, 2);
	ASSERT_EQ(viol.offset, 5 * PG);
	ASSERT_TRUE(strstr(viol.rule, "the private view shows gfn"));
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(munmap(p, NPAGES * PG), 0);
	ASSERT_EQ(gmem_vm_destroy(vm), 0);
	env_free(&e);
}

/*
 * A huge entry opens its whole folio in the view; splitting it (a 4 KiB
 * conversion inside) zaps the whole entry and closes the whole folio, and
 * the check mode's page-table read agrees with stage-2 at every step.
 */
TEST(a_huge_entry_opens_and_closes_its_whole_folio_in_the_view)
{
	enum { BLOCK = 512 };
	struct env e = env_new("sw");
	int vm = gmem_vm_create(e.pool, "sw", GMEM_VM_CHECK), fd;
	uint8_t *p = NULL;

	ASSERT_GE(vm, 0);
	fd = gmem_create(vm, 2 * BLOCK * PG, GMEM_FLAG_HUGE_2M);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_bind(vm, 0, GPA, 2 * BLOCK * PG, fd, 0), 0);
	ASSERT_EQ(gmem_vm_view_mmap(vm, 0, PRIV, (void **)&p), 0);

	ASSERT_EQ(gmem_vm_fault(vm, GPA + 7 * PG, GMEM_FAULT_PRIVATE, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_stage2_level(vm, GPA), 1);
	ASSERT_EQ(probe_read(p, NULL), 0);
	ASSERT_EQ(probe_read(p + (BLOCK - 1) * PG, NULL), 0);
	ASSERT_EQ(probe_read(p + BLOCK * PG, NULL), SIGSEGV);	/* next folio */

	/* One page goes shared: the folio splits and its entry goes whole. */
	ASSERT_EQ(gmem_set_attributes(fd, 100 * PG, PG, 0, 0, NULL), 0);
	ASSERT_EQ(probe_read(p, NULL), SIGSEGV);
	ASSERT_EQ(probe_read(p + (BLOCK - 1) * PG, NULL), SIGSEGV);
	ASSERT_EQ(gmem_vm_fault(vm, GPA + 7 * PG, GMEM_FAULT_PRIVATE, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_stage2_level(vm, GPA + 7 * PG), 0);
	ASSERT_EQ(probe_read(p + 7 * PG, NULL), 0);
	ASSERT_EQ(probe_read(p + 8 * PG, NULL), SIGSEGV);

	/* Back to private: merged, and the next fault opens all of it again. */
	ASSERT_EQ(gmem_set_attributes(fd, 100 * PG, PG, PRIV, 0, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(vm, GPA + 300 * PG, GMEM_FAULT_PRIVATE, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_stage2_level(vm, GPA), 1);
	ASSERT_EQ(probe_read(p + 100 * PG, NULL), 0);
	ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), 0);

	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(munmap(p, 2 * BLOCK * PG), 0);
	ASSERT_EQ(gmem_vm_destroy(vm), 0);
	env_free(&e);
}

/*
 * Faults and conversions race on the same pages from two threads; once both
 * stop, every page is open in exactly the views stage-2 maps it for.
 */
struct race {
	struct views *v;
	atomic_bool stop;
};

static void *race_faults(void *arg)
{
	struct race *r = arg;
	unsigned int i = 0;

	while (!atomic_load(&r->stop)) {
		uint64_t page = i++ % NPAGES;

		gmem_vm_fault(r->v->e.vm, GPA + page * PG,
			      (i & 1 ? GMEM_FAULT_PRIVATE : 0), NULL, NULL);
	}
	return NULL;
}

TEST(views_agree_with_stage2_after_racing_faults_and_conversions)
{
	struct views v = views_new("sw", 0);
	struct race r = { .v = &v };
	uint8_t *any = NULL;
	pthread_t t;

	ASSERT_EQ(gmem_vm_view_mmap(v.e.vm, 0, GMEM_VIEW_ANY, (void **)&any), 0);

	ASSERT_EQ(pthread_create(&t, NULL, race_faults, &r), 0);
	for (unsigned int round = 0; round < 2000; round++) {
		uint64_t page = (round * 7) % (NPAGES - 1);

		gmem_set_attributes(v.fd, page * PG, 2 * PG, round & 1 ? PRIV : 0,
				    0, NULL);
	}
	atomic_store(&r.stop, true);
	pthread_join(t, NULL);
	for (uint64_t i = 0; i < NPAGES; i++) {
		int private = -1;
		int mapped = gmem_vm_stage2(v.e.vm, GPA + i * PG, NULL, &private);

		ASSERT_GE(mapped, 0);
		ASSERT_EQ(open_in(&v, 1, i), mapped && private);
		ASSERT_EQ(open_in(&v, 0, i), mapped && !private);
		ASSERT_EQ(probe_read(any + i * PG, NULL) == 0, mapped);
	}
	views_free(&v);
	ASSERT_EQ(munmap(any, NPAGES * PG), 0);
}

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
	ASSERT_EQ(gmem_bind(a.vm, 0, GPA, NPAGES * PG, a.fd, 0), 0);
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
	ASSERT_EQ(gmem_vm_destroy(a->vm), 0);
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
	ASSERT_EQ(gmem_bind(e.vm, 7, GPA, NPAGES * PG, fd, 0), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 2 * PG, GMEM_FAULT_PRIVATE, NULL, NULL), 0);
	ASSERT_EQ(gmem_set_attributes(fd, 4 * PG, PG, 0, 0, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 4 * PG, 0, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_view_mmap(e.vm, 7, GMEM_VIEW_ANY, (void **)&p), 0);
	ASSERT_EQ(probe_read(p + 2 * PG, NULL), 0);
	ASSERT_EQ(probe_read(p + 4 * PG, NULL), 0);
	ASSERT_NE(probe_read(p + 3 * PG, NULL), 0);
	/* Unbinding leaves an inaccessible reservation. */
	ASSERT_EQ(gmem_unbind(e.vm, 7), 0);
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
	ASSERT_EQ(gmem_vm_destroy(a.vm), 0);
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
	ASSERT_EQ(gmem_bind(vm, 0, GPA, 2 * BLOCK * PG, fd, 0), 0);
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
	ASSERT_EQ(gmem_vm_destroy(vm), 0);
	env_free(&e);
}

/* ------------------------------------------------------------- gmem vm */

/* Run "gmem vm ARGS..." (@args NULL-terminated) and collect what it printed. */
static struct output run_vm(const char *const *args)
{
	const char *argv[16] = { "vm" };
	int i;

	for (i = 0; args[i] && i < 13; i++)
		argv[i + 1] = args[i];
	argv[i + 1] = NULL;
	return run_gmem(argv);
}

/* gmem vm ARGS, skipping the calling test if it says it cannot run a guest. */
static struct output run_guest(const char *const *args)
{
	static char why[200];
	struct output o = run_vm(args);

	if (o.status == 77) {
		snprintf(why, sizeof(why), "%s", o.err);
		why[strcspn(why, "\n")] = 0;
		output_free(&o);
		test_skip(why);
	}
	return o;
}

/* Skip the calling test unless this process can run a KVM guest. */
static void need_kvm(void)
{
	static char why[160];
	static int usable = -1;

	if (usable < 0) {
		int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm = -1;

		if (kvm < 0)
			snprintf(why, sizeof(why), "/dev/kvm: %s", strerror(errno));
		else if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
			snprintf(why, sizeof(why), "/dev/kvm: unexpected API version");
		else if ((vm = ioctl(kvm, KVM_CREATE_VM, 0)) < 0)
			snprintf(why, sizeof(why), "KVM_CREATE_VM: %s", strerror(errno));
		usable = vm >= 0;
		if (vm >= 0)
			close(vm);
		if (kvm >= 0)
			close(kvm);
	}
	if (!usable)
		test_skip(why);
}

/* The value of "key":N in a JSON line, or -1. */
static long long json_num(const char *s, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(s, pat);
	return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

static void guest_passes_on(const char *arch, const char *vcpus,
			    const char *folio)
{
	const char *const args[] = { "--arch", arch, "--vcpus", vcpus, "--json",
				     "--iterations", "300", "--folio", folio,
				     NULL };
	struct output o;

	need_kvm();
	o = run_guest(args);
	if (o.status != 0)
		printf("#   gmem vm --arch %s: exit %d: %s%s", arch, o.status, o.out, o.err);
	ASSERT_EQ(o.status, 0);
	ASSERT_TRUE(strstr(o.out, "\"result\":\"pass\""));
	ASSERT_EQ(json_num(o.out, "checks_failed"), 0);
	ASSERT_EQ(json_num(o.out, "checks_passed"), 19);
	ASSERT_EQ(json_num(o.out, "bench_conversions"), 600 * atoi(vcpus));
	ASSERT_EQ(json_num(o.out, "implicit_conversions"), 2);
	printf("#   %s, %s vCPU, %s folios: %lld conversions/s\n", arch, vcpus,
	       folio, json_num(o.out, "conversions_per_sec"));
	output_free(&o);
}

static void guest_passes(const char *arch, const char *vcpus)
{
	guest_passes_on(arch, vcpus, "4K");
}

TEST(guest_self_checks_pass_on_sw)
{
	guest_passes("sw", "1");
}

TEST(guest_self_checks_pass_on_snp)
{
	guest_passes("snp", "1");
}

TEST(guest_self_checks_pass_on_tdx)
{
	guest_passes("tdx", "1");
}

TEST(guest_self_checks_pass_on_pkvm)
{
	guest_passes("pkvm", "1");
}

TEST(guest_converts_from_three_vcpus_at_once)
{
	guest_passes("pkvm", "3");
}

/*
 * On 2 MiB folios every conversion of the guest splits or merges the folio
 * its page is in, and zaps the huge entry mapping the guest's own code: its
 * next instruction fetch must be faulted back in, from two vCPUs at once.
 */
TEST(guest_self_checks_pass_on_2m_folios_on_every_backend)
{
	static const char *const archs[] = { "sw", "snp", "tdx", "pkvm" };

	for (int i = 0; i < 4; i++)
		guest_passes_on(archs[i], "2", "2M");
}

TEST(guest_console_reports_each_check)
{
	const char *const args[] = { "--arch", "tdx", "--iterations", "10", NULL };
	struct output o;

	need_kvm();
	o = run_guest(args);
	ASSERT_EQ(o.status, 0);
	ASSERT_TRUE(strstr(o.out, "tdx: vcpu0: ok 2 - the host cannot read a private page\n"));
	ASSERT_TRUE(strstr(o.out, "private data is gone after shared and back (snp, tdx)"));
	ASSERT_TRUE(strstr(o.out, "a punched private page reads zero"));
	ASSERT_TRUE(!strstr(o.out, "not ok"));
	ASSERT_TRUE(strstr(o.out, "tdx: pass: 19 checks passed, 0 failed"));
	output_free(&o);
}

TEST(eager_map_spares_the_first_touch_after_each_conversion_an_exit)
{
	const char *const lazy[] = { "--arch", "snp", "--json", "--iterations", "300", NULL };
	const char *const eager[] = { "--arch", "snp", "--json", "--iterations", "300",
				      "--eager-map", NULL };
	struct output a, b;

	need_kvm();
	a = run_guest(lazy);
	b = run_guest(eager);
	ASSERT_EQ(a.status, 0);
	ASSERT_EQ(b.status, 0);
	ASSERT_EQ(json_num(b.out, "checks_passed"), 19);
	ASSERT_EQ(json_num(b.out, "implicit_conversions"), 2);
	/* Two conversions a round, each one exit fewer. */
	ASSERT_LE(json_num(b.out, "exits"), json_num(a.out, "exits") - 2 * 300);
	output_free(&a);
	output_free(&b);
}

TEST(real_guest_traffic_breaks_no_invariant_on_any_backend)
{
	const char *const args[] = { "--arch", "all", "--check", "--json",
				     "--iterations", "5", NULL };
	struct output o;
	int lines = 0;

	need_kvm();
	o = run_guest(args);
	if (o.status != 0)
		printf("#   %s%s", o.out, o.err);
	ASSERT_EQ(o.status, 0);
	for (const char *p = o.out; (p = strstr(p, "\"result\":\"pass\"")); p++)
		lines++;
	ASSERT_EQ(lines, 4);
	output_free(&o);
}

TEST(legacy_contract_loses_a_real_pkvm_guests_shared_data)
{
	const char *const legacy[] = { "--arch", "pkvm", "--contract", "legacy",
				       "--iterations", "10", NULL };
	const char *const split[] = { "--arch", "pkvm", "--contract", "split",
				      "--iterations", "10", NULL };
	struct output o;

	need_kvm();
	o = run_guest(legacy);
	ASSERT_EQ(o.status, 1);
	ASSERT_TRUE(strstr(o.out, "not ok 4 - private data is still there once shared (sw, pkvm)"));
	ASSERT_TRUE(strstr(o.out, "pkvm: FAIL: 16 checks passed, 3 failed"));
	output_free(&o);
	o = run_guest(split);
	ASSERT_EQ(o.status, 0);
	ASSERT_TRUE(!strstr(o.out, "not ok"));
	output_free(&o);
}

TEST(refuse_policy_stops_the_guest_at_a_wrong_view_access)
{
	const char *const args[] = { "--arch", "sw", "--policy", "refuse",
				     "--json", "--iterations", "10", NULL };
	struct output o;

	need_kvm();
	o = run_guest(args);
	ASSERT_EQ(o.status, 1);
	ASSERT_TRUE(strstr(o.out, "\"result\":\"fail\""));
	ASSERT_EQ(json_num(o.out, "checks_failed"), 0);	/* it never got to say */
	ASSERT_EQ(json_num(o.out, "implicit_conversions"), 0);
	ASSERT_TRUE(strstr(o.err, "refused: guest accessed private page 0x104000 through its shared alias"));
	output_free(&o);
}

TEST(bad_options_exit_2_with_one_line)
{
	static const char *const cases[][5] = {
		{ "--arch", "x86", NULL }, { "--vcpus", "0", NULL },
		{ "--vcpus", "9", NULL }, { "--policy", "maybe", NULL },
		{ "--iterations", "-1", NULL }, { "--frobnicate", NULL },
		{ "--arch", NULL }, { "--check", "--vcpus", "2", NULL },
		{ "--contract", "final", NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct output o = run_vm(cases[i]);
		char *nl = strchr(o.err, '\n');

		ASSERT_EQ(o.status, 2);
		ASSERT_TRUE(!strncmp(o.err, "gmem vm: ", 9));
		ASSERT_TRUE(nl && nl[1] == 0);
		ASSERT_EQ(o.out[0], 0);
		output_free(&o);
	}
}

TEST(help_lists_the_options)
{
	static const char *const args[] = { "--help", NULL };
	struct output o = run_vm(args);

	ASSERT_EQ(o.status, 0);
	ASSERT_TRUE(strstr(o.out, "--arch"));
	ASSERT_TRUE(strstr(o.out, "--vcpus"));
	ASSERT_TRUE(strstr(o.out, "--policy convert|refuse"));
	ASSERT_TRUE(strstr(o.out, "--json"));
	ASSERT_TRUE(strstr(o.out, "--eager-map"));
	ASSERT_TRUE(strstr(o.out, "--contract split|legacy"));
	output_free(&o);
}
