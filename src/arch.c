// SPDX-License-Identifier: MIT
#include <string.h>

#include "internal.h"

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
