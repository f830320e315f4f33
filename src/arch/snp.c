// SPDX-License-Identifier: MIT
/*
 * snp: AMD SEV-SNP. The model is the RMP: one entry per frame saying whether
 * it is assigned to a guest, which guest (ASID), at which guest frame, the
 * entry's page size, and whether the guest validated it.
 *
 *   make_private   assign the frame to the guest (repeats are no-ops)
 *   make_shared    back to the hypervisor; the guest's content is lost
 *   reclaim        the same, on the free path
 *   post_populate  SNP_LAUNCH_UPDATE: the frame must be unassigned; assign
 *                  it, measured and validated, keeping the loaded content
 *   legacy         rmp_make_shared serves both callers equally well
 *
 * Rules checked: a private page mapped for the guest has an entry assigned
 * to that guest at that gfn; a shared page's frame is not assigned (a host
 * write would be an RMP violation); a freed frame is not assigned.
 */
#include <stdio.h>

#include "../internal.h"

#define RMP_ASSIGNED	(1ULL << 0)
#define RMP_VALIDATED	(1ULL << 1)
#define RMP_2M		(1ULL << 2)
#define RMP_ASID_SHIFT	8
#define RMP_GFN_SHIFT	24

static uint64_t rmp_entry(uint16_t asid, uint64_t gfn)
{
	return RMP_ASSIGNED | RMP_VALIDATED |
	       ((uint64_t)asid << RMP_ASID_SHIFT) | (gfn << RMP_GFN_SHIFT);
}

static uint16_t rmp_asid(uint64_t e)
{
	return (e >> RMP_ASID_SHIFT) & 0xffff;
}

static int snp_make_private(struct gmem_vm *vm, uint64_t gfn, uint64_t pfn,
			    uint64_t nr)
{
	for (uint64_t i = 0; i < nr; i++) {
		uint64_t e = frame_get(vm->pool, pfn + i);

		if (e & RMP_ASSIGNED) {
			if (rmp_asid(e) != vm->id)
				return -EINVAL;	/* another guest's frame */
			if (e >> RMP_GFN_SHIFT == gfn + i)
				continue;
			/* Rebound at another gfn: RMPUPDATE the entry to match. */
		}
		frame_set_arch(vm->pool, pfn + i, rmp_entry(vm->id, gfn + i));
	}
	return 0;
}

/* rmp_make_shared: the frames go back to the hypervisor, content lost. */
static void snp_make_shared(struct gmem_pool *pool, uint64_t pfn, uint64_t nr)
{
	uint64_t start = pfn, end = pfn + nr;

	for (uint64_t i = start; i < end; i++) {
		if (!(frame_get(pool, i) & RMP_ASSIGNED))
			continue;
		frame_set_arch(pool, i, 0);
		frames_clear_content(pool, i, 1);
	}
}

static void snp_legacy_invalidate(struct gmem_pool *pool, uint64_t start,
				  uint64_t end)
{
	snp_make_shared(pool, start, end - start);
}

static int snp_post_populate(struct gmem_vm *vm, uint64_t gfn, uint64_t pfn)
{
	if (frame_get(vm->pool, pfn) & RMP_ASSIGNED)
		return -EEXIST;
	frame_set_arch(vm->pool, pfn, rmp_entry(vm->id, gfn));
	return 0;
}

static int snp_max_mapping_level(struct gmem_vm *vm, uint64_t pfn)
{
	uint64_t e = frame_get(vm->pool, pfn);

	return (e & RMP_ASSIGNED) && (e & RMP_2M) ? 1 : 0;
}

static const char *snp_check_page(struct gmem_vm *vm, uint64_t pfn,
				  uint64_t gfn, bool private, bool mapped)
{
	uint64_t e = frame_get(vm->pool, pfn);

	if (private && mapped) {
		if (!(e & RMP_ASSIGNED))
			return "RMP: a private page is mapped for the guest but its frame is not assigned";
		if (rmp_asid(e) != vm->id || e >> RMP_GFN_SHIFT != gfn)
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
			rmp_asid(e), (unsigned long long)(e >> RMP_GFN_SHIFT),
			e & RMP_2M ? "2M" : "4K",
			e & RMP_VALIDATED ? " validated" : "");
}

const struct gmem_arch gmem_arch_snp = {
	.name = "snp",
	.forbids_leak = true,
	.make_private = snp_make_private,
	.reclaim = snp_make_shared,
	.make_shared = snp_make_shared,
	.post_populate = snp_post_populate,
	.max_mapping_level = snp_max_mapping_level,
	.legacy_invalidate = snp_legacy_invalidate,
	.check_page = snp_check_page,
	.check_reclaimed = snp_check_reclaimed,
	.describe = snp_describe,
};
