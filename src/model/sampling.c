/* sampling.c -- picking the next token: greedy, or temperature with optional
 * top-k and top-p (nucleus), from a seeded generator (reproducible).
 *
 * Top-p without sorting the whole vocabulary: a token whose probability is below
 * (1 - top_p) / (V - 1) can never be inside the nucleus (even if all the other
 * V - 1 tokens had that probability, they would sum to less than 1 - top_p), so
 * only the survivors are sorted.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "common/rng.h"
#include "longkv.h"

typedef struct cand {
    float p;
    int32_t id;
} cand;

struct lkv_sampler {
    lkv_sampler_params p;
    lkv_rng rng;
    cand *c;   /* [cap] candidates */
    int cap;
};

lkv_sampler_params lkv_sampler_default_params(void) {
    lkv_sampler_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 0.0f;
    p.top_p = 1.0f;
    p.top_k = 0;
    p.seed = 0;
    return p;
}

int lkv_sampler_create(const lkv_sampler_params *p, lkv_sampler **out) {
    if (!p || !out)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_sampler_create: NULL argument");
    if (!isfinite(p->temperature))
        LKV_FAIL(LKV_ERR_INVALID, "lkv_sampler_create: temperature is not finite");
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        LKV_FAIL(LKV_ERR_INVALID, "lkv_sampler_create: top_p %g is outside (0, 1]",
                 (double)p->top_p);
    if (p->top_k < 0)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_sampler_create: top_k %d < 0", p->top_k);
    lkv_sampler *s = lkv_calloc(1, sizeof *s);
    if (!s)
        LKV_FAIL(LKV_ERR_NOMEM, "lkv_sampler_create: out of memory");
    s->p = *p;
    lkv_rng_seed(&s->rng, p->seed);
    *out = s;
    return LKV_OK;
}

void lkv_sampler_free(lkv_sampler *s) {
    if (!s)
        return;
    lkv_free(s->c);
    lkv_free(s);
}

static int cand_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p != y->p)
        return x->p < y->p ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id; /* deterministic ties */
}

static int32_t argmax(const float *logits, int n) {
    int32_t best = 0;
    float bv = -INFINITY;
    for (int i = 0; i < n; i++)
        if (logits[i] > bv) { /* NaN never compares greater */
            bv = logits[i];
            best = i;
        }
    return best;
}

int lkv_sampler_sample(lkv_sampler *s, const float *logits, int n_vocab, int32_t *token) {
    if (!s || !logits || !token || n_vocab < 1)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_sampler_sample: bad argument");
    int32_t best = argmax(logits, n_vocab);
    if (s->p.temperature <= 0.0f || !(logits[best] > -INFINITY) || n_vocab == 1) {
        *token = best;
        return LKV_OK;
    }
    if (s->cap < n_vocab) {
        cand *c = lkv_realloc(s->c, (size_t)n_vocab * sizeof(cand));
        if (!c)
            LKV_FAIL(LKV_ERR_NOMEM, "lkv_sampler_sample: out of memory");
        s->c = c;
        s->cap = n_vocab;
    }
    /* probabilities p[i] = softmax(logits / T) */
    const float inv_t = 1.0f / s->p.temperature;
    const float mx = logits[best];
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++) {
        float l = logits[i];
        float e = l == l ? expf((l - mx) * inv_t) : 0.0f;
        s->c[i].p = e;
        s->c[i].id = i;
        sum += e;
    }
    int n = n_vocab;
    const int top_k = s->p.top_k;
    const float top_p = s->p.top_p;
    if (top_k > 0 || top_p < 1.0f) {
        /* drop what can never be kept, then sort the rest */
        float floor_p = top_p < 1.0f ? (float)((1.0 - top_p) / (n_vocab - 1) * sum) : 0.0f;
        int kept = 0;
        for (int i = 0; i < n_vocab; i++)
            if (s->c[i].p >= floor_p && s->c[i].p > 0.0f)
                s->c[kept++] = s->c[i];
        if (kept == 0) {
            *token = best;
            return LKV_OK;
        }
        qsort(s->c, (size_t)kept, sizeof(cand), cand_desc);
        n = kept;
        if (top_k > 0 && n > top_k)
            n = top_k;
        if (top_p < 1.0f) {
            double cum = 0.0, target = top_p * sum;
            int i = 0;
            while (i < n) {
                cum += s->c[i].p;
                i++;
                if (cum >= target)
                    break;
            }
            n = i;
        }
        sum = 0.0;
        for (int i = 0; i < n; i++)
            sum += s->c[i].p;
    }
    double r = lkv_rng_uniform(&s->rng) * sum, cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += s->c[i].p;
        if (r < cum) {
            *token = s->c[i].id;
            return LKV_OK;
        }
    }
    /* rounding: the last candidate with mass */
    for (int i = n - 1; i >= 0; i--)
        if (s->c[i].p > 0.0f) {
            *token = s->c[i].id;
            return LKV_OK;
        }
    *token = best;
    return LKV_OK;
}
