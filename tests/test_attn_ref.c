/* test_attn_ref.c -- the reference attention kernels and the public driver
 * (lkv_attn_prefill / decode / runs / merge) against a naive double-precision
 * softmax(Q K^T) V written here, plus properties (split-KV = unsplit, merge of
 * halves = whole, observer masses sum to the number of rows, one key returns
 * its value, runs = contiguous, layouts agree), bad input and allocation
 * failure injection.
 *
 * The naive path sees the same rounded K/V values (f16/bf16 converted back to
 * float), so the tolerances below only cover float accumulation order.
 * LONGKV_TEST_QUICK=1 shrinks the sizes (sanitizer runs).
 */
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "kernels/kernels.h"
#include "testutil.h"

/* ------------------------------------------------------------ tolerances */

static const struct {
    double out;      /* max |o - o_naive| (values are N(0, 1)) */
    double lse;      /* max |lse - lse_naive| */
    double out_long; /* the same over 16k keys */
    double lse_long;
    double same;     /* two computations that differ only in summation order / split */
    double obs;      /* |observer mass - naive mass| per key, and per-head sums / rows */
    double active;   /* the active (SIMD) ISA through the public driver vs naive */
} TOL = {2e-5, 2e-5, 2e-4, 2e-4, 2e-5, 1e-4, 1e-3};

static int quick;

/* --------------------------------------------------------------- helpers */

static float round_to(lkv_dtype dt, float x) {
    switch (dt) {
    case LKV_DTYPE_F16: return lkv_fp16_to_fp32(lkv_fp32_to_fp16(x));
    case LKV_DTYPE_BF16: return lkv_bf16_to_fp32(lkv_fp32_to_bf16(x));
    default: return x;
    }
}

static void store_as(lkv_dtype dt, void *buf, size_t i, float x) {
    if (dt == LKV_DTYPE_F32)
        ((float *)buf)[i] = x;
    else if (dt == LKV_DTYPE_F16)
        ((uint16_t *)buf)[i] = lkv_fp32_to_fp16(x);
    else
        ((uint16_t *)buf)[i] = lkv_fp32_to_bf16(x);
}

static void *xmalloc(size_t n) {
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        fprintf(stderr, "test: out of memory\n");
        exit(2);
    }
    return p;
}

/* The keys of one KV head as the naive reference sees them. */
typedef struct kvhead {
    int n;
    int32_t *pos;   /* [n] */
    float *k, *v;   /* [n][d] values after rounding to their storage dtype */
} kvhead;

static void kvhead_free(kvhead *h, int Hk) {
    for (int i = 0; i < Hk; i++) {
        free(h[i].pos);
        free(h[i].k);
        free(h[i].v);
    }
    free(h);
}

static int naive_visible(const lkv_attn_params *p, int32_t pq, int32_t pk) {
    if (p->causal && pk > pq)
        return 0;
    if (p->window > 0 && !((int64_t)pq - pk < p->window || pk < p->n_sink))
        return 0;
    return 1;
}

/* Double-precision softmax(q k^T * scale) v per row. o [n_q][H][d], lse [n_q][H];
 * obs (optional) [Hk] arrays of [n] doubles, ADDED to. */
static void naive_attn(const lkv_attn_params *p, int n_q, const float *q, const int32_t *q_pos,
                       const kvhead *heads, float *o, float *lse, double **obs) {
    int d = p->head_dim, H = p->q_heads, G = H / p->kv_heads;
    double scale = p->scale > 0 ? p->scale : 1.0 / sqrt((double)d);
    for (int i = 0; i < n_q; i++) {
        for (int hq = 0; hq < H; hq++) {
            const kvhead *kh = &heads[hq / G];
            const float *qr = q + ((size_t)i * H + hq) * d;
            double *s = xmalloc(sizeof(double) * (kh->n + 1));
            double mx = -INFINITY;
            for (int j = 0; j < kh->n; j++) {
                if (!naive_visible(p, q_pos[i], kh->pos[j])) {
                    s[j] = -INFINITY;
                    continue;
                }
                double dot = 0;
                for (int c = 0; c < d; c++)
                    dot += (double)qr[c] * kh->k[(size_t)j * d + c];
                s[j] = dot * scale;
                if (p->softcap > 0)
                    s[j] = p->softcap * tanh(s[j] / p->softcap);
                if (s[j] > mx)
                    mx = s[j];
            }
            float *orow = o + ((size_t)i * H + hq) * d;
            if (mx == -INFINITY) {
                memset(orow, 0, sizeof(float) * d);
                lse[(size_t)i * H + hq] = -INFINITY;
                free(s);
                continue;
            }
            double sum = 0;
            double *acc = xmalloc(sizeof(double) * d);
            for (int j = 0; j < kh->n; j++) {
                if (s[j] == -INFINITY)
                    continue;
                double w = exp(s[j] - mx);
                sum += w;
                for (int c = 0; c < d; c++)
                    acc[c] += w * kh->v[(size_t)j * d + c];
            }
            for (int c = 0; c < d; c++)
                orow[c] = (float)(acc[c] / sum);
            double l = mx + log(sum);
            lse[(size_t)i * H + hq] = (float)l;
            if (obs)
                for (int j = 0; j < kh->n; j++)
                    if (s[j] != -INFINITY)
                        obs[hq / G][j] += exp(s[j] - l);
            free(acc);
            free(s);
        }
    }
}

/* Contiguous K/V in one dtype, plus the naive view of the same values. */
typedef struct contig {
    lkv_kv_tensor kv;
    void *kbuf, *vbuf;
    int32_t *pos; /* NULL when positions are pos0 + t */
    kvhead *heads; /* [Hk] */
} contig;

/* gaps: positions with random gaps (an array); else pos0 + t. head_major: [Hk][n][d]. */
static contig make_contig(lkv_rng *r, const lkv_attn_params *p, lkv_dtype dt, int n,
                          int32_t pos0, int gaps, int head_major, float sigma) {
    contig c;
    memset(&c, 0, sizeof c);
    int d = p->head_dim, Hk = p->kv_heads;
    size_t esz = lkv_dtype_size(dt), total = (size_t)n * Hk * d;
    c.kbuf = xmalloc(total * esz);
    c.vbuf = xmalloc(total * esz);
    if (gaps) {
        c.pos = xmalloc(sizeof(int32_t) * (n + 1));
        int32_t at = pos0;
        for (int t = 0; t < n; t++) {
            c.pos[t] = at;
            at += 1 + (lkv_rng_uniform(r) < 0.3 ? (int32_t)lkv_rng_below(r, 4) : 0);
        }
    }
    c.kv.dtype = dt;
    c.kv.k = c.kbuf;
    c.kv.v = c.vbuf;
    c.kv.n = n;
    c.kv.token_stride = head_major ? (size_t)d : (size_t)Hk * d;
    c.kv.head_stride = head_major ? (size_t)n * d : (size_t)d;
    c.kv.pos = c.pos;
    c.kv.pos0 = pos0;
    c.heads = xmalloc(sizeof(kvhead) * Hk);
    for (int h = 0; h < Hk; h++) {
        kvhead *kh = &c.heads[h];
        kh->n = n;
        kh->pos = xmalloc(sizeof(int32_t) * (n + 1));
        kh->k = xmalloc(sizeof(float) * ((size_t)n * d + 1));
        kh->v = xmalloc(sizeof(float) * ((size_t)n * d + 1));
        for (int t = 0; t < n; t++) {
            kh->pos[t] = c.pos ? c.pos[t] : pos0 + t;
            for (int ch = 0; ch < d; ch++) {
                size_t at = (size_t)t * c.kv.token_stride + (size_t)h * c.kv.head_stride + ch;
                float kx = (float)lkv_rng_normal(r) * sigma, vx = (float)lkv_rng_normal(r);
                store_as(dt, c.kbuf, at, kx);
                store_as(dt, c.vbuf, at, vx);
                kh->k[(size_t)t * d + ch] = round_to(dt, kx);
                kh->v[(size_t)t * d + ch] = round_to(dt, vx);
            }
        }
    }
    return c;
}

static void contig_free(contig *c, int Hk) {
    free(c->kbuf);
    free(c->vbuf);
    free(c->pos);
    kvhead_free(c->heads, Hk);
}

static int32_t last_pos(const contig *c) {
    return c->kv.n ? (c->pos ? c->pos[c->kv.n - 1] : c->kv.pos0 + c->kv.n - 1) : 0;
}

/* max |a - b| over n values; -inf equals -inf. */
static double diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        if (a[i] == b[i])
            continue; /* also -inf == -inf */
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= m))
            m = e; /* NaN propagates as a failure */
    }
    return m;
}

static const char *dt_name(lkv_dtype dt) { return lkv_dtype_name(dt); }

/* ---------------------------------------------------- reference vs naive */

typedef struct config {
    lkv_dtype dt;
    int d, H, Hk, n_q, n_kv;
    int causal, window, n_sink;
    float softcap, scale;
    int gaps;        /* key positions with gaps */
    int32_t q_shift; /* queries at last key position + q_shift - n_q + 1 (clamped at 0) */
    float sigma;     /* key spread (sharper softmax when larger) */
} config;

/* Runs one config through prefill and decode (and observer), compares with naive. */
static void check_config(const config *cf, lkv_rng *r, lkv_threadpool *tp, double tol_o,
                         double tol_lse, const char *tag) {
    lkv_attn_params p = lkv_attn_default_params();
    p.head_dim = cf->d;
    p.q_heads = cf->H;
    p.kv_heads = cf->Hk;
    p.causal = cf->causal;
    p.window = cf->window;
    p.n_sink = cf->n_sink;
    p.softcap = cf->softcap;
    p.scale = cf->scale;
    contig c = make_contig(r, &p, cf->dt, cf->n_kv, 0, cf->gaps, 0, cf->sigma);
    size_t qn = (size_t)cf->n_q * cf->H;
    float *q = xmalloc(sizeof(float) * qn * cf->d);
    lkv_test_fill_normal(r, q, qn * cf->d, 1.0f);
    int32_t q0 = last_pos(&c) + cf->q_shift - cf->n_q + 1;
    if (q0 < 0)
        q0 = 0;
    int32_t *qp = xmalloc(sizeof(int32_t) * (cf->n_q + 1));
    for (int i = 0; i < cf->n_q; i++)
        qp[i] = q0 + i;
    float *o_ref = xmalloc(sizeof(float) * qn * cf->d), *lse_ref = xmalloc(sizeof(float) * qn);
    double **obs_ref = xmalloc(sizeof(double *) * cf->Hk);
    for (int h = 0; h < cf->Hk; h++)
        obs_ref[h] = xmalloc(sizeof(double) * (cf->n_kv + 1));
    naive_attn(&p, cf->n_q, q, qp, c.heads, o_ref, lse_ref, obs_ref);

    float *o = xmalloc(sizeof(float) * qn * cf->d), *lse = xmalloc(sizeof(float) * qn);
    float *obs = xmalloc(sizeof(float) * ((size_t)cf->Hk * cf->n_kv + 1));
    for (int api = 0; api < 2; api++) {
        memset(obs, 0, sizeof(float) * (size_t)cf->Hk * cf->n_kv);
        for (size_t i = 0; i < qn * cf->d; i++)
            o[i] = NAN;
        int rc = api == 0
                     ? lkv_attn_prefill(&p, cf->n_q, q, NULL, q0, &c.kv, o, lse, obs, tp)
                     : lkv_attn_decode(&p, cf->n_q, q, qp, 0, &c.kv, o, lse, obs, tp);
        const char *name = api == 0 ? "prefill" : "decode";
        CHECK(rc == 0, "%s %s: rc %d: %s", tag, name, rc, lkv_last_error());
        double eo = diff(o, o_ref, qn * cf->d), el = diff(lse, lse_ref, qn);
        CHECK(eo <= tol_o && el <= tol_lse,
              "%s %s %s d=%d H=%d Hk=%d n_q=%d n_kv=%d causal=%d window=%d sink=%d softcap=%g "
              "gaps=%d: out err %.3g, lse err %.3g",
              tag, name, dt_name(cf->dt), cf->d, cf->H, cf->Hk, cf->n_q, cf->n_kv, cf->causal,
              cf->window, cf->n_sink, (double)cf->softcap, cf->gaps, eo, el);
        double eobs = 0;
        for (int h = 0; h < cf->Hk; h++)
            for (int j = 0; j < cf->n_kv; j++) {
                double e = fabs(obs[(size_t)h * cf->n_kv + j] - obs_ref[h][j]);
                if (!(e <= eobs))
                    eobs = e;
            }
        CHECK(eobs <= TOL.obs * (1 + cf->n_q * (cf->H / cf->Hk) / 64.0),
              "%s %s %s observer err %.3g (n_q=%d n_kv=%d)", tag, name, dt_name(cf->dt), eobs,
              cf->n_q, cf->n_kv);
    }
    for (int h = 0; h < cf->Hk; h++)
        free(obs_ref[h]);
    free(obs_ref);
    free(o);
    free(lse);
    free(obs);
    free(o_ref);
    free(lse_ref);
    free(q);
    free(qp);
    contig_free(&c, cf->Hk);
}

static void test_vs_naive(lkv_rng *r, lkv_threadpool *tp) {
    static const int dims[] = {8, 64, 80, 128, 256};
    static const int groups[][2] = {{1, 1}, {3, 1}, {4, 1}, {8, 1}, {6, 2}, {9, 3}, {16, 4}, {2, 2}};
    static const lkv_dtype dts[] = {LKV_DTYPE_F32, LKV_DTYPE_F16, LKV_DTYPE_BF16};
    int n_cases = quick ? 40 : 150;
    for (int it = 0; it < n_cases; it++) {
        config cf;
        memset(&cf, 0, sizeof cf);
        cf.dt = dts[it % 3];
        cf.d = dims[lkv_rng_below(r, 5)];
        int gi = (int)lkv_rng_below(r, 8);
        cf.H = groups[gi][0];
        cf.Hk = groups[gi][1];
        static const int nqs[] = {1, 2, 7, 33, 65};
        static const int nkvs[] = {1, 3, 31, 32, 33, 100, 257};
        cf.n_q = nqs[lkv_rng_below(r, 5)];
        cf.n_kv = nkvs[lkv_rng_below(r, 7)];
        if (cf.d == 256 && cf.n_q * cf.H > 200)
            cf.n_q = 7;
        cf.causal = (int)lkv_rng_below(r, 4) != 0;
        int wsel = (int)lkv_rng_below(r, 5);
        cf.window = wsel == 0 ? 1 : wsel == 1 ? 1 + (int)lkv_rng_below(r, 40) : wsel == 2 ? 1000 : 0;
        cf.n_sink = cf.window && lkv_rng_below(r, 2) ? (int)lkv_rng_below(r, 50) : 0;
        cf.softcap = lkv_rng_below(r, 4) == 0 ? 5.0f + 30.0f * (float)lkv_rng_uniform(r) : 0.0f;
        cf.scale = lkv_rng_below(r, 4) == 0 ? 0.05f : 0.0f;
        cf.gaps = (int)lkv_rng_below(r, 3) == 0;
        cf.q_shift = (int)lkv_rng_below(r, 5) == 0 ? -(int)lkv_rng_below(r, 20) : 0;
        cf.sigma = lkv_rng_below(r, 3) == 0 ? 3.0f : 1.0f;
        check_config(&cf, r, tp, TOL.out, TOL.lse, "random");
    }
}

/* Masks at their edges: window = 1, window >= n, sinks beyond the window or
 * beyond n, everything masked (lse -inf, o 0), no keys at all. */
static void test_mask_edges(lkv_rng *r, lkv_threadpool *tp) {
    config base;
    memset(&base, 0, sizeof base);
    base.dt = LKV_DTYPE_F16;
    base.d = 64;
    base.H = 4;
    base.Hk = 2;
    base.n_q = 9;
    base.n_kv = 50;
    base.causal = 1;
    base.sigma = 1;
    struct {
        int causal, window, n_sink, q_shift, n_kv;
    } cases[] = {
        {1, 1, 0, 0, 50},     /* each query sees only its own position */
        {1, 50, 0, 0, 50},    /* window == n */
        {1, 500, 0, 0, 50},   /* window > n */
        {1, 4, 10, 0, 50},    /* sinks larger than the window */
        {1, 4, 100, 0, 50},   /* sinks beyond every key */
        {0, 3, 2, 0, 50},     /* non-causal window: future keys stay visible */
        {1, 0, 0, -60, 50},   /* causal, queries before every key: first rows see nothing */
        {1, 5, 0, 40, 50},    /* queries far after the keys, window 5: nothing visible */
        {1, 5, 3, 40, 50},    /* ... but sinks stay visible */
        {1, 0, 0, 0, 0},      /* no keys at all */
        {0, 0, 0, 0, 1},      /* one key */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        config cf = base;
        cf.causal = cases[i].causal;
        cf.window = cases[i].window;
        cf.n_sink = cases[i].n_sink;
        cf.q_shift = cases[i].q_shift;
        cf.n_kv = cases[i].n_kv;
        check_config(&cf, r, tp, TOL.out, TOL.lse, "edge");
    }

    /* the fully masked rows really are o = 0, lse = -inf */
    lkv_attn_params p = lkv_attn_default_params();
    p.head_dim = 16;
    p.window = 2;
    contig c = make_contig(r, &p, LKV_DTYPE_F32, 10, 0, 0, 0, 1);
    float q[16], o[16], lse = 0;
    lkv_test_fill_normal(r, q, 16, 1);
    CHECK_OK(lkv_attn_prefill(&p, 1, q, NULL, 100, &c.kv, o, &lse, NULL, tp));
    int zero = 1;
    for (int i = 0; i < 16; i++)
        zero &= o[i] == 0.0f;
    CHECK(zero && lse == -INFINITY, "masked row: lse %g", (double)lse);
    contig_free(&c, 1);
}

/* 16k keys in decode (4k quick), f16, GQA 4, with split-KV on the pool. */
static void test_long(lkv_rng *r, lkv_threadpool *tp) {
    config cf;
    memset(&cf, 0, sizeof cf);
    cf.dt = LKV_DTYPE_F16;
    cf.d = 128;
    cf.H = 8;
    cf.Hk = 2;
    cf.n_q = 1;
    cf.n_kv = quick ? 4096 : 16384;
    cf.causal = 1;
    cf.sigma = 1;
    check_config(&cf, r, tp, TOL.out_long, TOL.lse_long, "long");
    cf.dt = LKV_DTYPE_BF16;
    cf.window = 4000;
    cf.n_sink = 4;
    cf.n_q = 3;
    check_config(&cf, r, tp, TOL.out_long, TOL.lse_long, "long-window");
}

/* ------------------------------------------------------------ properties */

static lkv_attn_params params(int d, int H, int Hk, int causal) {
    lkv_attn_params p = lkv_attn_default_params();
    p.head_dim = d;
    p.q_heads = H;
    p.kv_heads = Hk;
    p.causal = causal;
    return p;
}

/* Decode on 1, 2, 3 and 7 threads (split-KV) equals single-threaded prefill.
 * The second shape has several query tiles per head, so tiles and key chunks
 * are split at once. */
static void test_split_kv(lkv_rng *r) {
    static const struct {
        int d, H, Hk, n_q;
    } shapes[] = {{64, 6, 2, 2}, {256, 8, 1, 40}};
    for (int si = 0; si < 2; si++) {
        int d = shapes[si].d, H = shapes[si].H, Hk = shapes[si].Hk, n_q = shapes[si].n_q;
        lkv_attn_params p = params(d, H, Hk, 1);
        p.window = 700;
        p.n_sink = 4;
        int n_kv = quick ? 900 : 3000;
        contig c = make_contig(r, &p, LKV_DTYPE_BF16, n_kv, 5, 1, 0, 1);
        size_t qn = (size_t)n_q * H, on = qn * d, bn = (size_t)Hk * n_kv;
        float *q = xmalloc(sizeof(float) * on);
        lkv_test_fill_normal(r, q, on, 1);
        float *o1 = xmalloc(sizeof(float) * on), *lse1 = xmalloc(sizeof(float) * qn);
        float *o2 = xmalloc(sizeof(float) * on), *lse2 = xmalloc(sizeof(float) * qn);
        float *obs1 = xmalloc(sizeof(float) * bn), *obs2 = xmalloc(sizeof(float) * bn);
        int32_t q0 = last_pos(&c) - n_q + 1;
        CHECK_OK(lkv_attn_prefill(&p, n_q, q, NULL, q0, &c.kv, o1, lse1, obs1, NULL));
        static const int threads[] = {1, 2, 3, 7};
        for (int ti = 0; ti < 4; ti++) {
            lkv_threadpool *tp = NULL;
            CHECK_OK(lkv_threadpool_create(threads[ti], &tp));
            memset(obs2, 0, sizeof(float) * bn);
            CHECK_OK(lkv_attn_decode(&p, n_q, q, NULL, q0, &c.kv, o2, lse2, obs2, tp));
            double eo = diff(o2, o1, on), el = diff(lse2, lse1, qn), eobs = diff(obs2, obs1, bn);
            CHECK(eo <= TOL.same && el <= TOL.same && eobs <= TOL.same * (1 + n_q * H / Hk / 64.0),
                  "split-KV shape %d on %d threads: out %.3g lse %.3g obs %.3g", si, threads[ti],
                  eo, el, eobs);
            lkv_threadpool_free(tp);
        }
        free(q);
        free(o1);
        free(lse1);
        free(o2);
        free(lse2);
        free(obs1);
        free(obs2);
        contig_free(&c, Hk);
    }
}

/* Attention over two halves of the keys, merged, equals attention over all. */
static void test_merge(lkv_rng *r) {
    for (int causal = 0; causal < 2; causal++) {
        lkv_attn_params p = params(80, 3, 1, causal);
        int n = 77, n_q = 5, half = 30;
        contig c = make_contig(r, &p, LKV_DTYPE_F32, n, 0, 0, 1, 1);
        size_t qn = (size_t)n_q * 3;
        float *q = xmalloc(sizeof(float) * qn * 80);
        lkv_test_fill_normal(r, q, qn * 80, 1);
        float *o = xmalloc(sizeof(float) * qn * 80), *lse = xmalloc(sizeof(float) * qn);
        float *oa = xmalloc(sizeof(float) * qn * 80), *la = xmalloc(sizeof(float) * qn);
        float *ob = xmalloc(sizeof(float) * qn * 80), *lb = xmalloc(sizeof(float) * qn);
        /* queries at positions 20..24: under causal the second half is invisible */
        CHECK_OK(lkv_attn_prefill(&p, n_q, q, NULL, 20, &c.kv, o, lse, NULL, NULL));
        lkv_kv_tensor a = c.kv, b = c.kv;
        a.n = half;
        b.n = n - half;
        b.k = (const float *)c.kv.k + (size_t)half * 80; /* head-major, one head */
        b.v = (const float *)c.kv.v + (size_t)half * 80;
        b.pos0 = half;
        CHECK_OK(lkv_attn_prefill(&p, n_q, q, NULL, 20, &a, oa, la, NULL, NULL));
        CHECK_OK(lkv_attn_prefill(&p, n_q, q, NULL, 20, &b, ob, lb, NULL, NULL));
        lkv_attn_merge((int)qn, 80, oa, la, ob, lb);
        double eo = diff(oa, o, qn * 80), el = diff(la, lse, qn);
        CHECK(eo <= TOL.same && el <= TOL.same, "merge causal=%d: out %.3g lse %.3g", causal, eo,
              el);
        /* merging with an empty part (lse -inf) changes nothing, in both orders */
        for (size_t i = 0; i < qn; i++)
            lb[i] = -INFINITY;
        memcpy(oa, o, sizeof(float) * qn * 80);
        memcpy(la, lse, sizeof(float) * qn);
        lkv_attn_merge((int)qn, 80, oa, la, ob, lb);
        CHECK(diff(oa, o, qn * 80) == 0 && diff(la, lse, qn) == 0, "merge with empty b");
        lkv_attn_merge((int)qn, 80, ob, lb, o, lse);
        CHECK(diff(ob, o, qn * 80) == 0 && diff(lb, lse, qn) == 0, "merge into empty a");
        lkv_attn_merge(0, 80, NULL, NULL, NULL, NULL); /* no-op, no crash */
        free(q);
        free(o);
        free(lse);
        free(oa);
        free(la);
        free(ob);
        free(lb);
        contig_free(&c, 1);
    }
}

/* Observer masses: each visible row sums to 1, so a head's slots sum to the
 * number of rows that saw a key. */
static void test_observer_sums(lkv_rng *r, lkv_threadpool *tp) {
    lkv_attn_params p = params(64, 9, 3, 1);
    p.window = 20;
    p.n_sink = 2;
    int n = 150, n_q = 40;
    contig c = make_contig(r, &p, LKV_DTYPE_F16, n, 0, 1, 0, 2);
    size_t qn = (size_t)n_q * 9;
    float *q = xmalloc(sizeof(float) * qn * 64), *o = xmalloc(sizeof(float) * qn * 64);
    float *lse = xmalloc(sizeof(float) * qn), *obs = xmalloc(sizeof(float) * 3 * n);
    lkv_test_fill_normal(r, q, qn * 64, 1);
    for (int api = 0; api < 2; api++) {
        memset(obs, 0, sizeof(float) * 3 * n);
        int32_t q0 = last_pos(&c) - n_q + 1;
        if (api == 0)
            CHECK_OK(lkv_attn_prefill(&p, n_q, q, NULL, q0, &c.kv, o, NULL, obs, tp));
        else
            CHECK_OK(lkv_attn_decode(&p, n_q, q, NULL, q0, &c.kv, o, lse, obs, tp));
        for (int h = 0; h < 3; h++) {
            double s = 0;
            for (int j = 0; j < n; j++)
                s += obs[(size_t)h * n + j];
            CHECK(fabs(s - n_q * 3) <= TOL.obs * n_q * 3, "api %d head %d: observer sum %.6f, want %d",
                  api, h, s, n_q * 3);
        }
    }
    free(q);
    free(o);
    free(lse);
    free(obs);
    contig_free(&c, 3);
}

/* One key: o = v, lse = the logit. */
static void test_single_key(lkv_rng *r) {
    static const lkv_dtype dts[] = {LKV_DTYPE_F32, LKV_DTYPE_F16, LKV_DTYPE_BF16};
    for (int di = 0; di < 3; di++) {
        lkv_attn_params p = params(128, 4, 1, 1);
        p.softcap = di == 2 ? 10.0f : 0.0f;
        contig c = make_contig(r, &p, dts[di], 1, 7, 0, 0, 1);
        float q[4 * 128], o[4 * 128], lse[4];
        lkv_test_fill_normal(r, q, 4 * 128, 1);
        CHECK_OK(lkv_attn_decode(&p, 1, q, NULL, 7, &c.kv, o, lse, NULL, NULL));
        double e = 0, el = 0;
        for (int g = 0; g < 4; g++) {
            e = fmax(e, diff(o + g * 128, c.heads[0].v, 128));
            double dot = 0;
            for (int ch = 0; ch < 128; ch++)
                dot += (double)q[g * 128 + ch] * c.heads[0].k[ch];
            double s = dot / sqrt(128.0);
            if (p.softcap > 0)
                s = p.softcap * tanh(s / p.softcap);
            el = fmax(el, fabs(lse[g] - s));
        }
        CHECK(e <= 1e-6 && el <= TOL.lse, "single key %s: out %.3g lse %.3g", dt_name(dts[di]), e,
              el);
        contig_free(&c, 1);
    }
}

/* Token-major and head-major layouts of the same values give the same result. */
static void test_layouts(lkv_rng *r, lkv_threadpool *tp) {
    lkv_attn_params p = params(64, 8, 4, 1);
    int n = 70, n_q = 6;
    lkv_rng r1 = *r, r2 = *r; /* the same values in both layouts */
    contig a = make_contig(&r1, &p, LKV_DTYPE_BF16, n, 0, 0, 0, 1);
    contig b = make_contig(&r2, &p, LKV_DTYPE_BF16, n, 0, 0, 1, 1);
    *r = r1;
    size_t qn = (size_t)n_q * 8;
    float *q = xmalloc(sizeof(float) * qn * 64);
    float *oa = xmalloc(sizeof(float) * qn * 64), *ob = xmalloc(sizeof(float) * qn * 64);
    float la[64], lb[64];
    lkv_test_fill_normal(r, q, qn * 64, 1);
    for (int api = 0; api < 2; api++) {
        int (*fn)(const lkv_attn_params *, int, const float *, const int32_t *, int32_t,
                  const lkv_kv_tensor *, float *, float *, float *, lkv_threadpool *) =
            api ? lkv_attn_decode : lkv_attn_prefill;
        CHECK_OK(fn(&p, n_q, q, NULL, n - n_q, &a.kv, oa, la, NULL, tp));
        CHECK_OK(fn(&p, n_q, q, NULL, n - n_q, &b.kv, ob, lb, NULL, tp));
        CHECK(diff(oa, ob, qn * 64) <= 1e-6 && diff(la, lb, qn) <= 1e-6,
              "layouts differ (api %d): %.3g", api, diff(oa, ob, qn * 64));
    }
    free(q);
    free(oa);
    free(ob);
    contig_free(&a, 4);
    contig_free(&b, 4);
}

/* Pages of random sizes and dtypes per head, heads of different lengths, with
 * observers: lkv_attn_runs vs naive; and same-dtype pages vs contiguous. */
typedef struct paged {
    lkv_kv_head_runs *heads; /* [Hk] */
    kvhead *view;            /* [Hk] naive view */
    float **obs;             /* [Hk][n_h] */
} paged;

static paged make_paged(lkv_rng *r, const lkv_attn_params *p, const int *n_h, int mixed,
                        lkv_dtype only, int max_page) {
    int d = p->head_dim, Hk = p->kv_heads;
    paged pg;
    pg.heads = xmalloc(sizeof(lkv_kv_head_runs) * Hk);
    pg.view = xmalloc(sizeof(kvhead) * Hk);
    pg.obs = xmalloc(sizeof(float *) * Hk);
    for (int h = 0; h < Hk; h++) {
        int n = n_h[h];
        kvhead *kh = &pg.view[h];
        kh->n = n;
        kh->pos = xmalloc(sizeof(int32_t) * (n + 1));
        kh->k = xmalloc(sizeof(float) * ((size_t)n * d + 1));
        kh->v = xmalloc(sizeof(float) * ((size_t)n * d + 1));
        pg.obs[h] = xmalloc(sizeof(float) * (n + 1));
        lkv_kv_run *runs = xmalloc(sizeof(lkv_kv_run) * (2 * (size_t)n + 4));
        int n_runs = 0, t = 0;
        int32_t at = 0;
        while (t < n || n_runs == 0) {
            int len = 1 + (int)lkv_rng_below(r, (uint64_t)max_page);
            if (lkv_rng_below(r, 8) == 0 && n_runs < n)
                len = 0; /* empty runs are allowed */
            if (len > n - t)
                len = n - t;
            lkv_dtype dt = mixed ? (lkv_dtype)lkv_rng_below(r, 3) : only;
            lkv_kv_run *run = &runs[n_runs++];
            memset(run, 0, sizeof *run);
            run->dtype = dt;
            run->n = len;
            size_t esz = lkv_dtype_size(dt);
            void *kb = xmalloc(esz * ((size_t)len * d + 1)), *vb = xmalloc(esz * ((size_t)len * d + 1));
            int32_t *pos = NULL;
            if (lkv_rng_below(r, 2)) {
                pos = xmalloc(sizeof(int32_t) * (len + 1));
                for (int i = 0; i < len; i++) {
                    pos[i] = at;
                    at += 1 + (int32_t)lkv_rng_below(r, 3);
                }
            } else {
                run->pos0 = at;
                at += len;
            }
            for (int i = 0; i < len; i++) {
                kh->pos[t + i] = pos ? pos[i] : run->pos0 + i;
                for (int c = 0; c < d; c++) {
                    float kx = (float)lkv_rng_normal(r), vx = (float)lkv_rng_normal(r);
                    store_as(dt, kb, (size_t)i * d + c, kx);
                    store_as(dt, vb, (size_t)i * d + c, vx);
                    kh->k[(size_t)(t + i) * d + c] = round_to(dt, kx);
                    kh->v[(size_t)(t + i) * d + c] = round_to(dt, vx);
                }
            }
            run->k = kb;
            run->v = vb;
            run->pos = pos;
            run->obs = pg.obs[h] + t;
            t += len;
        }
        pg.heads[h].runs = runs;
        pg.heads[h].n_runs = n_runs;
    }
    return pg;
}

static void paged_free(paged *pg, int Hk) {
    for (int h = 0; h < Hk; h++) {
        for (int i = 0; i < pg->heads[h].n_runs; i++) {
            const lkv_kv_run *run = &pg->heads[h].runs[i];
            free((void *)run->k);
            free((void *)run->v);
            free((void *)run->pos);
        }
        free((void *)pg->heads[h].runs);
        free(pg->obs[h]);
    }
    free(pg->heads);
    free(pg->obs);
    kvhead_free(pg->view, Hk);
}

static void test_runs(lkv_rng *r, lkv_threadpool *tp) {
    int n_iter = quick ? 6 : 20;
    for (int it = 0; it < n_iter; it++) {
        int Hk = 1 + (int)lkv_rng_below(r, 3), G = 1 + (int)lkv_rng_below(r, 4);
        lkv_attn_params p = params(it % 2 ? 64 : 80, Hk * G, Hk, (int)lkv_rng_below(r, 3) != 0);
        if (lkv_rng_below(r, 2)) {
            p.window = 1 + (int)lkv_rng_below(r, 60);
            p.n_sink = (int)lkv_rng_below(r, 5);
        }
        int n_h[3], max_n = 0;
        for (int h = 0; h < Hk; h++) {
            n_h[h] = (int)lkv_rng_below(r, 300);
            max_n = n_h[h] > max_n ? n_h[h] : max_n;
        }
        paged pg = make_paged(r, &p, n_h, 1, LKV_DTYPE_F32, 40);
        int n_q = it % 3 == 0 ? 1 : it % 3 == 1 ? 5 : 40;
        size_t qn = (size_t)n_q * p.q_heads;
        int d = p.head_dim;
        float *q = xmalloc(sizeof(float) * qn * d), *o = xmalloc(sizeof(float) * qn * d);
        float *lse = xmalloc(sizeof(float) * qn);
        float *o_ref = xmalloc(sizeof(float) * qn * d), *lse_ref = xmalloc(sizeof(float) * qn);
        lkv_test_fill_normal(r, q, qn * d, 1);
        int32_t *qp = xmalloc(sizeof(int32_t) * n_q);
        int32_t top = 0;
        for (int h = 0; h < Hk; h++)
            if (n_h[h] && pg.view[h].pos[n_h[h] - 1] > top)
                top = pg.view[h].pos[n_h[h] - 1];
        for (int i = 0; i < n_q; i++)
            qp[i] = top - (n_q - 1 - i) * 2 < 0 ? 0 : top - (n_q - 1 - i) * 2;
        double **obs_ref = xmalloc(sizeof(double *) * Hk);
        for (int h = 0; h < Hk; h++) {
            obs_ref[h] = xmalloc(sizeof(double) * (n_h[h] + 1));
            memset(pg.obs[h], 0, sizeof(float) * n_h[h]);
        }
        naive_attn(&p, n_q, q, qp, pg.view, o_ref, lse_ref, obs_ref);
        CHECK_OK(lkv_attn_runs(&p, n_q, q, qp, 0, pg.heads, o, lse, tp));
        double eo = diff(o, o_ref, qn * d), el = diff(lse, lse_ref, qn), eobs = 0;
        for (int h = 0; h < Hk; h++)
            for (int j = 0; j < n_h[h]; j++)
                eobs = fmax(eobs, fabs(pg.obs[h][j] - obs_ref[h][j]));
        CHECK(eo <= TOL.out && el <= TOL.lse && eobs <= TOL.obs * (1 + n_q * G / 64.0),
              "runs it %d (Hk=%d G=%d n_q=%d): out %.3g lse %.3g obs %.3g", it, Hk, G, n_q, eo, el,
              eobs);
        for (int h = 0; h < Hk; h++)
            free(obs_ref[h]);
        free(obs_ref);
        free(q);
        free(o);
        free(lse);
        free(o_ref);
        free(lse_ref);
        free(qp);
        paged_free(&pg, Hk);
    }

    /* same-dtype pages of one contiguous tensor equal the contiguous result */
    lkv_attn_params p = params(64, 4, 2, 1);
    int n = 203, n_q = 7;
    contig c = make_contig(r, &p, LKV_DTYPE_F16, n, 3, 1, 1, 1); /* head-major: pages by pointer */
    lkv_kv_head_runs heads[2];
    lkv_kv_run runs[2][64];
    for (int h = 0; h < 2; h++) {
        int t = 0, k = 0;
        while (t < n) {
            int len = 1 + (int)lkv_rng_below(r, 16);
            if (len > n - t)
                len = n - t;
            lkv_kv_run *run = &runs[h][k++];
            memset(run, 0, sizeof *run);
            run->dtype = LKV_DTYPE_F16;
            run->k = (const uint16_t *)c.kv.k + ((size_t)h * n + t) * 64;
            run->v = (const uint16_t *)c.kv.v + ((size_t)h * n + t) * 64;
            run->pos = c.pos + t;
            run->n = len;
            t += len;
            if (k == 63 && t < n) { /* the rest in one run */
                run = &runs[h][k++];
                *run = runs[h][k - 2];
                run->k = (const uint16_t *)c.kv.k + ((size_t)h * n + t) * 64;
                run->v = (const uint16_t *)c.kv.v + ((size_t)h * n + t) * 64;
                run->pos = c.pos + t;
                run->n = n - t;
                t = n;
            }
        }
        heads[h].runs = runs[h];
        heads[h].n_runs = k;
    }
    size_t qn = (size_t)n_q * 4;
    float *q = xmalloc(sizeof(float) * qn * 64), *o1 = xmalloc(sizeof(float) * qn * 64);
    float *o2 = xmalloc(sizeof(float) * qn * 64), l1[64], l2[64];
    lkv_test_fill_normal(r, q, qn * 64, 1);
    int32_t q0 = last_pos(&c) - n_q + 1;
    CHECK_OK(lkv_attn_prefill(&p, n_q, q, NULL, q0, &c.kv, o1, l1, NULL, tp));
    CHECK_OK(lkv_attn_runs(&p, n_q, q, NULL, q0, heads, o2, l2, tp));
    CHECK(diff(o1, o2, qn * 64) <= TOL.same && diff(l1, l2, qn) <= TOL.same,
          "pages vs contiguous: %.3g", diff(o1, o2, qn * 64));
    free(q);
    free(o1);
    free(o2);
    contig_free(&c, 2);
}

/* The active (SIMD) ISA through the public driver, if it differs from ref. */
static void test_active_isa(lkv_rng *r, lkv_threadpool *tp, lkv_isa isa) {
    lkv_set_isa(isa);
    for (int it = 0; it < (quick ? 6 : 24); it++) {
        config cf;
        memset(&cf, 0, sizeof cf);
        cf.dt = (lkv_dtype)(it % 3);
        cf.d = it % 4 == 0 ? 64 : it % 4 == 1 ? 80 : it % 4 == 2 ? 128 : 256;
        cf.H = 4;
        cf.Hk = it % 2 ? 1 : 2;
        cf.n_q = it % 5 == 0 ? 1 : 13;
        cf.n_kv = 37 + 50 * (it % 4);
        cf.causal = it % 3 != 0;
        cf.window = it % 4 == 3 ? 9 : 0;
        cf.n_sink = it % 8 == 3 ? 3 : 0;
        cf.softcap = it % 6 == 5 ? 20.0f : 0.0f;
        cf.gaps = it % 2;
        cf.sigma = 1;
        check_config(&cf, r, tp, TOL.active, TOL.active, lkv_isa_name(isa));
    }
    lkv_set_isa(LKV_ISA_REF);
}

/* ------------------------------------------------------------- bad input */

static void test_bad_input(lkv_rng *r) {
    lkv_attn_params p = params(64, 8, 4, 1);
    contig c = make_contig(r, &p, LKV_DTYPE_F32, 10, 0, 0, 0, 1);
    float q[2 * 8 * 64] = {0}, o[2 * 8 * 64], lse[16];
    size_t before = lkv_alloc_bytes_in_use();
#define EXPECT_ERR(call, code)                                                            \
    do {                                                                                  \
        int rc_ = (call);                                                                 \
        CHECK(rc_ == (code), "%s returned %d, want %d", #call, rc_, (int)(code));        \
        CHECK(rc_ >= 0 || lkv_last_error()[0] != 0, "no message for %s", #call);          \
    } while (0)
    lkv_attn_params b;
    b = p;
    b.q_heads = 0;
    EXPECT_ERR(lkv_attn_prefill(&b, 2, q, NULL, 0, &c.kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    b = p;
    b.kv_heads = 0;
    EXPECT_ERR(lkv_attn_decode(&b, 2, q, NULL, 0, &c.kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    b = p;
    b.kv_heads = -2;
    EXPECT_ERR(lkv_attn_decode(&b, 2, q, NULL, 0, &c.kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    b = p;
    b.head_dim = 7;
    EXPECT_ERR(lkv_attn_prefill(&b, 2, q, NULL, 0, &c.kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    b.head_dim = 300;
    EXPECT_ERR(lkv_attn_prefill(&b, 2, q, NULL, 0, &c.kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    b.head_dim = 0;
    EXPECT_ERR(lkv_attn_prefill(&b, 2, q, NULL, 0, &c.kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    b = p;
    b.q_heads = 9;
    b.kv_heads = 4;
    EXPECT_ERR(lkv_attn_prefill(&b, 2, q, NULL, 0, &c.kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    b = p;
    b.scale = NAN;
    EXPECT_ERR(lkv_attn_prefill(&b, 2, q, NULL, 0, &c.kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    b.scale = INFINITY;
    EXPECT_ERR(lkv_attn_prefill(&b, 2, q, NULL, 0, &c.kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    b = p;
    b.softcap = -1;
    EXPECT_ERR(lkv_attn_prefill(&b, 2, q, NULL, 0, &c.kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    b = p;
    b.window = -1;
    EXPECT_ERR(lkv_attn_prefill(&b, 2, q, NULL, 0, &c.kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    b = p;
    b.n_sink = -1;
    EXPECT_ERR(lkv_attn_prefill(&b, 2, q, NULL, 0, &c.kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    EXPECT_ERR(lkv_attn_prefill(NULL, 2, q, NULL, 0, &c.kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    EXPECT_ERR(lkv_attn_prefill(&p, 2, NULL, NULL, 0, &c.kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    EXPECT_ERR(lkv_attn_prefill(&p, 2, q, NULL, 0, &c.kv, NULL, lse, NULL, NULL), LKV_ERR_INVALID);
    EXPECT_ERR(lkv_attn_prefill(&p, 2, q, NULL, 0, NULL, o, lse, NULL, NULL), LKV_ERR_INVALID);
    EXPECT_ERR(lkv_attn_prefill(&p, 2, q, NULL, 0, &c.kv, (float *)q, lse, NULL, NULL),
               LKV_ERR_INVALID);
    EXPECT_ERR(lkv_attn_decode(&p, -1, q, NULL, 0, &c.kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    EXPECT_ERR(lkv_attn_prefill(&p, 2, q, NULL, -5, &c.kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    EXPECT_ERR(lkv_attn_prefill(&p, 2, q, NULL, INT32_MAX, &c.kv, o, lse, NULL, NULL),
               LKV_ERR_INVALID);
    int32_t bad_qp[2] = {5, 4};
    EXPECT_ERR(lkv_attn_prefill(&p, 2, q, bad_qp, 0, &c.kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    lkv_kv_tensor kv = c.kv;
    kv.k = NULL;
    EXPECT_ERR(lkv_attn_prefill(&p, 2, q, NULL, 0, &kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    kv = c.kv;
    kv.v = NULL;
    EXPECT_ERR(lkv_attn_decode(&p, 2, q, NULL, 0, &kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    kv = c.kv;
    kv.dtype = (lkv_dtype)17;
    EXPECT_ERR(lkv_attn_prefill(&p, 2, q, NULL, 0, &kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    kv = c.kv;
    kv.n = -1;
    EXPECT_ERR(lkv_attn_prefill(&p, 2, q, NULL, 0, &kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    int32_t bad_kp[10] = {0, 1, 2, 3, 3, 5, 6, 7, 8, 9};
    kv = c.kv;
    kv.pos = bad_kp;
    EXPECT_ERR(lkv_attn_prefill(&p, 2, q, NULL, 0, &kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    kv = c.kv;
    kv.token_stride = 3;
    EXPECT_ERR(lkv_attn_prefill(&p, 2, q, NULL, 0, &kv, o, lse, NULL, NULL), LKV_ERR_INVALID);
    /* n_q = 0 is valid and touches nothing */
    CHECK_OK(lkv_attn_prefill(&p, 0, NULL, NULL, 0, &c.kv, NULL, NULL, NULL, NULL));

    /* runs */
    lkv_kv_run run;
    memset(&run, 0, sizeof run);
    run.dtype = LKV_DTYPE_F32;
    run.k = c.kbuf;
    run.v = c.vbuf;
    run.n = 10;
    lkv_kv_head_runs heads[4] = {{&run, 1}, {&run, 1}, {&run, 1}, {&run, 1}};
    CHECK_OK(lkv_attn_runs(&p, 2, q, NULL, 9, heads, o, lse, NULL));
    EXPECT_ERR(lkv_attn_runs(&p, 2, q, NULL, 9, NULL, o, lse, NULL), LKV_ERR_INVALID);
    heads[2].n_runs = -1;
    EXPECT_ERR(lkv_attn_runs(&p, 2, q, NULL, 9, heads, o, lse, NULL), LKV_ERR_INVALID);
    heads[2].n_runs = 1;
    heads[3].runs = NULL;
    EXPECT_ERR(lkv_attn_runs(&p, 2, q, NULL, 9, heads, o, lse, NULL), LKV_ERR_INVALID);
    heads[3].runs = &run;
    lkv_kv_run two[2] = {run, run}; /* second run repeats positions 0..9 */
    heads[1].runs = two;
    heads[1].n_runs = 2;
    EXPECT_ERR(lkv_attn_runs(&p, 2, q, NULL, 9, heads, o, lse, NULL), LKV_ERR_INVALID);
    two[1].pos0 = 10;
    CHECK_OK(lkv_attn_runs(&p, 2, q, NULL, 9, heads, o, lse, NULL));
    two[1].dtype = (lkv_dtype)LKV_DTYPE_COUNT_;
    EXPECT_ERR(lkv_attn_runs(&p, 2, q, NULL, 9, heads, o, lse, NULL), LKV_ERR_INVALID);
    two[1].dtype = LKV_DTYPE_F32;
    two[1].k = NULL;
    EXPECT_ERR(lkv_attn_runs(&p, 2, q, NULL, 9, heads, o, lse, NULL), LKV_ERR_INVALID);
#undef EXPECT_ERR
    CHECK(lkv_alloc_bytes_in_use() == before, "bad input leaked %zu bytes",
          lkv_alloc_bytes_in_use() - before);
    contig_free(&c, 4);
}

/* ------------------------------------------------- allocation failures */

static void nop_task(void *arg, int task, int thread) {
    (void)arg;
    (void)task;
    (void)thread;
}

static void test_alloc_failures(lkv_rng *r) {
    lkv_threadpool *tp = NULL;
    CHECK_OK(lkv_threadpool_create(3, &tp));
    /* workers free their start-up argument when they first run: let them start
     * before counting bytes */
    lkv_threadpool_run(tp, 8, nop_task, NULL);
    lkv_attn_params p = params(64, 4, 2, 1);
    int n = 300, n_q = 3;
    contig c = make_contig(r, &p, LKV_DTYPE_F16, n, 0, 0, 1, 1); /* head-major */
    size_t qn = (size_t)n_q * 4;
    float *q = xmalloc(sizeof(float) * qn * 64), *o = xmalloc(sizeof(float) * qn * 64);
    float *o_ok = xmalloc(sizeof(float) * qn * 64), lse[16], obs[600];
    lkv_test_fill_normal(r, q, qn * 64, 1);
    lkv_kv_run run;
    memset(&run, 0, sizeof run);
    run.dtype = LKV_DTYPE_F16;
    run.k = c.kbuf;
    run.v = c.vbuf;
    run.n = n;
    run.obs = obs;
    lkv_kv_run run2 = run; /* head 1: its own keys and observer slots */
    run2.k = (const uint16_t *)c.kbuf + (size_t)n * 64;
    run2.v = (const uint16_t *)c.vbuf + (size_t)n * 64;
    run2.obs = obs + n;
    lkv_kv_head_runs heads[2] = {{&run, 1}, {&run2, 1}};
    for (int api = 0; api < 3; api++) {
        int (*fn)(const lkv_attn_params *, int, const float *, const int32_t *, int32_t,
                  const lkv_kv_tensor *, float *, float *, float *, lkv_threadpool *) =
            api == 1 ? lkv_attn_decode : lkv_attn_prefill;
        int ok = 0, nomem = 0, other = 0;
        for (long fail = 0; fail < 100 && !ok; fail++) {
            size_t before = lkv_alloc_bytes_in_use();
            lkv_alloc_fail_after(fail);
            int rc = api == 2 ? lkv_attn_runs(&p, n_q, q, NULL, n - n_q, heads, o, lse, tp)
                              : fn(&p, n_q, q, NULL, n - n_q, &c.kv, o, lse, obs, tp);
            lkv_alloc_fail_after(-1);
            CHECK(lkv_alloc_bytes_in_use() == before, "api %d fail %ld: leaked %zu bytes", api,
                  fail, lkv_alloc_bytes_in_use() - before);
            if (rc == 0)
                ok = 1;
            else if (rc == LKV_ERR_NOMEM)
                nomem++;
            else
                other++;
        }
        CHECK(ok && nomem >= 1 && other == 0, "api %d: ok %d, %d NOMEM, %d other errors", api,
              ok, nomem, other);
        if (api == 0)
            memcpy(o_ok, o, sizeof(float) * qn * 64);
        else
            CHECK(diff(o, o_ok, qn * 64) <= TOL.same, "api %d after failures: %.3g", api,
                  diff(o, o_ok, qn * 64));
    }
    free(q);
    free(o);
    free(o_ok);
    contig_free(&c, 2);
    lkv_threadpool_free(tp);
}

int main(void) {
    quick = getenv("LONGKV_TEST_QUICK") && atoi(getenv("LONGKV_TEST_QUICK")) != 0;
    lkv_rng r;
    lkv_rng_seed(&r, lkv_test_seed());
    lkv_isa top = lkv_active_isa();
    lkv_set_isa(LKV_ISA_REF);
    {
        char buf[512];
        lkv_kernels_describe(buf, sizeof buf);
        CHECK(strstr(buf, "attn.f16: ref") != NULL, "ref kernels registered:\n%s", buf);
    }
    lkv_threadpool *tp = NULL;
    CHECK_OK(lkv_threadpool_create(2, &tp));

    test_vs_naive(&r, NULL);
    test_vs_naive(&r, tp);
    test_mask_edges(&r, tp);
    test_long(&r, tp);
    test_split_kv(&r);
    test_merge(&r);
    test_observer_sums(&r, tp);
    test_single_key(&r);
    test_layouts(&r, tp);
    test_runs(&r, tp);
    test_runs(&r, NULL);
    test_bad_input(&r);
    test_alloc_failures(&r);
    for (lkv_isa isa = LKV_ISA_AVX2; isa <= top; isa++)
        test_active_isa(&r, tp, isa);

    lkv_threadpool_free(tp);
    lkv_set_isa(top);
    return lkv_test_finish("test_attn_ref");
}
