/* ppl.c -- the text tasks of a sweep: perplexity with the policy active while
 * decoding, and fidelity against the full cache.
 *
 * Both read ctx tokens of real prose (BOS first). The first `prefix` tokens are
 * prefilled with lkv_ctx_prefill_prompt (the policy's one-shot pass runs
 * there, with no question), then every later token is fed one at a time with
 * lkv_ctx_decode, so policies that work while decoding (StreamingLLM, H2O,
 * TOVA, KIVI's groups) act between the scored tokens -- StreamingLLM's
 * protocol. Token i is scored with the logits after tokens 0..i-1.
 *
 * Fidelity runs the full cache and the policy in lockstep over the same tokens.
 * Agreement is fidelity over generated text: after the prompt, the token fed to
 * both contexts is the full cache's own greedy choice, so the score is the share
 * of generation steps where the policy would have picked the same next token.
 * After each step it compares the next-token distributions (KL(full || policy)
 * in nats, and whether the argmax agrees), and through lkv_layer_hook the
 * attention output of every layer for the newly decoded token:
 * ||o_policy - o_full|| / ||o_full||, averaged over steps. The policy context's
 * layer l sees hidden states already perturbed by layers < l, so the error is
 * end-to-end up to that layer, not the layer's error in isolation.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "eval/eval.h"
#include "eval/run.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* log-softmax of the target, argmax. */
static double log_prob(const float *lg, int V, int32_t target, int32_t *argmax) {
    float mx = lg[0];
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (lg[i] > mx) {
            mx = lg[i];
            best = i;
        }
    double sum = 0.0;
    for (int i = 0; i < V; i++)
        sum += exp((double)lg[i] - mx);
    if (argmax)
        *argmax = best;
    return (double)lg[target] - mx - log(sum);
}

/* KL(P || Q) in nats for logits p, q; argmaxes out. */
static double kl_div(const float *p, const float *q, int V, int32_t *amax_p, int32_t *amax_q) {
    float mp = p[0], mq = q[0];
    int32_t bp = 0, bq = 0;
    for (int i = 1; i < V; i++) {
        if (p[i] > mp)
            mp = p[i], bp = i;
        if (q[i] > mq)
            mq = q[i], bq = i;
    }
    double sp = 0.0, sq = 0.0;
    for (int i = 0; i < V; i++) {
        sp += exp((double)p[i] - mp);
        sq += exp((double)q[i] - mq);
    }
    double lsp = mp + log(sp), lsq = mq + log(sq), kl = 0.0;
    for (int i = 0; i < V; i++) {
        double lp = (double)p[i] - lsp;
        double lq = (double)q[i] - lsq;
        kl += exp(lp) * (lp - lq);
    }
    *amax_p = bp;
    *amax_q = bq;
    return kl > 0.0 ? kl : 0.0;
}

static int prefix_len(const lkv_eval_params *p, int ctx) {
    int P = p->ppl_prefix > 0 ? p->ppl_prefix : ctx / 2;
    if (P > ctx - 2)
        P = ctx - 2;
    return P < 1 ? 1 : P;
}

/* ------------------------------------------------------------ ppl */

typedef struct ppl_bucket {
    double nll;
    long n;
} ppl_bucket;

static void add_common_extras(lkv_report_field *ex, int *ne, const eval_cfg *cfg, int measured,
                              int64_t kv, int64_t kv_end, int64_t base_kv, int prefix) {
    ex[(*ne)++] = (lkv_report_field){"policy", LKV_VALUE_STR, 0, 0, cfg->policy};
    ex[(*ne)++] = (lkv_report_field){"ratio_source", LKV_VALUE_STR, 0, 0,
                                     measured ? "measured" : "nominal"};
    ex[(*ne)++] = (lkv_report_field){"kv_bytes_end", LKV_VALUE_INT, kv_end, 0, NULL};
    ex[(*ne)++] = (lkv_report_field){
        "kv_frac", LKV_VALUE_NUM, 0,
        base_kv > 0 && kv >= 0 ? (double)kv / (double)base_kv : NAN, NULL};
    ex[(*ne)++] = (lkv_report_field){"prefix", LKV_VALUE_INT, prefix, 0, NULL};
}

static int run_ppl_cfg(eval_run *run, int ctx, const int32_t *toks, const eval_cfg *cfg,
                       int64_t *base_kv_end) {
    const lkv_eval_params *p = run->p;
    const int V = lkv_model_n_vocab(p->model);
    const int P = prefix_len(p, ctx);
    const int B = p->ppl_bucket > 0 ? p->ppl_bucket : (ctx / 8 > 0 ? ctx / 8 : 1);
    const int nb = (ctx + B - 1) / B;
    ppl_bucket *bk = lkv_calloc((size_t)nb, sizeof *bk);
    if (!bk)
        LKV_FAIL(LKV_ERR_NOMEM, "eval: out of memory");
    lkv_press *press = NULL;
    lkv_ctx *c = NULL;
    lkv_peak_rss_reset();
    int rc = eval_ctx_create(run, cfg, ctx + 8, NULL, NULL, &press, &c);
    double t0 = now_s();
    if (rc == LKV_OK)
        rc = lkv_ctx_prefill_prompt(c, toks, P, 0);
    double t_prefill = now_s() - t0;
    int64_t kv = rc == LKV_OK ? (int64_t)lkv_ctx_kv_bytes(c) : -1;
    double t_decode = 0.0, nll = 0.0;
    long n_dec = 0, n_sc = 0, agree = 0;
    char note[200];
    for (int i = P; i < ctx && rc == LKV_OK; i++) {
        const float *lg = lkv_ctx_logits(c);
        if (!lg) {
            rc = lkv_set_error(LKV_ERR_STATE, "eval: no logits");
            break;
        }
        int32_t am = 0;
        double lp = log_prob(lg, V, toks[i], &am);
        nll -= lp;
        n_sc++;
        agree += am == toks[i];
        bk[i / B].nll -= lp;
        bk[i / B].n++;
        if (i + 1 == ctx)
            break;
        double t1 = now_s();
        rc = lkv_ctx_decode(c, toks[i]);
        t_decode += now_s() - t1;
        n_dec++;
        if (run->pg && (i % 32) == 0) {
            snprintf(note, sizeof note, "ppl ctx %d %.120s  token %d/%d  ppl %.2f", ctx,
                     cfg->is_full ? "full" : cfg->spec, i, ctx, exp(nll / (double)n_sc));
            lkv_progress_update(run->pg, run->done, note);
        }
    }
    int64_t kv_end = rc == LKV_OK ? (int64_t)lkv_ctx_kv_bytes(c) : -1;
    int64_t rss = lkv_peak_rss_bytes();
    char canonical[512];
    snprintf(canonical, sizeof canonical, "%s", press ? lkv_press_canonical(press) : "full");
    lkv_ctx_free(c);
    lkv_press_free(press);
    if (rc < 0) {
        lkv_free(bk);
        return rc;
    }
    if (cfg->is_full)
        *base_kv_end = kv_end;
    /* ratio: against the full cache's bytes at the end of the text (the
     * policies that work while decoding hold their budget there) */
    int measured = 0;
    double ratio = eval_row_ratio(cfg, kv_end, *base_kv_end, &measured);
    for (int b = -1; b < nb && rc == LKV_OK; b++) {
        if (b >= 0 && bk[b].n == 0)
            continue;
        lkv_result_row row = lkv_result_row_default();
        row.task = "ppl";
        row.model = p->model_name;
        row.press = cfg->is_full ? "full" : canonical;
        row.ratio = ratio;
        row.ctx = ctx;
        row.score = b < 0 ? exp(nll / (double)n_sc) : exp(bk[b].nll / (double)bk[b].n);
        row.kv_bytes = kv;
        row.peak_rss = rss;
        row.prefill_tps = t_prefill > 0 ? P / t_prefill : NAN;
        row.decode_tps = t_decode > 0 ? (double)n_dec / t_decode : NAN;
        row.seed = p->seed;
        lkv_report_field ex[16];
        int ne = 0;
        add_common_extras(ex, &ne, cfg, measured, kv, kv_end, *base_kv_end, P);
        ex[ne++] = (lkv_report_field){"scope", LKV_VALUE_STR, 0, 0, b < 0 ? "all" : "bucket"};
        if (b >= 0) {
            int ps = b * B < P ? P : b * B;
            int pe = (b + 1) * B > ctx ? ctx - 1 : (b + 1) * B - 1;
            ex[ne++] = (lkv_report_field){"pos_start", LKV_VALUE_INT, ps, 0, NULL};
            ex[ne++] = (lkv_report_field){"pos_end", LKV_VALUE_INT, pe, 0, NULL};
            ex[ne++] = (lkv_report_field){"n_scored", LKV_VALUE_INT, bk[b].n, 0, NULL};
        } else {
            ex[ne++] = (lkv_report_field){"n_scored", LKV_VALUE_INT, n_sc, 0, NULL};
            ex[ne++] = (lkv_report_field){"top1", LKV_VALUE_NUM, 0,
                                          n_sc ? (double)agree / (double)n_sc : NAN, NULL};
        }
        row.extra = ex;
        row.n_extra = ne;
        rc = lkv_report_add(run->report, &row);
        if (b < 0)
            eval_log(run, "ppl      ctx %-5d %-44.44s ratio %-6.3g ppl %8.3f over %ld tokens "
                          "(from %d)  kv %.2f MiB at end  decode %.1f tok/s",
                     ctx, cfg->is_full ? "full" : cfg->policy, ratio, row.score, n_sc, P,
                     (double)kv_end / 1048576.0, row.decode_tps);
    }
    lkv_free(bk);
    return rc;
}

/* ------------------------------------------------------------ fidelity */

typedef struct fid_hook {
    int active;            /* 1 while decoding a compared token */
    int n_layers, width;   /* width = H * d */
    float *ref;            /* [L][width]: the full cache's outputs this step */
    double *err_sum;       /* [L] sum over steps of relative errors */
    long *err_n;           /* [L] */
    long calls_full, calls_press;
} fid_hook;

static int hook_full(void *user, int layer, int n_tok, const int32_t *pos, const float *q,
                     const float *k, const float *v, const float *o) {
    fid_hook *f = user;
    if (!f->active || n_tok != 1 || layer < 0 || layer >= f->n_layers)
        return 0;
    memcpy(f->ref + (size_t)layer * f->width, o, (size_t)f->width * sizeof(float));
    f->calls_full++;
    return 0;
}

static int hook_press(void *user, int layer, int n_tok, const int32_t *pos, const float *q,
                      const float *k, const float *v, const float *o) {
    fid_hook *f = user;
    if (!f->active || n_tok != 1 || layer < 0 || layer >= f->n_layers)
        return 0;
    const float *r = f->ref + (size_t)layer * f->width;
    double num = 0.0, den = 0.0;
    for (int i = 0; i < f->width; i++) {
        double dlt = (double)o[i] - r[i];
        num += dlt * dlt;
        den += (double)r[i] * r[i];
    }
    if (den > 0.0) {
        f->err_sum[layer] += sqrt(num / den);
        f->err_n[layer]++;
    }
    f->calls_press++;
    return 0;
}

static int run_fidelity_cfg(eval_run *run, int ctx, const int32_t *toks, const eval_cfg *cfg,
                            int generate, int64_t *base_kv_end) {
    const char *task = generate ? "agreement" : "fidelity";
    const lkv_eval_params *p = run->p;
    const int V = lkv_model_n_vocab(p->model);
    const int P = prefix_len(p, ctx);
    lkv_model_info mi;
    LKV_TRY(lkv_model_get_info(p->model, &mi));
    fid_hook f;
    memset(&f, 0, sizeof f);
    f.n_layers = mi.n_layers;
    f.width = mi.n_heads * mi.head_dim;
    f.ref = lkv_calloc((size_t)f.n_layers * (size_t)f.width, sizeof(float));
    f.err_sum = lkv_calloc((size_t)f.n_layers, sizeof(double));
    f.err_n = lkv_calloc((size_t)f.n_layers, sizeof(long));
    int rc = (f.ref && f.err_sum && f.err_n)
                 ? LKV_OK
                 : lkv_set_error(LKV_ERR_NOMEM, "eval: out of memory");
    eval_cfg full = {0};
    strcpy(full.spec, "full");
    strcpy(full.policy, "full");
    full.is_full = 1;
    lkv_press *press = NULL, *none = NULL;
    lkv_ctx *cf = NULL, *cp = NULL;
    lkv_peak_rss_reset();
    if (rc == LKV_OK)
        rc = eval_ctx_create(run, &full, ctx + 8, hook_full, &f, &none, &cf);
    if (rc == LKV_OK && !cfg->is_full)
        rc = eval_ctx_create(run, cfg, ctx + 8, hook_press, &f, &press, &cp);
    double t_prefill = 0.0, t_decode = 0.0, kl_sum = 0.0, kl_max = 0.0;
    double nll_f = 0.0, nll_p = 0.0;
    long n_cmp = 0, agree = 0, n_dec = 0;
    lkv_ctx *subject = cfg->is_full ? cf : cp;
    if (rc == LKV_OK && !cfg->is_full)
        rc = lkv_ctx_prefill(cf, toks, P);
    double t0 = now_s();
    if (rc == LKV_OK)
        rc = lkv_ctx_prefill_prompt(subject, toks, P, 0);
    t_prefill = now_s() - t0;
    int64_t kv = rc == LKV_OK ? (int64_t)lkv_ctx_kv_bytes(subject) : -1;
    char note[200];
    for (int i = P; i < ctx && rc == LKV_OK; i++) {
        const float *lf = lkv_ctx_logits(cf), *lp = lkv_ctx_logits(subject);
        if (!lf || !lp) {
            rc = lkv_set_error(LKV_ERR_STATE, "eval: no logits");
            break;
        }
        int32_t af = 0, ap = 0;
        double kl = cfg->is_full ? 0.0 : kl_div(lf, lp, V, &af, &ap);
        if (cfg->is_full)
            log_prob(lf, V, toks[i], &af), ap = af;
        kl_sum += kl;
        kl_max = kl > kl_max ? kl : kl_max;
        agree += af == ap;
        n_cmp++;
        /* agreement: the full cache's greedy token is both the next input
         * and the target the likelihoods are measured on */
        int32_t next = generate ? af : toks[i];
        nll_f -= log_prob(lf, V, next, NULL);
        nll_p -= log_prob(lp, V, next, NULL);
        if (i + 1 == ctx)
            break;
        f.active = 1;
        if (!cfg->is_full)
            rc = lkv_ctx_decode(cf, next);
        double t1 = now_s();
        if (rc == LKV_OK)
            rc = lkv_ctx_decode(subject, next);
        t_decode += now_s() - t1;
        f.active = 0;
        n_dec++;
        if (run->pg && (i % 32) == 0) {
            snprintf(note, sizeof note, "%s ctx %d %.120s  token %d/%d", task, ctx,
                     cfg->is_full ? "full" : cfg->spec, i, ctx);
            lkv_progress_update(run->pg, run->done, note);
        }
    }
    int64_t kv_end = rc == LKV_OK ? (int64_t)lkv_ctx_kv_bytes(subject) : -1;
    int64_t rss = lkv_peak_rss_bytes();
    char canonical[512];
    snprintf(canonical, sizeof canonical, "%s", press ? lkv_press_canonical(press) : "full");
    lkv_ctx_free(cp);
    lkv_ctx_free(cf);
    lkv_press_free(press);
    lkv_press_free(none);
    if (rc == LKV_OK) {
        if (cfg->is_full)
            *base_kv_end = kv_end;
        int measured = 0;
        double ratio = eval_row_ratio(cfg, kv_end, *base_kv_end, &measured);
        /* per-layer errors, when the hook saw the decode steps */
        lkv_sb layers = {0};
        double err_mean = NAN;
        int have_err = !cfg->is_full && f.calls_press > 0 && f.calls_full > 0;
        if (have_err) {
            double s = 0.0;
            int nl = 0;
            for (int l = 0; l < f.n_layers; l++) {
                double e = f.err_n[l] ? f.err_sum[l] / (double)f.err_n[l] : NAN;
                lkv_sb_printf(&layers, "%s%.4g", l ? " " : "", e);
                if (!isnan(e))
                    s += e, nl++;
            }
            err_mean = nl ? s / nl : NAN;
        }
        rc = lkv_sb_status(&layers);
        lkv_result_row row = lkv_result_row_default();
        row.task = task;
        row.model = p->model_name;
        row.press = cfg->is_full ? "full" : canonical;
        row.ratio = ratio;
        row.ctx = ctx;
        row.score = n_cmp ? (double)agree / (double)n_cmp : NAN;
        row.kv_bytes = kv;
        row.peak_rss = rss;
        row.prefill_tps = t_prefill > 0 ? P / t_prefill : NAN;
        row.decode_tps = t_decode > 0 ? (double)n_dec / t_decode : NAN;
        row.seed = p->seed;
        lkv_report_field ex[20];
        int ne = 0;
        add_common_extras(ex, &ne, cfg, measured, kv, kv_end, *base_kv_end, P);
        ex[ne++] = (lkv_report_field){"n_compared", LKV_VALUE_INT, n_cmp, 0, NULL};
        ex[ne++] = (lkv_report_field){"kl_mean", LKV_VALUE_NUM, 0,
                                      n_cmp ? kl_sum / (double)n_cmp : NAN, NULL};
        ex[ne++] = (lkv_report_field){"kl_max", LKV_VALUE_NUM, 0, kl_max, NULL};
        ex[ne++] = (lkv_report_field){"ppl_full", LKV_VALUE_NUM, 0,
                                      n_cmp ? exp(nll_f / (double)n_cmp) : NAN, NULL};
        ex[ne++] = (lkv_report_field){"ppl_press", LKV_VALUE_NUM, 0,
                                      n_cmp ? exp(nll_p / (double)n_cmp) : NAN, NULL};
        ex[ne++] = (lkv_report_field){"attn_rel_err_mean", LKV_VALUE_NUM, 0, err_mean, NULL};
        ex[ne++] = (lkv_report_field){
            "attn_rel_err_by_layer", LKV_VALUE_STR, 0, 0,
            cfg->is_full ? "0 (the reference itself)"
                         : have_err ? layers.data
                                    : "unavailable (the layer hook saw no decode step)"};
        row.extra = ex;
        row.n_extra = ne;
        if (rc == LKV_OK)
            rc = lkv_report_add(run->report, &row);
        eval_log(run, "%-9s ctx %-5d %-44.44s ratio %-6.3g top1 %.4f  KL %.4g nats  "
                      "attn err %.4g  ppl %.3f vs %.3f  kv %.2f MiB  decode %.1f tok/s",
                 task, ctx, cfg->is_full ? "full" : cfg->policy, ratio, row.score,
                 n_cmp ? kl_sum / (double)n_cmp : NAN, err_mean,
                 n_cmp ? exp(nll_p / (double)n_cmp) : NAN,
                 n_cmp ? exp(nll_f / (double)n_cmp) : NAN, (double)kv / 1048576.0,
                 row.decode_tps);
        lkv_sb_free(&layers);
    }
    lkv_free(f.ref);
    lkv_free(f.err_sum);
    lkv_free(f.err_n);
    return rc;
}

int eval_run_text_task(eval_run *run, const char *task, int ctx, const eval_cfg *cfgs,
                       int n_cfgs) {
    int32_t *toks = NULL;
    LKV_TRY(eval_text_tokens(run->p->model, run->p->corpus, run->p->seed, ctx, &toks));
    int64_t base_kv_end = -1;
    int rc = LKV_OK;
    int fid = !strcmp(task, "fidelity") || !strcmp(task, "agreement");
    int generate = !strcmp(task, "agreement");
    for (int c = 0; c < n_cfgs && rc == LKV_OK; c++) {
        char note[160];
        snprintf(note, sizeof note, "%s ctx %d %.120s", task, ctx,
                 cfgs[c].is_full ? "full" : cfgs[c].spec);
        if (run->pg)
            lkv_progress_update(run->pg, run->done, note);
        rc = fid ? run_fidelity_cfg(run, ctx, toks, &cfgs[c], generate, &base_kv_end)
                 : run_ppl_cfg(run, ctx, toks, &cfgs[c], &base_kv_end);
        eval_progress_step(run, note);
    }
    lkv_free(toks);
    return rc;
}
