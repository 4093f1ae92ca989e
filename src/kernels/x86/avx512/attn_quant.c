/* attn_quant.c -- AVX-512 attention over int8 (Q8) K/V runs, the math of
 * ref/attn_quant.c on 16 lanes. Codes are widened in registers inside the key
 * loop; no dequantized row is ever stored. (KIVI runs: attn_kivi.c.)
 *
 * Per row tile (up to ROW_TILE query rows) and per run: blocks of 16 keys,
 * groups of up to 4 rows sharing each widened code vector:
 *   dots:    16 accumulators (4 keys x 4 rows) along d, reduced 4 keys at a
 *            time by a shuffle tree (as x86/avx512/attn_rows.c);
 *   logits:  scale * kscale_t * dot;
 *   values:  each value row dequantized in registers (v = vscale * code, one
 *            multiply per chunk, shared by the rows), then acc += p_t * v, 64
 *            columns at a time.
 * Head dims that are not a multiple of 16 go to the AVX2 kernels.
 */
#include "kernels/x86/avx512/attn_avx512.h"

#define GROUP 4      /* rows sharing one pass over a key block */
#define ROW_TILE 16  /* rows whose qs are kept on the stack */
#define MAXD LKV_ATTN_MAX_HEAD_DIM

void lkv_attn_q8_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_q8_avx2(const lkv_attn_block *b, const float *lse, const lkv_kv_run *runs,
                              int n_runs);

/* The row tile's queries, aligned for the key loop. */
typedef struct qfac {
    float qs[ROW_TILE][MAXD] __attribute__((aligned(64))); /* [rows][d] */
} qfac;

/* Channels [16*ch, 16*ch + 16) of an int8 code row, as f32 lanes. */
AVX512_INLINE __m512 widen16(const uint8_t *row, int ch) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(row + 16 * ch))));
}

static void load_queries(const lkv_attn_block *b, int rt0, int rt1, qfac *f) {
    for (int r = rt0; r < rt1; r++) {
        const float *q = avx512_query_row(b, r);
        for (int c = 0; c < b->d; c += 16)
            _mm512_store_ps(f->qs[r - rt0] + c, _mm512_loadu_ps(q + c));
    }
}

/* t[r] = 4 partial sums of each of 4 keys (as attn_rows.c quad_dots). */
AVX512_INLINE void quad_dots(const float *const *qs, int R, const uint8_t *k, size_t rb, int d,
                             __m512 *t) {
    __m512 a[GROUP][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        a[r][0] = a[r][1] = a[r][2] = a[r][3] = _mm512_setzero_ps();
    for (int ch = 0; ch < d / 16; ch++) {
        const __m512 k0 = widen16(k, ch), k1 = widen16(k + rb, ch);
        const __m512 k2 = widen16(k + 2 * rb, ch), k3 = widen16(k + 3 * rb, ch);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 qv = _mm512_load_ps(qs[r] + 16 * ch);
            a[r][0] = _mm512_fmadd_ps(qv, k0, a[r][0]);
            a[r][1] = _mm512_fmadd_ps(qv, k1, a[r][1]);
            a[r][2] = _mm512_fmadd_ps(qv, k2, a[r][2]);
            a[r][3] = _mm512_fmadd_ps(qv, k3, a[r][3]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        t[r] = avx512_reduce_quad(a[r][0], a[r][1], a[r][2], a[r][3]);
}

/* out[r] lane j = qs_r . code row j, for nk (<= 16) keys; lanes >= nk are 0. */
AVX512_INLINE void block_dots(const float *const *qs, int R, const uint8_t *k, size_t rb, int d,
                              int nk, __m512 *out) {
    if (nk == 16) {
        __m512 t0[GROUP], t1[GROUP], t2[GROUP], t3[GROUP];
        quad_dots(qs, R, k, rb, d, t0);
        quad_dots(qs, R, k + 4 * rb, rb, d, t1);
        quad_dots(qs, R, k + 8 * rb, rb, d, t2);
        quad_dots(qs, R, k + 12 * rb, rb, d, t3);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            out[r] = avx512_keys16(t0[r], t1[r], t2[r], t3[r]);
        return;
    }
    float tmp[GROUP][16] __attribute__((aligned(64))) = {{0}};
    for (int j = 0; j < nk; j++) {
        __m512 a[GROUP];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            a[r] = _mm512_setzero_ps();
        for (int ch = 0; ch < d / 16; ch++) {
            __m512 kv = widen16(k + (size_t)j * rb, ch);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                a[r] = _mm512_fmadd_ps(_mm512_load_ps(qs[r] + 16 * ch), kv, a[r]);
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            tmp[r][j] = _mm512_reduce_add_ps(a[r]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        out[r] = _mm512_load_ps(tmp[r]);
}

/* Logits of rows r0 .. r0+R-1 (tile-relative rr0) against keys t0 .. t0+nk-1. */
AVX512_INLINE void block_logits(const lkv_attn_block *b, const qfac *f, int r0, int rr0, int R,
                                const lkv_kv_run *run, int t0, int nk, size_t rb, __m512i pk,
                                int need_mask, __m512 *s) {
    const float *qs[GROUP];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        qs[r] = f->qs[rr0 + r];
    block_dots(qs, R, (const uint8_t *)run->k + (size_t)t0 * rb, rb, b->d, nk, s);
    const __m512 ks = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(avx512_first(nk),
                                                               (const uint16_t *)run->k_aux + t0));
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        __m512 dot = _mm512_mul_ps(s[r], ks);
        __mmask16 vis = need_mask ? avx512_visible16(b, b->q_pos[(r0 + r) / b->G], pk, nk)
                                  : avx512_first(nk);
        s[r] = avx512_finish_logits(b, dot, vis);
    }
}

/* acc_r = alpha_r acc_r + sum_j p[r][j] * v_j for nv (1..4) 16-column chunks
 * from chunk ch0, each value row dequantized in registers: v = vs[j] * code. */
AVX512_INLINE void pv_cols(float *const *acc, int R, const float (*p)[16], const float *vs,
                           const float *alpha, int rescale, const uint8_t *v, size_t rb, int nk,
                           int ch0, int nv) {
    __m512 a[GROUP][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        __m512 al = _mm512_set1_ps(alpha[r]);
#pragma GCC unroll 4
        for (int i = 0; i < nv; i++) {
            a[r][i] = _mm512_loadu_ps(acc[r] + 16 * (ch0 + i));
            if (rescale)
                a[r][i] = _mm512_mul_ps(a[r][i], al);
        }
    }
    for (int j = 0; j < nk; j++) {
        __m512 vv[4];
#pragma GCC unroll 4
        for (int i = 0; i < nv; i++)
            vv[i] = _mm512_mul_ps(widen16(v + (size_t)j * rb, ch0 + i), _mm512_set1_ps(vs[j]));
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 pb = _mm512_set1_ps(p[r][j]);
#pragma GCC unroll 4
            for (int i = 0; i < nv; i++)
                a[r][i] = _mm512_fmadd_ps(pb, vv[i], a[r][i]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int i = 0; i < nv; i++)
            _mm512_storeu_ps(acc[r] + 16 * (ch0 + i), a[r][i]);
}

AVX512_INLINE void block_rows(const lkv_attn_block *b, const qfac *f, int r0, int rr0, int R,
                              const lkv_kv_run *run, int t0, int nk, size_t rb, __m512i pk,
                              int need_mask) {
    __m512 s[GROUP];
    block_logits(b, f, r0, rr0, R, run, t0, nk, rb, pk, need_mask, s);
    float p[GROUP][16] __attribute__((aligned(64)));
    float alpha[GROUP];
    float *acc[GROUP];
    const int fold = avx512_softmax_fold(b, r0, R, s, p, alpha, acc);
    if (!fold)
        return;
    const int rescale = fold >> 1;
    float vs[16] __attribute__((aligned(64))); /* the block's value row scales */
    _mm512_store_ps(vs, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(avx512_first(nk),
                                                                 (const uint16_t *)run->v_aux + t0)));
    const uint8_t *v = (const uint8_t *)run->v + (size_t)t0 * rb;
    const float (*pp)[16] = (const float (*)[16])p;
    const int nch = b->d / 16;
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

AVX512_INLINE void block_observe(const lkv_attn_block *b, const qfac *f, const float *lse, int r0,
                                 int rr0, int R, const lkv_kv_run *run, int t0, int nk, size_t rb,
                                 __m512i pk, int need_mask, __m512 *mass) {
    __m512 s[GROUP];
    block_logits(b, f, r0, rr0, R, run, t0, nk, rb, pk, need_mask, s);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        float e = lse[r0 + r];
        if (e == -INFINITY)
            continue;
        *mass = _mm512_add_ps(*mass, avx512_exp(_mm512_sub_ps(s[r], _mm512_set1_ps(e))));
    }
}

AVX512_INLINE void attn_q8(const lkv_attn_block *b, const float *lse, const lkv_kv_run *runs,
                           int n_runs) {
    static _Thread_local qfac f;
    const size_t rb = (size_t)b->d;
    for (int rt0 = 0; rt0 < b->n_rows; rt0 += ROW_TILE) {
        int rt1 = b->n_rows - rt0 < ROW_TILE ? b->n_rows : rt0 + ROW_TILE;
        const int tok0 = rt0 / b->G, tok1 = (rt1 - 1) / b->G + 1;
        load_queries(b, rt0, rt1, &f);
        for (int ri = 0; ri < n_runs; ri++) {
            const lkv_kv_run *run = &runs[ri];
            if (avx512_run_unused(b, run, lse, tok0, tok1))
                continue;
            for (int t0 = 0; t0 < run->n; t0 += 16) {
                int nk = run->n - t0 < 16 ? run->n - t0 : 16;
                int need_mask;
                __m512i pk;
                if (!avx512_block_mask(b, run, t0, nk, tok0, tok1, &need_mask, &pk))
                    continue;
                __m512 mass = _mm512_setzero_ps();
                for (int g = rt0; g < rt1; g += GROUP) {
                    int R = rt1 - g < GROUP ? rt1 - g : GROUP;
                    if (lse) {
                        switch (R) {
                        case 1: block_observe(b, &f, lse, g, g - rt0, 1, run, t0, nk, rb, pk, need_mask, &mass); break;
                        case 2: block_observe(b, &f, lse, g, g - rt0, 2, run, t0, nk, rb, pk, need_mask, &mass); break;
                        case 3: block_observe(b, &f, lse, g, g - rt0, 3, run, t0, nk, rb, pk, need_mask, &mass); break;
                        default: block_observe(b, &f, lse, g, g - rt0, 4, run, t0, nk, rb, pk, need_mask, &mass); break;
                        }
                    } else {
                        switch (R) {
                        case 1: block_rows(b, &f, g, g - rt0, 1, run, t0, nk, rb, pk, need_mask); break;
                        case 2: block_rows(b, &f, g, g - rt0, 2, run, t0, nk, rb, pk, need_mask); break;
                        case 3: block_rows(b, &f, g, g - rt0, 3, run, t0, nk, rb, pk, need_mask); break;
                        default: block_rows(b, &f, g, g - rt0, 4, run, t0, nk, rb, pk, need_mask); break;
                        }
                    }
                }
                if (lse) {
                    __mmask16 in = avx512_first(nk);
                    float *o = run->obs + t0;
                    _mm512_mask_storeu_ps(o, in, _mm512_add_ps(_mm512_maskz_loadu_ps(in, o), mass));
                }
            }
        }
    }
}

/* Entry points: d % 16 != 0 goes to AVX2. */
void lkv_attn_q8_avx512(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    if (b->d % 16)
        lkv_attn_q8_avx2(b, runs, n_runs);
    else
        attn_q8(b, NULL, runs, n_runs);
}

void lkv_attn_observe_q8_avx512(const lkv_attn_block *b, const float *lse, const lkv_kv_run *runs,
                                int n_runs) {
    if (b->d % 16)
        lkv_attn_observe_q8_avx2(b, lse, runs, n_runs);
    else
        attn_q8(b, lse, runs, n_runs);
}

void lkv_kernels_init_attn_quant_avx512(lkv_kernel_table *t) {
    t->attn[LKV_DTYPE_Q8] = lkv_attn_q8_avx512;
    t->attn_observe[LKV_DTYPE_Q8] = lkv_attn_observe_q8_avx512;
    t->attn_isa[LKV_DTYPE_Q8] = t->attn_observe_isa[LKV_DTYPE_Q8] = LKV_ISA_AVX512;
}
