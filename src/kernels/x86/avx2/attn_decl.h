/* attn_decl.h -- the AVX2 attention functions, declared without intrinsics so
 * that init.c and the AVX-512 file (which hands odd head dims to them) can
 * include it. */
#ifndef LKV_X86_AVX2_ATTN_DECL_H
#define LKV_X86_AVX2_ATTN_DECL_H

#include "kernels/kernels.h"

/* ------------------------------------------------------- entry points */

/* The table entries (attn.c): choose the rows or the tile path per call. */
void lkv_attn_f32_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_f16_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_bf16_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_f32_avx2(const lkv_attn_block *b, const float *lse,
                               const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_f16_avx2(const lkv_attn_block *b, const float *lse,
                               const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_bf16_avx2(const lkv_attn_block *b, const float *lse,
                                const lkv_kv_run *runs, int n_runs);

/* The two paths (attn_rows.c, attn_tile.c). */

void lkv_attn_rows_f32_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_rows_f16_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_rows_bf16_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_rows_f32_avx2(const lkv_attn_block *b, const float *lse,
                                    const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_rows_f16_avx2(const lkv_attn_block *b, const float *lse,
                                    const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_rows_bf16_avx2(const lkv_attn_block *b, const float *lse,
                                     const lkv_kv_run *runs, int n_runs);

void lkv_attn_tile_f32_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_tile_f16_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_tile_bf16_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_tile_f32_avx2(const lkv_attn_block *b, const float *lse,
                                    const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_tile_f16_avx2(const lkv_attn_block *b, const float *lse,
                                    const lkv_kv_run *runs, int n_runs);
void lkv_attn_observe_tile_bf16_avx2(const lkv_attn_block *b, const float *lse,
                                     const lkv_kv_run *runs, int n_runs);

#endif
