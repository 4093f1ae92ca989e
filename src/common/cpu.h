/* cpu.h -- CPU feature detection (cpuid plus the OS's XSAVE state check). */
#ifndef LKV_COMMON_CPU_H
#define LKV_COMMON_CPU_H

#include "longkv.h"

typedef struct lkv_cpu_features {
    int avx, avx2, fma, f16c;              /* usable: CPU bit and OS saves YMM state */
    int avx512f, avx512bw, avx512dq, avx512vl; /* usable: CPU bit and OS saves ZMM state */
    int avx512_vnni, avx512_bf16, avx512_fp16, avx_vnni;
    int amx_tile, amx_int8, amx_bf16;      /* CPU bits only (Linux needs a prctl to use) */
} lkv_cpu_features;

/* Detected once, then cached. Thread-safe. */
const lkv_cpu_features *lkv_cpu_features_get(void);

#endif
