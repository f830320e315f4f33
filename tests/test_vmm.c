// SPDX-License-Identifier: MIT
/*
 * Real guests: gmem vm, the way a user runs it ($(O)/gmem): the guest's own
 * checks on every backend, more vCPUs, the refuse policy, usage errors.
 * The guest tests skip when /dev/kvm is not usable here.
 */
#include <fcntl.h>
#include <limits.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* ------------------------------------------------------------- gmem vm */

/* Run "gmem vm ARGS..." (@args NULL-terminated) and collect what it printed. */
/* "vm" then @args (NULL-terminated), in @argv of 16 entries. */
static const char *const *vm_argv(const char **argv, const char *const *args)
{
	int i;

	argv[0] = "vm";
	for (i = 0; args[i] && i < 13; i++)
		argv[i + 1] = args[i];
	argv[i + 1] = NULL;
	return argv;
}

static struct output run_vm(const char *const *args)
{
	const char *argv[16];

	return run_gmem(vm_argv(argv, args));
}

/* gmem vm ARGS, skipping the calling test where it cannot run a guest. */
static struct output run_vm_or_skip(const char *const *args)
{
	const char *argv[16];

	return run_gmem_or_skip(vm_argv(argv, args));
}


static void guest_passes_on(const char *arch, const char *vcpus,
			    const char *folio)
{
	const char *const args[] = { "--arch", arch, "--vcpus", vcpus, "--json",
				     "--iterations", "300", "--folio", folio,
				     NULL };
	struct output o;

	kvm_require();
	o = run_vm_or_skip(args);
	if (o.status != 0)
		printf("#   gmem vm --arch %s: exit %d: %s%s", arch, o.status, o.out, o.err);
	ASSERT_EQ(o.status, 0);
	ASSERT_TRUE(strstr(o.out, "\"result\":\"pass\""));
	ASSERT_EQ(json_num(o.out, "checks_failed"), 0);
	ASSERT_EQ(json_num(o.out, "checks_passed"), 19);
	ASSERT_EQ(json_num(o.out, "bench_conversions"), 600 * atoi(vcpus));
	ASSERT_EQ(json_num(o.out, "implicit_conversions"), 2);
	printf("#   %s, %s vCPU, %s folios: %lld conversions/s\n", arch, vcpus,
	       folio, json_num(o.out, "conversions_per_sec"));
	output_free(&o);
}

static void guest_passes(const char *arch, const char *vcpus)
{
	guest_passes_on(arch, vcpus, "4K");
}

TEST(guest_self_checks_pass_on_sw)
{
	guest_passes("sw", "1");
}

TEST(guest_self_checks_pass_on_snp)
{
	guest_passes("snp", "1");
}

TEST(guest_self_checks_pass_on_tdx)
{
	guest_passes("tdx", "1");
}

TEST(guest_self_checks_pass_on_pkvm)
{
	guest_passes("pkvm", "1");
}

TEST(guest_converts_from_three_vcpus_at_once)
{
	guest_passes("pkvm", "3");
}

/*
 * On 2 MiB folios every conversion of the guest splits or merges the folio
 * its page is in, and zaps the huge entry mapping the guest's own code: its
 * next instruction fetch must be faulted back in, from two vCPUs at once.
 */
TEST(guest_self_checks_pass_on_2m_folios_on_every_backend)
{
	static const char *const archs[] = { "sw", "snp", "tdx", "pkvm" };

	for (int i = 0; i < 4; i++)
		guest_passes_on(archs[i], "2", "2M");
}

TEST(guest_console_reports_each_check)
{
	const char *const args[] = { "--arch", "tdx", "--iterations", "10", NULL };
	struct output o;

	kvm_require();
	o = run_vm_or_skip(args);
	ASSERT_EQ(o.status, 0);
	ASSERT_TRUE(strstr(o.out, "tdx: vcpu0: ok 2 - the host cannot read a private page\n"));
	ASSERT_TRUE(strstr(o.out, "private data is gone after shared and back (snp, tdx)"));
	ASSERT_TRUE(strstr(o.out, "a punched private page reads zero"));
	ASSERT_TRUE(!strstr(o.out, "not ok"));
	ASSERT_TRUE(strstr(o.out, "tdx: pass: 19 checks passed, 0 failed"));
	output_free(&o);
}

TEST(eager_map_spares_the_first_touch_after_each_conversion_an_exit)
{
	const char *const lazy[] = { "--arch", "snp", "--json", "--iterations", "300", NULL };
	const char *const eager[] = { "--arch", "snp", "--json", "--iterations", "300",
				      "--eager-map", NULL };
	struct output a, b;

	kvm_require();
	a = run_vm_or_skip(lazy);
	b = run_vm_or_skip(eager);
	ASSERT_EQ(a.status, 0);
	ASSERT_EQ(b.status, 0);
	ASSERT_EQ(json_num(b.out, "checks_passed"), 19);
	ASSERT_EQ(json_num(b.out, "implicit_conversions"), 2);
	/* Two conversions a round, each one exit fewer. */
	ASSERT_LE(json_num(b.out, "exits"), json_num(a.out, "exits") - 2 * 300);
	output_free(&a);
	output_free(&b);
}

TEST(real_guest_traffic_breaks_no_invariant_on_any_backend)
{
	const char *const args[] = { "--arch", "all", "--check", "--json",
				     "--iterations", "5", NULL };
	struct output o;
	int lines = 0;

	kvm_require();
	o = run_vm_or_skip(args);
	if (o.status != 0)
		printf("#   %s%s", o.out, o.err);
	ASSERT_EQ(o.status, 0);
	for (const char *p = o.out; (p = strstr(p, "\"policy\":\"convert\",\"result\":\"pass\"")); p++)
		lines++;
	ASSERT_EQ(lines, 4);
	output_free(&o);
}

TEST(legacy_contract_loses_a_real_pkvm_guests_shared_data)
{
	const char *const legacy[] = { "--arch", "pkvm", "--contract", "legacy",
				       "--iterations", "10", NULL };
	const char *const split[] = { "--arch", "pkvm", "--contract", "split",
				      "--iterations", "10", NULL };
	struct output o;

	kvm_require();
	o = run_vm_or_skip(legacy);
	ASSERT_EQ(o.status, 1);
	ASSERT_TRUE(strstr(o.out, "not ok 4 - private data is still there once shared (sw, pkvm)"));
	ASSERT_TRUE(strstr(o.out, "pkvm: FAIL: 16 checks passed, 3 failed"));
	output_free(&o);
	o = run_vm_or_skip(split);
	ASSERT_EQ(o.status, 0);
	ASSERT_TRUE(!strstr(o.out, "not ok"));
	output_free(&o);
}

TEST(refuse_policy_stops_the_guest_at_a_wrong_view_access)
{
	const char *const args[] = { "--arch", "sw", "--policy", "refuse",
				     "--json", "--iterations", "10", NULL };
	struct output o;

	kvm_require();
	o = run_vm_or_skip(args);
	ASSERT_EQ(o.status, 1);
	ASSERT_TRUE(strstr(o.out, "\"result\":\"fail\""));
	ASSERT_EQ(json_num(o.out, "checks_failed"), 0);	/* it never got to say */
	ASSERT_EQ(json_num(o.out, "implicit_conversions"), 0);
	ASSERT_TRUE(strstr(o.err, "refused: guest accessed private page 0x104000 through its shared alias"));
	output_free(&o);
}

TEST(bad_options_exit_2_with_one_line)
{
	static const char *const cases[][5] = {
		{ "--arch", "x86", NULL }, { "--vcpus", "0", NULL },
		{ "--vcpus", "9", NULL }, { "--policy", "maybe", NULL },
		{ "--iterations", "-1", NULL }, { "--frobnicate", NULL },
		{ "--arch", NULL }, { "--check", "--vcpus", "2", NULL },
		{ "--contract", "final", NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct output o = run_vm(cases[i]);
		char *nl = strchr(o.err, '\n');

		ASSERT_EQ(o.status, 2);
		ASSERT_TRUE(!strncmp(o.err, "gmem vm: ", 9));
		ASSERT_TRUE(nl && nl[1] == 0);
		ASSERT_EQ(o.out[0], 0);
		output_free(&o);
	}
}

TEST(help_lists_the_options)
{
	static const char *const args[] = { "--help", NULL };
	struct output o = run_vm(args);

	ASSERT_EQ(o.status, 0);
	ASSERT_TRUE(strstr(o.out, "--arch"));
	ASSERT_TRUE(strstr(o.out, "--vcpus"));
	ASSERT_TRUE(strstr(o.out, "--policy convert|refuse"));
	ASSERT_TRUE(strstr(o.out, "--json"));
	ASSERT_TRUE(strstr(o.out, "--eager-map"));
	ASSERT_TRUE(strstr(o.out, "--contract split|legacy"));
	output_free(&o);
}
