/* attn_avx512.h -- private helpers of the AVX-512 (F/BW/DQ/VL) attention
 * kernels: 16-lane K/V loads that convert to f32, exp, soft-cap, key masks.
 * Only files under x86/avx512/ include this header. The kernels have the same
 * two shapes as the AVX2 ones (attn_rows.c: few rows, up to 64 keys per block;
 * attn_tile.c: many rows, 12 x 32 micro-GEMMs), for head dims that are a
 * multiple of 16 (the rows path also takes a last half vector: any multiple of
 * 8); other head dims go to the AVX2 tile kernels (attn.c).
 */
#ifndef LKV_X86_AVX512_ATTN_AVX512_H
#define LKV_X86_AVX512_ATTN_AVX512_H

#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "kernels/kernels.h"

#include "kernels/force_inline.h"
#define AVX512_INLINE static LKV_FORCE_INLINE

static inline size_t avx512_kv_stride(const lkv_attn_block *b) {
    return b->kv_stride ? b->kv_stride : (size_t)b->d;
}

static inline const float *avx512_query_row(const lkv_attn_block *b, int r) {
    return b->q + (size_t)(r / b->G) * b->q_stride + (size_t)(r % b->G) * (size_t)b->d;
}

static inline int32_t avx512_key_pos(const lkv_kv_run *run, int t) {
    return run->pos ? run->pos[t] : run->pos0 + t;
}

static inline size_t avx512_dtype_bytes(lkv_dtype dt) {
    return dt == LKV_DTYPE_F32 ? 4 : 2;
}

AVX512_INLINE const void *avx512_elem(const void *base, size_t i, lkv_dtype dt) {
    return (const char *)base + i * avx512_dtype_bytes(dt);
}

/* 1 if no query row in tokens [tok0, tok1) can see a key in [pk_first, pk_last]. */
static inline int avx512_span_masked(const lkv_attn_block *b, int tok0, int tok1,
                                     int32_t pk_first, int32_t pk_last) {
    int32_t q_first = b->q_pos[tok0], q_last = b->q_pos[tok1 - 1];
    if (b->causal && pk_first > q_last)
        return 1;
    if (b->window > 0 && pk_first >= b->n_sink && (int64_t)q_first - pk_last >= b->window)
        return 1;
    return 0;
}

/* 1 if every query row in tokens [tok0, tok1) sees every key in [pk_first, pk_last]. */
static inline int avx512_span_visible(const lkv_attn_block *b, int tok0, int tok1,
                                      int32_t pk_first, int32_t pk_last) {
    int32_t q_first = b->q_pos[tok0], q_last = b->q_pos[tok1 - 1];
    if (b->causal && pk_last > q_first)
        return 0;
    if (b->window > 0 && pk_last >= b->n_sink && (int64_t)q_last - pk_first >= b->window)
        return 0;
    return 1;
}

/* A run no row of [tok0, tok1) tokens needs: empty, masked whole, or (in the
 * observer pass, lse) without an observer array. */
static inline int avx512_run_unused(const lkv_attn_block *b, const lkv_kv_run *run,
                                    const float *lse, int tok0, int tok1) {
    return run->n <= 0 || (lse && !run->obs) ||
           avx512_span_masked(b, tok0, tok1, avx512_key_pos(run, 0), avx512_key_pos(run, run->n - 1));
}

/* 16 elements of a K/V row at element index i, converted to f32 (f16 with
 * vcvtph2ps, bf16 by widening and shifting into the high half). */
AVX512_INLINE __m512 avx512_load16(const void *base, size_t i, lkv_dtype dt) {
    if (dt == LKV_DTYPE_F16)
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)base + i)));
    if (dt == LKV_DTYPE_BF16) {
        __m512i w = _mm512_cvtepu16_epi32(
            _mm256_loadu_si256((const __m256i *)((const uint16_t *)base + i)));
        return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
    }
    return _mm512_loadu_ps((const float *)base + i);
}

/* 8 elements (for the 8 x 8 transposes of the tile packing). */
AVX512_INLINE __m256 avx512_load8(const void *base, size_t i, lkv_dtype dt) {
    if (dt == LKV_DTYPE_F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)));
    if (dt == LKV_DTYPE_BF16) {
        __m256i w = _mm256_cvtepu16_epi32(
            _mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
    }
    return _mm256_loadu_ps((const float *)base + i);
}

/* e^x for x <= 88: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial (relative
 * error ~2e-7), then scalef by 2^n. Inputs below -87.33 (and -inf) give 0. */
AVX512_INLINE __m512 avx512_exp(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.33654f);
    __mmask16 keep = _mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ);
    x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(keep, p, n);
}

/* Folds one key block's logits into the online-softmax state: the contract of
 * avx2_softmax_fold (x86/avx2/attn_avx2.h) for a block of n_vec x 16 keys.
 * Row r's logits are s[u * s_stride + r] (u < n_vec); its probabilities go to
 * p[r * p_stride + 16 u ...]. One max, one exp pass and one state update per
 * row for the whole block, whatever n_vec is. Returns 0 if no row saw a key,
 * else 1, | 2 if some alpha is not 1 (acc must be rescaled). */
AVX512_INLINE int avx512_softmax_fold_n(const lkv_attn_block *b, int r0, int R, const __m512 *s,
                                        int s_stride, int n_vec, float *p, int p_stride,
                                        float *alpha, float **acc) {
    int any = 0, rescale = 0;
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        int row = r0 + r;
        acc[r] = b->acc + (size_t)row * b->d;
        alpha[r] = 1.0f;
        __m512 mx = s[r];
        for (int u = 1; u < n_vec; u++)
            mx = _mm512_max_ps(mx, s[u * s_stride + r]);
        float bm = _mm512_reduce_max_ps(mx);
        if (bm == -INFINITY) { /* the row sees no key of the block */
            for (int u = 0; u < n_vec; u++)
                _mm512_store_ps(p + (size_t)r * p_stride + 16 * u, _mm512_setzero_ps());
            continue;
        }
        float m_old = b->m[row], m_new = m_old > bm ? m_old : bm;
        if (m_new > m_old) {
            alpha[r] = expf(m_old - m_new); /* 0 when m was -inf */
            rescale = 1;
        }
        const __m512 mv = _mm512_set1_ps(m_new);
        __m512 sum = _mm512_setzero_ps();
        for (int u = 0; u < n_vec; u++) {
            __m512 pv = avx512_exp(_mm512_sub_ps(s[u * s_stride + r], mv));
            _mm512_store_ps(p + (size_t)r * p_stride + 16 * u, pv);
            sum = _mm512_add_ps(sum, pv);
        }
        b->l[row] = b->l[row] * alpha[r] + _mm512_reduce_add_ps(sum);
        b->m[row] = m_new;
        any = 1;
    }
    return any ? 1 | (rescale << 1) : 0;
}

/* The same for one vector of 16 keys per row: s[r], p[r][16]. */
AVX512_INLINE int avx512_softmax_fold(const lkv_attn_block *b, int r0, int R, const __m512 *s,
                                      float (*p)[16], float *alpha, float **acc) {
    return avx512_softmax_fold_n(b, r0, R, s, 0, 1, &p[0][0], 16, alpha, acc);
}

/* Dot products of one query with four keys, each accumulated as 16 partial
 * sums (a0..a3), reduced to [k0 x4 | k1 x4 | k2 x4 | k3 x4] (4 partials each). */
static inline __m512 avx512_reduce_quad(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    /* [k0 x8 | k1 x8] and [k2 x8 | k3 x8], then [k0 x4 | k1 x4 | k2 x4 | k3 x4] */
    __m512 x = _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, 0x44), _mm512_shuffle_f32x4(a0, a1, 0xEE));
    __m512 y = _mm512_add_ps(_mm512_shuffle_f32x4(a2, a3, 0x44), _mm512_shuffle_f32x4(a2, a3, 0xEE));
    return _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x88), _mm512_shuffle_f32x4(x, y, 0xDD));
}

/* Pairwise sums inside 128-bit lanes: [a0+a1, a2+a3, b0+b1, b2+b3] per lane. */
static inline __m512 avx512_hadd_lanes(__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x88), _mm512_shuffle_ps(a, b, 0xDD));
}

/* Four reduce_quad results (keys 0-3, 4-7, 8-11, 12-15) to one dot product per
 * lane, lane j = key j. */
static inline __m512 avx512_keys16(__m512 t0, __m512 t1, __m512 t2, __m512 t3) {
    /* before the permute, lane 4L + m holds key 4m + L */
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_ps(order, avx512_hadd_lanes(avx512_hadd_lanes(t0, t1),
                                                          avx512_hadd_lanes(t2, t3)));
}

/* The same 16-key reduction with few lane-crossing shuffles (on Zen 5 those
 * compete with the FMAs for the same two pipes, while in-lane shuffles and
 * blends do not): avx512_quad_lanes reduces inside 128-bit lanes, then
 * avx512_lanes_pair and avx512_lanes_final sum the four lanes. */

/* Four keys' accumulators to lane L = [k0 | k1 | k2 | k3] partial sums (of
 * the elements of lane L), with in-lane shuffles only. */
static inline __m512 avx512_quad_lanes(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    __m512 s01 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
    __m512 s23 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    return _mm512_add_ps(_mm512_shuffle_ps(s01, s23, 0x44), _mm512_shuffle_ps(s01, s23, 0xEE));
}

/* Two quad_lanes results (keys 0-3 in x, 4-7 in y) to [x L0+L2 | x L1+L3 |
 * y L0+L2 | y L1+L3]: one lane-crossing shuffle and one blend. */
static inline __m512 avx512_lanes_pair(__m512 x, __m512 y) {
    return _mm512_add_ps(_mm512_mask_blend_ps(0xFF00, x, y),
                         _mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(1, 0, 3, 2)));
}

/* Two lanes_pair results (keys 0-7, 8-15) to one dot product per lane, lane j = key j. */
static inline __m512 avx512_lanes_final(__m512 x, __m512 y) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x88), _mm512_shuffle_f32x4(x, y, 0xDD));
}

/* cap * tanh(s / cap), tanh|x| = (1 - e^-2|x|) / (1 + e^-2|x|). */
AVX512_INLINE __m512 avx512_softcap(__m512 s, float cap) {
    __m512 x = _mm512_div_ps(s, _mm512_set1_ps(cap));
    __m512 ax = _mm512_abs_ps(x);
    __m512 e = avx512_exp(_mm512_mul_ps(ax, _mm512_set1_ps(-2.0f)));
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 t = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
    __m512 sign = _mm512_castsi512_ps(
        _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u)));
    return _mm512_mul_ps(_mm512_or_ps(t, sign), _mm512_set1_ps(cap));
}

/* Logits of one row for 16 keys: scale, soft-cap, then -inf where vis is 0. */
AVX512_INLINE __m512 avx512_finish_logits(const lkv_attn_block *b, __m512 dot, __mmask16 vis) {
    __m512 s = _mm512_mul_ps(dot, _mm512_set1_ps(b->scale));
    if (b->softcap > 0.0f)
        s = avx512_softcap(s, b->softcap);
    return _mm512_mask_blend_ps(vis, _mm512_set1_ps(-INFINITY), s);
}

/* Lanes j < nk of 16. */
static inline __mmask16 avx512_first(int nk) {
    return nk >= 16 ? (__mmask16)0xFFFF : nk <= 0 ? (__mmask16)0 : (__mmask16)((1u << nk) - 1);
}

/* Lanes where key j (< nk, positions pk) is visible to query pq. */
AVX512_INLINE __mmask16 avx512_visible16(const lkv_attn_block *b, int32_t pq, __m512i pk, int nk) {
    __mmask16 vis = avx512_first(nk);
    __m512i q = _mm512_set1_epi32(pq);
    if (b->causal)
        vis &= _mm512_cmple_epi32_mask(pk, q);
    if (b->window > 0) {
        /* visible iff pq - pk < window or pk < n_sink (positions below 2^30) */
        __mmask16 in_win = _mm512_cmplt_epi32_mask(_mm512_sub_epi32(q, pk),
                                                   _mm512_set1_epi32(b->window));
        __mmask16 sink = _mm512_cmplt_epi32_mask(pk, _mm512_set1_epi32(b->n_sink));
        vis &= (__mmask16)(in_win | sink);
    }
    return vis;
}

/* Positions of keys t0 .. t0+nk-1 of a run (lanes >= nk unspecified). */
AVX512_INLINE __m512i avx512_key_pos16(const lkv_kv_run *run, int t0, int nk) {
    if (!run->pos)
        return _mm512_add_epi32(_mm512_set1_epi32(run->pos0 + t0),
                                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                                                  14, 15));
    return _mm512_maskz_loadu_epi32(avx512_first(nk), run->pos + t0);
}

/* Keys [t0, t0 + nk) of a run against the rows of tokens [tok0, tok1):
 * returns 0 when every key is masked for every row; else 1, with *need_mask
 * set when some key is masked for some row, and then *pk their positions. */
AVX512_INLINE int avx512_block_mask(const lkv_attn_block *b, const lkv_kv_run *run, int t0, int nk,
                                    int tok0, int tok1, int *need_mask, __m512i *pk) {
    *need_mask = 0;
    *pk = _mm512_setzero_si512();
    if (!b->causal && b->window <= 0)
        return 1;
    int32_t pf = avx512_key_pos(run, t0), pl = avx512_key_pos(run, t0 + nk - 1);
    if (avx512_span_masked(b, tok0, tok1, pf, pl))
        return 0;
    *need_mask = !avx512_span_visible(b, tok0, tok1, pf, pl);
    if (*need_mask)
        *pk = avx512_key_pos16(run, t0, nk);
    return 1;
}

#include "kernels/x86/avx512/attn_decl.h"

#endif
