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
#include "lib/json.h"

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

void trace_reset(struct run *r)
{
	r->nev = r->dropped = 0;
	r->message[0] = 0;
}

/* A new event of @kind, or NULL when the command already has too many. */
static struct event *event_add(struct run *r, enum event_kind kind)
{
	struct event *e;

	if (r->nev == TRACE_EVENTS) {
		r->dropped++;
		return NULL;
	}
	e = &r->ev[r->nev++];
	memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->pfn = e->gfn = ~0ULL;
	return e;
}

/* gmem_vm_trace_hooks callback: the engine's calls into the arch, as made. */
void record_hook(void *arg, const struct gmem_hook_call *call)
{
	struct event *e = event_add(arg, EV_HOOK);

	if (!e)
		return;
	snprintf(e->hook, sizeof(e->hook), "%s", call->hook);
	snprintf(e->path, sizeof(e->path), "%s", call->path);
	e->pfn = call->pfn;
	e->gfn = call->gfn;
	e->nr = call->nr;
	e->ret = call->ret;
}

static void content_event(struct run *r, const char *what, int pages)
{
	struct event *e;

	if (pages && (e = event_add(r, EV_CONTENT))) {
		e->content = what;
		e->nr = (uint64_t)pages;
	}
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
	struct event *e;

	for (int i = 0; i < r->s->nobjs && i < 64; i++)
		if (b->seq[i] >= 0 && a->seq[i] > b->seq[i] &&
		    (e = event_add(r, EV_INVALIDATION))) {
			e->vm = r->s->objs[i].name;
			e->seq_from = b->seq[i];
			e->seq_to = a->seq[i];
		}
	for (int i = 0; i < b->n && i < a->n; i++) {
		struct page_snap *pb = &b->pg[i], *pa = &a->pg[i];

		e = NULL;
		if (!pb->present && pa->present)
			e = event_add(r, EV_FOLIO_ALLOCATED);
		else if (pb->present && !pa->present)
			e = event_add(r, EV_FOLIO_FREED);
		else if (pb->present && strcmp(pb->state, pa->state))
			e = event_add(r, EV_FRAME_STATE);
		if (e) {
			e->off = pa->off;
			e->pfn = pa->present ? pa->pfn : pb->pfn;
			snprintf(e->from, sizeof(e->from), "%s", pb->state);
			snprintf(e->to, sizeof(e->to), "%s", pa->state);
		}
		if ((pb->s2 != pa->s2 || pb->s2pfn != pa->s2pfn ||
		     pb->s2priv != pa->s2priv) &&
		    (e = event_add(r, pa->s2 == 1 ? EV_STAGE2_MAP : EV_STAGE2_ZAP))) {
			e->gpa = pa->gpa;
			e->pfn = pa->s2 == 1 ? pa->s2pfn : ~0ULL;
			e->priv = pa->s2priv;
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
	content_event(r, "zeroed", zeroed);
	content_event(r, "changed", lost);
	content_event(r, "kept", kept);
}

/* ---- output */

#define X(v)	((unsigned long long)(v))

/* One event as the line --trace prints under its command. */
static void event_text(FILE *f, const struct event *e)
{
	switch (e->kind) {
	case EV_HOOK:
		fprintf(f, "hook %s", e->hook);
		if (e->pfn != ~0ULL)
			fprintf(f, " pfn=%#llx", X(e->pfn));
		if (e->gfn != ~0ULL)
			fprintf(f, " gfn=%#llx", X(e->gfn));
		if (!strcmp(e->hook, "max_mapping_level"))
			fprintf(f, " -> level %d (%s path)", e->ret, e->path);
		else
			fprintf(f, " nr=%llu%s (%s path)%s", X(e->nr),
				e->ret ? " failed" : "", e->path,
				strcmp(e->hook, "invalidate") ? "" :
				", the legacy hook: it is not told which");
		break;
	case EV_INVALIDATION:
		fprintf(f, "invalidation vm=%s mmu_invalidate_seq %lld->%lld",
			e->vm, e->seq_from, e->seq_to);
		break;
	case EV_FOLIO_ALLOCATED:
		fprintf(f, "folio allocated off=%#llx pfn=%#llx%s%s", X(e->off),
			X(e->pfn), e->to[0] ? ", frame now " : "", e->to);
		break;
	case EV_FOLIO_FREED:
		fprintf(f, "folio freed off=%#llx pfn=%#llx, frame %s -> %s",
			X(e->off), X(e->pfn), e->from, e->to);
		break;
	case EV_FRAME_STATE:
		fprintf(f, "frame pfn=%#llx: %s -> %s", X(e->pfn), e->from, e->to);
		break;
	case EV_STAGE2_MAP:
		fprintf(f, "stage-2 map gpa=%#llx -> pfn=%#llx %s", X(e->gpa),
			X(e->pfn), e->priv ? "private" : "shared");
		break;
	case EV_STAGE2_ZAP:
		fprintf(f, "stage-2 zap gpa=%#llx", X(e->gpa));
		break;
	case EV_CONTENT:
		fprintf(f, "content %s in %llu page%s",
			!strcmp(e->content, "zeroed") ? "lost (now zero)" :
			e->content, X(e->nr), e->nr > 1 ? "s" : "");
		break;
	}
}

static const char *const event_types[] = {
	[EV_HOOK] = "hook", [EV_INVALIDATION] = "invalidation",
	[EV_FOLIO_ALLOCATED] = "folio_allocated",
	[EV_FOLIO_FREED] = "folio_freed", [EV_FRAME_STATE] = "frame_state",
	[EV_STAGE2_MAP] = "stage2_map", [EV_STAGE2_ZAP] = "stage2_zap",
	[EV_CONTENT] = "content",
};

/* One event as a JSON object: docs/json.md lists the keys of each type. */
static void event_json(FILE *f, const struct event *e)
{
	fprintf(f, "{\"type\":\"%s\"", event_types[e->kind]);
	switch (e->kind) {
	case EV_HOOK:
		fprintf(f, ",\"hook\":");
		json_string(f, e->hook);
		fprintf(f, ",\"path\":");
		json_string(f, e->path);
		fprintf(f, ",\"pfn\":");
		json_u64(f, e->pfn);
		fprintf(f, ",\"gfn\":");
		json_u64(f, e->gfn);
		fprintf(f, ",\"nr\":%llu,\"ret\":%d", X(e->nr), e->ret);
		break;
	case EV_INVALIDATION:
		fprintf(f, ",\"vm\":");
		json_string(f, e->vm);
		fprintf(f, ",\"seq_from\":%lld,\"seq_to\":%lld", e->seq_from,
			e->seq_to);
		break;
	case EV_FOLIO_ALLOCATED:
	case EV_FOLIO_FREED:
	case EV_FRAME_STATE:
		fprintf(f, ",\"offset\":%llu,\"pfn\":%llu,\"from\":", X(e->off),
			X(e->pfn));
		json_string(f, e->kind == EV_FOLIO_ALLOCATED ? NULL : e->from);
		fprintf(f, ",\"to\":");
		json_string(f, e->to);
		break;
	case EV_STAGE2_MAP:
		fprintf(f, ",\"gpa\":%llu,\"pfn\":%llu,\"private\":%s", X(e->gpa),
			X(e->pfn), e->priv ? "true" : "false");
		break;
	case EV_STAGE2_ZAP:
		fprintf(f, ",\"gpa\":%llu", X(e->gpa));
		break;
	case EV_CONTENT:
		fprintf(f, ",\"content\":\"%s\",\"pages\":%llu", e->content,
			X(e->nr));
		break;
	}
	fputc('}', f);
}

/* The command's own text, without its comment and trailing blanks. */
static size_t command_text(const struct scn_cmd *c, const char **text)
{
	const char *t = c->text + c->col - 1;
	size_t tl = 0;
	bool quoted = false;

	for (; t[tl] && (quoted || t[tl] != '#'); tl++) {
		if (t[tl] == '\\' && quoted && t[tl + 1])
			tl++;
		else if (t[tl] == '"')
			quoted = !quoted;
	}
	while (tl && (t[tl - 1] == ' ' || t[tl - 1] == '\t' || t[tl - 1] == '\r'))
		tl--;
	*text = t;
	return tl;
}

void trace(struct run *r, const char *verdict)
{
	struct scn_cmd *c = r->c;
	FILE *f = r->o->out;
	char buf[128];
	const char *res = c->spec->op >= OP_XATTR ? "checked" :
			  outcome(r, buf, sizeof(buf));
	const char *t;
	size_t tl = command_text(c, &t);

	if (!f)
		return;
	if (!r->o->json) {
		fprintf(f, "%d: %.*s\n    -> %s%s%s\n", c->line, (int)tl, t, res,
			verdict ? ", " : "", verdict ? verdict : "");
		if (r->message[0] && c->spec->op >= OP_XATTR)
			fprintf(f, "       %s\n", r->message);
		for (int i = 0; i < r->nev; i++) {
			fprintf(f, "       ");
			event_text(f, &r->ev[i]);
			fputc('\n', f);
		}
		if (r->dropped)
			fprintf(f, "       ... and %d more\n", r->dropped);
		return;
	}
	fprintf(f, "{\"type\":\"command\",\"line\":%d,\"command\":", c->line);
	json_string_n(f, t, tl);
	fprintf(f, ",\"result\":");
	json_string(f, res);
	fprintf(f, ",\"errno\":");
	json_string(f, r->ret < 0 && r->ret != -1000 ? errno_name(-r->ret) : NULL);
	fprintf(f, ",\"last_error\":");
	json_string(f, r->ret < 0 && r->why[0] ? r->why : NULL);
	fprintf(f, ",\"expectation\":");
	json_string(f, !verdict ? NULL : strcmp(verdict, "pass") ? "failed" : "held");
	fprintf(f, ",\"message\":");
	json_string(f, r->message[0] ? r->message : NULL);
	fprintf(f, ",\"events\":[");
	for (int i = 0; i < r->nev; i++) {
		if (i)
			fputc(',', f);
		event_json(f, &r->ev[i]);
	}
	fprintf(f, "],\"events_dropped\":%d}\n", r->dropped);
}
