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

int kv_pool_class(kv_pool *pl, size_t bytes, int role) {
    for (int i = 0; i < pl->n_cls; i++)
        if (pl->cls[i].extent == bytes && pl->cls[i].role == role)
            return i;
    if (pl->n_cls == KV_MAX_CLASSES)
        LKV_FAIL(LKV_ERR_UNSUPPORTED, "kv: more than %d page sizes in one cache", KV_MAX_CLASSES);
    if (bytes == 0 || bytes > pl->budget)
        LKV_FAIL(LKV_ERR_BUDGET, "kv: a page of %zu bytes does not fit the budget of %zu bytes",
                 bytes, pl->budget);
    kv_class k = {0};
    k.extent = bytes;
    k.role = role;
    /* twice the budget (+64 MiB): room for the per-list runs of reserved,
     * uncommitted extents that keep a list's pages adjacent (kv_page_new_in) */
    size_t want = 2 * pl->budget + ((size_t)64 << 20) + 2 * bytes + pl->os_page;
    k.reserved = (want + pl->os_page - 1) / pl->os_page * pl->os_page;
    size_t max_ext = k.reserved / bytes;
    if (max_ext > UINT32_MAX - 1)
        LKV_FAIL(LKV_ERR_INVALID, "kv: budget too large for page size %zu", bytes);
    k.max_extents = (uint32_t)max_ext;
    void *base = MAP_FAILED;
    if (!lkv_alloc_should_fail())
        base = mmap(NULL, k.reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
                    0);
    if (base == MAP_FAILED)
        LKV_FAIL(LKV_ERR_NOMEM, "kv: cannot reserve %zu bytes of address space", k.reserved);
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

/* Free-stack capacity for every index below `bump` (so frees never allocate). */
static int ensure_stack(kv_class *k, uint32_t bump) {
    if (bump <= k->stack_cap)
        return LKV_OK;
    uint32_t cap = k->stack_cap ? k->stack_cap : 256;
    while (cap < bump)
        cap = cap > UINT32_MAX / 2 ? UINT32_MAX : cap * 2;
    if (cap > k->max_extents)
        cap = k->max_extents;
    uint32_t *fs = lkv_realloc(k->free_stack, (size_t)cap * sizeof *fs);
    if (!fs)
        LKV_FAIL(LKV_ERR_NOMEM, "kv: out of memory for the pool's free list");
    k->free_stack = fs;
    k->stack_cap = cap;
    return LKV_OK;
}

/* Commits the OS pages of extent idx (a free or reserved index). */
static int commit_index(kv_pool *pl, kv_class *k, uint32_t idx) {
    size_t p0, p1, fresh = 0;
    os_range(pl, k, idx, &p0, &p1);
    for (size_t p = p0; p <= p1; p++)
        fresh += p >= k->mapped / pl->os_page || k->os_refs[p] == 0;
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
        size_t old_n = k->mapped / pl->os_page, new_n = (k->mapped + grow) / pl->os_page;
        uint16_t *refs = lkv_realloc(k->os_refs, new_n * sizeof *refs);
        if (!refs)
            LKV_FAIL(LKV_ERR_NOMEM, "kv: out of memory for the pool's page counts");
        memset(refs + old_n, 0, (new_n - old_n) * sizeof *refs);
        k->os_refs = refs;
        if (mprotect(k->base + k->mapped, grow, PROT_READ | PROT_WRITE) != 0)
            LKV_FAIL(LKV_ERR_NOMEM, "kv: mprotect of %zu bytes failed", grow);
        k->mapped += grow;
    }
    for (size_t p = p0; p <= p1; p++)
        k->os_refs[p]++;
    pl->committed += fresh * pl->os_page;
    pl->n_commits += (int64_t)fresh;
    if (pl->committed > pl->peak)
        pl->peak = pl->committed;
    pl->in_use += k->extent;
    return LKV_OK;
}

int kv_pool_alloc(kv_pool *pl, int cls, void **out, uint32_t *index) {
    kv_class *k = &pl->cls[cls];
    uint32_t idx;
    int from_stack = k->n_free > 0;
    if (from_stack)
        idx = k->free_stack[k->n_free - 1];
    else if (k->bump < k->max_extents)
        idx = k->bump;
    else
        LKV_FAIL(LKV_ERR_RANGE, "kv: page pool address range exhausted");
    if (!from_stack)
        LKV_TRY(ensure_stack(k, k->bump + 1));
    LKV_TRY(commit_index(pl, k, idx));
    if (from_stack)
        k->n_free--;
    else
        k->bump++;
    *out = k->base + (size_t)idx * k->extent;
    *index = idx;
    return LKV_OK;
}

int kv_pool_reserve_run(kv_pool *pl, int cls, uint32_t n, uint32_t *first) {
    kv_class *k = &pl->cls[cls];
    if (n > k->max_extents - k->bump)
        LKV_FAIL(LKV_ERR_RANGE, "kv: page pool address range exhausted");
    LKV_TRY(ensure_stack(k, k->bump + n));
    *first = k->bump;
    k->bump += n;
    return LKV_OK;
}

int kv_pool_alloc_index(kv_pool *pl, int cls, uint32_t idx, void **out) {
    kv_class *k = &pl->cls[cls];
    LKV_TRY(commit_index(pl, k, idx));
    *out = k->base + (size_t)idx * k->extent;
    return LKV_OK;
}

void kv_pool_unreserve(kv_pool *pl, int cls, uint32_t idx) {
    kv_class *k = &pl->cls[cls];
    k->free_stack[k->n_free++] = idx;
}

void kv_pool_free(kv_pool *pl, int cls, uint32_t index) {
    kv_pool_uncommit(pl, cls, index);
    pl->cls[cls].free_stack[pl->cls[cls].n_free++] = index;
}

void kv_pool_uncommit(kv_pool *pl, int cls, uint32_t index) {
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
    pl->in_use -= k->extent;
}
