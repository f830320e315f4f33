// SPDX-License-Identifier: MIT
/*
 * VMs and memslot bindings (KVM_SET_USER_MEMORY_REGION2 with a guest_memfd).
 * A VM's slots are sorted by guest frame for the fault path's binary search;
 * each file keeps its own list of the slots that bind it sorted by file page
 * (bindings of a file never overlap), so an invalidation binary-searches the
 * first binding its range reaches and visits only those it overlaps:
 * O(log n + k), as KVM's per-file xarray of bindings. Binding and unbinding
 * find their place the same way and a slot by its id in a table; inserting
 * into the middle of the two arrays moves the pointers after it (a memmove,
 * nothing when slots are added in address order).
 */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "arch.h"
#include "check.h"
#include "file.h"
#include "handle.h"
#include "inject.h"
#include "lock.h"
#include "pool.h"
#include "vm.h"

static void vm_release(struct obj *o)
{
	struct gmem_vm *vm = (struct gmem_vm *)o;

	/* Drain lookups that raced with the last close (see vm_enter). */
	brlock_write_lock(&vm->slots_lock);
	brlock_write_unlock(&vm->slots_lock);
	check_destroy(vm);
	free(vm->files);
	pthread_mutex_destroy(&vm->files_lock);
	free(vm->slots);
	free(vm->slot_ids);
	s2_destroy(&vm->s2);
	pool_put(vm->pool);
	obj_recycle(o);
}

void vm_get(struct gmem_vm *vm)
{
	obj_get_ref(&vm->obj);
}

void vm_put(struct gmem_vm *vm)
{
	obj_put(&vm->obj);
}

/* arch.h: what a backend may know of its VM. */
struct gmem_pool *vm_pool(const struct gmem_vm *vm)
{
	return vm->pool;
}

uint16_t vm_guest_id(const struct gmem_vm *vm)
{
	return vm->id;
}

/*
 * Enter VM @h for a guest access without touching a shared refcount: the
 * slots lock, held shared, keeps the VM alive (vm_release drains it).
 */
int vm_enter(int h, const char *fn, struct gmem_vm **out)
{
	struct obj *o = obj_peek(h);
	struct gmem_vm *vm = (struct gmem_vm *)o;
	int ret;

	if (!o)
		return gmem_err(EBADF, "%s: handle %d is not open", fn, h);
	ret = obj_foreign(o, h, fn);
	if (ret)
		return ret;
	if (o->type != OBJ_VM)
		return gmem_err(EINVAL, "%s: handle %d is not a vm", fn, h);
	brlock_read_lock(&vm->slots_lock);
	if (obj_peek(h) != o || !atomic_load(&o->refs)) {
		brlock_read_unlock(&vm->slots_lock);
		return gmem_err(EBADF, "%s: handle %d is not open", fn, h);
	}
	*out = vm;
	return 0;
}

void vm_exit(struct gmem_vm *vm)
{
	brlock_read_unlock(&vm->slots_lock);
}

/* Leave, then verify invariants if the VM is in check mode. */
void vm_exit_checked(struct gmem_vm *vm, const char *op)
{
	if (!vm_checking(vm)) {
		vm_exit(vm);
		return;
	}
	vm_get(vm);
	vm_exit(vm);
	check_after(vm, op);
	vm_put(vm);
}

GMEM_API int gmem_vm_create(int poolh, const char *arch_name, uint64_t flags)
{
	KEEP_ERRNO();
	const struct gmem_arch *arch;
	struct gmem_pool *pool;
	struct gmem_vm *vm;
	bool fresh;
	int ret;

	ret = obj_get(poolh, OBJ_POOL, "gmem_vm_create", (void **)&pool);
	if (ret)
		return ret;
	if (flags & ~(GMEM_VM_LEGACY_CONTRACT | GMEM_VM_CHECK)) {
		ret = gmem_err(EINVAL, "gmem_vm_create: unknown flags %#llx",
			       (unsigned long long)flags);
		goto out_pool;
	}
	arch = arch_name ? arch_find(arch_name) : NULL;
	if (!arch) {
		ret = gmem_err(ENOENT, "gmem_vm_create: unknown arch \"%s\" (sw, snp, tdx or pkvm)",
			       arch_name ? arch_name : "(null)");
		goto out_pool;
	}
	ret = pool_claim_arch(pool, arch);
	if (ret)
		goto out_pool;
	vm = obj_alloc(OBJ_VM, sizeof(*vm), offsetof(struct gmem_vm, pool),
		       &fresh);
	if (!vm) {
		ret = gmem_err(ENOMEM, "gmem_vm_create: out of memory");
		goto out_claim;
	}
	if (fresh) {
		brlock_init_rare_writers(&vm->slots_lock);
		brlock_init(&vm->mmu_lock);
	}
	vm->obj.release = vm_release;
	vm->pool = pool;
	vm->arch = arch;
	vm->flags = flags;
	vm->id = (uint16_t)(atomic_fetch_add(&pool->next_vm_id, 1) % 0xffff + 1);
	pthread_mutex_init(&vm->files_lock, NULL);
	if (s2_init(&vm->s2, &vm->mmu_lock) ||
	    ((flags & GMEM_VM_CHECK) && check_create(vm))) {
		s2_destroy(&vm->s2);
		pthread_mutex_destroy(&vm->files_lock);
		obj_recycle(&vm->obj);
		ret = gmem_err(ENOMEM, "gmem_vm_create: out of memory");
		goto out_claim;
	}
	ret = obj_install(&vm->obj);
	/* Settle while the VM still holds the pool: vm_put may release it. */
	pool_settle_arch(pool, ret >= 0);
	if (ret < 0) {
		gmem_err(EMFILE, "gmem_vm_create: no free handle");
		vm_put(vm);
	}
	return ret;

out_claim:
	pool_settle_arch(pool, false);
out_pool:
	pool_put(pool);
	return ret;
}

GMEM_API int gmem_vm_close(int h)
{
	KEEP_ERRNO();
	return obj_destroy(h, OBJ_VM, "gmem_vm_close");
}

/* The slot containing @gfn, or NULL. */
struct memslot *vm_find_slot(struct gmem_vm *vm, uint64_t gfn)
{
	unsigned int lo = 0, hi = vm->nslots;

	lock_assert_held(&vm->slots_lock);
	while (lo < hi) {
		unsigned int mid = (lo + hi) / 2;
		struct memslot *s = vm->slots[mid];

		if (gfn < s->base_gfn)
			hi = mid;
		else if (gfn >= s->base_gfn + s->npages)
			lo = mid + 1;
		else
			return s;
	}
	return NULL;
}

static int grow(void *arrayp, unsigned int *cap, unsigned int need)
{
	void **array = arrayp;
	unsigned int n = *cap ? *cap * 2 : 8;
	void *p;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	p = try_realloc(*array, n * sizeof(void *));
	if (!p)
		return -ENOMEM;
	*array = p;
	*cap = n;
	return 0;
}

/*
 * The first of the @n slots of @a, sorted by guest frame (@by_gfn) or by
 * file page, whose range ends after @key: a binary search, so binding,
 * unbinding and invalidation cost O(log n) to find their place.
 */
static unsigned int slot_search(struct memslot **a, unsigned int n,
				bool by_gfn, uint64_t key)
{
	unsigned int lo = 0, hi = n;

	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;
		uint64_t start = by_gfn ? a[mid]->base_gfn : a[mid]->pgoff;

		if (start + a[mid]->npages <= key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

unsigned int file_binding_search(struct gmem_file *file, uint64_t index)
{
	return slot_search(file->bindings, file->nbindings, false, index);
}

static void array_insert(struct memslot **a, unsigned int *n, unsigned int at,
			 struct memslot *s)
{
	memmove(&a[at + 1], &a[at], (*n - at) * sizeof(*a));
	a[at] = s;
	(*n)++;
}

static void array_remove(struct memslot **a, unsigned int *n, bool by_gfn,
			 struct memslot *s)
{
	unsigned int at = slot_search(a, *n, by_gfn,
				      by_gfn ? s->base_gfn : s->pgoff);

	if (at < *n && a[at] == s) {
		memmove(&a[at], &a[at + 1], (*n - at - 1) * sizeof(*a));
		(*n)--;
	}
}

/* Unlink @slot from its VM and file, once its range is zapped. */
void vm_remove_slot(struct gmem_vm *vm, struct memslot *slot)
{
	lock_assert_held_exclusive(&vm->slots_lock);
	lock_assert_held_exclusive(&slot->file->invalidate_lock);
	vm->slot_ids[slot->id] = NULL;
	array_remove(vm->slots, &vm->nslots, true, slot);
	array_remove(slot->file->bindings, &slot->file->nbindings, false, slot);
	view_release(slot);
	free(slot);
}

static int check_bind_file(struct gmem_vm *vm, int fd, uint64_t gpa,
			   uint64_t size, uint64_t offset,
			   struct gmem_file **out)
{
	struct gmem_file *file;
	int ret = file_get(fd, "gmem_vm_bind", &file);

	if (ret)
		return ret;
	if (file->vm != vm)
		ret = gmem_err(EINVAL, "gmem_vm_bind: file %d belongs to another VM", fd);
	else if (!ALIGNED(gpa, PAGE_SIZE << file->order))
		ret = gmem_err(EINVAL, "gmem_vm_bind: gpa %#llx is not a multiple of the file's folio size (%llu KiB)",
			       (unsigned long long)gpa,
			       (unsigned long long)((PAGE_SIZE << file->order) >> 10));
	else if (!ALIGNED(offset, PAGE_SIZE << file->order))
		ret = gmem_err(EINVAL, "gmem_vm_bind: file offset %#llx is not a multiple of the file's folio size (%llu KiB)",
			       (unsigned long long)offset,
			       (unsigned long long)((PAGE_SIZE << file->order) >> 10));
	else if (!ALIGNED(size, PAGE_SIZE << file->order))
		ret = gmem_err(EINVAL, "gmem_vm_bind: size %#llx is not a multiple of the file's folio size (%llu KiB)",
			       (unsigned long long)size,
			       (unsigned long long)((PAGE_SIZE << file->order) >> 10));
	else if (offset + size < offset || offset + size > file->size)
		ret = gmem_err(EINVAL, "gmem_vm_bind: file range [%#llx, +%#llx) is past the end of the file (%#llx)",
			       (unsigned long long)offset,
			       (unsigned long long)size,
			       (unsigned long long)file->size);
	if (ret)
		file_put(file);
	else
		*out = file;
	return ret;
}

struct memslot *vm_find_slot_id(struct gmem_vm *vm, uint32_t id)
{
	lock_assert_held(&vm->slots_lock);
	return id < vm->slot_ids_cap ? vm->slot_ids[id] : NULL;
}

/* Room in the table of slots by id for @id; new entries empty. */
static int grow_slot_ids(struct gmem_vm *vm, uint32_t id)
{
	unsigned int n = vm->slot_ids_cap ? vm->slot_ids_cap : 8;
	struct memslot **p;

	if (id < vm->slot_ids_cap)
		return 0;
	while (n <= id)
		n *= 2;
	p = realloc(vm->slot_ids, n * sizeof(*p));
	if (!p)
		return -ENOMEM;
	memset(p + vm->slot_ids_cap, 0, (n - vm->slot_ids_cap) * sizeof(*p));
	vm->slot_ids = p;
	vm->slot_ids_cap = n;
	return 0;
}

/* Insertion point keeping @a sorted by @key; -EEXIST if [lo, hi) overlaps. */
static int slot_insert_point(struct memslot **a, unsigned int n, bool by_gfn,
			     uint64_t lo, uint64_t hi, unsigned int *at)
{
	unsigned int i = slot_search(a, n, by_gfn, lo);

	if (i < n && (by_gfn ? a[i]->base_gfn : a[i]->pgoff) < hi)
		return -EEXIST;
	*at = i;
	return 0;
}

GMEM_API int gmem_vm_bind(int vmh, uint32_t id, uint64_t gpa, uint64_t size,
		       int fd, uint64_t offset)
{
	KEEP_ERRNO();
	struct gmem_file *file;
	struct memslot *slot;
	struct gmem_vm *vm;
	unsigned int vm_at, file_at;
	uint64_t gfn, npages, pgoff;
	int ret;

	ret = obj_get(vmh, OBJ_VM, "gmem_vm_bind", (void **)&vm);
	if (ret)
		return ret;
	if (id >= GMEM_MAX_SLOTS) {
		ret = gmem_err(EINVAL, "gmem_vm_bind: slot %u is out of range", id);
		goto out_vm;
	}
	if (!size) {
		ret = gmem_err(EINVAL, "gmem_vm_bind: size is 0");
		goto out_vm;
	}
	if (!ALIGNED(gpa, PAGE_SIZE) || !ALIGNED(size, PAGE_SIZE)) {
		ret = gmem_err(EINVAL, "gmem_vm_bind: guest range gpa %#llx size %#llx is not 4 KiB aligned",
			       (unsigned long long)gpa,
			       (unsigned long long)size);
		goto out_vm;
	}
	if (gpa + size < gpa || (gpa + size) >> PAGE_SHIFT > S2_MAX_GFN) {
		ret = gmem_err(EINVAL, "gmem_vm_bind: guest range [gpa %#llx, +%#llx) ends above the highest gpa (%#llx)",
			       (unsigned long long)gpa,
			       (unsigned long long)size,
			       (unsigned long long)(S2_MAX_GFN << PAGE_SHIFT));
		goto out_vm;
	}
	ret = check_bind_file(vm, fd, gpa, size, offset, &file);
	if (ret)
		goto out_vm;
	gfn = gpa >> PAGE_SHIFT;
	npages = size >> PAGE_SHIFT;
	pgoff = offset >> PAGE_SHIFT;

	slot = try_malloc(sizeof(*slot));
	brlock_write_lock(&vm->slots_lock);
	brlock_write_lock(&file->invalidate_lock);
	if (!slot || grow(&vm->slots, &vm->slots_cap, vm->nslots + 1) ||
	    grow(&file->bindings, &file->bindings_cap, file->nbindings + 1) ||
	    grow_slot_ids(vm, id)) {
		ret = gmem_err(ENOMEM, "gmem_vm_bind: out of memory");
	} else if (vm_find_slot_id(vm, id)) {
		/* A guest_memfd slot is created or deleted, never changed. */
		ret = gmem_err(EINVAL, "gmem_vm_bind: slot %u is in use", id);
	} else if (slot_insert_point(vm->slots, vm->nslots, true, gfn,
				     gfn + npages, &vm_at)) {
		ret = gmem_err(EEXIST, "gmem_vm_bind: guest range [%#llx, +%#llx) overlaps another slot",
			       (unsigned long long)gpa,
			       (unsigned long long)size);
	} else if (slot_insert_point(file->bindings, file->nbindings, false,
				     pgoff, pgoff + npages, &file_at)) {
		ret = gmem_err(EEXIST, "gmem_vm_bind: file range [%#llx, +%#llx) is already bound",
			       (unsigned long long)offset,
			       (unsigned long long)size);
	} else {
		*slot = (struct memslot){ .id = id, .base_gfn = gfn,
			.npages = npages, .file = file, .pgoff = pgoff };
		array_insert(vm->slots, &vm->nslots, vm_at, slot);
		array_insert(file->bindings, &file->nbindings, file_at, slot);
		vm->slot_ids[id] = slot;
		slot = NULL;
	}
	brlock_write_unlock(&file->invalidate_lock);
	brlock_write_unlock(&vm->slots_lock);
	free(slot);
	file_put(file);
	check_after(vm, "gmem_vm_bind");
out_vm:
	vm_put(vm);
	return ret;
}

GMEM_API int gmem_vm_unbind(int vmh, uint32_t id)
{
	KEEP_ERRNO();
	struct gmem_file *file;
	struct memslot *slot;
	struct gmem_vm *vm;
	bool started;
	int ret;

	ret = obj_get(vmh, OBJ_VM, "gmem_vm_unbind", (void **)&vm);
	if (ret)
		return ret;
	brlock_write_lock(&vm->slots_lock);
	slot = id < GMEM_MAX_SLOTS ? vm_find_slot_id(vm, id) : NULL;
	if (!slot) {
		ret = gmem_err(EINVAL, "gmem_vm_unbind: slot %u is not in use", id);
	} else {
		/*
		 * The slot's whole range, as every other path invalidates; the
		 * folios are unprepared with it, since a later binding maps them
		 * at other gfns.
		 */
		file = slot->file;
		brlock_write_lock(&file->invalidate_lock);
		started = file_invalidate_start(file, slot->pgoff,
						slot->pgoff + slot->npages,
						S2_ZAP_ALL);
		vm_remove_slot(vm, slot);
		file_invalidate_end(file, started);
		brlock_write_unlock(&file->invalidate_lock);
	}
	brlock_write_unlock(&vm->slots_lock);
	check_after(vm, "gmem_vm_unbind");
	vm_put(vm);
	return ret;
}

GMEM_API int gmem_vm_translate(int vmh, uint64_t gpa, int *fd,
			       uint64_t *offset, uint64_t *len)
{
	KEEP_ERRNO();
	struct memslot *slot;
	struct gmem_vm *vm;
	uint64_t gfn = gpa >> PAGE_SHIFT;
	int ret = vm_enter(vmh, "gmem_vm_translate", &vm);

	if (ret)
		return ret;
	slot = vm_find_slot(vm, gfn);
	if (!slot) {
		ret = gmem_err(EFAULT, "gmem_vm_translate: nothing bound at gpa %#llx",
			       (unsigned long long)gpa);
	} else {
		uint64_t into = gpa - (slot->base_gfn << PAGE_SHIFT);

		if (fd)
			*fd = slot->file->obj.handle;
		if (offset)
			*offset = (slot->pgoff << PAGE_SHIFT) + into;
		if (len)
			*len = (slot->npages << PAGE_SHIFT) - into;
	}
	vm_exit(vm);
	return ret;
}

/* The stage-2 entry of @gpa: 1 and *@e, 0 if none, or -errno. */
static int stage2_entry(int vmh, const char *fn, uint64_t gpa,
			struct s2_entry *e)
{
	struct gmem_vm *vm;
	int ret = vm_enter(vmh, fn, &vm);

	if (ret)
		return ret;
	brlock_read_lock(&vm->mmu_lock);
	ret = s2_lookup(&vm->s2, gpa >> PAGE_SHIFT, e);
	brlock_read_unlock(&vm->mmu_lock);
	vm_exit(vm);
	return ret;
}

GMEM_API int gmem_vm_stage2(int vmh, uint64_t gpa, uint64_t *pfn, int *private)
{
	KEEP_ERRNO();
	struct s2_entry e;
	int ret = stage2_entry(vmh, "gmem_vm_stage2", gpa, &e);

	if (ret > 0) {
		if (pfn)
			*pfn = e.pfn;
		if (private)
			*private = e.private;
	}
	return ret;
}

GMEM_API int gmem_vm_stage2_level(int vmh, uint64_t gpa)
{
	KEEP_ERRNO();
	struct s2_entry e;
	int ret = stage2_entry(vmh, "gmem_vm_stage2_level", gpa, &e);

	if (ret < 0)
		return ret;
	if (!ret)
		return gmem_err(ENOENT, "gmem_vm_stage2_level: nothing mapped at gpa %#llx",
				(unsigned long long)gpa);
	return e.level;
}

GMEM_API int64_t gmem_vm_invalidate_seq(int vmh)
{
	KEEP_ERRNO();
	struct gmem_vm *vm;
	int64_t seq;
	int ret = vm_enter(vmh, "gmem_vm_invalidate_seq", &vm);

	if (ret)
		return ret;
	seq = (int64_t)atomic_load(&vm->mmu_invalidate_seq);
	vm_exit(vm);
	return seq;
}

/* The checker walks a VM's files; keep the list (unordered: O(1) both ways). */
int vm_add_file(struct gmem_vm *vm, struct gmem_file *file)
{
	int ret = 0;

	mutex_lock(&vm->files_lock);
	if (grow(&vm->files, &vm->files_cap, vm->nfiles + 1)) {
		ret = -ENOMEM;
	} else {
		file->vm_files_index = vm->nfiles;
		vm->files[vm->nfiles++] = file;
	}
	mutex_unlock(&vm->files_lock);
	return ret;
}

void vm_remove_file(struct gmem_vm *vm, struct gmem_file *file)
{
	unsigned int i;

	mutex_lock(&vm->files_lock);
	i = file->vm_files_index;
	if (i < vm->nfiles && vm->files[i] == file) {
		vm->files[i] = vm->files[--vm->nfiles];
		vm->files[i]->vm_files_index = i;
	}
	mutex_unlock(&vm->files_lock);
}
