/* tokenizer.c -- byte-level BPE and SentencePiece-style tokenizers (see tokenizer.h):
 * encoding and decoding. The tables are built by tokenizer_load.c from a spec,
 * which tokenizer_gguf.c fills from GGUF metadata; chat templates are in
 * tokenizer_chat.c; the private structures in tokenizer_impl.h.
 *
 * Data layout. Every string the tokenizer keeps (token texts, decoded pieces,
 * the strings merges talk about) lives in one byte arena addressed by offsets.
 * A string map (open addressing) finds a "symbol" id from bytes:
 *   BPE  symbols are the *raw bytes* a token stands for (the GPT-2 byte-to-
 *        unicode mapping undone), so a word is merged directly on its bytes.
 *        Ids 0..n_vocab-1 are tokens; ids >= n_vocab are strings that occur in
 *        merges but are not tokens (a well-formed file has none).
 *   SPM  the map holds the token texts as stored ("▁the").
 * BPE merges are a second map from (left symbol, right symbol) to (rank, merged
 * symbol), so one merge step is one hash lookup.
 *
 * Encoding a word (BPE) or a fragment (SPM) is the classic linked list of
 * symbols plus a binary heap of candidate pairs (best rank/score first, then
 * leftmost), O(n log n) in the word length; stale heap entries are recognised
 * by the lengths they were made with.
 *
 * Special tokens: a byte trie over the texts of control / user-defined /
 * unknown tokens finds every occurrence; occurrences are then taken longest
 * first (ties: lower id, then leftmost) when they do not overlap one already
 * taken, which is what llama.cpp's token-by-token partition does.
 */
#include "model/tokenizer.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "model/tokenizer_impl.h"
#include "model/unicode.h"

/* ------------------------------------------------------------ encoder state */

typedef struct sym {
    int32_t id;          /* symbol id, -1 = a string the tables do not know */
    int32_t prev, next;  /* neighbours in the word, -1 = none */
    uint32_t start, len; /* bytes in the word's buffer; len 0 = merged away */
} sym;

typedef struct cand {
    double key;          /* lower is better: BPE rank, or -score for SPM */
    int32_t left, right; /* symbols */
    uint32_t size;       /* bytes of left + right when made (stale check) */
    int32_t result;      /* BPE: merged symbol */
} cand;

typedef struct enc {
    const lkv_tokenizer *t;
    int32_t *ids;
    size_t n, cap;
    sym *syms;
    size_t syms_cap;
    cand *heap;
    size_t heap_n, heap_cap;
    uint8_t *buf; /* SPM: the escaped fragment */
    size_t buf_cap;
    int prev_special; /* SPM: the previous fragment was a special token (or none) */
} enc;

static int push_id(enc *e, int32_t id) {
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 256;
        int32_t *v = lkv_realloc(e->ids, cap * sizeof *v);
        if (!v)
            LKV_FAIL(LKV_ERR_NOMEM, "tokenizer: out of memory (%zu tokens)", cap);
        e->ids = v;
        e->cap = cap;
    }
    e->ids[e->n++] = id;
    return 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    size_t bytes;
    if (lkv_mul_size(c, elem, &bytes))
        LKV_FAIL(LKV_ERR_NOMEM, "tokenizer: scratch size overflows");
    void *q = lkv_realloc(*p, bytes);
    if (!q)
        LKV_FAIL(LKV_ERR_NOMEM, "tokenizer: out of memory (%zu bytes of scratch)", bytes);
    *p = q;
    *cap = c;
    return 0;
}

static inline int cand_better(const cand *a, const cand *b) {
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static int heap_push(enc *e, cand c) {
    LKV_TRY(grow((void **)&e->heap, &e->heap_cap, e->heap_n + 1, sizeof(cand)));
    size_t i = e->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_better(&c, &e->heap[parent]))
            break;
        e->heap[i] = e->heap[parent];
        i = parent;
    }
    e->heap[i] = c;
    return 0;
}

static cand heap_pop(enc *e) {
    cand top = e->heap[0];
    cand last = e->heap[--e->heap_n];
    size_t i = 0, n = e->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && cand_better(&e->heap[c + 1], &e->heap[c]))
            c++;
        if (!cand_better(&e->heap[c], &last))
            break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n)
        e->heap[i] = last;
    return top;
}

/* A candidate is still valid when both symbols are alive and adjacent with the
 * lengths they had (a symbol only grows by absorbing its right neighbour). */
static inline int cand_valid(const enc *e, const cand *c) {
    const sym *l = &e->syms[c->left], *r = &e->syms[c->right];
    return l->len && r->len && l->next == c->right && l->len + r->len == c->size;
}

static void merge_syms(enc *e, int32_t left, int32_t right) {
    sym *l = &e->syms[left], *r = &e->syms[right];
    l->len += r->len;
    r->len = 0;
    l->next = r->next;
    if (r->next >= 0)
        e->syms[r->next].prev = left;
}

/* Emits a final symbol: its token, or its bytes as byte tokens (unknown if even
 * those are missing). */
static int emit_sym(enc *e, const uint8_t *base, const sym *s) {
    const lkv_tokenizer *t = e->t;
    if (s->id >= 0 && s->id < t->n_vocab)
        return push_id(e, s->id);
    for (uint32_t i = 0; i < s->len; i++) {
        int32_t b = t->byte_sym[base[s->start + i]];
        if (b >= 0 && b < t->n_vocab)
            LKV_TRY(push_id(e, b));
        else if (t->kind == KIND_SPM && t->unk >= 0)
            LKV_TRY(push_id(e, t->unk));
        /* BPE: a byte the vocabulary cannot spell is dropped, as llama.cpp does */
    }
    return 0;
}

/* ------------------------------------------------------------ BPE */

static int bpe_try_pair(enc *e, int32_t left, int32_t right) {
    if (left < 0 || right < 0)
        return 0;
    const sym *l = &e->syms[left], *r = &e->syms[right];
    const merge_slot *m = merge_find(e->t, l->id, r->id);
    if (!m)
        return 0;
    cand c = {(double)m->rank, left, right, l->len + r->len, m->result};
    return heap_push(e, c);
}

/* Merges the bytes text[s..end) of one pre-tokenized word by rank. */
static int bpe_word(enc *e, const uint8_t *text, size_t s, size_t end) {
    const lkv_tokenizer *t = e->t;
    size_t n = end - s;
    if (n > UINT32_MAX / 2)
        LKV_FAIL(LKV_ERR_RANGE, "tokenizer: a word of %zu bytes is too long", n);
    LKV_TRY(grow((void **)&e->syms, &e->syms_cap, n, sizeof(sym)));
    for (size_t i = 0; i < n; i++) {
        sym *y = &e->syms[i];
        y->id = t->byte_sym[text[s + i]];
        y->prev = (int32_t)i - 1;
        y->next = i + 1 < n ? (int32_t)i + 1 : -1;
        y->start = (uint32_t)i; /* relative to the word */
        y->len = 1;
    }
    e->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        LKV_TRY(bpe_try_pair(e, (int32_t)i, (int32_t)i + 1));
    while (e->heap_n) {
        cand c = heap_pop(e);
        if (!cand_valid(e, &c))
            continue;
        merge_syms(e, c.left, c.right);
        e->syms[c.left].id = c.result;
        LKV_TRY(bpe_try_pair(e, e->syms[c.left].prev, c.left));
        LKV_TRY(bpe_try_pair(e, c.left, e->syms[c.left].next));
    }
    for (int32_t i = 0; i >= 0; i = e->syms[i].next)
        LKV_TRY(emit_sym(e, text + s, &e->syms[i]));
    return 0;
}

/* ------------------------------------------------------------ pre-tokenizers */

static inline size_t cp_info(const lkv_tokenizer *t, const uint8_t *p, size_t n, uint32_t *cp,
                             unsigned *fl) {
    if (p[0] < 0x80) {
        *cp = p[0];
        *fl = t->ascii_flags[p[0]];
        return 1;
    }
    size_t l = lkv_utf8_next(p, n, cp);
    *fl = lkv_unicode_flags(*cp);
    return l;
}

static int pre_run(enc *e, const uint8_t *text, int stage, size_t s, size_t end);

/* Passes one piece on to the next stage, or to BPE after the last. */
static int pre_emit(enc *e, const uint8_t *text, int stage, size_t s, size_t end) {
    if (s >= end)
        return 0;
    if (stage + 1 >= e->t->n_stages)
        return bpe_word(e, text, s, end);
    return pre_run(e, text, stage + 1, s, end);
}

/* Bytes a class-run stage matches at p (0 = no match). */
static size_t class_match(const lkv_tokenizer *t, int kind, const uint8_t *text, size_t p,
                          size_t end) {
    size_t q = p;
    while (q < end) {
        uint32_t cp;
        unsigned fl;
        size_t l = cp_info(t, text + q, end - q, &cp, &fl);
        int hit;
        switch (kind) {
        case ST_EACH_NUM:
            return (fl & LKV_UCAT_N) ? l : 0;
        case ST_NUM_RUN:
            hit = (fl & LKV_UCAT_N) != 0;
            break;
        case ST_PUNCT_RUN:
            hit = (fl & LKV_UCAT_P) || cp == '$' || cp == '+' || cp == '<' || cp == '=' ||
                  cp == '>' || cp == '^' || cp == '~' || cp == '|';
            break;
        default: /* ST_DIGIT3 */
            if (end - p >= 3 && text[p] >= '0' && text[p] <= '9' && text[p + 1] >= '0' &&
                text[p + 1] <= '9' && text[p + 2] >= '0' && text[p + 2] <= '9')
                return 3;
            return 0;
        }
        if (!hit)
            break;
        q += l;
    }
    return q - p;
}

/* Stages that isolate the matches of a character-class pattern: matches and the
 * text between them both become pieces. */
static int split_class(enc *e, const uint8_t *text, int stage, size_t s, size_t end) {
    const lkv_tokenizer *t = e->t;
    int kind = t->stages[stage];
    size_t gap = s, p = s;
    while (p < end) {
        size_t m = class_match(t, kind, text, p, end);
        if (!m) {
            uint32_t cp;
            unsigned fl;
            p += cp_info(t, text + p, end - p, &cp, &fl);
            continue;
        }
        LKV_TRY(pre_emit(e, text, stage, gap, p));
        LKV_TRY(pre_emit(e, text, stage, p, p + m));
        p += m;
        gap = p;
    }
    return pre_emit(e, text, stage, gap, end);
}

/* The GPT-2 pattern
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * applied to one piece (its end counts as the end of the text for (?!\S)). */
static int split_gpt2(enc *e, const uint8_t *text, int stage, size_t s, size_t end) {
    const lkv_tokenizer *t = e->t;
    size_t p = s;
    while (p < end) {
        uint32_t c, c2;
        unsigned f, f2 = 0;
        size_t l = cp_info(t, text + p, end - p, &c, &f);
        if (c == '\'' && p + 1 < end) {
            uint8_t a = text[p + 1], b = p + 2 < end ? text[p + 2] : 0;
            size_t m = 0;
            if (a == 's' || a == 't' || a == 'm' || a == 'd')
                m = 2;
            else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
                m = 3;
            if (m) {
                LKV_TRY(pre_emit(e, text, stage, p, p + m));
                p += m;
                continue;
            }
        }
        /* ` ?X+`: the class of the character after an optional leading space */
        if (c == ' ') {
            if (p + 1 < end)
                cp_info(t, text + p + 1, end - p - 1, &c2, &f2);
        } else {
            f2 = f;
        }
        unsigned cls = 0;
        if (f2 & LKV_UCAT_L)
            cls = LKV_UCAT_L;
        else if (f2 & LKV_UCAT_N)
            cls = LKV_UCAT_N;
        else if (f2 && !(f2 & (LKV_UCAT_WS | LKV_UCAT_L | LKV_UCAT_N)))
            cls = LKV_UCAT_WS; /* stands for "other" */
        if (cls) {
            size_t q = p + (c == ' ');
            while (q < end) {
                unsigned g;
                size_t lq = cp_info(t, text + q, end - q, &c2, &g);
                int in = cls == LKV_UCAT_WS ? !(g & (LKV_UCAT_WS | LKV_UCAT_L | LKV_UCAT_N))
                                            : (g & cls) != 0;
                if (!in)
                    break;
                q += lq;
            }
            LKV_TRY(pre_emit(e, text, stage, p, q));
            p = q;
            continue;
        }
        /* whitespace: \s+(?!\S) leaves the last one for the next word */
        size_t q = p, last = p, count = 0;
        while (q < end) {
            unsigned g;
            size_t lq = cp_info(t, text + q, end - q, &c2, &g);
            if (!(g & LKV_UCAT_WS))
                break;
            last = q;
            q += lq;
            count++;
        }
        if (count > 1 && q < end) {
            LKV_TRY(pre_emit(e, text, stage, p, last));
            p = last;
        } else if (count > 0) {
            LKV_TRY(pre_emit(e, text, stage, p, q));
            p = q;
        } else {
            LKV_TRY(pre_emit(e, text, stage, p, p + l));
            p += l;
        }
    }
    return 0;
}

static int pre_run(enc *e, const uint8_t *text, int stage, size_t s, size_t end) {
    if (e->t->stages[stage] == ST_GPT2)
        return split_gpt2(e, text, stage, s, end);
    return split_class(e, text, stage, s, end);
}

/* ------------------------------------------------------------ SentencePiece */

static int spm_try_pair(enc *e, int32_t left, int32_t right) {
    if (left < 0 || right < 0)
        return 0;
    const lkv_tokenizer *t = e->t;
    const sym *l = &e->syms[left], *r = &e->syms[right];
    size_t size = (size_t)l->len + r->len;
    int32_t id = map_find(t, (const char *)e->buf + l->start, size);
    if (id < 0 || id >= t->n_vocab)
        return 0;
    cand c = {-(double)t->scores[id], left, right, (uint32_t)size, id};
    return heap_push(e, c);
}

/* One raw fragment: spaces become U+2581 (after an optional leading one), the
 * characters are merged by the score of the merged token. */
static int spm_fragment(enc *e, const uint8_t *text, size_t n, int prefix_space) {
    const lkv_tokenizer *t = e->t;
    size_t need;
    if (lkv_mul_size(n + 1, 3, &need) || need > UINT32_MAX / 2)
        LKV_FAIL(LKV_ERR_RANGE, "tokenizer: a fragment of %zu bytes is too long", n);
    LKV_TRY(grow((void **)&e->buf, &e->buf_cap, need, 1));
    size_t m = 0;
    if (prefix_space) {
        memcpy(e->buf, "\xe2\x96\x81", 3);
        m = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (text[i] == ' ') {
            memcpy(e->buf + m, "\xe2\x96\x81", 3);
            m += 3;
        } else {
            e->buf[m++] = text[i];
        }
    }
    /* symbols: UTF-8 characters by their lead byte (clamped at the end) */
    LKV_TRY(grow((void **)&e->syms, &e->syms_cap, m, sizeof(sym)));
    int32_t ns = 0;
    for (size_t i = 0; i < m;) {
        size_t l = lkv_utf8_len(e->buf[i]);
        if (l > m - i)
            l = m - i;
        sym *y = &e->syms[ns];
        y->id = -1;
        y->prev = ns - 1;
        y->next = i + l < m ? ns + 1 : -1;
        y->start = (uint32_t)i;
        y->len = (uint32_t)l;
        ns++;
        i += l;
    }
    if (!ns)
        return 0;
    e->heap_n = 0;
    for (int32_t i = 0; i + 1 < ns; i++)
        LKV_TRY(spm_try_pair(e, i, i + 1));
    while (e->heap_n) {
        cand c = heap_pop(e);
        if (!cand_valid(e, &c))
            continue;
        merge_syms(e, c.left, c.right);
        LKV_TRY(spm_try_pair(e, e->syms[c.left].prev, c.left));
        LKV_TRY(spm_try_pair(e, c.left, e->syms[c.left].next));
    }
    for (int32_t i = 0; i >= 0; i = e->syms[i].next) {
        sym *y = &e->syms[i];
        y->id = map_find(t, (const char *)e->buf + y->start, y->len);
        LKV_TRY(emit_sym(e, e->buf, y));
    }
    return 0;
}

/* ------------------------------------------------------------ encode */

typedef struct smatch {
    size_t pos, len;
    int32_t token;
} smatch;

static int smatch_order(const void *a, const void *b) {
    const smatch *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    if (x->token != y->token)
        return x->token < y->token ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int smatch_by_pos(const void *a, const void *b) {
    const smatch *x = a, *y = b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Finds the special tokens to cut the text at: *out (lkv_malloc'ed, sorted by
 * position, non-overlapping), *n_out. */
static int find_specials(const lkv_tokenizer *t, const uint8_t *s, size_t len, int parse_special,
                         smatch **out, size_t *n_out) {
    smatch *m = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    *out = NULL;
    *n_out = 0;
    if (t->trie_n <= 1)
        return 0;
    for (size_t p = 0; p < len; p++) {
        if (t->trie_root[s[p]] < 0)
            continue;
        int32_t node = 0;
        for (size_t q = p; q < len; q++) {
            node = trie_child(t, node, s[q]);
            if (node < 0)
                break;
            int32_t tok = t->trie[node].token;
            if (tok < 0)
                continue;
            int ty = t->types[tok];
            if (ty != LKV_TOKEN_USER_DEFINED && !parse_special)
                continue;
            if ((rc = grow((void **)&m, &cap, n + 1, sizeof *m)) < 0)
                goto fail;
            m[n].pos = p;
            m[n].len = q - p + 1;
            m[n].token = tok;
            n++;
        }
    }
    if (n > 1) {
        /* longest first (then lower id, then leftmost); keep those that do not
         * overlap one already kept */
        qsort(m, n, sizeof *m, smatch_order);
        uint8_t *taken = lkv_calloc(len, 1);
        if (!taken) {
            rc = lkv_set_error(LKV_ERR_NOMEM, "tokenizer: out of memory (%zu bytes)", len);
            goto fail;
        }
        size_t kept = 0;
        for (size_t i = 0; i < n; i++) {
            int free_ = 1;
            for (size_t k = 0; k < m[i].len && free_; k++)
                free_ = !taken[m[i].pos + k];
            if (!free_)
                continue;
            memset(taken + m[i].pos, 1, m[i].len);
            m[kept++] = m[i];
        }
        lkv_free(taken);
        n = kept;
        qsort(m, n, sizeof *m, smatch_by_pos);
    }
    *out = m;
    *n_out = n;
    return 0;
fail:
    lkv_free(m);
    return rc;
}

static int encode_raw(enc *e, const uint8_t *text, size_t s, size_t end) {
    const lkv_tokenizer *t = e->t;
    if (s >= end)
        return 0;
    if (t->kind == KIND_SPM) {
        int prefix = t->add_space_prefix && e->prev_special;
        e->prev_special = 0;
        return spm_fragment(e, text + s, end - s, prefix);
    }
    if (t->n_stages == 0)
        return bpe_word(e, text, s, end);
    return pre_run(e, text, 0, s, end);
}

static int encode_all(enc *e, const uint8_t *s, size_t len, int add_bos, int parse_special) {
    const lkv_tokenizer *t = e->t;
    e->prev_special = 1;
    if (add_bos && t->add_bos && t->bos >= 0)
        LKV_TRY(push_id(e, t->bos));
    smatch *m = NULL;
    size_t nm = 0;
    LKV_TRY(find_specials(t, s, len, parse_special, &m, &nm));
    size_t pos = 0;
    int rc = 0;
    for (size_t i = 0; i < nm && rc == 0; i++) {
        rc = encode_raw(e, s, pos, m[i].pos);
        if (rc == 0)
            rc = push_id(e, m[i].token);
        e->prev_special = 1;
        pos = m[i].pos + m[i].len;
    }
    lkv_free(m);
    LKV_TRY(rc);
    LKV_TRY(encode_raw(e, s, pos, len));
    if (add_bos && t->add_eos && t->eos >= 0)
        LKV_TRY(push_id(e, t->eos));
    return 0;
}

/* BPE: an invalid UTF-8 byte is kept as itself when the vocabulary has a token
 * for that byte; one that has none (0xF5..0xFF in most vocabularies) becomes
 * U+FFFD, as llama.cpp turns every invalid byte. *clean is NULL when the text
 * needs no change. */
static int bpe_sanitize(const lkv_tokenizer *t, const char *text, size_t len, char **clean,
                        size_t *out_len) {
    const uint8_t *s = (const uint8_t *)text;
    *clean = NULL;
    if (t->kind != KIND_BPE)
        return 0;
    size_t bad = 0;
    for (size_t p = 0; p < len;) {
        uint32_t cp;
        size_t l = s[p] < 0x80 ? 1 : lkv_utf8_next(s + p, len - p, &cp);
        if (l == 1 && s[p] >= 0x80 && (t->byte_sym[s[p]] < 0 || t->byte_sym[s[p]] >= t->n_vocab))
            bad++;
        p += l;
    }
    if (!bad)
        return 0;
    char *c = lkv_malloc(len + 2 * bad + 1);
    if (!c)
        LKV_FAIL(LKV_ERR_NOMEM, "tokenizer: out of memory (%zu bytes)", len + 2 * bad);
    size_t o = 0;
    for (size_t p = 0; p < len;) {
        uint32_t cp;
        size_t l = s[p] < 0x80 ? 1 : lkv_utf8_next(s + p, len - p, &cp);
        if (l == 1 && s[p] >= 0x80 && (t->byte_sym[s[p]] < 0 || t->byte_sym[s[p]] >= t->n_vocab)) {
            memcpy(c + o, "\xef\xbf\xbd", 3);
            o += 3;
        } else {
            memcpy(c + o, s + p, l);
            o += l;
        }
        p += l;
    }
    *clean = c;
    *out_len = o;
    return 0;
}

int lkv_tokenizer_encode(const lkv_tokenizer *t, const char *text, size_t len, int add_bos,
                         int parse_special, int32_t **ids, int *n) {
    if (!t || !ids || !n || (!text && len))
        LKV_FAIL(LKV_ERR_INVALID, "tokenizer: NULL argument");
    enc e;
    memset(&e, 0, sizeof e);
    e.t = t;
    char *clean = NULL;
    int rc = bpe_sanitize(t, text, len, &clean, &len);
    if (rc == 0)
        rc = encode_all(&e, (const uint8_t *)(clean ? clean : text), len, add_bos, parse_special);
    lkv_free(clean);
    if (rc == 0 && e.n > INT_MAX)
        rc = lkv_set_error(LKV_ERR_RANGE, "tokenizer: %zu tokens do not fit an int", e.n);
    if (rc == 0 && !e.ids && !(e.ids = lkv_malloc(sizeof(int32_t))))
        rc = lkv_set_error(LKV_ERR_NOMEM, "tokenizer: out of memory");
    lkv_free(e.syms);
    lkv_free(e.heap);
    lkv_free(e.buf);
    if (rc < 0) {
        lkv_free(e.ids);
        return rc;
    }
    *ids = e.ids;
    *n = (int)e.n;
    return 0;
}

/* ------------------------------------------------------------ decode */

int lkv_tokenizer_decode(const lkv_tokenizer *t, const int32_t *ids, int n, int render_special,
                         char **text, size_t *len) {
    if (!t || !text || !len || n < 0 || (!ids && n))
        LKV_FAIL(LKV_ERR_INVALID, "tokenizer: NULL argument");
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            LKV_FAIL(LKV_ERR_RANGE, "tokenizer: token id %d at %d is outside the vocabulary (%d)",
                     (int)ids[i], i, t->n_vocab);
        total += t->piece_len[ids[i]];
    }
    char *out = lkv_malloc(total + 1);
    if (!out)
        LKV_FAIL(LKV_ERR_NOMEM, "tokenizer: out of memory (%zu bytes of text)", total + 1);
    size_t o = 0;
    int strip_space = t->kind == KIND_SPM && t->add_space_prefix;
    for (int i = 0; i < n; i++) {
        int32_t id = ids[i];
        int ty = t->types[id];
        if ((ty == LKV_TOKEN_CONTROL || (ty == LKV_TOKEN_UNKNOWN && t->kind == KIND_BPE)) &&
            !render_special)
            continue;
        const char *p = t->arena + t->piece_off[id];
        size_t l = t->piece_len[id];
        if (strip_space && l && p[0] == ' ') {
            p++;
            l--;
        }
        strip_space = 0;
        memcpy(out + o, p, l);
        o += l;
    }
    out[o] = 0;
    *text = out;
    *len = o;
    return 0;
}

/* ------------------------------------------------------------ accessors */

int lkv_tokenizer_n_vocab(const lkv_tokenizer *t) { return t ? t->n_vocab : 0; }

const char *lkv_tokenizer_piece(const lkv_tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n_vocab)
        return NULL;
    if (len)
        *len = t->piece_len[id];
    return t->arena + t->piece_off[id];
}

const char *lkv_tokenizer_text(const lkv_tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n_vocab)
        return NULL;
    if (len)
        *len = t->text_len[id];
    return t->arena + t->text_off[id];
}

int lkv_tokenizer_type(const lkv_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_vocab)
        return -1;
    return t->types[id];
}

int lkv_tokenizer_is_eog(const lkv_tokenizer *t, int32_t id) {
    if (!t || id < 0)
        return 0;
    return id == t->eos || id == t->eot || id == t->eom;
}

int32_t lkv_tokenizer_bos(const lkv_tokenizer *t) { return t ? t->bos : -1; }
int32_t lkv_tokenizer_eos(const lkv_tokenizer *t) { return t ? t->eos : -1; }

int32_t lkv_tokenizer_find(const lkv_tokenizer *t, const char *text, size_t len) {
    if (!t || (!text && len))
        return -1;
    for (int32_t i = 0; i < t->n_vocab; i++) /* rare: chat templates, tests */
        if (t->text_len[i] == len && memcmp(t->arena + t->text_off[i], text, len) == 0)
            return i;
    return -1;
}

const char *lkv_tokenizer_chat_template(const lkv_tokenizer *t, size_t *len) {
    if (!t || !t->chat_template) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = t->chat_template_len;
    return t->chat_template;
}

