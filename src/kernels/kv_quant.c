/* kv_quant.c -- encoders and the reference decoder of the quantized K/V
 * formats (layouts in kv_quant.h and include/longkv.h). */
#include <math.h>
#include <string.h>

#include "common/error.h"
#include "common/fp16.h"
#include "kernels/kv_quant.h"

#define HALF_MAX 65504.0f

static float clamp_half_range(float x) {
    if (!(x == x))
        return 0.0f; /* NaN: nothing sensible to keep */
    return x > HALF_MAX ? HALF_MAX : x < -HALF_MAX ? -HALF_MAX : x;
}

uint16_t lkv_kvq_half_down(float x) {
    x = clamp_half_range(x);
    uint16_t h = lkv_float_to_half(x);
    if (lkv_half_to_float(h) <= x)
        return h;
    if (h == 0x0000 || h == 0x8000)
        return 0x8001;                     /* -smallest subnormal */
    return (uint16_t)((h & 0x8000) ? h + 1 /* more negative */ : h - 1);
}

uint16_t lkv_kvq_half_up(float x) { return (uint16_t)(lkv_kvq_half_down(-x) ^ 0x8000); }

void lkv_kvq_encode_q8_row(const float *x, int d, int8_t *codes, uint16_t *scale) {
    float amax = 0.0f;
    for (int c = 0; c < d; c++)
        amax = fabsf(x[c]) > amax ? fabsf(x[c]) : amax;
    uint16_t sh = amax > 0.0f ? lkv_kvq_half_up(amax / 127.0f) : 0;
    float s = lkv_half_to_float(sh);
    *scale = sh;
    float inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (int c = 0; c < d; c++) {
        float q = nearbyintf(x[c] * inv);
        q = q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : q;
        codes[c] = (int8_t)q;
    }
}

/* (scale, min) halves of the range [mn, mx] for L + 1 levels, and the f32
 * values they stand for. */
static void range_params(float mn, float mx, int L, uint16_t *sh, uint16_t *mh, float *s,
                         float *m) {
    *mh = lkv_kvq_half_down(mn);
    *m = lkv_half_to_float(*mh);
    float span = clamp_half_range(mx) - *m;
    *sh = span > 0.0f ? lkv_kvq_half_up(span / (float)L) : 0;
    *s = lkv_half_to_float(*sh);
}

static int code_of(float x, float m, float inv, int L) {
    float q = nearbyintf((x - m) * inv);
    return q < 0.0f ? 0 : q > (float)L ? L : (int)q;
}

void lkv_kvq_encode_kivi_keys(int bits, int d, int n, const float *k, size_t ks, uint8_t *codes,
                              uint16_t *aux) {
    const int L = (1 << bits) - 1;
    const lkv_dtype dt = bits == 4 ? LKV_DTYPE_KIVI4 : LKV_DTYPE_KIVI2;
    memset(codes, 0, (size_t)lkv_kvq_slots(dt, n) * lkv_kvq_row_bytes(dt, d));
    for (int c = 0; c < d; c++) {
        float mn = INFINITY, mx = -INFINITY;
        for (int t = 0; t < n; t++) {
            float x = k[(size_t)t * ks + c];
            mn = x < mn ? x : mn;
            mx = x > mx ? x : mx;
        }
        if (n == 0)
            mn = mx = 0.0f;
        uint16_t sh, mh;
        float s, m;
        range_params(mn, mx, L, &sh, &mh, &s, &m);
        aux[c] = sh;
        aux[d + c] = mh;
        float inv = s > 0.0f ? 1.0f / s : 0.0f;
        for (int t = 0; t < n; t++) {
            int sh;
            size_t off = lkv_kvq_kword(bits, d, t, c, &sh);
            lkv_kvq_put(codes, off, sh, bits, code_of(k[(size_t)t * ks + c], m, inv, L));
        }
    }
}

void lkv_kvq_encode_kivi_vrow(int bits, int d, const float *v, int t, uint8_t *codes,
                              uint16_t *aux) {
    const int L = (1 << bits) - 1;
    for (int g = 0; g * LKV_KIVI_VGROUP < d; g++) {
        int c0 = g * LKV_KIVI_VGROUP, c1 = c0 + LKV_KIVI_VGROUP < d ? c0 + LKV_KIVI_VGROUP : d;
        float mn = INFINITY, mx = -INFINITY;
        for (int c = c0; c < c1; c++) {
            mn = v[c] < mn ? v[c] : mn;
            mx = v[c] > mx ? v[c] : mx;
        }
        uint16_t sh, mh;
        float s, m;
        range_params(mn, mx, L, &sh, &mh, &s, &m);
        aux[lkv_kvq_vaux_index(d, t, g, 0)] = sh;
        aux[lkv_kvq_vaux_index(d, t, g, 1)] = mh;
        float inv = s > 0.0f ? 1.0f / s : 0.0f;
        for (int c = c0; c < c1; c++) {
            int shift;
            size_t off = lkv_kvq_vword(bits, d, t, c, &shift);
            lkv_kvq_put(codes, off, shift, bits, code_of(v[c], m, inv, L));
        }
    }
}

void lkv_kvq_decode(lkv_dtype t, int d, const void *k, const void *k_aux, const void *v,
                    const void *v_aux, int t0, int n, float *k_out, float *v_out) {
    const size_t rb = lkv_kvq_row_bytes(t, d);
    if (t == LKV_DTYPE_Q8) {
        for (int i = 0; i < n; i++) {
            size_t row = (size_t)(t0 + i);
            if (k_out) {
                float s = lkv_half_to_float(((const uint16_t *)k_aux)[row]);
                const int8_t *q = (const int8_t *)k + row * rb;
                for (int c = 0; c < d; c++)
                    k_out[(size_t)i * d + c] = s * (float)q[c];
            }
            if (v_out) {
                float s = lkv_half_to_float(((const uint16_t *)v_aux)[row]);
                const int8_t *q = (const int8_t *)v + row * rb;
                for (int c = 0; c < d; c++)
                    v_out[(size_t)i * d + c] = s * (float)q[c];
            }
        }
        return;
    }
    const int bits = lkv_kvq_bits(t);
    if (!bits)
        return;
    const uint16_t *ka = k_aux, *va = v_aux;
    for (int i = 0; i < n; i++) {
        const int tk = t0 + i;
        if (k_out)
            for (int c = 0; c < d; c++)
                k_out[(size_t)i * d + c] = lkv_half_to_float(ka[d + c]) +
                                           lkv_half_to_float(ka[c]) * (float)lkv_kvq_kcode(k, bits, d, tk, c);
        if (v_out)
            for (int c = 0; c < d; c++) {
                int g = c / LKV_KIVI_VGROUP;
                v_out[(size_t)i * d + c] = lkv_half_to_float(va[lkv_kvq_vaux_index(d, tk, g, 1)]) +
                                           lkv_half_to_float(va[lkv_kvq_vaux_index(d, tk, g, 0)]) *
                                               (float)lkv_kvq_vcode(v, bits, d, tk, c);
            }
    }
}

/* ------------------------------------------------------------ public API */

int lkv_kv_quant_bytes(lkv_dtype t, int d, int n, size_t *k_codes, size_t *k_aux,
                       size_t *v_codes, size_t *v_aux) {
    if (!lkv_kvq_is_quant(t) || d < 8 || d > 256 || d % 8 || n < 0)
        LKV_FAIL(LKV_ERR_INVALID, "kv_quant_bytes: dtype %s, d %d, n %d", lkv_dtype_name(t), d, n);
    const size_t slots = (size_t)lkv_kvq_slots(t, n), rows = slots * lkv_kvq_row_bytes(t, d);
    if (k_codes)
        *k_codes = rows;
    if (v_codes)
        *v_codes = rows;
    if (k_aux)
        *k_aux = (size_t)n * lkv_kvq_kaux_row_bytes(t, d) + lkv_kvq_kaux_fixed_bytes(t, d);
    if (v_aux)
        *v_aux = slots * lkv_kvq_vaux_row_bytes(t, d);
    return LKV_OK;
}

int lkv_kv_quantize(lkv_dtype t, int d, int n, const float *k, const float *v, void *k_codes,
                    void *k_aux, void *v_codes, void *v_aux) {
    LKV_TRY(lkv_kv_quant_bytes(t, d, n, NULL, NULL, NULL, NULL));
    if (n > 0 && (!k || !v || !k_codes || !k_aux || !v_codes || !v_aux))
        LKV_FAIL(LKV_ERR_INVALID, "kv_quantize: NULL buffer");
    const size_t rb = lkv_kvq_row_bytes(t, d);
    const int bits = lkv_kvq_bits(t);
    if (!bits) {
        for (int i = 0; i < n; i++) {
            lkv_kvq_encode_q8_row(k + (size_t)i * d, d, (int8_t *)k_codes + i * rb, (uint16_t *)k_aux + i);
            lkv_kvq_encode_q8_row(v + (size_t)i * d, d, (int8_t *)v_codes + i * rb, (uint16_t *)v_aux + i);
        }
        return LKV_OK;
    }
    if (n > 0)
        lkv_kvq_encode_kivi_keys(bits, d, n, k, (size_t)d, k_codes, k_aux);
    const size_t slots = (size_t)lkv_kvq_slots(t, n);
    memset(v_codes, 0, slots * rb); /* the last tile's free slots: code 0, scale 0 */
    memset(v_aux, 0, slots * lkv_kvq_vaux_row_bytes(t, d));
    for (int i = 0; i < n; i++)
        lkv_kvq_encode_kivi_vrow(bits, d, v + (size_t)i * d, i, v_codes, v_aux);
    return LKV_OK;
}
