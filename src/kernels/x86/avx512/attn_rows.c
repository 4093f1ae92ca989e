/* attn_rows.c -- AVX-512 attention for few query rows (decode-shaped blocks).
 *
 * The AVX2 algorithm (x86/avx2/attn_rows.c) on 16 lanes: keys stream once in
 * blocks of 16, software-prefetched ahead; for each group of up to 4 rows the
 * 16 dot products are accumulated along d 4 keys at a time (16 accumulators)
 * and reduced together by a shuffle tree; one online-softmax update per block;
 * acc += P.V with V converted in registers, 64 columns at a time.
 * d must be a multiple of 16.
 */
#include "kernels/x86/avx512/attn_avx512.h"

#define GROUP 4              /* rows sharing one pass over a key block */
#define ROW_TILE_FLOATS 8192 /* Q floats kept in L1 while the keys stream */
#define PREFETCH_BYTES 4096  /* software prefetch distance per stream (measured best) */

/* t[r] = [q_r.k0 | q_r.k1 | q_r.k2 | q_r.k3], each as 4 partial sums, for the
 * four keys k + (key + i) * ks. */
AVX512_INLINE void quad_dots(const float *const *qr, int R, const void *k, size_t key, size_t ks,
                             int d, lkv_dtype dt, __m512 *t) {
    __m512 a[GROUP][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        a[r][0] = a[r][1] = a[r][2] = a[r][3] = _mm512_setzero_ps();
    const size_t k0 = key * ks;
    for (int c = 0; c < d; c += 16) {
        __m512 kv0 = avx512_load16(k, k0 + c, dt), kv1 = avx512_load16(k, k0 + ks + c, dt);
        __m512 kv2 = avx512_load16(k, k0 + 2 * ks + c, dt);
        __m512 kv3 = avx512_load16(k, k0 + 3 * ks + c, dt);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 qv = _mm512_loadu_ps(qr[r] + c);
            a[r][0] = _mm512_fmadd_ps(qv, kv0, a[r][0]);
            a[r][1] = _mm512_fmadd_ps(qv, kv1, a[r][1]);
            a[r][2] = _mm512_fmadd_ps(qv, kv2, a[r][2]);
            a[r][3] = _mm512_fmadd_ps(qv, kv3, a[r][3]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        t[r] = avx512_reduce_quad(a[r][0], a[r][1], a[r][2], a[r][3]);
}

/* out[r] (lane j) = q_r . k_j for 16 consecutive keys k_j = k + j*ks. */
AVX512_INLINE void dots16(const float *const *qr, int R, const void *k, size_t ks, int d,
                          lkv_dtype dt, __m512 *out) {
    __m512 t0[GROUP], t1[GROUP], t2[GROUP], t3[GROUP];
    quad_dots(qr, R, k, 0, ks, d, dt, t0);
    quad_dots(qr, R, k, 4, ks, d, dt, t1);
    quad_dots(qr, R, k, 8, ks, d, dt, t2);
    quad_dots(qr, R, k, 12, ks, d, dt, t3);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        out[r] = avx512_keys16(t0[r], t1[r], t2[r], t3[r]);
}

/* The same for nk < 16 keys (the tail of a run); lanes >= nk are 0. */
AVX512_INLINE void dots_tail(const float *const *qr, int R, const void *k, size_t ks, int d,
                             int nk, lkv_dtype dt, __m512 *out) {
    float tmp[GROUP][16] __attribute__((aligned(64))) = {{0}};
    for (int j = 0; j < nk; j++) {
        __m512 a[GROUP];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            a[r] = _mm512_setzero_ps();
        for (int c = 0; c < d; c += 16) {
            __m512 kv = avx512_load16(k, (size_t)j * ks + c, dt);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                a[r] = _mm512_fmadd_ps(_mm512_loadu_ps(qr[r] + c), kv, a[r]);
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            tmp[r][j] = _mm512_reduce_add_ps(a[r]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        out[r] = _mm512_load_ps(tmp[r]);
}

/* Logits (scaled, capped, masked) of rows r0 .. r0+R-1 against one key block. */
AVX512_INLINE void block_logits(const lkv_attn_block *b, int r0, int R, const void *k, size_t ks,
                                int nk, __m512i pk, int need_mask, lkv_dtype dt, __m512 *s) {
    const float *qr[GROUP];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        qr[r] = avx512_query_row(b, r0 + r);
    if (nk == 16)
        dots16(qr, R, k, ks, b->d, dt, s);
    else
        dots_tail(qr, R, k, ks, b->d, nk, dt, s);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        __mmask16 vis = need_mask ? avx512_visible16(b, b->q_pos[(r0 + r) / b->G], pk, nk)
                                  : avx512_first(nk);
        s[r] = avx512_finish_logits(b, s[r], vis);
    }
}

/* acc_r = alpha_r * acc_r + sum_{j < nk} p[r][j] * v_j for R rows, nv (1..4)
 * 16-column vectors starting at column c. */
AVX512_INLINE void pv_cols(float *const *acc, int R, const float (*p)[16], const float *alpha,
                           int rescale, const void *v, size_t ks, int nk, int c, int nv,
                           lkv_dtype dt) {
    __m512 a[GROUP][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        __m512 al = _mm512_set1_ps(alpha[r]);
#pragma GCC unroll 4
        for (int i = 0; i < nv; i++) {
            a[r][i] = _mm512_loadu_ps(acc[r] + c + 16 * i);
            if (rescale)
                a[r][i] = _mm512_mul_ps(a[r][i], al);
        }
    }
    for (int j = 0; j < nk; j++) {
        __m512 vv[4];
#pragma GCC unroll 4
        for (int i = 0; i < nv; i++)
            vv[i] = avx512_load16(v, (size_t)j * ks + (size_t)(c + 16 * i), dt);
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
            _mm512_storeu_ps(acc[r] + c + 16 * i, a[r][i]);
}

/* Folds one key block into the online-softmax state of rows r0 .. r0+R-1. */
AVX512_INLINE void block_rows(const lkv_attn_block *b, int r0, int R, const void *k,
                              const void *v, size_t ks, int nk, __m512i pk, int need_mask,
                              lkv_dtype dt) {
    __m512 s[GROUP];
    block_logits(b, r0, R, k, ks, nk, pk, need_mask, dt, s);
    float p[GROUP][16] __attribute__((aligned(64)));
    float alpha[GROUP];
    float *acc[GROUP];
    const int fold = avx512_softmax_fold(b, r0, R, s, p, alpha, acc);
    if (!fold)
        return;
    const int rescale = fold >> 1;
    const int d = b->d;
    int c = 0;
    for (; c + 64 <= d; c += 64)
        pv_cols(acc, R, (const float (*)[16])p, alpha, rescale, v, ks, nk, c, 4, dt);
    switch ((d - c) / 16) {
    case 3: pv_cols(acc, R, (const float (*)[16])p, alpha, rescale, v, ks, nk, c, 3, dt); break;
    case 2: pv_cols(acc, R, (const float (*)[16])p, alpha, rescale, v, ks, nk, c, 2, dt); break;
    case 1: pv_cols(acc, R, (const float (*)[16])p, alpha, rescale, v, ks, nk, c, 1, dt); break;
    default: break;
    }
}

/* Adds exp(s - lse) of rows r0 .. r0+R-1 for one key block to *mass. */
AVX512_INLINE void block_observe(const lkv_attn_block *b, const float *lse, int r0, int R,
                                 const void *k, size_t ks, int nk, __m512i pk, int need_mask,
                                 lkv_dtype dt, __m512 *mass) {
    __m512 s[GROUP];
    block_logits(b, r0, R, k, ks, nk, pk, need_mask, dt, s);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        float e = lse[r0 + r];
        if (e == -INFINITY)
            continue; /* the row saw no key at all */
        *mass = _mm512_add_ps(*mass, avx512_exp(_mm512_sub_ps(s[r], _mm512_set1_ps(e))));
    }
}

/* Software prefetch of the 16 K (or V) rows at p, every cache line: on the
 * test machine the hardware prefetchers alone reach a fraction of the DRAM
 * bandwidth when K and V are read block by block with compute in between,
 * and prefetching every other line, or further ahead, measured slower. */
AVX512_INLINE void prefetch_rows(const void *p, size_t ks, int d, lkv_dtype dt) {
    size_t row_bytes = (size_t)d * avx512_dtype_bytes(dt), stride = ks * avx512_dtype_bytes(dt);
    for (int j = 0; j < 16; j++)
        for (size_t o = 0; o < row_bytes; o += 64)
            _mm_prefetch((const char *)p + (size_t)j * stride + o, _MM_HINT_T0);
}

static int row_tile(const lkv_attn_block *b) {
    int n = ROW_TILE_FLOATS / b->d;
    n -= n % GROUP;
    return n < GROUP ? GROUP : n;
}

/* One pass of a row tile [rt0, rt1) over every key block of every run; folds
 * the blocks into the state (lse == NULL) or adds observer mass. */
AVX512_INLINE void rows_pass(const lkv_attn_block *b, const float *lse, int rt0, int rt1,
                             const lkv_kv_run *runs, int n_runs, lkv_dtype dt) {
    const size_t ks = avx512_kv_stride(b);
    const int tok0 = rt0 / b->G, tok1 = (rt1 - 1) / b->G + 1;
    const int may_mask = b->causal || b->window > 0;
    int pf_keys = (int)(PREFETCH_BYTES / ((size_t)b->d * avx512_dtype_bytes(dt))) & ~15;
    if (pf_keys < 16)
        pf_keys = 16;
    for (int ri = 0; ri < n_runs; ri++) {
        const lkv_kv_run *run = &runs[ri];
        if (run->n <= 0 || (lse && !run->obs))
            continue;
        if (avx512_span_masked(b, tok0, tok1, avx512_key_pos(run, 0),
                               avx512_key_pos(run, run->n - 1)))
            continue;
        for (int t0 = 0; t0 < run->n; t0 += 16) {
            int nk = run->n - t0 < 16 ? run->n - t0 : 16;
            int32_t pf = avx512_key_pos(run, t0), pl = avx512_key_pos(run, t0 + nk - 1);
            if (may_mask && avx512_span_masked(b, tok0, tok1, pf, pl))
                continue;
            int need_mask = may_mask && !avx512_span_visible(b, tok0, tok1, pf, pl);
            __m512i pk = need_mask ? avx512_key_pos16(run, t0, nk) : _mm512_setzero_si512();
            const void *k = avx512_elem(run->k, (size_t)t0 * ks, dt);
            const void *v = avx512_elem(run->v, (size_t)t0 * ks, dt);
            if (t0 + pf_keys + 16 <= run->n) {
                prefetch_rows(avx512_elem(run->k, (size_t)(t0 + pf_keys) * ks, dt), ks, b->d, dt);
                if (!lse)
                    prefetch_rows(avx512_elem(run->v, (size_t)(t0 + pf_keys) * ks, dt), ks, b->d,
                                  dt);
            }
            __m512 mass = _mm512_setzero_ps();
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
                __mmask16 in = avx512_first(nk);
                float *o = run->obs + t0;
                _mm512_mask_storeu_ps(o, in, _mm512_add_ps(_mm512_maskz_loadu_ps(in, o), mass));
            }
        }
    }
}

AVX512_INLINE void attn_rows(const lkv_attn_block *b, const float *lse, const lkv_kv_run *runs,
                             int n_runs, lkv_dtype dt) {
    int tile = row_tile(b);
    for (int rt0 = 0; rt0 < b->n_rows; rt0 += tile) {
        int rt1 = b->n_rows - rt0 < tile ? b->n_rows : rt0 + tile;
        rows_pass(b, lse, rt0, rt1, runs, n_runs, dt);
    }
}

void lkv_attn_rows_f32_avx512(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    attn_rows(b, NULL, runs, n_runs, LKV_DTYPE_F32);
}
void lkv_attn_rows_f16_avx512(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    attn_rows(b, NULL, runs, n_runs, LKV_DTYPE_F16);
}
void lkv_attn_rows_bf16_avx512(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    attn_rows(b, NULL, runs, n_runs, LKV_DTYPE_BF16);
}
void lkv_attn_observe_rows_f32_avx512(const lkv_attn_block *b, const float *lse,
                                      const lkv_kv_run *runs, int n_runs) {
    attn_rows(b, lse, runs, n_runs, LKV_DTYPE_F32);
}
void lkv_attn_observe_rows_f16_avx512(const lkv_attn_block *b, const float *lse,
                                      const lkv_kv_run *runs, int n_runs) {
    attn_rows(b, lse, runs, n_runs, LKV_DTYPE_F16);
}
void lkv_attn_observe_rows_bf16_avx512(const lkv_attn_block *b, const float *lse,
                                       const lkv_kv_run *runs, int n_runs) {
    attn_rows(b, lse, runs, n_runs, LKV_DTYPE_BF16);
}
