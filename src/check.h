/* SPDX-License-Identifier: MIT */
/*
 * Check mode, GMEM_VM_CHECK (check.c): check_after() verifies every
 * invariant of docs/arch.md once a call is done; the free path and
 * conversion report what only they can see.
 */
#ifndef GMEM_CHECK_H
#define GMEM_CHECK_H

#include <stdbool.h>
#include <stdint.h>

struct gmem_vm;
struct gmem_file;
struct conversion_snapshot;

int check_create(struct gmem_vm *vm);
void check_destroy(struct gmem_vm *vm);
void check_after(struct gmem_vm *vm, const char *op);
void check_violation(struct gmem_vm *vm, int invariant, uint64_t offset,
		     uint64_t pfn, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
void check_reclaimed(struct gmem_file *file, uint64_t pfn, uint64_t nr);
struct conversion_snapshot *check_snapshot(struct gmem_file *file,
					   uint64_t start, uint64_t end);
void check_conversion(struct gmem_file *file, struct conversion_snapshot *snap,
		      bool failed);

#endif
