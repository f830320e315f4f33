// SPDX-License-Identifier: MIT
/*
 * snp: AMD SEV-SNP. The model is the RMP: one entry per frame saying whether
 * it is assigned to a guest, which guest (ASID), at which guest frame, the
 * entry's page size, and whether the guest validated it.
 *
 *   make_private   assign the frames to the guest (repeats are no-ops):
 *                  a 2 MiB entry where the call covers an aligned 2 MiB
 *                  chunk none of whose frames is assigned (a huge folio),
 *                  else 4 KiB entries; smashed entries stay smashed
 *   make_shared    back to the hypervisor; the guest's content is lost
 *                  (cleared in place: the frames stay with the file); a
 *                  2 MiB entry the range cuts is smashed first (PSMASH)
 *   reclaim        the same, on the free path, where the frames are
 *                  discarded instead: they leave the file
 *   post_populate  SNP_LAUNCH_UPDATE: the frame must be unassigned; assign
 *                  it, measured and validated, keeping the loaded content
 *   legacy         rmp_make_shared serves both callers equally well
 *   max_mapping_level  the RMP entry size: a 2 MiB stage-2 entry only over
 *                  a 2 MiB RMP entry (there are no 1 GiB RMP entries)
 *
 * Rules checked: a private page mapped for the guest has an entry assigned
 * to that guest at that gfn; a shared page's frame is not assigned (a host
 * write would be an RMP violation); a freed frame is not assigned.
 */
#include <errno.h>
#include <stdio.h>

#include "../arch.h"

#define RMP_ASSIGNED	(1ULL << 0)
#define RMP_VALIDATED	(1ULL << 1)
#define RMP_2M		(1ULL << 2)
#define RMP_GFN_SHIFT	24

/* An assigned entry: the ASID (frame_guest) and the gfn. */
static uint64_t rmp_entry(uint16_t asid, uint64_t gfn)
{
	return RMP_ASSIGNED | RMP_VALIDATED | frame_guest_bits(asid) |
	       (gfn << RMP_GFN_SHIFT);
}

#define RMP_2M_PAGES	512ULL

/*
 * One frame for the guest at @gfn: a new entry of the given size if it is
 * the hypervisor's; kept as it is if already this guest's at @gfn (a
 * repeat, or a page that stayed assigned, 2 MiB or smashed to 4 KiB); if
 * this guest's at another gfn (a new binding), updated to @gfn, its size
 * kept.
 */
static int assign(struct gmem_vm *vm, uint64_t gfn, uint64_t pfn, bool huge)
{
	uint64_t e = frame_get(vm_pool(vm), pfn);

	if (!(e & RMP_ASSIGNED)) {
		frame_set_arch(vm_pool(vm), pfn, rmp_entry(vm_guest_id(vm), gfn) |
						 (huge ? RMP_2M : 0));
		return 0;
	}
	if (frame_guest(e) != vm_guest_id(vm))
		return -EINVAL;	/* another guest's frame */
	if (e >> RMP_GFN_SHIFT != gfn)
		frame_set_arch(vm_pool(vm), pfn, rmp_entry(vm_guest_id(vm), gfn) |
						 (e & RMP_2M));
	return 0;
}

/* No frame of the 2 MiB chunk at @pfn is assigned. */
static bool chunk_unassigned(struct gmem_pool *pool, uint64_t pfn)
{
	for (uint64_t i = pfn; i < pfn + RMP_2M_PAGES; i++)
		if (frame_get(pool, i) & RMP_ASSIGNED)
			return false;
	return true;
}

/*
 * Assign the frames to the guest, as sev_gmem_prepare: one 2 MiB RMP entry
 * for every 2 MiB-aligned chunk the call covers whole (a huge folio) while
 * no frame of it is assigned, 4 KiB entries elsewhere. There is no
 * un-smashing: a chunk PSMASH cut into 4 KiB entries keeps them, its pages
 * that went shared come back as 4 KiB entries, and it maps at 4 KiB.
 */
static int snp_make_private(struct gmem_vm *vm, uint64_t gfn, uint64_t pfn,
			    uint64_t nr)
{
	for (uint64_t i = 0; i < nr; ) {
		bool huge = !((pfn + i) % RMP_2M_PAGES) &&
			    !((gfn + i) % RMP_2M_PAGES) && nr - i >= RMP_2M_PAGES &&
			    chunk_unassigned(vm_pool(vm), pfn + i);
		uint64_t n = huge ? RMP_2M_PAGES : 1;

		for (uint64_t j = i; j < i + n; j++) {
			int ret = assign(vm, gfn + j, pfn + j, huge);

			if (ret)
				return ret;
		}
		i += n;
	}
	return 0;
}

/* PSMASH: the 2 MiB entry holding @pfn becomes 512 4 KiB entries, state kept. */
static void psmash(struct gmem_pool *pool, uint64_t pfn)
{
	uint64_t first = pfn & ~(RMP_2M_PAGES - 1);

	for (uint64_t i = first; i < first + RMP_2M_PAGES; i++) {
		uint64_t e = frame_get(pool, i);

		if (e & RMP_2M)
			frame_set_arch(pool, i, e & ~RMP_2M);
	}
}

/* A 2 MiB entry at the edge of [pfn, pfn+nr) that the range cuts: smash it. */
static void smash_edges(struct gmem_pool *pool, uint64_t pfn, uint64_t nr)
{
	if ((frame_get(pool, pfn) & RMP_2M) &&
	    (pfn % RMP_2M_PAGES || nr < RMP_2M_PAGES))
		psmash(pool, pfn);
	if ((frame_get(pool, pfn + nr - 1) & RMP_2M) &&
	    (pfn + nr) % RMP_2M_PAGES)
		psmash(pool, pfn + nr - 1);
}

/*
 * rmp_make_shared: the frames go back to the hypervisor, content lost. Part
 * of a 2 MiB entry cannot go alone: the entry is smashed first, as the
 * kernel's invalidation does before RMPUPDATE on a 4 KiB page inside it.
 */
static void snp_make_shared(struct gmem_pool *pool, uint64_t pfn, uint64_t nr)
{
	smash_edges(pool, pfn, nr);
	frames_release(pool, pfn, nr, RMP_ASSIGNED);
}

/*
 * The free path: the same state change, but the frames leave the file, so
 * they are discarded whole rather than cleared where they are.
 */
static void snp_reclaim(struct gmem_pool *pool, uint64_t pfn, uint64_t nr)
{
	smash_edges(pool, pfn, nr);
	for (uint64_t i = pfn; i < pfn + nr; i++)
		if (frame_get(pool, i) & RMP_ASSIGNED)
			frame_set_arch(pool, i, 0);
	frames_discard(pool, pfn, nr);
}

static void snp_legacy_invalidate(struct gmem_pool *pool, uint64_t start,
				  uint64_t end)
{
	snp_make_shared(pool, start, end - start);
}

static int snp_post_populate(struct gmem_vm *vm, uint64_t gfn, uint64_t pfn)
{
	if (frame_get(vm_pool(vm), pfn) & RMP_ASSIGNED)
		return -EEXIST;
	frame_set_arch(vm_pool(vm), pfn, rmp_entry(vm_guest_id(vm), gfn));
	return 0;
}

static int snp_max_mapping_level(struct gmem_vm *vm, uint64_t pfn)
{
	uint64_t e = frame_get(vm_pool(vm), pfn);

	return (e & RMP_ASSIGNED) && (e & RMP_2M) ? 1 : 0;
}

static const char *snp_check_page(struct gmem_vm *vm, uint64_t pfn,
				  uint64_t gfn, bool private, bool mapped)
{
	uint64_t e = frame_get(vm_pool(vm), pfn);

	if (private && mapped) {
		if (!(e & RMP_ASSIGNED))
			return "RMP: a private page is mapped for the guest but its frame is not assigned";
		if (frame_guest(e) != vm_guest_id(vm) || e >> RMP_GFN_SHIFT != gfn)
			return "RMP: a private page's entry names another guest or gfn";
	}
	if (!private && (e & RMP_ASSIGNED))
		return "RMP: a shared page's frame is still assigned: a host write to it is an RMP violation";
	return NULL;
}

static const char *snp_check_reclaimed(struct gmem_pool *pool, uint64_t pfn)
{
	if (frame_get(pool, pfn) & RMP_ASSIGNED)
		return "RMP: a freed frame is still assigned to a guest";
	return NULL;
}

static int snp_describe(struct gmem_pool *pool, uint64_t pfn, char *buf,
			size_t len)
{
	uint64_t e = frame_get(pool, pfn);

	if (!(e & RMP_ASSIGNED))
		return snprintf(buf, len, "rmp hypervisor");
	return snprintf(buf, len, "rmp assigned asid=%u gfn=%#llx %s%s",
			frame_guest(e), (unsigned long long)(e >> RMP_GFN_SHIFT),
			e & RMP_2M ? "2M" : "4K",
			e & RMP_VALIDATED ? " validated" : "");
}

const struct gmem_arch gmem_arch_snp = {
	.name = "snp",
	.forbids_leak = true,
	.make_private = snp_make_private,
	.reclaim = snp_reclaim,
	.make_shared = snp_make_shared,
	.post_populate = snp_post_populate,
	.max_mapping_level = snp_max_mapping_level,
	.legacy_invalidate = snp_legacy_invalidate,
	.check_page = snp_check_page,
	.check_reclaimed = snp_check_reclaimed,
	.describe = snp_describe,
};
