/* tokenizer.c -- byte-level BPE and SentencePiece-style tokenizers (see tokenizer.h).
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
#include "common/hash.h"
#include "model/unicode.h"

enum { KIND_BPE = 1, KIND_SPM = 2 };

/* Pre-tokenizer stages (each splits a piece into smaller pieces; a piece is
 * either a match or the text between matches, as llama.cpp's splits keep both). */
enum {
    ST_GPT2 = 1,    /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    ST_EACH_NUM,    /* \p{N}                        (every digit alone)            */
    ST_NUM_RUN,     /* \p{N}+                                                      */
    ST_PUNCT_RUN,   /* [\p{P}\$\+<=>\^~\|]+                                        */
    ST_DIGIT3       /* [0-9][0-9][0-9]                                             */
};
#define MAX_STAGES 4

typedef struct str_slot {
    uint32_t off, len; /* in the arena */
    int32_t id;        /* -1 = empty */
    uint32_t hash;
} str_slot;

typedef struct merge_slot {
    uint64_t key; /* left << 32 | right; UINT64_MAX = empty */
    int32_t rank, result;
} merge_slot;

typedef struct trie_node {
    int32_t child, sibling; /* first child, next sibling; -1 = none */
    int32_t token;          /* token ending here, -1 = none */
    uint8_t byte;
} trie_node;

struct lkv_tokenizer {
    int kind;
    int n_stages;
    int stages[MAX_STAGES];
    int n_vocab;

    char *arena;
    size_t arena_len, arena_cap;
    uint32_t *text_off, *text_len;   /* [n_vocab] text as stored */
    uint32_t *piece_off, *piece_len; /* [n_vocab] decoded bytes */
    int8_t *types;                   /* [n_vocab] */
    float *scores;                   /* [n_vocab] (SPM) */

    str_slot *map;  /* string -> symbol */
    size_t map_cap; /* power of two */
    size_t map_used;
    int32_t n_syms;

    merge_slot *merges; /* BPE */
    size_t merges_cap;

    int32_t byte_sym[256]; /* BPE: symbol of the one-byte string; SPM: <0xXX> token */

    trie_node *trie; /* node 0 is the root */
    int32_t trie_n, trie_cap;
    uint8_t trie_first[256]; /* 1 if some special token starts with this byte */

    int32_t bos, eos, eot, eom, unk, pad;
    int add_bos, add_eos, add_space_prefix;
    uint8_t ascii_flags[128];

    char *chat_template;
    size_t chat_template_len;
};

/* ------------------------------------------------------------ arena + maps */

static int arena_put(lkv_tokenizer *t, const void *p, size_t n, uint32_t *off) {
    if (t->arena_len + n > UINT32_MAX)
        LKV_FAIL(LKV_ERR_FORMAT, "tokenizer: token data larger than 4 GiB");
    if (t->arena_len + n > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap : 1 << 16;
        while (cap < t->arena_len + n)
            cap *= 2;
        char *a = lkv_realloc(t->arena, cap);
        if (!a)
            LKV_FAIL(LKV_ERR_NOMEM, "tokenizer: out of memory (%zu bytes of strings)", cap);
        t->arena = a;
        t->arena_cap = cap;
    }
    if (n)
        memcpy(t->arena + t->arena_len, p, n);
    *off = (uint32_t)t->arena_len;
    t->arena_len += n;
    return 0;
}

static uint32_t str_hash(const void *p, size_t n) {
    return (uint32_t)lkv_hash64(p, n, 0x746f6b656e697a65ull);
}

/* Slot of the string, or of the empty slot where it would go. */
static str_slot *map_slot(const lkv_tokenizer *t, const char *p, size_t n, uint32_t h) {
    size_t mask = t->map_cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        str_slot *s = &t->map[i];
        if (s->id < 0)
            return s;
        if (s->hash == h && s->len == n && memcmp(t->arena + s->off, p, n) == 0)
            return s;
    }
}

static int32_t map_find(const lkv_tokenizer *t, const char *p, size_t n) {
    return map_slot(t, p, n, str_hash(p, n))->id;
}

/* Inserts p[0..n) with id (or, when id < 0, a new symbol id). An existing entry
 * is overwritten when overwrite is set (llama.cpp keeps the last duplicate
 * token). *out receives the entry's id. */
static int map_insert(lkv_tokenizer *t, const char *p, size_t n, int32_t id, int overwrite,
                      int32_t *out) {
    uint32_t h = str_hash(p, n);
    str_slot *s = map_slot(t, p, n, h);
    if (s->id >= 0) {
        if (overwrite && id >= 0)
            s->id = id;
        *out = s->id;
        return 0;
    }
    if ((t->map_used + 1) * 2 > t->map_cap)
        LKV_FAIL(LKV_ERR_INVALID, "tokenizer: string map full"); /* sized up front */
    uint32_t off;
    LKV_TRY(arena_put(t, p, n, &off));
    s->off = off;
    s->len = (uint32_t)n;
    s->hash = h;
    s->id = id >= 0 ? id : t->n_syms++;
    t->map_used++;
    *out = s->id;
    return 0;
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n)
        c *= 2;
    return c;
}

static uint64_t merge_hash(uint64_t key) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return key;
}

static merge_slot *merge_slot_of(const lkv_tokenizer *t, uint64_t key) {
    size_t mask = t->merges_cap - 1;
    for (size_t i = merge_hash(key) & mask;; i = (i + 1) & mask)
        if (t->merges[i].key == key || t->merges[i].key == UINT64_MAX)
            return &t->merges[i];
}

static inline const merge_slot *merge_find(const lkv_tokenizer *t, int32_t a, int32_t b) {
    if (a < 0 || b < 0 || !t->merges_cap)
        return NULL;
    const merge_slot *s = merge_slot_of(t, (uint64_t)(uint32_t)a << 32 | (uint32_t)b);
    return s->key == UINT64_MAX ? NULL : s;
}

/* ------------------------------------------------------------ GPT-2 byte map */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100 upwards in byte order. */
static void byte_map_build(uint16_t byte_to_cp[256], int16_t cp_to_byte[324]) {
    int next = 256;
    for (int i = 0; i < 324; i++)
        cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        byte_to_cp[b] = (uint16_t)(printable ? b : next++);
        cp_to_byte[byte_to_cp[b]] = (int16_t)b;
    }
}

/* Undoes the byte mapping of text[0..n): code points that are in the map become
 * their byte, others are copied as UTF-8. Returns 1 if every code point was in
 * the map (the text is then a string of bytes a BPE word can contain). out must
 * hold n bytes (the result is never longer than the input). */
static int byte_unmap(const int16_t cp_to_byte[324], const char *text, size_t n, char *out,
                      size_t *out_n) {
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0, o = 0;
    int all = 1;
    while (i < n) {
        uint32_t cp;
        size_t l = lkv_utf8_next(s + i, n - i, &cp);
        if (l > 1 || cp < 0x80) { /* a valid code point */
            if (cp < 324 && cp_to_byte[cp] >= 0) {
                out[o++] = (char)cp_to_byte[cp];
                i += l;
                continue;
            }
        }
        all = 0;
        memcpy(out + o, s + i, l);
        o += l;
        i += l;
    }
    *out_n = o;
    return all;
}

/* ------------------------------------------------------------ special-token trie */

static int trie_new_node(lkv_tokenizer *t, uint8_t byte, int32_t *out) {
    if (t->trie_n == t->trie_cap) {
        int32_t cap = t->trie_cap ? t->trie_cap * 2 : 64;
        trie_node *n = lkv_realloc(t->trie, (size_t)cap * sizeof *n);
        if (!n)
            LKV_FAIL(LKV_ERR_NOMEM, "tokenizer: out of memory (special-token trie)");
        t->trie = n;
        t->trie_cap = cap;
    }
    trie_node *n = &t->trie[t->trie_n];
    n->child = n->sibling = n->token = -1;
    n->byte = byte;
    *out = t->trie_n++;
    return 0;
}

static int32_t trie_child(const lkv_tokenizer *t, int32_t node, uint8_t b) {
    for (int32_t c = t->trie[node].child; c >= 0; c = t->trie[c].sibling)
        if (t->trie[c].byte == b)
            return c;
    return -1;
}

static int trie_insert(lkv_tokenizer *t, const char *text, size_t n, int32_t token) {
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)text[i];
        int32_t c = trie_child(t, node, b);
        if (c < 0) {
            LKV_TRY(trie_new_node(t, b, &c));
            t->trie[c].sibling = t->trie[node].child;
            t->trie[node].child = c;
        }
        node = c;
    }
    if (t->trie[node].token < 0) /* duplicates: the lower id is tried first */
        t->trie[node].token = token;
    t->trie_first[(uint8_t)text[0]] = 1;
    return 0;
}

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
        if (!t->trie_first[s[p]])
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

/* ------------------------------------------------------------ create */

lkv_tokenizer_spec lkv_tokenizer_default_spec(void) {
    lkv_tokenizer_spec s;
    memset(&s, 0, sizeof s);
    s.bos = s.eos = s.eot = s.eom = s.unk = s.pad = -1;
    s.add_bos = s.add_eos = s.add_space_prefix = -1;
    return s;
}

void lkv_tokenizer_free(lkv_tokenizer *t) {
    if (!t)
        return;
    lkv_free(t->arena);
    lkv_free(t->text_off);
    lkv_free(t->text_len);
    lkv_free(t->piece_off);
    lkv_free(t->piece_len);
    lkv_free(t->types);
    lkv_free(t->scores);
    lkv_free(t->map);
    lkv_free(t->merges);
    lkv_free(t->trie);
    lkv_free(t->chat_template);
    lkv_free(t);
}

static int map_init(lkv_tokenizer *t, size_t n_strings) {
    t->map_cap = pow2_at_least(n_strings * 2 + 2);
    t->map = lkv_malloc(t->map_cap * sizeof *t->map);
    if (!t->map)
        LKV_FAIL(LKV_ERR_NOMEM, "tokenizer: out of memory (string map)");
    for (size_t i = 0; i < t->map_cap; i++)
        t->map[i].id = -1;
    return 0;
}

/* Doubles the string map when it is half full. */
static int map_reserve(lkv_tokenizer *t, size_t more) {
    if ((t->map_used + more) * 2 <= t->map_cap)
        return 0;
    size_t cap = t->map_cap;
    while ((t->map_used + more) * 2 > cap)
        cap *= 2;
    str_slot *old = t->map;
    size_t old_cap = t->map_cap;
    str_slot *m = lkv_malloc(cap * sizeof *m);
    if (!m)
        LKV_FAIL(LKV_ERR_NOMEM, "tokenizer: out of memory (string map)");
    for (size_t i = 0; i < cap; i++)
        m[i].id = -1;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].id < 0)
            continue;
        size_t j = old[i].hash & (cap - 1);
        while (m[j].id >= 0)
            j = (j + 1) & (cap - 1);
        m[j] = old[i];
    }
    t->map = m;
    t->map_cap = cap;
    lkv_free(old);
    return 0;
}

static int parse_byte_token(const char *s, size_t n) {
    /* "<0xAB>" */
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static int set_stages(lkv_tokenizer *t, const char *pre) {
    if (!pre || !strcmp(pre, "default")) {
        /* llama.cpp's default BPE pre-tokenizer */
        t->stages[0] = ST_PUNCT_RUN;
        t->stages[1] = ST_GPT2;
        t->stages[2] = ST_NUM_RUN;
        t->stages[3] = ST_DIGIT3;
        t->n_stages = 4;
    } else if (!strcmp(pre, "gpt2") || !strcmp(pre, "gpt-2") || !strcmp(pre, "mpt")) {
        t->stages[0] = ST_GPT2;
        t->n_stages = 1;
    } else if (!strcmp(pre, "smollm") || !strcmp(pre, "starcoder") || !strcmp(pre, "refact") ||
               !strcmp(pre, "command-r")) {
        t->stages[0] = ST_EACH_NUM;
        t->stages[1] = ST_GPT2;
        t->n_stages = 2;
    } else {
        LKV_FAIL(LKV_ERR_UNSUPPORTED,
                 "tokenizer: pre-tokenizer '%s' is not supported (smollm, starcoder, refact, "
                 "command-r, gpt2, gpt-2, mpt, default are)", pre);
    }
    return 0;
}

static int32_t valid_id(int32_t id, int n_vocab) { return id >= 0 && id < n_vocab ? id : -1; }

/* Token pieces, the string map and the special-token trie. */
static int load_tokens(lkv_tokenizer *t, const lkv_tokenizer_spec *sp, const uint16_t *b2c,
                       const int16_t *c2b, char *scratch) {
    (void)b2c;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        const char *s = sp->tokens[i].ptr;
        size_t n = sp->tokens[i].len;
        if (!s && n)
            LKV_FAIL(LKV_ERR_INVALID, "tokenizer: token %d has no text", (int)i);
        if (n > UINT32_MAX / 4)
            LKV_FAIL(LKV_ERR_FORMAT, "tokenizer: token %d is too long", (int)i);
        int ty = sp->types ? sp->types[i] : LKV_TOKEN_NORMAL;
        if (ty < LKV_TOKEN_UNDEFINED || ty > LKV_TOKEN_BYTE)
            ty = LKV_TOKEN_UNDEFINED;
        t->types[i] = (int8_t)ty;
        t->scores[i] = sp->scores ? sp->scores[i] : 0.0f;
        LKV_TRY(arena_put(t, s, n, &t->text_off[i]));
        t->text_len[i] = (uint32_t)n;

        int normal = ty == LKV_TOKEN_NORMAL || ty == LKV_TOKEN_UNDEFINED;
        int special = ty == LKV_TOKEN_CONTROL || ty == LKV_TOKEN_USER_DEFINED ||
                      ty == LKV_TOKEN_UNKNOWN;
        const char *piece = s;
        size_t piece_n = n;
        int32_t got;
        LKV_TRY(map_reserve(t, 1));
        if (t->kind == KIND_BPE) {
            size_t raw_n;
            int mappable = byte_unmap(c2b, s, n, scratch, &raw_n);
            if (mappable && n)
                LKV_TRY(map_insert(t, scratch, raw_n, i, 1, &got));
            if (normal)
                piece = scratch, piece_n = raw_n;
            else if (!special)
                piece_n = 0; /* byte / unused tokens decode to nothing in BPE */
        } else {
            if (n)
                LKV_TRY(map_insert(t, s, n, i, 1, &got));
            if (normal) {
                size_t o = 0;
                for (size_t k = 0; k < n; k++) {
                    if (k + 2 < n && !memcmp(s + k, "\xe2\x96\x81", 3)) {
                        scratch[o++] = ' ';
                        k += 2;
                    } else {
                        scratch[o++] = s[k];
                    }
                }
                piece = scratch, piece_n = o;
            } else if (ty == LKV_TOKEN_BYTE) {
                int b = parse_byte_token(s, n);
                scratch[0] = (char)b;
                piece = scratch, piece_n = b >= 0;
            } else if (ty == LKV_TOKEN_UNKNOWN) {
                piece = "\xe2\x96\x85", piece_n = 3;
            } else if (!special) {
                piece_n = 0;
            }
        }
        LKV_TRY(arena_put(t, piece, piece_n, &t->piece_off[i]));
        t->piece_len[i] = (uint32_t)piece_n;
        if (special && n)
            LKV_TRY(trie_insert(t, s, n, i));
    }
    return 0;
}

static int load_merges(lkv_tokenizer *t, const lkv_tokenizer_spec *sp, const int16_t *c2b,
                       char *scratch, size_t scratch_cap) {
    if (sp->n_merges <= 0)
        return 0;
    t->merges_cap = pow2_at_least((size_t)sp->n_merges * 2 + 2);
    t->merges = lkv_malloc(t->merges_cap * sizeof *t->merges);
    if (!t->merges)
        LKV_FAIL(LKV_ERR_NOMEM, "tokenizer: out of memory (%d merges)", sp->n_merges);
    for (size_t i = 0; i < t->merges_cap; i++)
        t->merges[i].key = UINT64_MAX;
    for (int32_t r = 0; r < sp->n_merges; r++) {
        const char *s = sp->merges[r].ptr;
        size_t n = sp->merges[r].len;
        if (!s && n)
            LKV_FAIL(LKV_ERR_INVALID, "tokenizer: merge %d has no text", (int)r);
        size_t sp_at = 1;
        while (sp_at < n && s[sp_at] != ' ')
            sp_at++;
        if (n < 3 || sp_at >= n - 1)
            LKV_FAIL(LKV_ERR_FORMAT, "tokenizer: merge %d ('%.*s') is not 'left right'", (int)r,
                     (int)(n < 64 ? n : 64), s);
        if (n > scratch_cap)
            continue; /* longer than any token: can never apply */
        size_t ln, rn;
        if (!byte_unmap(c2b, s, sp_at, scratch, &ln))
            continue; /* not byte-mapped text: no word can contain it */
        if (!byte_unmap(c2b, s + sp_at + 1, n - sp_at - 1, scratch + ln, &rn))
            continue;
        int32_t a, b, c;
        LKV_TRY(map_reserve(t, 3));
        LKV_TRY(map_insert(t, scratch, ln, -1, 0, &a));
        LKV_TRY(map_insert(t, scratch + ln, rn, -1, 0, &b));
        LKV_TRY(map_insert(t, scratch, ln + rn, -1, 0, &c));
        merge_slot *m = merge_slot_of(t, (uint64_t)(uint32_t)a << 32 | (uint32_t)b);
        if (m->key == UINT64_MAX) { /* the first (best) rank of a pair wins */
            m->key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
            m->rank = r;
            m->result = c;
        }
    }
    return 0;
}

/* Tokens that end a turn, found by name when the metadata does not say. */
static void find_eog(lkv_tokenizer *t) {
    static const char *const eot_names[] = {"<|im_end|>", "<end_of_turn>", "<|eot_id|>",
                                            "<|end|>", "<EOT>", "<|endoftext|>"};
    if (t->eot >= 0)
        return;
    for (size_t k = 0; k < sizeof eot_names / sizeof *eot_names; k++) {
        int32_t id = lkv_tokenizer_find(t, eot_names[k], strlen(eot_names[k]));
        if (id >= 0 && id != t->eos &&
            (t->types[id] == LKV_TOKEN_CONTROL || t->types[id] == LKV_TOKEN_USER_DEFINED)) {
            t->eot = id;
            return;
        }
    }
}

int lkv_tokenizer_create(const lkv_tokenizer_spec *sp, lkv_tokenizer **out) {
    if (!sp || !out || !sp->model)
        LKV_FAIL(LKV_ERR_INVALID, "tokenizer: NULL argument");
    if (sp->n_vocab <= 0 || sp->n_vocab > INT32_MAX / 4 || !sp->tokens)
        LKV_FAIL(LKV_ERR_INVALID, "tokenizer: %d tokens", sp->n_vocab);
    if (sp->n_merges < 0 || (sp->n_merges > 0 && !sp->merges))
        LKV_FAIL(LKV_ERR_INVALID, "tokenizer: %d merges without data", sp->n_merges);
    int kind;
    if (!strcmp(sp->model, "gpt2"))
        kind = KIND_BPE;
    else if (!strcmp(sp->model, "llama"))
        kind = KIND_SPM;
    else
        LKV_FAIL(LKV_ERR_UNSUPPORTED,
                 "tokenizer: tokenizer model '%s' is not supported (gpt2, llama are)", sp->model);

    lkv_tokenizer *t = lkv_calloc(1, sizeof *t);
    if (!t)
        LKV_FAIL(LKV_ERR_NOMEM, "tokenizer: out of memory");
    char *scratch = NULL;
    int rc = 0;
    t->kind = kind;
    t->n_vocab = sp->n_vocab;
    t->n_syms = sp->n_vocab;
    if (kind == KIND_BPE && (rc = set_stages(t, sp->pre)) < 0)
        goto fail;
    size_t nv = (size_t)sp->n_vocab, max_len = 8;
    for (size_t i = 0; i < nv; i++)
        if (sp->tokens[i].len > max_len)
            max_len = sp->tokens[i].len;
    t->text_off = lkv_malloc(nv * sizeof(uint32_t));
    t->text_len = lkv_malloc(nv * sizeof(uint32_t));
    t->piece_off = lkv_malloc(nv * sizeof(uint32_t));
    t->piece_len = lkv_malloc(nv * sizeof(uint32_t));
    t->types = lkv_malloc(nv);
    t->scores = lkv_malloc(nv * sizeof(float));
    scratch = lkv_malloc(2 * max_len + 8);
    if (!t->text_off || !t->text_len || !t->piece_off || !t->piece_len || !t->types ||
        !t->scores || !scratch) {
        rc = lkv_set_error(LKV_ERR_NOMEM, "tokenizer: out of memory (%zu tokens)", nv);
        goto fail;
    }
    if ((rc = map_init(t, nv)) < 0 || (rc = trie_new_node(t, 0, &(int32_t){0})) < 0)
        goto fail;

    uint16_t b2c[256];
    int16_t c2b[324];
    byte_map_build(b2c, c2b);
    if ((rc = load_tokens(t, sp, b2c, c2b, scratch)) < 0)
        goto fail;
    if (kind == KIND_BPE && (rc = load_merges(t, sp, c2b, scratch, 2 * max_len)) < 0)
        goto fail;

    for (int b = 0; b < 256; b++) {
        if (kind == KIND_BPE) {
            char c = (char)b;
            t->byte_sym[b] = map_find(t, &c, 1);
        } else {
            char name[8];
            static const char hex[] = "0123456789ABCDEF";
            memcpy(name, "<0x", 3);
            name[3] = hex[b >> 4];
            name[4] = hex[b & 15];
            name[5] = '>';
            t->byte_sym[b] = map_find(t, name, 6);
        }
    }
    for (int c = 0; c < 128; c++)
        t->ascii_flags[c] = (uint8_t)lkv_unicode_flags((uint32_t)c);

    t->bos = valid_id(sp->bos, t->n_vocab);
    t->eos = valid_id(sp->eos, t->n_vocab);
    t->eot = valid_id(sp->eot, t->n_vocab);
    t->eom = valid_id(sp->eom, t->n_vocab);
    t->unk = valid_id(sp->unk, t->n_vocab);
    t->pad = valid_id(sp->pad, t->n_vocab);
    t->add_bos = sp->add_bos >= 0 ? sp->add_bos != 0 : kind == KIND_SPM;
    t->add_eos = sp->add_eos >= 0 ? sp->add_eos != 0 : 0;
    t->add_space_prefix = kind == KIND_SPM && sp->add_space_prefix != 0;
    find_eog(t);
    if (sp->chat_template) {
        t->chat_template = lkv_malloc(sp->chat_template_len + 1);
        if (!t->chat_template) {
            rc = lkv_set_error(LKV_ERR_NOMEM, "tokenizer: out of memory (chat template)");
            goto fail;
        }
        memcpy(t->chat_template, sp->chat_template, sp->chat_template_len);
        t->chat_template[sp->chat_template_len] = 0;
        t->chat_template_len = sp->chat_template_len;
    }
    lkv_free(scratch);
    *out = t;
    return 0;
fail:
    lkv_free(scratch);
    lkv_tokenizer_free(t);
    return rc;
}
