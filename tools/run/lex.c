// SPDX-License-Identifier: MIT
/*
 * lex.c - the tokenizer of the scenario language: one line becomes words,
 * key=value pairs and quoted strings with their columns, for parse.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parser.h"

int perr(struct parser *p, int col, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(p->s->err, sizeof(p->s->err), "%s:%d:%d: %s", p->s->name,
		 p->line, col, msg);
	return -1;
}

static bool bare_char(unsigned char c)
{
	return c > ' ' && c < 0x7f && c != '#' && c != '"' && c != '=';
}

int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode a "..." string at @l[*i] into the arena. */
static int lex_string(struct parser *p, const char *l, size_t len, size_t *i,
		      struct tok *t)
{
	int start = (int)*i + 1;
	char *out = p->arena + p->used;
	size_t n = 0;

	for ((*i)++; *i < len; (*i)++) {
		unsigned char c = l[*i];
		int hi, lo;

		if (c == '"') {
			(*i)++;
			out[n] = 0;
			t->val = out;
			t->vlen = n;
			t->quoted = true;
			p->used += n + 1;
			return 0;
		}
		if (c != '\\') {
			if (c < ' ' && c != '\t')
				return perr(p, (int)*i + 1,
					    "control character 0x%02x in a string",
					    c);
			out[n++] = c;
			continue;
		}
		if (++*i >= len)
			break;
		switch (l[*i]) {
		case 'n': out[n++] = '\n'; break;
		case 't': out[n++] = '\t'; break;
		case '0': out[n++] = 0; break;
		case '\\': out[n++] = '\\'; break;
		case '"': out[n++] = '"'; break;
		case 'x':
			hi = *i + 1 < len ? hexval(l[*i + 1]) : -1;
			lo = *i + 2 < len ? hexval(l[*i + 2]) : -1;
			if (hi < 0 || lo < 0)
				return perr(p, (int)*i, "\\x needs two hex digits");
			out[n++] = (char)(hi << 4 | lo);
			*i += 2;
			break;
		default:
			return perr(p, (int)*i, "unknown escape '\\%c' in a string",
				    bare_char(l[*i]) ? l[*i] : '?');
		}
	}
	return perr(p, start, "unterminated string");
}

static char *lex_bare(struct parser *p, const char *l, size_t len, size_t *i)
{
	char *out = p->arena + p->used;
	size_t n = 0;

	while (*i < len && bare_char(l[*i]))
		out[n++] = l[(*i)++];
	out[n] = 0;
	p->used += n + 1;
	return out;
}

/* Split one line into tokens. */
int lex_line(struct parser *p, const char *l, size_t len)
{
	size_t i = 0;

	p->ntoks = p->pos = 0;
	p->used = 0;
	while (i < len) {
		unsigned char c = l[i];
		struct tok *t;

		if (c == ' ' || c == '\t' || c == '\r') {
			i++;
			continue;
		}
		if (c == '#')
			break;
		t = &p->toks[p->ntoks++];
		memset(t, 0, sizeof(*t));
		t->col = t->vcol = (int)i + 1;
		if (c == '"') {
			if (lex_string(p, l, len, &i, t))
				return -1;
		} else if (bare_char(c)) {
			t->val = lex_bare(p, l, len, &i);
			t->vlen = strlen(t->val);
			if (i < len && l[i] == '=') {
				t->key = t->val;
				i++;
				t->vcol = (int)i + 1;
				if (i < len && l[i] == '"') {
					if (lex_string(p, l, len, &i, t))
						return -1;
				} else if (i < len && bare_char(l[i])) {
					t->val = lex_bare(p, l, len, &i);
					t->vlen = strlen(t->val);
				} else {
					return perr(p, t->vcol,
						    "missing value after '%s='",
						    t->key);
				}
			}
		} else if (c == '=') {
			return perr(p, (int)i + 1, "'=' without a name before it");
		} else {
			return perr(p, (int)i + 1, "unexpected character 0x%02x",
				    c);
		}
		if (i < len && !(l[i] == ' ' || l[i] == '\t' || l[i] == '\r' ||
				 l[i] == '#'))
			return perr(p, (int)i + 1,
				    "missing space before '%c'",
				    bare_char(l[i]) || l[i] == '"' || l[i] == '=' ?
				    l[i] : '?');
	}
	return 0;
}

