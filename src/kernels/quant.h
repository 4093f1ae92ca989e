/* quant.h -- weight tensor formats (GGML numbering), their traits, and the
 * products the model runtime needs. One row of traits per format; every block
 * struct has a static size check (see quant.c).
 *
 * Matrix convention: W has `rows` rows of `cols` elements each, stored row after
 * row in format `type` (cols must be a multiple of the block size). For the
 * integer formats the activations are quantized to int8 per block of 32 (Q8_0
 * style, or Q8_K for the k-quants) and the dot products run in integers.
 */
#ifndef LKV_KERNELS_QUANT_H
#define LKV_KERNELS_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "longkv.h"

typedef enum lkv_qtype {
    LKV_Q_F32 = 0,
    LKV_Q_F16 = 1,
    LKV_Q_Q4_0 = 2,
    LKV_Q_Q4_1 = 3,
    LKV_Q_Q5_0 = 6,
    LKV_Q_Q5_1 = 7,
    LKV_Q_Q8_0 = 8,
    LKV_Q_Q8_1 = 9,
    LKV_Q_Q2_K = 10,
    LKV_Q_Q3_K = 11,
    LKV_Q_Q4_K = 12,
    LKV_Q_Q5_K = 13,
    LKV_Q_Q6_K = 14,
    LKV_Q_Q8_K = 15,
    LKV_Q_BF16 = 30,
    LKV_Q_COUNT_ = 40
} lkv_qtype;

typedef struct lkv_qtraits {
    const char *name;      /* "q4_1" ... ; NULL for types this build does not know */
    int block;             /* elements per block */
    size_t block_bytes;    /* bytes per block */
    int supported;         /* dequantize + matmul implemented */
} lkv_qtraits;

/* Traits of a type; a zeroed row (name NULL) for unknown / out-of-range types. */
const lkv_qtraits *lkv_qtype_traits(int type);

/* Bytes of a row of n elements; 0 if n is not a multiple of the block or the
 * type is unknown (callers treat 0 as an error). */
size_t lkv_qtype_row_bytes(int type, int64_t n);

/* Reference dequantization of n elements (one or more whole blocks). */
int lkv_dequantize(int type, const void *src, float *dst, int64_t n);

/* y[t][r] = sum_c W[r][c] * x[t][c] for t < n_tok (x: [n_tok][cols] f32,
 * y: [n_tok][rows] f32). Uses the active kernel table and the thread pool.
 * Needs scratch for the quantized activations: it allocates when `scratch` is
 * NULL, else uses scratch (size from lkv_matmul_scratch_bytes; 0 for the
 * float formats; no alignment needed, 64 bytes is best). Prefill (n_tok > 1)
 * is blocked over tokens inside the kernels, so pass all tokens in one call.
 * Thread-safe for distinct y / scratch, but a pool runs one call at a time.
 * Returns 0, LKV_ERR_INVALID (shape, NULL), LKV_ERR_UNSUPPORTED (type) or
 * LKV_ERR_NOMEM. */
int lkv_matmul(int type, const void *w, int64_t rows, int64_t cols, const float *x,
               int n_tok, float *y, void *scratch, lkv_threadpool *tp);
size_t lkv_matmul_scratch_bytes(int type, int64_t cols, int n_tok);

/* Copies row `r` of W, dequantized, into dst[cols] (embedding lookup). */
int lkv_get_row(int type, const void *w, int64_t cols, int64_t r, float *dst);

/* ------------------------------------------- internal: kernels and tests
 * (extensions of the interface above; the signatures above are unchanged) */

/* Elements per activation block of the integer product for weights of `type`
 * (32, or 256 for the k-quants); 0 when the product runs in float
 * (F32/F16/BF16) or the type is unsupported. */
int lkv_qact_block(int type);

/* The reference activation quantization every ISA reproduces exactly: per
 * block of B = lkv_qact_block(type) elements, amax = max|x|, d = amax/127 and
 * q[i] = nearbyint(x[i] * (127/amax)) (round half to even; all zero when amax
 * is 0). Writes q[n] and d[n/B]; n must be a multiple of B. */
void lkv_quantize_act_ref(int type, const float *x, int64_t n, int8_t *q, float *d);

/* Bytes of one quantized activation row of `cols` elements, in any kernel's
 * layout (an upper bound, multiple of 64). */
size_t lkv_qact_row_bytes(int64_t cols);

struct lkv_kernel_table;
/* lkv_matmul with an explicit kernel table (tests compare every ISA level). */
int lkv_matmul_with(const struct lkv_kernel_table *kt, int type, const void *w, int64_t rows,
                    int64_t cols, const float *x, int n_tok, float *y, void *scratch,
                    lkv_threadpool *tp);

#endif
