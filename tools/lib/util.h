/* SPDX-License-Identifier: MIT */
/*
 * util.h - what the commands and the tests would otherwise each write again:
 * a clock, a random number generator with fixed seeds, number parsing, and
 * a probe that touches memory and reports the signal it raised.
 */
#ifndef GMEM_TOOLS_UTIL_H
#define GMEM_TOOLS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t now_ns(void);

/* xorshift64*: fixed seeds, so every run converts and faults the same pages. */
uint64_t rnd(uint64_t *state);

/* A decimal number in [0, @max], nothing else on the string. */
bool parse_uint(const char *s, unsigned long max, unsigned long *out);

/*
 * Copy @len bytes from @src to @dst one byte at a time, catching SIGSEGV and
 * SIGBUS: returns 0, or the signal that stopped the copy, with *@done (if not
 * NULL) the bytes copied before it. Either side may be the probed memory.
 * The handlers are this thread's for the duration of the copy; do not
 * probe from two threads at once.
 */
int probe_copy(volatile uint8_t *dst, volatile const uint8_t *src, size_t len,
	       size_t *done);

#endif
