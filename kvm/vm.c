// SPDX-License-Identifier: MIT
/*
 * VMs: KVM_CREATE_VM (the software-protected type on a real VM of the
 * default type), the capabilities each attribute model answers, the VM
 * ioctls the layer owns, and the per-VM attributes of that model.
 */
#include <dirent.h>
#include <errno.h>
#include <linux/kcmp.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layer.h"

pthread_mutex_t layer_lock = PTHREAD_MUTEX_INITIALIZER;
struct kvm_vm *vm_by_fd[MAX_FDS];
static struct kvm_vm *vms;	/* every VM alive, under layer_lock */
static int pool = -1;

bool vm_has_private_mem(const struct kvm_vm *vm)
{
	return vm->type == GK_X86_SW_PROTECTED_VM;
}

/* Has the layer made its pool (the first VM)? */
bool vm_pool_exists(void)
{
	return pool >= 0;
}

/* ------------------------------------------------------- capabilities */

/* Attributes KVM_SET_MEMORY_ATTRIBUTES takes: @vm NULL asks for the system. */
static uint64_t per_vm_attributes(const struct kvm_vm *vm)
{
	if (config.model != MODEL_PER_VM)
		return 0;	/* in place: the attribute lives on the file */
	return !vm || vm_has_private_mem(vm) ? GK_MEMORY_ATTRIBUTE_PRIVATE : 0;
}

static uint64_t file_attributes(const struct kvm_vm *vm)
{
	if (config.model != MODEL_IN_PLACE)
		return 0;
	return !vm || vm_has_private_mem(vm) ? GK_MEMORY_ATTRIBUTE_PRIVATE : 0;
}

/* guest_memfd flags a VM takes: INIT_SHARED for a VM with private memory
 * only where conversion is in place (x86 refuses it otherwise). */
uint64_t gmem_supported_flags(const struct kvm_vm *vm)
{
	uint64_t flags = GK_GUEST_MEMFD_FLAG_MMAP;

	if (!vm || !vm_has_private_mem(vm) || config.model == MODEL_IN_PLACE)
		flags |= GK_GUEST_MEMFD_FLAG_INIT_SHARED;
	return flags;
}

/*
 * KVM_CHECK_EXTENSION on /dev/kvm (@vm NULL) or a VM fd: the capabilities
 * the layer supplies; -1 for one it leaves to the real KVM.
 */
int kvm_check_extension(struct kvm_vm *vm, long cap)
{
	switch (cap) {
	case GK_CAP_GUEST_MEMFD:
	case GK_CAP_USER_MEMORY2:
	case GK_CAP_MEMORY_FAULT_INFO:
		return 1;
	case GK_CAP_GUEST_MEMFD_FLAGS:
		return (int)gmem_supported_flags(vm);
	case GK_CAP_VM_TYPES:
		return 1 << GK_X86_DEFAULT_VM | 1 << GK_X86_SW_PROTECTED_VM;
	case GK_CAP_MEMORY_ATTRIBUTES:
		return (int)per_vm_attributes(vm);
	case GK_CAP_NR_MEMSLOTS:
		return (int)memslot_user_max();
	}
	if (cap == (long)config.cap_gmem_attributes)
		return (int)file_attributes(vm);
	return -1;
}

/* ------------------------------------------------------------ create */

static int gmem_vm_for(struct kvm_vm *vm)
{
	uint64_t flags = (config.legacy ? GMEM_VM_LEGACY_CONTRACT : 0) |
			 (config.check ? GMEM_VM_CHECK : 0);
	int ret;

	if (pool < 0) {
		ret = gmem_pool_create(0);
		if (ret == -ENOMEM)	/* no address space for 4 TiB (TSan) */
			ret = gmem_pool_create(256ULL << 30);
		if (ret < 0)
			return ret;
		pool = ret;
	}
	ret = gmem_vm_create(pool, config.arch, flags);
	if (ret >= 0 && config.trace_fd >= 0)
		gmem_vm_trace_hooks(ret, trace_hook, vm);
	return ret;
}

/* A child of fork() gets a pool of its own: the parent's frames are not its. */
static void forget_pool(void)
{
	pool = -1;
}

int kvm_create_vm(int kvmfd, unsigned long type)
{
	struct kvm_vm *vm;
	int fd, gvm;

	if (type != GK_X86_DEFAULT_VM && type != GK_X86_SW_PROTECTED_VM)
		return real.ioctl(kvmfd, KVM_CREATE_VM, type);
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return fail(ENOMEM);
	fd = real.ioctl(kvmfd, KVM_CREATE_VM, GK_X86_DEFAULT_VM);
	if (fd < 0) {
		int err = errno;

		free(vm);
		return fail(err);
	}
	if (fd >= MAX_FDS) {
		real.close(fd);
		free(vm);
		return fail(EMFILE);
	}
	vm->fd = fd;
	vm->type = type;
	vm->owner = layer_pid;
	vm->refs = 1;
	vm->fd_open = true;
	pthread_rwlock_init(&vm->lock, NULL);
	pthread_mutex_lock(&layer_lock);
	vm->next = vms;
	vms = vm;
	{
		static bool once;

		if (!once) {
			pthread_atfork(NULL, NULL, forget_pool);
			once = true;
		}
	}
	gvm = gmem_vm_for(vm);
	if (gvm < 0) {
		pthread_mutex_unlock(&layer_lock);
		real.close(fd);
		free(vm);
		return fail(gvm);
	}
	vm->gvm = gvm;
	vm_by_fd[fd] = vm;
	pthread_mutex_unlock(&layer_lock);
	trace("\"ioctl\":\"KVM_CREATE_VM\",\"type\":%lu,\"ret\":%d,\"gmem_vm\":%d",
	      type, fd, gvm);
	return fd;
}

/* Drop a reference: the last one (fd closed, no file, no vCPU) frees it. */
void kvm_vm_put(struct kvm_vm *vm)
{
	bool last;

	pthread_mutex_lock(&layer_lock);
	last = --vm->refs == 0;
	if (last) {
		struct kvm_vm **p;

		for (p = &vms; *p != vm; p = &(*p)->next)
			;
		*p = vm->next;
	}
	pthread_mutex_unlock(&layer_lock);
	if (!last)
		return;
	if (vm->owner == layer_pid) {
		memslot_destroy_all(vm);
		gmem_vm_close(vm->gvm);
	}
	free(vm->attrs);
	free(vm->real_ids);
	pthread_rwlock_destroy(&vm->lock);
	free(vm);
}

/* Is @fd a KVM VM fd that names the same VM file as @other? */
static bool same_vm_file(int fd, int other)
{
	char path[64], link[32];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n <= 0)
		return false;
	link[n] = 0;
	return !strcmp(link, "anon_inode:kvm-vm") &&
	       syscall(SYS_kcmp, layer_pid, layer_pid, KCMP_FILE, fd, other) == 0;
}

/* The VM a fd the layer did not hand out names (a dup of a VM fd), or NULL. */
struct kvm_vm *vm_alias(int fd)
{
	struct kvm_vm *found = NULL;

	pthread_mutex_lock(&layer_lock);
	for (struct kvm_vm *vm = vms; vm && !found; vm = vm->next)
		if (vm->fd_open && vm->fd != fd && same_vm_file(fd, vm->fd))
			found = vm;
	pthread_mutex_unlock(&layer_lock);
	return found;
}

/* Another open fd of this process naming the VM of @fd, or -1. */
int vm_other_fd(int fd)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int other = -1;

	if (!d)
		return -1;
	while (other < 0 && (e = readdir(d))) {
		int n = atoi(e->d_name);

		if (e->d_name[0] != '.' && n != fd && n != dirfd(d) && n < MAX_FDS &&
		    same_vm_file(n, fd))
			other = n;
	}
	closedir(d);
	return other;
}

/*
 * VM fd @fd was closed. If another fd still names the VM (@other, found
 * before the close), the VM lives on under that number, as a file does while
 * any fd holds it; otherwise the fd's reference goes.
 */
void vm_closed(int fd, int other)
{
	struct kvm_vm *vm;

	pthread_mutex_lock(&layer_lock);
	vm = vm_by_fd[fd];
	vm_by_fd[fd] = NULL;
	if (vm && other >= 0) {
		vm->fd = other;
		vm_by_fd[other] = vm;
	}
	pthread_mutex_unlock(&layer_lock);
	if (vm) {
		trace("\"call\":\"close\",\"vm\":%d,\"now\":%d", fd, other);
		if (other >= 0)
			return;
		vm->fd_open = false;
		kvm_vm_put(vm);
	}
}

/* ------------------------------------------------- per-VM attributes */

bool vm_is_private(struct kvm_vm *vm, uint64_t gpa)
{
	size_t lo = 0, hi = vm->nattrs;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (gpa < vm->attrs[mid].start)
			hi = mid;
		else if (gpa >= vm->attrs[mid].end)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

/* Make [start, end) private or shared in the VM's sorted list of private runs. */
static int attrs_store(struct kvm_vm *vm, uint64_t start, uint64_t end,
		       bool private)
{
	struct attr_run *out = malloc((vm->nattrs + 2) * sizeof(*out));
	size_t n = 0, i = 0;

	if (!out)
		return -ENOMEM;
	/* Runs wholly before, kept. */
	for (; i < vm->nattrs && vm->attrs[i].end < start; i++)
		out[n++] = vm->attrs[i];
	if (private) {
		/* Swallow every run touching [start, end). */
		for (; i < vm->nattrs && vm->attrs[i].start <= end; i++) {
			start = MIN(start, vm->attrs[i].start);
			end = MAX(end, vm->attrs[i].end);
		}
		out[n++] = (struct attr_run){ start, end };
	} else {
		for (; i < vm->nattrs && vm->attrs[i].start < end; i++) {
			if (vm->attrs[i].start < start)
				out[n++] = (struct attr_run){ vm->attrs[i].start, start };
			if (vm->attrs[i].end > end)
				out[n++] = (struct attr_run){ end, vm->attrs[i].end };
		}
	}
	for (; i < vm->nattrs; i++)
		out[n++] = vm->attrs[i];
	/* A run ending where the next begins (they touched at "end"). */
	for (size_t j = 0; j + 1 < n; j++)
		if (out[j].end == out[j + 1].start) {
			out[j].end = out[j + 1].end;
			memmove(&out[j + 1], &out[j + 2], (n - j - 2) * sizeof(*out));
			n--;
			j--;
		}
	free(vm->attrs);
	vm->attrs = out;
	vm->nattrs = n;
	return 0;
}

/*
 * KVM_SET_MEMORY_ATTRIBUTES: the kernel's checks in its order, then the
 * store, then the real memslots of the range are laid out again (private
 * runs from the guest_memfd, shared runs from userspace_addr).
 */
static int set_memory_attributes(struct kvm_vm *vm, const struct gk_memory_attributes *a)
{
	int ret;

	if (a->flags)
		return -EINVAL;
	if (a->attributes & ~per_vm_attributes(vm))
		return -EINVAL;
	if (a->size == 0 || a->address + a->size < a->address)
		return -EINVAL;
	if ((a->address | a->size) & (PAGE - 1))
		return -EINVAL;
	pthread_rwlock_wrlock(&vm->lock);
	ret = attrs_store(vm, a->address, a->address + a->size,
			  a->attributes & GK_MEMORY_ATTRIBUTE_PRIVATE);
	if (!ret)
		ret = memslot_relayout(vm, a->address, a->address + a->size);
	pthread_rwlock_unlock(&vm->lock);
	return ret;
}

/* ------------------------------------------------------- VM ioctls */

/*
 * The VM ioctls the layer owns; *@handled false passes the call to the real
 * VM. Returns the ioctl's result or -1 with errno, as ioctl(2).
 */
int vm_ioctl(struct kvm_vm *vm, unsigned long cmd, void *arg, bool *handled)
{
	union {
		struct gk_create_guest_memfd gmem;
		struct gk_userspace_memory_region2 r2;
		struct kvm_userspace_memory_region r1;
		struct gk_memory_attributes attrs;
	} u;
	int ret;

	*handled = true;
	if (vm->owner != layer_pid)
		return fail(EIO);	/* as KVM answers another process */
	switch (cmd) {
	case KVM_CHECK_EXTENSION:
		ret = kvm_check_extension(vm, (long)arg);
		if (ret < 0 && (long)arg == KVM_CAP_MULTI_ADDRESS_SPACE &&
		    vm_has_private_mem(vm)) {
			/* One address space where memory can be private. */
			ret = real.ioctl(vm->fd, KVM_CHECK_EXTENSION, arg);
			ret = ret > 1 ? 1 : ret;
		}
		if (ret < 0) {
			*handled = false;
			return 0;
		}
		trace("\"ioctl\":\"KVM_CHECK_EXTENSION\",\"vm\":%d,\"cap\":%ld,\"ret\":%d",
		      vm->fd, (long)arg, ret);
		return ret;
	case GK_CREATE_GUEST_MEMFD:
		if (copy_in(&u.gmem, arg, sizeof(u.gmem)))
			return fail(EFAULT);
		ret = gmemfd_create(vm, &u.gmem);
		trace("\"ioctl\":\"KVM_CREATE_GUEST_MEMFD\",\"vm\":%d,\"size\":%llu,\"flags\":%llu,\"ret\":%d",
		      vm->fd, (unsigned long long)u.gmem.size,
		      (unsigned long long)u.gmem.flags, ret);
		check_vm(vm, "KVM_CREATE_GUEST_MEMFD");
		return ret < 0 ? fail(ret) : ret;
	case KVM_SET_USER_MEMORY_REGION:
	case GK_SET_USER_MEMORY_REGION2:
		memset(&u, 0, sizeof(u));
		if (copy_in(&u.r2, arg, cmd == GK_SET_USER_MEMORY_REGION2 ?
			    sizeof(u.r2) : sizeof(u.r1)))
			return fail(EFAULT);
		ret = memslot_set(vm, &u.r2, cmd == GK_SET_USER_MEMORY_REGION2);
		trace("\"ioctl\":\"%s\",\"vm\":%d,\"slot\":%u,\"flags\":%u,\"gpa\":%llu,\"size\":%llu,\"guest_memfd\":%d,\"offset\":%llu,\"ret\":%d",
		      cmd == KVM_SET_USER_MEMORY_REGION ? "KVM_SET_USER_MEMORY_REGION"
							: "KVM_SET_USER_MEMORY_REGION2",
		      vm->fd, u.r2.slot, u.r2.flags,
		      (unsigned long long)u.r2.guest_phys_addr,
		      (unsigned long long)u.r2.memory_size,
		      (int)u.r2.guest_memfd,
		      (unsigned long long)u.r2.guest_memfd_offset, ret);
		check_vm(vm, "KVM_SET_USER_MEMORY_REGION2");
		return ret < 0 ? fail(ret) : 0;
	case GK_SET_MEMORY_ATTRIBUTES:
		if (copy_in(&u.attrs, arg, sizeof(u.attrs)))
			return fail(EFAULT);
		ret = set_memory_attributes(vm, &u.attrs);
		trace("\"ioctl\":\"KVM_SET_MEMORY_ATTRIBUTES\",\"vm\":%d,\"address\":%llu,\"size\":%llu,\"attributes\":%llu,\"ret\":%d",
		      vm->fd, (unsigned long long)u.attrs.address,
		      (unsigned long long)u.attrs.size,
		      (unsigned long long)u.attrs.attributes, ret);
		check_vm(vm, "KVM_SET_MEMORY_ATTRIBUTES");
		return ret < 0 ? fail(ret) : 0;
	case KVM_CREATE_VCPU:
		return vcpu_create(vm, (unsigned long)arg);
	case KVM_GET_DIRTY_LOG:
	case KVM_CLEAR_DIRTY_LOG:
		return memslot_dirty_log(vm, cmd, arg, handled);
	}
	*handled = false;
	return 0;
}
