/* roofline.c (AVX-512) -- streaming sum and FMA-peak loop on 512-bit vectors. */
#include <immintrin.h>

#include "kernels/kernels.h"

/* Eight accumulators, 128 floats (512 bytes) per round; the tail (< 16 floats)
 * uses one masked load. A software prefetch 4 KiB ahead adds ~15% from DRAM
 * on one core (a standalone copy of this loop, with and without: 38-39 -> 44-45 GB/s): the ceiling should be what a
 * kernel can reach, and the attention kernels prefetch too. A prefetch past
 * the end of the buffer never faults. */
#define READ_PREFETCH_BYTES 4096
double lkv_read_sum_avx512(const float *x, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    __m512 s4 = _mm512_setzero_ps(), s5 = _mm512_setzero_ps();
    __m512 s6 = _mm512_setzero_ps(), s7 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        _mm_prefetch((const char *)(x + i) + READ_PREFETCH_BYTES, _MM_HINT_T0);
        _mm_prefetch((const char *)(x + i) + READ_PREFETCH_BYTES + 64, _MM_HINT_T0);
        _mm_prefetch((const char *)(x + i) + READ_PREFETCH_BYTES + 128, _MM_HINT_T0);
        _mm_prefetch((const char *)(x + i) + READ_PREFETCH_BYTES + 192, _MM_HINT_T0);
        _mm_prefetch((const char *)(x + i) + READ_PREFETCH_BYTES + 256, _MM_HINT_T0);
        _mm_prefetch((const char *)(x + i) + READ_PREFETCH_BYTES + 320, _MM_HINT_T0);
        _mm_prefetch((const char *)(x + i) + READ_PREFETCH_BYTES + 384, _MM_HINT_T0);
        _mm_prefetch((const char *)(x + i) + READ_PREFETCH_BYTES + 448, _MM_HINT_T0);
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(x + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_loadu_ps(x + i + 48));
        s4 = _mm512_add_ps(s4, _mm512_loadu_ps(x + i + 64));
        s5 = _mm512_add_ps(s5, _mm512_loadu_ps(x + i + 80));
        s6 = _mm512_add_ps(s6, _mm512_loadu_ps(x + i + 96));
        s7 = _mm512_add_ps(s7, _mm512_loadu_ps(x + i + 112));
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        s1 = _mm512_add_ps(s1, _mm512_maskz_loadu_ps(k, x + i));
    }
    s0 = _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3));
    s4 = _mm512_add_ps(_mm512_add_ps(s4, s5), _mm512_add_ps(s6, s7));
    return (double)_mm512_reduce_add_ps(_mm512_add_ps(s0, s4));
}

/* 16 chains of 16 lanes: covers FMA latency (4 cycles) x 2 FMA pipes with
 * room to spare, using half of the 32 vector registers. */
double lkv_fma_loop_avx512(float *sink, long iters) {
    volatile float vm = 0.999f, vc = 0.001f;
    const __m512 m = _mm512_set1_ps(vm), c = _mm512_set1_ps(vc);
    __m512 a0 = _mm512_set1_ps(1.00f), a1 = _mm512_set1_ps(1.01f);
    __m512 a2 = _mm512_set1_ps(1.02f), a3 = _mm512_set1_ps(1.03f);
    __m512 a4 = _mm512_set1_ps(1.04f), a5 = _mm512_set1_ps(1.05f);
    __m512 a6 = _mm512_set1_ps(1.06f), a7 = _mm512_set1_ps(1.07f);
    __m512 a8 = _mm512_set1_ps(1.08f), a9 = _mm512_set1_ps(1.09f);
    __m512 a10 = _mm512_set1_ps(1.10f), a11 = _mm512_set1_ps(1.11f);
    __m512 a12 = _mm512_set1_ps(1.12f), a13 = _mm512_set1_ps(1.13f);
    __m512 a14 = _mm512_set1_ps(1.14f), a15 = _mm512_set1_ps(1.15f);
    for (long it = 0; it < iters; it++) {
        a0 = _mm512_fmadd_ps(a0, m, c);
        a1 = _mm512_fmadd_ps(a1, m, c);
        a2 = _mm512_fmadd_ps(a2, m, c);
        a3 = _mm512_fmadd_ps(a3, m, c);
        a4 = _mm512_fmadd_ps(a4, m, c);
        a5 = _mm512_fmadd_ps(a5, m, c);
        a6 = _mm512_fmadd_ps(a6, m, c);
        a7 = _mm512_fmadd_ps(a7, m, c);
        a8 = _mm512_fmadd_ps(a8, m, c);
        a9 = _mm512_fmadd_ps(a9, m, c);
        a10 = _mm512_fmadd_ps(a10, m, c);
        a11 = _mm512_fmadd_ps(a11, m, c);
        a12 = _mm512_fmadd_ps(a12, m, c);
        a13 = _mm512_fmadd_ps(a13, m, c);
        a14 = _mm512_fmadd_ps(a14, m, c);
        a15 = _mm512_fmadd_ps(a15, m, c);
    }
    a0 = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
    a4 = _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7));
    a8 = _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11));
    a12 = _mm512_add_ps(_mm512_add_ps(a12, a13), _mm512_add_ps(a14, a15));
    a0 = _mm512_add_ps(_mm512_add_ps(a0, a4), _mm512_add_ps(a8, a12));
    sink[0] = _mm512_reduce_add_ps(a0);
    return 2.0 * 16 * 16 * (double)iters;
}
