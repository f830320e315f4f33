// SPDX-License-Identifier: MIT
/*
 * Private memory under ASan (src/poison.h): the direct-map bytes of every
 * private page in the page cache are poisoned, so that reading one is an
 * ASan report; shared pages, freed frames and the guest's own accesses are
 * not. Without ASan every test here is skipped.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arch_helpers.h"

#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN 1
#endif
#endif

#ifdef ASAN
#include <sanitizer/asan_interface.h>

static void require_asan(void)
{
}

/* How many bytes of the page at direct-map frame @pfn are poisoned: 0 or PG. */
static size_t poisoned(int pool, uint64_t pfn)
{
	uint8_t *f = gmem_pool_frame(pool, pfn);
	size_t n = 0;

	for (size_t i = 0; i < PG; i += 8)
		n += __asan_address_is_poisoned(f + i) ? 8 : 0;
	return n;
}
#else
static void require_asan(void)
{
	test_skip("not an ASan build: nothing is poisoned");
}

static size_t poisoned(int pool, uint64_t pfn)
{
	return 0;
}
#endif

#define CHILD_ENV	"GMEM_TEST_POISON_READ"

/*
 * The child's side, run before main() when the parent exec'ed us with
 * CHILD_ENV set: make a page private, then read it through the direct map
 * as a careless host would. ASan must stop the process at that read; exit 0
 * says it did not.
 */
__attribute__((constructor)) static void read_private_page_in_child(void)
{
	volatile uint8_t *frame;
	struct env e;
	uint64_t pfn;
	int fd;

	if (!getenv(CHILD_ENV))
		return;
	e = env_new("sw");
	fd = bound_file(e.vm, 4 * PG, 0);
	if (gmem_vm_fault(e.vm, GPA, PRIVATE_W, &pfn, NULL))
		_exit(3);
	frame = gmem_pool_frame(e.pool, pfn);
	fprintf(stderr, "reading private frame %#llx\n", (unsigned long long)pfn);
	fprintf(stderr, "read %#x\n", frame[100]);
	gmem_close(fd);
	_exit(0);
}

TEST(reading_a_private_page_through_the_direct_map_is_an_asan_report)
{
	char *argv[] = { "test_poison", NULL }, out[8192];
	int pipefd[2], status;
	size_t len = 0;
	ssize_t n;
	pid_t pid;

	require_asan();
	ASSERT_EQ(pipe(pipefd), 0);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		dup2(pipefd[1], 2);
		dup2(pipefd[1], 1);
		close(pipefd[0]);
		setenv(CHILD_ENV, "1", 1);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	close(pipefd[1]);
	while (len < sizeof(out) - 1 &&
	       (n = read(pipefd[0], out + len, sizeof(out) - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = 0;
	close(pipefd[0]);
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	if (!strstr(out, "use-after-poison"))
		printf("#   the child printed:\n%s\n", out);
	ASSERT_TRUE(strstr(out, "reading private frame"));
	ASSERT_TRUE(strstr(out, "ERROR: AddressSanitizer: use-after-poison"));
	ASSERT_TRUE(strstr(out, "read_private_page_in_child"));
	ASSERT_TRUE(!strstr(out, "read 0x"));
	ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
}

/* The poison follows the page through fault, conversion and punch. */
static void poison_follows_private_state(const char *arch)
{
	struct env e = env_new(arch);
	int fd = bound_file(e.vm, 4 * PG, 0);
	static uint8_t data[PG], buf[PG];
	uint64_t pfn, shared_pfn;

	fill(data, PG, 9);
	guest_write(e.vm, GPA + PG, data, PG);
	pfn = frame_of(fd, PG);
	ASSERT_EQ(poisoned(e.pool, pfn), PG);

	/* The guest's own access goes through: poison keeps the host out only. */
	guest_read(e.vm, GPA + PG, buf, PG, PRIVATE_R);
	ASSERT_EQ(memcmp(buf, data, PG), 0);

	ASSERT_EQ(convert(fd, PG, PG, 0), 0);
	ASSERT_EQ(poisoned(e.pool, pfn), 0);
	guest_read(e.vm, GPA + PG, buf, PG, SHARED_R);
	ASSERT_EQ(memcmp(buf, gmem_pool_frame(e.pool, pfn), PG), 0);

	ASSERT_EQ(convert(fd, PG, PG, PRIV), 0);
	ASSERT_EQ(poisoned(e.pool, pfn), PG);

	/* A page shared from its first fault is never poisoned. */
	ASSERT_EQ(convert(fd, 2 * PG, PG, 0), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 2 * PG, SHARED_W, &shared_pfn, NULL), 0);
	ASSERT_EQ(poisoned(e.pool, shared_pfn), 0);
	/* Nor is its neighbour's poison spilling over. */
	ASSERT_EQ(poisoned(e.pool, pfn), PG);

	/* Freed, the frame is anyone's again. */
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 PG, PG), 0);
	ASSERT_EQ(poisoned(e.pool, pfn), 0);
	ASSERT_TRUE(is_zero(gmem_pool_frame(e.pool, pfn), PG));

	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(poisoned(e.pool, shared_pfn), 0);
	env_free(&e);
}

TEST(private_pages_are_poisoned_and_shared_or_freed_ones_are_not_sw)
{
	require_asan();
	poison_follows_private_state("sw");
}

TEST(private_pages_are_poisoned_and_shared_or_freed_ones_are_not_snp)
{
	require_asan();
	poison_follows_private_state("snp");
}

TEST(private_pages_are_poisoned_and_shared_or_freed_ones_are_not_tdx)
{
	require_asan();
	poison_follows_private_state("tdx");
}

TEST(private_pages_are_poisoned_and_shared_or_freed_ones_are_not_pkvm)
{
	require_asan();
	poison_follows_private_state("pkvm");
}

TEST(populate_loads_content_and_leaves_the_page_poisoned)
{
	struct env e;
	static uint8_t src[PG];
	uint64_t pfn;
	int fd;

	require_asan();
	e = env_new("snp");
	fd = bound_file(e.vm, 4 * PG, 0);
	fill(src, PG, 21);
	ASSERT_EQ(gmem_vm_populate(e.vm, GPA, src, PG, 0), 1);
	pfn = frame_of(fd, 0);
	ASSERT_EQ(poisoned(e.pool, pfn), PG);
	ASSERT_EQ(memcmp(frame_bytes(e.pool, pfn), src, PG), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(poisoned(e.pool, pfn), 0);
	env_free(&e);
}

/* A huge folio allocated by one private fault: every private page of it. */
TEST(a_huge_folio_poisons_its_private_pages_only)
{
	struct env e;
	uint64_t base;
	int fd;

	require_asan();
	e = env_new("sw");
	fd = bound_file(e.vm, 2 * MiB, GMEM_FLAG_HUGE_2M);
	ASSERT_EQ(convert(fd, 7 * PG, PG, 0), 0);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA, PRIVATE_W, NULL, NULL), 0);
	base = frame_of(fd, 0);
	ASSERT_EQ(frame_of(fd, 511 * PG), base + 511);
	ASSERT_EQ(poisoned(e.pool, base), PG);
	ASSERT_EQ(poisoned(e.pool, base + 6), PG);
	ASSERT_EQ(poisoned(e.pool, base + 7), 0);
	ASSERT_EQ(poisoned(e.pool, base + 8), PG);
	ASSERT_EQ(poisoned(e.pool, base + 511), PG);

	/* Shared as a whole, then private again: the whole block follows. */
	ASSERT_EQ(convert(fd, 0, 2 * MiB, 0), 0);
	for (uint64_t i = 0; i < 512; i += 73)
		ASSERT_EQ(poisoned(e.pool, base + i), 0);
	ASSERT_EQ(convert(fd, 0, 2 * MiB, PRIV), 0);
	for (uint64_t i = 0; i < 512; i += 73)
		ASSERT_EQ(poisoned(e.pool, base + i), PG);
	ASSERT_EQ(gmem_close(fd), 0);
	ASSERT_EQ(poisoned(e.pool, base), 0);
	ASSERT_EQ(poisoned(e.pool, base + 511), 0);
	env_free(&e);
}
