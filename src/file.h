/* SPDX-License-Identifier: MIT */
/*
 * gmem files (file.c): a guest_memfd's size, attributes, bindings, host
 * mappings and pins; its page cache (folio.c) and huge folios (huge.c).
 * Page i of a file is always frame base_pfn + i of the pool (pool.h).
 * Locks: lock.h.
 */
#ifndef GMEM_FILE_H
#define GMEM_FILE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "attr.h"
#include "bitmap.h"
#include "brlock.h"
#include "handle.h"

struct gmem_vm;
struct memslot;
struct host_mapping;
struct pin;

#define FILE_PREPARE_LOCKS	16

struct gmem_file {
	struct obj obj;
	struct brlock invalidate_lock;	/* first: kept valid across reuse */
	struct gmem_vm *vm;
	unsigned int vm_files_index;	/* in vm->files, under its files_lock */
	uint64_t size;
	uint64_t npages;
	uint64_t flags;
	uint64_t uid;			/* creator's pid << 32 | a count */
	uint64_t base_pfn;		/* the file's window in the pool */
	uint64_t window_frames;

	/*
	 * Huge folios (huge.c): folio order 0, 9 (2 MiB) or 18 (1 GiB), and for
	 * a huge file one state byte per huge block (BLOCK_*), NULL otherwise.
	 */
	int order;
	uint64_t nblocks;
	_Atomic uint8_t *blocks;
	atomic_uint_least32_t *block_pages;	/* pages present, per block */
	/*
	 * Per block, the pages the arch must take over again before the folio
	 * maps whole: [lo, hi) offsets in the block, lo | hi << 32 (huge.c).
	 */
	atomic_uint_least64_t *unprepared;

	struct attr_map attrs;
	/*
	 * The map again, one bit per page, for the fault path: set where the
	 * page's attribute differs from the file's initial one (so a new file's
	 * bits are all clear, and cost nothing until converted). Written with the
	 * map, under the invalidate lock exclusive.
	 */
	atomic_uint_least64_t *flipped;

	/* Page cache: one bit per page, set while a folio backs it. */
	atomic_uint_least64_t *present;

	/*
	 * A fault's preparation of a private folio (the arch's make_private,
	 * which may clear it), one fault at a time per folio, as the kernel's
	 * folio lock makes it: faults run under the invalidate lock shared.
	 * A stripe per folio number (fault.c, prepare_private).
	 */
	pthread_mutex_t prepare_locks[FILE_PREPARE_LOCKS];

	/* Bindings into the VM, file-offset ordered and disjoint. */
	struct memslot **bindings;
	unsigned int nbindings, bindings_cap;

	/* Host mappings, a tree by file page; changed under mappings_lock and invalidate_lock. */
	pthread_mutex_t mappings_lock;
	struct host_mapping *mappings;
	atomic_bool mappings_ever;	/* was ever mapped: host may have touched pages */

	/* Long-term pins (pin.c): sorted runs of pages; guarded by pins_lock. */
	pthread_mutex_t pins_lock;
	struct pin *pins;
	size_t npins;
};

int file_get(int fd, const char *fn, struct gmem_file **file);
void file_get_ref(struct gmem_file *file);
void file_put(struct gmem_file *file);
int file_check_range(struct gmem_file *file, uint64_t offset, uint64_t len,
		     const char *fn);

static inline uint64_t file_pfn(const struct gmem_file *file, uint64_t index)
{
	return file->base_pfn + index;
}

static inline uint64_t file_folio_pages(const struct gmem_file *file)
{
	return 1ULL << file->order;
}

/* The page's PRIVATE attribute, from the bitmap: one load. */
static inline bool file_page_private(struct gmem_file *file, uint64_t index)
{
	return !(file->flags & GMEM_FLAG_INIT_SHARED) ^
	       bitmap_test(file->flipped, index);
}

/*
 * Call @fn on each run of [start, end) whose pages are all private
 * (@private) or all shared, clipped to the range, in order; stops at the
 * first non-zero return and returns it. Under the invalidate lock.
 */
int file_for_each_attr_run(struct gmem_file *file, uint64_t start,
			   uint64_t end, bool private,
			   int (*fn)(struct gmem_file *file, uint64_t start,
				     uint64_t end, void *arg),
			   void *arg);

/*
 * huge.c: the huge blocks of a file. A block is ABSENT (no page of it in the
 * page cache), WHOLE (one huge folio: every page present, attributes uniform)
 * or SPLIT (4 KiB folios, some maybe absent).
 */
#define BLOCK_ABSENT	0
#define BLOCK_WHOLE	1
#define BLOCK_SPLIT	2
#define BLOCK_STATE	3

int huge_order_of_flags(uint64_t flags);
int huge_init(struct gmem_file *file);
void huge_destroy(struct gmem_file *file);
int huge_block_state(struct gmem_file *file, uint64_t index);
/* Is the page's folio a whole huge one? One load; false in a 4 KiB file. */
static inline bool huge_whole(struct gmem_file *file, uint64_t index)
{
	return file->order &&
	       (atomic_load_explicit(&file->blocks[index >> file->order],
				     memory_order_acquire) & BLOCK_STATE) ==
	       BLOCK_WHOLE;
}
bool huge_alloc_block(struct gmem_file *file, uint64_t index);
bool huge_unprepared(struct gmem_file *file, uint64_t index, uint64_t *first,
		     uint64_t *nr);
void huge_set_prepared(struct gmem_file *file, uint64_t index);
void huge_unprepare(struct gmem_file *file, uint64_t start, uint64_t end);
bool huge_convert_prepare(struct gmem_file *file, uint64_t start, uint64_t end,
			  uint64_t attrs, uint64_t *zap_start, uint64_t *zap_end);
void huge_convert_commit(struct gmem_file *file, uint64_t start, uint64_t end,
			 uint64_t attrs);
void huge_before_free(struct gmem_file *file, uint64_t start, uint64_t end);
void huge_after_free(struct gmem_file *file, uint64_t start, uint64_t end);
void huge_count(struct gmem_file *file, uint64_t index, int64_t delta);
void huge_punch_zap_range(struct gmem_file *file, uint64_t start, uint64_t end,
			  uint64_t *zap_start, uint64_t *zap_end);

/* folio.c: the page cache. */
bool folio_present(struct gmem_file *file, uint64_t index);
bool folio_alloc(struct gmem_file *file, uint64_t index);
void folio_alloc_range(struct gmem_file *file, uint64_t start, uint64_t end);
void folio_account(struct gmem_file *file, uint64_t index, int64_t delta);
void folio_free_range(struct gmem_file *file, uint64_t start, uint64_t end);
void folio_sync_host_touched(struct gmem_file *file, uint64_t start,
			     uint64_t end);
uint64_t folio_next_present(struct gmem_file *file, uint64_t index,
			    uint64_t end);
uint64_t folio_next_hole(struct gmem_file *file, uint64_t index, uint64_t end);
uint64_t folio_run_end(struct gmem_file *file, uint64_t index, uint64_t end);
void folio_for_each_run(struct gmem_file *file, uint64_t start, uint64_t end,
			void (*fn)(uint64_t pfn, uint64_t nr, void *arg),
			void *arg);

#endif
