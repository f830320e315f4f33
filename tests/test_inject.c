// SPDX-License-Identifier: MIT
/*
 * A failure at every allocation point (src/inject.h). One workload (pool,
 * VM, a 4 KiB-folio file and a 2 MiB-folio file, bindings, host mappings, a
 * view, faults, conversions both ways with pins, a split and a merge,
 * populate, punch, allocate, unmap, unbind, close, destroy) runs on each
 * backend once to count the points it crosses, then once per point with
 * that point failing. A call that fails must return -ENOMEM or -EMFILE and
 * leave everything as it was: attributes, folios, pins, contents, the arch's
 * frame states, stage-2, bindings, host mappings and pool counts (a snapshot
 * before and after). A call that absorbs the failure (succeeds anyway) must
 * leave what the uninjected run left. Either way the call is then repeated
 * and the rest of the workload must give the uninjected run's results; the
 * ASan build's leak check at exit finds what a failed path leaked. A second
 * test fails each point with probability 0.05 over a few thousand calls.
 *
 * The workload runs warm (after one unarmed pass): points a process crosses
 * once in its life (the fork shootdown table, the first chunk of mapping
 * records) are then behind it, so the Nth point is the same in every pass.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "harness.h"
#include "file.h"	/* white box: the file's window in the pool */
#include "handle.h"
#include "inject.h"
#include "pin.h"

#define PG		GMEM_PAGE_SIZE
#define MiB		(1ULL << 20)
#define SMALL_PAGES	16
#define HUGE_PAGES	512
#define SMALL_GPA	(1 * MiB)
#define HUGE_GPA	(4 * MiB)
#define NSTEPS_MAX	64
#define PRIV		GMEM_ATTR_PRIVATE

/* Every backend, and one VM in check mode: the checker runs after every call. */
static const struct config {
	const char *arch;
	uint64_t flags;
	const char *name;
} configs[] = {
	{ "sw", 0, "sw" }, { "snp", 0, "snp" }, { "tdx", 0, "tdx" },
	{ "pkvm", 0, "pkvm" }, { "snp", GMEM_VM_CHECK, "snp+check" },
};
#define NCONFIGS	(sizeof(configs) / sizeof(configs[0]))

/* What the workload holds; a handle is -1 and a pointer NULL until made. */
struct ctx {
	const struct config *cfg;
	int pool, vm, fd[3];	/* the small, the huge and the giant file */
	uint8_t *map[2];
	void *view[2];
	bool hole[SMALL_PAGES];	/* pages of map[0] gmem_munmap took out */
	bool written;		/* host_write ran: every page was touched */
};

/*
 * The giant file (1 GiB folios) is created and closed at once, for its
 * window: aligned to 1 GiB, it splits the pool's free extent in three. The
 * snapshot sees it in the pool's counts.
 */
static const uint64_t file_pages[3] = { SMALL_PAGES, HUGE_PAGES, 1 << 18 };
static const uint64_t file_flags[3] = { 0, GMEM_FLAG_HUGE_2M, GMEM_FLAG_HUGE_1G };
static const uint64_t file_gpa[2] = { SMALL_GPA, HUGE_GPA };
/* The small file's mapping runs two pages past its end. */
static const uint64_t map_pages[2] = { SMALL_PAGES + 2, HUGE_PAGES };

/* ------------------------------------------------------------- snapshot */

/* One page, every field a number, so a table names them for the diff. */
struct page_state {
	uint64_t attr, attr_end, present, order, pins, pfn, content, frame;
	uint64_t s2, s2_pfn, s2_private, s2_level;
	uint64_t mapped, access;	/* gmem_mapping_find; 0 or the probe's signal */
};

static const struct {
	const char *what;
	size_t offset;
	bool same_run;		/* comparable only within one pass */
} page_fields[] = {
#define FIELD(f, what)	{ what, offsetof(struct page_state, f), false }
	FIELD(attr, "attribute"), FIELD(attr_end, "attribute run end"),
	FIELD(present, "folio present"), FIELD(order, "folio order"),
	FIELD(pins, "pins"), FIELD(pfn, "frame"), FIELD(content, "content"),
	{ "arch frame state", offsetof(struct page_state, frame), true },
	FIELD(s2, "stage-2 present"), FIELD(s2_pfn, "stage-2 pfn"),
	FIELD(s2_private, "stage-2 private"), FIELD(s2_level, "stage-2 level"),
	FIELD(mapped, "host mapping"), FIELD(access, "host access (signal)"),
#undef FIELD
};

struct snap {
	bool pool, vm;
	int64_t violations;
	struct gmem_pool_stats st;
	bool file[2];
	int64_t ranges[2], size[2];
	int bound[2], bound_fd[2];
	uint64_t bound_off[2], bound_len[2];
	struct page_state page[2][HUGE_PAGES];
};

static uint64_t hash(uint64_t h, uint64_t v)
{
	return (h ^ v) * 0x100000001b3ULL;
}

/*
 * Sixteen words of each page: enough to tell a page zeroed or rewritten.
 * Private frames too: frame_bytes() reads past ASan's poison.
 */
static uint64_t page_content(int pool, uint64_t pfn)
{
	const uint8_t *bytes = frame_bytes(pool, pfn);
	uint64_t h = 0xcbf29ce484222325ULL, w;

	ASSERT_TRUE(bytes);
	for (size_t i = 0; i < PG / 8; i += 32) {
		memcpy(&w, bytes + i * 8, 8);
		h = hash(h, w);
	}
	return h;
}

static uint64_t frame_state(int pool, uint64_t pfn)
{
	char buf[128];
	uint64_t h = 0xcbf29ce484222325ULL;

	ASSERT_GE(gmem_pool_frame_state(pool, pfn, buf, sizeof(buf)), 0);
	for (char *s = buf; *s; s++)
		h = hash(h, (uint8_t)*s);
	return h;
}

/*
 * The page cache as gmem_folio_info() reports it, for the whole file at
 * once: it records the pages the host touched as folios first, as that
 * call does page by page (two lseeks each: most of the test's time).
 */
static void snap_file(const struct ctx *c, struct snap *s, int f)
{
	struct gmem_file *file = (struct gmem_file *)obj_peek(c->fd[f]);

	s->ranges[f] = gmem_attribute_ranges(c->fd[f]);
	s->size[f] = gmem_size(c->fd[f]);
	brlock_read_lock(&file->invalidate_lock);
	folio_sync_host_touched(file, 0, file->npages);
	for (uint64_t i = 0; i < file_pages[f]; i++) {
		struct page_state *p = &s->page[f][i];

		ASSERT_EQ(gmem_get_attributes(c->fd[f], i * PG, &p->attr,
					      &p->attr_end), 0);
		p->present = folio_present(file, i);
		p->order = p->present && huge_whole(file, i) ? file->order : 0;
		p->pins = pin_count(file, i);
		p->pfn = file->base_pfn + i;
		/* Only present folios are read: a read of a hole would fill it. */
		if (p->present)
			p->content = page_content(c->pool, p->pfn);
		p->frame = frame_state(c->pool, p->pfn);
	}
	brlock_read_unlock(&file->invalidate_lock);
}

static void snap_mapping(const struct ctx *c, struct snap *s, int f)
{
	for (uint64_t i = 0; i < file_pages[f]; i++) {
		struct page_state *p = &s->page[f][i];
		uint8_t *addr = c->map[f] + i * PG;
		int fd;
		uint64_t off;

		if (f == 0 && c->hole[i])
			continue;
		p->mapped = (uint64_t)gmem_mapping_find(addr, &fd, &off);
		if (p->mapped == 1)
			ASSERT_TRUE(fd == c->fd[f] && off == i * PG);
		/* Of the huge mapping, the pages the workload converts alone, and the ends. */
		if (f == 1 && i > 9 && i != HUGE_PAGES - 1)
			continue;
		/* A read of a page the host never touched would make it present. */
		if (!c->written)
			continue;
		p->access = (uint64_t)probe_read(addr, NULL);
	}
}

static void snap_stage2(const struct ctx *c, struct snap *s, int f)
{
	int fd;

	s->bound[f] = gmem_vm_translate(c->vm, file_gpa[f], &fd,
					&s->bound_off[f], &s->bound_len[f]);
	s->bound_fd[f] = s->bound[f] ? -1 : fd;
	for (uint64_t i = 0; i < file_pages[f]; i++) {
		struct page_state *p = &s->page[f][i];
		uint64_t gpa = file_gpa[f] + i * PG;
		int private = 0;

		int ret = gmem_vm_stage2(c->vm, gpa, &p->s2_pfn, &private);

		ASSERT_GE(ret, 0);
		p->s2 = (uint64_t)ret;
		p->s2_private = (uint64_t)private;
		if (ret)
			p->s2_level = (uint64_t)gmem_vm_stage2_level(c->vm, gpa);
	}
}

static void snap_take(const struct ctx *c, struct snap *s)
{
	memset(s, 0, sizeof(*s));
	s->pool = c->pool >= 0;
	s->vm = c->vm >= 0;
	for (int f = 0; f < 2; f++) {
		s->file[f] = c->fd[f] >= 0;
		if (s->file[f])
			snap_file(c, s, f);
		if (c->map[f])
			snap_mapping(c, s, f);
		if (s->vm)
			snap_stage2(c, s, f);
	}
	if (s->vm)
		s->violations = gmem_vm_violations(c->vm, NULL, 0);
	/* Last: gmem_folio_info recorded the pages the host touched as folios. */
	if (s->pool)
		ASSERT_EQ(gmem_pool_stats(c->pool, &s->st), 0);
}

/*
 * Print what differs and return how many fields do. @same_run: both from
 * one pass, so the arch's frame states (which name the VM) compare too.
 */
static int snap_diff(const struct snap *a, const struct snap *b, bool same_run)
{
	int n = 0;

#define DIFF(field, what) do {						\
	if (a->field != b->field) {					\
		if (n++ < 8)						\
			printf("#     %s: %lld, now %lld\n", what,	\
			       (long long)a->field, (long long)b->field); \
	}								\
} while (0)
	DIFF(pool, "pool exists");
	DIFF(vm, "vm exists");
	DIFF(violations, "check-mode violations");
	DIFF(st.frames_in_use, "pool frames in use");
	DIFF(st.frames_reserved, "pool frames reserved");
	DIFF(st.files, "pool files");
	DIFF(st.metadata_bytes, "pool metadata bytes");
	for (int f = 0; f < 2; f++) {
		DIFF(file[f], "file exists");
		DIFF(ranges[f], "attribute ranges");
		DIFF(size[f], "file size");
		DIFF(bound[f], "binding");
		DIFF(bound_fd[f], "binding's file");
		DIFF(bound_off[f], "binding's offset");
		DIFF(bound_len[f], "binding's length");
		for (uint64_t i = 0; i < file_pages[f]; i++) {
			const char *pa = (const char *)&a->page[f][i];
			const char *pb = (const char *)&b->page[f][i];

			for (size_t k = 0; k < sizeof(page_fields) / sizeof(page_fields[0]); k++) {
				uint64_t va, vb;

				if (page_fields[k].same_run && !same_run)
					continue;
				memcpy(&va, pa + page_fields[k].offset, sizeof(va));
				memcpy(&vb, pb + page_fields[k].offset, sizeof(vb));
				if (va != vb && n++ < 8)
					printf("#     file %d page %llu: %s %#llx, now %#llx\n",
					       f, (unsigned long long)i,
					       page_fields[k].what,
					       (unsigned long long)va,
					       (unsigned long long)vb);
			}
		}
	}
#undef DIFF
	return n;
}

/* What the checker saw, when it saw something. */
static void print_violations(const struct ctx *c)
{
	struct gmem_violation v[4];
	int64_t n = c->vm >= 0 ? gmem_vm_violations(c->vm, v, 4) : 0;

	for (int64_t i = 0; i < n && i < 4; i++)
		printf("#     violation of invariant %d after %s at offset %#llx: %s\n",
		       v[i].invariant, v[i].op, (unsigned long long)v[i].offset,
		       v[i].rule);
}

/* ------------------------------------------------------------- workload */

static int64_t pool_create(struct ctx *c, int f)
{
	int ret = gmem_pool_create(4ULL << 30);

	if (ret >= 0)
		c->pool = ret;
	return ret;
}

static int64_t vm_create(struct ctx *c, int f)
{
	int ret = gmem_vm_create(c->pool, c->cfg->arch, c->cfg->flags);

	if (ret >= 0)
		c->vm = ret;
	return ret;
}

static int64_t create_file(struct ctx *c, int f)
{
	int ret = gmem_create(c->vm, file_pages[f] * PG, GMEM_FLAG_MMAP |
			      GMEM_FLAG_INIT_SHARED | file_flags[f]);

	if (ret >= 0)
		c->fd[f] = ret;
	return ret;
}

static int64_t bind(struct ctx *c, int f)
{
	return gmem_vm_bind(c->vm, f, file_gpa[f], file_pages[f] * PG, c->fd[f], 0);
}

static int64_t map_file(struct ctx *c, int f)
{
	void *addr;
	int ret = gmem_mmap(c->fd[f], 0, map_pages[f] * PG,
			    PROT_READ | PROT_WRITE, MAP_SHARED, &addr);

	if (!ret)
		c->map[f] = addr;
	return ret;
}

static int64_t view_of(struct ctx *c, int f, uint64_t attributes)
{
	void *addr;
	int ret = gmem_vm_view_mmap(c->vm, f, attributes, &addr);

	if (!ret)
		c->view[f] = addr;
	return ret;
}

static int64_t view_mmap(struct ctx *c, int f)
{
	return view_of(c, 0, GMEM_VIEW_ANY);
}

/* Stage-2 maps part of it already: those pages open at once. */
static int64_t view_mapped(struct ctx *c, int f)
{
	return view_of(c, 1, 0);
}

/* The host writes every page of both files (not a gmem call). */
static int64_t host_write(struct ctx *c, int unused)
{
	for (int f = 0; f < 2; f++)
		for (uint64_t i = 0; i < file_pages[f]; i++)
			for (int b = 0; b < 16; b++)
				c->map[f][i * PG + b * 256] = (uint8_t)(f * 31 + i + b + 1);
	c->written = true;
	return 0;
}

static int64_t fault(struct ctx *c, int f, uint64_t page, unsigned int flags)
{
	struct gmem_exit exit;
	uint64_t pfn;

	return gmem_vm_fault(c->vm, file_gpa[f] + page * PG, flags, &pfn, &exit);
}

static int64_t guest_access(struct ctx *c, int f, uint64_t page, unsigned int flags)
{
	struct gmem_exit exit;
	uint8_t buf[8] = { 0x5a, 0xa5, 1, 2, 3, 4, 5, (uint8_t)page };

	return gmem_vm_access(c->vm, file_gpa[f] + page * PG + 64, buf,
			      sizeof(buf), flags, &exit);
}

static int64_t fault_shared(struct ctx *c, int f)
{
	return fault(c, 0, 1, GMEM_FAULT_WRITE);
}

static int64_t write_shared(struct ctx *c, int f)
{
	return guest_access(c, 0, 2, GMEM_FAULT_WRITE);
}

static int64_t fault_huge_shared(struct ctx *c, int f)
{
	return fault(c, 1, 3, GMEM_FAULT_WRITE);
}

static int64_t convert(struct ctx *c, int f, uint64_t page, uint64_t n,
		       uint64_t attr)
{
	uint64_t err;

	return gmem_set_attributes(c->fd[f], page * PG, n * PG, attr, 0, &err);
}

static int64_t pin(struct ctx *c, int f)
{
	return gmem_pin(c->fd[0], 2 * PG, 2 * PG);
}

static int64_t to_private_pinned(struct ctx *c, int f)
{
	return convert(c, 0, 0, 4, PRIV);		/* -EAGAIN: pages 2, 3 */
}

static int64_t to_private(struct ctx *c, int f)
{
	return convert(c, 0, 4, 4, PRIV);
}

static int64_t fault_private(struct ctx *c, int f)
{
	return fault(c, 0, 4, GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE);
}

static int64_t write_private(struct ctx *c, int f)
{
	return guest_access(c, 0, 5, GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE);
}

static int64_t fault_exit(struct ctx *c, int f)
{
	return fault(c, 0, 6, 0);		/* private page, shared access */
}

static int64_t huge_to_private(struct ctx *c, int f)
{
	uint64_t err;

	return gmem_vm_set_attributes(c->vm, HUGE_GPA, HUGE_PAGES * PG, PRIV, 0,
				      &err);
}

static int64_t fault_huge_private(struct ctx *c, int f)
{
	return fault(c, 1, 7, GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE);
}

static int64_t huge_split(struct ctx *c, int f)
{
	return convert(c, 1, 8, 1, 0);
}

static int64_t write_split(struct ctx *c, int f)
{
	return guest_access(c, 1, 8, GMEM_FAULT_WRITE);
}

static int64_t huge_merge(struct ctx *c, int f)
{
	return convert(c, 1, 8, 1, PRIV);
}

static int64_t fault_merged(struct ctx *c, int f)
{
	return fault(c, 1, 9, GMEM_FAULT_PRIVATE);
}

static int64_t unpin(struct ctx *c, int f)
{
	return gmem_unpin(c->fd[0], 2 * PG, 2 * PG);
}

static int64_t to_shared(struct ctx *c, int f)
{
	return convert(c, 0, 4, 4, 0);
}

static int64_t to_private_again(struct ctx *c, int f)
{
	return convert(c, 0, 0, 4, PRIV);
}

static int64_t to_private_for_populate(struct ctx *c, int f)
{
	return convert(c, 0, 8, 2, PRIV);
}

static int64_t populate(struct ctx *c, int f)
{
	static uint8_t src[PG] = { 0x11, 0x22, 0x33 };

	return gmem_vm_populate(c->vm, SMALL_GPA + 8 * PG, src, PG, 0);
}

static int64_t punch(struct ctx *c, int f)
{
	return gmem_fallocate(c->fd[0], GMEM_FALLOC_PUNCH_HOLE |
			      GMEM_FALLOC_KEEP_SIZE, 0, 2 * PG);
}

/* Pages 0, 1 are the holes punch left; 12..15 the host touched. */
static int64_t allocate(struct ctx *c, int f)
{
	return gmem_fallocate(c->fd[0], GMEM_FALLOC_KEEP_SIZE, 0, 16 * PG);
}

static int64_t punch_huge(struct ctx *c, int f)
{
	return gmem_fallocate(c->fd[1], GMEM_FALLOC_PUNCH_HOLE |
			      GMEM_FALLOC_KEEP_SIZE, 16 * PG, 8 * PG);
}

static int64_t munmap_middle(struct ctx *c, int f)
{
	int ret = gmem_munmap(c->map[0] + 10 * PG, 2 * PG);

	if (!ret)
		c->hole[10] = c->hole[11] = true;
	return ret;
}

static int64_t mmap_fixed(struct ctx *c, int f)
{
	void *addr = c->map[0] + 10 * PG;
	int ret = gmem_mmap(c->fd[0], 10 * PG, 2 * PG, PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_FIXED, &addr);

	if (!ret)
		c->hole[10] = c->hole[11] = false;
	return ret;
}

/* Over pages of the mapping: the old ones are cut out first. */
static int64_t mmap_fixed_over(struct ctx *c, int f)
{
	void *addr = c->map[0] + 12 * PG;

	return gmem_mmap(c->fd[0], 12 * PG, 2 * PG, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED, &addr);
}

static int64_t unbind_small(struct ctx *c, int f)
{
	return gmem_vm_unbind(c->vm, 0);
}

static int64_t munmap_file(struct ctx *c, int f)
{
	int ret = gmem_munmap(c->map[f], map_pages[f] * PG);

	if (!ret)
		c->map[f] = NULL;
	return ret;
}

/* The huge file is still bound when it closes: its release unbinds it. */
static int64_t close_file(struct ctx *c, int f)
{
	int ret = gmem_close(c->fd[f]);

	if (!ret)
		c->fd[f] = -1;
	return ret;
}

static int64_t vm_close(struct ctx *c, int f)
{
	int ret = gmem_vm_close(c->vm);

	if (!ret)
		c->vm = -1;
	return ret;
}

static int64_t pool_close(struct ctx *c, int f)
{
	int ret = gmem_pool_close(c->pool);

	if (!ret)
		c->pool = -1;
	return ret;
}

struct step {
	const char *name;
	int64_t (*run)(struct ctx *c, int f);
	int f;			/* the file it works on, where it takes one */
	bool handle;		/* returns a new handle: any value >= 0 will do */
	int64_t want;		/* otherwise the result, uninjected */
	int may_unmap;		/* a MAP_FIXED gmem_mmap at this page of the small
				 * file: failing, it may leave [page, +2) unmapped,
				 * as documented (and as mmap(2)) */
};

#define STEP(fn)		{ #fn, fn, 0, false, 0, -1 }
#define HANDLE_STEP(fn)		{ #fn, fn, 0, true, 0, -1 }
#define FILE_STEP(name, fn, f)	{ name, fn, f, false, 0, -1 }
#define WANT_STEP(fn, want)	{ #fn, fn, 0, false, want, -1 }
#define FIXED_STEP(fn, page)	{ #fn, fn, 0, false, 0, page }

static const struct step steps[] = {
	HANDLE_STEP(pool_create), HANDLE_STEP(vm_create),
	{ "create_small", create_file, 0, true, 0, -1 },
	{ "create_huge", create_file, 1, true, 0, -1 },
	{ "create_giant", create_file, 2, true, 0, -1 },
	FILE_STEP("close_giant", close_file, 2),
	FILE_STEP("bind_small", bind, 0), FILE_STEP("bind_huge", bind, 1),
	FILE_STEP("mmap_small", map_file, 0), FILE_STEP("mmap_huge", map_file, 1),
	STEP(view_mmap), STEP(host_write),
	STEP(fault_shared), STEP(write_shared), STEP(fault_huge_shared),
	STEP(view_mapped),
	STEP(pin), WANT_STEP(to_private_pinned, -EAGAIN),
	STEP(to_private), STEP(fault_private), STEP(write_private),
	WANT_STEP(fault_exit, GMEM_FAULT_EXIT),
	STEP(huge_to_private), STEP(fault_huge_private),
	STEP(huge_split), STEP(write_split), STEP(huge_merge),
	FILE_STEP("fault_merged", fault_merged, 1),
	STEP(unpin), STEP(to_shared), STEP(to_private_again),
	STEP(to_private_for_populate), WANT_STEP(populate, 1),
	STEP(punch), STEP(allocate), STEP(punch_huge),
	STEP(munmap_middle), FIXED_STEP(mmap_fixed, 10),
	FIXED_STEP(mmap_fixed_over, 12),
	STEP(unbind_small), FILE_STEP("close_small", close_file, 0),
	FILE_STEP("munmap_small", munmap_file, 0),
	FILE_STEP("munmap_huge", munmap_file, 1),
	FILE_STEP("close_huge", close_file, 1), STEP(vm_close), STEP(pool_close),
};
#define NSTEPS	(sizeof(steps) / sizeof(steps[0]))

static struct ctx ctx_new(const struct config *cfg)
{
	return (struct ctx){ .cfg = cfg, .pool = -1, .vm = -1,
			     .fd = { -1, -1, -1 } };
}

/* After the workload: the views' reservations are the caller's to unmap. */
static void ctx_end(struct ctx *c)
{
	for (int f = 0; f < 2; f++)
		if (c->view[f])
			munmap(c->view[f], file_pages[f] * PG);
}

/* The uninjected pass: each step's result and state after it, and its points. */
struct reference {
	int64_t ret[NSTEPS];
	uint64_t first[NSTEPS], crossings[NSTEPS];	/* points [first, first + n) */
	uint64_t total;
	struct snap *after;	/* NSTEPS snapshots */
};

static bool same_result(const struct step *st, int64_t ret, int64_t ref)
{
	return st->handle ? (ret >= 0) == (ref >= 0) : ret == ref;
}

static void reference_run(const struct config *cfg, struct reference *ref)
{
	struct inject_stats s;
	struct ctx c = ctx_new(cfg);

	ref->after = calloc(NSTEPS, sizeof(struct snap));
	ASSERT_TRUE(ref->after);
	ref->total = 0;
	for (size_t i = 0; i < NSTEPS; i++) {
		inject_arm(0, 0, 1, NULL);	/* count, fail nothing */
		ref->ret[i] = steps[i].run(&c, steps[i].f);
		inject_stats(&s);
		inject_disarm();
		ref->first[i] = ref->total + 1;
		ref->crossings[i] = s.crossings;
		ref->total += s.crossings;
		if (steps[i].handle)
			ASSERT_GE(ref->ret[i], 0);
		else if (ref->ret[i] != steps[i].want)
			printf("#   %s on %s: %lld\n", steps[i].name, cfg->name,
			       (long long)ref->ret[i]);
		ASSERT_TRUE(steps[i].handle || ref->ret[i] == steps[i].want);
		snap_take(&c, &ref->after[i]);
		if (steps[i].run == fault_huge_private ||
		    steps[i].run == fault_merged) {
			/*
			 * The huge folio, whole, and mapped by a 2 MiB entry;
			 * on snp, once merged, at 4 KiB: the split smashed its
			 * RMP entry, and the RMP has no un-smash.
			 */
			bool smashed = steps[i].run == fault_merged &&
				       !strcmp(cfg->arch, "snp");

			ASSERT_EQ(ref->after[i].page[1][9].order, 9);
			ASSERT_EQ(ref->after[i].page[1][9].s2_level, smashed ? 0 : 1);
		}
		if (steps[i].run == write_split)
			ASSERT_EQ(ref->after[i].page[1][9].order, 0);
	}
	ASSERT_EQ(ref->after[NSTEPS - 1].violations, 0);
	ctx_end(&c);
}

struct tally {
	uint64_t failed, absorbed, retries;
	const char *absorbed_at[8];	/* the distinct sites that absorbed one */
};

static void absorbed(struct tally *t, const char *site)
{
	t->absorbed++;
	for (int i = 0; i < 8; i++) {
		if (!t->absorbed_at[i])
			t->absorbed_at[i] = site;
		if (!strcmp(t->absorbed_at[i], site))
			break;
	}
}

static void print_absorbed(const struct tally *t)
{
	if (!t->absorbed)
		return;
	printf("#      absorbed at (the call succeeded, state as uninjected):");
	for (int i = 0; i < 8 && t->absorbed_at[i]; i++)
		printf(" %s", t->absorbed_at[i] + 4);
	printf("\n");
}

static void check_absorbed(const struct ctx *c, const struct reference *ref,
			   size_t i, const char *site)
{
	struct snap *now = malloc(sizeof(*now));

	ASSERT_TRUE(now);
	snap_take(c, now);
	if (snap_diff(&ref->after[i], now, false)) {
		printf("#   %s on %s: %s failed, the call succeeded, and left another state than the uninjected run\n",
		       steps[i].name, c->cfg->name, site);
		free(now);
		ASSERT_TRUE(0);
	}
	free(now);
}

/*
 * Step @i failed under injection: the failure is the one injected, it is an
 * errno of want of resources, and nothing changed since @before.
 */
static void check_failed(const struct ctx *c, size_t i, int64_t ret,
			 const struct snap *before, const char *site)
{
	struct snap *now = malloc(sizeof(*now));
	int diff;

	ASSERT_TRUE(now);
	if (ret != -ENOMEM && ret != -EMFILE) {
		printf("#   %s on %s: %s failed, the call returned %lld\n",
		       steps[i].name, c->cfg->name, site, (long long)ret);
		free(now);
		ASSERT_TRUE(0);
	}
	snap_take(c, now);
	/* The range it maps over may be gone, with no record left of it. */
	for (int p = steps[i].may_unmap; p >= 0 && p < steps[i].may_unmap + 2; p++)
		if (!now->page[0][p].mapped)
			now->page[0][p] = before->page[0][p];
	diff = snap_diff(before, now, true);
	if (now->violations != before->violations)
		print_violations(c);
	free(now);
	if (diff) {
		printf("#   %s on %s: %s failed, the call returned %lld and changed the state above\n",
		       steps[i].name, c->cfg->name, site, (long long)ret);
		ASSERT_TRUE(0);
	}
}

/*
 * One pass, armed with (@nth, @p, @seed). Before a step where a point may
 * fail (@nth's step, or every step with @p), snapshot; after it, the call
 * either gives the uninjected result (absorbed: the state must be the
 * uninjected one) or fails and changed nothing; then it is repeated until
 * it gives the uninjected result.
 */
static void injected_run(const struct config *cfg, const struct reference *ref,
			 uint64_t nth, double p, uint64_t seed, struct tally *t)
{
	struct ctx c = ctx_new(cfg);
	struct snap *before = malloc(sizeof(*before));

	ASSERT_TRUE(before);
	for (size_t i = 0; i < NSTEPS; i++) {
		/* @nth counted from this step's first point; 0: not in it. */
		uint64_t here = nth >= ref->first[i] ? nth - ref->first[i] + 1 : 0;
		bool watch = p > 0 || (here && here <= ref->crossings[i]);
		uint64_t injected = 0;
		struct inject_stats s;
		int64_t ret;

		if (watch)
			snap_take(&c, before);
		inject_arm(here, p, seed * 1000003 + i, NULL);
		for (;;) {
			ret = steps[i].run(&c, steps[i].f);
			inject_stats(&s);
			inject_disarm();
			/* Short of the Nth point, a pass crosses what the uninjected one did. */
			if (nth && s.failures && !watch) {
				printf("#   %s on %s crossed %llu points, %llu uninjected\n",
				       steps[i].name, cfg->name,
				       (unsigned long long)s.crossings,
				       (unsigned long long)ref->crossings[i]);
				ASSERT_TRUE(0);
			}
			injected += s.failures;
			if (!s.failures) {
				if (!same_result(&steps[i], ret, ref->ret[i])) {
					printf("#   %s on %s returned %lld, %lld uninjected, with no failure injected\n",
					       steps[i].name, cfg->name, (long long)ret,
					       (long long)ref->ret[i]);
					ASSERT_TRUE(0);
				}
				break;
			}
			if (same_result(&steps[i], ret, ref->ret[i])) {
				absorbed(t, s.last_failed);
				check_absorbed(&c, ref, i, s.last_failed);
				break;
			}
			t->failed++;
			check_failed(&c, i, ret, before, s.last_failed);
			/* Again: with @nth nothing fails now; with @p, maybe. */
			t->retries++;
			ASSERT_LT(t->retries, 1000000);
			inject_arm(0, p, seed * 7919 + i * 31 + injected, NULL);
		}
		/* The pass is the uninjected one up to the Nth point: it is here. */
		if (nth && watch)
			ASSERT_EQ(injected, 1);
	}
	ctx_end(&c);
	free(before);
}

/* Sites whose crossings grew between @a and @b (as from inject_sites). */
static unsigned int sites_crossed(const struct inject_site_count *a,
				  unsigned int na,
				  const struct inject_site_count *b,
				  unsigned int nb)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < nb; i++)
		if (i >= na || b[i].crossings > a[i].crossings)
			n++;
	return n;
}

/*
 * Pages the host wrote through a mapping are folios (its shmem fault made
 * them) though the file records them only when it next looks: gmem_fallocate
 * over them, or a fault in a huge block of them, asks the pool for nothing,
 * and cannot fail for memory; a real hole still does.
 */
TEST(pages_the_host_touched_are_not_allocated_again)
{
	int pool = gmem_pool_create(4ULL << 30), vm, fd[2];
	struct inject_stats s;
	struct gmem_exit exit;
	uint64_t pfn;
	uint8_t *map[2];

	ASSERT_GE(pool, 0);
	vm = gmem_vm_create(pool, "sw", 0);
	ASSERT_GE(vm, 0);
	for (int f = 0; f < 2; f++) {
		fd[f] = gmem_create(vm, file_pages[f] * PG, GMEM_FLAG_MMAP |
				    GMEM_FLAG_INIT_SHARED | file_flags[f]);
		ASSERT_GE(fd[f], 0);
		ASSERT_EQ(gmem_mmap(fd[f], 0, file_pages[f] * PG,
				    PROT_READ | PROT_WRITE, MAP_SHARED,
				    (void **)&map[f]), 0);
		ASSERT_EQ(gmem_vm_bind(vm, f, file_gpa[f], file_pages[f] * PG,
				       fd[f], 0), 0);
	}
	for (uint64_t i = 0; i < 4; i++)
		map[0][i * PG] = (uint8_t)(i + 1);
	map[1][3 * PG] = 7;

	inject_arm(0, 1.0, 1, "src/pool.c");
	ASSERT_EQ(gmem_fallocate(fd[0], GMEM_FALLOC_KEEP_SIZE, 0, 4 * PG), 0);
	ASSERT_EQ(gmem_vm_fault(vm, HUGE_GPA + 3 * PG, GMEM_FAULT_WRITE, &pfn,
				&exit), 0);
	inject_stats(&s);
	ASSERT_EQ(s.crossings, 0);
	ASSERT_EQ(gmem_fallocate(fd[0], GMEM_FALLOC_KEEP_SIZE, 3 * PG, 2 * PG),
		  -ENOMEM);
	inject_disarm();
	ASSERT_EQ(gmem_folio_info(fd[0], 4 * PG, NULL, NULL, NULL), 0);
	for (uint64_t i = 0; i < 4; i++) {
		ASSERT_EQ(gmem_folio_info(fd[0], i * PG, NULL, NULL, NULL), 1);
		ASSERT_EQ(map[0][i * PG], i + 1);
	}
	ASSERT_EQ(map[1][3 * PG], 7);
	for (int f = 0; f < 2; f++) {
		ASSERT_EQ(gmem_munmap(map[f], file_pages[f] * PG), 0);
		ASSERT_EQ(gmem_close(fd[f]), 0);
	}
	ASSERT_EQ(gmem_vm_close(vm), 0);
	ASSERT_EQ(gmem_pool_close(pool), 0);
}

static struct inject_site_count sites0[256], sites1[256];

TEST(every_point_of_the_workload_fails_in_turn_on_every_backend_and_changes_nothing)
{
	unsigned int all_sites;

	for (size_t a = 0; a < NCONFIGS; a++) {
		struct reference ref;
		struct tally t = { 0 };
		struct ctx warm = ctx_new(&configs[a]);
		unsigned int n0, n1;

		/* Warm: one-time points of the process are behind us. */
		for (size_t i = 0; i < NSTEPS; i++)
			steps[i].run(&warm, steps[i].f);
		ctx_end(&warm);
		n0 = inject_sites(sites0, 256);
		reference_run(&configs[a], &ref);
		n1 = inject_sites(sites1, 256);
		for (uint64_t nth = 1; nth <= ref.total; nth++)
			injected_run(&configs[a], &ref, nth, 0, nth, &t);
		printf("# %-9s %llu points crossed at %u distinct sites: %llu calls failed and changed nothing, %llu absorbed the failure\n",
		       configs[a].name, (unsigned long long)ref.total,
		       sites_crossed(sites0, n0, sites1, n1),
		       (unsigned long long)t.failed,
		       (unsigned long long)t.absorbed);
		print_absorbed(&t);
		ASSERT_EQ(t.failed + t.absorbed, ref.total);
		free(ref.after);
	}
	all_sites = inject_sites(sites1, 256);
	printf("# %u distinct sites crossed in all:", all_sites);
	for (unsigned int i = 0; i < all_sites; i++)
		printf(" %s", sites1[i].site + 4);	/* past "src/" */
	printf("\n");
}

TEST(each_point_failing_with_probability_0_05_changes_nothing)
{
	uint64_t calls = 0, seed = 1;
	struct tally t = { 0 };

	for (size_t a = 0; a < NCONFIGS; a++) {
		struct reference ref;

		reference_run(&configs[a], &ref);
		for (int pass = 0; pass < 20; pass++, seed++) {
			injected_run(&configs[a], &ref, 0, 0.05, seed, &t);
			calls += NSTEPS;
		}
		free(ref.after);
	}
	calls += t.retries;
	printf("# p = 0.05: %llu calls, %llu failed and changed nothing, %llu absorbed a failure\n",
	       (unsigned long long)calls, (unsigned long long)t.failed,
	       (unsigned long long)t.absorbed);
	print_absorbed(&t);
	ASSERT_GT(t.failed, 0);
}
