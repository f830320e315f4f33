// SPDX-License-Identifier: MIT
/*
 * Host mappings under conversion and punch: every mapping loses a page going
 * private and gets its content back going shared, a failed conversion
 * changes none, a punch reads zero; a mapping keeps its file alive.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mapping_helpers.h"

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
	ASSERT_EQ(mismatch(frame_bytes_of(&e, fd, 2 * PG), PG, 52), -1);

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
	uint8_t *p, v = 0x77;

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
	ASSERT_EQ(mismatch(frame_bytes_of(&e, fd, PG), PG, 61), -1);

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

/*
 * A locked mapping (mlock, or mlockall as a VMM with its memory locked
 * does): the kernel installs no guard in a locked VMA, so the conversion
 * unlocks the pages it fences and locks them again on fault. Converting
 * works, the page is fenced, it comes back, and the mapping stays locked.
 */
TEST(conversion_fences_a_page_of_a_locked_mapping)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	uint8_t *a, v = 0x77;
	long before;

	ASSERT_GE(fd, 0);
	a = map(fd, 0, 4 * PG, RW);
	for (int i = 0; i < 4; i++)
		fill(a + i * PG, PG, (uint8_t)(30 + i));
	before = proc_status_kib("VmLck");
	/* The system calls: sanitizers make mlock and munlock no-ops. */
	ASSERT_EQ(syscall(SYS_mlock, a, 4 * PG), 0);
	ASSERT_EQ(proc_status_kib("VmLck"), before + 16);
	ASSERT_EQ(to_private(fd, PG, 2 * PG), 0);
	ASSERT_EQ(probe_read(a + PG, &v), SIGSEGV);
	ASSERT_EQ(probe_write(a + 2 * PG + 9, 0), SIGSEGV);
	ASSERT_EQ(probe_page(a, 30), 0);
	ASSERT_EQ(probe_page(a + 3 * PG, 33), 0);
	ASSERT_EQ(proc_status_kib("VmLck"), before + 16);
	ASSERT_EQ(to_shared(fd, PG, 2 * PG), 0);
	ASSERT_EQ(mismatch(a + PG, PG, 31), -1);
	ASSERT_EQ(mismatch(a + 2 * PG, PG, 32), -1);
	ASSERT_EQ(proc_status_kib("VmLck"), before + 16);
	ASSERT_EQ(syscall(SYS_munlock, a, 4 * PG), 0);
	ASSERT_EQ(proc_status_kib("VmLck"), before);
	unmap(a, 4 * PG);
	close_file(&e, fd);
	env_free(&e);
}

/* In a forked child: exit with the failing line instead of ASSERT's jump. */
#define CHILD_CHECK(x) do { if (!(x)) _exit(__LINE__ % 200 + 10); } while (0)

static void locked_future_child(void)
{
	long before = proc_status_kib("VmRSS");
	int pool, vm, fd;
	uint8_t *a;

	CHILD_CHECK(!syscall(SYS_mlockall, MCL_FUTURE));	/* not the sanitizers' no-op */
	pool = gmem_pool_create(8ULL << 30);
	CHILD_CHECK(pool >= 0);
	vm = gmem_vm_create(pool, "sw", 0);
	CHILD_CHECK(vm >= 0);
	fd = gmem_create(vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	CHILD_CHECK(fd >= 0);
	CHILD_CHECK(!gmem_mmap(fd, 0, 4 * PG, RW, MAP_SHARED, (void **)&a));
	memset(a, 7, 4 * PG);
	CHILD_CHECK(!to_private(fd, PG, PG));
	CHILD_CHECK(!to_shared(fd, PG, PG));
	CHILD_CHECK(a[PG] == 7 && a[2 * PG - 1] == 7);
	/* Neither the 8 GiB direct map nor the 16 MiB frame model came in, */
	CHILD_CHECK(proc_status_kib("VmRSS") - before < 8 << 10);
	/* yet both are locked (on fault), as the program asked. */
	CHILD_CHECK(proc_status_kib("VmLck") >= 8 << 20);
	_exit(0);
}

/*
 * A process that locks its future memory (mlockall MCL_FUTURE, as a VMM
 * run with its memory locked does) gets every new mapping locked, and a
 * locked mapping is faulted in whole: gmem's reservations are mapped so
 * that they come in only as touched, and its fences go into the locked
 * host mapping.
 */
TEST(pool_created_after_mlockall_future_is_not_faulted_in)
{
	int status;
	pid_t pid = fork();

	ASSERT_GE(pid, 0);
	if (pid == 0)
		locked_future_child();
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		printf("#   child: %s %d (exit 10 + line %% 200)\n",
		       WIFEXITED(status) ? "exit" : "signal",
		       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
}
