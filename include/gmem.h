/* SPDX-License-Identifier: MIT */
/*
 * gmem.h - guest_memfd in userspace, with in-place private<->shared conversion.
 *
 * Objects
 *   pool   host "physical" memory: one sparse memfd, 4 KiB frames named by pfn,
 *          mapped once as the direct map.
 *   vm     a guest: an arch backend, memslot bindings and a stage-2 table.
 *   file   a guest_memfd: fixed size, a page cache of folios over frames of the
 *          pool, an attribute map (private or shared per page), host mappings.
 *
 * Names: gmem_<object>_<verb>. A call on a pool or a VM says so
 * (gmem_pool_*, gmem_vm_*: gmem_vm_bind binds a file into a VM); the file is
 * the object of the calls that name none (gmem_create, gmem_mmap, gmem_pin).
 * *_close closes a handle; the object lives on while others hold it.
 *
 * Handles are small non-negative integers, like file descriptors. A closed
 * handle fails with -EBADF; a handle of the wrong kind with -EINVAL; a handle
 * another process created (see "Processes") with -EIO.
 *
 * Lifetime:
 *   - a closed handle's number is given again by a later create, the lowest
 *     free number first, as with file descriptors: a stale copy of a closed
 *     handle may name a new object;
 *   - at most 65536 handles (pools, VMs and files together) are open in a
 *     process; a create beyond that fails with -EMFILE;
 *   - an object lives while anything holds it: a file holds its VM, a VM its
 *     pool, a host mapping its file. Closing the handle of a pool or VM that
 *     is still held frees nothing yet;
 *   - pins belong to the file, not to the caller: they do not keep the file
 *     alive, and the file's release (its last handle and mapping gone) drops
 *     them.
 *
 * Every call returns 0 (or a handle, or a count) on success and a negative
 * errno on failure. errno is left as the caller set it, on success and on
 * failure alike: the system calls gmem makes underneath never show through
 * it. A failed call changes nothing.
 * gmem_last_error() gives a one-line reason for the calling thread's last
 * failure.
 *
 * Threads: every call is thread-safe unless its comment says otherwise.
 * Guest faults (gmem_vm_fault, gmem_vm_access) run in parallel with each other;
 * conversion, hole punch, bind and unbind of a file exclude faults on that file
 * only, never on other files or VMs.
 *
 * Processes: a handle belongs to the process that created it. In a child made
 * by fork() every call on an inherited handle fails with -EIO (as KVM answers
 * the VM ioctls of another process), before anything else is checked but the
 * handle being open; the child may create pools, VMs and files of its own.
 * The child keeps the host mappings it inherited, as the kernel's: see
 * gmem_mmap. (A child made by a raw clone() system call, without the
 * pthread_atfork handlers, is not told apart and is not reached:
 * docs/security.md.)
 *
 * Signals (docs/design.md, "Host mappings"):
 *   SIGSEGV  the first gmem_mmap, even one that fails, installs a handler
 *            (SA_SIGINFO | SA_ONSTACK | SA_NODEFER) that turns a fault on a
 *            private page of a host mapping into SIGBUS and passes every
 *            other SIGSEGV to the action installed before it, called as the
 *            kernel would call it. A program that installs its own SIGSEGV
 *            handler after its first gmem_mmap must chain to the one it
 *            replaces (sigaction's old action), as with any runtime that
 *            handles SIGSEGV; if it does not, private pages fault with
 *            SIGSEGV in its handler. A thread
 *            that blocks SIGSEGV (or a handler whose sa_mask holds it) is
 *            killed by SIGSEGV at a private page, where the kernel sends
 *            SIGBUS: the kernel forces a blocked fault signal. Keep SIGSEGV
 *            unblocked (gmem exec takes it out of every mask).
 *   SIGURG   in a fork child that inherited host mappings, gmem handles
 *            SIGURG: the parent's conversions reach the child's mappings with
 *            it (si_code SI_QUEUE, gmem's value). Other SIGURGs go to the
 *            program's handler. The child must not block SIGURG for long nor
 *            replace the handler without chaining, or the parent's
 *            conversions to private fail with -EAGAIN; and, as with any
 *            signal, poll(2), nanosleep(2) and the like may return EINTR.
 */
#ifndef GMEM_H
#define GMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GMEM_PAGE_SIZE		4096ULL

/* ---------------------------------------------------------------- errors */

/*
 * Reason for the calling thread's last failed call, e.g.
 * "gmem_create: size 4095 is not a multiple of 4096". Never NULL.
 */
const char *gmem_last_error(void);

/* ------------------------------------------------------------------ pool */

/*
 * gmem_pool_create - create a pool of host memory of @capacity bytes.
 *
 * @capacity is reserved, not allocated: frames cost memory only once touched.
 * 0 picks the default (4 TiB). Returns a pool handle.
 *
 * A pool models one machine, so all its VMs run one arch: the first
 * gmem_vm_create fixes it, and a VM of another arch on the same pool fails
 * with -EINVAL. Give each arch its own pool.
 *
 * Locked memory: the pool's direct map spans its whole capacity. Made after
 * mlockall(MCL_FUTURE), gmem's mappings are locked on fault, never faulted
 * in whole; but mlockall(MCL_CURRENT) without MCL_ONFAULT once a pool exists
 * faults in all of its capacity, as it does any mapping: add MCL_ONFAULT
 * (gmem exec does). A host mapping locked with mlock keeps converting: its
 * fenced pages are unlocked for their guards, then locked again on fault.
 *
 * Errors: -EINVAL capacity not a multiple of 1 GiB; -EINVAL capacity above
 *         4 TiB (2^30 frames: a stage-2 entry's frame number is 30 bits);
 *         -ENOMEM no memory or address space; -EMFILE no free handle; the
 *         errno of memfd_create or ftruncate for the pool file (-EMFILE,
 *         -ENFILE: out of file descriptors).
 */
int gmem_pool_create(uint64_t capacity);

/*
 * gmem_pool_close - close a pool handle. The pool lives on while VMs made
 * from it exist. Errors: -EBADF, -EINVAL (not a pool).
 */
int gmem_pool_close(int pool);

/*
 * gmem_pool_frame - direct-map address of frame @pfn (4 KiB), or NULL if the
 * pool handle is bad (or another process's) or @pfn is outside it. Reading or
 * writing through it is what the host kernel's direct map allows:
 * everything, including private frames. Use it to inspect, never to bypass a
 * mapping in production code. The direct map is not inherited by fork
 * children (MADV_DONTFORK) and left out of core dumps (MADV_DONTDUMP).
 */
void *gmem_pool_frame(int pool, uint64_t pfn);

/*
 * gmem_pool_huge_page_size - the host page size behind the huge folios of
 * files made from @pool: 2 MiB where the pool file is on shmem huge pages
 * (the process may create a tmpfs: CAP_SYS_ADMIN in its user namespace), a
 * 1 GiB folio being 512 of them; else 4 KiB, and a huge folio is gmem's
 * label over 4 KiB host pages. 4 KiB files always have 4 KiB host pages.
 *
 * Errors: -EBADF, -EINVAL (not a pool).
 */
int64_t gmem_pool_huge_page_size(int pool);

struct gmem_pool_stats {
	uint64_t capacity_frames;	/* frames the pool can hold */
	uint64_t frames_in_use;		/* frames backing a known folio now (1) */
	uint64_t frames_reserved;	/* frames in windows given to files */
	uint64_t files;			/* files alive */
	uint64_t metadata_bytes;	/* gmem's own bookkeeping, all files */
};

/*
 * (1) A page first touched through a host mapping is allocated by the host
 * kernel's own fault, without a call into gmem; it is counted once gmem next
 * looks at that page (gmem_folio_info, a punch, a release).
 *
 * Errors: -EBADF, -EINVAL (not a pool, or @st NULL).
 */
int gmem_pool_stats(int pool, struct gmem_pool_stats *st);

/* -------------------------------------------------------------------- vm */

#define GMEM_VM_LEGACY_CONTRACT	(1ULL << 0)	/* one invalidate hook, see below */
#define GMEM_VM_CHECK		(1ULL << 1)	/* verify invariants after each call */

/*
 * gmem_vm_create - create a VM on @pool with arch backend @arch.
 *
 * @arch names the backend and its model of the hardware (docs/arch.md):
 *   "sw"    software-protected: no hardware state; private pages unreachable
 *           from the host; conversion keeps every byte.
 *   "snp"   AMD SEV-SNP: an RMP entry per frame; private->shared and reclaim
 *           return frames to the hypervisor, content lost.
 *   "tdx"   Intel TDX: private frames added to the TD's S-EPT at map time,
 *           removed (and cleared) on invalidation.
 *   "pkvm"  arm64 pKVM: host/guest/shared ownership per frame; conversion
 *           keeps frame and bytes; reclaim scrubs and returns to the host.
 *
 * @flags:
 *   GMEM_VM_LEGACY_CONTRACT  run the arch through the contract of the patch
 *       under review: one invalidate(pfn range) hook, called on the free path
 *       and on private->shared conversion alike, with no reason given.
 *   GMEM_VM_CHECK  after every call on the VM or its files, verify the
 *       invariants (docs/arch.md) and the arch's own rules; read what broke
 *       with gmem_vm_violations(). Invariant 1 (no host mapping reaches a
 *       private frame) is read from the kernel's page tables, not from
 *       gmem's records: every mapping of the pool in the process
 *       (/proc/self/maps) but the direct map and the VM's stage-2 views,
 *       and for each private frame its page-table entry (/proc/self/pagemap:
 *       present, or without a guard, is a violation naming the address, the
 *       frame and the mapping); and each gmem mapping must still be where
 *       gmem put it. So mremap, munmap(2), MADV_GUARD_REMOVE and a second
 *       mmap of the pool memfd are reported (docs/security.md). Another
 *       thread's gmem_mmap, gmem_munmap, conversion or punch does not show
 *       half done: the maps are read again if one ran while they were read
 *       (test_check maps and converts on two threads). Beyond that, meant
 *       for single-threaded workloads.
 * Returns a VM handle.
 *
 * A pool models one machine: the first VM created on it fixes its arch for
 * the pool's lifetime, even after that VM is gone. A call that fails leaves
 * the pool as it was, so a pool on which no VM was ever created accepts any
 * arch.
 *
 * Errors: -EBADF/-EINVAL bad pool; -EINVAL unknown flag; -ENOENT unknown
 *         arch; -EINVAL the pool runs VMs of another arch (one pool per
 *         arch, see gmem_pool_create); -ENOMEM; -EMFILE.
 */
int gmem_vm_create(int pool, const char *arch, uint64_t flags);

/*
 * gmem_vm_populate - load initial private content at launch (the
 * kvm_gmem_populate analogue behind SNP_LAUNCH_UPDATE and TDX
 * INIT_MEM_REGION). For each page of [gpa, gpa+len): copy the page from
 * @src, or with @src NULL keep what the page already holds (content written
 * while it was shared, then converted), then let the arch take it over
 * (post_populate: RMP assign, TDH.MEM.PAGE.ADD, donation to the guest).
 *
 * Returns the number of pages populated; stops at the first page that fails
 * and returns its error if it was the first. Errors: -EBADF/-EINVAL bad VM;
 * -EINVAL flags != 0, len 0, unaligned gpa or len; -EFAULT nothing bound;
 * -EINVAL the page is not private; -EEXIST the guest already has the page,
 * as kvm_gmem_populate refuses a prepared folio (a private fault or an
 * earlier populate prepared it; snp: RMP entry assigned), whatever the arch.
 * A page that went shared and back counts as the guest's still on the
 * archs that keep its content (sw, pkvm), and as new on snp and tdx, whose
 * conversion to shared dropped it.
 */
int64_t gmem_vm_populate(int vm, uint64_t gpa, const void *src, uint64_t len,
			 uint64_t flags);

struct gmem_violation {
	char op[32];		/* the call that left it, e.g. "gmem_set_attributes" */
	int invariant;		/* 1..6, as in docs/arch.md */
	uint64_t offset;	/* file offset of the page, or ~0 */
	uint64_t pfn;		/* frame, or ~0 */
	char rule[160];		/* which rule broke, in words */
};

/*
 * gmem_vm_violations - the violations a GMEM_VM_CHECK VM has seen: copies the
 * first @max into @v and returns how many there are in all (0 = clean). Only
 * the first 1024 are kept; the count goes on. @v may be NULL with @max 0.
 * Errors: -EBADF/-EINVAL bad VM; -EINVAL @v NULL with @max > 0.
 */
int64_t gmem_vm_violations(int vm, struct gmem_violation *v, unsigned int max);

/*
 * gmem_pool_frame_state - the arch model's state of frame @pfn in words, e.g.
 * "rmp assigned asid=1 gfn=0x100 4K" or "pkvm guest vm=1". Returns the
 * length written, NUL not counted: the description truncated to @len - 1
 * (0 for @len 0), whatever @len is. Errors: -EBADF/-EINVAL bad pool;
 * -EINVAL pfn outside the pool or @buf NULL with @len > 0.
 */
int gmem_pool_frame_state(int pool, uint64_t pfn, char *buf, size_t len);

/* One call the engine made into the VM's arch backend. */
struct gmem_hook_call {
	const char *hook;	/* "make_private", "reclaim", "make_shared",
				 * "invalidate_range", "post_populate",
				 * "max_mapping_level", "invalidate" (the legacy
				 * contract's one hook), or "guest_convert(share)"
				 * / "guest_convert(unshare)" (pKVM's EL2 acting
				 * on the guest's hypercall) */
	const char *path;	/* why the engine called it: "fault", "free",
				 * "conversion", "invalidation" or "populate";
				 * the hook itself is never told */
	uint64_t pfn;		/* first frame, or ~0 for a guest-range hook */
	uint64_t gfn;		/* first gfn, or ~0 for a frame-only hook */
	uint64_t nr;		/* frames (or gfns) in the call */
	int ret;		/* what the hook returned; the level for
				 * max_mapping_level; 0 for hooks returning
				 * nothing */
};

typedef void (*gmem_hook_fn)(void *arg, const struct gmem_hook_call *call);

/*
 * gmem_vm_trace_hooks - call @fn(@arg, call) after every arch hook the engine
 * runs for @vm or its files, in the thread that made the gmem call and under
 * its locks: @fn must return quickly and must not call into gmem. A hook the
 * arch does not implement is not called and not reported. @fn NULL stops the
 * trace. Change it only while no other thread is in a call on the VM.
 * Errors: -EBADF/-EINVAL bad VM.
 */
int gmem_vm_trace_hooks(int vm, gmem_hook_fn fn, void *arg);

/*
 * gmem_vm_close - close a VM handle. Files created on the VM keep it alive
 * (a file pins its VM, as in KVM); its bindings stay until the files go.
 * Errors: -EBADF, -EINVAL.
 */
int gmem_vm_close(int vm);

/* ------------------------------------------------------------------ file */

#define GMEM_FLAG_MMAP		(1ULL << 0)	/* host mmap allowed */
#define GMEM_FLAG_INIT_SHARED	(1ULL << 1)	/* every page starts shared */
#define GMEM_FLAG_HUGE_2M	(1ULL << 2)	/* 2 MiB folios (order 9) */
#define GMEM_FLAG_HUGE_1G	(1ULL << 3)	/* 1 GiB folios (order 18) */

/*
 * gmem_create - create a guest memory file of @size bytes on @vm.
 *
 * Pages start private, or shared with GMEM_FLAG_INIT_SHARED. The size never
 * changes. Returns a file handle; the file lives until the handle is closed
 * and every host mapping of it is unmapped.
 *
 * Folio size: 4 KiB, or with GMEM_FLAG_HUGE_2M / GMEM_FLAG_HUGE_1G (at most
 * one) 2 MiB / 1 GiB. A huge file's size, and the offset, size and gpa of
 * every binding (gmem_vm_bind) and the offset and length of every host mapping
 * (gmem_mmap, whose address is then aligned to the folio size too) must be
 * multiples of it. The first use of a page allocates its whole huge folio.
 * Attributes, pins and punches still work on any 4 KiB page: a huge folio
 * is split into 4 KiB folios when its range stops being uniform, and merged
 * back, on the same frames and without a copy, when a conversion (even one
 * to the state the range is in already) leaves the whole range uniform with
 * every page present and none pinned (docs/design.md, "Huge folios").
 * Memory in use (gmem_pool_stats) counts each frame once, whatever the mix
 * of private and shared. Where the pool has host huge pages
 * (gmem_pool_huge_page_size), each 2 MiB of a huge folio is one host huge
 * page from its allocation on (of a 1 GiB folio, the first fault allocates
 * the 2 MiB around the page, the rest comes at first touch or with
 * gmem_fallocate), until a punch of part of it splits it.
 *
 * Errors (in this order): -EBADF/-EINVAL bad VM; -EINVAL unknown flag bit, or
 *         both huge flags; -EINVAL size 0, not a multiple of the folio size,
 *         or above 64 TiB; -ENOSPC no window of that size left in the pool
 *         (a file's window is its size rounded up to 2 MiB, or to the
 *         folio size if larger, and as aligned); -ENOMEM; -EMFILE.
 */
int gmem_create(int vm, uint64_t size, uint64_t flags);

/*
 * gmem_close - close a file handle. Once no host mapping remains either, the
 * file is released: its bindings are removed (later faults there get -EFAULT),
 * its pins dropped and its memory freed, and the copies fork children
 * inherited are fenced entirely (their frames go to the next file). If such a
 * child cannot be reached, the file's frames stay out of the pool for good.
 * Errors: -EBADF, -EINVAL.
 */
int gmem_close(int fd);

/* Size in bytes, or -EBADF/-EINVAL. */
int64_t gmem_size(int fd);

/* fallocate modes: the kernel's values. */
#define GMEM_FALLOC_KEEP_SIZE	0x01
#define GMEM_FALLOC_PUNCH_HOLE	0x02

/*
 * gmem_fallocate - allocate or free a range, as fallocate(2) on a guest_memfd.
 *
 * KEEP_SIZE alone allocates folios for [offset, offset+len) and their host
 * memory (in the pool file, as the kernel's fallocate allocates folios);
 * their content is zero. KEEP_SIZE|PUNCH_HOLE frees them: guest mappings are zapped, the arch
 * reclaims the frames, the next access sees zeroes. Attributes never change.
 * In a huge file, allocation allocates every huge folio the range touches;
 * a punch of part of a huge folio splits it and frees the 4 KiB pieces.
 *
 * Errors (in this order): -EBADF/-EINVAL bad handle; -EINVAL len 0 (as
 *         vfs_fallocate, before the mode is looked at);
 *         -EOPNOTSUPP mode lacks KEEP_SIZE or has another bit;
 *         -EINVAL offset or len not 4 KiB aligned, or offset+len overflows;
 *         -EINVAL allocation reaching past the end of the file
 *         (a punch at or past the end succeeds and does nothing there);
 *         -ENOMEM/-ENOSPC the host has not the memory, -EINTR a signal
 *         came first (the folios allocated before stay, as in the kernel).
 */
int gmem_fallocate(int fd, int mode, uint64_t offset, uint64_t len);

/* ------------------------------------------------------------ attributes */

#define GMEM_ATTR_PRIVATE	(1ULL << 3)	/* KVM_MEMORY_ATTRIBUTE_PRIVATE */

/*
 * gmem_set_attributes - convert [offset, offset+size) in place: private when
 * @attributes is GMEM_ATTR_PRIVATE, shared when 0. The KVM_SET_MEMORY_ATTRIBUTES2
 * analogue. Pages keep their frames; content is what the VM's arch makes of
 * it ("sw" keeps every byte).
 *
 * To private, every host mapping of the range is revoked first, in this
 * process and in every fork child that inherited one (see gmem_mmap): when
 * the call returns, no process can reach the range. A page with an extra
 * reference (a pin) then fails the call with -EAGAIN; so does a fork child
 * that cannot be reached (stopped, or not answering within a second: SIGURG
 * blocked or taken over), with @error_offset at @offset, as if the first
 * page were referenced. A child that exited or exec'd is forgotten. To
 * shared, host mappings regain access, the children's too. All or nothing:
 * on failure attributes, mappings and contents are as before, with two
 * exceptions in how a host mapping comes back: a 2 MiB chunk of it the
 * range covered whole (fenced whole meanwhile, see gmem_mmap) gets the
 * mapping's own protection back without what the program set there
 * (madvise, mbind, mlock, a narrower mprotect), and a locked range comes
 * back locked on fault.
 *
 * In a huge file, any 4 KiB range converts. Only a pinned page inside a
 * to-private range fails the call, as in a 4 KiB file: a huge folio splits
 * around a pin outside the range (the pinned page stays, pinned), and one a
 * pin keeps from merging stays split. To shared never fails for a pin.
 *
 * @error_offset, if not NULL, receives the byte offset of the first page
 * that made the call fail with -EAGAIN or -ENOMEM.
 *
 * Errors (in this order): -EBADF/-EINVAL bad handle; -EINVAL flags != 0;
 *         -EINVAL attribute bits other than PRIVATE; -EINVAL size 0 or
 *         offset+size overflows; -EINVAL offset or size not 4 KiB aligned;
 *         -EINVAL range past the end of the file; -ENOMEM; -EAGAIN (a pin,
 *         or a fork child that cannot be reached).
 */
int gmem_set_attributes(int fd, uint64_t offset, uint64_t size,
			uint64_t attributes, uint64_t flags,
			uint64_t *error_offset);

/*
 * gmem_vm_set_attributes - gmem_set_attributes in guest physical terms: the
 * memslot bound at @gpa names the file and the offset, so a VMM converts
 * what an exit or a hypercall names without translating it (RAM split
 * around a hole is several memslots: one call each). [gpa, gpa+size) must
 * lie in that one memslot. @error_gpa, if not NULL, receives the gpa of the
 * page that failed the conversion itself (-EAGAIN, -ENOMEM).
 *
 * Errors (in this order): -EBADF/-EINVAL bad VM; -EFAULT nothing bound at
 *         @gpa; -EINVAL the range runs past the end of that memslot; then
 *         those of gmem_set_attributes, the offsets being the file's.
 */
int gmem_vm_set_attributes(int vm, uint64_t gpa, uint64_t size,
			   uint64_t attributes, uint64_t flags,
			   uint64_t *error_gpa);

/*
 * gmem_get_attributes - attributes of the page at @offset; if @range_end is
 * not NULL it receives the end (bytes, exclusive) of the run of pages sharing
 * them. Errors: -EBADF/-EINVAL bad handle; -EINVAL offset unaligned or past
 * the end; -EINVAL @attributes NULL.
 */
int gmem_get_attributes(int fd, uint64_t offset, uint64_t *attributes,
			uint64_t *range_end);

/* Number of attribute ranges in the file's map (>= 1), or -errno. */
int64_t gmem_attribute_ranges(int fd);

/*
 * gmem_folio_info - the page cache at @offset: returns 1 and the frame of that
 * page in *@pfn (and the folio order: 9 or 18 for a whole huge folio, 0 for a
 * 4 KiB one; and the page's pin count) when a folio is present, 0 for a
 * hole. Output pointers may be NULL.
 * Errors: -EBADF/-EINVAL bad handle; -EINVAL offset unaligned or past the end.
 */
int gmem_folio_info(int fd, uint64_t offset, uint64_t *pfn, int *order,
		    uint32_t *pins);

/* ---------------------------------------------------------- host mapping */

/*
 * gmem_mmap - map [offset, offset+len) of a file created with GMEM_FLAG_MMAP
 * into this process. @flags must be MAP_SHARED or MAP_SHARED | MAP_FIXED
 * (from <sys/mman.h>); @prot PROT_READ, PROT_WRITE or both.
 *
 * Without MAP_FIXED gmem picks the address and stores it in *@addr. With
 * MAP_FIXED *@addr is the address: page-aligned (in a huge file, a multiple
 * of the folio size) and not NULL. The new mapping replaces whatever was at
 * [*@addr, *@addr+len), as mmap(2) MAP_FIXED does; parts of gmem mappings
 * there are unmapped first, as by gmem_munmap. No page of the new mapping
 * is reachable while private, not even before the call returns.
 *
 * Shared pages are the pool's frames: every mapping and the direct map see
 * the same bytes, and the first touch of a hole allocates a zeroed folio.
 * A private page raises SIGBUS (BUS_ADRERR, si_addr the address) on access,
 * as in the kernel: it is guarded, and gmem's SIGSEGV handler turns the
 * guard's fault into SIGBUS for the faulting thread, where the program's
 * SIGBUS disposition takes it; blocked or ignored, it kills. (See "Signals"
 * above for the handler's contract.) A 2 MiB-aligned chunk of the mapping
 * that becomes private whole (the mapping made over it, or one conversion
 * that covers it) is instead remapped to an empty file, where the kernel
 * raises the SIGBUS itself and which costs no page table: what the program
 * set on those addresses (madvise, mbind, mlock, and an mprotect narrower
 * than the mapping's @prot, which the chunk gets back when it opens) is not
 * kept there, and mincore reports its pages as not resident
 * (docs/design.md, "Chunk fences"). Without MAP_FIXED, a mapping of 2 MiB
 * or more gets a 2 MiB-aligned address. A page past the end of the file raises
 * SIGBUS too. Neither ever reads data. The range may extend past the end of
 * the file.
 *
 * A child made by fork() inherits the mapping as the kernel's: it reads and
 * writes the shared pages; private ones raise SIGBUS; a conversion in the
 * parent reaches the child's copy before it returns (gmem_set_attributes).
 * The child may gmem_munmap it (its handle is not the child's: -EIO). A
 * mapping, or a part, marked MADV_DONTFORK is not inherited, as the
 * kernel's: the child forgets it.
 * Use gmem_munmap, not munmap(2) or mremap(2), on gmem mappings:
 * docs/security.md lists what each other path does.
 *
 * Errors (in this order): -EBADF/-EINVAL bad handle; -ENODEV file without
 *         GMEM_FLAG_MMAP; -EINVAL flags other than MAP_SHARED, optionally
 *         with MAP_FIXED (a private, copy-on-write mapping is refused);
 *         -EINVAL prot, len 0, offset or len not 4 KiB aligned, or offset
 *         at/after the end; -EINVAL offset or len not a multiple of a huge
 *         file's folio size; -EINVAL @addr NULL; -EINVAL MAP_FIXED with
 *         *@addr NULL, not page-aligned (in a huge file, not a multiple of
 *         the folio size) or *@addr+len wrapping; -ENOMEM. A MAP_FIXED call
 *         failing with -ENOMEM may leave the range unmapped, as mmap(2) may.
 */
int gmem_mmap(int fd, uint64_t offset, size_t len, int prot, int flags,
	      void **addr);

/*
 * gmem_munmap - munmap(2) for gmem mappings: unmap every part of
 * [addr, addr+len) (len rounded up to whole pages) that gmem mappings
 * cover. The range may cover any parts of any number of mappings: a mapping
 * cut at either end shrinks, one cut in the middle becomes two, one covered
 * whole goes away and drops its reference on the file (the last one
 * releases a closed file). Other mappings in the range are left alone.
 * In a fork child, mappings it inherited are unmapped the same way; the
 * parent's file is not touched. Returns 0 if at least one gmem mapping was
 * in the range.
 *
 * Errors: -EINVAL @addr not page-aligned, len 0, or the range wraps;
 *         -EINVAL no gmem mapping in the range (nothing changed);
 *         -ENOMEM no memory for the bookkeeping (nothing changed), or the
 *         kernel could not split a mapping (parts before it may be unmapped,
 *         as with munmap(2)).
 */
int gmem_munmap(void *addr, size_t len);

/*
 * gmem_mapping_find - is @addr inside a gmem host mapping of this process?
 * Returns 1 and, for each output pointer not NULL, the file's handle (-1 if
 * the handle has been closed: the mapping keeps the file alive) and the
 * byte offset in the file of @addr (at or past the file's size in the part
 * of a mapping past the end of the file; -1 too for a mapping a fork child
 * inherited, whose handle is the parent's); 0 if not. Thread-safe but not
 * async-signal-safe (it takes a lock): a SIGSEGV handler must not call it.
 */
int gmem_mapping_find(const void *addr, int *fd, uint64_t *offset);

/* ------------------------------------------------------------------ pins */

/*
 * gmem_pin - take a long-term host reference on every page of
 * [offset, offset+size), as GUP with FOLL_LONGTERM (VFIO, vhost) would,
 * allocating folios that do not exist yet. Pinned pages stay where they are
 * and block conversion to private with -EAGAIN until unpinned.
 * gmem cannot see the references the kernel takes through a host mapping:
 * a VMM that gives a range to VFIO (VFIO_IOMMU_MAP_DMA) pins it here for as
 * long as the DMA mapping exists (docs/vmm.md, "Memory outside the process").
 *
 * Errors: -EBADF/-EINVAL bad handle; -EINVAL size 0, overflow, unaligned,
 *         past the end; -EFAULT a page in the range is private (the host
 *         cannot reach it); -EOVERFLOW a page pinned 2^31-1 times; -ENOMEM.
 */
int gmem_pin(int fd, uint64_t offset, uint64_t size);

/*
 * gmem_unpin - drop one pin from every page of the range.
 * Errors: -EBADF/-EINVAL bad handle; -EINVAL size 0, overflow, unaligned,
 *         past the end, or a page in the range not pinned; -ENOMEM.
 */
int gmem_unpin(int fd, uint64_t offset, uint64_t size);

/* ----------------------------------------------------------- VM bindings */

#define GMEM_MAX_SLOTS		32764

/*
 * gmem_vm_bind - bind [offset, offset+size) of file @fd to guest physical
 * [gpa, gpa+size) as memslot @slot (KVM_SET_USER_MEMORY_REGION2 with
 * KVM_MEM_GUEST_MEMFD). Slots are only created or deleted, never changed:
 * binding a slot id already in use fails with -EINVAL, as KVM refuses to
 * modify a guest_memfd memslot (delete it with gmem_vm_unbind first).
 *
 * Errors (in this order): -EBADF/-EINVAL bad VM; -EINVAL slot >= GMEM_MAX_SLOTS;
 *         -EINVAL size 0, gpa or size unaligned, gpa+size overflows;
 *         -EBADF @fd not open; -EINVAL @fd not a file, or a file of another VM;
 *         -EINVAL offset unaligned, or offset+size past the end of the file;
 *         -EINVAL gpa, offset or size not a multiple of a huge file's folio
 *         size (so a huge folio is always bound whole, gfn and page aligned
 *         alike);
 *         -EINVAL slot in use; -EEXIST the guest range overlaps another
 *         slot; -EEXIST the file range is already bound; -ENOMEM.
 */
int gmem_vm_bind(int vm, uint32_t slot, uint64_t gpa, uint64_t size, int fd,
	      uint64_t offset);

/*
 * gmem_vm_unbind - delete memslot @slot: stage-2 entries of its range are zapped,
 * later faults there fail with -EFAULT. Errors: -EBADF/-EINVAL bad VM;
 * -EINVAL slot out of range or not in use.
 */
int gmem_vm_unbind(int vm, uint32_t slot);

/* gmem_vm_view_mmap @attributes: the view open for either kind. */
#define GMEM_VIEW_ANY		(1ULL << 63)

/*
 * gmem_vm_view_mmap - map slot @slot's memory as the guest sees it through
 * one view: private with @attributes GMEM_ATTR_PRIVATE, shared with 0, or
 * either with GMEM_VIEW_ANY. This is the address a VMM gives a real
 * hypervisor (the userspace_addr of a KVM memslot): the private view backs
 * the guest's private alias of the slot, the shared view its shared alias
 * (the shared-bit alias of TDX and SNP). The any view is for a guest with
 * no shared alias (a KVM software-protected VM): through one address it
 * sees each page as the page's attribute says.
 * Stores the address of the slot's first page in *@addr; the view spans the
 * whole slot, page i at gpa + i * 4 KiB.
 *
 * A page of a view is accessible only while stage-2 maps it with the view's
 * kind (the any view: with either kind): gmem_vm_fault on the page with the
 * matching access opens it, and any zap of the entry (conversion either way,
 * punch, file release, unbind) closes it again. (A conversion zaps only
 * entries of the old kind: a page of its range that stage-2 still maps
 * with the other kind stays open in the any view.)
 * A closed page raises SIGSEGV in the host (not SIGBUS: a view is not a
 * mapping a VMM touches, and gmem's handler passes the fault on); under KVM,
 * the page-table change makes KVM drop its own mapping, and the guest's next
 * access through it exits to the VMM (KVM_EXIT_MMIO at that gpa), which
 * calls gmem_vm_fault.
 * Pages mapped when the view is made are open at once. A child made by
 * fork() does not inherit the view (MADV_DONTFORK), nor does a core dump hold
 * it (MADV_DONTDUMP).
 *
 * The VMM itself reads and writes guest memory through gmem_mmap; it touches
 * a view only to complete the one guest access that exited (as the hardware
 * would) and hands it to the hypervisor otherwise.
 *
 * Lifetime: one view of each kind (shared, private, any) per slot.
 * gmem_vm_unbind (or the file's release) replaces the view by an inaccessible
 * reservation of the same range; the caller then releases it with
 * munmap(2). Do not munmap a view while its slot is bound.
 *
 * Errors (in this order): -EINVAL @attributes not GMEM_ATTR_PRIVATE, 0 or
 *         GMEM_VIEW_ANY; -EINVAL @addr NULL; -EBADF/-EINVAL bad VM; -EINVAL
 *         slot not in use; -ENOMEM no memory or address space; -EEXIST the
 *         slot already has a view of that kind.
 */
int gmem_vm_view_mmap(int vm, uint32_t slot, uint64_t attributes, void **addr);

/*
 * gmem_vm_translate - the lookup every VMM writes: which file and offset back
 * @gpa, and how many bytes remain to the end of that binding.
 * Any output pointer may be NULL. *@fd is -1 where the file's handle was
 * closed and a host mapping keeps the file, and its binding, alive.
 * Errors: -EBADF/-EINVAL bad VM; -EFAULT nothing bound at @gpa.
 */
int gmem_vm_translate(int vm, uint64_t gpa, int *fd, uint64_t *offset,
		      uint64_t *len);

/* ---------------------------------------------------------------- faults */

#define GMEM_FAULT_WRITE	(1U << 0)
#define GMEM_FAULT_PRIVATE	(1U << 1)	/* the guest accessed it as private */

#define GMEM_EXIT_MEMORY_FAULT		39	/* KVM_EXIT_MEMORY_FAULT */
#define GMEM_MEMORY_EXIT_FLAG_PRIVATE	(1ULL << 3)

/* What the VMM sees when a guest access disagrees with the attribute. */
struct gmem_exit {
	uint32_t reason;	/* GMEM_EXIT_MEMORY_FAULT */
	uint32_t pad;
	uint64_t flags;		/* GMEM_MEMORY_EXIT_FLAG_PRIVATE if private access */
	uint64_t gpa;		/* page-aligned */
	uint64_t size;		/* GMEM_PAGE_SIZE */
};

/*
 * gmem_vm_fault - a guest access at @gpa (GMEM_FAULT_* @flags).
 *
 * Returns 0 and the mapped frame in *@pfn when the access agrees with the
 * page's attribute: the folio is allocated (zeroed once in its life) if it did
 * not exist, the arch prepares private pages, and the stage-2 entry is
 * installed unless an invalidation raced, in which case the fault retries.
 * The entry is as large as the page allows: the folio's order (2 MiB or
 * 1 GiB for a whole huge folio, which it is only while its attributes are
 * uniform), for a private page capped by the arch (snp: the RMP entry size,
 * 2 MiB at most, 4 KiB once a conversion inside it smashed it);
 * gmem_vm_stage2_level() reads it back. Mapping a whole huge folio, the
 * arch prepares the pages of it that invalidations changed since it last
 * did (all of them the first time), not the pages that stayed private
 * while it split and merged.
 * Returns GMEM_FAULT_EXIT (1) and fills *@exit (a memory-fault exit) when
 * the access disagrees: the VMM converts and runs the guest again. It is a
 * positive result, which a plain "ret < 0" check lets through: test for it
 * by name (the compiler warns when the result is ignored). @pfn and @exit
 * may be NULL.
 *
 * Errors: -EBADF/-EINVAL bad VM; -EINVAL unknown flag; -EFAULT nothing bound
 *         at @gpa (or its file was closed); -ENOMEM; arch errors.
 */
#define GMEM_FAULT_EXIT	1	/* gmem_vm_fault/_access: a memory-fault exit */

__attribute__((warn_unused_result))
int gmem_vm_fault(int vm, uint64_t gpa, unsigned int flags, uint64_t *pfn,
		  struct gmem_exit *exit);

/*
 * gmem_vm_access - the guest reads (or writes, with GMEM_FAULT_WRITE) @len
 * bytes at @gpa, as private or shared, faulting pages in as needed; the
 * guest's own load/store, for tests and scenarios. Returns 0, or 1 with
 * *@exit filled at the first page whose attribute disagrees; on that exit
 * and on an error, the pages before the failing one were transferred.
 * Errors: as gmem_vm_fault; -EINVAL @buf NULL with len > 0.
 */
__attribute__((warn_unused_result))
int gmem_vm_access(int vm, uint64_t gpa, void *buf, size_t len,
		   unsigned int flags, struct gmem_exit *exit);

/*
 * gmem_vm_stage2 - the VM's stage-2 entry for @gpa: 1 and *@pfn, *@private
 * when mapped, 0 when not. Output pointers may be NULL.
 * Errors: -EBADF/-EINVAL bad VM.
 */
int gmem_vm_stage2(int vm, uint64_t gpa, uint64_t *pfn, int *private);

/*
 * gmem_vm_stage2_level - the size of the stage-2 entry mapping @gpa: 0 for
 * 4 KiB, 1 for 2 MiB, 2 for 1 GiB. An invalidation of any part of a huge
 * entry removes the whole entry. Errors: -EBADF/-EINVAL bad VM; -ENOENT
 * nothing mapped at @gpa.
 */
int gmem_vm_stage2_level(int vm, uint64_t gpa);

/* Current mmu_invalidate_seq of the VM (>= 0), or -errno. */
int64_t gmem_vm_invalidate_seq(int vm);

#ifdef __cplusplus
}
#endif
#endif /* GMEM_H */
