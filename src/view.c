// SPDX-License-Identifier: MIT
/*
 * Stage-2 views: what a VMM hands to KVM as a memslot's userspace address.
 *
 * A view is one MAP_SHARED mapping of the pool memfd frames behind a bound
 * slot (page i of the slot is frame file->base_pfn + pgoff + i), of one kind:
 * the private view, the shared view, or the any view. Every page starts
 * fenced. A page opens only while gmem's stage-2 maps it with the view's kind
 * (for the any view: with either kind): the fault that installs the entry
 * opens it, and every zap of the entry (conversion, punch, release, unbind)
 * fences it again. Fencing drops the host page-table entries, so the host
 * kernel's MMU notifiers make KVM drop its own mapping of the page:
 * revocation reaches the real guest. The next guest access through a fenced
 * page leaves KVM as an exit naming the gpa (an MMIO exit), and the VMM
 * sends it to gmem_vm_fault.
 *
 * Fences are guard regions where the kernel has them (see mapping.c) and
 * PROT_NONE otherwise. Opens run under mmu_lock shared right after the entry
 * is installed; fences under mmu_lock exclusive right after the zap, so a
 * view never shows a page that stage-2 does not map with its kind.
 */
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"
#include "check.h"
#include "fence.h"
#include "file.h"
#include "inject.h"
#include "lock.h"
#include "pool.h"
#include "vm.h"

struct view {
	uint8_t *addr;
	size_t len;
};

/* slot->views[]: the shared and private views by attribute, then the any view. */
#define VIEW_ANY	2
#define VIEW_KINDS	3

static const char *const view_name[VIEW_KINDS] = { "shared", "private", "any" };

/* Open, or fence, @npages of view @v from page @first. */
static int view_open_pages(struct view *v, uint64_t first, uint64_t npages)
{
	return fence_open(v->addr + (first << PAGE_SHIFT), npages << PAGE_SHIFT,
			  PROT_READ | PROT_WRITE);
}

static int view_close_pages(struct view *v, uint64_t first, uint64_t npages)
{
	return fence_close(v->addr + (first << PAGE_SHIFT), npages << PAGE_SHIFT);
}

/*
 * Fault path: stage-2 now maps [gfn, gfn + npages) of @slot (one entry, of
 * any level), with kind @private: open the view of that kind and the any
 * view, under mmu_lock shared.
 */
int view_open(struct memslot *slot, uint64_t gfn, uint64_t npages,
	      bool private)
{
	uint64_t first = gfn - slot->base_gfn;
	int ret = 0;

	lock_assert_held_shared(&slot->file->vm->mmu_lock);

	if (slot->views[private])
		ret = inject_fail(INJECT_NAMED("view open")) ? -ENOMEM :
		      view_open_pages(slot->views[private], first, npages);
	if (!ret && slot->views[VIEW_ANY])
		ret = view_open_pages(slot->views[VIEW_ANY], first, npages);
	return ret;
}

/*
 * Fence the any view over the pages of [gfn_start, gfn_end) that stage-2 no
 * longer maps. A zap of one kind leaves the other kind's entries there (a
 * conversion of a mixed range, or the range widened to a whole huge entry):
 * those pages stay open, since a refault finds its entry still in place
 * and would not open them again.
 */
static void close_any(struct memslot *slot, uint64_t gfn_start,
		      uint64_t gfn_end, unsigned int filter)
{
	struct view *v = slot->views[VIEW_ANY];
	struct stage2 *s2 = &slot->file->vm->s2;
	uint64_t gfn = gfn_start, run = gfn_start;
	struct s2_entry e;

	if ((filter & S2_ZAP_ALL) == S2_ZAP_ALL) {	/* nothing is left */
		view_close_pages(v, gfn_start - slot->base_gfn, gfn_end - gfn_start);
		return;
	}
	while (gfn < gfn_end) {
		if (!s2_lookup(s2, gfn, &e)) {
			gfn++;
			continue;
		}
		if (run < gfn)
			view_close_pages(v, run - slot->base_gfn, gfn - run);
		gfn = (gfn | ((1ULL << (e.level * S2_BITS)) - 1)) + 1;
		run = gfn;
	}
	if (run < gfn_end)
		view_close_pages(v, run - slot->base_gfn, gfn_end - run);
}

/*
 * Invalidation: stage-2 entries of [gfn_start, gfn_end) matching @filter
 * are gone, under mmu_lock exclusive. A fence that fails (no memory for a
 * VMA split without guard support) leaves the page open; nothing can be
 * undone at this point, as in the kernel's zap.
 */
void view_close(struct memslot *slot, uint64_t gfn_start, uint64_t gfn_end,
		unsigned int filter)
{
	uint64_t first = gfn_start - slot->base_gfn;

	lock_assert_held_exclusive(&slot->file->vm->mmu_lock);

	if (slot->views[0] && (filter & S2_ZAP_SHARED))
		view_close_pages(slot->views[0], first, gfn_end - gfn_start);
	if (slot->views[1] && (filter & S2_ZAP_PRIVATE))
		view_close_pages(slot->views[1], first, gfn_end - gfn_start);
	if (slot->views[VIEW_ANY] && (filter & S2_ZAP_ALL))
		close_any(slot, gfn_start, gfn_end, filter);
}

/*
 * The slot goes away: swap each view for an inaccessible anonymous
 * reservation. The address stays reserved (the VMM may not have deleted its
 * KVM memslot yet) until the VMM munmaps it; the pool is no longer mapped
 * there. Under slots_lock and the file's invalidate_lock exclusive.
 */
void view_release(struct memslot *slot)
{
	lock_assert_held_exclusive(&slot->file->vm->slots_lock);
	lock_assert_held_exclusive(&slot->file->invalidate_lock);
	for (int kind = 0; kind < VIEW_KINDS; kind++) {
		struct view *v = slot->views[kind];

		if (!v)
			continue;
		mmap(v->addr, v->len, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
		free(v);
		slot->views[kind] = NULL;
	}
}

/*
 * Check mode, invariant 2 for views: a page is open in a view exactly while
 * stage-2 maps it with the view's kind (the any view: with either kind).
 * Reads the views' page tables from @pagemap_fd; needs guard regions (with
 * mprotect the page tables do not say). Under slots_lock, mmu_lock
 * exclusive (a fault opens the views after it installs its entry, both
 * under mmu_lock shared) and the check lock.
 */
void view_check(struct gmem_vm *vm, struct memslot *slot, int pagemap_fd)
{
	uint64_t pm[512];

	lock_assert_held(&vm->slots_lock);
	lock_assert_held_exclusive(&vm->mmu_lock);

	if (pagemap_fd < 0 || !fence_uses_guards())
		return;
	for (int kind = 0; kind < VIEW_KINDS; kind++) {
		struct view *v = slot->views[kind];

		for (uint64_t i = 0; v && i < slot->npages; i++) {
			uint64_t gfn = slot->base_gfn + i, index = slot->pgoff + i;
			off_t at = ((uintptr_t)v->addr / PAGE_SIZE + i) * sizeof(pm[0]);
			struct s2_entry e;
			bool mapped, open;

			if (i % 512 == 0 &&
			    pread(pagemap_fd, pm, sizeof(pm), at) <= 0)
				return;
			mapped = s2_lookup(&vm->s2, gfn, &e) &&
				 (kind == VIEW_ANY || e.private == kind);
			open = !(pm[i % 512] & PM_GUARD);
			/* A view whose open failed hides the page until its next fault (fault.c). */
			if (open != mapped &&
			    !(mapped && atomic_load(&vm->views_behind)))
				check_violation(vm, 2, index << PAGE_SHIFT,
						file_pfn(slot->file, index),
						"the %s view %s gfn %#llx, which stage-2 %s",
						view_name[kind],
						open ? "shows" : "hides",
						(unsigned long long)gfn,
						mapped ? "maps" :
						kind == VIEW_ANY ? "does not map" :
						"does not map with that kind");
		}
	}
}

/* Check mode: is [start, end) inside a stage-2 view of @vm? */
bool view_covers(struct gmem_vm *vm, uintptr_t start, uintptr_t end)
{
	lock_assert_held(&vm->slots_lock);
	/*
	 * Views side by side in the address space over adjacent frames are
	 * one mapping to the kernel (it merges the two): cover the range
	 * with as many views as it takes.
	 */
	while (start < end) {
		uintptr_t next = start;

		for (unsigned int i = 0; i < vm->nslots && next == start; i++) {
			for (int kind = 0; kind < VIEW_KINDS; kind++) {
				struct view *v = vm->slots[i]->views[kind];

				if (v && start >= (uintptr_t)v->addr &&
				    start < (uintptr_t)v->addr + v->len) {
					next = (uintptr_t)v->addr + v->len;
					break;
				}
			}
		}
		if (next == start)
			return false;
		start = next;
	}
	return true;
}

struct open_arg {
	struct memslot *slot;
	int kind;
	int ret;
};

/* Open new view @arg->kind over a stage-2 leaf it shows. */
static int open_mapped(uint64_t gfn, const struct s2_entry *e, void *argp)
{
	struct open_arg *arg = argp;
	struct memslot *slot = arg->slot;
	uint64_t end = gfn + (1ULL << (e->level * S2_BITS));

	gfn = MAX(gfn, slot->base_gfn);
	end = MIN(end, slot->base_gfn + slot->npages);
	if (gfn >= end ||
	    (arg->kind != VIEW_ANY && e->private != arg->kind))
		return 0;
	arg->ret = inject_fail(INJECT_SITE) ? -ENOMEM :
		   view_open_pages(slot->views[arg->kind], gfn - slot->base_gfn,
				   end - gfn);
	return arg->ret;
}

static uint8_t *map_fenced(struct gmem_vm *vm, struct memslot *slot)
{
	size_t len = slot->npages << PAGE_SHIFT;
	off_t pos = (off_t)file_pfn(slot->file, slot->pgoff) << PAGE_SHIFT;
	bool guards = fence_uses_guards();
	uint8_t *addr;

	addr = pool_mmap(NULL, len, guards ? PROT_READ | PROT_WRITE : PROT_NONE,
			 MAP_SHARED | MAP_NORESERVE, vm->pool->memfd, pos);
	if (addr == MAP_FAILED)
		return NULL;
	/*
	 * A forked child could not follow stage-2: it gets no view at all; a
	 * core dump leaves the guest's private pages out.
	 */
	if (try_madvise(addr, len, MADV_DONTFORK) ||
	    try_madvise(addr, len, MADV_DONTDUMP) ||
	    (guards && (inject_fail(INJECT_SITE) || fence_close(addr, len)))) {
		munmap(addr, len);
		return NULL;
	}
	return addr;
}

GMEM_API int gmem_vm_view_mmap(int vmh, uint32_t id, uint64_t attributes,
			       void **addr)
{
	KEEP_ERRNO();
	struct open_arg arg = { .kind = attributes & GMEM_ATTR_PRIVATE ? 1 : 0 };
	struct memslot *slot;
	struct gmem_vm *vm;
	struct view *v;
	int ret;

	if (attributes == GMEM_VIEW_ANY)
		arg.kind = VIEW_ANY;
	else if (attributes & ~GMEM_ATTR_PRIVATE)
		return gmem_err(EINVAL, "gmem_vm_view_mmap: attributes %#llx: only GMEM_ATTR_PRIVATE, 0 or GMEM_VIEW_ANY",
				(unsigned long long)attributes);
	if (!addr)
		return gmem_err(EINVAL, "gmem_vm_view_mmap: no address output");
	ret = vm_enter(vmh, "gmem_vm_view_mmap", &vm);
	if (ret)
		return ret;
	slot = id < GMEM_MAX_SLOTS ? vm_find_slot_id(vm, id) : NULL;
	if (!slot) {
		ret = gmem_err(EINVAL, "gmem_vm_view_mmap: slot %u is not in use", id);
		goto out;
	}
	v = try_malloc(sizeof(*v));
	if (v)
		v->addr = map_fenced(vm, slot);
	if (!v || !v->addr) {
		ret = v ? gmem_err(ENOMEM, "gmem_vm_view_mmap: no address space for the view") :
			  gmem_err(ENOMEM, "gmem_vm_view_mmap: out of memory");
		free(v);
		goto out;
	}
	v->len = slot->npages << PAGE_SHIFT;

	/* Publish and open what stage-2 already maps, with installs held off. */
	brlock_write_lock(&vm->mmu_lock);
	if (slot->views[arg.kind]) {
		ret = gmem_err(EEXIST, "gmem_vm_view_mmap: slot %u already has a%s %s view",
			       id, arg.kind == VIEW_ANY ? "n" : "", view_name[arg.kind]);
	} else {
		slot->views[arg.kind] = v;
		arg.slot = slot;
		s2_walk(&vm->s2, open_mapped, &arg);
		if (arg.ret) {
			slot->views[arg.kind] = NULL;
			ret = gmem_err(ENOMEM, "gmem_vm_view_mmap: cannot open mapped pages");
		}
	}
	brlock_write_unlock(&vm->mmu_lock);
	if (ret) {
		munmap(v->addr, v->len);
		free(v);
	} else {
		*addr = v->addr;
	}
out:
	vm_exit(vm);
	return ret;
}
