/* report.c -- result rows and their writers: JSON lines, CSV (RFC 4180) and a
 * Markdown table.
 *
 * A report is a table: the eleven standard columns, then extra columns in the
 * order they first appear. Each row keeps the cells it was given. JSON lines
 * carry each row's own keys (standard keys always, extras only where set); CSV
 * and Markdown carry every column, empty where a row has no value.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "eval/eval.h"

enum { KIND_UINT = 100 }; /* internal: the seed, a uint64 */

typedef struct cell {
    int present;
    int kind; /* lkv_value_kind or KIND_UINT */
    int64_t i;
    uint64_t u;
    double num;
    char *str;
} cell;

typedef struct row {
    cell *cells; /* [n_cells], indexed by column */
    int n_cells;
} row;

struct lkv_report {
    char **cols;
    int n_cols, cap_cols;
    row *rows;
    int n_rows, cap_rows;
    FILE *stream;
    char *stream_path;
};

static const char *const standard_cols[] = {
    "task",  "model",    "press",       "ratio",      "ctx",  "score",
    "kv_bytes", "peak_rss", "prefill_tps", "decode_tps", "seed",
};
#define N_STANDARD ((int)(sizeof standard_cols / sizeof *standard_cols))

lkv_result_row lkv_result_row_default(void) {
    lkv_result_row r;
    memset(&r, 0, sizeof r);
    r.ratio = NAN;
    r.ctx = -1;
    r.score = NAN;
    r.kv_bytes = -1;
    r.peak_rss = -1;
    r.prefill_tps = NAN;
    r.decode_tps = NAN;
    return r;
}

/* ------------------------------------------------------------ create / free */

int lkv_report_create(lkv_report **out) {
    if (!out)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_report_create: out is NULL");
    *out = NULL;
    lkv_report *r = lkv_calloc(1, sizeof *r);
    if (!r)
        LKV_FAIL(LKV_ERR_NOMEM, "out of memory creating a report");
    r->cols = lkv_calloc(N_STANDARD, sizeof *r->cols);
    if (!r->cols) {
        lkv_free(r);
        LKV_FAIL(LKV_ERR_NOMEM, "out of memory creating a report");
    }
    r->cap_cols = N_STANDARD;
    for (int c = 0; c < N_STANDARD; c++) {
        r->cols[c] = lkv_strdup(standard_cols[c]);
        r->n_cols = c + 1;
        if (!r->cols[c]) {
            lkv_report_free(r);
            LKV_FAIL(LKV_ERR_NOMEM, "out of memory creating a report");
        }
    }
    *out = r;
    return LKV_OK;
}

static void row_free(row *w) {
    for (int c = 0; c < w->n_cells; c++)
        lkv_free(w->cells[c].str);
    lkv_free(w->cells);
}

void lkv_report_free(lkv_report *r) {
    if (!r)
        return;
    if (r->stream)
        fclose(r->stream);
    lkv_free(r->stream_path);
    for (int i = 0; i < r->n_rows; i++)
        row_free(&r->rows[i]);
    lkv_free(r->rows);
    for (int c = 0; c < r->n_cols; c++)
        lkv_free(r->cols[c]);
    lkv_free(r->cols);
    lkv_free(r);
}

int lkv_report_n_rows(const lkv_report *r) { return r ? r->n_rows : 0; }

int lkv_report_stream_jsonl(lkv_report *r, const char *path) {
    if (!r || !path)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_report_stream_jsonl: NULL argument");
    FILE *f = fopen(path, "a");
    if (!f)
        LKV_FAIL(LKV_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    char *p = lkv_strdup(path);
    if (!p) {
        fclose(f);
        LKV_FAIL(LKV_ERR_NOMEM, "out of memory");
    }
    if (r->stream)
        fclose(r->stream);
    lkv_free(r->stream_path);
    r->stream = f;
    r->stream_path = p;
    return LKV_OK;
}

/* ------------------------------------------------------------ rendering */

static void json_row(lkv_sb *b, const lkv_report *r, const row *w) {
    lkv_sb_putc(b, '{');
    int first = 1;
    for (int c = 0; c < w->n_cells; c++) {
        const cell *x = &w->cells[c];
        if (!x->present)
            continue;
        if (!first)
            lkv_sb_putc(b, ',');
        first = 0;
        eval_json_string(b, r->cols[c], strlen(r->cols[c]));
        lkv_sb_putc(b, ':');
        switch (x->kind) {
        case LKV_VALUE_INT: lkv_sb_printf(b, "%lld", (long long)x->i); break;
        case KIND_UINT: lkv_sb_printf(b, "%llu", (unsigned long long)x->u); break;
        case LKV_VALUE_NUM: eval_json_number(b, x->num); break;
        case LKV_VALUE_BOOL: lkv_sb_puts(b, x->i ? "true" : "false"); break;
        case LKV_VALUE_STR:
            if (x->str)
                eval_json_string(b, x->str, strlen(x->str));
            else
                lkv_sb_puts(b, "null");
            break;
        default: lkv_sb_puts(b, "null");
        }
    }
    lkv_sb_puts(b, "}\n");
}

/* Plain text of a cell for CSV/Markdown ("" for null). md: short numbers. */
static void cell_text(lkv_sb *b, const cell *x, int md) {
    if (!x || !x->present)
        return;
    switch (x->kind) {
    case LKV_VALUE_INT: lkv_sb_printf(b, "%lld", (long long)x->i); break;
    case KIND_UINT: lkv_sb_printf(b, "%llu", (unsigned long long)x->u); break;
    case LKV_VALUE_NUM:
        if (!isfinite(x->num))
            break;
        if (md)
            lkv_sb_printf(b, "%.4g", x->num);
        else
            eval_json_number(b, x->num);
        break;
    case LKV_VALUE_BOOL: lkv_sb_puts(b, x->i ? "true" : "false"); break;
    case LKV_VALUE_STR:
        if (x->str)
            lkv_sb_puts(b, x->str);
        break;
    default: break;
    }
}

static const cell *row_cell(const row *w, int c) { return c < w->n_cells ? &w->cells[c] : NULL; }

static void csv_all(lkv_sb *b, const lkv_report *r) {
    for (int c = 0; c < r->n_cols; c++) {
        if (c)
            lkv_sb_putc(b, ',');
        eval_csv_field(b, r->cols[c], strlen(r->cols[c]));
    }
    lkv_sb_puts(b, "\r\n");
    lkv_sb tmp = {0};
    for (int i = 0; i < r->n_rows; i++) {
        for (int c = 0; c < r->n_cols; c++) {
            if (c)
                lkv_sb_putc(b, ',');
            tmp.len = 0;
            cell_text(&tmp, row_cell(&r->rows[i], c), 0);
            eval_csv_field(b, tmp.data ? tmp.data : "", tmp.len);
        }
        lkv_sb_puts(b, "\r\n");
    }
    if (tmp.oom)
        b->oom = 1;
    lkv_sb_free(&tmp);
}

static int is_numeric_col(const lkv_report *r, int c) {
    for (int i = 0; i < r->n_rows; i++) {
        const cell *x = row_cell(&r->rows[i], c);
        if (x && x->present && x->kind == LKV_VALUE_STR && x->str)
            return 0;
    }
    return 1;
}

static void md_all(lkv_sb *b, const lkv_report *r) {
    lkv_sb_putc(b, '|');
    for (int c = 0; c < r->n_cols; c++) {
        lkv_sb_putc(b, ' ');
        eval_md_cell(b, r->cols[c], strlen(r->cols[c]));
        lkv_sb_puts(b, " |");
    }
    lkv_sb_puts(b, "\n|");
    for (int c = 0; c < r->n_cols; c++)
        lkv_sb_puts(b, is_numeric_col(r, c) ? " ---: |" : " --- |");
    lkv_sb_putc(b, '\n');
    lkv_sb tmp = {0};
    for (int i = 0; i < r->n_rows; i++) {
        lkv_sb_putc(b, '|');
        for (int c = 0; c < r->n_cols; c++) {
            tmp.len = 0;
            cell_text(&tmp, row_cell(&r->rows[i], c), 1);
            lkv_sb_putc(b, ' ');
            eval_md_cell(b, tmp.data ? tmp.data : "", tmp.len);
            lkv_sb_puts(b, " |");
        }
        lkv_sb_putc(b, '\n');
    }
    if (tmp.oom)
        b->oom = 1;
    lkv_sb_free(&tmp);
}

static int render_sb(const lkv_report *r, lkv_report_format fmt, lkv_sb *b) {
    switch (fmt) {
    case LKV_REPORT_JSONL:
        for (int i = 0; i < r->n_rows; i++)
            json_row(b, r, &r->rows[i]);
        break;
    case LKV_REPORT_CSV: csv_all(b, r); break;
    case LKV_REPORT_MARKDOWN: md_all(b, r); break;
    default: LKV_FAIL(LKV_ERR_INVALID, "unknown report format %d", (int)fmt);
    }
    return lkv_sb_status(b);
}

int lkv_report_render(const lkv_report *r, lkv_report_format fmt, char *buf, size_t cap,
                      size_t *len) {
    if (!r || (!buf && cap))
        LKV_FAIL(LKV_ERR_INVALID, "lkv_report_render: NULL argument");
    lkv_sb b = {0};
    int rc = render_sb(r, fmt, &b);
    if (rc == LKV_OK) {
        if (len)
            *len = b.len;
        if (cap) {
            size_t n = b.len < cap - 1 ? b.len : cap - 1;
            if (n)
                memcpy(buf, b.data, n);
            buf[n] = '\0';
        }
    }
    lkv_sb_free(&b);
    return rc;
}

int lkv_report_write(const lkv_report *r, lkv_report_format fmt, const char *path) {
    if (!r || !path)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_report_write: NULL argument");
    lkv_sb b = {0};
    int rc = render_sb(r, fmt, &b);
    if (rc < 0) {
        lkv_sb_free(&b);
        return rc;
    }
    lkv_sb tmp = {0};
    lkv_sb_printf(&tmp, "%s.tmp.%ld", path, (long)getpid());
    if ((rc = lkv_sb_status(&tmp)) < 0) {
        lkv_sb_free(&b);
        return rc;
    }
    FILE *f = fopen(tmp.data, "wb");
    if (!f) {
        rc = lkv_set_error(LKV_ERR_IO, "cannot create %s: %s", tmp.data, strerror(errno));
    } else {
        int ok = fwrite(b.data ? b.data : "", 1, b.len, f) == b.len;
        ok &= fflush(f) == 0;
        ok &= fclose(f) == 0;
        if (!ok)
            rc = lkv_set_error(LKV_ERR_IO, "error writing %s", tmp.data);
        else if (rename(tmp.data, path) != 0)
            rc = lkv_set_error(LKV_ERR_IO, "cannot rename %s to %s: %s", tmp.data, path,
                               strerror(errno));
        if (rc < 0)
            remove(tmp.data);
    }
    lkv_sb_free(&tmp);
    lkv_sb_free(&b);
    return rc;
}

/* ------------------------------------------------------------ adding rows */

static int find_col(const lkv_report *r, const char *key) {
    for (int c = 0; c < r->n_cols; c++)
        if (strcmp(r->cols[c], key) == 0)
            return c;
    return -1;
}

static int add_col(lkv_report *r, const char *key) {
    if (r->n_cols == r->cap_cols) {
        int nc = r->cap_cols * 2;
        char **p = lkv_realloc(r->cols, (size_t)nc * sizeof *p);
        if (!p)
            LKV_FAIL(LKV_ERR_NOMEM, "out of memory adding a report column");
        r->cols = p;
        r->cap_cols = nc;
    }
    char *k = lkv_strdup(key);
    if (!k)
        LKV_FAIL(LKV_ERR_NOMEM, "out of memory adding a report column");
    r->cols[r->n_cols] = k;
    return r->n_cols++;
}

static int set_str(cell *x, const char *s) {
    x->present = 1;
    x->kind = LKV_VALUE_STR;
    if (!s)
        return LKV_OK;
    x->str = lkv_strdup(s);
    if (!x->str)
        LKV_FAIL(LKV_ERR_NOMEM, "out of memory adding a report row");
    return LKV_OK;
}

static void set_num(cell *x, double v) {
    x->present = 1;
    x->kind = LKV_VALUE_NUM;
    x->num = v;
}

static void set_int(cell *x, int64_t v, int unknown_if_negative) {
    x->present = 1;
    x->kind = unknown_if_negative && v < 0 ? LKV_VALUE_NULL : LKV_VALUE_INT;
    x->i = v;
}

static int fill_row(lkv_report *r, const lkv_result_row *in, row *w) {
    /* check the extra keys before changing anything */
    for (int e = 0; e < in->n_extra; e++) {
        const char *k = in->extra[e].key;
        if (!k || !k[0])
            LKV_FAIL(LKV_ERR_INVALID, "extra field %d has no key", e);
        for (int s = 0; s < N_STANDARD; s++)
            if (strcmp(k, standard_cols[s]) == 0)
                LKV_FAIL(LKV_ERR_INVALID, "extra key \"%s\" is a standard column", k);
        for (int j = 0; j < e; j++)
            if (strcmp(k, in->extra[j].key) == 0)
                LKV_FAIL(LKV_ERR_INVALID, "extra key \"%s\" repeats", k);
        int kind = in->extra[e].kind;
        if (kind < LKV_VALUE_NULL || kind > LKV_VALUE_BOOL)
            LKV_FAIL(LKV_ERR_INVALID, "extra \"%s\": unknown value kind %d", k, kind);
    }
    for (int e = 0; e < in->n_extra; e++)
        if (find_col(r, in->extra[e].key) < 0)
            LKV_TRY(add_col(r, in->extra[e].key));
    w->cells = lkv_calloc((size_t)r->n_cols, sizeof *w->cells);
    if (!w->cells)
        LKV_FAIL(LKV_ERR_NOMEM, "out of memory adding a report row");
    w->n_cells = r->n_cols;
    cell *x = w->cells;
    LKV_TRY(set_str(&x[0], in->task));
    LKV_TRY(set_str(&x[1], in->model));
    LKV_TRY(set_str(&x[2], in->press));
    set_num(&x[3], in->ratio);
    set_int(&x[4], in->ctx, 1);
    set_num(&x[5], in->score);
    set_int(&x[6], in->kv_bytes, 1);
    set_int(&x[7], in->peak_rss, 1);
    set_num(&x[8], in->prefill_tps);
    set_num(&x[9], in->decode_tps);
    x[10].present = 1;
    x[10].kind = KIND_UINT;
    x[10].u = in->seed;
    for (int e = 0; e < in->n_extra; e++) {
        const lkv_report_field *f = &in->extra[e];
        cell *y = &x[find_col(r, f->key)];
        switch (f->kind) {
        case LKV_VALUE_INT: set_int(y, f->i, 0); break;
        case LKV_VALUE_NUM: set_num(y, f->num); break;
        case LKV_VALUE_STR: LKV_TRY(set_str(y, f->str)); break;
        case LKV_VALUE_BOOL:
            y->present = 1;
            y->kind = LKV_VALUE_BOOL;
            y->i = f->i != 0;
            break;
        default: y->present = 1; y->kind = LKV_VALUE_NULL; break;
        }
    }
    return LKV_OK;
}

int lkv_report_add(lkv_report *r, const lkv_result_row *in) {
    if (!r || !in || (in->n_extra > 0 && !in->extra) || in->n_extra < 0)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_report_add: NULL or inconsistent argument");
    if (r->n_rows == r->cap_rows) {
        int nc = r->cap_rows ? r->cap_rows * 2 : 16;
        row *p = lkv_realloc(r->rows, (size_t)nc * sizeof *p);
        if (!p)
            LKV_FAIL(LKV_ERR_NOMEM, "out of memory adding a report row");
        r->rows = p;
        r->cap_rows = nc;
    }
    row w = {0};
    int rc = fill_row(r, in, &w);
    if (rc < 0) {
        row_free(&w);
        return rc;
    }
    r->rows[r->n_rows++] = w;
    if (r->stream) {
        lkv_sb b = {0};
        json_row(&b, r, &w);
        if ((rc = lkv_sb_status(&b)) == LKV_OK) {
            int ok = fwrite(b.data, 1, b.len, r->stream) == b.len;
            ok &= fflush(r->stream) == 0;
            if (!ok)
                rc = lkv_set_error(LKV_ERR_IO, "error appending to %s", r->stream_path);
        }
        lkv_sb_free(&b);
    }
    return rc;
}
