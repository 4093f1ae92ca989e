/* run.c -- `longkv eval` sweeps: the configurations (policy x ratio, with the
 * full-cache baseline first), the question tasks (passkey, NIAH) and the loop.
 *
 * Question tasks. A sample's context + "\n" + question go in the user turn of
 * the model's chat template with the system message "You are a helpful
 * assistant." (SmolLM2's own default system prompt makes the 135M model answer
 * badly; the same template is used for every policy), and the assistant turn
 * starts with the answer prefix. The text before the question and the question
 * onwards are tokenized separately and joined, so the question's token count is
 * exact; lkv_ctx_prefill_prompt keeps those tokens out of compression unless
 * the run is query-aware. Generation is greedy, up to a few tokens more than
 * the answer needs, and stops at end of turn.
 *
 * Samples are generated once per (task, ctx, depth, sample) and run through
 * every configuration, so all policies see the same prompts.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "eval/eval.h"
#include "eval/run.h"
#include "press/press.h"

static const char SYSTEM_MSG[] = "You are a helpful assistant.";

lkv_eval_params lkv_eval_default_params(void) {
    static const double def_ratio[1] = {0.5};
    static const int def_ctx[1] = {1024};
    static const double def_depth[1] = {50.0};
    lkv_eval_params p;
    memset(&p, 0, sizeof p);
    p.model_name = "model";
    p.tasks = "passkey";
    p.ratios = def_ratio;
    p.n_ratios = 1;
    p.ctxs = def_ctx;
    p.n_ctxs = 1;
    p.depths = def_depth;
    p.n_depths = 1;
    p.samples = 4;
    p.n_batch = 256;
    p.progress = LKV_PROGRESS_AUTO;
    p.log_fd = 2;
    return p;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------ tasks list */

#define MAX_TASKS 16
#define MAX_SPECS 32
#define MAX_CFGS 512

typedef struct task_list {
    char name[MAX_TASKS][24];
    int n;
} task_list;

static int is_question_task(const char *t) {
    lkv_task_params tp = lkv_task_default_params();
    return lkv_task_params_preset(t, &tp) == LKV_OK;
}

/* tasks scored on a stretch of corpus text rather than on a question */
static int is_text_task(const char *t) {
    return !strcmp(t, "ppl") || !strcmp(t, "fidelity") || !strcmp(t, "agreement");
}

static int parse_tasks(const char *s, task_list *out) {
    out->n = 0;
    if (!s || !*s)
        LKV_FAIL(LKV_ERR_INVALID, "eval: no task given");
    const char *p = s;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0 || len >= sizeof out->name[0])
            LKV_FAIL(LKV_ERR_INVALID, "eval: bad task list \"%s\"", s);
        if (out->n >= MAX_TASKS)
            LKV_FAIL(LKV_ERR_INVALID, "eval: more than %d tasks", MAX_TASKS);
        char *name = out->name[out->n];
        memcpy(name, p, len);
        name[len] = '\0';
        if (!strcmp(name, "niah"))
            strcpy(name, "niah_single");
        if (!is_question_task(name) && !is_text_task(name))
            LKV_FAIL(LKV_ERR_INVALID,
                     "eval: unknown task \"%s\" (passkey, niah_single, niah_multikey, "
                     "niah_multivalue, niah_multiquery, ppl, fidelity, agreement)",
                     name);
        out->n++;
        p = e ? e + 1 : p + len;
    }
    return LKV_OK;
}

/* ------------------------------------------------------------ configurations */

static void append(char *dst, size_t cap, const char *s) {
    size_t n = strlen(dst);
    if (n + 1 < cap)
        snprintf(dst + n, cap - n, "%s", s);
}

/* Builds the stage text with extra "key=value" appended (name[:params]). */
static void stage_with(char *out, size_t cap, const char *stage, size_t len, const char *extra) {
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%.*s", (int)len, stage);
    size_t tl = strlen(tmp);
    if (tl >= cap)
        tl = cap - 1;
    memcpy(out, tmp, tl);
    out[tl] = '\0';
    if (!extra || !*extra)
        return;
    append(out, cap, strchr(tmp, ':') ? "," : ":");
    append(out, cap, extra);
}

static int method_has(const lkv_press_method *m, const char *key) {
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].key, key))
            return 1;
    return 0;
}

/* Expands one user spec into configurations at context length ctx. */
static int expand_spec(const lkv_eval_params *p, const char *spec, int ctx, eval_cfg *cfgs,
                       int *n, int cap) {
    struct lkv_press parsed;
    int rc = lkv_press_parse(spec, &parsed);
    if (rc < 0)
        return rc;
    if (parsed.n_stages == 1 && parsed.stage[0].method->cls == LKV_PC_NONE)
        return LKV_OK; /* "full": the baseline is always there */
    /* which stages take the sweep's amount */
    int wants_ratio[LKV_PRESS_MAX_STAGES] = {0}, wants_budget[LKV_PRESS_MAX_STAGES] = {0};
    int any = 0;
    for (int s = 0; s < parsed.n_stages; s++) {
        const lkv_press_stage *st = &parsed.stage[s];
        const lkv_press_method *m = st->method;
        int has_r = method_has(m, "ratio"), has_b = method_has(m, "budget");
        int given = (has_r && lkv_press_stage_given(st, "ratio")) ||
                    (has_b && lkv_press_stage_given(st, "budget"));
        /* StreamingLLM with its own window is "given" too */
        if (method_has(m, "recent") && lkv_press_stage_given(st, "recent"))
            given = 1;
        if (given)
            continue;
        if (has_r)
            wants_ratio[s] = 1, any = 1;
        else if (has_b)
            wants_budget[s] = 1, any = 1;
    }
    int n_amounts = any ? p->n_ratios : 1;
    for (int a = 0; a < n_amounts; a++) {
        if (*n >= cap)
            LKV_FAIL(LKV_ERR_INVALID, "eval: more than %d configurations", cap);
        eval_cfg *c = &cfgs[*n];
        memset(c, 0, sizeof *c);
        c->ratio = any ? p->ratios[a] : NAN;
        /* rebuild the spec stage by stage */
        const char *q = spec;
        for (int s = 0; s < parsed.n_stages; s++) {
            const char *e = strchr(q, '+');
            size_t len = e ? (size_t)(e - q) : strlen(q);
            char extra[96] = "", st[512], label[256];
            if (wants_ratio[s])
                snprintf(extra, sizeof extra, "ratio=%g", p->ratios[a]);
            else if (wants_budget[s]) {
                long b = lround((1.0 - p->ratios[a]) * ctx);
                snprintf(extra, sizeof extra, "budget=%ld", b < 16 ? 16 : b);
            }
            if (p->query_aware && method_has(parsed.stage[s].method, "query_aware") &&
                !lkv_press_stage_given(&parsed.stage[s], "query_aware"))
                append(extra, sizeof extra, *extra ? ",query_aware=1" : "query_aware=1");
            stage_with(st, sizeof st, q, len, extra);
            stage_with(label, sizeof label, q, len, NULL);
            if (s)
                append(c->spec, sizeof c->spec, "+"), append(c->policy, sizeof c->policy, "+");
            append(c->spec, sizeof c->spec, st);
            append(c->policy, sizeof c->policy, label);
            q = e ? e + 1 : q + len;
        }
        /* validate now, so a bad spec fails before anything runs */
        lkv_press *test = NULL;
        rc = lkv_press_create(c->spec, &test);
        lkv_press_free(test);
        if (rc < 0)
            return rc;
        (*n)++;
    }
    return LKV_OK;
}

/* The baseline first, then every spec x ratio. */
static int build_cfgs(const lkv_eval_params *p, int ctx, eval_cfg *cfgs, int *n) {
    *n = 0;
    memset(&cfgs[0], 0, sizeof cfgs[0]);
    strcpy(cfgs[0].spec, "full");
    strcpy(cfgs[0].policy, "full");
    cfgs[0].ratio = 0.0;
    cfgs[0].is_full = 1;
    *n = 1;
    if (!p->presses)
        return LKV_OK;
    const char *s = p->presses;
    while (*s) {
        const char *e = strchr(s, ';');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        char spec[512];
        if (len >= sizeof spec)
            LKV_FAIL(LKV_ERR_INVALID, "eval: spec too long");
        memcpy(spec, s, len);
        spec[len] = '\0';
        /* trim spaces */
        char *b = spec;
        while (*b == ' ')
            b++;
        char *t = b + strlen(b);
        while (t > b && t[-1] == ' ')
            *--t = '\0';
        if (*b)
            LKV_TRY(expand_spec(p, b, ctx, cfgs, n, MAX_CFGS));
        s = e ? e + 1 : s + len;
    }
    return LKV_OK;
}

double eval_row_ratio(const eval_cfg *cfg, int64_t kv_bytes, int64_t base_kv_bytes,
                      int *measured) {
    *measured = 0;
    if (cfg->is_full)
        return 0.0;
    if (!isnan(cfg->ratio))
        return cfg->ratio;
    *measured = 1;
    if (kv_bytes < 0 || base_kv_bytes <= 0)
        return NAN;
    return 1.0 - (double)kv_bytes / (double)base_kv_bytes;
}

/* ------------------------------------------------------------ contexts */

int eval_ctx_create(const eval_run *run, const eval_cfg *cfg, int n_ctx, lkv_layer_hook hook,
                    void *hook_user, lkv_press **press, lkv_ctx **ctx) {
    *press = NULL;
    *ctx = NULL;
    if (!cfg->is_full)
        LKV_TRY(lkv_press_create(cfg->spec, press));
    lkv_ctx_params cp = lkv_ctx_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = run->p->n_batch > 0 ? run->p->n_batch : 256;
    cp.tp = run->p->tp;
    cp.hook = hook;
    cp.hook_user = hook_user;
    cp.press = *press;
    /* the page size a policy needs (KIVI's group, Quest's page) */
    int pt = 0;
    lkv_dtype dt = LKV_DTYPE_F16;
    if (*press && lkv_press_cache_requirements(*press, &pt, &dt) == LKV_OK && pt > 0)
        cp.page_tokens = pt;
    int rc = lkv_ctx_create(run->p->model, &cp, ctx);
    if (rc < 0) {
        lkv_press_free(*press);
        *press = NULL;
    }
    return rc;
}

/* ------------------------------------------------------------ progress / log */

void eval_progress_step(eval_run *run, const char *note) {
    run->done++;
    if (run->pg)
        lkv_progress_update(run->pg, run->done, note);
}

void eval_log(const eval_run *run, const char *fmt, ...) {
    if (run->p->log_fd < 0)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (run->tty && run->pg)
        dprintf(run->p->log_fd, "\r\033[K");
    dprintf(run->p->log_fd, "%s\n", line);
}

/* ------------------------------------------------------------ tokens */

/* Tokenizes text[0..len) into *ids (lkv_malloc'ed). */
static int tokenize_alloc(const lkv_model *m, const char *text, size_t len, int add_bos,
                          int parse_special, int32_t **ids, int *n) {
    *ids = NULL;
    *n = 0;
    int need = lkv_tokenize(m, text, len, add_bos, parse_special, NULL, 0);
    if (need < 0)
        return need;
    int32_t *buf = lkv_malloc(((size_t)need + 1) * sizeof *buf);
    if (!buf)
        LKV_FAIL(LKV_ERR_NOMEM, "eval: out of memory for %d tokens", need);
    int got = lkv_tokenize(m, text, len, add_bos, parse_special, buf, need);
    if (got != need) {
        lkv_free(buf);
        return got < 0 ? got : lkv_set_error(LKV_ERR_INVALID, "eval: tokenizer count changed");
    }
    *ids = buf;
    *n = need;
    return LKV_OK;
}

int eval_text_tokens(const lkv_model *m, const lkv_corpus *c, uint64_t seed, int n_tokens,
                     int32_t **out) {
    *out = NULL;
    size_t ns = lkv_corpus_n_sentences(c);
    if (ns == 0)
        LKV_FAIL(LKV_ERR_INVALID, "eval: empty corpus");
    uint64_t x = seed ^ 0x7e57u;
    size_t i = (size_t)(lkv_splitmix64(&x) % ns);
    /* move to the start of a paragraph */
    while (i > 0) {
        int pe = 0;
        const char *t;
        size_t l;
        LKV_TRY(lkv_corpus_sentence(c, i - 1, &t, &l, &pe));
        if (pe)
            break;
        i--;
    }
    lkv_sb sb = {0};
    /* about 4 bytes per token in English prose; take 6 to be safe, and retry */
    size_t want = (size_t)n_tokens * 6 + 256;
    for (int attempt = 0; attempt < 4; attempt++) {
        while (sb.len < want && !sb.oom) {
            const char *t;
            size_t l;
            int pe = 0;
            int src = lkv_corpus_sentence(c, i, &t, &l, &pe);
            if (src < 0) {
                lkv_sb_free(&sb);
                return src;
            }
            lkv_sb_append(&sb, t, l);
            lkv_sb_puts(&sb, pe ? "\n\n" : " ");
            i = (i + 1) % ns;
        }
        int rc = lkv_sb_status(&sb);
        if (rc < 0) {
            lkv_sb_free(&sb);
            return rc;
        }
        int32_t *ids = NULL;
        int n = 0;
        rc = tokenize_alloc(m, sb.data, sb.len, 1, 0, &ids, &n);
        if (rc < 0) {
            lkv_sb_free(&sb);
            return rc;
        }
        if (n >= n_tokens) {
            lkv_sb_free(&sb);
            *out = ids;
            return LKV_OK;
        }
        lkv_free(ids);
        want *= 2;
    }
    lkv_sb_free(&sb);
    LKV_FAIL(LKV_ERR_INVALID, "eval: could not gather %d tokens of text", n_tokens);
}

/* ------------------------------------------------------------ question tasks */

typedef struct prompt_toks {
    int32_t *ids;
    int n, n_question;
    lkv_task_sample s;
} prompt_toks;

/* Chat text up to the end of the context, and from the question on. */
static int chat_split(const lkv_model *m, const lkv_task_sample *s, char **head, char **tail) {
    *head = *tail = NULL;
    lkv_sb user = {0};
    lkv_sb_append(&user, s->context, s->context_len);
    lkv_sb_puts(&user, "\n");
    size_t q_off = user.len;
    lkv_sb_puts(&user, s->question);
    LKV_TRY(lkv_sb_status(&user));
    lkv_chat_msg msgs[2] = {{"system", SYSTEM_MSG}, {"user", user.data}};
    int len = lkv_chat_format(m, msgs, 2, 1, NULL, 0);
    if (len < 0) {
        lkv_sb_free(&user);
        return len;
    }
    char *buf = lkv_malloc((size_t)len + 1);
    if (!buf) {
        lkv_sb_free(&user);
        LKV_FAIL(LKV_ERR_NOMEM, "eval: out of memory");
    }
    lkv_chat_format(m, msgs, 2, 1, buf, (size_t)len + 1);
    /* the user text appears verbatim in the formatted chat, after the system
     * message: take its last occurrence */
    char *at = NULL;
    for (char *f = strstr(buf, user.data); f; f = strstr(f + 1, user.data))
        at = f;
    if (!at) {
        lkv_free(buf);
        lkv_sb_free(&user);
        LKV_FAIL(LKV_ERR_STATE, "eval: the chat template changed the prompt text");
    }
    size_t split = (size_t)(at - buf) + q_off;
    lkv_sb h = {0}, t = {0};
    lkv_sb_append(&h, buf, split);
    lkv_sb_puts(&t, buf + split);
    lkv_sb_puts(&t, s->answer_prefix);
    lkv_free(buf);
    lkv_sb_free(&user);
    int rc = lkv_sb_status(&h);
    if (rc == LKV_OK)
        rc = lkv_sb_status(&t);
    if (rc < 0) {
        lkv_sb_free(&h);
        lkv_sb_free(&t);
        return rc;
    }
    *head = lkv_sb_take(&h);
    *tail = lkv_sb_take(&t);
    return LKV_OK;
}

/* Tokens the chat template adds around the user text (measured once). */
static int chat_overhead(const lkv_model *m, int *over) {
    lkv_task_sample s;
    memset(&s, 0, sizeof s);
    s.context = (char *)"X";
    s.context_len = 1;
    s.question = (char *)"Y";
    s.answer_prefix = (char *)"";
    char *h = NULL, *t = NULL;
    LKV_TRY(chat_split(m, &s, &h, &t));
    int a = lkv_tokenize(m, h, strlen(h), 1, 1, NULL, 0);
    int b = lkv_tokenize(m, t, strlen(t), 0, 1, NULL, 0);
    lkv_free(h);
    lkv_free(t);
    if (a < 0)
        return a;
    if (b < 0)
        return b;
    *over = a + b - 2; /* less the stand-in words */
    return LKV_OK;
}

static int make_prompt(const lkv_eval_params *p, const char *task, int ctx, double depth,
                       uint64_t seed, int overhead, prompt_toks *out) {
    memset(out, 0, sizeof *out);
    lkv_task_params tp = lkv_task_default_params();
    LKV_TRY(lkv_task_params_preset(task, &tp));
    tp.ctx_tokens = ctx - overhead;
    tp.depth = depth;
    tp.seed = seed;
    tp.count_tokens = lkv_count_tokens_model;
    tp.count_ctx = (void *)p->model;
    if (tp.kind == LKV_TASK_NIAH && !p->corpus)
        LKV_FAIL(LKV_ERR_INVALID, "eval: task %s needs a corpus", task);
    LKV_TRY(lkv_task_generate(&tp, p->corpus, &out->s));
    char *h = NULL, *t = NULL;
    int rc = chat_split(p->model, &out->s, &h, &t);
    int32_t *a = NULL, *b = NULL;
    int na = 0, nb = 0;
    if (rc == LKV_OK)
        rc = tokenize_alloc(p->model, h, strlen(h), 1, 1, &a, &na);
    if (rc == LKV_OK)
        rc = tokenize_alloc(p->model, t, strlen(t), 0, 1, &b, &nb);
    lkv_free(h);
    lkv_free(t);
    if (rc == LKV_OK) {
        out->ids = lkv_malloc(((size_t)na + (size_t)nb + 1) * sizeof(int32_t));
        if (!out->ids)
            rc = lkv_set_error(LKV_ERR_NOMEM, "eval: out of memory");
    }
    if (rc == LKV_OK) {
        memcpy(out->ids, a, (size_t)na * sizeof(int32_t));
        memcpy(out->ids + na, b, (size_t)nb * sizeof(int32_t));
        out->n = na + nb;
        out->n_question = nb;
    }
    lkv_free(a);
    lkv_free(b);
    if (rc < 0)
        lkv_task_sample_clear(&out->s);
    return rc;
}

static void prompt_clear(prompt_toks *pt) {
    lkv_free(pt->ids);
    lkv_task_sample_clear(&pt->s);
    memset(pt, 0, sizeof *pt);
}

/* Answer length budget: digits of every expected value plus some words. */
static int max_new_tokens(const lkv_task_sample *s) {
    int n = 8;
    for (int i = 0; i < s->n_expected; i++)
        n += (int)strlen(s->expected[i]) + 6;
    return n;
}

typedef struct q_acc {
    double score_sum;
    int n;
    double t_prefill, t_decode;
    long n_prefill, n_decode;
    int64_t kv_bytes, kv_bytes_end;
    int64_t peak_rss;
    double n_tokens_sum, depth_actual_sum;
    char canonical[512];
    char last_answer[160];
} q_acc;

/* Runs one sample through one context; adds to acc. */
static int run_sample(eval_run *run, lkv_ctx *ctx, const prompt_toks *pt, q_acc *acc) {
    const lkv_model *m = run->p->model;
    LKV_TRY(lkv_ctx_reset(ctx));
    double t0 = now_s();
    int rc = lkv_ctx_prefill_prompt(ctx, pt->ids, pt->n, pt->n_question);
    double t1 = now_s();
    if (rc < 0)
        return rc;
    acc->t_prefill += t1 - t0;
    acc->n_prefill += pt->n;
    size_t kvb = lkv_ctx_kv_bytes(ctx);
    if ((int64_t)kvb > acc->kv_bytes)
        acc->kv_bytes = (int64_t)kvb;
    int V = lkv_model_n_vocab(m);
    int max_new = max_new_tokens(&pt->s);
    int32_t out[128];
    int n_out = 0;
    double t2 = now_s();
    long steps = 0;
    for (;;) {
        const float *lg = lkv_ctx_logits(ctx);
        if (!lg)
            LKV_FAIL(LKV_ERR_STATE, "eval: no logits after the prompt");
        int32_t best = 0;
        for (int i = 1; i < V; i++)
            if (lg[i] > lg[best])
                best = i;
        if (lkv_token_is_eog(m, best) || n_out >= max_new || n_out >= 128)
            break;
        out[n_out++] = best;
        if (n_out >= max_new || lkv_ctx_pos(ctx) >= lkv_ctx_n_ctx(ctx))
            break;
        LKV_TRY(lkv_ctx_decode(ctx, best));
        steps++;
    }
    acc->t_decode += now_s() - t2;
    acc->n_decode += steps;
    size_t kve = lkv_ctx_kv_bytes(ctx);
    if ((int64_t)kve > acc->kv_bytes_end)
        acc->kv_bytes_end = (int64_t)kve;
    char text[1024];
    int tl = lkv_detokenize(m, out, n_out, 0, text, sizeof text);
    if (tl < 0)
        return tl;
    if ((size_t)tl >= sizeof text)
        text[sizeof text - 1] = '\0';
    double sc = lkv_task_score(&pt->s, text);
    acc->score_sum += isnan(sc) ? 0.0 : sc;
    acc->n++;
    acc->n_tokens_sum += pt->n;
    acc->depth_actual_sum += pt->s.depth_actual;
    /* keep a short, one-line copy of the answer for the log */
    snprintf(acc->last_answer, sizeof acc->last_answer, "%.150s", text);
    for (char *c = acc->last_answer; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    return LKV_OK;
}

static int add_question_row(eval_run *run, const char *task, int ctx, double depth,
                            const eval_cfg *cfg, const q_acc *a, int64_t base_kv) {
    const lkv_eval_params *p = run->p;
    int measured = 0;
    lkv_result_row row = lkv_result_row_default();
    row.task = task;
    row.model = p->model_name;
    row.press = cfg->is_full ? "full" : a->canonical;
    row.ratio = eval_row_ratio(cfg, a->kv_bytes, base_kv, &measured);
    row.ctx = ctx;
    row.score = a->n ? a->score_sum / a->n : NAN;
    row.kv_bytes = a->kv_bytes;
    row.peak_rss = a->peak_rss;
    row.prefill_tps = a->t_prefill > 0 ? (double)a->n_prefill / a->t_prefill : NAN;
    row.decode_tps = a->t_decode > 0 && a->n_decode > 0 ? (double)a->n_decode / a->t_decode
                                                       : NAN;
    row.seed = p->seed;
    lkv_report_field ex[10];
    int ne = 0;
    ex[ne++] = (lkv_report_field){"policy", LKV_VALUE_STR, 0, 0, cfg->policy};
    ex[ne++] = (lkv_report_field){"depth", LKV_VALUE_NUM, 0, depth, NULL};
    ex[ne++] = (lkv_report_field){"depth_actual", LKV_VALUE_NUM, 0,
                                  a->n ? a->depth_actual_sum / a->n : NAN, NULL};
    ex[ne++] = (lkv_report_field){"samples", LKV_VALUE_INT, a->n, 0, NULL};
    ex[ne++] = (lkv_report_field){"n_tokens", LKV_VALUE_NUM, 0,
                                  a->n ? a->n_tokens_sum / a->n : NAN, NULL};
    ex[ne++] = (lkv_report_field){"kv_bytes_end", LKV_VALUE_INT, a->kv_bytes_end, 0, NULL};
    ex[ne++] = (lkv_report_field){"kv_frac", LKV_VALUE_NUM, 0,
                                  base_kv > 0 && a->kv_bytes >= 0
                                      ? (double)a->kv_bytes / (double)base_kv
                                      : NAN,
                                  NULL};
    ex[ne++] = (lkv_report_field){"ratio_source", LKV_VALUE_STR, 0, 0,
                                  measured ? "measured" : "nominal"};
    ex[ne++] = (lkv_report_field){"query_aware", LKV_VALUE_BOOL, p->query_aware, 0, NULL};
    row.extra = ex;
    row.n_extra = ne;
    LKV_TRY(lkv_report_add(run->report, &row));
    eval_log(run, "%-16s ctx %-5d depth %3.0f%%  %-40.40s ratio %-5.3g score %.3f  kv %.2f MiB  "
                  "prefill %.0f tok/s  (last answer: \"%.40s\")",
             task, ctx, depth, cfg->is_full ? "full" : cfg->policy, row.ratio, row.score,
             (double)a->kv_bytes / 1048576.0, row.prefill_tps, a->last_answer);
    return LKV_OK;
}

static int run_question_task(eval_run *run, const char *task, int ctx, const eval_cfg *cfgs,
                             int n_cfgs, int overhead) {
    const lkv_eval_params *p = run->p;
    int K = p->samples > 0 ? p->samples : 1;
    int rc = LKV_OK;
    prompt_toks *pts = lkv_calloc((size_t)K, sizeof *pts);
    q_acc *accs = lkv_calloc((size_t)n_cfgs, sizeof *accs);
    if (!pts || !accs) {
        lkv_free(pts);
        lkv_free(accs);
        LKV_FAIL(LKV_ERR_NOMEM, "eval: out of memory");
    }
    for (int d = 0; d < p->n_depths && rc == LKV_OK; d++) {
        double depth = p->depths[d];
        for (int k = 0; k < K && rc == LKV_OK; k++)
            rc = make_prompt(p, task, ctx, depth, p->seed + (uint64_t)k, overhead, &pts[k]);
        int max_n = 0;
        for (int k = 0; k < K && rc == LKV_OK; k++) {
            int need = pts[k].n + max_new_tokens(&pts[k].s) + 8;
            if (need > max_n)
                max_n = need;
        }
        int64_t base_kv = -1;
        for (int c = 0; c < n_cfgs && rc == LKV_OK; c++) {
            q_acc *a = &accs[c];
            memset(a, 0, sizeof *a);
            a->kv_bytes = a->kv_bytes_end = -1;
            lkv_press *press = NULL;
            lkv_ctx *ctx_h = NULL;
            lkv_peak_rss_reset();
            rc = eval_ctx_create(run, &cfgs[c], max_n, NULL, NULL, &press, &ctx_h);
            if (rc == LKV_OK)
                snprintf(a->canonical, sizeof a->canonical, "%s",
                         press ? lkv_press_canonical(press) : "full");
            for (int k = 0; k < K && rc == LKV_OK; k++) {
                char note[160];
                snprintf(note, sizeof note, "%s ctx %d depth %g %.100s #%d", task, ctx, depth,
                         cfgs[c].is_full ? "full" : cfgs[c].spec, k);
                if (run->pg)
                    lkv_progress_update(run->pg, run->done, note);
                rc = run_sample(run, ctx_h, &pts[k], a);
                eval_progress_step(run, note);
            }
            a->peak_rss = lkv_peak_rss_bytes();
            if (rc == LKV_OK) {
                if (cfgs[c].is_full)
                    base_kv = a->kv_bytes;
                rc = add_question_row(run, task, ctx, depth, &cfgs[c], a, base_kv);
            }
            lkv_ctx_free(ctx_h);
            lkv_press_free(press);
        }
        for (int k = 0; k < K; k++)
            prompt_clear(&pts[k]);
    }
    lkv_free(pts);
    lkv_free(accs);
    return rc;
}

/* ------------------------------------------------------------ the sweep */

static int check_params(const lkv_eval_params *p, task_list *tl) {
    if (!p || !p->model)
        LKV_FAIL(LKV_ERR_INVALID, "eval: no model");
    if (p->n_ctxs < 1 || !p->ctxs)
        LKV_FAIL(LKV_ERR_INVALID, "eval: no context length");
    if (p->n_ratios < 1 || !p->ratios)
        LKV_FAIL(LKV_ERR_INVALID, "eval: no ratio");
    if (p->n_depths < 1 || !p->depths)
        LKV_FAIL(LKV_ERR_INVALID, "eval: no depth");
    for (int i = 0; i < p->n_ratios; i++)
        if (!(p->ratios[i] >= 0.0 && p->ratios[i] < 1.0))
            LKV_FAIL(LKV_ERR_INVALID, "eval: ratio %g outside [0, 1)", p->ratios[i]);
    for (int i = 0; i < p->n_depths; i++)
        if (!(p->depths[i] >= 0.0 && p->depths[i] <= 100.0))
            LKV_FAIL(LKV_ERR_INVALID, "eval: depth %g outside [0, 100]", p->depths[i]);
    for (int i = 0; i < p->n_ctxs; i++)
        if (p->ctxs[i] < 64 || p->ctxs[i] > (1 << 20))
            LKV_FAIL(LKV_ERR_INVALID, "eval: context length %d outside [64, %d]", p->ctxs[i],
                     1 << 20);
    if (p->samples < 1 || p->samples > 100000)
        LKV_FAIL(LKV_ERR_INVALID, "eval: samples %d outside [1, 100000]", p->samples);
    LKV_TRY(parse_tasks(p->tasks, tl));
    for (int t = 0; t < tl->n; t++) {
        int needs_corpus = strncmp(tl->name[t], "niah", 4) == 0 || is_text_task(tl->name[t]);
        if (needs_corpus && !p->corpus)
            LKV_FAIL(LKV_ERR_INVALID, "eval: task %s needs a text corpus", tl->name[t]);
    }
    return LKV_OK;
}

int64_t lkv_eval_count_runs(const lkv_eval_params *p) {
    task_list tl;
    LKV_TRY(check_params(p, &tl));
    eval_cfg *cfgs = lkv_calloc(MAX_CFGS, sizeof *cfgs);
    if (!cfgs)
        LKV_FAIL(LKV_ERR_NOMEM, "eval: out of memory");
    int64_t total = 0;
    for (int c = 0; c < p->n_ctxs; c++) {
        int n = 0;
        int rc = build_cfgs(p, p->ctxs[c], cfgs, &n);
        if (rc < 0) {
            lkv_free(cfgs);
            return rc;
        }
        for (int t = 0; t < tl.n; t++)
            total += is_question_task(tl.name[t])
                         ? (int64_t)n * p->n_depths * p->samples
                         : (int64_t)n;
    }
    lkv_free(cfgs);
    return total;
}

int lkv_eval_run(const lkv_eval_params *p, lkv_report *r) {
    task_list tl;
    if (!r)
        LKV_FAIL(LKV_ERR_INVALID, "eval: no report");
    LKV_TRY(check_params(p, &tl));
    int64_t total = lkv_eval_count_runs(p);
    if (total < 0)
        return (int)total;
    eval_run run;
    memset(&run, 0, sizeof run);
    run.p = p;
    run.report = r;
    run.total = total;
    run.tty = isatty(2);
    if (p->progress != LKV_PROGRESS_OFF) {
        lkv_progress_params pp = lkv_progress_default_params();
        pp.label = "eval";
        pp.total = total;
        pp.mode = p->progress;
        if (lkv_progress_create(&pp, &run.pg) < 0)
            run.pg = NULL;
        run.tty = run.tty && p->progress != LKV_PROGRESS_LINES;
    }
    eval_cfg *cfgs = lkv_calloc(MAX_CFGS, sizeof *cfgs);
    if (!cfgs) {
        lkv_progress_free(run.pg);
        LKV_FAIL(LKV_ERR_NOMEM, "eval: out of memory");
    }
    int overhead = 0;
    int rc = chat_overhead(p->model, &overhead);
    for (int c = 0; c < p->n_ctxs && rc == LKV_OK; c++) {
        int n = 0;
        rc = build_cfgs(p, p->ctxs[c], cfgs, &n);
        for (int t = 0; t < tl.n && rc == LKV_OK; t++) {
            if (is_question_task(tl.name[t]))
                rc = run_question_task(&run, tl.name[t], p->ctxs[c], cfgs, n, overhead);
            else
                rc = eval_run_text_task(&run, tl.name[t], p->ctxs[c], cfgs, n);
        }
    }
    if (run.pg) {
        lkv_progress_finish(run.pg);
        lkv_progress_free(run.pg);
    }
    lkv_free(cfgs);
    return rc;
}
