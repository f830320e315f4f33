// SPDX-License-Identifier: MIT
/*
 * trace.c - the trace of "gmem run --trace": snapshots of the pages
 * each command touches, the hooks the engine called (recorded as it calls
 * them, through gmem_vm_trace_hooks), what changed, and one record per
 * command as text or JSON lines.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "gmem.h"
#include "execute.h"

/* ---- trace: snapshots of the pages a command touches */

/*
 * The trace shows what each frame holds, private ones included, as a
 * hardware debugger would: ASan's poison of private frames does not apply.
 */
__attribute__((no_sanitize_address))
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
void snap_pages(struct run *r, struct snap *sn)
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

void snap_take(struct run *r, struct snap *sn, const struct snap *prev)
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
			gmem_pool_frame_state(pg->pool, pg->pfn, pg->state,
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

void hook(struct run *r, const char *fmt, ...)
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
void record_hook(void *arg, const struct gmem_hook_call *call)
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
void describe_changes(struct run *r)
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

void trace(struct run *r, const char *verdict)
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
