// SPDX-License-Identifier: MIT
/*
 * Check mode (GMEM_VM_CHECK): after every call on a VM or its files, verify
 * the invariants of docs/arch.md against the real state — page tables of the
 * host mappings (/proc/self/pagemap), the stage-2 table, the attribute map,
 * the page cache and the arch's model of each frame — and record what broke.
 *
 * Invariant 1 is checked from the kernel's view, not from gmem's records:
 * every mapping of the pool memfd in the process (/proc/self/maps, found by
 * the memfd's device and inode) other than the direct map and the VM's
 * stage-2 views must show no private frame (/proc/self/pagemap: no present
 * entry, a guard marker), and every record gmem keeps of a host mapping must
 * still be that mapping: of the file's frames, or where the record has a
 * chunk fenced whole, of the empty past-EOF memfd (fence.h), which shows no
 * frame. So a second mapping made by mremap, a mapping moved
 * or unmapped behind gmem's back (mremap, munmap(2)), a guard removed with
 * MADV_GUARD_REMOVE, or the memfd mapped again through /proc/self/fd are
 * reported, although gmem cannot prevent them.
 *
 *   1  no host-reachable mapping of a private page
 *   2  no stage-2 entry contradicts the attributes once invalidations end,
 *      and every stage-2 view shows exactly what stage-2 maps with its kind
 *      (or, in a VM whose view open failed, less: fault.c)
 *   3  no frame returns to the pool carrying guest data the arch forbids
 *   4  conversion keeps every frame, and every byte where the arch does
 *   5  a failed call changes nothing; every frame made private is reclaimed
 *   6  the arch's own hardware rule holds (RMP, S-EPT, ownership)
 *
 * The scan is linear in the pages of the VM's files: check mode is for the
 * small, single-threaded workloads of tests and `gmem check`.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common.h"
#include "arch.h"
#include "check.h"
#include "fence.h"
#include "file.h"
#include "inject.h"
#include "lock.h"
#include "mapping.h"
#include "pool.h"
#include "poison.h"
#include "vm.h"

#define MAX_RECORDED	1024
#define SNAPSHOT_PAGES	(1U << 16)

#define PM_BATCH	512		/* pagemap entries per read */

struct check {
	pthread_mutex_t lock;
	struct gmem_violation v[MAX_RECORDED];
	uint64_t total;
	size_t unnamed;		/* violations recorded before their op is known */
	int pagemap_fd;
	dev_t pool_dev;		/* the pool memfd, as /proc/self/maps names it */
	ino_t pool_ino;
	dev_t eof_dev;		/* the past-EOF memfd of chunk fences */
	ino_t eof_ino;
};

/* One mapping of the pool memfd, or (@eof) of the past-EOF one, from /proc/self/maps. */
struct pool_map {
	uintptr_t start, end;
	uint64_t pfn;		/* the frame at start */
	bool eof;
};

int check_create(struct gmem_vm *vm)
{
	struct check *c = try_calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	struct stat st;

	pthread_mutex_init(&c->lock, NULL);
	c->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (!fstat(vm->pool->memfd, &st)) {
		c->pool_dev = st.st_dev;
		c->pool_ino = st.st_ino;
	}
	if (fence_past_eof_fd() >= 0 && !fstat(fence_past_eof_fd(), &st)) {
		c->eof_dev = st.st_dev;
		c->eof_ino = st.st_ino;
	}
	vm->check = c;
	return 0;
}

void check_destroy(struct gmem_vm *vm)
{
	struct check *c = vm->check;

	if (!c)
		return;
	if (c->pagemap_fd >= 0)
		close(c->pagemap_fd);
	pthread_mutex_destroy(&c->lock);
	free(c);
	vm->check = NULL;
}

/* Record a violation, under c->lock; its op is filled in when the call finishes. */
void check_violation(struct gmem_vm *vm, int invariant, uint64_t offset,
		     uint64_t pfn, const char *fmt, ...)
{
	struct check *c = vm->check;
	va_list ap;

	if (!c)
		return;
	lock_assert_held(&c->lock);
	if (c->total < MAX_RECORDED) {
		struct gmem_violation *v = &c->v[c->total];

		memset(v, 0, sizeof(*v));
		v->invariant = invariant;
		v->offset = offset;
		v->pfn = pfn;
		va_start(ap, fmt);
		vsnprintf(v->rule, sizeof(v->rule), fmt, ap);
		va_end(ap);
	}
	c->total++;
}

/* A frame leaves a file: was it left fit for the next owner? */
void check_reclaimed(struct gmem_file *file, uint64_t pfn, uint64_t nr)
{
	struct gmem_vm *vm = file->vm;
	struct gmem_pool *pool = vm->pool;

	if (vm->check)
		mutex_lock(&vm->check->lock);
	for (uint64_t i = pfn; i < pfn + nr; i++) {
		uint64_t offset = (i - file->base_pfn) << PAGE_SHIFT;
		const char *rule;

		uint64_t index = i - file->base_pfn;
		bool private = attr_lookup(&file->attrs, index, NULL, NULL) &
			       GMEM_ATTR_PRIVATE;

		if (!frame_was_private(pool, i))
			continue;
		/*
		 * Only a page freed while private holds data the host must not see;
		 * one converted back to shared holds what the host could read anyway.
		 */
		if (vm_checking(vm)) {
			if (vm->arch->forbids_leak && private &&
			    !frame_is_zero(pool, i))
				check_violation(vm, 3, offset, i,
						"a freed frame still holds guest data");
			rule = vm->arch->check_reclaimed ?
			       vm->arch->check_reclaimed(pool, i) : NULL;
			if (rule)
				check_violation(vm, 3, offset, i, "%s", rule);
		}
		frame_forget_private(pool, i);
	}
	if (vm->check)
		mutex_unlock(&vm->check->lock);
}

/*
 * Every mapping of the pool memfd in this process, from /proc/self/maps, less
 * the direct map and @vm's stage-2 views (which show private frames by
 * design: the kernel's direct map, what KVM maps for the guest), and every
 * mapping of the past-EOF memfd (chunk fences, past the end of files). Returns the
 * count and a malloc'd array in *@out, or -1 if the maps cannot be read.
 */
static long read_pool_maps(struct gmem_vm *vm, struct pool_map **out)
{
	struct check *c = vm->check;
	struct gmem_pool *pool = vm->pool;
	uintptr_t dm = (uintptr_t)pool->direct_map;
	size_t cap = 16, n = 0, len = 0, size = 65536;
	struct pool_map *maps = malloc(cap * sizeof(*maps));
	char *buf = malloc(size), *line, *next;
	ssize_t got;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);

	if (fd < 0 || !maps || !buf)
		goto fail;
	while ((got = read(fd, buf + len, size - len - 1)) > 0) {
		len += (size_t)got;
		if (len + 1 == size) {
			char *bigger = realloc(buf, size * 2);

			if (!bigger)
				goto fail;
			buf = bigger;
			size *= 2;
		}
	}
	buf[len] = 0;
	for (line = buf; line && *line; line = next) {
		unsigned long long start, end, off, ino;
		unsigned int major, minor;
		bool eof;

		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		if (sscanf(line, "%llx-%llx %*s %llx %x:%x %llu", &start, &end,
			   &off, &major, &minor, &ino) != 6)
			continue;
		eof = c->eof_ino && ino == (unsigned long long)c->eof_ino &&
		      makedev(major, minor) == c->eof_dev;
		if (!eof && (ino != (unsigned long long)c->pool_ino ||
			     makedev(major, minor) != c->pool_dev))
			continue;
		if (!eof && start >= dm && end <= dm + (pool->nframes << PAGE_SHIFT))
			continue;
		if (!eof && view_covers(vm, start, end))
			continue;
		if (n == cap) {
			struct pool_map *more = realloc(maps, 2 * cap * sizeof(*maps));

			if (!more)
				goto fail;
			maps = more;
			cap *= 2;
		}
		maps[n++] = (struct pool_map){ start, end, off >> PAGE_SHIFT, eof };
	}
	close(fd);
	free(buf);
	*out = maps;
	return (long)n;
fail:
	if (fd >= 0)
		close(fd);
	free(buf);
	free(maps);
	return -1;
}

/* Which record of a file maps @addr to frame @pfn (record_at). */
struct record_query {
	struct gmem_file *file;
	uintptr_t addr;
	uint64_t pfn;
	struct host_mapping *found;
};

static int record_maps(struct host_mapping *m, void *arg)
{
	struct record_query *q = arg;
	uintptr_t start = (uintptr_t)m->addr;

	if (q->addr < start || q->addr - start >= (m->file_pages << PAGE_SHIFT) ||
	    file_pfn(q->file, m->pgoff + ((q->addr - start) >> PAGE_SHIFT)) != q->pfn)
		return 0;
	q->found = m;
	return 1;
}

/* The record of @file's that maps @addr to frame @pfn, or NULL. */
static struct host_mapping *record_at(struct gmem_file *file, uintptr_t addr,
				      uint64_t pfn)
{
	struct record_query q = { file, addr, pfn, NULL };

	mapping_tree_each(file->mappings, 0, UINT64_MAX, record_maps, &q);
	return q.found;
}

/*
 * Invariant 1 over pages [lo, hi) of @file, private, which pool mapping
 * @pmp shows: a page-table entry present, or no guard marker, reaches the
 * frame.
 */
static int check_map_run(struct gmem_file *file, uint64_t lo, uint64_t hi,
			 void *pmp)
{
	const struct pool_map *pm = pmp;
	struct gmem_vm *vm = file->vm;
	uint64_t pm_entries[PM_BATCH];

	for (uint64_t i = lo; i < hi; i += PM_BATCH) {
		uint64_t n = MIN(PM_BATCH, hi - i);
		uintptr_t va = pm->start + ((file_pfn(file, i) - pm->pfn) << PAGE_SHIFT);
		off_t at = (off_t)(va / PAGE_SIZE * sizeof(pm_entries[0]));

		if (pread(vm->check->pagemap_fd, pm_entries, n * sizeof(pm_entries[0]),
			  at) != (ssize_t)(n * sizeof(pm_entries[0])))
			return 0;
		for (uint64_t j = 0; j < n; j++) {
			uint64_t index = i + j, pfn = file_pfn(file, index);
			uintptr_t addr = va + (j << PAGE_SHIFT);
			bool present = pm_entries[j] & PM_PRESENT;
			struct host_mapping *m;

			if (!present && (pm_entries[j] & PM_GUARD))
				continue;
			m = record_at(file, addr, pfn);
			check_violation(vm, 1, index << PAGE_SHIFT, pfn,
					"private frame %#llx reachable at %p (%s) in %s [%p, %p)",
					(unsigned long long)pfn, (void *)addr,
					present ? "mapped" : "no guard",
					m ? "gmem's mapping" :
					"a mapping of the pool gmem does not know",
					(void *)pm->start, (void *)pm->end);
		}
	}
	return 0;
}

/*
 * The pool or past-EOF mapping that covers @va as record @m (seen by the
 * fences as @fm) must have it: @m's frame there, or the past-EOF memfd in a
 * chunk it fenced whole; or NULL.
 */
static const struct pool_map *mapped_as_recorded(struct gmem_file *file,
						 struct host_mapping *m,
						 const struct fence_map *fm,
						 uintptr_t va,
						 const struct pool_map *maps,
						 long nmaps)
{
	bool whole = fence_chunk_whole(fm, va);

	for (long k = 0; k < nmaps; k++) {
		if (maps[k].start > va || va >= maps[k].end || maps[k].eof != whole)
			continue;
		if (whole || maps[k].pfn + ((va - maps[k].start) >> PAGE_SHIFT) ==
		    file_pfn(file, m->pgoff + ((va - (uintptr_t)m->addr) >> PAGE_SHIFT)))
			return &maps[k];
	}
	return NULL;
}

/*
 * Each record of @file must still be a mapping of the file's frames at its
 * address, or of the past-EOF memfd over the chunks it fenced whole (which
 * a shared page must never be in): after munmap(2) or mremap behind gmem's
 * back, later fences would hit whatever is mapped there now, or fail.
 */
struct records_check {
	struct gmem_vm *vm;
	const struct pool_map *maps;
	long nmaps;
};

static int check_record(struct host_mapping *m, void *arg)
{
	const struct records_check *c = arg;
	struct gmem_file *file = m->file;
	struct gmem_vm *vm = c->vm;
	uintptr_t start = (uintptr_t)m->addr;
	uintptr_t end = start + (m->file_pages << PAGE_SHIFT);
	uintptr_t missing = start;
	struct fence_map fm;

	mapping_fence_map(m, &fm, false);
	/* Walk the mappings in address order over [start, end). */
	while (missing < end) {
		const struct pool_map *pm =
			mapped_as_recorded(file, m, &fm, missing, c->maps, c->nmaps);
		uintptr_t next;

		if (!pm)
			break;
		next = MIN(pm->end, end);
		if (pm->eof) {	/* one chunk at a time: each has its bit */
			uint64_t lo = m->pgoff + ((missing - start) >> PAGE_SHIFT);

			next = MIN(next, CHUNK_DOWN(missing) + CHUNK_SIZE);
			if (!attr_range_is(&file->attrs, lo, m->pgoff +
					   ((next - start) >> PAGE_SHIFT),
					   GMEM_ATTR_PRIVATE))
				check_violation(vm, 1, lo << PAGE_SHIFT,
						file_pfn(file, lo),
						"a shared page of gmem's mapping [%p, %p) is in a chunk fenced whole at %p",
						(void *)start, (void *)end,
						(void *)missing);
		}
		missing = next;
	}
	if (missing < end)
		check_violation(vm, 1, (m->pgoff << PAGE_SHIFT) +
				(missing - start),
				file_pfn(file, m->pgoff + ((missing - start) >> PAGE_SHIFT)),
				fence_chunk_whole(&fm, missing) ?
				"gmem's mapping [%p, %p) has no chunk fence at %p, which it fenced whole: mapped behind gmem's back" :
				"gmem's mapping [%p, %p) is no longer there at %p: unmapped or moved behind gmem's back",
				(void *)start, (void *)end, (void *)missing);
	return 0;
}

/* Invariant 1: no mapping of the pool in the process can reach a private frame. */
static void check_mappings(struct gmem_vm *vm, struct gmem_file *file,
			   const struct pool_map *maps, long nmaps)
{
	if (nmaps < 0 || vm->check->pagemap_fd < 0 || !fence_uses_guards())
		return;
	mutex_lock(&file->mappings_lock);
	mutex_lock(&vm->check->lock);
	mapping_tree_each(file->mappings, 0, UINT64_MAX, check_record,
			  &(struct records_check){ vm, maps, nmaps });
	for (long k = 0; k < nmaps; k++) {
		const struct pool_map *pm = &maps[k];
		uint64_t npages = (pm->end - pm->start) >> PAGE_SHIFT;
		uint64_t lo = MAX(pm->pfn, file->base_pfn) - file->base_pfn;
		uint64_t hi;

		if (pm->eof)	/* shows no frame */
			continue;
		if (pm->pfn + npages <= file->base_pfn ||
		    pm->pfn >= file->base_pfn + file->npages)
			continue;
		hi = MIN(pm->pfn + npages, file->base_pfn + file->npages) -
		     file->base_pfn;
		file_for_each_attr_run(file, lo, hi, true, check_map_run,
				       (void *)pm);
	}
	mutex_unlock(&vm->check->lock);
	mutex_unlock(&file->mappings_lock);
}

static struct memslot *binding_of(struct gmem_file *file, uint64_t index)
{
	unsigned int i = file_binding_search(file, index);

	if (i < file->nbindings && file->bindings[i]->pgoff <= index)
		return file->bindings[i];
	return NULL;
}

/* Invariants 5 and 6 page by page: the arch's rule, no stray private state. */
static void check_pages(struct gmem_vm *vm, struct gmem_file *file)
{
	for (uint64_t index = 0; index < file->npages; index++) {
		uint64_t pfn = file_pfn(file, index), gfn = 0;
		bool private = attr_lookup(&file->attrs, index, NULL, NULL) &
			       GMEM_ATTR_PRIVATE;
		struct memslot *slot;

		if (file_page_private(file, index) != private)
			check_violation(vm, 2, index << PAGE_SHIFT, pfn,
					"the fault path's attribute bit disagrees with the attribute map");
		struct s2_entry e;
		bool mapped = false;
		const char *rule;

		if (!folio_present(file, index)) {
			if (frame_was_private(vm->pool, pfn))
				check_violation(vm, 5, index << PAGE_SHIFT, pfn,
						"a frame made private left its folio without reclaim");
			continue;
		}
		slot = binding_of(file, index);
		if (slot) {
			gfn = slot->base_gfn + (index - slot->pgoff);
			mapped = s2_lookup(&vm->s2, gfn, &e) && e.private == private;
		}
		rule = vm->arch->check_page ?
		       vm->arch->check_page(vm, pfn, gfn, private, mapped) : NULL;
		if (rule)
			check_violation(vm, 6, index << PAGE_SHIFT, pfn, "%s", rule);
	}
}

/* Invariant 2: every stage-2 entry agrees with the file behind it. */
static void check_entry_page(struct gmem_vm *vm, uint64_t gfn, uint64_t pfn,
			     bool e_private)
{
	struct memslot *slot = vm_find_slot(vm, gfn);
	struct gmem_file *file;
	uint64_t index;
	bool private;

	if (!slot) {
		check_violation(vm, 2, ~0ULL, pfn,
				"stage-2 maps gfn %#llx, which nothing binds",
				(unsigned long long)gfn);
		return;
	}
	file = slot->file;
	index = slot_index(slot, gfn);
	private = attr_lookup(&file->attrs, index, NULL, NULL) & GMEM_ATTR_PRIVATE;
	if (private != e_private)
		check_violation(vm, 2, index << PAGE_SHIFT, pfn,
				"stage-2 maps gfn %#llx as %s but the page is %s",
				(unsigned long long)gfn,
				e_private ? "private" : "shared",
				private ? "private" : "shared");
	else if (pfn != file_pfn(file, index) || !folio_present(file, index))
		check_violation(vm, 4, index << PAGE_SHIFT, pfn,
				"stage-2 maps gfn %#llx to a frame that is not its folio's",
				(unsigned long long)gfn);
}

/* A huge entry also needs a whole huge folio of at least its size under it. */
static int check_entry(uint64_t gfn, const struct s2_entry *e, void *arg)
{
	struct gmem_vm *vm = arg;
	uint64_t n = 1ULL << (e->level * S2_BITS);
	struct memslot *slot;

	for (uint64_t i = 0; i < n; i++)
		check_entry_page(vm, gfn + i, e->pfn + i, e->private);
	slot = e->level ? vm_find_slot(vm, gfn) : NULL;
	if (slot) {
		struct gmem_file *file = slot->file;
		uint64_t index = slot_index(slot, gfn);

		if (file->order < e->level * S2_BITS || !huge_whole(file, index))
			check_violation(vm, 2, index << PAGE_SHIFT, e->pfn,
					"a %s stage-2 entry at gfn %#llx maps no whole huge folio",
					e->level == 1 ? "2 MiB" : "1 GiB",
					(unsigned long long)gfn);
	}
	return 0;
}

/*
 * Invariant 5 for huge folios: a whole block has every page present and
 * uniform attributes; an absent block has no page present.
 */
static void check_blocks(struct gmem_vm *vm, struct gmem_file *file)
{
	uint64_t pages = file_folio_pages(file);

	for (uint64_t lo = 0; file->order && lo < file->npages; lo += pages) {
		int state = huge_block_state(file, lo);
		uint64_t hole = folio_next_hole(file, lo, lo + pages);
		uint64_t any = folio_next_present(file, lo, lo + pages);
		uint64_t attr = attr_lookup(&file->attrs, lo, NULL, NULL);

		if (state == BLOCK_WHOLE && (hole < lo + pages ||
		    !attr_range_is(&file->attrs, lo, lo + pages, attr)))
			check_violation(vm, 5, lo << PAGE_SHIFT, file_pfn(file, lo),
					"a whole huge folio has a hole or mixed attributes");
		uint64_t count = 0;

		if (state == BLOCK_ABSENT && any < lo + pages)
			check_violation(vm, 5, any << PAGE_SHIFT, file_pfn(file, any),
					"a page is cached in a huge block marked absent");
		for (uint64_t i = any; i < lo + pages; i++)
			count += folio_present(file, i);
		if (count != file->block_pages[lo >> file->order])
			check_violation(vm, 5, lo << PAGE_SHIFT, file_pfn(file, lo),
					"a huge block counts %u pages present, not %llu",
					(unsigned int)file->block_pages[lo >> file->order],
					(unsigned long long)count);
	}
}

void check_after(struct gmem_vm *vm, const char *op)
{
	struct check *c = vm->check;
	struct pool_map *maps = NULL;
	uint64_t mark;
	long nmaps;

	if (!c)
		return;
	/*
	 * c->lock is a leaf: taken inside the locks the walk needs, never
	 * around them, as the conversion and free paths take it while they
	 * hold those locks.
	 */
	brlock_read_lock(&vm->slots_lock);
	mark = mapping_changes_mark();
	nmaps = read_pool_maps(vm, &maps);
	mutex_lock(&vm->files_lock);
	for (unsigned int i = 0; i < vm->nfiles; i++) {
		struct gmem_file *file = vm->files[i];

		/*
		 * The maps must show the file's host mappings as its records
		 * do: held here, neither changes (gmem_mmap and gmem_munmap
		 * hold all_mappings_lock, conversions and punches the
		 * invalidate lock exclusive). The maps read before the locks
		 * do if no change began since; else they are read again.
		 */
		brlock_read_lock(&file->invalidate_lock);
		mutex_lock(&all_mappings_lock);
		if (mapping_changed_since(mark)) {
			free(maps);
			mark = mapping_changes_mark();
			nmaps = read_pool_maps(vm, &maps);
		}
		check_mappings(vm, file, maps, nmaps);
		mutex_unlock(&all_mappings_lock);
		brlock_read_lock(&vm->mmu_lock);
		mutex_lock(&c->lock);
		check_pages(vm, file);
		check_blocks(vm, file);
		mutex_unlock(&c->lock);
		brlock_read_unlock(&vm->mmu_lock);
		brlock_read_unlock(&file->invalidate_lock);
	}
	/*
	 * Exclusive: a fault installs its stage-2 entry and then opens the
	 * views under mmu_lock shared, so a check beside another thread's
	 * fault could read the entry before its views open.
	 */
	brlock_write_lock(&vm->mmu_lock);
	mutex_lock(&c->lock);
	s2_walk(&vm->s2, check_entry, vm);
	for (unsigned int i = 0; i < vm->nslots; i++)
		view_check(vm, vm->slots[i], c->pagemap_fd);
	mutex_unlock(&c->lock);
	brlock_write_unlock(&vm->mmu_lock);
	mutex_unlock(&vm->files_lock);
	brlock_read_unlock(&vm->slots_lock);
	free(maps);

	mutex_lock(&c->lock);
	for (; c->unnamed < MIN(c->total, MAX_RECORDED); c->unnamed++)
		snprintf(c->v[c->unnamed].op, sizeof(c->v[0].op), "%s", op);
	c->unnamed = c->total;
	mutex_unlock(&c->lock);
}

/* ------------------------------------------------- conversion snapshots */

struct conversion_snapshot {
	uint64_t start, end;
	uint64_t attr[];	/* per page: attribute, then content hash */
};

/*
 * The checker reads what the frame holds, private or not, as the hardware
 * would: through a copy past ASan's poison (poison.h).
 */
static uint64_t page_hash(struct gmem_pool *pool, uint64_t pfn)
{
	static _Thread_local uint8_t p[PAGE_SIZE];
	uint64_t h = 1469598103934665603ULL;	/* FNV-1a */

	frame_copy_unchecked(p, pool_va(pool, pfn), PAGE_SIZE);
	for (size_t i = 0; i < PAGE_SIZE; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

/* Attributes and content of [start, end) before a conversion, under its lock. */
struct conversion_snapshot *check_snapshot(struct gmem_file *file,
					   uint64_t start, uint64_t end)
{
	struct conversion_snapshot *s;
	uint64_t n = end - start;

	lock_assert_held_exclusive(&file->invalidate_lock);

	if (!vm_checking(file->vm) || n > SNAPSHOT_PAGES)
		return NULL;
	s = malloc(sizeof(*s) + 2 * n * sizeof(uint64_t));
	if (!s)
		return NULL;
	s->start = start;
	s->end = end;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t index = start + i;

		s->attr[2 * i] = attr_lookup(&file->attrs, index, NULL, NULL);
		s->attr[2 * i + 1] = folio_present(file, index) ?
			page_hash(file->vm->pool, file_pfn(file, index)) : 0;
	}
	return s;
}

/* After the conversion, still under the lock: what may have changed did. */
void check_conversion(struct gmem_file *file, struct conversion_snapshot *s,
		      bool failed)
{
	struct gmem_vm *vm = file->vm;

	lock_assert_held_exclusive(&file->invalidate_lock);
	if (!s)
		return;
	mutex_lock(&vm->check->lock);
	for (uint64_t i = 0; i < s->end - s->start; i++) {
		uint64_t index = s->start + i, pfn = file_pfn(file, index);
		uint64_t hash = folio_present(file, index) ?
				page_hash(vm->pool, pfn) : 0;
		uint64_t attr = attr_lookup(&file->attrs, index, NULL, NULL);

		if (failed && (attr != s->attr[2 * i] || hash != s->attr[2 * i + 1]))
			check_violation(vm, 5, index << PAGE_SHIFT, pfn,
					"a failed conversion changed the page");
		else if (!failed && vm->arch->keeps_content && s->attr[2 * i + 1] &&
			 hash != s->attr[2 * i + 1])
			check_violation(vm, 4, index << PAGE_SHIFT, pfn,
					"conversion lost the content of a page the arch must keep");
	}
	mutex_unlock(&vm->check->lock);
	free(s);
}

GMEM_API int64_t gmem_vm_violations(int h, struct gmem_violation *v,
				    unsigned int max)
{
	KEEP_ERRNO();
	struct gmem_vm *vm;
	int64_t total = 0;
	int ret = obj_get(h, OBJ_VM, "gmem_vm_violations", (void **)&vm);

	if (ret)
		return ret;
	if (!v && max) {
		vm_put(vm);
		return gmem_err(EINVAL, "gmem_vm_violations: no buffer for %u entries",
				max);
	}
	if (vm->check) {
		mutex_lock(&vm->check->lock);
		total = (int64_t)vm->check->total;
		for (unsigned int i = 0; i < max && i < MIN(total, MAX_RECORDED); i++)
			v[i] = vm->check->v[i];
		mutex_unlock(&vm->check->lock);
	}
	vm_put(vm);
	return total;
}
