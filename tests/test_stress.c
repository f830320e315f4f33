// SPDX-License-Identifier: MIT
/* Stress: faults, conversions, punches, pins and host access on one file, checking invariants. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "harness.h"
#include "lib/util.h"

#define PAGE		GMEM_PAGE_SIZE
#define NPAGES		1024ULL			/* 4 MiB */
#define LOWER		(NPAGES / 2)		/* never punched: content checks */
#define GPA_BASE	(4ULL << 30)
#define PUNCH		(GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE)
#define NFAULTERS	2
#define NEIGHBOUR_PAGES	64			/* a second file in the VM */
#define TAG_BYTES	256
#define MAX_RETRIES	64

/*
 * Who touches what, so that every check below is free of races the test
 * itself would cause:
 *  - only the converter converts; it also does all host access (probes are
 *    not thread-safe) and the content checks, on lower-half pages;
 *  - the puncher punches the upper half only, and invalidates a
 *    neighbouring file of the same VM that nothing else touches;
 *  - fault threads read the lower half, and read and write their own pages
 *    of the upper half (page % NFAULTERS == id): no two threads write the
 *    same page, and none reads a page another writes.
 */

enum violation {
	V_S2_ATTR,		/* stage-2 entry contradicts a stable attribute */
	V_S2_PFN,		/* stage-2 maps another frame than the page's */
	V_S2_HOLE,		/* stage-2 maps a page with no folio */
	V_HOST_PRIVATE,		/* the host mapping reached a private page */
	V_HOST_SHARED,		/* the host mapping faulted on a shared page */
	V_HOST_CONTENT,		/* host-written bytes did not survive */
	V_GUEST_CONTENT,	/* the guest saw other bytes than the host wrote */
	V_GUEST_TORN,		/* a guest read saw neither its last write nor zeroes */
	V_PIN_PRIVATE,		/* a pinned page was private */
	V_PIN_ABSENT,		/* a pinned page had no folio or no pin count */
	V_NR
};

static const char *const violation_names[V_NR] = {
	"stage-2 contradicts attribute", "stage-2 maps a wrong frame",
	"stage-2 maps a hole", "host reached a private page",
	"host faulted on a shared page", "host content lost",
	"guest saw other content than host wrote", "guest read torn or stale",
	"pinned page private", "pinned page absent or unpinned",
};

struct stress {
	int pool, vm, fd, neighbour;
	uint8_t *map;
	uint64_t pfn[NPAGES];
	atomic_bool stop;
	atomic_long progress;		/* guest accesses done */
	atomic_long violations[V_NR];
	atomic_long errors;		/* unexpected return codes */
	/* Per thread kind, summed at the end. */
	atomic_long faults, exits, gave_up;
	long conversions, attr_calls, eagain, content_checks, sweeps;
	long punches, neighbour_ops, pins, pin_efault;
};

static void violation(struct stress *st, enum violation v, uint64_t page)
{
	if (atomic_fetch_add(&st->violations[v], 1) < 4)
		printf("#   VIOLATION: %s (page %llu)\n", violation_names[v],
		       (unsigned long long)page);
}

static void error_at(struct stress *st, int line, const char *what, long long ret)
{
	if (atomic_fetch_add(&st->errors, 1) < 8)
		printf("#   ERROR: test_stress.c:%d: %s returned %lld: %s\n", line,
		       what, ret, gmem_last_error());
}

#define EXPECT(st, cond, what, ret) do {				\
	if (!(cond))							\
		error_at(st, __LINE__, what, (long long)(ret));		\
} while (0)

static uint64_t gpa_of(uint64_t page)
{
	return GPA_BASE + page * PAGE;
}

static bool attr_private(struct stress *st, uint64_t page)
{
	uint64_t attr = ~0ULL;
	int ret = gmem_get_attributes(st->fd, page * PAGE, &attr, NULL);

	EXPECT(st, ret == 0, "gmem_get_attributes", ret);
	return attr == GMEM_ATTR_PRIVATE;
}

/* All attributes, one run at a time. */
static void attr_snapshot(struct stress *st, uint8_t *priv)
{
	uint64_t page = 0;

	while (page < NPAGES) {
		uint64_t attr = 0, end = 0;
		int ret = gmem_get_attributes(st->fd, page * PAGE, &attr, &end);

		EXPECT(st, ret == 0 && end > page * PAGE, "gmem_get_attributes", ret);
		if (ret || end <= page * PAGE)
			return;
		for (; page < end / PAGE; page++)
			priv[page] = attr == GMEM_ATTR_PRIVATE;
	}
}

/* Conversions of our file, counted: only the converting thread makes them. */
static int set_attr(struct stress *st, uint64_t offset, uint64_t size,
		    uint64_t attributes, uint64_t flags, uint64_t *error_offset)
{
	st->attr_calls++;
	return gmem_set_attributes(st->fd, offset, size, attributes, flags,
				   error_offset);
}

/* ---------------------------------------------------------- fault threads */

struct faulter {
	struct stress *st;
	int id;
	bool priv[NPAGES];		/* what this vCPU believes */
	uint64_t tag[NPAGES];		/* last tag written to its own pages */
};

static void fill_tag(uint64_t *buf, int id, uint64_t page, uint64_t tag)
{
	for (int k = 0; k < TAG_BYTES / 8; k++)
		buf[k] = tag ? ((uint64_t)id << 60) ^ (page << 40) ^ (tag << 8) ^
			       (uint64_t)k : 0;
}

/* One guest access, switching private/shared on each memory-fault exit. */
static int guest_access(struct faulter *f, uint64_t page, void *buf,
			bool write)
{
	struct stress *st = f->st;

	for (int tries = 0; tries < MAX_RETRIES; tries++) {
		struct gmem_exit exit;
		unsigned int flags = (write ? GMEM_FAULT_WRITE : 0) |
				     (f->priv[page] ? GMEM_FAULT_PRIVATE : 0);
		int ret = gmem_vm_access(st->vm, gpa_of(page), buf, TAG_BYTES,
					 flags, &exit);

		if (ret != 1) {
			EXPECT(st, ret == 0, "gmem_vm_access", ret);
			return ret;
		}
		atomic_fetch_add_explicit(&st->exits, 1, memory_order_relaxed);
		EXPECT(st, exit.reason == GMEM_EXIT_MEMORY_FAULT &&
		       exit.gpa == gpa_of(page) && exit.size == PAGE &&
		       exit.flags == (f->priv[page] ? GMEM_MEMORY_EXIT_FLAG_PRIVATE : 0),
		       "memory-fault exit", exit.flags);
		f->priv[page] = !(exit.flags & GMEM_MEMORY_EXIT_FLAG_PRIVATE);
		if (atomic_load_explicit(&st->stop, memory_order_relaxed))
			break;
	}
	atomic_fetch_add_explicit(&st->gave_up, 1, memory_order_relaxed);
	return 1;
}

static void *fault_thread(void *arg)
{
	struct faulter *f = arg;
	struct stress *st = f->st;
	uint64_t s = 0x9e3779b97f4a7c15ULL * (f->id + 1);
	long n = 0;

	while (!atomic_load_explicit(&st->stop, memory_order_relaxed)) {
		uint64_t r = rnd(&s), buf[TAG_BYTES / 8], want[TAG_BYTES / 8];
		uint64_t page;

		if (r & 1) {	/* read anywhere in the lower half */
			page = (r >> 1) % LOWER;
			guest_access(f, page, buf, false);
		} else {	/* own upper-half page: write or check */
			page = LOWER + ((r >> 2) % ((NPAGES - LOWER) / NFAULTERS)) *
				       NFAULTERS + f->id;
			if (r & 2) {
				fill_tag(buf, f->id, page, f->tag[page] + 1);
				if (!guest_access(f, page, buf, true))
					f->tag[page]++;
			} else if (!guest_access(f, page, buf, false)) {
				/* Its last write, or zeroes if punched since. */
				fill_tag(want, f->id, page, f->tag[page]);
				if (memcmp(buf, want, TAG_BYTES)) {
					fill_tag(want, f->id, page, 0);
					if (memcmp(buf, want, TAG_BYTES))
						violation(st, V_GUEST_TORN, page);
				}
			}
		}
		n++;
		atomic_fetch_add_explicit(&st->progress, 1, memory_order_relaxed);
	}
	atomic_fetch_add(&st->faults, n);
	return NULL;
}

/* ------------------------------------------------------ converting thread */

/*
 * (1) Stage-2 never contradicts an attribute: attributes read before and
 * after the walk, and equal both times, must match every entry's private
 * bit. Entries map the page's own frame, and (checked on a sample, with the
 * invalidation sequence bracketing it) never a hole.
 */
static void check_stage2(struct stress *st, uint64_t *s)
{
	static uint8_t before[NPAGES], after[NPAGES];
	static uint8_t mapped[NPAGES], entry_priv[NPAGES];
	static uint64_t entry_pfn[NPAGES];

	attr_snapshot(st, before);
	for (uint64_t p = 0; p < NPAGES; p++) {
		int priv = 0;
		int ret = gmem_vm_stage2(st->vm, gpa_of(p), &entry_pfn[p], &priv);

		EXPECT(st, ret == 0 || ret == 1, "gmem_vm_stage2", ret);
		mapped[p] = ret == 1;
		entry_priv[p] = priv;
	}
	attr_snapshot(st, after);
	for (uint64_t p = 0; p < NPAGES; p++) {
		if (!mapped[p])
			continue;
		if (before[p] == after[p] && entry_priv[p] != before[p])
			violation(st, V_S2_ATTR, p);
		if (entry_pfn[p] != st->pfn[p])
			violation(st, V_S2_PFN, p);
	}
	for (int k = 0; k < 8; k++) {
		uint64_t p = rnd(s) % NPAGES;
		int64_t seq = gmem_vm_invalidate_seq(st->vm);
		int ret;

		if (gmem_vm_stage2(st->vm, gpa_of(p), NULL, NULL) != 1)
			continue;
		ret = gmem_folio_info(st->fd, p * PAGE, NULL, NULL, NULL);
		EXPECT(st, ret == 0 || ret == 1, "gmem_folio_info", ret);
		/* A punch in between would have bumped the sequence. */
		if (ret == 0 && gmem_vm_invalidate_seq(st->vm) == seq)
			violation(st, V_S2_HOLE, p);
	}
	st->sweeps++;
}

/* (2) The host mapping reaches shared pages and never a private one. */
static void check_host_access(struct stress *st, uint64_t *s)
{
	for (int k = 0; k < 4; k++) {
		uint64_t p = rnd(s) % NPAGES;
		bool priv = attr_private(st, p);
		int sig = probe_read(st->map + p * PAGE + rnd(s) % PAGE, NULL);

		if (priv != attr_private(st, p))
			continue;	/* cannot happen: we are the converter */
		if (priv && !sig)
			violation(st, V_HOST_PRIVATE, p);
		if (!priv && sig)
			violation(st, V_HOST_SHARED, p);
	}
}

static void fill_host_pattern(uint64_t *buf, uint64_t page, long round)
{
	for (uint64_t k = 0; k < PAGE / 8; k++)
		buf[k] = (page << 48) ^ ((uint64_t)round << 16) ^ k ^ 0x5a5a5a5a;
}

/*
 * (3) What the host writes to a shared page survives a round trip through
 * private, and the guest sees it while the page is private ("sw" keeps
 * every byte). Lower-half pages are never punched nor written by the guest.
 */
static void check_content(struct stress *st, uint64_t *s)
{
	static uint64_t want[PAGE / 8], got[TAG_BYTES / 8];
	uint64_t p = rnd(s) % LOWER, off = (rnd(s) % (PAGE / TAG_BYTES)) * TAG_BYTES;
	uint8_t *host = st->map + p * PAGE;
	struct gmem_exit exit;
	int ret;

	ret = set_attr(st, p * PAGE, PAGE, 0, 0, NULL);
	EXPECT(st, ret == 0, "gmem_set_attributes(shared)", ret);
	if (ret)
		return;
	fill_host_pattern(want, p, st->content_checks);
	if (probe_write(host, (uint8_t)want[0])) {
		violation(st, V_HOST_SHARED, p);
		return;
	}
	memcpy(host, want, PAGE);

	ret = set_attr(st, p * PAGE, PAGE, GMEM_ATTR_PRIVATE, 0, NULL);
	EXPECT(st, ret == 0 || ret == -EAGAIN, "gmem_set_attributes(private)", ret);
	if (!ret) {
		if (!probe_read(host, NULL))
			violation(st, V_HOST_PRIVATE, p);
		ret = gmem_vm_access(st->vm, gpa_of(p) + off, got, TAG_BYTES,
				     GMEM_FAULT_PRIVATE, &exit);
		EXPECT(st, ret == 0, "gmem_vm_access(private read)", ret);
		if (!ret && memcmp(got, (uint8_t *)want + off, TAG_BYTES))
			violation(st, V_GUEST_CONTENT, p);
		ret = set_attr(st, p * PAGE, PAGE, 0, 0, NULL);
		EXPECT(st, ret == 0, "gmem_set_attributes(shared)", ret);
		if (ret)
			return;
	} else if (ret == -EAGAIN) {
		st->eagain++;
	}
	if (probe_read(host, NULL)) {
		violation(st, V_HOST_SHARED, p);
		return;
	}
	if (memcmp(host, want, PAGE))
		violation(st, V_HOST_CONTENT, p);
	ret = gmem_vm_access(st->vm, gpa_of(p) + off, got, TAG_BYTES, 0, &exit);
	EXPECT(st, ret == 0, "gmem_vm_access(shared read)", ret);
	if (!ret && memcmp(got, (uint8_t *)want + off, TAG_BYTES))
		violation(st, V_GUEST_CONTENT, p);
	st->content_checks++;
}

static void *convert_thread(void *arg)
{
	struct stress *st = arg;
	uint64_t s = 0xc0ffee1234ULL;

	while (!atomic_load_explicit(&st->stop, memory_order_relaxed)) {
		uint64_t off = rnd(&s) % NPAGES, n = 1 + rnd(&s) % 32;
		bool to_private = rnd(&s) & 1;
		uint64_t err_off = ~0ULL;
		int ret;

		n = n > NPAGES - off ? NPAGES - off : n;
		ret = set_attr(st, off * PAGE, n * PAGE,
			       to_private ? GMEM_ATTR_PRIVATE : 0, 0, &err_off);
		if (to_private) {
			EXPECT(st, ret == 0 || ret == -EAGAIN,
			       "gmem_set_attributes(private)", ret);
			if (ret == -EAGAIN) {
				EXPECT(st, err_off >= off * PAGE &&
				       err_off < (off + n) * PAGE,
				       "error_offset", err_off);
				st->eagain++;
			}
		} else {
			EXPECT(st, ret == 0, "gmem_set_attributes(shared)", ret);
		}
		st->conversions++;
		check_stage2(st, &s);
		check_host_access(st, &s);
		check_content(st, &s);
	}
	return NULL;
}

/* ------------------------------------------------ punching and pinning */

/* Writers go first in the engine's locks: let guest accesses through. */
static void wait_for_progress(struct stress *st)
{
	long seen = atomic_load(&st->progress);

	while (atomic_load(&st->progress) == seen &&
	       !atomic_load_explicit(&st->stop, memory_order_relaxed))
		sched_yield();
}

/*
 * Invalidate the neighbouring file: that holds the VM's mmu_lock exclusive
 * without holding our file's invalidate lock, so faults on our file wait
 * between reading an attribute and installing the entry while a conversion
 * of it may run: the window the invalidation protocol must close.
 */
static void neighbour_invalidation(struct stress *st, uint64_t *s)
{
	uint64_t off = rnd(s) % NEIGHBOUR_PAGES, r = rnd(s);
	int ret;

	if (r & 1)
		ret = gmem_set_attributes(st->neighbour, off * PAGE, PAGE,
					  r & 2 ? GMEM_ATTR_PRIVATE : 0, 0, NULL);
	else
		ret = gmem_fallocate(st->neighbour, PUNCH, off * PAGE, PAGE);
	EXPECT(st, ret == 0, "neighbour invalidation", ret);
	st->neighbour_ops++;
}

static void *punch_thread(void *arg)
{
	struct stress *st = arg;
	uint64_t s = 0xfeedfaceULL;

	while (!atomic_load_explicit(&st->stop, memory_order_relaxed)) {
		uint64_t off = LOWER + rnd(&s) % (NPAGES - LOWER), n = 1 + rnd(&s) % 8;
		int mode = rnd(&s) % 4 ? PUNCH : GMEM_FALLOC_KEEP_SIZE;
		int ret;

		n = n > NPAGES - off ? NPAGES - off : n;
		ret = gmem_fallocate(st->fd, mode, off * PAGE, n * PAGE);
		EXPECT(st, ret == 0, "gmem_fallocate", ret);
		st->punches++;
		for (int k = 0; k < 4; k++) {
			neighbour_invalidation(st, &s);
			sched_yield();
		}
		wait_for_progress(st);
	}
	return NULL;
}

static void *pin_thread(void *arg)
{
	struct stress *st = arg;
	uint64_t s = 0xbadc0de5ULL;

	while (!atomic_load_explicit(&st->stop, memory_order_relaxed)) {
		uint64_t off = rnd(&s) % NPAGES, n = 1 + rnd(&s) % 4;
		int ret;

		n = n > NPAGES - off ? NPAGES - off : n;
		ret = gmem_pin(st->fd, off * PAGE, n * PAGE);
		EXPECT(st, ret == 0 || ret == -EFAULT, "gmem_pin", ret);
		if (ret) {
			st->pin_efault++;
			continue;
		}
		/* While pinned: shared (conversion refuses), and in place (punch leaves it). */
		for (uint64_t p = off; p < off + n; p++) {
			uint32_t pins = 0;

			if (attr_private(st, p))
				violation(st, V_PIN_PRIVATE, p);
			if (gmem_folio_info(st->fd, p * PAGE, NULL, NULL, &pins) != 1 ||
			    !pins)
				violation(st, V_PIN_ABSENT, p);
		}
		ret = gmem_unpin(st->fd, off * PAGE, n * PAGE);
		EXPECT(st, ret == 0, "gmem_unpin", ret);
		st->pins++;
	}
	return NULL;
}

/* ------------------------------------------------------------------ test */

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static unsigned int stress_seconds(void)
{
	const char *env = getenv("GMEM_STRESS_SECONDS");
	long v = env ? strtol(env, NULL, 10) : 3;

	return v > 0 ? (unsigned int)v : 3;
}

static struct stress st;
static struct faulter faulters[NFAULTERS];

TEST(faults_conversions_punches_pins_and_host_access_keep_every_invariant)
{
	struct env e = env_new("sw");
	struct gmem_pool_stats ps;
	pthread_t t[NFAULTERS + 3];
	unsigned int secs = stress_seconds();
	struct timespec run = { .tv_sec = secs };
	long violations = 0;
	double start, elapsed;
	uint8_t priv[NPAGES];

	memset(&st, 0, sizeof(st));
	st.pool = e.pool;
	st.vm = e.vm;
	st.fd = gmem_create(e.vm, NPAGES * PAGE,
			    GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	ASSERT_GE(st.fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA_BASE, NPAGES * PAGE, st.fd, 0), 0);
	ASSERT_EQ(gmem_mmap(st.fd, 0, NPAGES * PAGE, PROT_READ | PROT_WRITE,
			    MAP_SHARED, (void **)&st.map), 0);
	st.neighbour = gmem_create(e.vm, NEIGHBOUR_PAGES * PAGE, 0);
	ASSERT_GE(st.neighbour, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, gpa_of(NPAGES), NEIGHBOUR_PAGES * PAGE,
			    st.neighbour, 0), 0);
	for (uint64_t p = 0; p < NPAGES; p++)
		ASSERT_GE(gmem_folio_info(st.fd, p * PAGE, &st.pfn[p], NULL, NULL), 0);

	start = now();
	for (int i = 0; i < NFAULTERS; i++) {
		memset(&faulters[i], 0, sizeof(faulters[i]));
		faulters[i].st = &st;
		faulters[i].id = i;
		ASSERT_EQ(pthread_create(&t[i], NULL, fault_thread, &faulters[i]), 0);
	}
	ASSERT_EQ(pthread_create(&t[NFAULTERS], NULL, convert_thread, &st), 0);
	ASSERT_EQ(pthread_create(&t[NFAULTERS + 1], NULL, punch_thread, &st), 0);
	ASSERT_EQ(pthread_create(&t[NFAULTERS + 2], NULL, pin_thread, &st), 0);
	while (nanosleep(&run, &run))
		;
	atomic_store(&st.stop, true);
	for (int i = 0; i < NFAULTERS + 3; i++)
		pthread_join(t[i], NULL);
	elapsed = now() - start;

	printf("# %u s (%.2f s with shutdown), ops/second:\n", secs, elapsed);
	printf("#   guest accesses  %10.0f  (%ld exits, %ld given up after %d retries)\n",
	       atomic_load(&st.faults) / elapsed, atomic_load(&st.exits),
	       atomic_load(&st.gave_up), MAX_RETRIES);
	printf("#   conversions     %10.0f  (%ld refused with EAGAIN; each step adds a checked round trip:\n"
	       "#                               %.0f gmem_set_attributes calls/s in all)\n",
	       st.conversions / elapsed, st.eagain, st.attr_calls / elapsed);
	printf("#   invariant sweeps%10.0f  content round trips %.0f\n",
	       st.sweeps / elapsed, st.content_checks / elapsed);
	printf("#   punch/allocate  %10.0f  (and %.0f invalidations of a neighbour file)\n",
	       st.punches / elapsed, st.neighbour_ops / elapsed);
	printf("#   pin+unpin       %10.0f  (%ld refused with EFAULT)\n",
	       st.pins / elapsed, st.pin_efault);
	for (int v = 0; v < V_NR; v++) {
		long n = atomic_load(&st.violations[v]);

		if (n)
			printf("#   %ld x %s\n", n, violation_names[v]);
		violations += n;
	}
	printf("# violations: %ld, unexpected errors: %ld\n", violations,
	       atomic_load(&st.errors));

	/* Quiescent: the same invariants, over every page. */
	attr_snapshot(&st, priv);
	for (uint64_t p = 0; p < NPAGES; p++) {
		uint64_t pfn;
		uint32_t pins = ~0u;
		int entry_priv, present;

		present = gmem_folio_info(st.fd, p * PAGE, NULL, NULL, &pins);
		ASSERT_GE(present, 0);
		ASSERT_EQ(pins, 0);
		if (gmem_vm_stage2(e.vm, gpa_of(p), &pfn, &entry_priv) == 1) {
			ASSERT_EQ(entry_priv, priv[p]);
			ASSERT_EQ(pfn, st.pfn[p]);
			ASSERT_EQ(present, 1);
		}
		ASSERT_EQ(probe_read(st.map + p * PAGE, NULL), priv[p] ? SIGSEGV : 0);
	}
	ASSERT_EQ(violations, 0);
	ASSERT_EQ(atomic_load(&st.errors), 0);
	ASSERT_GT(atomic_load(&st.faults), 0);
	ASSERT_GT(st.conversions, 0);
	ASSERT_GT(st.content_checks, 0);

	ASSERT_EQ(gmem_munmap(st.map, NPAGES * PAGE), 0);
	ASSERT_EQ(gmem_close(st.fd), 0);
	ASSERT_EQ(gmem_close(st.neighbour), 0);
	ASSERT_EQ(gmem_pool_stats(e.pool, &ps), 0);
	ASSERT_EQ(ps.files, 0);
	ASSERT_EQ(ps.frames_in_use, 0);
	env_free(&e);
}
