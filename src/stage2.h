/* SPDX-License-Identifier: MIT */
/*
 * Stage-2: a VM's gfn -> (pfn, private) table, shaped like a four-level
 * EPT/NPT so huge entries fit later. Installs run in parallel under the VM's
 * mmu_lock held shared (compare-and-swap on entries and tables); zaps run
 * under it exclusive.
 */
#ifndef GMEM_STAGE2_H
#define GMEM_STAGE2_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define S2_LEVELS	4
#define S2_BITS		9
#define S2_MAX_GFN	(1ULL << (S2_LEVELS * S2_BITS))	/* 48-bit GPA */

#define S2_ZAP_SHARED	(1U << 0)
#define S2_ZAP_PRIVATE	(1U << 1)
#define S2_ZAP_ALL	(S2_ZAP_SHARED | S2_ZAP_PRIVATE)

struct s2_table;

struct stage2 {
	struct s2_table *root;
	atomic_uint_least64_t tables;	/* tables allocated, for stats */
};

struct s2_entry {
	uint64_t pfn;
	bool private;
	int level;
};

int s2_init(struct stage2 *s2);
void s2_destroy(struct stage2 *s2);
int s2_map(struct stage2 *s2, uint64_t gfn, uint64_t pfn, bool private);
bool s2_lookup(struct stage2 *s2, uint64_t gfn, struct s2_entry *e);
uint64_t s2_zap(struct stage2 *s2, uint64_t start, uint64_t end,
		unsigned int filter);
/* Calls @fn for every mapped gfn; stops early if it returns non-zero. */
int s2_walk(struct stage2 *s2, int (*fn)(uint64_t gfn,
		const struct s2_entry *e, void *arg), void *arg);

#endif
