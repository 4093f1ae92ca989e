/* attn_quant.c -- AVX2+FMA+F16C attention over int8 (Q8) K/V runs:
 * ref/attn_quant.c on 8 lanes, codes widened in registers inside the key loop
 * (never a dequantized copy). (KIVI runs: attn_kivi.c.)
 *
 * Blocks of 8 keys, groups of up to 4 rows: one widening of each 8-channel
 * code chunk feeds the rows' FMAs; each (row, key) dot is reduced once.
 * Values: each value chunk dequantized in registers (vscale * code, shared by
 * the rows), then acc += p_t * v.
 */
#include "kernels/x86/avx2/attn_avx2.h"

#define GROUP 4
#define ROW_TILE 16
#define MAXD LKV_ATTN_MAX_HEAD_DIM

typedef struct qfac { /* the row tile's queries, aligned for the key loop */
    float qs[ROW_TILE][MAXD] __attribute__((aligned(32)));
} qfac;

/* Channels [8*ch, 8*ch + 8) of an int8 code row as f32 lanes. */
AVX2_INLINE __m256 widen8(const uint8_t *row, int ch) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(row + 8 * ch))));
}

static void load_queries(const lkv_attn_block *b, int rt0, int rt1, qfac *f) {
    for (int r = rt0; r < rt1; r++) {
        const float *q = avx2_query_row(b, r);
        for (int c = 0; c < b->d; c += 8)
            _mm256_store_ps(f->qs[r - rt0] + c, _mm256_loadu_ps(q + c));
    }
}

AVX2_INLINE void block_logits(const lkv_attn_block *b, const qfac *f, int r0, int rr0, int R,
                              const lkv_kv_run *run, int t0, int nk, size_t rb, __m256i pk,
                              int need_mask, __m256 *s) {
    float tmp[GROUP][8] __attribute__((aligned(32))) = {{0}};
    const uint8_t *k = (const uint8_t *)run->k + (size_t)t0 * rb;
    for (int j = 0; j < nk; j++) {
        __m256 a[GROUP];
#pragma GCC unroll 4
        for (int r = 0; r < GROUP; r++)
            a[r] = _mm256_setzero_ps();
        for (int ch = 0; ch < b->d / 8; ch++) {
            __m256 kv = widen8(k + (size_t)j * rb, ch);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                a[r] = _mm256_fmadd_ps(_mm256_load_ps(f->qs[rr0 + r] + 8 * ch), kv, a[r]);
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            tmp[r][j] = avx2_hsum(a[r]);
    }
    float ks[8] __attribute__((aligned(32))) = {0};
    for (int j = 0; j < nk; j++)
        ks[j] = _cvtsh_ss(((const uint16_t *)run->k_aux)[t0 + j]);
    const __m256 ksv = _mm256_load_ps(ks);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        __m256 dot = _mm256_load_ps(tmp[r]);
        dot = _mm256_mul_ps(dot, ksv);
        __m256 vis = need_mask ? avx2_visible8(b, b->q_pos[(r0 + r) / b->G], pk, nk)
                               : _mm256_castsi256_ps(_mm256_cmpgt_epi32(
                                     _mm256_set1_epi32(nk), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
        s[r] = avx2_finish_logits(b, dot, vis);
    }
}

/* acc_r = alpha_r acc_r + sum_j p[r][j] * v_j for nv (1..4) 8-column chunks
 * from chunk ch0, each value row dequantized in registers: v = vs[j] * code. */
AVX2_INLINE void pv_cols(float *const *acc, int R, const float (*p)[8], const float *vs,
                         const float *alpha, int rescale, const uint8_t *v, size_t rb, int nk,
                         int ch0, int nv) {
    __m256 a[GROUP][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        __m256 al = _mm256_set1_ps(alpha[r]);
#pragma GCC unroll 4
        for (int i = 0; i < nv; i++) {
            a[r][i] = _mm256_loadu_ps(acc[r] + 8 * (ch0 + i));
            if (rescale)
                a[r][i] = _mm256_mul_ps(a[r][i], al);
        }
    }
    for (int j = 0; j < nk; j++) {
        __m256 vv[4];
#pragma GCC unroll 4
        for (int i = 0; i < nv; i++)
            vv[i] = _mm256_mul_ps(widen8(v + (size_t)j * rb, ch0 + i), _mm256_set1_ps(vs[j]));
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m256 pb = _mm256_set1_ps(p[r][j]);
#pragma GCC unroll 4
            for (int i = 0; i < nv; i++)
                a[r][i] = _mm256_fmadd_ps(pb, vv[i], a[r][i]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int i = 0; i < nv; i++)
            _mm256_storeu_ps(acc[r] + 8 * (ch0 + i), a[r][i]);
}

AVX2_INLINE void block_rows(const lkv_attn_block *b, const qfac *f, int r0, int rr0, int R,
                            const lkv_kv_run *run, int t0, int nk, size_t rb, __m256i pk,
                            int need_mask) {
    __m256 s[GROUP];
    block_logits(b, f, r0, rr0, R, run, t0, nk, rb, pk, need_mask, s);
    float p[GROUP][8] __attribute__((aligned(32)));
    float alpha[GROUP];
    float *acc[GROUP];
    const int fold = avx2_softmax_fold(b, r0, R, s, p, alpha, acc);
    if (!fold)
        return;
    const int rescale = fold >> 1;
    float vs[8] __attribute__((aligned(32))) = {0}; /* the block's value row scales */
    for (int j = 0; j < nk; j++)
        vs[j] = _cvtsh_ss(((const uint16_t *)run->v_aux)[t0 + j]);
    const uint8_t *v = (const uint8_t *)run->v + (size_t)t0 * rb;
    const float (*pp)[8] = (const float (*)[8])p;
    const int nch = b->d / 8;
    int ch = 0;
    for (; ch + 4 <= nch; ch += 4)
        pv_cols(acc, R, pp, vs, alpha, rescale, v, rb, nk, ch, 4);
    switch (nch - ch) {
    case 3: pv_cols(acc, R, pp, vs, alpha, rescale, v, rb, nk, ch, 3); break;
    case 2: pv_cols(acc, R, pp, vs, alpha, rescale, v, rb, nk, ch, 2); break;
    case 1: pv_cols(acc, R, pp, vs, alpha, rescale, v, rb, nk, ch, 1); break;
    default: break;
    }
}

AVX2_INLINE void attn_q8(const lkv_attn_block *b, const float *lse, const lkv_kv_run *runs,
                         int n_runs) {
    static _Thread_local qfac f;
    const size_t rb = (size_t)b->d;
    for (int rt0 = 0; rt0 < b->n_rows; rt0 += ROW_TILE) {
        int rt1 = b->n_rows - rt0 < ROW_TILE ? b->n_rows : rt0 + ROW_TILE;
        const int tok0 = rt0 / b->G, tok1 = (rt1 - 1) / b->G + 1;
        load_queries(b, rt0, rt1, &f);
        for (int ri = 0; ri < n_runs; ri++) {
            const lkv_kv_run *run = &runs[ri];
            if (avx2_run_unused(b, run, lse, tok0, tok1))
                continue;
            for (int t0 = 0; t0 < run->n; t0 += 8) {
                int nk = run->n - t0 < 8 ? run->n - t0 : 8;
                int need_mask;
                __m256i pk;
                if (!avx2_block_mask(b, run, t0, nk, tok0, tok1, &need_mask, &pk))
                    continue;
                float mass[8] __attribute__((aligned(32))) = {0};
                for (int g = rt0; g < rt1; g += GROUP) {
                    int R = rt1 - g < GROUP ? rt1 - g : GROUP;
                    if (lse) {
                        __m256 s[GROUP];
                        block_logits(b, &f, g, g - rt0, R, run, t0, nk, rb, pk, need_mask, s);
                        avx2_add_mass(lse + g, R, s, mass);
                    } else {
                        switch (R) {
                        case 1: block_rows(b, &f, g, g - rt0, 1, run, t0, nk, rb, pk, need_mask); break;
                        case 2: block_rows(b, &f, g, g - rt0, 2, run, t0, nk, rb, pk, need_mask); break;
                        case 3: block_rows(b, &f, g, g - rt0, 3, run, t0, nk, rb, pk, need_mask); break;
                        default: block_rows(b, &f, g, g - rt0, 4, run, t0, nk, rb, pk, need_mask); break;
                        }
                    }
                }
                if (lse)
                    for (int j = 0; j < nk; j++)
                        run->obs[t0 + j] += mass[j];
            }
        }
    }
}

void lkv_attn_q8_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    attn_q8(b, NULL, runs, n_runs);
}

void lkv_attn_observe_q8_avx2(const lkv_attn_block *b, const float *lse, const lkv_kv_run *runs,
                              int n_runs) {
    attn_q8(b, lse, runs, n_runs);
}

void lkv_kernels_init_attn_quant_avx2(lkv_kernel_table *t) {
    t->attn[LKV_DTYPE_Q8] = lkv_attn_q8_avx2;
    t->attn_observe[LKV_DTYPE_Q8] = lkv_attn_observe_q8_avx2;
    t->attn_isa[LKV_DTYPE_Q8] = t->attn_observe_isa[LKV_DTYPE_Q8] = LKV_ISA_AVX2;
}
