/* SPDX-License-Identifier: MIT */
/*
 * json.h - the JSON lines every "--json" of the gmem command writes
 * (docs/json.md): a header object first, one object per result, a summary
 * object last; each has a "type", header and summary carry the schema
 * version.
 */
#ifndef GMEM_TOOLS_JSON_H
#define GMEM_TOOLS_JSON_H

#include <stdint.h>
#include <stdio.h>

/* Raised when a key changes meaning or goes; new keys keep the number. */
#define GMEM_JSON_SCHEMA	1

/* @s as a JSON string, quoted and escaped; NULL as null. */
void json_string(FILE *f, const char *s);
/* The first @n bytes of @s, as json_string. */
void json_string_n(FILE *f, const char *s, size_t n);
/* A 64-bit number, or null for ~0 ("no such page or frame"). */
void json_u64(FILE *f, uint64_t v);
/* {"type":"header","schema":N,"command":@command,"version":...}. */
void json_header(FILE *f, const char *command);

#endif
