/* test_model_press.c -- policies on the real model (SmolLM2-135M Q4_1) through
 * the public API: the memory KIVI really saves, prompt caches made with a
 * policy, StreamingLLM with cache positions. Skips (prints "skipped", exits 0)
 * when the model file is absent ($LONGKV_ROOT/models/, scripts/get_model.sh).
 * The prompt is real prose ($LONGKV_ROOT/data/texts/austen.txt) when present,
 * else a fixed paragraph repeated.
 */
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

/* KIVI's memory target: after a 1024-token prompt the pool holds at most 30%
 * (KIVI-4) / 17% (KIVI-2) of the full f16 cache's committed bytes, plus the
 * exact residual window (the tokens not yet quantized, at the full cache's
 * cost). Page layouts at d = 64 (SmolLM2): f16 page of 16 tokens 4736 bytes
 * (296 per token); KIVI page of 32 tokens: header 64 + positions 128 + key
 * scale/min 256 + value scale/min 256 + codes 2 x 32 x (32 | 16) = 2752
 * (KIVI-4) / 1728 (KIVI-2) bytes, the key digest derived from the key
 * scale/min instead of stored (it took 512 more). */
static void test_kivi_memory(lkv_model *m, lkv_threadpool *tp) {
    enum { N = 1024, RESIDUAL = 128, GROUP = 32 };
    int32_t *ids = malloc(N * sizeof *ids);
    if (!ids || prose_tokens(m, ids, N) != N) {
        free(ids);
        return;
    }
    const int window = N - (N - RESIDUAL) / GROUP * GROUP; /* tokens left exact */
    size_t full = prompt_bytes(m, tp, NULL, ids, N);
    size_t resid = prompt_bytes(m, tp, NULL, ids, window);
    size_t k4 = prompt_bytes(m, tp, "kivi:bits=4,group=32,residual=128", ids, N);
    size_t k2 = prompt_bytes(m, tp, "kivi:bits=2,group=32,residual=128", ids, N);
    printf("kivi memory at %d tokens: full %zu, residual window (%d tokens) %zu, kivi4 %zu "
           "(%.1f%%), kivi2 %zu (%.1f%%)\n", N, full, window, resid, k4, 100.0 * k4 / full, k2,
           100.0 * k2 / full);
    CHECK(full > 0 && resid > 0, "full %zu residual %zu", full, resid);
    CHECK(k4 <= 0.30 * (double)full + (double)resid, "kivi4 %zu > 30%% of %zu + %zu", k4, full,
          resid);
    CHECK(k2 <= 0.17 * (double)full + (double)resid, "kivi2 %zu > 17%% of %zu + %zu", k2, full,
          resid);
    free(ids);
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
    lkv_threadpool *tp = NULL;
    const char *nt = getenv("LONGKV_TEST_THREADS");
    if (nt && atoi(nt) > 1)
        CHECK_OK(lkv_threadpool_create(atoi(nt), &tp));
    test_kivi_memory(m, tp);
    test_press_prompt_cache(m, tp);
    lkv_threadpool_free(tp);
    lkv_model_free(m);
    return lkv_test_finish("test_model_press");
}
