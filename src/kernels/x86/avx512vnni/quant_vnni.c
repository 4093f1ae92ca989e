/* quant_vnni.c -- AVX-512 (F/BW/VL) + VNNI weight products for the 32-element
 * formats Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 (SmolLM2's Q4_1 file uses Q4_1 and
 * Q8_0); the k-quants are in quant_vnni_k.c. Registered only when the CPU has
 * AVX512_VNNI (x86/avx512/init.c checks).
 *
 * Work unit: a pair of 32-element blocks (A, B) = 64 int8 lanes = one zmm, so
 * one vpdpbusd does 64 multiply-adds. Our activation layout is arranged so the
 * weights need no shuffles:
 *
 *   nibble formats (Q4_0, Q4_1, Q5_0, Q5_1), per pair, 192 bytes:
 *     int8  q[64]   [A0..15, B0..15, A16..31, B16..31]   (matches lo/hi nibbles)
 *     float d[16]   [dA x4, dB x4, dA x4, dB x4]          (scale of each int32 lane)
 *     float s[16]   [sA/8 x4, sB/8 x4, ...] with s = d*sum(q): the min term of
 *                   Q4_1/Q5_1 and the -8/-16 offset of Q4_0/Q5_0 are w_m * s
 *   Q8_0, per pair, 192 bytes:
 *     int8  q[64]     [A0..31, B0..31]
 *     float d[16]     [dA x8, dB x8]
 *     int32 negc[16]  -128 * (sum of each lane's 4 values): vpdpbusd needs one
 *                     unsigned side, so the weights enter as w + 128 and each
 *                     lane starts from this value to cancel the extra 128 * x
 * An odd last block is paired with a zero block (B's weight pointer = A's,
 * its activations and scales zero), so every row is whole pairs.
 *
 * Micro-kernel: 4 rows x T tokens (T = 1, 2, 4): each weight pair is decoded
 * once for T tokens (prefill), accumulators stay in registers.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/quant_blocks.h"

#include "kernels/force_inline.h"
#define ALWAYS_INLINE LKV_FORCE_INLINE

void lkv_kernels_init_quant_avx512vnni_k(lkv_kernel_table *t);

typedef struct { int8_t q[64]; float d[16]; float s[16]; } act_nib;   /* 192 B */
typedef struct { int8_t q[64]; float d[16]; int32_t negc[16]; } act_q8; /* 192 B */
_Static_assert(sizeof(act_nib) == 192, "act_nib");
_Static_assert(sizeof(act_q8) == 192, "act_q8");

/* ------------------------------------------------ activation quantization */

/* amax -> (d, 127/amax) exactly as the reference: d = amax/127, id = 127/amax. */
static ALWAYS_INLINE void block_scale(float amax, float *d, float *id) {
    *d = amax / 127.0f;
    *id = amax != 0.0f ? 127.0f / amax : 0.0f;
}

/* Quantizes 32 floats to int8 (round half to even, clamped like the reference),
 * returns the int8 vector (32 lanes) and the integer sum. */
static ALWAYS_INLINE __m256i quant32(const float *x, float *d_out, int *sum_out) {
    __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
    __m512 m = _mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b));
    float amax = _mm512_reduce_max_ps(m);
    float d, id;
    block_scale(amax, &d, &id);
    __m512 vid = _mm512_set1_ps(id);
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    __m512 ra = _mm512_roundscale_ps(_mm512_mul_ps(a, vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 rb = _mm512_roundscale_ps(_mm512_mul_ps(b, vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    ra = _mm512_min_ps(_mm512_max_ps(ra, lo), hi);
    rb = _mm512_min_ps(_mm512_max_ps(rb, lo), hi);
    __m512i ia = _mm512_cvtps_epi32(ra), ib = _mm512_cvtps_epi32(rb);
    *sum_out = _mm512_reduce_add_epi32(_mm512_add_epi32(ia, ib));
    *d_out = d;
    __m128i qa = _mm512_cvtsepi32_epi8(ia), qb = _mm512_cvtsepi32_epi8(ib);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(qa), qb, 1);
}

static void qact_nib(const float *x, int64_t cols, void *act) {
    act_nib *p = act;
    int64_t nb = cols / LKV_QK;
    for (int64_t b = 0; b < nb; b += 2, p++) {
        float dA, dB = 0.0f;
        int sA, sB = 0;
        __m256i qA = quant32(x + 32 * b, &dA, &sA), qB = _mm256_setzero_si256();
        if (b + 1 < nb)
            qB = quant32(x + 32 * (b + 1), &dB, &sB);
        /* [A0..15, B0..15, A16..31, B16..31] */
        __m256i lo = _mm256_permute2x128_si256(qA, qB, 0x20);
        __m256i hi = _mm256_permute2x128_si256(qA, qB, 0x31);
        _mm256_storeu_si256((__m256i *)p->q, lo);
        _mm256_storeu_si256((__m256i *)(p->q + 32), hi);
        float fsA = dA * (float)sA * 0.125f, fsB = dB * (float)sB * 0.125f;
        for (int i = 0; i < 16; i++) {
            int isB = (i >> 2) & 1;
            p->d[i] = isB ? dB : dA;
            p->s[i] = isB ? fsB : fsA;
        }
    }
}

static void qact_q8(const float *x, int64_t cols, void *act) {
    act_q8 *p = act;
    int64_t nb = cols / LKV_QK;
    const __m512i ones = _mm512_set1_epi8(1);
    for (int64_t b = 0; b < nb; b += 2, p++) {
        float dA, dB = 0.0f;
        int sA, sB = 0;
        __m256i qA = quant32(x + 32 * b, &dA, &sA), qB = _mm256_setzero_si256();
        if (b + 1 < nb)
            qB = quant32(x + 32 * (b + 1), &dB, &sB);
        __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(qA), qB, 1);
        _mm512_storeu_si512((void *)p->q, q);
        /* -128 * (sum of each lane's 4 activations): the weights are used as
         * w + 128 (unsigned), and this start value removes the extra 128 * x */
        __m512i s4 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, q);
        _mm512_storeu_si512((void *)p->negc, _mm512_sub_epi32(_mm512_setzero_si512(),
                                                             _mm512_slli_epi32(s4, 7)));
        for (int i = 0; i < 16; i++)
            p->d[i] = i < 8 ? dA : dB;
    }
}

/* ------------------------------------------------------ weight decoding */

/* Two f16 values -> zmm lanes [a x4, b x4, a x4, b x4] or [a x8, b x8]. */
static ALWAYS_INLINE __m512 expand2(uint16_t a, uint16_t b, __m512i idx) {
    __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)a | ((uint32_t)b << 16))));
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(f));
}

/* Nibbles of blocks A and B -> [loA, loB, hiA, hiB] as unsigned bytes. */
static ALWAYS_INLINE __m512i nibbles_pair(const uint8_t *qa, const uint8_t *qb) {
    __m256i ab = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)qa)),
        _mm_loadu_si128((const __m128i *)qb), 1);
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(ab), _mm256_srli_epi16(ab, 4), 1);
    return _mm512_and_si512(z, _mm512_set1_epi8(0x0f));
}

/* --------------------------------------------------------- micro-kernels */

enum { FMT_Q4_0, FMT_Q4_1, FMT_Q5_0, FMT_Q5_1, FMT_Q8_0 };

/* The 5th bits of blocks A and B (qh, bit j = element j) as a byte mask in
 * the pair order [A0..15, B0..15, A16..31, B16..31]. */
static ALWAYS_INLINE __mmask64 fifth_bits(const uint8_t *qha, const uint8_t *qhb) {
    uint32_t a, b;
    memcpy(&a, qha, 4);
    memcpy(&b, qhb, 4);
    return (__mmask64)((uint64_t)(a & 0xffff) | ((uint64_t)(b & 0xffff) << 16) |
                       ((uint64_t)(a >> 16) << 32) | ((uint64_t)(b >> 16) << 48));
}

/* Q4_0 / Q4_1 / Q5_0 / Q5_1: 4 rows x T tokens. w[r] points at row r's
 * blocks; a[t] at token t's pairs; out[r][t] receives the dots. Weights are
 * used unsigned (q in 0..15 or 0..31); the offset of Q4_0 / Q5_0 (8 or 16) and
 * the min of Q4_1 / Q5_1 enter through the per-block activation sums. */
static ALWAYS_INLINE void kern_nib(int T, int fmt, const uint8_t *const w[4], int64_t nb,
                                   const act_nib *const a[4], float out[4][4], size_t pf) {
    const int has_m = fmt == FMT_Q4_1 || fmt == FMT_Q5_1;
    const int has_qh = fmt == FMT_Q5_0 || fmt == FMT_Q5_1;
    const size_t bs = fmt == FMT_Q4_0   ? sizeof(lkv_block_q4_0)
                      : fmt == FMT_Q4_1 ? sizeof(lkv_block_q4_1)
                      : fmt == FMT_Q5_0 ? sizeof(lkv_block_q5_0)
                                        : sizeof(lkv_block_q5_1);
    const size_t qhoff = has_m ? 4 : 2;            /* Q5_x: qh after the scales */
    const size_t qoff = qhoff + (has_qh ? 4 : 0);  /* nibbles */
    const float offset = fmt == FMT_Q4_0 ? -8.0f : -16.0f;
    const __m512i idx = _mm512_set_epi32(2, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0);
    const __m512i idxm = _mm512_set_epi32(3, 3, 3, 3, 1, 1, 1, 1, 3, 3, 3, 3, 1, 1, 1, 1);
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            acc[r][t] = _mm512_setzero_ps();
    for (int64_t b = 0, p = 0; b < nb; b += 2, p++) {
        size_t offA = (size_t)b * bs, offB = b + 1 < nb ? offA + bs : offA;
        __m512i z[4];
        __m512 wd[4], wm[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const uint8_t *pa = w[r] + offA, *pb = w[r] + offB;
            _mm_prefetch((const char *)pa + pf, _MM_HINT_T0);
            z[r] = nibbles_pair(pa + qoff, pb + qoff);
            if (has_qh)
                z[r] = _mm512_mask_add_epi8(z[r], fifth_bits(pa + qhoff, pb + qhoff), z[r],
                                            _mm512_set1_epi8(0x10));
            /* the first 4 bytes of each block: [d, m] (or d and junk) */
            uint32_t hA, hB;
            memcpy(&hA, pa, 4);
            memcpy(&hB, pb, 4);
            __m512 f5 = _mm512_castps128_ps512(
                _mm_cvtph_ps(_mm_insert_epi32(_mm_cvtsi32_si128((int)hA), (int)hB, 1)));
            /* f5 = [dA, mA, dB, mB] */
            wd[r] = _mm512_permutexvar_ps(idx, f5);
            if (has_m)
                wm[r] = _mm512_permutexvar_ps(idxm, f5);
            else
                wm[r] = _mm512_mul_ps(wd[r], _mm512_set1_ps(offset));
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const act_nib *ap = a[t] + p;
            __m512i xq = _mm512_loadu_si512((const void *)ap->q);
            __m512 xd = _mm512_loadu_ps(ap->d), xs = _mm512_loadu_ps(ap->s);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), z[r], xq);
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(wd[r], xd),
                                            acc[r][t]);
                acc[r][t] = _mm512_fmadd_ps(wm[r], xs, acc[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            out[r][t] = _mm512_reduce_add_ps(acc[r][t]);
}

static ALWAYS_INLINE void kern_q8(int T, const uint8_t *const w[4], int64_t nb,
                                  const act_q8 *const a[4], float out[4][4], size_t pf) {
    const size_t bs = sizeof(lkv_block_q8_0);
    const __m512i idx = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i k80 = _mm512_set1_epi8((char)0x80);
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            acc[r][t] = _mm512_setzero_ps();
    for (int64_t b = 0, p = 0; b < nb; b += 2, p++) {
        size_t offA = (size_t)b * bs, offB = b + 1 < nb ? offA + bs : offA;
        __m512i z[4];
        __m512 wd[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            const uint8_t *pa = w[r] + offA, *pb = w[r] + offB;
            _mm_prefetch((const char *)pa + pf, _MM_HINT_T0); /* a pair is 68 bytes */
            _mm_prefetch((const char *)pa + pf + 64, _MM_HINT_T0);
            __m256i qa = _mm256_loadu_si256((const __m256i *)(pa + 2));
            __m256i qb = _mm256_loadu_si256((const __m256i *)(pb + 2));
            /* w + 128 as unsigned bytes (vpdpbusd's unsigned operand) */
            z[r] = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(qa), qb, 1), k80);
            uint32_t hA, hB; /* [d, qs0, qs1]: only d is used */
            memcpy(&hA, pa, 4);
            memcpy(&hB, pb, 4);
            wd[r] = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_cvtph_ps(
                                                   _mm_insert_epi32(_mm_cvtsi32_si128((int)hA), (int)hB, 1))));
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const act_q8 *ap = a[t] + p;
            __m512i xq = _mm512_loadu_si512((const void *)ap->q);
            __m512i nc = _mm512_loadu_si512((const void *)ap->negc);
            __m512 xd = _mm512_loadu_ps(ap->d);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                __m512i dot = _mm512_dpbusd_epi32(nc, z[r], xq);
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(wd[r], xd),
                                            acc[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            out[r][t] = _mm512_reduce_add_ps(acc[r][t]);
}

/* ------------------------------------------------------------ row drivers */

/* Token chunk: the activations of this many tokens stay in L2 while the row
 * range sweeps over them. */
#define TOK_CHUNK 64

static ALWAYS_INLINE void rows_common(int fmt, const void *w, size_t wrb, int64_t cols,
                                      int64_t r0, int64_t r1, const void *act, size_t as,
                                      int n_tok, float *y, size_t ldy) {
    int64_t nb = cols / LKV_QK;
    for (int tc = 0; tc < n_tok; tc += TOK_CHUNK) {
        int tc_end = tc + TOK_CHUNK < n_tok ? tc + TOK_CHUNK : n_tok;
        for (int64_t r = r0; r < r1; r += 4) {
            int nr = r1 - r < 4 ? (int)(r1 - r) : 4;
            const uint8_t *wr[4];
            for (int i = 0; i < 4; i++) /* a short tail repeats the last row */
                wr[i] = (const uint8_t *)w + (size_t)(r + (i < nr ? i : nr - 1)) * wrb;
            for (int t = tc; t < tc_end;) {
                int left = tc_end - t;
                int T = left >= 4 ? 4 : left == 1 ? 1 : left == 2 ? 2 : 4;
                int nt = left < T ? left : T;
                const void *ap[4];
                for (int i = 0; i < 4; i++)
                    ap[i] = (const uint8_t *)act + (size_t)(t + (i < nt ? i : nt - 1)) * as;
                float out[4][4];
                /* prefetch a later 4-row group, >= 3 KB ahead so short rows still
                 * cover the DRAM latency (prefetches never fault) */
                size_t pf = 4 * wrb * ((3072 + 4 * wrb - 1) / (4 * wrb));
                if (fmt == FMT_Q8_0) {
                    const act_q8 *const *a = (const act_q8 *const *)ap;
                    if (T == 1)
                        kern_q8(1, wr, nb, a, out, pf);
                    else if (T == 2)
                        kern_q8(2, wr, nb, a, out, pf);
                    else
                        kern_q8(4, wr, nb, a, out, pf);
                } else {
                    const act_nib *const *a = (const act_nib *const *)ap;
                    if (T == 1)
                        kern_nib(1, fmt, wr, nb, a, out, pf);
                    else if (T == 2)
                        kern_nib(2, fmt, wr, nb, a, out, pf);
                    else
                        kern_nib(4, fmt, wr, nb, a, out, pf);
                }
                for (int i = 0; i < nr; i++)
                    for (int j = 0; j < nt; j++)
                        y[(size_t)(t + j) * ldy + (size_t)(r + i)] = out[i][j];
                t += nt;
            }
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
static void rows_q5_0(const void *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1,
                      const void *act, size_t as, int n_tok, float *y, size_t ldy) {
    rows_common(FMT_Q5_0, w, wrb, cols, r0, r1, act, as, n_tok, y, ldy);
}
static void rows_q5_1(const void *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1,
                      const void *act, size_t as, int n_tok, float *y, size_t ldy) {
    rows_common(FMT_Q5_1, w, wrb, cols, r0, r1, act, as, n_tok, y, ldy);
}
static void rows_q8_0(const void *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1,
                      const void *act, size_t as, int n_tok, float *y, size_t ldy) {
    rows_common(FMT_Q8_0, w, wrb, cols, r0, r1, act, as, n_tok, y, ldy);
}

static void set(lkv_kernel_table *t, int type, lkv_qact_fn q, lkv_qmm_rows_fn r) {
    t->qmm[type].quantize = q;
    t->qmm[type].rows = r;
    t->qmm[type].isa = LKV_ISA_AVX512VNNI;
    t->qmm[type].variant = "avx512vnni";
}

void lkv_kernels_init_quant_avx512vnni(lkv_kernel_table *t) {
    set(t, LKV_Q_Q4_0, qact_nib, rows_q4_0);
    set(t, LKV_Q_Q4_1, qact_nib, rows_q4_1);
    set(t, LKV_Q_Q5_0, qact_nib, rows_q5_0);
    set(t, LKV_Q_Q5_1, qact_nib, rows_q5_1);
    set(t, LKV_Q_Q8_0, qact_q8, rows_q8_0);
    lkv_kernels_init_quant_avx512vnni_k(t); /* k-quants (quant_vnni_k.c) */
}
