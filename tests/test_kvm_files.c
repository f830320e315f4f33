// SPDX-License-Identifier: MIT
/*
 * libgmem-kvm, black box: the guest_memfd as a file. Host mappings (mmap's
 * checks, MAP_FIXED, partial munmap, madvise), the SIGBUS of a page the host
 * may not touch (past EOF, private) delivered to the program's own handler
 * while its SIGSEGV handler still gets real segfaults, fallocate, conversion
 * revoking and restoring the host mapping, and the file's lifetime across
 * dup, close, and exec. Kernel semantics: kernel-guest_memfd.md §1.2, §2.4;
 * errnos the host kernel has were measured bare on its own guest_memfd.
 */
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/syscall.h>

#include "kvm_util_min.h"

static int exec_image(int argc, char **argv);
static int run_image(const char *what, const char *a, const char *b, const char *c);

static const struct kt_config configs[] = {
	{ "in-place", "sw", "", { NULL } },
	{ "per-vm", "sw", "", { NULL } },
	{ "in-place", "sw", "", { "--check", NULL } },
};
KT_DRIVER(configs, exec_image)

#define SW	GK_X86_SW_PROTECTED_VM
#define MMAP	GK_GUEST_MEMFD_FLAG_MMAP
#define SHARED	GK_GUEST_MEMFD_FLAG_INIT_SHARED
#define GMEM	GK_MEM_GUEST_MEMFD
#define PRIV	GK_MEMORY_ATTRIBUTE_PRIVATE
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE	25
#endif

/* A VM with a mappable file whose pages the host may touch: a SW_PROTECTED
 * VM in place, a default VM per VM (x86 refuses INIT_SHARED on SW there). */
struct fx {
	int kvm, vm, fd;
	uint8_t *m;
	size_t len;
};

static struct fx fx_new(uint64_t pages)
{
	struct fx f = { .kvm = kt_kvm(), .len = pages * PG };

	f.vm = kt_vm(f.kvm, kt_per_vm() ? 0 : SW);
	f.fd = kt_gmem(f.vm, f.len, MMAP | SHARED);
	f.m = kt_map(f.fd, f.len, 0);
	return f;
}

static void fx_free(struct fx *f)
{
	if (f->m)
		ASSERT_EQ(munmap(f->m, f->len), 0);
	if (f->fd >= 0)
		close(f->fd);
	close(f->vm);
	close(f->kvm);
}

static void fill(uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

/* Is [p, p+len) filled as fill(seed) left it? */
static bool filled(const uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != (uint8_t)(seed + i * 7))
			return false;
	return true;
}

static bool zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* ------------------------------------------------------------- mmap */

KTEST(mmap_checks, "")
{
	int kvm = kt_kvm(), vm = kt_vm(kvm, SW);
	int plain = kt_gmem(vm, 2 * PG, 0), fd = kt_gmem(vm, 2 * PG, MMAP);
	void *p;

	/* Without GUEST_MEMFD_FLAG_MMAP the file has no mmap at all. */
	ASSERT_ERRNO(mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, plain, 0), ENODEV);
	ASSERT_ERRNO(mmap(NULL, PG, PROT_READ, MAP_PRIVATE, plain, 0), ENODEV);
	/* Copy-on-write is not allowed; the mount is noexec. */
	ASSERT_ERRNO(mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0), EINVAL);
	ASSERT_ERRNO(mmap(NULL, PG, PROT_READ, MAP_PRIVATE, fd, 0), EINVAL);
	ASSERT_ERRNO(mmap(NULL, PG, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0), EPERM);
	ASSERT_ERRNO(mmap(NULL, 0, PROT_READ, MAP_SHARED, fd, 0), EINVAL);
	ASSERT_ERRNO(mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 100), EINVAL);
	/*
	 * mmap's own checks come before the file's, in the kernel's order:
	 * the length, the offset's range, the flags, then noexec, before
	 * guest_memfd's ENODEV and EINVAL (measured bare).
	 */
	ASSERT_ERRNO(mmap(NULL, (size_t)-1, PROT_READ, MAP_SHARED, plain, 0), ENOMEM);
	ASSERT_ERRNO(mmap(NULL, PG, PROT_READ, MAP_SHARED, plain, -PG), EOVERFLOW);
	ASSERT_ERRNO(mmap(NULL, PG, PROT_READ, MAP_SHARED_VALIDATE | MAP_SYNC, plain, 0),
		     EOPNOTSUPP);
	ASSERT_ERRNO(mmap(NULL, PG, PROT_READ | PROT_EXEC, MAP_SHARED, plain, 0), EPERM);
	ASSERT_ERRNO(mmap(NULL, PG, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0), EPERM);
	ASSERT_ERRNO(mmap(NULL, PG, PROT_READ, MAP_SHARED | MAP_GROWSDOWN, fd, 0), EINVAL);
	/* Even MAP_FIXED_NOREPLACE is not among VALIDATE's flags, once the
	 * address is found free (a taken one is EEXIST before). */
	p = (void *)ASSERT_OK(mmap(NULL, 2 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
	ASSERT_EQ(munmap((uint8_t *)p + PG, PG), 0);
	ASSERT_ERRNO(mmap((uint8_t *)p + PG, PG, PROT_READ,
			  MAP_SHARED_VALIDATE | MAP_FIXED_NOREPLACE, fd, 0), EOPNOTSUPP);
	ASSERT_ERRNO(mmap(p, PG, PROT_READ, MAP_SHARED_VALIDATE | MAP_FIXED_NOREPLACE, fd, 0),
		     EEXIST);
	ASSERT_EQ(mmap((uint8_t *)p + PG, PG, PROT_READ, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0),
		  (uint8_t *)p + PG);
	ASSERT_EQ(munmap(p, 2 * PG), 0);
	/* MAP_SHARED drops the flags it does not know; VALIDATE takes the rest. */
	p = (void *)ASSERT_OK(mmap(NULL, PG, PROT_READ, MAP_SHARED | MAP_SYNC, fd, 0));
	ASSERT_EQ(munmap(p, PG), 0);
	p = (void *)ASSERT_OK(mmap(NULL, PG, PROT_READ, MAP_SHARED_VALIDATE, fd, 0));
	/* Nor can a mapping become executable later. */
	ASSERT_EQ(mprotect(p, PG, PROT_READ | PROT_EXEC), -1);
	ASSERT_EQ(errno, EACCES);
	ASSERT_EQ(mprotect(p, PG, PROT_READ | PROT_WRITE), 0);
	ASSERT_EQ(munmap(p, PG), 0);
	close(plain);
	close(fd);
	close(vm);
	close(kvm);
}

KTEST(mmap_fixed_at_chosen_address, "")
{
	struct fx f = fx_new(4);
	uint8_t *area = mmap(NULL, 8 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *at = area + 2 * PG, *p;
	struct kt_sig s;

	ASSERT_TRUE(area != MAP_FAILED);
	fill(f.m, f.len, 1);
	p = mmap(at, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, f.fd, PG);
	ASSERT_EQ((uintptr_t)p, (uintptr_t)at);
	ASSERT_TRUE(filled(p, 2 * PG, (uint8_t)(1 + PG * 7)));
	p[5] = 0xee;
	ASSERT_EQ(f.m[PG + 5], 0xee);
	/* The reservation around it is untouched: real SIGSEGVs. */
	s = kt_access(area + 2 * PG - 1, false, 0, NULL);
	ASSERT_EQ(s.signo, SIGSEGV);
	ASSERT_EQ(s.code, SEGV_ACCERR);
	ASSERT_EQ(kt_read_sig(area + 4 * PG), SIGSEGV);
	/* MAP_FIXED_NOREPLACE: not over a mapping, fine elsewhere. */
	ASSERT_ERRNO(mmap(at, PG, PROT_READ, MAP_SHARED | MAP_FIXED_NOREPLACE, f.fd, 0), EEXIST);
	ASSERT_EQ(munmap(area + 6 * PG, 2 * PG), 0);
	p = mmap(area + 6 * PG, PG, PROT_READ, MAP_SHARED | MAP_FIXED_NOREPLACE, f.fd, 0);
	ASSERT_EQ((uintptr_t)p, (uintptr_t)(area + 6 * PG));
	ASSERT_EQ(p[0], f.m[0]);
	/* An anonymous MAP_FIXED over the guest_memfd mapping replaces it. */
	p = mmap(at, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	ASSERT_EQ((uintptr_t)p, (uintptr_t)at);
	ASSERT_TRUE(zero(at, PG));
	at[0] = 1;
	ASSERT_EQ(f.m[PG], (uint8_t)(1 + PG * 7));
	ASSERT_EQ(munmap(area, 8 * PG), 0);
	fx_free(&f);
}

/* MAP_FIXED of one file over part of another file's mapping. */
KTEST(mmap_fixed_over_another_file, "")
{
	struct fx a = fx_new(4);
	int b = kt_gmem(a.vm, 2 * PG, MMAP | SHARED);
	uint8_t *p, *mb = kt_map(b, 2 * PG, 0);

	fill(a.m, a.len, 31);
	fill(mb, 2 * PG, 37);
	p = mmap(a.m + PG, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, b, PG);
	ASSERT_EQ((uintptr_t)p, (uintptr_t)(a.m + PG));
	ASSERT_TRUE(filled(p, PG, (uint8_t)(37 + PG * 7)));
	ASSERT_TRUE(filled(a.m + 2 * PG, 2 * PG, (uint8_t)(31 + 2 * PG * 7)));
	if (!kt_per_vm()) {
		/* a's page 1 is no longer mapped there: converting it fences nothing */
		ASSERT_EQ(kt_attr2(a.fd, PG, PG, PRIV), 0);
		ASSERT_EQ(kt_read_sig(p), 0);
		/* b's page 1 is */
		ASSERT_EQ(kt_attr2(b, PG, PG, PRIV), 0);
		ASSERT_SIGBUS_AT(p + 5, false);
		ASSERT_SIGBUS_AT(mb + PG + 5, false);
		ASSERT_EQ(kt_read_sig(a.m + 2 * PG), 0);
		ASSERT_EQ(kt_attr2(b, PG, PG, 0), 0);
		ASSERT_EQ(kt_attr2(a.fd, PG, PG, 0), 0);
	}
	p[1] = 0x66;
	ASSERT_EQ(mb[PG + 1], 0x66);
	ASSERT_EQ(munmap(mb, 2 * PG), 0);
	close(b);
	fx_free(&a);
}

KTEST(mmap_past_eof_sigbus, "")
{
	struct fx f = fx_new(2);
	uint8_t *p = kt_map(f.fd, 4 * PG, 0), *q;

	/* Mapping past the end is allowed; touching there is SIGBUS. */
	p[0] = 1;
	p[2 * PG - 1] = 2;
	ASSERT_SIGBUS_AT(p + 2 * PG, false);
	ASSERT_SIGBUS_AT(p + 3 * PG + 17, true);
	ASSERT_EQ(p[2 * PG - 1], 2);
	ASSERT_EQ(munmap(p, 4 * PG), 0);
	/* A mapping that starts at or after EOF. */
	q = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, f.fd, 2 * PG);
	ASSERT_TRUE(q != MAP_FAILED);
	ASSERT_SIGBUS_AT(q + 8, false);
	ASSERT_EQ(munmap(q, PG), 0);
	fx_free(&f);
}

KTEST(munmap_part_of_a_mapping, "")
{
	struct fx f = fx_new(4);
	struct kt_sig s;

	fill(f.m, f.len, 3);
	ASSERT_EQ(munmap(f.m + PG, 2 * PG), 0);
	/* The hole is unmapped memory now, a real SIGSEGV, not SIGBUS. */
	s = kt_access(f.m + PG + 9, false, 0, NULL);
	ASSERT_EQ(s.signo, SIGSEGV);
	ASSERT_EQ(s.code, SEGV_MAPERR);
	ASSERT_EQ((uintptr_t)s.addr, (uintptr_t)(f.m + PG + 9));
	/* Both ends still map their pages. */
	ASSERT_TRUE(filled(f.m, PG, 3));
	ASSERT_TRUE(filled(f.m + 3 * PG, PG, (uint8_t)(3 + 3 * PG * 7)));
	f.m[3 * PG] = 0x77;
	if (!kt_per_vm()) {
		/* The tail still knows its file offset (3): it is fenced. */
		ASSERT_EQ(kt_attr2(f.fd, 3 * PG, PG, PRIV), 0);
		ASSERT_SIGBUS_AT(f.m + 3 * PG + 1, false);
		ASSERT_EQ(f.m[0], 3);
		ASSERT_EQ(kt_attr2(f.fd, 3 * PG, PG, 0), 0);
		ASSERT_EQ(f.m[3 * PG], 0x77);
	}
	/* A new mapping of the middle finds the bytes. */
	{
		uint8_t *mid = kt_map(f.fd, 2 * PG, PG);

		ASSERT_TRUE(filled(mid, 2 * PG, (uint8_t)(3 + PG * 7)));
		ASSERT_EQ(munmap(mid, 2 * PG), 0);
	}
	ASSERT_EQ(munmap(f.m, PG), 0);
	ASSERT_EQ(munmap(f.m + 3 * PG, PG), 0);
	f.m = NULL;
	fx_free(&f);
}

KTEST(madvise_on_a_mapping, "")
{
	struct fx f = fx_new(4);
	uint8_t *other;

	fill(f.m, f.len, 5);
	/* Folios must never be collapsed. */
	ASSERT_ERRNO(madvise(f.m, 2 * PG, MADV_COLLAPSE), EINVAL);
	ASSERT_EQ(madvise(f.m, f.len, MADV_HUGEPAGE), 0);
	/* DONTNEED drops the page tables, not the file's pages. */
	ASSERT_EQ(madvise(f.m, PG, MADV_DONTNEED), 0);
	ASSERT_TRUE(filled(f.m, PG, 5));
	/* REMOVE punches the file: every mapping reads zero there. */
	other = kt_map(f.fd, f.len, 0);
	ASSERT_EQ(madvise(f.m + PG, 2 * PG, MADV_REMOVE), 0);
	ASSERT_TRUE(zero(f.m + PG, 2 * PG));
	ASSERT_TRUE(zero(other + PG, 2 * PG));
	ASSERT_TRUE(filled(other, PG, 5));
	ASSERT_TRUE(filled(other + 3 * PG, PG, (uint8_t)(5 + 3 * PG * 7)));
	other[PG] = 9;
	ASSERT_EQ(f.m[PG], 9);
	ASSERT_EQ(munmap(other, f.len), 0);
	/*
	 * A range over two mappings side by side, the second of them in
	 * two pieces, and a hole after them: each mapping's part is punched,
	 * then the hole fails the call with ENOMEM, as the kernel's walk
	 * over the mappings does.
	 */
	other = (uint8_t *)ASSERT_OK(mmap(NULL, 3 * f.len, PROT_NONE,
					  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
	ASSERT_EQ(mmap(other, f.len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, f.fd, 0),
		  other);
	ASSERT_EQ(mmap(other + f.len, f.len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		       f.fd, 0), other + f.len);
	ASSERT_EQ(munmap(other + 2 * f.len, f.len), 0);
	fill(f.m, f.len, 3);
	ASSERT_EQ(madvise(other + 3 * PG, 2 * PG, MADV_REMOVE), 0);
	ASSERT_TRUE(zero(f.m, PG));
	ASSERT_TRUE(zero(f.m + 3 * PG, PG));
	ASSERT_TRUE(filled(f.m + PG, 2 * PG, (uint8_t)(3 + PG * 7)));
	fill(f.m, f.len, 4);
	ASSERT_ERRNO(madvise(other + 3 * PG, 2 * f.len, MADV_REMOVE), ENOMEM);
	ASSERT_TRUE(zero(f.m, f.len));
	ASSERT_EQ(munmap(other, 2 * f.len), 0);
	fx_free(&f);
}

/*
 * What a guest_memfd's VMA lacks (measured bare): fsync, so msync(MS_SYNC)
 * is EINVAL and MS_ASYNC fine; userfaultfd, so registering it is EINVAL.
 */
KTEST(msync_and_userfaultfd_as_on_a_guest_memfd, "")
{
	struct fx f = fx_new(4);
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	uint8_t *anon;
	int uffd;

	ASSERT_ERRNO(msync(f.m, f.len, MS_SYNC), EINVAL);
	ASSERT_EQ(msync(f.m, f.len, MS_ASYNC), 0);
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	if (uffd < 0) {
		printf("# userfaultfd: %s: that part not run\n", kt_errname(errno));
		fx_free(&f);
		return;
	}
	ASSERT_EQ(ioctl(uffd, UFFDIO_API, &api), 0);
	reg.range.start = (uintptr_t)f.m + PG;
	reg.range.len = PG;
	ASSERT_ERRNO(ioctl(uffd, UFFDIO_REGISTER, &reg), EINVAL);
	anon = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(anon != MAP_FAILED);
	reg.range.start = (uintptr_t)anon;
	ASSERT_EQ(ioctl(uffd, UFFDIO_REGISTER, &reg), 0);
	close(uffd);
	munmap(anon, PG);
	fx_free(&f);
}

/* -------------------------------------------------------- the signals */

static sigjmp_buf plain_jmp;
static volatile sig_atomic_t plain_sig;
static const uint8_t *plain_page;

static void plain_handler(int sig)
{
	plain_sig = sig;
	siglongjmp(plain_jmp, 1);
}

KTEST(private_page_sigbus_to_own_handler, "")
{
	int kvm = kt_kvm(), sw = kt_vm(kvm, SW), vm0 = kt_vm(kvm, 0);
	int fd = kt_gmem(sw, 4 * PG, kt_per_vm() ? MMAP : MMAP | SHARED);
	int fd0 = kt_gmem(vm0, 2 * PG, MMAP);
	uint8_t *m = kt_map(fd, 4 * PG, 0), *m0 = kt_map(fd0, 2 * PG, 0);
	struct sigaction act = { .sa_handler = plain_handler }, old;

	/* A file without INIT_SHARED starts private: the host may not touch it. */
	ASSERT_SIGBUS_AT(m0 + PG + 100, false);
	ASSERT_SIGBUS_AT(m0, true);
	if (kt_per_vm()) {
		ASSERT_SIGBUS_AT(m + 3 * PG + 4095, false);
	} else {
		fill(m, 4 * PG, 11);
		ASSERT_EQ(kt_attr2(fd, PG, PG, PRIV), 0);
		ASSERT_SIGBUS_AT(m + PG + 123, false);
		ASSERT_SIGBUS_AT(m + PG + 4095, true);
		ASSERT_TRUE(filled(m, PG, 11));
		ASSERT_TRUE(filled(m + 2 * PG, 2 * PG, (uint8_t)(11 + 2 * PG * 7)));
	}
	/* A handler without SA_SIGINFO, installed with sigaction and signal(). */
	sigemptyset(&act.sa_mask);
	ASSERT_EQ(sigaction(SIGBUS, &act, &old), 0);
	plain_sig = 0;
	if (!sigsetjmp(plain_jmp, 1))
		m0[7] = 1;
	ASSERT_EQ(plain_sig, SIGBUS);
	ASSERT_TRUE(signal(SIGBUS, plain_handler) != SIG_ERR);
	plain_sig = 0;
	if (!sigsetjmp(plain_jmp, 1))
		(void)*(volatile uint8_t *)(m0 + 9);
	ASSERT_EQ(plain_sig, SIGBUS);
	ASSERT_EQ(sigaction(SIGBUS, &old, NULL), 0);
	ASSERT_EQ(munmap(m, 4 * PG), 0);
	ASSERT_EQ(munmap(m0, 2 * PG), 0);
	close(fd);
	close(fd0);
	close(sw);
	close(vm0);
	close(kvm);
}

/*
 * A thread that blocks every signal but SIGBUS (a VMM's vCPU thread does),
 * or runs a handler that blocks all others, still gets the kernel's SIGBUS
 * from a private page, not a forced SIGSEGV: the layer keeps SIGSEGV, which
 * gmem's fences fault through, out of the masks.
 */
static void __attribute__((unused)) full_mask_handler(int sig)
{
	plain_sig = kt_read_sig(plain_page) == SIGBUS ? sig : -1;
}

KTEST(private_page_sigbus_with_every_other_signal_blocked, "")
{
	int kvm = kt_kvm(), vm = kt_vm(kvm, 0), fd = kt_gmem(vm, 2 * PG, MMAP);
	uint8_t *m = kt_map(fd, 2 * PG, 0);	/* no INIT_SHARED: private */
	sigset_t all, old;

	sigfillset(&all);
	sigdelset(&all, SIGBUS);
	ASSERT_EQ(pthread_sigmask(SIG_SETMASK, &all, &old), 0);
	ASSERT_SIGBUS_AT(m + PG + 17, false);
	ASSERT_EQ(sigprocmask(SIG_BLOCK, &all, NULL), 0);
	ASSERT_SIGBUS_AT(m + 3, true);
	ASSERT_EQ(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
#ifndef UNDER_TSAN	/* which runs a deferred handler with every signal blocked */
	struct sigaction act = { .sa_handler = full_mask_handler, .sa_mask = all }, old_act;

	ASSERT_EQ(sigaction(SIGUSR1, &act, &old_act), 0);
	plain_page = m;
	plain_sig = 0;
	ASSERT_EQ(raise(SIGUSR1), 0);
	ASSERT_EQ(plain_sig, SIGUSR1);
	ASSERT_EQ(sigaction(SIGUSR1, &old_act, NULL), 0);
#endif
	ASSERT_EQ(munmap(m, 2 * PG), 0);
	close(fd);
	close(vm);
	close(kvm);
}

KTEST(own_sigsegv_handler_gets_real_segfaults, "")
{
	struct fx f = fx_new(2);
	uint8_t *none = mmap(NULL, 2 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *ro = mmap(NULL, PG, PROT_READ, MAP_SHARED, f.fd, 0);
	struct sigaction act = { .sa_sigaction = kt_on_signal, .sa_flags = SA_SIGINFO }, got;
	struct kt_sig s;

	ASSERT_TRUE(none != MAP_FAILED && ro != MAP_FAILED);
	/* A private page in some mapping, so the layer has fences up. */
	if (!kt_per_vm())
		ASSERT_EQ(kt_attr2(f.fd, PG, PG, PRIV), 0);
	s = kt_access(none + 5, false, 0, NULL);
	ASSERT_EQ(s.signo, SIGSEGV);
	ASSERT_EQ(s.code, SEGV_ACCERR);
	ASSERT_EQ((uintptr_t)s.addr, (uintptr_t)(none + 5));
	ASSERT_EQ(munmap(none + PG, PG), 0);
	s = kt_access(none + PG + 6, true, 1, NULL);
	ASSERT_EQ(s.signo, SIGSEGV);
	ASSERT_EQ(s.code, SEGV_MAPERR);
	ASSERT_EQ((uintptr_t)s.addr, (uintptr_t)(none + PG + 6));
	/* A NULL-pointer dereference. */
	s = kt_access((volatile uint8_t *)(uintptr_t)16, false, 0, NULL);
	ASSERT_EQ(s.signo, SIGSEGV);
	ASSERT_EQ(s.code, SEGV_MAPERR);
	ASSERT_EQ((uintptr_t)s.addr, 16);
	/* A write to a read-only guest_memfd mapping is SIGSEGV too. */
	s = kt_access(ro + 3, true, 1, NULL);
	ASSERT_EQ(s.signo, SIGSEGV);
	ASSERT_EQ(s.code, SEGV_ACCERR);
	ASSERT_EQ((uintptr_t)s.addr, (uintptr_t)(ro + 3));
	/* sigaction reads back the program's own action. */
	sigemptyset(&act.sa_mask);
	ASSERT_EQ(sigaction(SIGSEGV, &act, NULL), 0);
	ASSERT_EQ(sigaction(SIGSEGV, NULL, &got), 0);
	ASSERT_EQ((uintptr_t)got.sa_sigaction, (uintptr_t)kt_on_signal);
	ASSERT_TRUE(got.sa_flags & SA_SIGINFO);
	act.sa_handler = SIG_DFL;
	act.sa_flags = 0;
	ASSERT_EQ(sigaction(SIGSEGV, &act, NULL), 0);
	ASSERT_EQ(munmap(none, PG), 0);
	ASSERT_EQ(munmap(ro, PG), 0);
	fx_free(&f);
}

static uint8_t *child_target;

static void touch_with(void *how)
{
	sigset_t set;

	/* Say it: a sanitizer's runtime catches these signals by default. */
	signal(SIGBUS, SIG_DFL);
	signal(SIGSEGV, SIG_DFL);
	if (!strcmp(how, "ignored"))
		signal(SIGBUS, SIG_IGN);
	if (!strcmp(how, "blocked")) {
		sigemptyset(&set);
		sigaddset(&set, SIGBUS);
		sigprocmask(SIG_BLOCK, &set, NULL);
	}
	*(volatile uint8_t *)child_target = 1;
}

/* With no handler, or SIGBUS blocked or ignored, the fault kills (force_sig);
 * so does a segfault with SIGSEGV at its default. */
KTEST(fault_signals_kill_without_handler, "")
{
	int kvm = kt_kvm(), vm0 = kt_vm(kvm, 0), fd = kt_gmem(vm0, PG, MMAP);
	uint8_t *m = kt_map(fd, 2 * PG, 0);
	uint8_t *none = mmap(NULL, PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	fflush(stdout);
	child_target = m;			/* private: no INIT_SHARED */
	ASSERT_EQ(run_in_child(touch_with, (void *)"default"), SIGBUS);
	ASSERT_EQ(run_in_child(touch_with, (void *)"ignored"), SIGBUS);
	ASSERT_EQ(run_in_child(touch_with, (void *)"blocked"), SIGBUS);
	child_target = m + PG;			/* past EOF */
	ASSERT_EQ(run_in_child(touch_with, (void *)"blocked"), SIGBUS);
	child_target = none;
	ASSERT_EQ(run_in_child(touch_with, (void *)"default"), SIGSEGV);
	ASSERT_EQ(munmap(m, 2 * PG), 0);
	ASSERT_EQ(munmap(none, PG), 0);
	close(fd);
	close(vm0);
	close(kvm);
}

/* ----------------------------------------------------------- fallocate */

KTEST(fallocate_modes_eopnotsupp, "")
{
	/* Measured bare: every mode but KEEP_SIZE and PUNCH_HOLE|KEEP_SIZE. */
	static const int modes[] = { 0, 0x02, 0x04, 0x05, 0x08, 0x10, 0x11, 0x20, 0x21,
				     0x40, 0x41, 0x80, 0x81, 0x100, 0x07, 0x13 };
	struct fx f = fx_new(4);

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		ASSERT_ERRNO(fallocate(f.fd, modes[i], 0, PG), EOPNOTSUPP);
		/* the mode is checked before the alignment */
		ASSERT_ERRNO(fallocate(f.fd, modes[i], 1, 1), EOPNOTSUPP);
	}
	fx_free(&f);
}

KTEST(fallocate_bad_ranges, "")
{
	struct fx f = fx_new(4);

	/* The VFS first: offset < 0, len <= 0, then the sum's overflow. */
	ASSERT_ERRNO(fallocate(f.fd, KT_KEEP, -PG, PG), EINVAL);
	ASSERT_ERRNO(fallocate(f.fd, KT_PUNCH, 0, 0), EINVAL);
	ASSERT_ERRNO(fallocate(f.fd, KT_KEEP, 0, -PG), EINVAL);
	ASSERT_ERRNO(fallocate(f.fd, 0, -1, 0), EINVAL);
	/* Then guest_memfd: page alignment. */
	ASSERT_ERRNO(fallocate(f.fd, KT_KEEP, 1, PG), EINVAL);
	ASSERT_ERRNO(fallocate(f.fd, KT_KEEP, 0, 100), EINVAL);
	ASSERT_ERRNO(fallocate(f.fd, KT_PUNCH, PG + 1, PG), EINVAL);
	ASSERT_ERRNO(fallocate(f.fd, KT_PUNCH, 0, PG + 1), EINVAL);
	/* Allocation must stay inside the file; a punch need not. */
	ASSERT_ERRNO(fallocate(f.fd, KT_KEEP, 4 * PG, PG), EINVAL);
	ASSERT_ERRNO(fallocate(f.fd, KT_KEEP, 3 * PG, 2 * PG), EINVAL);
	ASSERT_EQ(fallocate(f.fd, KT_KEEP, 0, 4 * PG), 0);
	ASSERT_EQ(fallocate(f.fd, KT_PUNCH, 4 * PG, PG), 0);
	ASSERT_EQ(fallocate(f.fd, KT_PUNCH, 1LL << 40, PG), 0);
	ASSERT_EQ(fallocate(f.fd, KT_PUNCH, 0x7fffffffff000000LL, PG), 0);
	fx_free(&f);
}

/*
 * offset + len past LLONG_MAX: EFBIG (the VFS's check_add_overflow). Run in
 * a new image of this program (a forked child's guest_memfd calls are EIO):
 * the layer's own check has been a signed overflow, which a UBSan build of
 * the layer turns into an abort.
 */
KTEST(fallocate_sum_overflow_efbig, "")
{
	int code = run_image("efbig", NULL, NULL, NULL);

	ASSERT_EQ(code, 0);
}

/* mlockall after the first VM: run in an image of its own (see exec_mlock). */
KTEST(mlockall_locks_on_fault_and_conversion_still_fences, "")
{
	ASSERT_EQ(run_image("mlock", NULL, NULL, NULL), 0);
}

KTEST(fallocate_punch_zeroes, "")
{
	struct fx f = fx_new(4);
	uint8_t *other;

	fill(f.m, f.len, 9);
	ASSERT_EQ(fallocate(f.fd, KT_PUNCH, PG, 2 * PG), 0);
	other = kt_map(f.fd, f.len, 0);
	ASSERT_TRUE(zero(f.m + PG, 2 * PG));
	ASSERT_TRUE(zero(other + PG, 2 * PG));
	ASSERT_TRUE(filled(f.m, PG, 9));
	ASSERT_TRUE(filled(f.m + 3 * PG, PG, (uint8_t)(9 + 3 * PG * 7)));
	/* Allocating does not bring old bytes back; a write after a punch sticks. */
	ASSERT_EQ(fallocate(f.fd, KT_KEEP, 0, f.len), 0);
	ASSERT_TRUE(zero(other + PG, 2 * PG));
	f.m[2 * PG] = 4;
	ASSERT_EQ(other[2 * PG], 4);
	/* A punch straddling EOF clears the part inside. */
	ASSERT_EQ(fallocate(f.fd, KT_PUNCH, 3 * PG, 4 * PG), 0);
	ASSERT_TRUE(zero(other + 3 * PG, PG));
	ASSERT_TRUE(filled(other, PG, 9));
	ASSERT_EQ(munmap(other, f.len), 0);
	fx_free(&f);
}

/* --------------------------------------- conversion and host mappings */

KTEST(conversion_revokes_and_restores_host_mapping, "")
{
	struct fx f;
	uint8_t *late;

	KT_ONLY(!kt_per_vm());	/* per VM, the file's pages do not convert */
	f = fx_new(4);
	fill(f.m, f.len, 13);
	ASSERT_EQ(kt_attr2(f.fd, PG, 2 * PG, PRIV), 0);
	ASSERT_SIGBUS_AT(f.m + PG, false);
	ASSERT_SIGBUS_AT(f.m + 3 * PG - 1, true);
	ASSERT_TRUE(filled(f.m, PG, 13));
	ASSERT_EQ(f.m[3 * PG], (uint8_t)(13 + 3 * PG * 7));
	/* A mapping made while the pages are private cannot touch them either. */
	late = kt_map(f.fd, f.len, 0);
	ASSERT_SIGBUS_AT(late + 2 * PG + 8, false);
	/* Back to shared: both mappings work, and on sw every byte is kept. */
	ASSERT_EQ(kt_attr2(f.fd, PG, 2 * PG, 0), 0);
	ASSERT_TRUE(filled(f.m, f.len, 13));
	ASSERT_TRUE(filled(late, f.len, 13));
	/* Punched while private: zero when shared again. */
	ASSERT_EQ(kt_attr2(f.fd, 0, f.len, PRIV), 0);
	ASSERT_SIGBUS_AT(late, false);
	ASSERT_EQ(fallocate(f.fd, KT_PUNCH, 2 * PG, PG), 0);
	ASSERT_EQ(kt_attr2(f.fd, 0, f.len, 0), 0);
	ASSERT_TRUE(zero(late + 2 * PG, PG));
	ASSERT_TRUE(filled(late, 2 * PG, 13));
	ASSERT_EQ(munmap(late, f.len), 0);
	fx_free(&f);
}

/*
 * Per VM, host access to a guest_memfd is the file's INIT_SHARED and nothing
 * else: KVM_SET_MEMORY_ATTRIBUTES is about the guest's faults. A file
 * without INIT_SHARED (all a SW_PROTECTED VM may have per VM) stays
 * off-limits to the host whatever the VM's attributes say.
 */
KTEST(per_vm_attributes_leave_host_mapping_alone, "")
{
	int kvm, vm, fd;
	uint8_t *m;

	KT_ONLY(kt_per_vm());
	kvm = kt_kvm();
	vm = kt_vm(kvm, SW);
	fd = kt_gmem(vm, 2 * PG, MMAP);
	m = kt_map(fd, 2 * PG, 0);
	ASSERT_EQ(kt_region(vm, 0, GMEM, 0, 2 * PG, 0, fd, 0), 0);
	ASSERT_SIGBUS_AT(m, false);
	ASSERT_EQ(kt_attr(vm, 0, 2 * PG, PRIV), 0);
	ASSERT_SIGBUS_AT(m + PG, false);
	ASSERT_EQ(kt_attr(vm, 0, 2 * PG, 0), 0);
	ASSERT_SIGBUS_AT(m + 8, false);
	ASSERT_EQ(munmap(m, 2 * PG), 0);
	close(fd);
	close(vm);
	close(kvm);
}

/* ----------------------------------------------------- the file's life */

/*
 * A fork child keeps the shared pages of the mapping it inherits, and the
 * parent's conversions reach it both ways, single pages and whole 2 MiB
 * chunks: gmem's handler in the child makes its own system calls, which
 * the layer must not take for the program's. The child answers each step
 * with the signal its read raised (0: read the parent's byte).
 */
static int child_step(int in, int out, const uint8_t *p)
{
	struct pollfd pfd = { .fd = in, .events = POLLIN };
	char go;
	uint8_t sig;

	/* Wait in poll: ThreadSanitizer runs a handler at once only in calls
	 * it knows to block, and the child answers gmem's shootdown meanwhile. */
	while (poll(&pfd, 1, -1) < 0)
		if (errno != EINTR)
			return -1;
	if (read(in, &go, 1) != 1)
		return -1;
	sig = (uint8_t)kt_read_sig(p);
	return write(out, &sig, 1) == 1 ? 0 : -1;
}

KTEST(fork_child_follows_the_parents_conversions, "")
{
	static const struct { uint64_t page, npages; bool private; } steps[] = {
		{ 20, 1, true }, { 20, 1, false },		/* one page */
		{ 512, 512, true }, { 512, 512, false },	/* a whole chunk */
	};
	const size_t n = sizeof(steps) / sizeof(steps[0]);
	struct fx f;
	int to_child[2], from_child[2], status;
	pid_t pid;

	KT_ONLY(!kt_per_vm());
	f = fx_new(1024);
	fill(f.m, f.len, 11);
	ASSERT_EQ(pipe(to_child), 0);
	ASSERT_EQ(pipe(from_child), 0);
	fflush(stdout);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		alarm(20);	/* a child stuck in its handler fails, not hangs */
		for (size_t i = 0; i < n; i++)
			if (child_step(to_child[0], from_child[1],
				       f.m + (steps[i].page + steps[i].npages / 2) * PG))
				_exit(1);
		_exit(0);
	}
	for (size_t i = 0; i < n; i++) {
		uint8_t sig = 0xff;

		int r = kt_attr2(f.fd, steps[i].page * PG, steps[i].npages * PG,
				 steps[i].private ? PRIV : 0);

		if (r)
			printf("#   step %zu: KVM_SET_MEMORY_ATTRIBUTES2: %s\n", i,
			       kt_errname(errno));
		ASSERT_EQ(r, 0);
		ASSERT_EQ(write(to_child[1], "s", 1), 1);
		ASSERT_EQ(read(from_child[0], &sig, 1), 1);
		ASSERT_EQ(sig, steps[i].private ? SIGBUS : 0);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
	close(to_child[0]);
	close(to_child[1]);
	close(from_child[0]);
	close(from_child[1]);
	fx_free(&f);
}

/*
 * Half a mapping marked MADV_DONTFORK, as VMMs mark guest memory: a fork
 * child keeps the other half, and its fork-time bookkeeping of the hole
 * must not come back through the layer's own munmap (it hung there).
 */
KTEST(fork_child_of_a_partly_dontfork_mapping, "")
{
	struct fx f = fx_new(1024);
	int status;
	pid_t pid;

	fill(f.m, f.len, 13);
	ASSERT_EQ(madvise(f.m + f.len / 2, f.len / 2, MADV_DONTFORK), 0);
	fflush(stdout);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0)
		_exit(filled(f.m, f.len / 2, 13) ? 0 : 1);
	/* A child stuck in fork itself: killed after 20 s, and a failure. */
	for (int i = 0; i < 2000 && !waitpid(pid, &status, WNOHANG); i++)
		usleep(10000);
	if (!waitpid(pid, &status, WNOHANG)) {
		kill(pid, SIGKILL);
		ASSERT_EQ(waitpid(pid, &status, 0), pid);
	}
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
	fx_free(&f);
}

KTEST(dup_then_close_original_keeps_file, "")
{
	struct fx f = fx_new(2);
	struct stat s1, s2;
	int d;
	uint8_t *m;

	fill(f.m, f.len, 17);
	ASSERT_EQ(munmap(f.m, f.len), 0);
	f.m = NULL;
	ASSERT_EQ(fstat(f.fd, &s1), 0);
	d = (int)ASSERT_OK(dup(f.fd));
	close(f.fd);
	f.fd = (int)ASSERT_OK(fcntl(d, F_DUPFD_CLOEXEC, 100));
	close(d);
	ASSERT_EQ(fstat(f.fd, &s2), 0);
	ASSERT_EQ(s1.st_ino, s2.st_ino);
	m = kt_map(f.fd, f.len, 0);
	ASSERT_TRUE(filled(m, f.len, 17));
	ASSERT_EQ(fallocate(f.fd, KT_PUNCH, PG, PG), 0);
	ASSERT_TRUE(zero(m + PG, PG));
	ASSERT_EQ(kt_region(f.vm, 0, GMEM, 0, f.len, 0, f.fd, 0), 0);
	if (!kt_per_vm())
		ASSERT_EQ(kt_attr2(f.fd, 0, PG, PRIV), 0);
	ASSERT_EQ(munmap(m, f.len), 0);
	fx_free(&f);
}

KTEST(close_all_fds_mapping_keeps_pages, "")
{
	struct fx f = fx_new(3);
	int d;

	fill(f.m, f.len, 19);
	ASSERT_EQ(kt_region(f.vm, 0, GMEM, 0, f.len, 0, f.fd, 0), 0);
	d = (int)ASSERT_OK(dup(f.fd));
	close(f.fd);
	close(d);
	f.fd = -1;
	/* No fd names the file, but the mapping holds it: pages stay. */
	ASSERT_TRUE(filled(f.m, f.len, 19));
	f.m[PG] = 0x42;
	ASSERT_EQ(f.m[PG], 0x42);
	ASSERT_EQ(munmap(f.m + 2 * PG, PG), 0);
	ASSERT_TRUE(filled(f.m, PG, 19));
	ASSERT_EQ(munmap(f.m, 2 * PG), 0);
	f.m = NULL;
	/* The last mapping ended the file; the VM goes on. */
	d = kt_gmem(f.vm, PG, MMAP | SHARED);
	ASSERT_EQ(kt_region(f.vm, 1, GMEM, 0x100000, PG, 0, d, 0), 0);
	close(d);
	fx_free(&f);
}

/* The file pins its VM: with the VM fd closed it still works. */
KTEST(file_outlives_vm_fd, "")
{
	struct fx f = fx_new(2);
	uint8_t *m;

	fill(f.m, f.len, 23);
	close(f.vm);
	f.vm = kt_vm(f.kvm, 0);		/* fx_free closes this one */
	ASSERT_EQ(fallocate(f.fd, KT_KEEP, 0, f.len), 0);
	ASSERT_EQ(fallocate(f.fd, KT_PUNCH, PG, PG), 0);
	m = kt_map(f.fd, f.len, 0);
	ASSERT_TRUE(filled(m, PG, 23));
	ASSERT_TRUE(zero(m + PG, PG));
	if (!kt_per_vm()) {
		ASSERT_EQ(kt_attr2(f.fd, 0, PG, PRIV), 0);
		ASSERT_SIGBUS_AT(m, false);
	}
	ASSERT_EQ(munmap(m, f.len), 0);
	fx_free(&f);
}

/*
 * exec: the guest_memfd fd is not close-on-exec (the VM's is: the test
 * clears that flag), so it survives into the new image, which runs under
 * the layer again (gmem exec's LD_PRELOAD is in the environment). What we
 * observe there:
 *   - the guest_memfd fd is open, fstat gives the file's size (it is the
 *     layer's placeholder, a real guest_memfd);
 *   - VM ioctls fail with EIO, as the kernel's do: the VM belongs to the
 *     old mm (the layer passes the unknown fd to the real VM, which says so);
 *   - the new image's layer does not know the file (docs/kvm.md): mmap of
 *     it fails with ENODEV (the placeholder was made without MMAP) and
 *     KVM_SET_MEMORY_ATTRIBUTES2 gives ENOTTY, where the kernel would map the
 *     file with its content and convert it. Those two are printed, not
 *     asserted.
 */
static int exec_fds(int argc, char **argv)
{
	int vm, fd, bad = 0;
	uint64_t size;
	struct stat st;
	void *m;

	if (argc < 6)
		return 2;
	vm = atoi(argv[3]);
	fd = atoi(argv[4]);
	size = strtoull(argv[5], NULL, 0);
	if (fstat(fd, &st) || (uint64_t)st.st_size != size) {
		printf("#   exec: the guest_memfd fd did not survive\n");
		bad = 1;
	}
	errno = 0;
	if (ioctl(vm, KVM_CHECK_EXTENSION, GK_CAP_GUEST_MEMFD) != -1 || errno != EIO) {
		printf("#   exec: VM ioctl: %s, expected EIO\n", kt_errname(errno));
		bad = 1;
	}
	m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	printf("# exec: after exec, mmap of the inherited guest_memfd: %s\n",
	       m == MAP_FAILED ? kt_errname(errno) : "mapped");
	printf("# exec: after exec, KVM_SET_MEMORY_ATTRIBUTES2 on it: %s\n",
	       kt_attr2(fd, 0, PG, 0) ? kt_errname(errno) : "ok");
	fflush(stdout);
	return bad;
}

/* 0 EFBIG (EOPNOTSUPP first for a bad mode), 10 success, 11 another errno
 * than EFBIG, 12 no VM, 13 another errno than EOPNOTSUPP. */
static int exec_efbig(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm, fd, r;

	vm = kvm < 0 ? -1 : ioctl(kvm, KVM_CREATE_VM, 0);
	fd = vm < 0 ? -1 : kt_gmem_try(vm, PG, MMAP | SHARED);
	if (fd < 0)
		return 12;
	r = fallocate(fd, KT_PUNCH, 0x7ffffffffffff000LL, 2 * PG);
	if (r == 0 || errno != EFBIG)
		return r == 0 ? 10 : 11;
	/* A mode the VFS refuses is refused before the sum is looked at. */
	r = fallocate(fd, 0x02, 0x7ffffffffffff000LL, 2 * PG);
	if (r == 0 || errno != EOPNOTSUPP)
		return r == 0 ? 10 : 13;
	r = fallocate(fd, 0x100, 0x7ffffffffffff000LL, 2 * PG);
	return r == 0 ? 10 : errno == EOPNOTSUPP ? 0 : 13;
}

/*
 * A program that locks all its memory after its first VM, as a VMM run
 * with its memory locked does: 0 if mlockall faulted nothing of gmem's in
 * (its pool's direct map is 4 TiB) and a page of the locked mapping still
 * converts (in place); 20 + the step that failed, 12 no VM. Should the
 * pool come in all the same, this image is the one the OOM killer takes.
 */
static int exec_mlock(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm, fd, adj;
	uint8_t *m;
	long before;

	adj = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (adj >= 0) {
		if (write(adj, "1000", 4) != 4)
			return 20;
		close(adj);
	}
	vm = kvm < 0 ? -1 : ioctl(kvm, KVM_CREATE_VM, kt_per_vm() ? 0 : SW);
	fd = vm < 0 ? -1 : kt_gmem_try(vm, 4 * PG, MMAP | SHARED);
	if (fd < 0)
		return 12;
	m = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return 21;
	fill(m, 4 * PG, 23);
	before = proc_status_kib("VmRSS");
	if (mlockall(MCL_CURRENT | MCL_FUTURE))
		return 22;
	if (proc_status_kib("VmRSS") - before > 64 << 10)
		return 23;
	if (!kt_per_vm() && (kt_attr2(fd, PG, PG, PRIV) || kt_attr2(fd, PG, PG, 0)))
		return 24;
	if (!filled(m, 4 * PG, 23))
		return 25;
	return 0;
}

static int exec_image(int argc, char **argv)
{
	if (argc > 2 && !strcmp(argv[2], "fds"))
		return exec_fds(argc, argv);
	if (argc > 2 && !strcmp(argv[2], "efbig"))
		return exec_efbig();
	if (argc > 2 && !strcmp(argv[2], "mlock"))
		return exec_mlock();
	return 2;
}

/* Run this program anew as "--kt-exec WHAT ARGS..."; its exit status, or
 * 100 + the signal that killed it. */
static int run_image(const char *what, const char *a, const char *b, const char *c)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	int status;
	pid_t pid;

	ASSERT_GT(n, 0);
	self[n] = 0;
	fflush(stdout);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		execl(self, self, "--kt-exec", what, a, b, c, (char *)NULL);
		_exit(127);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

KTEST(exec_keeps_fds, "")
{
	struct fx f = fx_new(2);
	char vmfd[16], fd[16], size[32];
	int vcpu;

	/* guest_memfd: get_unused_fd_flags(0); VM and vCPU fds: O_CLOEXEC. */
	ASSERT_EQ(fcntl(f.fd, F_GETFD) & FD_CLOEXEC, 0);
	ASSERT_EQ(fcntl(f.vm, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	vcpu = (int)ASSERT_OK(ioctl(f.vm, KVM_CREATE_VCPU, 0));
	ASSERT_EQ(fcntl(vcpu, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	close(vcpu);
	/* Keep the VM fd across exec too, to see what the new image gets. */
	ASSERT_EQ(fcntl(f.vm, F_SETFD, 0), 0);
	snprintf(vmfd, sizeof(vmfd), "%d", f.vm);
	snprintf(fd, sizeof(fd), "%d", f.fd);
	snprintf(size, sizeof(size), "%zu", f.len);
	ASSERT_EQ(run_image("fds", vmfd, fd, size), 0);
	/* The parent's file and VM are still its own. */
	f.m[0] = 1;
	ASSERT_EQ(ioctl(f.vm, KVM_CHECK_EXTENSION, GK_CAP_GUEST_MEMFD), 1);
	fx_free(&f);
}
