/* kernels.h -- the kernel table: one function pointer per op, filled once.
 *
 * Order of filling (BLIS style): the reference kernels in ref/ first (they are
 * the specification), then whatever the AVX2 file provides, then AVX-512, up to
 * the active ISA level (CPU level, lowered by LONGKV_ISA=ref|avx2|avx512).
 * Each ISA lives in its own file compiled with its own flags; no #if ladders.
 */
#ifndef LKV_KERNELS_H
#define LKV_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "longkv.h"

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
} lkv_attn_block;

/* Visibility of key position pk to query position pq (the one definition). */
static inline int lkv_attn_visible(const lkv_attn_block *b, int32_t pq, int32_t pk) {
    if (b->causal && pk > pq)
        return 0;
    if (b->window > 0 && pq - pk >= b->window && pk >= b->n_sink)
        return 0;
    return 1;
}

/* Folds every run (all of the kernel's dtype) into the block's state. */
typedef void (*lkv_attn_block_fn)(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);

/* Observer pass: with the final lse of each row, ADDS exp(logit - lse) summed
 * over the block's rows to runs[i].obs[t] (runs with obs == NULL are skipped). */
typedef void (*lkv_attn_observe_fn)(const lkv_attn_block *b, const float *lse,
                                    const lkv_kv_run *runs, int n_runs);

/* ---------------------------------------------------------------- table */

typedef struct lkv_kernel_table {
    lkv_attn_block_fn attn[LKV_DTYPE_COUNT_];
    lkv_attn_observe_fn attn_observe[LKV_DTYPE_COUNT_];
    lkv_isa attn_isa[LKV_DTYPE_COUNT_];        /* which ISA provided each entry */
    lkv_isa attn_observe_isa[LKV_DTYPE_COUNT_];
    /* model-layer ops (matmul, dequant...) are appended here by later work */
} lkv_kernel_table;

/* The active table (initialised on first use; thread-safe). */
const lkv_kernel_table *lkv_kernels(void);

/* Per-ISA fillers: each overrides the entries it implements. */
void lkv_kernels_init_ref(lkv_kernel_table *t);
void lkv_kernels_init_avx2(lkv_kernel_table *t);
void lkv_kernels_init_avx512(lkv_kernel_table *t);

/* Builds a table for exactly this level (clamped to the CPU), e.g. for tests
 * that compare every ISA against the reference. */
void lkv_kernels_build(lkv_kernel_table *t, lkv_isa level);

#endif
