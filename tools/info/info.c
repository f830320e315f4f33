// SPDX-License-Identifier: MIT
/*
 * gmem info - make a pool, a VM and a file, and print what works here: the
 * pool, the metadata of a 1 GiB file, the host pages behind huge folios, and
 * whether /dev/kvm is usable (gmem vm and gmem exec need it).
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cmd_info(int argc, char **argv)
{
	struct gmem_pool_stats st;
	int pool, vm, fd, kvm;

	if (argc > 1) {
		bool help = !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h");

		fprintf(help ? stdout : stderr, "usage: gmem info\n\n"
			"Create a pool, a VM and a 1 GiB file; print the pool, the file's\n"
			"metadata, the host pages behind huge folios and whether /dev/kvm\n"
			"is usable here.\n");
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

