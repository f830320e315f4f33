// SPDX-License-Identifier: MIT
/*
 * scenario.c - the scenario language of "gmem run": tokenizer, parser and
 * executor. docs/scenarios.md is the reference; this file follows it.
 *
 * A scenario is a list of lines. The parser checks everything it can without
 * running anything (words, numbers, names, arguments) and stops at the first
 * error with its line and column. The executor runs the commands in order and
 * stops at the first operation that fails without an "expect" saying so, or
 * at the first expectation that does not hold.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gmem.h"
#include "scenario.h"

#define COUNT(a)	(sizeof(a) / sizeof((a)[0]))
#define PAGE		GMEM_PAGE_SIZE
#define MAX_NAME	32
#define MAX_XFER	(1ULL << 20)	/* bytes one read or write moves */
#define MAX_POPULATE	(16ULL << 20)	/* bytes one populate copies */
#define TRACE_PAGES	64		/* pages the trace looks at per command */
#define DEFAULT_POOL	(64ULL << 30)

/* ---------------------------------------------------------------- model */

enum obj_kind { OBJ_VM, OBJ_FILE, OBJ_MAP };
static const char *const kind_names[] = { "vm", "file", "mapping" };

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
static const char *const key_names[] = {
	"arch", "contract", "vm", "file", "size", "slot", "gpa", "offset",
	"len", "data", "fill", "prot", "huge",
};

enum flag {
	F_CHECK, F_MMAP, F_SHARED, F_PRIVATE, F_INPLACE, F_WRITE, F_MAPPED,
	F_UNMAPPED, F_NFLAGS
};
static const char *const flag_names[] = {
	"check", "mmap", "shared", "private", "inplace", "write", "mapped",
	"unmapped",
};

enum ex_kind { EX_NONE, EX_OK, EX_ERROR, EX_EXIT, EX_DATA, EX_ZERO, EX_FAULT };
static const char *const ex_names[] = {
	"", "ok", "error", "exit", "data", "zero", "fault",
};

#define BIT(x)		(1U << (x))

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

#define XBASE	(BIT(EX_OK) | BIT(EX_ERROR))
#define XREAD	(BIT(EX_DATA) | BIT(EX_ZERO))
#define PS	(BIT(F_PRIVATE) | BIT(F_SHARED))
#define RANGE	(BIT(K_OFFSET) | BIT(K_SIZE))

static const struct spec specs[] = {
	{ "vm", NULL, OP_VM, P_DEF_VM, BIT(K_ARCH) | BIT(K_CONTRACT),
	  BIT(K_ARCH), BIT(F_CHECK), XBASE },
	{ "file", NULL, OP_FILE, P_DEF_FILE,
	  BIT(K_VM) | BIT(K_SIZE) | BIT(K_HUGE),
	  BIT(K_VM) | BIT(K_SIZE), BIT(F_MMAP) | BIT(F_SHARED), XBASE },
	{ "bind", NULL, OP_BIND, P_VM,
	  BIT(K_SLOT) | BIT(K_GPA) | BIT(K_FILE) | RANGE,
	  BIT(K_SLOT) | BIT(K_GPA) | BIT(K_FILE) | BIT(K_SIZE), 0, XBASE },
	{ "unbind", NULL, OP_UNBIND, P_VM, BIT(K_SLOT), BIT(K_SLOT), 0, XBASE },
	{ "map", NULL, OP_MAP, P_DEF_MAP, BIT(K_FILE) | RANGE | BIT(K_PROT),
	  BIT(K_FILE) | BIT(K_SIZE), 0, XBASE },
	{ "unmap", NULL, OP_UNMAP, P_MAP, 0, 0, 0, XBASE },
	{ "close", NULL, OP_CLOSE, P_VM_OR_FILE, 0, 0, 0, XBASE },
	{ "convert", NULL, OP_CONVERT, P_FILE, RANGE, RANGE, PS, XBASE },
	{ "punch", NULL, OP_PUNCH, P_FILE, RANGE, RANGE, 0, XBASE },
	{ "allocate", NULL, OP_ALLOCATE, P_FILE, RANGE, RANGE, 0, XBASE },
	{ "pin", NULL, OP_PIN, P_FILE, RANGE, RANGE, 0, XBASE },
	{ "unpin", NULL, OP_UNPIN, P_FILE, RANGE, RANGE, 0, XBASE },
	{ "guest", "read", OP_GREAD, P_VM, BIT(K_GPA) | BIT(K_LEN),
	  BIT(K_GPA), PS, XBASE | XREAD | BIT(EX_EXIT) },
	{ "guest", "write", OP_GWRITE, P_VM,
	  BIT(K_GPA) | BIT(K_DATA) | BIT(K_FILL) | BIT(K_LEN),
	  BIT(K_GPA), PS, XBASE | BIT(EX_EXIT) },
	{ "guest", "fault", OP_GFAULT, P_VM, BIT(K_GPA), BIT(K_GPA),
	  PS | BIT(F_WRITE), XBASE | BIT(EX_EXIT) },
	{ "host", "read", OP_HREAD, P_MAP, BIT(K_OFFSET) | BIT(K_LEN),
	  0, 0, XBASE | XREAD | BIT(EX_FAULT) },
	{ "host", "write", OP_HWRITE, P_MAP,
	  BIT(K_OFFSET) | BIT(K_DATA) | BIT(K_FILL) | BIT(K_LEN),
	  0, 0, XBASE | BIT(EX_FAULT) },
	{ "populate", NULL, OP_POPULATE, P_VM,
	  BIT(K_GPA) | BIT(K_SIZE) | BIT(K_DATA) | BIT(K_FILL),
	  BIT(K_GPA) | BIT(K_SIZE), BIT(F_INPLACE), XBASE },
	{ "expect", "attr", OP_XATTR, P_FILE, RANGE, BIT(K_OFFSET), PS, 0 },
	{ "expect", "state", OP_XSTATE, P_FILE, BIT(K_OFFSET), BIT(K_OFFSET),
	  0, 0 },
	{ "expect", "violations", OP_XVIOL, P_VM, 0, 0, 0, 0 },
	{ "expect", "stage2", OP_XSTAGE2, P_VM, BIT(K_GPA) | BIT(K_SIZE), BIT(K_GPA),
	  PS | BIT(F_MAPPED) | BIT(F_UNMAPPED), 0 },
};

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

/* --------------------------------------------------------------- errnos */

static const struct {
	const char *name;
	int err;
} errnos[] = {
	{ "EPERM", EPERM }, { "ENOENT", ENOENT }, { "EIO", EIO },
	{ "EBADF", EBADF }, { "EAGAIN", EAGAIN }, { "ENOMEM", ENOMEM },
	{ "EFAULT", EFAULT }, { "EBUSY", EBUSY }, { "EEXIST", EEXIST },
	{ "ENODEV", ENODEV }, { "EINVAL", EINVAL }, { "EMFILE", EMFILE },
	{ "ENOSPC", ENOSPC }, { "ERANGE", ERANGE }, { "ENOSYS", ENOSYS },
	{ "EOVERFLOW", EOVERFLOW }, { "EOPNOTSUPP", EOPNOTSUPP },
};

static const char *errno_name(int err)
{
	for (size_t i = 0; i < COUNT(errnos); i++)
		if (errnos[i].err == err)
			return errnos[i].name;
	return "E?";
}

/* --------------------------------------------------------------- tokens */

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

static int perr(struct parser *p, int col, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int perr(struct parser *p, int col, const char *fmt, ...)
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

static int hexval(unsigned char c)
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
static int lex_line(struct parser *p, const char *l, size_t len)
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

/* -------------------------------------------------------------- numbers */

/* Decimal or 0x hex, then an optional K, M, G or T (powers of 1024). */
static int parse_num(struct parser *p, const struct tok *t, uint64_t *out)
{
	const char *s = t->val;
	uint64_t v = 0, mul = 1;
	int base = 10, digits = 0;

	if (t->quoted)
		return perr(p, t->vcol, "expected a number, got a string");
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	for (; *s; s++) {
		int d = hexval(*s);

		if (d < 0 || d >= base)
			break;
		if (__builtin_mul_overflow(v, (uint64_t)base, &v) ||
		    __builtin_add_overflow(v, (uint64_t)d, &v))
			return perr(p, t->vcol, "number '%s' overflows 64 bits",
				    t->val);
		digits++;
	}
	if (!digits)
		return perr(p, t->vcol, "expected a number, got '%s'", t->val);
	switch (*s) {
	case 0: break;
	case 'k': case 'K': mul = 1ULL << 10; s++; break;
	case 'm': case 'M': mul = 1ULL << 20; s++; break;
	case 'g': case 'G': mul = 1ULL << 30; s++; break;
	case 't': case 'T': mul = 1ULL << 40; s++; break;
	}
	if (*s)
		return perr(p, t->vcol, "bad number '%s' (decimal or 0x hex, "
			    "optional K/M/G/T)", t->val);
	if (__builtin_mul_overflow(v, mul, out))
		return perr(p, t->vcol, "number '%s' overflows 64 bits", t->val);
	return 0;
}

/* --------------------------------------------------------------- names */

static int find_obj(struct scenario *s, const char *name)
{
	for (int i = 0; i < s->nobjs; i++)
		if (!strcmp(s->objs[i].name, name))
			return i;
	return -1;
}

static int check_name(struct parser *p, const struct tok *t)
{
	const char *c = t->val;

	if (t->quoted || t->key)
		return perr(p, t->col, "expected a name");
	if (t->vlen > MAX_NAME)
		return perr(p, t->col, "name longer than %d characters",
			    MAX_NAME);
	if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_'))
		return perr(p, t->col, "bad name '%s' (a letter or _ first)",
			    t->val);
	for (; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
			return perr(p, t->col, "bad name '%s' (letters, digits, "
				    "_ and - only)", t->val);
	return 0;
}

static int define_obj(struct parser *p, const struct tok *t, enum obj_kind k)
{
	struct scenario *s = p->s;
	struct scn_obj *o;
	int i;

	if (check_name(p, t))
		return -1;
	i = find_obj(s, t->val);
	if (i >= 0)
		return perr(p, t->col, "duplicate name '%s' (a %s defined on "
			    "line %d)", t->val, kind_names[s->objs[i].kind],
			    s->objs[i].line);
	o = realloc(s->objs, (s->nobjs + 1) * sizeof(*o));
	if (!o)
		return perr(p, t->col, "out of memory");
	s->objs = o;
	o = &s->objs[s->nobjs];
	memset(o, 0, sizeof(*o));
	memcpy(o->name, t->val, t->vlen);
	o->kind = k;
	o->line = p->line;
	return s->nobjs++;
}

/* @mask: BIT(OBJ_*) of the kinds allowed. */
static int ref_obj(struct parser *p, const struct tok *t, unsigned mask)
{
	struct scenario *s = p->s;
	int i;

	if (check_name(p, t))
		return -1;
	i = find_obj(s, t->val);
	if (i < 0)
		return perr(p, t->col, "unknown name '%s'", t->val);
	if (!(mask & BIT(s->objs[i].kind)))
		return perr(p, t->col, "'%s' is a %s, not a %s", t->val,
			    kind_names[s->objs[i].kind],
			    mask & BIT(OBJ_VM) ? (mask & BIT(OBJ_FILE) ?
			    "vm or file" : "vm") : mask & BIT(OBJ_FILE) ?
			    "file" : "mapping");
	return i;
}

/* ------------------------------------------------------------- commands */

static char *dup_bytes(const char *b, size_t n)
{
	char *d = malloc(n + 1);

	if (d) {
		memcpy(d, b, n);
		d[n] = 0;
	}
	return d;
}

static struct tok *next_tok(struct parser *p)
{
	return p->pos < p->ntoks ? &p->toks[p->pos++] : NULL;
}

static bool is_word(const struct tok *t, const char *w)
{
	return t && !t->key && !t->quoted && !strcmp(t->val, w);
}

static int lookup(const char *const *names, int n, const char *w)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(names[i], w))
			return i;
	return -1;
}

static int parse_expect(struct parser *p, struct scn_cmd *c, int col)
{
	struct expect *x = &c->ex;
	unsigned allowed = c->spec->expects;
	struct tok *t = next_tok(p);
	int k;

	x->col = col;
	x->exit_private = -1;
	if (!t)
		return perr(p, col, "missing expectation after 'expect' "
			    "(ok, error, exit, data=, zero, fault)");
	if (t->key && !strcmp(t->key, "data")) {
		k = EX_DATA;
	} else if (t->key || t->quoted) {
		return perr(p, t->col, "expected ok, error, exit, data=, zero "
			    "or fault");
	} else {
		k = lookup(ex_names, COUNT(ex_names), t->val);
		if (k <= 0 || k == EX_DATA)
			return perr(p, t->col, "unknown expectation '%s' (ok, "
				    "error, exit, data=, zero, fault)", t->val);
	}
	if (!(allowed & BIT(k)))
		return perr(p, t->col, "'expect %s' does not apply to '%s%s%s'",
			    ex_names[k], c->spec->word, c->spec->sub ? " " : "",
			    c->spec->sub ? c->spec->sub : "");
	x->kind = k;
	switch (k) {
	case EX_DATA:
		if (!t->vlen)
			return perr(p, t->vcol, "empty data");
		x->data = dup_bytes(t->val, t->vlen);
		if (!x->data)
			return perr(p, t->vcol, "out of memory");
		x->data_len = t->vlen;
		break;
	case EX_ERROR:
		t = next_tok(p);
		if (!t || t->key || t->quoted)
			return perr(p, t ? t->col : col,
				    "missing errno name after 'expect error'");
		for (size_t i = 0; i < COUNT(errnos); i++)
			if (!strcmp(errnos[i].name, t->val))
				x->err = errnos[i].err;
		if (!x->err)
			return perr(p, t->col, "unknown errno name '%s'", t->val);
		t = next_tok(p);
		if (t && t->key && !strcmp(t->key, "offset") &&
		    c->spec->op == OP_CONVERT) {
			if (parse_num(p, t, &x->offset))
				return -1;
			x->has_offset = true;
		} else if (t) {
			p->pos--;
		}
		break;
	case EX_EXIT:
		while ((t = next_tok(p))) {
			if (is_word(t, "private") || is_word(t, "shared")) {
				if (x->exit_private >= 0)
					return perr(p, t->col, "private or "
						    "shared given twice");
				x->exit_private = is_word(t, "private");
			} else if (t->key && !strcmp(t->key, "gpa") &&
				   !x->has_gpa) {
				if (parse_num(p, t, &x->gpa))
					return -1;
				x->has_gpa = true;
			} else {
				p->pos--;
				break;
			}
		}
		break;
	case EX_FAULT:
		t = next_tok(p);
		if (is_word(t, "SIGSEGV"))
			x->sig = SIGSEGV;
		else if (is_word(t, "SIGBUS"))
			x->sig = SIGBUS;
		else if (t)
			p->pos--;
		break;
	}
	t = next_tok(p);
	if (t)
		return perr(p, t->col, "unexpected '%s%s%s' after the "
			    "expectation", t->key ? t->key : "",
			    t->key ? "=" : "", t->quoted ? "\"...\"" : t->val);
	return 0;
}

static int parse_key(struct parser *p, struct scn_cmd *c, struct tok *t,
		     int k)
{
	struct tok name = *t;

	name.key = NULL;
	name.col = t->vcol;
	switch (k) {
	case K_ARCH:
		if (t->quoted || !t->vlen)
			return perr(p, t->vcol, "expected an arch name");
		c->arch = dup_bytes(t->val, t->vlen);
		return c->arch ? 0 : perr(p, t->vcol, "out of memory");
	case K_CONTRACT:
		if (!strcmp(t->val, "legacy") && !t->quoted)
			c->legacy = true;
		else if (strcmp(t->val, "split") || t->quoted)
			return perr(p, t->vcol, "contract is split or legacy, "
				    "not '%s'", t->quoted ? "\"...\"" : t->val);
		return 0;
	case K_VM:
		c->vm = ref_obj(p, &name, BIT(OBJ_VM));
		return c->vm < 0 ? -1 : 0;
	case K_FILE:
		c->file = ref_obj(p, &name, BIT(OBJ_FILE));
		return c->file < 0 ? -1 : 0;
	case K_DATA:
		if (!t->vlen)
			return perr(p, t->vcol, "empty data");
		c->data = dup_bytes(t->val, t->vlen);
		c->data_len = t->vlen;
		return c->data ? 0 : perr(p, t->vcol, "out of memory");
	case K_HUGE:
		if (!strcmp(t->val, "2M") && !t->quoted)
			c->huge = GMEM_FLAG_HUGE_2M;
		else if (!strcmp(t->val, "1G") && !t->quoted)
			c->huge = GMEM_FLAG_HUGE_1G;
		else
			return perr(p, t->vcol, "huge is 2M or 1G");
		return 0;
	case K_PROT:
		if (!strcmp(t->val, "r"))
			c->prot = PROT_READ;
		else if (!strcmp(t->val, "w"))
			c->prot = PROT_WRITE;
		else if (!strcmp(t->val, "rw"))
			c->prot = PROT_READ | PROT_WRITE;
		else
			return perr(p, t->vcol, "prot is r, w or rw");
		return 0;
	default:
		if (parse_num(p, t, &c->v[k]))
			return -1;
		if (k == K_FILL && c->v[k] > 0xff)
			return perr(p, t->vcol, "fill is a byte (0..0xff)");
		if (k == K_SLOT && c->v[k] > UINT32_MAX)
			return perr(p, t->vcol, "slot above 2^32-1");
		return 0;
	}
}

/* The checks that hold a command together, once all its words are read. */
static int check_cmd(struct parser *p, struct scn_cmd *c)
{
	const struct spec *sp = c->spec;
	unsigned missing = sp->required & ~c->has;
	uint64_t want;

	if (missing) {
		for (int k = 0; k < K_NKEYS; k++)
			if (missing & BIT(k))
				return perr(p, c->col, "missing argument %s=",
					    key_names[k]);
	}
	if ((sp->flags & PS) == PS && sp->op != OP_XSTAGE2 &&
	    !(c->flags & PS))
		return perr(p, c->col, "missing 'private' or 'shared'");
	if ((c->flags & PS) == PS)
		return perr(p, c->col, "both 'private' and 'shared'");
	switch (sp->op) {
	case OP_XSTAGE2:
		if (!(c->flags & (BIT(F_MAPPED) | BIT(F_UNMAPPED))) ||
		    (c->flags & BIT(F_MAPPED) && c->flags & BIT(F_UNMAPPED)))
			return perr(p, c->col, "say 'mapped' or 'unmapped'");
		if ((c->flags & BIT(F_UNMAPPED)) && (c->flags & PS))
			return perr(p, c->col, "an unmapped entry is neither "
				    "private nor shared");
		if ((c->has & BIT(K_SIZE)) && ((c->flags & BIT(F_UNMAPPED)) ||
		    (c->v[K_SIZE] != PAGE && c->v[K_SIZE] != 512 * PAGE &&
		     c->v[K_SIZE] != 512 * 512 * PAGE)))
			return perr(p, c->col, "an entry's size is 4K, 2M or 1G, "
				    "and only a mapped one has one");
		break;
	case OP_GREAD:
	case OP_HREAD:
		if (c->ex.kind == EX_DATA) {
			if ((c->has & BIT(K_LEN)) && c->v[K_LEN] != c->ex.data_len)
				return perr(p, c->ex.col, "len=%llu but the "
					    "expected data has %zu bytes",
					    (unsigned long long)c->v[K_LEN],
					    c->ex.data_len);
			c->v[K_LEN] = c->ex.data_len;
			c->has |= BIT(K_LEN);
		}
		if (!(c->has & BIT(K_LEN)))
			return perr(p, c->col, "missing argument len=");
		if (!c->v[K_LEN] || c->v[K_LEN] > MAX_XFER)
			return perr(p, c->col, "len must be 1..1M");
		break;
	case OP_GWRITE:
	case OP_HWRITE:
	case OP_POPULATE:
		want = c->has & (BIT(K_DATA) | BIT(K_FILL));
		if (want == (BIT(K_DATA) | BIT(K_FILL)) ||
		    (sp->op == OP_POPULATE && want && (c->flags & BIT(F_INPLACE))))
			return perr(p, c->col, "give one of data=, fill=%s",
				    sp->op == OP_POPULATE ? ", inplace" : "");
		if (!want && !(c->flags & BIT(F_INPLACE)))
			return perr(p, c->col, "missing argument data= or fill=%s",
				    sp->op == OP_POPULATE ? " (or inplace)" : "");
		if (sp->op == OP_POPULATE) {
			if (c->v[K_SIZE] > MAX_POPULATE)
				return perr(p, c->col, "populate size above 16M");
			if (c->data_len > c->v[K_SIZE])
				return perr(p, c->col, "data longer than size=");
			break;
		}
		if (c->has & BIT(K_DATA)) {
			if ((c->has & BIT(K_LEN)) && c->v[K_LEN] != c->data_len)
				return perr(p, c->col, "len=%llu but data has "
					    "%zu bytes",
					    (unsigned long long)c->v[K_LEN],
					    c->data_len);
			c->v[K_LEN] = c->data_len;
		} else if (!(c->has & BIT(K_LEN))) {
			return perr(p, c->col, "fill= needs len=");
		}
		if (!c->v[K_LEN] || c->v[K_LEN] > MAX_XFER)
			return perr(p, c->col, "len must be 1..1M");
		break;
	case OP_MAP:
		if (!c->prot)
			c->prot = PROT_READ | PROT_WRITE;
		break;
	default:
		break;
	}
	return 0;
}

/* "expect state FILE offset=N TEXT" and "expect violations VM N|>N". */
static int parse_extra(struct parser *p, struct scn_cmd *c, struct tok *t)
{
	if (c->spec->op == OP_XSTATE && !c->data) {
		if (t->key || !t->vlen)
			return perr(p, t->col, "expected the state text");
		c->data = dup_bytes(t->val, t->vlen);
		c->data_len = t->vlen;
		return c->data ? 0 : perr(p, t->col, "out of memory");
	}
	if (c->spec->op == OP_XVIOL && !(c->has & BIT(K_LEN))) {
		struct tok num = *t;

		if (t->key)
			return perr(p, t->col, "expected a count: N or >N");
		if (!t->quoted && t->val[0] == '>') {
			c->more = true;
			num.val++;
			num.vcol++;
		}
		if (parse_num(p, &num, &c->v[K_LEN]))
			return -1;
		c->has |= BIT(K_LEN);
		return 0;
	}
	return perr(p, t->col, "unexpected '%s'",
		    t->quoted ? "\"...\"" : t->val);
}

static int parse_cmd(struct parser *p, struct scn_cmd *c)
{
	const struct spec *sp = NULL;
	struct tok *w = next_tok(p), *sub = NULL, *t;
	static const unsigned pos_mask[] = {
		[P_VM] = BIT(OBJ_VM), [P_FILE] = BIT(OBJ_FILE),
		[P_MAP] = BIT(OBJ_MAP),
		[P_VM_OR_FILE] = BIT(OBJ_VM) | BIT(OBJ_FILE),
	};

	c->line = p->line;
	c->col = w->col;
	c->vm = c->file = -1;
	if (w->key || w->quoted)
		return perr(p, w->col, "a line starts with a command word");
	for (size_t i = 0; i < COUNT(specs); i++) {
		if (strcmp(specs[i].word, w->val))
			continue;
		if (!specs[i].sub) {
			sp = &specs[i];
			break;
		}
		if (!sub)
			sub = next_tok(p);
		if (!sub)
			return perr(p, w->col, "'%s' needs a second word",
				    w->val);
		if (is_word(sub, specs[i].sub)) {
			sp = &specs[i];
			break;
		}
	}
	if (!sp && sub)
		return perr(p, sub->col, "unknown '%s %s'", w->val,
			    sub->key || sub->quoted ? "..." : sub->val);
	if (!sp)
		return perr(p, w->col, "unknown command '%s'", w->val);
	c->spec = sp;

	t = next_tok(p);
	if (!t)
		return perr(p, c->col, "missing the %s name after '%s'",
			    sp->pos == P_MAP || sp->pos == P_DEF_MAP ? "mapping" :
			    sp->pos == P_FILE || sp->pos == P_DEF_FILE ? "file" :
			    sp->pos == P_VM_OR_FILE ? "vm or file" : "vm",
			    w->val);
	switch (sp->pos) {
	case P_DEF_VM: c->obj = define_obj(p, t, OBJ_VM); break;
	case P_DEF_FILE: c->obj = define_obj(p, t, OBJ_FILE); break;
	case P_DEF_MAP: c->obj = define_obj(p, t, OBJ_MAP); break;
	default: c->obj = ref_obj(p, t, pos_mask[sp->pos]); break;
	}
	if (c->obj < 0)
		return -1;

	while ((t = next_tok(p))) {
		int k;

		if (is_word(t, "expect")) {
			if (!sp->expects)
				return perr(p, t->col, "'%s %s' is already an "
					    "expectation", sp->word, sp->sub);
			if (parse_expect(p, c, t->col))
				return -1;
			break;
		}
		if (t->key) {
			k = lookup(key_names, K_NKEYS, t->key);
			if (k < 0 || !(sp->keys & BIT(k)))
				return perr(p, t->col, "unknown argument '%s=' "
					    "for '%s'", t->key, sp->word);
			if (c->has & BIT(k))
				return perr(p, t->col, "'%s=' given twice",
					    t->key);
			if (parse_key(p, c, t, k))
				return -1;
			c->has |= BIT(k);
			continue;
		}
		k = t->quoted ? -1 : lookup(flag_names, F_NFLAGS, t->val);
		if (k >= 0 && (sp->flags & BIT(k))) {
			if (c->flags & BIT(k))
				return perr(p, t->col, "'%s' given twice",
					    t->val);
			c->flags |= BIT(k);
			continue;
		}
		if (sp->op == OP_XSTATE || sp->op == OP_XVIOL) {
			if (parse_extra(p, c, t))
				return -1;
			continue;
		}
		return perr(p, t->col, "unknown word '%s' for '%s'",
			    t->quoted ? "\"...\"" : t->val, sp->word);
	}
	if (sp->op == OP_XSTATE && !c->data)
		return perr(p, c->col, "missing the state text");
	if (sp->op == OP_XVIOL && !(c->has & BIT(K_LEN)))
		return perr(p, c->col, "missing the count (N or >N)");
	return check_cmd(p, c);
}

static void cmd_free(struct scn_cmd *c)
{
	free(c->arch);
	free(c->data);
	free(c->text);
	free(c->ex.data);
}

void scenario_free(struct scenario *s)
{
	for (int i = 0; i < s->ncmds; i++)
		cmd_free(&s->cmds[i]);
	free(s->cmds);
	free(s->objs);
	s->cmds = NULL;
	s->objs = NULL;
	s->ncmds = s->nobjs = 0;
}

int scenario_parse(struct scenario *s, const char *name, const char *text,
		   size_t len)
{
	struct parser p = { .s = s };
	size_t start = 0, cap = 0;
	int ret = 0;

	memset(s, 0, sizeof(*s));
	s->name = name;
	while (start < len && !ret) {
		const char *l = text + start, *nl = memchr(l, '\n', len - start);
		size_t n = nl ? (size_t)(nl - l) : len - start;
		struct scn_cmd *c;

		p.line++;
		start += n + 1;
		if (memchr(l, 0, n)) {
			ret = perr(&p, (int)((char *)memchr(l, 0, n) - l) + 1,
				   "NUL byte");
			break;
		}
		free(p.toks);
		free(p.arena);
		p.toks = malloc((n / 2 + 2) * sizeof(*p.toks));
		p.arena = malloc(2 * n + 2);
		if (!p.toks || !p.arena) {
			ret = perr(&p, 1, "out of memory");
			break;
		}
		if (lex_line(&p, l, n)) {
			ret = -1;
			break;
		}
		if (!p.ntoks)
			continue;
		if ((size_t)s->ncmds == cap) {
			cap = cap ? cap * 2 : 16;
			c = realloc(s->cmds, cap * sizeof(*c));
			if (!c) {
				ret = perr(&p, 1, "out of memory");
				break;
			}
			s->cmds = c;
		}
		c = &s->cmds[s->ncmds++];
		memset(c, 0, sizeof(*c));
		c->text = dup_bytes(l, n);
		ret = c->text ? parse_cmd(&p, c) : perr(&p, 1, "out of memory");
	}
	free(p.toks);
	free(p.arena);
	return ret;
}

/* ------------------------------------------------------------- executor */

enum { POOL_SW, POOL_SNP, POOL_TDX, POOL_PKVM, POOL_OTHER, NPOOLS };
static const char *const arch_names[] = { "sw", "snp", "tdx", "pkvm" };

struct rt_obj {
	int h;			/* handle, -1 when closed or never made */
	int pool;		/* vm: POOL_* */
	int arch;		/* vm: POOL_* */
	bool legacy;
	int vm;			/* file: its vm object */
	int file;		/* mapping: its file object */
	uint8_t *addr;		/* mapping */
	uint64_t len, off;
	int pins;
};

struct binding {
	int vm, file;
	uint32_t slot;
	uint64_t gpa, off, size;
	bool live;
};

struct page_snap {
	int fd, pool;		/* handles */
	uint64_t off;
	int vm;			/* handle, or -1 */
	uint64_t gpa;
	int present;
	uint64_t pfn;
	char state[96];
	uint64_t hash;
	int s2;
	uint64_t s2pfn;
	int s2priv;
};

struct snap {
	struct page_snap pg[TRACE_PAGES];
	int n;
	int64_t seq[64];	/* per object (vms only) */
};

struct run {
	struct scenario *s;
	const struct scn_opts *o;
	struct rt_obj *rt;
	int pools[NPOOLS];
	struct binding *b;
	int nb;
	char *buf;		/* read and write buffer */
	struct scn_cmd *c;
	/* outcome of the current command */
	int ret;		/* 0, -errno, 1 exit, 2 fault */
	struct gmem_exit exit;
	uint64_t err_off;
	int sig;
	size_t done;
	char why[256];		/* gmem_last_error() of a failure */
	/* trace */
	struct snap before, after;
	char hooks[2048];
	size_t hlen;
};

static int rfail(struct run *r, int col, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int rfail(struct run *r, int col, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(r->s->err, sizeof(r->s->err), "%s:%d:%d: %s", r->s->name,
		 r->c->line, col, msg);
	return SCN_EXIT_FAILED;
}

/* ---- host access with a fault probe */

static sigjmp_buf probe_jmp;
static volatile sig_atomic_t probe_active, probe_sig;

static void probe_handler(int sig)
{
	if (!probe_active) {
		signal(sig, SIG_DFL);
		return;
	}
	probe_sig = sig;
	siglongjmp(probe_jmp, 1);
}

/* Copy byte by byte; returns the signal that stopped it, or 0. */
static int host_copy(volatile uint8_t *dst, volatile const uint8_t *src,
		     size_t len, size_t *done)
{
	struct sigaction sa, old_segv, old_bus;
	volatile size_t i = 0;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = probe_handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, &old_segv);
	sigaction(SIGBUS, &sa, &old_bus);
	probe_sig = 0;
	if (!sigsetjmp(probe_jmp, 1)) {
		probe_active = 1;
		for (; i < len; i++)
			dst[i] = src[i];
	}
	probe_active = 0;
	sigaction(SIGSEGV, &old_segv, NULL);
	sigaction(SIGBUS, &old_bus, NULL);
	*done = i;
	return probe_sig;
}

/* ---- trace: snapshots of the pages a command touches */

static uint64_t frame_hash(int pool, uint64_t pfn)
{
	const uint8_t *f = gmem_pool_frame(pool, pfn);
	uint64_t h = 1469598103934665603ULL;

	if (!f)
		return 0;
	for (size_t i = 0; i < PAGE; i++)
		h = (h ^ f[i]) * 1099511628211ULL;
	return h;
}

static uint64_t zero_hash(void)
{
	static uint64_t h;

	if (!h) {
		h = 1469598103934665603ULL;
		for (size_t i = 0; i < PAGE; i++)
			h *= 1099511628211ULL;
	}
	return h;
}

static void snap_add(struct run *r, struct snap *sn, int fd, int pool,
		     uint64_t off, int vm, uint64_t gpa)
{
	struct page_snap *pg;

	if (sn->n >= TRACE_PAGES || fd < 0 || pool < 0)
		return;
	pg = &sn->pg[sn->n++];
	memset(pg, 0, sizeof(*pg));
	pg->fd = fd;
	pg->pool = pool;
	pg->off = off;
	pg->vm = vm;
	pg->gpa = gpa;
}

/* Which pages the current command touches. */
static void snap_pages(struct run *r, struct snap *sn)
{
	struct scn_cmd *c = r->c;
	struct rt_obj *o = &r->rt[c->obj];
	uint64_t off = c->v[K_OFFSET], size = c->v[K_SIZE], gpa = c->v[K_GPA];
	int fd, vmh;
	int64_t sz;

	sn->n = 0;
	switch (c->spec->op) {
	case OP_CLOSE:
		if (r->s->objs[c->obj].kind != OBJ_FILE)
			break;
		/* A mapping keeps the file alive: nothing is freed yet. */
		for (int i = 0; i < r->s->nobjs; i++)
			if (r->s->objs[i].kind == OBJ_MAP && r->rt[i].addr &&
			    r->rt[i].file == c->obj)
				return;
		sz = gmem_size(o->h);
		off = 0;
		size = sz > 0 ? (uint64_t)sz : 0;
		/* fall through */
	case OP_CONVERT: case OP_PUNCH: case OP_ALLOCATE: case OP_PIN:
	case OP_UNPIN:
		if (o->h < 0)
			break;
		for (uint64_t p = off & ~(PAGE - 1); p < off + size &&
		     sn->n < TRACE_PAGES; p += PAGE) {
			int vmo = -1;
			uint64_t g = 0;

			for (int i = 0; i < r->nb; i++) {
				struct binding *b = &r->b[i];

				if (b->live && b->file == c->obj && p >= b->off &&
				    p - b->off < b->size) {
					vmo = r->rt[b->vm].h;
					g = b->gpa + (p - b->off);
				}
			}
			snap_add(r, sn, o->h, r->pools[r->rt[o->vm].pool], p,
				 vmo, g);
		}
		break;
	case OP_GREAD: case OP_GWRITE: case OP_POPULATE: case OP_GFAULT:
		size = c->spec->op == OP_POPULATE ? size :
		       c->spec->op == OP_GFAULT ? 1 : c->v[K_LEN];
		for (uint64_t p = gpa & ~(PAGE - 1); p < gpa + size &&
		     sn->n < TRACE_PAGES; p += PAGE) {
			if (gmem_vm_translate(o->h, p, &fd, &off, NULL))
				continue;
			snap_add(r, sn, fd, r->pools[o->pool], off, o->h, p);
		}
		break;
	case OP_UNBIND:
		for (int i = 0; i < r->nb; i++) {
			struct binding *b = &r->b[i];
			struct rt_obj *f = &r->rt[b->file];

			if (!b->live || b->vm != c->obj || b->slot != c->v[K_SLOT])
				continue;
			for (uint64_t p = 0; p < b->size && sn->n < TRACE_PAGES;
			     p += PAGE)
				snap_add(r, sn, f->h, r->pools[o->pool],
					 b->off + p, o->h, b->gpa + p);
		}
		break;
	case OP_HREAD: case OP_HWRITE:
		if (!o->addr || r->rt[o->file].h < 0)
			break;
		vmh = r->rt[o->file].vm;
		off = o->off + c->v[K_OFFSET];
		for (uint64_t p = off & ~(PAGE - 1); p < off + c->v[K_LEN] &&
		     sn->n < TRACE_PAGES; p += PAGE)
			snap_add(r, sn, r->rt[o->file].h,
				 r->pools[r->rt[vmh].pool], p, -1, 0);
		break;
	default:
		break;
	}
}

static void snap_take(struct run *r, struct snap *sn, const struct snap *prev)
{
	for (int i = 0; i < r->s->nobjs && i < 64; i++)
		sn->seq[i] = r->s->objs[i].kind == OBJ_VM && r->rt[i].h >= 0 ?
			     gmem_vm_invalidate_seq(r->rt[i].h) : -1;
	for (int i = 0; i < sn->n; i++) {
		struct page_snap *pg = &sn->pg[i];

		pg->present = gmem_folio_info(pg->fd, pg->off, &pg->pfn, NULL,
					      NULL) == 1;
		if (!pg->present && prev)
			pg->pfn = prev->pg[i].pfn;	/* where it was */
		if (pg->present || prev)
			gmem_frame_state(pg->pool, pg->pfn, pg->state,
					 sizeof(pg->state));
		/*
		 * Only a present frame is read: touching a freed one through
		 * the direct map would allocate it again in the pool's memfd
		 * and the model would see a folio there.
		 */
		pg->hash = pg->present ? frame_hash(pg->pool, pg->pfn) : 0;
		pg->s2 = pg->vm >= 0 ? gmem_vm_stage2(pg->vm, pg->gpa,
				&pg->s2pfn, &pg->s2priv) : 0;
	}
}

static void hook(struct run *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void hook(struct run *r, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (r->hlen >= sizeof(r->hooks) - 1)
		return;
	if (r->hlen)
		r->hooks[r->hlen++] = '\n';
	va_start(ap, fmt);
	n = vsnprintf(r->hooks + r->hlen, sizeof(r->hooks) - r->hlen, fmt, ap);
	va_end(ap);
	if (n > 0)
		r->hlen += (size_t)n;
	if (r->hlen >= sizeof(r->hooks))
		r->hlen = sizeof(r->hooks) - 1;
}

/* gmem_vm_trace_hooks callback: the engine's calls into the arch, as made. */
static void record_hook(void *arg, const struct gmem_hook_call *call)
{
	struct run *r = arg;
	char where[96];
	int n = 0;

	where[0] = 0;
	if (call->pfn != ~0ULL)
		n += snprintf(where + n, sizeof(where) - (size_t)n, " pfn=%#llx",
			      (unsigned long long)call->pfn);
	if (call->gfn != ~0ULL && n < (int)sizeof(where))
		n += snprintf(where + n, sizeof(where) - (size_t)n, " gfn=%#llx",
			      (unsigned long long)call->gfn);
	if (!strcmp(call->hook, "max_mapping_level"))
		hook(r, "hook %s%s -> level %d (%s path)", call->hook, where,
		     call->ret, call->path);
	else
		hook(r, "hook %s%s nr=%llu%s (%s path)%s", call->hook, where,
		     (unsigned long long)call->nr,
		     call->ret ? " failed" : "", call->path,
		     strcmp(call->hook, "invalidate") ? "" :
		     ", the legacy hook: it is not told which");
}

/*
 * After the hooks the command called, what changed: folios, frame states in
 * the arch model, stage-2, and the content of pages a conversion touched.
 */
static void describe_changes(struct run *r)
{
	struct snap *b = &r->before, *a = &r->after;
	enum op op = r->c->spec->op;
	int lost = 0, kept = 0, zeroed = 0;

	for (int i = 0; i < r->s->nobjs && i < 64; i++)
		if (b->seq[i] >= 0 && a->seq[i] > b->seq[i])
			hook(r, "invalidation vm=%s mmu_invalidate_seq %lld->%lld",
			     r->s->objs[i].name, (long long)b->seq[i],
			     (long long)a->seq[i]);
	for (int i = 0; i < b->n && i < a->n; i++) {
		struct page_snap *pb = &b->pg[i], *pa = &a->pg[i];

		if (!pb->present && pa->present)
			hook(r, "folio allocated off=%#llx pfn=%#llx%s%s",
			     (unsigned long long)pa->off,
			     (unsigned long long)pa->pfn,
			     pa->state[0] ? ", frame now " : "", pa->state);
		else if (pb->present && !pa->present)
			hook(r, "folio freed off=%#llx pfn=%#llx, frame %s -> %s",
			     (unsigned long long)pb->off,
			     (unsigned long long)pb->pfn, pb->state, pa->state);
		else if (pb->present && strcmp(pb->state, pa->state))
			hook(r, "frame pfn=%#llx: %s -> %s",
			     (unsigned long long)pa->pfn, pb->state, pa->state);
		if (pb->s2 != pa->s2 || pb->s2pfn != pa->s2pfn ||
		    pb->s2priv != pa->s2priv) {
			if (pa->s2 == 1)
				hook(r, "stage-2 map gpa=%#llx -> pfn=%#llx %s",
				     (unsigned long long)pa->gpa,
				     (unsigned long long)pa->s2pfn,
				     pa->s2priv ? "private" : "shared");
			else
				hook(r, "stage-2 zap gpa=%#llx",
				     (unsigned long long)pa->gpa);
		}
		if (op == OP_CONVERT && !r->ret && pb->present && pa->present) {
			if (pb->hash != pa->hash && pa->hash == zero_hash())
				zeroed++;
			else if (pb->hash != pa->hash)
				lost++;
			else if (pb->hash != zero_hash())
				kept++;
		}
	}
	if (zeroed)
		hook(r, "content lost (now zero) in %d page%s", zeroed,
		     zeroed > 1 ? "s" : "");
	if (lost)
		hook(r, "content changed in %d page%s", lost, lost > 1 ? "s" : "");
	if (kept)
		hook(r, "content kept in %d page%s", kept, kept > 1 ? "s" : "");
}

/* ---- output */

static void json_str(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = s[i];

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < ' ' || ch >= 0x7f)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static const char *outcome(struct run *r, char *buf, size_t len)
{
	switch (r->ret) {
	case 0:
		return "ok";
	case 1:
		snprintf(buf, len, "exit %s gpa=%#llx",
			 r->exit.flags & GMEM_MEMORY_EXIT_FLAG_PRIVATE ?
			 "private" : "shared", (unsigned long long)r->exit.gpa);
		return buf;
	case 2:
		snprintf(buf, len, "fault %s after %zu bytes",
			 r->sig == SIGBUS ? "SIGBUS" : "SIGSEGV", r->done);
		return buf;
	default:
		if (r->c->spec->op == OP_CONVERT && r->ret == -EAGAIN)
			snprintf(buf, len, "error %s offset=%#llx",
				 errno_name(-r->ret),
				 (unsigned long long)r->err_off);
		else
			snprintf(buf, len, "error %s", errno_name(-r->ret));
		return buf;
	}
}

static void trace(struct run *r, const char *verdict)
{
	struct scn_cmd *c = r->c;
	FILE *f = r->o->out;
	char buf[128];
	const char *res = c->spec->op >= OP_XATTR ? "checked" :
			  outcome(r, buf, sizeof(buf));
	const char *t = c->text + c->col - 1;
	size_t tl = 0;
	bool quoted = false;

	if (!f)
		return;
	for (; t[tl] && (quoted || t[tl] != '#'); tl++) {
		if (t[tl] == '\\' && quoted && t[tl + 1])
			tl++;
		else if (t[tl] == '"')
			quoted = !quoted;
	}
	while (tl && (t[tl - 1] == ' ' || t[tl - 1] == '\t' || t[tl - 1] == '\r'))
		tl--;
	if (!r->o->json) {
		fprintf(f, "%d: %.*s\n    -> %s%s%s\n", c->line, (int)tl, t, res,
			verdict ? ", " : "", verdict ? verdict : "");
		for (const char *h = r->hooks; *h; ) {
			size_t n = strcspn(h, "\n");

			fprintf(f, "       %.*s\n", (int)n, h);
			h += n + (h[n] == '\n');
		}
		return;
	}
	fprintf(f, "{\"file\":");
	json_str(f, r->s->name, strlen(r->s->name));
	fprintf(f, ",\"line\":%d,\"cmd\":", c->line);
	json_str(f, t, tl);
	fprintf(f, ",\"result\":");
	json_str(f, res, strlen(res));
	if (r->ret < 0 && r->ret != -1000)
		fprintf(f, ",\"errno\":\"%s\"", errno_name(-r->ret));
	fprintf(f, ",\"expect\":\"%s\",\"hooks\":[", verdict ? verdict : "none");
	for (const char *h = r->hooks; *h; ) {
		size_t n = strcspn(h, "\n");

		json_str(f, h, n);
		h += n + (h[n] == '\n');
		if (*h)
			fputc(',', f);
	}
	fprintf(f, "]}\n");
}

/* ---- operations */

static uint8_t *fill_buf(struct run *r, size_t len)
{
	struct scn_cmd *c = r->c;

	if (c->data)
		memcpy(r->buf, c->data, c->data_len < len ? c->data_len : len);
	else
		memset(r->buf, (int)c->v[K_FILL], len);
	return (uint8_t *)r->buf;
}

static int new_pool(struct run *r, int arch)
{
	if (r->pools[arch] < 0) {
		uint64_t cap = r->o->pool_capacity ? r->o->pool_capacity :
			       DEFAULT_POOL;

		r->pools[arch] = gmem_pool_create(cap);
	}
	return r->pools[arch];
}

static int do_op(struct run *r)
{
	struct scn_cmd *c = r->c;
	struct rt_obj *o = &r->rt[c->obj];
	uint64_t *v = c->v;
	int fh = c->file >= 0 ? r->rt[c->file].h : -1;
	int priv = c->flags & BIT(F_PRIVATE) ? GMEM_FAULT_PRIVATE : 0;
	int64_t n;
	int ret, pool;
	void *addr;

	switch (c->spec->op) {
	case OP_VM:
		o->arch = lookup(arch_names, COUNT(arch_names), c->arch);
		if (o->arch < 0)
			o->arch = POOL_OTHER;
		o->pool = o->arch;
		o->legacy = c->legacy;
		pool = new_pool(r, o->arch);
		if (pool < 0)
			return pool;
		ret = gmem_vm_create(pool, c->arch,
				     (c->legacy ? GMEM_VM_LEGACY_CONTRACT : 0) |
				     (c->flags & BIT(F_CHECK) ? GMEM_VM_CHECK : 0));
		if (ret >= 0) {
			o->h = ret;
			if (r->o->trace)
				gmem_vm_trace_hooks(ret, record_hook, r);
		}
		return ret < 0 ? ret : 0;
	case OP_FILE:
		o->vm = c->vm;
		ret = gmem_create(r->rt[c->vm].h, v[K_SIZE], c->huge |
				  (c->flags & BIT(F_MMAP) ? GMEM_FLAG_MMAP : 0) |
				  (c->flags & BIT(F_SHARED) ?
				   GMEM_FLAG_INIT_SHARED : 0));
		if (ret >= 0)
			o->h = ret;
		return ret < 0 ? ret : 0;
	case OP_BIND:
		ret = gmem_bind(o->h, (uint32_t)v[K_SLOT], v[K_GPA], v[K_SIZE],
				fh, v[K_OFFSET]);
		if (!ret) {
			struct binding *b = realloc(r->b, (r->nb + 1) * sizeof(*b));

			if (b) {
				r->b = b;
				r->b[r->nb++] = (struct binding){
					.vm = c->obj, .file = c->file,
					.slot = (uint32_t)v[K_SLOT],
					.gpa = v[K_GPA], .off = v[K_OFFSET],
					.size = v[K_SIZE], .live = true,
				};
			}
		}
		return ret;
	case OP_UNBIND:
		ret = gmem_unbind(o->h, (uint32_t)v[K_SLOT]);
		for (int i = 0; !ret && i < r->nb; i++)
			if (r->b[i].vm == c->obj && r->b[i].slot == v[K_SLOT])
				r->b[i].live = false;
		return ret;
	case OP_MAP:
		if (v[K_SIZE] > SIZE_MAX)
			return -EINVAL;
		ret = gmem_mmap(fh, v[K_OFFSET], (size_t)v[K_SIZE], c->prot,
				MAP_SHARED, &addr);
		if (!ret) {
			o->addr = addr;
			o->len = v[K_SIZE];
			o->off = v[K_OFFSET];
			o->file = c->file;
		}
		return ret;
	case OP_UNMAP:
		if (!o->addr)
			return -EINVAL;
		ret = gmem_munmap(o->addr, (size_t)o->len);
		if (!ret)
			o->addr = NULL;
		return ret;
	case OP_CLOSE:
		if (r->s->objs[c->obj].kind == OBJ_VM) {
			ret = gmem_vm_destroy(o->h);
		} else {
			ret = gmem_close(o->h);
			for (int i = 0; !ret && i < r->nb; i++)
				if (r->b[i].file == c->obj)
					r->b[i].live = false;
		}
		if (!ret)
			o->h = -1;
		return ret;
	case OP_CONVERT:
		r->err_off = ~0ULL;
		return gmem_set_attributes(o->h, v[K_OFFSET], v[K_SIZE],
					   priv ? GMEM_ATTR_PRIVATE : 0, 0,
					   &r->err_off);
	case OP_PUNCH:
		return gmem_fallocate(o->h, GMEM_FALLOC_KEEP_SIZE |
				      GMEM_FALLOC_PUNCH_HOLE, v[K_OFFSET],
				      v[K_SIZE]);
	case OP_ALLOCATE:
		return gmem_fallocate(o->h, GMEM_FALLOC_KEEP_SIZE, v[K_OFFSET],
				      v[K_SIZE]);
	case OP_PIN:
		return gmem_pin(o->h, v[K_OFFSET], v[K_SIZE]);
	case OP_UNPIN:
		return gmem_unpin(o->h, v[K_OFFSET], v[K_SIZE]);
	case OP_GREAD:
		memset(r->buf, 0, v[K_LEN]);
		return gmem_vm_access(o->h, v[K_GPA], r->buf, v[K_LEN], priv,
				      &r->exit);
	case OP_GWRITE:
		return gmem_vm_access(o->h, v[K_GPA], fill_buf(r, v[K_LEN]),
				      v[K_LEN], priv | GMEM_FAULT_WRITE,
				      &r->exit);
	case OP_GFAULT:
		return gmem_vm_fault(o->h, v[K_GPA], priv |
				     (c->flags & BIT(F_WRITE) ? GMEM_FAULT_WRITE : 0),
				     NULL, &r->exit);
	case OP_HREAD:
	case OP_HWRITE:
		if (!o->addr)
			return -EBADF;
		if (v[K_OFFSET] > o->len || v[K_LEN] > o->len - v[K_OFFSET])
			return -1000;
		if (c->spec->op == OP_HREAD) {
			memset(r->buf, 0, v[K_LEN]);
			r->sig = host_copy((uint8_t *)r->buf, o->addr + v[K_OFFSET],
					   v[K_LEN], &r->done);
		} else {
			r->sig = host_copy(o->addr + v[K_OFFSET],
					   fill_buf(r, v[K_LEN]), v[K_LEN],
					   &r->done);
		}
		return r->sig ? 2 : 0;
	case OP_POPULATE:
		if (c->flags & BIT(F_INPLACE)) {
			n = gmem_vm_populate(o->h, v[K_GPA], NULL, v[K_SIZE], 0);
		} else {
			void *src = calloc(1, v[K_SIZE] ? v[K_SIZE] : 1);

			if (!src)
				return -ENOMEM;
			if (c->data)
				memcpy(src, c->data, c->data_len);
			else
				memset(src, (int)v[K_FILL], v[K_SIZE]);
			n = gmem_vm_populate(o->h, v[K_GPA], src, v[K_SIZE], 0);
			free(src);
		}
		if (n >= 0 && (uint64_t)n != v[K_SIZE] / PAGE) {
			/* Partial: the call hides the error of the page it
			 * stopped at; say so rather than pass. */
			snprintf(r->why, sizeof(r->why), "populated %lld of "
				 "%llu pages", (long long)n,
				 (unsigned long long)(v[K_SIZE] / PAGE));
			return -EIO;
		}
		return n < 0 ? (int)n : 0;
	default:
		return 0;
	}
}

static void show_bytes(char *out, size_t len, const char *b, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n && o + 8 < len; i++) {
		unsigned char ch = b[i];

		if (i == 32) {
			o += snprintf(out + o, len - o, "...");
			break;
		}
		if (ch >= ' ' && ch < 0x7f && ch != '"' && ch != '\\')
			out[o++] = ch;
		else
			o += snprintf(out + o, len - o, "\\x%02x", ch);
	}
	out[o] = 0;
}

/* "expect attr", "expect state", "expect violations". */
static int do_check(struct run *r)
{
	struct scn_cmd *c = r->c;
	struct rt_obj *o = &r->rt[c->obj];
	uint64_t off = c->v[K_OFFSET], end, attr, pfn;
	char state[128];
	int64_t n;
	int ret;

	switch (c->spec->op) {
	case OP_XATTR:
		end = c->has & BIT(K_SIZE) ? off + c->v[K_SIZE] : off + PAGE;
		if (end < off)
			return rfail(r, c->col, "offset+size overflows");
		for (uint64_t p = off; p < end; p += PAGE) {
			bool want = c->flags & BIT(F_PRIVATE);

			ret = gmem_get_attributes(o->h, p, &attr, NULL);
			if (ret)
				return rfail(r, c->col, "attributes at %#llx: %s "
					     "(%s)", (unsigned long long)p,
					     errno_name(-ret), gmem_last_error());
			if (!!(attr & GMEM_ATTR_PRIVATE) != want)
				return rfail(r, c->col, "expected %s at offset "
					     "%#llx, it is %s", want ? "private" :
					     "shared", (unsigned long long)p,
					     want ? "shared" : "private");
		}
		return 0;
	case OP_XSTATE:
		ret = gmem_folio_info(o->h, off, &pfn, NULL, NULL);
		if (ret < 0)
			return rfail(r, c->col, "folio at %#llx: %s (%s)",
				     (unsigned long long)off, errno_name(-ret),
				     gmem_last_error());
		if (ret == 0)
			snprintf(state, sizeof(state), "hole");
		else if (gmem_frame_state(r->pools[r->rt[o->vm].pool], pfn,
					  state, sizeof(state)) < 0)
			snprintf(state, sizeof(state), "?");
		if (!memmem(state, strlen(state), c->data, c->data_len)) {
			char want[160];

			show_bytes(want, sizeof(want), c->data, c->data_len);
			return rfail(r, c->col, "state of offset %#llx is \"%s\", "
				     "expected \"%s\"", (unsigned long long)off,
				     state, want);
		}
		return 0;
	case OP_XSTAGE2: {
		uint64_t s2pfn;
		int priv;

		ret = gmem_vm_stage2(o->h, c->v[K_GPA], &s2pfn, &priv);
		if (ret < 0)
			return rfail(r, c->col, "stage-2: %s (%s)",
				     errno_name(-ret), gmem_last_error());
		if (!ret != !(c->flags & BIT(F_MAPPED)) ||
		    (ret && (c->flags & PS) &&
		     !priv != !(c->flags & BIT(F_PRIVATE))))
			return rfail(r, c->col, "stage-2 entry of gpa %#llx is %s",
				     (unsigned long long)c->v[K_GPA],
				     !ret ? "unmapped" : priv ?
				     "mapped private" : "mapped shared");
		if (ret && (c->has & BIT(K_SIZE))) {
			int level = gmem_vm_stage2_level(o->h, c->v[K_GPA]);
			uint64_t size = level < 0 ? 0 : PAGE << (9 * level);

			if (size != c->v[K_SIZE])
				return rfail(r, c->col, "stage-2 entry of gpa %#llx maps %llu KiB",
					     (unsigned long long)c->v[K_GPA],
					     (unsigned long long)(size >> 10));
		}
		return 0;
	}
	case OP_XVIOL: {
		struct gmem_violation v;

		n = gmem_vm_violations(o->h, &v, 1);
		if (n < 0)
			return rfail(r, c->col, "violations: %s (%s)",
				     errno_name((int)-n), gmem_last_error());
		if (c->more ? (uint64_t)n > c->v[K_LEN] : (uint64_t)n == c->v[K_LEN])
			return 0;
		if (n > 0)
			return rfail(r, c->col, "expected %s%llu violations, got "
				     "%lld; first: %s invariant %d offset %#llx "
				     "pfn %#llx: %s", c->more ? ">" : "",
				     (unsigned long long)c->v[K_LEN], (long long)n,
				     v.op, v.invariant,
				     (unsigned long long)v.offset,
				     (unsigned long long)v.pfn, v.rule);
		return rfail(r, c->col, "expected %s%llu violations, got 0",
			     c->more ? ">" : "", (unsigned long long)c->v[K_LEN]);
	}
	default:
		return 0;
	}
}

/* Compare the outcome with the expectation; 0 when it holds. */
static int verdict(struct run *r)
{
	struct scn_cmd *c = r->c;
	struct expect *x = &c->ex;
	char got[128], a[160], b[160];
	int col = x->kind ? x->col : c->col;

	outcome(r, got, sizeof(got));
	if (r->ret == -1000)
		return rfail(r, c->col, "offset+len is outside the mapping "
			     "(%llu bytes)", (unsigned long long)r->rt[c->obj].len);
	switch (x->kind) {
	case EX_NONE:
	case EX_OK:
	case EX_DATA:
	case EX_ZERO:
		if (r->ret < 0)
			return rfail(r, col, "%s failed: %s (%s)", c->spec->word,
				     got, r->why);
		if (r->ret > 0)
			return rfail(r, col, "%s: unexpected %s", c->spec->word,
				     got);
		if (x->kind == EX_DATA && memcmp(r->buf, x->data, x->data_len)) {
			show_bytes(a, sizeof(a), x->data, x->data_len);
			show_bytes(b, sizeof(b), r->buf, x->data_len);
			return rfail(r, col, "expected data \"%s\", read \"%s\"",
				     a, b);
		}
		if (x->kind == EX_ZERO) {
			for (uint64_t i = 0; i < c->v[K_LEN]; i++) {
				if (!r->buf[i])
					continue;
				show_bytes(b, sizeof(b), r->buf + i,
					   c->v[K_LEN] - i < 16 ?
					   c->v[K_LEN] - i : 16);
				return rfail(r, col, "expected zeroes, byte %llu "
					     "reads \"%s\"",
					     (unsigned long long)i, b);
			}
		}
		return 0;
	case EX_ERROR:
		if (r->ret != -x->err)
			return rfail(r, col, "expected error %s, got %s",
				     errno_name(x->err), got);
		if (x->has_offset && r->err_off != x->offset)
			return rfail(r, col, "expected error offset %#llx, got "
				     "%#llx", (unsigned long long)x->offset,
				     (unsigned long long)r->err_off);
		return 0;
	case EX_EXIT:
		if (r->ret != 1)
			return rfail(r, col, "expected a memory-fault exit, got %s",
				     got);
		if (x->exit_private >= 0 &&
		    !!(r->exit.flags & GMEM_MEMORY_EXIT_FLAG_PRIVATE) !=
		    x->exit_private)
			return rfail(r, col, "expected a %s exit, got %s",
				     x->exit_private ? "private" : "shared", got);
		if (x->has_gpa && r->exit.gpa != x->gpa)
			return rfail(r, col, "expected exit gpa=%#llx, got %s",
				     (unsigned long long)x->gpa, got);
		return 0;
	case EX_FAULT:
		if (r->ret != 2)
			return rfail(r, col, "expected a fault, got %s", got);
		if (x->sig && x->sig != r->sig)
			return rfail(r, col, "expected %s, got %s",
				     x->sig == SIGBUS ? "SIGBUS" : "SIGSEGV", got);
		return 0;
	}
	return 0;
}

static void teardown(struct run *r)
{
	for (int i = 0; i < r->s->nobjs; i++) {
		struct rt_obj *o = &r->rt[i];

		if (r->s->objs[i].kind == OBJ_MAP && o->addr)
			gmem_munmap(o->addr, (size_t)o->len);
	}
	for (int i = 0; i < r->s->nobjs; i++)
		if (r->s->objs[i].kind == OBJ_FILE && r->rt[i].h >= 0)
			gmem_close(r->rt[i].h);
	for (int i = 0; i < r->s->nobjs; i++)
		if (r->s->objs[i].kind == OBJ_VM && r->rt[i].h >= 0)
			gmem_vm_destroy(r->rt[i].h);
	for (int i = 0; i < NPOOLS; i++)
		if (r->pools[i] >= 0)
			gmem_pool_destroy(r->pools[i]);
}

int scenario_run(struct scenario *s, const struct scn_opts *o)
{
	struct run r = { .s = s, .o = o };
	int ret = SCN_EXIT_OK;

	r.rt = calloc(s->nobjs + 1, sizeof(*r.rt));
	r.buf = malloc(MAX_XFER);
	if (!r.rt || !r.buf) {
		free(r.rt);
		free(r.buf);
		snprintf(s->err, sizeof(s->err), "%s: out of memory", s->name);
		return SCN_EXIT_FAILED;
	}
	for (int i = 0; i < s->nobjs; i++) {
		r.rt[i].h = -1;
		r.rt[i].vm = r.rt[i].file = -1;
	}
	for (int i = 0; i < NPOOLS; i++)
		r.pools[i] = -1;
	for (int i = 0; i < s->ncmds && ret == SCN_EXIT_OK; i++) {
		struct scn_cmd *c = &s->cmds[i];
		bool check = c->spec->op >= OP_XATTR;

		r.c = c;
		r.ret = 0;
		r.sig = 0;
		r.why[0] = 0;
		r.hlen = 0;
		r.hooks[0] = 0;
		if (check) {
			ret = do_check(&r);
			if (ret)
				hook(&r, "%s", s->err);
			if (o->trace)
				trace(&r, ret ? "FAILED" : "pass");
			continue;
		}
		if (o->trace) {
			snap_pages(&r, &r.before);
			snap_take(&r, &r.before, NULL);
			r.hlen = 0;	/* the snapshot's reads are not the command's */
			r.hooks[0] = 0;
		}
		r.ret = do_op(&r);
		if (r.ret < 0 && !r.why[0])
			snprintf(r.why, sizeof(r.why), "%s", gmem_last_error());
		if (o->trace) {
			r.after = r.before;
			snap_take(&r, &r.after, &r.before);
			describe_changes(&r);
		}
		ret = verdict(&r);
		if (o->trace)
			trace(&r, ret ? "FAILED" : c->ex.kind ? "pass" : NULL);
	}
	if (ret && o->err)
		fprintf(o->err, "%s\n", s->err);
	teardown(&r);
	free(r.b);
	free(r.rt);
	free(r.buf);
	return ret;
}
