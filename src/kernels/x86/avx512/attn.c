/* attn.c -- the AVX-512 attention entries: the rows path (few query rows,
 * decode; any head dim, a multiple of 8) or the tiled GEMM path (many rows,
 * prefill) per call. The tile path needs head dims that are a multiple of 16;
 * the others (8, 24, ..., 80, ...) go to the AVX2 tile kernels, which this CPU
 * also runs (AVX-512 implies AVX2 here). */
#include "kernels/x86/avx512/attn_avx512.h"
#include "kernels/x86/avx2/attn_decl.h"

#define TILE_MIN_ROWS 24 /* below this the rows path wins (see x86/avx2/attn.c) */

void lkv_attn_f32_avx512(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    if (b->n_rows < TILE_MIN_ROWS)
        lkv_attn_rows_f32_avx512(b, runs, n_runs);
    else if (b->d % 16)
        lkv_attn_f32_avx2(b, runs, n_runs);
    else
        lkv_attn_tile_f32_avx512(b, runs, n_runs);
}
void lkv_attn_f16_avx512(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    if (b->n_rows < TILE_MIN_ROWS)
        lkv_attn_rows_f16_avx512(b, runs, n_runs);
    else if (b->d % 16)
        lkv_attn_f16_avx2(b, runs, n_runs);
    else
        lkv_attn_tile_f16_avx512(b, runs, n_runs);
}
void lkv_attn_bf16_avx512(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    if (b->n_rows < TILE_MIN_ROWS)
        lkv_attn_rows_bf16_avx512(b, runs, n_runs);
    else if (b->d % 16)
        lkv_attn_bf16_avx2(b, runs, n_runs);
    else
        lkv_attn_tile_bf16_avx512(b, runs, n_runs);
}
void lkv_attn_observe_f32_avx512(const lkv_attn_block *b, const float *lse,
                                 const lkv_kv_run *runs, int n_runs) {
    if (b->n_rows < TILE_MIN_ROWS)
        lkv_attn_observe_rows_f32_avx512(b, lse, runs, n_runs);
    else if (b->d % 16)
        lkv_attn_observe_f32_avx2(b, lse, runs, n_runs);
    else
        lkv_attn_observe_tile_f32_avx512(b, lse, runs, n_runs);
}
void lkv_attn_observe_f16_avx512(const lkv_attn_block *b, const float *lse,
                                 const lkv_kv_run *runs, int n_runs) {
    if (b->n_rows < TILE_MIN_ROWS)
        lkv_attn_observe_rows_f16_avx512(b, lse, runs, n_runs);
    else if (b->d % 16)
        lkv_attn_observe_f16_avx2(b, lse, runs, n_runs);
    else
        lkv_attn_observe_tile_f16_avx512(b, lse, runs, n_runs);
}
void lkv_attn_observe_bf16_avx512(const lkv_attn_block *b, const float *lse,
                                  const lkv_kv_run *runs, int n_runs) {
    if (b->n_rows < TILE_MIN_ROWS)
        lkv_attn_observe_rows_bf16_avx512(b, lse, runs, n_runs);
    else if (b->d % 16)
        lkv_attn_observe_bf16_avx2(b, lse, runs, n_runs);
    else
        lkv_attn_observe_tile_bf16_avx512(b, lse, runs, n_runs);
}
