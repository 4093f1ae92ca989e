/* format.c -- the string buffer and the escaping rules of the report formats
 * (JSON strings and numbers, CSV fields, Markdown cells). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "eval/eval.h"

/* ------------------------------------------------------------ string buffer */

static int sb_reserve(lkv_sb *b, size_t extra) {
    if (b->oom)
        return -1;
    if (extra > SIZE_MAX - b->len - 1) {
        b->oom = 1;
        return -1;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = lkv_realloc(b->data, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void lkv_sb_append(lkv_sb *b, const char *s, size_t n) {
    if (sb_reserve(b, n) < 0)
        return;
    if (n)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void lkv_sb_puts(lkv_sb *b, const char *s) { lkv_sb_append(b, s, strlen(s)); }

void lkv_sb_putc(lkv_sb *b, char c) { lkv_sb_append(b, &c, 1); }

void lkv_sb_printf(lkv_sb *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        lkv_sb_append(b, small, (size_t)n);
        return;
    }
    if (sb_reserve(b, (size_t)n) < 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

int lkv_sb_status(const lkv_sb *b) {
    if (b->oom)
        return lkv_set_error(LKV_ERR_NOMEM, "out of memory building a string");
    return LKV_OK;
}

void lkv_sb_free(lkv_sb *b) {
    lkv_free(b->data);
    memset(b, 0, sizeof *b);
}

char *lkv_sb_take(lkv_sb *b) {
    if (!b->data)
        lkv_sb_append(b, "", 0);
    if (b->oom) {
        lkv_sb_free(b);
        return NULL;
    }
    char *p = b->data;
    memset(b, 0, sizeof *b);
    return p;
}

/* ------------------------------------------------------------ UTF-8 */

int eval_utf8_seq_len(const unsigned char *s, size_t n) {
    if (n == 0)
        return 0;
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    int len;
    unsigned min;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, min = 0x80, cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, min = 0x800, cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, min = 0x10000, cp = c & 0x07;
    } else {
        return 0; /* continuation byte, overlong lead (c0, c1) or > f4 */
    }
    if ((size_t)len > n)
        return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* ------------------------------------------------------------ JSON */

void eval_json_string(lkv_sb *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    lkv_sb_putc(b, '"');
    size_t run = 0; /* start of the pending run of bytes copied verbatim */
    size_t i = 0;
    while (i < n) {
        unsigned c = u[i];
        const char *esc = NULL;
        char ubuf[7];
        int adv = 1;
        if (c == '"') {
            esc = "\\\"";
        } else if (c == '\\') {
            esc = "\\\\";
        } else if (c < 0x20) {
            switch (c) {
            case '\n': esc = "\\n"; break;
            case '\r': esc = "\\r"; break;
            case '\t': esc = "\\t"; break;
            case '\b': esc = "\\b"; break;
            case '\f': esc = "\\f"; break;
            default:
                ubuf[0] = '\\', ubuf[1] = 'u', ubuf[2] = '0', ubuf[3] = '0';
                ubuf[4] = hex[c >> 4], ubuf[5] = hex[c & 15], ubuf[6] = '\0';
                esc = ubuf;
            }
        } else if (c >= 0x80) {
            adv = eval_utf8_seq_len(u + i, n - i);
            if (adv == 0) {
                esc = "\\ufffd";
                adv = 1;
            } else if (adv == 3 && c == 0xe2 && u[i + 1] == 0x80 &&
                       (u[i + 2] == 0xa8 || u[i + 2] == 0xa9)) {
                esc = u[i + 2] == 0xa8 ? "\\u2028" : "\\u2029";
            }
        }
        if (esc) {
            lkv_sb_append(b, s + run, i - run);
            lkv_sb_puts(b, esc);
            i += (size_t)adv;
            run = i;
        } else {
            i += (size_t)adv;
        }
    }
    lkv_sb_append(b, s + run, n - run);
    lkv_sb_putc(b, '"');
}

void eval_json_number(lkv_sb *b, double v) {
    if (!isfinite(v)) {
        lkv_sb_puts(b, "null");
        return;
    }
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    /* %g never prints inf/nan here and always gives a valid JSON number
     * (optional '-', digits, optional fraction, optional exponent). */
    lkv_sb_puts(b, buf);
}

/* ------------------------------------------------------------ CSV */

void eval_csv_field(lkv_sb *b, const char *s, size_t n) {
    int quote = n > 0 && (s[0] == ' ' || s[n - 1] == ' ');
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n';
    if (!quote) {
        lkv_sb_append(b, s, n);
        return;
    }
    lkv_sb_putc(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') {
            lkv_sb_append(b, s + run, i + 1 - run); /* includes the quote */
            lkv_sb_putc(b, '"');
            run = i + 1;
        }
    }
    lkv_sb_append(b, s + run, n - run);
    lkv_sb_putc(b, '"');
}

/* ------------------------------------------------------------ Markdown */

void eval_md_cell(lkv_sb *b, const char *s, size_t n) {
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep = NULL;
        if (s[i] == '|')
            rep = "\\|";
        else if (s[i] == '\n' || s[i] == '\r')
            rep = " ";
        if (rep) {
            lkv_sb_append(b, s + run, i - run);
            lkv_sb_puts(b, rep);
            run = i + 1;
        }
    }
    lkv_sb_append(b, s + run, n - run);
}
