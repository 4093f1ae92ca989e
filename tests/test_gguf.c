/* test_gguf.c -- the GGUF reader.
 *   - a tiny GGUF written here (every metadata type, string arrays, tensors of
 *     several formats, custom alignment) parses, and every value reads back;
 *   - malformed variants (bad counts, lengths, types, dims, offsets, overlaps,
 *     duplicates, every truncation, random byte flips) are rejected with
 *     LKV_ERR_FORMAT and never crash;
 *   - if models/SmolLM2-135M-Instruct.Q4_1.gguf exists (LONGKV_ROOT or relative
 *     paths), its header, tensor types and every tensor's values are checked.
 * `test_gguf --write-corpus DIR` writes the fuzz seed corpus instead. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"
#include "common/fp16.h"
#include "model/gguf.h"
#include "testutil.h"

static int quick;

/* ------------------------------------------------------------ the writer */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void str(buf *b, const char *s) {
    u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void pad_to(buf *b, size_t align) {
    while (b->n % align)
        put(b, "", 1);
}

/* What to break. Each variant changes one thing of the valid file. */
enum {
    V_OK, V_MAGIC, V_VERSION1, V_VERSION4, V_NKV_HUGE, V_NT_HUGE, V_KEYLEN_HUGE, V_KEY_EMPTY,
    V_VTYPE_BAD, V_ARR_ETYPE_BAD, V_ARR_NESTED, V_ARR_COUNT_HUGE, V_STRARR_COUNT_HUGE,
    V_STR_LEN_HUGE, V_NDIMS0, V_NDIMS5, V_DIM0, V_DIM_OVERFLOW, V_TYPE_REMOVED, V_TYPE_HUGE,
    V_ROW_PARTIAL, V_OFFSET_MISALIGNED, V_OFFSET_PAST_END, V_OVERLAP, V_DUP_TENSOR, V_DUP_KEY,
    V_ALIGN_ZERO, V_ALIGN_NPOT, V_ALIGN_STRING, V_BYTES_OVERFLOW, V_COUNT
};

static const char *variant_name[V_COUNT] = {
    "ok", "magic", "version1", "version4", "nkv_huge", "nt_huge", "keylen_huge", "key_empty",
    "vtype_bad", "arr_etype_bad", "arr_nested", "arr_count_huge", "strarr_count_huge",
    "str_len_huge", "ndims0", "ndims5", "dim0", "dim_overflow", "type_removed", "type_huge",
    "row_partial", "offset_misaligned", "offset_past_end", "overlap", "dup_tensor", "dup_key",
    "align_zero", "align_npot", "align_string", "bytes_overflow"};

#define ALIGN 64 /* the tiny file uses general.alignment = 64 */

typedef struct tinfo {
    const char *name;
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
    size_t nbytes;
} tinfo;

/* The tiny model: f32 [8], q4_1 [64 x 3], q8_0 [32 x 2], f16 [4 x 2 x 1 x 3]. */
static const tinfo tiny_tensors[] = {
    {"norm.weight", 1, {8}, LKV_Q_F32, 32},
    {"blk.0.w", 2, {64, 3}, LKV_Q_Q4_1, 2 * 20 * 3},
    {"embd", 2, {32, 2}, LKV_Q_Q8_0, 34 * 2},
    {"f16.4d", 4, {4, 2, 1, 3}, LKV_Q_F16, 2 * 24},
};
#define N_TINY 4

/* Deterministic tensor contents: f32/f16 value k*0.25 - 1, blocks with d = 0.5, m = -1. */
static void tensor_bytes(const tinfo *t, uint8_t *dst) {
    size_t n = t->nbytes;
    memset(dst, 0, n);
    if (t->type == LKV_Q_F32) {
        for (size_t k = 0; k < n / 4; k++) {
            float v = (float)k * 0.25f - 1.0f;
            memcpy(dst + 4 * k, &v, 4);
        }
    } else if (t->type == LKV_Q_F16) {
        for (size_t k = 0; k < n / 2; k++) {
            uint16_t h = lkv_float_to_half((float)k * 0.25f - 1.0f);
            memcpy(dst + 2 * k, &h, 2);
        }
    } else if (t->type == LKV_Q_Q4_1) {
        for (size_t b = 0; b < n / 20; b++) {
            uint16_t d = 0x3800, m = 0xbc00; /* 0.5, -1 */
            memcpy(dst + 20 * b, &d, 2);
            memcpy(dst + 20 * b + 2, &m, 2);
            for (int j = 0; j < 16; j++)
                dst[20 * b + 4 + j] = (uint8_t)((j + b) % 16 | (((15 - j) % 16) << 4));
        }
    } else if (t->type == LKV_Q_Q8_0) {
        for (size_t b = 0; b < n / 34; b++) {
            uint16_t d = 0x3800;
            memcpy(dst + 34 * b, &d, 2);
            for (int j = 0; j < 32; j++)
                dst[34 * b + 2 + j] = (uint8_t)(int8_t)(j - 16);
        }
    }
}

static void gen(buf *b, int v) {
    b->n = 0;
    put(b, v == V_MAGIC ? "GGUG" : "GGUF", 4);
    u32(b, v == V_VERSION1 ? 1 : v == V_VERSION4 ? 4 : 3);
    uint64_t n_kv = 10 + (v == V_DUP_KEY);
    u64(b, v == V_NT_HUGE ? (1ull << 40) : N_TINY + (v == V_DUP_TENSOR));
    u64(b, v == V_NKV_HUGE ? (1ull << 40) : n_kv);
    /* kv 1: architecture */
    if (v == V_KEYLEN_HUGE)
        u64(b, 1ull << 50), put(b, "general.architecture", 20);
    else
        str(b, v == V_KEY_EMPTY ? "" : "general.architecture");
    u32(b, v == V_VTYPE_BAD ? 99 : LKV_GGUF_STRING);
    if (v == V_STR_LEN_HUGE)
        u64(b, 1ull << 33), put(b, "llama", 5);
    else
        str(b, "llama");
    /* kv 2: u32 */
    str(b, "llama.block_count");
    u32(b, LKV_GGUF_U32);
    u32(b, 30);
    /* kv 3: f32 */
    str(b, "llama.rope.freq_base");
    u32(b, LKV_GGUF_F32);
    float f = 100000.0f;
    put(b, &f, 4);
    /* kv 4: bool */
    str(b, "tokenizer.ggml.add_bos_token");
    u32(b, LKV_GGUF_BOOL);
    put(b, "\1", 1);
    /* kv 5: string array */
    str(b, "tokenizer.ggml.tokens");
    u32(b, LKV_GGUF_ARRAY);
    u32(b, v == V_ARR_NESTED ? LKV_GGUF_ARRAY : LKV_GGUF_STRING);
    u64(b, v == V_STRARR_COUNT_HUGE ? (1ull << 61) : 3);
    str(b, "<s>");
    str(b, "");
    str(b, "hello");
    /* kv 6: i32 array */
    str(b, "tokenizer.ggml.token_type");
    u32(b, LKV_GGUF_ARRAY);
    u32(b, v == V_ARR_ETYPE_BAD ? 13 : LKV_GGUF_I32);
    u64(b, v == V_ARR_COUNT_HUGE ? (1ull << 62) : 3);
    int32_t tt[3] = {3, 1, -7};
    put(b, tt, sizeof tt);
    /* kv 7: i64, u64 too big for i64 */
    str(b, "test.i64");
    u32(b, LKV_GGUF_I64);
    int64_t i64 = -5000000000ll;
    put(b, &i64, 8);
    str(b, "test.u64big");
    u32(b, LKV_GGUF_U64);
    u64(b, 1ull << 63);
    /* kv 9: f64 */
    str(b, "test.f64");
    u32(b, LKV_GGUF_F64);
    double d = 0.125;
    put(b, &d, 8);
    /* kv 10: alignment */
    str(b, "general.alignment");
    if (v == V_ALIGN_STRING) {
        u32(b, LKV_GGUF_STRING);
        str(b, "64");
    } else {
        u32(b, LKV_GGUF_U32);
        u32(b, v == V_ALIGN_ZERO ? 0 : v == V_ALIGN_NPOT ? 48 : ALIGN);
    }
    if (v == V_DUP_KEY) {
        str(b, "llama.block_count");
        u32(b, LKV_GGUF_U32);
        u32(b, 31);
    }
    /* tensor infos */
    int nt = N_TINY + (v == V_DUP_TENSOR);
    size_t offs[N_TINY + 1], off = 0;
    for (int i = 0; i < nt; i++) {
        const tinfo *t = &tiny_tensors[i < N_TINY ? i : 0];
        offs[i] = off;
        off += (t->nbytes + ALIGN - 1) / ALIGN * ALIGN;
    }
    for (int i = 0; i < nt; i++) {
        const tinfo *t = &tiny_tensors[i < N_TINY ? i : 0];
        str(b, t->name);
        uint32_t nd = t->n_dims;
        if (i == 1 && v == V_NDIMS0)
            nd = 0;
        if (i == 1 && v == V_NDIMS5)
            nd = 5;
        u32(b, nd);
        for (uint32_t k = 0; k < nd; k++) {
            uint64_t ne = k < 4 ? t->ne[k] : 1;
            if (i == 1 && k == 1 && v == V_DIM0)
                ne = 0;
            if (i == 1 && k == 1 && v == V_DIM_OVERFLOW)
                ne = 1ull << 62;
            if (i == 0 && k == 0 && v == V_BYTES_OVERFLOW)
                ne = 1ull << 62; /* f32: the element count fits int64, the bytes overflow */
            if (i == 1 && k == 0 && v == V_ROW_PARTIAL)
                ne = 48;
            u64(b, ne);
        }
        uint32_t type = t->type;
        if (i == 2 && v == V_TYPE_REMOVED)
            type = 4;
        if (i == 2 && v == V_TYPE_HUGE)
            type = 1u << 31;
        u32(b, type);
        uint64_t o = offs[i];
        if (i == 1 && v == V_OFFSET_MISALIGNED)
            o += 32;
        if (i == 3 && v == V_OFFSET_PAST_END)
            o = 1ull << 40;
        if (i == 2 && v == V_OVERLAP)
            o = offs[1];
        u64(b, o);
    }
    pad_to(b, ALIGN);
    for (int i = 0; i < nt; i++) {
        const tinfo *t = &tiny_tensors[i < N_TINY ? i : 0];
        uint8_t tmp[256];
        tensor_bytes(t, tmp);
        put(b, tmp, t->nbytes);
        if (i + 1 < nt)
            pad_to(b, ALIGN);
    }
}

/* ------------------------------------------------------------- checks */

static void test_valid(void) {
    buf b = {0};
    gen(&b, V_OK);
    lkv_gguf *g = NULL;
    CHECK_OK(lkv_gguf_open_memory(b.p, b.n, &g));
    if (!g) {
        free(b.p);
        return;
    }
    CHECK(lkv_gguf_version(g) == 3, "version");
    CHECK(lkv_gguf_n_kv(g) == 10, "n_kv %llu", (unsigned long long)lkv_gguf_n_kv(g));
    CHECK(lkv_gguf_n_tensors(g) == N_TINY, "n_tensors");
    lkv_gguf_str s;
    CHECK_OK(lkv_gguf_get_str(g, "general.architecture", &s));
    CHECK(lkv_gguf_str_eq(s, "llama"), "architecture");
    int64_t i;
    double d;
    CHECK_OK(lkv_gguf_get_i64(g, "llama.block_count", &i));
    CHECK(i == 30, "block_count %lld", (long long)i);
    CHECK_OK(lkv_gguf_get_f64(g, "llama.rope.freq_base", &d));
    CHECK(d == 100000.0, "freq_base %g", d);
    CHECK_OK(lkv_gguf_get_f64(g, "llama.block_count", &d));
    CHECK(d == 30.0, "integer as f64");
    CHECK_OK(lkv_gguf_get_i64(g, "test.i64", &i));
    CHECK(i == -5000000000ll, "i64");
    CHECK(lkv_gguf_get_i64(g, "test.u64big", &i) == LKV_ERR_FORMAT, "u64 > INT64_MAX");
    CHECK_OK(lkv_gguf_get_f64(g, "test.f64", &d));
    CHECK(d == 0.125, "f64");
    CHECK(lkv_gguf_get_i64(g, "test.f64", &i) == LKV_ERR_FORMAT, "float as int");
    CHECK(lkv_gguf_get_str(g, "llama.block_count", &s) == LKV_ERR_FORMAT, "int as string");
    CHECK(lkv_gguf_get_i64(g, "no.such.key", &i) == LKV_ERR_NOT_FOUND, "missing key");
    CHECK(lkv_gguf_find(g, "general") == NULL, "prefix is not a key");
    CHECK_OK(lkv_gguf_get_i64(g, "tokenizer.ggml.add_bos_token", &i));
    CHECK(i == 1, "bool");
    const lkv_gguf_kv *kv = lkv_gguf_find(g, "tokenizer.ggml.tokens");
    CHECK(kv && kv->type == LKV_GGUF_ARRAY && kv->arr_type == LKV_GGUF_STRING && kv->arr_n == 3,
          "token array");
    if (kv) {
        CHECK_OK(lkv_gguf_arr_str(kv, 2, &s));
        CHECK(lkv_gguf_str_eq(s, "hello"), "token 2");
        CHECK_OK(lkv_gguf_arr_str(kv, 1, &s));
        CHECK(s.len == 0, "empty token");
        CHECK(lkv_gguf_arr_str(kv, 3, &s) == LKV_ERR_RANGE, "index past the end");
        CHECK(lkv_gguf_arr_i64(kv, 0, &i) == LKV_ERR_FORMAT, "strings as ints");
    }
    kv = lkv_gguf_find(g, "tokenizer.ggml.token_type");
    CHECK(kv != NULL, "token types");
    if (kv) {
        CHECK_OK(lkv_gguf_arr_i64(kv, 2, &i));
        CHECK(i == -7, "token type 2 = %lld", (long long)i);
        CHECK_OK(lkv_gguf_arr_f64(kv, 0, &d));
        CHECK(d == 3.0, "int array as f64");
        CHECK(lkv_gguf_arr_str(kv, 0, &s) == LKV_ERR_FORMAT, "ints as strings");
    }
    for (int k = 0; k < N_TINY; k++) {
        const tinfo *want = &tiny_tensors[k];
        const lkv_gguf_tensor *t = lkv_gguf_find_tensor(g, want->name);
        CHECK(t && t == lkv_gguf_tensor_at(g, (uint64_t)k), "find tensor %s", want->name);
        if (!t)
            continue;
        CHECK(t->type == (lkv_qtype)want->type && t->n_dims == (int)want->n_dims &&
                  t->nbytes == want->nbytes,
              "tensor %s info", want->name);
        for (int dd = 0; dd < 4; dd++)
            CHECK(t->ne[dd] == (dd < (int)want->n_dims ? (int64_t)want->ne[dd] : 1), "ne");
        CHECK(((const uint8_t *)t->data - b.p) % ALIGN == 0, "tensor %s aligned", want->name);
        uint8_t tmp[256];
        tensor_bytes(want, tmp);
        CHECK(memcmp(tmp, t->data, want->nbytes) == 0, "tensor %s bytes", want->name);
    }
    const lkv_gguf_tensor *t = lkv_gguf_find_tensor(g, "norm.weight");
    if (t) {
        float row[8];
        CHECK_OK(lkv_get_row(t->type, t->data, 8, 0, row));
        CHECK(row[0] == -1.0f && row[7] == 0.75f, "f32 tensor values");
    }
    CHECK(lkv_gguf_find_tensor(g, "nope") == NULL, "missing tensor");
    CHECK(lkv_gguf_tensor_at(g, N_TINY) == NULL && lkv_gguf_kv_at(g, 10) == NULL, "index bounds");
    lkv_gguf_close(g);
    lkv_gguf_close(NULL);

    /* the same through a file (mmap path) */
    const char *path = "test_gguf_tiny.gguf";
    FILE *fp = fopen(path, "wb");
    if (fp) {
        fwrite(b.p, 1, b.n, fp);
        fclose(fp);
        CHECK_OK(lkv_gguf_open(path, &g));
        if (g)
            CHECK(lkv_gguf_n_tensors(g) == N_TINY, "file: n_tensors");
        lkv_gguf_close(g);
        remove(path);
    }
    CHECK(lkv_gguf_open("/nonexistent/x.gguf", &g) == LKV_ERR_IO && g == NULL, "missing file");
    free(b.p);
}

static void test_malformed(void) {
    buf b = {0};
    for (int v = 1; v < V_COUNT; v++) {
        gen(&b, v);
        lkv_gguf *g = (lkv_gguf *)&b; /* must be reset to NULL on failure */
        int rc = lkv_gguf_open_memory(b.p, b.n, &g);
        CHECK(rc == LKV_ERR_FORMAT && g == NULL, "variant %s: rc %d (%s)", variant_name[v], rc,
              rc ? lkv_last_error() : "accepted");
        if (rc == 0)
            lkv_gguf_close(g);
        else if (getenv("LONGKV_TEST_VERBOSE"))
            printf("  %-18s -> %s\n", variant_name[v], lkv_last_error());
    }
    /* every truncation of the valid file */
    gen(&b, V_OK);
    size_t full = b.n;
    uint8_t *copy = malloc(full);
    memcpy(copy, b.p, full);
    int bad = 0;
    for (size_t n = 0; n < full; n++) {
        uint8_t *p = malloc(n ? n : 1); /* exact-size buffer: ASan sees any over-read */
        memcpy(p, copy, n);
        lkv_gguf *g = NULL;
        int rc = lkv_gguf_open_memory(p, n, &g);
        if (rc != LKV_ERR_FORMAT) {
            if (!bad)
                fprintf(stderr, "truncation to %zu bytes: rc %d\n", n, rc);
            bad++;
            lkv_gguf_close(g);
        }
        free(p);
    }
    CHECK(bad == 0, "%d of %zu truncations not rejected", bad, full);
    /* random byte flips: accepted or FORMAT, never anything else */
    lkv_rng r;
    lkv_rng_seed(&r, lkv_test_seed() ^ 0x99f);
    int others = 0, accepted = 0, trials = quick ? 500 : 5000;
    for (int k = 0; k < trials; k++) {
        uint8_t *p = malloc(full);
        memcpy(p, copy, full);
        int flips = 1 + (int)lkv_rng_below(&r, 4);
        for (int f = 0; f < flips; f++)
            p[lkv_rng_below(&r, full)] ^= (uint8_t)(1u << lkv_rng_below(&r, 8));
        lkv_gguf *g = NULL;
        int rc = lkv_gguf_open_memory(p, full, &g);
        if (rc == 0) {
            accepted++;
            /* whatever was accepted must be self-consistent */
            for (uint64_t i = 0; i < lkv_gguf_n_tensors(g); i++) {
                const lkv_gguf_tensor *t = lkv_gguf_tensor_at(g, i);
                if ((const uint8_t *)t->data < p ||
                    (const uint8_t *)t->data + t->nbytes > p + full)
                    others++;
            }
            lkv_gguf_close(g);
        } else if (rc != LKV_ERR_FORMAT) {
            others++;
        }
        free(p);
    }
    CHECK(others == 0, "%d byte-flip results were neither ok nor LKV_ERR_FORMAT", others);
    printf("byte flips: %d of %d accepted, the rest rejected\n", accepted, trials);
    free(copy);
    free(b.p);
    CHECK(lkv_gguf_open_memory(NULL, 0, NULL) == LKV_ERR_INVALID, "NULL out");
}

/* --------------------------------------------------------- the real model */

static int find_model(const char *rel, char *path, size_t cap) {
    const char *root = getenv("LONGKV_ROOT");
    const char *cands[] = {root, ".", "..", "../..", "/work/main"};
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        if (!cands[i])
            continue;
        snprintf(path, cap, "%s/%s", cands[i], rel);
        struct stat st;
        if (stat(path, &st) == 0)
            return 1;
    }
    return 0;
}

static void test_real_model(void) {
    char path[4096];
    if (!find_model("models/SmolLM2-135M-Instruct.Q4_1.gguf", path, sizeof path)) {
        printf("SmolLM2 model: skipped (models/SmolLM2-135M-Instruct.Q4_1.gguf not found; "
               "run scripts/get_model.sh)\n");
        return;
    }
    lkv_gguf *g = NULL;
    CHECK_OK(lkv_gguf_open(path, &g));
    if (!g)
        return;
    lkv_gguf_str s = {0};
    CHECK_OK(lkv_gguf_get_str(g, "general.architecture", &s));
    CHECK(lkv_gguf_str_eq(s, "llama"), "architecture '%.*s'", (int)s.len, s.ptr);
    int64_t v = 0;
    CHECK_OK(lkv_gguf_get_i64(g, "llama.block_count", &v));
    CHECK(v == 30, "block_count %lld", (long long)v);
    CHECK_OK(lkv_gguf_get_i64(g, "llama.embedding_length", &v));
    CHECK(v == 576, "embedding_length");
    const lkv_gguf_kv *kv = lkv_gguf_find(g, "tokenizer.ggml.tokens");
    CHECK(kv && kv->arr_n == 49152, "vocab");
    CHECK(lkv_gguf_n_tensors(g) == 272, "n_tensors %llu",
          (unsigned long long)lkv_gguf_n_tensors(g));
    int counts[LKV_Q_COUNT_] = {0};
    int finite = 1, checked = 0;
    float *row = lkv_malloc(49152 * sizeof(float));
    for (uint64_t i = 0; i < lkv_gguf_n_tensors(g); i++) {
        const lkv_gguf_tensor *t = lkv_gguf_tensor_at(g, i);
        counts[t->type]++;
        int64_t nrows = t->ne[1] * t->ne[2] * t->ne[3];
        int64_t step = quick ? 97 : 1;
        for (int64_t r = 0; r < nrows; r += step) {
            if (lkv_get_row(t->type, t->data, t->ne[0], r, row) < 0) {
                finite = 0;
                break;
            }
            for (int64_t c = 0; c < t->ne[0]; c++)
                if (!isfinite(row[c]))
                    finite = 0;
        }
        checked++;
    }
    CHECK(finite, "every tensor dequantizes to finite values");
    CHECK(counts[LKV_Q_Q4_1] == 210 && counts[LKV_Q_F32] == 61 && counts[LKV_Q_Q8_0] == 1,
          "tensor types: q4_1 %d, f32 %d, q8_0 %d", counts[LKV_Q_Q4_1], counts[LKV_Q_F32],
          counts[LKV_Q_Q8_0]);
    const lkv_gguf_tensor *t = lkv_gguf_find_tensor(g, "token_embd.weight");
    CHECK(t && t->type == LKV_Q_Q8_0 && t->ne[0] == 576 && t->ne[1] == 49152, "token_embd");
    /* a real weight matrix through lkv_matmul against the dequantized dot */
    t = lkv_gguf_find_tensor(g, "blk.0.ffn_down.weight");
    CHECK(t && t->type == LKV_Q_Q4_1 && t->ne[0] == 1536 && t->ne[1] == 576, "ffn_down");
    if (t) {
        lkv_rng r;
        lkv_rng_seed(&r, lkv_test_seed());
        float x[1536], y[576];
        lkv_test_fill_normal(&r, x, 1536, 1.0f);
        CHECK_OK(lkv_matmul(t->type, t->data, 576, 1536, x, 1, y, NULL, NULL));
        double worst = 0, ymax = 0;
        for (int rr = 0; rr < 576; rr++) {
            lkv_get_row(t->type, t->data, 1536, rr, row);
            double s2 = 0;
            for (int c = 0; c < 1536; c++)
                s2 += (double)row[c] * x[c];
            worst = fmax(worst, fabs(s2 - y[rr]));
            ymax = fmax(ymax, fabs(s2));
        }
        CHECK(worst / ymax < 0.02, "real ffn_down matmul rel err %.3g", worst / ymax);
    }
    lkv_free(row);
    printf("SmolLM2 model: %d tensors checked (q4_1 %d, q8_0 %d, f32 %d)\n", checked,
           counts[LKV_Q_Q4_1], counts[LKV_Q_Q8_0], counts[LKV_Q_F32]);
    lkv_gguf_close(g);
}

/* Gemma-3-270M (optional: scripts/get_model.sh --gemma): header, tensor types
 * (Q5_0, Q8_0, Q4_K, Q6_K, F32) and finite values; a Q4_K and a Q6_K weight
 * through lkv_matmul against the dequantized dot. */
static void test_gemma(void) {
    char path[4096];
    if (!find_model("models/gemma-3-270m-Q4_K_M.gguf", path, sizeof path)) {
        printf("Gemma model: skipped (run scripts/get_model.sh --gemma)\n");
        return;
    }
    lkv_gguf *g = NULL;
    CHECK_OK(lkv_gguf_open(path, &g));
    if (!g)
        return;
    lkv_gguf_str s = {0};
    CHECK_OK(lkv_gguf_get_str(g, "general.architecture", &s));
    CHECK(lkv_gguf_str_eq(s, "gemma3"), "gemma architecture");
    int64_t v = 0;
    CHECK_OK(lkv_gguf_get_i64(g, "gemma3.block_count", &v));
    CHECK(v == 18, "gemma block_count %lld", (long long)v);
    CHECK(lkv_gguf_n_tensors(g) == 236, "gemma n_tensors");
    int counts[LKV_Q_COUNT_] = {0}, finite = 1;
    float *row = lkv_malloc(4096 * sizeof(float));
    for (uint64_t i = 0; i < lkv_gguf_n_tensors(g); i++) {
        const lkv_gguf_tensor *t = lkv_gguf_tensor_at(g, i);
        counts[t->type]++;
        if (t->ne[0] > 4096) {
            finite = 0;
            continue;
        }
        int64_t nrows = t->ne[1] * t->ne[2] * t->ne[3];
        for (int64_t r = 0; r < nrows; r += quick ? 97 : 1) {
            if (lkv_get_row(t->type, t->data, t->ne[0], r, row) < 0) {
                finite = 0;
                break;
            }
            for (int64_t c = 0; c < t->ne[0]; c++)
                finite &= isfinite(row[c]) != 0;
        }
    }
    CHECK(finite, "every gemma tensor dequantizes to finite values");
    CHECK(counts[LKV_Q_Q5_0] == 81 && counts[LKV_Q_Q4_K] == 27 && counts[LKV_Q_Q6_K] == 9 &&
              counts[LKV_Q_Q8_0] == 10 && counts[LKV_Q_F32] == 109,
          "gemma tensor types");
    lkv_rng r;
    lkv_rng_seed(&r, lkv_test_seed() ^ 0x6e);
    for (uint64_t i = 0; i < lkv_gguf_n_tensors(g); i++) {
        const lkv_gguf_tensor *t = lkv_gguf_tensor_at(g, i);
        if (t->n_dims != 2 || t->ne[1] > 4096 ||
            (t->type != LKV_Q_Q4_K && t->type != LKV_Q_Q6_K && t->type != LKV_Q_Q5_0))
            continue;
        int64_t cols = t->ne[0], rows = t->ne[1];
        float *x = lkv_malloc((size_t)cols * sizeof(float));
        float *y = lkv_malloc((size_t)rows * sizeof(float));
        lkv_test_fill_normal(&r, x, (size_t)cols, 1.0f);
        CHECK_OK(lkv_matmul(t->type, t->data, rows, cols, x, 1, y, NULL, NULL));
        double worst = 0, ymax = 0;
        for (int64_t rr = 0; rr < rows; rr++) {
            lkv_get_row(t->type, t->data, cols, rr, row);
            double d = 0;
            for (int64_t c = 0; c < cols; c++)
                d += (double)row[c] * x[c];
            worst = fmax(worst, fabs(d - y[rr]));
            ymax = fmax(ymax, fabs(d));
        }
        CHECK(worst / ymax < 0.03, "gemma %.*s matmul rel err %.3g", (int)t->name.len,
              t->name.ptr, worst / ymax);
        lkv_free(x);
        lkv_free(y);
        counts[t->type] = -1000; /* one tensor per type */
        if (counts[LKV_Q_Q4_K] < 0 && counts[LKV_Q_Q6_K] < 0 && counts[LKV_Q_Q5_0] < 0)
            break;
    }
    lkv_free(row);
    printf("Gemma model: 236 tensors checked\n");
    lkv_gguf_close(g);
}

/* ------------------------------------------------------------- corpus */

static int write_corpus(const char *dir) {
    buf b = {0};
    char path[4096];
    for (int v = 0; v < V_COUNT; v++) {
        gen(&b, v);
        snprintf(path, sizeof path, "%s/%02d_%s.gguf", dir, v, variant_name[v]);
        FILE *f = fopen(path, "wb");
        if (!f)
            return 1;
        fwrite(b.p, 1, b.n, f);
        fclose(f);
    }
    gen(&b, V_OK);
    size_t cuts[] = {3, 23, 40, b.n / 2, b.n - 70, b.n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        snprintf(path, sizeof path, "%s/trunc_%zu.gguf", dir, cuts[i]);
        FILE *f = fopen(path, "wb");
        if (!f)
            return 1;
        fwrite(b.p, 1, cuts[i], f);
        fclose(f);
    }
    free(b.p);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write-corpus"))
        return write_corpus(argv[2]);
    quick = getenv("LONGKV_TEST_QUICK") && atoi(getenv("LONGKV_TEST_QUICK"));
    lkv_test_seed();
    size_t live = lkv_alloc_count_live();
    test_valid();
    test_malformed();
    CHECK(lkv_alloc_count_live() == live, "no leaked allocations (%zu live, %zu before)",
          lkv_alloc_count_live(), live);
    test_real_model();
    test_gemma();
    return lkv_test_finish("test_gguf");
}
