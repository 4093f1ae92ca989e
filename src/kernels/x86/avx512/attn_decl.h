/* attn_decl.h -- the AVX-512 attention functions, declared without
 * intrinsics (for init.c). */
#ifndef LKV_X86_AVX512_ATTN_DECL_H
#define LKV_X86_AVX512_ATTN_DECL_H

#include "kernels/kernels.h"

/* ------------------------------------------------------- entry points */

void lkv_attn_f32_avx512(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_f16_avx512(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_bf16_avx512(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_f32_avx512(const lkv_attn_block *b, const float *lse,
                                 const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_f16_avx512(const lkv_attn_block *b, const float *lse,
                                 const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_bf16_avx512(const lkv_attn_block *b, const float *lse,
                                  const lkv_kv_run *runs, int n_runs);

/* The two paths; d must be a multiple of 16. */
void lkv_attn_rows_f32_avx512(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_rows_f16_avx512(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_rows_bf16_avx512(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_rows_f32_avx512(const lkv_attn_block *b, const float *lse,
                                      const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_rows_f16_avx512(const lkv_attn_block *b, const float *lse,
                                      const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_rows_bf16_avx512(const lkv_attn_block *b, const float *lse,
                                       const lkv_kv_run *runs, int n_runs);
void lkv_attn_tile_f32_avx512(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_tile_f16_avx512(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_tile_bf16_avx512(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_tile_f32_avx512(const lkv_attn_block *b, const float *lse,
                                      const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_tile_f16_avx512(const lkv_attn_block *b, const float *lse,
                                      const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_tile_bf16_avx512(const lkv_attn_block *b, const float *lse,
                                       const lkv_kv_run *runs, int n_runs);

#endif
