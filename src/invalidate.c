// SPDX-License-Identifier: MIT
/*
 * The invalidation protocol, as KVM's mmu_invalidate_*: an invalidation
 * marks its guest range in progress and zaps stage-2 there (start), then
 * bumps the sequence and clears the mark (end). A fault snapshots the
 * sequence before it reads attributes, and installs its mapping only if no
 * invalidation covering its gfn is in progress and none ended since the
 * snapshot. So a fault may read a stale attribute, but never maps one.
 */
#include "internal.h"

#define INVALID_GFN UINT64_MAX

/* Caller holds mmu_lock exclusive, here and in the two below. */
void vm_invalidate_start(struct gmem_vm *vm)
{
	if (++vm->mmu_invalidate_in_progress == 1) {
		vm->mmu_invalidate_range_start = INVALID_GFN;
		vm->mmu_invalidate_range_end = INVALID_GFN;
	}
}

/* Ranges of concurrent invalidations accumulate until all have ended. */
void vm_invalidate_range_add(struct gmem_vm *vm, uint64_t start, uint64_t end)
{
	if (vm->mmu_invalidate_range_start == INVALID_GFN) {
		vm->mmu_invalidate_range_start = start;
		vm->mmu_invalidate_range_end = end;
	} else {
		vm->mmu_invalidate_range_start = MIN(vm->mmu_invalidate_range_start, start);
		vm->mmu_invalidate_range_end = MAX(vm->mmu_invalidate_range_end, end);
	}
}

void vm_invalidate_end(struct gmem_vm *vm)
{
	/* The new sequence is visible before the range stops being in progress. */
	atomic_fetch_add_explicit(&vm->mmu_invalidate_seq, 1,
				  memory_order_release);
	vm->mmu_invalidate_in_progress--;
}

/* Caller holds mmu_lock shared. Should a fault that saw @seq retry? */
bool vm_invalidate_retry_gfn(struct gmem_vm *vm, uint64_t seq, uint64_t gfn)
{
	if (vm->mmu_invalidate_in_progress) {
		/* In progress with no range yet: cannot tell, so retry. */
		if (vm->mmu_invalidate_range_start == INVALID_GFN)
			return true;
		if (gfn >= vm->mmu_invalidate_range_start &&
		    gfn < vm->mmu_invalidate_range_end)
			return true;
	}
	return atomic_load_explicit(&vm->mmu_invalidate_seq,
				    memory_order_acquire) != seq;
}

/*
 * Start invalidating file pages [start, end) in the VM that binds them:
 * zap matching stage-2 entries of every overlapping slot and let the arch
 * drop its own mappings. Caller holds the file's invalidate_lock exclusive,
 * which keeps the bindings stable until file_invalidate_end(). Returns
 * whether anything was bound there (and so whether an end is owed).
 */
bool file_invalidate_start(struct gmem_file *file, uint64_t start,
			   uint64_t end, unsigned int zap_filter)
{
	struct gmem_vm *vm = file->vm;
	bool started = false;

	for (unsigned int i = 0; i < file->nbindings; i++) {
		struct memslot *s = file->bindings[i];
		uint64_t lo = MAX(start, s->pgoff);
		uint64_t hi = MIN(end, s->pgoff + s->npages);
		uint64_t gfn_lo, gfn_hi;

		if (lo >= hi)
			continue;
		if (!started) {
			brlock_write_lock(&vm->mmu_lock);
			vm_invalidate_start(vm);
			started = true;
		}
		gfn_lo = s->base_gfn + (lo - s->pgoff);
		gfn_hi = s->base_gfn + (hi - s->pgoff);
		vm_invalidate_range_add(vm, gfn_lo, gfn_hi);
		s2_zap(&vm->s2, gfn_lo, gfn_hi, zap_filter);
		view_close(s, gfn_lo, gfn_hi, zap_filter);
		arch_invalidate_range(vm, s, gfn_lo, gfn_hi, zap_filter);
	}
	if (started)
		brlock_write_unlock(&vm->mmu_lock);
	return started;
}

void file_invalidate_end(struct gmem_file *file, bool started)
{
	struct gmem_vm *vm = file->vm;

	if (!started)
		return;
	brlock_write_lock(&vm->mmu_lock);
	vm_invalidate_end(vm);
	brlock_write_unlock(&vm->mmu_lock);
}
