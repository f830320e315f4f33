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
#include <stdio.h>

#include "../internal.h"

#define TD_OWNED	(1ULL << 0)
#define TD_ID_SHIFT	8

static uint64_t td_entry(uint16_t td)
{
	return TD_OWNED | ((uint64_t)td << TD_ID_SHIFT);
}

static uint16_t td_id(uint64_t e)
{
	return (e >> TD_ID_SHIFT) & 0xffff;
}

static int tdx_make_private(struct gmem_vm *vm, uint64_t gfn, uint64_t pfn,
			    uint64_t nr)
{
	for (uint64_t i = pfn; i < pfn + nr; i++) {
		uint64_t e = frame_get(vm->pool, i), run = i;

		if (e & TD_OWNED) {
			if (td_id(e) != vm->id)
				return -EBUSY;
			continue;
		}
		/* A huge folio comes in one call: clear each unowned run at once. */
		while (run < pfn + nr && !(frame_get(vm->pool, run) & TD_OWNED))
			frame_set_arch(vm->pool, run++, td_entry(vm->id));
		frames_clear_content(vm->pool, i, run - i);
		i = run - 1;
	}
	return 0;
}

static void tdx_invalidate_range(struct gmem_vm *vm, const struct memslot *slot,
				 uint64_t gfn_start, uint64_t gfn_end,
				 unsigned int filter)
{
	struct gmem_file *file = slot->file;
	uint64_t i = slot->pgoff + (gfn_start - slot->base_gfn);
	uint64_t end = slot->pgoff + (gfn_end - slot->base_gfn);

	if (!(filter & S2_ZAP_PRIVATE))
		return;
	/* Remove and clear each run of this TD's pages at once. */
	while ((i = folio_next_present(file, i, end)) < end) {
		uint64_t run = i;

		while (run < end && folio_present(file, run)) {
			uint64_t e = frame_get(vm->pool, file_pfn(file, run));

			if (!(e & TD_OWNED) || td_id(e) != vm->id)
				break;
			frame_set_arch(vm->pool, file_pfn(file, run), 0);
			run++;
		}
		if (run > i)
			frames_clear_content(vm->pool, file_pfn(file, i), run - i);
		i = run > i ? run : i + 1;
	}
}

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
	if (frame_get(vm->pool, pfn) & TD_OWNED)
		return -EEXIST;
	frame_set_arch(vm->pool, pfn, td_entry(vm->id));
	return 0;
}

static const char *tdx_check_page(struct gmem_vm *vm, uint64_t pfn,
				  uint64_t gfn, bool private, bool mapped)
{
	uint64_t e = frame_get(vm->pool, pfn);

	if (private && mapped && (!(e & TD_OWNED) || td_id(e) != vm->id))
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
	return snprintf(buf, len, "tdx td=%u", td_id(e));
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
