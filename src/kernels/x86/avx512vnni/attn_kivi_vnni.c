/* attn_kivi_vnni.c -- x86/avx512/attn_kivi.c built with VNNI: each key word
 * pair is multiplied and added in one vpdpwssd instead of vpmaddwd + vpaddd. */
#include "kernels/x86/avx512/attn_kivi.c"
