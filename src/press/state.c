/* state.c -- per-sequence policy state and the hooks the model runtime calls.
 *
 * The state keeps, per (layer, KV head), an accumulator of attention mass
 * aligned with the cache slots (H2O's heavy-hitter scores, TOVA's last-query
 * scores, SnapKV's decode-time votes). Whenever tokens are removed the
 * accumulator is compacted with the same slot list given to lkv_seq_keep, so
 * slot i of the accumulator always describes slot i of the cache.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "press/evict.h"

int lkv_press_state_create(const struct lkv_press *p, const lkv_press_geom *g,
                           lkv_press_state **out) {
    if (!p || !g || !out)
        LKV_FAIL(LKV_ERR_INVALID, "press_state_create: NULL argument");
    *out = NULL;
    if (g->n_layers < 1 || g->kv_heads < 1 || g->q_heads < g->kv_heads || g->head_dim < 1)
        LKV_FAIL(LKV_ERR_INVALID, "press_state_create: bad geometry");
    lkv_press_state *st = lkv_calloc(1, sizeof *st);
    if (!st)
        LKV_FAIL(LKV_ERR_NOMEM, "press_state_create: out of memory");
    st->press = p;
    st->g = *g;
    for (int i = 0; i < p->n_stages; i++)
        if (p->stage[i].method->cls == LKV_PC_EVICT)
            st->evict = &p->stage[i];
        else if (p->stage[i].method->cls == LKV_PC_SELECT)
            st->select = &p->stage[i];
        else if (p->stage[i].method->cls == LKV_PC_QUANT) /* press/quant.c */
            st->quant = &p->stage[i];
    st->ark = st->select && !strcmp(st->select->method->name, "arkvale"); /* arkvale.c */
    int lists = g->n_layers * g->kv_heads;
    st->acc = lkv_calloc((size_t)lists, sizeof *st->acc);
    st->acc_cap = lkv_calloc((size_t)lists, sizeof *st->acc_cap);
    st->kept = lkv_calloc((size_t)lists, sizeof *st->kept);
    st->decode_budget = lkv_calloc((size_t)g->n_layers, sizeof *st->decode_budget);
    if (!st->acc || !st->acc_cap || !st->kept || !st->decode_budget) {
        lkv_press_state_free(st);
        LKV_FAIL(LKV_ERR_NOMEM, "press_state_create: out of memory");
    }
    if (st->evict) {
        st->kind = lkv_evict_kind_of(st->evict->method->name);
        if (lkv_press_cache_position_sinks(st) > 0 && st->select) {
            const char *sel = st->select->method->name; /* static registry string */
            lkv_press_state_free(st);
            LKV_FAIL(LKV_ERR_UNSUPPORTED,
                     "press streamingllm: positions=cache attends the sinks and the window "
                     "separately, which a page-selection stage (%s) does not do; use "
                     "positions=original with it", sel);
        }
        double seed = lkv_press_stage_get(st->evict, "seed");
        lkv_rng_seed(&st->rng, seed == LKV_PRESS_UNSET ? 0 : (uint64_t)seed);
    }
    *out = st;
    return LKV_OK;
}

void lkv_press_state_free(lkv_press_state *st) {
    if (!st)
        return;
    if (st->acc)
        for (int i = 0; i < st->g.n_layers * st->g.kv_heads; i++)
            lkv_free(st->acc[i]);
    lkv_free(st->acc);
    lkv_free(st->acc_cap);
    lkv_free(st->kept);
    lkv_free(st->decode_budget);
    lkv_free(st->scratch_f);
    lkv_free(st->scratch_i);
    lkv_free(st->bound);
    lkv_free(st->ark_rank);
    lkv_free(st);
}

int lkv_press_begin_prompt(lkv_press_state *st, int n_prompt, int n_question) {
    if (!st || n_prompt < 0 || n_question < 0 || n_question > n_prompt)
        LKV_FAIL(LKV_ERR_INVALID, "press_begin_prompt: n_prompt=%d n_question=%d", n_prompt,
                 n_question);
    st->n_prompt = n_prompt;
    st->n_question = n_question;
    st->prefilled = 0;
    for (int i = 0; i < st->g.n_layers * st->g.kv_heads; i++)
        if (st->acc[i])
            memset(st->acc[i], 0, (size_t)st->acc_cap[i] * sizeof(float));
    return LKV_OK;
}

/* Rows of the prompt that are compressed: all of it when query_aware, else the
 * part before the question. */
int lkv_press_span(const lkv_press_state *st) {
    if (!st->evict)
        return 0;
    double qa = lkv_press_stage_get(st->evict, "query_aware");
    return (qa == 1.0) ? st->n_prompt : st->n_prompt - st->n_question;
}

void lkv_press_window(const lkv_press_state *st, int *start, int *len) {
    *start = 0;
    *len = 0;
    if (st && !st->evict && st->ark && st->n_prompt > 0) {
        *start = st->n_prompt - 1; /* ArkVale ranks pages by the last prompt query */
        *len = 1;
    }
    if (!st || !st->evict)
        return;
    int w;
    if (st->kind == LKV_EVICT_SNAPKV || st->kind == LKV_EVICT_PYRAMIDKV)
        w = (int)lkv_press_stage_get(st->evict, "window");
    else if (st->kind == LKV_EVICT_TOVA)
        w = 1; /* the newest query decides */
    else
        return;
    int span = lkv_press_span(st);
    if (w > span)
        w = span;
    *start = span - w;
    *len = w;
}

int lkv_press_cache_position_sinks(const lkv_press_state *st) {
    if (!st || !st->evict || st->kind != LKV_EVICT_STREAMING ||
        lkv_press_stage_get(st->evict, "positions") != 1.0)
        return 0;
    /* without sinks every kept token has the same shift: original positions
     * already give the cache-relative distances, nothing to split */
    return (int)lkv_press_stage_get(st->evict, "sinks");
}

void lkv_press_adjust_attn(const lkv_press_state *st, int layer, lkv_attn_params *ap) {
    /* No implemented policy changes the masks yet (DuoAttention's streaming
     * heads will). StreamingLLM evicts instead of masking: see evict.c. */
    (void)st;
    (void)layer;
    (void)ap;
}

int lkv_press_wants_observer(const lkv_press_state *st, int layer, int decode) {
    (void)layer;
    if (!st || !st->evict)
        return 0;
    switch (st->kind) {
    case LKV_EVICT_H2O:
        return decode ? (int)lkv_press_stage_get(st->evict, "decode") : 1;
    case LKV_EVICT_TOVA:
        return decode ? (int)lkv_press_stage_get(st->evict, "decode") : 0;
    case LKV_EVICT_SNAPKV:
        return decode && lkv_press_stage_get(st->evict, "every") > 0;
    default:
        return 0;
    }
}

/* Grows list i's accumulator to hold n slots (new slots start at 0). */
int lkv_press_acc_reserve(lkv_press_state *st, int i, int n) {
    if (n <= st->acc_cap[i])
        return LKV_OK;
    int cap = st->acc_cap[i] ? st->acc_cap[i] : 256;
    while (cap < n)
        cap *= 2;
    float *a = lkv_realloc(st->acc[i], (size_t)cap * sizeof(float));
    if (!a)
        LKV_FAIL(LKV_ERR_NOMEM, "press: out of memory for attention accumulators");
    memset(a + st->acc_cap[i], 0, (size_t)(cap - st->acc_cap[i]) * sizeof(float));
    st->acc[i] = a;
    st->acc_cap[i] = cap;
    return LKV_OK;
}

int lkv_press_observe(lkv_press_state *st, const lkv_seq *seq, int layer, const float *obs,
                      int stride) {
    if (!st || !seq || !obs || layer < 0 || layer >= st->g.n_layers)
        LKV_FAIL(LKV_ERR_INVALID, "press_observe: bad argument");
    for (int h = 0; h < st->g.kv_heads; h++) {
        int n = lkv_seq_n_tokens(seq, layer, h);
        if (n > stride)
            LKV_FAIL(LKV_ERR_INVALID, "press_observe: stride %d < %d slots", stride, n);
        int i = layer * st->g.kv_heads + h;
        LKV_TRY(lkv_press_acc_reserve(st, i, n));
        float *a = st->acc[i];
        const float *o = obs + (size_t)h * (size_t)stride;
        if (st->kind == LKV_EVICT_TOVA) /* TOVA: only the newest query counts */
            for (int t = 0; t < n; t++)
                a[t] = o[t];
        else
            for (int t = 0; t < n; t++)
                a[t] += o[t];
    }
    return LKV_OK;
}

int lkv_press_check_restorable(const lkv_press_state *st) {
    if (!st)
        LKV_FAIL(LKV_ERR_INVALID, "press: NULL state");
    if (st->ark)
        LKV_FAIL(LKV_ERR_UNSUPPORTED, "press %s: pages offloaded to the backup tier are not "
                 "recorded by a snapshot", lkv_press_canonical(st->press));
    if (st->evict && st->kind == LKV_EVICT_H2O && lkv_press_stage_get(st->evict, "decode") == 1.0)
        LKV_FAIL(LKV_ERR_UNSUPPORTED, "press %s: decode-time eviction ranks tokens by attention "
                 "accumulated over the prompt, which a snapshot does not record (decode=0 can "
                 "be cached)", lkv_press_canonical(st->press));
    return LKV_OK;
}

int lkv_press_restore_prompt(lkv_press_state *st, const lkv_seq *seq, int n_prompt,
                             int n_question) {
    LKV_TRY(lkv_press_check_restorable(st));
    LKV_TRY(lkv_press_begin_prompt(st, n_prompt, n_question));
    const int L = st->g.n_layers, Hk = st->g.kv_heads;
    for (int l = 0; l < L; l++) {
        int mx = 0;
        for (int h = 0; h < Hk; h++) {
            int n = lkv_seq_n_tokens(seq, l, h);
            if (n < 0)
                LKV_FAIL(LKV_ERR_INVALID, "press restore: the cache has fewer layers or heads");
            st->kept[l * Hk + h] = n;
            mx = n > mx ? n : mx;
        }
        st->decode_budget[l] = mx; /* what after_prefill leaves */
    }
    st->prefilled = 1;
    st->decode_steps = 0;
    lkv_cache_stats cs;
    LKV_TRY(lkv_cache_get_stats(lkv_seq_cache(seq), &cs));
    st->bytes_before = 0; /* the step ran in another process: no "before" to report */
    st->bytes_after = st->bytes_now = cs.committed;
    st->restored = 1;
    return LKV_OK;
}

void lkv_press_prompt_info(const lkv_press_state *st, int *n_prompt, int *n_question,
                           int *decode_steps) {
    *n_prompt = st ? st->n_prompt : 0;
    *n_question = st ? st->n_question : 0;
    *decode_steps = st ? st->decode_steps : 0;
}

size_t lkv_press_state_report(const lkv_press_state *st, char *buf, size_t cap) {
    if (!st)
        return 0;
    size_t used = 0;
#define OUT(...)                                                                          \
    do {                                                                                  \
        int w_ = snprintf(buf && used < cap ? buf + used : NULL, buf && used < cap ? cap - used : 0, \
                          __VA_ARGS__);                                                   \
        if (w_ > 0)                                                                       \
            used += (size_t)w_;                                                           \
    } while (0)
    OUT("press %s: %s\n", lkv_press_canonical(st->press),
        st->evict ? "" : "(no token eviction)");
    if (st->evict) {
        OUT("  prompt %d tokens (question %d, %s), compression events %d, tokens evicted %lld\n",
            st->n_prompt, st->n_question,
            lkv_press_stage_get(st->evict, "query_aware") == 1.0 ? "compressed too"
                                                                  : "kept out of compression",
            st->n_events, (long long)st->evicted_tokens);
        if (st->bytes_before) /* both read around the prompt step, never later */
            OUT("  KV bytes committed: before %zu, after %zu (%.1f%%) the prompt step; now %zu "
                "after %d decode steps\n",
                st->bytes_before, st->bytes_after,
                100.0 * (double)st->bytes_after / (double)st->bytes_before, st->bytes_now,
                st->decode_steps);
        else
            OUT("  KV bytes committed: now %zu after %d decode steps (%s)\n", st->bytes_now,
                st->decode_steps,
                st->restored ? "prompt step restored from a prompt cache" : "no prompt step");
        int L = st->g.n_layers, H = st->g.kv_heads;
        int mn = 1 << 30, mx = 0;
        double sum = 0;
        for (int i = 0; i < L * H; i++) {
            mn = st->kept[i] < mn ? st->kept[i] : mn;
            mx = st->kept[i] > mx ? st->kept[i] : mx;
            sum += st->kept[i];
        }
        OUT("  tokens kept per (layer, head) after prefill: min %d, mean %.1f, max %d\n", mn,
            sum / (L * H), mx);
        OUT("  per layer (head 0..%d):", H - 1);
        for (int l = 0; l < L; l++) {
            OUT("%s L%d=", l % 8 ? "" : "\n   ", l);
            for (int h = 0; h < H; h++)
                OUT("%s%d", h ? "/" : "", st->kept[l * H + h]);
            OUT(" ");
        }
        OUT("\n");
    }
    if (st->ark) { /* press/arkvale.c */
        size_t w_ = lkv_arkvale_report(st, buf && used < cap ? buf + used : NULL,
                                       buf && used < cap ? cap - used : 0);
        used += w_;
    }
    if (st->quant && st->quant_pages > 0) /* press/quant.c */
        OUT("  quantized to %s: %lld pages; KV bytes committed at the first quantization: "
            "before %zu, after %zu (%.1f%%)\n",
            lkv_dtype_name(lkv_press_quant_target(st->quant)), (long long)st->quant_pages,
            st->quant_bytes_before, st->quant_bytes_after,
            100.0 * (double)st->quant_bytes_after / (double)st->quant_bytes_before);
    else if (st->quant)
        OUT("  quantized to %s: no page converted%s\n",
            lkv_dtype_name(lkv_press_quant_target(st->quant)),
            lkv_press_stage_get(st->quant, "residual") == 0.0 &&
                    lkv_press_quant_target(st->quant) == LKV_DTYPE_Q8
                ? " (no residual window: pages are written as q8 from the start)"
                : " yet (every page is inside the exact residual window)");
#undef OUT
    return used;
}
