/* prefix.c -- the prefix cache: full pages published under chained hashes of
 * their tokens, reused by later sequences, evicted LRU under budget pressure.
 *
 * An entry ("block" j) covers tokens [j*P, (j+1)*P) of a prompt and holds one
 * reference to page j of every (layer, head). Its key chains the whole prefix:
 *   h_j = hash64(tokens of block j, seed = mix(mix(mix(h_{j-1}, model_id), policy_id), j))
 * so equal keys mean equal prefixes (up to 64-bit collisions, which we also
 * rule out by comparing the block's tokens on lookup).
 * An entry is evictable when unpinned and no sequence uses its pages (every
 * holder of each of its pages is a prefix entry: refcount == n_prefix; two
 * entries can share pages when a prompt attached under one policy id is
 * published under another). Lookups move entries to the front of the LRU list
 * deepest-first, so that shallower blocks are more recent and leaves go first.
 */
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "common/hash.h"
#include "kv/kv.h"

static uint64_t block_hash(const lkv_cache *c, uint64_t parent, const int32_t *tokens, int j,
                           uint64_t policy_id) {
    uint64_t seed = lkv_hash_mix(lkv_hash_mix(lkv_hash_mix(parent, c->p.model_id), policy_id),
                                 (uint64_t)j);
    /* hash the little-endian bytes of the tokens, so keys are host-independent */
    uint8_t buf[4 * 64];
    uint64_t h = seed;
    int pt = c->p.page_tokens;
    for (int i0 = 0; i0 < pt; i0 += 64) {
        int m = pt - i0 < 64 ? pt - i0 : 64;
        for (int i = 0; i < m; i++) {
            uint32_t t = (uint32_t)tokens[i0 + i];
            buf[4 * i] = (uint8_t)t;
            buf[4 * i + 1] = (uint8_t)(t >> 8);
            buf[4 * i + 2] = (uint8_t)(t >> 16);
            buf[4 * i + 3] = (uint8_t)(t >> 24);
        }
        h = lkv_hash64(buf, (size_t)m * 4, h);
    }
    return h;
}

static kv_pentry *lookup(const lkv_cache *c, uint64_t h, const int32_t *tokens, int j) {
    if (!c->prefix.n_buckets)
        return NULL;
    for (kv_pentry *e = c->prefix.buckets[h & (c->prefix.n_buckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->block == j &&
            !memcmp(e->tokens, tokens, (size_t)c->p.page_tokens * sizeof *tokens))
            return e;
    return NULL;
}

static void lru_unlink(kv_prefix *px, kv_pentry *e) {
    if (e->lprev)
        e->lprev->lnext = e->lnext;
    else
        px->lru_head = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    else
        px->lru_tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void lru_front(kv_prefix *px, kv_pentry *e) {
    e->lprev = NULL;
    e->lnext = px->lru_head;
    if (px->lru_head)
        px->lru_head->lprev = e;
    px->lru_head = e;
    if (!px->lru_tail)
        px->lru_tail = e;
}

static void entry_remove(lkv_cache *c, kv_pentry *e) {
    kv_prefix *px = &c->prefix;
    kv_pentry **pp = &px->buckets[e->hash & (px->n_buckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(px, e);
    px->n_entries--;
    for (int i = 0; i < c->n_lists; i++) {
        e->pages[i]->n_prefix--;
        kv_page_unref(c, e->pages[i]);
    }
    lkv_free(e);
}

void kv_prefix_destroy(lkv_cache *c) {
    while (c->prefix.lru_head)
        entry_remove(c, c->prefix.lru_head);
    lkv_free(c->prefix.buckets);
    memset(&c->prefix, 0, sizeof c->prefix);
}

int64_t kv_prefix_n_pages(const lkv_cache *c) { return c->prefix.n_entries * c->n_lists; }

static int evictable(const lkv_cache *c, const kv_pentry *e) {
    if (e->pins > 0)
        return 0;
    for (int i = 0; i < c->n_lists; i++)
        if (e->pages[i]->refcount != e->pages[i]->n_prefix) /* a sequence uses it */
            return 0;
    return 1;
}

int kv_prefix_evict_one(lkv_cache *c) {
    for (kv_pentry *e = c->prefix.lru_tail; e; e = e->lprev)
        if (evictable(c, e)) {
            entry_remove(c, e);
            c->n_evictions++;
            return 1;
        }
    return 0;
}

int lkv_cache_evict_prefix(lkv_cache *c, size_t bytes) {
    if (!c)
        return 0;
    int n = 0;
    size_t before = c->pool.committed;
    while ((bytes == SIZE_MAX || before - c->pool.committed < bytes) && kv_prefix_evict_one(c))
        n++;
    return n;
}

static int grow_buckets(kv_prefix *px) {
    size_t nb = px->n_buckets ? px->n_buckets * 2 : 64;
    kv_pentry **b = lkv_calloc(nb, sizeof *b);
    if (!b)
        LKV_FAIL(LKV_ERR_NOMEM, "kv: out of memory growing the prefix table");
    for (size_t i = 0; i < px->n_buckets; i++)
        for (kv_pentry *e = px->buckets[i], *nx; e; e = nx) {
            nx = e->hnext;
            e->hnext = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    lkv_free(px->buckets);
    px->buckets = b;
    px->n_buckets = nb;
    return LKV_OK;
}

int lkv_seq_publish(lkv_seq *s, const int32_t *tokens, int n_tokens, uint64_t policy_id,
                    int *n_published) {
    if (n_published)
        *n_published = 0;
    if (!s || (!tokens && n_tokens > 0) || n_tokens < 0)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_publish: bad arguments");
    lkv_cache *c = s->c;
    kv_prefix *px = &c->prefix;
    const int pt = c->p.page_tokens;
    uint64_t h = 0;
    int j = 0;
    for (; (j + 1) * pt <= n_tokens; j++) {
        /* every list must hold page j full, with positions j*P + t */
        int ok = 1;
        for (int i = 0; i < c->n_lists && ok; i++) {
            const kv_list *l = &s->lists[i];
            if (l->n_pages <= j || l->refs[j].n != pt) {
                ok = 0;
                break;
            }
            const kv_page *pg = l->refs[j].page;
            for (int t = 0; t < pt; t++)
                if (kv_page_pos_at(c, pg, t) != j * pt + t) {
                    ok = 0;
                    break;
                }
        }
        if (!ok)
            break;
        h = block_hash(c, h, tokens + (size_t)j * pt, j, policy_id);
        kv_pentry *e = lookup(c, h, tokens + (size_t)j * pt, j);
        if (e) {
            lru_unlink(px, e);
            lru_front(px, e);
            continue;
        }
        if ((size_t)px->n_entries >= px->n_buckets)
            LKV_TRY(grow_buckets(px));
        size_t bytes = sizeof *e + (size_t)pt * sizeof(int32_t) + (size_t)c->n_lists * sizeof(kv_page *);
        e = lkv_calloc(1, bytes);
        if (!e)
            LKV_FAIL(LKV_ERR_NOMEM, "lkv_seq_publish: out of memory");
        e->pages = (kv_page **)(e + 1);
        e->tokens = (int32_t *)(e->pages + c->n_lists);
        memcpy(e->tokens, tokens + (size_t)j * pt, (size_t)pt * sizeof(int32_t));
        e->hash = h;
        e->block = j;
        for (int i = 0; i < c->n_lists; i++) {
            e->pages[i] = s->lists[i].refs[j].page;
            e->pages[i]->refcount++;
            e->pages[i]->n_prefix++;
        }
        size_t b = h & (px->n_buckets - 1);
        e->hnext = px->buckets[b];
        px->buckets[b] = e;
        lru_front(px, e);
        px->n_entries++;
        if (n_published)
            *n_published = (j + 1) * pt;
    }
    if (n_published)
        *n_published = j * pt;
    return LKV_OK;
}

/* Finds the chain of published blocks for tokens; returns how many. */
static int find_chain(lkv_cache *c, const int32_t *tokens, int n_tokens, uint64_t policy_id,
                      kv_pentry **chain, int max) {
    const int pt = c->p.page_tokens;
    uint64_t h = 0;
    int j = 0;
    for (; j < max && (j + 1) * pt <= n_tokens; j++) {
        h = block_hash(c, h, tokens + (size_t)j * pt, j, policy_id);
        kv_pentry *e = lookup(c, h, tokens + (size_t)j * pt, j);
        if (!e)
            break;
        if (chain)
            chain[j] = e;
    }
    return j;
}

int lkv_seq_attach_prefix(lkv_seq *s, const int32_t *tokens, int n_tokens, uint64_t policy_id,
                          int *n_reused) {
    if (n_reused)
        *n_reused = 0;
    if (!s || (!tokens && n_tokens > 0) || n_tokens < 0)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_attach_prefix: bad arguments");
    lkv_cache *c = s->c;
    for (int i = 0; i < c->n_lists; i++)
        if (s->lists[i].n_pages)
            LKV_FAIL(LKV_ERR_STATE, "lkv_seq_attach_prefix: the sequence is not empty");
    int nb = find_chain(c, tokens, n_tokens, policy_id, NULL, INT32_MAX);
    if (nb == 0)
        return LKV_OK;
    kv_pentry **chain = lkv_malloc((size_t)nb * sizeof *chain);
    if (!chain)
        LKV_FAIL(LKV_ERR_NOMEM, "lkv_seq_attach_prefix: out of memory");
    find_chain(c, tokens, n_tokens, policy_id, chain, nb);
    for (int i = 0; i < c->n_lists; i++) {
        int rc = kv_list_reserve(&s->lists[i], nb);
        if (rc < 0) {
            lkv_free(chain);
            return rc;
        }
    }
    const int pt = c->p.page_tokens;
    for (int i = 0; i < c->n_lists; i++) {
        kv_list *l = &s->lists[i];
        for (int j = 0; j < nb; j++) {
            l->refs[j].page = chain[j]->pages[i];
            l->refs[j].n = pt;
            chain[j]->pages[i]->refcount++;
        }
        l->n_pages = nb;
        l->n_tokens = nb * pt;
        kv_list_refresh(c, l, 0);
    }
    for (int j = nb - 1; j >= 0; j--) { /* deepest first: shallow blocks end most recent */
        lru_unlink(&c->prefix, chain[j]);
        lru_front(&c->prefix, chain[j]);
    }
    lkv_free(chain);
    if (n_reused)
        *n_reused = nb * pt;
    return LKV_OK;
}

int lkv_cache_pin_prefix(lkv_cache *c, const int32_t *tokens, int n_tokens, uint64_t policy_id,
                         int pin, int *n_found) {
    if (n_found)
        *n_found = 0;
    if (!c || (!tokens && n_tokens > 0) || n_tokens < 0)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_cache_pin_prefix: bad arguments");
    const int pt = c->p.page_tokens;
    uint64_t h = 0;
    int j = 0;
    for (; (j + 1) * pt <= n_tokens; j++) {
        h = block_hash(c, h, tokens + (size_t)j * pt, j, policy_id);
        kv_pentry *e = lookup(c, h, tokens + (size_t)j * pt, j);
        if (!e)
            break;
        if (pin)
            e->pins++;
        else if (e->pins > 0)
            e->pins--;
    }
    if (n_found)
        *n_found = j * pt;
    return LKV_OK;
}
