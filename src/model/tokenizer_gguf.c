/* tokenizer_gguf.c -- reads the `tokenizer.*` metadata of a GGUF file into a
 * lkv_tokenizer_spec and builds the tokenizer (see tokenizer.h). */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "model/tokenizer.h"

/* Copies a GGUF string into a NUL-terminated buffer (short names only). */
static int get_name(const lkv_gguf *g, const char *key, char *buf, size_t cap, int required) {
    lkv_gguf_str s;
    int rc = lkv_gguf_get_str(g, key, &s);
    if (rc == LKV_ERR_NOT_FOUND && !required) {
        buf[0] = 0;
        return 0;
    }
    if (rc < 0)
        LKV_FAIL(LKV_ERR_FORMAT, "tokenizer: '%s' is %s", key,
                 rc == LKV_ERR_NOT_FOUND ? "missing" : "not a string");
    if (s.len >= cap)
        LKV_FAIL(LKV_ERR_UNSUPPORTED, "tokenizer: '%s' value of %llu bytes is not a known name",
                 key, (unsigned long long)s.len);
    memcpy(buf, s.ptr, (size_t)s.len);
    buf[s.len] = 0;
    if (strlen(buf) != s.len)
        LKV_FAIL(LKV_ERR_FORMAT, "tokenizer: '%s' contains a NUL byte", key);
    return 0;
}

/* An optional integer (token id or flag); *out keeps its value when absent. */
static int get_int(const lkv_gguf *g, const char *key, int32_t *out) {
    const lkv_gguf_kv *kv = lkv_gguf_find(g, key);
    if (!kv)
        return 0;
    if (kv->type == LKV_GGUF_BOOL) {
        *out = kv->val.u != 0;
        return 0;
    }
    int64_t v;
    int rc = lkv_gguf_get_i64(g, key, &v);
    if (rc < 0)
        LKV_FAIL(LKV_ERR_FORMAT, "tokenizer: '%s' is not an integer", key);
    /* ids beyond int32 are treated as absent (lkv_tokenizer_create checks range) */
    *out = v >= -1 && v <= INT32_MAX ? (int32_t)v : -1;
    return 0;
}

static int get_array(const lkv_gguf *g, const char *key, lkv_gguf_vtype want_string,
                     const lkv_gguf_kv **out) {
    const lkv_gguf_kv *kv = lkv_gguf_find(g, key);
    *out = NULL;
    if (!kv)
        return 0;
    if (kv->type != LKV_GGUF_ARRAY)
        LKV_FAIL(LKV_ERR_FORMAT, "tokenizer: '%s' is not an array", key);
    if (want_string == LKV_GGUF_STRING && kv->arr_type != LKV_GGUF_STRING)
        LKV_FAIL(LKV_ERR_FORMAT, "tokenizer: '%s' is not an array of strings", key);
    if (kv->arr_n > (uint64_t)INT32_MAX / 4)
        LKV_FAIL(LKV_ERR_FORMAT, "tokenizer: '%s' has %llu elements", key,
                 (unsigned long long)kv->arr_n);
    *out = kv;
    return 0;
}

static int read_strings(const lkv_gguf_kv *kv, const char *key, lkv_tok_str *out) {
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        lkv_gguf_str s;
        if (lkv_gguf_arr_str(kv, i, &s) < 0)
            LKV_FAIL(LKV_ERR_FORMAT, "tokenizer: '%s'[%llu] is unreadable", key,
                     (unsigned long long)i);
        out[i].ptr = s.ptr;
        out[i].len = (size_t)s.len;
    }
    return 0;
}

int lkv_tokenizer_from_gguf(const lkv_gguf *g, lkv_tokenizer **out) {
    if (!g || !out)
        LKV_FAIL(LKV_ERR_INVALID, "tokenizer: NULL argument");
    char model[32], pre[64];
    LKV_TRY(get_name(g, "tokenizer.ggml.model", model, sizeof model, 1));
    LKV_TRY(get_name(g, "tokenizer.ggml.pre", pre, sizeof pre, 0));
    if (strcmp(model, "gpt2") && strcmp(model, "llama"))
        LKV_FAIL(LKV_ERR_UNSUPPORTED,
                 "tokenizer: tokenizer model '%s' is not supported (gpt2, llama are)", model);

    const lkv_gguf_kv *tokens, *types, *scores, *merges;
    LKV_TRY(get_array(g, "tokenizer.ggml.tokens", LKV_GGUF_STRING, &tokens));
    LKV_TRY(get_array(g, "tokenizer.ggml.token_type", 0, &types));
    LKV_TRY(get_array(g, "tokenizer.ggml.scores", 0, &scores));
    LKV_TRY(get_array(g, "tokenizer.ggml.merges", LKV_GGUF_STRING, &merges));
    if (!tokens || tokens->arr_n == 0)
        LKV_FAIL(LKV_ERR_FORMAT, "tokenizer: 'tokenizer.ggml.tokens' is missing or empty");
    int n_vocab = (int)tokens->arr_n;
    if (types && types->arr_n != tokens->arr_n)
        LKV_FAIL(LKV_ERR_FORMAT, "tokenizer: %llu token types for %d tokens",
                 (unsigned long long)types->arr_n, n_vocab);
    if (scores && scores->arr_n != tokens->arr_n)
        LKV_FAIL(LKV_ERR_FORMAT, "tokenizer: %llu scores for %d tokens",
                 (unsigned long long)scores->arr_n, n_vocab);
    if (!strcmp(model, "gpt2") && !merges)
        LKV_FAIL(LKV_ERR_FORMAT, "tokenizer: 'tokenizer.ggml.merges' is missing");

    lkv_tokenizer_spec sp = lkv_tokenizer_default_spec();
    sp.model = model;
    sp.pre = pre[0] ? pre : NULL;
    sp.n_vocab = n_vocab;
    sp.n_merges = merges && !strcmp(model, "gpt2") ? (int)merges->arr_n : 0;
    LKV_TRY(get_int(g, "tokenizer.ggml.bos_token_id", &sp.bos));
    LKV_TRY(get_int(g, "tokenizer.ggml.eos_token_id", &sp.eos));
    LKV_TRY(get_int(g, "tokenizer.ggml.eot_token_id", &sp.eot));
    LKV_TRY(get_int(g, "tokenizer.ggml.eom_token_id", &sp.eom));
    LKV_TRY(get_int(g, "tokenizer.ggml.unknown_token_id", &sp.unk));
    LKV_TRY(get_int(g, "tokenizer.ggml.padding_token_id", &sp.pad));
    LKV_TRY(get_int(g, "tokenizer.ggml.add_bos_token", &sp.add_bos));
    LKV_TRY(get_int(g, "tokenizer.ggml.add_eos_token", &sp.add_eos));
    LKV_TRY(get_int(g, "tokenizer.ggml.add_space_prefix", &sp.add_space_prefix));
    lkv_gguf_str tmpl;
    if (lkv_gguf_get_str(g, "tokenizer.chat_template", &tmpl) == 0) {
        sp.chat_template = tmpl.ptr;
        sp.chat_template_len = (size_t)tmpl.len;
    }

    size_t nv = (size_t)n_vocab, nm = (size_t)sp.n_merges;
    lkv_tok_str *tok = lkv_malloc(nv * sizeof *tok);
    lkv_tok_str *mer = lkv_malloc((nm ? nm : 1) * sizeof *mer);
    int32_t *ty = types ? lkv_malloc(nv * sizeof *ty) : NULL;
    float *sc = scores ? lkv_malloc(nv * sizeof *sc) : NULL;
    int rc = 0;
    if (!tok || !mer || (types && !ty) || (scores && !sc)) {
        rc = lkv_set_error(LKV_ERR_NOMEM, "tokenizer: out of memory (%d tokens)", n_vocab);
        goto done;
    }
    if ((rc = read_strings(tokens, "tokenizer.ggml.tokens", tok)) < 0)
        goto done;
    if (nm && (rc = read_strings(merges, "tokenizer.ggml.merges", mer)) < 0)
        goto done;
    for (size_t i = 0; types && i < nv; i++) {
        int64_t v;
        if (lkv_gguf_arr_i64(types, i, &v) < 0) {
            rc = lkv_set_error(LKV_ERR_FORMAT, "tokenizer: token_type[%zu] is not an integer", i);
            goto done;
        }
        ty[i] = v >= 0 && v <= LKV_TOKEN_BYTE ? (int32_t)v : LKV_TOKEN_UNDEFINED;
    }
    for (size_t i = 0; scores && i < nv; i++) {
        double v;
        if (lkv_gguf_arr_f64(scores, i, &v) < 0) {
            rc = lkv_set_error(LKV_ERR_FORMAT, "tokenizer: scores[%zu] is not a number", i);
            goto done;
        }
        sc[i] = (float)v;
    }
    sp.tokens = tok;
    sp.types = ty;
    sp.scores = sc;
    sp.merges = mer;
    rc = lkv_tokenizer_create(&sp, out);
done:
    lkv_free(tok);
    lkv_free(mer);
    lkv_free(ty);
    lkv_free(sc);
    return rc;
}
