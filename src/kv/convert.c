/* convert.c -- lkv_seq_convert: re-encodes full pages of one (layer, head)
 * list into another page format (e.g. exact f16 -> KIVI 2-bit once a page has
 * left a policy's residual window).
 *
 * Two phases, as append and keep: first every new page (and the f32 scratch)
 * is obtained, so a budget or allocation failure changes nothing; then each
 * old page is decoded, re-encoded into its new page, and released from this
 * list. Only this sequence's list changes: a page that a fork or the prefix
 * cache also holds keeps serving them (its reference count drops by one); a
 * page nobody else holds returns to the pool, so the committed bytes drop.
 */
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "kernels/kv_quant.h"
#include "kv/kv.h"

int lkv_seq_convert(lkv_seq *s, int layer, int head, int first_page, int n_pages, lkv_dtype to) {
    const char *fn = "lkv_seq_convert";
    if (!s || layer < 0 || layer >= s->c->p.n_layers || head < 0 || head >= s->c->p.kv_heads)
        LKV_FAIL(LKV_ERR_INVALID, "%s: bad sequence, layer or head", fn);
    const kv_format *ft = kv_format_get((int)to);
    if (!ft)
        LKV_FAIL(LKV_ERR_INVALID, "%s: format %d cannot be stored", fn, (int)to);
    lkv_cache *c = s->c;
    kv_list *l = &s->lists[layer * c->p.kv_heads + head];
    const int pt = c->p.page_tokens, d = c->p.head_dim;
    if (first_page < 0 || n_pages < 0 || first_page > l->n_pages - n_pages)
        LKV_FAIL(LKV_ERR_RANGE, "%s: pages [%d, %d) of %d", fn, first_page, first_page + n_pages,
                 l->n_pages);
    const int kivi = lkv_kvq_bits(to) != 0;
    int need = 0;
    for (int i = first_page; i < first_page + n_pages; i++) {
        const kv_ref *r = &l->refs[i];
        if (r->page->format == (int)to)
            continue;
        if (kivi && r->n != pt)
            LKV_FAIL(LKV_ERR_RANGE, "%s: page %d holds %d of %d slots; KIVI pages must be full",
                     fn, i, r->n, pt);
        need++;
    }
    if (need == 0)
        return LKV_OK;
    /* phase 1: scratch and every new page */
    kv_page **fresh = lkv_malloc((size_t)need * sizeof *fresh);
    float *kbuf = lkv_malloc((size_t)2 * pt * d * sizeof(float)); /* [2][pt][d]: K then V */
    if (!fresh || !kbuf) {
        lkv_free(fresh);
        lkv_free(kbuf);
        LKV_FAIL(LKV_ERR_NOMEM, "%s: out of memory for scratch", fn);
    }
    for (int i = 0, j = first_page; i < need; j++) {
        const kv_ref *r = &l->refs[j];
        if (r->page->format == (int)to)
            continue;
        /* consecutive positions (no eviction yet): the new page keeps only the first */
        int base = r->n > 0 && kv_page_pos_at(c, r->page, r->n - 1) -
                                   kv_page_pos_at(c, r->page, 0) == r->n - 1;
        int rc = kv_page_new(c, (int)to, base, layer, head, &fresh[i]);
        if (rc < 0) {
            while (i-- > 0)
                kv_page_unref(c, fresh[i]);
            lkv_free(fresh);
            lkv_free(kbuf);
            return rc;
        }
        i++;
    }
    /* phase 2: cannot fail */
    float *vbuf = kbuf + (size_t)pt * d;
    int used = 0;
    for (int i = first_page; i < first_page + n_pages; i++) {
        kv_ref *r = &l->refs[i];
        kv_page *old = r->page;
        if (old->format == (int)to)
            continue;
        kv_page *np = fresh[used++];
        kv_page_ptrs a = kv_page_arrays(c, old), b = kv_page_arrays(c, np);
        int n = r->n;
        kv_format_get(old->format)->read(&a, pt, d, 0, n, kbuf, vbuf);
        if (kivi) {
            /* keys: one group = the whole page, encoded at once; values per slot */
            int bits = lkv_kvq_bits(to);
            lkv_kvq_encode_kivi_keys(bits, d, n, kbuf, (size_t)d, b.k, b.k_aux);
            for (int t = 0; t < n; t++) /* into the zeroed page (format init) */
                lkv_kvq_encode_kivi_vrow(bits, d, vbuf + (size_t)t * d, t, b.v, b.v_aux);
        } else {
            ft->write(&b, pt, d, 0, n, kbuf, (size_t)d, vbuf, (size_t)d);
        }
        if (np->flags & KV_PAGE_POS_BASE)
            np->pos0 = kv_page_pos_at(c, old, 0);
        else
            kv_page_get_pos(c, old, 0, n, kv_page_pos(c, np));
        np->fill = n;
        kv_page_digest(c, np, n); /* of the stored (dequantized) keys: Quest stays exact */
        kv_page_unref(c, old);
        r->page = np;
    }
    kv_list_refresh(c, l, first_page); /* run-merging flags: formats changed */
    lkv_free(fresh);
    lkv_free(kbuf);
    return LKV_OK;
}
