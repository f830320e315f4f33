// SPDX-License-Identifier: MIT
/*
 * Host memory behind folios: a huge folio is backed by host huge pages where
 * the pool has them (gmem_pool_huge_page_size), 4 KiB files keep 4 KiB host
 * pages, a process that may not create a tmpfs falls back to 4 KiB host
 * pages, and allocation (fallocate, a huge folio's first fault) really
 * allocates the memory. The host's view comes from the kernel itself:
 * /proc/self/pagemap and /proc/kpageflags (root), the pool file's blocks.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "huge_helpers.h"

#define KPF_COMPOUND_HEAD	15
#define KPF_THP			22
#define PM_PRESENT		(1ULL << 63)
#define PM_PFN			((1ULL << 55) - 1)

/*
 * The host frame behind @va and its kpageflags, after mapping it (a read).
 * @va may be a private frame in the direct map: the read only maps it, so it
 * goes past ASan's poison of private memory.
 */
__attribute__((no_sanitize_address))
static bool host_page(const volatile uint8_t *va, uint64_t *hpfn,
		      uint64_t *flags)
{
	uint64_t e = 0;
	int pm, kf;
	bool ok;

	(void)*va;
	pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	kf = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	ok = pm >= 0 && kf >= 0 &&
	     pread(pm, &e, 8, (off_t)((uintptr_t)va / PG * 8)) == 8 &&
	     (e & PM_PRESENT) && (e & PM_PFN) &&
	     pread(kf, flags, 8, (off_t)((e & PM_PFN) * 8)) == 8;
	*hpfn = e & PM_PFN;
	if (pm >= 0)
		close(pm);
	if (kf >= 0)
		close(kf);
	return ok;
}

/* Skip unless the pool has host huge pages and the kernel shows its frames. */
static void need_host_huge_pages(struct env *e)
{
	uint64_t hpfn, flags;
	int fd;

	if (gmem_pool_huge_page_size(e->pool) != (int64_t)(2 * MiB))
		test_skip("the pool has no host huge pages here (this process may not create a tmpfs)");
	fd = gmem_create(e->vm, 4 * PG, GMEM_FLAG_INIT_SHARED);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, PG), 0);
	if (!host_page(gmem_pool_frame(e->pool, frame_of(fd, 0)), &hpfn, &flags)) {
		gmem_close(fd);
		test_skip("/proc/self/pagemap or /proc/kpageflags shows no frame (needs CAP_SYS_ADMIN)");
	}
	ASSERT_EQ(gmem_close(fd), 0);
}

/*
 * Is the 2 MiB of frames from @pfn one host huge page: 512 consecutive host
 * frames from a 2 MiB-aligned one, the first a compound head, all THP?
 */
static bool read_one_host_huge_page(struct env *e, uint64_t pfn)
{
	uint8_t *va = gmem_pool_frame(e->pool, pfn);
	uint64_t first, hpfn, flags;

	if (!host_page(va, &first, &flags) || first % 512 ||
	    !(flags & (1ULL << KPF_COMPOUND_HEAD)))
		return false;
	for (uint64_t i = 0; i < 512; i++)
		if (!host_page(va + i * PG, &hpfn, &flags) ||
		    hpfn != first + i || !(flags & (1ULL << KPF_THP)))
			return false;
	return true;
}

/* Read again if not: the kernel's compaction may move the page between reads. */
static bool one_host_huge_page(struct env *e, uint64_t pfn)
{
	for (int tries = 0; tries < 3; tries++)
		if (read_one_host_huge_page(e, pfn))
			return true;
	return false;
}

static bool host_thp(struct env *e, uint64_t pfn)
{
	uint64_t hpfn, flags = 0;

	ASSERT_TRUE(host_page(gmem_pool_frame(e->pool, pfn), &hpfn, &flags));
	return flags & (1ULL << KPF_THP);
}

TEST(a_2m_folio_is_one_host_huge_page_from_its_first_fault)
{
	struct env e = check_env("sw");
	int fd, map_fd;
	uint64_t pfn;
	void *addr;
	uint8_t *p;

	need_host_huge_pages(&e);
	fd = bound_file(&e, 4 * MiB, H2M);
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 5 * PG, PRIVATE_W, NULL, NULL), 0);
	pfn = frame_of(fd, 0);
	ASSERT_TRUE(one_host_huge_page(&e, pfn));
	/* A 4 KiB conversion splits the folio, not the host page. */
	ASSERT_EQ(convert(fd, 7 * PG, PG, 0), 0);
	ASSERT_EQ(order_at(fd, 0), 0);
	ASSERT_TRUE(one_host_huge_page(&e, pfn));
	/* A punch frees one page of it: the host page splits. */
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 9 * PG, PG), 0);
	ASSERT_TRUE(!host_thp(&e, pfn + 10));
	/* Refilled and merged, the folio is whole again on 4 KiB host pages. */
	ASSERT_EQ(gmem_vm_fault(e.vm, GPA + 9 * PG, PRIVATE_W, NULL, NULL), 0);
	ASSERT_EQ(convert(fd, 7 * PG, PG, PRIV), 0);
	ASSERT_EQ(order_at(fd, 0), 9);
	ASSERT_TRUE(!host_thp(&e, pfn + 10));
	/* The other folio of the file was never used: no memory. */
	ASSERT_EQ(in_use(&e), 512);
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);

	/* A host mapping fences a private 4 KiB page inside a host huge page. */
	map_fd = gmem_create(e.vm, 2 * MiB, H2M | GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	ASSERT_GE(map_fd, 0);
	ASSERT_EQ(gmem_mmap(map_fd, 0, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED,
			    &addr), 0);
	p = addr;
	p[0] = 1;
	ASSERT_EQ(gmem_folio_info(map_fd, 0, &pfn, NULL, NULL), 1);
	ASSERT_TRUE(one_host_huge_page(&e, pfn));
	ASSERT_EQ(convert(map_fd, 3 * PG, PG, PRIV), 0);
	ASSERT_TRUE(one_host_huge_page(&e, pfn));
	p[4 * PG] = 2;
	ASSERT_EQ(((uint8_t *)gmem_pool_frame(e.pool, pfn + 4))[0], 2);
	ASSERT_EQ(gmem_munmap(addr, 2 * MiB), 0);
	ASSERT_EQ(gmem_close(map_fd), 0);
	env_free(&e);
}

/* A check-mode VM of @arch with a bound file, where the pool has host huge pages. */
static struct env huge_pool_env(const char *arch, uint64_t size, uint64_t flags,
				int *fd)
{
	struct env e = check_env(arch);

	need_host_huge_pages(&e);
	*fd = bound_file(&e, size, flags);
	return e;
}

TEST(a_1g_folio_is_512_host_huge_pages)
{
	int fd;
	struct env e = huge_pool_env("snp", GiB, H1G, &fd);
	uint64_t pfn;

	/* The fault allocates the host huge page it touches... */
	guest_write(&e, 3, GMEM_FAULT_PRIVATE);
	pfn = frame_of(fd, 0);
	ASSERT_EQ(order_at(fd, 0), 18);
	ASSERT_TRUE(one_host_huge_page(&e, pfn));
	/* ...and fallocate the rest, each 2 MiB of it one host huge page. */
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, GiB), 0);
	for (uint64_t i = 1; i < 512; i += 73)
		ASSERT_TRUE(one_host_huge_page(&e, pfn + i * 512));
	ASSERT_TRUE(one_host_huge_page(&e, pfn + 511 * 512));
	guest_expect(&e, 3, GMEM_FAULT_PRIVATE);
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

TEST(a_4k_file_keeps_4k_host_pages)
{
	int fd;
	struct env e = huge_pool_env("sw", 4 * MiB, 0, &fd);
	uint64_t pfn;

	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, 4 * MiB), 0);
	guest_write(&e, 600, GMEM_FAULT_PRIVATE);
	pfn = frame_of(fd, 0);
	ASSERT_TRUE(!host_thp(&e, pfn));
	ASSERT_TRUE(!host_thp(&e, pfn + 600));
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

/* Bytes the pool file holds, as the kernel counts its blocks. */
static uint64_t pool_file_bytes(struct env *e)
{
	uintptr_t va = (uintptr_t)gmem_pool_frame(e->pool, 0), lo, hi;
	unsigned long long ino = 0, cand;
	unsigned int major = 0, minor = 0, cmaj, cmin;
	char line[512], path[PATH_MAX];
	struct dirent *d;
	struct stat st;
	FILE *maps = fopen("/proc/self/maps", "r");
	DIR *dir;

	ASSERT_TRUE(maps);
	while (fgets(line, sizeof(line), maps))
		if (sscanf(line, "%lx-%lx %*s %*s %x:%x %llu", &lo, &hi, &cmaj,
			   &cmin, &cand) == 5 && lo <= va && va < hi) {
			ino = cand;
			major = cmaj;
			minor = cmin;
		}
	fclose(maps);
	ASSERT_NE(ino, 0);
	dir = opendir("/proc/self/fd");
	ASSERT_TRUE(dir);
	while ((d = readdir(dir))) {
		snprintf(path, sizeof(path), "/proc/self/fd/%s", d->d_name);
		/* Every pool's tmpfs numbers its inodes from 1: match the device too. */
		if (!stat(path, &st) && st.st_ino == ino && S_ISREG(st.st_mode) &&
		    major(st.st_dev) == major && minor(st.st_dev) == minor) {
			closedir(dir);
			return (uint64_t)st.st_blocks * 512;
		}
	}
	closedir(dir);
	ASSERT_TRUE(false);
	return 0;
}

/* fallocate allocates: the pool file holds the range's memory afterwards. */
static void fallocate_allocates(struct env *e, uint64_t flags, uint64_t size)
{
	uint64_t before = pool_file_bytes(e);
	int fd = gmem_create(e->vm, size, flags);

	ASSERT_GE(fd, 0);
	ASSERT_EQ(pool_file_bytes(e), before);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, size), 0);
	ASSERT_EQ(in_use(e), size / PG);
	ASSERT_EQ(pool_file_bytes(e), before + size);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 0, size), 0);
	ASSERT_EQ(pool_file_bytes(e), before);
	ASSERT_EQ(gmem_close(fd), 0);
}

TEST(fallocate_allocates_the_memory_of_4k_and_huge_folios)
{
	struct env e = env_new("sw");

	fallocate_allocates(&e, 0, 3 * MiB);
	fallocate_allocates(&e, H2M, 4 * MiB);
	fallocate_allocates(&e, H1G, GiB);
	env_free(&e);
}

/*
 * Inside the host huge page under a 2 MiB folio, a private 4 KiB page stays
 * fenced in the host mapping whatever splits that page: the host's
 * MADV_REMOVE of a shared neighbour, gmem's own punch, a conversion.
 */
TEST(a_private_page_in_a_host_huge_page_stays_fenced_through_its_split)
{
	int fd;
	struct env e = huge_pool_env("sw", 2 * MiB,
				     H2M | GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED, &fd);
	uint64_t pfn;
	uint8_t *p, v;
	void *addr;

	ASSERT_EQ(gmem_mmap(fd, 0, 2 * MiB, PROT_READ | PROT_WRITE, MAP_SHARED, &addr), 0);
	p = addr;
	memset(p, 0x11, 8 * PG);
	pfn = frame_of(fd, 0);
	ASSERT_EQ(convert(fd, PG, PG, PRIV), 0);
	guest_write(&e, 1, GMEM_FAULT_PRIVATE);
	ASSERT_TRUE(one_host_huge_page(&e, pfn));
	ASSERT_EQ(probe_read(p + PG, &v), SIGSEGV);

	ASSERT_EQ(madvise(p + 3 * PG, PG, MADV_REMOVE), 0);
	ASSERT_TRUE(!one_host_huge_page(&e, pfn));	/* split around page 3 */
	ASSERT_EQ(probe_read(p + PG, &v), SIGSEGV);
	ASSERT_EQ(gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE | GMEM_FALLOC_PUNCH_HOLE,
				 5 * PG, PG), 0);
	ASSERT_EQ(convert(fd, 7 * PG, PG, PRIV), 0);
	ASSERT_EQ(probe_read(p + PG, &v), SIGSEGV);
	ASSERT_EQ(probe_read(p + 7 * PG, &v), SIGSEGV);
	guest_expect(&e, 1, GMEM_FAULT_PRIVATE);
	ASSERT_EQ(p[2 * PG], 0x11);
	ASSERT_EQ(p[3 * PG], 0);
	ASSERT_EQ(gmem_munmap(addr, 2 * MiB), 0);
	assert_clean(&e);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

/*
 * A process that may not create a tmpfs (no CAP_SYS_ADMIN) gets a pool of
 * 4 KiB host pages, on which huge folios work as before.
 */
TEST(without_cap_sys_admin_the_pool_has_4k_host_pages_and_huge_folios_work)
{
	pid_t pid = fork();
	int status = 0;

	ASSERT_GE(pid, 0);
	if (!pid) {
		struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
		struct __user_cap_data_struct data[2];
		struct env e;
		int fd, order = -1;

		if (syscall(SYS_capget, &hdr, data))
			_exit(2);
		data[CAP_SYS_ADMIN / 32].effective &= ~(1U << (CAP_SYS_ADMIN % 32));
		data[CAP_SYS_ADMIN / 32].permitted &= ~(1U << (CAP_SYS_ADMIN % 32));
		if (syscall(SYS_capset, &hdr, data))
			_exit(3);
		e.pool = gmem_pool_create(64 * GiB);
		e.vm = gmem_vm_create(e.pool, "sw", 0);
		if (e.pool < 0 || e.vm < 0 ||
		    gmem_pool_huge_page_size(e.pool) != (int64_t)PG)
			_exit(4);
		fd = gmem_create(e.vm, 2 * MiB, H2M);
		if (fd < 0 || gmem_vm_bind(e.vm, 0, GPA, 2 * MiB, fd, 0) ||
		    gmem_vm_fault(e.vm, GPA, PRIVATE_W, NULL, NULL) ||
		    gmem_folio_info(fd, 0, NULL, &order, NULL) != 1 || order != 9 ||
		    gmem_fallocate(fd, GMEM_FALLOC_KEEP_SIZE, 0, 2 * MiB))
			_exit(5);
		_exit(0);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
}
