/* attn_quant.c -- AVX-512 attention over quantized K/V runs (Q8, KIVI4,
 * KIVI2), the math of ref/attn_quant.c on 16 lanes. Codes are unpacked in
 * registers inside the key loop; no dequantized row is ever stored.
 *
 * Per row tile (up to ROW_TILE query rows) and per run (one page):
 *   qs[r] = q_r o kscale (KIVI; Q8: q_r),  qm[r] = q_r . kmin (KIVI)
 * then blocks of 16 keys, groups of up to 4 rows sharing each unpacked code
 * vector:
 *   dots:    16 accumulators (4 keys x 4 rows) along d, reduced 4 keys at a
 *            time by a shuffle tree (as x86/avx512/attn_rows.c);
 *   logits:  Q8  scale * kscale_t * dot,  KIVI  scale * (qm + dot);
 *   values:  each value row dequantized in registers (v = vscale * code
 *            [+ vmin]; one FMA per chunk, shared by the rows), then
 *            acc += p_t * v, 64 columns at a time.
 * A 16-channel chunk of a packed KIVI row is one 16-byte load (zero-extended
 * to 16 lanes), a shift and a mask: the layout puts channel 16*i + j of a block
 * in bits [b*i, b*i + b) of byte j. Head dims that are not a multiple of 16 go
 * to the AVX2 kernels.
 */
#include "kernels/kv_quant.h"
#include "kernels/x86/avx512/attn_avx512.h"

#define GROUP 4      /* rows sharing one pass over a key block */
#define ROW_TILE 16  /* rows whose qs are kept on the stack */
#define MAXD LKV_ATTN_MAX_HEAD_DIM
#define MAXG (MAXD / LKV_KIVI_VGROUP)

void lkv_attn_q8_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_kivi4_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_kivi2_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_q8_avx2(const lkv_attn_block *b, const float *lse, const lkv_kv_run *runs,
                              int n_runs);
void lkv_attn_observe_kivi4_avx2(const lkv_attn_block *b, const float *lse,
                                 const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_kivi2_avx2(const lkv_attn_block *b, const float *lse,
                                 const lkv_kv_run *runs, int n_runs);

/* Per-row key factors of one run for a row tile. */
typedef struct qfac {
    float qs[ROW_TILE][MAXD] __attribute__((aligned(64))); /* [rows][d] */
    float qm[ROW_TILE];                                    /* [rows] */
} qfac;

/* 16 channels [16*ch, 16*ch + 16) of a code row, as f32 lanes. bits 0 = Q8. */
AVX512_INLINE __m512 unpack16(const uint8_t *row, int ch, int bits) {
    if (bits == 0)
        return _mm512_cvtepi32_ps(
            _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(row + 16 * ch))));
    const int per = 8 / bits;           /* 16-channel chunks per 16-byte block */
    const __m512i x = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + 16 * (ch / per))));
    const __m128i sh = _mm_cvtsi32_si128(bits * (ch % per));
    return _mm512_cvtepi32_ps(
        _mm512_and_si512(_mm512_srl_epi32(x, sh), _mm512_set1_epi32((1 << bits) - 1)));
}

/* Chunk u of an already zero-extended 16-byte KIVI block x (u < 8/bits). */
AVX512_INLINE __m512 unpack_in(__m512i x, int u, int bits) {
    return _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srl_epi32(x, _mm_cvtsi32_si128(bits * u)),
                                               _mm512_set1_epi32((1 << bits) - 1)));
}

AVX512_INLINE __m512i load_block(const uint8_t *row, int blk) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + 16 * blk)));
}

static void run_factors(const lkv_attn_block *b, const lkv_kv_run *run, int bits, int rt0, int rt1,
                        qfac *f) {
    const int d = b->d;
    for (int r = rt0; r < rt1; r++) {
        const float *q = avx512_query_row(b, r);
        float *qs = f->qs[r - rt0];
        if (!bits) {
            for (int c = 0; c < d; c += 16)
                _mm512_store_ps(qs + c, _mm512_loadu_ps(q + c));
            f->qm[r - rt0] = 0.0f;
            continue;
        }
        const uint16_t *ka = run->k_aux; /* [2][d] half: scale, min */
        __m512 m = _mm512_setzero_ps();
        for (int c = 0; c < d; c += 16) {
            __m512 qv = _mm512_loadu_ps(q + c);
            __m512 s = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(ka + c)));
            __m512 mn = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(ka + d + c)));
            _mm512_store_ps(qs + c, _mm512_mul_ps(qv, s));
            m = _mm512_fmadd_ps(qv, mn, m);
        }
        f->qm[r - rt0] = _mm512_reduce_add_ps(m);
    }
}

/* t[r] = 4 partial sums of each of 4 keys (as attn_rows.c quad_dots). */
AVX512_INLINE void quad_dots(const float *const *qs, int R, const uint8_t *k, size_t rb, int d,
                             int bits, __m512 *t) {
    __m512 a[GROUP][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        a[r][0] = a[r][1] = a[r][2] = a[r][3] = _mm512_setzero_ps();
    const int nch = d / 16, per = bits ? 8 / bits : 1; /* chunks per 16-byte block */
    for (int ch0 = 0; ch0 < nch; ch0 += per) {
        __m512i x0 = _mm512_setzero_si512(), x1 = x0, x2 = x0, x3 = x0;
        if (bits) { /* one load + widening per block and key, shifts by constants */
            x0 = load_block(k, ch0 / per);
            x1 = load_block(k + rb, ch0 / per);
            x2 = load_block(k + 2 * rb, ch0 / per);
            x3 = load_block(k + 3 * rb, ch0 / per);
        }
#pragma GCC unroll 4
        for (int u = 0; u < per; u++) {
            int ch = ch0 + u;
            if (ch >= nch)
                break;
            __m512 k0, k1, k2, k3;
            if (bits) {
                k0 = unpack_in(x0, u, bits);
                k1 = unpack_in(x1, u, bits);
                k2 = unpack_in(x2, u, bits);
                k3 = unpack_in(x3, u, bits);
            } else {
                k0 = unpack16(k, ch, 0);
                k1 = unpack16(k + rb, ch, 0);
                k2 = unpack16(k + 2 * rb, ch, 0);
                k3 = unpack16(k + 3 * rb, ch, 0);
            }
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m512 qv = _mm512_load_ps(qs[r] + 16 * ch);
                a[r][0] = _mm512_fmadd_ps(qv, k0, a[r][0]);
                a[r][1] = _mm512_fmadd_ps(qv, k1, a[r][1]);
                a[r][2] = _mm512_fmadd_ps(qv, k2, a[r][2]);
                a[r][3] = _mm512_fmadd_ps(qv, k3, a[r][3]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        t[r] = avx512_reduce_quad(a[r][0], a[r][1], a[r][2], a[r][3]);
}

/* out[r] lane j = qs_r . code row j, for nk (<= 16) keys; lanes >= nk are 0. */
AVX512_INLINE void block_dots(const float *const *qs, int R, const uint8_t *k, size_t rb, int d,
                              int nk, int bits, __m512 *out) {
    if (nk == 16) {
        __m512 t0[GROUP], t1[GROUP], t2[GROUP], t3[GROUP];
        quad_dots(qs, R, k, rb, d, bits, t0);
        quad_dots(qs, R, k + 4 * rb, rb, d, bits, t1);
        quad_dots(qs, R, k + 8 * rb, rb, d, bits, t2);
        quad_dots(qs, R, k + 12 * rb, rb, d, bits, t3);
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
            __m512 kv = unpack16(k + (size_t)j * rb, ch, bits);
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
                                int need_mask, int bits, __m512 *s) {
    const float *qs[GROUP];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        qs[r] = f->qs[rr0 + r];
    block_dots(qs, R, (const uint8_t *)run->k + (size_t)t0 * rb, rb, b->d, nk, bits, s);
    __m512 ks = _mm512_setzero_ps();
    if (!bits)
        ks = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(avx512_first(nk),
                                                      (const uint16_t *)run->k_aux + t0));
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        __m512 dot = bits ? _mm512_add_ps(s[r], _mm512_set1_ps(f->qm[rr0 + r]))
                          : _mm512_mul_ps(s[r], ks);
        __mmask16 vis = need_mask ? avx512_visible16(b, b->q_pos[(r0 + r) / b->G], pk, nk)
                                  : avx512_first(nk);
        s[r] = avx512_finish_logits(b, dot, vis);
    }
}

/* acc_r = alpha_r acc_r + sum_j p[r][j] * v_j for nv (1..4) 16-column chunks
 * from chunk ch0, each value row dequantized in registers: v = vs * code (+ vm
 * for KIVI) with vaf the block's scales/mins as f32 (Q8 [16]; KIVI [16][ng][2]). */
AVX512_INLINE void pv_cols(float *const *acc, int R, const float (*p)[16], const float *vaf, int ng,
                      const float *alpha, int rescale, const uint8_t *v, size_t rb, int nk, int ch0,
                      int nv, int bits) {
    __m512 a[GROUP][4];
    int g[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        g[i] = bits ? (16 * (ch0 + i)) / LKV_KIVI_VGROUP : 0;
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
        __m512i x = _mm512_setzero_si512();
        const int per = bits ? 8 / bits : 1; /* ch0 is a multiple of 4, so of per */
#pragma GCC unroll 4
        for (int i = 0; i < nv; i++) {
            __m512 code;
            if (bits) {
                if (i % per == 0)
                    x = load_block(v + (size_t)j * rb, ch0 / per + i / per);
                code = unpack_in(x, i % per, bits);
            } else {
                code = unpack16(v + (size_t)j * rb, ch0 + i, 0);
            }
            if (bits) {
                const float *sm = vaf + ((size_t)j * ng + g[i]) * 2;
                vv[i] = _mm512_fmadd_ps(code, _mm512_set1_ps(sm[0]), _mm512_set1_ps(sm[1]));
            } else {
                vv[i] = _mm512_mul_ps(code, _mm512_set1_ps(vaf[j]));
            }
        }
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
                              int need_mask, int bits) {
    __m512 s[GROUP];
    block_logits(b, f, r0, rr0, R, run, t0, nk, rb, pk, need_mask, bits, s);
    float p[GROUP][16] __attribute__((aligned(64)));
    float alpha[GROUP];
    float *acc[GROUP];
    const int fold = avx512_softmax_fold(b, r0, R, s, p, alpha, acc);
    if (!fold)
        return;
    const int rescale = fold >> 1;
    /* value coefficients: pc = p * vscale per (row, key, group); KIVI mins summed */
    const int d = b->d, ng = bits ? lkv_kvq_vgroups(d) : 1;
    /* the block's value scales (and mins) as f32: [nk] (Q8) or [nk][ng][2] (KIVI) */
    float vaf[16 * MAXG * 2 + 16] __attribute__((aligned(64)));
    const uint16_t *va = (const uint16_t *)run->v_aux + (size_t)t0 * (bits ? 2 * ng : 1);
    const int nva = nk * (bits ? 2 * ng : 1);
    int i = 0;
    for (; i + 16 <= nva; i += 16)
        _mm512_storeu_ps(vaf + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(va + i))));
    for (; i < nva; i++)
        vaf[i] = _cvtsh_ss(va[i]);
    const uint8_t *v = (const uint8_t *)run->v + (size_t)t0 * rb;
    const float (*pp)[16] = (const float (*)[16])p;
    const int nch = d / 16;
    int ch = 0;
    for (; ch + 4 <= nch; ch += 4)
        pv_cols(acc, R, pp, vaf, ng, alpha, rescale, v, rb, nk, ch, 4, bits);
    switch (nch - ch) {
    case 3: pv_cols(acc, R, pp, vaf, ng, alpha, rescale, v, rb, nk, ch, 3, bits); break;
    case 2: pv_cols(acc, R, pp, vaf, ng, alpha, rescale, v, rb, nk, ch, 2, bits); break;
    case 1: pv_cols(acc, R, pp, vaf, ng, alpha, rescale, v, rb, nk, ch, 1, bits); break;
    default: break;
    }
}

AVX512_INLINE void block_observe(const lkv_attn_block *b, const qfac *f, const float *lse, int r0,
                                 int rr0, int R, const lkv_kv_run *run, int t0, int nk, size_t rb,
                                 __m512i pk, int need_mask, int bits, __m512 *mass) {
    __m512 s[GROUP];
    block_logits(b, f, r0, rr0, R, run, t0, nk, rb, pk, need_mask, bits, s);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        float e = lse[r0 + r];
        if (e == -INFINITY)
            continue;
        *mass = _mm512_add_ps(*mass, avx512_exp(_mm512_sub_ps(s[r], _mm512_set1_ps(e))));
    }
}

AVX512_INLINE void attn_quant(const lkv_attn_block *b, const float *lse, const lkv_kv_run *runs,
                              int n_runs, int bits, lkv_dtype dt) {
    static _Thread_local qfac f;
    const size_t rb = lkv_kvq_row_bytes(dt, b->d);
    const int may_mask = b->causal || b->window > 0;
    for (int rt0 = 0; rt0 < b->n_rows; rt0 += ROW_TILE) {
        int rt1 = b->n_rows - rt0 < ROW_TILE ? b->n_rows : rt0 + ROW_TILE;
        const int tok0 = rt0 / b->G, tok1 = (rt1 - 1) / b->G + 1;
        for (int ri = 0; ri < n_runs; ri++) {
            const lkv_kv_run *run = &runs[ri];
            if (run->n <= 0 || (lse && !run->obs))
                continue;
            if (avx512_span_masked(b, tok0, tok1, avx512_key_pos(run, 0),
                                   avx512_key_pos(run, run->n - 1)))
                continue;
            run_factors(b, run, bits, rt0, rt1, &f);
            for (int t0 = 0; t0 < run->n; t0 += 16) {
                int nk = run->n - t0 < 16 ? run->n - t0 : 16;
                int32_t pf = avx512_key_pos(run, t0), pl = avx512_key_pos(run, t0 + nk - 1);
                if (may_mask && avx512_span_masked(b, tok0, tok1, pf, pl))
                    continue;
                int need_mask = may_mask && !avx512_span_visible(b, tok0, tok1, pf, pl);
                __m512i pk = need_mask ? avx512_key_pos16(run, t0, nk) : _mm512_setzero_si512();
                __m512 mass = _mm512_setzero_ps();
                for (int g = rt0; g < rt1; g += GROUP) {
                    int R = rt1 - g < GROUP ? rt1 - g : GROUP;
                    if (lse) {
                        switch (R) {
                        case 1: block_observe(b, &f, lse, g, g - rt0, 1, run, t0, nk, rb, pk, need_mask, bits, &mass); break;
                        case 2: block_observe(b, &f, lse, g, g - rt0, 2, run, t0, nk, rb, pk, need_mask, bits, &mass); break;
                        case 3: block_observe(b, &f, lse, g, g - rt0, 3, run, t0, nk, rb, pk, need_mask, bits, &mass); break;
                        default: block_observe(b, &f, lse, g, g - rt0, 4, run, t0, nk, rb, pk, need_mask, bits, &mass); break;
                        }
                    } else {
                        switch (R) {
                        case 1: block_rows(b, &f, g, g - rt0, 1, run, t0, nk, rb, pk, need_mask, bits); break;
                        case 2: block_rows(b, &f, g, g - rt0, 2, run, t0, nk, rb, pk, need_mask, bits); break;
                        case 3: block_rows(b, &f, g, g - rt0, 3, run, t0, nk, rb, pk, need_mask, bits); break;
                        default: block_rows(b, &f, g, g - rt0, 4, run, t0, nk, rb, pk, need_mask, bits); break;
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

/* Entry points: d % 16 != 0 goes to AVX2. Bits are compile-time constants in
 * each instance, so the unpacking folds. */
#define QUANT_ENTRY(name, DT, BITS)                                                             \
    void lkv_attn_##name##_avx512(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) { \
        if (b->d % 16)                                                                          \
            lkv_attn_##name##_avx2(b, runs, n_runs);                                            \
        else                                                                                    \
            attn_quant(b, NULL, runs, n_runs, BITS, DT);                                        \
    }                                                                                           \
    void lkv_attn_observe_##name##_avx512(const lkv_attn_block *b, const float *lse,           \
                                          const lkv_kv_run *runs, int n_runs) {                 \
        if (b->d % 16)                                                                          \
            lkv_attn_observe_##name##_avx2(b, lse, runs, n_runs);                               \
        else                                                                                    \
            attn_quant(b, lse, runs, n_runs, BITS, DT);                                         \
    }
QUANT_ENTRY(q8, LKV_DTYPE_Q8, 0)
QUANT_ENTRY(kivi4, LKV_DTYPE_KIVI4, 4)
QUANT_ENTRY(kivi2, LKV_DTYPE_KIVI2, 2)

void lkv_kernels_init_attn_quant_avx512(lkv_kernel_table *t) {
    t->attn[LKV_DTYPE_Q8] = lkv_attn_q8_avx512;
    t->attn[LKV_DTYPE_KIVI4] = lkv_attn_kivi4_avx512;
    t->attn[LKV_DTYPE_KIVI2] = lkv_attn_kivi2_avx512;
    t->attn_observe[LKV_DTYPE_Q8] = lkv_attn_observe_q8_avx512;
    t->attn_observe[LKV_DTYPE_KIVI4] = lkv_attn_observe_kivi4_avx512;
    t->attn_observe[LKV_DTYPE_KIVI2] = lkv_attn_observe_kivi2_avx512;
    for (int dt = LKV_DTYPE_Q8; dt <= LKV_DTYPE_KIVI2; dt++)
        t->attn_isa[dt] = t->attn_observe_isa[dt] = LKV_ISA_AVX512;
}
