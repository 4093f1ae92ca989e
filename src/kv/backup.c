/* backup.c -- the backup tier: a page's K and V moved out of the pool and
 * recalled into it (ArkVale's recallable eviction, METHODS.md §5).
 *
 * An offloaded page keeps its header, positions and key digest in the pool
 * (the meta extent): selection still ranks it, the list still counts its
 * slots. Its K and V are copied into one heap block [K extent][V extent]
 * (pg->backup), and pg->k / pg->v point there, so every reader that goes
 * through kv_page_arrays (attention, lkv_seq_read, snapshots, conversion,
 * copy-on-write) keeps working and simply reads the slow tier. The two pool
 * extents are uncommitted (kv_pool_uncommit: their OS pages go back to the OS
 * once no other extent touches them) but their indices stay reserved, so a
 * recall commits the very same addresses again and the page still lies back
 * to back with its neighbours (one attention run, KV_REF_CONT).
 *
 * The backup tier is ordinary heap memory outside the budget (on a CPU the
 * "slow tier" is memory the budget does not cover; a file or a store could
 * take its place behind the same two calls). Its bytes are counted in
 * lkv_cache_stats.backup_bytes.
 */
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "kv/kv.h"

static size_t kv_extent_bytes(const lkv_cache *c, const kv_page *pg) {
    const kv_layout *L = kv_page_layout(c, pg);
    return L->bytes[KV_ROLE_K] + L->bytes[KV_ROLE_V];
}

/* Run flags of every list holding pg depend on its K/V addresses: recompute
 * them in each sequence's (layer, head) list around the page. */
static void refresh_holders(lkv_cache *c, const kv_page *pg) {
    for (lkv_seq *s = c->seqs; s; s = s->next) {
        kv_list *l = &s->lists[pg->layer * c->p.kv_heads + pg->head];
        for (int j = 0; j < l->n_pages; j++)
            if (l->refs[j].page == pg) {
                kv_list_refresh(c, l, j); /* j and the pages after it (j + 1 may merge) */
                break;
            }
    }
}

static int page_of(lkv_seq *s, int layer, int head, int page, const char *fn, kv_page **out) {
    if (!s || layer < 0 || layer >= s->c->p.n_layers || head < 0 || head >= s->c->p.kv_heads)
        LKV_FAIL(LKV_ERR_INVALID, "%s: bad sequence, layer or head", fn);
    kv_list *l = &s->lists[layer * s->c->p.kv_heads + head];
    if (page < 0 || page >= l->n_pages)
        LKV_FAIL(LKV_ERR_RANGE, "%s: page %d of %d", fn, page, l->n_pages);
    *out = l->refs[page].page;
    return LKV_OK;
}

int lkv_seq_offload(lkv_seq *s, int layer, int head, int page) {
    kv_page *pg;
    LKV_TRY(page_of(s, layer, head, page, "lkv_seq_offload", &pg));
    if (pg->backup)
        return LKV_OK;
    lkv_cache *c = s->c;
    kv_page_digest_fresh(c, pg); /* the keys leave the pool; the digest stays */
    const kv_layout *L = kv_page_layout(c, pg);
    size_t kb = L->bytes[KV_ROLE_K], vb = L->bytes[KV_ROLE_V];
    uint8_t *blk = lkv_malloc(kb + vb);
    if (!blk)
        LKV_FAIL(LKV_ERR_NOMEM, "lkv_seq_offload: out of memory for a %zu-byte backup page",
                 kb + vb);
    memcpy(blk, pg->k, kb);
    memcpy(blk + kb, pg->v, vb);
    kv_pool_uncommit(&c->pool, pg->cls[KV_ROLE_K], pg->slot[KV_ROLE_K]);
    kv_pool_uncommit(&c->pool, pg->cls[KV_ROLE_V], pg->slot[KV_ROLE_V]);
    pg->backup = blk;
    pg->k = blk;
    pg->v = blk + kb;
    c->list_bytes[pg->layer * c->p.kv_heads + pg->head] -= kb + vb;
    c->n_backup_pages++;
    c->backup_bytes += kb + vb;
    c->n_offloads++;
    refresh_holders(c, pg);
    return LKV_OK;
}

int lkv_seq_recall(lkv_seq *s, int layer, int head, int page) {
    kv_page *pg;
    LKV_TRY(page_of(s, layer, head, page, "lkv_seq_recall", &pg));
    if (!pg->backup)
        return LKV_OK;
    lkv_cache *c = s->c;
    void *mem[KV_ROLES] = {NULL, NULL, NULL};
    for (int r = KV_ROLE_K; r <= KV_ROLE_V; r++) {
        int rc;
        for (;;) { /* the same index again: the page returns to its addresses */
            rc = kv_pool_alloc_index(&c->pool, pg->cls[r], pg->slot[r], &mem[r]);
            if (rc != LKV_ERR_BUDGET || !kv_prefix_evict_one(c))
                break;
        }
        if (rc < 0) {
            if (r == KV_ROLE_V)
                kv_pool_uncommit(&c->pool, pg->cls[KV_ROLE_K], pg->slot[KV_ROLE_K]);
            return rc;
        }
    }
    size_t kb = kv_page_layout(c, pg)->bytes[KV_ROLE_K];
    size_t bytes = kv_extent_bytes(c, pg);
    uint8_t *blk = pg->backup;
    memcpy(mem[KV_ROLE_K], blk, kb);
    memcpy(mem[KV_ROLE_V], blk + kb, bytes - kb);
    lkv_free(blk);
    pg->backup = NULL;
    pg->k = mem[KV_ROLE_K];
    pg->v = mem[KV_ROLE_V];
    c->list_bytes[pg->layer * c->p.kv_heads + pg->head] += bytes;
    c->n_backup_pages--;
    c->backup_bytes -= bytes;
    c->n_recalls++;
    refresh_holders(c, pg);
    return LKV_OK;
}

void kv_backup_release(lkv_cache *c, kv_page *pg) {
    size_t bytes = kv_extent_bytes(c, pg);
    lkv_free(pg->backup);
    pg->backup = NULL;
    pg->k = pg->v = NULL;
    /* uncommitted but still reserved: back to the free lists without a release */
    kv_pool_unreserve(&c->pool, pg->cls[KV_ROLE_K], pg->slot[KV_ROLE_K]);
    kv_pool_unreserve(&c->pool, pg->cls[KV_ROLE_V], pg->slot[KV_ROLE_V]);
    c->n_backup_pages--;
    c->backup_bytes -= bytes;
}
