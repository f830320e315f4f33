// SPDX-License-Identifier: MIT
/*
 * The layer's options (set by gmem exec in the environment), its trace of
 * every emulated call and hook, and check mode's report.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layer.h"

struct config config = {
	.arch = "sw",
	.model = MODEL_IN_PLACE,
	.cap_gmem_attributes = GK_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES_DEFAULT,
	.trace_fd = -1,
};

static int64_t violations_total;
static pthread_mutex_t trace_lock = PTHREAD_MUTEX_INITIALIZER;

static void bad_option(const char *name, const char *value)
{
	fprintf(stderr, "gmem-kvm: %s=%s is not a valid value\n", name, value);
	exit(2);
}

void config_load(void)
{
	const char *s;

	if ((s = getenv("GMEM_KVM_ARCH")) && *s) {
		if (strcmp(s, "sw") && strcmp(s, "snp") && strcmp(s, "tdx") &&
		    strcmp(s, "pkvm"))
			bad_option("GMEM_KVM_ARCH", s);
		config.arch = s;
	}
	if ((s = getenv("GMEM_KVM_CONTRACT")) && *s) {
		if (strcmp(s, "split") && strcmp(s, "legacy"))
			bad_option("GMEM_KVM_CONTRACT", s);
		config.legacy = !strcmp(s, "legacy");
	}
	if ((s = getenv("GMEM_KVM_ATTRIBUTES")) && *s) {
		if (!strcmp(s, "in-place"))
			config.model = MODEL_IN_PLACE;
		else if (!strcmp(s, "per-vm"))
			config.model = MODEL_PER_VM;
		else
			bad_option("GMEM_KVM_ATTRIBUTES", s);
	}
	if ((s = getenv("GMEM_KVM_CAP_GMEM_ATTRIBUTES")) && *s) {
		char *end;
		unsigned long v = strtoul(s, &end, 0);

		if (*end || v == 0 || v > 0xffff)
			bad_option("GMEM_KVM_CAP_GMEM_ATTRIBUTES", s);
		config.cap_gmem_attributes = (uint32_t)v;
	}
	config.check = (s = getenv("GMEM_KVM_CHECK")) && !strcmp(s, "1");
	if ((s = getenv("GMEM_KVM_TRACE")) && *s) {
		config.trace_fd = open(s, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (config.trace_fd < 0) {
			fprintf(stderr, "gmem-kvm: cannot open trace file %s: %s\n",
				s, strerror(errno));
			exit(2);
		}
	}
	if ((s = getenv("GMEM_KVM_STATUS")) && *s)
		config.status_path = s;
}

void trace(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	if (config.trace_fd < 0)
		return;
	n = snprintf(line, sizeof(line), "{\"pid\":%d,", (int)getpid());
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - n - 2, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 3)
		n = (int)sizeof(line) - 3;
	line[n++] = '}';
	line[n++] = '\n';
	/* One write per line: lines of threads and processes never mix. */
	pthread_mutex_lock(&trace_lock);
	if (write(config.trace_fd, line, n) < 0)
		config.trace_fd = -1;
	pthread_mutex_unlock(&trace_lock);
}

void trace_hook(void *arg, const struct gmem_hook_call *c)
{
	struct kvm_vm *vm = arg;

	trace("\"vm\":%d,\"hook\":\"%s\",\"path\":\"%s\",\"pfn\":%lld,\"gfn\":%lld,\"nr\":%llu,\"ret\":%d",
	      vm->fd, c->hook, c->path,
	      c->pfn == ~0ULL ? -1LL : (long long)c->pfn,
	      c->gfn == ~0ULL ? -1LL : (long long)c->gfn,
	      (unsigned long long)c->nr, c->ret);
}

/*
 * Check mode: the engine verified its invariants after the call; print what
 * is new. Caller holds no layer lock the engine could need.
 */
void check_vm(struct kvm_vm *vm, const char *op)
{
	struct gmem_violation v[8];
	int64_t n;

	if (!config.check || !vm)
		return;
	n = gmem_vm_violations(vm->gvm, v, 8);
	if (n <= vm->violations_seen)
		return;
	for (int64_t i = vm->violations_seen; i < n && i < 8; i++) {
		fprintf(stderr, "gmem-kvm: check: after %s (%s): invariant %d: %s\n",
			op, v[i].op, v[i].invariant, v[i].rule);
		trace("\"check\":\"violation\",\"after\":\"%s\",\"invariant\":%d,\"offset\":%lld,\"pfn\":%lld",
		      op, v[i].invariant,
		      v[i].offset == ~0ULL ? -1LL : (long long)v[i].offset,
		      v[i].pfn == ~0ULL ? -1LL : (long long)v[i].pfn);
	}
	__atomic_add_fetch(&violations_total, n - vm->violations_seen, __ATOMIC_RELAXED);
	vm->violations_seen = n;
}

/* At exit: tell gmem exec what check mode saw. */
void layer_report(void)
{
	FILE *f;

	if (!config.status_path)
		return;
	f = fopen(config.status_path, "a");
	if (!f)
		return;
	fprintf(f, "%d violations=%lld\n", (int)getpid(),
		(long long)__atomic_load_n(&violations_total, __ATOMIC_RELAXED));
	fclose(f);
}
