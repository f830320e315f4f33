// SPDX-License-Identifier: MIT
/*
 * gmem bench: the command runs every case and prints a row for each, --json
 * lines carry the expected keys, an unknown option is refused. No assertion
 * on any time: only on what is printed and the exit status.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define OUT_MAX	(256 * 1024)

/* $(O)/tests/test_cli_bench -> $(O)/gmem */
static int gmem_path(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);
	char *slash;

	if (n <= 0)
		return -1;
	buf[n] = '\0';
	slash = strrchr(buf, '/');
	if (!slash)
		return -1;
	*slash = '\0';
	slash = strrchr(buf, '/');
	if (!slash || (size_t)(slash - buf) + sizeof("/gmem") > len)
		return -1;
	strcpy(slash, "/gmem");
	return access(buf, X_OK);
}

struct run {
	int status;		/* exit status, or -1 */
	char out[OUT_MAX];
	char err[4096];
};

static void drain(int fd, char *buf, size_t len)
{
	size_t used = 0;
	ssize_t n;

	while ((n = read(fd, buf + used, len - 1 - used)) > 0) {
		used += n;
		if (used == len - 1)
			break;
	}
	buf[used] = '\0';
}

/* Runs gmem with @args (NULL-terminated), collecting stdout and stderr. */
static void run_gmem(struct run *r, const char *const *args)
{
	char path[PATH_MAX];
	const char *argv[8];
	int out[2], err[2], i, st;
	pid_t pid;

	r->status = -1;
	r->out[0] = r->err[0] = '\0';
	if (gmem_path(path, sizeof(path)))
		return;
	argv[0] = path;
	for (i = 0; args[i] && i < 6; i++)
		argv[i + 1] = args[i];
	argv[i + 1] = NULL;
	if (pipe(out) || pipe(err))
		return;
	pid = fork();
	if (pid < 0)
		return;
	if (pid == 0) {
		dup2(out[1], 1);
		dup2(err[1], 2);
		close(out[0]);
		close(err[0]);
		execv(path, (char *const *)argv);
		_exit(127);
	}
	close(out[1]);
	close(err[1]);
	/* stderr is small; read stdout first, then stderr. */
	drain(out[0], r->out, sizeof(r->out));
	drain(err[0], r->err, sizeof(r->err));
	close(out[0]);
	close(err[0]);
	if (waitpid(pid, &st, 0) == pid && WIFEXITED(st))
		r->status = WEXITSTATUS(st);
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* Does some line of @out start with @id (case column) and contain @what? */
static int has_row(const char *out, const char *id, const char *what)
{
	const char *line = out;

	while (line && *line) {
		const char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);
		char buf[512];

		if (len >= sizeof(buf))
			len = sizeof(buf) - 1;
		memcpy(buf, line, len);
		buf[len] = '\0';
		if (!strncmp(buf, id, strlen(id)) && buf[strlen(id)] == ' ' &&
		    strstr(buf, what))
			return 1;
		line = nl ? nl + 1 : NULL;
	}
	return 0;
}

static struct run run;

TEST(bench_quick_exits_0_and_prints_every_case)
{
	static const char *const args[] = { "bench", "--quick", NULL };

	run_gmem(&run, args);
	ASSERT_EQ(run.status, 0);
	ASSERT_TRUE(strstr(run.out, "measured"));
	ASSERT_TRUE(has_row(run.out, "1a", "no host mapping"));
	ASSERT_TRUE(has_row(run.out, "1b", "host-mapped"));
	ASSERT_TRUE(has_row(run.out, "2a", "snp"));
	ASSERT_TRUE(has_row(run.out, "2b", "tdx"));
	ASSERT_TRUE(has_row(run.out, "3a", "1 thread"));
	ASSERT_TRUE(has_row(run.out, "3b", "2 threads"));
	ASSERT_TRUE(has_row(run.out, "4a", "4 KiB folios"));
	ASSERT_TRUE(has_row(run.out, "4b", "2 MiB folios"));
	/* Measured side by side, or "skipped: <reason>" without /dev/kvm. */
	ASSERT_TRUE(has_row(run.out, "5a", "first-touch"));
	ASSERT_TRUE(has_row(run.out, "5b", "punch"));
	ASSERT_TRUE(has_row(run.out, "6a", "conversions/s"));
	ASSERT_TRUE(has_row(run.out, "6b", "faults/s"));
	ASSERT_TRUE(has_row(run.out, "7a", "1 TiB"));
	ASSERT_TRUE(has_row(run.out, "7b", "ranges"));
	ASSERT_TRUE(has_row(run.out, "8a", "inside a 1 GiB folio"));
	ASSERT_TRUE(has_row(run.out, "8b", "first fault on a 1 GiB folio"));
	ASSERT_TRUE(has_row(run.out, "8c", "merged 1 GiB folio"));
	ASSERT_TRUE(strstr(run.out, "--quick"));
	ASSERT_TRUE(!strstr(run.out, "error:"));
}

TEST(bench_json_lines_have_the_expected_keys)
{
	static const char *const args[] = { "bench", "--quick", "--json", "1", "4", NULL };
	static const char *const keys[] = {
		"\"case\":", "\"name\":", "\"unit\":", "\"median\":", "\"min\":",
		"\"max\":", "\"runs\":", "\"baseline\":", "\"baseline_median\":",
		"\"ratio\":", "\"target\":", "\"met\":", "\"skipped\":", "\"note\":",
	};
	char *line, *save = NULL;
	unsigned int k;
	int lines = 0;

	run_gmem(&run, args);
	ASSERT_EQ(run.status, 0);
	for (line = strtok_r(run.out, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		ASSERT_EQ(line[0], '{');
		ASSERT_EQ(line[strlen(line) - 1], '}');
		for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			ASSERT_TRUE(strstr(line, keys[k]));
		lines++;
	}
	/* 1a, 1b, 4a, 4b */
	ASSERT_EQ(lines, 4);
}

TEST(bench_unknown_option_exits_2_with_one_line)
{
	static const char *const args[] = { "bench", "--no-such-option", NULL };

	run_gmem(&run, args);
	ASSERT_EQ(run.status, 2);
	ASSERT_EQ(count_lines(run.err), 1);
	ASSERT_TRUE(strstr(run.err, "--no-such-option"));
	ASSERT_EQ(run.out[0], '\0');
}

TEST(bench_help_exits_0)
{
	static const char *const args[] = { "bench", "--help", NULL };

	run_gmem(&run, args);
	ASSERT_EQ(run.status, 0);
	ASSERT_TRUE(strstr(run.out, "--quick"));
	ASSERT_TRUE(strstr(run.out, "--json"));
}
