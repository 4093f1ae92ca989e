/* roofline.c (AVX2+FMA) -- streaming sum and FMA-peak loop on 256-bit vectors. */
#include <immintrin.h>

#include "kernels/kernels.h"

static double hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    __m128 s = _mm_add_ps(lo, hi);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return (double)_mm_cvtss_f32(s);
}

/* Eight accumulators, 64 floats (256 bytes) per round: two loads per cycle are
 * kept busy while each add chain waits out its latency. */
double lkv_read_sum_avx2(const float *x, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    __m256 s4 = _mm256_setzero_ps(), s5 = _mm256_setzero_ps();
    __m256 s6 = _mm256_setzero_ps(), s7 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) { /* prefetch 4 KiB ahead: see ../avx512/roofline.c */
        _mm_prefetch((const char *)(x + i) + 4096, _MM_HINT_T0);
        _mm_prefetch((const char *)(x + i) + 4096 + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)(x + i) + 4096 + 128, _MM_HINT_T0);
        _mm_prefetch((const char *)(x + i) + 4096 + 192, _MM_HINT_T0);
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(x + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(x + i + 24));
        s4 = _mm256_add_ps(s4, _mm256_loadu_ps(x + i + 32));
        s5 = _mm256_add_ps(s5, _mm256_loadu_ps(x + i + 40));
        s6 = _mm256_add_ps(s6, _mm256_loadu_ps(x + i + 48));
        s7 = _mm256_add_ps(s7, _mm256_loadu_ps(x + i + 56));
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
    s0 = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    s4 = _mm256_add_ps(_mm256_add_ps(s4, s5), _mm256_add_ps(s6, s7));
    double total = hsum256(_mm256_add_ps(s0, s4));
    for (; i < n; i++)
        total += x[i];
    return total;
}

/* 12 chains of 8 lanes: covers FMA latency (4-5 cycles) x 2 FMA pipes on
 * current x86 cores and leaves registers for the two operands. */
double lkv_fma_loop_avx2(float *sink, long iters) {
    volatile float vm = 0.999f, vc = 0.001f;
    const __m256 m = _mm256_set1_ps(vm), c = _mm256_set1_ps(vc);
    __m256 a0 = _mm256_set1_ps(1.00f), a1 = _mm256_set1_ps(1.01f);
    __m256 a2 = _mm256_set1_ps(1.02f), a3 = _mm256_set1_ps(1.03f);
    __m256 a4 = _mm256_set1_ps(1.04f), a5 = _mm256_set1_ps(1.05f);
    __m256 a6 = _mm256_set1_ps(1.06f), a7 = _mm256_set1_ps(1.07f);
    __m256 a8 = _mm256_set1_ps(1.08f), a9 = _mm256_set1_ps(1.09f);
    __m256 a10 = _mm256_set1_ps(1.10f), a11 = _mm256_set1_ps(1.11f);
    for (long it = 0; it < iters; it++) {
        a0 = _mm256_fmadd_ps(a0, m, c);
        a1 = _mm256_fmadd_ps(a1, m, c);
        a2 = _mm256_fmadd_ps(a2, m, c);
        a3 = _mm256_fmadd_ps(a3, m, c);
        a4 = _mm256_fmadd_ps(a4, m, c);
        a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c);
        a7 = _mm256_fmadd_ps(a7, m, c);
        a8 = _mm256_fmadd_ps(a8, m, c);
        a9 = _mm256_fmadd_ps(a9, m, c);
        a10 = _mm256_fmadd_ps(a10, m, c);
        a11 = _mm256_fmadd_ps(a11, m, c);
    }
    a0 = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    a4 = _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7));
    a8 = _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11));
    sink[0] = (float)hsum256(_mm256_add_ps(_mm256_add_ps(a0, a4), a8));
    return 2.0 * 12 * 8 * (double)iters;
}
