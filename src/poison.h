/* SPDX-License-Identifier: MIT */
/*
 * Private memory under AddressSanitizer. In an ASan build the direct-map
 * bytes of every private page in the page cache are poisoned, so a read of
 * private memory through the direct map, by the library or by its caller
 * (gmem_pool_frame), is an ASan report naming the reader. Elsewhere every
 * call here is empty.
 *
 * The poison follows two things that change only under the file's
 * invalidate lock: a page's folio (folio_alloc poisons a new private folio,
 * free_run unpoisons before reclaim) and its attribute (set_attributes
 * poisons or unpoisons the range's folios when it stores the attribute).
 * The stage-2 views are other mappings of the same frames: the guest's own
 * accesses through them are not poisoned. The arch backends never load or
 * store a frame's bytes: they clear content with frames_clear_content,
 * which zeroes resident pages past the poison (frames_zero) and punches the
 * rest out of the pool memfd.
 *
 * Where gmem has to read or write a private frame through the direct map it
 * says so at the call: frames_unpoison(), the access, frames_poison() where
 * the exclusive invalidate lock serializes it; frame_copy_unchecked() where
 * accessors run concurrently (the shadow is global: one thread's repoison
 * would land in the middle of another's access).
 */
#ifndef GMEM_POISON_H
#define GMEM_POISON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common.h"
#include "file.h"
#include "pool.h"
#include "vm.h"

#if defined(__SANITIZE_ADDRESS__)
#define GMEM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GMEM_ASAN 1
#endif
#endif

#ifdef GMEM_ASAN
#include <sanitizer/asan_interface.h>

static inline void frames_poison(struct gmem_pool *pool, uint64_t pfn,
				 uint64_t nr)
{
	ASAN_POISON_MEMORY_REGION(pool_va(pool, pfn), nr << PAGE_SHIFT);
}

static inline void frames_unpoison(struct gmem_pool *pool, uint64_t pfn,
				   uint64_t nr)
{
	ASAN_UNPOISON_MEMORY_REGION(pool_va(pool, pfn), nr << PAGE_SHIFT);
}

/*
 * A copy ASan does not check, byte by byte through volatile pointers so that
 * the compiler cannot turn it back into a (checked) memcpy call.
 */
__attribute__((no_sanitize_address, noinline, unused))
static void frame_copy_unchecked(void *dst, const void *src, size_t n)
{
	volatile uint8_t *d = dst;
	const volatile uint8_t *s = src;

	for (size_t i = 0; i < n; i++)
		d[i] = s[i];
}

struct poison_walk {
	struct gmem_pool *pool;
	bool poison;
};

static inline void poison_run(uint64_t pfn, uint64_t nr, void *arg)
{
	struct poison_walk *w = arg;

	if (w->poison)
		frames_poison(w->pool, pfn, nr);
	else
		frames_unpoison(w->pool, pfn, nr);
}

/* The folios of [start, end) take the attribute @private. */
static inline void poison_attribute(struct gmem_file *file, uint64_t start,
				    uint64_t end, bool private)
{
	struct poison_walk w = { .pool = file->vm->pool, .poison = private };

	folio_for_each_run(file, start, end, poison_run, &w);
}

static inline int poison_private_run(struct gmem_file *file, uint64_t start,
				     uint64_t end, void *arg)
{
	frames_poison(file->vm->pool, file_pfn(file, start), end - start);
	return 0;
}

/* A folio came into being at [start, end): poison its private pages. */
static inline void poison_new_folio(struct gmem_file *file, uint64_t start,
				    uint64_t end)
{
	file_for_each_attr_run(file, start, end, true, poison_private_run, NULL);
}
/*
 * Zero frames in place whatever their poison, as tdx and snp clear private
 * content (frames_clear_content); each page keeps the poison it had. Under
 * the exclusive invalidate lock: no other thread repoisons them meanwhile.
 */
static inline void frames_zero(struct gmem_pool *pool, uint64_t pfn,
			       uint64_t nr)
{
	for (uint64_t i = 0; i < nr; i++) {
		uint8_t *p = pool_va(pool, pfn + i);
		bool poisoned = __asan_address_is_poisoned(p);

		ASAN_UNPOISON_MEMORY_REGION(p, PAGE_SIZE);
		memset(p, 0, PAGE_SIZE);
		if (poisoned)
			ASAN_POISON_MEMORY_REGION(p, PAGE_SIZE);
	}
}
#else
static inline void frames_zero(struct gmem_pool *pool, uint64_t pfn,
			       uint64_t nr)
{
	memset(pool_va(pool, pfn), 0, nr << PAGE_SHIFT);
}
static inline void frames_poison(struct gmem_pool *pool, uint64_t pfn,
				 uint64_t nr) {}
static inline void frames_unpoison(struct gmem_pool *pool, uint64_t pfn,
				   uint64_t nr) {}
static inline void frame_copy_unchecked(void *dst, const void *src, size_t n)
{
	memcpy(dst, src, n);
}
static inline void poison_attribute(struct gmem_file *file, uint64_t start,
				    uint64_t end, bool private) {}
static inline void poison_new_folio(struct gmem_file *file, uint64_t start,
				    uint64_t end) {}
#endif

#endif
