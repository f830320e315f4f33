// SPDX-License-Identifier: MIT
/*
 * Host mappings of guest_memfd files: mmap, munmap, madvise and mremap on
 * them, and the program's SIGSEGV.
 *
 * A mapping is a gmem mapping (gmem_mmap): shared pages are the pool's
 * frames, private pages are fenced, and gmem's own SIGSEGV handler (gmem.h,
 * "Signals") turns a fault on a fence into the SIGBUS the kernel's
 * guest_memfd raises. Everything else it hands to the handler installed
 * before it: the layer's, which turns a fault in an emulated ioctl's copy
 * into -EFAULT and otherwise calls the program's SIGSEGV action, kept here
 * because the layer takes sigaction(SIGSEGV) over so that the chain stays.
 *
 * The table of mappings is read lock-free (by munmap, madvise and mremap of
 * the program): a slot's end is cleared before its start when it goes.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "layer.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE		25
#endif
#define MADV_GUARD_INSTALL_	102
#define MADV_GUARD_REMOVE_	103
#define MAX_MAPS		4096

struct hmap {
	_Atomic uintptr_t start, end;	/* [start, end), 0 when free */
	struct kvm_file *f;
	uint64_t off;			/* file offset of start */
};

static struct hmap maps[MAX_MAPS];
/* Slots in use are below this: a process without gmem mappings (or with a
 * few) pays a short scan, not MAX_MAPS, in every munmap, madvise and fault. */
static _Atomic int maps_top;
static pthread_mutex_t maps_lock = PTHREAD_MUTEX_INITIALIZER;

static bool inside(uintptr_t a, uintptr_t b)
{
	int top = atomic_load_explicit(&maps_top, memory_order_acquire);

	for (int i = 0; i < top; i++) {
		uintptr_t s = atomic_load_explicit(&maps[i].start, memory_order_acquire);
		uintptr_t e = atomic_load_explicit(&maps[i].end, memory_order_acquire);

		if (e && a < e && s < b)
			return true;
	}
	return false;
}

bool hostmap_overlaps(const void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr;

	return inside(a, a + len);
}

static int slot_new(uintptr_t s, uintptr_t e, struct kvm_file *f, uint64_t off)
{
	for (int i = 0; i < MAX_MAPS; i++)
		if (!atomic_load(&maps[i].end)) {
			maps[i].f = f;
			maps[i].off = off;
			atomic_store_explicit(&maps[i].start, s, memory_order_release);
			atomic_store_explicit(&maps[i].end, e, memory_order_release);
			if (i >= atomic_load(&maps_top))
				atomic_store_explicit(&maps_top, i + 1, memory_order_release);
			f->maps++;
			return 0;
		}
	return -ENOMEM;
}

/*
 * Drop [a, b) from the records: a mapping covered whole goes, one cut at an
 * end shrinks, one cut in the middle becomes two. Files whose last mapping
 * went are stored in @gone (at most @max). Caller holds maps_lock and
 * layer_lock.
 */
static int forget(uintptr_t a, uintptr_t b, struct kvm_file **gone, int max)
{
	int n = 0, top = atomic_load(&maps_top);

	for (int i = 0; i < top; i++) {
		struct hmap *m = &maps[i];
		uintptr_t s = atomic_load(&m->start), e = atomic_load(&m->end);

		if (!e || b <= s || e <= a)
			continue;
		if (a > s && b < e && slot_new(b, e, m->f, m->off + (b - s)))
			continue;	/* no room to split: keep the record whole */
		if (a <= s && b >= e) {
			atomic_store(&m->end, 0);
			atomic_store(&m->start, 0);
			if (--m->f->maps == 0 && n < max)
				gone[n++] = m->f;
		} else if (a <= s) {
			m->off += b - s;
			atomic_store(&m->start, b);
		} else {
			atomic_store(&m->end, a);
		}
	}
	return n;
}

int hostmap_munmap(void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr, b = a + ((len + PAGE - 1) & ~(PAGE - 1));
	struct kvm_file *gone[64];
	int n, ret;

	if (!len || (a & (PAGE - 1)) || !inside(a, b))
		return real.munmap(addr, len);
	pthread_mutex_lock(&maps_lock);
	pthread_mutex_lock(&layer_lock);
	n = forget(a, b, gone, 64);
	pthread_mutex_unlock(&layer_lock);
	/* A released file's slots lose it before gmem unbinds its views. */
	for (int i = 0; i < n; i++)
		if (gone[i]->released && gone[i]->vm->owner == layer_pid)
			memslot_file_released(gone[i]);
	layer_depth++;
	gmem_munmap(addr, b - a);
	layer_depth--;
	ret = real.munmap(addr, len);
	pthread_mutex_unlock(&maps_lock);
	for (int i = 0; i < n; i++) {
		check_vm(gone[i]->vm, "munmap");
		gmemfd_unmapped(gone[i]);
	}
	trace("\"call\":\"munmap\",\"addr\":%llu,\"len\":%zu,\"ret\":%d",
	      (unsigned long long)a, len, ret);
	return ret;
}

/* An empty memfd: a shared mapping of it raises SIGBUS on every access. */
static int eof_fd = -1;
static pthread_once_t eof_once = PTHREAD_ONCE_INIT;

static void eof_make(void)
{
	eof_fd = memfd_create("gmem-kvm-past-eof", MFD_CLOEXEC);
}


static int past_eof_fd(void)
{
	pthread_once(&eof_once, eof_make);
	return eof_fd;
}

/* Newer than some C libraries' headers: the kernel's values (x86-64). */
#ifndef MAP_UNINITIALIZED
#define MAP_UNINITIALIZED	0x4000000
#endif
#ifndef MAP_ABOVE4G
#define MAP_ABOVE4G		0x80
#endif
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB		(21 << 26)
#define MAP_HUGE_1GB		(30 << 26)
#endif

/* The flags MAP_SHARED_VALIDATE accepts of a file without MAP_SYNC. */
#define LEGACY_MAP_FLAGS (MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | \
			  MAP_DENYWRITE | MAP_EXECUTABLE | MAP_UNINITIALIZED | \
			  MAP_GROWSDOWN | MAP_LOCKED | MAP_NORESERVE | MAP_POPULATE | \
			  MAP_NONBLOCK | MAP_STACK | MAP_HUGETLB | MAP_32BIT | \
			  MAP_ABOVE4G | MAP_HUGE_2MB | MAP_HUGE_1GB)

/*
 * The checks of the kernel's mmap that come after the address is chosen,
 * in do_mmap's order, then kvm_gmem_mmap's: the offset's range, the flags
 * the map type allows, noexec, growing, then the file's own. Returns the
 * errno, 0 if the mapping may be made.
 */
static int mmap_refused(struct kvm_file *f, size_t len, int prot, int flags, off_t off)
{
	int type = flags & MAP_TYPE;

	if (off < 0 || len > (uint64_t)INT64_MAX || (uint64_t)off > (uint64_t)INT64_MAX - len)
		return -EOVERFLOW;	/* past the largest file offset */
	if (type == MAP_SHARED)
		flags &= LEGACY_MAP_FLAGS;
	else if (type == MAP_SHARED_VALIDATE && (flags & ~LEGACY_MAP_FLAGS))
		return -EOPNOTSUPP;	/* MAP_SYNC, or even MAP_FIXED_NOREPLACE */
	else if (type != MAP_PRIVATE && type != MAP_SHARED_VALIDATE)
		return -EINVAL;
	if (prot & PROT_EXEC)
		return -EPERM;		/* the guest_memfd mount is noexec */
	if (flags & MAP_GROWSDOWN)
		return -EINVAL;
	if (!(f->flags & GK_GUEST_MEMFD_FLAG_MMAP))
		return -ENODEV;
	if (type == MAP_PRIVATE)
		return -EINVAL;		/* copy-on-write is not allowed */
	return 0;
}

int hostmap_mmap(struct kvm_file *f, void *addr, size_t len, int prot,
		 int flags, off_t off, void **out)
{
	int gflags = MAP_SHARED;
	void *va = addr;
	int ret;

	if (f->vm->owner != layer_pid)
		return -EIO;
	/* The system call's and the address's checks first, as do_mmap. */
	if (!len || (off & (PAGE - 1)))
		return -EINVAL;
	if (len > SIZE_MAX - (PAGE - 1))
		return -ENOMEM;		/* no room for the page-aligned length */
	len = (len + PAGE - 1) & ~(PAGE - 1);
	if ((flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) && ((uintptr_t)addr & (PAGE - 1)))
		return -EINVAL;
	if (flags & MAP_FIXED_NOREPLACE) {
		void *r = real.mmap(addr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS |
				    MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);

		if (r == MAP_FAILED)
			return -errno;
	}
	ret = mmap_refused(f, len, prot, flags, off);
	if (ret) {
		if (flags & MAP_FIXED_NOREPLACE)
			real.munmap(addr, len);
		return ret;
	}
	if (flags & MAP_FIXED_NOREPLACE)
		flags |= MAP_FIXED;	/* over the range just reserved */
	if (flags & MAP_FIXED) {
		if (hostmap_overlaps(addr, len))
			hostmap_munmap(addr, len);
		gflags |= MAP_FIXED;
	}
	if ((uint64_t)off >= f->size) {
		/* Wholly past the end: every access raises SIGBUS, nothing to fence. */
		va = real.mmap(addr, len, prot, (flags & MAP_FIXED) | MAP_SHARED,
			       past_eof_fd(), 0);
		if (va == MAP_FAILED)
			return -errno;
		*out = va;
		return 0;
	}
	pthread_mutex_lock(&maps_lock);
	layer_depth++;
	ret = gmem_mmap(f->gfd, (uint64_t)off, len, prot, gflags, &va);
	layer_depth--;
	if (!ret) {
		pthread_mutex_lock(&layer_lock);
		ret = slot_new((uintptr_t)va, (uintptr_t)va + len, f, (uint64_t)off);
		pthread_mutex_unlock(&layer_lock);
		if (ret) {
			layer_depth++;
			gmem_munmap(va, len);
			layer_depth--;
		}
	}
	pthread_mutex_unlock(&maps_lock);
	trace("\"call\":\"mmap\",\"gmem\":%d,\"offset\":%lld,\"len\":%zu,\"prot\":%d,\"addr\":%llu,\"ret\":%d",
	      f->gfd, (long long)off, len, prot, (unsigned long long)(uintptr_t)va, ret);
	if (!ret) {
		*out = va;
		check_vm(f->vm, "mmap");
	}
	return ret;
}

/* The record holding @a, or NULL. Caller holds maps_lock. */
static struct hmap *record_at(uintptr_t a)
{
	for (int i = 0, top = atomic_load(&maps_top); i < top; i++)
		if (atomic_load(&maps[i].end) && a >= atomic_load(&maps[i].start) &&
		    a < atomic_load(&maps[i].end))
			return &maps[i];
	return NULL;
}

/*
 * Is some page of [addr, addr + len) a private page of a gmem mapping (a
 * fenced one)? The layer asks before it reads or writes host memory for the
 * guest, where the kernel's access would fail rather than fault.
 */
bool hostmap_private(const void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr & ~(PAGE - 1), b = (uintptr_t)addr + len;
	bool private = false;

	if (!hostmap_overlaps(addr, len))
		return false;
	pthread_mutex_lock(&maps_lock);
	for (; a < b && !private; a += PAGE) {
		struct hmap *m = record_at(a);
		uint64_t attr = 0;

		if (m && !gmem_get_attributes(m->f->gfd, m->off + (a - m->start),
					      &attr, NULL))
			private = attr & GMEM_ATTR_PRIVATE;
	}
	pthread_mutex_unlock(&maps_lock);
	return private;
}

/* The lowest start of a record above @a, or UINTPTR_MAX. Caller holds maps_lock. */
static uintptr_t record_after(uintptr_t a)
{
	uintptr_t next = UINTPTR_MAX;

	for (int i = 0, top = atomic_load(&maps_top); i < top; i++) {
		uintptr_t s = atomic_load(&maps[i].start);

		if (atomic_load(&maps[i].end) && s > a && s < next)
			next = s;
	}
	return next;
}

/*
 * MADV_REMOVE, as the kernel's madvise walks the mappings of the range: a
 * gmem mapping's part is a punch of its file, any other part is the host's;
 * the first error ends the walk, except that of a hole (ENOMEM), which is
 * returned at the end.
 */
static int madvise_remove(uintptr_t a, size_t len)
{
	uintptr_t end;
	int ret = 0, hole = 0;

	if (a & (PAGE - 1))
		return fail(EINVAL);
	end = a + ((len + PAGE - 1) & ~(PAGE - 1));
	pthread_mutex_lock(&maps_lock);
	for (uintptr_t at = a, stop; at < end && !ret; at = stop) {
		struct hmap *m = record_at(at);

		if (m) {
			stop = MIN(end, atomic_load(&m->end));
			ret = gmemfd_fallocate(m->f, 0x01 | 0x02,
					       (off_t)(m->off + (at - m->start)),
					       (off_t)(stop - at));
		} else {
			stop = MIN(end, record_after(at));
			ret = real.madvise((void *)at, stop - at, MADV_REMOVE);
			if (ret && errno == ENOMEM) {
				hole = ENOMEM;
				ret = 0;
			}
		}
	}
	pthread_mutex_unlock(&maps_lock);
	return ret ? ret : hole ? fail(hole) : 0;
}

/*
 * madvise on a gmem mapping: MADV_COLLAPSE is refused as by the kernel (a
 * collapsed folio would map past a shared range); the guard advice is
 * refused because the fences are gmem's; MADV_REMOVE punches the file, as
 * the kernel's fallocate would. Everything else goes to the kernel.
 */
int hostmap_madvise(void *addr, size_t len, int advice, bool *handled)
{
	*handled = false;
	if (!len || !hostmap_overlaps(addr, len))
		return 0;
	switch (advice) {
	case MADV_COLLAPSE:
	case MADV_GUARD_INSTALL_:
	case MADV_GUARD_REMOVE_:
		*handled = true;
		return fail(EINVAL);
	case MADV_REMOVE:
		*handled = true;
		return madvise_remove((uintptr_t)addr, len);
	}
	return 0;
}

/* ------------------------------------------------------------ SIGBUS */

static struct sigaction user_segv;	/* the program's SIGSEGV action */
static pthread_mutex_t segv_lock = PTHREAD_MUTEX_INITIALIZER;

__thread void *volatile copy_recovery __attribute__((tls_model("initial-exec")));

static void on_segv(int sig, siginfo_t *si, void *ucv)
{
	struct sigaction act;

	if (copy_recovery) {	/* a bad pointer handed to an emulated ioctl */
		sigset_t segv;

		/* Some runtimes (TSan) block the signal in their own wrapper. */
		sigemptyset(&segv);
		sigaddset(&segv, SIGSEGV);
		pthread_sigmask(SIG_UNBLOCK, &segv, NULL);
		siglongjmp(*(sigjmp_buf *)copy_recovery, 1);
	}
	act = user_segv;
	if (act.sa_handler == SIG_DFL || act.sa_handler == SIG_IGN) {
		/* Let the fault happen again with nobody in the way. */
		struct sigaction dfl = { .sa_handler = SIG_DFL };

		real.sigaction(SIGSEGV, &dfl, NULL);
		return;
	}
	if (act.sa_flags & SA_RESETHAND)
		user_segv.sa_handler = SIG_DFL;
	if (act.sa_flags & SA_SIGINFO)
		act.sa_sigaction(sig, si, ucv);
	else
		act.sa_handler(sig);
}

/*
 * Installed first, before any gmem_mmap: gmem's handler, installed by the
 * first one, then finds this one as the handler before it.
 */
void hostmap_install_segv(void)
{
	struct sigaction act = { .sa_sigaction = on_segv,
				 .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART |
					     SA_NODEFER };

	sigemptyset(&act.sa_mask);
	real.sigaction(SIGSEGV, &act, &user_segv);
}

/* sigaction(2) for SIGSEGV: the program's action is kept, ours stays. */
int hostmap_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	struct sigaction prev, copy;

	if (sig != SIGSEGV) {
		/* A handler never blocks SIGSEGV (interpose.c, pthread_sigmask). */
		if (act && sigismember(&act->sa_mask, SIGSEGV)) {
			copy = *act;
			sigdelset(&copy.sa_mask, SIGSEGV);
			act = &copy;
		}
		return real.sigaction(sig, act, old);
	}
	pthread_mutex_lock(&segv_lock);
	prev = user_segv;
	if (act)
		user_segv = *act;
	pthread_mutex_unlock(&segv_lock);
	if (old)
		*old = prev;
	return 0;
}
