/* gemma3.c -- the Gemma 3 forward pass (text decoder), in the manner of
 * llama.c: one function, every buffer with its shape.
 *
 * Notation: n tokens in the chunk, D hidden size, H query heads, Hk KV heads,
 * d head dim (set on its own: 4 x 256 over D = 640 for the 270M), F
 * feed-forward size, V vocabulary.
 *
 *   x  = embed[token] * sqrt(D)                          [n][D]
 *   for each layer l:
 *     xb = rmsnorm(x) * attn_norm                        [n][D]
 *     q = xb Wq^T, k = xb Wk^T, v = xb Wv^T              [n][H][d], [n][Hk][d], [n][Hk][d]
 *     q = rmsnorm(q) * q_norm, k = rmsnorm(k) * k_norm   per head, over d
 *     rope(q), rope(k)     halves (i, i + n_rot/2) rotated by pos * base^(-2i/n_rot),
 *                          base = rope.freq_base_swa on sliding-window layers,
 *                          rope.freq_base (positions / linear scale) on global ones
 *     cache.append(k, v)
 *     att = attention(q, cache) with scale 1/sqrt(query_pre_attn_scalar) and, on
 *           sliding-window layers, keys at pos_q - pos_k < window only   [n][H][d]
 *     x += rmsnorm(att Wo^T) * post_attention_norm       ("sandwich" norms)
 *     xb = rmsnorm(x) * ffn_norm
 *     hb = gelu_tanh(xb Wg^T) * (xb Wu^T)                [n][F]  (GeGLU)
 *     x += rmsnorm(hb Wd^T) * post_ffw_norm
 *   logits = rmsnorm(x) * output_norm  Wout^T            [n_wanted][V]  (tied to embed)
 *   (soft-capped as c * tanh(logits / c) only if the file sets
 *    final_logit_softcapping: Gemma 2 did, Gemma 3 does not)
 *
 * Gemma's RMSNorm multiplies by (1 + w); GGUF's converter stores 1 + w, so every
 * norm here is the plain x / rms(x) * w. Unlike the Llama converter, the Gemma
 * one does not permute the Q/K rows: RoPE rotates halves (GPT-NeoX style), as
 * llama.cpp's LLAMA_ROPE_TYPE_NEOX does for this architecture.
 * The hyperparameters and the layer pattern are read in model.c.
 */
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "model/model.h"

/* ------------------------------------------------------------ scratch */

int lkv_gemma3_scratch_init(lkv_fwd_scratch *s, const lkv_model *m) {
    const lkv_hparams *hp = &m->hp;
    size_t half = (size_t)hp->n_rot / 2, b = (size_t)s->B;
    s->rope_cos_swa = lkv_malloc(b * half * sizeof(float));
    s->rope_sin_swa = lkv_malloc(b * half * sizeof(float));
    s->inv_freq_swa = lkv_malloc(half * sizeof(float));
    if (!s->rope_cos_swa || !s->rope_sin_swa || !s->inv_freq_swa) {
        lkv_gemma3_scratch_free(s);
        LKV_FAIL(LKV_ERR_NOMEM, "gemma3: out of memory for the scratch of %d tokens", s->B);
    }
    /* s->inv_freq holds rope_theta^(-2i/n_rot) (lkv_fwd_scratch_init): the
     * global layers' frequencies; the local layers have their own base */
    lkv_fwd_rope_freqs(s->inv_freq_swa, hp->n_rot, (double)hp->rope_theta_swa);
    return LKV_OK;
}

void lkv_gemma3_scratch_free(lkv_fwd_scratch *s) {
    lkv_free(s->rope_cos_swa);
    lkv_free(s->rope_sin_swa);
    lkv_free(s->inv_freq_swa);
    s->rope_cos_swa = s->rope_sin_swa = s->inv_freq_swa = NULL;
}

/* ------------------------------------------------------------ pieces */

/* GELU, tanh approximation (what Gemma was trained with, gelu_pytorch_tanh). */
static inline float gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

/* ------------------------------------------------------------ forward */

int lkv_gemma3_forward(const lkv_model *m, lkv_fwd_scratch *s, lkv_model_kv *kv,
                       const int32_t *tokens, int n, int32_t pos0, float *logits,
                       const uint8_t *want, const lkv_ctx_params *p) {
    const lkv_hparams *hp = &m->hp;
    const int D = hp->n_embd, F = hp->n_ff, H = hp->n_heads, Hk = hp->n_kv_heads;
    const int d = hp->head_dim, half = hp->n_rot / 2;
    const float eps = hp->rms_eps;
    lkv_threadpool *tp = p->tp;
    if (n < 1 || n > s->B)
        LKV_FAIL(LKV_ERR_INVALID, "gemma3: chunk of %d tokens (scratch holds %d)", n, s->B);
    if (!s->rope_cos_swa)
        LKV_FAIL(LKV_ERR_STATE, "gemma3: the scratch lacks the sliding-window tables");

    /* x[n][D] = embedding rows * sqrt(D) */
    for (int t = 0; t < n; t++) {
        s->pos[t] = pos0 + t;
        float *xt = s->x + (size_t)t * D;
        LKV_TRY(lkv_get_row(m->tok_embd.type, m->tok_embd.data, D, tokens[t], xt));
        for (int i = 0; i < D; i++)
            xt[i] *= hp->embd_scale;
    }
    /* global layers: rope_theta, linear scaling; local layers: rope_theta_swa */
    lkv_fwd_rope_tables(s->pos, n, s->inv_freq, half, hp->rope_scale, s->rope_cos, s->rope_sin);
    lkv_fwd_rope_tables(s->pos, n, s->inv_freq_swa, half, 1.0, s->rope_cos_swa, s->rope_sin_swa);

    for (int l = 0; l < hp->n_layers; l++) {
        const lkv_llama_layer *L = &m->layers[l];
        const float *rc = L->window ? s->rope_cos_swa : s->rope_cos;
        const float *rs = L->window ? s->rope_sin_swa : s->rope_sin;

        /* attention block */
        lkv_fwd_rmsnorm(s->xb, s->x, L->attn_norm, n, D, eps);
        LKV_TRY(lkv_fwd_matmul(s, &L->wq, s->xb, n, s->q, tp)); /* q [n][H][d] */
        LKV_TRY(lkv_fwd_matmul(s, &L->wk, s->xb, n, s->k, tp)); /* k [n][Hk][d] */
        LKV_TRY(lkv_fwd_matmul(s, &L->wv, s->xb, n, s->v, tp)); /* v [n][Hk][d] */
        lkv_fwd_rmsnorm(s->q, s->q, L->attn_q_norm, n * H, d, eps);
        lkv_fwd_rmsnorm(s->k, s->k, L->attn_k_norm, n * Hk, d, eps);
        lkv_fwd_rope_rotate(s->q, rc, rs, n, H, d, hp->n_rot, 1);
        lkv_fwd_rope_rotate(s->k, rc, rs, n, Hk, d, hp->n_rot, 1);
        LKV_TRY(lkv_model_kv_append(kv, l, n, s->pos, s->k, s->v));
        /* the layer's window and the scale are in the kv glue's attention params */
        LKV_TRY(lkv_model_kv_attend(kv, l, n, s->q, s->pos, s->att, tp)); /* att [n][H][d] */
        if (p->hook) {
            int rc2 = p->hook(p->hook_user, l, n, s->pos, s->q, s->k, s->v, s->att);
            if (rc2 < 0)
                return lkv_set_error(rc2, "model: the layer hook failed at layer %d (%d)", l,
                                     rc2);
        }
        LKV_TRY(lkv_fwd_matmul(s, &L->wo, s->att, n, s->xb, tp)); /* xb [n][D] */
        lkv_fwd_rmsnorm(s->xb, s->xb, L->post_attn_norm, n, D, eps);
        for (size_t i = 0; i < (size_t)n * D; i++)
            s->x[i] += s->xb[i];

        /* GeGLU feed-forward block */
        lkv_fwd_rmsnorm(s->xb, s->x, L->ffn_norm, n, D, eps);
        LKV_TRY(lkv_fwd_matmul(s, &L->w_gate, s->xb, n, s->hb, tp)); /* hb  [n][F] */
        LKV_TRY(lkv_fwd_matmul(s, &L->w_up, s->xb, n, s->hb2, tp));  /* hb2 [n][F] */
        for (size_t i = 0; i < (size_t)n * F; i++)
            s->hb[i] = gelu_tanh(s->hb[i]) * s->hb2[i];
        LKV_TRY(lkv_fwd_matmul(s, &L->w_down, s->hb, n, s->xb, tp)); /* xb [n][D] */
        lkv_fwd_rmsnorm(s->xb, s->xb, L->post_ffw_norm, n, D, eps);
        for (size_t i = 0; i < (size_t)n * D; i++)
            s->x[i] += s->xb[i];
    }

    if (!logits)
        return LKV_OK;
    /* gather the wanted rows, final norm, output head: logits [n_wanted][V] */
    int nw = 0;
    for (int t = 0; t < n; t++) {
        if (want && !want[t])
            continue;
        lkv_fwd_rmsnorm(s->xb + (size_t)nw * D, s->x + (size_t)t * D, m->output_norm, 1, D, eps);
        nw++;
    }
    if (nw > 0) {
        LKV_TRY(lkv_fwd_matmul(s, &m->output, s->xb, nw, logits, tp));
        if (hp->final_softcap > 0.0f) {
            const float c = hp->final_softcap;
            for (size_t i = 0; i < (size_t)nw * hp->n_vocab; i++)
                logits[i] = c * tanhf(logits[i] / c);
        }
    }
    return LKV_OK;
}
