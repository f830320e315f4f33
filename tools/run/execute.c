// SPDX-License-Identifier: MIT
/*
 * execute.c - the executor of "gmem run": it makes the objects a parsed
 * scenario names, runs its operations and checks against the library and
 * compares each outcome with the command's expectation. docs/scenarios.md is
 * the reference.
 *
 * The executor runs the commands in order and stops at the first operation
 * that fails without an "expect" saying so, or at the first expectation that
 * does not hold. With --trace, trace.c writes what each command did.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "gmem.h"
#include "execute.h"
#include "lib/util.h"

#define DEFAULT_POOL	(64ULL << 30)

/* In the order of POOL_*. */
static const char *const arch_names[] = { "sw", "snp", "tdx", "pkvm" };

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

/* ---- outcome */

const char *outcome(struct run *r, char *buf, size_t len)
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
		ret = gmem_vm_bind(o->h, (uint32_t)v[K_SLOT], v[K_GPA], v[K_SIZE],
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
		ret = gmem_vm_unbind(o->h, (uint32_t)v[K_SLOT]);
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
			ret = gmem_vm_close(o->h);
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
			r->sig = probe_copy((uint8_t *)r->buf, o->addr + v[K_OFFSET],
					   v[K_LEN], &r->done);
		} else {
			r->sig = probe_copy(o->addr + v[K_OFFSET],
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
		else if (gmem_pool_frame_state(r->pools[r->rt[o->vm].pool], pfn,
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
			gmem_vm_close(r->rt[i].h);
	for (int i = 0; i < NPOOLS; i++)
		if (r->pools[i] >= 0)
			gmem_pool_close(r->pools[i]);
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
		s->ran = i + 1;
		r.ret = 0;
		r.sig = 0;
		r.why[0] = 0;
		trace_reset(&r);
		if (check) {
			ret = do_check(&r);
			if (ret)
				snprintf(r.message, sizeof(r.message), "%s", s->err);
			if (o->trace)
				trace(&r, ret ? "FAILED" : "pass");
			continue;
		}
		if (o->trace) {
			snap_pages(&r, &r.before);
			snap_take(&r, &r.before, NULL);
			trace_reset(&r);	/* the snapshot's reads are not the command's */
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
		if (ret)
			snprintf(r.message, sizeof(r.message), "%s", s->err);
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
