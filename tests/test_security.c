// SPDX-License-Identifier: MIT
/*
 * The threat model of docs/security.md, one test per path to a private frame
 * that is not covered elsewhere: what gmem does on each — fences it, refuses
 * it, reports it in check mode (GMEM_VM_CHECK, from /proc/self/maps and
 * /proc/self/pagemap), or cannot close it from userspace (the test then
 * shows what happens, as documented).
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define PG	GMEM_PAGE_SIZE
#define MiB	(1ULL << 20)
#define GiB	(1ULL << 30)
#define RW	(PROT_READ | PROT_WRITE)
#define PRIV	GMEM_ATTR_PRIVATE
#define GPA	(16 * MiB)
#define SECRET	0x5e

#ifndef MADV_GUARD_REMOVE
#define MADV_GUARD_REMOVE	103
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE		25
#endif

/*
 * A checked (GMEM_VM_CHECK) sw VM with a file of @pages shared pages, bound
 * at GPA and mapped; the guest then writes SECRET into page 1 as private.
 */
struct cx {
	int pool, vm, fd;
	uint8_t *p;
	size_t len;
};

static void guest_write_secret(struct cx *c, uint64_t page)
{
	uint8_t data[PG];
	struct gmem_exit ex;

	memset(data, SECRET, sizeof(data));
	ASSERT_EQ(gmem_vm_access(c->vm, GPA + page * PG, data, PG,
				 GMEM_FAULT_WRITE | GMEM_FAULT_PRIVATE, &ex), 0);
}

static struct cx cx_new(uint64_t pages, uint64_t vm_flags)
{
	struct cx c;
	void *addr = NULL;

	c.pool = gmem_pool_create(16 * GiB);
	ASSERT_GE(c.pool, 0);
	c.vm = gmem_vm_create(c.pool, "sw", vm_flags);
	ASSERT_GE(c.vm, 0);
	c.fd = gmem_create(c.vm, pages * PG, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	ASSERT_GE(c.fd, 0);
	c.len = pages * PG;
	ASSERT_EQ(gmem_vm_bind(c.vm, 0, GPA, c.len, c.fd, 0), 0);
	ASSERT_EQ(gmem_mmap(c.fd, 0, c.len, RW, MAP_SHARED, &addr), 0);
	c.p = addr;
	memset(c.p, 0x11, c.len);
	ASSERT_EQ(gmem_set_attributes(c.fd, PG, PG, PRIV, 0, NULL), 0);
	guest_write_secret(&c, 1);
	return c;
}

static void cx_free(struct cx *c, bool unmap)
{
	if (unmap)
		ASSERT_EQ(gmem_munmap(c->p, c->len), 0);
	ASSERT_EQ(gmem_close(c->fd), 0);
	ASSERT_EQ(gmem_vm_close(c->vm), 0);
	ASSERT_EQ(gmem_pool_close(c->pool), 0);
}

static uint64_t frame_of(int fd, uint64_t offset)
{
	uint64_t pfn = 0;

	ASSERT_EQ(gmem_folio_info(fd, offset, &pfn, NULL, NULL), 1);
	return pfn;
}

/* The first violation of invariant @inv whose rule contains @what, or NULL. */
static const struct gmem_violation *find_violation(int vm, int inv,
						   const char *what)
{
	static struct gmem_violation v[64];
	int64_t n = gmem_vm_violations(vm, v, 64);

	ASSERT_GE(n, 0);
	for (int64_t i = 0; i < n && i < 64; i++)
		if (v[i].invariant == inv && strstr(v[i].rule, what))
			return &v[i];
	for (int64_t i = 0; i < n && i < 64; i++)
		printf("#   violation %d at %#llx: %s\n", v[i].invariant,
		       (unsigned long long)v[i].offset, v[i].rule);
	return NULL;
}

static char *addr_str(const void *p)
{
	static char buf[4][32];
	static int i;

	snprintf(buf[i % 4], sizeof(buf[0]), "%p", p);
	return buf[i++ % 4];
}

/* A gmem call that runs the check: a query-free one that changes nothing. */
static void run_check(struct cx *c)
{
	ASSERT_EQ(gmem_fallocate(c->fd, GMEM_FALLOC_KEEP_SIZE, 0, PG), 0);
}

TEST(a_clean_checked_workload_has_no_violation_from_the_ground_truth)
{
	struct cx c = cx_new(4, GMEM_VM_CHECK);

	run_check(&c);
	ASSERT_EQ(gmem_vm_violations(c.vm, NULL, 0), 0);
	cx_free(&c, true);
}

/* mremap(addr, 0, len, MREMAP_MAYMOVE) makes a second mapping. */
TEST(a_second_mapping_made_by_mremap_reads_private_bytes_and_check_mode_names_it)
{
	struct cx c = cx_new(4, GMEM_VM_CHECK);
	const struct gmem_violation *v;
	uint8_t *q = mremap(c.p, 0, c.len, MREMAP_MAYMOVE);

	ASSERT_TRUE(q != MAP_FAILED);
	ASSERT_EQ(q[PG], SECRET);	/* not preventable: the kernel allows it */
	run_check(&c);
	v = find_violation(c.vm, 1, "does not know");
	ASSERT_TRUE(v);
	ASSERT_EQ(v->offset, PG);
	ASSERT_EQ(v->pfn, frame_of(c.fd, PG));
	ASSERT_TRUE(strstr(v->rule, addr_str(q + PG)));
	/* Later conversions never reach it either, and each is reported. */
	ASSERT_EQ(gmem_set_attributes(c.fd, 2 * PG, PG, PRIV, 0, NULL), 0);
	guest_write_secret(&c, 2);
	ASSERT_EQ(q[2 * PG], SECRET);
	ASSERT_TRUE(find_violation(c.vm, 1, addr_str(q + 2 * PG)));
	ASSERT_EQ(munmap(q, c.len), 0);
	cx_free(&c, true);
}

/* Moved with MREMAP_DONTUNMAP, gmem's address loses its guards. */
TEST(a_mapping_moved_by_mremap_dontunmap_leaves_gmems_address_unguarded_and_is_reported)
{
	struct cx c = cx_new(4, GMEM_VM_CHECK);
	/* The raw call: the kernel reads new_address for DONTUNMAP, NULL = anywhere. */
	uint8_t *q = (uint8_t *)syscall(SYS_mremap, c.p, c.len, c.len,
					MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL);

	ASSERT_TRUE(q != MAP_FAILED);
	ASSERT_EQ(c.p[PG], SECRET);	/* the guard moved to q; the page refaults here */
	run_check(&c);
	ASSERT_TRUE(find_violation(c.vm, 1, "gmem's mapping"));
	ASSERT_TRUE(find_violation(c.vm, 1, addr_str(c.p + PG)));
	/* The new place is not gmem's: newly private pages show there. */
	ASSERT_EQ(gmem_set_attributes(c.fd, 2 * PG, PG, PRIV, 0, NULL), 0);
	guest_write_secret(&c, 2);
	ASSERT_EQ(q[2 * PG], SECRET);
	ASSERT_TRUE(find_violation(c.vm, 1, addr_str(q + 2 * PG)));
	ASSERT_EQ(munmap(q, c.len), 0);
	cx_free(&c, true);
}

/* A plain move leaves a stale record; conversions then fail. */
TEST(a_mapping_moved_by_mremap_is_reported_and_later_conversions_fail_with_enomem)
{
	struct cx c = cx_new(4, GMEM_VM_CHECK);
	uint8_t *r = mmap(NULL, c.len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *q;
	uint64_t err = 0;

	ASSERT_TRUE(r != MAP_FAILED);
	q = mremap(c.p, c.len, c.len, MREMAP_MAYMOVE | MREMAP_FIXED, r);
	ASSERT_TRUE(q == r);
	run_check(&c);
	ASSERT_TRUE(find_violation(c.vm, 1, "no longer there"));
	/* The fences follow the record to an empty address: refused. */
	ASSERT_EQ(gmem_set_attributes(c.fd, 2 * PG, PG, PRIV, 0, &err), -ENOMEM);
	ASSERT_EQ(err, 2 * PG);
	ASSERT_EQ(munmap(q, c.len), 0);
	cx_free(&c, false);
}

/* munmap(2) instead of gmem_munmap leaves a stale record. */
TEST(munmap_2_of_a_gmem_mapping_is_reported_as_a_stale_record)
{
	struct cx c = cx_new(4, GMEM_VM_CHECK);
	uint8_t *anon;

	ASSERT_EQ(munmap(c.p, c.len), 0);
	run_check(&c);
	ASSERT_TRUE(find_violation(c.vm, 1, "no longer there"));
	/* Something else mapped there would get gmem's fences: still reported. */
	anon = mmap(c.p, c.len, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	ASSERT_TRUE(anon == c.p);
	ASSERT_EQ(gmem_set_attributes(c.fd, 2 * PG, PG, PRIV, 0, NULL), 0);
	ASSERT_TRUE(find_violation(c.vm, 1, addr_str(c.p)));
	/* gmem_munmap drops the record (and would unmap what is there: munmap(2)'s rule). */
	ASSERT_EQ(gmem_munmap(c.p, c.len), 0);
	cx_free(&c, false);
}

/* MADV_GUARD_REMOVE on a gmem mapping. */
TEST(guard_removal_on_a_gmem_mapping_gives_private_bytes_back_and_is_reported)
{
	struct cx c = cx_new(4, GMEM_VM_CHECK);
	const struct gmem_violation *v;

	ASSERT_EQ(madvise(c.p + PG, PG, MADV_GUARD_REMOVE), 0);
	ASSERT_EQ(c.p[PG + 7], SECRET);
	run_check(&c);
	v = find_violation(c.vm, 1, "gmem's mapping");
	ASSERT_TRUE(v);
	ASSERT_EQ(v->pfn, frame_of(c.fd, PG));
	ASSERT_TRUE(strstr(v->rule, addr_str(c.p + PG)));
	cx_free(&c, true);
}

/* MADV_GUARD_REMOVE on a stage-2 view: invariant 2 (the view shows what stage-2 does not map). */
TEST(guard_removal_on_a_stage2_view_is_reported)
{
	struct cx c = cx_new(4, GMEM_VM_CHECK);
	void *view = NULL;

	ASSERT_EQ(gmem_vm_view_mmap(c.vm, 0, PRIV, &view), 0);
	ASSERT_EQ(gmem_vm_violations(c.vm, NULL, 0), 0);
	/* Page 2 is shared: the private view keeps it closed. */
	ASSERT_EQ(madvise((uint8_t *)view + 2 * PG, PG, MADV_GUARD_REMOVE), 0);
	run_check(&c);
	ASSERT_TRUE(find_violation(c.vm, 2, "private view shows"));
	ASSERT_EQ(gmem_vm_unbind(c.vm, 0), 0);
	ASSERT_EQ(munmap(view, c.len), 0);
	cx_free(&c, true);
}

/* The inode of the file mapped at @addr, from /proc/self/maps. */
/*
 * The device and inode of the file mapped at @addr, from /proc/self/maps:
 * the inode alone is not enough, each pool on a tmpfs of its own is inode 2.
 */
static unsigned long inode_at(const void *addr, dev_t *dev)
{
	unsigned long long start, end, ino = 0;
	unsigned int major = 0, minor = 0;
	char line[512];
	FILE *f = fopen("/proc/self/maps", "r");

	ASSERT_TRUE(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%llx-%llx %*s %*s %x:%x %llu", &start, &end,
			   &major, &minor, &ino) == 5 &&
		    (uintptr_t)addr >= start && (uintptr_t)addr < end)
			break;
	fclose(f);
	*dev = makedev(major, minor);
	return (unsigned long)ino;
}

/* The pool memfd found under /proc/self/fd and mapped again. */
TEST(the_pool_memfd_mapped_again_through_proc_self_fd_is_reported)
{
	struct cx c = cx_new(4, GMEM_VM_CHECK);
	dev_t dev;
	unsigned long ino = inode_at(gmem_pool_frame(c.pool, 0), &dev);
	uint64_t pfn = frame_of(c.fd, PG);
	char path[PATH_MAX];
	struct dirent *d;
	struct stat st;
	uint8_t *q = MAP_FAILED;
	DIR *dir = opendir("/proc/self/fd");
	int fd = -1;

	ASSERT_TRUE(dir);
	ASSERT_NE(ino, 0);
	/* The pool's memfd: the file of its direct map. */
	while ((d = readdir(dir))) {
		snprintf(path, sizeof(path), "/proc/self/fd/%s", d->d_name);
		if (!stat(path, &st) && st.st_ino == ino && st.st_dev == dev) {
			fd = open(path, O_RDWR);
			break;
		}
	}
	closedir(dir);
	ASSERT_GE(fd, 0);
	q = mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, (off_t)(pfn * PG));
	ASSERT_TRUE(q != MAP_FAILED);
	ASSERT_EQ(q[0], SECRET);	/* the process owns the fd: not preventable */
	run_check(&c);
	ASSERT_TRUE(find_violation(c.vm, 1, addr_str(q)));
	ASSERT_EQ(munmap(q, PG), 0);
	close(fd);
	cx_free(&c, true);
}

TEST(proc_self_mem_and_process_vm_readv_cannot_read_a_private_page_of_a_mapping)
{
	struct cx c = cx_new(4, 0);
	int mem = open("/proc/self/mem", O_RDONLY);
	uint8_t b = 0;
	struct iovec local = { &b, 1 }, remote = { c.p + PG, 1 };

	ASSERT_GE(mem, 0);
	/* A guard stops the kernel's own access (GUP) too, even with FOLL_FORCE. */
	ASSERT_EQ(pread(mem, &b, 1, (off_t)(uintptr_t)(c.p + PG)), -1);
	ASSERT_EQ(errno, EIO);
	ASSERT_EQ(process_vm_readv(getpid(), &local, 1, &remote, 1, 0), -1);
	ASSERT_EQ(errno, EFAULT);
	ASSERT_NE(b, SECRET);
	/* Shared pages read as usual. */
	ASSERT_EQ(pread(mem, &b, 1, (off_t)(uintptr_t)c.p), 1);
	ASSERT_EQ(b, 0x11);
	close(mem);
	cx_free(&c, true);
}

/* A page reference the kernel takes is invisible to gmem. */
TEST(a_vmsplice_page_reference_does_not_block_conversion_and_reads_private_bytes)
{
	struct cx c = cx_new(4, 0);
	struct iovec iov = { c.p + 2 * PG, PG };
	uint8_t buf[PG];
	int pipefd[2];

	ASSERT_EQ(pipe(pipefd), 0);
	ASSERT_EQ(vmsplice(pipefd[1], &iov, 1, 0), (ssize_t)PG);
	/* The kernel's in-place conversion would refuse (EAGAIN, an extra reference). */
	ASSERT_EQ(gmem_set_attributes(c.fd, 2 * PG, PG, PRIV, 0, NULL), 0);
	guest_write_secret(&c, 2);
	ASSERT_EQ(read(pipefd[0], buf, PG), (ssize_t)PG);
	ASSERT_EQ(buf[0], SECRET);	/* not closable from userspace */
	/* gmem_pin is how a VMM declares such a reference: then EAGAIN. */
	ASSERT_EQ(gmem_pin(c.fd, 3 * PG, PG), 0);
	ASSERT_EQ(gmem_set_attributes(c.fd, 3 * PG, PG, PRIV, 0, NULL), -EAGAIN);
	ASSERT_EQ(gmem_unpin(c.fd, 3 * PG, PG), 0);
	close(pipefd[0]);
	close(pipefd[1]);
	cx_free(&c, true);
}

/* A child of a raw clone() never ran the fork handlers. */
TEST(a_child_of_raw_clone_is_not_reached_by_conversions)
{
	struct cx c = cx_new(4, 0);
	int to[2], from[2], status;
	uint8_t token = 1, seen = 0;
	long pid;

	ASSERT_EQ(pipe(to), 0);
	ASSERT_EQ(pipe(from), 0);
	fflush(stdout);
	pid = syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, NULL);
	ASSERT_GE(pid, 0);
	if (!pid) {
		/* Plain system calls only: no fork handler ran here. */
		if (syscall(SYS_read, to[0], &token, 1) != 1)
			syscall(SYS_exit, 2);
		token = c.p[2 * PG];
		syscall(SYS_write, from[1], &token, 1);
		syscall(SYS_exit, 0);
	}
	ASSERT_EQ(gmem_set_attributes(c.fd, 2 * PG, PG, PRIV, 0, NULL), 0);
	guest_write_secret(&c, 2);
	ASSERT_EQ(write(to[1], &token, 1), 1);
	ASSERT_EQ(read(from[0], &seen, 1), 1);
	ASSERT_EQ(waitpid((pid_t)pid, &status, 0), (pid_t)pid);
	ASSERT_EQ(seen, SECRET);	/* documented: not closable without the handlers */
	close(to[0]);
	close(to[1]);
	close(from[0]);
	close(from[1]);
	cx_free(&c, true);
}

/* MADV_COLLAPSE is the host kernel's; it never opens a private page. */
TEST(madv_collapse_on_a_gmem_mapping_never_opens_a_private_page)
{
	struct env e = env_new("sw");
	int fd = gmem_create(e.vm, 4 * MiB, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED |
			     GMEM_FLAG_HUGE_2M);
	void *addr = NULL;
	uint8_t *p, v;

	ASSERT_GE(fd, 0);
	ASSERT_EQ(gmem_mmap(fd, 0, 4 * MiB, RW, MAP_SHARED, &addr), 0);
	p = addr;
	memset(p, 0x22, 4 * MiB);
	ASSERT_EQ(gmem_set_attributes(fd, 2 * MiB + PG, PG, PRIV, 0, NULL), 0);
	/* A range holding a guard: the kernel refuses (the kernel's guest_memfd always does). */
	ASSERT_EQ(madvise(p + 2 * MiB, 2 * MiB, MADV_COLLAPSE), -1);
	/* An all-shared range is the host's business: it may collapse or not. */
	(void)madvise(p, 2 * MiB, MADV_COLLAPSE);
	ASSERT_EQ(probe_read(p + 2 * MiB + PG, &v), SIGSEGV);	/* still fenced */
	ASSERT_EQ(p[0], 0x22);
	ASSERT_EQ(gmem_set_attributes(fd, PG, PG, PRIV, 0, NULL), 0);
	ASSERT_EQ(probe_read(p + PG, &v), SIGSEGV);
	ASSERT_EQ(gmem_munmap(p, 4 * MiB), 0);
	ASSERT_EQ(gmem_close(fd), 0);
	env_free(&e);
}

/* MADV_REMOVE punches frames behind gmem's back, but opens nothing. */
TEST(madv_remove_on_a_private_page_loses_its_content_but_never_opens_it)
{
	struct cx c = cx_new(4, 0);
	uint8_t v;

	ASSERT_EQ(madvise(c.p + PG, PG, MADV_REMOVE), 0);
	ASSERT_EQ(probe_read(c.p + PG, &v), SIGSEGV);
	ASSERT_EQ(gmem_set_attributes(c.fd, PG, PG, 0, 0, NULL), 0);
	ASSERT_EQ(c.p[PG], 0);		/* the guest's bytes are gone */
	cx_free(&c, true);
}

/* Is the mapping at @addr marked "dd" (not dumped) in /proc/self/smaps? */
static bool not_dumped(const void *addr)
{
	char want[32], line[512];
	bool in = false;
	FILE *f = fopen("/proc/self/smaps", "r");

	ASSERT_TRUE(f);
	snprintf(want, sizeof(want), "%lx-", (unsigned long)(uintptr_t)addr);
	while (fgets(line, sizeof(line), f)) {
		if (strchr(line, '-') && strchr(line, ' ') && !strncmp(line, want, strlen(want)))
			in = true;
		else if (in && !strncmp(line, "VmFlags:", 8)) {
			fclose(f);
			return strstr(line, " dd") != NULL;
		}
	}
	fclose(f);
	return false;
}

TEST(the_direct_map_and_the_stage2_views_are_left_out_of_core_dumps)
{
	struct cx c = cx_new(4, 0);
	void *view = NULL;

	ASSERT_TRUE(not_dumped(gmem_pool_frame(c.pool, 0)));
	ASSERT_EQ(gmem_vm_view_mmap(c.vm, 0, PRIV, &view), 0);
	ASSERT_TRUE(not_dumped(view));
	ASSERT_EQ(gmem_vm_unbind(c.vm, 0), 0);
	ASSERT_EQ(munmap(view, c.len), 0);
	cx_free(&c, true);
}
