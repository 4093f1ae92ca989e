/* tasks.c -- passkey and needle-in-a-haystack prompt generators.
 *
 * A prompt is   instruction "\n" haystack "\n" question " " answer_prefix
 * where the haystack is a run of units (corpus sentences, or the passkey filler
 * repeated) with needle sentences inserted at unit boundaries. Units are joined
 * by one space, or by a blank line after the last sentence of a paragraph.
 *
 * Sizing: the prompt must fit ctx_tokens of the caller's tokenizer. Units are
 * counted one by one (cached) and taken while their sum fits the budget left by
 * the template and the needles; the whole prompt is then counted, and if joins
 * made it longer than the target the budget shrinks by the excess and the
 * haystack is rebuilt (one or two rounds in practice).
 *
 * Depth: a needle asked at depth d goes to the unit boundary whose count of
 * haystack tokens before it is nearest to d% of all haystack tokens; the
 * achieved depth is reported next to the requested one.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rng.h"
#include "eval/eval.h"

/* ------------------------------------------------------------ templates */

static const char passkey_instruction[] =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
    "it. I will quiz you about the important information there.";
static const char passkey_filler[] =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
static const char passkey_needle_fmt[] = "The pass key is %s. Remember it. %s is the pass key.";
static const char passkey_question[] = "What is the pass key?";
static const char passkey_answer_prefix[] = "The pass key is";

static const char niah_instruction[] =
    "Some special magic numbers are hidden within the following text. Make sure to memorize "
    "them. I will quiz you about the numbers afterwards.";
static const char niah_needle_fmt[] = "One of the special magic numbers for %s is: %s.";

/* Key words: "<adjective>-<noun>", 48 x 48 combinations. */
static const char *const key_adjectives[] = {
    "amber",  "ancient", "bold",   "brave",  "bright", "calm",   "clever", "copper",
    "crimson", "curious", "dusty", "eager",  "early",  "fancy",  "fierce", "frozen",
    "gentle", "golden",  "hollow", "humble", "icy",    "jolly",  "lively", "lonely",
    "lucky",  "marble",  "mellow", "misty",  "noble",  "olive",  "patient", "polite",
    "proud",  "quiet",   "rapid",  "rusty",  "silent", "silver", "sleepy", "steady",
    "stormy", "sunny",   "tender", "tidy",   "velvet", "wicked", "windy",  "young",
};
static const char *const key_nouns[] = {
    "anchor",  "badger", "banjo",   "beacon",  "biscuit", "bramble", "canyon", "castle",
    "comet",   "compass", "cricket", "dolphin", "falcon", "feather", "fiddle", "garden",
    "glacier", "harbor", "helmet",  "island",  "jigsaw", "kettle",  "lantern", "meadow",
    "mitten",  "needle", "orchard", "otter",   "pebble", "pepper",  "pigeon",  "puzzle",
    "quarry",  "rabbit", "ribbon",  "saddle",  "salmon", "spindle", "teapot",  "thistle",
    "tractor", "trumpet", "tunnel", "violin",  "walnut", "weasel",  "willow",  "zephyr",
};
#define N_ADJ (sizeof key_adjectives / sizeof *key_adjectives)
#define N_NOUN (sizeof key_nouns / sizeof *key_nouns)

/* ------------------------------------------------------------ counting */

int lkv_count_words(void *ctx, const char *text, size_t len) {
    (void)ctx;
    int n = 0, in_word = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        int sp = c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
        if (!sp && !in_word && n < INT32_MAX)
            n++;
        in_word = !sp;
    }
    return n;
}

/* ------------------------------------------------------------ params */

lkv_task_params lkv_task_default_params(void) {
    lkv_task_params p;
    memset(&p, 0, sizeof p);
    p.kind = LKV_TASK_PASSKEY;
    p.ctx_tokens = 1024;
    p.depth = 50.0;
    p.seed = 0;
    p.n_keys = 1;
    p.n_values = 1;
    p.n_queries = 1;
    p.count_tokens = NULL;
    p.count_ctx = NULL;
    return p;
}

static const struct {
    const char *name;
    lkv_task_kind kind;
    int n_keys, n_values, n_queries;
} presets[] = {
    {"passkey", LKV_TASK_PASSKEY, 1, 1, 1},
    {"niah_single", LKV_TASK_NIAH, 1, 1, 1},
    {"niah_multikey", LKV_TASK_NIAH, 4, 1, 1},
    {"niah_multivalue", LKV_TASK_NIAH, 1, 4, 1},
    {"niah_multiquery", LKV_TASK_NIAH, 4, 1, 4},
};

int lkv_task_params_preset(const char *name, lkv_task_params *p) {
    if (!name || !p)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_task_params_preset: NULL argument");
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++) {
        if (strcmp(presets[i].name, name) == 0) {
            p->kind = presets[i].kind;
            p->n_keys = presets[i].n_keys;
            p->n_values = presets[i].n_values;
            p->n_queries = presets[i].n_queries;
            return LKV_OK;
        }
    }
    LKV_FAIL(LKV_ERR_NOT_FOUND,
             "unknown task \"%s\" (passkey, niah_single, niah_multikey, niah_multivalue, "
             "niah_multiquery)",
             name);
}

static const char *preset_name(const lkv_task_params *p) {
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
        if (presets[i].kind == p->kind && (p->kind == LKV_TASK_PASSKEY ||
                                           (presets[i].n_keys == p->n_keys &&
                                            presets[i].n_values == p->n_values &&
                                            presets[i].n_queries == p->n_queries)))
            return presets[i].name;
    return "niah";
}

/* ------------------------------------------------------------ generator state */

typedef struct needle_spec {
    char text[128];
    double depth;     /* requested */
    int boundary;     /* unit boundary 0..m it goes before (m = after the last) */
} needle_spec;

typedef struct gen {
    const lkv_task_params *p;
    lkv_count_tokens_fn count;
    void *cctx;
    const lkv_corpus *corpus; /* NULL: passkey filler */
    size_t n_corpus;
    size_t start;             /* first corpus sentence */
    int *tok;                 /* [tok_n] tokens of haystack unit k (cached) */
    int tok_n, tok_cap;
    int64_t *cum;             /* [m+1] prefix sums of tok */
    int cum_cap;
    int n_needles;
    needle_spec needles[LKV_TASK_MAX_NEEDLES];
    const char *instruction;
    char question[2048];      /* room for LKV_TASK_MAX_NEEDLES keys */
    char answer_prefix[2048];
} gen;

static void unit_get(const gen *g, int k, const char **s, size_t *len, int *para_end) {
    if (!g->corpus) {
        *s = passkey_filler;
        *len = sizeof passkey_filler - 1;
        *para_end = 0;
        return;
    }
    size_t idx = (g->start + (size_t)k) % g->n_corpus;
    lkv_corpus_sentence(g->corpus, idx, s, len, para_end);
}

static int count(const gen *g, const char *s, size_t len) {
    if (len > (size_t)INT32_MAX)
        LKV_FAIL(LKV_ERR_INVALID, "text of %zu bytes is too long to count", len);
    return g->count(g->cctx, s, len); /* a negative result is the counter's error */
}

/* Tokens of unit k, counted once. */
static int unit_tokens(gen *g, int k, int *out) {
    while (g->tok_n <= k) {
        if (g->tok_n == g->tok_cap) {
            int nc = g->tok_cap ? g->tok_cap * 2 : 1024;
            int *t = lkv_realloc(g->tok, (size_t)nc * sizeof *t);
            if (!t)
                LKV_FAIL(LKV_ERR_NOMEM, "out of memory generating a task");
            g->tok = t;
            g->tok_cap = nc;
        }
        const char *s;
        size_t len;
        int pe;
        unit_get(g, g->tok_n, &s, &len, &pe);
        int n = count(g, s, len);
        if (n < 0)
            return n;
        g->tok[g->tok_n++] = n;
    }
    *out = g->tok[k];
    return LKV_OK;
}

/* The largest m (number of units) whose token sum fits budget, filling cum. */
static int fit_units(gen *g, int64_t budget, int max_units, int *m_out) {
    if (g->cum_cap < max_units + 1) {
        int64_t *c = lkv_realloc(g->cum, (size_t)(max_units + 1) * sizeof *c);
        if (!c)
            LKV_FAIL(LKV_ERR_NOMEM, "out of memory generating a task");
        g->cum = c;
        g->cum_cap = max_units + 1;
    }
    g->cum[0] = 0;
    int m = 0;
    while (m < max_units) {
        int t;
        LKV_TRY(unit_tokens(g, m, &t));
        if (g->cum[m] + t > budget)
            break;
        g->cum[m + 1] = g->cum[m] + t;
        m++;
    }
    *m_out = m;
    return LKV_OK;
}

/* Boundary k in [0, m] whose prefix sum is nearest to depth% of the total. */
static int place(const gen *g, int m, double depth) {
    double target = depth / 100.0 * (double)g->cum[m];
    int lo = 0, hi = m;
    while (lo < hi) { /* first k with cum[k] >= target */
        int mid = lo + (hi - lo) / 2;
        if ((double)g->cum[mid] < target)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo > 0 && target - (double)g->cum[lo - 1] <= (double)g->cum[lo] - target)
        lo--;
    return lo;
}

/* Renders the prompt with m units and the needles at their boundaries. Needle
 * byte offsets go to offs[] (by needle index). */
static void render(const gen *g, int m, lkv_sb *b, size_t *hay_off, size_t *hay_end,
                   size_t *offs) {
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
    lkv_sb_puts(b, g->instruction);
    lkv_sb_putc(b, '\n');
    *hay_off = b->len;
    const char *sep = NULL; /* separator owed before the next piece */
    for (int k = 0; k <= m; k++) {
        for (int i = 0; i < g->n_needles; i++) {
            if (g->needles[i].boundary != k)
                continue;
            if (sep)
                lkv_sb_puts(b, sep);
            offs[i] = b->len;
            lkv_sb_puts(b, g->needles[i].text);
            sep = " ";
        }
        if (k == m)
            break;
        const char *s;
        size_t len;
        int pe;
        unit_get(g, k, &s, &len, &pe);
        if (sep)
            lkv_sb_puts(b, sep);
        lkv_sb_append(b, s, len);
        sep = pe ? "\n\n" : " ";
    }
    *hay_end = b->len;
    lkv_sb_putc(b, '\n');
    lkv_sb_puts(b, g->question);
    lkv_sb_putc(b, ' ');
    lkv_sb_puts(b, g->answer_prefix);
}

/* Occurrences of needle in hay[0..n). */
static int occurrences(const char *hay, size_t n, const char *needle) {
    size_t k = strlen(needle);
    int c = 0;
    if (k == 0 || k > n)
        return 0;
    for (size_t i = 0; i + k <= n; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, k) == 0)
            c++;
    return c;
}

/* ------------------------------------------------------------ drawing */

/* Draws keys, values and the question; fills g->needles (text, depth) and the
 * sample's needles (key, value, asked) and expected answers. */
static void draw(gen *g, lkv_rng *rng, lkv_task_sample *s) {
    const lkv_task_params *p = g->p;
    if (p->kind == LKV_TASK_PASSKEY) {
        lkv_needle *nd = &s->needles[0];
        memset(nd, 0, sizeof *nd);
        snprintf(nd->value, sizeof nd->value, "%05u", (unsigned)(10000 + lkv_rng_below(rng, 90000)));
        nd->asked = 1;
        snprintf(g->needles[0].text, sizeof g->needles[0].text, passkey_needle_fmt, nd->value,
                 nd->value);
        g->needles[0].depth = p->depth;
        g->n_needles = 1;
        s->n_needles = 1;
        snprintf(g->question, sizeof g->question, "%s", passkey_question);
        snprintf(g->answer_prefix, sizeof g->answer_prefix, "%s", passkey_answer_prefix);
        s->n_expected = 1;
        snprintf(s->expected[0], sizeof s->expected[0], "%s", nd->value);
        return;
    }
    /* distinct keys and distinct values */
    char keys[LKV_TASK_MAX_NEEDLES][40];
    for (int k = 0; k < p->n_keys; k++) {
        for (;;) {
            const char *a = key_adjectives[lkv_rng_below(rng, N_ADJ)];
            const char *n = key_nouns[lkv_rng_below(rng, N_NOUN)];
            if (strcmp(a, n) == 0)
                continue;
            snprintf(keys[k], sizeof keys[k], "%s-%s", a, n);
            int dup = 0;
            for (int j = 0; j < k; j++)
                dup |= strcmp(keys[j], keys[k]) == 0;
            if (!dup)
                break;
        }
    }
    int nn = p->n_keys * p->n_values;
    for (int i = 0; i < nn; i++) {
        lkv_needle *nd = &s->needles[i];
        memset(nd, 0, sizeof *nd);
        int key = i / p->n_values;
        snprintf(nd->key, sizeof nd->key, "%s", keys[key]);
        for (;;) {
            snprintf(nd->value, sizeof nd->value, "%07u",
                     (unsigned)(1000000 + lkv_rng_below(rng, 9000000)));
            int dup = 0;
            for (int j = 0; j < i; j++)
                dup |= strcmp(s->needles[j].value, nd->value) == 0;
            if (!dup)
                break;
        }
        nd->asked = key < p->n_queries;
        snprintf(g->needles[i].text, sizeof g->needles[i].text, niah_needle_fmt, nd->key,
                 nd->value);
    }
    g->n_needles = nn;
    s->n_needles = nn;
    /* The first needle sits at the requested depth, the others anywhere. */
    g->needles[0].depth = p->depth;
    for (int i = 1; i < nn; i++)
        g->needles[i].depth = 100.0 * lkv_rng_uniform(rng);
    s->n_expected = 0;
    for (int i = 0; i < nn; i++)
        if (s->needles[i].asked)
            memcpy(s->expected[s->n_expected++], s->needles[i].value, sizeof s->expected[0]);
    /* question: one key, one key with several values, or several keys */
    char who[LKV_TASK_MAX_NEEDLES * 48];
    size_t w = 0;
    who[0] = '\0';
    for (int q = 0; q < p->n_queries; q++) {
        const char *sep = q == 0 ? "" : (q == p->n_queries - 1 ? (p->n_queries > 2 ? ", and " : " and ") : ", ");
        int k = snprintf(who + w, sizeof who - w, "%s%s", sep, keys[q]);
        if (k > 0)
            w = w + (size_t)k < sizeof who ? w + (size_t)k : sizeof who - 1;
    }
    if (p->n_values == 1 && p->n_queries == 1) {
        snprintf(g->question, sizeof g->question,
                 "What is the special magic number for %s mentioned in the provided text?", who);
        snprintf(g->answer_prefix, sizeof g->answer_prefix,
                 "The special magic number for %s mentioned in the provided text is", who);
    } else {
        snprintf(g->question, sizeof g->question,
                 "What are all the special magic numbers for %s mentioned in the provided text?",
                 who);
        snprintf(g->answer_prefix, sizeof g->answer_prefix,
                 "The special magic numbers for %s mentioned in the provided text are", who);
    }
}

/* 1 if every key and value occurs in the context exactly as often as the
 * needles put it there (a corpus could contain a drawn number by chance). */
static int needles_unique(const gen *g, const lkv_task_sample *s, const char *ctx, size_t n) {
    for (int i = 0; i < s->n_needles; i++) {
        int want_v = g->p->kind == LKV_TASK_PASSKEY ? 2 : 1;
        if (occurrences(ctx, n, s->needles[i].value) != want_v)
            return 0;
        if (s->needles[i].key[0] && occurrences(ctx, n, s->needles[i].key) != g->p->n_values)
            return 0;
    }
    return 1;
}

/* ------------------------------------------------------------ generate */

static int validate(const lkv_task_params *p, const lkv_corpus *corpus) {
    if (p->kind != LKV_TASK_PASSKEY && p->kind != LKV_TASK_NIAH)
        LKV_FAIL(LKV_ERR_INVALID, "unknown task kind %d", (int)p->kind);
    if (p->ctx_tokens < 1)
        LKV_FAIL(LKV_ERR_INVALID, "ctx_tokens must be >= 1 (got %d)", p->ctx_tokens);
    if (!(p->depth >= 0.0 && p->depth <= 100.0))
        LKV_FAIL(LKV_ERR_INVALID, "depth must be in [0, 100] (got %g)", p->depth);
    if (p->kind == LKV_TASK_NIAH) {
        if (!corpus)
            LKV_FAIL(LKV_ERR_INVALID, "niah needs a corpus (the haystack)");
        if (p->n_keys < 1 || p->n_values < 1 || p->n_queries < 1 || p->n_queries > p->n_keys)
            LKV_FAIL(LKV_ERR_INVALID,
                     "niah needs n_keys >= 1, n_values >= 1, 1 <= n_queries <= n_keys "
                     "(got %d, %d, %d)",
                     p->n_keys, p->n_values, p->n_queries);
        if (p->n_keys > LKV_TASK_MAX_NEEDLES || p->n_values > LKV_TASK_MAX_NEEDLES ||
            p->n_keys * p->n_values > LKV_TASK_MAX_NEEDLES)
            LKV_FAIL(LKV_ERR_INVALID, "at most %d needles (n_keys * n_values = %d)",
                     LKV_TASK_MAX_NEEDLES, p->n_keys * p->n_values);
    }
    return LKV_OK;
}

static int copy_str(char **dst, const char *s, size_t n) {
    *dst = lkv_malloc(n + 1);
    if (!*dst)
        LKV_FAIL(LKV_ERR_NOMEM, "out of memory generating a task");
    memcpy(*dst, s, n);
    (*dst)[n] = '\0';
    return LKV_OK;
}

/* One attempt with drawn needles: sizes the haystack and fills the sample.
 * Returns 1 if the needles collided with the text (draw again), 0 or < 0. */
static int build(gen *g, lkv_task_sample *s, lkv_sb *b) {
    const lkv_task_params *p = g->p;
    size_t offs[LKV_TASK_MAX_NEEDLES];
    size_t hay_off = 0, hay_end = 0;
    for (int i = 0; i < g->n_needles; i++)
        g->needles[i].boundary = 0;

    /* the template and needles alone */
    render(g, 0, b, &hay_off, &hay_end, offs);
    LKV_TRY(lkv_sb_status(b));
    int overhead = count(g, b->data, b->len);
    if (overhead < 0)
        return overhead;
    int64_t budget = (int64_t)p->ctx_tokens - overhead;
    /* a unit is at least one token for any real tokenizer; the cap keeps a
     * counter that returns 0 from looping forever */
    int max_units = p->ctx_tokens > (INT32_MAX - 64) / 2 ? INT32_MAX / 2 : p->ctx_tokens * 2 + 64;
    int m = 0;
    int n_tokens = 0;
    for (int round = 0;; round++) {
        if (budget > 0)
            LKV_TRY(fit_units(g, budget, max_units, &m));
        else
            m = 0;
        if (m == 0) {
            int t0;
            LKV_TRY(unit_tokens(g, 0, &t0));
            LKV_FAIL(LKV_ERR_INVALID,
                     "ctx_tokens %d is too small for task %s: the template and needles take %d "
                     "tokens and a haystack sentence %d more",
                     p->ctx_tokens, preset_name(p), overhead, t0);
        }
        for (int i = 0; i < g->n_needles; i++)
            g->needles[i].boundary = place(g, m, g->needles[i].depth);
        render(g, m, b, &hay_off, &hay_end, offs);
        LKV_TRY(lkv_sb_status(b));
        n_tokens = count(g, b->data, b->len);
        if (n_tokens < 0)
            return n_tokens;
        if (n_tokens <= p->ctx_tokens)
            break;
        if (round == 16)
            LKV_FAIL(LKV_ERR_STATE, "could not fit task %s into %d tokens (last try: %d)",
                     preset_name(p), p->ctx_tokens, n_tokens);
        budget = g->cum[m] - (n_tokens - p->ctx_tokens);
    }
    size_t context_len = hay_end;
    if (!needles_unique(g, s, b->data, context_len))
        return 1;

    /* Fill the sample. Depths are measured, not taken from the placement's
     * sums: the haystack is counted whole (joins included) and each needle's
     * own tokens are taken out, so the reported depth is the share of real
     * haystack tokens before the needle. */
    int needle_tok[LKV_TASK_MAX_NEEDLES];
    int64_t hay_tokens = count(g, b->data + hay_off, hay_end - hay_off);
    if (hay_tokens < 0)
        return (int)hay_tokens;
    for (int i = 0; i < g->n_needles; i++) {
        needle_tok[i] = count(g, g->needles[i].text, strlen(g->needles[i].text));
        if (needle_tok[i] < 0)
            return needle_tok[i];
        hay_tokens -= needle_tok[i];
    }
    for (int i = 0; i < g->n_needles; i++) {
        lkv_needle *nd = &s->needles[i];
        nd->offset = offs[i];
        nd->len = strlen(g->needles[i].text);
        int tp = count(g, b->data, offs[i]);
        if (tp < 0)
            return tp;
        nd->token_pos = tp;
        int64_t before = count(g, b->data + hay_off, offs[i] - hay_off);
        if (before < 0)
            return (int)before;
        for (int j = 0; j < g->n_needles; j++)
            if (j != i && offs[j] < offs[i])
                before -= needle_tok[j];
        double d = hay_tokens > 0 ? 100.0 * (double)before / (double)hay_tokens : 0.0;
        nd->depth = d < 0.0 ? 0.0 : d > 100.0 ? 100.0 : d;
    }
    int ctx_tok = count(g, b->data, context_len);
    if (ctx_tok < 0)
        return ctx_tok;
    s->n_tokens = n_tokens;
    s->context_tokens = ctx_tok;
    s->haystack_tokens = (int)hay_tokens;
    s->haystack_sentences = m;
    s->haystack_offset = hay_off;
    s->haystack_end = hay_end;
    s->corpus_start = g->corpus ? g->start : 0;
    s->wrapped = g->corpus && g->start + (size_t)m > g->n_corpus;
    s->depth_actual = s->needles[0].depth;
    s->prompt_len = b->len;
    s->context_len = context_len;
    LKV_TRY(copy_str(&s->context, b->data, context_len));
    LKV_TRY(copy_str(&s->question, g->question, strlen(g->question)));
    LKV_TRY(copy_str(&s->answer_prefix, g->answer_prefix, strlen(g->answer_prefix)));
    s->prompt = lkv_sb_take(b);
    if (!s->prompt)
        LKV_FAIL(LKV_ERR_NOMEM, "out of memory generating a task");
    return 0;
}

int lkv_task_generate(const lkv_task_params *p, const lkv_corpus *corpus, lkv_task_sample *out) {
    if (!p || !out)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_task_generate: NULL argument");
    memset(out, 0, sizeof *out);
    LKV_TRY(validate(p, corpus));

    gen *g = lkv_calloc(1, sizeof *g);
    if (!g)
        LKV_FAIL(LKV_ERR_NOMEM, "out of memory generating a task");
    g->p = p;
    g->count = p->count_tokens ? p->count_tokens : lkv_count_words;
    g->cctx = p->count_tokens ? p->count_ctx : NULL;
    g->instruction = p->kind == LKV_TASK_PASSKEY ? passkey_instruction : niah_instruction;

    lkv_rng rng;
    lkv_rng_seed(&rng, p->seed);
    lkv_task_sample *s = out;
    snprintf(s->task, sizeof s->task, "%s", preset_name(p));
    s->seed = p->seed;
    s->ctx_target = p->ctx_tokens;
    s->depth = p->depth;
    if (p->kind == LKV_TASK_NIAH) {
        g->corpus = corpus;
        g->n_corpus = lkv_corpus_n_sentences(corpus);
        snprintf(s->corpus, sizeof s->corpus, "%s", lkv_corpus_name(corpus));
        /* start at a paragraph's first sentence chosen by the seed */
        size_t st = (size_t)lkv_rng_below(&rng, g->n_corpus);
        for (size_t tries = 0; tries < g->n_corpus; tries++) {
            int pe = 0;
            const char *t;
            size_t l;
            if (st == 0)
                break;
            lkv_corpus_sentence(corpus, st - 1, &t, &l, &pe);
            if (pe)
                break;
            st = (st + 1) % g->n_corpus;
        }
        g->start = st;
    } else {
        snprintf(s->corpus, sizeof s->corpus, "filler");
    }

    lkv_sb b = {0};
    int rc = 1;
    for (int attempt = 0; attempt < 8 && rc == 1; attempt++) {
        draw(g, &rng, s);
        rc = build(g, s, &b);
    }
    if (rc == 1)
        rc = lkv_set_error(LKV_ERR_STATE,
                           "could not draw needles that do not already occur in corpus %s",
                           s->corpus);
    lkv_sb_free(&b);
    lkv_free(g->tok);
    lkv_free(g->cum);
    lkv_free(g);
    if (rc < 0) {
        lkv_task_sample_clear(out);
        return rc;
    }
    return LKV_OK;
}

void lkv_task_sample_clear(lkv_task_sample *s) {
    if (!s)
        return;
    lkv_free(s->prompt);
    lkv_free(s->context);
    lkv_free(s->question);
    lkv_free(s->answer_prefix);
    memset(s, 0, sizeof *s);
}
