/* snapshot.c -- saving a sequence to a file (or memory) and loading it back.
 *
 * FORMAT, version 3 (versions 1 and 2 are still read, but for version 2's
 * KIVI pages, which were in rows: LKV_ERR_VERSION). All integers little-endian; CRC = CRC-32C
 * (src/common/hash.h). A file is: header, list table, header CRC, pages in list
 * order (list i = layer * kv_heads + head) and page order, trailer.
 *
 *   Header (48 bytes)
 *     0   8  magic "LKVSNAP\0"
 *     8   4  u32 version = 3 (1, 2 are read too; any other value: LKV_ERR_VERSION)
 *    12   4  u32 header_size = 48 + 8 * n_lists + 4 (bytes up to and including
 *            the header CRC), n_lists = n_layers * kv_heads
 *    16   8  u64 model_id            -- must equal the cache's (else LKV_ERR_VERSION)
 *    24   4  u32 n_layers            -- must equal the cache's
 *    28   4  u32 kv_heads            -- must equal the cache's
 *    32   4  u32 head_dim            -- must equal the cache's
 *    36   4  u32 page_tokens         -- must equal the cache's (pages load 1:1)
 *    40   4  u32 flags = 0 (reserved)
 *    44   4  u32 n_pages: total pages in the file (= sum of the list table's)
 *   List table: n_lists entries of 8 bytes
 *     +0  4  u32 n_tokens of the list
 *     +4  4  u32 n_pages of the list = ceil(n_tokens / page_tokens)
 *   Header CRC (4 bytes): u32 CRC of bytes [0, header_size - 4)
 *
 *   Page: header (32 bytes) + payload
 *     0   4  magic "PAGE"
 *     4   4  u32 format tag (0 f32, 1 f16, 2 bf16, 3 q8, 4 kivi4, 5 kivi2; kv_format
 *            tags; version 1 files hold only the plain ones, 0..2)
 *     8   4  u32 list index
 *    12   4  u32 page index in the list
 *    16   4  u32 n: slots (page_tokens, except the last page of a list: 1..page_tokens)
 *    20   4  u32 payload_size
 *    24   4  u32 payload CRC
 *    28   4  u32 CRC of page-header bytes [0, 28)
 *     payload: the page's arrays as they lie in the pool (kv/format.c,
 *     kv/format_quant.c; with d = head_dim):
 *       pos   [n] i32 original positions (strictly ascending along the whole list);
 *             written in full also for pages that keep only their first position in
 *             the pool (consecutive positions, kv.h KV_PAGE_POS_BASE), and a loaded
 *             page with consecutive positions becomes one again where its format allows
 *       K     n rows: plain [n][d] elements (f32: 4 bytes, f16/bf16: 2 bytes);
 *             q8 [n][d] int8 codes; kiviB ceil(n / 16) tiles of 16 * R bytes,
 *             R = B * (d rounded up to 32/B) / 8 (kernels/kv_quant.h)
 *       V     n rows (kivi: tiles), the same sizes
 *       k_aux plain: nothing; q8: [n] half scales; kivi: [2][d] halves (per-channel
 *             scale, then min, over the page's key group -- all n slots)
 *       v_aux plain: nothing; q8: [n] half scales; kivi: per tile [ceil(d/32)][2][16] halves
 *     (payload_size must equal the sum of these sizes for the format and n.)
 *     Quantized pages are restored exactly: codes and scales are copied, never
 *     re-encoded, so a loaded page decodes to the very values it held.
 *
 *   Trailer (16 bytes)
 *     0   8  magic "LKVEND\0\0"
 *     8   8  u64 total file size, which must be the size of the input exactly
 *
 * Every byte is covered by a CRC or compared against an exact expected value,
 * so any single-byte change and any truncation or extension is detected.
 * Key digests are not stored: they are recomputed from the loaded keys (KIVI
 * pages derive theirs from the stored scales).
 * Loading validates the whole input before touching the cache.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/error.h"
#include "common/hash.h"
#include "kv/kv.h"

#define SNAP_VERSION 3u /* written; versions 1 (plain pages) and 2 are read too */
#define HDR_FIXED 48
#define PAGE_HDR 32
#define TRAILER 16

static const char MAGIC[8] = {'L', 'K', 'V', 'S', 'N', 'A', 'P', 0};
static const char END_MAGIC[8] = {'L', 'K', 'V', 'E', 'N', 'D', 0, 0};

static int host_is_le(void) {
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

/* ------------------------------------------------------------ writing */

typedef struct snap_out {
    uint8_t *mem;   /* memory target, or NULL */
    size_t cap, len;
    int fd;         /* file target when mem == NULL */
    uint8_t *buf;   /* file buffer */
    size_t blen, bcap;
    int err;
} snap_out;

static void out_flush(snap_out *w) {
    size_t off = 0;
    while (!w->err && off < w->blen) {
        ssize_t r = write(w->fd, w->buf + off, w->blen - off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            w->err = 1;
        else
            off += (size_t)r;
    }
    w->blen = 0;
}

static void out_put(snap_out *w, const void *p, size_t n) {
    if (w->err)
        return;
    if (w->mem) {
        if (n > w->cap - w->len) {
            w->err = 1;
            return;
        }
        memcpy(w->mem + w->len, p, n);
        w->len += n;
        return;
    }
    w->len += n;
    const uint8_t *s = p;
    while (n > 0) {
        size_t m = w->bcap - w->blen < n ? w->bcap - w->blen : n;
        memcpy(w->buf + w->blen, s, m);
        w->blen += m;
        s += m;
        n -= m;
        if (w->blen == w->bcap)
            out_flush(w);
    }
}

static int list_keep(const kv_list *l, int n_tokens) {
    return n_tokens < 0 || n_tokens > l->n_tokens ? l->n_tokens : n_tokens;
}

/* The page arrays a snapshot stores for n slots, in payload order. */
typedef struct snap_arrays {
    size_t bytes[4]; /* K, V, k_aux, v_aux */
} snap_arrays;

static snap_arrays arrays_of(const lkv_cache *c, int fmt, int n) {
    const kv_format *f = kv_format_get(fmt);
    const int d = c->p.head_dim;
    snap_arrays a = {{f->k_bytes(n, d), f->v_bytes(n, d), f->k_aux_bytes(n, d),
                      f->v_aux_bytes(n, d)}};
    return a;
}

static size_t payload_bytes(const lkv_cache *c, int fmt, int n) {
    snap_arrays a = arrays_of(c, fmt, n);
    return (size_t)n * 4 + a.bytes[0] + a.bytes[1] + a.bytes[2] + a.bytes[3];
}

/* Where each array of a page starts, in payload order. */
static void page_array_ptrs(const lkv_cache *c, const kv_page *pg, void *out[4]) {
    kv_page_ptrs a = kv_page_arrays(c, pg);
    out[0] = a.k;
    out[1] = a.v;
    out[2] = a.k_aux;
    out[3] = a.v_aux;
}

static int check_save(const lkv_seq *s) {
    if (!s)
        LKV_FAIL(LKV_ERR_INVALID, "snapshot: NULL sequence");
    if (!host_is_le())
        LKV_FAIL(LKV_ERR_UNSUPPORTED, "snapshot: big-endian hosts are not supported yet");
    return LKV_OK; /* every page format is serialisable (version 2) */
}

int lkv_seq_snapshot_size(const lkv_seq *s, int n_tokens, size_t *size) {
    LKV_TRY(check_save(s));
    if (!size)
        LKV_FAIL(LKV_ERR_INVALID, "snapshot: NULL size");
    const lkv_cache *c = s->c;
    const int pt = c->p.page_tokens;
    size_t total = HDR_FIXED + 8 * (size_t)c->n_lists + 4 + TRAILER;
    for (int i = 0; i < c->n_lists; i++) {
        const kv_list *l = &s->lists[i];
        int keep = list_keep(l, n_tokens);
        for (int j = 0; j * pt < keep; j++) {
            int n = keep - j * pt < pt ? keep - j * pt : pt;
            total += PAGE_HDR + payload_bytes(c, l->refs[j].page->format, n);
        }
    }
    *size = total;
    return LKV_OK;
}

static void write_snapshot(const lkv_seq *s, int n_tokens, size_t total, snap_out *w) {
    const lkv_cache *c = s->c;
    const int pt = c->p.page_tokens, d = c->p.head_dim;
    size_t hsize = HDR_FIXED + 8 * (size_t)c->n_lists + 4;
    uint8_t fixed[HDR_FIXED], ent[8], b4[4];
    uint32_t n_pages = 0;
    for (int i = 0; i < c->n_lists; i++)
        n_pages += (uint32_t)((list_keep(&s->lists[i], n_tokens) + pt - 1) / pt);
    memcpy(fixed, MAGIC, 8);
    put32(fixed + 8, SNAP_VERSION);
    put32(fixed + 12, (uint32_t)hsize);
    put64(fixed + 16, c->p.model_id);
    put32(fixed + 24, (uint32_t)c->p.n_layers);
    put32(fixed + 28, (uint32_t)c->p.kv_heads);
    put32(fixed + 32, (uint32_t)d);
    put32(fixed + 36, (uint32_t)pt);
    put32(fixed + 40, 0);
    put32(fixed + 44, n_pages);
    uint32_t crc = lkv_crc32c(0, fixed, HDR_FIXED);
    out_put(w, fixed, HDR_FIXED);
    for (int i = 0; i < c->n_lists; i++) {
        int keep = list_keep(&s->lists[i], n_tokens);
        put32(ent, (uint32_t)keep);
        put32(ent + 4, (uint32_t)((keep + pt - 1) / pt));
        crc = lkv_crc32c(crc, ent, 8);
        out_put(w, ent, 8);
    }
    put32(b4, crc);
    out_put(w, b4, 4);
    for (int i = 0; i < c->n_lists; i++) {
        const kv_list *l = &s->lists[i];
        int keep = list_keep(l, n_tokens);
        for (int j = 0; j * pt < keep; j++) {
            const kv_page *pg = l->refs[j].page;
            int n = keep - j * pt < pt ? keep - j * pt : pt;
            snap_arrays sa = arrays_of(c, pg->format, n);
            void *arr[4];
            page_array_ptrs(c, pg, arr);
            const int32_t *pos = kv_page_pos(c, pg);
            int32_t chunk[256]; /* KV_PAGE_POS_BASE pages: positions made in chunks */
            uint32_t pc = 0;
            if (pos)
                pc = lkv_crc32c(0, pos, (size_t)n * 4);
            for (int t = 0; !pos && t < n; t += 256) {
                int m = n - t < 256 ? n - t : 256;
                kv_page_get_pos(c, pg, t, m, chunk);
                pc = lkv_crc32c(pc, chunk, (size_t)m * 4);
            }
            for (int r = 0; r < 4; r++)
                if (sa.bytes[r])
                    pc = lkv_crc32c(pc, arr[r], sa.bytes[r]);
            uint8_t ph[PAGE_HDR];
            memcpy(ph, "PAGE", 4);
            put32(ph + 4, (uint32_t)pg->format);
            put32(ph + 8, (uint32_t)i);
            put32(ph + 12, (uint32_t)j);
            put32(ph + 16, (uint32_t)n);
            put32(ph + 20, (uint32_t)payload_bytes(c, pg->format, n));
            put32(ph + 24, pc);
            put32(ph + 28, lkv_crc32c(0, ph, 28));
            out_put(w, ph, PAGE_HDR);
            if (pos)
                out_put(w, pos, (size_t)n * 4);
            for (int t = 0; !pos && t < n; t += 256) { /* the file holds them all the same */
                int m = n - t < 256 ? n - t : 256;
                kv_page_get_pos(c, pg, t, m, chunk);
                out_put(w, chunk, (size_t)m * 4);
            }
            for (int r = 0; r < 4; r++)
                if (sa.bytes[r])
                    out_put(w, arr[r], sa.bytes[r]);
        }
    }
    uint8_t tr[TRAILER];
    memcpy(tr, END_MAGIC, 8);
    put64(tr + 8, (uint64_t)total);
    out_put(w, tr, TRAILER);
}

int lkv_seq_save_mem(const lkv_seq *s, int n_tokens, void *buf, size_t cap, size_t *written) {
    size_t total;
    LKV_TRY(lkv_seq_snapshot_size(s, n_tokens, &total));
    if (written)
        *written = total;
    if (!buf || cap < total)
        LKV_FAIL(LKV_ERR_RANGE, "snapshot: buffer of %zu bytes, need %zu", cap, total);
    snap_out w = {0};
    w.mem = buf;
    w.cap = cap;
    w.fd = -1;
    write_snapshot(s, n_tokens, total, &w);
    return LKV_OK;
}

int lkv_seq_save(const lkv_seq *s, int n_tokens, const char *path) {
    if (!path)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_save: NULL path");
    size_t total;
    LKV_TRY(lkv_seq_snapshot_size(s, n_tokens, &total));
    size_t plen = strlen(path);
    char *tmp = lkv_malloc(plen + 32);
    snap_out w = {0};
    w.bcap = 1 << 16;
    w.buf = lkv_malloc(w.bcap);
    if (!tmp || !w.buf) {
        lkv_free(tmp);
        lkv_free(w.buf);
        LKV_FAIL(LKV_ERR_NOMEM, "lkv_seq_save: out of memory");
    }
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    w.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w.fd < 0) {
        int e = errno;
        lkv_free(w.buf);
        lkv_set_error(LKV_ERR_IO, "lkv_seq_save: cannot create %s: %s", tmp, strerror(e));
        lkv_free(tmp);
        return LKV_ERR_IO;
    }
    write_snapshot(s, n_tokens, total, &w);
    out_flush(&w);
    int bad = w.err || w.len != total;
    bad |= fsync(w.fd) != 0;
    bad |= close(w.fd) != 0;
    lkv_free(w.buf);
    if (!bad && rename(tmp, path) != 0)
        bad = 1;
    if (bad) {
        int e = errno;
        unlink(tmp);
        lkv_set_error(LKV_ERR_IO, "lkv_seq_save: writing %s failed: %s", path, strerror(e));
        lkv_free(tmp);
        return LKV_ERR_IO;
    }
    lkv_free(tmp);
    /* make the rename durable: fsync the directory holding path */
    char *dir = lkv_strdup(path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        const char *dname = ".";
        if (slash) {
            slash[slash == dir ? 1 : 0] = 0;
            dname = dir;
        }
        int dfd = open(dname, O_RDONLY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        lkv_free(dir);
    }
    return LKV_OK;
}

/* ------------------------------------------------------------ loading */

typedef struct snap_list {
    uint32_t n_tokens, n_pages;
} snap_list;

/* Validates everything; on success *first_page is the offset of the first page. */
static int validate(const lkv_cache *c, const uint8_t *p, size_t size, size_t *first_page) {
    const char *fn = "snapshot";
    if (size < HDR_FIXED + 4 + TRAILER)
        LKV_FAIL(LKV_ERR_FORMAT, "%s: %zu bytes is too short (truncated?)", fn, size);
    if (memcmp(p, MAGIC, 8))
        LKV_FAIL(LKV_ERR_FORMAT, "%s: bad magic (not a longkv snapshot)", fn);
    uint32_t version = get32(p + 8);
    if (version != SNAP_VERSION && version != 1 && version != 2)
        LKV_FAIL(LKV_ERR_VERSION, "%s: version %u, this build reads versions 1 to %u", fn,
                 version, SNAP_VERSION);
    uint64_t hsize = get32(p + 12);
    if (get32(p + 24) > 65536 || get32(p + 28) > 65536)
        LKV_FAIL(LKV_ERR_FORMAT, "%s: implausible geometry (corrupt)", fn);
    uint64_t nl = (uint64_t)get32(p + 24) * get32(p + 28);
    if (hsize != HDR_FIXED + 8 * nl + 4 || hsize > size - TRAILER)
        LKV_FAIL(LKV_ERR_FORMAT, "%s: header size %llu inconsistent (truncated or corrupt)", fn,
                 (unsigned long long)hsize);
    if (lkv_crc32c(0, p, hsize - 4) != get32(p + hsize - 4))
        LKV_FAIL(LKV_ERR_FORMAT, "%s: header checksum mismatch (corrupt)", fn);
    if (get32(p + 40) != 0)
        LKV_FAIL(LKV_ERR_VERSION, "%s: unknown flags 0x%x", fn, get32(p + 40));
    if (get64(p + 16) != c->p.model_id || get32(p + 24) != (uint32_t)c->p.n_layers ||
        get32(p + 28) != (uint32_t)c->p.kv_heads || get32(p + 32) != (uint32_t)c->p.head_dim ||
        get32(p + 36) != (uint32_t)c->p.page_tokens)
        LKV_FAIL(LKV_ERR_VERSION,
                 "%s: made for model %llx, %u layers x %u heads x dim %u, %u-token pages; "
                 "the cache is %llx, %d x %d x %d, %d",
                 fn, (unsigned long long)get64(p + 16), get32(p + 24), get32(p + 28), get32(p + 32),
                 get32(p + 36), (unsigned long long)c->p.model_id, c->p.n_layers, c->p.kv_heads,
                 c->p.head_dim, c->p.page_tokens);
    const uint32_t pt = (uint32_t)c->p.page_tokens, d = (uint32_t)c->p.head_dim;
    uint64_t sum_pages = 0;
    for (uint64_t i = 0; i < nl; i++) {
        uint32_t nt = get32(p + HDR_FIXED + 8 * i), np = get32(p + HDR_FIXED + 8 * i + 4);
        if (nt > (uint32_t)INT32_MAX || np != (nt + (uint64_t)pt - 1) / pt)
            LKV_FAIL(LKV_ERR_FORMAT, "%s: list %llu: %u tokens in %u pages", fn,
                     (unsigned long long)i, nt, np);
        sum_pages += np;
    }
    if (sum_pages != get32(p + 44))
        LKV_FAIL(LKV_ERR_FORMAT, "%s: page count %u != %llu listed", fn, get32(p + 44),
                 (unsigned long long)sum_pages);
    size_t off = hsize;
    *first_page = off;
    for (uint64_t i = 0; i < nl; i++) {
        uint32_t nt = get32(p + HDR_FIXED + 8 * i), np = get32(p + HDR_FIXED + 8 * i + 4);
        int64_t last = -1; /* positions are >= 0 */
        for (uint32_t j = 0; j < np; j++) {
            if (size - off < PAGE_HDR + TRAILER)
                LKV_FAIL(LKV_ERR_FORMAT, "%s: truncated in list %llu page %u", fn,
                         (unsigned long long)i, j);
            const uint8_t *ph = p + off;
            if (memcmp(ph, "PAGE", 4) || lkv_crc32c(0, ph, 28) != get32(ph + 28))
                LKV_FAIL(LKV_ERR_FORMAT, "%s: list %llu page %u: bad page header", fn,
                         (unsigned long long)i, j);
            uint32_t fmt = get32(ph + 4), n = get32(ph + 16), psize = get32(ph + 20);
            const kv_format *f = kv_format_get((int)fmt);
            if (!f)
                LKV_FAIL(LKV_ERR_VERSION, "%s: page format %u unknown to this build", fn, fmt);
            if (version == 1 && !f->elem_bytes) /* quantized pages came with version 2 */
                LKV_FAIL(LKV_ERR_FORMAT, "%s: version 1 file with a %s page (corrupt)", fn,
                         f->name);
            if (version == 2 && (fmt == LKV_DTYPE_KIVI4 || fmt == LKV_DTYPE_KIVI2))
                LKV_FAIL(LKV_ERR_VERSION, "%s: version 2 file with a %s page: KIVI pages were "
                         "stored in rows then, in tiles of 16 tokens since version 3; "
                         "save it again with the build that wrote it, or without KIVI", fn, f->name);
            uint32_t want_n = j + 1 < np ? pt : nt - j * pt;
            if (get32(ph + 8) != i || get32(ph + 12) != j || n != want_n)
                LKV_FAIL(LKV_ERR_FORMAT, "%s: list %llu page %u: out of order or wrong size", fn,
                         (unsigned long long)i, j);
            size_t want_size = payload_bytes(c, (int)fmt, (int)n);
            if (psize != want_size || size - off - PAGE_HDR < (size_t)psize + TRAILER)
                LKV_FAIL(LKV_ERR_FORMAT, "%s: list %llu page %u: payload size %u (want %zu) "
                         "or truncated", fn, (unsigned long long)i, j, psize, want_size);
            const uint8_t *pl = ph + PAGE_HDR;
            if (lkv_crc32c(0, pl, psize) != get32(ph + 24))
                LKV_FAIL(LKV_ERR_FORMAT, "%s: list %llu page %u: checksum mismatch (corrupt)", fn,
                         (unsigned long long)i, j);
            for (uint32_t t = 0; t < n; t++) {
                int32_t ps = (int32_t)get32(pl + 4 * t);
                if (ps <= last)
                    LKV_FAIL(LKV_ERR_FORMAT, "%s: list %llu: positions not ascending", fn,
                             (unsigned long long)i);
                last = ps;
            }
            (void)d;
            off += PAGE_HDR + psize;
        }
    }
    if (size - off != TRAILER || memcmp(p + off, END_MAGIC, 8) || get64(p + off + 8) != size)
        LKV_FAIL(LKV_ERR_FORMAT, "%s: bad trailer or size (truncated or extended)", fn);
    return LKV_OK;
}

int lkv_seq_load_mem(lkv_cache *c, const void *data, size_t size, lkv_seq **out) {
    if (out)
        *out = NULL;
    if (!c || !out || (!data && size))
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_load_mem: NULL argument");
    if (!host_is_le())
        LKV_FAIL(LKV_ERR_UNSUPPORTED, "snapshot: big-endian hosts are not supported yet");
    const uint8_t *p = data;
    size_t off = 0;
    LKV_TRY(validate(c, p, size, &off));
    const int pt = c->p.page_tokens, Hk = c->p.kv_heads;
    lkv_seq *s;
    LKV_TRY(kv_seq_new(c, &s));
    for (int i = 0; i < c->n_lists; i++) {
        kv_list *l = &s->lists[i];
        int np = (int)get32(p + HDR_FIXED + 8 * (size_t)i + 4);
        int rc = kv_list_reserve(l, np);
        for (int j = 0; j < np && rc == 0; j++) {
            const uint8_t *ph = p + off;
            int fmt = (int)get32(ph + 4), n = (int)get32(ph + 16);
            kv_page *pg;
            const uint8_t *pl = ph + PAGE_HDR;
            int32_t p_first = (int32_t)get32(pl), p_last = (int32_t)get32(pl + 4 * (size_t)(n - 1));
            /* consecutive positions: a page without the array, where the format allows */
            rc = kv_page_new(c, fmt, p_last - p_first == n - 1, i / Hk, i % Hk, &pg);
            if (rc < 0)
                break;
            snap_arrays sa = arrays_of(c, fmt, n);
            void *arr[4];
            page_array_ptrs(c, pg, arr);
            if (kv_page_pos(c, pg))
                memcpy(kv_page_pos(c, pg), pl, (size_t)n * 4);
            else
                pg->pos0 = p_first;
            pl += (size_t)n * 4;
            for (int r = 0; r < 4; r++) { /* codes and scales as saved: exact */
                if (sa.bytes[r])
                    memcpy(arr[r], pl, sa.bytes[r]);
                pl += sa.bytes[r];
            }
            pg->fill = n;
            kv_page_digest(c, pg, n);
            l->refs[l->n_pages].page = pg;
            l->refs[l->n_pages].n = n;
            l->n_pages++;
            l->n_tokens += n;
            off += PAGE_HDR + get32(ph + 20);
        }
        if (rc < 0) {
            lkv_seq_free(s); /* returns every page taken so far */
            return rc;
        }
        kv_list_refresh(c, l, 0);
        (void)pt;
    }
    *out = s;
    return LKV_OK;
}

int lkv_seq_load(lkv_cache *c, const char *path, lkv_seq **out) {
    if (out)
        *out = NULL;
    if (!c || !path || !out)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_seq_load: NULL argument");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return lkv_set_error(e == ENOENT ? LKV_ERR_NOT_FOUND : LKV_ERR_IO,
                             "lkv_seq_load: cannot open %s: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        LKV_FAIL(LKV_ERR_IO, "lkv_seq_load: cannot stat %s", path);
    }
    size_t size = (size_t)st.st_size;
    if (size == 0) {
        close(fd);
        return lkv_seq_load_mem(c, "", 0, out);
    }
    void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        LKV_FAIL(LKV_ERR_IO, "lkv_seq_load: cannot map %s (%zu bytes)", path, size);
    int rc = lkv_seq_load_mem(c, m, size, out);
    munmap(m, size);
    return rc;
}
