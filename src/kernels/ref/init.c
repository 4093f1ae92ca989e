/* init.c -- registers the reference kernels (the specification). */
#include "kernels/kernels.h"

void lkv_kernels_init_ref(lkv_kernel_table *t) {
    t->attn[LKV_DTYPE_F32] = lkv_attn_f32_ref; /* attention (ref/attn.c) */
    t->attn[LKV_DTYPE_F16] = lkv_attn_f16_ref;
    t->attn[LKV_DTYPE_BF16] = lkv_attn_bf16_ref;
    t->attn_observe[LKV_DTYPE_F32] = lkv_attn_observe_f32_ref;
    t->attn_observe[LKV_DTYPE_F16] = lkv_attn_observe_f16_ref;
    t->attn_observe[LKV_DTYPE_BF16] = lkv_attn_observe_bf16_ref;
    t->attn[LKV_DTYPE_Q8] = lkv_attn_q8_ref; /* quantized K/V (ref/attn_quant.c) */
    t->attn[LKV_DTYPE_KIVI4] = lkv_attn_kivi4_ref;
    t->attn[LKV_DTYPE_KIVI2] = lkv_attn_kivi2_ref;
    t->attn_observe[LKV_DTYPE_Q8] = lkv_attn_observe_q8_ref;
    t->attn_observe[LKV_DTYPE_KIVI4] = lkv_attn_observe_kivi4_ref;
    t->attn_observe[LKV_DTYPE_KIVI2] = lkv_attn_observe_kivi2_ref;
    for (int dt = 0; dt < LKV_DTYPE_COUNT_; dt++) {
        t->attn_isa[dt] = LKV_ISA_REF;
        t->attn_observe_isa[dt] = LKV_ISA_REF;
    }
    t->read_sum = lkv_read_sum_ref; /* roofline */
    t->read_sum_isa = LKV_ISA_REF;
    t->fma_loop = lkv_fma_loop_ref;
    t->fma_loop_isa = LKV_ISA_REF;
    lkv_kernels_init_quant_ref(t); /* weight products (ref/quant_ref.c) */
}
