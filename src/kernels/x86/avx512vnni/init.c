/* init.c -- registers the AVX-512 + VNNI kernels (over the AVX-512 ones). */
#include "kernels/kernels.h"

void lkv_kernels_init_avx512vnni(lkv_kernel_table *t) {
    lkv_kernels_init_quant_avx512vnni(t);     /* weight products (quant_vnni*.c) */
    lkv_kernels_init_attn_kivi_avx512vnni(t); /* KIVI key dots by vpdpwssd (attn_kivi_vnni.c) */
}
