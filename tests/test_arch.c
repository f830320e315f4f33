// SPDX-License-Identifier: MIT
/* Arch backends: what sw, snp, tdx and pkvm do to frames and content, split and legacy contract. */
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

#include "harness.h"

#define PG	GMEM_PAGE_SIZE
#define MiB	(1ULL << 20)
#define GiB	(1ULL << 30)
#define PRIV	GMEM_ATTR_PRIVATE

#define SHARED_R	0
#define SHARED_W	GMEM_FAULT_WRITE
#define PRIVATE_R	GMEM_FAULT_PRIVATE
#define PRIVATE_W	(GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE)

/* Guest address where the tests bind their file (slot 0, file offset 0). */
#define GPA		(16 * MiB)
#define GFN		(GPA / PG)

static int convert(int fd, uint64_t offset, uint64_t size, uint64_t attr)
{
	return gmem_set_attributes(fd, offset, size, attr, 0, NULL);
}

static uint64_t frame_of(int fd, uint64_t offset)
{
	uint64_t pfn = 0;

	ASSERT_EQ(gmem_folio_info(fd, offset, &pfn, NULL, NULL), 1);
	return pfn;
}

static void fill(uint8_t *p, size_t n, unsigned int seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 131 + (i >> 8));
}

static bool is_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

/* The arch model's words for frame @pfn contain @want. */
static void assert_state(int pool, uint64_t pfn, const char *want)
{
	char buf[160] = "";

	ASSERT_GT(gmem_frame_state(pool, pfn, buf, sizeof(buf)), 0);
	if (!strstr(buf, want))
		printf("#   frame %#llx is \"%s\", expected \"%s\"\n",
		       (unsigned long long)pfn, buf, want);
	ASSERT_TRUE(strstr(buf, want));
}

static void guest_write(int vm, uint64_t gpa, const void *buf, size_t len)
{
	struct gmem_exit exit;

	ASSERT_EQ(gmem_vm_access(vm, gpa, (void *)buf, len, PRIVATE_W, &exit), 0);
}

static void guest_read(int vm, uint64_t gpa, void *buf, size_t len,
		       unsigned int flags)
{
	struct gmem_exit exit;

	memset(buf, 0xa5, len);
	ASSERT_EQ(gmem_vm_access(vm, gpa, buf, len, flags, &exit), 0);
}

/* A file of @size bytes on @vm, bound at GPA as slot 0. */
static int bound_file(int vm, uint64_t size, uint64_t flags)
{
	int fd = gmem_create(vm, size, flags);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_bind(vm, 0, GPA, size, fd, 0), 0);
	return fd;
}

/* ------------------------------------------------ content-keeping archs */

/* sw and pkvm: private data survives both conversions, in the same frame. */
static void conversion_keeps_frame_and_content(const char *arch)
{
	struct env e = env_new(arch);
	int fd = bound_file(e.vm, 4 * PG, 0);
	static uint8_t data[PG], again[PG], buf[PG];
	uint64_t pfn;

	fill(data, PG, 7);
	guest_write(e.vm, GPA + PG, data, PG);
	pfn = frame_of(fd, PG);

	ASSERT_EQ(convert(fd, PG, PG, 0), 0);
	ASSERT_EQ(frame_of(fd, PG), pfn);
	guest_read(e.vm, GPA + PG, buf, PG, SHARED_R);
	ASSERT_EQ(memcmp(buf, data, PG), 0);
	ASSERT_EQ(memcmp(gmem_pool_frame(e.pool, pfn), data, PG), 0);

	/* What the guest writes while shared comes back private too. */
	fill(again, PG, 99);
	ASSERT_EQ(gmem_vm_access(e.vm, GPA + PG, again, PG, SHARED_W, NULL), 0);
	ASSERT_EQ(convert(fd, PG, PG, PRIV), 0);
	ASSERT_EQ(frame_of(fd, PG), pfn);
	guest_read(e.vm, GPA + PG, buf, PG, PRIVATE_R);
	ASSERT_EQ(memcmp(buf, again, PG), 0);
	ASSERT_EQ(memcmp(gmem_pool_frame(e.pool, pfn), again, PG), 0);

	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(sw_conversion_keeps_frame_and_every_byte_both_ways)
{
	conversion_keeps_frame_and_content("sw");
}

TEST(pkvm_conversion_keeps_frame_and_every_byte_both_ways)
{
	conversion_keeps_frame_and_content("pkvm");
}

TEST(sw_frames_have_no_hardware_state)
{
	struct env e = env_new("sw");
	int fd = bound_file(e.vm, 2 * PG, 0);
	uint64_t pfn;

	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, PRIVATE_W, &pfn, NULL), 0);
	assert_state(e.pool, pfn, "no hardware state");
	ASSERT_EQ(convert(fd, 0, PG, 0), 0);
	assert_state(e.pool, pfn, "no hardware state");
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

/* -------------------------------------------------------------------- snp */

TEST(snp_private_fault_assigns_the_rmp_entry_to_the_guest_at_its_gfn)
{
	struct env e = env_new("snp");
	int fd = bound_file(e.vm, 4 * PG, 0);
	uint64_t pfn, fpfn;
	char want[64];

	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 2 * PG, PG), 0);
	fpfn = frame_of(fd, 2 * PG);
	assert_state(e.pool, fpfn, "rmp hypervisor");

	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 2 * PG, PRIVATE_W, &pfn, NULL), 0);
	ASSERT_EQ(pfn, fpfn);
	snprintf(want, sizeof(want), "rmp assigned asid=1 gfn=%#llx 4K",
		 (unsigned long long)(GFN + 2));
	assert_state(e.pool, pfn, want);
	assert_state(e.pool, pfn, "validated");
	/* Only the faulted page. */
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 3 * PG, PRIVATE_W, &pfn, NULL), 0);
	snprintf(want, sizeof(want), "gfn=%#llx ", (unsigned long long)(GFN + 3));
	assert_state(e.pool, pfn, want);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(snp_shared_fault_leaves_the_frame_with_the_hypervisor)
{
	struct env e = env_new("snp");
	int fd = bound_file(e.vm, 2 * PG, GMEM_FLAG_INIT_SHARED);
	uint64_t pfn;

	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, SHARED_W, &pfn, NULL), 0);
	assert_state(e.pool, pfn, "rmp hypervisor");
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(snp_private_to_shared_returns_the_frame_to_the_hypervisor_content_lost)
{
	struct env e = env_new("snp");
	int fd = bound_file(e.vm, 4 * PG, 0);
	static uint8_t data[PG], buf[PG];
	uint64_t pfn;

	fill(data, PG, 3);
	guest_write(e.vm, GPA + PG, data, PG);
	pfn = frame_of(fd, PG);
	assert_state(e.pool, pfn, "rmp assigned asid=1");

	ASSERT_EQ(convert(fd, PG, PG, 0), 0);
	ASSERT_EQ(frame_of(fd, PG), pfn);
	assert_state(e.pool, pfn, "rmp hypervisor");
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, pfn), PG));
	guest_read(e.vm, GPA + PG, buf, PG, SHARED_R);
	ASSERT_TRUE(is_zero(buf, PG));
	/* The shared fault does not assign it again. */
	assert_state(e.pool, pfn, "rmp hypervisor");

	/* Back to private: a new assignment, still nothing of the old data. */
	ASSERT_EQ(convert(fd, PG, PG, PRIV), 0);
	guest_read(e.vm, GPA + PG, buf, PG, PRIVATE_R);
	ASSERT_TRUE(is_zero(buf, PG));
	assert_state(e.pool, pfn, "rmp assigned asid=1");
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(snp_punching_a_private_page_leaves_its_frame_hypervisor_owned)
{
	struct env e = env_new("snp");
	int fd = bound_file(e.vm, 4 * PG, 0);
	static uint8_t data[PG], buf[PG];
	uint64_t pfn;

	fill(data, PG, 5);
	guest_write(e.vm, GPA, data, PG);
	pfn = frame_of(fd, 0);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 0, PG), 0);
	ASSERT_EQ(gmem_folio_info(fd, 0, NULL, NULL, NULL), 0);
	assert_state(e.pool, pfn, "rmp hypervisor");
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, pfn), PG));
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA, NULL, NULL), 0);
	/* The next private access sees a fresh zero page. */
	guest_read(e.vm, GPA, buf, PG, PRIVATE_R);
	ASSERT_TRUE(is_zero(buf, PG));
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(snp_a_second_make_private_of_an_assigned_page_is_harmless)
{
	struct env e = env_new("snp");
	int fd = bound_file(e.vm, 2 * PG, 0);
	static uint8_t data[PG], buf[PG];
	uint64_t pfn, again;
	char want[64];

	fill(data, PG, 11);
	guest_write(e.vm, GPA, data, PG);
	pfn = frame_of(fd, 0);
	for (int i = 0; i < 3; i++) {
		ASSERT_EQ(gmem_vm_fault(e.vm, GPA, PRIVATE_R, &again, NULL), 0);
		ASSERT_EQ(again, pfn);
	}
	/* Converting an already private page is a no-op too. */
	ASSERT_EQ(convert(fd, 0, PG, PRIV), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, PRIVATE_W, &again, NULL), 0);
	snprintf(want, sizeof(want), "rmp assigned asid=1 gfn=%#llx 4K validated",
		 (unsigned long long)GFN);
	assert_state(e.pool, pfn, want);
	guest_read(e.vm, GPA, buf, PG, PRIVATE_R);
	ASSERT_EQ(memcmp(buf, data, PG), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(snp_closing_a_file_returns_every_private_frame_to_the_hypervisor)
{
	struct env e = env_new("snp");
	int fd = bound_file(e.vm, 4 * PG, 0);
	uint64_t pfn[4];

	for (int i = 0; i < 4; i++) {
		ASSERT_EQ(gmem_vm_fault(e.vm, GPA + i * PG, PRIVATE_W, &pfn[i], NULL), 0);
		assert_state(e.pool, pfn[i], "rmp assigned");
	}
	ASSERT_EQ(gmem_close(fd), 0);
	for (int i = 0; i < 4; i++)
		assert_state(e.pool, pfn[i], "rmp hypervisor");
	env_free(&e);
}

/* -------------------------------------------------------------------- tdx */

TEST(tdx_private_fault_adds_the_frame_to_the_td)
{
	struct env e = env_new("tdx");
	int fd = bound_file(e.vm, 4 * PG, 0);
	uint64_t pfn;

	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, 4 * PG), 0);
	assert_state(e.pool, frame_of(fd, PG), "tdx host");
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + PG, PRIVATE_R, &pfn, NULL), 0);
	ASSERT_EQ(pfn, frame_of(fd, PG));
	assert_state(e.pool, pfn, "tdx td=1");
	assert_state(e.pool, frame_of(fd, 2 * PG), "tdx host");
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(tdx_private_to_shared_removes_the_frame_from_the_td_content_lost)
{
	struct env e = env_new("tdx");
	int fd = bound_file(e.vm, 4 * PG, 0);
	static uint8_t data[PG], buf[PG];
	uint64_t pfn;

	fill(data, PG, 17);
	guest_write(e.vm, GPA + 2 * PG, data, PG);
	pfn = frame_of(fd, 2 * PG);
	assert_state(e.pool, pfn, "tdx td=1");
	ASSERT_EQ(memcmp(gmem_pool_frame(e.pool, pfn), data, PG), 0);

	ASSERT_EQ(convert(fd, 2 * PG, PG, 0), 0);
	ASSERT_EQ(frame_of(fd, 2 * PG), pfn);
	assert_state(e.pool, pfn, "tdx host");
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, pfn), PG));
	guest_read(e.vm, GPA + 2 * PG, buf, PG, SHARED_R);
	ASSERT_TRUE(is_zero(buf, PG));
	assert_state(e.pool, pfn, "tdx host");
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(tdx_reconverted_page_is_accepted_zeroed_even_after_host_writes)
{
	struct env e = env_new("tdx");
	int fd = bound_file(e.vm, 4 * PG, GMEM_FLAG_MMAP);
	static uint8_t data[PG], buf[PG];
	void *addr;
	uint64_t pfn;

	fill(data, PG, 23);
	guest_write(e.vm, GPA + PG, data, PG);
	pfn = frame_of(fd, PG);
	ASSERT_EQ(convert(fd, PG, PG, 0), 0);

	/* The host fills the shared page through its mapping. */
	ASSERT_EQ(gmem_mmap(fd, 0, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED,
			    &addr), 0);
	memset((uint8_t *)addr + PG, 0x5a, PG);
	ASSERT_EQ(((uint8_t *)gmem_pool_frame(e.pool, pfn))[100], 0x5a);

	ASSERT_EQ(convert(fd, PG, PG, PRIV), 0);
	guest_read(e.vm, GPA + PG, buf, PG, PRIVATE_R);
	ASSERT_TRUE(is_zero(buf, PG));
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, pfn), PG));
	ASSERT_EQ(frame_of(fd, PG), pfn);
	assert_state(e.pool, pfn, "tdx td=1");
	ASSERT_EQ(gmem_munmap(addr, 4 * PG), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(tdx_reconverted_page_is_zeroed_after_guest_shared_writes)
{
	struct env e = env_new("tdx");
	int fd = bound_file(e.vm, 2 * PG, 0);
	static uint8_t data[PG], buf[PG];

	guest_write(e.vm, GPA, memset(data, 0x11, PG), PG);
	ASSERT_EQ(convert(fd, 0, PG, 0), 0);
	fill(data, PG, 29);
	ASSERT_EQ(gmem_vm_access(e.vm, GPA, data, PG, SHARED_W, NULL), 0);
	ASSERT_EQ(convert(fd, 0, PG, PRIV), 0);
	guest_read(e.vm, GPA, buf, PG, PRIVATE_R);
	ASSERT_TRUE(is_zero(buf, PG));
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(tdx_unbinding_a_slot_removes_only_its_private_frames_from_the_td)
{
	struct env e = env_new("tdx");
	int fd = gmem_create(e.vm, 8 * PG, 0);
	static uint8_t a[PG], b[PG];
	uint64_t gpa2 = GPA + 64 * MiB, pa, pb;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_bind(e.vm, 0, GPA, 4 * PG, fd, 0), 0);
	ASSERT_EQ(gmem_bind(e.vm, 1, gpa2, 4 * PG, fd, 4 * PG), 0);
	fill(a, PG, 31);
	fill(b, PG, 37);
	guest_write(e.vm, GPA + PG, a, PG);
	guest_write(e.vm, gpa2 + PG, b, PG);
	pa = frame_of(fd, PG);
	pb = frame_of(fd, 5 * PG);
	assert_state(e.pool, pa, "tdx td=1");
	assert_state(e.pool, pb, "tdx td=1");

	ASSERT_EQ(gmem_unbind(e.vm, 0), 0);
	assert_state(e.pool, pa, "tdx host");
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, pa), PG));
	/* The folio stays in the file; only the TD lost it. */
	ASSERT_EQ(frame_of(fd, PG), pa);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + PG, PRIVATE_R, NULL, NULL), -EFAULT);
	/* The other slot is untouched. */
	assert_state(e.pool, pb, "tdx td=1");
	ASSERT_EQ(memcmp(gmem_pool_frame(e.pool, pb), b, PG), 0);

	/* Bound again, the page is accepted afresh: zero. */
	ASSERT_EQ(gmem_bind(e.vm, 0, GPA, 4 * PG, fd, 0), 0);
	guest_read(e.vm, GPA + PG, a, PG, PRIVATE_R);
	ASSERT_TRUE(is_zero(a, PG));
	assert_state(e.pool, pa, "tdx td=1");
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(tdx_punch_leaves_frames_out_of_every_td)
{
	struct env e = env_new("tdx");
	int fd = bound_file(e.vm, 4 * PG, 0);
	static uint8_t data[2 * PG];
	uint64_t p0, p1;

	fill(data, sizeof(data), 41);
	guest_write(e.vm, GPA, data, sizeof(data));
	p0 = frame_of(fd, 0);
	p1 = frame_of(fd, PG);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 0, 2 * PG), 0);
	assert_state(e.pool, p0, "tdx host");
	assert_state(e.pool, p1, "tdx host");
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, p0), PG));
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, p1), PG));
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

/* ------------------------------------------------------------------- pkvm */

TEST(pkvm_ownership_follows_private_fault_and_both_conversions)
{
	struct env e = env_new("pkvm");
	int fd = bound_file(e.vm, 4 * PG, 0);
	uint64_t pfn;

	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, PG), 0);
	assert_state(e.pool, frame_of(fd, 0), "pkvm host");
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, PRIVATE_W, &pfn, NULL), 0);
	assert_state(e.pool, pfn, "pkvm guest vm=1");
	ASSERT_EQ(convert(fd, 0, PG, 0), 0);
	assert_state(e.pool, pfn, "pkvm shared vm=1");
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, SHARED_W, NULL, NULL), 0);
	assert_state(e.pool, pfn, "pkvm shared vm=1");
	ASSERT_EQ(convert(fd, 0, PG, PRIV), 0);
	assert_state(e.pool, pfn, "pkvm guest vm=1");
	ASSERT_EQ(frame_of(fd, 0), pfn);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(pkvm_punch_and_close_scrub_frames_and_return_them_to_the_host)
{
	struct env e = env_new("pkvm");
	int fd = bound_file(e.vm, 4 * PG, 0);
	static uint8_t data[3 * PG];
	uint64_t p0, p1, p2;

	fill(data, sizeof(data), 43);
	guest_write(e.vm, GPA, data, sizeof(data));
	p0 = frame_of(fd, 0);
	p1 = frame_of(fd, PG);
	p2 = frame_of(fd, 2 * PG);
	ASSERT_EQ(convert(fd, PG, PG, 0), 0);	/* p1 guest-owned, shared */
	assert_state(e.pool, p1, "pkvm shared vm=1");

	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 0, 2 * PG), 0);
	assert_state(e.pool, p0, "pkvm host");
	assert_state(e.pool, p1, "pkvm host");
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, p0), PG));
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, p1), PG));
	assert_state(e.pool, p2, "pkvm guest vm=1");

	ASSERT_EQ(gmem_close(fd), 0);
	assert_state(e.pool, p2, "pkvm host");
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, p2), PG));
	env_free(&e);
}

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
	ASSERT_GT(gmem_frame_state(pool, o->pfn_shared, o->state_shared,
				   sizeof(o->state_shared)), 0);
	ASSERT_EQ(convert(fd, PG, PG, PRIV), 0);
	guest_read(vm, GPA + PG, o->private, PG, PRIVATE_R);
	o->pfn_private = frame_of(fd, PG);
	ASSERT_GT(gmem_frame_state(pool, o->pfn_private, o->state_private,
				   sizeof(o->state_private)), 0);

	/* The free path: write private data again, then punch. */
	guest_write(vm, GPA + PG, data, PG);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 PG, PG), 0);
	memcpy(o->punched, gmem_pool_frame(pool, o->pfn_private), PG);
	ASSERT_GT(gmem_frame_state(pool, o->pfn_private, o->state_punched,
				   sizeof(o->state_punched)), 0);

	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(gmem_vm_destroy(vm), 0);
	ASSERT_EQ(gmem_pool_destroy(pool), 0);
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
	ASSERT_EQ(gmem_vm_destroy(vm), 0);
	ASSERT_EQ(gmem_pool_destroy(pool), 0);
}

/* --------------------------------------------------------- pools and ids */

TEST(pool_refuses_a_vm_of_a_second_arch_with_einval)
{
	static const char *const archs[] = { "sw", "snp", "tdx", "pkvm" };

	for (int first = 0; first < 4; first++) {
		int pool = gmem_pool_create(16 * GiB), vm, vm2;

		ASSERT_GE(pool, 0);
		vm = gmem_vm_create(pool, archs[first], 0);
		ASSERT_GE(vm, 0);
		for (int other = 0; other < 4; other++) {
			if (other == first)
				continue;
			ASSERT_EQ(gmem_vm_create(pool, archs[other], 0), -EINVAL);
			ASSERT_EQ(gmem_vm_create(pool, archs[other],
						 GMEM_VM_CHECK), -EINVAL);
		}
		/* The same arch is still welcome. */
		vm2 = gmem_vm_create(pool, archs[first], GMEM_VM_LEGACY_CONTRACT);
		ASSERT_GE(vm2, 0);
		ASSERT_EQ(gmem_vm_destroy(vm2), 0);
		ASSERT_EQ(gmem_vm_destroy(vm), 0);
		ASSERT_EQ(gmem_pool_destroy(pool), 0);
	}
}

TEST(pool_refusing_a_second_arch_leaves_a_reason)
{
	int pool = gmem_pool_create(16 * GiB), vm;

	ASSERT_GE(pool, 0);
	vm = gmem_vm_create(pool, "snp", 0);
	ASSERT_GE(vm, 0);
	ASSERT_EQ(gmem_vm_create(pool, "tdx", 0), -EINVAL);
	ASSERT_TRUE(strstr(gmem_last_error(), "gmem_vm_create"));
	/* An unknown arch is still -ENOENT, not a mismatch. */
	ASSERT_EQ(gmem_vm_create(pool, "nope", 0), -ENOENT);
	ASSERT_EQ(gmem_vm_destroy(vm), 0);
	ASSERT_EQ(gmem_pool_destroy(pool), 0);
}

/* Two VMs of @arch on one pool: each one's private frame names its own id. */
static void vms_get_distinct_ids(const char *arch, const char *fmt)
{
	int pool = gmem_pool_create(16 * GiB), vm[2], fd[2];
	char want[64];
	uint64_t pfn[2];

	ASSERT_GE(pool, 0);
	for (int i = 0; i < 2; i++) {
		vm[i] = gmem_vm_create(pool, arch, 0);
		ASSERT_GE(vm[i], 0);
		fd[i] = bound_file(vm[i], 2 * PG, 0);
		ASSERT_EQ(gmem_vm_fault(vm[i], GPA, PRIVATE_W, &pfn[i], NULL), 0);
	}
	ASSERT_NE(pfn[0], pfn[1]);
	for (int i = 0; i < 2; i++) {
		snprintf(want, sizeof(want), fmt, i + 1);
		assert_state(pool, pfn[i], want);
	}
	for (int i = 0; i < 2; i++) {
		ASSERT_EQ(gmem_close(fd[i]), 0);
		ASSERT_EQ(gmem_vm_destroy(vm[i]), 0);
	}
	ASSERT_EQ(gmem_pool_destroy(pool), 0);
}

TEST(snp_vms_of_one_pool_get_distinct_asids)
{
	vms_get_distinct_ids("snp", "rmp assigned asid=%d ");
}

TEST(tdx_vms_of_one_pool_get_distinct_td_ids)
{
	vms_get_distinct_ids("tdx", "tdx td=%d");
}

TEST(pkvm_vms_of_one_pool_get_distinct_vmids)
{
	vms_get_distinct_ids("pkvm", "pkvm guest vm=%d");
}

/*
 * Reclaim leaves frames fit for anyone: a file of a second VM that gets the
 * frames of a closed file of the first takes them over, and reads zeroes.
 */
static void freed_frames_serve_another_vm(const char *arch, uint64_t flags,
					  const char *fmt)
{
	int pool = gmem_pool_create(16 * GiB), vm1, vm2, fd;
	static uint8_t data[PG], buf[PG];
	uint64_t pfn, again;
	char want[64];

	ASSERT_GE(pool, 0);
	vm1 = gmem_vm_create(pool, arch, flags);
	ASSERT_GE(vm1, 0);
	vm2 = gmem_vm_create(pool, arch, flags);
	ASSERT_GE(vm2, 0);
	fd = bound_file(vm1, 4 * PG, 0);
	fill(data, PG, 59);
	guest_write(vm1, GPA, data, PG);
	pfn = frame_of(fd, 0);
	ASSERT_EQ(gmem_close(fd), 0);

	fd = bound_file(vm2, 4 * PG, 0);
	ASSERT_EQ(gmem_vm_fault(vm2, GPA, PRIVATE_R, &again, NULL), 0);
	ASSERT_EQ(again, pfn);	/* first fit: the same window */
	snprintf(want, sizeof(want), fmt, 2);
	assert_state(pool, pfn, want);
	guest_read(vm2, GPA, buf, PG, PRIVATE_R);
	ASSERT_TRUE(is_zero(buf, PG));
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(gmem_vm_destroy(vm1), 0);
	ASSERT_EQ(gmem_vm_destroy(vm2), 0);
	ASSERT_EQ(gmem_pool_destroy(pool), 0);
}

TEST(sw_frames_freed_by_one_vm_read_zero_for_the_next)
{
	freed_frames_serve_another_vm("sw", 0, "no hardware state");
	freed_frames_serve_another_vm("sw", GMEM_VM_LEGACY_CONTRACT,
				      "no hardware state");
}

TEST(snp_frames_freed_by_one_vm_are_assigned_to_the_next)
{
	freed_frames_serve_another_vm("snp", 0, "rmp assigned asid=%d ");
	freed_frames_serve_another_vm("snp", GMEM_VM_LEGACY_CONTRACT,
				      "rmp assigned asid=%d ");
}

TEST(tdx_frames_freed_by_one_td_join_the_next)
{
	freed_frames_serve_another_vm("tdx", 0, "tdx td=%d");
	freed_frames_serve_another_vm("tdx", GMEM_VM_LEGACY_CONTRACT, "tdx td=%d");
}

TEST(pkvm_frames_freed_by_one_vm_are_donated_to_the_next)
{
	freed_frames_serve_another_vm("pkvm", 0, "pkvm guest vm=%d");
	freed_frames_serve_another_vm("pkvm", GMEM_VM_LEGACY_CONTRACT,
				      "pkvm guest vm=%d");
}

TEST(frame_state_of_a_pool_without_vms_is_no_hardware_state)
{
	int pool = gmem_pool_create(16 * GiB);
	char buf[64] = "";

	ASSERT_GE(pool, 0);
	ASSERT_GT(gmem_frame_state(pool, 0, buf, sizeof(buf)), 0);
	ASSERT_EQ(strcmp(buf, "no hardware state"), 0);
	ASSERT_EQ(gmem_frame_state(pool, 0, NULL, 0), 0);
	ASSERT_EQ(gmem_pool_destroy(pool), 0);
}

TEST(frame_state_with_a_length_above_int_max_returns_the_length_written)
{
	struct env e = env_new("snp");
	char want[128], buf[128];
	int n = gmem_frame_state(e.pool, 0, want, sizeof(want));

	ASSERT_GT(n, 0);
	ASSERT_LT(n, (int)sizeof(want) - 1);	/* not truncated */
	/* The buffer is shorter than @len claims, but the string is shorter still. */
	memset(buf, 'x', sizeof(buf));
	ASSERT_EQ(gmem_frame_state(e.pool, 0, buf, (size_t)INT32_MAX + 2), n);
	ASSERT_EQ(strcmp(buf, want), 0);
	ASSERT_EQ(gmem_frame_state(e.pool, 0, buf, SIZE_MAX), n);
	ASSERT_EQ(gmem_frame_state(e.pool, 0, buf, (size_t)INT32_MAX + 1), n);
	ASSERT_EQ(gmem_frame_state(e.pool, 0, buf, (size_t)UINT32_MAX + 1), n);
	env_free(&e);
}

TEST(frame_state_rejects_bad_pool_pfn_and_buffer)
{
	struct env e = env_new("snp");
	char buf[8];

	ASSERT_EQ(gmem_frame_state(9999, 0, buf, sizeof(buf)), -EBADF);
	ASSERT_EQ(gmem_frame_state(e.vm, 0, buf, sizeof(buf)), -EINVAL);
	ASSERT_EQ(gmem_frame_state(e.pool, (64 * GiB) / PG, buf, sizeof(buf)), -EINVAL);
	ASSERT_EQ(gmem_frame_state(e.pool, 0, NULL, 4), -EINVAL);
	/* Truncated to len - 1, NUL-terminated. */
	ASSERT_EQ(gmem_frame_state(e.pool, 0, buf, sizeof(buf)), (int)sizeof(buf) - 1);
	ASSERT_EQ(strcmp(buf, "rmp hyp"), 0);
	env_free(&e);
}
