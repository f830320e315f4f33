// SPDX-License-Identifier: MIT
/*
 * Huge folios under load: random calls on every backend keep every
 * invariant, faults racing splits, merges and punches, racing first faults.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "huge_helpers.h"
#include "bitmap.h"
#include "file.h"

/* A seeded mix of calls on 2 MiB files, checked after each one, per backend. */
static void random_workload(const char *arch, uint64_t vm_flags)
{
	struct env e;
	uint64_t seed = 0x9e3779b97f4a7c15ULL, pinned[64];
	unsigned int npinned = 0;
	int fd;

	e.pool = gmem_pool_create(64 * GiB);
	ASSERT_GE(e.pool, 0);
	e.vm = gmem_vm_create(e.pool, arch, GMEM_VM_CHECK | vm_flags);
	ASSERT_GE(e.vm, 0);
	fd = bound_file(&e, 4 * MiB, H2M);
	for (int step = 0; step < 300; step++) {
		uint64_t page, n, r;

		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		r = seed;
		page = (r >> 8) % 1024;
		n = (r >> 24) % 3 == 0 ? 1 : (r >> 24) % 3 == 1 ? 4 : 512 - page % 512;
		if (n > 1024 - page)
			n = 1024 - page;
		switch (r % 6) {
		case 0:
		case 1:
			gmem_set_attributes(fd, page * PG, n * PG,
					    (r >> 40) & 1 ? PRIV : 0, 0, NULL);
			break;
		case 2: {
			uint64_t attr = 0;

			ASSERT_EQ(gmem_get_attributes(fd, page * PG, &attr, NULL), 0);
			ASSERT_EQ(gmem_vm_fault(e.vm, GPA + page * PG,
						attr ? PRIVATE_W : SHARED_W,
						NULL, NULL), 0);
			break;
		}
		case 3:
			ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE |
						 GMEM_FALLOC_PUNCH_HOLE,
						 page * PG, n * PG), 0);
			break;
		case 4:
			if (npinned < 64 && !gmem_pin(fd, page * PG, PG))
				pinned[npinned++] = page;
			break;
		case 5:
			if (npinned)
				ASSERT_EQ(gmem_unpin(fd, pinned[--npinned] * PG, PG), 0);
			break;
		}
	}
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(in_use(&e), 0);
	assert_clean(&e);
	env_free(&e);
}

TEST(random_calls_on_2m_files_keep_every_invariant_on_sw)
{
	random_workload("sw", 0);
}

TEST(random_calls_on_2m_files_keep_every_invariant_on_snp)
{
	random_workload("snp", 0);
}

TEST(random_calls_on_2m_files_keep_every_invariant_on_tdx)
{
	random_workload("tdx", 0);
}

TEST(random_calls_on_2m_files_keep_every_invariant_on_pkvm)
{
	random_workload("pkvm", 0);
}

/* ------------------------------------------------------------ threads */

struct race {
	struct env *e;
	int fd;
	atomic_bool stop;
	atomic_int errors;
};

/* Faults everywhere in the file as whatever the page is now. */
static void *faulter(void *arg)
{
	struct race *r = arg;
	uint64_t seed = (uint64_t)(uintptr_t)&seed;

	while (!atomic_load(&r->stop)) {
		uint64_t page, attr = 0;
		struct gmem_exit ex;
		int ret;

		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		page = (seed >> 33) % 1024;
		if (gmem_get_attributes(r->fd, page * PG, &attr, NULL))
			atomic_fetch_add(&r->errors, 1);
		ret = gmem_vm_fault(r->e->vm, GPA + page * PG,
				    attr ? PRIVATE_W : SHARED_W, NULL, &ex);
		if (ret < 0)
			atomic_fetch_add(&r->errors, 1);
	}
	return NULL;
}

TEST(faults_racing_splits_merges_and_punches_never_map_a_stale_entry)
{
	struct env e = env_new("pkvm");
	struct race r = { .e = &e };
	pthread_t t;
	uint64_t seed = 42;

	r.fd = bound_file(&e, 4 * MiB, H2M);
	ASSERT_EQ(pthread_create(&t, NULL, faulter, &r), 0);
	for (int i = 0; i < 400; i++) {
		uint64_t page;

		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		page = (seed >> 33) % 1024;
		if (i % 7 == 6)
			gmem_fallocate(r.fd, GMEM_FALLOC_KEEP_SIZE |
				       GMEM_FALLOC_PUNCH_HOLE, page * PG, PG);
		else
			convert(r.fd, page * PG, PG, i & 1 ? PRIV : 0);
		if (i % 50 == 49)
			convert(r.fd, 0, 4 * MiB, PRIV);
	}
	atomic_store(&r.stop, true);
	pthread_join(t, NULL);
	ASSERT_EQ(atomic_load(&r.errors), 0);
	/* Every mapping left agrees with the file: attribute and frame. */
	for (uint64_t page = 0; page < 1024; page++) {
		uint64_t pfn = 0, attr = 0, fpfn = 0;
		int private = -1;

		if (gmem_vm_stage2(e.vm, GPA + page * PG, &pfn, &private) != 1)
			continue;
		ASSERT_EQ(gmem_get_attributes(r.fd, page * PG, &attr, NULL), 0);
		ASSERT_EQ(private, !!attr);
		ASSERT_EQ(gmem_folio_info(r.fd, page * PG, &fpfn, NULL, NULL), 1);
		ASSERT_EQ(pfn, fpfn);
	}
	ASSERT_EQ(gmem_close(r.fd), 0);
	ASSERT_EQ(in_use(&e), 0);
	env_free(&e);
}

/* ------------------------------------------- racing first allocations */

struct first {
	struct env *e;
	pthread_barrier_t *go;
	unsigned int seed;
	atomic_int *errors;
};

static void *first_faulter(void *arg)
{
	struct first *f = arg;
	uint64_t s = f->seed;

	pthread_barrier_wait(f->go);
	for (int i = 0; i < 4096; i++) {
		uint64_t page;

		s = s * 6364136223846793005ULL + 1442695040888963407ULL;
		page = (s >> 33) % (32 * 512);
		if (gmem_vm_fault(f->e->vm, GPA + page * PG, PRIVATE_W, NULL, NULL))
			atomic_fetch_add(f->errors, 1);
	}
	return NULL;
}

TEST(racing_first_faults_allocate_each_huge_folio_once)
{
	struct env e = env_new("pkvm");
	int fd = bound_file(&e, 64 * MiB, H2M);
	pthread_barrier_t go;
	atomic_int errors = 0;
	struct first args[2] = {
		{ &e, &go, 1, &errors }, { &e, &go, 2, &errors },
	};
	pthread_t t[2];

	pthread_barrier_init(&go, NULL, 2);
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(pthread_create(&t[i], NULL, first_faulter, &args[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&go);
	ASSERT_EQ(atomic_load(&errors), 0);
	ASSERT_EQ(in_use(&e), 32 * 512);
	for (uint64_t b = 0; b < 32; b++) {
		ASSERT_EQ(order_at(fd, b * 2 * MiB + 77 * PG), 9);
		ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA + b * 2 * MiB), 1);
	}
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(in_use(&e), 0);
	env_free(&e);
}

/*
 * The racing test above, made deterministic: an allocator sets the present
 * bits of the whole block before it stores the block byte, and this is the
 * state a fault finds between the two. The fault must still map the block
 * with one 2 MiB entry, not the page alone.
 */
TEST(a_fault_between_a_racing_allocations_bits_and_block_byte_maps_huge)
{
	struct env e = env_new("pkvm");
	int fd = bound_file(&e, 4 * MiB, H2M);
	struct gmem_file *f;
	uint64_t added;

	ASSERT_EQ(file_get(fd, "test", &f), 0);
	brlock_read_lock(&f->invalidate_lock);
	added = bitmap_set_range(f->present, 0, 512);
	folio_account(f, 0, (int64_t)added);
	brlock_read_unlock(&f->invalidate_lock);
	ASSERT_EQ(added, 512);
	ASSERT_EQ(huge_block_state(f, 0), BLOCK_ABSENT);

	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 77 * PG, PRIVATE_W, NULL, NULL), 0);
	ASSERT_EQ(huge_block_state(f, 0), BLOCK_WHOLE);
	ASSERT_EQ(gmem_vm_stage2_level(e.vm, GPA), 1);
	ASSERT_EQ(order_at(fd, 77 * PG), 9);
	ASSERT_EQ(in_use(&e), 512);
	file_put(f);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(in_use(&e), 0);
	env_free(&e);
}
