/* press.h -- the policy framework (internal): method descriptors, parsed specs.
 *
 * A spec string names one or more stages joined by '+':
 *     spec  := stage ('+' stage)*
 *     stage := name [':' key '=' value (',' key '=' value)*]
 * e.g. "snapkv:ratio=0.5,window=32+kivi:bits=4". Every method has a descriptor
 * with its parameters (type, default from METHODS.md, range, help); parsing
 * validates names, keys, values and contradictions and says what is accepted.
 */
#ifndef LKV_PRESS_H
#define LKV_PRESS_H

#include "longkv.h"

#define LKV_PRESS_MAX_PARAMS 16
#define LKV_PRESS_MAX_STAGES 4

typedef enum lkv_press_ptype { LKV_PT_INT, LKV_PT_FLOAT, LKV_PT_ENUM } lkv_press_ptype;

/* A value that is "not set" (budget and ratio are alternatives). */
#define LKV_PRESS_UNSET (-1.0)

typedef struct lkv_press_param {
    const char *key;
    lkv_press_ptype type;
    double def;            /* default (LKV_PRESS_UNSET: optional, no default) */
    double lo, hi;         /* inclusive range for INT/FLOAT */
    const char *choices;   /* ENUM: "a|b|c"; the value stored is the index */
    const char *help;
} lkv_press_param;

/* What a stage does; a spec may hold at most one stage of each class. */
typedef enum lkv_press_class {
    LKV_PC_NONE = 0,       /* the full cache */
    LKV_PC_EVICT = 1,      /* deletes tokens (after prefill and/or while decoding) */
    LKV_PC_QUANT = 2,      /* changes page formats */
    LKV_PC_SELECT = 3      /* chooses pages per query; deletes nothing */
} lkv_press_class;

typedef struct lkv_press_method {
    const char *name;
    const char *summary;
    const char *source;    /* paper / reference */
    lkv_press_class cls;
    int implemented;       /* 0: known method, not in this build -> LKV_ERR_UNSUPPORTED */
    const lkv_press_param *params;
    int n_params;
} lkv_press_method;

typedef struct lkv_press_stage {
    const lkv_press_method *method;
    double value[LKV_PRESS_MAX_PARAMS];  /* resolved values (default or given) */
    unsigned char given[LKV_PRESS_MAX_PARAMS];
} lkv_press_stage;

struct lkv_press {
    int n_stages;
    lkv_press_stage stage[LKV_PRESS_MAX_STAGES];
    char canonical[512];   /* spec with every parameter spelled out */
};

/* The registry: every method longkv knows (implemented or not). */
const lkv_press_method *lkv_press_methods(int *count);
const lkv_press_method *lkv_press_find_method(const char *name);

/* Value of parameter `key` of a stage (asserts the key exists in the method). */
double lkv_press_stage_get(const lkv_press_stage *st, const char *key);
int lkv_press_stage_given(const lkv_press_stage *st, const char *key);

/* Parses and validates a spec into p (no allocation). Returns LKV_OK or
 * LKV_ERR_INVALID / LKV_ERR_UNSUPPORTED with a message. */
int lkv_press_parse(const char *spec, struct lkv_press *p);


/* ------------------------------------------------------------------ hooks
 * The model runtime drives a policy through these calls, once per sequence:
 *
 *   lkv_press_state_create(press, geometry)       when a context is created
 *   lkv_press_begin_prompt(st, n_prompt, n_q)     before the prompt: which part is
 *                                                 the question (kept out unless
 *                                                 query_aware=1)
 *   lkv_press_window(st, &start, &len)            prompt rows whose queries the
 *                                                 model keeps per layer (SnapKV...)
 *   lkv_press_adjust_attn(st, layer, &ap)         masks the policy implies
 *                                                 (StreamingLLM: sinks + window)
 *   lkv_press_wants_observer(st, layer, decode)   whether to run attention with
 *   lkv_press_observe(st, seq, layer, obs, ...)   the observer and hand it over
 *   lkv_press_after_prefill(st, seq, q_window...) one-shot compression
 *   lkv_press_after_decode(st, seq)               keep within budget while decoding
 *
 * Every call that removes tokens goes through lkv_seq_keep, so memory is really
 * returned to the pool; every stage records what it did in the report.
 */
typedef struct lkv_press_geom {
    int n_layers, q_heads, kv_heads, head_dim;
} lkv_press_geom;

typedef struct lkv_press_state lkv_press_state;

int lkv_press_state_create(const struct lkv_press *p, const lkv_press_geom *g,
                           lkv_press_state **out);
void lkv_press_state_free(lkv_press_state *st);

/* The prompt about to be evaluated has n_prompt tokens; its last n_question are
 * the question (0: none). Resets per-prompt state. */
int lkv_press_begin_prompt(lkv_press_state *st, int n_prompt, int n_question);

/* Prompt rows [*start, *start + *len) whose queries after_prefill needs, per
 * layer ([len][q_heads][head_dim]); *len = 0 when none are needed. */
void lkv_press_window(const lkv_press_state *st, int *start, int *len);

/* Adjusts the attention masks of one layer (e.g. sinks + sliding window). */
void lkv_press_adjust_attn(const lkv_press_state *st, int layer, lkv_attn_params *ap);

/* StreamingLLM with positions=cache: the number S of attention sinks, i.e.
 * the leading slots of every list whose queries the model rotates at the
 * query's cache index instead of its original position (the window's keys
 * all share one shift, so for them the original positions already give the
 * cache-relative distances). The model attends slots [0, S) and [S, n)
 * separately and merges the two (model_press.c). 0 for every other policy,
 * for positions=original, and for sinks=0 (nothing to split). */
int lkv_press_cache_position_sinks(const lkv_press_state *st);

/* 1 if the model must compute the observer for this layer (decode = 0 during
 * the prompt, 1 while generating) and pass it to lkv_press_observe. */
int lkv_press_wants_observer(const lkv_press_state *st, int layer, int decode);

/* Accumulates observer masses obs[h * stride + slot] of one attention call
 * over the layer's current slots. */
int lkv_press_observe(lkv_press_state *st, const lkv_seq *seq, int layer, const float *obs,
                      int stride);

/* After the whole prompt is in the cache. q_window[layer] holds the queries of
 * the rows given by lkv_press_window ([len][q_heads][head_dim], post-RoPE), and
 * ap[layer] the layer's attention parameters. */
int lkv_press_after_prefill(lkv_press_state *st, lkv_seq *seq, const float *const *q_window,
                            const lkv_attn_params *ap, lkv_threadpool *tp);

/* After every generated token (all layers appended). */
int lkv_press_after_decode(lkv_press_state *st, lkv_seq *seq, lkv_threadpool *tp);

/* What the policy did so far, as text (tokens kept per layer/head, bytes). */
size_t lkv_press_state_report(const lkv_press_state *st, char *buf, size_t cap);

/* Prompt caches made with a policy (model_kv.c). A snapshot taken right after
 * the prompt step records the cache the policy left; restoring it is the same
 * as running the step again when nothing the later hooks read lives outside
 * the cache. LKV_OK, or LKV_ERR_UNSUPPORTED saying what would be lost. */
int lkv_press_check_restorable(const lkv_press_state *st);
/* The prompt step's bookkeeping for a prompt of n_prompt tokens whose
 * compressed cache seq was restored from a snapshot (as after_prefill leaves
 * it: per-(layer, head) kept counts, decode budgets, report bytes). */
int lkv_press_restore_prompt(lkv_press_state *st, const lkv_seq *seq, int n_prompt,
                             int n_question);
/* Tokens and question tokens of the last prompt step, and decode steps since. */
void lkv_press_prompt_info(const lkv_press_state *st, int *n_prompt, int *n_question,
                           int *decode_steps);

/* Query-aware page selection (Quest, ArkVale): for one decode step of one
 * layer, picks per KV head the pages to attend. q [n_q][q_heads][head_dim]
 * (post-RoPE). Writes sel[h * sel_stride + i] (ascending page indices),
 * sel_count[h]. ArkVale also moves pages between the pool and the backup tier
 * (recalls the selected pages, offloads the coldest), hence the non-const seq.
 * Returns 1 when a selection was made, 0 when the layer attends densely (no
 * selection policy, a dense layer, or too few pages), or an error. */
int lkv_press_select(lkv_press_state *st, lkv_seq *seq, int layer, const float *q, int n_q,
                     int *sel, int *sel_count, int sel_stride);

/* Checks that the policy can run on a cache with these parameters (e.g.
 * Quest's page size must equal the cache's page_tokens). */
int lkv_press_check_cache(const lkv_press_state *st, const lkv_cache_params *cp);

/* What the cache must look like for this policy (the model creates its cache
 * with these): *page_tokens = the page size the policy needs (KIVI: its group,
 * Quest/ArkVale: their page) or 0 for no requirement; *dtype = the format new
 * pages are written in (Q8 for "int8:residual=0", else F16; quantization
 * stages convert old pages later). Returns LKV_OK or LKV_ERR_INVALID (NULL
 * arguments, or two stages that need different page sizes). (press/quant.c) */
int lkv_press_cache_requirements(const struct lkv_press *p, int *page_tokens, lkv_dtype *dtype);

/* Pages attended / pages held by the selection policy so far (for reports). */
void lkv_press_select_stats(const lkv_press_state *st, int64_t *attended, int64_t *held);

#endif
