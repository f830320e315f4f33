// SPDX-License-Identifier: MIT
/*
 * Huge folios. A file created with GMEM_FLAG_HUGE_2M or GMEM_FLAG_HUGE_1G
 * has folios of order 9 or 18. Page i of a file is always frame base_pfn + i
 * and the file's window is aligned to the folio size (file.c), so a huge
 * folio needs one state byte per huge block. Splitting and merging change
 * that byte and never move or copy a byte of data. Its memory is host huge
 * pages where the pool has them (pool.c).
 *
 *   ABSENT  no page of the block is in the page cache. The first fault (or
 *           allocation, pin, populate, host touch) allocates the whole huge
 *           folio and its memory (folio.c), zeroed.
 *   WHOLE   one huge folio: every page present, the attributes uniform over
 *           the block. Faults may map it with one huge stage-2 entry.
 *   SPLIT   4 KiB folios. The attributes differ inside the block, or some
 *           pages were punched out.
 *
 * Conversion splits a WHOLE block whose range stops being uniform, and
 * merges a SPLIT block back once its range is uniform, every page of it is
 * present and none is pinned. A split never fails: no frame moves, and a
 * pinned page stays pinned as a 4 KiB folio. A merge is an optimisation, so
 * a pin does not fail the conversion: the block stays split (only a pinned
 * page inside a to-private range refuses it, convert.c, as in the kernel).
 * A SPLIT block with holes stays split even when uniform: merging
 * would have to allocate the holes a punch asked to be gone. Faults refill
 * holes one 4 KiB folio at a time, and the block merges at the next
 * conversion that touches it and leaves it uniform.
 *
 * Punching part of a WHOLE block splits it first, then frees 4 KiB pieces;
 * a punch cannot fail, so pins do not stop this split (pinned pages stay,
 * as in any file). A block whose last page is freed is ABSENT again.
 *
 * Block bytes change under the file's invalidate lock exclusive, except
 * ABSENT -> WHOLE/SPLIT on allocation, which faults make under the lock
 * shared with compare-and-swap.
 *
 * Each block also keeps the range of its pages the arch must take over
 * again (make_private) before the folio maps whole: all of it while the
 * block is absent; every invalidation that reaches private pages adds the
 * pages it hands the arch (a conversion to shared, a punch, and unbind,
 * after which they map at other gfns: invalidate.c); the fault that maps
 * the folio whole hands over that range alone and empties it. A split and
 * a merge change no arch state, so a 4 KiB page that goes shared and back
 * costs the next fault one page, not the folio. The range is the hull of
 * what changed: extended only under the lock exclusive and emptied by
 * faults under it shared, so an emptying fault never loses an extension.
 */
#include <stdlib.h>

#include "common.h"
#include "attr.h"
#include "file.h"
#include "inject.h"
#include "lock.h"
#include "pin.h"

#define ORDER_2M	9
#define ORDER_1G	18

int huge_order_of_flags(uint64_t flags)
{
	uint64_t huge = flags & (GMEM_FLAG_HUGE_2M | GMEM_FLAG_HUGE_1G);

	if (huge == GMEM_FLAG_HUGE_2M)
		return ORDER_2M;
	if (huge == GMEM_FLAG_HUGE_1G)
		return ORDER_1G;
	return huge ? -EINVAL : 0;
}

/* [lo, hi) in one word: lo in the low half; empty as 0. */
static uint64_t range_word(uint64_t lo, uint64_t hi)
{
	return lo < hi ? lo | hi << 32 : 0;
}

int huge_init(struct gmem_file *file)
{
	file->nblocks = file->order ? file->npages >> file->order : 0;
	file->blocks = NULL;
	if (!file->order)
		return 0;
	file->blocks = try_calloc(file->nblocks, sizeof(*file->blocks));
	file->block_pages = try_calloc(file->nblocks, sizeof(*file->block_pages));
	file->unprepared = try_calloc(file->nblocks, sizeof(*file->unprepared));
	if (!file->blocks || !file->block_pages || !file->unprepared)
		return -ENOMEM;
	for (uint64_t b = 0; b < file->nblocks; b++)
		file->unprepared[b] = range_word(0, file_folio_pages(file));
	return 0;
}

void huge_destroy(struct gmem_file *file)
{
	free(file->blocks);
	free(file->block_pages);
	free(file->unprepared);
	file->blocks = NULL;
	file->block_pages = NULL;
	file->unprepared = NULL;
}

/* @delta pages of the block at @index entered (or left) the page cache (folio_account). */
void huge_count(struct gmem_file *file, uint64_t index, int64_t delta)
{
	if (file->order)
		atomic_fetch_add_explicit(&file->block_pages[index >> file->order],
					  (uint32_t)delta, memory_order_relaxed);
}

static _Atomic uint8_t *block(struct gmem_file *file, uint64_t index)
{
	return &file->blocks[index >> file->order];
}

static uint64_t block_start(struct gmem_file *file, uint64_t index)
{
	return index & ~(file_folio_pages(file) - 1);
}

int huge_block_state(struct gmem_file *file, uint64_t index)
{
	if (!file->order)
		return folio_present(file, index) ? BLOCK_SPLIT : BLOCK_ABSENT;
	return atomic_load_explicit(block(file, index), memory_order_acquire) &
	       BLOCK_STATE;
}

static void set_state(struct gmem_file *file, uint64_t index, int state)
{
	atomic_store_explicit(block(file, index), (uint8_t)state,
			      memory_order_release);
}

/* Pages of the block at @index present in the page cache. */
static uint64_t block_present(struct gmem_file *file, uint64_t index)
{
	return atomic_load_explicit(&file->block_pages[index >> file->order],
				    memory_order_relaxed);
}

static bool block_uniform(struct gmem_file *file, uint64_t index)
{
	uint64_t lo = block_start(file, index);

	return attr_range_is(&file->attrs, lo, lo + file_folio_pages(file),
			     attr_lookup(&file->attrs, lo, NULL, NULL));
}

/*
 * Allocate the whole huge folio of an ABSENT block; racing allocators agree
 * through the page-cache bits (each counts only the bits it set) and the
 * block byte (the first to store it wins; all store the same value). The
 * invalidate lock is held, so the attributes are stable. Returns true if
 * this call allocated pages.
 */
bool huge_alloc_block(struct gmem_file *file, uint64_t index)
{
	uint64_t lo = block_start(file, index), added;
	uint8_t expected = BLOCK_ABSENT;
	int state;

	lock_assert_held(&file->invalidate_lock);
	added = bitmap_set_range(file->present, lo, lo + file_folio_pages(file));
	if (added)
		folio_account(file, index, (int64_t)added);
	state = block_uniform(file, index) ? BLOCK_WHOLE : BLOCK_SPLIT;
	atomic_compare_exchange_strong(block(file, index), &expected,
				       (uint8_t)state);
	return added;
}

/*
 * The pages of the block at @index that the fault mapping its folio whole
 * must hand make_private first: [*first, *first + *nr), file indices.
 * Returns false when there are none.
 */
bool huge_unprepared(struct gmem_file *file, uint64_t index, uint64_t *first,
		     uint64_t *nr)
{
	uint64_t w = atomic_load_explicit(&file->unprepared[index >> file->order],
					  memory_order_acquire);
	uint64_t lo = w & UINT32_MAX, hi = w >> 32;

	*first = block_start(file, index) + lo;
	*nr = hi - lo;
	return w != 0;
}

/* The arch took those pages over: the folio maps whole with no more ado. */
void huge_set_prepared(struct gmem_file *file, uint64_t index)
{
	atomic_store_explicit(&file->unprepared[index >> file->order], 0,
			      memory_order_release);
}

/*
 * The arch may change its state of [start, end) (an invalidation hands it
 * the range): the next fault that maps a block of it whole hands those
 * pages over again. Under the invalidate lock exclusive.
 */
void huge_unprepare(struct gmem_file *file, uint64_t start, uint64_t end)
{
	uint64_t pages = file_folio_pages(file);

	if (!file->order || start >= end)
		return;
	lock_assert_held_exclusive(&file->invalidate_lock);
	for (uint64_t lo = block_start(file, start); lo < end; lo += pages) {
		atomic_uint_least64_t *u = &file->unprepared[lo >> file->order];
		uint64_t w = atomic_load_explicit(u, memory_order_relaxed);
		uint64_t from = MAX(start, lo) - lo, to = MIN(end, lo + pages) - lo;

		if (w) {
			from = MIN(from, w & UINT32_MAX);
			to = MAX(to, w >> 32);
		}
		atomic_store_explicit(u, range_word(from, to),
				      memory_order_relaxed);
	}
}

/* Will [start, end) set to @attrs leave the block at @lo uniform? */
static bool uniform_after(struct gmem_file *file, uint64_t lo, uint64_t start,
			  uint64_t end, uint64_t attrs)
{
	uint64_t hi = lo + file_folio_pages(file);

	if (lo < start && !attr_range_is(&file->attrs, lo, MIN(start, hi), attrs))
		return false;
	if (hi > end && !attr_range_is(&file->attrs, MAX(end, lo), hi, attrs))
		return false;
	return true;
}

/*
 * Will the block at @lo merge once [start, end) is set to @attrs? Every page
 * present, the range uniform, and no extra reference anywhere in it: a
 * pinned page keeps its block split (merging is an optimisation, and a pin
 * must not fail a conversion the kernel would make).
 */
static bool merges_after(struct gmem_file *file, uint64_t lo, uint64_t start,
			 uint64_t end, uint64_t attrs)
{
	uint64_t pages = file_folio_pages(file), pinned;

	return block_present(file, lo) == pages &&
	       uniform_after(file, lo, start, end, attrs) &&
	       !pin_first_in_range(file, lo, lo + pages, &pinned);
}

/*
 * Before the point of no return of a conversion of [start, end) to @attrs:
 * widen [*zap_start, *zap_end) to every block that will split or merge.
 * A split never fails (the frames stay where they are; a pinned page stays
 * pinned, as a 4 KiB folio), and a merge a pin stands in the way of does
 * not happen, so nothing here refuses the conversion. Returns whether any
 * block splits or merges.
 */
bool huge_convert_prepare(struct gmem_file *file, uint64_t start, uint64_t end,
			  uint64_t attrs, uint64_t *zap_start, uint64_t *zap_end)
{
	uint64_t pages = file_folio_pages(file);
	bool changes = false;

	*zap_start = start;
	*zap_end = end;
	if (!file->order)
		return false;
	for (uint64_t lo = block_start(file, start); lo < end; lo += pages) {
		int state = huge_block_state(file, lo);
		bool split, merge;

		if (state == BLOCK_ABSENT)
			continue;
		split = state == BLOCK_WHOLE &&
			!uniform_after(file, lo, start, end, attrs);
		merge = state == BLOCK_SPLIT &&
			merges_after(file, lo, start, end, attrs);
		if (!split && !merge)
			continue;
		/*
		 * Both go over the whole block: a merge so that its small
		 * entries make room for a huge one; a split because every
		 * entry the folio had (several, where the arch caps a private
		 * entry below the folio size: snp's 2 MiB in a 1 GiB folio)
		 * maps a whole folio no more.
		 */
		*zap_start = MIN(*zap_start, lo);
		*zap_end = MAX(*zap_end, lo + pages);
		changes = true;
	}
	return changes;
}

/*
 * After the attributes of [start, end) are stored: split or merge each block
 * as huge_convert_prepare() foresaw (the pins hold still: they change only
 * under the invalidate lock, which the conversion holds exclusive). Cannot
 * fail.
 */
void huge_convert_commit(struct gmem_file *file, uint64_t start, uint64_t end,
			 uint64_t attrs)
{
	uint64_t pages = file_folio_pages(file);

	lock_assert_held_exclusive(&file->invalidate_lock);

	if (!file->order)
		return;
	for (uint64_t lo = block_start(file, start); lo < end; lo += pages) {
		int state = huge_block_state(file, lo);

		if (state == BLOCK_ABSENT)
			continue;
		if (state == BLOCK_WHOLE && block_uniform(file, lo))
			continue;
		if (state == BLOCK_SPLIT &&
		    merges_after(file, lo, start, end, attrs))
			set_state(file, lo, BLOCK_WHOLE);
		else
			set_state(file, lo, BLOCK_SPLIT);
	}
}

/*
 * Before freeing [start, end): a WHOLE block that will lose only part of its
 * pages (a partial punch, or pinned pages that stay) is split first, so the
 * arch sees 4 KiB pieces leave.
 */
void huge_before_free(struct gmem_file *file, uint64_t start, uint64_t end)
{
	uint64_t pages = file_folio_pages(file), pinned;

	if (!file->order)
		return;
	for (uint64_t lo = block_start(file, start); lo < end; lo += pages) {
		if (huge_block_state(file, lo) != BLOCK_WHOLE)
			continue;
		if (lo < start || lo + pages > end ||
		    pin_first_in_range(file, lo, lo + pages, &pinned))
			set_state(file, lo, BLOCK_SPLIT);
	}
}

/* After freeing [start, end): a block with no page left is ABSENT. */
void huge_after_free(struct gmem_file *file, uint64_t start, uint64_t end)
{
	uint64_t pages = file_folio_pages(file);

	if (!file->order)
		return;
	for (uint64_t lo = block_start(file, start); lo < end; lo += pages)
		if (huge_block_state(file, lo) != BLOCK_ABSENT &&
		    !block_present(file, lo)) {
			set_state(file, lo, BLOCK_ABSENT);
			atomic_store_explicit(&file->unprepared[lo >> file->order],
					      range_word(0, pages),
					      memory_order_relaxed);
		}
}

/*
 * A punch of [start, end) zaps in stage-2 ([*zap_start, *zap_end)) the whole
 * of a block it splits (a whole folio: none of its entries maps a whole
 * folio after) and of a block it leaves with no page (its emptied tables go,
 * and the next fault can map the refilled folio with one huge entry).
 */
void huge_punch_zap_range(struct gmem_file *file, uint64_t start, uint64_t end,
			  uint64_t *zap_start, uint64_t *zap_end)
{
	uint64_t pages = file_folio_pages(file), lo, hi;

	*zap_start = start;
	*zap_end = end;
	if (!file->order || start >= end)
		return;
	lo = block_start(file, start);
	if (lo < start && (huge_block_state(file, lo) == BLOCK_WHOLE ||
			   folio_next_present(file, lo, start) == start))
		*zap_start = lo;
	hi = block_start(file, end - 1) + pages;
	if (hi > end && (huge_block_state(file, hi - pages) == BLOCK_WHOLE ||
			 folio_next_present(file, end, hi) == hi))
		*zap_end = hi;
}
