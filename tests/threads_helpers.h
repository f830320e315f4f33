/* SPDX-License-Identifier: MIT */
/*
 * What the threaded tests share (test_threads_*.c): failure counting for
 * worker threads, thread start and join, a seeded random generator, and the
 * checks every race ends with.
 */
#ifndef GMEM_TESTS_THREADS_HELPERS_H
#define GMEM_TESTS_THREADS_HELPERS_H

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

#include "harness.h"
#include "lib/util.h"

#define PAGE		GMEM_PAGE_SIZE
#define GPA_BASE	(1ULL << 30)
#define MAX_THREADS	8
#define PUNCH		(GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE)

/*
 * ASSERT longjmps to the main thread's test: workers must not use it. They
 * count failures here instead (printing the first few) and the test asserts
 * the count once every worker has been joined.
 */
static atomic_int thread_failures;

static inline void thread_fail(int line, const char *expr, long long val)
{
	if (atomic_fetch_add(&thread_failures, 1) < 8)
		printf("#   worker: test_threads.c:%d: CHECK %s failed (value %lld): %s\n",
		       line, expr, val, gmem_last_error());
}

#define CHECK(cond, val) do {						\
	if (!(cond))							\
		thread_fail(__LINE__, #cond, (long long)(val));		\
} while (0)

/* Everything a worker needs: shared handles, its own id, a stop flag. */
struct ctx {
	int vm, fd, pool;
	uint64_t npages;
	uint64_t gpa;			/* guest address of page 0 */
	uint64_t *expect_pfn;		/* frame of each page */
	atomic_bool *stop;
	atomic_long *progress;
	pthread_barrier_t *go;
	int id;
	bool priv;			/* the file's pages are private */
	long ops;			/* done by this worker */
	long aux;			/* and a second count */
	uint8_t *attr;			/* per page: 1 private, as last set */
	volatile uint8_t *frame;	/* a frame, through the direct map */
};

static pthread_t threads[MAX_THREADS];
static struct ctx ctxs[MAX_THREADS];
static int nthreads;

static inline void start_thread(void *(*fn)(void *), const struct ctx *c)
{
	ASSERT_LT(nthreads, MAX_THREADS);
	ctxs[nthreads] = *c;
	ctxs[nthreads].id = nthreads;
	ASSERT_EQ(pthread_create(&threads[nthreads], NULL, fn, &ctxs[nthreads]), 0);
	nthreads++;
}

static inline void join_threads(void)
{
	for (int i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	nthreads = 0;
}

static inline void test_begin(void)
{
	atomic_store(&thread_failures, 0);
	nthreads = 0;
}

/* The frame of every page, from the page cache (it answers for holes too). */
static inline uint64_t *expected_pfns(int fd, uint64_t npages)
{
	uint64_t *pfn = calloc(npages, sizeof(*pfn));

	ASSERT_TRUE(pfn);
	for (uint64_t i = 0; i < npages; i++)
		ASSERT_GE(gmem_folio_info(fd, i * PAGE, &pfn[i], NULL, NULL), 0);
	return pfn;
}

static inline bool page_private(int fd, uint64_t index)
{
	uint64_t attr = ~0ULL;

	ASSERT_EQ(gmem_get_attributes(fd, index * PAGE, &attr, NULL), 0);
	return attr == GMEM_ATTR_PRIVATE;
}

/*
 * Quiescent: every stage-2 entry of the file's guest range agrees with the
 * page's attribute, maps the page's own frame and a folio that exists.
 */
static inline void check_stage2_quiescent(const struct ctx *c)
{
	for (uint64_t i = 0; i < c->npages; i++) {
		uint64_t pfn;
		int priv;

		if (gmem_vm_stage2(c->vm, c->gpa + i * PAGE, &pfn, &priv) != 1)
			continue;
		ASSERT_EQ(priv, page_private(c->fd, i));
		ASSERT_EQ(pfn, c->expect_pfn[i]);
		ASSERT_EQ(gmem_folio_info(c->fd, i * PAGE, NULL, NULL, NULL), 1);
	}
}

/* Fault page @p with access @priv until it agrees, flipping on exits. */
static inline int fault_following_exits(struct ctx *c, uint64_t p, bool *priv,
				 unsigned int extra, uint64_t *pfn, long *exits)
{
	for (;;) {
		struct gmem_exit exit;
		unsigned int flags = extra | (*priv ? GMEM_FAULT_PRIVATE : 0);
		int ret = gmem_vm_fault(c->vm, c->gpa + p * PAGE, flags, pfn,
					&exit);

		if (ret != 1)
			return ret;
		CHECK(exit.reason == GMEM_EXIT_MEMORY_FAULT, exit.reason);
		CHECK(exit.gpa == c->gpa + p * PAGE, exit.gpa);
		CHECK(exit.size == PAGE, exit.size);
		CHECK(exit.flags == (*priv ? GMEM_MEMORY_EXIT_FLAG_PRIVATE : 0),
		      exit.flags);
		*priv = !(exit.flags & GMEM_MEMORY_EXIT_FLAG_PRIVATE);
		(*exits)++;
	}
}

/*
 * Writers of the engine's locks go first: a converter in a tight loop can
 * keep faults waiting for its whole run. Let some fault through between two
 * conversions, so the two really interleave.
 */
static inline void wait_for_progress(struct ctx *c)
{
	long seen = atomic_load(c->progress);

	while (atomic_load(c->progress) == seen)
		sched_yield();
}

/*
 * The converting thread of the racing tests: @count random ranges of the
 * file (from @seed) made private or shared, each after the other threads
 * made some progress; then it tells them to stop.
 */
static inline void *convert_randomly(struct ctx *c, uint64_t seed, int count)
{
	uint64_t s = seed;

	pthread_barrier_wait(c->go);
	for (int i = 0; i < count; i++) {
		uint64_t off = rnd(&s) % c->npages;
		uint64_t n = 1 + rnd(&s) % (c->npages - off);
		int ret = gmem_set_attributes(c->fd, off * PAGE, n * PAGE,
					      rnd(&s) & 1 ? GMEM_ATTR_PRIVATE : 0,
					      0, NULL);

		CHECK(ret == 0, ret);
		wait_for_progress(c);
	}
	atomic_store(c->stop, true);
	return NULL;
}

#endif
