/* fp16.c -- public conversion entry points. */
#include "common/error.h"
#include "common/fp16.h"

uint16_t lkv_fp32_to_fp16(float f) { return lkv_float_to_half(f); }
float lkv_fp16_to_fp32(uint16_t h) { return lkv_half_to_float(h); }
uint16_t lkv_fp32_to_bf16(float f) { return lkv_float_to_bf16(f); }
float lkv_bf16_to_fp32(uint16_t b) { return lkv_bf16_to_float(b); }

size_t lkv_dtype_size(lkv_dtype t) {
    switch (t) {
    case LKV_DTYPE_F32: return 4;
    case LKV_DTYPE_F16: return 2;
    case LKV_DTYPE_BF16: return 2;
    default: return 0;
    }
}

const char *lkv_dtype_name(lkv_dtype t) {
    switch (t) {
    case LKV_DTYPE_F32: return "f32";
    case LKV_DTYPE_F16: return "f16";
    case LKV_DTYPE_BF16: return "bf16";
    case LKV_DTYPE_Q8: return "q8";
    case LKV_DTYPE_KIVI4: return "kivi4";
    case LKV_DTYPE_KIVI2: return "kivi2";
    default: return "unknown";
    }
}

int lkv_convert_from_f32(lkv_dtype t, void *dst, const float *src, size_t n) {
    if (!dst || (!src && n))
        LKV_FAIL(LKV_ERR_INVALID, "convert_from_f32: NULL buffer");
    switch (t) {
    case LKV_DTYPE_F32:
        memcpy(dst, src, n * sizeof(float));
        return LKV_OK;
    case LKV_DTYPE_F16:
        for (size_t i = 0; i < n; i++)
            ((uint16_t *)dst)[i] = lkv_float_to_half(src[i]);
        return LKV_OK;
    case LKV_DTYPE_BF16:
        for (size_t i = 0; i < n; i++)
            ((uint16_t *)dst)[i] = lkv_float_to_bf16(src[i]);
        return LKV_OK;
    default:
        LKV_FAIL(LKV_ERR_INVALID, "convert_from_f32: dtype %d is not a plain type", (int)t);
    }
}
