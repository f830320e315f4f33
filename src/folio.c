// SPDX-License-Identifier: MIT
/*
 * The page cache of a file: which pages have a folio. Page i of a file is
 * always frame base_pfn + i (pool.c), so the cache is one bit per page.
 *
 * A folio comes into being zeroed without any copy: free frames are holes
 * in the pool memfd. It leaves through folio_free_range(), which runs the
 * arch's reclaim hook and then discards the frames, which is what makes the
 * next first use read zeroes again.
 */
#include <unistd.h>

#include "common.h"
#include "arch.h"
#include "check.h"
#include "file.h"
#include "lock.h"
#include "pin.h"
#include "pool.h"
#include "poison.h"
#include "vm.h"

bool folio_present(struct gmem_file *file, uint64_t index)
{
	return bitmap_test(file->present, index);
}

/*
 * @delta pages from @index (inside one huge block) entered the page cache,
 * or left it: the block's and the pool's counts follow the bits.
 */
void folio_account(struct gmem_file *file, uint64_t index, int64_t delta)
{
	huge_count(file, index, delta);
	atomic_fetch_add_explicit(&file->vm->pool->frames_in_use, (uint64_t)delta,
				  memory_order_relaxed);
}

/*
 * The host touched some page of [start, end) through a mapping: the pool
 * memfd has memory there that the file has not recorded yet.
 */
static bool host_touched(struct gmem_file *file, uint64_t start, uint64_t end)
{
	off_t pos = (off_t)file_pfn(file, start) << PAGE_SHIFT;
	off_t data;

	if (!(file->flags & GMEM_FLAG_MMAP) ||
	    !atomic_load_explicit(&file->mappings_ever, memory_order_acquire))
		return false;
	data = lseek(file->vm->pool->memfd, pos, SEEK_DATA);
	return data >= 0 && data < (off_t)file_pfn(file, end) << PAGE_SHIFT;
}

/*
 * Returns true if this call created the folio. Safe against racing faults.
 * In a huge file the first allocation in an absent block creates the whole
 * huge folio (huge.c) and allocates its memory (of a 1 GiB folio, the 2 MiB
 * around @index); a hole punched in a split
 * block gets a 4 KiB folio, whose memory comes at its first use.
 * The attributes must hold still: the invalidate lock is held.
 */
bool folio_alloc(struct gmem_file *file, uint64_t index)
{
	uint64_t lo;

	lock_assert_held(&file->invalidate_lock);
	/*
	 * The block byte before the page's bit: a racing allocator sets the
	 * whole block's bits before it stores the byte, so a page can be
	 * present in a block still ABSENT. Returning then would let the
	 * caller see no whole folio and map the page alone, and that 4 KiB
	 * entry keeps the huge one out until a zap. Instead this call finishes
	 * the allocation too (its bits are set, it stores the same byte), so
	 * the block is WHOLE or SPLIT when it returns.
	 */
	if (file->order && huge_block_state(file, index) == BLOCK_ABSENT) {
		uint64_t nr = MIN(file_folio_pages(file), POOL_HUGE_FRAMES);

		/*
		 * The memory of the host huge page holding @index: all of a
		 * 2 MiB folio, as the kernel allocates a huge folio; one of the
		 * 512 of a 1 GiB folio, whose others come at their first touch
		 * or with gmem_fallocate (zeroing a whole GiB in a fault is
		 * what gmem leaves out). Where the host has not the memory, the
		 * first touch tries again. Where the host touched the block
		 * through a mapping, its fault made the folio already (the
		 * file records it only now): nothing is allocated, as for a
		 * block that folio_sync_host_touched() records, so the block
		 * comes out the same whichever of the two sees it first.
		 */
		uint64_t first = index & ~(nr - 1);

		if (!host_touched(file, first, first + nr))
			pool_allocate(file->vm->pool, file_pfn(file, first), nr, true);
		if (!huge_alloc_block(file, index))
			return false;
		lo = index & ~(file_folio_pages(file) - 1);
		poison_new_folio(file, lo, lo + file_folio_pages(file));
		return true;
	}
	if (folio_present(file, index))
		return false;
	if (bitmap_test_and_set(file->present, index))
		return false;
	folio_account(file, index, 1);
	poison_new_folio(file, index, index + 1);
	return true;
}

/* Fill every hole of [start, end) with a folio. */
void folio_alloc_range(struct gmem_file *file, uint64_t start, uint64_t end)
{
	for (uint64_t i = folio_next_hole(file, start, end); i < end;
	     i = folio_next_hole(file, i + 1, end))
		folio_alloc(file, i);
}

uint64_t folio_next_present(struct gmem_file *file, uint64_t index,
			    uint64_t end)
{
	return bitmap_find(file->present, index, end, true);
}

uint64_t folio_next_hole(struct gmem_file *file, uint64_t index, uint64_t end)
{
	return bitmap_find(file->present, index, end, false);
}

/*
 * End of the run of present pages from @index that the arch hooks see in one
 * call: one folio clipped to [index, end). Neighbouring 4 KiB folios of a
 * file are neighbouring frames and make one run, but a run never leaves its
 * huge block, so a huge folio is always seen on its own.
 */
uint64_t folio_run_end(struct gmem_file *file, uint64_t index, uint64_t end)
{
	uint64_t run_end = folio_next_hole(file, index, end);
	uint64_t block_end = (index | (file_folio_pages(file) - 1)) + 1;

	return file->order ? MIN(run_end, block_end) : run_end;
}

/*
 * Call @fn on each run of present pages in [start, end), as frames: the
 * kernel's walk of the folios of a range, each clipped to it (folio_run_end).
 */
void folio_for_each_run(struct gmem_file *file, uint64_t start, uint64_t end,
			void (*fn)(uint64_t pfn, uint64_t nr, void *arg),
			void *arg)
{
	uint64_t i = start;

	while ((i = folio_next_present(file, i, end)) < end) {
		uint64_t run_end = folio_run_end(file, i, end);

		fn(file_pfn(file, i), run_end - i, arg);
		i = run_end;
	}
}

/* arch.h: the same walk over a slot's guest frames, for a backend. */
void slot_for_each_folio_run(const struct memslot *slot, uint64_t gfn_start,
			     uint64_t gfn_end,
			     void (*fn)(uint64_t pfn, uint64_t nr, void *arg),
			     void *arg)
{
	folio_for_each_run(slot->file, slot_index(slot, gfn_start),
			   slot_index(slot, gfn_end), fn, arg);
}

/* Free one run of present, unpinned folios: reclaim, then back to the pool. */
static void free_run(struct gmem_file *file, uint64_t start, uint64_t end)
{
	struct gmem_vm *vm = file->vm;
	uint64_t pfn = file_pfn(file, start), nr = end - start;

	frames_unpoison(vm->pool, pfn, nr);
	arch_reclaim(vm, pfn, nr);
	check_reclaimed(file, pfn, nr);
	pool_discard(vm->pool, pfn, nr);
	bitmap_assign(file->present, start, end, false);
	folio_account(file, start, -(int64_t)nr);	/* a run never leaves its block */
}

/* One folio run: free it but for its pinned pages. */
static void free_unpinned(uint64_t pfn, uint64_t nr, void *arg)
{
	struct gmem_file *file = arg;
	uint64_t i = pfn - file->base_pfn, run_end = i + nr, pinned;

	while (i < run_end) {
		uint64_t stop = run_end;

		if (pin_first_in_range(file, i, run_end, &pinned))
			stop = pinned;
		if (stop > i)
			free_run(file, i, stop);
		i = stop;
		while (i < run_end && pin_count(file, i))
			i++;
	}
}

/*
 * Free the folios of [start, end), once the range is invalidated. Pinned
 * pages stay: their frames cannot go back to the pool while someone holds
 * them (docs/design.md). A huge folio that loses only part of its pages is
 * split first.
 */
void folio_free_range(struct gmem_file *file, uint64_t start, uint64_t end)
{
	lock_assert_held_exclusive(&file->invalidate_lock);
	huge_before_free(file, start, end);
	folio_for_each_run(file, start, end, free_unpinned, file);
	huge_after_free(file, start, end);
}

/*
 * A host mapping's first touch of a hole allocates in the pool memfd without
 * telling the file (the kernel's own shmem fault does it, at full speed).
 * Before freeing, record those pages as folios so they are reclaimed and
 * accounted like any other. SEEK_DATA walks only what exists.
 */
void folio_sync_host_touched(struct gmem_file *file, uint64_t start,
			     uint64_t end)
{
	int fd = file->vm->pool->memfd;
	off_t pos = (off_t)file_pfn(file, start) << PAGE_SHIFT;
	off_t limit = (off_t)file_pfn(file, end) << PAGE_SHIFT;

	if (!(file->flags & GMEM_FLAG_MMAP) || !atomic_load_explicit(&file->mappings_ever, memory_order_acquire))
		return;
	while (pos < limit) {
		off_t data = lseek(fd, pos, SEEK_DATA), hole;

		if (data < 0 || data >= limit)
			break;
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0 || hole > limit)
			hole = limit;
		folio_alloc_range(file, (uint64_t)(data >> PAGE_SHIFT) - file->base_pfn,
				  (uint64_t)((hole + PAGE_SIZE - 1) >> PAGE_SHIFT) -
				  file->base_pfn);
		pos = hole;
	}
}
