/* cli_model.c -- helpers shared by the model commands (see cli_model.h). */
#include "cli_model.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct model_alias {
    const char *name;
    const char *file; /* under the repo root */
} model_alias;

static const model_alias aliases[] = {
    {"smollm2", "models/SmolLM2-135M-Instruct.Q4_1.gguf"},
    {"gemma3", "models/gemma-3-270m-Q4_K_M.gguf"}, /* scripts/get_model.sh --gemma */
};

static int file_exists(const char *path) { return access(path, R_OK) == 0; }

/* Tries root/file; on success writes it to out. */
static int try_root(const char *root, const char *file, char *out, size_t cap) {
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s", root, file);
    if (n < 0 || (size_t)n >= sizeof path || !file_exists(path))
        return 0;
    if ((size_t)n >= cap)
        return 0;
    memcpy(out, path, (size_t)n + 1);
    return 1;
}

int cli_resolve_model(const char *cmd, const char *arg, char *out, size_t cap) {
    const model_alias *a = NULL;
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (!strcmp(arg, aliases[i].name))
            a = &aliases[i];
    if (!a) {
        if (strlen(arg) >= cap) {
            fprintf(stderr, "%s: model path too long\n", cmd);
            return -1;
        }
        strcpy(out, arg);
        return 0;
    }
    /* the executable's folder and up to three parents (build/longkv -> repo) */
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        for (int up = 0; up < 4; up++) {
            char *slash = strrchr(exe, '/');
            if (!slash)
                break;
            *slash = '\0';
            if (try_root(exe[0] ? exe : "/", a->file, out, cap))
                return 0;
        }
    }
    const char *root = getenv("LONGKV_ROOT");
    if (root && *root && try_root(root, a->file, out, cap))
        return 0;
    if (try_root(".", a->file, out, cap))
        return 0;
    fprintf(stderr,
            "%s: model '%s' (%s) was not found next to the executable, under $LONGKV_ROOT "
            "or in the current directory.\n"
            "  Download it with:  bash scripts/get_model.sh%s   (from the longkv repository)\n",
            cmd, a->name, a->file, strcmp(a->name, "gemma3") ? "" : " --gemma");
    return -1;
}

lkv_model *cli_load_model(const char *cmd, const char *arg) {
    char path[4096];
    if (cli_resolve_model(cmd, arg, path, sizeof path) < 0)
        return NULL;
    lkv_model *m = NULL;
    int rc = lkv_model_load(path, NULL, &m);
    if (rc < 0) {
        fprintf(stderr, "%s: cannot load model: %s (%s)\n", cmd, lkv_last_error(),
                lkv_strerror(rc));
        return NULL;
    }
    return m;
}

int cli_parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi,
                  long *out) {
    char *end = NULL;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "%s: %s expects an integer in [%ld, %ld], got '%s'\n", cmd, opt, lo, hi,
                s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_float(const char *cmd, const char *opt, const char *s, double lo, double hi,
                    double *out) {
    char *end = NULL;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !(v >= lo && v <= hi)) {
        fprintf(stderr, "%s: %s expects a number in [%g, %g], got '%s'\n", cmd, opt, lo, hi,
                s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

int cli_make_press(const char *cmd, const char *spec, lkv_press **out) {
    if (out)
        *out = NULL;
    if (!spec)
        return 0;
    lkv_press *p = NULL;
    if (lkv_press_create(spec, &p) < 0) {
        fprintf(stderr, "%s: --press '%s': %s\n(`longkv presses` lists the policies)\n", cmd,
                spec, lkv_last_error());
        return -1;
    }
    if (out && !lkv_press_is_full(p))
        *out = p;
    else
        lkv_press_free(p);
    return 0;
}

int cli_check_press(const char *cmd, const char *spec) { return cli_make_press(cmd, spec, NULL); }

void cli_print_press_report(const lkv_ctx *ctx) {
    size_t need = lkv_ctx_press_report(ctx, NULL, 0);
    if (need == 0)
        return;
    char *buf = malloc(need + 1);
    if (!buf)
        return;
    lkv_ctx_press_report(ctx, buf, need + 1);
    fputs(buf, stderr);
    free(buf);
}

int cli_default_threads(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n >= 1)
            return n > 256 ? 256 : n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

char *cli_read_file(const char *cmd, const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open '%s': %s\n", cmd, path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf || err) {
        fprintf(stderr, "%s: cannot read '%s'%s\n", cmd, path, buf ? "" : ": out of memory");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double cli_cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
