/* attn_tile.c -- AVX2 attention for many query rows (prefill-shaped blocks).
 *
 * Keys are gathered (across runs) into tiles of up to BC keys. Each tile is
 * converted to f32 once, K transposed (kt[c][j]) and V as is (vt[j][c]), into
 * stack buffers that stay in L1, and then used by every group of MR = 6 query
 * rows of the block:
 *   S[6][BC]  = Q6 . K^T     register-blocked 6 x 16 micro-GEMM (12 accumulators)
 *   online softmax per row (one rescale per tile), P = exp(S - m)
 *   acc[6][d] += P . V       register-blocked 6 x 16 micro-GEMM
 * Row groups whose tokens see no key of the tile are skipped; masks are applied
 * only where a group straddles the causal diagonal or a window edge.
 */
#include "kernels/x86/avx2/attn_avx2.h"

#include <string.h>

#define MR 6                 /* query rows per micro-tile */
#define BC_MAX 64            /* keys per tile, at most */
#define TILE_FLOATS 4096     /* d * BC floats per K (and V) tile buffer: 16 KiB */

typedef struct key_tile {
    int n;                              /* keys in the tile */
    int n_pad;                          /* n rounded up to 16 */
    int32_t pos[BC_MAX];                /* [n] positions, ascending */
    const void *k[BC_MAX], *v[BC_MAX];  /* [n] K and V rows */
    float *obs[BC_MAX];                 /* [n] observer slots (observe pass) */
} key_tile;

/* Keys per tile for head dim d: a multiple of 16 with d * bc <= TILE_FLOATS. */
static int tile_keys(int d) {
    int bc = (TILE_FLOATS / d) & ~15;
    if (bc > BC_MAX)
        bc = BC_MAX;
    return bc < 16 ? 16 : bc;
}

/* Cursor over the keys of every run that some row of the block can see. */
typedef struct key_cursor {
    const lkv_kv_run *runs;
    int n_runs, ri, t;
} key_cursor;

/* Fills `kt` with the next keys; returns 0 when there are none left. */
static int next_tile(const lkv_attn_block *b, key_cursor *cur, int bc, size_t ks, size_t es,
                     int observe, key_tile *kt) {
    const int n_tok = b->n_rows / b->G;
    kt->n = 0;
    while (cur->ri < cur->n_runs && kt->n < bc) {
        const lkv_kv_run *run = &cur->runs[cur->ri];
        if (run->n <= 0 || (observe && !run->obs) ||
            avx2_span_masked(b, 0, n_tok, avx2_key_pos(run, 0), avx2_key_pos(run, run->n - 1))) {
            cur->ri++;
            cur->t = 0;
            continue;
        }
        while (cur->t < run->n && kt->n < bc) {
            int t = cur->t++;
            int32_t p = avx2_key_pos(run, t);
            if (avx2_span_masked(b, 0, n_tok, p, p))
                continue;
            int j = kt->n++;
            kt->pos[j] = p;
            kt->k[j] = (const char *)run->k + (size_t)t * ks * es;
            kt->v[j] = (const char *)run->v + (size_t)t * ks * es;
            kt->obs[j] = observe ? run->obs + t : NULL;
        }
        if (cur->t >= run->n) {
            cur->ri++;
            cur->t = 0;
        }
    }
    kt->n_pad = (kt->n + 15) & ~15;
    return kt->n > 0;
}

/* 8 x 8 transpose of r[0..7] in place. */
AVX2_INLINE void transpose8(__m256 *r) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* kt[c][j] (row length n_pad) = K of key j, channel c, in f32; padding keys 0. */
AVX2_INLINE void pack_k(const key_tile *t, int d, lkv_dtype dt, float *kt) {
    for (int j0 = 0; j0 < t->n_pad; j0 += 8) {
        for (int c0 = 0; c0 < d; c0 += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = j0 + i < t->n ? avx2_load8(t->k[j0 + i], (size_t)c0, dt)
                                     : _mm256_setzero_ps();
            transpose8(r);
            for (int i = 0; i < 8; i++)
                _mm256_store_ps(kt + (size_t)(c0 + i) * t->n_pad + j0, r[i]);
        }
    }
}

/* vt[j][c] (row length d) = V of key j in f32, for j < n. */
AVX2_INLINE void pack_v(const key_tile *t, int d, lkv_dtype dt, float *vt) {
    for (int j = 0; j < t->n; j++)
        for (int c = 0; c < d; c += 8)
            _mm256_store_ps(vt + (size_t)j * d + c, avx2_load8(t->v[j], (size_t)c, dt));
}

/* s[r][j0 .. j0+16) = q_r . k_j for the 6 rows (row length lds). */
AVX2_INLINE void qk_6x16(const float *const *q, const float *kt, int ldk, int d, float *s,
                         int lds) {
    __m256 a[MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++)
        a[r][0] = a[r][1] = _mm256_setzero_ps();
    for (int c = 0; c < d; c++) {
        __m256 k0 = _mm256_load_ps(kt + (size_t)c * ldk), k1 = _mm256_load_ps(kt + (size_t)c * ldk + 8);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            __m256 qb = _mm256_broadcast_ss(q[r] + c);
            a[r][0] = _mm256_fmadd_ps(qb, k0, a[r][0]);
            a[r][1] = _mm256_fmadd_ps(qb, k1, a[r][1]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        _mm256_store_ps(s + r * lds, a[r][0]);
        _mm256_store_ps(s + r * lds + 8, a[r][1]);
    }
}

/* acc_r[c0 .. c0 + 8*nv) = alpha_r * acc_r + sum_{j<n} p[r][j] * vt[j] for 6 rows. */
AVX2_INLINE void pv_6(float *const *acc, const float *alpha, const float *p, int ldp,
                      const float *vt, int d, int n, int c0, int nv) {
    __m256 a[MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        __m256 al = _mm256_set1_ps(alpha[r]);
        for (int i = 0; i < nv; i++)
            a[r][i] = _mm256_mul_ps(_mm256_loadu_ps(acc[r] + c0 + 8 * i), al);
    }
    for (int j = 0; j < n; j++) {
        __m256 v[2];
        for (int i = 0; i < nv; i++)
            v[i] = _mm256_load_ps(vt + (size_t)j * d + c0 + 8 * i);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            __m256 pb = _mm256_broadcast_ss(p + r * ldp + j);
            for (int i = 0; i < nv; i++)
                a[r][i] = _mm256_fmadd_ps(pb, v[i], a[r][i]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++)
        for (int i = 0; i < nv; i++)
            _mm256_storeu_ps(acc[r] + c0 + 8 * i, a[r][i]);
}

/* Row group g = rows [r0, r0 + nr), nr <= MR: q pointers (padding rows repeat
 * the last row) and, for its tokens, whether the tile is masked/visible. */
typedef struct row_group {
    int r0, nr;
    const float *q[MR];
    int masked, need_mask;
} row_group;

static void group_init(const lkv_attn_block *b, int r0, int nr, const key_tile *t,
                       row_group *g) {
    g->r0 = r0;
    g->nr = nr;
    for (int r = 0; r < MR; r++)
        g->q[r] = avx2_query_row(b, r0 + (r < nr ? r : nr - 1));
    int tok0 = r0 / b->G, tok1 = (r0 + nr - 1) / b->G + 1;
    int32_t pf = t->pos[0], pl = t->pos[t->n - 1];
    int may_mask = b->causal || b->window > 0;
    g->masked = may_mask && avx2_span_masked(b, tok0, tok1, pf, pl);
    g->need_mask = may_mask && !g->masked && !avx2_span_visible(b, tok0, tok1, pf, pl);
}

/* Logits of a row group against the tile: s[r][0 .. n_pad) scaled, capped and
 * masked (-inf for invisible and padding keys). */
AVX2_INLINE void group_logits(const lkv_attn_block *b, const row_group *g, const key_tile *t,
                              const float *kt, float *s) {
    const int ld = t->n_pad;
    for (int j0 = 0; j0 < t->n_pad; j0 += 16)
        qk_6x16(g->q, kt + j0, ld, b->d, s + j0, ld);
    for (int r = 0; r < g->nr; r++) {
        int32_t pq = b->q_pos[(g->r0 + r) / b->G];
        for (int j0 = 0; j0 < t->n_pad; j0 += 8) {
            int nk = t->n - j0;
            __m256 vis;
            if (g->need_mask)
                vis = avx2_visible8(b, pq, _mm256_loadu_si256((const __m256i *)(t->pos + j0)), nk);
            else
                vis = _mm256_castsi256_ps(_mm256_cmpgt_epi32(
                    _mm256_set1_epi32(nk), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
            float *sp = s + r * ld + j0;
            _mm256_store_ps(sp, avx2_finish_logits(b, _mm256_load_ps(sp), vis));
        }
    }
}

AVX2_INLINE void tile_pass(const lkv_attn_block *b, const float *lse, const lkv_kv_run *runs,
                           int n_runs, lkv_dtype dt) {
    const int d = b->d, bc = tile_keys(d);
    const size_t ks = avx2_kv_stride(b), es = avx2_dtype_bytes(dt);
    float kt[TILE_FLOATS] __attribute__((aligned(32)));    /* [d][n_pad] K^T of the tile */
    float vt[TILE_FLOATS] __attribute__((aligned(32)));    /* [n][d] V of the tile */
    float s[MR * BC_MAX] __attribute__((aligned(32)));     /* [MR][n_pad] logits, then P */
    float dummy[LKV_ATTN_MAX_HEAD_DIM] __attribute__((aligned(32))); /* acc of padding rows */
    memset(dummy, 0, sizeof dummy);
    key_tile t;
    key_cursor cur = {runs, n_runs, 0, 0};
    while (next_tile(b, &cur, bc, ks, es, lse != NULL, &t)) {
        /* positions beyond n are read by the 8-wide masks: keep them defined */
        for (int j = t.n; j < t.n_pad; j++)
            t.pos[j] = t.pos[t.n - 1];
        pack_k(&t, d, dt, kt);
        if (!lse)
            pack_v(&t, d, dt, vt);
        float mass[BC_MAX] __attribute__((aligned(32)));
        if (lse)
            memset(mass, 0, sizeof mass);
        for (int r0 = 0; r0 < b->n_rows; r0 += MR) {
            row_group g;
            group_init(b, r0, b->n_rows - r0 < MR ? b->n_rows - r0 : MR, &t, &g);
            if (g.masked)
                continue;
            group_logits(b, &g, &t, kt, s);
            const int ld = t.n_pad;
            if (lse) {
                for (int r = 0; r < g.nr; r++) {
                    float e = lse[r0 + r];
                    if (e == -INFINITY)
                        continue;
                    for (int j0 = 0; j0 < ld; j0 += 8) {
                        __m256 p = avx2_exp(_mm256_sub_ps(_mm256_load_ps(s + r * ld + j0),
                                                          _mm256_set1_ps(e)));
                        _mm256_store_ps(mass + j0, _mm256_add_ps(_mm256_load_ps(mass + j0), p));
                    }
                }
                continue;
            }
            float alpha[MR];
            float *acc[MR];
            int any = 0;
            for (int r = 0; r < MR; r++) {
                alpha[r] = 1.0f;
                acc[r] = dummy;
                if (r >= g.nr) {
                    memset(s + r * ld, 0, sizeof(float) * (size_t)ld);
                    continue;
                }
                int row = r0 + r;
                __m256 mx = _mm256_set1_ps(-INFINITY);
                for (int j0 = 0; j0 < ld; j0 += 8)
                    mx = _mm256_max_ps(mx, _mm256_load_ps(s + r * ld + j0));
                float bm = avx2_hmax(mx);
                if (bm == -INFINITY) { /* the row sees no key of the tile */
                    memset(s + r * ld, 0, sizeof(float) * (size_t)ld);
                    continue;
                }
                float m_old = b->m[row], m_new = m_old > bm ? m_old : bm;
                if (m_new > m_old)
                    alpha[r] = expf(m_old - m_new);
                __m256 mv = _mm256_set1_ps(m_new), sum = _mm256_setzero_ps();
                for (int j0 = 0; j0 < ld; j0 += 8) {
                    __m256 p = avx2_exp(_mm256_sub_ps(_mm256_load_ps(s + r * ld + j0), mv));
                    _mm256_store_ps(s + r * ld + j0, p);
                    sum = _mm256_add_ps(sum, p);
                }
                b->l[row] = b->l[row] * alpha[r] + avx2_hsum(sum);
                b->m[row] = m_new;
                acc[r] = b->acc + (size_t)row * d;
                any = 1;
            }
            if (!any)
                continue;
            int c = 0;
            for (; c + 16 <= d; c += 16)
                pv_6(acc, alpha, s, ld, vt, d, t.n, c, 2);
            if (c < d)
                pv_6(acc, alpha, s, ld, vt, d, t.n, c, 1);
        }
        if (lse)
            for (int j = 0; j < t.n; j++)
                *t.obs[j] += mass[j];
    }
}

void lkv_attn_tile_f32_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    tile_pass(b, NULL, runs, n_runs, LKV_DTYPE_F32);
}
void lkv_attn_tile_f16_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    tile_pass(b, NULL, runs, n_runs, LKV_DTYPE_F16);
}
void lkv_attn_tile_bf16_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    tile_pass(b, NULL, runs, n_runs, LKV_DTYPE_BF16);
}
void lkv_attn_observe_tile_f32_avx2(const lkv_attn_block *b, const float *lse,
                                    const lkv_kv_run *runs, int n_runs) {
    tile_pass(b, lse, runs, n_runs, LKV_DTYPE_F32);
}
void lkv_attn_observe_tile_f16_avx2(const lkv_attn_block *b, const float *lse,
                                    const lkv_kv_run *runs, int n_runs) {
    tile_pass(b, lse, runs, n_runs, LKV_DTYPE_F16);
}
void lkv_attn_observe_tile_bf16_avx2(const lkv_attn_block *b, const float *lse,
                                     const lkv_kv_run *runs, int n_runs) {
    tile_pass(b, lse, runs, n_runs, LKV_DTYPE_BF16);
}
