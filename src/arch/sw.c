// SPDX-License-Identifier: MIT
/*
 * sw: software-protected VMs (KVM_X86_SW_PROTECTED_VM). No hardware state:
 * what keeps private pages from the host is gmem itself (guarded host
 * mappings, pins refused). Conversion keeps every byte; reclaim needs
 * nothing beyond the pool's own discard, which zeroes the frames.
 */
#include "../internal.h"

const struct gmem_arch gmem_arch_sw = {
	.name = "sw",
};
