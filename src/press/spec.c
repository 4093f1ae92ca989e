/* spec.c -- parsing and validating policy spec strings. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "press/press.h"

static int param_index(const lkv_press_method *m, const char *key) {
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].key, key))
            return i;
    return -1;
}

double lkv_press_stage_get(const lkv_press_stage *st, const char *key) {
    int i = param_index(st->method, key);
    return i < 0 ? LKV_PRESS_UNSET : st->value[i];
}

int lkv_press_stage_given(const lkv_press_stage *st, const char *key) {
    int i = param_index(st->method, key);
    return i >= 0 && st->given[i];
}

static void list_names(char *buf, size_t cap) {
    int n;
    const lkv_press_method *m = lkv_press_methods(&n);
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", m[i].name);
}

static void list_keys(const lkv_press_method *m, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = '\0';
    if (m->n_params == 0)
        snprintf(buf, cap, "(none)");
    for (int i = 0; i < m->n_params && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", m->params[i].key);
}

/* Index of `word` in "a|b|c", or -1. */
static int choice_index(const char *choices, const char *word) {
    int idx = 0;
    const char *p = choices;
    size_t wl = strlen(word);
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == wl && !strncmp(p, word, len))
            return idx;
        idx++;
        if (!bar)
            break;
        p = bar + 1;
    }
    return -1;
}

static const char *choice_name(const char *choices, int idx, char *buf, size_t cap) {
    const char *p = choices;
    for (int i = 0; i < idx && p; i++) {
        p = strchr(p, '|');
        if (p)
            p++;
    }
    if (!p)
        return "?";
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    if (len >= cap)
        len = cap - 1;
    memcpy(buf, p, len);
    buf[len] = '\0';
    return buf;
}

static void trim(char *s) {
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    size_t i = 0;
    while (s[i] && isspace((unsigned char)s[i]))
        i++;
    memmove(s, s + i, n - i + 1);
}

static int parse_value(const lkv_press_method *m, const lkv_press_param *pp, const char *text,
                       double *out) {
    if (pp->type == LKV_PT_ENUM) {
        int idx = choice_index(pp->choices, text);
        if (idx < 0)
            LKV_FAIL(LKV_ERR_INVALID, "press %s: %s=%s is not one of %s", m->name, pp->key, text,
                     pp->choices);
        *out = idx;
        return LKV_OK;
    }
    char *end = NULL;
    double v = strtod(text, &end);
    if (!*text || !end || *end || !isfinite(v))
        LKV_FAIL(LKV_ERR_INVALID, "press %s: %s=%s is not a number", m->name, pp->key, text);
    if (pp->type == LKV_PT_INT && v != floor(v))
        LKV_FAIL(LKV_ERR_INVALID, "press %s: %s=%s must be an integer", m->name, pp->key, text);
    if (v < pp->lo || v > pp->hi)
        LKV_FAIL(LKV_ERR_INVALID, "press %s: %s=%s is out of range [%g, %g]", m->name, pp->key,
                 text, pp->lo, pp->hi);
    *out = v;
    return LKV_OK;
}

/* Method-specific consistency checks, after every value is known. */
static int check_stage(const lkv_press_stage *st) {
    const lkv_press_method *m = st->method;
    if (lkv_press_stage_given(st, "budget") && lkv_press_stage_given(st, "ratio"))
        LKV_FAIL(LKV_ERR_INVALID,
                 "press %s: give either budget= (tokens kept) or ratio= (fraction removed), not both",
                 m->name);
    if (!strcmp(m->name, "snapkv") || !strcmp(m->name, "pyramidkv")) {
        int k = (int)lkv_press_stage_get(st, "kernel");
        if (k % 2 == 0)
            LKV_FAIL(LKV_ERR_INVALID, "press %s: kernel=%d must be odd", m->name, k);
        double budget = lkv_press_stage_get(st, "budget");
        double window = lkv_press_stage_get(st, "window");
        if (budget != LKV_PRESS_UNSET && budget <= window)
            LKV_FAIL(LKV_ERR_INVALID,
                     "press %s: budget=%g must exceed window=%g (the window is always kept)",
                     m->name, budget, window);
    }
    if (!strcmp(m->name, "streamingllm")) {
        double budget = lkv_press_stage_get(st, "budget");
        double sinks = lkv_press_stage_get(st, "sinks");
        if (budget != LKV_PRESS_UNSET && budget <= sinks)
            LKV_FAIL(LKV_ERR_INVALID, "press streamingllm: budget=%g must exceed sinks=%g", budget,
                     sinks);
        if (lkv_press_stage_given(st, "recent") &&
            (lkv_press_stage_given(st, "budget") || lkv_press_stage_given(st, "ratio")))
            LKV_FAIL(LKV_ERR_INVALID,
                     "press streamingllm: recent= and budget=/ratio= both set the window; give one");
    }
    if (!strcmp(m->name, "kivi")) {
        int bits = (int)lkv_press_stage_get(st, "bits");
        int group = (int)lkv_press_stage_get(st, "group");
        int residual = (int)lkv_press_stage_get(st, "residual");
        if (bits != 2 && bits != 4)
            LKV_FAIL(LKV_ERR_INVALID, "press kivi: bits=%d; accepted: 2, 4", bits);
        if (residual % group)
            LKV_FAIL(LKV_ERR_INVALID, "press kivi: residual=%d must be a multiple of group=%d",
                     residual, group);
    }
    if (!strcmp(m->name, "arkvale")) {
        double topk = lkv_press_stage_get(st, "topk"), pb = lkv_press_stage_get(st, "page_budget");
        if (topk > pb)
            LKV_FAIL(LKV_ERR_INVALID,
                     "press arkvale: topk=%g exceeds page_budget=%g (the attended pages must be "
                     "in fast memory)", topk, pb);
        double sinks = lkv_press_stage_get(st, "sink_pages");
        double recent = lkv_press_stage_get(st, "recent_pages");
        if (sinks + (recent > 1 ? recent : 1) > topk)
            LKV_FAIL(LKV_ERR_INVALID,
                     "press arkvale: sink_pages=%g + recent_pages=%g (at least the newest page) "
                     "exceed topk=%g; the always-attended pages are part of the top-k",
                     sinks, recent, topk);
    }
    return LKV_OK;
}

static int parse_stage(char *text, lkv_press_stage *st) {
    memset(st, 0, sizeof *st);
    char *colon = strchr(text, ':');
    char *args = NULL;
    if (colon) {
        *colon = '\0';
        args = colon + 1;
    }
    trim(text);
    for (char *c = text; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    if (!*text)
        LKV_FAIL(LKV_ERR_INVALID, "press spec: empty policy name");
    const lkv_press_method *m = lkv_press_find_method(text);
    if (!m && (!strcmp(text, "none") || !strcmp(text, "baseline")))
        m = lkv_press_find_method("full");
    if (!m) {
        char names[1024];
        list_names(names, sizeof names);
        LKV_FAIL(LKV_ERR_INVALID, "press spec: unknown policy '%s'; known: %s", text, names);
    }
    st->method = m;
    for (int i = 0; i < m->n_params; i++)
        st->value[i] = m->params[i].def;
    if (args) {
        char *save = NULL;
        for (char *item = strtok_r(args, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(item, '=');
            if (!eq)
                LKV_FAIL(LKV_ERR_INVALID, "press %s: '%s' is not key=value", m->name, item);
            *eq = '\0';
            char *key = item, *val = eq + 1;
            trim(key);
            trim(val);
            int pi = param_index(m, key);
            if (pi < 0) {
                char keys[512];
                list_keys(m, keys, sizeof keys);
                LKV_FAIL(LKV_ERR_INVALID, "press %s: unknown parameter '%s'; accepted: %s", m->name,
                         key, keys);
            }
            if (st->given[pi])
                LKV_FAIL(LKV_ERR_INVALID, "press %s: parameter '%s' given twice", m->name, key);
            LKV_TRY(parse_value(m, &m->params[pi], val, &st->value[pi]));
            st->given[pi] = 1;
        }
    }
    /* an explicit budget replaces a default ratio */
    int bi = param_index(m, "budget"), ri = param_index(m, "ratio");
    if (bi >= 0 && ri >= 0 && st->given[bi] && !st->given[ri])
        st->value[ri] = LKV_PRESS_UNSET;
    if (bi >= 0 && ri >= 0 && st->given[ri] && !st->given[bi])
        st->value[bi] = LKV_PRESS_UNSET;
    return check_stage(st);
}

static void canonicalise(struct lkv_press *p) {
    size_t used = 0, cap = sizeof p->canonical;
    p->canonical[0] = '\0';
    for (int s = 0; s < p->n_stages && used < cap; s++) {
        const lkv_press_stage *st = &p->stage[s];
        const lkv_press_method *m = st->method;
        used += (size_t)snprintf(p->canonical + used, cap - used, "%s%s", s ? "+" : "", m->name);
        int first = 1;
        for (int i = 0; i < m->n_params && used < cap; i++) {
            const lkv_press_param *pp = &m->params[i];
            if (st->value[i] == LKV_PRESS_UNSET)
                continue;
            /* StreamingLLM: a budget or ratio replaces the default window */
            if (!strcmp(pp->key, "recent") && !st->given[i] &&
                (lkv_press_stage_given(st, "budget") || lkv_press_stage_given(st, "ratio")))
                continue;
            char vbuf[64];
            if (pp->type == LKV_PT_ENUM)
                choice_name(pp->choices, (int)st->value[i], vbuf, sizeof vbuf);
            else
                snprintf(vbuf, sizeof vbuf, "%g", st->value[i]);
            used += (size_t)snprintf(p->canonical + used, cap - used, "%s%s=%s", first ? ":" : ",",
                                     pp->key, vbuf);
            first = 0;
        }
    }
}

int lkv_press_parse(const char *spec, struct lkv_press *p) {
    if (!spec || !p)
        LKV_FAIL(LKV_ERR_INVALID, "press spec: NULL argument");
    memset(p, 0, sizeof *p);
    size_t len = strlen(spec);
    if (len == 0)
        LKV_FAIL(LKV_ERR_INVALID, "press spec: empty (use 'full' for the full cache)");
    if (len > 1000)
        LKV_FAIL(LKV_ERR_INVALID, "press spec: longer than 1000 characters");
    char buf[1024];
    memcpy(buf, spec, len + 1);
    char *save = NULL;
    for (char *part = strtok_r(buf, "+", &save); part; part = strtok_r(NULL, "+", &save)) {
        if (p->n_stages == LKV_PRESS_MAX_STAGES)
            LKV_FAIL(LKV_ERR_INVALID, "press spec: more than %d stages", LKV_PRESS_MAX_STAGES);
        LKV_TRY(parse_stage(part, &p->stage[p->n_stages]));
        p->n_stages++;
    }
    if (p->n_stages == 0)
        LKV_FAIL(LKV_ERR_INVALID, "press spec: no policy in '%s'", spec);
    /* at most one stage per class; 'full' only alone */
    for (int i = 0; i < p->n_stages; i++) {
        const lkv_press_method *a = p->stage[i].method;
        if (a->cls == LKV_PC_NONE && p->n_stages > 1)
            LKV_FAIL(LKV_ERR_INVALID, "press spec: 'full' cannot be combined with other policies");
        for (int j = i + 1; j < p->n_stages; j++)
            if (p->stage[j].method->cls == a->cls)
                LKV_FAIL(LKV_ERR_INVALID,
                         "press spec: '%s' and '%s' both %s; combine at most one of each kind "
                         "(eviction + quantization + selection)",
                         a->name, p->stage[j].method->name,
                         a->cls == LKV_PC_EVICT ? "evict tokens"
                         : a->cls == LKV_PC_QUANT ? "quantize pages" : "select pages");
    }
    for (int i = 0; i < p->n_stages; i++)
        if (!p->stage[i].method->implemented)
            LKV_FAIL(LKV_ERR_UNSUPPORTED,
                     "press %s: known method (%s) but not implemented in this build yet",
                     p->stage[i].method->name, p->stage[i].method->summary);
    canonicalise(p);
    return LKV_OK;
}
