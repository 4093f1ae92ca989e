/* arkvale.c -- ArkVale: recallable page eviction (Chen et al. 2024, METHODS.md §5).
 *
 * Pages of `page` tokens per (layer, KV head). Each page keeps a box digest of
 * its keys: per channel the centre c = (M + m) / 2 and radius r = (M - m) / 2
 * of the keys' range [m, M] (the kv layer stores m and M in the page header).
 * For a query q the largest logit any key of the page can give is bounded by
 *     U = q.c + sum_i |q_i| r_i  =  sum_i max(q_i M_i, q_i m_i)
 * (the same box as Quest; computed in the second form, term by term, so that
 * rounding can never push U below a key's own q.k). METHODS.md's "centre ±
 * mean absolute deviation" box is tighter but no bound: a page whose best key
 * lies outside one deviation would be under-estimated, so it is not used.
 *
 * Memory: at most `page_budget` pages of every (layer, KV head) are in fast
 * memory (the budgeted pool); the others are moved to the backup tier with
 * lkv_seq_offload (K/V leave the pool, the digest stays) and recalled with
 * lkv_seq_recall. Per decode step and (layer, KV head):
 *   1. rank every page by U, the max over the GQA group's query heads (and
 *      over the step's queries); the first `sink_pages` pages and the newest
 *      `recent_pages` (at least the current token's page) rank first;
 *   2. attend the top `topk` pages (topk <= page_budget);
 *   3. make room: offload the lowest-ranked resident pages that are not
 *      attended until resident + (attended pages in backup) <= page_budget;
 *   4. recall the attended pages that are in backup.
 * Offloading before recalling keeps the pool within the page budget at every
 * instant; between steps a list holds at most page_budget pages in the pool,
 * plus, right after an append opened a new page, that one page.
 * After prefill (dense), each list is cut to page_budget resident pages ranked
 * by the last prompt query. The first `dense_layers` layers stay dense and
 * fully resident.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "press/evict.h"

typedef struct ark_rank {
    float u;         /* bound (INFINITY for always-attended pages) */
    int page;
    int in_backup;
} ark_rank;

static int by_rank(const void *a, const void *b) {
    const ark_rank *x = a, *y = b;
    if (x->u != y->u)
        return x->u < y->u ? 1 : -1;
    return y->page - x->page; /* ties: the newer page first */
}

static int by_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

typedef struct ark_cfg {
    int page_budget, topk, sinks, recent, dense_layers;
} ark_cfg;

static ark_cfg cfg_of(const lkv_press_state *st) {
    ark_cfg c;
    c.page_budget = (int)lkv_press_stage_get(st->select, "page_budget");
    c.topk = (int)lkv_press_stage_get(st->select, "topk");
    c.sinks = (int)lkv_press_stage_get(st->select, "sink_pages");
    c.recent = (int)lkv_press_stage_get(st->select, "recent_pages");
    if (c.recent < 1)
        c.recent = 1; /* the current token's page is always attended */
    c.dense_layers = (int)lkv_press_stage_get(st->select, "dense_layers");
    return c;
}

static int rank_reserve(lkv_press_state *st, int n) {
    if (n <= st->ark_rank_cap)
        return LKV_OK;
    int cap = n + n / 2 + 16;
    void *r = lkv_realloc(st->ark_rank, (size_t)cap * sizeof(ark_rank));
    if (!r)
        LKV_FAIL(LKV_ERR_NOMEM, "press arkvale: out of memory for page ranks");
    st->ark_rank = r;
    st->ark_rank_cap = cap;
    return LKV_OK;
}

/* Ranks the pages of (layer, h), keeps the first `keep` of the ranking in fast
 * memory (recalling those in backup) and offloads the lowest-ranked other
 * resident pages until at most page_budget remain. q [n_q][H][d] or NULL (rank
 * by recency). The kept pages go to out[] in ascending order (when out is
 * given); returns their count, or an error. */
static int rank_and_fit(lkv_press_state *st, lkv_seq *seq, const ark_cfg *cf, int layer, int h,
                        const float *q, int n_q, int keep, int *out) {
    const int H = st->g.q_heads, G = H / st->g.kv_heads, d = st->g.head_dim;
    int np = lkv_seq_n_pages(seq, layer, h);
    if (np < 0)
        LKV_FAIL(LKV_ERR_RANGE, "press arkvale: bad layer %d", layer);
    LKV_TRY(rank_reserve(st, np));
    ark_rank *rk = st->ark_rank;
    int resident = 0;
    for (int p = 0; p < np; p++) {
        lkv_page_info info;
        LKV_TRY(lkv_seq_page_info(seq, layer, h, p, &info));
        float u = (float)p; /* no query: newer pages rank higher */
        if (q) {
            u = -INFINITY;
            for (int t = 0; t < n_q; t++)
                for (int g = 0; g < G; g++) {
                    const float *qq = q + ((size_t)t * H + (size_t)h * G + g) * d;
                    float b = lkv_quest_bound(qq, info.key_min, info.key_max, d);
                    u = b > u ? b : u;
                }
        }
        if (p < cf->sinks || p >= np - cf->recent)
            u = INFINITY;
        rk[p] = (ark_rank){u, p, info.in_backup};
        resident += !info.in_backup;
    }
    qsort(rk, (size_t)np, sizeof *rk, by_rank);
    if (keep > np)
        keep = np;
    int to_recall = 0;
    for (int i = 0; i < keep; i++)
        to_recall += rk[i].in_backup;
    /* make room first: the pool never holds more than the budget for this list */
    int excess = resident + to_recall - cf->page_budget;
    for (int i = np - 1; i >= keep && excess > 0; i--)
        if (!rk[i].in_backup) {
            LKV_TRY(lkv_seq_offload(seq, layer, h, rk[i].page));
            rk[i].in_backup = 1;
            st->ark_offloads++;
            resident--;
            excess--;
        }
    for (int i = 0; i < keep; i++)
        if (rk[i].in_backup) {
            LKV_TRY(lkv_seq_recall(seq, layer, h, rk[i].page));
            rk[i].in_backup = 0;
            st->ark_recalls++;
            resident++;
        }
    if (resident > st->ark_max_resident)
        st->ark_max_resident = resident;
    if (out) {
        for (int i = 0; i < keep; i++)
            out[i] = rk[i].page;
        qsort(out, (size_t)keep, sizeof *out, by_int);
    }
    return keep;
}

int lkv_arkvale_select(lkv_press_state *st, lkv_seq *seq, int layer, const float *q, int n_q,
                       int *sel, int *sel_count, int sel_stride) {
    if (!st || !st->ark)
        return 0;
    if (!seq || !q || !sel || !sel_count || n_q < 1)
        LKV_FAIL(LKV_ERR_INVALID, "press arkvale: bad argument");
    ark_cfg cf = cfg_of(st);
    if (layer < 0 || layer >= st->g.n_layers)
        LKV_FAIL(LKV_ERR_RANGE, "press arkvale: bad layer %d", layer);
    if (layer < cf.dense_layers)
        return 0;
    if (layer == cf.dense_layers)
        st->ark_steps++;
    int any = 0;
    for (int h = 0; h < st->g.kv_heads; h++) {
        int np = lkv_seq_n_pages(seq, layer, h);
        if (np > sel_stride)
            LKV_FAIL(LKV_ERR_INVALID, "press arkvale: sel_stride %d < %d pages", sel_stride, np);
        int k = rank_and_fit(st, seq, &cf, layer, h, q, n_q, cf.topk, sel + (size_t)h * sel_stride);
        LKV_TRY(k);
        sel_count[h] = k;
        st->sel_held += np;
        st->sel_attended += k;
        any |= k < np;
    }
    return any;
}

static int sample(lkv_press_state *st, lkv_seq *seq) {
    lkv_cache_stats cs;
    LKV_TRY(lkv_cache_get_stats(lkv_seq_cache(seq), &cs));
    st->ark_committed = cs.committed;
    st->ark_peak = cs.peak_committed;
    st->ark_backup_bytes = cs.backup_bytes;
    st->ark_pages = cs.n_pages;
    st->ark_backup_pages = cs.n_backup_pages;
    return LKV_OK;
}

int lkv_arkvale_after_prefill(lkv_press_state *st, lkv_seq *seq, const float *const *q_window) {
    if (!st || !st->ark)
        return LKV_OK;
    if (!seq)
        LKV_FAIL(LKV_ERR_INVALID, "press arkvale: NULL sequence");
    ark_cfg cf = cfg_of(st);
    int start, len;
    lkv_press_window(st, &start, &len);
    size_t row = (size_t)st->g.q_heads * (size_t)st->g.head_dim;
    for (int l = cf.dense_layers; l < st->g.n_layers; l++) {
        /* the last query of the window the model kept (ArkVale's: the prompt's last) */
        const float *q = q_window && len > 0 && q_window[l] ? q_window[l] + (size_t)(len - 1) * row
                                                            : NULL;
        for (int h = 0; h < st->g.kv_heads; h++)
            LKV_TRY(rank_and_fit(st, seq, &cf, l, h, q, 1, cf.page_budget, NULL));
    }
    return sample(st, seq);
}

int lkv_arkvale_after_decode(lkv_press_state *st, lkv_seq *seq) {
    if (!st || !st->ark)
        return LKV_OK;
    if (!seq)
        LKV_FAIL(LKV_ERR_INVALID, "press arkvale: NULL sequence");
    return sample(st, seq);
}

size_t lkv_arkvale_report(const lkv_press_state *st, char *buf, size_t cap) {
    if (!st || !st->ark)
        return 0;
    ark_cfg cf = cfg_of(st);
    size_t used = 0;
#define OUT(...)                                                                          \
    do {                                                                                  \
        int w_ = snprintf(buf && used < cap ? buf + used : NULL, buf && used < cap ? cap - used : 0, \
                          __VA_ARGS__);                                                   \
        if (w_ > 0)                                                                       \
            used += (size_t)w_;                                                           \
    } while (0)
    OUT("  arkvale: <= %d pages per (layer, KV head) in fast memory, top %d attended (%d sink "
        "+ %d recent), layers %d.. selective\n",
        cf.page_budget, cf.topk, cf.sinks, cf.recent, cf.dense_layers);
    OUT("  pages: %lld in fast memory, %lld in backup (%zu bytes, outside the pool); most in "
        "fast memory for one (layer, head): %d\n",
        (long long)(st->ark_pages - st->ark_backup_pages), (long long)st->ark_backup_pages,
        st->ark_backup_bytes, st->ark_max_resident);
    OUT("  decode steps %lld: recalls %lld (%.2f per step), offloads %lld; KV bytes committed "
        "%zu (peak %zu)\n",
        (long long)st->ark_steps, (long long)st->ark_recalls,
        st->ark_steps ? (double)st->ark_recalls / (double)st->ark_steps : 0.0,
        (long long)st->ark_offloads, st->ark_committed, st->ark_peak);
#undef OUT
    return used;
}
