// SPDX-License-Identifier: MIT
/*
 * folio.c - the folio cases of gmem bench: 4, metadata per GiB with 4 KiB
 * and 2 MiB folios, gmem's count against the process's real growth; 8, huge
 * folios: 4 KiB conversion inside a 1 GiB folio (split and merge) and the
 * guest's next fault, first faults on a 1 GiB folio.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gmem.h"
#include "bench.h"

/* ----------------------------------------------------- 4. metadata bytes */

/* A "Key:   N kB" line of @path, in kB; -1 if absent. */
static long proc_kb(const char *path, const char *key)
{
	char line[256];
	size_t len = strlen(key);
	long v = -1;
	FILE *f = fopen(path, "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, len) && line[len] == ':') {
			v = atol(line + len + 1);
			break;
		}
	fclose(f);
	return v;
}

/* Lines of /proc/self/maps: the process's VMAs; -1 if unreadable. */
static long vma_count(void)
{
	char line[512];
	long n = 0;
	FILE *f = fopen("/proc/self/maps", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		n += strchr(line, '\n') != NULL;
	fclose(f);
	return n;
}

/*
 * Bytes of one VMA in the kernel: the objsize of /proc/slabinfo's
 * vm_area_struct where it is readable (root), else 192, its size on x86-64
 * Linux 6.x, as an estimate; *@measured says which.
 */
static long vma_bytes(bool *measured)
{
	char line[512];
	long size = -1;
	FILE *f = fopen("/proc/slabinfo", "r");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "vm_area_struct ", 15) &&
		    sscanf(line, "%*s %*d %*d %ld", &size) == 1)
			break;
	if (f)
		fclose(f);
	*measured = size > 0;
	return size > 0 ? size : 192;
}

/*
 * gmem bench --metadata-child 4k|2m: in a fresh process, a pool and a sw VM
 * (the fixed cost, not counted), then one 1 GiB file as a confidential
 * guest's memory: bound, allocated, mapped whole by the host and every page
 * faulted in private by the guest (stage-2 entries, the arch's per-frame
 * state, the host mapping's fences). Prints the growth of the process's
 * private anonymous memory, of its page tables (kB) and of its VMAs (count)
 * from each point to the next, and gmem's own count of its metadata in
 * bytes.
 */
int bench_metadata_child(const char *kind)
{
	uint64_t flags = GMEM_FLAG_MMAP | (!strcmp(kind, "2m") ? GMEM_FLAG_HUGE_2M : 0);
	struct gmem_pool_stats st;
	struct env e = { -1, -1 };
	long anon[4], pte[4], vmas[4];
	void *map = NULL;
	int fd = -1, i;

	if (env_open(&e, POOL_BYTES, "sw"))
		return 1;
	/* 0: before; 1: bound and allocated; 2: host-mapped; 3: faulted private */
	anon[0] = proc_kb("/proc/self/smaps_rollup", "Anonymous");
	pte[0] = proc_kb("/proc/self/status", "VmPTE");
	vmas[0] = vma_count();
	if ((fd = gmem_create(e.vm, GiB, flags)) < 0 ||
	    gmem_vm_bind(e.vm, 0, 0, GiB, fd, 0) ||
	    gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, GiB))
		return 1;
	anon[1] = proc_kb("/proc/self/smaps_rollup", "Anonymous");
	pte[1] = proc_kb("/proc/self/status", "VmPTE");
	vmas[1] = vma_count();
	if (gmem_mmap(fd, 0, GiB, PROT_READ | PROT_WRITE, MAP_SHARED, &map))
		return 1;
	anon[2] = proc_kb("/proc/self/smaps_rollup", "Anonymous");
	pte[2] = proc_kb("/proc/self/status", "VmPTE");
	vmas[2] = vma_count();
	if (fault_all(e.vm, 0, GiB, GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE) ||
	    gmem_pool_stats(e.pool, &st))
		return 1;
	anon[3] = proc_kb("/proc/self/smaps_rollup", "Anonymous");
	pte[3] = proc_kb("/proc/self/status", "VmPTE");
	vmas[3] = vma_count();
	for (i = 0; i < 4; i++)
		if (anon[i] < 0 || pte[i] < 0 || vmas[i] < 0)
			return 1;
	printf("%llu %llu", (unsigned long long)st.metadata_bytes,
	       (unsigned long long)st.frames_in_use);
	for (i = 1; i < 4; i++)
		printf(" %ld %ld %ld", anon[i] - anon[i - 1], pte[i] - pte[i - 1],
		       vmas[i] - vmas[i - 1]);
	printf("\n");
	return 0;
}

/*
 * Growth of anonymous memory and page tables (kB) and of VMAs (count) at
 * each step of the child.
 */
struct growth_kb {
	long anon[3], pte[3], vmas[3];
};

/* Every byte, in kB: a VMA counts as the kernel's vm_area_struct. */
static double growth_total(const struct growth_kb *g, long vma_size)
{
	double kb = 0;

	for (int i = 0; i < 3; i++)
		kb += g->anon[i] + g->pte[i] + (double)g->vmas[i] * vma_size / 1024;
	return kb;
}

/* Run the metadata child of @kind; 0 and what it printed, or -1. */
static int metadata_child(const char *kind, struct growth_kb *g,
			  unsigned long long *counted, unsigned long long *frames)
{
	const char *argv[] = { "gmem", "bench", "--metadata-child", kind, NULL };
	char out[256];

	if (run_self(argv, out, sizeof(out)) ||
	    sscanf(out, "%llu %llu %ld %ld %ld %ld %ld %ld %ld %ld %ld", counted,
		   frames, &g->anon[0], &g->pte[0], &g->vmas[0], &g->anon[1],
		   &g->pte[1], &g->vmas[1], &g->anon[2], &g->pte[2],
		   &g->vmas[2]) != 11)
		return -1;
	return 0;
}

void case4(void)
{
	static const struct {
		const char *id, *name, *kind, *folios;
		struct target t;
	} c[] = {
		{ "4a", "metadata per GiB, 4 KiB folios", "4k", "262144 folios of 4 KiB",
		  { "<= 0.40%", 0.004 * GiB / KiB, true, true, 0 } },
		{ "4b", "metadata per GiB, 2 MiB folios", "2m", "512 folios of 2 MiB",
		  { "<= 0.05%", 0.0005 * GiB / KiB, true, true, 0 } },
	};

	bool vma_measured;
	long vma_size = vma_bytes(&vma_measured);

	for (int i = 0; i < 2; i++) {
		struct growth_kb g = { 0 };
		unsigned long long counted = 0, frames = 0;
		struct series s = { 0 };

		while (series_more(&s, &c[i].t)) {
			if (metadata_child(c[i].kind, &g, &counted, &frames)) {
				emit_error(c[i].id, c[i].name, "the metadata child", -EPROTO);
				break;
			}
			/* Every byte: the larger of what gmem counts and what the process grew. */
			double grown = growth_total(&g, vma_size);
			double mine = (double)counted / KiB;

			series_add(&s, grown > mine ? grown : mine, mine, NAN);
		}
		if (!s.n)
			continue;
		emit_series(c[i].id, c[i].name, "KiB", &s, &c[i].t,
			    "gmem_pool_stats", "growth / gmem's own count",
			    "%.4f%% of guest memory (struct page: 1.5625%%); the process's growth "
			    "(smaps_rollup Anonymous kB + VmPTE kB + VMAs x %ld B, the "
			    "vm_area_struct %s) from a pool and VM to: a 1 GiB file bound and "
			    "allocated (%s) %+ld + %+ld + %+ld VMAs, host-mapped whole %+ld + %+ld "
			    "+ %+ld VMAs, every page faulted private %+ld + %+ld + %+ld VMAs; "
			    "gmem_pool_stats metadata_bytes %llu, frames_in_use %llu (last run)",
			    100.0 * summarize(s.m, s.n).med * KiB / GiB, vma_size,
			    vma_measured ? "objsize of /proc/slabinfo" : "size estimated, slabinfo unreadable",
			    c[i].folios, g.anon[0], g.pte[0], g.vmas[0], g.anon[1], g.pte[1],
			    g.vmas[1], g.anon[2], g.pte[2], g.vmas[2], counted, frames);
	}
}

/* ------------------------------------------------------ 8. huge folios */

/* The statistics of @v and @b (NULL: none) over min_runs runs; no target. */
static void row_set(struct row *row, const double *v, const double *b,
		    const char *base, const char *ratio_of)
{
	struct series s = { 0 };
	int i;

	for (i = 0; i < min_runs; i++)
		series_add(&s, v[i], b ? b[i] : NAN, NAN);
	row_from(row, &s, NULL, base, ratio_of);
}

/* Punch the whole file, then time one private fault that brings it back. */
static double time_first_fault(int vm, int fd, uint64_t gpa, int *err)
{
	uint64_t t0;
	int rc = gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				0, GiB);

	if (rc) {
		*err = rc;
		return 0;
	}
	t0 = now_ns();
	rc = gmem_vm_fault(vm, gpa, GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE, NULL, NULL);
	if (rc)
		*err = rc < 0 ? rc : -EFAULT;
	return (double)(now_ns() - t0) / 1e3;
}

/*
 * One 4 KiB page converted to shared and back, then the guest's next private
 * fault on it, @iters times: ns per round. In a 1 GiB folio that is a split,
 * a merge and the fault that maps the merged folio again.
 */
static double time_convert_and_fault(int vm, int fd, uint64_t gpa,
				     uint64_t off, int iters, int *err)
{
	uint64_t t0 = now_ns();
	int i, rc = 0;

	for (i = 0; i < iters && !rc; i++) {
		rc = gmem_set_attributes(fd, off, PAGE, 0, 0, NULL);
		if (!rc)
			rc = gmem_set_attributes(fd, off, PAGE, GMEM_ATTR_PRIVATE, 0, NULL);
		if (!rc)
			rc = gmem_vm_fault(vm, gpa, GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE,
					   NULL, NULL);
	}
	if (rc) {
		*err = rc < 0 ? rc : -EFAULT;
		return NAN;
	}
	return (double)(now_ns() - t0) / iters;
}

/*
 * 8a on @arch: the round in a 1 GiB folio against the same in a file of
 * 4 KiB folios, interleaved run by run.
 */
static void case8a(const char *arch, const char *name)
{
	double v[MAX_SAMPLES], base[MAX_SAMPLES];
	int iters = quick ? 100 : 400;
	struct env e = { -1, -1 };
	int fd = -1, fd4 = -1, r, err = 0, level;
	uint64_t off = GiB / 2 + 5 * PAGE;
	struct row row;

	TRY("8a", name, env_open(&e, POOL_BYTES, arch));
	TRY("8a", name, fd = gmem_create(e.vm, GiB, GMEM_FLAG_HUGE_1G));
	TRY("8a", name, gmem_vm_bind(e.vm, 0, 0, GiB, fd, 0));
	TRY("8a", name, fd4 = gmem_create(e.vm, GiB, 0));
	TRY("8a", name, gmem_vm_bind(e.vm, 1, GiB, GiB, fd4, 0));
	TRY("8a", name, gmem_vm_fault(e.vm, off, GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE,
				      NULL, NULL));
	TRY("8a", name, gmem_vm_fault(e.vm, GiB + off,
				      GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE, NULL, NULL));
	for (r = 0; r < min_runs; r++) {
		v[r] = time_convert_and_fault(e.vm, fd, off, off, iters, &err);
		TRY("8a", name, err);
		base[r] = time_convert_and_fault(e.vm, fd4, GiB + off, off, iters, &err);
		TRY("8a", name, err);
	}
	TRY("8a", name, level = gmem_vm_stage2_level(e.vm, off));
	row = row_new("8a", name, "ns");
	row_set(&row, v, base, "same, 4 KiB folios", "huge / 4 KiB folios");
	snprintf(row.note, sizeof(row.note),
		 "ns per round: to shared (split), to private (merge), the guest's private fault "
		 "on the page (maps it at level %d); %s VM, 1 GiB files bound; %d rounds per run",
		 level, arch, iters);
	emit(&row);
out:
	close_fd(&fd);
	close_fd(&fd4);
	env_close(&e);
}

void case8(void)
{
	const char *n2 = "first fault on a 1 GiB folio, sw";
	const char *n3 = "first fault on a merged 1 GiB folio, pkvm";
	double v[MAX_SAMPLES], base[MAX_SAMPLES];
	struct env e = { -1, -1 }, p = { -1, -1 };
	int fd = -1, fd4 = -1, r, err = 0;
	uint64_t off = GiB / 2 + 5 * PAGE;
	struct row row;

	case8a("sw", "convert 4K <-> + fault, inside a 1 GiB folio, sw");
	case8a("snp", "convert 4K <-> + fault, inside a 1 GiB folio, snp");

	TRY("8b", n2, env_open(&e, POOL_BYTES, "sw"));
	TRY("8b", n2, fd = gmem_create(e.vm, GiB, GMEM_FLAG_HUGE_1G));
	TRY("8b", n2, gmem_vm_bind(e.vm, 0, 0, GiB, fd, 0));
	TRY("8b", n2, fd4 = gmem_create(e.vm, GiB, 0));
	TRY("8b", n2, gmem_vm_bind(e.vm, 1, GiB, GiB, fd4, 0));
	/* One fault allocates and maps the whole folio, vs faulting in 1 GiB page by page. */
	for (r = 0; r < min_runs; r++) {
		v[r] = time_first_fault(e.vm, fd, off, &err);
		TRY("8b", n2, err);
		TRY("8b", n2, gmem_fallocate(fd4, GMEM_FALLOC_KEEP_SIZE |
					     GMEM_FALLOC_PUNCH_HOLE, 0, GiB));
		uint64_t t0 = now_ns();
		TRY("8b", n2, fault_all(e.vm, GiB, GiB,
					GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE));
		base[r] = (double)(now_ns() - t0) / 1e3;
	}
	TRY("8b", n2, gmem_vm_stage2_level(e.vm, 0));
	row = row_new("8b", n2, "us");
	row_set(&row, v, base, "262144 faults, 4 KiB folios", "one huge fault / 1 GiB of 4 KiB faults");
	snprintf(row.note, sizeof(row.note),
		 "us to allocate and map 1 GiB from a hole; the huge fault installs one level-%d stage-2 entry",
		 gmem_vm_stage2_level(e.vm, 0));
	emit(&row);

	/* pKVM: the fault after a merge donates the page that went shared again. */
	close_fd(&fd);
	close_fd(&fd4);
	env_close(&e);
	TRY("8c", n3, env_open(&p, POOL_BYTES, "pkvm"));
	TRY("8c", n3, fd = gmem_create(p.vm, GiB, GMEM_FLAG_HUGE_1G));
	TRY("8c", n3, gmem_vm_bind(p.vm, 0, 0, GiB, fd, 0));
	TRY("8c", n3, gmem_vm_fault(p.vm, off, GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE,
				    NULL, NULL));
	for (r = 0; r < min_runs; r++) {
		uint64_t t0;

		TRY("8c", n3, gmem_set_attributes(fd, off, PAGE, 0, 0, NULL));
		TRY("8c", n3, gmem_set_attributes(fd, off, PAGE, GMEM_ATTR_PRIVATE,
						  0, NULL));
		t0 = now_ns();
		TRY("8c", n3, gmem_vm_fault(p.vm, off + PAGE,
					    GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE,
					    NULL, NULL));
		v[r] = (double)(now_ns() - t0) / 1e3;
	}
	row = row_new("8c", n3, "us");
	row_set(&row, v, NULL, NULL, NULL);
	snprintf(row.note, sizeof(row.note),
		 "us: after a 4 KiB page went shared and back, make_private donates that page, "
		 "then one 1 GiB stage-2 entry");
	emit(&row);
out:
	close_fd(&fd);
	close_fd(&fd4);
	env_close(&e);
	env_close(&p);
}
