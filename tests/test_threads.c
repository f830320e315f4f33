// SPDX-License-Identifier: MIT
/* Real pthreads racing faults, conversions, punches, pins, mappings, bindings and handles. */
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

static void thread_fail(int line, const char *expr, long long val)
{
	if (atomic_fetch_add(&thread_failures, 1) < 8)
		printf("#   worker: test_threads.c:%d: CHECK %s failed (value %lld): %s\n",
		       line, expr, val, gmem_last_error());
}

#define CHECK(cond, val) do {						\
	if (!(cond))							\
		thread_fail(__LINE__, #cond, (long long)(val));		\
} while (0)

static uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

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

static void start_thread(void *(*fn)(void *), const struct ctx *c)
{
	ASSERT_LT(nthreads, MAX_THREADS);
	ctxs[nthreads] = *c;
	ctxs[nthreads].id = nthreads;
	ASSERT_EQ(pthread_create(&threads[nthreads], NULL, fn, &ctxs[nthreads]), 0);
	nthreads++;
}

static void join_threads(void)
{
	for (int i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	nthreads = 0;
}

static void test_begin(void)
{
	atomic_store(&thread_failures, 0);
	nthreads = 0;
}

/* The frame of every page, from the page cache (it answers for holes too). */
static uint64_t *expected_pfns(int fd, uint64_t npages)
{
	uint64_t *pfn = calloc(npages, sizeof(*pfn));

	ASSERT_TRUE(pfn);
	for (uint64_t i = 0; i < npages; i++)
		ASSERT_GE(gmem_folio_info(fd, i * PAGE, &pfn[i], NULL, NULL), 0);
	return pfn;
}

static bool page_private(int fd, uint64_t index)
{
	uint64_t attr = ~0ULL;

	ASSERT_EQ(gmem_get_attributes(fd, index * PAGE, &attr, NULL), 0);
	return attr == GMEM_ATTR_PRIVATE;
}

/*
 * Quiescent: every stage-2 entry of the file's guest range agrees with the
 * page's attribute, maps the page's own frame and a folio that exists.
 */
static void check_stage2_quiescent(const struct ctx *c)
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
static int fault_following_exits(struct ctx *c, uint64_t p, bool *priv,
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
static void wait_for_progress(struct ctx *c)
{
	long seen = atomic_load(c->progress);

	while (atomic_load(c->progress) == seen)
		sched_yield();
}

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
	ASSERT_EQ(gmem_bind(e.vm, 0, GPA_BASE, PF_PAGES * PAGE, c.fd, 0), 0);
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
	ASSERT_EQ(gmem_bind(e.vm, 0, a.gpa, TF_PAGES * PAGE, a.fd, 0), 0);
	ASSERT_EQ(gmem_bind(e.vm, 1, sh.gpa, TF_PAGES * PAGE, sh.fd, 0), 0);
	ASSERT_EQ(gmem_bind(vm2, 0, b.gpa, TF_PAGES * PAGE, b.fd, 0), 0);
	ASSERT_EQ(gmem_bind(vm2, 1, x.gpa, TF_PAGES * PAGE, x.fd, 0), 0);
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
	ASSERT_EQ(gmem_vm_destroy(vm2), 0);
	env_free(&e);
}

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
	ASSERT_EQ(gmem_bind(e.vm, 0, c.gpa, FC_PAGES * PAGE, c.fd, 0), 0);
	ASSERT_EQ(gmem_bind(e.vm, 1, noise.gpa, FC_PAGES * PAGE, noise.fd, 0), 0);
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
	struct ctx *c = arg;
	uint64_t s = 0x777ULL;

	pthread_barrier_wait(c->go);
	for (int i = 0; i < GC_CONVERSIONS; i++) {
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
	ASSERT_EQ(gmem_bind(e.vm, 0, GPA_BASE, GC_PAGES * PAGE, c.fd, 0), 0);
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
	ASSERT_EQ(gmem_bind(e.vm, 0, GPA_BASE, FP_PAGES * PAGE, c.fd, 0), 0);
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
	ASSERT_EQ(gmem_bind(e.vm, 0, GPA_BASE, PC_PAGES * PAGE, c.fd, 0), 0);
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
	ASSERT_EQ(gmem_bind(e.vm, 0, GPA_BASE, CF_PAGES * PAGE, c.fd, 0), 0);
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
		bind_ret = gmem_bind(e.vm, i % 3, GPA_BASE, BU_PAGES * PAGE, c.fd, 0);
		wait_for_progress(&c);
		if (!bind_ret)
			unbind_ret = gmem_unbind(e.vm, i % 3);
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

/* ------------------------- host mappings coming and going under conversion */

#define MC_PAGES	32
#define MC_CONVERSIONS	150

static void *mc_mapper(void *arg)
{
	struct ctx *c = arg;

	pthread_barrier_wait(c->go);
	while (!atomic_load(c->stop)) {
		void *addr = NULL;
		int ret = gmem_mmap(c->fd, 0, c->npages * PAGE, PROT_READ,
				    MAP_SHARED, &addr);

		CHECK(ret == 0, ret);
		if (!ret)
			CHECK(gmem_munmap(addr, c->npages * PAGE) == 0, 0);
		c->ops++;
		atomic_fetch_add(c->progress, 1);
	}
	return NULL;
}

static void *mc_reader(void *arg)
{
	struct ctx *c = arg;
	uint64_t s = 0x6666ULL;

	pthread_barrier_wait(c->go);
	while (!atomic_load(c->stop)) {
		uint64_t p = rnd(&s) % c->npages, pfn = ~0ULL;
		int ret = gmem_folio_info(c->fd, p * PAGE, &pfn, NULL, NULL);

		CHECK(ret == 0 || ret == 1, ret);
		CHECK(pfn == c->expect_pfn[p], pfn);
		c->ops++;
		atomic_fetch_add(c->progress, 1);
	}
	return NULL;
}

static void *mc_converter(void *arg)
{
	struct ctx *c = arg;
	uint64_t s = 0x5a5aULL;

	pthread_barrier_wait(c->go);
	for (int i = 0; i < MC_CONVERSIONS; i++) {
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

TEST(mmap_and_munmap_racing_conversion_and_queries_fence_what_is_private)
{
	struct env e = env_new("sw");
	struct gmem_pool_stats st;
	pthread_barrier_t go;
	atomic_bool stop = false;
	atomic_long progress = 0;
	struct ctx c = { .vm = e.vm, .npages = MC_PAGES, .gpa = GPA_BASE,
			 .go = &go, .stop = &stop, .progress = &progress };
	uint8_t *map;

	test_begin();
	c.fd = gmem_create(e.vm, MC_PAGES * PAGE,
			   GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	ASSERT_GE(c.fd, 0);
	c.expect_pfn = expected_pfns(c.fd, MC_PAGES);
	pthread_barrier_init(&go, NULL, 3);
	start_thread(mc_mapper, &c);
	start_thread(mc_reader, &c);
	start_thread(mc_converter, &c);
	join_threads();
	pthread_barrier_destroy(&go);
	printf("#   %ld mmap/munmap pairs\n", ctxs[0].ops);
	ASSERT_EQ(atomic_load(&thread_failures), 0);

	ASSERT_EQ(gmem_mmap(c.fd, 0, MC_PAGES * PAGE, PROT_READ | PROT_WRITE,
			    MAP_SHARED, (void **)&map), 0);
	for (uint64_t p = 0; p < MC_PAGES; p++)
		ASSERT_EQ(probe_read(map + p * PAGE, NULL),
			  page_private(c.fd, p) ? SIGSEGV : 0);
	ASSERT_EQ(gmem_munmap(map, MC_PAGES * PAGE), 0);
	free(c.expect_pfn);
	ASSERT_EQ(gmem_close(c.fd), 0);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 0);
	ASSERT_EQ(st.frames_in_use, 0);
	env_free(&e);
}

/* ------------------------------ punch racing another mapping of the frame */

#define DM_PUNCHES	20000

static void *dm_reader(void *arg)
{
	struct ctx *c = arg;

	pthread_barrier_wait(c->go);
	while (!atomic_load_explicit(c->stop, memory_order_relaxed)) {
		(void)*c->frame;
		atomic_fetch_add_explicit(c->progress, 1, memory_order_relaxed);
	}
	return NULL;
}

/*
 * gmem_pool_frame() may read any frame, private ones included. Reading one
 * while its page is punched must not take the host mapping's fence with it:
 * the page stays private, and a host mapping that reached it would read what
 * the guest stores there next.
 */
TEST(punch_racing_direct_map_reads_keeps_private_pages_fenced)
{
	struct env e = env_new("sw");
	pthread_barrier_t go;
	atomic_bool stop = false;
	atomic_long progress = 0;
	struct ctx c = { .vm = e.vm, .npages = 4, .go = &go, .stop = &stop,
			 .progress = &progress };
	uint64_t pfn;
	uint8_t *map;
	int i, sig = SIGSEGV;
	bool priv;

	test_begin();
	c.fd = gmem_create(e.vm, c.npages * PAGE,
			   GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	ASSERT_GE(c.fd, 0);
	ASSERT_EQ(gmem_mmap(c.fd, 0, c.npages * PAGE, PROT_READ | PROT_WRITE,
			    MAP_SHARED, (void **)&map), 0);
	ASSERT_EQ(gmem_set_attributes(c.fd, 0, PAGE, GMEM_ATTR_PRIVATE, 0, NULL), 0);
	ASSERT_GE(gmem_folio_info(c.fd, 0, &pfn, NULL, NULL), 0);
	c.frame = gmem_pool_frame(e.pool, pfn);
	ASSERT_TRUE(c.frame);
	ASSERT_EQ(probe_read(map, NULL), SIGSEGV);

	pthread_barrier_init(&go, NULL, 2);
	start_thread(dm_reader, &c);
	pthread_barrier_wait(&go);
	for (i = 0; i < DM_PUNCHES && sig == SIGSEGV; i++) {
		if (gmem_fallocate(c.fd, GMEM_FALLOC_KEEP_SIZE, 0, PAGE) ||
		    gmem_fallocate(c.fd, PUNCH, 0, PAGE))
			break;
		sig = probe_read(map, NULL);
	}
	atomic_store(&stop, true);
	join_threads();
	pthread_barrier_destroy(&go);
	if (sig != SIGSEGV)
		printf("#   the host mapping reached the private page after %d punches\n",
		       i);
	priv = page_private(c.fd, 0);
	ASSERT_EQ(gmem_munmap(map, c.npages * PAGE), 0);
	ASSERT_EQ(gmem_close(c.fd), 0);
	env_free(&e);
	ASSERT_TRUE(priv);
	ASSERT_EQ(sig, SIGSEGV);
	ASSERT_EQ(i, DM_PUNCHES);
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
			ret = gmem_bind(e.vm, 0, GPA_BASE, PAGE, fd, 0);
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
		ret = gmem_vm_destroy(vm);	/* the last reference: released */
	}
	atomic_store(&stop, true);
	join_threads();
	pthread_barrier_destroy(&go);
	ASSERT_EQ(ret, 0);
	ASSERT_EQ(atomic_load(&thread_failures), 0);
	env_free(&e);
}

/* ------------------------- conversions reaching fork children's mappings */

#define FK_PAGES	8
#define FK_ROUNDS	150
#define FK_KIDS		2
#define FK_SECRET	0x5e

/* Shared with the children: stop flag and what they saw. */
struct fk_shared {
	atomic_int stop;
	atomic_long reads, faults, secrets;
};

static sigjmp_buf fk_jmp;

static void fk_fault(int sig)
{
	(void)sig;
	siglongjmp(fk_jmp, 1);
}

static void fk_read(volatile uint8_t *b, struct fk_shared *sh)
{
	if (!sigsetjmp(fk_jmp, 1)) {
		uint8_t v = *b;

		atomic_fetch_add(&sh->reads, 1);
		if (v == FK_SECRET)
			atomic_fetch_add(&sh->secrets, 1);
	} else {
		atomic_fetch_add(&sh->faults, 1);
	}
}

/*
 * A child reading every page over and over. A page holds FK_SECRET only
 * while it is private (the guest writes it, then overwrites it before the
 * page goes shared again): a child that ever reads it had access to a private
 * page after the conversion that revoked it returned.
 */
static void fk_child(uint8_t *map, struct fk_shared *sh)
{
	struct sigaction sa = { .sa_handler = fk_fault };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	while (!atomic_load(&sh->stop)) {
		for (int p = 0; p < FK_PAGES; p++)
			fk_read(map + p * PAGE + 64, sh);
		sched_yield();	/* two cores: leave the converters some */
	}
	_exit(0);
}

static void *fk_converter(void *arg)
{
	struct ctx *c = arg;
	uint8_t data[PAGE];
	struct gmem_exit ex;

	pthread_barrier_wait(c->go);
	for (int r = 0; r < FK_ROUNDS; r++) {
		for (int k = 0; k < 2; k++) {
			uint64_t p = (uint64_t)c->id * 2 + (uint64_t)k;

			CHECK(!gmem_set_attributes(c->fd, p * PAGE, PAGE,
						   GMEM_ATTR_PRIVATE, 0, NULL), p);
			memset(data, FK_SECRET, sizeof(data));
			CHECK(!gmem_vm_access(c->vm, c->gpa + p * PAGE, data, PAGE,
					      GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE,
					      &ex), p);
			memset(data, 0x11, sizeof(data));
			CHECK(!gmem_vm_access(c->vm, c->gpa + p * PAGE, data, PAGE,
					      GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE,
					      &ex), p);
			CHECK(!gmem_set_attributes(c->fd, p * PAGE, PAGE, 0, 0,
						   NULL), p);
			c->ops++;
		}
	}
	return NULL;
}

TEST(conversions_from_many_threads_reach_every_fork_child_before_they_return)
{
	struct env e = env_new("sw");
	struct fk_shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pthread_barrier_t go;
	struct ctx c = { .vm = e.vm, .npages = FK_PAGES, .gpa = GPA_BASE, .go = &go };
	pid_t kids[FK_KIDS];
	uint8_t *map = NULL;
	int status;

	test_begin();
	ASSERT_TRUE(sh != MAP_FAILED);
	c.fd = gmem_create(e.vm, FK_PAGES * PAGE,
			   GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	ASSERT_GE(c.fd, 0);
	ASSERT_EQ(gmem_bind(e.vm, 0, GPA_BASE, FK_PAGES * PAGE, c.fd, 0), 0);
	ASSERT_EQ(gmem_mmap(c.fd, 0, FK_PAGES * PAGE, PROT_READ | PROT_WRITE,
			    MAP_SHARED, (void **)&map), 0);
	memset(map, 0x11, FK_PAGES * PAGE);
	fflush(stdout);
	for (int k = 0; k < FK_KIDS; k++) {
		kids[k] = fork();
		ASSERT_GE(kids[k], 0);
		if (!kids[k])
			fk_child(map, sh);
	}
	pthread_barrier_init(&go, NULL, FK_PAGES / 2);
	for (int t = 0; t < FK_PAGES / 2; t++)
		start_thread(fk_converter, &c);
	join_threads();
	pthread_barrier_destroy(&go);
	atomic_store(&sh->stop, 1);
	for (int k = 0; k < FK_KIDS; k++) {
		ASSERT_EQ(waitpid(kids[k], &status, 0), kids[k]);
		ASSERT_TRUE(WIFEXITED(status));
		ASSERT_EQ(WEXITSTATUS(status), 0);
	}
	printf("#   children: %ld reads, %ld faults on private pages\n",
	       atomic_load(&sh->reads), atomic_load(&sh->faults));
	ASSERT_EQ(atomic_load(&thread_failures), 0);
	ASSERT_EQ(atomic_load(&sh->secrets), 0);
	ASSERT_GT(atomic_load(&sh->reads), 0);
	ASSERT_EQ(gmem_munmap(map, FK_PAGES * PAGE), 0);
	ASSERT_EQ(gmem_close(c.fd), 0);
	ASSERT_EQ(munmap(sh, sizeof(*sh)), 0);
	env_free(&e);
}
