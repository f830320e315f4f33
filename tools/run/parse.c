// SPDX-License-Identifier: MIT
/*
 * parse.c - the scenario language of "gmem run": the words of the
 * language and the parser (the tokenizer is lex.c). docs/scenarios.md is the reference;
 * this file follows it. What it makes (model.h) is run by
 * execute.c.
 *
 * A scenario is a list of lines. The parser checks everything it can without
 * running anything (words, numbers, names, arguments) and stops at the first
 * error with its line and column.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gmem.h"
#include "parser.h"

/* ---------------------------------------------------------------- words */

/* Names of the values of the enums of model.h, in their order. */
static const char *const kind_names[] = { "vm", "file", "mapping" };
static const char *const key_names[] = {
	"arch", "contract", "vm", "file", "size", "slot", "gpa", "offset",
	"len", "data", "fill", "prot", "huge",
};
static const char *const flag_names[] = {
	"check", "mmap", "shared", "private", "inplace", "write", "mapped",
	"unmapped",
};
static const char *const ex_names[] = {
	"", "ok", "error", "exit", "data", "zero", "fault",
};

/* The commands: the words, arguments, flags and expectations of each. */
#define XBASE	(BIT(EX_OK) | BIT(EX_ERROR))
#define XREAD	(BIT(EX_DATA) | BIT(EX_ZERO))
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

const char *errno_name(int err)
{
	for (size_t i = 0; i < COUNT(errnos); i++)
		if (errnos[i].err == err)
			return errnos[i].name;
	return "E?";
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

int lookup(const char *const *names, int n, const char *w)
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
