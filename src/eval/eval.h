/* eval.h -- internals of the eval layer shared by its files (and the tests).
 *
 * The public side (tasks, corpora, scores, reports, progress) is the
 * "@@ SECTION eval" of include/longkv.h. Here: a growable string buffer, the
 * escaping rules of the report formats, and small pure helpers that the tests
 * check directly.
 */
#ifndef LKV_EVAL_EVAL_H
#define LKV_EVAL_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* ------------------------------------------------------------ string buffer */

/* A growable NUL-terminated string. Zero-initialise ({0}); every append keeps
 * `data` NUL-terminated once anything was appended. After a failed append the
 * buffer sticks in the failed state (`oom` set, later appends do nothing), so a
 * long run of appends needs one check at the end. */
typedef struct lkv_sb {
    char *data;
    size_t len;
    size_t cap;
    int oom;
} lkv_sb;

void lkv_sb_append(lkv_sb *b, const char *s, size_t n);
void lkv_sb_puts(lkv_sb *b, const char *s);
void lkv_sb_putc(lkv_sb *b, char c);
void lkv_sb_printf(lkv_sb *b, const char *fmt, ...) LKV_PRINTF(2, 3);
/* Returns LKV_OK, or LKV_ERR_NOMEM (with a message) if any append failed. */
int lkv_sb_status(const lkv_sb *b);
/* Frees the data and zeroes the buffer. */
void lkv_sb_free(lkv_sb *b);
/* Hands the data over (caller frees with lkv_free); never NULL on success:
 * an empty buffer gives "". Returns NULL after a failed append. */
char *lkv_sb_take(lkv_sb *b);

/* ------------------------------------------------------------ escaping */

/* Appends s[0..n) as a JSON string literal (with the quotes): ", \ and control
 * characters escaped, U+2028/U+2029 escaped (safe for JavaScript too), valid
 * UTF-8 copied as is, each byte of an invalid UTF-8 sequence replaced by
 * U+FFFD so the output is always valid JSON text. */
void eval_json_string(lkv_sb *b, const char *s, size_t n);

/* Appends a double as a JSON number: the shortest of %.15g/%.16g/%.17g that
 * reads back to the same value; NaN and infinities (not JSON) become null. */
void eval_json_number(lkv_sb *b, double v);

/* Appends one CSV field by RFC 4180: quoted when it contains a comma, a double
 * quote, CR or LF (or starts/ends with a space), with quotes doubled. */
void eval_csv_field(lkv_sb *b, const char *s, size_t n);

/* Appends a Markdown table cell's text: | escaped, CR/LF become spaces. */
void eval_md_cell(lkv_sb *b, const char *s, size_t n);

/* Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 if invalid
 * (overlong forms, surrogates and code points above U+10FFFF are invalid). */
int eval_utf8_seq_len(const unsigned char *s, size_t n);

/* ------------------------------------------------------------ progress */

/* Formats a progress line (no newline): "label  12/100  12.0%  3.40/s  ETA 26s  note".
 * total <= 0 means unknown (no percentage or ETA). Returns snprintf's result. */
int eval_progress_format(char *buf, size_t cap, const char *label, int64_t done,
                         int64_t total, double elapsed_s, const char *note);

/* Formats a duration: "850ms", "12s", "3m05s", "2h07m". */
void eval_format_duration(char *buf, size_t cap, double seconds);

/* ------------------------------------------------------------ corpora */

/* One sentence of a corpus: bytes [off, off+len) of its normalised text. */
typedef struct eval_sentence {
    size_t off;
    uint32_t len;
    uint8_t para_end; /* 1: the sentence ends its paragraph */
} eval_sentence;

/* Splits one paragraph (normalised: single spaces, no newlines) into
 * sentences, appending to *v (grown with lkv_realloc). Returns LKV_OK or
 * LKV_ERR_NOMEM. Exposed for the tests. */
int eval_split_sentences(const char *text, size_t para_off, size_t para_len,
                         eval_sentence **v, size_t *n, size_t *cap);

#endif
