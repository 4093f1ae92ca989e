/* test_kv_quant.c -- quantized KV pages (int8 per token, KIVI 4/2-bit):
 * round-trip bounds, fused attention kernels (every ISA the machine supports)
 * against dequantize-then-reference, mixed page lists, lkv_seq_convert
 * (forks, memory), and the int8 / kivi presses.
 * Seeded (LONGKV_TEST_SEED); LONGKV_TEST_QUICK=1 shrinks sizes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/fp16.h"
#include "kernels/kernels.h"
#include "kernels/kv_quant.h"
#include "press/press.h"
#include "testutil.h"

static lkv_rng rng;
static int quick;

static const lkv_dtype QT[3] = {LKV_DTYPE_Q8, LKV_DTYPE_KIVI4, LKV_DTYPE_KIVI2};

/* ------------------------------------------------------------ round trip */

static void test_round_trip(void) {
    static const int dims[] = {8, 64, 80, 128, 256};
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        int d = dims[di], n = 32;
        float *k = malloc(sizeof(float) * n * d), *v = malloc(sizeof(float) * n * d);
        float *k2 = malloc(sizeof(float) * n * d), *v2 = malloc(sizeof(float) * n * d);
        lkv_test_fill_normal(&rng, k, (size_t)n * d, 2.0f);
        lkv_test_fill_normal(&rng, v, (size_t)n * d, 1.0f);
        k[3] = 40.0f; /* an outlier channel value */
        for (int qi = 0; qi < 3; qi++) {
            lkv_dtype dt = QT[qi];
            size_t rb = lkv_kvq_row_bytes(dt, d);
            uint8_t *kc = calloc((size_t)n, rb), *vc = calloc((size_t)n, rb);
            uint16_t *ka = calloc((size_t)n * 2 + 2 * (size_t)d, 2);
            uint16_t *va = calloc((size_t)n * 2 * (size_t)lkv_kvq_vgroups(d), 2);
            int bits = lkv_kvq_bits(dt);
            if (!bits) {
                for (int t = 0; t < n; t++) {
                    lkv_kvq_encode_q8_row(k + t * d, d, (int8_t *)kc + t * rb, ka + t);
                    lkv_kvq_encode_q8_row(v + t * d, d, (int8_t *)vc + t * rb, va + t);
                }
            } else {
                lkv_kvq_encode_kivi_keys(bits, d, n, k, (size_t)d, kc, ka);
                for (int t = 0; t < n; t++)
                    lkv_kvq_encode_kivi_vrow(bits, d, v + t * d, t, vc, va);
            }
            lkv_kvq_decode(dt, d, kc, ka, vc, va, 0, n, k2, v2);
            int bad = 0;
            double worst = 0;
            for (int t = 0; t < n; t++)
                for (int c = 0; c < d; c++) {
                    float ks, vs;
                    if (!bits) {
                        ks = lkv_half_to_float(ka[t]);
                        vs = lkv_half_to_float(va[t]);
                    } else {
                        ks = lkv_half_to_float(ka[c]);
                        vs = lkv_half_to_float(va[lkv_kvq_vaux_index(d, t, c / 32, 0)]);
                    }
                    /* the bound: half the stored scale (+ f32 rounding) */
                    double ek = fabs(k[t * d + c] - k2[t * d + c]), ev = fabs(v[t * d + c] - v2[t * d + c]);
                    double bk = ks / 2 * (1 + 1e-5) + 1e-6 * fabs(k[t * d + c]) + 1e-7;
                    double bv = vs / 2 * (1 + 1e-5) + 1e-6 * fabs(v[t * d + c]) + 1e-7;
                    bad += ek > bk || ev > bv;
                    worst = ek / bk > worst ? ek / bk : worst;
                    worst = ev / bv > worst ? ev / bv : worst;
                }
            CHECK(bad == 0, "%s d=%d: %d elements beyond scale/2 (worst %.3f of the bound)",
                  lkv_dtype_name(dt), d, bad, worst);
            free(kc);
            free(vc);
            free(ka);
            free(va);
        }
        free(k);
        free(v);
        free(k2);
        free(v2);
    }
    /* constant channel: scale 0, exact up to the half rounding of the min */
    float x[64], y[64];
    for (int c = 0; c < 64; c++)
        x[c] = 0.3f;
    uint8_t codes[16 * 16] = {0}; /* one tile of 16-byte rows */
    uint16_t aux[16 * 2 * 2] = {0};
    lkv_kvq_encode_kivi_vrow(2, 64, x, 0, codes, aux);
    lkv_kvq_decode(LKV_DTYPE_KIVI2, 64, codes, aux, codes, aux, 0, 1, NULL, y);
    CHECK(fabsf(y[5] - 0.3f) <= 0.3f / 1024, "constant row: %g", (double)y[5]);
}

/* ------------------------------------------------------------ fused kernels */

/* Quantized runs of one KV head: pages of P tokens, each its own run (a run
 * never spans two KIVI key groups), plus the dequantized f32 copy as runs. */
typedef struct qhead {
    int n, P, n_runs;
    uint8_t *kc, *vc;   /* [n][rb] */
    uint16_t *ka, *va;  /* Q8: [n]; KIVI: k [pages][2][d], v [n][ng][2] */
    float *kd, *vd;     /* [n][d] dequantized */
    int32_t *pos;       /* [n] */
    lkv_kv_run *qr, *fr;
    float *obs_q, *obs_f;
} qhead;

static void qhead_make(qhead *h, lkv_dtype dt, int d, int n, int P, int gaps) {
    memset(h, 0, sizeof *h);
    h->n = n;
    h->P = P;
    size_t rb = lkv_kvq_row_bytes(dt, d);
    int ng = lkv_kvq_vgroups(d), bits = lkv_kvq_bits(dt);
    int pages = (n + P - 1) / P;
    const size_t slots = (size_t)lkv_kvq_slots(dt, n) + LKV_KVQ_TILE; /* whole tiles */
    h->kc = calloc(slots, rb);
    h->vc = calloc(slots, rb);
    h->ka = calloc((size_t)n + (size_t)(pages + 1) * 2 * d, 2);
    h->va = calloc(slots * 2 * ng, 2);
    h->kd = calloc((size_t)n * d + 1, 4);
    h->vd = calloc((size_t)n * d + 1, 4);
    h->pos = calloc((size_t)n + 1, 4);
    h->qr = calloc((size_t)pages + 1, sizeof(lkv_kv_run));
    h->fr = calloc((size_t)pages + 1, sizeof(lkv_kv_run));
    h->obs_q = calloc((size_t)n + 1, 4);
    h->obs_f = calloc((size_t)n + 1, 4);
    float *k = malloc(sizeof(float) * ((size_t)n * d + 1)), *v = malloc(sizeof(float) * ((size_t)n * d + 1));
    lkv_test_fill_normal(&rng, k, (size_t)n * d, 1.0f);
    lkv_test_fill_normal(&rng, v, (size_t)n * d, 1.0f);
    for (int t = 0; t < n; t++) /* per-channel offsets, as real keys have */
        for (int c = 0; c < d; c++)
            k[(size_t)t * d + c] += (float)((c * 7) % 5) - 2.0f;
    int32_t p = 0;
    for (int t = 0; t < n; t++) {
        h->pos[t] = p;
        p += gaps ? 1 + (int32_t)lkv_rng_below(&rng, 3) : 1;
    }
    for (int pg = 0; pg < pages; pg++) {
        int t0 = pg * P, m = n - t0 < P ? n - t0 : P;
        lkv_kv_run *r = &h->qr[pg];
        r->dtype = dt;
        r->k = h->kc + (size_t)t0 * rb;
        r->v = h->vc + (size_t)t0 * rb;
        r->pos = h->pos + t0;
        r->n = m;
        r->obs = h->obs_q + t0;
        if (!bits) {
            for (int t = t0; t < t0 + m; t++) {
                lkv_kvq_encode_q8_row(k + (size_t)t * d, d, (int8_t *)h->kc + t * rb, h->ka + t);
                lkv_kvq_encode_q8_row(v + (size_t)t * d, d, (int8_t *)h->vc + t * rb, h->va + t);
            }
            r->k_aux = h->ka + t0;
            r->v_aux = h->va + t0;
        } else {
            uint16_t *ka = h->ka + (size_t)pg * 2 * d;
            lkv_kvq_encode_kivi_keys(bits, d, m, k + (size_t)t0 * d, (size_t)d, h->kc + t0 * rb, ka);
            r->k_aux = ka;
            r->v_aux = h->va + (size_t)t0 * 2 * ng; /* t0: a multiple of the tile */
            for (int t = t0; t < t0 + m; t++)
                lkv_kvq_encode_kivi_vrow(bits, d, v + (size_t)t * d, t - t0, h->vc + t0 * rb,
                                         h->va + (size_t)t0 * 2 * ng);
        }
        lkv_kvq_decode(dt, d, r->k, r->k_aux, r->v, r->v_aux, 0, m, h->kd + (size_t)t0 * d,
                       h->vd + (size_t)t0 * d);
        lkv_kv_run *f = &h->fr[pg];
        f->dtype = LKV_DTYPE_F32;
        f->k = h->kd + (size_t)t0 * d;
        f->v = h->vd + (size_t)t0 * d;
        f->pos = h->pos + t0;
        f->n = m;
        f->obs = h->obs_f + t0;
    }
    h->n_runs = pages;
    free(k);
    free(v);
}

static void qhead_free(qhead *h) {
    free(h->kc); free(h->vc); free(h->ka); free(h->va); free(h->kd); free(h->vd);
    free(h->pos); free(h->qr); free(h->fr); free(h->obs_q); free(h->obs_f);
}

/* One case: Hk heads of n keys in pages of P; n_q queries at the end. */
static void check_fused(lkv_isa level, lkv_dtype dt, int d, int G, int Hk, int n, int n_q, int P,
                        int observe, lkv_threadpool *tp) {
    qhead *hs = calloc((size_t)Hk, sizeof *hs);
    lkv_kv_head_runs *hq = calloc((size_t)Hk, sizeof *hq), *hf = calloc((size_t)Hk, sizeof *hf);
    int gaps = lkv_rng_below(&rng, 3) == 0;
    int32_t last = 0;
    for (int h = 0; h < Hk; h++) {
        qhead_make(&hs[h], dt, d, n, P, gaps);
        hq[h].runs = hs[h].qr;
        hq[h].n_runs = hs[h].n_runs;
        hf[h].runs = hs[h].fr;
        hf[h].n_runs = hs[h].n_runs;
        if (!observe)
            for (int i = 0; i < hs[h].n_runs; i++)
                hs[h].qr[i].obs = hs[h].fr[i].obs = NULL;
        if (n && hs[h].pos[n - 1] > last)
            last = hs[h].pos[n - 1];
    }
    int H = G * Hk;
    lkv_attn_params p = lkv_attn_default_params();
    p.head_dim = d;
    p.q_heads = H;
    p.kv_heads = Hk;
    p.causal = 1;
    if (lkv_rng_below(&rng, 4) == 0) {
        p.window = 1 + (int)lkv_rng_below(&rng, (uint64_t)n + 2);
        p.n_sink = (int)lkv_rng_below(&rng, 5);
    }
    if (lkv_rng_below(&rng, 5) == 0)
        p.softcap = 20.0f;
    float *q = malloc(sizeof(float) * (size_t)n_q * H * d);
    float *o_q = calloc((size_t)n_q * H * d, 4), *o_f = calloc((size_t)n_q * H * d, 4);
    float *l_q = calloc((size_t)n_q * H, 4), *l_f = calloc((size_t)n_q * H, 4);
    lkv_test_fill_normal(&rng, q, (size_t)n_q * H * d, 1.0f);
    if (n_q > last + 1)
        n_q = last + 1;
    int32_t q0 = last - n_q + 1;
    lkv_set_isa(LKV_ISA_REF);
    CHECK_OK(lkv_attn_runs(&p, n_q, q, NULL, q0, hf, o_f, l_f, tp));
    lkv_set_isa(level);
    CHECK_OK(lkv_attn_runs(&p, n_q, q, NULL, q0, hq, o_q, l_q, tp));
    double e = lkv_test_rel_err(o_q, o_f, (size_t)n_q * H * d, 1e-3);
    /* The SIMD KIVI kernels take their dot products in integers: q o kscale
     * rounded to int16 per run, p o vscale per row and block (2^-15 of the
     * largest term; up to 2.2e-4 measured here). The float paths stay within
     * 2e-4; a wrong code or layout is off by far more than either. */
    const double tol = level != LKV_ISA_REF && lkv_kvq_bits(dt) ? 1e-3 : 2e-4;
    double el = 0;
    for (int i = 0; i < n_q * H; i++)
        if (isfinite(l_f[i]) || isfinite(l_q[i]))
            el = fmax(el, fabs((double)l_q[i] - l_f[i]));
    CHECK(e < tol && el < tol, "%s %s d=%d G=%d Hk=%d n=%d n_q=%d P=%d win=%d cap=%g: rel err %.3g, lse err %.3g",
          lkv_isa_name(level), lkv_dtype_name(dt), d, G, Hk, n, n_q, P, p.window,
          (double)p.softcap, e, el);
    if (observe)
        for (int h = 0; h < Hk; h++) {
            double eo = lkv_test_rel_err(hs[h].obs_q, hs[h].obs_f, (size_t)n, 1e-3);
            CHECK(eo < tol, "%s %s observer d=%d G=%d n=%d: rel err %.3g", lkv_isa_name(level),
                  lkv_dtype_name(dt), d, G, n, eo);
        }
    for (int h = 0; h < Hk; h++)
        qhead_free(&hs[h]);
    free(hs); free(hq); free(hf); free(q); free(o_q); free(o_f); free(l_q); free(l_f);
}

static void test_fused(lkv_threadpool *tp) {
    lkv_isa top = lkv_cpu_isa();
    static const int dims[] = {64, 128, 80, 256};
    static const int Gs[] = {1, 3, 4};
    for (int lv = LKV_ISA_REF; lv <= (int)top; lv++) {
        lkv_kernel_table kt;
        lkv_kernels_build(&kt, (lkv_isa)lv);
        int news = 0; /* a level without quantized attention kernels of its own repeats the one below */
        for (int qi = 0; qi < 3; qi++)
            news |= kt.attn_isa[QT[qi]] == (lkv_isa)lv;
        if (!news)
            continue;
        printf("  level %s: attn.q8 %s, attn.kivi4 %s, attn.kivi2 %s\n", lkv_isa_name((lkv_isa)lv),
               lkv_isa_name(kt.attn_isa[LKV_DTYPE_Q8]), lkv_isa_name(kt.attn_isa[LKV_DTYPE_KIVI4]),
               lkv_isa_name(kt.attn_isa[LKV_DTYPE_KIVI2]));
        for (int qi = 0; qi < 3; qi++)
            for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
                for (size_t gi = 0; gi < sizeof Gs / sizeof Gs[0]; gi++) {
                    int d = dims[di];
                    if (quick && d == 256)
                        continue;
                    int n = quick ? 37 + (int)lkv_rng_below(&rng, 60) : 61 + (int)lkv_rng_below(&rng, 400);
                    n |= 1; /* odd token counts */
                    int P = lkv_rng_below(&rng, 2) ? 32 : 16;
                    int n_q = lkv_rng_below(&rng, 3) == 0 ? 1 + (int)lkv_rng_below(&rng, 40) : 1;
                    check_fused((lkv_isa)lv, QT[qi], d, Gs[gi], 1 + (int)(gi % 2), n, n_q, P,
                                (int)(gi == 1), tp);
                }
    }
    lkv_set_isa(top);
}

/* ------------------------------------------------------------ the cache */

static lkv_cache *make_cache(int d, int Hk, int pt, lkv_dtype dt) {
    return lkv_test_cache(2, Hk, d, pt, dt, (size_t)256 << 20, 0);
}

static void fill_seq(lkv_seq *s, int n, int d, int Hk) {
    float *k = malloc(sizeof(float) * (size_t)n * Hk * d), *v = malloc(sizeof(float) * (size_t)n * Hk * d);
    lkv_test_fill_normal(&rng, k, (size_t)n * Hk * d, 1.0f);
    lkv_test_fill_normal(&rng, v, (size_t)n * Hk * d, 1.0f);
    for (int l = 0; l < 2; l++)
        CHECK_OK(lkv_seq_append(s, l, n, NULL, k, v));
    free(k);
    free(v);
}

/* Attention over the cache (mixed pages) vs over its decoded contents (one
 * f32 run per head, heads may differ in length). */
static void check_seq_attention(lkv_seq *s, int layer, int d, int Hk, int G, lkv_threadpool *tp) {
    int n = lkv_seq_max_tokens(s, layer), H = Hk * G, n_q = 3;
    float *k = calloc((size_t)n * d * Hk + 1, 4), *v = calloc((size_t)n * d * Hk + 1, 4);
    int32_t *pos = calloc((size_t)n * Hk + 1, 4);
    lkv_kv_run *runs = calloc((size_t)Hk, sizeof *runs);
    lkv_kv_head_runs *heads = calloc((size_t)Hk, sizeof *heads);
    float *obs1 = calloc((size_t)Hk * n + 1, 4), *obs2 = calloc((size_t)Hk * n + 1, 4);
    int32_t last = 0;
    for (int h = 0; h < Hk; h++) {
        int nh = lkv_seq_n_tokens(s, layer, h);
        CHECK_OK(lkv_seq_read(s, layer, h, 0, nh, k + (size_t)h * n * d, v + (size_t)h * n * d));
        CHECK_OK(lkv_seq_get_positions(s, layer, h, 0, nh, pos + (size_t)h * n));
        runs[h].dtype = LKV_DTYPE_F32;
        runs[h].k = k + (size_t)h * n * d;
        runs[h].v = v + (size_t)h * n * d;
        runs[h].pos = pos + (size_t)h * n;
        runs[h].n = nh;
        runs[h].obs = obs2 + (size_t)h * n;
        heads[h].runs = &runs[h];
        heads[h].n_runs = 1;
        if (nh && pos[(size_t)h * n + nh - 1] > last)
            last = pos[(size_t)h * n + nh - 1];
    }
    lkv_attn_params p = lkv_attn_default_params();
    p.head_dim = d;
    p.q_heads = H;
    p.kv_heads = Hk;
    float *q = malloc(sizeof(float) * (size_t)n_q * H * d);
    lkv_test_fill_normal(&rng, q, (size_t)n_q * H * d, 1.0f);
    float *o1 = calloc((size_t)n_q * H * d, 4), *o2 = calloc((size_t)n_q * H * d, 4);
    CHECK_OK(lkv_seq_attend_observe(s, layer, &p, n_q, q, NULL, o1, NULL, obs1, n, tp));
    CHECK_OK(lkv_attn_runs(&p, n_q, q, NULL, last - n_q + 1, heads, o2, NULL, tp));
    double e = lkv_test_rel_err(o1, o2, (size_t)n_q * H * d, 1e-3);
    double eo = lkv_test_rel_err(obs1, obs2, (size_t)Hk * n, 1e-3);
    /* KIVI pages go through the integer kernels: the tolerance of check_fused */
    CHECK(e < 1e-3 && eo < 1e-3, "paged mixed attention vs decoded: rel err %.3g, observer %.3g", e, eo);
    free(k); free(v); free(pos); free(q); free(o1); free(o2); free(obs1); free(obs2);
    free(runs); free(heads);
}

static size_t committed(lkv_cache *c) {
    lkv_cache_stats st;
    lkv_cache_get_stats(c, &st);
    return st.committed;
}

static void test_convert(lkv_threadpool *tp) {
    const int d = 64, Hk = 3, pt = 32, G = 3;
    int n = quick ? 32 * 8 + 5 : 32 * 64 + 5;
    /* mixed list: old pages KIVI-2, a few KIVI-4, residual exact; fork unchanged */
    lkv_cache *c = make_cache(d, Hk, pt, LKV_DTYPE_F16);
    lkv_seq *s, *f;
    CHECK_OK(lkv_seq_create(c, &s));
    fill_seq(s, n, d, Hk);
    CHECK_OK(lkv_seq_fork(s, &f));
    float *before = malloc(sizeof(float) * (size_t)n * d), *after = malloc(sizeof(float) * (size_t)n * d);
    CHECK_OK(lkv_seq_read(f, 0, 1, 0, n, before, NULL));
    size_t c0 = committed(c);
    int np = lkv_seq_n_pages(s, 0, 0);
    for (int h = 0; h < Hk; h++) {
        CHECK_OK(lkv_seq_convert(s, 0, h, 0, np - 4, LKV_DTYPE_KIVI2));
        CHECK_OK(lkv_seq_convert(s, 0, h, np - 4, 2, LKV_DTYPE_KIVI4));
    }
    CHECK(lkv_seq_convert(s, 0, 0, np - 1, 1, LKV_DTYPE_KIVI2) == LKV_ERR_RANGE,
          "a partial page cannot become KIVI");
    CHECK(committed(c) >= c0, "shared pages: the fork still holds the f16 pages");
    CHECK_OK(lkv_seq_read(f, 0, 1, 0, n, after, NULL));
    CHECK(memcmp(before, after, sizeof(float) * (size_t)n * d) == 0, "fork unchanged by convert");
    lkv_page_info pi;
    CHECK_OK(lkv_seq_page_info(f, 0, 1, 0, &pi));
    CHECK(pi.format == LKV_DTYPE_F16, "fork's page 0 stays f16 (%d)", pi.format);
    CHECK_OK(lkv_seq_page_info(s, 0, 1, 0, &pi));
    CHECK(pi.format == LKV_DTYPE_KIVI2, "seq's page 0 is kivi2 (%d)", pi.format);
    /* digest bounds the stored keys (Quest) */
    float kr[64];
    int ok = 1;
    for (int t = 0; t < pt; t++) {
        CHECK_OK(lkv_seq_read(s, 0, 1, t, 1, kr, NULL));
        for (int ch = 0; ch < d; ch++)
            ok &= kr[ch] >= pi.key_min[ch] && kr[ch] <= pi.key_max[ch];
    }
    CHECK(ok, "KIVI page digest bounds its keys");
    check_seq_attention(s, 0, d, Hk, G, tp);
    lkv_seq_free(f);
    CHECK(committed(c) < c0, "freeing the fork releases the old pages (%zu < %zu)", committed(c), c0);
    /* keep (compaction) across mixed formats, then attention again */
    int nk = lkv_seq_n_tokens(s, 0, 0), *slots = malloc(sizeof(int) * (size_t)nk), m = 0;
    for (int i = 0; i < nk; i++)
        if (i % 3 != 1)
            slots[m++] = i;
    CHECK_OK(lkv_seq_keep(s, 0, 2, slots, m));
    check_seq_attention(s, 0, d, Hk, G, tp);
    free(slots);
    lkv_seq_free(s);
    lkv_cache_free(c);
    free(before);
    free(after);

    /* bytes: every full page converted, vs the same cache left in f16 */
    int nb = 32 * 64;
    size_t ref_bytes = 0;
    const lkv_dtype fm[4] = {LKV_DTYPE_F16, LKV_DTYPE_Q8, LKV_DTYPE_KIVI4, LKV_DTYPE_KIVI2};
    printf("  committed bytes vs f16 (d=%d, %d tokens, pages of %d, incl. positions, digests, headers):\n",
           d, nb, pt);
    for (int i = 0; i < 4; i++) {
        c = make_cache(d, Hk, pt, LKV_DTYPE_F16);
        CHECK_OK(lkv_seq_create(c, &s));
        fill_seq(s, nb, d, Hk);
        for (int l = 0; l < 2; l++)
            for (int h = 0; h < Hk; h++)
                CHECK_OK(lkv_seq_convert(s, l, h, 0, lkv_seq_n_pages(s, l, h), fm[i]));
        size_t b = committed(c), kvb = lkv_cache_bytes(c, -1, -1);
        if (i == 0)
            ref_bytes = b;
        printf("    %-6s committed %9zu bytes = %.3f of f16 (page bytes %zu)\n", lkv_dtype_name(fm[i]),
               b, (double)b / (double)ref_bytes, kvb);
        if (i == 3)
            CHECK((double)b / ref_bytes < 0.30, "kivi2 ratio %.3f", (double)b / ref_bytes);
        if (i == 2)
            CHECK((double)b / ref_bytes < 0.42, "kivi4 ratio %.3f", (double)b / ref_bytes);
        if (i == 1)
            CHECK((double)b / ref_bytes < 0.62, "q8 ratio %.3f", (double)b / ref_bytes);
        if (i == 3)
            check_seq_attention(s, 1, d, Hk, 3, tp);
        lkv_cache_free(c);
    }

    /* a cache with int8 pages from the start */
    c = make_cache(128, 2, 16, LKV_DTYPE_Q8);
    CHECK_OK(lkv_seq_create(c, &s));
    {
        float *k = malloc(sizeof(float) * 50 * 2 * 128), *v = malloc(sizeof(float) * 50 * 2 * 128);
        lkv_test_fill_normal(&rng, k, 50 * 2 * 128, 1.0f);
        lkv_test_fill_normal(&rng, v, 50 * 2 * 128, 1.0f);
        for (int l = 0; l < 2; l++)
            for (int t = 0; t < 50; t++) /* token by token: decode-style appends */
                CHECK_OK(lkv_seq_append(s, l, 1, NULL, k + t * 256, v + t * 256));
        CHECK_OK(lkv_seq_page_info(s, 0, 0, 0, &pi));
        CHECK(pi.format == LKV_DTYPE_Q8, "q8 cache pages (%d)", pi.format);
        check_seq_attention(s, 0, 128, 2, 4, tp);
        free(k);
        free(v);
    }
    lkv_seq_free(s);
    lkv_cache_free(c);
}

/* ------------------------------------------------------------ positions */

/* Positions of list (0, 0) equal ref[0, n): through lkv_seq_get_positions
 * and through every page's lkv_page_info.pos. */
static void check_positions(lkv_seq *s, const int32_t *ref, int n, const char *what) {
    CHECK(lkv_seq_n_tokens(s, 0, 0) == n, "%s: %d tokens, want %d", what,
          lkv_seq_n_tokens(s, 0, 0), n);
    if (lkv_seq_n_tokens(s, 0, 0) != n)
        return;
    int32_t *got = malloc(sizeof(int32_t) * (size_t)n + 4);
    CHECK_OK(lkv_seq_get_positions(s, 0, 0, 0, n, got));
    int bad = -1;
    for (int i = 0; i < n && bad < 0; i++)
        if (got[i] != ref[i])
            bad = i;
    CHECK(bad < 0, "%s: slot %d holds position %d, want %d", what, bad, bad < 0 ? 0 : got[bad],
          bad < 0 ? 0 : ref[bad]);
    for (int p = 0, at = 0; p < lkv_seq_n_pages(s, 0, 0); p++) {
        lkv_page_info pi;
        CHECK_OK(lkv_seq_page_info(s, 0, 0, p, &pi));
        int ok = pi.first_slot == at;
        for (int t = 0; t < pi.n && ok; t++)
            ok = pi.pos[t] == ref[at + t];
        CHECK(ok, "%s: page %d's info positions", what, p);
        at += pi.n;
    }
    free(got);
}

/* Quantized pages with consecutive positions keep only the first one (no
 * [pt] array): smaller pages, and every reader still sees the positions --
 * lkv_seq_get_positions, lkv_page_info.pos, attention, compaction by
 * lkv_seq_keep in place (a page reading its own slots while it moves them),
 * appends that continue such a page or leave a gap in it (it is replaced by a
 * page with the array), copy on write, snapshots. */
static void test_compact_positions(lkv_threadpool *tp) {
    enum { D = 64, HK = 1, PT = 32, N = PT * 6 + 5, GAP_AT = 100 };
    /* page bytes at d = 64, pages of 32: header 64, [positions 128], key
     * scale/min 256, value scale/min 256, codes 2 x 32 x 16 (KIVI-2) */
    const size_t kivi2_base = 64 + 256 + 256 + 1024, kivi2_arr = kivi2_base + 128;
    const size_t f16_page = 64 + 128 + 256 + 256 + 2 * PT * D * 2;
    lkv_cache *c = make_cache(D, HK, PT, LKV_DTYPE_F16);
    lkv_seq *s = NULL;
    CHECK_OK(lkv_seq_create(c, &s));
    int32_t ref[N + PT], tmp[N + PT];
    for (int t = 0; t < N; t++)
        ref[t] = t + (t >= GAP_AT ? 1000 : 0); /* one gap, inside page 3 */
    float *k = malloc(sizeof(float) * (N + PT) * D), *v = malloc(sizeof(float) * (N + PT) * D);
    lkv_test_fill_normal(&rng, k, (size_t)(N + PT) * D, 1.0f);
    lkv_test_fill_normal(&rng, v, (size_t)(N + PT) * D, 1.0f);
    for (int l = 0; l < 2; l++)
        CHECK_OK(lkv_seq_append(s, l, N, ref, k, v));
    for (int l = 0; l < 2; l++)
        CHECK_OK(lkv_seq_convert(s, l, 0, 0, 6, LKV_DTYPE_KIVI2));
    size_t want = 5 * kivi2_base + kivi2_arr + f16_page;
    CHECK(lkv_cache_bytes(c, 0, 0) == want, "kivi2 list bytes %zu, want %zu (5 pages without "
          "positions, 1 with, 1 f16)", lkv_cache_bytes(c, 0, 0), want);
    check_positions(s, ref, N, "after convert");
    check_seq_attention(s, 0, D, HK, 3, tp);

    /* snapshot round trip: the same positions, bytes and codes */
    size_t sz = 0;
    CHECK_OK(lkv_seq_snapshot_size(s, -1, &sz));
    void *buf = malloc(sz);
    CHECK_OK(lkv_seq_save_mem(s, -1, buf, sz, NULL));
    lkv_seq *r = NULL;
    CHECK_OK(lkv_seq_load_mem(c, buf, sz, &r));
    if (r) {
        check_positions(r, ref, N, "loaded snapshot");
        CHECK(lkv_cache_bytes(c, 0, 0) == 2 * want, "loaded pages keep the compact layout (%zu)",
              lkv_cache_bytes(c, 0, 0));
        float *a = malloc(sizeof(float) * N * D), *b = malloc(sizeof(float) * N * D);
        CHECK_OK(lkv_seq_read(s, 0, 0, 0, N, a, NULL));
        CHECK_OK(lkv_seq_read(r, 0, 0, 0, N, b, NULL));
        CHECK(memcmp(a, b, sizeof(float) * N * D) == 0, "loaded keys decode to the same values");
        free(a);
        free(b);
        lkv_seq_free(r);
    }
    free(buf);

    /* keep in place: dropping the first 10 slots moves every page's slots
     * down; page 0 reads its own slots while its base moves, the page that
     * now holds the gap is replaced by one with an array */
    int slots[N], m = 0;
    for (int i = 10; i < N; i++)
        slots[m++] = i;
    CHECK_OK(lkv_seq_keep(s, 0, 0, slots, m));
    for (int i = 0; i < m; i++)
        tmp[i] = ref[slots[i]];
    memcpy(ref, tmp, sizeof(int32_t) * (size_t)m);
    int n = m;
    check_positions(s, ref, n, "after keep");
    check_seq_attention(s, 0, D, HK, 3, tp);

    /* truncate into a page without an array, append continuing it: it stays so */
    n = PT + 7;
    CHECK_OK(lkv_seq_truncate(s, n));
    size_t b0 = lkv_cache_bytes(c, 0, 0);
    CHECK_OK(lkv_seq_append_head(s, 0, 0, 3, NULL, k, v));
    for (int i = 0; i < 3; i++)
        ref[n + i] = ref[n - 1] + 1 + i;
    n += 3;
    check_positions(s, ref, n, "append continuing a compact page");
    CHECK(lkv_cache_bytes(c, 0, 0) == b0, "continuing keeps the page (%zu vs %zu)",
          lkv_cache_bytes(c, 0, 0), b0);
    /* a fork shares the tail: copy on write, still compact */
    lkv_seq *f = NULL;
    CHECK_OK(lkv_seq_fork(s, &f));
    CHECK_OK(lkv_seq_append_head(f, 0, 0, 2, NULL, k, v));
    memcpy(tmp, ref, sizeof(int32_t) * (size_t)n);
    tmp[n] = ref[n - 1] + 1;
    tmp[n + 1] = ref[n - 1] + 2;
    check_positions(f, tmp, n + 2, "fork's copied tail");
    check_positions(s, ref, n, "original after the fork's append");
    lkv_seq_free(f);
    /* append with a gap into it: replaced by a page with positions */
    int32_t gp[4] = {ref[n - 1] + 5, ref[n - 1] + 6, ref[n - 1] + 9, ref[n - 1] + 10};
    CHECK_OK(lkv_seq_append_head(s, 0, 0, 4, gp, k, v));
    memcpy(ref + n, gp, sizeof gp);
    n += 4;
    check_positions(s, ref, n, "append with a gap into a compact page");
    CHECK(lkv_cache_bytes(c, 0, 0) == b0 + 128, "the tail page gained its array (%zu vs %zu)",
          lkv_cache_bytes(c, 0, 0), b0 + 128);
    check_seq_attention(s, 0, D, HK, 3, tp);
    lkv_seq_free(s);
    lkv_cache_free(c);
    free(k);
    free(v);
}

/* ------------------------------------------------------------ presses */

static void test_press(lkv_threadpool *tp) {
    const int d = 64, Hk = 3, L = 2;
    lkv_press *pr = NULL;
    CHECK_OK(lkv_press_create("kivi:bits=2,group=32,residual=64", &pr));
    if (!pr)
        return;
    int pt = 0;
    lkv_dtype dt = LKV_DTYPE_F32;
    CHECK_OK(lkv_press_cache_requirements(pr, &pt, &dt));
    CHECK(pt == 32 && dt == LKV_DTYPE_F16, "kivi requirements: page %d dtype %d", pt, dt);
    lkv_press_geom g = {L, 9, Hk, d};
    lkv_press_state *st = NULL;
    CHECK_OK(lkv_press_state_create(pr, &g, &st));
    lkv_cache *c = make_cache(d, Hk, 32, LKV_DTYPE_F16);
    lkv_cache_params cp = lkv_cache_get_params(c);
    CHECK_OK(lkv_press_check_cache(st, &cp));
    lkv_cache_params bad = cp;
    bad.page_tokens = 16;
    CHECK(lkv_press_check_cache(st, &bad) == LKV_ERR_INVALID, "page size must equal the group");
    lkv_seq *s;
    CHECK_OK(lkv_seq_create(c, &s));
    int n = 300;
    fill_seq(s, n, d, Hk);
    CHECK_OK(lkv_press_begin_prompt(st, n, 0));
    size_t b0 = committed(c);
    lkv_attn_params ap[2];
    for (int l = 0; l < L; l++) {
        ap[l] = lkv_attn_default_params();
        ap[l].head_dim = d;
        ap[l].q_heads = 9;
        ap[l].kv_heads = Hk;
    }
    CHECK_OK(lkv_press_after_prefill(st, s, NULL, ap, tp));
    /* exact: the last residual (64) tokens, rounded so that only full pages older
     * than the window are quantized: 300 = 9 full pages + 12; pages whose last
     * slot is older than the newest 64 tokens -> the first 7 pages (224 tokens) */
    for (int l = 0; l < L; l++)
        for (int h = 0; h < Hk; h++) {
            int exact = 0, np = lkv_seq_n_pages(s, l, h);
            lkv_page_info pi;
            for (int i = 0; i < np; i++) {
                CHECK_OK(lkv_seq_page_info(s, l, h, i, &pi));
                if (pi.format == LKV_DTYPE_F16)
                    exact += pi.n;
            }
            CHECK(exact == 64 + 12, "layer %d head %d: %d exact tokens (want residual 64 + partial 12)",
                  l, h, exact);
        }
    CHECK(committed(c) < b0, "committed bytes drop (%zu < %zu)", committed(c), b0);
    /* decode steps: the window moves, pages leave it and get quantized */
    float k[3 * 64], v[3 * 64];
    for (int step = 0; step < 40; step++) {
        lkv_test_fill_normal(&rng, k, 3 * 64, 1.0f);
        lkv_test_fill_normal(&rng, v, 3 * 64, 1.0f);
        for (int l = 0; l < L; l++)
            CHECK_OK(lkv_seq_append(s, l, 1, NULL, k, v));
        CHECK_OK(lkv_press_after_decode(st, s, tp));
    }
    {
        int exact = 0, np = lkv_seq_n_pages(s, 1, 2);
        lkv_page_info pi;
        for (int i = 0; i < np; i++) {
            CHECK_OK(lkv_seq_page_info(s, 1, 2, i, &pi));
            if (pi.format == LKV_DTYPE_F16)
                exact += pi.n;
        }
        CHECK(exact >= 64 && exact < 64 + 32, "after decoding: %d exact tokens", exact);
    }
    check_seq_attention(s, 1, d, Hk, 3, tp);
    char rep[4096];
    lkv_press_state_report(st, rep, sizeof rep);
    CHECK(strstr(rep, "quantized") != NULL, "report mentions the quantization: %s", rep);
    printf("%s", rep);
    lkv_press_state_free(st);
    lkv_press_free(pr);
    lkv_seq_free(s);
    lkv_cache_free(c);

    /* int8 with residual 0: the cache is int8 from the start */
    CHECK_OK(lkv_press_create("int8:residual=0", &pr));
    if (pr) {
        CHECK_OK(lkv_press_cache_requirements(pr, &pt, &dt));
        CHECK(dt == LKV_DTYPE_Q8, "int8 residual 0: q8 pages from the start (%d)", dt);
        lkv_press_free(pr);
    }
    /* composition: evict first, then quantize */
    CHECK_OK(lkv_press_create("streamingllm:sinks=4,recent=124+int8:residual=32", &pr));
    if (pr) {
        CHECK_OK(lkv_press_state_create(pr, &g, &st));
        c = make_cache(d, Hk, 16, LKV_DTYPE_F16);
        CHECK_OK(lkv_seq_create(c, &s));
        fill_seq(s, 300, d, Hk);
        CHECK_OK(lkv_press_begin_prompt(st, 300, 0));
        CHECK_OK(lkv_press_after_prefill(st, s, NULL, ap, tp));
        CHECK(lkv_seq_n_tokens(s, 0, 0) == 128, "streaming kept %d", lkv_seq_n_tokens(s, 0, 0));
        lkv_page_info pi;
        CHECK_OK(lkv_seq_page_info(s, 0, 0, 0, &pi));
        CHECK(pi.format == LKV_DTYPE_Q8, "old pages int8 after eviction (%d)", pi.format);
        check_seq_attention(s, 0, d, Hk, 3, tp);
        lkv_press_state_free(st);
        lkv_seq_free(s);
        lkv_cache_free(c);
        lkv_press_free(pr);
    }
}

int main(void) {
    const char *e = getenv("LONGKV_TEST_QUICK");
    quick = e && *e && *e != '0';
    lkv_rng_seed(&rng, lkv_test_seed());
    lkv_threadpool *tp = NULL;
    lkv_threadpool_create(2, &tp);
    test_round_trip();
    test_fused(NULL);
    test_fused(tp);
    test_convert(tp);
    test_compact_positions(tp);
    test_press(tp);
    lkv_threadpool_free(tp);
    return lkv_test_finish("test_kv_quant");
}
