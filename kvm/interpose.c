// SPDX-License-Identifier: MIT
/*
 * The C library calls libgmem-kvm.so takes over when preloaded: ioctl,
 * mmap, munmap, mremap, madvise, mprotect, mlockall, msync, fallocate,
 * close, sigaction, signal, pthread_sigmask and sigprocmask (and, of
 * ioctl, UFFDIO_REGISTER over a gmem mapping).
 * Each one looks at its fd or address: a KVM object or guest_memfd memory
 * of the layer's goes to the file that emulates it, everything else to the
 * C library untouched. Calls the layer or gmem make themselves
 * (layer_depth) always go straight through.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <linux/userfaultfd.h>

#include "layer.h"

#define EXPORT __attribute__((visibility("default")))

/*
 * Every call the layer handles runs with layer_depth raised, so that the
 * mmap, munmap, madvise and close the engine makes for it go to the C
 * library. KVM_RUN is the exception: it lowers it again while the guest
 * runs (run.c), so a signal handler of the program still meets the layer.
 */
#define enter(call) ({ layer_depth++; __typeof__(call) r_ = (call); layer_depth--; r_; })

static bool is_dev_kvm(int fd)
{
	struct stat st;

	return !fstat(fd, &st) && S_ISCHR(st.st_mode) &&
	       major(st.st_rdev) == 10 && minor(st.st_rdev) == 232;
}

static int system_ioctl(int fd, unsigned long cmd, void *arg)
{
	int ret;

	if (cmd == KVM_CREATE_VM && is_dev_kvm(fd))
		return kvm_create_vm(fd, (unsigned long)arg);
	if (cmd == KVM_CHECK_EXTENSION && is_dev_kvm(fd)) {
		ret = kvm_check_extension(NULL, (long)arg);
		if (ret >= 0) {
			trace("\"ioctl\":\"KVM_CHECK_EXTENSION\",\"cap\":%ld,\"ret\":%d",
			      (long)arg, ret);
			return ret;
		}
	}
	return real.ioctl(fd, cmd, arg);
}

static int kvm_ioctl(int fd, unsigned long cmd, void *arg)
{
	struct kvm_vcpu *v = fd >= 0 && fd < MAX_FDS ? vcpu_by_fd[fd] : NULL;
	struct kvm_vm *vm = fd >= 0 && fd < MAX_FDS ? vm_by_fd[fd] : NULL;
	bool handled;
	int ret;

	if (v) {
		if (cmd == KVM_RUN)
			return vcpu_run(v);
		if (v->vm->owner != layer_pid)
			return fail(EIO);
		return real.ioctl(fd, cmd, arg);
	}
	if (!vm && fd >= 0 && cmd != KVM_CREATE_VM && cmd != GK_SET_MEMORY_ATTRIBUTES2)
		vm = vm_alias(fd);	/* a dup of a VM fd */
	if (vm) {
		ret = vm_ioctl(vm, cmd, arg, &handled);
		return handled ? ret : real.ioctl(fd, cmd, arg);
	}
	if (cmd == GK_SET_MEMORY_ATTRIBUTES2) {
		int err;
		struct kvm_file *f = gmemfd_lookup(fd, &err);

		if (f)
			return gmemfd_ioctl(f, cmd, arg);
	}
	return system_ioctl(fd, cmd, arg);
}

/*
 * A guest_memfd mapping takes no userfaultfd (its VMA offers none): EINVAL,
 * where gmem's, on shmem, would take one, and a UFFDIO_COPY could then put
 * pages into the pool behind gmem's back.
 */
static bool uffd_range_is_gmem(const void *arg)
{
	struct uffdio_register r;

	if (copy_in(&r, arg, sizeof(r)))
		return false;	/* the kernel's EFAULT */
	return r.range.len && hostmap_overlaps((void *)(uintptr_t)r.range.start,
					       (size_t)r.range.len);
}

EXPORT int ioctl(int fd, unsigned long cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	layer_init();
	if (!layer_depth && cmd == UFFDIO_REGISTER && uffd_range_is_gmem(arg))
		return fail(EINVAL);
	if (layer_depth || _IOC_TYPE(cmd) != KVMIO)
		return real.ioctl(fd, cmd, arg);
	return enter(kvm_ioctl(fd, cmd, arg));
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	struct kvm_file *f = NULL;
	void *out;
	int err, ret;

	layer_init();
	if (layer_depth)
		return real.mmap(addr, len, prot, flags, fd, off);
	if (!(flags & MAP_ANONYMOUS) && fd >= 0 && gmemfd_any())
		f = gmemfd_lookup(fd, &err);
	if (!f) {
		if ((flags & MAP_FIXED) && len && hostmap_overlaps(addr, len))
			enter(hostmap_munmap(addr, len));
		return real.mmap(addr, len, prot, flags, fd, off);
	}
	ret = enter(hostmap_mmap(f, addr, len, prot, flags, off, &out));
	if (ret) {
		fail(ret);
		return MAP_FAILED;
	}
	return out;
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return mmap(addr, len, prot, flags, fd, off);
}

EXPORT int munmap(void *addr, size_t len)
{
	layer_init();
	if (layer_depth)
		return real.munmap(addr, len);
	return enter(hostmap_munmap(addr, len));
}

/* A gmem mapping cannot move: its fences follow its records. */
EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	void *new_addr = NULL;
	va_list ap;

	va_start(ap, flags);
	if (flags & MREMAP_FIXED)
		new_addr = va_arg(ap, void *);
	va_end(ap);
	layer_init();
	if (!layer_depth) {
		if (hostmap_overlaps(old, old_len ? old_len : 1)) {
			fail(EINVAL);
			return MAP_FAILED;
		}
		if ((flags & MREMAP_FIXED) && hostmap_overlaps(new_addr, new_len))
			enter(hostmap_munmap(new_addr, new_len));
	}
	return real.mremap(old, old_len, new_len, flags, new_addr);
}

EXPORT int madvise(void *addr, size_t len, int advice)
{
	bool handled;
	int ret;

	layer_init();
	if (layer_depth)
		return real.madvise(addr, len, advice);
	ret = enter(hostmap_madvise(addr, len, advice, &handled));
	return handled ? ret : real.madvise(addr, len, advice);
}

/*
 * A guest_memfd's mount is noexec, so its mappings may never become
 * executable (the kernel's mmap leaves VM_MAYEXEC out): EACCES, with
 * nothing changed (the kernel would have changed the mappings in the range
 * before the first gmem one).
 */
EXPORT int mprotect(void *addr, size_t len, int prot)
{
	layer_init();
	if (!layer_depth && (prot & PROT_EXEC) && len && hostmap_overlaps(addr, len))
		return fail(EACCES);
	return real.mprotect(addr, len, prot);
}

/*
 * mlockall(MCL_CURRENT) faults every mapping in whole, gmem's reservations
 * too (the pool's direct map is 4 TiB): once the pool exists, the layer
 * adds MCL_ONFAULT, so the program's memory is locked as it is touched.
 */
EXPORT int mlockall(int flags)
{
	layer_init();
	if (!layer_depth && (flags & MCL_CURRENT) && vm_pool_exists())
		flags |= MCL_ONFAULT;
	return real.mlockall(flags);
}

/* A guest_memfd has no fsync: msync(MS_SYNC) over its mapping is EINVAL. */
EXPORT int msync(void *addr, size_t len, int flags)
{
	int ret;

	layer_init();
	ret = real.msync(addr, len, flags);
	if (!ret && !layer_depth && (flags & MS_SYNC) && len && hostmap_overlaps(addr, len))
		return fail(EINVAL);
	return ret;
}

EXPORT int fallocate(int fd, int mode, off_t offset, off_t len)
{
	struct kvm_file *f;
	int err;

	layer_init();
	if (layer_depth)
		return real.fallocate(fd, mode, offset, len);
	f = gmemfd_any() ? gmemfd_lookup(fd, &err) : NULL;
	if (!f)
		return real.fallocate(fd, mode, offset, len);
	return enter(gmemfd_fallocate(f, mode, offset, len));
}

EXPORT int fallocate64(int fd, int mode, off_t offset, off_t len)
{
	return fallocate(fd, mode, offset, len);
}

EXPORT int close(int fd)
{
	struct stat st;
	bool gmem;
	int ret;

	layer_init();
	if (layer_depth || fd < 0 || fd >= MAX_FDS)
		return real.close(fd);
	if (vcpu_by_fd[fd]) {
		ret = real.close(fd);
		enter((vcpu_closed(fd), 0));
		return ret;
	}
	if (vm_by_fd[fd]) {
		int other = enter(vm_other_fd(fd));

		ret = real.close(fd);
		enter((vm_closed(fd, ret ? fd : other), 0));
		return ret;
	}
	gmem = gmemfd_any() && gmemfd_lookup(fd, &ret) && !fstat(fd, &st);
	gmemfd_forget_fd(fd);
	ret = real.close(fd);
	if (gmem && !ret)
		enter((gmemfd_closed(st.st_dev, st.st_ino), 0));
	return ret;
}

/* dup2/dup3 close @newfd first: the layer must see that close. */
static int replace_fd(int oldfd, int newfd, int flags, bool three)
{
	static int (*real_dup3)(int, int, int);
	static int (*real_dup2)(int, int);

	layer_init();
	if (!real_dup3) {
		real_dup3 = dlsym(RTLD_NEXT, "dup3");
		real_dup2 = dlsym(RTLD_NEXT, "dup2");
	}
	if (!layer_depth && oldfd != newfd && newfd >= 0 && newfd < MAX_FDS &&
	    fcntl(oldfd, F_GETFD) >= 0 &&
	    (vm_by_fd[newfd] || vcpu_by_fd[newfd] || fcntl(newfd, F_GETFD) >= 0))
		close(newfd);
	return three ? real_dup3(oldfd, newfd, flags) : real_dup2(oldfd, newfd);
}

EXPORT int dup2(int oldfd, int newfd)
{
	return replace_fd(oldfd, newfd, 0, false);
}

EXPORT int dup3(int oldfd, int newfd, int flags)
{
	return replace_fd(oldfd, newfd, flags, true);
}

EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	layer_init();
	if (layer_depth)
		return real.sigaction(sig, act, old);
	return hostmap_sigaction(sig, act, old);
}

/*
 * gmem's fences fault through SIGSEGV, which its handler turns into the
 * kernel's SIGBUS; a thread with SIGSEGV blocked would be killed by the
 * SIGSEGV instead (the kernel forces a blocked fault signal). So SIGSEGV is
 * taken out of every mask the program sets (and out of its handlers'
 * sa_mask: hostmap_sigaction).
 */
static const sigset_t *without_segv(int how, const sigset_t *set, sigset_t *copy)
{
	if (layer_depth || how == SIG_UNBLOCK || !set || !sigismember(set, SIGSEGV))
		return set;
	*copy = *set;
	sigdelset(copy, SIGSEGV);
	return copy;
}

EXPORT int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	sigset_t copy;

	layer_init();
	return real.pthread_sigmask(how, without_segv(how, set, &copy), old);
}

EXPORT int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
	sigset_t copy;

	layer_init();
	return real.sigprocmask(how, without_segv(how, set, &copy), old);
}

EXPORT sighandler_t signal(int sig, sighandler_t handler)
{
	struct sigaction act = { .sa_handler = handler, .sa_flags = SA_RESTART }, old;

	sigemptyset(&act.sa_mask);
	if (sig == SIGSEGV || sig == SIGBUS)
		sigaddset(&act.sa_mask, sig);
	if (sigaction(sig, &act, &old))
		return SIG_ERR;
	return old.sa_handler;
}
