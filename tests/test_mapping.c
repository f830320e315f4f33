// SPDX-License-Identifier: MIT
/*
 * Host mappings: gmem_mmap/gmem_munmap errors, shared bytes, guards on private
 * pages, SIGBUS, fork, lifetime; MAP_FIXED, partial munmap, gmem_mapping_find.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define PG	GMEM_PAGE_SIZE
#define MiB	(1ULL << 20)
#define RW	(PROT_READ | PROT_WRITE)
#define PUNCH	(GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE)
#define GPA	0x40000000ULL

static uint8_t *map(int fd, uint64_t offset, size_t len, int prot)
{
	void *addr = NULL;

	ASSERT_EQ(gmem_mmap(fd, offset, len, prot, MAP_SHARED, &addr), 0);
	ASSERT_TRUE(addr);
	return addr;
}

static void unmap(uint8_t *p, size_t len)
{
	ASSERT_EQ(gmem_munmap(p, len), 0);
}

static int to_private(int fd, uint64_t offset, uint64_t size)
{
	return gmem_set_attributes(fd, offset, size, GMEM_ATTR_PRIVATE, 0, NULL);
}

static int to_shared(int fd, uint64_t offset, uint64_t size)
{
	return gmem_set_attributes(fd, offset, size, 0, 0, NULL);
}

/* Direct-map address of the folio at @offset, which must be present. */
static uint8_t *frame_of(struct env *e, int fd, uint64_t offset)
{
	uint64_t pfn = 0;
	uint8_t *p;

	ASSERT_EQ(gmem_folio_info(fd, offset, &pfn, NULL, NULL), 1);
	p = gmem_pool_frame(e->pool, pfn);
	ASSERT_TRUE(p);
	return p;
}

static uint8_t pattern_byte(size_t i, uint8_t seed)
{
	return (uint8_t)(seed + i * 31 + (i >> 8));
}

static void fill(uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = pattern_byte(i, seed);
}

/* Index of the first byte that differs from the pattern, or -1. */
static long long mismatch(const uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != pattern_byte(i, seed))
			return (long long)i;
	return -1;
}

/* Probes four bytes of a page against the pattern: the signal of the first fault, or 0. */
static int probe_page(const uint8_t *p, uint8_t seed)
{
	static const size_t at[] = { 0, 1, 2047, 4095 };

	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		uint8_t v = 0;
		int sig = probe_read(p + at[i], &v);

		if (sig)
			return sig;
		ASSERT_EQ(v, pattern_byte(at[i], seed));
	}
	return 0;
}

static void close_file(struct env *e, int fd)
{
	struct gmem_pool_stats st;

	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(gmem_pool_stats(e->pool, &st), 0);
	ASSERT_EQ(st.files, 0);
	ASSERT_EQ(st.frames_in_use, 0);
	ASSERT_EQ(st.frames_reserved, 0);
}

/* Lines of /proc/self/maps, read without allocating. */
static long count_process_mappings(void)
{
	static char buf[65536];
	long lines = 0;
	ssize_t n;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);

	ASSERT_GE(fd, 0);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < n; i++)
			lines += buf[i] == '\n';
	close(fd);
	return lines;
}

static sigjmp_buf bus_jmp;
static volatile sig_atomic_t bus_code;
static void *volatile bus_addr;

static void bus_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	bus_code = si->si_code;
	bus_addr = si->si_addr;
	siglongjmp(bus_jmp, 1);
}

/*
 * Access @p with a SIGBUS handler of the program's and SIGSEGV left to gmem:
 * SIGBUS (checked to be BUS_ADRERR at @p) or 0. A fault gmem does not claim
 * would kill the test, so call it only where a fault is gmem's.
 */
static int bus_probe(volatile uint8_t *p, uint8_t *out, bool write, uint8_t val)
{
	struct sigaction sa = { .sa_sigaction = bus_handler, .sa_flags = SA_SIGINFO };
	struct sigaction old;
	volatile int sig = 0;

	sigemptyset(&sa.sa_mask);
	ASSERT_EQ(sigaction(SIGBUS, &sa, &old), 0);
	if (!sigsetjmp(bus_jmp, 1)) {
		if (write)
			*p = val;
		else
			*out = *p;
	} else {
		sig = SIGBUS;
	}
	ASSERT_EQ(sigaction(SIGBUS, &old, NULL), 0);
	if (sig) {
		ASSERT_EQ(bus_code, BUS_ADRERR);
		ASSERT_TRUE(bus_addr == (void *)p);
	}
	return sig;
}

static int bus_read(const uint8_t *p, uint8_t *out)
{
	uint8_t dummy;

	return bus_probe((volatile uint8_t *)p, out ? out : &dummy, false, 0);
}

static int bus_write(uint8_t *p, uint8_t val)
{
	return bus_probe(p, NULL, true, val);
}

/*
 * In a child: access @p with SIGBUS at its default disposition, so a fault
 * kills it; SIGSEGV stays with gmem's handler, which makes a fault on a
 * private page SIGBUS.
 */
static void touch_or_die(volatile uint8_t *p, int write)
{
	signal(SIGBUS, SIG_DFL);
	if (write)
		*p = 0xee;
	else
		(void)*p;
}

static void child_read(void *arg)
{
	touch_or_die(arg, 0);
}

static void child_write(void *arg)
{
	touch_or_die(arg, 1);
}

/* A write with SIGSEGV at its default too: for faults that are not gmem's. */
static void child_write_plain(void *arg)
{
	signal(SIGSEGV, SIG_DFL);
	touch_or_die(arg, 1);
}

/* Page i of @p gets the pattern of seed @seed + i. */
static void fill_pages(uint8_t *p, int n, uint8_t seed)
{
	for (int i = 0; i < n; i++)
		fill(p + i * PG, PG, (uint8_t)(seed + i));
}

/* How many of pages [first, end) of @p hold what fill_pages() wrote. */
static int pages_match(const uint8_t *p, int first, int end, uint8_t seed)
{
	int n = 0;

	for (int i = first; i < end; i++)
		n += probe_page(p + i * PG, (uint8_t)(seed + i)) == 0 &&
		     mismatch(p + i * PG, PG, (uint8_t)(seed + i)) == -1;
	return n;
}

/* Is nothing at all mapped at page @p (not even a guard)? */
static bool unmapped(const void *p)
{
	return msync((void *)p, PG, MS_ASYNC) && errno == ENOMEM;
}

/* An inaccessible anonymous reservation of @len, for MAP_FIXED targets. */
static uint8_t *reserve(size_t len)
{
	uint8_t *r = mmap(NULL, len, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	ASSERT_TRUE(r != MAP_FAILED);
	return r;
}

static int map_fixed(int fd, uint64_t offset, size_t len, void *at)
{
	void *addr = at;
	int ret = gmem_mmap(fd, offset, len, RW, MAP_SHARED | MAP_FIXED, &addr);

	ASSERT_TRUE(addr == at);	/* an input only */
	return ret;
}

/* gmem_mapping_find at @p: the offset, or -1 if no gmem mapping is there; fd in *@fd. */
static long long find(const void *p, int *fd)
{
	uint64_t off = ~0ULL;
	int h = -2, ret = gmem_mapping_find(p, &h, &off);

	ASSERT_TRUE(ret == 0 || ret == 1);
	if (fd)
		*fd = ret ? h : -2;
	return ret ? (long long)off : -1;
}

TEST(mmap_refuses_bad_arguments_and_a_failed_call_creates_nothing)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	int nommap = gmem_create(e.vm, 4 * PG, GMEM_FLAG_INIT_SHARED);
	int closed = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	void *const sentinel = (void *)0x1234;
	void *addr = sentinel;
	long before;

	ASSERT_GE(fd, 0);
	ASSERT_GE(nommap, 0);
	ASSERT_GE(closed, 0);
	ASSERT_EQ(gmem_close(closed), 0);
	before = count_process_mappings();

	/* Bad handles first. */
	ASSERT_EQ(gmem_mmap(closed, 0, PG, RW, MAP_SHARED, &addr), -EBADF);
	ASSERT_EQ(gmem_mmap(closed, 1, 0, -1, MAP_PRIVATE, &addr), -EBADF);
	ASSERT_EQ(gmem_mmap(-1, 0, PG, RW, MAP_SHARED, &addr), -EBADF);
	ASSERT_EQ(gmem_mmap(e.vm, 0, PG, RW, MAP_SHARED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(e.pool, 0, PG, RW, MAP_SHARED, &addr), -EINVAL);
	/* A file without GMEM_FLAG_MMAP, before any other check. */
	ASSERT_EQ(gmem_mmap(nommap, 0, PG, RW, MAP_SHARED, &addr), -ENODEV);
	ASSERT_EQ(gmem_mmap(nommap, 1, 0, -1, MAP_PRIVATE, &addr), -ENODEV);
	/* Only MAP_SHARED, maybe MAP_FIXED: no copy-on-write mapping, no other flags. */
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, MAP_PRIVATE, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, PG, PROT_READ, MAP_PRIVATE, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, 0, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, MAP_FIXED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, MAP_PRIVATE | MAP_FIXED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, MAP_SHARED | MAP_FIXED | MAP_NORESERVE, &addr),
		  -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, MAP_SHARED | MAP_FIXED_NOREPLACE, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, MAP_SHARED | MAP_ANONYMOUS, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, MAP_SHARED | MAP_PRIVATE, &addr), -EINVAL);
	/* MAP_FIXED takes *addr as the address: the sentinel is not page-aligned. */
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, MAP_SHARED | MAP_FIXED, &addr), -EINVAL);
	/* prot: PROT_READ, PROT_WRITE or both. */
	ASSERT_EQ(gmem_mmap(fd, 0, PG, PROT_EXEC, MAP_SHARED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW | PROT_EXEC, MAP_SHARED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, PG, PROT_READ | 0x100, MAP_SHARED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, PG, -1, MAP_SHARED, &addr), -EINVAL);
	/* Length and offset. */
	ASSERT_EQ(gmem_mmap(fd, 0, 0, RW, MAP_SHARED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, 1, RW, MAP_SHARED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, PG - 1, RW, MAP_SHARED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, PG + 1, RW, MAP_SHARED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 1, PG, RW, MAP_SHARED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, PG - 1, PG, RW, MAP_SHARED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, PG + 512, PG, RW, MAP_SHARED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 4 * PG, PG, RW, MAP_SHARED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 5 * PG, PG, RW, MAP_SHARED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 1ULL << 62, PG, RW, MAP_SHARED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, ~0ULL & ~(PG - 1), PG, RW, MAP_SHARED, &addr), -EINVAL);

	/* Nothing was created: no address stored, no mapping, no file reference. */
	ASSERT_TRUE(addr == sentinel);
	ASSERT_EQ(count_process_mappings(), before);
	ASSERT_EQ(gmem_close(nommap), 0);
	close_file(&e, fd);
	env_free(&e);
}

TEST(mmap_accepts_read_write_and_both_and_may_extend_past_the_end)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 2 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	static const int prots[] = { PROT_READ, PROT_WRITE, RW };
	struct gmem_pool_stats st;

	ASSERT_GE(fd, 0);
	for (size_t i = 0; i < sizeof(prots) / sizeof(prots[0]); i++) {
		uint8_t *p = map(fd, 0, 2 * PG, prots[i]);

		unmap(p, 2 * PG);
	}
	/* The last page, and a range reaching well past the end. */
	uint8_t *p = map(fd, PG, PG, RW), *q = map(fd, PG, MiB, RW);

	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 1);
	unmap(p, PG);
	unmap(q, MiB);
	close_file(&e, fd);
	env_free(&e);
}

TEST(mmap_refuses_prot_none)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	void *addr = NULL;
	int ret;

	ASSERT_GE(fd, 0);
	ret = gmem_mmap(fd, 0, PG, PROT_NONE, MAP_SHARED, &addr);
	if (!ret)	/* clean up before asserting, so a failure leaks nothing */
		gmem_munmap(addr, PG);
	close_file(&e, fd);
	env_free(&e);
	ASSERT_EQ(ret, -EINVAL);
}

TEST(two_mappings_and_the_direct_map_see_the_same_bytes_both_ways)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *a, *b, *d;

	ASSERT_GE(fd, 0);
	a = map(fd, 0, 4 * PG, RW);
	b = map(fd, 0, 4 * PG, RW);
	ASSERT_TRUE(a != b);

	/* Mapping a -> mapping b and the direct map. */
	fill(a + PG, PG, 1);
	ASSERT_EQ(mismatch(b + PG, PG, 1), -1);
	d = frame_of(&e, fd, PG);
	ASSERT_EQ(mismatch(d, PG, 1), -1);
	/* Mapping b -> mapping a. */
	fill(b + PG, PG, 2);
	ASSERT_EQ(mismatch(a + PG, PG, 2), -1);
	ASSERT_EQ(mismatch(d, PG, 2), -1);
	/* Direct map -> both mappings. */
	fill(d, PG, 3);
	ASSERT_EQ(mismatch(a + PG, PG, 3), -1);
	ASSERT_EQ(mismatch(b + PG, PG, 3), -1);
	/* Neighbouring pages are untouched. */
	ASSERT_EQ(a[0] | a[2 * PG] | b[PG - 1] | b[2 * PG], 0);

	unmap(a, 4 * PG);
	unmap(b, 4 * PG);
	close_file(&e, fd);
	env_free(&e);
}

TEST(mapping_at_an_offset_sees_the_file_from_that_offset)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *a, *b;

	ASSERT_GE(fd, 0);
	a = map(fd, 0, 4 * PG, RW);
	b = map(fd, 2 * PG, 2 * PG, RW);
	fill(a + 2 * PG, 2 * PG, 9);
	ASSERT_EQ(mismatch(b, 2 * PG, 9), -1);
	fill(b + PG, PG, 10);
	ASSERT_EQ(mismatch(a + 3 * PG, PG, 10), -1);
	ASSERT_EQ(mismatch(frame_of(&e, fd, 3 * PG), PG, 10), -1);
	unmap(a, 4 * PG);
	unmap(b, 2 * PG);
	close_file(&e, fd);
	env_free(&e);
}

TEST(first_touch_of_a_hole_allocates_a_zeroed_folio_without_a_call)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *p, v = 0xff;

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 4 * PG, RW);
	for (uint64_t off = 0; off < 4 * PG; off += PG)
		ASSERT_EQ(gmem_folio_info(fd, off, NULL, NULL, NULL), 0);

	/* Read first touch: zero, and a folio afterwards. */
	ASSERT_EQ(probe_read(p + PG + 100, &v), 0);
	ASSERT_EQ(v, 0);
	for (size_t i = 0; i < PG; i++)
		ASSERT_EQ(p[PG + i], 0);
	ASSERT_EQ(gmem_folio_info(fd, PG, NULL, NULL, NULL), 1);

	/* Write first touch: the rest of the page is zero, the folio holds the byte. */
	ASSERT_EQ(probe_write(p + 3 * PG + 7, 0x5a), 0);
	ASSERT_EQ(gmem_folio_info(fd, 3 * PG, NULL, NULL, NULL), 1);
	ASSERT_EQ(frame_of(&e, fd, 3 * PG)[7], 0x5a);
	for (size_t i = 0; i < PG; i++)
		if (i != 7)
			ASSERT_EQ(p[3 * PG + i], 0);

	/* Untouched pages stay holes. */
	ASSERT_EQ(gmem_folio_info(fd, 0, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_folio_info(fd, 2 * PG, NULL, NULL, NULL), 0);
	unmap(p, 4 * PG);
	close_file(&e, fd);
	env_free(&e);
}

TEST(host_writes_through_a_mapping_reach_the_guest_and_back)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 2 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	struct gmem_exit ex;
	uint8_t *p, buf[PG];

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 2 * PG, RW);
	ASSERT_EQ(gmem_bind(e.vm, 0, GPA, 2 * PG, fd, 0), 0);
	/* The host's first touch of a hole, then the guest's first access. */
	fill(p, PG, 20);
	memset(buf, 0, sizeof(buf));
	ASSERT_EQ(gmem_vm_access(e.vm, GPA, buf, PG, 0, &ex), 0);
	ASSERT_EQ(mismatch(buf, PG, 20), -1);
	/* The guest's shared write shows in the mapping. */
	fill(buf, PG, 21);
	ASSERT_EQ(gmem_vm_access(e.vm, GPA + PG, buf, PG, GMEM_FAULT_WRITE, &ex), 0);
	ASSERT_EQ(mismatch(p + PG, PG, 21), -1);
	unmap(p, 2 * PG);
	close_file(&e, fd);
	env_free(&e);
}

TEST(private_page_raises_sigbus_on_read_and_write_and_keeps_its_content)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 2 * PG, GMEM_FLAG_MMAP);	/* private */
	struct gmem_exit ex;
	uint8_t *p, *d, buf[PG], v = 0x77;

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 2 * PG, RW);
	ASSERT_EQ(gmem_bind(e.vm, 0, GPA, 2 * PG, fd, 0), 0);
	fill(buf, PG, 30);
	ASSERT_EQ(gmem_vm_access(e.vm, GPA, buf, PG,
				 GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE, &ex), 0);
	d = frame_of(&e, fd, 0);
	ASSERT_EQ(mismatch(d, PG, 30), -1);	/* the guest's data is there */

	/*
	 * Nothing of it through the mapping: every probe faults with SIGBUS at
	 * the address (BUS_ADRERR), as the kernel's guest_memfd; v never changes.
	 */
	for (size_t i = 0; i < PG; i += 512) {
		ASSERT_EQ(bus_read(p + i, &v), SIGBUS);
		ASSERT_EQ(v, 0x77);
	}
	ASSERT_EQ(bus_read(p + PG - 1, &v), SIGBUS);
	ASSERT_EQ(v, 0x77);
	/* A host write faults too and does not reach the frame. */
	ASSERT_EQ(bus_write(p + 5, 0xee), SIGBUS);
	ASSERT_EQ(mismatch(d, PG, 30), -1);
	/* A private hole faults as well. */
	ASSERT_EQ(bus_read(p + PG, &v), SIGBUS);
	ASSERT_EQ(bus_write(p + PG, 1), SIGBUS);

	/* A mapping made after the guest wrote is fenced the same way. */
	uint8_t *q = map(fd, 0, 2 * PG, PROT_READ);

	ASSERT_EQ(bus_read(q, &v), SIGBUS);
	ASSERT_EQ(bus_read(q + PG - 1, &v), SIGBUS);
	ASSERT_EQ(v, 0x77);
	unmap(q, 2 * PG);
	unmap(p, 2 * PG);
	close_file(&e, fd);
	env_free(&e);
}

TEST(guest_private_data_becomes_visible_after_conversion_to_shared)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 2 * PG, GMEM_FLAG_MMAP);
	struct gmem_exit ex;
	uint8_t *p, buf[PG];

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 2 * PG, PROT_READ);
	ASSERT_EQ(gmem_bind(e.vm, 0, GPA, 2 * PG, fd, 0), 0);
	fill(buf, PG, 40);
	ASSERT_EQ(gmem_vm_access(e.vm, GPA + PG, buf, PG,
				 GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE, &ex), 0);
	ASSERT_EQ(probe_page(p + PG, 40), SIGSEGV);
	ASSERT_EQ(to_shared(fd, PG, PG), 0);
	ASSERT_EQ(probe_page(p + PG, 40), 0);
	ASSERT_EQ(mismatch(p + PG, PG, 40), -1);
	/* Its private neighbour is still fenced. */
	ASSERT_EQ(probe_read(p, NULL), SIGSEGV);
	unmap(p, 2 * PG);
	close_file(&e, fd);
	env_free(&e);
}

TEST(pages_past_the_end_of_the_file_raise_sigbus)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 2 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *p, *q, v = 0x77;

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 5 * PG, RW);
	ASSERT_EQ(probe_write(p + PG + 4095, 1), 0);
	ASSERT_EQ(probe_read(p, &v), 0);
	ASSERT_EQ(v, 0);
	for (uint64_t off = 2 * PG; off < 5 * PG; off += PG) {
		v = 0x77;
		ASSERT_EQ(probe_read(p + off, &v), SIGBUS);
		ASSERT_EQ(v, 0x77);
		ASSERT_EQ(probe_read(p + off + PG - 1, &v), SIGBUS);
		ASSERT_EQ(probe_write(p + off + 9, 1), SIGBUS);
	}
	/* A mapping starting at the last page: one page in, the rest past the end. */
	q = map(fd, PG, 3 * PG, PROT_READ);
	ASSERT_EQ(probe_read(q + 4095, &v), 0);
	ASSERT_EQ(v, 1);
	ASSERT_EQ(probe_read(q + PG, &v), SIGBUS);
	ASSERT_EQ(probe_read(q + 2 * PG + 4095, &v), SIGBUS);

	/* Private pages are SIGSEGV, the part past the end stays SIGBUS, both ways. */
	ASSERT_EQ(to_private(fd, 0, 2 * PG), 0);
	ASSERT_EQ(probe_read(p + PG, &v), SIGSEGV);
	ASSERT_EQ(probe_read(q, &v), SIGSEGV);
	ASSERT_EQ(probe_read(p + 2 * PG, &v), SIGBUS);
	ASSERT_EQ(probe_read(q + PG, &v), SIGBUS);
	ASSERT_EQ(to_shared(fd, 0, 2 * PG), 0);
	ASSERT_EQ(probe_read(q + 4095, &v), 0);
	ASSERT_EQ(v, 1);
	ASSERT_EQ(probe_read(p + 2 * PG, &v), SIGBUS);
	ASSERT_EQ(probe_read(q + PG, &v), SIGBUS);

	unmap(p, 5 * PG);
	unmap(q, 3 * PG);
	close_file(&e, fd);
	env_free(&e);
}

TEST(to_private_revokes_every_mapping_and_to_shared_restores_content)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *a, *b, *c, v = 0x77;

	ASSERT_GE(fd, 0);
	a = map(fd, 0, 4 * PG, RW);
	b = map(fd, PG, 2 * PG, RW);		/* file pages 1 and 2 */
	c = map(fd, 0, 4 * PG, PROT_READ);
	for (int i = 0; i < 4; i++)
		fill(a + i * PG, PG, (uint8_t)(50 + i));

	ASSERT_EQ(to_private(fd, 2 * PG, PG), 0);
	/* File page 2 is gone from every mapping, for reads and writes. */
	ASSERT_EQ(probe_read(a + 2 * PG, &v), SIGSEGV);
	ASSERT_EQ(probe_read(b + PG + 4095, &v), SIGSEGV);
	ASSERT_EQ(probe_read(c + 2 * PG + 17, &v), SIGSEGV);
	ASSERT_EQ(v, 0x77);
	ASSERT_EQ(probe_write(a + 2 * PG + 3, 0), SIGSEGV);
	ASSERT_EQ(probe_write(b + PG + 3, 0), SIGSEGV);
	/* Its neighbours are not. */
	ASSERT_EQ(probe_page(a + PG, 51), 0);
	ASSERT_EQ(probe_page(b, 51), 0);
	ASSERT_EQ(probe_page(c + 3 * PG, 53), 0);
	ASSERT_EQ(probe_page(a, 50), 0);
	/* sw keeps the bytes in the frame meanwhile. */
	ASSERT_EQ(mismatch(frame_of(&e, fd, 2 * PG), PG, 52), -1);

	ASSERT_EQ(to_shared(fd, 2 * PG, PG), 0);
	ASSERT_EQ(mismatch(a + 2 * PG, PG, 52), -1);
	ASSERT_EQ(mismatch(b + PG, PG, 52), -1);
	ASSERT_EQ(mismatch(c + 2 * PG, PG, 52), -1);
	/* Write access is back where the mapping had it, and only there. */
	ASSERT_EQ(probe_write(b + PG + 3, pattern_byte(3, 52)), 0);
	ASSERT_EQ(probe_write(c + 2 * PG + 3, 0), SIGSEGV);
	ASSERT_EQ(mismatch(a + 2 * PG, PG, 52), -1);

	/* The whole file, round trip. */
	ASSERT_EQ(to_private(fd, 0, 4 * PG), 0);
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(probe_read(a + i * PG + 100, &v), SIGSEGV);
	ASSERT_EQ(probe_read(b, &v), SIGSEGV);
	ASSERT_EQ(probe_read(b + PG, &v), SIGSEGV);
	ASSERT_EQ(probe_read(c + 3 * PG, &v), SIGSEGV);
	ASSERT_EQ(to_shared(fd, 0, 4 * PG), 0);
	for (int i = 0; i < 4; i++) {
		ASSERT_EQ(mismatch(a + i * PG, PG, (uint8_t)(50 + i)), -1);
		ASSERT_EQ(mismatch(c + i * PG, PG, (uint8_t)(50 + i)), -1);
	}
	ASSERT_EQ(mismatch(b, PG, 51), -1);

	unmap(a, 4 * PG);
	unmap(b, 2 * PG);
	unmap(c, 4 * PG);
	close_file(&e, fd);
	env_free(&e);
}

TEST(mapping_made_while_partly_private_fences_exactly_the_private_pages)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 3 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *p, *d, v = 0x77;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, 3 * PG), 0);
	for (int i = 0; i < 3; i++)
		fill(frame_of(&e, fd, i * PG), PG, (uint8_t)(60 + i));
	ASSERT_EQ(to_private(fd, PG, PG), 0);

	p = map(fd, 0, 3 * PG, RW);
	ASSERT_EQ(probe_page(p, 60), 0);
	ASSERT_EQ(probe_page(p + 2 * PG, 62), 0);
	ASSERT_EQ(probe_write(p + PG - 1, pattern_byte(PG - 1, 60)), 0);
	ASSERT_EQ(probe_write(p + 2 * PG, pattern_byte(0, 62)), 0);
	ASSERT_EQ(probe_read(p + PG, &v), SIGSEGV);
	ASSERT_EQ(probe_read(p + 2 * PG - 1, &v), SIGSEGV);
	ASSERT_EQ(probe_write(p + PG + 1, 0), SIGSEGV);
	ASSERT_EQ(v, 0x77);
	d = frame_of(&e, fd, PG);
	ASSERT_EQ(mismatch(d, PG, 61), -1);

	/* A mapping of an all-private file faults everywhere in the file. */
	unmap(p, 3 * PG);
	ASSERT_EQ(to_private(fd, 0, 3 * PG), 0);
	p = map(fd, 0, 3 * PG, RW);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(probe_read(p + i * PG, &v), SIGSEGV);
	ASSERT_EQ(to_shared(fd, PG, PG), 0);
	ASSERT_EQ(probe_page(p + PG, 61), 0);
	ASSERT_EQ(probe_read(p, &v), SIGSEGV);
	ASSERT_EQ(probe_read(p + 2 * PG, &v), SIGSEGV);
	unmap(p, 3 * PG);
	close_file(&e, fd);
	env_free(&e);
}

TEST(failed_conversion_of_a_pinned_page_leaves_every_mapping_intact)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint64_t err_off = 0, attr;
	uint8_t *a, *b, v = 0x77;

	ASSERT_GE(fd, 0);
	a = map(fd, 0, 4 * PG, RW);
	b = map(fd, 0, 4 * PG, PROT_READ);
	for (int i = 0; i < 4; i++)
		fill(a + i * PG, PG, (uint8_t)(70 + i));
	ASSERT_EQ(gmem_pin(fd, 2 * PG, PG), 0);

	ASSERT_EQ(gmem_set_attributes(fd, 0, 4 * PG, GMEM_ATTR_PRIVATE, 0, &err_off),
		  -EAGAIN);
	ASSERT_EQ(err_off, 2 * PG);
	for (int i = 0; i < 4; i++) {
		ASSERT_EQ(probe_page(a + i * PG, (uint8_t)(70 + i)), 0);
		ASSERT_EQ(probe_page(b + i * PG, (uint8_t)(70 + i)), 0);
		ASSERT_EQ(mismatch(a + i * PG, PG, (uint8_t)(70 + i)), -1);
		ASSERT_EQ(mismatch(b + i * PG, PG, (uint8_t)(70 + i)), -1);
		ASSERT_EQ(gmem_get_attributes(fd, i * PG, &attr, NULL), 0);
		ASSERT_EQ(attr, 0);
	}
	ASSERT_EQ(probe_write(a + 3, pattern_byte(3, 70)), 0);

	/* With a private page inside the range, it alone stays fenced. */
	ASSERT_EQ(to_private(fd, PG, PG), 0);
	err_off = 0;
	ASSERT_EQ(gmem_set_attributes(fd, 0, 4 * PG, GMEM_ATTR_PRIVATE, 0, &err_off),
		  -EAGAIN);
	ASSERT_EQ(err_off, 2 * PG);
	ASSERT_EQ(probe_read(a + PG, &v), SIGSEGV);
	ASSERT_EQ(probe_read(b + PG, &v), SIGSEGV);
	ASSERT_EQ(v, 0x77);
	for (int i = 0; i < 4; i += i == 0 ? 2 : 1) {	/* pages 0, 2, 3 */
		ASSERT_EQ(probe_page(a + i * PG, (uint8_t)(70 + i)), 0);
		ASSERT_EQ(probe_page(b + i * PG, (uint8_t)(70 + i)), 0);
		ASSERT_EQ(mismatch(a + i * PG, PG, (uint8_t)(70 + i)), -1);
	}

	/* Unpinned, the same conversion succeeds and revokes. */
	ASSERT_EQ(gmem_unpin(fd, 2 * PG, PG), 0);
	ASSERT_EQ(to_private(fd, 0, 4 * PG), 0);
	ASSERT_EQ(probe_read(a + 2 * PG, &v), SIGSEGV);
	ASSERT_EQ(probe_read(b + 3 * PG, &v), SIGSEGV);
	ASSERT_EQ(to_shared(fd, 0, 4 * PG), 0);
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(mismatch(b + i * PG, PG, (uint8_t)(70 + i)), -1);
	unmap(a, 4 * PG);
	unmap(b, 4 * PG);
	close_file(&e, fd);
	env_free(&e);
}

TEST(punching_a_page_written_through_a_mapping_makes_it_read_zero)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 3 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	struct gmem_pool_stats st;
	uint8_t *p;

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 3 * PG, RW);
	for (int i = 0; i < 3; i++)
		fill(p + i * PG, PG, (uint8_t)(80 + i));
	/* No gmem call between the writes and the punch. */
	ASSERT_EQ(gmem_fallocate(fd, PUNCH, PG, PG), 0);
	ASSERT_EQ(gmem_folio_info(fd, PG, NULL, NULL, NULL), 0);
	for (size_t i = 0; i < PG; i++)
		ASSERT_EQ(p[PG + i], 0);
	ASSERT_EQ(mismatch(p, PG, 80), -1);
	ASSERT_EQ(mismatch(p + 2 * PG, PG, 82), -1);

	/* The whole file. */
	ASSERT_EQ(gmem_fallocate(fd, PUNCH, 0, 3 * PG), 0);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.frames_in_use, 0);
	for (size_t i = 0; i < 3 * PG; i++)
		ASSERT_EQ(p[i], 0);
	unmap(p, 3 * PG);
	close_file(&e, fd);
	env_free(&e);
}

TEST(mapping_keeps_the_file_alive_after_close_and_munmap_releases_it)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 3 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	struct gmem_pool_stats st;
	uint8_t *p, *d;

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 3 * PG, RW);
	fill(p, PG, 90);
	d = frame_of(&e, fd, 0);
	ASSERT_EQ(to_private(fd, 2 * PG, PG), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(gmem_size(fd), -EBADF);

	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 1);
	ASSERT_EQ(mismatch(p, PG, 90), -1);
	fill(p, PG, 91);
	ASSERT_EQ(mismatch(d, PG, 91), -1);
	fill(p + PG, PG, 92);			/* first touch after close */
	ASSERT_EQ(mismatch(p + PG, PG, 92), -1);
	ASSERT_EQ(probe_read(p + 2 * PG, NULL), SIGSEGV);	/* still private */

	unmap(p, 3 * PG);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 0);
	ASSERT_EQ(st.frames_in_use, 0);
	ASSERT_EQ(st.frames_reserved, 0);
	env_free(&e);
}

TEST(last_of_several_mappings_releases_a_closed_file)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 2 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	struct gmem_pool_stats st;
	uint8_t *a, *b;

	ASSERT_GE(fd, 0);
	a = map(fd, 0, 2 * PG, RW);
	b = map(fd, PG, PG, RW);
	ASSERT_EQ(gmem_close(fd), 0);
	fill(a + PG, PG, 95);
	unmap(a, 2 * PG);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 1);
	ASSERT_EQ(mismatch(b, PG, 95), -1);
	unmap(b, PG);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 0);
	ASSERT_EQ(st.frames_in_use, 0);
	ASSERT_EQ(st.frames_reserved, 0);
	env_free(&e);
}

TEST(munmap_refuses_bad_input_and_ranges_without_gmem_and_changes_nothing)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	static uint8_t not_gmem[2 * PG] __attribute__((aligned(4096)));
	uint8_t *p, *anon;

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 4 * PG, RW);
	fill_pages(p, 4, 20);
	anon = mmap(NULL, PG, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(anon != MAP_FAILED);

	/* Bad input. */
	ASSERT_EQ(gmem_munmap(NULL, 0), -EINVAL);
	ASSERT_EQ(gmem_munmap(p, 0), -EINVAL);
	ASSERT_EQ(gmem_munmap(p + 1, 4 * PG), -EINVAL);
	ASSERT_EQ(gmem_munmap(p + PG / 2, PG), -EINVAL);
	ASSERT_EQ(gmem_munmap(p, SIZE_MAX), -EINVAL);
	ASSERT_EQ(gmem_munmap(p, SIZE_MAX - PG + 2), -EINVAL);
	ASSERT_EQ(gmem_munmap((void *)(UINTPTR_MAX & ~(uintptr_t)(PG - 1)), 2 * PG),
		  -EINVAL);
	/* No gmem mapping in the range. */
	ASSERT_EQ(gmem_munmap(NULL, PG), -EINVAL);
	ASSERT_EQ(gmem_munmap(not_gmem, 2 * PG), -EINVAL);
	ASSERT_EQ(gmem_munmap(anon, PG), -EINVAL);
	ASSERT_EQ(gmem_munmap(p + 4 * PG, PG), -EINVAL);	/* just after */
	ASSERT_EQ(gmem_munmap(p - PG, PG), -EINVAL);		/* just before */

	/* Nothing changed: every page readable, and all fenced by a conversion. */
	ASSERT_EQ(probe_write(anon, 1), 0);
	ASSERT_EQ(pages_match(p, 0, 4, 20), 4);
	ASSERT_EQ(to_private(fd, 0, 4 * PG), 0);
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(probe_read(p + i * PG, NULL), SIGSEGV);
	ASSERT_EQ(to_shared(fd, 0, 4 * PG), 0);
	ASSERT_EQ(pages_match(p, 0, 4, 20), 4);
	ASSERT_EQ(munmap(anon, PG), 0);

	/* A length is rounded up to whole pages, as munmap(2) does. */
	ASSERT_EQ(gmem_munmap(p, 1), 0);
	ASSERT_TRUE(unmapped(p));
	ASSERT_EQ(pages_match(p, 1, 4, 20), 3);
	ASSERT_EQ(gmem_munmap(p, PG), -EINVAL);		/* gone already */
	unmap(p + PG, 3 * PG);
	ASSERT_EQ(gmem_munmap(p, 4 * PG), -EINVAL);	/* twice */
	close_file(&e, fd);
	env_free(&e);
}

TEST(forked_child_reads_and_writes_shared_pages_and_gets_sigbus_on_private_ones)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 3 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *p, *ro, v = 0;

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 4 * PG, RW);		/* page 3 is past the end */
	ro = map(fd, 0, 3 * PG, PROT_READ);
	fill(p, PG, 100);
	fill(p + PG, PG, 101);
	ASSERT_EQ(to_private(fd, PG, PG), 0);

	/* The kernel's rule: an inherited mapping keeps the shared pages. */
	ASSERT_EQ(run_in_child(child_read, p), 0);			/* shared */
	ASSERT_EQ(run_in_child(child_read, p + 100), 0);
	ASSERT_EQ(run_in_child(child_read, ro), 0);
	ASSERT_EQ(run_in_child(child_read, p + 2 * PG), 0);		/* shared hole */
	ASSERT_EQ(run_in_child(child_write, p + 5), 0);
	ASSERT_EQ(run_in_child(child_write_plain, ro), SIGSEGV);	/* read-only */
	/* Private pages stay fenced, and fault with SIGBUS as in the parent. */
	ASSERT_EQ(run_in_child(child_read, p + PG), SIGBUS);		/* private */
	ASSERT_EQ(run_in_child(child_write, p + PG + 5), SIGBUS);
	ASSERT_EQ(run_in_child(child_read, ro + PG), SIGBUS);
	ASSERT_EQ(run_in_child(child_read, p + 3 * PG), SIGBUS);	/* past the end */

	/* The child's write is the parent's; the private page is untouched. */
	ASSERT_EQ(p[5], 0xee);
	p[5] = pattern_byte(5, 100);
	ASSERT_EQ(mismatch(p, PG, 100), -1);
	ASSERT_EQ(mismatch(frame_of(&e, fd, PG), PG, 101), -1);
	ASSERT_EQ(probe_read(p + 2 * PG, &v), 0);
	ASSERT_EQ(bus_read(p + PG, &v), SIGBUS);
	ASSERT_EQ(probe_read(p + 3 * PG, &v), SIGBUS);
	/* And follows conversions after the fork. */
	ASSERT_EQ(to_shared(fd, PG, PG), 0);
	ASSERT_EQ(mismatch(p + PG, PG, 101), -1);
	unmap(p, 4 * PG);
	unmap(ro, 3 * PG);
	close_file(&e, fd);
	env_free(&e);
}

/*
 * Fork a child that waits (bounded) on a pipe, then convert [@off, @off+PG)
 * to @attr in the parent, let the child read page @off of mapping @p, and
 * return the signal that killed it (0: it read, -1: it never got the token).
 */
static int child_reads_after_conversion(int fd, uint8_t *p, uint64_t off,
					uint64_t attr)
{
	int pipefd[2], status = 0, conv;
	uint8_t token = 1;
	ssize_t wr;
	pid_t pid;

	ASSERT_EQ(pipe(pipefd), 0);
	pid = fork();
	if (pid == 0) {
		struct pollfd pfd = { .fd = pipefd[0], .events = POLLIN };

		int n;

		close(pipefd[1]);
		/*
		 * Bounded wait: never hang if the parent fails. The parent's
		 * conversion signals this child (the shootdown), and poll(2) is
		 * never restarted: EINTR means "again".
		 */
		while ((n = poll(&pfd, 1, 30000)) < 0 && errno == EINTR)
			;
		if (n != 1 || read(pipefd[0], &token, 1) != 1)
			_exit(2);
		touch_or_die(p + off + 10, 0);
		_exit(0);
	}
	close(pipefd[0]);
	if (pid < 0)
		close(pipefd[1]);
	ASSERT_GE(pid, 0);
	conv = gmem_set_attributes(fd, off, PG, attr, 0, NULL);
	wr = write(pipefd[1], &token, 1);
	close(pipefd[1]);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_EQ(conv, 0);
	ASSERT_EQ(wr, 1);
	if (WIFSIGNALED(status))
		return WTERMSIG(status);
	return WEXITSTATUS(status) == 0 ? 0 : -1;
}

TEST(mapping_in_forked_child_loses_access_on_to_private)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 2 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *p;

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 2 * PG, RW);
	fill(p, PG, 110);
	/* The conversion reached the child's page tables before it returned. */
	ASSERT_EQ(child_reads_after_conversion(fd, p, 0, GMEM_ATTR_PRIVATE), SIGBUS);

	/* The parent is fenced too, and gets the content back on to-shared. */
	ASSERT_EQ(bus_read(p + 10, NULL), SIGBUS);
	ASSERT_EQ(to_shared(fd, 0, PG), 0);
	ASSERT_EQ(mismatch(p, PG, 110), -1);
	unmap(p, 2 * PG);
	close_file(&e, fd);
	env_free(&e);
}

TEST(mapping_in_forked_child_regains_access_on_to_shared)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 2 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *p;

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 2 * PG, RW);
	fill(p + PG, PG, 111);
	ASSERT_EQ(to_private(fd, PG, PG), 0);
	/* The child had it fenced since the fork; the conversion opens it there too. */
	ASSERT_EQ(child_reads_after_conversion(fd, p, PG, 0), 0);
	ASSERT_EQ(mismatch(p + PG, PG, 111), -1);	/* and so can the parent */
	unmap(p, 2 * PG);
	close_file(&e, fd);
	env_free(&e);
}

TEST(frames_touched_through_a_mapping_read_zero_for_the_next_file)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint64_t pfn0, pfn;
	uint8_t *p, *d;

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 4 * PG, RW);
	ASSERT_EQ(gmem_folio_info(fd, 0, &pfn0, NULL, NULL), 0);
	fill(p, 4 * PG, 120);			/* never reported to gmem */
	ASSERT_EQ(gmem_close(fd), 0);
	unmap(p, 4 * PG);

	/* The next file reuses the window: every byte reads zero, both views. */
	fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_folio_info(fd, 0, &pfn, NULL, NULL), 0);
	ASSERT_EQ(pfn, pfn0);
	d = gmem_pool_frame(e.pool, pfn);
	ASSERT_TRUE(d);
	for (size_t i = 0; i < 4 * PG; i++)
		ASSERT_EQ(d[i], 0);
	p = map(fd, 0, 4 * PG, PROT_READ);
	for (size_t i = 0; i < 4 * PG; i++)
		ASSERT_EQ(p[i], 0);
	unmap(p, 4 * PG);
	close_file(&e, fd);
	env_free(&e);
}

/* ------------------------------------------------------------- MAP_FIXED */

TEST(mmap_fixed_maps_at_the_address_inside_a_reserved_region_and_fences_private_pages)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *r = reserve(8 * PG), *p = r + 2 * PG, v = 0x77;
	int h;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(map_fixed(fd, 0, 4 * PG, p), 0);
	fill_pages(p, 4, 30);
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(mismatch(frame_of(&e, fd, i * PG), PG, (uint8_t)(30 + i)), -1);
	/* The rest of the reservation is as it was. */
	ASSERT_EQ(probe_read(r + PG, &v), SIGSEGV);
	ASSERT_EQ(probe_read(r + 6 * PG, &v), SIGSEGV);
	ASSERT_TRUE(!unmapped(r + 6 * PG));
	ASSERT_EQ(find(p + PG + 5, &h), PG + 5);
	ASSERT_EQ(h, fd);
	ASSERT_EQ(find(r + PG, NULL), -1);
	ASSERT_EQ(find(r + 6 * PG, NULL), -1);

	/* Conversions reach the mapping at its fixed address. */
	ASSERT_EQ(to_private(fd, PG, 2 * PG), 0);
	ASSERT_EQ(probe_read(p + PG, &v), SIGSEGV);
	ASSERT_EQ(probe_write(p + 2 * PG + 4095, 0), SIGSEGV);
	ASSERT_EQ(v, 0x77);
	ASSERT_EQ(pages_match(p, 0, 1, 30), 1);
	ASSERT_EQ(pages_match(p, 3, 4, 30), 1);
	ASSERT_EQ(to_shared(fd, PG, 2 * PG), 0);
	ASSERT_EQ(pages_match(p, 0, 4, 30), 4);

	unmap(p, 4 * PG);
	ASSERT_TRUE(unmapped(p));
	ASSERT_EQ(munmap(r, 8 * PG), 0);
	close_file(&e, fd);
	env_free(&e);
}

TEST(mmap_fixed_over_private_pages_never_shows_them_and_may_extend_past_the_end)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 3 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *r, v = 0x77;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, 3 * PG), 0);
	for (int i = 0; i < 3; i++)
		fill(frame_of(&e, fd, i * PG), PG, (uint8_t)(40 + i));
	ASSERT_EQ(to_private(fd, PG, PG), 0);

	/* Over ordinary readable memory: it is replaced, page 1 fenced at once. */
	r = mmap(NULL, 5 * PG, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(r != MAP_FAILED);
	memset(r, 0xab, 5 * PG);
	ASSERT_EQ(map_fixed(fd, 0, 5 * PG, r), 0);
	ASSERT_EQ(pages_match(r, 0, 1, 40), 1);
	ASSERT_EQ(probe_read(r + PG, &v), SIGSEGV);
	ASSERT_EQ(probe_read(r + 2 * PG - 1, &v), SIGSEGV);
	ASSERT_EQ(v, 0x77);
	ASSERT_EQ(pages_match(r, 2, 3, 40), 1);
	ASSERT_EQ(probe_read(r + 3 * PG, &v), SIGBUS);		/* past the end */
	ASSERT_EQ(probe_read(r + 5 * PG - 1, &v), SIGBUS);
	ASSERT_EQ(find(r + 4 * PG, NULL), 4 * PG);
	ASSERT_EQ(to_shared(fd, PG, PG), 0);
	ASSERT_EQ(pages_match(r, 0, 3, 40), 3);
	unmap(r, 5 * PG);
	close_file(&e, fd);
	env_free(&e);
}

TEST(mmap_fixed_refuses_bad_addresses_and_changes_nothing)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	int huge = gmem_create(e.vm, 2 * MiB, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED |
			       GMEM_FLAG_HUGE_2M);
	uint8_t *r = reserve(6 * MiB), *at;
	void *addr;
	long before;

	ASSERT_GE(fd, 0);
	ASSERT_GE(huge, 0);
	at = (uint8_t *)(((uintptr_t)r + 2 * MiB - 1) & ~(uintptr_t)(2 * MiB - 1));
	before = count_process_mappings();
	addr = NULL;
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, MAP_SHARED | MAP_FIXED, &addr), -EINVAL);
	addr = at + 1;
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, MAP_SHARED | MAP_FIXED, &addr), -EINVAL);
	addr = at + PG / 2;
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, MAP_SHARED | MAP_FIXED, &addr), -EINVAL);
	addr = (void *)(UINTPTR_MAX & ~(uintptr_t)(PG - 1));
	ASSERT_EQ(gmem_mmap(fd, 0, 2 * PG, RW, MAP_SHARED | MAP_FIXED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, MAP_SHARED | MAP_FIXED, NULL), -EINVAL);
	/* A huge file's mapping starts on a folio boundary. */
	ASSERT_EQ(map_fixed(huge, 0, 2 * MiB, at + PG), -EINVAL);
	ASSERT_EQ(map_fixed(huge, 0, 2 * MiB, at + MiB), -EINVAL);
	ASSERT_EQ(count_process_mappings(), before);
	ASSERT_EQ(probe_read(at, NULL), SIGSEGV);
	ASSERT_EQ(find(at, NULL), -1);

	ASSERT_EQ(map_fixed(huge, 0, 2 * MiB, at), 0);
	at[5] = 9;
	ASSERT_EQ(gmem_folio_info(huge, 0, NULL, NULL, NULL), 1);
	ASSERT_EQ(to_private(huge, 7 * PG, PG), 0);
	ASSERT_EQ(probe_read(at + 7 * PG, NULL), SIGSEGV);
	ASSERT_EQ(probe_read(at + 8 * PG, NULL), 0);
	/* 4 KiB pieces of a huge mapping unmap like any other. */
	ASSERT_EQ(gmem_munmap(at + 100 * PG, PG), 0);
	ASSERT_TRUE(unmapped(at + 100 * PG));
	ASSERT_EQ(to_private(huge, 0, 2 * MiB), 0);
	ASSERT_EQ(probe_read(at + 99 * PG, NULL), SIGSEGV);
	ASSERT_EQ(probe_read(at + 101 * PG, NULL), SIGSEGV);
	ASSERT_TRUE(unmapped(at + 100 * PG));
	ASSERT_EQ(to_shared(huge, 0, 2 * MiB), 0);
	ASSERT_EQ(at[5], 9);
	ASSERT_EQ(gmem_munmap(at, 2 * MiB), 0);
	ASSERT_EQ(munmap(r, 6 * MiB), 0);
	ASSERT_EQ(gmem_close(huge), 0);
	close_file(&e, fd);
	env_free(&e);
}

/*
 * MAP_FIXED over the middle of another gmem mapping takes that part out of
 * the other mapping's record: its conversions no longer touch it, even
 * once something else entirely is mapped there.
 */
TEST(mmap_fixed_over_part_of_a_gmem_mapping_drops_that_part_from_its_record)
{
	struct env e = env_new("sw");
	int a = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	int b = gmem_create(e.vm, 2 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	struct gmem_pool_stats st;
	uint8_t *p, *anon, v = 0x77;
	int h;

	ASSERT_GE(a, 0);
	ASSERT_GE(b, 0);
	p = map(a, 0, 4 * PG, RW);
	fill_pages(p, 4, 50);
	ASSERT_EQ(map_fixed(b, 0, 2 * PG, p + PG), 0);
	fill_pages(p + PG, 2, 60);
	ASSERT_EQ(mismatch(frame_of(&e, b, PG), PG, 61), -1);
	ASSERT_EQ(find(p, &h), 0);
	ASSERT_EQ(h, a);
	ASSERT_EQ(find(p + PG + 3, &h), 3);
	ASSERT_EQ(h, b);
	ASSERT_EQ(find(p + 3 * PG, &h), 3 * PG);
	ASSERT_EQ(h, a);

	/* a's conversion fences a's two pieces only. */
	ASSERT_EQ(to_private(a, 0, 4 * PG), 0);
	ASSERT_EQ(probe_read(p, &v), SIGSEGV);
	ASSERT_EQ(probe_read(p + 3 * PG, &v), SIGSEGV);
	ASSERT_EQ(v, 0x77);
	ASSERT_EQ(pages_match(p + PG, 0, 2, 60), 2);
	ASSERT_EQ(to_shared(a, 0, 4 * PG), 0);
	ASSERT_EQ(pages_match(p, 0, 1, 50), 1);
	ASSERT_EQ(pages_match(p, 3, 4, 50), 1);
	/* The bytes a's pages 1 and 2 held are still there, behind b. */
	ASSERT_EQ(mismatch(frame_of(&e, a, PG), PG, 51), -1);

	/* b goes; plain anonymous memory takes its place. */
	unmap(p + PG, 2 * PG);
	anon = mmap(p + PG, 2 * PG, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
		    -1, 0);
	ASSERT_TRUE(anon == p + PG);
	memset(anon, 0x5c, 2 * PG);
	ASSERT_EQ(find(anon, NULL), -1);
	ASSERT_EQ(to_private(a, 0, 4 * PG), 0);
	ASSERT_EQ(to_private(b, 0, 2 * PG), 0);
	ASSERT_EQ(probe_read(anon, &v), 0);
	ASSERT_EQ(v, 0x5c);
	ASSERT_EQ(probe_write(anon + 2 * PG - 1, 1), 0);
	ASSERT_EQ(probe_read(p, NULL), SIGSEGV);
	ASSERT_EQ(probe_read(p + 3 * PG, NULL), SIGSEGV);

	/* b is released with its last mapping; a's pieces around anon go in one call. */
	ASSERT_EQ(gmem_close(b), 0);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 1);
	ASSERT_EQ(gmem_munmap(p, 4 * PG), 0);
	ASSERT_TRUE(unmapped(p));
	ASSERT_TRUE(unmapped(p + 3 * PG));
	ASSERT_EQ(probe_read(anon, &v), 0);	/* not gmem: left alone */
	ASSERT_EQ(munmap(anon, 2 * PG), 0);
	close_file(&e, a);
	env_free(&e);
}

TEST(mmap_fixed_over_its_own_file_replaces_the_old_part)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *p;

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 4 * PG, RW);
	fill_pages(p, 4, 70);
	/* Pages 2 and 3 of the file, again, over the mapping's pages 0 and 1. */
	ASSERT_EQ(map_fixed(fd, 2 * PG, 2 * PG, p), 0);
	ASSERT_EQ(mismatch(p, PG, 72), -1);
	ASSERT_EQ(mismatch(p + PG, PG, 73), -1);
	ASSERT_EQ(find(p, NULL), 2 * PG);
	ASSERT_EQ(find(p + 2 * PG, NULL), 2 * PG);
	ASSERT_EQ(to_private(fd, 0, PG), 0);	/* no longer mapped anywhere */
	ASSERT_EQ(pages_match(p, 1, 2, 72), 1);
	ASSERT_EQ(to_private(fd, 2 * PG, PG), 0);	/* mapped twice now */
	ASSERT_EQ(probe_read(p, NULL), SIGSEGV);
	ASSERT_EQ(probe_read(p + 2 * PG, NULL), SIGSEGV);
	ASSERT_EQ(mismatch(p + 3 * PG, PG, 73), -1);
	ASSERT_EQ(gmem_munmap(p, 4 * PG), 0);
	close_file(&e, fd);
	env_free(&e);
}

/* ------------------------------------------------------- partial munmap */

TEST(munmap_of_head_tail_and_middle_leaves_records_that_fence_exactly_the_rest)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 8 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	struct gmem_pool_stats st;
	uint8_t *p, *anon;
	int h;

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 8 * PG, RW);
	fill_pages(p, 8, 80);

	ASSERT_EQ(gmem_munmap(p, PG), 0);			/* head */
	ASSERT_EQ(gmem_munmap(p + 7 * PG, PG), 0);		/* tail */
	ASSERT_EQ(gmem_munmap(p + 3 * PG, 2 * PG), 0);	/* middle */
	/* Left: pages 1-2 and 5-6, each at its own file offset. */
	for (int i = 0; i < 8; i++) {
		bool kept = i == 1 || i == 2 || i == 5 || i == 6;

		ASSERT_EQ(unmapped(p + i * PG), !kept);
		ASSERT_EQ(find(p + i * PG + 9, &h), kept ? i * (long long)PG + 9 : -1);
		if (kept)
			ASSERT_EQ(h, fd);
	}
	ASSERT_EQ(pages_match(p, 1, 3, 80), 2);
	ASSERT_EQ(pages_match(p, 5, 7, 80), 2);

	/* Something else in the hole: conversions must not fence it. */
	anon = mmap(p + 3 * PG, 2 * PG, RW,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	ASSERT_TRUE(anon == p + 3 * PG);
	anon[0] = 1;
	ASSERT_EQ(to_private(fd, 0, 8 * PG), 0);
	for (int i = 1; i < 7; i++)
		ASSERT_EQ(probe_read(p + i * PG, NULL), i == 3 || i == 4 ? 0 : SIGSEGV);
	ASSERT_TRUE(unmapped(p));
	ASSERT_TRUE(unmapped(p + 7 * PG));
	ASSERT_EQ(to_shared(fd, 0, 8 * PG), 0);
	ASSERT_EQ(pages_match(p, 1, 3, 80), 2);
	ASSERT_EQ(pages_match(p, 5, 7, 80), 2);
	/* Part of each piece: exactly those pages. */
	ASSERT_EQ(to_private(fd, 2 * PG, 4 * PG), 0);
	ASSERT_EQ(pages_match(p, 1, 2, 80), 1);
	ASSERT_EQ(probe_read(p + 2 * PG, NULL), SIGSEGV);
	ASSERT_EQ(probe_read(p + 5 * PG, NULL), SIGSEGV);
	ASSERT_EQ(pages_match(p, 6, 7, 80), 1);
	ASSERT_EQ(anon[0], 1);
	ASSERT_EQ(to_shared(fd, 2 * PG, 4 * PG), 0);
	ASSERT_EQ(munmap(anon, 2 * PG), 0);

	/* The file outlives its handle until the last piece goes. */
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(find(p + PG, &h), PG);
	ASSERT_EQ(h, -1);
	unmap(p + PG, 2 * PG);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 1);
	ASSERT_EQ(pages_match(p, 5, 7, 80), 2);
	unmap(p + 5 * PG, PG);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 1);
	unmap(p + 6 * PG, PG);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 0);
	ASSERT_EQ(st.frames_in_use, 0);
	ASSERT_EQ(st.frames_reserved, 0);
	env_free(&e);
}

TEST(munmap_over_two_mappings_and_a_gap_unmaps_both_parts_and_leaves_the_gap)
{
	struct env e = env_new("snp");
	int a = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	int b = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *r = reserve(10 * PG), *gap = r + 5 * PG;
	struct gmem_pool_stats st;
	int h;

	ASSERT_GE(a, 0);
	ASSERT_GE(b, 0);
	ASSERT_EQ(map_fixed(a, 0, 4 * PG, r + PG), 0);		/* r+1 .. r+5 */
	ASSERT_EQ(map_fixed(b, 0, 4 * PG, r + 6 * PG), 0);	/* r+6 .. r+10 */
	ASSERT_TRUE(mmap(gap, PG, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == gap);
	gap[0] = 0x3c;
	fill_pages(r + PG, 4, 90);
	fill_pages(r + 6 * PG, 4, 100);

	/* a's pages 2-3, the gap, b's pages 0-1. */
	ASSERT_EQ(gmem_munmap(r + 3 * PG, 5 * PG), 0);
	ASSERT_EQ(pages_match(r + PG, 0, 2, 90), 2);
	ASSERT_TRUE(unmapped(r + 3 * PG));
	ASSERT_TRUE(unmapped(r + 4 * PG));
	ASSERT_EQ(gap[0], 0x3c);
	ASSERT_TRUE(unmapped(r + 6 * PG));
	ASSERT_TRUE(unmapped(r + 7 * PG));
	ASSERT_EQ(pages_match(r + 6 * PG, 2, 4, 100), 2);
	ASSERT_EQ(find(r + 2 * PG, &h), PG);
	ASSERT_EQ(h, a);
	ASSERT_EQ(find(r + 8 * PG, &h), 2 * PG);
	ASSERT_EQ(h, b);
	ASSERT_EQ(find(r + 3 * PG, NULL), -1);
	ASSERT_EQ(find(gap, NULL), -1);

	/* Each file's conversion fences its piece and nothing else. */
	ASSERT_EQ(to_private(a, 0, 4 * PG), 0);
	ASSERT_EQ(probe_read(r + PG, NULL), SIGSEGV);
	ASSERT_EQ(probe_read(r + 2 * PG, NULL), SIGSEGV);
	ASSERT_EQ(pages_match(r + 6 * PG, 2, 4, 100), 2);
	ASSERT_EQ(to_private(b, 0, 4 * PG), 0);
	ASSERT_EQ(probe_read(r + 8 * PG, NULL), SIGSEGV);
	ASSERT_EQ(probe_read(r + 9 * PG, NULL), SIGSEGV);
	ASSERT_EQ(probe_write(gap, 1), 0);

	/* The last pieces go together; both files are released. */
	ASSERT_EQ(gmem_close(a), 0);
	ASSERT_EQ(gmem_close(b), 0);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 2);
	ASSERT_EQ(gmem_munmap(r, 10 * PG), 0);
	ASSERT_EQ(gmem_pool_stats(e.pool, &st), 0);
	ASSERT_EQ(st.files, 0);
	ASSERT_EQ(st.frames_in_use, 0);
	ASSERT_EQ(st.frames_reserved, 0);
	ASSERT_EQ(probe_read(gap, NULL), 0);
	ASSERT_EQ(gmem_munmap(r, 10 * PG), -EINVAL);
	ASSERT_EQ(munmap(r, 10 * PG), 0);
	env_free(&e);
}

/* The part of a mapping past the end of the file cuts like the rest. */
TEST(munmap_around_the_end_of_the_file_keeps_sigbus_and_fences_right)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 2 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *p, *q;

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 6 * PG, RW);		/* pages 2-5 past the end */
	q = map(fd, 0, 6 * PG, RW);
	fill_pages(p, 2, 110);

	/* p: only past-the-end pages left, at offsets past the end. */
	ASSERT_EQ(gmem_munmap(p, 3 * PG), 0);
	ASSERT_EQ(find(p + 3 * PG, NULL), 3 * PG);
	ASSERT_EQ(find(p + 5 * PG + 4095, NULL), 5 * PG + 4095);
	ASSERT_EQ(probe_read(p + 3 * PG, NULL), SIGBUS);
	ASSERT_EQ(probe_read(p + 5 * PG, NULL), SIGBUS);
	ASSERT_EQ(gmem_munmap(p + 4 * PG, PG), 0);	/* a middle past the end */
	ASSERT_EQ(probe_read(p + 3 * PG, NULL), SIGBUS);
	ASSERT_EQ(probe_read(p + 5 * PG, NULL), SIGBUS);
	ASSERT_TRUE(unmapped(p + 4 * PG));

	/* q: cut in the middle across the end: [0, 1) and [3, 6) stay. */
	ASSERT_EQ(gmem_munmap(q + PG, 2 * PG), 0);
	ASSERT_EQ(to_private(fd, 0, 2 * PG), 0);
	ASSERT_EQ(probe_read(q, NULL), SIGSEGV);
	ASSERT_EQ(probe_read(q + 3 * PG, NULL), SIGBUS);
	ASSERT_EQ(to_shared(fd, 0, 2 * PG), 0);
	ASSERT_EQ(pages_match(q, 0, 1, 110), 1);
	ASSERT_EQ(probe_read(q + 3 * PG, NULL), SIGBUS);

	ASSERT_EQ(gmem_munmap(p, 6 * PG), 0);
	ASSERT_EQ(gmem_munmap(q, 6 * PG), 0);
	close_file(&e, fd);
	env_free(&e);
}

TEST(mapping_find_answers_for_inside_outside_and_null_outputs)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	static uint8_t not_gmem[PG] __attribute__((aligned(4096)));
	uint64_t off = 0;
	uint8_t *p;
	int h = 0;

	ASSERT_GE(fd, 0);
	p = map(fd, PG, 3 * PG, RW);
	ASSERT_EQ(gmem_mapping_find(p, NULL, NULL), 1);
	ASSERT_EQ(gmem_mapping_find(p + 3 * PG - 1, &h, &off), 1);
	ASSERT_EQ(h, fd);
	ASSERT_EQ(off, 4 * PG - 1);
	ASSERT_EQ(gmem_mapping_find(p + 3 * PG, &h, &off), 0);
	ASSERT_EQ(gmem_mapping_find(p - 1, NULL, NULL), 0);
	ASSERT_EQ(gmem_mapping_find(NULL, &h, &off), 0);
	ASSERT_EQ(gmem_mapping_find(not_gmem, &h, &off), 0);
	ASSERT_EQ(gmem_mapping_find(&h, &h, &off), 0);
	ASSERT_EQ(h, fd);	/* untouched on a miss */
	ASSERT_EQ(off, 4 * PG - 1);
	unmap(p + PG, PG);
	ASSERT_EQ(find(p + PG, NULL), -1);
	ASSERT_EQ(find(p, NULL), PG);
	ASSERT_EQ(find(p + 2 * PG, NULL), 3 * PG);
	unmap(p, 3 * PG);
	ASSERT_EQ(find(p, NULL), -1);
	ASSERT_EQ(find(p + 2 * PG, NULL), -1);
	close_file(&e, fd);
	env_free(&e);
}

/*
 * Conversions run flat out while mappings are cut to pieces, replaced with
 * MAP_FIXED and unmapped: no conversion ever fails (a fence of an address
 * no longer mapped would), and memory put where a piece was is never fenced.
 */
struct churn {
	int fd;
	atomic_bool stop;
	atomic_int failures;
	atomic_uint rounds;
};

static void *convert_flat_out(void *arg)
{
	struct churn *c = arg;

	for (unsigned int i = 0; !atomic_load(&c->stop); i++) {
		if (gmem_set_attributes(c->fd, (i % 7) * PG, 2 * PG,
					i & 1 ? GMEM_ATTR_PRIVATE : 0, 0, NULL))
			atomic_fetch_add(&c->failures, 1);
		atomic_fetch_add(&c->rounds, 1);
	}
	return NULL;
}

TEST(conversions_racing_partial_munmaps_and_map_fixed_never_fence_a_lost_address)
{
	struct env e = env_new("sw");
	struct churn c = {
		.fd = gmem_create(e.vm, 8 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED),
	};
	static const int order[8] = { 3, 0, 7, 5, 1, 6, 2, 4 };
	unsigned int rounds;
	int failures;
	pthread_t t;

	ASSERT_GE(c.fd, 0);
	ASSERT_EQ(pthread_create(&t, NULL, convert_flat_out, &c), 0);
	for (int round = 0; round < 200; round++) {
		uint8_t *p = map(c.fd, 0, 8 * PG, RW);

		/* A piece of the file again over pages 2-3, by MAP_FIXED. */
		ASSERT_EQ(map_fixed(c.fd, 6 * PG, 2 * PG, p + 2 * PG), 0);
		for (int k = 0; k < 8; k++) {
			int i = (order[k] + round) % 8;
			uint8_t *anon;

			ASSERT_EQ(gmem_munmap(p + i * PG, PG), 0);
			anon = mmap(p + i * PG, PG, RW, MAP_PRIVATE | MAP_ANONYMOUS |
				    MAP_FIXED_NOREPLACE, -1, 0);
			ASSERT_TRUE(anon == p + i * PG);
			ASSERT_EQ(probe_write(anon, 1), 0);
		}
		for (int i = 0; i < 8; i++)
			ASSERT_EQ(probe_write(p + i * PG + 9, 2), 0);
		ASSERT_EQ(gmem_munmap(p, 8 * PG), -EINVAL);
		ASSERT_EQ(munmap(p, 8 * PG), 0);
	}
	atomic_store(&c.stop, true);
	pthread_join(t, NULL);
	failures = atomic_load(&c.failures);
	rounds = atomic_load(&c.rounds);
	ASSERT_EQ(failures, 0);
	ASSERT_GT(rounds, 0);
	close_file(&e, c.fd);
	env_free(&e);
}
