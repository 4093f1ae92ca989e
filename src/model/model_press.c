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
 *     every decoded token.
 */
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
};

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
