/* press.c -- public policy objects: create from a spec, describe, list. */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "press/press.h"

int lkv_press_create(const char *spec, lkv_press **out) {
    if (!out)
        LKV_FAIL(LKV_ERR_INVALID, "press_create: out is NULL");
    *out = NULL;
    lkv_press tmp;
    LKV_TRY(lkv_press_parse(spec, &tmp));
    lkv_press *p = lkv_malloc(sizeof *p);
    if (!p)
        LKV_FAIL(LKV_ERR_NOMEM, "press_create: out of memory");
    *p = tmp;
    *out = p;
    return LKV_OK;
}

void lkv_press_free(lkv_press *p) { lkv_free(p); }

const char *lkv_press_canonical(const lkv_press *p) { return p ? p->canonical : ""; }

int lkv_press_is_full(const lkv_press *p) {
    return !p || (p->n_stages == 1 && p->stage[0].method->cls == LKV_PC_NONE);
}

size_t lkv_press_list(char *buf, size_t cap) {
    int n;
    const lkv_press_method *m = lkv_press_methods(&n);
    size_t used = 0;
    char line[512];
    if (buf && cap)
        buf[0] = '\0';
    for (int pass = 0; pass < 2; pass++) {
        int w = snprintf(line, sizeof line, pass == 0 ? "Implemented policies:\n"
                                                      : "\nKnown, not implemented yet:\n");
        if (buf && used < cap)
            snprintf(buf + used, cap - used, "%s", line);
        used += (size_t)w;
        for (int i = 0; i < n; i++) {
            if (m[i].implemented != (pass == 0))
                continue;
            w = snprintf(line, sizeof line, "  %-20s %s [%s]\n", m[i].name, m[i].summary,
                         m[i].source);
            if (buf && used < cap)
                snprintf(buf + used, cap - used, "%s", line);
            used += (size_t)w;
            for (int j = 0; pass == 0 && j < m[i].n_params; j++) {
                const lkv_press_param *pp = &m[i].params[j];
                char def[64];
                if (pp->def == LKV_PRESS_UNSET)
                    snprintf(def, sizeof def, "unset");
                else if (pp->type == LKV_PT_ENUM) {
                    const char *bar = strchr(pp->choices, '|');
                    snprintf(def, sizeof def, "%.*s",
                             (int)(bar ? (size_t)(bar - pp->choices) : strlen(pp->choices)),
                             pp->choices);
                } else
                    snprintf(def, sizeof def, "%g", pp->def);
                char range[64];
                if (pp->type == LKV_PT_ENUM)
                    snprintf(range, sizeof range, "%s", pp->choices);
                else
                    snprintf(range, sizeof range, "%g..%g", pp->lo, pp->hi);
                w = snprintf(line, sizeof line, "      %-13s = %-8s (%s) %s\n", pp->key, def, range,
                             pp->help);
                if (buf && used < cap)
                    snprintf(buf + used, cap - used, "%s", line);
                used += (size_t)w;
            }
        }
    }
    return used;
}
