// SPDX-License-Identifier: MIT
/*
 * gmem files: create, fallocate (allocate, punch hole), queries, release.
 * A file holds a reference on its VM (as a guest_memfd pins its KVM); the
 * file lives while its handle or any host mapping refers to it.
 */
#include <stdlib.h>

#include "common.h"
#include "check.h"
#include "file.h"
#include "handle.h"
#include "inject.h"
#include "lock.h"
#include "mapping.h"
#include "pin.h"
#include "pool.h"
#include "process.h"
#include "vm.h"

/* Frames: 2 MiB at least, the folio size of a huge file, so folios stay aligned. */
#define WINDOW_ALIGN	512

static atomic_uint next_uid;

static void file_release(struct obj *o);

int file_get(int fd, const char *fn, struct gmem_file **file)
{
	return obj_get(fd, OBJ_FILE, fn, (void **)file);
}

void file_get_ref(struct gmem_file *file)
{
	obj_get_ref(&file->obj);
}

void file_put(struct gmem_file *file)
{
	obj_put(&file->obj);
}

/* The file's mutexes: made at create, gone at release. */
static void file_mutexes_init(struct gmem_file *file)
{
	pthread_mutex_init(&file->mappings_lock, NULL);
	pthread_mutex_init(&file->pins_lock, NULL);
	for (int i = 0; i < FILE_PREPARE_LOCKS; i++)
		pthread_mutex_init(&file->prepare_locks[i], NULL);
}

static void file_mutexes_destroy(struct gmem_file *file)
{
	pthread_mutex_destroy(&file->mappings_lock);
	pthread_mutex_destroy(&file->pins_lock);
	for (int i = 0; i < FILE_PREPARE_LOCKS; i++)
		pthread_mutex_destroy(&file->prepare_locks[i]);
}

/* The kernel's range checks: overflow, alignment, inside the file. */
int file_check_range(struct gmem_file *file, uint64_t offset, uint64_t len,
		     const char *fn)
{
	if (!len)
		return gmem_err(EINVAL, "%s: size is 0", fn);
	if (offset + len < offset)
		return gmem_err(EINVAL, "%s: file offset %#llx + size %#llx wraps",
				fn, (unsigned long long)offset,
				(unsigned long long)len);
	if (!ALIGNED(offset, PAGE_SIZE))
		return gmem_err(EINVAL, "%s: file offset %#llx is not 4 KiB aligned",
				fn, (unsigned long long)offset);
	if (!ALIGNED(len, PAGE_SIZE))
		return gmem_err(EINVAL, "%s: size %#llx is not a multiple of 4 KiB",
				fn, (unsigned long long)len);
	if (offset + len > file->size)
		return gmem_err(EINVAL, "%s: file range [%#llx, %#llx) is past the end of the file (%#llx)",
				fn, (unsigned long long)offset,
				(unsigned long long)(offset + len),
				(unsigned long long)file->size);
	return 0;
}

static size_t file_metadata_bytes(struct gmem_file *file)
{
	return sizeof(*file) + 2 * bitmap_bytes(file->npages) +
	       attr_bytes(&file->attrs) + file->nblocks * (sizeof(*file->blocks) +
				sizeof(*file->block_pages) + sizeof(*file->unprepared));
}

GMEM_API int gmem_create(int vmh, uint64_t size, uint64_t flags)
{
	KEEP_ERRNO();
	struct gmem_file *file;
	struct gmem_vm *vm;
	struct gmem_pool *pool;
	uint64_t attr, align;
	bool fresh;
	int ret, order;

	ret = obj_get(vmh, OBJ_VM, "gmem_create", (void **)&vm);
	if (ret)
		return ret;
	pool = vm->pool;
	if (flags & ~(GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED |
		      GMEM_FLAG_HUGE_2M | GMEM_FLAG_HUGE_1G)) {
		ret = gmem_err(EINVAL, "gmem_create: unknown flags %#llx",
			       (unsigned long long)(flags & ~(GMEM_FLAG_MMAP |
					GMEM_FLAG_INIT_SHARED | GMEM_FLAG_HUGE_2M |
					GMEM_FLAG_HUGE_1G)));
		goto out_vm;
	}
	if (huge_order_of_flags(flags) < 0) {
		ret = gmem_err(EINVAL, "gmem_create: GMEM_FLAG_HUGE_2M and GMEM_FLAG_HUGE_1G together");
		goto out_vm;
	}
	order = huge_order_of_flags(flags);
	if (!size) {
		ret = gmem_err(EINVAL, "gmem_create: size is 0");
		goto out_vm;
	}
	if (!ALIGNED(size, PAGE_SIZE << order)) {
		ret = gmem_err(EINVAL, "gmem_create: size %#llx is not a multiple of the folio size (%llu KiB)",
			       (unsigned long long)size,
			       (unsigned long long)((PAGE_SIZE << order) >> 10));
		goto out_vm;
	}
	if (size > MAX_FILE_SIZE) {
		ret = gmem_err(EINVAL, "gmem_create: size %#llx is above 64 TiB",
			       (unsigned long long)size);
		goto out_vm;
	}
	file = obj_alloc(OBJ_FILE, sizeof(*file),
			 offsetof(struct gmem_file, vm), &fresh);
	if (!file) {
		ret = gmem_err(ENOMEM, "gmem_create: out of memory");
		goto out_vm;
	}
	if (fresh)
		brlock_init(&file->invalidate_lock);
	file->obj.release = file_release;
	file->vm = vm;		/* keeps the reference obj_get took */
	/* Names the file to fork children, whose copies of handles mean nothing. */
	file->uid = (uint64_t)process_pid() << 32 | atomic_fetch_add(&next_uid, 1);
	file->size = size;
	file->npages = size >> PAGE_SHIFT;
	file->flags = flags;
	file->order = order;
	align = MAX(WINDOW_ALIGN, file_folio_pages(file));
	file->window_frames = (file->npages + align - 1) & ~(align - 1);
	ret = pool_reserve_window(pool, file->window_frames, align,
				  &file->base_pfn);
	if (ret) {
		ret = gmem_err(-ret, "gmem_create: no room for a window of %llu KiB in the pool",
			       (unsigned long long)(file->window_frames << (PAGE_SHIFT - 10)));
		goto out_obj;
	}
	if (pool_advise_huge(pool, file->base_pfn, file->window_frames, order)) {
		ret = gmem_err(ENOMEM, "gmem_create: cannot set the host page size of the file's frames");
		goto out_window;
	}
	file->present = try_calloc(1, bitmap_bytes(file->npages));
	file->flipped = try_calloc(1, bitmap_bytes(file->npages));
	attr = (flags & GMEM_FLAG_INIT_SHARED) ? 0 : GMEM_ATTR_PRIVATE;
	if (!file->present || !file->flipped || huge_init(file) ||
	    attr_init(&file->attrs, file->npages, attr)) {
		ret = gmem_err(ENOMEM, "gmem_create: out of memory");
		goto out_window;
	}
	file_mutexes_init(file);
	if (vm_add_file(vm, file)) {
		ret = gmem_err(ENOMEM, "gmem_create: out of memory");
		file_mutexes_destroy(file);
		attr_destroy(&file->attrs);
		goto out_window;
	}
	atomic_fetch_add(&pool->files, 1);
	atomic_fetch_add(&pool->metadata_bytes, file_metadata_bytes(file));
	ret = obj_install(&file->obj);
	if (ret < 0) {
		gmem_err(EMFILE, "gmem_create: no free handle");
		file_put(file);
	}
	return ret;

out_window:
	free(file->present);
	free(file->flipped);
	huge_destroy(file);
	if (order)
		pool_advise_huge(pool, file->base_pfn, file->window_frames, false);
	pool_release_window(pool, file->base_pfn, file->window_frames);
out_obj:
	obj_recycle(&file->obj);
out_vm:
	vm_put(vm);
	return ret;
}

/*
 * The last reference is gone: detach from the VM (later faults through its
 * slots see nothing bound), then free every folio through reclaim.
 */
static void file_release(struct obj *o)
{
	struct gmem_file *file = (struct gmem_file *)o;
	struct gmem_vm *vm = file->vm;
	struct gmem_pool *pool = vm->pool;
	bool started, lost = false;

	brlock_write_lock(&vm->slots_lock);
	brlock_write_lock(&file->invalidate_lock);
	started = file_invalidate_start(file, 0, file->npages, S2_ZAP_ALL);
	while (file->nbindings)
		vm_remove_slot(vm, file->bindings[0]);
	file_invalidate_end(file, started);
	/* Nobody can unpin any more: the pins go with the file. */
	free(file->pins);
	file->pins = NULL;
	file->npins = 0;
	folio_sync_host_touched(file, 0, file->npages);
	folio_free_range(file, 0, file->npages);
	/*
	 * This process has no mapping left, but a fork child may still map the
	 * window, which the next file will reuse: fence all of it there. A child
	 * that cannot be reached keeps the window out of the pool for good.
	 */
	if (atomic_load(&file->mappings_ever))
		lost = sd_broadcast(file->uid, 0, file->npages, false) != 0;
	brlock_write_unlock(&file->invalidate_lock);
	brlock_write_unlock(&vm->slots_lock);

	vm_remove_file(vm, file);
	if (file->order)
		pool_advise_huge(pool, file->base_pfn, file->window_frames, false);
	if (lost)
		pool_discard(pool, file->base_pfn, file->window_frames);
	else
		pool_release_window(pool, file->base_pfn, file->window_frames);
	atomic_fetch_sub(&pool->metadata_bytes, file_metadata_bytes(file));
	atomic_fetch_sub(&pool->files, 1);
	free(file->present);
	free(file->flipped);
	huge_destroy(file);
	free(file->bindings);
	attr_destroy(&file->attrs);
	file_mutexes_destroy(file);
	obj_recycle(o);
	vm_put(vm);
}

GMEM_API int gmem_close(int fd)
{
	KEEP_ERRNO();
	struct gmem_vm *vm;
	struct obj *o;
	int ret = obj_close(fd, OBJ_FILE, "gmem_close", &o);

	if (ret)
		return ret;
	vm = ((struct gmem_file *)o)->vm;
	vm_get(vm);
	obj_put(o);
	check_after(vm, "gmem_close");
	vm_put(vm);
	return 0;
}

GMEM_API int64_t gmem_size(int fd)
{
	KEEP_ERRNO();
	struct gmem_file *file;
	int64_t size;
	int ret = file_get(fd, "gmem_size", &file);

	if (ret)
		return ret;
	size = (int64_t)file->size;
	file_put(file);
	return size;
}

int file_for_each_attr_run(struct gmem_file *file, uint64_t start,
			   uint64_t end, bool private,
			   int (*fn)(struct gmem_file *file, uint64_t start,
				     uint64_t end, void *arg),
			   void *arg)
{
	lock_assert_held(&file->invalidate_lock);
	while (start < end) {
		uint64_t run_end;
		uint64_t attr = attr_lookup(&file->attrs, start, NULL, &run_end);
		int ret;

		run_end = MIN(run_end, end);
		if (!(attr & GMEM_ATTR_PRIVATE) == !private &&
		    (ret = fn(file, start, run_end, arg)))
			return ret;
		start = run_end;
	}
	return 0;
}

/*
 * Allocate the folios of [start, end) and their memory, as the kernel's
 * fallocate does: whole huge folios for the absent blocks of a huge file
 * (host huge pages where the pool has them), 4 KiB folios for the holes of
 * a 4 KiB file or a split block. The pool's memory comes first, so a host
 * out of memory fails the call before the run it could not back enters the
 * page cache; runs allocated before it stay, as in the kernel. The pages
 * the host touched through a mapping are folios already (the kernel's shmem
 * fault made them): recorded first, they are not holes, so the call asks
 * the pool for nothing there and cannot fail for them.
 */
static int allocate(struct gmem_file *file, uint64_t start, uint64_t end)
{
	struct gmem_pool *pool = file->vm->pool;
	uint64_t pages = file_folio_pages(file);
	int ret = 0;

	brlock_read_lock(&file->invalidate_lock);
	folio_sync_host_touched(file, start, end);
	for (uint64_t i = folio_next_hole(file, start, end), run_end; i < end;
	     i = folio_next_hole(file, run_end, end)) {
		uint64_t lo = i & ~(pages - 1);
		bool absent = file->order &&
			      huge_block_state(file, i) == BLOCK_ABSENT;

		if (absent) {
			i = lo;
			run_end = lo + pages;
		} else {
			run_end = folio_next_present(file, i, end);
			if (file->order)
				run_end = MIN(run_end, lo + pages);
		}
		ret = pool_allocate(pool, file_pfn(file, i), run_end - i, absent);
		if (ret) {
			ret = gmem_err(-ret, "gmem_fallocate: the host has no memory for [%#llx, %#llx)",
				       (unsigned long long)(i << PAGE_SHIFT),
				       (unsigned long long)(run_end << PAGE_SHIFT));
			break;
		}
		if (absent)
			huge_alloc_block(file, i);
		else
			folio_alloc_range(file, i, run_end);
	}
	brlock_read_unlock(&file->invalidate_lock);
	return ret;
}

/* Fence one private run again; a failure leaves the rest to be tried. */
static int refence_run(struct gmem_file *file, uint64_t start, uint64_t end,
		       void *arg)
{
	mapping_revoke(file, start, end);
	return 0;
}

/*
 * Discarding frames truncates them out of the pool memfd, and truncating a
 * page that a racing direct-map access had just brought back unmaps it with
 * its guard markers, in every mapping. Put the fences of the private pages
 * back before anyone can look.
 */
static void refence_private(struct gmem_file *file, uint64_t start,
			    uint64_t end)
{
	file_for_each_attr_run(file, start, end, true, refence_run, NULL);
}

static int punch_hole(struct gmem_file *file, uint64_t start, uint64_t end)
{
	uint64_t zap_start, zap_end;
	bool started;

	end = MIN(end, file->npages);
	if (start >= end)
		return 0;
	brlock_write_lock(&file->invalidate_lock);
	huge_punch_zap_range(file, start, end, &zap_start, &zap_end);
	started = file_invalidate_start_wide(file, start, end, S2_ZAP_ALL,
					     zap_start, zap_end);
	folio_sync_host_touched(file, start, end);
	folio_free_range(file, start, end);
	refence_private(file, start, end);
	file_invalidate_end(file, started);
	brlock_write_unlock(&file->invalidate_lock);
	return 0;
}

GMEM_API int gmem_fallocate(int fd, int mode, uint64_t offset, uint64_t len)
{
	KEEP_ERRNO();
	struct gmem_file *file;
	int ret = file_get(fd, "gmem_fallocate", &file);

	if (ret)
		return ret;
	if (!len) {
		/* vfs_fallocate refuses an empty range before looking at the mode. */
		ret = gmem_err(EINVAL, "gmem_fallocate: len is 0");
	} else if (!(mode & GMEM_FALLOC_KEEP_SIZE) ||
		   (mode & ~(GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE))) {
		ret = gmem_err(EOPNOTSUPP, "gmem_fallocate: mode %#x: the valid modes are GMEM_FALLOC_KEEP_SIZE and GMEM_FALLOC_KEEP_SIZE|GMEM_FALLOC_PUNCH_HOLE",
			       mode);
	} else if (!ALIGNED(offset, PAGE_SIZE)) {
		ret = gmem_err(EINVAL, "gmem_fallocate: file offset %#llx is not 4 KiB aligned",
			       (unsigned long long)offset);
	} else if (!ALIGNED(len, PAGE_SIZE)) {
		ret = gmem_err(EINVAL, "gmem_fallocate: len %#llx is not a multiple of 4 KiB",
			       (unsigned long long)len);
	} else if (offset + len < offset) {
		ret = gmem_err(EINVAL, "gmem_fallocate: file offset %#llx + len %#llx wraps",
			       (unsigned long long)offset,
			       (unsigned long long)len);
	} else if (mode & GMEM_FALLOC_PUNCH_HOLE) {
		ret = punch_hole(file, offset >> PAGE_SHIFT,
				 (offset + len) >> PAGE_SHIFT);
	} else if (offset + len > file->size) {
		ret = gmem_err(EINVAL, "gmem_fallocate: file range [%#llx, %#llx) reaches past the end of the file",
			       (unsigned long long)offset,
			       (unsigned long long)(offset + len));
	} else {
		ret = allocate(file, offset >> PAGE_SHIFT,
			       (offset + len) >> PAGE_SHIFT);
	}
	check_after(file->vm, "gmem_fallocate");
	file_put(file);
	return ret;
}

static int check_offset(struct gmem_file *file, uint64_t offset,
			const char *fn)
{
	if (!ALIGNED(offset, PAGE_SIZE))
		return gmem_err(EINVAL, "%s: file offset %#llx is not 4 KiB aligned",
				fn, (unsigned long long)offset);
	if (offset >= file->size)
		return gmem_err(EINVAL, "%s: file offset %#llx is past the end of the file (%#llx)",
				fn, (unsigned long long)offset,
				(unsigned long long)file->size);
	return 0;
}

GMEM_API int gmem_get_attributes(int fd, uint64_t offset, uint64_t *attributes,
				 uint64_t *range_end)
{
	KEEP_ERRNO();
	struct gmem_file *file;
	uint64_t end;
	int ret = file_get(fd, "gmem_get_attributes", &file);

	if (ret)
		return ret;
	ret = check_offset(file, offset, "gmem_get_attributes");
	if (!ret && !attributes)
		ret = gmem_err(EINVAL, "gmem_get_attributes: no output");
	if (!ret) {
		brlock_read_lock(&file->invalidate_lock);
		*attributes = attr_lookup(&file->attrs, offset >> PAGE_SHIFT,
					  NULL, &end);
		brlock_read_unlock(&file->invalidate_lock);
		if (range_end)
			*range_end = end << PAGE_SHIFT;
	}
	file_put(file);
	return ret;
}

GMEM_API int64_t gmem_attribute_ranges(int fd)
{
	KEEP_ERRNO();
	struct gmem_file *file;
	int64_t n;
	int ret = file_get(fd, "gmem_attribute_ranges", &file);

	if (ret)
		return ret;
	brlock_read_lock(&file->invalidate_lock);
	n = (int64_t)file->attrs.nranges;
	brlock_read_unlock(&file->invalidate_lock);
	file_put(file);
	return n;
}

GMEM_API int gmem_folio_info(int fd, uint64_t offset, uint64_t *pfn,
			     int *order, uint32_t *pins)
{
	KEEP_ERRNO();
	struct gmem_file *file;
	uint64_t index = offset >> PAGE_SHIFT;
	int ret = file_get(fd, "gmem_folio_info", &file);

	if (ret)
		return ret;
	ret = check_offset(file, offset, "gmem_folio_info");
	if (!ret) {
		brlock_read_lock(&file->invalidate_lock);
		folio_sync_host_touched(file, index, index + 1);
		ret = folio_present(file, index);
		if (pfn)
			*pfn = file_pfn(file, index);
		if (order)
			*order = ret && huge_whole(file, index) ? file->order : 0;
		if (pins)
			*pins = pin_count(file, index);
		brlock_read_unlock(&file->invalidate_lock);
	}
	file_put(file);
	return ret;
}
