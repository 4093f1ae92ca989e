/* pool.c -- the page pool: reserved address space, commit on first use,
 * release with madvise, every byte counted against a hard budget.
 *
 * Each size class (one per page format in use) reserves its own address range
 * once: budget + two extents + one OS page, enough for the largest number of
 * extents that can ever be live at once within the budget, since
 * committed >= live bytes. Reserving costs no memory (PROT_NONE,
 * MAP_NORESERVE). The range is made writable with mprotect as the high-water
 * mark grows (one growing mapping, so the kernel keeps a single VMA; we never
 * flip protections back, which would split VMAs). An OS page counts as
 * committed while at least one live extent touches it (os_refs); when the last
 * one goes, madvise(MADV_DONTNEED) returns it to the OS and the count drops.
 * Free extents are kept as indices on a stack, never as links written into
 * their (released) memory. Before each commit we ask lkv_alloc_should_fail(),
 * so the failure-injection tests cover the pool like any allocation.
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/error.h"
#include "kv/kv.h"

#define MAP_GROW (1u << 20) /* mprotect at least this much at a time */

int kv_pool_init(kv_pool *pl, size_t budget) {
    memset(pl, 0, sizeof *pl);
    long ps = sysconf(_SC_PAGESIZE);
    pl->os_page = ps > 0 ? (size_t)ps : 4096;
    pl->budget = budget / pl->os_page * pl->os_page;
    if (pl->budget == 0)
        LKV_FAIL(LKV_ERR_INVALID, "kv: budget %zu is below one OS page (%zu bytes)", budget,
                 pl->os_page);
    return LKV_OK;
}

void kv_pool_destroy(kv_pool *pl) {
    for (int i = 0; i < pl->n_cls; i++) {
        kv_class *k = &pl->cls[i];
        if (k->base)
            munmap(k->base, k->reserved);
        lkv_free(k->free_stack);
        lkv_free(k->os_refs);
    }
    memset(pl, 0, sizeof *pl);
}

int kv_pool_class(kv_pool *pl, size_t bytes) {
    for (int i = 0; i < pl->n_cls; i++)
        if (pl->cls[i].extent == bytes)
            return i;
    if (pl->n_cls == KV_MAX_CLASSES)
        LKV_FAIL(LKV_ERR_UNSUPPORTED, "kv: more than %d page sizes in one cache", KV_MAX_CLASSES);
    if (bytes == 0 || bytes > pl->budget)
        LKV_FAIL(LKV_ERR_BUDGET, "kv: a page of %zu bytes does not fit the budget of %zu bytes",
                 bytes, pl->budget);
    kv_class k = {0};
    k.extent = bytes;
    size_t want = pl->budget + 2 * bytes + pl->os_page;
    k.reserved = (want + pl->os_page - 1) / pl->os_page * pl->os_page;
    size_t max_ext = k.reserved / bytes;
    if (max_ext > UINT32_MAX - 1)
        LKV_FAIL(LKV_ERR_INVALID, "kv: budget too large for page size %zu", bytes);
    k.max_extents = (uint32_t)max_ext;
    k.free_stack = lkv_malloc((size_t)k.max_extents * sizeof *k.free_stack);
    k.os_refs = lkv_calloc(k.reserved / pl->os_page, sizeof *k.os_refs);
    void *base = MAP_FAILED;
    if (k.free_stack && k.os_refs && !lkv_alloc_should_fail())
        base = mmap(NULL, k.reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
                    0);
    if (base == MAP_FAILED) {
        lkv_free(k.free_stack);
        lkv_free(k.os_refs);
        LKV_FAIL(LKV_ERR_NOMEM, "kv: cannot reserve %zu bytes of address space", k.reserved);
    }
    k.base = base;
    pl->reserved += k.reserved;
    pl->cls[pl->n_cls] = k;
    return pl->n_cls++;
}

static void os_range(const kv_pool *pl, const kv_class *k, uint32_t index, size_t *p0,
                     size_t *p1) {
    size_t off = (size_t)index * k->extent;
    *p0 = off / pl->os_page;
    *p1 = (off + k->extent - 1) / pl->os_page; /* inclusive */
}

int kv_pool_alloc(kv_pool *pl, int cls, void **out, uint32_t *index) {
    kv_class *k = &pl->cls[cls];
    uint32_t idx;
    if (k->n_free > 0)
        idx = k->free_stack[k->n_free - 1];
    else if (k->bump < k->max_extents)
        idx = k->bump;
    else
        LKV_FAIL(LKV_ERR_BUDGET, "kv: page pool address range exhausted");
    size_t p0, p1, fresh = 0;
    os_range(pl, k, idx, &p0, &p1);
    for (size_t p = p0; p <= p1; p++)
        fresh += k->os_refs[p] == 0;
    if (pl->committed + fresh * pl->os_page > pl->budget)
        LKV_FAIL(LKV_ERR_BUDGET, "kv: budget of %zu bytes exhausted (%zu committed, page needs %zu)",
                 pl->budget, pl->committed, fresh * pl->os_page);
    if (fresh > 0 && lkv_alloc_should_fail())
        LKV_FAIL(LKV_ERR_NOMEM, "kv: committing a page failed (injected)");
    size_t end = (p1 + 1) * pl->os_page;
    if (end > k->mapped) {
        size_t grow = end - k->mapped;
        if (grow < MAP_GROW)
            grow = MAP_GROW;
        if (k->mapped + grow > k->reserved)
            grow = k->reserved - k->mapped;
        if (mprotect(k->base + k->mapped, grow, PROT_READ | PROT_WRITE) != 0)
            LKV_FAIL(LKV_ERR_NOMEM, "kv: mprotect of %zu bytes failed", grow);
        k->mapped += grow;
    }
    for (size_t p = p0; p <= p1; p++)
        k->os_refs[p]++;
    if (k->n_free > 0 && k->free_stack[k->n_free - 1] == idx)
        k->n_free--;
    else
        k->bump++;
    pl->committed += fresh * pl->os_page;
    pl->n_commits += (int64_t)fresh;
    if (pl->committed > pl->peak)
        pl->peak = pl->committed;
    pl->in_use += k->extent;
    *out = k->base + (size_t)idx * k->extent;
    *index = idx;
    return LKV_OK;
}

size_t kv_pool_release_bytes(const kv_pool *pl, int cls, uint32_t index) {
    const kv_class *k = &pl->cls[cls];
    size_t p0, p1, n = 0;
    os_range(pl, k, index, &p0, &p1);
    for (size_t p = p0; p <= p1; p++)
        n += k->os_refs[p] == 1;
    return n * pl->os_page;
}

void kv_pool_free(kv_pool *pl, int cls, uint32_t index) {
    kv_class *k = &pl->cls[cls];
    size_t p0, p1;
    os_range(pl, k, index, &p0, &p1);
    size_t run0 = 0, run_n = 0; /* batch adjacent released OS pages into one madvise */
    for (size_t p = p0; p <= p1 + 1; p++) {
        int release = p <= p1 && --k->os_refs[p] == 0;
        if (release) {
            if (run_n == 0)
                run0 = p;
            run_n++;
            continue;
        }
        if (run_n > 0) {
            /* MADV_DONTNEED on a private anonymous mapping frees the frames now;
             * the next touch gets zero pages. It cannot fail on a valid range. */
            madvise(k->base + run0 * pl->os_page, run_n * pl->os_page, MADV_DONTNEED);
            pl->committed -= run_n * pl->os_page;
            pl->n_releases += (int64_t)run_n;
            run_n = 0;
        }
    }
    k->free_stack[k->n_free++] = index;
    pl->in_use -= k->extent;
}
