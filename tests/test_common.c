/* test_common.c -- errors, allocator accounting and failure hook, thread pool,
 * fp16/bf16 conversions, CPU detection. */
#include <stdatomic.h>
#include <string.h>

#include "common/alloc.h"
#include "common/cpu.h"
#include "common/error.h"
#include "common/fp16.h"
#include "testutil.h"

static void test_errors(void) {
    CHECK(strcmp(lkv_strerror(LKV_OK), "ok") == 0, "ok");
    CHECK(strcmp(lkv_strerror(LKV_ERR_BUDGET), "memory budget exceeded") == 0, "budget");
    CHECK(strcmp(lkv_strerror(-999), "unknown error") == 0, "unknown");
    int rc = lkv_set_error(LKV_ERR_INVALID, "bad %d", 7);
    CHECK(rc == LKV_ERR_INVALID, "rc");
    CHECK(strcmp(lkv_last_error(), "bad 7") == 0, "message '%s'", lkv_last_error());
}

static void test_alloc(void) {
    size_t base = lkv_alloc_bytes_in_use();
    void *p = lkv_malloc(1000);
    CHECK(p != NULL, "malloc");
    CHECK(((uintptr_t)p % 64) == 0, "alignment");
    CHECK(lkv_alloc_bytes_in_use() == base + 1000, "accounting");
    p = lkv_realloc(p, 5000);
    CHECK(p && lkv_alloc_bytes_in_use() == base + 5000, "realloc accounting");
    lkv_free(p);
    CHECK(lkv_alloc_bytes_in_use() == base, "free accounting");
    lkv_alloc_fail_after(2);
    void *a = lkv_malloc(8), *b = lkv_malloc(8), *c = lkv_malloc(8);
    CHECK(a && b && !c, "failure hook fires on the third allocation");
    lkv_alloc_fail_after(-1);
    lkv_free(a);
    lkv_free(b);
    CHECK(lkv_calloc(SIZE_MAX / 2, 4) == NULL, "calloc overflow");
    lkv_free(NULL);
}

static atomic_int hits[1000];
static void count_task(void *arg, int task, int thread) {
    (void)arg;
    atomic_fetch_add(&hits[task], 1 + thread * 0);
}

static void test_threadpool(void) {
    lkv_threadpool *tp = NULL;
    CHECK(lkv_threadpool_create(0, &tp) == LKV_ERR_INVALID, "0 threads rejected");
    CHECK_OK(lkv_threadpool_create(3, &tp));
    CHECK(lkv_threadpool_size(tp) == 3, "size");
    for (int round = 0; round < 200; round++) {
        memset(hits, 0, sizeof hits);
        int n = 1 + round * 5 % 1000;
        lkv_threadpool_run(tp, n, count_task, NULL);
        int ok = 1;
        for (int i = 0; i < 1000; i++)
            if (atomic_load(&hits[i]) != (i < n))
                ok = 0;
        CHECK(ok, "round %d: every task ran exactly once", round);
    }
    lkv_threadpool_free(tp);
    lkv_threadpool_free(NULL);
}

static void test_fp16(void) {
    /* every half converts to float and back exactly (NaNs stay NaN) */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lkv_half_to_float((uint16_t)h);
        uint16_t back = lkv_float_to_half(f);
        if (f != f) {
            if ((back & 0x7c00) != 0x7c00 || !(back & 0x3ff))
                bad++;
        } else if (back != h) {
            bad++;
        }
    }
    CHECK(bad == 0, "%d halves failed the round trip", bad);
    /* rounding: nearest even, double-precision check on random floats */
    lkv_rng r;
    lkv_rng_seed(&r, lkv_test_seed());
    int wrong = 0;
    for (int i = 0; i < 200000; i++) {
        float f = (float)((lkv_rng_uniform(&r) - 0.5) * pow(2.0, (double)(lkv_rng_below(&r, 40)) - 24));
        uint16_t h = lkv_float_to_half(f);
        double got = lkv_half_to_float(h);
        /* the neighbours of h must not be strictly closer */
        double up = lkv_half_to_float((uint16_t)(h + 1)), dn = lkv_half_to_float((uint16_t)(h - 1));
        double e = fabs(got - f);
        if ((h & 0x7fff) != 0x7fff && fabs(up - f) < e)
            wrong++;
        if ((h & 0x7fff) != 0 && fabs(dn - f) < e)
            wrong++;
    }
    CHECK(wrong == 0, "%d conversions were not nearest", wrong);
    CHECK(lkv_float_to_half(70000.0f) == 0x7c00, "overflow to inf");
    CHECK(lkv_bf16_to_float(lkv_float_to_bf16(1.0f)) == 1.0f, "bf16 1.0");
    CHECK(lkv_float_to_bf16(1.00390625f) == 0x3f80, "bf16 tie rounds to even");
    CHECK(lkv_float_to_bf16(1.01171875f) == 0x3f82, "bf16 tie rounds to even (up)");
}

static void test_cpu(void) {
    lkv_isa isa = lkv_cpu_isa();
    printf("cpu isa: %s\n", lkv_isa_name(isa));
    CHECK(lkv_active_isa() <= isa, "active <= cpu");
    char buf[1024];
    size_t n = lkv_kernels_describe(buf, sizeof buf);
    CHECK(n > 0 && strstr(buf, "active"), "describe: %s", buf);
}

int main(void) {
    test_errors();
    test_alloc();
    test_threadpool();
    test_fp16();
    test_cpu();
    return lkv_test_finish("test_common");
}
