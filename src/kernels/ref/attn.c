/* attn.c -- the reference attention kernels: the specification every SIMD
 * kernel is tested against.
 *
 * One block = the query rows that share a KV head (row r is query token r / G,
 * group head r % G). For each run of keys, in tiles of KEY_TILE keys:
 *
 *     s[j]   = scale * (q_r . k_j)                      scaled logit
 *     s[j]   = softcap * tanh(s[j] / softcap)           if softcap > 0
 *     s[j]   = -inf                                     if key j is masked for row r
 *     m_new  = max(m_r, max_j s[j])
 *     l_r    = l_r * exp(m_r - m_new) + sum_j exp(s[j] - m_new)
 *     acc_r  = acc_r * exp(m_r - m_new) + sum_j exp(s[j] - m_new) * v_j
 *     m_r    = m_new
 *
 * (online softmax, natural-log domain). The caller finalises o = acc / l and
 * lse = m + log(l). A run or tile whose positions no row can see is skipped
 * whole: positions ascend inside a run, so its first and last positions bound it.
 */
#include <math.h>
#include <string.h>

#include "common/fp16.h"
#include "kernels/kernels.h"

#define KEY_TILE 32

/* dst[d] = row `t` of a run's K or V (src), converted to f32. */
static void load_row(lkv_dtype dtype, const void *src, size_t t, size_t stride, int d,
                     float *dst) {
    size_t at = t * stride;
    switch (dtype) {
    case LKV_DTYPE_F32:
        memcpy(dst, (const float *)src + at, (size_t)d * sizeof(float));
        break;
    case LKV_DTYPE_F16:
        for (int c = 0; c < d; c++)
            dst[c] = lkv_half_to_float(((const uint16_t *)src)[at + c]);
        break;
    case LKV_DTYPE_BF16:
        for (int c = 0; c < d; c++)
            dst[c] = lkv_bf16_to_float(((const uint16_t *)src)[at + c]);
        break;
    default:
        memset(dst, 0, (size_t)d * sizeof(float)); /* unreachable: the driver checks */
        break;
    }
}

static inline int32_t key_pos(const lkv_kv_run *run, int t) {
    return run->pos ? run->pos[t] : run->pos0 + t;
}

/* 1 if no row of the block can see any key with a position in [pk_first, pk_last]. */
static int span_masked(const lkv_attn_block *b, int32_t pk_first, int32_t pk_last) {
    int n_tok = b->n_rows / b->G;
    int32_t q_first = b->q_pos[0], q_last = b->q_pos[n_tok - 1];
    if (b->causal && pk_first > q_last)
        return 1; /* every key is in the future of every query */
    if (b->window > 0 && pk_first >= b->n_sink && (int64_t)q_first - pk_last >= b->window)
        return 1; /* every key is out of every query's window, and none is a sink */
    return 0;
}

/* Scaled (and capped) logit of query row q[d] against key k[d]. */
static inline float logit(const lkv_attn_block *b, const float *q, const float *k) {
    float dot = 0.0f;
    for (int c = 0; c < b->d; c++)
        dot += q[c] * k[c];
    float s = b->scale * dot;
    if (b->softcap > 0.0f)
        s = b->softcap * tanhf(s / b->softcap);
    return s;
}

static inline const float *query_row(const lkv_attn_block *b, int r) {
    return b->q + (size_t)(r / b->G) * b->q_stride + (size_t)(r % b->G) * (size_t)b->d;
}

static void attn_block_ref(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs,
                           lkv_dtype dtype) {
    const int d = b->d;
    const size_t stride = b->kv_stride ? b->kv_stride : (size_t)d;
    float kt[KEY_TILE][LKV_ATTN_MAX_HEAD_DIM]; /* [n_tile][d] keys of the tile, f32 */
    float vt[KEY_TILE][LKV_ATTN_MAX_HEAD_DIM]; /* [n_tile][d] values of the tile, f32 */
    float s[KEY_TILE];                          /* [n_tile] logits of one row */
    int32_t pk[KEY_TILE];                       /* [n_tile] key positions */

    for (int ri = 0; ri < n_runs; ri++) {
        const lkv_kv_run *run = &runs[ri];
        if (run->n <= 0 || span_masked(b, key_pos(run, 0), key_pos(run, run->n - 1)))
            continue;
        for (int t0 = 0; t0 < run->n; t0 += KEY_TILE) {
            int nt = run->n - t0 < KEY_TILE ? run->n - t0 : KEY_TILE;
            if (span_masked(b, key_pos(run, t0), key_pos(run, t0 + nt - 1)))
                continue;
            for (int j = 0; j < nt; j++) {
                load_row(dtype, run->k, (size_t)(t0 + j), stride, d, kt[j]);
                load_row(dtype, run->v, (size_t)(t0 + j), stride, d, vt[j]);
                pk[j] = key_pos(run, t0 + j);
            }
            for (int r = 0; r < b->n_rows; r++) {
                const float *q = query_row(b, r); /* [d] */
                int32_t pq = b->q_pos[r / b->G];
                float tile_max = -INFINITY;
                for (int j = 0; j < nt; j++) {
                    s[j] = lkv_attn_visible(b, pq, pk[j]) ? logit(b, q, kt[j]) : -INFINITY;
                    if (s[j] > tile_max)
                        tile_max = s[j];
                }
                if (tile_max == -INFINITY)
                    continue; /* this row sees no key of the tile */
                float *acc = b->acc + (size_t)r * d; /* [d] */
                float m_new = b->m[r] > tile_max ? b->m[r] : tile_max;
                float alpha = expf(b->m[r] - m_new); /* 0 when m was -inf */
                b->l[r] *= alpha;
                for (int c = 0; c < d; c++)
                    acc[c] *= alpha;
                for (int j = 0; j < nt; j++) {
                    if (s[j] == -INFINITY)
                        continue;
                    float p = expf(s[j] - m_new);
                    b->l[r] += p;
                    for (int c = 0; c < d; c++)
                        acc[c] += p * vt[j][c];
                }
                b->m[r] = m_new;
            }
        }
    }
}

static void attn_observe_ref(const lkv_attn_block *b, const float *lse, const lkv_kv_run *runs,
                             int n_runs, lkv_dtype dtype) {
    const int d = b->d;
    const size_t stride = b->kv_stride ? b->kv_stride : (size_t)d;
    float kt[KEY_TILE][LKV_ATTN_MAX_HEAD_DIM]; /* [n_tile][d] keys of the tile, f32 */
    float mass[KEY_TILE];                       /* [n_tile] probability summed over rows */
    int32_t pk[KEY_TILE];                       /* [n_tile] key positions */

    for (int ri = 0; ri < n_runs; ri++) {
        const lkv_kv_run *run = &runs[ri];
        if (!run->obs || run->n <= 0 ||
            span_masked(b, key_pos(run, 0), key_pos(run, run->n - 1)))
            continue;
        for (int t0 = 0; t0 < run->n; t0 += KEY_TILE) {
            int nt = run->n - t0 < KEY_TILE ? run->n - t0 : KEY_TILE;
            if (span_masked(b, key_pos(run, t0), key_pos(run, t0 + nt - 1)))
                continue;
            for (int j = 0; j < nt; j++) {
                load_row(dtype, run->k, (size_t)(t0 + j), stride, d, kt[j]);
                pk[j] = key_pos(run, t0 + j);
                mass[j] = 0.0f;
            }
            for (int r = 0; r < b->n_rows; r++) {
                if (lse[r] == -INFINITY)
                    continue; /* the row saw no key at all */
                const float *q = query_row(b, r);
                int32_t pq = b->q_pos[r / b->G];
                for (int j = 0; j < nt; j++)
                    if (lkv_attn_visible(b, pq, pk[j]))
                        mass[j] += expf(logit(b, q, kt[j]) - lse[r]);
            }
            for (int j = 0; j < nt; j++)
                run->obs[t0 + j] += mass[j];
        }
    }
}

/* The entry points the table holds (declared in kernels.h). */
void lkv_attn_f32_ref(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    attn_block_ref(b, runs, n_runs, LKV_DTYPE_F32);
}
void lkv_attn_f16_ref(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    attn_block_ref(b, runs, n_runs, LKV_DTYPE_F16);
}
void lkv_attn_bf16_ref(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    attn_block_ref(b, runs, n_runs, LKV_DTYPE_BF16);
}
void lkv_attn_observe_f32_ref(const lkv_attn_block *b, const float *lse, const lkv_kv_run *runs,
                              int n_runs) {
    attn_observe_ref(b, lse, runs, n_runs, LKV_DTYPE_F32);
}
void lkv_attn_observe_f16_ref(const lkv_attn_block *b, const float *lse, const lkv_kv_run *runs,
                              int n_runs) {
    attn_observe_ref(b, lse, runs, n_runs, LKV_DTYPE_F16);
}
void lkv_attn_observe_bf16_ref(const lkv_attn_block *b, const float *lse,
                               const lkv_kv_run *runs, int n_runs) {
    attn_observe_ref(b, lse, runs, n_runs, LKV_DTYPE_BF16);
}
