// SPDX-License-Identifier: MIT
/*
 * guest_memfd files: KVM_CREATE_GUEST_MEMFD, the file's identity, its
 * ioctl (KVM_SET_MEMORY_ATTRIBUTES2, in place), fallocate, and its end.
 *
 * The fd the program gets is a placeholder: a real guest_memfd of the real
 * VM, created empty with no flags. It is never mapped, faulted or
 * allocated; it only makes the fd real (its own inode, st_size, st_blksize,
 * read/write/ftruncate failing as the kernel's, dup, fork, SCM_RIGHTS). The
 * pages live in a gmem file; the placeholder's (st_dev, st_ino) names it.
 * The file ends, as a guest_memfd does, when no fd and no mapping is left.
 */
#include <dirent.h>
#include <setjmp.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "layer.h"

static struct kvm_file *files;	/* under layer_lock */
/* What each fd number names, filled on first use; cleared by close/dup2. */
static struct kvm_file *_Atomic file_by_fd[MAX_FDS];

/*
 * copy_from_user / copy_to_user: a bad pointer is -EFAULT, never a crash,
 * and a good one costs no system call. The copy runs with a recovery point
 * that the layer's SIGSEGV handler jumps back to, as the kernel's exception
 * tables do for its own user copies.
 */
static int copy(void *dst, const void *src, size_t len)
{
	sigjmp_buf here;

	if (sigsetjmp(here, 0)) {
		copy_recovery = NULL;
		return -EFAULT;
	}
	copy_recovery = &here;
	/*
	 * An aligned access of 1, 2, 4 or 8 bytes is one access, as the
	 * guest's own load or store would be: guest memory the layer reads
	 * or writes for a vCPU (run.c) may be written by the program at the
	 * same time, and must neither tear nor be a data race.
	 */
	switch (len && !(((uintptr_t)dst | (uintptr_t)src) % len) ? len : 0) {
	case 1:
		__atomic_store_n((uint8_t *)dst, __atomic_load_n((const uint8_t *)src,
				 __ATOMIC_RELAXED), __ATOMIC_RELAXED);
		break;
	case 2:
		__atomic_store_n((uint16_t *)dst, __atomic_load_n((const uint16_t *)src,
				 __ATOMIC_RELAXED), __ATOMIC_RELAXED);
		break;
	case 4:
		__atomic_store_n((uint32_t *)dst, __atomic_load_n((const uint32_t *)src,
				 __ATOMIC_RELAXED), __ATOMIC_RELAXED);
		break;
	case 8:
		__atomic_store_n((uint64_t *)dst, __atomic_load_n((const uint64_t *)src,
				 __ATOMIC_RELAXED), __ATOMIC_RELAXED);
		break;
	default:
		memcpy(dst, src, len);
	}
	copy_recovery = NULL;
	return 0;
}

/*
 * A private page of a guest_memfd mapping faults with gmem's SIGBUS, which
 * is the program's: the kernel's copy from it fails, so look first.
 */
int copy_in(void *dst, const void *src, size_t len)
{
	return hostmap_private(src, len) ? -EFAULT : copy(dst, src, len);
}

int copy_out(void *dst, const void *src, size_t len)
{
	return hostmap_private(dst, len) ? -EFAULT : copy(dst, src, len);
}

int gmemfd_create(struct kvm_vm *vm, struct gk_create_guest_memfd *a)
{
	struct gk_create_guest_memfd placeholder = { .size = a->size };
	uint64_t gflags = 0;
	struct kvm_file *f;
	struct stat st;
	int fd, gfd;

	if (a->flags & ~gmem_supported_flags(vm))
		return -EINVAL;
	if ((int64_t)a->size <= 0 || (a->size & (PAGE - 1)))
		return -EINVAL;
	if (a->flags & GK_GUEST_MEMFD_FLAG_MMAP)
		gflags |= GMEM_FLAG_MMAP;
	if (a->flags & GK_GUEST_MEMFD_FLAG_INIT_SHARED)
		gflags |= GMEM_FLAG_INIT_SHARED;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	fd = real.ioctl(vm->fd, GK_CREATE_GUEST_MEMFD, &placeholder);
	if (fd < 0) {
		int err = -errno;

		free(f);
		return err;
	}
	/*
	 * The kernel takes any size and allocates at first use; gmem reserves
	 * the file's window in the process's pool (docs/kvm.md): a size that
	 * does not fit is out of memory, not a bad argument.
	 */
	gfd = gmem_create(vm->gvm, a->size, gflags);
	if (gfd < 0 || fstat(fd, &st)) {
		if (gfd >= 0)
			gmem_close(gfd);
		real.close(fd);
		free(f);
		return gfd == -EINVAL || gfd == -ENOSPC || gfd >= 0 ? -ENOMEM : gfd;
	}
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	f->gfd = gfd;
	f->vm = vm;
	f->size = a->size;
	f->flags = a->flags;
	pthread_mutex_lock(&layer_lock);
	vm->refs++;		/* the file pins its VM, as in KVM */
	f->next = files;
	files = f;
	pthread_mutex_unlock(&layer_lock);
	return fd;
}

static struct kvm_file *find_inode(dev_t dev, ino_t ino)
{
	for (struct kvm_file *f = files; f; f = f->next)
		if (f->dev == dev && f->ino == ino && !f->released)
			return f;
	return NULL;
}

struct kvm_file *gmemfd_lookup(int fd, int *err)
{
	struct kvm_file *f;
	struct stat st;

	*err = -EINVAL;
	if (fd >= 0 && fd < MAX_FDS && (f = file_by_fd[fd]))
		return f;
	if (fd < 0 || fstat(fd, &st)) {
		*err = -EBADF;
		return NULL;
	}
	pthread_mutex_lock(&layer_lock);
	f = find_inode(st.st_dev, st.st_ino);
	if (f && fd < MAX_FDS)
		file_by_fd[fd] = f;
	pthread_mutex_unlock(&layer_lock);
	return f;
}

bool gmemfd_any(void)
{
	return __atomic_load_n(&files, __ATOMIC_RELAXED) != NULL;
}

void gmemfd_forget_fd(int fd)
{
	if (fd >= 0 && fd < MAX_FDS)
		file_by_fd[fd] = NULL;
}

/*
 * KVM_SET_MEMORY_ATTRIBUTES2 on the file: the checks of the in-place series
 * in its order, then one gmem conversion. error_offset is written back on
 * -EAGAIN and -ENOMEM.
 */
static int set_attributes2(struct kvm_file *f, void *arg)
{
	struct gk_memory_attributes2 a;
	uint64_t erroff = 0;
	int ret;

	if (copy_in(&a, arg, sizeof(a)))
		return -EFAULT;
	if (a.flags)
		return -EINVAL;
	for (int i = 0; i < 11; i++)
		if (a.reserved[i])
			return -EINVAL;
	if (!vm_has_private_mem(f->vm))
		return -EINVAL;
	if (a.attributes & ~GK_MEMORY_ATTRIBUTE_PRIVATE)
		return -EINVAL;
	if (a.size == 0 || a.offset + a.size < a.offset)
		return -EINVAL;
	if ((a.offset | a.size) & (PAGE - 1))
		return -EINVAL;
	if (a.offset >= f->size || a.offset + a.size > f->size)
		return -EINVAL;
	ret = gmem_set_attributes(f->gfd, a.offset, a.size, a.attributes, 0, &erroff);
	if (ret == -EAGAIN || ret == -ENOMEM) {
		a.error_offset = erroff;
		if (copy_out(arg, &a, sizeof(a)))
			return -EFAULT;
	}
	return ret;
}

int gmemfd_ioctl(struct kvm_file *f, unsigned long cmd, void *arg)
{
	int ret;

	if (f->vm->owner != layer_pid)
		return fail(EIO);
	if (cmd != GK_SET_MEMORY_ATTRIBUTES2 || config.model != MODEL_IN_PLACE)
		return fail(ENOTTY);
	ret = set_attributes2(f, arg);
	trace("\"ioctl\":\"KVM_SET_MEMORY_ATTRIBUTES2\",\"gmem\":%d,\"ret\":%d,\"error\":\"%s\"",
	      f->gfd, ret, ret ? strerror(-ret) : "");
	check_vm(f->vm, "KVM_SET_MEMORY_ATTRIBUTES2");
	return ret < 0 ? fail(ret) : 0;
}

/*
 * The modes the VFS lets through to a filesystem (vfs_fallocate): one mode
 * at most, KEEP_SIZE with PUNCH_HOLE always and never with the modes that
 * move or zero-fill data. guest_memfd refuses all but two of them itself.
 */
static bool vfs_mode_ok(int mode)
{
	enum { KEEP = 0x01, PUNCH = 0x02, COLLAPSE = 0x08, ZERO = 0x10,
	       INSERT = 0x20, UNSHARE = 0x40, WRITE_ZEROES = 0x80,
	       MODES = PUNCH | COLLAPSE | ZERO | INSERT | UNSHARE | WRITE_ZEROES };

	if (mode & ~(MODES | KEEP))
		return false;
	switch (mode & MODES) {
	case 0:
	case UNSHARE:
	case ZERO:
		return true;
	case PUNCH:
		return mode & KEEP;
	case COLLAPSE:
	case INSERT:
	case WRITE_ZEROES:
		return !(mode & KEEP);
	default:
		return false;
	}
}

/* fallocate(2): the VFS's checks, in its order, come before guest_memfd's. */
int gmemfd_fallocate(struct kvm_file *f, int mode, off_t offset, off_t len)
{
	off_t end;
	int ret;

	if (f->vm->owner != layer_pid)
		return fail(EIO);
	if (offset < 0 || len <= 0)
		ret = -EINVAL;
	else if (!vfs_mode_ok(mode))
		ret = -EOPNOTSUPP;
	else if (__builtin_add_overflow(offset, len, &end))
		ret = -EFBIG;
	else
		ret = gmem_fallocate(f->gfd, mode, (uint64_t)offset, (uint64_t)len);
	trace("\"call\":\"fallocate\",\"gmem\":%d,\"mode\":%d,\"offset\":%lld,\"len\":%lld,\"ret\":%d",
	      f->gfd, mode, (long long)offset, (long long)len, ret);
	check_vm(f->vm, "fallocate");
	return ret < 0 ? fail(ret) : 0;
}

/* Is some fd of this process still open on the inode? */
static bool inode_open(dev_t dev, ino_t ino)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	bool open = false;
	struct stat st;

	if (!d)
		return true;	/* cannot tell: keep the file */
	while (!open && (e = readdir(d))) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] != '.' && fd != dirfd(d) && !fstat(fd, &st))
			open = st.st_dev == dev && st.st_ino == ino;
	}
	closedir(d);
	return open;
}

/* The end of a file with no fd and no mapping left. */
static void file_free(struct kvm_file *f)
{
	struct kvm_file **p;

	pthread_mutex_lock(&layer_lock);
	for (p = &files; *p != f; p = &(*p)->next)
		;
	*p = f->next;
	pthread_mutex_unlock(&layer_lock);
	kvm_vm_put(f->vm);
	free(f);
}

/*
 * An fd on (@dev, @ino) was closed. If it was the last, the program can no
 * longer name the file: gmem's handle goes (the pages stay while mappings
 * do), and without mappings the file ends and its slots lose it.
 */
void gmemfd_closed(dev_t dev, ino_t ino)
{
	struct kvm_file *f;
	bool last_ref;

	pthread_mutex_lock(&layer_lock);
	f = find_inode(dev, ino);
	pthread_mutex_unlock(&layer_lock);
	if (!f || inode_open(dev, ino))
		return;
	pthread_mutex_lock(&layer_lock);
	f->released = true;
	for (int fd = 0; fd < MAX_FDS; fd++)	/* no fd can name it now */
		if (file_by_fd[fd] == f)
			file_by_fd[fd] = NULL;
	last_ref = f->maps == 0;
	pthread_mutex_unlock(&layer_lock);
	trace("\"call\":\"close\",\"gmem\":%d,\"mappings\":%d", f->gfd, f->maps);
	if (f->vm->owner != layer_pid) {	/* a child's copy: nothing is its own */
		if (last_ref)
			file_free(f);
		return;
	}
	if (last_ref)
		memslot_file_released(f);
	gmem_close(f->gfd);
	check_vm(f->vm, "close");
	if (last_ref)
		file_free(f);
}

/* The file's last mapping went (caller holds no lock); maybe its end. */
void gmemfd_unmapped(struct kvm_file *f)
{
	if (f->released)
		file_free(f);
}
