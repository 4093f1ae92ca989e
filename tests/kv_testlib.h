/* kv_testlib.h -- shared helpers of the kv tests: a shadow copy of each
 * (layer, head) list kept in plain arrays, and the contiguous-kernel reference
 * of paged attention. Header-only (static functions) so that CMake's
 * one-file-per-test registration needs no change. */
#ifndef LKV_KV_TESTLIB_H
#define LKV_KV_TESTLIB_H

#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static inline int kvt_quick(void) {
    const char *e = getenv("LONGKV_TEST_QUICK");
    return e && atoi(e) != 0;
}

static inline float kvt_round(lkv_dtype t, float x) {
    if (t == LKV_DTYPE_F16)
        return lkv_fp16_to_fp32(lkv_fp32_to_fp16(x));
    if (t == LKV_DTYPE_BF16)
        return lkv_bf16_to_fp32(lkv_fp32_to_bf16(x));
    return x;
}

/* Shadow of one list: rows as the pages store them (rounded to the format). */
typedef struct kvt_list {
    int n, cap, d;
    float *k, *v;
    int32_t *pos;
} kvt_list;

static inline void kvt_list_push(kvt_list *s, lkv_dtype t, int32_t pos, const float *k, const float *v) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->k = realloc(s->k, (size_t)s->cap * s->d * sizeof(float));
        s->v = realloc(s->v, (size_t)s->cap * s->d * sizeof(float));
        s->pos = realloc(s->pos, (size_t)s->cap * sizeof(int32_t));
    }
    for (int c = 0; c < s->d; c++) {
        s->k[(size_t)s->n * s->d + c] = kvt_round(t, k[c]);
        s->v[(size_t)s->n * s->d + c] = kvt_round(t, v[c]);
    }
    s->pos[s->n++] = pos;
}

static inline void kvt_list_keep(kvt_list *s, const int *slots, int n) {
    for (int i = 0; i < n; i++) {
        memmove(s->k + (size_t)i * s->d, s->k + (size_t)slots[i] * s->d, (size_t)s->d * 4);
        memmove(s->v + (size_t)i * s->d, s->v + (size_t)slots[i] * s->d, (size_t)s->d * 4);
        s->pos[i] = s->pos[slots[i]];
    }
    s->n = n;
}

static inline void kvt_list_copy(kvt_list *dst, const kvt_list *src) {
    dst->d = src->d;
    dst->n = 0;
    for (int i = 0; i < src->n; i++)
        kvt_list_push(dst, LKV_DTYPE_F32, src->pos[i], src->k + (size_t)i * src->d,
                      src->v + (size_t)i * src->d);
}

static inline void kvt_list_free(kvt_list *s) {
    free(s->k);
    free(s->v);
    free(s->pos);
    memset(s, 0, sizeof *s);
}

/* Checks that the sequence's (layer, head) list equals the shadow exactly. */
static inline int kvt_list_equal(const lkv_seq *sq, int layer, int head, const kvt_list *s) {
    if (lkv_seq_n_tokens(sq, layer, head) != s->n)
        return 0;
    if (s->n == 0)
        return 1;
    float *k = malloc((size_t)s->n * s->d * 4), *v = malloc((size_t)s->n * s->d * 4);
    int32_t *pos = malloc((size_t)s->n * 4);
    int ok = lkv_seq_read(sq, layer, head, 0, s->n, k, v) == 0 &&
             lkv_seq_get_positions(sq, layer, head, 0, s->n, pos) == 0 &&
             !memcmp(k, s->k, (size_t)s->n * s->d * 4) && !memcmp(v, s->v, (size_t)s->n * s->d * 4) &&
             !memcmp(pos, s->pos, (size_t)s->n * 4);
    free(k);
    free(v);
    free(pos);
    return ok;
}

/* Reference of lkv_seq_attend*: per KV head h, the contiguous kernel over the
 * shadow's rows (optionally only rows whose slot is in [keep_from[i], keep_to[i])
 * ranges given as a 0/1 mask), stored in format t.
 *   q [n_q][H][d], o [n_q][H][d], lse [n_q][H], obs [Hk][obs_stride] (added). */
static inline int kvt_reference(const lkv_attn_params *p, lkv_dtype t, const kvt_list *lists,
                         const unsigned char *const *mask, int n_q, const float *q,
                         const int32_t *q_pos, float *o, float *lse, float *obs, int obs_stride,
                         lkv_threadpool *tp) {
    int H = p->q_heads, Hk = p->kv_heads, G = H / Hk, d = p->head_dim;
    int rc = 0;
    for (int h = 0; h < Hk && rc == 0; h++) {
        const kvt_list *s = &lists[h];
        int n = 0;
        float *kf = malloc(((size_t)s->n + 1) * d * 4), *vf = malloc(((size_t)s->n + 1) * d * 4);
        int32_t *pos = malloc(((size_t)s->n + 1) * 4);
        int *slot_of = malloc(((size_t)s->n + 1) * sizeof(int));
        for (int i = 0; i < s->n; i++) {
            if (mask && mask[h] && !mask[h][i])
                continue;
            memcpy(kf + (size_t)n * d, s->k + (size_t)i * d, (size_t)d * 4);
            memcpy(vf + (size_t)n * d, s->v + (size_t)i * d, (size_t)d * 4);
            pos[n] = s->pos[i];
            slot_of[n++] = i;
        }
        size_t es = lkv_dtype_size(t);
        void *kt = malloc(((size_t)n + 1) * d * es), *vt = malloc(((size_t)n + 1) * d * es);
        lkv_convert_from_f32(t, kt, kf, (size_t)n * d);
        lkv_convert_from_f32(t, vt, vf, (size_t)n * d);
        lkv_kv_tensor kv = {t, kt, vt, n, (size_t)d, (size_t)d, pos, 0};
        float *qg = malloc((size_t)n_q * G * d * 4), *og = malloc((size_t)n_q * G * d * 4);
        float *lg = malloc((size_t)n_q * G * 4), *ob = calloc((size_t)n + 1, 4);
        for (int i = 0; i < n_q; i++)
            memcpy(qg + (size_t)i * G * d, q + ((size_t)i * H + (size_t)h * G) * d,
                   (size_t)G * d * 4);
        lkv_attn_params p1 = *p;
        p1.q_heads = G;
        p1.kv_heads = 1;
        rc = n_q == 1 ? lkv_attn_decode(&p1, n_q, qg, q_pos, 0, &kv, og, lg, obs ? ob : NULL, tp)
                      : lkv_attn_prefill(&p1, n_q, qg, q_pos, 0, &kv, og, lg, obs ? ob : NULL, tp);
        for (int i = 0; i < n_q; i++) {
            memcpy(o + ((size_t)i * H + (size_t)h * G) * d, og + (size_t)i * G * d,
                   (size_t)G * d * 4);
            if (lse)
                memcpy(lse + (size_t)i * H + (size_t)h * G, lg + (size_t)i * G, (size_t)G * 4);
        }
        if (obs)
            for (int j = 0; j < n; j++)
                obs[(size_t)h * obs_stride + slot_of[j]] += ob[j];
        free(kf), free(vf), free(pos), free(slot_of), free(kt), free(vt);
        free(qg), free(og), free(lg), free(ob);
    }
    return rc;
}

#endif
