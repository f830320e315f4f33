// SPDX-License-Identifier: MIT
/*
 * The host memory pool: "physical memory" for every file of every VM made
 * from it. One memfd holds the frames; it is sparse, so a frame costs memory
 * only once written. The whole memfd is mapped once: the direct map.
 *
 * Each file owns a window of contiguous frames, aligned to 2 MiB: page i of
 * the file always lives in frame base + i. So every folio is naturally
 * aligned, a host mapping of a file is one linear mapping of the memfd, and
 * joining 4 KiB folios into a huge one never moves data. Frames leave a file
 * only through the arch's reclaim hook; then the pool discards them (punches
 * them out of the memfd), so every free frame reads as zero.
 *
 * Where the process may create a tmpfs (CAP_SYS_ADMIN), the pool file lives
 * on a private one mounted huge=advise and never attached to any directory
 * tree (fsopen/fsmount, then O_TMPFILE): shmem then backs a 2 MiB-aligned
 * run of frames with one host huge page (a PMD-sized shmem folio) wherever
 * the mapping that allocates it asks for huge pages (MADV_HUGEPAGE), and
 * nowhere else. The windows of huge-folio files ask for it in the direct
 * map, so their folios get real 2 MiB host pages (a 1 GiB folio is 512 of
 * them: shmem has no larger page); the rest of the direct map refuses them
 * (MADV_NOHUGEPAGE), and 4 KiB files keep 4 KiB host pages. The
 * host's own mappings still fence single 4 KiB pages: a guard splits the
 * huge page's mapping in that VMA, not the page. Elsewhere the pool is a
 * plain memfd and every frame is a 4 KiB host page.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "arch.h"
#include "handle.h"
#include "inject.h"
#include "lock.h"
#include "pool.h"
#include "poison.h"

#define DEFAULT_CAPACITY	(4ULL << 40)
/* A 4 KiB stage-2 leaf holds a frame number of S2_PFN_BITS bits: 4 TiB. */
#define MAX_CAPACITY		(S2_MAX_PFN << PAGE_SHIFT)

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE	23
#endif

/* A free extent of frames. */
struct window {
	uint64_t base, nframes;
	struct window *next;
};

static void free_windows(struct window *w)
{
	while (w) {
		struct window *next = w->next;

		free(w);
		w = next;
	}
}

/*
 * The frame model's memory: the arch's word per frame, then the engine's
 * bit per frame, in one sparse anonymous mapping touched only where frames
 * are used.
 */
static size_t frame_model_bytes(uint64_t nframes)
{
	return nframes * sizeof(uint64_t) + (nframes + 63) / 64 * sizeof(uint64_t);
}

static void pool_release(struct obj *o)
{
	struct gmem_pool *pool = (struct gmem_pool *)o;

	free_windows(pool->windows);
	free_windows(pool->spares);
	pool->spares = NULL;
	munmap(pool->direct_map, pool->nframes << PAGE_SHIFT);
	munmap(pool->frames, frame_model_bytes(pool->nframes));
	close(pool->memfd);
	pthread_mutex_destroy(&pool->lock);
	obj_recycle(o);
}

void pool_put(struct gmem_pool *pool)
{
	obj_put(&pool->obj);
}

/*
 * mmap for gmem's own mappings of the pool and its model, which reserve far
 * more than is used: never populated at once. A process that locks its
 * future memory (mlockall MCL_FUTURE) gets every new mapping locked, and a
 * locked mapping is faulted in whole: terabytes of direct map. So the
 * mapping is made inaccessible, and where it came out locked (MADV_DONTNEED
 * refuses a locked VMA) it is locked on fault instead before it gets @prot:
 * what the program locks stays locked, page by page as it is touched.
 */
void *pool_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	void *p = try_mmap(addr, len, PROT_NONE, flags, fd, off);

	if (p == MAP_FAILED || prot == PROT_NONE)
		return p;
	if (madvise(p, PAGE_SIZE, MADV_DONTNEED) && errno == EINVAL)
		syscall(SYS_mlock2, p, len, MLOCK_ONFAULT);	/* as fence.c */
	if (mprotect(p, len, prot)) {
		munmap(p, len);
		return MAP_FAILED;
	}
	return p;
}

/*
 * Map @len bytes of @fd shared at a 2 MiB-aligned address, so that each
 * 2 MiB-aligned run of frames can be one PMD mapping of a host huge page.
 */
static uint8_t *map_aligned(int fd, uint64_t len)
{
	uint8_t *area, *p;
	uint64_t head;

	area = try_mmap(NULL, len + (POOL_HUGE_FRAMES << PAGE_SHIFT), PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (area == MAP_FAILED)
		return MAP_FAILED;
	head = -(uintptr_t)area & ((POOL_HUGE_FRAMES << PAGE_SHIFT) - 1);
	if (head)
		munmap(area, head);
	munmap(area + head + len, (POOL_HUGE_FRAMES << PAGE_SHIFT) - head);
	p = pool_mmap(area + head, len, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_NORESERVE | MAP_FIXED, fd, 0);
	if (p == MAP_FAILED)
		munmap(area + head, len);
	return p;
}

/*
 * An unlinked file on a tmpfs of its own, mounted huge=advise with no size
 * or inode limit and attached nowhere: it goes away with its last fd.
 * -errno where this process may not create one.
 */
static int huge_tmpfs_file(void)
{
	static const char *const opts[][2] = {
		{ "huge", "advise" }, { "size", "0" }, { "nr_inodes", "0" },
	};
	int fs, mnt, fd = -1;

	fs = (int)syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC);
	if (fs < 0)
		return -errno;
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, opts[i][0],
			    opts[i][1], 0))
			goto out;
	if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0))
		goto out;
	mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0);
	if (mnt < 0)
		goto out;
	fd = openat(mnt, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	close(mnt);
out:
	if (fd < 0)
		fd = -errno;
	close(fs);
	return fd;
}

/* The pool file: on huge pages where the host gives them, else a memfd. */
static int pool_file(struct gmem_pool *pool)
{
	int fd = huge_tmpfs_file();

	pool->huge_pages = fd >= 0;
	if (fd >= 0)
		return fd;
	return try_memfd_create("gmem-pool", MFD_CLOEXEC);
}

GMEM_API int gmem_pool_create(uint64_t capacity)
{
	KEEP_ERRNO();
	struct gmem_pool *pool;
	bool fresh;
	int ret;

	if (!capacity)
		capacity = DEFAULT_CAPACITY;
	if (!ALIGNED(capacity, GIB))
		return gmem_err(EINVAL, "gmem_pool_create: capacity %#llx is not a multiple of 1 GiB",
				(unsigned long long)capacity);
	if (capacity > MAX_CAPACITY)
		return gmem_err(EINVAL, "gmem_pool_create: capacity %#llx is above 4 TiB, the frames a stage-2 entry can name",
				(unsigned long long)capacity);
	pool = obj_alloc(OBJ_POOL, sizeof(*pool), sizeof(struct obj), &fresh);
	if (!pool)
		return gmem_err(ENOMEM, "gmem_pool_create: out of memory");
	pool->obj.release = pool_release;
	pool->nframes = capacity >> PAGE_SHIFT;
	pool->memfd = pool_file(pool);
	if (pool->memfd < 0) {
		ret = gmem_err(errno, "gmem_pool_create: memfd_create failed");
		goto out_free;
	}
	if (try_ftruncate(pool->memfd, capacity)) {
		ret = gmem_err(errno, "gmem_pool_create: cannot size the pool memfd");
		goto out_close;
	}
	pool->direct_map = map_aligned(pool->memfd, capacity);
	if (pool->direct_map == MAP_FAILED) {
		ret = gmem_err(ENOMEM, "gmem_pool_create: no address space for a %llu GiB direct map",
			       (unsigned long long)(capacity / GIB));
		goto out_close;
	}
	pool->frames = pool_mmap(NULL, frame_model_bytes(pool->nframes),
				 PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (pool->frames == MAP_FAILED) {
		ret = gmem_err(ENOMEM, "gmem_pool_create: no address space for the frame model");
		goto out_unmap;
	}
	pool->was_private = pool->frames + pool->nframes;
	/* Host huge pages only where a huge file's window asks (pool_advise_huge). */
	if (try_madvise(pool->direct_map, capacity, MADV_NOHUGEPAGE)) {
		ret = gmem_err(ENOMEM, "gmem_pool_create: cannot keep host huge pages out of the direct map");
		goto out_unmap_frames;
	}
	/*
	 * A fork child cannot use the pool (its handles fail with EIO), and the
	 * direct map reaches every private frame: it does not inherit either.
	 * Nor does a core dump hold them, as it never holds the kernel's direct
	 * map (and it would read the whole sparse capacity).
	 */
	if (try_madvise(pool->direct_map, capacity, MADV_DONTFORK) ||
	    try_madvise(pool->frames, frame_model_bytes(pool->nframes),
			MADV_DONTFORK)) {
		ret = gmem_err(ENOMEM, "gmem_pool_create: cannot keep the direct map from fork children");
		goto out_unmap_frames;
	}
	madvise(pool->direct_map, capacity, MADV_DONTDUMP);
	pool->windows = try_malloc(sizeof(*pool->windows));
	if (!pool->windows) {
		ret = gmem_err(ENOMEM, "gmem_pool_create: out of memory");
		goto out_unmap_frames;
	}
	*pool->windows = (struct window){ .base = 0, .nframes = pool->nframes };
	pthread_mutex_init(&pool->lock, NULL);
	ret = obj_install(&pool->obj);
	if (ret < 0) {
		gmem_err(EMFILE, "gmem_pool_create: no free handle");
		pool_release(&pool->obj);
	}
	return ret;

out_unmap_frames:
	munmap(pool->frames, frame_model_bytes(pool->nframes));
out_unmap:
	munmap(pool->direct_map, capacity);
out_close:
	close(pool->memfd);
out_free:
	obj_recycle(&pool->obj);
	return ret;
}

GMEM_API int gmem_pool_close(int h)
{
	KEEP_ERRNO();
	return obj_destroy(h, OBJ_POOL, "gmem_pool_close");
}

GMEM_API void *gmem_pool_frame(int h, uint64_t pfn)
{
	KEEP_ERRNO();
	struct obj *o = obj_peek(h);
	struct gmem_pool *pool = (struct gmem_pool *)o;

	if (!o || obj_foreign(o, h, "gmem_pool_frame") || o->type != OBJ_POOL ||
	    pfn >= pool->nframes)
		return NULL;
	return pool_va(pool, pfn);
}

GMEM_API int gmem_pool_stats(int h, struct gmem_pool_stats *st)
{
	KEEP_ERRNO();
	struct gmem_pool *pool;

	int ret = obj_get(h, OBJ_POOL, "gmem_pool_stats", (void **)&pool);

	if (ret)
		return ret;
	if (!st) {
		pool_put(pool);
		return gmem_err(EINVAL, "gmem_pool_stats: no stats buffer");
	}
	st->capacity_frames = pool->nframes;
	st->frames_in_use = atomic_load(&pool->frames_in_use);
	st->frames_reserved = atomic_load(&pool->frames_reserved);
	st->files = atomic_load(&pool->files);
	st->metadata_bytes = atomic_load(&pool->metadata_bytes);
	pool_put(pool);
	return 0;
}

/*
 * First fit, @align frames aligned; @nframes a multiple of @align. -ENOSPC if
 * nothing fits, -ENOMEM. The node that pool_release_window() will need is
 * allocated here, so that the release, on a file's last close, cannot fail.
 */
int pool_reserve_window(struct gmem_pool *pool, uint64_t nframes,
			uint64_t align, uint64_t *base)
{
	struct window **pw, *w, *spare = try_malloc(sizeof(*spare));
	int ret = -ENOSPC;

	if (!spare)
		return -ENOMEM;
	mutex_lock(&pool->lock);
	for (pw = &pool->windows; (w = *pw); pw = &w->next) {
		uint64_t start = (w->base + align - 1) & ~(align - 1);
		uint64_t end = w->base + w->nframes;

		if (start >= end || end - start < nframes)
			continue;
		if (start > w->base && start + nframes < end) {
			/* Splits in three: keep the head, add the tail. */
			struct window *tail = try_malloc(sizeof(*tail));

			if (!tail) {
				ret = -ENOMEM;
				break;
			}
			tail->base = start + nframes;
			tail->nframes = end - tail->base;
			tail->next = w->next;
			w->next = tail;
			w->nframes = start - w->base;
		} else if (start > w->base) {
			w->nframes = start - w->base;
		} else if (start + nframes < end) {
			w->base += nframes;
			w->nframes -= nframes;
		} else {
			*pw = w->next;
			free(w);
		}
		*base = start;
		atomic_fetch_add(&pool->frames_reserved, nframes);
		spare->next = pool->spares;
		pool->spares = spare;
		spare = NULL;
		ret = 0;
		break;
	}
	mutex_unlock(&pool->lock);
	free(spare);
	return ret;
}

/*
 * Give a window back. Its frames were reclaimed folio by folio already;
 * discarding the whole window also drops pages the host touched through a
 * mapping without the file ever recording a folio there.
 */
void pool_release_window(struct gmem_pool *pool, uint64_t base,
			 uint64_t nframes)
{
	struct window **pw, *w, *n;

	pool_discard(pool, base, nframes);
	mutex_lock(&pool->lock);
	for (pw = &pool->windows; (w = *pw) && w->base < base; pw = &w->next)
		;
	n = pool->spares;		/* pool_reserve_window left one */
	pool->spares = n->next;
	n->base = base;
	n->nframes = nframes;
	n->next = w;
	*pw = n;
	atomic_fetch_sub(&pool->frames_reserved, nframes);
	/* Coalesce with both neighbours. */
	for (w = pool->windows; w && w->next; ) {
		if (w->base + w->nframes == w->next->base) {
			struct window *next = w->next;

			w->nframes += next->nframes;
			w->next = next->next;
			free(next);
		} else {
			w = w->next;
		}
	}
	mutex_unlock(&pool->lock);
}

void pool_discard(struct gmem_pool *pool, uint64_t pfn, uint64_t nr)
{
	/* Only fails for bad arguments, which callers never pass. */
	fallocate(pool->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		  pfn << PAGE_SHIFT, nr << PAGE_SHIFT);
}

/*
 * Give frames [pfn, pfn + nr) their memory now, as the kernel allocates the
 * folios of a range (fallocate, or a fault's whole huge folio). @huge: the
 * run is whole huge folios of a huge file, which get host huge pages where
 * the pool has them (populated through the direct map, whose window asks for
 * huge pages: zeroed, as a huge folio is at allocation); anything else is
 * allocated in the pool file as 4 KiB pages, zeroed at first use, as a
 * guest_memfd's fallocate leaves its folios. -errno (ENOMEM, ENOSPC; EINTR
 * for a signal) if it stopped short; what was allocated stays, as in the
 * kernel.
 */
int pool_allocate(struct gmem_pool *pool, uint64_t pfn, uint64_t nr, bool huge)
{
	int ret;

	if (inject_fail(INJECT_SITE)) {
		errno = ENOMEM;
		ret = -1;
	} else if (huge && pool->huge_pages && ALIGNED(pfn | nr, POOL_HUGE_FRAMES))
		ret = madvise(pool_va(pool, pfn), nr << PAGE_SHIFT,
			      MADV_POPULATE_WRITE);
	else
		ret = fallocate(pool->memfd, FALLOC_FL_KEEP_SIZE,
				(off_t)(pfn << PAGE_SHIFT), (off_t)(nr << PAGE_SHIFT));
	/* A populate that met no memory reports EFAULT (the fault's SIGBUS). */
	return ret ? -(errno == EFAULT ? ENOMEM : errno) : 0;
}

/*
 * The window [base, base + nframes) now holds a huge-folio file (@huge),
 * another file, or none: host huge pages in the direct map there or not.
 * A file's create sets it either way, so a window whose advice could not be
 * taken back at a huge file's release still gets the right one.
 */
int pool_advise_huge(struct gmem_pool *pool, uint64_t base, uint64_t nframes,
		     bool huge)
{
	if (!pool->huge_pages)
		return 0;
	return try_madvise(pool_va(pool, base), nframes << PAGE_SHIFT,
			   huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) ? -ENOMEM : 0;
}

GMEM_API int64_t gmem_pool_huge_page_size(int h)
{
	KEEP_ERRNO();
	struct gmem_pool *pool;
	int64_t size;
	int ret = obj_get(h, OBJ_POOL, "gmem_pool_huge_page_size", (void **)&pool);

	if (ret)
		return ret;
	size = pool->huge_pages ? (int64_t)(POOL_HUGE_FRAMES << PAGE_SHIFT) : PAGE_SIZE;
	pool_put(pool);
	return size;
}

/* ------------------------------------------------- the frame model (arch.h) */

uint64_t frame_get(struct gmem_pool *pool, uint64_t pfn)
{
	return atomic_load_explicit(&pool->frames[pfn], memory_order_relaxed);
}

void frame_set_arch(struct gmem_pool *pool, uint64_t pfn, uint64_t v)
{
	atomic_store_explicit(&pool->frames[pfn], v, memory_order_relaxed);
}

/*
 * Cleared in place, as the hardware clears a page (TDX's page reset, an SNP
 * scrub): the frames that hold data are zeroed where they are and stay with
 * their file, so no memory the file owns goes back and the next fault finds
 * the page present. mincore() finds them in O(nr): on a shared mapping it
 * reports the memfd's pages that hold data (written or faulted in; one
 * fallocate left untouched reads zero and counts as a hole). SEEK_HOLE
 * cannot be bounded: it walks every present page after the range too. The
 * rest are holes, which stay holes, so clearing allocates nothing, or pages
 * swapped out, which a punch clears (it costs nothing on a hole).
 */
void frames_clear_content(struct gmem_pool *pool, uint64_t pfn, uint64_t nr)
{
	unsigned char vec[1024];

	while (nr) {
		uint64_t n = MIN(nr, sizeof(vec));

		if (mincore(pool_va(pool, pfn), n << PAGE_SHIFT, vec)) {
			/* Cannot tell data from holes: discarding clears too. */
			pool_discard(pool, pfn, nr);
			return;
		}
		for (uint64_t i = 0, run; i < n; i = run) {
			bool data = vec[i] & 1;

			for (run = i + 1; run < n && (vec[run] & 1) == data; run++)
				;
			if (data)
				frames_zero(pool, pfn + i, run - i);
			else
				pool_discard(pool, pfn + i, run - i);
		}
		pfn += n;
		nr -= n;
	}
}

void frames_discard(struct gmem_pool *pool, uint64_t pfn, uint64_t nr)
{
	pool_discard(pool, pfn, nr);
}

/* One discard per run of frames with @bit. */
void frames_release(struct gmem_pool *pool, uint64_t pfn, uint64_t nr,
		    uint64_t bit)
{
	for (uint64_t i = pfn; i < pfn + nr; i++) {
		uint64_t run = i;

		while (run < pfn + nr && (frame_get(pool, run) & bit))
			frame_set_arch(pool, run++, 0);
		if (run > i)
			frames_clear_content(pool, i, run - i);
		i = run;
	}
}

bool frame_is_zero(struct gmem_pool *pool, uint64_t pfn)
{
	const uint64_t *p = (const uint64_t *)pool_va(pool, pfn);
	off_t at = (off_t)(pfn << PAGE_SHIFT);

	/*
	 * A hole reads as zero: look without reading it, which would allocate
	 * it again (a whole host huge page, in a huge file's window).
	 */
	if (lseek(pool->memfd, at, SEEK_DATA) != at)
		return true;

	for (size_t i = 0; i < PAGE_SIZE / sizeof(*p); i++)
		if (p[i])
			return false;
	return true;
}

GMEM_API int gmem_pool_frame_state(int h, uint64_t pfn, char *buf, size_t len)
{
	KEEP_ERRNO();
	const struct gmem_arch *arch;
	struct gmem_pool *pool;
	char tmp[128];
	size_t n;
	int ret = obj_get(h, OBJ_POOL, "gmem_pool_frame_state", (void **)&pool);

	if (ret)
		return ret;
	if (pfn >= pool->nframes) {
		pool_put(pool);
		return gmem_err(EINVAL, "gmem_pool_frame_state: pfn %#llx is outside the pool (%#llx frames)",
				(unsigned long long)pfn,
				(unsigned long long)pool->nframes);
	}
	if (!buf && len) {
		pool_put(pool);
		return gmem_err(EINVAL, "gmem_pool_frame_state: no buffer");
	}
	arch = atomic_load(&pool->arch);
	if (arch && arch->describe)
		arch->describe(pool, pfn, tmp, sizeof(tmp));
	else
		snprintf(tmp, sizeof(tmp), "no hardware state");
	pool_put(pool);
	if (!len)
		return 0;
	/* Counted in size_t: a @len above INT_MAX still bounds a short string. */
	n = MIN(strlen(tmp), len - 1);
	memcpy(buf, tmp, n);
	buf[n] = 0;
	return (int)n;
}

/*
 * A pool models one machine, and a machine has one kind of hardware: the
 * first VM created on it names it for good. A gmem_vm_create that claims the
 * arch and then fails gives the claim back (pool_settle_arch), so a VM-less
 * pool stays free for any arch.
 */
int pool_claim_arch(struct gmem_pool *pool, const struct gmem_arch *arch)
{
	const struct gmem_arch *cur;
	int ret = 0;

	mutex_lock(&pool->lock);
	cur = atomic_load(&pool->arch);
	if (!cur) {
		atomic_store(&pool->arch, arch);
		cur = arch;
	}
	if (cur != arch)
		ret = gmem_err(EINVAL, "gmem_vm_create: the pool already runs %s VMs, not %s",
			       cur->name, arch->name);
	else
		pool->arch_claims++;
	mutex_unlock(&pool->lock);
	return ret;
}

/* The VM create that claimed the arch is done: @created, or failed. */
void pool_settle_arch(struct gmem_pool *pool, bool created)
{
	mutex_lock(&pool->lock);
	pool->arch_claims--;
	if (created)
		pool->arch_bound = true;
	else if (!pool->arch_claims && !pool->arch_bound)
		atomic_store(&pool->arch, NULL);
	mutex_unlock(&pool->lock);
}
