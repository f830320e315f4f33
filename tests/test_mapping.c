// SPDX-License-Identifier: MIT
/* Host mappings: gmem_mmap/gmem_munmap errors, shared bytes, guards on private pages, SIGBUS, fork, lifetime. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
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

/* In a child: access @p with default signal dispositions, so a fault kills it. */
static void touch_or_die(volatile uint8_t *p, int write)
{
	signal(SIGSEGV, SIG_DFL);
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
	/* Only MAP_SHARED: no copy-on-write mapping, no extra flags. */
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, MAP_PRIVATE, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, PG, PROT_READ, MAP_PRIVATE, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, 0, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, MAP_SHARED | MAP_FIXED, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, MAP_SHARED | MAP_ANONYMOUS, &addr), -EINVAL);
	ASSERT_EQ(gmem_mmap(fd, 0, PG, RW, MAP_SHARED | MAP_PRIVATE, &addr), -EINVAL);
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

TEST(private_page_raises_sigsegv_on_read_and_write_and_keeps_its_content)
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

	/* Nothing of it through the mapping: every probe faults, v never changes. */
	for (size_t i = 0; i < PG; i += 512) {
		ASSERT_EQ(probe_read(p + i, &v), SIGSEGV);
		ASSERT_EQ(v, 0x77);
	}
	ASSERT_EQ(probe_read(p + PG - 1, &v), SIGSEGV);
	ASSERT_EQ(v, 0x77);
	/* A host write faults too and does not reach the frame. */
	ASSERT_EQ(probe_write(p + 5, 0xee), SIGSEGV);
	ASSERT_EQ(mismatch(d, PG, 30), -1);
	/* A private hole faults as well. */
	ASSERT_EQ(probe_read(p + PG, &v), SIGSEGV);
	ASSERT_EQ(probe_write(p + PG, 1), SIGSEGV);

	/* A mapping made after the guest wrote is fenced the same way. */
	uint8_t *q = map(fd, 0, 2 * PG, PROT_READ);

	ASSERT_EQ(probe_read(q, &v), SIGSEGV);
	ASSERT_EQ(probe_read(q + PG - 1, &v), SIGSEGV);
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

TEST(munmap_refuses_anything_but_an_exact_gmem_mapping)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	static uint8_t not_gmem[2 * PG] __attribute__((aligned(4096)));
	uint8_t *p, *anon;

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 4 * PG, RW);
	p[0] = 0x42;
	anon = mmap(NULL, PG, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(anon != MAP_FAILED);

	ASSERT_EQ(gmem_munmap(NULL, 0), -EINVAL);
	ASSERT_EQ(gmem_munmap(NULL, PG), -EINVAL);
	ASSERT_EQ(gmem_munmap(not_gmem, PG), -EINVAL);
	ASSERT_EQ(gmem_munmap(anon, PG), -EINVAL);
	ASSERT_EQ(gmem_munmap(p, 0), -EINVAL);
	ASSERT_EQ(gmem_munmap(p, PG), -EINVAL);
	ASSERT_EQ(gmem_munmap(p, 3 * PG), -EINVAL);
	ASSERT_EQ(gmem_munmap(p, 8 * PG), -EINVAL);
	ASSERT_EQ(gmem_munmap(p + PG, 3 * PG), -EINVAL);
	ASSERT_EQ(gmem_munmap(p + 1, 4 * PG), -EINVAL);
	/* The failed calls changed nothing. */
	ASSERT_EQ(probe_write(anon, 1), 0);
	ASSERT_EQ(p[0], 0x42);
	ASSERT_EQ(probe_write(p + 3 * PG, 1), 0);
	ASSERT_EQ(munmap(anon, PG), 0);

	unmap(p, 4 * PG);
	ASSERT_EQ(gmem_munmap(p, 4 * PG), -EINVAL);	/* twice */
	close_file(&e, fd);
	env_free(&e);
}

TEST(forked_child_has_no_access_to_shared_or_private_pages)
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

	ASSERT_EQ(run_in_child(child_read, p), SIGSEGV);		/* shared */
	ASSERT_EQ(run_in_child(child_read, p + 100), SIGSEGV);
	ASSERT_EQ(run_in_child(child_read, ro), SIGSEGV);
	ASSERT_EQ(run_in_child(child_read, p + PG), SIGSEGV);		/* private */
	ASSERT_EQ(run_in_child(child_read, p + 2 * PG), SIGSEGV);	/* shared hole */
	ASSERT_EQ(run_in_child(child_read, p + 3 * PG), SIGSEGV);	/* past the end: guarded too */
	ASSERT_EQ(run_in_child(child_write, p + 5), SIGSEGV);
	ASSERT_EQ(run_in_child(child_write, p + PG + 5), SIGSEGV);

	/* The child's writes reached nothing, and the parent keeps its access. */
	ASSERT_EQ(mismatch(p, PG, 100), -1);
	ASSERT_EQ(mismatch(frame_of(&e, fd, PG), PG, 101), -1);
	ASSERT_EQ(probe_read(p + 2 * PG, &v), 0);
	ASSERT_EQ(probe_read(p + PG, &v), SIGSEGV);
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

		close(pipefd[1]);
		/* Bounded wait: never hang if the parent fails. */
		if (poll(&pfd, 1, 30000) != 1 || read(pipefd[0], &token, 1) != 1)
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
	ASSERT_EQ(child_reads_after_conversion(fd, p, 0, GMEM_ATTR_PRIVATE), SIGSEGV);

	/* The parent is fenced too, and gets the content back on to-shared. */
	ASSERT_EQ(probe_read(p + 10, NULL), SIGSEGV);
	ASSERT_EQ(to_shared(fd, 0, PG), 0);
	ASSERT_EQ(mismatch(p, PG, 110), -1);
	unmap(p, 2 * PG);
	close_file(&e, fd);
	env_free(&e);
}

TEST(mapping_in_forked_child_gains_no_access_on_to_shared)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 2 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *p;

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 2 * PG, RW);
	fill(p + PG, PG, 111);
	ASSERT_EQ(to_private(fd, PG, PG), 0);
	ASSERT_EQ(child_reads_after_conversion(fd, p, PG, 0), SIGSEGV);
	ASSERT_EQ(mismatch(p + PG, PG, 111), -1);	/* the parent can */
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
