// SPDX-License-Identifier: MIT
/* util.c - see util.h. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t rnd(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	int saved = errno;
	unsigned long v;
	char *end;
	bool ok;

	if (!s || !*s || *s == '-')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	ok = !errno && !*end && v <= max;
	errno = saved;
	if (ok)
		*out = v;
	return ok;
}

static sigjmp_buf probe_jmp;
static volatile sig_atomic_t probe_active, probe_sig;

static void probe_handler(int sig)
{
	if (!probe_active) {	/* not our fault: let it happen again, unhandled */
		signal(sig, SIG_DFL);
		return;
	}
	probe_sig = sig;
	siglongjmp(probe_jmp, 1);
}

int probe_copy(volatile uint8_t *dst, volatile const uint8_t *src, size_t len,
	       size_t *done)
{
	struct sigaction sa, old_segv, old_bus;
	volatile size_t i = 0;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = probe_handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, &old_segv);
	sigaction(SIGBUS, &sa, &old_bus);
	probe_sig = 0;
	if (!sigsetjmp(probe_jmp, 1)) {
		probe_active = 1;
		for (; i < len; i++)
			dst[i] = src[i];
	}
	probe_active = 0;
	sigaction(SIGSEGV, &old_segv, NULL);
	sigaction(SIGBUS, &old_bus, NULL);
	if (done)
		*done = i;
	return probe_sig;
}
