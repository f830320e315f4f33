/* SPDX-License-Identifier: MIT */
/*
 * Failure injection: every place where the engine can fail for lack of a
 * resource (memory, address space, a descriptor, a handle slot) asks
 * inject_fail() first, naming itself by file:line. A test arms it to make
 * the Nth such point fail, or each with probability p, optionally only at one
 * site, and then checks that the failed call changed nothing.
 *
 * The wrappers below take the same arguments as the calls they wrap and fail
 * the way those calls fail (NULL, MAP_FAILED or -1, errno ENOMEM).
 *
 * Compiled in always: the sites are all on slow paths (a malloc, a system
 * call), where one predictable branch on a global that is never set outside
 * tests costs nothing measurable, and one build means the tests exercise the
 * very code that ships. The symbols stay internal (hidden, not in gmem.h).
 */
#ifndef GMEM_INJECT_H
#define GMEM_INJECT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define INJECT_STR_(x)	#x
#define INJECT_STR(x)	INJECT_STR_(x)
/* The name of the site that uses it: "src/pool.c:190". */
#define INJECT_SITE	__FILE__ ":" INJECT_STR(__LINE__)
/* The same, for a site a test arms alone by @tag: "src/handle.c:80 (handle slot)". */
#define INJECT_NAMED(tag)	INJECT_SITE " (" tag ")"

extern atomic_bool inject_armed;

bool inject_fail_armed(const char *site);

/* True if the site named @site is to fail now. */
static inline bool inject_fail(const char *site)
{
	if (__builtin_expect(!atomic_load_explicit(&inject_armed,
						   memory_order_relaxed), 1))
		return false;
	return inject_fail_armed(site);
}

void *inject_malloc(const char *site, size_t size);
void *inject_calloc(const char *site, size_t n, size_t size);
void *inject_realloc(const char *site, void *p, size_t size);
void *inject_aligned_alloc(const char *site, size_t align, size_t size);
void *inject_mmap(const char *site, void *addr, size_t len, int prot,
		  int flags, int fd, off_t off);
int inject_memfd_create(const char *site, const char *name, unsigned int flags);
int inject_ftruncate(const char *site, int fd, off_t len);
int inject_madvise(const char *site, void *addr, size_t len, int advice);
int inject_mprotect(const char *site, void *addr, size_t len, int prot);

#define try_malloc(size)		inject_malloc(INJECT_SITE, size)
#define try_calloc(n, size)		inject_calloc(INJECT_SITE, n, size)
#define try_realloc(p, size)		inject_realloc(INJECT_SITE, p, size)
#define try_aligned_alloc(a, size)	inject_aligned_alloc(INJECT_SITE, a, size)
#define try_mmap(addr, len, prot, flags, fd, off) \
	inject_mmap(INJECT_SITE, addr, len, prot, flags, fd, off)
#define try_memfd_create(name, flags)	inject_memfd_create(INJECT_SITE, name, flags)
#define try_ftruncate(fd, len)		inject_ftruncate(INJECT_SITE, fd, len)
#define try_madvise(addr, len, advice)	inject_madvise(INJECT_SITE, addr, len, advice)
#define try_mprotect(addr, len, prot)	inject_mprotect(INJECT_SITE, addr, len, prot)

/* ------------------------------------------------------------ for tests */

/*
 * Arm: count every site crossed; fail the @nth crossing (1-based, 0 never)
 * and, with probability @p (seeded by @seed), any other. With @only set,
 * only sites whose name contains it count and fail. Resets the counters.
 */
void inject_arm(uint64_t nth, double p, uint64_t seed, const char *only);
void inject_disarm(void);

struct inject_stats {
	uint64_t crossings;	/* sites crossed since inject_arm */
	uint64_t failures;	/* of which failed */
	const char *last_failed;/* the last site made to fail, or NULL */
};
void inject_stats(struct inject_stats *st);

/* Every site crossed while armed since the process started, with its counts. */
struct inject_site_count {
	const char *site;
	uint64_t crossings, failures;
};
unsigned int inject_sites(struct inject_site_count *out, unsigned int max);

#endif
