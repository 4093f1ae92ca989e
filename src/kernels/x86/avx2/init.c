/* init.c -- registers the AVX2+FMA+F16C kernels in the table. */
#include "kernels/kernels.h"
#include "kernels/x86/avx2/attn_decl.h"

void lkv_kernels_init_avx2(lkv_kernel_table *t) {
    t->read_sum = lkv_read_sum_avx2; /* roofline */
    t->read_sum_isa = LKV_ISA_AVX2;
    t->fma_loop = lkv_fma_loop_avx2;
    t->fma_loop_isa = LKV_ISA_AVX2;
    lkv_kernels_init_quant_avx2(t); /* weight products (quant_avx2.c) */
    t->attn[LKV_DTYPE_F32] = lkv_attn_f32_avx2; /* attention (attn*.c) */
    t->attn[LKV_DTYPE_F16] = lkv_attn_f16_avx2;
    t->attn[LKV_DTYPE_BF16] = lkv_attn_bf16_avx2;
    t->attn_observe[LKV_DTYPE_F32] = lkv_attn_observe_f32_avx2;
    t->attn_observe[LKV_DTYPE_F16] = lkv_attn_observe_f16_avx2;
    t->attn_observe[LKV_DTYPE_BF16] = lkv_attn_observe_bf16_avx2;
    for (int dt = 0; dt <= LKV_DTYPE_BF16; dt++) {
        t->attn_isa[dt] = LKV_ISA_AVX2;
        t->attn_observe_isa[dt] = LKV_ISA_AVX2;
    }
    lkv_kernels_init_attn_quant_avx2(t); /* int8 K/V (attn_quant.c) */
    lkv_kernels_init_attn_kivi_avx2(t);  /* KIVI K/V (attn_kivi.c) */
}
