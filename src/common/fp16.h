/* fp16.h -- IEEE half and bfloat16 conversions in portable C (the reference;
 * SIMD kernels use F16C / AVX512-BF16 instructions and are tested against these). */
#ifndef LKV_COMMON_FP16_H
#define LKV_COMMON_FP16_H

#include <stdint.h>
#include <string.h>

static inline uint32_t lkv_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float lkv_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* half -> float, exact for every input including subnormals, inf and NaN. */
static inline float lkv_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f)
        return lkv_bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return lkv_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

/* float -> half, round to nearest even, overflow to inf, NaN stays NaN. */
static inline uint16_t lkv_float_to_half(float f) {
    uint32_t x = lkv_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or NaN */
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 | ((ax >> 13) & 0x3ff) : 0));
    if (ax >= 0x477ff000u) /* rounds to >= 65520: overflow */
        return (uint16_t)(sign | 0x7c00);
    if (ax < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        /* value * 2^24 rounded to nearest even gives the subnormal mantissa */
        float v = lkv_bits_f32(ax) * 16777216.0f;
        /* nearbyint-free round-half-even for 0 <= v < 1024 */
        uint32_t i = (uint32_t)v;
        float r = v - (float)i;
        if (r > 0.5f || (r == 0.5f && (i & 1)))
            i++;
        return (uint16_t)(sign | i);
    }
    uint32_t mant_round = ax + 0x0fffu + ((ax >> 13) & 1); /* round to nearest even */
    return (uint16_t)(sign | (((mant_round >> 13) - (112u << 10)) & 0x7fff));
}

static inline float lkv_bf16_to_float(uint16_t b) { return lkv_bits_f32((uint32_t)b << 16); }

static inline uint16_t lkv_float_to_bf16(float f) {
    uint32_t x = lkv_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

#endif
