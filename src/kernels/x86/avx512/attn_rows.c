/* attn_rows.c -- AVX-512 attention for few query rows (decode-shaped blocks).
 *
 * Keys stream once, cut into segments of up to 16 consecutive keys of one run;
 * up to SEGS segments (64 keys, from one run or from several short ones, as a
 * paged cache gives them) form a key block, and each block is folded in three
 * steps, for each group of up to 4 rows:
 *   - logits: per segment, 16 dot products accumulated along d 4 keys at a
 *     time (every loaded K vector feeds all the group's rows) and reduced
 *     together by one shuffle tree;
 *   - one online-softmax update per row for the whole block (max, exp and the
 *     state update over 4 vectors at once; acc is rescaled only when the max
 *     moved);
 *   - acc += P.V with V converted in registers, the accumulators of up to 64
 *     columns x 4 rows held in registers while all the block's keys go by.
 * Folding 64 keys at a time takes the serial part of the softmax (reductions,
 * exp, scalar state) off the critical path once per 64 keys.
 *
 * Prefetch. The two phases read different streams (the logits read K, the
 * P.V reads V), so each phase prefetches the stream the other one reads next:
 * while the logits of block i run, V of block i is prefetched, and while its
 * P.V runs, K of block i + 1. Each line is requested about one phase before
 * its use, a few prefetches between every 4 keys' loads, and a block's K and
 * V (16 KiB each at d = 128 in f16) stay in L1 next to what is prefetched.
 * Prefetching each stream a fixed distance (8 KiB) ahead within its own phase
 * instead left the lines of a block's second half too little time to arrive:
 * in the same runs at ~45 GB/s, 32/8/128 f16 from DRAM took 14.4-15.3 ms
 * (0.75-0.79 of the bandwidth) against 13.7-13.9 ms (0.84-0.87) now
 * (`longkv bench attn --op decode`, 2026-11-22).
 * The cursors walk the runs, across run boundaries (paged caches give short
 * runs). Head dims: multiples of 8 (a last half vector of 8 columns when
 * d % 16 == 8).
 *
 * Measured and not kept (2026-11-22): the softmax state of a group's rows in
 * the lanes of one vector (no faster for 4 rows, slower for 3); prefetch hint
 * T1 (slower); 16-key blocks with K and V prefetched together a block ahead
 * (the previous design: 32/8/128 f16 11.0-11.6 ms against 9.7-10.0 ms now at
 * ~70 GB/s).
 */
#include "kernels/x86/avx512/attn_avx512.h"

#define GROUP 4              /* rows sharing one pass over a key block */
#define SEGS 4               /* segments (of up to 16 keys) per key block, at most */
#define BLOCK_BYTES 32768     /* K (and V) bytes per key block, at most */
#define ROW_TILE_FLOATS 8192  /* Q floats kept in L1 while the keys stream */
#define OBSERVE_AHEAD 4096    /* observer pass (K only): prefetch distance in bytes, */
#define OBSERVE_AHEAD_MIN 16  /* and in keys at least (the previous design's values) */

/* Up to 16 consecutive keys of one run. */
typedef struct key_seg {
    __m512i pk;        /* key positions (only when need_mask) */
    const void *k, *v; /* rows of the first key */
    int n;             /* keys, 1..16 */
    int need_mask;     /* 1: some key is masked for some row */
} key_seg;

/* 16 (or the first 8, zero-extended, when half) elements of a K/V row. */
AVX512_INLINE __m512 load_cols(const void *base, size_t i, int half, lkv_dtype dt) {
    return half ? _mm512_zextps256_ps512(avx512_load8(base, i, dt)) : avx512_load16(base, i, dt);
}

AVX512_INLINE __m512 load_q(const float *q, int c, int half) {
    return half ? _mm512_zextps256_ps512(_mm256_loadu_ps(q + c)) : _mm512_loadu_ps(q + c);
}

/* Prefetches (into L1) the rows of keys [t, t + n) of K or V at base. Dense
 * rows are one contiguous range; strided rows are prefetched row by row.
 * Forced inline: GCC's IPA analysis takes a function that only prefetches for
 * one without side effects, and deletes the calls. */
AVX512_INLINE void prefetch_keys(const void *base, int t, int n, size_t ks, size_t row_bytes,
                                 size_t es) {
    const char *p = (const char *)base + (size_t)t * ks * es;
    if (ks * es == row_bytes) {
        const char *end = p + (size_t)n * row_bytes;
        for (p = (const char *)((uintptr_t)p & ~(uintptr_t)63); p < end; p += 64)
            _mm_prefetch(p, _MM_HINT_T0);
        return;
    }
    for (int j = 0; j < n; j++, p += ks * es)
        for (size_t o = 0; o < row_bytes; o += 64)
            _mm_prefetch(p + o, _MM_HINT_T0);
}

/* A cursor along the runs (across run boundaries) that prefetches the K or
 * the V rows of the keys it passes. */
typedef struct prefetcher {
    const lkv_kv_run *runs;
    int n_runs, ri, t; /* next key to prefetch: runs[ri], key t */
    size_t ks, row_bytes, es;
    int v; /* 0: the K rows, 1: the V rows */
} prefetcher;

AVX512_INLINE void prefetcher_advance(prefetcher *pf, int n, int fetch) {
    while (n > 0 && pf->ri < pf->n_runs) {
        const lkv_kv_run *run = &pf->runs[pf->ri];
        int take = run->n - pf->t < n ? run->n - pf->t : n;
        if (fetch && take > 0)
            prefetch_keys(pf->v ? run->v : run->k, pf->t, take, pf->ks, pf->row_bytes, pf->es);
        pf->t += take;
        n -= take;
        if (pf->t >= run->n) {
            pf->ri++;
            pf->t = 0;
        }
    }
}

/* A cursor over K (v = 0) or V (v = 1) that starts `ahead` keys in; the keys
 * it skips are left to demand misses. */
static void prefetcher_init(prefetcher *pf, const lkv_attn_block *b, const lkv_kv_run *runs,
                            int n_runs, lkv_dtype dt, int v, int ahead) {
    pf->runs = runs;
    pf->n_runs = n_runs;
    pf->ri = pf->t = 0;
    pf->es = avx512_dtype_bytes(dt);
    pf->ks = avx512_kv_stride(b);
    pf->row_bytes = (size_t)b->d * pf->es;
    pf->v = v;
    prefetcher_advance(pf, ahead, 0);
}

/* a[r][i] += q_r[c..] * k_i[c..] for the four keys k + (key + i) * ks. */
AVX512_INLINE void quad_step(const float *const *qr, int R, const void *k, size_t k0, size_t ks,
                             int c, int half, lkv_dtype dt, __m512 (*a)[4]) {
    __m512 kv0 = load_cols(k, k0 + c, half, dt), kv1 = load_cols(k, k0 + ks + c, half, dt);
    __m512 kv2 = load_cols(k, k0 + 2 * ks + c, half, dt);
    __m512 kv3 = load_cols(k, k0 + 3 * ks + c, half, dt);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        __m512 qv = load_q(qr[r], c, half);
        a[r][0] = _mm512_fmadd_ps(qv, kv0, a[r][0]);
        a[r][1] = _mm512_fmadd_ps(qv, kv1, a[r][1]);
        a[r][2] = _mm512_fmadd_ps(qv, kv2, a[r][2]);
        a[r][3] = _mm512_fmadd_ps(qv, kv3, a[r][3]);
    }
}

/* t[r] = lane L: [q_r.k0 | q_r.k1 | q_r.k2 | q_r.k3] over the elements of
 * lane L, for the four keys k + (key + i) * ks; pf (or NULL) first advances
 * over 4 keys, prefetching. */
AVX512_INLINE void quad_dots(const float *const *qr, int R, const void *k, size_t key, size_t ks,
                             int d, lkv_dtype dt, __m512 *t, prefetcher *pf) {
    if (pf)
        prefetcher_advance(pf, 4, 1);
    __m512 a[GROUP][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        a[r][0] = a[r][1] = a[r][2] = a[r][3] = _mm512_setzero_ps();
    const size_t k0 = key * ks;
    const int d16 = d & ~15;
    for (int c = 0; c < d16; c += 16)
        quad_step(qr, R, k, k0, ks, c, 0, dt, a);
    if (d & 8)
        quad_step(qr, R, k, k0, ks, d16, 1, dt, a);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        t[r] = avx512_quad_lanes(a[r][0], a[r][1], a[r][2], a[r][3]);
}

/* Keys 8h .. 8h+7 of the 16 at k, as avx512_lanes_pair results. */
AVX512_INLINE void octet_dots(const float *const *qr, int R, const void *k, size_t key,
                              size_t ks, int d, lkv_dtype dt, __m512 *x, prefetcher *pf) {
    __m512 t0[GROUP], t1[GROUP];
    quad_dots(qr, R, k, key, ks, d, dt, t0, pf);
    quad_dots(qr, R, k, key + 4, ks, d, dt, t1, pf);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        x[r] = avx512_lanes_pair(t0[r], t1[r]);
}

/* out[r] (lane j) = q_r . k_j for 16 consecutive keys k_j = k + j*ks. Each
 * quad is reduced as soon as it is done, so few vectors stay live. */
AVX512_INLINE void dots16(const float *const *qr, int R, const void *k, size_t ks, int d,
                          lkv_dtype dt, __m512 *out, prefetcher *pf) {
    __m512 x[GROUP], y[GROUP];
    octet_dots(qr, R, k, 0, ks, d, dt, x, pf);
    octet_dots(qr, R, k, 8, ks, d, dt, y, pf);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        out[r] = avx512_lanes_final(x[r], y[r]);
}

/* The same for nk < 16 keys (the tail of a run); lanes >= nk are 0. */
AVX512_INLINE void dots_tail(const float *const *qr, int R, const void *k, size_t ks, int d,
                             int nk, lkv_dtype dt, __m512 *out, prefetcher *pf) {
    if (pf)
        prefetcher_advance(pf, nk, 1);
    float tmp[GROUP][16] __attribute__((aligned(64))) = {{0}};
    const int d16 = d & ~15;
    for (int j = 0; j < nk; j++) {
        __m512 a[GROUP];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            a[r] = _mm512_setzero_ps();
        for (int c = 0; c <= d16; c += 16) {
            const int half = c == d16;
            if (half && !(d & 8))
                break;
            __m512 kv = load_cols(k, (size_t)j * ks + c, half, dt);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                a[r] = _mm512_fmadd_ps(load_q(qr[r], c, half), kv, a[r]);
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            tmp[r][j] = _mm512_reduce_add_ps(a[r]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        out[r] = _mm512_load_ps(tmp[r]);
}

/* The query rows of a row tile, resolved once per pass: row r0 + r has its
 * query at q[r] and its position at pos[r]. */
typedef struct tile_rows {
    const float *q[ROW_TILE_FLOATS / 8];
    int32_t pos[ROW_TILE_FLOATS / 8];
} tile_rows;

/* Logits (scaled, capped, masked) of R rows (queries qr, positions qp)
 * against one segment. */
AVX512_INLINE void seg_logits(const lkv_attn_block *b, int R, const float *const *qr,
                              const int32_t *qp, const key_seg *sg, size_t ks, lkv_dtype dt,
                              __m512 *s, prefetcher *pf) {
    if (sg->n == 16)
        dots16(qr, R, sg->k, ks, b->d, dt, s, pf);
    else
        dots_tail(qr, R, sg->k, ks, b->d, sg->n, dt, s, pf);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        __mmask16 vis = sg->need_mask ? avx512_visible16(b, qp[r], sg->pk, sg->n)
                                      : avx512_first(sg->n);
        s[r] = avx512_finish_logits(b, s[r], vis);
    }
}

/* acc[r][i] += p[r][j] * v_j[c + 16 i ..] for key j of a segment. */
AVX512_INLINE void pv_key(__m512 (*acc)[4], int R, const float *p, int p_stride, const void *v,
                          size_t ks, int j, int c, int nv, int half, lkv_dtype dt) {
    const int nt = nv + half; /* vectors, the last one half when half */
    __m512 vv[4];
#pragma GCC unroll 4
    for (int i = 0; i < nt; i++)
        vv[i] = load_cols(v, (size_t)j * ks + (size_t)(c + 16 * i), i == nv, dt);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        __m512 pb = _mm512_set1_ps(p[r * p_stride + j]);
#pragma GCC unroll 4
        for (int i = 0; i < nt; i++)
            acc[r][i] = _mm512_fmadd_ps(pb, vv[i], acc[r][i]);
    }
}

/* The n keys of one segment; with few accumulators (dual) the keys alternate
 * between two banks, a and a2, so the FMA latency stays hidden. pf (or NULL)
 * prefetches 4 keys' rows before every 4 keys. */
AVX512_INLINE void pv_seg(__m512 (*a)[4], __m512 (*a2)[4], int dual, int R, const float *p,
                          int p_stride, const void *v, size_t ks, int n, int c, int nv, int half,
                          lkv_dtype dt, prefetcher *pf) {
    for (int j0 = 0; j0 < n; j0 += 4) {
        const int j1 = j0 + 4 < n ? j0 + 4 : n;
        if (pf)
            prefetcher_advance(pf, j1 - j0, 1);
        int j = j0;
        if (dual)
            for (; j + 2 <= j1; j += 2) {
                pv_key(a, R, p, p_stride, v, ks, j, c, nv, half, dt);
                pv_key(a2, R, p, p_stride, v, ks, j + 1, c, nv, half, dt);
            }
        for (; j < j1; j++)
            pv_key(a, R, p, p_stride, v, ks, j, c, nv, half, dt);
    }
}

/* acc_r = alpha_r * acc_r + P_r . V over the block's segments, for the nv
 * full (and, when half, one 8-wide) column vectors starting at column c. pf
 * (or NULL) advances one key per key folded, prefetching as it goes. */
AVX512_INLINE void pv_cols(float *const *acc, int R, const float *p, const float *alpha,
                           int rescale, const key_seg *sg, int n_seg, size_t ks, int c, int nv,
                           int half, lkv_dtype dt, prefetcher *pf) {
    const int nt = nv + half;
    const int dual = R * nt <= 8;
    const __mmask16 last = half ? (__mmask16)0xFF : (__mmask16)0xFFFF;
    __m512 a[GROUP][4], a2[GROUP][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        __m512 al = _mm512_set1_ps(alpha[r]);
#pragma GCC unroll 4
        for (int i = 0; i < nt; i++) {
            a[r][i] = _mm512_maskz_loadu_ps(i == nv ? last : (__mmask16)0xFFFF, acc[r] + c + 16 * i);
            if (rescale)
                a[r][i] = _mm512_mul_ps(a[r][i], al);
            a2[r][i] = _mm512_setzero_ps();
        }
    }
    const int p_stride = SEGS * 16;
    for (int u = 0; u < n_seg; u++) {
        if (sg[u].n == 16)
            pv_seg(a, a2, dual, R, p + 16 * u, p_stride, sg[u].v, ks, 16, c, nv, half, dt, pf);
        else
            pv_seg(a, a2, dual, R, p + 16 * u, p_stride, sg[u].v, ks, sg[u].n, c, nv, half, dt,
                   pf);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int i = 0; i < nt; i++) {
            __m512 x = dual ? _mm512_add_ps(a[r][i], a2[r][i]) : a[r][i];
            _mm512_mask_storeu_ps(acc[r] + c + 16 * i, i == nv ? last : (__mmask16)0xFFFF, x);
        }
}

/* Folds one key block (n_seg segments) into the state of rows r0 .. r0+R-1.
 * The logits advance the V cursor pv and the P.V the K cursor pk (or NULL),
 * each by the block's keys. */
AVX512_INLINE void block_rows(const lkv_attn_block *b, int r0, int R, const float *const *qr,
                              const int32_t *qp, const key_seg *sg, int n_seg, size_t ks,
                              prefetcher *pk, prefetcher *pv, lkv_dtype dt) {
    __m512 s[SEGS][GROUP];
    for (int u = 0; u < n_seg; u++)
        seg_logits(b, R, qr, qp, &sg[u], ks, dt, s[u], pv);
    float p[GROUP][SEGS * 16] __attribute__((aligned(64)));
    float alpha[GROUP];
    float *acc[GROUP];
    const int fold = avx512_softmax_fold_n(b, r0, R, &s[0][0], GROUP, n_seg, &p[0][0], SEGS * 16,
                                           alpha, acc);
    if (!fold) {
        if (pk) /* no P.V: the K cursor still moves on by the block */
            prefetcher_advance(pk, 16 * (n_seg - 1) + sg[n_seg - 1].n, 1);
        return;
    }
    const int rescale = fold >> 1;
    const int d = b->d;
    const float *pp = &p[0][0];
    int c = 0;
    prefetcher *pf = pk; /* the first column pass prefetches */
    for (; c + 64 <= d; c += 64, pf = NULL)
        pv_cols(acc, R, pp, alpha, rescale, sg, n_seg, ks, c, 4, 0, dt, pf);
    switch ((d - c) / 8) { /* 8-column units left: full vectors, then a half */
    case 7: pv_cols(acc, R, pp, alpha, rescale, sg, n_seg, ks, c, 3, 1, dt, pf); break;
    case 6: pv_cols(acc, R, pp, alpha, rescale, sg, n_seg, ks, c, 3, 0, dt, pf); break;
    case 5: pv_cols(acc, R, pp, alpha, rescale, sg, n_seg, ks, c, 2, 1, dt, pf); break;
    case 4: pv_cols(acc, R, pp, alpha, rescale, sg, n_seg, ks, c, 2, 0, dt, pf); break;
    case 3: pv_cols(acc, R, pp, alpha, rescale, sg, n_seg, ks, c, 1, 1, dt, pf); break;
    case 2: pv_cols(acc, R, pp, alpha, rescale, sg, n_seg, ks, c, 1, 0, dt, pf); break;
    case 1: pv_cols(acc, R, pp, alpha, rescale, sg, n_seg, ks, c, 0, 1, dt, pf); break;
    default: break;
    }
}

/* Adds exp(s - lse) of rows r0 .. r0+R-1 for one segment to *mass. */
AVX512_INLINE void seg_observe(const lkv_attn_block *b, const float *lse, int r0, int R,
                               const float *const *qr, const int32_t *qp, const key_seg *sg,
                               size_t ks, prefetcher *pk, lkv_dtype dt, __m512 *mass) {
    __m512 s[GROUP];
    seg_logits(b, R, qr, qp, sg, ks, dt, s, pk);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        float e = lse[r0 + r];
        if (e == -INFINITY)
            continue; /* the row saw no key at all */
        *mass = _mm512_add_ps(*mass, avx512_exp(_mm512_sub_ps(s[r], _mm512_set1_ps(e))));
    }
}

/* ------------------------------------------------------------ traversal */

/* Folds the block of segments into the state of rows [rt0, rt1). */
AVX512_INLINE void fold_block(const lkv_attn_block *b, int rt0, int rt1, const tile_rows *tr,
                              const key_seg *sg, int n_seg, size_t ks, prefetcher *pk,
                              prefetcher *pv, lkv_dtype dt) {
    for (int g = rt0; g < rt1; g += GROUP) {
        const float *const *qr = tr->q + (g - rt0);
        const int32_t *qp = tr->pos + (g - rt0);
        /* the first group prefetches */
        prefetcher *gk = g == rt0 ? pk : NULL, *gv = g == rt0 ? pv : NULL;
        switch (rt1 - g < GROUP ? rt1 - g : GROUP) {
        case 1: block_rows(b, g, 1, qr, qp, sg, n_seg, ks, gk, gv, dt); break;
        case 2: block_rows(b, g, 2, qr, qp, sg, n_seg, ks, gk, gv, dt); break;
        case 3: block_rows(b, g, 3, qr, qp, sg, n_seg, ks, gk, gv, dt); break;
        default: block_rows(b, g, 4, qr, qp, sg, n_seg, ks, gk, gv, dt); break;
        }
    }
}

/* Adds the observer mass of one segment, summed over rows [rt0, rt1), to its slots. */
AVX512_INLINE void observe_seg(const lkv_attn_block *b, const float *lse, int rt0, int rt1,
                               const tile_rows *tr, const key_seg *sg, size_t ks, float *obs,
                               prefetcher *pk, lkv_dtype dt) {
    __m512 mass = _mm512_setzero_ps();
    for (int g = rt0; g < rt1; g += GROUP) {
        const float *const *qr = tr->q + (g - rt0);
        const int32_t *qp = tr->pos + (g - rt0);
        switch (rt1 - g < GROUP ? rt1 - g : GROUP) {
        case 1: seg_observe(b, lse, g, 1, qr, qp, sg, ks, g == rt0 ? pk : NULL, dt, &mass); break;
        case 2: seg_observe(b, lse, g, 2, qr, qp, sg, ks, g == rt0 ? pk : NULL, dt, &mass); break;
        case 3: seg_observe(b, lse, g, 3, qr, qp, sg, ks, g == rt0 ? pk : NULL, dt, &mass); break;
        default: seg_observe(b, lse, g, 4, qr, qp, sg, ks, g == rt0 ? pk : NULL, dt, &mass); break;
        }
    }
    __mmask16 in = avx512_first(sg->n);
    _mm512_mask_storeu_ps(obs, in, _mm512_add_ps(_mm512_maskz_loadu_ps(in, obs), mass));
}

/* One pass of a row tile [rt0, rt1) over every key of every run: folds key
 * blocks into the state (lse == NULL) or adds observer mass per segment. */
AVX512_INLINE void rows_pass(const lkv_attn_block *b, const float *lse, int rt0, int rt1,
                             const lkv_kv_run *runs, int n_runs, lkv_dtype dt) {
    const size_t ks = avx512_kv_stride(b);
    const int tok0 = rt0 / b->G, tok1 = (rt1 - 1) / b->G + 1;
    const int may_mask = b->causal || b->window > 0;
    tile_rows tr;
    for (int r = rt0; r < rt1; r++) {
        tr.q[r - rt0] = avx512_query_row(b, r);
        tr.pos[r - rt0] = b->q_pos[r / b->G];
    }
    /* segments per block: SEGS, fewer for long rows (a block's K and V, and
     * the next block's K, stay in L1) */
    const size_t row_bytes = (size_t)b->d * avx512_dtype_bytes(dt);
    int max_seg = (int)(BLOCK_BYTES / (16 * row_bytes));
    max_seg = max_seg < 1 ? 1 : max_seg > SEGS ? SEGS : max_seg;
    /* folding: K starts one block ahead (the P.V of block i prefetches K of
     * block i + 1), V at the first key (the logits of block i prefetch V of
     * block i); observing reads K only, prefetched a fixed distance ahead */
    int k_ahead = (int)(OBSERVE_AHEAD / row_bytes);
    k_ahead = lse ? (k_ahead < OBSERVE_AHEAD_MIN ? OBSERVE_AHEAD_MIN : k_ahead) : 16 * max_seg;
    prefetcher pk, pv;
    prefetcher_init(&pk, b, runs, n_runs, dt, 0, k_ahead);
    prefetcher_init(&pv, b, runs, n_runs, dt, 1, 0);
    key_seg sg[SEGS];
    int n_seg = 0;
    for (int ri = 0; ri < n_runs; ri++) {
        const lkv_kv_run *run = &runs[ri];
        if (run->n <= 0)
            continue;
        if ((lse && !run->obs) || avx512_span_masked(b, tok0, tok1, avx512_key_pos(run, 0),
                                                     avx512_key_pos(run, run->n - 1))) {
            prefetcher_advance(&pk, run->n, 0);
            prefetcher_advance(&pv, run->n, 0);
            continue;
        }
        for (int t0 = 0; t0 < run->n; t0 += 16) {
            int nk = run->n - t0 < 16 ? run->n - t0 : 16;
            int32_t pf0 = avx512_key_pos(run, t0), pl = avx512_key_pos(run, t0 + nk - 1);
            if (may_mask && avx512_span_masked(b, tok0, tok1, pf0, pl)) {
                prefetcher_advance(&pk, nk, 0);
                prefetcher_advance(&pv, nk, 0);
                continue;
            }
            key_seg *s = &sg[n_seg];
            s->need_mask = may_mask && !avx512_span_visible(b, tok0, tok1, pf0, pl);
            s->pk = s->need_mask ? avx512_key_pos16(run, t0, nk) : _mm512_setzero_si512();
            s->k = avx512_elem(run->k, (size_t)t0 * ks, dt);
            s->v = avx512_elem(run->v, (size_t)t0 * ks, dt);
            s->n = nk;
            if (lse) {
                observe_seg(b, lse, rt0, rt1, &tr, s, ks, run->obs + t0, &pk, dt);
            } else if (++n_seg == max_seg) {
                fold_block(b, rt0, rt1, &tr, sg, n_seg, ks, &pk, &pv, dt);
                n_seg = 0;
            }
        }
    }
    if (n_seg)
        fold_block(b, rt0, rt1, &tr, sg, n_seg, ks, &pk, &pv, dt);
}

static int row_tile(const lkv_attn_block *b) {
    int n = ROW_TILE_FLOATS / b->d;
    n -= n % GROUP;
    return n < GROUP ? GROUP : n;
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
