/* fwd_ops.c -- the pieces every forward pass shares (llama.c, gemma3.c) and
 * that the StreamingLLM cache-position mode must reproduce exactly
 * (model_press.c): RMSNorm and the rotary embedding in its two layouts. */
#include <math.h>

#include "model/model.h"

void lkv_fwd_rmsnorm(float *o, const float *x, const float *w, int n, int D, float eps) {
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * D;
        float *ot = o + (size_t)t * D;
        double ss = 0.0;
        for (int i = 0; i < D; i++)
            ss += (double)xt[i] * xt[i];
        float scale = (float)(1.0 / sqrt(ss / D + eps));
        for (int i = 0; i < D; i++)
            ot[i] = xt[i] * scale * w[i];
    }
}

void lkv_fwd_rope_freqs(float *inv_freq, int n_rot, double theta) {
    for (int i = 0; i < n_rot / 2; i++)
        inv_freq[i] = (float)pow(theta, -2.0 * (double)i / n_rot);
}

/* Angles in double: at position 8000 the angle is ~8000 rad and float would
 * lose the phase. */
void lkv_fwd_rope_tables(const int32_t *pos, int n, const float *inv_freq, int half,
                         double pos_scale, float *cos_t, float *sin_t) {
    for (int t = 0; t < n; t++) {
        double p = (double)pos[t] / pos_scale;
        for (int i = 0; i < half; i++) {
            double a = p * (double)inv_freq[i];
            cos_t[(size_t)t * half + i] = (float)cos(a);
            sin_t[(size_t)t * half + i] = (float)sin(a);
        }
    }
}

void lkv_fwd_rope_rotate(float *x, const float *cos_t, const float *sin_t, int n, int n_heads,
                         int d, int n_rot, int halves) {
    const int half = n_rot / 2;
    /* pair i is (2i, 2i+1) (GGUF llama) or (i, i + half) (NeoX, Gemma 3) */
    const int stride = halves ? 1 : 2, off = halves ? half : 1;
    for (int t = 0; t < n; t++) {
        const float *c = cos_t + (size_t)t * half;
        const float *sn = sin_t + (size_t)t * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)t * n_heads + h) * d;
            for (int i = 0; i < half; i++) {
                float a = v[stride * i], b = v[stride * i + off];
                v[stride * i] = a * c[i] - b * sn[i];
                v[stride * i + off] = a * sn[i] + b * c[i];
            }
        }
    }
}
