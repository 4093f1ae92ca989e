/* init.c -- registers the AVX-512 kernels in the table. */
#include "kernels/kernels.h"
#include "kernels/x86/avx512/attn_decl.h"

void lkv_kernels_init_avx512(lkv_kernel_table *t) {
    t->read_sum = lkv_read_sum_avx512; /* roofline */
    t->read_sum_isa = LKV_ISA_AVX512;
    t->fma_loop = lkv_fma_loop_avx512;
    t->fma_loop_isa = LKV_ISA_AVX512;
    t->attn[LKV_DTYPE_F32] = lkv_attn_f32_avx512; /* attention (attn*.c) */
    t->attn[LKV_DTYPE_F16] = lkv_attn_f16_avx512;
    t->attn[LKV_DTYPE_BF16] = lkv_attn_bf16_avx512;
    t->attn_observe[LKV_DTYPE_F32] = lkv_attn_observe_f32_avx512;
    t->attn_observe[LKV_DTYPE_F16] = lkv_attn_observe_f16_avx512;
    t->attn_observe[LKV_DTYPE_BF16] = lkv_attn_observe_bf16_avx512;
    for (int dt = 0; dt <= LKV_DTYPE_BF16; dt++) {
        t->attn_isa[dt] = LKV_ISA_AVX512;
        t->attn_observe_isa[dt] = LKV_ISA_AVX512;
    }
    lkv_kernels_init_attn_quant_avx512(t); /* int8 K/V (attn_quant.c) */
    lkv_kernels_init_attn_kivi_avx512(t);  /* KIVI K/V (attn_kivi.c) */
}
