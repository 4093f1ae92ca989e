/* tokenizer_chat.c -- chat templates (see lkv_tokenizer_chat_format in tokenizer.h).
 *
 * We do not run Jinja: the file's template is only used to recognise which of
 * the formats below it is, and to read ChatML's default system message.
 *
 * ChatML (SmolLM2, Qwen):
 *   <|im_start|>{role}\n{content}<|im_end|>\n   per message
 *   <|im_start|>assistant\n                     when add_assistant
 *   A template such as SmolLM2's that writes a literal
 *   '<|im_start|>system\n...<|im_end|>' when the first message is not a system
 *   message gets that default system message.
 * Gemma:
 *   <start_of_turn>{user|model}\n{content, trimmed}<end_of_turn>\n
 *   <start_of_turn>model\n                      when add_assistant
 *   A leading system message is written at the start of the first user turn,
 *   followed by a blank line; roles must alternate user / model.
 */
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "model/tokenizer.h"

enum { CHAT_CHATML = 1, CHAT_GEMMA = 2 };

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static int sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *q = lkv_realloc(b->p, cap);
        if (!q)
            LKV_FAIL(LKV_ERR_NOMEM, "chat: out of memory (%zu bytes)", cap);
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

static int sb_str(sbuf *b, const char *s) { return sb_put(b, s, strlen(s)); }

static int chat_kind(const lkv_tokenizer *t) {
    const char *tmpl = lkv_tokenizer_chat_template(t, NULL);
    if (tmpl) {
        if (strstr(tmpl, "<|im_start|>"))
            return CHAT_CHATML;
        if (strstr(tmpl, "<start_of_turn>"))
            return CHAT_GEMMA;
        LKV_FAIL(LKV_ERR_UNSUPPORTED,
                 "chat: the model's chat template is not one this build knows (ChatML, Gemma)");
    }
    if (lkv_tokenizer_find(t, "<|im_start|>", 12) >= 0)
        return CHAT_CHATML;
    if (lkv_tokenizer_find(t, "<start_of_turn>", 15) >= 0)
        return CHAT_GEMMA;
    LKV_FAIL(LKV_ERR_UNSUPPORTED, "chat: the model has no chat template");
}

/* ChatML's default system message: the literal text of
 * '<|im_start|>system\n ... <|im_end|>' in the template, if there is one. */
static int chatml_default_system(const char *tmpl, sbuf *out) {
    static const char head[] = "<|im_start|>system";
    const char *p = tmpl ? strstr(tmpl, head) : NULL;
    if (!p)
        return 0;
    p += sizeof head - 1;
    if (*p == '\n')
        p++;
    else if (p[0] == '\\' && p[1] == 'n')
        p += 2;
    else
        return 0;
    const char *end = strstr(p, "<|im_end|>");
    if (!end)
        return 0;
    for (const char *q = p; q < end; q++)
        if (*q == '\'' || *q == '"' || *q == '{' || *q == '}' || *q == '+')
            return 0; /* built from variables, not a literal */
    for (const char *q = p; q < end; q++) {
        if (q[0] == '\\' && q + 1 < end && q[1] == 'n') {
            LKV_TRY(sb_put(out, "\n", 1));
            q++;
        } else {
            LKV_TRY(sb_put(out, q, 1));
        }
    }
    return 1;
}

static int format_chatml(const lkv_tokenizer *t, const lkv_chat_msg *m, int n, int add_asst,
                         sbuf *b) {
    if (n > 0 && strcmp(m[0].role, "system") != 0) {
        sbuf sys = {0};
        int rc = chatml_default_system(lkv_tokenizer_chat_template(t, NULL), &sys);
        if (rc > 0) {
            rc = sb_str(b, "<|im_start|>system\n");
            if (rc == 0)
                rc = sb_put(b, sys.p, sys.n);
            if (rc == 0)
                rc = sb_str(b, "<|im_end|>\n");
        }
        lkv_free(sys.p);
        LKV_TRY(rc);
    }
    for (int i = 0; i < n; i++) {
        LKV_TRY(sb_str(b, "<|im_start|>"));
        LKV_TRY(sb_str(b, m[i].role));
        LKV_TRY(sb_str(b, "\n"));
        LKV_TRY(sb_str(b, m[i].content));
        LKV_TRY(sb_str(b, "<|im_end|>\n"));
    }
    if (add_asst)
        LKV_TRY(sb_str(b, "<|im_start|>assistant\n"));
    return 0;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* Jinja's |trim: strips leading and trailing whitespace. */
static int sb_trimmed(sbuf *b, const char *s) {
    size_t n = strlen(s);
    while (n && is_space(*s))
        s++, n--;
    while (n && is_space(s[n - 1]))
        n--;
    return sb_put(b, s, n);
}

static int format_gemma(const lkv_chat_msg *m, int n, int add_asst, sbuf *b) {
    const char *system = NULL;
    int first = 0;
    if (n > 0 && !strcmp(m[0].role, "system")) {
        system = m[0].content;
        first = 1;
    }
    for (int i = first; i < n; i++) {
        int user = !strcmp(m[i].role, "user");
        if (user != ((i - first) % 2 == 0))
            LKV_FAIL(LKV_ERR_INVALID,
                     "chat: Gemma needs alternating user/assistant messages (message %d is '%s')",
                     i, m[i].role);
        const char *role = !strcmp(m[i].role, "assistant") ? "model" : m[i].role;
        LKV_TRY(sb_str(b, "<start_of_turn>"));
        LKV_TRY(sb_str(b, role));
        LKV_TRY(sb_str(b, "\n"));
        if (i == first && system) {
            LKV_TRY(sb_str(b, system));
            LKV_TRY(sb_str(b, "\n\n"));
        }
        LKV_TRY(sb_trimmed(b, m[i].content));
        LKV_TRY(sb_str(b, "<end_of_turn>\n"));
    }
    if (add_asst)
        LKV_TRY(sb_str(b, "<start_of_turn>model\n"));
    return 0;
}

int lkv_tokenizer_chat_format(const lkv_tokenizer *t, const lkv_chat_msg *msgs, int n,
                              int add_assistant, char **out, size_t *len) {
    if (!t || !out || !len || n < 0 || (n > 0 && !msgs))
        LKV_FAIL(LKV_ERR_INVALID, "chat: NULL argument");
    for (int i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            LKV_FAIL(LKV_ERR_INVALID, "chat: message %d has no role or content", i);
    int kind = chat_kind(t);
    LKV_TRY(kind);
    sbuf b = {0};
    int rc = sb_put(&b, "", 0); /* never NULL, even when empty */
    if (rc == 0)
        rc = kind == CHAT_CHATML ? format_chatml(t, msgs, n, add_assistant, &b)
                                 : format_gemma(msgs, n, add_assistant, &b);
    if (rc < 0) {
        lkv_free(b.p);
        return rc;
    }
    *out = b.p;
    *len = b.n;
    return 0;
}
