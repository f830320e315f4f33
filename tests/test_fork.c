// SPDX-License-Identifier: MIT
/*
 * Processes, as on the kernel: a fork child's calls on its parent's handles
 * fail with EIO; the mappings it inherits keep the shared pages, and a
 * conversion to private in the parent revokes the child's access before it
 * returns (the shootdown); a child that cannot answer makes the conversion
 * fail with EAGAIN, one that exited or exec'd is forgotten.
 *
 * A child here is a small server on two pipes: the parent asks it to read or
 * write a byte at an address and hears back the value or the signal (with
 * si_code and si_addr) the access raised.
 */
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define PG	GMEM_PAGE_SIZE
#define GiB	(1ULL << 30)
#define RW	(PROT_READ | PROT_WRITE)
#define SHARED_FILE	(GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED)

extern int gmem_shootdown_timeout_ms;

/* ------------------------------------------------------ the child server */

struct cmd {
	char op;		/* 'r' read, 'w' write, 'u' gmem_munmap val pages,
				 * 'f' hand over to a grandchild, 'q' quit */
	uint8_t val;
	uintptr_t addr;
};

struct reply {
	int sig;		/* 0, or the signal the access raised */
	int code;
	uintptr_t addr;
	uint8_t val;
};

struct kid {
	pid_t pid;
	int to, from;		/* our ends of the pipes */
};

static sigjmp_buf kid_jmp;
static volatile sig_atomic_t kid_sig, kid_code;
static void *volatile kid_addr;

static void kid_fault(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	kid_sig = sig;
	kid_code = si->si_code;
	kid_addr = si->si_addr;
	siglongjmp(kid_jmp, 1);
}

/*
 * Read all of @len or fail; signals (the shootdown) interrupt reads: retry.
 * Wait in poll(2) first: ThreadSanitizer runs a signal handler at once only
 * in calls it knows to block, and a child must answer while it waits.
 */
static bool read_all(int fd, void *buf, size_t len)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	uint8_t *p = buf;

	while (len) {
		ssize_t n;

		if (poll(&pfd, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static bool write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* The server loop. SIGBUS is the program's; SIGSEGV stays gmem's (inherited). */
static void serve(int in, int out)
{
	struct sigaction sa = { .sa_sigaction = kid_fault, .sa_flags = SA_SIGINFO };
	struct cmd c;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	while (read_all(in, &c, sizeof(c))) {
		struct reply r = { 0 };

		if (c.op == 'q')
			break;
		if (c.op == 'f') {
			/* A grandchild takes over the pipes; we wait for it. */
			pid_t pid = fork();

			if (pid == 0) {
				r.sig = getpid();
				write_all(out, &r, sizeof(r));
				continue;
			}
			close(in);
			close(out);
			while (waitpid(pid, NULL, WNOHANG) == 0)
				poll(NULL, 0, 10);	/* answering meanwhile */
			_exit(0);
		}
		if (c.op == 'u') {
			r.sig = gmem_munmap((void *)c.addr, c.val * PG);
			write_all(out, &r, sizeof(r));
			continue;
		}
		kid_sig = 0;
		if (!sigsetjmp(kid_jmp, 1)) {
			if (c.op == 'w')
				*(volatile uint8_t *)c.addr = c.val;
			else
				r.val = *(volatile uint8_t *)c.addr;
		} else {
			r.sig = kid_sig;
			r.code = kid_code;
			r.addr = (uintptr_t)kid_addr;
		}
		if (!write_all(out, &r, sizeof(r)))
			break;
	}
	_exit(0);
}

static struct kid kid_start(void)
{
	int to[2], from[2];
	struct kid k;

	ASSERT_EQ(pipe(to), 0);
	ASSERT_EQ(pipe(from), 0);
	fflush(stdout);
	k.pid = fork();
	ASSERT_GE(k.pid, 0);
	if (k.pid == 0) {
		close(to[1]);
		close(from[0]);
		serve(to[0], from[1]);
	}
	close(to[0]);
	close(from[1]);
	k.to = to[1];
	k.from = from[0];
	return k;
}

/* Ask the child to access @p; the reply. A child that does not answer in 30 s fails the test. */
static struct reply kid_ask(struct kid *k, char op, const void *p, uint8_t val)
{
	struct cmd c = { .op = op, .val = val, .addr = (uintptr_t)p };
	struct pollfd pfd = { .fd = k->from, .events = POLLIN };
	struct reply r = { .sig = -1 };

	ASSERT_TRUE(write_all(k->to, &c, sizeof(c)));
	ASSERT_EQ(poll(&pfd, 1, 30000), 1);
	ASSERT_TRUE(read_all(k->from, &r, sizeof(r)));
	return r;
}

/* The child read @p: its value, or -(signal). A SIGBUS must be BUS_ADRERR at @p. */
static int kid_read(struct kid *k, const void *p)
{
	struct reply r = kid_ask(k, 'r', p, 0);

	if (r.sig == SIGBUS) {
		ASSERT_EQ(r.code, BUS_ADRERR);
		ASSERT_EQ(r.addr, (uintptr_t)p);
	}
	return r.sig ? -r.sig : r.val;
}

static int kid_write(struct kid *k, void *p, uint8_t val)
{
	struct reply r = kid_ask(k, 'w', p, val);

	return r.sig ? -r.sig : 0;
}

/* Stop the child and reap it; its exit status (0 for a clean quit). */
static int kid_stop(struct kid *k)
{
	struct cmd c = { .op = 'q' };
	int status;

	write_all(k->to, &c, sizeof(c));
	close(k->to);
	close(k->from);
	ASSERT_EQ(waitpid(k->pid, &status, 0), k->pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void kid_kill(struct kid *k)
{
	kill(k->pid, SIGKILL);
	close(k->to);
	close(k->from);
	waitpid(k->pid, NULL, 0);
}

/* ------------------------------------------------------------ fixtures */

struct fx {
	struct env e;
	int fd;
	uint8_t *p;
	size_t len;
};

/* A shared file of @pages pages, mapped, page i filled with 0x10 + i. */
static struct fx fx_new(uint64_t pages)
{
	struct fx f = { .e = env_new("sw") };
	void *addr = NULL;

	f.fd = gmem_create(f.e.vm, pages * PG, SHARED_FILE);
	ASSERT_GE(f.fd, 0);
	f.len = pages * PG;
	ASSERT_EQ(gmem_mmap(f.fd, 0, f.len, RW, MAP_SHARED, &addr), 0);
	f.p = addr;
	for (uint64_t i = 0; i < pages; i++)
		memset(f.p + i * PG, (int)(0x10 + i), PG);
	return f;
}

static void fx_free(struct fx *f)
{
	ASSERT_EQ(gmem_munmap(f->p, f->len), 0);
	ASSERT_EQ(gmem_close(f->fd), 0);
	env_free(&f->e);
}

static int convert(int fd, uint64_t off, uint64_t len, uint64_t attr,
		   uint64_t *err)
{
	return gmem_set_attributes(fd, off, len, attr, 0, err);
}

static uint64_t attr_of(int fd, uint64_t off)
{
	uint64_t a = ~0ULL;

	ASSERT_EQ(gmem_get_attributes(fd, off, &a, NULL), 0);
	return a;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* --------------------------------------------------------------- tests */

struct inherited {
	int pool, vm, fd;
	uint8_t *p;
};

static void child_calls(void *arg)
{
	struct inherited *h = arg;
	uint64_t a, off;
	void *q = NULL;
	int bad = 0, pool, vm, fd, f = 7;

	/* Every call on a handle the parent created: EIO, as KVM answers. */
	bad |= gmem_create(h->vm, PG, 0) != -EIO;
	bad |= gmem_set_attributes(h->fd, 0, PG, GMEM_ATTR_PRIVATE, 0, NULL) != -EIO;
	bad |= gmem_get_attributes(h->fd, 0, &a, NULL) != -EIO;
	bad |= gmem_fallocate(h->fd, GMEM_FALLOC_KEEP_SIZE, 0, PG) != -EIO;
	bad |= gmem_mmap(h->fd, 0, PG, RW, MAP_SHARED, &q) != -EIO;
	bad |= gmem_vm_bind(h->vm, 0, 0, PG, h->fd, 0) != -EIO;
	bad |= gmem_vm_fault(h->vm, 0, 0, NULL, NULL) != -EIO;
	bad |= gmem_vm_translate(h->vm, 0, NULL, NULL, NULL) != -EIO;
	bad |= gmem_pool_stats(h->pool, NULL) != -EIO;
	bad |= gmem_pool_frame(h->pool, 0) != NULL;
	bad |= gmem_close(h->fd) != -EIO;
	bad |= gmem_vm_close(h->vm) != -EIO;
	bad |= gmem_pool_close(h->pool) != -EIO;
	bad |= gmem_size(h->fd) != -EIO;
	/* EIO before the other arguments are looked at. */
	bad |= gmem_vm_fault(h->vm, 0, 0x80, NULL, NULL) != -EIO;
	bad |= gmem_vm_access(h->vm, 0, NULL, 8, 0, NULL) != -EIO;
	bad |= gmem_vm_populate(h->vm, 0, NULL, 0, 0) != -EIO;
	/* A closed handle is still just closed. */
	bad |= gmem_size(9999) != -EBADF;
	if (bad)
		_exit(10);
	/* The inherited mapping is a gmem mapping, of no handle of this process. */
	if (gmem_mapping_find(h->p + 10, &f, &off) != 1 || f != -1 || off != 10)
		_exit(11);
	/* The child's own objects work. */
	pool = gmem_pool_create(GiB);
	vm = gmem_vm_create(pool, "snp", 0);
	fd = gmem_create(vm, 2 * PG, SHARED_FILE);
	if (pool < 0 || vm < 0 || fd < 0 ||
	    gmem_mmap(fd, 0, 2 * PG, RW, MAP_SHARED, &q) ||
	    gmem_set_attributes(fd, 0, PG, GMEM_ATTR_PRIVATE, 0, NULL) ||
	    gmem_munmap(q, 2 * PG) || gmem_close(fd) || gmem_vm_close(vm) ||
	    gmem_pool_close(pool))
		_exit(12);
	/* Unmapping the inherited mapping leaves the parent's file alone. */
	if (gmem_munmap(h->p, PG) || gmem_mapping_find(h->p, NULL, NULL) != 0)
		_exit(13);
	_exit(0);
}

TEST(fork_child_calls_on_inherited_handles_fail_with_eio)
{
	struct fx f = fx_new(2);
	struct inherited h = { f.e.pool, f.e.vm, f.fd, f.p };
	struct gmem_pool_stats st;

	fflush(stdout);
	ASSERT_EQ(run_in_child(child_calls, &h), 0);
	/* The parent's handles and mapping are untouched. */
	ASSERT_EQ(gmem_pool_stats(f.e.pool, &st), 0);
	ASSERT_EQ(st.files, 1);
	ASSERT_EQ(f.p[0], 0x10);
	ASSERT_EQ(convert(f.fd, 0, PG, GMEM_ATTR_PRIVATE, NULL), 0);
	ASSERT_EQ(convert(f.fd, 0, PG, 0, NULL), 0);
	ASSERT_EQ(f.p[0], 0x10);
	fx_free(&f);
}

static void direct_map_fault(int sig)
{
	(void)sig;
	_exit(42);
}

static void child_reads_direct_map(void *arg)
{
	signal(SIGSEGV, direct_map_fault);
	(void)*(volatile uint8_t *)arg;
	_exit(0);
}

TEST(fork_child_does_not_inherit_the_direct_map)
{
	struct fx f = fx_new(1);
	uint64_t pfn;
	uint8_t *d;
	int status;
	pid_t pid;

	ASSERT_EQ(gmem_folio_info(f.fd, 0, &pfn, NULL, NULL), 1);
	d = gmem_pool_frame(f.e.pool, pfn);
	ASSERT_TRUE(d);
	ASSERT_EQ(d[0], 0x10);
	fflush(stdout);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid)
		child_reads_direct_map(d);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 42);	/* it faulted: nothing mapped there */
	fx_free(&f);
}

TEST(fork_child_reads_and_writes_the_shared_pages_it_inherited)
{
	struct fx f = fx_new(3);
	struct kid k;

	ASSERT_EQ(convert(f.fd, PG, PG, GMEM_ATTR_PRIVATE, NULL), 0);
	k = kid_start();
	ASSERT_EQ(kid_read(&k, f.p), 0x10);
	ASSERT_EQ(kid_read(&k, f.p + 2 * PG + 5), 0x12);
	ASSERT_EQ(kid_write(&k, f.p + 7, 0x99), 0);
	ASSERT_EQ(f.p[7], 0x99);		/* one page, both processes */
	f.p[8] = 0x77;
	ASSERT_EQ(kid_read(&k, f.p + 8), 0x77);
	/* The private page stayed fenced across fork: SIGBUS at the address. */
	ASSERT_EQ(kid_read(&k, f.p + PG + 3), -SIGBUS);
	ASSERT_EQ(kid_write(&k, f.p + PG, 1), -SIGBUS);
	ASSERT_EQ(kid_stop(&k), 0);
	fx_free(&f);
}

TEST(conversion_to_private_revokes_the_childs_access_before_it_returns)
{
	struct fx f = fx_new(4);
	struct kid k = kid_start();

	ASSERT_EQ(kid_read(&k, f.p + PG), 0x11);
	ASSERT_EQ(kid_read(&k, f.p + 2 * PG), 0x12);
	ASSERT_EQ(convert(f.fd, PG, 2 * PG, GMEM_ATTR_PRIVATE, NULL), 0);
	/* Done by the time the call returned: the child's next access faults. */
	ASSERT_EQ(kid_read(&k, f.p + PG), -SIGBUS);
	ASSERT_EQ(kid_read(&k, f.p + 3 * PG - 1), -SIGBUS);
	ASSERT_EQ(kid_write(&k, f.p + 2 * PG + 9, 0xee), -SIGBUS);
	/* Only those pages. */
	ASSERT_EQ(kid_read(&k, f.p + PG - 1), 0x10);
	ASSERT_EQ(kid_read(&k, f.p + 3 * PG), 0x13);
	/* Back to shared: the child sees the pages again, content kept (sw). */
	ASSERT_EQ(convert(f.fd, PG, PG, 0, NULL), 0);
	ASSERT_EQ(kid_read(&k, f.p + PG + 1), 0x11);
	ASSERT_EQ(kid_read(&k, f.p + 2 * PG), -SIGBUS);
	ASSERT_EQ(kid_write(&k, f.p + PG, 0x55), 0);
	ASSERT_EQ(f.p[PG], 0x55);
	ASSERT_EQ(kid_stop(&k), 0);
	fx_free(&f);
}

TEST(conversion_to_shared_opens_pages_that_were_private_at_the_fork)
{
	struct fx f = fx_new(2);
	struct kid k;

	ASSERT_EQ(convert(f.fd, 0, 2 * PG, GMEM_ATTR_PRIVATE, NULL), 0);
	k = kid_start();
	ASSERT_EQ(kid_read(&k, f.p), -SIGBUS);
	ASSERT_EQ(convert(f.fd, 0, PG, 0, NULL), 0);
	ASSERT_EQ(kid_read(&k, f.p + 10), 0x10);
	ASSERT_EQ(kid_read(&k, f.p + PG), -SIGBUS);
	ASSERT_EQ(kid_stop(&k), 0);
	fx_free(&f);
}

TEST(a_grandchild_is_reached_too)
{
	struct fx f = fx_new(2);
	struct kid k = kid_start();
	struct reply r = kid_ask(&k, 'f', NULL, 0);	/* from now on, the grandchild answers */

	ASSERT_GT(r.sig, 0);
	ASSERT_EQ(kid_read(&k, f.p + PG), 0x11);
	ASSERT_EQ(convert(f.fd, PG, PG, GMEM_ATTR_PRIVATE, NULL), 0);
	ASSERT_EQ(kid_read(&k, f.p + PG), -SIGBUS);
	ASSERT_EQ(kid_read(&k, f.p), 0x10);
	ASSERT_EQ(convert(f.fd, PG, PG, 0, NULL), 0);
	ASSERT_EQ(kid_read(&k, f.p + PG), 0x11);
	ASSERT_EQ(kid_stop(&k), 0);
	fx_free(&f);
}

TEST(a_stopped_child_makes_conversion_to_private_fail_with_eagain_and_change_nothing)
{
	struct fx f = fx_new(2);
	struct kid k = kid_start();
	uint64_t err = ~0ULL;
	double t;
	int status;

	ASSERT_EQ(kid_read(&k, f.p + PG), 0x11);
	ASSERT_EQ(kill(k.pid, SIGSTOP), 0);
	ASSERT_EQ(waitpid(k.pid, &status, WUNTRACED), k.pid);
	ASSERT_TRUE(WIFSTOPPED(status));
	t = now_ms();
	ASSERT_EQ(convert(f.fd, PG, PG, GMEM_ATTR_PRIVATE, &err), -EAGAIN);
	ASSERT_LT(now_ms() - t, 500);	/* a stopped child is seen at once */
	ASSERT_EQ(err, PG);		/* the first page, as for a pinned one */
	/* Nothing changed: still shared, and the parent still reads it. */
	ASSERT_EQ(attr_of(f.fd, PG), 0);
	ASSERT_EQ(f.p[PG], 0x11);
	/* Until it runs again, every try fails the same way. */
	ASSERT_EQ(convert(f.fd, 0, 2 * PG, GMEM_ATTR_PRIVATE, &err), -EAGAIN);
	ASSERT_EQ(err, 0);
	/* Resumed, it caught up with both requests and their undoing. */
	ASSERT_EQ(kill(k.pid, SIGCONT), 0);
	ASSERT_EQ(kid_read(&k, f.p + PG), 0x11);
	ASSERT_EQ(kid_read(&k, f.p), 0x10);
	ASSERT_EQ(convert(f.fd, PG, PG, GMEM_ATTR_PRIVATE, &err), 0);
	ASSERT_EQ(kid_read(&k, f.p + PG), -SIGBUS);
	ASSERT_EQ(kid_stop(&k), 0);
	fx_free(&f);
}

static void blocked_child(int in, int out)
{
	sigset_t all;

	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	serve(in, out);
}

TEST(a_child_blocking_signals_makes_conversion_to_private_fail_with_eagain_after_the_timeout)
{
	struct fx f = fx_new(2);
	int to[2], from[2], saved = gmem_shootdown_timeout_ms;
	uint64_t err = ~0ULL;
	struct kid k;
	double t;

	ASSERT_EQ(pipe(to), 0);
	ASSERT_EQ(pipe(from), 0);
	fflush(stdout);
	k.pid = fork();
	ASSERT_GE(k.pid, 0);
	if (!k.pid) {
		close(to[1]);
		close(from[0]);
		blocked_child(to[0], from[1]);
	}
	close(to[0]);
	close(from[1]);
	k.to = to[1];
	k.from = from[0];
	ASSERT_EQ(kid_read(&k, f.p + PG), 0x11);
	gmem_shootdown_timeout_ms = 200;
	t = now_ms();
	ASSERT_EQ(convert(f.fd, PG, PG, GMEM_ATTR_PRIVATE, &err), -EAGAIN);
	ASSERT_GE(now_ms() - t, 190);
	ASSERT_EQ(err, PG);
	ASSERT_EQ(attr_of(f.fd, PG), 0);
	ASSERT_EQ(f.p[PG], 0x11);
	/* It still reads the page: nothing was revoked anywhere. */
	ASSERT_EQ(kid_read(&k, f.p + PG), 0x11);
	/* A child that let one request time out costs later ones no timeout. */
	t = now_ms();
	ASSERT_EQ(convert(f.fd, PG, PG, GMEM_ATTR_PRIVATE, &err), -EAGAIN);
	ASSERT_LT(now_ms() - t, 150);
	gmem_shootdown_timeout_ms = saved;
	/* Gone, it is forgotten: the conversion goes through. */
	kid_kill(&k);
	ASSERT_EQ(convert(f.fd, PG, PG, GMEM_ATTR_PRIVATE, &err), 0);
	fx_free(&f);
}

TEST(an_exited_child_is_forgotten_reaped_or_not)
{
	struct fx f = fx_new(3);
	struct kid k = kid_start(), z = kid_start();
	struct cmd q = { .op = 'q' };

	ASSERT_EQ(kid_read(&k, f.p), 0x10);
	ASSERT_EQ(kid_read(&z, f.p), 0x10);
	ASSERT_EQ(kid_stop(&k), 0);			/* reaped */
	ASSERT_TRUE(write_all(z.to, &q, sizeof(q)));	/* a zombie, not reaped */
	for (int i = 0; i < 1000; i++) {
		char path[64], buf[256] = "";
		int sfd;

		snprintf(path, sizeof(path), "/proc/%d/stat", z.pid);
		sfd = open(path, O_RDONLY);
		ASSERT_GE(sfd, 0);
		ASSERT_GT(read(sfd, buf, sizeof(buf) - 1), 0);
		close(sfd);
		if (strstr(buf, ") Z "))
			break;
		usleep(1000);
	}
	ASSERT_EQ(convert(f.fd, 0, PG, GMEM_ATTR_PRIVATE, NULL), 0);
	ASSERT_EQ(convert(f.fd, PG, PG, GMEM_ATTR_PRIVATE, NULL), 0);
	ASSERT_EQ(attr_of(f.fd, PG), GMEM_ATTR_PRIVATE);
	close(z.to);
	close(z.from);
	ASSERT_EQ(waitpid(z.pid, NULL, 0), z.pid);
	fx_free(&f);
}

TEST(a_child_that_execs_is_forgotten_and_not_harmed)
{
	struct fx f = fx_new(2);
	int status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		execl("/bin/sleep", "sleep", "5", (char *)NULL);
		_exit(127);
	}
	usleep(100000);		/* let it exec */
	ASSERT_EQ(convert(f.fd, 0, PG, GMEM_ATTR_PRIVATE, NULL), 0);
	ASSERT_EQ(convert(f.fd, 0, PG, 0, NULL), 0);
	ASSERT_EQ(convert(f.fd, PG, PG, GMEM_ATTR_PRIVATE, NULL), 0);
	/* The signal it got is one the new image ignores: it still runs. */
	ASSERT_EQ(waitpid(pid, &status, WNOHANG), 0);
	ASSERT_EQ(kill(pid, SIGKILL), 0);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFSIGNALED(status));
	ASSERT_EQ(WTERMSIG(status), SIGKILL);
	fx_free(&f);
}

TEST(a_child_without_the_mapping_any_more_answers_at_once)
{
	struct fx f = fx_new(2);
	struct kid k = kid_start();
	struct reply r;
	double t;

	/* The child unmaps its copy (gmem_munmap works on inherited mappings). */
	r = kid_ask(&k, 'u', f.p, 2);
	ASSERT_EQ(r.sig, 0);
	t = now_ms();
	ASSERT_EQ(convert(f.fd, 0, PG, GMEM_ATTR_PRIVATE, NULL), 0);
	ASSERT_LT(now_ms() - t, 500);
	ASSERT_EQ(kid_stop(&k), 0);
	fx_free(&f);
}

TEST(a_released_file_leaves_the_childs_copy_fenced_for_the_next_file_of_the_window)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 2 * PG, SHARED_FILE), fd2;
	void *a = NULL, *b = NULL;
	uint64_t pfn1, pfn2;
	struct kid k;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_mmap(fd, 0, 2 * PG, RW, MAP_SHARED, &a), 0);
	memset(a, 0x31, 2 * PG);
	ASSERT_EQ(gmem_folio_info(fd, 0, &pfn1, NULL, NULL), 1);
	k = kid_start();
	ASSERT_EQ(kid_read(&k, a), 0x31);
	/* The parent lets the file go; the child still maps its window. */
	ASSERT_EQ(gmem_munmap(a, 2 * PG), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	/* The next file gets the same frames, and writes to them. */
	fd2 = gmem_create(e.vm, 2 * PG, SHARED_FILE);
	ASSERT_GE(fd2, 0);
	ASSERT_EQ(gmem_mmap(fd2, 0, 2 * PG, RW, MAP_SHARED, &b), 0);
	memset(b, 0x42, 2 * PG);
	ASSERT_EQ(gmem_folio_info(fd2, 0, &pfn2, NULL, NULL), 1);
	ASSERT_EQ(pfn2, pfn1);
	ASSERT_EQ(gmem_set_attributes(fd2, PG, PG, GMEM_ATTR_PRIVATE, 0, NULL), 0);
	/* The child's stale mapping reaches none of it. */
	ASSERT_EQ(kid_read(&k, a), -SIGBUS);
	ASSERT_EQ(kid_read(&k, (uint8_t *)a + PG), -SIGBUS);
	ASSERT_EQ(kid_stop(&k), 0);
	ASSERT_EQ(gmem_munmap(b, 2 * PG), 0);
	ASSERT_EQ(gmem_close(fd2), 0);
	env_free(&e);
}

static volatile sig_atomic_t program_urgs;

static void program_urg(int sig)
{
	(void)sig;
	program_urgs++;
}

static void child_counts_urg(void *arg)
{
	struct fx *f = arg;
	sigset_t none;
	int i;

	sigemptyset(&none);
	/* The parent's conversions come and go; a SIGURG of its own too. */
	kill(getppid(), SIGUSR1);
	for (i = 0; i < 2000 && !program_urgs; i++)
		usleep(1000);
	(void)*(volatile uint8_t *)f->p;	/* shared again by now */
	_exit(program_urgs == 1 ? 0 : 20);
}

static volatile sig_atomic_t usr1;

static void on_usr1(int sig)
{
	(void)sig;
	usr1 = 1;
}

TEST(the_programs_own_sigurg_handler_still_gets_its_sigurg_in_the_child)
{
	struct fx f = fx_new(1);
	struct sigaction sa = { .sa_handler = program_urg, .sa_flags = SA_RESTART };
	struct sigaction su = { .sa_handler = on_usr1 }, old_urg, old_usr1;
	int status;
	pid_t pid;

	sigemptyset(&sa.sa_mask);
	sigemptyset(&su.sa_mask);
	ASSERT_EQ(sigaction(SIGURG, &sa, &old_urg), 0);
	ASSERT_EQ(sigaction(SIGUSR1, &su, &old_usr1), 0);
	usr1 = 0;
	fflush(stdout);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid)
		child_counts_urg(&f);
	for (int i = 0; i < 5000 && !usr1; i++)
		usleep(1000);
	ASSERT_EQ(usr1, 1);
	/* Two shootdowns: neither reaches the program's handler. */
	ASSERT_EQ(convert(f.fd, 0, PG, GMEM_ATTR_PRIVATE, NULL), 0);
	ASSERT_EQ(convert(f.fd, 0, PG, 0, NULL), 0);
	ASSERT_EQ(kill(pid, SIGURG), 0);	/* this one does */
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
	ASSERT_EQ(sigaction(SIGURG, &old_urg, NULL), 0);
	ASSERT_EQ(sigaction(SIGUSR1, &old_usr1, NULL), 0);
	fx_free(&f);
}

static void kid_bus(int sig)
{
	(void)sig;
	_exit(SIGBUS);
}

TEST(a_child_for_which_the_table_has_no_room_gets_no_access_at_all)
{
	struct fx f = fx_new(1);
	enum { N = 129 };	/* one more than the table holds */
	pid_t pids[N + 1];
	int hold[2], status;

	ASSERT_EQ(pipe(hold), 0);
	fflush(stdout);
	for (int i = 0; i <= N; i++) {
		pids[i] = fork();
		ASSERT_GE(pids[i], 0);
		if (!pids[i]) {
			char c;

			signal(SIGBUS, kid_bus);
			close(hold[1]);
			if (i < N - 1)		/* registered: waits, reads shared */
				read_all(hold[0], &c, 1);	/* EOF: false */
			(void)*(volatile uint8_t *)f.p;
			_exit(0);
		}
	}
	close(hold[0]);
	/* The last ones found no slot: everything they inherited is fenced. */
	ASSERT_EQ(waitpid(pids[N], &status, 0), pids[N]);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), SIGBUS);
	/* Conversions go on: the ones with a slot answer, the others need nothing. */
	ASSERT_EQ(convert(f.fd, 0, PG, GMEM_ATTR_PRIVATE, NULL), 0);
	ASSERT_EQ(convert(f.fd, 0, PG, 0, NULL), 0);
	close(hold[1]);
	for (int i = 0; i < N; i++) {
		ASSERT_EQ(waitpid(pids[i], &status, 0), pids[i]);
		ASSERT_TRUE(WIFEXITED(status));
		ASSERT_EQ(WEXITSTATUS(status), i < N - 1 ? 0 : SIGBUS);
	}
	fx_free(&f);
}
