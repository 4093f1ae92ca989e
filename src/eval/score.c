/* score.c -- answer extraction and scoring (passkey exact match, RULER string
 * match). */
#include <math.h>
#include <string.h>

#include "eval/eval.h"

static int is_digit(char c) { return c >= '0' && c <= '9'; }

int lkv_extract_passkey(const char *text, char out[6]) {
    if (out)
        out[0] = '\0';
    if (!text || !out)
        return 0;
    const char *s = text;
    while (*s) {
        if (!is_digit(*s)) {
            s++;
            continue;
        }
        const char *run = s;
        while (is_digit(*s))
            s++;
        if (s - run == 5) {
            memcpy(out, run, 5);
            out[5] = '\0';
            return 1;
        }
    }
    return 0;
}

double lkv_score_passkey(const char *output, const char *expected) {
    char got[6];
    if (!expected || !lkv_extract_passkey(output, got))
        return 0.0;
    return strcmp(got, expected) == 0 ? 1.0 : 0.0;
}

static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c; }

/* ASCII case-insensitive substring search. */
static int contains_nocase(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    if (n == 0)
        return 1;
    for (const char *h = hay; *h; h++) {
        size_t i = 0;
        while (i < n && h[i] && lower(h[i]) == lower(needle[i]))
            i++;
        if (i == n)
            return 1;
        if (!h[i])
            return 0; /* the rest of hay is shorter than needle */
    }
    return 0;
}

double lkv_score_string_match(const char *output, const char *const *expected, int n) {
    if (!output || !expected || n <= 0)
        return 0.0;
    int hit = 0;
    for (int i = 0; i < n; i++)
        if (expected[i] && contains_nocase(output, expected[i]))
            hit++;
    return (double)hit / (double)n;
}

double lkv_task_score(const lkv_task_sample *s, const char *output) {
    if (!s || s->n_expected <= 0)
        return NAN;
    if (strcmp(s->task, "passkey") == 0)
        return lkv_score_passkey(output, s->expected[0]);
    const char *exp[LKV_TASK_MAX_NEEDLES];
    int n = s->n_expected < LKV_TASK_MAX_NEEDLES ? s->n_expected : LKV_TASK_MAX_NEEDLES;
    for (int i = 0; i < n; i++)
        exp[i] = s->expected[i];
    return lkv_score_string_match(output, exp, n);
}
