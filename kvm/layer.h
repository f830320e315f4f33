/* SPDX-License-Identifier: MIT */
/*
 * layer.h - what the files of libgmem-kvm share.
 *
 * The layer sits between a program that speaks KVM and the host kernel. It
 * owns three kinds of object and passes everything else to the real KVM:
 *
 *   struct kvm_vm    a VM the program created: a real KVM VM (of the default
 *                    type, whatever type was asked for), a gmem VM beside it,
 *                    the program's memslots and, in the per-VM model, the
 *                    VM's private/shared attributes.
 *   struct kvm_file  a guest_memfd: a gmem file, named to the program by a
 *                    placeholder fd (a real, empty guest_memfd of the real
 *                    VM, so the fd is real: fstat, dup, SCM_RIGHTS, close
 *                    and the calls that fail on a guest_memfd behave as the
 *                    kernel's). The placeholder's inode identifies it.
 *   struct kvm_vcpu  a vCPU fd and the layer's own view of its kvm_run.
 *
 * Locks, in order: maps_lock (hostmap.c, the host mappings) -> vm->lock
 * (memslots, attributes, the real memslot layout) -> layer_lock (the
 * tables; a leaf but for the engine) -> the engine's own locks. No lock is
 * held across a real KVM_RUN.
 */
#ifndef GMEM_KVM_LAYER_H
#define GMEM_KVM_LAYER_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "gmem.h"
#include "uapi.h"

#define PAGE		4096ULL
#define MIN(a, b)	((a) < (b) ? (a) : (b))
#define MAX(a, b)	((a) > (b) ? (a) : (b))

struct kvm_vm;
#define MAX_FDS		65536	/* fd numbers the tables index directly */

/* ------------------------------------------------------------ real.c */

/* The C library's functions, found with dlsym(RTLD_NEXT). */
struct real {
	int (*ioctl)(int, unsigned long, ...);
	void *(*mmap)(void *, size_t, int, int, int, off_t);
	int (*munmap)(void *, size_t);
	void *(*mremap)(void *, size_t, size_t, int, ...);
	int (*madvise)(void *, size_t, int);
	int (*mprotect)(void *, size_t, int);
	int (*mlockall)(int);
	int (*msync)(void *, size_t, int);
	int (*pthread_sigmask)(int, const sigset_t *, sigset_t *);
	int (*sigprocmask)(int, const sigset_t *, sigset_t *);
	int (*fallocate)(int, int, off_t, off_t);
	int (*close)(int);
	int (*sigaction)(int, const struct sigaction *, struct sigaction *);
};
extern struct real real;

/*
 * Set while the layer (or the engine it calls) is running in this thread:
 * the wrappers then go straight to the C library, so the engine's own mmap,
 * munmap, madvise and close never come back into the layer.
 */
extern __thread int layer_depth __attribute__((tls_model("initial-exec")));

void layer_init(void);

/* getpid(), kept without a system call (updated in a fork child). */
extern pid_t layer_pid;

/* ---------------------------------------------------------- config.c */

enum attr_model { MODEL_IN_PLACE, MODEL_PER_VM };

struct config {
	const char *arch;		/* sw, snp, tdx, pkvm */
	bool legacy;			/* --contract legacy */
	bool check;			/* --check */
	enum attr_model model;
	uint32_t cap_gmem_attributes;	/* number of that capability */
	int trace_fd;			/* --trace, or -1 */
	const char *status_path;	/* gmem exec reads the verdict here */
};
extern struct config config;

void config_load(void);
/* One JSON line in the trace: the object's members, already formatted. */
void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void trace_hook(void *arg, const struct gmem_hook_call *call);
/* Check mode: report violations the VM has gained since the last call. */
void check_vm(struct kvm_vm *vm, const char *op);
void layer_report(void);

/* -------------------------------------------------------------- vm.c */

struct user_slot;

struct kvm_vm {
	int fd;				/* the program's VM fd (the real VM's) */
	uint64_t type;			/* as the program asked */
	int gvm;			/* gmem VM */
	pid_t owner;			/* the process that created it */
	pthread_rwlock_t lock;
	struct user_slot *slots;	/* sorted by gpa */
	struct attr_run *attrs;		/* per-VM model: private runs, sorted */
	size_t nattrs;
	uint8_t *real_ids;		/* real memslot ids in use (bitmap) */
	int64_t violations_seen;
	_Atomic uint64_t layout_gen;	/* bumped when a real memslot goes */
	int refs;			/* the fd, and each file made on it */
	bool fd_open;
	struct kvm_vm *next;
};

struct attr_run {
	uint64_t start, end;		/* gpa, [start, end) private */
};

extern pthread_mutex_t layer_lock;
extern struct kvm_vm *vm_by_fd[MAX_FDS];

bool vm_has_private_mem(const struct kvm_vm *vm);
bool vm_pool_exists(void);
/* guest_memfd flags the VM takes (@vm NULL: the system). */
uint64_t gmem_supported_flags(const struct kvm_vm *vm);
/* copy_from_user / copy_to_user: 0, or -EFAULT for a bad pointer. */
int copy_in(void *dst, const void *src, size_t len);
int copy_out(void *dst, const void *src, size_t len);
/* Set during copy_in/copy_out: where a fault in the copy jumps to. */
extern __thread void *volatile copy_recovery __attribute__((tls_model("initial-exec")));
bool vm_is_private(struct kvm_vm *vm, uint64_t gpa);
void kvm_vm_put(struct kvm_vm *vm);

int kvm_check_extension(struct kvm_vm *vm, long cap);
int kvm_create_vm(int kvmfd, unsigned long type);
int vm_ioctl(struct kvm_vm *vm, unsigned long cmd, void *arg, bool *handled);
/* A dup of a VM fd: the VM it names, or NULL. */
struct kvm_vm *vm_alias(int fd);
/* Before closing VM fd @fd: another fd naming its VM, or -1. */
int vm_other_fd(int fd);
void vm_closed(int fd, int other);

/* ---------------------------------------------------------- gmemfd.c */

struct kvm_file {
	dev_t dev;
	ino_t ino;
	int gfd;			/* gmem file handle */
	struct kvm_vm *vm;
	uint64_t size, flags;
	bool released;			/* no fd is left: the gmem handle is closed */
	int maps;			/* host mappings alive */
	struct kvm_file *next;
};

int gmemfd_create(struct kvm_vm *vm, struct gk_create_guest_memfd *args);
/* The file a fd names, or NULL; *@err is -EBADF for a closed fd. */
struct kvm_file *gmemfd_lookup(int fd, int *err);
/* Has the process any guest_memfd? (A cheap test before an fstat.) */
bool gmemfd_any(void);
/* Fd @fd is closed or replaced: forget what it named. */
void gmemfd_forget_fd(int fd);
int gmemfd_ioctl(struct kvm_file *f, unsigned long cmd, void *arg);
int gmemfd_fallocate(struct kvm_file *f, int mode, off_t offset, off_t len);
void gmemfd_closed(dev_t dev, ino_t ino);
void gmemfd_unmapped(struct kvm_file *f);
/* The file's pages are gone for good (last fd and mapping): slots lose it. */
void memslot_file_released(struct kvm_file *f);

/* --------------------------------------------------------- memslot.c */

struct real_run {
	uint32_t id;			/* real memslot id */
	uint64_t gpa, size, hva;
};

struct user_slot {
	struct gk_userspace_memory_region2 r;	/* as the program gave it */
	struct kvm_file *file;		/* KVM_MEM_GUEST_MEMFD, else NULL */
	bool file_gone;			/* the file was released under the slot */
	uint8_t *view;			/* gmem stage-2 view, or NULL */
	bool view_any;			/* GMEM_VIEW_ANY (else private view) */
	struct real_run *runs;
	size_t nruns;
	struct user_slot *next;
};

int memslot_set(struct kvm_vm *vm, const struct gk_userspace_memory_region2 *r,
		bool v2);
struct user_slot *memslot_find(struct kvm_vm *vm, uint64_t gpa);
/* Redo the real memslots of every slot touching [start, end). */
int memslot_relayout(struct kvm_vm *vm, uint64_t start, uint64_t end);
void memslot_destroy_all(struct kvm_vm *vm);
uint32_t memslot_user_max(void);
int memslot_dirty_log(struct kvm_vm *vm, unsigned long cmd, void *arg,
		      bool *handled);

/* ---------------------------------------------------------- hostmap.c */

int hostmap_mmap(struct kvm_file *f, void *addr, size_t len, int prot,
		 int flags, off_t off, void **out);
/* munmap(2) of a range that may hold gmem mappings. */
int hostmap_munmap(void *addr, size_t len);
bool hostmap_overlaps(const void *addr, size_t len);
bool hostmap_private(const void *addr, size_t len);
int hostmap_madvise(void *addr, size_t len, int advice, bool *handled);
void hostmap_install_segv(void);
int hostmap_sigaction(int sig, const struct sigaction *act,
		      struct sigaction *old);

/* ------------------------------------------------------------ run.c */

struct kvm_vcpu {
	int fd;
	struct kvm_vm *vm;
	struct kvm_run *run;
	size_t run_size;
	bool pending_mmio;		/* a rewritten MMIO exit KVM still waits on */
	unsigned int fetch_retries;	/* emulation failures on pages mapped already */
	uint64_t fetch_gen;		/* vm->layout_gen at the last of them */
	__typeof__(((struct kvm_run *)0)->mmio) saved_mmio;	/* that exit's MMIO */
};

extern struct kvm_vcpu *vcpu_by_fd[MAX_FDS];

int vcpu_create(struct kvm_vm *vm, unsigned long id);
int vcpu_run(struct kvm_vcpu *v);
void vcpu_closed(int fd);

/* Errors: set errno, return -1, as the C library does. */
static inline int fail(int err)
{
	extern int *__errno_location(void);
	*__errno_location() = err < 0 ? -err : err;
	return -1;
}

#endif
