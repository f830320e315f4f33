// SPDX-License-Identifier: MIT
/*
 * libgmem-kvm, black box: a real guest. A SW_PROTECTED VM runs a tiny
 * real-mode guest (hand-assembled below) from guest_memfd memory; it reads
 * or writes one 32-bit word at the gpa in BX and reports it with "out" to a
 * port (KVM_EXIT_IO: a guest vmcall never exits on this host). The tests
 * check what the guest sees across conversion, punch and the file's end in
 * both attribute models, the memory-fault exits of the per-VM model, what
 * each arch does to content on conversion, and a vCPU running while another
 * thread converts its page a thousand times. Each runs under gmem exec
 * once per configuration below (tests/kvm_util_min.h).
 *
 * Memory: slot 0, a guest_memfd slot over gpa [0, 32 KiB): code at gpa 0,
 * the data word at DATA. In place the file is MMAP|INIT_SHARED and the host
 * writes code and data through its mapping; per VM the file has no flags
 * and shared pages are the slot's userspace_addr, as released kernels do.
 * Some tests put the code in a plain slot instead (the file may go away).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "kvm_util_min.h"

static const struct kt_config configs[] = {
	{ "in-place", "sw", "", { NULL } },
	{ "in-place", "snp", "", { NULL } },
	{ "in-place", "tdx", "", { NULL } },
	{ "in-place", "pkvm", "", { NULL } },
	{ "in-place", "pkvm", "", { "--contract", "legacy", NULL } },
	{ "per-vm", "sw", "", { NULL } },
	{ "per-vm", "snp", "", { NULL } },
	{ "per-vm", "tdx", "", { NULL } },
	{ "per-vm", "pkvm", "", { NULL } },
};
KT_DRIVER(configs, NULL)

#define SW	GK_X86_SW_PROTECTED_VM
#define MMAP	GK_GUEST_MEMFD_FLAG_MMAP
#define SHARED	GK_GUEST_MEMFD_FLAG_INIT_SHARED
#define GMEM	GK_MEM_GUEST_MEMFD
#define PRIV	GK_MEMORY_ATTRIBUTE_PRIVATE

#define NPAGES	8
#define DATA	0x1000ULL	/* the data page's gpa */
#define NOSLOT	0xc000ULL	/* a gpa no memslot covers */
#define PORT_READ	0x10
#define PORT_WRITE	0x11

/*
 * Real mode, CS = DS = 0:
 *   0x00  66 8b 07   mov eax, [bx]
 *   0x03  66 e7 10   out 0x10, eax
 *   0x06  eb f8      jmp 0x00
 *   0x10  66 89 07   mov [bx], eax
 *   0x13  66 e7 11   out 0x11, eax
 *   0x16  f4         hlt
 *   0x17  eb fe      jmp $
 */
#define ENTRY_READ	0x00
#define ENTRY_WRITE	0x10
static const uint8_t guest_code[] = {
	0x66, 0x8b, 0x07, 0x66, 0xe7, PORT_READ, 0xeb, 0xf8,
	0, 0, 0, 0, 0, 0, 0, 0,
	0x66, 0x89, 0x07, 0x66, 0xe7, PORT_WRITE, 0xf4, 0xeb, 0xfe,
};

struct guest {
	int kvm, vm, vcpu, fd;
	struct kvm_run *run;
	size_t run_size;
	uint64_t gmem_gpa;	/* where the guest_memfd slot starts */
	uint64_t size;		/* of the file and its slot */
	uint8_t *gm;		/* the guest_memfd's mapping (MMAP files) */
	uint8_t *shm;		/* the slot's userspace_addr (per VM) */
	uint8_t *code;		/* the plain code page, if the code is there */
};

static bool arch_is(const char *a)
{
	return !strcmp(kt_arch(), a);
}

/* Does a private->shared conversion keep what the guest wrote? */
static bool keeps_to_shared(void)
{
	return arch_is("sw") || (arch_is("pkvm") && !kt_legacy());
}

static void vcpu_setup(struct guest *g)
{
	struct kvm_sregs sregs;

	g->vcpu = (int)ASSERT_OK(ioctl(g->vm, KVM_CREATE_VCPU, 0));
	g->run_size = (size_t)ASSERT_OK(ioctl(g->kvm, KVM_GET_VCPU_MMAP_SIZE, 0));
	g->run = mmap(NULL, g->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, g->vcpu, 0);
	ASSERT_TRUE(g->run != MAP_FAILED);
	ASSERT_EQ(ioctl(g->vcpu, KVM_GET_SREGS, &sregs), 0);
	sregs.cs.base = sregs.ds.base = sregs.es.base = sregs.ss.base = 0;
	sregs.cs.selector = sregs.ds.selector = sregs.es.selector = sregs.ss.selector = 0;
	sregs.cr0 &= ~1ULL;		/* real mode */
	ASSERT_EQ(ioctl(g->vcpu, KVM_SET_SREGS, &sregs), 0);
}

/*
 * A SW_PROTECTED VM with a guest_memfd slot of NPAGES at gpa 0 (file flags
 * @flags; 0 picks the model's usual), or, with @code_plain, the code in a
 * plain slot at gpa 0 and the guest_memfd slot at gpa 0x1000.
 */
static struct guest guest_new(uint64_t flags, bool code_plain)
{
	struct guest g = { .kvm = kt_kvm(), .fd = -1 };
	uint8_t *code_at;

	if (!flags)
		flags = kt_per_vm() ? 0 : MMAP | SHARED;
	g.vm = kt_vm(g.kvm, SW);
	g.gmem_gpa = code_plain ? PG : 0;
	g.size = (NPAGES - (code_plain ? 1 : 0)) * PG;
	g.fd = kt_gmem(g.vm, g.size, flags);
	if (flags & MMAP)
		g.gm = kt_map(g.fd, g.size, 0);
	if (kt_per_vm()) {
		g.shm = mmap(NULL, g.size, PROT_READ | PROT_WRITE,
			     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		ASSERT_TRUE(g.shm != MAP_FAILED);
	}
	ASSERT_EQ(kt_region(g.vm, 0, GMEM, g.gmem_gpa, g.size, g.shm ? g.shm : g.gm,
			    g.fd, 0), 0);
	if (code_plain) {
		g.code = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		ASSERT_TRUE(g.code != MAP_FAILED);
		ASSERT_EQ(kt_region(g.vm, 1, 0, 0, PG, g.code, -1, 0), 0);
		code_at = g.code;
	} else {
		/* The code page is shared: the host writes it through its mapping. */
		code_at = g.shm ? g.shm : g.gm;
		ASSERT_TRUE(code_at);
	}
	memcpy(code_at, guest_code, sizeof(guest_code));
	vcpu_setup(&g);
	return g;
}

static void guest_free(struct guest *g)
{
	munmap(g->run, g->run_size);
	close(g->vcpu);
	if (g->gm)
		munmap(g->gm, g->size);
	if (g->shm)
		munmap(g->shm, g->size);
	if (g->code)
		munmap(g->code, PG);
	if (g->fd >= 0)
		close(g->fd);
	close(g->vm);
	close(g->kvm);
}

/* The host's shared view of @gpa: the file's mapping, or userspace_addr. */
static volatile uint32_t *host_word(struct guest *g, uint64_t gpa)
{
	uint8_t *base = g->shm ? g->shm : g->gm;

	ASSERT_TRUE(base);
	return (volatile uint32_t *)(base + (gpa - g->gmem_gpa));
}

static uint64_t file_off(struct guest *g, uint64_t gpa)
{
	return gpa - g->gmem_gpa;
}

/* Make the page at @gpa private or shared, the model's way. */
static void convert(struct guest *g, uint64_t gpa, bool private)
{
	if (kt_per_vm())
		ASSERT_EQ(kt_attr(g->vm, gpa, PG, private ? PRIV : 0), 0);
	else
		ASSERT_EQ(kt_attr2(g->fd, file_off(g, gpa), PG, private ? PRIV : 0), 0);
}

static int vcpu_run(struct guest *g)
{
	int r;

	do
		r = ioctl(g->vcpu, KVM_RUN, 0);
	while (r < 0 && errno == EINTR);
	return r;
}

static void enter_at(struct guest *g, uint64_t rip, uint64_t bx, uint32_t ax)
{
	struct kvm_regs regs = { .rip = rip, .rbx = bx, .rax = ax, .rflags = 0x2 };

	ASSERT_EQ(ioctl(g->vcpu, KVM_SET_REGS, &regs), 0);
}

/* The exit is the guest's "out" of a word to @port; returns the word. */
static uint32_t io_word(struct guest *g, int ret, uint16_t port)
{
	struct kvm_run *run = g->run;
	uint32_t v;

	if (ret)
		printf("#   KVM_RUN: %s, exit_reason %u\n", kt_errname(errno), run->exit_reason);
	ASSERT_EQ(ret, 0);
	if (run->exit_reason != KVM_EXIT_IO)
		printf("#   exit_reason %u (internal suberror %u)\n", run->exit_reason,
		       run->internal.suberror);
	ASSERT_EQ(run->exit_reason, KVM_EXIT_IO);
	ASSERT_EQ(run->io.port, port);
	ASSERT_EQ(run->io.direction, KVM_EXIT_IO_OUT);
	ASSERT_EQ(run->io.size, 4);
	ASSERT_EQ(run->io.count, 1);
	memcpy(&v, (uint8_t *)run + run->io.data_offset, 4);
	return v;
}

static uint32_t guest_read(struct guest *g, uint64_t gpa)
{
	enter_at(g, ENTRY_READ, gpa, 0);
	return io_word(g, vcpu_run(g), PORT_READ);
}

static void guest_write(struct guest *g, uint64_t gpa, uint32_t v)
{
	enter_at(g, ENTRY_WRITE, gpa, v);
	ASSERT_EQ(io_word(g, vcpu_run(g), PORT_WRITE), v);
}

/* KVM_RUN failed with EFAULT and a KVM_EXIT_MEMORY_FAULT for @gpa's page. */
static void expect_memory_fault(struct guest *g, int ret, uint64_t gpa, uint64_t flags)
{
	struct gk_memory_fault *mf = gk_run_memory_fault(g->run);
	int err = errno;

	if (ret != -1 || err != EFAULT)
		printf("#   KVM_RUN: %d (%s), exit_reason %u\n", ret,
		       ret ? kt_errname(err) : "-", g->run->exit_reason);
	ASSERT_EQ(ret, -1);
	ASSERT_EQ(err, EFAULT);
	ASSERT_EQ(g->run->exit_reason, GK_EXIT_MEMORY_FAULT);
	ASSERT_EQ(mf->gpa, gpa & ~(PG - 1));
	ASSERT_EQ(mf->size, PG);
	ASSERT_EQ(mf->flags, flags);
}

/* --------------------------------------------------------- the tests */

KTEST(guest_sees_what_host_wrote, "")
{
	struct guest g = guest_new(0, false);

	*host_word(&g, DATA) = 0x11223344;
	ASSERT_EQ(guest_read(&g, DATA), 0x11223344);
	*host_word(&g, DATA) = 0x55667788;
	ASSERT_EQ(guest_read(&g, DATA), 0x55667788);
	ASSERT_EQ(guest_read(&g, DATA + 0x7f0), 0);
	ASSERT_EQ(guest_read(&g, 3 * PG + 12), 0);
	/* And the host sees what the guest wrote to shared memory. */
	guest_write(&g, 4 * PG + 8, 0xcafef00d);
	ASSERT_EQ(*host_word(&g, 4 * PG + 8), 0xcafef00d);
	ASSERT_EQ(guest_read(&g, 4 * PG + 8), 0xcafef00d);
	guest_free(&g);
}

/* In place: the page the guest reads becomes private under it. */
KTEST(in_place_private_page_guest_reads_host_sigbus, "")
{
	struct guest g;

	KT_ONLY(!kt_per_vm());
	g = guest_new(0, false);
	*host_word(&g, DATA) = 0x0badc0de;
	ASSERT_EQ(guest_read(&g, DATA), 0x0badc0de);
	convert(&g, DATA, true);
	/* The guest still reads it (TDX accepts the page zeroed). */
	ASSERT_EQ(guest_read(&g, DATA), arch_is("tdx") ? 0 : 0x0badc0de);
	ASSERT_SIGBUS_AT((uint8_t *)host_word(&g, DATA) + 4, false);
	ASSERT_SIGBUS_AT((uint8_t *)host_word(&g, DATA), true);
	/* The code page next to it is still the host's. */
	ASSERT_EQ(g.gm[0], guest_code[0]);
	guest_write(&g, DATA + 4, 0x600d600d);
	ASSERT_EQ(guest_read(&g, DATA + 4), 0x600d600d);
	convert(&g, DATA, false);
	ASSERT_EQ(*host_word(&g, DATA + 4), keeps_to_shared() ? 0x600d600d : 0);
	ASSERT_EQ(guest_read(&g, DATA + 4), keeps_to_shared() ? 0x600d600d : 0);
	guest_free(&g);
}

/*
 * Per VM (a file without MMAP): private pages come from the guest_memfd,
 * shared ones from userspace_addr, so the two are different memory.
 */
KTEST(per_vm_private_and_shared_are_different_memory, "")
{
	struct guest g;

	KT_ONLY(kt_per_vm());
	g = guest_new(0, false);
	*host_word(&g, DATA) = 0x5ca1ab1e;
	ASSERT_EQ(guest_read(&g, DATA), 0x5ca1ab1e);
	convert(&g, DATA, true);
	ASSERT_EQ(guest_read(&g, DATA), 0);
	guest_write(&g, DATA, 0xfeedface);
	ASSERT_EQ(guest_read(&g, DATA), 0xfeedface);
	ASSERT_EQ(*host_word(&g, DATA), 0x5ca1ab1e);
	convert(&g, DATA, false);
	ASSERT_EQ(guest_read(&g, DATA), 0x5ca1ab1e);
	convert(&g, DATA, true);
	if (arch_is("sw") || arch_is("pkvm"))
		ASSERT_EQ(guest_read(&g, DATA), 0xfeedface);
	else
		printf("# %s: private word after a round trip through shared: %#x\n",
		       kt_arch(), guest_read(&g, DATA));
	guest_free(&g);
}

KTEST(punch_guest_reads_zero, "")
{
	struct guest g = guest_new(0, false);

	*host_word(&g, DATA) = 0x77777777;
	ASSERT_EQ(guest_read(&g, DATA), 0x77777777);
	if (!kt_per_vm()) {
		/* A shared page punched: guest and host read zero. */
		ASSERT_EQ(fallocate(g.fd, KT_PUNCH, file_off(&g, DATA), PG), 0);
		ASSERT_EQ(guest_read(&g, DATA), 0);
		ASSERT_EQ(*host_word(&g, DATA), 0);
		*host_word(&g, DATA) = 0x88888888;
		ASSERT_EQ(guest_read(&g, DATA), 0x88888888);
	}
	/* A private page the guest wrote, punched: zero. */
	convert(&g, DATA, true);
	guest_write(&g, DATA, 0x99999999);
	ASSERT_EQ(guest_read(&g, DATA), 0x99999999);
	ASSERT_EQ(fallocate(g.fd, KT_PUNCH, file_off(&g, DATA), PG), 0);
	ASSERT_EQ(guest_read(&g, DATA), 0);
	convert(&g, DATA, false);
	/* Per VM the shared page is userspace_addr's: a punch leaves it. */
	ASSERT_EQ(guest_read(&g, DATA), kt_per_vm() ? 0x77777777 : 0);
	guest_free(&g);
}

/*
 * What a private->shared conversion does to what the guest wrote: sw and
 * pkvm keep it; snp and tdx lose it, as does pkvm's legacy single hook.
 * Per VM the file is a MMAP one (its slot is served from the file for both
 * kinds, so the VM's attribute converts the file's page); it starts private
 * (no INIT_SHARED on a SW_PROTECTED VM per VM), so the code is in a plain
 * slot and only the guest looks at the page.
 */
KTEST(to_shared_content_by_arch, "")
{
	struct guest g = guest_new(kt_per_vm() ? MMAP : 0, kt_per_vm());
	/* Per VM, conversion picks the memory the guest sees and leaves the
	 * guest_memfd alone, as released kernels do: no arch acts on it. */
	uint32_t want = keeps_to_shared() || kt_per_vm() ? 0xa5a5a5a5 : 0;

	convert(&g, DATA, true);
	guest_write(&g, DATA, 0xa5a5a5a5);
	ASSERT_EQ(guest_read(&g, DATA), 0xa5a5a5a5);
	convert(&g, DATA, false);
	ASSERT_EQ(guest_read(&g, DATA), want);
	if (!kt_per_vm())
		ASSERT_EQ(*host_word(&g, DATA), want);
	guest_free(&g);
}

/* Per VM: a private access with no guest_memfd behind it. */
KTEST(per_vm_private_access_without_guest_memfd_faults, "")
{
	struct guest g;
	uint8_t *plain;

	KT_ONLY(kt_per_vm());
	g = guest_new(0, false);
	plain = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(plain != MAP_FAILED);
	ASSERT_EQ(kt_region(g.vm, 2, 0, 0x8000, 2 * PG, plain, -1, 0), 0);
	*(uint32_t *)(plain + PG + 0x24) = 0x13572468;
	ASSERT_EQ(guest_read(&g, 0x9024), 0x13572468);
	/* A plain memslot's page made private: the read exits as a memory
	 * fault, page-aligned gpa, one page, PRIVATE. */
	ASSERT_EQ(kt_attr(g.vm, 0x9000, PG, PRIV), 0);
	enter_at(&g, ENTRY_READ, 0x9024, 0);
	expect_memory_fault(&g, vcpu_run(&g), 0x9024, GK_MEMORY_EXIT_FLAG_PRIVATE);
	/* Nothing fixed: the same fault again. */
	expect_memory_fault(&g, vcpu_run(&g), 0x9024, GK_MEMORY_EXIT_FLAG_PRIVATE);
	/* Fixed: the access completes. */
	ASSERT_EQ(kt_attr(g.vm, 0x9000, PG, 0), 0);
	ASSERT_EQ(io_word(&g, vcpu_run(&g), PORT_READ), 0x13572468);
	/* A write too, and a private gpa with no memslot at all. */
	ASSERT_EQ(kt_attr(g.vm, 0x8000, PG, PRIV), 0);
	enter_at(&g, ENTRY_WRITE, 0x8ffc, 1);
	expect_memory_fault(&g, vcpu_run(&g), 0x8ffc, GK_MEMORY_EXIT_FLAG_PRIVATE);
	ASSERT_EQ(kt_attr(g.vm, 0x8000, PG, 0), 0);
	ASSERT_EQ(io_word(&g, vcpu_run(&g), PORT_WRITE), 1);
	ASSERT_EQ(*(uint32_t *)(plain + 0xffc), 1);
	/*
	 * An instruction fetched from such a page faults the same way, at
	 * the page of the instruction, with nothing left pending: once the
	 * page is shared the guest runs it.
	 */
	memcpy(plain + PG, guest_code, sizeof(guest_code));
	*host_word(&g, DATA) = 0x2468ace0;
	ASSERT_EQ(kt_attr(g.vm, 0x9000, PG, PRIV), 0);
	enter_at(&g, 0x9000 + ENTRY_READ, DATA, 0);
	expect_memory_fault(&g, vcpu_run(&g), 0x9000, GK_MEMORY_EXIT_FLAG_PRIVATE);
	expect_memory_fault(&g, vcpu_run(&g), 0x9000, GK_MEMORY_EXIT_FLAG_PRIVATE);
	ASSERT_EQ(kt_attr(g.vm, 0x9000, PG, 0), 0);
	ASSERT_EQ(io_word(&g, vcpu_run(&g), PORT_READ), 0x2468ace0);
	ASSERT_EQ(kt_attr(g.vm, NOSLOT, PG, PRIV), 0);
	enter_at(&g, NOSLOT + 0x20, 0, 0);
	expect_memory_fault(&g, vcpu_run(&g), NOSLOT, GK_MEMORY_EXIT_FLAG_PRIVATE);
	enter_at(&g, ENTRY_READ, NOSLOT + 0x10, 0);
	expect_memory_fault(&g, vcpu_run(&g), NOSLOT + 0x10, GK_MEMORY_EXIT_FLAG_PRIVATE);
	munmap(plain, 2 * PG);
	guest_free(&g);
}

/* A shared access where no memslot is: plain MMIO, in both models. */
KTEST(shared_access_without_memslot_is_mmio, "")
{
	struct guest g = guest_new(0, false);
	struct kvm_run *run = g.run;
	uint32_t v = 0x0a0b0c0d;

	enter_at(&g, ENTRY_READ, NOSLOT + 8, 0);
	ASSERT_EQ(vcpu_run(&g), 0);
	ASSERT_EQ(run->exit_reason, KVM_EXIT_MMIO);
	ASSERT_EQ(run->mmio.phys_addr, NOSLOT + 8);
	ASSERT_EQ(run->mmio.len, 4);
	ASSERT_EQ(run->mmio.is_write, 0);
	memcpy(run->mmio.data, &v, 4);
	ASSERT_EQ(io_word(&g, vcpu_run(&g), PORT_READ), v);
	guest_free(&g);
}

/*
 * The file's end: with no fd and no mapping left, its slot loses it and a
 * guest access there fails with EFAULT as a memory fault (kvm_gmem_get_pfn
 * finds no file). While a mapping is left, the file lives.
 */
KTEST(file_gone_guest_access_faults, "")
{
	struct guest g = guest_new(0, true);
	uint64_t flags = 0;

	if (kt_per_vm()) {
		/* Only private accesses use the file here. */
		convert(&g, DATA, true);
		flags = GK_MEMORY_EXIT_FLAG_PRIVATE;
	}
	guest_write(&g, DATA, 0x12121212);
	close(g.fd);
	g.fd = -1;
	if (g.gm) {
		ASSERT_EQ(guest_read(&g, DATA), 0x12121212);
		ASSERT_EQ(munmap(g.gm, g.size), 0);
		g.gm = NULL;
	}
	/* An instruction fetched from the file's page: the same fault. */
	enter_at(&g, DATA + 0x40, 0, 0);
	expect_memory_fault(&g, vcpu_run(&g), DATA, flags);
	enter_at(&g, ENTRY_READ, DATA + 0x40, 0);
	expect_memory_fault(&g, vcpu_run(&g), DATA + 0x40, flags);
	expect_memory_fault(&g, vcpu_run(&g), DATA + 0x40, flags);
	/*
	 * Deleting the slot (and, per VM, making the gpa shared) ends that:
	 * the retried access finds no memory, a plain MMIO exit. (The kernel
	 * keeps nothing pending across a memory fault: the instruction is
	 * simply executed again.)
	 */
	ASSERT_EQ(kt_region(g.vm, 0, GMEM, g.gmem_gpa, 0, 0, 0, 0), 0);
	if (kt_per_vm())
		ASSERT_EQ(kt_attr(g.vm, DATA, PG, 0), 0);
	ASSERT_EQ(vcpu_run(&g), 0);
	ASSERT_EQ(g.run->exit_reason, KVM_EXIT_MMIO);
	ASSERT_EQ(g.run->mmio.phys_addr, DATA + 0x40);
	ASSERT_EQ(g.run->mmio.is_write, 0);
	guest_free(&g);
}

/* Per VM, the shared pages of a slot whose file is gone are still
 * userspace_addr's: only private accesses needed the file. */
KTEST(per_vm_file_gone_shared_access_works, "")
{
	struct guest g;
	int r;

	KT_ONLY(kt_per_vm());
	g = guest_new(0, true);
	*host_word(&g, DATA) = 0x31415926;
	close(g.fd);
	g.fd = -1;
	enter_at(&g, ENTRY_READ, DATA, 0);
	r = vcpu_run(&g);
	ASSERT_EQ(io_word(&g, r, PORT_READ), 0x31415926);
	guest_free(&g);
}

/* dup2 over the last fd ends the file as close does. */
KTEST(file_gone_by_dup2, "")
{
	struct guest g = guest_new(0, true);
	int r;

	if (g.gm) {
		ASSERT_EQ(munmap(g.gm, g.size), 0);
		g.gm = NULL;
	}
	if (kt_per_vm())
		convert(&g, DATA, true);
	ASSERT_EQ(guest_read(&g, DATA), 0);
	ASSERT_EQ(dup2(g.kvm, g.fd), g.fd);	/* the file's last fd, replaced */
	enter_at(&g, ENTRY_READ, DATA, 0);
	r = vcpu_run(&g);
	expect_memory_fault(&g, r, DATA, kt_per_vm() ? GK_MEMORY_EXIT_FLAG_PRIVATE : 0);
	guest_free(&g);
}

/* ------------------------------------------------------- concurrency */

#define ROUNDS		1000
#define MAGIC		0xab000000u

struct race {
	struct guest *g;
	atomic_bool stop;
	atomic_uint latest;		/* highest k the host has written */
	atomic_ulong reads, zeros, stale;
	uint32_t exit_reason;		/* the unexpected exit, if any */
	char err[256];
};

static void *vcpu_loop(void *arg)
{
	struct race *r = arg;
	struct guest *g = r->g;

	while (!atomic_load(&r->stop)) {
		int ret = ioctl(g->vcpu, KVM_RUN, 0);
		uint32_t v;

		if (ret < 0 && errno == EINTR)
			continue;
		if (ret < 0 || g->run->exit_reason != KVM_EXIT_IO ||
		    g->run->io.port != PORT_READ || g->run->io.size != 4) {
			r->exit_reason = g->run->exit_reason;
			snprintf(r->err, sizeof(r->err),
				 "KVM_RUN %d (%s), exit_reason %u, port %#x, suberror %u",
				 ret, ret ? kt_errname(errno) : "-", g->run->exit_reason,
				 g->run->io.port, g->run->internal.suberror);
			break;
		}
		memcpy(&v, (uint8_t *)g->run + g->run->io.data_offset, 4);
		atomic_fetch_add(&r->reads, 1);
		if (!v) {
			atomic_fetch_add(&r->zeros, 1);
		} else if ((v & 0xff000000u) != MAGIC ||
			   (v & 0xffffff) > atomic_load(&r->latest)) {
			snprintf(r->err, sizeof(r->err), "the guest read %#x (latest %u)",
				 v, atomic_load(&r->latest));
			break;
		} else if ((v & 0xffffff) < atomic_load(&r->latest)) {
			atomic_fetch_add(&r->stale, 1);
		}
	}
	atomic_store(&r->stop, true);
	return NULL;
}

/*
 * A vCPU thread reads DATA in a loop while this thread converts the page at
 * @gpa private and back ROUNDS times and then writes a new value to DATA
 * (through the host's shared view). With @punch, every tenth round punches
 * the page while it is private. Returns the number of rounds done; the
 * vCPU thread's verdict is in @r.
 */
static unsigned race(struct race *r, struct guest *g, uint64_t gpa, bool punch)
{
	pthread_t t;
	unsigned k;

	memset(r, 0, sizeof(*r));
	r->g = g;
	*host_word(g, DATA) = MAGIC;
	enter_at(g, ENTRY_READ, DATA, 0);
	ASSERT_EQ(pthread_create(&t, NULL, vcpu_loop, r), 0);
	for (k = 1; k <= ROUNDS && !atomic_load(&r->stop); k++) {
		convert(g, gpa, true);
		if (punch && k % 10 == 3)
			ASSERT_EQ(fallocate(g->fd, KT_PUNCH, file_off(g, gpa), PG), 0);
		if (k % 2)
			sched_yield();
		convert(g, gpa, false);
		atomic_store(&r->latest, k);
		/* The guest reads it meanwhile: a relaxed atomic store. */
		__atomic_store_n((uint32_t *)host_word(g, DATA), MAGIC | k, __ATOMIC_RELAXED);
	}
	atomic_store(&r->stop, true);
	ASSERT_EQ(pthread_join(t, NULL), 0);
	printf("#   %u rounds; the guest read %lu times: %lu zero, %lu older than the last write\n",
	       k - 1, atomic_load(&r->reads), atomic_load(&r->zeros), atomic_load(&r->stale));
	if (r->err[0])
		printf("#   vCPU thread: %s\n", r->err);
	return k - 1;
}

/*
 * The data page itself converts under the running vCPU (in place the code
 * shares its guest_memfd slot; per VM it is in a plain slot, see below).
 * The guest must only ever see values the host wrote, or zero (a punch, a
 * conversion that loses content), and exit only with its own port I/O.
 */
KTEST(vcpu_runs_while_page_converts, "")
{
	static struct race r;
	struct guest g = guest_new(0, kt_per_vm());

	ASSERT_EQ(race(&r, &g, DATA, true), ROUNDS);
	ASSERT_EQ(r.err[0], 0);
	ASSERT_GT(atomic_load(&r.reads), 0);
	/* Quiet again: the guest sees the last value. */
	ASSERT_EQ(guest_read(&g, DATA), MAGIC | ROUNDS);
	guest_free(&g);
}

/*
 * Per VM, a conversion lays out again the real memslots of the slot it
 * touches; a vCPU fetching its code from that same slot meanwhile must not
 * notice (the kernel swaps memslots atomically).
 */
KTEST(per_vm_conversion_beside_running_code, "")
{
	static struct race r;
	struct guest g;
	unsigned done;

	KT_ONLY(kt_per_vm());
	g = guest_new(0, false);
	done = race(&r, &g, 5 * PG, false);
	ASSERT_EQ(r.err[0], 0);
	ASSERT_EQ(done, ROUNDS);
	guest_free(&g);
}
