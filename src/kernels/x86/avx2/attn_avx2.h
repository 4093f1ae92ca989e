/* attn_avx2.h -- private helpers of the AVX2+FMA+F16C attention kernels:
 * K/V loads that convert to f32, a vectorised exp, the soft-cap, key masks and
 * the transpose-reduce of eight dot products. Only files under x86/avx2/ (built
 * with -mavx2 -mfma -mf16c) include this header.
 *
 * The kernels come in two shapes (see attn_rows.c and attn_tile.c):
 *   rows: few query rows (decode); dot products along d, reduced 8 keys at a time.
 *   tile: many query rows (prefill); Q.K^T and P.V as register-blocked GEMMs on
 *         K/V tiles converted once to f32.
 * Both are written once as inline functions of a constant dtype; the entry
 * points at the bottom of each file instantiate them per dtype.
 */
#ifndef LKV_X86_AVX2_ATTN_AVX2_H
#define LKV_X86_AVX2_ATTN_AVX2_H

#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "kernels/kernels.h"

#include "kernels/force_inline.h"
#define AVX2_INLINE static LKV_FORCE_INLINE

/* ------------------------------------------------------------ block info */

static inline size_t avx2_kv_stride(const lkv_attn_block *b) {
    return b->kv_stride ? b->kv_stride : (size_t)b->d;
}

static inline const float *avx2_query_row(const lkv_attn_block *b, int r) {
    return b->q + (size_t)(r / b->G) * b->q_stride + (size_t)(r % b->G) * (size_t)b->d;
}

static inline int32_t avx2_key_pos(const lkv_kv_run *run, int t) {
    return run->pos ? run->pos[t] : run->pos0 + t;
}

/* 1 if no query row in tokens [tok0, tok1) can see a key in [pk_first, pk_last]
 * (conservative: 0 means "maybe visible"). */
static inline int avx2_span_masked(const lkv_attn_block *b, int tok0, int tok1,
                                   int32_t pk_first, int32_t pk_last) {
    int32_t q_first = b->q_pos[tok0], q_last = b->q_pos[tok1 - 1];
    if (b->causal && pk_first > q_last)
        return 1;
    if (b->window > 0 && pk_first >= b->n_sink && (int64_t)q_first - pk_last >= b->window)
        return 1;
    return 0;
}

/* 1 if every query row in tokens [tok0, tok1) sees every key in [pk_first, pk_last]. */
static inline int avx2_span_visible(const lkv_attn_block *b, int tok0, int tok1,
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
static inline int avx2_run_unused(const lkv_attn_block *b, const lkv_kv_run *run, const float *lse,
                                  int tok0, int tok1) {
    return run->n <= 0 || (lse && !run->obs) ||
           avx2_span_masked(b, tok0, tok1, avx2_key_pos(run, 0), avx2_key_pos(run, run->n - 1));
}

/* --------------------------------------------------------- K/V loading */

/* 8 elements of a K/V row at element index i, converted to f32. */
AVX2_INLINE __m256 avx2_load8(const void *base, size_t i, lkv_dtype dt) {
    if (dt == LKV_DTYPE_F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)));
    if (dt == LKV_DTYPE_BF16) {
        __m256i w = _mm256_cvtepu16_epi32(
            _mm_loadu_si128((const __m128i *)((const uint16_t *)base + i)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
    }
    return _mm256_loadu_ps((const float *)base + i);
}

static inline size_t avx2_dtype_bytes(lkv_dtype dt) {
    return dt == LKV_DTYPE_F32 ? 4 : 2;
}

/* Pointer to element index i of a K/V array of dtype dt. */
AVX2_INLINE const void *avx2_elem(const void *base, size_t i, lkv_dtype dt) {
    return (const char *)base + i * avx2_dtype_bytes(dt);
}

/* ----------------------------------------------------------------- math */

/* e^x for x <= 88 (the kernels only take exp of differences <= 0). Range
 * reduction x = n ln2 + r, |r| <= ln2/2, then a degree-6 polynomial: relative
 * error ~2e-7. Inputs below -87.33 (including -inf) give exactly 0. */
AVX2_INLINE __m256 avx2_exp(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654f);
    __m256 keep = _mm256_cmp_ps(x, lo, _CMP_GE_OQ);
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

/* cap * tanh(s / cap), with tanh|x| = (1 - e^-2|x|) / (1 + e^-2|x|): absolute
 * error ~1e-7 * cap. */
AVX2_INLINE __m256 avx2_softcap(__m256 s, float cap) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 x = _mm256_div_ps(s, _mm256_set1_ps(cap));
    __m256 ax = _mm256_andnot_ps(sign, x);
    __m256 e = avx2_exp(_mm256_mul_ps(ax, _mm256_set1_ps(-2.0f)));
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
    return _mm256_mul_ps(_mm256_or_ps(t, _mm256_and_ps(sign, x)), _mm256_set1_ps(cap));
}

static inline float avx2_hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline float avx2_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Folds one key block's logits s[r] (rows r0 .. r0+R-1) into the online-softmax
 * state: p[r] = exp(s[r] - m_new) (0 for a row that sees no key of the block),
 * alpha[r] = the factor the row's accumulator must be scaled by, acc[r] = the
 * row's accumulator; l and m are updated. Returns 0 when no row sees a key of
 * the block, else 1, plus 2 when some accumulator must be rescaled. */
AVX2_INLINE int avx2_softmax_fold(const lkv_attn_block *b, int r0, int R, const __m256 *s,
                                  float (*p)[8], float *alpha, float **acc) {
    int any = 0, rescale = 0;
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        int row = r0 + r;
        acc[r] = b->acc + (size_t)row * b->d;
        alpha[r] = 1.0f;
        float bm = avx2_hmax(s[r]);
        if (bm == -INFINITY) { /* the row sees no key of the block */
            _mm256_store_ps(p[r], _mm256_setzero_ps());
            continue;
        }
        float m_old = b->m[row], m_new = m_old > bm ? m_old : bm;
        if (m_new > m_old) {
            alpha[r] = expf(m_old - m_new); /* 0 when m was -inf */
            rescale = 1;
        }
        __m256 pv = avx2_exp(_mm256_sub_ps(s[r], _mm256_set1_ps(m_new)));
        _mm256_store_ps(p[r], pv);
        b->l[row] = b->l[row] * alpha[r] + avx2_hsum(pv);
        b->m[row] = m_new;
        any = 1;
    }
    return any ? 1 | (rescale << 1) : 0;
}

/* Logits of one row for 8 keys: scale, soft-cap, then -inf where `vis` is 0. */
AVX2_INLINE __m256 avx2_finish_logits(const lkv_attn_block *b, __m256 dot, __m256 vis) {
    __m256 s = _mm256_mul_ps(dot, _mm256_set1_ps(b->scale));
    if (b->softcap > 0.0f)
        s = avx2_softcap(s, b->softcap);
    return _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), s, vis);
}

/* All-ones lanes where key j (< nk, positions pk) is visible to query pq. */
AVX2_INLINE __m256 avx2_visible8(const lkv_attn_block *b, int32_t pq, __m256i pk, int nk) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i vis = _mm256_cmpgt_epi32(_mm256_set1_epi32(nk), iota);
    __m256i q = _mm256_set1_epi32(pq);
    if (b->causal)
        vis = _mm256_andnot_si256(_mm256_cmpgt_epi32(pk, q), vis);
    if (b->window > 0) {
        /* visible iff pq - pk < window or pk < n_sink; pq - pk computed in 32
         * bits is exact while positions stay below 2^30 */
        __m256i in_win = _mm256_cmpgt_epi32(_mm256_set1_epi32(b->window), _mm256_sub_epi32(q, pk));
        __m256i sink = _mm256_cmpgt_epi32(_mm256_set1_epi32(b->n_sink), pk);
        vis = _mm256_and_si256(vis, _mm256_or_si256(in_win, sink));
    }
    return _mm256_castsi256_ps(vis);
}

/* Positions of keys t0 .. t0+nk-1 of a run (lanes >= nk are unspecified). */
AVX2_INLINE __m256i avx2_key_pos8(const lkv_kv_run *run, int t0, int nk) {
    if (!run->pos)
        return _mm256_add_epi32(_mm256_set1_epi32(run->pos0 + t0),
                                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    if (nk == 8)
        return _mm256_loadu_si256((const __m256i *)(run->pos + t0));
    int32_t tmp[8] = {0};
    for (int j = 0; j < nk; j++)
        tmp[j] = run->pos[t0 + j];
    return _mm256_loadu_si256((const __m256i *)tmp);
}

/* Observer pass: adds exp(s[r] - lse[r]) of R rows (logits s, 8 keys) to mass[8]. */
AVX2_INLINE void avx2_add_mass(const float *lse, int R, const __m256 *s, float *mass) {
    __m256 ms = _mm256_load_ps(mass);
    for (int r = 0; r < R; r++)
        if (lse[r] != -INFINITY) /* the row saw no key at all */
            ms = _mm256_add_ps(ms, avx2_exp(_mm256_sub_ps(s[r], _mm256_set1_ps(lse[r]))));
    _mm256_store_ps(mass, ms);
}

/* Keys [t0, t0 + nk) of a run against the rows of tokens [tok0, tok1):
 * returns 0 when every key is masked for every row; else 1, with *need_mask
 * set when some key is masked for some row, and then *pk their positions. */
AVX2_INLINE int avx2_block_mask(const lkv_attn_block *b, const lkv_kv_run *run, int t0, int nk,
                                int tok0, int tok1, int *need_mask, __m256i *pk) {
    *need_mask = 0;
    *pk = _mm256_setzero_si256();
    if (!b->causal && b->window <= 0)
        return 1;
    int32_t pf = avx2_key_pos(run, t0), pl = avx2_key_pos(run, t0 + nk - 1);
    if (avx2_span_masked(b, tok0, tok1, pf, pl))
        return 0;
    *need_mask = !avx2_span_visible(b, tok0, tok1, pf, pl);
    if (*need_mask)
        *pk = avx2_key_pos8(run, t0, nk);
    return 1;
}

#include "kernels/x86/avx2/attn_decl.h"

#endif
