/* progress.c -- progress display for long runs: items done, rate, time left.
 * On a terminal one line is redrawn in place; elsewhere (logs, CI) a plain
 * line is printed every line_interval seconds so logs stay short. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "eval/eval.h"

struct lkv_progress {
    char label[64];
    int64_t total;
    int64_t done;
    int fd;
    int tty;              /* 1: redraw in place; 0: plain lines */
    int off;
    double interval;
    double t0, last_draw;
    size_t last_width;    /* characters of the last TTY line (to blank leftovers) */
    int drawn;
    char note[128];
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void eval_format_duration(char *buf, size_t cap, double s) {
    if (!(s >= 0))
        s = 0;
    if (s < 1.0)
        snprintf(buf, cap, "%dms", (int)(s * 1000.0 + 0.5));
    else if (s < 60.0)
        snprintf(buf, cap, "%ds", (int)(s + 0.5));
    else if (s < 3600.0) {
        long t = (long)(s + 0.5);
        snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    } else if (s < 1e9) {
        long t = (long)(s / 60.0 + 0.5);
        snprintf(buf, cap, "%ldh%02ldm", t / 60, t % 60);
    } else {
        snprintf(buf, cap, "long");
    }
}

int eval_progress_format(char *buf, size_t cap, const char *label, int64_t done,
                         int64_t total, double elapsed_s, const char *note) {
    char rate[32] = "", eta[48] = "", pct[16] = "", tot[32] = "";
    if (elapsed_s > 0 && done > 0) {
        double r = (double)done / elapsed_s;
        if (r >= 1.0)
            snprintf(rate, sizeof rate, "  %.2f/s", r);
        else
            snprintf(rate, sizeof rate, "  %.1fs/item", 1.0 / r);
        if (total > 0 && done < total) {
            char d[24];
            eval_format_duration(d, sizeof d, (double)(total - done) / r);
            snprintf(eta, sizeof eta, "  ETA %s", d);
        }
    }
    if (total > 0) {
        snprintf(tot, sizeof tot, "/%lld", (long long)total);
        snprintf(pct, sizeof pct, "  %.1f%%", 100.0 * (double)done / (double)total);
    }
    return snprintf(buf, cap, "%s  %lld%s%s%s%s%s%s", label ? label : "", (long long)done, tot,
                    pct, rate, eta, note && note[0] ? "  " : "", note ? note : "");
}

lkv_progress_params lkv_progress_default_params(void) {
    lkv_progress_params p;
    memset(&p, 0, sizeof p);
    p.label = "progress";
    p.total = 0;
    p.fd = 2;
    p.mode = LKV_PROGRESS_AUTO;
    p.tty_interval = 0.2;
    p.line_interval = 10.0;
    return p;
}

int lkv_progress_create(const lkv_progress_params *p, lkv_progress **out) {
    if (!p || !out)
        LKV_FAIL(LKV_ERR_INVALID, "lkv_progress_create: NULL argument");
    *out = NULL;
    if (p->mode < LKV_PROGRESS_AUTO || p->mode > LKV_PROGRESS_OFF)
        LKV_FAIL(LKV_ERR_INVALID, "unknown progress mode %d", (int)p->mode);
    lkv_progress *pg = lkv_calloc(1, sizeof *pg);
    if (!pg)
        LKV_FAIL(LKV_ERR_NOMEM, "out of memory creating a progress display");
    snprintf(pg->label, sizeof pg->label, "%s", p->label ? p->label : "");
    pg->total = p->total;
    pg->fd = p->fd;
    pg->off = p->mode == LKV_PROGRESS_OFF || p->fd < 0;
    pg->tty = p->mode == LKV_PROGRESS_TTY || (p->mode == LKV_PROGRESS_AUTO && isatty(p->fd));
    pg->interval = pg->tty ? p->tty_interval : p->line_interval;
    pg->t0 = now_s();
    pg->last_draw = pg->t0;
    *out = pg;
    return LKV_OK;
}

static void put(int fd, const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w <= 0)
            return; /* a progress display never fails the run */
        s += w;
        n -= (size_t)w;
    }
}

static void draw(lkv_progress *pg, double t, int final) {
    char line[512];
    int n = eval_progress_format(line, sizeof line, pg->label, pg->done, pg->total, t - pg->t0,
                                 final ? NULL : pg->note);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (final) {
        char tail[64], d[24];
        eval_format_duration(d, sizeof d, t - pg->t0);
        int k = snprintf(tail, sizeof tail, "  done in %s", d);
        if (k > 0 && len + (size_t)k < sizeof line) {
            memcpy(line + len, tail, (size_t)k + 1);
            len += (size_t)k;
        }
    }
    if (pg->tty) {
        char pad[512];
        size_t extra = pg->last_width > len ? pg->last_width - len : 0;
        if (extra > sizeof pad)
            extra = sizeof pad;
        memset(pad, ' ', extra);
        put(pg->fd, "\r", 1);
        put(pg->fd, line, len);
        put(pg->fd, pad, extra);
        if (final)
            put(pg->fd, "\n", 1);
        pg->last_width = len;
    } else {
        put(pg->fd, line, len);
        put(pg->fd, "\n", 1);
    }
    pg->last_draw = t;
    pg->drawn = 1;
}

void lkv_progress_update(lkv_progress *pg, int64_t done, const char *note) {
    if (!pg || pg->off)
        return;
    pg->done = done;
    snprintf(pg->note, sizeof pg->note, "%s", note ? note : "");
    double t = now_s();
    /* TTY: the first update draws at once; lines: only after an interval */
    if (t - pg->last_draw >= pg->interval || (pg->tty && !pg->drawn))
        draw(pg, t, 0);
}

void lkv_progress_finish(lkv_progress *pg) {
    if (!pg || pg->off)
        return;
    draw(pg, now_s(), 1);
}

void lkv_progress_free(lkv_progress *pg) { lkv_free(pg); }
