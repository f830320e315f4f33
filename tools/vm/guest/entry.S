/* SPDX-License-Identifier: MIT */
/*
 * Guest entry: the VMM starts every vCPU here in 32-bit protected mode with
 * flat segments and its stack set; pass the boot registers (abi.h) to C.
 */
	.section .text.entry, "ax"
	.code32
	.globl _start
_start:
	cld
	pushl %edi		/* flags */
	pushl %esi		/* iterations */
	pushl %edx		/* arch */
	pushl %ecx		/* vcpus */
	pushl %ebx		/* vcpu */
	pushl %eax		/* magic */
	call guest_main
1:	hlt
	jmp 1b

	.section .note.GNU-stack, "", @progbits
