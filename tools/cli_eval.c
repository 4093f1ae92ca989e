/* cli_eval.c -- `longkv eval`: accuracy / memory / speed sweeps over tasks,
 * policies, ratios and context lengths (the logic is lkv_eval_run in
 * src/eval/); this file parses options, finds the texts, writes the outputs
 * (JSON lines streamed row by row, CSV, Markdown, the command line) and runs
 * scripts/plot_results.py for the plots. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_model.h"
#include "longkv.h"

static const char *CMD = "longkv eval";

#define MAX_LIST 64

/* --quick: a small passkey/NIAH sweep with the default model (the README's
 * main command; a few minutes on 2 cores). */
static const char QUICK_TASKS[] = "passkey,niah_single";
static const char QUICK_PRESSES[] = "streamingllm;snapkv;h2o;random";
static const double QUICK_RATIOS[] = {0.5, 0.75};
static const int QUICK_CTX[] = {1024};
static const int QUICK_SAMPLES = 3;

static void usage(FILE *f) {
    fprintf(f,
            "usage: longkv eval --task T[,T...] [-m MODEL] [--press SPEC[;SPEC...]]\n"
            "                   [--ratio R[,R...]] [--ctx N[,N...]] [options]\n"
            "       longkv eval --quick          (passkey + NIAH, 4 policies x 2 ratios, ~minutes)\n\n"
            "  --task T          passkey, niah (= niah_single), niah_multikey,\n"
            "                    niah_multivalue, niah_multiquery, ppl, fidelity,\n"
            "                    agreement (fidelity over the full cache's own greedy\n"
            "                    continuation of --ppl-prefix tokens)\n"
            "  -m MODEL          GGUF file or alias (default smollm2)\n"
            "  --press SPECS     policies separated by ';' (e.g. 'snapkv;streamingllm;h2o').\n"
            "                    The full-cache baseline always runs. A spec without its own\n"
            "                    ratio/budget gets each --ratio; one with it runs as given.\n"
            "  --ratio LIST      fractions of the KV removed (default 0.5)\n"
            "  --ctx LIST        context lengths in tokens (default 1024)\n"
            "  --samples K       samples per (task, ctx, depth) (default 4)\n"
            "  --depths LIST     needle depths in percent (default 50)\n"
            "  --seed S          sample k uses seed S + k (default 0)\n"
            "  --threads N       threads (default: the CPUs available)\n"
            "  --out DIR         output folder (default out/eval-<timestamp>)\n"
            "  --query-aware     let the policies see the question (default: kept out)\n"
            "  --corpus FILE     prose for NIAH haystacks and ppl/fidelity text\n"
            "                    (default data/texts/austen.txt; 'builtin' = a small demo text)\n"
            "  --ppl-prefix N    ppl/fidelity/agreement: tokens prefilled before the\n"
            "                    token-by-token part (default ctx/2)\n"
            "  --ppl-bucket N    ppl: position bucket width (default ctx/8)\n"
            "  --batch N         prefill chunk (default 256)\n"
            "  --no-plots        do not run scripts/plot_results.py\n"
            "  --quick           tasks %s,\n"
            "                    presses '%s',\n"
            "                    ratios 0.5,0.75, ctx 1024, %d samples at depth 50\n"
            "                    (other options given explicitly override these)\n\n"
            "Outputs in DIR: results.jsonl (one row per line, written as rows finish),\n"
            "results.csv, results.md, command.txt and plots/ (PNG + SVG).\n",
            QUICK_TASKS, QUICK_PRESSES, QUICK_SAMPLES);
}

typedef struct eval_opts {
    const char *model, *tasks, *presses, *out, *corpus;
    double ratios[MAX_LIST], depths[MAX_LIST];
    int ctxs[MAX_LIST];
    int n_ratios, n_depths, n_ctxs;
    long samples, threads, ppl_prefix, ppl_bucket, batch;
    uint64_t seed;
    int query_aware, quick, no_plots;
} eval_opts;

static int parse_double_list(const char *opt, const char *s, double lo, double hi, double *out,
                             int *n) {
    char buf[1024];
    if (strlen(s) >= sizeof buf) {
        fprintf(stderr, "%s: %s: list too long\n", CMD, opt);
        return -1;
    }
    strcpy(buf, s);
    *n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (*n >= MAX_LIST) {
            fprintf(stderr, "%s: %s: more than %d values\n", CMD, opt, MAX_LIST);
            return -1;
        }
        if (cli_parse_float(CMD, opt, t, lo, hi, &out[*n]) < 0)
            return -1;
        (*n)++;
    }
    if (*n == 0) {
        fprintf(stderr, "%s: %s: empty list\n", CMD, opt);
        return -1;
    }
    return 0;
}

static int parse_int_list(const char *opt, const char *s, long lo, long hi, int *out, int *n) {
    char buf[1024];
    if (strlen(s) >= sizeof buf) {
        fprintf(stderr, "%s: %s: list too long\n", CMD, opt);
        return -1;
    }
    strcpy(buf, s);
    *n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        long v;
        size_t tl = strlen(t);
        long mult = 1;
        if (tl > 1 && (t[tl - 1] == 'k' || t[tl - 1] == 'K')) {
            t[tl - 1] = '\0';
            mult = 1024;
        }
        if (*n >= MAX_LIST) {
            fprintf(stderr, "%s: %s: more than %d values\n", CMD, opt, MAX_LIST);
            return -1;
        }
        if (cli_parse_int(CMD, opt, t, lo / mult, hi / mult, &v) < 0)
            return -1;
        out[(*n)++] = (int)(v * mult);
    }
    if (*n == 0) {
        fprintf(stderr, "%s: %s: empty list\n", CMD, opt);
        return -1;
    }
    return 0;
}

/* Returns 0 ok, 1 --help, -1 usage error (printed). */
static int parse_args(int argc, char **argv, eval_opts *o) {
    memset(o, 0, sizeof *o);
    o->model = "smollm2";
    o->threads = cli_default_threads();
    o->samples = -1;
    o->batch = 256;
    int have_ratio = 0, have_ctx = 0, have_depth = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            return 1;
        if (!strcmp(a, "--query-aware")) {
            o->query_aware = 1;
            continue;
        }
        if (!strcmp(a, "--quick")) {
            o->quick = 1;
            continue;
        }
        if (!strcmp(a, "--no-plots")) {
            o->no_plots = 1;
            continue;
        }
        if (!val) {
            fprintf(stderr, "%s: %s needs a value (or is unknown)\n", CMD, a);
            return -1;
        }
        i++;
        if (!strcmp(a, "--task") || !strcmp(a, "--tasks")) {
            o->tasks = val;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            o->model = val;
        } else if (!strcmp(a, "--press")) {
            o->presses = val;
        } else if (!strcmp(a, "--ratio") || !strcmp(a, "--ratios")) {
            if (parse_double_list(a, val, 0.0, 0.99, o->ratios, &o->n_ratios) < 0)
                return -1;
            have_ratio = 1;
        } else if (!strcmp(a, "--ctx")) {
            if (parse_int_list(a, val, 64, 1 << 20, o->ctxs, &o->n_ctxs) < 0)
                return -1;
            have_ctx = 1;
        } else if (!strcmp(a, "--depths") || !strcmp(a, "--depth")) {
            if (parse_double_list(a, val, 0.0, 100.0, o->depths, &o->n_depths) < 0)
                return -1;
            have_depth = 1;
        } else if (!strcmp(a, "--samples")) {
            if (cli_parse_int(CMD, a, val, 1, 100000, &o->samples) < 0)
                return -1;
        } else if (!strcmp(a, "--seed")) {
            char *end = NULL;
            errno = 0;
            unsigned long long s = strtoull(val, &end, 10);
            if (!*val || *end || val[0] == '-' || errno) {
                fprintf(stderr, "%s: --seed expects a non-negative integer, got '%s'\n", CMD,
                        val);
                return -1;
            }
            o->seed = s;
        } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
            if (cli_parse_int(CMD, a, val, 1, 256, &o->threads) < 0)
                return -1;
        } else if (!strcmp(a, "--out") || !strcmp(a, "-o")) {
            o->out = val;
        } else if (!strcmp(a, "--corpus")) {
            o->corpus = val;
        } else if (!strcmp(a, "--ppl-prefix")) {
            if (cli_parse_int(CMD, a, val, 1, 1 << 20, &o->ppl_prefix) < 0)
                return -1;
        } else if (!strcmp(a, "--ppl-bucket")) {
            if (cli_parse_int(CMD, a, val, 1, 1 << 20, &o->ppl_bucket) < 0)
                return -1;
        } else if (!strcmp(a, "--batch") || !strcmp(a, "-b")) {
            if (cli_parse_int(CMD, a, val, 1, 4096, &o->batch) < 0)
                return -1;
        } else {
            fprintf(stderr, "%s: unknown option '%s'\n", CMD, a);
            return -1;
        }
    }
    if (o->quick) {
        if (!o->tasks)
            o->tasks = QUICK_TASKS;
        if (!o->presses)
            o->presses = QUICK_PRESSES;
        if (!have_ratio) {
            o->n_ratios = 2;
            o->ratios[0] = QUICK_RATIOS[0];
            o->ratios[1] = QUICK_RATIOS[1];
        }
        if (!have_ctx) {
            o->n_ctxs = 1;
            o->ctxs[0] = QUICK_CTX[0];
        }
        if (o->samples < 0)
            o->samples = QUICK_SAMPLES;
    }
    if (!o->tasks) {
        fprintf(stderr, "%s: --task is required (or --quick)\n", CMD);
        return -1;
    }
    if (!have_ratio && !o->quick) {
        o->n_ratios = 1;
        o->ratios[0] = 0.5;
    }
    if (!o->n_ctxs) {
        o->n_ctxs = 1;
        o->ctxs[0] = 1024;
    }
    if (!have_depth) {
        o->n_depths = 1;
        o->depths[0] = 50.0;
    }
    if (o->samples < 0)
        o->samples = 4;
    return 0;
}

/* mkdir -p */
static int make_dirs(const char *path) {
    char buf[4096];
    if (strlen(path) >= sizeof buf)
        return -1;
    strcpy(buf, path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0777) < 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(buf, 0777) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* The repo root: the executable's folder and its parents, then $LONGKV_ROOT,
 * then ".", the first that holds `rel`. Writes root/rel to out. */
static int find_in_repo(const char *rel, char *out, size_t cap) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        for (int up = 0; up < 4; up++) {
            char *slash = strrchr(exe, '/');
            if (!slash)
                break;
            *slash = '\0';
            int w = snprintf(out, cap, "%s/%s", exe[0] ? exe : "", rel);
            if (w > 0 && (size_t)w < cap && access(out, R_OK) == 0)
                return 0;
        }
    }
    const char *root = getenv("LONGKV_ROOT");
    if (root && *root) {
        int w = snprintf(out, cap, "%s/%s", root, rel);
        if (w > 0 && (size_t)w < cap && access(out, R_OK) == 0)
            return 0;
    }
    int w = snprintf(out, cap, "./%s", rel);
    if (w > 0 && (size_t)w < cap && access(out, R_OK) == 0)
        return 0;
    return -1;
}

static int needs_corpus(const char *tasks) {
    return strstr(tasks, "niah") || strstr(tasks, "ppl") || strstr(tasks, "fidelity") ||
           strstr(tasks, "agreement");
}

static lkv_corpus *load_corpus(const char *arg) {
    lkv_corpus *c = NULL;
    int rc;
    if (arg && !strcmp(arg, "builtin")) {
        rc = lkv_corpus_builtin(&c);
    } else if (arg) {
        rc = lkv_corpus_load(arg, &c);
    } else {
        char path[4096];
        const char *dd = getenv("LONGKV_DATA_DIR");
        int found = 0;
        if (dd && *dd) {
            snprintf(path, sizeof path, "%s/texts/austen.txt", dd);
            found = access(path, R_OK) == 0;
        }
        if (!found && find_in_repo("data/texts/austen.txt", path, sizeof path) < 0) {
            fprintf(stderr,
                    "%s: data/texts/austen.txt not found; run scripts/get_texts.sh (or pass "
                    "--corpus FILE, or --corpus builtin for a small demo text)\n",
                    CMD);
            return NULL;
        }
        rc = lkv_corpus_load(path, &c);
    }
    if (rc < 0) {
        fprintf(stderr, "%s: cannot load the corpus: %s\n", CMD, lkv_last_error());
        return NULL;
    }
    return c;
}

/* Runs python3 scripts/plot_results.py JSONL -o DIR; returns its status. */
static int run_plots(const char *jsonl, const char *dir) {
    char script[4096];
    if (find_in_repo("scripts/plot_results.py", script, sizeof script) < 0) {
        fprintf(stderr, "%s: scripts/plot_results.py not found; no plots\n", CMD);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execlp("python3", "python3", script, jsonl, "-o", dir, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int write_command(const char *dir, int argc, char **argv) {
    char path[4200];
    snprintf(path, sizeof path, "%.4000s/command.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "longkv");
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int quote = strpbrk(a, " ;'\"$*") != NULL;
        fprintf(f, quote ? " '%s'" : " %s", a);
    }
    fprintf(f, "\n");
    return fclose(f);
}

int cli_eval(int argc, char **argv) {
    eval_opts o;
    int prc = parse_args(argc, argv, &o);
    if (prc != 0) {
        usage(prc > 0 ? stdout : stderr);
        return prc > 0 ? 0 : 2;
    }
    int status = 1;
    lkv_model *m = NULL;
    lkv_threadpool *tp = NULL;
    lkv_corpus *corpus = NULL;
    lkv_report *rep = NULL;
    char out_dir[4096], path[4200];

    if (o.out) {
        snprintf(out_dir, sizeof out_dir, "%s", o.out);
    } else {
        time_t t = time(NULL);
        struct tm tmv;
        gmtime_r(&t, &tmv);
        strftime(out_dir, sizeof out_dir, "out/eval-%Y%m%d-%H%M%S", &tmv);
    }
    if (needs_corpus(o.tasks) || o.corpus) {
        corpus = load_corpus(o.corpus);
        if (!corpus)
            goto done;
    }
    m = cli_load_model(CMD, o.model);
    if (!m)
        goto done;
    if (lkv_threadpool_create((int)o.threads, &tp) < 0) {
        fprintf(stderr, "%s: %s\n", CMD, lkv_last_error());
        goto done;
    }
    lkv_model_info mi;
    lkv_model_get_info(m, &mi);
    /* the model column: the file's name without folder and ".gguf" */
    char model_name[256], mpath[4096];
    if (cli_resolve_model(CMD, o.model, mpath, sizeof mpath) < 0)
        goto done;
    const char *slash = strrchr(mpath, '/');
    snprintf(model_name, sizeof model_name, "%.250s", slash ? slash + 1 : mpath);
    size_t mnl = strlen(model_name);
    if (mnl > 5 && !strcmp(model_name + mnl - 5, ".gguf"))
        model_name[mnl - 5] = '\0';

    lkv_eval_params ep = lkv_eval_default_params();
    ep.model = m;
    ep.model_name = model_name;
    ep.tasks = o.tasks;
    ep.presses = o.presses;
    ep.ratios = o.ratios;
    ep.n_ratios = o.n_ratios;
    ep.ctxs = o.ctxs;
    ep.n_ctxs = o.n_ctxs;
    ep.depths = o.depths;
    ep.n_depths = o.n_depths;
    ep.samples = (int)o.samples;
    ep.seed = o.seed;
    ep.query_aware = o.query_aware;
    ep.corpus = corpus;
    ep.ppl_prefix = (int)o.ppl_prefix;
    ep.ppl_bucket = (int)o.ppl_bucket;
    ep.n_batch = (int)o.batch;
    ep.tp = tp;
    int64_t runs = lkv_eval_count_runs(&ep);
    if (runs < 0) {
        fprintf(stderr, "%s: %s\n", CMD, lkv_last_error());
        status = 2;
        goto done;
    }
    for (int i = 0; i < o.n_ctxs; i++)
        if (o.ctxs[i] > mi.n_ctx_train)
            fprintf(stderr, "%s: warning: --ctx %d is beyond the model's training context %d\n",
                    CMD, o.ctxs[i], mi.n_ctx_train);
    if (make_dirs(out_dir) < 0) {
        fprintf(stderr, "%s: cannot create '%s': %s\n", CMD, out_dir, strerror(errno));
        goto done;
    }
    if (write_command(out_dir, argc, argv) < 0)
        fprintf(stderr, "%s: cannot write %s/command.txt\n", CMD, out_dir);
    if (lkv_report_create(&rep) < 0)
        goto done;
    snprintf(path, sizeof path, "%s/results.jsonl", out_dir);
    unlink(path); /* a fresh run in a reused folder replaces its rows */
    if (lkv_report_stream_jsonl(rep, path) < 0) {
        fprintf(stderr, "%s: %s\n", CMD, lkv_last_error());
        goto done;
    }
    fprintf(stderr, "%s: %s, tasks %s, %lld runs, %ld threads -> %s/\n", CMD, model_name,
            o.tasks, (long long)runs, o.threads, out_dir);
    int rc = lkv_eval_run(&ep, rep);
    if (rc < 0)
        fprintf(stderr, "%s: stopped: %s (%s); the rows measured so far are kept\n", CMD,
                lkv_last_error(), lkv_strerror(rc));
    status = rc < 0 ? 1 : 0;
    snprintf(path, sizeof path, "%s/results.csv", out_dir);
    if (lkv_report_write(rep, LKV_REPORT_CSV, path) < 0)
        status = 1;
    snprintf(path, sizeof path, "%s/results.md", out_dir);
    if (lkv_report_write(rep, LKV_REPORT_MARKDOWN, path) < 0)
        status = 1;
    if (!o.no_plots && lkv_report_n_rows(rep) > 0) {
        char jsonl[4200], plots[4200];
        snprintf(jsonl, sizeof jsonl, "%s/results.jsonl", out_dir);
        snprintf(plots, sizeof plots, "%s/plots", out_dir);
        if (run_plots(jsonl, plots) != 0)
            fprintf(stderr, "%s: plotting failed (needs python3 with matplotlib); the tables "
                            "are written\n",
                    CMD);
    }
    fprintf(stderr, "%s: %d rows in %s/results.{jsonl,csv,md}\n", CMD, lkv_report_n_rows(rep),
            out_dir);
done:
    lkv_report_free(rep);
    lkv_threadpool_free(tp);
    lkv_model_free(m);
    lkv_corpus_free(corpus);
    return status;
}
