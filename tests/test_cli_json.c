// SPDX-License-Identifier: MIT
/*
 * The --json of every command, read by a real JSON parser (jq) and checked
 * against docs/json.md: a header, the results, a summary; every key with its
 * type. Skipped, with the reason, where jq is not installed.
 */
#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* jq definitions shared by the filters: the schema of docs/json.md. */
static const char schema[] =
	"def num_or_null: type == \"number\" or type == \"null\";\n"
	"def str_or_null: type == \"string\" or type == \"null\";\n"
	"def keys_are($k): (keys | sort) == ($k | sort);\n"
	"def header($cmd): .type == \"header\" and .schema == 1 and .command == $cmd\n"
	"  and (.version | type == \"string\") and keys_are([\"type\",\"schema\",\"command\",\"version\"]);\n"
	"def event:\n"
	"  if .type == \"hook\" then keys_are([\"type\",\"hook\",\"path\",\"pfn\",\"gfn\",\"nr\",\"ret\"])\n"
	"    and (.hook | type == \"string\") and (.path | IN(\"fault\",\"free\",\"conversion\",\"invalidation\",\"populate\"))\n"
	"    and (.pfn | num_or_null) and (.gfn | num_or_null) and (.nr | type == \"number\") and (.ret | type == \"number\")\n"
	"  elif .type == \"invalidation\" then keys_are([\"type\",\"vm\",\"seq_from\",\"seq_to\"])\n"
	"    and (.vm | type == \"string\") and .seq_to > .seq_from\n"
	"  elif .type | IN(\"folio_allocated\",\"folio_freed\",\"frame_state\") then\n"
	"    keys_are([\"type\",\"offset\",\"pfn\",\"from\",\"to\"]) and (.offset | type == \"number\")\n"
	"    and (.pfn | type == \"number\") and (.from | str_or_null) and (.to | type == \"string\")\n"
	"  elif .type == \"stage2_map\" then keys_are([\"type\",\"gpa\",\"pfn\",\"private\"])\n"
	"    and (.gpa | type == \"number\") and (.pfn | type == \"number\") and (.private | type == \"boolean\")\n"
	"  elif .type == \"stage2_zap\" then keys_are([\"type\",\"gpa\"]) and (.gpa | type == \"number\")\n"
	"  elif .type == \"content\" then keys_are([\"type\",\"content\",\"pages\"])\n"
	"    and (.content | IN(\"zeroed\",\"changed\",\"kept\")) and .pages > 0\n"
	"  else false end;\n"
	"def run_command: .type == \"command\"\n"
	"  and keys_are([\"type\",\"line\",\"command\",\"result\",\"errno\",\"last_error\",\"expectation\",\"message\",\"events\",\"events_dropped\"])\n"
	"  and (.line | type == \"number\") and (.command | type == \"string\") and (.result | type == \"string\")\n"
	"  and (.errno | str_or_null) and (.last_error | str_or_null) and (.message | str_or_null)\n"
	"  and (.expectation | . == null or . == \"held\" or . == \"failed\")\n"
	"  and (.events | type == \"array\" and all(.[]; event)) and (.events_dropped | type == \"number\");\n"
	"def run_summary: .type == \"summary\" and .schema == 1\n"
	"  and keys_are([\"type\",\"schema\",\"file\",\"commands\",\"ran\",\"status\",\"result\",\"message\"])\n"
	"  and (.file | str_or_null) and (.commands | type == \"number\") and (.ran | type == \"number\")\n"
	"  and (.result | IN(\"pass\",\"failed\",\"usage\",\"parse error\")) and (.message | str_or_null)\n"
	"  and ((.status == 0) == (.message == null));\n"
	"def violation: keys_are([\"op\",\"invariant\",\"offset\",\"pfn\",\"rule\"]) and (.op | type == \"string\")\n"
	"  and (.invariant | type == \"number\") and (.offset | num_or_null) and (.pfn | num_or_null)\n"
	"  and (.rule | type == \"string\");\n"
	"def check_result: .type == \"result\"\n"
	"  and keys_are([\"type\",\"backend\",\"contract\",\"seed\",\"operations\",\"verdict\",\"violations\",\"exits\",\"failures\",\"first\",\"message\"])\n"
	"  and (.backend | IN(\"sw\",\"snp\",\"tdx\",\"pkvm\")) and (.contract | IN(\"split\",\"legacy\"))\n"
	"  and (.verdict | IN(\"clean\",\"expected\",\"violation\",\"error\"))\n"
	"  and (.violations | num_or_null) and (.exits | num_or_null) and (.failures | num_or_null)\n"
	"  and ((.first == null) == (.violations == 0 or .violations == null))\n"
	"  and (.first == null or (.first | violation)) and (.message | str_or_null);\n"
	"def check_summary: .type == \"summary\" and .schema == 1\n"
	"  and keys_are([\"type\",\"schema\",\"rows\",\"clean\",\"expected\",\"violation\",\"error\",\"status\",\"message\"])\n"
	"  and .rows == .clean + .expected + .violation + .error;\n"
	"def vm_result: .type == \"result\"\n"
	"  and keys_are([\"type\",\"arch\",\"memory\",\"vcpus\",\"policy\",\"result\",\"checks_passed\",\"checks_failed\",\n"
	"    \"conversions\",\"implicit_conversions\",\"exits\",\"bench_conversions\",\"bench_seconds\",\n"
	"    \"conversions_per_sec\",\"bench_gmem_seconds\",\"message\"])\n"
	"  and (.arch | IN(\"sw\",\"snp\",\"tdx\",\"pkvm\")) and (.memory | IN(\"gmem\",\"kvm\"))\n"
	"  and (.result | IN(\"pass\",\"fail\")) and (.message | str_or_null);\n"
	"def vm_summary: .type == \"summary\" and .schema == 1\n"
	"  and keys_are([\"type\",\"schema\",\"status\",\"result\",\"message\"])\n"
	"  and (.result | IN(\"pass\",\"fail\",\"skipped\"));\n";

static const char bench_schema[] =
	"def bench_result: .type == \"result\"\n"
	"  and keys_are([\"type\",\"case\",\"name\",\"unit\",\"median\",\"min\",\"max\",\"runs\",\"baseline\",\n"
	"    \"baseline_median\",\"baseline_min\",\"baseline_max\",\"ratio\",\"ratio_min\",\"ratio_max\",\n"
	"    \"ratio_of\",\"control\",\"target\",\"verdict\",\"skipped\",\"note\"])\n"
	"  and (.case | type == \"string\") and (.name | type == \"string\") and (.unit | str_or_null)\n"
	"  and all(.median, .min, .max, .runs, .baseline_median, .baseline_min, .baseline_max,\n"
	"    .ratio, .ratio_min, .ratio_max, .control; num_or_null)\n"
	"  and (.target | type == \"string\") and (.verdict | str_or_null) and (.skipped | str_or_null)\n"
	"  and ((.skipped == null) == (.verdict != null));\n"
	"def bench_summary: .type == \"summary\" and .schema == 1\n"
	"  and keys_are([\"type\",\"schema\",\"rows\",\"met\",\"missed\",\"noisy\",\"no_verdict\",\"seconds\",\"status\",\"message\"])\n"
	"  and .rows >= .met + .missed + .noisy + .no_verdict;\n";

static bool have_jq(void)
{
	return system("jq --version >/dev/null 2>&1") == 0;
}

/*
 * Does @filter, given every line of @json as one array ($all) hold? jq -e
 * exits 0 only for a true result, 4 for invalid JSON input.
 */
static int jq_holds(const char *json, const char *filter)
{
	char in[] = "/tmp/gmem-json-XXXXXX", prog[] = "/tmp/gmem-jq-XXXXXX";
	char cmd[256];
	int fi = mkstemp(in), fp = mkstemp(prog), ret;
	FILE *f;

	ASSERT_GE(fi, 0);
	ASSERT_GE(fp, 0);
	f = fdopen(fi, "w");
	fputs(json, f);
	fclose(f);
	f = fdopen(fp, "w");
	fprintf(f, "%s\n%s\n%s\n", schema, bench_schema, filter);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "jq -e -s -f %s %s >/dev/null", prog, in);
	ret = system(cmd);
	unlink(in);
	unlink(prog);
	if (ret)
		printf("#   jq -e said %d to:\n#   %s\n#   for: %.300s\n", ret, filter, json);
	return ret == 0;
}

#define NEED_JQ() do { if (!have_jq()) test_skip("jq is not installed"); } while (0)

/* Header, every line a run command, summary. */
static const char run_ok[] =
	"(.[0] | header(\"run\")) and (.[-1] | run_summary) and (.[1:-1] | length > 0 and all(.[]; run_command))";

TEST(every_example_under_run_json_holds_to_the_schema)
{
	const char *dir = examples_dir();
	struct dirent *e;
	DIR *d;
	int n = 0;

	NEED_JQ();
	d = opendir(dir);
	ASSERT_TRUE(d);
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		char file[PATH_MAX + 256];

		if (len < 6 || strcmp(e->d_name + len - 5, ".gmem"))
			continue;
		snprintf(file, sizeof(file), "%s/%s", dir, e->d_name);
		const char *args[] = { "run", file, "--json", NULL };
		struct output o = run_gmem(args);

		ASSERT_EQ(o.status, 0);
		ASSERT_TRUE(jq_holds(o.out, run_ok));
		/* Each example shows hooks, stage-2 and frame states as objects. */
		ASSERT_TRUE(jq_holds(o.out, "[.[].events? // [] | .[].type] | length > 0"));
		output_free(&o);
		n++;
	}
	closedir(d);
	ASSERT_GE(n, 6);
}

/* Run a scenario text under --json; the output to check. */
static struct output run_text(const char *text)
{
	char path[] = "/tmp/gmem-scenario-XXXXXX";
	int fd = mkstemp(path);
	FILE *f;

	ASSERT_GE(fd, 0);
	f = fdopen(fd, "w");
	fputs(text, f);
	fclose(f);
	const char *args[] = { "run", path, "--json", NULL };
	struct output o = run_gmem(args);

	unlink(path);
	return o;
}

TEST(run_json_of_a_failure_a_parse_error_and_bad_usage_holds_to_the_schema)
{
	static const char *const usage[] = { "run", "--json", "--frobnicate", NULL };
	static const char *const missing[] = { "run", "--json", "/nonexistent/x.gmem", NULL };
	struct output o;

	NEED_JQ();
	o = run_text("vm g arch=snp\nfile f vm=g size=64K\n"
		     "convert f offset=0 size=4K private\n"
		     "expect attr f offset=0 shared\n");
	ASSERT_EQ(o.status, 1);
	ASSERT_TRUE(jq_holds(o.out, run_ok));
	ASSERT_TRUE(jq_holds(o.out, ".[-2].expectation == \"failed\" and (.[-2].message | test(\":4:1: \"))"
				    " and .[-1].result == \"failed\" and .[-1].status == 1 and .[-1].ran == 4"));
	output_free(&o);

	/* A failed call names its errno and gmem's reason. */
	o = run_text("vm g arch=sw\nfile f vm=g size=64K\n"
		     "convert f offset=1 size=4K private expect error EINVAL\n");
	ASSERT_EQ(o.status, 0);
	ASSERT_TRUE(jq_holds(o.out, ".[-2].errno == \"EINVAL\" and (.[-2].last_error | test(\"file offset 0x1\"))"
				    " and .[-2].expectation == \"held\""));
	output_free(&o);

	/* Not UTF-8 in the scenario: still valid JSON, U+FFFD in its place. */
	o = run_text("vm g arch=sw # \xff\xfe\n");
	ASSERT_EQ(o.status, 0);
	ASSERT_TRUE(jq_holds(o.out, run_ok));
	output_free(&o);

	o = run_text("vm g arch=sw\nconvert nothing offset=0 size=4K private\n");
	ASSERT_EQ(o.status, 3);
	ASSERT_TRUE(jq_holds(o.out, "length == 2 and (.[0] | header(\"run\")) and (.[1] | run_summary)"
				    " and .[1].result == \"parse error\" and .[1].ran == 0"));
	output_free(&o);

	o = run_gmem(usage);
	ASSERT_EQ(o.status, 2);
	ASSERT_TRUE(jq_holds(o.out, "length == 2 and .[1].result == \"usage\" and (.[1].message | test(\"frobnicate\"))"));
	output_free(&o);
	o = run_gmem(missing);
	ASSERT_EQ(o.status, 2);
	ASSERT_TRUE(jq_holds(o.out, "length == 2 and .[1].result == \"usage\" and .[1].file == \"/nonexistent/x.gmem\""));
	output_free(&o);
}

TEST(check_json_holds_to_the_schema_and_marks_the_expected_finding)
{
	static const char *const args[] = { "check", "--ops", "2000", "--json", NULL };
	struct output o;

	NEED_JQ();
	o = run_gmem(args);
	ASSERT_EQ(o.status, 0);
	ASSERT_TRUE(jq_holds(o.out, "(.[0] | header(\"check\")) and (.[-1] | check_summary)"
				    " and (.[1:-1] | length == 8 and all(.[]; check_result))"));
	/* The pkvm legacy row is the expected finding, and only it. */
	ASSERT_TRUE(jq_holds(o.out, "[.[] | select(.verdict == \"expected\") | .backend + \"/\" + .contract]"
				    " == [\"pkvm/legacy\"] and .[-1].expected == 1 and .[-1].status == 0"));
	output_free(&o);
}

TEST(vm_json_holds_to_the_schema_where_kvm_is_usable)
{
	static const char *const args[] = { "vm", "--arch", "all", "--iterations", "5", "--json", NULL };
	struct output o;

	NEED_JQ();
	o = run_gmem(args);
	if (o.status == 77) {
		output_free(&o);
		test_skip("KVM is not usable here");
	}
	ASSERT_EQ(o.status, 0);
	ASSERT_TRUE(jq_holds(o.out, "(.[0] | header(\"vm\")) and (.[-1] | vm_summary)"
				    " and (.[1:-1] | length == 4 and all(.[]; vm_result))"));
	output_free(&o);
}

TEST(bench_json_holds_to_the_schema)
{
	static const char *const args[] = { "bench", "--quick", "--json", "1", NULL };
	struct output o;

	NEED_JQ();
	o = run_gmem(args);
	ASSERT_EQ(o.status, 0);
	ASSERT_TRUE(jq_holds(o.out, "(.[0] | header(\"bench\")) and (.[-1] | bench_summary)"
				    " and .[-1].rows as $n | (.[1:-1] | length == $n and length >= 2 and all(.[]; bench_result))"));
	output_free(&o);
}
