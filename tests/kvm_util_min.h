/* SPDX-License-Identifier: MIT */
/*
 * kvm_util_min.h - what the black-box tests of libgmem-kvm share: the few
 * KVM UAPI calls they make (numbers and structs from kvm/uapi.h), errno
 * assertions, a signal probe that reports si_code and si_addr, and the
 * driver that runs a test program under "gmem exec" once per configuration.
 *
 * Our own code. Linux's KVM selftests (GPL-2.0) were read for facts only.
 * Header-only, because the Makefile links each tests/test_*.c alone with
 * tests/harness.c (and does not rebuild a test when this header changes:
 * touch the .c files after editing it).
 *
 * How a test program runs (KT_DRIVER below):
 *   - bare (GMEM_KVM_UNDER_TEST unset), a constructor is the driver: for
 *     each configuration it runs "<dir of the program>/../gmem exec OPTIONS --
 *     <the program>" in a child with GMEM_KVM_UNDER_TEST=1 (and
 *     verify_asan_link_order=0 added to ASAN_OPTIONS, as a sanitized
 *     program preloading the sanitized layer needs), reads its TAP lines and
 *     prints them renumbered, each name prefixed with the configuration
 *     ("ok 7 - per-vm/sw: memslot_overlap_eexist"). A child that crashes or
 *     exits badly without a "not ok" line becomes one. Exit: 1 if anything
 *     failed, 77 if nothing ran (or /dev/kvm cannot be opened read-write),
 *     else 0.
 *   - under the layer, the harness's main() runs every TEST; a TEST that is
 *     not part of the configuration's suite skips with KT_NOT_HERE and the
 *     driver drops that line.
 */
#ifndef GMEM_TEST_KVM_UTIL_MIN_H
#define GMEM_TEST_KVM_UTIL_MIN_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../kvm/uapi.h"
#include "harness.h"

#define PG		4096ULL
#define KT_NOT_HERE	"not in this configuration"

/* ------------------------------------------------------ configuration */

struct kt_config {
	const char *model;	/* --attributes: in-place, per-vm */
	const char *arch;	/* --arch: sw, snp, tdx, pkvm */
	const char *suite;	/* "": every TEST; else only TESTs tagged so */
	const char *extra[4];	/* more options of gmem exec, NULL-ended */
};

static inline const char *kt_env(const char *name, const char *dflt)
{
	const char *s = getenv(name);

	return s && *s ? s : dflt;
}

static inline bool kt_per_vm(void)
{
	return !strcmp(kt_env("GMEM_KVM_TEST_MODEL", "in-place"), "per-vm");
}

static inline const char *kt_arch(void)
{
	return kt_env("GMEM_KVM_TEST_ARCH", "sw");
}

static inline bool kt_legacy(void)
{
	return !strcmp(kt_env("GMEM_KVM_TEST_CONTRACT", "split"), "legacy");
}

/* Is the TEST tagged @tags (space-separated) part of this run's suite? */
static inline bool kt_in_suite(const char *tags)
{
	const char *suite = kt_env("GMEM_KVM_TEST_SUITE", "");
	size_t n = strlen(suite);

	if (!n)
		return true;
	for (const char *p = tags; (p = strstr(p, suite)); p += n)
		if ((p == tags || p[-1] == ' ') && (p[n] == ' ' || !p[n]))
			return true;
	return false;
}

/* First statement of a TEST: run only in suites @tags ("" = the full run). */
#define KT_SUITE(tags) do {						\
	if (!kt_in_suite(tags))						\
		test_skip(KT_NOT_HERE);					\
} while (0)
#define KT_ONLY(cond) do { if (!(cond)) test_skip(KT_NOT_HERE); } while (0)

/*
 * A TEST that runs in the full run and in the named suites @tags: a
 * configuration with a suite runs only the KTESTs tagged with it.
 */
#define KTEST(name, tags)						\
	static void kt_body_##name(void);				\
	TEST(name) { KT_SUITE(tags); kt_body_##name(); }		\
	static void kt_body_##name(void)

/* ----------------------------------------------------------- asserts */

/*
 * A layer bug already reported: while the layer still behaves so, the TEST
 * says it in a TAP skip ("TODO layer bug") instead of failing; once fixed,
 * the assertions after it check the kernel's answer.
 */
#define KNOWN_BUG(cond, what) do {					\
	if (cond) {							\
		printf("# TODO layer bug: %s\n", what);			\
		test_skip("TODO layer bug: " what);			\
	}								\
} while (0)

static inline const char *kt_errname(int e)
{
	const char *s = strerrorname_np(e);

	return s ? s : "?";
}

/* @call fails with -1 and errno @err (mmap: MAP_FAILED is -1 too). */
#define ASSERT_ERRNO(call, err) do {					\
	errno = 0;							\
	long _r = (long)(call);						\
	int _e = errno;							\
	if (_r != -1 || _e != (err))					\
		printf("#   %s: returned %ld (%s), expected -1 (%s)\n",	\
		       #call, _r, _r == -1 ? kt_errname(_e) : "no error", \
		       kt_errname(err));				\
	ASSERT_EQ(_r, -1);						\
	ASSERT_EQ(_e, err);						\
} while (0)

/* @call succeeds (returns >= 0; for mmap, not MAP_FAILED). */
#define ASSERT_OK(call) ({						\
	errno = 0;							\
	long _r = (long)(call);						\
	if (_r == -1)							\
		printf("#   %s: failed (%s)\n", #call, kt_errname(errno));	\
	ASSERT_NE(_r, -1);						\
	_r;								\
})

/* ----------------------------------------------------------- the UAPI */

static inline int kt_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	ASSERT_GE(fd, 0);
	return fd;
}

static inline int kt_vm(int kvm, unsigned long type)
{
	return (int)ASSERT_OK(ioctl(kvm, KVM_CREATE_VM, type));
}

static inline int kt_gmem_try(int vm, uint64_t size, uint64_t flags)
{
	struct gk_create_guest_memfd g = { .size = size, .flags = flags };

	return ioctl(vm, GK_CREATE_GUEST_MEMFD, &g);
}

static inline int kt_gmem(int vm, uint64_t size, uint64_t flags)
{
	return (int)ASSERT_OK(kt_gmem_try(vm, size, flags));
}

static inline int kt_region(int vm, uint32_t slot, uint32_t flags, uint64_t gpa,
			    uint64_t size, const void *hva, int gfd, uint64_t off)
{
	struct gk_userspace_memory_region2 r = {
		.slot = slot, .flags = flags, .guest_phys_addr = gpa,
		.memory_size = size, .userspace_addr = (uint64_t)(uintptr_t)hva,
		.guest_memfd = (uint32_t)gfd, .guest_memfd_offset = off,
	};

	return ioctl(vm, GK_SET_USER_MEMORY_REGION2, &r);
}

/* KVM_SET_MEMORY_ATTRIBUTES2 on a guest_memfd (in place). */
static inline int kt_attr2(int gfd, uint64_t off, uint64_t size, uint64_t attrs)
{
	struct gk_memory_attributes2 a = { .offset = off, .size = size,
					   .attributes = attrs };

	return ioctl(gfd, GK_SET_MEMORY_ATTRIBUTES2, &a);
}

/* KVM_SET_MEMORY_ATTRIBUTES on a VM (per VM). */
static inline int kt_attr(int vm, uint64_t gpa, uint64_t size, uint64_t attrs)
{
	struct gk_memory_attributes a = { .address = gpa, .size = size,
					  .attributes = attrs };

	return ioctl(vm, GK_SET_MEMORY_ATTRIBUTES, &a);
}

#define KT_KEEP		0x01	/* FALLOC_FL_KEEP_SIZE */
#define KT_PUNCH	0x03	/* FALLOC_FL_PUNCH_HOLE | KEEP_SIZE */

static inline void *kt_map(int gfd, size_t len, off_t off)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, gfd, off);

	if (p == MAP_FAILED)
		printf("#   mmap of the guest_memfd: %s\n", kt_errname(errno));
	ASSERT_TRUE(p != MAP_FAILED);
	return p;
}

/* ------------------------------------------------------ signal probe */

/* What a probed access raised: signo 0 if nothing. */
struct kt_sig {
	int signo, code;
	void *addr;
};

static sigjmp_buf kt_jmp;
static struct kt_sig kt_caught;

static inline void kt_on_signal(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	kt_caught.signo = sig;
	kt_caught.code = si->si_code;
	kt_caught.addr = si->si_addr;
	siglongjmp(kt_jmp, 1);
}

/*
 * Read (or write @val at) @p with the program's own SIGSEGV and SIGBUS
 * handlers installed (SA_SIGINFO); what it raised is returned and the
 * handlers are put back. One thread at a time.
 */
static inline struct kt_sig kt_access(volatile uint8_t *p, bool write, uint8_t val,
				      uint8_t *out)
{
	struct sigaction act = { .sa_sigaction = kt_on_signal, .sa_flags = SA_SIGINFO };
	struct sigaction old_segv, old_bus;
	static volatile uint8_t sink;

	sigemptyset(&act.sa_mask);
	memset(&kt_caught, 0, sizeof(kt_caught));
	sigaction(SIGSEGV, &act, &old_segv);
	sigaction(SIGBUS, &act, &old_bus);
	if (!sigsetjmp(kt_jmp, 1)) {
		if (write)
			*p = val;
		else
			sink = *p;
		if (out && !write)
			*out = sink;
	}
	sigaction(SIGSEGV, &old_segv, NULL);
	sigaction(SIGBUS, &old_bus, NULL);
	return kt_caught;
}

static inline int kt_read_sig(const void *p)
{
	return kt_access((volatile uint8_t *)p, false, 0, NULL).signo;
}

static inline int kt_write_sig(void *p, uint8_t v)
{
	return kt_access((volatile uint8_t *)p, true, v, NULL).signo;
}

/* The access raised SIGBUS, BUS_ADRERR, at exactly @p. */
#define ASSERT_SIGBUS_AT(p, write) do {					\
	struct kt_sig _s = kt_access((volatile uint8_t *)(p), write, 0x5a, NULL); \
	ASSERT_EQ(_s.signo, SIGBUS);					\
	ASSERT_EQ(_s.code, BUS_ADRERR);					\
	ASSERT_EQ((uintptr_t)_s.addr, (uintptr_t)(p));			\
} while (0)

/* ------------------------------------------------------------ driver */

static inline void kt_add_env(const char *name, const char *add)
{
	const char *old = getenv(name);
	char buf[1024];

	if (old && strstr(old, add))
		return;
	snprintf(buf, sizeof(buf), "%s%s%s", old && *old ? old : "",
		 old && *old ? ":" : "", add);
	setenv(name, buf, 1);
}

static inline void kt_config_name(const struct kt_config *c, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s", c->model, c->arch);

	for (int i = 0; c->extra[i] && n < (int)len; i++)
		n += snprintf(buf + n, len - n, "%s%s", i ? " " : " ", c->extra[i]);
	if (*c->suite && n < (int)len)
		snprintf(buf + n, len - n, " [%s]", c->suite);
}

extern void __tsan_init(void) __attribute__((weak));

/*
 * An unsymbolized sanitizer frame "#3 <null> <null> (libgmem-kvm.so+0x669f)"
 * of this program or of a file beside gmem: append addr2line's answer.
 */
static inline void kt_symbolize(const char *line, const char *self, const char *gmem,
				char *out, size_t len)
{
	const char *open_ = strrchr(line, '('), *plus = open_ ? strstr(open_, "+0x") : NULL;
	char mod[256], path[PATH_MAX + 300], cmd[2 * PATH_MAX + 400], res[512] = "";
	const char *base = strrchr(self, '/');
	FILE *p;

	snprintf(out, len, "%s", line);
	if (!strstr(line, "<null> <null>") || !plus || plus - open_ - 1 >= (long)sizeof(mod))
		return;
	snprintf(mod, (size_t)(plus - open_), "%s", open_ + 1);
	if (base && !strcmp(mod, base + 1)) {
		snprintf(path, sizeof(path), "%s", self);
	} else {
		snprintf(path, sizeof(path), "%s", gmem);
		*strrchr(path, '/') = 0;
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "/%s", mod);
		if (access(path, R_OK))
			return;
	}
	snprintf(cmd, sizeof(cmd), "addr2line -f -i -e '%s' %.*s 2>/dev/null", path,
		 (int)strcspn(plus + 1, ")"), plus + 1);
	p = popen(cmd, "r");
	if (!p)
		return;
	for (size_t n = 0; fgets(res + n, (int)(sizeof(res) - n), p); n = strlen(res))
		res[strcspn(res, "\n")] = ' ';
	pclose(p);
	snprintf(out, len, "%s  %s", line, res);
}

/* One configuration: run, relay; returns tests printed, counts failures. */
static inline int kt_run_config(const struct kt_config *c, const char *gmem,
				const char *self, int num, int *failed, int *ran)
{
	const char *argv[24];
	char name[160], last[160] = "", *line = NULL;
	int pfd[2], status, a = 0, bad = 0, printed = 0;
	size_t cap = 0;
	ssize_t len;
	pid_t pid;
	FILE *in;

	kt_config_name(c, name, sizeof(name));
	argv[a++] = gmem;
	argv[a++] = "exec";
	argv[a++] = "--attributes";
	argv[a++] = c->model;
	argv[a++] = "--arch";
	argv[a++] = c->arch;
	for (int i = 0; c->extra[i]; i++)
		argv[a++] = c->extra[i];
	argv[a++] = "--";
	argv[a++] = self;
	argv[a] = NULL;
	if (pipe(pfd)) {
		perror("pipe");
		exit(1);
	}
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		const char *contract = "split";

		for (int i = 0; c->extra[i]; i++)
			if (!strcmp(c->extra[i], "--contract") && c->extra[i + 1])
				contract = c->extra[i + 1];
		dup2(pfd[1], 1);
		dup2(pfd[1], 2);
		close(pfd[0]);
		close(pfd[1]);
		setenv("GMEM_KVM_TEST_MODEL", c->model, 1);
		setenv("GMEM_KVM_TEST_ARCH", c->arch, 1);
		setenv("GMEM_KVM_TEST_SUITE", c->suite, 1);
		setenv("GMEM_KVM_TEST_CONTRACT", contract, 1);
		setenv("GMEM_KVM_TEST_CONFIG", name, 1);
		execv(gmem, (char **)argv);
		printf("cannot run %s: %s\n", gmem, strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	in = fdopen(pfd[0], "r");
	while (in && (len = getline(&line, &cap, in)) > 0) {
		char *rest;
		bool ok;

		if (line[len - 1] == '\n')
			line[--len] = 0;
		if (!strncmp(line, "1..", 3))
			continue;
		ok = !strncmp(line, "ok ", 3);
		if (ok || !strncmp(line, "not ok ", 7)) {
			rest = strstr(line, " - ");
			snprintf(last, sizeof(last), "%.*s", rest ? (int)strcspn(rest + 3, " ") : 0,
				 rest ? rest + 3 : "");
			if (strstr(line, "# SKIP " KT_NOT_HERE))
				continue;
			printf("%s %d - %s: %s\n", ok ? "ok" : "not ok", num + printed + 1,
			       name, rest ? rest + 3 : line);
			printed++;
			if (!ok)
				bad++;
			else if (!strstr(line, "# SKIP"))
				(*ran)++;
		} else if (line[0] == '#') {
			printf("%s\n", line);
		} else {
			char sym[1024];

			kt_symbolize(line, self, gmem, sym, sizeof(sym));
			printf("# %s| %s\n", name, sym);
		}
		fflush(stdout);
	}
	free(line);
	if (in)
		fclose(in);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFSIGNALED(status) ||
	    (WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 77 && !bad) ||
	    (WEXITSTATUS(status) == 77 && bad)) {
		printf("not ok %d - %s: the program %s %d%s%s\n", num + printed + 1, name,
		       WIFSIGNALED(status) ? "was killed by signal" : "exited with status",
		       WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
		       *last ? " in the TEST after " : "", last);
		printed++;
		bad++;
	}
	*failed += bad;
	return printed;
}

static inline void kt_drive(const struct kt_config *cfgs, int n)
{
	char self[PATH_MAX], gmem[PATH_MAX + 16], *slash;
	int kvm, total = 0, failed = 0, ran = 0;
	ssize_t len;

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		printf("1..0 # SKIP /dev/kvm: %s\n", strerror(errno));
		exit(77);
	}
	close(kvm);
	len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (len <= 0) {
		printf("1..0 # SKIP cannot read /proc/self/exe\n");
		exit(77);
	}
	self[len] = 0;
	snprintf(gmem, sizeof(gmem), "%s", self);
	slash = strrchr(gmem, '/');
	snprintf(slash, sizeof(gmem) - (slash - gmem), "/../gmem");
	if (access(gmem, X_OK)) {
		printf("not ok 1 - %s is not built\n1..1\n", gmem);
		exit(1);
	}
	setenv("GMEM_KVM_UNDER_TEST", "1", 1);
	kt_add_env("ASAN_OPTIONS", "verify_asan_link_order=0");
	/*
	 * ThreadSanitizer's start-up symbolizer (libbacktrace) calls mmap
	 * before the runtime can take an instrumented call, and the
	 * preloaded layer is instrumented: without symbolize=0 the program
	 * dies before main. Reports then name module+offset; the relay below
	 * runs addr2line on them.
	 */
	if (&__tsan_init)
		kt_add_env("TSAN_OPTIONS", "symbolize=0");
	/* gmem exec runs the path it is given: this program's real path, since
	 * /proc/self/exe would name gmem itself by then. */
	for (int i = 0; i < n; i++)
		total += kt_run_config(&cfgs[i], gmem, self, total, &failed, &ran);
	printf("1..%d\n", total);
	exit(failed ? 1 : ran ? 0 : 77);
}

/*
 * Under the layer, before any TEST: is the layer there, and did it take
 * gmem exec's options? (One line instead of every TEST failing.)
 */
static inline void kt_check_layer(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int types = kvm < 0 ? -1 : ioctl(kvm, KVM_CHECK_EXTENSION, GK_CAP_VM_TYPES);
	int attrs = kvm < 0 ? -1 : ioctl(kvm, KVM_CHECK_EXTENSION, GK_CAP_MEMORY_ATTRIBUTES);
	const char *why = NULL;

	if (kvm >= 0)
		close(kvm);
	if (types != (1 << GK_X86_DEFAULT_VM | 1 << GK_X86_SW_PROTECTED_VM))
		why = "the layer is not there (KVM_CAP_VM_TYPES is the host's)";
	else if (attrs != (kt_per_vm() ? (int)GK_MEMORY_ATTRIBUTE_PRIVATE : 0))
		why = "the layer ignored gmem exec's options (KVM_CAP_MEMORY_ATTRIBUTES "
		      "answers the other attribute model)";
	if (why) {
		printf("1..1\nnot ok 1 - the_layer_took_the_options\n# %s\n", why);
		fflush(stdout);
		_exit(1);
	}
}

/*
 * The program's driver: bare, it runs @configs under gmem exec and exits;
 * under the layer with "--kt-exec" as argv[1] it runs @exec_fn (the image an
 * exec test started) and exits with its result; otherwise main() runs the
 * TESTs. glibc passes argc and argv to constructors.
 */
#define KT_DRIVER(configs, exec_fn)					\
	__attribute__((constructor(200))) static void kt_driver_start(int argc, char **argv) \
	{								\
		int (*fn_)(int, char **) = (exec_fn);			\
		if (!getenv("GMEM_KVM_UNDER_TEST"))			\
			kt_drive(configs, (int)(sizeof(configs) / sizeof(configs[0]))); \
		if (argc > 1 && !strcmp(argv[1], "--kt-exec") && fn_) { \
			fflush(stdout);					\
			_exit(fn_(argc, argv));				\
		}							\
		kt_check_layer();					\
	}

#endif
