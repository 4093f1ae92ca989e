/* no_x86.c -- on non-x86 builds the x86 fillers provide nothing. */
#include "kernels/kernels.h"

void lkv_kernels_init_avx2(lkv_kernel_table *t) { (void)t; }
void lkv_kernels_init_avx512(lkv_kernel_table *t) { (void)t; }
