/* attn.c -- the AVX2 attention entries: pick the rows path (few query rows,
 * decode) or the tiled GEMM path (many rows, prefill) per call.
 *
 * The tile path converts each K/V tile once and pays that back over the rows;
 * below TILE_MIN_ROWS rows the rows path (no conversion buffer, K/V read once
 * straight from memory) is faster. */
#include "kernels/x86/avx2/attn_avx2.h"

#define TILE_MIN_ROWS 16

void lkv_attn_f32_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    if (b->n_rows >= TILE_MIN_ROWS)
        lkv_attn_tile_f32_avx2(b, runs, n_runs);
    else
        lkv_attn_rows_f32_avx2(b, runs, n_runs);
}
void lkv_attn_f16_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    if (b->n_rows >= TILE_MIN_ROWS)
        lkv_attn_tile_f16_avx2(b, runs, n_runs);
    else
        lkv_attn_rows_f16_avx2(b, runs, n_runs);
}
void lkv_attn_bf16_avx2(const lkv_attn_block *b, const lkv_kv_run *runs, int n_runs) {
    if (b->n_rows >= TILE_MIN_ROWS)
        lkv_attn_tile_bf16_avx2(b, runs, n_runs);
    else
        lkv_attn_rows_bf16_avx2(b, runs, n_runs);
}
void lkv_attn_observe_f32_avx2(const lkv_attn_block *b, const float *lse,
                               const lkv_kv_run *runs, int n_runs) {
    if (b->n_rows >= TILE_MIN_ROWS)
        lkv_attn_observe_tile_f32_avx2(b, lse, runs, n_runs);
    else
        lkv_attn_observe_rows_f32_avx2(b, lse, runs, n_runs);
}
void lkv_attn_observe_f16_avx2(const lkv_attn_block *b, const float *lse,
                               const lkv_kv_run *runs, int n_runs) {
    if (b->n_rows >= TILE_MIN_ROWS)
        lkv_attn_observe_tile_f16_avx2(b, lse, runs, n_runs);
    else
        lkv_attn_observe_rows_f16_avx2(b, lse, runs, n_runs);
}
void lkv_attn_observe_bf16_avx2(const lkv_attn_block *b, const float *lse,
                                const lkv_kv_run *runs, int n_runs) {
    if (b->n_rows >= TILE_MIN_ROWS)
        lkv_attn_observe_tile_bf16_avx2(b, lse, runs, n_runs);
    else
        lkv_attn_observe_rows_bf16_avx2(b, lse, runs, n_runs);
}
