// SPDX-License-Identifier: MIT
/*
 * fuzz_api - libFuzzer target for the public API (include/gmem.h): the input
 * is a backend, a hook contract and a sequence of calls with arbitrary
 * arguments (offsets, lengths, flags, handles, addresses; invalid ones
 * included) run on a fresh pool and check-mode VM. After every call:
 *
 *   - the checker (GMEM_VM_CHECK) must have seen no new violation, but for
 *     the expected finding of pkvm under the legacy contract (invariant 4);
 *   - a call that failed (negative return) must have changed nothing: a
 *     snapshot taken before it through the public calls (attributes, the
 *     page cache and pins, each present page's bytes, stage-2, the pool's
 *     counts, where the host mappings are) must equal one taken after;
 *   - errno must be as the caller left it;
 *   - a host access through a mapping must raise SIGBUS exactly when the
 *     page is private or past the end of the file.
 * At the end every handle is closed and every mapping unmapped; the pool
 * must then hold no file, no frame in use and no frame reserved. Any of
 * these broken, a crash or a sanitizer report is a finding: "make fuzz-api".
 *
 * Built with -DFUZZ_THREADS, the main thread runs its first calls alone
 * (SETUP_CALLS: creating, mapping, binding), then a second thread runs guest
 * faults, guest accesses and host accesses from the tail of the input while
 * the main thread goes on converting, punching, pinning, binding and
 * closing. The process's mappings stay as set up meanwhile, so the second
 * thread's host accesses find the mappings it was given. (The rule began
 * when check mode read /proc/self/maps before it took gmem's locks, which
 * misread a mapping made or dropped meanwhile; it now reads them under the
 * mapping locks, and test_check maps beside checked calls.) The input fixes
 * what each thread calls, in what order; the
 * interleaving is the scheduler's, so a finding may need its input run several times
 * (-runs=1000) to show again. With two threads only what the second one
 * cannot change is compared for a failed call (attributes, pins, mappings),
 * and host accesses by the main thread are still checked against the
 * attributes, which only the main thread changes.
 *
 * Input: byte 0 picks the backend (bits 0-1) and the contract (bit 2); the
 * threaded build takes its bits 3-7 as the share of the rest (in 32nds,
 * from the end) the second thread gets, so one corpus serves both builds.
 * Then each call is an opcode byte and its arguments, little-endian, zero
 * once the input runs out. FUZZ_API_TRACE=1 prints each call and its
 * result, to read what a finding's input does. Not covered: fork (libFuzzer
 * runs in one process), 1 GiB folios (one would zero 1 GiB per input: only
 * their refusals), gmem_vm_trace_hooks.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gmem.h"

#define PAGE		GMEM_PAGE_SIZE
#define HUGE		(2ULL << 20)
#define POOL_SIZE	(1ULL << 30)
#define MAX_FILE_SIZE	(8ULL << 20)
#define MAX_FILES	3
#define MAX_MAPS	16
#define MAX_VIEWS	16
#define MAX_SLOTS	6		/* slot ids the fuzzer mostly uses */
#define MAX_CALLS	96		/* calls per thread per input */
#define SETUP_CALLS	8		/* main thread's, before the second starts */
#define BUF_PAGES	16
#define GPA_SPACE	(16ULL << 20)	/* where binds mostly go */
/*
 * The arena: address space MAP_FIXED mappings and the second thread's host
 * accesses are confined to, far below where the kernel places mappings and
 * away from ASan's fixed regions, so a MAP_FIXED replaces only what the
 * fuzzer put there and a hole left by gmem_munmap is never reused by
 * anyone else.
 */
#define ARENA		((uint8_t *)0x300000000000ULL)
#define ARENA_SIZE	(64ULL << 20)
#define ERRNO_MARK	7919

static const char *const archs[] = { "sw", "snp", "tdx", "pkvm" };

/* ------------------------------------------------------------ the input */

struct input {
	const uint8_t *p;
	size_t n;
};

static uint8_t u8(struct input *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static uint16_t u16(struct input *in)
{
	return (uint16_t)(u8(in) | u8(in) << 8);
}

static uint64_t u64(struct input *in)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)u8(in) << (8 * i);
	return v;
}

/* ----------------------------------------------------------- the world */

struct file {
	int fd;			/* -1: entry free */
	uint64_t size;
	uint64_t folio;		/* bytes */
};

struct map {
	uint8_t *addr;		/* NULL: entry free */
	size_t len;
	int prot;
	unsigned long seq;	/* the newest covering an address maps it */
};

struct view {
	void *addr;
	uint64_t len;
};

struct slot {
	bool used;
	uint64_t gpa, size;
};

struct world {
	int pool, vm, vm2;
	bool pool_open;
	bool legacy, pkvm, vm2_legacy, vm2_pkvm;
	int64_t seen, seen2;		/* violations judged so far */
	struct file files[MAX_FILES];
	int stale;			/* a handle closed in this input, or -1 */
	struct map maps[MAX_MAPS];
	unsigned int next_map;
	unsigned long map_seq;
	struct view views[MAX_VIEWS];
	unsigned int nviews;
	struct slot slots[2][MAX_SLOTS];	/* of vm, of vm2 */
	bool threaded;
	const char *op;			/* the call running, for reports */
	bool mutating;			/* ...and whether it is snapshotted */
};

static uint8_t buf_main[BUF_PAGES * PAGE], buf_second[BUF_PAGES * PAGE];
static bool trace;		/* FUZZ_API_TRACE set: print every call */

__attribute__((noreturn, format(printf, 2, 3)))
static void finding(struct world *w, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz_api: finding in %s: ", w->op ? w->op : "?");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (last error: %s)\n", gmem_last_error());
	abort();
}

/* ---------------------------------------------------- host access probe */

/*
 * A host access that may fault: the handlers are installed once, for the
 * process, before gmem's (which chains to them), and act only for a thread
 * that is probing; any other fault goes to the handler found before them.
 */
static _Thread_local sigjmp_buf probe_jmp;
static _Thread_local volatile sig_atomic_t probing, probe_sig;
static struct sigaction prev_segv, prev_bus;

static void probe_handler(int sig, siginfo_t *si, void *uc)
{
	struct sigaction *prev = sig == SIGBUS ? &prev_bus : &prev_segv;

	if (probing) {
		probe_sig = sig;
		siglongjmp(probe_jmp, 1);
	}
	if (prev->sa_flags & SA_SIGINFO) {
		prev->sa_sigaction(sig, si, uc);
	} else if (prev->sa_handler != SIG_IGN && prev->sa_handler != SIG_DFL) {
		prev->sa_handler(sig);
	} else {
		signal(sig, SIG_DFL);
		raise(sig);
	}
}

static void probe_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = probe_handler;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &prev_segv);
	sigaction(SIGBUS, &sa, &prev_bus);
}

/* Copy byte by byte; returns the signal that stopped it, or 0. */
__attribute__((no_sanitize("address")))
static int probe_copy(volatile uint8_t *dst, volatile const uint8_t *src,
		      size_t len)
{
	volatile size_t i = 0;

	probe_sig = 0;
	if (!sigsetjmp(probe_jmp, 1)) {
		probing = 1;
		for (; i < len; i++)
			dst[i] = src[i];
	}
	probing = 0;
	return probe_sig;
}

/* -------------------------------------------------------------- choices */

/* A handle: mostly one the fuzzer holds, sometimes anything else. */
static int pick_fd(struct world *w, struct input *in)
{
	uint8_t b = u8(in);

	if (b < 0xe0)
		return w->files[b % MAX_FILES].fd;
	switch (b & 7) {
	case 0: return w->vm;
	case 1: return w->pool;
	case 2: return w->stale;
	case 3: return -1;
	case 4: return INT_MAX;
	case 5: return w->vm2;
	default: return (int)(u16(in) % 64);
	}
}

static int pick_vm(struct world *w, struct input *in)
{
	uint8_t b = u8(in);

	if (b < 0xe0)
		return b & 1 && w->vm2 >= 0 ? w->vm2 : w->vm;
	switch (b & 3) {
	case 0: return w->files[0].fd;
	case 1: return w->pool;
	case 2: return w->stale;
	default: return -1;
	}
}

static int64_t file_size(struct world *w, int fd)
{
	for (int i = 0; i < MAX_FILES; i++)
		if (w->files[i].fd == fd && fd >= 0)
			return (int64_t)w->files[i].size;
	return 16 * PAGE;
}

/* An offset in a file of @size bytes: mostly valid, sometimes not. */
static uint64_t pick_offset(struct input *in, uint64_t size)
{
	uint8_t b = u8(in);
	uint64_t pages = size / PAGE ? size / PAGE : 1;

	switch (b % 8) {
	case 4: return u8(in) % (size / HUGE + 1) * HUGE;
	case 5: return size;
	case 6: return u16(in) % pages * PAGE + u16(in) % PAGE;
	case 7: return u64(in);
	default: return u16(in) % pages * PAGE;
	}
}

static uint64_t pick_len(struct input *in, uint64_t size, uint64_t off)
{
	uint8_t b = u8(in);

	switch (b % 8) {
	case 4: return size > off ? size - off : PAGE;
	case 5: return (1 + u8(in) % 2) * HUGE;
	case 6: return u16(in) % (2 * PAGE);
	case 7: return u64(in);
	default: return (1 + b / 8 % 16) * PAGE;
	}
}

/* A gpa: mostly inside a bound slot, sometimes anywhere. */
static uint64_t pick_gpa(struct world *w, struct input *in)
{
	uint8_t b = u8(in);
	struct slot *s = &w->slots[0][b % MAX_SLOTS];

	if (b < 0xc0 && s->used)
		return s->gpa + u16(in) % (s->size / PAGE) * PAGE +
		       (b & 0x20 ? u16(in) % PAGE : 0);
	if (b < 0xf0)
		return u16(in) % (GPA_SPACE / PAGE) * PAGE;
	return u64(in);
}

static uint32_t pick_slot(struct input *in)
{
	uint8_t b = u8(in);

	if (b < 0xf0)
		return b % MAX_SLOTS;
	return b & 1 ? GMEM_MAX_SLOTS : (uint32_t)u64(in);
}

static uint64_t pick_attr(struct input *in)
{
	uint8_t b = u8(in);

	if (b < 0xf0)
		return b & 1 ? GMEM_ATTR_PRIVATE : 0;
	return u64(in);
}

static bool in_arena(const uint8_t *addr, size_t len)
{
	return addr >= ARENA && len <= ARENA_SIZE &&
	       (size_t)(addr - ARENA) <= ARENA_SIZE - len;
}

/*
 * An address in a mapping the fuzzer made, or in the arena (2 MiB-aligned
 * for huge files, or not page-aligned at all), or NULL. With @arena_only,
 * one outside the arena is moved into it: a MAP_FIXED elsewhere could
 * replace memory that is no longer gmem's.
 */
static uint8_t *pick_addr(struct world *w, struct input *in, bool arena_only)
{
	uint8_t b = u8(in);
	struct map *m = &w->maps[b % MAX_MAPS];
	uint8_t *addr;

	if (b < 0x80 && m->addr)
		addr = m->addr + u16(in) % (m->len / PAGE) * PAGE;
	else if (b < 0xc0)
		addr = ARENA + u16(in) % (ARENA_SIZE / PAGE) * PAGE;
	else if (b < 0xf0)
		addr = ARENA + u8(in) % (ARENA_SIZE / HUGE) * HUGE;
	else if (b < 0xf8)
		addr = ARENA + u16(in) % (ARENA_SIZE / PAGE) * PAGE + 1 + u8(in);
	else
		return NULL;
	if (arena_only && !in_arena(addr, 1))
		addr = ARENA + (uintptr_t)addr % ARENA_SIZE;
	return addr;
}

/* --------------------------------------------------------- the snapshot */

/*
 * What a failed call must leave alone, as hashes per kind, read through the
 * public calls only. Page contents are read from the direct map without
 * ASan's instrumentation: private frames are the library's to poison.
 */
struct snapshot {
	uint64_t attrs, pins, folios, bytes, stage2, pool, maps;
};

static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	return h * 0xff51afd7ed558ccdULL;
}

__attribute__((no_sanitize("address")))
static uint64_t page_hash(const uint64_t *p)
{
	uint64_t h = 0;

	for (size_t i = 0; i < PAGE / 8; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL + i;
	return h;
}

static void snap_file(struct world *w, struct file *f, struct snapshot *s)
{
	uint64_t off = 0, attr, end;

	while (off < f->size) {
		if (gmem_get_attributes(f->fd, off, &attr, &end) || end <= off) {
			s->attrs = mix(s->attrs, ~0ULL);
			break;
		}
		s->attrs = mix(mix(mix(s->attrs, off), end), attr);
		off = end;
	}
	/*
	 * A page the host touched through a mapping is known to gmem once it
	 * looks (gmem_pool_stats (1)); in a huge file that can make the whole
	 * folio present. Look at every page first, so that reading the page
	 * cache does not change it.
	 */
	for (off = 0; off < f->size; off += PAGE)
		gmem_folio_info(f->fd, off, NULL, NULL, NULL);
	for (off = 0; off < f->size; off += PAGE) {
		uint64_t pfn = 0;
		uint32_t pins = 0;
		int order = -1, ret = gmem_folio_info(f->fd, off, &pfn, &order, &pins);

		s->pins = mix(s->pins, pins);
		s->folios = mix(mix(mix(s->folios, (uint64_t)ret), pfn), (uint64_t)order);
		if (ret == 1 && !w->threaded && w->pool_open) {
			const void *va = gmem_pool_frame(w->pool, pfn);

			s->bytes = mix(s->bytes, va ? page_hash(va) : 1);
		}
	}
}

static void snapshot(struct world *w, struct snapshot *s)
{
	struct gmem_pool_stats st;

	memset(s, 0, sizeof(*s));
	for (int i = 0; i < MAX_FILES; i++)
		if (w->files[i].fd >= 0)
			snap_file(w, &w->files[i], s);
	for (int i = 0; i < 2 * MAX_SLOTS; i++) {
		struct slot *sl = &w->slots[i / MAX_SLOTS][i % MAX_SLOTS];
		int vm = i < MAX_SLOTS ? w->vm : w->vm2;

		for (uint64_t a = sl->gpa; sl->used && a < sl->gpa + sl->size; a += PAGE) {
			uint64_t pfn = 0;
			int private = 0, ret = gmem_vm_stage2(vm, a, &pfn, &private);

			s->stage2 = mix(mix(mix(s->stage2, (uint64_t)ret), pfn),
					(uint64_t)private);
			if (ret == 1)
				s->stage2 = mix(s->stage2, (uint64_t)gmem_vm_stage2_level(vm, a));
		}
	}
	if (w->pool_open && !gmem_pool_stats(w->pool, &st))
		s->pool = mix(mix(mix(mix(s->pool, st.frames_in_use), st.frames_reserved),
				  st.files), st.metadata_bytes);
	for (int i = 0; i < MAX_MAPS; i++) {
		struct map *m = &w->maps[i];
		size_t at[3] = { 0, m->len / 2 / PAGE * PAGE, m->len - PAGE };

		for (int k = 0; m->addr && k < 3; k++) {
			int fd = -2;
			uint64_t off = 0;
			int ret = gmem_mapping_find(m->addr + at[k], &fd, &off);

			s->maps = mix(mix(mix(s->maps, (uint64_t)ret), (uint64_t)fd), off);
		}
	}
	if (w->threaded)	/* the second thread faults and writes */
		s->folios = s->bytes = s->stage2 = s->pool = 0;
}

static void compare(struct world *w, const struct snapshot *a,
		    const struct snapshot *b, int64_t ret)
{
	static const char *const what[] = { "attributes", "pins", "page cache",
		"page contents", "stage-2", "pool counts", "host mappings" };
	const uint64_t *x = &a->attrs, *y = &b->attrs;

	for (int i = 0; i < 7; i++)
		if (x[i] != y[i])
			finding(w, "failed with %lld but changed the %s",
				(long long)ret, what[i]);
}

/* ------------------------------------------------------------- checking */

/* New violations on @vm: each must be the legacy contract's known one on pkvm. */
static void judge(struct world *w, int vm, bool legacy, bool pkvm, int64_t *seen)
{
	struct gmem_violation v[8];
	int64_t n = gmem_vm_violations(vm, v, 8);

	if (n < 0 || n <= *seen)
		return;
	for (int64_t i = *seen; i < n && i < 8; i++) {
		if (legacy && pkvm && v[i].invariant == 4)
			continue;
		finding(w, "invariant %d broken by %s at offset %#llx pfn %#llx: %s",
			v[i].invariant, v[i].op, (unsigned long long)v[i].offset,
			(unsigned long long)v[i].pfn, v[i].rule);
	}
	/* Past the first 8 only the count is known: judge by the contract. */
	if (n > 8 && !(legacy && pkvm))
		finding(w, "%lld violations", (long long)n);
	*seen = n;
}

static void check(struct world *w)
{
	judge(w, w->vm, w->legacy, w->pkvm, &w->seen);
	if (w->vm2 >= 0)
		judge(w, w->vm2, w->vm2_legacy, w->vm2_pkvm, &w->seen2);
}

/*
 * Around every call: before() snapshots a @mutating call and marks errno;
 * after() takes the call's result, checks errno, compares the snapshots if
 * the call failed, and runs the checker. Used as
 *	before(w, "gmem_pin", true, &s);
 *	ret = after(w, &s, gmem_pin(fd, off, len));
 */
static void before(struct world *w, const char *name, bool mutating,
		   struct snapshot *s)
{
	w->op = name;
	w->mutating = mutating;
	if (mutating)
		snapshot(w, s);
	errno = ERRNO_MARK;
}

static int64_t after(struct world *w, const struct snapshot *s, int64_t ret)
{
	struct snapshot now;

	if (errno != ERRNO_MARK)
		finding(w, "errno changed to %d", errno);
	if (trace)
		fprintf(stderr, "%s = %lld\n", w->op, (long long)ret);
	if (w->mutating && ret < 0) {
		snapshot(w, &now);
		compare(w, s, &now, ret);
	}
	check(w);
	return ret;
}

/* ------------------------------------------------------------ the calls */

/* The slots the fuzzer knows of @vm, or NULL for any other handle. */
static struct slot *slots_of(struct world *w, int vm)
{
	if (vm == w->vm)
		return w->slots[0];
	if (vm == w->vm2 && vm >= 0)
		return w->slots[1];
	return NULL;
}

/* The file entry holding handle @fd, or NULL. */
static struct file *file_of(struct world *w, int fd)
{
	for (int i = 0; i < MAX_FILES; i++)
		if (w->files[i].fd == fd && fd >= 0)
			return &w->files[i];
	return NULL;
}

/*
 * Remember a mapping: in a free entry, or over one in the arena (which
 * teardown unmaps whole). Mappings outside the arena are never forgotten,
 * so teardown can unmap them: map_room() says whether one may be made.
 */
static bool map_room(struct world *w)
{
	for (int i = 0; i < MAX_MAPS; i++)
		if (!w->maps[i].addr)
			return true;
	return false;
}

static void add_map(struct world *w, uint8_t *addr, size_t len, int prot)
{
	struct map *m = NULL;

	for (int i = 0; i < MAX_MAPS && !m; i++)
		if (!w->maps[i].addr)
			m = &w->maps[i];
	for (unsigned int i = 0; i < MAX_MAPS && !m; i++) {
		struct map *old = &w->maps[w->next_map++ % MAX_MAPS];

		if (in_arena(old->addr, old->len))
			m = old;
	}
	if (m)
		*m = (struct map){ addr, len, prot, ++w->map_seq };
}

static void op_create(struct world *w, struct input *in)
{
	uint8_t b = u8(in);
	struct file *f = &w->files[(b & 0xf) % MAX_FILES];
	int vm = pick_vm(w, in);
	uint64_t flags = b >> 4, size;
	struct snapshot s;
	int64_t fd;

	if (f->fd >= 0)
		return;
	/* A 1 GiB file of one folio would zero 1 GiB: only its refusals. */
	if ((flags & GMEM_FLAG_HUGE_1G) && !(flags & GMEM_FLAG_HUGE_2M))
		flags &= ~GMEM_FLAG_HUGE_1G;
	switch (u8(in) % 8) {
	case 0:
		/*
		 * Any size, but one the pool could hold is cut to MAX_FILE_SIZE
		 * (its alignment kept): the snapshot reads every page, and a
		 * 1 GiB file of 4 KiB pages made one input take 20 s.
		 */
		size = u64(in) % (1ULL << 50);
		if (size > MAX_FILE_SIZE && size <= POOL_SIZE)
			size %= MAX_FILE_SIZE;
		break;
	case 1: size = u16(in); break;
	case 2: flags |= u64(in); size = PAGE; break;
	default:
		size = flags & GMEM_FLAG_HUGE_2M ? (1 + u8(in) % 2) * HUGE :
		       (1 + u8(in) % 64) * PAGE;
		break;
	}
	before(w, "gmem_create", true, &s);
	fd = after(w, &s, gmem_create(vm, size, flags));
	if (fd >= 0)
		*f = (struct file){ (int)fd, size, flags & GMEM_FLAG_HUGE_2M ? HUGE : PAGE };
}

static void op_close(struct world *w, struct input *in)
{
	uint8_t b = u8(in);
	int fd = b < 0xf0 ? w->files[b % MAX_FILES].fd : pick_fd(w, in);
	struct file *f = file_of(w, fd);
	struct snapshot s;

	if (fd == w->vm)
		return;		/* its checker is what the fuzzer reads */
	before(w, "gmem_close", true, &s);
	if (!after(w, &s, gmem_close(fd)) && f) {
		w->stale = fd;
		f->fd = -1;
	}
}

static void op_fallocate(struct world *w, struct input *in)
{
	int fd = pick_fd(w, in);
	uint64_t size = (uint64_t)file_size(w, fd);
	uint8_t m = u8(in);
	int mode = m < 0xf0 ? GMEM_FALLOC_KEEP_SIZE | (m & 1 ? GMEM_FALLOC_PUNCH_HOLE : 0) : m;
	uint64_t off = pick_offset(in, size), len = pick_len(in, size, off);
	struct snapshot s;

	before(w, "gmem_fallocate", true, &s);
	after(w, &s, gmem_fallocate(fd, mode, off, len));
}

static void op_set_attributes(struct world *w, struct input *in)
{
	int fd = pick_fd(w, in);
	uint64_t size = (uint64_t)file_size(w, fd);
	uint64_t off = pick_offset(in, size), len = pick_len(in, size, off);
	uint64_t attr = pick_attr(in), flags = u8(in) == 0xff ? u64(in) : 0;
	uint64_t err = 0, *errp = u8(in) & 1 ? &err : NULL;
	struct file *f = file_of(w, fd);
	/* A pin blocking a split or merge may be anywhere in the folios touched. */
	uint64_t folio = f ? f->folio : PAGE;
	uint64_t lo = off / folio * folio, hi = (off + len + folio - 1) / folio * folio;
	struct snapshot s;
	int64_t ret;

	before(w, "gmem_set_attributes", true, &s);
	ret = after(w, &s, gmem_set_attributes(fd, off, len, attr, flags, errp));
	if ((ret == -EAGAIN || ret == -ENOMEM) && errp &&
	    (err < lo || err >= hi || err % PAGE))
		finding(w, "error offset %#llx outside [%#llx, %#llx)",
			(unsigned long long)err, (unsigned long long)lo,
			(unsigned long long)hi);
}

static void op_vm_set_attributes(struct world *w, struct input *in)
{
	int vm = pick_vm(w, in);
	uint64_t gpa = pick_gpa(w, in), len = pick_len(in, 64 * PAGE, 0);
	uint64_t attr = pick_attr(in), err = 0;
	struct snapshot s;

	before(w, "gmem_vm_set_attributes", true, &s);
	after(w, &s, gmem_vm_set_attributes(vm, gpa, len, attr, 0, &err));
}

static void op_pin(struct world *w, struct input *in, bool pin)
{
	int fd = pick_fd(w, in);
	uint64_t size = (uint64_t)file_size(w, fd);
	uint64_t off = pick_offset(in, size), len = pick_len(in, size, off);
	struct snapshot s;

	before(w, pin ? "gmem_pin" : "gmem_unpin", true, &s);
	after(w, &s, pin ? gmem_pin(fd, off, len) : gmem_unpin(fd, off, len));
}

static void op_mmap(struct world *w, struct input *in)
{
	int fd = pick_fd(w, in);
	uint64_t size = (uint64_t)file_size(w, fd);
	uint64_t off = pick_offset(in, size);
	size_t len = pick_len(in, size, off);
	uint8_t b = u8(in);
	int prot = b < 0xf0 ? (int)(b % 3) + 1 : (int)u16(in);
	int flags = MAP_SHARED;
	uint8_t *addr = NULL;
	void **addrp = (void **)&addr;
	struct snapshot s;

	b = u8(in);
	/* With two threads only the arena is touched: map there. */
	if (b & 1 || w->threaded || !map_room(w))
		flags |= MAP_FIXED;
	if (b >= 0xf8)
		flags = b & 2 ? MAP_PRIVATE : (int)u16(in) & ~MAP_FIXED;
	if (flags & MAP_FIXED) {
		addr = pick_addr(w, in, true);
		if (addr && !in_arena(addr, len))
			len = ARENA_SIZE - (size_t)(addr - ARENA);
	} else if (len > 64 * HUGE) {
		len = 64 * HUGE;	/* the kernel would reserve all of it */
	}
	if (b == 0xf0)
		addrp = NULL;
	if (trace)
		fprintf(stderr, "gmem_mmap(%d, %#llx, %#zx, prot %#x, flags %#x, %p)\n", fd,
			(unsigned long long)off, len, prot, flags, (void *)addr);
	before(w, "gmem_mmap", true, &s);
	if (!after(w, &s, gmem_mmap(fd, off, len, prot, flags, addrp)))
		add_map(w, addr, len, prot);
}

static void op_munmap(struct world *w, struct input *in)
{
	uint8_t *addr = pick_addr(w, in, false);
	uint8_t b = u8(in);
	size_t len = b < 0xf0 ? (1 + b % 32) * PAGE : (size_t)u64(in);
	struct snapshot s;

	before(w, "gmem_munmap", true, &s);
	after(w, &s, gmem_munmap(addr ? addr : ARENA, len));
}

static void op_bind(struct world *w, struct input *in)
{
	int vm = pick_vm(w, in);
	uint32_t slot = pick_slot(in);
	int fd = pick_fd(w, in);
	uint64_t fsize = (uint64_t)file_size(w, fd);
	uint64_t off = pick_offset(in, fsize), size = pick_len(in, fsize, off);
	uint8_t b = u8(in);
	uint64_t gpa = b < 0xf0 ? u16(in) % (GPA_SPACE / HUGE) * (b & 1 ? HUGE : 64 * PAGE)
				: u64(in);
	struct slot *slots = slots_of(w, vm);
	struct snapshot s;

	if (trace)
		fprintf(stderr, "gmem_vm_bind(%d, %u, gpa %#llx, size %#llx, %d, %#llx)\n", vm,
			slot, (unsigned long long)gpa, (unsigned long long)size, fd,
			(unsigned long long)off);
	before(w, "gmem_vm_bind", true, &s);
	if (!after(w, &s, gmem_vm_bind(vm, slot, gpa, size, fd, off)) && slots &&
	    slot < MAX_SLOTS)
		slots[slot] = (struct slot){ true, gpa, size };
}

static void op_unbind(struct world *w, struct input *in)
{
	int vm = pick_vm(w, in);
	uint32_t slot = pick_slot(in);
	struct slot *slots = slots_of(w, vm);
	struct snapshot s;

	before(w, "gmem_vm_unbind", true, &s);
	if (!after(w, &s, gmem_vm_unbind(vm, slot)) && slots && slot < MAX_SLOTS)
		slots[slot].used = false;
}

static unsigned int pick_fault_flags(struct input *in)
{
	uint8_t b = u8(in);

	return b < 0xf8 ? b & 3 : b;
}

static void op_fault(struct world *w, struct input *in, bool second)
{
	int vm = pick_vm(w, in);
	uint64_t gpa = pick_gpa(w, in), pfn;
	unsigned int flags = pick_fault_flags(in);
	struct gmem_exit exit;
	struct snapshot s;
	int64_t ret;

	before(w, "gmem_vm_fault", !second, &s);
	ret = after(w, &s, gmem_vm_fault(vm, gpa, flags, &pfn, &exit));
	if (ret == GMEM_FAULT_EXIT && (exit.reason != GMEM_EXIT_MEMORY_FAULT ||
	    exit.gpa != (gpa & ~(PAGE - 1)) || exit.size != PAGE ||
	    !(exit.flags & GMEM_MEMORY_EXIT_FLAG_PRIVATE) != !(flags & GMEM_FAULT_PRIVATE)))
		finding(w, "memory-fault exit for gpa %#llx flags %#x names gpa %#llx size %#llx flags %#llx",
			(unsigned long long)gpa, flags, (unsigned long long)exit.gpa,
			(unsigned long long)exit.size, (unsigned long long)exit.flags);
}

static void op_access(struct world *w, struct input *in, bool second)
{
	int vm = pick_vm(w, in);
	uint64_t gpa = pick_gpa(w, in);
	unsigned int flags = pick_fault_flags(in);
	uint8_t b = u8(in);
	size_t len = b < 0xf0 ? 1 + u16(in) % (2 * PAGE) : u16(in) % sizeof(buf_main);
	uint8_t *buf = second ? buf_second : buf_main;
	struct gmem_exit exit;
	struct snapshot s;
	/* A failed access may have moved the bytes of the pages before it. */
	bool one_page = (gpa & (PAGE - 1)) + len <= PAGE;

	memset(buf, b, len);
	before(w, "gmem_vm_access", !second && one_page, &s);
	after(w, &s, gmem_vm_access(vm, gpa, b == 0xff ? NULL : buf, len, flags, &exit));
}

static void op_populate(struct world *w, struct input *in)
{
	int vm = pick_vm(w, in);
	uint64_t gpa = pick_gpa(w, in);
	uint8_t b = u8(in);
	uint64_t len = b < 0xf0 ? (1 + b % BUF_PAGES) * PAGE : u64(in);
	const void *src = b & 1 && len <= sizeof(buf_main) ? buf_main : NULL;
	uint64_t flags = b == 0xfe ? u64(in) : 0;
	struct snapshot s;

	memset(buf_main, b, sizeof(buf_main));
	before(w, "gmem_vm_populate", true, &s);
	after(w, &s, gmem_vm_populate(vm, gpa, src, len, flags));
}

/* The protection of the mapping made last over @addr. */
static int newest_prot(struct world *w, const uint8_t *addr)
{
	const struct map *best = NULL;

	for (int i = 0; i < MAX_MAPS; i++) {
		const struct map *m = &w->maps[i];

		if (m->addr && addr >= m->addr && addr < m->addr + m->len &&
		    (!best || m->seq > best->seq))
			best = m;
	}
	return best ? best->prot : PROT_READ | PROT_WRITE;
}

/*
 * A host read or write through a mapping, inside one page. The second
 * thread touches only the arena and expects nothing; the main thread
 * touches only gmem mappings, and one of an open file must raise SIGBUS
 * exactly when the page is private or past the end of the file (SIGSEGV for
 * a write to a read-only mapping).
 */
static void op_host(struct world *w, struct input *in, bool second)
{
	uint8_t *addr = pick_addr(w, in, second);
	uint8_t b = u8(in);
	size_t len = 1 + b % 64;
	bool write = b & 0x80;
	uint8_t *buf = second ? buf_second : buf_main;
	int fd = -1, sig, expect = 0;
	uint64_t off = 0, attr = 0;

	if (!addr)
		return;
	addr = (uint8_t *)((uintptr_t)addr & ~(PAGE - 1)) + u16(in) % (PAGE - len);
	if (second) {
		probe_copy(write ? addr : buf, write ? buf : addr, len);
		return;
	}
	w->op = write ? "host write" : "host read";
	if (gmem_mapping_find(addr, &fd, &off) != 1)
		return;		/* not a gmem mapping: not the fuzzer's to touch */
	/* The kernel checks the mapping's protection before gmem sees the fault. */
	if (write && !(newest_prot(w, addr) & PROT_WRITE))
		expect = SIGSEGV;
	else if (fd >= 0 && (int64_t)off >= gmem_size(fd))
		expect = SIGBUS;
	else if (fd >= 0 && !gmem_get_attributes(fd, off & ~(PAGE - 1), &attr, NULL) &&
		 (attr & GMEM_ATTR_PRIVATE))
		expect = SIGBUS;
	sig = probe_copy(write ? addr : buf, write ? buf : addr, len);
	if (trace)
		fprintf(stderr, "%s %p = signal %d\n", w->op, (void *)addr, sig);
	if (fd >= 0 && sig != expect)
		finding(w, "host %s at %p (offset %#llx, attributes %#llx) raised %d, not %d",
			write ? "write" : "read", (void *)addr, (unsigned long long)off,
			(unsigned long long)attr, sig, expect);
	check(w);
}

static void op_view(struct world *w, struct input *in)
{
	int vm = pick_vm(w, in);
	uint32_t slot = pick_slot(in);
	uint8_t b = u8(in);
	uint64_t attr = b % 4 == 0 ? 0 : b % 4 == 1 ? GMEM_ATTR_PRIVATE :
			b % 4 == 2 ? GMEM_VIEW_ANY : u64(in);
	struct slot *slots = slots_of(w, vm);
	void *addr = NULL;
	struct snapshot s;

	/* A view must be unmapped at the end: its length is its slot's. */
	if (w->nviews == MAX_VIEWS || !slots || slot >= MAX_SLOTS)
		return;
	if (trace)
		fprintf(stderr, "gmem_vm_view_mmap(%d, %u, %#llx)\n", vm, slot,
			(unsigned long long)attr);
	before(w, "gmem_vm_view_mmap", true, &s);
	if (!after(w, &s, gmem_vm_view_mmap(vm, slot, attr, b == 0xff ? NULL : &addr)))
		w->views[w->nviews++] = (struct view){ addr, slots[slot].size };
}

/* Calls that only read: nothing may change, errno least of all. */
static void op_query(struct world *w, struct input *in)
{
	uint8_t b = u8(in);
	int fd = pick_fd(w, in), vm = pick_vm(w, in), pool = b & 0x10 ? fd : w->pool;
	uint64_t size = (uint64_t)file_size(w, fd), off = pick_offset(in, size);
	uint64_t gpa = pick_gpa(w, in), a = 0, e = 0, pfn = 0;
	uint8_t *addr = pick_addr(w, in, false);
	int order = 0, priv = 0, rfd = 0;
	uint32_t pins = 0;
	struct gmem_pool_stats st;
	struct snapshot s;
	char text[64];
	size_t tlen = b & 0x20 ? 0 : u8(in) % sizeof(text);

	before(w, "a query", false, &s);
	switch (b % 12) {
	case 0: after(w, &s, gmem_get_attributes(fd, off, b & 0x20 ? NULL : &a, &e)); break;
	case 1: after(w, &s, gmem_attribute_ranges(fd)); break;
	case 2: after(w, &s, gmem_folio_info(fd, off, &pfn, &order, &pins)); break;
	case 3: after(w, &s, gmem_size(fd)); break;
	case 4: after(w, &s, gmem_vm_translate(vm, gpa, &rfd, &a, &e)); break;
	case 5: after(w, &s, gmem_vm_stage2(vm, gpa, &pfn, &priv)); break;
	case 6: after(w, &s, gmem_vm_stage2_level(vm, gpa)); break;
	case 7: after(w, &s, gmem_vm_invalidate_seq(vm)); break;
	case 8: after(w, &s, gmem_pool_stats(pool, b & 0x20 ? NULL : &st)); break;
	case 9: after(w, &s, gmem_pool_frame_state(pool, off / PAGE, text, tlen)); break;
	case 10: after(w, &s, gmem_mapping_find(addr, &rfd, &a)); break;
	default: after(w, &s, gmem_pool_frame(pool, off / PAGE) != NULL); break;
	}
}

/* Handles of the wrong kind closed, and a second VM made and closed. */
static void op_handles(struct world *w, struct input *in)
{
	static const char *const names[] = { "sw", "snp", "tdx", "pkvm",
					      "", "SW", "sw ", "x86" };
	uint8_t b = u8(in);
	int h = pick_fd(w, in);
	uint64_t flags = u8(in);
	unsigned int name = u8(in) % 8;
	struct snapshot s;
	int64_t ret;

	if (flags & 0x80)
		flags = u64(in);
	switch (b % 6) {
	case 0:
		if (h == w->vm)
			break;	/* its checker is what the fuzzer reads */
		before(w, "gmem_vm_close", true, &s);
		if (!after(w, &s, gmem_vm_close(h)) && h == w->vm2)
			w->vm2 = -1;
		break;
	case 1:
		before(w, "gmem_pool_close", true, &s);
		if (!after(w, &s, gmem_pool_close(h)) && h == w->pool)
			w->pool_open = false;
		break;
	case 2:
	case 3:
		if (w->vm2 >= 0)
			break;
		before(w, "gmem_vm_create", true, &s);
		ret = after(w, &s, gmem_vm_create(b & 1 ? h : w->pool,
						  b & 0x80 ? NULL : names[name], flags));
		if (ret >= 0) {
			w->vm2 = (int)ret;
			w->seen2 = 0;
			w->vm2_legacy = flags & GMEM_VM_LEGACY_CONTRACT;
			w->vm2_pkvm = name == 3;
			memset(w->slots[1], 0, sizeof(w->slots[1]));
		}
		break;
	case 4:
		before(w, "gmem_vm_violations", false, &s);
		after(w, &s, gmem_vm_violations(h, NULL, flags & 1));
		break;
	default:
		/* Refusals only: a pool the fuzzer made would outlive the input. */
		before(w, "gmem_pool_create", true, &s);
		after(w, &s, gmem_pool_create(flags | 1));
		break;
	}
}

enum {
	OP_CREATE, OP_CLOSE, OP_FALLOCATE, OP_SET_ATTRIBUTES, OP_VM_SET_ATTRIBUTES,
	OP_PIN, OP_UNPIN, OP_MMAP, OP_MUNMAP, OP_BIND, OP_UNBIND, OP_FAULT,
	OP_ACCESS, OP_POPULATE, OP_HOST, OP_VIEW, OP_QUERY, OP_HANDLES, OP_COUNT
};

/*
 * The main thread's calls: @ncalls of them at most. With @fixed_maps the
 * calls that change the process's mappings (gmem_mmap, gmem_munmap,
 * gmem_vm_view_mmap) are skipped, their opcode alone consumed.
 */
static void run_main(struct world *w, struct input *in, int ncalls,
		     bool fixed_maps)
{
	for (int i = 0; i < ncalls && in->n; i++) {
		uint8_t op = u8(in) % OP_COUNT;

		if (fixed_maps && (op == OP_MMAP || op == OP_MUNMAP || op == OP_VIEW))
			continue;
		switch (op) {
		case OP_CREATE: op_create(w, in); break;
		case OP_CLOSE: op_close(w, in); break;
		case OP_FALLOCATE: op_fallocate(w, in); break;
		case OP_SET_ATTRIBUTES: op_set_attributes(w, in); break;
		case OP_VM_SET_ATTRIBUTES: op_vm_set_attributes(w, in); break;
		case OP_PIN: op_pin(w, in, true); break;
		case OP_UNPIN: op_pin(w, in, false); break;
		case OP_MMAP: op_mmap(w, in); break;
		case OP_MUNMAP: op_munmap(w, in); break;
		case OP_BIND: op_bind(w, in); break;
		case OP_UNBIND: op_unbind(w, in); break;
		case OP_FAULT: op_fault(w, in, false); break;
		case OP_ACCESS: op_access(w, in, false); break;
		case OP_POPULATE: op_populate(w, in); break;
		case OP_HOST: op_host(w, in, false); break;
		case OP_VIEW: op_view(w, in); break;
		case OP_QUERY: op_query(w, in); break;
		default: op_handles(w, in); break;
		}
	}
}

/* ------------------------------------------------------ the second thread */
#ifdef FUZZ_THREADS

struct second {
	struct world w;		/* a copy as it was: handles by number */
	struct input in;
};

/*
 * The guest's and the host's side, racing the main thread's changes:
 * faults, accesses, host touches of the arena, queries. It works on a copy
 * of the world taken at the start, so shares no bookkeeping with the main
 * thread: a handle closed or reused meanwhile just fails or hits another
 * object, which any call must survive.
 */
static void *run_second(void *arg)
{
	struct second *s = arg;

	for (int i = 0; i < MAX_CALLS && s->in.n; i++) {
		switch (u8(&s->in) % 4) {
		case 0: op_fault(&s->w, &s->in, true); break;
		case 1: op_access(&s->w, &s->in, true); break;
		case 2: op_host(&s->w, &s->in, true); break;
		default: op_query(&s->w, &s->in); break;
		}
	}
	return NULL;
}
#endif

/* ------------------------------------------------------------ one input */

static void teardown(struct world *w)
{
	struct gmem_pool_stats st;

	w->op = "teardown";
	for (int i = 0; i < MAX_MAPS; i++)
		if (w->maps[i].addr)
			gmem_munmap(w->maps[i].addr, w->maps[i].len);
	gmem_munmap(ARENA, ARENA_SIZE);
	for (int i = 0; i < MAX_MAPS; i++)
		if (w->maps[i].addr && gmem_mapping_find(w->maps[i].addr, NULL, NULL) == 1)
			finding(w, "mapping %p outlived gmem_munmap", (void *)w->maps[i].addr);
	for (int i = 0; i < MAX_FILES; i++)
		if (w->files[i].fd >= 0 && gmem_close(w->files[i].fd))
			finding(w, "gmem_close of file %d failed", w->files[i].fd);
	check(w);
	if (w->vm2 >= 0)
		gmem_vm_close(w->vm2);
	if (w->pool_open && !gmem_pool_stats(w->pool, &st) &&
	    (st.files || st.frames_in_use || st.frames_reserved))
		finding(w, "every file released, yet the pool has %llu files, %llu frames in use, %llu reserved",
			(unsigned long long)st.files, (unsigned long long)st.frames_in_use,
			(unsigned long long)st.frames_reserved);
	gmem_vm_close(w->vm);
	/* Released, the views are reservations of the caller's to unmap. */
	for (unsigned int i = 0; i < w->nviews; i++)
		munmap(w->views[i].addr, w->views[i].len);
	if (w->pool_open)
		gmem_pool_close(w->pool);
}

static void reserve_arena(void)
{
	void *p = mmap(ARENA, ARENA_SIZE, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);

	if (p != ARENA) {
		perror("fuzz_api: arena");
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool once;
	struct input in = { data, size };
	struct world w;
	uint8_t cfg = u8(&in);

	if (!once) {
		trace = getenv("FUZZ_API_TRACE");
		probe_install();
		once = true;
	}
	reserve_arena();
	memset(&w, 0, sizeof(w));
	for (int i = 0; i < MAX_FILES; i++)
		w.files[i].fd = -1;
	w.stale = w.vm2 = -1;
	w.legacy = cfg & 4;
	w.pkvm = (cfg & 3) == 3;
	w.pool = gmem_pool_create(POOL_SIZE);
	if (w.pool < 0)
		finding(&w, "gmem_pool_create: %d", w.pool);
	w.pool_open = true;
	w.vm = gmem_vm_create(w.pool, archs[cfg & 3],
			      GMEM_VM_CHECK | (w.legacy ? GMEM_VM_LEGACY_CONTRACT : 0));
	if (w.vm < 0)
		finding(&w, "gmem_vm_create: %d", w.vm);
#ifdef FUZZ_THREADS
	{
		static struct second s;
		size_t tail = in.n * (cfg >> 3) / 32;
		pthread_t t;

		s.in = (struct input){ in.p + in.n - tail, tail };
		in.n -= tail;
		run_main(&w, &in, SETUP_CALLS, false);
		w.threaded = true;
		s.w = w;
		if (pthread_create(&t, NULL, run_second, &s))
			abort();
		run_main(&w, &in, MAX_CALLS, true);
		pthread_join(t, NULL);
	}
#else
	run_main(&w, &in, MAX_CALLS, false);
#endif
	teardown(&w);
	return 0;
}
