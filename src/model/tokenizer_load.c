/* tokenizer_load.c -- builds a tokenizer's tables from a spec: token pieces,
 * the string map, BPE merges and the special-token trie (see tokenizer.c). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "model/tokenizer_impl.h"
#include "model/unicode.h"

/* ------------------------------------------------------------ arena + maps */

static int arena_put(lkv_tokenizer *t, const void *p, size_t n, uint32_t *off) {
    if (t->arena_len + n > UINT32_MAX)
        LKV_FAIL(LKV_ERR_FORMAT, "tokenizer: token data larger than 4 GiB");
    if (!t->arena || t->arena_len + n > t->arena_cap) {
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


static int trie_insert(lkv_tokenizer *t, const char *text, size_t n, int32_t token) {
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)text[i];
        int32_t c = trie_child(t, node, b);
        if (c < 0) {
            LKV_TRY(trie_new_node(t, b, &c));
            t->trie[c].sibling = t->trie[node].child;
            t->trie[node].child = c;
            if (node == 0)
                t->trie_root[b] = c;
        }
        node = c;
    }
    if (t->trie[node].token < 0) /* duplicates: the lower id is tried first */
        t->trie[node].token = token;
    return 0;
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
    for (int b = 0; b < 256; b++)
        t->trie_root[b] = -1;
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
