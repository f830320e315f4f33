// SPDX-License-Identifier: MIT
/*
 * grow.c - case 7 of gmem bench: how the cost of a conversion (and of a
 * fault) grows with the file size (7a), the ranges of its attribute map (7b,
 * measured by case 3), the bindings of the file (7c), its host mappings
 * (7d) and the VMs of the pool (7e). Each group's rows are measured in the
 * same runs, interleaved; the ratio is the cost against the smallest n.
 *
 * The design asks conversion cost O(log n) in ranges and in bindings. A
 * benchmark cannot see an O(); it can see the last step: n grown 10x or 16x
 * must not make a conversion 2x dearer (log n grows by 1.2x to 1.4x over
 * these steps, n by 10x to 16x).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gmem.h"
#include "bench.h"

#define NGROW	4

static const struct target t_log = { "last step < 2x", 2.0, true, false, 0 };

/*
 * Print a growth group: one row per n, its runs @v[i][0..min_runs) taken
 * in the same runs as the others; the ratio, run by run, against the
 * smallest n. The last row is also judged, when @t is given, on its step
 * from the row before.
 */
static void emit_group(const char *id, const char *const *names, int n,
		       double (*v)[MAX_SAMPLES], const char *unit, const char *base,
		       const struct target *t, const char *last_note)
{
	int i, r;

	for (i = 0; i < n; i++) {
		struct row row = row_new(id, names[i], unit);
		struct series s = { 0 }, step = { 0 };

		for (r = 0; r < min_runs; r++) {
			series_add(&s, v[i][r], v[0][r], NAN);
			if (i)
				series_add(&step, v[i][r], v[i - 1][r], NAN);
		}
		row_from(&row, &s, NULL, base, "cost at this n / cost at the smallest, per run");
		if (i == n - 1 && i) {
			struct row last = row_new(id, names[i], unit);

			row_from(&last, &step, t, NULL, NULL);
			row.t = last.t;
			row.v = last.v;
			snprintf(row.note, sizeof(row.note),
				 "last step: %.2fx [%.2f..%.2f] the row above, per run; %s",
				 last.ratio.med, last.ratio.lo, last.ratio.hi, last_note);
		}
		emit(&row);
	}
}

/* ns per conversion of a random page of @fd (@size bytes), private both ways. */
static double convert_random_ns(int fd, uint64_t size, uint64_t pairs, uint64_t seed,
				int *err)
{
	struct frag f = { .fd = fd, .size = size, .pairs = 0 };

	return frag_convert_ns(&f, pairs, seed, err);
}

/* ns per fault of @n random pages of [@gpa, +@size), prefaulted, @count faults. */
static double fault_random_ns(int vm, uint64_t gpa, uint64_t size, unsigned int n,
			      uint64_t count, int *err)
{
	unsigned int flags = GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE;
	uint64_t *g = malloc(n * sizeof(*g)), seed = 99, k, t0;
	unsigned int i;
	int rc = 0;

	if (!g) {
		*err = -ENOMEM;
		return NAN;
	}
	for (i = 0; i < n; i++)
		g[i] = gpa + rnd(&seed) % (size / PAGE) * PAGE;
	for (i = 0; i < n && !rc; i++)
		rc = gmem_vm_fault(vm, g[i], flags, NULL, NULL);
	t0 = now_ns();
	for (k = 0; k < count && !rc; k++)
		rc = gmem_vm_fault(vm, g[k % n], flags, NULL, NULL);
	t0 = now_ns() - t0;
	free(g);
	if (rc) {
		*err = rc > 0 ? -EPROTO : rc;
		return NAN;
	}
	return (double)t0 / count;
}

/* ----------------------------------------------------------- 7a. size */

static void grow_size(void)
{
	static const uint64_t sizes[NGROW] = { GiB, 16 * GiB, 256 * GiB, TiB };
	static const char *const cn[NGROW] = {
		"convert random 4K, file 1 GiB", "convert random 4K, file 16 GiB",
		"convert random 4K, file 256 GiB", "convert random 4K, file 1 TiB",
	};
	static const char *const fn[NGROW] = {
		"fault present, file 1 GiB", "fault present, file 16 GiB",
		"fault present, file 256 GiB", "fault present, file 1 TiB",
	};
	double c[NGROW][MAX_SAMPLES], f[NGROW][MAX_SAMPLES];
	uint64_t pairs = quick ? 5000 : 20000, nfaults = quick ? 100000 : 500000;
	int fd[NGROW] = { -1, -1, -1, -1 };
	struct env e = { -1, -1 };
	int i, r, err = 0;

	TRY("7a", cn[0], env_open(&e, 2 * TiB, "sw"));
	for (i = 0; i < NGROW; i++) {
		/* gpa i TiB .. : the files side by side in one VM */
		TRY("7a", cn[i], fd[i] = gmem_create(e.vm, sizes[i], 0));
		TRY("7a", cn[i], gmem_vm_bind(e.vm, i, i * TiB, sizes[i], fd[i], 0));
	}
	for (r = 0; r < min_runs; r++) {
		for (i = 0; i < NGROW; i++) {
			c[i][r] = convert_random_ns(fd[i], sizes[i], pairs, r + 1, &err);
			TRY("7a", cn[i], err);
			f[i][r] = fault_random_ns(e.vm, i * TiB, sizes[i], 4096, nfaults, &err);
			TRY("7a", fn[i], err);
		}
	}
	emit_group("7a", cn, NGROW, c, "ns", "at 1 GiB", NULL,
		   "random pages over the whole sparse file, one sw VM");
	emit_group("7a", fn, NGROW, f, "ns", "at 1 GiB", NULL,
		   "4096 random present pages");
out:
	for (i = 0; i < NGROW; i++)
		close_fd(&fd[i]);
	env_close(&e);
}

/* --------------------------------------------------------- 7b. ranges */

static void grow_ranges(void)
{
	static const char *const cn[NSTAGES] = {
		"convert random 4K, 1 range", "convert random 4K, 1k ranges",
		"convert random 4K, 100k ranges", "convert random 4K, 1M ranges",
	};
	static const char *const fn[NSTAGES] = {
		"first fault, 1 range", "first fault, 1k ranges",
		"first fault, 100k ranges", "first fault, 1M ranges",
	};
	static const char *const pn[NSTAGES] = {
		"fault present, 1 range", "fault present, 1k ranges",
		"fault present, 100k ranges", "fault present, 1M ranges",
	};

	if (!growth.done) {
		emit_skip("7b", cn[0], growth.skip);
		return;
	}
	emit_group("7b", cn, growth.nstages, growth.conv, "ns", "with 1 range", &t_log,
		   "case 3's file, random pages; each size measured as the map grew");
	emit_group("7b", fn, growth.nstages, growth.first, "ns", "with 1 range", NULL,
		   "case 3's pages, after a punch");
	emit_group("7b", pn, growth.nstages, growth.present, "ns", "with 1 range", NULL,
		   "case 3's pages, present");
}

/* ------------------------------------------------ 7c, 7d, 7e. n things */

enum kind { BINDINGS, MAPPINGS, VMS };

struct grown {
	int vm, fd;
	void **map;		/* MAPPINGS: the n mappings */
	int *vms, *fds;		/* VMS: the n - 1 other VMs and their files */
	unsigned int n;
	double setup_ms;
};

#define SLICE_FILE	GiB
#define VM_FILE		(16 * MiB)

/* A VM and a file with @n of @kind; conversions are measured on g->fd. */
static int grown_open(struct grown *g, int pool, enum kind kind, unsigned int n)
{
	uint64_t size = kind == VMS ? VM_FILE : SLICE_FILE, slice = size / n, t0;
	unsigned int i;
	int rc;

	memset(g, 0, sizeof(*g));
	g->fd = -1;
	g->n = n;
	g->vm = gmem_vm_create(pool, "sw", 0);
	if (g->vm < 0)
		return g->vm;
	g->fd = gmem_create(g->vm, size, kind == MAPPINGS ? GMEM_FLAG_MMAP : 0);
	if (g->fd < 0)
		return g->fd;
	t0 = now_ns();
	switch (kind) {
	case BINDINGS:
		for (i = 0; i < n; i++) {
			rc = gmem_vm_bind(g->vm, i, i * slice, slice, g->fd, i * slice);
			if (rc)
				return rc;
		}
		break;
	case MAPPINGS:
		rc = gmem_vm_bind(g->vm, 0, 0, size, g->fd, 0);
		g->map = calloc(n, sizeof(*g->map));
		if (rc || !g->map)
			return rc ? rc : -ENOMEM;
		for (i = 0; i < n; i++) {
			rc = gmem_mmap(g->fd, i * slice, slice, PROT_READ | PROT_WRITE,
				       MAP_SHARED, &g->map[i]);
			if (rc)
				return rc;
		}
		break;
	case VMS:
		rc = gmem_vm_bind(g->vm, 0, 0, size, g->fd, 0);
		g->vms = malloc(n * sizeof(*g->vms));
		g->fds = malloc(n * sizeof(*g->fds));
		if (rc || !g->vms || !g->fds)
			return rc ? rc : -ENOMEM;
		for (i = 0; i < n; i++)
			g->vms[i] = g->fds[i] = -1;
		for (i = 1; i < n; i++) {
			g->vms[i] = gmem_vm_create(pool, "sw", 0);
			if (g->vms[i] < 0)
				return g->vms[i];
			g->fds[i] = gmem_create(g->vms[i], size, 0);
			if (g->fds[i] < 0)
				return g->fds[i];
			rc = gmem_vm_bind(g->vms[i], 0, 0, size, g->fds[i], 0);
			if (rc)
				return rc;
		}
		break;
	}
	g->setup_ms = (double)(now_ns() - t0) / 1e6;
	return 0;
}

static void grown_close(struct grown *g, enum kind kind)
{
	uint64_t slice = (kind == VMS ? VM_FILE : SLICE_FILE) / (g->n ? g->n : 1);
	unsigned int i;

	for (i = 0; g->map && i < g->n; i++)
		if (g->map[i])
			gmem_munmap(g->map[i], slice);
	for (i = 1; g->fds && g->vms && i < g->n; i++) {
		close_fd(&g->fds[i]);
		if (g->vms[i] >= 0)
			gmem_vm_close(g->vms[i]);
	}
	free(g->map);
	free(g->fds);
	free(g->vms);
	close_fd(&g->fd);
	if (g->vm >= 0)
		gmem_vm_close(g->vm);
	g->vm = -1;
}

static void grow_n(const char *id, enum kind kind, const unsigned int *ns,
		   const char *const *names, const struct target *t, const char *what)
{
	uint64_t size = kind == VMS ? VM_FILE : SLICE_FILE, pairs = quick ? 5000 : 20000;
	struct grown g[NGROW];
	double c[NGROW][MAX_SAMPLES];
	char note[200];
	int pool = -1, i, r, err = 0, opened = 0;

	TRY(id, names[0], pool = gmem_pool_create(POOL_BYTES));
	for (i = 0; i < NGROW; i++) {
		opened = i + 1;
		TRY(id, names[i], grown_open(&g[i], pool, kind, ns[i]));
	}
	for (r = 0; r < min_runs; r++) {
		for (i = 0; i < NGROW; i++) {
			c[i][r] = convert_random_ns(g[i].fd, size, pairs, r + 1, &err);
			TRY(id, names[i], err);
		}
	}
	snprintf(note, sizeof(note), "%s; setting up the %u took %.1f ms (%.1f us each)",
		 what, ns[NGROW - 1], g[NGROW - 1].setup_ms,
		 g[NGROW - 1].setup_ms * 1e3 / ns[NGROW - 1]);
	emit_group(id, names, NGROW, c, "ns", "with 1", t, note);
out:
	for (i = 0; i < opened; i++)
		grown_close(&g[i], kind);
	if (pool >= 0)
		gmem_pool_close(pool);
}

void case7(void)
{
	static const unsigned int nb[NGROW] = { 1, 64, 1024, 16384 };
	static const char *const bn[NGROW] = {
		"convert random 4K, 1 binding", "convert random 4K, 64 bindings",
		"convert random 4K, 1024 bindings", "convert random 4K, 16384 bindings",
	};
	static const unsigned int nm[NGROW] = { 1, 16, 256, 4096 };
	static const char *const mn[NGROW] = {
		"convert random 4K, 1 host mapping", "convert random 4K, 16 host mappings",
		"convert random 4K, 256 host mappings", "convert random 4K, 4096 host mappings",
	};
	static const unsigned int nv[NGROW] = { 1, 4, 16, 64 };
	static const char *const vn[NGROW] = {
		"convert random 4K, 1 VM in the pool", "convert random 4K, 4 VMs in the pool",
		"convert random 4K, 16 VMs in the pool", "convert random 4K, 64 VMs in the pool",
	};

	grow_size();
	grow_ranges();
	grow_n("7c", BINDINGS, nb, bn, &t_log,
	       "a 1 GiB file bound as n memslots of 1 GiB / n each");
	grow_n("7d", MAPPINGS, nm, mn, NULL,
	       "a 1 GiB file bound whole, host-mapped as n mappings of 1 GiB / n each");
	grow_n("7e", VMS, nv, vn, NULL,
	       "a 16 MiB file in one of n VMs of the pool, each with such a file");
}
