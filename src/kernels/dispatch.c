/* dispatch.c -- fills the kernel table once, from the CPU level and LONGKV_ISA. */
#include "kernels/kernels.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lkv_kernel_table table;
static lkv_isa active_level;
static pthread_once_t once = PTHREAD_ONCE_INIT;

void lkv_kernels_build(lkv_kernel_table *t, lkv_isa level) {
    if (level > lkv_cpu_isa())
        level = lkv_cpu_isa();
    memset(t, 0, sizeof *t);
    lkv_kernels_init_ref(t);
    if (level >= LKV_ISA_AVX2)
        lkv_kernels_init_avx2(t);
    if (level >= LKV_ISA_AVX512)
        lkv_kernels_init_avx512(t);
    if (level >= LKV_ISA_AVX512VNNI)
        lkv_kernels_init_avx512vnni(t);
}

static lkv_isa level_from_env(void) {
    lkv_isa level = lkv_cpu_isa();
    const char *e = getenv("LONGKV_ISA");
    if (!e || !*e)
        return level;
    lkv_isa want = level;
    if (!strcmp(e, "ref"))
        want = LKV_ISA_REF;
    else if (!strcmp(e, "avx2"))
        want = LKV_ISA_AVX2;
    else if (!strcmp(e, "avx512"))
        want = LKV_ISA_AVX512;
    else if (!strcmp(e, "avx512vnni"))
        want = LKV_ISA_AVX512VNNI;
    else
        fprintf(stderr, "longkv: ignoring unknown LONGKV_ISA=%s (use ref|avx2|avx512|avx512vnni)\n", e);
    return want < level ? want : level;
}

static void init(void) {
    active_level = level_from_env();
    lkv_kernels_build(&table, active_level);
}

const lkv_kernel_table *lkv_kernels(void) {
    pthread_once(&once, init);
    return &table;
}

lkv_isa lkv_active_isa(void) {
    pthread_once(&once, init);
    return active_level;
}

lkv_isa lkv_set_isa(lkv_isa isa) {
    pthread_once(&once, init);
    if (isa > lkv_cpu_isa())
        isa = lkv_cpu_isa();
    active_level = isa;
    lkv_kernels_build(&table, isa);
    return isa;
}

size_t lkv_kernels_describe(char *buf, size_t cap) {
    const lkv_kernel_table *t = lkv_kernels();
    size_t n = 0;
    char line[128];
    int w = snprintf(line, sizeof line, "cpu: %s, active: %s\n", lkv_isa_name(lkv_cpu_isa()),
                     lkv_isa_name(lkv_active_isa()));
    if (buf && cap > 0)
        snprintf(buf, cap, "%s", line);
    n += (size_t)w;
    for (int d = 0; d < LKV_DTYPE_COUNT_; d++) {
        w = snprintf(line, sizeof line, "attn.%s: %s, attn_observe.%s: %s\n",
                     lkv_dtype_name((lkv_dtype)d), t->attn[d] ? lkv_isa_name(t->attn_isa[d]) : "none",
                     lkv_dtype_name((lkv_dtype)d),
                     t->attn_observe[d] ? lkv_isa_name(t->attn_observe_isa[d]) : "none");
        if (buf && n < cap)
            snprintf(buf + n, cap - n, "%s", line);
        n += (size_t)w;
    }
    /* weight products (quant.h): one line, "matmul: q4_1=avx512vnni q8_0=... " */
    w = snprintf(line, sizeof line, "matmul:");
    if (buf && n < cap)
        snprintf(buf + n, cap - n, "%s", line);
    n += (size_t)w;
    for (int q = 0; q < LKV_Q_COUNT_; q++) {
        const lkv_qmm_kernel *k = &t->qmm[q];
        if (!k->rows)
            continue;
        w = snprintf(line, sizeof line, " %s=%s", lkv_qtype_traits(q)->name,
                     k->variant ? k->variant : lkv_isa_name(k->isa));
        if (buf && n < cap)
            snprintf(buf + n, cap - n, "%s", line);
        n += (size_t)w;
    }
    w = snprintf(line, sizeof line, "\n");
    if (buf && n < cap)
        snprintf(buf + n, cap - n, "%s", line);
    n += (size_t)w;
    return n;
}
