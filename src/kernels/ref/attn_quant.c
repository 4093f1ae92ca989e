/* attn_quant.c -- the reference attention kernels over quantized K/V runs
 * (Q8, KIVI4, KIVI2; layouts in include/longkv.h and kernels/kv_quant.h): the
 * specification the SIMD versions are tested against.
 *
 * Same contract and online softmax as ref/attn.c; only the dot products and
 * the value accumulation read codes instead of rows, dequantizing on the fly
 * (no dequantized copy of K or V exists at any time):
 *
 *   Q8     s_t = scale * ks_t * (q . code_t)            ks_t: key row scale
 *          acc += (p_t * vs_t) * code_t                 vs_t: value row scale
 *   KIVI   s_t = scale * (q . min + (q o ks) . code_t)  ks, min: the page's
 *                                                       per-channel key scale/min
 *          acc_c += (p_t * vs_{t,g}) * code_{t,c} + p_t * vmin_{t,g}
 *                                                       g = c / 32
 * For KIVI, q o ks and q . min are computed once per (row, tile).
 */
#include <math.h>
#include <string.h>

#include "common/fp16.h"
#include "kernels/kernels.h"
#include "kernels/kv_quant.h"

#define KEY_TILE 32

static inline int32_t key_pos(const lkv_kv_run *run, int t) {
    return run->pos ? run->pos[t] : run->pos0 + t;
}

static int span_masked(const lkv_attn_block *b, int32_t pk_first, int32_t pk_last) {
    int n_tok = b->n_rows / b->G;
    int32_t q_first = b->q_pos[0], q_last = b->q_pos[n_tok - 1];
    if (b->causal && pk_first > q_last)
        return 1;
    if (b->window > 0 && pk_first >= b->n_sink && (int64_t)q_first - pk_last >= b->window)
        return 1;
    return 0;
}

static inline const float *query_row(const lkv_attn_block *b, int r) {
    return b->q + (size_t)(r / b->G) * b->q_stride + (size_t)(r % b->G) * (size_t)b->d;
}

/* The codes of a tile, unpacked to small integers (not dequantized). */
typedef struct tile_codes {
    int16_t k[KEY_TILE][LKV_ATTN_MAX_HEAD_DIM]; /* [nt][d] key codes */
    int16_t v[KEY_TILE][LKV_ATTN_MAX_HEAD_DIM]; /* [nt][d] value codes */
    float ks[KEY_TILE];                         /* [nt] Q8: key row scales */
    float vs[KEY_TILE][LKV_ATTN_MAX_HEAD_DIM / LKV_KIVI_VGROUP]; /* [nt][groups] value scales */
    float vm[KEY_TILE][LKV_ATTN_MAX_HEAD_DIM / LKV_KIVI_VGROUP]; /* [nt][groups] value mins (KIVI) */
    int32_t pk[KEY_TILE];                       /* [nt] key positions */
} tile_codes;

static void unpack_tile(const lkv_kv_run *run, lkv_dtype dt, int d, int t0, int nt, int values,
                        tile_codes *tc) {
    const size_t rb = lkv_kvq_row_bytes(dt, d);
    const int bits = lkv_kvq_bits(dt), ng = lkv_kvq_vgroups(d);
    for (int j = 0; j < nt; j++) {
        size_t t = (size_t)(t0 + j);
        tc->pk[j] = key_pos(run, t0 + j);
        const uint8_t *kr = (const uint8_t *)run->k + t * rb, *vr = (const uint8_t *)run->v + t * rb;
        for (int c = 0; c < d; c++) {
            tc->k[j][c] = (int16_t)(bits ? lkv_kvq_kcode(run->k, bits, d, (int)t, c) : (int8_t)kr[c]);
            if (values)
                tc->v[j][c] = (int16_t)(bits ? lkv_kvq_vcode(run->v, bits, d, (int)t, c) : (int8_t)vr[c]);
        }
        if (!bits) {
            tc->ks[j] = lkv_half_to_float(((const uint16_t *)run->k_aux)[t]);
            tc->vs[j][0] = lkv_half_to_float(((const uint16_t *)run->v_aux)[t]);
        } else {
            const uint16_t *va = run->v_aux;
            for (int g = 0; g < ng; g++) {
                tc->vs[j][g] = lkv_half_to_float(va[lkv_kvq_vaux_index(d, (int)t, g, 0)]);
                tc->vm[j][g] = lkv_half_to_float(va[lkv_kvq_vaux_index(d, (int)t, g, 1)]);
            }
        }
    }
}

/* Per-row key factors: Q8: qs = q, qm = 0; KIVI: qs = q o kscale, qm = q . kmin. */
static float row_factors(const lkv_kv_run *run, lkv_dtype dt, int d, const float *q, float *qs) {
    if (!lkv_kvq_bits(dt)) {
        memcpy(qs, q, (size_t)d * sizeof(float));
        return 0.0f;
    }
    const uint16_t *ka = run->k_aux; /* [2][d]: scale, min */
    float qm = 0.0f;
    for (int c = 0; c < d; c++) {
        qs[c] = q[c] * lkv_half_to_float(ka[c]);
        qm += q[c] * lkv_half_to_float(ka[d + c]);
    }
    return qm;
}

/* Scaled (and capped) logit of key j of the tile. */
static inline float logit(const lkv_attn_block *b, lkv_dtype dt, const float *qs, float qm,
                          const tile_codes *tc, int j) {
    float dot = 0.0f;
    for (int c = 0; c < b->d; c++)
        dot += qs[c] * (float)tc->k[j][c];
    float s = b->scale * (dt == LKV_DTYPE_Q8 ? tc->ks[j] * dot : qm + dot);
    if (b->softcap > 0.0f)
        s = b->softcap * tanhf(s / b->softcap);
    return s;
}

static void attn_quant_ref(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs,
                           lkv_dtype dt) {
    const int d = b->d;
    static _Thread_local tile_codes tc;   /* ~33 KiB: off the stack */
    float qs[LKV_ATTN_MAX_HEAD_DIM];       /* [d] q o key scale (KIVI) or q (Q8) */
    float s[KEY_TILE];                     /* [nt] logits of one row */
    for (int ri = 0; ri < n_runs; ri++) {
        const lkv_kv_run *run = &runs[ri];
        if (run->n <= 0 || span_masked(b, key_pos(run, 0), key_pos(run, run->n - 1)))
            continue;
        for (int t0 = 0; t0 < run->n; t0 += KEY_TILE) {
            int nt = run->n - t0 < KEY_TILE ? run->n - t0 : KEY_TILE;
            if (span_masked(b, key_pos(run, t0), key_pos(run, t0 + nt - 1)))
                continue;
            unpack_tile(run, dt, d, t0, nt, 1, &tc);
            for (int r = 0; r < b->n_rows; r++) {
                const float *q = query_row(b, r);
                int32_t pq = b->q_pos[r / b->G];
                float qm = row_factors(run, dt, d, q, qs);
                float tile_max = -INFINITY;
                for (int j = 0; j < nt; j++) {
                    s[j] = lkv_attn_visible(b, pq, tc.pk[j]) ? logit(b, dt, qs, qm, &tc, j)
                                                             : -INFINITY;
                    if (s[j] > tile_max)
                        tile_max = s[j];
                }
                if (tile_max == -INFINITY)
                    continue;
                float *acc = b->acc + (size_t)r * d; /* [d] */
                float m_new = b->m[r] > tile_max ? b->m[r] : tile_max;
                float alpha = expf(b->m[r] - m_new);
                b->l[r] *= alpha;
                for (int c = 0; c < d; c++)
                    acc[c] *= alpha;
                for (int j = 0; j < nt; j++) {
                    if (s[j] == -INFINITY)
                        continue;
                    float p = expf(s[j] - m_new);
                    b->l[r] += p;
                    if (dt == LKV_DTYPE_Q8) {
                        float ps = p * tc.vs[j][0];
                        for (int c = 0; c < d; c++)
                            acc[c] += ps * (float)tc.v[j][c];
                    } else {
                        for (int c = 0; c < d; c++) {
                            int g = c / LKV_KIVI_VGROUP;
                            acc[c] += (p * tc.vs[j][g]) * (float)tc.v[j][c] + p * tc.vm[j][g];
                        }
                    }
                }
                b->m[r] = m_new;
            }
        }
    }
}

static void attn_observe_quant_ref(const lkv_attn_block *b, const float *lse,
                                   const lkv_kv_run *runs, int n_runs, lkv_dtype dt) {
    const int d = b->d;
    static _Thread_local tile_codes tc;
    float qs[LKV_ATTN_MAX_HEAD_DIM];
    float mass[KEY_TILE];
    for (int ri = 0; ri < n_runs; ri++) {
        const lkv_kv_run *run = &runs[ri];
        if (!run->obs || run->n <= 0 || span_masked(b, key_pos(run, 0), key_pos(run, run->n - 1)))
            continue;
        for (int t0 = 0; t0 < run->n; t0 += KEY_TILE) {
            int nt = run->n - t0 < KEY_TILE ? run->n - t0 : KEY_TILE;
            if (span_masked(b, key_pos(run, t0), key_pos(run, t0 + nt - 1)))
                continue;
            unpack_tile(run, dt, d, t0, nt, 0, &tc);
            for (int j = 0; j < nt; j++)
                mass[j] = 0.0f;
            for (int r = 0; r < b->n_rows; r++) {
                if (lse[r] == -INFINITY)
                    continue;
                const float *q = query_row(b, r);
                int32_t pq = b->q_pos[r / b->G];
                float qm = row_factors(run, dt, d, q, qs);
                for (int j = 0; j < nt; j++)
                    if (lkv_attn_visible(b, pq, tc.pk[j]))
                        mass[j] += expf(logit(b, dt, qs, qm, &tc, j) - lse[r]);
            }
            for (int j = 0; j < nt; j++)
                run->obs[t0 + j] += mass[j];
        }
    }
}

void lkv_attn_q8_ref(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    attn_quant_ref(b, runs, n_runs, LKV_DTYPE_Q8);
}
void lkv_attn_kivi4_ref(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    attn_quant_ref(b, runs, n_runs, LKV_DTYPE_KIVI4);
}
void lkv_attn_kivi2_ref(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    attn_quant_ref(b, runs, n_runs, LKV_DTYPE_KIVI2);
}
void lkv_attn_observe_q8_ref(const lkv_attn_block *b, const float *lse, const lkv_kv_run *runs,
                             int n_runs) {
    attn_observe_quant_ref(b, lse, runs, n_runs, LKV_DTYPE_Q8);
}
void lkv_attn_observe_kivi4_ref(const lkv_attn_block *b, const float *lse,
                                const lkv_kv_run *runs, int n_runs) {
    attn_observe_quant_ref(b, lse, runs, n_runs, LKV_DTYPE_KIVI4);
}
void lkv_attn_observe_kivi2_ref(const lkv_attn_block *b, const float *lse,
                                const lkv_kv_run *runs, int n_runs) {
    attn_observe_quant_ref(b, lse, runs, n_runs, LKV_DTYPE_KIVI2);
}
