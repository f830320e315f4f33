// SPDX-License-Identifier: MIT
/*
 * Host mappings: gmem_mmap's errors, bytes shared with the direct map and the
 * guest, first touch of a hole, SIGBUS on private pages and past the end,
 * frames reused by the next file.
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

#include "mapping_helpers.h"

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
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA, 2 * PG, fd, 0), 0);
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
	uint8_t *p, buf[PG], v = 0x77;

	ASSERT_GE(fd, 0);
	p = map(fd, 0, 2 * PG, RW);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA, 2 * PG, fd, 0), 0);
	fill(buf, PG, 30);
	ASSERT_EQ(gmem_vm_access(e.vm, GPA, buf, PG,
				 GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE, &ex), 0);
	/* The guest's data is in the private frame. */
	ASSERT_EQ(mismatch(frame_bytes_of(&e, fd, 0), PG, 30), -1);

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
	ASSERT_EQ(mismatch(frame_bytes_of(&e, fd, 0), PG, 30), -1);
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
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA, 2 * PG, fd, 0), 0);
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
