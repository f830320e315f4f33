// SPDX-License-Identifier: MIT
/*
 * Stage-2 views without KVM (gmem_vm_view_mmap): a page is reachable in a
 * view only while stage-2 maps it with the view's kind, and conversion,
 * punch, release and unbind take it away (SIGSEGV probes).
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

#include "inject.h"
#include "views_helpers.h"

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

/*
 * A fault whose entry is stored but whose view open fails (mprotect fences
 * out of VMAs) keeps the entry; the next fault at the gpa, the one a guest's
 * access through the still-fenced view leads to, opens it.
 */
TEST(a_view_left_fenced_by_a_failed_open_opens_at_the_next_fault)
{
	struct views v = views_new("sw", 0);
	uint64_t pfn = 0, again = 0;

	inject_arm(0, 1.0, 1, "view open");
	ASSERT_EQ(gmem_vm_fault(v.e.vm, GPA + 3 * PG, GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE,
				&pfn, NULL), 0);
	inject_disarm();
	ASSERT_TRUE(!open_in(&v, 1, 3));
	ASSERT_EQ(gmem_vm_fault(v.e.vm, GPA + 3 * PG, GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE,
				&again, NULL), 0);
	ASSERT_EQ(again, pfn);			/* the same entry, kept */
	ASSERT_TRUE(open_in(&v, 1, 3));
	ASSERT_TRUE(!open_in(&v, 0, 3));
	ASSERT_TRUE(!open_in(&v, 1, 4));
	/* A retry that cannot open the views either says so. */
	inject_arm(0, 1.0, 1, "view open");
	ASSERT_EQ(fault(&v, 5, GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE), 0);
	ASSERT_EQ(fault(&v, 5, GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE), -ENOMEM);
	inject_disarm();
	ASSERT_TRUE(!open_in(&v, 1, 5));
	ASSERT_EQ(fault(&v, 5, GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE), 0);
	ASSERT_TRUE(open_in(&v, 1, 5));
	ASSERT_TRUE(open_in(&v, 1, 3));
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
	ASSERT_EQ(gmem_vm_bind(e.vm, 7, GPA, NPAGES * PG, fd, 0), 0);
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
	ASSERT_EQ(gmem_vm_unbind(v.e.vm, 0), 0);
	for (uint64_t i = 0; i < NPAGES; i++) {
		ASSERT_TRUE(!open_in(&v, 1, i));
		ASSERT_TRUE(!open_in(&v, 0, i));
	}
	/* A new binding of the same slot gets fresh views. */
	ASSERT_EQ(gmem_vm_bind(v.e.vm, 0, GPA, NPAGES * PG, v.fd, 0), 0);
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

TEST(check_mode_catches_a_view_that_shows_an_unmapped_page)
{
	struct env e = env_new("sw");
	struct gmem_violation viol;
	int vm = gmem_vm_create(e.pool, "sw", GMEM_VM_CHECK), fd;
	uint8_t *p = NULL;

	ASSERT_GE(vm, 0);
	fd = gmem_create(vm, NPAGES * PG, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(vm, 0, GPA, NPAGES * PG, fd, 0), 0);
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
	ASSERT_EQ(gmem_vm_close(vm), 0);
	env_free(&e);
}

/*
 * Two views side by side over adjacent frames are one mapping to the
 * kernel; check mode must still see them as views, not as a mapping of the
 * pool it does not know showing a private frame.
 */
TEST(check_mode_knows_adjacent_views_the_kernel_merged)
{
	struct env e = env_new("sw");
	int vm = gmem_vm_create(e.pool, "sw", GMEM_VM_CHECK), fd;
	uint8_t *shared = NULL, *any = NULL;

	ASSERT_GE(vm, 0);
	fd = gmem_create(vm, 2 * PG, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(vm, 0, GPA, PG, fd, 0), 0);
	ASSERT_EQ(gmem_vm_bind(vm, 4, 0, PG, fd, PG), 0);
	ASSERT_EQ(gmem_vm_view_mmap(vm, 4, 0, (void **)&shared), 0);
	ASSERT_EQ(gmem_vm_view_mmap(vm, 0, GMEM_VIEW_ANY, (void **)&any), 0);
	if (any + PG != shared)
		test_skip("the kernel placed the views apart: nothing merged to check");
	ASSERT_EQ(gmem_vm_fault(vm, GPA, GMEM_FAULT_PRIVATE, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(munmap(any, 2 * PG), 0);
	ASSERT_EQ(gmem_vm_close(vm), 0);
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
	ASSERT_EQ(gmem_vm_bind(vm, 0, GPA, 2 * BLOCK * PG, fd, 0), 0);
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
	ASSERT_EQ(gmem_vm_close(vm), 0);
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

		/* Exits and races are expected: only the views are checked. */
		(void)!gmem_vm_fault(r->v->e.vm, GPA + page * PG,
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
