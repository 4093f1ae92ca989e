/* run.h -- internals of the sweep runner (run.c: configurations, question
 * tasks, the loop; ppl.c: perplexity and fidelity along a real text). */
#ifndef LKV_EVAL_RUN_H
#define LKV_EVAL_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "longkv.h"

/* One policy configuration of a sweep at one context length. */
typedef struct eval_cfg {
    char spec[512];      /* what lkv_press_create gets ("full" for the baseline) */
    char policy[256];    /* the label without the amount ("snapkv", "full") */
    double ratio;        /* nominal fraction removed; NaN: measured afterwards */
    int is_full;
} eval_cfg;

/* Shared state of one run. */
typedef struct eval_run {
    const lkv_eval_params *p;
    lkv_report *report;
    lkv_progress *pg;
    int64_t done, total;
    int tty;
} eval_run;

/* Row fields common to every task. */
typedef struct eval_meas {
    double score;
    int64_t kv_bytes;        /* after the prompt and the policy's first pass */
    int64_t kv_bytes_end;    /* at the end of the run */
    int64_t peak_rss;
    double prefill_tps, decode_tps;
    char press_canonical[512];
} eval_meas;

/* Creates a context for cfg (n_ctx tokens), with an optional hook. The press
 * (NULL for the baseline) is returned in *press and must outlive the context. */
int eval_ctx_create(const eval_run *run, const eval_cfg *cfg, int n_ctx, lkv_layer_hook hook,
                    void *hook_user, lkv_press **press, lkv_ctx **ctx);

/* The ratio to report for a configuration: nominal, or measured against the
 * baseline's bytes (sets *measured). */
double eval_row_ratio(const eval_cfg *cfg, int64_t kv_bytes, int64_t base_kv_bytes,
                      int *measured);

/* Adds a finished item to the progress display. */
void eval_progress_step(eval_run *run, const char *note);

/* Writes one log line (the progress line is cleared first on a terminal). */
void eval_log(const eval_run *run, const char *fmt, ...) LKV_PRINTF(2, 3);

/* Tokens of a real text for ppl/fidelity: ctx tokens (BOS first) from the
 * corpus, starting at a paragraph chosen by seed. *out is lkv_malloc'ed. */
int eval_text_tokens(const lkv_model *m, const lkv_corpus *c, uint64_t seed, int n_tokens,
                     int32_t **out);

/* ppl.c: runs task "ppl" or "fidelity" for every configuration at one ctx. */
int eval_run_text_task(eval_run *run, const char *task, int ctx, const eval_cfg *cfgs,
                       int n_cfgs);

#endif
