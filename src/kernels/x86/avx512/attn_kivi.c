/* attn_kivi.c -- AVX-512 attention over KIVI runs (2- and 4-bit tiles,
 * layouts in kernels/kv_quant.h): the math of ref/attn_quant.c, with tokens
 * in lanes so that no dot product needs a horizontal reduction.
 *
 * Per row tile and run (one page, one key group):
 *   qs = q o kscale, qm = q . kmin (f32), then qs rounded to int16 with its
 *   own scale qa = max|qs| / 32767 and paired as the key words come: the
 *   word pair of channels (u, u + P/2) of each P-channel chunk.
 * Per tile of 16 keys:
 *   keys:    a key vector is 16 tokens x P channels; shift + mask leaves the
 *            codes of channels (u, u + P/2) of every token as two 16-bit
 *            words, and one vpmaddwd (vpdpwssd with VNNI) adds both products
 *            into each token's int32 lane, for every row of the group;
 *            logit = scale * (qa * dot + qm). The dots are exact; the only
 *            error is the query's rounding, at most qa/2 per channel.
 *   values:  w_t = p_t * vscale_t rounded to int16 with one scale per row and
 *            softmax step, paired as the value words come (tokens m, m + P/2);
 *            a value vector is 16 channels x P tokens, shift + mask leaves
 *            the codes of both tokens of a pair as 16-bit words, and one
 *            vpmaddwd / vpdpwssd per row adds them into int32 accumulators,
 *            folded into acc after the step; sum_t p_t * vmin_t is kept as 16
 *            partial sums per group and added to acc when the row tile ends.
 * A softmax step takes a page (two tiles).
 * Head dims that are not a multiple of 16 go to the AVX2 kernels.
 *
 * Where the time goes, the arithmetic floor, and the designs measured and
 * not kept (int8 products, multi-page steps, prefetch patterns): see
 * docs/kivi_kernel.md.
 */
#include "kernels/kv_quant.h"
#include "kernels/x86/avx512/attn_avx512.h"

#define GROUP 4      /* rows sharing one pass over a tile */
#define ROW_TILE 16  /* rows whose query factors are kept on the stack */
#define MAXD LKV_ATTN_MAX_HEAD_DIM
#define MAXG (MAXD / LKV_KIVI_VGROUP)
#define TILE LKV_KVQ_TILE
#ifndef PREFETCH_RUNS /* -D for experiments */
#define PREFETCH_RUNS 2 /* runs (pages) ahead */
#endif

/* acc += a . pair (word pairs of a times the two int16 of *w, every lane).
 * With VNNI one vpdpwssd whose broadcast comes from memory ({1to16}: GCC
 * does not fold _mm512_set1_epi32 into it, and a separate broadcast per
 * product was a third of the kernel's instructions); else vpmaddwd + vpaddd. */
#ifdef __AVX512VNNI__
static inline __m512i dot_add(__m512i acc, __m512i a, const int32_t *w) {
    __asm__("vpdpwssd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(a), "m"(*w));
    return acc;
}
#define KIVI_SUFFIX(name) name##_avx512vnni
#else
static inline __m512i dot_add(__m512i acc, __m512i a, const int32_t *w) {
    return _mm512_add_epi32(acc, _mm512_madd_epi16(a, _mm512_set1_epi32(*w)));
}
#define KIVI_SUFFIX(name) name##_avx512
#endif

void lkv_attn_kivi4_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_kivi2_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_kivi4_avx2(const lkv_attn_block *b, const float *lse,
                                 const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_kivi2_avx2(const lkv_attn_block *b, const float *lse,
                                 const lkv_kv_run *runs, int n_runs);

/* vpermt2w indices that pair the int32 lanes of two vectors x0, x1 (16
 * channels or tokens each) as the words of b-bit codes come: words 2k and
 * 2k + 1 of the result are the low words of lanes lo(k) and lo(k) + span of
 * x0 (k < 8), with lo(k) = k, span 8 for 2 bits (a 16-bit half holds 8
 * codes) and lo(k) = 8 (k / 4) + k % 4, span 4 for 4 bits; the same lanes
 * of x1 (index + 32) for k >= 8. One instruction per 32 channels, where a
 * permute and a narrowing per 16 were. */
static const uint16_t PAIR_IDX[2][32] __attribute__((aligned(64))) = {
    {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30,
     32, 48, 34, 50, 36, 52, 38, 54, 40, 56, 42, 58, 44, 60, 46, 62},
    {0, 8, 2, 10, 4, 12, 6, 14, 16, 24, 18, 26, 20, 28, 22, 30,
     32, 40, 34, 42, 36, 44, 38, 46, 48, 56, 50, 58, 52, 60, 54, 62},
};
static inline __m512i pair_index(int bits) { return _mm512_load_si512(PAIR_IDX[bits == 4]); }

/* Per-row key factors of one run for a row tile. */
typedef struct qfac {
    int32_t qp[ROW_TILE][MAXD / 2]; /* [rows][chunk][u]: int16 pair (u, u + P/2) */
    float qa[ROW_TILE];             /* scale of the int16 query */
    float qm[ROW_TILE];             /* q . kmin */
    const float *q[ROW_TILE];       /* the rows' queries (set once per row tile) */
    /* sum_t p_t * vmin_{t,g} as 16 partial sums, rescaled with acc; added to
     * acc once, when the row tile is done (one reduction per group, not per tile) */
    float mv[ROW_TILE][MAXG][16] __attribute__((aligned(64)));
} qfac;

/* Lanes 4r .. 4r + 3 of the result = max (hmax4) or sum (hsum4) of the 16
 * lanes of a[r]: four rows' reductions in 13 instructions where each row's
 * own took ~8. hmax4 is avx512_reduce_quad's shuffle tree with max for add. */
static inline __m512 hmax4(const __m512 *a) {
    const __m512 x = _mm512_max_ps(_mm512_shuffle_f32x4(a[0], a[1], 0x44), _mm512_shuffle_f32x4(a[0], a[1], 0xEE));
    const __m512 y = _mm512_max_ps(_mm512_shuffle_f32x4(a[2], a[3], 0x44), _mm512_shuffle_f32x4(a[2], a[3], 0xEE));
    __m512 z = _mm512_max_ps(_mm512_shuffle_f32x4(x, y, 0x88), _mm512_shuffle_f32x4(x, y, 0xDD));
    z = _mm512_max_ps(z, _mm512_permute_ps(z, 0x4E));
    return _mm512_max_ps(z, _mm512_permute_ps(z, 0xB1));
}
static inline __m512 hsum4(const __m512 *a) {
    __m512 z = avx512_reduce_quad(a[0], a[1], a[2], a[3]); /* 4 partial sums per row */
    z = _mm512_add_ps(z, _mm512_permute_ps(z, 0x4E));
    return _mm512_add_ps(z, _mm512_permute_ps(z, 0xB1));
}

/* The key factors of rows [rt0, rt1) for one run, four rows at a time
 * (nv = d / 16 vectors; a constant where inlined). */
AVX512_INLINE void run_factors_nv(const lkv_kv_run *run, int nv, int bits, int rt0, int rt1,
                                  qfac *f) {
    const int d = 16 * nv;
    const uint16_t *ka = run->k_aux; /* [2][d] half: scale, min */
    const __m512i pidx = pair_index(bits);
    __m512 ks[MAXD / 16], km[MAXD / 16];
    for (int c = 0; c < nv; c++) { /* the page's scales and mins, once for all rows */
        ks[c] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(ka + 16 * c)));
        km[c] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(ka + d + 16 * c)));
    }
    for (int r0 = rt0; r0 < rt1; r0 += 4) {
        const int R = rt1 - r0 < 4 ? rt1 - r0 : 4;
        const float *q[4];
        __m512 mx[4], m[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) { /* rows past R repeat row 0; their lanes are unused */
            q[r] = f->q[r0 - rt0 + (r < R ? r : 0)];
            mx[r] = m[r] = _mm512_setzero_ps();
        }
        for (int c = 0; c < nv; c++)
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                const __m512 qv = _mm512_loadu_ps(q[r] + 16 * c);
                mx[r] = _mm512_range_ps(mx[r], _mm512_mul_ps(qv, ks[c]), 0x0B); /* max |.| */
                m[r] = _mm512_fmadd_ps(qv, km[c], m[r]);
            }
        const __m512 amax = hmax4(mx);
        const __m512 inv = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(amax, _mm512_setzero_ps(), _CMP_GT_OQ),
                                               _mm512_set1_ps(32767.0f), amax);
        float av[16], sv[16];
        _mm512_storeu_ps(av, amax);
        _mm512_storeu_ps(sv, hsum4(m));
        for (int r = 0; r < R; r++) {
            const __m512 ir = _mm512_permutexvar_ps(_mm512_set1_epi32(4 * r), inv);
            int32_t *qp = f->qp[r0 + r - rt0];
            for (int c = 0; c < nv; c += 2) { /* 32 channels -> 16 int16 pairs (16 -> 8 at the end) */
                const __m512i x0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(q[r] + 16 * c), ks[c]), ir));
                const __m512i x1 = c + 1 < nv ? _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(q[r] + 16 * c + 16), ks[c + 1]), ir))
                                              : _mm512_setzero_si512();
                const __m512i w = _mm512_permutex2var_epi16(x0, pidx, x1);
                if (c + 1 < nv)
                    _mm512_storeu_si512(qp + 8 * c, w);
                else
                    _mm256_storeu_si256((__m256i *)(qp + 8 * c), _mm512_castsi512_si256(w));
            }
            f->qa[r0 + r - rt0] = av[4 * r] / 32767.0f;
            f->qm[r0 + r - rt0] = sv[4 * r];
        }
    }
}

static void run_factors(const lkv_attn_block *b, const lkv_kv_run *run, int bits, int rt0,
                        int rt1, qfac *f) {
    switch (b->d) { /* the common head dims with constant trip counts */
    case 64: run_factors_nv(run, 4, bits, rt0, rt1, f); break;
    case 128: run_factors_nv(run, 8, bits, rt0, rt1, f); break;
    default: run_factors_nv(run, b->d / 16, bits, rt0, rt1, f); break;
    }
}

/* Logits of rows r0 .. r0+R-1 (tile-relative rr0) for the keys of one tile. */
AVX512_INLINE void tile_logits(const lkv_attn_block *b, const qfac *f, int r0, int rr0, int R,
                               const uint8_t *kt, int nk, __m512i pk, int need_mask, int bits,
                               __m512 *s) {
    const int P = 32 / bits, H = P / 2, nch = (b->d + P - 1) / P;
    const uint32_t lane = (1u << bits) - 1;
    const __m512i mask = _mm512_set1_epi32((int)(lane | lane << 16));
    __m512i acc[GROUP][4]; /* 4 chains per row: the adds' latency stays hidden */
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = _mm512_setzero_si512();
    for (int j = 0; j < nch; j++) {
        __m512i x = _mm512_loadu_si512(kt + (size_t)j * 64);
        /* kept in a register: GCC otherwise reloads it for every shift, and
         * the loads, not the products, were what this loop waited on (4/1/128
         * KIVI-2 in L2: 39.1-40.0 cycles per key against 40.9-41.4) */
        __asm__("" : "+v"(x));
        const int32_t *qp[GROUP];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            qp[r] = f->qp[rr0 + r] + j * H;
#pragma GCC unroll 8
        for (int u = 0; u < H; u++) {
            const __m512i w = _mm512_and_si512(_mm512_srli_epi32(x, (unsigned)(bits * u)), mask);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                acc[r][u % 4] = dot_add(acc[r][u % 4], w, &qp[r][u]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        const __m512i sum = _mm512_add_epi32(_mm512_add_epi32(acc[r][0], acc[r][1]),
                                             _mm512_add_epi32(acc[r][2], acc[r][3]));
        __m512 dot = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(f->qa[rr0 + r]),
                                     _mm512_set1_ps(f->qm[rr0 + r]));
        __mmask16 vis = need_mask ? avx512_visible16(b, b->q_pos[(r0 + r) / b->G], pk, nk)
                                  : avx512_first(nk);
        s[r] = avx512_finish_logits(b, dot, vis);
    }
}

/* acc_r = alpha_r acc_r + beta_r * sum_t wq[r][g][t] * code_t for the nv
 * (1..4) 16-channel vectors from vector c0, over the values of nt tiles (at
 * vt[u], nk[u] keys); wq are the int16 weights, paired as the value words come
 * (tokens m, m + P/2 of each P-token group): wp[r][g][8u + pair]. */
AVX512_INLINE void tile_values(float *const *acc, int R, const int32_t (*wp)[MAXG][2 * 8],
                               const float *beta, const float *alpha, int rescale,
                               const uint8_t *const *vt, const int *nk, int nt,
                               size_t group_words, int c0, int nv, int bits) {
    const int P = 32 / bits, H = P / 2;
    const uint32_t lane = (1u << bits) - 1;
    const __m512i mask = _mm512_set1_epi32((int)(lane | lane << 16));
    __m512i ia[GROUP][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int i = 0; i < nv; i++)
            ia[r][i] = _mm512_setzero_si512();
    for (int u = 0; u < nt; u++)
        for (int h = 0; h * P < nk[u]; h++) { /* the words of tokens h*P .. h*P + P - 1 */
            __m512i x[4];
#pragma GCC unroll 4
            for (int i = 0; i < nv; i++)
                x[i] = _mm512_loadu_si512(vt[u] + 4 * ((size_t)h * group_words + 16 * (size_t)(c0 + i)));
            const int w0 = 8 * u + h * H;
#pragma GCC unroll 8
            for (int m = 0; m < H; m++) {
                __m512i e[4];
#pragma GCC unroll 4
                for (int i = 0; i < nv; i++)
                    e[i] = _mm512_and_si512(_mm512_srli_epi32(x[i], (unsigned)(bits * m)), mask);
#pragma GCC unroll 4
                for (int r = 0; r < R; r++)
#pragma GCC unroll 4
                    for (int i = 0; i < nv; i++)
                        ia[r][i] = dot_add(ia[r][i], e[i], &wp[r][(16 * (c0 + i)) / LKV_KIVI_VGROUP][w0 + m]);
            }
        }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        const __m512 al = _mm512_set1_ps(alpha[r]), be = _mm512_set1_ps(beta[r]);
#pragma GCC unroll 4
        for (int i = 0; i < nv; i++) {
            __m512 a = _mm512_loadu_ps(acc[r] + 16 * (c0 + i));
            if (rescale)
                a = _mm512_mul_ps(a, al);
            _mm512_storeu_ps(acc[r] + 16 * (c0 + i), _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[r][i]), be, a));
        }
    }
}

/* A tile of keys to fold: first key t0 of the run, nk keys, their mask. */
typedef struct ktile {
    __m512i pk;    /* key positions (only when need_mask) */
    int t0, nk, need_mask;
} ktile;

/* Folds nt (1 or 2) tiles of one run into rows r0 .. r0+R-1: one softmax
 * update and one value pass for up to 32 keys (a KIVI page). */
AVX512_INLINE void block_rows(const lkv_attn_block *b, qfac *f, int r0, int rr0, int R,
                              const lkv_kv_run *run, const ktile *kt, int nt, size_t rb, int bits) {
    __m512 s[2][GROUP];
    for (int u = 0; u < nt; u++)
        tile_logits(b, f, r0, rr0, R, (const uint8_t *)run->k + (size_t)kt[u].t0 * rb, kt[u].nk,
                    kt[u].pk, kt[u].need_mask, bits, s[u]);
    float p[GROUP][32] __attribute__((aligned(64)));
    float alpha[GROUP];
    float *acc[GROUP];
    const int fold = avx512_softmax_fold_n(b, r0, R, &s[0][0], GROUP, nt, &p[0][0], 32, alpha, acc);
    if (!fold)
        return;
    const int d = b->d, ng = lkv_kvq_vgroups(d), rescale = fold >> 1;
    /* per (row, group): w = p o vscale over the keys, rounded to int16 with
     * one scale beta per row and paired as the value words come; the min
     * terms p o vmin go to f->mv */
    __m512 vs[2][MAXG];
    __m512 mx = _mm512_setzero_ps();
    for (int u = 0; u < nt; u++) {
        const uint16_t *va = (const uint16_t *)run->v_aux + (size_t)kt[u].t0 * 2 * (size_t)ng;
        for (int g = 0; g < ng; g++) {
            vs[u][g] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(va + (size_t)g * 32)));
            mx = _mm512_max_ps(mx, vs[u][g]);
            const __m512 vm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(va + (size_t)g * 32 + 16)));
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m512 mv = _mm512_load_ps(f->mv[rr0 + r][g]);
                if (rescale && u == 0)
                    mv = _mm512_mul_ps(mv, _mm512_set1_ps(alpha[r]));
                _mm512_store_ps(f->mv[rr0 + r][g], _mm512_fmadd_ps(_mm512_load_ps(p[r] + 16 * u), vm, mv));
            }
        }
    }
    const float vsmax = _mm512_reduce_max_ps(mx);
    float beta[GROUP];
    int32_t wp[GROUP][MAXG][2 * 8] __attribute__((aligned(64)));
    const __m512i pidx = pair_index(bits);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        /* p[r] + 16 is written only for a second tile; p >= 0, so a zero p1 is neutral */
        const __m512 p0 = _mm512_load_ps(p[r]), p1 = nt > 1 ? _mm512_load_ps(p[r] + 16) : _mm512_setzero_ps();
        const float pmax = _mm512_reduce_max_ps(_mm512_max_ps(p0, p1));
        const float wmax = pmax * vsmax; /* >= every p_t * vs_t */
        beta[r] = wmax / 32767.0f;
        const __m512 inv = _mm512_set1_ps(wmax > 0.0f ? 32767.0f / wmax : 0.0f);
        const __m512 pi0 = _mm512_mul_ps(p0, inv), pi1 = _mm512_mul_ps(p1, inv);
        for (int g = 0; g < ng; g++) { /* both tiles' 16 pairs at once */
            const __m512i w0 = _mm512_cvtps_epi32(_mm512_mul_ps(pi0, vs[0][g]));
            const __m512i w1 = nt > 1 ? _mm512_cvtps_epi32(_mm512_mul_ps(pi1, vs[1][g])) : _mm512_setzero_si512();
            _mm512_store_si512(wp[r][g], _mm512_permutex2var_epi16(w0, pidx, w1));
        }
    }
    const uint8_t *vt[2];
    int nk[2];
    for (int u = 0; u < nt; u++) {
        vt[u] = (const uint8_t *)run->v + (size_t)kt[u].t0 * rb;
        nk[u] = kt[u].nk;
    }
    const size_t group_words = rb * 8 / (size_t)bits; /* C: words per token group */
    const int nv = d / 16;
    const int32_t (*w)[MAXG][16] = (const int32_t (*)[MAXG][16])wp;
    int c = 0;
    for (; c + 4 <= nv; c += 4)
        tile_values(acc, R, w, beta, alpha, rescale, vt, nk, nt, group_words, c, 4, bits);
    switch (nv - c) {
    case 3: tile_values(acc, R, w, beta, alpha, rescale, vt, nk, nt, group_words, c, 3, bits); break;
    case 2: tile_values(acc, R, w, beta, alpha, rescale, vt, nk, nt, group_words, c, 2, bits); break;
    case 1: tile_values(acc, R, w, beta, alpha, rescale, vt, nk, nt, group_words, c, 1, bits); break;
    default: break;
    }
}

AVX512_INLINE void tile_observe(const lkv_attn_block *b, const qfac *f, const float *lse, int r0,
                                int rr0, int R, const lkv_kv_run *run, int t0, int nk, size_t rb,
                                __m512i pk, int need_mask, int bits, __m512 *mass) {
    __m512 s[GROUP];
    tile_logits(b, f, r0, rr0, R, (const uint8_t *)run->k + (size_t)t0 * rb, nk, pk, need_mask,
                bits, s);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        float e = lse[r0 + r];
        if (e == -INFINITY)
            continue;
        *mass = _mm512_add_ps(*mass, avx512_exp(_mm512_sub_ps(s[r], _mm512_set1_ps(e))));
    }
}

/* Folds nt tiles into every row group of [rt0, rt1). */
AVX512_INLINE void fold_tiles(const lkv_attn_block *b, qfac *f, int rt0, int rt1,
                              const lkv_kv_run *run, const ktile *kt, int nt, size_t rb, int bits) {
    for (int g = rt0; g < rt1; g += GROUP)
        switch (rt1 - g < GROUP ? rt1 - g : GROUP) {
        case 1: block_rows(b, f, g, g - rt0, 1, run, kt, nt, rb, bits); break;
        case 2: block_rows(b, f, g, g - rt0, 2, run, kt, nt, rb, bits); break;
        case 3: block_rows(b, f, g, g - rt0, 3, run, kt, nt, rb, bits); break;
        default: block_rows(b, f, g, g - rt0, 4, run, kt, nt, rb, bits); break;
        }
}

/* Adds the observer mass of one tile, summed over rows [rt0, rt1), to its slots. */
AVX512_INLINE void observe_tile(const lkv_attn_block *b, const qfac *f, const float *lse, int rt0,
                                int rt1, const lkv_kv_run *run, const ktile *k, size_t rb,
                                int bits) {
    __m512 mass = _mm512_setzero_ps();
    for (int g = rt0; g < rt1; g += GROUP)
        switch (rt1 - g < GROUP ? rt1 - g : GROUP) {
        case 1: tile_observe(b, f, lse, g, g - rt0, 1, run, k->t0, k->nk, rb, k->pk, k->need_mask, bits, &mass); break;
        case 2: tile_observe(b, f, lse, g, g - rt0, 2, run, k->t0, k->nk, rb, k->pk, k->need_mask, bits, &mass); break;
        case 3: tile_observe(b, f, lse, g, g - rt0, 3, run, k->t0, k->nk, rb, k->pk, k->need_mask, bits, &mass); break;
        default: tile_observe(b, f, lse, g, g - rt0, 4, run, k->t0, k->nk, rb, k->pk, k->need_mask, bits, &mass); break;
        }
    const __mmask16 in = avx512_first(k->nk);
    float *o = run->obs + k->t0;
    _mm512_mask_storeu_ps(o, in, _mm512_add_ps(_mm512_maskz_loadu_ps(in, o), mass));
}

/* Prefetches (into L1) every byte a later run will read: pages are small
 * and scattered over the pool, so the hardware prefetchers do not follow. */
static inline void prefetch_bytes(const void *p, size_t n) {
    const char *c = (const char *)((uintptr_t)p & ~(uintptr_t)63), *end = (const char *)p + n;
    for (; c < end; c += 64)
        _mm_prefetch(c, _MM_HINT_T0);
}
static inline void prefetch_run(const lkv_kv_run *run, int d, size_t rb, int values) {
    const size_t slots = (size_t)lkv_kvq_slots(run->dtype, run->n);
    prefetch_bytes(run->k, slots * rb);
    prefetch_bytes(run->k_aux, (size_t)4 * (size_t)d);
    if (values) {
        prefetch_bytes(run->v, slots * rb);
        prefetch_bytes(run->v_aux, slots * 4 * (size_t)lkv_kvq_vgroups(d));
    }
}

AVX512_INLINE void attn_kivi(const lkv_attn_block *b, const float *lse, const lkv_kv_run *runs,
                             int n_runs, int bits) {
    static _Thread_local qfac f;
    const size_t rb = lkv_kvq_row_bytes(bits == 4 ? LKV_DTYPE_KIVI4 : LKV_DTYPE_KIVI2, b->d);
    for (int rt0 = 0; rt0 < b->n_rows; rt0 += ROW_TILE) {
        int rt1 = b->n_rows - rt0 < ROW_TILE ? b->n_rows : rt0 + ROW_TILE;
        const int tok0 = rt0 / b->G, tok1 = (rt1 - 1) / b->G + 1;
        const int ng = lkv_kvq_vgroups(b->d);
        for (int r = rt0; r < rt1; r++)
            f.q[r - rt0] = avx512_query_row(b, r);
        if (!lse)
            for (int r = rt0; r < rt1; r++)
                for (int g = 0; g < ng; g++)
                    _mm512_store_ps(f.mv[r - rt0][g], _mm512_setzero_ps());
        for (int ri = 0; ri < n_runs; ri++) {
            const lkv_kv_run *run = &runs[ri];
            if (avx512_run_unused(b, run, lse, tok0, tok1))
                continue;
            if (ri + PREFETCH_RUNS < n_runs && run[PREFETCH_RUNS].n > 0)
                prefetch_run(&run[PREFETCH_RUNS], b->d, rb, !lse);
            run_factors(b, run, bits, rt0, rt1, &f);
            ktile kt[2];
            int nt = 0;
            for (int t0 = 0; t0 < run->n; t0 += TILE) {
                int nk = run->n - t0 < TILE ? run->n - t0 : TILE;
                ktile *k = &kt[nt];
                if (!avx512_block_mask(b, run, t0, nk, tok0, tok1, &k->need_mask, &k->pk))
                    continue;
                k->t0 = t0;
                k->nk = nk;
                if (lse) {
                    observe_tile(b, &f, lse, rt0, rt1, run, k, rb, bits);
                    continue;
                }
                if (++nt == 2 || t0 + TILE >= run->n) {
                    fold_tiles(b, &f, rt0, rt1, run, kt, nt, rb, bits);
                    nt = 0;
                }
            }
            if (nt)
                fold_tiles(b, &f, rt0, rt1, run, kt, nt, rb, bits);
        }
        if (!lse) /* the min terms, one reduction per (row, group) */
            for (int r = rt0; r < rt1; r++) {
                float *acc = b->acc + (size_t)r * b->d;
                for (int g = 0; g < ng; g++) {
                    const __m512 mt = _mm512_set1_ps(_mm512_reduce_add_ps(_mm512_load_ps(f.mv[r - rt0][g])));
                    for (int c = g * LKV_KIVI_VGROUP; c < b->d && c < (g + 1) * LKV_KIVI_VGROUP; c += 16)
                        _mm512_storeu_ps(acc + c, _mm512_add_ps(_mm512_loadu_ps(acc + c), mt));
                }
            }
    }
}

/* Entry points: d % 16 != 0 goes to AVX2; bits are constants in each. */
#define KIVI_ENTRY(name, BITS)                                                                  \
    void KIVI_SUFFIX(lkv_attn_##name)(const lkv_attn_block *b, const lkv_kv_run *runs,          \
                                      int n_runs);                                              \
    void KIVI_SUFFIX(lkv_attn_observe_##name)(const lkv_attn_block *b, const float *lse,        \
                                              const lkv_kv_run *runs, int n_runs);              \
    void KIVI_SUFFIX(lkv_attn_##name)(const lkv_attn_block *b, const lkv_kv_run *runs,          \
                                      int n_runs) {                                             \
        if (b->d % 16)                                                                          \
            lkv_attn_##name##_avx2(b, runs, n_runs);                                            \
        else                                                                                    \
            attn_kivi(b, NULL, runs, n_runs, BITS);                                             \
    }                                                                                           \
    void KIVI_SUFFIX(lkv_attn_observe_##name)(const lkv_attn_block *b, const float *lse,        \
                                              const lkv_kv_run *runs, int n_runs) {             \
        if (b->d % 16)                                                                          \
            lkv_attn_observe_##name##_avx2(b, lse, runs, n_runs);                               \
        else                                                                                    \
            attn_kivi(b, lse, runs, n_runs, BITS);                                              \
    }
KIVI_ENTRY(kivi4, 4)
KIVI_ENTRY(kivi2, 2)

void KIVI_SUFFIX(lkv_kernels_init_attn_kivi)(lkv_kernel_table *t) {
    t->attn[LKV_DTYPE_KIVI4] = KIVI_SUFFIX(lkv_attn_kivi4);
    t->attn[LKV_DTYPE_KIVI2] = KIVI_SUFFIX(lkv_attn_kivi2);
    t->attn_observe[LKV_DTYPE_KIVI4] = KIVI_SUFFIX(lkv_attn_observe_kivi4);
    t->attn_observe[LKV_DTYPE_KIVI2] = KIVI_SUFFIX(lkv_attn_observe_kivi2);
#ifdef __AVX512VNNI__
    const lkv_isa isa = LKV_ISA_AVX512VNNI;
#else
    const lkv_isa isa = LKV_ISA_AVX512;
#endif
    for (int dt = LKV_DTYPE_KIVI4; dt <= LKV_DTYPE_KIVI2; dt++)
        t->attn_isa[dt] = t->attn_observe_isa[dt] = isa;
}
