/* test_press_evict.c -- eviction policies on crafted caches where the right
 * answer is known: a key that dominates the attention must survive SnapKV /
 * H2O / TOVA; StreamingLLM keeps exactly sinks + recent; Knorm keeps the
 * smallest keys; budgets, question exclusion, per-layer pyramids, decode-time
 * eviction and the pool's committed bytes. */
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "press/evict.h"
#include "testutil.h"

enum { L = 2, HK = 2, H = 4, D = 16, N = 200, PAGE = 16 };

typedef struct fixture {
    lkv_cache *cache;
    lkv_seq *seq;
    float u[D];          /* the direction the window queries point to */
} fixture;

static void setup(fixture *f, lkv_rng *r, int hot_slot) {
    f->cache = lkv_test_cache(L, HK, D, PAGE, LKV_DTYPE_F32, 64u << 20, 0);
    CHECK_OK(lkv_seq_create(f->cache, &f->seq));
    lkv_test_fill_normal(r, f->u, D, 1.0f);
    float *k = malloc(sizeof(float) * N * HK * D), *v = malloc(sizeof(float) * N * HK * D);
    lkv_test_fill_normal(r, k, (size_t)N * HK * D, 0.1f);
    lkv_test_fill_normal(r, v, (size_t)N * HK * D, 1.0f);
    for (int h = 0; h < HK; h++)
        for (int c = 0; c < D; c++)
            k[((size_t)hot_slot * HK + h) * D + c] = 3.0f * f->u[c];
    for (int l = 0; l < L; l++)
        CHECK_OK(lkv_seq_append(f->seq, l, N, NULL, k, v));
    free(k);
    free(v);
}

static void teardown(fixture *f) {
    lkv_seq_free(f->seq);
    lkv_cache_free(f->cache);
}

static lkv_attn_params attn_params(void) {
    lkv_attn_params ap = lkv_attn_default_params();
    ap.head_dim = D;
    ap.q_heads = H;
    ap.kv_heads = HK;
    return ap;
}

static int has_position(lkv_seq *s, int layer, int head, int32_t want) {
    int n = lkv_seq_n_tokens(s, layer, head);
    int32_t pos[N];
    if (lkv_seq_get_positions(s, layer, head, 0, n, pos) < 0)
        return 0;
    for (int i = 0; i < n; i++)
        if (pos[i] == want)
            return 1;
    return 0;
}

static struct lkv_press *make(const char *spec) {
    static struct lkv_press p;
    int rc = lkv_press_parse(spec, &p);
    CHECK(rc == LKV_OK, "parse %s: %s", spec, lkv_last_error());
    return &p;
}

/* Runs after_prefill with window queries pointing at u (strongly). */
static lkv_press_state *run_prefill(fixture *f, const char *spec, int n_question, lkv_rng *r) {
    lkv_press_geom g = {L, H, HK, D};
    lkv_press_state *st = NULL;
    CHECK_OK(lkv_press_state_create(make(spec), &g, &st));
    if (!st)
        return NULL;
    CHECK_OK(lkv_press_begin_prompt(st, N, n_question));
    int ws, wl;
    lkv_press_window(st, &ws, &wl);
    float *qw[L] = {0};
    lkv_attn_params ap[L];
    for (int l = 0; l < L; l++) {
        ap[l] = attn_params();
        if (wl > 0) {
            qw[l] = malloc(sizeof(float) * (size_t)wl * H * D);
            lkv_test_fill_normal(r, qw[l], (size_t)wl * H * D, 0.1f);
            for (int t = 0; t < wl; t++)
                for (int h = 0; h < H; h++)
                    for (int c = 0; c < D; c++)
                        qw[l][((size_t)t * H + h) * D + c] += 2.0f * f->u[c];
        }
    }
    if (lkv_press_wants_observer(st, 0, 0)) {
        /* H2O: the observer of the whole prompt, from queries pointing at u */
        float *q = malloc(sizeof(float) * N * H * D), *o = malloc(sizeof(float) * N * H * D);
        float *obs = calloc((size_t)HK * N, sizeof(float));
        for (int l = 0; l < L; l++) {
            lkv_test_fill_normal(r, q, (size_t)N * H * D, 0.1f);
            for (int t = 0; t < N; t++)
                for (int h = 0; h < H; h++)
                    for (int c = 0; c < D; c++)
                        q[((size_t)t * H + h) * D + c] += 2.0f * f->u[c];
            memset(obs, 0, sizeof(float) * HK * N);
            CHECK_OK(lkv_seq_attend_observe(f->seq, l, &ap[l], N, q, NULL, o, NULL, obs, N, NULL));
            CHECK_OK(lkv_press_observe(st, f->seq, l, obs, N));
        }
        free(q);
        free(o);
        free(obs);
    }
    CHECK_OK(lkv_press_after_prefill(st, f->seq, (const float *const *)qw, ap, NULL));
    for (int l = 0; l < L; l++)
        free(qw[l]);
    return st;
}

static void test_snapkv(lkv_rng *r) {
    fixture f;
    setup(&f, r, 50);
    lkv_cache_stats before, after;
    CHECK_OK(lkv_cache_get_stats(f.cache, &before));
    lkv_press_state *st = run_prefill(&f, "snapkv:ratio=0.8,window=8", 0, r);
    CHECK_OK(lkv_cache_get_stats(f.cache, &after));
    for (int l = 0; l < L; l++)
        for (int h = 0; h < HK; h++) {
            CHECK(lkv_seq_n_tokens(f.seq, l, h) == 40, "snapkv keeps 40, got %d",
                  lkv_seq_n_tokens(f.seq, l, h));
            CHECK(has_position(f.seq, l, h, 50), "dominant key survives (l%d h%d)", l, h);
            for (int t = N - 8; t < N; t++)
                CHECK(has_position(f.seq, l, h, t), "window position %d kept", t);
        }
    /* live page bytes follow the kept fraction; committed OS pages drop too
     * (small pages share OS pages, so committed falls less than in_use) */
    CHECK(after.in_use < before.in_use * 0.35, "in-use bytes drop: %zu -> %zu", before.in_use,
          after.in_use);
    CHECK(after.committed < before.committed, "committed bytes drop: %zu -> %zu",
          before.committed, after.committed);
    char buf[4096];
    CHECK(lkv_press_state_report(st, buf, sizeof buf) > 0 && strstr(buf, "snapkv"), "report");
    lkv_press_state_free(st);
    teardown(&f);
}

static void test_streaming(lkv_rng *r) {
    fixture f;
    setup(&f, r, 50);
    lkv_press_state *st = run_prefill(&f, "streamingllm:sinks=4,budget=36", 0, r);
    for (int l = 0; l < L; l++)
        for (int h = 0; h < HK; h++) {
            int n = lkv_seq_n_tokens(f.seq, l, h);
            int32_t pos[N];
            CHECK_OK(lkv_seq_get_positions(f.seq, l, h, 0, n, pos));
            int ok = n == 36;
            for (int i = 0; ok && i < n; i++)
                ok = pos[i] == (i < 4 ? i : N - 32 + (i - 4));
            CHECK(ok, "streaming keeps exactly 4 sinks + 32 recent (n=%d)", n);
        }
    /* decode: the cache stays within budget + one page */
    float k[HK * D], v[HK * D];
    for (int step = 0; step < 100; step++) {
        lkv_test_fill_normal(r, k, HK * D, 0.1f);
        lkv_test_fill_normal(r, v, HK * D, 1.0f);
        for (int l = 0; l < L; l++)
            CHECK_OK(lkv_seq_append(f.seq, l, 1, NULL, k, v));
        CHECK_OK(lkv_press_after_decode(st, f.seq, NULL));
        CHECK(lkv_seq_n_tokens(f.seq, 0, 0) <= 36 + PAGE, "step %d: %d tokens", step,
              lkv_seq_n_tokens(f.seq, 0, 0));
        /* what positions=cache relies on: sinks 0..3, then one contiguous window */
        int n = lkv_seq_n_tokens(f.seq, 1, 1);
        int32_t pos[N];
        CHECK_OK(lkv_seq_get_positions(f.seq, 1, 1, 0, n, pos));
        int ok = 1;
        for (int i = 0; i < n; i++)
            ok &= pos[i] == (i < 4 ? i : N + step - (n - 1 - i));
        CHECK(ok, "step %d: not 4 sinks + one contiguous window", step);
    }
    CHECK(has_position(f.seq, 1, 1, 0) && has_position(f.seq, 1, 1, 3), "sinks survive decoding");
    CHECK(has_position(f.seq, 1, 1, N + 99), "newest kept");
    lkv_press_state_free(st);
    teardown(&f);
}

/* Which policies ask the model for cache positions (model_press.c splits
 * their attention at the sinks); combining them with page selection is refused. */
static void test_cache_positions_flag(void) {
    const struct { const char *spec; int sinks; } cases[] = {
        {"streamingllm:sinks=4,recent=60,positions=cache", 4},
        {"streamingllm:sinks=7,budget=64,positions=cache+int8", 7},
        {"streamingllm:sinks=4,recent=60", 0},
        {"streamingllm:sinks=0,recent=60,positions=cache", 0}, /* nothing to split */
        {"snapkv:ratio=0.5", 0},
    };
    lkv_press_geom g = {L, H, HK, D};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lkv_press *p = NULL;
        lkv_press_state *st = NULL;
        CHECK_OK(lkv_press_create(cases[i].spec, &p));
        if (p)
            CHECK_OK(lkv_press_state_create(p, &g, &st));
        CHECK(lkv_press_cache_position_sinks(st) == cases[i].sinks, "%s: %d sinks", cases[i].spec,
              lkv_press_cache_position_sinks(st));
        lkv_press_state_free(st);
        lkv_press_free(p);
    }
    lkv_press *p = NULL;
    lkv_press_state *st = NULL;
    CHECK_OK(lkv_press_create("streamingllm:positions=cache+quest", &p));
    if (p)
        CHECK(lkv_press_state_create(p, &g, &st) == LKV_ERR_UNSUPPORTED && !st,
              "cache positions with page selection should be refused");
    lkv_press_free(p);
    CHECK(lkv_press_cache_position_sinks(NULL) == 0, "NULL state");
}

static void test_h2o(lkv_rng *r) {
    fixture f;
    setup(&f, r, 30);
    lkv_press_state *st = run_prefill(&f, "h2o:budget=40,recent_frac=0.5", 0, r);
    for (int l = 0; l < L; l++)
        for (int h = 0; h < HK; h++) {
            CHECK(lkv_seq_n_tokens(f.seq, l, h) == 40, "h2o keeps 40");
            CHECK(has_position(f.seq, l, h, 30), "heavy hitter survives");
            CHECK(has_position(f.seq, l, h, N - 1) && has_position(f.seq, l, h, N - 20),
                  "recent kept");
        }
    /* decode with observation: stays at the budget, heavy hitter stays */
    float k[HK * D], v[HK * D], q[H * D], o[H * D], obs[HK * (N + 64)];
    lkv_attn_params ap = attn_params();
    for (int step = 0; step < 30; step++) {
        lkv_test_fill_normal(r, k, HK * D, 0.1f);
        lkv_test_fill_normal(r, v, HK * D, 1.0f);
        for (int l = 0; l < L; l++) {
            CHECK_OK(lkv_seq_append(f.seq, l, 1, NULL, k, v));
            lkv_test_fill_normal(r, q, H * D, 0.1f);
            for (int h = 0; h < H; h++)
                for (int c = 0; c < D; c++)
                    q[h * D + c] += 2.0f * f.u[c];
            memset(obs, 0, sizeof obs);
            CHECK_OK(lkv_seq_attend_observe(f.seq, l, &ap, 1, q, NULL, o, NULL, obs, N + 64, NULL));
            CHECK_OK(lkv_press_observe(st, f.seq, l, obs, N + 64));
        }
        CHECK_OK(lkv_press_after_decode(st, f.seq, NULL));
        CHECK(lkv_seq_n_tokens(f.seq, 1, 0) == 40, "decode keeps budget (%d)",
              lkv_seq_n_tokens(f.seq, 1, 0));
    }
    CHECK(has_position(f.seq, 0, 0, 30) && has_position(f.seq, 1, 1, 30),
          "heavy hitter survives decoding");
    lkv_press_state_free(st);
    teardown(&f);
}

static void test_tova_knorm_random_pyramid(lkv_rng *r) {
    fixture f;
    setup(&f, r, 77);
    lkv_press_state *st = run_prefill(&f, "tova:budget=20", 0, r);
    for (int h = 0; h < HK; h++)
        CHECK(lkv_seq_n_tokens(f.seq, 1, h) == 20 && has_position(f.seq, 1, h, 77),
              "tova keeps 20 incl. the dominant key");
    lkv_press_state_free(st);
    teardown(&f);

    /* knorm: key 77 is large (3u) -> evicted; the smallest keys stay */
    setup(&f, r, 77);
    st = run_prefill(&f, "knorm:ratio=0.5", 0, r);
    CHECK(lkv_seq_n_tokens(f.seq, 0, 0) == 100, "knorm keeps half");
    CHECK(!has_position(f.seq, 0, 0, 77), "the largest key is evicted");
    lkv_press_state_free(st);
    teardown(&f);

    /* random: count, determinism by seed */
    int32_t a[N], b[N];
    for (int rep = 0; rep < 2; rep++) {
        setup(&f, r, 77);
        st = run_prefill(&f, "random:ratio=0.75,seed=7", 0, r);
        CHECK(lkv_seq_n_tokens(f.seq, 1, 1) == 50, "random keeps 50");
        CHECK_OK(lkv_seq_get_positions(f.seq, 1, 1, 0, 50, rep ? b : a));
        lkv_press_state_free(st);
        teardown(&f);
    }
    CHECK(memcmp(a, b, sizeof(int32_t) * 50) == 0, "random is deterministic for a seed");

    /* pyramid: first layer keeps more than the last, total ~ uniform */
    setup(&f, r, 77);
    st = run_prefill(&f, "pyramidkv:budget=60,window=8", 0, r);
    int n0 = lkv_seq_n_tokens(f.seq, 0, 0), n1 = lkv_seq_n_tokens(f.seq, 1, 0);
    CHECK(n0 > n1 && n0 + n1 <= 2 * 60 + 1 && n0 + n1 >= 2 * 60 - 2,
          "pyramid budgets %d > %d, sum ~120", n0, n1);
    lkv_press_state_free(st);
    teardown(&f);
}

static void test_question_kept(lkv_rng *r) {
    fixture f;
    setup(&f, r, 50);
    /* 20 question tokens kept out: span 180, ratio 0.5 keeps 90 + 20 */
    lkv_press_state *st = run_prefill(&f, "snapkv:ratio=0.5,window=8", 20, r);
    CHECK(lkv_seq_n_tokens(f.seq, 0, 1) == 110, "span kept 90 + question 20, got %d",
          lkv_seq_n_tokens(f.seq, 0, 1));
    for (int t = N - 20; t < N; t++)
        CHECK(has_position(f.seq, 0, 1, t), "question token %d kept", t);
    lkv_press_state_free(st);
    teardown(&f);
    /* query-aware: the question is compressed too */
    setup(&f, r, 50);
    st = run_prefill(&f, "snapkv:ratio=0.5,window=8,query_aware=1", 20, r);
    CHECK(lkv_seq_n_tokens(f.seq, 0, 1) == 100, "query-aware keeps 100, got %d",
          lkv_seq_n_tokens(f.seq, 0, 1));
    lkv_press_state_free(st);
    teardown(&f);
}

/* The percentage after "before %zu, after %zu (" in a report line, or -1. */
static double report_percent(const char *buf, const char *line) {
    const char *at = strstr(buf, line);
    const char *open = at ? strchr(at, '(') : NULL;
    return open ? atof(open + 1) : -1.0;
}

/* The report's "before/after" describe the prompt step: read when it starts
 * and when every stage has run, never refreshed by decoding (which appends
 * tokens again and once made "after" exceed "before": 100 decode steps after a
 * snapkv:ratio=0.8 prompt of 200 tokens gave 40 + 100 tokens, >100%). The
 * quantization line describes the first conversion, not a later moment. */
static void test_report_bytes(lkv_rng *r) {
    const char *specs[] = {"snapkv:ratio=0.8,window=8", "snapkv:ratio=0.5,window=8+int8:residual=32"};
    for (int i = 0; i < 2; i++) {
        fixture f;
        setup(&f, r, 50);
        lkv_cache_stats before, after, end;
        CHECK_OK(lkv_cache_get_stats(f.cache, &before));
        lkv_press_state *st = run_prefill(&f, specs[i], 0, r);
        CHECK_OK(lkv_cache_get_stats(f.cache, &after));
        if (!st) {
            teardown(&f);
            continue;
        }
        float k[HK * D], v[HK * D];
        for (int step = 0; step < 150; step++) {
            lkv_test_fill_normal(r, k, HK * D, 0.1f);
            lkv_test_fill_normal(r, v, HK * D, 1.0f);
            for (int l = 0; l < L; l++)
                CHECK_OK(lkv_seq_append(f.seq, l, 1, NULL, k, v));
            CHECK_OK(lkv_press_after_decode(st, f.seq, NULL));
        }
        CHECK_OK(lkv_cache_get_stats(f.cache, &end));
        CHECK(end.committed > before.committed * 0.5, "decoding grew the cache again");
        CHECK(st->bytes_before == before.committed && st->bytes_after == after.committed &&
                  st->bytes_now == end.committed,
              "%s: before %zu/%zu after %zu/%zu now %zu/%zu", specs[i], st->bytes_before,
              before.committed, st->bytes_after, after.committed, st->bytes_now, end.committed);
        char buf[4096];
        lkv_press_state_report(st, buf, sizeof buf);
        double pct = report_percent(buf, "KV bytes committed: before");
        CHECK(pct > 0 && pct <= 100.0 &&
                  fabs(pct - 100.0 * (double)after.committed / (double)before.committed) < 0.1,
              "%s: report says %.1f%%:\n%s", specs[i], pct, buf);
        if (i == 1) {
            double q = report_percent(buf, "at the first quantization");
            CHECK(st->quant_pages > 0 && q > 0 && q < 100.0, "quantization %.1f%%:\n%s", q, buf);
        }
        lkv_press_state_free(st);
        teardown(&f);
    }
}

int main(void) {
    lkv_rng r;
    lkv_rng_seed(&r, lkv_test_seed());
    size_t base = lkv_alloc_bytes_in_use();
    test_snapkv(&r);
    test_streaming(&r);
    test_cache_positions_flag();
    test_h2o(&r);
    test_tova_knorm_random_pyramid(&r);
    test_question_kept(&r);
    test_report_bytes(&r);
    CHECK(lkv_alloc_bytes_in_use() == base, "no leak: %zu -> %zu", base, lkv_alloc_bytes_in_use());
    return lkv_test_finish("test_press_evict");
}
