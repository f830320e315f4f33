// SPDX-License-Identifier: MIT
/*
 * SIGBUS on private pages, as the kernel's guest_memfd raises it.
 *
 * (A 2 MiB chunk fenced whole, fence.h, is a mapping of an empty memfd:
 * the kernel raises SIGBUS there itself, and nothing here is involved.)
 *
 * A private page of a host mapping is fenced with a guard region, and an
 * access to a guard faults with SIGSEGV (SEGV_MAPERR), where the kernel's
 * guest_memfd fault handler answers VM_FAULT_SIGBUS. So at its first
 * gmem_mmap the engine installs a SIGSEGV handler (SA_SIGINFO | SA_ONSTACK |
 * SA_NODEFER, SIGBUS in its mask) that turns a fault inside a gmem host
 * mapping into SIGBUS (BUS_ADRERR, si_addr the address) queued to the
 * faulting thread with rt_tgsigqueueinfo. SIGBUS stays blocked while the
 * handler runs, so it is delivered as the handler returns, with the faulting
 * context: the program's own SIGBUS disposition takes it exactly as the
 * kernel's fault. Blocked or ignored in the faulting context, it is reset to
 * SIG_DFL and unblocked there, so it kills, as force_sig does. Every other
 * SIGSEGV goes to the action that was installed before gmem's (sig_chain).
 *
 * The handler cannot take a lock: it finds gmem mappings in a table of
 * [start, end) pairs it reads lock-free (struct hm_entry). Entries live in
 * chunks that are never freed, so a reader racing with an unmap reads a
 * stale entry at worst, never freed memory. Writers (mapping.c, under
 * all_mappings_lock) keep the pages a mapping still has covered at every moment: a
 * trim moves one bound, a split publishes the new part before the old one
 * shrinks. A fault racing with the unmap of its own address may so be
 * taken for a gmem one (SIGBUS instead of SIGSEGV), never the reverse.
 *
 * The rest of an entry (the file's uid, offset and length) is for the fork
 * shootdown (process.c), which fences pages of inherited mappings from a
 * signal handler too; it reads them under hm_lock, which writers take with
 * the shootdown signal blocked.
 */
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"
#include "fence.h"
#include "inject.h"
#include "lock.h"
#include "mapping.h"
#include "process.h"
#include "sigbus.h"

#define HM_CHUNK	256

struct hm_chunk {
	struct hm_entry e[HM_CHUNK];
	atomic_uint top;			/* entries ever used */
	_Atomic(struct hm_chunk *) next;
};

static struct hm_chunk hm_first;
static atomic_int hm_spin;		/* hm_lock */

/* A free entry, not yet visible to readers; NULL without memory. */
struct hm_entry *hm_alloc(void)
{
	struct hm_chunk *c = &hm_first, *n;

	lock_assert_held(&all_mappings_lock);
	for (;;) {
		unsigned int top = atomic_load_explicit(&c->top,
							memory_order_relaxed);

		for (unsigned int i = 0; i < top; i++) {
			if (!c->e[i].used) {
				c->e[i].used = true;
				return &c->e[i];
			}
		}
		if (top < HM_CHUNK) {
			c->e[top].used = true;
			atomic_store_explicit(&c->top, top + 1,
					      memory_order_release);
			return &c->e[top];
		}
		n = atomic_load_explicit(&c->next, memory_order_acquire);
		if (!n) {
			n = try_calloc(1, sizeof(*n));
			if (!n)
				return NULL;
			atomic_store_explicit(&c->next, n, memory_order_release);
		}
		c = n;
	}
}

/*
 * Show @e to readers as record @m, or make it describe @m again after @m was
 * trimmed: the bound that moves is the only store readers see change, so
 * what @m keeps stays covered throughout. Under all_mappings_lock and
 * hm_lock.
 */
void hm_update(struct hm_entry *e, const struct host_mapping *m)
{
	uintptr_t start = (uintptr_t)m->addr, end = start + m->len;

	lock_assert_held(&all_mappings_lock);
	lock_assert_held(&hm_spin);
	e->uid = m->uid;
	e->m = m;
	if (!atomic_load_explicit(&e->end, memory_order_relaxed)) {
		atomic_store_explicit(&e->start, start, memory_order_relaxed);
		atomic_store_explicit(&e->end, end, memory_order_release);
		return;
	}
	/* Records only shrink: each store keeps what @m still covers. */
	atomic_store_explicit(&e->start, start, memory_order_release);
	atomic_store_explicit(&e->end, end, memory_order_release);
}

/* The mapping is gone. Under all_mappings_lock and hm_lock. */
void hm_free(struct hm_entry *e)
{
	lock_assert_held(&all_mappings_lock);
	lock_assert_held(&hm_spin);
	atomic_store_explicit(&e->end, 0, memory_order_release);
	atomic_store_explicit(&e->start, 0, memory_order_relaxed);
	e->used = false;
}

/* Is @addr inside a gmem host mapping? Lock-free, async-signal-safe. */
bool hm_lookup(uintptr_t addr)
{
	for (struct hm_chunk *c = &hm_first; c;
	     c = atomic_load_explicit(&c->next, memory_order_acquire)) {
		unsigned int top = atomic_load_explicit(&c->top,
							memory_order_acquire);

		for (unsigned int i = 0; i < top; i++) {
			uintptr_t end = atomic_load_explicit(&c->e[i].end,
							     memory_order_acquire);

			if (end && addr < end &&
			    addr >= atomic_load_explicit(&c->e[i].start,
							 memory_order_acquire))
				return true;
		}
	}
	return false;
}

/*
 * Call @fn on every mapping of file @uid, under hm_lock (the shootdown
 * handler takes it), so entries hold still.
 */
void hm_for_uid(uint64_t uid, void (*fn)(const struct hm_entry *e, void *arg),
		void *arg)
{
	lock_assert_held(&hm_spin);
	for (struct hm_chunk *c = &hm_first; c;
	     c = atomic_load_explicit(&c->next, memory_order_acquire)) {
		unsigned int top = atomic_load_explicit(&c->top,
							memory_order_acquire);

		for (unsigned int i = 0; i < top; i++)
			if (atomic_load_explicit(&c->e[i].end,
						 memory_order_acquire) &&
			    (c->e[i].uid == uid || uid == HM_ANY))
				fn(&c->e[i], arg);
	}
}

/*
 * hm_lock: the shootdown handler against writers of this process. A writer
 * blocks the shootdown signal first, so the handler never spins on a lock
 * its own thread holds; the handler, on another thread, spins while a
 * writer changes a few words or makes one munmap. Only a process that
 * answers shootdowns (a registered fork child) needs it.
 */
void hm_lock(sigset_t *saved)
{
	if (process_answers_shootdowns()) {
		process_block_shootdown(saved);
		while (atomic_exchange_explicit(&hm_spin, 1, memory_order_acquire))
			sched_yield();
	}
	/* Held for the assertions even where nothing had to spin. */
	lock_acquired(&hm_spin, LOCK_EXCLUSIVE);
}

void hm_unlock(const sigset_t *saved)
{
	lock_released(&hm_spin);
	if (!process_answers_shootdowns())
		return;
	atomic_store_explicit(&hm_spin, 0, memory_order_release);
	pthread_sigmask(SIG_SETMASK, saved, NULL);
}

/* The same from the handler, whose own signal is blocked while it runs. */
void hm_lock_handler(void)
{
	while (atomic_exchange_explicit(&hm_spin, 1, memory_order_acquire))
		sched_yield();
	lock_acquired(&hm_spin, LOCK_EXCLUSIVE);
}

void hm_unlock_handler(void)
{
	lock_released(&hm_spin);
	atomic_store_explicit(&hm_spin, 0, memory_order_release);
}

/* ----------------------------------------------------------- chaining */

/*
 * Run the action @c saved for @sig as the kernel would have: with its own
 * signature (SA_SIGINFO or not), its mask added to the faulting context's
 * (and @sig itself unless SA_NODEFER), reset to SIG_DFL after one delivery
 * with SA_RESETHAND. SIG_IGN and SIG_DFL do what the kernel does with them
 * for a signal of this kind: @fatal (SIGSEGV) restores SIG_DFL for good and
 * lets a fault happen again, now fatal, or sends a signal that was not a
 * fault again; otherwise (SIGURG) nothing happens.
 */
void sig_chain(struct chained_action *c, int sig, siginfo_t *si, void *ucv,
	       bool fatal)
{
	ucontext_t *uc = ucv;
	struct sigaction act = c->act;
	sigset_t mask, old;

	if (atomic_load_explicit(&c->reset, memory_order_acquire))
		act.sa_handler = SIG_DFL;
	if (act.sa_handler == SIG_DFL || act.sa_handler == SIG_IGN) {
		struct sigaction dfl = { .sa_handler = SIG_DFL };

		if (!fatal || (act.sa_handler == SIG_IGN && si->si_code <= 0))
			return;		/* ignored */
		/* A fault's signal kills whatever its disposition (force_sig). */
		sigemptyset(&dfl.sa_mask);
		sigaction(sig, &dfl, NULL);
		if (si->si_code <= 0)	/* sent, not a fault: send it again */
			syscall(SYS_rt_tgsigqueueinfo, syscall(SYS_getpid),
				syscall(SYS_gettid), sig, si);
		return;
	}
	if (act.sa_flags & SA_RESETHAND)
		atomic_store_explicit(&c->reset, true, memory_order_release);
	sigorset(&mask, &uc->uc_sigmask, &act.sa_mask);
	if (!(act.sa_flags & SA_NODEFER))
		sigaddset(&mask, sig);
	pthread_sigmask(SIG_SETMASK, &mask, &old);
	if (act.sa_flags & SA_SIGINFO)
		act.sa_sigaction(sig, si, ucv);
	else
		act.sa_handler(sig);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/*
 * Install @handler for @sig with @flags and @mask, keeping the action it
 * replaces in @c. The old action is read first and read again on the way
 * in: a handler running between the two sees a complete one either way.
 */
int sig_install(int sig, void (*handler)(int, siginfo_t *, void *),
		int flags, const sigset_t *mask, struct chained_action *c)
{
	struct sigaction act = { .sa_sigaction = handler,
				 .sa_flags = SA_SIGINFO | flags };
	struct sigaction prev;

	act.sa_mask = *mask;
	if (sigaction(sig, NULL, &c->act))
		return -1;
	if (sigaction(sig, &act, &prev))
		return -1;
	if (prev.sa_handler != c->act.sa_handler ||
	    prev.sa_flags != c->act.sa_flags)
		c->act = prev;
	atomic_store(&c->reset, false);
	return 0;
}

/* ---------------------------------------------------------- SIGSEGV */

static struct chained_action prev_segv;
static pthread_once_t segv_once = PTHREAD_ONCE_INIT;

/* Queue SIGBUS for this thread as the kernel's fault would send it. */
static bool raise_sigbus(void *addr, ucontext_t *uc)
{
	struct sigaction cur;
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	si.si_signo = SIGBUS;
	si.si_code = BUS_ADRERR;
	si.si_addr = addr;
	/* Blocked or ignored, a fault's signal still kills (force_sig). */
	if (!sigaction(SIGBUS, NULL, &cur) &&
	    (sigismember(&uc->uc_sigmask, SIGBUS) == 1 ||
	     cur.sa_handler == SIG_IGN)) {
		struct sigaction dfl = { .sa_handler = SIG_DFL };

		sigemptyset(&dfl.sa_mask);
		sigaction(SIGBUS, &dfl, NULL);
		sigdelset(&uc->uc_sigmask, SIGBUS);
	}
	/*
	 * The tgid and tid from the kernel, not a cache: a child made by
	 * clone() without fork handlers must not queue to its parent.
	 */
	return !syscall(SYS_rt_tgsigqueueinfo, syscall(SYS_getpid),
			syscall(SYS_gettid), SIGBUS, &si);
}

static void on_segv(int sig, siginfo_t *si, void *ucv)
{
	int saved = errno;
	bool fence = si->si_code == SEGV_MAPERR ||
		     (si->si_code == SEGV_ACCERR && !fence_uses_guards());

	if (fence && hm_lookup((uintptr_t)si->si_addr)) {
		if (!raise_sigbus(si->si_addr, ucv)) {
			/* No way to queue it: the fault kills with SIGSEGV. */
			struct sigaction dfl = { .sa_handler = SIG_DFL };

			sigemptyset(&dfl.sa_mask);
			sigaction(SIGSEGV, &dfl, NULL);
		}
	} else {
		sig_chain(&prev_segv, sig, si, ucv, true);
	}
	errno = saved;
}

static void install_segv(void)
{
	sigset_t mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGBUS);	/* delivered as we return, not inside */
	sig_install(SIGSEGV, on_segv, SA_ONSTACK | SA_NODEFER | SA_RESTART,
		    &mask, &prev_segv);
}

/* At the first gmem_mmap: from then on private pages raise SIGBUS. */
void sigbus_install(void)
{
	pthread_once(&segv_once, install_segv);
}
