/* SPDX-License-Identifier: MIT */
/*
 * abi.h - what the gmem vm guest and its VMM (tools/vm*.c) agree on: the
 * memory map, the boot registers and the hypercalls. Shared by both sides,
 * so plain C with no library types.
 *
 * Memory map (guest physical). The guest runs in 32-bit protected mode with
 * flat segments and no paging: a linear address is a guest physical one.
 *   [0, VM_RAM_SIZE)                     private alias of guest RAM
 *   [VM_SHARED_BIT, +VM_RAM_SIZE)        shared alias of the same RAM
 * Both aliases name the same gmem pages; only the one matching a page's
 * attribute is mapped (but see VM_BOOT_SW_PROTECTED).
 *
 * Boot: eip = VM_IMAGE_GPA, esp = top of the vCPU's stack, and
 *   eax = VM_BOOT_MAGIC, ebx = vCPU index, ecx = number of vCPUs,
 *   edx = arch (VM_ARCH_*), esi = benchmark iterations, edi = VM_BOOT_* flags.
 *
 * Hypercalls: `inl $VM_HC_PORT, %eax` with eax = VM_HC_* number and
 * ebx, ecx, esi the arguments; the result comes back in eax (0 or a
 * negative errno unless said otherwise). Console: bytes written to
 * VM_SERIAL_PORT.
 */
#ifndef GMEM_VM_ABI_H
#define GMEM_VM_ABI_H

#define VM_RAM_SIZE		0x400000u	/* 4 MiB */
#define VM_SHARED_BIT		0x80000000u
#define VM_IMAGE_GPA		0x10000u
#define VM_BOOT_END		0x80000u	/* image, data and stacks: faulted at launch */
#define VM_STACK_TOP		0x80000u	/* vCPU i: stack below top - i * VM_STACK_SIZE */
#define VM_STACK_SIZE		0x4000u
#define VM_MAX_VCPUS		8
#define VM_TEST_GPA		0x100000u	/* check pages, 4 KiB each */
#define VM_BENCH_GPA		0x200000u	/* vCPU i converts page VM_BENCH_GPA + i * 4 KiB */

#define VM_BOOT_MAGIC		0x676d656du	/* "gmem" */
#define VM_BOOT_IMPLICIT	(1u << 0)	/* the VMM converts on a wrong-view access */
/*
 * The private alias is the guest_memfd memslot of a KVM_X86_SW_PROTECTED_VM
 * (gmem vm --kvm): it maps each page as its attribute says, shared pages
 * too, so an access through it never converts. The shared alias still
 * refuses private pages (the VMM emulates it).
 */
#define VM_BOOT_SW_PROTECTED	(1u << 1)

#define VM_ARCH_SW		0
#define VM_ARCH_SNP		1
#define VM_ARCH_TDX		2
#define VM_ARCH_PKVM		3

#define VM_SERIAL_PORT		0x3f8
#define VM_HC_PORT		0xe0

/* ebx = gpa, ecx = size, esi = VM_MAP_* : convert, as KVM_HC_MAP_GPA_RANGE. */
#define VM_HC_MAP_GPA_RANGE	1
#define VM_MAP_SHARED		0
#define VM_MAP_PRIVATE		1
/* ebx = gpa, ecx = size: free the pages (fallocate punch hole). */
#define VM_HC_PUNCH		2
/*
 * ebx = gpa, ecx = expected: the VMM reads the 32-bit word at gpa through
 * its host mapping. Returns 1 if it read @expected, 0 if it read something
 * else, -EFAULT if the host cannot reach the page.
 */
#define VM_HC_HOST_READ		3
/* ebx = gpa, ecx = value: the VMM writes it through its host mapping. */
#define VM_HC_HOST_WRITE	4
/* ebx = check number, ecx = 1 passed / 0 failed. */
#define VM_HC_RESULT		5
/* ebx = 1 the benchmark starts, 0 it ends (the VMM times it). */
#define VM_HC_BENCH		6
/* ebx = number of failed checks: this vCPU is done. */
#define VM_HC_DONE		7

#endif
