/* kernels.h -- the kernel table: one function pointer per op, filled once.
 *
 * Order of filling (BLIS style): the reference kernels in ref/ first (they are
 * the specification), then whatever the AVX2 file provides, then AVX-512, up to
 * the active ISA level (CPU level, lowered by LONGKV_ISA=ref|avx2|avx512|avx512vnni).
 * Each ISA lives in its own file compiled with its own flags; no #if ladders.
 */
#ifndef LKV_KERNELS_H
#define LKV_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "longkv.h"
#include "kernels/quant.h"

typedef struct lkv_kernel_table lkv_kernel_table;

/* ------------------------------------------------------------- attention */

/* A block of query rows that share one KV head, with the online-softmax state
 * they carry between calls. The unit of work of every attention kernel.
 * Row r is query token i = r / G, group head g = r % G. */
typedef struct lkv_attn_block {
    int d;                 /* head dim */
    int G;                 /* query heads per KV head */
    int n_rows;            /* n_tokens * G */
    const float *q;        /* row r at q + (r / G) * q_stride + (r % G) * d */
    size_t q_stride;       /* elements between consecutive query tokens */
    const int32_t *q_pos;  /* [n_rows / G] query positions (ascending) */
    float scale;           /* logit scale (already resolved, > 0) */
    float softcap;         /* 0 = off */
    int causal, window, n_sink;
    /* online-softmax state, natural-log domain, one entry per row */
    float *m;              /* [n_rows] running max of (capped, scaled) logits; -INF initially */
    float *l;              /* [n_rows] running sum of exp(logit - m); 0 initially */
    float *acc;            /* [n_rows][d] running sum of exp(logit - m) * v; 0 initially */
    /* Elements between consecutive K (and V) rows of every run in the call:
     * key t of a run is at run->k + t * kv_stride. 0 means d (rows packed
     * densely, the lkv_kv_run default). The contiguous-tensor driver passes its
     * token_stride here, so token-major [n][Hk][d] K/V is read in place. */
    size_t kv_stride;
} lkv_attn_block;

/* Largest head dim any kernel must handle (lkv_attn_params.head_dim <= this). */
#define LKV_ATTN_MAX_HEAD_DIM 256

/* Visibility of key position pk to query position pq (the one definition). */
static inline int lkv_attn_visible(const lkv_attn_block *b, int32_t pq, int32_t pk) {
    if (b->causal && pk > pq)
        return 0;
    if (b->window > 0 && (int64_t)pq - pk >= b->window && pk >= b->n_sink)
        return 0;
    return 1;
}

/* Folds every run (all of the kernel's dtype) into the block's state. */
typedef void (*lkv_attn_block_fn)(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);

/* Observer pass: with the final lse of each row, ADDS exp(logit - lse) summed
 * over the block's rows to runs[i].obs[t] (runs with obs == NULL are skipped). */
typedef void (*lkv_attn_observe_fn)(const lkv_attn_block *b, const float *lse,
                                    const lkv_kv_run *runs, int n_runs);

/* The reference kernels (ref/attn.c), one per K/V dtype. */
void lkv_attn_f32_ref(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_f16_ref(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_bf16_ref(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_f32_ref(const lkv_attn_block *b, const float *lse, const lkv_kv_run *runs,
                              int n_runs);
void lkv_attn_observe_f16_ref(const lkv_attn_block *b, const float *lse, const lkv_kv_run *runs,
                              int n_runs);
void lkv_attn_observe_bf16_ref(const lkv_attn_block *b, const float *lse,
                               const lkv_kv_run *runs, int n_runs);

/* Quantized K/V (Q8, KIVI4, KIVI2; layouts in kv_quant.h): reference kernels
 * (ref/attn_quant.c) and the SIMD ones (x86/{avx2,avx512}/attn_quant*.c). */
void lkv_attn_q8_ref(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_kivi4_ref(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_kivi2_ref(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_q8_ref(const lkv_attn_block *b, const float *lse, const lkv_kv_run *runs,
                             int n_runs);
void lkv_attn_observe_kivi4_ref(const lkv_attn_block *b, const float *lse,
                                const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_kivi2_ref(const lkv_attn_block *b, const float *lse,
                                const lkv_kv_run *runs, int n_runs);
void lkv_kernels_init_attn_quant_avx2(lkv_kernel_table *t);   /* x86/avx2/attn_quant.c */
void lkv_kernels_init_attn_kivi_avx2(lkv_kernel_table *t);    /* x86/avx2/attn_kivi.c */
void lkv_kernels_init_attn_quant_avx512(lkv_kernel_table *t); /* x86/avx512/attn_quant.c */
void lkv_kernels_init_attn_kivi_avx512(lkv_kernel_table *t);  /* x86/avx512/attn_kivi.c */
void lkv_kernels_init_attn_kivi_avx512vnni(lkv_kernel_table *t); /* the same, VNNI build */

/* -------------------------------------------------------------- roofline */

/* Inner loops of the machine-limit measurements (roofline.c drives them).
 * read_sum: returns the sum of x[0..n) (any summation order; the point is to
 *   stream every byte through the core as fast as the ISA allows). n >= 0.
 * fma_loop: runs iters rounds of independent multiply-add chains on registers
 *   (enough chains to cover FMA latency x throughput) and stores a value that
 *   depends on every chain in sink[0], so nothing is optimised away. Returns the
 *   floating-point operations done (2 per FMA lane). iters >= 1. */
typedef double (*lkv_read_sum_fn)(const float *x, size_t n);
typedef double (*lkv_fma_loop_fn)(float *sink, long iters);

double lkv_read_sum_ref(const float *x, size_t n);        /* ref/roofline.c */
double lkv_fma_loop_ref(float *sink, long iters);
double lkv_read_sum_avx2(const float *x, size_t n);       /* x86/avx2/roofline.c */
double lkv_fma_loop_avx2(float *sink, long iters);
double lkv_read_sum_avx512(const float *x, size_t n);     /* x86/avx512/roofline.c */
double lkv_fma_loop_avx512(float *sink, long iters);

/* ------------------------------------------------- weight products (quant.h) */

/* Quantizes one activation row x[cols] into the kernel's own layout at act
 * (at most lkv_qact_row_bytes(cols) bytes, 64-byte aligned). The int8 values
 * and scales are those of lkv_quantize_act_ref; only the arrangement differs. */
typedef void (*lkv_qact_fn)(const float *x, int64_t cols, void *act);

/* y[t*ldy + r] = dot(W row r, activation row t) for r in [r0, r1), t < n_tok.
 * W rows are w_row_bytes apart; activation row t is at act + t*act_stride (the
 * quantize layout, or f32 x when quantize is NULL). */
typedef void (*lkv_qmm_rows_fn)(const void *w, size_t w_row_bytes, int64_t cols, int64_t r0,
                                int64_t r1, const void *act, size_t act_stride, int n_tok,
                                float *y, size_t ldy);

typedef struct lkv_qmm_kernel {
    lkv_qact_fn quantize;  /* NULL: the rows function takes f32 activations */
    lkv_qmm_rows_fn rows;  /* NULL: type not supported */
    lkv_isa isa;           /* which ISA provided the pair */
    const char *variant;   /* e.g. "avx512vnni"; NULL = lkv_isa_name(isa) */
} lkv_qmm_kernel;

/* ---------------------------------------------------------------- table */

struct lkv_kernel_table {
    lkv_attn_block_fn attn[LKV_DTYPE_COUNT_];
    lkv_attn_observe_fn attn_observe[LKV_DTYPE_COUNT_];
    lkv_isa attn_isa[LKV_DTYPE_COUNT_];        /* which ISA provided each entry */
    lkv_isa attn_observe_isa[LKV_DTYPE_COUNT_];
    lkv_read_sum_fn read_sum;                   /* roofline: streaming read */
    lkv_fma_loop_fn fma_loop;                   /* roofline: FMA peak */
    lkv_isa read_sum_isa, fma_loop_isa;
    /* model-layer ops (matmul, dequant...) are appended here by later work */
    lkv_qmm_kernel qmm[LKV_Q_COUNT_];          /* weight products, by lkv_qtype */
};

/* The active table (initialised on first use; thread-safe). */
const lkv_kernel_table *lkv_kernels(void);

/* Per-ISA fillers: each overrides the entries it implements. */
void lkv_kernels_init_ref(lkv_kernel_table *t);
void lkv_kernels_init_avx2(lkv_kernel_table *t);
void lkv_kernels_init_avx512(lkv_kernel_table *t);
void lkv_kernels_init_avx512vnni(lkv_kernel_table *t); /* x86/avx512vnni/init.c */
/* Weight-product fillers (called by the ref / avx2 / avx512 fillers above). */
void lkv_kernels_init_quant_ref(lkv_kernel_table *t);
void lkv_kernels_init_quant_avx2(lkv_kernel_table *t);
void lkv_kernels_init_quant_avx512vnni(lkv_kernel_table *t);

/* Builds a table for exactly this level (clamped to the CPU), e.g. for tests
 * that compare every ISA against the reference. */
void lkv_kernels_build(lkv_kernel_table *t, lkv_isa level);

#endif
