/* test_tokenizer.c -- tokenizers (src/model/tokenizer.c) and their Unicode tables.
 *
 * 1. Unicode flags and UTF-8 decoding.
 * 2. A small synthetic byte-level BPE vocabulary: merges by rank, pre-tokenizer
 *    splits, special tokens, byte round trips of arbitrary (also invalid) UTF-8.
 * 3. A small synthetic SentencePiece vocabulary: score merges, byte fallback.
 * 4. With models/SmolLM2-135M-Instruct.Q4_1.gguf (under $LONGKV_ROOT): every
 *    case of tests/data/tokenizer_smollm2.txt (ids from llama.cpp, written by
 *    scripts/gen_tokenizer_vectors.py) must give the same ids; round trips;
 *    the chat template; a long text (speed is printed). Skipped without the model.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "model/gguf.h"
#include "model/tokenizer.h"
#include "model/unicode.h"
#include "testutil.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------ unicode */

static void test_unicode(void) {
    CHECK(lkv_unicode_flags('a') == LKV_UCAT_L, "a");
    CHECK(lkv_unicode_flags('7') == LKV_UCAT_N, "7");
    CHECK(lkv_unicode_flags(' ') == (LKV_UCAT_Z | LKV_UCAT_WS), "space");
    CHECK(lkv_unicode_flags('\n') == (LKV_UCAT_C | LKV_UCAT_WS), "newline");
    CHECK(lkv_unicode_flags('.') == LKV_UCAT_P, ".");
    CHECK(lkv_unicode_flags('$') == LKV_UCAT_S, "$");
    CHECK(lkv_unicode_flags(0x00E9) == LKV_UCAT_L, "e acute");
    CHECK(lkv_unicode_flags(0x0301) == LKV_UCAT_M, "combining acute");
    CHECK(lkv_unicode_flags(0x4E2D) == LKV_UCAT_L, "CJK");
    CHECK(lkv_unicode_flags(0x0663) == LKV_UCAT_N, "arabic-indic 3");
    CHECK(lkv_unicode_flags(0x2167) == LKV_UCAT_N, "roman numeral (Nl)");
    CHECK(lkv_unicode_flags(0x00BD) == LKV_UCAT_N, "one half (No)");
    CHECK(lkv_unicode_flags(0x3000) == (LKV_UCAT_Z | LKV_UCAT_WS), "ideographic space");
    CHECK(lkv_unicode_flags(0x0085) == (LKV_UCAT_C | LKV_UCAT_WS), "NEL");
    CHECK(lkv_unicode_flags(0x200B) == LKV_UCAT_C, "ZWSP is Cf, not space");
    CHECK(lkv_unicode_flags(0x1F600) == LKV_UCAT_S, "emoji");
    CHECK(lkv_unicode_flags(0x10FFFF) == LKV_UCAT_C, "last code point");
    CHECK(lkv_unicode_flags(0x110000) == 0, "beyond Unicode");

    uint32_t cp;
    CHECK(lkv_utf8_next((const uint8_t *)"\xc3\xa9", 2, &cp) == 2 && cp == 0xE9, "2-byte");
    CHECK(lkv_utf8_next((const uint8_t *)"\xf0\x9f\x98\x80", 4, &cp) == 4 && cp == 0x1F600, "4b");
    CHECK(lkv_utf8_next((const uint8_t *)"\xc0\x80", 2, &cp) == 1 && cp == LKV_UTF8_INVALID,
          "overlong");
    CHECK(lkv_utf8_next((const uint8_t *)"\xed\xa0\x80", 3, &cp) == 1 && cp == LKV_UTF8_INVALID,
          "surrogate");
    CHECK(lkv_utf8_next((const uint8_t *)"\xe2\x82", 2, &cp) == 1 && cp == LKV_UTF8_INVALID,
          "truncated");
    CHECK(lkv_utf8_next((const uint8_t *)"\x80", 1, &cp) == 1 && cp == LKV_UTF8_INVALID, "cont");
    char buf[4];
    CHECK(lkv_utf8_encode(0x20AC, buf) == 3 && !memcmp(buf, "\xe2\x82\xac", 3), "encode euro");
    for (uint32_t c = 0; c < 0x110000; c += 97) {
        if (c >= 0xD800 && c <= 0xDFFF)
            continue;
        uint32_t d;
        int n = lkv_utf8_encode(c, buf);
        if (lkv_utf8_next((const uint8_t *)buf, (size_t)n, &d) != (size_t)n || d != c) {
            CHECK(0, "utf8 round trip of U+%04X", (unsigned)c);
            break;
        }
    }
}

/* ------------------------------------------------------------ helpers */

static int encode(const lkv_tokenizer *t, const char *s, size_t n, int bos, int special,
                  int32_t *ids, int cap) {
    int32_t *out = NULL;
    int k = 0;
    int rc = lkv_tokenizer_encode(t, s, n, bos, special, &out, &k);
    if (rc < 0)
        return rc;
    for (int i = 0; i < k && i < cap; i++)
        ids[i] = out[i];
    lkv_free(out);
    return k;
}

static int same_ids(const int32_t *a, int na, const int32_t *b, int nb) {
    return na == nb && (na == 0 || !memcmp(a, b, (size_t)na * sizeof *a));
}

static void print_ids(const char *label, const int32_t *a, int n) {
    fprintf(stderr, "  %s (%d):", label, n);
    for (int i = 0; i < n && i < 64; i++)
        fprintf(stderr, " %d", (int)a[i]);
    fprintf(stderr, n > 64 ? " ...\n" : "\n");
}

/* decode(encode(s)) == s */
static int round_trips(const lkv_tokenizer *t, const char *s, size_t n, int special) {
    int32_t *ids = NULL;
    int k = 0;
    if (lkv_tokenizer_encode(t, s, n, 0, special, &ids, &k) < 0)
        return 0;
    char *text = NULL;
    size_t len = 0;
    int ok = lkv_tokenizer_decode(t, ids, k, special, &text, &len) == 0 && len == n &&
             (n == 0 || !memcmp(text, s, n));
    lkv_free(ids);
    lkv_free(text);
    return ok;
}

/* ------------------------------------------------------------ synthetic BPE */

/* GPT-2's byte -> code point map, as UTF-8 (the vocabulary stores tokens so). */
static int byte_char(int b, char *out) {
    int printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    int cp = b, n = 256;
    if (!printable) {
        for (int c = 0; c < b; c++)
            if (!((c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || c >= 0xae))
                n++;
        cp = n;
    }
    return lkv_utf8_encode((uint32_t)cp, out);
}

enum { SYN_SPECIAL = 256, SYN_USER = 257 };

/* 256 byte tokens, two specials, then the merge results. */
static int make_bpe(const char *pre, lkv_tokenizer **out) {
    static char bytes[256][4];
    static const char *merges_txt[] = {"h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o",
                                       "Ġwo r", "Ġwor l", "Ġworl d", "1 2", "a b"};
    static const char *results[] = {"he", "ll", "hell", "hello", "Ġw", "Ġwo",
                                    "Ġwor", "Ġworl", "Ġworld", "12", "ab"};
    enum { NM = sizeof merges_txt / sizeof *merges_txt };
    lkv_tok_str tokens[256 + 2 + NM], merges[NM];
    int32_t types[256 + 2 + NM];
    for (int b = 0; b < 256; b++) {
        tokens[b].ptr = bytes[b];
        tokens[b].len = (size_t)byte_char(b, bytes[b]);
        types[b] = LKV_TOKEN_NORMAL;
    }
    tokens[SYN_SPECIAL] = (lkv_tok_str){"<|end|>", 7};
    types[SYN_SPECIAL] = LKV_TOKEN_CONTROL;
    tokens[SYN_USER] = (lkv_tok_str){"<user>", 6};
    types[SYN_USER] = LKV_TOKEN_USER_DEFINED;
    for (int i = 0; i < NM; i++) {
        merges[i] = (lkv_tok_str){merges_txt[i], strlen(merges_txt[i])};
        tokens[258 + i] = (lkv_tok_str){results[i], strlen(results[i])};
        types[258 + i] = LKV_TOKEN_NORMAL;
    }
    lkv_tokenizer_spec sp = lkv_tokenizer_default_spec();
    sp.model = "gpt2";
    sp.pre = pre;
    sp.n_vocab = 256 + 2 + NM;
    sp.tokens = tokens;
    sp.types = types;
    sp.n_merges = NM;
    sp.merges = merges;
    sp.eos = SYN_SPECIAL;
    sp.bos = SYN_SPECIAL;
    return lkv_tokenizer_create(&sp, out);
}

static void test_bpe_synthetic(void) {
    lkv_tokenizer *t = NULL;
    CHECK_OK(make_bpe("gpt2", &t));
    if (!t)
        return;
    int32_t ids[64];
    int n = encode(t, "hello world", 11, 0, 0, ids, 64);
    int32_t want[] = {258 + 3, 258 + 8};
    CHECK(same_ids(ids, n, want, 2), "hello world -> hello Ġworld (got %d tokens)", n);

    n = encode(t, "", 0, 1, 1, ids, 64);
    CHECK(n == 0, "empty text with add_bos (gpt2 default: no BOS) gives %d tokens", n);

    /* special: control only with parse_special, user-defined always */
    n = encode(t, "<|end|>", 7, 0, 1, ids, 64);
    CHECK(n == 1 && ids[0] == SYN_SPECIAL, "control token parsed (%d)", n);
    n = encode(t, "<|end|>", 7, 0, 0, ids, 64);
    CHECK(n > 1, "control token not parsed without parse_special (%d)", n);
    n = encode(t, "a<user>b", 8, 0, 0, ids, 64);
    CHECK(n == 3 && ids[1] == SYN_USER, "user-defined token always parsed (%d)", n);
    n = encode(t, "<|end|><|end|>x", 15, 0, 1, ids, 64);
    CHECK(n == 3 && ids[0] == SYN_SPECIAL && ids[1] == SYN_SPECIAL && ids[2] == 'x',
          "adjacent specials (%d)", n);

    /* "12" merges under gpt2 (digits run), stays split under smollm (digits alone) */
    n = encode(t, "123", 3, 0, 0, ids, 64);
    CHECK(n == 2 && ids[0] == 258 + 9, "gpt2: 123 -> 12 3 (%d)", n);
    lkv_tokenizer *ts = NULL;
    CHECK_OK(make_bpe("smollm", &ts));
    if (ts) {
        n = encode(ts, "123", 3, 0, 0, ids, 64);
        CHECK(n == 3 && ids[0] == '1' && ids[1] == '2' && ids[2] == '3', "smollm: 1 2 3 (%d)",
              n);
        n = encode(ts, "ab", 2, 0, 0, ids, 64);
        CHECK(n == 1 && ids[0] == 258 + 10, "smollm ab (%d)", n);
    }
    lkv_tokenizer *td = NULL;
    CHECK_OK(make_bpe("default", &td));
    if (td) {
        n = encode(td, "12345", 5, 0, 0, ids, 64);
        /* default: digits in threes: "123" "45" -> 12 3 4 5 */
        CHECK(n == 4 && ids[0] == 258 + 9 && ids[1] == '3', "default 12345 (%d)", n);
    }

    /* whitespace: "a  b" -> a, " ", " b" (\s+(?!\S) keeps the last space) */
    n = encode(t, "a  b", 4, 0, 0, ids, 64);
    CHECK(n == 4, "a  b -> 4 byte tokens (%d)", n);

    /* round trips over arbitrary bytes, including invalid UTF-8 */
#define SAMPLE(x) {x, sizeof x - 1}
    static const struct {
        const char *s;
        size_t n;
    } samples[] = {
        SAMPLE("hello world"), SAMPLE("  x  "), SAMPLE("\xff\xfe\x80 bad \xc3"),
        SAMPLE("caf\xc3\xa9"), SAMPLE("\xe2\x82"), SAMPLE("a\0b"),
        SAMPLE("<|end|> hello<user>"), SAMPLE("\xf0\x9f\x98\x80\xf0\x9f"),
        SAMPLE("\xed\xa0\x80 surrogate"),
    };
#undef SAMPLE
    for (int i = 0; i < (int)(sizeof samples / sizeof *samples); i++)
        for (int sp = 0; sp < 2; sp++)
            CHECK(round_trips(t, samples[i].s, samples[i].n, sp),
                  "round trip sample %d special %d", i, sp);
    lkv_rng r;
    lkv_rng_seed(&r, lkv_test_seed());
    char buf[300];
    int bad = 0;
    for (int it = 0; it < 300; it++) {
        size_t len = (size_t)lkv_rng_below(&r, sizeof buf);
        for (size_t k = 0; k < len; k++) /* bias towards interesting bytes */
            buf[k] = lkv_rng_below(&r, 4) ? "hel o12 <|end>\n\t"[lkv_rng_below(&r, 16)]
                                          : (char)lkv_rng_below(&r, 256);
        bad += !round_trips(t, buf, len, (int)(it & 1)) + !round_trips(td, buf, len, 0);
    }
    CHECK(bad == 0, "%d random byte strings do not round trip", bad);

    /* decode: control tokens only when render_special; out-of-range ids */
    char *text = NULL;
    size_t len = 0;
    int32_t dec[] = {258 + 3, SYN_SPECIAL, SYN_USER};
    CHECK_OK(lkv_tokenizer_decode(t, dec, 3, 0, &text, &len));
    CHECK(text && len == 11 && !strcmp(text, "hello<user>"), "decode skip special: %s", text);
    lkv_free(text);
    CHECK_OK(lkv_tokenizer_decode(t, dec, 3, 1, &text, &len));
    CHECK(text && !strcmp(text, "hello<|end|><user>"), "decode render special: %s", text);
    lkv_free(text);
    int32_t badid[] = {1, 100000};
    CHECK(lkv_tokenizer_decode(t, badid, 2, 0, &text, &len) == LKV_ERR_RANGE, "bad id");
    size_t pl = 0;
    const char *piece = lkv_tokenizer_piece(t, 258 + 8, &pl);
    CHECK(piece && pl == 6 && !memcmp(piece, " world", 6), "piece of Ġworld");
    CHECK(lkv_tokenizer_piece(t, -1, &pl) == NULL, "piece of -1");
    CHECK(lkv_tokenizer_is_eog(t, SYN_SPECIAL) == 1 && lkv_tokenizer_is_eog(t, 5) == 0, "eog");

    /* an unknown pre-tokenizer or model is an error, never a fallback */
    lkv_tokenizer *tu = NULL;
    CHECK(make_bpe("qwen2-unknown", &tu) == LKV_ERR_UNSUPPORTED && tu == NULL, "unknown pre");
    lkv_tokenizer_spec sp = lkv_tokenizer_default_spec();
    lkv_tok_str one = {"a", 1};
    sp.model = "bert";
    sp.n_vocab = 1;
    sp.tokens = &one;
    CHECK(lkv_tokenizer_create(&sp, &tu) == LKV_ERR_UNSUPPORTED, "unknown model");
    lkv_tok_str badmerge = {"ab", 2};
    sp.model = "gpt2";
    sp.n_merges = 1;
    sp.merges = &badmerge;
    CHECK(lkv_tokenizer_create(&sp, &tu) == LKV_ERR_FORMAT, "merge without a space");

    /* no chat template and no ChatML tokens: unsupported */
    lkv_chat_msg msg = {"user", "hi"};
    char *chat = NULL;
    CHECK(lkv_tokenizer_chat_format(t, &msg, 1, 1, &chat, &len) == LKV_ERR_UNSUPPORTED,
          "chat without template");

    /* allocation failures: every N fails cleanly, nothing leaks */
    size_t live = lkv_alloc_count_live();
    int failures = 0;
    for (long k = 0; k < 400; k++) {
        lkv_tokenizer *tf = NULL;
        lkv_alloc_fail_after(k);
        int rc = make_bpe("smollm", &tf);
        int32_t *ids2 = NULL;
        int n2 = 0;
        if (rc == 0)
            rc = lkv_tokenizer_encode(tf, "hello  world 123 <user>", 23, 0, 1, &ids2, &n2);
        lkv_alloc_fail_after(-1);
        if (rc != 0 && rc != LKV_ERR_NOMEM)
            failures++;
        lkv_free(ids2);
        lkv_tokenizer_free(tf);
        if (rc == 0)
            break;
    }
    CHECK(failures == 0, "%d allocation-failure runs returned another error", failures);
    CHECK(lkv_alloc_count_live() == live, "leak under allocation failures: %zu blocks",
          lkv_alloc_count_live() - live);

    lkv_tokenizer_free(t);
    lkv_tokenizer_free(ts);
    lkv_tokenizer_free(td);
}

/* ------------------------------------------------------------ synthetic SPM */

static void test_spm_synthetic(void) {
    /* <unk> <s> </s>, byte tokens for 'x' and 0xC3 0xA9, pieces with scores */
    lkv_tok_str tokens[] = {{"<unk>", 5}, {"<s>", 3}, {"</s>", 4}, {"<0x78>", 6},
                            {"<0xC3>", 6}, {"<0xA9>", 6}, {"\xe2\x96\x81", 3}, {"a", 1},
                            {"b", 1}, {"ab", 2}, {"\xe2\x96\x81" "ab", 5}, {"c", 1},
                            {"bc", 2}};
    int32_t types[] = {2, 3, 3, 6, 6, 6, 1, 1, 1, 1, 1, 1, 1};
    float scores[] = {0, 0, 0, 0, 0, 0, -1, -2, -2, -1.5f, -1, -3, -0.5f};
    lkv_tokenizer_spec sp = lkv_tokenizer_default_spec();
    sp.model = "llama";
    sp.n_vocab = 13;
    sp.tokens = tokens;
    sp.types = types;
    sp.scores = scores;
    sp.bos = 1;
    sp.eos = 2;
    sp.unk = 0;
    static const char tmpl[] = "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}..."
                               "{{ '<start_of_turn>' + role + '\\n' }}...";
    sp.chat_template = tmpl;
    sp.chat_template_len = sizeof tmpl - 1;
    lkv_tokenizer *t = NULL;
    CHECK_OK(lkv_tokenizer_create(&sp, &t));
    if (!t)
        return;
    int32_t ids[32];
    /* "ab abc": BOS, ▁ab (prefix space), ▁ab? no: " abc" -> ▁ a bc (bc scores best) */
    int n = encode(t, "ab abc", 6, 1, 0, ids, 32);
    int32_t want[] = {1, 10, 6, 7, 12};
    if (!same_ids(ids, n, want, 5))
        print_ids("got", ids, n);
    CHECK(same_ids(ids, n, want, 5), "spm ab abc");
    /* unknown characters fall back to byte tokens, or <unk> without one */
    n = encode(t, "x\xc3\xa9z", 4, 0, 0, ids, 32);
    int32_t want2[] = {6, 3, 4, 5, 0};
    if (!same_ids(ids, n, want2, 5))
        print_ids("got", ids, n);
    CHECK(same_ids(ids, n, want2, 5), "spm byte fallback");
    char *text = NULL;
    size_t len = 0;
    int32_t dec[] = {1, 10, 6, 7, 12, 3, 4, 5};
    CHECK_OK(lkv_tokenizer_decode(t, dec, 8, 0, &text, &len));
    CHECK(text && !strcmp(text, "ab abcx\xc3\xa9"), "spm decode: '%s'", text);
    lkv_free(text);

    /* Gemma chat: system folded into the first user turn, assistant -> model */
    lkv_chat_msg msgs[] = {{"system", "Be brief."}, {"user", "  Hi\n"}, {"assistant", "Hello"},
                           {"user", "Why?"}};
    char *chat = NULL;
    CHECK_OK(lkv_tokenizer_chat_format(t, msgs, 4, 1, &chat, &len));
    CHECK(chat && !strcmp(chat, "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
                                "<start_of_turn>model\nHello<end_of_turn>\n"
                                "<start_of_turn>user\nWhy?<end_of_turn>\n<start_of_turn>model\n"),
          "gemma chat:\n%s", chat ? chat : "");
    lkv_free(chat);
    CHECK(lkv_tokenizer_chat_format(t, msgs + 2, 2, 1, &chat, &len) == LKV_ERR_INVALID,
          "gemma chat must start with a user turn");
    lkv_tokenizer_free(t);

    /* ChatML whose system message comes from the messages: no default */
    static const char chatml[] = "{% for m in messages %}{{'<|im_start|>system\\n' + "
                                 "m['content'] + '<|im_end|>'}}{% endfor %}";
    sp.chat_template = chatml;
    sp.chat_template_len = sizeof chatml - 1;
    CHECK_OK(lkv_tokenizer_create(&sp, &t));
    if (!t)
        return;
    lkv_chat_msg one = {"user", "Hi"};
    CHECK_OK(lkv_tokenizer_chat_format(t, &one, 1, 1, &chat, &len));
    CHECK(chat && !strcmp(chat, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
          "chatml without default system:\n%s", chat ? chat : "");
    lkv_free(chat);
    static const char other[] = "{{ messages }}";
    lkv_tokenizer_free(t);
    sp.chat_template = other;
    sp.chat_template_len = sizeof other - 1;
    CHECK_OK(lkv_tokenizer_create(&sp, &t));
    CHECK(t && lkv_tokenizer_chat_format(t, &one, 1, 1, &chat, &len) == LKV_ERR_UNSUPPORTED,
          "unknown template");
    lkv_tokenizer_free(t);
}

/* ------------------------------------------------------------ the real model */

static int unhex(const char *h, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = h[2 * i + k];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0)
                return -1;
            v = v * 16 + d;
        }
        out[i] = (char)v;
    }
    return 0;
}

static void test_vectors(const lkv_tokenizer *t, const char *path) {
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f)
        return;
    size_t cap = 1 << 20;
    char *line = malloc(cap), *text = malloc(cap);
    int32_t *want = malloc(cap * sizeof *want);
    int cases = 0, match = 0, rt = 0, rt_owed = 0;
    while (line && text && want && fgets(line, (int)cap, f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        int add_bos = line[0] - '0', special = line[2] - '0';
        char *hex = line + 4, *colon = strstr(hex, " : ");
        if (!colon)
            continue;
        size_t n = hex[0] == '-' ? 0 : (size_t)(colon - hex) / 2;
        if (unhex(hex, n, text) < 0)
            continue;
        int nw = 0;
        for (char *p = colon + 3; *p && *p != '\n';) {
            char *e;
            long v = strtol(p, &e, 10);
            if (e == p)
                break;
            want[nw++] = (int32_t)v;
            p = e;
        }
        cases++;
        int32_t *ids = NULL;
        int k = 0;
        int rc = lkv_tokenizer_encode(t, text, n, add_bos, special, &ids, &k);
        if (rc == 0 && same_ids(ids, k, want, nw)) {
            match++;
        } else {
            fprintf(stderr, "mismatch (bos %d special %d) text %.*s\n", add_bos, special,
                    (int)(n < 120 ? n : 120), text);
            print_ids("llama.cpp", want, nw);
            print_ids("longkv   ", ids, k);
        }
        lkv_free(ids);
        /* a round trip is owed when llama.cpp's own ids decode to the text (not
         * when the text has bytes the vocabulary cannot spell, like 0x04) */
        char *ref = NULL;
        size_t ref_n = 0;
        int owed = lkv_tokenizer_decode(t, want, nw, special, &ref, &ref_n) == 0 && ref_n == n &&
                   (n == 0 || !memcmp(ref, text, n));
        lkv_free(ref);
        rt_owed += owed;
        rt += owed && round_trips(t, text, n, special);
    }
    printf("reference vectors: %d/%d cases match llama.cpp; %d/%d round trip\n", match, cases,
           rt, rt_owed);
    CHECK(cases > 100, "only %d cases read from %s", cases, path);
    CHECK(match == cases, "%d of %d cases differ from llama.cpp", cases - match, cases);
    CHECK(rt == rt_owed && rt_owed > cases - 10, "%d of %d cases do not round trip",
          rt_owed - rt, rt_owed);
    free(line);
    free(text);
    free(want);
    fclose(f);
}

static void test_model(const char *root) {
    char path[4096], vec[4096];
    snprintf(path, sizeof path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", root);
    snprintf(vec, sizeof vec, "%s/tests/data/tokenizer_smollm2.txt", root);
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("model tests skipped: %s not found\n", path);
        return;
    }
    fclose(f);
    lkv_gguf *g = NULL;
    CHECK_OK(lkv_gguf_open(path, &g));
    if (!g)
        return;
    lkv_tokenizer *t = NULL;
    double t0 = now_s();
    CHECK_OK(lkv_tokenizer_from_gguf(g, &t));
    printf("tokenizer loaded in %.1f ms\n", 1e3 * (now_s() - t0));
    if (!t) {
        lkv_gguf_close(g);
        return;
    }
    CHECK(lkv_tokenizer_n_vocab(t) == 49152, "n_vocab %d", lkv_tokenizer_n_vocab(t));
    CHECK(lkv_tokenizer_is_eog(t, 2) && lkv_tokenizer_is_eog(t, 0) && !lkv_tokenizer_is_eog(t, 1),
          "eog ids");
    CHECK(lkv_tokenizer_bos(t) == 1, "bos");
    test_vectors(t, vec);

    /* invalid UTF-8 never fails; bytes the vocabulary has are kept */
    static const char bad[] = "ok \x80\xbf \xc3( \xe2\x82 end\xf0";
    CHECK(round_trips(t, bad, sizeof bad - 1, 0), "invalid UTF-8 round trip");
    /* ... and bytes it has not (0xF5..0xFF) become U+FFFD, as in llama.cpp */
    int32_t a[16], b[16];
    int na = encode(t, "a\xff\xfe b", 6, 0, 0, a, 16);
    int nb = encode(t, "a\xef\xbf\xbd\xef\xbf\xbd b", 10, 0, 0, b, 16);
    CHECK(na > 0 && same_ids(a, na, b, nb), "0xFF 0xFE encode as U+FFFD U+FFFD");

    /* chat template: SmolLM2's default system message is inserted */
    lkv_chat_msg msgs[] = {{"user", "What is the capital of France?"}};
    char *chat = NULL;
    size_t len = 0;
    CHECK_OK(lkv_tokenizer_chat_format(t, msgs, 1, 1, &chat, &len));
    const char *want = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained "
                       "by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of "
                       "France?<|im_end|>\n<|im_start|>assistant\n";
    CHECK(chat && !strcmp(chat, want) && len == strlen(want), "chat:\n%s", chat ? chat : "");
    lkv_free(chat);
    lkv_chat_msg msgs2[] = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}};
    CHECK_OK(lkv_tokenizer_chat_format(t, msgs2, 3, 0, &chat, &len));
    CHECK(chat && !strcmp(chat, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi"
                                "<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"),
          "chat with system:\n%s", chat ? chat : "");
    lkv_free(chat);

    /* a long text: ~150k tokens, linear time */
    const char *para = "It is a truth universally acknowledged, that a single man in possession "
                       "of a good fortune, must be in want of a wife. 1811-1817: Chapter 12,\n"
                       "   \"Oh!\" said she; Mr. Bennet's daughters (five!) \xe2\x80\x94 caf\xc3\xa9 "
                       "na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\n\n";
    size_t pl = strlen(para), reps = 3000;
    char *big = malloc(pl * reps);
    for (size_t i = 0; big && i < reps; i++)
        memcpy(big + i * pl, para, pl);
    int32_t *ids = NULL;
    int n = 0;
    t0 = now_s();
    CHECK_OK(lkv_tokenizer_encode(t, big, pl * reps, 0, 0, &ids, &n));
    double dt = now_s() - t0;
    printf("long text: %zu bytes -> %d tokens in %.1f ms (%.2f Mtok/s)\n", pl * reps, n,
           1e3 * dt, n / dt / 1e6);
    int32_t *one = NULL;
    int n1 = 0, n2 = 0;
    CHECK_OK(lkv_tokenizer_encode(t, big, pl, 0, 0, &one, &n1));
    lkv_free(one);
    CHECK_OK(lkv_tokenizer_encode(t, big, 2 * pl, 0, 0, &one, &n2));
    CHECK(n == n1 + (n2 - n1) * (int)(reps - 1), "long text: %d tokens, %d for 1 paragraph, %d for 2",
          n, n1, n2);
    char *back = NULL;
    CHECK_OK(lkv_tokenizer_decode(t, ids, n, 0, &back, &len));
    CHECK(back && len == pl * reps && !memcmp(back, big, len), "long text round trip");
    lkv_free(back);
    lkv_free(one);
    lkv_free(ids);
    /* one enormous word (no spaces) stays n log n */
    size_t word = 100000;
    memset(big, 'a', word);
    t0 = now_s();
    CHECK_OK(lkv_tokenizer_encode(t, big, word, 0, 0, &ids, &n));
    printf("one %zu-byte word -> %d tokens in %.1f ms\n", word, n, 1e3 * (now_s() - t0));
    lkv_free(ids);
    free(big);

    lkv_tokenizer_free(t);
    lkv_gguf_close(g);
}

/* Gemma 3's SentencePiece vocabulary (262144 pieces, byte fallback, no space
 * prefix, BOS added): the same llama.cpp vectors (scripts/gen_tokenizer_vectors.py
 * models/gemma-3-270m-Q4_K_M.gguf > tests/data/tokenizer_gemma3.txt). */
static void test_gemma3(const char *root) {
    char path[4096], vec[4096];
    snprintf(path, sizeof path, "%s/models/gemma-3-270m-Q4_K_M.gguf", root);
    snprintf(vec, sizeof vec, "%s/tests/data/tokenizer_gemma3.txt", root);
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("gemma3 tokenizer tests skipped: %s not found\n", path);
        return;
    }
    fclose(f);
    lkv_gguf *g = NULL;
    CHECK_OK(lkv_gguf_open(path, &g));
    if (!g)
        return;
    lkv_tokenizer *t = NULL;
    double t0 = now_s();
    CHECK_OK(lkv_tokenizer_from_gguf(g, &t));
    printf("gemma3 tokenizer loaded in %.1f ms\n", 1e3 * (now_s() - t0));
    if (t) {
        CHECK(lkv_tokenizer_n_vocab(t) == 262144, "n_vocab %d", lkv_tokenizer_n_vocab(t));
        CHECK(lkv_tokenizer_bos(t) == 2, "bos %d", lkv_tokenizer_bos(t));
        CHECK(lkv_tokenizer_is_eog(t, 1), "<eos> ends generation");
        int32_t ids[8];
        int n = encode(t, "Hello", 5, 1, 0, ids, 8);
        CHECK(n >= 2 && ids[0] == 2, "BOS is added (file: add_bos_token = true)");
        test_vectors(t, vec);
    }
    lkv_tokenizer_free(t);
    lkv_gguf_close(g);
}

int main(void) {
    test_unicode();
    test_bpe_synthetic();
    test_spm_synthetic();
    const char *root = getenv("LONGKV_ROOT");
    test_model(root ? root : ".");
    test_gemma3(root ? root : ".");
    return lkv_test_finish("test_tokenizer");
}
