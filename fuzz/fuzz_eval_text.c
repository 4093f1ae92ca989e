/* fuzz_eval_text.c -- arbitrary bytes as eval text: the corpus loader and
 * sentence splitter, a NIAH prompt built over the result, and the report
 * writers' escaping (JSON output must be valid UTF-8 without raw control
 * characters; a CSV field must parse back to the input). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "eval/eval.h"
#include "longkv.h"

static void check(int ok) {
    if (!ok)
        abort(); /* a fuzz target reports a broken invariant by crashing */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16)
        return 0;
    const char *text = (const char *)data;

    lkv_corpus *c = NULL;
    if (lkv_corpus_from_text("fuzz", text, size, &c) == LKV_OK) {
        size_t n = lkv_corpus_n_sentences(c);
        check(n > 0);
        for (size_t i = 0; i < n; i++) {
            const char *s;
            size_t len;
            int pe;
            check(lkv_corpus_sentence(c, i, &s, &len, &pe) == LKV_OK);
            check(len > 0 && s[0] != ' ' && s[len - 1] != ' ');
            check(memchr(s, '\n', len) == NULL);
        }
        lkv_task_params p = lkv_task_default_params();
        lkv_task_params_preset("niah_multikey", &p);
        p.ctx_tokens = 300;
        p.depth = (double)(size % 101);
        p.seed = size;
        lkv_task_sample smp = {0};
        if (lkv_task_generate(&p, c, &smp) == LKV_OK) {
            check(smp.n_tokens <= p.ctx_tokens);
            check(strlen(smp.prompt) == smp.prompt_len || memchr(text, 0, size) != NULL);
            check(lkv_task_score(&smp, smp.expected[0]) > 0);
        }
        lkv_task_sample_clear(&smp);
        lkv_corpus_free(c);
    }

    lkv_sb b = {0};
    eval_json_string(&b, text, size);
    if (!b.oom) {
        check(b.len >= 2 && b.data[0] == '"' && b.data[b.len - 1] == '"');
        for (size_t i = 0; i < b.len;) {
            unsigned char ch = (unsigned char)b.data[i];
            check(ch >= 0x20);
            int k = eval_utf8_seq_len((const unsigned char *)b.data + i, b.len - i);
            check(k > 0);
            i += (size_t)k;
        }
    }
    lkv_sb_free(&b);

    eval_csv_field(&b, text, size);
    if (!b.oom) {
        /* undo RFC 4180 quoting and compare */
        if (b.len && b.data[0] == '"') {
            size_t o = 0;
            for (size_t i = 1; i + 1 < b.len; i++) {
                if (b.data[i] == '"') {
                    check(b.data[i + 1] == '"');
                    i++;
                }
                check(o < size && b.data[i] == text[o]);
                o++;
            }
            check(o == size && b.data[b.len - 1] == '"');
        } else {
            check(b.len == size && memcmp(b.data, text, size) == 0);
            check(!memchr(text, ',', size) && !memchr(text, '"', size) &&
                  !memchr(text, '\n', size) && !memchr(text, '\r', size));
        }
    }
    lkv_sb_free(&b);
    return 0;
}
