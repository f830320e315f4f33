/* SPDX-License-Identifier: MIT */
/*
 * What the host-mapping tests share (test_mapping*.c): mapping and
 * converting, byte patterns, SIGBUS probes, forked readers, records.
 */
#ifndef GMEM_TESTS_MAPPING_HELPERS_H
#define GMEM_TESTS_MAPPING_HELPERS_H

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

static inline uint8_t *map(int fd, uint64_t offset, size_t len, int prot)
{
	void *addr = NULL;

	ASSERT_EQ(gmem_mmap(fd, offset, len, prot, MAP_SHARED, &addr), 0);
	ASSERT_TRUE(addr);
	return addr;
}

static inline void unmap(uint8_t *p, size_t len)
{
	ASSERT_EQ(gmem_munmap(p, len), 0);
}

static inline int to_private(int fd, uint64_t offset, uint64_t size)
{
	return gmem_set_attributes(fd, offset, size, GMEM_ATTR_PRIVATE, 0, NULL);
}

static inline int to_shared(int fd, uint64_t offset, uint64_t size)
{
	return gmem_set_attributes(fd, offset, size, 0, 0, NULL);
}

/* Direct-map address of the folio at @offset, which must be present. */
static inline uint8_t *frame_of(struct env *e, int fd, uint64_t offset)
{
	uint64_t pfn = 0;
	uint8_t *p;

	ASSERT_EQ(gmem_folio_info(fd, offset, &pfn, NULL, NULL), 1);
	p = gmem_pool_frame(e->pool, pfn);
	ASSERT_TRUE(p);
	return p;
}

/* The bytes of the folio at @offset, private or not: frame_bytes(). */
static inline const uint8_t *frame_bytes_of(struct env *e, int fd,
					    uint64_t offset)
{
	uint64_t pfn = 0;

	ASSERT_EQ(gmem_folio_info(fd, offset, &pfn, NULL, NULL), 1);
	return frame_bytes(e->pool, pfn);
}

static inline uint8_t pattern_byte(size_t i, uint8_t seed)
{
	return (uint8_t)(seed + i * 31 + (i >> 8));
}

static inline void fill(uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = pattern_byte(i, seed);
}

/* Index of the first byte that differs from the pattern, or -1. */
static inline long long mismatch(const uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != pattern_byte(i, seed))
			return (long long)i;
	return -1;
}

/* Probes four bytes of a page against the pattern: the signal of the first fault, or 0. */
static inline int probe_page(const uint8_t *p, uint8_t seed)
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

static inline void close_file(struct env *e, int fd)
{
	struct gmem_pool_stats st;

	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(gmem_pool_stats(e->pool, &st), 0);
	ASSERT_EQ(st.files, 0);
	ASSERT_EQ(st.frames_in_use, 0);
	ASSERT_EQ(st.frames_reserved, 0);
}

/* Lines of /proc/self/maps, read without allocating. */
static inline long count_process_mappings(void)
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

static inline void bus_handler(int sig, siginfo_t *si, void *uc)
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
static inline int bus_probe(volatile uint8_t *p, uint8_t *out, bool write, uint8_t val)
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

static inline int bus_read(const uint8_t *p, uint8_t *out)
{
	uint8_t dummy;

	return bus_probe((volatile uint8_t *)p, out ? out : &dummy, false, 0);
}

static inline int bus_write(uint8_t *p, uint8_t val)
{
	return bus_probe(p, NULL, true, val);
}

/*
 * In a child: access @p with SIGBUS at its default disposition, so a fault
 * kills it; SIGSEGV stays with gmem's handler, which makes a fault on a
 * private page SIGBUS.
 */
static inline void touch_or_die(volatile uint8_t *p, int write)
{
	signal(SIGBUS, SIG_DFL);
	if (write)
		*p = 0xee;
	else
		(void)*p;
}

static inline void child_read(void *arg)
{
	touch_or_die(arg, 0);
}

static inline void child_write(void *arg)
{
	touch_or_die(arg, 1);
}

/* A write with SIGSEGV at its default too: for faults that are not gmem's. */
static inline void child_write_plain(void *arg)
{
	signal(SIGSEGV, SIG_DFL);
	touch_or_die(arg, 1);
}

/* Page i of @p gets the pattern of seed @seed + i. */
static inline void fill_pages(uint8_t *p, int n, uint8_t seed)
{
	for (int i = 0; i < n; i++)
		fill(p + i * PG, PG, (uint8_t)(seed + i));
}

/* How many of pages [first, end) of @p hold what fill_pages() wrote. */
static inline int pages_match(const uint8_t *p, int first, int end, uint8_t seed)
{
	int n = 0;

	for (int i = first; i < end; i++)
		n += probe_page(p + i * PG, (uint8_t)(seed + i)) == 0 &&
		     mismatch(p + i * PG, PG, (uint8_t)(seed + i)) == -1;
	return n;
}

/* Is nothing at all mapped at page @p (not even a guard)? */
static inline bool unmapped(const void *p)
{
	return msync((void *)p, PG, MS_ASYNC) && errno == ENOMEM;
}

/* An inaccessible anonymous reservation of @len, for MAP_FIXED targets. */
static inline uint8_t *reserve(size_t len)
{
	uint8_t *r = mmap(NULL, len, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	ASSERT_TRUE(r != MAP_FAILED);
	return r;
}

static inline int map_fixed(int fd, uint64_t offset, size_t len, void *at)
{
	void *addr = at;
	int ret = gmem_mmap(fd, offset, len, RW, MAP_SHARED | MAP_FIXED, &addr);

	ASSERT_TRUE(addr == at);	/* an input only */
	return ret;
}

/* gmem_mapping_find at @p: the offset, or -1 if no gmem mapping is there; fd in *@fd. */
static inline long long find(const void *p, int *fd)
{
	uint64_t off = ~0ULL;
	int h = -2, ret = gmem_mapping_find(p, &h, &off);

	ASSERT_TRUE(ret == 0 || ret == 1);
	if (fd)
		*fd = ret ? h : -2;
	return ret ? (long long)off : -1;
}

#endif
