/* model_kv.c -- the one file between the forward pass and the KV store.
 *
 * TEMPORARY: until the paged cache (src/kv) lands, K/V live here in one
 * contiguous token-major buffer per layer ([cap][Hk][d] in the context's
 * kv_dtype) and attention runs through lkv_attn_prefill / lkv_attn_decode.
 * Switching to the cache changes only this file.
 */
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "model/model.h"

struct lkv_model_kv {
    lkv_attn_params attn;
    lkv_dtype dtype;
    size_t esize;    /* bytes per element */
    size_t row;      /* elements per token: Hk * d */
    int n_layers;
    int n_ctx;
    int cap;         /* tokens allocated per layer */
    int *n;          /* [L] tokens held per layer */
    void **k, **v;   /* [L] -> [cap][Hk][d] */
};

int lkv_model_kv_create(const lkv_model *m, const lkv_ctx_params *p, lkv_model_kv **out) {
    lkv_model_kv *kv = lkv_calloc(1, sizeof *kv);
    if (!kv)
        LKV_FAIL(LKV_ERR_NOMEM, "model kv: out of memory");
    kv->attn = lkv_attn_default_params();
    kv->attn.head_dim = m->hp.head_dim;
    kv->attn.q_heads = m->hp.n_heads;
    kv->attn.kv_heads = m->hp.n_kv_heads;
    kv->attn.causal = 1;
    kv->dtype = p->kv_dtype;
    kv->esize = lkv_dtype_size(p->kv_dtype);
    kv->row = (size_t)m->hp.n_kv_heads * m->hp.head_dim;
    kv->n_layers = m->hp.n_layers;
    kv->n_ctx = p->n_ctx;
    kv->n = lkv_calloc((size_t)kv->n_layers, sizeof(int));
    kv->k = lkv_calloc((size_t)kv->n_layers, sizeof(void *));
    kv->v = lkv_calloc((size_t)kv->n_layers, sizeof(void *));
    if (!kv->n || !kv->k || !kv->v || kv->esize == 0) {
        lkv_model_kv_free(kv);
        LKV_FAIL(LKV_ERR_NOMEM, "model kv: out of memory");
    }
    *out = kv;
    return LKV_OK;
}

void lkv_model_kv_free(lkv_model_kv *kv) {
    if (!kv)
        return;
    for (int l = 0; l < kv->n_layers; l++) {
        if (kv->k)
            lkv_free(kv->k[l]);
        if (kv->v)
            lkv_free(kv->v[l]);
    }
    lkv_free(kv->k);
    lkv_free(kv->v);
    lkv_free(kv->n);
    lkv_free(kv);
}

static int grow(lkv_model_kv *kv, int need) {
    if (need <= kv->cap)
        return LKV_OK;
    int cap = kv->cap ? kv->cap : 256;
    while (cap < need)
        cap *= 2;
    if (cap > kv->n_ctx)
        cap = kv->n_ctx;
    size_t bytes = (size_t)cap * kv->row * kv->esize;
    for (int l = 0; l < kv->n_layers; l++) {
        void *k = lkv_realloc(kv->k[l], bytes);
        if (!k)
            LKV_FAIL(LKV_ERR_NOMEM, "model kv: out of memory for %d tokens", cap);
        kv->k[l] = k;
        void *v = lkv_realloc(kv->v[l], bytes);
        if (!v)
            LKV_FAIL(LKV_ERR_NOMEM, "model kv: out of memory for %d tokens", cap);
        kv->v[l] = v;
    }
    kv->cap = cap;
    return LKV_OK;
}

int lkv_model_kv_append(lkv_model_kv *kv, int layer, int n, const int32_t *pos,
                        const float *k, const float *v) {
    int have = kv->n[layer];
    if (pos[0] != have)
        LKV_FAIL(LKV_ERR_INVALID, "model kv: append at position %d, holding %d", (int)pos[0],
                 have);
    LKV_TRY(grow(kv, have + n));
    size_t off = (size_t)have * kv->row * kv->esize;
    LKV_TRY(lkv_convert_from_f32(kv->dtype, (char *)kv->k[layer] + off, k, (size_t)n * kv->row));
    LKV_TRY(lkv_convert_from_f32(kv->dtype, (char *)kv->v[layer] + off, v, (size_t)n * kv->row));
    kv->n[layer] = have + n;
    return LKV_OK;
}

int lkv_model_kv_attend(lkv_model_kv *kv, int layer, int n_q, const float *q,
                        const int32_t *q_pos, float *o, lkv_threadpool *tp) {
    lkv_kv_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = kv->dtype;
    t.k = kv->k[layer];
    t.v = kv->v[layer];
    t.n = kv->n[layer];
    t.token_stride = kv->row;
    t.head_stride = (size_t)kv->attn.head_dim;
    t.pos = NULL;
    t.pos0 = 0;
    if (n_q == 1)
        return lkv_attn_decode(&kv->attn, n_q, q, q_pos, 0, &t, o, NULL, NULL, tp);
    return lkv_attn_prefill(&kv->attn, n_q, q, q_pos, 0, &t, o, NULL, NULL, tp);
}

int lkv_model_kv_truncate(lkv_model_kv *kv, int n) {
    for (int l = 0; l < kv->n_layers; l++)
        if (kv->n[l] > n)
            kv->n[l] = n;
    return LKV_OK;
}

size_t lkv_model_kv_bytes(const lkv_model_kv *kv) {
    size_t tokens = 0;
    for (int l = 0; l < kv->n_layers; l++)
        tokens += (size_t)kv->n[l];
    return tokens * kv->row * kv->esize * 2;
}

int lkv_model_kv_save(lkv_model_kv *kv, const char *path, const int32_t *tokens, int n) {
    (void)kv;
    (void)path;
    (void)tokens;
    (void)n;
    LKV_FAIL(LKV_ERR_UNSUPPORTED, "prompt snapshots need the paged KV cache (not built yet)");
}

int lkv_model_kv_load(lkv_model_kv *kv, const char *path, const int32_t *tokens, int n,
                      int *n_loaded) {
    (void)kv;
    (void)path;
    (void)tokens;
    (void)n;
    *n_loaded = 0;
    LKV_FAIL(LKV_ERR_UNSUPPORTED, "prompt snapshots need the paged KV cache (not built yet)");
}
