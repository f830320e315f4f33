// SPDX-License-Identifier: MIT
/*
 * gmem info - make a pool, a VM and a file, and print what works here: the
 * pool, the metadata of a 1 GiB file, the host pages behind huge folios, and
 * whether /dev/kvm is usable (gmem vm and gmem exec need it).
 */
#include <fcntl.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL	102
#endif

/*
 * Does the host kernel offer guard regions on shared memory (Linux 6.15)?
 * The same probe gmem makes before its first host mapping (src/fence.c).
 */
static bool host_has_guards(void)
{
	int fd = memfd_create("gmem-info", MFD_CLOEXEC);
	bool ok = false;
	void *p;

	if (fd < 0)
		return false;
	if (!ftruncate(fd, 4096)) {
		p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p != MAP_FAILED) {
			ok = !madvise(p, 4096, MADV_GUARD_INSTALL);
			munmap(p, 4096);
		}
	}
	close(fd);
	return ok;
}

int cmd_info(int argc, char **argv)
{
	struct gmem_pool_stats st;
	int pool, vm, fd, kvm;

	if (argc > 1) {
		bool help = !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h");

		fprintf(help ? stdout : stderr, "usage: gmem info\n\n"
			"Create a pool, a VM and a 1 GiB file; print what works here: the\n"
			"pool, the file's metadata, the backends, how host mappings fence\n"
			"private pages, the host pages behind huge folios and whether\n"
			"/dev/kvm is usable.\n");
		return help ? 0 : 2;
	}

	pool = gmem_pool_create(0);
	if (pool < 0)
		goto fail;
	vm = gmem_vm_create(pool, "sw", 0);
	if (vm < 0)
		goto fail;
	fd = gmem_create(vm, 1ULL << 30, GMEM_FLAG_MMAP | GMEM_FLAG_INIT_SHARED);
	if (fd < 0)
		goto fail;
	if (gmem_pool_stats(pool, &st) < 0)
		goto fail;
	printf("pool: %llu GiB reserved, %llu frames in use\n",
	       (unsigned long long)(st.capacity_frames >> 18),
	       (unsigned long long)st.frames_in_use);
	printf("file: 1 GiB, %llu bytes of metadata\n",
	       (unsigned long long)st.metadata_bytes);
	printf("backends: sw snp tdx pkvm (models of the hardware's rules; no TEE needed)\n");
	printf("host mappings: %s\n", host_has_guards() ?
	       "private pages fenced by guard regions (MADV_GUARD_INSTALL), whole private 2 MiB chunks by an empty memfd mapped over them (no page table)" :
	       "private pages fenced by mprotect (no guard regions on shmem before Linux 6.15): a VMA per fenced run");
	printf("huge folios: %s\n", gmem_pool_huge_page_size(pool) > (int64_t)GMEM_PAGE_SIZE ?
	       "on 2 MiB host huge pages (shmem THP, private tmpfs huge=advise)" :
	       "on 4 KiB host pages (no tmpfs of its own here: needs CAP_SYS_ADMIN)");
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	printf("/dev/kvm: %s\n", kvm >= 0 ? "usable (gmem vm, gmem exec)" :
	       "not usable (gmem vm and gmem exec skip)");
	if (kvm >= 0)
		close(kvm);
	return 0;
fail:
	fprintf(stderr, "gmem: %s\n", gmem_last_error());
	return 1;
}

