// SPDX-License-Identifier: MIT
/*
 * gmem vm: the vCPU loop and the exits every memory path shares. Port I/O
 * carries the guest's console and its hypercalls (tools/vm/guest/abi.h); a
 * hypercall that touches memory goes to the memory path (struct
 * vm_memory), as do KVM_EXIT_MMIO, emulation failures and memory faults.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vm.h"
#include "kvm/uapi.h"

void vmm_stop(struct vmm *m, const char *fmt, ...)
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
	printf("%s: vcpu%d: %s\n", vm_arches[m->arch], v->id, v->line);
	fflush(stdout);
	pthread_mutex_unlock(&m->console_lock);
}

/* -------------------------------------------------------- guest memory */

void vm_account(struct vcpu *v, uint64_t t0)
{
	if (v->in_bench)
		atomic_fetch_add(&v->vmm->call_ns, now_ns() - t0);
}

bool vm_ram_range(uint64_t gpa, uint64_t size)
{
	return size && gpa % VM_PAGE == 0 && size % VM_PAGE == 0 &&
	       gpa < VM_RAM_SIZE && size <= VM_RAM_SIZE - gpa;
}

/* The file offset is the gpa: RAM is one file bound at 0. */
int vm_convert(struct vcpu *v, uint64_t gpa, uint64_t size, bool private)
{
	struct vmm *m = v->vmm;
	uint64_t t0;
	int ret;

	if (!vm_ram_range(gpa, size))
		return -EINVAL;
	t0 = now_ns();
	ret = m->mem->convert(m, gpa, size, private);
	vm_account(v, t0);
	if (ret)
		return ret;
	atomic_fetch_add(&m->conversions, size / VM_PAGE);
	return 0;
}

/* ---------------------------------------------------------- hypercalls */

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
		ret = vm_convert(v, a, b, c == VM_MAP_PRIVATE);
		if (ret)
			return ret;
		/* The benchmark rates the guest's own requests. */
		if (v->in_bench)
			atomic_fetch_add(&m->bench_conversions, b / VM_PAGE);
		if (m->mem->converted)
			m->mem->converted(v, a, b, c == VM_MAP_PRIVATE);
		return 0;
	case VM_HC_PUNCH:
		if (!vm_ram_range(a, b))
			return -EINVAL;
		return m->mem->punch(m, a, b);
	case VM_HC_HOST_READ:
		if (a % sizeof(word) || a >= VM_RAM_SIZE)
			return -EINVAL;
		ret = m->mem->host_access(m, a, &word, false);
		return ret ? ret : word == b;
	case VM_HC_HOST_WRITE:
		if (a % sizeof(word) || a >= VM_RAM_SIZE)
			return -EINVAL;
		word = b;
		return m->mem->host_access(m, a, &word, true);
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

/* ------------------------------------------------------------- the loop */

/*
 * KVM_RUN failed. EFAULT with exit_reason KVM_EXIT_MEMORY_FAULT is not a
 * failure but an exit (the only one that comes with -1): the guest made an
 * access its memory's attributes do not allow, and the memory path decides.
 */
static int run_failed(struct vcpu *v, int err)
{
	struct vmm *m = v->vmm;

	if (err == EFAULT && v->run->exit_reason == GK_EXIT_MEMORY_FAULT &&
	    m->mem->memory_fault) {
		atomic_fetch_add(&m->exits, 1);
		return m->mem->memory_fault(v);
	}
	vmm_stop(m, "vcpu%d: KVM_RUN: %s", v->id, strerror(err));
	return -1;
}

void *vcpu_loop(void *arg)
{
	struct vcpu *v = arg;
	struct vmm *m = v->vmm;

	while (!v->done && !atomic_load(&m->stop)) {
		int ret = ioctl(v->fd, KVM_RUN, 0);

		if (ret < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			if (run_failed(v, errno))
				break;
			continue;
		}
		atomic_fetch_add(&m->exits, 1);
		if (v->run->exit_reason != KVM_EXIT_INTERNAL_ERROR)
			v->fetch_retries = 0;
		switch (v->run->exit_reason) {
		case KVM_EXIT_IO:
			ret = handle_io(v);
			break;
		case KVM_EXIT_MMIO:
			ret = m->mem->mmio(v);
			break;
		case KVM_EXIT_HLT:
			vmm_stop(m, "vcpu%d: guest halted", v->id);
			ret = -1;
			break;
		case KVM_EXIT_INTERNAL_ERROR:
			if (m->mem->internal_error) {
				ret = m->mem->internal_error(v);
				break;
			}
			vmm_stop(m, "vcpu%d: KVM internal error, suberror %u", v->id,
				 v->run->internal.suberror);
			ret = -1;
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
