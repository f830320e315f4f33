// SPDX-License-Identifier: MIT
/*
 * libgmem-kvm, black box: the ioctls. A program that speaks only KVM's UAPI
 * (kvm/uapi.h) runs under "gmem exec" (tests/kvm_util_min.h re-executes it
 * once per configuration below) and checks what the kernel answers: the
 * capabilities of each attribute model and VM type, KVM_CREATE_VM's types,
 * KVM_CREATE_GUEST_MEMFD and the file it returns, KVM_SET_USER_MEMORY_REGION2
 * with guest_memfd, and both attribute ioctls, each bad input with the
 * kernel's errno (/work/shared/reference/kernel-guest_memfd.md §1-§2; where
 * this host's kernel has the call, its answer was measured bare first).
 * Host mappings, signals, fallocate and fd lifetime: test_kvm_files.c.
 * KVM_RUN: test_kvm_guest.c.
 */
#include <sys/socket.h>

#include "kvm_util_min.h"

static const struct kt_config configs[] = {
	{ "in-place", "sw", "", { NULL } },
	{ "per-vm", "sw", "", { NULL } },
	/* The guest_memfd-attributes capability's number moved (249 in v4). */
	{ "in-place", "sw", "cap", { "--cap-gmem-attributes", "249", NULL } },
	{ "per-vm", "sw", "cap", { "--cap-gmem-attributes", "249", NULL } },
	/* gmem's invariants verified after every call; exit 1 on a violation. */
	{ "in-place", "sw", "", { "--check", NULL } },
	{ "per-vm", "sw", "", { "--check", NULL } },
};
KT_DRIVER(configs, NULL)

#define SW	GK_X86_SW_PROTECTED_VM
#define MMAP	GK_GUEST_MEMFD_FLAG_MMAP
#define SHARED	GK_GUEST_MEMFD_FLAG_INIT_SHARED
#define GMEM	GK_MEM_GUEST_MEMFD
#define PRIV	GK_MEMORY_ATTRIBUTE_PRIVATE

/* The number gmem exec was told the guest_memfd-attributes capability has. */
static long cap_gmem_attributes(void)
{
	const char *c = kt_env("GMEM_KVM_TEST_CONFIG", "");

	return strstr(c, "--cap-gmem-attributes 249") ? 249 : 250;
}

static int check(int fd, long cap)
{
	return ioctl(fd, KVM_CHECK_EXTENSION, cap);
}

/* A fd number that is certainly closed now. */
static int closed_fd(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	ASSERT_GE(fd, 0);
	close(fd);
	return fd;
}

/* ------------------------------------------------------ capabilities */

KTEST(caps_system, "cap")
{
	int kvm = kt_kvm();
	long cap = cap_gmem_attributes(), other = cap == 250 ? 249 : 250;

	ASSERT_EQ(check(kvm, GK_CAP_GUEST_MEMFD), 1);
	ASSERT_EQ(check(kvm, GK_CAP_GUEST_MEMFD_FLAGS), MMAP | SHARED);
	ASSERT_EQ(check(kvm, GK_CAP_VM_TYPES), 1 << 0 | 1 << SW);
	ASSERT_EQ(check(kvm, GK_CAP_USER_MEMORY2), 1);
	ASSERT_EQ(check(kvm, GK_CAP_MEMORY_FAULT_INFO), 1);
	/* Per VM, PRIVATE is a VM attribute; in place it is the file's. */
	ASSERT_EQ(check(kvm, GK_CAP_MEMORY_ATTRIBUTES), kt_per_vm() ? PRIV : 0);
	ASSERT_EQ(check(kvm, cap), kt_per_vm() ? 0 : PRIV);
	/* The other candidate number is not the layer's: the host says 0. */
	ASSERT_EQ(check(kvm, other), 0);
	ASSERT_GT(check(kvm, GK_CAP_NR_MEMSLOTS), 0);
	close(kvm);
}

KTEST(caps_per_vm_type, "cap")
{
	int kvm = kt_kvm();
	long cap = cap_gmem_attributes();

	for (int type = 0; type <= 1; type++) {
		int vm = kt_vm(kvm, type);
		bool priv = type == SW;

		ASSERT_EQ(check(vm, GK_CAP_GUEST_MEMFD), 1);
		ASSERT_EQ(check(vm, GK_CAP_USER_MEMORY2), 1);
		ASSERT_EQ(check(vm, GK_CAP_MEMORY_FAULT_INFO), 1);
		ASSERT_EQ(check(vm, GK_CAP_VM_TYPES), 1 << 0 | 1 << SW);
		/* x86 refuses INIT_SHARED on a VM with private memory unless
		 * conversion is in place. */
		ASSERT_EQ(check(vm, GK_CAP_GUEST_MEMFD_FLAGS),
			  priv && kt_per_vm() ? MMAP : MMAP | SHARED);
		ASSERT_EQ(check(vm, GK_CAP_MEMORY_ATTRIBUTES),
			  priv && kt_per_vm() ? PRIV : 0);
		ASSERT_EQ(check(vm, cap), priv && !kt_per_vm() ? PRIV : 0);
		ASSERT_EQ(check(vm, GK_CAP_NR_MEMSLOTS), check(kvm, GK_CAP_NR_MEMSLOTS));
		/* Private memory leaves one address space (no SMM's); the host
		 * answers the rest (0 where it has no SMM, as here). */
		if (priv)
			ASSERT_LE(check(vm, KVM_CAP_MULTI_ADDRESS_SPACE), 1);
		close(vm);
	}
	close(kvm);
}

KTEST(create_vm_types, "")
{
	int kvm = kt_kvm();

	close(kt_vm(kvm, 0));
	close(kt_vm(kvm, SW));
	for (unsigned long type = 2; type < 64; type++)
		ASSERT_ERRNO(ioctl(kvm, KVM_CREATE_VM, type), EINVAL);
	close(kvm);
}

/* ------------------------------------------------------ guest_memfd */

KTEST(gmem_create_bad_flags, "")
{
	int kvm = kt_kvm(), vm0 = kt_vm(kvm, 0), vm1 = kt_vm(kvm, SW);
	struct gk_create_guest_memfd g = { .size = PG };

	for (int bit = 2; bit < 64; bit++) {
		ASSERT_ERRNO(kt_gmem_try(vm0, PG, 1ULL << bit), EINVAL);
		ASSERT_ERRNO(kt_gmem_try(vm1, PG, 1ULL << bit | MMAP), EINVAL);
	}
	for (uint64_t f = 0; f <= (MMAP | SHARED); f++)
		close(kt_gmem(vm0, PG, f));
	close(kt_gmem(vm1, PG, 0));
	close(kt_gmem(vm1, PG, MMAP));
	if (kt_per_vm()) {
		ASSERT_ERRNO(kt_gmem_try(vm1, PG, SHARED), EINVAL);
		ASSERT_ERRNO(kt_gmem_try(vm1, PG, MMAP | SHARED), EINVAL);
	} else {
		close(kt_gmem(vm1, PG, SHARED));
		close(kt_gmem(vm1, PG, MMAP | SHARED));
	}
	/* reserved[] is not validated; the struct is read first (EFAULT). */
	for (int i = 0; i < 6; i++) {
		g.reserved[i] = ~0ULL;
		close((int)ASSERT_OK(ioctl(vm1, GK_CREATE_GUEST_MEMFD, &g)));
	}
	ASSERT_ERRNO(ioctl(vm1, GK_CREATE_GUEST_MEMFD, (void *)8), EFAULT);
	/* A VM ioctl: /dev/kvm does not know it. */
	ASSERT_ERRNO(kt_gmem_try(kvm, PG, 0), EINVAL);
	close(vm0);
	close(vm1);
	close(kvm);
}

KTEST(gmem_create_bad_sizes, "")
{
	static const uint64_t bad[] = { 0, 1, PG - 1, PG + 1, 3 * PG + 8, -PG,
					1ULL << 63, ~0ULL };
	int kvm = kt_kvm(), vm = kt_vm(kvm, SW);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ASSERT_ERRNO(kt_gmem_try(vm, bad[i], 0), EINVAL);
		ASSERT_ERRNO(kt_gmem_try(vm, bad[i], MMAP), EINVAL);
		/* flags are checked first, but the errno is the same */
		ASSERT_ERRNO(kt_gmem_try(vm, bad[i], 1ULL << 5), EINVAL);
	}
	close(kt_gmem(vm, 2 * PG, 0));
	/* Past the room of the layer's pool (4 TiB, docs/kvm.md) where the
	 * kernel would allocate lazily: out of memory. */
	ASSERT_ERRNO(kt_gmem_try(vm, 8ULL << 40, 0), ENOMEM);
	ASSERT_ERRNO(kt_gmem_try(vm, (64ULL << 40) + PG, 0), ENOMEM);
	close(vm);
	close(kvm);
}

KTEST(gmem_file_identity, "")
{
	int kvm = kt_kvm(), vm = kt_vm(kvm, SW);
	int a = kt_gmem(vm, 3 * PG, MMAP), b = kt_gmem(vm, 5 * PG, 0);
	struct stat sa, sb;

	ASSERT_EQ(fstat(a, &sa), 0);
	ASSERT_EQ(fstat(b, &sb), 0);
	ASSERT_EQ(sa.st_size, 3 * PG);
	ASSERT_EQ(sb.st_size, 5 * PG);
	ASSERT_EQ(sa.st_blksize, PG);
	ASSERT_TRUE(S_ISREG(sa.st_mode));
	ASSERT_EQ(sa.st_mode & 0777, 0600);
	ASSERT_NE(sa.st_ino, sb.st_ino);
	/* O_RDWR, and not close-on-exec (get_unused_fd_flags(0)). */
	ASSERT_EQ(fcntl(a, F_GETFL) & O_ACCMODE, O_RDWR);
	ASSERT_EQ(fcntl(a, F_GETFD) & FD_CLOEXEC, 0);
	close(a);
	close(b);
	close(vm);
	close(kvm);
}

KTEST(gmem_read_write_fail, "")
{
	int kvm = kt_kvm(), vm = kt_vm(kvm, SW);
	int fd = kt_gmem(vm, 2 * PG, kt_per_vm() ? MMAP : MMAP | SHARED);
	char buf[64] = { 1 };

	/* No read/write methods (measured on this host's guest_memfd). */
	ASSERT_ERRNO(read(fd, buf, sizeof(buf)), EINVAL);
	ASSERT_ERRNO(write(fd, buf, sizeof(buf)), EINVAL);
	ASSERT_ERRNO(pread(fd, buf, sizeof(buf), 0), ESPIPE);
	ASSERT_ERRNO(pwrite(fd, buf, sizeof(buf), 0), ESPIPE);
	ASSERT_ERRNO(lseek(fd, PG, SEEK_SET), ESPIPE);
	/* The size is immutable (setattr EINVAL). */
	ASSERT_ERRNO(ftruncate(fd, 4 * PG), EINVAL);
	ASSERT_ERRNO(ftruncate(fd, 2 * PG), EINVAL);
	ASSERT_ERRNO(ftruncate(fd, 0), EINVAL);
	close(fd);
	close(vm);
	close(kvm);
}

/* -------------------------------------------------------- memslots */

KTEST(memslot_flags_with_guest_memfd, "")
{
	int kvm = kt_kvm(), vm = kt_vm(kvm, SW), fd = kt_gmem(vm, 4 * PG, 0);
	struct kvm_userspace_memory_region r1 = {
		.slot = 0, .flags = GMEM, .memory_size = 4 * PG,
	};
	void *hva = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT_TRUE(hva != MAP_FAILED);
	/* No dirty logging and no read-only memory with private memory. */
	ASSERT_ERRNO(kt_region(vm, 0, GMEM | GK_MEM_LOG_DIRTY_PAGES, 0, 4 * PG, 0, fd, 0),
		     EINVAL);
	ASSERT_ERRNO(kt_region(vm, 0, GMEM | GK_MEM_READONLY, 0, 4 * PG, 0, fd, 0), EINVAL);
	ASSERT_ERRNO(kt_region(vm, 0, GMEM | 1U << 3, 0, 4 * PG, 0, fd, 0), EINVAL);
	/* KVM_MEM_GUEST_MEMFD only through the v2 ioctl. */
	r1.userspace_addr = (uintptr_t)hva;
	ASSERT_ERRNO(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r1), EINVAL);
	/* Those flags are fine on plain memory. */
	ASSERT_EQ(kt_region(vm, 1, GK_MEM_LOG_DIRTY_PAGES, 0x100000, 4 * PG, hva, 0, 0), 0);
	ASSERT_EQ(kt_region(vm, 2, GK_MEM_READONLY, 0x200000, 4 * PG, hva, 0, 0), 0);
	/* A VM with private memory has no second address space. */
	ASSERT_ERRNO(kt_region(vm, 1 << 16 | 3, 0, 0x300000, 4 * PG, hva, 0, 0), EINVAL);
	ASSERT_EQ(kt_region(vm, 0, GMEM, 0, 4 * PG, 0, fd, 0), 0);
	close(fd);
	close(vm);
	close(kvm);
	munmap(hva, 4 * PG);
}

KTEST(memslot_bad_guest_memfd, "")
{
	int kvm = kt_kvm(), vm = kt_vm(kvm, SW), vm2 = kt_vm(kvm, SW);
	int fd = kt_gmem(vm, 4 * PG, 0), other = kt_gmem(vm2, 4 * PG, 0);
	int memfd = memfd_create("plain", 0), pipes[2];

	ASSERT_GE(memfd, 0);
	ASSERT_EQ(ftruncate(memfd, 4 * PG), 0);
	ASSERT_EQ(pipe(pipes), 0);
	ASSERT_ERRNO(kt_region(vm, 0, GMEM, 0, PG, 0, closed_fd(), 0), EBADF);
	ASSERT_ERRNO(kt_region(vm, 0, GMEM, 0, PG, 0, -1, 0), EBADF);
	/* An open fd that is no guest_memfd. */
	ASSERT_ERRNO(kt_region(vm, 0, GMEM, 0, PG, 0, kvm, 0), EINVAL);
	ASSERT_ERRNO(kt_region(vm, 0, GMEM, 0, PG, 0, vm, 0), EINVAL);
	ASSERT_ERRNO(kt_region(vm, 0, GMEM, 0, PG, 0, memfd, 0), EINVAL);
	ASSERT_ERRNO(kt_region(vm, 0, GMEM, 0, PG, 0, pipes[0], 0), EINVAL);
	/* Another VM's guest_memfd. */
	ASSERT_ERRNO(kt_region(vm, 0, GMEM, 0, PG, 0, other, 0), EINVAL);
	/* The file range: aligned, no overflow, inside the file. */
	ASSERT_ERRNO(kt_region(vm, 0, GMEM, 0, PG, 0, fd, 100), EINVAL);
	ASSERT_ERRNO(kt_region(vm, 0, GMEM, 0, 2 * PG, 0, fd, -PG), EINVAL);
	ASSERT_ERRNO(kt_region(vm, 0, GMEM, 0, 4 * PG, 0, fd, PG), EINVAL);
	ASSERT_ERRNO(kt_region(vm, 0, GMEM, 0, 8 * PG, 0, fd, 0), EINVAL);
	ASSERT_ERRNO(kt_region(vm, 0, GMEM, 0, PG, 0, fd, 4 * PG), EINVAL);
	/* The slot itself. */
	ASSERT_ERRNO(kt_region(vm, 0, GMEM, 100, PG, 0, fd, 0), EINVAL);
	ASSERT_ERRNO(kt_region(vm, 0, GMEM, 0, 100, 0, fd, 0), EINVAL);
	ASSERT_ERRNO(kt_region(vm, 0, GMEM, 0, PG, (void *)100, fd, 0), EINVAL);
	ASSERT_ERRNO(kt_region(vm, 0, GMEM, -PG, 2 * PG, 0, fd, 0), EINVAL);
	/* All of it, and then the other VM's file in its own VM. */
	ASSERT_EQ(kt_region(vm, 0, GMEM, 0, 4 * PG, 0, fd, 0), 0);
	ASSERT_EQ(kt_region(vm2, 0, GMEM, 0, 3 * PG, 0, other, PG), 0);
	close(pipes[0]);
	close(pipes[1]);
	close(memfd);
	close(fd);
	close(other);
	close(vm);
	close(vm2);
	close(kvm);
}

KTEST(memslot_overlap_eexist, "")
{
	int kvm = kt_kvm(), vm = kt_vm(kvm, SW), fd = kt_gmem(vm, 8 * PG, 0);
	void *hva = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT_TRUE(hva != MAP_FAILED);
	ASSERT_EQ(kt_region(vm, 0, GMEM, 0, 2 * PG, 0, fd, 0), 0);
	/* gpa overlap, file range free */
	ASSERT_ERRNO(kt_region(vm, 1, GMEM, PG, 2 * PG, 0, fd, 4 * PG), EEXIST);
	/* the gpa overlap is found before the fd is looked at */
	ASSERT_ERRNO(kt_region(vm, 1, GMEM, PG, 2 * PG, 0, closed_fd(), 0), EEXIST);
	/* a plain slot over a guest_memfd slot's gpas */
	ASSERT_ERRNO(kt_region(vm, 1, 0, 0, 4 * PG, hva, 0, 0), EEXIST);
	/* gpas apart, file ranges overlapping (wholly, partly) */
	ASSERT_ERRNO(kt_region(vm, 1, GMEM, 0x100000, 2 * PG, 0, fd, 0), EEXIST);
	ASSERT_ERRNO(kt_region(vm, 1, GMEM, 0x100000, 2 * PG, 0, fd, PG), EEXIST);
	ASSERT_ERRNO(kt_region(vm, 1, GMEM, 0x100000, 8 * PG, 0, fd, 0), EEXIST);
	/* adjacent file ranges and gpas are fine */
	ASSERT_EQ(kt_region(vm, 1, GMEM, 2 * PG, 2 * PG, 0, fd, 2 * PG), 0);
	ASSERT_EQ(kt_region(vm, 2, GMEM, 0x100000, 4 * PG, 0, fd, 4 * PG), 0);
	ASSERT_EQ(kt_region(vm, 3, 0, 4 * PG, 4 * PG, hva, 0, 0), 0);
	close(fd);
	close(vm);
	close(kvm);
	munmap(hva, 4 * PG);
}

KTEST(memslot_guest_memfd_slot_immutable, "")
{
	int kvm = kt_kvm(), vm = kt_vm(kvm, SW), fd = kt_gmem(vm, 4 * PG, 0);
	int nr = check(vm, GK_CAP_NR_MEMSLOTS);

	ASSERT_EQ(kt_region(vm, 0, GMEM, 0, 2 * PG, 0, fd, 0), 0);
	/* A guest_memfd slot can only be created or deleted. */
	ASSERT_ERRNO(kt_region(vm, 0, GMEM, 0, 2 * PG, 0, fd, 0), EINVAL);
	ASSERT_ERRNO(kt_region(vm, 0, GMEM, 0x100000, 2 * PG, 0, fd, 0), EINVAL);
	ASSERT_ERRNO(kt_region(vm, 0, 0, 0, 2 * PG, 0, fd, 0), EINVAL);
	ASSERT_ERRNO(kt_region(vm, 0, GK_MEM_LOG_DIRTY_PAGES, 0, 2 * PG, 0, 0, 0), EINVAL);
	/* Delete; a second delete and a missing slot are EINVAL. */
	ASSERT_EQ(kt_region(vm, 0, GMEM, 0, 0, 0, fd, 0), 0);
	ASSERT_ERRNO(kt_region(vm, 0, GMEM, 0, 0, 0, fd, 0), EINVAL);
	ASSERT_ERRNO(kt_region(vm, 7, 0, 0, 0, 0, 0, 0), EINVAL);
	/* The file range is free again, and the gpas. */
	ASSERT_EQ(kt_region(vm, 1, GMEM, 0, 4 * PG, 0, fd, 0), 0);
	ASSERT_EQ(kt_region(vm, 1, 0, 0, 0, 0, 0, 0), 0);
	/* Slot ids: every one below NR_MEMSLOTS, none from it. */
	ASSERT_GT(nr, 2);
	ASSERT_EQ(kt_region(vm, (uint32_t)nr - 1, GMEM, 0, PG, 0, fd, 0), 0);
	ASSERT_ERRNO(kt_region(vm, (uint32_t)nr, GMEM, PG, PG, 0, fd, PG), EINVAL);
	close(fd);
	close(vm);
	close(kvm);
}

/* ------------------------------------------------------ attributes */

KTEST(attributes2_bad_input, "")
{
	int kvm = kt_kvm(), vm = kt_vm(kvm, SW), vm0 = kt_vm(kvm, 0);
	int fd = kt_gmem(vm, 4 * PG, kt_per_vm() ? 0 : MMAP | SHARED);
	int fd0 = kt_gmem(vm0, 4 * PG, MMAP | SHARED);
	struct gk_memory_attributes2 a = { .size = PG, .attributes = PRIV };
	static const uint64_t bits[] = { 1 << 0, 1 << 1, 1 << 2, 1 << 4, 1ULL << 63 };
	void *none = mmap(NULL, PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT_TRUE(none != MAP_FAILED);
	if (kt_per_vm()) {
		/* Attributes are the VM's: the file has no ioctl. */
		ASSERT_ERRNO(ioctl(fd, GK_SET_MEMORY_ATTRIBUTES2, &a), ENOTTY);
		ASSERT_ERRNO(kt_attr2(fd, 0, PG, 0), ENOTTY);
		goto out;
	}
	/* The argument is read first. */
	ASSERT_ERRNO(ioctl(fd, GK_SET_MEMORY_ATTRIBUTES2, (void *)8), EFAULT);
	ASSERT_ERRNO(ioctl(fd, GK_SET_MEMORY_ATTRIBUTES2, none), EFAULT);
	{
		/* An argument in a private page of a guest_memfd mapping: the
		 * kernel's copy fails (EFAULT); no SIGBUS reaches the program. */
		int pfd = kt_gmem(vm, PG, MMAP);
		void *priv = kt_map(pfd, PG, 0);

		ASSERT_ERRNO(ioctl(fd, GK_SET_MEMORY_ATTRIBUTES2, priv), EFAULT);
		ASSERT_EQ(munmap(priv, PG), 0);
		close(pfd);
	}
	a.flags = 1;
	ASSERT_ERRNO(ioctl(fd, GK_SET_MEMORY_ATTRIBUTES2, &a), EINVAL);
	a.flags = 0;
	for (int i = 0; i < 11; i++) {
		a.reserved[i] = 1;
		ASSERT_ERRNO(ioctl(fd, GK_SET_MEMORY_ATTRIBUTES2, &a), EINVAL);
		a.reserved[i] = 0;
	}
	/* A VM without private memory, even for a valid range. */
	ASSERT_ERRNO(kt_attr2(fd0, 0, PG, PRIV), EINVAL);
	ASSERT_ERRNO(kt_attr2(fd0, 0, PG, 0), EINVAL);
	for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
		ASSERT_ERRNO(kt_attr2(fd, 0, PG, bits[i]), EINVAL);
		ASSERT_ERRNO(kt_attr2(fd, 0, PG, bits[i] | PRIV), EINVAL);
	}
	ASSERT_ERRNO(kt_attr2(fd, 0, 0, PRIV), EINVAL);
	ASSERT_ERRNO(kt_attr2(fd, -PG, 2 * PG, PRIV), EINVAL);
	ASSERT_ERRNO(kt_attr2(fd, PG, ~0ULL - PG + 2, PRIV), EINVAL);
	ASSERT_ERRNO(kt_attr2(fd, 100, PG, PRIV), EINVAL);
	ASSERT_ERRNO(kt_attr2(fd, 0, 100, PRIV), EINVAL);
	ASSERT_ERRNO(kt_attr2(fd, 4 * PG, PG, PRIV), EINVAL);
	ASSERT_ERRNO(kt_attr2(fd, 3 * PG, 2 * PG, PRIV), EINVAL);
	ASSERT_ERRNO(kt_attr2(fd, 0, 5 * PG, PRIV), EINVAL);
	/* Valid: private, again (no-op), shared, the whole file. */
	a = (struct gk_memory_attributes2){ .offset = PG, .size = PG, .attributes = PRIV };
	ASSERT_EQ(ioctl(fd, GK_SET_MEMORY_ATTRIBUTES2, &a), 0);
	ASSERT_EQ(a.error_offset, 0);
	ASSERT_EQ(kt_attr2(fd, PG, PG, PRIV), 0);
	ASSERT_EQ(kt_attr2(fd, 0, 4 * PG, 0), 0);
	ASSERT_EQ(kt_attr2(fd, 0, 4 * PG, PRIV), 0);
	/* error_offset is output only (v8 no longer checks it). */
	a = (struct gk_memory_attributes2){ .size = 4 * PG, .error_offset = 12345 };
	ASSERT_EQ(ioctl(fd, GK_SET_MEMORY_ATTRIBUTES2, &a), 0);
	/* The file answers no other ioctl; the VM does not take this one. */
	{
		struct gk_memory_attributes v = { .size = PG };

		ASSERT_ERRNO(ioctl(fd, GK_SET_MEMORY_ATTRIBUTES, &v), ENOTTY);
		ASSERT_ERRNO(ioctl(fd, KVM_CHECK_EXTENSION, GK_CAP_GUEST_MEMFD), ENOTTY);
		ASSERT_ERRNO(ioctl(vm, GK_SET_MEMORY_ATTRIBUTES2, &a), ENOTTY);
	}
out:
	munmap(none, PG);
	close(fd);
	close(fd0);
	close(vm);
	close(vm0);
	close(kvm);
}

KTEST(attributes_per_vm_bad_input, "")
{
	int kvm = kt_kvm(), vm = kt_vm(kvm, SW), vm0 = kt_vm(kvm, 0);
	struct gk_memory_attributes a = { .size = PG, .attributes = PRIV };
	static const uint64_t bits[] = { 1 << 0, 1 << 1, 1 << 2, 1 << 4, 1ULL << 63 };

	if (!kt_per_vm()) {
		/* In place, KVM_CAP_MEMORY_ATTRIBUTES is 0: nothing to set. */
		ASSERT_ERRNO(kt_attr(vm, 0, PG, PRIV), EINVAL);
		goto out;
	}
	ASSERT_ERRNO(ioctl(vm, GK_SET_MEMORY_ATTRIBUTES, (void *)8), EFAULT);
	a.flags = 1;
	ASSERT_ERRNO(ioctl(vm, GK_SET_MEMORY_ATTRIBUTES, &a), EINVAL);
	/* A default VM supports no attribute. */
	ASSERT_ERRNO(kt_attr(vm0, 0, PG, PRIV), EINVAL);
	for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
		ASSERT_ERRNO(kt_attr(vm, 0, PG, bits[i] | PRIV), EINVAL);
	ASSERT_ERRNO(kt_attr(vm, 0, 0, PRIV), EINVAL);
	ASSERT_ERRNO(kt_attr(vm, -PG, 2 * PG, PRIV), EINVAL);
	ASSERT_ERRNO(kt_attr(vm, 100, PG, PRIV), EINVAL);
	ASSERT_ERRNO(kt_attr(vm, 0, 100, PRIV), EINVAL);
	/* Any gpa, memslot or not; repeats are no-ops. */
	ASSERT_EQ(kt_attr(vm, 0x100000, 16 * PG, PRIV), 0);
	ASSERT_EQ(kt_attr(vm, 0x100000, 16 * PG, PRIV), 0);
	ASSERT_EQ(kt_attr(vm, 0x104000, 4 * PG, 0), 0);
	ASSERT_EQ(kt_attr(vm, 0, 1ULL << 40, 0), 0);
	/* The VM ioctl is not the file's. */
	{
		int fd = kt_gmem(vm, PG, 0);

		ASSERT_ERRNO(ioctl(fd, GK_SET_MEMORY_ATTRIBUTES, &a), ENOTTY);
		close(fd);
	}
out:
	close(vm);
	close(vm0);
	close(kvm);
}

/* ------------------------------------------ the file across processes */

/* fork: the child's VM, vCPU and file ioctls fail with EIO (kvm->mm). */
KTEST(fork_child_vm_ioctls_eio, "")
{
	int kvm = kt_kvm(), vm = kt_vm(kvm, SW), fd = kt_gmem(vm, 4 * PG, 0);
	int vcpu = (int)ASSERT_OK(ioctl(vm, KVM_CREATE_VCPU, 0)), status;
	struct kvm_regs regs;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		int bad = 0, v;
		struct gk_create_guest_memfd g = { .size = PG };

#define CHILD_EXPECT(call, err) do {					\
	errno = 0;							\
	long r_ = (long)(call);						\
	if (r_ != -1 || errno != (err)) {				\
		printf("#   child: %s: %ld (%s), expected %s\n", #call, r_,	\
		       kt_errname(errno), kt_errname(err));		\
		bad = 1;						\
	}								\
} while (0)
		CHILD_EXPECT(check(vm, GK_CAP_GUEST_MEMFD), EIO);
		CHILD_EXPECT(ioctl(vm, GK_CREATE_GUEST_MEMFD, &g), EIO);
		CHILD_EXPECT(kt_region(vm, 0, GMEM, 0, PG, 0, fd, 0), EIO);
		CHILD_EXPECT(kt_attr(vm, 0, PG, PRIV), EIO);
		CHILD_EXPECT(ioctl(vm, KVM_CREATE_VCPU, 1), EIO);
		CHILD_EXPECT(ioctl(vcpu, KVM_GET_REGS, &regs), EIO);
		CHILD_EXPECT(ioctl(vcpu, KVM_RUN, 0), EIO);
		/* /dev/kvm is anybody's: the child's own VM works. */
		if (check(kvm, GK_CAP_GUEST_MEMFD) != 1)
			bad = printf("#   child: /dev/kvm CHECK_EXTENSION\n");
		v = ioctl(kvm, KVM_CREATE_VM, SW);
		if (v < 0 || kt_gmem_try(v, PG, MMAP) < 0)
			bad = printf("#   child: own VM: %s\n", kt_errname(errno));
		fflush(stdout);
		_exit(bad);
	}
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(WEXITSTATUS(status), 0);
	/* The parent's VM is untouched. */
	ASSERT_EQ(check(vm, GK_CAP_GUEST_MEMFD), 1);
	ASSERT_EQ(kt_region(vm, 0, GMEM, 0, 4 * PG, 0, fd, 0), 0);
	ASSERT_EQ(ioctl(vcpu, KVM_GET_REGS, &regs), 0);
	close(vcpu);
	close(fd);
	close(vm);
	close(kvm);
}

/* SCM_RIGHTS: the received fd names the same file. */
KTEST(scm_rights_passes_the_file, "")
{
	int kvm = kt_kvm(), vm = kt_vm(kvm, SW), sv[2], got = -1;
	int fd = kt_gmem(vm, 2 * PG, 0);
	char byte = 'x', cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &byte, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	struct stat s1, s2;

	ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	ASSERT_EQ(sendmsg(sv[0], &msg, 0), 1);
	memset(cbuf, 0, sizeof(cbuf));
	ASSERT_EQ(recvmsg(sv[1], &msg, 0), 1);
	c = CMSG_FIRSTHDR(&msg);
	ASSERT_TRUE(c && c->cmsg_type == SCM_RIGHTS);
	memcpy(&got, CMSG_DATA(c), sizeof(int));
	ASSERT_NE(got, fd);
	ASSERT_EQ(fstat(fd, &s1), 0);
	ASSERT_EQ(fstat(got, &s2), 0);
	ASSERT_EQ(s1.st_ino, s2.st_ino);
	close(fd);
	/* The received fd is the file: it binds, and it converts. */
	ASSERT_EQ(kt_region(vm, 0, GMEM, 0, 2 * PG, 0, got, 0), 0);
	if (!kt_per_vm())
		ASSERT_EQ(kt_attr2(got, 0, PG, PRIV), 0);
	ASSERT_EQ(fallocate(got, KT_PUNCH, 0, PG), 0);
	close(got);
	close(sv[0]);
	close(sv[1]);
	close(vm);
	close(kvm);
}

/*
 * A dup of a VM fd is the same VM: the layer answers on it, and closing the
 * fd the VM was created with leaves the VM alive under the dup.
 */
KTEST(dup_of_a_vm_fd_is_the_same_vm, "")
{
	int kvm = kt_kvm(), vm = kt_vm(kvm, SW), dup_vm = dup(vm), fd;

	ASSERT_GE(dup_vm, 0);
	ASSERT_EQ(check(dup_vm, GK_CAP_GUEST_MEMFD), 1);
	ASSERT_EQ(check(dup_vm, GK_CAP_VM_TYPES), check(vm, GK_CAP_VM_TYPES));
	ASSERT_EQ(check(dup_vm, GK_CAP_GUEST_MEMFD_FLAGS), check(vm, GK_CAP_GUEST_MEMFD_FLAGS));
	close(vm);
	fd = kt_gmem(dup_vm, 4 * PG, kt_per_vm() ? 0 : MMAP);
	ASSERT_EQ(kt_region(dup_vm, 0, GMEM, 0, 4 * PG, 0, fd, 0), 0);
	/* Still the same VM's file: binding it twice overlaps. */
	ASSERT_ERRNO(kt_region(dup_vm, 1, GMEM, 8 * PG, 4 * PG, 0, fd, 0), EEXIST);
	close(fd);
	close(dup_vm);
	close(kvm);
}
