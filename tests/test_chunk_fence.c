// SPDX-License-Identifier: MIT
/*
 * Chunk fences: a 2 MiB-aligned chunk of a host mapping that is private
 * throughout is fenced whole, with the empty past-EOF memfd mapped over it
 * (src/fence.h): no page table, the kernel's own SIGBUS, partial opens that
 * guard the rest first, fork, the fallback to guards out of VMAs, check
 * mode, and conversions racing mappings being cut.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mapping_helpers.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL	102
#endif
#define PM_PRESENT	(1ULL << 63)
#define PM_GUARD	(1ULL << 58)
#define CHUNK		(2 * MiB)
#define FLAGS		(GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED)

/* Chunk fences stand on guards (partial chunks); skip where there are none. */
static void require_guards(void)
{
	void *p = mmap(NULL, PG, PROT_NONE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	bool have;

	ASSERT_TRUE(p != MAP_FAILED);
	have = !madvise(p, PG, MADV_GUARD_INSTALL);
	munmap(p, PG);
	if (!have)
		test_skip("no guard regions for shared mappings (Linux < 6.15): no chunk fences");
}

static uint64_t pagemap(const void *p)
{
	uint64_t e = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(pread(fd, &e, sizeof(e), (off_t)((uintptr_t)p / PG * sizeof(e))),
		  (ssize_t)sizeof(e));
	close(fd);
	return e;
}

/* The /proc/self/maps line of the VMA holding @p, into @line; false if none. */
static bool maps_line(const void *p, char *line, size_t size)
{
	FILE *f = fopen("/proc/self/maps", "r");
	bool found = false;

	ASSERT_TRUE(f);
	while (!found && fgets(line, (int)size, f)) {
		unsigned long long lo, hi;

		found = sscanf(line, "%llx-%llx", &lo, &hi) == 2 &&
			lo <= (uintptr_t)p && (uintptr_t)p < hi;
	}
	fclose(f);
	return found;
}

/* Is @p in a VMA of the past-EOF memfd, one that spans [lo, hi) at least? */
static bool past_eof_at(const void *p)
{
	char line[512];

	return maps_line(p, line, sizeof(line)) && strstr(line, "gmem-past-eof");
}

static long vmpte_kb(void)
{
	long kb = proc_status_kib("VmPTE");

	ASSERT_GE(kb, 0);
	return kb;
}

/* Every page of [p, p + len) is fenced whole: no entry, no guard marker. */
static void assert_fenced_whole(const uint8_t *p, size_t len)
{
	ASSERT_TRUE(past_eof_at(p));
	ASSERT_TRUE(past_eof_at(p + len - 1));
	for (size_t off = 0; off < len; off += PG)
		ASSERT_EQ(pagemap(p + off) & (PM_PRESENT | PM_GUARD), 0);
}

/* An 8 MiB file of 4 KiB folios, shared, mapped whole; @c is its chunk 1. */
struct fixture {
	struct env e;
	int fd;
	uint8_t *p, *c;
};

static struct fixture fixture_new(void)
{
	struct fixture f;

	require_guards();
	f.e = env_new("sw");
	f.fd = gmem_create(f.e.vm, 8 * MiB, FLAGS);
	ASSERT_GE(f.fd, 0);
	f.p = map(f.fd, 0, 8 * MiB, RW);
	f.c = f.p + CHUNK;
	return f;
}

static void fixture_free(struct fixture *f)
{
	unmap(f->p, 8 * MiB);
	close_file(&f->e, f->fd);
	env_free(&f->e);
}

TEST(a_private_2m_chunk_of_a_host_mapping_costs_no_page_table)
{
	struct env e = env_new("sw");
	size_t len = 64 * MiB;
	int fd = gmem_create(e.vm, len, FLAGS);
	long before, after;
	uint8_t *p;

	require_guards();
	ASSERT_GE(fd, 0);
	p = map(fd, 0, len, RW);
	ASSERT_EQ((uintptr_t)p % CHUNK, 0);	/* mappings of 2 MiB and more are */
	/* The host touches every page: 32 page-table pages exist. */
	for (size_t off = 0; off < len; off += PG)
		p[off] = 1;
	before = vmpte_kb();
	ASSERT_EQ(to_private(fd, 0, len), 0);
	after = vmpte_kb();
	/* Guards would keep all 32 (128 kB); fenced whole, they are freed. */
	printf("# VmPTE %ld kB touched, %ld kB fenced whole\n", before, after);
	ASSERT_LE(after, before - 100);
	for (size_t c = 0; c < len; c += CHUNK)
		assert_fenced_whole(p + c, CHUNK);
	/* One VMA: neighbouring chunks fenced whole merge. */
	{
		char line[512];
		unsigned long long lo, hi;

		ASSERT_TRUE(maps_line(p, line, sizeof(line)));
		ASSERT_EQ(sscanf(line, "%llx-%llx", &lo, &hi), 2);
		ASSERT_EQ(lo, (uintptr_t)p);
		ASSERT_EQ(hi, (uintptr_t)p + len);
	}
	/* Shared again: the pool, readable, the zero the host wrote kept (sw). */
	ASSERT_EQ(to_shared(fd, 0, len), 0);
	ASSERT_TRUE(!past_eof_at(p));
	for (size_t off = 0; off < len; off += CHUNK)
		ASSERT_EQ(p[off], 1);
	unmap(p, len);
	close_file(&e, fd);
	env_free(&e);
}

TEST(a_private_chunk_of_a_2m_folio_file_is_fenced_whole_from_gmem_mmap_on)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 8 * MiB, GMEM_FLAG_MMAP | GMEM_FLAG_HUGE_2M);
	uint8_t *p;

	require_guards();
	long vmas;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(to_shared(fd, 0, CHUNK), 0);	/* chunk 0 shared, 1-3 private */
	p = map(fd, 0, 8 * MiB, RW);
	assert_fenced_whole(p + CHUNK, 3 * CHUNK);
	ASSERT_TRUE(!past_eof_at(p));
	p[5] = 7;
	ASSERT_EQ(to_shared(fd, CHUNK, 3 * CHUNK), 0);
	vmas = count_process_mappings();
	ASSERT_EQ(to_private(fd, CHUNK, CHUNK), 0);
	ASSERT_EQ(count_process_mappings(), vmas + 2);	/* cut in the middle */
	/* Mapped back with MADV_HUGEPAGE, as gmem_mmap made it: one VMA again. */
	ASSERT_EQ(to_shared(fd, CHUNK, CHUNK), 0);
	ASSERT_EQ(count_process_mappings(), vmas);
	p[CHUNK + 5] = 8;
	ASSERT_EQ(p[5] + p[CHUNK + 5], 15);
	ASSERT_EQ(to_private(fd, 0, 2 * CHUNK), 0);
	ASSERT_EQ(to_private(fd, 2 * CHUNK, 2 * CHUNK), 0);
	assert_fenced_whole(p, 4 * CHUNK);
	ASSERT_EQ(bus_read(p + CHUNK + 5, NULL), SIGBUS);
	unmap(p, 8 * MiB);
	close_file(&e, fd);
	env_free(&e);
}

TEST(an_access_to_a_chunk_fenced_whole_is_the_kernels_sigbus)
{
	struct fixture f = fixture_new();
	int fd = f.fd;
	uint8_t *c = f.c;

	ASSERT_EQ(to_private(fd, CHUNK, CHUNK), 0);
	assert_fenced_whole(c, CHUNK);
	/* BUS_ADRERR at the address (bus_probe checks both), as gmem documents. */
	ASSERT_EQ(bus_read(c, NULL), SIGBUS);
	ASSERT_EQ(bus_read(c + CHUNK / 2 + 3, NULL), SIGBUS);
	ASSERT_EQ(bus_write(c + CHUNK - 1, 1), SIGBUS);
	/* Raised by the kernel: with SIGSEGV at its default, still SIGBUS. */
	ASSERT_EQ(run_in_child(child_write_plain, c + 77), SIGBUS);
	ASSERT_EQ(run_in_child(child_read, c), SIGBUS);
	/* Its neighbours are the pool's shared pages. */
	ASSERT_EQ(probe_write(c - 1, 1), 0);
	ASSERT_EQ(probe_write(c + CHUNK, 1), 0);
	/* The kernel's own accesses stop there too. */
	{
		int mem = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
		uint8_t buf[8];
		struct iovec local = { buf, sizeof(buf) }, remote = { c + 64, sizeof(buf) };

		ASSERT_GE(mem, 0);
		ASSERT_EQ(pread(mem, buf, sizeof(buf), (off_t)(uintptr_t)(c + 64)), -1);
		ASSERT_EQ(errno, EIO);
		close(mem);
		ASSERT_EQ(process_vm_readv(getpid(), &local, 1, &remote, 1, 0), -1);
		ASSERT_EQ(errno, EFAULT);
	}
	/* And the memfd over it cannot be given pages: sealed at size 0. */
	{
		char link[64], target[128];
		int n = 0;

		for (int i = 0; i < 1024; i++) {
			ssize_t len;

			snprintf(link, sizeof(link), "/proc/self/fd/%d", i);
			len = readlink(link, target, sizeof(target) - 1);
			if (len < 0)
				continue;
			target[len] = 0;
			if (!strstr(target, "memfd:gmem-past-eof"))
				continue;
			ASSERT_EQ(ftruncate(i, CHUNK), -1);
			ASSERT_EQ(errno, EPERM);
			ASSERT_EQ(pwrite(i, "x", 1, 0), -1);
			ASSERT_EQ(errno, EPERM);
			n++;
		}
		ASSERT_EQ(n, 1);
	}
	fixture_free(&f);
}

TEST(one_page_of_a_chunk_fenced_whole_converts_to_shared_alone_and_back)
{
	struct fixture f = fixture_new();
	int fd = f.fd;
	static const unsigned int pages[] = { 3, 0, 511 };
	long vmas;
	uint8_t *c = f.c;

	fill_pages(c, 512, 40);
	vmas = count_process_mappings();
	for (unsigned int i = 0; i < sizeof(pages) / sizeof(pages[0]); i++) {
		unsigned int k = pages[i];
		uint8_t *pg = c + k * PG;

		ASSERT_EQ(to_private(fd, CHUNK, CHUNK), 0);
		assert_fenced_whole(c, CHUNK);
		ASSERT_EQ(to_shared(fd, CHUNK + k * PG, PG), 0);
		/* That page, with its bytes (sw keeps them); nothing else. */
		ASSERT_TRUE(!past_eof_at(pg));
		ASSERT_EQ(probe_page(pg, (uint8_t)(40 + k)), 0);
		ASSERT_EQ(mismatch(pg, PG, (uint8_t)(40 + k)), -1);
		if (k > 0) {
			ASSERT_EQ(bus_read(pg - 1, NULL), SIGBUS);
			ASSERT_TRUE(pagemap(pg - PG) & PM_GUARD);
		}
		if (k < 511) {
			ASSERT_EQ(bus_read(pg + PG, NULL), SIGBUS);
			ASSERT_TRUE(pagemap(pg + PG) & PM_GUARD);
		}
		ASSERT_EQ(bus_read(k ? c : c + CHUNK - 1, NULL), SIGBUS);
		/*
		 * Private again: a guard, as any page converted alone (the
		 * chunk is fenced whole again when it is converted whole).
		 */
		ASSERT_EQ(to_private(fd, CHUNK + k * PG, PG), 0);
		ASSERT_TRUE(pagemap(pg) & PM_GUARD);
		ASSERT_EQ(bus_read(pg, NULL), SIGBUS);
		/* Shared whole: the pool's VMA is one again, the bytes all there. */
		ASSERT_EQ(to_shared(fd, CHUNK, CHUNK), 0);
		ASSERT_EQ(pages_match(c, 0, 512, 40), 512);
		ASSERT_EQ(count_process_mappings(), vmas);
	}
	ASSERT_EQ(to_private(fd, CHUNK, CHUNK), 0);
	assert_fenced_whole(c, CHUNK);
	fixture_free(&f);
}

/* A punch puts the fences of private pages back: whole chunks, whole. */
TEST(a_punch_fences_the_private_chunks_it_covers_whole)
{
	struct fixture f = fixture_new();
	int fd = f.fd;

	ASSERT_EQ(to_private(fd, CHUNK, CHUNK), 0);
	ASSERT_EQ(gmem_fallocate(fd, PUNCH, CHUNK + 5 * PG, PG), 0);
	assert_fenced_whole(f.c, CHUNK);
	/* On guards (a page shared and back), then punched whole: whole. */
	ASSERT_EQ(to_shared(fd, CHUNK + 9 * PG, PG), 0);
	ASSERT_EQ(to_private(fd, CHUNK + 9 * PG, PG), 0);
	ASSERT_TRUE(pagemap(f.c + 9 * PG) & PM_GUARD);
	ASSERT_EQ(gmem_fallocate(fd, PUNCH, CHUNK, CHUNK), 0);
	assert_fenced_whole(f.c, CHUNK);
	ASSERT_EQ(bus_read(f.c + 9 * PG, NULL), SIGBUS);
	fixture_free(&f);
}

/* Is @flag ("dd", "hg" ...) among the VmFlags of the VMA holding @p? */
static bool vm_flag(const void *p, const char *flag)
{
	char line[512];
	bool in = false, found = false;
	FILE *f = fopen("/proc/self/smaps", "r");

	ASSERT_TRUE(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long long lo, hi;

		/* A VMA's first line; its fields ("Size:" ...) do not parse so. */
		if (sscanf(line, "%llx-%llx", &lo, &hi) == 2)
			in = lo <= (uintptr_t)p && (uintptr_t)p < hi;
		if (in && !strncmp(line, "VmFlags:", 8)) {
			char pat[8];

			snprintf(pat, sizeof(pat), " %s", flag);
			found = strstr(line, pat) != NULL;
			break;
		}
	}
	fclose(f);
	return found;
}

/*
 * A chunk fenced whole is another VMA: the program's madvise there is gone
 * when it opens again (the kernel's guest_memfd mapping would keep it), and
 * MADV_REMOVE over it punches nothing of the pool.
 */
TEST(a_chunk_fenced_whole_is_a_new_vma_the_programs_madvise_is_not_kept)
{
	struct fixture f = fixture_new();
	int fd = f.fd;
	uint8_t *p = f.p, *c = f.c;

	fill_pages(c, 4, 80);
	ASSERT_EQ(madvise(p, 8 * MiB, MADV_DONTDUMP), 0);
	ASSERT_TRUE(vm_flag(c, "dd"));
	ASSERT_EQ(to_private(fd, CHUNK, CHUNK), 0);
	/* The program's own mprotect leaves it fenced. */
	ASSERT_EQ(mprotect(p, 8 * MiB, PROT_READ), 0);
	ASSERT_EQ(bus_read(c + 5, NULL), SIGBUS);
	ASSERT_EQ(mprotect(p, 8 * MiB, RW), 0);
	ASSERT_EQ(madvise(c, CHUNK, MADV_REMOVE), 0);
	ASSERT_EQ(to_shared(fd, CHUNK, CHUNK), 0);
	ASSERT_EQ(pages_match(c, 0, 4, 80), 4);		/* not punched */
	ASSERT_TRUE(!vm_flag(c, "dd"));
	ASSERT_TRUE(vm_flag(p, "dd"));			/* kept where guarded */
	fixture_free(&f);
}

/* ------------------------------------------------------------- fork */

static sigjmp_buf child_jmp;

static void child_bus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	siglongjmp(child_jmp, si->si_code == BUS_ADRERR ? 1 : 2);
}

/* In the child: 0 read (into *@v), 1 SIGBUS (BUS_ADRERR), 2 another SIGBUS. */
static int child_probe(volatile uint8_t *p, uint8_t *v)
{
	int r = sigsetjmp(child_jmp, 1);

	if (!r)
		*v = *p;
	return r;
}

static void child_step(int to_parent, int from_parent)
{
	struct pollfd pfd = { .fd = from_parent, .events = POLLIN };
	char b = 1;
	int n;

	if (write(to_parent, &b, 1) != 1)
		_exit(99);
	/* The parent's shootdown signal (SIGURG) may interrupt the wait. */
	while ((n = poll(&pfd, 1, 10000)) < 0 && errno == EINTR)
		;
	if (n != 1 || read(from_parent, &b, 1) != 1)
		_exit(99);
}

TEST(a_fork_child_inherits_a_chunk_fenced_whole_and_follows_conversions)
{
	struct fixture f = fixture_new();
	int fd = f.fd;
	int up[2], down[2], status = 0;
	uint8_t *c = f.c, b = 1;
	pid_t pid;

	fill_pages(c, 8, 60);
	ASSERT_EQ(to_private(fd, CHUNK, CHUNK), 0);
	ASSERT_EQ(pipe(up), 0);
	ASSERT_EQ(pipe(down), 0);
	pid = fork();
	if (pid == 0) {
		struct sigaction sa = { .sa_sigaction = child_bus, .sa_flags = SA_SIGINFO };
		int bad = 0;
		uint8_t v = 0;

		close(up[0]);
		close(down[1]);
		sigemptyset(&sa.sa_mask);
		sigaction(SIGBUS, &sa, NULL);
		bad |= !past_eof_at(c) << 0;			/* the fence, inherited */
		bad |= (child_probe(c + 3 * PG, &v) != 1) << 1;
		child_step(up[1], down[0]);			/* page 3 shared */
		bad |= (child_probe(c + 3 * PG + 9, &v) != 0 ||
			v != pattern_byte(9, 63)) << 2;
		bad |= (child_probe(c + 4 * PG, &v) != 1) << 3;
		bad |= (child_probe(c + 2 * PG + PG - 1, &v) != 1) << 4;
		bad |= (child_probe(c + CHUNK - 1, &v) != 1) << 5;
		child_step(up[1], down[0]);			/* page 3 private */
		bad |= (child_probe(c + 3 * PG, &v) != 1) << 6;
		_exit(bad);
	}
	ASSERT_GT(pid, 0);
	close(up[1]);
	close(down[0]);
	ASSERT_EQ(read(up[0], &b, 1), 1);
	ASSERT_EQ(to_shared(fd, CHUNK + 3 * PG, PG), 0);	/* reaches the child */
	ASSERT_EQ(write(down[1], &b, 1), 1);
	ASSERT_EQ(read(up[0], &b, 1), 1);
	ASSERT_EQ(to_private(fd, CHUNK + 3 * PG, PG), 0);
	ASSERT_EQ(write(down[1], &b, 1), 1);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_EQ(status, 0);	/* else the bits of what failed, << 8 */
	ASSERT_TRUE(pagemap(c + 3 * PG) & PM_GUARD);
	ASSERT_EQ(bus_read(c + 3 * PG, NULL), SIGBUS);
	close(up[0]);
	close(down[1]);
	fixture_free(&f);
}

/*
 * A child that closed its file descriptors cannot map the pool back: a page
 * converted to shared inside a chunk fenced whole stays SIGBUS there (the
 * kernel's child would fault it in); one in a guarded chunk opens.
 */
TEST(a_fork_child_without_the_pools_fd_keeps_a_chunk_fenced_whole_fenced)
{
	struct fixture f = fixture_new();
	int up[2], down[2], status = 0;
	uint8_t b = 1;
	pid_t pid;

	ASSERT_EQ(to_private(f.fd, 0, 2 * CHUNK), 0);
	ASSERT_EQ(to_shared(f.fd, 7 * PG, PG), 0);	/* chunk 0 on guards */
	ASSERT_EQ(pipe(up), 0);
	ASSERT_EQ(pipe(down), 0);
	pid = fork();
	if (pid == 0) {
		struct sigaction sa = { .sa_sigaction = child_bus, .sa_flags = SA_SIGINFO };
		uint8_t v = 0;
		int bad = 0;

		sigemptyset(&sa.sa_mask);
		sigaction(SIGBUS, &sa, NULL);
		for (int i = 3; i < 1024; i++)
			if (i != up[1] && i != down[0])
				close(i);
		child_step(up[1], down[0]);	/* pages 8 and 512 + 3 shared */
		bad |= (child_probe(f.p + 8 * PG, &v) != 0) << 0;
		bad |= (child_probe(f.c + 3 * PG, &v) != 1) << 1;
		_exit(bad);
	}
	ASSERT_GT(pid, 0);
	close(up[1]);
	close(down[0]);
	ASSERT_EQ(read(up[0], &b, 1), 1);
	ASSERT_EQ(to_shared(f.fd, 8 * PG, PG), 0);
	ASSERT_EQ(to_shared(f.fd, CHUNK + 3 * PG, PG), 0);
	ASSERT_EQ(write(down[1], &b, 1), 1);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_EQ(status, 0);	/* else the bits of what failed, << 8 */
	ASSERT_EQ(probe_read(f.c + 3 * PG, NULL), 0);	/* here it opened */
	close(up[0]);
	close(down[1]);
	fixture_free(&f);
}

/* ------------------------------------------------------ out of VMAs */

#define CHILD_CHECK(x) do {						\
	if (!(x)) {							\
		printf("#   child: %s:%d: %s\n", __FILE__, __LINE__, #x);	\
		fflush(stdout);						\
		_exit(1);						\
	}								\
} while (0)

/* In the child: -1 read, else the si_code of its SIGBUS. */
static int child_bus_code(volatile uint8_t *p)
{
	uint8_t v;
	int r = child_probe(p, &v);

	return r ? (r == 1 ? BUS_ADRERR : 0) : -1;
}

/*
 * Use up the process's VMAs (vm.max_map_count): split pages off the end of
 * a reservation, each with a protection unlike its neighbour's, until the
 * kernel refuses one more. Returns the reservation.
 */
static uint8_t *use_up_vmas(size_t pages)
{
	uint8_t *hog = mmap(NULL, pages * PG, PROT_NONE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	size_t i;

	CHILD_CHECK(hog != MAP_FAILED);
	for (i = pages - 1; i > 0; i--)
		if (mprotect(hog + i * PG, PG, i % 2 ? PROT_READ : RW))
			break;
	CHILD_CHECK(i > 0 && errno == ENOMEM);
	return hog;
}

static void out_of_vmas(void)
{
	struct sigaction sa = { .sa_sigaction = child_bus, .sa_flags = SA_SIGINFO };
	int pool = gmem_pool_create(64ULL << 30), vm = -1, fd = -1;
	size_t hog_pages = 80000;
	void *addr = NULL;
	uint8_t *p, *hog;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	CHILD_CHECK(pool >= 0);
	vm = gmem_vm_create(pool, "sw", 0);
	CHILD_CHECK(vm >= 0);
	fd = gmem_create(vm, 16 * MiB, FLAGS);
	CHILD_CHECK(fd >= 0);
	CHILD_CHECK(!gmem_mmap(fd, 0, 16 * MiB, RW, MAP_SHARED, &addr));
	p = addr;
	/* Chunks 1-3 fenced whole, one VMA, before the VMAs run out. */
	CHILD_CHECK(!to_private(fd, CHUNK, 3 * CHUNK));
	CHILD_CHECK(past_eof_at(p + CHUNK) && past_eof_at(p + 4 * CHUNK - 1));

	hog = use_up_vmas(hog_pages);
	/* Chunk 5 would split the pool's VMA in three: guarded instead. */
	CHILD_CHECK(!to_private(fd, 5 * CHUNK, CHUNK));
	CHILD_CHECK(!past_eof_at(p + 5 * CHUNK));
	CHILD_CHECK(pagemap(p + 5 * CHUNK + PG) & PM_GUARD);
	CHILD_CHECK(child_bus_code(p + 5 * CHUNK + 5) == BUS_ADRERR);
	CHILD_CHECK(child_bus_code(p + 5 * CHUNK - 1) == -1);
	/*
	 * One page of chunk 2 shared: opening it alone would split the VMA
	 * of chunks 1-3 in three, so all three are guarded and mapped back
	 * as one.
	 */
	CHILD_CHECK(!to_shared(fd, 2 * CHUNK + 5 * PG, PG));
	CHILD_CHECK(child_bus_code(p + 2 * CHUNK + 5 * PG) == -1);
	CHILD_CHECK(child_bus_code(p + 2 * CHUNK + 4 * PG) == BUS_ADRERR);
	CHILD_CHECK(child_bus_code(p + 2 * CHUNK + 6 * PG) == BUS_ADRERR);
	for (int c = 1; c <= 3; c++) {
		CHILD_CHECK(child_bus_code(p + c * CHUNK + PG) == BUS_ADRERR);
		CHILD_CHECK(pagemap(p + c * CHUNK + PG) & PM_GUARD);
		CHILD_CHECK(!past_eof_at(p + c * CHUNK));
	}
	/* With VMAs again, chunk 5 is fenced whole at its next conversion. */
	CHILD_CHECK(!munmap(hog, hog_pages * PG));
	CHILD_CHECK(!to_shared(fd, 5 * CHUNK, CHUNK));
	CHILD_CHECK(child_bus_code(p + 5 * CHUNK + 5) == -1);
	CHILD_CHECK(!to_private(fd, 5 * CHUNK, CHUNK));
	CHILD_CHECK(past_eof_at(p + 5 * CHUNK));
	_exit(0);
}

TEST(out_of_vmas_a_chunk_is_guarded_instead_and_no_conversion_fails)
{
	int status = 0;
	pid_t pid;

	require_guards();
#ifdef UNDER_TSAN
	test_skip("ThreadSanitizer needs VMAs of its own for its shadow memory");
#endif
	fflush(stdout);
	pid = fork();
	if (pid == 0)
		out_of_vmas();
	ASSERT_GT(pid, 0);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
}

/* ------------------------------------------------------- check mode */

static bool has_violation(int vm, const char *what)
{
	static struct gmem_violation v[64];
	int64_t n = gmem_vm_violations(vm, v, 64);

	ASSERT_GE(n, 0);
	for (int64_t i = 0; i < n && i < 64; i++)
		if (v[i].invariant == 1 && strstr(v[i].rule, what))
			return true;
	for (int64_t i = 0; i < n && i < 64; i++)
		printf("#   violation %d: %s\n", v[i].invariant, v[i].rule);
	return false;
}

TEST(check_mode_verifies_chunk_fences_and_reports_one_replaced_behind_gmems_back)
{
	int pool = gmem_pool_create(64ULL << 30);
	int vm = gmem_vm_create(pool, "sw", GMEM_VM_CHECK);
	int fd = gmem_create(vm, 8 * MiB, FLAGS);
	uint8_t *p, *anon;

	require_guards();
	ASSERT_GE(fd, 0);
	p = map(fd, 0, 8 * MiB, RW);
	ASSERT_EQ(to_private(fd, CHUNK, 2 * CHUNK), 0);
	ASSERT_EQ(to_shared(fd, CHUNK + 8 * PG, PG), 0);
	ASSERT_EQ(to_private(fd, 0, PG), 0);
	ASSERT_EQ(gmem_vm_violations(vm, NULL, 0), 0);
	/* The chunk fenced whole replaced by anonymous memory, behind gmem's back. */
	anon = mmap(p + 2 * CHUNK, CHUNK, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
		    -1, 0);
	ASSERT_TRUE(anon == p + 2 * CHUNK);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, PG), 0);
	ASSERT_TRUE(has_violation(vm, "no chunk fence"));
	ASSERT_EQ(gmem_munmap(p, 8 * MiB), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(gmem_vm_close(vm), 0);
	ASSERT_EQ(gmem_pool_close(pool), 0);
}

/* ---------------------------------------------------------- threads */

struct race {
	int fd;
	uint8_t *p;
	atomic_bool stop;
	atomic_int failures;
	atomic_uint conversions, cuts;
};

/* Chunk 1: private whole, a page shared and back, shared whole. */
static void *convert_chunk(void *arg)
{
	struct race *r = arg;

	while (!atomic_load(&r->stop)) {
		unsigned int k = atomic_load(&r->conversions) % 512;

		if (to_private(r->fd, CHUNK, CHUNK) ||
		    to_shared(r->fd, CHUNK + k * PG, PG) ||
		    to_private(r->fd, CHUNK + k * PG, PG) ||
		    to_shared(r->fd, CHUNK, CHUNK))
			atomic_fetch_add(&r->failures, 1);
		atomic_fetch_add(&r->conversions, 1);
	}
	return NULL;
}

/* A second mapping of the file, cut in the middle of chunk 1, then gone. */
static void *map_and_cut(void *arg)
{
	struct race *r = arg;

	while (!atomic_load(&r->stop)) {
		void *q = NULL;

		if (gmem_mmap(r->fd, 0, 8 * MiB, RW, MAP_SHARED, &q) ||
		    gmem_munmap((uint8_t *)q + CHUNK + 100 * PG, PG) ||
		    gmem_munmap(q, 8 * MiB))
			atomic_fetch_add(&r->failures, 1);
		atomic_fetch_add(&r->cuts, 1);
	}
	return NULL;
}

TEST(conversions_of_a_chunk_racing_mappings_cut_in_it_keep_every_fence)
{
	struct env e = env_new("sw");
	struct race r = { .fd = gmem_create(e.vm, 8 * MiB, FLAGS) };
	pthread_t t[2];

	require_guards();
	ASSERT_GE(r.fd, 0);
	r.p = map(r.fd, 0, 8 * MiB, RW);
	fill_pages(r.p, 8, 20);
	ASSERT_EQ(pthread_create(&t[0], NULL, convert_chunk, &r), 0);
	ASSERT_EQ(pthread_create(&t[1], NULL, map_and_cut, &r), 0);
	/* Chunk 0 is always shared: never a fault there. */
	while (atomic_load(&r.conversions) < 50 || atomic_load(&r.cuts) < 50)
		ASSERT_EQ(pages_match(r.p, 0, 8, 20), 8);
	atomic_store(&r.stop, true);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	ASSERT_EQ(atomic_load(&r.failures), 0);
	/* Shared at the end: all of chunk 1 readable again. */
	ASSERT_TRUE(!past_eof_at(r.p + CHUNK));
	for (unsigned int k = 0; k < 512; k++)
		ASSERT_EQ(probe_read(r.p + CHUNK + k * PG, NULL), 0);
	ASSERT_EQ(to_private(r.fd, CHUNK, CHUNK), 0);
	assert_fenced_whole(r.p + CHUNK, CHUNK);
	unmap(r.p, 8 * MiB);
	close_file(&e, r.fd);
	env_free(&e);
}
