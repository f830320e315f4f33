/* SPDX-License-Identifier: MIT */
/*
 * vm.h - what the files of gmem vm share.
 *
 *   vm.c        the command: options, one run per arch, the report, and
 *               --kvm's re-execution of itself under gmem exec
 *   setup.c  the KVM VM and its vCPUs, and their teardown
 *   exit.c   the vCPU loop: port I/O, hypercalls, the console, and the
 *               exits every memory path shares
 *   gmem.c   the memory path through gmem.h (the default)
 *   kvm.c    the memory path through KVM's UAPI alone (--kvm)
 *
 * The two memory paths differ in how guest RAM is made and loaded, how a
 * page converts, how the VMM reaches guest memory and which exits reach the
 * VMM; struct vm_memory is that difference. Everything else is one VMM.
 */
#ifndef GMEM_TOOLS_VM_H
#define GMEM_TOOLS_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "guest/abi.h"
#include "lib/util.h"

#define VM_PAGE		4096ULL
#define EXIT_SKIP	77

extern const char *const vm_arches[4];

struct opts {
	int arch;		/* VM_ARCH_*, or -1 for all */
	int vcpus;
	bool refuse;
	unsigned int iterations;
	bool eager;		/* map converted pages at once (--eager-map) */
	bool check;		/* GMEM_VM_CHECK: verify invariants after every call */
	bool legacy;		/* GMEM_VM_LEGACY_CONTRACT (--contract legacy) */
	uint64_t folio;		/* 0, or GMEM_FLAG_HUGE_2M (--folio 2M) */
	bool kvm;		/* --kvm: the memory path speaks KVM's UAPI only */
	bool json, quiet;
};

struct vmm;
struct vcpu;

/*
 * A memory path. Every function returns 0 or a negative errno unless said
 * otherwise; the exit handlers return 0 to re-enter the guest, anything
 * else stops this vCPU (after vmm_stop said why).
 */
struct vm_memory {
	unsigned long vm_type;		/* KVM_CREATE_VM's argument */
	uint32_t boot_flags;		/* VM_BOOT_* the guest is told */
	const char *calls;		/* what the benchmark's call time counts */
	/* Guest RAM, its memslots and the guest image, on a created VM. */
	int (*setup)(struct vmm *m);
	/* After the vCPUs and the VM are closed. */
	void (*teardown)(struct vmm *m);
	/* [gpa, gpa + size), inside RAM, to private or shared. */
	int (*convert)(struct vmm *m, uint64_t gpa, uint64_t size, bool private);
	/* The guest asked for the pages of a conversion it just made. */
	void (*converted)(struct vcpu *v, uint64_t gpa, uint64_t size, bool private);
	int (*punch)(struct vmm *m, uint64_t gpa, uint64_t size);
	/* The VMM's own access to a word of guest RAM: -EFAULT if private. */
	int (*host_access)(struct vmm *m, uint64_t gpa, uint32_t *val, bool write);
	int (*mmio)(struct vcpu *v);			/* KVM_EXIT_MMIO */
	int (*internal_error)(struct vcpu *v);		/* NULL: stop */
	int (*memory_fault)(struct vcpu *v);		/* NULL: stop */
	/* The run is over: a last word on it (check mode's violations). */
	void (*finish)(struct vmm *m);
};

extern const struct vm_memory vm_memory_gmem, vm_memory_kvm;

struct vmm {
	const struct opts *o;
	const struct vm_memory *mem;
	int arch;
	int kvm, vmfd;
	int run_size;
	int pool, gvm;		/* gmem pool and VM (gmem path only) */
	int fd;			/* the file holding guest RAM: gmem's or a guest_memfd */
	uint8_t *host;		/* the VMM's mapping of the whole file */
	void *view[2];		/* gmem path: [0] shared view, [1] private view */

	pthread_mutex_t console_lock;
	atomic_bool stop;
	char error[256];	/* why the guest was stopped; first one wins */
	atomic_flag error_set;

	atomic_uint_least64_t conversions, implicit, exits;
	atomic_uint_least64_t bench_conversions;
	atomic_uint_least64_t call_ns;	/* benchmark time spent in memory calls */
	atomic_uint checks_passed, checks_failed;
	pthread_mutex_t time_lock;
	bool bench_started;
	struct timespec bench_start, bench_end;
};

struct vcpu {
	struct vmm *vmm;
	int id, fd;
	struct kvm_run *run;
	bool in_bench, done;
	uint32_t failures;	/* what the guest reported at VM_HC_DONE */
	unsigned int fetch_retries;	/* gmem path: handle_fetch found nothing to open */
	char line[160];
	size_t linelen;
};

/* The guest image, built from tools/vm/guest/ and linked in (tools/vm/guest/image.S). */
extern const unsigned char gmem_guest_image[], gmem_guest_image_end[];

static inline size_t guest_image_size(void)
{
	return (uintptr_t)gmem_guest_image_end - (uintptr_t)gmem_guest_image;
}

void vmm_stop(struct vmm *m, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Setup failed in @call: record errno's reason (or @why) and return -1. */
int vmm_setup_failed(struct vmm *m, const char *call, const char *why);

/* setup.c */
int vmm_open(struct vmm *m);
int vcpu_setup(struct vmm *m, struct vcpu *v);
void vmm_teardown(struct vmm *m, struct vcpu *vcpus);

/* exit.c */
/* A memory call that started at @t0 is over: count it if benchmarking. */
void vm_account(struct vcpu *v, uint64_t t0);
/* A guest range of whole pages inside RAM, as a file range. */
bool vm_ram_range(uint64_t gpa, uint64_t size);
/* Convert for the guest (explicitly or not), timed and counted. */
int vm_convert(struct vcpu *v, uint64_t gpa, uint64_t size, bool private);
void *vcpu_loop(void *arg);

#endif
