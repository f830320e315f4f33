/* SPDX-License-Identifier: MIT */
/*
 * model.h - what the parser of the scenario language (parse.c)
 * makes of a text and the executor (execute.c) reads: the objects a
 * scenario names, and its commands with their arguments and expectations.
 * Private to the files of "gmem run".
 */
#ifndef GMEM_SCENARIO_MODEL_H
#define GMEM_SCENARIO_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gmem.h"
#include "scenario.h"

#define COUNT(a)	(sizeof(a) / sizeof((a)[0]))
#define PAGE		GMEM_PAGE_SIZE
#define MAX_NAME	32
#define MAX_XFER	(1ULL << 20)	/* bytes one read or write moves */
#define MAX_POPULATE	(16ULL << 20)	/* bytes one populate copies */
#define BIT(x)		(1U << (x))

enum obj_kind { OBJ_VM, OBJ_FILE, OBJ_MAP };

struct scn_obj {
	char name[MAX_NAME + 1];
	enum obj_kind kind;
	int line;
};

enum op {
	OP_VM, OP_FILE, OP_BIND, OP_UNBIND, OP_MAP, OP_UNMAP, OP_CLOSE,
	OP_CONVERT, OP_PUNCH, OP_ALLOCATE, OP_PIN, OP_UNPIN,
	OP_GREAD, OP_GWRITE, OP_GFAULT, OP_HREAD, OP_HWRITE, OP_POPULATE,
	OP_XATTR, OP_XSTATE, OP_XVIOL, OP_XSTAGE2,
};

enum key {
	K_ARCH, K_CONTRACT, K_VM, K_FILE, K_SIZE, K_SLOT, K_GPA, K_OFFSET,
	K_LEN, K_DATA, K_FILL, K_PROT, K_HUGE, K_NKEYS
};

enum flag {
	F_CHECK, F_MMAP, F_SHARED, F_PRIVATE, F_INPLACE, F_WRITE, F_MAPPED,
	F_UNMAPPED, F_NFLAGS
};

enum ex_kind { EX_NONE, EX_OK, EX_ERROR, EX_EXIT, EX_DATA, EX_ZERO, EX_FAULT };

/* Positional object of a command. */
enum pos { P_DEF_VM, P_DEF_FILE, P_DEF_MAP, P_VM, P_FILE, P_MAP, P_VM_OR_FILE };

struct spec {
	const char *word, *sub;
	enum op op;
	enum pos pos;
	unsigned keys, required;	/* BIT(K_*) */
	unsigned flags;			/* BIT(F_*) */
	unsigned expects;		/* BIT(EX_*); 0: no trailing expect */
};

#define PS	(BIT(F_PRIVATE) | BIT(F_SHARED))

struct expect {
	enum ex_kind kind;
	int col;
	int err;			/* EX_ERROR */
	bool has_offset;
	uint64_t offset;
	int exit_private;		/* EX_EXIT: -1 either, 0 shared, 1 private */
	bool has_gpa;
	uint64_t gpa;
	char *data;			/* EX_DATA */
	size_t data_len;
	int sig;			/* EX_FAULT: 0 any */
};

struct scn_cmd {
	int line, col;
	const struct spec *spec;
	int obj;			/* positional object */
	int vm, file;			/* vm=, file= */
	uint64_t v[K_NKEYS];		/* numeric values */
	unsigned has, flags;
	char *arch;
	bool legacy;
	int prot;
	uint64_t huge;			/* GMEM_FLAG_HUGE_* from huge= */
	char *data;			/* data= bytes, or the expect state text */
	size_t data_len;
	bool more;			/* expect violations >N */
	char *text;			/* the source line, for the trace */
	struct expect ex;
};

/* The name of an errno value, "EINVAL", or "E?" for one the language lacks. */
const char *errno_name(int err);

/* The index of @w among the @n @names, or -1. */
int lookup(const char *const *names, int n, const char *w);

#endif
