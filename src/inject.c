// SPDX-License-Identifier: MIT
/*
 * Failure injection (inject.h). Disarmed, a site costs one relaxed load and
 * a branch. Armed, every crossing takes a mutex: armed runs are tests, where
 * being exact (which crossing is the Nth, from any thread) matters more than
 * speed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "inject.h"

#define MAX_SITES	256

atomic_bool inject_armed;

static pthread_mutex_t inject_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t fail_nth, rng_state, crossings, failures;
static double fail_p;
static const char *only_site, *last_failed;
static struct inject_site_count sites[MAX_SITES];
static unsigned int nsites;

/* xorshift64*: a seeded, reproducible sequence. */
static uint64_t next_random(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static struct inject_site_count *site_count(const char *site)
{
	for (unsigned int i = 0; i < nsites; i++)
		if (sites[i].site == site || !strcmp(sites[i].site, site))
			return &sites[i];
	if (nsites == MAX_SITES)
		return NULL;
	sites[nsites].site = site;
	return &sites[nsites++];
}

bool inject_fail_armed(const char *site)
{
	struct inject_site_count *sc;
	bool fail;

	pthread_mutex_lock(&inject_lock);
	if (only_site && !strstr(site, only_site)) {
		pthread_mutex_unlock(&inject_lock);
		return false;
	}
	crossings++;
	fail = crossings == fail_nth ||
	       (fail_p > 0 && (next_random() >> 11) * 0x1p-53 < fail_p);
	sc = site_count(site);
	if (sc)
		sc->crossings++;
	if (fail) {
		failures++;
		last_failed = site;
		if (sc)
			sc->failures++;
	}
	pthread_mutex_unlock(&inject_lock);
	return fail;
}

void inject_arm(uint64_t nth, double p, uint64_t seed, const char *only)
{
	pthread_mutex_lock(&inject_lock);
	fail_nth = nth;
	fail_p = p;
	rng_state = seed ? seed : 1;
	only_site = only;
	crossings = failures = 0;
	last_failed = NULL;
	pthread_mutex_unlock(&inject_lock);
	atomic_store(&inject_armed, true);
}

void inject_disarm(void)
{
	atomic_store(&inject_armed, false);
}

void inject_stats(struct inject_stats *st)
{
	pthread_mutex_lock(&inject_lock);
	st->crossings = crossings;
	st->failures = failures;
	st->last_failed = last_failed;
	pthread_mutex_unlock(&inject_lock);
}

unsigned int inject_sites(struct inject_site_count *out, unsigned int max)
{
	unsigned int n;

	pthread_mutex_lock(&inject_lock);
	n = nsites < max ? nsites : max;
	memcpy(out, sites, n * sizeof(*out));
	pthread_mutex_unlock(&inject_lock);
	return n;
}

/* ------------------------------------------------------------ the wrappers */

void *inject_malloc(const char *site, size_t size)
{
	if (inject_fail(site)) {
		errno = ENOMEM;
		return NULL;
	}
	return malloc(size);
}

void *inject_calloc(const char *site, size_t n, size_t size)
{
	if (inject_fail(site)) {
		errno = ENOMEM;
		return NULL;
	}
	return calloc(n, size);
}

void *inject_realloc(const char *site, void *p, size_t size)
{
	if (inject_fail(site)) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(p, size);
}

void *inject_aligned_alloc(const char *site, size_t align, size_t size)
{
	if (inject_fail(site)) {
		errno = ENOMEM;
		return NULL;
	}
	return aligned_alloc(align, size);
}

void *inject_mmap(const char *site, void *addr, size_t len, int prot,
		  int flags, int fd, off_t off)
{
	if (inject_fail(site)) {
		errno = ENOMEM;
		return MAP_FAILED;
	}
	return mmap(addr, len, prot, flags, fd, off);
}

int inject_memfd_create(const char *site, const char *name, unsigned int flags)
{
	if (inject_fail(site)) {
		errno = ENOMEM;
		return -1;
	}
	return memfd_create(name, flags);
}

int inject_ftruncate(const char *site, int fd, off_t len)
{
	if (inject_fail(site)) {
		errno = ENOMEM;
		return -1;
	}
	return ftruncate(fd, len);
}

int inject_madvise(const char *site, void *addr, size_t len, int advice)
{
	if (inject_fail(site)) {
		errno = ENOMEM;
		return -1;
	}
	return madvise(addr, len, advice);
}

int inject_mprotect(const char *site, void *addr, size_t len, int prot)
{
	if (inject_fail(site)) {
		errno = ENOMEM;
		return -1;
	}
	return mprotect(addr, len, prot);
}
