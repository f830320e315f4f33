// SPDX-License-Identifier: MIT
/*
 * Guest faults: the kvm_gmem_get_pfn / kvm_mmu_faultin path.
 */
#include <errno.h>
#include <string.h>

#include "common.h"
#include "arch.h"
#include "file.h"
#include "lock.h"
#include "pool.h"
#include "poison.h"
#include "vm.h"

/*
 * Take a private folio over for the guest: make_private on the frames the
 * mapping will cover, and mark them as holding private data. A 4 KiB
 * mapping covers its page; a huge one the folio's pages the arch has not
 * held since they last changed (huge.c), so a merged folio costs what its
 * conversions changed.
 *
 * Faults run beside each other (the invalidate lock shared), and the
 * arch's make_private may clear the frames (tdx): a second fault on the
 * folio must not clear it again after the first mapped it and the guest
 * wrote. So the hook runs one fault at a time per folio, as the kernel's
 * folio lock makes it; an arch without the hook (sw) takes no lock.
 */
static int prepare_private(struct gmem_file *file, uint64_t index,
			   uint64_t gfn, int level)
{
	struct gmem_vm *vm = file->vm;
	pthread_mutex_t *lock = NULL;
	uint64_t first = index, nr = 1;
	int ret = 0;

	if (vm->arch->make_private) {
		lock = &file->prepare_locks[(index >> file->order) %
					    FILE_PREPARE_LOCKS];
		mutex_lock(lock);
	}
	if (!level || huge_unprepared(file, index, &first, &nr)) {
		ret = arch_make_private(vm, gfn - (index - first),
					file_pfn(file, first), nr);
		for (uint64_t i = 0; !ret && i < nr; i++)
			frame_mark_private(vm->pool, file_pfn(file, first + i));
		if (!ret && level)
			huge_set_prepared(file, index);
	}
	if (lock)
		mutex_unlock(lock);
	return ret;
}

/*
 * The file side of a fault, under the invalidate lock held shared by the
 * caller: snapshot the VM's mmu_invalidate_seq into *@seq, then check the
 * page's attribute against the access, find or create its folio, and let the
 * arch make a private page private. Returns 0 with *@pfn and the largest
 * stage-2 level the page allows in *@level (the folio's, which a whole huge
 * folio has only while its attributes are uniform, capped for private pages
 * by the arch), 1 if the access disagrees with the attribute, or -errno.
 */
static int file_get_pfn(struct gmem_file *file, uint64_t index,
		       uint64_t gfn, bool private, uint64_t *pfn, int *level,
		       uint64_t *seq)
{
	struct gmem_vm *vm = file->vm;
	int ret = 0;

	lock_assert_held_shared(&file->invalidate_lock);
	*seq = atomic_load_explicit(&vm->mmu_invalidate_seq,
				    memory_order_acquire);
	if (file_page_private(file, index) != private)
		return 1;
	folio_alloc(file, index);
	*pfn = file_pfn(file, index);
	*level = huge_whole(file, index) ? file->order / S2_BITS : 0;
	if (private)
		ret = prepare_private(file, index, gfn, *level);
	if (private && !ret && *level)
		*level = arch_max_mapping_level(vm, *pfn, *level);
	return ret;
}

static void memory_fault_exit(struct gmem_exit *exit, uint64_t gfn,
			      bool private)
{
	if (!exit)
		return;
	memset(exit, 0, sizeof(*exit));
	exit->reason = GMEM_EXIT_MEMORY_FAULT;
	exit->flags = private ? GMEM_MEMORY_EXIT_FLAG_PRIVATE : 0;
	exit->gpa = gfn << PAGE_SHIFT;
	exit->size = PAGE_SIZE;
}

/*
 * A fault on a page stage-2 already maps with the access's kind, as KVM's
 * spurious fault: the entry exists only while it agrees with the attribute
 * (an invalidation zaps it before the attribute changes), so the file is
 * not consulted and its invalidate lock not taken. Nor is mmu_lock, unless
 * zaps race the lookup twice: the entry read is one a locked lookup that
 * ended just before the zap would have read. *@missing: the stage-2 tables
 * the fault is to top up (all a walk can need when the walk could not say).
 */
static bool spurious_fault(struct gmem_vm *vm, uint64_t gfn, bool private,
			   uint64_t *pfnp, int *missing)
{
	struct s2_entry e;
	bool mapped;
	int ret = s2_lookup_unlocked(&vm->s2, gfn, &e, missing);

	if (ret == -EAGAIN)
		ret = s2_lookup_unlocked(&vm->s2, gfn, &e, missing);
	if (ret == -EAGAIN) {
		*missing = S2_LEVELS - 1;
		brlock_read_lock(&vm->mmu_lock);
		ret = s2_lookup(&vm->s2, gfn, &e);
		brlock_read_unlock(&vm->mmu_lock);
	}
	mapped = ret > 0 && e.private == private;
	if (mapped && pfnp)
		*pfnp = e.pfn;
	return mapped;
}

/*
 * The entry at @gfn is present, but a view may still be fenced over it: a
 * fault that stored an entry and then could not open the views (mprotect
 * fences out of VMAs, where the kernel has no guards) keeps the entry,
 * since taking it back would need the arch told (on tdx, PAGE.REMOVE
 * clears the page), and marks the VM. The guest's next access through the
 * view exits to the VMM, whose fault lands here and opens it. Once marked,
 * a VM's present faults all take this path (an open of open pages changes
 * nothing); until then they pay one load.
 */
static int reopen_views(struct gmem_vm *vm, const char *fn, uint64_t gfn)
{
	struct memslot *slot = vm_find_slot(vm, gfn);
	struct s2_entry e;
	int ret = 0;

	if (!slot)
		return 0;
	brlock_read_lock(&vm->mmu_lock);
	if (s2_lookup(&vm->s2, gfn, &e)) {
		uint64_t span = 1ULL << (e.level * S2_BITS);

		ret = view_open(slot, gfn & ~(span - 1), span, e.private);
	}
	brlock_read_unlock(&vm->mmu_lock);
	if (ret)
		return gmem_err(ENOMEM, "%s: no memory to open the stage-2 views at gpa %#llx", fn,
				(unsigned long long)(gfn << PAGE_SHIFT));
	return 0;
}

/*
 * Inside vm_enter(), which holds slots_lock shared. The file's invalidate
 * lock is held shared from the attribute check to the stage-2 install,
 * unlike the kernel, which drops it in between and relies on the sequence
 * check alone: no invalidation of the file can then start or end while the
 * fault runs, so a stream of conversions on the file cannot make its faults
 * retry forever. Every invalidation gmem makes holds that lock, so today
 * the sequence and in-progress re-check never decides a fault's outcome
 * (the model, src/invalidate.pml, shows it); it stays because it is the
 * kernel's protocol and the only guard for an invalidation that would not
 * take the file's lock. It can make a fault retry on another file's
 * invalidation whose accumulated range covers the gfn: liveness, not safety.
 */
static int fault(struct gmem_vm *vm, const char *fn, uint64_t gfn, bool private,
		 uint64_t *pfnp, struct gmem_exit *exit)
{
	struct s2_cache cache = { 0 };
	int ret, missing = 0;

	lock_assert_held_shared(&vm->slots_lock);
	if (spurious_fault(vm, gfn, private, pfnp, &missing)) {
		if (__builtin_expect(!atomic_load_explicit(&vm->views_behind,
							   memory_order_relaxed), 1))
			return 0;
		return reopen_views(vm, fn, gfn);
	}
	for (;;) {
		struct memslot *slot = vm_find_slot(vm, gfn);
		struct gmem_file *file;
		uint64_t pfn, index, span, seq;
		int level;
		bool stored;

		if (!slot) {
			ret = gmem_err(EFAULT, "%s: nothing bound at gpa %#llx", fn,
				       (unsigned long long)(gfn << PAGE_SHIFT));
			break;
		}
		/* Memory first: a fault that fails for it has changed nothing. */
		if (s2_topup(&vm->s2, &cache, missing)) {
			ret = gmem_err(ENOMEM, "%s: out of memory for stage-2", fn);
			break;
		}
		file = slot->file;
		index = slot_index(slot, gfn);
		brlock_read_lock(&file->invalidate_lock);
		ret = file_get_pfn(file, index, gfn, private, &pfn, &level, &seq);
		if (ret) {
			brlock_read_unlock(&file->invalidate_lock);
			if (ret < 0)
				ret = gmem_err(-ret, "%s: the arch refused gpa %#llx", fn,
					       (unsigned long long)(gfn << PAGE_SHIFT));
			else
				memory_fault_exit(exit, gfn, private);
			break;
		}
		/* A huge entry must fit the slot with gfn and file page aligned alike. */
		span = 1ULL << (level * S2_BITS);
		if (level && ((gfn ^ index) & (span - 1) ||
			      (gfn & ~(span - 1)) < slot->base_gfn ||
			      (gfn | (span - 1)) >= slot->base_gfn + slot->npages)) {
			level = 0;
			span = 1;
		}

		brlock_read_lock(&vm->mmu_lock);
		if (vm_invalidate_retry_range(vm, seq, gfn & ~(span - 1),
					      (gfn & ~(span - 1)) + span)) {
			brlock_read_unlock(&vm->mmu_lock);
			brlock_read_unlock(&file->invalidate_lock);
			continue;
		}
		ret = s2_map(&vm->s2, gfn, pfn, private, level, &stored, &cache);
		if (ret >= 0 && stored) {	/* a new entry, of level ret */
			span = 1ULL << (ret * S2_BITS);
			if (view_open(slot, gfn & ~(span - 1), span, private))
				atomic_store_explicit(&vm->views_behind, true,
						      memory_order_relaxed);
		}
		brlock_read_unlock(&vm->mmu_lock);
		brlock_read_unlock(&file->invalidate_lock);
		if (ret == -EAGAIN) {
			missing = S2_LEVELS - 1;
			continue;
		}
		if (ret == -ENOMEM)
			ret = gmem_err(ENOMEM, "%s: out of memory for stage-2", fn);
		else if (ret < 0)
			ret = gmem_err(EIO, "%s: stage-2 at gpa %#llx holds another frame", fn,
				       (unsigned long long)(gfn << PAGE_SHIFT));
		else if (pfnp)
			*pfnp = pfn;
		if (ret > 0)
			ret = 0;
		break;
	}
	s2_cache_release(&vm->s2, &cache);
	return ret;
}

GMEM_API int gmem_vm_fault(int vmh, uint64_t gpa, unsigned int flags,
			   uint64_t *pfn, struct gmem_exit *exit)
{
	KEEP_ERRNO();
	struct gmem_vm *vm;
	int ret;

	ret = vm_enter(vmh, "gmem_vm_fault", &vm);	/* a fork child: -EIO first */
	if (ret)
		return ret;
	if (flags & ~(GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE)) {
		vm_exit(vm);
		return gmem_err(EINVAL, "gmem_vm_fault: unknown flags %#x", flags);
	}
	ret = fault(vm, "gmem_vm_fault", gpa >> PAGE_SHIFT, flags & GMEM_FAULT_PRIVATE, pfn, exit);
	vm_exit_checked(vm, "gmem_vm_fault");
	return ret;
}

/*
 * Copy through stage-2 while holding mmu_lock shared, as a vCPU accesses
 * memory only between TLB flushes: an invalidation cannot complete while a
 * copy through the entry it zaps is under way.
 */
static bool copy_through_stage2(struct gmem_vm *vm, uint64_t gfn, bool private,
				uint8_t *buf, size_t off, size_t n, bool write)
{
	struct s2_entry e;
	bool mapped;

	brlock_read_lock(&vm->mmu_lock);
	mapped = s2_lookup(&vm->s2, gfn, &e) && e.private == private;
	if (mapped) {
		uint8_t *va = pool_va(vm->pool, e.pfn) + off;

		/*
		 * The guest's own access: a private frame is its to read and
		 * write. Other vCPUs may copy through it at the same time, so the
		 * copy passes ASan's poison rather than lifting it (poison.h).
		 */
		if (private)
			frame_copy_unchecked(write ? va : buf, write ? buf : va, n);
		else if (write)
			memcpy(va, buf, n);
		else
			memcpy(buf, va, n);
	}
	brlock_read_unlock(&vm->mmu_lock);
	return mapped;
}

GMEM_API int gmem_vm_access(int vmh, uint64_t gpa, void *buf, size_t len,
			    unsigned int flags, struct gmem_exit *exit)
{
	KEEP_ERRNO();
	bool private = flags & GMEM_FAULT_PRIVATE;
	bool write = flags & GMEM_FAULT_WRITE;
	struct gmem_vm *vm;
	uint8_t *p = buf;
	int ret;

	ret = vm_enter(vmh, "gmem_vm_access", &vm);	/* a fork child: -EIO first */
	if (ret)
		return ret;
	if (flags & ~(GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE))
		ret = gmem_err(EINVAL, "gmem_vm_access: unknown flags %#x", flags);
	else if (!buf && len)
		ret = gmem_err(EINVAL, "gmem_vm_access: no buffer");
	else if (gpa + len < gpa)
		ret = gmem_err(EFAULT, "gmem_vm_access: range wraps");
	if (ret) {
		vm_exit(vm);
		return ret;
	}
	while (len) {
		uint64_t gfn = gpa >> PAGE_SHIFT;
		size_t off = gpa & (PAGE_SIZE - 1);
		size_t n = MIN(len, PAGE_SIZE - off);

		if (!copy_through_stage2(vm, gfn, private, p, off, n, write)) {
			ret = fault(vm, "gmem_vm_access", gfn, private, NULL, exit);
			if (ret)
				break;
			continue;
		}
		p += n;
		gpa += n;
		len -= n;
	}
	vm_exit_checked(vm, "gmem_vm_access");
	return ret;
}
