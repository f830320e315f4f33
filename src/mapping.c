// SPDX-License-Identifier: MIT
/*
 * Host mappings of a file: gmem_mmap / gmem_munmap / gmem_mapping_find.
 *
 * A mapping is one MAP_SHARED mapping of the file's window of the pool
 * memfd, so the host's first touch of a hole is an ordinary shmem fault (a
 * zeroed page, no call into gmem) and every mapping sees the direct map's
 * bytes. The part past the end of the file maps an empty memfd: the kernel
 * raises SIGBUS there, as for a guest_memfd.
 *
 * Private pages are fenced with guard regions (MADV_GUARD_INSTALL): the
 * kernel drops their page-table entries and any access faults, which the
 * engine's SIGSEGV handler turns into SIGBUS (sigbus.c), while the pages
 * themselves, and so their content, stay where they are.
 * Guards are per page-table entry, so a fragmented file never splits the
 * mapping into thousands of VMAs. A 2 MiB chunk of the mapping that one
 * fence covers entirely (gmem_mmap over private chunks, a conversion of
 * whole chunks to private) is fenced whole instead: mapped from the empty
 * past-EOF memfd, where the kernel raises SIGBUS itself and which needs no
 * page table; a bit per chunk in the record says which (fence.h). Where the
 * kernel lacks guards (before 6.15) mprotect(PROT_NONE) does the same job
 * with a VMA per range.
 *
 * Each mapping has a record (struct host_mapping) holding a file reference;
 * conversions fence through the records that show their pages, found in the
 * file's interval tree (mapping_tree.c). gmem_munmap may take any part of
 * any mappings, as munmap(2), and gmem_mmap with MAP_FIXED replaces what was
 * at its address: a record is trimmed at either end, split in two (the new
 * record takes its own reference) or dropped (its reference goes with it).
 *
 * Locks, outermost first (lock.h): the invalidate lock of the file being
 * mapped (shared), all_mappings_lock, then one file's mappings_lock at a
 * time, then hm_lock. A record changes only under its file's mappings_lock together with the
 * real mapping underneath, so a conversion fences either the old mapping or
 * nothing: never an address the record has lost, nor a page still mapped
 * that the record no longer covers. Each record has an entry in the signal
 * handlers' table (sigbus.c) that changes with it.
 *
 * fork: a child inherits the mappings and keeps what they showed: shared
 * pages open, private ones fenced (guard regions are copied). Its records
 * become foreign (the files are the parent's); the parent's conversions
 * reach them through the shootdown (process.c). A child that could not
 * register for shootdowns gets every inherited mapping fenced entirely.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"
#include "check.h"
#include "fence.h"
#include "file.h"
#include "inject.h"
#include "lock.h"
#include "mapping.h"
#include "pool.h"
#include "process.h"
#include "sigbus.h"
#include "vm.h"

/*
 * Every mapping of the process, for munmap lookups and fork. The lock also
 * makes each gmem_mmap and gmem_munmap one step for the others, so two calls
 * over the same addresses never leave two records of one address.
 */
pthread_mutex_t all_mappings_lock = PTHREAD_MUTEX_INITIALIZER;
static struct host_mapping *all_mappings;

/*
 * Changes to the host mappings of check-mode VMs' files, begun and ended.
 * Check mode reads /proc/self/maps before it takes the locks that hold
 * mappings still, so that checks on several threads do not take turns for
 * the read; under those locks it reads them again only if a change began
 * after its read started (check.c).
 */
static atomic_ulong changes_begun, changes_ended;

static void change_begin(const struct gmem_file *file)
{
	if (vm_checking(file->vm))
		atomic_fetch_add(&changes_begun, 1);
}

static void change_end(const struct gmem_file *file)
{
	if (vm_checking(file->vm))
		atomic_fetch_add(&changes_ended, 1);
}

uint64_t mapping_changes_mark(void)
{
	unsigned long ended = atomic_load(&changes_ended);
	unsigned long begun = atomic_load(&changes_begun);

	return begun == ended ? begun : MAPPING_CHANGING;
}

bool mapping_changed_since(uint64_t mark)
{
	return mark == MAPPING_CHANGING || atomic_load(&changes_begun) != mark;
}

/*
 * Before fork (process.c): hold the records still, and reserve the child a
 * shootdown slot naming the files it will inherit mappings of.
 */
void mapping_fork_prepare(void)
{
	uint64_t uids[SHOOTDOWN_UIDS + 1];
	unsigned int n = 0, i;

	mutex_lock(&all_mappings_lock);
	for (struct host_mapping *m = all_mappings; m && n <= SHOOTDOWN_UIDS;
	     m = m->next_all) {
		for (i = 0; i < n && uids[i] != m->uid; i++)
			;
		if (i == n)
			uids[n++] = m->uid;
	}
	sd_fork_prepare(uids, n);
}

void mapping_fork_parent(void)
{
	mutex_unlock(&all_mappings_lock);
}

/*
 * In the child: the records are the parent's mappings, now this process's
 * copies of them. Fenced pages stay fenced (fork copies guards) and shared
 * ones open; if the child could not register for shootdowns (@registered
 * false), nothing would tell it of a conversion, so it gets no access at all.
 * The files' own locks are not touched: another thread may have held one.
 */
void mapping_fork_child(bool registered)
{
	for (struct host_mapping *m = all_mappings; m; m = m->next_all) {
		m->foreign = true;
		if (!registered)
			fence_close(m->addr, m->len);
	}
	mutex_unlock(&all_mappings_lock);
}

/*
 * Record @m as the fences see it. With @check_fd the pool memfd is checked
 * before it is mapped again: for a fork child, which may have closed it.
 */
void mapping_fence_map(const struct host_mapping *m, struct fence_map *fm,
		       bool check_fd)
{
	struct mapping_chunks *c = m->chunks;

	*fm = (struct fence_map){
		.addr = m->addr, .pgoff = m->pgoff, .npages = m->file_pages,
		.prot = m->prot,
	};
	if (!c)
		return;
	fm->huge = c->huge;
	fm->pool_fd = c->pool_fd;
	fm->pool_pos = (off_t)(c->base_pfn + m->pgoff) << PAGE_SHIFT;
	fm->pool_dev = check_fd ? c->dev : 0;
	fm->pool_ino = check_fd ? c->ino : 0;
	fm->whole = c->whole;
	fm->whole_base = c->base;
}

static size_t chunks_size(const struct mapping_chunks *c)
{
	return sizeof(*c) + c->nwords * sizeof(c->whole[0]);
}

/*
 * Fence (close) or open the pages [start, end) that mapping @m shows: the
 * 2 MiB chunks they cover are fenced whole (fence.h). Under the file's
 * mappings_lock, or before @m is in the tree.
 */
static int close_pages(struct host_mapping *m, uint64_t start, uint64_t end)
{
	struct fence_map fm;

	mapping_fence_map(m, &fm, false);
	return fence_close_map(&fm, start, end, true);
}

static int open_pages(struct host_mapping *m, uint64_t start, uint64_t end)
{
	struct fence_map fm;

	mapping_fence_map(m, &fm, false);
	return fence_open_map(&fm, start, end);
}

/* The pages [start, end) of a conversion, for each mapping that shows some. */
struct page_range {
	uint64_t start, end;
};

static int revoke_one(struct host_mapping *m, void *arg)
{
	const struct page_range *r = arg;

	return inject_fail(INJECT_SITE) ? -ENOMEM : close_pages(m, r->start, r->end);
}

static int restore_one(struct host_mapping *m, void *arg)
{
	const struct page_range *r = arg;

	open_pages(m, r->start, r->end);
	return 0;
}

/*
 * Revoke host access to pages [start, end) in every mapping of the file:
 * this process's, then those fork children inherited (process.c), under the
 * invalidate lock exclusive. Returns -ENOMEM (a fence failed) or -EAGAIN (a
 * child did not answer); on failure nothing is left revoked that the caller
 * does not restore itself (mapping_restore over the range).
 */
int mapping_revoke(struct gmem_file *file, uint64_t start, uint64_t end)
{
	struct page_range r = { start, end };
	int ret;

	lock_assert_held_exclusive(&file->invalidate_lock);
	mutex_lock(&file->mappings_lock);
	change_begin(file);
	ret = mapping_tree_each(file->mappings, start, end, revoke_one, &r);
	change_end(file);
	mutex_unlock(&file->mappings_lock);
	if (ret)
		return ret;
	return sd_broadcast(file->uid, start, end, false);
}

/* Give host mappings, here and in fork children, back pages [start, end), now shared. */
void mapping_restore(struct gmem_file *file, uint64_t start, uint64_t end)
{
	struct page_range r = { start, end };

	lock_assert_held_exclusive(&file->invalidate_lock);
	mutex_lock(&file->mappings_lock);
	change_begin(file);
	mapping_tree_each(file->mappings, start, end, restore_one, &r);
	change_end(file);
	mutex_unlock(&file->mappings_lock);
	sd_broadcast(file->uid, start, end, true);
}

static int check_mmap(struct gmem_file *file, uint64_t offset, size_t len,
		      int prot, int flags)
{
	if (!(file->flags & GMEM_FLAG_MMAP))
		return gmem_err(ENODEV, "gmem_mmap: file was created without GMEM_FLAG_MMAP");
	if ((flags & MAP_TYPE) != MAP_SHARED || (flags & ~(MAP_TYPE | MAP_FIXED)))
		return gmem_err(EINVAL, "gmem_mmap: flags %#x: only MAP_SHARED, with or without MAP_FIXED; copy-on-write is not allowed",
				flags);
	if (!prot || (prot & ~(PROT_READ | PROT_WRITE)))
		return gmem_err(EINVAL, "gmem_mmap: prot %#x is not PROT_READ/PROT_WRITE", prot);
	if (!len)
		return gmem_err(EINVAL, "gmem_mmap: length is 0");
	if (!ALIGNED(offset, PAGE_SIZE << file->order))
		return gmem_err(EINVAL, "gmem_mmap: file offset %#llx is not a multiple of the folio size (%llu KiB)",
				(unsigned long long)offset,
				(unsigned long long)((PAGE_SIZE << file->order) >> 10));
	if (!ALIGNED(len, PAGE_SIZE << file->order))
		return gmem_err(EINVAL, "gmem_mmap: length %#zx is not a multiple of the folio size (%llu KiB)",
				len, (unsigned long long)((PAGE_SIZE << file->order) >> 10));
	if (offset >= file->size || offset + len < offset)
		return gmem_err(EINVAL, "gmem_mmap: file offset %#llx is past the end of the file (%#llx)",
				(unsigned long long)offset,
				(unsigned long long)file->size);
	return 0;
}

/* file_for_each_attr_run() over the pages of mapping @arg: fence or open each run. */
static int close_run(struct gmem_file *file, uint64_t start, uint64_t end,
		     void *arg)
{
	return close_pages(arg, start, end);
}

static int open_run(struct gmem_file *file, uint64_t start, uint64_t end,
		    void *arg)
{
	return open_pages(arg, start, end);
}

/*
 * Address space for a mapping, aligned to the file's folio size so the host
 * kernel can map a huge folio with huge page-table entries where it is able,
 * and to 2 MiB at least for chunk fences (fence.h).
 */
static void *reserve_aligned(size_t len, uint64_t align)
{
	uint8_t *va, *aligned;
	size_t extra;

	/* Whole 2 MiB chunks, which can be fenced without page tables. */
	if (len >= CHUNK_SIZE)
		align = MAX(align, CHUNK_SIZE);
	extra = align > PAGE_SIZE ? align : 0;

	if (len + extra < len)
		return MAP_FAILED;
	va = try_mmap(NULL, len + extra, PROT_NONE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (va == MAP_FAILED || !extra)
		return va;
	aligned = (uint8_t *)(((uintptr_t)va + align - 1) & ~(uintptr_t)(align - 1));
	if (aligned > va)
		munmap(va, aligned - va);
	if (aligned + len < va + len + extra)
		munmap(aligned + len, va + len + extra - (aligned + len));
	return aligned;
}

/*
 * Map the file's window at m->addr, inaccessible until open_window(). It
 * replaces the reservation there, or for gmem_mmap's MAP_FIXED whatever the
 * caller had there.
 */
static int map_window(struct gmem_file *file, struct host_mapping *m)
{
	size_t in_file = m->file_pages << PAGE_SHIFT;
	off_t pos = (off_t)file_pfn(file, m->pgoff) << PAGE_SHIFT;

	if (try_mmap(m->addr, in_file, PROT_NONE, MAP_SHARED | MAP_FIXED,
		     file->vm->pool->memfd, pos) == MAP_FAILED)
		return -ENOMEM;
	/* The host's first touch of a huge folio takes a host huge page (pool.c). */
	if (file->order)
		madvise(m->addr, in_file, MADV_HUGEPAGE);
	if (m->len > in_file &&
	    try_mmap(m->addr + in_file, m->len - in_file, PROT_NONE,
		     MAP_SHARED | MAP_FIXED, fence_past_eof_fd(), 0) == MAP_FAILED)
		return -ENOMEM;
	return 0;
}

/*
 * Give a mapping made by map_window() its protection, private pages fenced
 * first: the address may be known to other threads (MAP_FIXED), so no page
 * is reachable, not even for a moment, while it is private. The invalidate
 * lock holds the attributes still.
 */
static int open_window(struct gmem_file *file, struct host_mapping *m)
{
	size_t in_file = m->file_pages << PAGE_SHIFT;
	uint64_t end = m->pgoff + m->file_pages;

	/* Guards outlive mprotect: fence, then open the whole range. */
	if (fence_uses_guards())
		return file_for_each_attr_run(file, m->pgoff, end, true,
					      close_run, m) ||
		       try_mprotect(m->addr, m->len, m->prot) ? -ENOMEM : 0;
	/* Without guards PROT_NONE is the fence: open the shared runs only. */
	if (file_for_each_attr_run(file, m->pgoff, end, false, open_run, m))
		return -ENOMEM;
	if (m->len > in_file &&
	    try_mprotect(m->addr + in_file, m->len - in_file, m->prot))
		return -ENOMEM;
	return 0;
}

/* Drop the record's pages before @to: it now starts there. */
static void trim_head(struct host_mapping *m, uint8_t *to)
{
	uint64_t pages = (uint64_t)(to - m->addr) >> PAGE_SHIFT;

	m->addr = to;
	m->len -= pages << PAGE_SHIFT;
	m->pgoff += pages;
	m->file_pages = m->file_pages > pages ? m->file_pages - pages : 0;
}

enum { CUT_TRIMMED, CUT_SPLIT, CUT_GONE };

/*
 * What a cut does to the addresses: unmap them; leave an inaccessible
 * reservation there instead, for a MAP_FIXED mapping to replace without the
 * address falling free in between; or nothing, where they are mapped no
 * more (a fork child's hole: mapping_forget_unmapped).
 */
enum cut_how { CUT_UNMAP, CUT_RESERVE, CUT_FORGET };

/*
 * Take [lo, hi) out of record @m, which it overlaps: @how the addresses, then
 * shrink the record (CUT_TRIMMED), drop it from its file (CUT_GONE), or,
 * for a hole in its middle, move the part after the hole to @spare, put in
 * the file's tree with a reference of its own (CUT_SPLIT).
 * The file's mappings_lock covers the real change and the record's, so a
 * conversion sees both or neither; hm_lock does the same for the shootdown
 * handler. A foreign record (inherited through fork) has a dead copy of the
 * parent's file: only the record and the real mapping change. Under
 * all_mappings_lock.
 */
static int cut(struct host_mapping *m, uint8_t *lo, uint8_t *hi, enum cut_how how,
	       struct host_mapping *spare)
{
	struct gmem_file *file = m->file;
	uint8_t *end = m->addr + m->len;
	sigset_t sigs;
	int ret;

	lock_assert_held(&all_mappings_lock);
	lo = MAX(lo, m->addr);
	hi = MIN(hi, end);
	if (!m->foreign) {
		mutex_lock(&file->mappings_lock);
		change_begin(file);
	}
	hm_lock(&sigs);
	if (how == CUT_RESERVE)
		ret = try_mmap(lo, hi - lo, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS |
			       MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED;
	else
		ret = how == CUT_UNMAP ? munmap(lo, hi - lo) : 0;
	if (ret) {	/* no VMA for a split: the mapping is as it was */
		ret = -ENOMEM;
		goto out;
	}
	/* Out of the tree while its pages change; back in as what is left. */
	if (!m->foreign)
		mapping_tree_remove(&file->mappings, m);
	if (lo == m->addr && hi == end) {
		hm_free(m->hm);
		ret = CUT_GONE;
	} else if (lo == m->addr) {
		trim_head(m, hi);
		hm_update(m->hm, m);
		ret = CUT_TRIMMED;
	} else {
		ret = CUT_TRIMMED;
		if (hi < end) {
			struct hm_entry *hm = spare->hm;
			struct mapping_chunks *chunks = spare->chunks;

			if (m->chunks)		/* each part keeps its own bits */
				memcpy(chunks, m->chunks, chunks_size(m->chunks));
			else
				free(chunks);
			*spare = *m;
			spare->hm = hm;
			spare->chunks = m->chunks ? chunks : NULL;
			trim_head(spare, hi);
			hm_update(spare->hm, spare);	/* before @m lets go of it */
			if (!m->foreign) {
				mapping_tree_insert(&file->mappings, spare);
				file_get_ref(file);
			}
			ret = CUT_SPLIT;
		}
		m->len = lo - m->addr;
		m->file_pages = MIN(m->file_pages, m->len >> PAGE_SHIFT);
		hm_update(m->hm, m);
	}
	if (!m->foreign && ret != CUT_GONE)
		mapping_tree_insert(&file->mappings, m);
out:
	hm_unlock(&sigs);
	if (!m->foreign) {
		change_end(file);
		mutex_unlock(&file->mappings_lock);
	}
	return ret;
}

/* What cut_range() leaves to do once the caller has dropped its locks. */
struct cut_list {
	struct host_mapping *gone;	/* dropped records, via next_all */
	struct cut_ref {
		struct gmem_file *file;	/* an extra reference */
		struct gmem_vm *vm;
	} *refs;			/* one per record of this process touched */
	unsigned int nrefs;
};

static void free_spare(struct host_mapping *m)
{
	hm_free(m->hm);
	free(m->chunks);
	free(m);
}

/*
 * Cut [lo, hi) out of every record it overlaps (see cut()), under
 * all_mappings_lock; the caller calls cut_finish() once it has dropped every
 * lock: that is
 * where files lose references and may be released. Returns the number of
 * records touched (0: nothing changed), or -ENOMEM: no memory for the
 * bookkeeping (nothing changed), or the kernel could not split a mapping
 * (the records before it are cut already, as munmap(2) may leave them).
 */
static int cut_range(uint8_t *lo, uint8_t *hi, enum cut_how how,
		     struct cut_list *cl)
{
	struct host_mapping **pm, *m, *spares = NULL;
	unsigned int nhit = 0, nsplit = 0, i;
	size_t chunks = 0;	/* bytes of the largest chunk bits a split copies */
	int ret = 0;

	lock_assert_held(&all_mappings_lock);
	for (m = all_mappings; m; m = m->next_all) {
		if (m->addr < hi && lo < m->addr + m->len) {
			nhit++;
			if (m->addr < lo && hi < m->addr + m->len) {
				nsplit++;
				if (m->chunks)
					chunks = MAX(chunks, chunks_size(m->chunks));
			}
		}
	}
	if (!nhit)
		return 0;
	/* Everything a split needs, before anything changes. */
	cl->refs = try_calloc(nhit, sizeof(*cl->refs));
	for (i = 0; cl->refs && i < nsplit; i++) {
		m = try_calloc(1, sizeof(*m));
		if (m && ((chunks && !(m->chunks = try_malloc(chunks))) ||
			  !(m->hm = hm_alloc()))) {
			free(m->chunks);
			free(m);
			m = NULL;
		}
		if (!m)
			break;
		m->next_all = spares;
		spares = m;
	}
	if (!cl->refs || i < nsplit) {
		ret = -ENOMEM;
		goto out;
	}

	for (pm = &all_mappings; (m = *pm);) {
		struct host_mapping *spare = spares;
		struct host_mapping *rest = spare ? spare->next_all : NULL;

		if (!(m->addr < hi && lo < m->addr + m->len)) {
			pm = &m->next_all;
			continue;
		}
		/* Keeps the file and its VM alive for cut_finish(). */
		if (!m->foreign) {
			file_get_ref(m->file);
			vm_get(m->file->vm);
			cl->refs[cl->nrefs++] = (struct cut_ref){ m->file, m->file->vm };
		}
		ret = cut(m, lo, hi, how, spare);
		if (ret < 0)
			break;
		if (ret == CUT_GONE) {
			*pm = m->next_all;
			m->next_all = cl->gone;
			cl->gone = m;
			continue;
		}
		if (ret == CUT_SPLIT) {
			spares = rest;	/* cut() copied @m over spare's link */
			spare->next_all = m->next_all;
			m->next_all = spare;
			m = spare;	/* past the hole: nothing more to cut */
		}
		pm = &m->next_all;
	}
out:
	while ((m = spares)) {
		spares = m->next_all;
		free_spare(m);
	}
	return ret < 0 ? ret : (int)nhit;
}

/* Drop what cut_range() held, then check each VM it touched once. */
static void cut_finish(struct cut_list *cl, const char *op)
{
	struct host_mapping *m;
	unsigned int i, j;

	while ((m = cl->gone)) {
		cl->gone = m->next_all;
		if (!m->foreign)
			file_put(m->file);
		free(m->chunks);
		free(m);
	}
	for (i = 0; i < cl->nrefs; i++)
		file_put(cl->refs[i].file);
	for (i = 0; i < cl->nrefs; i++) {
		for (j = 0; j < i && cl->refs[j].vm != cl->refs[i].vm; j++)
			;
		if (j == i)
			check_after(cl->refs[i].vm, op);
	}
	for (i = 0; i < cl->nrefs; i++)
		vm_put(cl->refs[i].vm);
	free(cl->refs);
}

/* A MAP_FIXED address: aligned as the mapping's offset must be, no wrap. */
static int check_fixed(struct gmem_file *file, void *addr, size_t len)
{
	uintptr_t va = (uintptr_t)addr;

	if (!va)
		return gmem_err(EINVAL, "gmem_mmap: MAP_FIXED address is NULL");
	if (!ALIGNED(va, PAGE_SIZE << file->order))
		return gmem_err(EINVAL, "gmem_mmap: MAP_FIXED address %p is not aligned to the folio size (%#llx)",
				addr, PAGE_SIZE << file->order);
	if (va + len < va)
		return gmem_err(EINVAL, "gmem_mmap: MAP_FIXED %p+%#zx wraps", addr, len);
	return 0;
}

/*
 * The chunk fences of a new record @m whose first @bytes show the file
 * (fence.h), if they may hold a whole 2 MiB chunk: no chunk fenced whole,
 * and where the chunks map back from. A bit per 2 MiB of address space they
 * may span (64 bytes per GiB of file mapped) and 48 bytes; nothing for a
 * smaller mapping, whose record stays as small as it was.
 */
static int chunks_init(struct host_mapping *m, struct gmem_file *file,
		       uint64_t bytes)
{
	size_t nwords = ((bytes >> CHUNK_SHIFT) + 2) / 64 + 1;
	struct mapping_chunks *c;
	struct stat st;

	if (bytes < CHUNK_SIZE)
		return 0;
	c = try_calloc(1, sizeof(*c) + nwords * sizeof(c->whole[0]));
	if (!c)
		return -ENOMEM;
	c->nwords = nwords;
	c->pool_fd = file->vm->pool->memfd;
	if (!fstat(c->pool_fd, &st)) {
		c->dev = st.st_dev;
		c->ino = st.st_ino;
	}
	c->base_pfn = file->base_pfn;
	c->huge = file->order;
	m->chunks = c;
	return 0;
}

GMEM_API int gmem_mmap(int fd, uint64_t offset, size_t len, int prot,
		       int flags, void **addr)
{
	KEEP_ERRNO();
	struct cut_list cl = { 0 };
	struct host_mapping *m = NULL;
	struct gmem_file *file;
	void *va = MAP_FAILED;
	bool cut_failed, have_eof;
	sigset_t sigs;
	int ret;

	ret = file_get(fd, "gmem_mmap", &file);
	if (ret)
		return ret;
	ret = check_mmap(file, offset, len, prot, flags);
	if (!ret && !addr)
		ret = gmem_err(EINVAL, "gmem_mmap: no address output");
	if (!ret && (flags & MAP_FIXED))
		ret = check_fixed(file, *addr, len);
	if (ret)
		goto out_put;
	m = try_calloc(1, sizeof(*m));
	if (m && chunks_init(m, file, MIN(len, file->size - offset))) {
		free(m);
		m = NULL;
	}
	/* Reserve the address range, then fill it (past EOF: fence.c's memfd). */
	have_eof = fence_past_eof_fd() >= 0;
	if (m && have_eof)
		va = flags & MAP_FIXED ? *addr :
		     reserve_aligned(len, PAGE_SIZE << file->order);
	if (va == MAP_FAILED) {
		ret = m && have_eof ?
		      gmem_err(ENOMEM, "gmem_mmap: no address space for %#zx bytes", len) :
		      gmem_err(ENOMEM, "gmem_mmap: out of memory");
		goto out_free;
	}
	m->addr = va;
	m->len = len;
	m->pgoff = offset >> PAGE_SHIFT;
	m->file_pages = MIN(len, file->size - offset) >> PAGE_SHIFT;
	m->prot = prot;
	m->uid = file->uid;
	m->file = file;
	if (m->chunks)
		m->chunks->base = CHUNK_DOWN(va);
	/* From the first mapping on, a private page raises SIGBUS. */
	sigbus_install();

	/*
	 * Shared: conversions wait until the new mapping is fenced and listed.
	 * Under all_mappings_lock, what was at the address (any gmem mapping, for
	 * MAP_FIXED) leaves the records and the new record arrives in one step.
	 */
	brlock_read_lock(&file->invalidate_lock);
	mutex_lock(&all_mappings_lock);
	change_begin(file);
	m->hm = hm_alloc();
	ret = m->hm ? cut_range(va, (uint8_t *)va + len, CUT_RESERVE, &cl) : -ENOMEM;
	cut_failed = ret < 0;
	if (ret >= 0)
		ret = map_window(file, m);
	if (!ret) {
		/* Known to the SIGSEGV handler before a page opens. */
		hm_lock(&sigs);
		hm_update(m->hm, m);
		hm_unlock(&sigs);
		ret = open_window(file, m);
	}
	if (!ret) {
		mutex_lock(&file->mappings_lock);
		mapping_tree_insert(&file->mappings, m);
		atomic_store_explicit(&file->mappings_ever, true,
				      memory_order_release);
		mutex_unlock(&file->mappings_lock);
		m->next_all = all_mappings;
		all_mappings = m;
	} else {
		/*
		 * Our reservation, or (as a failed mmap(2) MAP_FIXED may) the
		 * range, once no record covers it. A cut that failed left the
		 * record it failed on, and its pages, as they were.
		 */
		if (!cut_failed || !(flags & MAP_FIXED))
			munmap(va, len);
		if (m->hm) {
			hm_lock(&sigs);
			hm_free(m->hm);
			hm_unlock(&sigs);
		}
	}
	change_end(file);
	mutex_unlock(&all_mappings_lock);
	brlock_read_unlock(&file->invalidate_lock);
	cut_finish(&cl, "gmem_mmap");
	if (ret) {
		ret = gmem_err(ENOMEM, "gmem_mmap: cannot map the file");
		goto out_free;
	}
	*addr = va;
	check_after(file->vm, "gmem_mmap");
	return 0;	/* the mapping keeps the file reference */

out_free:
	if (m)
		free(m->chunks);
	free(m);
out_put:
	file_put(file);
	return ret;
}

/*
 * munmap(2) for gmem mappings: every part of [addr, addr+len) that a gmem
 * mapping covers is unmapped; other mappings in the range stay.
 */
/*
 * Probes of what this process maps, by system calls that change nothing:
 * msync(MS_ASYNC) fails with ENOMEM over a hole, and a mapping that may not
 * replace anything fails with EEXIST over a page that is mapped.
 */
static bool all_mapped(uint8_t *a, size_t len)
{
	return !syscall(SYS_msync, a, len, MS_ASYNC);
}

static bool any_mapped(uint8_t *a, size_t len)
{
	void *p = (void *)syscall(SYS_mmap, a, len, PROT_NONE, MAP_PRIVATE |
				  MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);

	if (p == MAP_FAILED)
		return errno != ENOMEM;	/* EEXIST; anything else: assume mapped */
	syscall(SYS_munmap, p, len);
	return p != a;			/* a kernel without NOREPLACE moved it */
}

/* The first page of [lo, hi) that @mapped says no to, or @hi: by halves. */
static uint8_t *first_not(bool (*mapped)(uint8_t *, size_t), bool want,
			  uint8_t *lo, uint8_t *hi)
{
	if (mapped(lo, hi - lo) == want)
		return hi;
	while ((size_t)(hi - lo) > PAGE_SIZE) {	/* the first such page is in [lo, hi) */
		uint8_t *mid = lo + ((((hi - lo) >> PAGE_SHIFT) / 2) << PAGE_SHIFT);

		if (mapped(lo, mid - lo) == want)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/*
 * In the child, after mapping_fork_child: a mapping the parent had marked
 * MADV_DONTFORK (as VMMs mark guest memory) was not inherited. Forget the
 * parts of the records that are not mapped, so that the parent's
 * conversions never fence, or map the pool, where the child may put memory
 * of its own. Each hole is found in a logarithmic number of probes, and
 * forgotten without a system call: nothing is mapped there to unmap, and
 * none may go through an interposer (gmem exec's munmap would come back
 * into gmem_munmap, under all_mappings_lock).
 */
void mapping_forget_unmapped(void)
{
	for (;;) {
		struct cut_list cl = { 0 };
		uint8_t *lo = NULL, *hi = NULL;

		mutex_lock(&all_mappings_lock);
		for (struct host_mapping *m = all_mappings; m && !lo; m = m->next_all) {
			uint8_t *end = m->addr + m->len;

			lo = first_not(all_mapped, true, m->addr, end);
			if (lo == end)
				lo = NULL;
			else
				hi = first_not(any_mapped, false, lo, end);
		}
		if (lo && cut_range(lo, hi, CUT_FORGET, &cl) < 0)
			lo = NULL;	/* no memory for a split: keep the rest */
		mutex_unlock(&all_mappings_lock);
		cut_finish(&cl, "fork");
		if (!lo)
			return;
	}
}

GMEM_API int gmem_munmap(void *addr, size_t len)
{
	KEEP_ERRNO();
	size_t rounded = (len + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	uintptr_t lo = (uintptr_t)addr;
	struct cut_list cl = { 0 };
	int ret;

	if (!len)
		return gmem_err(EINVAL, "gmem_munmap: length is 0");
	if (!ALIGNED(lo, PAGE_SIZE))
		return gmem_err(EINVAL, "gmem_munmap: address %p is not 4 KiB aligned", addr);
	if (rounded < len || lo + rounded < lo)
		return gmem_err(EINVAL, "gmem_munmap: %p+%#zx wraps", addr, len);
	mutex_lock(&all_mappings_lock);
	ret = cut_range((uint8_t *)lo, (uint8_t *)(lo + rounded), CUT_UNMAP, &cl);
	mutex_unlock(&all_mappings_lock);
	cut_finish(&cl, "gmem_munmap");
	if (ret < 0)
		return gmem_err(ENOMEM, "gmem_munmap: cannot unmap part of %p+%#zx",
				addr, len);
	if (!ret)
		return gmem_err(EINVAL, "gmem_munmap: no gmem mapping in %p+%#zx",
				addr, len);
	return 0;
}

GMEM_API int gmem_mapping_find(const void *addr, int *fd, uint64_t *offset)
{
	KEEP_ERRNO();
	uintptr_t p = (uintptr_t)addr;
	struct host_mapping *m;

	mutex_lock(&all_mappings_lock);
	for (m = all_mappings; m; m = m->next_all) {
		uintptr_t start = (uintptr_t)m->addr;

		if (p < start || p - start >= m->len)
			continue;
		if (fd)		/* an inherited mapping's handle is not ours */
			*fd = m->foreign ? -1 : atomic_load(&m->file->obj.handle);
		if (offset)
			*offset = (m->pgoff << PAGE_SHIFT) + (p - start);
		break;
	}
	mutex_unlock(&all_mappings_lock);
	return m != NULL;
}
