// SPDX-License-Identifier: MIT
/*
 * gmem vm: the KVM VM and its vCPUs, and their end. Guest RAM is the memory
 * path's (gmem.c, kvm.c); this file makes what both run on.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vm.h"

int vmm_setup_failed(struct vmm *m, const char *call, const char *why)
{
	snprintf(m->error, sizeof(m->error), "%s: %s", call,
		 why ? why : strerror(errno));
	return -1;
}

/*
 * Open KVM and create the VM of the memory path's type. Returns 0,
 * EXIT_SKIP when KVM is not usable here at all, or -1 when it is but will
 * not make this VM (the reason in m->error).
 */
int vmm_open(struct vmm *m)
{
	int err, probe;

	m->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (m->kvm < 0) {
		snprintf(m->error, sizeof(m->error), "/dev/kvm: %s", strerror(errno));
		return EXIT_SKIP;
	}
	if (ioctl(m->kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		snprintf(m->error, sizeof(m->error), "/dev/kvm: unexpected API version");
		return EXIT_SKIP;
	}
	m->run_size = ioctl(m->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	m->vmfd = ioctl(m->kvm, KVM_CREATE_VM, m->mem->vm_type);
	if (m->vmfd >= 0 && m->run_size > 0)
		return 0;
	err = errno;
	snprintf(m->error, sizeof(m->error), "KVM_CREATE_VM(%lu): %s",
		 m->mem->vm_type, strerror(err));
	/* A KVM that runs guests, just not of this type, is not a skip. */
	if (m->mem->vm_type && m->run_size > 0 &&
	    (probe = ioctl(m->kvm, KVM_CREATE_VM, 0)) >= 0) {
		close(probe);
		return -1;
	}
	return EXIT_SKIP;
}

/* 32-bit protected mode, flat 4 GiB segments, no paging. */
int vcpu_setup(struct vmm *m, struct vcpu *v)
{
	struct kvm_segment code = {
		.base = 0, .limit = 0xffffffff, .selector = 0x8, .type = 0xb,
		.present = 1, .s = 1, .db = 1, .g = 1,
	};
	struct kvm_segment data = code;
	struct kvm_sregs sregs;
	struct kvm_regs regs = {
		.rip = VM_IMAGE_GPA, .rflags = 0x2,
		.rsp = VM_STACK_TOP - (uint32_t)v->id * VM_STACK_SIZE,
		.rax = VM_BOOT_MAGIC, .rbx = (uint32_t)v->id,
		.rcx = (uint32_t)m->o->vcpus, .rdx = (uint32_t)m->arch,
		.rsi = m->o->iterations,
		.rdi = (m->o->refuse ? 0 : VM_BOOT_IMPLICIT) | m->mem->boot_flags,
	};

	v->fd = ioctl(m->vmfd, KVM_CREATE_VCPU, v->id);
	if (v->fd < 0)
		return vmm_setup_failed(m, "KVM_CREATE_VCPU", NULL);
	v->run = mmap(NULL, (size_t)m->run_size, PROT_READ | PROT_WRITE,
		      MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		return vmm_setup_failed(m, "mmap of kvm_run", NULL);
	}
	if (ioctl(v->fd, KVM_GET_SREGS, &sregs))
		return vmm_setup_failed(m, "KVM_GET_SREGS", NULL);
	data.type = 0x3;
	data.selector = 0x10;
	sregs.cs = code;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.cr0 = 0x1;	/* PE */
	sregs.cr4 = 0;
	sregs.efer = 0;
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) || ioctl(v->fd, KVM_SET_REGS, &regs))
		return vmm_setup_failed(m, "KVM_SET_SREGS/REGS", NULL);
	return 0;
}

void vmm_teardown(struct vmm *m, struct vcpu *vcpus)
{
	for (int i = 0; i < m->o->vcpus; i++) {
		if (vcpus[i].run)
			munmap(vcpus[i].run, (size_t)m->run_size);
		if (vcpus[i].fd >= 0)
			close(vcpus[i].fd);
	}
	/* KVM first: its memslots point into guest RAM's mappings. */
	if (m->vmfd >= 0)
		close(m->vmfd);
	if (m->kvm >= 0)
		close(m->kvm);
	m->mem->teardown(m);
	pthread_mutex_destroy(&m->console_lock);
	pthread_mutex_destroy(&m->time_lock);
}
