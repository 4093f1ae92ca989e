/* test_model_gemma3.c -- Gemma-3-270M (Q4_K_M) end to end, through the public
 * API only. Skips (prints "skipped", exits 0) when the model file is absent:
 * $LONGKV_ROOT/models/gemma-3-270m-Q4_K_M.gguf (scripts/get_model.sh --gemma).
 *
 * The reference values are llama.cpp's (llama-cpp-python 0.3.36, flash
 * attention, f16 KV), printed by tests/reference/gen_gemma3_ref.py: the five
 * highest logits at chosen positions. Both engines quantize activations to
 * int8 per block, so logits agree only to that noise: up to ~0.5 logit on
 * these 20-30-logit rows, the same log-softmax RMS (0.23) as llama.cpp with
 * flash attention on against off (tests/reference/compare_llamacpp.py).
 * Values are checked to LOGIT_TOL, argmax where llama.cpp's top-2 gap
 * exceeds GAP_MIN.
 *
 * The sliding window (512 positions on layers l % 6 != 5) is checked directly
 * through the layer hook: changing the token at position 1 must change layer
 * 0's attention output at position 512 (distance 511, inside the window) and
 * must not change it from position 513 on (distance >= 512), while the global
 * layer 5 keeps seeing it.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "longkv.h"
#include "testutil.h"

#define LOGIT_TOL 0.8f
#define GAP_MIN 0.3f

static char model_path[4096];

static int find_model(void) {
    const char *root = getenv("LONGKV_ROOT");
    snprintf(model_path, sizeof model_path, "%s/models/gemma-3-270m-Q4_K_M.gguf",
             root && *root ? root : ".");
    return access(model_path, R_OK) == 0;
}

typedef struct ref_pos {
    int pos;
    int id[5];
    float logit[5];
} ref_pos;

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

/* Our logits at one position against llama.cpp's five highest. */
static void check_ref(const char *what, const float *lg, int V, const ref_pos *r) {
    float worst = 0.0f;
    for (int k = 0; k < 5; k++) {
        float dlt = fabsf(lg[r->id[k]] - r->logit[k]);
        if (dlt > worst)
            worst = dlt;
    }
    int top = argmax(lg, V);
    printf("  %s pos %d: top %d (llama.cpp %d), max |logit diff| over its top-5 %.3f\n", what,
           r->pos, top, r->id[0], worst);
    CHECK(worst < LOGIT_TOL, "%s pos %d: logits differ by %.3f from llama.cpp", what, r->pos,
          worst);
    if (r->logit[0] - r->logit[1] > GAP_MIN)
        CHECK(top == r->id[0], "%s pos %d: argmax %d, llama.cpp %d", what, r->pos, top, r->id[0]);
    else /* a near-tie: llama.cpp's choice must be a near-top for us too */
        CHECK(lg[top] - lg[r->id[0]] < GAP_MIN + LOGIT_TOL, "%s pos %d: near-tie", what, r->pos);
}

/* ------------------------------------------------------------ info */

static void test_info(lkv_model *m) {
    lkv_model_info in;
    CHECK_OK(lkv_model_get_info(m, &in));
    CHECK(!strcmp(in.arch, "gemma3"), "arch %s", in.arch);
    CHECK(in.n_layers == 18 && in.n_embd == 640 && in.n_ff == 2048 && in.n_heads == 4 &&
              in.n_kv_heads == 1 && in.head_dim == 256 && in.n_vocab == 262144 &&
              in.n_ctx_train == 32768 && in.tied_output,
          "hyperparameters L%d D%d F%d H%d Hk%d d%d V%d ctx%d tied%d", in.n_layers, in.n_embd,
          in.n_ff, in.n_heads, in.n_kv_heads, in.head_dim, in.n_vocab, in.n_ctx_train,
          in.tied_output);
    CHECK(fabsf(in.rope_theta - 1e6f) < 1.0f, "rope_theta %g", in.rope_theta);
    printf("gemma3: %s, %zu params, %.1f MB of weights\n", in.name, in.n_params,
           in.weight_bytes / 1e6);
}

/* ------------------------------------------------------------ short prompt */

/* "The capital of France is" and llama.cpp's greedy continuation
 * " the capital of the country of France." */
static const int32_t SHORT_IDS[14] = {2,   818, 5279, 529,  7001, 563, 506,
                                      5279, 529, 506, 2891, 529,  7001, 236761};
static const ref_pos SHORT_REF[8] = {
    {5, {506, 496, 9079, 886, 3224}, {19.1317f, 18.5327f, 18.4528f, 18.1072f, 17.8750f}},
    {6, {5279, 1346, 3207, 7488, 236743}, {17.1844f, 15.4356f, 15.1589f, 15.0352f, 14.8701f}},
    {7, {529, 3207, 532, 528, 236764}, {22.1305f, 19.5929f, 17.5184f, 16.6379f, 16.5303f}},
    {8, {506, 7001, 496, 31703, 672}, {19.1754f, 18.6265f, 17.0442f, 16.1858f, 15.7407f}},
    {9, {2891, 7830, 3640, 15305, 9145}, {16.1289f, 16.1134f, 15.9169f, 15.3547f, 15.3452f}},
    {10, {529, 236761, 236764, 3224, 532}, {19.4671f, 19.4068f, 19.2035f, 17.9250f, 17.7192f}},
    {11, {7001, 506, 31703, 14145, 66333}, {18.9945f, 18.4179f, 16.8540f, 16.5265f, 16.3903f}},
    {12, {236761, 236764, 532, 563, 528}, {21.0536f, 20.2314f, 18.8866f, 18.8166f, 17.5539f}},
};

static void test_short(lkv_model *m, lkv_threadpool *tp) {
    const int V = lkv_model_n_vocab(m);
    const char *prompt = "The capital of France is";
    int32_t ids[16];
    int n = lkv_tokenize(m, prompt, strlen(prompt), 1, 0, ids, 16);
    CHECK(n == 6 && !memcmp(ids, SHORT_IDS, 6 * sizeof(int32_t)),
          "tokens of '%s' (BOS first) differ from llama.cpp's (n %d)", prompt, n);

    lkv_ctx_params cp = lkv_ctx_default_params();
    cp.n_ctx = 64;
    cp.tp = tp;
    lkv_ctx *ctx = NULL;
    CHECK_OK(lkv_ctx_create(m, &cp, &ctx));
    float *all = malloc((size_t)14 * V * sizeof(float));
    if (!ctx || !all) {
        lkv_ctx_free(ctx);
        free(all);
        return;
    }
    /* one batched evaluation, every position's logits */
    CHECK_OK(lkv_ctx_eval(ctx, SHORT_IDS, 14, all));
    for (int k = 0; k < 8; k++)
        check_ref("batch", all + (size_t)SHORT_REF[k].pos * V, V, &SHORT_REF[k]);
    /* prompt, then decode: greedy generation reproduces llama.cpp's text */
    CHECK_OK(lkv_ctx_reset(ctx));
    CHECK_OK(lkv_ctx_prefill(ctx, SHORT_IDS, 6));
    int same = 0;
    for (int k = 0; k < 8; k++) {
        const float *lg = lkv_ctx_logits(ctx);
        if (!lg)
            break;
        check_ref("decode", lg, V, &SHORT_REF[k]);
        same += argmax(lg, V) == SHORT_IDS[6 + k];
        if (lkv_ctx_decode(ctx, SHORT_IDS[6 + k]) < 0)
            break;
    }
    char text[256] = "";
    size_t used = 0;
    for (int k = 6; k < 14; k++) {
        int pl = lkv_token_to_piece(m, SHORT_IDS[k], text + used, sizeof text - used - 1);
        if (pl > 0)
            used += (size_t)pl;
    }
    text[used] = '\0';
    printf("  greedy continuation: %d/8 tokens as llama.cpp's '%s'\n", same, text);
    CHECK(same >= 7, "greedy continuation: %d of 8 tokens match", same);
    CHECK(!strcmp(text, " the capital of the country of France."), "pieces '%s'", text);
    lkv_ctx_free(ctx);
    free(all);
}

/* ------------------------------------------------------------ past the window */

static const char PARA[] =
    "It is a truth universally acknowledged, that a single man in possession of a good "
    "fortune, must be in want of a wife. However little known the feelings or views of "
    "such a man may be on his first entering a neighbourhood, this truth is so well fixed "
    "in the minds of the surrounding families, that he is considered as the rightful "
    "property of some one or other of their daughters.\n\n";
#define LONG_REPS 8
#define LONG_N 625

static const ref_pos LONG_REF[5] = {
    {100, {529, 236764, 653, 531, 512}, {29.0853f, 20.6242f, 20.1356f, 19.5873f, 19.5380f}},
    {511, {496, 1131, 528, 614, 506}, {30.7468f, 21.7154f, 21.1946f, 19.9580f, 19.9537f}},
    {512, {34291, 12960, 19308, 9744, 3155}, {29.4465f, 23.2850f, 23.1654f, 20.8737f, 20.7552f}},
    {600, {21161, 3666, 12018, 108, 48807}, {33.5999f, 25.0982f, 23.4872f, 22.1417f, 22.1179f}},
    {624, {1509, 2094, 818, 509, 902}, {21.1285f, 16.4269f, 15.9144f, 15.3773f, 15.2857f}},
};

static int long_tokens(lkv_model *m, int32_t *ids, int cap) {
    size_t pl = strlen(PARA);
    char *text = malloc(pl * LONG_REPS + 1);
    if (!text)
        return 0;
    for (int i = 0; i < LONG_REPS; i++)
        memcpy(text + i * pl, PARA, pl);
    int n = lkv_tokenize(m, text, pl * LONG_REPS, 1, 0, ids, cap);
    free(text);
    CHECK(n == LONG_N, "long text: %d tokens, llama.cpp %d", n, LONG_N);
    return n == LONG_N ? n : 0;
}

/* Prefill chunks and decode steps across position 512, against llama.cpp. */
static void test_long(lkv_model *m, lkv_threadpool *tp, const int32_t *ids) {
    const int V = lkv_model_n_vocab(m);
    lkv_ctx_params cp = lkv_ctx_default_params();
    cp.n_ctx = 1024;
    cp.n_batch = 128;
    cp.tp = tp;
    lkv_ctx *ctx = NULL;
    CHECK_OK(lkv_ctx_create(m, &cp, &ctx));
    if (!ctx)
        return;
    int done = 0;
    for (int k = 0; k < 5; k++) {
        int upto = LONG_REF[k].pos + 1; /* logits of the last token of ids[done..upto) */
        int rc = LKV_OK;
        if (upto - done > 8) {
            rc = lkv_ctx_prefill(ctx, ids + done, upto - done);
        } else {
            for (int i = done; i < upto && rc == LKV_OK; i++)
                rc = lkv_ctx_decode(ctx, ids[i]);
        }
        CHECK(rc == LKV_OK, "eval up to %d: %s", upto, lkv_last_error());
        if (rc < 0)
            break;
        done = upto;
        check_ref(k == 2 || k == 4 ? "decode" : "prefill", lkv_ctx_logits(ctx), V,
                  &LONG_REF[k]);
    }
    lkv_ctx_free(ctx);
}

/* ------------------------------------------------------------ the window */

#define WIN_FIRST 510 /* recorded positions: WIN_FIRST .. WIN_N-1 */
#define WIN_N 520
#define WIN_PREFILL 514

typedef struct win_rec {
    float *att[2]; /* layer 0, layer 5: [WIN_N - WIN_FIRST][H*d] */
    int hd;
} win_rec;

static int record(void *user, int layer, int n_tok, const int32_t *pos, const float *q,
                  const float *k, const float *v, const float *att) {
    (void)q, (void)k, (void)v;
    win_rec *r = user;
    if (layer != 0 && layer != 5)
        return 0;
    for (int t = 0; t < n_tok; t++)
        if (pos[t] >= WIN_FIRST && pos[t] < WIN_N)
            memcpy(r->att[layer == 5] + (size_t)(pos[t] - WIN_FIRST) * r->hd,
                   att + (size_t)t * r->hd, (size_t)r->hd * sizeof(float));
    return 0;
}

static void run_window(lkv_model *m, lkv_threadpool *tp, const int32_t *ids, win_rec *r) {
    lkv_ctx_params cp = lkv_ctx_default_params();
    cp.n_ctx = WIN_N;
    cp.n_batch = 256;
    cp.tp = tp;
    cp.hook = record;
    cp.hook_user = r;
    lkv_ctx *ctx = NULL;
    CHECK_OK(lkv_ctx_create(m, &cp, &ctx));
    if (!ctx)
        return;
    CHECK_OK(lkv_ctx_prefill(ctx, ids, WIN_PREFILL)); /* chunks of 256: 0, 256, 512 */
    for (int i = WIN_PREFILL; i < WIN_N; i++)
        CHECK_OK(lkv_ctx_decode(ctx, ids[i]));
    lkv_ctx_free(ctx);
}

static void test_window(lkv_model *m, lkv_threadpool *tp, const int32_t *ids) {
    lkv_model_info in;
    CHECK_OK(lkv_model_get_info(m, &in));
    int hd = in.n_heads * in.head_dim, rows = WIN_N - WIN_FIRST;
    win_rec a = {{NULL, NULL}, hd}, b = {{NULL, NULL}, hd};
    for (int l = 0; l < 2; l++) {
        a.att[l] = calloc((size_t)rows * hd, sizeof(float));
        b.att[l] = calloc((size_t)rows * hd, sizeof(float));
    }
    int32_t *alt = malloc(WIN_N * sizeof(int32_t));
    if (a.att[0] && a.att[1] && b.att[0] && b.att[1] && alt) {
        memcpy(alt, ids, WIN_N * sizeof(int32_t));
        alt[1] = ids[1] == 818 ? 1509 : 818; /* another ordinary token at position 1 */
        run_window(m, tp, ids, &a);
        run_window(m, tp, alt, &b);
        for (int p = WIN_FIRST; p < WIN_N; p++) {
            size_t o = (size_t)(p - WIN_FIRST) * hd;
            double d0 = lkv_test_max_abs_err(a.att[0] + o, b.att[0] + o, (size_t)hd);
            double d5 = lkv_test_max_abs_err(a.att[1] + o, b.att[1] + o, (size_t)hd);
            if (p == WIN_FIRST || p >= 511)
                printf("  window: pos %d (distance %d from the change): layer 0 |diff| %.3g, "
                       "layer 5 %.3g\n",
                       p, p - 1, d0, d5);
            if (p - 1 < 512)
                CHECK(d0 > 1e-4, "layer 0 (local) at pos %d must see position 1", p);
            else
                CHECK(d0 == 0.0, "layer 0 (local) at pos %d sees position 1 (|diff| %g)", p, d0);
            CHECK(d5 > 1e-4, "layer 5 (global) at pos %d must see position 1", p);
        }
    }
    for (int l = 0; l < 2; l++) {
        free(a.att[l]);
        free(b.att[l]);
    }
    free(alt);
}

/* ------------------------------------------------------------ a policy */

static void test_press(lkv_model *m, lkv_threadpool *tp, const int32_t *ids) {
    const int V = lkv_model_n_vocab(m);
    lkv_press *p = NULL;
    CHECK_OK(lkv_press_create("snapkv:ratio=0.5", &p));
    lkv_ctx_params cp = lkv_ctx_default_params();
    cp.n_ctx = 512;
    cp.n_batch = 128;
    cp.tp = tp;
    cp.press = p;
    lkv_ctx *ctx = NULL;
    if (p)
        CHECK_OK(lkv_ctx_create(m, &cp, &ctx));
    if (ctx) {
        /* two paragraphs as the prompt; the third's first tokens are decoded */
        int n_prompt = 2 * 78 + 1, n = n_prompt + 12, agree = 0;
        CHECK_OK(lkv_ctx_prefill_prompt(ctx, ids, n_prompt, 0));
        for (int i = n_prompt; i < n; i++) {
            const float *lg = lkv_ctx_logits(ctx);
            if (!lg)
                break;
            agree += argmax(lg, V) == ids[i];
            CHECK_OK(lkv_ctx_decode(ctx, ids[i]));
        }
        char rep[1024];
        lkv_ctx_press_report(ctx, rep, sizeof rep);
        printf("  snapkv:ratio=0.5: %d/%d next tokens of the repeated paragraph, %zu KV bytes\n%s",
               agree, n - n_prompt, lkv_ctx_kv_bytes(ctx), rep);
        CHECK(agree >= (n - n_prompt) / 2, "snapkv: %d of %d", agree, n - n_prompt);
    }
    lkv_ctx_free(ctx);
    lkv_press_free(p);
}

/* ------------------------------------------------------------ bad variants */

/* A GGUF with Gemma 3's hyperparameter keys and no tensors; `extra` adds or
 * overrides one key (a u32 when str is NULL, else a string). */
typedef struct kv_extra {
    const char *key;
    uint32_t u;
    const char *str;
} kv_extra;

static size_t put_key(uint8_t *buf, size_t o, const char *key, uint32_t type) {
    uint64_t n = strlen(key);
    memcpy(buf + o, &n, 8);
    memcpy(buf + o + 8, key, n);
    memcpy(buf + o + 8 + n, &type, 4);
    return o + 12 + n;
}

static size_t tiny_gemma3(uint8_t *buf, const kv_extra *extra) {
    static const kv_extra base[] = {
        {"gemma3.block_count", 18, NULL},        {"gemma3.embedding_length", 640, NULL},
        {"gemma3.feed_forward_length", 2048, NULL}, {"gemma3.attention.head_count", 4, NULL},
        {"gemma3.attention.head_count_kv", 1, NULL}, {"gemma3.context_length", 32768, NULL},
        {"gemma3.attention.key_length", 256, NULL}, {"gemma3.attention.value_length", 256, NULL},
        {"gemma3.attention.sliding_window", 512, NULL},
    };
    const int nb = (int)(sizeof base / sizeof base[0]);
    size_t o = 0;
    uint32_t u32 = 3;
    uint64_t u64;
    memcpy(buf, "GGUF", 4);
    memcpy(buf + 4, &u32, 4);
    u64 = 0; /* tensors */
    memcpy(buf + 8, &u64, 8);
    u64 = (uint64_t)nb + 3;
    memcpy(buf + 16, &u64, 8);
    o = 24;
    o = put_key(buf, o, "general.architecture", 8);
    u64 = 6;
    memcpy(buf + o, &u64, 8);
    memcpy(buf + o + 8, "gemma3", 6);
    o += 14;
    o = put_key(buf, o, "gemma3.attention.layer_norm_rms_epsilon", 6);
    float eps = 1e-6f;
    memcpy(buf + o, &eps, 4);
    o += 4;
    for (int i = 0; i < nb; i++) {
        const kv_extra *e = &base[i];
        if (extra && !strcmp(extra->key, e->key))
            e = extra; /* override */
        o = put_key(buf, o, e->key, 4);
        memcpy(buf + o, &e->u, 4);
        o += 4;
    }
    const char *k = extra ? extra->key : "gemma3.rope.freq_base_swa";
    int overridden = 0;
    for (int i = 0; i < nb; i++)
        overridden |= extra && !strcmp(extra->key, base[i].key);
    if (!extra || overridden) { /* a harmless extra key keeps the count */
        o = put_key(buf, o, "general.name", 8);
        u64 = 4;
        memcpy(buf + o, &u64, 8);
        memcpy(buf + o + 8, "test", 4);
        o += 12;
    } else if (extra->str) {
        o = put_key(buf, o, k, 8);
        u64 = strlen(extra->str);
        memcpy(buf + o, &u64, 8);
        memcpy(buf + o + 8, extra->str, u64);
        o += 8 + u64;
    } else {
        o = put_key(buf, o, k, 4);
        memcpy(buf + o, &extra->u, 4);
        o += 4;
    }
    while (o % 32)
        buf[o++] = 0;
    return o;
}

static void test_bad_variants(void) {
    static const struct {
        kv_extra e;
        int rc;
        const char *msg;
    } cases[] = {
        {{"gemma3.rope.scaling.type", 0, "yarn"}, LKV_ERR_UNSUPPORTED, "yarn"},
        {{"gemma3.attention.key_length", 320, NULL}, LKV_ERR_UNSUPPORTED, "head dim"},
        {{"gemma3.attention.value_length", 128, NULL}, LKV_ERR_UNSUPPORTED, "head dims"},
        {{"gemma3.attention.sliding_window", 1u << 30, NULL}, LKV_ERR_FORMAT, "sliding_window"},
        {{"gemma3.attention.head_count_kv", 3, NULL}, LKV_ERR_FORMAT, "KV heads"},
        {{"gemma3.block_count", 0, NULL}, LKV_ERR_FORMAT, "block_count"},
    };
    char path[64];
    snprintf(path, sizeof path, "/tmp/lkv_gemma3_bad_%d.gguf", (int)getpid());
    uint8_t *buf = calloc(1, 8192);
    for (size_t i = 0; buf && i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = tiny_gemma3(buf, &cases[i].e);
        FILE *f = fopen(path, "wb");
        CHECK(f && fwrite(buf, 1, n, f) == n, "write %s", path);
        if (f)
            fclose(f);
        lkv_model *m = NULL;
        int rc = lkv_model_load(path, NULL, &m);
        CHECK(rc == cases[i].rc && !m && strstr(lkv_last_error(), cases[i].msg),
              "%s: rc %d, '%s'", cases[i].e.key, rc, lkv_last_error());
        lkv_model_free(m);
    }
    /* every key valid: the first missing tensor is named */
    if (buf) {
        size_t n = tiny_gemma3(buf, NULL);
        FILE *f = fopen(path, "wb");
        if (f) {
            fwrite(buf, 1, n, f);
            fclose(f);
        }
        lkv_model *m = NULL;
        int rc = lkv_model_load(path, NULL, &m);
        CHECK(rc == LKV_ERR_FORMAT && strstr(lkv_last_error(), "token_embd.weight"),
              "no tensors: rc %d, '%s'", rc, lkv_last_error());
        lkv_model_free(m);
    }
    remove(path);
    free(buf);
}

int main(void) {
    test_bad_variants();
    if (!find_model()) {
        printf("test_model_gemma3: model tests skipped (no model at %s; run "
               "scripts/get_model.sh --gemma)\n",
               model_path);
        return lkv_test_finish("test_model_gemma3");
    }
    lkv_model *m = NULL;
    int rc = lkv_model_load(model_path, NULL, &m);
    CHECK(rc == LKV_OK, "load %s: %s", model_path, lkv_last_error());
    if (!m)
        return lkv_test_finish("test_model_gemma3");
    lkv_threadpool *tp = lkv_test_threadpool();
    test_info(m);
    test_short(m, tp);
    int32_t *ids = malloc(1024 * sizeof(int32_t));
    if (ids && long_tokens(m, ids, 1024)) {
        test_long(m, tp, ids);
        test_window(m, tp, ids);
        test_press(m, tp, ids);
    }
    free(ids);
    lkv_threadpool_free(tp);
    lkv_model_free(m);
    return lkv_test_finish("test_model_gemma3");
}
