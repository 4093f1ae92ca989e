/* model_ctx.c -- contexts: one sequence being evaluated through the KV cache.
 *
 * lkv_ctx_eval splits the tokens into chunks of n_batch (prefill) and runs the
 * forward pass on each; a single token is simply a chunk of one (decode). Only
 * the logits that are asked for are computed: the output head is 49152 x 576
 * for SmolLM2, as costly as a third of the layers.
 */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "model/model.h"

#define MAX_N_CTX (1 << 24)
#define MAX_N_BATCH 4096

struct lkv_ctx {
    const lkv_model *m;
    lkv_ctx_params p;
    int n_ctx;
    int n_past;            /* tokens held = position of the next token */
    lkv_model_kv *kv;
    lkv_fwd_scratch s;
    float *logits;         /* [V] after the last evaluated token */
    int has_logits;
    uint8_t *want;         /* [n_batch] which rows of a chunk need logits */
};

lkv_ctx_params lkv_ctx_default_params(void) {
    lkv_ctx_params p;
    memset(&p, 0, sizeof p);
    p.n_ctx = 0;
    p.n_batch = 256;
    p.kv_dtype = LKV_DTYPE_F16;
    return p;
}

/* The architecture's scratch and forward pass (model.h). */
static int scratch_init(lkv_fwd_scratch *s, const lkv_model *m, int B) {
    LKV_TRY(lkv_fwd_scratch_init(s, m, B));
    int rc = m->arch_id == LKV_ARCH_GEMMA3 ? lkv_gemma3_scratch_init(s, m) : LKV_OK;
    if (rc < 0)
        lkv_fwd_scratch_free(s);
    return rc;
}

static void scratch_free(lkv_fwd_scratch *s) {
    lkv_gemma3_scratch_free(s); /* no-op unless allocated */
    lkv_fwd_scratch_free(s);
}

static int forward(lkv_ctx *ctx, const int32_t *tokens, int n, float *logits,
                   const uint8_t *want) {
    if (ctx->m->arch_id == LKV_ARCH_GEMMA3)
        return lkv_gemma3_forward(ctx->m, &ctx->s, ctx->kv, tokens, n, ctx->n_past, logits,
                                  want, &ctx->p);
    return lkv_llama_forward(ctx->m, &ctx->s, ctx->kv, tokens, n, ctx->n_past, logits, want,
                             &ctx->p);
}

void lkv_ctx_free(lkv_ctx *ctx) {
    if (!ctx)
        return;
    lkv_model_kv_free(ctx->kv);
    scratch_free(&ctx->s);
    lkv_free(ctx->logits);
    lkv_free(ctx->want);
    lkv_free(ctx);
}

int lkv_ctx_create(const lkv_model *m, const lkv_ctx_params *p, lkv_ctx **out) {
    if (!m || !out)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_ctx_create: NULL argument");
    lkv_ctx_params def = lkv_ctx_default_params();
    if (!p)
        p = &def;
    if (p->n_ctx < 0 || p->n_ctx > MAX_N_CTX)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_ctx_create: n_ctx %d is outside [0, %d]", p->n_ctx,
                 MAX_N_CTX);
    if (p->n_batch < 1 || p->n_batch > MAX_N_BATCH)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_ctx_create: n_batch %d is outside [1, %d]",
                 p->n_batch, MAX_N_BATCH);
    if (p->kv_dtype < 0 || p->kv_dtype >= LKV_DTYPE_COUNT_)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_ctx_create: unknown kv_dtype %d", (int)p->kv_dtype);
    if (p->page_tokens < 0)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_ctx_create: page_tokens %d < 0", p->page_tokens);
    lkv_ctx *ctx = lkv_calloc(1, sizeof *ctx);
    if (!ctx)
        LKV_FAIL(LKV_ERR_NOMEM, "lkv_ctx_create: out of memory");
    ctx->m = m;
    ctx->p = *p;
    ctx->n_ctx = p->n_ctx ? p->n_ctx : m->hp.n_ctx_train;
    ctx->p.n_ctx = ctx->n_ctx;
    int rc = scratch_init(&ctx->s, m, p->n_batch);
    if (rc < 0) {
        lkv_free(ctx);
        return rc;
    }
    ctx->logits = lkv_malloc((size_t)m->hp.n_vocab * sizeof(float));
    ctx->want = lkv_calloc((size_t)p->n_batch, 1);
    if (!ctx->logits || !ctx->want) {
        lkv_ctx_free(ctx);
        LKV_FAIL(LKV_ERR_NOMEM, "lkv_ctx_create: out of memory");
    }
    rc = lkv_model_kv_create(m, &ctx->p, &ctx->kv);
    if (rc < 0) {
        lkv_ctx_free(ctx);
        return rc;
    }
    *out = ctx;
    return LKV_OK;
}

int lkv_ctx_eval(lkv_ctx *ctx, const int32_t *tokens, int n, float *logits) {
    if (!ctx || (!tokens && n > 0))
        LKV_FAIL(LKV_ERR_INVALID, "lkv_ctx_eval: NULL argument");
    if (n < 1)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_ctx_eval: %d tokens", n);
    const int V = ctx->m->hp.n_vocab;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            LKV_FAIL(LKV_ERR_RANGE, "lkv_ctx_eval: token %d (at %d) is outside [0, %d)",
                     (int)tokens[i], i, V);
    if (n > ctx->n_ctx - ctx->n_past)
        LKV_FAIL(LKV_ERR_RANGE,
                 "lkv_ctx_eval: %d more tokens would exceed the context of %d (holding %d)", n,
                 ctx->n_ctx, ctx->n_past);
    ctx->has_logits = 0;
    const int B = ctx->s.B;
    for (int c = 0; c < n; c += B) {
        int nb = n - c < B ? n - c : B;
        int last_chunk = c + nb == n;
        float *out = NULL;
        const uint8_t *want = NULL;
        if (logits) {
            out = logits + (size_t)c * V; /* every row */
        } else if (last_chunk) {
            memset(ctx->want, 0, (size_t)nb);
            ctx->want[nb - 1] = 1;
            want = ctx->want;
            out = ctx->logits;
        }
        int rc = forward(ctx, tokens + c, nb, out, want);
        if (rc < 0) {
            /* drop the chunk's partial K/V: layers before the failure hold it */
            char msg[400];
            snprintf(msg, sizeof msg, "%s", lkv_last_error());
            lkv_model_kv_truncate(ctx->kv, ctx->n_past);
            return lkv_set_error(rc, "%s", msg);
        }
        ctx->n_past += nb;
    }
    if (logits)
        memcpy(ctx->logits, logits + (size_t)(n - 1) * V, (size_t)V * sizeof(float));
    ctx->has_logits = 1;
    return LKV_OK;
}

int lkv_ctx_eval_prompt(lkv_ctx *ctx, const int32_t *tokens, int n, int n_question,
                        float *logits) {
    if (!ctx)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_ctx_eval_prompt: NULL context");
    if (n_question < 0 || n_question > n)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_ctx_eval_prompt: n_question %d not in [0, %d]",
                 n_question, n);
    LKV_TRY(lkv_model_kv_begin_prompt(ctx->kv, ctx->n_past, n, n_question));
    int rc = lkv_ctx_eval(ctx, tokens, n, logits);
    if (rc < 0) {
        lkv_model_kv_abort_prompt(ctx->kv);
        return rc;
    }
    return lkv_model_kv_end_prompt(ctx->kv, ctx->p.tp);
}

int lkv_ctx_prefill_prompt(lkv_ctx *ctx, const int32_t *tokens, int n, int n_question) {
    return lkv_ctx_eval_prompt(ctx, tokens, n, n_question, NULL);
}

int lkv_ctx_prefill(lkv_ctx *ctx, const int32_t *tokens, int n) {
    return lkv_ctx_prefill_prompt(ctx, tokens, n, 0);
}

int lkv_ctx_decode(lkv_ctx *ctx, int32_t token) {
    LKV_TRY(lkv_ctx_eval(ctx, &token, 1, NULL));
    return lkv_model_kv_after_decode(ctx->kv, ctx->p.tp);
}

size_t lkv_ctx_press_report(const lkv_ctx *ctx, char *buf, size_t cap) {
    return ctx ? lkv_model_kv_press_report(ctx->kv, buf, cap) : 0;
}

const float *lkv_ctx_logits(const lkv_ctx *ctx) {
    return ctx && ctx->has_logits ? ctx->logits : NULL;
}

int lkv_ctx_pos(const lkv_ctx *ctx) { return ctx ? ctx->n_past : 0; }

int lkv_ctx_n_ctx(const lkv_ctx *ctx) { return ctx ? ctx->n_ctx : 0; }

int lkv_ctx_truncate(lkv_ctx *ctx, int n) {
    if (!ctx)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_ctx_truncate: NULL context");
    if (n < 0 || n > ctx->n_past)
        LKV_FAIL(LKV_ERR_RANGE, "lkv_ctx_truncate: %d is outside [0, %d]", n, ctx->n_past);
    LKV_TRY(lkv_model_kv_truncate(ctx->kv, n));
    ctx->n_past = n;
    ctx->has_logits = 0;
    return LKV_OK;
}

int lkv_ctx_reset(lkv_ctx *ctx) { return lkv_ctx_truncate(ctx, 0); }

size_t lkv_ctx_kv_bytes(const lkv_ctx *ctx) { return ctx ? lkv_model_kv_bytes(ctx->kv) : 0; }

int lkv_ctx_save_prompt(lkv_ctx *ctx, const char *path, const int32_t *tokens, int n) {
    if (!ctx || !path || (!tokens && n > 0))
        LKV_FAIL(LKV_ERR_INVALID, "lkv_ctx_save_prompt: NULL argument");
    if (n != ctx->n_past)
        LKV_FAIL(LKV_ERR_INVALID,
                 "lkv_ctx_save_prompt: %d tokens given, the context holds %d", n,
                 ctx->n_past);
    return lkv_model_kv_save(ctx->kv, path, tokens, n, ctx->has_logits ? ctx->logits : NULL,
                             ctx->m->hp.n_vocab);
}

int lkv_ctx_load_prompt(lkv_ctx *ctx, const char *path, const int32_t *tokens, int n,
                        int *n_loaded) {
    return lkv_ctx_load_prompt_question(ctx, path, tokens, n, 0, n_loaded);
}

int lkv_ctx_load_prompt_question(lkv_ctx *ctx, const char *path, const int32_t *tokens, int n,
                                 int n_question, int *n_loaded) {
    if (n_loaded)
        *n_loaded = 0;
    if (!ctx || !path || !n_loaded || (!tokens && n > 0) || n < 0 || n_question < 0 ||
        n_question > n)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_ctx_load_prompt: NULL argument or bad n_question");
    if (ctx->n_past != 0)
        LKV_FAIL(LKV_ERR_STATE, "lkv_ctx_load_prompt: the context is not empty (%d tokens)",
                 ctx->n_past);
    int got = 0, restored_logits = 0;
    int rc = lkv_model_kv_load(ctx->kv, path, tokens, n, n_question, ctx->logits,
                               ctx->m->hp.n_vocab, &got, &restored_logits);
    if (rc < 0) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", lkv_last_error());
        lkv_model_kv_truncate(ctx->kv, 0);
        return lkv_set_error(rc, "%s", msg);
    }
    if (got > ctx->n_ctx) {
        lkv_model_kv_truncate(ctx->kv, 0);
        LKV_FAIL(LKV_ERR_RANGE, "lkv_ctx_load_prompt: the snapshot holds %d tokens, the "
                                "context only %d", got, ctx->n_ctx);
    }
    if (restored_logits) { /* a policy's prompt step, restored whole with its logits */
        ctx->n_past = got;
        ctx->has_logits = 1;
        *n_loaded = got;
        return LKV_OK;
    }
    /* the last prompt token must be evaluated again to get its logits */
    if (got >= n && n > 0) {
        got = n - 1;
        rc = lkv_model_kv_truncate(ctx->kv, got);
        if (rc < 0) {
            lkv_model_kv_truncate(ctx->kv, 0);
            return rc;
        }
    }
    ctx->n_past = got;
    ctx->has_logits = 0;
    *n_loaded = got;
    return LKV_OK;
}
