/* seq.c -- sequences: per-(layer, head) page lists, append (all-or-nothing),
 * truncate, keep (compaction hook for policies), fork with copy-on-write, and
 * attention straight over the pages.
 */
#include <float.h>
#include <limits.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "kernels/kv_quant.h"
#include "kv/kv.h"

static kv_list *list_of(const lkv_seq *s, int layer, int head) {
    return &s->lists[layer * s->c->p.kv_heads + head];
}

static int lh_ok(const lkv_seq *s, int layer, int head) {
    return s && layer >= 0 && layer < s->c->p.n_layers && head >= 0 && head < s->c->p.kv_heads;
}

int kv_list_reserve(kv_list *l, int more) {
    if (more <= 0 || l->n_pages + more <= l->cap)
        return LKV_OK;
    if (l->n_pages > INT32_MAX / 2 - more)
        LKV_FAIL(LKV_ERR_RANGE, "kv: page list too long");
    int cap = l->cap ? l->cap : 8;
    while (cap < l->n_pages + more)
        cap *= 2;
    kv_ref *r = lkv_realloc(l->refs, (size_t)cap * sizeof *r);
    if (!r)
        LKV_FAIL(LKV_ERR_NOMEM, "kv: out of memory growing a page list");
    l->refs = r;
    l->cap = cap;
    return LKV_OK;
}

void kv_list_refresh(const lkv_cache *c, kv_list *l, int from) {
    const int pt = c->p.page_tokens, d = c->p.head_dim;
    for (int j = from < 0 ? 0 : from; j < l->n_pages; j++) {
        kv_ref *r = &l->refs[j];
        const kv_page *pg = r->page;
        const int32_t first = r->n > 0 ? kv_page_pos_at(c, pg, 0) : 0;
        const kv_format *f = kv_format_get(pg->format);
        const kv_layout *L = kv_page_layout(c, pg);
        int flags = r->n > 0 && kv_page_pos_at(c, pg, r->n - 1) - first == r->n - 1 ? KV_REF_DENSE : 0;
        /* only plain formats without per-page metadata can run across pages */
        int plain = f->elem_bytes && !f->k_aux_bytes(pt, d) && !f->v_aux_bytes(pt, d);
        if (j > 0 && flags && plain) {
            const kv_ref *q = &l->refs[j - 1];
            const kv_page *pp = q->page;
            if ((q->flags & KV_REF_DENSE) && q->n == pt && pp->format == pg->format &&
                L->bytes[KV_ROLE_K] == f->k_bytes(pt, d) && L->bytes[KV_ROLE_V] == f->v_bytes(pt, d) &&
                (const uint8_t *)pg->k == (const uint8_t *)pp->k + L->bytes[KV_ROLE_K] &&
                (const uint8_t *)pg->v == (const uint8_t *)pp->v + L->bytes[KV_ROLE_V] &&
                (int64_t)kv_page_pos_at(c, pp, pt - 1) + 1 == first)
                flags |= KV_REF_CONT;
        }
        r->flags = flags;
    }
}

int kv_seq_new(lkv_cache *c, lkv_seq **out) {
    lkv_seq *s = lkv_calloc(1, sizeof *s);
    if (s) {
        s->c = c;
        s->lists = lkv_calloc((size_t)c->n_lists, sizeof *s->lists);
        s->heads = lkv_calloc((size_t)c->p.kv_heads, sizeof *s->heads);
        s->digest_tmp = lkv_malloc((size_t)2 * c->p.head_dim * sizeof(float));
        s->pos_tmp = lkv_malloc((size_t)c->p.page_tokens * sizeof(int32_t));
    }
    if (!s || !s->lists || !s->heads || !s->digest_tmp || !s->pos_tmp) {
        if (s) {
            lkv_free(s->lists);
            lkv_free(s->heads);
            lkv_free(s->digest_tmp);
            lkv_free(s->pos_tmp);
        }
        lkv_free(s);
        LKV_FAIL(LKV_ERR_NOMEM, "kv: out of memory creating a sequence");
    }
    s->next = c->seqs;
    if (c->seqs)
        c->seqs->prev = s;
    c->seqs = s;
    c->n_seqs++;
    *out = s;
    return LKV_OK;
}

int lkv_seq_create(lkv_cache *c, lkv_seq **out) {
    if (!c || !out)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_create: NULL argument");
    *out = NULL;
    return kv_seq_new(c, out);
}

lkv_cache *lkv_seq_cache(const lkv_seq *s) { return s ? s->c : NULL; }

void lkv_seq_free(lkv_seq *s) {
    if (!s)
        return;
    lkv_cache *c = s->c;
    for (int i = 0; i < c->n_lists; i++) {
        kv_list *l = &s->lists[i];
        for (int j = 0; j < l->n_pages; j++)
            kv_page_unref(c, l->refs[j].page);
        kv_list_release_stash(c, l);
        lkv_free(l->refs);
    }
    if (s->prev)
        s->prev->next = s->next;
    else
        c->seqs = s->next;
    if (s->next)
        s->next->prev = s->prev;
    c->n_seqs--;
    lkv_free(s->lists);
    lkv_free(s->heads);
    lkv_free(s->runs);
    lkv_free(s->tile_f32);
    lkv_free(s->tmp_pages);
    lkv_free(s->digest_tmp);
    lkv_free(s->pos_tmp);
    lkv_free(s);
}

int lkv_seq_fork(lkv_seq *src, lkv_seq **out) {
    if (!src || !out)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_fork: NULL argument");
    *out = NULL;
    lkv_cache *c = src->c;
    lkv_seq *s;
    LKV_TRY(kv_seq_new(c, &s));
    for (int i = 0; i < c->n_lists; i++) {
        int rc = kv_list_reserve(&s->lists[i], src->lists[i].n_pages);
        if (rc < 0) {
            lkv_seq_free(s); /* no page refs taken yet: lists have n_pages == 0 */
            return rc;
        }
    }
    for (int i = 0; i < c->n_lists; i++) {
        const kv_list *a = &src->lists[i];
        kv_list *b = &s->lists[i];
        if (a->n_pages)
            memcpy(b->refs, a->refs, (size_t)a->n_pages * sizeof *a->refs);
        b->n_pages = a->n_pages;
        b->n_tokens = a->n_tokens;
        for (int j = 0; j < a->n_pages; j++)
            a->refs[j].page->refcount++;
    }
    *out = s;
    return LKV_OK;
}

/* ------------------------------------------------------------ append */

static int32_t list_last_pos(const lkv_cache *c, const kv_list *l, int *has) {
    if (l->n_pages == 0) {
        *has = 0;
        return -1;
    }
    *has = 1;
    const kv_ref *r = &l->refs[l->n_pages - 1];
    return kv_page_pos_at(c, r->page, r->n - 1);
}

static void digest_add(const lkv_cache *c, kv_page *pg, int slot0, int n) {
    int d = c->p.head_dim;
    float *mn = kv_page_kmin(c, pg), *mx = kv_page_kmax(c, pg);
    if (!mn || (pg->flags & KV_PAGE_DIGEST_STALE))
        return; /* derived (kv_format.digest), or recomputed whole when read */
    const kv_format *f = kv_format_get(pg->format);
    kv_page_ptrs a = kv_page_arrays(c, pg);
    float row[256];
    for (int t = 0; t < n; t++) {
        f->read(&a, c->p.page_tokens, d, slot0 + t, 1, row, NULL);
        for (int i = 0; i < d; i++) {
            if (row[i] < mn[i])
                mn[i] = row[i];
            if (row[i] > mx[i])
                mx[i] = row[i];
        }
    }
}

static int tmp_reserve(lkv_seq *s, size_t n) {
    if (n <= s->tmp_cap)
        return LKV_OK;
    kv_page **t = lkv_realloc(s->tmp_pages, n * sizeof *t);
    if (!t)
        LKV_FAIL(LKV_ERR_NOMEM, "kv: out of memory (append scratch)");
    s->tmp_pages = t;
    s->tmp_cap = n;
    return LKV_OK;
}

/* 1 if the n new positions (pos, or NULL: continuing the list) that land in
 * the list's partly used tail page continue its last one without a gap. */
static int tail_continues(const lkv_cache *c, const kv_list *l, int n, const int32_t *pos) {
    const kv_ref *tail = &l->refs[l->n_pages - 1];
    int room = c->p.page_tokens - tail->n, m = n < room ? n : room;
    if (!pos || m == 0)
        return 1;
    if (tail->n > 0 && pos[0] != kv_page_pos_at(c, tail->page, tail->n - 1) + 1)
        return 0;
    return kv_pos_consecutive(pos, m);
}

/* The partly used tail page must be replaced by a copy before rows are added:
 * it is shared (copy on write), or it has no positions array
 * (KV_PAGE_POS_BASE) and the new positions would leave a gap in it. */
static int tail_needs_copy(const lkv_cache *c, const kv_list *l, int n, const int32_t *pos) {
    const kv_page *pg = l->refs[l->n_pages - 1].page;
    return pg->refcount > 1 || ((pg->flags & KV_PAGE_POS_BASE) && !tail_continues(c, l, n, pos));
}

/* Appends to heads [h0, h1) of a layer. Row t of head h at k + t*tok_stride + h*head_stride. */
static int append_heads(lkv_seq *s, int layer, int h0, int h1, int n, const int32_t *pos,
                        const float *k, const float *v, size_t tok_stride, size_t head_stride) {
    lkv_cache *c = s->c;
    const int pt = c->p.page_tokens, d = c->p.head_dim;
    if (n == 0)
        return LKV_OK;
    if (n < 0 || !k || !v)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_append: n = %d, k %p, v %p", n, (const void *)k,
                 (const void *)v);
    if (pos && pos[0] < 0)
        LKV_FAIL(LKV_ERR_RANGE, "lkv_seq_append: negative position %d", pos[0]);
    if (pos)
        for (int t = 1; t < n; t++)
            if (pos[t] <= pos[t - 1])
                LKV_FAIL(LKV_ERR_RANGE, "lkv_seq_append: positions not strictly ascending at %d", t);
    /* phase 1: validate and count the pages this needs */
    size_t need = 0;
    for (int h = h0; h < h1; h++) {
        kv_list *l = list_of(s, layer, h);
        int has;
        int32_t last = list_last_pos(c, l, &has);
        if (pos && has && pos[0] <= last)
            LKV_FAIL(LKV_ERR_RANGE, "lkv_seq_append: position %d not after %d held by head %d",
                     pos[0], last, h);
        if (!pos && has && last > INT32_MAX - n)
            LKV_FAIL(LKV_ERR_RANGE, "lkv_seq_append: positions overflow");
        if (l->n_tokens > INT32_MAX - n)
            LKV_FAIL(LKV_ERR_RANGE, "lkv_seq_append: too many tokens");
        int room = l->n_pages ? pt - l->refs[l->n_pages - 1].n : 0;
        int cow = room > 0 && tail_needs_copy(c, l, n, pos);
        int fresh = n > room ? (n - room + pt - 1) / pt : 0;
        LKV_TRY(kv_list_reserve(l, fresh));
        need += (size_t)(cow + fresh);
    }
    LKV_TRY(tmp_reserve(s, need));
    size_t got = 0;
    for (int h = h0; h < h1 && got < need; h++) {
        kv_list *l = list_of(s, layer, h);
        int room = l->n_pages ? pt - l->refs[l->n_pages - 1].n : 0;
        int cow = room > 0 && tail_needs_copy(c, l, n, pos);
        int fresh = n > room ? (n - room + pt - 1) / pt : 0;
        for (int i = 0; i < cow + fresh; i++) {
            int rc;
            if (cow && i == 0) { /* the tail's copy keeps it without positions if it can */
                const kv_page *tp = l->refs[l->n_pages - 1].page;
                int base = (tp->flags & KV_PAGE_POS_BASE) && tail_continues(c, l, n, pos);
                rc = kv_page_new(c, tp->format, base, layer, h, &s->tmp_pages[got]);
            } else { /* fresh page f holds new rows [t0, t1) */
                int f = i - cow, t0 = room + f * pt, t1 = t0 + pt < n ? t0 + pt : n;
                int base = kv_pos_consecutive(pos ? pos + t0 : NULL, t1 - t0);
                rc = kv_page_new_in(c, (int)c->p.dtype, base, layer, h, l, &s->tmp_pages[got]);
            }
            if (rc < 0) {
                for (size_t j = 0; j < got; j++)
                    kv_page_unref(c, s->tmp_pages[j]);
                return rc;
            }
            got++;
        }
    }
    /* phase 2: cannot fail */
    size_t used = 0;
    for (int h = h0; h < h1; h++) {
        kv_list *l = list_of(s, layer, h);
        const float *kh = k + (size_t)h * head_stride, *vh = v + (size_t)h * head_stride;
        int has;
        int32_t next_pos = list_last_pos(c, l, &has) + 1;
        int refresh_from = l->n_pages - 1;
        if (l->n_pages) {
            kv_ref *tail = &l->refs[l->n_pages - 1];
            if (tail->n < pt && tail_needs_copy(c, l, n, pos)) { /* copy on write */
                kv_page *np = s->tmp_pages[used++];
                kv_page_copy_slots(c, np, 0, tail->page, 0, tail->n);
                np->pos0 = kv_page_pos_at(c, tail->page, 0); /* used if np has no array */
                np->fill = tail->n;
                kv_page_digest(c, np, tail->n);
                kv_page_unref(c, tail->page);
                tail->page = np;
            } else if (tail->n < pt && tail->page->fill > tail->n) {
                tail->page->fill = tail->n; /* stale slots of an earlier holder */
                kv_page_digest(c, tail->page, tail->n);
            }
        }
        int t = 0;
        while (t < n) {
            if (l->n_pages == 0 || l->refs[l->n_pages - 1].n == pt) {
                l->refs[l->n_pages].page = s->tmp_pages[used++];
                l->refs[l->n_pages].n = 0;
                l->refs[l->n_pages].flags = 0;
                l->n_pages++;
            }
            kv_ref *tail = &l->refs[l->n_pages - 1];
            kv_page *pg = tail->page;
            int m = pt - tail->n;
            if (m > n - t)
                m = n - t;
            kv_page_ptrs a = kv_page_arrays(c, pg);
            kv_format_get(pg->format)->write(&a, pt, d, tail->n, m, kh + t * tok_stride, tok_stride,
                                             vh + t * tok_stride, tok_stride);
            for (int i = 0; i < m; i++)
                kv_page_set_pos(c, pg, tail->n + i, pos ? pos[t + i] : next_pos + t + i);
            digest_add(c, pg, tail->n, m);
            tail->n += m;
            pg->fill = tail->n;
            t += m;
        }
        l->n_tokens += n;
        kv_list_refresh(c, l, refresh_from);
    }
    return LKV_OK;
}

int lkv_seq_append(lkv_seq *s, int layer, int n, const int32_t *pos, const float *k,
                   const float *v) {
    if (!s || layer < 0 || layer >= s->c->p.n_layers)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_append: bad sequence or layer %d", layer);
    size_t Hd = (size_t)s->c->p.kv_heads * s->c->p.head_dim;
    return append_heads(s, layer, 0, s->c->p.kv_heads, n, pos, k, v, Hd, s->c->p.head_dim);
}

int lkv_seq_append_head(lkv_seq *s, int layer, int head, int n, const int32_t *pos,
                        const float *k, const float *v) {
    if (!lh_ok(s, layer, head))
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_append_head: bad sequence, layer or head");
    /* rows [n][d]: shift the base so that row h of append_heads lands on k */
    size_t d = (size_t)s->c->p.head_dim;
    if (!k || !v)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_append_head: NULL k or v");
    return append_heads(s, layer, head, head + 1, n, pos, k, v, d, 0);
}

/* ------------------------------------------------------------ queries */

int lkv_seq_n_tokens(const lkv_seq *s, int layer, int head) {
    if (!lh_ok(s, layer, head))
        return -1;
    return list_of(s, layer, head)->n_tokens;
}

int lkv_seq_max_tokens(const lkv_seq *s, int layer) {
    if (!lh_ok(s, layer, 0))
        return -1;
    int m = 0;
    for (int h = 0; h < s->c->p.kv_heads; h++)
        if (list_of(s, layer, h)->n_tokens > m)
            m = list_of(s, layer, h)->n_tokens;
    return m;
}

int lkv_seq_n_pages(const lkv_seq *s, int layer, int head) {
    if (!lh_ok(s, layer, head))
        return -1;
    return list_of(s, layer, head)->n_pages;
}

int lkv_seq_page_info(const lkv_seq *s, int layer, int head, int page, lkv_page_info *out) {
    if (!lh_ok(s, layer, head) || !out)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_page_info: bad arguments");
    const kv_list *l = list_of(s, layer, head);
    if (page < 0 || page >= l->n_pages)
        LKV_FAIL(LKV_ERR_RANGE, "lkv_seq_page_info: page %d of %d", page, l->n_pages);
    const kv_ref *r = &l->refs[page];
    out->n = r->n;
    out->first_slot = page * s->c->p.page_tokens;
    out->format = r->page->format;
    out->refcount = r->page->refcount;
    out->pos = kv_page_pos(s->c, r->page);
    if (!out->pos) { /* KV_PAGE_POS_BASE: materialized into the sequence's scratch */
        kv_page_get_pos(s->c, r->page, 0, r->n, s->pos_tmp);
        out->pos = s->pos_tmp;
    }
    kv_page_digest_fresh(s->c, r->page);
    out->key_min = kv_page_kmin(s->c, r->page);
    out->key_max = kv_page_kmax(s->c, r->page);
    if (!out->key_min) { /* derived digest (KIVI): into the sequence's scratch */
        float *mn = s->digest_tmp, *mx = s->digest_tmp + s->c->p.head_dim;
        kv_page_get_digest(s->c, r->page, mn, mx);
        out->key_min = mn;
        out->key_max = mx;
    }
    out->in_backup = r->page->backup != NULL;
    return LKV_OK;
}

static int slot_range_ok(const lkv_seq *s, int layer, int head, int slot0, int n) {
    if (!lh_ok(s, layer, head) || n < 0)
        LKV_FAIL(LKV_ERR_INVALID, "kv: bad sequence, layer, head or count");
    if (slot0 < 0 || slot0 > list_of(s, layer, head)->n_tokens - n)
        LKV_FAIL(LKV_ERR_RANGE, "kv: slots [%d, %d) outside the %d held", slot0, slot0 + n,
                 list_of(s, layer, head)->n_tokens);
    return LKV_OK;
}

int lkv_seq_get_positions(const lkv_seq *s, int layer, int head, int slot0, int n, int32_t *pos) {
    LKV_TRY(slot_range_ok(s, layer, head, slot0, n));
    if (!pos && n)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_get_positions: NULL output");
    const int pt = s->c->p.page_tokens;
    const kv_list *l = list_of(s, layer, head);
    for (int i = 0; i < n; i++) {
        int sl = slot0 + i;
        pos[i] = kv_page_pos_at(s->c, l->refs[sl / pt].page, sl % pt);
    }
    return LKV_OK;
}

int lkv_seq_read(const lkv_seq *s, int layer, int head, int slot0, int n, float *k, float *v) {
    LKV_TRY(slot_range_ok(s, layer, head, slot0, n));
    const int pt = s->c->p.page_tokens, d = s->c->p.head_dim;
    const kv_list *l = list_of(s, layer, head);
    for (int i = 0; i < n;) {
        int sl = slot0 + i, m = pt - sl % pt;
        if (m > n - i)
            m = n - i;
        const kv_page *pg = l->refs[sl / pt].page;
        kv_page_ptrs a = kv_page_arrays(s->c, pg);
        kv_format_get(pg->format)->read(&a, pt, d, sl % pt, m, k ? k + (size_t)i * d : NULL,
                                        v ? v + (size_t)i * d : NULL);
        i += m;
    }
    return LKV_OK;
}

/* ------------------------------------------------------------ truncate / keep */

static void list_truncate(lkv_cache *c, kv_list *l, int n_tokens) {
    const int pt = c->p.page_tokens;
    if (n_tokens >= l->n_tokens)
        return;
    int keep_pages = (n_tokens + pt - 1) / pt;
    for (int j = keep_pages; j < l->n_pages; j++)
        kv_page_unref(c, l->refs[j].page);
    l->n_pages = keep_pages;
    l->n_tokens = n_tokens;
    if (keep_pages > 0) {
        kv_ref *tail = &l->refs[keep_pages - 1];
        tail->n = n_tokens - (keep_pages - 1) * pt;
        if (tail->page->refcount == 1 && tail->page->fill > tail->n) {
            tail->page->fill = tail->n;
            kv_page_digest(c, tail->page, tail->n);
        }
        kv_list_refresh(c, l, keep_pages - 1);
    }
}

int lkv_seq_truncate(lkv_seq *s, int n_tokens) {
    if (!s || n_tokens < 0)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_truncate: bad sequence or n_tokens %d", n_tokens);
    for (int i = 0; i < s->c->n_lists; i++)
        list_truncate(s->c, &s->lists[i], n_tokens);
    return LKV_OK;
}

/* 1 if the slots kept into destination page dp (slots[i] for i in [dp*pt,
 * min(n, dp*pt + pt))) hold consecutive positions. Positions ascend along a
 * list, so the two ends tell. */
static int keep_dense(const lkv_cache *c, const kv_list *l, const int *slots, int n, int dp) {
    const int pt = c->p.page_tokens;
    int i0 = dp * pt, i1 = i0 + pt < n ? i0 + pt : n;
    int a = slots[i0], b = slots[i1 - 1];
    return (int64_t)kv_page_pos_at(c, l->refs[b / pt].page, b % pt) -
               kv_page_pos_at(c, l->refs[a / pt].page, a % pt) == i1 - 1 - i0;
}

/* Destination page dp cannot be compacted in place: it is shared, or it has no
 * positions array and the slots it would hold are not consecutive. */
static int keep_needs_fresh(const lkv_cache *c, const kv_list *l, const int *slots, int n,
                            int dp) {
    const kv_page *pg = l->refs[dp].page;
    return pg->refcount > 1 ||
           ((pg->flags & KV_PAGE_POS_BASE) && !keep_dense(c, l, slots, n, dp));
}

int lkv_seq_keep(lkv_seq *s, int layer, int head, const int *slots, int n) {
    if (!lh_ok(s, layer, head) || n < 0 || (!slots && n > 0))
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_keep: bad arguments");
    lkv_cache *c = s->c;
    kv_list *l = list_of(s, layer, head);
    const int pt = c->p.page_tokens;
    for (int i = 0; i < n; i++)
        if (slots[i] < 0 || slots[i] >= l->n_tokens || (i && slots[i] <= slots[i - 1]))
            LKV_FAIL(LKV_ERR_RANGE, "lkv_seq_keep: slot %d (index %d) not ascending or >= %d",
                     slots[i], i, l->n_tokens);
    int i0 = 0; /* leading slots that stay where they are */
    while (i0 < n && slots[i0] == i0)
        i0++;
    if (i0 == n) {
        list_truncate(c, l, n);
        return LKV_OK;
    }
    int dp0 = i0 / pt, new_np = (n + pt - 1) / pt;
    /* phase 1: a fresh page for every destination page we may not write in
     * place (shared, or without a positions array and about to hold a gap) */
    size_t need = 0;
    for (int dp = dp0; dp < new_np; dp++)
        need += keep_needs_fresh(c, l, slots, n, dp);
    /* scratch: fresh [need], old [n_pages], dst [n_pages], then the first
     * position of every destination page, as int32 */
    size_t n_first = (size_t)(new_np - dp0);
    size_t first_words = (n_first * sizeof(int32_t) + sizeof(kv_page *) - 1) / sizeof(kv_page *);
    LKV_TRY(tmp_reserve(s, need + (size_t)l->n_pages * 2 + first_words));
    kv_page **fresh = s->tmp_pages, **old = s->tmp_pages + need;
    int32_t *first_pos = (int32_t *)(void *)(old + 2 * (size_t)l->n_pages);
    for (int dp = dp0; dp < new_np; dp++) { /* read before the compaction moves them */
        int sl = slots[dp * pt];
        first_pos[dp - dp0] = kv_page_pos_at(c, l->refs[sl / pt].page, sl % pt);
    }
    size_t got = 0;
    for (int dp = dp0; dp < new_np; dp++) {
        if (!keep_needs_fresh(c, l, slots, n, dp))
            continue;
        int rc = kv_page_new(c, l->refs[dp].page->format, keep_dense(c, l, slots, n, dp), layer,
                             head, &fresh[got]);
        if (rc < 0) {
            for (size_t q = 0; q < got; q++)
                kv_page_unref(c, fresh[q]);
            return rc;
        }
        got++;
    }
    /* phase 2: stable compaction; destination index <= source index, so in-place
     * writes never overwrite a slot still to be read */
    for (int j = 0; j < l->n_pages; j++)
        old[j] = l->refs[j].page;
    kv_page **dst = old + l->n_pages; /* [new_np - dp0] */
    size_t f = 0;
    for (int dp = dp0; dp < new_np; dp++) {
        kv_page *o = old[dp];
        if (keep_needs_fresh(c, l, slots, n, dp)) {
            kv_page *np = fresh[f++];
            if (dp == dp0 && i0 % pt)
                kv_page_copy_slots(c, np, 0, o, 0, i0 % pt);
            dst[dp - dp0] = np;
        } else {
            dst[dp - dp0] = o;
        }
    }
    for (int i = i0; i < n; i++) {
        int sp = slots[i] / pt, so = slots[i] % pt, dp = i / pt, ds = i % pt;
        kv_page_copy_slots(c, dst[dp - dp0], ds, old[sp], so, 1);
    }
    for (int dp = dp0; dp < new_np; dp++) {
        kv_page *pg = dst[dp - dp0];
        int cnt = n - dp * pt < pt ? n - dp * pt : pt;
        if (pg != old[dp])
            kv_page_unref(c, old[dp]);
        if (pg->flags & KV_PAGE_POS_BASE)
            pg->pos0 = first_pos[dp - dp0];
        pg->fill = cnt;
        /* recomputed when read (Quest, ArkVale, page info): a decode-time
         * eviction rewrites half the list per step, and recomputing every
         * digest then measured as the main cost of H2O and TOVA decoding */
        pg->flags |= KV_PAGE_DIGEST_STALE;
        l->refs[dp].page = pg;
        l->refs[dp].n = cnt;
    }
    for (int j = new_np; j < l->n_pages; j++)
        kv_page_unref(c, old[j]);
    l->n_pages = new_np;
    l->n_tokens = n;
    kv_list_refresh(c, l, dp0);
    return LKV_OK;
}

/* ------------------------------------------------------------ attention */

/* Moves the start of a run t rows on: every array the kernels advance by whole
 * rows (K, V, per-token aux, positions, observer) moves; KIVI's key aux is
 * per page (per key group) and stays. */
static void run_skip(lkv_kv_run *r, int t, int d) {
    size_t k_row, k_aux_row, v_row, v_aux_row;
    size_t es = lkv_dtype_size(r->dtype);
    if (es) {
        k_row = v_row = es * (size_t)d;
        k_aux_row = v_aux_row = 0;
    } else { /* per token; a KIVI run moved into a tile is put right by split_part_tile */
        k_row = v_row = lkv_kvq_row_bytes(r->dtype, d);
        k_aux_row = lkv_kvq_kaux_row_bytes(r->dtype, d);
        v_aux_row = lkv_kvq_vaux_row_bytes(r->dtype, d);
    }
    r->k = (const char *)r->k + (size_t)t * k_row;
    r->v = (const char *)r->v + (size_t)t * v_row;
    if (r->k_aux)
        r->k_aux = (const char *)r->k_aux + (size_t)t * k_aux_row;
    if (r->v_aux)
        r->v_aux = (const char *)r->v_aux + (size_t)t * v_aux_row;
    if (r->pos)
        r->pos += t;
    else
        r->pos0 += t;
    if (r->obs)
        r->obs += t;
    r->n -= t;
}

/* A KIVI run can only start at a tile (kv_quant.h). When a clipped one does
 * not, its keys up to the next tile are decoded into tmp ([2][16][d] f32) and
 * become an f32 run of their own, inserted before it. runs has room for one
 * more. Returns the new number of runs. */
static int split_part_tile(lkv_kv_run *runs, int n_runs, int skipped, int d, float *tmp) {
    const int off = skipped % LKV_KVQ_TILE;
    if (n_runs == 0 || !lkv_kvq_bits(runs[0].dtype) || off == 0)
        return n_runs;
    const lkv_kv_run run = runs[0];
    const int m = LKV_KVQ_TILE - off < run.n ? LKV_KVQ_TILE - off : run.n;
    /* decode from the tile: the clipped run's first token is its token off */
    const size_t rb = lkv_kvq_row_bytes(run.dtype, d);
    lkv_kvq_decode(run.dtype, d, (const char *)run.k - (size_t)off * rb, run.k_aux,
                   (const char *)run.v - (size_t)off * rb,
                   (const char *)run.v_aux - (size_t)off * lkv_kvq_vaux_row_bytes(run.dtype, d),
                   off, m, tmp, tmp + (size_t)LKV_KVQ_TILE * d);
    lkv_kv_run part = run;
    part.dtype = LKV_DTYPE_F32;
    part.k = tmp;
    part.v = tmp + (size_t)LKV_KVQ_TILE * d;
    part.k_aux = part.v_aux = NULL;
    part.n = m;
    runs[0] = part;
    if (m == run.n)
        return n_runs;
    memmove(runs + 2, runs + 1, (size_t)(n_runs - 1) * sizeof *runs);
    runs[1] = run;
    run_skip(&runs[1], m, d); /* now at the next tile */
    return n_runs + 1;
}

/* Cuts the runs of one head down to slots [slot0, slot1) of its list (the runs
 * cover the whole list in order). Returns the new number of runs, which start
 * at runs[0]. */
static int runs_clip(lkv_kv_run *runs, int n_runs, int slot0, int slot1, int d, float *tmp) {
    int skipped = 0; /* keys the first kept run lost at its start */
    int out = 0, start = 0;
    for (int i = 0; i < n_runs; i++) {
        lkv_kv_run r = runs[i];
        int end = start + r.n;
        int lo = slot0 > start ? slot0 : start, hi = slot1 < end ? slot1 : end;
        start = end;
        if (lo >= hi)
            continue;
        if (out == 0)
            skipped = lo - (end - r.n);
        run_skip(&r, lo - (end - r.n), d);
        r.n = hi - lo;
        runs[out++] = r;
    }
    return split_part_tile(runs, out, skipped, d, tmp);
}

static int attend_impl(lkv_seq *s, int layer, const lkv_attn_params *p, int n_q, const float *q,
                       const int32_t *q_pos, const int *sel, const int *sel_count, int sel_stride,
                       int slot0, int slot1, float *o, float *lse, float *obs, int obs_stride,
                       lkv_threadpool *tp) {
    if (!s || !p || layer < 0 || layer >= s->c->p.n_layers)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_attend: bad sequence, params or layer");
    lkv_cache *c = s->c;
    const int Hk = c->p.kv_heads, pt = c->p.page_tokens;
    if (p->kv_heads != Hk || p->head_dim != c->p.head_dim)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_attend: params say %d kv heads of dim %d, cache has %d of %d",
                 p->kv_heads, p->head_dim, Hk, c->p.head_dim);
    if (obs && obs_stride < lkv_seq_max_tokens(s, layer))
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_attend: obs_stride %d < %d tokens held", obs_stride,
                 lkv_seq_max_tokens(s, layer));
    if (sel && (!sel_count || sel_stride < 0))
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_attend_pages: NULL sel_count or bad stride");
    size_t total = 0;
    int32_t last = -1;
    int any = 0;
    for (int h = 0; h < Hk; h++) {
        const kv_list *l = list_of(s, layer, h);
        int has;
        int32_t lp = list_last_pos(c, l, &has);
        if (has && (!any || lp > last))
            last = lp;
        any |= has;
        if (!sel) {
            total += (size_t)l->n_pages;
            continue;
        }
        if (sel_count[h] < 0 || sel_count[h] > l->n_pages)
            LKV_FAIL(LKV_ERR_RANGE, "lkv_seq_attend_pages: head %d selects %d of %d pages", h,
                     sel_count[h], l->n_pages);
        for (int i = 0; i < sel_count[h]; i++) {
            int pg = sel[(size_t)h * sel_stride + i];
            if (pg < 0 || pg >= l->n_pages || (i && pg <= sel[(size_t)h * sel_stride + i - 1]))
                LKV_FAIL(LKV_ERR_RANGE, "lkv_seq_attend_pages: head %d page %d bad or not ascending",
                         h, pg);
        }
        total += (size_t)sel_count[h];
    }
    total += (size_t)Hk; /* lkv_seq_attend_slots may split one run per head */
    if (total > s->runs_cap) {
        size_t cap = s->runs_cap ? s->runs_cap : 64;
        while (cap < total)
            cap *= 2;
        lkv_kv_run *r = lkv_realloc(s->runs, cap * sizeof *r);
        if (!r)
            LKV_FAIL(LKV_ERR_NOMEM, "lkv_seq_attend: out of memory for %zu runs", total);
        s->runs = r;
        s->runs_cap = cap;
    }
    /* One run per page, except that consecutive pages whose K and V extents lie
     * back to back in the pool (pages appended together) and whose positions
     * continue are merged into one run with implicit positions: the kernel then
     * streams them like a contiguous tensor. The test is cached in the refs'
     * flags, so merged pages are not even touched here. */
    if (slot0 > 0 && !s->tile_f32) {
        s->tile_f32 = lkv_malloc(sizeof(float) * 2 * LKV_KVQ_TILE * (size_t)Hk * c->p.head_dim);
        if (!s->tile_f32)
            LKV_FAIL(LKV_ERR_NOMEM, "lkv_seq_attend_slots: out of memory");
    }
    size_t ri = 0;
    for (int h = 0; h < Hk; h++) {
        const kv_list *l = list_of(s, layer, h);
        int cnt = sel ? sel_count[h] : l->n_pages;
        s->heads[h].runs = s->runs + ri;
        size_t first = ri;
        int prev_pi = -2;
        for (int i = 0; i < cnt; i++) {
            int pi = sel ? sel[(size_t)h * sel_stride + i] : i;
            const kv_ref *r = &l->refs[pi];
            if (prev_pi == pi - 1 && (r->flags & KV_REF_CONT) && ri > first &&
                s->runs[ri - 1].pos == NULL) {
                s->runs[ri - 1].n += r->n;
            } else {
                const kv_page *pg = r->page;
                kv_page_ptrs a = kv_page_arrays(c, pg);
                lkv_kv_run *run = &s->runs[ri++];
                run->dtype = kv_format_get(pg->format)->kernel_dtype;
                run->k = a.k;
                run->v = a.v;
                run->k_aux = a.k_aux;
                run->v_aux = a.v_aux;
                /* dense pages (every page without an array is) run on pos0 alone */
                run->pos = (r->flags & KV_REF_DENSE) ? NULL : kv_page_pos(c, pg);
                run->pos0 = r->n > 0 ? kv_page_pos_at(c, pg, 0) : 0;
                run->n = r->n;
                run->obs = obs ? obs + (size_t)h * obs_stride + (size_t)pi * pt : NULL;
            }
            prev_pi = pi;
        }
        s->heads[h].n_runs = (int)(ri - first);
        if (slot0 > 0 || slot1 < l->n_tokens) { /* lkv_seq_attend_slots (never with sel) */
            s->heads[h].n_runs = runs_clip(s->runs + first, s->heads[h].n_runs, slot0, slot1,
                                           c->p.head_dim,
                                           s->tile_f32 + (size_t)h * 2 * LKV_KVQ_TILE * c->p.head_dim);
            ri = first + (size_t)s->heads[h].n_runs; /* a split run may have grown the list */
        }
    }
    int32_t q_pos0 = 0;
    if (!q_pos)
        q_pos0 = (any ? last : n_q - 1) - n_q + 1;
    return lkv_attn_runs(p, n_q, q, q_pos, q_pos0, s->heads, o, lse, tp);
}

int lkv_seq_attend(lkv_seq *s, int layer, const lkv_attn_params *p, int n_q, const float *q,
                   const int32_t *q_pos, float *o, float *lse, lkv_threadpool *tp) {
    return attend_impl(s, layer, p, n_q, q, q_pos, NULL, NULL, 0, 0, INT_MAX, o, lse, NULL, 0,
                       tp);
}

int lkv_seq_attend_observe(lkv_seq *s, int layer, const lkv_attn_params *p, int n_q,
                           const float *q, const int32_t *q_pos, float *o, float *lse,
                           float *obs, int obs_stride, lkv_threadpool *tp) {
    if (!obs)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_attend_observe: NULL obs");
    return attend_impl(s, layer, p, n_q, q, q_pos, NULL, NULL, 0, 0, INT_MAX, o, lse, obs,
                       obs_stride, tp);
}

int lkv_seq_attend_pages(lkv_seq *s, int layer, const lkv_attn_params *p, int n_q,
                         const float *q, const int32_t *q_pos, const int *sel,
                         const int *sel_count, int sel_stride, float *o, float *lse,
                         float *obs, int obs_stride, lkv_threadpool *tp) {
    if (!sel)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_attend_pages: NULL sel");
    return attend_impl(s, layer, p, n_q, q, q_pos, sel, sel_count, sel_stride, 0, INT_MAX, o, lse,
                       obs, obs_stride, tp);
}

int lkv_seq_attend_slots(lkv_seq *s, int layer, const lkv_attn_params *p, int n_q,
                         const float *q, const int32_t *q_pos, int slot0, int slot1, float *o,
                         float *lse, lkv_threadpool *tp) {
    if (slot0 < 0 || slot1 < slot0)
        LKV_FAIL(LKV_ERR_RANGE, "lkv_seq_attend_slots: bad slot range [%d, %d)", slot0, slot1);
    return attend_impl(s, layer, p, n_q, q, q_pos, NULL, NULL, 0, slot0, slot1, o, lse, NULL, 0,
                       tp);
}
