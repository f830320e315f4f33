// SPDX-License-Identifier: MIT
/*
 * gmem vm - a small VMM: a real KVM guest whose RAM is a gmem file.
 *
 * The guest (tools/guest/) sees its RAM twice, as a confidential guest does:
 * a private alias at gpa 0 and a shared alias at VM_SHARED_BIT. Each alias
 * is a KVM memslot whose userspace address is a gmem stage-2 view of the
 * same gmem slot (gmem_vm_view_mmap): the private view for the private
 * alias, the shared view for the shared one. A view shows a page only while
 * gmem maps it for the guest with that kind, so:
 *
 *   first touch, or a touch after a conversion or punch
 *       -> KVM_EXIT_MMIO at the gpa -> gmem_vm_access (faults the page in,
 *          which opens it in the view, and completes the access); later
 *          accesses run without exits
 *   a touch through the alias that disagrees with the page's attribute
 *       -> KVM_EXIT_MMIO -> gmem_vm_access returns 1 (a memory-fault exit)
 *       -> --policy convert: gmem_set_attributes, then complete the access;
 *          --policy refuse: stop the guest with an error
 *   the guest's explicit request (VM_HC_MAP_GPA_RANGE, like
 *   KVM_HC_MAP_GPA_RANGE) -> gmem_set_attributes
 *
 * The VMM's own reads and writes of guest memory go through gmem_mmap,
 * which cannot reach private pages. docs/vmm.md walks through it.
 *
 * Exit status: 0 every guest check passed; 1 a check failed or the guest
 * was stopped; 2 bad usage; 77 KVM is not usable here (or the guest could
 * not be built).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "guest/abi.h"

#define PAGE		GMEM_PAGE_SIZE
#define EXIT_SKIP	77

/* The guest image, built from tools/guest/ and linked in (tools/guest/image.S). */
extern const unsigned char gmem_guest_image[], gmem_guest_image_end[];

static size_t guest_image_size(void)
{
	return (uintptr_t)gmem_guest_image_end - (uintptr_t)gmem_guest_image;
}

static const char *const arches[] = {
	[VM_ARCH_SW] = "sw", [VM_ARCH_SNP] = "snp",
	[VM_ARCH_TDX] = "tdx", [VM_ARCH_PKVM] = "pkvm",
};

struct opts {
	int arch;		/* VM_ARCH_*, or -1 for all */
	int vcpus;
	bool refuse;
	unsigned int iterations;
	bool eager;		/* map converted pages at once (--eager-map) */
	bool check;		/* GMEM_VM_CHECK: verify invariants after every call */
	bool legacy;		/* GMEM_VM_LEGACY_CONTRACT (--contract legacy) */
	uint64_t folio;		/* 0, or GMEM_FLAG_HUGE_2M (--folio 2M) */
	bool json, quiet;
};

struct vmm {
	const struct opts *o;
	int arch;
	int kvm, vmfd;
	int pool, gvm, fd;	/* gmem pool, VM, and the file holding guest RAM */
	uint8_t *host;		/* gmem_mmap of the whole file */
	void *view[2];		/* [0] shared view, [1] private view */
	int run_size;

	pthread_mutex_t console_lock;
	atomic_bool stop;
	char error[256];	/* why the guest was stopped; first one wins */
	atomic_flag error_set;

	atomic_uint_least64_t conversions, implicit, exits;
	atomic_uint_least64_t bench_conversions;
	atomic_uint_least64_t gmem_ns;	/* benchmark time spent in gmem calls */
	atomic_uint checks_passed, checks_failed;
	pthread_mutex_t time_lock;
	bool bench_started;
	struct timespec bench_start, bench_end;
};

struct vcpu {
	struct vmm *vmm;
	int id, fd;
	struct kvm_run *run;
	bool in_bench, done;
	uint32_t failures;	/* what the guest reported at VM_HC_DONE */
	unsigned int fetch_retries;	/* handle_fetch found nothing to open */
	char line[160];
	size_t linelen;
};

static void vmm_stop(struct vmm *m, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void vmm_stop(struct vmm *m, const char *fmt, ...)
{
	va_list ap;

	if (!atomic_flag_test_and_set(&m->error_set)) {
		va_start(ap, fmt);
		vsnprintf(m->error, sizeof(m->error), fmt, ap);
		va_end(ap);
	}
	atomic_store(&m->stop, true);
}

/* ------------------------------------------------------------- console */

static void console_putc(struct vcpu *v, char c)
{
	struct vmm *m = v->vmm;

	if (c != '\n' && v->linelen < sizeof(v->line) - 1) {
		v->line[v->linelen++] = c;
		return;
	}
	v->line[v->linelen] = 0;
	v->linelen = 0;
	if (m->o->quiet || m->o->json)
		return;
	pthread_mutex_lock(&m->console_lock);
	printf("%s: vcpu%d: %s\n", arches[m->arch], v->id, v->line);
	fflush(stdout);
	pthread_mutex_unlock(&m->console_lock);
}

/* -------------------------------------------------------- guest memory */

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* A gmem call that started at @t0 is over: count it if benchmarking. */
static void account(struct vcpu *v, uint64_t t0)
{
	if (v->in_bench)
		atomic_fetch_add(&v->vmm->gmem_ns, now_ns() - t0);
}

/* A guest range of whole pages inside RAM, as a file range. */
static bool ram_range(uint64_t gpa, uint64_t size)
{
	return size && gpa % PAGE == 0 && size % PAGE == 0 &&
	       gpa < VM_RAM_SIZE && size <= VM_RAM_SIZE - gpa;
}

/*
 * Convert [gpa, gpa + size) (the file offset is the gpa: one slot at 0).
 * Returns 0 or -errno.
 */
static int convert(struct vcpu *v, uint64_t gpa, uint64_t size, bool private)
{
	struct vmm *m = v->vmm;
	uint64_t t0;
	int ret;

	if (!ram_range(gpa, size))
		return -EINVAL;
	t0 = now_ns();
	ret = gmem_set_attributes(m->fd, gpa, size,
				  private ? GMEM_ATTR_PRIVATE : 0, 0, NULL);
	account(v, t0);
	if (ret)
		return ret;
	atomic_fetch_add(&m->conversions, size / PAGE);
	if (v->in_bench)
		atomic_fetch_add(&m->bench_conversions, size / PAGE);
	return 0;
}

/*
 * The host reads or writes a word of guest memory through its gmem mapping,
 * the way any VMM touches guest RAM. process_vm_readv/writev on ourselves
 * turns a private (fenced) page into -EFAULT instead of a SIGSEGV.
 */
static int host_access(struct vmm *m, uint64_t gpa, uint32_t *val, bool write)
{
	struct iovec local = { val, sizeof(*val) };
	struct iovec remote = { m->host + gpa, sizeof(*val) };
	ssize_t n;

	if (gpa % sizeof(*val) || gpa >= VM_RAM_SIZE)
		return -EINVAL;
	n = write ? process_vm_writev(getpid(), &local, 1, &remote, 1, 0)
		  : process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
	return n == sizeof(*val) ? 0 : -EFAULT;
}

/*
 * --eager-map: after an explicit conversion, fault the pages in with their
 * new kind, so the guest's next touch finds them open in the view and KVM
 * maps them without a trip to the VMM (as KVM's in-kernel fault would with a
 * guest_memfd that converts). Only small requests: a large one would
 * allocate memory the guest may never touch.
 */
#define EAGER_MAX_PAGES	16

static void eager_map(struct vcpu *v, uint64_t gpa, uint64_t size, bool private)
{
	unsigned int flags = (private ? GMEM_FAULT_PRIVATE : 0) | GMEM_FAULT_WRITE;
	uint64_t t0 = now_ns();

	if (size > EAGER_MAX_PAGES * PAGE)
		return;
	for (uint64_t off = 0; off < size; off += PAGE)
		if (gmem_vm_fault(v->vmm->gvm, gpa + off, flags, NULL, NULL))
			break;	/* converted again meanwhile: the touch will say */
	account(v, t0);
}

/* ---------------------------------------------------------------- exits */

static void bench_mark(struct vcpu *v, bool start)
{
	struct vmm *m = v->vmm;
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&m->time_lock);	/* first start to last end */
	if (start && !m->bench_started) {
		m->bench_start = now;
		m->bench_started = true;
	}
	if (!start)
		m->bench_end = now;
	pthread_mutex_unlock(&m->time_lock);
	v->in_bench = start;
}

static int64_t hypercall(struct vcpu *v, uint32_t nr, uint32_t a, uint32_t b,
			 uint32_t c)
{
	struct vmm *m = v->vmm;
	uint32_t word;
	int ret;

	switch (nr) {
	case VM_HC_MAP_GPA_RANGE:
		if (c != VM_MAP_SHARED && c != VM_MAP_PRIVATE)
			return -EINVAL;
		ret = convert(v, a, b, c == VM_MAP_PRIVATE);
		if (!ret && m->o->eager)
			eager_map(v, a, b, c == VM_MAP_PRIVATE);
		return ret;
	case VM_HC_PUNCH:
		if (!ram_range(a, b))
			return -EINVAL;
		return gmem_fallocate(m->fd, GMEM_FALLOC_KEEP_SIZE |
				      GMEM_FALLOC_PUNCH_HOLE, a, b);
	case VM_HC_HOST_READ:
		ret = host_access(m, a, &word, false);
		return ret ? ret : word == b;
	case VM_HC_HOST_WRITE:
		word = b;
		return host_access(m, a, &word, true);
	case VM_HC_RESULT:
		atomic_fetch_add(b ? &m->checks_passed : &m->checks_failed, 1);
		return 0;
	case VM_HC_BENCH:
		bench_mark(v, a);
		return 0;
	case VM_HC_DONE:
		v->failures = a;
		v->done = true;
		return 0;
	}
	return -ENOSYS;
}

static int handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	struct kvm_regs regs;

	if (run->io.port == VM_SERIAL_PORT &&
	    run->io.direction == KVM_EXIT_IO_OUT) {
		for (uint32_t i = 0; i < run->io.count * run->io.size; i++)
			console_putc(v, (char)data[i]);
		return 0;
	}
	if (run->io.port == VM_HC_PORT && run->io.direction == KVM_EXIT_IO_IN &&
	    run->io.size == 4 && run->io.count == 1) {
		uint32_t ret;

		if (ioctl(v->fd, KVM_GET_REGS, &regs)) {
			vmm_stop(v->vmm, "vcpu%d: KVM_GET_REGS: %s", v->id,
				 strerror(errno));
			return -1;
		}
		ret = (uint32_t)hypercall(v, (uint32_t)regs.rax, (uint32_t)regs.rbx,
					  (uint32_t)regs.rcx, (uint32_t)regs.rsi);
		memcpy(data, &ret, sizeof(ret));
		return 0;
	}
	vmm_stop(v->vmm, "vcpu%d: unexpected port I/O: %s port %#x size %u",
		 v->id, run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in",
		 run->io.port, run->io.size);
	return -EINVAL;
}

/*
 * A guest access KVM could not map: the page is fenced in the view the
 * guest used. gmem_vm_access faults it in (opening it in the view, so the
 * next access runs at full speed) and completes this one. If the access
 * disagrees with the page's attribute, gmem says so with a memory-fault
 * exit, and the policy decides.
 */
static int handle_mmio(struct vcpu *v)
{
	struct vmm *m = v->vmm;
	struct kvm_run *run = v->run;
	uint64_t gpa = run->mmio.phys_addr & ~(uint64_t)VM_SHARED_BIT;
	bool private = !(run->mmio.phys_addr & VM_SHARED_BIT);
	unsigned int flags = (private ? GMEM_FAULT_PRIVATE : 0) |
			     (run->mmio.is_write ? GMEM_FAULT_WRITE : 0);
	struct gmem_exit exit;
	int ret;

	if (gpa >= VM_RAM_SIZE || run->mmio.len > VM_RAM_SIZE - gpa) {
		vmm_stop(m, "vcpu%d: guest touched gpa %#llx outside its memory",
			 v->id, (unsigned long long)run->mmio.phys_addr);
		return -EFAULT;
	}
	for (int tries = 0; tries < 8; tries++) {
		uint64_t t0 = now_ns();

		ret = gmem_vm_access(m->gvm, gpa, run->mmio.data, run->mmio.len,
				     flags, &exit);
		account(v, t0);
		if (ret <= 0)
			break;
		/* GMEM_EXIT_MEMORY_FAULT: the guest used the other alias. */
		if (m->o->refuse) {
			vmm_stop(m, "vcpu%d: refused: guest accessed %s page %#llx through its %s alias (--policy refuse)",
				 v->id, private ? "shared" : "private",
				 (unsigned long long)exit.gpa,
				 private ? "private" : "shared");
			return -EPERM;
		}
		ret = convert(v, exit.gpa, exit.size,
			      exit.flags & GMEM_MEMORY_EXIT_FLAG_PRIVATE);
		if (ret)
			break;
		atomic_fetch_add(&m->implicit, 1);
	}
	if (ret) {
		vmm_stop(m, "vcpu%d: access to gpa %#llx failed: %s", v->id,
			 (unsigned long long)run->mmio.phys_addr,
			 ret > 0 ? "still converting" : gmem_last_error());
		return ret > 0 ? -EAGAIN : ret;
	}
	return 0;
}

/*
 * KVM could not emulate an instruction: with a view page closed under it, an
 * instruction fetch looks like MMIO, which KVM cannot fetch from. That is the
 * guest's code page losing its stage-2 entry, as the whole huge entry around
 * a page that converts does. Fault the page(s) of the instruction in again
 * (flat segments, no paging: cs.base + rip is the gpa) and go on. If they
 * are mapped already, another vCPU may have just done it: try again a few
 * times, then stop, since the failure is real.
 */
static int handle_fetch(struct vcpu *v)
{
	struct vmm *m = v->vmm;
	struct kvm_regs regs;
	struct kvm_sregs sregs;

	if (v->run->internal.suberror != KVM_INTERNAL_ERROR_EMULATION ||
	    ioctl(v->fd, KVM_GET_REGS, &regs) || ioctl(v->fd, KVM_GET_SREGS, &sregs))
		goto fail;
	for (uint64_t at = 0; at < 16; at += 15) {	/* an instruction is <= 15 bytes */
		uint64_t addr = sregs.cs.base + regs.rip + at;
		uint64_t gpa = addr & ~(uint64_t)VM_SHARED_BIT;
		bool private = !(addr & VM_SHARED_BIT);
		int mapped_private = 0;
		uint64_t t0;

		if (gpa >= VM_RAM_SIZE)
			goto fail;
		if (gmem_vm_stage2(m->gvm, gpa, NULL, &mapped_private) == 1 &&
		    mapped_private == private)
			continue;
		t0 = now_ns();
		if (gmem_vm_fault(m->gvm, gpa, private ? GMEM_FAULT_PRIVATE : 0,
				  NULL, NULL))
			goto fail;
		account(v, t0);
		v->fetch_retries = 0;
	}
	if (v->fetch_retries++ < 8)
		return 0;
fail:
	vmm_stop(m, "vcpu%d: KVM internal error, suberror %u", v->id,
		 v->run->internal.suberror);
	return -1;
}

static void *vcpu_loop(void *arg)
{
	struct vcpu *v = arg;
	struct vmm *m = v->vmm;

	while (!v->done && !atomic_load(&m->stop)) {
		int ret = ioctl(v->fd, KVM_RUN, 0);

		if (ret < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			vmm_stop(m, "vcpu%d: KVM_RUN: %s", v->id, strerror(errno));
			break;
		}
		atomic_fetch_add(&m->exits, 1);
		if (v->run->exit_reason != KVM_EXIT_INTERNAL_ERROR)
			v->fetch_retries = 0;
		switch (v->run->exit_reason) {
		case KVM_EXIT_IO:
			ret = handle_io(v);
			break;
		case KVM_EXIT_MMIO:
			ret = handle_mmio(v);
			break;
		case KVM_EXIT_HLT:
			vmm_stop(m, "vcpu%d: guest halted", v->id);
			ret = -1;
			break;
		case KVM_EXIT_INTERNAL_ERROR:
			ret = handle_fetch(v);
			break;
		default:
			vmm_stop(m, "vcpu%d: unexpected exit reason %u", v->id,
				 v->run->exit_reason);
			ret = -1;
		}
		if (ret)
			break;
	}
	return NULL;
}

/* ---------------------------------------------------------------- setup */

static int kvm_open(struct vmm *m)
{
	m->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (m->kvm < 0) {
		snprintf(m->error, sizeof(m->error), "/dev/kvm: %s", strerror(errno));
		return EXIT_SKIP;
	}
	if (ioctl(m->kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		snprintf(m->error, sizeof(m->error), "/dev/kvm: unexpected API version");
		return EXIT_SKIP;
	}
	m->vmfd = ioctl(m->kvm, KVM_CREATE_VM, 0);
	m->run_size = ioctl(m->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (m->vmfd < 0 || m->run_size <= 0) {
		snprintf(m->error, sizeof(m->error), "KVM_CREATE_VM: %s", strerror(errno));
		return EXIT_SKIP;
	}
	return 0;
}

/* Setup failed in @call: record why (gmem's reason or errno's) and return -1. */
static int setup_failed(struct vmm *m, const char *call, int ret)
{
	snprintf(m->error, sizeof(m->error), "%s: %s", call,
		 ret == -1 ? strerror(errno) : gmem_last_error());
	return -1;
}

/* Guest RAM: one gmem file bound as slot 0, and its two views as memslots. */
static int memory_setup(struct vmm *m)
{
	struct kvm_userspace_memory_region region = { .memory_size = VM_RAM_SIZE };
	void *host;
	int ret;

	m->pool = gmem_pool_create(1ULL << 30);
	if (m->pool < 0)
		return setup_failed(m, "gmem_pool_create", m->pool);
	m->gvm = gmem_vm_create(m->pool, arches[m->arch],
				(m->o->check ? GMEM_VM_CHECK : 0) |
				(m->o->legacy ? GMEM_VM_LEGACY_CONTRACT : 0));
	if (m->gvm < 0)
		return setup_failed(m, "gmem_vm_create", m->gvm);
	m->fd = gmem_create(m->gvm, VM_RAM_SIZE, GMEM_FLAG_MMAP | m->o->folio);
	if (m->fd < 0)
		return setup_failed(m, "gmem_create", m->fd);
	ret = gmem_bind(m->gvm, 0, 0, VM_RAM_SIZE, m->fd, 0);
	if (ret)
		return setup_failed(m, "gmem_bind", ret);
	ret = gmem_mmap(m->fd, 0, VM_RAM_SIZE, PROT_READ | PROT_WRITE,
			MAP_SHARED, &host);
	if (ret)
		return setup_failed(m, "gmem_mmap", ret);
	m->host = host;
	for (int kind = 1; kind >= 0; kind--) {
		ret = gmem_vm_view_mmap(m->gvm, 0, kind ? GMEM_ATTR_PRIVATE : 0,
					&m->view[kind]);
		if (ret)
			return setup_failed(m, "gmem_vm_view_mmap", ret);
		region.slot = (uint32_t)(1 - kind);
		region.guest_phys_addr = kind ? 0 : VM_SHARED_BIT;
		region.userspace_addr = (uint64_t)(uintptr_t)m->view[kind];
		if (ioctl(m->vmfd, KVM_SET_USER_MEMORY_REGION, &region))
			return setup_failed(m, "KVM_SET_USER_MEMORY_REGION", -1);
	}
	return 0;
}

/*
 * Launch: the image goes into private memory as measured launch content
 * (gmem_vm_populate), then the boot region (image, data, stacks) is faulted
 * in for the guest, as a confidential guest accepts its boot memory; the
 * rest of RAM is faulted on first touch.
 */
static int load_guest(struct vmm *m)
{
	size_t len = guest_image_size();
	size_t padded = (len + PAGE - 1) & ~(PAGE - 1);
	unsigned char *buf;
	int64_t n;

	if (VM_IMAGE_GPA + padded > VM_BOOT_END - VM_MAX_VCPUS * VM_STACK_SIZE) {
		snprintf(m->error, sizeof(m->error), "guest image of %zu bytes does not fit", len);
		return -1;
	}
	buf = calloc(1, padded);
	if (!buf)
		return setup_failed(m, "calloc", -1);
	memcpy(buf, gmem_guest_image, len);
	n = gmem_vm_populate(m->gvm, VM_IMAGE_GPA, buf, padded, 0);
	free(buf);
	if (n < 0)
		return setup_failed(m, "gmem_vm_populate", (int)n);
	for (uint64_t gpa = VM_IMAGE_GPA; gpa < VM_BOOT_END; gpa += PAGE) {
		int ret = gmem_vm_fault(m->gvm, gpa,
					GMEM_FAULT_PRIVATE | GMEM_FAULT_WRITE, NULL, NULL);

		if (ret)
			return setup_failed(m, "gmem_vm_fault", ret);
	}
	return 0;
}

/* 32-bit protected mode, flat 4 GiB segments, no paging. */
static int vcpu_setup(struct vmm *m, struct vcpu *v)
{
	struct kvm_segment code = {
		.base = 0, .limit = 0xffffffff, .selector = 0x8, .type = 0xb,
		.present = 1, .s = 1, .db = 1, .g = 1,
	};
	struct kvm_segment data = code;
	struct kvm_sregs sregs;
	struct kvm_regs regs = {
		.rip = VM_IMAGE_GPA, .rflags = 0x2,
		.rsp = VM_STACK_TOP - (uint32_t)v->id * VM_STACK_SIZE,
		.rax = VM_BOOT_MAGIC, .rbx = (uint32_t)v->id,
		.rcx = (uint32_t)m->o->vcpus, .rdx = (uint32_t)m->arch,
		.rsi = m->o->iterations,
		.rdi = m->o->refuse ? 0 : VM_BOOT_IMPLICIT,
	};

	v->fd = ioctl(m->vmfd, KVM_CREATE_VCPU, v->id);
	if (v->fd < 0)
		return setup_failed(m, "KVM_CREATE_VCPU", -1);
	v->run = mmap(NULL, (size_t)m->run_size, PROT_READ | PROT_WRITE,
		      MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		return setup_failed(m, "mmap of kvm_run", -1);
	}
	if (ioctl(v->fd, KVM_GET_SREGS, &sregs))
		return setup_failed(m, "KVM_GET_SREGS", -1);
	data.type = 0x3;
	data.selector = 0x10;
	sregs.cs = code;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.cr0 = 0x1;	/* PE */
	sregs.cr4 = 0;
	sregs.efer = 0;
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) || ioctl(v->fd, KVM_SET_REGS, &regs))
		return setup_failed(m, "KVM_SET_SREGS/REGS", -1);
	return 0;
}

static void vmm_teardown(struct vmm *m, struct vcpu *vcpus)
{
	for (int i = 0; i < m->o->vcpus; i++) {
		if (vcpus[i].run)
			munmap(vcpus[i].run, (size_t)m->run_size);
		if (vcpus[i].fd >= 0)
			close(vcpus[i].fd);
	}
	/* KVM first: its memslots point into the views. */
	if (m->vmfd >= 0)
		close(m->vmfd);
	if (m->kvm >= 0)
		close(m->kvm);
	if (m->host)
		gmem_munmap(m->host, VM_RAM_SIZE);
	if (m->fd >= 0)
		gmem_close(m->fd);	/* unbinds: the views become reservations */
	for (int kind = 0; kind < 2; kind++)
		if (m->view[kind])
			munmap(m->view[kind], VM_RAM_SIZE);
	if (m->gvm >= 0)
		gmem_vm_destroy(m->gvm);
	if (m->pool >= 0)
		gmem_pool_destroy(m->pool);
	pthread_mutex_destroy(&m->console_lock);
	pthread_mutex_destroy(&m->time_lock);
}

static double seconds(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) +
	       (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static void report(struct vmm *m, bool ok)
{
	unsigned int passed = atomic_load(&m->checks_passed);
	unsigned int failed = atomic_load(&m->checks_failed);
	uint64_t conv = atomic_load(&m->bench_conversions);
	double secs = seconds(&m->bench_start, &m->bench_end);
	double rate;

	if (secs < 0)		/* stopped before the benchmark ended */
		secs = 0;
	rate = secs > 0 ? (double)conv / secs : 0;

	if (m->o->json) {
		printf("{\"arch\":\"%s\",\"vcpus\":%d,\"policy\":\"%s\","
		       "\"result\":\"%s\",\"checks_passed\":%u,\"checks_failed\":%u,"
		       "\"conversions\":%llu,\"implicit_conversions\":%llu,"
		       "\"exits\":%llu,\"bench_conversions\":%llu,"
		       "\"bench_seconds\":%.6f,\"conversions_per_sec\":%.0f,"
		       "\"bench_gmem_seconds\":%.6f",
		       arches[m->arch], m->o->vcpus, m->o->refuse ? "refuse" : "convert",
		       ok ? "pass" : "fail", passed, failed,
		       (unsigned long long)atomic_load(&m->conversions),
		       (unsigned long long)atomic_load(&m->implicit),
		       (unsigned long long)atomic_load(&m->exits),
		       (unsigned long long)conv, secs, rate,
		       (double)atomic_load(&m->gmem_ns) / 1e9);
		if (m->error[0]) {
			printf(",\"error\":\"");
			for (const char *p = m->error; *p; p++)
				printf(*p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
			printf("\"");
		}
		printf("}\n");
		return;
	}
	printf("%s: %s: %u checks passed, %u failed; %llu conversions (%llu implicit), %llu exits\n",
	       arches[m->arch], ok ? "pass" : "FAIL", passed, failed,
	       (unsigned long long)atomic_load(&m->conversions),
	       (unsigned long long)atomic_load(&m->implicit),
	       (unsigned long long)atomic_load(&m->exits));
	if (conv && secs > 0)
		printf("%s: benchmark: %llu conversions by %d vCPU%s in %.3f s: %.0f conversions/s (%.0f%% of it in gmem calls)\n",
		       arches[m->arch], (unsigned long long)conv, m->o->vcpus,
		       m->o->vcpus > 1 ? "s" : "", secs, rate,
		       100.0 * (double)atomic_load(&m->gmem_ns) / 1e9 /
		       (secs * m->o->vcpus));
}

/* Run the guest once on backend @arch. Returns the exit status. */
static int run_arch(const struct opts *o, int arch)
{
	struct vmm m = {
		.o = o, .arch = arch, .kvm = -1, .vmfd = -1,
		.pool = -1, .gvm = -1, .fd = -1, .error_set = ATOMIC_FLAG_INIT,
	};
	struct vcpu vcpus[VM_MAX_VCPUS];
	pthread_t threads[VM_MAX_VCPUS];
	int started = 0, ret;
	bool ok;

	if (!guest_image_size()) {
		fprintf(stderr, "gmem vm: this gmem was built without its guest "
			"(GUEST_CC could not build 32-bit x86 code)\n");
		return EXIT_SKIP;
	}
	pthread_mutex_init(&m.console_lock, NULL);
	pthread_mutex_init(&m.time_lock, NULL);
	for (int i = 0; i < o->vcpus; i++)
		vcpus[i] = (struct vcpu){ .vmm = &m, .id = i, .fd = -1 };
	ret = kvm_open(&m);
	if (ret) {
		fprintf(stderr, "gmem vm: KVM is not usable here: %s\n", m.error);
		vmm_teardown(&m, vcpus);
		return EXIT_SKIP;
	}
	ret = memory_setup(&m);
	if (!ret)
		ret = load_guest(&m);
	for (int i = 0; !ret && i < o->vcpus; i++)
		ret = vcpu_setup(&m, &vcpus[i]);
	if (ret) {
		fprintf(stderr, "gmem vm: %s: setup failed: %s\n", arches[arch],
			m.error);
		vmm_teardown(&m, vcpus);
		return 1;
	}
	for (; started < o->vcpus; started++)
		if (pthread_create(&threads[started], NULL, vcpu_loop, &vcpus[started])) {
			vmm_stop(&m, "cannot start a vCPU thread");
			break;
		}
	for (int i = 0; i < started; i++)
		pthread_join(threads[i], NULL);

	if (o->check) {
		struct gmem_violation viol;
		int64_t n = gmem_vm_violations(m.gvm, &viol, 1);

		if (n != 0)
			vmm_stop(&m, "%lld invariant violations; first after %s: invariant %d at offset %#llx: %s",
				 (long long)n, viol.op, viol.invariant,
				 (unsigned long long)viol.offset, viol.rule);
	}
	ok = !m.error[0] && atomic_load(&m.checks_failed) == 0 &&
	     atomic_load(&m.checks_passed) > 0;
	for (int i = 0; i < o->vcpus; i++)
		if (!vcpus[i].done || vcpus[i].failures)
			ok = false;
	report(&m, ok);
	if (m.error[0])
		fprintf(stderr, "gmem vm: %s: %s\n", arches[arch], m.error);
	vmm_teardown(&m, vcpus);
	return ok ? 0 : 1;
}

/* ---------------------------------------------------------------- options */

static const char usage_text[] =
	"usage: gmem vm [--arch sw|snp|tdx|pkvm|all] [--vcpus N] [--policy convert|refuse]\n"
	"               [--iterations N] [--eager-map] [--check] [--contract split|legacy]\n"
	"               [--folio 4K|2M] [--json] [--quiet]\n"
	"\n"
	"Boot a small KVM guest whose memory is a gmem file, with a private and a\n"
	"shared alias of its RAM, and let it check its arch's conversion semantics\n"
	"and time its own conversions.\n"
	"\n"
	"  --arch A         backend, or all of them in turn (default: all)\n"
	"  --vcpus N        vCPUs, 1..8; each runs the benchmark on its own page\n"
	"                   (default: 1)\n"
	"  --policy P       a guest access through the alias that disagrees with the\n"
	"                   page: convert it (default) or refuse and stop the guest\n"
	"  --iterations N   benchmark rounds per vCPU, two conversions each\n"
	"                   (default: 2000)\n"
	"  --eager-map      map the pages of a small explicit conversion right away,\n"
	"                   sparing the guest's first touch an exit\n"
	"  --check          run gmem's invariant checker after every call (slow;\n"
	"                   one vCPU) and fail on any violation\n"
	"  --contract C     the arch hook contract: split (default) or legacy, the\n"
	"                   single invalidate hook of the patch under review\n"
	"                   (docs/arch.md)\n"
	"  --folio F        folio size of guest RAM: 4K (default) or 2M, huge\n"
	"                   folios split and merged by the guest's conversions\n"
	"  --json           one JSON object per backend instead of text\n"
	"  --quiet          do not echo the guest's console\n"
	"\n"
	"Exit status: 0 every guest check passed; 1 a check failed or the guest\n"
	"was stopped; 2 bad usage; 77 KVM is not usable here, or gmem was built\n"
	"without its guest.\n";

static int bad_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "gmem vm: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, " (try gmem vm --help)\n");
	return 2;
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	if (!s || !*s || *s == '-')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return false;
	*out = v;
	return true;
}

int cmd_vm(int argc, char **argv)
{
	struct opts o = { .arch = -1, .vcpus = 1, .iterations = 2000 };
	unsigned long n;
	int status = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage_text, stdout);
			return 0;
		} else if (!strcmp(a, "--json")) {
			o.json = true;
		} else if (!strcmp(a, "--quiet")) {
			o.quiet = true;
		} else if (!strcmp(a, "--eager-map")) {
			o.eager = true;
		} else if (!strcmp(a, "--check")) {
			o.check = true;
		} else if (!strcmp(a, "--folio")) {
			if (!val || (strcmp(val, "4K") && strcmp(val, "2M")))
				return bad_usage("--folio wants 4K or 2M, not '%s'",
						 val ? val : "");
			o.folio = strcmp(val, "2M") ? 0 : GMEM_FLAG_HUGE_2M;
			i++;
		} else if (!strcmp(a, "--contract")) {
			if (!val || (strcmp(val, "split") && strcmp(val, "legacy")))
				return bad_usage("--contract wants split or legacy, not '%s'",
						 val ? val : "");
			o.legacy = !strcmp(val, "legacy");
			i++;
		} else if (!strcmp(a, "--arch")) {
			if (!val)
				return bad_usage("%s needs a value", a);
			o.arch = -2;
			for (int k = 0; k < 4; k++)
				if (!strcmp(val, arches[k]))
					o.arch = k;
			if (!strcmp(val, "all"))
				o.arch = -1;
			if (o.arch == -2)
				return bad_usage("unknown arch '%s'", val);
			i++;
		} else if (!strcmp(a, "--vcpus")) {
			if (!parse_uint(val, VM_MAX_VCPUS, &n) || !n)
				return bad_usage("--vcpus wants 1..8, not '%s'", val ? val : "");
			o.vcpus = (int)n;
			i++;
		} else if (!strcmp(a, "--iterations")) {
			if (!parse_uint(val, 100000000, &n))
				return bad_usage("--iterations wants a number, not '%s'", val ? val : "");
			o.iterations = (unsigned int)n;
			i++;
		} else if (!strcmp(a, "--policy")) {
			if (!val || (strcmp(val, "convert") && strcmp(val, "refuse")))
				return bad_usage("--policy wants convert or refuse, not '%s'",
						 val ? val : "");
			o.refuse = !strcmp(val, "refuse");
			i++;
		} else {
			return bad_usage("unknown option '%s'", a);
		}
	}
	if (o.check && o.vcpus > 1)
		return bad_usage("%s runs with one vCPU only", "--check");
	for (int k = 0; k < 4; k++) {
		int ret;

		if (o.arch >= 0 && k != o.arch)
			continue;
		ret = run_arch(&o, k);
		if (ret == EXIT_SKIP)
			return EXIT_SKIP;
		if (ret)
			status = 1;
	}
	return status;
}
