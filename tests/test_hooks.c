// SPDX-License-Identifier: MIT
/*
 * The hook contract as executed: which hook the engine calls on which path,
 * under the split and the legacy contract, recorded with gmem_vm_trace_hooks.
 */
#include <string.h>

#include "harness.h"

#define PG	GMEM_PAGE_SIZE
#define GPA	(16ULL << 20)
#define PRIV	GMEM_ATTR_PRIVATE

struct log {
	int n;
	struct gmem_hook_call call[64];
	char names[64][32];
	char paths[64][16];
};

static void record(void *arg, const struct gmem_hook_call *call)
{
	struct log *l = arg;

	if (l->n >= 64)
		return;
	l->call[l->n] = *call;
	snprintf(l->names[l->n], sizeof(l->names[0]), "%s", call->hook);
	snprintf(l->paths[l->n], sizeof(l->paths[0]), "%s", call->path);
	l->n++;
}

/* How many calls of @hook from @path (NULL: any path) the log holds. */
static int calls(const struct log *l, const char *hook, const char *path)
{
	int n = 0;

	for (int i = 0; i < l->n; i++)
		if (!strcmp(l->names[i], hook) &&
		    (!path || !strcmp(l->paths[i], path)))
			n++;
	return n;
}

/*
 * One life of a private page: fault it in, convert it to shared, punch it.
 * Returns its frame.
 */
static uint64_t private_page_life(struct env *e, uint64_t vm_flags,
				  struct log *l)
{
	struct gmem_exit exit;
	uint64_t pfn = ~0ULL;
	int fd;

	if (vm_flags) {
		ASSERT_EQ(gmem_vm_close(e->vm), 0);
		e->vm = gmem_vm_create(e->pool, "pkvm", vm_flags);
		ASSERT_GE(e->vm, 0);
	}
	ASSERT_EQ(gmem_vm_trace_hooks(e->vm, record, l), 0);
	fd = gmem_create(e->vm, 4 * PG, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(e->vm, 0, GPA, 4 * PG, fd, 0), 0);
	ASSERT_EQ(gmem_vm_fault(e->vm, GPA + PG, GMEM_FAULT_PRIVATE, &pfn, &exit), 0);
	ASSERT_EQ(gmem_set_attributes(fd, PG, PG, 0, 0, NULL), 0);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 PG, PG), 0);
	ASSERT_EQ(gmem_vm_trace_hooks(e->vm, NULL, NULL), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	return pfn;
}

TEST(snp_split_contract_calls_make_private_make_shared_and_reclaim_each_on_its_path)
{
	struct env e = env_new("snp");
	struct log l = { 0 };
	uint64_t pfn = private_page_life(&e, 0, &l);

	ASSERT_EQ(calls(&l, "make_private", "fault"), 1);
	ASSERT_EQ(calls(&l, "make_shared", "conversion"), 1);
	ASSERT_EQ(calls(&l, "reclaim", "free"), 1);
	ASSERT_EQ(calls(&l, "make_shared", NULL), 1);	/* never on the free path */
	ASSERT_EQ(calls(&l, "reclaim", NULL), 1);	/* never on conversion */
	ASSERT_EQ(calls(&l, "invalidate", NULL), 0);
	for (int i = 0; i < l.n; i++) {
		if (strcmp(l.names[i], "invalidate_range"))
			ASSERT_EQ(l.call[i].pfn, pfn);
		ASSERT_EQ(l.call[i].nr, 1);
	}
	ASSERT_EQ(l.call[0].gfn, GPA / PG + 1);		/* make_private's gfn */
	env_free(&e);
}

TEST(pkvm_split_contract_gets_no_make_shared_walk_only_its_own_hooks)
{
	struct env e = env_new("pkvm");
	struct log l = { 0 };

	private_page_life(&e, 0, &l);
	ASSERT_EQ(calls(&l, "make_private", "fault"), 1);
	ASSERT_EQ(calls(&l, "guest_convert(share)", "conversion"), 1);
	ASSERT_EQ(calls(&l, "make_shared", NULL), 0);
	ASSERT_EQ(calls(&l, "invalidate", NULL), 0);
	ASSERT_EQ(calls(&l, "reclaim", "free"), 1);
	env_free(&e);
}

TEST(legacy_contract_calls_the_one_invalidate_hook_on_conversion_and_free)
{
	struct env e = env_new("pkvm");
	struct log l = { 0 };

	private_page_life(&e, GMEM_VM_LEGACY_CONTRACT, &l);
	ASSERT_EQ(calls(&l, "invalidate", "conversion"), 1);
	ASSERT_EQ(calls(&l, "invalidate", "free"), 1);
	ASSERT_EQ(calls(&l, "reclaim", NULL), 0);
	ASSERT_EQ(calls(&l, "make_shared", NULL), 0);
	env_free(&e);
}

TEST(tdx_invalidate_range_runs_inside_every_invalidation_per_bound_range)
{
	struct env e = env_new("tdx");
	struct log l = { 0 };

	private_page_life(&e, 0, &l);
	/* The conversion and the punch each invalidate the one bound range. */
	ASSERT_EQ(calls(&l, "invalidate_range", "invalidation"), 2);
	for (int i = 0; i < l.n; i++)
		if (!strcmp(l.names[i], "invalidate_range")) {
			ASSERT_EQ(l.call[i].gfn, GPA / PG + 1);
			ASSERT_EQ(l.call[i].pfn, ~0ULL);
		}
	env_free(&e);
}

TEST(populate_calls_post_populate_with_the_page_gfn)
{
	struct env e = env_new("snp");
	struct log l = { 0 };
	static char src[2 * PG] = "launch image";
	int fd = gmem_create(e.vm, 4 * PG, 0);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_vm_bind(e.vm, 0, GPA, 4 * PG, fd, 0), 0);
	ASSERT_EQ(gmem_vm_trace_hooks(e.vm, record, &l), 0);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA, src, 2 * PG, 0), 2);
	ASSERT_EQ(calls(&l, "post_populate", "populate"), 2);
	ASSERT_EQ(l.call[1].gfn, GPA / PG + 1);
	/* A refused populate is reported with the hook's error. */
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA, src, PG, 0), -EEXIST);
	ASSERT_EQ(l.n, 3);
	ASSERT_EQ(l.call[2].ret, -EEXIST);
	ASSERT_EQ(gmem_vm_trace_hooks(e.vm, NULL, NULL), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(tracing_a_bad_handle_fails_with_ebadf_or_einval)
{
	struct env e = env_new("sw");
	struct log l = { 0 };
	int fd = gmem_create(e.vm, PG, 0);

	ASSERT_EQ(gmem_vm_trace_hooks(-1, record, &l), -EBADF);
	ASSERT_EQ(gmem_vm_trace_hooks(fd, record, &l), -EINVAL);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}
