// SPDX-License-Identifier: MIT
/*
 * Memslots: KVM_SET_USER_MEMORY_REGION(2) as the kernel validates it, the
 * guest_memfd binding as a gmem binding, and the real memslots that carry it.
 *
 * The program's memslot ("user slot") becomes one or more real memslots
 * ("runs") of the real VM, each a gpa range and the host address KVM reads
 * it through:
 *
 *   guest_memfd slot, in place (and a MMAP file under per-VM attributes):
 *       one run over a gmem stage-2 view open for either kind: a page shows
 *       while gmem's stage-2 maps it, so KVM sees each page as its
 *       attribute says, and conversions reach the real guest through the
 *       host kernel's MMU notifiers.
 *   guest_memfd slot under per-VM attributes: private runs over the slot's
 *       private view, shared runs over userspace_addr, as released kernels
 *       take private pages from the guest_memfd and shared ones from there.
 *   plain slot: userspace_addr; under per-VM attributes its private runs
 *       get no real memslot at all, so the guest's access exits and the
 *       layer reports the memory fault KVM would.
 *
 * A run keeps the user slot's id where it can; the others take ids from the
 * top half of the real KVM's slots, which is why the layer reports half of
 * KVM_CAP_NR_MEMSLOTS. Caller holds vm->lock for writing in every function
 * that changes a slot.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "layer.h"

#define REAL_SLOTS	32764	/* the host KVM's KVM_CAP_NR_MEMSLOTS */
#define USER_SLOTS	(REAL_SLOTS / 2)
#define TASK_SIZE	0x7ffffffff000ULL
#define MAX_NR_PAGES	((1ULL << 31) - 1)

uint32_t memslot_user_max(void)
{
	return USER_SLOTS;
}

static uint32_t slot_as(uint32_t slot) { return slot >> 16; }

struct user_slot *memslot_find(struct kvm_vm *vm, uint64_t gpa)
{
	for (struct user_slot *s = vm->slots; s; s = s->next)
		if (slot_as(s->r.slot) == 0 && gpa >= s->r.guest_phys_addr &&
		    gpa - s->r.guest_phys_addr < s->r.memory_size)
			return s;
	return NULL;
}

static struct user_slot *find_id(struct kvm_vm *vm, uint32_t slot)
{
	for (struct user_slot *s = vm->slots; s; s = s->next)
		if (s->r.slot == slot)
			return s;
	return NULL;
}

static bool overlaps(struct kvm_vm *vm, const struct user_slot *self,
		     uint32_t as, uint64_t gpa, uint64_t size)
{
	for (struct user_slot *s = vm->slots; s; s = s->next)
		if (s != self && slot_as(s->r.slot) == as &&
		    gpa < s->r.guest_phys_addr + s->r.memory_size &&
		    s->r.guest_phys_addr < gpa + size)
			return true;
	return false;
}

/* ------------------------------------------------------------ real ids */

static int id_alloc(struct kvm_vm *vm, uint32_t as)
{
	if (!vm->real_ids && !(vm->real_ids = calloc(REAL_SLOTS / 8 + 1, 1)))
		return -ENOMEM;
	for (uint32_t i = USER_SLOTS; i < REAL_SLOTS; i++)
		if (!(vm->real_ids[i / 8] & (1 << (i % 8)))) {
			vm->real_ids[i / 8] |= 1 << (i % 8);
			return (int)(as << 16 | i);
		}
	return -ENOSPC;
}

static void id_free(struct kvm_vm *vm, uint32_t id)
{
	uint32_t i = id & 0xffff;

	if (i >= USER_SLOTS && vm->real_ids)
		vm->real_ids[i / 8] &= ~(1 << (i % 8));
}

static int real_set(struct kvm_vm *vm, uint32_t id, uint32_t flags,
		    uint64_t gpa, uint64_t size, uint64_t hva)
{
	struct kvm_userspace_memory_region r = {
		.slot = id, .flags = flags, .guest_phys_addr = gpa,
		.memory_size = size, .userspace_addr = hva,
	};

	return real.ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &r) ? -errno : 0;
}

/* ------------------------------------------------------------- layout */

static bool uses_view_any(const struct user_slot *s)
{
	return config.model == MODEL_IN_PLACE ||
	       (s->file->flags & GK_GUEST_MEMFD_FLAG_MMAP);
}

/* Does the private/shared split of the per-VM model shape this slot? */
static bool split_by_attributes(const struct user_slot *s)
{
	return config.model == MODEL_PER_VM && !(s->file && s->view_any);
}

static void runs_clear(struct kvm_vm *vm, struct user_slot *s)
{
	vm->layout_gen++;
	for (size_t i = 0; i < s->nruns; i++) {
		real_set(vm, s->runs[i].id, 0, s->runs[i].gpa, 0, 0);
		id_free(vm, s->runs[i].id);
	}
	free(s->runs);
	s->runs = NULL;
	s->nruns = 0;
}

static int run_add(struct kvm_vm *vm, struct user_slot *s, uint64_t gpa,
		   uint64_t end, uint64_t hva)
{
	struct real_run *runs = realloc(s->runs, (s->nruns + 1) * sizeof(*runs));
	bool id_taken = false;
	int id, ret;

	if (!runs)
		return -ENOMEM;
	s->runs = runs;
	for (size_t i = 0; i < s->nruns; i++)
		id_taken |= s->runs[i].id == s->r.slot;
	id = id_taken ? id_alloc(vm, slot_as(s->r.slot)) : (int)s->r.slot;
	if (id < 0)
		return id;
	ret = real_set(vm, (uint32_t)id, s->r.flags & ~GK_MEM_GUEST_MEMFD, gpa,
		       end - gpa, hva);
	if (ret) {
		id_free(vm, (uint32_t)id);
		return ret;
	}
	s->runs[s->nruns++] = (struct real_run){ (uint32_t)id, gpa, end - gpa, hva };
	return 0;
}

struct want {
	uint64_t gpa, end, hva;
};

/*
 * The real memslots the slot should have, from its kind and the per-VM
 * attributes (the sorted private runs): @w holds at least 2 * nattrs + 2.
 */
static size_t slot_layout(struct kvm_vm *vm, const struct user_slot *s,
			  struct want *w)
{
	uint64_t gpa = s->r.guest_phys_addr, end = gpa + s->r.memory_size, at = gpa;
	uint64_t view = (uint64_t)(uintptr_t)s->view;
	bool serve_private = s->file && !s->file_gone;
	size_t n = 0;

	if (!split_by_attributes(s)) {
		if (!s->file)
			w[n++] = (struct want){ gpa, end, s->r.userspace_addr };
		else if (serve_private)
			w[n++] = (struct want){ gpa, end, view };
		return n;	/* a file gone: every access exits */
	}
	for (size_t i = 0; i < vm->nattrs && at < end; i++) {
		uint64_t ps = MAX(vm->attrs[i].start, gpa), pe = MIN(vm->attrs[i].end, end);

		if (pe <= at)
			continue;
		if (ps >= end)
			break;
		if (ps > at)
			w[n++] = (struct want){ at, ps, s->r.userspace_addr + (at - gpa) };
		if (serve_private)
			w[n++] = (struct want){ ps, pe, view + (ps - gpa) };
		at = pe;
	}
	if (at < end)
		w[n++] = (struct want){ at, end, s->r.userspace_addr + (at - gpa) };
	return n;
}

/*
 * Lay the slot's real memslots out from its kind and the attributes. Runs
 * that stay as they are are kept: KVM cannot change memslots atomically,
 * so only the ranges that change have a moment without one.
 */
static int slot_apply(struct kvm_vm *vm, struct user_slot *s)
{
	struct want *w = malloc((2 * vm->nattrs + 2) * sizeof(*w));
	bool *used;
	size_t n, kept = 0;
	int ret = 0;

	if (!w)
		return -ENOMEM;
	n = slot_layout(vm, s, w);
	used = calloc(n + 1, sizeof(*used));
	if (!used) {
		free(w);
		return -ENOMEM;
	}
	for (size_t i = 0; i < s->nruns; i++) {
		struct real_run *r = &s->runs[i];
		size_t j;

		for (j = 0; j < n; j++)
			if (!used[j] && w[j].gpa == r->gpa && w[j].end == r->gpa + r->size &&
			    w[j].hva == r->hva)
				break;
		if (j < n) {
			used[j] = true;
			s->runs[kept++] = *r;
		} else {
			real_set(vm, r->id, 0, r->gpa, 0, 0);
			id_free(vm, r->id);
			vm->layout_gen++;
		}
	}
	s->nruns = kept;
	for (size_t j = 0; j < n && !ret; j++)
		if (!used[j])
			ret = run_add(vm, s, w[j].gpa, w[j].end, w[j].hva);
	free(used);
	free(w);
	return ret;
}

/*
 * Per-VM attributes of [start, end) changed: slots split by them are laid
 * out again. A slot served whole from its file (a MMAP guest_memfd) is left
 * alone: there, as in the kernel, the file alone says what the host may map,
 * and the guest's faults take each page as the file has it.
 */
int memslot_relayout(struct kvm_vm *vm, uint64_t start, uint64_t end)
{
	int ret = 0;

	for (struct user_slot *s = vm->slots; s && !ret; s = s->next) {
		uint64_t gpa = s->r.guest_phys_addr, send = gpa + s->r.memory_size;

		if (slot_as(s->r.slot) || end <= gpa || send <= start)
			continue;
		if (split_by_attributes(s))
			ret = slot_apply(vm, s);
	}
	return ret;
}

/* ------------------------------------------------------ create, delete */

static void slot_unlink(struct kvm_vm *vm, struct user_slot *s)
{
	struct user_slot **p;

	for (p = &vm->slots; *p != s; p = &(*p)->next)
		;
	*p = s->next;
}

static void slot_link(struct kvm_vm *vm, struct user_slot *s)
{
	struct user_slot **p;

	for (p = &vm->slots; *p && (*p)->r.guest_phys_addr < s->r.guest_phys_addr;
	     p = &(*p)->next)
		;
	s->next = *p;
	*p = s;
}

static void slot_delete(struct kvm_vm *vm, struct user_slot *s)
{
	runs_clear(vm, s);
	if (s->file && !s->file_gone)
		gmem_vm_unbind(vm->gvm, s->r.slot);
	if (s->view)
		real.munmap(s->view, s->r.memory_size);
	slot_unlink(vm, s);
	free(s);
}

/* Bind a guest_memfd slot in gmem and make its view. */
static int slot_bind(struct kvm_vm *vm, struct user_slot *s)
{
	const struct gk_userspace_memory_region2 *r = &s->r;
	struct kvm_file *f;
	int err, ret;

	f = gmemfd_lookup((int)r->guest_memfd, &err);
	if (!f)
		return err;	/* -EBADF closed, -EINVAL not a guest_memfd */
	if (f->vm != vm)
		return -EINVAL;
	if (r->guest_memfd_offset + r->memory_size > f->size)
		return -EINVAL;
	if (slot_as(r->slot))
		return -EINVAL;	/* gmem binds address space 0 only */
	ret = gmem_vm_bind(vm->gvm, r->slot, r->guest_phys_addr, r->memory_size,
			f->gfd, r->guest_memfd_offset);
	if (ret)
		return ret;
	s->file = f;
	s->view_any = uses_view_any(s);
	ret = gmem_vm_view_mmap(vm->gvm, r->slot,
				s->view_any ? GMEM_VIEW_ANY : GMEM_ATTR_PRIVATE,
				(void **)&s->view);
	if (ret) {
		gmem_vm_unbind(vm->gvm, r->slot);
		s->file = NULL;
	}
	return ret;
}

/*
 * The kernel's checks of check_memory_region_flags and
 * __kvm_set_memory_region. A VM with private memory has one address space
 * (no SMM's second), as kvm_arch_nr_memslot_as_ids says.
 */
static int validate(const struct kvm_vm *vm, const struct gk_userspace_memory_region2 *r,
		    bool v2)
{
	uint32_t valid = GK_MEM_LOG_DIRTY_PAGES;

	if (!v2 && (r->flags & GK_MEM_GUEST_MEMFD))
		return -EINVAL;
	if (r->flags & GK_MEM_GUEST_MEMFD)
		valid = GK_MEM_GUEST_MEMFD;	/* no dirty log, no read-only */
	else
		valid |= GK_MEM_READONLY;
	if (r->flags & ~valid)
		return -EINVAL;
	if ((r->slot & 0xffff) >= USER_SLOTS ||
	    slot_as(r->slot) >= (vm_has_private_mem(vm) ? 1u : 2u))
		return -EINVAL;
	if (r->memory_size & (PAGE - 1))
		return -EINVAL;
	if (r->guest_phys_addr & (PAGE - 1))
		return -EINVAL;
	if ((r->userspace_addr & (PAGE - 1)) ||
	    r->userspace_addr + r->memory_size < r->userspace_addr ||
	    r->userspace_addr + r->memory_size > TASK_SIZE)
		return -EINVAL;
	if ((r->flags & GK_MEM_GUEST_MEMFD) &&
	    ((r->guest_memfd_offset & (PAGE - 1)) ||
	     r->guest_memfd_offset + r->memory_size < r->guest_memfd_offset))
		return -EINVAL;
	if (r->guest_phys_addr + r->memory_size < r->guest_phys_addr)
		return -EINVAL;
	if (r->memory_size / PAGE > MAX_NR_PAGES)
		return -EINVAL;
	return 0;
}

int memslot_set(struct kvm_vm *vm, const struct gk_userspace_memory_region2 *r,
		bool v2)
{
	struct user_slot *old, *s;
	int ret = validate(vm, r, v2);

	if (ret)
		return ret;
	pthread_rwlock_wrlock(&vm->lock);
	old = find_id(vm, r->slot);
	if (!r->memory_size) {			/* delete */
		if (old)
			slot_delete(vm, old);
		ret = old ? 0 : -EINVAL;
		goto out;
	}
	if (old) {				/* modify: move or flags */
		if ((r->flags & GK_MEM_GUEST_MEMFD) || old->file ||
		    r->userspace_addr != old->r.userspace_addr ||
		    r->memory_size != old->r.memory_size ||
		    ((r->flags ^ old->r.flags) & GK_MEM_READONLY)) {
			ret = -EINVAL;
			goto out;
		}
		if (r->guest_phys_addr == old->r.guest_phys_addr &&
		    r->flags == old->r.flags)
			goto out;	/* nothing to change */
		if (overlaps(vm, old, slot_as(r->slot), r->guest_phys_addr,
			     r->memory_size)) {
			ret = -EEXIST;
			goto out;
		}
		runs_clear(vm, old);
		slot_unlink(vm, old);
		old->r = *r;
		slot_link(vm, old);
		ret = slot_apply(vm, old);
		goto out;
	}
	if (overlaps(vm, NULL, slot_as(r->slot), r->guest_phys_addr, r->memory_size)) {
		ret = -EEXIST;
		goto out;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		ret = -ENOMEM;
		goto out;
	}
	s->r = *r;
	if (!v2)
		memset(&s->r.guest_memfd_offset, 0,
		       sizeof(s->r) - offsetof(struct gk_userspace_memory_region2,
					       guest_memfd_offset));
	if ((r->flags & GK_MEM_GUEST_MEMFD) && (ret = slot_bind(vm, s))) {
		free(s);
		goto out;
	}
	slot_link(vm, s);
	ret = slot_apply(vm, s);
	if (ret)
		slot_delete(vm, s);
out:
	pthread_rwlock_unlock(&vm->lock);
	return ret;
}

/* The VM goes: its real memslots go with the real VM; gmem's are unbound. */
void memslot_destroy_all(struct kvm_vm *vm)
{
	pthread_rwlock_wrlock(&vm->lock);
	while (vm->slots) {
		struct user_slot *s = vm->slots;

		if (s->file && !s->file_gone)
			gmem_vm_unbind(vm->gvm, s->r.slot);
		if (s->view)
			real.munmap(s->view, s->r.memory_size);
		free(s->runs);
		vm->slots = s->next;
		free(s);
	}
	pthread_rwlock_unlock(&vm->lock);
}

/*
 * The file's last fd and last mapping are gone: as the kernel clears the
 * slot's file, the slot keeps its gpa range but loses what the file served,
 * so a guest access there exits and becomes a memory fault (-EFAULT). Under
 * per-VM attributes a split slot keeps serving its shared runs from
 * userspace_addr, as the kernel does.
 */
void memslot_file_released(struct kvm_file *f)
{
	struct kvm_vm *vm = f->vm;

	pthread_rwlock_wrlock(&vm->lock);
	for (struct user_slot *s = vm->slots; s; s = s->next)
		if (s->file == f && !s->file_gone) {
			s->file_gone = true;
			slot_apply(vm, s);
		}
	pthread_rwlock_unlock(&vm->lock);
}

/*
 * KVM_GET_DIRTY_LOG of a slot split into several real memslots: each run's
 * bitmap lands at its place in the program's. Unsplit slots pass through.
 */
int memslot_dirty_log(struct kvm_vm *vm, unsigned long cmd, void *arg,
		      bool *handled)
{
	struct kvm_dirty_log log;
	struct user_slot *s;
	int ret = 0;

	*handled = false;
	if (copy_in(&log, arg, sizeof(log)))
		return 0;	/* the real KVM reports the fault */
	pthread_rwlock_rdlock(&vm->lock);
	s = find_id(vm, log.slot);
	if (!s || (s->nruns == 1 && s->runs[0].id == s->r.slot &&
		   s->runs[0].size == s->r.memory_size))
		goto out;
	*handled = true;
	if (cmd != KVM_GET_DIRTY_LOG) {
		ret = fail(EINVAL);	/* CLEAR on a split slot: not emulated */
		goto out;
	}
	{
		uint64_t npages = s->r.memory_size / PAGE;
		uint64_t *user = log.dirty_bitmap;

		memset(user, 0, (npages + 63) / 64 * 8);
		for (size_t i = 0; i < s->nruns; i++) {
			uint64_t n = s->runs[i].size / PAGE;
			uint64_t first = (s->runs[i].gpa - s->r.guest_phys_addr) / PAGE;
			uint64_t *bits = calloc((n + 63) / 64, 8);
			struct kvm_dirty_log one = { .slot = s->runs[i].id,
						     .dirty_bitmap = bits };

			if (!bits || real.ioctl(vm->fd, KVM_GET_DIRTY_LOG, &one)) {
				free(bits);
				ret = fail(bits ? errno : ENOMEM);
				goto out;
			}
			for (uint64_t p = 0; p < n; p++)
				if (bits[p / 64] & (1ULL << (p % 64)))
					user[(first + p) / 64] |= 1ULL << ((first + p) % 64);
			free(bits);
		}
	}
out:
	pthread_rwlock_unlock(&vm->lock);
	return ret;
}
