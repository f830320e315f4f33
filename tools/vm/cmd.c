// SPDX-License-Identifier: MIT
/*
 * gmem vm - a small VMM: a real KVM guest whose RAM is a gmem file.
 *
 * This file is the command: options, one run of the guest per arch, and the
 * report. The guest (tools/vm/guest/) checks its arch's conversion semantics
 * from inside and times its own conversions. Its memory path is gmem.h
 * (gmem.c), or with --kvm KVM's UAPI alone (kvm.c): then gmem vm runs
 * itself under gmem exec (libgmem-kvm.so), once per arch, as a VMM written
 * for a kernel with guest_memfd in-place conversion would run there.
 * setup.c makes the VM and its vCPUs, exit.c runs them.
 * docs/vmm.md walks through both paths.
 *
 * Exit status: 0 every guest check passed; 1 a check failed or the guest
 * was stopped; 2 bad usage; 77 KVM is not usable here (or the guest could
 * not be built).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "vm.h"
#include "lib/json.h"
#include "lib/util.h"

const char *const vm_arches[4] = {
	[VM_ARCH_SW] = "sw", [VM_ARCH_SNP] = "snp",
	[VM_ARCH_TDX] = "tdx", [VM_ARCH_PKVM] = "pkvm",
};

/*
 * Set in the environment of the gmem vm --kvm that runs under gmem exec: the
 * layer sets nothing a program could see, so this says not to go round again.
 */
#define LAYERED_ENV	"GMEM_VM_KVM_LAYERED"

/* ---------------------------------------------------------------- report */

static double seconds(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) +
	       (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void report(struct vmm *m, bool ok)
{
	unsigned int passed = atomic_load(&m->checks_passed);
	unsigned int failed = atomic_load(&m->checks_failed);
	uint64_t conv = atomic_load(&m->bench_conversions);
	double secs = seconds(&m->bench_start, &m->bench_end);
	double rate;

	if (secs < 0)		/* stopped before the benchmark ended */
		secs = 0;
	rate = secs > 0 ? (double)conv / secs : 0;

	if (m->o->json) {
		printf("{\"type\":\"result\",\"arch\":\"%s\",\"memory\":\"%s\",\"vcpus\":%d,\"policy\":\"%s\","
		       "\"result\":\"%s\",\"checks_passed\":%u,\"checks_failed\":%u,"
		       "\"conversions\":%llu,\"implicit_conversions\":%llu,"
		       "\"exits\":%llu,\"bench_conversions\":%llu,"
		       "\"bench_seconds\":%.6f,\"conversions_per_sec\":%.0f,"
		       "\"bench_gmem_seconds\":%.6f",
		       vm_arches[m->arch], m->o->kvm ? "kvm" : "gmem", m->o->vcpus,
		       m->o->refuse ? "refuse" : "convert",
		       ok ? "pass" : "fail", passed, failed,
		       (unsigned long long)atomic_load(&m->conversions),
		       (unsigned long long)atomic_load(&m->implicit),
		       (unsigned long long)atomic_load(&m->exits),
		       (unsigned long long)conv, secs, rate,
		       (double)atomic_load(&m->call_ns) / 1e9);
		printf(",\"message\":");
		json_string(stdout, m->error[0] ? m->error : NULL);
		printf("}\n");
		return;
	}
	printf("%s: %s: %u checks passed, %u failed; %llu conversions (%llu implicit), %llu exits\n",
	       vm_arches[m->arch], ok ? "pass" : "FAIL", passed, failed,
	       (unsigned long long)atomic_load(&m->conversions),
	       (unsigned long long)atomic_load(&m->implicit),
	       (unsigned long long)atomic_load(&m->exits));
	if (conv && secs > 0)
		printf("%s: benchmark: %llu conversions by %d vCPU%s in %.3f s: %.0f conversions/s (%.0f%% of it in %s)\n",
		       vm_arches[m->arch], (unsigned long long)conv, m->o->vcpus,
		       m->o->vcpus > 1 ? "s" : "", secs, rate,
		       100.0 * (double)atomic_load(&m->call_ns) / 1e9 /
		       (secs * m->o->vcpus), m->mem->calls);
}

/* ------------------------------------------------------------------ run */

/* Run the guest once on backend @arch. Returns the exit status. */
static int run_arch(const struct opts *o, int arch)
{
	struct vmm m = {
		.o = o, .mem = o->kvm ? &vm_memory_kvm : &vm_memory_gmem,
		.arch = arch, .kvm = -1, .vmfd = -1,
		.pool = -1, .gvm = -1, .fd = -1, .error_set = ATOMIC_FLAG_INIT,
	};
	size_t padded = (guest_image_size() + VM_PAGE - 1) & ~(VM_PAGE - 1);
	struct vcpu vcpus[VM_MAX_VCPUS];
	pthread_t threads[VM_MAX_VCPUS];
	int started = 0, ret;
	bool ok;

	if (!guest_image_size()) {
		fprintf(stderr, "gmem vm: this gmem was built without its guest "
			"(GUEST_CC could not build 32-bit x86 code)\n");
		return EXIT_SKIP;
	}
	if (VM_IMAGE_GPA + padded > VM_BOOT_END - VM_MAX_VCPUS * VM_STACK_SIZE) {
		fprintf(stderr, "gmem vm: guest image of %zu bytes does not fit\n",
			guest_image_size());
		return 1;
	}
	pthread_mutex_init(&m.console_lock, NULL);
	pthread_mutex_init(&m.time_lock, NULL);
	for (int i = 0; i < o->vcpus; i++)
		vcpus[i] = (struct vcpu){ .vmm = &m, .id = i, .fd = -1 };
	ret = vmm_open(&m);
	if (ret == EXIT_SKIP) {
		fprintf(stderr, "gmem vm: KVM is not usable here: %s\n", m.error);
		vmm_teardown(&m, vcpus);
		return EXIT_SKIP;
	}
	if (!ret)
		ret = m.mem->setup(&m);
	for (int i = 0; !ret && i < o->vcpus; i++)
		ret = vcpu_setup(&m, &vcpus[i]);
	if (ret) {
		fprintf(stderr, "gmem vm: %s: setup failed: %s\n", vm_arches[arch],
			m.error);
		vmm_teardown(&m, vcpus);
		return 1;
	}
	for (; started < o->vcpus; started++)
		if (pthread_create(&threads[started], NULL, vcpu_loop, &vcpus[started])) {
			vmm_stop(&m, "cannot start a vCPU thread");
			break;
		}
	for (int i = 0; i < started; i++)
		pthread_join(threads[i], NULL);

	if (m.mem->finish)
		m.mem->finish(&m);
	ok = !m.error[0] && atomic_load(&m.checks_failed) == 0 &&
	     atomic_load(&m.checks_passed) > 0;
	for (int i = 0; i < o->vcpus; i++)
		if (!vcpus[i].done || vcpus[i].failures)
			ok = false;
	report(&m, ok);
	fflush(stdout);
	if (m.error[0])
		fprintf(stderr, "gmem vm: %s: %s\n", vm_arches[arch], m.error);
	vmm_teardown(&m, vcpus);
	return ok ? 0 : 1;
}

/*
 * --kvm, outside the layer: run "gmem exec ... -- gmem vm --kvm ..." for
 * @arch, the layer's options from ours, and return its exit status. Its
 * output is ours.
 */
static int run_layered(const struct opts *o, int arch)
{
	char self[PATH_MAX], vcpus[16], iterations[16];
	const char *argv[32];
	int n = 0, status;
	ssize_t len;
	pid_t pid;

	len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (len <= 0) {
		fprintf(stderr, "gmem vm: /proc/self/exe: %s\n", strerror(errno));
		return 1;
	}
	self[len] = 0;
	snprintf(vcpus, sizeof(vcpus), "%d", o->vcpus);
	snprintf(iterations, sizeof(iterations), "%u", o->iterations);
	argv[n++] = self;
	argv[n++] = "exec";
	argv[n++] = "--attributes";
	argv[n++] = "in-place";
	argv[n++] = "--arch";
	argv[n++] = vm_arches[arch];
	argv[n++] = "--contract";
	argv[n++] = o->legacy ? "legacy" : "split";
	if (o->check)
		argv[n++] = "--check";
	argv[n++] = "--";
	argv[n++] = self;
	argv[n++] = "vm";
	argv[n++] = "--kvm";
	argv[n++] = "--arch";
	argv[n++] = vm_arches[arch];
	argv[n++] = "--vcpus";
	argv[n++] = vcpus;
	argv[n++] = "--iterations";
	argv[n++] = iterations;
	argv[n++] = "--policy";
	argv[n++] = o->refuse ? "refuse" : "convert";
	if (o->json)
		argv[n++] = "--json";
	if (o->quiet)
		argv[n++] = "--quiet";
	argv[n] = NULL;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "gmem vm: fork: %s\n", strerror(errno));
		return 1;
	}
	if (pid == 0) {
		setenv(LAYERED_ENV, "1", 1);
		execv(self, (char **)argv);
		fprintf(stderr, "gmem vm: %s: %s\n", self, strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return 1;
	if (WIFSIGNALED(status)) {
		fprintf(stderr, "gmem vm: %s: killed by signal %d under gmem exec\n",
			vm_arches[arch], WTERMSIG(status));
		return 1;
	}
	return WEXITSTATUS(status);
}

/* ---------------------------------------------------------------- options */

static const char usage_text[] =
	"usage: gmem vm [--arch sw|snp|tdx|pkvm|all] [--vcpus N] [--policy convert|refuse]\n"
	"               [--iterations N] [--eager-map] [--check] [--contract split|legacy]\n"
	"               [--folio 4K|2M] [--kvm] [--json] [--quiet]\n"
	"\n"
	"Boot a small KVM guest whose memory is a gmem file, with a private and a\n"
	"shared alias of its RAM, and let it check its arch's conversion semantics\n"
	"and time its own conversions.\n"
	"\n"
	"  --arch A         backend, or all of them in turn (default: all)\n"
	"  --vcpus N        vCPUs, 1..8; each runs the benchmark on its own page\n"
	"                   (default: 1)\n"
	"  --policy P       a guest access through the alias that disagrees with the\n"
	"                   page: convert it (default) or refuse and stop the guest\n"
	"  --iterations N   benchmark rounds per vCPU, two conversions each\n"
	"                   (default: 2000)\n"
	"  --eager-map      map the pages of a small explicit conversion right away,\n"
	"                   sparing the guest's first touch an exit\n"
	"  --check          run gmem's invariant checker after every call (slow;\n"
	"                   one vCPU) and fail on any violation\n"
	"  --contract C     the arch hook contract: split (default) or legacy, the\n"
	"                   single invalidate hook of the patch under review\n"
	"                   (docs/arch.md)\n"
	"  --folio F        folio size of guest RAM: 4K (default) or 2M, huge\n"
	"                   folios split and merged by the guest's conversions\n"
	"  --kvm            speak KVM's UAPI only (a SW_PROTECTED VM, guest_memfd,\n"
	"                   KVM_SET_MEMORY_ATTRIBUTES2, memory-fault exits), run\n"
	"                   under gmem exec once per arch (docs/vmm.md)\n"
	"  --json           one JSON object per backend instead of text\n"
	"  --quiet          do not echo the guest's console\n"
	"\n"
	"Exit status: 0 every guest check passed; 1 a check failed or the guest\n"
	"was stopped; 2 bad usage; 77 KVM is not usable here, or gmem was built\n"
	"without its guest.\n";

static int bad_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "gmem vm: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (try gmem vm --help)\n");
	return 2;
}

static int parse(int argc, char **argv, struct opts *o)
{
	unsigned long n;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage_text, stdout);
			return 0;
		} else if (!strcmp(a, "--json")) {
			o->json = true;
		} else if (!strcmp(a, "--quiet")) {
			o->quiet = true;
		} else if (!strcmp(a, "--eager-map")) {
			o->eager = true;
		} else if (!strcmp(a, "--check")) {
			o->check = true;
		} else if (!strcmp(a, "--kvm")) {
			o->kvm = true;
		} else if (!strcmp(a, "--folio")) {
			if (!val || (strcmp(val, "4K") && strcmp(val, "2M")))
				return bad_usage("--folio wants 4K or 2M, not '%s'",
						 val ? val : "");
			o->folio = strcmp(val, "2M") ? 0 : GMEM_FLAG_HUGE_2M;
			i++;
		} else if (!strcmp(a, "--contract")) {
			if (!val || (strcmp(val, "split") && strcmp(val, "legacy")))
				return bad_usage("--contract wants split or legacy, not '%s'",
						 val ? val : "");
			o->legacy = !strcmp(val, "legacy");
			i++;
		} else if (!strcmp(a, "--arch")) {
			if (!val)
				return bad_usage("%s needs a value", a);
			o->arch = -2;
			for (int k = 0; k < 4; k++)
				if (!strcmp(val, vm_arches[k]))
					o->arch = k;
			if (!strcmp(val, "all"))
				o->arch = -1;
			if (o->arch == -2)
				return bad_usage("unknown arch '%s'", val);
			i++;
		} else if (!strcmp(a, "--vcpus")) {
			if (!parse_uint(val, VM_MAX_VCPUS, &n) || !n)
				return bad_usage("--vcpus wants 1..8, not '%s'", val ? val : "");
			o->vcpus = (int)n;
			i++;
		} else if (!strcmp(a, "--iterations")) {
			if (!parse_uint(val, 100000000, &n))
				return bad_usage("--iterations wants a number, not '%s'", val ? val : "");
			o->iterations = (unsigned int)n;
			i++;
		} else if (!strcmp(a, "--policy")) {
			if (!val || (strcmp(val, "convert") && strcmp(val, "refuse")))
				return bad_usage("--policy wants convert or refuse, not '%s'",
						 val ? val : "");
			o->refuse = !strcmp(val, "refuse");
			i++;
		} else {
			return bad_usage("unknown option '%s'", a);
		}
	}
	if (o->check && o->vcpus > 1)
		return bad_usage("%s runs with one vCPU only", "--check");
	/* What --kvm cannot ask for: KVM's UAPI has no way to say it. */
	if (o->kvm && o->folio)
		return bad_usage("%s: a guest_memfd has 4 KiB folios (huge folios are gmem's GMEM_FLAG_HUGE_2M, not in KVM's UAPI)",
				 "--kvm --folio 2M");
	if (o->kvm && o->eager)
		return bad_usage("%s: mapping pages ahead of the guest is gmem_vm_fault; KVM_PRE_FAULT_MEMORY is not offered here",
				 "--kvm --eager-map");
	return -1;
}

/*
 * The arch of the layer this process runs under, or NULL outside it: our
 * own marker, or gmem exec's LD_PRELOAD (someone ran gmem exec -- gmem vm
 * --kvm by hand; the layer's arch is then GMEM_KVM_ARCH, sw by default).
 */
static const char *layer_arch(void)
{
	const char *arch = getenv("GMEM_KVM_ARCH");
	const char *preload = getenv("LD_PRELOAD");
	const char *marker = getenv(LAYERED_ENV);

	if (!(marker && *marker) && !(preload && strstr(preload, "libgmem-kvm")))
		return NULL;
	return arch && *arch ? arch : "sw";
}

int cmd_vm(int argc, char **argv)
{
	struct opts o = { .arch = -1, .vcpus = 1, .iterations = 2000 };
	const char *layer;
	int status = 0, ret;

	ret = parse(argc, argv, &o);
	if (ret >= 0)
		return ret;
	layer = o.kvm ? layer_arch() : NULL;
	if (layer) {
		/* Under the layer already: run the arch it models, once. */
		int k = 0;

		while (k < 4 && strcmp(vm_arches[k], layer))
			k++;
		if (k == 4 || (o.arch >= 0 && o.arch != k))
			return bad_usage("--kvm under gmem exec runs the layer's arch (%s): name it or no --arch",
					 layer);
		return run_arch(&o, k);
	}
	if (o.json)
		json_header(stdout, "vm");
	for (int k = 0; k < 4; k++) {
		if (o.arch >= 0 && k != o.arch)
			continue;
		fflush(stdout);
		ret = o.kvm ? run_layered(&o, k) : run_arch(&o, k);
		if (ret == EXIT_SKIP) {
			status = EXIT_SKIP;
			break;
		}
		if (ret) {
			if (ret != 1)
				fprintf(stderr, "gmem vm: %s: exit status %d\n",
					vm_arches[k], ret);
			status = 1;
		}
	}
	if (o.json) {
		printf("{\"type\":\"summary\",\"schema\":%d,\"status\":%d,\"result\":\"%s\",\"message\":",
		       GMEM_JSON_SCHEMA, status,
		       status == EXIT_SKIP ? "skipped" : status ? "fail" : "pass");
		json_string(stdout, status == EXIT_SKIP ? "KVM is not usable here (see stderr)" :
			    status ? "a backend failed: see its result" : NULL);
		printf("}\n");
	}
	return status;
}
