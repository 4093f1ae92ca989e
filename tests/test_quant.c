/* test_quant.c -- weight formats and products.
 *   - traits table and row sizes;
 *   - dequantization of hand-built blocks with known values, for every format;
 *   - activation quantization error bound;
 *   - lkv_matmul for every format and every ISA level the CPU has, against a
 *     double-precision dot of the dequantized weights with the SAME int8
 *     activations (tight) and with the f32 activations (loose); odd row counts,
 *     n_tok = 1..9, 1..3 threads;
 *   - LONGKV_TEST_PERF=1 also prints GB/s and GOP/s for SmolLM2's shapes.
 * LONGKV_TEST_QUICK=1 shrinks the sweep (for the sanitizer run). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/fp16.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "kernels/quant_blocks.h"
#include "testutil.h"

static int quick;

static const int all_types[] = {LKV_Q_F32, LKV_Q_F16, LKV_Q_BF16, LKV_Q_Q4_0, LKV_Q_Q4_1,
                                LKV_Q_Q5_0, LKV_Q_Q5_1, LKV_Q_Q8_0, LKV_Q_Q4_K, LKV_Q_Q6_K};
#define N_TYPES ((int)(sizeof all_types / sizeof all_types[0]))

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

/* ------------------------------------------------------------- traits */

static void test_traits(void) {
    struct { int type, block; size_t bytes; } want[] = {
        {LKV_Q_F32, 1, 4},     {LKV_Q_F16, 1, 2},     {LKV_Q_BF16, 1, 2},
        {LKV_Q_Q4_0, 32, 18},  {LKV_Q_Q4_1, 32, 20},  {LKV_Q_Q5_0, 32, 22},
        {LKV_Q_Q5_1, 32, 24},  {LKV_Q_Q8_0, 32, 34},  {LKV_Q_Q4_K, 256, 144},
        {LKV_Q_Q6_K, 256, 210}, {LKV_Q_Q8_K, 256, 292},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const lkv_qtraits *t = lkv_qtype_traits(want[i].type);
        CHECK(t->name && t->block == want[i].block && t->block_bytes == want[i].bytes,
              "traits of type %d", want[i].type);
    }
    CHECK(lkv_qtype_traits(-1)->name == NULL, "negative type");
    CHECK(lkv_qtype_traits(4)->name == NULL, "removed type 4");
    CHECK(lkv_qtype_traits(1000)->name == NULL, "huge type");
    CHECK(lkv_qtype_row_bytes(LKV_Q_Q4_1, 576) == 18 * 20, "q4_1 row bytes");
    CHECK(lkv_qtype_row_bytes(LKV_Q_Q4_1, 33) == 0, "partial block");
    CHECK(lkv_qtype_row_bytes(LKV_Q_Q6_K, 512) == 420, "q6_K row bytes");
    CHECK(lkv_qtype_row_bytes(99, 32) == 0, "unknown type");
    float out[32];
    CHECK(lkv_dequantize(LKV_Q_Q2_K, out, out, 256) == LKV_ERR_UNSUPPORTED, "q2_K unsupported");
    CHECK(lkv_dequantize(LKV_Q_Q4_0, out, out, 31) == LKV_ERR_INVALID, "partial block");
}

/* ----------------------------------------------- known-value dequantization */

static void test_dequant_known(void) {
    float out[512];
    /* f32 / f16 / bf16 */
    {
        float v[4] = {1.5f, -2.0f, 0.0f, 65504.0f};
        CHECK_OK(lkv_dequantize(LKV_Q_F32, v, out, 4));
        CHECK(memcmp(v, out, sizeof v) == 0, "f32 copy");
        uint16_t h[4] = {0x3e00, 0xc000, 0x0000, 0x7bff}; /* 1.5 -2 0 65504 */
        CHECK_OK(lkv_dequantize(LKV_Q_F16, h, out, 4));
        CHECK(memcmp(v, out, sizeof v) == 0, "f16: %g %g %g %g", out[0], out[1], out[2], out[3]);
        uint16_t b[3] = {0x3fc0, 0xc000, 0x0000}; /* 1.5 -2 0 */
        CHECK_OK(lkv_dequantize(LKV_Q_BF16, b, out, 3));
        CHECK(out[0] == 1.5f && out[1] == -2.0f && out[2] == 0.0f, "bf16");
    }
    /* Q4_0: d = 0.5, byte j holds low nibble j%16, high nibble 15-j%16 */
    {
        lkv_block_q4_0 b;
        put16((uint8_t *)&b.d, 0x3800); /* 0.5 */
        for (int j = 0; j < 16; j++)
            b.qs[j] = (uint8_t)(j | ((15 - j) << 4));
        CHECK_OK(lkv_dequantize(LKV_Q_Q4_0, &b, out, 32));
        int ok = 1;
        for (int j = 0; j < 16; j++)
            ok &= out[j] == 0.5f * (j - 8) && out[j + 16] == 0.5f * (15 - j - 8);
        CHECK(ok, "q4_0 values (out[0]=%g out[16]=%g)", out[0], out[16]);
    }
    /* Q4_1: d = 2, m = -1 */
    {
        lkv_block_q4_1 b;
        put16((uint8_t *)&b.d, 0x4000);
        put16((uint8_t *)&b.m, 0xbc00);
        for (int j = 0; j < 16; j++)
            b.qs[j] = (uint8_t)(j | ((15 - j) << 4));
        CHECK_OK(lkv_dequantize(LKV_Q_Q4_1, &b, out, 32));
        int ok = 1;
        for (int j = 0; j < 16; j++)
            ok &= out[j] == 2.0f * j - 1.0f && out[j + 16] == 2.0f * (15 - j) - 1.0f;
        CHECK(ok, "q4_1 values");
    }
    /* Q5_0 / Q5_1: value q = j + 16*(j odd) for element j, high bits in qh */
    {
        int q[32];
        for (int j = 0; j < 32; j++)
            q[j] = (j * 7 + 3) % 32;
        lkv_block_q5_0 b0;
        lkv_block_q5_1 b1;
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            b0.qs[j] = b1.qs[j] = (uint8_t)((q[j] & 15) | ((q[j + 16] & 15) << 4));
            qh |= (uint32_t)(q[j] >> 4) << j;
            qh |= (uint32_t)(q[j + 16] >> 4) << (j + 16);
        }
        memcpy(b0.qh, &qh, 4);
        memcpy(b1.qh, &qh, 4);
        put16((uint8_t *)&b0.d, 0x3400); /* 0.25 */
        put16((uint8_t *)&b1.d, 0x3400);
        put16((uint8_t *)&b1.m, 0x3c00); /* 1 */
        CHECK_OK(lkv_dequantize(LKV_Q_Q5_0, &b0, out, 32));
        int ok = 1;
        for (int j = 0; j < 32; j++)
            ok &= out[j] == 0.25f * (q[j] - 16);
        CHECK(ok, "q5_0 values");
        CHECK_OK(lkv_dequantize(LKV_Q_Q5_1, &b1, out, 32));
        ok = 1;
        for (int j = 0; j < 32; j++)
            ok &= out[j] == 0.25f * q[j] + 1.0f;
        CHECK(ok, "q5_1 values");
    }
    /* Q8_0 */
    {
        lkv_block_q8_0 b;
        put16((uint8_t *)&b.d, 0x3c00);
        for (int j = 0; j < 32; j++)
            b.qs[j] = (int8_t)(j * 8 - 128);
        CHECK_OK(lkv_dequantize(LKV_Q_Q8_0, &b, out, 32));
        int ok = 1;
        for (int j = 0; j < 32; j++)
            ok &= out[j] == (float)(j * 8 - 128);
        CHECK(ok, "q8_0 values");
    }
    /* Q4_K: sub-block j has scale sc[j], min mn[j] (6-bit, packed as GGML does);
     * element i has q = i % 16. d = 1, dmin = 0.5. */
    {
        int sc[8] = {1, 2, 3, 63, 17, 40, 5, 33}, mn[8] = {0, 7, 63, 2, 31, 1, 60, 9};
        lkv_block_q4_k b;
        memset(&b, 0, sizeof b);
        put16((uint8_t *)&b.d, 0x3c00);
        put16((uint8_t *)&b.dmin, 0x3800);
        for (int j = 0; j < 4; j++) {
            b.scales[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
            b.scales[j + 4] = (uint8_t)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
            b.scales[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
        }
        for (int c = 0; c < 4; c++) /* bytes 32c.. hold elements 64c+l (lo), 64c+32+l (hi) */
            for (int l = 0; l < 32; l++)
                b.qs[32 * c + l] = (uint8_t)(((64 * c + l) % 16) | (((64 * c + 32 + l) % 16) << 4));
        CHECK_OK(lkv_dequantize(LKV_Q_Q4_K, &b, out, 256));
        int ok = 1, bad = -1;
        for (int i = 0; i < 256; i++) {
            float want = 1.0f * sc[i / 32] * (i % 16) - 0.5f * mn[i / 32];
            if (out[i] != want && bad < 0)
                bad = i;
            ok &= out[i] == want;
        }
        CHECK(ok, "q4_K values (first bad %d)", bad);
    }
    /* Q6_K: element i has q = (i*5) % 64 - 32, sub-block k (16 elems) scale k-8 */
    {
        lkv_block_q6_k b;
        memset(&b, 0, sizeof b);
        put16((uint8_t *)&b.d, 0x3800); /* 0.5 */
        for (int k = 0; k < 16; k++)
            b.scales[k] = (int8_t)(k - 8);
        for (int i = 0; i < 256; i++) {
            int u = (i * 5) % 64; /* unsigned 6-bit value */
            int h = i / 128, e = i % 128, l = e % 32, quarter = e / 32;
            /* quarters 0,1 use low nibbles of ql[l], ql[l+32]; 2,3 their high nibbles */
            uint8_t *ql = &b.ql[64 * h + l + (quarter & 1) * 32];
            *ql |= (uint8_t)((u & 15) << ((quarter >> 1) * 4));
            b.qh[32 * h + l] |= (uint8_t)((u >> 4) << (2 * quarter));
        }
        CHECK_OK(lkv_dequantize(LKV_Q_Q6_K, &b, out, 256));
        int ok = 1, bad = -1;
        for (int i = 0; i < 256; i++) {
            float want = 0.5f * (i / 16 - 8) * ((i * 5) % 64 - 32);
            if (out[i] != want && bad < 0)
                bad = i;
            ok &= out[i] == want;
        }
        CHECK(ok, "q6_K values (first bad %d: %g)", bad, bad >= 0 ? out[bad] : 0.0f);
    }
}

/* ----------------------------------------------------- random weights */

/* Random bytes, with every scale field set to a sane f16 (so values are
 * finite and of unit-ish size). Returns lkv_malloc'd rows*row_bytes. */
static void *random_weights(lkv_rng *r, int type, int64_t rows, int64_t cols) {
    size_t rb = lkv_qtype_row_bytes(type, cols);
    size_t n = rb * (size_t)rows;
    uint8_t *w = lkv_malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        w[i] = (uint8_t)lkv_rng_next(r);
    const lkv_qtraits *t = lkv_qtype_traits(type);
    size_t nblk = n / t->block_bytes;
    for (size_t b = 0; b < nblk; b++) {
        uint8_t *p = w + b * t->block_bytes;
        float s1 = (float)(0.01 + 0.05 * lkv_rng_uniform(r));
        float s2 = (float)(0.05 * (lkv_rng_uniform(r) - 0.5));
        switch (type) {
        case LKV_Q_F32: { float v = (float)lkv_rng_normal(r); memcpy(p, &v, 4); break; }
        case LKV_Q_F16: put16(p, lkv_float_to_half((float)lkv_rng_normal(r))); break;
        case LKV_Q_BF16: put16(p, lkv_float_to_bf16((float)lkv_rng_normal(r))); break;
        case LKV_Q_Q4_0: case LKV_Q_Q5_0: case LKV_Q_Q8_0:
            put16(p, lkv_float_to_half(s1)); break;
        case LKV_Q_Q4_1: case LKV_Q_Q5_1: case LKV_Q_Q4_K:
            put16(p, lkv_float_to_half(s1 * (type == LKV_Q_Q4_K ? 0.05f : 1.0f)));
            put16(p + 2, lkv_float_to_half(s2 * (type == LKV_Q_Q4_K ? 0.05f : 1.0f)));
            break;
        case LKV_Q_Q6_K: put16(p + 208, lkv_float_to_half(s1 * 0.05f)); break;
        default: break;
        }
    }
    return w;
}

/* ------------------------------------------------------------- matmul */

typedef struct mm_case {
    int type;
    int64_t rows, cols;
} mm_case;

/* Checks one (type, shape) against every ISA level, n_tok and thread count. */
static void check_matmul(lkv_rng *rng, int type, int64_t rows, int64_t cols,
                         lkv_threadpool *pools[4], int min_tok, int max_tok) {
    const lkv_qtraits *tr = lkv_qtype_traits(type);
    void *w = random_weights(rng, type, rows, cols);
    float *wf = lkv_malloc((size_t)(rows * cols) * sizeof(float));
    CHECK_OK(lkv_dequantize(type, w, wf, rows * cols));
    float *x = lkv_malloc((size_t)(max_tok * cols) * sizeof(float));
    lkv_test_fill_normal(rng, x, (size_t)(max_tok * cols), 1.0f);
    /* a block of zeros and a large outlier exercise the edge cases */
    for (int64_t c = 0; c < cols && c < 32; c++)
        x[c] = 0.0f;
    x[cols / 2] = 40.0f;
    /* the int8 activations every kernel must use */
    int B = lkv_qact_block(type);
    float *xq = lkv_malloc((size_t)(max_tok * cols) * sizeof(float));
    if (B) {
        int8_t *q = lkv_malloc((size_t)cols);
        float *d = lkv_malloc((size_t)(cols / B) * sizeof(float));
        for (int t = 0; t < max_tok; t++) {
            lkv_quantize_act_ref(type, x + t * cols, cols, q, d);
            for (int64_t c = 0; c < cols; c++)
                xq[t * cols + c] = (float)q[c] * d[c / B];
        }
        lkv_free(q);
        lkv_free(d);
    } else {
        memcpy(xq, x, (size_t)(max_tok * cols) * sizeof(float));
    }
    double *ref_q = lkv_malloc((size_t)(max_tok * rows) * sizeof(double));
    double *ref_f = lkv_malloc((size_t)(max_tok * rows) * sizeof(double));
    double *mag = lkv_malloc((size_t)(max_tok * rows) * sizeof(double));
    double fmax = 0;
    for (int t = 0; t < max_tok; t++)
        for (int64_t r = 0; r < rows; r++) {
            double sq = 0, sf = 0, m = 0;
            for (int64_t c = 0; c < cols; c++) {
                double wv = wf[r * cols + c];
                sq += wv * xq[t * cols + c];
                sf += wv * x[t * cols + c];
                m += fabs(wv * xq[t * cols + c]);
            }
            ref_q[t * rows + r] = sq;
            ref_f[t * rows + r] = sf;
            mag[t * rows + r] = m;
            if (fabs(sf) > fmax)
                fmax = fabs(sf);
        }
    float *y = lkv_malloc((size_t)(max_tok * rows) * sizeof(float));
    for (int level = LKV_ISA_REF; level <= (int)lkv_cpu_isa(); level++) {
        lkv_kernel_table kt;
        lkv_kernels_build(&kt, (lkv_isa)level);
        const char *variant = kt.qmm[type].variant;
        for (int n_tok = min_tok; n_tok <= max_tok; n_tok++) {
            for (int th = 1; th <= 3; th++) {
                if (quick && th == 2)
                    continue;
                for (int i = 0; i < n_tok * rows; i++)
                    y[i] = NAN;
                /* scratch: NULL (allocated) on odd n_tok, caller's otherwise */
                void *scratch = NULL;
                if (n_tok % 2 == 0 && B)
                    scratch = lkv_malloc(lkv_matmul_scratch_bytes(type, cols, n_tok));
                int rc = lkv_matmul_with(&kt, type, w, rows, cols, x, n_tok, y, scratch, pools[th]);
                lkv_free(scratch);
                CHECK(rc == 0, "matmul %s rc %d: %s", tr->name, rc, lkv_last_error());
                double worst_q = 0, worst_f = 0;
                for (int i = 0; i < n_tok * rows; i++) {
                    double eq = fabs(y[i] - ref_q[i]) / (mag[i] + 1e-6);
                    double ef = fabs(y[i] - ref_f[i]) / (fmax + 1e-6);
                    if (!(eq <= worst_q))
                        worst_q = eq != eq ? 1e9 : eq;
                    if (!(ef <= worst_f))
                        worst_f = ef != ef ? 1e9 : ef;
                }
                /* tight: same int8 activations, only float summation order differs */
                CHECK(worst_q < 2e-5, "%s/%s rows %lld cols %lld n_tok %d threads %d: rel err %.3g vs quantized ref",
                      tr->name, variant, (long long)rows, (long long)cols, n_tok, th, worst_q);
                /* loose: int8 activations against the f32 ones */
                CHECK(worst_f < (B ? 0.05 : 1e-5), "%s/%s rows %lld cols %lld n_tok %d: rel err %.3g vs f32 ref",
                      tr->name, variant, (long long)rows, (long long)cols, n_tok, worst_f);
            }
        }
    }
    lkv_free(w);
    lkv_free(wf);
    lkv_free(x);
    lkv_free(xq);
    lkv_free(ref_q);
    lkv_free(ref_f);
    lkv_free(mag);
    lkv_free(y);
}

static void test_matmul(lkv_threadpool *pools[4]) {
    lkv_rng rng;
    lkv_rng_seed(&rng, lkv_test_seed() ^ 0x51);
    for (int i = 0; i < N_TYPES; i++) {
        int type = all_types[i];
        int blk = lkv_qtype_traits(type)->block;
        int kq = blk == 256;
        /* cols: an odd number of 32-blocks (odd pair tail), and a longer row */
        int64_t cols_list[2] = {kq ? 256 : 96, kq ? 768 : 576};
        int64_t rows_list[3] = {1, 7, 37};
        for (int ci = 0; ci < 2; ci++)
            for (int ri = 0; ri < 3; ri++) {
                if (quick && ri == 1)
                    continue;
                check_matmul(&rng, type, rows_list[ri], cols_list[ci], pools, 1,
                             quick ? 5 : 9);
            }
    }
    /* prefill-sized batches cross the kernels' 64-token chunks */
    int big[3] = {LKV_Q_Q4_1, LKV_Q_Q8_0, LKV_Q_Q6_K};
    for (int i = 0; i < 3; i++)
        check_matmul(&rng, big[i], 13, big[i] == LKV_Q_Q6_K ? 512 : 192, pools, 70, 70);
    /* get_row equals the dequantized row */
    {
        void *w = random_weights(&rng, LKV_Q_Q4_1, 5, 64);
        float row[64], all[320];
        CHECK_OK(lkv_get_row(LKV_Q_Q4_1, w, 64, 3, row));
        CHECK_OK(lkv_dequantize(LKV_Q_Q4_1, w, all, 320));
        CHECK(memcmp(row, all + 192, sizeof row) == 0, "get_row");
        CHECK(lkv_get_row(LKV_Q_Q4_1, w, 63, 0, row) == LKV_ERR_INVALID, "get_row bad cols");
        float y[5];
        CHECK(lkv_matmul(LKV_Q_Q4_1, w, 5, 63, row, 1, y, NULL, NULL) == LKV_ERR_INVALID,
              "matmul bad cols");
        CHECK(lkv_matmul(LKV_Q_Q2_K, w, 1, 256, row, 1, y, NULL, NULL) == LKV_ERR_UNSUPPORTED,
              "matmul unsupported type");
        CHECK(lkv_matmul(LKV_Q_Q4_1, w, 5, 64, row, 0, y, NULL, NULL) == LKV_ERR_INVALID,
              "matmul n_tok 0");
        lkv_free(w);
    }
}

static void test_act_quant(void) {
    lkv_rng rng;
    lkv_rng_seed(&rng, lkv_test_seed() ^ 0xac7);
    float x[512];
    int8_t q[512];
    float d[16];
    lkv_test_fill_normal(&rng, x, 512, 3.0f);
    int types[2] = {LKV_Q_Q4_1, LKV_Q_Q6_K};
    for (int k = 0; k < 2; k++) {
        int B = lkv_qact_block(types[k]);
        lkv_quantize_act_ref(types[k], x, 512, q, d);
        int ok = 1, amax_hit = 1;
        for (int b = 0; b < 512 / B; b++) {
            int hit = 0;
            for (int i = b * B; i < (b + 1) * B; i++) {
                ok &= fabsf(q[i] * d[b] - x[i]) <= d[b] * 0.5f * 1.0001f;
                hit |= q[i] == 127 || q[i] == -127;
            }
            amax_hit &= hit;
        }
        CHECK(ok, "activation quantization error within d/2 (block %d)", B);
        CHECK(amax_hit, "the largest element maps to +-127 (block %d)", B);
    }
    CHECK(lkv_qact_block(LKV_Q_F32) == 0 && lkv_qact_block(LKV_Q_Q8_0) == 32 &&
              lkv_qact_block(LKV_Q_Q4_K) == 256, "activation block sizes");
}

/* ------------------------------------------------------------- perf mode */

/* Single-thread runs are timed in thread CPU time: on a shared machine the
 * wall clock mostly measures the other processes. */
static int perf_cpu_clock;
static double now_s(void) {
    struct timespec ts;
    clock_gettime(perf_cpu_clock ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void perf(lkv_threadpool *pools[4]) {
    static const mm_case cases[] = {
        {LKV_Q_Q4_1, 1536, 576}, {LKV_Q_Q4_1, 576, 1536}, {LKV_Q_Q4_1, 576, 576},
        {LKV_Q_Q8_0, 49152, 576}, {LKV_Q_Q4_0, 1536, 576},
        /* Gemma-3-270M: hidden 640 (Q5_0 / Q8_0 rows), ffn 2048 (k-quant rows) */
        {LKV_Q_Q5_0, 2048, 640}, {LKV_Q_Q4_K, 640, 2048}, {LKV_Q_Q6_K, 640, 2048},
    };
    lkv_rng rng;
    lkv_rng_seed(&rng, 7);
    int ntoks[2] = {1, 64};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const mm_case *c = &cases[ci];
        /* enough copies of the matrix to exceed the L3 (decode reads from DRAM) */
        size_t rb = lkv_qtype_row_bytes(c->type, c->cols), mb = rb * (size_t)c->rows;
        int copies = (int)((64u << 20) / mb) + 1;
        if (getenv("LONGKV_TEST_PERF_HOT")) /* cache-resident: one copy */
            copies = 1;
        uint8_t *w = lkv_malloc(mb * (size_t)copies);
        void *one = random_weights(&rng, c->type, c->rows, c->cols);
        for (int k = 0; k < copies; k++)
            memcpy(w + (size_t)k * mb, one, mb);
        lkv_free(one);
        float *x = lkv_malloc((size_t)(64 * c->cols) * sizeof(float));
        float *y = lkv_malloc((size_t)(64 * c->rows) * sizeof(float));
        lkv_test_fill_normal(&rng, x, (size_t)(64 * c->cols), 1.0f);
        for (int th = 1; th <= 2; th++)
            for (int ti = 0; ti < 2; ti++) {
                int nt = ntoks[ti];
                int iters = 0;
                perf_cpu_clock = th == 1;
                double per = 1e30, start = now_s();
                do { /* best of short runs */
                    double t0 = now_s();
                    for (int k = 0; k < 4; k++, iters++)
                        lkv_matmul(c->type, w + (size_t)(iters % copies) * mb, c->rows, c->cols,
                                   x, nt, y, NULL, pools[th]);
                    double t = (now_s() - t0) / 4;
                    per = t < per ? t : per;
                } while (now_s() - start < 0.3);
                printf("perf %-5s %6lldx%-5lld n_tok %2d threads %d: %8.1f us  %6.1f GB/s  %7.1f GOP/s\n",
                       lkv_qtype_traits(c->type)->name, (long long)c->rows, (long long)c->cols, nt,
                       th, per * 1e6, (double)mb / per * 1e-9,
                       2.0 * (double)c->rows * (double)c->cols * nt / per * 1e-9);
            }
        lkv_free(w);
        lkv_free(x);
        lkv_free(y);
    }
}

int main(void) {
    quick = getenv("LONGKV_TEST_QUICK") && atoi(getenv("LONGKV_TEST_QUICK"));
    lkv_test_seed();
    lkv_threadpool *pools[4] = {NULL, NULL, NULL, NULL};
    for (int i = 1; i <= 3; i++)
        CHECK_OK(lkv_threadpool_create(i, &pools[i]));
    for (int level = LKV_ISA_REF; level <= (int)lkv_cpu_isa(); level++) {
        lkv_kernel_table kt;
        lkv_kernels_build(&kt, (lkv_isa)level);
        printf("level %s:", lkv_isa_name((lkv_isa)level));
        for (int i = 0; i < N_TYPES; i++)
            printf(" %s=%s", lkv_qtype_traits(all_types[i])->name, kt.qmm[all_types[i]].variant);
        printf("\n");
    }
    test_traits();
    test_dequant_known();
    test_act_quant();
    test_matmul(pools);
    if (getenv("LONGKV_TEST_PERF") && atoi(getenv("LONGKV_TEST_PERF")))
        perf(pools);
    for (int i = 1; i <= 3; i++)
        lkv_threadpool_free(pools[i]);
    return lkv_test_finish("test_quant");
}
