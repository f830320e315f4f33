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

#include "internal.h"

#define BITS 64

static atomic_uint_least64_t *word(struct gmem_file *file, uint64_t index)
{
	return &file->present[index / BITS];
}

static uint64_t bit(uint64_t index)
{
	return 1ULL << (index % BITS);
}

bool folio_present(struct gmem_file *file, uint64_t index)
{
	return atomic_load_explicit(word(file, index), memory_order_relaxed) &
	       bit(index);
}

/*
 * Returns true if this call created the folio. Safe against racing faults.
 * In a huge file the first allocation in an absent block creates the whole
 * huge folio (huge.c); a hole punched in a split block gets a 4 KiB folio.
 */
bool folio_alloc(struct gmem_file *file, uint64_t index)
{
	uint64_t old;

	if (folio_present(file, index))
		return false;
	if (file->order && huge_block_state(file, index) == BLOCK_ABSENT)
		return huge_alloc_block(file, index);
	old = atomic_fetch_or(word(file, index), bit(index));
	if (old & bit(index))
		return false;
	huge_count(file, index, 1);
	atomic_fetch_add_explicit(&file->nr_present, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&file->vm->pool->frames_in_use, 1,
				  memory_order_relaxed);
	return true;
}

/* First index in [index, end) whose bit equals @want, or @end. */
static uint64_t find_bit(struct gmem_file *file, uint64_t index, uint64_t end,
			 bool want)
{
	while (index < end) {
		uint64_t w = atomic_load_explicit(word(file, index),
						  memory_order_relaxed);

		if (!want)
			w = ~w;
		w &= ~(bit(index) - 1);		/* ignore bits below index */
		if (w) {
			uint64_t found = index - index % BITS + __builtin_ctzll(w);

			return MIN(found, end);
		}
		index = index - index % BITS + BITS;
	}
	return end;
}

uint64_t folio_next_present(struct gmem_file *file, uint64_t index,
			    uint64_t end)
{
	return find_bit(file, index, end, true);
}

uint64_t folio_next_hole(struct gmem_file *file, uint64_t index, uint64_t end)
{
	return find_bit(file, index, end, false);
}

/* Free one run of present, unpinned folios: reclaim, then back to the pool. */
static void free_run(struct gmem_file *file, uint64_t start, uint64_t end)
{
	struct gmem_vm *vm = file->vm;
	struct gmem_pool *pool = vm->pool;
	uint64_t pfn = file_pfn(file, start), nr = end - start;

	arch_reclaim(vm, pfn, nr);
	check_reclaimed(file, pfn, nr);
	pool_discard(pool, pfn, nr);
	bitmap_assign(file->present, start, end, false);
	huge_count(file, start, -(int64_t)nr);	/* a run never leaves its block */
	atomic_fetch_sub(&file->nr_present, nr);
	atomic_fetch_sub(&pool->frames_in_use, nr);
}

/*
 * Free the folios of [start, end). Pinned pages stay: their frames cannot go
 * back to the pool while someone holds them (docs/design.md). A huge folio that
 * loses only part of its pages is split first. Caller holds the invalidate
 * lock exclusive and has invalidated the range.
 */
void folio_free_range(struct gmem_file *file, uint64_t start, uint64_t end)
{
	uint64_t i = start;

	huge_before_free(file, start, end);
	while ((i = folio_next_present(file, i, end)) < end) {
		uint64_t run_end = folio_run_end(file, i, end), pinned;

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
		for (off_t p = data; p < hole; p += PAGE_SIZE)
			folio_alloc(file, (uint64_t)(p >> PAGE_SHIFT) - file->base_pfn);
		pos = hole;
	}
}
