/* evict.h -- token-eviction policies (private to the press layer). */
#ifndef LKV_PRESS_EVICT_H
#define LKV_PRESS_EVICT_H

#include "common/rng.h"
#include "press/press.h"

typedef enum lkv_evict_kind {
    LKV_EVICT_NONE = 0,
    LKV_EVICT_STREAMING,
    LKV_EVICT_H2O,
    LKV_EVICT_SNAPKV,
    LKV_EVICT_PYRAMIDKV,
    LKV_EVICT_TOVA,
    LKV_EVICT_KNORM,
    LKV_EVICT_RANDOM
} lkv_evict_kind;

struct lkv_press_state {
    const struct lkv_press *press;
    const lkv_press_stage *evict;  /* the eviction stage, or NULL */
    lkv_evict_kind kind;
    lkv_press_geom g;
    int n_prompt, n_question;
    int prefilled;
    float **acc;                   /* [L*Hk] per-slot attention accumulators */
    int *acc_cap;                  /* [L*Hk] their capacity */
    int *kept;                     /* [L*Hk] tokens kept after prefill */
    int *decode_budget;            /* [L] tokens per head kept while decoding */
    int decode_steps;
    lkv_rng rng;
    /* scratch for scoring */
    float *scratch_f;
    size_t scratch_f_cap;
    int *scratch_i;
    size_t scratch_i_cap;
    const lkv_press_stage *select; /* the selection stage, or NULL */
    int64_t sel_attended, sel_held;
    float *bound;                  /* [max pages] scratch for page bounds */
    int bound_cap;
    /* ArkVale (press/arkvale.c) */
    int ark;                       /* 1 when the selection stage is arkvale */
    void *ark_rank;                /* [ark_rank_cap] scratch: page ranking */
    int ark_rank_cap;
    int64_t ark_recalls, ark_offloads, ark_steps;
    int ark_max_resident;          /* most pages of one (layer, head) in the pool after a step */
    size_t ark_committed, ark_peak, ark_backup_bytes; /* pool / backup bytes, last sample */
    int64_t ark_pages, ark_backup_pages;              /* pages held / in backup, last sample */
    /* quantization stage (press/quant.c), or NULL */
    const lkv_press_stage *quant;
    size_t quant_bytes_before, quant_bytes_after; /* committed around the first call that
                                                   * converted pages (quant_pages was 0) */
    int64_t quant_pages;                          /* pages converted so far */
    /* report: committed bytes when the prompt step began (before) and when it
     * ended (after: eviction, quantization, offload done), and after the latest
     * hook (now, which grows again while decoding appends tokens) */
    size_t bytes_before, bytes_after, bytes_now;
    int restored;                  /* the prompt step came from a snapshot */
    int64_t evicted_tokens;
    int n_events;
};

lkv_evict_kind lkv_evict_kind_of(const char *name);

/* press/quant.c: converts the full exact pages older than the stage's residual
 * window (int8 / KIVI) and records the bytes around the first conversion for
 * the report. A no-op without a quantization stage. */
int lkv_press_quant_apply(lkv_press_state *st, lkv_seq *seq, int after_prefill);
/* The page format the quantization stage converts to (F16 when none). */
lkv_dtype lkv_press_quant_target(const lkv_press_stage *quant);
int lkv_press_span(const lkv_press_state *st);
int lkv_streaming_recent(const lkv_press_state *st);
int lkv_press_acc_reserve(lkv_press_state *st, int list, int n);

/* ArkVale (press/arkvale.c). Selection for one decode step of one layer
 * (lkv_press_select dispatches here): ranks pages, recalls the selected ones
 * from the backup tier and offloads the coldest to stay within page_budget. */
int lkv_arkvale_select(lkv_press_state *st, lkv_seq *seq, int layer, const float *q, int n_q,
                       int *sel, int *sel_count, int sel_stride);
/* After prefill: offloads the pages beyond page_budget, ranked by the last
 * prompt query of each layer (q_window, may be NULL: by recency). No-op
 * unless the selection stage is arkvale. */
int lkv_arkvale_after_prefill(lkv_press_state *st, lkv_seq *seq, const float *const *q_window);
/* After a decode step: samples the pool counters for the report. */
int lkv_arkvale_after_decode(lkv_press_state *st, lkv_seq *seq);
/* Appends ArkVale's report lines; returns the bytes it wanted to write. */
size_t lkv_arkvale_report(const lkv_press_state *st, char *buf, size_t cap);

/* Quest bound: the largest q.k over the box [kmin, kmax]. */
float lkv_quest_bound(const float *q, const float *kmin, const float *kmax, int d);

#endif
