// SPDX-License-Identifier: MIT
/*
 * Launch-time population of private memory: the kvm_gmem_populate analogue
 * behind SNP_LAUNCH_UPDATE and TDX INIT_MEM_REGION. Page by page, under the
 * file's invalidate lock exclusive: the page must be private; its folio is
 * created (zero) if needed; the source is copied in, or with no source the
 * page keeps what was written while it was shared (in-place conversion);
 * then the arch's post_populate takes the frame over.
 */
#include <string.h>

#include "common.h"
#include "arch.h"
#include "attr.h"
#include "file.h"
#include "pool.h"
#include "poison.h"
#include "vm.h"

static int populate_page(struct gmem_vm *vm, uint64_t gfn, const uint8_t *src)
{
	struct memslot *slot = vm_find_slot(vm, gfn);
	struct gmem_file *file;
	uint64_t index, pfn;
	int ret = 0;

	if (!slot)
		return gmem_err(EFAULT, "gmem_vm_populate: nothing bound at gpa %#llx",
				(unsigned long long)(gfn << PAGE_SHIFT));
	file = slot->file;
	index = slot_index(slot, gfn);
	pfn = file_pfn(file, index);

	brlock_write_lock(&file->invalidate_lock);
	if (!(attr_lookup(&file->attrs, index, NULL, NULL) & GMEM_ATTR_PRIVATE)) {
		ret = gmem_err(EINVAL, "gmem_vm_populate: gpa %#llx is not private",
			       (unsigned long long)(gfn << PAGE_SHIFT));
		goto out;
	}
	/*
	 * kvm_gmem_populate refuses a folio already prepared for the guest
	 * (-EEXIST) whatever the arch: the guest may be running on it. Archs
	 * with hardware state refuse in post_populate; sw has none to ask, so
	 * the frame's own mark tells (set by a private fault or a populate,
	 * cleared by reclaim).
	 */
	if (!vm->arch->post_populate &&
	    frame_was_private(vm->pool, pfn)) {
		ret = gmem_err(EEXIST, "gmem_vm_populate: gpa %#llx is already the guest's",
			       (unsigned long long)(gfn << PAGE_SHIFT));
		goto out;
	}
	ret = arch_post_populate(vm, gfn, pfn);
	if (ret) {
		ret = gmem_err(-ret, "gmem_vm_populate: the arch refused gpa %#llx (already taken?)",
			       (unsigned long long)(gfn << PAGE_SHIFT));
		goto out;
	}
	/* post_populate checked the frame was free; now load and hand over. */
	folio_sync_host_touched(file, index, index + 1);
	folio_alloc(file, index);
	if (src) {
		/*
		 * Loading launch content is the one host write into a private
		 * page: the frame is not yet the guest's (post_populate measures
		 * what lands here). The exclusive lock keeps the window private.
		 */
		frames_unpoison(vm->pool, pfn, 1);
		memcpy(pool_va(vm->pool, pfn), src, PAGE_SIZE);
		frames_poison(vm->pool, pfn, 1);
	}
	frame_mark_private(vm->pool, pfn);
out:
	brlock_write_unlock(&file->invalidate_lock);
	return ret;
}

GMEM_API int64_t gmem_vm_populate(int vmh, uint64_t gpa, const void *src,
				  uint64_t len, uint64_t flags)
{
	KEEP_ERRNO();
	const uint8_t *p = src;
	struct gmem_vm *vm;
	int64_t done = 0;
	int ret;

	/* The handle first: a fork child's is -EIO before anything else. */
	ret = vm_enter(vmh, "gmem_vm_populate", &vm);
	if (ret)
		return ret;
	if (flags)
		ret = gmem_err(EINVAL, "gmem_vm_populate: flags %#llx must be 0",
			       (unsigned long long)flags);
	else if (!len)
		ret = gmem_err(EINVAL, "gmem_vm_populate: len is 0");
	else if (!ALIGNED(gpa, PAGE_SIZE) || !ALIGNED(len, PAGE_SIZE))
		ret = gmem_err(EINVAL, "gmem_vm_populate: gpa %#llx len %#llx is not 4 KiB aligned",
			       (unsigned long long)gpa, (unsigned long long)len);
	else if (gpa + len < gpa)
		ret = gmem_err(EINVAL, "gmem_vm_populate: gpa %#llx + len %#llx wraps",
			       (unsigned long long)gpa, (unsigned long long)len);
	if (ret) {
		vm_exit(vm);
		return ret;
	}
	for (uint64_t off = 0; off < len; off += PAGE_SIZE, done++) {
		ret = populate_page(vm, (gpa + off) >> PAGE_SHIFT,
				    p ? p + off : NULL);
		if (ret)
			break;
	}
	vm_exit_checked(vm, "gmem_vm_populate");
	return done ? done : ret;
}
