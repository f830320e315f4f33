// SPDX-License-Identifier: MIT
/*
 * fault.c - the fault cases of gmem bench: 3, fault lookup under a
 * fragmented attribute map, 1 and 2 threads; 5, first-touch faults and punch
 * hole beside the kernel's guest_memfd; 7, scaling with file size and map
 * size, the map sizes from what case 3 measured.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gmem.h"
#include "bench.h"
#include "kvm/uapi.h"

/* --------------------------------- 3 and 7b. faults under a fragmented map */

struct fault_set {
	int vm;
	uint64_t *gpa;
	unsigned int *flags;
	unsigned int n;
};

struct fault_thread {
	const struct fault_set *fs;
	unsigned int start;
	uint64_t count;
	pthread_barrier_t *bar;
	uint64_t t0, t1;
	int err;
};

static int fault_loop(const struct fault_set *fs, unsigned int start, uint64_t count)
{
	unsigned int i = start;
	uint64_t k;
	int rc;

	for (k = 0; k < count; k++) {
		rc = gmem_vm_fault(fs->vm, fs->gpa[i], fs->flags[i], NULL, NULL);
		if (rc)
			return rc > 0 ? -EPROTO : rc;
		if (++i == fs->n)
			i = 0;
	}
	return 0;
}

static void *fault_thread_fn(void *arg)
{
	struct fault_thread *t = arg;

	pthread_barrier_wait(t->bar);
	t->t0 = now_ns();
	t->err = fault_loop(t->fs, t->start, t->count);
	t->t1 = now_ns();
	return NULL;
}

/* Attribute of every sample page, as its access must be; prefaults them. */
static int fault_set_refresh(struct fault_set *fs, int fd)
{
	uint64_t attr;
	unsigned int i;
	int rc;

	for (i = 0; i < fs->n; i++) {
		rc = gmem_get_attributes(fd, fs->gpa[i], &attr, NULL);
		if (rc)
			return rc;
		fs->flags[i] = attr ? GMEM_FAULT_PRIVATE : 0;
	}
	return fault_loop(fs, 0, fs->n);
}

static double fault_ns(const struct fault_set *fs, uint64_t count, int *err)
{
	uint64_t t0 = now_ns();

	*err = fault_loop(fs, 0, count);
	return (double)(now_ns() - t0) / count;
}

/* Random sample pages of a file bound at gpa 0 (gpa == offset). */
static int fault_set_init(struct fault_set *fs, int vm, uint64_t size, unsigned int n,
			  uint64_t seed)
{
	unsigned int i;

	fs->vm = vm;
	fs->n = n;
	fs->gpa = calloc(n, sizeof(*fs->gpa));
	fs->flags = calloc(n, sizeof(*fs->flags));
	if (!fs->gpa || !fs->flags)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		fs->gpa[i] = rnd(&seed) % (size / PAGE) * PAGE;
	return 0;
}

static void fault_set_free(struct fault_set *fs)
{
	free(fs->gpa);
	free(fs->flags);
	fs->gpa = NULL;
	fs->flags = NULL;
}

#define NSTAGES 4
static const uint64_t stage_ranges[NSTAGES] = { 1, 1000, 100000, 1000000 };

/* What case 3 measured along the way, for case 7b. */
static struct {
	bool done;
	int nstages;
	int64_t ranges[NSTAGES];
	struct stat3 conv[NSTAGES], fault[NSTAGES];
	char skip[200];
} frag;

void case3(void)
{
	const char *n1 = "fault, page present, 1 thread";
	const char *n2 = "fault, page present, 2 threads";
	uint64_t max_ranges = quick ? 100000 : 1000000;
	/* Every other page shared from page 1: 2k+1 ranges take 2k+1 pages. */
	uint64_t size = ((max_ranges + 1) * PAGE + 2 * MiB - 1) & ~(2 * MiB - 1);
	uint64_t nfaults = quick ? 200000 : 1000000, flipped = 0, last = size - PAGE;
	double f1[MAX_RUNS], f2[MAX_RUNS], scale[MAX_RUNS], conv[MAX_RUNS];
	double one_thread_rate[MAX_RUNS];
	struct fault_set fs = { 0 };
	struct env e = { -1, -1 };
	int fd = -1, s, r, err = 0;
	struct row row;
	const char *id = "3a";
	const char *name = n1;

	memset(&frag, 0, sizeof(frag));
	snprintf(frag.skip, sizeof(frag.skip), "skipped: case 3 did not run");
	TRY(id, name, env_open(&e, 0, "sw"));
	TRY(id, name, fd = gmem_create(e.vm, size, 0));
	TRY(id, name, gmem_vm_bind(e.vm, 0, 0, size, fd, 0));
	TRY(id, name, fault_set_init(&fs, e.vm, size, 65536, 42));

	for (s = 0; s < NSTAGES && stage_ranges[s] <= max_ranges; s++) {
		/* Build untimed: shared pages 1, 3, 5, ... until the count is reached. */
		while (2 * flipped + 1 < stage_ranges[s]) {
			TRY(id, name, gmem_set_attributes(fd, (2 * flipped + 1) * PAGE, PAGE,
							  0, 0, NULL));
			flipped++;
		}
		TRY(id, name, frag.ranges[s] = gmem_attribute_ranges(fd));
		TRY(id, name, fault_set_refresh(&fs, fd));
		for (r = 0; r < nruns; r++) {
			f1[r] = fault_ns(&fs, nfaults, &err);
			TRY(id, name, err);
			conv[r] = time_convert_pairs(fd, last, quick ? 5000 : 20000, &err) / 2;
			TRY(id, name, err);
		}
		frag.fault[s] = summarize(f1, nruns);
		frag.conv[s] = summarize(conv, nruns);
		frag.nstages = s + 1;
	}
	frag.done = true;
	TRY(id, name, fault_set_refresh(&fs, fd));

	/* At the largest map: one thread, then two threads in parallel. */
	id = "3b";
	name = n2;
	for (r = 0; r < nruns; r++) {
		pthread_barrier_t bar;
		struct fault_thread t[2];
		pthread_t th[2];
		uint64_t t0, t1;
		int i;

		one_thread_rate[r] = 1e9 / fault_ns(&fs, nfaults, &err);
		TRY(id, name, err);
		pthread_barrier_init(&bar, NULL, 2);
		for (i = 0; i < 2; i++) {
			t[i] = (struct fault_thread){ .fs = &fs, .start = i * fs.n / 2,
						      .count = nfaults, .bar = &bar };
			if (pthread_create(&th[i], NULL, fault_thread_fn, &t[i])) {
				emit_error(id, name, "pthread_create", -EAGAIN);
				if (i)
					pthread_join(th[0], NULL);
				pthread_barrier_destroy(&bar);
				goto out;
			}
		}
		for (i = 0; i < 2; i++)
			pthread_join(th[i], NULL);
		pthread_barrier_destroy(&bar);
		TRY(id, name, t[0].err);
		TRY(id, name, t[1].err);
		t0 = t[0].t0 < t[1].t0 ? t[0].t0 : t[1].t0;
		t1 = t[0].t1 > t[1].t1 ? t[0].t1 : t[1].t1;
		f2[r] = 2.0 * nfaults * 1e9 / (double)(t1 - t0);
		scale[r] = f2[r] / one_thread_rate[r];
	}

	s = frag.nstages - 1;
	row = row_new("3a", n1, "ns");
	row.m = frag.fault[s];
	row_compare(&row, "same, 1 range", frag.fault[0],
		    "fault with fragmented map / fault with 1 range");
	row.target = "< 100 ns";
	row.met = row.m.med < 100 ? MET_YES : MET_NO;
	snprintf(row.note, sizeof(row.note),
		 "%lld attribute ranges%s, %.2f GiB file, 65536 random present pages, %llu faults per run",
		 (long long)frag.ranges[s],
		 quick ? " (--quick: fewer than the 1,000,000 of the target)" : "",
		 (double)size / GiB, (unsigned long long)nfaults);
	emit(&row);

	row = row_new("3b", n2, "Mfaults/s");
	for (r = 0; r < nruns; r++) {
		f2[r] /= 1e6;
		one_thread_rate[r] /= 1e6;
	}
	row.m = summarize(f2, nruns);
	row.base_name = "1 thread";
	row.b = summarize(one_thread_rate, nruns);
	row.ratio = summarize(scale, nruns).med;
	row.ratio_of = "2-thread aggregate throughput / 1-thread throughput (median of per-run ratios)";
	row.target = ">= 1.80x";
	row.met = row.ratio >= 1.8 ? MET_YES : MET_NO;
	snprintf(row.note, sizeof(row.note),
		 "same map and pages as 3a; scaling per run: %.2f..%.2f",
		 summarize(scale, nruns).lo, summarize(scale, nruns).hi);
	emit(&row);
out:
	if (!frag.done)
		snprintf(frag.skip, sizeof(frag.skip), "skipped: case 3 failed");
	fault_set_free(&fs);
	close_fd(&fd);
	env_close(&e);
}

/* ------------------------------------ 5. side by side with the kernel */

static double touch_ms(volatile uint8_t *p, uint64_t len)
{
	uint64_t t0 = now_ns(), off;

	for (off = 0; off < len; off += PAGE)
		p[off] = 1;
	return (double)(now_ns() - t0) / 1e6;
}

void case5(void)
{
	const char *n1 = "first-touch write faults, 1 GiB via mmap";
	const char *n2 = "punch hole 1 GiB";
	struct gk_create_guest_memfd cg = {
		.size = GiB,
		.flags = GK_GUEST_MEMFD_FLAG_MMAP | GK_GUEST_MEMFD_FLAG_INIT_SHARED,
	};
	double kt[MAX_RUNS], kp[MAX_RUNS], gt[MAX_RUNS], gp[MAX_RUNS];
	double st[MAX_RUNS], sp[MAX_RUNS];
	int kvm = -1, kvm_vm = -1, kfd = -1, fd = -1, smfd = -1, r;
	uint8_t *kmap = MAP_FAILED, *smap = MAP_FAILED;
	struct env e = { -1, -1 };
	char why[160] = "";
	void *gmap = NULL;
	struct row row;
	uint64_t t0;

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		snprintf(why, sizeof(why), "skipped: open /dev/kvm: %s", strerror(errno));
		goto skip;
	}
	kvm_vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (kvm_vm < 0) {
		snprintf(why, sizeof(why), "skipped: KVM_CREATE_VM: %s", strerror(errno));
		goto skip;
	}
	kfd = ioctl(kvm_vm, GK_CREATE_GUEST_MEMFD, &cg);
	if (kfd < 0) {
		snprintf(why, sizeof(why), "skipped: KVM_CREATE_GUEST_MEMFD: %s",
			 strerror(errno));
		goto skip;
	}
	kmap = mmap(NULL, GiB, PROT_READ | PROT_WRITE, MAP_SHARED, kfd, 0);
	if (kmap == MAP_FAILED) {
		snprintf(why, sizeof(why), "skipped: mmap of the kernel guest_memfd: %s",
			 strerror(errno));
		goto skip;
	}

	TRY("5a", n1, env_open(&e, 0, "sw"));
	TRY("5a", n1, fd = gmem_create(e.vm, GiB, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED));
	TRY("5a", n1, gmem_mmap(fd, 0, GiB, PROT_READ | PROT_WRITE, MAP_SHARED, &gmap));
	smap = map_memfd(GiB, &smfd, "5a", n1);
	if (smap == MAP_FAILED)
		goto out;
	/*
	 * Rotate which side goes first: each side reuses the memory the one
	 * before it just freed, and freed memory may have been reported to the
	 * hypervisor (free page reporting) and cost more to fault back. The
	 * third side, a plain memfd, is what gmem's host fault is made of.
	 */
	for (r = 0; r < nruns; r++) {
		int k;

		for (k = 0; k < 3; k++) {
			int side = (k + r) % 3;

			if (side == 0) {
				kt[r] = touch_ms(kmap, GiB);
				t0 = now_ns();
				if (fallocate(kfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					      0, GiB)) {
					snprintf(why, sizeof(why),
						 "skipped: fallocate on the kernel guest_memfd: %s",
						 strerror(errno));
					goto skip;
				}
				kp[r] = (double)(now_ns() - t0) / 1e6;
			} else if (side == 1) {
				gt[r] = touch_ms(gmap, GiB);
				t0 = now_ns();
				TRY("5b", n2, gmem_fallocate(fd, GMEM_FALLOC_PUNCH_HOLE |
							     GMEM_FALLOC_KEEP_SIZE, 0, GiB));
				gp[r] = (double)(now_ns() - t0) / 1e6;
			} else {
				st[r] = touch_ms(smap, GiB);
				t0 = now_ns();
				if (fallocate(smfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					      0, GiB)) {
					emit_error("5b", n2, "fallocate memfd", -errno);
					goto out;
				}
				sp[r] = (double)(now_ns() - t0) / 1e6;
			}
		}
		if (getenv("GMEM_BENCH_DEBUG"))
			fprintf(stderr, "5 run %d: kernel touch %.0f punch %.0f, gmem touch %.0f punch %.0f, memfd touch %.0f punch %.0f ms\n",
				r, kt[r], kp[r], gt[r], gp[r], st[r], sp[r]);
	}
	row = row_new("5a", n1, "ms");
	row.m = summarize(gt, nruns);
	row_compare(&row, "kernel guest_memfd", summarize(kt, nruns),
		    "gmem / kernel guest_memfd");
	row.target = "<= 1.00x";
	row.met = row.ratio <= 1.0 ? MET_YES : MET_NO;
	snprintf(row.note, sizeof(row.note),
		 "one byte written per 4 KiB page, gmem via gmem_mmap of a GMEM_FLAG_MMAP|INIT_SHARED file; plain memfd (shmem), same loop: %.0f ms [%.0f..%.0f]",
		 summarize(st, nruns).med, summarize(st, nruns).lo, summarize(st, nruns).hi);
	emit(&row);

	row = row_new("5b", n2, "ms");
	row.m = summarize(gp, nruns);
	row_compare(&row, "kernel guest_memfd", summarize(kp, nruns),
		    "gmem / kernel guest_memfd");
	row.target = "<= 1.00x";
	row.met = row.ratio <= 1.0 ? MET_YES : MET_NO;
	snprintf(row.note, sizeof(row.note),
		 "fallocate(PUNCH_HOLE|KEEP_SIZE) of the 1 GiB 5a populated; gmem via gmem_fallocate; plain memfd: %.0f ms",
		 summarize(sp, nruns).med);
	emit(&row);
	goto out;
skip:
	row = row_new("5a", n1, "");
	snprintf(row.skip, sizeof(row.skip), "%s", why);
	emit(&row);
	row = row_new("5b", n2, "");
	snprintf(row.skip, sizeof(row.skip), "%s", why);
	emit(&row);
out:
	if (gmap)
		gmem_munmap(gmap, GiB);
	close_fd(&fd);
	env_close(&e);
	unmap_memfd(smap, GiB, &smfd);
	if (kmap != MAP_FAILED)
		munmap(kmap, GiB);
	if (kfd >= 0)
		close(kfd);
	if (kvm_vm >= 0)
		close(kvm_vm);
	if (kvm >= 0)
		close(kvm);
}

/* ----------------------------------------------------------- 7. scaling */

#define NSIZES 4

void case7(void)
{
	static const uint64_t sizes[NSIZES] = { GiB, 16 * GiB, 256 * GiB, TiB };
	static const char *const conv_names[NSIZES] = {
		"convert 4K, file 1 GiB", "convert 4K, file 16 GiB",
		"convert 4K, file 256 GiB", "convert 4K, file 1 TiB",
	};
	static const char *const fault_names[NSIZES] = {
		"fault present, file 1 GiB", "fault present, file 16 GiB",
		"fault present, file 256 GiB", "fault present, file 1 TiB",
	};
	static const char *const rconv_names[NSTAGES] = {
		"convert 4K, map of 1 range", "convert 4K, map of 1k ranges",
		"convert 4K, map of 100k ranges", "convert 4K, map of 1M ranges",
	};
	static const char *const rfault_names[NSTAGES] = {
		"fault present, map of 1 range", "fault present, map of 1k ranges",
		"fault present, map of 100k ranges", "fault present, map of 1M ranges",
	};
	struct stat3 conv[NSIZES] = { 0 }, flt[NSIZES] = { 0 };
	double v[MAX_RUNS];
	struct env e = { -1, -1 };
	struct fault_set fs = { 0 };
	int fd = -1, s, r, err = 0, done = 0, pass;
	uint64_t nfaults = quick ? 100000 : 500000;
	struct row row;

	TRY("7a", conv_names[0], env_open(&e, 2 * TiB, "sw"));
	for (s = 0; s < NSIZES; s++) {
		TRY("7a", conv_names[s], fd = gmem_create(e.vm, sizes[s], 0));
		TRY("7a", conv_names[s], gmem_vm_bind(e.vm, 0, 0, sizes[s], fd, 0));
		TRY("7a", conv_names[s], fault_set_init(&fs, e.vm, sizes[s], 4096, 99));
		TRY("7a", conv_names[s], fault_set_refresh(&fs, fd));
		for (r = 0; r < nruns; r++) {
			v[r] = time_convert_pairs(fd, sizes[s] / 2, quick ? 5000 : 20000,
						  &err) / 2;
			TRY("7a", conv_names[s], err);
		}
		conv[s] = summarize(v, nruns);
		for (r = 0; r < nruns; r++) {
			v[r] = fault_ns(&fs, nfaults, &err);
			TRY("7a", fault_names[s], err);
		}
		flt[s] = summarize(v, nruns);
		fault_set_free(&fs);
		TRY("7a", conv_names[s], gmem_vm_unbind(e.vm, 0));
		close_fd(&fd);
		done = s + 1;
	}
out:
	fault_set_free(&fs);
	close_fd(&fd);
	env_close(&e);
	for (pass = 0; pass < 2; pass++) {
		for (s = 0; s < done; s++) {
			row = row_new("7a", pass ? fault_names[s] : conv_names[s], "ns");
			row.m = pass ? flt[s] : conv[s];
			row_compare(&row, "at 1 GiB", pass ? flt[0] : conv[0],
				    "cost at this size / cost at 1 GiB");
			if (s == NSIZES - 1)
				snprintf(row.note, sizeof(row.note),
					 "growth factor 1 TiB / 1 GiB: %.2fx (sparse files, one sw VM, 4096 random present pages)",
					 row.ratio);
			emit(&row);
		}
	}

	/* 7b: measured by case 3 while it built its map. */
	if (!frag.done) {
		row = row_new("7b", rconv_names[0], "");
		snprintf(row.skip, sizeof(row.skip), "%s", frag.skip);
		emit(&row);
		return;
	}
	for (pass = 0; pass < 2; pass++) {
		for (s = 0; s < frag.nstages; s++) {
			row = row_new("7b", pass ? rfault_names[s] : rconv_names[s], "ns");
			row.m = pass ? frag.fault[s] : frag.conv[s];
			row_compare(&row, "with 1 range", pass ? frag.fault[0] : frag.conv[0],
				    "cost with this map / cost with 1 range");
			if (s == frag.nstages - 1)
				snprintf(row.note, sizeof(row.note),
					 "growth factor %lld / 1 ranges: %.2fx%s",
					 (long long)frag.ranges[s], row.ratio,
					 quick ? " (--quick: stops at 100k ranges)" : "");
			else
				snprintf(row.note, sizeof(row.note), "%lld ranges",
					 (long long)frag.ranges[s]);
			emit(&row);
		}
	}
}
