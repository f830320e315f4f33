// SPDX-License-Identifier: MIT
/*
 * The invalidation protocol, as KVM's mmu_invalidate_*: an invalidation
 * marks its guest range in progress and zaps stage-2 there (start), then
 * bumps the sequence and clears the mark (end). A fault snapshots the
 * sequence before it reads attributes, and installs its mapping only if no
 * invalidation covering its gfn is in progress and none ended since the
 * snapshot. So a fault may read a stale attribute, but never maps one.
 */
#include "common.h"
#include "arch.h"
#include "file.h"
#include "lock.h"
#include "vm.h"

#define INVALID_GFN UINT64_MAX

/* Under mmu_lock exclusive, here and in the two below. */
void vm_invalidate_start(struct gmem_vm *vm)
{
	lock_assert_held_exclusive(&vm->mmu_lock);
	if (++vm->mmu_invalidate_in_progress == 1) {
		vm->mmu_invalidate_range_start = INVALID_GFN;
		vm->mmu_invalidate_range_end = INVALID_GFN;
	}
}

/* Ranges of concurrent invalidations accumulate until all have ended. */
void vm_invalidate_range_add(struct gmem_vm *vm, uint64_t start, uint64_t end)
{
	lock_assert_held_exclusive(&vm->mmu_lock);
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
	lock_assert_held_exclusive(&vm->mmu_lock);
	/* The new sequence is visible before the range stops being in progress. */
	atomic_fetch_add_explicit(&vm->mmu_invalidate_seq, 1,
				  memory_order_release);
	vm->mmu_invalidate_in_progress--;
}

/*
 * Under mmu_lock shared: should a fault that saw @seq and is about to map
 * [start, end) (one page, or a huge entry) retry?
 */
bool vm_invalidate_retry_range(struct gmem_vm *vm, uint64_t seq,
			       uint64_t start, uint64_t end)
{
	lock_assert_held_shared(&vm->mmu_lock);
	if (vm->mmu_invalidate_in_progress) {
		/* In progress with no range yet: cannot tell, so retry. */
		if (vm->mmu_invalidate_range_start == INVALID_GFN)
			return true;
		if (start < vm->mmu_invalidate_range_end &&
		    end > vm->mmu_invalidate_range_start)
			return true;
	}
	return atomic_load_explicit(&vm->mmu_invalidate_seq,
				    memory_order_acquire) != seq;
}

/* Guest frames of file pages [lo, hi) clipped to slot @s; false if none. */
static bool slot_gfns(const struct memslot *s, uint64_t lo, uint64_t hi,
		      uint64_t *gfn_lo, uint64_t *gfn_hi)
{
	lo = MAX(lo, s->pgoff);
	hi = MIN(hi, s->pgoff + s->npages);
	if (lo >= hi)
		return false;
	*gfn_lo = s->base_gfn + (lo - s->pgoff);
	*gfn_hi = s->base_gfn + (hi - s->pgoff);
	return true;
}

/*
 * Zap the stage-2 entries of [lo, hi) in slot @s that match @filter, and
 * close the stage-2 views over what went: a huge entry straddling either end
 * goes whole, so the in-progress range and the views cover all of it.
 */
static void zap(struct gmem_vm *vm, struct memslot *s, uint64_t lo,
		uint64_t hi, unsigned int filter)
{
	struct s2_entry e;

	if (s2_lookup(&vm->s2, lo, &e) && e.level)
		lo &= ~((1ULL << (e.level * S2_BITS)) - 1);
	if (s2_lookup(&vm->s2, hi - 1, &e) && e.level)
		hi = ((hi - 1) | ((1ULL << (e.level * S2_BITS)) - 1)) + 1;
	vm_invalidate_range_add(vm, lo, hi);
	s2_zap(&vm->s2, lo, hi, filter);
	view_close(s, MAX(lo, s->base_gfn), MIN(hi, s->base_gfn + s->npages),
		   filter);
}

/*
 * Start invalidating file pages [start, end) in the VM that binds them:
 * zap matching stage-2 entries of every overlapping slot and let the arch
 * drop its own mappings. Under the file's invalidate_lock exclusive, which
 * keeps the bindings stable until file_invalidate_end(). Returns whether
 * anything was bound there (and so whether an end is owed).
 *
 * The wide variant zaps every stage-2 entry of [zap_start, zap_end) instead
 * (a superset of the range), whatever its attribute: huge folios about to
 * merge lose their small entries so a huge one can replace them. The arch
 * still sees only [start, end): the rest changes no attribute.
 */
bool file_invalidate_start_wide(struct gmem_file *file, uint64_t start,
				uint64_t end, unsigned int zap_filter,
				uint64_t zap_start, uint64_t zap_end)
{
	struct gmem_vm *vm = file->vm;
	bool started = false;

	lock_assert_held_exclusive(&file->invalidate_lock);
	/*
	 * An invalidation that reaches private pages may change what the arch
	 * holds of [start, end) (make_shared, invalidate_range, reclaim): a
	 * fault mapping a huge folio of it hands those pages over again. One
	 * to private changes nothing the arch holds of them (the pages it
	 * converts were handed over when they went shared), nor does the
	 * wider zap of a split or merge.
	 */
	if (zap_filter & S2_ZAP_PRIVATE)
		huge_unprepare(file, start, end);
	/* Bindings are file-offset ordered and disjoint: visit only those in range. */
	for (unsigned int i = file_binding_search(file, zap_start);
	     i < file->nbindings && file->bindings[i]->pgoff < zap_end; i++) {
		struct memslot *s = file->bindings[i];
		uint64_t gfn_lo, gfn_hi, wide_lo, wide_hi;

		if (!slot_gfns(s, zap_start, zap_end, &wide_lo, &wide_hi))
			continue;
		if (!started) {
			brlock_write_lock(&vm->mmu_lock);
			vm_invalidate_start(vm);
			started = true;
		}
		vm_invalidate_range_add(vm, wide_lo, wide_hi);
		/* An empty [start, end): a merge alone, nothing for the arch. */
		if (!slot_gfns(s, start, end, &gfn_lo, &gfn_hi)) {
			zap(vm, s, wide_lo, wide_hi, S2_ZAP_ALL);
			continue;
		}
		/* One zap over the whole blocks, so their tables can go. */
		if (wide_lo < gfn_lo || gfn_hi < wide_hi)
			zap(vm, s, wide_lo, wide_hi, S2_ZAP_ALL);
		else
			zap(vm, s, gfn_lo, gfn_hi, zap_filter);
		arch_invalidate_range(vm, s, gfn_lo, gfn_hi, zap_filter);
	}
	if (started)
		brlock_write_unlock(&vm->mmu_lock);
	return started;
}

bool file_invalidate_start(struct gmem_file *file, uint64_t start,
			   uint64_t end, unsigned int zap_filter)
{
	return file_invalidate_start_wide(file, start, end, zap_filter,
					  start, end);
}

void file_invalidate_end(struct gmem_file *file, bool started)
{
	struct gmem_vm *vm = file->vm;

	lock_assert_held_exclusive(&file->invalidate_lock);
	if (!started)
		return;
	brlock_write_lock(&vm->mmu_lock);
	vm_invalidate_end(vm);
	brlock_write_unlock(&vm->mmu_lock);
}
