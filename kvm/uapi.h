/* SPDX-License-Identifier: MIT */
/*
 * uapi.h - the KVM UAPI the layer speaks that the installed <linux/kvm.h>
 * may predate: guest_memfd, memslots v2, memory attributes (per VM and on
 * the guest_memfd), memory-fault exits, VM types. Numbers and layouts are
 * the kernel's (docs/kvm.md lists them with their sources); every name
 * carries a GK_ prefix so the file builds beside any <linux/kvm.h>.
 */
#ifndef GMEM_KVM_UAPI_H
#define GMEM_KVM_UAPI_H

#include <linux/kvm.h>
#include <stdint.h>
#include <sys/ioctl.h>

#define GK_CAP_NR_MEMSLOTS		10
#define GK_CAP_USER_MEMORY2		231
#define GK_CAP_MEMORY_FAULT_INFO	232
#define GK_CAP_MEMORY_ATTRIBUTES	233
#define GK_CAP_GUEST_MEMFD		234
#define GK_CAP_VM_TYPES			235
#define GK_CAP_GUEST_MEMFD_FLAGS	244
/* Not settled upstream (249 in v4 of the series, 250 in v8): a default,
 * overridden with GMEM_KVM_CAP_GMEM_ATTRIBUTES. */
#define GK_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES_DEFAULT	250

#define GK_X86_DEFAULT_VM		0
#define GK_X86_SW_PROTECTED_VM		1

#define GK_GUEST_MEMFD_FLAG_MMAP	(1ULL << 0)
#define GK_GUEST_MEMFD_FLAG_INIT_SHARED	(1ULL << 1)

#define GK_MEM_LOG_DIRTY_PAGES		(1U << 0)
#define GK_MEM_READONLY			(1U << 1)
#define GK_MEM_GUEST_MEMFD		(1U << 2)

#define GK_MEMORY_ATTRIBUTE_PRIVATE	(1ULL << 3)

#define GK_EXIT_MEMORY_FAULT		39
#define GK_MEMORY_EXIT_FLAG_PRIVATE	(1ULL << 3)

struct gk_create_guest_memfd {
	uint64_t size;
	uint64_t flags;
	uint64_t reserved[6];
};

struct gk_userspace_memory_region2 {
	uint32_t slot;
	uint32_t flags;
	uint64_t guest_phys_addr;
	uint64_t memory_size;
	uint64_t userspace_addr;
	uint64_t guest_memfd_offset;
	uint32_t guest_memfd;
	uint32_t pad1;
	uint64_t pad2[14];
};

struct gk_memory_attributes {
	uint64_t address;
	uint64_t size;
	uint64_t attributes;
	uint64_t flags;
};

struct gk_memory_attributes2 {
	uint64_t offset;	/* a union with "address" in the kernel */
	uint64_t size;
	uint64_t attributes;
	uint64_t flags;
	uint64_t error_offset;
	uint64_t reserved[11];
};

/* kvm_run.memory_fault: the first member of kvm_run's exit union. */
struct gk_memory_fault {
	uint64_t flags;
	uint64_t gpa;
	uint64_t size;
};

#define GK_CREATE_GUEST_MEMFD		_IOWR(KVMIO, 0xd4, struct gk_create_guest_memfd)
#define GK_SET_USER_MEMORY_REGION2	_IOW(KVMIO, 0x49, struct gk_userspace_memory_region2)
#define GK_SET_MEMORY_ATTRIBUTES	_IOW(KVMIO, 0xd2, struct gk_memory_attributes)
#define GK_SET_MEMORY_ATTRIBUTES2	_IOWR(KVMIO, 0xd2, struct gk_memory_attributes2)

static inline struct gk_memory_fault *gk_run_memory_fault(struct kvm_run *run)
{
	return (struct gk_memory_fault *)(void *)&run->hw;
}

#endif
