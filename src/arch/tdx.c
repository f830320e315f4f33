// SPDX-License-Identifier: MIT
/*
 * tdx: Intel TDX. The model is which frames belong to which TD's secure EPT.
 *
 *   make_private      TDH.MEM.PAGE.AUG at map time: the frame joins the TD;
 *                     the guest accepts it zeroed, so earlier content is gone
 *   invalidate_range  removing private S-EPT leaves (TDH.MEM.PAGE.REMOVE) and
 *                     resetting the page: content destroyed, frame unowned
 *   reclaim           leaves every frame cleared and unowned
 *   post_populate     TDH.MEM.PAGE.ADD: the frame joins with its content
 *   make_shared       not used: the invalidation already destroyed the page
 *   legacy            remove-and-clear serves both callers
 *
 * Rules checked: a private page mapped for the guest is in that TD; a shared
 * page's frame is in no TD; a freed frame is in no TD.
 */
#include <errno.h>
#include <stdio.h>

#include "../arch.h"

#define TD_OWNED	(1ULL << 0)

/* In TD @td (frame_guest). */
static uint64_t td_entry(uint16_t td)
{
	return TD_OWNED | frame_guest_bits(td);
}

static int tdx_make_private(struct gmem_vm *vm, uint64_t gfn, uint64_t pfn,
			    uint64_t nr)
{
	struct gmem_pool *pool = vm_pool(vm);
	uint16_t td = vm_guest_id(vm);

	for (uint64_t i = pfn; i < pfn + nr; i++) {
		uint64_t e = frame_get(pool, i), run = i;

		if (e & TD_OWNED) {
			if (frame_guest(e) != td)
				return -EBUSY;
			continue;
		}
		/* A huge folio comes in one call: clear each unowned run at once. */
		while (run < pfn + nr && !(frame_get(pool, run) & TD_OWNED))
			frame_set_arch(pool, run++, td_entry(td));
		frames_clear_content(pool, i, run - i);
		i = run - 1;
	}
	return 0;
}

/* Remove and clear each run of this TD's frames in a folio run at once. */
static void remove_run(uint64_t pfn, uint64_t nr, void *arg)
{
	struct gmem_vm *vm = arg;
	struct gmem_pool *pool = vm_pool(vm);

	for (uint64_t i = pfn; i < pfn + nr; ) {
		uint64_t run = i;

		while (run < pfn + nr) {
			uint64_t e = frame_get(pool, run);

			if (!(e & TD_OWNED) || frame_guest(e) != vm_guest_id(vm))
				break;
			frame_set_arch(pool, run++, 0);
		}
		if (run > i)
			frames_clear_content(pool, i, run - i);
		i = run > i ? run : i + 1;
	}
}

static void tdx_invalidate_range(struct gmem_vm *vm, const struct memslot *slot,
				 uint64_t gfn_start, uint64_t gfn_end,
				 unsigned int filter)
{
	if (filter & S2_ZAP_PRIVATE)
		slot_for_each_folio_run(slot, gfn_start, gfn_end, remove_run, vm);
}

/*
 * Out of the TD and cleared; the pool discards the frames next. The
 * invalidation before a free removed and cleared every bound frame already,
 * so this finds only frames no invalidation reached.
 */
static void tdx_reclaim(struct gmem_pool *pool, uint64_t pfn, uint64_t nr)
{
	frames_release(pool, pfn, nr, TD_OWNED);
}

static void tdx_legacy_invalidate(struct gmem_pool *pool, uint64_t start,
				  uint64_t end)
{
	tdx_reclaim(pool, start, end - start);
}

static int tdx_post_populate(struct gmem_vm *vm, uint64_t gfn, uint64_t pfn)
{
	if (frame_get(vm_pool(vm), pfn) & TD_OWNED)
		return -EEXIST;
	frame_set_arch(vm_pool(vm), pfn, td_entry(vm_guest_id(vm)));
	return 0;
}

static const char *tdx_check_page(struct gmem_vm *vm, uint64_t pfn,
				  uint64_t gfn, bool private, bool mapped)
{
	uint64_t e = frame_get(vm_pool(vm), pfn);

	if (private && mapped && (!(e & TD_OWNED) || frame_guest(e) != vm_guest_id(vm)))
		return "S-EPT: a private page is mapped but its frame is not in the TD";
	if (!private && (e & TD_OWNED))
		return "S-EPT: a shared page's frame is still in the TD";
	return NULL;
}

static const char *tdx_check_reclaimed(struct gmem_pool *pool, uint64_t pfn)
{
	if (frame_get(pool, pfn) & TD_OWNED)
		return "S-EPT: a freed frame is still in a TD";
	return NULL;
}

static int tdx_describe(struct gmem_pool *pool, uint64_t pfn, char *buf,
			size_t len)
{
	uint64_t e = frame_get(pool, pfn);

	if (!(e & TD_OWNED))
		return snprintf(buf, len, "tdx host");
	return snprintf(buf, len, "tdx td=%u", frame_guest(e));
}

const struct gmem_arch gmem_arch_tdx = {
	.name = "tdx",
	.forbids_leak = true,
	.make_private = tdx_make_private,
	.reclaim = tdx_reclaim,
	.invalidate_range = tdx_invalidate_range,
	.post_populate = tdx_post_populate,
	.legacy_invalidate = tdx_legacy_invalidate,
	.check_page = tdx_check_page,
	.check_reclaimed = tdx_check_reclaimed,
	.describe = tdx_describe,
};
