/* kv.h -- private structures of the kv layer (pages, pool, sequences, prefix
 * cache). Only the kv sources include this. See include/longkv.h ("kv") for the
 * contract and DESIGN.md ("kv -- the cache") for the why.
 */
#ifndef LKV_KV_H
#define LKV_KV_H

#include <stddef.h>
#include <stdint.h>

#include "longkv.h"

/* ------------------------------------------------------------ formats */

/* Where a page's arrays live, resolved for one page. */
typedef struct kv_page_ptrs {
    void *k, *v;          /* K / V data of the page, format-specific layout */
    void *k_aux, *v_aux;  /* format metadata (scales...), or NULL */
} kv_page_ptrs;

/* One row of traits per page format. The pool only sees byte counts, so a new
 * format (int8 per-token, KIVI int4/int2 with residual) is one more row here
 * plus its kernels -- nothing in the pool or the sequence code changes.
 * Formats with row_bytes == 0 (group-quantized across tokens) must provide
 * copy_slots themselves; plain formats get memcpy. */
typedef struct kv_format {
    const char *name;
    int tag;                /* value stored in pages and snapshots (stable) */
    lkv_dtype kernel_dtype; /* dtype given to lkv_kv_run for pages of this format */
    size_t (*k_bytes)(int page_tokens, int d);
    size_t (*v_bytes)(int page_tokens, int d);
    size_t (*k_aux_bytes)(int page_tokens, int d);
    size_t (*v_aux_bytes)(int page_tokens, int d);
    size_t elem_bytes;      /* plain formats: bytes per element (row = d elements); else 0 */
    /* encodes n rows of f32 (row t at k + t*k_stride) into slots [slot, slot+n) */
    void (*write)(const kv_page_ptrs *pg, int page_tokens, int d, int slot, int n,
                  const float *k, size_t k_stride, const float *v, size_t v_stride);
    /* decodes slots [slot, slot+n) to f32 rows [n][d]; k or v may be NULL */
    void (*read)(const kv_page_ptrs *pg, int page_tokens, int d, int slot, int n, float *k,
                 float *v);
} kv_format;

/* Traits of a format tag, or NULL if this build cannot store it. */
const kv_format *kv_format_get(int tag);

/* ------------------------------------------------------------ pages */

/* The header at the start of every page extent in the pool. The rest of the
 * extent (offsets in kv_layout): pos [pt] int32, key_min [d] f32,
 * key_max [d] f32, k_aux, v_aux, K, V -- each 64-byte aligned. */
typedef struct kv_page {
    int32_t refcount;     /* sequences + prefix entries holding it */
    int16_t format;       /* kv_format tag */
    int16_t cls;          /* pool size class */
    int32_t fill;         /* slots written (the holders may use fewer) */
    int32_t layer, head;  /* which list it belongs to */
    uint32_t slot;        /* index inside its pool class */
    uint8_t pad_[40];
} kv_page;

typedef struct kv_layout {
    size_t pos, kmin, kmax, k_aux, v_aux, k, v;
    size_t bytes;         /* extent size, multiple of 64 */
} kv_layout;

/* ------------------------------------------------------------ pool */

#define KV_MAX_CLASSES 8

/* A size class: extents of one size in their own reserved range, so a free
 * extent is just an index (no links are written into released memory). */
typedef struct kv_class {
    size_t extent;        /* bytes per extent */
    uint8_t *base;        /* reserved range */
    size_t reserved;      /* bytes reserved (multiple of the OS page) */
    size_t mapped;        /* bytes from base made readable/writable (mprotect) */
    uint32_t max_extents; /* reserved / extent */
    uint32_t bump;        /* extents ever handed out (high-water) */
    uint32_t *free_stack; /* [max_extents] indices of free extents below bump */
    uint32_t n_free;
    uint16_t *os_refs;    /* [reserved / os_page] live extents touching each OS page */
} kv_class;

typedef struct kv_pool {
    size_t os_page;
    size_t budget;        /* cap on committed, multiple of os_page */
    size_t committed, peak, in_use, reserved;
    int64_t n_commits, n_releases;
    kv_class cls[KV_MAX_CLASSES];
    int n_cls;
} kv_pool;

int kv_pool_init(kv_pool *pl, size_t budget);
void kv_pool_destroy(kv_pool *pl);
/* Index of the class of extents of `bytes` (created on first use). */
int kv_pool_class(kv_pool *pl, size_t bytes);
/* Commits and returns one extent of class cls. LKV_ERR_BUDGET, LKV_ERR_NOMEM. */
int kv_pool_alloc(kv_pool *pl, int cls, void **out, uint32_t *index);
void kv_pool_free(kv_pool *pl, int cls, uint32_t index);
/* Committed bytes that freeing extent `index` would give back. */
size_t kv_pool_release_bytes(const kv_pool *pl, int cls, uint32_t index);

/* ------------------------------------------------------------ sequences */

typedef struct kv_ref {
    kv_page *page;
    int32_t n;            /* slots of the page this list uses (<= page->fill) */
} kv_ref;

/* The pages of one (layer, head); every page but the last is full (n == pt). */
typedef struct kv_list {
    kv_ref *refs;
    int32_t n_pages, cap;
    int32_t n_tokens;
} kv_list;

struct lkv_seq {
    lkv_cache *c;
    kv_list *lists;       /* [n_layers * kv_heads], index layer * kv_heads + head */
    lkv_seq *prev, *next; /* the cache's list of live sequences */
    lkv_kv_run *runs;     /* attention scratch */
    size_t runs_cap;
    lkv_kv_head_runs *heads; /* [kv_heads] */
    kv_page **tmp_pages;  /* append scratch */
    size_t tmp_cap;
};

/* ------------------------------------------------------------ prefix cache */

typedef struct kv_pentry {
    uint64_t hash;
    struct kv_pentry *hnext;          /* bucket chain */
    struct kv_pentry *lprev, *lnext;  /* LRU list, lprev = more recent */
    int32_t pins;
    int32_t block;                    /* j: covers tokens [j*pt, (j+1)*pt) */
    int32_t *tokens;                  /* [pt] */
    kv_page **pages;                  /* [n_lists] */
} kv_pentry;

typedef struct kv_prefix {
    kv_pentry **buckets;
    size_t n_buckets;     /* power of two */
    int64_t n_entries;
    kv_pentry *lru_head, *lru_tail; /* head = most recently used */
} kv_prefix;

struct lkv_cache {
    lkv_cache_params p;
    int n_lists;
    kv_pool pool;
    kv_layout layout[LKV_PAGE_FORMAT_COUNT];
    int cls_of[LKV_PAGE_FORMAT_COUNT]; /* pool class per format, -1 until first use */
    size_t *list_bytes;   /* [n_lists] bytes of live pages per (layer, head) */
    lkv_seq *seqs;
    int64_t n_seqs, n_pages, n_evictions;
    kv_prefix prefix;
};

/* cache.c */
int kv_page_new(lkv_cache *c, int format, int layer, int head, kv_page **out);
void kv_page_unref(lkv_cache *c, kv_page *pg);
kv_page_ptrs kv_page_arrays(const lkv_cache *c, const kv_page *pg);
int32_t *kv_page_pos(const lkv_cache *c, const kv_page *pg);
float *kv_page_kmin(const lkv_cache *c, const kv_page *pg);
float *kv_page_kmax(const lkv_cache *c, const kv_page *pg);
/* Recomputes the key digest from slots [0, n) (stored values). */
void kv_page_digest(const lkv_cache *c, kv_page *pg, int n);
/* Copies slots [src0, src0+n) of src to [dst0, dst0+n) of dst (same format),
 * positions included; does not touch digests or fill. */
void kv_page_copy_slots(const lkv_cache *c, kv_page *dst, int dst0, const kv_page *src,
                        int src0, int n);
/* Ensures list capacity for `more` extra refs. */
int kv_list_reserve(kv_list *l, int more);
int kv_seq_new(lkv_cache *c, lkv_seq **out);

/* prefix.c */
void kv_prefix_destroy(lkv_cache *c);
/* Evicts one unpinned, unused entry (LRU first); 1 if one was evicted. */
int kv_prefix_evict_one(lkv_cache *c);
int64_t kv_prefix_n_pages(const lkv_cache *c);

#endif
