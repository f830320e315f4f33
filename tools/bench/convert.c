// SPDX-License-Identifier: MIT
/*
 * convert.c - the conversion cases of gmem bench: 1, conversion of a 4 KiB
 * page, random pages of a map of 1,000,000 ranges and a host-mapped page the
 * host touches; 2, destructive conversion of 1 GiB the guest has written;
 * 6, conversions and faults together in two threads. Also the fragmented
 * map that cases 1, 3 and 7 share.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "gmem.h"
#include "bench.h"

/* ------------------------------------------------ the fragmented map */

int frag_build(struct frag *f, uint64_t ranges)
{
	int rc;

	/* Private file; shared pages 1, 3, 5, ...: 2k shared pages make 2k+1 ranges. */
	while (2 * f->pairs + 1 < ranges) {
		uint64_t page = 2 * f->pairs + 1;

		if ((page + 1) * PAGE >= f->size)
			return -ERANGE;
		rc = gmem_set_attributes(f->fd, page * PAGE, PAGE, 0, 0, NULL);
		if (rc)
			return rc;
		f->pairs++;
	}
	return 0;
}

double frag_convert_ns(const struct frag *f, uint64_t pairs, uint64_t seed, int *err)
{
	uint64_t npages = f->size / PAGE, i, t0 = now_ns();
	int rc;

	for (i = 0; i < pairs; i++) {
		uint64_t p = rnd(&seed) % npages;
		uint64_t was = frag_shared(f, p) ? 0 : GMEM_ATTR_PRIVATE;

		rc = gmem_set_attributes(f->fd, p * PAGE, PAGE, was ^ GMEM_ATTR_PRIVATE,
					 0, NULL);
		if (!rc)
			rc = gmem_set_attributes(f->fd, p * PAGE, PAGE, was, 0, NULL);
		if (rc) {
			*err = rc;
			return NAN;
		}
	}
	return (double)(now_ns() - t0) / (2.0 * pairs);
}

/*
 * The floor of 1a: the range holding each page the conversions flip, found
 * by binary search of the sorted starts of the map's ranges (one array, no
 * pointers). A conversion must at least find its range in a map of that
 * size; this is the cheapest ordered lookup there is on this machine, so
 * the ratio reads as "lookups' worth of work per conversion".
 */
static double lookup_ns(const uint64_t *start, uint64_t n, uint64_t npages,
			uint64_t pairs, uint64_t seed, uint64_t *sink)
{
	uint64_t i, sum = 0, t0 = now_ns();

	for (i = 0; i < pairs; i++) {
		uint64_t p = rnd(&seed) % npages;
		int k;

		for (k = 0; k < 2; k++) {
			uint64_t lo = 0, hi = n;

			while (hi - lo > 1) {
				uint64_t mid = (lo + hi) / 2;

				if (start[mid] <= p)
					lo = mid;
				else
					hi = mid;
			}
			sum += lo;
			/* the pair's second lookup is of the same page: not folded */
			__asm__ volatile("" : "+r"(p));
		}
	}
	*sink += sum;
	return (double)(now_ns() - t0) / (2.0 * pairs);
}

/* ------------------------------------------------- 1. 4 KiB conversion */

#define MAP_RANGES	1000000

static void case1a(void)
{
	const char *n1 = "convert random 4K <->, 1M ranges, no host map";
	static const struct target t = { "< 1000 ns", 1000, true, true, 0 };
	uint64_t pairs = quick ? 20000 : 100000, sink = 0, n, i;
	struct frag f = { .fd = -1 };
	struct env e = { -1, -1 };
	struct series s = { 0 };
	uint64_t *start = NULL;
	int err = 0;

	/* 2k+1 ranges need 2k+1 pages; the file is that, rounded to 2 MiB. */
	f.size = ((MAP_RANGES + 1) * PAGE + 2 * MiB - 1) & ~(2 * MiB - 1);
	TRY("1a", n1, env_open(&e, POOL_BYTES, "sw"));
	TRY("1a", n1, f.fd = gmem_create(e.vm, f.size, 0));
	TRY("1a", n1, gmem_vm_bind(e.vm, 0, 0, f.size, f.fd, 0));
	TRY("1a", n1, frag_build(&f, MAP_RANGES));
	TRY("1a", n1, n = gmem_attribute_ranges(f.fd));
	start = malloc(n * sizeof(*start));
	if (!start) {
		emit_error("1a", n1, "malloc", -ENOMEM);
		goto out;
	}
	/* Ranges [0,1), [1,2), ..., [2k-1,2k), [2k,end): one start per page up to 2k. */
	for (i = 0; i < n; i++)
		start[i] = i;
	while (series_more(&s, &t)) {
		double c = frag_convert_ns(&f, pairs, 1 + s.n, &err);

		TRY("1a", n1, err);
		series_add(&s, c, lookup_ns(start, n, f.size / PAGE, pairs, 1 + s.n, &sink),
			   NAN);
	}
	emit_series("1a", n1, "ns", &s, &t,
		    "sorted-array lookup", "conversion / one binary search",
		    "ns per gmem_set_attributes of a random 4 KiB page of a %.2f GiB bound file "
		    "(sw) whose map holds %llu ranges, flipped and flipped back, %llu pairs per "
		    "run; floor: binary search of the %llu range starts for the same pages",
		    (double)f.size / GiB, (unsigned long long)n, (unsigned long long)pairs,
		    (unsigned long long)n);
out:
	if (sink == 1)
		putchar(' ');
	free(start);
	close_fd(&f.fd);
	env_close(&e);
}

/* The host's touch after a conversion pair: the write a VMM makes to a shared page. */
static inline void touch(volatile uint8_t *p)
{
	*p = *p + 1;
}

static void case1b(void)
{
	const char *n2 = "convert 4K <->, host-mapped, host touches";
	static const struct target t = { "<= 1.20x", 1.2, true, false, 0 };
	int iters = quick ? 5000 : 20000;
	struct env e = { -1, -1 };
	int fd = -1, mfd = -1, i, k;
	uint64_t off = GiB / 2;
	uint8_t *mem = MAP_FAILED;
	struct series s = { 0 };
	void *map = NULL;

	TRY("1b", n2, env_open(&e, POOL_BYTES, "sw"));
	TRY("1b", n2, fd = gmem_create(e.vm, GiB, GMEM_FLAG_MMAP));
	TRY("1b", n2, gmem_vm_bind(e.vm, 0, 0, GiB, fd, 0));
	TRY("1b", n2, gmem_mmap(fd, 0, GiB, PROT_READ | PROT_WRITE, MAP_SHARED, &map));
	TRY("1b", n2, gmem_set_attributes(fd, off, PAGE, 0, 0, NULL));
	touch((uint8_t *)map + off);
	mem = map_memfd(GiB, &mfd, "1b", n2);
	if (mem == MAP_FAILED)
		goto out;
	touch(mem + off);
	while (series_more(&s, &t)) {
		double pair = 0, mp = 0;

		/* The order alternates run by run. */
		for (k = 0; k < 2; k++) {
			uint64_t t0 = now_ns();

			if ((k + s.n) & 1) {
				for (i = 0; i < iters; i++) {
					TRY("1b", n2, gmem_set_attributes(fd, off, PAGE,
							GMEM_ATTR_PRIVATE, 0, NULL));
					TRY("1b", n2, gmem_set_attributes(fd, off, PAGE, 0, 0,
									  NULL));
					touch((uint8_t *)map + off);
				}
				pair = (double)(now_ns() - t0) / iters;
			} else {
				for (i = 0; i < iters; i++) {
					if (mprotect(mem + off, PAGE, PROT_NONE) ||
					    mprotect(mem + off, PAGE, PROT_READ | PROT_WRITE)) {
						emit_error("1b", n2, "mprotect", -errno);
						goto out;
					}
					touch(mem + off);
				}
				mp = (double)(now_ns() - t0) / iters;
			}
		}
		series_add(&s, pair, mp, NAN);
	}
	emit_series("1b", n2, "ns", &s, &t,
		    "mprotect pair", "conversion pair + touch / mprotect NONE+RW + touch",
		    "ns per pair (to private, to shared) of one 4 KiB page of a 1 GiB file mapped "
		    "whole, then a host write to it; peer: mprotect PROT_NONE + RW of 4 KiB in a "
		    "1 GiB MAP_SHARED memfd, then the same write; %d pairs per run", iters);
out:
	unmap_memfd(mem, GiB, &mfd);
	if (map)
		gmem_munmap(map, GiB);
	close_fd(&fd);
	env_close(&e);
}

void case1(void)
{
	case1a();
	case1b();
}

/* --------------------------------------------- 2. destructive conversion */

int fault_all(int vm, uint64_t gpa, uint64_t len, unsigned int flags)
{
	uint64_t a;
	int rc;

	for (a = gpa; a < gpa + len; a += PAGE) {
		rc = gmem_vm_fault(vm, a, flags, NULL, NULL);
		if (rc)
			return rc > 0 ? -EPROTO : rc;
	}
	return 0;
}

/* The guest writes every byte of [0, @len) as private, 2 MiB per access. */
static int guest_write_all(int vm, uint64_t len, const uint8_t *chunk)
{
	unsigned int flags = GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE;
	struct gmem_exit ex;
	uint64_t a;
	int rc;

	for (a = 0; a < len; a += 2 * MiB) {
		rc = gmem_vm_access(vm, a, (void *)chunk, 2 * MiB, flags, &ex);
		if (rc)
			return rc > 0 ? -EPROTO : rc;
	}
	return 0;
}

static double memset_gbs(uint8_t *buf, uint64_t len, int val)
{
	uint64_t t0 = now_ns();

	memset(buf, val, len);
	__asm__ volatile("" : : "r"(buf) : "memory");
	return (double)len / (double)(now_ns() - t0);
}

void case2(void)
{
	static const char *const archs[] = { "snp", "tdx" };
	static const char *const names[] = {
		"destructive convert 1 GiB written, snp",
		"destructive convert 1 GiB written, tdx",
	};
	static const char *const ids[] = { "2a", "2b" };
	static const struct target t = { ">= 0.80x", 0.8, false, false, 0 };
	uint8_t *buf, *chunk;
	int a, k;

	buf = mmap(NULL, GiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	chunk = malloc(2 * MiB);
	if (buf == MAP_FAILED || !chunk) {
		emit_error("2a", names[0], "mmap/malloc", -ENOMEM);
		goto done;
	}
	memset(buf, 0xff, GiB);		/* fault it in: untimed */
	memset(chunk, 0x5a, 2 * MiB);

	for (a = 0; a < 2; a++) {
		struct env e = { -1, -1 };
		struct series s = { 0 };
		int fd = -1;

		TRY(ids[a], names[a], env_open(&e, POOL_BYTES, archs[a]));
		TRY(ids[a], names[a], fd = gmem_create(e.vm, GiB, 0));
		TRY(ids[a], names[a], gmem_vm_bind(e.vm, 0, 0, GiB, fd, 0));
		while (series_more(&s, &t)) {
			double conv = NAN, ms = NAN;

			/* The conversion and memset, the order alternating run by run. */
			for (k = 0; k < 2; k++) {
				if ((k + s.n) & 1) {
					ms = memset_gbs(buf, GiB, s.n);
					continue;
				}
				/* untimed: every page private, faulted and written by the guest */
				TRY(ids[a], names[a], guest_write_all(e.vm, GiB, chunk));
				uint64_t t0 = now_ns();
				TRY(ids[a], names[a], gmem_set_attributes(fd, 0, GiB, 0, 0, NULL));
				conv = (double)GiB / (double)(now_ns() - t0);
				TRY(ids[a], names[a], gmem_set_attributes(fd, 0, GiB,
							GMEM_ATTR_PRIVATE, 0, NULL));
			}
			series_add(&s, conv, ms, NAN);
		}
		emit_series(ids[a], names[a], "GB/s", &s, &t,
			    "memset 1 GiB", "conversion bandwidth / memset bandwidth, per run",
			    "262144 private 4 KiB pages every byte of which the guest wrote "
			    "(gmem_vm_access, untimed), converted to shared in one call; memset of a "
			    "prefaulted 1 GiB buffer in the same run");
out:
		close_fd(&fd);
		env_close(&e);
	}
done:
	free(chunk);
	if (buf != MAP_FAILED)
		munmap(buf, GiB);
}

/* ------------------------------- 6. conversions under concurrent faults */

#define C6_PAGES	16384		/* 64 MiB shared by both threads */

struct c6 {
	int vm, fd;
	atomic_bool stop;
	uint64_t convs, faults, exits;
	int conv_err, fault_err;
	uint8_t priv[C6_PAGES];		/* the converter's view: 1 = private */
};

static void *c6_converter(void *arg)
{
	struct c6 *c = arg;
	uint64_t seed = 7, p;
	int rc;

	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		p = rnd(&seed) % C6_PAGES;
		rc = gmem_set_attributes(c->fd, p * PAGE, PAGE,
					 c->priv[p] ? 0 : GMEM_ATTR_PRIVATE, 0, NULL);
		if (rc) {
			c->conv_err = rc;
			break;
		}
		c->priv[p] ^= 1;
		c->convs++;
	}
	return NULL;
}

static void *c6_faulter(void *arg)
{
	struct c6 *c = arg;
	unsigned int flags = GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE;
	uint64_t seed = 11, p, val = 0;
	struct gmem_exit ex;
	int rc;

	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		p = rnd(&seed) % C6_PAGES;
		rc = gmem_vm_access(c->vm, p * PAGE, &val, sizeof(val), flags, &ex);
		if (rc == 1) {
			flags ^= GMEM_FAULT_PRIVATE;
			c->exits++;
		} else if (rc) {
			c->fault_err = rc;
			break;
		} else {
			c->faults++;
		}
	}
	return NULL;
}

/* The third thread of a c6 run: stops the others after the run's time. */
struct c6_timer {
	struct c6 *c;
	double sec;
};

static void *c6_timer(void *arg)
{
	struct c6_timer *t = arg;
	struct timespec ts = { (time_t)t->sec, (long)((t->sec - (time_t)t->sec) * 1e9) };

	nanosleep(&ts, NULL);
	atomic_store(&t->c->stop, true);
	return NULL;
}

/* Runs the converter, the faulter or both for @sec seconds. */
static int c6_run(struct c6 *c, bool conv, bool fault, double sec)
{
	struct c6_timer tm = { c, sec };
	void *(*fn[3])(void *) = { c6_timer };
	void *arg[3] = { &tm, c, c };
	int n = 1;

	c->convs = c->faults = c->exits = 0;
	c->conv_err = c->fault_err = 0;
	atomic_store(&c->stop, false);
	if (conv)
		fn[n++] = c6_converter;
	if (fault)
		fn[n++] = c6_faulter;
	if (isnan(run_threads(n, fn, arg)))
		return -EAGAIN;
	return c->conv_err ? c->conv_err : c->fault_err;
}

void case6(void)
{
	const char *n1 = "conversions/s with a concurrent faulter";
	const char *n2 = "faults/s beside a flat-out converter";
	static const struct target t6b = { ">= 0.25x", 0.25, false, false, 0.25 };
	double sec = quick ? 0.2 : 0.5, exits[MAX_SAMPLES];
	uint64_t citers = quick ? 20000000 : 50000000;
	struct series sa = { 0 }, sb = { 0 };
	struct env e = { -1, -1 };
	struct c6 *c = NULL;
	struct stat3 control;

	c = calloc(1, sizeof(*c));
	if (!c) {
		emit_error("6a", n1, "calloc", -ENOMEM);
		return;
	}
	c->fd = -1;
	memset(c->priv, 1, sizeof(c->priv));
	TRY("6a", n1, env_open(&e, POOL_BYTES, "sw"));
	c->vm = e.vm;
	TRY("6a", n1, c->fd = gmem_create(e.vm, GiB, 0));
	TRY("6a", n1, gmem_vm_bind(e.vm, 0, 0, GiB, c->fd, 0));
	while (series_more(&sb, &t6b)) {
		double cv, ft, ex, cv0, ft0, alone, beside;

		TRY("6a", n1, c6_run(c, true, true, sec));
		cv = c->convs / sec / 1e3;
		ft = c->faults / sec / 1e3;
		ex = (double)c->exits / sec / 1e3;
		TRY("6a", n1, c6_run(c, true, false, sec));
		cv0 = c->convs / sec / 1e3;
		TRY("6b", n2, c6_run(c, false, true, sec));
		ft0 = c->faults / sec / 1e3;
		/* The control: a compute loop beside a flat-out compute loop / alone. */
		alone = compute_ns(1, citers, false);
		beside = compute_ns(1, citers, true);
		exits[sb.n] = ex;
		series_add(&sa, cv, cv0, NAN);
		series_add(&sb, ft, ft0, alone / beside);
	}
	emit_series("6a", n1, "k/s", &sa, NULL,
		    "converter alone", "with faulter / alone",
		    "2 threads for %.1f s per run over 64 MiB (16384 pages): random 4 KiB pages "
		    "converted both ways; no design target", sec);
	control = summarize(sb.c, sb.n);
	emit_series("6b", n2, "k/s", &sb, &t6b,
		    "faulter alone", "with converter / alone",
		    "gmem_vm_access 8-byte writes to random pages, flag flipped on each "
		    "memory-fault exit (median %.1f k/s); control: a compute loop beside a "
		    "flat-out compute loop / alone, %.2fx [%.2f..%.2f] (no verdict below 0.25x)",
		    summarize(exits, sb.n).med, control.med, control.lo, control.hi);
out:
	if (c)
		close_fd(&c->fd);
	env_close(&e);
	free(c);
}
