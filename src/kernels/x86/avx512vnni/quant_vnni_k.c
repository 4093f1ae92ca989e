/* quant_vnni_k.c -- AVX-512 + VNNI weight products for the k-quants Q4_K and
 * Q6_K (Gemma 3's Q4_K_M file). Registered from quant_vnni.c.
 *
 * A 256-element super-block is decoded into four zmm of unsigned bytes in
 * element order, so the activations stay in plain order:
 *   act_k (576 bytes per super-block):
 *     int8  q[256]     the int8 activations (reference values)
 *     int32 negc[64]   for Q6_K: -32 * (sum of q over each group of 4), the
 *                      start value of each vpdpbusd lane, so (u - 32) * x
 *                      comes out of a dot of the unsigned u = q6 + 32
 *     int16 bs32[8]    for Q4_K: sums of q over each 32-element sub-block
 *     float d
 * Integer dots of each 64-element zmm are scaled by the sub-block scales in
 * int32 (vpmulld), then by d * d_x once per super-block in float.
 * Micro-kernel: 2 rows x T tokens (T = 1 or 4).
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/quant_blocks.h"

#include "kernels/force_inline.h"
#define ALWAYS_INLINE LKV_FORCE_INLINE

typedef struct {
    int8_t q[256];
    int32_t negc[64];
    int16_t bs32[8];
    float d;
    float pad[11];
} act_k;
_Static_assert(sizeof(act_k) == 576, "act_k");

void lkv_kernels_init_quant_avx512vnni_k(lkv_kernel_table *t);

/* ------------------------------------------------ activation quantization */

static void qact_k(const float *x, int64_t cols, void *act) {
    act_k *a = act;
    for (int64_t b = 0; b < cols / LKV_QK_K; b++, a++) {
        const float *xb = x + b * LKV_QK_K;
        __m512 m = _mm512_setzero_ps();
        for (int i = 0; i < 256; i += 16)
            m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(xb + i)));
        float amax = _mm512_reduce_max_ps(m);
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        a->d = amax / 127.0f;
        __m512 vid = _mm512_set1_ps(id);
        const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
        for (int i = 0; i < 256; i += 16) {
            __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(xb + i), vid),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            r = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
            _mm_storeu_si128((__m128i *)(a->q + i), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(r)));
        }
        /* per-lane sums of 4 (vpdpbusd with ones), scaled by -32 */
        const __m512i ones = _mm512_set1_epi8(1);
        for (int j = 0; j < 4; j++) {
            __m512i s4 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones,
                                             _mm512_loadu_si512((const void *)(a->q + 64 * j)));
            _mm512_storeu_si512((void *)(a->negc + 16 * j), _mm512_mullo_epi32(s4, _mm512_set1_epi32(-32)));
        }
        for (int k = 0; k < 8; k++) {
            int s = 0;
            for (int i = 0; i < 8; i++)
                s -= a->negc[8 * k + i] / 32;
            a->bs32[k] = (int16_t)s;
        }
        memset(a->pad, 0, sizeof a->pad);
    }
}

/* ------------------------------------------------------ weight decoding */

/* Q6_K super-block -> 4 zmm of u = q6 + 32 (0..63) in element order. */
static ALWAYS_INLINE void decode_q6k(const lkv_block_q6_k *b, __m512i u[4]) {
    const __m512i m0f = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    for (int h = 0; h < 2; h++) {
        __m512i L = _mm512_loadu_si512((const void *)(b->ql + 64 * h));
        __m256i H = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
        __m512i Hz = _mm512_inserti64x4(_mm512_castsi256_si512(H), _mm256_srli_epi16(H, 2), 1);
        /* elements 0..63 of the half: low nibbles + bits (0,1) / (2,3) of qh */
        u[2 * h] = _mm512_or_si512(_mm512_and_si512(L, m0f),
                                   _mm512_and_si512(_mm512_slli_epi16(Hz, 4), m30));
        /* elements 64..127: high nibbles + bits (4,5) / (6,7) of qh */
        u[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m0f),
                                       _mm512_and_si512(Hz, m30));
    }
}

/* Sub-block scales of zmm j as int32 lanes: Q6_K lane l -> scales[4j + l/4]. */
static ALWAYS_INLINE __m512i q6k_scales(const int8_t *sc, int j) {
    int32_t four;
    memcpy(&four, sc + 4 * j, 4);
    const __m128i pat = _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    return _mm512_cvtepi8_epi32(_mm_shuffle_epi8(_mm_cvtsi32_si128(four), pat));
}

/* Q4_K: 6-bit scales and mins of the 8 sub-blocks, as 8 bytes each. */
static ALWAYS_INLINE void q4k_scales(const uint8_t *s12, uint64_t *sc, uint64_t *mn) {
    uint32_t u0, u1, u2;
    memcpy(&u0, s12, 4);
    memcpy(&u1, s12 + 4, 4);
    memcpy(&u2, s12 + 8, 4);
    uint32_t s_lo = u0 & 0x3f3f3f3fu, m_lo = u1 & 0x3f3f3f3fu;
    uint32_t s_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u);
    uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u);
    *sc = (uint64_t)s_lo | ((uint64_t)s_hi << 32);
    *mn = (uint64_t)m_lo | ((uint64_t)m_hi << 32);
}

/* ------------------------------------------------------- micro-kernels */

static ALWAYS_INLINE void kern_q6k(int T, const uint8_t *const w[2], int64_t nsb,
                                   const act_k *const a[4], float out[2][4], size_t pf) {
    __m512 acc[2][4];
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < T; t++)
            acc[r][t] = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < nsb; sb++) {
        __m512i u[2][4], sc[2][4];
        float d[2];
#pragma GCC unroll 2
        for (int r = 0; r < 2; r++) {
            const lkv_block_q6_k *b = (const lkv_block_q6_k *)w[r] + sb;
            for (int k = 0; k < (int)sizeof *b; k += 64) /* the next row group (never faults) */
                _mm_prefetch((const char *)b + pf + k, _MM_HINT_T0);
            decode_q6k(b, u[r]);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++)
                sc[r][j] = q6k_scales(b->scales, j);
            d[r] = _cvtsh_ss(b->d);
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const act_k *ak = a[t] + sb;
#pragma GCC unroll 2
            for (int r = 0; r < 2; r++) {
                __m512i sumi = _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) {
                    __m512i dj = _mm512_dpbusd_epi32(
                        _mm512_loadu_si512((const void *)(ak->negc + 16 * j)), u[r][j],
                        _mm512_loadu_si512((const void *)(ak->q + 64 * j)));
                    sumi = _mm512_add_epi32(sumi, _mm512_mullo_epi32(dj, sc[r][j]));
                }
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi),
                                            _mm512_set1_ps(d[r] * ak->d), acc[r][t]);
            }
        }
    }
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < T; t++)
            out[r][t] = _mm512_reduce_add_ps(acc[r][t]);
}

static ALWAYS_INLINE void kern_q4k(int T, const uint8_t *const w[2], int64_t nsb,
                                   const act_k *const a[4], float out[2][4], size_t pf) {
    __m512 acc[2][4];
    __m128 macc[2][4];
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < T; t++) {
            acc[r][t] = _mm512_setzero_ps();
            macc[r][t] = _mm_setzero_ps();
        }
    const __m512i m0f = _mm512_set1_epi8(0x0f);
    for (int64_t sb = 0; sb < nsb; sb++) {
        __m512i u[2][4], sc[2][4];
        __m128i mn16[2];
        float d[2], dmin[2];
#pragma GCC unroll 2
        for (int r = 0; r < 2; r++) {
            const lkv_block_q4_k *b = (const lkv_block_q4_k *)w[r] + sb;
            for (int k = 0; k < (int)sizeof *b; k += 64)
                _mm_prefetch((const char *)b + pf + k, _MM_HINT_T0);
            uint64_t s8, m8;
            q4k_scales(b->scales, &s8, &m8);
            __m128i sv = _mm_cvtsi64_si128((long long)s8);
            mn16[r] = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)m8));
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                __m256i q = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * c));
                __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
                u[r][c] = _mm512_and_si512(z, m0f);
                /* lanes 0..7 -> sub-block 2c, lanes 8..15 -> 2c+1 */
                const __m128i pat = _mm_setr_epi8((char)(2 * c), (char)(2 * c), (char)(2 * c),
                                                  (char)(2 * c), (char)(2 * c), (char)(2 * c),
                                                  (char)(2 * c), (char)(2 * c), (char)(2 * c + 1),
                                                  (char)(2 * c + 1), (char)(2 * c + 1),
                                                  (char)(2 * c + 1), (char)(2 * c + 1),
                                                  (char)(2 * c + 1), (char)(2 * c + 1),
                                                  (char)(2 * c + 1));
                sc[r][c] = _mm512_cvtepu8_epi32(_mm_shuffle_epi8(sv, pat));
            }
            d[r] = _cvtsh_ss(b->d);
            dmin[r] = _cvtsh_ss(b->dmin);
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const act_k *ak = a[t] + sb;
            __m128i bs = _mm_loadu_si128((const __m128i *)ak->bs32);
#pragma GCC unroll 2
            for (int r = 0; r < 2; r++) {
                __m512i sumi = _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) {
                    __m512i dc = _mm512_dpbusd_epi32(
                        _mm512_setzero_si512(), u[r][c],
                        _mm512_loadu_si512((const void *)(ak->q + 64 * c)));
                    sumi = _mm512_add_epi32(sumi, _mm512_mullo_epi32(dc, sc[r][c]));
                }
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi),
                                            _mm512_set1_ps(d[r] * ak->d), acc[r][t]);
                __m128i mi = _mm_madd_epi16(mn16[r], bs); /* 4 lanes of m_j * bsum_j pairs */
                macc[r][t] = _mm_fmadd_ps(_mm_cvtepi32_ps(mi), _mm_set1_ps(-dmin[r] * ak->d),
                                          macc[r][t]);
            }
        }
    }
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < T; t++) {
            __m128 m = macc[r][t];
            m = _mm_add_ps(m, _mm_movehl_ps(m, m));
            m = _mm_add_ss(m, _mm_movehdup_ps(m));
            out[r][t] = _mm512_reduce_add_ps(acc[r][t]) + _mm_cvtss_f32(m);
        }
}

/* ------------------------------------------------------------ row drivers */

enum { FMT_Q4_K, FMT_Q6_K };

#define TOK_CHUNK 64

static ALWAYS_INLINE void rows_common(int fmt, const void *w, size_t wrb, int64_t cols,
                                      int64_t r0, int64_t r1, const void *act, size_t as,
                                      int n_tok, float *y, size_t ldy) {
    int64_t nsb = cols / LKV_QK_K;
    for (int tc = 0; tc < n_tok; tc += TOK_CHUNK) {
        int tc_end = tc + TOK_CHUNK < n_tok ? tc + TOK_CHUNK : n_tok;
        for (int64_t r = r0; r < r1; r += 2) {
            int nr = r1 - r < 2 ? (int)(r1 - r) : 2;
            const uint8_t *wr[2];
            for (int i = 0; i < 2; i++)
                wr[i] = (const uint8_t *)w + (size_t)(r + (i < nr ? i : nr - 1)) * wrb;
            for (int t = tc; t < tc_end;) {
                int left = tc_end - t;
                int T = left == 1 ? 1 : 4;
                int nt = left < T ? left : T;
                const act_k *ap[4];
                for (int i = 0; i < 4; i++)
                    ap[i] = (const act_k *)((const uint8_t *)act +
                                            (size_t)(t + (i < nt ? i : nt - 1)) * as);
                float out[2][4];
                size_t pf = 2 * wrb;
                if (fmt == FMT_Q6_K) {
                    if (T == 1)
                        kern_q6k(1, wr, nsb, ap, out, pf);
                    else
                        kern_q6k(4, wr, nsb, ap, out, pf);
                } else {
                    if (T == 1)
                        kern_q4k(1, wr, nsb, ap, out, pf);
                    else
                        kern_q4k(4, wr, nsb, ap, out, pf);
                }
                for (int i = 0; i < nr; i++)
                    for (int j = 0; j < nt; j++)
                        y[(size_t)(t + j) * ldy + (size_t)(r + i)] = out[i][j];
                t += nt;
            }
        }
    }
}

static void rows_q4_k(const void *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1,
                      const void *act, size_t as, int n_tok, float *y, size_t ldy) {
    rows_common(FMT_Q4_K, w, wrb, cols, r0, r1, act, as, n_tok, y, ldy);
}
static void rows_q6_k(const void *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1,
                      const void *act, size_t as, int n_tok, float *y, size_t ldy) {
    rows_common(FMT_Q6_K, w, wrb, cols, r0, r1, act, as, n_tok, y, ldy);
}

void lkv_kernels_init_quant_avx512vnni_k(lkv_kernel_table *t) {
    int types[2] = {LKV_Q_Q4_K, LKV_Q_Q6_K};
    lkv_qmm_rows_fn fns[2] = {rows_q4_k, rows_q6_k};
    for (int i = 0; i < 2; i++) {
        t->qmm[types[i]].quantize = qact_k;
        t->qmm[types[i]].rows = fns[i];
        t->qmm[types[i]].isa = LKV_ISA_AVX512VNNI;
        t->qmm[types[i]].variant = "avx512vnni";
    }
}
