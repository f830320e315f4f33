/* SPDX-License-Identifier: MIT */
/*
 * VMs (vm.c): memslot bindings of files, the stage-2 table and its views
 * (view.c), and the invalidation protocol (invalidate.c) that keeps stage-2
 * behind every change of a file. Locks: lock.h.
 */
#ifndef GMEM_VM_H
#define GMEM_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "brlock.h"
#include "handle.h"
#include "stage2.h"

struct gmem_arch;
struct gmem_file;
struct gmem_pool;
struct check;
struct view;

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
	 * faults read the state under the read side (vm_invalidate_retry_range).
	 */
	struct brlock mmu_lock;

	struct gmem_pool *pool;
	const struct gmem_arch *arch;
	uint64_t flags;			/* GMEM_VM_* */
	atomic_bool views_behind;	/* a stage-2 view stayed fenced over an entry: fault.c */
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
	struct memslot **slot_ids;	/* by slot id, NULL where free */
	unsigned int slot_ids_cap;

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
void vm_put(struct gmem_vm *vm);
int vm_add_file(struct gmem_vm *vm, struct gmem_file *file);
void vm_remove_file(struct gmem_vm *vm, struct gmem_file *file);
struct memslot *vm_find_slot(struct gmem_vm *vm, uint64_t gfn);
struct memslot *vm_find_slot_id(struct gmem_vm *vm, uint32_t id);
void vm_remove_slot(struct gmem_vm *vm, struct memslot *slot);
/* First of the file's bindings (file->bindings) ending after page @index. */
unsigned int file_binding_search(struct gmem_file *file, uint64_t index);

static inline bool vm_legacy(const struct gmem_vm *vm)
{
	return vm->flags & GMEM_VM_LEGACY_CONTRACT;
}

/* A GMEM_VM_CHECK VM (check.h). */
static inline bool vm_checking(const struct gmem_vm *vm)
{
	return vm->check;
}

/* The file page behind @gfn of @slot. */
static inline uint64_t slot_index(const struct memslot *slot, uint64_t gfn)
{
	return slot->pgoff + (gfn - slot->base_gfn);
}

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

/* invalidate.c: the file side, over every VM binding of file pages [start, end). */
bool file_invalidate_start(struct gmem_file *file, uint64_t start,
			   uint64_t end, unsigned int zap_filter);
bool file_invalidate_start_wide(struct gmem_file *file, uint64_t start,
				uint64_t end, unsigned int zap_filter,
				uint64_t zap_start, uint64_t zap_end);
void file_invalidate_end(struct gmem_file *file, bool started);

#endif
