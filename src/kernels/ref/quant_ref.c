/* quant_ref.c -- reference dequantization, activation quantization and
 * weight x activation products for every supported format (the specification
 * the SIMD kernels are tested against). Plain C, one block at a time. */
#include <math.h>
#include <string.h>

#include "common/fp16.h"
#include "kernels/kernels.h"
#include "kernels/quant_blocks.h"

static inline float h2f(uint16_t h) { return lkv_half_to_float(h); }

/* ------------------------------------------------------- block decoders */

/* Decodes the 32 4-bit values of a Q4_0/Q4_1 block (element order). */
static void nibbles32(const uint8_t *qs, uint8_t q[32]) {
    for (int j = 0; j < 16; j++) {
        q[j] = qs[j] & 15;
        q[j + 16] = qs[j] >> 4;
    }
}

/* Decodes the 32 5-bit values of a Q5_0/Q5_1 block. */
static void fivebits32(const uint8_t *qh4, const uint8_t *qs, uint8_t q[32]) {
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    for (int j = 0; j < 16; j++) {
        q[j] = (uint8_t)((qs[j] & 15) | (((qh >> j) & 1) << 4));
        q[j + 16] = (uint8_t)((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
    }
}

/* Q4_K: the 256 4-bit values, and the 8 sub-block scales and mins. */
static void decode_q4k(const lkv_block_q4_k *b, uint8_t q[256], int sc[8], int mn[8]) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            q[64 * c + l] = b->qs[32 * c + l] & 15;
            q[64 * c + 32 + l] = b->qs[32 * c + l] >> 4;
        }
    for (int j = 0; j < 8; j++)
        lkv_q4k_scale_min(b->scales, j, &sc[j], &mn[j]);
}

/* Q6_K: the 256 signed 6-bit values (q - 32); sub-block k of 16 uses scales[k]. */
static void decode_q6k(const lkv_block_q6_k *b, int8_t q[256]) {
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        int8_t *o = q + 128 * h;
        for (int l = 0; l < 32; l++) {
            o[l] = (int8_t)(((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32);
            o[l + 32] = (int8_t)(((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32);
            o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

/* ------------------------------------------------------ dequantization */

void lkv_dequant_ref(int type, const void *src, float *dst, int64_t n);

void lkv_dequant_ref(int type, const void *src, float *dst, int64_t n) {
    uint8_t q[256];
    switch (type) {
    case LKV_Q_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        break;
    case LKV_Q_F16: {
        const uint8_t *s = src;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = lkv_half_to_float(h);
        }
        break;
    }
    case LKV_Q_BF16: {
        const uint8_t *s = src;
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = lkv_bf16_to_float(h);
        }
        break;
    }
    case LKV_Q_Q4_0:
        for (int64_t b = 0; b < n / LKV_QK; b++) {
            const lkv_block_q4_0 *x = (const lkv_block_q4_0 *)src + b;
            float d = h2f(x->d);
            nibbles32(x->qs, q);
            for (int j = 0; j < 32; j++)
                dst[32 * b + j] = d * (float)((int)q[j] - 8);
        }
        break;
    case LKV_Q_Q4_1:
        for (int64_t b = 0; b < n / LKV_QK; b++) {
            const lkv_block_q4_1 *x = (const lkv_block_q4_1 *)src + b;
            float d = h2f(x->d), m = h2f(x->m);
            nibbles32(x->qs, q);
            for (int j = 0; j < 32; j++)
                dst[32 * b + j] = d * (float)q[j] + m;
        }
        break;
    case LKV_Q_Q5_0:
        for (int64_t b = 0; b < n / LKV_QK; b++) {
            const lkv_block_q5_0 *x = (const lkv_block_q5_0 *)src + b;
            float d = h2f(x->d);
            fivebits32(x->qh, x->qs, q);
            for (int j = 0; j < 32; j++)
                dst[32 * b + j] = d * (float)((int)q[j] - 16);
        }
        break;
    case LKV_Q_Q5_1:
        for (int64_t b = 0; b < n / LKV_QK; b++) {
            const lkv_block_q5_1 *x = (const lkv_block_q5_1 *)src + b;
            float d = h2f(x->d), m = h2f(x->m);
            fivebits32(x->qh, x->qs, q);
            for (int j = 0; j < 32; j++)
                dst[32 * b + j] = d * (float)q[j] + m;
        }
        break;
    case LKV_Q_Q8_0:
        for (int64_t b = 0; b < n / LKV_QK; b++) {
            const lkv_block_q8_0 *x = (const lkv_block_q8_0 *)src + b;
            float d = h2f(x->d);
            for (int j = 0; j < 32; j++)
                dst[32 * b + j] = d * (float)x->qs[j];
        }
        break;
    case LKV_Q_Q4_K:
        for (int64_t b = 0; b < n / LKV_QK_K; b++) {
            const lkv_block_q4_k *x = (const lkv_block_q4_k *)src + b;
            int sc[8], mn[8];
            decode_q4k(x, q, sc, mn);
            float d = h2f(x->d), dmin = h2f(x->dmin);
            for (int i = 0; i < 256; i++)
                dst[256 * b + i] = d * (float)sc[i / 32] * (float)q[i] - dmin * (float)mn[i / 32];
        }
        break;
    case LKV_Q_Q6_K:
        for (int64_t b = 0; b < n / LKV_QK_K; b++) {
            const lkv_block_q6_k *x = (const lkv_block_q6_k *)src + b;
            int8_t q6[256];
            decode_q6k(x, q6);
            float d = h2f(x->d);
            for (int i = 0; i < 256; i++)
                dst[256 * b + i] = d * (float)x->scales[i / 16] * (float)q6[i];
        }
        break;
    default:
        break; /* lkv_dequantize checked the type */
    }
}

/* ------------------------------------------------ activation quantization */

static void quant_block(const float *x, int n, int8_t *q, float *d) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        amax = a > amax ? a : amax;
    }
    if (amax == 0.0f) {
        memset(q, 0, (size_t)n);
        *d = 0.0f;
        return;
    }
    float id = 127.0f / amax;
    *d = amax / 127.0f;
    for (int i = 0; i < n; i++) {
        float v = nearbyintf(x[i] * id);
        v = fminf(fmaxf(v, -127.0f), 127.0f);
        q[i] = (int8_t)v;
    }
}

void lkv_quantize_act_ref(int type, const float *x, int64_t n, int8_t *q, float *d) {
    int B = lkv_qact_block(type);
    if (B == 0)
        return;
    for (int64_t b = 0; b < n / B; b++)
        quant_block(x + b * B, B, q + b * B, &d[b]);
}

/* layout lkv_act_q8[cols/32] */
void lkv_qact_q8_ref(const float *x, int64_t cols, void *act) {
    lkv_act_q8 *a = act;
    for (int64_t b = 0; b < cols / LKV_QK; b++) {
        quant_block(x + b * LKV_QK, LKV_QK, a[b].qs, &a[b].d);
        int s = 0;
        for (int j = 0; j < LKV_QK; j++)
            s += a[b].qs[j];
        a[b].s = a[b].d * (float)s;
    }
}

/* layout lkv_act_q8k[cols/256] */
void lkv_qact_q8k_ref(const float *x, int64_t cols, void *act) {
    lkv_act_q8k *a = act;
    for (int64_t b = 0; b < cols / LKV_QK_K; b++) {
        quant_block(x + b * LKV_QK_K, LKV_QK_K, a[b].qs, &a[b].d);
        for (int i = 0; i < 16; i++) {
            int s = 0;
            for (int j = 0; j < 16; j++)
                s += a[b].qs[16 * i + j];
            a[b].bsums[i] = (int16_t)s;
        }
    }
}

/* ------------------------------------------------------- row products */

typedef float (*row_dot_fn)(const void *w, const void *act, int64_t cols);

static float dot_q4_0(const void *w, const void *act, int64_t cols) {
    const lkv_block_q4_0 *x = w;
    const lkv_act_q8 *a = act;
    float sum = 0.0f;
    uint8_t q[32];
    for (int64_t b = 0; b < cols / LKV_QK; b++) {
        nibbles32(x[b].qs, q);
        int s = 0;
        for (int j = 0; j < 32; j++)
            s += ((int)q[j] - 8) * a[b].qs[j];
        sum += h2f(x[b].d) * a[b].d * (float)s;
    }
    return sum;
}

static float dot_q4_1(const void *w, const void *act, int64_t cols) {
    const lkv_block_q4_1 *x = w;
    const lkv_act_q8 *a = act;
    float sum = 0.0f;
    uint8_t q[32];
    for (int64_t b = 0; b < cols / LKV_QK; b++) {
        nibbles32(x[b].qs, q);
        int s = 0;
        for (int j = 0; j < 32; j++)
            s += (int)q[j] * a[b].qs[j];
        sum += h2f(x[b].d) * a[b].d * (float)s + h2f(x[b].m) * a[b].s;
    }
    return sum;
}

static float dot_q5_0(const void *w, const void *act, int64_t cols) {
    const lkv_block_q5_0 *x = w;
    const lkv_act_q8 *a = act;
    float sum = 0.0f;
    uint8_t q[32];
    for (int64_t b = 0; b < cols / LKV_QK; b++) {
        fivebits32(x[b].qh, x[b].qs, q);
        int s = 0;
        for (int j = 0; j < 32; j++)
            s += ((int)q[j] - 16) * a[b].qs[j];
        sum += h2f(x[b].d) * a[b].d * (float)s;
    }
    return sum;
}

static float dot_q5_1(const void *w, const void *act, int64_t cols) {
    const lkv_block_q5_1 *x = w;
    const lkv_act_q8 *a = act;
    float sum = 0.0f;
    uint8_t q[32];
    for (int64_t b = 0; b < cols / LKV_QK; b++) {
        fivebits32(x[b].qh, x[b].qs, q);
        int s = 0;
        for (int j = 0; j < 32; j++)
            s += (int)q[j] * a[b].qs[j];
        sum += h2f(x[b].d) * a[b].d * (float)s + h2f(x[b].m) * a[b].s;
    }
    return sum;
}

static float dot_q8_0(const void *w, const void *act, int64_t cols) {
    const lkv_block_q8_0 *x = w;
    const lkv_act_q8 *a = act;
    float sum = 0.0f;
    for (int64_t b = 0; b < cols / LKV_QK; b++) {
        int s = 0;
        for (int j = 0; j < 32; j++)
            s += x[b].qs[j] * a[b].qs[j];
        sum += h2f(x[b].d) * a[b].d * (float)s;
    }
    return sum;
}

static float dot_q4_k(const void *w, const void *act, int64_t cols) {
    const lkv_block_q4_k *x = w;
    const lkv_act_q8k *a = act;
    float sum = 0.0f;
    uint8_t q[256];
    for (int64_t b = 0; b < cols / LKV_QK_K; b++) {
        int sc[8], mn[8];
        decode_q4k(&x[b], q, sc, mn);
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            int s = 0;
            for (int l = 0; l < 32; l++)
                s += (int)q[32 * j + l] * a[b].qs[32 * j + l];
            sumi += sc[j] * s;
            summ += mn[j] * (a[b].bsums[2 * j] + a[b].bsums[2 * j + 1]);
        }
        sum += a[b].d * (h2f(x[b].d) * (float)sumi - h2f(x[b].dmin) * (float)summ);
    }
    return sum;
}

static float dot_q6_k(const void *w, const void *act, int64_t cols) {
    const lkv_block_q6_k *x = w;
    const lkv_act_q8k *a = act;
    float sum = 0.0f;
    int8_t q[256];
    for (int64_t b = 0; b < cols / LKV_QK_K; b++) {
        decode_q6k(&x[b], q);
        int sumi = 0;
        for (int k = 0; k < 16; k++) {
            int s = 0;
            for (int l = 0; l < 16; l++)
                s += q[16 * k + l] * a[b].qs[16 * k + l];
            sumi += x[b].scales[k] * s;
        }
        sum += a[b].d * h2f(x[b].d) * (float)sumi;
    }
    return sum;
}

/* Float formats: x is f32, accumulated in double (this is the specification). */
static float dot_f32(const void *w, const void *act, int64_t cols) {
    const float *x = act;
    const uint8_t *p = w;
    double s = 0.0;
    for (int64_t i = 0; i < cols; i++) {
        float v;
        memcpy(&v, p + 4 * i, 4);
        s += (double)v * x[i];
    }
    return (float)s;
}

static float dot_f16(const void *w, const void *act, int64_t cols) {
    const float *x = act;
    const uint8_t *p = w;
    double s = 0.0;
    for (int64_t i = 0; i < cols; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        s += (double)lkv_half_to_float(h) * x[i];
    }
    return (float)s;
}

static float dot_bf16(const void *w, const void *act, int64_t cols) {
    const float *x = act;
    const uint8_t *p = w;
    double s = 0.0;
    for (int64_t i = 0; i < cols; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        s += (double)lkv_bf16_to_float(h) * x[i];
    }
    return (float)s;
}

static inline void rows_generic(row_dot_fn dot, const void *w, size_t w_row_bytes, int64_t cols,
                                int64_t r0, int64_t r1, const void *act, size_t act_stride,
                                int n_tok, float *y, size_t ldy) {
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *wr = (const uint8_t *)w + (size_t)r * w_row_bytes;
        for (int t = 0; t < n_tok; t++)
            y[(size_t)t * ldy + (size_t)r] =
                dot(wr, (const uint8_t *)act + (size_t)t * act_stride, cols);
    }
}

#define ROWS_FN(name)                                                                          \
    static void rows_##name(const void *w, size_t wrb, int64_t cols, int64_t r0, int64_t r1,   \
                            const void *act, size_t as, int n_tok, float *y, size_t ldy) {     \
        rows_generic(dot_##name, w, wrb, cols, r0, r1, act, as, n_tok, y, ldy);                \
    }
ROWS_FN(q4_0)
ROWS_FN(q4_1)
ROWS_FN(q5_0)
ROWS_FN(q5_1)
ROWS_FN(q8_0)
ROWS_FN(q4_k)
ROWS_FN(q6_k)
ROWS_FN(f32)
ROWS_FN(f16)
ROWS_FN(bf16)
#undef ROWS_FN

static void set(lkv_kernel_table *t, int type, lkv_qact_fn q, lkv_qmm_rows_fn r) {
    t->qmm[type].quantize = q;
    t->qmm[type].rows = r;
    t->qmm[type].isa = LKV_ISA_REF;
    t->qmm[type].variant = "ref";
}

void lkv_kernels_init_quant_ref(lkv_kernel_table *t) {
    set(t, LKV_Q_F32, NULL, rows_f32);
    set(t, LKV_Q_F16, NULL, rows_f16);
    set(t, LKV_Q_BF16, NULL, rows_bf16);
    set(t, LKV_Q_Q4_0, lkv_qact_q8_ref, rows_q4_0);
    set(t, LKV_Q_Q4_1, lkv_qact_q8_ref, rows_q4_1);
    set(t, LKV_Q_Q5_0, lkv_qact_q8_ref, rows_q5_0);
    set(t, LKV_Q_Q5_1, lkv_qact_q8_ref, rows_q5_1);
    set(t, LKV_Q_Q8_0, lkv_qact_q8_ref, rows_q8_0);
    set(t, LKV_Q_Q4_K, lkv_qact_q8k_ref, rows_q4_k);
    set(t, LKV_Q_Q6_K, lkv_qact_q8k_ref, rows_q6_k);
}
