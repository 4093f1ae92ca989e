/* alloc.c -- counted, aligned allocation with a failure hook.
 *
 * Each block carries a 64-byte header in front of the user pointer holding its
 * size, so frees can be accounted without a side table.
 */
#include "common/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define HEADER LKV_ALIGN

static atomic_size_t bytes_in_use;
static atomic_size_t bytes_peak;
static atomic_size_t live_blocks;
static atomic_long fail_countdown = -1;
static atomic_ulong attempts;

int lkv_alloc_should_fail(void) {
    atomic_fetch_add(&attempts, 1);
    long c = atomic_load(&fail_countdown);
    while (c >= 0) {
        if (c == 0)
            return 1;
        if (atomic_compare_exchange_weak(&fail_countdown, &c, c - 1))
            return 0;
    }
    return 0;
}

void lkv_alloc_fail_after(long n) { atomic_store(&fail_countdown, n < 0 ? -1 : n); }
unsigned long lkv_alloc_attempts(void) { return atomic_load(&attempts); }

static void account(long delta_bytes, long delta_blocks) {
    size_t now = atomic_fetch_add(&bytes_in_use, (size_t)delta_bytes) + (size_t)delta_bytes;
    atomic_fetch_add(&live_blocks, (size_t)delta_blocks);
    size_t peak = atomic_load(&bytes_peak);
    while (now > peak && !atomic_compare_exchange_weak(&bytes_peak, &peak, now)) {
    }
}

void *lkv_malloc(size_t bytes) {
    if (lkv_alloc_should_fail())
        return NULL;
    if (bytes > SIZE_MAX - 2 * HEADER)
        return NULL;
    size_t total = (bytes + HEADER + LKV_ALIGN - 1) / LKV_ALIGN * LKV_ALIGN;
    unsigned char *base = aligned_alloc(LKV_ALIGN, total);
    if (!base)
        return NULL;
    memcpy(base, &bytes, sizeof bytes);
    account((long)bytes, 1);
    return base + HEADER;
}

void *lkv_calloc(size_t count, size_t size) {
    size_t bytes;
    if (lkv_mul_size(count, size, &bytes))
        return NULL;
    void *p = lkv_malloc(bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

static size_t block_size(const void *p) {
    size_t bytes;
    memcpy(&bytes, (const unsigned char *)p - HEADER, sizeof bytes);
    return bytes;
}

void lkv_free(void *p) {
    if (!p)
        return;
    size_t bytes = block_size(p);
    account(-(long)bytes, -1);
    free((unsigned char *)p - HEADER);
}

void *lkv_realloc(void *p, size_t bytes) {
    if (!p)
        return lkv_malloc(bytes);
    size_t old = block_size(p);
    void *q = lkv_malloc(bytes);
    if (!q)
        return NULL;
    memcpy(q, p, old < bytes ? old : bytes);
    lkv_free(p);
    return q;
}

char *lkv_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = lkv_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

size_t lkv_alloc_bytes_in_use(void) { return atomic_load(&bytes_in_use); }
size_t lkv_alloc_bytes_peak(void) { return atomic_load(&bytes_peak); }
size_t lkv_alloc_count_live(void) { return atomic_load(&live_blocks); }
void lkv_alloc_reset_peak(void) { atomic_store(&bytes_peak, atomic_load(&bytes_in_use)); }
