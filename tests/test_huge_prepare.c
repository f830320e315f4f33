// SPDX-License-Identifier: MIT
/*
 * The arch's rules on huge folios (docs/design.md, "Arch hooks"), per
 * backend: the first private fault that maps a whole huge folio hands the
 * whole folio to make_private; after that, the next such fault hands over
 * only the pages invalidations handed the arch since (a conversion, a punch,
 * unbind), not the pages that stayed private through a split and a merge,
 * so the hardware state covers every page the huge entry maps, at the gfns
 * the current binding gives them, for what changed.
 */
#include <string.h>

#include "huge_helpers.h"

#define GFN	(GPA / PG)

struct hook_log {
	int n;
	uint64_t pfn[16], gfn[16], nr[16];
};

static void log_make_private(void *arg, const struct gmem_hook_call *call)
{
	struct hook_log *log = arg;

	if (strcmp(call->hook, "make_private") || log->n >= 16)
		return;
	log->pfn[log->n] = call->pfn;
	log->gfn[log->n] = call->gfn;
	log->nr[log->n] = call->nr;
	log->n++;
}

/* What a frame of this arch's guest 1 reads as, once prepared. */
static const char *prepared_state(const char *arch)
{
	return !strcmp(arch, "snp") ? "2M" :
	       !strcmp(arch, "tdx") ? "tdx td=1" : "pkvm guest vm=1";
}

/* A private fault at @page of a huge file, mapped at stage-2 @level. */
static void huge_fault_at(struct env *e, struct hook_log *log, uint64_t page,
			  int level)
{
	ASSERT_EQ(gmem_vm_trace_hooks(e->vm, log_make_private, log), 0);
	ASSERT_EQ(gmem_vm_fault(e->vm, GPA + page * PG, PRIVATE_W, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_trace_hooks(e->vm, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_stage2_level(e->vm, GPA + page * PG), level);
}

/* A 4 MiB file of two 2 MiB folios; a private fault in the second one. */
static void huge_fault(struct env *e, int fd, struct hook_log *log,
		       uint64_t page)
{
	huge_fault_at(e, log, page, 1);
}

/* The first private fault in the second folio: the whole folio, prepared. */
static uint64_t first_fault(const char *arch, struct env *e, int fd,
			    struct hook_log *log)
{
	uint64_t base;

	huge_fault(e, fd, log, 512 + 9);
	base = frame_of(fd, 2 * MiB);
	ASSERT_EQ(log->n, 1);
	ASSERT_EQ(log->pfn[0], base);
	ASSERT_EQ(log->nr[0], 512);
	ASSERT_EQ(log->gfn[0], GFN + 512);
	ASSERT_TRUE(frame_is(e->pool, base, prepared_state(arch)));
	ASSERT_TRUE(frame_is(e->pool, base + 511, prepared_state(arch)));
	return base;
}

static void prepares_whole_folio_once(const char *arch)
{
	struct env e = check_env(arch);
	int fd = bound_file(&e, 4 * MiB, H2M);
	struct hook_log log = { 0 };

	first_fault(arch, &e, fd, &log);
	/* Another page of the same folio: prepared already. */
	huge_fault(&e, fd, &log, 512 + 300);
	ASSERT_EQ(log.n, 1);
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(snp_a_huge_private_fault_prepares_the_whole_folio_once)
{
	prepares_whole_folio_once("snp");
}

TEST(tdx_a_huge_private_fault_prepares_the_whole_folio_once)
{
	prepares_whole_folio_once("tdx");
}

TEST(pkvm_a_huge_private_fault_prepares_the_whole_folio_once)
{
	prepares_whole_folio_once("pkvm");
}

/*
 * The last page of the block goes shared and comes back: the folio splits,
 * then merges, and the next fault hands that page alone over again (snp: as
 * a 4 KiB RMP entry, the rest of the 2 MiB entry having been smashed, so
 * the folio maps at 4 KiB). After the whole block went shared and back
 * without ever splitting, the next fault hands over the whole folio.
 */
static void last_page_round_trip_reprepares(const char *arch)
{
	struct env e = check_env(arch);
	int fd = bound_file(&e, 4 * MiB, H2M);
	struct hook_log log = { 0 };
	uint64_t base = first_fault(arch, &e, fd, &log);
	bool snp = !strcmp(arch, "snp");

	ASSERT_EQ(convert(fd, 1023 * PG, PG, 0), 0);
	ASSERT_EQ(order_at(fd, 2 * MiB), 0);
	ASSERT_EQ(convert(fd, 1023 * PG, PG, PRIV), 0);
	ASSERT_EQ(order_at(fd, 2 * MiB), 9);
	huge_fault_at(&e, &log, 512 + 9, snp ? 0 : 1);
	ASSERT_EQ(log.n, 2);
	ASSERT_EQ(log.pfn[1], base + 511);
	ASSERT_EQ(log.gfn[1], GFN + 1023);
	ASSERT_EQ(log.nr[1], 1);
	ASSERT_TRUE(frame_is(e.pool, base + 511, snp ? "4K" : prepared_state(arch)));
	ASSERT_TRUE(frame_is(e.pool, base, snp ? "4K" : prepared_state(arch)));
	assert_clean(&e);

	/* The whole block shared and back: it stays one folio, yet changed. */
	ASSERT_EQ(convert(fd, 2 * MiB, 2 * MiB, 0), 0);
	ASSERT_EQ(order_at(fd, 2 * MiB), 9);
	ASSERT_EQ(convert(fd, 2 * MiB, 2 * MiB, PRIV), 0);
	huge_fault(&e, fd, &log, 1023);
	ASSERT_EQ(log.n, 3);
	ASSERT_EQ(log.pfn[2], base);
	ASSERT_EQ(log.nr[2], 512);
	ASSERT_TRUE(frame_is(e.pool, base + 511, prepared_state(arch)));
	assert_clean(&e);
	/* The first folio was never touched by any of it. */
	ASSERT_EQ(gmem_folio_info(fd, 0, NULL, NULL, NULL), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(snp_a_conversion_in_a_block_unprepares_the_pages_it_converted)
{
	last_page_round_trip_reprepares("snp");
}

TEST(tdx_a_conversion_in_a_block_unprepares_the_pages_it_converted)
{
	last_page_round_trip_reprepares("tdx");
}

TEST(pkvm_a_conversion_in_a_block_unprepares_the_pages_it_converted)
{
	last_page_round_trip_reprepares("pkvm");
}

/* Unbound and bound again elsewhere: the fault prepares at the new gfns. */
static void rebind_reprepares(const char *arch, const char *after_unbind)
{
	struct env e = check_env(arch);
	int fd = bound_file(&e, 2 * MiB, H2M);
	struct hook_log log = { 0 };
	uint64_t base;
	char gfn[32];

	huge_fault(&e, fd, &log, 5);
	base = frame_of(fd, 0);
	ASSERT_EQ(gmem_vm_unbind(e.vm, 0), 0);
	ASSERT_TRUE(frame_is(e.pool, base + 5, after_unbind));
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA + 2 * MiB, 2 * MiB, fd, 0), 0);
	huge_fault(&e, fd, &log, 512 + 5);
	ASSERT_EQ(log.n, 2);
	ASSERT_EQ(log.gfn[1], GFN + 512);
	ASSERT_EQ(log.nr[1], 512);
	ASSERT_TRUE(frame_is(e.pool, base + 511, prepared_state(arch)));
	if (!strcmp(arch, "snp")) {
		snprintf(gfn, sizeof(gfn), "gfn=%#llx", (unsigned long long)(GFN + 512 + 7));
		ASSERT_TRUE(frame_is(e.pool, base + 7, gfn));
	}
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(snp_unbind_unprepares_huge_folios_so_a_new_binding_assigns_its_gfns)
{
	rebind_reprepares("snp", "2M");
}

TEST(tdx_unbind_unprepares_huge_folios_so_a_new_binding_adds_them_again)
{
	rebind_reprepares("tdx", "tdx host");
}

/*
 * snp: a conversion that ends one page into a 2 MiB RMP entry of a 1 GiB
 * folio smashes that entry too (PSMASH), so the rest of it stays assigned as
 * 4 KiB entries while the page that went shared leaves the guest.
 */
TEST(snp_a_conversion_ending_one_page_into_a_2m_entry_smashes_that_entry)
{
	struct env e = check_env("snp");
	int fd = bound_file(&e, GiB, H1G);
	uint64_t base;

	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, PRIVATE_W, NULL, NULL), 0);
	base = frame_of(fd, 0);
	ASSERT_TRUE(frame_is(e.pool, base + 513, "2M"));
	ASSERT_EQ(convert(fd, 100 * PG, 413 * PG, 0), 0);	/* [100, 513) */
	ASSERT_TRUE(frame_is(e.pool, base + 99, "4K"));
	ASSERT_TRUE(frame_is(e.pool, base + 100, "rmp hypervisor"));
	ASSERT_TRUE(frame_is(e.pool, base + 512, "rmp hypervisor"));
	ASSERT_TRUE(frame_is(e.pool, base + 513, "4K"));
	ASSERT_TRUE(frame_is(e.pool, base + 1023, "4K"));
	ASSERT_TRUE(frame_is(e.pool, base + 1024, "2M"));
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

/*
 * A 1 GiB folio: two 4 KiB pages go shared and come back, each a split and
 * a merge. The next fault hands make_private the pages between and
 * including the two (the hull of what changed), not the 262,144 frames of
 * the folio; the pages that stayed private keep their arch state and their
 * content. A conversion to private wider than what it changes adds nothing.
 */
static void merge_reprepares_what_changed(const char *arch)
{
	struct env e = check_env(arch);
	int fd = bound_file(&e, GiB, H1G);
	struct hook_log log = { 0 };
	uint8_t mark = 0x5a, got = 0;
	struct gmem_exit ex;
	uint64_t base;

	huge_fault_at(&e, &log, 200000, strcmp(arch, "snp") ? 2 : 1);
	base = frame_of(fd, 0);
	ASSERT_EQ(log.n, 1);
	ASSERT_EQ(log.nr[0], 262144);
	ASSERT_EQ(gmem_vm_access(e.vm, GPA + 200000 * PG, &mark, 1,
				 PRIVATE_W, &ex), 0);

	ASSERT_EQ(convert(fd, 100000 * PG, PG, 0), 0);
	ASSERT_EQ(convert(fd, 100000 * PG, PG, PRIV), 0);
	ASSERT_EQ(convert(fd, 100010 * PG, PG, 0), 0);
	ASSERT_EQ(convert(fd, 100010 * PG, PG, PRIV), 0);
	ASSERT_EQ(order_at(fd, 0), 18);
	huge_fault_at(&e, &log, 5, strcmp(arch, "snp") ? 2 : 1);
	ASSERT_EQ(log.n, 2);
	ASSERT_EQ(log.pfn[1], base + 100000);
	ASSERT_EQ(log.gfn[1], GFN + 100000);
	ASSERT_EQ(log.nr[1], 11);
	ASSERT_TRUE(frame_is(e.pool, base + 100010, strcmp(arch, "snp") ?
			     prepared_state(arch) : "4K"));
	ASSERT_TRUE(frame_is(e.pool, base + 200000, prepared_state(arch)));
	ASSERT_EQ(gmem_vm_access(e.vm, GPA + 200000 * PG, &got, 1,
				 GMEM_FAULT_PRIVATE, &ex), 0);
	ASSERT_EQ(got, mark);

	/* Prepared again: the fault after that hands over nothing. */
	huge_fault_at(&e, &log, 262143, strcmp(arch, "snp") ? 2 : 1);
	ASSERT_EQ(log.n, 2);

	/*
	 * One page shared, then the whole file to private: the conversion
	 * covers the folio, but only that page changes, and only it is handed
	 * over again.
	 */
	ASSERT_EQ(convert(fd, 7 * PG, PG, 0), 0);
	ASSERT_EQ(convert(fd, 0, GiB, PRIV), 0);
	ASSERT_EQ(order_at(fd, 0), 18);
	huge_fault_at(&e, &log, 262143, strcmp(arch, "snp") ? 2 : 1);
	ASSERT_EQ(log.n, 3);
	ASSERT_EQ(log.pfn[2], base + 7);
	ASSERT_EQ(log.nr[2], 1);
	ASSERT_TRUE(frame_is(e.pool, base + 7, strcmp(arch, "snp") ?
			     prepared_state(arch) : "4K"));
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(snp_a_merged_1g_folio_reprepares_only_what_its_conversions_changed)
{
	merge_reprepares_what_changed("snp");
}

TEST(tdx_a_merged_1g_folio_reprepares_only_what_its_conversions_changed)
{
	merge_reprepares_what_changed("tdx");
}

TEST(pkvm_a_merged_1g_folio_reprepares_only_what_its_conversions_changed)
{
	merge_reprepares_what_changed("pkvm");
}
