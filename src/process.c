// SPDX-License-Identifier: MIT
/*
 * Processes, as the kernel has them: which process a handle belongs to, what
 * fork() leaves a child, and the shootdown that reaches the mappings a child
 * inherited.
 *
 * Owner. KVM answers every VM ioctl from a process other than the VM's
 * creator with EIO. gmem's handle table is plain memory and a fork child gets
 * a copy, so each object records the pid of the process that created it, and
 * every call on a handle made elsewhere fails with -EIO before it touches a
 * lock (the child's copy of a lock another thread held at fork would never
 * be released). The pid is cached: getpid() per call would be a system call;
 * the fork child handler updates it. A child made by clone() without the
 * fork handlers keeps the parent's pid here and is not told apart.
 *
 * Inherited mappings. The kernel lets a child keep its inherited mapping of a
 * guest_memfd: shared pages stay readable and writable, and a conversion to
 * private unmaps the page from every process before it returns. gmem's
 * fences are page-table state of one process, so a conversion has to reach
 * the child's page tables through the child itself:
 *
 *   - At fork (prepare), if the process has gmem mappings, a slot in a table
 *     of shared memory (MAP_SHARED anonymous, made before the first such
 *     fork and inherited by every descendant) is reserved for the child,
 *     listing the files (uids) whose mappings it inherits. The child claims
 *     the slot with its pid and a token (fork child handler) and installs
 *     the shootdown handler. Guard regions are copied by fork, so the child
 *     starts with the fences the parent had.
 *   - A conversion fences (or opens) the process's own mappings, then, for
 *     every slot holding the file, writes the request (file uid and page
 *     range: the child computes its own addresses from the mappings it
 *     inherited) into the slot's ring, sends the child SHOOTDOWN_SIGNAL, and
 *     waits for the child's acknowledgement on a futex in the slot.
 *   - The child's handler applies every request in order (MADV_GUARD_INSTALL
 *     or _REMOVE: a system call, async-signal-safe), then acknowledges.
 *
 * A child that cannot answer: one that exited (pid gone, or a zombie), or
 * exec'd (its token is no longer at the token's address: it holds no gmem
 * mapping any more) is forgotten. One that is stopped, or does not answer
 * within gmem_shootdown_timeout_ms (signals blocked, a handler of its own for
 * the signal), makes a conversion to private fail with -EAGAIN before
 * anything changed, as an extra page reference would. Its request stays in
 * the ring, followed by the undo, so it catches up when it runs again.
 *
 * SHOOTDOWN_SIGNAL is SIGURG, whose default action is to ignore it, not a
 * real-time signal, whose default is to kill: a child may exec (or exit, or
 * its pid be reused) between the check and the signal, and the program that
 * gets it then must not die of it. A SIGURG that is not gmem's (si_code
 * SI_QUEUE with gmem's value) goes to the program's own handler.
 */
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "fence.h"
#include "handle.h"
#include "inject.h"
#include "lock.h"
#include "mapping.h"
#include "process.h"
#include "sigbus.h"

#define SHOOTDOWN_SIGNAL	SIGURG
#define SD_MAGIC	0x676d656d	/* "gmem": si_value of gmem's signal */
#define SD_SLOTS	128
#define SD_RING		32
#define SD_UIDS		SHOOTDOWN_UIDS
#define SD_FIRST_CHECK_NS	1000000	/* 1 ms without an answer: look why */

/* Tests: how long a conversion waits for a child before giving up. */
int gmem_shootdown_timeout_ms = 1000;

atomic_int process_cached_pid;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* ----------------------------------------------------------- the table */

enum {
	SLOT_FREE,
	SLOT_CLAIMED,		/* fork prepare is filling it */
	SLOT_FORKING,		/* filled; the child has not claimed it yet */
	SLOT_REGISTERING,	/* the child is writing its pid */
	SLOT_LIVE,
};

struct sd_req {
	uint64_t uid, start, end;	/* file, pages [start, end) */
	uint32_t open;			/* 1: remove the fence, 0: install it */
};

struct sd_slot {
	atomic_uint state;		/* futex word */
	atomic_int pid;
	uint64_t token;			/* the child's, at token_addr there */
	uintptr_t token_addr;
	uint32_t nuids;			/* > SD_UIDS: every file */
	uint64_t uids[SD_UIDS];
	atomic_int lock;		/* senders: the holder's pid, 0 free */
	atomic_uint head;		/* requests written */
	atomic_uint ack;		/* futex word: requests applied */
	atomic_uint overflow;		/* the ring was full: fence everything */
	atomic_uint stalled;		/* a request timed out; cleared by the child */
	struct sd_req ring[SD_RING];
};

struct sd_table {
	atomic_uint used;		/* slots not free */
	struct sd_slot slot[SD_SLOTS];
};

static _Atomic(struct sd_table *) table;
static int my_slot = -1;	/* this process's slot, as a fork child */
static int child_slot = -1;	/* reserved by fork prepare for the child */
static uint64_t my_token;	/* read by the parent with process_vm_readv */
static struct chained_action prev_urg;
static bool urg_installed;
static int fork_errno;

static long futex(atomic_uint *addr, int op, unsigned int val,
		  const struct timespec *timeout)
{
	return syscall(SYS_futex, addr, op, val, timeout, NULL, 0);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Wait while *@addr is @val, at most @ns. Shared futex: the table is MAP_SHARED. */
static void futex_wait_ns(atomic_uint *addr, unsigned int val, uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ULL),
			       .tv_nsec = (long)(ns % 1000000000ULL) };

	futex(addr, FUTEX_WAIT, val, &ts);
}

static struct sd_table *table_get(void)
{
	struct sd_table *t = atomic_load(&table);

	if (t)
		return t;
	t = try_mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (t == MAP_FAILED)
		return NULL;
	atomic_store(&table, t);
	return t;
}

static bool slot_holds(const struct sd_slot *s, uint64_t uid)
{
	if (s->nuids > SD_UIDS)
		return true;
	for (uint32_t i = 0; i < s->nuids; i++)
		if (s->uids[i] == uid)
			return true;
	return false;
}

static void slot_free(struct sd_table *t, struct sd_slot *s, unsigned int from)
{
	if (atomic_compare_exchange_strong(&s->state, &from, SLOT_FREE)) {
		atomic_fetch_sub(&t->used, 1);
		futex(&s->state, FUTEX_WAKE, INT32_MAX, NULL);
	}
}

/* Senders of one slot, from any process. A holder that died is robbed. */
static void slot_lock(struct sd_slot *s)
{
	int me = process_pid(), holder = 0;
	uint64_t since = 0;

	while (!atomic_compare_exchange_weak(&s->lock, &holder, me)) {
		if (!holder)
			continue;
		if (!since)
			since = now_ns();
		else if (now_ns() - since > 10000000 && kill(holder, 0) &&
			 errno == ESRCH &&
			 atomic_compare_exchange_strong(&s->lock, &holder, me))
			return;
		sched_yield();
		holder = 0;
	}
}

static void slot_unlock(struct sd_slot *s)
{
	atomic_store(&s->lock, 0);
}

/* ------------------------------------------------------ the child's side */

static void apply_entry(const struct hm_entry *e, void *arg)
{
	const struct sd_req *r = arg;
	struct fence_map fm;

	mapping_fence_map(e->m, &fm, true);
	/* Chunks the parent fenced whole stay so; nothing is fenced whole anew. */
	if (r->open)
		fence_open_map(&fm, r->start, r->end);
	else
		fence_close_map(&fm, r->start, r->end, false);
}

/* Fence every page of the mappings this process inherited. */
static void fence_inherited(const struct hm_entry *e, void *arg)
{
	struct sd_req all = { .uid = e->uid, .start = 0, .end = ~0ULL };

	(void)arg;
	if ((e->uid >> 32) != (uint64_t)process_pid())
		apply_entry(e, &all);
}

/* Apply every request of this process's slot, then acknowledge them. */
static void serve(void)
{
	struct sd_slot *s = &atomic_load(&table)->slot[my_slot];
	unsigned int a = atomic_load(&s->ack), h;

	hm_lock_handler();
	for (;;) {
		if (atomic_exchange(&s->overflow, 0)) {
			/* Requests were lost: what is left in the ring is older. */
			hm_for_uid(HM_ANY, fence_inherited, NULL);
			a = atomic_load_explicit(&s->head, memory_order_acquire);
			continue;
		}
		h = atomic_load_explicit(&s->head, memory_order_acquire);
		if (a == h)
			break;
		for (; a != h; a++) {
			struct sd_req r = s->ring[a % SD_RING];

			hm_for_uid(r.uid, apply_entry, &r);
		}
	}
	hm_unlock_handler();
	atomic_store(&s->stalled, 0);
	atomic_store_explicit(&s->ack, a, memory_order_release);
	futex(&s->ack, FUTEX_WAKE, INT32_MAX, NULL);
}

static void on_shootdown(int sig, siginfo_t *si, void *ucv)
{
	int saved = errno;

	/* Serve first: a SIGURG of the program's pending may have hidden ours. */
	if (my_slot >= 0)
		serve();
	if (si->si_code != SI_QUEUE || si->si_value.sival_int != SD_MAGIC)
		sig_chain(&prev_urg, sig, si, ucv, false);
	errno = saved;
}

bool process_answers_shootdowns(void)
{
	return my_slot >= 0;
}

void process_block_shootdown(sigset_t *saved)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SHOOTDOWN_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &set, saved);
}

/* -------------------------------------------------------- the fork */

/*
 * Before fork, under all_mappings_lock: reserve a slot for the child
 * listing the @n files (uids) it inherits mappings of (@n > SD_UIDS: say
 * "every file"). Nothing to reserve without mappings.
 */
void sd_fork_prepare(const uint64_t *uids, unsigned int n)
{
	struct sd_table *t;

	lock_assert_held(&all_mappings_lock);
	child_slot = -1;
	if (!n || !(t = table_get()))
		return;
	for (int pass = 0; pass < 2 && child_slot < 0; pass++) {
		for (int i = 0; i < SD_SLOTS; i++) {
			struct sd_slot *s = &t->slot[i];
			unsigned int free_state = SLOT_FREE;

			if (!atomic_compare_exchange_strong(&s->state, &free_state,
							    SLOT_CLAIMED))
				continue;
			atomic_fetch_add(&t->used, 1);
			s->nuids = n;
			memcpy(s->uids, uids, MIN(n, SD_UIDS) * sizeof(*uids));
			atomic_store(&s->pid, 0);
			atomic_store(&s->lock, 0);
			atomic_store(&s->head, 0);
			atomic_store(&s->ack, 0);
			atomic_store(&s->overflow, 0);
			atomic_store(&s->stalled, 0);
			atomic_store(&s->state, SLOT_FORKING);
			child_slot = i;
			break;
		}
		/* Full: forget children that are gone, then look again. */
		for (int i = 0; pass == 0 && child_slot < 0 && i < SD_SLOTS; i++) {
			struct sd_slot *s = &t->slot[i];
			int pid = atomic_load(&s->pid);

			if (atomic_load(&s->state) == SLOT_LIVE && pid &&
			    kill(pid, 0) && errno == ESRCH)
				slot_free(t, s, SLOT_LIVE);
		}
	}
}

/* fork failed (@failed): nobody will claim the slot. */
void sd_fork_parent(bool failed)
{
	struct sd_table *t = atomic_load(&table);

	if (failed && child_slot >= 0)
		slot_free(t, &t->slot[child_slot], SLOT_FORKING);
	child_slot = -1;
}

static void install_shootdown_handler(void)
{
	sigset_t mask;

	if (urg_installed)
		return;
	sigemptyset(&mask);
	urg_installed = !sig_install(SHOOTDOWN_SIGNAL, on_shootdown,
				     SA_RESTART | SA_ONSTACK, &mask, &prev_urg);
}

/*
 * In the child: claim the slot. Returns false if there is none (no room, or
 * the parent gave it up): the caller then fences every inherited mapping
 * entirely, the one safe answer without a way to hear of conversions.
 */
bool sd_fork_child(void)
{
	struct sd_table *t = atomic_load(&table);
	unsigned int forking = SLOT_FORKING;
	struct sd_slot *s;

	my_slot = -1;		/* the parent's slot is not ours */
	if (child_slot < 0)
		return false;
	s = &t->slot[child_slot];
	child_slot = -1;
	if (!atomic_compare_exchange_strong(&s->state, &forking,
					    SLOT_REGISTERING))
		return false;
	my_token = now_ns() ^ ((uint64_t)process_pid() << 40) ^
		   (uintptr_t)&my_token;
	s->token = my_token;
	s->token_addr = (uintptr_t)&my_token;
	atomic_store(&s->pid, process_pid());
	my_slot = (int)(s - t->slot);
	install_shootdown_handler();
	atomic_store(&s->state, SLOT_LIVE);
	futex(&s->state, FUTEX_WAKE, INT32_MAX, NULL);
	return true;
}

/* ------------------------------------------------------ the sender's side */

enum child_status { CHILD_ALIVE, CHILD_GONE, CHILD_STOPPED };

/*
 * The start of /proc/<pid>/<name> in @buf, NUL-terminated (empty if it cannot
 * be read); its length, or -1 if it cannot be opened.
 */
static ssize_t read_proc(int pid, const char *name, char *buf, size_t size)
{
	char path[64];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/%s", pid, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		n = 0;
	buf[n] = 0;
	return n;
}

/*
 * Why does the child not answer? Its token tells whether the process at that
 * pid is still our child's image (exit, exec and pid reuse all lose it);
 * /proc/<pid>/stat whether it is stopped. Without permission to read its
 * memory, a child that no longer catches the signal counts as gone.
 */
static enum child_status child_status(const struct sd_slot *s, int pid)
{
	uint64_t token = 0;
	struct iovec local = { &token, sizeof(token) };
	struct iovec remote = { (void *)s->token_addr, sizeof(token) };
	char buf[512], *p;
	ssize_t rd;

	rd = process_vm_readv(pid, &local, 1, &remote, 1, 0);
	if (rd == (ssize_t)sizeof(token) && token != s->token)
		return CHILD_GONE;		/* exec'd, or another process */
	if (rd < 0 && (errno == ESRCH || errno == EFAULT))
		return CHILD_GONE;		/* exited (or a zombie), exec'd */
	if (read_proc(pid, "stat", buf, sizeof(buf)) <= 0)
		return CHILD_GONE;
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return CHILD_ALIVE;
	switch (p[2]) {
	case 'Z': case 'X': case 'x':
		return CHILD_GONE;
	case 'T': case 't':
		return CHILD_STOPPED;
	}
	if (rd == (ssize_t)sizeof(token))
		return CHILD_ALIVE;
	/* Memory unreadable: does it still catch the signal? */
	if (read_proc(pid, "status", buf, sizeof(buf)) < 0)
		return CHILD_GONE;
	p = strstr(buf, "SigCgt:");
	if (p && !(strtoull(p + 7, NULL, 16) & (1ULL << (SHOOTDOWN_SIGNAL - 1))))
		return CHILD_GONE;
	return CHILD_ALIVE;
}

/*
 * A slot still FORKING: wait for the child to claim it. False if it never
 * does within the timeout (then nobody will: the slot goes, and a child
 * that comes late finds it gone and fences everything it inherited).
 */
static bool wait_registered(struct sd_table *t, struct sd_slot *s)
{
	uint64_t deadline = now_ns() +
			    (uint64_t)gmem_shootdown_timeout_ms * 1000000ULL;
	unsigned int st;

	while ((st = atomic_load(&s->state)) != SLOT_LIVE) {
		uint64_t now = now_ns();
		unsigned int forking = SLOT_FORKING;

		/* Freed (the fork failed) or reused: not the child we saw. */
		if (st == SLOT_FREE || st == SLOT_CLAIMED)
			return false;
		if (st == SLOT_FORKING && now >= deadline) {
			if (atomic_compare_exchange_strong(&s->state, &forking,
							   SLOT_FREE)) {
				atomic_fetch_sub(&t->used, 1);
				return false;
			}
			continue;	/* the child is writing its pid: a moment */
		}
		futex_wait_ns(&s->state, st, st == SLOT_FORKING ?
			      MIN(deadline - now, 1000000ULL) : 1000000ULL);
	}
	return true;
}

struct pending {
	struct sd_slot *slot;
	int pid;
	unsigned int seq;		/* acknowledged once ack reaches it */
};

/* Put @r in @s's ring. False if the ring is full: the child is far behind. */
static bool enqueue(struct sd_slot *s, const struct sd_req *r,
		    unsigned int *seq)
{
	unsigned int h;

	slot_lock(s);
	h = atomic_load(&s->head);
	if (h - atomic_load(&s->ack) >= SD_RING) {
		atomic_store(&s->overflow, 1);
		slot_unlock(s);
		return false;
	}
	s->ring[h % SD_RING] = *r;
	atomic_store_explicit(&s->head, h + 1, memory_order_release);
	slot_unlock(s);
	*seq = h + 1;
	return true;
}

static bool acked(struct pending *p)
{
	return (int)(atomic_load_explicit(&p->slot->ack, memory_order_acquire) -
		     p->seq) >= 0;
}

/* Is the child @p waits for still that slot's child? */
static bool still_there(struct pending *p)
{
	return atomic_load(&p->slot->state) == SLOT_LIVE &&
	       atomic_load(&p->slot->pid) == p->pid;
}

/*
 * Wait for @p's acknowledgement. True if done (or the child is gone). A
 * child that let a request time out before, and has not answered since,
 * gets no more than the first look: one stuck child must not cost every
 * conversion the whole timeout.
 */
static bool wait_ack(struct sd_table *t, struct pending *p)
{
	uint64_t start = now_ns(), timeout, now;
	bool looked = false;

	timeout = atomic_load(&p->slot->stalled) ? SD_FIRST_CHECK_NS :
		  (uint64_t)gmem_shootdown_timeout_ms * 1000000ULL;
	while (!acked(p)) {
		unsigned int a = atomic_load(&p->slot->ack);

		if (!still_there(p))
			return true;
		now = now_ns();
		if (!looked && now - start >= SD_FIRST_CHECK_NS) {
			looked = true;
			switch (child_status(p->slot, p->pid)) {
			case CHILD_GONE:
				slot_free(t, p->slot, SLOT_LIVE);
				return true;
			case CHILD_STOPPED:
				if (acked(p))
					return true;
				atomic_store(&p->slot->stalled, 1);
				return false;
			case CHILD_ALIVE:
				break;
			}
		}
		if (now - start >= timeout) {
			if (acked(p))
				return true;
			if (child_status(p->slot, p->pid) == CHILD_GONE) {
				slot_free(t, p->slot, SLOT_LIVE);
				return true;
			}
			atomic_store(&p->slot->stalled, 1);
			return false;
		}
		futex_wait_ns(&p->slot->ack, a,
			      looked ? MIN(timeout - (now - start), 10000000ULL) :
				       SD_FIRST_CHECK_NS - (now - start));
	}
	return true;
}

/*
 * Fence (@open false) or open pages [start, end) of file @uid in every other
 * process that inherited a mapping of it, and wait until each has. Returns
 * 0, or -EAGAIN if one could not be reached in time (it still gets the
 * request, in order, when it runs again). Called under the file's
 * invalidate lock exclusive (mapping_revoke and mapping_restore assert it;
 * file_release holds it), once this process's own mappings have changed.
 */
int sd_broadcast(uint64_t uid, uint64_t start, uint64_t end, bool open)
{
	struct sd_table *t = atomic_load(&table);
	struct sd_req r = { .uid = uid, .start = start, .end = end, .open = open };
	struct pending p[SD_SLOTS];
	union sigval v = { .sival_int = SD_MAGIC };
	int n = 0, ret = 0;

	if (!t || !atomic_load(&t->used))
		return 0;
	for (int i = 0; i < SD_SLOTS; i++) {
		struct sd_slot *s = &t->slot[i];
		unsigned int st = atomic_load(&s->state);
		int pid;

		if (i == my_slot || st < SLOT_FORKING || !slot_holds(s, uid))
			continue;
		if (st != SLOT_LIVE && !wait_registered(t, s))
			continue;
		pid = atomic_load(&s->pid);
		if (!enqueue(s, &r, &p[n].seq)) {
			ret = -EAGAIN;
			sigqueue(pid, SHOOTDOWN_SIGNAL, v);
			continue;
		}
		if (sigqueue(pid, SHOOTDOWN_SIGNAL, v) && errno == ESRCH) {
			slot_free(t, s, SLOT_LIVE);
			continue;
		}
		p[n].slot = s;
		p[n++].pid = pid;
	}
	for (int i = 0; i < n; i++)
		if (!wait_ack(t, &p[i]))
			ret = -EAGAIN;
	return open ? 0 : ret;
}

/* ------------------------------------------------------------ the pid */

static void atfork_prepare(void)
{
	fork_errno = errno;
	handles_fork_prepare();
	mapping_fork_prepare();
	/* glibc leaves _Fork's errno for the parent handlers: 0 means it worked. */
	errno = 0;
}

static void atfork_parent(void)
{
	bool failed = errno != 0;

	sd_fork_parent(failed);
	mapping_fork_parent();
	handles_fork_parent();
	if (!failed)
		errno = fork_errno;
}

static void atfork_child(void)
{
	atomic_store_explicit(&process_cached_pid, (int)syscall(SYS_getpid),
			      memory_order_relaxed);
	mapping_fork_child(sd_fork_child());
	handles_fork_child();
	mapping_forget_unmapped();
	errno = fork_errno;
}

static void process_init(void)
{
	atomic_store(&process_cached_pid, (int)syscall(SYS_getpid));
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

pid_t process_pid_slow(void)
{
	pthread_once(&once, process_init);
	return atomic_load_explicit(&process_cached_pid, memory_order_relaxed);
}
