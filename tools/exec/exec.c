// SPDX-License-Identifier: MIT
/*
 * gmem exec - run a program that speaks KVM on gmem: libgmem-kvm.so is
 * preloaded, and its options travel in the environment (GMEM_KVM_*).
 * --probe prints what the host kernel offers beside what a program sees
 * under the layer.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "kvm/uapi.h"

static int usage(FILE *out)
{
	fprintf(out,
		"usage: gmem exec [options] -- COMMAND [ARGS...]\n"
		"       gmem exec --probe [options]\n"
		"\n"
		"Run COMMAND with libgmem-kvm.so preloaded: its guest_memfd files,\n"
		"memslots, attribute ioctls and KVM_RUN exits are gmem's, every other\n"
		"KVM call goes to the host's KVM unchanged (docs/kvm.md).\n"
		"\n"
		"options:\n"
		"  --arch sw|snp|tdx|pkvm       content semantics of conversion (sw)\n"
		"  --contract split|legacy      the arch hook contract (split)\n"
		"  --attributes in-place|per-vm where PRIVATE lives: on the guest_memfd\n"
		"                               (KVM_SET_MEMORY_ATTRIBUTES2, in-place) or\n"
		"                               per VM (KVM_SET_MEMORY_ATTRIBUTES) (in-place)\n"
		"  --cap-gmem-attributes N      number of the guest_memfd-attributes\n"
		"                               capability (%d)\n"
		"  --trace FILE                 every emulated call and arch hook, JSON lines\n"
		"  --check                      verify gmem's invariants after every call;\n"
		"                               exit 1 if any broke\n"
		"  --probe                      print the host's KVM beside the layer's\n",
		GK_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES_DEFAULT);
	return out == stdout ? 0 : 2;
}

/* libgmem-kvm.so beside the gmem binary, or in the installed library dir. */
static int find_layer(char *path, size_t len)
{
	const char *env = getenv("GMEM_KVM_LIB");
	char self[PATH_MAX - 64], *slash;
	ssize_t n;

	if (env && *env) {
		snprintf(path, len, "%s", env);
		return access(path, R_OK) ? -1 : 0;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return -1;
	self[n] = 0;
	if (!(slash = strrchr(self, '/')))
		return -1;
	*slash = 0;
	snprintf(path, len, "%s/libgmem-kvm.so", self);
	if (!access(path, R_OK))
		return 0;
	if (!(slash = strrchr(self, '/')))	/* the prefix: bin/.. */
		return -1;
	*slash = 0;
	snprintf(path, len, "%s/lib/gmem/libgmem-kvm.so", self);
	return access(path, R_OK) ? -1 : 0;
}

static int set_preload(void)
{
	char lib[PATH_MAX], buf[2 * PATH_MAX + 2];
	const char *old = getenv("LD_PRELOAD");

	if (find_layer(lib, sizeof(lib))) {
		fprintf(stderr, "gmem exec: cannot find libgmem-kvm.so (set GMEM_KVM_LIB)\n");
		return -1;
	}
	snprintf(buf, sizeof(buf), "%s%s%s", lib, old && *old ? ":" : "",
		 old ? old : "");
	return setenv("LD_PRELOAD", buf, 1);
}

/* ------------------------------------------------------------- probe */

#define ROWS 16
struct probe { const char *name; char value[64]; };

static sigjmp_buf probe_jmp;
static void probe_signal(int sig) { siglongjmp(probe_jmp, sig); }

/* Which signal does touching @p raise: 0, SIGBUS or SIGSEGV. */
static int touch(volatile char *p)
{
	struct sigaction act = { .sa_handler = probe_signal }, ob, os;
	int sig;

	sigaction(SIGBUS, &act, &ob);
	sigaction(SIGSEGV, &act, &os);
	sig = sigsetjmp(probe_jmp, 1);
	if (!sig)
		*p = 1;
	sigaction(SIGBUS, &ob, NULL);
	sigaction(SIGSEGV, &os, NULL);
	return sig;
}

static const char *errname(int ret)
{
	static char buf[32];

	if (ret >= 0)
		return "ok";
	snprintf(buf, sizeof(buf), "%s", strerrorname_np(errno) ? strerrorname_np(errno) : "?");
	return buf;
}

/* Measure this process's KVM (bare, or under the layer) into @p. */
static int probe_here(struct probe *p)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), n = 0, vm, swvm, fd;
	static const struct { const char *name; long cap; } caps[] = {
		{ "GUEST_MEMFD (234)", GK_CAP_GUEST_MEMFD },
		{ "GUEST_MEMFD_FLAGS (244)", GK_CAP_GUEST_MEMFD_FLAGS },
		{ "VM_TYPES (235)", GK_CAP_VM_TYPES },
		{ "USER_MEMORY2 (231)", GK_CAP_USER_MEMORY2 },
		{ "MEMORY_FAULT_INFO (232)", GK_CAP_MEMORY_FAULT_INFO },
		{ "MEMORY_ATTRIBUTES (233)", GK_CAP_MEMORY_ATTRIBUTES },
		{ "guest_memfd attributes (250)", GK_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES_DEFAULT },
		{ "NR_MEMSLOTS", GK_CAP_NR_MEMSLOTS },
	};
	struct gk_create_guest_memfd g = { .size = 1 << 20 };
	struct gk_memory_attributes a = { .address = 0, .size = 4096,
					  .attributes = GK_MEMORY_ATTRIBUTE_PRIVATE };
	struct gk_memory_attributes2 a2 = { .size = 4096,
					    .attributes = GK_MEMORY_ATTRIBUTE_PRIVATE };
	struct gk_userspace_memory_region2 r = { .slot = 0, .flags = GK_MEM_GUEST_MEMFD,
						 .memory_size = 1 << 20,
						 .guest_memfd_offset = INT64_MAX & ~4095ULL };
	char *m;

	if (kvm < 0)
		return -1;
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		p[n].name = caps[i].name;
		snprintf(p[n++].value, 64, "%d", ioctl(kvm, KVM_CHECK_EXTENSION, caps[i].cap));
	}
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	swvm = ioctl(kvm, KVM_CREATE_VM, GK_X86_SW_PROTECTED_VM);
	p[n].name = "KVM_CREATE_VM(SW_PROTECTED)";
	snprintf(p[n++].value, 64, "%s", errname(swvm));
	p[n].name = "SW VM: GUEST_MEMFD_FLAGS";
	snprintf(p[n++].value, 64, "%d", swvm < 0 ? -1 :
		 ioctl(swvm, KVM_CHECK_EXTENSION, GK_CAP_GUEST_MEMFD_FLAGS));
	p[n].name = "SW VM: SET_MEMORY_ATTRIBUTES";
	snprintf(p[n++].value, 64, "%s", swvm < 0 ? "-" :
		 errname(ioctl(swvm, GK_SET_MEMORY_ATTRIBUTES, &a)));
	g.flags = GK_GUEST_MEMFD_FLAG_MMAP;
	fd = ioctl(swvm >= 0 ? swvm : vm, GK_CREATE_GUEST_MEMFD, &g);
	p[n].name = "guest_memfd: SET_MEMORY_ATTRIBUTES2";
	snprintf(p[n++].value, 64, "%s", fd < 0 ? "-" :
		 errname(ioctl(fd, GK_SET_MEMORY_ATTRIBUTES2, &a2)));
	p[n].name = "host touch of a private page";
	m = fd < 0 ? MAP_FAILED : mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	snprintf(p[n++].value, 64, "%s", m == MAP_FAILED ? "no mapping" :
		 touch(m) == SIGBUS ? "SIGBUS" : touch(m) == SIGSEGV ? "SIGSEGV" : "allowed");
	p[n].name = "bind at offset 2^63-4096";
	r.guest_memfd = (uint32_t)fd;
	snprintf(p[n++].value, 64, "%s", fd < 0 ? "-" :
		 ioctl(swvm >= 0 ? swvm : vm, GK_SET_USER_MEMORY_REGION2, &r) ?
		 errname(-1) : "accepted");
	return n;
}

static int probe_child(void)
{
	struct probe p[ROWS];
	int n = probe_here(p);

	if (n < 0)
		return 77;
	for (int i = 0; i < n; i++)
		printf("%s\t%s\n", p[i].name, p[i].value);
	return 0;
}

/* Run "gmem exec --probe-raw" bare or layered; read its lines into @out. */
static int probe_run(bool layered, char out[ROWS][2][64], int *rows)
{
	int pipefd[2], status, n = 0;
	char line[120];
	FILE *f;
	pid_t pid;

	if (pipe(pipefd))
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(pipefd[1], 1);
		close(pipefd[0]);
		if (layered ? set_preload() : unsetenv("LD_PRELOAD"))
			_exit(2);
		execl("/proc/self/exe", "gmem", "exec", "--probe-raw", (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	f = fdopen(pipefd[0], "r");
	while (f && fgets(line, sizeof(line), f) && n < ROWS) {
		char *tab = strchr(line, '\t');

		if (!tab)
			continue;
		*tab = 0;
		tab[strcspn(tab + 1, "\n") + 1] = 0;
		snprintf(out[n][0], 64, "%.63s", line);
		snprintf(out[n][1], 64, "%.63s", tab + 1);
		n++;
	}
	if (f)
		fclose(f);
	waitpid(pid, &status, 0);
	*rows = n;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int probe(void)
{
	char bare[ROWS][2][64], layered[ROWS][2][64];
	int nb, nl, rb = probe_run(false, bare, &nb), rl = probe_run(true, layered, &nl);

	if (rb == 77) {
		printf("gmem exec --probe: /dev/kvm is not usable here\n");
		return 77;
	}
	if (rb || rl) {
		fprintf(stderr, "gmem exec --probe: the probe failed (%d, %d)\n", rb, rl);
		return 1;
	}
	printf("%-38s %-14s %s\n", "", "host kernel", "under gmem exec");
	for (int i = 0; i < nb && i < nl; i++)
		printf("%-38s %-14s %s\n", bare[i][0], bare[i][1], layered[i][1]);
	printf("\nknown host quirks (docs/kvm.md): guest faults on a guest_memfd slot are\n"
	       "served from userspace_addr (PVM); a guest's KVM_HC_MAP_GPA_RANGE never exits.\n");
	return 0;
}

/* ------------------------------------------------------------ command */

static int run_checked(char **argv)
{
	char status[64];
	int st, violations = 0, pid_v, v;
	FILE *f;
	pid_t pid;

	snprintf(status, sizeof(status), "/tmp/gmem-exec-%d.status", (int)getpid());
	unlink(status);
	setenv("GMEM_KVM_STATUS", status, 1);
	pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		execvp(argv[0], argv);
		fprintf(stderr, "gmem exec: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	signal(SIGINT, SIG_IGN);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	f = fopen(status, "r");
	while (f && fscanf(f, "%d violations=%d", &pid_v, &v) == 2)
		violations += v;
	if (f)
		fclose(f);
	unlink(status);
	if (violations) {
		fprintf(stderr, "gmem exec: check mode saw %d violation(s)\n", violations);
		return 1;
	}
	if (WIFSIGNALED(st)) {
		signal(WTERMSIG(st), SIG_DFL);
		raise(WTERMSIG(st));
		return 128 + WTERMSIG(st);
	}
	return WEXITSTATUS(st);
}

static int bad(const char *opt, const char *val)
{
	fprintf(stderr, "gmem exec: %s %s: invalid value (try gmem exec --help)\n",
		opt, val ? val : "(missing)");
	return 2;
}

int cmd_exec(int argc, char **argv)
{
	bool check = false, want_probe = false;
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--")) {
			i++;
			break;
		} else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			return usage(stdout);
		} else if (!strcmp(a, "--probe-raw")) {
			return probe_child();
		} else if (!strcmp(a, "--probe")) {
			want_probe = true;
		} else if (!strcmp(a, "--check")) {
			check = true;
		} else if (!strcmp(a, "--arch")) {
			if (!v || (strcmp(v, "sw") && strcmp(v, "snp") && strcmp(v, "tdx") &&
				   strcmp(v, "pkvm")))
				return bad(a, v);
			setenv("GMEM_KVM_ARCH", v, 1);
			i++;
		} else if (!strcmp(a, "--contract")) {
			if (!v || (strcmp(v, "split") && strcmp(v, "legacy")))
				return bad(a, v);
			setenv("GMEM_KVM_CONTRACT", v, 1);
			i++;
		} else if (!strcmp(a, "--attributes")) {
			if (!v || (strcmp(v, "in-place") && strcmp(v, "per-vm")))
				return bad(a, v);
			setenv("GMEM_KVM_ATTRIBUTES", v, 1);
			i++;
		} else if (!strcmp(a, "--cap-gmem-attributes")) {
			char *end;
			unsigned long n = v ? strtoul(v, &end, 0) : 0;

			if (!v || *end || !n || n > 0xffff)
				return bad(a, v);
			setenv("GMEM_KVM_CAP_GMEM_ATTRIBUTES", v, 1);
			i++;
		} else if (!strcmp(a, "--trace")) {
			if (!v)
				return bad(a, v);
			setenv("GMEM_KVM_TRACE", v, 1);
			i++;
		} else if (a[0] == '-') {
			fprintf(stderr, "gmem exec: unknown option %s (try gmem exec --help)\n", a);
			return 2;
		} else {
			break;
		}
	}
	if (check)
		setenv("GMEM_KVM_CHECK", "1", 1);
	if (want_probe)
		return probe();
	if (i >= argc) {
		fprintf(stderr, "gmem exec: no command (try gmem exec --help)\n");
		return 2;
	}
	if (set_preload())
		return 2;
	if (check)
		return run_checked(argv + i);
	execvp(argv[i], argv + i);
	fprintf(stderr, "gmem exec: %s: %s\n", argv[i], strerror(errno));
	return 127;
}
