/* format.c -- the page format table: one row of traits per format.
 *
 * Plain formats store K and V as [page_tokens][d] rows of f32, f16 or bf16,
 * exactly the layout the attention kernels read through lkv_kv_run. Quantized
 * formats (int8 per-token scale, KIVI int4/int2 with per-channel key groups)
 * will be added as rows here with their aux arrays; the pool and the sequence
 * code only see the byte counts.
 */
#include <string.h>

#include "common/fp16.h"
#include "kv/kv.h"

static size_t plain_none(int pt, int d) {
    (void)pt;
    (void)d;
    return 0;
}

#define PLAIN_BYTES(name, esz)                                                   \
    static size_t name(int pt, int d) { return (size_t)pt * (size_t)d * (esz); }
PLAIN_BYTES(f32_bytes, 4)
PLAIN_BYTES(half_bytes, 2)

static void f32_write(const kv_page_ptrs *pg, int pt, int d, int slot, int n, const float *k,
                      size_t ks, const float *v, size_t vs) {
    (void)pt;
    float *K = (float *)pg->k + (size_t)slot * d, *V = (float *)pg->v + (size_t)slot * d;
    for (int t = 0; t < n; t++) {
        memcpy(K + (size_t)t * d, k + t * ks, (size_t)d * 4);
        memcpy(V + (size_t)t * d, v + t * vs, (size_t)d * 4);
    }
}

static void f32_read(const kv_page_ptrs *pg, int pt, int d, int slot, int n, float *k, float *v) {
    (void)pt;
    size_t off = (size_t)slot * d, cnt = (size_t)n * d * 4;
    if (k)
        memcpy(k, (const float *)pg->k + off, cnt);
    if (v)
        memcpy(v, (const float *)pg->v + off, cnt);
}

static void f16_write(const kv_page_ptrs *pg, int pt, int d, int slot, int n, const float *k,
                      size_t ks, const float *v, size_t vs) {
    (void)pt;
    uint16_t *K = (uint16_t *)pg->k + (size_t)slot * d, *V = (uint16_t *)pg->v + (size_t)slot * d;
    for (int t = 0; t < n; t++)
        for (int c = 0; c < d; c++) {
            K[(size_t)t * d + c] = lkv_float_to_half(k[t * ks + c]);
            V[(size_t)t * d + c] = lkv_float_to_half(v[t * vs + c]);
        }
}

static void f16_read(const kv_page_ptrs *pg, int pt, int d, int slot, int n, float *k, float *v) {
    (void)pt;
    size_t off = (size_t)slot * d, cnt = (size_t)n * d;
    const uint16_t *K = (const uint16_t *)pg->k + off, *V = (const uint16_t *)pg->v + off;
    for (size_t i = 0; i < cnt; i++) {
        if (k)
            k[i] = lkv_half_to_float(K[i]);
        if (v)
            v[i] = lkv_half_to_float(V[i]);
    }
}

static void bf16_write(const kv_page_ptrs *pg, int pt, int d, int slot, int n, const float *k,
                       size_t ks, const float *v, size_t vs) {
    (void)pt;
    uint16_t *K = (uint16_t *)pg->k + (size_t)slot * d, *V = (uint16_t *)pg->v + (size_t)slot * d;
    for (int t = 0; t < n; t++)
        for (int c = 0; c < d; c++) {
            K[(size_t)t * d + c] = lkv_float_to_bf16(k[t * ks + c]);
            V[(size_t)t * d + c] = lkv_float_to_bf16(v[t * vs + c]);
        }
}

static void bf16_read(const kv_page_ptrs *pg, int pt, int d, int slot, int n, float *k, float *v) {
    (void)pt;
    size_t off = (size_t)slot * d, cnt = (size_t)n * d;
    const uint16_t *K = (const uint16_t *)pg->k + off, *V = (const uint16_t *)pg->v + off;
    for (size_t i = 0; i < cnt; i++) {
        if (k)
            k[i] = lkv_bf16_to_float(K[i]);
        if (v)
            v[i] = lkv_bf16_to_float(V[i]);
    }
}

static const kv_format formats[LKV_DTYPE_BF16 + 1] = {
    {"f32", LKV_DTYPE_F32, LKV_DTYPE_F32, f32_bytes, f32_bytes, plain_none, plain_none, 4,
     f32_write, f32_read, NULL, NULL, 0},
    {"f16", LKV_DTYPE_F16, LKV_DTYPE_F16, half_bytes, half_bytes, plain_none, plain_none, 2,
     f16_write, f16_read, NULL, NULL, 0},
    {"bf16", LKV_DTYPE_BF16, LKV_DTYPE_BF16, half_bytes, half_bytes, plain_none, plain_none, 2,
     bf16_write, bf16_read, NULL, NULL, 0},
};

const kv_format *kv_format_get(int tag) {
    if (tag < 0 || tag >= LKV_PAGE_FORMAT_COUNT)
        return NULL;
    if (tag > LKV_DTYPE_BF16)
        return kv_format_quant(tag); /* int8 / KIVI rows: format_quant.c */
    return &formats[tag];
}
