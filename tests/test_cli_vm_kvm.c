// SPDX-License-Identifier: MIT
/*
 * gmem vm --kvm, the way a user runs it ($(O)/gmem): the VMM whose memory
 * path speaks only KVM's UAPI, run under gmem exec (libgmem-kvm.so) once per
 * arch, with the guest's own checks. Skipped when /dev/kvm is not usable.
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "harness.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

/* "vm --kvm" then @args (NULL-terminated), in @argv of 16 entries. */
static const char *const *kvm_vm_argv(const char **argv, const char *const *args)
{
	int i;

	argv[0] = "vm";
	argv[1] = "--kvm";
	for (i = 0; args[i] && i < 12; i++)
		argv[i + 2] = args[i];
	argv[i + 2] = NULL;
	return argv;
}

/* Run "gmem vm --kvm ARGS..." and collect its output. */
static struct output run_kvm_vm(const char *const *args)
{
	const char *argv[16];

	return run_gmem(kvm_vm_argv(argv, args));
}

/*
 * Skip the calling test unless this process can run a KVM guest under the
 * layer. A sanitizer's runtime must be the first library of the process,
 * so the sanitized gmem of this build cannot have libgmem-kvm.so preloaded
 * (ASan refuses to start; told not to check, the layer ignores its options).
 */
static void need_kvm(void)
{
#ifdef SANITIZED
	test_skip("a sanitized gmem cannot preload libgmem-kvm.so (its runtime must come first)");
#endif
	kvm_require();
}

/* gmem vm --kvm ARGS, skipping the calling test if it cannot run a guest. */
static struct output run_guest(const char *const *args)
{
	const char *argv[16];

	need_kvm();
	return run_gmem_or_skip(kvm_vm_argv(argv, args));
}

TEST(every_arch_passes_its_guest_checks)
{
	const char *const args[] = { "--arch", "all", "--quiet", NULL };
	struct output o = run_guest(args);

	if (o.status != 0)
		printf("#   %s%s", o.out, o.err);
	ASSERT_EQ(o.status, 0);
	output_free(&o);
}

TEST(each_arch_reports_all_nineteen_checks_and_its_conversions)
{
	static const char *const archs[] = { "sw", "snp", "tdx", "pkvm" };
	const char *const args[] = { "--arch", "all", "--json", "--iterations", "300", NULL };
	struct output o = run_guest(args);
	const char *line = o.out;

	ASSERT_EQ(o.status, 0);
	/* A header, one result per arch, a summary. */
	ASSERT_EQ(count_lines(o.out), 6);
	line = strchr(line, '\n') + 1;
	for (int i = 0; i < 4; i++, line = strchr(line, '\n') + 1) {
		char arch[64];

		snprintf(arch, sizeof(arch), "{\"type\":\"result\",\"arch\":\"%s\",\"memory\":\"kvm\"",
			 archs[i]);
		ASSERT_TRUE(!strncmp(line, arch, strlen(arch)));
		ASSERT_TRUE(strstr(line, "\"result\":\"pass\""));
		ASSERT_EQ(json_num(line, "checks_passed"), 19);
		ASSERT_EQ(json_num(line, "checks_failed"), 0);
		/* The shared-alias check's; see docs/vmm.md for any others. */
		ASSERT_GE(json_num(line, "implicit_conversions"), 1);
		/* Every explicit one: two a round, three in the checks. */
		ASSERT_EQ(json_num(line, "bench_conversions"), 2 * 300);
		ASSERT_EQ(json_num(line, "conversions") -
			  json_num(line, "implicit_conversions"), 2 * 300 + 3);
	}
	output_free(&o);
}

TEST(console_shows_the_sw_protected_check_in_place_of_the_private_alias_one)
{
	const char *const args[] = { "--arch", "tdx", "--iterations", "10", NULL };
	struct output o = run_guest(args);

	ASSERT_EQ(o.status, 0);
	ASSERT_TRUE(strstr(o.out, "tdx: vcpu0: ok 2 - the host cannot read a private page\n"));
	ASSERT_TRUE(strstr(o.out, "private data is gone after shared and back (snp, tdx)"));
	ASSERT_TRUE(strstr(o.out, "ok 16 - a shared access converts a private page, data gone (snp, tdx)"));
	ASSERT_TRUE(strstr(o.out, "ok 18 - a private-alias access leaves a shared page shared (SW_PROTECTED)"));
	ASSERT_TRUE(!strstr(o.out, "a private access converts it back"));
	ASSERT_TRUE(!strstr(o.out, "not ok"));
	ASSERT_TRUE(strstr(o.out, "tdx: pass: 19 checks passed, 0 failed"));
	output_free(&o);
}

TEST(check_mode_sees_no_violation_on_any_arch)
{
	const char *const args[] = { "--arch", "all", "--check", "--json",
				     "--iterations", "5", NULL };
	struct output o = run_guest(args);
	int lines = 0;

	if (o.status != 0)
		printf("#   %s%s", o.out, o.err);
	ASSERT_EQ(o.status, 0);
	for (const char *p = o.out; (p = strstr(p, "\"policy\":\"convert\",\"result\":\"pass\"")); p++)
		lines++;
	ASSERT_EQ(lines, 4);
	ASSERT_TRUE(!strstr(o.err, "violation"));
	output_free(&o);
}

TEST(legacy_contract_loses_a_pkvm_guests_data_through_the_uapi_too)
{
	const char *const args[] = { "--arch", "pkvm", "--contract", "legacy",
				     "--iterations", "10", NULL };
	struct output o = run_guest(args);

	ASSERT_EQ(o.status, 1);
	ASSERT_TRUE(strstr(o.out, "not ok 4 - private data is still there once shared (sw, pkvm)"));
	ASSERT_TRUE(strstr(o.out, "pkvm: FAIL: 16 checks passed, 3 failed"));
	output_free(&o);
}

TEST(refuse_policy_stops_the_guest_at_its_shared_alias_access)
{
	const char *const args[] = { "--arch", "sw", "--policy", "refuse",
				     "--json", "--iterations", "10", NULL };
	struct output o = run_guest(args);
	const char *result;

	ASSERT_EQ(o.status, 1);
	result = strstr(o.out, "{\"type\":\"result\"");
	ASSERT_TRUE(result);
	ASSERT_TRUE(strstr(result, "\"result\":\"fail\""));
	ASSERT_EQ(json_num(result, "checks_failed"), 0);	/* it never got to say */
	ASSERT_EQ(json_num(result, "implicit_conversions"), 0);
	if (strstr(o.err, "with a shared access (KVM_EXIT_MEMORY_FAULT)")) {
		/* The layer's own: a private page first touched off its start. */
		output_free(&o);
		test_skip("the layer reported a memory fault the kernel would not (docs/vmm.md)");
	}
	ASSERT_TRUE(strstr(o.err, "refused: guest accessed private page 0x104000 through its shared alias"));
	output_free(&o);
}

TEST(a_hand_run_gmem_exec_is_the_layer_it_runs_under)
{
	const char *const good[] = { "exec", "--arch", "snp", "--", gmem_path(), "vm",
				     "--kvm", "--quiet", "--iterations", "10", NULL };
	const char *const wrong[] = { "exec", "--arch", "snp", "--", gmem_path(), "vm",
				      "--kvm", "--arch", "sw", NULL };
	struct output o;

	need_kvm();
	o = run_gmem(good);
	ASSERT_EQ(o.status, 0);
	ASSERT_TRUE(strstr(o.out, "snp: pass: 19 checks passed"));
	ASSERT_EQ(count_lines(o.out), 2);	/* one arch: result and benchmark */
	output_free(&o);
	o = run_gmem(wrong);
	ASSERT_EQ(o.status, 2);
	ASSERT_TRUE(strstr(o.err, "runs the layer's arch (snp)"));
	output_free(&o);
}

TEST(what_kvms_uapi_cannot_say_is_refused_with_one_line)
{
	static const char *const cases[][4] = {
		{ "--folio", "2M", NULL }, { "--eager-map", NULL },
		{ "--check", "--vcpus", "2", NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct output o = run_kvm_vm(cases[i]);
		char *nl = strchr(o.err, '\n');

		ASSERT_EQ(o.status, 2);
		ASSERT_TRUE(!strncmp(o.err, "gmem vm: ", 9));
		ASSERT_TRUE(nl && nl[1] == 0);
		ASSERT_EQ(o.out[0], 0);
		output_free(&o);
	}
}

TEST(help_lists_kvm)
{
	static const char *const args[] = { "vm", "--help", NULL };
	struct output o = run_gmem(args);

	ASSERT_EQ(o.status, 0);
	ASSERT_TRUE(strstr(o.out, "--kvm"));
	output_free(&o);
}

/*
 * gmem exec --trace: the guest's run under the layer leaves a JSON line for
 * the emulated ioctls, the exits the layer resolved through gmem and the
 * arch hooks (snp's make_shared on to-shared conversions).
 */
TEST(exec_trace_records_ioctls_exits_and_hooks)
{
	char path[] = "/tmp/gmem-trace-XXXXXX";
	int fd = mkstemp(path);
	const char *const args[] = { "exec", "--attributes", "in-place", "--arch", "snp",
				     "--trace", path, "--", gmem_path(), "vm", "--kvm",
				     "--arch", "snp", NULL };
	struct output o;
	char *text;
	FILE *f;

	need_kvm();
	ASSERT_GE(fd, 0);
	close(fd);
	o = run_gmem_or_skip(args);
	ASSERT_EQ(o.status, 0);
	f = fopen(path, "r");
	ASSERT_TRUE(f != NULL);
	text = slurp(f);
	unlink(path);
	ASSERT_TRUE(strstr(text, "\"ioctl\":\"KVM_CREATE_GUEST_MEMFD\""));
	ASSERT_TRUE(strstr(text, "\"ioctl\":\"KVM_SET_USER_MEMORY_REGION2\""));
	ASSERT_TRUE(strstr(text, "\"ioctl\":\"KVM_SET_MEMORY_ATTRIBUTES2\""));
	ASSERT_TRUE(strstr(text, "\"exit\":\"KVM_EXIT_MMIO\""));
	ASSERT_TRUE(strstr(text, "\"hook\":\"make_shared\""));
	free(text);
	output_free(&o);
}

/* gmem exec --probe: the host beside the layer, the layer adding SW_PROTECTED. */
TEST(exec_probe_shows_the_host_beside_the_layer)
{
	const char *const args[] = { "exec", "--probe", NULL };
	struct output o;

	need_kvm();
	o = run_gmem_or_skip(args);
	ASSERT_EQ(o.status, 0);
	ASSERT_TRUE(strstr(o.out, "under gmem exec"));
	ASSERT_TRUE(strstr(o.out, "VM_TYPES (235)"));
	ASSERT_TRUE(strstr(o.out, "KVM_CREATE_VM(SW_PROTECTED)"));
	output_free(&o);
}
