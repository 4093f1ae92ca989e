/* tokenizer_impl.h -- the tokenizer's private structures, shared by
 * tokenizer.c (encode, decode) and tokenizer_load.c (building the tables).
 * See tokenizer.c for the data layout. Not part of the model layer's API. */
#ifndef LKV_MODEL_TOKENIZER_IMPL_H
#define LKV_MODEL_TOKENIZER_IMPL_H

#include <string.h>

#include "common/hash.h"
#include "model/tokenizer.h"

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
    int32_t trie_root[256];  /* children of the root by byte (-1 = none) */

    int32_t bos, eos, eot, eom, unk, pad;
    int add_bos, add_eos, add_space_prefix;
    uint8_t ascii_flags[128];

    char *chat_template;
    size_t chat_template_len;
};

/* ------------------------------------------------------------ lookups */

static inline uint32_t str_hash(const void *p, size_t n) {
    return (uint32_t)lkv_hash64(p, n, 0x746f6b656e697a65ull);
}

/* Slot of the string, or of the empty slot where it would go. */
static inline str_slot *map_slot(const lkv_tokenizer *t, const char *p, size_t n, uint32_t h) {
    size_t mask = t->map_cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        str_slot *s = &t->map[i];
        if (s->id < 0)
            return s;
        if (s->hash == h && s->len == n && memcmp(t->arena + s->off, p, n) == 0)
            return s;
    }
}

static inline int32_t map_find(const lkv_tokenizer *t, const char *p, size_t n) {
    return map_slot(t, p, n, str_hash(p, n))->id;
}

static inline uint64_t merge_hash(uint64_t key) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return key;
}

static inline merge_slot *merge_slot_of(const lkv_tokenizer *t, uint64_t key) {
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

static inline int32_t trie_child(const lkv_tokenizer *t, int32_t node, uint8_t b) {
    if (node == 0)
        return t->trie_root[b];
    for (int32_t c = t->trie[node].child; c >= 0; c = t->trie[c].sibling)
        if (t->trie[c].byte == b)
            return c;
    return -1;
}

#endif
