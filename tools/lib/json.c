// SPDX-License-Identifier: MIT
/*
 * json.c - what every "--json" of the gmem command writes the same way.
 */
#include <string.h>

#include "json.h"

#ifndef GMEM_VERSION
#define GMEM_VERSION "unknown"
#endif

/* Length of the well-formed UTF-8 sequence at @s (at most @n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 :
		     s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
	uint32_t cp;

	if (!len || len > n)
		return 0;
	cp = s[0] & (0x7f >> len);
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and code points past U+10FFFF. */
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp < 0xe000) || cp > 0x10ffff)
		return 0;
	return len;
}

void json_string_n(FILE *f, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;

	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = u[i];
		size_t len;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\u%04x", c);
		else if (c < 0x80)
			fputc(c, f);
		else if ((len = utf8_len(u + i, n - i))) {
			fwrite(u + i, 1, len, f);
			i += len - 1;
		} else {
			fputs("\\ufffd", f);	/* not UTF-8: the replacement character */
		}
	}
	fputc('"', f);
}

void json_string(FILE *f, const char *s)
{
	if (s)
		json_string_n(f, s, strlen(s));
	else
		fputs("null", f);
}

void json_u64(FILE *f, uint64_t v)
{
	if (v == ~0ULL)
		fputs("null", f);
	else
		fprintf(f, "%llu", (unsigned long long)v);
}

void json_header(FILE *f, const char *command)
{
	fprintf(f, "{\"type\":\"header\",\"schema\":%d,\"command\":", GMEM_JSON_SCHEMA);
	json_string(f, command);
	fprintf(f, ",\"version\":");
	json_string(f, GMEM_VERSION);
	fprintf(f, "}\n");
}
