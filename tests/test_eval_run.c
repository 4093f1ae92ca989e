/* test_eval_run.c -- lkv_eval_run end to end: a small sweep with the real
 * model (passkey at ~512 tokens, 2 samples, the full cache + one policy; a
 * short ppl and fidelity run on the built-in text), rows checked for every
 * standard key and the baseline.
 *
 * Parameter validation runs always. The model part is skipped (printed) when
 * the model file is absent ($LONGKV_ROOT/models/..., set by CTest) and under
 * LONGKV_TEST_QUICK=1 (the sanitizer run), where it would take minutes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "longkv.h"
#include "testutil.h"

static const char *const std_keys[] = {"task",     "model",    "press",       "ratio",
                                       "ctx",      "score",    "kv_bytes",    "peak_rss",
                                       "prefill_tps", "decode_tps", "seed"};

/* Minimal structural JSON check of one object line: braces, balanced quotes
 * outside escapes, every standard key present. */
static int line_ok(const char *line, size_t len) {
    if (len < 2 || line[0] != '{' || line[len - 1] != '}')
        return 0;
    int in_str = 0, depth = 0;
    for (size_t i = 0; i < len; i++) {
        char c = line[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
            else if ((unsigned char)c < 0x20)
                return 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    if (in_str || depth != 0)
        return 0;
    for (size_t k = 0; k < sizeof std_keys / sizeof *std_keys; k++) {
        char pat[40];
        snprintf(pat, sizeof pat, "\"%s\":", std_keys[k]);
        char *tmp = strndup(line, len);
        int found = tmp && strstr(tmp, pat) != NULL;
        free(tmp);
        if (!found)
            return 0;
    }
    return 1;
}

/* Checks every line of the JSONL rendering; counts lines with a substring. */
static int check_rows(lkv_report *r, const char *needle, int *n_lines, int *n_match) {
    size_t len = 0;
    if (lkv_report_render(r, LKV_REPORT_JSONL, NULL, 0, &len) < 0)
        return 0;
    char *buf = malloc(len + 1);
    if (!buf || lkv_report_render(r, LKV_REPORT_JSONL, buf, len + 1, &len) < 0) {
        free(buf);
        return 0;
    }
    int ok = 1;
    *n_lines = *n_match = 0;
    for (char *p = buf; *p;) {
        char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l) {
            (*n_lines)++;
            ok &= line_ok(p, l);
            char *tmp = strndup(p, l);
            if (tmp && strstr(tmp, needle))
                (*n_match)++;
            free(tmp);
        }
        p = e ? e + 1 : p + l;
    }
    free(buf);
    return ok;
}

static void test_params(void) {
    lkv_report *r = NULL;
    CHECK_OK(lkv_report_create(&r));
    lkv_eval_params p = lkv_eval_default_params();
    CHECK(lkv_eval_run(&p, r) == LKV_ERR_INVALID, "no model must be rejected");
    CHECK(lkv_eval_count_runs(&p) == LKV_ERR_INVALID, "no model must be rejected");
    CHECK(lkv_eval_run(NULL, r) == LKV_ERR_INVALID, "NULL params");
    CHECK(lkv_report_n_rows(r) == 0, "nothing ran");
    lkv_report_free(r);
}

static void test_sweep(lkv_model *m, lkv_threadpool *tp) {
    lkv_report *r = NULL;
    CHECK_OK(lkv_report_create(&r));
    static const double ratios[] = {0.5};
    static const int ctxs[] = {512};
    lkv_eval_params p = lkv_eval_default_params();
    p.model = m;
    p.model_name = "smollm2";
    p.tasks = "passkey";
    p.presses = "streamingllm";
    p.ratios = ratios;
    p.n_ratios = 1;
    p.ctxs = ctxs;
    p.n_ctxs = 1;
    p.samples = 2;
    p.tp = tp;
    p.progress = LKV_PROGRESS_OFF;
    p.log_fd = 1;
    CHECK(lkv_eval_count_runs(&p) == 4, "2 configs x 2 samples, got %lld",
          (long long)lkv_eval_count_runs(&p));

    /* bad inputs are errors before anything runs */
    lkv_eval_params bad = p;
    bad.tasks = "nope";
    CHECK(lkv_eval_run(&bad, r) == LKV_ERR_INVALID, "unknown task");
    bad = p;
    bad.presses = "snapkv:window=0";
    CHECK(lkv_eval_run(&bad, r) < 0, "bad spec");
    bad = p;
    bad.tasks = "niah";
    CHECK(lkv_eval_run(&bad, r) == LKV_ERR_INVALID, "niah without a corpus");
    CHECK(lkv_report_n_rows(r) == 0, "nothing ran on bad input");

    CHECK_OK(lkv_eval_run(&p, r));
    int n = 0, n_full = 0, n_stream = 0;
    CHECK(check_rows(r, "\"press\":\"full\"", &n, &n_full), "rows are JSON with every key");
    CHECK(n == 2, "one row per config, got %d", n);
    CHECK(n_full == 1, "the baseline row is there");
    check_rows(r, "\"policy\":\"streamingllm\"", &n, &n_stream);
    CHECK(n_stream == 1, "the policy row is there");
    /* the policy keeps half the prompt: its bytes must be well below the
     * baseline's (kv_frac is measured from the pool) */
    size_t len = 0;
    lkv_report_render(r, LKV_REPORT_JSONL, NULL, 0, &len);
    char *buf = malloc(len + 1);
    if (buf && lkv_report_render(r, LKV_REPORT_JSONL, buf, len + 1, &len) == 0) {
        char *sec = strchr(buf, '\n');
        char *kf = sec ? strstr(sec, "\"kv_frac\":") : NULL;
        double frac = kf ? atof(kf + 10) : NAN;
        CHECK(frac > 0.2 && frac < 0.7, "streamingllm at ratio 0.5 holds %.3f of the baseline",
              frac);
        CHECK(strstr(buf, "\"samples\":2") != NULL, "samples recorded");
    }
    free(buf);
    lkv_report_free(r);
}

static void test_text_tasks(lkv_model *m, lkv_threadpool *tp) {
    lkv_corpus *c = NULL;
    CHECK_OK(lkv_corpus_builtin(&c));
    lkv_report *r = NULL;
    CHECK_OK(lkv_report_create(&r));
    static const double ratios[] = {0.5};
    static const int ctxs[] = {128};
    lkv_eval_params p = lkv_eval_default_params();
    p.model = m;
    p.model_name = "smollm2";
    p.tasks = "ppl,fidelity,agreement";
    p.presses = "streamingllm:sinks=4,recent=28";
    p.ratios = ratios;
    p.n_ratios = 1;
    p.ctxs = ctxs;
    p.n_ctxs = 1;
    p.corpus = c;
    p.ppl_prefix = 96;
    p.ppl_bucket = 16;
    p.tp = tp;
    p.progress = LKV_PROGRESS_OFF;
    p.log_fd = 1;
    CHECK_OK(lkv_eval_run(&p, r));
    int n = 0, n_all = 0, n_fid = 0, n_err = 0;
    CHECK(check_rows(r, "\"scope\":\"all\"", &n, &n_all), "rows are JSON with every key");
    CHECK(n_all == 2, "one overall ppl row per config, got %d", n_all);
    check_rows(r, "\"task\":\"fidelity\"", &n, &n_fid);
    CHECK(n_fid == 2, "fidelity rows for full and the policy, got %d", n_fid);
    check_rows(r, "\"attn_rel_err_mean\":0.", &n, &n_err);
    CHECK(n_err == 2, "the policy's attention-output error was measured (fidelity, agreement)");
    int n_agr = 0, n_agr_full = 0;
    check_rows(r, "\"task\":\"agreement\"", &n, &n_agr);
    CHECK(n_agr == 2, "agreement rows for full and the policy, got %d", n_agr);
    check_rows(r, "\"task\":\"agreement\",\"model\":\"smollm2\",\"press\":\"full\"", &n,
               &n_agr_full);
    CHECK(n_agr_full == 1, "an agreement row for the full cache");
    /* 32 scored tokens in buckets of 16 from position 96: 2 buckets per config */
    CHECK(n == 2 * (2 + 1) + 2 + 2,
          "rows: 2 configs x (2 buckets + all) + 2 fidelity + 2 agreement, got %d", n);
    lkv_report_free(r);
    lkv_corpus_free(c);
}

int main(void) {
    test_params();
    const char *quick = getenv("LONGKV_TEST_QUICK");
    const char *root = getenv("LONGKV_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf",
             root && *root ? root : ".");
    if (quick && *quick && strcmp(quick, "0")) {
        printf("test_eval_run: model sweep skipped (LONGKV_TEST_QUICK=1)\n");
    } else if (access(path, R_OK) != 0) {
        printf("test_eval_run: model sweep skipped (no model at %s; run scripts/get_model.sh)\n",
               path);
    } else {
        lkv_model *m = NULL;
        CHECK_OK(lkv_model_load(path, NULL, &m));
        lkv_threadpool *tp = NULL;
        CHECK_OK(lkv_threadpool_create(1, &tp));
        if (m) {
            test_sweep(m, tp);
            test_text_tasks(m, tp);
        }
        lkv_threadpool_free(tp);
        lkv_model_free(m);
    }
    return lkv_test_finish("test_eval_run");
}
