/* SPDX-License-Identifier: MIT */
/*
 * Internal structures of gmem. Lock order, outermost first:
 *
 *   vm->slots_lock  ->  file->invalidate_lock  ->  vm->mmu_lock
 *
 * slots_lock (read) is held across a whole guest fault, as KVM holds SRCU;
 * bind, unbind and file release take it for write. invalidate_lock is the
 * filemap invalidate lock: faults, pins and host-mapping setup take it shared,
 * conversion, punch, bind and release exclusive. mmu_lock guards stage-2 and
 * the invalidation state: faults install under it shared, invalidations zap
 * under it exclusive. All three are big-reader locks (brlock.h) so that
 * parallel faults never write a cache line another fault reads.
 */
#ifndef GMEM_INTERNAL_H
#define GMEM_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <errno.h>
#include <signal.h>
#include <sys/types.h>

#include "gmem.h"
#include "bitmap.h"
#include "brlock.h"
#include "attr.h"
#include "stage2.h"

#define GMEM_API __attribute__((visibility("default")))

#define PAGE_SHIFT	12
#define PAGE_SIZE	4096ULL
#define GIB		(1ULL << 30)
#define MAX_FILE_SIZE	(64ULL << 40)

#define ALIGNED(x, a)	(((x) & ((a) - 1)) == 0)
#define MIN(a, b)	((a) < (b) ? (a) : (b))
#define MAX(a, b)	((a) > (b) ? (a) : (b))

/* error.c: the per-thread reason behind the last negative return. */
int gmem_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * errno is the caller's: the header promises every call leaves it alone,
 * successful or not, although the engine makes system calls (lseek, madvise,
 * mmap, futex ...) that set it. KEEP_ERRNO() first in a public call saves it
 * and puts it back on every return path.
 */
static inline void errno_restore(const int *saved)
{
	errno = *saved;
}
#define KEEP_ERRNO() \
	int saved_errno_ __attribute__((cleanup(errno_restore), unused)) = errno

/* ------------------------------------------------------------- handles */

enum obj_type { OBJ_FREE, OBJ_POOL, OBJ_VM, OBJ_FILE };

/*
 * Every object starts with this. Objects are type-stable: their memory is
 * never returned to malloc, only reused for an object of the same type, so a
 * racing handle lookup may touch a dead object but never freed memory.
 */
struct obj {
	enum obj_type type;
	atomic_int pid;		/* the process that created it: others get EIO */
	atomic_int refs;	/* handle + dependants; 0 = dead */
	atomic_int handle;	/* -1 once closed */
	void (*release)(struct obj *o);	/* called when refs drops to 0 */
	struct obj *next_free;
};

int obj_install(struct obj *o);			/* returns handle */
int obj_get(int h, enum obj_type type, const char *fn, void **out);
struct obj *obj_peek(int h);			/* no reference taken */
int obj_close(int h, enum obj_type type, const char *fn, struct obj **o);
void *obj_alloc(enum obj_type type, size_t size, size_t keep, bool *fresh);
void obj_recycle(struct obj *o);
void obj_get_ref(struct obj *o);
void obj_put(struct obj *o);
int obj_foreign(struct obj *o, int h, const char *fn);
void handles_fork_prepare(void);
void handles_fork_parent(void);
void handles_fork_child(void);

/*
 * process.c: this process's pid, cached (updated in the fork child), and the
 * shootdown that carries conversions to the mappings fork children
 * inherited.
 */
#define SHOOTDOWN_UIDS	16	/* files a fork child's slot names, or "all" */
pid_t process_pid(void);
int sd_broadcast(uint64_t uid, uint64_t start, uint64_t end, bool open);
void sd_fork_prepare(const uint64_t *uids, unsigned int n);
void sd_fork_parent(bool failed);
bool sd_fork_child(void);
bool process_answers_shootdowns(void);
void process_block_shootdown(sigset_t *saved);

/* ---------------------------------------------------------------- pool */

struct window;

struct gmem_pool {
	struct obj obj;
	int memfd;
	uint8_t *direct_map;
	uint64_t nframes;
	pthread_mutex_t lock;		/* the window list */
	struct window *windows;		/* free extents, sorted by pfn */
	atomic_uint_least64_t frames_in_use;
	atomic_uint_least64_t frames_reserved;
	atomic_uint_least64_t files;
	atomic_uint_least64_t metadata_bytes;
	atomic_uint_least64_t *frames;	/* arch model, one word per frame */
	/* One machine, one arch: set by the first VM (pool_claim_arch). */
	_Atomic(const struct gmem_arch *) arch;
	unsigned int arch_claims;	/* VM creates in flight; under lock */
	bool arch_bound;		/* a VM was created: the arch is for good */
	atomic_uint next_vm_id;
};

void pool_put(struct gmem_pool *pool);
int pool_reserve_window(struct gmem_pool *pool, uint64_t nframes,
			uint64_t align, uint64_t *base);
void pool_release_window(struct gmem_pool *pool, uint64_t base,
			 uint64_t nframes);
void pool_discard(struct gmem_pool *pool, uint64_t pfn, uint64_t nr);
struct gmem_arch;
int pool_claim_arch(struct gmem_pool *pool, const struct gmem_arch *arch);
void pool_settle_arch(struct gmem_pool *pool, bool created);
static inline void *pool_va(struct gmem_pool *pool, uint64_t pfn)
{
	return pool->direct_map + (pfn << PAGE_SHIFT);
}

/* ---------------------------------------------------------------- arch */

struct gmem_vm;
struct memslot;

/*
 * The hook contract (docs/arch.md). The first six hooks carry the upstream
 * names and are called exactly where the kernel calls them; a NULL hook is an
 * arch that does not opt in. The rest belong to the model, not to KVM.
 */
struct gmem_arch {
	const char *name;
	bool keeps_content;	/* conversion preserves every byte */
	bool forbids_leak;	/* freed frames must not carry guest data */

	/* A private page is handed to the guest (fault path); repeats are harmless. */
	int (*make_private)(struct gmem_vm *vm, uint64_t gfn, uint64_t pfn,
			    uint64_t nr);
	/* A folio leaves its file for good: leave frames fit for anyone. */
	void (*reclaim)(struct gmem_pool *pool, uint64_t pfn, uint64_t nr);
	/* private->shared conversion, pages that exist, per contiguous run. */
	void (*make_shared)(struct gmem_pool *pool, uint64_t pfn, uint64_t nr);
	/* Inside an invalidation, per bound guest range, with the zap filter. */
	void (*invalidate_range)(struct gmem_vm *vm, const struct memslot *slot,
				 uint64_t gfn_start, uint64_t gfn_end,
				 unsigned int filter);
	/* Launch-time content loaded into a private page. */
	int (*post_populate)(struct gmem_vm *vm, uint64_t gfn, uint64_t pfn);
	/* Largest stage-2 level for a private page (0 = 4 KiB). */
	int (*max_mapping_level)(struct gmem_vm *vm, uint64_t pfn);

	/* The legacy contract: one hook for teardown and to-shared, no reason. */
	void (*legacy_invalidate)(struct gmem_pool *pool, uint64_t pfn_start,
				  uint64_t pfn_end);
	/*
	 * Model of the guest's own conversion request where the hardware acts on
	 * it before the VMM converts (pKVM share/unshare hypercalls at EL2).
	 */
	void (*guest_convert)(struct gmem_vm *vm, uint64_t pfn, uint64_t nr,
			      bool to_private);
	/* Checks: the broken rule in words, or NULL. */
	const char *(*check_page)(struct gmem_vm *vm, uint64_t pfn, uint64_t gfn,
				  bool private, bool mapped);
	const char *(*check_reclaimed)(struct gmem_pool *pool, uint64_t pfn);
	int (*describe)(struct gmem_pool *pool, uint64_t pfn, char *buf,
			size_t len);
};

const struct gmem_arch *arch_find(const char *name);

/* arch.c: the engine calls the backend only through these. */
int arch_make_private(struct gmem_vm *vm, uint64_t gfn, uint64_t pfn,
		      uint64_t nr);
void arch_reclaim(struct gmem_vm *vm, uint64_t pfn, uint64_t nr);
bool arch_wants_make_shared(const struct gmem_vm *vm);
void arch_make_shared(struct gmem_vm *vm, uint64_t pfn, uint64_t nr);
void arch_invalidate_range(struct gmem_vm *vm, const struct memslot *slot,
			   uint64_t gfn_start, uint64_t gfn_end,
			   unsigned int filter);
int arch_post_populate(struct gmem_vm *vm, uint64_t gfn, uint64_t pfn);
int arch_max_mapping_level(struct gmem_vm *vm, uint64_t pfn, int level);
void arch_guest_convert(struct gmem_vm *vm, uint64_t pfn, uint64_t nr,
			bool to_private);

/*
 * Per-frame model state, one word per frame in pool->frames. The arch owns
 * the low byte and bits 8..63 except FRAME_WAS_PRIVATE, which the engine
 * keeps: set when a frame is made private, cleared when it is reclaimed.
 */
#define FRAME_WAS_PRIVATE	(1ULL << 7)

static inline uint64_t frame_get(struct gmem_pool *pool, uint64_t pfn)
{
	return atomic_load_explicit(&pool->frames[pfn], memory_order_relaxed);
}

static inline void frame_set(struct gmem_pool *pool, uint64_t pfn, uint64_t v)
{
	atomic_store_explicit(&pool->frames[pfn], v, memory_order_relaxed);
}

/* Set the arch bits of a frame, keeping the engine's. */
static inline void frame_set_arch(struct gmem_pool *pool, uint64_t pfn,
				  uint64_t v)
{
	uint64_t old = frame_get(pool, pfn), new;

	do {
		new = (old & FRAME_WAS_PRIVATE) | (v & ~FRAME_WAS_PRIVATE);
	} while (!atomic_compare_exchange_weak(&pool->frames[pfn], &old, new));
}

/* The frame now holds guest-private data: it must be reclaimed before reuse. */
static inline void frame_mark_private(struct gmem_pool *pool, uint64_t pfn)
{
	if (!(frame_get(pool, pfn) & FRAME_WAS_PRIVATE))
		atomic_fetch_or(&pool->frames[pfn], FRAME_WAS_PRIVATE);
}

void frames_clear_content(struct gmem_pool *pool, uint64_t pfn, uint64_t nr);
void frames_release(struct gmem_pool *pool, uint64_t pfn, uint64_t nr,
		    uint64_t bit);
bool frame_is_zero(struct gmem_pool *pool, uint64_t pfn);

/* ------------------------------------------------------------------ vm */

struct memslot {
	uint32_t id;
	uint64_t base_gfn;
	uint64_t npages;
	struct gmem_file *file;
	uint64_t pgoff;
	struct view *views[3];	/* view.c: [0] shared, [1] private, [2] any */
};

struct gmem_vm {
	struct obj obj;
	/* Locks first: obj_alloc keeps them valid across reuse. */
	struct brlock slots_lock;
	/*
	 * mmu_lock write side guards stage-2 zaps and the invalidation state;
	 * faults read the state under the read side (mmu_invalidate_retry_gfn).
	 */
	struct brlock mmu_lock;

	struct gmem_pool *pool;
	const struct gmem_arch *arch;
	uint64_t flags;			/* GMEM_VM_* */
	uint16_t id;			/* guest id in the arch model (ASID, TD, VMID) */
	struct check *check;		/* GMEM_VM_CHECK state */
	_Atomic(gmem_hook_fn) hook_fn;	/* gmem_vm_trace_hooks */
	_Atomic(void *) hook_arg;

	/* Files created on the VM, for the checker. */
	pthread_mutex_t files_lock;
	struct gmem_file **files;
	unsigned int nfiles, files_cap;

	struct memslot **slots;		/* sorted by base_gfn */
	unsigned int nslots, slots_cap;

	atomic_uint_least64_t mmu_invalidate_seq;
	long mmu_invalidate_in_progress;
	uint64_t mmu_invalidate_range_start;
	uint64_t mmu_invalidate_range_end;
	struct stage2 s2;
};

int vm_enter(int h, const char *fn, struct gmem_vm **vm);
void vm_exit(struct gmem_vm *vm);
void vm_exit_checked(struct gmem_vm *vm, const char *op);
void vm_get(struct gmem_vm *vm);
int vm_add_file(struct gmem_vm *vm, struct gmem_file *file);
void vm_remove_file(struct gmem_vm *vm, struct gmem_file *file);
static inline bool vm_legacy(const struct gmem_vm *vm)
{
	return vm->flags & GMEM_VM_LEGACY_CONTRACT;
}
void vm_put(struct gmem_vm *vm);
struct memslot *vm_find_slot(struct gmem_vm *vm, uint64_t gfn);
struct memslot *vm_find_slot_id(struct gmem_vm *vm, uint32_t id);
void vm_remove_slot(struct gmem_vm *vm, struct memslot *slot);

/* view.c: stage-2 views of a slot for a real VMM's memslots. */
int view_open(struct memslot *slot, uint64_t gfn, uint64_t npages,
	      bool private);
void view_close(struct memslot *slot, uint64_t gfn_start, uint64_t gfn_end,
		unsigned int filter);
void view_release(struct memslot *slot);
void view_check(struct gmem_vm *vm, struct memslot *slot, int pagemap_fd);
bool view_covers(struct gmem_vm *vm, uintptr_t start, uintptr_t end);

/* invalidate.c: KVM's mmu_invalidate_* on one VM. */
void vm_invalidate_start(struct gmem_vm *vm);
void vm_invalidate_range_add(struct gmem_vm *vm, uint64_t start, uint64_t end);
void vm_invalidate_end(struct gmem_vm *vm);
bool vm_invalidate_retry_range(struct gmem_vm *vm, uint64_t seq,
			       uint64_t start, uint64_t end);

/* ---------------------------------------------------------------- file */

struct host_mapping {
	struct host_mapping *next;	/* in the file's list */
	struct host_mapping *next_all;	/* in the process's list */
	uint8_t *addr;
	size_t len;
	uint64_t pgoff;		/* file page at addr */
	uint64_t file_pages;	/* pages before the end of the file */
	int prot;
	/*
	 * Inherited through fork: @file is the parent's, a dead copy here; the
	 * record only remembers where the mapping is, for munmap and for the
	 * parent's shootdowns.
	 */
	bool foreign;
	uint64_t uid;		/* the file's, unique across processes */
	struct hm_entry *hm;	/* sigbus.c: the signal handlers' view of it */
	struct gmem_file *file;
};

/*
 * sigbus.c: every host mapping of the process as the signal handlers see it,
 * read without locks. @start and @end are for the SIGSEGV handler; the rest
 * for the shootdown handler, under hm_lock.
 */
struct hm_entry {
	_Atomic uintptr_t start, end;	/* end 0: no mapping */
	uint64_t uid, pgoff, file_pages;
	int prot;
	bool used;			/* allocated; under all_lock */
};

#define HM_ANY	(~0ULL)

struct hm_entry *hm_alloc(void);
void hm_update(struct hm_entry *e, const struct host_mapping *m);
void hm_free(struct hm_entry *e);
bool hm_lookup(uintptr_t addr);
void hm_for_uid(uint64_t uid, void (*fn)(const struct hm_entry *e, void *arg),
		void *arg);
void hm_lock(sigset_t *saved);
void hm_unlock(const sigset_t *saved);
void hm_lock_handler(void);
void hm_unlock_handler(void);
void sigbus_install(void);

/* An action gmem's handler replaced, to pass other signals on to. */
struct chained_action {
	struct sigaction act;
	atomic_bool reset;		/* SA_RESETHAND fired: SIG_DFL now */
};

int sig_install(int sig, void (*handler)(int, siginfo_t *, void *),
		int flags, const sigset_t *mask, struct chained_action *c);
void sig_chain(struct chained_action *c, int sig, siginfo_t *si, void *ucv,
	       bool fatal);

struct pin {
	uint64_t start, end;	/* a run of pages */
	uint32_t count;
};

struct gmem_file {
	struct obj obj;
	struct brlock invalidate_lock;	/* first: kept valid across reuse */
	struct gmem_vm *vm;
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
	atomic_uint_least64_t nr_present;

	/* Bindings into the VM, file-offset ordered. */
	struct memslot **bindings;
	unsigned int nbindings, bindings_cap;

	/* Host mappings; changed under mappings_lock and invalidate_lock. */
	pthread_mutex_t mappings_lock;
	struct host_mapping *mappings;
	atomic_bool mappings_ever;	/* was ever mapped: host may have touched pages */

	/* Long-term pins: sorted runs of pages; guarded by pins_lock. */
	pthread_mutex_t pins_lock;
	struct pin *pins;
	size_t npins;
};

int file_get(int fd, const char *fn, struct gmem_file **file);
void file_get_ref(struct gmem_file *file);
void file_put(struct gmem_file *file);
static inline uint64_t file_pfn(const struct gmem_file *file, uint64_t index)
{
	return file->base_pfn + index;
}
/* The page's PRIVATE attribute, from the bitmap: one load. */
static inline bool file_page_private(struct gmem_file *file, uint64_t index)
{
	return !(file->flags & GMEM_FLAG_INIT_SHARED) ^
	       bitmap_test(file->flipped, index);
}

int file_check_range(struct gmem_file *file, uint64_t offset, uint64_t len,
		     const char *fn);
static inline uint64_t file_folio_pages(const struct gmem_file *file)
{
	return 1ULL << file->order;
}

/*
 * huge.c: the huge blocks of a file. A block is ABSENT (no page of it in the
 * page cache), WHOLE (one huge folio: every page present, attributes uniform)
 * or SPLIT (4 KiB folios, some maybe absent). PREPARED marks a WHOLE private
 * block the arch has taken over as one folio (make_private done).
 */
#define BLOCK_ABSENT	0
#define BLOCK_WHOLE	1
#define BLOCK_SPLIT	2
#define BLOCK_STATE	3
#define BLOCK_PREPARED	4

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
bool huge_test_prepared(struct gmem_file *file, uint64_t index);
void huge_set_prepared(struct gmem_file *file, uint64_t index);
void huge_unprepare(struct gmem_file *file, uint64_t start, uint64_t end);
uint64_t folio_run_end(struct gmem_file *file, uint64_t index, uint64_t end);
int huge_convert_prepare(struct gmem_file *file, uint64_t start, uint64_t end,
			 uint64_t attrs, uint64_t *zap_start, uint64_t *zap_end,
			 uint64_t *err_index);
void huge_convert_commit(struct gmem_file *file, uint64_t start, uint64_t end);
void huge_before_free(struct gmem_file *file, uint64_t start, uint64_t end);
void huge_after_free(struct gmem_file *file, uint64_t start, uint64_t end);
void huge_count(struct gmem_file *file, uint64_t index, int64_t delta);
void huge_punch_zap_range(struct gmem_file *file, uint64_t start, uint64_t end,
			  uint64_t *zap_start, uint64_t *zap_end);

/* folio.c: the page cache. */
bool folio_present(struct gmem_file *file, uint64_t index);
bool folio_alloc(struct gmem_file *file, uint64_t index);
void folio_free_range(struct gmem_file *file, uint64_t start, uint64_t end);
void folio_sync_host_touched(struct gmem_file *file, uint64_t start,
			     uint64_t end);
uint64_t folio_next_present(struct gmem_file *file, uint64_t index,
			    uint64_t end);
uint64_t folio_next_hole(struct gmem_file *file, uint64_t index, uint64_t end);

/* invalidate.c: the file side, over every VM binding of [start, end). */
bool file_invalidate_start(struct gmem_file *file, uint64_t start,
			   uint64_t end, unsigned int zap_filter);
bool file_invalidate_start_wide(struct gmem_file *file, uint64_t start,
				uint64_t end, unsigned int zap_filter,
				uint64_t zap_start, uint64_t zap_end);
void file_invalidate_end(struct gmem_file *file, bool started);

/* mapping.c */
bool mapping_uses_guards(void);
void mapping_fork_prepare(void);
void mapping_fork_parent(void);
void mapping_fork_child(bool registered);
int mapping_revoke(struct gmem_file *file, uint64_t start, uint64_t end);
void mapping_restore(struct gmem_file *file, uint64_t start, uint64_t end);

/* check.c: GMEM_VM_CHECK. check_after() runs every invariant once a call is done. */
struct check;
int check_create(struct gmem_vm *vm);
void check_destroy(struct gmem_vm *vm);
void check_after(struct gmem_vm *vm, const char *op);
void check_violation(struct gmem_vm *vm, int invariant, uint64_t offset,
		     uint64_t pfn, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
void check_reclaimed(struct gmem_file *file, uint64_t pfn, uint64_t nr);
struct conversion_snapshot;
struct conversion_snapshot *check_snapshot(struct gmem_file *file,
					   uint64_t start, uint64_t end);
void check_conversion(struct gmem_file *file, struct conversion_snapshot *snap,
		      bool failed);
static inline bool vm_checking(const struct gmem_vm *vm)
{
	return vm->check;
}

/* pin.c */
bool pin_first_in_range(struct gmem_file *file, uint64_t start, uint64_t end,
			uint64_t *index);
uint32_t pin_count(struct gmem_file *file, uint64_t index);

#endif
