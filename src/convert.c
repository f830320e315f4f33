// SPDX-License-Identifier: MIT
/*
 * In-place conversion: gmem_set_attributes, the KVM_SET_MEMORY_ATTRIBUTES2
 * analogue. The steps, in the order the kernel takes them:
 *
 *   validate -> lock exclusive -> already in state? (merge what can merge)
 *   -> (to private) revoke host mappings (and fork children's: process.c),
 *      refuse pages still referenced
 *   -> which huge folios split, which merge (a pinned one does not)
 *   -> point of no return: invalidate start -> (to shared) arch make_shared
 *   -> store attributes -> split/merge huge folios
 *   -> (to shared) host mappings regain access
 *   -> invalidate end -> unlock
 *
 * Everything that can fail happens before the point of no return, so a
 * failed conversion leaves attributes, mappings and contents as they were.
 */
#include "common.h"
#include "arch.h"
#include "attr.h"
#include "brlock.h"
#include "check.h"
#include "file.h"
#include "mapping.h"
#include "pin.h"
#include "pool.h"
#include "poison.h"
#include "vm.h"

/*
 * The arch's steps over each run of present pages (folio_for_each_run): the
 * kernel's walk of the folios of a range, each clipped to it.
 */
struct conversion {
	struct gmem_vm *vm;
	bool to_private;
};

/* To shared: the arch's make_shared, or the legacy contract's one hook. */
static void make_shared(uint64_t pfn, uint64_t nr, void *arg)
{
	struct conversion *c = arg;

	arch_make_shared(c->vm, pfn, nr);
}

static void guest_convert(uint64_t pfn, uint64_t nr, void *arg)
{
	struct conversion *c = arg;

	arch_guest_convert(c->vm, pfn, nr, c->to_private);
}

/*
 * Where to-shared conversion destroys the content (snp, tdx), the frames hold
 * no guest-private data any more: they owe no reclaim for it.
 */
static void forget_private(uint64_t pfn, uint64_t nr, void *arg)
{
	struct conversion *c = arg;

	for (uint64_t i = pfn; i < pfn + nr; i++)
		frame_forget_private(c->vm->pool, i);
}

static int restore_run(struct gmem_file *file, uint64_t start, uint64_t end,
		       void *arg)
{
	mapping_restore(file, start, end);
	return 0;
}

/* Give back host access to the shared parts of [start, end). */
static void restore_shared(struct gmem_file *file, uint64_t start, uint64_t end)
{
	file_for_each_attr_run(file, start, end, false, restore_run, NULL);
}

/*
 * To private: no host mapping may keep reaching the range, and no one may
 * hold a page of it (a pin, the analogue of an elevated folio refcount).
 */
static int make_unreachable(struct gmem_file *file, uint64_t start,
			    uint64_t end, uint64_t *err_index)
{
	uint64_t pinned;
	int ret = mapping_revoke(file, start, end);

	if (ret) {
		restore_shared(file, start, end);
		*err_index = start;
		if (ret == -EAGAIN)
			/* As an extra reference would: try again once it answers. */
			return gmem_err(EAGAIN, "gmem_set_attributes: a fork child that inherited a mapping of the file did not answer in time");
		return gmem_err(ENOMEM, "gmem_set_attributes: cannot revoke host mappings");
	}
	if (pin_first_in_range(file, start, end, &pinned)) {
		restore_shared(file, start, end);
		*err_index = pinned;
		return gmem_err(EAGAIN, "gmem_set_attributes: page at file offset %#llx is pinned",
				(unsigned long long)(pinned << PAGE_SHIFT));
	}
	return 0;
}

/*
 * The range is in the requested state already: nothing converts, and no
 * arch hook runs, but a split huge block of it that can merge now (its holes
 * refilled, or its pin gone) does, as a conversion would merge it.
 */
static void merge_in_place(struct gmem_file *file, uint64_t start,
			   uint64_t end, uint64_t attrs)
{
	uint64_t zap_start, zap_end;
	bool started;

	if (!huge_convert_prepare(file, start, end, attrs, &zap_start, &zap_end))
		return;
	started = file_invalidate_start_wide(file, start, start, S2_ZAP_ALL,
					     zap_start, zap_end);
	huge_convert_commit(file, start, end, attrs);
	file_invalidate_end(file, started);
}

static int set_attributes(struct gmem_file *file, uint64_t start,
			  uint64_t end, uint64_t attrs, uint64_t *err_index)
{
	bool to_private = attrs & GMEM_ATTR_PRIVATE;
	struct conversion c = { .vm = file->vm, .to_private = to_private };
	uint64_t zap_start, zap_end;
	bool started;
	int ret;

	if (attr_range_is(&file->attrs, start, end, attrs)) {
		merge_in_place(file, start, end, attrs);
		return 0;
	}
	if (to_private) {
		ret = make_unreachable(file, start, end, err_index);
		if (ret)
			return ret;
	}
	huge_convert_prepare(file, start, end, attrs, &zap_start, &zap_end);

	/* Point of no return. */
	started = file_invalidate_start_wide(file, start, end,
					     to_private ? S2_ZAP_SHARED : S2_ZAP_PRIVATE,
					     zap_start, zap_end);
	if (file->vm->arch->guest_convert)
		folio_for_each_run(file, start, end, guest_convert, &c);
	if (!to_private && arch_wants_make_shared(file->vm))
		folio_for_each_run(file, start, end, make_shared, &c);
	if (!to_private && !file->vm->arch->keeps_content)
		folio_for_each_run(file, start, end, forget_private, &c);
	attr_set(&file->attrs, start, end, attrs);
	poison_attribute(file, start, end, to_private);
	bitmap_assign(file->flipped, start, end,
		      to_private == !!(file->flags & GMEM_FLAG_INIT_SHARED));
	huge_convert_commit(file, start, end, attrs);
	if (!to_private)
		mapping_restore(file, start, end);
	file_invalidate_end(file, started);
	return 0;
}

/*
 * The conversion both public forms share: @file held, @offset and @size
 * still to be checked against it. @fn names the call in messages.
 */
static int convert_file(struct gmem_file *file, uint64_t offset, uint64_t size,
			uint64_t attributes, uint64_t flags, uint64_t *err_index,
			bool *tried, const char *fn)
{
	struct conversion_snapshot *snap;
	int ret;

	if (flags)
		return gmem_err(EINVAL, "%s: flags %#llx must be 0", fn,
				(unsigned long long)flags);
	if (attributes & ~GMEM_ATTR_PRIVATE)
		return gmem_err(EINVAL, "%s: unknown attributes %#llx", fn,
				(unsigned long long)attributes);
	ret = file_check_range(file, offset, size, fn);
	if (ret)
		return ret;
	brlock_write_lock(&file->invalidate_lock);
	snap = check_snapshot(file, offset >> PAGE_SHIFT,
			      (offset + size) >> PAGE_SHIFT);
	*tried = true;
	ret = set_attributes(file, offset >> PAGE_SHIFT,
			     (offset + size) >> PAGE_SHIFT, attributes, err_index);
	check_conversion(file, snap, ret != 0);
	brlock_write_unlock(&file->invalidate_lock);
	check_after(file->vm, fn);
	return ret;
}

GMEM_API int gmem_set_attributes(int fd, uint64_t offset, uint64_t size,
				 uint64_t attributes, uint64_t flags,
				 uint64_t *error_offset)
{
	KEEP_ERRNO();
	struct gmem_file *file;
	uint64_t err_index = 0;
	bool tried = false;
	int ret = file_get(fd, "gmem_set_attributes", &file);

	if (ret)
		return ret;
	ret = convert_file(file, offset, size, attributes, flags, &err_index,
			   &tried, "gmem_set_attributes");
	if (ret && tried && error_offset)
		*error_offset = err_index << PAGE_SHIFT;
	file_put(file);
	return ret;
}

/*
 * The gpa form: the memslot at @gpa names the file and the offset. The
 * range must lie in that one memslot (a file's conversion is all or
 * nothing; two memslots may be two files). The file is held from the
 * lookup on, so the call converts what was bound when it was made, as if
 * it ran just before a racing unbind.
 */
GMEM_API int gmem_vm_set_attributes(int vmh, uint64_t gpa, uint64_t size,
				    uint64_t attributes, uint64_t flags,
				    uint64_t *error_gpa)
{
	KEEP_ERRNO();
	struct gmem_file *file = NULL;
	struct memslot *slot;
	struct gmem_vm *vm;
	uint64_t offset = 0, err_index = 0, slot_start = 0, slot_end = 0;
	bool tried = false;
	int ret = vm_enter(vmh, "gmem_vm_set_attributes", &vm);

	if (ret)
		return ret;
	slot = vm_find_slot(vm, gpa >> PAGE_SHIFT);
	if (slot) {
		slot_start = slot->base_gfn << PAGE_SHIFT;
		slot_end = slot_start + (slot->npages << PAGE_SHIFT);
		offset = (slot->pgoff << PAGE_SHIFT) + (gpa - slot_start);
		file = slot->file;
		file_get_ref(file);
	}
	vm_exit(vm);
	if (!file)
		return gmem_err(EFAULT, "gmem_vm_set_attributes: nothing bound at gpa %#llx",
				(unsigned long long)gpa);
	if (size > slot_end - gpa)
		ret = gmem_err(EINVAL, "gmem_vm_set_attributes: gpa %#llx+%#llx runs past the memslot's end at gpa %#llx",
			       (unsigned long long)gpa, (unsigned long long)size,
			       (unsigned long long)slot_end);
	else
		ret = convert_file(file, offset, size, attributes, flags, &err_index,
				   &tried, "gmem_vm_set_attributes");
	if (ret && tried && error_gpa)
		*error_gpa = gpa + ((err_index << PAGE_SHIFT) - offset);
	file_put(file);
	return ret;
}
