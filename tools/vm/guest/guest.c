// SPDX-License-Identifier: MIT
/*
 * The gmem vm guest: a freestanding 32-bit program that checks, from inside
 * a real KVM guest, what its arch promises about private and shared memory,
 * then converts one page back and forth as fast as it can.
 *
 * vCPU 0 runs the checks; every vCPU runs the benchmark on its own page.
 * The globals below belong to vCPU 0 alone.
 * Each check prints "ok N - what" or "not ok N - what" on the serial port
 * and reports itself through VM_HC_RESULT.
 */
#include "abi.h"

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

#define EFAULT	14

static u32 arch, flags;
static u32 checks, failures;

static inline void outb(u16 port, u8 v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline u32 hypercall(u32 nr, u32 a, u32 b, u32 c)
{
	u32 ret;

	__asm__ volatile("inl %1, %0"
			 : "=a"(ret)
			 : "Nd"((u16)VM_HC_PORT), "a"(nr), "b"(a), "c"(b), "S"(c)
			 : "memory");
	return ret;
}

static void puts_serial(const char *s)
{
	while (*s)
		outb(VM_SERIAL_PORT, (u8)*s++);
}

static void put_dec(u32 v)
{
	char buf[11];
	int i = 10;

	buf[i] = 0;
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	puts_serial(&buf[i]);
}

static void check(int ok, const char *what)
{
	checks++;
	if (!ok)
		failures++;
	puts_serial(ok ? "ok " : "not ok ");
	put_dec(checks);
	puts_serial(" - ");
	puts_serial(what);
	puts_serial("\n");
	hypercall(VM_HC_RESULT, checks, ok ? 1 : 0, 0);
}

/* The page at @gpa through the private or the shared alias. */
static volatile u32 *priv(u32 gpa)
{
	return (volatile u32 *)gpa;
}

static volatile u32 *shared(u32 gpa)
{
	return (volatile u32 *)(gpa | VM_SHARED_BIT);
}

static u32 map_gpa(u32 gpa, u32 size, u32 kind)
{
	return hypercall(VM_HC_MAP_GPA_RANGE, gpa, size, kind);
}

static int keeps_content(void)
{
	return arch == VM_ARCH_SW || arch == VM_ARCH_PKVM;
}

/* Fill a page through @p with a pattern seeded by @seed. */
static void fill(volatile u32 *p, u32 seed)
{
	for (u32 i = 0; i < 1024; i++)
		p[i] = seed ^ (i * 0x9e3779b1u);
}

static int holds(volatile u32 *p, u32 seed)
{
	for (u32 i = 0; i < 1024; i++)
		if (p[i] != (seed ^ (i * 0x9e3779b1u)))
			return 0;
	return 1;
}

static int is_zero(volatile u32 *p)
{
	for (u32 i = 0; i < 1024; i++)
		if (p[i])
			return 0;
	return 1;
}

static void run_checks(void)
{
	u32 a = VM_TEST_GPA, b = a + 0x1000, c = a + 0x2000, d = a + 0x3000;
	u32 e = a + 0x4000;

	/* Private: the guest reads its own data; the host cannot. */
	fill(priv(a), 0x1111);
	check(holds(priv(a), 0x1111), "guest reads back what it wrote to a private page");
	check(hypercall(VM_HC_HOST_READ, a, 0x1111, 0) == (u32)-EFAULT,
	      "the host cannot read a private page");

	/* Share and back: the arch decides what survives. */
	check(map_gpa(a, 0x1000, VM_MAP_SHARED) == 0, "MAP_GPA_RANGE to shared");
	if (keeps_content())
		check(holds(shared(a), 0x1111), "private data is still there once shared (sw, pkvm)");
	else
		check(is_zero(shared(a)), "private data is gone once shared (snp, tdx)");
	check(hypercall(VM_HC_HOST_READ, a, shared(a)[0], 0) == 1,
	      "the host reads what the guest sees in a shared page");
	check(map_gpa(a, 0x1000, VM_MAP_PRIVATE) == 0, "MAP_GPA_RANGE back to private");
	if (keeps_content())
		check(holds(priv(a), 0x1111), "private data is still there after shared and back (sw, pkvm)");
	else
		check(is_zero(priv(a)), "private data is gone after shared and back (snp, tdx)");

	/* Shared memory is the host's and the guest's alike. */
	check(map_gpa(b, 0x1000, VM_MAP_SHARED) == 0, "share a second page");
	fill(shared(b), 0x2222);
	check(hypercall(VM_HC_HOST_READ, b + 8, shared(b)[2], 0) == 1,
	      "the host sees the guest's write to a shared page");
	hypercall(VM_HC_HOST_WRITE, b, 0xfeedf00d, 0);
	check(shared(b)[0] == 0xfeedf00d, "the guest sees the host's write to a shared page");

	/* Punched pages read zero, private or shared. */
	fill(priv(c), 0x3333);
	check(hypercall(VM_HC_PUNCH, c, 0x1000, 0) == 0, "punch a private page");
	check(is_zero(priv(c)), "a punched private page reads zero");
	fill(shared(b), 0x4444);
	check(hypercall(VM_HC_PUNCH, b, 0x1000, 0) == 0, "punch a shared page");
	check(is_zero(shared(b)), "a punched shared page reads zero");

	/* A bad request is refused. */
	check(map_gpa(VM_RAM_SIZE, 0x1000, VM_MAP_SHARED) != 0,
	      "MAP_GPA_RANGE outside guest memory fails");

	/* Implicit conversion: touch a page through the other alias. */
	if (flags & VM_BOOT_IMPLICIT) {
		fill(priv(d), 0x5555);
		if (keeps_content())
			check(holds(shared(d), 0x5555), "a shared access converts a private page, data kept (sw, pkvm)");
		else
			check(is_zero(shared(d)), "a shared access converts a private page, data gone (snp, tdx)");
		check(hypercall(VM_HC_HOST_READ, d, shared(d)[0], 0) == 1,
		      "the host reads the implicitly shared page");
		priv(d)[0] = 0x6666;
		if (flags & VM_BOOT_SW_PROTECTED)
			/* No implicit conversion to private exists there. */
			check(priv(d)[0] == 0x6666 &&
			      hypercall(VM_HC_HOST_READ, d, 0x6666, 0) == 1,
			      "a private-alias access leaves a shared page shared (SW_PROTECTED); the host sees it");
		else
			check(priv(d)[0] == 0x6666 &&
			      hypercall(VM_HC_HOST_READ, d, 0x6666, 0) == (u32)-EFAULT,
			      "a private access converts it back; the host loses it");
	} else {
		/* The VMM refuses: it must stop the guest here. */
		fill(priv(e), 0x7777);
		(void)shared(e)[0];
		check(0, "the VMM stopped the guest on a wrong-view access");
	}
}

/* Returns whether a conversion failed. */
static u32 bench(u32 vcpu, u32 iterations)
{
	u32 page = VM_BENCH_GPA + vcpu * 0x1000;
	u32 bad = 0;

	hypercall(VM_HC_BENCH, 1, 0, 0);
	for (u32 i = 0; i < iterations; i++) {
		bad |= map_gpa(page, 0x1000, VM_MAP_SHARED);
		shared(page)[0] = i;
		bad |= map_gpa(page, 0x1000, VM_MAP_PRIVATE);
		priv(page)[1] = i;
	}
	hypercall(VM_HC_BENCH, 0, 0, 0);
	return bad != 0;
}

void guest_main(u32 magic, u32 vcpu, u32 vcpus, u32 arch_id, u32 iterations,
		u32 boot_flags);

void guest_main(u32 magic, u32 vcpu, u32 vcpus, u32 arch_id, u32 iterations,
		u32 boot_flags)
{
	u32 bad;

	(void)vcpus;
	if (magic != VM_BOOT_MAGIC)
		hypercall(VM_HC_DONE, 1, 0, 0);
	if (vcpu != 0) {	/* the globals are vCPU 0's */
		bad = bench(vcpu, iterations);
		hypercall(VM_HC_DONE, bad, 0, 0);
		return;
	}
	arch = arch_id;
	flags = boot_flags;
	run_checks();
	check(!bench(vcpu, iterations), "every conversion of the benchmark succeeded");
	hypercall(VM_HC_DONE, failures, 0, 0);
}
