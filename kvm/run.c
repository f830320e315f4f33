// SPDX-License-Identifier: MIT
/*
 * vCPUs and KVM_RUN: the exits the layer answers itself and those it turns
 * into the kernel's.
 *
 * The real guest reaches guest_memfd memory through gmem stage-2 views. A
 * page not yet mapped by gmem's stage-2 (first touch, or after a conversion,
 * punch or release zapped it) is fenced there, so KVM cannot map it and the
 * access leaves KVM_RUN as KVM_EXIT_MMIO at the gpa. The layer then does
 * what the kernel's fault path does: it faults the page into gmem's stage-2
 * with the kind the attribute gives (which opens it in the view, so later
 * accesses run at full speed), completes the one access, and enters the
 * guest again; the program never sees that exit. An instruction fetch from
 * such a page cannot be emulated as MMIO: KVM reports an emulation failure,
 * and the layer faults the instruction's page in and resumes.
 *
 * Where the kernel would raise KVM_EXIT_MEMORY_FAULT (a private access with
 * no guest_memfd behind it: no memslot, a plain memslot, or a guest_memfd
 * that is gone), the layer rewrites the exit: exit_reason 39, the page's
 * gpa, size 4096, the PRIVATE flag, and KVM_RUN returns -1 with EFAULT.
 * KVM still waits for its MMIO to complete, so the next KVM_RUN first
 * resolves that access again (the program has fixed it, or the same memory
 * fault is reported again without entering the guest, as the kernel's
 * retried fault would). An instruction fetch from such a page is rewritten
 * the same way, at the instruction's page; nothing waits on it: KVM fetches
 * the instruction again on the next KVM_RUN.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "layer.h"

struct kvm_vcpu *vcpu_by_fd[MAX_FDS];

static int run_size(void)
{
	static int size;

	if (!size) {
		int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);

		if (kvm < 0)
			return -errno;
		size = real.ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
		real.close(kvm);
		if (size <= 0)
			return size < 0 ? -errno : -EINVAL;
	}
	return size;
}

int vcpu_create(struct kvm_vm *vm, unsigned long id)
{
	struct kvm_vcpu *v;
	int fd, size = run_size();

	if (size < 0)
		return fail(size);
	fd = real.ioctl(vm->fd, KVM_CREATE_VCPU, id);
	if (fd < 0 || fd >= MAX_FDS)
		return fd;
	v = calloc(1, sizeof(*v));
	if (v)
		v->run = real.mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
				   MAP_SHARED, fd, 0);
	if (!v || v->run == MAP_FAILED) {
		free(v);
		real.close(fd);
		return fail(ENOMEM);
	}
	v->fd = fd;
	v->vm = vm;
	v->run_size = (size_t)size;
	pthread_mutex_lock(&layer_lock);
	vm->refs++;
	vcpu_by_fd[fd] = v;
	pthread_mutex_unlock(&layer_lock);
	return fd;
}

void vcpu_closed(int fd)
{
	struct kvm_vcpu *v;

	pthread_mutex_lock(&layer_lock);
	v = vcpu_by_fd[fd];
	vcpu_by_fd[fd] = NULL;
	pthread_mutex_unlock(&layer_lock);
	if (!v)
		return;
	real.munmap(v->run, v->run_size);
	kvm_vm_put(v->vm);
	free(v);
}

/* What the layer made of an exit. */
enum verdict { RESUME, TO_PROGRAM, MEMORY_FAULT };

/*
 * Rewrite the exit as the kernel's memory fault: KVM_RUN fails with EFAULT.
 * An MMIO exit's access is kept to be resolved again by the next KVM_RUN;
 * a failed instruction fetch needs nothing kept: KVM fetches it again.
 */
static int memory_fault(struct kvm_vcpu *v, uint64_t gpa, bool private)
{
	struct gk_memory_fault *mf = gk_run_memory_fault(v->run);

	if (v->run->exit_reason == KVM_EXIT_MMIO && !v->pending_mmio) {
		v->saved_mmio = v->run->mmio;
		v->pending_mmio = true;
	}
	v->run->exit_reason = GK_EXIT_MEMORY_FAULT;
	mf->flags = private ? GK_MEMORY_EXIT_FLAG_PRIVATE : 0;
	mf->gpa = gpa & ~(PAGE - 1);
	mf->size = PAGE;
	trace("\"exit\":\"KVM_EXIT_MEMORY_FAULT\",\"vcpu\":%d,\"gpa\":%llu,\"private\":%d",
	      v->fd, (unsigned long long)mf->gpa, private);
	return fail(EFAULT);
}

/* Is the page at @gpa of guest_memfd slot @s private (its fault's kind)? */
static bool fault_private(struct kvm_vm *vm, struct user_slot *s, uint64_t gpa)
{
	uint64_t attr = 0;

	if (config.model == MODEL_PER_VM && !s->view_any)
		return vm_is_private(vm, gpa);
	gmem_get_attributes(s->file->gfd,
			    s->r.guest_memfd_offset + ((gpa & ~(PAGE - 1)) - s->r.guest_phys_addr),
			    &attr, NULL);
	return attr & GMEM_ATTR_PRIVATE;
}

/*
 * Where the kernel's fault on @gpa (in slot @s, or none) goes: through the
 * guest_memfd (ROUTE_GMEM), to its memory fault (ROUTE_FAULT: a private
 * access with no guest_memfd behind it, or a guest_memfd that is gone), or
 * to the host's memory or MMIO (ROUTE_HOST). *@per_vm_private: the page's
 * attribute in the VM (per-VM model only).
 */
enum route { ROUTE_GMEM, ROUTE_FAULT, ROUTE_HOST };

static enum route route_of(struct kvm_vm *vm, const struct user_slot *s,
			   uint64_t gpa, bool *per_vm_private)
{
	*per_vm_private = config.model == MODEL_PER_VM && vm_has_private_mem(vm) &&
			  vm_is_private(vm, gpa);
	if (s && s->file && (s->view_any || *per_vm_private))
		return s->file_gone ? ROUTE_FAULT : ROUTE_GMEM;
	return *per_vm_private ? ROUTE_FAULT : ROUTE_HOST;
}

/*
 * Complete the guest's access of @len bytes at @gpa: through gmem (which
 * faults the pages in and opens them in the view), or through the host
 * memory of a plain or shared range. Caller holds vm->lock for reading.
 */
static enum verdict guest_access(struct kvm_vcpu *v, uint64_t gpa, void *data,
			   uint32_t len, bool write, bool *private_out)
{
	struct kvm_vm *vm = v->vm;
	struct user_slot *s = memslot_find(vm, gpa);
	bool per_vm_private;
	enum route r = route_of(vm, s, gpa, &per_vm_private);

	*private_out = per_vm_private;
	if (!s)
		return r == ROUTE_FAULT ? MEMORY_FAULT : TO_PROGRAM;
	if ((s->r.flags & GK_MEM_READONLY) && write)
		return TO_PROGRAM;	/* a write to read-only memory is MMIO */
	if (gpa + len > s->r.guest_phys_addr + s->r.memory_size)
		return TO_PROGRAM;
	if (r == ROUTE_FAULT)
		return MEMORY_FAULT;
	if (r == ROUTE_GMEM) {
		/*
		 * A disagreement means a conversion ran between the lookup and
		 * the fault: look again, as the kernel's fault retries, for as
		 * long as the attribute keeps moving. Where the lookup reads
		 * the VM's attributes (the per-VM model), the same answer 16
		 * times in a row is a real disagreement with the file's. Where
		 * it reads the file's, the one the fault checks, every
		 * disagreement is a conversion that ran in between, even when
		 * the lookups keep reading the same answer (a converter
		 * flipping the page back and forth between them): keep looking,
		 * within a bound far beyond any race.
		 */
		int limit = config.model == MODEL_PER_VM && !s->view_any ? 16 : 100000;

		for (int same = 0, last = -1; same < limit;) {
			bool private = fault_private(vm, s, gpa);
			struct gmem_exit exit;
			int ret;

			same = private == last ? same + 1 : 0;
			last = private;
			if (same > 2)
				sched_yield();
			*private_out = private;
			layer_depth++;
			ret = gmem_vm_access(vm->gvm, gpa, data, len,
					     (private ? GMEM_FAULT_PRIVATE : 0) |
					     (write ? GMEM_FAULT_WRITE : 0), &exit);
			layer_depth--;
			if (ret == 0) {
				trace("\"exit\":\"KVM_EXIT_MMIO\",\"vcpu\":%d,\"gpa\":%llu,\"resolved\":\"gmem fault\",\"private\":%d",
				      v->fd, (unsigned long long)gpa, private);
				return RESUME;
			}
			if (ret < 0)
				return MEMORY_FAULT;
			/* 1: a conversion raced the lookup; look again. */
		}
		return MEMORY_FAULT;
	}
	{
		uint8_t *hva = (uint8_t *)(uintptr_t)(s->r.userspace_addr +
						       (gpa - s->r.guest_phys_addr));

		/*
		 * The shared range was between real memslots for a moment, or
		 * its host memory cannot be reached: a private page of a
		 * guest_memfd mapping, or no memory at all, fails the access
		 * as the kernel's fault on the host address does (EFAULT).
		 */
		if (write ? copy_out(hva, data, len) : copy_in(data, hva, len))
			return MEMORY_FAULT;
	}
	return RESUME;
}

static enum verdict handle_mmio(struct kvm_vcpu *v, bool *private)
{
	struct kvm_run *run = v->run;
	enum verdict d;

	pthread_rwlock_rdlock(&v->vm->lock);
	d = guest_access(v, run->mmio.phys_addr, run->mmio.data, run->mmio.len,
		   run->mmio.is_write, private);
	pthread_rwlock_unlock(&v->vm->lock);
	return d;
}

/*
 * An emulation failure: KVM could not fetch the instruction. If its page is
 * guest_memfd memory that gmem's stage-2 does not map, fault it in
 * (KVM_TRANSLATE gives the gpa of the guest's rip) and resume. A page the
 * kernel's fault would refuse (private with no guest_memfd behind it, or a
 * guest_memfd that is gone) is the kernel's memory fault, at the first such
 * page of the instruction: *@gpa and *@private say which. If the page is
 * RAM of a memslot that is mapped already (another vCPU faulted it in, or
 * the real memslots were being laid out again for a per-VM conversion: KVM
 * has no atomic replacement of one memslot by several), resume too, up to
 * 1000 times in a row with no memslot change between: only a failure that
 * stays is the program's.
 */
static enum verdict fetch_page(struct kvm_vcpu *v, uint64_t gpa, bool *private,
			       bool *ram)
{
	struct kvm_vm *vm = v->vm;
	struct user_slot *s = memslot_find(vm, gpa);
	enum route r = route_of(vm, s, gpa, private);
	int mapped = 0, ret;

	*ram |= s != NULL;
	if (r != ROUTE_GMEM)
		return r == ROUTE_FAULT ? MEMORY_FAULT : TO_PROGRAM;
	*private = fault_private(vm, s, gpa);
	if (gmem_vm_stage2(vm->gvm, gpa, NULL, &mapped) == 1)
		return TO_PROGRAM;
	layer_depth++;
	ret = gmem_vm_fault(vm->gvm, gpa, *private ? GMEM_FAULT_PRIVATE : 0, NULL, NULL);
	layer_depth--;
	/* 1: a conversion raced the lookup; the next failure looks again. */
	return ret < 0 ? MEMORY_FAULT : ret ? TO_PROGRAM : RESUME;
}

static enum verdict handle_fetch(struct kvm_vcpu *v, uint64_t *gpa, bool *private)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	bool faulted = false, ram = false;

	if (v->run->internal.suberror != KVM_INTERNAL_ERROR_EMULATION ||
	    real.ioctl(v->fd, KVM_GET_REGS, &regs) ||
	    real.ioctl(v->fd, KVM_GET_SREGS, &sregs))
		return TO_PROGRAM;
	pthread_rwlock_rdlock(&v->vm->lock);
	for (uint64_t at = 0; at < 16; at += 15) {
		struct kvm_translation tr = { .linear_address = sregs.cs.base + regs.rip + at };
		enum verdict d;

		if (real.ioctl(v->fd, KVM_TRANSLATE, &tr) || !tr.valid)
			continue;
		*gpa = tr.physical_address;
		d = fetch_page(v, *gpa, private, &ram);
		if (d == MEMORY_FAULT) {
			pthread_rwlock_unlock(&v->vm->lock);
			return d;
		}
		faulted |= d == RESUME;
	}
	pthread_rwlock_unlock(&v->vm->lock);
	if (faulted) {
		v->fetch_retries = 0;
		return RESUME;
	}
	/* A memslot went since the last failure: that one is explained. */
	if (v->fetch_gen != v->vm->layout_gen) {
		v->fetch_gen = v->vm->layout_gen;
		v->fetch_retries = 0;
	}
	return ram && v->fetch_retries++ < 1000 ? RESUME : TO_PROGRAM;
}

int vcpu_run(struct kvm_vcpu *v)
{
	struct kvm_run *run = v->run;
	bool private;

	if (v->vm->owner != layer_pid)
		return fail(EIO);
	for (;;) {
		int ret, depth;

		if (v->pending_mmio) {
			/* KVM waits for the access it exited on: resolve it again. */
			run->exit_reason = KVM_EXIT_MMIO;
			run->mmio = v->saved_mmio;
			v->pending_mmio = false;
			switch (handle_mmio(v, &private)) {
			case MEMORY_FAULT:
				return memory_fault(v, run->mmio.phys_addr, private);
			case TO_PROGRAM:	/* now plain MMIO: the program's */
				return 0;
			case RESUME:
				break;
			}
		}
		/* The guest runs without the layer's depth: see interpose.c. */
		depth = layer_depth;
		layer_depth = 0;
		ret = real.ioctl(v->fd, KVM_RUN, 0);
		layer_depth = depth;
		if (ret < 0)
			return ret;
		switch (run->exit_reason) {
		case KVM_EXIT_MMIO:
			switch (handle_mmio(v, &private)) {
			case RESUME:
				v->fetch_retries = 0;
				check_vm(v->vm, "KVM_RUN");
				continue;
			case MEMORY_FAULT:
				return memory_fault(v, run->mmio.phys_addr, private);
			case TO_PROGRAM:
				return ret;
			}
			break;
		case KVM_EXIT_INTERNAL_ERROR: {
			uint64_t gpa;

			switch (handle_fetch(v, &gpa, &private)) {
			case RESUME:
				continue;
			case MEMORY_FAULT:
				v->fetch_retries = 0;
				return memory_fault(v, gpa, private);
			case TO_PROGRAM:
				return ret;
			}
			break;
		}
		default:
			v->fetch_retries = 0;
			return ret;
		}
	}
}
