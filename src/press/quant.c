/* quant.c -- the quantization stages: "int8" (symmetric int8 per token) and
 * "kivi" (KIVI 2/4-bit, keys per channel over a page, values per token over
 * 32-channel groups), METHODS.md §4.
 *
 * Both keep the newest `residual` tokens of every (layer, KV head) exact and
 * convert, after prefill and after every decode step, each full page that has
 * left that window (lkv_seq_convert: new pages first, old pages released, so
 * the pool's committed bytes really drop). A page is converted once its last
 * slot is older than the window, i.e. the first floor((n - residual) / P)
 * pages of a list of n tokens with P-token pages. KIVI's key group is the
 * page (the cache is created with page_tokens = group,
 * lkv_press_cache_requirements); "int8:residual=0" needs no conversion at all:
 * the cache writes int8 pages from the start. With an eviction stage the
 * hooks run eviction first, then this (evict.c).
 */
#include <string.h>

#include "common/error.h"
#include "press/evict.h"

lkv_dtype lkv_press_quant_target(const lkv_press_stage *q) {
    if (!q)
        return LKV_DTYPE_F16;
    if (!strcmp(q->method->name, "kivi"))
        return lkv_press_stage_get(q, "bits") == 2.0 ? LKV_DTYPE_KIVI2 : LKV_DTYPE_KIVI4;
    return LKV_DTYPE_Q8;
}

int lkv_press_cache_requirements(const struct lkv_press *p, int *page_tokens, lkv_dtype *dtype) {
    if (!p || !page_tokens || !dtype)
        LKV_FAIL(LKV_ERR_INVALID, "press_cache_requirements: NULL argument");
    *page_tokens = 0;
    *dtype = LKV_DTYPE_F16;
    const char *who = NULL;
    for (int i = 0; i < p->n_stages; i++) {
        const lkv_press_stage *st = &p->stage[i];
        int need = 0;
        if (st->method->cls == LKV_PC_SELECT)
            need = (int)lkv_press_stage_get(st, "page");
        else if (!strcmp(st->method->name, "kivi"))
            need = (int)lkv_press_stage_get(st, "group");
        else if (!strcmp(st->method->name, "int8") && lkv_press_stage_get(st, "residual") == 0.0)
            *dtype = LKV_DTYPE_Q8;
        if (!need)
            continue;
        if (*page_tokens && *page_tokens != need)
            LKV_FAIL(LKV_ERR_INVALID, "press: %s needs pages of %d tokens but %s needs %d", who,
                     *page_tokens, st->method->name, need);
        *page_tokens = need;
        who = st->method->name;
    }
    return LKV_OK;
}

int lkv_press_quant_apply(lkv_press_state *st, lkv_seq *seq, int after_prefill) {
    if (!st || !seq)
        LKV_FAIL(LKV_ERR_INVALID, "press quant: NULL argument");
    if (!st->quant)
        return LKV_OK;
    lkv_cache *c = lkv_seq_cache(seq);
    lkv_cache_params cp = lkv_cache_get_params(c);
    const lkv_dtype to = lkv_press_quant_target(st->quant);
    const int kivi = to != LKV_DTYPE_Q8;
    const int residual = (int)lkv_press_stage_get(st->quant, "residual");
    const int pt = cp.page_tokens;
    if (kivi && (int)lkv_press_stage_get(st->quant, "group") != pt)
        LKV_TRY(lkv_press_check_cache(st, &cp)); /* says what is wrong */
    lkv_cache_stats cs;
    LKV_TRY(lkv_cache_get_stats(c, &cs));
    const size_t before = cs.committed;
    const int64_t pages_before = st->quant_pages;
    for (int l = 0; l < st->g.n_layers; l++)
        for (int h = 0; h < st->g.kv_heads; h++) {
            int n = lkv_seq_n_tokens(seq, l, h), np = lkv_seq_n_pages(seq, l, h);
            int conv = n > residual ? (n - residual) / pt : 0;
            if (!kivi && residual == 0)
                conv = np; /* int8 everywhere: the partial tail too (int8 rows are per token) */
            if (conv > np)
                conv = np;
            /* pages already converted are skipped by lkv_seq_convert; count the new ones */
            int64_t fresh = 0;
            for (int i = 0; i < conv; i++) {
                lkv_page_info pi;
                LKV_TRY(lkv_seq_page_info(seq, l, h, i, &pi));
                fresh += pi.format != (int)to;
            }
            if (fresh)
                LKV_TRY(lkv_seq_convert(seq, l, h, 0, conv, to));
            st->quant_pages += fresh;
        }
    LKV_TRY(lkv_cache_get_stats(c, &cs));
    /* the report's "before/after" of the first quantization: the call that
     * converted the first pages, whether after the prompt or while decoding (a
     * prompt shorter than the residual window converts nothing; recording that
     * call would show 100%, and "after" read later would include new tokens) */
    if (pages_before == 0 && st->quant_pages > 0) {
        st->quant_bytes_before = before;
        st->quant_bytes_after = cs.committed;
    }
    (void)after_prefill;
    st->bytes_now = cs.committed;
    return LKV_OK;
}
