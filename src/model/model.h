/* model.h -- the model runtime's internal structures (model layer).
 *
 * A model is a memory-mapped GGUF file plus a table of views into it: weights
 * stay quantized in the mapping, only the small norm vectors are copied out as
 * f32. A context (lkv_ctx) is one sequence being evaluated: its KV store (see
 * model_kv.c, the only file that talks to the cache), the scratch buffers of the
 * forward pass and the logits of the last evaluated token.
 *
 * Files:
 *   model.c       loading, validation of hyperparameters and tensor shapes
 *   model_ctx.c   contexts: eval (prefill / decode), logits, snapshots
 *   model_kv.c    glue between the forward pass and the KV cache
 *   model_tok.c   the public tokenizer / chat-template wrappers
 *   llama.c       the Llama forward pass
 *   gemma3.c      the Gemma 3 forward pass (sliding-window layers, QK-norm)
 *   sampling.c    greedy, temperature, top-k, top-p
 */
#ifndef LKV_MODEL_MODEL_H
#define LKV_MODEL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "longkv.h"
#include "model/gguf.h"

/* A weight matrix W[rows][cols] in the mapping (cols is the contiguous axis,
 * GGUF's ne[0]). */
typedef struct lkv_weight {
    int type;          /* lkv_qtype */
    const void *data;  /* into the mapping */
    int64_t rows, cols;
} lkv_weight;

typedef struct lkv_llama_layer {
    float *attn_norm;  /* [D] owned f32 copy */
    float *ffn_norm;   /* [D] owned f32 copy */
    lkv_weight wq;     /* [H*d][D] */
    lkv_weight wk;     /* [Hk*d][D] */
    lkv_weight wv;     /* [Hk*d][D] */
    lkv_weight wo;     /* [D][H*d] */
    lkv_weight w_gate; /* [F][D] */
    lkv_weight w_up;   /* [F][D] */
    lkv_weight w_down; /* [D][F] */
    /* Gemma 3 only (NULL / 0 for Llama): */
    float *attn_q_norm;    /* [d] owned f32 copy: per-head RMSNorm of q */
    float *attn_k_norm;    /* [d] owned f32 copy: per-head RMSNorm of k */
    float *post_attn_norm; /* [D] owned f32 copy: norm of the attention output */
    float *post_ffw_norm;  /* [D] owned f32 copy: norm of the feed-forward output */
    int window;            /* 0 = global attention, else sliding window (positions) */
} lkv_llama_layer;

/* Architectures this build runs (lkv_model.arch_id). */
enum { LKV_ARCH_LLAMA = 0, LKV_ARCH_GEMMA3 = 1 };

typedef struct lkv_hparams {
    int n_layers;     /* L */
    int n_embd;       /* D */
    int n_ff;         /* F */
    int n_heads;      /* H */
    int n_kv_heads;   /* Hk */
    int head_dim;     /* d */
    int n_rot;        /* rotated channels per head (<= d, even) */
    int n_vocab;      /* V */
    int n_ctx_train;  /* training context */
    float rope_theta; /* RoPE base */
    float rope_scale; /* positions are divided by this (linear scaling); 1 = none */
    float rms_eps;
    /* Gemma 3 (the Llama values in brackets): */
    float rope_theta_swa; /* RoPE base of sliding-window layers (unused) */
    int n_swa;            /* sliding window in positions; 0 = none (0) */
    float attn_scale;     /* softmax scale of q.k; 0 = 1/sqrt(d) (0) */
    float embd_scale;     /* token embeddings are multiplied by this (1) */
    float final_softcap;  /* logits = c * tanh(logits / c); 0 = off (0) */
} lkv_hparams;

struct lkv_model {
    lkv_gguf *gguf;
    char *path;
    char arch[32];
    int arch_id;           /* LKV_ARCH_* */
    char name[128];
    lkv_hparams hp;
    lkv_weight tok_embd;   /* [V][D] */
    lkv_weight output;     /* [V][D]; the same view as tok_embd when tied */
    int tied_output;
    float *output_norm;    /* [D] owned f32 copy */
    lkv_llama_layer *layers; /* [L] */
    size_t scratch_cols_max; /* for sizing matmul scratch */
    uint64_t model_id;     /* hash of the file identity (for snapshots / prefix keys) */
    size_t n_params;
    size_t weight_bytes;
    struct lkv_tokenizer *tok; /* NULL when loaded without a tokenizer */
};

/* ------------------------------------------------------------ KV glue */

/* The KV store of one context (model_kv.c). Hides whether K/V live in the paged
 * cache or elsewhere, so the forward pass never changes when the store does. */
typedef struct lkv_model_kv lkv_model_kv;

int lkv_model_kv_create(const lkv_model *m, const lkv_ctx_params *p, lkv_model_kv **out);
void lkv_model_kv_free(lkv_model_kv *kv);
/* Appends n tokens of one layer: k, v [n][Hk][d] f32 at positions pos[n]. */
int lkv_model_kv_append(lkv_model_kv *kv, int layer, int n, const int32_t *pos,
                        const float *k, const float *v);
/* o[n_q][H][d] = attention of q[n_q][H][d] (positions q_pos) over the layer's cache. */
int lkv_model_kv_attend(lkv_model_kv *kv, int layer, int n_q, const float *q,
                        const int32_t *q_pos, float *o, lkv_threadpool *tp);
/* Keeps the first n tokens (positions < n) of every layer. */
int lkv_model_kv_truncate(lkv_model_kv *kv, int n);
/* Bytes held by the store (measured from the pool when the cache provides it). */
size_t lkv_model_kv_bytes(const lkv_model_kv *kv);

/* The context's KV policy around the cache (model_kv.c forwards to these when
 * lkv_ctx_params.press is a policy other than the full cache). */
int lkv_model_kv_begin_prompt(lkv_model_kv *kv, int32_t pos0, int n, int n_question);
int lkv_model_kv_end_prompt(lkv_model_kv *kv, lkv_threadpool *tp);
void lkv_model_kv_abort_prompt(lkv_model_kv *kv);
int lkv_model_kv_after_decode(lkv_model_kv *kv, lkv_threadpool *tp);
size_t lkv_model_kv_press_report(const lkv_model_kv *kv, char *buf, size_t cap);

typedef struct lkv_model_press lkv_model_press;
int lkv_model_press_create(const lkv_model *m, const lkv_press *p, lkv_cache_params *cp,
                           lkv_model_press **out);
void lkv_model_press_free(lkv_model_press *mp);
int lkv_model_press_begin_prompt(lkv_model_press *mp, int32_t pos0, int n, int n_question);
int lkv_model_press_attend(lkv_model_press *mp, lkv_seq *seq, int layer,
                           const lkv_attn_params *base, int n_q, const float *q,
                           const int32_t *q_pos, float *o, lkv_threadpool *tp);
int lkv_model_press_end_prompt(lkv_model_press *mp, lkv_seq *seq, lkv_threadpool *tp);
void lkv_model_press_abort_prompt(lkv_model_press *mp);
int lkv_model_press_reset(lkv_model_press *mp);
int lkv_model_press_after_decode(lkv_model_press *mp, lkv_seq *seq, lkv_threadpool *tp);
size_t lkv_model_press_report(const lkv_model_press *mp, char *buf, size_t cap);
/* Whether the cache of an n-token context may be saved as a prompt cache now
 * (right after the prompt step of a restorable policy); *n_question its split. */
int lkv_model_press_check_snapshot(const lkv_model_press *mp, int n, int *n_question);
/* The prompt step's state for a compressed cache restored from a prompt file. */
int lkv_model_press_restore(lkv_model_press *mp, const lkv_seq *seq, int n, int n_question);
/* Prompt files (model_kv.c). With a policy the file also holds its canonical
 * spec, the question split and the logits after the last token (logits
 * [n_vocab]: in for save, out for load, *with_logits = 1 when restored). */
int lkv_model_kv_save(lkv_model_kv *kv, const char *path, const int32_t *tokens, int n,
                      const float *logits, int n_vocab);
int lkv_model_kv_load(lkv_model_kv *kv, const char *path, const int32_t *tokens, int n,
                      int n_question, float *logits, int n_vocab, int *n_loaded,
                      int *with_logits);

/* ------------------------------------------------------------ forward */

/* Scratch buffers of one context, sized for B = n_batch tokens. */
typedef struct lkv_fwd_scratch {
    int B;            /* tokens per chunk */
    float *x;         /* [B][D] residual stream */
    float *xb;        /* [B][D] normed input of a sublayer */
    float *q;         /* [B][H*d] queries (after RoPE) */
    float *k;         /* [B][Hk*d] keys (after RoPE) */
    float *v;         /* [B][Hk*d] values */
    float *att;       /* [B][H*d] attention output */
    float *hb;        /* [B][F] gate, then silu(gate) * up */
    float *hb2;       /* [B][F] up */
    float *rope_cos;  /* [B][n_rot/2] */
    float *rope_sin;  /* [B][n_rot/2] */
    float *inv_freq;  /* [n_rot/2] */
    int32_t *pos;     /* [B] positions of the chunk */
    /* Gemma 3 only (lkv_gemma3_scratch_init; NULL otherwise): */
    float *rope_cos_swa; /* [B][n_rot/2] tables of the sliding-window layers */
    float *rope_sin_swa; /* [B][n_rot/2] */
    float *inv_freq_swa; /* [n_rot/2] */
    void *mm;         /* matmul scratch */
    size_t mm_bytes;
} lkv_fwd_scratch;

int lkv_fwd_scratch_init(lkv_fwd_scratch *s, const lkv_model *m, int B);

/* Shared pieces of the forward passes (fwd_ops.c).
 * o[n][D] = x[n][D] / rms(x) * w[D]; o may be x (rows of D: also per head). */
void lkv_fwd_rmsnorm(float *o, const float *x, const float *w, int n, int D, float eps);
/* inv_freq[n_rot/2] = theta^(-2i/n_rot) */
void lkv_fwd_rope_freqs(float *inv_freq, int n_rot, double theta);
/* cos/sin[n][half] of (pos[t] / pos_scale) * inv_freq[i] */
void lkv_fwd_rope_tables(const int32_t *pos, int n, const float *inv_freq, int half,
                         double pos_scale, float *cos_t, float *sin_t);
/* Rotates every head of x[n][n_heads][d] by token t's angles: adjacent pairs
 * (2i, 2i+1) when halves == 0 (GGUF llama), (i, i + n_rot/2) when 1 (NeoX). */
void lkv_fwd_rope_rotate(float *x, const float *cos_t, const float *sin_t, int n, int n_heads,
                         int d, int n_rot, int halves);
/* y[n][rows] = x[n][cols] W^T */
static inline int lkv_fwd_matmul(lkv_fwd_scratch *s, const lkv_weight *w, const float *x, int n,
                                 float *y, lkv_threadpool *tp) {
    return lkv_matmul(w->type, w->data, w->rows, w->cols, x, n, y, s->mm, tp);
}
void lkv_fwd_scratch_free(lkv_fwd_scratch *s);

/* Runs the Llama forward pass over n <= s->B tokens at positions pos0..pos0+n-1,
 * appending their K/V to kv. When logits != NULL, writes the logits of the
 * tokens i with want[i] != 0 (or all tokens if want == NULL), packed in order,
 * [n_wanted][V]. */
int lkv_llama_forward(const lkv_model *m, lkv_fwd_scratch *s, lkv_model_kv *kv,
                      const int32_t *tokens, int n, int32_t pos0, float *logits,
                      const uint8_t *want, const lkv_ctx_params *p);

/* Gemma 3 (gemma3.c): the extra scratch (rope tables of the sliding-window
 * layers; call after lkv_fwd_scratch_init, free before lkv_fwd_scratch_free)
 * and the forward pass, with the same contract as lkv_llama_forward. */
int lkv_gemma3_scratch_init(lkv_fwd_scratch *s, const lkv_model *m);
void lkv_gemma3_scratch_free(lkv_fwd_scratch *s);
int lkv_gemma3_forward(const lkv_model *m, lkv_fwd_scratch *s, lkv_model_kv *kv,
                       const int32_t *tokens, int n, int32_t pos0, float *logits,
                       const uint8_t *want, const lkv_ctx_params *p);

#endif
