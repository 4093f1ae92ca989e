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
    /* optional (NULL for plain formats): puts a fresh page in a defined state
     * (KIVI: zero scales, so slots not yet written decode to 0) */
    void (*init)(const kv_page_ptrs *pg, int page_tokens, int d);
    /* optional: the key digest (per-channel box holding every stored key) is
     * derived from the page's aux arrays instead of being stored (KIVI: the
     * channel's min and min + (2^b - 1) * scale), so the page keeps no
     * key_min/key_max arrays. NULL: the digest is stored and maintained. */
    void (*digest)(const kv_page_ptrs *pg, int page_tokens, int d, float *kmin, float *kmax);
    /* 1: a page of this format whose positions are consecutive stores only the
     * first one (kv_page.pos0, KV_PAGE_POS_BASE) and no [pt] array. Only the
     * quantized formats use it: there the 4 bytes per token are a large share
     * of the page (KIVI-2 at d = 64: 50 of 54 bytes per token), and their pages
     * never merge into runs with neighbours, so no pool address pattern depends
     * on their header extents. */
    int compact_pos;
} kv_format;

/* Traits of a format tag, or NULL if this build cannot store it. */
const kv_format *kv_format_get(int tag);
/* The quantized rows (format_quant.c): tags LKV_DTYPE_Q8 .. LKV_DTYPE_KIVI2, else NULL. */
const kv_format *kv_format_quant(int tag);

/* ------------------------------------------------------------ pages */

/* A page is three pool extents, each from its own size class (so its own
 * address range): the meta extent starting with this header, then (offsets in
 * kv_layout) pos [pt] int32 (absent for a page with KV_PAGE_POS_BASE: slot t
 * holds position pos0 + t), key_min [d] f32, key_max [d] f32 (absent when the
 * format derives its digest, kv_format.digest), k_aux, v_aux;
 * the K extent; the V extent. Keeping K and V of all pages in separate ranges
 * means pages appended together (a prefill chunk) lie back to back, so the
 * attention kernel streams K and V like two contiguous arrays. */
enum { KV_ROLE_META = 0, KV_ROLE_K = 1, KV_ROLE_V = 2, KV_ROLES = 3 };

/* kv_page.flags */
enum {
    KV_PAGE_POS_BASE = 1, /* no positions array: slot t holds position pos0 + t (the page
                           * was made for consecutive positions; kv_format.compact_pos) */
    KV_PAGE_DIGEST_STALE = 2, /* the stored key digest is out of date (a compaction moved
                               * slots): recomputed when read (kv_page_digest_fresh) */
};

typedef struct kv_page {
    int32_t refcount;     /* sequences + prefix entries holding it */
    int16_t format;       /* kv_format tag */
    int16_t n_prefix;     /* prefix entries among the holders */
    int32_t fill;         /* slots written (the holders may use fewer) */
    int16_t layer, head;  /* which list it belongs to (n_layers <= 4096, kv_heads <= 1024) */
    int16_t cls[KV_ROLES];   /* pool class of each extent */
    int16_t flags;        /* KV_PAGE_* */
    uint32_t slot[KV_ROLES]; /* index of each extent in its class */
    int32_t pos0;         /* KV_PAGE_POS_BASE: position of slot 0 */
    void *k, *v;          /* the K and V extents (in the backup block while offloaded) */
    void *backup;         /* backup tier (backup.c): heap block [K extent][V extent] holding
                           * the page's K and V while its pool extents are uncommitted;
                           * NULL while the page is resident in the pool */
} kv_page;

/* the header must stay one cache line: it is part of every page's bytes */
_Static_assert(sizeof(kv_page) <= 64, "kv_page header grew past 64 bytes");

typedef struct kv_layout {
    size_t pos, kmin, kmax, k_aux, v_aux; /* offsets in the meta extent (pos = 0: no
                                           * positions array; kmin = kmax = 0: no stored
                                           * digest) */
    size_t bytes[KV_ROLES];               /* extent sizes, multiples of 64 */
} kv_layout;

/* ------------------------------------------------------------ pool */

#define KV_MAX_CLASSES 24

/* A size class: extents of one size in their own reserved range, so a free
 * extent is just an index (no links are written into released memory). */
typedef struct kv_class {
    size_t extent;        /* bytes per extent */
    int role;             /* KV_ROLE_*: classes are per (size, role) */
    uint8_t *base;        /* reserved range */
    size_t reserved;      /* bytes reserved (multiple of the OS page) */
    size_t mapped;        /* bytes from base made readable/writable (mprotect) */
    uint32_t max_extents; /* reserved / extent */
    uint32_t bump;        /* extents ever handed out (high-water) */
    uint32_t *free_stack; /* [stack_cap >= bump] indices of free extents below bump */
    uint32_t n_free, stack_cap;
    uint16_t *os_refs;    /* [mapped / os_page] live extents touching each OS page */
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
int kv_pool_class(kv_pool *pl, size_t bytes, int role);
/* Commits and returns one extent of class cls. LKV_ERR_BUDGET, LKV_ERR_NOMEM. */
int kv_pool_alloc(kv_pool *pl, int cls, void **out, uint32_t *index);
void kv_pool_free(kv_pool *pl, int cls, uint32_t index);
/* Releases the OS pages of a committed extent but keeps its index reserved. */
void kv_pool_uncommit(kv_pool *pl, int cls, uint32_t index);
/* Takes n consecutive unused indices without committing them (LKV_ERR_RANGE
 * when the address range is used up). */
int kv_pool_reserve_run(kv_pool *pl, int cls, uint32_t n, uint32_t *first);
/* Commits a reserved index. LKV_ERR_BUDGET, LKV_ERR_NOMEM. */
int kv_pool_alloc_index(kv_pool *pl, int cls, uint32_t idx, void **out);
/* Returns a reserved, uncommitted index to the free list (never fails). */
void kv_pool_unreserve(kv_pool *pl, int cls, uint32_t idx);

/* ------------------------------------------------------------ sequences */

typedef struct kv_ref {
    kv_page *page;
    int32_t n;            /* slots of the page this list uses (<= page->fill) */
    int32_t flags;        /* KV_REF_*: cached by kv_list_refresh for the attention loop */
} kv_ref;

/* KV_REF_DENSE: the used slots hold consecutive positions.
 * KV_REF_CONT: this page continues the previous one of the list as one run:
 *   both dense, the previous full, same plain format, K and V extents back to
 *   back in the pool, and positions continuing without a gap. */
enum { KV_REF_DENSE = 1, KV_REF_CONT = 2 };

/* The pages of one (layer, head); every page but the last is full (n == pt). */
typedef struct kv_list {
    kv_ref *refs;
    int32_t n_pages, cap;
    int32_t n_tokens;
    /* Reserved (uncommitted) extents that follow the list's last page, one run
     * per role, so that pages appended one at a time (decoding) still lie back
     * to back and merge into long runs: the vAttention idea in small steps. */
    uint32_t stash[KV_ROLES]; /* next reserved index per role */
    int16_t stash_n;          /* reserved extents left per role */
    int16_t stash_fmt;
} kv_list;

#define KV_STASH_PAGES 64

/* Page for list l (layer, head), taken from the list's reserved run when it can
 * (base: as kv_page_new). */
int kv_page_new_in(lkv_cache *c, int format, int base, int layer, int head, kv_list *l,
                   kv_page **out);
/* Returns the list's reserved extents to the pool. */
void kv_list_release_stash(lkv_cache *c, kv_list *l);

struct lkv_seq {
    lkv_cache *c;
    kv_list *lists;       /* [n_layers * kv_heads], index layer * kv_heads + head */
    lkv_seq *prev, *next; /* the cache's list of live sequences */
    lkv_kv_run *runs;     /* attention scratch */
    size_t runs_cap;
    float *tile_f32;      /* [kv_heads][2][16][head_dim]: the part-tile a slot range
                           * starts with, decoded (KIVI runs start at tiles) */
    lkv_kv_head_runs *heads; /* [kv_heads] */
    kv_page **tmp_pages;  /* append scratch */
    float *digest_tmp;    /* [2][head_dim] derived digests handed out by lkv_seq_page_info */
    int32_t *pos_tmp;     /* [page_tokens] positions of a KV_PAGE_POS_BASE page, handed out
                           * by lkv_seq_page_info */
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
    /* [format][base]: base = 1 is the layout of KV_PAGE_POS_BASE pages (no positions) */
    kv_layout layout[LKV_PAGE_FORMAT_COUNT][2];
    int cls_of[LKV_PAGE_FORMAT_COUNT][2][KV_ROLES]; /* pool classes, -1 until first use */
    size_t *list_bytes;   /* [n_lists] bytes of live pages per (layer, head) */
    lkv_seq *seqs;
    int64_t n_seqs, n_pages, n_evictions;
    kv_prefix prefix;
    /* backup tier (backup.c): pages whose K/V live outside the pool */
    int64_t n_backup_pages, n_offloads, n_recalls;
    size_t backup_bytes;
};

/* cache.c */
/* A new page of `format`. base = 1 asks for a page without a positions array
 * (KV_PAGE_POS_BASE), for slots that will hold consecutive positions; it is
 * ignored for formats without kv_format.compact_pos. */
int kv_page_new(lkv_cache *c, int format, int base, int layer, int head, kv_page **out);
void kv_page_unref(lkv_cache *c, kv_page *pg);
const kv_layout *kv_page_layout(const lkv_cache *c, const kv_page *pg);
kv_page_ptrs kv_page_arrays(const lkv_cache *c, const kv_page *pg);
/* The stored positions array, or NULL for a KV_PAGE_POS_BASE page. */
int32_t *kv_page_pos(const lkv_cache *c, const kv_page *pg);
/* Position held by slot `slot` (either kind of page). */
int32_t kv_page_pos_at(const lkv_cache *c, const kv_page *pg, int slot);
/* Positions of slots [slot0, slot0 + n) into out. */
void kv_page_get_pos(const lkv_cache *c, const kv_page *pg, int slot0, int n, int32_t *out);
/* Sets the position of slot `slot`. On a KV_PAGE_POS_BASE page this moves the
 * base (pos0 = p - slot): the caller guarantees that the page's used slots end
 * up consecutive. */
void kv_page_set_pos(const lkv_cache *c, kv_page *pg, int slot, int32_t p);
/* 1 if n strictly ascending positions are consecutive (pos NULL: implicit, yes). */
int kv_pos_consecutive(const int32_t *pos, int n);
/* The stored key digest of a page, or NULL when its format derives it. */
float *kv_page_kmin(const lkv_cache *c, const kv_page *pg);
float *kv_page_kmax(const lkv_cache *c, const kv_page *pg);
/* The key digest into kmin, kmax [d], stored or derived. */
void kv_page_get_digest(const lkv_cache *c, kv_page *pg, float *kmin, float *kmax);
/* Recomputes a stale stored digest (KV_PAGE_DIGEST_STALE) from slots [0, fill). */
void kv_page_digest_fresh(const lkv_cache *c, kv_page *pg);
/* Recomputes the key digest from slots [0, n) (stored values); no-op when derived. */
void kv_page_digest(const lkv_cache *c, kv_page *pg, int n);
/* Copies slots [src0, src0+n) of src to [dst0, dst0+n) of dst (same format),
 * positions included, except into a KV_PAGE_POS_BASE page, whose pos0 the
 * caller sets; does not touch digests or fill. */
void kv_page_copy_slots(const lkv_cache *c, kv_page *dst, int dst0, const kv_page *src,
                        int src0, int n);
/* Recomputes the flags of refs [from, n_pages) (after any change to them). */
void kv_list_refresh(const lkv_cache *c, kv_list *l, int from);
/* Ensures list capacity for `more` extra refs. */
int kv_list_reserve(kv_list *l, int more);
int kv_seq_new(lkv_cache *c, lkv_seq **out);

/* backup.c */
/* Frees the backup block of an offloaded page that is being released, and
 * returns its K/V pool indices (reserved, uncommitted) to the free lists. */
void kv_backup_release(lkv_cache *c, kv_page *pg);

/* prefix.c */
void kv_prefix_destroy(lkv_cache *c);
/* Evicts one unpinned, unused entry (LRU first); 1 if one was evicted. */
int kv_prefix_evict_one(lkv_cache *c);
int64_t kv_prefix_n_pages(const lkv_cache *c);

#endif
