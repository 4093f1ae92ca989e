/* quant_blocks.h -- byte layouts of the GGML weight blocks and of our int8
 * activation blocks (internal to the kernels layer).
 *
 * Weight blocks follow the GGML/GGUF definitions (all little-endian, fp16 as
 * IEEE half bits). Element j of a block is written x[j]:
 *   Q4_0  {d:f16, qs[16]}          x[j] = d*((qs[j]&15)-8), x[j+16] = d*((qs[j]>>4)-8)
 *   Q4_1  {d:f16, m:f16, qs[16]}   x[j] = d*(qs[j]&15)+m,   x[j+16] = d*(qs[j]>>4)+m
 *   Q5_0  {d:f16, qh[4], qs[16]}   5th bit of x[j] is bit j of qh (u32), of x[j+16]
 *                                  bit j+16; value d*(q-16)
 *   Q5_1  {d, m:f16, qh[4], qs[16]} as Q5_0 with d*q+m
 *   Q8_0  {d:f16, qs[32] i8}       x[j] = d*qs[j]
 *   Q4_K  {d, dmin:f16, scales[12], qs[128]}: 8 sub-blocks of 32 with 6-bit
 *         scale/min packed in scales[12]; nibbles: bytes 32c..32c+31 hold
 *         sub-block 2c (low nibbles) and 2c+1 (high nibbles).
 *         x = d*sc*q - dmin*m.
 *   Q6_K  {ql[128], qh[64], scales[16] i8, d:f16}: 16 sub-blocks of 16; per
 *         half of 128: x[l+32k] from ql/qh as in dequant_q6_k (ref).
 * The sizes are checked with static asserts in quant.c.
 */
#ifndef LKV_KERNELS_QUANT_BLOCKS_H
#define LKV_KERNELS_QUANT_BLOCKS_H

#include <stdint.h>

#define LKV_QK 32    /* elements per block of the 32-formats */
#define LKV_QK_K 256 /* elements per super-block of the k-quants */

typedef struct { uint16_t d; uint8_t qs[16]; } lkv_block_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[16]; } lkv_block_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } lkv_block_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; } lkv_block_q5_1;
typedef struct { uint16_t d; int8_t qs[32]; } lkv_block_q8_0;
typedef struct { uint16_t d, s; int8_t qs[32]; } lkv_block_q8_1;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } lkv_block_q4_k;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } lkv_block_q6_k;
typedef struct { float d; int8_t qs[256]; int16_t bsums[16]; } lkv_block_q8_k;

/* Reference activation blocks (also used by the AVX2 kernels).
 * For the 32-formats: d = max|x|/127, q = nearbyint(x*127/max|x|), s = d*sum(q). */
typedef struct { float d, s; int8_t qs[32]; } lkv_act_q8;
/* For the k-quants (256): bsums[i] = sum of q over elements 16i..16i+15. */
typedef struct { float d; int16_t bsums[16]; int8_t qs[256]; } lkv_act_q8k;

/* Reference activation quantizers into the layouts above (ref/quant_ref.c);
 * the AVX2 kernels read the same layouts. */
void lkv_qact_q8_ref(const float *x, int64_t cols, void *act);
void lkv_qact_q8k_ref(const float *x, int64_t cols, void *act);

/* Unpacks the 6-bit scale and min of sub-block j (0..7) of a Q4_K block. */
static inline void lkv_q4k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

#endif
