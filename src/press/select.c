/* select.c -- query-aware page selection for decode (Quest, METHODS.md §5).
 *
 * Each page carries a per-channel min m and max M of its keys. For a query q the
 * largest logit any key of the page can produce is bounded by
 *     U = sum_i max(q_i * M_i, q_i * m_i)
 * (each term is the largest q_i * k_i over the box [m_i, M_i]). Attending
 * exactly over the top pages by U loses only pages whose best key scores below
 * the selected ones. Nothing is deleted: unselected pages stay in the cache.
 * With GQA, a page's bound for a KV head is the max over its query heads (a
 * page one query head needs is attended).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "press/evict.h"
#include "press/topk.h"

float lkv_quest_bound(const float *q, const float *kmin, const float *kmax, int d) {
    float u = 0.0f;
    for (int i = 0; i < d; i++) {
        float a = q[i] * kmax[i], b = q[i] * kmin[i];
        u += a > b ? a : b;
    }
    return u;
}

typedef struct page_score {
    float u;
    int page;
} page_score;

static int by_bound_desc(const void *a, const void *b) {
    const page_score *x = a, *y = b;
    if (x->u != y->u)
        return x->u < y->u ? 1 : -1;
    return x->page - y->page;
}

static int by_page(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

int lkv_press_check_cache(const lkv_press_state *st, const lkv_cache_params *cp) {
    if (!st || !cp)
        LKV_FAIL(LKV_ERR_INVALID, "press_check_cache: NULL argument");
    if (st->select) {
        int page = (int)lkv_press_stage_get(st->select, "page");
        if (page != cp->page_tokens)
            LKV_FAIL(LKV_ERR_INVALID,
                     "press %s: page=%d but the cache's pages hold %d tokens; set the cache's "
                     "page size to %d or the policy's page to %d",
                     st->select->method->name, page, cp->page_tokens, page, cp->page_tokens);
    }
    if (st->quant && !strcmp(st->quant->method->name, "kivi")) { /* key group = page (quant.c) */
        int group = (int)lkv_press_stage_get(st->quant, "group");
        if (group != cp->page_tokens)
            LKV_FAIL(LKV_ERR_INVALID,
                     "press kivi: group=%d but the cache's pages hold %d tokens; KIVI's key "
                     "group is a page: create the cache with page_tokens=%d",
                     group, cp->page_tokens, group);
    }
    return LKV_OK;
}

void lkv_press_select_stats(const lkv_press_state *st, int64_t *attended, int64_t *held) {
    *attended = st ? st->sel_attended : 0;
    *held = st ? st->sel_held : 0;
}

int lkv_press_select(lkv_press_state *st, lkv_seq *seq, int layer, const float *q, int n_q,
                     int *sel, int *sel_count, int sel_stride) {
    if (!st || !st->select)
        return 0;
    if (st->ark) /* press/arkvale.c */
        return lkv_arkvale_select(st, seq, layer, q, n_q, sel, sel_count, sel_stride);
    if (!seq || !q || !sel || !sel_count || n_q < 1)
        LKV_FAIL(LKV_ERR_INVALID, "press_select: bad argument");
    if (layer < (int)lkv_press_stage_get(st->select, "dense_layers"))
        return 0;
    int Hk = st->g.kv_heads, H = st->g.q_heads, G = H / Hk, d = st->g.head_dim;
    int page = (int)lkv_press_stage_get(st->select, "page");
    int budget = (int)lkv_press_stage_get(st->select, "budget");
    int k = budget / page;
    if (k < 3)
        k = 3;
    int any = 0;
    for (int h = 0; h < Hk; h++) {
        int np = lkv_seq_n_pages(seq, layer, h);
        if (np < 0)
            LKV_FAIL(LKV_ERR_RANGE, "press_select: bad layer %d", layer);
        if (np > sel_stride)
            LKV_FAIL(LKV_ERR_INVALID, "press_select: sel_stride %d < %d pages", sel_stride, np);
        st->sel_held += np;
        if (np <= k) {
            for (int p = 0; p < np; p++)
                sel[h * sel_stride + p] = p;
            sel_count[h] = np;
            st->sel_attended += np;
            continue;
        }
        any = 1;
        if (np > st->bound_cap) {
            float *b = lkv_realloc(st->bound, (size_t)np * sizeof(page_score));
            if (!b)
                LKV_FAIL(LKV_ERR_NOMEM, "press_select: out of memory");
            st->bound = b;
            st->bound_cap = np;
        }
        page_score *ps = (page_score *)st->bound;
        for (int p = 0; p < np; p++) {
            lkv_page_info info;
            LKV_TRY(lkv_seq_page_info(seq, layer, h, p, &info));
            float best = -INFINITY;
            for (int t = 0; t < n_q; t++)
                for (int g = 0; g < G; g++) {
                    const float *qq = q + ((size_t)t * H + (size_t)h * G + g) * d;
                    float u = lkv_quest_bound(qq, info.key_min, info.key_max, d);
                    best = u > best ? u : best;
                }
            ps[p] = (page_score){best, p};
        }
        /* the newest page (the current token's) is always attended */
        ps[np - 1].u = INFINITY;
        lkv_press_top_k(ps, np, sizeof *ps, by_bound_desc, k); /* the k pages, unordered */
        int *out = sel + h * sel_stride;
        for (int i = 0; i < k; i++)
            out[i] = ps[i].page;
        qsort(out, (size_t)k, sizeof *out, by_page);
        sel_count[h] = k;
        st->sel_attended += k;
    }
    return any;
}
