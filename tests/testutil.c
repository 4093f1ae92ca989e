#include "testutil.h"

#include <stdlib.h>

int lkv_test_passed, lkv_test_failed;

uint64_t lkv_test_seed(void) {
    static int printed;
    const char *e = getenv("LONGKV_TEST_SEED");
    uint64_t seed = e ? strtoull(e, NULL, 0) : 20261122u;
    if (!printed) {
        printf("seed %llu (set LONGKV_TEST_SEED to change)\n", (unsigned long long)seed);
        printed = 1;
    }
    return seed;
}

void lkv_test_fill_normal(lkv_rng *r, float *x, size_t n, float sigma) {
    for (size_t i = 0; i < n; i++)
        x[i] = (float)lkv_rng_normal(r) * sigma;
}

double lkv_test_max_abs_err(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (e > m || e != e)
            m = e;
    }
    return m;
}

double lkv_test_rel_err(const float *a, const float *b, size_t n, double floor_) {
    double mb = floor_;
    for (size_t i = 0; i < n; i++)
        if (fabs(b[i]) > mb)
            mb = fabs(b[i]);
    return lkv_test_max_abs_err(a, b, n) / mb;
}

lkv_threadpool *lkv_test_threadpool(void) {
    lkv_threadpool *tp = NULL;
    const char *nt = getenv("LONGKV_TEST_THREADS");
    if (nt && atoi(nt) > 1)
        CHECK_OK(lkv_threadpool_create(atoi(nt), &tp));
    return tp;
}

lkv_cache *lkv_test_cache(int n_layers, int kv_heads, int head_dim, int page_tokens,
                          lkv_dtype dtype, size_t budget_bytes, uint64_t model_id) {
    lkv_cache_params cp = lkv_cache_default_params();
    cp.n_layers = n_layers;
    cp.kv_heads = kv_heads;
    cp.head_dim = head_dim;
    cp.page_tokens = page_tokens;
    cp.dtype = dtype;
    cp.budget_bytes = budget_bytes;
    cp.model_id = model_id;
    lkv_cache *c = NULL;
    CHECK_OK(lkv_cache_create(&cp, &c));
    return c;
}

int lkv_test_finish(const char *name) {
    printf("%s: %d passed, %d failed\n", name, lkv_test_passed, lkv_test_failed);
    return lkv_test_failed ? 1 : 0;
}
