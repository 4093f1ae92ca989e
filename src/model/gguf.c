/* gguf.c -- GGUF v3 reader (see gguf.h).
 *
 * The file format, as this reader checks it (all integers little-endian):
 *   u32 magic "GGUF"; u32 version (2 or 3; v2 has the same layout);
 *   u64 n_tensors; u64 n_kv;
 *   n_kv x { string key; u32 vtype; value }
 *       string = u64 len + len bytes (not NUL-terminated)
 *       value  = scalar of vtype, or string, or
 *                array = u32 elem_type + u64 count + count elements
 *   n_tensors x { string name; u32 n_dims (1..4); u64 ne[n_dims]; u32 ggml type;
 *                 u64 offset (from the data section, multiple of the alignment) }
 *   padding to `general.alignment` (default 32), then the data section.
 *
 * Untrusted counts are never trusted for allocation: an element needs at least
 * one byte of file, so every count is first compared with the bytes left, and
 * tables grow as entries are actually parsed.
 */
#include "model/gguf.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/error.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_ALIGNMENT (1u << 24)
#define GGUF_MAX_DIMS 4

/* A key/value with, for string arrays, an index of the element starts (so
 * element i is O(1)). lkv_gguf_kv is the first member: lkv_gguf_arr_str turns
 * the public pointer back into the entry. */
typedef struct kv_entry {
    lkv_gguf_kv kv;
    const uint8_t **str_at; /* [arr_n] for arrays of strings, else NULL */
} kv_entry;

struct lkv_gguf {
    const uint8_t *base;
    size_t size;
    int mapped;
    uint32_t version;
    size_t alignment;
    size_t data_off;
    uint64_t n_kv, n_tensors;
    kv_entry *kvs;
    lkv_gguf_tensor *tensors;
    uint64_t *kv_sorted;     /* kv indices sorted by key */
    uint64_t *tensor_sorted; /* tensor indices sorted by name */
};

/* ----------------------------------------------------------- the cursor */

typedef struct cursor {
    const uint8_t *p;
    size_t size, pos;
} cursor;

static size_t left(const cursor *c) { return c->size - c->pos; }

static int rd_bytes(cursor *c, void *dst, size_t n, const char *what) {
    if (left(c) < n)
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: file truncated reading %s at byte %zu", what, c->pos);
    memcpy(dst, c->p + c->pos, n);
    c->pos += n;
    return 0;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what) { return rd_bytes(c, v, 4, what); }
static int rd_u64(cursor *c, uint64_t *v, const char *what) { return rd_bytes(c, v, 8, what); }

static int rd_str(cursor *c, lkv_gguf_str *s, const char *what) {
    uint64_t n = 0;
    LKV_TRY(rd_u64(c, &n, what));
    if (n > left(c))
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: %s length %llu runs past the end of the file (byte %zu)",
                 what, (unsigned long long)n, c->pos);
    s->ptr = (const char *)(c->p + c->pos);
    s->len = n;
    c->pos += (size_t)n;
    return 0;
}

/* Byte size of a scalar value type; 0 for string/array/unknown. */
static size_t scalar_size(uint32_t t) {
    switch (t) {
    case LKV_GGUF_U8: case LKV_GGUF_I8: case LKV_GGUF_BOOL: return 1;
    case LKV_GGUF_U16: case LKV_GGUF_I16: return 2;
    case LKV_GGUF_U32: case LKV_GGUF_I32: case LKV_GGUF_F32: return 4;
    case LKV_GGUF_U64: case LKV_GGUF_I64: case LKV_GGUF_F64: return 8;
    default: return 0;
    }
}

static const char *vtype_name(uint32_t t) {
    static const char *names[] = {"u8",  "i8",     "u16",   "i16", "u32", "i32", "f32",
                                  "bool", "string", "array", "u64", "i64", "f64"};
    return t < 13 ? names[t] : "unknown";
}

/* Widens the scalar at p of type t into kv->val. */
static void widen(const uint8_t *p, uint32_t t, lkv_gguf_kv *kv) {
    switch (t) {
    case LKV_GGUF_U8: case LKV_GGUF_BOOL: kv->val.u = p[0]; break;
    case LKV_GGUF_I8: kv->val.i = (int8_t)p[0]; break;
    case LKV_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); kv->val.u = v; break; }
    case LKV_GGUF_I16: { int16_t v; memcpy(&v, p, 2); kv->val.i = v; break; }
    case LKV_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); kv->val.u = v; break; }
    case LKV_GGUF_I32: { int32_t v; memcpy(&v, p, 4); kv->val.i = v; break; }
    case LKV_GGUF_F32: { float v; memcpy(&v, p, 4); kv->val.f = v; break; }
    case LKV_GGUF_U64: { uint64_t v; memcpy(&v, p, 8); kv->val.u = v; break; }
    case LKV_GGUF_I64: { int64_t v; memcpy(&v, p, 8); kv->val.i = v; break; }
    case LKV_GGUF_F64: { double v; memcpy(&v, p, 8); kv->val.f = v; break; }
    default: break;
    }
}

static int key_for_msg(const lkv_gguf_str *k) { return k->len > 64 ? 64 : (int)k->len; }

static int parse_kv(cursor *c, uint64_t idx, kv_entry *e) {
    lkv_gguf_kv *kv = &e->kv;
    LKV_TRY(rd_str(c, &kv->key, "metadata key"));
    if (kv->key.len == 0)
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: metadata key %llu is empty", (unsigned long long)idx);
    uint32_t t = 0;
    LKV_TRY(rd_u32(c, &t, "metadata value type"));
    if (t > LKV_GGUF_F64)
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: key '%.*s' has unknown value type %u", key_for_msg(&kv->key),
                 kv->key.ptr, t);
    kv->type = (lkv_gguf_vtype)t;
    if (t == LKV_GGUF_STRING)
        return rd_str(c, &kv->str, "metadata string");
    if (t != LKV_GGUF_ARRAY) {
        size_t n = scalar_size(t);
        if (left(c) < n)
            LKV_FAIL(LKV_ERR_FORMAT, "gguf: file truncated in the value of key '%.*s'",
                     key_for_msg(&kv->key), kv->key.ptr);
        widen(c->p + c->pos, t, kv);
        c->pos += n;
        return 0;
    }
    uint32_t et = 0;
    uint64_t n = 0;
    LKV_TRY(rd_u32(c, &et, "array element type"));
    LKV_TRY(rd_u64(c, &n, "array length"));
    if (et > LKV_GGUF_F64 || et == LKV_GGUF_ARRAY)
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: array '%.*s' has unsupported element type %u (%s)",
                 key_for_msg(&kv->key), kv->key.ptr, et, vtype_name(et));
    kv->arr_type = (lkv_gguf_vtype)et;
    kv->arr_n = n;
    kv->arr_data = c->p + c->pos;
    if (et != LKV_GGUF_STRING) {
        size_t es = scalar_size(et);
        if (n > left(c) / es)
            LKV_FAIL(LKV_ERR_FORMAT, "gguf: array '%.*s' of %llu %s runs past the end of the file",
                     key_for_msg(&kv->key), kv->key.ptr, (unsigned long long)n, vtype_name(et));
        c->pos += (size_t)n * es;
        return 0;
    }
    /* strings: each takes at least its 8-byte length */
    if (n > left(c) / 8)
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: string array '%.*s' of %llu runs past the end of the file",
                 key_for_msg(&kv->key), kv->key.ptr, (unsigned long long)n);
    if (n > 0) {
        e->str_at = lkv_malloc((size_t)n * sizeof *e->str_at);
        if (!e->str_at)
            LKV_FAIL(LKV_ERR_NOMEM, "gguf: no memory for the index of array '%.*s'",
                     key_for_msg(&kv->key), kv->key.ptr);
    }
    for (uint64_t i = 0; i < n; i++) {
        e->str_at[i] = c->p + c->pos;
        lkv_gguf_str s;
        LKV_TRY(rd_str(c, &s, "array string"));
    }
    return 0;
}

/* ------------------------------------------------------------- sorting */

static int str_cmp(lkv_gguf_str a, lkv_gguf_str b) {
    size_t n = a.len < b.len ? (size_t)a.len : (size_t)b.len;
    int r = n ? memcmp(a.ptr, b.ptr, n) : 0;
    if (r)
        return r;
    return a.len < b.len ? -1 : a.len > b.len ? 1 : 0;
}

/* Heap sort of indices (no qsort context argument in C11; no recursion). */
typedef int (*idx_less)(const lkv_gguf *g, uint64_t a, uint64_t b);

static void sift(const lkv_gguf *g, uint64_t *v, uint64_t i, uint64_t n, idx_less less) {
    for (;;) {
        uint64_t m = i, l = 2 * i + 1, r = l + 1;
        if (l < n && less(g, v[m], v[l]))
            m = l;
        if (r < n && less(g, v[m], v[r]))
            m = r;
        if (m == i)
            return;
        uint64_t t = v[i];
        v[i] = v[m];
        v[m] = t;
        i = m;
    }
}

static void heap_sort(const lkv_gguf *g, uint64_t *v, uint64_t n, idx_less less) {
    for (uint64_t i = n / 2; i-- > 0;)
        sift(g, v, i, n, less);
    for (uint64_t e = n; e-- > 1;) {
        uint64_t t = v[0];
        v[0] = v[e];
        v[e] = t;
        sift(g, v, 0, e, less);
    }
}

static int kv_less(const lkv_gguf *g, uint64_t a, uint64_t b) {
    return str_cmp(g->kvs[a].kv.key, g->kvs[b].kv.key) < 0;
}
static int tensor_name_less(const lkv_gguf *g, uint64_t a, uint64_t b) {
    return str_cmp(g->tensors[a].name, g->tensors[b].name) < 0;
}
static int tensor_off_less(const lkv_gguf *g, uint64_t a, uint64_t b) {
    const uint8_t *pa = g->tensors[a].data, *pb = g->tensors[b].data;
    return pa < pb || (pa == pb && g->tensors[a].nbytes < g->tensors[b].nbytes);
}

/* ------------------------------------------------------------- parsing */

static int grow(void **arr, uint64_t *cap, uint64_t need, size_t elem) {
    if (need <= *cap)
        return 0;
    uint64_t nc = *cap ? *cap * 2 : 16;
    while (nc < need)
        nc *= 2;
    size_t bytes;
    if (lkv_mul_size((size_t)nc, elem, &bytes) < 0)
        LKV_FAIL(LKV_ERR_NOMEM, "gguf: table too large");
    void *p = lkv_realloc(*arr, bytes);
    if (!p)
        LKV_FAIL(LKV_ERR_NOMEM, "gguf: no memory for %llu table entries", (unsigned long long)nc);
    memset((char *)p + (size_t)*cap * elem, 0, (size_t)(nc - *cap) * elem);
    *arr = p;
    *cap = nc;
    return 0;
}

static int parse_tensor(lkv_gguf *g, cursor *c, uint64_t idx, lkv_gguf_tensor *t) {
    LKV_TRY(rd_str(c, &t->name, "tensor name"));
    int nl = key_for_msg(&t->name);
    uint32_t nd = 0, type = 0;
    LKV_TRY(rd_u32(c, &nd, "tensor dimension count"));
    if (nd < 1 || nd > GGUF_MAX_DIMS)
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: tensor %llu '%.*s' has %u dimensions (1..4 allowed)",
                 (unsigned long long)idx, nl, t->name.ptr, nd);
    t->n_dims = (int)nd;
    int64_t total = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if ((uint32_t)d >= nd)
            continue;
        uint64_t v = 0;
        LKV_TRY(rd_u64(c, &v, "tensor dimension"));
        if (v < 1 || v > (uint64_t)INT64_MAX)
            LKV_FAIL(LKV_ERR_FORMAT, "gguf: tensor '%.*s' dimension %d is %llu (must be >= 1)", nl,
                     t->name.ptr, d, (unsigned long long)v);
        if ((int64_t)v > INT64_MAX / total)
            LKV_FAIL(LKV_ERR_FORMAT, "gguf: tensor '%.*s' element count overflows", nl,
                     t->name.ptr);
        t->ne[d] = (int64_t)v;
        total *= (int64_t)v;
    }
    LKV_TRY(rd_u32(c, &type, "tensor type"));
    const lkv_qtraits *tr = lkv_qtype_traits((int)type);
    if (!tr->name)
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: tensor '%.*s' has unknown type %u", nl, t->name.ptr, type);
    t->type = (lkv_qtype)type;
    if (t->ne[0] % tr->block)
        LKV_FAIL(LKV_ERR_FORMAT,
                 "gguf: tensor '%.*s' row length %lld is not a multiple of the %s block (%d)", nl,
                 t->name.ptr, (long long)t->ne[0], tr->name, tr->block);
    size_t rb = lkv_qtype_row_bytes((int)type, t->ne[0]);
    size_t nrows = (size_t)(total / t->ne[0]), nbytes;
    if (!rb || lkv_mul_size(rb, nrows, &nbytes) < 0)
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: tensor '%.*s' byte size overflows", nl, t->name.ptr);
    t->nbytes = nbytes;
    uint64_t off = 0;
    LKV_TRY(rd_u64(c, &off, "tensor offset"));
    if (off % g->alignment)
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: tensor '%.*s' offset %llu is not a multiple of the alignment %zu",
                 nl, t->name.ptr, (unsigned long long)off, g->alignment);
    t->offset = off; /* checked against the data section in parse() */
    return 0;
}

static int find_alignment(lkv_gguf *g) {
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const lkv_gguf_kv *kv = lkv_gguf_find(g, "general.alignment");
    if (!kv)
        return 0;
    int64_t a;
    if (kv->type == LKV_GGUF_STRING || kv->type == LKV_GGUF_ARRAY ||
        kv->type == LKV_GGUF_F32 || kv->type == LKV_GGUF_F64 || kv->type == LKV_GGUF_BOOL ||
        lkv_gguf_get_i64(g, "general.alignment", &a) < 0)
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: general.alignment must be an integer");
    if (a < 1 || (uint64_t)a > GGUF_MAX_ALIGNMENT || (a & (a - 1)))
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: general.alignment %lld is not a power of two <= 2^24",
                 (long long)a);
    g->alignment = (size_t)a;
    return 0;
}

static int parse(lkv_gguf *g) {
    cursor c = {g->base, g->size, 0};
    uint8_t magic[4] = {0};
    LKV_TRY(rd_bytes(&c, magic, 4, "magic"));
    if (memcmp(magic, "GGUF", 4))
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: bad magic (not a GGUF file)");
    LKV_TRY(rd_u32(&c, &g->version, "version"));
    if (g->version != 2 && g->version != 3)
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: unsupported version %u (2 or 3 expected)", g->version);
    uint64_t nt = 0, nkv = 0;
    LKV_TRY(rd_u64(&c, &nt, "tensor count"));
    LKV_TRY(rd_u64(&c, &nkv, "metadata count"));
    /* a key/value takes >= 13 bytes, a tensor info >= 33 */
    if (nkv > left(&c) / 13)
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: metadata count %llu does not fit in the file",
                 (unsigned long long)nkv);
    if (nt > left(&c) / 33)
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: tensor count %llu does not fit in the file",
                 (unsigned long long)nt);
    uint64_t cap = 0;
    for (uint64_t i = 0; i < nkv; i++) {
        LKV_TRY(grow((void **)&g->kvs, &cap, i + 1, sizeof *g->kvs));
        g->n_kv = i + 1; /* so close() frees this entry's index even on failure */
        LKV_TRY(parse_kv(&c, i, &g->kvs[i]));
    }
    if (nkv) {
        g->kv_sorted = lkv_malloc((size_t)nkv * sizeof *g->kv_sorted);
        if (!g->kv_sorted)
            LKV_FAIL(LKV_ERR_NOMEM, "gguf: no memory for the key index");
        for (uint64_t i = 0; i < nkv; i++)
            g->kv_sorted[i] = i;
        heap_sort(g, g->kv_sorted, nkv, kv_less);
        for (uint64_t i = 1; i < nkv; i++) {
            const lkv_gguf_str *k = &g->kvs[g->kv_sorted[i]].kv.key;
            if (!str_cmp(*k, g->kvs[g->kv_sorted[i - 1]].kv.key))
                LKV_FAIL(LKV_ERR_FORMAT, "gguf: duplicate key '%.*s'", key_for_msg(k), k->ptr);
        }
    }
    LKV_TRY(find_alignment(g));

    cap = 0;
    for (uint64_t i = 0; i < nt; i++) {
        LKV_TRY(grow((void **)&g->tensors, &cap, i + 1, sizeof *g->tensors));
        g->n_tensors = i + 1;
        LKV_TRY(parse_tensor(g, &c, i, &g->tensors[i]));
    }
    size_t data_off = c.pos;
    size_t pad = (g->alignment - data_off % g->alignment) % g->alignment;
    if (nt && pad > left(&c))
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: file truncated before the tensor data");
    g->data_off = data_off + pad;
    size_t data_size = g->size > g->data_off ? g->size - g->data_off : 0;
    for (uint64_t i = 0; i < nt; i++) {
        lkv_gguf_tensor *t = &g->tensors[i];
        if (t->offset > data_size || t->nbytes > data_size - (size_t)t->offset)
            LKV_FAIL(LKV_ERR_FORMAT,
                     "gguf: tensor '%.*s' data (offset %zu, %zu bytes) runs past the end of the file",
                     key_for_msg(&t->name), t->name.ptr, (size_t)t->offset, t->nbytes);
        t->data = g->base + g->data_off + (size_t)t->offset;
    }
    if (nt) {
        g->tensor_sorted = lkv_malloc((size_t)nt * sizeof *g->tensor_sorted);
        if (!g->tensor_sorted)
            LKV_FAIL(LKV_ERR_NOMEM, "gguf: no memory for the tensor index");
        /* overlap check: sort by data position */
        for (uint64_t i = 0; i < nt; i++)
            g->tensor_sorted[i] = i;
        heap_sort(g, g->tensor_sorted, nt, tensor_off_less);
        for (uint64_t i = 1; i < nt; i++) {
            const lkv_gguf_tensor *a = &g->tensors[g->tensor_sorted[i - 1]];
            const lkv_gguf_tensor *b = &g->tensors[g->tensor_sorted[i]];
            if ((const uint8_t *)a->data + a->nbytes > (const uint8_t *)b->data)
                LKV_FAIL(LKV_ERR_FORMAT, "gguf: tensors '%.*s' and '%.*s' overlap",
                         key_for_msg(&a->name), a->name.ptr, key_for_msg(&b->name), b->name.ptr);
        }
        /* then the name index */
        for (uint64_t i = 0; i < nt; i++)
            g->tensor_sorted[i] = i;
        heap_sort(g, g->tensor_sorted, nt, tensor_name_less);
        for (uint64_t i = 1; i < nt; i++) {
            const lkv_gguf_str *n = &g->tensors[g->tensor_sorted[i]].name;
            if (!str_cmp(*n, g->tensors[g->tensor_sorted[i - 1]].name))
                LKV_FAIL(LKV_ERR_FORMAT, "gguf: duplicate tensor name '%.*s'", key_for_msg(n),
                         n->ptr);
        }
    }
    return 0;
}

static int open_common(lkv_gguf *g, lkv_gguf **out) {
    int rc = parse(g);
    if (rc < 0) {
        lkv_gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

int lkv_gguf_open_memory(const void *data, size_t size, lkv_gguf **out) {
    if (!out)
        LKV_FAIL(LKV_ERR_INVALID, "gguf: NULL output");
    *out = NULL;
    if (!data && size)
        LKV_FAIL(LKV_ERR_INVALID, "gguf: NULL buffer");
    lkv_gguf *g = lkv_calloc(1, sizeof *g);
    if (!g)
        LKV_FAIL(LKV_ERR_NOMEM, "gguf: no memory");
    g->base = data ? data : (const uint8_t *)"";
    g->size = size;
    return open_common(g, out);
}

int lkv_gguf_open(const char *path, lkv_gguf **out) {
    if (!out || !path)
        LKV_FAIL(LKV_ERR_INVALID, "gguf: NULL path or output");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        LKV_FAIL(LKV_ERR_IO, "gguf: cannot open '%s'", path);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        LKV_FAIL(LKV_ERR_IO, "gguf: '%s' is not a regular file", path);
    }
    if (st.st_size < 24) {
        close(fd);
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: '%s' is too small (%lld bytes) to be a GGUF file", path,
                 (long long)st.st_size);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        LKV_FAIL(LKV_ERR_IO, "gguf: cannot map '%s'", path);
    lkv_gguf *g = lkv_calloc(1, sizeof *g);
    if (!g) {
        munmap(p, (size_t)st.st_size);
        LKV_FAIL(LKV_ERR_NOMEM, "gguf: no memory");
    }
    g->base = p;
    g->size = (size_t)st.st_size;
    g->mapped = 1;
    return open_common(g, out);
}

void lkv_gguf_close(lkv_gguf *g) {
    if (!g)
        return;
    for (uint64_t i = 0; i < g->n_kv; i++)
        lkv_free(g->kvs[i].str_at);
    lkv_free(g->kvs);
    lkv_free(g->tensors);
    lkv_free(g->kv_sorted);
    lkv_free(g->tensor_sorted);
    if (g->mapped)
        munmap((void *)g->base, g->size);
    lkv_free(g);
}

/* -------------------------------------------------------------- access */

uint32_t lkv_gguf_version(const lkv_gguf *g) { return g ? g->version : 0; }
uint64_t lkv_gguf_n_kv(const lkv_gguf *g) { return g ? g->n_kv : 0; }
uint64_t lkv_gguf_n_tensors(const lkv_gguf *g) { return g ? g->n_tensors : 0; }

const lkv_gguf_kv *lkv_gguf_kv_at(const lkv_gguf *g, uint64_t i) {
    return g && i < g->n_kv ? &g->kvs[i].kv : NULL;
}

const lkv_gguf_tensor *lkv_gguf_tensor_at(const lkv_gguf *g, uint64_t i) {
    return g && i < g->n_tensors ? &g->tensors[i] : NULL;
}

int lkv_gguf_str_eq(lkv_gguf_str s, const char *c) {
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

const lkv_gguf_kv *lkv_gguf_find(const lkv_gguf *g, const char *key) {
    if (!g || !key || !g->kv_sorted)
        return NULL;
    lkv_gguf_str k = {key, strlen(key)};
    uint64_t lo = 0, hi = g->n_kv;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int r = str_cmp(g->kvs[g->kv_sorted[mid]].kv.key, k);
        if (r == 0)
            return &g->kvs[g->kv_sorted[mid]].kv;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const lkv_gguf_tensor *lkv_gguf_find_tensor(const lkv_gguf *g, const char *name) {
    if (!g || !name || !g->tensor_sorted)
        return NULL;
    lkv_gguf_str k = {name, strlen(name)};
    uint64_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int r = str_cmp(g->tensors[g->tensor_sorted[mid]].name, k);
        if (r == 0)
            return &g->tensors[g->tensor_sorted[mid]];
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int is_unsigned(uint32_t t) {
    return t == LKV_GGUF_U8 || t == LKV_GGUF_U16 || t == LKV_GGUF_U32 || t == LKV_GGUF_U64 ||
           t == LKV_GGUF_BOOL;
}
static int is_signed(uint32_t t) {
    return t == LKV_GGUF_I8 || t == LKV_GGUF_I16 || t == LKV_GGUF_I32 || t == LKV_GGUF_I64;
}
static int is_float(uint32_t t) { return t == LKV_GGUF_F32 || t == LKV_GGUF_F64; }

/* Integer value of a scalar (kv->val), checking it fits in int64. */
static int val_i64(const lkv_gguf_kv *kv, uint32_t t, const char *what, int64_t *out) {
    if (is_signed(t)) {
        *out = kv->val.i;
        return 0;
    }
    if (is_unsigned(t)) {
        if (kv->val.u > (uint64_t)INT64_MAX)
            LKV_FAIL(LKV_ERR_FORMAT, "gguf: %s value %llu does not fit in int64", what,
                     (unsigned long long)kv->val.u);
        *out = (int64_t)kv->val.u;
        return 0;
    }
    LKV_FAIL(LKV_ERR_FORMAT, "gguf: %s is a %s, not an integer", what, vtype_name(t));
}

static int val_f64(const lkv_gguf_kv *kv, uint32_t t, const char *what, double *out) {
    if (is_float(t))
        *out = kv->val.f;
    else if (is_signed(t))
        *out = (double)kv->val.i;
    else if (is_unsigned(t))
        *out = (double)kv->val.u;
    else
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: %s is a %s, not a number", what, vtype_name(t));
    return 0;
}

int lkv_gguf_get_i64(const lkv_gguf *g, const char *key, int64_t *out) {
    const lkv_gguf_kv *kv = lkv_gguf_find(g, key);
    if (!kv)
        LKV_FAIL(LKV_ERR_NOT_FOUND, "gguf: key '%s' not found", key ? key : "(null)");
    return val_i64(kv, kv->type, key, out);
}

int lkv_gguf_get_f64(const lkv_gguf *g, const char *key, double *out) {
    const lkv_gguf_kv *kv = lkv_gguf_find(g, key);
    if (!kv)
        LKV_FAIL(LKV_ERR_NOT_FOUND, "gguf: key '%s' not found", key ? key : "(null)");
    return val_f64(kv, kv->type, key, out);
}

int lkv_gguf_get_str(const lkv_gguf *g, const char *key, lkv_gguf_str *out) {
    const lkv_gguf_kv *kv = lkv_gguf_find(g, key);
    if (!kv)
        LKV_FAIL(LKV_ERR_NOT_FOUND, "gguf: key '%s' not found", key ? key : "(null)");
    if (kv->type != LKV_GGUF_STRING)
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: key '%s' is a %s, not a string", key,
                 vtype_name(kv->type));
    *out = kv->str;
    return 0;
}

static int arr_check(const lkv_gguf_kv *kv, uint64_t i) {
    if (!kv || kv->type != LKV_GGUF_ARRAY)
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: value is not an array");
    if (i >= kv->arr_n)
        LKV_FAIL(LKV_ERR_RANGE, "gguf: array index %llu out of range (%llu elements)",
                 (unsigned long long)i, (unsigned long long)kv->arr_n);
    return 0;
}

int lkv_gguf_arr_str(const lkv_gguf_kv *kv, uint64_t i, lkv_gguf_str *out) {
    LKV_TRY(arr_check(kv, i));
    if (kv->arr_type != LKV_GGUF_STRING)
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: array of %s, not of strings", vtype_name(kv->arr_type));
    const kv_entry *e = (const kv_entry *)kv;
    const uint8_t *p = e->str_at[i];
    uint64_t n = 0;
    memcpy(&n, p, 8);
    out->ptr = (const char *)p + 8;
    out->len = n;
    return 0;
}

static int arr_elem(const lkv_gguf_kv *kv, uint64_t i, lkv_gguf_kv *tmp) {
    LKV_TRY(arr_check(kv, i));
    size_t es = scalar_size(kv->arr_type);
    if (!es)
        LKV_FAIL(LKV_ERR_FORMAT, "gguf: array of %s, not of numbers", vtype_name(kv->arr_type));
    widen(kv->arr_data + (size_t)i * es, kv->arr_type, tmp);
    return 0;
}

int lkv_gguf_arr_i64(const lkv_gguf_kv *kv, uint64_t i, int64_t *out) {
    lkv_gguf_kv tmp;
    LKV_TRY(arr_elem(kv, i, &tmp));
    return val_i64(&tmp, kv->arr_type, "array element", out);
}

int lkv_gguf_arr_f64(const lkv_gguf_kv *kv, uint64_t i, double *out) {
    lkv_gguf_kv tmp;
    LKV_TRY(arr_elem(kv, i, &tmp));
    return val_f64(&tmp, kv->arr_type, "array element", out);
}
