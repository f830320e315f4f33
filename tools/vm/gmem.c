// SPDX-License-Identifier: MIT
/*
 * gmem vm: the memory path through gmem.h, the default.
 *
 * The guest (tools/vm/guest/) sees its RAM twice, as a confidential guest does:
 * a private alias at gpa 0 and a shared alias at VM_SHARED_BIT. Each alias
 * is a KVM memslot whose userspace address is a gmem stage-2 view of the
 * same gmem slot (gmem_vm_view_mmap): the private view for the private
 * alias, the shared view for the shared one. A view shows a page only while
 * gmem maps it for the guest with that kind, so:
 *
 *   first touch, or a touch after a conversion or punch
 *       -> KVM_EXIT_MMIO at the gpa -> gmem_vm_access (faults the page in,
 *          which opens it in the view, and completes the access); later
 *          accesses run without exits
 *   a touch through the alias that disagrees with the page's attribute
 *       -> KVM_EXIT_MMIO -> gmem_vm_access returns 1 (a memory-fault exit)
 *       -> --policy convert: gmem_set_attributes, then complete the access;
 *          --policy refuse: stop the guest with an error
 *   the guest's explicit request (VM_HC_MAP_GPA_RANGE, like
 *   KVM_HC_MAP_GPA_RANGE) -> gmem_set_attributes
 *
 * The VMM's own reads and writes of guest memory go through gmem_mmap,
 * which cannot reach private pages. docs/vmm.md walks through it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "gmem.h"
#include "vm.h"

/* Setup failed in gmem call @call: record gmem's reason, return -1. */
static int gmem_failed(struct vmm *m, const char *call)
{
	return vmm_setup_failed(m, call, gmem_last_error());
}

/* Guest RAM: one gmem file bound as slot 0, and its two views as memslots. */
static int memory_setup(struct vmm *m)
{
	struct kvm_userspace_memory_region region = { .memory_size = VM_RAM_SIZE };
	void *host;

	m->pool = gmem_pool_create(1ULL << 30);
	if (m->pool < 0)
		return gmem_failed(m, "gmem_pool_create");
	m->gvm = gmem_vm_create(m->pool, vm_arches[m->arch],
				(m->o->check ? GMEM_VM_CHECK : 0) |
				(m->o->legacy ? GMEM_VM_LEGACY_CONTRACT : 0));
	if (m->gvm < 0)
		return gmem_failed(m, "gmem_vm_create");
	m->fd = gmem_create(m->gvm, VM_RAM_SIZE, GMEM_FLAG_MMAP | m->o->folio);
	if (m->fd < 0)
		return gmem_failed(m, "gmem_create");
	if (gmem_vm_bind(m->gvm, 0, 0, VM_RAM_SIZE, m->fd, 0))
		return gmem_failed(m, "gmem_vm_bind");
	if (gmem_mmap(m->fd, 0, VM_RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
		      &host))
		return gmem_failed(m, "gmem_mmap");
	m->host = host;
	for (int kind = 1; kind >= 0; kind--) {
		if (gmem_vm_view_mmap(m->gvm, 0, kind ? GMEM_ATTR_PRIVATE : 0,
				      &m->view[kind]))
			return gmem_failed(m, "gmem_vm_view_mmap");
		region.slot = (uint32_t)(1 - kind);
		region.guest_phys_addr = kind ? 0 : VM_SHARED_BIT;
		region.userspace_addr = (uint64_t)(uintptr_t)m->view[kind];
		if (ioctl(m->vmfd, KVM_SET_USER_MEMORY_REGION, &region))
			return vmm_setup_failed(m, "KVM_SET_USER_MEMORY_REGION", NULL);
	}
	return 0;
}

/*
 * Launch: the image goes into private memory as measured launch content
 * (gmem_vm_populate), then the boot region (image, data, stacks) is faulted
 * in for the guest, as a confidential guest accepts its boot memory; the
 * rest of RAM is faulted on first touch.
 */
static int load_guest(struct vmm *m)
{
	size_t len = guest_image_size();
	size_t padded = (len + VM_PAGE - 1) & ~(VM_PAGE - 1);
	unsigned char *buf;
	int64_t n;

	buf = calloc(1, padded);
	if (!buf)
		return vmm_setup_failed(m, "calloc", NULL);
	memcpy(buf, gmem_guest_image, len);
	n = gmem_vm_populate(m->gvm, VM_IMAGE_GPA, buf, padded, 0);
	free(buf);
	if (n < 0)
		return gmem_failed(m, "gmem_vm_populate");
	for (uint64_t gpa = VM_IMAGE_GPA; gpa < VM_BOOT_END; gpa += VM_PAGE)
		if (gmem_vm_fault(m->gvm, gpa, GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE,
				  NULL, NULL))
			return gmem_failed(m, "gmem_vm_fault");
	return 0;
}

static int gmem_setup(struct vmm *m)
{
	return memory_setup(m) ? -1 : load_guest(m);
}

static int gmem_convert(struct vmm *m, uint64_t gpa, uint64_t size, bool private)
{
	return gmem_set_attributes(m->fd, gpa, size,
				   private ? GMEM_ATTR_PRIVATE : 0, 0, NULL);
}

static int gmem_punch(struct vmm *m, uint64_t gpa, uint64_t size)
{
	return gmem_fallocate(m->fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
			      gpa, size);
}

/*
 * The host reads or writes a word of guest memory through its gmem mapping,
 * the way any VMM touches guest RAM. process_vm_readv/writev on ourselves
 * turns a private (fenced) page into -EFAULT instead of a SIGSEGV.
 */
static int host_access(struct vmm *m, uint64_t gpa, uint32_t *val, bool write)
{
	struct iovec local = { val, sizeof(*val) };
	struct iovec remote = { m->host + gpa, sizeof(*val) };
	ssize_t n;

	n = write ? process_vm_writev(getpid(), &local, 1, &remote, 1, 0)
		  : process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
	return n == sizeof(*val) ? 0 : -EFAULT;
}

/*
 * --eager-map: after an explicit conversion, fault the pages in with their
 * new kind, so the guest's next touch finds them open in the view and KVM
 * maps them without a trip to the VMM (as KVM's in-kernel fault would with a
 * guest_memfd that converts). Only small requests: a large one would
 * allocate memory the guest may never touch.
 */
#define EAGER_MAX_PAGES	16

static void eager_map(struct vcpu *v, uint64_t gpa, uint64_t size, bool private)
{
	unsigned int flags = (private ? GMEM_FAULT_PRIVATE : 0) | GMEM_FAULT_WRITE;
	uint64_t t0 = now_ns();

	if (!v->vmm->o->eager || size > EAGER_MAX_PAGES * VM_PAGE)
		return;
	for (uint64_t off = 0; off < size; off += VM_PAGE)
		if (gmem_vm_fault(v->vmm->gvm, gpa + off, flags, NULL, NULL))
			break;	/* converted again meanwhile: the touch will say */
	vm_account(v, t0);
}

/*
 * A guest access KVM could not map: the page is fenced in the view the
 * guest used. gmem_vm_access faults it in (opening it in the view, so the
 * next access runs at full speed) and completes this one. If the access
 * disagrees with the page's attribute, gmem says so with a memory-fault
 * exit, and the policy decides.
 */
static int handle_mmio(struct vcpu *v)
{
	struct vmm *m = v->vmm;
	struct kvm_run *run = v->run;
	uint64_t gpa = run->mmio.phys_addr & ~(uint64_t)VM_SHARED_BIT;
	bool private = !(run->mmio.phys_addr & VM_SHARED_BIT);
	unsigned int flags = (private ? GMEM_FAULT_PRIVATE : 0) |
			     (run->mmio.is_write ? GMEM_FAULT_WRITE : 0);
	struct gmem_exit exit;
	int ret;

	if (gpa >= VM_RAM_SIZE || run->mmio.len > VM_RAM_SIZE - gpa) {
		vmm_stop(m, "vcpu%d: guest touched gpa %#llx outside its memory",
			 v->id, (unsigned long long)run->mmio.phys_addr);
		return -EFAULT;
	}
	for (int tries = 0; tries < 8; tries++) {
		uint64_t t0 = now_ns();

		ret = gmem_vm_access(m->gvm, gpa, run->mmio.data, run->mmio.len,
				     flags, &exit);
		vm_account(v, t0);
		if (ret <= 0)
			break;
		/* GMEM_EXIT_MEMORY_FAULT: the guest used the other alias. */
		if (m->o->refuse) {
			vmm_stop(m, "vcpu%d: refused: guest accessed %s page %#llx through its %s alias (--policy refuse)",
				 v->id, private ? "shared" : "private",
				 (unsigned long long)exit.gpa,
				 private ? "private" : "shared");
			return -EPERM;
		}
		ret = vm_convert(v, exit.gpa, exit.size,
				 exit.flags & GMEM_MEMORY_EXIT_FLAG_PRIVATE);
		if (ret)
			break;
		atomic_fetch_add(&m->implicit, 1);
	}
	if (ret) {
		vmm_stop(m, "vcpu%d: access to gpa %#llx failed: %s", v->id,
			 (unsigned long long)run->mmio.phys_addr,
			 ret > 0 ? "still converting" : gmem_last_error());
		return ret > 0 ? -EAGAIN : ret;
	}
	return 0;
}

/*
 * KVM could not emulate an instruction: with a view page closed under it, an
 * instruction fetch looks like MMIO, which KVM cannot fetch from. That is the
 * guest's code page losing its stage-2 entry, as the whole huge entry around
 * a page that converts does. Fault the page(s) of the instruction in again
 * (flat segments, no paging: cs.base + rip is the gpa) and go on. If they
 * are mapped already, another vCPU may have just done it: try again a few
 * times, then stop, since the failure is real.
 */
static int handle_fetch(struct vcpu *v)
{
	struct vmm *m = v->vmm;
	struct kvm_regs regs;
	struct kvm_sregs sregs;

	if (v->run->internal.suberror != KVM_INTERNAL_ERROR_EMULATION ||
	    ioctl(v->fd, KVM_GET_REGS, &regs) || ioctl(v->fd, KVM_GET_SREGS, &sregs))
		goto fail;
	for (uint64_t at = 0; at < 16; at += 15) {	/* an instruction is <= 15 bytes */
		uint64_t addr = sregs.cs.base + regs.rip + at;
		uint64_t gpa = addr & ~(uint64_t)VM_SHARED_BIT;
		bool private = !(addr & VM_SHARED_BIT);
		int mapped_private = 0;
		uint64_t t0;

		if (gpa >= VM_RAM_SIZE)
			goto fail;
		if (gmem_vm_stage2(m->gvm, gpa, NULL, &mapped_private) == 1 &&
		    mapped_private == private)
			continue;
		t0 = now_ns();
		if (gmem_vm_fault(m->gvm, gpa, private ? GMEM_FAULT_PRIVATE : 0,
				  NULL, NULL))
			goto fail;
		vm_account(v, t0);
		v->fetch_retries = 0;
	}
	if (v->fetch_retries++ < 8)
		return 0;
fail:
	vmm_stop(m, "vcpu%d: KVM internal error, suberror %u", v->id,
		 v->run->internal.suberror);
	return -1;
}

/* --check: every gmem call the VMM made was followed by a check of every invariant. */
static void gmem_finish(struct vmm *m)
{
	struct gmem_violation viol;
	int64_t n;

	if (!m->o->check || m->gvm < 0)
		return;
	n = gmem_vm_violations(m->gvm, &viol, 1);
	if (n != 0)
		vmm_stop(m, "%lld invariant violations; first after %s: invariant %d at offset %#llx: %s",
			 (long long)n, viol.op, viol.invariant,
			 (unsigned long long)viol.offset, viol.rule);
}

static void gmem_teardown(struct vmm *m)
{
	if (m->host)
		gmem_munmap(m->host, VM_RAM_SIZE);
	if (m->fd >= 0)
		gmem_close(m->fd);	/* unbinds: the views become reservations */
	for (int kind = 0; kind < 2; kind++)
		if (m->view[kind])
			munmap(m->view[kind], VM_RAM_SIZE);
	if (m->gvm >= 0)
		gmem_vm_close(m->gvm);
	if (m->pool >= 0)
		gmem_pool_close(m->pool);
}

const struct vm_memory vm_memory_gmem = {
	.vm_type = 0,
	.calls = "gmem calls",
	.setup = gmem_setup,
	.teardown = gmem_teardown,
	.convert = gmem_convert,
	.converted = eager_map,
	.punch = gmem_punch,
	.host_access = host_access,
	.mmio = handle_mmio,
	.internal_error = handle_fetch,
	.finish = gmem_finish,
};
