/* registry.c -- every KV policy longkv knows, with its parameters and the
 * defaults the papers used (METHODS.md). "implemented = 0" rows are methods we
 * know of but have not built: asking for them is an error, never a no-op. */
#include <string.h>

#include "press/press.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define UNSET LKV_PRESS_UNSET
#define BIG 1e9

/* Budget parameters shared by the eviction and selection methods: a token
 * count per (layer, KV head), or the fraction removed (kvpress's "ratio"). */
#define BUDGET_PARAMS(ratio_def)                                                              \
    {"budget", LKV_PT_INT, UNSET, 1, BIG, NULL, "tokens kept per (layer, KV head)"},          \
    {"ratio", LKV_PT_FLOAT, ratio_def, 0, 0.99, NULL,                                         \
     "fraction of the prompt's tokens removed (used when budget is not given)"},              \
    {"query_aware", LKV_PT_INT, 0, 0, 1, NULL,                                                \
     "1: the question/suffix is compressed too; 0: it is kept out (kvpress default)"},        \
    {"agg", LKV_PT_ENUM, 0, 0, 0, "mean|max", "how scores of a GQA group's query heads combine"}

static const lkv_press_param p_streaming[] = {
    {"sinks", LKV_PT_INT, 4, 0, BIG, NULL, "first tokens always kept (attention sinks)"},
    {"recent", LKV_PT_INT, 2000, 1, BIG, NULL, "most recent tokens kept (window)"},
    {"budget", LKV_PT_INT, UNSET, 1, BIG, NULL, "total kept; if given, recent = budget - sinks"},
    {"ratio", LKV_PT_FLOAT, UNSET, 0, 0.99, NULL, "fraction removed; if given, sets budget"},
    {"positions", LKV_PT_ENUM, 0, 0, 0, "original|cache",
     "rotary positions of kept keys: original token positions, or slot index in the cache "
     "(the paper's; exact, by attending the sinks with a re-rotated query)"},
    {"decode", LKV_PT_INT, 1, 0, 1, NULL, "1: also keep the cache within budget while decoding"},
};
static const lkv_press_param p_h2o[] = {
    BUDGET_PARAMS(0.8),
    {"recent_frac", LKV_PT_FLOAT, 0.5, 0, 1, NULL, "share of the budget for recent tokens (rest: heavy hitters)"},
    {"decode", LKV_PT_INT, 1, 0, 1, NULL, "1: keep evicting while decoding"},
};
static const lkv_press_param p_snapkv[] = {
    BUDGET_PARAMS(0.5),
    {"window", LKV_PT_INT, 32, 1, 4096, NULL, "observation window: last prompt queries that vote"},
    {"kernel", LKV_PT_INT, 7, 1, 63, NULL, "1-D pooling kernel over the votes (odd)"},
    {"pool", LKV_PT_ENUM, 0, 0, 0, "max|avg", "pooling type"},
    {"every", LKV_PT_INT, 0, 0, BIG, NULL, "re-compress every N decode steps (0: once after prefill)"},
};
static const lkv_press_param p_pyramid[] = {
    BUDGET_PARAMS(0.5),
    {"window", LKV_PT_INT, 32, 1, 4096, NULL, "observation window"},
    {"kernel", LKV_PT_INT, 7, 1, 63, NULL, "pooling kernel (odd)"},
    {"pool", LKV_PT_ENUM, 0, 0, 0, "max|avg", "pooling type"},
    {"beta", LKV_PT_FLOAT, 20, 1, 1000, NULL, "pyramid steepness: min layer budget = (C - w) / beta"},
};
static const lkv_press_param p_tova[] = {
    {"budget", LKV_PT_INT, 512, 1, BIG, NULL, "tokens kept per (layer, KV head)"},
    {"ratio", LKV_PT_FLOAT, UNSET, 0, 0.99, NULL, "fraction removed after prefill (overrides budget)"},
    {"query_aware", LKV_PT_INT, 0, 0, 1, NULL, "1: the question is compressed too"},
    {"decode", LKV_PT_INT, 1, 0, 1, NULL, "1: keep evicting while decoding"},
};
static const lkv_press_param p_knorm[] = {BUDGET_PARAMS(0.5)};
static const lkv_press_param p_random[] = {
    BUDGET_PARAMS(0.5),
    {"seed", LKV_PT_INT, 0, 0, 4294967295.0, NULL, "random seed"},
};
static const lkv_press_param p_int8[] = {
    {"residual", LKV_PT_INT, 0, 0, BIG, NULL, "most recent tokens kept exact"},
};
static const lkv_press_param p_kivi[] = {
    {"bits", LKV_PT_INT, 4, 2, 4, NULL, "2 or 4 bits per element"},
    {"group", LKV_PT_INT, 32, 8, 256, NULL, "keys: tokens per group (per channel); values: channels per group"},
    {"residual", LKV_PT_INT, 128, 0, BIG, NULL, "recent tokens kept exact (multiple of group)"},
};
static const lkv_press_param p_quest[] = {
    {"budget", LKV_PT_INT, 1024, 16, BIG, NULL, "tokens attended per head (top max(3, budget/page) pages)"},
    {"page", LKV_PT_INT, 16, 1, 4096, NULL, "page size (must equal the cache's page_tokens)"},
    {"dense_layers", LKV_PT_INT, 2, 0, 1000, NULL, "first layers attend densely"},
};
static const lkv_press_param p_arkvale[] = {
    {"page", LKV_PT_INT, 32, 1, 4096, NULL, "page size (must equal the cache's page_tokens)"},
    {"page_budget", LKV_PT_INT, 128, 4, BIG, NULL,
     "pages per (layer, KV head) in fast memory (the pool); the rest go to the backup tier"},
    {"topk", LKV_PT_INT, 32, 1, BIG, NULL,
     "pages attended per query, sink and recent pages included (<= page_budget)"},
    {"sink_pages", LKV_PT_INT, 1, 0, 64, NULL, "first pages always attended"},
    {"recent_pages", LKV_PT_INT, 2, 0, 64, NULL, "last pages always attended"},
    {"dense_layers", LKV_PT_INT, 2, 0, 1000, NULL, "first layers attend densely"},
};
static const lkv_press_param p_generic_budget[] = {BUDGET_PARAMS(0.5)};

static const lkv_press_method methods[] = {
    {"full", "the full cache: nothing removed (the baseline)", "-", LKV_PC_NONE, 1, NULL, 0},
    {"streamingllm", "attention sinks + recent window", "Xiao et al. 2023, StreamingLLM",
     LKV_PC_EVICT, 1, p_streaming, N(p_streaming)},
    {"h2o", "heavy hitters (accumulated attention) + recent tokens", "Zhang et al. 2023, H2O",
     LKV_PC_EVICT, 1, p_h2o, N(p_h2o)},
    {"snapkv", "observation-window votes, pooled, top tokens per head", "Li et al. 2024, SnapKV",
     LKV_PC_EVICT, 1, p_snapkv, N(p_snapkv)},
    {"pyramidkv", "SnapKV scores with per-layer budgets falling with depth",
     "Cai et al. 2024, PyramidKV", LKV_PC_EVICT, 1, p_pyramid, N(p_pyramid)},
    {"tova", "drop the token the newest query attends least", "Oren et al. 2024, TOVA",
     LKV_PC_EVICT, 1, p_tova, N(p_tova)},
    {"knorm", "keep keys with the smallest L2 norm", "Devoto et al. 2024", LKV_PC_EVICT, 1,
     p_knorm, N(p_knorm)},
    {"random", "keep a uniform random subset (baseline)", "-", LKV_PC_EVICT, 1, p_random,
     N(p_random)},
    {"int8", "symmetric int8 per token for keys and values", "-", LKV_PC_QUANT, 1, p_int8,
     N(p_int8)},
    {"kivi", "keys per channel, values per token, 2/4-bit, exact residual window",
     "Liu et al. 2024, KIVI", LKV_PC_QUANT, 1, p_kivi, N(p_kivi)},
    {"quest", "per-page min/max key digests, attend the top pages per head",
     "Tang et al. 2024, Quest", LKV_PC_SELECT, 1, p_quest, N(p_quest)},
    {"arkvale", "box digests, page budget in fast memory, recall from a backup tier",
     "Chen et al. 2024, ArkVale", LKV_PC_SELECT, 1, p_arkvale, N(p_arkvale)},
    /* known, planned (METHODS.md P2/P3), not in this build */
    {"expected_attention", "expected attention under a Gaussian query model (P2)", "kvpress",
     LKV_PC_EVICT, 0, p_generic_budget, N(p_generic_budget)},
    {"keydiff", "negative cosine similarity to the mean key (P2)", "kvpress", LKV_PC_EVICT, 0,
     p_generic_budget, N(p_generic_budget)},
    {"adakv", "per-head budgets within a layer (P2)", "Feng et al. 2024, Ada-KV", LKV_PC_EVICT,
     0, p_generic_budget, N(p_generic_budget)},
    {"kvquant", "pre-RoPE per-channel keys, non-uniform codes, outliers (P2)",
     "Hooper et al. 2024, KVQuant", LKV_PC_QUANT, 0, NULL, 0},
    {"zipcache", "mixed precision by token saliency (P2)", "He et al. 2024, ZipCache",
     LKV_PC_QUANT, 0, NULL, 0},
    {"tokenselect", "token-level top-k with head voting (P2)", "Wu et al. 2024, TokenSelect",
     LKV_PC_SELECT, 0, NULL, 0},
    {"shadowkv", "low-rank pre-RoPE keys + landmarks (P2)", "Sun et al. 2024, ShadowKV",
     LKV_PC_SELECT, 0, NULL, 0},
    {"duoattention", "retrieval heads full, streaming heads sinks + recent (P2)",
     "Xiao et al. 2024, DuoAttention", LKV_PC_EVICT, 0, NULL, 0},
    {"think", "prune the least important key channels (P2)", "Xu et al. 2024, ThinK",
     LKV_PC_QUANT, 0, NULL, 0},
};

const lkv_press_method *lkv_press_methods(int *count) {
    if (count)
        *count = N(methods);
    return methods;
}

const lkv_press_method *lkv_press_find_method(const char *name) {
    for (int i = 0; i < N(methods); i++)
        if (!strcmp(methods[i].name, name))
            return &methods[i];
    return NULL;
}
