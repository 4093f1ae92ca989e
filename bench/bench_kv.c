/* bench_kv.c -- `longkv bench kv`: the paged cache's costs.
 *
 *   append    tokens/s of lkv_seq_append, prefill chunks (512) and single tokens,
 *             per layer-token (one token's K/V for every KV head of one layer)
 *   decode    one query token over n cached tokens: the paged cache
 *             (lkv_seq_attend: runs over pages) vs the contiguous kernel
 *             (lkv_attn_decode on a head-major copy of the same K/V); overhead
 *             = paged / contiguous - 1 (target <= 5% at 8k-128k tokens)
 *   fork      lkv_seq_fork + lkv_seq_free of a full-model sequence, and the
 *             first write after a fork (copy of the shared tail pages)
 *   prefix    lkv_seq_attach_prefix of a published prompt (hash + share)
 *   memory    committed bytes vs tokens held (and vs the raw K+V bytes)
 *
 * Shape defaults to SmolLM2-135M (30 layers, 9 query / 3 KV heads, d 64, f16).
 * Timing: one warm-up, then repetitions until --seconds per case (at least 3),
 * in thread CPU time when single-threaded (wall time with --threads > 1);
 * best and median are printed, ratios use the medians. --json prints one JSON
 * object per line instead of the table. Front-end code: only longkv.h.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "longkv.h"

typedef struct kv_opts {
    int layers, q_heads, kv_heads, head_dim, page_tokens, threads, json, quick;
    int fill_chunk; /* tokens per append when filling the decode cache */
    lkv_dtype dtype;
    long ctx[8];
    int n_ctx;
    double seconds;
} kv_opts;

/* Single-threaded runs are timed in thread CPU time: on a shared machine the
 * wall clock also counts the time other tenants hold the core, which can
 * dwarf a 1 ms call. With a thread pool the wall clock is used. */
static clockid_t bench_clock = CLOCK_THREAD_CPUTIME_ID;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(bench_clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform in [-1, 1): xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (float)((rng_state * 2685821657736338717ull) >> 40) * (2.0f / 16777216.0f) - 1.0f;
}
static void fill(float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        x[i] = frand();
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct timing {
    double best, median;
    int reps;
} timing;

/* Times fn(arg) (returns < 0 on error). */
static int time_it(double seconds, int (*fn)(void *), void *arg, timing *t) {
    double samples[4096];
    int n = 0;
    if (fn(arg) < 0) /* warm-up */
        return -1;
    double t_end = now_s() + seconds;
    while (n < 4096 && (n < 3 || now_s() < t_end)) {
        double t0 = now_s();
        if (fn(arg) < 0)
            return -1;
        samples[n++] = now_s() - t0;
    }
    qsort(samples, (size_t)n, sizeof *samples, cmp_d);
    t->best = samples[0];
    t->median = samples[n / 2];
    t->reps = n;
    return 0;
}

static lkv_cache *new_cache(const kv_opts *o, int layers, size_t budget) {
    lkv_cache_params cp = lkv_cache_default_params();
    cp.n_layers = layers;
    cp.kv_heads = o->kv_heads;
    cp.head_dim = o->head_dim;
    cp.page_tokens = o->page_tokens;
    cp.dtype = o->dtype;
    cp.budget_bytes = budget;
    cp.model_id = 1;
    lkv_cache *c = NULL;
    if (lkv_cache_create(&cp, &c) != 0)
        fprintf(stderr, "bench kv: cache: %s\n", lkv_last_error());
    return c;
}

/* Appends n random tokens to every layer, in chunks; optionally also writes
 * the K/V head-major ([Hk][n][d], in the cache dtype) into kc/vc. */
static int fill_seq(const kv_opts *o, lkv_seq *s, int layers, long n, int chunk, void *kc,
                    void *vc) {
    int Hk = o->kv_heads, d = o->head_dim;
    size_t es = lkv_dtype_size(o->dtype);
    float *k = malloc((size_t)chunk * Hk * d * 4), *v = malloc((size_t)chunk * Hk * d * 4);
    int rc = k && v ? 0 : -1;
    for (int l = 0; l < layers && rc == 0; l++)
        for (long t = 0; t < n && rc == 0; t += chunk) {
            int m = n - t < chunk ? (int)(n - t) : chunk;
            fill(k, (size_t)m * Hk * d);
            fill(v, (size_t)m * Hk * d);
            rc = lkv_seq_append(s, l, m, NULL, k, v);
            if (kc && l == 0)
                for (int i = 0; i < m; i++)
                    for (int h = 0; h < Hk; h++) {
                        size_t dst = ((size_t)h * n + t + i) * d * es;
                        lkv_convert_from_f32(o->dtype, (char *)kc + dst, k + ((size_t)i * Hk + h) * d, d);
                        lkv_convert_from_f32(o->dtype, (char *)vc + dst, v + ((size_t)i * Hk + h) * d, d);
                    }
        }
    if (rc < 0)
        fprintf(stderr, "bench kv: append: %s\n", lkv_last_error());
    free(k);
    free(v);
    return rc;
}

/* ------------------------------------------------------------ append */

typedef struct append_arg {
    const kv_opts *o;
    lkv_cache *c;
    int chunk;
    long n;
    float *k, *v;
} append_arg;

static int append_run(void *p) {
    append_arg *a = p;
    lkv_seq *s;
    if (lkv_seq_create(a->c, &s) != 0)
        return -1;
    int rc = 0;
    for (long t = 0; t < a->n && rc == 0; t += a->chunk)
        rc = lkv_seq_append(s, 0, a->chunk, NULL, a->k, a->v);
    lkv_seq_free(s);
    return rc;
}

static void bench_append(const kv_opts *o) {
    long n = o->quick ? 4096 : 32768;
    int chunks[2] = {512, 1};
    lkv_cache *c = new_cache(o, 1, (size_t)4 << 30);
    if (!c)
        return;
    for (int i = 0; i < 2; i++) {
        append_arg a = {o, c, chunks[i], chunks[i] == 1 ? n / 4 : n, NULL, NULL};
        size_t rows = (size_t)chunks[i] * o->kv_heads * o->head_dim;
        a.k = malloc(rows * 4);
        a.v = malloc(rows * 4);
        fill(a.k, rows);
        fill(a.v, rows);
        timing t;
        if (time_it(o->seconds, append_run, &a, &t) == 0) {
            double tps = (double)a.n / t.median;
            if (o->json)
                printf("{\"bench\":\"kv\",\"case\":\"append\",\"chunk\":%d,\"tokens\":%ld,"
                       "\"tokens_per_s\":%.0f,\"best_s\":%.6f,\"median_s\":%.6f}\n",
                       chunks[i], a.n, tps, t.best, t.median);
            else
                printf("append  chunk %4d: %8.2f M layer-tokens/s (%ld tokens, median %.2f ms)\n",
                       chunks[i], tps / 1e6, a.n, t.median * 1e3);
        }
        free(a.k);
        free(a.v);
    }
    lkv_cache_free(c);
}

/* ------------------------------------------------------------ decode */

typedef struct decode_arg {
    lkv_attn_params p;
    lkv_seq *s;
    lkv_kv_tensor kv;
    float *q, *o;
    lkv_threadpool *tp;
} decode_arg;

static int decode_paged(void *p) {
    decode_arg *a = p;
    return lkv_seq_attend(a->s, 0, &a->p, 1, a->q, NULL, a->o, NULL, a->tp);
}
static int decode_contig(void *p) {
    decode_arg *a = p;
    int32_t qp = a->kv.n - 1;
    return lkv_attn_decode(&a->p, 1, a->q, &qp, 0, &a->kv, a->o, NULL, NULL, a->tp);
}

static void bench_decode(const kv_opts *o, lkv_threadpool *tp) {
    int Hk = o->kv_heads, d = o->head_dim, H = o->q_heads;
    size_t es = lkv_dtype_size(o->dtype);
    for (int ci = 0; ci < o->n_ctx; ci++) {
        long n = o->ctx[ci];
        size_t bytes = (size_t)n * Hk * d * es;
        void *kc = malloc(bytes), *vc = malloc(bytes);
        lkv_cache *c = new_cache(o, 1, bytes * 4 + ((size_t)64 << 20));
        lkv_seq *s = NULL;
        if (!kc || !vc || !c || lkv_seq_create(c, &s) != 0 || fill_seq(o, s, 1, n, o->fill_chunk, kc, vc)) {
            fprintf(stderr, "bench kv: decode setup failed at %ld tokens\n", n);
            free(kc), free(vc), lkv_cache_free(c);
            continue;
        }
        decode_arg a;
        a.p = lkv_attn_default_params();
        a.p.head_dim = d;
        a.p.q_heads = H;
        a.p.kv_heads = Hk;
        a.s = s;
        a.kv = (lkv_kv_tensor){o->dtype, kc, vc, (int)n, (size_t)d, (size_t)n * d, NULL, 0};
        a.q = malloc((size_t)H * d * 4);
        a.o = malloc((size_t)H * d * 4);
        a.tp = tp;
        fill(a.q, (size_t)H * d);
        /* alternate the two in rounds and keep each one's best median, so that
         * drift of the machine (frequency, other tenants) hits both alike */
        timing tp_ = {1e30, 1e30, 0}, tc = {1e30, 1e30, 0}, t1;
        int ok = 1;
        for (int round = 0; round < 4 && ok; round++) {
            ok = time_it(o->seconds / 8, decode_contig, &a, &t1) == 0;
            if (ok && t1.median < tc.median)
                tc = t1;
            ok = ok && time_it(o->seconds / 8, decode_paged, &a, &t1) == 0;
            if (ok && t1.median < tp_.median)
                tp_ = t1;
        }
        if (ok) {
            double gbs = 2.0 * (double)bytes / tp_.median / 1e9;
            double over = tp_.median / tc.median - 1;
            if (o->json)
                printf("{\"bench\":\"kv\",\"case\":\"decode\",\"tokens\":%ld,\"dtype\":\"%s\","
                       "\"threads\":%d,\"paged_s\":%.7f,\"contiguous_s\":%.7f,"
                       "\"paged_best_s\":%.7f,\"contiguous_best_s\":%.7f,\"overhead\":%.4f,"
                       "\"paged_gbs\":%.2f,\"fill_chunk\":%d}\n",
                       n, lkv_dtype_name(o->dtype), lkv_threadpool_size(tp), tp_.median, tc.median,
                       tp_.best, tc.best, over, gbs, o->fill_chunk);
            else
                printf("decode  %6ld tokens: paged %8.3f ms  contiguous %8.3f ms  overhead %+5.1f%%"
                       "  (%.1f GB/s, filled by %d-token appends)\n",
                       n, tp_.median * 1e3, tc.median * 1e3, 100 * over, gbs, o->fill_chunk);
        } else {
            fprintf(stderr, "bench kv: decode failed: %s\n", lkv_last_error());
        }
        free(a.q), free(a.o), free(kc), free(vc);
        lkv_cache_free(c);
    }
}

/* ------------------------------------------------------------ fork / prefix */

typedef struct fork_arg {
    lkv_seq *s;
    int layers;
    float *k, *v;
} fork_arg;

static int fork_run(void *p) {
    fork_arg *a = p;
    lkv_seq *f;
    if (lkv_seq_fork(a->s, &f) != 0)
        return -1;
    lkv_seq_free(f);
    return 0;
}

static int fork_write_run(void *p) {
    fork_arg *a = p;
    lkv_seq *f;
    if (lkv_seq_fork(a->s, &f) != 0)
        return -1;
    int rc = 0;
    for (int l = 0; l < a->layers && rc == 0; l++)
        rc = lkv_seq_append(f, l, 1, NULL, a->k, a->v);
    lkv_seq_free(f);
    return rc;
}

typedef struct prefix_arg {
    lkv_cache *c;
    const int32_t *tokens;
    int n;
    int reused;
} prefix_arg;

static int prefix_run(void *p) {
    prefix_arg *a = p;
    lkv_seq *s;
    if (lkv_seq_create(a->c, &s) != 0)
        return -1;
    int rc = lkv_seq_attach_prefix(s, a->tokens, a->n, 0, &a->reused);
    lkv_seq_free(s);
    return rc;
}

static void bench_sharing(const kv_opts *o) {
    long n = o->quick ? 2048 : 8192 + 7; /* +7: a partial tail page to copy on write */
    lkv_cache *c = new_cache(o, o->layers, (size_t)8 << 30);
    lkv_seq *s = NULL;
    if (!c || lkv_seq_create(c, &s) != 0 || fill_seq(o, s, o->layers, n, 512, NULL, NULL)) {
        lkv_cache_free(c);
        return;
    }
    fork_arg fa = {s, o->layers, malloc((size_t)o->kv_heads * o->head_dim * 4),
                   malloc((size_t)o->kv_heads * o->head_dim * 4)};
    fill(fa.k, (size_t)o->kv_heads * o->head_dim);
    fill(fa.v, (size_t)o->kv_heads * o->head_dim);
    timing tf, tw, tpx;
    long pages = (n + o->page_tokens - 1) / o->page_tokens * o->layers * o->kv_heads;
    if (time_it(o->seconds, fork_run, &fa, &tf) == 0 &&
        time_it(o->seconds, fork_write_run, &fa, &tw) == 0) {
        if (o->json)
            printf("{\"bench\":\"kv\",\"case\":\"fork\",\"tokens\":%ld,\"layers\":%d,\"pages\":%ld,"
                   "\"fork_free_s\":%.7f,\"fork_write_free_s\":%.7f}\n",
                   n, o->layers, pages, tf.median, tw.median);
        else
            printf("fork    %ld tokens x %d layers (%ld pages): fork+free %.3f ms, "
                   "fork+first write (tail copies)+free %.3f ms\n",
                   n, o->layers, pages, tf.median * 1e3, tw.median * 1e3);
    }
    int32_t *tok = malloc((size_t)n * sizeof *tok);
    for (long i = 0; i < n; i++)
        tok[i] = (int32_t)((i * 2654435761u) % 49152);
    int pub = 0;
    lkv_cache_stats st0, st1;
    if (lkv_seq_publish(s, tok, (int)n, 0, &pub) == 0) {
        prefix_arg pa = {c, tok, (int)n, 0};
        lkv_cache_get_stats(c, &st0);
        if (time_it(o->seconds, prefix_run, &pa, &tpx) == 0) {
            lkv_cache_get_stats(c, &st1);
            if (o->json)
                printf("{\"bench\":\"kv\",\"case\":\"prefix_hit\",\"tokens\":%d,\"layers\":%d,"
                       "\"attach_free_s\":%.7f,\"new_commits\":%lld}\n",
                       pa.reused, o->layers, tpx.median, (long long)(st1.n_commits - st0.n_commits));
            else
                printf("prefix  hit of %d tokens x %d layers: attach+free %.3f ms "
                       "(%lld new OS-page commits)\n",
                       pa.reused, o->layers, tpx.median * 1e3,
                       (long long)(st1.n_commits - st0.n_commits));
        }
    }
    free(tok), free(fa.k), free(fa.v);
    lkv_cache_free(c);
}

/* ------------------------------------------------------------ memory */

static void bench_memory(const kv_opts *o) {
    long steps[] = {1000, 4000, 16000, 64000};
    int ns = o->quick ? 2 : 4;
    lkv_cache *c = new_cache(o, 1, (size_t)4 << 30);
    lkv_seq *s = NULL;
    if (!c || lkv_seq_create(c, &s) != 0) {
        lkv_cache_free(c);
        return;
    }
    long held = 0;
    for (int i = 0; i < ns; i++) {
        if (fill_seq(o, s, 1, steps[i] - held, 1000, NULL, NULL) != 0)
            break;
        held = steps[i];
        lkv_cache_stats st;
        lkv_cache_get_stats(c, &st);
        double raw = 2.0 * (double)held * o->kv_heads * o->head_dim * lkv_dtype_size(o->dtype);
        if (o->json)
            printf("{\"bench\":\"kv\",\"case\":\"memory\",\"tokens\":%ld,\"committed\":%zu,"
                   "\"in_use\":%zu,\"raw_kv\":%.0f,\"bytes_per_token\":%.1f}\n",
                   held, st.committed, st.in_use, raw, (double)st.committed / held);
        else
            printf("memory  %6ld tokens (1 layer): committed %9zu B, in use %9zu B, "
                   "raw K+V %9.0f B, overhead %+5.1f%%\n",
                   held, st.committed, st.in_use, raw, 100 * (st.committed / raw - 1));
    }
    /* and back: evicting most of a head returns memory */
    int keep[32];
    for (int i = 0; i < 32; i++)
        keep[i] = (int)held - 32 + i;
    lkv_cache_stats a, b;
    lkv_cache_get_stats(c, &a);
    for (int h = 0; h < o->kv_heads; h++)
        lkv_seq_keep(s, 0, h, keep, 32);
    lkv_cache_get_stats(c, &b);
    if (o->json)
        printf("{\"bench\":\"kv\",\"case\":\"memory_keep\",\"from_tokens\":%ld,\"to_tokens\":32,"
               "\"committed_before\":%zu,\"committed_after\":%zu}\n", held, a.committed, b.committed);
    else
        printf("memory  keep 32 of %ld tokens per head: committed %zu -> %zu B\n", held, a.committed,
               b.committed);
    lkv_cache_free(c);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: longkv bench kv [--quick] [--json] [--threads N] [--ctx N,N,...]\n"
            "                       [--dtype f32|f16|bf16] [--page N] [--seconds S]\n"
            "                       [--only append|decode|fork|memory] [--fill-chunk N]\n"
            "  defaults: SmolLM2 shape (30 layers, 9/3 heads, d 64), f16, 16-token pages,\n"
            "  ctx 8192,32768,131072 (quick: 8192,32768), 1 thread, 1 s per case;\n"
            "  --fill-chunk: tokens per append when building the decode cache (default\n"
            "  4096, a chunked prefill; 1 = grown by decoding: pages of the heads interleave)\n");
}

int bench_kv(int argc, char **argv) {
    kv_opts o = {30, 9, 3, 64, 16, 1, 0, 0, 4096, LKV_DTYPE_F16, {8192, 32768, 131072}, 3, 1.0};
    const char *only = NULL;
    int ctx_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            o.quick = 1;
        } else if (!strcmp(a, "--json")) {
            o.json = 1;
        } else if (!strcmp(a, "--threads") && v) {
            o.threads = atoi(v), i++;
        } else if (!strcmp(a, "--fill-chunk") && v) {
            o.fill_chunk = atoi(v), i++;
        } else if (!strcmp(a, "--page") && v) {
            o.page_tokens = atoi(v), i++;
        } else if (!strcmp(a, "--seconds") && v) {
            o.seconds = atof(v), i++;
        } else if (!strcmp(a, "--only") && v) {
            only = v, i++;
        } else if (!strcmp(a, "--dtype") && v) {
            o.dtype = !strcmp(v, "f32") ? LKV_DTYPE_F32 : !strcmp(v, "bf16") ? LKV_DTYPE_BF16 : LKV_DTYPE_F16;
            i++;
        } else if (!strcmp(a, "--ctx") && v) {
            o.n_ctx = 0;
            for (const char *p = v; *p && o.n_ctx < 8;) {
                long x = strtol(p, (char **)&p, 10);
                if (x > 0)
                    o.ctx[o.n_ctx++] = x;
                if (*p == ',')
                    p++;
                else if (*p)
                    break;
            }
            ctx_given = 1;
            i++;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (o.quick && !ctx_given) {
        o.n_ctx = 2;
        o.seconds = o.seconds < 0.2 ? o.seconds : 0.2;
    }
    if (o.threads < 1 || o.page_tokens < 1 || o.n_ctx == 0 || o.fill_chunk < 1) {
        usage(stderr);
        return 2;
    }
    lkv_threadpool *tp = NULL;
    if (o.threads > 1)
        bench_clock = CLOCK_MONOTONIC;
    if (o.threads > 1 && lkv_threadpool_create(o.threads, &tp) != 0) {
        fprintf(stderr, "bench kv: %s\n", lkv_last_error());
        return 1;
    }
    if (!o.json)
        printf("longkv bench kv: %d layers, %d/%d heads, d %d, %s, %d-token pages, %d thread(s), "
               "%s time\n",
               o.layers, o.q_heads, o.kv_heads, o.head_dim, lkv_dtype_name(o.dtype), o.page_tokens,
               o.threads, o.threads > 1 ? "wall" : "thread CPU");
    if (!only || !strcmp(only, "append"))
        bench_append(&o);
    if (!only || !strcmp(only, "decode"))
        bench_decode(&o, tp);
    if (!only || !strcmp(only, "fork"))
        bench_sharing(&o);
    if (!only || !strcmp(only, "memory"))
        bench_memory(&o);
    lkv_threadpool_free(tp);
    return 0;
}
