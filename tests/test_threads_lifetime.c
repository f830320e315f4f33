// SPDX-License-Identifier: MIT
/*
 * Real pthreads racing lifetimes: closing a file, binding and unbinding,
 * translating, and faulting on a VM handle while it is destroyed and reused.
 */
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

/* ------------------------------------------- closing while faulting */

#define CF_PAGES	32

/* Faults until the file is gone; after that every fault must keep failing. */
static void *cf_faulter(void *arg)
{
	struct ctx *c = arg;
	uint64_t s = 0x2468ULL + c->id;
	int gone = 0;

	pthread_barrier_wait(c->go);
	while (gone < 50) {
		uint64_t p = rnd(&s) % c->npages;
		int ret = gmem_vm_fault(c->vm, c->gpa + p * PAGE,
					GMEM_FAULT_PRIVATE, NULL, NULL);

		if (gone)
			CHECK(ret == -EFAULT, ret);
		else
			CHECK(ret == 0 || ret == -EFAULT, ret);
		if (ret == -EFAULT || ret < 0)
			gone++;
		else
			atomic_fetch_add(c->progress, 1);
	}
	return NULL;
}

TEST(closing_a_file_while_faults_run_ends_them_cleanly)
{
	struct env e = env_new("sw");
	struct gmem_pool_stats st;
	pthread_barrier_t go;
	atomic_long progress = 0;
	struct ctx c = { .vm = e.vm, .npages = CF_PAGES, .gpa = GPA_BASE,
			 .go = &go, .progress = &progress };

	test_begin();
	c.fd = gmem_create(e.vm, CF_PAGES * PAGE, 0);
	ASSERT_GE(c.fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA_BASE, CF_PAGES * PAGE, c.fd, 0), 0);
	pthread_barrier_init(&go, NULL, 3);
	start_thread(cf_faulter, &c);
	start_thread(cf_faulter, &c);
	pthread_barrier_wait(&go);
	while (atomic_load(&progress) < 200)
		sched_yield();
	ASSERT_EQ(gmem_close(c.fd), 0);
	join_threads();
	pthread_barrier_destroy(&go);
	ASSERT_EQ(atomic_load(&thread_failures), 0);
	for (uint64_t p = 0; p < CF_PAGES; p++)
		ASSERT_EQ(gmem_vm_stage2(e.vm, GPA_BASE + p * PAGE, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_translate(e.vm, GPA_BASE, NULL, NULL, NULL), -EFAULT);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 0);
	ASSERT_EQ(st.frames_in_use, 0);
	env_free(&e);
}

/* ------------------------------------ binding and unbinding under faults */

#define BU_PAGES	32
#define BU_ROUNDS	60

static void *bu_faulter(void *arg)
{
	struct ctx *c = arg;
	uint64_t s = 0x1357ULL + c->id;

	pthread_barrier_wait(c->go);
	while (!atomic_load(c->stop)) {
		uint64_t p = rnd(&s) % c->npages, pfn = ~0ULL;
		int ret = gmem_vm_fault(c->vm, c->gpa + p * PAGE,
					GMEM_FAULT_PRIVATE, &pfn, NULL);

		CHECK(ret == 0 || ret == -EFAULT, ret);
		if (!ret)
			CHECK(pfn == c->expect_pfn[p], pfn);
		c->ops += !ret;
		atomic_fetch_add(c->progress, 1);
	}
	return NULL;
}

TEST(bind_and_unbind_racing_faults_leave_no_stage2_behind)
{
	struct env e = env_new("sw");
	pthread_barrier_t go;
	atomic_bool stop = false;
	atomic_long progress = 0;
	struct ctx c = { .vm = e.vm, .npages = BU_PAGES, .gpa = GPA_BASE,
			 .go = &go, .stop = &stop, .progress = &progress };
	int bind_ret = 0, unbind_ret = 0;

	test_begin();
	c.fd = gmem_create(e.vm, BU_PAGES * PAGE, 0);
	ASSERT_GE(c.fd, 0);
	c.expect_pfn = expected_pfns(c.fd, BU_PAGES);
	pthread_barrier_init(&go, NULL, 3);
	start_thread(bu_faulter, &c);
	start_thread(bu_faulter, &c);
	pthread_barrier_wait(&go);
	for (int i = 0; i < BU_ROUNDS && !bind_ret && !unbind_ret; i++) {
		bind_ret = gmem_vm_bind(e.vm, i % 3, GPA_BASE, BU_PAGES * PAGE, c.fd, 0);
		wait_for_progress(&c);
		if (!bind_ret)
			unbind_ret = gmem_vm_unbind(e.vm, i % 3);
		wait_for_progress(&c);
	}
	atomic_store(&stop, true);
	join_threads();
	pthread_barrier_destroy(&go);
	ASSERT_EQ(bind_ret, 0);
	ASSERT_EQ(unbind_ret, 0);
	printf("#   %ld faults succeeded\n", ctxs[0].ops + ctxs[1].ops);
	ASSERT_EQ(atomic_load(&thread_failures), 0);
	for (uint64_t p = 0; p < BU_PAGES; p++)
		ASSERT_EQ(gmem_vm_stage2(e.vm, GPA_BASE + p * PAGE, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA_BASE, GMEM_FAULT_PRIVATE, NULL, NULL), -EFAULT);
	free(c.expect_pfn);
	ASSERT_EQ(gmem_close(c.fd), 0);
	env_free(&e);
}

/* ----------------------------------- stale handles: translate and close */

#define TC_ROUNDS	100

static atomic_int tc_fd;

/* The file at the gpa: the one bound, or (closed, still mapped) -1, or none. */
static void *tc_translator(void *arg)
{
	struct ctx *c = arg;

	pthread_barrier_wait(c->go);
	while (!atomic_load(c->stop)) {
		/* The main thread may move to the next round mid-call. */
		int before = atomic_load(&tc_fd), fd = -2, after;
		uint64_t off = ~0ULL;
		int ret = gmem_vm_translate(c->vm, c->gpa, &fd, &off, NULL);

		after = atomic_load(&tc_fd);
		CHECK(ret == 0 || ret == -EFAULT, ret);
		if (!ret) {
			CHECK(fd == before || fd == after || fd == -1, fd);
			CHECK(off == 0, off);
		}
		atomic_fetch_add(c->progress, 1);
	}
	return NULL;
}

TEST(translate_racing_close_of_a_mapped_file)
{
	struct env e = env_new("sw");
	pthread_barrier_t go;
	atomic_bool stop = false;
	atomic_long progress = 0;
	struct ctx c = { .vm = e.vm, .gpa = GPA_BASE, .go = &go, .stop = &stop,
			 .progress = &progress };
	int ret = 0;

	test_begin();
	atomic_store(&tc_fd, -1);
	pthread_barrier_init(&go, NULL, 2);
	start_thread(tc_translator, &c);
	pthread_barrier_wait(&go);
	for (int i = 0; i < TC_ROUNDS && !ret; i++) {
		int fd = gmem_create(e.vm, PAGE, GMEM_FLAG_MMAP);
		void *map = NULL;

		ret = fd < 0 ? fd : 0;
		if (!ret) {
			atomic_store(&tc_fd, fd);
			ret = gmem_vm_bind(e.vm, 0, GPA_BASE, PAGE, fd, 0);
		}
		if (!ret)
			ret = gmem_mmap(fd, 0, PAGE, PROT_READ, MAP_SHARED, &map);
		wait_for_progress(&c);
		if (fd >= 0)
			gmem_close(fd);		/* the mapping keeps file and binding */
		wait_for_progress(&c);
		if (map)
			gmem_munmap(map, PAGE);	/* now both go */
	}
	atomic_store(&stop, true);
	join_threads();
	pthread_barrier_destroy(&go);
	ASSERT_EQ(ret, 0);
	ASSERT_EQ(atomic_load(&thread_failures), 0);
	ASSERT_EQ(gmem_vm_translate(e.vm, GPA_BASE, NULL, NULL, NULL), -EFAULT);
	env_free(&e);
}

/* ----------------------------- stale handles: faults on a VM being replaced */

#define VR_ROUNDS	2000

static atomic_int vr_vm;

static void *vr_faulter(void *arg)
{
	struct ctx *c = arg;

	pthread_barrier_wait(c->go);
	while (!atomic_load(c->stop)) {
		int ret = gmem_vm_fault(atomic_load(&vr_vm), GPA_BASE,
					GMEM_FAULT_PRIVATE, NULL, NULL);

		/* Nothing is ever bound: the VM is empty, or the handle closed. */
		CHECK(ret == -EFAULT || ret == -EBADF, ret);
		atomic_fetch_add(c->progress, 1);
	}
	return NULL;
}

TEST(faults_on_a_vm_handle_being_destroyed_and_reused_fail_cleanly)
{
	struct env e = env_new("sw");
	pthread_barrier_t go;
	atomic_bool stop = false;
	atomic_long progress = 0;
	struct ctx c = { .go = &go, .stop = &stop, .progress = &progress };
	int ret = 0;

	test_begin();
	atomic_store(&vr_vm, e.vm);
	pthread_barrier_init(&go, NULL, 3);
	start_thread(vr_faulter, &c);
	start_thread(vr_faulter, &c);
	pthread_barrier_wait(&go);
	for (int i = 0; i < VR_ROUNDS && !ret; i++) {
		int vm = gmem_vm_create(e.pool, "sw", 0);

		if (vm < 0) {
			ret = vm;
			break;
		}
		atomic_store(&vr_vm, vm);
		wait_for_progress(&c);
		ret = gmem_vm_close(vm);	/* the last reference: released */
	}
	atomic_store(&stop, true);
	join_threads();
	pthread_barrier_destroy(&go);
	ASSERT_EQ(ret, 0);
	ASSERT_EQ(atomic_load(&thread_failures), 0);
	env_free(&e);
}
