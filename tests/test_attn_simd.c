/* test_attn_simd.c -- every SIMD attention kernel (block and observer) against
 * the reference table, for every ISA level this machine supports, on seeded
 * random inputs; then the public API under lkv_set_isa().
 *
 * Compared quantities: per row the normalised output o = acc / l and the
 * log-sum-exp lse = m + log l (the raw (m, l, acc) may differ by a common
 * factor when rounding moves the running max), and the observer sums.
 * LONGKV_TEST_QUICK=1 shrinks the sizes (sanitizer runs).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/cpu.h"
#include "kernels/kernels.h"
#include "testutil.h"

/* ------------------------------------------------------------ tolerances */

/* K/V convert exactly to f32 in every kernel, so the dtypes differ only in the
 * inputs; what remains is summation order and the vectorised exp/tanh. */
static const struct {
    double o;     /* max |o - o_ref| / max |o_ref| per case */
    double lse;   /* max |lse - lse_ref| */
    double obs;   /* max |obs - obs_ref| / max(max |obs_ref|, 1) */
    double cap;   /* extra factor on all three when soft-cap is on */
} TOL[LKV_DTYPE_COUNT_] = {
    [LKV_DTYPE_F32] = {2e-5, 2e-5, 2e-5, 4.0},
    [LKV_DTYPE_F16] = {2e-5, 2e-5, 2e-5, 4.0},
    [LKV_DTYPE_BF16] = {2e-5, 2e-5, 2e-5, 4.0},
};

static int quick;
static lkv_rng rng;

/* ------------------------------------------------------------ one case */

typedef struct tcase {
    int d, G, n_tok, n_kv;
    int n_runs;        /* keys cut into this many runs (ragged lengths) */
    int causal, window, n_sink;
    float softcap;
    int pos_gaps;      /* 1: positions with random gaps, given as arrays */
    int strided;       /* 1: kv_stride = 3*d (token-major with 3 heads) */
    int q_offset;      /* query positions start here (keys start at 0) */
    int split_calls;   /* 1: runs folded in two calls (state carried) */
} tcase;

typedef struct tdata {
    float *q;                /* [n_tok][G][d] (q_stride = G*d + 8) */
    size_t q_stride;
    int32_t *q_pos;          /* [n_tok] */
    void *k, *v;             /* [n_kv][stride] of dtype */
    int32_t *k_pos;          /* [n_kv] */
    lkv_kv_run *runs;        /* [n_runs] */
    float *obs_init;         /* [n_kv] */
} tdata;

static void *convert_alloc(lkv_dtype dt, const float *src, size_t n) {
    void *dst = lkv_malloc(n * lkv_dtype_size(dt) + 64);
    lkv_convert_from_f32(dt, dst, src, n);
    return dst;
}

static void make_data(const tcase *c, lkv_dtype dt, tdata *t) {
    size_t stride = c->strided ? 3 * (size_t)c->d : (size_t)c->d;
    t->q_stride = (size_t)c->G * c->d + 8;
    t->q = lkv_malloc(sizeof(float) * (t->q_stride * (size_t)c->n_tok + 8));
    lkv_test_fill_normal(&rng, t->q, t->q_stride * (size_t)c->n_tok, 1.0f);
    size_t nkv = (size_t)(c->n_kv > 0 ? c->n_kv : 1) * stride;
    float *tmp = lkv_malloc(sizeof(float) * nkv);
    lkv_test_fill_normal(&rng, tmp, nkv, 1.0f);
    t->k = convert_alloc(dt, tmp, nkv);
    lkv_test_fill_normal(&rng, tmp, nkv, 1.0f);
    t->v = convert_alloc(dt, tmp, nkv);
    lkv_free(tmp);
    t->k_pos = lkv_malloc(sizeof(int32_t) * (size_t)(c->n_kv + 1));
    int32_t p = 0;
    for (int j = 0; j < c->n_kv; j++) {
        t->k_pos[j] = p;
        p += c->pos_gaps ? 1 + (int)lkv_rng_below(&rng, 3) : 1;
    }
    t->q_pos = lkv_malloc(sizeof(int32_t) * (size_t)c->n_tok);
    int32_t qp = c->q_offset;
    for (int i = 0; i < c->n_tok; i++) {
        t->q_pos[i] = qp;
        qp += c->pos_gaps ? 1 + (int)lkv_rng_below(&rng, 3) : 1;
    }
    /* ragged runs: random cut points */
    t->runs = lkv_calloc((size_t)c->n_runs, sizeof(lkv_kv_run));
    int start = 0;
    size_t es = lkv_dtype_size(dt);
    for (int i = 0; i < c->n_runs; i++) {
        int left = c->n_kv - start, runs_left = c->n_runs - i;
        int n = runs_left == 1 ? left : (int)lkv_rng_below(&rng, (uint64_t)(2 * left / runs_left + 1));
        if (n > left)
            n = left;
        lkv_kv_run *r = &t->runs[i];
        r->dtype = dt;
        r->k = (const char *)t->k + (size_t)start * stride * es;
        r->v = (const char *)t->v + (size_t)start * stride * es;
        r->n = n;
        if (c->pos_gaps)
            r->pos = t->k_pos + start;
        else
            r->pos0 = start;
        start += n;
    }
    t->obs_init = lkv_malloc(sizeof(float) * (size_t)(c->n_kv + 1));
    for (int j = 0; j < c->n_kv; j++)
        t->obs_init[j] = (float)lkv_rng_uniform(&rng);
}

static void free_data(tdata *t) {
    lkv_free(t->q);
    lkv_free(t->q_pos);
    lkv_free(t->k);
    lkv_free(t->v);
    lkv_free(t->k_pos);
    lkv_free(t->runs);
    lkv_free(t->obs_init);
}

/* Runs one table's block + observer kernels; outputs o [rows][d], lse [rows],
 * obs [n_kv]. */
static void run_kernels(const lkv_kernel_table *kt, lkv_dtype dt, const tcase *c, const tdata *t,
                        const float *lse_for_obs, float *o, float *lse, float *obs) {
    int rows = c->n_tok * c->G;
    lkv_attn_block b;
    memset(&b, 0, sizeof b);
    b.d = c->d;
    b.G = c->G;
    b.n_rows = rows;
    b.q = t->q;
    b.q_stride = t->q_stride;
    b.q_pos = t->q_pos;
    b.scale = 1.0f / sqrtf((float)c->d);
    b.softcap = c->softcap;
    b.causal = c->causal;
    b.window = c->window;
    b.n_sink = c->n_sink;
    b.kv_stride = c->strided ? 3 * (size_t)c->d : 0;
    b.m = lkv_malloc(sizeof(float) * (size_t)rows);
    b.l = lkv_malloc(sizeof(float) * (size_t)rows);
    b.acc = lkv_malloc(sizeof(float) * (size_t)rows * c->d);
    for (int r = 0; r < rows; r++) {
        b.m[r] = -INFINITY;
        b.l[r] = 0.0f;
    }
    memset(b.acc, 0, sizeof(float) * (size_t)rows * c->d);
    if (c->split_calls && c->n_runs > 1) {
        int h = c->n_runs / 2;
        kt->attn[dt](&b, t->runs, h);
        kt->attn[dt](&b, t->runs + h, c->n_runs - h);
    } else {
        kt->attn[dt](&b, t->runs, c->n_runs);
    }
    for (int r = 0; r < rows; r++) {
        float l = b.l[r];
        lse[r] = l > 0 ? b.m[r] + logf(l) : -INFINITY;
        for (int i = 0; i < c->d; i++)
            o[(size_t)r * c->d + i] = l > 0 ? b.acc[(size_t)r * c->d + i] / l : 0.0f;
    }
    /* observer with the given lse (the reference's, so both see the same) */
    if (lse_for_obs) {
        lkv_kv_run *runs = lkv_malloc(sizeof(lkv_kv_run) * (size_t)c->n_runs);
        memcpy(runs, t->runs, sizeof(lkv_kv_run) * (size_t)c->n_runs);
        memcpy(obs, t->obs_init, sizeof(float) * (size_t)c->n_kv);
        int start = 0;
        for (int i = 0; i < c->n_runs; i++) {
            runs[i].obs = (i % 5 == 3) ? NULL : obs + start; /* some runs unobserved */
            start += runs[i].n;
        }
        kt->attn_observe[dt](&b, lse_for_obs, runs, c->n_runs);
        lkv_free(runs);
    }
    lkv_free(b.m);
    lkv_free(b.l);
    lkv_free(b.acc);
}

static int case_id;

static void check_case(const lkv_kernel_table *ref, const lkv_kernel_table *kt, lkv_isa level,
                       lkv_dtype dt, const tcase *c) {
    tdata t;
    make_data(c, dt, &t);
    int rows = c->n_tok * c->G;
    size_t on = (size_t)rows * c->d;
    float *o_ref = lkv_malloc(sizeof(float) * on), *o = lkv_malloc(sizeof(float) * on);
    float *lse_ref = lkv_malloc(sizeof(float) * (size_t)rows);
    float *lse = lkv_malloc(sizeof(float) * (size_t)rows);
    float *obs_ref = lkv_malloc(sizeof(float) * (size_t)(c->n_kv + 1));
    float *obs = lkv_malloc(sizeof(float) * (size_t)(c->n_kv + 1));
    run_kernels(ref, dt, c, &t, NULL, o_ref, lse_ref, NULL);
    run_kernels(ref, dt, c, &t, lse_ref, o_ref, lse_ref, obs_ref);
    run_kernels(kt, dt, c, &t, lse_ref, o, lse, obs);

    double f = c->softcap > 0 ? TOL[dt].cap : 1.0;
    double e_o = lkv_test_rel_err(o, o_ref, on, 1e-6);
    double e_lse = 0;
    int inf_mismatch = 0;
    for (int r = 0; r < rows; r++) {
        if (isinf(lse_ref[r]) || isinf(lse[r])) {
            inf_mismatch += !(isinf(lse_ref[r]) && isinf(lse[r]));
            continue;
        }
        double e = fabs((double)lse[r] - lse_ref[r]);
        if (e > e_lse || e != e)
            e_lse = e;
    }
    double e_obs = c->n_kv ? lkv_test_rel_err(obs, obs_ref, (size_t)c->n_kv, 1.0) : 0.0;
    CHECK(e_o <= TOL[dt].o * f && e_lse <= TOL[dt].lse * f && e_obs <= TOL[dt].obs * f &&
              !inf_mismatch,
          "case %d %s/%s d=%d G=%d n_tok=%d n_kv=%d runs=%d causal=%d window=%d sink=%d "
          "cap=%g gaps=%d strided=%d split=%d: err o=%.3g lse=%.3g obs=%.3g inf-mismatch=%d",
          case_id, lkv_isa_name(level), lkv_dtype_name(dt), c->d, c->G, c->n_tok, c->n_kv,
          c->n_runs, c->causal, c->window, c->n_sink, (double)c->softcap, c->pos_gaps,
          c->strided, c->split_calls, e_o, e_lse, e_obs, inf_mismatch);
    case_id++;
    lkv_free(o_ref);
    lkv_free(o);
    lkv_free(lse_ref);
    lkv_free(lse);
    lkv_free(obs_ref);
    lkv_free(obs);
    free_data(&t);
}

/* A random case with the given shape; masks and options drawn at random. */
static tcase random_case(int d, int G, int n_tok, int n_kv) {
    tcase c;
    memset(&c, 0, sizeof c);
    c.d = d;
    c.G = G;
    c.n_tok = n_tok;
    c.n_kv = n_kv;
    c.n_runs = 1 + (int)lkv_rng_below(&rng, 5);
    c.causal = lkv_rng_below(&rng, 4) != 0;
    if (lkv_rng_below(&rng, 3) == 0) {
        c.window = 1 + (int)lkv_rng_below(&rng, (uint64_t)(n_kv > 1 ? n_kv : 2));
        c.n_sink = (int)lkv_rng_below(&rng, 6);
    }
    c.softcap = lkv_rng_below(&rng, 4) == 0 ? 5.0f + 45.0f * (float)lkv_rng_uniform(&rng) : 0.0f;
    c.pos_gaps = lkv_rng_below(&rng, 4) == 0;
    c.strided = lkv_rng_below(&rng, 3) == 0;
    c.split_calls = lkv_rng_below(&rng, 2) == 0;
    /* queries at the end of the keys (decode / chunked prefill) */
    c.q_offset = n_kv - n_tok > 0 ? n_kv - n_tok : 0;
    if (c.pos_gaps)
        c.q_offset *= 2;
    return c;
}

static void test_level(const lkv_kernel_table *ref, lkv_isa level) {
    lkv_kernel_table kt;
    lkv_kernels_build(&kt, level);
    for (int dt = 0; dt < LKV_DTYPE_COUNT_; dt++)
        printf("  attn.%s: %s, attn_observe.%s: %s\n", lkv_dtype_name((lkv_dtype)dt),
               lkv_isa_name(kt.attn_isa[dt]), lkv_dtype_name((lkv_dtype)dt),
               lkv_isa_name(kt.attn_observe_isa[dt]));
    static const int dims[] = {8, 16, 64, 80, 128, 256};
    static const int groups[] = {1, 3, 4, 8};
    static const int kvs[] = {1, 7, 33, 100, 1029};
    static const int toks[] = {1, 2, 5, 16, 70};
    for (int dt = 0; dt <= LKV_DTYPE_BF16; dt++) { /* plain dtypes; quantized: test_kv_quant.c */
        /* edge cases first */
        tcase c = random_case(64, 4, 1, 1);
        c.causal = 1;
        c.q_offset = 0;
        check_case(ref, &kt, level, (lkv_dtype)dt, &c); /* one key */
        c = random_case(64, 3, 4, 40);
        c.causal = 1;
        c.window = 0;
        c.q_offset = 0; /* query 0 sees one key, rows carry the diagonal */
        check_case(ref, &kt, level, (lkv_dtype)dt, &c);
        c = random_case(128, 2, 3, 50);
        c.causal = 0;
        c.window = 4;
        c.n_sink = 0;
        c.q_offset = 200; /* every key out of the window: fully masked rows */
        check_case(ref, &kt, level, (lkv_dtype)dt, &c);
        c.n_sink = 3; /* only the sinks visible */
        check_case(ref, &kt, level, (lkv_dtype)dt, &c);
        c = random_case(64, 8, 3, 0); /* no keys at all */
        c.n_runs = 2;
        check_case(ref, &kt, level, (lkv_dtype)dt, &c);
        c = random_case(64, 4, 2, 300);
        c.softcap = 1.0f; /* strong cap: logits saturate */
        check_case(ref, &kt, level, (lkv_dtype)dt, &c);
        /* paged decode: many runs of 0..4 keys (key blocks span runs) */
        static const int paged_dims[] = {64, 80, 24, 128};
        for (int i = 0; i < 4; i++) {
            c = random_case(paged_dims[i], 1 + i, 1, 150);
            c.n_runs = 75;
            check_case(ref, &kt, level, (lkv_dtype)dt, &c);
        }

        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
            for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++)
                for (size_t ki = 0; ki < sizeof kvs / sizeof kvs[0]; ki++) {
                    int n_kv = kvs[ki];
                    if (quick && n_kv > 100)
                        n_kv = 100 + (int)(kvs[ki] % 37);
                    int ti = (int)lkv_rng_below(&rng, sizeof toks / sizeof toks[0]);
                    int n_tok = toks[ti];
                    if (quick && n_tok > 16)
                        n_tok = 16;
                    if (ki % 2 == 0)
                        n_tok = 1; /* decode shape in every other case */
                    tcase rc = random_case(dims[di], groups[gi], n_tok, n_kv);
                    check_case(ref, &kt, level, (lkv_dtype)dt, &rc);
                }
        /* prefill shapes: many rows, causal, long keys */
        int big = quick ? 96 : 600;
        tcase pc = random_case(128, 4, big, big);
        pc.causal = 1;
        pc.q_offset = 0;
        pc.window = 0;
        check_case(ref, &kt, level, (lkv_dtype)dt, &pc);
        pc = random_case(64, 3, big / 2, big);
        check_case(ref, &kt, level, (lkv_dtype)dt, &pc);
        pc = random_case(80, 1, 64, big);
        pc.window = 37;
        pc.n_sink = 4;
        check_case(ref, &kt, level, (lkv_dtype)dt, &pc);
        pc = random_case(256, 2, 40, 300);
        check_case(ref, &kt, level, (lkv_dtype)dt, &pc);
    }
}

/* ------------------------------------------------------- through the API */

static void test_api(lkv_isa level) {
    int d = 64, H = 6, Hk = 2, n_kv = quick ? 150 : 700, n_q = quick ? 20 : 90;
    lkv_attn_params p = lkv_attn_default_params();
    p.head_dim = d;
    p.q_heads = H;
    p.kv_heads = Hk;
    size_t kn = (size_t)n_kv * Hk * d;
    float *kf = lkv_malloc(sizeof(float) * kn), *vf = lkv_malloc(sizeof(float) * kn);
    float *q = lkv_malloc(sizeof(float) * (size_t)n_q * H * d);
    lkv_test_fill_normal(&rng, kf, kn, 1.0f);
    lkv_test_fill_normal(&rng, vf, kn, 1.0f);
    lkv_test_fill_normal(&rng, q, (size_t)n_q * H * d, 1.0f);
    size_t on = (size_t)n_q * H * d;
    float *o_ref = lkv_malloc(sizeof(float) * on), *o = lkv_malloc(sizeof(float) * on);
    float *lse_ref = lkv_malloc(sizeof(float) * (size_t)n_q * H);
    float *lse = lkv_malloc(sizeof(float) * (size_t)n_q * H);
    float *obs_ref = lkv_calloc((size_t)Hk * n_kv, sizeof(float));
    float *obs = lkv_calloc((size_t)Hk * n_kv, sizeof(float));
    for (int dt = 0; dt <= LKV_DTYPE_BF16; dt++) { /* quantized: test_kv_quant.c */
        lkv_kv_tensor kv;
        memset(&kv, 0, sizeof kv);
        kv.dtype = (lkv_dtype)dt;
        kv.k = convert_alloc((lkv_dtype)dt, kf, kn);
        kv.v = convert_alloc((lkv_dtype)dt, vf, kn);
        kv.n = n_kv;
        kv.token_stride = (size_t)Hk * d; /* token-major [n][Hk][d] */
        kv.head_stride = (size_t)d;
        for (int decode = 0; decode < 2; decode++) {
            int nq = decode ? 1 : n_q;
            int32_t q0 = n_kv - nq;
            memset(obs_ref, 0, sizeof(float) * (size_t)Hk * n_kv);
            memset(obs, 0, sizeof(float) * (size_t)Hk * n_kv);
            lkv_set_isa(LKV_ISA_REF);
            int (*fn)(const lkv_attn_params *, int, const float *, const int32_t *, int32_t,
                      const lkv_kv_tensor *, float *, float *, float *, lkv_threadpool *) =
                decode ? lkv_attn_decode : lkv_attn_prefill;
            CHECK_OK(fn(&p, nq, q, NULL, q0, &kv, o_ref, lse_ref, obs_ref, NULL));
            lkv_set_isa(level);
            CHECK_OK(fn(&p, nq, q, NULL, q0, &kv, o, lse, obs, NULL));
            size_t n = (size_t)nq * H * d;
            double e_o = lkv_test_rel_err(o, o_ref, n, 1e-6);
            double e_l = lkv_test_max_abs_err(lse, lse_ref, (size_t)nq * H);
            double e_b = lkv_test_rel_err(obs, obs_ref, (size_t)Hk * n_kv, 1.0);
            CHECK(e_o <= TOL[dt].o && e_l <= TOL[dt].lse && e_b <= TOL[dt].obs,
                  "api %s %s %s: err o=%.3g lse=%.3g obs=%.3g", lkv_isa_name(level),
                  lkv_dtype_name((lkv_dtype)dt), decode ? "decode" : "prefill", e_o, e_l, e_b);
        }
        lkv_free((void *)kv.k);
        lkv_free((void *)kv.v);
    }
    lkv_set_isa(lkv_cpu_isa());
    lkv_free(kf);
    lkv_free(vf);
    lkv_free(q);
    lkv_free(o_ref);
    lkv_free(o);
    lkv_free(lse_ref);
    lkv_free(lse);
    lkv_free(obs_ref);
    lkv_free(obs);
}

int main(void) {
    const char *e = getenv("LONGKV_TEST_QUICK");
    quick = e && *e && strcmp(e, "0") != 0;
    lkv_rng_seed(&rng, lkv_test_seed());
    lkv_kernel_table ref;
    lkv_kernels_build(&ref, LKV_ISA_REF);
    static const lkv_isa levels[] = {LKV_ISA_REF, LKV_ISA_AVX2, LKV_ISA_AVX512};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        lkv_isa level = levels[i];
        if (level > lkv_cpu_isa()) {
            printf("%s: skipped (the CPU supports up to %s)\n", lkv_isa_name(level),
                   lkv_isa_name(lkv_cpu_isa()));
            continue;
        }
        printf("%s: testing attention kernels%s\n", lkv_isa_name(level),
               quick ? " (quick)" : "");
        test_level(&ref, level);
        test_api(level);
    }
    return lkv_test_finish("test_attn_simd");
}
