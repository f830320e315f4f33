// SPDX-License-Identifier: MIT
/*
 * Host mappings of a file: gmem_mmap / gmem_munmap.
 *
 * A mapping is one MAP_SHARED mapping of the file's window of the pool
 * memfd, so the host's first touch of a hole is an ordinary shmem fault (a
 * zeroed page, no call into gmem) and every mapping sees the direct map's
 * bytes. The part past the end of the file maps an empty memfd: the kernel
 * raises SIGBUS there, as for a guest_memfd.
 *
 * Private pages are fenced with guard regions (MADV_GUARD_INSTALL): the
 * kernel drops their page-table entries and any access raises SIGSEGV,
 * while the pages themselves, and so their content, stay where they are.
 * Guards are per page-table entry, so a fragmented file never splits the
 * mapping into thousands of VMAs. Where the kernel lacks guards (before
 * 6.15) mprotect(PROT_NONE) does the same job with a VMA per range.
 */
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL	102
#define MADV_GUARD_REMOVE	103
#endif

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int past_eof_fd = -1;	/* empty memfd: every access is past its end */
static bool have_guards;

/* Every mapping of the process, for munmap lookups and fork. */
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;
static struct host_mapping *all_mappings;

static void fork_prepare(void)
{
	pthread_mutex_lock(&all_lock);
}

static void fork_parent(void)
{
	pthread_mutex_unlock(&all_lock);
}

/*
 * A forked child cannot follow later conversions (they change only this
 * process's page tables), so it keeps no access at all to gmem mappings.
 */
static void fork_child(void)
{
	for (struct host_mapping *m = all_mappings; m; m = m->next_all) {
		if (have_guards)
			madvise(m->addr, m->len, MADV_GUARD_INSTALL);
		else
			mprotect(m->addr, m->len, PROT_NONE);
	}
	pthread_mutex_unlock(&all_lock);
}

static void setup(void)
{
	void *probe;

	past_eof_fd = memfd_create("gmem-past-eof", MFD_CLOEXEC);
	/* Probe a shared file mapping: shmem gained guards after anonymous memory. */
	probe = mmap(NULL, PAGE_SIZE, PROT_NONE, MAP_SHARED, past_eof_fd, 0);
	if (probe != MAP_FAILED) {
		have_guards = !madvise(probe, PAGE_SIZE, MADV_GUARD_INSTALL);
		munmap(probe, PAGE_SIZE);
	}
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

bool mapping_uses_guards(void)
{
	pthread_once(&once, setup);
	return have_guards;
}

static int fence(struct host_mapping *m, uint64_t start, uint64_t end,
		 bool revoke)
{
	uint64_t lo = MAX(start, m->pgoff);
	uint64_t hi = MIN(end, m->pgoff + m->file_pages);
	uint8_t *addr;
	size_t len;

	if (lo >= hi)
		return 0;
	addr = m->addr + ((lo - m->pgoff) << PAGE_SHIFT);
	len = (hi - lo) << PAGE_SHIFT;
	if (have_guards)
		return madvise(addr, len, revoke ? MADV_GUARD_INSTALL
						 : MADV_GUARD_REMOVE);
	return mprotect(addr, len, revoke ? PROT_NONE : m->prot);
}

/*
 * Revoke host access to pages [start, end) in every mapping of the file.
 * Caller holds the invalidate lock exclusive. On failure nothing is left
 * revoked that the caller does not restore itself.
 */
int mapping_revoke(struct gmem_file *file, uint64_t start, uint64_t end)
{
	int ret = 0;

	pthread_mutex_lock(&file->mappings_lock);
	for (struct host_mapping *m = file->mappings; m && !ret; m = m->next)
		ret = fence(m, start, end, true);
	pthread_mutex_unlock(&file->mappings_lock);
	return ret ? -ENOMEM : 0;
}

/* Give host mappings back access to pages [start, end), now shared. */
void mapping_restore(struct gmem_file *file, uint64_t start, uint64_t end)
{
	pthread_mutex_lock(&file->mappings_lock);
	for (struct host_mapping *m = file->mappings; m; m = m->next)
		fence(m, start, end, false);
	pthread_mutex_unlock(&file->mappings_lock);
}

static int check_mmap(struct gmem_file *file, uint64_t offset, size_t len,
		      int prot, int flags)
{
	if (!(file->flags & GMEM_FLAG_MMAP))
		return gmem_err(ENODEV, "gmem_mmap: file was created without GMEM_FLAG_MMAP");
	if ((flags & MAP_TYPE) != MAP_SHARED || (flags & ~MAP_TYPE))
		return gmem_err(EINVAL, "gmem_mmap: only MAP_SHARED mappings; copy-on-write is not allowed");
	if (!prot || (prot & ~(PROT_READ | PROT_WRITE)))
		return gmem_err(EINVAL, "gmem_mmap: prot %#x is not PROT_READ/PROT_WRITE", prot);
	if (!len || !ALIGNED(offset, PAGE_SIZE) || !ALIGNED(len, PAGE_SIZE) ||
	    offset >= file->size || offset + len < offset)
		return gmem_err(EINVAL, "gmem_mmap: offset %#llx, length %#zx: empty, unaligned or past the end",
				(unsigned long long)offset, len);
	if (!ALIGNED(offset, PAGE_SIZE << file->order) ||
	    !ALIGNED(len, PAGE_SIZE << file->order))
		return gmem_err(EINVAL, "gmem_mmap: offset %#llx or length %#zx is not a multiple of the folio size",
				(unsigned long long)offset, len);
	return 0;
}

/* Fence every private page the mapping covers. Caller holds the invalidate lock. */
static int fence_private(struct gmem_file *file, struct host_mapping *m)
{
	uint64_t i = m->pgoff, end = m->pgoff + m->file_pages;

	while (i < end) {
		uint64_t run_end;
		uint64_t attr = attr_lookup(&file->attrs, i, NULL, &run_end);

		run_end = MIN(run_end, end);
		if ((attr & GMEM_ATTR_PRIVATE) && fence(m, i, run_end, true))
			return -ENOMEM;
		i = run_end;
	}
	return 0;
}

/*
 * Address space for a mapping, aligned to the file's folio size so the host
 * kernel can map a huge folio with huge page-table entries where it is able.
 */
static void *reserve_aligned(size_t len, uint64_t align)
{
	uint8_t *va, *aligned;
	size_t extra = align > PAGE_SIZE ? align : 0;

	if (len + extra < len)
		return MAP_FAILED;
	va = mmap(NULL, len + extra, PROT_NONE,
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

static int map_window(struct gmem_file *file, struct host_mapping *m)
{
	size_t in_file = m->file_pages << PAGE_SHIFT;
	off_t pos = (off_t)file_pfn(file, m->pgoff) << PAGE_SHIFT;

	if (mmap(m->addr, in_file, m->prot, MAP_SHARED | MAP_FIXED,
		 file->vm->pool->memfd, pos) == MAP_FAILED)
		return -ENOMEM;
	if (m->len > in_file &&
	    mmap(m->addr + in_file, m->len - in_file, m->prot,
		 MAP_SHARED | MAP_FIXED, past_eof_fd, 0) == MAP_FAILED)
		return -ENOMEM;
	return 0;
}

GMEM_API int gmem_mmap(int fd, uint64_t offset, size_t len, int prot,
		       int flags, void **addr)
{
	struct host_mapping *m = NULL;
	struct gmem_file *file;
	void *va = MAP_FAILED;
	int ret;

	pthread_once(&once, setup);
	ret = file_get(fd, "gmem_mmap", &file);
	if (ret)
		return ret;
	ret = check_mmap(file, offset, len, prot, flags);
	if (!ret && !addr)
		ret = gmem_err(EINVAL, "gmem_mmap: no address output");
	if (ret)
		goto out_put;
	m = calloc(1, sizeof(*m));
	if (m)	/* reserve the address range, then fill it */
		va = reserve_aligned(len, PAGE_SIZE << file->order);
	if (!m || va == MAP_FAILED || past_eof_fd < 0) {
		ret = gmem_err(ENOMEM, "gmem_mmap: out of memory or address space");
		goto out_free;
	}
	m->addr = va;
	m->len = len;
	m->pgoff = offset >> PAGE_SHIFT;
	m->file_pages = MIN(len, file->size - offset) >> PAGE_SHIFT;
	m->prot = prot;
	m->file = file;

	/* Shared: conversions wait until the new mapping is fenced and listed. */
	brlock_read_lock(&file->invalidate_lock);
	ret = map_window(file, m);
	if (!ret)
		ret = fence_private(file, m);
	if (!ret) {
		pthread_mutex_lock(&file->mappings_lock);
		m->next = file->mappings;
		file->mappings = m;
		atomic_store_explicit(&file->mappings_ever, true,
				      memory_order_release);
		pthread_mutex_unlock(&file->mappings_lock);
	}
	brlock_read_unlock(&file->invalidate_lock);
	if (ret) {
		ret = gmem_err(ENOMEM, "gmem_mmap: cannot map the file");
		goto out_free;
	}
	pthread_mutex_lock(&all_lock);
	m->next_all = all_mappings;
	all_mappings = m;
	pthread_mutex_unlock(&all_lock);
	*addr = va;
	check_after(file->vm, "gmem_mmap");
	return 0;	/* the mapping keeps the file reference */

out_free:
	if (va != MAP_FAILED)
		munmap(va, len);
	free(m);
out_put:
	file_put(file);
	return ret;
}

GMEM_API int gmem_munmap(void *addr, size_t len)
{
	struct host_mapping **pm, *m;
	struct gmem_file *file;
	struct gmem_vm *vm;

	pthread_mutex_lock(&all_lock);
	for (pm = &all_mappings; (m = *pm); pm = &m->next_all)
		if (m->addr == addr && m->len == len)
			break;
	if (m)
		*pm = m->next_all;
	pthread_mutex_unlock(&all_lock);
	if (!m)
		return gmem_err(EINVAL, "gmem_munmap: %p+%#zx is not a gmem mapping",
				addr, len);

	file = m->file;
	pthread_mutex_lock(&file->mappings_lock);
	for (pm = &file->mappings; *pm != m; pm = &(*pm)->next)
		;
	*pm = m->next;
	pthread_mutex_unlock(&file->mappings_lock);
	munmap(m->addr, m->len);
	free(m);
	vm = file->vm;
	vm_get(vm);
	file_put(file);
	check_after(vm, "gmem_munmap");
	vm_put(vm);
	return 0;
}
