// SPDX-License-Identifier: MIT
/*
 * Real pthreads racing host mappings: mmap and munmap under conversion, punch
 * against direct-map reads, conversions reaching fork children's mappings.
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
	return convert_randomly(arg, 0x5a5aULL, MC_CONVERSIONS);
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

/*
 * Reads the private frame as the hardware would: past ASan's poison of
 * private frames, which this test does not mean to trip (frame_bytes).
 */
__attribute__((no_sanitize_address))
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
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA_BASE, FK_PAGES * PAGE, c.fd, 0), 0);
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
