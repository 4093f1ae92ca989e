/* tokenizer.h -- tokenizers built from GGUF metadata (internal API of the model layer).
 *
 * Two families, chosen by `tokenizer.ggml.model`:
 *   "gpt2"   byte-level BPE (GPT-2 style): the text is first split by the model's
 *            pre-tokenizer (`tokenizer.ggml.pre`: "smollm" = "starcoder" =
 *            "refact" = "command-r": digits alone, then the GPT-2 pattern;
 *            "gpt2" = "gpt-2" = "mpt": the GPT-2 pattern; "default" or absent:
 *            llama.cpp's default), each piece is mapped byte by byte and merged
 *            by rank (`tokenizer.ggml.merges`).
 *   "llama"  SentencePiece-style BPE (Gemma, Llama 2): spaces become U+2581, pieces
 *            are merged by score (`tokenizer.ggml.scores`), characters missing from
 *            the vocabulary fall back to <0xXX> byte tokens.
 * Anything else (or an unknown pre-tokenizer name) is LKV_ERR_UNSUPPORTED.
 *
 * Special tokens (token types control / user-defined / unknown) are matched as
 * whole tokens in the text; control ones only when parse_special is on, user-
 * defined ones always (as llama.cpp does). Ids match llama.cpp's for valid UTF-8.
 * An invalid UTF-8 byte is kept as that byte when the vocabulary has a token for
 * it (llama.cpp replaces every invalid byte by U+FFFD), so decode(encode(x)) == x
 * whenever the vocabulary can spell x; an invalid byte it cannot spell becomes
 * U+FFFD, and a valid character whose bytes it cannot spell is dropped (both as
 * in llama.cpp).
 *
 * A tokenizer is immutable after creation: any number of threads may encode and
 * decode with it at once. Outputs are allocated with lkv_malloc; free them with
 * lkv_free.
 */
#ifndef LKV_MODEL_TOKENIZER_H
#define LKV_MODEL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "longkv.h" /* lkv_chat_msg */
#include "model/gguf.h"

typedef struct lkv_tokenizer lkv_tokenizer;

/* Token types (numbering of `tokenizer.ggml.token_type`, as written by llama.cpp's
 * converters). */
enum {
    LKV_TOKEN_UNDEFINED = 0,
    LKV_TOKEN_NORMAL = 1,
    LKV_TOKEN_UNKNOWN = 2,
    LKV_TOKEN_CONTROL = 3,
    LKV_TOKEN_USER_DEFINED = 4,
    LKV_TOKEN_UNUSED = 5,
    LKV_TOKEN_BYTE = 6
};

/* A byte string (not NUL-terminated). */
typedef struct lkv_tok_str {
    const char *ptr;
    size_t len;
} lkv_tok_str;

/* Everything a tokenizer is built from; lkv_tokenizer_from_gguf fills one from
 * the metadata. Tests and the fuzzer fill it by hand. Strings are copied. */
typedef struct lkv_tokenizer_spec {
    const char *model;         /* "gpt2" or "llama" */
    const char *pre;           /* pre-tokenizer name (gpt2 only); NULL = "default" */
    int n_vocab;               /* tokens [n_vocab] */
    const lkv_tok_str *tokens; /* token texts, as stored in the file */
    const int32_t *types;      /* [n_vocab] LKV_TOKEN_*, or NULL = all normal */
    const float *scores;       /* [n_vocab] (llama only; NULL = all 0) */
    int n_merges;
    const lkv_tok_str *merges; /* "left right" (gpt2 only), rank = index */
    int32_t bos, eos, eot, eom, unk, pad; /* special ids, -1 = none */
    int add_bos, add_eos;      /* 1/0, or -1 = the model type's default */
    int add_space_prefix;      /* llama only: 1/0, or -1 = default (1) */
    const char *chat_template; /* tokenizer.chat_template, or NULL */
    size_t chat_template_len;
} lkv_tokenizer_spec;

/* A spec with every id -1, every flag -1 and everything else empty. */
lkv_tokenizer_spec lkv_tokenizer_default_spec(void);

/* Builds a tokenizer from a spec. Returns LKV_OK, LKV_ERR_INVALID (inconsistent
 * spec), LKV_ERR_FORMAT (bad token/merge data), LKV_ERR_UNSUPPORTED (tokenizer
 * model or pre-tokenizer this build does not implement) or LKV_ERR_NOMEM. */
int lkv_tokenizer_create(const lkv_tokenizer_spec *spec, lkv_tokenizer **out);

/* Builds a tokenizer from `tokenizer.*` metadata. Same errors as create, plus
 * LKV_ERR_FORMAT for a missing or mistyped key (named in the message). */
int lkv_tokenizer_from_gguf(const lkv_gguf *g, lkv_tokenizer **out);

void lkv_tokenizer_free(lkv_tokenizer *t); /* NULL is a no-op */

int lkv_tokenizer_n_vocab(const lkv_tokenizer *t);

/* Encodes text[0..len).
 *   add_bos        1: prepend BOS (and append EOS) when the model asks for it
 *                  (tokenizer.ggml.add_bos_token / add_eos_token), as llama.cpp's
 *                  add_special does
 *   parse_special  1: control tokens written in the text ("<|im_start|>") are
 *                  matched; user-defined tokens are matched either way
 *   *ids, *n       receive an lkv_malloc'ed array (free with lkv_free; never NULL
 *                  on success) and its length
 * Returns LKV_OK, LKV_ERR_INVALID (NULL argument), LKV_ERR_RANGE (more than
 * INT_MAX tokens) or LKV_ERR_NOMEM. Any byte string is accepted. */
int lkv_tokenizer_encode(const lkv_tokenizer *t, const char *text, size_t len, int add_bos,
                         int parse_special, int32_t **ids, int *n);

/* Decodes ids into bytes: *text is lkv_malloc'ed, NUL-terminated, length *len.
 * Control tokens are rendered as their text when render_special is 1, skipped
 * when 0. Returns LKV_OK, LKV_ERR_RANGE (an id outside the vocabulary; named in
 * the message), LKV_ERR_INVALID or LKV_ERR_NOMEM. */
int lkv_tokenizer_decode(const lkv_tokenizer *t, const int32_t *ids, int n, int render_special,
                         char **text, size_t *len);

/* The bytes one token decodes to (special tokens as their text, byte tokens as
 * the byte, SentencePiece U+2581 as a space), valid while t lives; NULL for an
 * id outside the vocabulary. A piece may be part of a UTF-8 character. */
const char *lkv_tokenizer_piece(const lkv_tokenizer *t, int32_t id, size_t *len);

/* The token's text as stored in the file (e.g. "Ġthe"); NULL when out of range. */
const char *lkv_tokenizer_text(const lkv_tokenizer *t, int32_t id, size_t *len);

int lkv_tokenizer_type(const lkv_tokenizer *t, int32_t id); /* LKV_TOKEN_*, -1 out of range */
int lkv_tokenizer_is_eog(const lkv_tokenizer *t, int32_t id); /* EOS, EOT, EOM */
int32_t lkv_tokenizer_bos(const lkv_tokenizer *t); /* -1 if none */
int32_t lkv_tokenizer_eos(const lkv_tokenizer *t); /* -1 if none */

/* Looks up a token by its exact text (as stored in the file); -1 if absent. */
int32_t lkv_tokenizer_find(const lkv_tokenizer *t, const char *text, size_t len);

/* The file's tokenizer.chat_template (NUL-terminated), or NULL when absent. */
const char *lkv_tokenizer_chat_template(const lkv_tokenizer *t, size_t *len);

/* Formats a chat as the model's chat template does (ChatML, including the
 * template's default system message when the first message is not "system";
 * or Gemma's <start_of_turn> format, where a system message is prepended to the
 * first user turn and "assistant" is written "model"). The template kind is
 * recognised from the file's tokenizer.chat_template (ChatML when absent and the
 * vocabulary has <|im_start|>). BOS is not written: the tokenizer adds it.
 *   add_assistant  1: end with the header of the assistant's turn
 *   *out, *len     lkv_malloc'ed NUL-terminated text and its length
 * Returns LKV_OK, LKV_ERR_UNSUPPORTED (template not recognised), LKV_ERR_INVALID
 * (NULL role/content, n < 0) or LKV_ERR_NOMEM. */
int lkv_tokenizer_chat_format(const lkv_tokenizer *t, const lkv_chat_msg *msgs, int n,
                              int add_assistant, char **out, size_t *len);

#endif
