/* roofline.c (ref) -- the inner loops of the machine-limit measurements, in
 * plain C: the specification of what the SIMD versions compute. */
#include "kernels/kernels.h"

/* Sum of x[0..n). Eight partial sums so the loop is bound by loads, not by the
 * latency of one chain of adds. */
double lkv_read_sum_ref(const float *x, size_t n) {
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            s[j] += x[i + j];
    double total = 0.0;
    for (; i < n; i++)
        total += x[i];
    for (int j = 0; j < 8; j++)
        total += s[j];
    return total;
}

#define REF_CHAINS 16

/* iters rounds of REF_CHAINS independent chains a = a * m + c (m < 1, so every
 * chain converges to c / (1 - m) = 1 and never leaves the normal range). */
double lkv_fma_loop_ref(float *sink, long iters) {
    volatile float vm = 0.999f, vc = 0.001f; /* volatile: no constant folding */
    float m = vm, c = vc;
    float a[REF_CHAINS];
    for (int j = 0; j < REF_CHAINS; j++)
        a[j] = 1.0f + 0.01f * (float)j;
    for (long it = 0; it < iters; it++)
        for (int j = 0; j < REF_CHAINS; j++)
            a[j] = a[j] * m + c;
    float s = 0.0f;
    for (int j = 0; j < REF_CHAINS; j++)
        s += a[j];
    sink[0] = s;
    return 2.0 * REF_CHAINS * (double)iters;
}
