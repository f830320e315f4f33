// SPDX-License-Identifier: MIT
/*
 * sw: software-protected VMs (KVM_X86_SW_PROTECTED_VM). No hardware state:
 * what keeps private pages from the host is gmem itself (guarded host
 * mappings, pins refused). Conversion keeps every byte. Nothing forbids the
 * host to see a freed frame's old content (the direct map always could), and
 * the pool's discard zeroes it anyway.
 */
#include "../arch.h"

const struct gmem_arch gmem_arch_sw = {
	.name = "sw",
	.keeps_content = true,
};
