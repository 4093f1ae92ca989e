/* kv_quant.h -- the quantized K/V formats (int8 per token, KIVI 4/2-bit):
 * byte layouts, encoders and the reference decoder.
 *
 * The layouts are specified in include/longkv.h (lkv_dtype). In short, for
 * head dim d and b bits (KIVI):
 *   Q8     K, V rows  [d] int8,               aux [n] half scale per row
 *   KIVIb  tiles of 16 tokens (a run of n tokens has ceil(n/16) whole tiles;
 *          the slots past n hold code 0 and value scale/min 0), P = 32/b codes
 *          per 32-bit word, C = d rounded up to a multiple of P (keys) --
 *          row_bytes = b*C/8 bytes per token, 16*row_bytes per tile:
 *          K tile     [C/P][16] words: word (j, i) holds channels j*P + m of
 *                     token i in bits [b*m, b*m + b), so a vector of 16 words
 *                     is 16 tokens (one lane each) x P channels
 *          V tile     [16/P][C] words: word (h, c) holds channel c of tokens
 *                     h*P + m in bits [b*m, b*m + b), so a vector of 16 words
 *                     is 16 channels x P tokens (channels past d: code 0)
 *          k_aux      [2][d] half: scale per channel, then min per channel
 *                     (one key group = the run's page)
 *          v_aux      per tile [ceil(d/32)][2][16] half: (scale, min) of each
 *                     (token, group of 32 channels), 16 tokens contiguous
 *
 * Rounding of the stored halves is directed so that every code lands in range
 * and the round-trip error of an element is at most half its (stored) scale:
 * mins round down, scales round up.
 */
#ifndef LKV_KERNELS_KV_QUANT_H
#define LKV_KERNELS_KV_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "longkv.h"

#define LKV_KIVI_VGROUP 32 /* value channels per (scale, min) pair */

#define LKV_KVQ_TILE 16   /* tokens per KIVI tile */

static inline int lkv_kvq_is_quant(lkv_dtype t) {
    return t == LKV_DTYPE_Q8 || t == LKV_DTYPE_KIVI4 || t == LKV_DTYPE_KIVI2;
}

/* Bits per code of a KIVI dtype (0 for others). */
static inline int lkv_kvq_bits(lkv_dtype t) {
    return t == LKV_DTYPE_KIVI4 ? 4 : t == LKV_DTYPE_KIVI2 ? 2 : 0;
}

/* Value groups of a row. */
static inline int lkv_kvq_vgroups(int d) { return (d + LKV_KIVI_VGROUP - 1) / LKV_KIVI_VGROUP; }

/* Bytes of one K (or V) code row. */
static inline size_t lkv_kvq_row_bytes(lkv_dtype t, int d) {
    if (t == LKV_DTYPE_Q8)
        return (size_t)d;
    int b = lkv_kvq_bits(t);
    if (!b)
        return 0;
    int P = 32 / b; /* codes per word */
    return (size_t)b * (size_t)((d + P - 1) / P * P) / 8;
}

/* Tokens a run of n tokens occupies: Q8 n, KIVI whole tiles. */
static inline int lkv_kvq_slots(lkv_dtype t, int n) {
    return lkv_kvq_bits(t) ? (n + LKV_KVQ_TILE - 1) / LKV_KVQ_TILE * LKV_KVQ_TILE : n;
}

/* Bytes of k_aux / v_aux per token (what a sub-run skips per token). */
static inline size_t lkv_kvq_kaux_row_bytes(lkv_dtype t, int d) {
    (void)d;
    return t == LKV_DTYPE_Q8 ? 2 : 0;
}
static inline size_t lkv_kvq_vaux_row_bytes(lkv_dtype t, int d) {
    if (t == LKV_DTYPE_Q8)
        return 2;
    return lkv_kvq_bits(t) ? (size_t)4 * (size_t)lkv_kvq_vgroups(d) : 0;
}
/* Bytes of k_aux that do not depend on the token count (KIVI: [2][d] halves). */
static inline size_t lkv_kvq_kaux_fixed_bytes(lkv_dtype t, int d) {
    return lkv_kvq_bits(t) ? (size_t)4 * (size_t)d : 0;
}

/* Byte offsets (from the run's token 0) of the word holding the code of
 * (token t, channel c), and the code's shift in it; KIVI layouts above. */
static inline size_t lkv_kvq_kword(int bits, int d, int t, int c, int *shift) {
    const int P = 32 / bits;
    const size_t tile = (size_t)(t / LKV_KVQ_TILE) * LKV_KVQ_TILE *
                        lkv_kvq_row_bytes(bits == 4 ? LKV_DTYPE_KIVI4 : LKV_DTYPE_KIVI2, d);
    *shift = bits * (c % P);
    return tile + 4 * ((size_t)(c / P) * LKV_KVQ_TILE + (size_t)(t % LKV_KVQ_TILE));
}
static inline size_t lkv_kvq_vword(int bits, int d, int t, int c, int *shift) {
    const int P = 32 / bits, i = t % LKV_KVQ_TILE;
    const size_t rb = lkv_kvq_row_bytes(bits == 4 ? LKV_DTYPE_KIVI4 : LKV_DTYPE_KIVI2, d);
    const size_t tile = (size_t)(t / LKV_KVQ_TILE) * LKV_KVQ_TILE * rb;
    *shift = bits * (i % P);
    return tile + 4 * ((size_t)(i / P) * (rb * 8 / (size_t)bits) + (size_t)c);
}
/* Half index in v_aux of the scale (which 0) or min (which 1) of (token t, group g). */
static inline size_t lkv_kvq_vaux_index(int d, int t, int g, int which) {
    const int ng = lkv_kvq_vgroups(d);
    return (size_t)(t / LKV_KVQ_TILE) * LKV_KVQ_TILE * 2 * (size_t)ng +
           ((size_t)g * 2 + (size_t)which) * LKV_KVQ_TILE + (size_t)(t % LKV_KVQ_TILE);
}

static inline int lkv_kvq_get(const void *base, size_t off, int shift, int bits) {
    uint32_t w;
    memcpy(&w, (const uint8_t *)base + off, 4);
    return (int)((w >> shift) & ((1u << bits) - 1));
}
static inline void lkv_kvq_put(void *base, size_t off, int shift, int bits, int code) {
    uint32_t w, m = ((1u << bits) - 1) << shift;
    memcpy(&w, (uint8_t *)base + off, 4);
    w = (w & ~m) | (((uint32_t)code << shift) & m);
    memcpy((uint8_t *)base + off, &w, 4);
}
/* Key / value code of (token t, channel c) of a KIVI run at k / v. */
static inline int lkv_kvq_kcode(const void *k, int bits, int d, int t, int c) {
    int sh;
    size_t off = lkv_kvq_kword(bits, d, t, c, &sh);
    return lkv_kvq_get(k, off, sh, bits);
}
static inline int lkv_kvq_vcode(const void *v, int bits, int d, int t, int c) {
    int sh;
    size_t off = lkv_kvq_vword(bits, d, t, c, &sh);
    return lkv_kvq_get(v, off, sh, bits);
}

/* Largest half <= x, smallest half >= x (finite x inside the half range). */
uint16_t lkv_kvq_half_down(float x);
uint16_t lkv_kvq_half_up(float x);

/* Q8: one row x[d] -> codes[d], *scale (half). */
void lkv_kvq_encode_q8_row(const float *x, int d, int8_t *codes, uint16_t *scale);

/* KIVI keys: n rows (row t at k + t*ks) -> per-channel scale/min over the n
 * rows in aux [2][d] and the codes of tokens 0..n-1 of the run at codes
 * (whole tiles: lkv_kvq_slots(n) * row_bytes bytes, all written). */
void lkv_kvq_encode_kivi_keys(int bits, int d, int n, const float *k, size_t ks, uint8_t *codes,
                              uint16_t *aux);

/* KIVI values: one row v[d] -> the codes and (scale, min) pairs of token t
 * of the run at codes / aux (other tokens' bits untouched). */
void lkv_kvq_encode_kivi_vrow(int bits, int d, const float *v, int t, uint8_t *codes,
                              uint16_t *aux);

/* Decodes tokens [t0, t0 + n) of a quantized run (pointers as in lkv_kv_run,
 * pointing at token 0) to f32 rows k_out, v_out [n][d] (either may be NULL). */
void lkv_kvq_decode(lkv_dtype t, int d, const void *k, const void *k_aux, const void *v,
                    const void *v_aux, int t0, int n, float *k_out, float *v_out);

#endif
