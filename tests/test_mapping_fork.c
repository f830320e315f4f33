// SPDX-License-Identifier: MIT
/* Host mappings a fork child inherited: shared pages stay, conversions reach it. */
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
	ASSERT_EQ(mismatch(frame_bytes_of(&e, fd, PG), PG, 101), -1);
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

/*
 * A mapping marked MADV_DONTFORK (as VMMs mark guest memory) is not the
 * child's: the parent's conversions must leave whatever the child maps
 * there alone. Here mapping a is DONTFORK whole and mapping b in its upper
 * half; the child puts memory of its own at both holes and checks it after
 * the parent converted every page of both to private and back, while b's
 * inherited half still loses its converted page.
 */
TEST(madv_dontfork_mapping_is_not_the_childs)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 << 20, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	int go[2], done[2], status;
	uint8_t *a, *b, token = 0;
	size_t len = 4 << 20;
	pid_t pid;

	ASSERT_GE(fd, 0);
	a = map(fd, 0, len, RW);
	b = map(fd, 0, len, RW);
	fill(a, len, 3);
	ASSERT_EQ(madvise(a, len, MADV_DONTFORK), 0);
	ASSERT_EQ(madvise(b + len / 2, len / 2, MADV_DONTFORK), 0);
	ASSERT_EQ(pipe(go), 0);
	ASSERT_EQ(pipe(done), 0);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct pollfd pfd = { .fd = go[0], .events = POLLIN };
		uint8_t *own_a, *own_b;
		int n;

		alarm(30);
		own_a = mmap(a, len, PROT_READ | PROT_WRITE, MAP_PRIVATE |
			     MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		own_b = mmap(b + len / 2, len / 2, PROT_READ | PROT_WRITE, MAP_PRIVATE |
			     MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (own_a != a || own_b != b + len / 2)
			_exit(3);
		memset(own_a, 0x5a, len);
		memset(own_b, 0x6b, len / 2);
		if (write(done[1], &token, 1) != 1)
			_exit(4);
		while ((n = poll(&pfd, 1, 30000)) < 0 && errno == EINTR)
			;
		if (n != 1 || read(go[0], &token, 1) != 1)
			_exit(5);
		for (size_t i = 0; i < len; i++)
			if (own_a[i] != 0x5a || (i < len / 2 && own_b[i] != 0x6b))
				_exit(6);
		touch_or_die(b + PG, 0);	/* inherited, made private: dies */
		_exit(0);
	}
	ASSERT_EQ(read(done[0], &token, 1), 1);
	ASSERT_EQ(to_private(fd, 0, len), 0);
	ASSERT_EQ(to_shared(fd, 0, len), 0);
	ASSERT_EQ(to_private(fd, PG, PG), 0);
	ASSERT_EQ(write(go[1], &token, 1), 1);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status))
		printf("#   child exited %d\n", WEXITSTATUS(status));
	ASSERT_TRUE(WIFSIGNALED(status));
	ASSERT_EQ(WTERMSIG(status), SIGBUS);
	ASSERT_EQ(to_shared(fd, PG, PG), 0);
	ASSERT_EQ(mismatch(a, len, 3), -1);
	close(go[0]);
	close(go[1]);
	close(done[0]);
	close(done[1]);
	unmap(a, len);
	unmap(b, len);
	close_file(&e, fd);
	env_free(&e);
}
