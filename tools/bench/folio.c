// SPDX-License-Identifier: MIT
/*
 * folio.c - the folio cases of gmem bench: 4, metadata bytes per GiB
 * with 4 KiB and 2 MiB folios; 8, huge folios: 4 KiB conversion inside a
 * 1 GiB folio (split and merge), first faults on a 1 GiB folio.
 */
#include <errno.h>
#include <stdio.h>

#include "gmem.h"
#include "bench.h"

/* ----------------------------------------------------- 4. metadata bytes */

void case4(void)
{
	static const struct {
		const char *id, *name, *target, *folios;
		uint64_t flags;
		double max_pct;
	} c[] = {
		{ "4a", "metadata per GiB, 4 KiB folios", "<= 0.40%",
		  "262144 folios of 4 KiB", 0, 0.4 },
		{ "4b", "metadata per GiB, 2 MiB folios", "<= 0.05%",
		  "512 huge folios", GMEM_FLAG_HUGE_2M, 0.05 },
	};
	struct gmem_pool_stats st;
	struct env e = { -1, -1 };
	int fd = -1;
	struct row row;
	double pct;

	TRY(c[0].id, c[0].name, env_open(&e, 0, "sw"));
	for (int i = 0; i < 2; i++) {
		TRY(c[i].id, c[i].name, fd = gmem_create(e.vm, GiB, c[i].flags));
		TRY(c[i].id, c[i].name, gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, GiB));
		TRY(c[i].id, c[i].name, gmem_pool_stats(e.pool, &st));
		pct = 100.0 * (double)st.metadata_bytes / (double)GiB;
		row = row_new(c[i].id, c[i].name, "KiB");
		row.runs = 1;
		row.m = single((double)st.metadata_bytes / KiB);
		row_compare(&row, "struct page", single(16.0 * 1024),
			    "gmem metadata / kernel struct page (64 B per 4 KiB)");
		row.target = c[i].target;
		row.met = pct <= c[i].max_pct ? MET_YES : MET_NO;
		snprintf(row.note, sizeof(row.note),
			 "%.4f%% of guest memory (struct page: 1.5625%%); gmem_pool_stats metadata_bytes = %llu, 1 GiB fully allocated in %s, %llu frames in use",
			 pct, (unsigned long long)st.metadata_bytes, c[i].folios,
			 (unsigned long long)st.frames_in_use);
		emit(&row);
		close_fd(&fd);
	}
out:
	close_fd(&fd);
	env_close(&e);
}

/* ------------------------------------------------------ 8. huge folios */

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

void case8(void)
{
	const char *n1 = "convert 4K <->, inside a 1 GiB folio";
	const char *n2 = "first fault on a 1 GiB folio, sw";
	const char *n3 = "first fault on a merged 1 GiB folio, pkvm";
	double v[MAX_RUNS], base[MAX_RUNS];
	int iters = quick ? 5000 : 20000;
	struct env e = { -1, -1 }, p = { -1, -1 };
	int fd = -1, fd4 = -1, r, err = 0;
	uint64_t off = GiB / 2 + 5 * PAGE;
	struct row row;

	TRY("8a", n1, env_open(&e, 0, "sw"));
	TRY("8a", n1, fd = gmem_create(e.vm, GiB, GMEM_FLAG_HUGE_1G));
	TRY("8a", n1, gmem_vm_bind(e.vm, 0, 0, GiB, fd, 0));
	TRY("8a", n1, fd4 = gmem_create(e.vm, GiB, 0));
	TRY("8a", n1, gmem_vm_bind(e.vm, 1, GiB, GiB, fd4, 0));
	TRY("8a", n1, gmem_vm_fault(e.vm, off, GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE,
				    NULL, NULL));
	TRY("8a", n1, gmem_vm_fault(e.vm, GiB + off,
				    GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE, NULL, NULL));
	for (r = 0; r < nruns; r++) {
		v[r] = time_convert_pairs(fd, off, iters, &err);
		TRY("8a", n1, err);
		base[r] = time_convert_pairs(fd4, off, iters, &err);
		TRY("8a", n1, err);
	}
	row = row_new("8a", n1, "ns");
	row.m = summarize(v, nruns);
	row_compare(&row, "same, 4 KiB folios", summarize(base, nruns),
		    "split + merge pair / plain pair");
	snprintf(row.note, sizeof(row.note),
		 "ns per pair (to shared: split, to private: merge), sw VM, 1 GiB file bound; %d pairs per run",
		 iters);
	emit(&row);

	/* One fault allocates and maps the whole folio, vs faulting in 1 GiB page by page. */
	for (r = 0; r < nruns; r++) {
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
	row.m = summarize(v, nruns);
	row_compare(&row, "262144 faults, 4 KiB folios", summarize(base, nruns),
		    "one huge fault / 1 GiB of 4 KiB faults");
	snprintf(row.note, sizeof(row.note),
		 "us to allocate and map 1 GiB from a hole; the huge fault installs one level-%d stage-2 entry",
		 gmem_vm_stage2_level(e.vm, 0));
	emit(&row);

	/* pKVM: the fault after a merge donates every frame of the folio again. */
	close_fd(&fd);
	close_fd(&fd4);
	env_close(&e);
	TRY("8c", n3, env_open(&p, 0, "pkvm"));
	TRY("8c", n3, fd = gmem_create(p.vm, GiB, GMEM_FLAG_HUGE_1G));
	TRY("8c", n3, gmem_vm_bind(p.vm, 0, 0, GiB, fd, 0));
	TRY("8c", n3, gmem_vm_fault(p.vm, off, GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE,
				    NULL, NULL));
	for (r = 0; r < nruns; r++) {
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
	row.m = summarize(v, nruns);
	snprintf(row.note, sizeof(row.note),
		 "us: make_private donates 262144 frames, then one 1 GiB stage-2 entry");
	emit(&row);
out:
	close_fd(&fd);
	close_fd(&fd4);
	env_close(&e);
	env_close(&p);
}
