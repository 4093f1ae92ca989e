/* evict.c -- token eviction: StreamingLLM, H2O, SnapKV, PyramidKV, TOVA, Knorm,
 * Random (METHODS.md §3), after prefill and while decoding.
 *
 * Every method reduces to: per (layer, KV head), a score per slot of the
 * compressible span, a set of slots that must stay (sinks, the observation
 * window, the question, recent tokens), and a number of slots to keep. The
 * survivors go to lkv_seq_keep, which returns the memory to the pool.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "press/evict.h"
#include "press/topk.h"

lkv_evict_kind lkv_evict_kind_of(const char *name) {
    static const struct { const char *name; lkv_evict_kind kind; } table[] = {
        {"streamingllm", LKV_EVICT_STREAMING}, {"h2o", LKV_EVICT_H2O},
        {"snapkv", LKV_EVICT_SNAPKV},          {"pyramidkv", LKV_EVICT_PYRAMIDKV},
        {"tova", LKV_EVICT_TOVA},              {"knorm", LKV_EVICT_KNORM},
        {"random", LKV_EVICT_RANDOM},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(table[i].name, name))
            return table[i].kind;
    return LKV_EVICT_NONE;
}

/* Tokens of a span of n kept by the stage's budget= or ratio=. */
static int kept_of_span(const lkv_press_state *st, int n) {
    double budget = lkv_press_stage_get(st->evict, "budget");
    double ratio = lkv_press_stage_get(st->evict, "ratio");
    int k;
    if (ratio != LKV_PRESS_UNSET)
        k = n - (int)lround((double)n * ratio); /* removed = round(n * ratio) */
    else if (budget != LKV_PRESS_UNSET)
        k = (int)budget;
    else
        k = n;
    return k < 0 ? 0 : (k > n ? n : k);
}

int lkv_streaming_recent(const lkv_press_state *st) {
    int sinks = (int)lkv_press_stage_get(st->evict, "sinks");
    if (lkv_press_stage_given(st->evict, "budget") || lkv_press_stage_given(st->evict, "ratio")) {
        int k = kept_of_span(st, lkv_press_span(st));
        return k > sinks ? k - sinks : 1;
    }
    return (int)lkv_press_stage_get(st->evict, "recent");
}

static int scratch(lkv_press_state *st, size_t nf, size_t ni) {
    if (nf > st->scratch_f_cap) {
        float *f = lkv_realloc(st->scratch_f, nf * sizeof(float));
        if (!f)
            LKV_FAIL(LKV_ERR_NOMEM, "press: out of memory for scores");
        st->scratch_f = f;
        st->scratch_f_cap = nf;
    }
    if (ni > st->scratch_i_cap) {
        int *i = lkv_realloc(st->scratch_i, ni * sizeof(int));
        if (!i)
            LKV_FAIL(LKV_ERR_NOMEM, "press: out of memory for scores");
        st->scratch_i = i;
        st->scratch_i_cap = ni;
    }
    return LKV_OK;
}

typedef struct scored {
    float score;
    int slot;
} scored;

static int by_score_desc(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    return x->slot - y->slot; /* ties: earlier slot first (deterministic) */
}

/* Keeps, of one list with n slots: every slot with must[i] != 0, plus the k
 * highest-scoring others among slots [0, n_cand). Writes ascending slots to
 * keep[] and returns their count. */
static int choose(const float *score, const unsigned char *must, int n, int n_cand, int k,
                  scored *tmp, int *keep, unsigned char *mark) {
    int m = 0;
    for (int i = 0; i < n_cand; i++)
        if (!must[i])
            tmp[m++] = (scored){score[i], i};
    if (k > m)
        k = m;
    if (k < m)
        lkv_press_top_k(tmp, m, sizeof *tmp, by_score_desc, k);
    memcpy(mark, must, (size_t)n);
    for (int i = 0; i < k; i++)
        mark[tmp[i].slot] = 1;
    int c = 0;
    for (int i = 0; i < n; i++)
        if (mark[i] || i >= n_cand)
            keep[c++] = i;
    return c;
}

/* Applies a keep list to the cache and to the list's accumulator. */
static int apply_keep(lkv_press_state *st, lkv_seq *seq, int layer, int head, const int *keep,
                      int n_keep, int n_before) {
    if (n_keep == n_before)
        return LKV_OK;
    LKV_TRY(lkv_seq_keep(seq, layer, head, keep, n_keep));
    int i = layer * st->g.kv_heads + head;
    if (st->acc[i]) {
        float *a = st->acc[i];
        for (int j = 0; j < n_keep; j++)
            a[j] = a[keep[j]];
        memset(a + n_keep, 0, (size_t)(st->acc_cap[i] - n_keep) * sizeof(float));
    }
    st->evicted_tokens += n_before - n_keep;
    return LKV_OK;
}

/* Marks the first `head` and the last `tail` of slots [0, n) as kept. */
static void keep_ends(unsigned char *must, int n, int head, int tail) {
    for (int t = 0; t < head && t < n; t++)
        must[t] = 1;
    for (int t = n - tail < 0 ? 0 : n - tail; t < n; t++)
        must[t] = 1;
}

/* 1-D pooling of votes (kernel k, stride 1, same padding). */
static void pool1d(const float *in, float *out, int n, int k, int use_max) {
    int r = k / 2;
    for (int i = 0; i < n; i++) {
        int lo = i - r < 0 ? 0 : i - r, hi = i + r >= n ? n - 1 : i + r;
        float acc = use_max ? -INFINITY : 0.0f;
        for (int j = lo; j <= hi; j++)
            acc = use_max ? (in[j] > acc ? in[j] : acc) : acc + in[j];
        out[i] = use_max ? acc : acc / (float)k; /* avg over the kernel, zero padding */
    }
}

/* Slots of the compressible span of one list: those with position < span_end. */
static int span_slots(const lkv_seq *seq, int layer, int head, int32_t span_end, int n,
                      int32_t *pos) {
    if (n == 0)
        return 0;
    if (lkv_seq_get_positions(seq, layer, head, 0, n, pos) < 0)
        return -1;
    int c = 0;
    while (c < n && pos[c] < span_end)
        c++;
    return c;
}

/* Observer masses of the window queries for one layer: obs [Hk][stride]. */
static int window_votes(lkv_press_state *st, lkv_seq *seq, int layer, const float *qw,
                        const int32_t *qpos, int w, const lkv_attn_params *ap, float *obs,
                        int stride, lkv_threadpool *tp) {
    int H = st->g.q_heads, Hk = st->g.kv_heads, d = st->g.head_dim, G = H / Hk;
    size_t out_n = (size_t)w * (size_t)H * (size_t)d;
    float *o = lkv_malloc(out_n * sizeof(float) * 2);
    if (!o)
        LKV_FAIL(LKV_ERR_NOMEM, "press: out of memory for window attention");
    memset(obs, 0, (size_t)Hk * (size_t)stride * sizeof(float));
    int rc;
    if (lkv_press_stage_get(st->evict, "agg") != 1.0) {
        rc = lkv_seq_attend_observe(seq, layer, ap, w, qw, qpos, o, NULL, obs, stride, tp);
    } else {
        /* agg=max: one query head per group at a time, element-wise max */
        float *part = lkv_malloc((size_t)Hk * (size_t)stride * sizeof(float));
        float *qsub = lkv_malloc((size_t)w * (size_t)Hk * (size_t)d * sizeof(float));
        rc = (part && qsub) ? LKV_OK : LKV_ERR_NOMEM;
        lkv_attn_params sub = *ap;
        sub.q_heads = Hk;
        for (int g = 0; g < G && rc == LKV_OK; g++) {
            for (int t = 0; t < w; t++)
                for (int h = 0; h < Hk; h++)
                    memcpy(qsub + ((size_t)t * Hk + h) * d, qw + ((size_t)t * H + h * G + g) * d,
                           (size_t)d * sizeof(float));
            memset(part, 0, (size_t)Hk * (size_t)stride * sizeof(float));
            rc = lkv_seq_attend_observe(seq, layer, &sub, w, qsub, qpos, o, NULL, part, stride, tp);
            for (size_t i = 0; rc == LKV_OK && i < (size_t)Hk * (size_t)stride; i++)
                obs[i] = g == 0 ? part[i] : (part[i] > obs[i] ? part[i] : obs[i]);
        }
        lkv_free(part);
        lkv_free(qsub);
        if (rc == LKV_ERR_NOMEM)
            lkv_set_error(rc, "press: out of memory for window attention");
    }
    lkv_free(o);
    return rc;
}

/* Per-layer budgets of PyramidKV: linear from max (first layer) to min (last). */
static int pyramid_budget(const lkv_press_state *st, int layer, int kept_uniform, int w) {
    int L = st->g.n_layers;
    double beta = lkv_press_stage_get(st->evict, "beta");
    double c = (double)(kept_uniform - w);
    if (c <= 0)
        return kept_uniform;
    double mn = c / beta, mx = 2.0 * c - mn;
    double b = L > 1 ? mx - (mx - mn) * (double)layer / (double)(L - 1) : c;
    return w + (int)b;
}

static int evict_after_prefill(lkv_press_state *st, lkv_seq *seq, const float *const *q_window,
                               const lkv_attn_params *ap, lkv_threadpool *tp) {
    if (!st || !seq)
        LKV_FAIL(LKV_ERR_INVALID, "press_after_prefill: NULL argument");
    st->prefilled = 1;
    st->decode_steps = 0;
    int L = st->g.n_layers, Hk = st->g.kv_heads;
    lkv_cache_stats cs;
    LKV_TRY(lkv_cache_get_stats(lkv_seq_cache(seq), &cs));
    st->bytes_before = st->bytes_after = st->bytes_now = cs.committed;
    for (int l = 0; l < L; l++) {
        int mx = 0;
        for (int h = 0; h < Hk; h++) {
            st->kept[l * Hk + h] = lkv_seq_n_tokens(seq, l, h);
            mx = st->kept[l * Hk + h] > mx ? st->kept[l * Hk + h] : mx;
        }
        st->decode_budget[l] = mx;
    }
    if (!st->evict)
        return LKV_OK;
    int span = lkv_press_span(st);
    int wstart, w;
    lkv_press_window(st, &wstart, &w);
    if ((st->kind == LKV_EVICT_SNAPKV || st->kind == LKV_EVICT_PYRAMIDKV ||
         st->kind == LKV_EVICT_TOVA) && w > 0 &&
        (!q_window || !ap))
        LKV_FAIL(LKV_ERR_INVALID, "press_after_prefill: %s needs the window queries",
                 st->evict->method->name);
    int kept_uniform = kept_of_span(st, span);
    if (st->kind == LKV_EVICT_TOVA && !lkv_press_stage_given(st->evict, "ratio"))
        kept_uniform = span < (int)lkv_press_stage_get(st->evict, "budget")
                           ? span
                           : (int)lkv_press_stage_get(st->evict, "budget");

    int maxn = 0;
    for (int l = 0; l < L; l++) {
        int m = lkv_seq_max_tokens(seq, l);
        maxn = m > maxn ? m : maxn;
    }
    /* scratch: scores/pool [Hk*maxn] x2 floats; pos, keep [maxn] ints; tmp pairs; marks */
    size_t nf = (size_t)Hk * (size_t)maxn * 2 + (size_t)maxn * 2 + 16;
    size_t ni = (size_t)maxn * 4 + 16;
    LKV_TRY(scratch(st, nf, ni));
    float *obs = st->scratch_f;                              /* [Hk][maxn] */
    float *pooled = obs + (size_t)Hk * (size_t)maxn;         /* [maxn] */
    scored *tmp = (scored *)(pooled + maxn);                 /* [maxn] pairs */
    int32_t *pos = st->scratch_i;                            /* [maxn] */
    int *keep = st->scratch_i + maxn;                        /* [maxn] */
    unsigned char *must = (unsigned char *)(st->scratch_i + 2 * maxn); /* [maxn] */
    unsigned char *mark = must + maxn;                       /* [maxn] */
    int32_t *qpos = NULL;
    if (w > 0) {
        qpos = lkv_malloc((size_t)w * sizeof(int32_t));
        if (!qpos)
            LKV_FAIL(LKV_ERR_NOMEM, "press: out of memory");
    }
    int rc = LKV_OK;
    for (int l = 0; l < L && rc == LKV_OK; l++) {
        int n0 = lkv_seq_n_tokens(seq, l, 0);
        /* the prompt's last position is the largest held; the span ends
         * (n_prompt - span) positions before its end */
        int32_t last = 0;
        if (n0 > 0 && lkv_seq_get_positions(seq, l, 0, n0 - 1, 1, &last) < 0)
            rc = LKV_ERR_RANGE;
        int32_t span_end = last + 1 - (st->n_prompt - span);
        if (w > 0)
            for (int t = 0; t < w; t++)
                qpos[t] = span_end - w + t;
        int need_votes = st->kind == LKV_EVICT_SNAPKV || st->kind == LKV_EVICT_PYRAMIDKV ||
                         st->kind == LKV_EVICT_TOVA;
        if (need_votes && w > 0 && rc == LKV_OK)
            rc = window_votes(st, seq, l, q_window[l], qpos, w, &ap[l], obs, maxn, tp);
        if (st->kind == LKV_EVICT_TOVA && rc == LKV_OK) {
            /* TOVA: one decision per layer from the last query, summed over heads */
            memset(pooled, 0, (size_t)maxn * sizeof(float));
            for (int h = 0; h < Hk; h++) {
                int n = lkv_seq_n_tokens(seq, l, h);
                for (int t = 0; t < n; t++)
                    pooled[t] += obs[(size_t)h * (size_t)maxn + t];
            }
        }
        int budget_l = st->kind == LKV_EVICT_PYRAMIDKV ? pyramid_budget(st, l, kept_uniform, w)
                                                       : kept_uniform;
        for (int h = 0; h < Hk && rc == LKV_OK; h++) {
            int n = lkv_seq_n_tokens(seq, l, h);
            int ns = span_slots(seq, l, h, span_end, n, pos);
            if (ns < 0) {
                rc = LKV_ERR_RANGE;
                break;
            }
            int k = budget_l < ns ? budget_l : ns;
            memset(must, 0, (size_t)n);
            const float *score = NULL;
            float *sc = obs + (size_t)h * (size_t)maxn;
            int i = l * Hk + h;
            switch (st->kind) {
            case LKV_EVICT_STREAMING: {
                int sinks = (int)lkv_press_stage_get(st->evict, "sinks");
                int recent = lkv_streaming_recent(st);
                keep_ends(must, ns, sinks, recent);
                k = 0;
                score = sc;
                break;
            }
            case LKV_EVICT_SNAPKV:
            case LKV_EVICT_PYRAMIDKV: {
                int wn = w < ns ? w : ns;
                keep_ends(must, ns, 0, wn);
                int kernel = (int)lkv_press_stage_get(st->evict, "kernel");
                int use_max = lkv_press_stage_get(st->evict, "pool") == 0.0;
                pool1d(sc, pooled, ns - wn, kernel, use_max);
                score = pooled;
                k -= wn;
                break;
            }
            case LKV_EVICT_H2O: {
                int recent = (int)(lkv_press_stage_get(st->evict, "recent_frac") * k);
                keep_ends(must, ns, 0, recent);
                rc = lkv_press_acc_reserve(st, i, n); /* no early return: qpos is ours */
                score = st->acc[i];
                k -= recent;
                break;
            }
            case LKV_EVICT_TOVA:
                score = pooled;
                break;
            case LKV_EVICT_KNORM: {
                float *krow = lkv_malloc((size_t)st->g.head_dim * sizeof(float));
                if (!krow) {
                    rc = lkv_set_error(LKV_ERR_NOMEM, "press: out of memory");
                    break;
                }
                for (int t = 0; t < ns && rc == LKV_OK; t++) {
                    rc = lkv_seq_read(seq, l, h, t, 1, krow, NULL);
                    double s2 = 0;
                    for (int c = 0; c < st->g.head_dim; c++)
                        s2 += (double)krow[c] * krow[c];
                    sc[t] = -(float)sqrt(s2);
                }
                lkv_free(krow);
                score = sc;
                break;
            }
            case LKV_EVICT_RANDOM:
                for (int t = 0; t < ns; t++)
                    sc[t] = (float)lkv_rng_uniform(&st->rng);
                score = sc;
                break;
            default:
                score = sc;
                k = ns;
            }
            if (rc != LKV_OK)
                break;
            if (k < 0)
                k = 0;
            int c = choose(score, must, n, ns, k, tmp, keep, mark);
            rc = apply_keep(st, seq, l, h, keep, c, n);
            st->kept[i] = c;
        }
        int mx = 0;
        for (int h = 0; h < Hk; h++)
            mx = st->kept[l * Hk + h] > mx ? st->kept[l * Hk + h] : mx;
        st->decode_budget[l] = mx;
    }
    lkv_free(qpos);
    if (st->kind == LKV_EVICT_SNAPKV)
        for (int i = 0; i < L * Hk; i++)
            if (st->acc[i])
                memset(st->acc[i], 0, (size_t)st->acc_cap[i] * sizeof(float));
    st->n_events++;
    return rc; /* bytes_after: lkv_press_after_prefill, once every stage has run */
}

static int evict_after_decode(lkv_press_state *st, lkv_seq *seq, lkv_threadpool *tp) {
    (void)tp;
    if (!st || !seq)
        LKV_FAIL(LKV_ERR_INVALID, "press_after_decode: NULL argument");
    if (!st->evict)
        return LKV_OK;
    int L = st->g.n_layers, Hk = st->g.kv_heads;
    if (!st->prefilled) {
        /* decoding without a prompt step (e.g. perplexity over a stream):
         * the budget is the policy's token budget, else what is held now */
        double b = lkv_press_stage_get(st->evict, "budget");
        for (int l = 0; l < L; l++) {
            int held = lkv_seq_max_tokens(seq, l);
            st->decode_budget[l] = b != LKV_PRESS_UNSET ? (int)b : (held > 0 ? held : 1);
        }
        st->prefilled = 1;
    }
    st->decode_steps++;
    int every = st->kind == LKV_EVICT_SNAPKV ? (int)lkv_press_stage_get(st->evict, "every") : 0;
    int on = 0;
    switch (st->kind) {
    case LKV_EVICT_STREAMING:
    case LKV_EVICT_H2O:
    case LKV_EVICT_TOVA:
        on = (int)lkv_press_stage_get(st->evict, "decode");
        break;
    case LKV_EVICT_SNAPKV:
        on = every > 0 && st->decode_steps % every == 0;
        break;
    default:
        on = 0;
    }
    if (!on)
        return LKV_OK;
    int page = lkv_cache_get_params(lkv_seq_cache(seq)).page_tokens;
    int maxn = 0;
    for (int l = 0; l < L; l++) {
        int m = lkv_seq_max_tokens(seq, l);
        maxn = m > maxn ? m : maxn;
    }
    LKV_TRY(scratch(st, (size_t)maxn * 4 + 16, (size_t)maxn * 3 + 16));
    float *layer_score = st->scratch_f;
    scored *tmp = (scored *)(st->scratch_f + maxn);
    int *keep = st->scratch_i;
    unsigned char *must = (unsigned char *)(st->scratch_i + maxn);
    unsigned char *mark = must + maxn;
    for (int l = 0; l < L; l++) {
        int budget = st->decode_budget[l];
        if (st->kind == LKV_EVICT_STREAMING) {
            int sinks = (int)lkv_press_stage_get(st->evict, "sinks");
            budget = sinks + lkv_streaming_recent(st);
        }
        if (st->kind == LKV_EVICT_TOVA) {
            memset(layer_score, 0, (size_t)maxn * sizeof(float));
            for (int h = 0; h < Hk; h++) {
                int i = l * Hk + h, n = lkv_seq_n_tokens(seq, l, h);
                for (int t = 0; t < n && st->acc[i] && t < st->acc_cap[i]; t++)
                    layer_score[t] += st->acc[i][t];
            }
        }
        for (int h = 0; h < Hk; h++) {
            int i = l * Hk + h;
            int n = lkv_seq_n_tokens(seq, l, h);
            /* StreamingLLM frees memory a page at a time (amortised compaction) */
            int slack = st->kind == LKV_EVICT_STREAMING ? page : 0;
            if (n <= budget + slack)
                continue;
            memset(must, 0, (size_t)n);
            const float *score = layer_score;
            int k = budget;
            if (st->kind == LKV_EVICT_STREAMING) {
                int sinks = (int)lkv_press_stage_get(st->evict, "sinks");
                keep_ends(must, n, sinks, budget - sinks);
                k = 0;
            } else if (st->kind == LKV_EVICT_H2O) {
                int recent = (int)(lkv_press_stage_get(st->evict, "recent_frac") * budget);
                keep_ends(must, n, 0, recent);
                LKV_TRY(lkv_press_acc_reserve(st, i, n));
                score = st->acc[i];
                k = budget - recent;
            } else if (st->kind == LKV_EVICT_SNAPKV) {
                int wn = (int)lkv_press_stage_get(st->evict, "window");
                wn = wn < n ? wn : n;
                keep_ends(must, n, 0, wn);
                LKV_TRY(lkv_press_acc_reserve(st, i, n));
                int kernel = (int)lkv_press_stage_get(st->evict, "kernel");
                pool1d(st->acc[i], layer_score, n - wn, kernel,
                       lkv_press_stage_get(st->evict, "pool") == 0.0);
                score = layer_score;
                k = budget - wn;
            }
            if (k < 0)
                k = 0;
            int c = choose(score, must, n, n, k, tmp, keep, mark);
            LKV_TRY(apply_keep(st, seq, l, h, keep, c, n));
        }
        if (st->kind == LKV_EVICT_SNAPKV)
            for (int h = 0; h < Hk; h++)
                if (st->acc[l * Hk + h])
                    memset(st->acc[l * Hk + h], 0, (size_t)st->acc_cap[l * Hk + h] * sizeof(float));
    }
    st->n_events++;
    return LKV_OK; /* bytes_now: lkv_press_after_decode */
}

/* ---- hooks: eviction first, then the quantization stage (press/quant.c) ---- */

int lkv_press_after_prefill(lkv_press_state *st, lkv_seq *seq, const float *const *q_window,
                            const lkv_attn_params *ap, lkv_threadpool *tp) {
    LKV_TRY(evict_after_prefill(st, seq, q_window, ap, tp));
    LKV_TRY(lkv_press_quant_apply(st, seq, 1));
    LKV_TRY(lkv_arkvale_after_prefill(st, seq, q_window)); /* press/arkvale.c */
    /* "after" of the report: read once, when every stage of the prompt step has
     * run (not refreshed while decoding, which adds tokens again: bytes_now) */
    lkv_cache_stats cs;
    LKV_TRY(lkv_cache_get_stats(lkv_seq_cache(seq), &cs));
    st->bytes_after = st->bytes_now = cs.committed;
    return LKV_OK;
}

int lkv_press_after_decode(lkv_press_state *st, lkv_seq *seq, lkv_threadpool *tp) {
    LKV_TRY(evict_after_decode(st, seq, tp));
    LKV_TRY(lkv_press_quant_apply(st, seq, 0));
    LKV_TRY(lkv_arkvale_after_decode(st, seq)); /* press/arkvale.c */
    lkv_cache_stats cs;
    LKV_TRY(lkv_cache_get_stats(lkv_seq_cache(seq), &cs));
    st->bytes_now = cs.committed;
    return LKV_OK;
}
