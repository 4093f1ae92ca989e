/* alloc.h -- the library's allocator: every heap byte goes through here.
 *
 * Why: budgets must be honest (bytes are counted), and out-of-memory must be
 * testable (a hook fails the N-th allocation, as SQLite's tests do).
 * All blocks are 64-byte aligned (one cache line, one AVX-512 vector).
 */
#ifndef LKV_COMMON_ALLOC_H
#define LKV_COMMON_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#define LKV_ALIGN 64

/* Aligned allocation; NULL on failure (or when the failure hook fires). */
void *lkv_malloc(size_t bytes);
void *lkv_calloc(size_t count, size_t size); /* zeroed; overflow-checked */
void *lkv_realloc(void *p, size_t bytes);    /* keeps alignment; NULL keeps p */
void lkv_free(void *p);                      /* NULL is a no-op */
char *lkv_strdup(const char *s);

/* Bytes currently allocated through lkv_malloc & co., and the peak since start
 * (or since lkv_alloc_reset_peak). Thread-safe. */
size_t lkv_alloc_bytes_in_use(void);
size_t lkv_alloc_bytes_peak(void);
size_t lkv_alloc_count_live(void);   /* number of live blocks */
void lkv_alloc_reset_peak(void);

/* Failure injection for tests: after `n` more successful allocations, every
 * following one fails (n = 0 fails the next). n < 0 disables. Also counts OS
 * commits requested through lkv_alloc_should_fail(). Not meant for production. */
void lkv_alloc_fail_after(long n);

/* Consumes one unit of the failure countdown; returns 1 if this allocation must
 * fail. Used by other allocation-like paths (page commits, mmap). */
int lkv_alloc_should_fail(void);

/* Number of allocations attempted since start (for failure-injection loops). */
unsigned long lkv_alloc_attempts(void);

/* Multiplies with overflow check: returns 0 and sets *out, or -1 on overflow. */
static inline int lkv_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a)
        return -1;
    *out = a * b;
    return 0;
}

#endif
