/* attn_kivi.c -- AVX2+FMA+F16C attention over KIVI runs (2- and 4-bit
 * tiles, layouts in kernels/kv_quant.h): x86/avx512/attn_kivi.c on 8 lanes,
 * half a tile (8 keys) per softmax step. Any head dim that is a multiple of 8.
 *
 *   keys:    the query rounded to int16 per run (scale qa), paired as the key
 *            words come; vpmaddwd of the masked word pairs of 8 tokens (one
 *            lane each) with each pair, so no dot needs a horizontal sum;
 *   values:  per key, the codes of 8 channels (shift, mask, convert) and one
 *            FMA per row with w = p * vscale, plus p . vmin per group.
 */
#include "kernels/kv_quant.h"
#include "kernels/x86/avx2/attn_avx2.h"

#define GROUP 4
#define ROW_TILE 16
#define MAXD LKV_ATTN_MAX_HEAD_DIM
#define MAXG (MAXD / LKV_KIVI_VGROUP)
#define TILE LKV_KVQ_TILE

typedef struct qfac {
    int32_t qp[ROW_TILE][MAXD / 2 + 8]; /* [rows][chunk][u]: int16 pair (u, u + P/2) */
    float qa[ROW_TILE];                 /* scale of the int16 query */
    float qm[ROW_TILE];                 /* q . kmin */
} qfac;

static void run_factors(const lkv_attn_block *b, const lkv_kv_run *run, int bits, int rt0,
                        int rt1, qfac *f) {
    const int d = b->d, P = 32 / bits, C = (d + P - 1) / P * P;
    const uint16_t *ka = run->k_aux; /* [2][d] half: scale, min */
    float qs[MAXD] __attribute__((aligned(32)));
    int16_t qi[MAXD + 16] __attribute__((aligned(32)));
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int r = rt0; r < rt1; r++) {
        const float *q = avx2_query_row(b, r);
        __m256 m = _mm256_setzero_ps(), mx = _mm256_setzero_ps();
        for (int c = 0; c < d; c += 8) {
            __m256 qv = _mm256_loadu_ps(q + c);
            __m256 s = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ka + c)));
            __m256 mn = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ka + d + c)));
            __m256 x = _mm256_mul_ps(qv, s);
            _mm256_store_ps(qs + c, x);
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, x));
            m = _mm256_fmadd_ps(qv, mn, m);
        }
        const float amax = avx2_hmax(mx);
        const __m256 inv = _mm256_set1_ps(amax > 0.0f ? 32767.0f / amax : 0.0f);
        for (int c = 0; c < d; c += 8) {
            __m256i x = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_load_ps(qs + c), inv));
            _mm_store_si128((__m128i *)(qi + c),
                            _mm_packs_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1)));
        }
        if (C > d) /* the last 2-bit chunk's channels past d */
            _mm_store_si128((__m128i *)(qi + d), _mm_setzero_si128());
        int32_t *qp = f->qp[r - rt0];
        if (bits == 2) /* chunk of 16: pairs (u, 8 + u) */
            for (int c = 0; c < C; c += 16) {
                __m128i lo = _mm_load_si128((const __m128i *)(qi + c));
                __m128i hi = _mm_load_si128((const __m128i *)(qi + c + 8));
                _mm_storeu_si128((__m128i *)(qp + c / 2), _mm_unpacklo_epi16(lo, hi));
                _mm_storeu_si128((__m128i *)(qp + c / 2 + 4), _mm_unpackhi_epi16(lo, hi));
            }
        else /* chunk of 8: pairs (u, 4 + u) */
            for (int c = 0; c < C; c += 8) {
                __m128i x = _mm_load_si128((const __m128i *)(qi + c));
                _mm_storeu_si128((__m128i *)(qp + c / 2), _mm_unpacklo_epi16(x, _mm_srli_si128(x, 8)));
            }
        f->qa[r - rt0] = amax / 32767.0f;
        f->qm[r - rt0] = avx2_hsum(m);
    }
}

/* Logits of rows r0 .. r0+R-1 for keys hf*8 .. hf*8 + nk - 1 of the tile at kt. */
AVX2_INLINE void half_logits(const lkv_attn_block *b, const qfac *f, int r0, int rr0, int R,
                             const uint8_t *kt, int hf, int nk, __m256i pk, int need_mask,
                             int bits, __m256 *s) {
    const int P = 32 / bits, H = P / 2, nch = (b->d + P - 1) / P;
    const uint32_t lane = (1u << bits) - 1;
    const __m256i mask = _mm256_set1_epi32((int)(lane | lane << 16));
    __m256i acc[GROUP][2];
#pragma GCC unroll 4
    for (int r = 0; r < GROUP; r++) /* all, so GCC sees them set */
        acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int j = 0; j < nch; j++) {
        const __m256i x = _mm256_loadu_si256((const __m256i *)(kt + (size_t)j * 64 + 32 * (size_t)hf));
#pragma GCC unroll 8
        for (int u = 0; u < H; u++) {
            const __m256i w = _mm256_and_si256(_mm256_srli_epi32(x, bits * u), mask);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                acc[r][u % 2] = _mm256_add_epi32(
                    acc[r][u % 2], _mm256_madd_epi16(w, _mm256_set1_epi32(f->qp[rr0 + r][j * H + u])));
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        const __m256i sum = _mm256_add_epi32(acc[r][0], acc[r][1]);
        __m256 dot = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(f->qa[rr0 + r]),
                                     _mm256_set1_ps(f->qm[rr0 + r]));
        const __m256 vis = need_mask ? avx2_visible8(b, b->q_pos[(r0 + r) / b->G], pk, nk)
                                     : _mm256_castsi256_ps(_mm256_cmpgt_epi32(
                                           _mm256_set1_epi32(nk), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
        s[r] = avx2_finish_logits(b, dot, vis);
    }
}

/* acc_r = alpha_r acc_r + sum_m w[r][g][m] * code_m (+ mt[r][g], added here
 * once) for nv (1..4) 8-channel vectors from vector c0; keys hf*8 + m. */
AVX2_INLINE void half_values(float *const *acc, int R, const float (*w)[MAXG][8],
                             const float (*mt)[MAXG], const float *alpha, int rescale,
                             const uint8_t *vt, size_t group_words, int hf, int nk, int c0, int nv,
                             int bits) {
    const int P = 32 / bits; /* keys per value word */
    const __m256i mask = _mm256_set1_epi32((1 << bits) - 1);
    __m256 a[GROUP][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        const __m256 al = _mm256_set1_ps(alpha[r]);
#pragma GCC unroll 4
        for (int i = 0; i < nv; i++) {
            a[r][i] = _mm256_loadu_ps(acc[r] + 8 * (c0 + i));
            if (rescale)
                a[r][i] = _mm256_mul_ps(a[r][i], al);
            a[r][i] = _mm256_add_ps(a[r][i], _mm256_set1_ps(mt[r][(8 * (c0 + i)) / LKV_KIVI_VGROUP]));
        }
    }
    __m256i x[4];
    const int h = (8 * hf) / P; /* the word group holding these keys */
#pragma GCC unroll 4
    for (int i = 0; i < nv; i++)
        x[i] = _mm256_loadu_si256((const __m256i *)(vt + 4 * ((size_t)h * group_words + 8 * (size_t)(c0 + i))));
    for (int m = 0; m < nk; m++) {
        const int sh = bits * ((8 * hf + m) % P);
        __m256 code[4];
#pragma GCC unroll 4
        for (int i = 0; i < nv; i++)
            code[i] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(x[i], sh), mask));
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int i = 0; i < nv; i++)
                a[r][i] = _mm256_fmadd_ps(_mm256_set1_ps(w[r][(8 * (c0 + i)) / LKV_KIVI_VGROUP][m]),
                                          code[i], a[r][i]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int i = 0; i < nv; i++)
            _mm256_storeu_ps(acc[r] + 8 * (c0 + i), a[r][i]);
}

AVX2_INLINE void half_rows(const lkv_attn_block *b, const qfac *f, int r0, int rr0, int R,
                           const lkv_kv_run *run, int t0, int hf, int nk, size_t rb, __m256i pk,
                           int need_mask, int bits) {
    __m256 s[GROUP];
    half_logits(b, f, r0, rr0, R, (const uint8_t *)run->k + (size_t)t0 * rb, hf, nk, pk,
                need_mask, bits, s);
    float p[GROUP][8] __attribute__((aligned(32)));
    float alpha[GROUP];
    float *acc[GROUP];
    const int fold = avx2_softmax_fold(b, r0, R, s, p, alpha, acc);
    if (!fold)
        return;
    const int d = b->d, ng = lkv_kvq_vgroups(d);
    const uint16_t *va = (const uint16_t *)run->v_aux + (size_t)t0 * 2 * (size_t)ng + 8 * (size_t)hf;
    float w[GROUP][MAXG][8] __attribute__((aligned(32)));
    float mt[GROUP][MAXG];
    for (int g = 0; g < ng; g++) {
        const __m256 vs = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(va + (size_t)g * 32)));
        const __m256 vm = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(va + (size_t)g * 32 + 16)));
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m256 pv = _mm256_load_ps(p[r]);
            _mm256_store_ps(w[r][g], _mm256_mul_ps(pv, vs));
            mt[r][g] = avx2_hsum(_mm256_mul_ps(pv, vm));
        }
    }
    const int rescale = fold >> 1;
    const uint8_t *vt = (const uint8_t *)run->v + (size_t)t0 * rb;
    const size_t group_words = rb * 8 / (size_t)bits;
    const float (*wc)[MAXG][8] = (const float (*)[MAXG][8])w;
    const float (*mc)[MAXG] = (const float (*)[MAXG])mt;
    const int nv = d / 8;
    int c = 0;
    for (; c + 4 <= nv; c += 4)
        half_values(acc, R, wc, mc, alpha, rescale, vt, group_words, hf, nk, c, 4, bits);
    switch (nv - c) {
    case 3: half_values(acc, R, wc, mc, alpha, rescale, vt, group_words, hf, nk, c, 3, bits); break;
    case 2: half_values(acc, R, wc, mc, alpha, rescale, vt, group_words, hf, nk, c, 2, bits); break;
    case 1: half_values(acc, R, wc, mc, alpha, rescale, vt, group_words, hf, nk, c, 1, bits); break;
    default: break;
    }
}

AVX2_INLINE void attn_kivi(const lkv_attn_block *b, const float *lse, const lkv_kv_run *runs,
                           int n_runs, int bits) {
    static _Thread_local qfac f;
    const size_t rb = lkv_kvq_row_bytes(bits == 4 ? LKV_DTYPE_KIVI4 : LKV_DTYPE_KIVI2, b->d);
    for (int rt0 = 0; rt0 < b->n_rows; rt0 += ROW_TILE) {
        int rt1 = b->n_rows - rt0 < ROW_TILE ? b->n_rows : rt0 + ROW_TILE;
        const int tok0 = rt0 / b->G, tok1 = (rt1 - 1) / b->G + 1;
        for (int ri = 0; ri < n_runs; ri++) {
            const lkv_kv_run *run = &runs[ri];
            if (avx2_run_unused(b, run, lse, tok0, tok1))
                continue;
            run_factors(b, run, bits, rt0, rt1, &f);
            for (int k0 = 0; k0 < run->n; k0 += 8) { /* half tiles */
                const int t0 = k0 - k0 % TILE, hf = (k0 % TILE) / 8;
                int nk = run->n - k0 < 8 ? run->n - k0 : 8;
                int need_mask;
                __m256i pk;
                if (!avx2_block_mask(b, run, k0, nk, tok0, tok1, &need_mask, &pk))
                    continue;
                float mass[8] __attribute__((aligned(32))) = {0};
                for (int g = rt0; g < rt1; g += GROUP) {
                    int R = rt1 - g < GROUP ? rt1 - g : GROUP;
                    if (lse) {
                        __m256 s[GROUP];
                        half_logits(b, &f, g, g - rt0, R, (const uint8_t *)run->k + (size_t)t0 * rb,
                                    hf, nk, pk, need_mask, bits, s);
                        avx2_add_mass(lse + g, R, s, mass);
                    } else {
                        switch (R) {
                        case 1: half_rows(b, &f, g, g - rt0, 1, run, t0, hf, nk, rb, pk, need_mask, bits); break;
                        case 2: half_rows(b, &f, g, g - rt0, 2, run, t0, hf, nk, rb, pk, need_mask, bits); break;
                        case 3: half_rows(b, &f, g, g - rt0, 3, run, t0, hf, nk, rb, pk, need_mask, bits); break;
                        default: half_rows(b, &f, g, g - rt0, 4, run, t0, hf, nk, rb, pk, need_mask, bits); break;
                        }
                    }
                }
                if (lse)
                    for (int j = 0; j < nk; j++)
                        run->obs[k0 + j] += mass[j];
            }
        }
    }
}

#define KIVI_ENTRY(name, BITS)                                                                  \
    void lkv_attn_##name##_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);   \
    void lkv_attn_observe_##name##_avx2(const lkv_attn_block *b, const float *lse,              \
                                        const lkv_kv_run *runs, int n_runs);                    \
    void lkv_attn_##name##_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {  \
        attn_kivi(b, NULL, runs, n_runs, BITS);                                                 \
    }                                                                                           \
    void lkv_attn_observe_##name##_avx2(const lkv_attn_block *b, const float *lse,              \
                                        const lkv_kv_run *runs, int n_runs) {                   \
        attn_kivi(b, lse, runs, n_runs, BITS);                                                  \
    }
KIVI_ENTRY(kivi4, 4)
KIVI_ENTRY(kivi2, 2)

void lkv_kernels_init_attn_kivi_avx2(lkv_kernel_table *t) {
    t->attn[LKV_DTYPE_KIVI4] = lkv_attn_kivi4_avx2;
    t->attn[LKV_DTYPE_KIVI2] = lkv_attn_kivi2_avx2;
    t->attn_observe[LKV_DTYPE_KIVI4] = lkv_attn_observe_kivi4_avx2;
    t->attn_observe[LKV_DTYPE_KIVI2] = lkv_attn_observe_kivi2_avx2;
    for (int dt = LKV_DTYPE_KIVI4; dt <= LKV_DTYPE_KIVI2; dt++)
        t->attn_isa[dt] = t->attn_observe_isa[dt] = LKV_ISA_AVX2;
}
