/* testutil.h -- a tiny test harness: checks count instead of aborting, seeds
 * are printed, and the program ends with "N passed, N failed". */
#ifndef LKV_TESTUTIL_H
#define LKV_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "longkv.h"
#include "common/rng.h"

extern int lkv_test_passed, lkv_test_failed;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (cond) {                                                           \
            lkv_test_passed++;                                                \
        } else {                                                              \
            lkv_test_failed++;                                                \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
        }                                                                     \
    } while (0)

#define CHECK_OK(expr)                                                                     \
    do {                                                                                   \
        int rc_ = (expr);                                                                  \
        CHECK(rc_ == 0, "%s returned %d (%s): %s", #expr, rc_, lkv_strerror(rc_),          \
              lkv_last_error());                                                           \
    } while (0)

/* Seed for this run: LONGKV_TEST_SEED or a fixed default; printed once. */
uint64_t lkv_test_seed(void);

/* Fills x[n] with N(0, sigma^2) values. */
void lkv_test_fill_normal(lkv_rng *r, float *x, size_t n, float sigma);

/* max |a-b| / max(max|b|, floor) */
double lkv_test_rel_err(const float *a, const float *b, size_t n, double floor_);
double lkv_test_max_abs_err(const float *a, const float *b, size_t n);

/* The model tests' pool: NULL (single-threaded: CI machines are often
 * oversubscribed, where spinning workers cost more than they give) unless
 * LONGKV_TEST_THREADS=N > 1 asks for N threads. A failed create is a failure. */
lkv_threadpool *lkv_test_threadpool(void);

/* A cache with the default parameters but these; a failed create is a
 * failure (and returns NULL). */
lkv_cache *lkv_test_cache(int n_layers, int kv_heads, int head_dim, int page_tokens,
                          lkv_dtype dtype, size_t budget_bytes, uint64_t model_id);

/* Prints "N passed, N failed" and returns the exit code for main. */
int lkv_test_finish(const char *name);

#endif
