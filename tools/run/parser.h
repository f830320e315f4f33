/* SPDX-License-Identifier: MIT */
/*
 * parser.h - what the tokenizer (lex.c) and the parser (parse.c) of the
 * scenario language share: the tokens of a line and the parser's state.
 */
#ifndef GMEM_RUN_PARSER_H
#define GMEM_RUN_PARSER_H

#include <stdbool.h>
#include <stddef.h>

#include "model.h"

struct tok {
	int col, vcol;		/* of the token, of its value */
	char *key;		/* "key" of key=value, else NULL */
	char *val;		/* NUL-terminated; strings may hold NULs */
	size_t vlen;
	bool quoted;
};

struct parser {
	struct scenario *s;
	int line;
	struct tok *toks;
	int ntoks, pos;
	char *arena;
	size_t used;
};

/* Record an error at @col of the current line; returns -1. */
int perr(struct parser *p, int col, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The value of a hex digit, or -1. */
int hexval(unsigned char c);

/* Split one line into p->toks; returns 0 or -1 (perr). */
int lex_line(struct parser *p, const char *l, size_t len);

#endif
