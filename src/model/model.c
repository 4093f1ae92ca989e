/* model.c -- loading a GGUF model: architecture, hyperparameters, tensor views.
 *
 * Everything read from the file is untrusted: each hyperparameter is range
 * checked, each tensor the forward pass uses must exist with exactly the shape
 * the hyperparameters imply and a type the matmul kernels support, so that the
 * forward pass itself needs no checks. Weights stay in the mapping; only the
 * norm vectors ([D] each) are copied out as f32.
 */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "model/tokenizer.h"

/* Upper bounds that keep every size computation far from overflow and reject
 * absurd files before any allocation. */
#define MAX_LAYERS 512
#define MAX_EMBD 65536
#define MAX_FF (1 << 20)
#define MAX_HEADS 1024
#define MAX_VOCAB (1 << 22)
#define MAX_CTX (1 << 24)

lkv_model_params lkv_model_default_params(void) {
    lkv_model_params p;
    memset(&p, 0, sizeof p);
    p.load_tokenizer = 1;
    return p;
}

/* ------------------------------------------------------- metadata helpers */

/* Reads "<arch>.<suffix>" as an integer in [lo, hi]. Missing keys give def when
 * def_ok, else an error naming the key. */
static int get_int(const lkv_model *m, const char *suffix, int64_t lo, int64_t hi,
                   int def_ok, int64_t def, int *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    int64_t v;
    int rc = lkv_gguf_get_i64(m->gguf, key, &v);
    if (rc == LKV_ERR_NOT_FOUND && def_ok) {
        v = def;
    } else if (rc == LKV_ERR_NOT_FOUND) {
        LKV_FAIL(LKV_ERR_FORMAT, "model: metadata key '%s' is missing", key);
    } else if (rc < 0) {
        LKV_FAIL(LKV_ERR_FORMAT, "model: metadata key '%s' is not an integer", key);
    }
    if (v < lo || v > hi)
        LKV_FAIL(LKV_ERR_FORMAT, "model: %s = %lld is outside [%lld, %lld]", key,
                 (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return LKV_OK;
}

static int get_float(const lkv_model *m, const char *suffix, double lo, double hi,
                     int def_ok, double def, float *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    double v;
    int rc = lkv_gguf_get_f64(m->gguf, key, &v);
    if (rc == LKV_ERR_NOT_FOUND && def_ok) {
        v = def;
    } else if (rc == LKV_ERR_NOT_FOUND) {
        LKV_FAIL(LKV_ERR_FORMAT, "model: metadata key '%s' is missing", key);
    } else if (rc < 0) {
        LKV_FAIL(LKV_ERR_FORMAT, "model: metadata key '%s' is not a number", key);
    }
    if (!(v >= lo && v <= hi)) /* also rejects NaN */
        LKV_FAIL(LKV_ERR_FORMAT, "model: %s = %g is outside [%g, %g]", key, v, lo, hi);
    *out = (float)v;
    return LKV_OK;
}

static void copy_gguf_str(char *dst, size_t cap, lkv_gguf_str s) {
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

/* ------------------------------------------------------- hyperparameters */

/* Gemma 3 on top of the common keys, with the rules llama.cpp applies to the
 * same files (so both engines read a file the same way):
 *   - attention.sliding_window (absent or 0: every layer global);
 *   - the local/global layer pattern: attention.sliding_window_pattern, an
 *     integer period P (default 6: layer l is local iff l % P < P - 1, i.e.
 *     5 local then 1 global) or an array of one bool per layer;
 *   - rope.freq_base_swa for local layers (default 10000), rope.freq_base for
 *     global ones; linear RoPE scaling applies to global layers only;
 *   - the attention scale 1/sqrt(query_pre_attn_scalar), which the converter
 *     does not store: head_dim, except for the 62-layer 27B (D / H);
 *   - final_logit_softcapping (absent: none, the Gemma 3 default).
 * The layers' windows are set in load_tensors once the layers exist. */
static int load_gemma3_hparams(lkv_model *m) {
    lkv_hparams *hp = &m->hp;
    LKV_TRY(get_int(m, "attention.sliding_window", 0, MAX_CTX, 1, 0, &hp->n_swa));
    LKV_TRY(get_float(m, "rope.freq_base_swa", 1.0, 1e12, 1, 10000.0, &hp->rope_theta_swa));
    LKV_TRY(get_float(m, "final_logit_softcapping", 0.0, 1e6, 1, 0.0, &hp->final_softcap));
    hp->embd_scale = sqrtf((float)hp->n_embd);
    int q_scalar = hp->n_layers == 62 ? hp->n_embd / hp->n_heads : hp->head_dim;
    hp->attn_scale = 1.0f / sqrtf((float)q_scalar);
    return LKV_OK;
}

/* Which Gemma 3 layers use the sliding window (see load_gemma3_hparams). */
static int set_gemma3_windows(lkv_model *m) {
    const lkv_hparams *hp = &m->hp;
    if (hp->n_swa == 0)
        return LKV_OK;
    char key[128];
    snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", m->arch);
    const lkv_gguf_kv *kv = lkv_gguf_find(m->gguf, key);
    if (kv && kv->type == LKV_GGUF_ARRAY) {
        if (kv->arr_n != (uint64_t)hp->n_layers)
            LKV_FAIL(LKV_ERR_FORMAT, "model: %s has %llu entries for %d layers", key,
                     (unsigned long long)kv->arr_n, hp->n_layers);
        for (int l = 0; l < hp->n_layers; l++) {
            int64_t v;
            if (lkv_gguf_arr_i64(kv, (uint64_t)l, &v) < 0)
                LKV_FAIL(LKV_ERR_FORMAT, "model: %s[%d] is not a bool", key, l);
            m->layers[l].window = v ? hp->n_swa : 0;
        }
        return LKV_OK;
    }
    int period;
    LKV_TRY(get_int(m, "attention.sliding_window_pattern", 0, MAX_LAYERS, 1, 6, &period));
    for (int l = 0; l < hp->n_layers; l++)
        m->layers[l].window = period == 0 || l % period < period - 1 ? hp->n_swa : 0;
    return LKV_OK;
}

static int load_hparams(lkv_model *m) {
    lkv_hparams *hp = &m->hp;
    LKV_TRY(get_int(m, "block_count", 1, MAX_LAYERS, 0, 0, &hp->n_layers));
    LKV_TRY(get_int(m, "embedding_length", 8, MAX_EMBD, 0, 0, &hp->n_embd));
    LKV_TRY(get_int(m, "feed_forward_length", 1, MAX_FF, 0, 0, &hp->n_ff));
    LKV_TRY(get_int(m, "attention.head_count", 1, MAX_HEADS, 0, 0, &hp->n_heads));
    LKV_TRY(get_int(m, "attention.head_count_kv", 1, MAX_HEADS, 1, hp->n_heads,
                    &hp->n_kv_heads));
    LKV_TRY(get_int(m, "context_length", 1, MAX_CTX, 0, 0, &hp->n_ctx_train));
    if (hp->n_heads % hp->n_kv_heads != 0)
        LKV_FAIL(LKV_ERR_FORMAT, "model: %d query heads are not a multiple of %d KV heads",
                 hp->n_heads, hp->n_kv_heads);
    if (hp->n_embd % hp->n_heads != 0)
        LKV_FAIL(LKV_ERR_FORMAT, "model: embedding length %d is not a multiple of %d heads",
                 hp->n_embd, hp->n_heads);
    int d_default = hp->n_embd / hp->n_heads;
    int d_k, d_v;
    LKV_TRY(get_int(m, "attention.key_length", 1, 4096, 1, d_default, &d_k));
    LKV_TRY(get_int(m, "attention.value_length", 1, 4096, 1, d_default, &d_v));
    /* Gemma 3 sets the head dim on its own (256 heads of 4 x 256 over D = 640) */
    if (m->arch_id == LKV_ARCH_GEMMA3 && d_k == d_v)
        d_default = d_k;
    if (d_k != d_v || d_k != d_default)
        LKV_FAIL(LKV_ERR_UNSUPPORTED,
                 "model: head dims k=%d v=%d differ from embedding/heads=%d (not supported)",
                 d_k, d_v, d_default);
    hp->head_dim = d_k;
    if (hp->head_dim % 8 != 0 || hp->head_dim > 256)
        LKV_FAIL(LKV_ERR_UNSUPPORTED,
                 "model: head dim %d is not supported (a multiple of 8, at most 256)",
                 hp->head_dim);
    LKV_TRY(get_int(m, "rope.dimension_count", 2, hp->head_dim, 1, hp->head_dim, &hp->n_rot));
    if (hp->n_rot % 2 != 0)
        LKV_FAIL(LKV_ERR_FORMAT, "model: rope.dimension_count %d is odd", hp->n_rot);
    LKV_TRY(get_float(m, "rope.freq_base", 1.0, 1e12, 1, 10000.0, &hp->rope_theta));
    LKV_TRY(get_float(m, "attention.layer_norm_rms_epsilon", 0.0, 1.0, 0, 0,
                      &hp->rms_eps));

    /* RoPE scaling: none or linear; anything else would silently be wrong. */
    hp->rope_scale = 1.0f;
    char key[128];
    lkv_gguf_str st;
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch);
    if (lkv_gguf_get_str(m->gguf, key, &st) == LKV_OK && !lkv_gguf_str_eq(st, "none")) {
        if (!lkv_gguf_str_eq(st, "linear"))
            LKV_FAIL(LKV_ERR_UNSUPPORTED, "model: RoPE scaling '%.*s' is not supported",
                     (int)(st.len > 32 ? 32 : st.len), st.ptr);
        LKV_TRY(get_float(m, "rope.scaling.factor", 1e-3, 1e3, 1, 1.0, &hp->rope_scale));
    }
    hp->embd_scale = 1.0f;
    return m->arch_id == LKV_ARCH_GEMMA3 ? load_gemma3_hparams(m) : LKV_OK;
}

/* ------------------------------------------------------- tensors */

/* Finds a tensor and checks its type and shape: a matrix [rows][cols], or a
 * vector when rows == 0. */
static int find_tensor(lkv_model *m, const char *name, int64_t rows, int64_t cols,
                       const lkv_gguf_tensor **out) {
    const lkv_gguf_tensor *t = lkv_gguf_find_tensor(m->gguf, name);
    if (!t)
        LKV_FAIL(LKV_ERR_FORMAT, "model: tensor '%s' is missing", name);
    int want_dims = rows == 0 ? 1 : 2;
    int64_t extra = 1;
    for (int i = want_dims; i < 4; i++)
        extra *= t->ne[i];
    if (t->ne[0] != cols || (rows != 0 && t->ne[1] != rows) || extra != 1 ||
        (rows == 0 && t->ne[1] != 1))
        LKV_FAIL(LKV_ERR_FORMAT,
                 "model: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                 name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                 (long long)t->ne[3], (long long)cols, (long long)(rows ? rows : 1));
    const lkv_qtraits *tr = lkv_qtype_traits((int)t->type);
    if (!tr->name || !tr->supported)
        LKV_FAIL(LKV_ERR_UNSUPPORTED, "model: tensor '%s' has type %s (%d), not supported",
                 name, tr->name ? tr->name : "unknown", (int)t->type);
    size_t row_bytes = lkv_qtype_row_bytes((int)t->type, cols);
    if (row_bytes == 0)
        LKV_FAIL(LKV_ERR_FORMAT, "model: tensor '%s': row of %lld is not whole %s blocks",
                 name, (long long)cols, tr->name);
    if (t->nbytes < row_bytes * (size_t)(rows ? rows : 1))
        LKV_FAIL(LKV_ERR_FORMAT, "model: tensor '%s' holds %zu bytes, needs %zu", name,
                 t->nbytes, row_bytes * (size_t)(rows ? rows : 1));
    *out = t;
    return LKV_OK;
}

static int load_matrix(lkv_model *m, const char *name, int64_t rows, int64_t cols,
                       lkv_weight *w) {
    const lkv_gguf_tensor *t;
    LKV_TRY(find_tensor(m, name, rows, cols, &t));
    w->type = (int)t->type;
    w->data = t->data;
    w->rows = rows;
    w->cols = cols;
    m->n_params += (size_t)rows * (size_t)cols;
    m->weight_bytes += t->nbytes;
    if ((size_t)cols > m->scratch_cols_max)
        m->scratch_cols_max = (size_t)cols;
    return LKV_OK;
}

/* Copies a vector of n elements out of the mapping as f32 (*out owned). */
static int load_vector(lkv_model *m, const char *name, int64_t n, float **out) {
    const lkv_gguf_tensor *t;
    LKV_TRY(find_tensor(m, name, 0, n, &t));
    float *v = lkv_malloc((size_t)n * sizeof(float));
    if (!v)
        LKV_FAIL(LKV_ERR_NOMEM, "model: out of memory for '%s'", name);
    int rc = lkv_dequantize((int)t->type, t->data, v, n);
    if (rc < 0) {
        lkv_free(v);
        return rc;
    }
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            lkv_free(v);
            LKV_FAIL(LKV_ERR_FORMAT, "model: tensor '%s' holds a non-finite value", name);
        }
    m->n_params += (size_t)n;
    m->weight_bytes += t->nbytes;
    *out = v;
    return LKV_OK;
}

/* Biases and other extras some Llama-family files carry change the math; refuse
 * them rather than ignore them. */
static int reject_unknown_tensors(lkv_model *m) {
    static const char *known[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                  "ffn_norm", "ffn_gate", "ffn_up", "ffn_down",
                                  /* Gemma 3 */
                                  "attn_q_norm", "attn_k_norm", "post_attention_norm",
                                  "post_ffw_norm"};
    int n_known = m->arch_id == LKV_ARCH_GEMMA3 ? 13 : 9;
    uint64_t n = lkv_gguf_n_tensors(m->gguf);
    for (uint64_t i = 0; i < n; i++) {
        const lkv_gguf_tensor *t = lkv_gguf_tensor_at(m->gguf, i);
        char name[96];
        copy_gguf_str(name, sizeof name, t->name);
        if (!strcmp(name, "token_embd.weight") || !strcmp(name, "output.weight") ||
            !strcmp(name, "output_norm.weight") || !strcmp(name, "rope_freqs.weight"))
            continue;
        int ok = 0;
        if (!strncmp(name, "blk.", 4)) {
            const char *p = strchr(name + 4, '.');
            if (p) {
                p++;
                for (int k = 0; k < n_known; k++) {
                    size_t len = strlen(known[k]);
                    if (!strncmp(p, known[k], len) && !strcmp(p + len, ".weight"))
                        ok = 1;
                }
                /* rotary embedding caches some converters store are redundant */
                if (!strcmp(p, "attn_rot_embd"))
                    ok = 1;
            }
        }
        if (!ok)
            LKV_FAIL(LKV_ERR_UNSUPPORTED,
                     "model: tensor '%s' is not part of the %s graph this build runs", name,
                     m->arch_id == LKV_ARCH_GEMMA3 ? "Gemma 3" : "Llama");
    }
    return LKV_OK;
}

static int load_tensors(lkv_model *m) {
    const lkv_hparams *hp = &m->hp;
    int64_t D = hp->n_embd, F = hp->n_ff, V = hp->n_vocab;
    int64_t Hd = (int64_t)hp->n_heads * hp->head_dim;
    int64_t Hkd = (int64_t)hp->n_kv_heads * hp->head_dim;
    LKV_TRY(reject_unknown_tensors(m));
    if (lkv_gguf_find_tensor(m->gguf, "rope_freqs.weight"))
        LKV_FAIL(LKV_ERR_UNSUPPORTED, "model: per-frequency RoPE factors (rope_freqs.weight, "
                                      "Llama 3.1 style) are not supported yet");
    LKV_TRY(load_matrix(m, "token_embd.weight", V, D, &m->tok_embd));
    if (lkv_gguf_find_tensor(m->gguf, "output.weight")) {
        LKV_TRY(load_matrix(m, "output.weight", V, D, &m->output));
        m->tied_output = 0;
    } else {
        m->output = m->tok_embd;
        m->tied_output = 1;
    }
    LKV_TRY(load_vector(m, "output_norm.weight", D, &m->output_norm));
    m->layers = lkv_calloc((size_t)hp->n_layers, sizeof *m->layers);
    if (!m->layers)
        LKV_FAIL(LKV_ERR_NOMEM, "model: out of memory for %d layers", hp->n_layers);
    for (int l = 0; l < hp->n_layers; l++) {
        lkv_llama_layer *L = &m->layers[l];
        char name[64];
#define NAME(s) (snprintf(name, sizeof name, "blk.%d." s ".weight", l), name)
        LKV_TRY(load_vector(m, NAME("attn_norm"), D, &L->attn_norm));
        LKV_TRY(load_vector(m, NAME("ffn_norm"), D, &L->ffn_norm));
        LKV_TRY(load_matrix(m, NAME("attn_q"), Hd, D, &L->wq));
        LKV_TRY(load_matrix(m, NAME("attn_k"), Hkd, D, &L->wk));
        LKV_TRY(load_matrix(m, NAME("attn_v"), Hkd, D, &L->wv));
        LKV_TRY(load_matrix(m, NAME("attn_output"), D, Hd, &L->wo));
        LKV_TRY(load_matrix(m, NAME("ffn_gate"), F, D, &L->w_gate));
        LKV_TRY(load_matrix(m, NAME("ffn_up"), F, D, &L->w_up));
        LKV_TRY(load_matrix(m, NAME("ffn_down"), D, F, &L->w_down));
        if (m->arch_id == LKV_ARCH_GEMMA3) {
            LKV_TRY(load_vector(m, NAME("attn_q_norm"), hp->head_dim, &L->attn_q_norm));
            LKV_TRY(load_vector(m, NAME("attn_k_norm"), hp->head_dim, &L->attn_k_norm));
            LKV_TRY(load_vector(m, NAME("post_attention_norm"), D, &L->post_attn_norm));
            LKV_TRY(load_vector(m, NAME("post_ffw_norm"), D, &L->post_ffw_norm));
        }
#undef NAME
    }
    return m->arch_id == LKV_ARCH_GEMMA3 ? set_gemma3_windows(m) : LKV_OK;
}

/* Vocabulary size: llama.vocab_size, else the token list, else the embedding. */
static int load_vocab_size(lkv_model *m) {
    int v = 0;
    char key[128];
    snprintf(key, sizeof key, "%s.vocab_size", m->arch);
    int64_t x;
    if (lkv_gguf_get_i64(m->gguf, key, &x) == LKV_OK) {
        if (x < 1 || x > MAX_VOCAB)
            LKV_FAIL(LKV_ERR_FORMAT, "model: %s = %lld is out of range", key, (long long)x);
        v = (int)x;
    } else {
        const lkv_gguf_kv *kv = lkv_gguf_find(m->gguf, "tokenizer.ggml.tokens");
        if (kv && kv->type == LKV_GGUF_ARRAY && kv->arr_n >= 1 && kv->arr_n <= MAX_VOCAB) {
            v = (int)kv->arr_n;
        } else {
            const lkv_gguf_tensor *t = lkv_gguf_find_tensor(m->gguf, "token_embd.weight");
            if (!t)
                LKV_FAIL(LKV_ERR_FORMAT, "model: tensor 'token_embd.weight' is missing");
            if (t->ne[1] < 1 || t->ne[1] > MAX_VOCAB)
                LKV_FAIL(LKV_ERR_FORMAT, "model: token_embd.weight has %lld rows",
                         (long long)t->ne[1]);
            v = (int)t->ne[1];
        }
    }
    m->hp.n_vocab = v;
    return LKV_OK;
}

/* FNV-1a over the metadata and the tensor table: two files with the same
 * weights layout and metadata get the same id, anything else differs. */
static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t compute_model_id(const lkv_model *m) {
    uint64_t h = 0xcbf29ce484222325ull;
    uint64_t nkv = lkv_gguf_n_kv(m->gguf);
    for (uint64_t i = 0; i < nkv; i++) {
        const lkv_gguf_kv *kv = lkv_gguf_kv_at(m->gguf, i);
        h = fnv1a(h, kv->key.ptr, (size_t)kv->key.len);
        if (kv->type == LKV_GGUF_STRING)
            h = fnv1a(h, kv->str.ptr, (size_t)kv->str.len);
        else if (kv->type != LKV_GGUF_ARRAY)
            h = fnv1a(h, &kv->val, sizeof kv->val);
        else
            h = fnv1a(h, &kv->arr_n, sizeof kv->arr_n);
    }
    uint64_t nt = lkv_gguf_n_tensors(m->gguf);
    for (uint64_t i = 0; i < nt; i++) {
        const lkv_gguf_tensor *t = lkv_gguf_tensor_at(m->gguf, i);
        h = fnv1a(h, t->name.ptr, (size_t)t->name.len);
        h = fnv1a(h, t->ne, sizeof t->ne);
        int type = (int)t->type;
        h = fnv1a(h, &type, sizeof type);
        /* a sample of the data: the first bytes of each tensor */
        h = fnv1a(h, t->data, t->nbytes < 64 ? t->nbytes : 64);
    }
    return h;
}

/* ------------------------------------------------------- load / free */

void lkv_model_free(lkv_model *m) {
    if (!m)
        return;
    if (m->layers) {
        for (int l = 0; l < m->hp.n_layers; l++) {
            lkv_free(m->layers[l].attn_norm);
            lkv_free(m->layers[l].ffn_norm);
            lkv_free(m->layers[l].attn_q_norm);
            lkv_free(m->layers[l].attn_k_norm);
            lkv_free(m->layers[l].post_attn_norm);
            lkv_free(m->layers[l].post_ffw_norm);
        }
        lkv_free(m->layers);
    }
    lkv_free(m->output_norm);
    lkv_tokenizer_free(m->tok);
    lkv_gguf_close(m->gguf);
    lkv_free(m->path);
    lkv_free(m);
}

static int model_load(lkv_model *m, const lkv_model_params *p) {
    lkv_gguf_str arch;
    int rc = lkv_gguf_get_str(m->gguf, "general.architecture", &arch);
    if (rc < 0)
        LKV_FAIL(LKV_ERR_FORMAT, "model: metadata key 'general.architecture' is missing");
    if (lkv_gguf_str_eq(arch, "llama"))
        m->arch_id = LKV_ARCH_LLAMA;
    else if (lkv_gguf_str_eq(arch, "gemma3"))
        m->arch_id = LKV_ARCH_GEMMA3;
    else
        LKV_FAIL(LKV_ERR_UNSUPPORTED,
                 "model: architecture '%.*s' is not supported (this build runs: llama, gemma3)",
                 (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
    copy_gguf_str(m->arch, sizeof m->arch, arch);
    lkv_gguf_str name;
    if (lkv_gguf_get_str(m->gguf, "general.name", &name) == LKV_OK)
        copy_gguf_str(m->name, sizeof m->name, name);
    LKV_TRY(load_hparams(m));
    LKV_TRY(load_vocab_size(m));
    LKV_TRY(load_tensors(m));
    m->model_id = compute_model_id(m);
    if (p->load_tokenizer) {
        rc = lkv_tokenizer_from_gguf(m->gguf, &m->tok);
        if (rc < 0)
            return rc;
        if (lkv_tokenizer_n_vocab(m->tok) > m->hp.n_vocab)
            LKV_FAIL(LKV_ERR_FORMAT, "model: the tokenizer has %d tokens, the model %d",
                     lkv_tokenizer_n_vocab(m->tok), m->hp.n_vocab);
    }
    return LKV_OK;
}

int lkv_model_load(const char *path, const lkv_model_params *p, lkv_model **out) {
    if (!path || !out)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_model_load: NULL argument");
    lkv_model_params def = lkv_model_default_params();
    if (!p)
        p = &def;
    lkv_model *m = lkv_calloc(1, sizeof *m);
    if (!m)
        LKV_FAIL(LKV_ERR_NOMEM, "lkv_model_load: out of memory");
    int rc = lkv_gguf_open(path, &m->gguf);
    if (rc < 0) {
        lkv_free(m);
        return rc;
    }
    m->path = lkv_strdup(path);
    rc = m->path ? model_load(m, p) : lkv_set_error(LKV_ERR_NOMEM, "out of memory");
    if (rc < 0) {
        /* keep the message of the failure, prefixed with the file */
        char msg[400];
        snprintf(msg, sizeof msg, "%s", lkv_last_error());
        lkv_model_free(m);
        return lkv_set_error(rc, "%s: %s", path, msg);
    }
    *out = m;
    return LKV_OK;
}

int lkv_model_get_info(const lkv_model *m, lkv_model_info *info) {
    if (!m || !info)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_model_get_info: NULL argument");
    memset(info, 0, sizeof *info);
    info->arch = m->arch;
    info->name = m->name;
    info->n_layers = m->hp.n_layers;
    info->n_embd = m->hp.n_embd;
    info->n_ff = m->hp.n_ff;
    info->n_heads = m->hp.n_heads;
    info->n_kv_heads = m->hp.n_kv_heads;
    info->head_dim = m->hp.head_dim;
    info->n_vocab = m->hp.n_vocab;
    info->n_ctx_train = m->hp.n_ctx_train;
    info->rope_theta = m->hp.rope_theta;
    info->rms_eps = m->hp.rms_eps;
    info->tied_output = m->tied_output;
    info->n_params = m->n_params;
    info->weight_bytes = m->weight_bytes;
    info->model_id = m->model_id;
    return LKV_OK;
}

int lkv_model_n_vocab(const lkv_model *m) { return m ? m->hp.n_vocab : 0; }
