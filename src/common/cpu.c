/* cpu.c -- what the processor and the OS let us run.
 *
 * A CPU bit alone is not enough: the OS must also save the wider register state
 * on context switches (XCR0 via XGETBV), or AVX code faults or corrupts state.
 */
#include "common/cpu.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t read_xcr0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

static void detect(lkv_cpu_features *f) {
    unsigned a, b, c, d;
    memset(f, 0, sizeof *f);
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    uint64_t xcr0 = osxsave ? read_xcr0() : 0;
    int ymm_ok = (xcr0 & 0x6) == 0x6;
    int zmm_ok = ymm_ok && (xcr0 & 0xe0) == 0xe0;
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    unsigned b7 = 0, c7 = 0, d7 = 0, a71 = 0;
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b7, c7, d7);
        __cpuid_count(7, 1, a71, b, c, d);
    }
    f->avx = avx && ymm_ok;
    f->fma = f->avx && fma;
    f->f16c = f->avx && f16c;
    f->avx2 = f->avx && ((b7 >> 5) & 1);
    f->avx_vnni = f->avx && ((a71 >> 4) & 1);
    f->avx512f = zmm_ok && ((b7 >> 16) & 1);
    f->avx512dq = f->avx512f && ((b7 >> 17) & 1);
    f->avx512bw = f->avx512f && ((b7 >> 30) & 1);
    f->avx512vl = f->avx512f && ((b7 >> 31) & 1);
    f->avx512_vnni = f->avx512f && ((c7 >> 11) & 1);
    f->avx512_fp16 = f->avx512f && ((d7 >> 23) & 1);
    f->avx512_bf16 = f->avx512f && ((a71 >> 5) & 1);
    f->amx_bf16 = (d7 >> 22) & 1;
    f->amx_tile = (d7 >> 24) & 1;
    f->amx_int8 = (d7 >> 25) & 1;
}
#else
static void detect(lkv_cpu_features *f) { memset(f, 0, sizeof *f); }
#endif

static lkv_cpu_features features;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static void init(void) { detect(&features); }

const lkv_cpu_features *lkv_cpu_features_get(void) {
    pthread_once(&once, init);
    return &features;
}

lkv_isa lkv_cpu_isa(void) {
    const lkv_cpu_features *f = lkv_cpu_features_get();
    if (f->avx512f && f->avx512bw && f->avx512dq && f->avx512vl && f->fma && f->f16c)
        return f->avx512_vnni ? LKV_ISA_AVX512VNNI : LKV_ISA_AVX512;
    if (f->avx2 && f->fma && f->f16c)
        return LKV_ISA_AVX2;
    return LKV_ISA_REF;
}

const char *lkv_isa_name(lkv_isa isa) {
    switch (isa) {
    case LKV_ISA_REF: return "ref";
    case LKV_ISA_AVX2: return "avx2";
    case LKV_ISA_AVX512: return "avx512";
    case LKV_ISA_AVX512VNNI: return "avx512vnni";
    }
    return "unknown";
}
