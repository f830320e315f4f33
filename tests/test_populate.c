// SPDX-License-Identifier: MIT
/* Launch-time population (gmem_vm_populate): validation, partial progress, content, arch takeover. */
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

#include "harness.h"

#define PG	GMEM_PAGE_SIZE
#define MiB	(1ULL << 20)
#define PRIV	GMEM_ATTR_PRIVATE

#define PRIVATE_R	GMEM_FAULT_PRIVATE
#define PRIVATE_W	(GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE)

/* A handle number no test ever reaches. */
#define NEVER_OPEN	9999

/* Guest address where the tests bind their file (slot 0, file offset 0). */
#define GPA		(16 * MiB)
#define GFN		(GPA / PG)

static const char *const archs[] = { "sw", "snp", "tdx", "pkvm" };

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

static void assert_state(int pool, uint64_t pfn, const char *want)
{
	char buf[160] = "";

	ASSERT_GT(gmem_pool_frame_state(pool, pfn, buf, sizeof(buf)), 0);
	if (!strstr(buf, want))
		printf("#   frame %#llx is \"%s\", expected \"%s\"\n",
		       (unsigned long long)pfn, buf, want);
	ASSERT_TRUE(strstr(buf, want));
}

static void guest_read(int vm, uint64_t gpa, void *buf, size_t len)
{
	struct gmem_exit exit;

	memset(buf, 0xa5, len);
	ASSERT_EQ(gmem_vm_access(vm, gpa, buf, len, PRIVATE_R, &exit), 0);
}

static int bound_file(int vm, uint64_t size, uint64_t flags)
{
	int fd = gmem_create(vm, size, flags);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(vm, 0, GPA, size, fd, 0), 0);
	return fd;
}

/* What the arch's model says of a frame nobody has taken. */
static const char *host_state(const char *arch)
{
	if (!strcmp(arch, "snp"))
		return "rmp hypervisor";
	if (!strcmp(arch, "tdx"))
		return "tdx host";
	if (!strcmp(arch, "pkvm"))
		return "pkvm host";
	return "no hardware state";
}

/* What the arch's model says of a populated frame of the first VM at @gfn. */
static void assert_taken(const char *arch, int pool, uint64_t pfn, uint64_t gfn)
{
	char want[64];

	if (!strcmp(arch, "snp")) {
		snprintf(want, sizeof(want), "rmp assigned asid=1 gfn=%#llx ",
			 (unsigned long long)gfn);
		assert_state(pool, pfn, want);
		assert_state(pool, pfn, "validated");
	} else if (!strcmp(arch, "tdx")) {
		assert_state(pool, pfn, "tdx td=1");
	} else if (!strcmp(arch, "pkvm")) {
		assert_state(pool, pfn, "pkvm guest vm=1");
	} else {
		assert_state(pool, pfn, "no hardware state");
	}
}

/* ------------------------------------------------------------- errors */

TEST(populate_rejects_flags_empty_and_unaligned_ranges_with_einval)
{
	struct env e = env_new("snp");
	int fd = bound_file(e.vm, 4 * PG, 0);
	static uint8_t src[4 * PG];

	ASSERT_EQ(gmem_vm_populate(e.vm, GPA, src, PG, 1), -EINVAL);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA, src, PG, ~0ULL), -EINVAL);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA, src, 0, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA, NULL, 0, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA + 1, src, PG, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA + PG / 2, src, PG, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA, src, PG + 1, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA, src, PG - 1, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_populate(e.vm, ~0ULL - PG + 1, src, 2 * PG, 0), -EINVAL);
	/* Nothing was taken: the first page still populates. */
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(gmem_folio_info(fd, i * PG, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA, src, PG, 0), 1);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(populate_checks_the_vm_handle)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, PG, 0);
	static uint8_t src[PG];

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_populate(NEVER_OPEN, GPA, src, PG, 0), -EBADF);
	ASSERT_EQ(gmem_vm_populate(-1, GPA, src, PG, 0), -EBADF);
	ASSERT_EQ(gmem_vm_populate(e.pool, GPA, src, PG, 0), -EINVAL);
	ASSERT_EQ(gmem_vm_populate(fd, GPA, src, PG, 0), -EINVAL);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(populate_of_an_unbound_gpa_fails_with_efault)
{
	struct env e = env_new("snp");
	int fd = bound_file(e.vm, 4 * PG, 0);
	static uint8_t src[PG];

	ASSERT_EQ(gmem_vm_populate(e.vm, GPA - PG, src, PG, 0), -EFAULT);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA + 4 * PG, src, PG, 0), -EFAULT);
	ASSERT_EQ(gmem_vm_populate(e.vm, 0, NULL, PG, 0), -EFAULT);
	ASSERT_TRUE(strstr(gmem_last_error(), "gmem_vm_populate"));
	ASSERT_EQ(gmem_vm_unbind(e.vm, 0), 0);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA, src, PG, 0), -EFAULT);
	ASSERT_EQ(gmem_folio_info(fd, 0, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(populate_of_a_shared_page_fails_with_einval_and_takes_nothing)
{
	for (int a = 0; a < 4; a++) {
		struct env e = env_new(archs[a]);
		int fd = bound_file(e.vm, 2 * PG, GMEM_FLAG_INIT_SHARED);
		static uint8_t src[PG];
		uint64_t pfn;

		fill(src, PG, 3);
		ASSERT_EQ(gmem_vm_populate(e.vm, GPA, src, PG, 0), -EINVAL);
		ASSERT_TRUE(strstr(gmem_last_error(), "gmem_vm_populate"));
		ASSERT_EQ(gmem_vm_fault(e.vm, GPA, 0, &pfn, NULL), 0);
		ASSERT_EQ(gmem_vm_populate(e.vm, GPA, src, PG, 0), -EINVAL);
		ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, pfn), PG));
		assert_state(e.pool, pfn, host_state(archs[a]));
		ASSERT_EQ(gmem_close(fd), 0);
		env_free(&e);
	}
}

TEST(populate_returns_the_number_of_pages_populated)
{
	for (int a = 0; a < 4; a++) {
		struct env e = env_new(archs[a]);
		int fd = bound_file(e.vm, 8 * PG, 0);
		static uint8_t src[8 * PG];

		fill(src, sizeof(src), 5);
		ASSERT_EQ(gmem_vm_populate(e.vm, GPA, src, PG, 0), 1);
		ASSERT_EQ(gmem_vm_populate(e.vm, GPA + PG, src + PG, 7 * PG, 0), 7);
		for (int i = 0; i < 8; i++)
			assert_taken(archs[a], e.pool, frame_of(fd, i * PG), GFN + i);
		ASSERT_EQ(gmem_close(fd), 0);
		env_free(&e);
	}
}

TEST(populate_stops_at_a_shared_page_and_returns_the_count_so_far)
{
	for (int a = 0; a < 4; a++) {
		struct env e = env_new(archs[a]);
		int fd = bound_file(e.vm, 8 * PG, 0);
		static uint8_t src[8 * PG], buf[PG];

		fill(src, sizeof(src), 7);
		ASSERT_EQ(convert(fd, 3 * PG, PG, 0), 0);
		ASSERT_EQ(gmem_vm_populate(e.vm, GPA, src, 8 * PG, 0), 3);
		for (int i = 0; i < 3; i++) {
			guest_read(e.vm, GPA + i * PG, buf, PG);
			ASSERT_EQ(memcmp(buf, src + i * PG, PG), 0);
		}
		/* Nothing at or past the failing page. */
		for (int i = 3; i < 8; i++)
			ASSERT_EQ(gmem_folio_info(fd, i * PG, NULL, NULL, NULL), 0);
		/* Starting at the failing page: its error. */
		ASSERT_EQ(gmem_vm_populate(e.vm, GPA + 3 * PG, src, 5 * PG, 0), -EINVAL);
		ASSERT_EQ(gmem_folio_info(fd, 4 * PG, NULL, NULL, NULL), 0);
		/* Past it: the rest populates. */
		ASSERT_EQ(gmem_vm_populate(e.vm, GPA + 4 * PG, src + 4 * PG, 4 * PG, 0), 4);
		guest_read(e.vm, GPA + 7 * PG, buf, PG);
		ASSERT_EQ(memcmp(buf, src + 7 * PG, PG), 0);
		ASSERT_EQ(gmem_close(fd), 0);
		env_free(&e);
	}
}

TEST(populate_stops_at_the_end_of_the_binding_and_returns_the_count_so_far)
{
	struct env e = env_new("tdx");
	int fd = bound_file(e.vm, 4 * PG, 0);
	static uint8_t src[6 * PG];

	fill(src, sizeof(src), 9);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA + 2 * PG, src, 4 * PG, 0), 2);
	assert_state(e.pool, frame_of(fd, 2 * PG), "tdx td=1");
	assert_state(e.pool, frame_of(fd, 3 * PG), "tdx td=1");
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(populate_crosses_from_one_binding_into_the_next)
{
	struct env e = env_new("snp");
	int a = gmem_create(e.vm, 2 * PG, 0), b = gmem_create(e.vm, 2 * PG, 0);
	static uint8_t src[3 * PG], buf[3 * PG];

	ASSERT_GE(a, 0);
	ASSERT_GE(b, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA, 2 * PG, a, 0), 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 1, GPA + 2 * PG, 2 * PG, b, 0), 0);
	fill(src, sizeof(src), 11);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA + PG, src, 3 * PG, 0), 3);
	assert_taken("snp", e.pool, frame_of(a, PG), GFN + 1);
	assert_taken("snp", e.pool, frame_of(b, 0), GFN + 2);
	assert_taken("snp", e.pool, frame_of(b, PG), GFN + 3);
	guest_read(e.vm, GPA + PG, buf, sizeof(buf));
	ASSERT_EQ(memcmp(buf, src, sizeof(src)), 0);
	ASSERT_EQ(gmem_close(a), 0);
	ASSERT_EQ(gmem_close(b), 0);
	env_free(&e);
}

/* ---------------------------------------------------------- from a buffer */

static void populate_from_source(const char *arch)
{
	struct env e = env_new(arch);
	int fd = bound_file(e.vm, 4 * PG, 0);
	static uint8_t src[2 * PG], buf[2 * PG];
	uint64_t pfn;

	fill(src, sizeof(src), 13);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA + PG, src, 2 * PG, 0), 2);
	for (int i = 1; i <= 2; i++) {
		pfn = frame_of(fd, i * PG);
		assert_taken(arch, e.pool, pfn, GFN + i);
		ASSERT_EQ(memcmp(frame_bytes(e.pool, pfn), src + (i - 1) * PG, PG), 0);
	}
	/* Populate does not map: the guest's first access faults it in. */
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA + PG, NULL, NULL), 0);
	guest_read(e.vm, GPA + PG, buf, 2 * PG);
	ASSERT_EQ(memcmp(buf, src, sizeof(src)), 0);
	/* The guest's own faults keep the arch state populate set up. */
	for (int i = 1; i <= 2; i++)
		assert_taken(arch, e.pool, frame_of(fd, i * PG), GFN + i);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(sw_populate_from_a_buffer_loads_the_page)
{
	populate_from_source("sw");
}

TEST(snp_populate_from_a_buffer_loads_the_page_and_assigns_the_rmp_entry)
{
	populate_from_source("snp");
}

TEST(tdx_populate_from_a_buffer_loads_the_page_and_adds_it_to_the_td)
{
	populate_from_source("tdx");
}

TEST(pkvm_populate_from_a_buffer_loads_the_page_and_donates_it_to_the_guest)
{
	populate_from_source("pkvm");
}

/* -------------------------------------------------------------- in place */

/*
 * The in-place launch flow: the VMM writes the image through its mapping
 * while the pages are shared, converts them to private and populates with no
 * source. The guest reads what the VMM wrote.
 */
static void populate_in_place(const char *arch)
{
	struct env e = env_new(arch);
	int fd = bound_file(e.vm, 4 * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	static uint8_t image[2 * PG], buf[2 * PG];
	uint8_t byte;
	void *addr;

	fill(image, sizeof(image), 19);
	ASSERT_EQ(gmem_mmap(fd, 0, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED,
			    &addr), 0);
	memcpy((uint8_t *)addr + PG, image, sizeof(image));
	ASSERT_EQ(convert(fd, PG, 2 * PG, PRIV), 0);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA + PG, NULL, 2 * PG, 0), 2);
	for (int i = 1; i <= 2; i++)
		assert_taken(arch, e.pool, frame_of(fd, i * PG), GFN + i);
	guest_read(e.vm, GPA + PG, buf, sizeof(buf));
	ASSERT_EQ(memcmp(buf, image, sizeof(image)), 0);
	/* The host lost its access when the pages went private. */
	ASSERT_NE(probe_read((uint8_t *)addr + PG, &byte), 0);
	ASSERT_EQ(probe_read((uint8_t *)addr, &byte), 0);
	ASSERT_EQ(gmem_munmap(addr, 4 * PG), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(sw_populate_in_place_keeps_what_the_host_wrote_while_shared)
{
	populate_in_place("sw");
}

TEST(snp_populate_in_place_keeps_what_the_host_wrote_while_shared)
{
	populate_in_place("snp");
}

TEST(tdx_populate_in_place_keeps_what_the_host_wrote_while_shared)
{
	populate_in_place("tdx");
}

TEST(pkvm_populate_in_place_keeps_what_the_host_wrote_while_shared)
{
	populate_in_place("pkvm");
}

TEST(populate_in_place_of_an_untouched_page_gives_zeroes)
{
	for (int a = 0; a < 4; a++) {
		struct env e = env_new(archs[a]);
		int fd = bound_file(e.vm, 2 * PG, 0);
		static uint8_t buf[PG];

		ASSERT_EQ(gmem_vm_populate(e.vm, GPA, NULL, PG, 0), 1);
		assert_taken(archs[a], e.pool, frame_of(fd, 0), GFN);
		guest_read(e.vm, GPA, buf, PG);
		ASSERT_TRUE(is_zero(buf, PG));
		ASSERT_EQ(gmem_close(fd), 0);
		env_free(&e);
	}
}

/* -------------------------------------------------------- already taken */

/*
 * A frame the guest holds already cannot be populated again (the kernel's
 * kvm_gmem_populate: -EEXIST for a prepared folio): snp, tdx and pkvm by
 * their hardware state, sw by the engine's own mark.
 */
static void populate_twice_fails_with_eexist(const char *arch)
{
	struct env e = env_new(arch);
	int fd = bound_file(e.vm, 4 * PG, 0);
	static uint8_t a[PG], b[PG], buf[PG], four[4 * PG];
	uint64_t pfn;

	fill(a, PG, 23);
	fill(b, PG, 29);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA, a, PG, 0), 1);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA, b, PG, 0), -EEXIST);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA, NULL, PG, 0), -EEXIST);
	/* The failed call changed nothing. */
	ASSERT_EQ(memcmp(frame_bytes(e.pool, frame_of(fd, 0)), a, PG), 0);
	guest_read(e.vm, GPA, buf, PG);
	ASSERT_EQ(memcmp(buf, a, PG), 0);

	/* A private fault takes the frame as well. */
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + PG, PRIVATE_W, &pfn, NULL), 0);
	ASSERT_EQ(gmem_vm_access(e.vm, GPA + PG, a, PG, PRIVATE_W, NULL), 0);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA + PG, b, PG, 0), -EEXIST);
	ASSERT_EQ(memcmp(frame_bytes(e.pool, pfn), a, PG), 0);

	ASSERT_EQ(gmem_close(fd), 0);

	/* A range whose second page is taken: one page, then stop. */
	fd = bound_file(e.vm, 4 * PG, 0);
	fill(four, sizeof(four), 37);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + PG, PRIVATE_W, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA, four, 4 * PG, 0), 1);
	ASSERT_EQ(gmem_folio_info(fd, 2 * PG, NULL, NULL, NULL), 0);
	guest_read(e.vm, GPA, buf, PG);
	ASSERT_EQ(memcmp(buf, four, PG), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(sw_populating_a_page_the_guest_has_fails_with_eexist)
{
	populate_twice_fails_with_eexist("sw");
}

TEST(snp_populating_an_assigned_page_fails_with_eexist)
{
	populate_twice_fails_with_eexist("snp");
}

TEST(tdx_populating_a_page_in_the_td_fails_with_eexist)
{
	populate_twice_fails_with_eexist("tdx");
}

TEST(pkvm_populating_a_guest_owned_page_fails_with_eexist)
{
	populate_twice_fails_with_eexist("pkvm");
}

TEST(snp_page_returned_to_the_hypervisor_can_be_populated_again)
{
	struct env e = env_new("snp");
	int fd = bound_file(e.vm, 2 * PG, 0);
	static uint8_t a[PG], buf[PG];

	fill(a, PG, 31);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA, a, PG, 0), 1);
	ASSERT_EQ(convert(fd, 0, PG, 0), 0);
	assert_state(e.pool, frame_of(fd, 0), "rmp hypervisor");
	ASSERT_EQ(convert(fd, 0, PG, PRIV), 0);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA, a, PG, 0), 1);
	assert_taken("snp", e.pool, frame_of(fd, 0), GFN);
	guest_read(e.vm, GPA, buf, PG);
	ASSERT_EQ(memcmp(buf, a, PG), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}
