// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "lib/util.h"

static struct test *tests, **tail = &tests;
static jmp_buf test_jmp;
static int failed_now, skipped_now;
static char skip_reason[200];

void test_register(struct test *t)
{
	*tail = t;
	tail = &t->next;
}

void test_fail(const char *file, int line, const char *expr, long long a,
	       long long b)
{
	printf("#   %s:%d: ASSERT %s failed (%lld vs %lld)\n", file, line, expr,
	       a, b);
	printf("#   last gmem error: %s\n", gmem_last_error());
	failed_now = 1;
	longjmp(test_jmp, 1);
}

void test_skip(const char *why)
{
	snprintf(skip_reason, sizeof(skip_reason), "%s", why);
	skipped_now = 1;
	longjmp(test_jmp, 1);
}

struct env env_new(const char *arch)
{
	struct env e;

	e.pool = gmem_pool_create(64ULL << 30);
	ASSERT_GE(e.pool, 0);
	e.vm = gmem_vm_create(e.pool, arch, 0);
	ASSERT_GE(e.vm, 0);
	return e;
}

void env_free(struct env *e)
{
	ASSERT_EQ(gmem_vm_close(e->vm), 0);
	ASSERT_EQ(gmem_pool_close(e->pool), 0);
}

long proc_status_kib(const char *key)
{
	size_t n = strlen(key);
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ':')
			kb = atol(line + n + 1);
	if (f)
		fclose(f);
	return kb;
}

int run_in_child(void (*fn)(void *), void *arg)
{
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		fn(arg);
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	if (WIFSIGNALED(status))
		return WTERMSIG(status);
	return WEXITSTATUS(status) ? 256 + WEXITSTATUS(status) : 0;
}

static int probe(volatile uint8_t *p, uint8_t *out, int write, uint8_t val)
{
	uint8_t dummy = val;

	return write ? probe_copy(p, &dummy, 1, NULL) : probe_copy(out, p, 1, NULL);
}

int probe_read(volatile const uint8_t *p, uint8_t *out)
{
	uint8_t dummy;

	return probe((volatile uint8_t *)p, out ? out : &dummy, 0, 0);
}

int probe_write(volatile uint8_t *p, uint8_t val)
{
	return probe(p, NULL, 1, val);
}

int main(void)
{
	static int n, failed, skipped;	/* static: they live across longjmp */
	static struct test *t;

	for (t = tests; t; t = t->next)
		n++;
	printf("1..%d\n", n);
	n = 0;
	for (t = tests; t; t = t->next) {
		failed_now = skipped_now = 0;
		if (!setjmp(test_jmp))
			t->fn();
		n++;
		if (skipped_now) {
			printf("ok %d - %s # SKIP %s\n", n, t->name, skip_reason);
			skipped++;
		} else if (failed_now) {
			printf("not ok %d - %s\n", n, t->name);
			failed++;
		} else {
			printf("ok %d - %s\n", n, t->name);
		}
		fflush(stdout);
	}
	if (failed)
		return 1;
	return skipped == n && n ? 77 : 0;
}

/* ------------------------------------------- the gmem command, run as a user runs it */

/* $(O)/tests/test_x -> $(O)/gmem */
const char *gmem_path(void)
{
	static char path[PATH_MAX];
	ssize_t n;
	char *slash;

	if (path[0])
		return path;
	n = readlink("/proc/self/exe", path, sizeof(path) - 16);
	ASSERT_GT(n, 0);
	path[n] = 0;
	for (int i = 0; i < 2; i++) {
		slash = strrchr(path, '/');
		ASSERT_TRUE(slash);
		*slash = 0;
	}
	strcat(path, "/gmem");
	if (access(path, X_OK)) {
		printf("#   %s is not built\n", path);
		ASSERT_EQ(access(path, X_OK), 0);
	}
	return path;
}

char *slurp(FILE *f)
{
	size_t len = 0, cap = 4096, n;
	char *s = malloc(cap);

	ASSERT_TRUE(s);
	rewind(f);
	while ((n = fread(s + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (cap - len == 1) {
			cap *= 2;
			s = realloc(s, cap);
			ASSERT_TRUE(s);
		}
	}
	s[len] = 0;
	fclose(f);
	return s;
}

/* Run "gmem ARGS..." (@args NULL-terminated) and collect what it printed. */
struct output run_gmem(const char *const *args)
{
	const char *argv[16] = { gmem_path() };
	FILE *out = tmpfile(), *err = tmpfile();
	struct output o;
	int status, i;
	pid_t pid;

	ASSERT_TRUE(out && err);
	for (i = 0; args[i] && i < 14; i++)
		argv[i + 1] = args[i];
	argv[i + 1] = NULL;
	fflush(stdout);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		dup2(fileno(out), 1);
		dup2(fileno(err), 2);
		execv(argv[0], (char **)argv);
		_exit(127);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	o.status = WIFEXITED(status) ? WEXITSTATUS(status) :
		   128 + WTERMSIG(status);
	o.out = slurp(out);
	o.err = slurp(err);
	return o;
}

void output_free(struct output *o)
{
	free(o->out);
	free(o->err);
}


int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

struct output run_gmem_or_skip(const char *const *args)
{
	static char why[200];
	struct output o = run_gmem(args);

	if (o.status == 77) {
		snprintf(why, sizeof(why), "%s", o.err);
		why[strcspn(why, "\n")] = 0;
		output_free(&o);
		test_skip(why);
	}
	return o;
}

void kvm_require(void)
{
	static char why[160];
	static int usable = -1;

	if (usable < 0) {
		int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm = -1;

		if (kvm < 0)
			snprintf(why, sizeof(why), "/dev/kvm: %s", strerror(errno));
		else if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
			snprintf(why, sizeof(why), "/dev/kvm: unexpected API version");
		else if ((vm = ioctl(kvm, KVM_CREATE_VM, 0)) < 0)
			snprintf(why, sizeof(why), "KVM_CREATE_VM: %s", strerror(errno));
		usable = vm >= 0;
		if (vm >= 0)
			close(vm);
		if (kvm >= 0)
			close(kvm);
	}
	if (!usable)
		test_skip(why);
}

long long json_num(const char *s, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(s, pat);
	return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

/* The repository's examples/: the first parent of the binary that has one. */
const char *examples_dir(void)
{
	static char dir[PATH_MAX];
	char exe[PATH_MAX - 64], *slash;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (dir[0])
		return dir;
	ASSERT_GT(n, 0);
	exe[n] = 0;
	while ((slash = strrchr(exe, '/')) && slash != exe) {
		*slash = 0;
		snprintf(dir, sizeof(dir), "%s/examples/punch-private.gmem", exe);
		if (!access(dir, R_OK)) {
			snprintf(dir, sizeof(dir), "%s/examples", exe);
			return dir;
		}
	}
	dir[0] = 0;
	printf("#   no examples/ above the test binary\n");
	ASSERT_TRUE(0);
	return dir;
}

/* Loads ASan does not check: volatile, so that no memcpy call replaces them. */
__attribute__((no_sanitize_address, noinline))
static void copy_unchecked(uint8_t *dst, const volatile uint8_t *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = src[i];
}

const uint8_t *frame_bytes(int pool, uint64_t pfn)
{
	static _Thread_local uint8_t buf[4096];
	const uint8_t *f = gmem_pool_frame(pool, pfn);

	if (!f)
		return NULL;
	copy_unchecked(buf, f, sizeof(buf));
	return buf;
}
