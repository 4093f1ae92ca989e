/* test_kv_cache_positions.c -- StreamingLLM's cache positions computed the way
 * the model does it, at the kv level: keys stored rotated at their ORIGINAL
 * positions, S sinks + one window kept (lkv_seq_keep), then
 *   window slots [S, n) attended with q rotated at its original position,
 *   sink slots   [0, S) attended with q rotated at its CACHE index,
 * merged by log-sum-exp (lkv_seq_attend_slots + lkv_attn_merge). Checked
 * against a naive double-precision reference that re-rotates every kept key
 * at its cache index and the query at its own cache index. Also: slicing runs
 * inside pages is exact in every page format (sinks + rest merged == the whole
 * layer), empty ranges, bad ranges. Seeded (LONGKV_TEST_SEED);
 * LONGKV_TEST_QUICK=1 shrinks the sizes.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "kv_testlib.h"

static lkv_rng rng;

/* Rotates the adjacent pairs (2i, 2i+1) of x[d] by pos * base^(-2i/d) (the
 * Llama convention of the model's forward pass), in double. */
static void rope(double *out, const float *x, int d, double pos) {
    for (int i = 0; i < d / 2; i++) {
        double a = pos * pow(10000.0, -2.0 * i / d), c = cos(a), s = sin(a);
        double u = x[2 * i], w = x[2 * i + 1];
        out[2 * i] = u * c - w * s;
        out[2 * i + 1] = u * s + w * c;
    }
}

static void rope_f(float *out, const float *x, int d, double pos) {
    double tmp[256];
    rope(tmp, x, d, pos);
    for (int c = 0; c < d; c++)
        out[c] = (float)tmp[c];
}

static lkv_cache *make_cache(int Hk, int d, int pt, lkv_dtype t) {
    return lkv_test_cache(1, Hk, d, pt, t, (size_t)64 << 20, 0);
}

typedef struct cfg {
    int H, Hk, d, pt;
    int n0;     /* tokens before the eviction */
    int S, R;   /* sinks kept, window kept */
    int n_q;    /* tokens appended after the eviction; all are queries */
} cfg;

/* The split-rotation method against the re-rotating reference. */
static void check_split(const cfg *g) {
    const int H = g->H, Hk = g->Hk, d = g->d, G = H / Hk, S = g->S, R = g->R, n_q = g->n_q;
    const int N = g->n0 + n_q;  /* original positions 0..N-1 */
    float *k0 = malloc((size_t)N * Hk * d * 4), *v = malloc((size_t)N * Hk * d * 4);
    float *q0 = malloc((size_t)n_q * H * d * 4);
    lkv_test_fill_normal(&rng, k0, (size_t)N * Hk * d, 1.0f);
    lkv_test_fill_normal(&rng, v, (size_t)N * Hk * d, 1.0f);
    lkv_test_fill_normal(&rng, q0, (size_t)n_q * H * d, 1.0f);
    for (size_t i = 0; i < (size_t)N * Hk * d; i += 7)
        k0[i] += 2.0f; /* a common direction: large, position-sensitive logits */
    for (size_t i = 0; i < (size_t)n_q * H * d; i += 7)
        q0[i] += 2.0f;

    /* keys rotated at original positions into the cache; evict; append the queries' keys */
    lkv_cache *c = make_cache(Hk, d, g->pt, LKV_DTYPE_F32);
    lkv_seq *s = NULL;
    CHECK_OK(lkv_seq_create(c, &s));
    float *kr = malloc((size_t)N * Hk * d * 4);
    int32_t *pos = malloc((size_t)N * 4);
    for (int t = 0; t < N; t++) {
        pos[t] = t;
        for (int h = 0; h < Hk; h++)
            rope_f(kr + ((size_t)t * Hk + h) * d, k0 + ((size_t)t * Hk + h) * d, d, t);
    }
    CHECK_OK(lkv_seq_append(s, 0, g->n0, pos, kr, v));
    int *keep = malloc((size_t)(S + R) * sizeof(int));
    for (int i = 0; i < S; i++)
        keep[i] = i;
    for (int i = 0; i < R; i++)
        keep[S + i] = g->n0 - R + i;
    for (int h = 0; h < Hk; h++)
        CHECK_OK(lkv_seq_keep(s, 0, h, keep, S + R));
    size_t off = (size_t)g->n0 * Hk * d;
    CHECK_OK(lkv_seq_append(s, 0, n_q, pos + g->n0, kr + off, v + off));
    const int n = S + R + n_q;  /* slots held */
    CHECK(lkv_seq_n_tokens(s, 0, 0) == n, "held %d, want %d", lkv_seq_n_tokens(s, 0, 0), n);

    /* the method: shift of the window s_w = pos - slot; the sinks have shift 0 */
    const int sw = g->n0 - R - S;
    float *qa = malloc((size_t)n_q * H * d * 4), *qc = malloc((size_t)n_q * H * d * 4);
    int32_t *qpos = malloc((size_t)n_q * 4), *qpos_c = malloc((size_t)n_q * 4);
    for (int i = 0; i < n_q; i++) {
        int32_t m = g->n0 + i;
        qpos[i] = m;
        qpos_c[i] = m - sw; /* its cache index */
        for (int h = 0; h < H; h++) {
            rope_f(qa + ((size_t)i * H + h) * d, q0 + ((size_t)i * H + h) * d, d, m);
            rope_f(qc + ((size_t)i * H + h) * d, q0 + ((size_t)i * H + h) * d, d, m - sw);
        }
    }
    lkv_attn_params ap = lkv_attn_default_params();
    ap.head_dim = d;
    ap.q_heads = H;
    ap.kv_heads = Hk;
    size_t rows = (size_t)n_q * H;
    float *o = malloc(rows * d * 4), *os = malloc(rows * d * 4), *oo = malloc(rows * d * 4);
    float *lse = malloc(rows * 4), *lses = malloc(rows * 4);
    CHECK_OK(lkv_seq_attend_slots(s, 0, &ap, n_q, qa, qpos, S, INT_MAX, o, lse, NULL));
    CHECK_OK(lkv_seq_attend_slots(s, 0, &ap, n_q, qc, qpos_c, 0, S, os, lses, NULL));
    lkv_attn_merge((int)rows, d, o, lse, os, lses);
    CHECK_OK(lkv_seq_attend(s, 0, &ap, n_q, qa, qpos, oo, NULL, NULL)); /* original positions */

    /* reference: every kept key re-rotated at its cache index, in double */
    float *ref = malloc(rows * d * 4);
    double *kk = malloc((size_t)n * d * sizeof(double)), qq[256], *w = malloc((size_t)n * 8);
    const double scale = 1.0 / sqrt((double)d);
    for (int hk = 0; hk < Hk; hk++) {
        int32_t *kpos = malloc((size_t)n * 4);
        CHECK_OK(lkv_seq_get_positions(s, 0, hk, 0, n, kpos));
        for (int j = 0; j < n; j++) /* slot j holds original position kpos[j] */
            rope(kk + (size_t)j * d, k0 + ((size_t)kpos[j] * Hk + hk) * d, d, j);
        for (int i = 0; i < n_q; i++) {
            int cq = S + R + i; /* the query's cache index: causal over slots <= cq */
            for (int gi = 0; gi < G; gi++) {
                int h = hk * G + gi;
                rope(qq, q0 + ((size_t)i * H + h) * d, d, cq);
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= cq; j++) {
                    double dot = 0;
                    for (int c2 = 0; c2 < d; c2++)
                        dot += qq[c2] * kk[(size_t)j * d + c2];
                    w[j] = dot * scale;
                    mx = w[j] > mx ? w[j] : mx;
                }
                for (int j = 0; j <= cq; j++)
                    sum += (w[j] = exp(w[j] - mx));
                for (int c2 = 0; c2 < d; c2++) {
                    double acc = 0;
                    for (int j = 0; j <= cq; j++)
                        acc += w[j] * v[((size_t)kpos[j] * Hk + hk) * d + c2];
                    ref[((size_t)i * H + h) * d + c2] = (float)(acc / sum);
                }
            }
        }
        free(kpos);
    }
    double err = lkv_test_rel_err(o, ref, rows * d, 1e-3);
    double err_orig = lkv_test_rel_err(oo, ref, rows * d, 1e-3);
    printf("  H=%d Hk=%d d=%d page=%d n0=%d S=%d R=%d n_q=%d: split vs re-rotated %.2e "
           "(original positions: %.2e)\n", H, Hk, d, g->pt, g->n0, S, R, n_q, err, err_orig);
    CHECK(err < 2e-5, "cache positions by split rotation differ from the reference: %.3e", err);
    /* the test can tell the two modes apart: the original positions are far off */
    CHECK(err_orig > 100 * err && err_orig > 1e-3, "original positions %.3e vs split %.3e",
          err_orig, err);

    free(ref);
    free(kk);
    free(w);
    free(o);
    free(os);
    free(oo);
    free(lse);
    free(lses);
    free(qa);
    free(qc);
    free(qpos);
    free(qpos_c);
    free(keep);
    free(pos);
    free(kr);
    free(k0);
    free(v);
    free(q0);
    lkv_seq_free(s);
    lkv_cache_free(c);
}

/* Cutting runs inside pages is exact in every format: attending [0, cut) and
 * [cut, n) and merging equals attending everything (same queries). */
static void check_slices(lkv_dtype t, int pt, int convert_to) {
    enum { H = 4, Hk = 2, d = 64, n0 = 200, S = 5, R = 100, n_q = 3 };
    lkv_cache *c = make_cache(Hk, d, pt, t);
    lkv_seq *s = NULL;
    CHECK_OK(lkv_seq_create(c, &s));
    const int N = n0 + n_q;
    float *k = malloc((size_t)N * Hk * d * 4), *v = malloc((size_t)N * Hk * d * 4);
    float *q = malloc((size_t)n_q * H * d * 4);
    int32_t *pos = malloc((size_t)N * 4);
    lkv_test_fill_normal(&rng, k, (size_t)N * Hk * d, 1.0f);
    lkv_test_fill_normal(&rng, v, (size_t)N * Hk * d, 1.0f);
    lkv_test_fill_normal(&rng, q, (size_t)n_q * H * d, 1.0f);
    for (int i = 0; i < N; i++)
        pos[i] = i;
    CHECK_OK(lkv_seq_append(s, 0, n0, pos, k, v));
    int keep[S + R];
    for (int i = 0; i < S; i++)
        keep[i] = i;
    for (int i = 0; i < R; i++)
        keep[S + i] = n0 - R + i;
    for (int h = 0; h < Hk; h++)
        CHECK_OK(lkv_seq_keep(s, 0, h, keep, S + R));
    if (convert_to >= 0) /* quantize the full pages (KIVI: key groups of a whole page) */
        for (int h = 0; h < Hk; h++)
            CHECK_OK(lkv_seq_convert(s, 0, h, 0, (S + R) / pt, (lkv_dtype)convert_to));
    CHECK_OK(lkv_seq_append(s, 0, n_q, pos + n0, k + (size_t)n0 * Hk * d,
                            v + (size_t)n0 * Hk * d));
    const int n = S + R + n_q;
    lkv_attn_params ap = lkv_attn_default_params();
    ap.head_dim = d;
    ap.q_heads = H;
    ap.kv_heads = Hk;
    size_t rows = (size_t)n_q * H;
    float *all = malloc(rows * d * 4), *a = malloc(rows * d * 4), *b = malloc(rows * d * 4);
    float *la = malloc(rows * 4), *lb = malloc(rows * 4), *lall = malloc(rows * 4);
    CHECK_OK(lkv_seq_attend(s, 0, &ap, n_q, q, pos + n0, all, lall, NULL));
    const int cuts[] = {1, S, pt - 1, pt, pt + 3, 2 * pt + 1, n - 1};
    double worst = 0;
    for (size_t ci = 0; ci < sizeof cuts / sizeof cuts[0]; ci++) {
        int cut = cuts[ci];
        if (cut <= 0 || cut >= n)
            continue;
        CHECK_OK(lkv_seq_attend_slots(s, 0, &ap, n_q, q, pos + n0, 0, cut, a, la, NULL));
        CHECK_OK(lkv_seq_attend_slots(s, 0, &ap, n_q, q, pos + n0, cut, INT_MAX, b, lb, NULL));
        lkv_attn_merge((int)rows, d, a, la, b, lb);
        double e = lkv_test_rel_err(a, all, rows * d, 1e-3);
        worst = e > worst ? e : worst;
        /* KIVI's SIMD kernels round the query and the weights to int16 per run
         * and block, so two slices round differently from the whole (2^-15 of
         * the largest term; see test_kv_quant) */
        const lkv_dtype kd = convert_to >= 0 ? (lkv_dtype)convert_to : t;
        const double tol = (kd == LKV_DTYPE_KIVI4 || kd == LKV_DTYPE_KIVI2) ? 1e-3 : 1e-5;
        CHECK(e < tol, "%s pages of %d, cut at slot %d: merged halves differ by %.3e",
              lkv_dtype_name(convert_to >= 0 ? (lkv_dtype)convert_to : t), pt, cut, e);
        for (size_t r = 0; r < rows; r++)
            CHECK(fabsf(la[r] - lall[r]) < (float)(tol > 1e-5 ? tol : 1e-4) * (1 + fabsf(lall[r])), "lse row %zu", r);
    }
    printf("  %s pages of %d: sinks/rest slices merged vs whole layer, worst %.2e\n",
           lkv_dtype_name(convert_to >= 0 ? (lkv_dtype)convert_to : t), pt, worst);
    /* an empty range: o = 0, lse = -inf; a bad range is refused */
    CHECK_OK(lkv_seq_attend_slots(s, 0, &ap, n_q, q, pos + n0, n, INT_MAX, a, la, NULL));
    int empty = 1;
    for (size_t r = 0; r < rows; r++)
        empty &= la[r] == -INFINITY && a[r * d] == 0.0f;
    CHECK(empty, "a range past the end should give empty rows");
    CHECK(lkv_seq_attend_slots(s, 0, &ap, n_q, q, pos + n0, -1, 3, a, la, NULL) == LKV_ERR_RANGE,
          "slot0 < 0");
    CHECK(lkv_seq_attend_slots(s, 0, &ap, n_q, q, pos + n0, 5, 4, a, la, NULL) == LKV_ERR_RANGE,
          "slot1 < slot0");
    CHECK(lkv_seq_attend_slots(NULL, 0, &ap, n_q, q, pos + n0, 0, 4, a, la, NULL) ==
              LKV_ERR_INVALID, "NULL sequence");
    free(all);
    free(a);
    free(b);
    free(la);
    free(lb);
    free(lall);
    free(k);
    free(v);
    free(q);
    free(pos);
    lkv_seq_free(s);
    lkv_cache_free(c);
}

int main(void) {
    lkv_rng_seed(&rng, lkv_test_seed());
    const int quick = kvt_quick();
    /* sinks inside the first page with window slots; sinks filling one page
     * exactly; sinks spanning pages; chunked queries; GQA */
    const cfg cases[] = {
        {4, 2, 64, 16, 300, 4, 252, 1},
        {4, 2, 64, 16, 300, 4, 60, 5},
        {2, 1, 32, 16, 120, 16, 40, 3},
        {6, 3, 64, 8, 500, 20, 100, 7},
        {2, 2, 128, 32, 1000, 4, 200, 2},
    };
    int nc = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < (quick ? 3 : nc); i++)
        check_split(&cases[i]);
    check_slices(LKV_DTYPE_F32, 16, -1);
    check_slices(LKV_DTYPE_F16, 16, -1);
    check_slices(LKV_DTYPE_BF16, 8, -1);
    check_slices(LKV_DTYPE_F16, 16, LKV_DTYPE_Q8);
    check_slices(LKV_DTYPE_F16, 32, LKV_DTYPE_KIVI4);
    check_slices(LKV_DTYPE_F16, 32, LKV_DTYPE_KIVI2);
    return lkv_test_finish("test_kv_cache_positions");
}
