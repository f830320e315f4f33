/* SPDX-License-Identifier: MIT */
/*
 * The arch backends' header: the hook contract (struct gmem_arch), the frame
 * model the hooks keep their hardware state in, and the little a backend may
 * know of a VM. A backend (src/arch/<name>.c) includes this header and the C
 * library, nothing else; docs/arch.md says which hook runs where and why.
 *
 * The engine's side, the calls that reach the hooks (arch.c), is at the end.
 */
#ifndef GMEM_ARCH_H
#define GMEM_ARCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stage2.h"	/* S2_ZAP_SHARED, S2_ZAP_PRIVATE: invalidate_range's filter */

/* What a backend sees of the engine's objects: pointers it passes on. */
struct gmem_pool;	/* the machine: its frames */
struct gmem_vm;		/* a guest */
struct memslot;		/* a bound guest range of a file */

/* ------------------------------------------------------ the contract */

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
	/*
	 * Inside an invalidation, per bound guest range; @filter says which
	 * stage-2 entries go: S2_ZAP_SHARED, S2_ZAP_PRIVATE or both.
	 */
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

/* --------------------------------------------------- the frame model */

/*
 * Per-frame model state, one word per frame of the pool (pool.c), the
 * arch's own (the engine keeps its mark beside it: pool.h,
 * frame_was_private). Where the arch records which guest a frame belongs to
 * (ASID, TD, VMID), it keeps it in bits 8..23 (frame_guest_bits,
 * frame_guest).
 */
#define FRAME_GUEST_SHIFT	8

uint64_t frame_get(struct gmem_pool *pool, uint64_t pfn);
/* Set the arch's word of a frame. */
void frame_set_arch(struct gmem_pool *pool, uint64_t pfn, uint64_t v);
/*
 * Content destroyed in place, as by a TDX page reset or an SNP scrub: the
 * frames read zero and stay with their file.
 */
void frames_clear_content(struct gmem_pool *pool, uint64_t pfn, uint64_t nr);
/*
 * Content destroyed and the memory given back: for frames leaving their
 * file (reclaim), which the pool discards next anyway.
 */
void frames_discard(struct gmem_pool *pool, uint64_t pfn, uint64_t nr);
/*
 * Every frame of [pfn, pfn + nr) whose arch word has @bit goes back to no
 * hardware state with its content cleared in place.
 */
void frames_release(struct gmem_pool *pool, uint64_t pfn, uint64_t nr,
		    uint64_t bit);

static inline uint64_t frame_guest_bits(uint16_t guest)
{
	return (uint64_t)guest << FRAME_GUEST_SHIFT;
}

static inline uint16_t frame_guest(uint64_t word)
{
	return (word >> FRAME_GUEST_SHIFT) & 0xffff;
}

/* ------------------------------------------ what a backend may know */

/* The VM's pool, whose frames its hooks model, and its guest id (ASID, TD, VMID). */
struct gmem_pool *vm_pool(const struct gmem_vm *vm);
uint16_t vm_guest_id(const struct gmem_vm *vm);

/*
 * Call @fn on each run of frames of [gfn_start, gfn_end) in @slot that are
 * in the page cache, as the hooks see them: neighbouring 4 KiB folios make
 * one run, a huge folio is always a run of its own.
 */
void slot_for_each_folio_run(const struct memslot *slot, uint64_t gfn_start,
			     uint64_t gfn_end,
			     void (*fn)(uint64_t pfn, uint64_t nr, void *arg),
			     void *arg);

/* ---------------------------------------- the engine's side (arch.c) */

const struct gmem_arch *arch_find(const char *name);

/* The engine calls the backend only through these: each names its hook. */
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

#endif
