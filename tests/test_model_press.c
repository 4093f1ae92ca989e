/* test_model_press.c -- policies on the real model (SmolLM2-135M Q4_1) through
 * the public API: the memory KIVI really saves, prompt caches made with a
 * policy, StreamingLLM with cache positions. Skips (prints "skipped", exits 0)
 * when the model file is absent ($LONGKV_ROOT/models/, scripts/get_model.sh).
 * The prompt is real prose ($LONGKV_ROOT/data/texts/austen.txt) when present,
 * else a fixed paragraph repeated.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "longkv.h"
#include "testutil.h"

static char model_path[4096];

static const char *root(void) {
    const char *r = getenv("LONGKV_ROOT");
    return r && *r ? r : ".";
}

/* n tokens of prose into ids (BOS first); returns the count. */
static int prose_tokens(lkv_model *m, int32_t *ids, int n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/data/texts/austen.txt", root());
    size_t cap = 64 * (size_t)n + 4096, len = 0;
    char *text = malloc(cap + 1);
    if (!text)
        return 0;
    FILE *f = fopen(path, "rb");
    if (f) {
        len = fread(text, 1, cap, f);
        fclose(f);
    }
    const char *para = "It is a truth universally acknowledged, that a single man in possession "
                       "of a good fortune, must be in want of a wife. However little known the "
                       "feelings or views of such a man may be on his first entering a "
                       "neighbourhood, this truth is so well fixed in the minds of the "
                       "surrounding families. ";
    while (len + strlen(para) < cap && len < 16 * (size_t)n) { /* no file: repeat */
        memcpy(text + len, para, strlen(para));
        len += strlen(para);
    }
    text[len] = 0;
    int got = lkv_tokenize(m, text, len, 1, 0, ids, n);
    free(text);
    CHECK(got >= n, "prose gave %d of %d tokens", got, n);
    return got < n ? got : n;
}

/* Committed KV bytes after evaluating ids[n] as a prompt under spec (NULL = full). */
static size_t prompt_bytes(lkv_model *m, lkv_threadpool *tp, const char *spec, const int32_t *ids,
                           int n) {
    lkv_press *p = NULL;
    if (spec)
        CHECK_OK(lkv_press_create(spec, &p));
    lkv_ctx_params cp = lkv_ctx_default_params();
    cp.n_ctx = n + 8;
    cp.tp = tp;
    cp.press = p;
    lkv_ctx *ctx = NULL;
    size_t bytes = 0;
    CHECK_OK(lkv_ctx_create(m, &cp, &ctx));
    if (ctx) {
        CHECK_OK(lkv_ctx_eval_prompt(ctx, ids, n, 0, NULL));
        bytes = lkv_ctx_kv_bytes(ctx);
    }
    lkv_ctx_free(ctx);
    lkv_press_free(p);
    return bytes;
}

/* KIVI's memory target: after an n-token prompt the pool holds at most 30%
 * (KIVI-4) / 17% (KIVI-2) of the full f16 cache's committed bytes, plus the
 * exact residual window (the tokens not yet quantized, at the full cache's
 * cost). Page layouts at d = 64 (SmolLM2): f16 page of 16 tokens 4736 bytes
 * (296 per token); KIVI page of 32 tokens: header 64 + key scale/min 256 +
 * value scale/min 256 + codes 2 x 32 x (32 | 16) = 2624 (KIVI-4, 82 bytes per
 * token, 27.7%) / 1600 (KIVI-2, 50 per token, 16.9%) bytes. The key digest is
 * derived from the key scale/min (a stored one took 512 more) and the
 * positions from the page's first one when they are consecutive, as before
 * any eviction (an array took 128 more, 18.2% for KIVI-2). */
typedef struct kivi_bytes {
    size_t full, resid, k4, k2;
} kivi_bytes;

static kivi_bytes test_kivi_memory(lkv_model *m, lkv_threadpool *tp, int n) {
    enum { RESIDUAL = 128, GROUP = 32 };
    kivi_bytes b = {0, 0, 0, 0};
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    if (!ids || prose_tokens(m, ids, n) != n) {
        free(ids);
        return b;
    }
    const int window = n - (n - RESIDUAL) / GROUP * GROUP; /* tokens left exact */
    b.full = prompt_bytes(m, tp, NULL, ids, n);
    b.resid = prompt_bytes(m, tp, NULL, ids, window);
    b.k4 = prompt_bytes(m, tp, "kivi:bits=4,group=32,residual=128", ids, n);
    b.k2 = prompt_bytes(m, tp, "kivi:bits=2,group=32,residual=128", ids, n);
    printf("kivi memory at %d tokens: full %zu, residual window (%d tokens) %zu, kivi4 %zu "
           "(%.1f%%), kivi2 %zu (%.1f%%)\n", n, b.full, window, b.resid, b.k4,
           100.0 * b.k4 / b.full, b.k2, 100.0 * b.k2 / b.full);
    CHECK(b.full > 0 && b.resid > 0, "full %zu residual %zu", b.full, b.resid);
    CHECK(b.k4 <= 0.30 * (double)b.full + (double)b.resid, "kivi4 %zu > 30%% of %zu + %zu at %d",
          b.k4, b.full, b.resid, n);
    CHECK(b.k2 <= 0.17 * (double)b.full + (double)b.resid, "kivi2 %zu > 17%% of %zu + %zu at %d",
          b.k2, b.full, b.resid, n);
    free(ids);
    return b;
}

/* The same at a longer context, and the cost of the tokens in between: the
 * bytes the extra quantized tokens add, against what they add to the full
 * cache, are within the targets without any allowance (the residual window
 * and the pool's partly used OS pages cancel out). Skipped with
 * LONGKV_TEST_QUICK (about 6k prompt tokens). */
static void test_kivi_memory_long(lkv_model *m, lkv_threadpool *tp, kivi_bytes at1024) {
    const char *quick = getenv("LONGKV_TEST_QUICK");
    if (quick && atoi(quick)) {
        printf("kivi memory at 2048 tokens: skipped (LONGKV_TEST_QUICK=1)\n");
        return;
    }
    kivi_bytes b = test_kivi_memory(m, tp, 2048);
    if (!b.full || !at1024.full || b.full <= at1024.full)
        return;
    double df = (double)(b.full - at1024.full);
    double d4 = ((double)b.k4 - (double)at1024.k4) / df, d2 = ((double)b.k2 - (double)at1024.k2) / df;
    printf("kivi memory from 1024 to 2048 tokens: kivi4 %.2f%%, kivi2 %.2f%% of the full cache's "
           "growth\n", 100.0 * d4, 100.0 * d2);
    CHECK(d4 <= 0.30, "kivi4 grows by %.2f%% of the full cache's growth", 100.0 * d4);
    CHECK(d2 <= 0.17, "kivi2 grows by %.2f%% of the full cache's growth", 100.0 * d2);
}

static lkv_ctx *press_ctx(lkv_model *m, lkv_threadpool *tp, const lkv_press *p) {
    lkv_ctx_params cp = lkv_ctx_default_params();
    cp.n_ctx = 512;
    cp.tp = tp;
    cp.press = p;
    lkv_ctx *ctx = NULL;
    CHECK_OK(lkv_ctx_create(m, &cp, &ctx));
    return ctx;
}

/* --prompt-cache with a policy: the compressed cache saved after the prompt
 * step restores the step exactly (same logits, same next step); a file of
 * another policy, of the full cache, of another prompt or question split is
 * refused, never trusted. */
static void test_press_prompt_cache(lkv_model *m, lkv_threadpool *tp) {
    enum { N = 120, NQ = 10 };
    char path[] = "/tmp/longkv_test_press_prompt_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0)
        return;
    close(fd);
    int32_t ids[N];
    if (prose_tokens(m, ids, N) != N)
        return;
    const int V = lkv_model_n_vocab(m);
    lkv_press *snap = NULL, *stream = NULL, *h2o = NULL;
    CHECK_OK(lkv_press_create("snapkv:ratio=0.5,window=8", &snap));
    CHECK_OK(lkv_press_create("streamingllm:sinks=4,recent=40", &stream));
    CHECK_OK(lkv_press_create("h2o:ratio=0.5", &h2o));
    lkv_ctx *a = press_ctx(m, tp, snap), *b = press_ctx(m, tp, snap);
    lkv_ctx *c = press_ctx(m, tp, stream), *f = press_ctx(m, tp, NULL), *h = press_ctx(m, tp, h2o);
    float *la = malloc((size_t)V * sizeof(float));
    if (!a || !b || !c || !f || !h || !la)
        goto done;
    CHECK_OK(lkv_ctx_eval_prompt(a, ids, N, NQ, NULL));
    memcpy(la, lkv_ctx_logits(a), (size_t)V * sizeof(float));
    CHECK_OK(lkv_ctx_save_prompt(a, path, ids, N));
    int got = -1;
    CHECK_OK(lkv_ctx_load_prompt_question(b, path, ids, N, NQ, &got));
    CHECK(got == N && lkv_ctx_pos(b) == N, "restored %d of %d", got, N);
    CHECK(lkv_ctx_logits(b) && !memcmp(la, lkv_ctx_logits(b), (size_t)V * sizeof(float)),
          "restored logits differ");
    CHECK(lkv_ctx_kv_bytes(b) <= lkv_ctx_kv_bytes(a), "restored cache %zu > %zu",
          lkv_ctx_kv_bytes(b), lkv_ctx_kv_bytes(a));
    CHECK_OK(lkv_ctx_decode(a, 13));
    CHECK_OK(lkv_ctx_decode(b, 13));
    CHECK(!memcmp(lkv_ctx_logits(a), lkv_ctx_logits(b), (size_t)V * sizeof(float)),
          "the step after a restored compressed prompt differs");
    /* after decoding, a policy's cache is no longer the prompt step's */
    CHECK(lkv_ctx_save_prompt(a, path, NULL, 0) != LKV_OK, "saved a decoded cache");
    int32_t two[N + 1];
    memcpy(two, ids, sizeof ids);
    two[N] = 13;
    CHECK(lkv_ctx_save_prompt(a, path, two, N + 1) == LKV_ERR_STATE, "saved after decoding");
    /* mismatches: recomputed by the caller, the context left empty */
    CHECK(lkv_ctx_load_prompt_question(c, path, ids, N, NQ, &got) == LKV_ERR_VERSION && got == 0 &&
              lkv_ctx_pos(c) == 0, "another policy's file");
    CHECK(lkv_ctx_load_prompt_question(f, path, ids, N, NQ, &got) == LKV_ERR_VERSION &&
              lkv_ctx_pos(f) == 0, "a policy file in a full-cache context");
    CHECK_OK(lkv_ctx_reset(b));
    CHECK(lkv_ctx_load_prompt_question(b, path, ids, N, NQ + 1, &got) == LKV_ERR_RANGE &&
              lkv_ctx_pos(b) == 0, "another question split");
    CHECK(lkv_ctx_load_prompt_question(b, path, ids, N - 1, NQ, &got) == LKV_ERR_RANGE,
          "a shorter prompt");
    two[N - 1] ^= 1;
    CHECK(lkv_ctx_load_prompt_question(b, path, two, N, NQ, &got) == LKV_ERR_RANGE,
          "a prompt differing in its last token");
    /* a full-cache file is refused by a policy context */
    CHECK_OK(lkv_ctx_eval_prompt(f, ids, N, NQ, NULL));
    CHECK_OK(lkv_ctx_save_prompt(f, path, ids, N));
    CHECK(lkv_ctx_load_prompt_question(b, path, ids, N, NQ, &got) == LKV_ERR_VERSION &&
              lkv_ctx_pos(b) == 0, "a full-cache file in a policy context");
    /* h2o (decode-time eviction by prompt scores) cannot be cached */
    CHECK_OK(lkv_ctx_eval_prompt(h, ids, N, NQ, NULL));
    CHECK(lkv_ctx_save_prompt(h, path, ids, N) == LKV_ERR_UNSUPPORTED, "h2o saved");
done:
    remove(path);
    free(la);
    lkv_ctx_free(a);
    lkv_ctx_free(b);
    lkv_ctx_free(c);
    lkv_ctx_free(f);
    lkv_ctx_free(h);
    lkv_press_free(snap);
    lkv_press_free(stream);
    lkv_press_free(h2o);
}

/* Layer 0's attention output of the last token of each call (hook). */
typedef struct last_o {
    int width; /* H * d */
    float o[4096];
} last_o;

static int record_last_o(void *user, int layer, int n_tok, const int32_t *pos, const float *q,
                         const float *k, const float *v, const float *o) {
    (void)pos, (void)q, (void)k, (void)v;
    last_o *r = user;
    if (layer == 0 && r->width <= 4096)
        memcpy(r->o, o + (size_t)(n_tok - 1) * r->width, (size_t)r->width * sizeof(float));
    return 0;
}

/* StreamingLLM with positions=cache (sinks 4, window 60, pages of 16: the
 * cache is cut back to 64 tokens whenever it reaches 81). Before the first
 * eviction both position modes must give the same logits bit for bit (the
 * split attention is not even entered while nothing was evicted); after it
 * they must differ, and stay sane: the mean NLL of the prose over the decoded
 * steps close to positions=original's. A chunk evaluated after an eviction
 * (lkv_ctx_eval) uses cache positions too: layer 0's attention output for its
 * last token equals that of decoding the same tokens one at a time in cache
 * mode (the same keys, no eviction in between; layer 0's q, k, v are the same
 * bits either way, test_model.c), not that of original positions. */
static void test_streaming_cache_positions(lkv_model *m, lkv_threadpool *tp) {
    enum { P = 40, FIRST_EVICT = 80, T = 81 + 17 * 6, C = 8 }; /* T: right after an eviction */
    int32_t ids[T + C + 1];
    if (prose_tokens(m, ids, T + C + 1) != T + C + 1)
        return;
    const int V = lkv_model_n_vocab(m);
    lkv_press *po = NULL, *pc = NULL;
    CHECK_OK(lkv_press_create("streamingllm:sinks=4,recent=60", &po));
    CHECK_OK(lkv_press_create("streamingllm:sinks=4,recent=60,positions=cache", &pc));
    lkv_model_info mi;
    CHECK_OK(lkv_model_get_info(m, &mi));
    last_o *rec = calloc(3, sizeof *rec); /* a, b, b2 */
    lkv_ctx *ctx[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3 && rec; i++) {
        rec[i].width = mi.n_heads * mi.head_dim;
        lkv_ctx_params cp = lkv_ctx_default_params();
        cp.n_ctx = 512;
        cp.tp = tp;
        cp.press = i == 0 ? po : pc;
        cp.hook = record_last_o;
        cp.hook_user = &rec[i];
        CHECK_OK(lkv_ctx_create(m, &cp, &ctx[i]));
    }
    lkv_ctx *a = ctx[0], *b = ctx[1], *b2 = ctx[2];
    float *la = malloc((size_t)V * C * sizeof(float)), *lb = malloc((size_t)V * C * sizeof(float));
    if (!rec || !a || !b || !b2 || !la || !lb)
        goto done;
    CHECK_OK(lkv_ctx_eval_prompt(a, ids, P, 0, NULL));
    CHECK_OK(lkv_ctx_eval_prompt(b, ids, P, 0, NULL));
    CHECK_OK(lkv_ctx_eval_prompt(b2, ids, P, 0, NULL));
    CHECK(!memcmp(lkv_ctx_logits(a), lkv_ctx_logits(b), (size_t)V * sizeof(float)),
          "prompt logits differ between the position modes");
    int same_before = 0, differ_after = 0, n_scored = 0;
    double nll_a = 0, nll_b = 0;
    for (int i = P; i < T; i++) {
        CHECK_OK(lkv_ctx_decode(a, ids[i]));
        CHECK_OK(lkv_ctx_decode(b, ids[i]));
        CHECK_OK(lkv_ctx_decode(b2, ids[i]));
        const float *ga = lkv_ctx_logits(a), *gb = lkv_ctx_logits(b);
        if (!ga || !gb)
            goto done;
        int same = !memcmp(ga, gb, (size_t)V * sizeof(float));
        if (i <= FIRST_EVICT) { /* the step that reaches 81 tokens still attends all 81 */
            same_before += same;
            continue;
        }
        differ_after += !same;
        double mx_a = ga[0], mx_b = gb[0], sa = 0, sb = 0;
        for (int t = 1; t < V; t++) {
            mx_a = ga[t] > mx_a ? ga[t] : mx_a;
            mx_b = gb[t] > mx_b ? gb[t] : mx_b;
        }
        for (int t = 0; t < V; t++) {
            sa += exp(ga[t] - mx_a);
            sb += exp(gb[t] - mx_b);
        }
        nll_a += mx_a + log(sa) - ga[ids[i + 1]];
        nll_b += mx_b + log(sb) - gb[ids[i + 1]];
        n_scored++;
    }
    CHECK(same_before == FIRST_EVICT - P + 1, "before the first eviction %d of %d decode steps "
          "were bit-identical", same_before, FIRST_EVICT - P + 1);
    CHECK(differ_after == n_scored, "after evictions %d of %d steps differ", differ_after,
          n_scored);
    nll_a /= n_scored;
    nll_b /= n_scored;
    printf("  streamingllm 4+60 over %d evicting steps: mean NLL original %.3f, cache %.3f\n",
           n_scored, nll_a, nll_b);
    CHECK(isfinite(nll_b) && fabs(nll_b - nll_a) < 0.5, "cache positions NLL %.3f vs %.3f",
          nll_b, nll_a);
    /* a chunk after an eviction, against the same tokens one at a time */
    CHECK_OK(lkv_ctx_eval(b, ids + T, C, lb));
    CHECK_OK(lkv_ctx_eval(a, ids + T, C, la));
    for (int i = 0; i < C; i++)
        CHECK_OK(lkv_ctx_decode(b2, ids[T + i]));
    int w = rec[0].width;
    double e_cache = lkv_test_rel_err(rec[1].o, rec[2].o, (size_t)w, 1e-3);
    double e_orig = lkv_test_rel_err(rec[0].o, rec[2].o, (size_t)w, 1e-3);
    printf("  chunk of %d after an eviction vs the same tokens decoded (cache positions), "
           "layer-0 attention: rel err %.2g (original positions' chunk: %.2g)\n", C, e_cache,
           e_orig);
    CHECK(e_cache < 1e-5, "chunk with cache positions: layer-0 attention off by %.3g", e_cache);
    CHECK(e_orig > 1e-3, "the position modes should differ at layer 0 (%.3g)", e_orig);
done:
    free(la);
    free(lb);
    lkv_ctx_free(a);
    lkv_ctx_free(b);
    lkv_ctx_free(b2);
    free(rec);
    lkv_press_free(po);
    lkv_press_free(pc);
}

int main(void) {
    snprintf(model_path, sizeof model_path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", root());
    if (access(model_path, R_OK) != 0) {
        printf("test_model_press: skipped (no model at %s; run scripts/get_model.sh)\n",
               model_path);
        return 0;
    }
    lkv_model *m = NULL;
    CHECK_OK(lkv_model_load(model_path, NULL, &m));
    if (!m)
        return lkv_test_finish("test_model_press");
    lkv_threadpool *tp = lkv_test_threadpool();
    test_kivi_memory_long(m, tp, test_kivi_memory(m, tp, 1024));
    test_press_prompt_cache(m, tp);
    test_streaming_cache_positions(m, tp);
    lkv_threadpool_free(tp);
    lkv_model_free(m);
    return lkv_test_finish("test_model_press");
}
