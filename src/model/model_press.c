/* model_press.c -- runs a KV policy (src/press) around the model's cache.
 *
 * The forward pass does not know about policies: every attention call goes
 * through lkv_model_kv_attend, which comes here when a policy is attached.
 * Here we
 *   - keep the queries of the policy's observation window while the prompt is
 *     evaluated (SnapKV, PyramidKV, TOVA need them after prefill),
 *   - compute the observer output when the policy scores tokens by attention
 *     (H2O during the prompt and decoding, TOVA and periodic SnapKV while
 *     decoding) and hand it over,
 *   - let selection policies (Quest) choose the pages each decode step attends,
 *   - call the one-shot step after the prompt and the per-token step after
 *     every decoded token,
 *   - give StreamingLLM's positions=cache its cache positions (below).
 *
 * STREAMINGLLM WITH CACHE POSITIONS. The paper re-indexes positions inside the
 * cache: a kept token's rotary position is its slot index, not its original
 * position. Our keys are stored already rotated at their original positions,
 * and a RoPE score depends only on (query rotation - key rotation), so no key
 * is ever re-rotated. StreamingLLM keeps S sinks (slots 0..S-1, shift
 * pos - slot = s0, normally 0) and one contiguous window (slots S..n-1, one
 * common shift s = pos - slot, which grows as the window slides); the chunk
 * being evaluated is the tail of that window. For a query at original position
 * m (cache index m - s):
 *   window keys: m - pos_k = (m - s) - slot_k, the cache distance already --
 *                attend them with the query as it is;
 *   sink keys:   the query must be rotated at (m - s) + s0, i.e. turned on by
 *                delta = s0 - s (<= 0) positions.
 * So each layer attends slots [S, n) with q and slots [0, S) with q turned by
 * delta (and masked at position m + delta, so that windowed layers see the sinks
 * at their cache distance), and merges the two partial results exactly by
 * their log-sum-exps (lkv_attn_merge). With delta = 0 (nothing evicted yet) it
 * is the ordinary single call, bit for bit.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "model/model.h"
#include "press/press.h"

struct lkv_model_press {
    lkv_press_state *st;
    int n_layers, q_heads, kv_heads, head_dim;
    int in_prompt;
    int32_t prompt_pos0;
    int win_start, win_len;
    float **q_window;          /* [L][win_len][H][d] */
    lkv_attn_params *ap;       /* [L] the parameters each layer attended with */
    float *obs;                /* [Hk][obs_stride] */
    size_t obs_cap;
    int *sel, *sel_count;      /* [Hk][sel_cap], [Hk] */
    int sel_cap;
    /* StreamingLLM positions=cache (lkv_press_cache_position_sinks > 0) */
    int n_sink;                /* S, 0 = off */
    int rope_halves;           /* 0: pairs (2i, 2i+1) (Llama), 1: (i, i + n_rot/2) (Gemma 3) */
    int n_rot;
    float *inv_freq;           /* [L][n_rot/2] the layer's base^(-2i/n_rot), as the forward pass */
    double *rope_pos_scale;    /* [L] positions are divided by this */
    float *split_buf;          /* q turned, o of the sinks: [2][rows][d]; lse [2][rows] */
    size_t split_cap;          /* rows */
    int32_t *split_pos;        /* [split_pos_cap] mask positions of the turned queries */
    int split_pos_cap;
};

/* Rotary tables for turning queries (must match llama.c / gemma3.c). */
static int rope_setup(lkv_model_press *mp, const lkv_model *m) {
    const lkv_hparams *hp = &m->hp;
    if (m->arch_id != LKV_ARCH_LLAMA && m->arch_id != LKV_ARCH_GEMMA3)
        LKV_FAIL(LKV_ERR_UNSUPPORTED, "press streamingllm: positions=cache needs the model's "
                 "rotary convention, unknown for architecture '%s'", m->arch);
    int half = hp->n_rot / 2;
    mp->rope_halves = m->arch_id == LKV_ARCH_GEMMA3;
    mp->n_rot = hp->n_rot;
    mp->inv_freq = lkv_calloc((size_t)mp->n_layers * (size_t)(half > 0 ? half : 1), sizeof(float));
    mp->rope_pos_scale = lkv_calloc((size_t)mp->n_layers, sizeof(double));
    if (!mp->inv_freq || !mp->rope_pos_scale)
        LKV_FAIL(LKV_ERR_NOMEM, "model press: out of memory");
    for (int l = 0; l < mp->n_layers; l++) {
        /* Gemma 3's sliding-window layers: their own base, no position scaling */
        int local = m->arch_id == LKV_ARCH_GEMMA3 && m->layers[l].window;
        double base = local ? hp->rope_theta_swa : hp->rope_theta;
        mp->rope_pos_scale[l] = local ? 1.0 : (double)hp->rope_scale;
        lkv_fwd_rope_freqs(mp->inv_freq + (size_t)l * half, hp->n_rot, base);
    }
    return LKV_OK;
}

/* out[rows][d] = in[rows][d], each row (one head of one query) turned on by
 * delta positions of layer l's rotary embedding: R(delta) R(m) = R(m + delta). */
static void rope_turn(const lkv_model_press *mp, int layer, int32_t delta, const float *in,
                      float *out, size_t rows) {
    const int d = mp->head_dim, half = mp->n_rot / 2;
    const float *inv = mp->inv_freq + (size_t)layer * half;
    float c[128], sn[128]; /* half <= d / 2 <= 128 */
    lkv_fwd_rope_tables(&delta, 1, inv, half, mp->rope_pos_scale[layer], c, sn);
    memcpy(out, in, rows * (size_t)d * sizeof(float));
    /* the rows are the "heads" of one token: all turned by the same angles */
    lkv_fwd_rope_rotate(out, c, sn, 1, (int)rows, d, mp->n_rot, mp->rope_halves);
}

/* The turn of layer `layer`'s sink queries (see the top): delta = s0 - s from
 * the positions of slots 0, S-1, S and n-1 of every head, which must hold S
 * contiguous sinks and one contiguous window; 0 when nothing was evicted.
 * *last: the largest position held (for q_pos NULL). */
static int sink_delta(const lkv_model_press *mp, const lkv_seq *seq, int layer, int32_t *delta,
                      int32_t *last) {
    const int S = mp->n_sink;
    *delta = 0;
    *last = -1;
    int seen = 0;
    for (int h = 0; h < mp->kv_heads; h++) {
        int n = lkv_seq_n_tokens(seq, layer, h);
        int32_t p0, ps1, ps, pn;
        if (n > 0) {
            LKV_TRY(lkv_seq_get_positions(seq, layer, h, n - 1, 1, &pn));
            *last = pn > *last ? pn : *last;
        }
        int32_t dh = 0;
        if (n > S) {
            LKV_TRY(lkv_seq_get_positions(seq, layer, h, 0, 1, &p0));
            LKV_TRY(lkv_seq_get_positions(seq, layer, h, S - 1, 1, &ps1));
            LKV_TRY(lkv_seq_get_positions(seq, layer, h, S, 1, &ps));
            if (ps1 - p0 != S - 1 || pn - ps != n - 1 - S)
                LKV_FAIL(LKV_ERR_STATE, "press streamingllm: positions=cache needs %d sinks and "
                         "one contiguous window; layer %d head %d holds positions %d..%d, "
                         "%d..%d", S, layer, h, p0, ps1, ps, pn);
            dh = p0 - (ps - S); /* s0 - s */
        }
        if (seen && dh != *delta)
            LKV_FAIL(LKV_ERR_STATE, "press streamingllm: positions=cache: the KV heads of layer "
                     "%d hold different windows", layer);
        *delta = dh;
        seen = 1;
    }
    return LKV_OK;
}

/* Attention with cache positions: window slots with q, sink slots with q
 * turned by delta, merged by log-sum-exp. o [n_q][H][d]. */
static int attend_split(lkv_model_press *mp, lkv_seq *seq, int layer, const lkv_attn_params *ap,
                        int n_q, const float *q, const int32_t *q_pos, int32_t delta,
                        int32_t last, float *o, lkv_threadpool *tp) {
    const size_t rows = (size_t)n_q * (size_t)mp->q_heads, d = (size_t)mp->head_dim;
    if (rows > mp->split_cap) {
        size_t cap = rows + rows / 2 + 16;
        float *b = lkv_realloc(mp->split_buf, cap * (2 * d + 2) * sizeof(float));
        if (!b)
            LKV_FAIL(LKV_ERR_NOMEM, "model press: out of memory for cache-position attention");
        mp->split_buf = b;
        mp->split_cap = cap;
    }
    if (n_q > mp->split_pos_cap) {
        int cap = n_q + n_q / 2 + 16;
        int32_t *pp = lkv_realloc(mp->split_pos, (size_t)cap * sizeof(int32_t));
        if (!pp)
            LKV_FAIL(LKV_ERR_NOMEM, "model press: out of memory for cache-position attention");
        mp->split_pos = pp;
        mp->split_pos_cap = cap;
    }
    float *qt = mp->split_buf;        /* [rows][d] q turned by delta */
    float *o_sink = qt + rows * d;    /* [rows][d] */
    float *lse = o_sink + rows * d;   /* [rows] window part */
    float *lse_sink = lse + rows;     /* [rows] */
    for (int i = 0; i < n_q; i++)     /* masks at the cache distance too (windowed layers) */
        mp->split_pos[i] = (q_pos ? q_pos[i] : last - n_q + 1 + i) + delta;
    rope_turn(mp, layer, delta, q, qt, rows);
    LKV_TRY(lkv_seq_attend_slots(seq, layer, ap, n_q, q, q_pos, mp->n_sink, INT_MAX, o, lse, tp));
    LKV_TRY(lkv_seq_attend_slots(seq, layer, ap, n_q, qt, mp->split_pos, 0, mp->n_sink, o_sink,
                                 lse_sink, tp));
    lkv_attn_merge((int)rows, (int)d, o, lse, o_sink, lse_sink);
    return LKV_OK;
}

int lkv_model_press_create(const lkv_model *m, const lkv_press *p, lkv_cache_params *cp,
                           lkv_model_press **out) {
    *out = NULL;
    lkv_model_press *mp = lkv_calloc(1, sizeof *mp);
    if (!mp)
        LKV_FAIL(LKV_ERR_NOMEM, "model press: out of memory");
    mp->n_layers = m->hp.n_layers;
    mp->q_heads = m->hp.n_heads;
    mp->kv_heads = m->hp.n_kv_heads;
    mp->head_dim = m->hp.head_dim;
    lkv_press_geom g = {mp->n_layers, mp->q_heads, mp->kv_heads, mp->head_dim};
    int rc = lkv_press_state_create(p, &g, &mp->st);
    if (rc == LKV_OK) {
        int page = 0;
        lkv_dtype dt = cp->dtype;
        rc = lkv_press_cache_requirements(p, &page, &dt);
        if (rc == LKV_OK && page > 0 && cp->page_tokens == 0)
            cp->page_tokens = page;
        if (rc == LKV_OK && dt != LKV_DTYPE_F16)
            cp->dtype = dt; /* e.g. int8 pages from the start */
    }
    if (rc == LKV_OK) {
        lkv_cache_params resolved = *cp;
        if (resolved.page_tokens == 0)
            resolved.page_tokens = lkv_cache_default_params().page_tokens;
        rc = lkv_press_check_cache(mp->st, &resolved);
    }
    if (rc == LKV_OK && (mp->n_sink = lkv_press_cache_position_sinks(mp->st)) > 0)
        rc = rope_setup(mp, m);
    mp->q_window = lkv_calloc((size_t)mp->n_layers, sizeof *mp->q_window);
    mp->ap = lkv_calloc((size_t)mp->n_layers, sizeof *mp->ap);
    if (rc == LKV_OK && (!mp->q_window || !mp->ap))
        rc = lkv_set_error(LKV_ERR_NOMEM, "model press: out of memory");
    if (rc < 0) {
        lkv_model_press_free(mp);
        return rc;
    }
    *out = mp;
    return LKV_OK;
}

static void free_window(lkv_model_press *mp) {
    if (!mp->q_window)
        return;
    for (int l = 0; l < mp->n_layers; l++) {
        lkv_free(mp->q_window[l]);
        mp->q_window[l] = NULL;
    }
    mp->win_len = 0;
}

void lkv_model_press_free(lkv_model_press *mp) {
    if (!mp)
        return;
    free_window(mp);
    lkv_free(mp->q_window);
    lkv_free(mp->ap);
    lkv_free(mp->obs);
    lkv_free(mp->sel);
    lkv_free(mp->sel_count);
    lkv_free(mp->inv_freq);
    lkv_free(mp->rope_pos_scale);
    lkv_free(mp->split_buf);
    lkv_free(mp->split_pos);
    lkv_press_state_free(mp->st);
    lkv_free(mp);
}

int lkv_model_press_begin_prompt(lkv_model_press *mp, int32_t pos0, int n, int n_question) {
    free_window(mp);
    LKV_TRY(lkv_press_begin_prompt(mp->st, n, n_question));
    int start, len;
    lkv_press_window(mp->st, &start, &len);
    size_t row = (size_t)mp->q_heads * (size_t)mp->head_dim;
    for (int l = 0; l < mp->n_layers && len > 0; l++) {
        mp->q_window[l] = lkv_calloc((size_t)len * row, sizeof(float));
        if (!mp->q_window[l]) {
            free_window(mp);
            LKV_FAIL(LKV_ERR_NOMEM, "model press: out of memory for the window queries");
        }
    }
    mp->win_start = start;
    mp->win_len = len;
    mp->prompt_pos0 = pos0;
    mp->in_prompt = 1;
    return LKV_OK;
}

/* Copies the rows of this chunk that fall in the observation window. */
static void keep_window_rows(lkv_model_press *mp, int layer, int n_q, const float *q,
                             const int32_t *q_pos) {
    size_t row = (size_t)mp->q_heads * (size_t)mp->head_dim;
    for (int i = 0; i < n_q; i++) {
        int r = (int)(q_pos[i] - mp->prompt_pos0) - mp->win_start;
        if (r >= 0 && r < mp->win_len)
            memcpy(mp->q_window[layer] + (size_t)r * row, q + (size_t)i * row,
                   row * sizeof(float));
    }
}

static int grow_obs(lkv_model_press *mp, int stride) {
    size_t need = (size_t)mp->kv_heads * (size_t)stride;
    if (need > mp->obs_cap) {
        size_t cap = need + need / 2 + 256;
        float *o = lkv_realloc(mp->obs, cap * sizeof(float));
        if (!o)
            LKV_FAIL(LKV_ERR_NOMEM, "model press: out of memory for the observer");
        mp->obs = o;
        mp->obs_cap = cap;
    }
    memset(mp->obs, 0, need * sizeof(float));
    return LKV_OK;
}

static int grow_sel(lkv_model_press *mp, const lkv_seq *seq, int layer) {
    int most = 0;
    for (int h = 0; h < mp->kv_heads; h++) {
        int np = lkv_seq_n_pages(seq, layer, h);
        most = np > most ? np : most;
    }
    if (most > mp->sel_cap) {
        int cap = most + most / 2 + 16;
        int *s = lkv_realloc(mp->sel, (size_t)cap * (size_t)mp->kv_heads * sizeof(int));
        if (!s)
            LKV_FAIL(LKV_ERR_NOMEM, "model press: out of memory for page selection");
        mp->sel = s;
        mp->sel_cap = cap;
    }
    if (!mp->sel_count) {
        mp->sel_count = lkv_calloc((size_t)mp->kv_heads, sizeof(int));
        if (!mp->sel_count)
            LKV_FAIL(LKV_ERR_NOMEM, "model press: out of memory for page selection");
    }
    return LKV_OK;
}

int lkv_model_press_attend(lkv_model_press *mp, lkv_seq *seq, int layer,
                           const lkv_attn_params *base, int n_q, const float *q,
                           const int32_t *q_pos, float *o, lkv_threadpool *tp) {
    lkv_attn_params ap = *base;
    lkv_press_adjust_attn(mp->st, layer, &ap);
    mp->ap[layer] = ap;
    if (mp->in_prompt && mp->win_len > 0)
        keep_window_rows(mp, layer, n_q, q, q_pos);
    if (mp->n_sink > 0) { /* StreamingLLM, positions=cache */
        int32_t delta, last;
        LKV_TRY(sink_delta(mp, seq, layer, &delta, &last));
        if (delta != 0)
            return attend_split(mp, seq, layer, &ap, n_q, q, q_pos, delta, last, o, tp);
    }
    int decode = !mp->in_prompt;
    int selected = 0;
    if (decode) {
        LKV_TRY(grow_sel(mp, seq, layer));
        selected = lkv_press_select(mp->st, seq, layer, q, n_q, mp->sel, mp->sel_count, mp->sel_cap);
        LKV_TRY(selected);
    }
    int observe = lkv_press_wants_observer(mp->st, layer, decode);
    int stride = 0;
    if (observe) {
        stride = lkv_seq_max_tokens(seq, layer);
        LKV_TRY(grow_obs(mp, stride));
    }
    if (selected)
        LKV_TRY(lkv_seq_attend_pages(seq, layer, &ap, n_q, q, q_pos, mp->sel, mp->sel_count,
                                     mp->sel_cap, o, NULL, observe ? mp->obs : NULL, stride, tp));
    else if (observe)
        LKV_TRY(lkv_seq_attend_observe(seq, layer, &ap, n_q, q, q_pos, o, NULL, mp->obs, stride,
                                       tp));
    else
        LKV_TRY(lkv_seq_attend(seq, layer, &ap, n_q, q, q_pos, o, NULL, tp));
    if (observe)
        LKV_TRY(lkv_press_observe(mp->st, seq, layer, mp->obs, stride));
    return LKV_OK;
}

int lkv_model_press_end_prompt(lkv_model_press *mp, lkv_seq *seq, lkv_threadpool *tp) {
    if (!mp->in_prompt)
        return LKV_OK;
    mp->in_prompt = 0;
    int rc = lkv_press_after_prefill(mp->st, seq, (const float *const *)mp->q_window, mp->ap, tp);
    free_window(mp);
    return rc;
}

int lkv_model_press_reset(lkv_model_press *mp) {
    lkv_model_press_abort_prompt(mp);
    return lkv_press_begin_prompt(mp->st, 0, 0);
}

void lkv_model_press_abort_prompt(lkv_model_press *mp) {
    mp->in_prompt = 0;
    free_window(mp);
}

int lkv_model_press_after_decode(lkv_model_press *mp, lkv_seq *seq, lkv_threadpool *tp) {
    return lkv_press_after_decode(mp->st, seq, tp);
}

int lkv_model_press_check_snapshot(const lkv_model_press *mp, int n, int *n_question) {
    LKV_TRY(lkv_press_check_restorable(mp->st));
    int n_prompt, n_q, steps;
    lkv_press_prompt_info(mp->st, &n_prompt, &n_q, &steps);
    if (mp->in_prompt || n_prompt != n || n == 0)
        LKV_FAIL(LKV_ERR_STATE, "prompt cache: with a policy the cache is saved right after "
                 "the prompt step (the context holds %d tokens, the last prompt %d)", n,
                 n_prompt);
    *n_question = n_q;
    return LKV_OK;
}

int lkv_model_press_restore(lkv_model_press *mp, const lkv_seq *seq, int n, int n_question) {
    lkv_model_press_abort_prompt(mp);
    return lkv_press_restore_prompt(mp->st, seq, n, n_question);
}

size_t lkv_model_press_report(const lkv_model_press *mp, char *buf, size_t cap) {
    size_t n = lkv_press_state_report(mp->st, buf, cap);
    int64_t att = 0, held = 0;
    lkv_press_select_stats(mp->st, &att, &held);
    if (held > 0) {
        char line[160];
        int w = snprintf(line, sizeof line,
                         "  pages attended %lld of %lld held (%.1f%%) over decode steps\n",
                         (long long)att, (long long)held, 100.0 * (double)att / (double)held);
        if (buf && n < cap)
            snprintf(buf + n, cap - n, "%s", line);
        n += (size_t)w;
    }
    return n;
}
