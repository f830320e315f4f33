// SPDX-License-Identifier: MIT
/*
 * The fault's re-check against invalidations (invalidate.c), tested on its
 * own. Every invalidation gmem makes today also holds the file lock a fault
 * holds, so no public call can slip one between a fault's attribute read and
 * its stage-2 install; the sequence and in-progress re-check is the guard for
 * an invalidation that does not take that lock, as in the kernel. White box:
 * the tests start and end invalidations with the internal calls, and change a
 * page's attribute bit behind the file lock, as such an invalidation's
 * caller would.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "arch_helpers.h"
#include "bitmap.h"
#include "file.h"
#include "handle.h"
#include "lock.h"
#include "vm.h"

static struct gmem_vm *vm_of(int h)
{
	return (struct gmem_vm *)obj_peek(h);
}

static struct gmem_file *file_of(int h)
{
	return (struct gmem_file *)obj_peek(h);
}

static void begin(struct gmem_vm *vm, uint64_t start, uint64_t end)
{
	brlock_write_lock(&vm->mmu_lock);
	vm_invalidate_start(vm);
	if (start != end)
		vm_invalidate_range_add(vm, start, end);
	brlock_write_unlock(&vm->mmu_lock);
}

static void end(struct gmem_vm *vm)
{
	brlock_write_lock(&vm->mmu_lock);
	vm_invalidate_end(vm);
	brlock_write_unlock(&vm->mmu_lock);
}

static uint64_t seq_now(struct gmem_vm *vm)
{
	return atomic_load(&vm->mmu_invalidate_seq);
}

static bool retry(struct gmem_vm *vm, uint64_t seq, uint64_t start,
		  uint64_t stop)
{
	bool r;

	brlock_read_lock(&vm->mmu_lock);
	r = vm_invalidate_retry_range(vm, seq, start, stop);
	brlock_read_unlock(&vm->mmu_lock);
	return r;
}

TEST(retry_range_overlap_is_half_open_at_both_ends)
{
	struct env e = env_new("sw");
	struct gmem_vm *vm = vm_of(e.vm);
	uint64_t seq = seq_now(vm);

	begin(vm, 100, 200);
	ASSERT_EQ(retry(vm, seq, 99, 100), false);	/* ends at the start */
	ASSERT_EQ(retry(vm, seq, 100, 101), true);	/* the first gfn */
	ASSERT_EQ(retry(vm, seq, 99, 101), true);
	ASSERT_EQ(retry(vm, seq, 199, 200), true);	/* the last gfn */
	ASSERT_EQ(retry(vm, seq, 200, 201), false);	/* the end itself */
	ASSERT_EQ(retry(vm, seq, 0, 512), true);	/* a huge entry over it */
	ASSERT_EQ(retry(vm, seq, 150, 151), true);
	end(vm);
	/* Ended since the snapshot: retry, whatever the range. */
	ASSERT_EQ(retry(vm, seq, 1000, 1001), true);
	ASSERT_EQ(retry(vm, seq_now(vm), 150, 151), false);
	env_free(&e);
}

TEST(retry_range_retries_while_an_invalidation_has_no_range_yet)
{
	struct env e = env_new("sw");
	struct gmem_vm *vm = vm_of(e.vm);
	uint64_t seq = seq_now(vm);

	begin(vm, 0, 0);
	ASSERT_EQ(retry(vm, seq, 5000, 5001), true);
	end(vm);
	ASSERT_EQ(retry(vm, seq_now(vm), 5000, 5001), false);
	env_free(&e);
}

TEST(concurrent_invalidations_accumulate_their_ranges_until_all_end)
{
	struct env e = env_new("sw");
	struct gmem_vm *vm = vm_of(e.vm);
	uint64_t seq;

	begin(vm, 100, 200);
	begin(vm, 300, 400);
	seq = seq_now(vm);
	ASSERT_EQ(retry(vm, seq, 250, 251), true);	/* between: in the hull */
	ASSERT_EQ(retry(vm, seq, 399, 400), true);
	ASSERT_EQ(retry(vm, seq, 400, 401), false);
	ASSERT_EQ(retry(vm, seq, 99, 100), false);
	end(vm);
	/* One still runs: its range is not known apart, the hull stays. */
	seq = seq_now(vm);
	ASSERT_EQ(retry(vm, seq, 100, 101), true);
	ASSERT_EQ(retry(vm, seq, 250, 251), true);
	ASSERT_EQ(retry(vm, seq, 400, 401), false);
	end(vm);
	ASSERT_EQ(retry(vm, seq, 400, 401), true);	/* one more ended */
	ASSERT_EQ(retry(vm, seq_now(vm), 150, 151), false);
	/* A new invalidation starts from an empty range. */
	begin(vm, 10, 11);
	seq = seq_now(vm);
	ASSERT_EQ(retry(vm, seq, 150, 151), false);
	ASSERT_EQ(retry(vm, seq, 10, 11), true);
	end(vm);
	env_free(&e);
}

/*
 * A private fault on an snp VM calls make_private between its sequence
 * snapshot and its stage-2 install; the hook tracer runs there, inside the
 * fault, on the faulting thread. That is where the tests below make the page
 * shared behind the file lock and invalidate it.
 */
struct race {
	struct gmem_vm *vm;
	struct gmem_file *file;
	uint64_t index, gfn;
	bool end_in_hook;	/* the whole invalidation in the hook, or start only */
	int make_private_calls;
};

static void invalidate_inside_fault(void *arg, const struct gmem_hook_call *call)
{
	struct race *r = arg;

	if (strcmp(call->hook, "make_private") || r->make_private_calls++)
		return;
	/* The page becomes shared, as a conversion without the file lock would make it. */
	begin(r->vm, r->gfn, r->gfn + 1);
	bitmap_assign(r->file->flipped, r->index, r->index + 1, true);
	if (r->end_in_hook)
		end(r->vm);
}

/*
 * The fault read the page private; by its install the page is shared and
 * an invalidation of it ended (the sequence moved) or is still running
 * (the range is in progress). Either way it must retry, see the page
 * shared, and map nothing private.
 */
static void fault_races_invalidation(bool end_in_hook)
{
	struct env e = env_new("snp");
	int fd = bound_file(e.vm, 4 * PG, 0);
	struct race r = {
		.vm = vm_of(e.vm), .file = file_of(fd), .index = 1,
		.gfn = GFN + 1, .end_in_hook = end_in_hook,
	};
	struct gmem_exit exit;
	int private = -1, ret;

	ASSERT_EQ(gmem_vm_trace_hooks(e.vm, invalidate_inside_fault, &r), 0);
	ret = gmem_vm_fault(e.vm, GPA + PG, PRIVATE_W, NULL, &exit);
	ASSERT_EQ(gmem_vm_trace_hooks(e.vm, NULL, NULL), 0);
	ASSERT_EQ(r.make_private_calls, 1);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA + PG, NULL, &private), 0);
	if (!end_in_hook)
		end(r.vm);
	ASSERT_EQ(ret, GMEM_FAULT_EXIT);
	ASSERT_EQ(exit.reason, GMEM_EXIT_MEMORY_FAULT);
	ASSERT_EQ(exit.flags, GMEM_MEMORY_EXIT_FLAG_PRIVATE);

	/* The page's bit back as the attribute map has it, for a clean close. */
	bitmap_assign(r.file->flipped, r.index, r.index + 1, false);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(a_fault_retries_when_an_invalidation_of_its_gfn_ended_since_its_snapshot)
{
	fault_races_invalidation(true);
}

TEST(a_fault_retries_when_an_invalidation_of_its_gfn_is_in_progress)
{
	fault_races_invalidation(false);
}

struct waiter {
	int vm;
	uint64_t gpa;
	int ret;
	atomic_bool done;
};

static void *fault_thread(void *arg)
{
	struct waiter *w = arg;

	w->ret = gmem_vm_fault(w->vm, w->gpa, PRIVATE_W, NULL, NULL);
	atomic_store(&w->done, true);
	return NULL;
}

/* Nothing changed the page, but the fault cannot know: it waits for the end. */
TEST(a_fault_of_a_gfn_under_invalidation_waits_for_its_end)
{
	struct env e = env_new("sw");
	int fd = bound_file(e.vm, 4 * PG, 0);
	struct gmem_vm *vm = vm_of(e.vm);
	struct waiter w = { .vm = e.vm, .gpa = GPA + 2 * PG, .ret = -1 };
	struct timespec ts = { 0, 100 * 1000 * 1000 };
	pthread_t t;
	int private = 0;

	begin(vm, GFN + 2, GFN + 3);
	ASSERT_EQ(pthread_create(&t, NULL, fault_thread, &w), 0);
	nanosleep(&ts, NULL);
	ASSERT_EQ(atomic_load(&w.done), false);
	ASSERT_EQ(gmem_vm_stage2(e.vm, w.gpa, NULL, NULL), 0);
	end(vm);
	ASSERT_EQ(pthread_join(t, NULL), 0);
	ASSERT_EQ(w.ret, 0);
	ASSERT_EQ(gmem_vm_stage2(e.vm, w.gpa, NULL, &private), 1);
	ASSERT_EQ(private, 1);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

/* An invalidation of another gfn in progress does not hold the fault up. */
TEST(a_fault_outside_the_invalidated_range_is_not_held_up)
{
	struct env e = env_new("snp");
	int fd = bound_file(e.vm, 4 * PG, 0);
	struct gmem_vm *vm = vm_of(e.vm);
	int private = 0;

	begin(vm, GFN + 2, GFN + 3);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + PG, PRIVATE_W, NULL, NULL), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 3 * PG, PRIVATE_W, NULL, NULL), 0);
	end(vm);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA + PG, NULL, &private), 1);
	ASSERT_EQ(private, 1);
	ASSERT_EQ(gmem_vm_stage2(e.vm, GPA + 3 * PG, NULL, &private), 1);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}
