// SPDX-License-Identifier: MIT
/*
 * pkvm: arm64 protected KVM. The model is EL2's ownership of each frame:
 * owned by the host, owned by a guest, or owned by a guest and shared with
 * the host. There is no encryption: the host is kept out of guest frames by
 * ownership alone, and both conversion directions keep the frame and every
 * byte in it.
 *
 *   make_private   the host donates the frame to the guest (first private
 *                  fault); repeats are no-ops
 *   guest_convert  the guest's share/unshare hypercall: EL2 flips ownership
 *                  before the VMM records the conversion, which is why pKVM
 *                  needs no make_shared hook
 *   reclaim        scrub, then give the frame back to the host
 *   legacy         one hook for both callers cannot know which it serves; a
 *                  freed frame must never reach the host with guest data, so
 *                  it scrubs and returns the frame every time, and so
 *                  destroys the content of every private->shared conversion
 *
 * Rules checked: a private page mapped for the guest is owned by it; the
 * host can reach no guest-owned frame; a freed frame is host-owned.
 */
#include <errno.h>
#include <stdio.h>

#include "../arch.h"

#define OWNER_MASK	3ULL
#define OWNER_HOST	0ULL
#define OWNER_GUEST	1ULL
#define OWNER_SHARED	2ULL	/* guest-owned, shared with the host */

/* The owner, and for a guest its VMID (frame_guest). */
static uint64_t owned_by(uint64_t owner, uint16_t vmid)
{
	return owner | frame_guest_bits(vmid);
}

static int pkvm_make_private(struct gmem_vm *vm, uint64_t gfn, uint64_t pfn,
			     uint64_t nr)
{
	for (uint64_t i = pfn; i < pfn + nr; i++) {
		uint64_t e = frame_get(vm_pool(vm), i);

		if ((e & OWNER_MASK) != OWNER_HOST && frame_guest(e) != vm_guest_id(vm))
			return -EPERM;	/* another guest's frame */
		frame_set_arch(vm_pool(vm), i, owned_by(OWNER_GUEST, vm_guest_id(vm)));
	}
	return 0;
}

static void pkvm_guest_convert(struct gmem_vm *vm, uint64_t pfn, uint64_t nr,
			       bool to_private)
{
	for (uint64_t i = pfn; i < pfn + nr; i++) {
		uint64_t owner = frame_get(vm_pool(vm), i) & OWNER_MASK;

		if (to_private && owner == OWNER_SHARED)
			frame_set_arch(vm_pool(vm), i, owned_by(OWNER_GUEST, vm_guest_id(vm)));
		else if (!to_private && owner == OWNER_GUEST)
			frame_set_arch(vm_pool(vm), i, owned_by(OWNER_SHARED, vm_guest_id(vm)));
	}
}

static void pkvm_reclaim(struct gmem_pool *pool, uint64_t pfn, uint64_t nr)
{
	frames_discard(pool, pfn, nr);
	for (uint64_t i = pfn; i < pfn + nr; i++)
		frame_set_arch(pool, i, OWNER_HOST);
}

static void pkvm_legacy_invalidate(struct gmem_pool *pool, uint64_t start,
				   uint64_t end)
{
	pkvm_reclaim(pool, start, end - start);
}

static int pkvm_post_populate(struct gmem_vm *vm, uint64_t gfn, uint64_t pfn)
{
	if ((frame_get(vm_pool(vm), pfn) & OWNER_MASK) == OWNER_GUEST)
		return -EEXIST;
	return pkvm_make_private(vm, gfn, pfn, 1);
}

static const char *pkvm_check_page(struct gmem_vm *vm, uint64_t pfn,
				   uint64_t gfn, bool private, bool mapped)
{
	uint64_t e = frame_get(vm_pool(vm), pfn);

	if (private && mapped &&
	    ((e & OWNER_MASK) != OWNER_GUEST || frame_guest(e) != vm_guest_id(vm)))
		return "pKVM: a private page is mapped for the guest but the guest does not own its frame";
	if (!private && (e & OWNER_MASK) == OWNER_GUEST)
		return "pKVM: the host can reach a shared page whose frame the guest owns";
	return NULL;
}

static const char *pkvm_check_reclaimed(struct gmem_pool *pool, uint64_t pfn)
{
	if ((frame_get(pool, pfn) & OWNER_MASK) != OWNER_HOST)
		return "pKVM: a freed frame was not returned to the host";
	return NULL;
}

static int pkvm_describe(struct gmem_pool *pool, uint64_t pfn, char *buf,
			 size_t len)
{
	static const char *const names[] = { "host", "guest", "shared", "?" };
	uint64_t e = frame_get(pool, pfn);

	if ((e & OWNER_MASK) == OWNER_HOST)
		return snprintf(buf, len, "pkvm host");
	return snprintf(buf, len, "pkvm %s vm=%u", names[e & OWNER_MASK], frame_guest(e));
}

const struct gmem_arch gmem_arch_pkvm = {
	.name = "pkvm",
	.keeps_content = true,
	.forbids_leak = true,
	.make_private = pkvm_make_private,
	.reclaim = pkvm_reclaim,
	.post_populate = pkvm_post_populate,
	.legacy_invalidate = pkvm_legacy_invalidate,
	.guest_convert = pkvm_guest_convert,
	.check_page = pkvm_check_page,
	.check_reclaimed = pkvm_check_reclaimed,
	.describe = pkvm_describe,
};
