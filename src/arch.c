// SPDX-License-Identifier: MIT
/*
 * The engine's side of the hook contract: every call into a backend goes
 * through here. Each function is named after the hook it calls and is called
 * exactly where the kernel calls that hook; it picks the hook the VM's
 * contract names (the split one, or the legacy single invalidate), skips
 * hooks the arch does not opt into, and reports the call to a tracer.
 */
#include <string.h>

#include "common.h"
#include "arch.h"
#include "handle.h"
#include "vm.h"

extern const struct gmem_arch gmem_arch_sw, gmem_arch_snp, gmem_arch_tdx,
	gmem_arch_pkvm;

static const struct gmem_arch *const arches[] = {
	&gmem_arch_sw, &gmem_arch_snp, &gmem_arch_tdx, &gmem_arch_pkvm,
};

const struct gmem_arch *arch_find(const char *name)
{
	for (size_t i = 0; i < sizeof(arches) / sizeof(arches[0]); i++)
		if (!strcmp(arches[i]->name, name))
			return arches[i];
	return NULL;
}

#define NONE	(~0ULL)

static void trace(struct gmem_vm *vm, const char *hook, const char *path,
		  uint64_t pfn, uint64_t gfn, uint64_t nr, int ret)
{
	gmem_hook_fn fn = atomic_load_explicit(&vm->hook_fn,
					       memory_order_acquire);
	struct gmem_hook_call call = {
		.hook = hook, .path = path, .pfn = pfn, .gfn = gfn, .nr = nr,
		.ret = ret,
	};

	if (fn)
		fn(atomic_load_explicit(&vm->hook_arg, memory_order_relaxed),
		   &call);
}

int arch_make_private(struct gmem_vm *vm, uint64_t gfn, uint64_t pfn,
		      uint64_t nr)
{
	int ret;

	if (!vm->arch->make_private)
		return 0;
	ret = vm->arch->make_private(vm, gfn, pfn, nr);
	trace(vm, "make_private", "fault", pfn, gfn, nr, ret);
	return ret;
}

/*
 * The free path. Under the legacy contract the one invalidate hook runs here,
 * with nothing to tell it that the frames are leaving for good.
 */
void arch_reclaim(struct gmem_vm *vm, uint64_t pfn, uint64_t nr)
{
	if (vm_legacy(vm)) {
		if (!vm->arch->legacy_invalidate)
			return;
		vm->arch->legacy_invalidate(vm->pool, pfn, pfn + nr);
		trace(vm, "invalidate", "free", pfn, NONE, nr, 0);
	} else if (vm->arch->reclaim) {
		vm->arch->reclaim(vm->pool, pfn, nr);
		trace(vm, "reclaim", "free", pfn, NONE, nr, 0);
	}
}

/* Does to-shared conversion owe the arch a folio walk at all? */
bool arch_wants_make_shared(const struct gmem_vm *vm)
{
	return vm_legacy(vm) ? vm->arch->legacy_invalidate != NULL
			     : vm->arch->make_shared != NULL;
}

/*
 * To-shared conversion, one contiguous pfn run. Under the legacy contract the
 * same invalidate hook as on the free path, again with no reason given.
 */
void arch_make_shared(struct gmem_vm *vm, uint64_t pfn, uint64_t nr)
{
	if (vm_legacy(vm)) {
		vm->arch->legacy_invalidate(vm->pool, pfn, pfn + nr);
		trace(vm, "invalidate", "conversion", pfn, NONE, nr, 0);
	} else {
		vm->arch->make_shared(vm->pool, pfn, nr);
		trace(vm, "make_shared", "conversion", pfn, NONE, nr, 0);
	}
}

void arch_invalidate_range(struct gmem_vm *vm, const struct memslot *slot,
			   uint64_t gfn_start, uint64_t gfn_end,
			   unsigned int filter)
{
	if (!vm->arch->invalidate_range)
		return;
	vm->arch->invalidate_range(vm, slot, gfn_start, gfn_end, filter);
	trace(vm, "invalidate_range", "invalidation", NONE, gfn_start,
	      gfn_end - gfn_start, 0);
}

int arch_post_populate(struct gmem_vm *vm, uint64_t gfn, uint64_t pfn)
{
	int ret;

	if (!vm->arch->post_populate)
		return 0;
	ret = vm->arch->post_populate(vm, gfn, pfn);
	trace(vm, "post_populate", "populate", pfn, gfn, 1, ret);
	return ret;
}

/* Largest stage-2 level for a private page: 0 = 4 KiB, 1 = 2 MiB, 2 = 1 GiB. */
int arch_max_mapping_level(struct gmem_vm *vm, uint64_t pfn, int level)
{
	int max;

	if (!vm->arch->max_mapping_level)
		return level;
	max = vm->arch->max_mapping_level(vm, pfn);
	trace(vm, "max_mapping_level", "fault", pfn, NONE, 1, max);
	return MIN(level, max);
}

/* pKVM's share/unshare at EL2, which the guest's hypercall made first. */
void arch_guest_convert(struct gmem_vm *vm, uint64_t pfn, uint64_t nr,
			bool to_private)
{
	if (!vm->arch->guest_convert)
		return;
	vm->arch->guest_convert(vm, pfn, nr, to_private);
	trace(vm, to_private ? "guest_convert(unshare)" : "guest_convert(share)",
	      "conversion", pfn, NONE, nr, 0);
}

GMEM_API int gmem_vm_trace_hooks(int h, gmem_hook_fn fn, void *arg)
{
	KEEP_ERRNO();
	struct gmem_vm *vm;
	int ret = obj_get(h, OBJ_VM, "gmem_vm_trace_hooks", (void **)&vm);

	if (ret)
		return ret;
	atomic_store_explicit(&vm->hook_fn, NULL, memory_order_release);
	atomic_store_explicit(&vm->hook_arg, arg, memory_order_relaxed);
	atomic_store_explicit(&vm->hook_fn, fn, memory_order_release);
	vm_put(vm);
	return 0;
}
