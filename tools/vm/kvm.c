// SPDX-License-Identifier: MIT
/*
 * gmem vm --kvm: the memory path through KVM's UAPI alone, as a VMM written
 * for a kernel with guest_memfd in-place conversion speaks it. No gmem.h
 * call: this file does not include it. Under gmem exec (vm.c re-executes
 * itself there) libgmem-kvm.so answers these calls from gmem; on a kernel
 * that has them, the kernel would.
 *
 *   KVM_CREATE_VM(KVM_X86_SW_PROTECTED_VM)
 *   KVM_CREATE_GUEST_MEMFD(RAM, GUEST_MEMFD_FLAG_MMAP)  pages start private
 *   mmap(guest_memfd, MAP_SHARED)                      the VMM's view of RAM
 *   KVM_SET_USER_MEMORY_REGION2(slot 0, gpa 0, KVM_MEM_GUEST_MEMFD)
 *   launch: KVM_SET_MEMORY_ATTRIBUTES2 (image range shared), write the
 *           image through the mapping, KVM_SET_MEMORY_ATTRIBUTES2 (private)
 *
 * What the guest and its exits turn into:
 *
 *   MAP_GPA_RANGE hypercall   KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd
 *   PUNCH hypercall           fallocate(PUNCH_HOLE | KEEP_SIZE)
 *   HOST_READ/WRITE           a load or store through the mapping; a private
 *                             page raises SIGBUS, which becomes -EFAULT
 *   KVM_EXIT_MEMORY_FAULT     (KVM_RUN -1/EFAULT, exit 39) converted to what
 *                             the access wanted, per --policy
 *   KVM_EXIT_MMIO in the      the shared alias, below
 *   shared alias
 *
 * The shared alias. An SNP or TDX guest names each page twice, the shared
 * bit telling KVM which kind it wants; KVM itself strips the bit, and an
 * access that disagrees with the page's attribute is KVM_EXIT_MEMORY_FAULT.
 * A KVM_X86_SW_PROTECTED_VM has no shared bit: the guest_memfd memslot at
 * gpa 0 serves every page as its attribute says. So this VMM keeps the
 * alias the guest was written for ([VM_SHARED_BIT, +RAM)) as its own: the
 * alias has no memslot, so every guest access there is KVM_EXIT_MMIO (on
 * the kernel and under the layer alike), which the VMM completes through
 * its mapping of the guest_memfd. A shared page reads and writes through;
 * a private page raises SIGBUS, which is what SNP/TDX hardware reports as a
 * shared access to a private page: the same handler as the memory-fault
 * exit converts it (or refuses), then the access completes.
 *
 * Why not a plain memslot over the mapping, which would let shared pages
 * run without exits: a guest access to a private page through it fails the
 * kernel's hva fault, and KVM_RUN returns EFAULT with no gpa to act on
 * (docs/vmm.md, "gmem vm --kvm").
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vm.h"
#include "kvm/uapi.h"

#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE	0x01
#define FALLOC_FL_PUNCH_HOLE	0x02
#endif

/* ---------------------------------------------------------- host access */

/*
 * Where a SIGBUS of this thread's guest-RAM access returns to. Volatile: the
 * compiler must store it before the copy and clear it after, as the signal
 * handler reads it in between.
 */
static __thread sigjmp_buf *volatile host_fault;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	struct sigaction dfl = { .sa_handler = SIG_DFL };

	(void)si;
	(void)uc;
	if (host_fault)
		siglongjmp(*host_fault, 1);
	/* Not an access of ours: let the fault kill, as it would have. */
	sigaction(sig, &dfl, NULL);
}

static int install_sigbus(struct vmm *m)
{
	struct sigaction act = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO };

	sigemptyset(&act.sa_mask);
	if (sigaction(SIGBUS, &act, NULL))
		return vmm_setup_failed(m, "sigaction(SIGBUS)", NULL);
	return 0;
}

/*
 * Copy @len bytes between guest RAM at @gpa and @buf through the VMM's
 * mapping of the guest_memfd. A private page cannot be mapped by the host:
 * the access raises SIGBUS, and this returns -EFAULT.
 */
static int host_copy(struct vmm *m, uint64_t gpa, void *buf, size_t len,
		     bool write)
{
	sigjmp_buf here;

	if (sigsetjmp(here, 1)) {
		host_fault = NULL;
		return -EFAULT;
	}
	host_fault = &here;
	if (write)
		memcpy(m->host + gpa, buf, len);
	else
		memcpy(buf, m->host + gpa, len);
	host_fault = NULL;
	return 0;
}

static int kvm_host_access(struct vmm *m, uint64_t gpa, uint32_t *val, bool write)
{
	return host_copy(m, gpa, val, sizeof(*val), write);
}

/* ----------------------------------------------------------- conversion */

/*
 * KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd. EAGAIN means a page had a
 * reference the kernel did not expect (error_offset names it); this VMM
 * pins nothing, so the reference is transient: try again, a bounded number
 * of times. The call is all or nothing, so it is the whole range again.
 */
static int set_attributes(struct vmm *m, uint64_t gpa, uint64_t size, bool private)
{
	struct gk_memory_attributes2 a;

	for (int tries = 0;; tries++) {
		memset(&a, 0, sizeof(a));
		a.offset = gpa;		/* the slot binds offset 0 at gpa 0 */
		a.size = size;
		a.attributes = private ? GK_MEMORY_ATTRIBUTE_PRIVATE : 0;
		if (!ioctl(m->fd, GK_SET_MEMORY_ATTRIBUTES2, &a))
			return 0;
		if (errno != EAGAIN || tries == 64)
			return -errno;
		sched_yield();
	}
}

static int kvm_convert(struct vmm *m, uint64_t gpa, uint64_t size, bool private)
{
	return set_attributes(m, gpa, size, private);
}

static int kvm_punch(struct vmm *m, uint64_t gpa, uint64_t size)
{
	return fallocate(m->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			 (off_t)gpa, (off_t)size) ? -errno : 0;
}

/* -------------------------------------------------------------- exits */

/*
 * The guest accessed [gpa, gpa + size) as @private while the pages are the
 * other kind: --policy convert makes them what the access wanted, --policy
 * refuse stops the guest. @how says where the VMM learnt it.
 */
static int wrong_kind(struct vcpu *v, uint64_t gpa, uint64_t size, bool private,
		      const char *how)
{
	struct vmm *m = v->vmm;
	int ret;

	if (m->o->refuse) {
		vmm_stop(m, "vcpu%d: refused: guest accessed %s page %#llx %s (--policy refuse)",
			 v->id, private ? "shared" : "private",
			 (unsigned long long)gpa, how);
		return -EPERM;
	}
	ret = vm_convert(v, gpa, size, private);
	if (ret) {
		vmm_stop(m, "vcpu%d: converting %#llx+%#llx to %s: %s", v->id,
			 (unsigned long long)gpa, (unsigned long long)size,
			 private ? "private" : "shared", strerror(-ret));
		return ret;
	}
	atomic_fetch_add(&m->implicit, 1);
	return 0;
}

/*
 * KVM_EXIT_MEMORY_FAULT: the guest's access and the page's attribute
 * disagree (on a SW_PROTECTED VM: a private access with no guest_memfd
 * behind it). What a VMM for SNP or TDX does on every implicit conversion.
 */
static int memory_fault(struct vcpu *v)
{
	struct gk_memory_fault *mf = gk_run_memory_fault(v->run);
	bool private = mf->flags & GK_MEMORY_EXIT_FLAG_PRIVATE;

	if (!vm_ram_range(mf->gpa, mf->size)) {
		vmm_stop(v->vmm, "vcpu%d: memory fault outside guest RAM: gpa %#llx size %#llx%s",
			 v->id, (unsigned long long)mf->gpa,
			 (unsigned long long)mf->size, private ? " (private)" : "");
		return -EFAULT;
	}
	return wrong_kind(v, mf->gpa, mf->size, private,
			  private ? "with a private access (KVM_EXIT_MEMORY_FAULT)" :
				    "with a shared access (KVM_EXIT_MEMORY_FAULT)");
}

/*
 * KVM_EXIT_MMIO: only the shared alias has no memslot. Complete the access
 * through the mapping; a private page there is the guest touching private
 * memory through its shared alias (see the top of the file). Another vCPU
 * may convert the page back in between: a few rounds, then give up.
 */
static int handle_mmio(struct vcpu *v)
{
	struct vmm *m = v->vmm;
	struct kvm_run *run = v->run;
	uint64_t addr = run->mmio.phys_addr, gpa = addr - VM_SHARED_BIT;
	uint64_t page = gpa & ~(VM_PAGE - 1);

	if (addr < VM_SHARED_BIT || gpa >= VM_RAM_SIZE ||
	    gpa + run->mmio.len > page + VM_PAGE) {
		vmm_stop(m, "vcpu%d: guest %s %u bytes at gpa %#llx, which is %s",
			 v->id, run->mmio.is_write ? "wrote" : "read", run->mmio.len,
			 (unsigned long long)addr,
			 addr < VM_RAM_SIZE ? "guest_memfd memory KVM should have mapped" :
			 "outside its memory");
		return -EFAULT;
	}
	for (int tries = 0; tries < 8; tries++) {
		uint64_t t0 = now_ns();
		int ret = host_copy(m, gpa, run->mmio.data, run->mmio.len,
				    run->mmio.is_write);

		vm_account(v, t0);
		if (!ret)
			return 0;
		ret = wrong_kind(v, page, VM_PAGE, false, "through its shared alias");
		if (ret)
			return ret;
	}
	vmm_stop(m, "vcpu%d: access to gpa %#llx failed: still converting", v->id,
		 (unsigned long long)addr);
	return -EAGAIN;
}

/* ---------------------------------------------------------------- setup */

/* A capability this VMM relies on: @bits of it must be set. */
static int need(struct vmm *m, long cap, int bits, const char *what)
{
	int v = ioctl(m->vmfd, KVM_CHECK_EXTENSION, cap);

	if (v > 0 && (v & bits) == bits)
		return 0;
	snprintf(m->error, sizeof(m->error),
		 "KVM_CHECK_EXTENSION(%ld) = %d: no %s", cap, v, what);
	return -1;
}

/*
 * Launch, in place: the image range is made shared, written through the
 * mapping, and made private again. On SNP and TDX this is what the in-place
 * series turns the launch into: SNP_LAUNCH_UPDATE and KVM_TDX_INIT_MEM_REGION
 * with a NULL source measure and take over "the contents already written
 * while shared". A SW_PROTECTED VM has neither call (nothing to measure), so
 * the conversion is the whole launch.
 *
 * Under --arch tdx the image stays shared: the layer's tdx adds a private
 * page with TDH.MEM.PAGE.AUG at its first fault, which hands the guest a
 * zeroed page, and only INIT_MEM_REGION (TDH.MEM.PAGE.ADD) keeps content.
 * A SW_PROTECTED guest may run from shared memory, as its private alias
 * maps shared pages too; a real TD could not. Its data and stacks beyond
 * the image are private, as everywhere.
 */
static int load_guest(struct vmm *m)
{
	size_t len = guest_image_size();
	uint64_t padded = (len + VM_PAGE - 1) & ~(VM_PAGE - 1);
	int ret;

	ret = set_attributes(m, VM_IMAGE_GPA, padded, false);
	if (ret) {
		errno = -ret;
		return vmm_setup_failed(m, "KVM_SET_MEMORY_ATTRIBUTES2 (image, shared)", NULL);
	}
	if (host_copy(m, VM_IMAGE_GPA, (void *)gmem_guest_image, len, true))
		return vmm_setup_failed(m, "writing the image", "SIGBUS");
	if (m->arch == VM_ARCH_TDX)
		return 0;
	ret = set_attributes(m, VM_IMAGE_GPA, padded, true);
	if (ret) {
		errno = -ret;
		return vmm_setup_failed(m, "KVM_SET_MEMORY_ATTRIBUTES2 (image, private)", NULL);
	}
	return 0;
}

static int kvm_setup(struct vmm *m)
{
	struct gk_create_guest_memfd gmem = {
		.size = VM_RAM_SIZE, .flags = GK_GUEST_MEMFD_FLAG_MMAP,
	};
	struct gk_userspace_memory_region2 region = {
		.slot = 0, .flags = GK_MEM_GUEST_MEMFD, .guest_phys_addr = 0,
		.memory_size = VM_RAM_SIZE, .guest_memfd_offset = 0,
	};
	void *host;

	if (need(m, GK_CAP_USER_MEMORY2, 1, "KVM_SET_USER_MEMORY_REGION2") ||
	    need(m, GK_CAP_GUEST_MEMFD, 1, "guest_memfd") ||
	    need(m, GK_CAP_GUEST_MEMFD_FLAGS, GK_GUEST_MEMFD_FLAG_MMAP,
		 "GUEST_MEMFD_FLAG_MMAP") ||
	    need(m, GK_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES_DEFAULT,
		 (int)GK_MEMORY_ATTRIBUTE_PRIVATE,
		 "in-place conversion (PRIVATE on the guest_memfd)") ||
	    need(m, GK_CAP_MEMORY_FAULT_INFO, 1, "KVM_EXIT_MEMORY_FAULT"))
		return -1;
	m->fd = ioctl(m->vmfd, GK_CREATE_GUEST_MEMFD, &gmem);
	if (m->fd < 0)
		return vmm_setup_failed(m, "KVM_CREATE_GUEST_MEMFD", NULL);
	host = mmap(NULL, VM_RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
	if (host == MAP_FAILED)
		return vmm_setup_failed(m, "mmap of the guest_memfd", NULL);
	m->host = host;
	/* KVM maps the guest_memfd itself; userspace_addr is the VMM's mapping. */
	region.userspace_addr = (uint64_t)(uintptr_t)host;
	region.guest_memfd = (uint32_t)m->fd;
	if (ioctl(m->vmfd, GK_SET_USER_MEMORY_REGION2, &region))
		return vmm_setup_failed(m, "KVM_SET_USER_MEMORY_REGION2", NULL);
	if (install_sigbus(m))
		return -1;
	return load_guest(m);
}

static void kvm_teardown(struct vmm *m)
{
	if (m->host)
		munmap(m->host, VM_RAM_SIZE);
	if (m->fd >= 0)
		close(m->fd);
}

const struct vm_memory vm_memory_kvm = {
	.vm_type = GK_X86_SW_PROTECTED_VM,
	.boot_flags = VM_BOOT_SW_PROTECTED,
	.calls = "guest_memfd calls",
	.setup = kvm_setup,
	.teardown = kvm_teardown,
	.convert = kvm_convert,
	.punch = kvm_punch,
	.host_access = kvm_host_access,
	.mmio = handle_mmio,
	.memory_fault = memory_fault,
};
