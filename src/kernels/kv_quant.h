/* kv_quant.h -- the quantized K/V formats (int8 per token, KIVI 4/2-bit):
 * byte layouts, encoders and the reference decoder.
 *
 * The layouts are specified in include/longkv.h (lkv_dtype). In short, for
 * head dim d and b bits (KIVI):
 *   Q8     K, V rows  [d] int8,               aux [n] half scale per row
 *   KIVIb  K, V rows  [row_bytes] packed codes (blocks of 128/b channels in 16
 *                     bytes; byte j holds channel 16*i + j in bits [b*i, b*i+b))
 *          k_aux      [2][d] half: scale per channel, then min per channel
 *                     (one key group = the run's page)
 *          v_aux      [n][ceil(d/32)][2] half: (scale, min) per token and group
 *
 * Rounding of the stored halves is directed so that every code lands in range
 * and the round-trip error of an element is at most half its (stored) scale:
 * mins round down, scales round up.
 */
#ifndef LKV_KERNELS_KV_QUANT_H
#define LKV_KERNELS_KV_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "longkv.h"

#define LKV_KIVI_VGROUP 32 /* value channels per (scale, min) pair */

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
    int blk = 128 / b; /* channels per 16-byte block */
    return (size_t)16 * (size_t)((d + blk - 1) / blk);
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

/* Code of channel c in a packed KIVI row. */
static inline int lkv_kvq_code(const uint8_t *row, int bits, int c) {
    int blk = 128 / bits, base = c / blk, in = c % blk;
    int byte = in % 16, i = in / 16;
    return (row[(size_t)base * 16 + byte] >> (bits * i)) & ((1 << bits) - 1);
}

/* Largest half <= x, smallest half >= x (finite x inside the half range). */
uint16_t lkv_kvq_half_down(float x);
uint16_t lkv_kvq_half_up(float x);

/* Q8: one row x[d] -> codes[d], *scale (half). */
void lkv_kvq_encode_q8_row(const float *x, int d, int8_t *codes, uint16_t *scale);

/* KIVI keys: n rows (row t at k + t*ks) -> per-channel scale/min over the n
 * rows in aux [2][d] and codes [n][row_bytes]. */
void lkv_kvq_encode_kivi_keys(int bits, int d, int n, const float *k, size_t ks, uint8_t *codes,
                              uint16_t *aux);

/* KIVI values: one row v[d] -> codes [row_bytes], aux [ceil(d/32)][2]. */
void lkv_kvq_encode_kivi_vrow(int bits, int d, const float *v, uint8_t *codes, uint16_t *aux);

/* Decodes tokens [t0, t0 + n) of a quantized run (pointers as in lkv_kv_run,
 * pointing at token 0) to f32 rows k_out, v_out [n][d] (either may be NULL). */
void lkv_kvq_decode(lkv_dtype t, int d, const void *k, const void *k_aux, const void *v,
                    const void *v_aux, int t0, int n, float *k_out, float *v_out);

#endif
