// SPDX-License-Identifier: MIT
/*
 * Fences: one rule for every host mapping gmem keeps private pages out of
 * (mapping.c's host mappings, view.c's stage-2 views, the mappings a fork
 * child inherited: process.c). See fence.h.
 */
#include <pthread.h>
#include <sys/mman.h>

#include "common.h"
#include "fence.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool have_guards;

/* Probe a shared (shmem) mapping: shmem gained guards after anonymous memory. */
static void probe(void)
{
	void *p = mmap(NULL, PAGE_SIZE, PROT_NONE, MAP_SHARED | MAP_ANONYMOUS,
		       -1, 0);

	if (p != MAP_FAILED) {
		have_guards = !madvise(p, PAGE_SIZE, MADV_GUARD_INSTALL);
		munmap(p, PAGE_SIZE);
	}
}

bool fence_uses_guards(void)
{
	pthread_once(&once, probe);
	return have_guards;
}

int fence_close(void *addr, size_t len)
{
	if (fence_uses_guards())
		return madvise(addr, len, MADV_GUARD_INSTALL) ? -ENOMEM : 0;
	return mprotect(addr, len, PROT_NONE) ? -ENOMEM : 0;
}

int fence_open(void *addr, size_t len, int prot)
{
	if (fence_uses_guards())
		return madvise(addr, len, MADV_GUARD_REMOVE) ? -ENOMEM : 0;
	return mprotect(addr, len, prot) ? -ENOMEM : 0;
}
