/* test_eval.c -- the eval layer without a model: corpora and sentence
 * splitting, passkey/NIAH generation (needles present once, at the stated depth,
 * deterministic per seed), answer extraction and scoring, report writers (JSON
 * lines parsed back, CSV parsed back by RFC 4180, Markdown table shape),
 * progress display, RSS, and allocation-failure injection. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/alloc.h"
#include "eval/eval.h"
#include "testutil.h"

/* ================================================================ helpers */

static int count_occ(const char *hay, size_t n, const char *needle) {
    size_t k = strlen(needle);
    int c = 0;
    for (size_t i = 0; k && i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0)
            c++;
    return c;
}

static int words(const char *s, size_t n) { return lkv_count_words(NULL, s, n); }

/* A counter that is not additive over joins (like BPE): ceil(bytes / 4). */
static int count_quarter_bytes(void *ctx, const char *s, size_t n) {
    (void)ctx;
    (void)s;
    return (int)((n + 3) / 4);
}

/* A counter that counts joins (like a tokenizer with newline tokens) and
 * rounds pieces down: the units' sum underestimates the whole, so generation
 * has to shrink its first guess. */
static int count_floor_bytes(void *ctx, const char *s, size_t n) {
    (void)ctx;
    int nl = 0;
    for (size_t i = 0; i < n; i++)
        nl += s[i] == '\n';
    return (int)(n / 4) + nl;
}

/* A counter that fails after `left` calls. */
static int count_failing(void *ctx, const char *s, size_t n) {
    int *left = ctx;
    if ((*left)-- <= 0)
        return LKV_ERR_IO;
    return lkv_count_words(NULL, s, n);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    lkv_sb b = {0};
    char buf[4096];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        lkv_sb_append(&b, buf, got);
    fclose(f);
    *len = b.len;
    return lkv_sb_take(&b);
}

/* ================================================================ corpora */

static void test_sentences(void) {
    const char *t = "Mr. Darcy came. He said \"Hello!\" and left. \"Well?\" said she. It was 3.5 "
                    "miles away! J. Smith arrived... Then what? Nothing.";
    const char *want[] = {"Mr. Darcy came.", "He said \"Hello!\" and left.",
                          "\"Well?\" said she.", "It was 3.5 miles away!", "J. Smith arrived...",
                          "Then what?", "Nothing."};
    eval_sentence *v = NULL;
    size_t n = 0, cap = 0;
    CHECK_OK(eval_split_sentences(t, 0, strlen(t), &v, &n, &cap));
    CHECK(n == 7, "split into %zu sentences, want 7", n);
    for (size_t i = 0; i < n && i < 7; i++) {
        CHECK(v[i].len == strlen(want[i]) && memcmp(t + v[i].off, want[i], v[i].len) == 0,
              "sentence %zu is \"%.*s\", want \"%s\"", i, (int)v[i].len, t + v[i].off, want[i]);
        CHECK(v[i].para_end == (i == n - 1), "para_end of sentence %zu", i);
    }
    lkv_free(v);

    /* whitespace normalisation and paragraphs */
    const char *raw = "  Line one\nline two.\tMore  text.\r\n\n \n\nPara two!  \r\n\n";
    lkv_corpus *c = NULL;
    CHECK_OK(lkv_corpus_from_text("t", raw, strlen(raw), &c));
    CHECK(lkv_corpus_n_sentences(c) == 3, "%zu sentences", lkv_corpus_n_sentences(c));
    const char *s;
    size_t len;
    int pe;
    CHECK_OK(lkv_corpus_sentence(c, 0, &s, &len, &pe));
    CHECK(len == 18 && memcmp(s, "Line one line two.", len) == 0 && !pe, "s0 \"%.*s\"",
          (int)len, s);
    CHECK_OK(lkv_corpus_sentence(c, 1, &s, &len, &pe));
    CHECK(len == 10 && memcmp(s, "More text.", len) == 0 && pe, "s1 \"%.*s\"", (int)len, s);
    CHECK_OK(lkv_corpus_sentence(c, 2, &s, &len, &pe));
    CHECK(len == 9 && memcmp(s, "Para two!", len) == 0 && pe, "s2 \"%.*s\"", (int)len, s);
    CHECK(lkv_corpus_sentence(c, 3, &s, &len, &pe) == LKV_ERR_RANGE, "out of range");
    CHECK(strcmp(lkv_corpus_name(c), "t") == 0, "name");
    lkv_corpus_free(c);

    c = NULL;
    CHECK(lkv_corpus_from_text("e", " \n\n \t", 5, &c) == LKV_ERR_FORMAT && !c, "empty corpus");
    CHECK(lkv_corpus_load("/nonexistent/x.txt", &c) == LKV_ERR_IO && !c, "missing file");
    size_t huge_len = (1u << 20) + 10;
    char *huge = malloc(huge_len);
    if (huge) {
        memset(huge, 'a', huge_len); /* one "word" over the 1 MiB sentence limit */
        CHECK(lkv_corpus_from_text("h", huge, huge_len, &c) == LKV_ERR_FORMAT && !c,
              "over-long sentence");
        free(huge);
    }
    lkv_corpus_free(NULL);
}

/* The real texts if scripts/get_texts.sh ran, else the built-in paragraphs. */
static lkv_corpus *load_corpus(const char *file) {
    const char *root = getenv("LONGKV_ROOT");
    char path[1024];
    snprintf(path, sizeof path, "%s/data/texts/%s", root ? root : ".", file);
    lkv_corpus *c = NULL;
    if (lkv_corpus_load(path, &c) == LKV_OK) {
        printf("niah haystack: %s (%zu sentences)\n", path, lkv_corpus_n_sentences(c));
        return c;
    }
    printf("niah haystack: %s absent, using the built-in paragraphs "
           "(run scripts/get_texts.sh for the real texts)\n",
           path);
    CHECK_OK(lkv_corpus_builtin(&c));
    return c;
}

/* ================================================================ tasks */

/* Checks the structure every sample shares; `counter` is the one used. */
static void check_sample_shape(const lkv_task_sample *s, lkv_count_tokens_fn counter,
                               const char *what) {
    lkv_sb b = {0};
    lkv_sb_puts(&b, s->context);
    lkv_sb_putc(&b, '\n');
    lkv_sb_puts(&b, s->question);
    lkv_sb_putc(&b, ' ');
    lkv_sb_puts(&b, s->answer_prefix);
    CHECK(b.len == s->prompt_len && strcmp(b.data, s->prompt) == 0,
          "%s: prompt != context \\n question answer_prefix", what);
    lkv_sb_free(&b);
    CHECK(strlen(s->prompt) == s->prompt_len && strlen(s->context) == s->context_len,
          "%s: lengths", what);
    CHECK(s->haystack_offset < s->haystack_end && s->haystack_end == s->context_len,
          "%s: haystack bounds %zu..%zu of %zu", what, s->haystack_offset, s->haystack_end,
          s->context_len);
    int nt = counter(NULL, s->prompt, s->prompt_len);
    CHECK(nt == s->n_tokens && nt <= s->ctx_target, "%s: %d tokens (reported %d), target %d",
          what, nt, s->n_tokens, s->ctx_target);
    CHECK(counter(NULL, s->context, s->context_len) == s->context_tokens, "%s: context tokens",
          what);
    for (int i = 0; i < s->n_needles; i++) {
        const lkv_needle *nd = &s->needles[i];
        CHECK(nd->offset >= s->haystack_offset && nd->offset + nd->len <= s->haystack_end,
              "%s: needle %d outside the haystack", what, i);
        CHECK(counter(NULL, s->prompt, nd->offset) == nd->token_pos, "%s: needle %d token_pos",
              what, i);
        /* at a sentence boundary: after a space, a newline or the haystack start,
         * before a space, a newline or the haystack end */
        char before = nd->offset > s->haystack_offset ? s->prompt[nd->offset - 1] : '\n';
        size_t e = nd->offset + nd->len;
        char after = e < s->haystack_end ? s->prompt[e] : '\n';
        CHECK((before == ' ' || before == '\n') && (after == ' ' || after == '\n'),
              "%s: needle %d not at a boundary ('%c' '%c')", what, i, before, after);
        if (nd->offset > s->haystack_offset + 1 && before == ' ') {
            char p = s->prompt[nd->offset - 2];
            CHECK(p == '.' || p == '!' || p == '?' || p == '"' || p == '\'' || p == ')' ||
                      p == ']' || (p >= 'A' && p <= 'Z') || (p >= '0' && p <= '9'),
                  "%s: needle %d follows '%c', not a sentence end", what, i, p);
        }
    }
}

/* Words of the haystack before needle i, not counting other needles. */
static int haystack_words_before(const lkv_task_sample *s, int i) {
    const lkv_needle *nd = &s->needles[i];
    int w = words(s->prompt + s->haystack_offset, nd->offset - s->haystack_offset);
    for (int j = 0; j < s->n_needles; j++)
        if (j != i && s->needles[j].offset < nd->offset)
            w -= words(s->prompt + s->needles[j].offset, s->needles[j].len);
    return w;
}

/* Largest unit (sentence or filler repetition) of the haystack, in words,
 * including the next one, which did not fit (the bound on the shortfall). */
static int max_unit_words(const lkv_task_sample *s, const lkv_corpus *c) {
    if (!c) /* the passkey filler */
        return words("The grass is green. The sky is blue. The sun is yellow. Here we go. "
                     "There and back again.", 89);
    int mx = 0;
    size_t n = lkv_corpus_n_sentences(c);
    for (int k = 0; k <= s->haystack_sentences; k++) {
        const char *t;
        size_t len;
        lkv_corpus_sentence(c, (s->corpus_start + (size_t)k) % n, &t, &len, NULL);
        int w = words(t, len);
        mx = w > mx ? w : mx;
    }
    return mx;
}

static void check_depth(const lkv_task_sample *s, const lkv_corpus *c, const char *what) {
    int before = haystack_words_before(s, 0);
    double target = s->depth / 100.0 * s->haystack_tokens;
    int unit = max_unit_words(s, c);
    CHECK(fabs(before - target) <= unit,
          "%s: needle after %d haystack words, depth %.0f%% of %d is %.1f (unit %d)", what,
          before, s->depth, s->haystack_tokens, target, unit);
    CHECK(fabs(100.0 * before / s->haystack_tokens - s->depth_actual) < 1e-9,
          "%s: depth_actual %.3f vs measured %.3f", what, s->depth_actual,
          100.0 * before / s->haystack_tokens);
    /* the needle is at the boundary nearest to the target (ties either way) */
    if (c) {
        size_t n = lkv_corpus_n_sentences(c);
        int cum = 0;
        double best = 1e300;
        for (int k = 0; k <= s->haystack_sentences; k++) {
            double dist = fabs(cum - target);
            best = dist < best ? dist : best;
            if (k == s->haystack_sentences)
                break;
            const char *t;
            size_t len;
            lkv_corpus_sentence(c, (s->corpus_start + (size_t)k) % n, &t, &len, NULL);
            cum += words(t, len);
        }
        CHECK(fabs(fabs(before - target) - best) < 1e-9,
              "%s: needle %.1f words from the target, the nearest boundary %.1f", what,
              fabs(before - target), best);
    } else {
        CHECK(fabs(before - target) <= unit / 2.0, "%s: passkey needle %.1f words off", what,
              fabs(before - target));
    }
    /* the haystack's words (without needles) are what was reported */
    int total = words(s->prompt + s->haystack_offset, s->haystack_end - s->haystack_offset);
    for (int j = 0; j < s->n_needles; j++)
        total -= words(s->prompt + s->needles[j].offset, s->needles[j].len);
    CHECK(total == s->haystack_tokens, "%s: haystack words %d, reported %d", what, total,
          s->haystack_tokens);
}

static void test_passkey(uint64_t seed) {
    static const double depths[] = {0, 10, 25, 50, 75, 90, 100};
    static const int ctxs[] = {120, 500, 3000};
    for (size_t ci = 0; ci < 3; ci++) {
        for (size_t di = 0; di < sizeof depths / sizeof *depths; di++) {
            lkv_task_params p = lkv_task_default_params();
            p.ctx_tokens = ctxs[ci];
            p.depth = depths[di];
            p.seed = seed + di;
            lkv_task_sample s = {0};
            char what[64];
            snprintf(what, sizeof what, "passkey ctx %d depth %.0f", p.ctx_tokens, p.depth);
            CHECK_OK(lkv_task_generate(&p, NULL, &s));
            if (!s.prompt)
                continue;
            check_sample_shape(&s, lkv_count_words, what);
            check_depth(&s, NULL, what);
            CHECK(strcmp(s.task, "passkey") == 0 && strcmp(s.corpus, "filler") == 0, "%s: names",
                  what);
            CHECK(s.n_needles == 1 && s.n_expected == 1 && strlen(s.expected[0]) == 5, "%s: key",
                  what);
            char needle[128];
            snprintf(needle, sizeof needle, "The pass key is %s. Remember it. %s is the pass key.",
                     s.expected[0], s.expected[0]);
            CHECK(count_occ(s.context, s.context_len, needle) == 1, "%s: needle count", what);
            CHECK(count_occ(s.context, s.context_len, s.expected[0]) == 2, "%s: key count", what);
            CHECK(s.n_tokens > s.ctx_target - 19, "%s: %d tokens, wanted close to %d", what,
                  s.n_tokens, s.ctx_target);
            CHECK(strstr(s.context, "There is an important info hidden") == s.context,
                  "%s: instruction first", what);
            CHECK(strcmp(s.answer_prefix, "The pass key is") == 0, "%s: answer prefix", what);
            lkv_task_sample_clear(&s);
        }
    }
    /* deterministic for a seed, different across seeds */
    lkv_task_params p = lkv_task_default_params();
    p.seed = seed;
    lkv_task_sample a = {0}, b = {0};
    CHECK_OK(lkv_task_generate(&p, NULL, &a));
    CHECK_OK(lkv_task_generate(&p, NULL, &b));
    CHECK(a.prompt && b.prompt && strcmp(a.prompt, b.prompt) == 0, "same seed, same prompt");
    lkv_task_sample_clear(&b);
    int distinct = 0;
    char keys[8][16];
    for (int i = 0; i < 8; i++) {
        p.seed = seed * 31 + 1000 + (uint64_t)i;
        CHECK_OK(lkv_task_generate(&p, NULL, &b));
        snprintf(keys[i], sizeof keys[i], "%s", b.expected[0]);
        int dup = 0;
        for (int j = 0; j < i; j++)
            dup |= strcmp(keys[i], keys[j]) == 0;
        distinct += !dup;
        lkv_task_sample_clear(&b);
    }
    CHECK(distinct >= 7, "only %d distinct keys over 8 seeds", distinct);
    lkv_task_sample_clear(&a);

    /* errors leave the sample cleared */
    p = lkv_task_default_params();
    p.ctx_tokens = 40; /* the template alone is longer */
    CHECK(lkv_task_generate(&p, NULL, &a) == LKV_ERR_INVALID && !a.prompt, "ctx too small");
    CHECK(strstr(lkv_last_error(), "too small") != NULL, "message: %s", lkv_last_error());
    p = lkv_task_default_params();
    p.depth = 100.5;
    CHECK(lkv_task_generate(&p, NULL, &a) == LKV_ERR_INVALID, "depth > 100");
    p.depth = NAN;
    CHECK(lkv_task_generate(&p, NULL, &a) == LKV_ERR_INVALID, "depth NaN");
    p = lkv_task_default_params();
    int left = 3;
    p.count_tokens = count_failing;
    p.count_ctx = &left;
    CHECK(lkv_task_generate(&p, NULL, &a) == LKV_ERR_IO && !a.prompt, "counter error forwarded");
    lkv_task_sample_clear(&a);
    lkv_task_sample_clear(NULL);
}

static void check_niah_needles(const lkv_task_sample *s, const lkv_task_params *p,
                               const char *what) {
    CHECK(s->n_needles == p->n_keys * p->n_values, "%s: %d needles", what, s->n_needles);
    CHECK(s->n_expected == p->n_queries * p->n_values, "%s: %d expected", what, s->n_expected);
    for (int i = 0; i < s->n_needles; i++) {
        const lkv_needle *nd = &s->needles[i];
        char text[128];
        snprintf(text, sizeof text, "One of the special magic numbers for %s is: %s.", nd->key,
                 nd->value);
        CHECK(nd->len == strlen(text) && memcmp(s->prompt + nd->offset, text, nd->len) == 0,
              "%s: needle %d text", what, i);
        CHECK(count_occ(s->context, s->context_len, text) == 1, "%s: needle %d count", what, i);
        CHECK(count_occ(s->context, s->context_len, nd->value) == 1, "%s: value %d count", what,
              i);
        CHECK(count_occ(s->context, s->context_len, nd->key) == p->n_values,
              "%s: key %s occurs %d times", what, nd->key,
              count_occ(s->context, s->context_len, nd->key));
        CHECK(strlen(nd->value) == 7 && nd->value[0] != '0', "%s: value %s", what, nd->value);
        int asked = strstr(s->question, nd->key) != NULL;
        CHECK(asked == nd->asked, "%s: needle %d asked %d but question \"%s\"", what, i,
              nd->asked, s->question);
    }
    /* the expected answers are the asked values */
    for (int e = 0; e < s->n_expected; e++) {
        int found = 0;
        for (int i = 0; i < s->n_needles; i++)
            found |= s->needles[i].asked && strcmp(s->needles[i].value, s->expected[e]) == 0;
        CHECK(found, "%s: expected %s is not an asked value", what, s->expected[e]);
    }
}

static void test_niah(uint64_t seed, lkv_corpus *corpus, const char *corpus_label) {
    static const char *const tasks[] = {"niah_single", "niah_multikey", "niah_multivalue",
                                        "niah_multiquery"};
    static const double depths[] = {0, 10, 33, 50, 77, 100};
    static const int ctxs[] = {400, 2500};
    int quick = getenv("LONGKV_TEST_QUICK") != NULL;
    for (size_t ti = 0; ti < 4; ti++) {
        for (size_t ci = 0; ci < 2; ci++) {
            for (size_t di = 0; di < sizeof depths / sizeof *depths; di++) {
                if (quick && di % 2)
                    continue;
                lkv_task_params p = lkv_task_default_params();
                CHECK_OK(lkv_task_params_preset(tasks[ti], &p));
                p.ctx_tokens = ctxs[ci];
                p.depth = depths[di];
                p.seed = seed + 17 * di + ci;
                lkv_task_sample s = {0};
                char what[128];
                snprintf(what, sizeof what, "%s/%s ctx %d depth %.0f", corpus_label, tasks[ti],
                         p.ctx_tokens, p.depth);
                CHECK_OK(lkv_task_generate(&p, corpus, &s));
                if (!s.prompt)
                    continue;
                check_sample_shape(&s, lkv_count_words, what);
                check_depth(&s, corpus, what);
                check_niah_needles(&s, &p, what);
                CHECK(strcmp(s.task, tasks[ti]) == 0, "%s: task name %s", what, s.task);
                CHECK(strcmp(s.corpus, lkv_corpus_name(corpus)) == 0, "%s: corpus name", what);
                CHECK(s.n_tokens > s.ctx_target - max_unit_words(&s, corpus),
                      "%s: %d tokens, wanted close to %d", what, s.n_tokens, s.ctx_target);
                /* scoring the sample: the right answer, a partial one, a wrong one */
                lkv_sb ans = {0};
                for (int e = 0; e < s.n_expected; e++)
                    lkv_sb_printf(&ans, "%s%s", e ? ", " : " ", s.expected[e]);
                CHECK(lkv_task_score(&s, ans.data) == 1.0, "%s: full answer scores %g", what,
                      lkv_task_score(&s, ans.data));
                CHECK(lkv_task_score(&s, "no idea") == 0.0, "%s: wrong answer", what);
                if (s.n_expected > 1) {
                    double sc = lkv_task_score(&s, s.expected[0]);
                    CHECK(fabs(sc - 1.0 / s.n_expected) < 1e-12, "%s: partial %g", what, sc);
                }
                lkv_sb_free(&ans);
                lkv_task_sample_clear(&s);
            }
        }
    }

    /* deterministic, and seeds change the haystack, keys and values */
    lkv_task_params p = lkv_task_default_params();
    CHECK_OK(lkv_task_params_preset("niah_multikey", &p));
    p.ctx_tokens = 600;
    p.seed = seed;
    lkv_task_sample a = {0}, b = {0};
    CHECK_OK(lkv_task_generate(&p, corpus, &a));
    CHECK_OK(lkv_task_generate(&p, corpus, &b));
    CHECK(a.prompt && b.prompt && strcmp(a.prompt, b.prompt) == 0, "niah: same seed differs");
    lkv_task_sample_clear(&b);
    p.seed = seed + 1;
    CHECK_OK(lkv_task_generate(&p, corpus, &b));
    CHECK(a.prompt && b.prompt && strcmp(a.prompt, b.prompt) != 0, "niah: seeds give same prompt");
    CHECK(strcmp(a.needles[0].value, b.needles[0].value) != 0 ||
              strcmp(a.needles[0].key, b.needles[0].key) != 0,
          "niah: seeds give the same needle");
    lkv_task_sample_clear(&a);
    lkv_task_sample_clear(&b);

    /* a depth x length grid varies only depth and length: for one seed the
     * haystack start, keys and values stay the same */
    p = lkv_task_default_params();
    CHECK_OK(lkv_task_params_preset("niah_multivalue", &p));
    p.seed = seed;
    p.depth = 0;
    p.ctx_tokens = 500;
    CHECK_OK(lkv_task_generate(&p, corpus, &a));
    p.depth = 100;
    p.ctx_tokens = 900;
    CHECK_OK(lkv_task_generate(&p, corpus, &b));
    CHECK(a.corpus_start == b.corpus_start, "haystack start moved with depth/ctx");
    for (int i = 0; i < a.n_needles && i < b.n_needles; i++)
        CHECK(strcmp(a.needles[i].key, b.needles[i].key) == 0 &&
                  strcmp(a.needles[i].value, b.needles[i].value) == 0,
              "needle %d changed with depth/ctx", i);
    CHECK(a.needles[0].offset < b.needles[0].offset, "depth 0 before depth 100");
    lkv_task_sample_clear(&a);
    lkv_task_sample_clear(&b);

    /* tokenizers that are not additive over joins still fit */
    lkv_count_tokens_fn counters[] = {count_quarter_bytes, count_floor_bytes};
    for (int k = 0; k < 2; k++) {
        p = lkv_task_default_params();
        CHECK_OK(lkv_task_params_preset("niah_multivalue", &p));
        p.count_tokens = counters[k];
        for (int ctx = 300; ctx <= 3300; ctx += 1500) {
            p.ctx_tokens = ctx;
            p.depth = 40;
            p.seed = seed + (uint64_t)ctx;
            CHECK_OK(lkv_task_generate(&p, corpus, &a));
            if (a.prompt) {
                check_sample_shape(&a, counters[k], "non-additive counter");
                CHECK(a.n_tokens > ctx - 200, "counter %d: %d tokens for %d", k, a.n_tokens, ctx);
            }
            lkv_task_sample_clear(&a);
        }
    }

    /* bad parameters */
    p = lkv_task_default_params();
    CHECK_OK(lkv_task_params_preset("niah_single", &p));
    CHECK(lkv_task_generate(&p, NULL, &a) == LKV_ERR_INVALID, "niah without corpus");
    p.n_queries = 2;
    CHECK(lkv_task_generate(&p, corpus, &a) == LKV_ERR_INVALID, "n_queries > n_keys");
    p.n_keys = 8;
    p.n_values = 5;
    CHECK(lkv_task_generate(&p, corpus, &a) == LKV_ERR_INVALID, "too many needles");
    CHECK(lkv_task_params_preset("niah_bogus", &p) == LKV_ERR_NOT_FOUND, "unknown preset");
}

/* The built-in corpus is small: long contexts wrap around it. */
static void test_niah_wrap(uint64_t seed) {
    lkv_corpus *c = NULL;
    CHECK_OK(lkv_corpus_builtin(&c));
    CHECK(lkv_corpus_n_sentences(c) >= 30, "builtin has %zu sentences", lkv_corpus_n_sentences(c));
    lkv_task_params p = lkv_task_default_params();
    CHECK_OK(lkv_task_params_preset("niah_multivalue", &p));
    p.ctx_tokens = 2500;
    p.depth = 60;
    p.seed = seed;
    lkv_task_sample s = {0};
    CHECK_OK(lkv_task_generate(&p, c, &s));
    if (s.prompt) {
        CHECK(s.wrapped == 1, "2500 words of a ~700-word corpus must wrap");
        check_sample_shape(&s, lkv_count_words, "builtin wrap");
        check_depth(&s, c, "builtin wrap");
        check_niah_needles(&s, &p, "builtin wrap");
    }
    lkv_task_sample_clear(&s);
    lkv_corpus_free(c);
}

/* With the real tokenizer (SmolLM2's, when scripts/get_model.sh fetched it):
 * lengths fit, needles sit at their depth within one sentence plus the
 * tokenizer's joins. */
static void test_real_tokenizer(uint64_t seed, lkv_corpus *corpus) {
    const char *root = getenv("LONGKV_ROOT");
    char path[1024];
    snprintf(path, sizeof path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", root ? root : ".");
    lkv_model *m = NULL;
    if (lkv_model_load(path, NULL, &m) != LKV_OK) {
        printf("real tokenizer: %s not loadable (%s), skipped\n", path, lkv_last_error());
        return;
    }
    int quick = getenv("LONGKV_TEST_QUICK") != NULL;
    static const char *const tasks[] = {"passkey", "niah_single", "niah_multikey"};
    static const int ctxs[] = {1024, 4096};
    static const double depths[] = {0, 50, 100};
    int checked = 0;
    for (int ti = 0; ti < 3; ti++) {
        for (int ci = 0; ci < (quick ? 1 : 2); ci++) {
            for (int di = 0; di < 3; di++) {
                lkv_task_params p = lkv_task_default_params();
                CHECK_OK(lkv_task_params_preset(tasks[ti], &p));
                p.ctx_tokens = ctxs[ci];
                p.depth = depths[di];
                p.seed = seed + (uint64_t)di;
                p.count_tokens = lkv_count_tokens_model;
                p.count_ctx = m;
                lkv_task_sample s = {0};
                char what[96];
                snprintf(what, sizeof what, "tokenizer %s ctx %d depth %.0f", tasks[ti],
                         p.ctx_tokens, p.depth);
                CHECK_OK(lkv_task_generate(&p, ti ? corpus : NULL, &s));
                if (!s.prompt)
                    continue;
                int n = lkv_count_tokens_model(m, s.prompt, s.prompt_len);
                CHECK(n == s.n_tokens && n <= p.ctx_tokens, "%s: %d tokens (reported %d)", what,
                      n, s.n_tokens);
                /* the shortfall is at most the next unit, which did not fit */
                const char *t = "The grass is green. The sky is blue. The sun is yellow. Here we "
                                "go. There and back again.";
                size_t tl = strlen(t);
                if (ti) {
                    size_t ns = lkv_corpus_n_sentences(corpus);
                    lkv_corpus_sentence(corpus, (s.corpus_start + (size_t)s.haystack_sentences) % ns,
                                        &t, &tl, NULL);
                }
                int next = lkv_count_tokens_model(m, t, tl);
                CHECK(n > p.ctx_tokens - next - 8, "%s: %d tokens, next unit %d", what, n, next);
                /* depth measured with the tokenizer over the haystack prefix */
                const lkv_needle *nd = &s.needles[0];
                int before = lkv_count_tokens_model(m, s.prompt + s.haystack_offset,
                                                    nd->offset - s.haystack_offset);
                for (int j = 1; j < s.n_needles; j++)
                    if (s.needles[j].offset < nd->offset)
                        before -= lkv_count_tokens_model(m, s.prompt + s.needles[j].offset,
                                                         s.needles[j].len);
                double measured = 100.0 * before / s.haystack_tokens;
                CHECK(fabs(measured - nd->depth) < 0.5, "%s: reported depth %.2f, measured %.2f",
                      what, nd->depth, measured);
                /* within one sentence (about 1.5 tokens a word) of the request */
                double unit = 150.0 * max_unit_words(&s, ti ? corpus : NULL) / s.haystack_tokens;
                CHECK(fabs(nd->depth - p.depth) <= unit + 0.5,
                      "%s: needle at %.2f%%, asked %.0f%% (one sentence is %.2f%%)", what,
                      nd->depth, p.depth, unit);
                checked++;
                lkv_task_sample_clear(&s);
            }
        }
    }
    printf("real tokenizer: %d samples checked with %s\n", checked, path);
    lkv_model_free(m);
}

/* ================================================================ scores */

static void test_scores(void) {
    char k[6];
    CHECK(lkv_extract_passkey("The pass key is 12345.", k) && strcmp(k, "12345") == 0, "plain");
    CHECK(lkv_extract_passkey("123456 then 54321", k) && strcmp(k, "54321") == 0,
          "6 digits are not a 5-digit number: %s", k);
    CHECK(!lkv_extract_passkey("1234 and 999", k) && k[0] == '\0', "no 5-digit number");
    CHECK(!lkv_extract_passkey("", k), "empty");
    CHECK(!lkv_extract_passkey(NULL, k), "NULL");
    CHECK(lkv_extract_passkey("abc98765xyz 11111", k) && strcmp(k, "98765") == 0, "embedded");
    CHECK(lkv_extract_passkey("key: 00042", k) && strcmp(k, "00042") == 0, "leading zeros");
    CHECK(!lkv_extract_passkey("12 345", k), "split digits");
    CHECK(lkv_extract_passkey("\xef\xbc\x91 13579", k) && strcmp(k, "13579") == 0,
          "fullwidth digits ignored");
    CHECK(lkv_score_passkey(" 12345. Remember", "12345") == 1.0, "score 1");
    CHECK(lkv_score_passkey(" 12346", "12345") == 0.0, "score 0");
    CHECK(lkv_score_passkey("1234567", "12345") == 0.0, "prefix of a longer number");
    CHECK(lkv_score_passkey(NULL, "12345") == 0.0, "NULL output");

    const char *exp[] = {"1234567", "7654321", "AbC"};
    CHECK(lkv_score_string_match("1234567 and 7654321 abc", exp, 3) == 1.0, "all");
    CHECK(fabs(lkv_score_string_match("1234567 and 7654322", exp, 3) - 1.0 / 3) < 1e-12,
          "one of three");
    CHECK(lkv_score_string_match("x", exp, 0) == 0.0, "n = 0");
    CHECK(lkv_score_string_match(NULL, exp, 3) == 0.0, "NULL output");
    CHECK(lkv_score_string_match("ab", exp + 2, 1) == 0.0, "shorter than expected");
    CHECK(isnan(lkv_task_score(NULL, "x")), "NULL sample");
}

/* ================================================================ JSON */

/* A minimal JSON reader for the tests: one object of scalar values. */
typedef struct jval {
    char key[64];
    int type; /* 's' string, 'n' number, 'z' null, 't' true, 'f' false */
    char str[512];
    size_t str_len;
    double num;
} jval;

static void put_utf8(char *out, size_t *o, unsigned cp) {
    if (cp < 0x80) {
        out[(*o)++] = (char)cp;
    } else if (cp < 0x800) {
        out[(*o)++] = (char)(0xc0 | (cp >> 6));
        out[(*o)++] = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        out[(*o)++] = (char)(0xe0 | (cp >> 12));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[(*o)++] = (char)(0x80 | (cp & 0x3f));
    } else {
        out[(*o)++] = (char)(0xf0 | (cp >> 18));
        out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
        out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[(*o)++] = (char)(0x80 | (cp & 0x3f));
    }
}

/* Parses a JSON string at *p; returns 0 on success. Rejects raw control
 * characters and invalid escapes, as a strict parser does. */
static int jparse_string(const char **p, char *out, size_t cap, size_t *len) {
    const char *s = *p;
    size_t o = 0;
    if (*s++ != '"')
        return -1;
    while (*s != '"') {
        if (!*s || (unsigned char)*s < 0x20 || o + 4 >= cap)
            return -1;
        if (*s != '\\') {
            out[o++] = *s++;
            continue;
        }
        s++;
        char e = *s++;
        switch (e) {
        case '"': out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; break;
        case '/': out[o++] = '/'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            unsigned cp = 0;
            for (int i = 0; i < 4; i++) {
                char h = *s++;
                cp <<= 4;
                if (h >= '0' && h <= '9')
                    cp |= (unsigned)(h - '0');
                else if (h >= 'a' && h <= 'f')
                    cp |= (unsigned)(h - 'a' + 10);
                else if (h >= 'A' && h <= 'F')
                    cp |= (unsigned)(h - 'A' + 10);
                else
                    return -1;
            }
            if (cp >= 0xd800 && cp <= 0xdfff)
                return -1; /* the writer never emits surrogates */
            put_utf8(out, &o, cp);
            break;
        }
        default: return -1;
        }
    }
    out[o] = '\0';
    *len = o;
    *p = s + 1;
    return 0;
}

/* Parses one object into v[]; returns the number of members or -1. */
static int jparse_object(const char *s, jval *v, int max) {
    int n = 0;
    if (*s++ != '{')
        return -1;
    if (*s == '}')
        return *(s + 1) == '\0' ? 0 : -1;
    for (;;) {
        if (n == max)
            return -1;
        size_t kl;
        if (jparse_string(&s, v[n].key, sizeof v[n].key, &kl) < 0 || *s++ != ':')
            return -1;
        if (*s == '"') {
            v[n].type = 's';
            if (jparse_string(&s, v[n].str, sizeof v[n].str, &v[n].str_len) < 0)
                return -1;
        } else if (strncmp(s, "null", 4) == 0) {
            v[n].type = 'z', s += 4;
        } else if (strncmp(s, "true", 4) == 0) {
            v[n].type = 't', s += 4;
        } else if (strncmp(s, "false", 5) == 0) {
            v[n].type = 'f', s += 5;
        } else {
            /* JSON number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
            const char *q = s;
            if (*q == '-')
                q++;
            if (*q == '0')
                q++;
            else if (*q >= '1' && *q <= '9')
                while (*q >= '0' && *q <= '9')
                    q++;
            else
                return -1;
            if (*q == '.') {
                q++;
                if (!(*q >= '0' && *q <= '9'))
                    return -1;
                while (*q >= '0' && *q <= '9')
                    q++;
            }
            if (*q == 'e' || *q == 'E') {
                q++;
                if (*q == '+' || *q == '-')
                    q++;
                if (!(*q >= '0' && *q <= '9'))
                    return -1;
                while (*q >= '0' && *q <= '9')
                    q++;
            }
            v[n].type = 'n';
            v[n].num = strtod(s, NULL);
            s = q;
        }
        n++;
        if (*s == ',') {
            s++;
            continue;
        }
        if (*s == '}' && s[1] == '\0')
            return n;
        return -1;
    }
}

static const jval *jget(const jval *v, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (strcmp(v[i].key, key) == 0)
            return &v[i];
    return NULL;
}

static void check_json_escape(const char *in, size_t n, const char *want) {
    lkv_sb b = {0};
    eval_json_string(&b, in, n);
    CHECK(b.data && strcmp(b.data, want) == 0, "json escape: got %s want %s", b.data, want);
    lkv_sb_free(&b);
}

static void test_json(void) {
    check_json_escape("plain", 5, "\"plain\"");
    check_json_escape("say \"hi\"\\", 9, "\"say \\\"hi\\\"\\\\\"");
    check_json_escape("a\nb\rc\td\b\f", 9, "\"a\\nb\\rc\\td\\b\\f\"");
    check_json_escape("\x01\x1f", 2, "\"\\u0001\\u001f\"");
    check_json_escape("nul\0x", 5, "\"nul\\u0000x\"");
    check_json_escape("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x99\x82", 14,
                      "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x99\x82\"");
    check_json_escape("\xff", 1, "\"\\ufffd\"");
    check_json_escape("\xe2\x82", 2, "\"\\ufffd\\ufffd\"");           /* truncated */
    check_json_escape("\xc0\xaf", 2, "\"\\ufffd\\ufffd\"");           /* overlong '/' */
    check_json_escape("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""); /* surrogate */
    check_json_escape("\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* > 10FFFF */
    check_json_escape("\xe2\x80\xa8", 3, "\"\\u2028\"");

    struct {
        double v;
        const char *want;
    } nums[] = {{0.1, "0.1"}, {1.0, "1"}, {-2.5, "-2.5"}, {1e300, "1e+300"}, {NAN, "null"},
                {INFINITY, "null"}, {-INFINITY, "null"}, {123456789.0, "123456789"}};
    for (size_t i = 0; i < sizeof nums / sizeof *nums; i++) {
        lkv_sb b = {0};
        eval_json_number(&b, nums[i].v);
        CHECK(strcmp(b.data, nums[i].want) == 0, "number %g -> %s", nums[i].v, b.data);
        lkv_sb_free(&b);
    }
    double thirds = 1.0 / 3.0;
    lkv_sb b = {0};
    eval_json_number(&b, thirds);
    CHECK(strtod(b.data, NULL) == thirds, "1/3 round trip: %s", b.data);
    lkv_sb_free(&b);
}

/* ================================================================ reports */

static const char *tricky[] = {
    "snapkv:budget=1024,window=32", "say \"hi\", then\nleave", "caf\xc3\xa9 \xe2\x82\xac",
    "pipe | and \\ back", " padded ",
};

static lkv_report *make_report(void) {
    lkv_report *r = NULL;
    CHECK_OK(lkv_report_create(&r));
    if (!r)
        return NULL;
    for (int i = 0; i < 3; i++) {
        lkv_result_row row = lkv_result_row_default();
        row.task = i == 2 ? "ppl" : "niah_single";
        row.model = "SmolLM2-135M";
        row.press = tricky[i];
        row.ratio = 0.25 * i;
        row.ctx = 4096;
        row.score = i == 1 ? NAN : 0.5 + i;
        row.kv_bytes = i == 2 ? -1 : 1000000 + i;
        row.peak_rss = 123456789;
        row.prefill_tps = 1234.5;
        row.decode_tps = 1.0 / 3.0;
        row.seed = UINT64_MAX - (uint64_t)i;
        lkv_report_field ex[3];
        memset(ex, 0, sizeof ex);
        int ne = 0;
        ex[ne].key = "depth", ex[ne].kind = LKV_VALUE_NUM, ex[ne].num = 25.0 * i, ne++;
        if (i != 1)
            ex[ne].key = "note", ex[ne].kind = LKV_VALUE_STR, ex[ne].str = tricky[i + 1], ne++;
        if (i == 2)
            ex[ne].key = "synthetic", ex[ne].kind = LKV_VALUE_BOOL, ex[ne].i = 1, ne++;
        row.extra = ex;
        row.n_extra = ne;
        CHECK_OK(lkv_report_add(r, &row));
    }
    return r;
}

/* RFC 4180 reader: returns the number of records; fields[r][c] copies. */
#define CSV_MAXR 8
#define CSV_MAXC 16
static int csv_parse(const char *s, char fields[CSV_MAXR][CSV_MAXC][128], int ncols[CSV_MAXR]) {
    int r = 0, c = 0;
    size_t o = 0;
    int quoted = 0, at_start = 1;
    while (*s) {
        if (r >= CSV_MAXR || c >= CSV_MAXC || o >= 127)
            return -1;
        char ch = *s;
        if (quoted) {
            if (ch == '"' && s[1] == '"') {
                fields[r][c][o++] = '"';
                s += 2;
            } else if (ch == '"') {
                quoted = 0;
                s++;
                if (*s != ',' && *s != '\r')
                    return -1; /* text after a closing quote */
            } else {
                fields[r][c][o++] = ch;
                s++;
            }
            continue;
        }
        if (ch == '"' && at_start) {
            quoted = 1, at_start = 0, s++;
        } else if (ch == '"') {
            return -1; /* a quote inside an unquoted field */
        } else if (ch == ',') {
            fields[r][c][o] = '\0';
            c++, o = 0, at_start = 1, s++;
        } else if (ch == '\r' && s[1] == '\n') {
            fields[r][c][o] = '\0';
            ncols[r] = c + 1;
            r++, c = 0, o = 0, at_start = 1, s += 2;
        } else if (ch == '\n' || ch == '\r') {
            return -1; /* bare line break outside quotes */
        } else {
            fields[r][c][o++] = ch;
            at_start = 0, s++;
        }
    }
    if (quoted || c != 0 || o != 0)
        return -1; /* must end with CRLF */
    return r;
}

static void test_report(void) {
    lkv_report *r = make_report();
    if (!r)
        return;
    CHECK(lkv_report_n_rows(r) == 3, "3 rows");

    /* JSON lines: each line is a valid object with the row's values */
    size_t len = 0;
    CHECK_OK(lkv_report_render(r, LKV_REPORT_JSONL, NULL, 0, &len));
    char *js = malloc(len + 1);
    size_t len2 = 0;
    CHECK_OK(lkv_report_render(r, LKV_REPORT_JSONL, js, len + 1, &len2));
    CHECK(len2 == len && strlen(js) == len, "render length");
    int line_no = 0;
    char *save = NULL;
    for (char *line = strtok_r(js, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        jval v[24];
        int n = jparse_object(line, v, 24);
        CHECK(n > 0, "line %d is not a JSON object: %s", line_no, line);
        if (n <= 0) {
            line_no++;
            continue;
        }
        static const char *const keys[] = {"task", "model", "press", "ratio", "ctx", "score",
                                           "kv_bytes", "peak_rss", "prefill_tps", "decode_tps",
                                           "seed"};
        for (int k = 0; k < 11; k++)
            CHECK(jget(v, n, keys[k]) != NULL, "line %d lacks %s", line_no, keys[k]);
        CHECK(strcmp(v[0].key, "task") == 0 && strcmp(v[10].key, "seed") == 0, "key order");
        const jval *x = jget(v, n, "press");
        CHECK(x && x->type == 's' && strcmp(x->str, tricky[line_no]) == 0,
              "line %d press round trip: %s", line_no, x ? x->str : "?");
        x = jget(v, n, "note");
        if (line_no != 1)
            CHECK(x && x->type == 's' && strcmp(x->str, tricky[line_no + 1]) == 0,
                  "line %d note round trip", line_no);
        else
            CHECK(x == NULL, "row 1 has no note");
        x = jget(v, n, "score");
        CHECK(x && (line_no == 1 ? x->type == 'z' : x->type == 'n' && x->num == 0.5 + line_no),
              "line %d score", line_no);
        x = jget(v, n, "kv_bytes");
        CHECK(x && (line_no == 2 ? x->type == 'z' : x->num == 1000000 + line_no), "kv_bytes");
        x = jget(v, n, "decode_tps");
        CHECK(x && x->type == 'n' && x->num == 1.0 / 3.0, "1/3 round trip");
        x = jget(v, n, "ratio");
        CHECK(x && x->type == 'n' && x->num == 0.25 * line_no, "ratio");
        x = jget(v, n, "synthetic");
        CHECK(line_no == 2 ? x && x->type == 't' : x == NULL, "bool extra");
        line_no++;
    }
    CHECK(line_no == 3, "%d JSON lines", line_no);
    CHECK(strstr(js ? js : "", "18446744073709551615") == NULL || 1, "seed");
    free(js);
    char small[16];
    CHECK_OK(lkv_report_render(r, LKV_REPORT_JSONL, small, sizeof small, &len));
    CHECK(strlen(small) == 15 && len > 15, "truncated render is NUL-terminated");

    /* the seed is a full uint64 */
    char full[8192];
    CHECK_OK(lkv_report_render(r, LKV_REPORT_JSONL, full, sizeof full, &len));
    CHECK(strstr(full, "\"seed\":18446744073709551615}") != NULL ||
              strstr(full, "\"seed\":18446744073709551615,") != NULL,
          "uint64 seed");

    /* CSV: parse back by RFC 4180 */
    CHECK_OK(lkv_report_render(r, LKV_REPORT_CSV, full, sizeof full, &len));
    static char fields[CSV_MAXR][CSV_MAXC][128];
    int ncols[CSV_MAXR] = {0};
    int nrec = csv_parse(full, fields, ncols);
    CHECK(nrec == 4, "CSV has %d records (want header + 3)", nrec);
    if (nrec == 4) {
        CHECK(ncols[0] == 14, "CSV header has %d columns", ncols[0]);
        for (int i = 1; i < 4; i++)
            CHECK(ncols[i] == ncols[0], "CSV record %d has %d columns", i, ncols[i]);
        CHECK(strcmp(fields[0][11], "depth") == 0 && strcmp(fields[0][12], "note") == 0 &&
                  strcmp(fields[0][13], "synthetic") == 0,
              "extra columns in first-seen order");
        for (int i = 0; i < 3; i++)
            CHECK(strcmp(fields[i + 1][2], tricky[i]) == 0, "CSV press %d: %s", i,
                  fields[i + 1][2]);
        CHECK(strcmp(fields[2][5], "") == 0, "NaN score is an empty cell");
        CHECK(strcmp(fields[3][6], "") == 0, "unknown kv_bytes is an empty cell");
        CHECK(strcmp(fields[2][12], "") == 0, "missing extra is an empty cell");
        CHECK(strcmp(fields[3][13], "true") == 0, "bool cell");
        CHECK(strcmp(fields[1][9], "0.33333333333333331") == 0 ||
                  strtod(fields[1][9], NULL) == 1.0 / 3.0,
              "CSV double round trip: %s", fields[1][9]);
    }

    /* Markdown: header, separator, one line per row, same number of cells */
    CHECK_OK(lkv_report_render(r, LKV_REPORT_MARKDOWN, full, sizeof full, &len));
    int lines = 0;
    save = NULL;
    for (char *line = strtok_r(full, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        size_t L = strlen(line);
        int pipes = 0;
        for (size_t i = 0; i < L; i++)
            pipes += line[i] == '|' && (i == 0 || line[i - 1] != '\\');
        CHECK(line[0] == '|' && line[L - 1] == '|', "md line %d framed", lines);
        CHECK(pipes == 15, "md line %d has %d cell borders, want 15: %s", lines, pipes, line);
        if (lines == 1)
            CHECK(strstr(line, "---:") && strstr(line, " --- "), "md separator: %s", line);
        lines++;
    }
    CHECK(lines == 5, "md has %d lines", lines);

    /* invalid rows change nothing */
    lkv_result_row bad = lkv_result_row_default();
    lkv_report_field ex[2] = {{"score", LKV_VALUE_NUM, 0, 1.0, NULL}, {0}};
    bad.extra = ex;
    bad.n_extra = 1;
    CHECK(lkv_report_add(r, &bad) == LKV_ERR_INVALID, "extra shadows a standard key");
    ex[0].key = "x";
    ex[1].key = "x";
    bad.n_extra = 2;
    CHECK(lkv_report_add(r, &bad) == LKV_ERR_INVALID, "repeated extra key");
    ex[1].key = "";
    CHECK(lkv_report_add(r, &bad) == LKV_ERR_INVALID, "empty extra key");
    CHECK(lkv_report_add(r, NULL) == LKV_ERR_INVALID, "NULL row");
    CHECK(lkv_report_n_rows(r) == 3, "rows after bad adds");
    CHECK(lkv_report_render(r, (lkv_report_format)9, full, sizeof full, &len) == LKV_ERR_INVALID,
          "bad format");

    /* files: atomic write and the JSONL stream equal the rendering */
    char dir[] = "/tmp/lkv_eval_XXXXXX";
    if (mkdtemp(dir)) {
        char path[128], path2[128];
        snprintf(path, sizeof path, "%s/r.csv", dir);
        CHECK_OK(lkv_report_write(r, LKV_REPORT_CSV, path));
        size_t flen = 0;
        char *f = read_file(path, &flen);
        CHECK_OK(lkv_report_render(r, LKV_REPORT_CSV, full, sizeof full, &len));
        CHECK(f && flen == len && memcmp(f, full, len) == 0, "written CSV equals the rendering");
        lkv_free(f);
        remove(path);

        snprintf(path2, sizeof path2, "%s/stream.jsonl", dir);
        lkv_report *s = NULL;
        CHECK_OK(lkv_report_create(&s));
        CHECK_OK(lkv_report_stream_jsonl(s, path2));
        lkv_result_row row = lkv_result_row_default();
        row.task = "passkey";
        row.press = "full";
        row.score = 1.0;
        CHECK_OK(lkv_report_add(s, &row));
        f = read_file(path2, &flen); /* flushed after each row */
        CHECK(f && flen > 0 && f[flen - 1] == '\n', "streamed row flushed");
        lkv_free(f);
        CHECK_OK(lkv_report_add(s, &row));
        f = read_file(path2, &flen);
        CHECK_OK(lkv_report_render(s, LKV_REPORT_JSONL, full, sizeof full, &len));
        CHECK(f && flen == len && memcmp(f, full, len) == 0, "stream equals the rendering");
        lkv_free(f);
        lkv_report_free(s);
        remove(path2);
        snprintf(path, sizeof path, "%s/no/such/dir/r.md", dir);
        CHECK(lkv_report_write(r, LKV_REPORT_MARKDOWN, path) == LKV_ERR_IO, "unwritable path");
        rmdir(dir);
    }
    lkv_report_free(r);
    lkv_report_free(NULL);
}

/* ================================================================ progress */

static void test_progress(void) {
    char buf[256];
    eval_progress_format(buf, sizeof buf, "eval", 25, 100, 10.0, "snapkv r=0.5");
    CHECK(strcmp(buf, "eval  25/100  25.0%  2.50/s  ETA 30s  snapkv r=0.5") == 0, "got '%s'",
          buf);
    eval_progress_format(buf, sizeof buf, "eval", 3, 0, 60.0, NULL);
    CHECK(strcmp(buf, "eval  3  20.0s/item") == 0, "unknown total: '%s'", buf);
    eval_progress_format(buf, sizeof buf, "x", 0, 10, 0.0, "");
    CHECK(strcmp(buf, "x  0/10  0.0%") == 0, "nothing done: '%s'", buf);
    struct {
        double s;
        const char *want;
    } d[] = {{0.25, "250ms"}, {59.4, "59s"}, {125, "2m05s"}, {7620, "2h07m"}, {-1, "0ms"}};
    for (size_t i = 0; i < sizeof d / sizeof *d; i++) {
        eval_format_duration(buf, sizeof buf, d[i].s);
        CHECK(strcmp(buf, d[i].want) == 0, "duration %g: %s", d[i].s, buf);
    }

    char path[] = "/tmp/lkv_progress_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0)
        return;
    lkv_progress_params pp = lkv_progress_default_params();
    pp.label = "test";
    pp.total = 4;
    pp.fd = fd;
    pp.mode = LKV_PROGRESS_TTY;
    pp.tty_interval = 0; /* draw every update */
    lkv_progress *pg = NULL;
    CHECK_OK(lkv_progress_create(&pp, &pg));
    for (int i = 1; i <= 4; i++)
        lkv_progress_update(pg, i, "item");
    lkv_progress_finish(pg);
    lkv_progress_free(pg);
    /* plain lines, interval not reached: only the final line */
    pp.mode = LKV_PROGRESS_LINES;
    pp.line_interval = 3600;
    pp.label = "lines";
    CHECK_OK(lkv_progress_create(&pp, &pg));
    lkv_progress_update(pg, 1, NULL);
    lkv_progress_update(pg, 2, NULL);
    lkv_progress_finish(pg);
    lkv_progress_free(pg);
    pp.mode = LKV_PROGRESS_OFF;
    CHECK_OK(lkv_progress_create(&pp, &pg));
    lkv_progress_update(pg, 1, "hidden");
    lkv_progress_finish(pg);
    lkv_progress_free(pg);
    lkv_progress_free(NULL);
    close(fd);
    size_t len = 0;
    char *out = read_file(path, &len);
    remove(path);
    CHECK(out != NULL, "read progress output");
    if (!out)
        return;
    CHECK(count_occ(out, len, "\r") == 5, "TTY redraws: %d", count_occ(out, len, "\r"));
    CHECK(count_occ(out, len, "test  4/4  100.0%") == 2, "TTY final state");
    CHECK(count_occ(out, len, "done in") == 2, "finish lines");
    CHECK(count_occ(out, len, "\nlines  2/4  50.0%") == 1 && count_occ(out, len, "lines  1/4") == 0,
          "plain mode prints only after the interval: %s", out);
    CHECK(count_occ(out, len, "hidden") == 0, "off mode prints nothing");
    CHECK(out[len - 1] == '\n', "ends with a newline");
    lkv_free(out);
}

/* ================================================================ memory */

static void test_rss(void) {
    int64_t cur = lkv_rss_bytes();
    int64_t peak = lkv_peak_rss_bytes();
    CHECK(peak > 0 && cur > 0 && peak >= cur, "peak %lld, current %lld", (long long)peak,
          (long long)cur);
    size_t big = 32u << 20;
    /* mmap, not malloc: the block must go back to the OS on release (a
     * sanitizer's allocator would keep a freed malloc block resident) */
    char *p = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
        memset(p, 1, big);
        int64_t after = lkv_peak_rss_bytes();
        CHECK(after >= cur + (int64_t)big - (4 << 20), "peak %lld after touching 32 MiB (was %lld)",
              (long long)after, (long long)cur);
        munmap(p, big);
        int rc = lkv_peak_rss_reset();
        CHECK(rc == LKV_OK || rc == LKV_ERR_UNSUPPORTED, "reset rc %d", rc);
        if (rc == LKV_OK)
            CHECK(lkv_peak_rss_bytes() < after, "peak after reset %lld, before %lld",
                  (long long)lkv_peak_rss_bytes(), (long long)after);
    }
}

/* ================================================================ out of memory */

/* Fails the N-th allocation for every N until the call succeeds, and checks
 * that each failure is a clean LKV_ERR_NOMEM that leaks nothing. */
static void test_oom(lkv_corpus *corpus) {
    size_t live0 = lkv_alloc_count_live();
    int done = 0, n;
    for (n = 0; n < 400 && !done; n++) {
        lkv_task_params p = lkv_task_default_params();
        lkv_task_params_preset("niah_multikey", &p);
        p.ctx_tokens = 300;
        lkv_task_sample s = {0};
        lkv_alloc_fail_after(n);
        int rc = lkv_task_generate(&p, corpus, &s);
        lkv_alloc_fail_after(-1);
        if (rc == LKV_OK)
            done = 1;
        else
            CHECK(rc == LKV_ERR_NOMEM && !s.prompt, "generate with failure at %d: %d", n, rc);
        lkv_task_sample_clear(&s);
        CHECK(lkv_alloc_count_live() == live0, "generate leaks after failure at %d", n);
    }
    CHECK(done, "generate never succeeded");

    done = 0;
    for (n = 0; n < 400 && !done; n++) {
        lkv_alloc_fail_after(n);
        lkv_report *r = NULL;
        int rc = lkv_report_create(&r);
        char buf[4096];
        size_t len;
        if (rc == LKV_OK) {
            lkv_result_row row = lkv_result_row_default();
            row.task = "passkey";
            row.press = tricky[1];
            lkv_report_field ex = {"depth", LKV_VALUE_NUM, 0, 50.0, NULL};
            row.extra = &ex;
            row.n_extra = 1;
            rc = lkv_report_add(r, &row);
            if (rc == LKV_OK)
                rc = lkv_report_render(r, LKV_REPORT_CSV, buf, sizeof buf, &len);
            if (rc == LKV_OK)
                rc = lkv_report_render(r, LKV_REPORT_MARKDOWN, buf, sizeof buf, &len);
        }
        lkv_alloc_fail_after(-1);
        if (rc == LKV_OK)
            done = 1;
        else
            CHECK(rc == LKV_ERR_NOMEM, "report with failure at %d: %d", n, rc);
        lkv_report_free(r);
        CHECK(lkv_alloc_count_live() == live0, "report leaks after failure at %d", n);
    }
    CHECK(done, "report never succeeded");
}

int main(void) {
    uint64_t seed = lkv_test_seed();
    test_sentences();
    test_scores();
    test_json();
    test_report();
    test_progress();
    test_rss();
    test_passkey(seed);
    lkv_corpus *austen = load_corpus("austen.txt");
    if (austen)
        test_niah(seed, austen, lkv_corpus_name(austen));
    lkv_corpus *kjv = load_corpus("kjv.txt");
    if (kjv && strcmp(lkv_corpus_name(kjv), "builtin") != 0)
        test_niah(seed + 99, kjv, "kjv");
    test_niah_wrap(seed);
    test_real_tokenizer(seed, austen);
    lkv_corpus *builtin = NULL;
    CHECK_OK(lkv_corpus_builtin(&builtin));
    if (builtin)
        test_oom(builtin);
    lkv_corpus_free(builtin);
    lkv_corpus_free(austen);
    lkv_corpus_free(kjv);
    return lkv_test_finish("test_eval");
}
