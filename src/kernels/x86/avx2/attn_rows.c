/* attn_rows.c -- AVX2 attention for few query rows (decode-shaped blocks).
 *
 * Keys stream once from memory in blocks of 8; each block is used by every row
 * of the block (K/V of the block stay in L1 while groups of up to 4 rows visit
 * it). Per row and block:
 *   - 8 dot products q.k_j accumulated along d in 8-lane registers, 2 keys at a
 *     time, then reduced together (transpose-reduce: no per-key horizontal sum);
 *   - one online-softmax update for the 8 keys (max, one rescale of acc/l when
 *     the max grew, vectorised exp);
 *   - acc += sum_j p_j v_j with V rows converted to f32 in registers.
 * Many rows (prefill) are handled in row tiles whose Q stays in L1; the tiled
 * GEMM path (attn_tile.c) is faster there and is chosen by attn.c.
 */
#include "kernels/x86/avx2/attn_avx2.h"

#define GROUP 4           /* rows sharing one pass over a key block */
#define ROW_TILE_FLOATS 8192 /* Q floats kept in L1 while the keys stream */
#define PREFETCH_BYTES 4096  /* software prefetch distance per stream (measured best) */

/* x[r] = [q_r.k0 as 4 partial sums | q_r.k1 as 4 partial sums] for the two
 * keys k0 = k + key*ks and k1 = k0 + ks. */
AVX2_INLINE void pair_dots(const float *const *qr, int R, const void *k, size_t key, size_t ks,
                           int d, lkv_dtype dt, __m256 *x) {
    __m256 a0[GROUP], a1[GROUP];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        a0[r] = a1[r] = _mm256_setzero_ps();
    const size_t k0 = key * ks, k1 = k0 + ks;
    for (int c = 0; c < d; c += 8) {
        __m256 kv0 = avx2_load8(k, k0 + c, dt), kv1 = avx2_load8(k, k1 + c, dt);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m256 qv = _mm256_loadu_ps(qr[r] + c);
            a0[r] = _mm256_fmadd_ps(qv, kv0, a0[r]);
            a1[r] = _mm256_fmadd_ps(qv, kv1, a1[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        x[r] = _mm256_add_ps(_mm256_permute2f128_ps(a0[r], a1[r], 0x20),
                             _mm256_permute2f128_ps(a0[r], a1[r], 0x31));
}

/* out[r] (lane j) = q_r . k_j for 8 consecutive keys k_j = k + j*ks. */
AVX2_INLINE void dots8(const float *const *qr, int R, const void *k, size_t ks, int d,
                       lkv_dtype dt, __m256 *out) {
    __m256 x0[GROUP], x1[GROUP], half[GROUP];
    pair_dots(qr, R, k, 0, ks, d, dt, x0);
    pair_dots(qr, R, k, 2, ks, d, dt, x1);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        half[r] = _mm256_hadd_ps(x0[r], x1[r]); /* keys 0 2 | 1 3, two partials each */
    pair_dots(qr, R, k, 4, ks, d, dt, x0);
    pair_dots(qr, R, k, 6, ks, d, dt, x1);
    /* the hadds leave keys in order 0 2 4 6 1 3 5 7 */
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        out[r] = _mm256_permutevar8x32_ps(
            _mm256_hadd_ps(half[r], _mm256_hadd_ps(x0[r], x1[r])), order);
}

/* The same for nk < 8 keys (the tail of a run); lanes >= nk are 0. */
AVX2_INLINE void dots_tail(const float *const *qr, int R, const void *k, size_t ks, int d,
                           int nk, lkv_dtype dt, __m256 *out) {
    float tmp[GROUP][8] __attribute__((aligned(32))) = {{0}};
    for (int j = 0; j < nk; j++) {
        __m256 a[GROUP];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            a[r] = _mm256_setzero_ps();
        for (int c = 0; c < d; c += 8) {
            __m256 kv = avx2_load8(k, (size_t)j * ks + c, dt);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                a[r] = _mm256_fmadd_ps(_mm256_loadu_ps(qr[r] + c), kv, a[r]);
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            tmp[r][j] = avx2_hsum(a[r]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        out[r] = _mm256_load_ps(tmp[r]);
}

/* Logits (scaled, capped, masked) of rows r0 .. r0+R-1 against one key block. */
AVX2_INLINE void block_logits(const lkv_attn_block *b, int r0, int R, const void *k, size_t ks,
                              int nk, __m256i pk, int need_mask, lkv_dtype dt, __m256 *s) {
    const float *qr[GROUP];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        qr[r] = avx2_query_row(b, r0 + r);
    if (nk == 8)
        dots8(qr, R, k, ks, b->d, dt, s);
    else
        dots_tail(qr, R, k, ks, b->d, nk, dt, s);
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256 in_run = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(nk), iota));
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        __m256 vis = need_mask ? avx2_visible8(b, b->q_pos[(r0 + r) / b->G], pk, nk) : in_run;
        s[r] = avx2_finish_logits(b, s[r], vis);
    }
}

/* acc_r = alpha_r * acc_r + sum_{j < nk} p[r][j] * v_j for R rows, nv (1 or 2)
 * 8-column vectors starting at column c. */
AVX2_INLINE void pv_cols(float *const *acc, int R, const float (*p)[8], const float *alpha,
                         int rescale, const void *v, size_t ks, int nk, int c, int nv,
                         lkv_dtype dt) {
    __m256 a[GROUP][2];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        __m256 al = _mm256_set1_ps(alpha[r]);
        for (int i = 0; i < nv; i++) {
            a[r][i] = _mm256_loadu_ps(acc[r] + c + 8 * i);
            if (rescale)
                a[r][i] = _mm256_mul_ps(a[r][i], al);
        }
    }
    for (int j = 0; j < nk; j++) {
        __m256 vv[2];
        for (int i = 0; i < nv; i++)
            vv[i] = avx2_load8(v, (size_t)j * ks + (size_t)(c + 8 * i), dt);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m256 pb = _mm256_broadcast_ss(&p[r][j]);
            for (int i = 0; i < nv; i++)
                a[r][i] = _mm256_fmadd_ps(pb, vv[i], a[r][i]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        for (int i = 0; i < nv; i++)
            _mm256_storeu_ps(acc[r] + c + 8 * i, a[r][i]);
}

/* Folds one key block into the online-softmax state of rows r0 .. r0+R-1. */
AVX2_INLINE void block_rows(const lkv_attn_block *b, int r0, int R, const void *k, const void *v,
                            size_t ks, int nk, __m256i pk, int need_mask, lkv_dtype dt) {
    __m256 s[GROUP];
    block_logits(b, r0, R, k, ks, nk, pk, need_mask, dt, s);
    float p[GROUP][8] __attribute__((aligned(32)));
    float alpha[GROUP];
    float *acc[GROUP];
    const int fold = avx2_softmax_fold(b, r0, R, s, p, alpha, acc);
    if (!fold)
        return;
    const int rescale = fold >> 1;
    const int d = b->d;
    int c = 0;
    for (; c + 16 <= d; c += 16)
        pv_cols(acc, R, (const float (*)[8])p, alpha, rescale, v, ks, nk, c, 2, dt);
    if (c < d)
        pv_cols(acc, R, (const float (*)[8])p, alpha, rescale, v, ks, nk, c, 1, dt);
}

/* Adds the probabilities exp(s - lse) of rows r0 .. r0+R-1 for one key block
 * to mass[0..8). */
AVX2_INLINE void block_observe(const lkv_attn_block *b, const float *lse, int r0, int R,
                               const void *k, size_t ks, int nk, __m256i pk, int need_mask,
                               lkv_dtype dt, __m256 *mass) {
    __m256 s[GROUP];
    block_logits(b, r0, R, k, ks, nk, pk, need_mask, dt, s);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        float e = lse[r0 + r];
        if (e == -INFINITY)
            continue; /* the row saw no key at all */
        *mass = _mm256_add_ps(*mass, avx2_exp(_mm256_sub_ps(s[r], _mm256_set1_ps(e))));
    }
}

/* Software prefetch of the 8 K (or V) rows at p: the hardware prefetchers do
 * not run far enough ahead of two interleaved streams read block by block. */
AVX2_INLINE void prefetch_rows(const void *p, size_t ks, int d, lkv_dtype dt) {
    size_t row_bytes = (size_t)d * avx2_dtype_bytes(dt), stride = ks * avx2_dtype_bytes(dt);
    for (int j = 0; j < 8; j++)
        for (size_t o = 0; o < row_bytes; o += 64)
            _mm_prefetch((const char *)p + (size_t)j * stride + o, _MM_HINT_T0);
}

/* Rows in one row tile: as many as keep its Q (rows * d floats) in L1. */
static int row_tile(const lkv_attn_block *b) {
    int n = ROW_TILE_FLOATS / b->d;
    n -= n % GROUP;
    return n < GROUP ? GROUP : n;
}

/* One pass of a row tile [rt0, rt1) over every key block of every run; either
 * folds the blocks into the state (lse == NULL) or adds observer mass. */
AVX2_INLINE void rows_pass(const lkv_attn_block *b, const float *lse, int rt0, int rt1,
                           const lkv_kv_run *runs, int n_runs, lkv_dtype dt) {
    const size_t ks = avx2_kv_stride(b);
    const int tok0 = rt0 / b->G, tok1 = (rt1 - 1) / b->G + 1;
    const int may_mask = b->causal || b->window > 0;
    int pf_keys = (int)(PREFETCH_BYTES / ((size_t)b->d * avx2_dtype_bytes(dt))) & ~7;
    if (pf_keys < 8)
        pf_keys = 8;
    for (int ri = 0; ri < n_runs; ri++) {
        const lkv_kv_run *run = &runs[ri];
        if (run->n <= 0 || (lse && !run->obs))
            continue;
        if (avx2_span_masked(b, tok0, tok1, avx2_key_pos(run, 0), avx2_key_pos(run, run->n - 1)))
            continue;
        for (int t0 = 0; t0 < run->n; t0 += 8) {
            int nk = run->n - t0 < 8 ? run->n - t0 : 8;
            int32_t pf = avx2_key_pos(run, t0), pl = avx2_key_pos(run, t0 + nk - 1);
            if (may_mask && avx2_span_masked(b, tok0, tok1, pf, pl))
                continue;
            int need_mask = may_mask && !avx2_span_visible(b, tok0, tok1, pf, pl);
            __m256i pk = need_mask ? avx2_key_pos8(run, t0, nk) : _mm256_setzero_si256();
            const void *k = avx2_elem(run->k, (size_t)t0 * ks, dt);
            const void *v = avx2_elem(run->v, (size_t)t0 * ks, dt);
            if (t0 + pf_keys + 8 <= run->n) {
                prefetch_rows(avx2_elem(run->k, (size_t)(t0 + pf_keys) * ks, dt), ks, b->d, dt);
                if (!lse)
                    prefetch_rows(avx2_elem(run->v, (size_t)(t0 + pf_keys) * ks, dt), ks, b->d, dt);
            }
            __m256 mass = _mm256_setzero_ps();
            for (int g = rt0; g < rt1; g += GROUP) {
                int R = rt1 - g < GROUP ? rt1 - g : GROUP;
                if (lse) {
                    switch (R) {
                    case 1: block_observe(b, lse, g, 1, k, ks, nk, pk, need_mask, dt, &mass); break;
                    case 2: block_observe(b, lse, g, 2, k, ks, nk, pk, need_mask, dt, &mass); break;
                    case 3: block_observe(b, lse, g, 3, k, ks, nk, pk, need_mask, dt, &mass); break;
                    default: block_observe(b, lse, g, 4, k, ks, nk, pk, need_mask, dt, &mass); break;
                    }
                } else {
                    switch (R) {
                    case 1: block_rows(b, g, 1, k, v, ks, nk, pk, need_mask, dt); break;
                    case 2: block_rows(b, g, 2, k, v, ks, nk, pk, need_mask, dt); break;
                    case 3: block_rows(b, g, 3, k, v, ks, nk, pk, need_mask, dt); break;
                    default: block_rows(b, g, 4, k, v, ks, nk, pk, need_mask, dt); break;
                    }
                }
            }
            if (lse) {
                float mv[8] __attribute__((aligned(32)));
                _mm256_store_ps(mv, mass);
                for (int j = 0; j < nk; j++)
                    run->obs[t0 + j] += mv[j];
            }
        }
    }
}

AVX2_INLINE void attn_rows(const lkv_attn_block *b, const float *lse, const lkv_kv_run *runs,
                           int n_runs, lkv_dtype dt) {
    int tile = row_tile(b);
    for (int rt0 = 0; rt0 < b->n_rows; rt0 += tile) {
        int rt1 = b->n_rows - rt0 < tile ? b->n_rows : rt0 + tile;
        rows_pass(b, lse, rt0, rt1, runs, n_runs, dt);
    }
}

void lkv_attn_rows_f32_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    attn_rows(b, NULL, runs, n_runs, LKV_DTYPE_F32);
}
void lkv_attn_rows_f16_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    attn_rows(b, NULL, runs, n_runs, LKV_DTYPE_F16);
}
void lkv_attn_rows_bf16_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    attn_rows(b, NULL, runs, n_runs, LKV_DTYPE_BF16);
}
void lkv_attn_observe_rows_f32_avx2(const lkv_attn_block *b, const float *lse,
                                    const lkv_kv_run *runs, int n_runs) {
    attn_rows(b, lse, runs, n_runs, LKV_DTYPE_F32);
}
void lkv_attn_observe_rows_f16_avx2(const lkv_attn_block *b, const float *lse,
                                    const lkv_kv_run *runs, int n_runs) {
    attn_rows(b, lse, runs, n_runs, LKV_DTYPE_F16);
}
void lkv_attn_observe_rows_bf16_avx2(const lkv_attn_block *b, const float *lse,
                                     const lkv_kv_run *runs, int n_runs) {
    attn_rows(b, lse, runs, n_runs, LKV_DTYPE_BF16);
}
