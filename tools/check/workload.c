// SPDX-License-Identifier: MIT
/*
 * The workload of gmem check: a seeded random VMM on one backend and contract,
 * with the library's invariant checker on (GMEM_VM_CHECK).
 *
 * What it does is what a VMM does: create and map files, bind memslots, run
 * guest accesses and answer their memory-fault exits by converting, convert
 * on its own, pin shared ranges for devices, punch holes, load launch content,
 * touch shared pages through the host mapping, unbind and release.
 *
 * The library decides what is a violation. The workload's own part is to
 * notice calls that fail in ways the API does not allow ("tool failures"):
 * those are bugs too, in the library or here.
 *
 * Everything depends on the seed only: a fresh pool per run, handles
 * allocated lowest-first, frames placed by first fit.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gmem.h"
#include "cli.h"
#include "lib/util.h"

#define PAGE		GMEM_PAGE_SIZE
#define POOL_SIZE	(16ULL << 30)
#define MAX_FILES	3
#define MIN_PAGES	16
#define MAX_PAGES	128
#define HUGE_PAGES	512	/* a 2 MiB file: one huge folio */
#define HUGE_PERCENT	25	/* of the files created */
#define GIANT_PAGES	(1ULL << 18)	/* a 1 GiB file: one 1 GiB folio */
#define GIANT_PERCENT	12	/* of the huge files, one per split-contract run */
/*
 * Operations a 1 GiB file lives: the checker looks at every one of its
 * 262,144 pages after every call, and its first use allocates 1 GiB.
 */
#define GIANT_LIFE	60
#define MAX_BINDS	8	/* slot ids are the indices of binds[] */
#define GPA_PAGES	2048	/* guest physical space binds are placed in */
#define MAX_PINS	3	/* pins stacked on one page */
#define MAX_SPAN	4	/* pages one guest access, populate or host touch spans */
#define MAX_REPORTED	10	/* tool failures printed per run */
#define NONE		(~0ULL)

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* A file as the VMM knows it: its mapping, the pins it holds, what it bound. */
struct cfile {
	int fd;				/* -1: entry free */
	uint64_t pages;
	uint64_t folio;			/* pages per folio: 1, HUGE_PAGES or GIANT_PAGES */
	uint64_t born;			/* the operation that created it */
	uint8_t *map;			/* whole file, read-write */
	uint32_t *pins;			/* per page */
	bool *bound;			/* per page */
};

struct cbind {
	bool used;
	int file;			/* index into files[] */
	uint64_t gpa, offset, pages;	/* bytes, bytes, pages */
};

struct run {
	const char *backend, *contract;
	uint64_t rng;
	uint64_t op;			/* number of the operation running */
	int pool, vm;
	struct cfile files[MAX_FILES];
	struct cbind binds[MAX_BINDS];
	uint64_t exits, failures;
	unsigned int giants;		/* 1 GiB files created */
	uint8_t buf[MAX_SPAN * PAGE];
};

/* ------------------------------------------------------------- randomness */

/* splitmix64: tiny, and any seed (0 included) gives a good stream. */
static uint64_t rng_next(struct run *r)
{
	uint64_t z = (r->rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t below(struct run *r, uint64_t n)
{
	return n ? rng_next(r) % n : 0;
}

static bool chance(struct run *r, unsigned int percent)
{
	return below(r, 100) < percent;
}

/* A random run of 1..@max pages inside @pages pages. */
static void rand_range(struct run *r, uint64_t pages, uint64_t max,
		       uint64_t *start, uint64_t *n)
{
	*n = 1 + below(r, max < pages ? max : pages);
	*start = below(r, pages - *n + 1);
}

static void fill(struct run *r, size_t len)
{
	uint8_t v = (uint8_t)rng_next(r);

	for (size_t i = 0; i < len; i++)
		r->buf[i] = (uint8_t)(v + i);
}

/* --------------------------------------------------------------- failures */

__attribute__((format(printf, 2, 3)))
static void failure(struct run *r, const char *fmt, ...)
{
	va_list ap;

	if (++r->failures > MAX_REPORTED)
		return;
	fprintf(stderr, "gmem check: %s/%s op %llu: ", r->backend, r->contract,
		(unsigned long long)r->op);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* A call returned an error the workload does not expect. */
static void bad_return(struct run *r, const char *call, int64_t ret)
{
	failure(r, "%s returned %lld: %s", call, (long long)ret,
		gmem_last_error());
}

/* ------------------------------------------------------------ bookkeeping */

static int pick_file(struct run *r)
{
	unsigned int start = below(r, MAX_FILES);

	for (unsigned int i = 0; i < MAX_FILES; i++) {
		unsigned int k = (start + i) % MAX_FILES;

		if (r->files[k].fd >= 0)
			return k;
	}
	return -1;
}

/* The 1 GiB file alive, or -1. */
static int giant_file(struct run *r)
{
	for (int i = 0; i < MAX_FILES; i++)
		if (r->files[i].fd >= 0 && r->files[i].folio == GIANT_PAGES)
			return i;
	return -1;
}

/*
 * A bind at random; while a 1 GiB file lives, half the time its own, so its
 * folio is faulted in several places (huge entries) before a conversion or
 * a punch splits it.
 */
static int pick_bind(struct run *r)
{
	int giant = giant_file(r);
	unsigned int start = below(r, MAX_BINDS);

	if (giant >= 0 && chance(r, 50))
		for (int i = 0; i < MAX_BINDS; i++)
			if (r->binds[i].used && r->binds[i].file == giant)
				return i;

	for (unsigned int i = 0; i < MAX_BINDS; i++) {
		unsigned int k = (start + i) % MAX_BINDS;

		if (r->binds[k].used)
			return k;
	}
	return -1;
}

static int file_of_fd(struct run *r, int fd)
{
	for (int i = 0; i < MAX_FILES; i++)
		if (r->files[i].fd == fd)
			return i;
	return -1;
}

static bool gpa_taken(struct run *r, uint64_t gpa, uint64_t len)
{
	for (int i = 0; i < MAX_BINDS; i++) {
		struct cbind *b = &r->binds[i];

		if (b->used && gpa < b->gpa + b->pages * PAGE &&
		    b->gpa < gpa + len)
			return true;
	}
	return false;
}

/* First pinned page of [p, p+n), or -1. */
static int64_t first_pinned(struct cfile *f, uint64_t p, uint64_t n)
{
	for (uint64_t i = p; i < p + n; i++)
		if (f->pins[i])
			return i;
	return -1;
}

/* Whether any page of [p, p+n) is private, by the library's attribute map. */
static bool any_private(struct run *r, struct cfile *f, uint64_t p, uint64_t n)
{
	uint64_t off = p * PAGE, end = (p + n) * PAGE, attr, run_end;

	while (off < end) {
		int ret = gmem_get_attributes(f->fd, off, &attr, &run_end);

		if (ret) {
			bad_return(r, "gmem_get_attributes", ret);
			return false;
		}
		if (attr & GMEM_ATTR_PRIVATE)
			return true;
		off = run_end;
	}
	return false;
}

static void drop_bind(struct run *r, int bi)
{
	struct cbind *b = &r->binds[bi];
	struct cfile *f = &r->files[b->file];

	for (uint64_t i = 0; i < b->pages; i++)
		f->bound[b->offset / PAGE + i] = false;
	b->used = false;
}

/* ------------------------------------------------------------- operations */

/*
 * Convert [p, p+n) of file @fi to @attr. Going private must fail with -EAGAIN
 * exactly when this tool holds a pin in the range, at the first pinned page:
 * nothing else takes long-term references. A pin elsewhere in a huge folio
 * the range touches fails nothing: the folio splits around it, or stays
 * split where it would have merged.
 */
static void convert(struct run *r, int fi, uint64_t p, uint64_t n,
		    uint64_t attr)
{
	struct cfile *f = &r->files[fi];
	int64_t pinned = attr ? first_pinned(f, p, n) : -1;
	uint64_t eoff = NONE;
	int ret;

	ret = gmem_set_attributes(f->fd, p * PAGE, n * PAGE, attr, 0, &eoff);
	if (ret == -EAGAIN && pinned >= 0) {
		if (eoff != (uint64_t)pinned * PAGE)
			failure(r, "gmem_set_attributes: -EAGAIN at offset %#llx, first pinned page is %#llx",
				(unsigned long long)eoff,
				(unsigned long long)pinned * PAGE);
		return;
	}
	if (ret)
		bad_return(r, "gmem_set_attributes", ret);
	else if (pinned >= 0)
		failure(r, "gmem_set_attributes: made pinned page %#llx private",
			(unsigned long long)pinned * PAGE);
}

static bool op_create(struct run *r)
{
	uint64_t pages, flags = GMEM_FLAG_MMAP;
	struct cfile *f = NULL;
	void *map;
	int fd, ret;

	for (int i = 0; i < MAX_FILES && !f; i++)
		if (r->files[i].fd < 0)
			f = &r->files[i];
	if (!f)
		return false;
	pages = MIN_PAGES + below(r, MAX_PAGES - MIN_PAGES + 1);
	if (chance(r, HUGE_PERCENT)) {
		pages = HUGE_PAGES;
		flags |= GMEM_FLAG_HUGE_2M;
		if (chance(r, GIANT_PERCENT) && !r->giants++ &&
		    strcmp(r->contract, "legacy")) {
			pages = GIANT_PAGES;
			flags ^= GMEM_FLAG_HUGE_2M | GMEM_FLAG_HUGE_1G;
		}
	}
	if (chance(r, 33))
		flags |= GMEM_FLAG_INIT_SHARED;
	fd = gmem_create(r->vm, pages * PAGE, flags);
	if (fd < 0) {
		bad_return(r, "gmem_create", fd);
		return true;
	}
	ret = gmem_mmap(fd, 0, pages * PAGE, PROT_READ | PROT_WRITE,
			MAP_SHARED, &map);
	if (ret) {
		bad_return(r, "gmem_mmap", ret);
		gmem_close(fd);
		return true;
	}
	memset(f, 0, sizeof(*f));
	f->pins = calloc(pages, sizeof(*f->pins));
	f->bound = calloc(pages, sizeof(*f->bound));
	if (!f->pins || !f->bound) {
		fprintf(stderr, "gmem check: out of memory\n");
		exit(1);
	}
	f->fd = fd;
	f->pages = pages;
	f->folio = flags & GMEM_FLAG_HUGE_1G ? GIANT_PAGES :
		   flags & GMEM_FLAG_HUGE_2M ? HUGE_PAGES : 1;
	f->born = r->op;
	f->map = map;
	return true;
}

/* Bind an unbound run of a file to a free guest range, as a new memslot. */
static bool op_bind(struct run *r)
{
	int fi = pick_file(r), bi = -1;
	uint64_t p, n, want, gpa = 0, start;
	struct cfile *f;
	int ret, tries;

	for (int i = 0; i < MAX_BINDS && bi < 0; i++)
		if (!r->binds[i].used)
			bi = i;
	if (fi < 0 || bi < 0)
		return false;
	/* A 1 GiB file is bound as soon as it can be. */
	if (giant_file(r) >= 0 && !r->files[giant_file(r)].bound[0])
		fi = giant_file(r);
	f = &r->files[fi];
	start = below(r, f->pages);
	for (p = 0; p < f->pages && f->bound[(start + p) % f->pages]; p++)
		;
	if (p == f->pages)
		return false;
	p = (start + p) % f->pages;
	want = chance(r, 50) ? f->pages : 1 + below(r, f->pages);
	/* A huge file binds whole folios, at folio-aligned guest addresses. */
	if (f->folio > 1) {
		p = p / f->folio * f->folio;
		want = f->folio;
		if (f->bound[p])
			return false;
	}
	for (n = 1; n < want && p + n < f->pages && !f->bound[p + n]; n++)
		;
	if (n % f->folio)
		return false;
	for (tries = 0; tries < 8; tries++) {
		/* A 1 GiB folio binds at 1, 2 or 3 GiB, above the rest. */
		if (f->folio > GPA_PAGES)
			gpa = (1 + below(r, 3)) * f->folio * PAGE;
		else
			gpa = below(r, (GPA_PAGES - n) / f->folio + 1) * f->folio * PAGE;
		if (!gpa_taken(r, gpa, n * PAGE))
			break;
	}
	if (tries == 8)
		return false;
	ret = gmem_vm_bind(r->vm, bi, gpa, n * PAGE, f->fd, p * PAGE);
	if (ret) {
		bad_return(r, "gmem_vm_bind", ret);
		return true;
	}
	r->binds[bi] = (struct cbind){ true, fi, gpa, p * PAGE, n };
	for (uint64_t i = p; i < p + n; i++)
		f->bound[i] = true;
	return true;
}

static bool op_unbind(struct run *r)
{
	int bi = pick_bind(r), ret;

	if (bi < 0)
		return false;
	ret = gmem_vm_unbind(r->vm, bi);
	if (ret)
		bad_return(r, "gmem_vm_unbind", ret);
	else
		drop_bind(r, bi);
	return true;
}

/*
 * What a VMM does on KVM_EXIT_MEMORY_FAULT: look the gpa up and convert the
 * page to what the guest asked for.
 */
static void answer_exit(struct run *r, const struct gmem_exit *exit)
{
	uint64_t off, attr = 0;
	int fd, fi, ret;

	ret = gmem_vm_translate(r->vm, exit->gpa, &fd, &off, NULL);
	if (ret) {
		bad_return(r, "gmem_vm_translate", ret);
		return;
	}
	fi = file_of_fd(r, fd);
	if (fi < 0) {
		failure(r, "gmem_vm_translate: gpa %#llx is in fd %d, not a file of this VM",
			(unsigned long long)exit->gpa, fd);
		return;
	}
	if (exit->flags & GMEM_MEMORY_EXIT_FLAG_PRIVATE)
		attr = GMEM_ATTR_PRIVATE;
	convert(r, fi, off / PAGE, 1, attr);
}

/* A guest access; 1 is a memory-fault exit, which must name a page it touched. */
static int guest_access(struct run *r, uint64_t gpa, size_t len,
			unsigned int flags, struct gmem_exit *exit)
{
	int ret = gmem_vm_access(r->vm, gpa, r->buf, len, flags, exit);

	if (ret < 0) {
		bad_return(r, "gmem_vm_access", ret);
		return ret;
	}
	if (ret == 1) {
		r->exits++;
		if (exit->reason != GMEM_EXIT_MEMORY_FAULT ||
		    exit->size != PAGE || exit->gpa % PAGE ||
		    exit->gpa + PAGE <= gpa || exit->gpa >= gpa + len)
			failure(r, "gmem_vm_access(%#llx, %zu): exit reason %u gpa %#llx size %#llx",
				(unsigned long long)gpa, len, exit->reason,
				(unsigned long long)exit->gpa,
				(unsigned long long)exit->size);
	}
	return ret;
}

static bool op_access(struct run *r)
{
	int bi = pick_bind(r);
	unsigned int flags = 0;
	struct gmem_exit exit;
	uint64_t p, n, gpa, off;
	size_t len;

	if (bi < 0)
		return false;
	rand_range(r, r->binds[bi].pages, MAX_SPAN, &p, &n);
	off = below(r, PAGE);
	len = 1 + below(r, n * PAGE - off);
	gpa = r->binds[bi].gpa + p * PAGE + off;
	if (chance(r, 50))
		flags |= GMEM_FAULT_PRIVATE;
	if (chance(r, 50)) {
		flags |= GMEM_FAULT_WRITE;
		fill(r, len);
	}
	if (guest_access(r, gpa, len, flags, &exit) != 1 || chance(r, 50))
		return true;
	answer_exit(r, &exit);
	guest_access(r, gpa, len, flags, &exit);
	return true;
}

static bool op_convert(struct run *r)
{
	int fi = pick_file(r);
	uint64_t p, n, attr;

	if (fi < 0)
		return false;
	rand_range(r, r->files[fi].pages, 16, &p, &n);
	attr = chance(r, 50) ? GMEM_ATTR_PRIVATE : 0;
	convert(r, fi, p, n, attr);
	return true;
}

/*
 * The first shared page at or after a random one (wrapping), and the end of
 * its shared run in *@end (pages). Returns false if every page is private.
 */
static bool find_shared(struct run *r, struct cfile *f, uint64_t *page,
			uint64_t *end)
{
	uint64_t p = below(r, f->pages), attr, run_end;

	for (uint64_t hops = 0; hops < f->pages; hops++) {
		int ret = gmem_get_attributes(f->fd, p * PAGE, &attr, &run_end);

		if (ret) {
			bad_return(r, "gmem_get_attributes", ret);
			return false;
		}
		if (!(attr & GMEM_ATTR_PRIVATE)) {
			*page = p;
			*end = run_end / PAGE;
			return true;
		}
		p = run_end / PAGE % f->pages;
	}
	return false;
}

/*
 * Pin a range: mostly inside a shared run (a device's buffer), sometimes
 * anywhere, where a private page makes it fail with -EFAULT.
 */
static bool op_pin(struct run *r)
{
	int fi = pick_file(r), ret;
	uint64_t p, n, end;
	struct cfile *f;

	if (fi < 0)
		return false;
	f = &r->files[fi];
	if (chance(r, 75)) {
		if (!find_shared(r, f, &p, &end))
			return false;
		n = 1 + below(r, end - p < 8 ? end - p : 8);
	} else {
		rand_range(r, f->pages, 8, &p, &n);
	}
	for (uint64_t i = p; i < p + n; i++)
		if (f->pins[i] >= MAX_PINS)
			return false;
	ret = gmem_pin(f->fd, p * PAGE, n * PAGE);
	if (!ret) {
		for (uint64_t i = p; i < p + n; i++)
			f->pins[i]++;
	} else if (ret != -EFAULT) {
		bad_return(r, "gmem_pin", ret);
	} else if (!any_private(r, f, p, n)) {
		failure(r, "gmem_pin(%#llx, %#llx): -EFAULT on a shared range",
			(unsigned long long)(p * PAGE),
			(unsigned long long)(n * PAGE));
	}
	return true;
}

static bool op_unpin(struct run *r)
{
	int fi = pick_file(r), ret;
	uint64_t p, n, want, start;
	struct cfile *f;

	if (fi < 0)
		return false;
	f = &r->files[fi];
	start = below(r, f->pages);
	for (p = 0; p < f->pages && !f->pins[(start + p) % f->pages]; p++)
		;
	if (p == f->pages)
		return false;
	p = (start + p) % f->pages;
	want = 1 + below(r, 8);
	for (n = 1; n < want && p + n < f->pages && f->pins[p + n]; n++)
		;
	ret = gmem_unpin(f->fd, p * PAGE, n * PAGE);
	if (ret) {
		bad_return(r, "gmem_unpin", ret);
		return true;
	}
	for (uint64_t i = p; i < p + n; i++)
		f->pins[i]--;
	return true;
}

/* Punch a hole (mostly) or allocate a range. */
static bool op_punch(struct run *r)
{
	int fi = pick_file(r), mode = GMEM_FALLOC_KEEP_SIZE, ret;
	uint64_t p, n;

	if (fi < 0)
		return false;
	rand_range(r, r->files[fi].pages, 32, &p, &n);
	if (chance(r, 80))
		mode |= GMEM_FALLOC_PUNCH_HOLE;
	ret = gmem_fallocate(r->files[fi].fd, mode, p * PAGE, n * PAGE);
	if (ret)
		bad_return(r, "gmem_fallocate", ret);
	return true;
}

/*
 * Load launch content into bound pages, from a buffer or in place. Pages the
 * arch already took (-EEXIST) or that are not private (-EINVAL) stop it.
 */
static bool op_populate(struct run *r)
{
	int bi = pick_bind(r);
	const void *src = NULL;
	uint64_t p, n;
	int64_t ret;

	if (bi < 0)
		return false;
	rand_range(r, r->binds[bi].pages, MAX_SPAN, &p, &n);
	if (chance(r, 50)) {
		fill(r, n * PAGE);
		src = r->buf;
	}
	ret = gmem_vm_populate(r->vm, r->binds[bi].gpa + p * PAGE, src,
			       n * PAGE, 0);
	if ((ret < 0 && ret != -EEXIST && ret != -EINVAL) ||
	    ret == 0 || ret > (int64_t)n)
		bad_return(r, "gmem_vm_populate", ret);
	return true;
}

/*
 * Host access through the mapping. Only pages the attribute map calls shared
 * are touched: a private page is fenced and would fault. If a shared page
 * faults anyway, the probe says so and it becomes a tool failure. Returns
 * the signal a host access raised, or 0.
 */
static int host_touch(struct run *r, uint8_t *p, size_t len, bool write)
{
	return write ? probe_copy(p, r->buf, len, NULL) : probe_copy(r->buf, p, len, NULL);
}

static bool op_host(struct run *r)
{
	int fi = pick_file(r), sig;
	uint64_t p, end, n, off;
	struct cfile *f;
	size_t len;
	bool write;

	if (fi < 0)
		return false;
	f = &r->files[fi];
	if (!find_shared(r, f, &p, &end))
		return false;
	n = end - p < MAX_SPAN ? end - p : MAX_SPAN;
	off = below(r, PAGE);
	len = 1 + below(r, n * PAGE - off);
	write = chance(r, 50);
	if (write)
		fill(r, len);
	sig = host_touch(r, f->map + p * PAGE + off, len, write);
	if (sig)
		failure(r, "host %s of shared offset %#llx raised signal %d",
			write ? "write" : "read",
			(unsigned long long)(p * PAGE + off), sig);
	return true;
}

/*
 * Release a file: sometimes after deleting its memslots, sometimes with them
 * in place, which the release must remove itself.
 */
static void release(struct run *r, int fi)
{
	struct cfile *f = &r->files[fi];
	bool unbind_first = chance(r, 50), close_first = chance(r, 50);
	int ret;

	for (int i = 0; i < MAX_BINDS && unbind_first; i++) {
		if (!r->binds[i].used || r->binds[i].file != fi)
			continue;
		ret = gmem_vm_unbind(r->vm, i);
		if (ret)
			bad_return(r, "gmem_vm_unbind", ret);
		else
			drop_bind(r, i);
	}
	if (close_first && (ret = gmem_close(f->fd)))
		bad_return(r, "gmem_close", ret);
	ret = gmem_munmap(f->map, f->pages * PAGE);
	if (ret)
		bad_return(r, "gmem_munmap", ret);
	if (!close_first && (ret = gmem_close(f->fd)))
		bad_return(r, "gmem_close", ret);
	for (int i = 0; i < MAX_BINDS; i++) {
		if (!r->binds[i].used || r->binds[i].file != fi)
			continue;
		ret = gmem_vm_translate(r->vm, r->binds[i].gpa, NULL, NULL,
					NULL);
		if (ret != -EFAULT)
			failure(r, "gmem_vm_translate: gpa %#llx of a released file gives %d, not -EFAULT",
				(unsigned long long)r->binds[i].gpa, ret);
		drop_bind(r, i);
	}
	free(f->pins);
	free(f->bound);
	f->fd = -1;
}

static bool op_release(struct run *r)
{
	int fi = pick_file(r);

	/* A 1 GiB file lives its GIANT_LIFE operations out (step). */
	if (fi < 0 || fi == giant_file(r))
		return false;
	release(r, fi);
	return true;
}

struct op {
	unsigned int weight;
	bool (*fn)(struct run *r);	/* false: not possible now, pick again */
};

static const struct op op_table[] = {
	{ 3, op_create },
	{ 5, op_bind },
	{ 30, op_access },
	{ 14, op_convert },
	{ 6, op_pin },
	{ 6, op_unpin },
	{ 6, op_punch },
	{ 8, op_populate },
	{ 12, op_host },
	{ 3, op_unbind },
	{ 2, op_release },
};

static void step(struct run *r)
{
	int giant = giant_file(r);
	unsigned int total = 0;

	if (giant >= 0 && r->op - r->files[giant].born >= GIANT_LIFE) {
		release(r, giant);
		return;
	}

	for (size_t i = 0; i < COUNT(op_table); i++)
		total += op_table[i].weight;
	/* Some operation is always possible (create, or convert), so this ends. */
	for (;;) {
		unsigned int w = below(r, total);
		size_t i = 0;

		while (w >= op_table[i].weight)
			w -= op_table[i++].weight;
		if (op_table[i].fn(r))
			return;
	}
}

/* -------------------------------------------------------------- one run */

static void setup_failed(struct check_result *res, const char *call)
{
	res->setup_failed = true;
	snprintf(res->setup_error, sizeof(res->setup_error), "%s: %s", call,
		 gmem_last_error());
}

static void run_one(struct run *r, uint64_t seed, uint64_t ops,
		    struct check_result *res)
{
	uint64_t flags = GMEM_VM_CHECK;
	int64_t n;

	if (!strcmp(r->contract, "legacy"))
		flags |= GMEM_VM_LEGACY_CONTRACT;
	r->rng = seed;
	for (int i = 0; i < MAX_FILES; i++)
		r->files[i].fd = -1;
	r->pool = gmem_pool_create(POOL_SIZE);
	if (r->pool < 0) {
		setup_failed(res, "gmem_pool_create");
		return;
	}
	r->vm = gmem_vm_create(r->pool, r->backend, flags);
	if (r->vm < 0) {
		setup_failed(res, "gmem_vm_create");
		gmem_pool_close(r->pool);
		return;
	}
	for (r->op = 0; r->op < ops; r->op++)
		step(r);
	/* Teardown is part of the run: release walks the free path. */
	for (int i = 0; i < MAX_FILES; i++)
		if (r->files[i].fd >= 0)
			release(r, i);
	n = gmem_vm_violations(r->vm, &res->first, 1);
	if (n < 0) {
		setup_failed(res, "gmem_vm_violations");
	} else {
		res->violations = n;
		res->first.op[sizeof(res->first.op) - 1] = 0;
		res->first.rule[sizeof(res->first.rule) - 1] = 0;
	}
	gmem_vm_close(r->vm);
	gmem_pool_close(r->pool);
	res->exits = r->exits;
	res->failures = r->failures;
	if (r->failures > MAX_REPORTED)
		fprintf(stderr, "gmem check: %s/%s: %llu tool failures in all\n",
			r->backend, r->contract,
			(unsigned long long)r->failures);
}

/*
 * Run @ops operations of the workload seeded with @seed on a fresh pool and
 * VM of @backend under @contract ("split" or "legacy"), then release
 * everything and read what the checker saw.
 */
void check_workload(const char *backend, const char *contract, uint64_t seed,
		    uint64_t ops, struct check_result *res)
{
	struct run *r = calloc(1, sizeof(*r));

	memset(res, 0, sizeof(*res));
	res->backend = backend;
	res->contract = contract;
	if (!r) {
		res->setup_failed = true;
		snprintf(res->setup_error, sizeof(res->setup_error),
			 "out of memory");
		return;
	}
	r->backend = backend;
	r->contract = contract;
	run_one(r, seed, ops, res);
	free(r);
}
