// SPDX-License-Identifier: MIT
/*
 * Fences: one rule for every host mapping gmem keeps private pages out of
 * (mapping.c's host mappings, view.c's stage-2 views, the mappings a fork
 * child inherited: process.c). See fence.h.
 *
 * Chunk fences change the VMA under a chunk, so their callers serialise on
 * the mapping: mapping.c under the file's mappings_lock (or before the new
 * mapping is listed), a fork child's shootdown handler under hm_lock. The
 * stage-2 views open pages from concurrent faults and keep plain guards.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"
#include "fence.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool have_guards;
static int past_eof_fd = -1;	/* sealed empty memfd: every access is past its end */

/* Probe a shared (shmem) mapping: shmem gained guards after anonymous memory. */
static void probe(void)
{
	void *p = mmap(NULL, PAGE_SIZE, PROT_NONE, MAP_SHARED | MAP_ANONYMOUS,
		       -1, 0);

	if (p != MAP_FAILED) {
		have_guards = !madvise(p, PAGE_SIZE, MADV_GUARD_INSTALL);
		munmap(p, PAGE_SIZE);
	}
	/* Sealed empty: no write or truncate through the fd ever gives it a page. */
	past_eof_fd = memfd_create("gmem-past-eof", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (past_eof_fd >= 0)
		fcntl(past_eof_fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SEAL);
}

bool fence_uses_guards(void)
{
	pthread_once(&once, probe);
	return have_guards;
}

int fence_past_eof_fd(void)
{
	pthread_once(&once, probe);
	return past_eof_fd;
}

/*
 * fence.c makes its system calls itself, not through the C library: it also
 * runs in a fork child's signal handler (process.c), outside any call of
 * the program's, where a preloaded interposer (gmem exec's layer) would
 * take them for the program's own calls on gmem's mappings; and sanitizers
 * make munlock a no-op.
 */
static int sys_madvise(void *addr, size_t len, int advice)
{
	return (int)syscall(SYS_madvise, addr, len, advice);
}

static int sys_mprotect(void *addr, size_t len, int prot)
{
	return (int)syscall(SYS_mprotect, addr, len, prot);
}

static void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

/*
 * The kernel installs no guard in a locked VMA (mlock, mlockall: EINVAL).
 * Unlock the range, guard it, and lock it again on fault: the kernel's own
 * zap of a locked VMA leaves it so, its pages locked again as they are
 * touched, not populated at once. The lock back is best effort (a
 * RLIMIT_MEMLOCK may refuse it): the fence is what must hold.
 */
static int guard_locked(void *addr, size_t len)
{
	if (syscall(SYS_munlock, addr, len) || sys_madvise(addr, len, MADV_GUARD_INSTALL))
		return -ENOMEM;
	syscall(SYS_mlock2, addr, len, MLOCK_ONFAULT);
	return 0;
}

int fence_close(void *addr, size_t len)
{
	if (!fence_uses_guards())
		return sys_mprotect(addr, len, PROT_NONE) ? -ENOMEM : 0;
	if (!sys_madvise(addr, len, MADV_GUARD_INSTALL))
		return 0;
	return errno == EINVAL ? guard_locked(addr, len) : -ENOMEM;
}

int fence_open(void *addr, size_t len, int prot)
{
	if (fence_uses_guards())
		return sys_madvise(addr, len, MADV_GUARD_REMOVE) ? -ENOMEM : 0;
	return sys_mprotect(addr, len, prot) ? -ENOMEM : 0;
}

/* ------------------------------------------------------- chunk fences */

static uint8_t *map_end(const struct fence_map *fm)
{
	return fm->addr + (fm->npages << PAGE_SHIFT);
}

static void set_whole(struct fence_map *fm, uint8_t *lo, uint8_t *hi, bool on)
{
	for (uintptr_t c = CHUNK_DOWN(lo); c < (uintptr_t)hi; c += CHUNK_SIZE) {
		uintptr_t i = (c - fm->whole_base) >> CHUNK_SHIFT;

		if (on)
			fm->whole[i / 64] |= 1ULL << (i % 64);
		else
			fm->whole[i / 64] &= ~(1ULL << (i % 64));
	}
}

/* Fence the whole chunks [lo, hi) with the past-EOF memfd. */
static int close_whole(struct fence_map *fm, uint8_t *lo, uint8_t *hi)
{
	off_t pos = fm->pool_pos + (lo - fm->addr);

	if (past_eof_fd < 0 ||
	    sys_mmap(lo, hi - lo, fm->prot, MAP_SHARED | MAP_FIXED, past_eof_fd,
		 pos) == MAP_FAILED)
		return -ENOMEM;
	set_whole(fm, lo, hi, true);
	return 0;
}

/* A run of chunks to fence whole, or of pages to guard. */
struct run {
	uint8_t *lo, *hi;
	bool whole;
};

static int flush(struct fence_map *fm, struct run *r)
{
	int ret = 0;

	if (r->lo == r->hi)
		return 0;
	/* Out of VMAs (vm.max_map_count): guards need none. */
	if (!r->whole || close_whole(fm, r->lo, r->hi))
		ret = fence_close(r->lo, r->hi - r->lo);
	r->lo = r->hi;
	return ret;
}

static int add(struct fence_map *fm, struct run *r, uint8_t *lo, uint8_t *hi,
	       bool whole)
{
	int ret = 0;

	if (r->lo != r->hi && (r->hi != lo || r->whole != whole))
		ret = flush(fm, r);
	if (r->lo == r->hi) {
		r->lo = lo;
		r->whole = whole;
	}
	r->hi = hi;
	return ret;
}

int fence_close_map(struct fence_map *fm, uint64_t start, uint64_t end,
		    bool whole)
{
	uint8_t *a, *b;
	size_t len = fence_span(fm->addr, fm->pgoff, fm->npages, start, end, &a);
	struct run r = { NULL, NULL, false };
	int ret = 0, err;

	if (!len)
		return 0;
	if (!fence_uses_guards() || !fm->whole)
		return fence_close(a, len);
	b = a + len;
	for (uint8_t *c = (uint8_t *)CHUNK_DOWN(a); c < b; c += CHUNK_SIZE) {
		uint8_t *lo = MAX(a, c), *hi = MIN(b, c + CHUNK_SIZE);

		if (fence_chunk_whole(fm, (uintptr_t)c))	/* fenced already */
			err = flush(fm, &r);
		else if (whole && lo == c && hi == c + CHUNK_SIZE)
			err = add(fm, &r, c, c + CHUNK_SIZE, true);
		else
			err = add(fm, &r, lo, hi, false);
		ret = ret ? ret : err;
	}
	err = flush(fm, &r);
	return ret ? ret : err;
}

/* Map the pool back over [lo, hi) with @prot, replacing the past-EOF memfd. */
static int map_pool(struct fence_map *fm, uint8_t *lo, uint8_t *hi, int prot)
{
	struct stat st;

	if (fm->pool_ino && (fstat(fm->pool_fd, &st) ||
			     st.st_ino != fm->pool_ino || st.st_dev != fm->pool_dev))
		return -EBADF;
	if (sys_mmap(lo, hi - lo, prot, MAP_SHARED | MAP_FIXED, fm->pool_fd,
		 fm->pool_pos + (lo - fm->addr)) == MAP_FAILED)
		return -ENOMEM;
	/* As gmem_mmap asked, so the VMA merges with its neighbours again. */
	if (fm->huge)
		sys_madvise(lo, hi - lo, MADV_HUGEPAGE);
	return 0;
}

/*
 * Open [lo, hi) of [s, e), chunks fenced whole: the pool comes back with no
 * access, the pages outside [lo, hi) (private) are guarded, and only then
 * does the range get the mapping's protection.
 */
static int open_whole(struct fence_map *fm, uint8_t *s, uint8_t *e,
		      uint8_t *lo, uint8_t *hi)
{
	bool part = lo > s || hi < e;
	int ret = map_pool(fm, s, e, part ? PROT_NONE : fm->prot);

	if (ret)
		return ret;
	if (part && ((lo > s && fence_close(s, lo - s)) ||
		     (hi < e && fence_close(hi, e - hi)) ||
		     sys_mprotect(s, e - s, fm->prot))) {
		/* No page table for a guard: fence the whole chunks again. */
		close_whole(fm, s, e);
		return -ENOMEM;
	}
	set_whole(fm, s, e, false);
	return 0;
}

/*
 * The run of chunks fenced whole around @c, within the mapping: opening it
 * all replaces whole VMAs, where opening one chunk of it splits one.
 */
static void whole_run(struct fence_map *fm, uint8_t *c, uint8_t **s, uint8_t **e)
{
	uint8_t *lo = c, *hi = c + CHUNK_SIZE;

	while (lo > fm->addr && fence_chunk_whole(fm, (uintptr_t)lo - CHUNK_SIZE))
		lo -= CHUNK_SIZE;
	while (hi < map_end(fm) && fence_chunk_whole(fm, (uintptr_t)hi))
		hi += CHUNK_SIZE;
	*s = MAX(lo, fm->addr);
	*e = MIN(hi, map_end(fm));
}

int fence_open_map(struct fence_map *fm, uint64_t start, uint64_t end)
{
	uint8_t *a, *b, *guarded = NULL;
	size_t len = fence_span(fm->addr, fm->pgoff, fm->npages, start, end, &a);
	int ret = 0, err;

	if (!len)
		return 0;
	if (!fence_uses_guards() || !fm->whole)
		return fence_open(a, len, fm->prot);
	b = a + len;
	for (uint8_t *c = (uint8_t *)CHUNK_DOWN(a); c < b; c += CHUNK_SIZE) {
		uint8_t *lo = MAX(a, c), *hi = MIN(b, c + CHUNK_SIZE);
		uint8_t *s = MAX(c, fm->addr), *e = MIN(c + CHUNK_SIZE, map_end(fm));

		if (!fence_chunk_whole(fm, (uintptr_t)c)) {
			if (!guarded)
				guarded = lo;	/* guards: one call for the run */
			continue;
		}
		if (guarded) {
			err = fence_open(guarded, lo - guarded, fm->prot);
			ret = ret ? ret : err;
			guarded = NULL;
		}
		err = open_whole(fm, s, e, lo, hi);
		if (err == -ENOMEM) {	/* out of VMAs: the whole run instead */
			whole_run(fm, c, &s, &e);
			err = open_whole(fm, s, e, lo, MIN(b, e));
		}
		ret = ret ? ret : err;
	}
	if (guarded) {
		err = fence_open(guarded, b - guarded, fm->prot);
		ret = ret ? ret : err;
	}
	return ret;
}
