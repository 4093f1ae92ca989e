/* model_tok.c -- the public tokenizer and chat-template calls: thin wrappers
 * over model/tokenizer.h that copy into caller buffers (the public API never
 * hands out library-allocated memory to free). */
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "model/model.h"
#include "model/tokenizer.h"

static int need_tok(const lkv_model *m, const char *fn) {
    if (!m)
        LKV_FAIL(LKV_ERR_INVALID, "%s: NULL model", fn);
    if (!m->tok)
        LKV_FAIL(LKV_ERR_STATE, "%s: the model was loaded without its tokenizer", fn);
    return LKV_OK;
}

int lkv_tokenize(const lkv_model *m, const char *text, size_t len, int add_bos,
                 int parse_special, int32_t *ids, int cap) {
    LKV_TRY(need_tok(m, "lkv_tokenize"));
    if ((!text && len > 0) || cap < 0 || (!ids && cap > 0))
        LKV_FAIL(LKV_ERR_INVALID, "lkv_tokenize: bad buffer");
    int32_t *out = NULL;
    int n = 0;
    LKV_TRY(lkv_tokenizer_encode(m->tok, text ? text : "", len, add_bos, parse_special, &out,
                                 &n));
    if (ids && cap > 0 && n > 0)
        memcpy(ids, out, (size_t)(n < cap ? n : cap) * sizeof(int32_t));
    lkv_free(out);
    return n;
}

int lkv_token_to_piece(const lkv_model *m, int32_t token, char *buf, size_t cap) {
    LKV_TRY(need_tok(m, "lkv_token_to_piece"));
    if (!buf && cap > 0)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_token_to_piece: NULL buffer");
    size_t len = 0;
    const char *p = lkv_tokenizer_piece(m->tok, token, &len);
    if (!p)
        LKV_FAIL(LKV_ERR_RANGE, "lkv_token_to_piece: token %d is outside the vocabulary",
                 (int)token);
    if (len > (size_t)INT32_MAX)
        LKV_FAIL(LKV_ERR_RANGE, "lkv_token_to_piece: piece too long");
    memcpy(buf, p, len < cap ? len : cap);
    return (int)len;
}

/* Copies a library string to a caller buffer, NUL-terminated when it fits. */
static int copy_out(const char *s, size_t len, char *buf, size_t cap) {
    if (len >= (size_t)INT32_MAX)
        LKV_FAIL(LKV_ERR_RANGE, "text too long");
    if (cap > 0) {
        size_t c = len < cap ? len : cap - 1;
        memcpy(buf, s, c);
        buf[c] = '\0';
    }
    return (int)len;
}

int lkv_detokenize(const lkv_model *m, const int32_t *ids, int n, int render_special,
                   char *buf, size_t cap) {
    LKV_TRY(need_tok(m, "lkv_detokenize"));
    if ((!ids && n > 0) || n < 0 || (!buf && cap > 0))
        LKV_FAIL(LKV_ERR_INVALID, "lkv_detokenize: bad argument");
    char *text = NULL;
    size_t len = 0;
    LKV_TRY(lkv_tokenizer_decode(m->tok, ids, n, render_special, &text, &len));
    int rc = copy_out(text, len, buf, cap);
    lkv_free(text);
    return rc;
}

int lkv_token_is_eog(const lkv_model *m, int32_t token) {
    return m && m->tok ? lkv_tokenizer_is_eog(m->tok, token) : 0;
}

int32_t lkv_token_bos(const lkv_model *m) {
    return m && m->tok ? lkv_tokenizer_bos(m->tok) : -1;
}

int lkv_chat_format(const lkv_model *m, const lkv_chat_msg *msgs, int n_msgs,
                    int add_assistant, char *buf, size_t cap) {
    LKV_TRY(need_tok(m, "lkv_chat_format"));
    if ((!msgs && n_msgs > 0) || n_msgs < 0 || (!buf && cap > 0))
        LKV_FAIL(LKV_ERR_INVALID, "lkv_chat_format: bad argument");
    char *text = NULL;
    size_t len = 0;
    LKV_TRY(lkv_tokenizer_chat_format(m->tok, msgs, n_msgs, add_assistant, &text, &len));
    int rc = copy_out(text, len, buf, cap);
    lkv_free(text);
    return rc;
}
