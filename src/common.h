/* SPDX-License-Identifier: MIT */
/*
 * What every engine file needs: the page size, the export mark, the
 * per-thread error reason and the errno promise. Nothing about any object:
 * each subsystem has its own header (handle.h, pool.h, vm.h, file.h ...),
 * and the locks and their order are in lock.h.
 */
#ifndef GMEM_COMMON_H
#define GMEM_COMMON_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gmem.h"

#define GMEM_API __attribute__((visibility("default")))

#define PAGE_SHIFT	12
#define PAGE_SIZE	4096ULL
#define GIB		(1ULL << 30)
#define MAX_FILE_SIZE	(64ULL << 40)

#define ALIGNED(x, a)	(((x) & ((a) - 1)) == 0)
#define MIN(a, b)	((a) < (b) ? (a) : (b))
#define MAX(a, b)	((a) > (b) ? (a) : (b))

/* error.c: the per-thread reason behind the last negative return. */
int gmem_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * errno is the caller's: the header promises every call leaves it alone,
 * successful or not, although the engine makes system calls (lseek, madvise,
 * mmap, futex ...) that set it. KEEP_ERRNO() first in a public call saves it
 * and puts it back on every return path.
 */
static inline void errno_restore(const int *saved)
{
	errno = *saved;
}
#define KEEP_ERRNO() \
	int saved_errno_ __attribute__((cleanup(errno_restore), unused)) = errno

#endif
