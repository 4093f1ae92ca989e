/* cache.c -- the cache object, its pages (layout, allocation, digests,
 * copies) and its counters. Sequences are in seq.c, the prefix cache in
 * prefix.c, snapshots in snapshot.c.
 */
#include <float.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "kv/kv.h"

#define R64(x) (((x) + 63) / 64 * 64)

lkv_cache_params lkv_cache_default_params(void) {
    lkv_cache_params p;
    memset(&p, 0, sizeof p);
    p.page_tokens = 16;
    p.dtype = LKV_DTYPE_F16;
    p.budget_bytes = (size_t)1 << 30;
    return p;
}

static kv_layout layout_of(const kv_format *f, int base, int pt, int d) {
    kv_layout L;
    size_t off = R64(sizeof(kv_page));
    L.pos = base ? 0 : off; /* KV_PAGE_POS_BASE: no positions array */
    if (!base)
        off += R64((size_t)pt * 4);
    L.kmin = L.kmax = 0; /* derived digest (KIVI): nothing stored */
    if (!f->digest) {
        L.kmin = off;
        off += R64((size_t)d * 4);
        L.kmax = off;
        off += R64((size_t)d * 4);
    }
    L.k_aux = off;
    off += R64(f->k_aux_bytes(pt, d));
    L.v_aux = off;
    off += R64(f->v_aux_bytes(pt, d));
    L.bytes[KV_ROLE_META] = off;
    L.bytes[KV_ROLE_K] = R64(f->k_bytes(pt, d));
    L.bytes[KV_ROLE_V] = R64(f->v_bytes(pt, d));
    return L;
}

static size_t page_bytes(const kv_layout *L) {
    return L->bytes[KV_ROLE_META] + L->bytes[KV_ROLE_K] + L->bytes[KV_ROLE_V];
}

int lkv_cache_create(const lkv_cache_params *p, lkv_cache **out) {
    if (!p || !out)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_cache_create: NULL argument");
    *out = NULL;
    lkv_cache_params q = *p;
    if (q.page_tokens == 0)
        q.page_tokens = 16;
    if (q.n_layers < 1 || q.kv_heads < 1 || q.n_layers > 4096 || q.kv_heads > 1024)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_cache_create: n_layers %d / kv_heads %d out of range",
                 q.n_layers, q.kv_heads);
    if (q.head_dim < 8 || q.head_dim > 256 || q.head_dim % 8)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_cache_create: head_dim %d (need a multiple of 8 in 8..256)",
                 q.head_dim);
    if (q.page_tokens < 1 || q.page_tokens > 4096)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_cache_create: page_tokens %d (need 1..4096)", q.page_tokens);
    if (!kv_format_get((int)q.dtype))
        LKV_FAIL(LKV_ERR_INVALID, "lkv_cache_create: dtype %d cannot be stored", (int)q.dtype);
    if (q.dtype == LKV_DTYPE_KIVI4 || q.dtype == LKV_DTYPE_KIVI2) /* key groups span a page */
        LKV_FAIL(LKV_ERR_INVALID, "lkv_cache_create: dtype %s: KIVI pages are made from full "
                 "pages by lkv_seq_convert; create the cache with f16 (or q8) pages",
                 lkv_dtype_name(q.dtype));
    lkv_cache *c = lkv_calloc(1, sizeof *c);
    if (!c)
        LKV_FAIL(LKV_ERR_NOMEM, "lkv_cache_create: out of memory");
    c->p = q;
    c->n_lists = q.n_layers * q.kv_heads;
    int rc = kv_pool_init(&c->pool, q.budget_bytes);
    if (rc < 0) {
        lkv_free(c);
        return rc;
    }
    for (int f = 0; f < LKV_PAGE_FORMAT_COUNT; f++)
        for (int b = 0; b < 2; b++) {
            c->layout[f][b] = layout_of(kv_format_get(f), b, q.page_tokens, q.head_dim);
            for (int r = 0; r < KV_ROLES; r++)
                c->cls_of[f][b][r] = -1;
        }
    c->list_bytes = lkv_calloc((size_t)c->n_lists, sizeof *c->list_bytes);
    if (!c->list_bytes) {
        kv_pool_destroy(&c->pool);
        lkv_free(c);
        LKV_FAIL(LKV_ERR_NOMEM, "lkv_cache_create: out of memory");
    }
    *out = c;
    return LKV_OK;
}

void lkv_cache_free(lkv_cache *c) {
    if (!c)
        return;
    while (c->seqs)
        lkv_seq_free(c->seqs);
    kv_prefix_destroy(c);
    kv_pool_destroy(&c->pool);
    lkv_free(c->list_bytes);
    lkv_free(c);
}

lkv_cache_params lkv_cache_get_params(const lkv_cache *c) {
    if (!c) {
        lkv_cache_params z;
        memset(&z, 0, sizeof z);
        return z;
    }
    return c->p;
}

int lkv_cache_get_stats(const lkv_cache *c, lkv_cache_stats *out) {
    if (!c || !out)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_cache_get_stats: NULL argument");
    memset(out, 0, sizeof *out);
    const kv_pool *pl = &c->pool;
    out->budget = pl->budget;
    out->reserved = pl->reserved;
    out->committed = pl->committed;
    out->in_use = pl->in_use;
    out->free_bytes = pl->budget - pl->committed;
    out->peak_committed = pl->peak;
    size_t meta = 0;
    for (const lkv_seq *s = c->seqs; s; s = s->next) {
        meta += sizeof *s + (size_t)c->n_lists * sizeof(kv_list) + s->runs_cap * sizeof(lkv_kv_run) +
                (size_t)c->p.page_tokens * sizeof(int32_t) + (size_t)2 * c->p.head_dim * sizeof(float) +
                (size_t)c->p.kv_heads * sizeof(lkv_kv_head_runs) + s->tmp_cap * sizeof(kv_page *);
        for (int i = 0; i < c->n_lists; i++)
            meta += (size_t)s->lists[i].cap * sizeof(kv_ref);
    }
    for (int i = 0; i < pl->n_cls; i++)
        meta += (size_t)pl->cls[i].stack_cap * 4 + pl->cls[i].mapped / pl->os_page * 2;
    meta += (size_t)c->prefix.n_entries *
                (sizeof(kv_pentry) + (size_t)c->p.page_tokens * 4 + (size_t)c->n_lists * sizeof(void *)) +
            c->prefix.n_buckets * sizeof(void *);
    out->meta_bytes = meta;
    out->n_pages = c->n_pages;
    out->n_prefix_pages = kv_prefix_n_pages(c);
    out->n_prefix_entries = c->prefix.n_entries;
    out->n_sequences = c->n_seqs;
    out->n_commits = pl->n_commits;
    out->n_releases = pl->n_releases;
    out->n_evictions = c->n_evictions;
    out->n_backup_pages = c->n_backup_pages;
    out->backup_bytes = c->backup_bytes;
    out->n_offloads = c->n_offloads;
    out->n_recalls = c->n_recalls;
    return LKV_OK;
}

size_t lkv_cache_bytes(const lkv_cache *c, int layer, int head) {
    if (!c || layer >= c->p.n_layers || head >= c->p.kv_heads)
        return 0;
    size_t sum = 0;
    for (int l = 0; l < c->p.n_layers; l++)
        for (int h = 0; h < c->p.kv_heads; h++)
            if ((layer < 0 || l == layer) && (head < 0 || h == head))
                sum += c->list_bytes[l * c->p.kv_heads + h];
    return sum;
}

/* ------------------------------------------------------------ pages */

/* The pool class of a role's extents for pages of (format, base). */
static int ensure_class(lkv_cache *c, int format, int base, int role) {
    if (c->cls_of[format][base][role] < 0) {
        int cls = kv_pool_class(&c->pool, c->layout[format][base].bytes[role], role);
        if (cls < 0)
            return cls;
        c->cls_of[format][base][role] = cls;
    }
    return LKV_OK;
}

void kv_list_release_stash(lkv_cache *c, kv_list *l) {
    for (; l->stash_n > 0; l->stash_n--)
        for (int r = 0; r < KV_ROLES; r++)
            kv_pool_unreserve(&c->pool, c->cls_of[l->stash_fmt][0][r], l->stash[r]++);
}

static void release_all_stashes(lkv_cache *c) {
    for (lkv_seq *s = c->seqs; s; s = s->next)
        for (int i = 0; i < c->n_lists; i++)
            kv_list_release_stash(c, &s->lists[i]);
}

/* One extent of a role; under budget pressure evicts prefix entries first;
 * when the address range is used up, gives back the lists' reserved runs. */
static int extent_new(lkv_cache *c, int format, int base, int role, void **mem,
                      uint32_t *index) {
    LKV_TRY(ensure_class(c, format, base, role));
    int rc, released = 0;
    for (;;) {
        rc = kv_pool_alloc(&c->pool, c->cls_of[format][base][role], mem, index);
        if (rc == LKV_ERR_BUDGET && kv_prefix_evict_one(c))
            continue;
        if (rc == LKV_ERR_RANGE && !released) {
            release_all_stashes(c);
            released = 1;
            continue;
        }
        break;
    }
    if (rc == LKV_ERR_RANGE)
        return lkv_set_error(LKV_ERR_BUDGET, "kv: page pool address range exhausted");
    return rc;
}

static kv_page *page_init(lkv_cache *c, int format, int base, int layer, int head, void **mem,
                          const uint32_t *index) {
    const kv_format *f = kv_format_get(format);
    kv_page *pg = mem[KV_ROLE_META];
    memset(pg, 0, sizeof *pg);
    pg->refcount = 1;
    pg->format = (int16_t)format;
    pg->flags = base ? KV_PAGE_POS_BASE : 0;
    pg->layer = (int16_t)layer;
    pg->head = (int16_t)head;
    for (int r = 0; r < KV_ROLES; r++) {
        pg->cls[r] = (int16_t)c->cls_of[format][base][r];
        pg->slot[r] = index[r];
    }
    pg->k = mem[KV_ROLE_K];
    pg->v = mem[KV_ROLE_V];
    float *mn = kv_page_kmin(c, pg), *mx = kv_page_kmax(c, pg);
    for (int i = 0; mn && i < c->p.head_dim; i++) {
        mn[i] = FLT_MAX;
        mx[i] = -FLT_MAX;
    }
    if (f->init) { /* quantized formats with page-wide scales (KIVI) */
        kv_page_ptrs a = kv_page_arrays(c, pg);
        f->init(&a, c->p.page_tokens, c->p.head_dim);
    }
    c->n_pages++;
    c->list_bytes[layer * c->p.kv_heads + head] += page_bytes(&c->layout[format][base]);
    return pg;
}

int kv_page_new(lkv_cache *c, int format, int base, int layer, int head, kv_page **out) {
    const kv_format *f = kv_format_get(format);
    if (!f)
        LKV_FAIL(LKV_ERR_INVALID, "kv: unknown page format %d", format);
    base = base && f->compact_pos;
    void *mem[KV_ROLES];
    uint32_t index[KV_ROLES];
    for (int r = 0; r < KV_ROLES; r++) {
        int rc = extent_new(c, format, base, r, &mem[r], &index[r]);
        if (rc < 0) {
            while (r-- > 0)
                kv_pool_free(&c->pool, c->cls_of[format][base][r], index[r]);
            return rc;
        }
    }
    *out = page_init(c, format, base, layer, head, mem, index);
    return LKV_OK;
}

int kv_page_new_in(lkv_cache *c, int format, int base, int layer, int head, kv_list *l,
                   kv_page **out) {
    const kv_format *f = kv_format_get(format);
    if (!f)
        LKV_FAIL(LKV_ERR_INVALID, "kv: unknown page format %d", format);
    /* Reserved runs keep the K/V extents of plain pages adjacent so that they
     * merge into runs (KV_REF_CONT); pages with per-page metadata never merge,
     * so formats that can drop their positions (all of them quantized) do not
     * need them. The stash thus only ever holds pages with positions. */
    if (f->compact_pos)
        return kv_page_new(c, format, base, layer, head, out);
    if (l->stash_n > 0 && l->stash_fmt != format)
        kv_list_release_stash(c, l);
    if (l->stash_n == 0) { /* reserve the next run; without room, a plain page */
        uint32_t first[KV_ROLES];
        int r = 0;
        for (; r < KV_ROLES; r++)
            if (ensure_class(c, format, 0, r) < 0 ||
                kv_pool_reserve_run(&c->pool, c->cls_of[format][0][r], KV_STASH_PAGES, &first[r]) < 0)
                break;
        if (r < KV_ROLES) {
            while (r-- > 0)
                for (uint32_t i = 0; i < KV_STASH_PAGES; i++)
                    kv_pool_unreserve(&c->pool, c->cls_of[format][0][r], first[r] + i);
            return kv_page_new(c, format, 0, layer, head, out);
        }
        memcpy(l->stash, first, sizeof first);
        l->stash_n = KV_STASH_PAGES;
        l->stash_fmt = (int16_t)format;
    }
    void *mem[KV_ROLES];
    for (int r = 0; r < KV_ROLES; r++) {
        int rc;
        for (;;) {
            rc = kv_pool_alloc_index(&c->pool, c->cls_of[format][0][r], l->stash[r], &mem[r]);
            if (rc != LKV_ERR_BUDGET || !kv_prefix_evict_one(c))
                break;
        }
        if (rc < 0) { /* back to reserved: the run stays intact */
            while (r-- > 0)
                kv_pool_uncommit(&c->pool, c->cls_of[format][0][r], l->stash[r]);
            return rc;
        }
    }
    uint32_t index[KV_ROLES];
    for (int r = 0; r < KV_ROLES; r++)
        index[r] = l->stash[r]++;
    l->stash_n--;
    *out = page_init(c, format, 0, layer, head, mem, index);
    return LKV_OK;
}

void kv_page_unref(lkv_cache *c, kv_page *pg) {
    if (!pg || --pg->refcount > 0)
        return;
    c->n_pages--;
    int offloaded = pg->backup != NULL; /* K/V in the backup tier, not in the pool */
    const kv_layout *L = kv_page_layout(c, pg);
    c->list_bytes[pg->layer * c->p.kv_heads + pg->head] -=
        offloaded ? L->bytes[KV_ROLE_META] : page_bytes(L);
    if (offloaded)
        kv_backup_release(c, pg);
    int16_t cls[KV_ROLES];
    uint32_t slot[KV_ROLES];
    memcpy(cls, pg->cls, sizeof cls);
    memcpy(slot, pg->slot, sizeof slot);
    for (int r = KV_ROLES - 1; r >= 0; r--) /* the header goes last */
        if (r == KV_ROLE_META || !offloaded) /* offloaded K/V: released above */
            kv_pool_free(&c->pool, cls[r], slot[r]);
}

const kv_layout *kv_page_layout(const lkv_cache *c, const kv_page *pg) {
    return &c->layout[pg->format][(pg->flags & KV_PAGE_POS_BASE) != 0];
}

kv_page_ptrs kv_page_arrays(const lkv_cache *c, const kv_page *pg) {
    const kv_layout *L = kv_page_layout(c, pg);
    uint8_t *b = (uint8_t *)pg;
    kv_page_ptrs r;
    r.k = pg->k;
    r.v = pg->v;
    r.k_aux = L->v_aux > L->k_aux ? b + L->k_aux : NULL;
    r.v_aux = L->bytes[KV_ROLE_META] > L->v_aux ? b + L->v_aux : NULL;
    return r;
}

int32_t *kv_page_pos(const lkv_cache *c, const kv_page *pg) {
    size_t off = kv_page_layout(c, pg)->pos;
    return off ? (int32_t *)((uint8_t *)pg + off) : NULL;
}

int32_t kv_page_pos_at(const lkv_cache *c, const kv_page *pg, int slot) {
    if (pg->flags & KV_PAGE_POS_BASE)
        return pg->pos0 + slot;
    return kv_page_pos(c, pg)[slot];
}

void kv_page_get_pos(const lkv_cache *c, const kv_page *pg, int slot0, int n, int32_t *out) {
    const int32_t *pos = kv_page_pos(c, pg);
    for (int i = 0; i < n; i++)
        out[i] = pos ? pos[slot0 + i] : pg->pos0 + slot0 + i;
}

void kv_page_set_pos(const lkv_cache *c, kv_page *pg, int slot, int32_t p) {
    int32_t *pos = kv_page_pos(c, pg);
    if (pos)
        pos[slot] = p;
    else
        pg->pos0 = p - slot; /* positions >= 0 and slot < 4096: no overflow */
}

int kv_pos_consecutive(const int32_t *pos, int n) {
    return !pos || n <= 1 || (int64_t)pos[n - 1] - pos[0] == n - 1;
}

float *kv_page_kmin(const lkv_cache *c, const kv_page *pg) {
    size_t off = kv_page_layout(c, pg)->kmin;
    return off ? (float *)((uint8_t *)pg + off) : NULL;
}
float *kv_page_kmax(const lkv_cache *c, const kv_page *pg) {
    size_t off = kv_page_layout(c, pg)->kmax;
    return off ? (float *)((uint8_t *)pg + off) : NULL;
}

void kv_page_get_digest(const lkv_cache *c, kv_page *pg, float *kmin, float *kmax) {
    const int d = c->p.head_dim;
    const kv_format *f = kv_format_get(pg->format);
    if (f->digest) { /* k_aux lives in the meta extent: valid while offloaded too */
        kv_page_ptrs a = kv_page_arrays(c, pg);
        f->digest(&a, c->p.page_tokens, d, kmin, kmax);
        return;
    }
    kv_page_digest_fresh(c, pg);
    memcpy(kmin, kv_page_kmin(c, pg), (size_t)d * sizeof(float));
    memcpy(kmax, kv_page_kmax(c, pg), (size_t)d * sizeof(float));
}

void kv_page_digest_fresh(const lkv_cache *c, kv_page *pg) {
    if (pg->flags & KV_PAGE_DIGEST_STALE)
        kv_page_digest(c, pg, pg->fill);
}

void kv_page_digest(const lkv_cache *c, kv_page *pg, int n) {
    int d = c->p.head_dim;
    float *mn = kv_page_kmin(c, pg), *mx = kv_page_kmax(c, pg);
    pg->flags &= (int16_t)~KV_PAGE_DIGEST_STALE;
    if (!mn)
        return; /* derived from the aux arrays (kv_format.digest) */
    for (int i = 0; i < d; i++) {
        mn[i] = FLT_MAX;
        mx[i] = -FLT_MAX;
    }
    const kv_format *f = kv_format_get(pg->format);
    kv_page_ptrs a = kv_page_arrays(c, pg);
    float row[256];
    for (int t = 0; t < n; t++) {
        f->read(&a, c->p.page_tokens, d, t, 1, row, NULL);
        for (int i = 0; i < d; i++) {
            if (row[i] < mn[i])
                mn[i] = row[i];
            if (row[i] > mx[i])
                mx[i] = row[i];
        }
    }
}

void kv_page_copy_slots(const lkv_cache *c, kv_page *dst, int dst0, const kv_page *src, int src0,
                        int n) {
    if (n <= 0)
        return;
    const kv_format *f = kv_format_get(src->format);
    const kv_format *fd = kv_format_get(dst->format); /* may differ: lists mix formats */
    int d = c->p.head_dim, pt = c->p.page_tokens;
    kv_page_ptrs a = kv_page_arrays(c, src), b = kv_page_arrays(c, dst);
    const int32_t *sp = kv_page_pos(c, src);
    int32_t *dp = kv_page_pos(c, dst);
    if (sp && dp)
        memmove(dp + dst0, sp + src0, (size_t)n * 4);
    else if (dp) /* from a page without an array */
        for (int t = 0; t < n; t++)
            dp[dst0 + t] = src->pos0 + src0 + t;
    /* into a page without an array: its base is the caller's to set (a
     * compaction in place may still read the page's old positions) */
    if (f->elem_bytes && f == fd) {
        size_t row = f->elem_bytes * (size_t)d;
        memmove((uint8_t *)b.k + dst0 * row, (const uint8_t *)a.k + src0 * row, n * row);
        memmove((uint8_t *)b.v + dst0 * row, (const uint8_t *)a.v + src0 * row, n * row);
        return;
    }
    /* formats without addressable rows: through f32 (their own copy comes later) */
    float kr[256], vr[256];
    for (int t = 0; t < n; t++) {
        f->read(&a, pt, d, src0 + t, 1, kr, vr);
        fd->write(&b, pt, d, dst0 + t, 1, kr, 0, vr, 0);
    }
}
