// SPDX-License-Identifier: MIT
/* Real pthreads racing conversion: faults, guest accesses and pins against it. */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "threads_helpers.h"

/* ------------------------------------------- faults racing conversion */

#define FC_PAGES	64
#define FC_CONVERSIONS	120

/* Faults pages in turn as it believes them to be; exits teach it otherwise. */
static void *fc_faulter(void *arg)
{
	struct ctx *c = arg;
	bool priv[FC_PAGES];
	uint64_t s = 0x1234567ULL + c->id;
	long exits = 0;

	for (uint64_t p = 0; p < c->npages; p++)
		priv[p] = true;
	pthread_barrier_wait(c->go);
	while (!atomic_load(c->stop)) {
		uint64_t p = rnd(&s) % c->npages, pfn = ~0ULL;
		int ret = fault_following_exits(c, p, &priv[p],
						rnd(&s) & 1 ? GMEM_FAULT_WRITE : 0,
						&pfn, &exits);

		CHECK(ret == 0, ret);
		CHECK(pfn == c->expect_pfn[p], pfn);
		c->ops++;
		atomic_fetch_add(c->progress, 1);
	}
	c->aux = exits;
	return NULL;
}

/*
 * Only this thread converts the file, so once a conversion has returned,
 * every stage-2 entry of the file must agree with what it set: a fault that
 * read the old attribute must have noticed the invalidation and retried.
 */
static void fc_check_stage2(struct ctx *c)
{
	for (uint64_t p = 0; p < c->npages; p++) {
		int priv;

		if (gmem_vm_stage2(c->vm, c->gpa + p * PAGE, NULL, &priv) == 1)
			CHECK(priv == c->attr[p], p);
	}
}

/* Flips the middle of the file as a whole and in random pieces. */
static void *fc_converter(void *arg)
{
	struct ctx *c = arg;
	uint64_t s = 0xabcdefULL;

	pthread_barrier_wait(c->go);
	for (int i = 0; i < FC_CONVERSIONS; i++) {
		uint64_t off = 8, n = c->npages - 16;
		int ret;

		if (i % 4 >= 2) {
			off = rnd(&s) % c->npages;
			n = 1 + rnd(&s) % (c->npages - off);
		}
		ret = gmem_set_attributes(c->fd, off * PAGE, n * PAGE,
					  i & 1 ? GMEM_ATTR_PRIVATE : 0, 0, NULL);
		CHECK(ret == 0, ret);
		if (!ret)
			memset(c->attr + off, i & 1, n);
		fc_check_stage2(c);
		wait_for_progress(c);
		fc_check_stage2(c);
	}
	atomic_store(c->stop, true);
	return NULL;
}

/*
 * Converts and punches another file of the same VM without pause. Each of
 * its invalidations holds the VM's mmu_lock exclusive, so faults on the
 * first file often wait for it between reading an attribute and installing
 * the entry: just the window a racing conversion must not slip through.
 */
static void *fc_noise(void *arg)
{
	struct ctx *c = arg;
	uint64_t s = 0x13579bdfULL;

	pthread_barrier_wait(c->go);
	while (!atomic_load(c->stop)) {
		uint64_t off = rnd(&s) % c->npages, r = rnd(&s);
		int ret;

		if (r & 1)
			ret = gmem_set_attributes(c->fd, off * PAGE, PAGE,
						  r & 2 ? GMEM_ATTR_PRIVATE : 0, 0, NULL);
		else
			ret = gmem_fallocate(c->fd, PUNCH, off * PAGE, PAGE);
		CHECK(ret == 0, ret);
		c->ops++;
		sched_yield();
	}
	return NULL;
}

TEST(faults_racing_conversion_only_exit_and_stage2_ends_agreeing)
{
	struct env e = env_new("sw");
	pthread_barrier_t go;
	atomic_bool stop = false;
	atomic_long progress = 0;
	uint8_t attr[FC_PAGES];
	struct ctx c = { .vm = e.vm, .npages = FC_PAGES, .gpa = GPA_BASE,
			 .go = &go, .stop = &stop, .progress = &progress,
			 .attr = attr };
	struct ctx noise = c;
	long faults = 0, exits = 0;

	test_begin();
	memset(attr, 1, sizeof(attr));
	c.fd = gmem_create(e.vm, FC_PAGES * PAGE, 0);
	noise.fd = gmem_create(e.vm, FC_PAGES * PAGE, 0);
	ASSERT_GE(c.fd, 0);
	ASSERT_GE(noise.fd, 0);
	noise.gpa = GPA_BASE + FC_PAGES * PAGE;
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, c.gpa, FC_PAGES * PAGE, c.fd, 0), 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, noise.gpa, FC_PAGES * PAGE, noise.fd, 0), 0);
	c.expect_pfn = expected_pfns(c.fd, FC_PAGES);
	pthread_barrier_init(&go, NULL, 4);
	start_thread(fc_faulter, &c);
	start_thread(fc_faulter, &c);
	start_thread(fc_converter, &c);
	start_thread(fc_noise, &noise);
	join_threads();
	pthread_barrier_destroy(&go);
	for (int i = 0; i < 2; i++) {
		faults += ctxs[i].ops;
		exits += ctxs[i].aux;
	}
	printf("#   %ld faults, %ld memory-fault exits, %ld invalidations elsewhere\n",
	       faults, exits, ctxs[3].ops);
	ASSERT_EQ(atomic_load(&thread_failures), 0);
	ASSERT_GT(faults, 0);

	check_stage2_quiescent(&c);
	for (uint64_t p = 0; p < FC_PAGES; p++) {
		bool priv = page_private(c.fd, p);
		unsigned int f = priv ? GMEM_FAULT_PRIVATE : 0;
		uint64_t pfn;

		ASSERT_EQ(gmem_vm_fault(e.vm, GPA_BASE + p * PAGE, f, &pfn, NULL), 0);
		ASSERT_EQ(pfn, c.expect_pfn[p]);
		ASSERT_EQ(gmem_vm_fault(e.vm, GPA_BASE + p * PAGE,
					f ^ GMEM_FAULT_PRIVATE, NULL, NULL), 1);
	}
	check_stage2_quiescent(&c);
	free(c.expect_pfn);
	ASSERT_EQ(gmem_close(c.fd), 0);
	ASSERT_EQ(gmem_close(noise.fd), 0);
	env_free(&e);
}

/* ------------------------------ guest content across racing conversion */

#define GC_PAGES	64
#define GC_CONVERSIONS	250
#define GC_BYTES	64

static void gc_fill(uint64_t *buf, int id, uint64_t tag)
{
	for (int k = 0; k < GC_BYTES / 8; k++)
		buf[k] = tag ? (uint64_t)id << 56 | tag << 8 | (uint64_t)k : 0;
}

/* One guest access to page @p, following memory-fault exits. */
static int gc_access(struct ctx *c, uint64_t p, bool *priv, void *buf,
		     unsigned int flags)
{
	for (;;) {
		struct gmem_exit exit;
		int ret = gmem_vm_access(c->vm, c->gpa + p * PAGE + 8, buf,
					 GC_BYTES, flags |
					 (*priv ? GMEM_FAULT_PRIVATE : 0), &exit);

		if (ret != 1)
			return ret;
		CHECK(exit.gpa == c->gpa + p * PAGE, exit.gpa);
		*priv = !(exit.flags & GMEM_MEMORY_EXIT_FLAG_PRIVATE);
	}
}

/*
 * Each worker owns every other page (guest accesses of one page from two
 * threads would be a data race of the test's own making). It writes a tag
 * and reads it back, as whatever the page is: "sw" keeps every byte across
 * conversion, so the tag must survive.
 */
static void *gc_worker(void *arg)
{
	struct ctx *c = arg;
	bool priv[GC_PAGES];
	uint64_t tag[GC_PAGES] = { 0 };
	uint64_t s = 0x5555ULL + c->id;

	for (uint64_t p = 0; p < c->npages; p++)
		priv[p] = true;
	pthread_barrier_wait(c->go);
	while (!atomic_load(c->stop)) {
		uint64_t p = (rnd(&s) % (c->npages / 2)) * 2 + c->id;
		uint64_t got[GC_BYTES / 8], want[GC_BYTES / 8];
		int ret;

		/* What it wrote last (zeroes at first), as private or shared. */
		ret = gc_access(c, p, &priv[p], got, 0);
		CHECK(ret == 0, ret);
		gc_fill(want, c->id, tag[p]);
		CHECK(!memcmp(got, want, GC_BYTES), p);
		gc_fill(want, c->id, ++tag[p]);
		ret = gc_access(c, p, &priv[p], want, GMEM_FAULT_WRITE);
		CHECK(ret == 0, ret);
		c->ops++;
		atomic_fetch_add(c->progress, 1);
	}
	return NULL;
}

static void *gc_converter(void *arg)
{
	return convert_randomly(arg, 0x777ULL, GC_CONVERSIONS);
}

TEST(guest_data_survives_conversions_racing_its_accesses)
{
	struct env e = env_new("sw");
	pthread_barrier_t go;
	atomic_bool stop = false;
	atomic_long progress = 0;
	struct ctx c = { .vm = e.vm, .npages = GC_PAGES, .gpa = GPA_BASE,
			 .go = &go, .stop = &stop, .progress = &progress };

	test_begin();
	c.fd = gmem_create(e.vm, GC_PAGES * PAGE, 0);
	ASSERT_GE(c.fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA_BASE, GC_PAGES * PAGE, c.fd, 0), 0);
	c.expect_pfn = expected_pfns(c.fd, GC_PAGES);
	pthread_barrier_init(&go, NULL, 3);
	start_thread(gc_worker, &c);
	start_thread(gc_worker, &c);
	start_thread(gc_converter, &c);
	join_threads();
	pthread_barrier_destroy(&go);
	printf("#   %ld write+read pairs\n", ctxs[0].ops + ctxs[1].ops);
	ASSERT_EQ(atomic_load(&thread_failures), 0);
	check_stage2_quiescent(&c);
	free(c.expect_pfn);
	ASSERT_EQ(gmem_close(c.fd), 0);
	env_free(&e);
}

/* ------------------------------------------- pins racing conversion */

#define PC_PAGES	32
#define PC_CONVERSIONS	400

/* Pins a random range; while it holds it, the pages must stay shared. */
static void *pc_pinner(void *arg)
{
	struct ctx *c = arg;
	uint64_t s = 0x8888ULL + c->id;

	pthread_barrier_wait(c->go);
	while (!atomic_load(c->stop)) {
		uint64_t off = rnd(&s) % c->npages, n = 1 + rnd(&s) % 4;
		int ret;

		n = n > c->npages - off ? c->npages - off : n;
		ret = gmem_pin(c->fd, off * PAGE, n * PAGE);
		CHECK(ret == 0 || ret == -EFAULT, ret);
		atomic_fetch_add(c->progress, 1);
		if (ret)
			continue;
		for (uint64_t p = off; p < off + n; p++) {
			uint64_t attr = ~0ULL;
			uint32_t pins = 0;

			CHECK(gmem_get_attributes(c->fd, p * PAGE, &attr, NULL) == 0, p);
			CHECK(attr == 0, p);	/* a pinned page never goes private */
			CHECK(gmem_folio_info(c->fd, p * PAGE, NULL, NULL, &pins) == 1, p);
			CHECK(pins >= 1, pins);
		}
		ret = gmem_unpin(c->fd, off * PAGE, n * PAGE);
		CHECK(ret == 0, ret);
		c->ops++;
	}
	return NULL;
}

static uint8_t pc_expect[PC_PAGES];	/* 1: private, per the converter */

static void *pc_converter(void *arg)
{
	struct ctx *c = arg;
	uint64_t s = 0x99ULL;
	long eagain = 0;

	pthread_barrier_wait(c->go);
	for (int i = 0; i < PC_CONVERSIONS; i++) {
		uint64_t off = rnd(&s) % c->npages, n = 1 + rnd(&s) % 4;
		bool to_private = rnd(&s) % 3;
		uint64_t err_off = ~0ULL;
		int ret;

		n = n > c->npages - off ? c->npages - off : n;
		ret = gmem_set_attributes(c->fd, off * PAGE, n * PAGE,
					  to_private ? GMEM_ATTR_PRIVATE : 0, 0,
					  &err_off);
		if (to_private)
			CHECK(ret == 0 || ret == -EAGAIN, ret);
		else
			CHECK(ret == 0, ret);
		if (ret == -EAGAIN) {
			CHECK(err_off >= off * PAGE && err_off < (off + n) * PAGE,
			      err_off);
			eagain++;
			wait_for_progress(c);
			continue;
		}
		for (uint64_t p = off; p < off + n; p++)
			pc_expect[p] = to_private;
		wait_for_progress(c);
	}
	c->ops = eagain;
	atomic_store(c->stop, true);
	return NULL;
}

TEST(pins_racing_conversion_give_only_eagain_and_leave_state_consistent)
{
	struct env e = env_new("sw");
	struct gmem_pool_stats st;
	pthread_barrier_t go;
	atomic_bool stop = false;
	atomic_long progress = 0;
	struct ctx c = { .vm = e.vm, .npages = PC_PAGES, .gpa = GPA_BASE,
			 .go = &go, .stop = &stop, .progress = &progress };
	uint8_t *map;

	test_begin();
	memset(pc_expect, 0, sizeof(pc_expect));
	c.fd = gmem_create(e.vm, PC_PAGES * PAGE,
			   GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	ASSERT_GE(c.fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA_BASE, PC_PAGES * PAGE, c.fd, 0), 0);
	ASSERT_EQ(gmem_mmap(c.fd, 0, PC_PAGES * PAGE, PROT_READ | PROT_WRITE,
			    MAP_SHARED, (void **)&map), 0);
	c.expect_pfn = expected_pfns(c.fd, PC_PAGES);
	pthread_barrier_init(&go, NULL, 3);
	start_thread(pc_pinner, &c);
	start_thread(pc_pinner, &c);
	start_thread(pc_converter, &c);
	join_threads();
	pthread_barrier_destroy(&go);
	printf("#   %ld pin/unpin pairs, %ld conversions refused with EAGAIN\n",
	       ctxs[0].ops + ctxs[1].ops, ctxs[2].ops);
	ASSERT_EQ(atomic_load(&thread_failures), 0);

	for (uint64_t p = 0; p < PC_PAGES; p++) {
		uint32_t pins = ~0u;
		int sig;

		ASSERT_EQ(page_private(c.fd, p), pc_expect[p]);
		ASSERT_GE(gmem_folio_info(c.fd, p * PAGE, NULL, NULL, &pins), 0);
		ASSERT_EQ(pins, 0);
		sig = probe_read(map + p * PAGE, NULL);
		ASSERT_EQ(sig, pc_expect[p] ? SIGSEGV : 0);
	}
	check_stage2_quiescent(&c);
	/* No pin is left behind: the whole file converts both ways. */
	ASSERT_EQ(gmem_set_attributes(c.fd, 0, PC_PAGES * PAGE, GMEM_ATTR_PRIVATE, 0, NULL), 0);
	ASSERT_EQ(probe_read(map, NULL), SIGSEGV);
	ASSERT_EQ(gmem_set_attributes(c.fd, 0, PC_PAGES * PAGE, 0, 0, NULL), 0);
	ASSERT_EQ(probe_read(map + (PC_PAGES - 1) * PAGE, NULL), 0);
	free(c.expect_pfn);
	ASSERT_EQ(gmem_munmap(map, PC_PAGES * PAGE), 0);
	ASSERT_EQ(gmem_close(c.fd), 0);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 0);
	ASSERT_EQ(st.frames_in_use, 0);
	env_free(&e);
}
