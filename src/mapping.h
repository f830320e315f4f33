/* SPDX-License-Identifier: MIT */
/*
 * Host mappings of files (mapping.c): gmem_mmap, gmem_munmap, and the fences
 * that keep private pages out of reach in every one of them. Locks: lock.h.
 */
#ifndef GMEM_MAPPING_H
#define GMEM_MAPPING_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct fence_map;
struct gmem_file;
struct hm_entry;

/*
 * The chunk fences of a mapping that shows at least one 2 MiB chunk of its
 * file (fence.h): a bit per chunk of addresses from @base, set while the
 * chunk is fenced whole, and where the chunks map back from: the pool
 * memfd @pool_fd (checked by @dev and @ino in a fork child, which may have
 * closed it), the file's window at @base_pfn. Changed with the mapping,
 * under the file's mappings_lock (in a fork child, under hm_lock).
 */
struct mapping_chunks {
	uintptr_t base;
	size_t nwords;
	uint64_t base_pfn;
	dev_t dev;
	ino_t ino;
	int pool_fd;
	bool huge;		/* MADV_HUGEPAGE: a huge file */
	uint64_t whole[];
};

struct host_mapping {
	/* In the file's tree (mapping_tree.c), under its mappings_lock. */
	struct host_mapping *left, *right;
	uint64_t subtree_end;		/* the last file page below, plus one */
	struct host_mapping *next_all;	/* in the process's list */
	uint8_t *addr;
	size_t len;
	uint64_t pgoff;		/* file page at addr */
	uint64_t file_pages;	/* pages before the end of the file */
	int prot;
	struct mapping_chunks *chunks;	/* NULL: guards only */
	/*
	 * Inherited through fork: @file is the parent's, a dead copy here; the
	 * record only remembers where the mapping is, for munmap and for the
	 * parent's shootdowns.
	 */
	bool foreign;
	uint64_t uid;		/* the file's, unique across processes */
	struct hm_entry *hm;	/* sigbus.c: the signal handlers' view of it */
	struct gmem_file *file;
};

/* Every host mapping of the process (the list of records, and sigbus.c's table). */
extern pthread_mutex_t all_mappings_lock;

/*
 * The tree of a file's mappings (mapping_tree.c). mapping_tree_each calls
 * @fn on every mapping that shows a page of [start, end), in file order,
 * and stops at the first nonzero return, which it returns.
 */
void mapping_tree_insert(struct host_mapping **root, struct host_mapping *m);
void mapping_tree_remove(struct host_mapping **root, struct host_mapping *m);
int mapping_tree_each(struct host_mapping *root, uint64_t start, uint64_t end,
		      int (*fn)(struct host_mapping *m, void *arg), void *arg);

/*
 * For check mode: a mark of the changes to host mappings so far
 * (MAPPING_CHANGING while one is under way), and whether one began since.
 */
#define MAPPING_CHANGING	UINT64_MAX
uint64_t mapping_changes_mark(void);
bool mapping_changed_since(uint64_t mark);

void mapping_fence_map(const struct host_mapping *m, struct fence_map *fm,
		       bool check_fd);
void mapping_fork_prepare(void);
void mapping_fork_parent(void);
void mapping_fork_child(bool registered);
void mapping_forget_unmapped(void);
int mapping_revoke(struct gmem_file *file, uint64_t start, uint64_t end);
void mapping_restore(struct gmem_file *file, uint64_t start, uint64_t end);

#endif
