/* SPDX-License-Identifier: MIT */
/* The guest image (GUEST_BIN, built from this directory) as read-only data of gmem. */
	.section .rodata
	.balign 16
	.globl gmem_guest_image
	.globl gmem_guest_image_end
gmem_guest_image:
	.incbin GUEST_BIN
gmem_guest_image_end:
	.section .note.GNU-stack, "", @progbits
