// SPDX-License-Identifier: MIT
/* Real pthreads faulting in parallel: one file, files of two VMs, faults racing punch. */
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

/* ------------------------------------------- parallel faults, one file */

#define PF_PAGES	256
#define PF_THREADS	4
#define PF_ROUNDS	4

static uint64_t pf_seen[PF_THREADS][PF_PAGES];

static bool pf_touched(uint64_t p)
{
	return p % 4 != 3;
}

static void *pf_worker(void *arg)
{
	struct ctx *c = arg;
	uint64_t stride = 2 * c->id + 1;	/* odd: visits every page */

	pthread_barrier_wait(c->go);
	for (int round = 0; round < PF_ROUNDS; round++) {
		for (uint64_t k = 0; k < PF_PAGES; k++) {
			uint64_t p = (k * stride + c->id * 61) % PF_PAGES;
			unsigned int flags = GMEM_FAULT_PRIVATE |
					     (round & 1 ? GMEM_FAULT_WRITE : 0);
			uint64_t pfn = ~0ULL;
			int ret;

			if (!pf_touched(p))
				continue;
			ret = gmem_vm_fault(c->vm, c->gpa + p * PAGE, flags,
					    &pfn, NULL);
			CHECK(ret == 0, ret);
			if (round == 0)
				pf_seen[c->id][p] = pfn;
			else
				CHECK(pf_seen[c->id][p] == pfn, pfn);
		}
	}
	return NULL;
}

TEST(parallel_private_faults_allocate_each_folio_once_with_stable_frames)
{
	struct env e = env_new("sw");
	struct gmem_pool_stats st;
	pthread_barrier_t go;
	uint64_t touched = 0;
	struct ctx c = { .vm = e.vm, .npages = PF_PAGES, .gpa = GPA_BASE,
			 .go = &go };

	test_begin();
	c.fd = gmem_create(e.vm, PF_PAGES * PAGE, 0);
	ASSERT_GE(c.fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA_BASE, PF_PAGES * PAGE, c.fd, 0), 0);
	pthread_barrier_init(&go, NULL, PF_THREADS);
	for (int i = 0; i < PF_THREADS; i++)
		start_thread(pf_worker, &c);
	join_threads();
	pthread_barrier_destroy(&go);
	ASSERT_EQ(atomic_load(&thread_failures), 0);

	for (uint64_t p = 0; p < PF_PAGES; p++) {
		uint64_t pfn, s2pfn;
		int priv;

		if (!pf_touched(p)) {
			ASSERT_EQ(gmem_folio_info(c.fd, p * PAGE, NULL, NULL, NULL), 0);
			ASSERT_EQ(gmem_vm_stage2(e.vm, GPA_BASE + p * PAGE, NULL, NULL), 0);
			continue;
		}
		touched++;
		ASSERT_EQ(gmem_folio_info(c.fd, p * PAGE, &pfn, NULL, NULL), 1);
		for (int t = 0; t < PF_THREADS; t++)
			ASSERT_EQ(pf_seen[t][p], pfn);
		ASSERT_EQ(gmem_vm_stage2(e.vm, GPA_BASE + p * PAGE, &s2pfn, &priv), 1);
		ASSERT_EQ(s2pfn, pfn);
		ASSERT_EQ(priv, 1);
		for (uint64_t q = 0; q < p; q++)	/* frames are distinct */
			if (pf_touched(q))
				ASSERT_NE(pf_seen[0][q], pfn);
	}
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.frames_in_use, touched);
	ASSERT_EQ(gmem_close(c.fd), 0);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.frames_in_use, 0);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA_BASE, NULL, NULL), 0);
	env_free(&e);
}

/* ------------------------------------ parallel faults, files and VMs */

#define TF_PAGES	128
#define TF_ROUNDS	4

/* Faults every page of its file, as the file's attribute says, each round. */
static void *tf_worker(void *arg)
{
	struct ctx *c = arg;
	bool priv = c->priv;

	pthread_barrier_wait(c->go);
	for (int round = 0; round < TF_ROUNDS; round++) {
		for (uint64_t k = 0; k < c->npages; k++) {
			uint64_t p = (k * 5 + c->id * 17) % c->npages, pfn = ~0ULL;
			struct gmem_exit exit;
			int ret = gmem_vm_fault(c->vm, c->gpa + p * PAGE,
						priv ? GMEM_FAULT_PRIVATE : GMEM_FAULT_WRITE,
						&pfn, &exit);

			CHECK(ret == 0, ret);
			CHECK(pfn == c->expect_pfn[p], pfn);
			c->ops++;
		}
	}
	return NULL;
}

/* Flips a file nobody faults on, in the second VM, for as long as faults run. */
static void *tf_converter(void *arg)
{
	struct ctx *c = arg;
	uint64_t s = 0x9e3779b97f4a7c15ULL;

	pthread_barrier_wait(c->go);
	while (!atomic_load(c->stop)) {
		uint64_t off = rnd(&s) % c->npages, n = 1 + rnd(&s) % 8;
		int ret;

		n = n > c->npages - off ? c->npages - off : n;
		ret = gmem_set_attributes(c->fd, off * PAGE, n * PAGE,
					  rnd(&s) & 1 ? GMEM_ATTR_PRIVATE : 0, 0, NULL);
		CHECK(ret == 0, ret);
		c->ops++;
	}
	return NULL;
}

TEST(parallel_faults_on_two_vms_and_two_files_do_not_interfere)
{
	struct env e = env_new("sw");
	int vm2 = gmem_vm_create(e.pool, "sw", 0);
	struct gmem_pool_stats st;
	pthread_barrier_t go;
	atomic_bool stop = false;
	uint64_t present = 0;
	struct ctx a = { .vm = e.vm, .npages = TF_PAGES, .gpa = GPA_BASE,
			 .go = &go, .stop = &stop, .priv = true };
	struct ctx b = a, sh = a, x = a;
	int fds[4];

	test_begin();
	ASSERT_GE(vm2, 0);
	/* a (private) and sh (shared) in VM 1; b (private) and x in VM 2, at a's gpa. */
	a.fd = gmem_create(e.vm, TF_PAGES * PAGE, 0);
	sh.fd = gmem_create(e.vm, TF_PAGES * PAGE, GMEM_FLAG_INIT_SHARED);
	b.vm = x.vm = vm2;
	b.fd = gmem_create(vm2, TF_PAGES * PAGE, 0);
	x.fd = gmem_create(vm2, TF_PAGES * PAGE, 0);
	ASSERT_GE(a.fd, 0);
	ASSERT_GE(sh.fd, 0);
	ASSERT_GE(b.fd, 0);
	ASSERT_GE(x.fd, 0);
	sh.gpa = GPA_BASE + TF_PAGES * PAGE;
	sh.priv = false;
	x.gpa = GPA_BASE + TF_PAGES * PAGE;
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, a.gpa, TF_PAGES * PAGE, a.fd, 0), 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, sh.gpa, TF_PAGES * PAGE, sh.fd, 0), 0);
	ASSERT_EQ(gmem_vm_bind(vm2, 0, b.gpa, TF_PAGES * PAGE, b.fd, 0), 0);
	ASSERT_EQ(gmem_vm_bind(vm2, 1, x.gpa, TF_PAGES * PAGE, x.fd, 0), 0);
	a.expect_pfn = expected_pfns(a.fd, TF_PAGES);
	b.expect_pfn = expected_pfns(b.fd, TF_PAGES);
	sh.expect_pfn = expected_pfns(sh.fd, TF_PAGES);

	pthread_barrier_init(&go, NULL, 6);
	start_thread(tf_worker, &a);
	start_thread(tf_worker, &sh);
	start_thread(tf_worker, &b);
	start_thread(tf_worker, &b);
	start_thread(tf_worker, &a);
	start_thread(tf_converter, &x);
	for (int i = 0; i < 5; i++)
		pthread_join(threads[i], NULL);
	atomic_store(&stop, true);
	pthread_join(threads[5], NULL);
	nthreads = 0;
	pthread_barrier_destroy(&go);
	ASSERT_EQ(atomic_load(&thread_failures), 0);

	for (uint64_t p = 0; p < TF_PAGES; p++) {
		uint64_t pa, pb;
		int priv;

		ASSERT_EQ(gmem_vm_stage2(e.vm, GPA_BASE + p * PAGE, &pa, &priv), 1);
		ASSERT_EQ(pa, a.expect_pfn[p]);
		ASSERT_EQ(priv, 1);
		ASSERT_EQ(gmem_vm_stage2(vm2, GPA_BASE + p * PAGE, &pb, &priv), 1);
		ASSERT_EQ(pb, b.expect_pfn[p]);
		ASSERT_NE(pa, pb);
		ASSERT_EQ(gmem_vm_stage2(e.vm, sh.gpa + p * PAGE, &pa, &priv), 1);
		ASSERT_EQ(pa, sh.expect_pfn[p]);
		ASSERT_EQ(priv, 0);
	}
	fds[0] = a.fd, fds[1] = b.fd, fds[2] = sh.fd, fds[3] = x.fd;
	for (int f = 0; f < 4; f++)
		for (uint64_t p = 0; p < TF_PAGES; p++)
			present += gmem_folio_info(fds[f], p * PAGE, NULL, NULL, NULL) == 1;
	ASSERT_EQ(present, 3 * TF_PAGES);	/* conversion allocates nothing */
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.frames_in_use, present);
	for (int f = 0; f < 4; f++)
		ASSERT_EQ(gmem_close(fds[f]), 0);
	free(a.expect_pfn);
	free(b.expect_pfn);
	free(sh.expect_pfn);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.frames_in_use, 0);
	ASSERT_EQ(st.files, 0);
	ASSERT_EQ(gmem_vm_close(vm2), 0);
	env_free(&e);
}

/* ------------------------------------------------ faults racing punch */

#define FP_PAGES	64
#define FP_PUNCHES	250

static void *fp_faulter(void *arg)
{
	struct ctx *c = arg;
	uint64_t s = 0x31337ULL + c->id;

	pthread_barrier_wait(c->go);
	while (!atomic_load(c->stop)) {
		uint64_t p = rnd(&s) % c->npages, pfn = ~0ULL;
		int ret = gmem_vm_fault(c->vm, c->gpa + p * PAGE,
					GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE,
					&pfn, NULL);

		CHECK(ret == 0, ret);
		CHECK(pfn == c->expect_pfn[p], pfn);
		c->ops++;
		atomic_fetch_add(c->progress, 1);
	}
	return NULL;
}

static void *fp_puncher(void *arg)
{
	struct ctx *c = arg;
	uint64_t s = 0x4242ULL;

	pthread_barrier_wait(c->go);
	for (int i = 0; i < FP_PUNCHES; i++) {
		uint64_t off = rnd(&s) % c->npages, n = 1 + rnd(&s) % 8;
		int ret = gmem_fallocate(c->fd, PUNCH, off * PAGE, n * PAGE);

		CHECK(ret == 0, ret);
		wait_for_progress(c);
	}
	atomic_store(c->stop, true);
	return NULL;
}

TEST(faults_racing_punch_never_leave_stage2_on_a_freed_folio)
{
	struct env e = env_new("sw");
	struct gmem_pool_stats st;
	pthread_barrier_t go;
	atomic_bool stop = false;
	atomic_long progress = 0;
	struct ctx c = { .vm = e.vm, .npages = FP_PAGES, .gpa = GPA_BASE,
			 .go = &go, .stop = &stop, .progress = &progress };
	uint64_t present = 0;

	test_begin();
	c.fd = gmem_create(e.vm, FP_PAGES * PAGE, 0);
	ASSERT_GE(c.fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA_BASE, FP_PAGES * PAGE, c.fd, 0), 0);
	c.expect_pfn = expected_pfns(c.fd, FP_PAGES);
	pthread_barrier_init(&go, NULL, 3);
	start_thread(fp_faulter, &c);
	start_thread(fp_faulter, &c);
	start_thread(fp_puncher, &c);
	join_threads();
	pthread_barrier_destroy(&go);
	printf("#   %ld faults against %d punches\n", ctxs[0].ops + ctxs[1].ops,
	       FP_PUNCHES);
	ASSERT_EQ(atomic_load(&thread_failures), 0);

	check_stage2_quiescent(&c);	/* no entry maps a hole */
	for (uint64_t p = 0; p < FP_PAGES; p++)
		present += gmem_folio_info(c.fd, p * PAGE, NULL, NULL, NULL) == 1;
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.frames_in_use, present);
	free(c.expect_pfn);
	ASSERT_EQ(gmem_close(c.fd), 0);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.frames_in_use, 0);
	env_free(&e);
}

/* ------------------- present faults racing zaps that free stage-2 tables */

/*
 * Whole 2 MiB blocks punched and converted take their stage-2 table out,
 * and the next fault elsewhere reuses it, while faults on present pages walk
 * stage-2 without mmu_lock. Every answer must be one a fault under the lock
 * could have given: the page's own frame (a page's frame never changes, a
 * hole's included), success only if the attribute was the access's kind at
 * some point of the call, an exit only if it was the other.
 */
#define ZR_BLOCK	512		/* pages per stage-2 table */
#define ZR_BLOCKS	4
#define ZR_PAGES	(ZR_BLOCK * ZR_BLOCKS)
#define ZR_ZAPS		3000
#define ZR_FAULTERS	3

/* Per block: odd while a conversion runs, and the attribute after the last. */
static atomic_uint zr_seq[ZR_BLOCKS];
static atomic_bool zr_private[ZR_BLOCKS];

static void *zr_faulter(void *arg)
{
	struct ctx *c = arg;
	uint64_t s = 0x5eed0ULL + c->id;

	pthread_barrier_wait(c->go);
	while (!atomic_load(c->stop)) {
		uint64_t p = rnd(&s) % c->npages, pfn = ~0ULL;
		unsigned int b = p / ZR_BLOCK, seq = atomic_load(&zr_seq[b]);
		bool was_private = atomic_load(&zr_private[b]);
		bool priv = rnd(&s) & 1;
		struct gmem_exit exit;
		int ret = gmem_vm_fault(c->vm, c->gpa + p * PAGE,
					priv ? GMEM_FAULT_PRIVATE : 0, &pfn, &exit);

		CHECK(ret == 0 || ret == 1, ret);
		if (ret == 0)
			CHECK(pfn == c->expect_pfn[p], pfn);
		/* No conversion of the block overlapped the call: the answer is exact. */
		if (!(seq & 1) && atomic_load(&zr_seq[b]) == seq)
			CHECK(ret == (priv == was_private ? 0 : 1), ret);
		c->ops++;
		atomic_fetch_add(c->progress, 1);
	}
	return NULL;
}

static void *zr_zapper(void *arg)
{
	struct ctx *c = arg;
	uint64_t s = 0x2a9ULL;

	pthread_barrier_wait(c->go);
	for (int i = 0; i < ZR_ZAPS; i++) {
		unsigned int b = rnd(&s) % ZR_BLOCKS;
		uint64_t off = (uint64_t)b * ZR_BLOCK * PAGE;
		int ret;

		if (rnd(&s) & 1) {
			bool priv = rnd(&s) & 1;

			atomic_fetch_add(&zr_seq[b], 1);
			ret = gmem_set_attributes(c->fd, off, ZR_BLOCK * PAGE,
						  priv ? GMEM_ATTR_PRIVATE : 0, 0, NULL);
			atomic_store(&zr_private[b], priv);
			atomic_fetch_add(&zr_seq[b], 1);
		} else {
			ret = gmem_fallocate(c->fd, PUNCH, off, ZR_BLOCK * PAGE);
		}
		CHECK(ret == 0, ret);
		/* Faults on present pages never wait for the zaps: no pacing. */
		if (i % 64 == 0)
			wait_for_progress(c);
	}
	atomic_store(c->stop, true);
	return NULL;
}

TEST(present_faults_racing_zaps_that_free_stage2_tables_answer_as_locked_ones)
{
	struct env e = env_new("sw");
	pthread_barrier_t go;
	atomic_bool stop = false;
	atomic_long progress = 0;
	struct ctx c = { .vm = e.vm, .npages = ZR_PAGES, .gpa = GPA_BASE,
			 .go = &go, .stop = &stop, .progress = &progress };
	long faults = 0;

	test_begin();
	for (int b = 0; b < ZR_BLOCKS; b++) {
		atomic_store(&zr_seq[b], 0);
		atomic_store(&zr_private[b], true);
	}
	c.fd = gmem_create(e.vm, ZR_PAGES * PAGE, 0);
	ASSERT_GE(c.fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA_BASE, ZR_PAGES * PAGE, c.fd, 0), 0);
	c.expect_pfn = expected_pfns(c.fd, ZR_PAGES);
	pthread_barrier_init(&go, NULL, ZR_FAULTERS + 1);
	for (int i = 0; i < ZR_FAULTERS; i++)
		start_thread(zr_faulter, &c);
	start_thread(zr_zapper, &c);
	join_threads();
	pthread_barrier_destroy(&go);
	for (int i = 0; i < ZR_FAULTERS; i++)
		faults += ctxs[i].ops;
	printf("#   %ld faults against %d conversions and punches of whole blocks\n",
	       faults, ZR_ZAPS);
	ASSERT_EQ(atomic_load(&thread_failures), 0);
	check_stage2_quiescent(&c);
	free(c.expect_pfn);
	ASSERT_EQ(gmem_close(c.fd), 0);
	env_free(&e);
}
