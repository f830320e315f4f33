// SPDX-License-Identifier: MIT
/*
 * The lock rules check themselves (src/lock.h): a function that states which
 * lock its caller holds aborts, naming itself and the lock, when called
 * without it, or with it held the wrong way. White box: the engine's own
 * internal calls, made from a forked child. Compiled in with GMEM_LOCK_ASSERT
 * (the sanitizer builds); skipped elsewhere.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "handle.h"
#include "lock.h"
#include "mapping.h"
#include "sigbus.h"
#include "vm.h"

static void skip_unless_asserting(void)
{
	if (!GMEM_LOCK_ASSERT)
		test_skip("lock assertions are built only with GMEM_LOCK_ASSERT (make check-asan, check-tsan)");
}

struct ending {
	int signal;		/* that ended the child, or 0 */
	char err[512];		/* what it wrote to stderr */
};

/* Run @fn(@arg) in a child, catching its stderr. */
static struct ending run_catching(void (*fn)(void *), void *arg)
{
	struct ending end = { .signal = -1 };
	int pipefd[2], status;
	size_t len = 0;
	ssize_t n;
	pid_t pid;

	if (pipe(pipefd))
		return end;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		close(pipefd[0]);
		dup2(pipefd[1], 2);
		fn(arg);
		_exit(0);
	}
	close(pipefd[1]);
	while (len < sizeof(end.err) - 1 &&
	       (n = read(pipefd[0], end.err + len, sizeof(end.err) - 1 - len)) > 0)
		len += (size_t)n;
	end.err[len] = 0;
	close(pipefd[0]);
	if (pid > 0 && waitpid(pid, &status, 0) == pid)
		end.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
	return end;
}

static struct gmem_vm *vm_of(int h)
{
	return (struct gmem_vm *)obj_peek(h);
}

static void find_slot_unlocked(void *vm)
{
	vm_find_slot(vm, 0);
}

static void find_slot_locked(void *vmp)
{
	struct gmem_vm *vm = vmp;

	brlock_read_lock(&vm->slots_lock);
	vm_find_slot(vm, 0);
	brlock_read_unlock(&vm->slots_lock);
}

TEST(a_caller_holds_rule_aborts_a_caller_without_the_lock_and_names_both)
{
	struct env e;
	struct ending end;

	skip_unless_asserting();
	e = env_new("sw");
	end = run_catching(find_slot_unlocked, vm_of(e.vm));
	ASSERT_EQ(end.signal, SIGABRT);
	ASSERT_TRUE(strstr(end.err, "vm_find_slot"));
	ASSERT_TRUE(strstr(end.err, "slots_lock"));
	end = run_catching(find_slot_locked, vm_of(e.vm));
	ASSERT_EQ(end.signal, 0);
	ASSERT_EQ(end.err[0], 0);
	env_free(&e);
}

static void invalidate_under_read(void *vmp)
{
	struct gmem_vm *vm = vmp;

	brlock_read_lock(&vm->mmu_lock);
	vm_invalidate_start(vm);
}

static void invalidate_under_write(void *vmp)
{
	struct gmem_vm *vm = vmp;

	brlock_write_lock(&vm->mmu_lock);
	vm_invalidate_start(vm);
	vm_invalidate_end(vm);
	brlock_write_unlock(&vm->mmu_lock);
}

static void retry_check_under_write(void *vmp)
{
	struct gmem_vm *vm = vmp;

	brlock_write_lock(&vm->mmu_lock);
	vm_invalidate_retry_range(vm, 0, 0, 1);
}

TEST(an_exclusive_rule_refuses_the_lock_held_shared_and_a_shared_one_exclusive)
{
	struct env e;
	struct ending end;

	skip_unless_asserting();
	e = env_new("sw");
	end = run_catching(invalidate_under_read, vm_of(e.vm));
	ASSERT_EQ(end.signal, SIGABRT);
	ASSERT_TRUE(strstr(end.err, "vm_invalidate_start"));
	ASSERT_TRUE(strstr(end.err, "not held exclusive"));
	end = run_catching(invalidate_under_write, vm_of(e.vm));
	ASSERT_EQ(end.signal, 0);
	end = run_catching(retry_check_under_write, vm_of(e.vm));
	ASSERT_EQ(end.signal, SIGABRT);
	ASSERT_TRUE(strstr(end.err, "not held shared"));
	env_free(&e);
}

static void hm_alloc_unlocked(void *arg)
{
	hm_alloc();
}

static void hm_alloc_locked(void *arg)
{
	struct hm_entry *entry;
	sigset_t sigs;

	mutex_lock(&all_mappings_lock);
	entry = hm_alloc();
	hm_lock(&sigs);
	hm_free(entry);
	hm_unlock(&sigs);
	mutex_unlock(&all_mappings_lock);
}

TEST(a_mutex_rule_aborts_without_the_mutex_and_passes_with_it)
{
	struct ending end;

	skip_unless_asserting();
	end = run_catching(hm_alloc_unlocked, NULL);
	ASSERT_EQ(end.signal, SIGABRT);
	ASSERT_TRUE(strstr(end.err, "hm_alloc"));
	ASSERT_TRUE(strstr(end.err, "all_mappings_lock"));
	end = run_catching(hm_alloc_locked, NULL);
	ASSERT_EQ(end.signal, 0);
	ASSERT_EQ(end.err[0], 0);
}

static void lock_released_too_early(void *vmp)
{
	struct gmem_vm *vm = vmp;

	brlock_write_lock(&vm->slots_lock);
	brlock_write_unlock(&vm->slots_lock);
	vm_find_slot(vm, 0);
}

TEST(a_lock_counts_only_until_it_is_released)
{
	struct env e;

	skip_unless_asserting();
	e = env_new("sw");
	ASSERT_EQ(run_catching(lock_released_too_early, vm_of(e.vm)).signal,
		  SIGABRT);
	env_free(&e);
}
