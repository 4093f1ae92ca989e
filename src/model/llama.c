/* llama.c -- the Llama forward pass (SmolLM2 and friends), in the manner of
 * llama2.c's run.c: one function, every buffer with its shape.
 *
 * Notation: B tokens in the chunk (n), D hidden size, H query heads, Hk KV
 * heads, d head dim, F feed-forward size, V vocabulary.
 *
 *   x  = embed[token]                                  [n][D]
 *   for each layer:
 *     xb = lkv_fwd_rmsnorm(x) * attn_norm                      [n][D]
 *     q = xb Wq^T, k = xb Wk^T, v = xb Wv^T            [n][H*d], [n][Hk*d], [n][Hk*d]
 *     rope(q), rope(k)          adjacent pairs (2i, 2i+1) rotated by pos * theta^(-2i/n_rot)
 *     cache.append(k, v); att = attention(q, cache)    [n][H*d]
 *     x += att Wo^T                                    [n][D]
 *     xb = lkv_fwd_rmsnorm(x) * ffn_norm
 *     hb = silu(xb Wg^T) * (xb Wu^T)                   [n][F]
 *     x += hb Wd^T
 *   logits = lkv_fwd_rmsnorm(x) * output_norm  Wout^T          [n_wanted][V]
 *
 * GGUF's Llama converter permutes the Q/K weight rows so that rotating
 * adjacent pairs here equals the Hugging Face "rotate half" convention.
 */
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "model/model.h"

/* ------------------------------------------------------------ scratch */

int lkv_fwd_scratch_init(lkv_fwd_scratch *s, const lkv_model *m, int B) {
    const lkv_hparams *hp = &m->hp;
    memset(s, 0, sizeof *s);
    s->B = B;
    size_t D = (size_t)hp->n_embd, F = (size_t)hp->n_ff;
    size_t Hd = (size_t)hp->n_heads * hp->head_dim;
    size_t Hkd = (size_t)hp->n_kv_heads * hp->head_dim;
    size_t half = (size_t)hp->n_rot / 2;
    size_t b = (size_t)B;
    s->x = lkv_malloc(b * D * sizeof(float));
    s->xb = lkv_malloc(b * D * sizeof(float));
    s->q = lkv_malloc(b * Hd * sizeof(float));
    s->k = lkv_malloc(b * Hkd * sizeof(float));
    s->v = lkv_malloc(b * Hkd * sizeof(float));
    s->att = lkv_malloc(b * Hd * sizeof(float));
    s->hb = lkv_malloc(b * F * sizeof(float));
    s->hb2 = lkv_malloc(b * F * sizeof(float));
    s->rope_cos = lkv_malloc(b * half * sizeof(float));
    s->rope_sin = lkv_malloc(b * half * sizeof(float));
    s->inv_freq = lkv_malloc(half * sizeof(float));
    s->pos = lkv_malloc(b * sizeof(int32_t));
    /* matmul scratch: the largest over every weight the forward pass uses */
    size_t mm = 0;
    const lkv_weight *ws[2] = {&m->tok_embd, &m->output};
    for (int i = 0; i < 2; i++) {
        size_t need = lkv_matmul_scratch_bytes(ws[i]->type, ws[i]->cols, B);
        if (need > mm)
            mm = need;
    }
    for (int l = 0; l < hp->n_layers; l++) {
        const lkv_llama_layer *L = &m->layers[l];
        const lkv_weight *lw[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up,
                                   &L->w_down};
        for (int i = 0; i < 7; i++) {
            size_t need = lkv_matmul_scratch_bytes(lw[i]->type, lw[i]->cols, B);
            if (need > mm)
                mm = need;
        }
    }
    s->mm_bytes = mm;
    s->mm = mm ? lkv_malloc(mm) : NULL;
    if (!s->x || !s->xb || !s->q || !s->k || !s->v || !s->att || !s->hb || !s->hb2 ||
        !s->rope_cos || !s->rope_sin || !s->inv_freq || !s->pos || (mm && !s->mm)) {
        lkv_fwd_scratch_free(s);
        LKV_FAIL(LKV_ERR_NOMEM, "model: out of memory for the scratch of %d tokens", B);
    }
    /* theta^(-2i/n_rot), computed in double: it is the whole position signal */
    lkv_fwd_rope_freqs(s->inv_freq, hp->n_rot, (double)hp->rope_theta);
    return LKV_OK;
}

void lkv_fwd_scratch_free(lkv_fwd_scratch *s) {
    lkv_free(s->x);
    lkv_free(s->xb);
    lkv_free(s->q);
    lkv_free(s->k);
    lkv_free(s->v);
    lkv_free(s->att);
    lkv_free(s->hb);
    lkv_free(s->hb2);
    lkv_free(s->rope_cos);
    lkv_free(s->rope_sin);
    lkv_free(s->inv_freq);
    lkv_free(s->pos);
    lkv_free(s->mm);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------ pieces */

/* ------------------------------------------------------------ forward */

int lkv_llama_forward(const lkv_model *m, lkv_fwd_scratch *s, lkv_model_kv *kv,
                      const int32_t *tokens, int n, int32_t pos0, float *logits,
                      const uint8_t *want, const lkv_ctx_params *p) {
    const lkv_hparams *hp = &m->hp;
    const int D = hp->n_embd, F = hp->n_ff, H = hp->n_heads, Hk = hp->n_kv_heads;
    const int d = hp->head_dim;
    lkv_threadpool *tp = p->tp;
    if (n < 1 || n > s->B)
        LKV_FAIL(LKV_ERR_INVALID, "model: chunk of %d tokens (scratch holds %d)", n, s->B);

    /* x[n][D] = embedding rows */
    for (int t = 0; t < n; t++) {
        s->pos[t] = pos0 + t;
        LKV_TRY(lkv_get_row(m->tok_embd.type, m->tok_embd.data, D, tokens[t],
                            s->x + (size_t)t * D));
    }
    lkv_fwd_rope_tables(s->pos, n, s->inv_freq, hp->n_rot / 2, hp->rope_scale, s->rope_cos,
                        s->rope_sin);

    for (int l = 0; l < hp->n_layers; l++) {
        const lkv_llama_layer *L = &m->layers[l];

        /* attention block */
        lkv_fwd_rmsnorm(s->xb, s->x, L->attn_norm, n, D, hp->rms_eps);
        LKV_TRY(lkv_fwd_matmul(s, &L->wq, s->xb, n, s->q, tp)); /* q [n][H][d] */
        LKV_TRY(lkv_fwd_matmul(s, &L->wk, s->xb, n, s->k, tp)); /* k [n][Hk][d] */
        LKV_TRY(lkv_fwd_matmul(s, &L->wv, s->xb, n, s->v, tp)); /* v [n][Hk][d] */
        lkv_fwd_rope_rotate(s->q, s->rope_cos, s->rope_sin, n, H, d, hp->n_rot, 0);
        lkv_fwd_rope_rotate(s->k, s->rope_cos, s->rope_sin, n, Hk, d, hp->n_rot, 0);
        LKV_TRY(lkv_model_kv_append(kv, l, n, s->pos, s->k, s->v));
        LKV_TRY(lkv_model_kv_attend(kv, l, n, s->q, s->pos, s->att, tp)); /* att [n][H][d] */
        if (p->hook) {
            int rc = p->hook(p->hook_user, l, n, s->pos, s->q, s->k, s->v, s->att);
            if (rc < 0)
                return lkv_set_error(rc, "model: the layer hook failed at layer %d (%d)", l,
                                     rc);
        }
        LKV_TRY(lkv_fwd_matmul(s, &L->wo, s->att, n, s->xb, tp)); /* xb [n][D] */
        for (size_t i = 0; i < (size_t)n * D; i++)
            s->x[i] += s->xb[i];

        /* SwiGLU feed-forward block */
        lkv_fwd_rmsnorm(s->xb, s->x, L->ffn_norm, n, D, hp->rms_eps);
        LKV_TRY(lkv_fwd_matmul(s, &L->w_gate, s->xb, n, s->hb, tp)); /* hb  [n][F] */
        LKV_TRY(lkv_fwd_matmul(s, &L->w_up, s->xb, n, s->hb2, tp));  /* hb2 [n][F] */
        for (size_t i = 0; i < (size_t)n * F; i++) {
            float g = s->hb[i];
            s->hb[i] = g / (1.0f + expf(-g)) * s->hb2[i];
        }
        LKV_TRY(lkv_fwd_matmul(s, &L->w_down, s->hb, n, s->xb, tp)); /* xb [n][D] */
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
        lkv_fwd_rmsnorm(s->xb + (size_t)nw * D, s->x + (size_t)t * D, m->output_norm, 1, D,
                hp->rms_eps);
        nw++;
    }
    if (nw > 0)
        LKV_TRY(lkv_fwd_matmul(s, &m->output, s->xb, nw, logits, tp));
    return LKV_OK;
}
