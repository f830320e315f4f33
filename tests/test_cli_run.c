// SPDX-License-Identifier: MIT
/*
 * gmem run, the way a user runs it: the built binary ($(O)/gmem, beside this
 * program's tests/ directory) over every scenario in examples/, failed
 * expectations and malformed scenarios with their FILE:LINE:COL, the trace
 * and JSON shapes, usage errors, and mangled inputs that must not crash it.
 */
#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* Write @len bytes of @text to a fresh temporary .gmem file; returns its path. */
static char *scenario_file(const char *text, size_t len)
{
	static char path[64];
	int fd;

	snprintf(path, sizeof(path), "/tmp/gmem-run-XXXXXX");
	fd = mkstemp(path);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

/* Run @text as a scenario with one extra argument (or NULL). */
static struct output run_text(const char *text, const char *opt)
{
	const char *args[] = { "run", scenario_file(text, strlen(text)), opt,
			       NULL };
	struct output o = run_gmem(args);

	unlink(args[1]);
	return o;
}

/* stderr is one line "PATH:LINE:COL: ..." with the given line and column. */
static bool positioned(const struct output *o, int line, int col)
{
	char want[32];
	const char *p = strstr(o->err, ".gmem") ? strstr(o->err, ".gmem") + 5 :
			strchr(o->err, ':');
	const char *tmp = strstr(o->err, "/tmp/gmem-run-");

	if (!tmp || tmp != o->err || count_lines(o->err) != 1)
		return false;
	p = strchr(tmp, ':');
	snprintf(want, sizeof(want), ":%d:%d: ", line, col);
	if (!p || strncmp(p, want, strlen(want))) {
		printf("#   wanted %s in: %s", want, o->err);
		return false;
	}
	return true;
}

static const char *const setup =
	"vm g arch=sw check\n"
	"file f vm=g size=64K mmap\n"
	"bind g slot=0 gpa=0x10000 file=f size=64K\n";

static struct output run_after_setup(const char *more, const char *opt)
{
	char text[1024];

	snprintf(text, sizeof(text), "%s%s", setup, more);
	return run_text(text, opt);
}

/*
 * Every example passes, and passes the same with --trace and --json: the
 * trace only looks (reading a freed frame would bring it back).
 */
TEST(every_example_runs_clean_with_and_without_trace)
{
	static const char *const modes[] = { NULL, "--trace", "--json" };
	const char *dir = examples_dir();
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	ASSERT_TRUE(d);
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		char path[PATH_MAX];

		if (len < 6 || strcmp(e->d_name + len - 5, ".gmem"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		for (int m = 0; m < 3; m++) {
			const char *args[] = { "run", path, modes[m], NULL };
			struct output o = run_gmem(args);

			if (o.status)
				printf("#   %s %s: exit %d: %s", e->d_name,
				       modes[m] ? modes[m] : "", o.status, o.err);
			ASSERT_EQ(o.status, 0);
			ASSERT_EQ(o.err[0], 0);
			ASSERT_EQ(!o.out[0], !modes[m]);
			output_free(&o);
		}
		n++;
	}
	closedir(d);
	ASSERT_GE(n, 6);
}

TEST(a_failed_expectation_exits_one_with_its_position)
{
	struct output o = run_after_setup(
		"guest write g gpa=0x10000 private data=\"abc\"\n"
		"guest read g gpa=0x10000 private expect data=\"abd\"\n", NULL);

	ASSERT_EQ(o.status, 1);
	ASSERT_TRUE(positioned(&o, 5, 34));
	ASSERT_TRUE(strstr(o.err, "expected data \"abd\", read \"abc\""));
	output_free(&o);

	o = run_after_setup("convert f offset=0 size=4K shared expect error EAGAIN\n",
			    NULL);
	ASSERT_EQ(o.status, 1);
	ASSERT_TRUE(positioned(&o, 4, 35));
	output_free(&o);
}

TEST(an_operation_that_fails_without_expect_exits_one)
{
	struct output o = run_after_setup("convert f offset=0 size=1M shared\n",
					  NULL);

	ASSERT_EQ(o.status, 1);
	ASSERT_TRUE(positioned(&o, 4, 1));
	ASSERT_TRUE(strstr(o.err, "EINVAL"));
	output_free(&o);
}

TEST(malformed_lines_give_a_positioned_error)
{
	static const struct {
		const char *line;
		int col;
		const char *says;
	} bad[] = {
		{ "punch f offset=0 size=99999999999999999999\n", 23, "overflows" },
		{ "punch f offset=0 size=0x10000000000000000\n", 23, "overflows" },
		{ "punch f offset=0 size=16777216T\n", 23, "overflows" },
		{ "punch f offset=0 size=4Q\n", 23, "bad number" },
		{ "punch f offset=-1 size=4K\n", 16, "expected a number" },
		{ "frobnicate f\n", 1, "unknown command" },
		{ "punch f offset=0 size=4K sideways\n", 26, "unknown word" },
		{ "punch f offset=0 size=4K color=red\n", 26, "unknown argument" },
		{ "guest write g gpa=0x10000 private data=\"abc\n", 40, "unterminated" },
		{ "guest write g gpa=0x10000 private data=\"\\q\"\n", 41, "unknown escape" },
		{ "punch f offset=0\n", 1, "missing argument size=" },
		{ "punch f offset=\n", 16, "missing value" },
		{ "punch\n", 1, "missing the file name" },
		{ "guest read g gpa=0x10000 len=4 private expect\n", 40, "missing expectation" },
		{ "punch nosuch offset=0 size=4K\n", 7, "unknown name" },
		{ "punch g offset=0 size=4K\n", 7, "is a vm, not a file" },
		{ "file f vm=g size=4K\n", 6, "duplicate name" },
		{ "convert f offset=0 size=4K\n", 1, "'private' or 'shared'" },
		{ "convert f offset=0 size=4K private expect error ENOPE\n", 49, "unknown errno" },
		{ "host read f offset=0 len=1\n", 11, "is a file, not a mapping" },
		{ "expect violations g lots\n", 21, "expected a number" },
		{ "vm h arch=sw contract=maybe\n", 23, "split or legacy" },
		{ "file h vm=g size=2M huge=4M\n", 26, "2M or 1G" },
		{ "expect stage2 g gpa=0 mapped size=8K\n", 1, "4K, 2M or 1G" },
		{ "expect stage2 g gpa=0 unmapped size=4K\n", 1, "4K, 2M or 1G" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct output o = run_after_setup(bad[i].line, NULL);

		if (o.status != 3 || !strstr(o.err, bad[i].says))
			printf("#   '%.*s': exit %d: %s", (int)strlen(bad[i].line) - 1,
			       bad[i].line, o.status, o.err);
		ASSERT_EQ(o.status, 3);
		ASSERT_TRUE(positioned(&o, 4, bad[i].col));
		ASSERT_TRUE(strstr(o.err, bad[i].says));
		ASSERT_EQ(o.out[0], 0);		/* nothing ran */
		output_free(&o);
	}
}

TEST(trace_shows_each_operation_its_outcome_and_the_hooks_called)
{
	struct output o = run_after_setup(
		"guest write g gpa=0x10000 private data=\"x\"\n"
		"punch f offset=0 size=4K\n"
		"expect attr f offset=0 private\n", "--trace");

	ASSERT_EQ(o.status, 0);
	ASSERT_TRUE(strstr(o.out, "4: guest write g gpa=0x10000 private data=\"x\"\n"
			       "    -> ok\n"));
	ASSERT_TRUE(strstr(o.out, "stage-2 map gpa=0x10000"));
	ASSERT_TRUE(strstr(o.out, "5: punch f offset=0 size=4K\n    -> ok\n"));
	ASSERT_TRUE(strstr(o.out, "mmu_invalidate_seq 0->1"));
	ASSERT_TRUE(strstr(o.out, "folio freed off=0"));
	ASSERT_TRUE(!strstr(o.out, "hook "));	/* sw opts into no hook */
	ASSERT_TRUE(strstr(o.out, "6: expect attr f offset=0 private\n    -> checked, pass\n"));
	output_free(&o);
}

/*
 * The hooks are the engine's own calls: under the split contract snp gets
 * make_shared on conversion and reclaim on the free path; under the legacy
 * contract both paths call the one invalidate hook.
 */
TEST(trace_names_the_hook_each_contract_calls_on_each_path)
{
	static const char *const body =
		"file m vm=v size=64K\n"
		"bind v slot=0 gpa=0 file=m size=64K\n"
		"guest write v gpa=0 private data=\"x\"\n"
		"convert m offset=0 size=4K shared\n"
		"punch m offset=0 size=4K\n";
	char text[512];
	struct output o;

	snprintf(text, sizeof(text), "vm v arch=snp\n%s", body);
	o = run_text(text, "--trace");
	ASSERT_EQ(o.status, 0);
	ASSERT_TRUE(strstr(o.out, "hook make_private pfn=0 gfn=0 nr=1 (fault path)"));
	ASSERT_TRUE(strstr(o.out, "hook make_shared pfn=0 nr=1 (conversion path)"));
	ASSERT_TRUE(strstr(o.out, "hook reclaim pfn=0 nr=1 (free path)"));
	ASSERT_TRUE(!strstr(o.out, "hook invalidate pfn"));
	output_free(&o);

	snprintf(text, sizeof(text), "vm v arch=snp contract=legacy\n%s", body);
	o = run_text(text, "--trace");
	ASSERT_EQ(o.status, 0);
	ASSERT_TRUE(strstr(o.out, "hook invalidate pfn=0 nr=1 (conversion path)"));
	ASSERT_TRUE(!strstr(o.out, "hook make_shared"));
	ASSERT_TRUE(!strstr(o.out, "hook reclaim"));
	output_free(&o);
}

/* The keys and types of every object are checked by test_cli_json, with jq. */
TEST(json_is_a_header_one_object_per_command_and_a_summary)
{
	struct output o = run_after_setup(
		"convert f offset=0 size=4K shared\n"
		"convert f offset=0 size=8K private expect ok\n", "--json");
	const char *l = o.out;
	int n = 0;

	ASSERT_EQ(o.status, 0);
	ASSERT_EQ(strncmp(l, "{\"type\":\"header\",\"schema\":1,\"command\":\"run\"", 42), 0);
	while (*l) {
		const char *end = strchr(l, '\n');

		ASSERT_TRUE(end);
		ASSERT_EQ(l[0], '{');
		ASSERT_EQ(end[-1], '}');
		if (n && end[1])
			ASSERT_EQ(strncmp(l, "{\"type\":\"command\",\"line\":", 25), 0);
		l = end + 1;
		n++;
	}
	ASSERT_EQ(n, 7);
	ASSERT_TRUE(strstr(o.out, "\"command\":\"convert f offset=0 size=8K private expect ok\""));
	ASSERT_TRUE(strstr(o.out, "\"expectation\":\"held\""));
	/* Structured events, not sentences. */
	ASSERT_TRUE(strstr(o.out, "\"events\":[{\"type\":\"invalidation\",\"vm\":\"g\",\"seq_from\":1,\"seq_to\":2}]"));
	ASSERT_TRUE(strstr(o.out, "\n{\"type\":\"summary\",\"schema\":1,"));
	ASSERT_TRUE(strstr(o.out, "\"status\":0,\"result\":\"pass\",\"message\":null}\n"));
	output_free(&o);
}

TEST(json_reports_a_failure_and_a_parse_error_in_its_summary)
{
	struct output o = run_after_setup("convert f offset=0 size=4K sideways\n", "--json");

	ASSERT_EQ(o.status, 3);
	ASSERT_TRUE(strstr(o.out, "{\"type\":\"header\""));
	ASSERT_TRUE(strstr(o.out, "\"result\":\"parse error\",\"message\":\""));
	output_free(&o);
	o = run_after_setup("convert f offset=0 size=4K private\n"
			    "expect attr f offset=0 shared\n", "--json");
	ASSERT_EQ(o.status, 1);
	ASSERT_TRUE(strstr(o.out, "\"expectation\":\"failed\",\"message\":\""));
	ASSERT_TRUE(strstr(o.out, "\"status\":1,\"result\":\"failed\",\"message\":\""));
	output_free(&o);
}

TEST(usage_errors_exit_two_with_one_line)
{
	static const char *const unknown[] = { "run", "x.gmem", "--frobnicate", NULL };
	static const char *const missing[] = { "run", "/nonexistent/x.gmem", NULL };
	static const char *const none[] = { "run", NULL };
	const char *const *cases[] = { unknown, missing, none };

	for (int i = 0; i < 3; i++) {
		struct output o = run_gmem(cases[i]);

		ASSERT_EQ(o.status, 2);
		ASSERT_EQ(count_lines(o.err), 1);
		ASSERT_EQ(o.out[0], 0);
		output_free(&o);
	}
}

TEST(mangled_examples_never_crash)
{
	static const char *const names[] = {
		"legacy-contract-breaks-pkvm.gmem", "snp-boot-bounce-buffers.gmem",
	};
	unsigned int seed = 1;

	for (int f = 0; f < 2; f++) {
		char path[PATH_MAX];
		FILE *in;
		char *text;
		size_t len;

		snprintf(path, sizeof(path), "%s/%s", examples_dir(), names[f]);
		in = fopen(path, "r");
		ASSERT_TRUE(in);
		text = slurp(in);
		len = strlen(text);
		for (int i = 0; i < 25; i++) {
			char *m = strdup(text);
			const char *args[] = { "run", NULL, NULL };
			struct output o;

			ASSERT_TRUE(m);
			/* Cut it short, and flip a few bytes. */
			m[rand_r(&seed) % len] = 0;
			for (int k = 0; k < 3 && strlen(m); k++)
				m[rand_r(&seed) % strlen(m)] = "\"=#x\\9 K\n\x01"[rand_r(&seed) % 10];
			args[1] = scenario_file(m, strlen(m));
			o = run_gmem(args);
			unlink(args[1]);
			if (o.status > 3)
				printf("#   exit %d on:\n%s\n", o.status, m);
			ASSERT_LE(o.status, 3);
			output_free(&o);
			free(m);
		}
		free(text);
	}
}
