/* quant_avx2.c -- AVX2 (+FMA, F16C) weight products for Q4_0, Q4_1 and Q8_0.
 *
 * Activations use the reference layout (lkv_act_q8: d, s, 32 int8 per block),
 * one block per ymm. Products use vpmaddubsw (u8 x s8 -> i16 pairs), which is
 * safe from i16 saturation here: nibbles are <= 15, and for Q8_0 the unsigned
 * side is |w| <= 128 against |x| <= 127 (the sign moved onto x), so a pair
 * sums to at most 2*128*127 = 32512.
 * Micro-kernel: 4 rows x 1 token (16 ymm registers do not hold more); the
 * token loop is inside the row block so the 4 weight rows stay in L1.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/quant_blocks.h"

#include "kernels/force_inline.h"
#define ALWAYS_INLINE LKV_FORCE_INLINE

static ALWAYS_INLINE float h2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static ALWAYS_INLINE float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 16 bytes of nibbles -> 32 unsigned bytes in element order [lo | hi]. */
static ALWAYS_INLINE __m256i nibbles(const uint8_t *qs) {
    __m128i v = _mm_loadu_si128((const __m128i *)qs);
    __m256i z = _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1);
    return _mm256_and_si256(z, _mm256_set1_epi8(0x0f));
}

static ALWAYS_INLINE __m256 dot_u8s8(__m256i u, __m256i s) {
    __m256i p = _mm256_maddubs_epi16(u, s);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

enum { FMT_Q4_0, FMT_Q4_1, FMT_Q8_0 };

/* 4 rows x 1 token. */
static ALWAYS_INLINE void kern(int fmt, const uint8_t *const w[4], int64_t nb,
                               const lkv_act_q8 *a, float out[4]) {
    const size_t bs = fmt == FMT_Q8_0 ? sizeof(lkv_block_q8_0)
                      : fmt == FMT_Q4_1 ? sizeof(lkv_block_q4_1)
                                        : sizeof(lkv_block_q4_0);
    __m256 acc[4];
    float msum[4] = {0, 0, 0, 0};
    for (int r = 0; r < 4; r++)
        acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const lkv_act_q8 *ab = a + b;
        __m256i xq = _mm256_loadu_si256((const __m256i *)ab->qs);
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const uint8_t *p = w[r] + (size_t)b * bs;
            float wd = h2f(p);
            __m256 f;
            if (fmt == FMT_Q8_0) {
                __m256i q = _mm256_loadu_si256((const __m256i *)(p + 2));
                f = dot_u8s8(_mm256_abs_epi8(q), _mm256_sign_epi8(xq, q));
            } else if (fmt == FMT_Q4_1) {
                f = dot_u8s8(nibbles(p + 4), xq);
                msum[r] += h2f(p + 2) * ab->s;
            } else {
                f = dot_u8s8(nibbles(p + 2), xq);
                msum[r] -= 8.0f * wd * ab->s;
            }
            acc[r] = _mm256_fmadd_ps(f, _mm256_set1_ps(wd * ab->d), acc[r]);
        }
    }
    for (int r = 0; r < 4; r++)
        out[r] = hsum(acc[r]) + msum[r];
}

static ALWAYS_INLINE void rows_common(int fmt, const void *w, size_t wrb, int64_t cols,
                                      int64_t r0, int64_t r1, const void *act, size_t as,
                                      int n_tok, float *y, size_t ldy) {
    int64_t nb = cols / LKV_QK;
    for (int64_t r = r0; r < r1; r += 4) {
        int nr = r1 - r < 4 ? (int)(r1 - r) : 4;
        const uint8_t *wr[4];
        for (int i = 0; i < 4; i++)
            wr[i] = (const uint8_t *)w + (size_t)(r + (i < nr ? i : nr - 1)) * wrb;
        for (int t = 0; t < n_tok; t++) {
            float out[4];
            kern(fmt, wr, nb, (const lkv_act_q8 *)((const uint8_t *)act + (size_t)t * as), out);
            for (int i = 0; i < nr; i++)
                y[(size_t)t * ldy + (size_t)(r + i)] = out[i];
        }
    }
}

static void rows_q4_0(const void *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1,
                      const void *act, size_t as, int n_tok, float *y, size_t ldy) {
    rows_common(FMT_Q4_0, w, wrb, cols, r0, r1, act, as, n_tok, y, ldy);
}
static void rows_q4_1(const void *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1,
                      const void *act, size_t as, int n_tok, float *y, size_t ldy) {
    rows_common(FMT_Q4_1, w, wrb, cols, r0, r1, act, as, n_tok, y, ldy);
}
static void rows_q8_0(const void *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1,
                      const void *act, size_t as, int n_tok, float *y, size_t ldy) {
    rows_common(FMT_Q8_0, w, wrb, cols, r0, r1, act, as, n_tok, y, ldy);
}

static void set(lkv_kernel_table *t, int type, lkv_qmm_rows_fn r) {
    t->qmm[type].quantize = lkv_qact_q8_ref; /* same layout as the reference */
    t->qmm[type].rows = r;
    t->qmm[type].isa = LKV_ISA_AVX2;
    t->qmm[type].variant = "avx2";
}

void lkv_kernels_init_quant_avx2(lkv_kernel_table *t) {
    set(t, LKV_Q_Q4_0, rows_q4_0);
    set(t, LKV_Q_Q4_1, rows_q4_1);
    set(t, LKV_Q_Q8_0, rows_q8_0);
}
