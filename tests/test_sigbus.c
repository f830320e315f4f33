// SPDX-License-Identifier: MIT
/*
 * A private page of a host mapping raises SIGBUS (BUS_ADRERR, the address),
 * as the kernel's guest_memfd: gmem's SIGSEGV handler, installed at the first
 * gmem_mmap, turns the guard's SIGSEGV into it. Every other SIGSEGV reaches
 * the handler the program had before; a blocked or ignored SIGBUS kills;
 * stage-2 views keep SIGSEGV.
 *
 * Some cases need a process in which gmem has not mapped anything yet: the
 * test runs this program again (/proc/self/exe) with GMEM_TEST_FRESH naming
 * the case, which a constructor runs instead of the tests.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include "harness.h"

#define PG	GMEM_PAGE_SIZE
#define GiB	(1ULL << 30)
#define RW	(PROT_READ | PROT_WRITE)
#define GPA	0x40000000ULL

static sigjmp_buf jmp;
static volatile sig_atomic_t got_sig, got_code, got_count;
static void *volatile got_addr;
static volatile uintptr_t got_pc;

static uintptr_t pc_of(void *ucv)
{
	ucontext_t *uc = ucv;

#if defined(__x86_64__)
	return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
	return (uintptr_t)uc->uc_mcontext.pc;
#else
	(void)uc;
	return 0;
#endif
}

static void record(int sig, siginfo_t *si, void *uc)
{
	got_sig = sig;
	got_code = si->si_code;
	got_addr = si->si_addr;
	got_pc = pc_of(uc);
	got_count++;
	siglongjmp(jmp, 1);
}

static void set_handler(int sig, void (*fn)(int, siginfo_t *, void *),
			int flags, struct sigaction *old)
{
	struct sigaction sa = { .sa_sigaction = fn, .sa_flags = SA_SIGINFO | flags };

	sigemptyset(&sa.sa_mask);
	ASSERT_EQ(sigaction(sig, &sa, old), 0);
}

/* Read (or write) @p; the signal that reached record(), or 0. */
static int touch(volatile uint8_t *p, bool write)
{
	got_sig = 0;
	if (!sigsetjmp(jmp, 1)) {
		if (write)
			*p = 0x5a;
		else
			(void)*p;
	}
	return got_sig;
}

/* A file of @pages private pages, mapped; page 0 holds guest data. */
struct fx {
	struct env e;
	int fd;
	uint8_t *p;
	size_t len;
};

static struct fx fx_new(const char *arch, uint64_t pages)
{
	struct fx f = { .e = env_new(arch) };
	uint8_t data[PG];
	struct gmem_exit ex;
	void *addr = NULL;

	f.fd = gmem_create(f.e.vm, pages * PG, GMEM_FLAG_MMAP);
	ASSERT_GE(f.fd, 0);
	f.len = pages * PG;
	ASSERT_EQ(gmem_mmap(f.fd, 0, f.len, RW, MAP_SHARED, &addr), 0);
	f.p = addr;
	ASSERT_EQ(gmem_vm_bind(f.e.vm, 0, GPA, f.len, f.fd, 0), 0);
	memset(data, 0xab, sizeof(data));
	ASSERT_EQ(gmem_vm_access(f.e.vm, GPA, data, PG,
				 GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE, &ex), 0);
	return f;
}

static void fx_free(struct fx *f)
{
	ASSERT_EQ(gmem_munmap(f->p, f->len), 0);
	ASSERT_EQ(gmem_close(f->fd), 0);
	env_free(&f->e);
}

static void private_page_raises_sigbus(const char *arch)
{
	struct fx f = fx_new(arch, 2);
	struct sigaction old;
	uint8_t v;

	set_handler(SIGBUS, record, 0, &old);
	for (size_t off = 0; off < 2 * PG; off += 1000) {
		ASSERT_EQ(touch(f.p + off, false), SIGBUS);
		ASSERT_EQ(got_code, BUS_ADRERR);
		ASSERT_TRUE(got_addr == f.p + off);
		ASSERT_EQ(touch(f.p + off, true), SIGBUS);
		ASSERT_EQ(got_code, BUS_ADRERR);
		ASSERT_TRUE(got_addr == f.p + off);
	}
	ASSERT_EQ(sigaction(SIGBUS, &old, NULL), 0);
	/* Nothing was read or written: to shared, the guest's bytes are there. */
	ASSERT_EQ(gmem_set_attributes(f.fd, 0, PG, 0, 0, NULL), 0);
	v = f.p[100];
	if (!strcmp(arch, "sw") || !strcmp(arch, "pkvm"))
		ASSERT_EQ(v, 0xab);	/* the archs that keep content */
	fx_free(&f);
}

TEST(private_page_raises_sigbus_with_bus_adrerr_and_the_address_on_sw)
{
	private_page_raises_sigbus("sw");
}

TEST(private_page_raises_sigbus_with_bus_adrerr_and_the_address_on_snp)
{
	private_page_raises_sigbus("snp");
}

TEST(private_page_raises_sigbus_with_bus_adrerr_and_the_address_on_tdx)
{
	private_page_raises_sigbus("tdx");
}

TEST(private_page_raises_sigbus_with_bus_adrerr_and_the_address_on_pkvm)
{
	private_page_raises_sigbus("pkvm");
}

TEST(private_page_in_a_huge_file_and_in_a_map_fixed_mapping_raises_sigbus)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 2 << 20, GMEM_FLAG_MMAP | GMEM_FLAG_HUGE_2M);
	uint8_t *r = mmap(NULL, 8 << 20, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t *at = (uint8_t *)(((uintptr_t)r + (2 << 20) - 1) & ~(uintptr_t)((2 << 20) - 1));
	void *p = NULL, *q = at;
	struct sigaction old;

	ASSERT_GE(fd, 0);
	ASSERT_TRUE(r != MAP_FAILED);
	ASSERT_EQ(gmem_mmap(fd, 0, 2 << 20, RW, MAP_SHARED, &p), 0);
	ASSERT_EQ(gmem_mmap(fd, 0, 2 << 20, RW, MAP_SHARED | MAP_FIXED, &q), 0);
	set_handler(SIGBUS, record, 0, &old);
	ASSERT_EQ(touch((uint8_t *)p + (1 << 20), false), SIGBUS);
	ASSERT_TRUE(got_addr == (uint8_t *)p + (1 << 20));
	ASSERT_EQ(touch(at + 12345, true), SIGBUS);
	ASSERT_TRUE(got_addr == at + 12345);
	/* A partial gmem_munmap leaves the rest answering SIGBUS. */
	ASSERT_EQ(gmem_munmap(at, 1 << 20), 0);
	ASSERT_EQ(touch(at + (1 << 20) + 7, false), SIGBUS);
	ASSERT_TRUE(got_addr == at + (1 << 20) + 7);
	ASSERT_EQ(sigaction(SIGBUS, &old, NULL), 0);
	ASSERT_EQ(gmem_munmap(at + (1 << 20), 1 << 20), 0);
	ASSERT_EQ(gmem_munmap(p, 2 << 20), 0);
	ASSERT_EQ(munmap(r, 8 << 20), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

/*
 * SIGBUS arrives once gmem's handler has returned, on the faulting
 * instruction's context, as the kernel delivers it: its program counter is
 * the one a SIGSEGV handler of the program's sees for the same fault.
 */
TEST(sigbus_arrives_with_the_context_of_the_faulting_instruction)
{
	struct fx f = fx_new("sw", 1);
	struct sigaction gmem_segv, old_bus;
	uintptr_t segv_pc, bus_pc;

#if !defined(__x86_64__) && !defined(__aarch64__)
	test_skip("no program counter in ucontext on this arch");
#endif
	set_handler(SIGSEGV, record, SA_NODEFER, &gmem_segv);	/* gmem's aside */
	ASSERT_EQ(touch(f.p + 64, false), SIGSEGV);
	segv_pc = got_pc;
	ASSERT_EQ(sigaction(SIGSEGV, &gmem_segv, NULL), 0);	/* gmem's back */
	set_handler(SIGBUS, record, 0, &old_bus);
	ASSERT_EQ(touch(f.p + 64, false), SIGBUS);
	bus_pc = got_pc;
	ASSERT_EQ(sigaction(SIGBUS, &old_bus, NULL), 0);
	ASSERT_NE(segv_pc, 0);
	ASSERT_EQ(bus_pc, segv_pc);
	fx_free(&f);
}

/* ----------------------------------------- fatal cases, in a fresh process */

/*
 * How a fault ends when nothing catches it. A fresh process sets SIGSEGV and
 * SIGBUS to SIG_DFL before its first gmem_mmap (a sanitizer's runtime would
 * otherwise be the action gmem's handler passes SIGSEGV on to), then touches
 * @target as @how says; the test reads the signal that killed it.
 */
static int fresh_fatal(const char *how, bool gmem_page)
{
	uint8_t *none = mmap(NULL, PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct fx f;
	sigset_t set;
	uint8_t *target;

	signal(SIGSEGV, SIG_DFL);
	signal(SIGBUS, SIG_DFL);
	f = fx_new("sw", 1);
	target = gmem_page ? f.p : none;
	if (!strcmp(how, "ignored"))
		signal(SIGBUS, SIG_IGN);
	if (!strcmp(how, "blocked") || !strcmp(how, "blocked and handled")) {
		if (!strcmp(how, "blocked and handled"))
			set_handler(SIGBUS, record, 0, NULL);
		sigemptyset(&set);
		sigaddset(&set, SIGBUS);
		sigprocmask(SIG_BLOCK, &set, NULL);
	}
	if (!strcmp(how, "unmapped"))
		target = (uint8_t *)64;		/* SEGV_MAPERR: gmem looks it up */
	if (!strcmp(how, "raise")) {
		raise(SIGSEGV);	/* sent, not a fault: gmem's handler sends it on */
		return 60;
	}
	fflush(stdout);
	*(volatile uint8_t *)target = 1;
	return 61;
}

static int fresh_fatal_default(void) { return fresh_fatal("default", true); }
static int fresh_fatal_ignored(void) { return fresh_fatal("ignored", true); }
static int fresh_fatal_blocked(void) { return fresh_fatal("blocked", true); }
static int fresh_fatal_blocked_handled(void) { return fresh_fatal("blocked and handled", true); }
static int fresh_fatal_other(void) { return fresh_fatal("default", false); }
static int fresh_fatal_unmapped(void) { return fresh_fatal("unmapped", false); }
static int fresh_fatal_raise(void) { return fresh_fatal("raise", false); }

static int run_fresh(const char *name);

TEST(sigbus_that_is_default_blocked_or_ignored_kills_the_process)
{
	ASSERT_EQ(run_fresh("fatal_default"), 128 + SIGBUS);
	ASSERT_EQ(run_fresh("fatal_ignored"), 128 + SIGBUS);
	ASSERT_EQ(run_fresh("fatal_blocked"), 128 + SIGBUS);
	/* force_sig: a handler does not help a blocked fault signal either. */
	ASSERT_EQ(run_fresh("fatal_blocked_handled"), 128 + SIGBUS);
	/* Any other fault still kills with SIGSEGV (the disposition before gmem's). */
	ASSERT_EQ(run_fresh("fatal_other"), 128 + SIGSEGV);
	ASSERT_EQ(run_fresh("fatal_unmapped"), 128 + SIGSEGV);
}

TEST(a_sigsegv_sent_with_raise_still_kills_with_sigsegv)
{
	ASSERT_EQ(run_fresh("fatal_raise"), 128 + SIGSEGV);
}

/* ---------------------------------------- in a fresh process: the chain */

static volatile sig_atomic_t plain_calls;

static void plain_segv(int sig)
{
	plain_calls++;
	(void)sig;
	siglongjmp(jmp, 1);
}

/* The program's handler, installed before gmem's, gets every other SIGSEGV. */
static int fresh_chain(void)
{
	struct sigaction segv_before, bus;
	uint8_t *none = mmap(NULL, PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct fx f;

	set_handler(SIGSEGV, record, 0, &segv_before);
	set_handler(SIGBUS, record, 0, &bus);
	f = fx_new("snp", 1);	/* gmem's handler goes in front */
	got_count = 0;
	if (touch(none + 8, false) != SIGSEGV || got_code != SEGV_ACCERR ||
	    got_addr != none + 8)
		return 10;
	if (touch((uint8_t *)8, true) != SIGSEGV || got_code != SEGV_MAPERR ||
	    got_addr != (void *)8)
		return 11;
	if (touch(f.p + 8, false) != SIGBUS || got_code != BUS_ADRERR ||
	    got_addr != f.p + 8)
		return 12;
	if (got_count != 3)
		return 13;
	/* A mapping made later is covered too, and unmapped ones no more. */
	fx_free(&f);
	f = fx_new("snp", 3);
	if (touch(f.p + 2 * PG, true) != SIGBUS || got_addr != f.p + 2 * PG)
		return 14;
	fx_free(&f);
	return 0;
}

/* Without SA_SIGINFO, and with SA_RESETHAND: called once, then the default. */
static int fresh_chain_plain_resethand(void)
{
	struct sigaction sa = { .sa_handler = plain_segv,
				.sa_flags = SA_RESETHAND | SA_NODEFER };
	uint8_t *none = mmap(NULL, PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct fx f;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	f = fx_new("sw", 1);
	if (touch(none, false) != 0 || plain_calls != 1)
		return 20;
	/* gmem's own faults do not use the program's one shot up. */
	set_handler(SIGBUS, record, 0, NULL);
	if (touch(f.p, false) != SIGBUS || plain_calls != 1)
		return 21;
	fflush(stdout);
	(void)*(volatile uint8_t *)none;	/* now the default: dies of SIGSEGV */
	return 22;
}

/* The handler's mask is applied while it runs, as the kernel would. */
static volatile sig_atomic_t usr1_blocked;

static void masked_segv(int sig, siginfo_t *si, void *uc)
{
	sigset_t now;

	(void)sig;
	(void)si;
	(void)uc;
	pthread_sigmask(SIG_BLOCK, NULL, &now);
	usr1_blocked = sigismember(&now, SIGUSR1);
	siglongjmp(jmp, 1);
}

static int fresh_chain_mask(void)
{
	struct sigaction sa = { .sa_sigaction = masked_segv, .sa_flags = SA_SIGINFO };
	uint8_t *none = mmap(NULL, PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct fx f;

	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR1);
	sigaction(SIGSEGV, &sa, NULL);
	f = fx_new("sw", 1);
	usr1_blocked = 0;
	(void)touch(none, false);
	if (usr1_blocked != 1)
		return 30;
	fx_free(&f);
	return 0;
}

/* Stage-2 views are not host mappings a VMM touches: they keep SIGSEGV. */
static int fresh_views_keep_sigsegv(void)
{
	struct sigaction before;
	struct fx f;
	void *view = NULL;

	set_handler(SIGSEGV, record, 0, &before);
	set_handler(SIGBUS, record, 0, NULL);
	f = fx_new("sw", 2);
	if (gmem_vm_view_mmap(f.e.vm, 0, GMEM_ATTR_PRIVATE, &view))
		return 40;
	/* Page 0 is mapped by stage-2 (the guest wrote it): open. Page 1 is not. */
	if (touch((uint8_t *)view, false) != 0)
		return 41;
	if (touch((uint8_t *)view + PG, false) != SIGSEGV ||
	    got_code != SEGV_MAPERR || got_addr != (uint8_t *)view + PG)
		return 42;
	/* The same page through the host mapping: SIGBUS. */
	if (touch(f.p + PG, false) != SIGBUS)
		return 43;
	ASSERT_EQ(gmem_vm_unbind(f.e.vm, 0), 0);
	munmap(view, 2 * PG);
	fx_free(&f);
	return 0;
}

/*
 * The contract of gmem.h: a program that installs its own SIGSEGV handler
 * after its first gmem_mmap chains to the one it replaced, or private pages
 * fault with SIGSEGV in its handler instead of SIGBUS.
 */
static struct sigaction chained_to;

static void chaining_segv(int sig, siginfo_t *si, void *uc)
{
	if (si->si_code == SEGV_MAPERR && chained_to.sa_sigaction) {
		chained_to.sa_sigaction(sig, si, uc);
		return;
	}
	record(sig, si, uc);
}

static int fresh_handler_after_gmem(void)
{
	struct fx f = fx_new("sw", 1);
	struct sigaction sa = { .sa_sigaction = chaining_segv,
				.sa_flags = SA_SIGINFO | SA_NODEFER };

	set_handler(SIGBUS, record, 0, NULL);
	set_handler(SIGSEGV, record, SA_NODEFER, &chained_to);	/* no chaining */
	if (touch(f.p, false) != SIGSEGV)
		return 50;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);			/* chains */
	if (touch(f.p, false) != SIGBUS || got_addr != f.p)
		return 51;
	fx_free(&f);
	return 0;
}

static const struct {
	const char *name;
	int (*fn)(void);
} fresh_cases[] = {
	{ "chain", fresh_chain },
	{ "chain_plain_resethand", fresh_chain_plain_resethand },
	{ "chain_mask", fresh_chain_mask },
	{ "views", fresh_views_keep_sigsegv },
	{ "handler_after_gmem", fresh_handler_after_gmem },
	{ "fatal_default", fresh_fatal_default },
	{ "fatal_ignored", fresh_fatal_ignored },
	{ "fatal_blocked", fresh_fatal_blocked },
	{ "fatal_blocked_handled", fresh_fatal_blocked_handled },
	{ "fatal_other", fresh_fatal_other },
	{ "fatal_unmapped", fresh_fatal_unmapped },
	{ "fatal_raise", fresh_fatal_raise },
};

__attribute__((constructor)) static void fresh_main(void)
{
	const char *name = getenv("GMEM_TEST_FRESH");

	if (!name)
		return;
	for (size_t i = 0; i < sizeof(fresh_cases) / sizeof(fresh_cases[0]); i++)
		if (!strcmp(fresh_cases[i].name, name)) {
			int rc = fresh_cases[i].fn();

			fflush(stdout);
			_exit(rc);
		}
	_exit(99);
}

/* Run case @name in a new process: its exit code, or 128 + the signal that killed it. */
static int run_fresh(const char *name)
{
	char env[64];
	char *const argv[] = { "test_sigbus", NULL };
	char *const envp[] = { env, NULL };
	int status;
	pid_t pid;

	snprintf(env, sizeof(env), "GMEM_TEST_FRESH=%s", name);
	fflush(stdout);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		execve("/proc/self/exe", argv, envp);
		_exit(127);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

TEST(a_sigsegv_outside_gmem_mappings_reaches_the_programs_earlier_handler)
{
	ASSERT_EQ(run_fresh("chain"), 0);
}

TEST(an_earlier_handler_without_siginfo_and_with_resethand_runs_once_then_the_default)
{
	ASSERT_EQ(run_fresh("chain_plain_resethand"), 128 + SIGSEGV);
}

TEST(an_earlier_handler_runs_with_its_own_mask)
{
	ASSERT_EQ(run_fresh("chain_mask"), 0);
}

TEST(stage2_views_keep_sigsegv)
{
	ASSERT_EQ(run_fresh("views"), 0);
}

TEST(a_handler_installed_after_gmem_gets_sigbus_only_if_it_chains)
{
	ASSERT_EQ(run_fresh("handler_after_gmem"), 0);
}
