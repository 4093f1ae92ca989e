/* test_roofline.c -- the machine-limit measurements: every ISA's inner loops
 * against the reference, and the public functions' contract (positive finite
 * results, bad arguments rejected, out-of-memory reported). Never asserts on
 * speed. */
#include <string.h>

#include "common/alloc.h"
#include "kernels/kernels.h"
#include "testutil.h"

/* Sizes around every unroll boundary of the SIMD loops (8, 16, 64, 128). */
static const size_t sizes[] = {0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 63, 64, 65, 127, 128,
                               129, 255, 257, 1000, 4099, 65536 + 13, 300007};

static void test_read_sum(lkv_rng *r) {
    size_t cap = 300007 + 8;
    float *x = lkv_malloc(cap * sizeof(float));
    float *y = lkv_malloc(cap * sizeof(float));
    CHECK(x && y, "allocation");
    if (!x || !y)
        goto done;
    /* Multiples of 1/4 in [-2, 2]: every partial sum is exact in float, so every
     * summation order gives the same result and any lost or doubled element
     * shows. */
    for (size_t i = 0; i < cap; i++)
        x[i] = (float)((int)lkv_rng_below(r, 17) - 8) * 0.25f;
    lkv_test_fill_normal(r, y, cap, 1.0f);

    for (int level = LKV_ISA_REF; level <= (int)lkv_cpu_isa(); level++) {
        lkv_kernel_table t;
        lkv_kernels_build(&t, (lkv_isa)level);
        const char *name = lkv_isa_name((lkv_isa)level);
        CHECK(t.read_sum && t.fma_loop, "%s: roofline entries present", name);
        if (!t.read_sum || !t.fma_loop)
            continue;
        /* VNNI adds integer kernels only: its roofline loops are AVX-512's */
        const lkv_isa want = level > LKV_ISA_AVX512 ? LKV_ISA_AVX512 : (lkv_isa)level;
        CHECK(t.read_sum_isa == want, "%s: read_sum from %s", name, lkv_isa_name(t.read_sum_isa));
        CHECK(t.fma_loop_isa == want, "%s: fma_loop from %s", name, lkv_isa_name(t.fma_loop_isa));
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            for (size_t off = 0; off < 4; off += 3) { /* aligned and misaligned */
                size_t n = sizes[si];
                double want = lkv_read_sum_ref(x + off, n);
                double got = t.read_sum(x + off, n);
                CHECK(got == want, "%s: exact read_sum n=%zu off=%zu: %.17g vs %.17g", name, n,
                      off, got, want);
                double abs_sum = 0.0;
                for (size_t i = 0; i < n; i++)
                    abs_sum += fabs(y[off + i]);
                want = lkv_read_sum_ref(y + off, n);
                got = t.read_sum(y + off, n);
                /* float rounding of a different summation order */
                double tol = 1e-5 * abs_sum + 1e-6;
                CHECK(fabs(got - want) <= tol, "%s: read_sum n=%zu off=%zu: %.9g vs %.9g", name,
                      n, off, got, want);
            }
        }
    }
done:
    lkv_free(x);
    lkv_free(y);
}

/* The flop count an fma_loop returns must match the chains it really ran: every
 * lane of every chain converges to 1, so the sink (their sum) equals the number
 * of lanes = flops / (2 * iters). */
static void test_fma_loop(void) {
    for (int level = LKV_ISA_REF; level <= (int)lkv_cpu_isa(); level++) {
        lkv_kernel_table t;
        lkv_kernels_build(&t, (lkv_isa)level);
        if (!t.fma_loop)
            continue;
        const char *name = lkv_isa_name((lkv_isa)level);
        float sink[16] = {0};
        long iters = 20000;
        double flops = t.fma_loop(sink, iters);
        double lanes = flops / (2.0 * (double)iters);
        CHECK(flops > 0 && lanes == floor(lanes), "%s: flops=%g", name, flops);
        CHECK(isfinite(sink[0]) && fabs(sink[0] - lanes) <= 0.01 * lanes,
              "%s: sink %g vs %g lanes", name, sink[0], lanes);
        flops = t.fma_loop(sink, 1);
        CHECK(flops == 2.0 * lanes && isfinite(sink[0]), "%s: one round", name);
    }
}

static void test_measure(void) {
    double v = -1.0;
    /* one thread, DRAM-sized would be slow for a test: a 4 MiB working set */
    CHECK_OK(lkv_measure_read_bandwidth((size_t)4 << 20, 0.02, NULL, &v));
    CHECK(isfinite(v) && v > 0, "read bandwidth %g", v);
    v = -1.0;
    CHECK_OK(lkv_measure_fma_peak(0.02, NULL, &v));
    CHECK(isfinite(v) && v > 0, "fma peak %g", v);

    lkv_threadpool *tp = NULL;
    CHECK_OK(lkv_threadpool_create(2, &tp));
    v = -1.0;
    CHECK_OK(lkv_measure_read_bandwidth((size_t)256 << 10, 0.02, tp, &v));
    CHECK(isfinite(v) && v > 0, "read bandwidth, 2 threads %g", v);
    /* an odd size: slices are rounded down to whole cache lines */
    v = -1.0;
    CHECK_OK(lkv_measure_read_bandwidth(3 * 4096 + 5, 0.01, tp, &v));
    CHECK(isfinite(v) && v > 0, "read bandwidth, odd size %g", v);
    v = -1.0;
    CHECK_OK(lkv_measure_fma_peak(0.02, tp, &v));
    CHECK(isfinite(v) && v > 0, "fma peak, 2 threads %g", v);

    /* the read probe: steps of several sizes, wrapping around its working set */
    lkv_read_probe *pr = NULL;
    CHECK_OK(lkv_read_probe_create((size_t)1 << 20, tp, &pr));
    static const size_t steps[] = {(size_t)1 << 20, 4096 * 3 + 64, (size_t)700 << 10, 128};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        double sec = -1.0;
        CHECK_OK(lkv_read_probe_step(pr, steps[i], &sec));
        CHECK(isfinite(sec) && sec > 0, "probe step of %zu bytes: %g s", steps[i], sec);
    }
    double sec = -1.0;
    CHECK(lkv_read_probe_step(pr, ((size_t)1 << 20) + 4096, &sec) == LKV_ERR_INVALID,
          "probe step larger than the working set");
    CHECK(sec == 0.0, "probe seconds zeroed on failure");
    CHECK(lkv_read_probe_step(pr, 64, &sec) == LKV_ERR_INVALID, "probe step < 64 B per thread");
    CHECK(lkv_read_probe_step(pr, 4096, NULL) == LKV_ERR_INVALID, "probe NULL seconds");
    CHECK(lkv_read_probe_step(NULL, 4096, &sec) == LKV_ERR_INVALID, "probe NULL");
    lkv_read_probe_destroy(pr);
    lkv_read_probe_destroy(NULL);
    pr = (lkv_read_probe *)&v;
    CHECK(lkv_read_probe_create(4096, tp, &pr) == LKV_ERR_INVALID && pr == NULL,
          "probe < 4096 bytes per thread");
    CHECK(lkv_read_probe_create(1 << 20, tp, NULL) == LKV_ERR_INVALID, "probe NULL out");

    /* bad arguments */
    CHECK(lkv_measure_read_bandwidth(1 << 20, 0.01, NULL, NULL) == LKV_ERR_INVALID, "NULL out");
    CHECK(lkv_measure_read_bandwidth(0, 0.01, NULL, &v) == LKV_ERR_INVALID, "0 bytes");
    CHECK(v == 0.0, "output zeroed on failure");
    CHECK(lkv_measure_read_bandwidth(4095, 0.01, NULL, &v) == LKV_ERR_INVALID, "< 4096 bytes");
    CHECK(lkv_measure_read_bandwidth(4096, 0.01, tp, &v) == LKV_ERR_INVALID,
          "< 4096 bytes per thread");
    CHECK(lkv_measure_read_bandwidth(((size_t)1 << 40) + 1, 0.01, NULL, &v) == LKV_ERR_INVALID,
          "> 2^40 bytes");
    CHECK(lkv_measure_read_bandwidth(1 << 20, -1.0, NULL, &v) == LKV_ERR_INVALID,
          "negative seconds");
    CHECK(lkv_measure_read_bandwidth(1 << 20, NAN, NULL, &v) == LKV_ERR_INVALID, "NaN seconds");
    CHECK(lkv_measure_read_bandwidth(1 << 20, 61.0, NULL, &v) == LKV_ERR_INVALID,
          "too many seconds");
    CHECK(strlen(lkv_last_error()) > 0, "message set");
    CHECK(lkv_measure_fma_peak(0.01, NULL, NULL) == LKV_ERR_INVALID, "fma NULL out");
    CHECK(lkv_measure_fma_peak(-0.5, tp, &v) == LKV_ERR_INVALID, "fma negative seconds");
    CHECK(lkv_measure_fma_peak(INFINITY, tp, &v) == LKV_ERR_INVALID, "fma infinite seconds");

    /* out of memory is an error, and nothing leaks */
    size_t live = lkv_alloc_count_live();
    lkv_alloc_fail_after(0);
    CHECK(lkv_measure_read_bandwidth(1 << 20, 0.01, NULL, &v) == LKV_ERR_NOMEM, "read nomem");
    lkv_alloc_fail_after(1);
    CHECK(lkv_measure_read_bandwidth(1 << 20, 0.01, NULL, &v) == LKV_ERR_NOMEM, "read nomem 2");
    lkv_alloc_fail_after(0);
    CHECK(lkv_measure_fma_peak(0.01, NULL, &v) == LKV_ERR_NOMEM, "fma nomem");
    lkv_alloc_fail_after(-1);
    CHECK(lkv_alloc_count_live() == live, "no leak after failures");
    lkv_threadpool_free(tp);
}

int main(void) {
    lkv_rng r;
    lkv_rng_seed(&r, lkv_test_seed());
    test_read_sum(&r);
    test_fma_loop();
    test_measure();
    return lkv_test_finish("test_roofline");
}
