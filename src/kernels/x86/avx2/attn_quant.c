/* attn_quant.c -- AVX2+FMA+F16C attention over quantized K/V runs (Q8, KIVI4,
 * KIVI2): ref/attn_quant.c on 8 lanes, codes unpacked in registers inside the
 * key loop (never a dequantized copy).
 *
 * Per row tile and run: qs[r] = q_r o kscale (KIVI; Q8: q_r), qm[r] = q_r . kmin.
 * Blocks of 8 keys, groups of up to 4 rows: one unpack of each 8-channel code
 * chunk feeds the rows' FMAs; each (row, key) dot is reduced once. Values:
 * each value chunk dequantized in registers (vscale * code [+ vmin], shared
 * by the rows), then acc += p_t * v. An 8-channel chunk of a packed KIVI row is one
 * 8-byte load: channels 16*i + j .. 16*i + j + 7 of a block sit in bytes
 * j .. j+7, bits [b*i, b*i + b).
 */
#include "kernels/kv_quant.h"
#include "kernels/x86/avx2/attn_avx2.h"

#define GROUP 4
#define ROW_TILE 16
#define MAXD LKV_ATTN_MAX_HEAD_DIM
#define MAXG (MAXD / LKV_KIVI_VGROUP)

typedef struct qfac {
    float qs[ROW_TILE][MAXD] __attribute__((aligned(32)));
    float qm[ROW_TILE];
} qfac;

/* 8 channels [8*ch, 8*ch + 8) of a code row as f32 lanes; bits 0 = Q8. */
AVX2_INLINE __m256 unpack8(const uint8_t *row, int ch, int bits) {
    if (bits == 0)
        return _mm256_cvtepi32_ps(
            _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(row + 8 * ch))));
    const int blk = 128 / bits, c0 = 8 * ch, in = c0 % blk;
    const uint8_t *p = row + (size_t)(c0 / blk) * 16 + (size_t)(in % 16);
    __m256i x = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    x = _mm256_srl_epi32(x, _mm_cvtsi32_si128(bits * (in / 16)));
    return _mm256_cvtepi32_ps(_mm256_and_si256(x, _mm256_set1_epi32((1 << bits) - 1)));
}

static void run_factors(const lkv_attn_block *b, const lkv_kv_run *run, int bits, int rt0, int rt1,
                        qfac *f) {
    const int d = b->d;
    for (int r = rt0; r < rt1; r++) {
        const float *q = avx2_query_row(b, r);
        float *qs = f->qs[r - rt0];
        if (!bits) {
            for (int c = 0; c < d; c += 8)
                _mm256_store_ps(qs + c, _mm256_loadu_ps(q + c));
            f->qm[r - rt0] = 0.0f;
            continue;
        }
        const uint16_t *ka = run->k_aux;
        __m256 m = _mm256_setzero_ps();
        for (int c = 0; c < d; c += 8) {
            __m256 qv = _mm256_loadu_ps(q + c);
            __m256 s = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ka + c)));
            __m256 mn = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ka + d + c)));
            _mm256_store_ps(qs + c, _mm256_mul_ps(qv, s));
            m = _mm256_fmadd_ps(qv, mn, m);
        }
        f->qm[r - rt0] = avx2_hsum(m);
    }
}

AVX2_INLINE void block_logits(const lkv_attn_block *b, const qfac *f, int r0, int rr0, int R,
                              const lkv_kv_run *run, int t0, int nk, size_t rb, __m256i pk,
                              int need_mask, int bits, __m256 *s) {
    float tmp[GROUP][8] __attribute__((aligned(32))) = {{0}};
    const uint8_t *k = (const uint8_t *)run->k + (size_t)t0 * rb;
    for (int j = 0; j < nk; j++) {
        __m256 a[GROUP];
#pragma GCC unroll 4
        for (int r = 0; r < GROUP; r++)
            a[r] = _mm256_setzero_ps();
        for (int ch = 0; ch < b->d / 8; ch++) {
            __m256 kv = unpack8(k + (size_t)j * rb, ch, bits);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                a[r] = _mm256_fmadd_ps(_mm256_load_ps(f->qs[rr0 + r] + 8 * ch), kv, a[r]);
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            tmp[r][j] = avx2_hsum(a[r]);
    }
    float ks[8] __attribute__((aligned(32))) = {0};
    if (!bits)
        for (int j = 0; j < nk; j++)
            ks[j] = _cvtsh_ss(((const uint16_t *)run->k_aux)[t0 + j]);
    const __m256 ksv = _mm256_load_ps(ks);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        __m256 dot = _mm256_load_ps(tmp[r]);
        dot = bits ? _mm256_add_ps(dot, _mm256_set1_ps(f->qm[rr0 + r])) : _mm256_mul_ps(dot, ksv);
        __m256 vis = need_mask ? avx2_visible8(b, b->q_pos[(r0 + r) / b->G], pk, nk)
                               : _mm256_castsi256_ps(_mm256_cmpgt_epi32(
                                     _mm256_set1_epi32(nk), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
        s[r] = avx2_finish_logits(b, dot, vis);
    }
}

/* acc_r = alpha_r acc_r + sum_j p[r][j] * v_j for nv (1..4) 8-column chunks
 * from chunk ch0, each value row dequantized in registers: v = vs * code (+ vm
 * for KIVI) with vaf the block's scales/mins as f32 (Q8 [8]; KIVI [8][ng][2]). */
AVX2_INLINE void pv_cols(float *const *acc, int R, const float (*p)[8], const float *vaf, int ng,
                      const float *alpha, int rescale, const uint8_t *v, size_t rb, int nk, int ch0,
                      int nv, int bits) {
    __m256 a[GROUP][4];
    int g[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        g[i] = bits ? (8 * (ch0 + i)) / LKV_KIVI_VGROUP : 0;
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
        for (int i = 0; i < nv; i++) {
            __m256 code = unpack8(v + (size_t)j * rb, ch0 + i, bits);
            if (bits) {
                const float *sm = vaf + ((size_t)j * ng + g[i]) * 2;
                vv[i] = _mm256_fmadd_ps(code, _mm256_set1_ps(sm[0]), _mm256_set1_ps(sm[1]));
            } else {
                vv[i] = _mm256_mul_ps(code, _mm256_set1_ps(vaf[j]));
            }
        }
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
                            int need_mask, int bits) {
    __m256 s[GROUP];
    block_logits(b, f, r0, rr0, R, run, t0, nk, rb, pk, need_mask, bits, s);
    float p[GROUP][8] __attribute__((aligned(32)));
    float alpha[GROUP];
    float *acc[GROUP];
    const int fold = avx2_softmax_fold(b, r0, R, s, p, alpha, acc);
    if (!fold)
        return;
    const int rescale = fold >> 1;
    const int d = b->d, ng = bits ? lkv_kvq_vgroups(d) : 1;
    /* the block's value scales (and mins) as f32: [nk] (Q8) or [nk][ng][2] (KIVI) */
    float vaf[8 * MAXG * 2 + 8] __attribute__((aligned(64)));
    const uint16_t *va = (const uint16_t *)run->v_aux + (size_t)t0 * (bits ? 2 * ng : 1);
    const int nva = nk * (bits ? 2 * ng : 1);
    int i = 0;
    for (; i + 8 <= nva; i += 8)
        _mm256_storeu_ps(vaf + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(va + i))));
    for (; i < nva; i++)
        vaf[i] = _cvtsh_ss(va[i]);
    const uint8_t *v = (const uint8_t *)run->v + (size_t)t0 * rb;
    const float (*pp)[8] = (const float (*)[8])p;
    const int nch = d / 8;
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

AVX2_INLINE void attn_quant(const lkv_attn_block *b, const float *lse, const lkv_kv_run *runs,
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
            if (avx2_span_masked(b, tok0, tok1, avx2_key_pos(run, 0), avx2_key_pos(run, run->n - 1)))
                continue;
            run_factors(b, run, bits, rt0, rt1, &f);
            for (int t0 = 0; t0 < run->n; t0 += 8) {
                int nk = run->n - t0 < 8 ? run->n - t0 : 8;
                int32_t pf = avx2_key_pos(run, t0), pl = avx2_key_pos(run, t0 + nk - 1);
                if (may_mask && avx2_span_masked(b, tok0, tok1, pf, pl))
                    continue;
                int need_mask = may_mask && !avx2_span_visible(b, tok0, tok1, pf, pl);
                __m256i pk = need_mask ? avx2_key_pos8(run, t0, nk) : _mm256_setzero_si256();
                float mass[8] __attribute__((aligned(32))) = {0};
                for (int g = rt0; g < rt1; g += GROUP) {
                    int R = rt1 - g < GROUP ? rt1 - g : GROUP;
                    if (lse) {
                        __m256 s[GROUP];
                        block_logits(b, &f, g, g - rt0, R, run, t0, nk, rb, pk, need_mask, bits, s);
                        __m256 ms = _mm256_load_ps(mass);
                        for (int r = 0; r < R; r++)
                            if (lse[g + r] != -INFINITY)
                                ms = _mm256_add_ps(ms, avx2_exp(_mm256_sub_ps(s[r], _mm256_set1_ps(lse[g + r]))));
                        _mm256_store_ps(mass, ms);
                    } else {
                        switch (R) {
                        case 1: block_rows(b, &f, g, g - rt0, 1, run, t0, nk, rb, pk, need_mask, bits); break;
                        case 2: block_rows(b, &f, g, g - rt0, 2, run, t0, nk, rb, pk, need_mask, bits); break;
                        case 3: block_rows(b, &f, g, g - rt0, 3, run, t0, nk, rb, pk, need_mask, bits); break;
                        default: block_rows(b, &f, g, g - rt0, 4, run, t0, nk, rb, pk, need_mask, bits); break;
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

#define QUANT_ENTRY(name, DT, BITS)                                                             \
    void lkv_attn_##name##_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {  \
        attn_quant(b, NULL, runs, n_runs, BITS, DT);                                            \
    }                                                                                           \
    void lkv_attn_observe_##name##_avx2(const lkv_attn_block *b, const float *lse,             \
                                        const lkv_kv_run *runs, int n_runs) {                   \
        attn_quant(b, lse, runs, n_runs, BITS, DT);                                             \
    }
QUANT_ENTRY(q8, LKV_DTYPE_Q8, 0)
QUANT_ENTRY(kivi4, LKV_DTYPE_KIVI4, 4)
QUANT_ENTRY(kivi2, LKV_DTYPE_KIVI2, 2)

void lkv_kernels_init_attn_quant_avx2(lkv_kernel_table *t) {
    t->attn[LKV_DTYPE_Q8] = lkv_attn_q8_avx2;
    t->attn[LKV_DTYPE_KIVI4] = lkv_attn_kivi4_avx2;
    t->attn[LKV_DTYPE_KIVI2] = lkv_attn_kivi2_avx2;
    t->attn_observe[LKV_DTYPE_Q8] = lkv_attn_observe_q8_avx2;
    t->attn_observe[LKV_DTYPE_KIVI4] = lkv_attn_observe_kivi4_avx2;
    t->attn_observe[LKV_DTYPE_KIVI2] = lkv_attn_observe_kivi2_avx2;
    for (int dt = LKV_DTYPE_Q8; dt <= LKV_DTYPE_KIVI2; dt++)
        t->attn_isa[dt] = t->attn_observe_isa[dt] = LKV_ISA_AVX2;
}
