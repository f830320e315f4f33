/* SPDX-License-Identifier: MIT */
/*
 * A small TAP harness. Each test program holds TESTs; main() runs them all
 * and exits 0 (all passed), 1 (a failure) or 77 (skipped).
 *
 *	TEST(converting_one_page_changes_only_that_page) { ... ASSERT_EQ(a, b); }
 *
 * A failed ASSERT prints file:line, the expression and both values, and ends
 * the current test; the program goes on with the next one.
 */
#ifndef GMEM_TEST_HARNESS_H
#define GMEM_TEST_HARNESS_H

#include <errno.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>

#include "gmem.h"

struct test {
	const char *name;
	void (*fn)(void);
	struct test *next;
};

void test_register(struct test *t);
void test_fail(const char *file, int line, const char *expr,
	       long long a, long long b);
void test_skip(const char *why);

#define TEST(name)							\
	static void test_##name(void);					\
	static struct test test_rec_##name = { #name, test_##name, NULL }; \
	__attribute__((constructor)) static void test_reg_##name(void)	\
	{ test_register(&test_rec_##name); }				\
	static void test_##name(void)

#define ASSERT_OP(a, op, b) do {					\
	long long _a = (long long)(a), _b = (long long)(b);		\
	if (!(_a op _b))						\
		test_fail(__FILE__, __LINE__, #a " " #op " " #b, _a, _b); \
} while (0)

#define ASSERT_EQ(a, b)	ASSERT_OP(a, ==, b)
#define ASSERT_NE(a, b)	ASSERT_OP(a, !=, b)
#define ASSERT_LT(a, b)	ASSERT_OP(a, <, b)
#define ASSERT_LE(a, b)	ASSERT_OP(a, <=, b)
#define ASSERT_GT(a, b)	ASSERT_OP(a, >, b)
#define ASSERT_GE(a, b)	ASSERT_OP(a, >=, b)
#define ASSERT_TRUE(x)	ASSERT_OP(!!(x), ==, 1)

/* A 64 GiB pool and a VM of @arch; env_free() closes both. */
struct env {
	int pool, vm;
};
struct env env_new(const char *arch);
void env_free(struct env *e);

/*
 * Frame @pfn of @pool as the hardware holds it, private or not: a copy taken
 * past ASan's poison of private frames (src/poison.h). Any other read of a
 * private frame through gmem_pool_frame() is an ASan report, so a test that
 * means to look at private content says so by calling this. The buffer is
 * the calling thread's, overwritten by its next call.
 */
const uint8_t *frame_bytes(int pool, uint64_t pfn);

/*
 * Run @fn(@arg) in a forked child and report how it ended: the signal that
 * killed it, 0 if it exited with status 0, else 256 + its exit status.
 */
int run_in_child(void (*fn)(void *), void *arg);

/* UNDER_TSAN: built with ThreadSanitizer (gcc or clang). */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

/* The value in KiB of @key ("VmRSS") in /proc/self/status, or -1. */
long proc_status_kib(const char *key);

/* Read one byte at @p; returns the signal it raised, or 0 and the byte in *out. */
int probe_read(volatile const uint8_t *p, uint8_t *out);
int probe_write(volatile uint8_t *p, uint8_t val);

/* What one run of the gmem command printed; output_free() releases it. */
struct output {
	int status;		/* exit status, or 128 + the signal that killed it */
	char *out, *err;
};

/* The gmem binary of this build: $(O)/gmem beside $(O)/tests/. */
const char *gmem_path(void);
/* Run "gmem ARGS..." (@args NULL-terminated, at most 14) in a child. */
struct output run_gmem(const char *const *args);
void output_free(struct output *o);

/* The repository's examples/: the first parent of the test binary with one. */
const char *examples_dir(void);
/* As run_gmem, but skip the calling test if gmem exits 77 (cannot run here). */
struct output run_gmem_or_skip(const char *const *args);
/* Skip the calling test unless this process can create a KVM VM. */
void kvm_require(void);
/* The value of the first "key":N in the JSON lines at @s, or -1. */
long long json_num(const char *s, const char *key);
/* All of @f from its start, NUL-terminated; closes @f. */
char *slurp(FILE *f);
int count_lines(const char *s);

#endif
