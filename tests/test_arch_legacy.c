// SPDX-License-Identifier: MIT
/* The legacy contract: one invalidate hook for free and to-shared, on every backend. */
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

#include "arch_helpers.h"

/* ------------------------------------------------------ legacy contract */

/* What a guest and the host see of one page through a private round trip. */
struct outcome {
	uint8_t shared[PG];	/* guest's shared read after private->shared */
	uint8_t direct[PG];	/* the frame through the direct map then */
	uint8_t private[PG];	/* guest's private read after shared->private */
	uint8_t punched[PG];	/* the frame through the direct map after a punch */
	char state_shared[160];
	char state_private[160];
	char state_punched[160];
	uint64_t pfn_before, pfn_shared, pfn_private;
};

static void round_trip(const char *arch, uint64_t vm_flags, struct outcome *o)
{
	static uint8_t data[PG];
	int pool = gmem_pool_create(16 * GiB), vm, fd;

	ASSERT_GE(pool, 0);
	vm = gmem_vm_create(pool, arch, vm_flags);
	ASSERT_GE(vm, 0);
	fd = bound_file(vm, 4 * PG, 0);

	fill(data, PG, 47);
	guest_write(vm, GPA + PG, data, PG);
	o->pfn_before = frame_of(fd, PG);
	ASSERT_EQ(convert(fd, PG, PG, 0), 0);
	o->pfn_shared = frame_of(fd, PG);
	guest_read(vm, GPA + PG, o->shared, PG, SHARED_R);
	memcpy(o->direct, gmem_pool_frame(pool, o->pfn_shared), PG);
	ASSERT_GT(gmem_pool_frame_state(pool, o->pfn_shared, o->state_shared,
				   sizeof(o->state_shared)), 0);
	ASSERT_EQ(convert(fd, PG, PG, PRIV), 0);
	guest_read(vm, GPA + PG, o->private, PG, PRIVATE_R);
	o->pfn_private = frame_of(fd, PG);
	ASSERT_GT(gmem_pool_frame_state(pool, o->pfn_private, o->state_private,
				   sizeof(o->state_private)), 0);

	/* The free path: write private data again, then punch. */
	guest_write(vm, GPA + PG, data, PG);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 PG, PG), 0);
	memcpy(o->punched, gmem_pool_frame(pool, o->pfn_private), PG);
	ASSERT_GT(gmem_pool_frame_state(pool, o->pfn_private, o->state_punched,
				   sizeof(o->state_punched)), 0);

	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(gmem_vm_close(vm), 0);
	ASSERT_EQ(gmem_pool_close(pool), 0);
}

TEST(legacy_contract_pkvm_private_to_shared_destroys_the_content)
{
	static struct outcome split, legacy;
	uint8_t data[PG];

	fill(data, PG, 47);
	round_trip("pkvm", 0, &split);
	round_trip("pkvm", GMEM_VM_LEGACY_CONTRACT, &legacy);
	ASSERT_EQ(memcmp(split.shared, data, PG), 0);
	ASSERT_EQ(memcmp(split.private, data, PG), 0);
	/* The one hook cannot tell conversion from free: it scrubs. */
	ASSERT_TRUE(is_zero(legacy.shared, PG));
	ASSERT_TRUE(is_zero(legacy.direct, PG));
	ASSERT_TRUE(is_zero(legacy.private, PG));
	ASSERT_TRUE(strstr(legacy.state_shared, "pkvm host"));
	ASSERT_TRUE(strstr(legacy.state_private, "pkvm guest vm=1"));
	/* The free path is the same under both contracts. */
	ASSERT_TRUE(is_zero(legacy.punched, PG));
	ASSERT_EQ(strcmp(legacy.state_punched, split.state_punched), 0);
	/* The frame itself is kept. */
	ASSERT_EQ(legacy.pfn_shared, legacy.pfn_before);
	ASSERT_EQ(legacy.pfn_private, legacy.pfn_before);
}

/* sw, snp, tdx: the legacy hook gives the same outcome as the split contract. */
static void legacy_matches_split(const char *arch)
{
	static struct outcome split, legacy;

	round_trip(arch, 0, &split);
	round_trip(arch, GMEM_VM_LEGACY_CONTRACT, &legacy);
	ASSERT_EQ(memcmp(split.shared, legacy.shared, PG), 0);
	ASSERT_EQ(memcmp(split.direct, legacy.direct, PG), 0);
	ASSERT_EQ(memcmp(split.private, legacy.private, PG), 0);
	ASSERT_EQ(memcmp(split.punched, legacy.punched, PG), 0);
	if (strcmp(split.state_shared, legacy.state_shared) ||
	    strcmp(split.state_private, legacy.state_private) ||
	    strcmp(split.state_punched, legacy.state_punched))
		printf("#   %s: split \"%s\"/\"%s\"/\"%s\", legacy \"%s\"/\"%s\"/\"%s\"\n",
		       arch, split.state_shared, split.state_private,
		       split.state_punched, legacy.state_shared,
		       legacy.state_private, legacy.state_punched);
	ASSERT_EQ(strcmp(split.state_shared, legacy.state_shared), 0);
	ASSERT_EQ(strcmp(split.state_private, legacy.state_private), 0);
	ASSERT_EQ(strcmp(split.state_punched, legacy.state_punched), 0);
	ASSERT_EQ(legacy.pfn_shared, legacy.pfn_before);
	ASSERT_EQ(legacy.pfn_private, legacy.pfn_before);
}

TEST(legacy_contract_sw_converts_like_the_split_contract_keeping_content)
{
	uint8_t data[PG];
	static struct outcome o;

	legacy_matches_split("sw");
	fill(data, PG, 47);
	round_trip("sw", GMEM_VM_LEGACY_CONTRACT, &o);
	ASSERT_EQ(memcmp(o.shared, data, PG), 0);
	ASSERT_EQ(memcmp(o.private, data, PG), 0);
}

TEST(legacy_contract_snp_converts_like_the_split_contract)
{
	static struct outcome o;

	legacy_matches_split("snp");
	round_trip("snp", GMEM_VM_LEGACY_CONTRACT, &o);
	ASSERT_TRUE(is_zero(o.shared, PG));
	ASSERT_TRUE(strstr(o.state_shared, "rmp hypervisor"));
}

TEST(legacy_contract_tdx_converts_like_the_split_contract)
{
	static struct outcome o;

	legacy_matches_split("tdx");
	round_trip("tdx", GMEM_VM_LEGACY_CONTRACT, &o);
	ASSERT_TRUE(is_zero(o.shared, PG));
	ASSERT_TRUE(strstr(o.state_shared, "tdx host"));
}

TEST(legacy_contract_pkvm_free_path_still_scrubs_and_returns_frames)
{
	int pool = gmem_pool_create(16 * GiB), vm, fd;
	static uint8_t data[PG];
	uint64_t pfn;

	ASSERT_GE(pool, 0);
	vm = gmem_vm_create(pool, "pkvm", GMEM_VM_LEGACY_CONTRACT);
	ASSERT_GE(vm, 0);
	fd = bound_file(vm, 2 * PG, 0);
	fill(data, PG, 53);
	guest_write(vm, GPA, data, PG);
	pfn = frame_of(fd, 0);
	assert_state(pool, pfn, "pkvm guest vm=1");
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 0, PG), 0);
	assert_state(pool, pfn, "pkvm host");
	ASSERT_TRUE(is_zero(gmem_pool_frame(pool, pfn), PG));
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(gmem_vm_close(vm), 0);
	ASSERT_EQ(gmem_pool_close(pool), 0);
}
