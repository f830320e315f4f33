// SPDX-License-Identifier: MIT
/*
 * gmem bench case 9: the KVM layer's cost. Each measurement runs in a child
 * process, bare or under gmem exec, the two interleaved run by run so the
 * ratios compare the same moments of the machine:
 *   9a  an ioctl the layer passes through (KVM_CHECK_EXTENSION of a
 *       capability it does not own) under the layer vs bare
 *   9b  a 4 KiB conversion pair of random pages of a 1 GiB file through
 *       KVM_SET_MEMORY_ATTRIBUTES2 under the layer vs gmem_set_attributes
 *       (gmem.h) on the same pages: the layer's added cost per conversion
 *   9c  the gmem vm guest converting its pages (its benchmark loop): the
 *       VMM speaking KVM's UAPI under the layer (gmem vm --kvm) vs the same
 *       guest and VMM on gmem.h directly (gmem vm), ns per conversion
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "bench.h"
#include "kvm/uapi.h"

#define FILE_SIZE	GiB

/* ------------------------------------------------------------ children */

static double child_ioctl(long iters)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm;
	uint64_t t0;

	if (kvm < 0 || (vm = ioctl(kvm, KVM_CREATE_VM, 0)) < 0)
		return -1;
	t0 = now_ns();
	for (long i = 0; i < iters; i++)
		ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	return (double)(now_ns() - t0) / (double)iters;
}

static double child_convert_kvm(long iters)
{
	struct gk_create_guest_memfd g = { .size = FILE_SIZE };
	struct gk_memory_attributes2 a = { .size = PAGE };
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm, fd;
	uint64_t seed = 42, t0;

	if (kvm < 0 || (vm = ioctl(kvm, KVM_CREATE_VM, GK_X86_SW_PROTECTED_VM)) < 0 ||
	    (fd = ioctl(vm, GK_CREATE_GUEST_MEMFD, &g)) < 0)
		return -1;
	t0 = now_ns();
	for (long i = 0; i < iters; i++) {
		a.offset = (rnd(&seed) % (FILE_SIZE / PAGE)) * PAGE;
		a.attributes = 0;
		if (ioctl(fd, GK_SET_MEMORY_ATTRIBUTES2, &a))
			return -1;
		a.attributes = GK_MEMORY_ATTRIBUTE_PRIVATE;
		if (ioctl(fd, GK_SET_MEMORY_ATTRIBUTES2, &a))
			return -1;
	}
	return (double)(now_ns() - t0) / (double)iters;
}

static double child_convert_gmem(long iters)
{
	struct env e;
	uint64_t seed = 42, t0, err;
	int fd;

	if (env_open(&e, POOL_BYTES, "sw") || (fd = gmem_create(e.vm, FILE_SIZE, 0)) < 0)
		return -1;
	t0 = now_ns();
	for (long i = 0; i < iters; i++) {
		uint64_t off = (rnd(&seed) % (FILE_SIZE / PAGE)) * PAGE;

		if (gmem_set_attributes(fd, off, PAGE, 0, 0, &err) ||
		    gmem_set_attributes(fd, off, PAGE, GMEM_ATTR_PRIVATE, 0, &err))
			return -1;
	}
	return (double)(now_ns() - t0) / (double)iters;
}

/* gmem bench --kvm-child KIND ITERS: print ns per operation. */
int bench_kvm_child(const char *kind, long iters)
{
	double ns = !strcmp(kind, "ioctl") ? child_ioctl(iters) :
		    !strcmp(kind, "convert-kvm") ? child_convert_kvm(iters) :
		    !strcmp(kind, "convert-gmem") ? child_convert_gmem(iters) : -1;

	printf("%.3f\n", ns);
	return ns < 0;
}

/* ------------------------------------------------------------- parent */

/* Run "gmem [exec --] bench --kvm-child KIND ITERS"; ns per op, or -1. */
static double measure(bool layered, const char *kind, long iters)
{
	const char *bare[] = { "gmem", "bench", "--kvm-child", kind, NULL, NULL };
	const char *under[] = { "gmem", "exec", "--", "/proc/self/exe", "bench",
				"--kvm-child", kind, NULL, NULL };
	char n[32], out[64];

	snprintf(n, sizeof(n), "%ld", iters);
	bare[4] = under[7] = n;
	if (run_self(layered ? under : bare, out, sizeof(out)))
		return -1;
	return atof(out);
}

/* One gmem vm benchmark run: ns per guest conversion, or -1. */
static double measure_vm(bool kvm, long iters)
{
	const char *direct[] = { "gmem", "vm", "--arch", "sw", "--json", "--iterations",
				 NULL, NULL };
	const char *layered[] = { "gmem", "vm", "--kvm", "--arch", "sw", "--json",
				  "--iterations", NULL, NULL };
	char n[32], out[4096], *at;

	snprintf(n, sizeof(n), "%ld", iters);
	direct[6] = layered[7] = n;
	if (run_self(kvm ? layered : direct, out, sizeof(out)))
		return -1;
	at = strstr(out, "\"conversions_per_sec\":");
	if (!at)
		return -1;
	return 1e9 / atof(at + strlen("\"conversions_per_sec\":"));
}

static void pair_row(const char *id, const char *name, const char *layered_kind,
		     const char *base_kind, const char *base_name, long iters,
		     const struct target *t)
{
	struct row r = row_new(id, name, "ns");
	bool vm = !strcmp(layered_kind, "vm");
	struct series s = { 0 };

	while (series_more(&s, t)) {
		double b = vm ? measure_vm(false, iters) : measure(false, base_kind, iters);
		double m = vm ? measure_vm(true, iters) : measure(true, layered_kind, iters);

		if (m < 0 || b < 0) {
			snprintf(r.skip, sizeof(r.skip), "a child failed (run gmem exec --probe)");
			emit(&r);
			return;
		}
		series_add(&s, m, b, NAN);
	}
	row_from(&r, &s, t, base_name, "layered / direct, per run");
	emit(&r);
}

void case9(void)
{
	long iters = quick ? 20000 : 100000;

	if (access("/dev/kvm", R_OK | W_OK)) {
		emit_skip("9", "the KVM layer", "skipped: /dev/kvm is not usable here");
		return;
	}
	static const struct target t9c = { "<= 1.10x", 1.10, true, false, 0 };

	pair_row("9a", "KVM layer: a passed-through ioctl", "ioctl", "ioctl",
		 "the same ioctl bare", iters, NULL);
	pair_row("9b", "KVM layer: 4K conversion pair, 1 GiB file",
		 "convert-kvm", "convert-gmem", "gmem_set_attributes pair",
		 iters / 10, NULL);
	pair_row("9c", "KVM layer: a real guest's conversions", "vm", "vm",
		 "the same guest on gmem.h", quick ? 10000 : 40000, &t9c);
}
