/* cli_perplexity.c -- `longkv perplexity`: perplexity of a text file, evaluated
 * through the cache the way generation uses it.
 *
 * The text is tokenized once and cut into windows of CTX tokens. Each window
 * starts from an empty context: a first chunk of BATCH tokens is prefilled (with
 * the logits of every token), then the rest is evaluated token after token,
 * each token attending to everything before it in the cache. Every token after
 * the first of a window is scored: ppl = exp(mean(-log p(token | prefix))).
 * --dump FILE writes one line per scored token ("index target argmax logprob")
 * for comparisons with other engines (tests/reference/compare_llamacpp.py);
 * --dump-logits FILE writes every scored token's whole logit row (f32).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_model.h"
#include "longkv.h"

static const char *CMD = "longkv perplexity";

static void usage(FILE *f) {
    fprintf(f,
            "usage: longkv perplexity -m MODEL -f TEXTFILE [options]\n\n"
            "  -m MODEL         GGUF file, or the alias 'smollm2'\n"
            "  -f TEXTFILE      the text to score\n"
            "  -c CTX           window in tokens; the text is cut into windows (default 2048)\n"
            "  -t THREADS       threads (default: the CPUs available)\n"
            "  -b BATCH         first prefill chunk of each window (default 256); the rest\n"
            "                   of the window is evaluated one token at a time\n"
            "  --max-tokens N   score only the first N tokens of the text\n"
            "  --max-windows N  stop after N windows\n"
            "  --kv-type T      f16 | bf16 | f32 (default f16)\n"
            "  --dump FILE      per-token lines: index target argmax logprob\n"
            "  --dump-logits FILE  every scored token's logits, f32 little-endian [scored][V]\n"
            "  --press SPEC     KV compression policy active while decoding (see `longkv presses`)\n");
}

typedef struct ppl_opts {
    const char *model, *file, *dump, *dump_logits, *press;
    long n_ctx, threads, batch, max_tokens, max_windows;
    lkv_dtype kv_type;
} ppl_opts;

static int parse_args(int argc, char **argv, ppl_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_ctx = 2048;
    o->threads = cli_default_threads();
    o->batch = 256;
    o->kv_type = LKV_DTYPE_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            return 1;
        if (!val) {
            fprintf(stderr, "%s: %s needs a value (or is unknown)\n", CMD, a);
            return -1;
        }
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            o->model = val;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            o->file = val;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            if (cli_parse_int(CMD, a, val, 2, 1 << 24, &o->n_ctx) < 0)
                return -1;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (cli_parse_int(CMD, a, val, 1, 256, &o->threads) < 0)
                return -1;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) {
            if (cli_parse_int(CMD, a, val, 1, 4096, &o->batch) < 0)
                return -1;
        } else if (!strcmp(a, "--max-tokens")) {
            if (cli_parse_int(CMD, a, val, 2, 1L << 30, &o->max_tokens) < 0)
                return -1;
        } else if (!strcmp(a, "--max-windows")) {
            if (cli_parse_int(CMD, a, val, 1, 1L << 30, &o->max_windows) < 0)
                return -1;
        } else if (!strcmp(a, "--kv-type")) {
            if (!strcmp(val, "f16"))
                o->kv_type = LKV_DTYPE_F16;
            else if (!strcmp(val, "bf16"))
                o->kv_type = LKV_DTYPE_BF16;
            else if (!strcmp(val, "f32"))
                o->kv_type = LKV_DTYPE_F32;
            else {
                fprintf(stderr, "%s: --kv-type expects f16, bf16 or f32, got '%s'\n", CMD, val);
                return -1;
            }
        } else if (!strcmp(a, "--dump")) {
            o->dump = val;
        } else if (!strcmp(a, "--dump-logits")) {
            o->dump_logits = val;
        } else if (!strcmp(a, "--press")) {
            o->press = val;
        } else {
            fprintf(stderr, "%s: unknown option '%s'\n", CMD, a);
            return -1;
        }
    }
    if (!o->model || !o->file) {
        fprintf(stderr, "%s: -m MODEL and -f TEXTFILE are required\n", CMD);
        return -1;
    }
    if (cli_check_press(CMD, o->press) < 0)
        return -1;
    return 0;
}

/* log p(target) under softmax(logits), and the argmax. */
static double log_prob(const float *logits, int V, int32_t target, int32_t *argmax) {
    float mx = logits[0];
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > mx) {
            mx = logits[i];
            best = i;
        }
    double sum = 0.0;
    for (int i = 0; i < V; i++)
        sum += exp((double)logits[i] - mx);
    *argmax = best;
    return (double)logits[target] - mx - log(sum);
}

typedef struct ppl_state {
    double nll;          /* sum of -log p */
    long scored;         /* tokens scored */
    long agree;          /* argmax == target */
    double t_prefill, t_decode;
    long n_prefill, n_decode;
    FILE *dump;
    FILE *dump_logits;   /* raw f32 rows, or NULL */
    int dump_failed;
    size_t kv_bytes_max;
    int kv_tokens_at_max;
} ppl_state;

static void score(ppl_state *st, const float *logits, int V, long index, int32_t target) {
    int32_t am;
    double lp = log_prob(logits, V, target, &am);
    st->nll -= lp;
    st->scored++;
    st->agree += am == target;
    if (st->dump)
        fprintf(st->dump, "%ld %d %d %.6f\n", index, (int)target, (int)am, lp);
    if (st->dump_logits && fwrite(logits, sizeof(float), (size_t)V, st->dump_logits) != (size_t)V)
        st->dump_failed = 1;
}

/* Scores one window toks[0..n) (starting at text index base). */
static int eval_window(lkv_ctx *ctx, const int32_t *toks, int n, long base, int batch, int V,
                       float *chunk_logits, ppl_state *st) {
    int rc = lkv_ctx_reset(ctx);
    int first = n < batch ? n : batch;
    double t0 = cli_now();
    if (rc == 0)
        /* the first chunk is the prompt: the policy's one-shot step runs after it */
        rc = lkv_ctx_eval_prompt(ctx, toks, first, 0, chunk_logits);
    st->t_prefill += cli_now() - t0;
    st->n_prefill += first;
    if (rc < 0) {
        fprintf(stderr, "%s: prefill failed: %s\n", CMD, lkv_last_error());
        return -1;
    }
    for (int i = 0; i + 1 < first; i++)
        score(st, chunk_logits + (size_t)i * V, V, base + i + 1, toks[i + 1]);
    int tty = isatty(2);
    for (int i = first; i < n; i++) {
        score(st, lkv_ctx_logits(ctx), V, base + i, toks[i]);
        if (i + 1 == n)
            break; /* nothing left to predict */
        double t1 = cli_now();
        rc = lkv_ctx_decode(ctx, toks[i]);
        st->t_decode += cli_now() - t1;
        st->n_decode++;
        if (rc < 0) {
            fprintf(stderr, "%s: decode failed at token %ld: %s\n", CMD, base + i,
                    lkv_last_error());
            return -1;
        }
        if (tty && (i % 64 == 0))
            fprintf(stderr, "\r  %ld tokens scored, ppl %.4f   ", st->scored,
                    exp(st->nll / (double)st->scored));
    }
    size_t kvb = lkv_ctx_kv_bytes(ctx);
    if (kvb > st->kv_bytes_max) {
        st->kv_bytes_max = kvb;
        st->kv_tokens_at_max = lkv_ctx_pos(ctx);
    }
    if (tty)
        fprintf(stderr, "\r%60s\r", "");
    return 0;
}

int cli_perplexity(int argc, char **argv) {
    ppl_opts o;
    int prc = parse_args(argc, argv, &o);
    if (prc != 0) {
        usage(prc > 0 ? stdout : stderr);
        return prc > 0 ? 0 : 2;
    }
    int status = 1;
    char *text = NULL;
    int32_t *toks = NULL;
    float *chunk_logits = NULL;
    lkv_model *m = NULL;
    lkv_threadpool *tp = NULL;
    lkv_ctx *ctx = NULL;
    lkv_press *press = NULL;
    ppl_state st;
    memset(&st, 0, sizeof st);

    size_t len = 0;
    text = cli_read_file(CMD, o.file, &len);
    if (!text)
        goto done;
    m = cli_load_model(CMD, o.model);
    if (!m)
        goto done;
    int n = lkv_tokenize(m, text, len, 1, 0, NULL, 0);
    if (n < 0) {
        fprintf(stderr, "%s: cannot tokenize: %s\n", CMD, lkv_last_error());
        goto done;
    }
    toks = malloc(((size_t)n + 1) * sizeof(int32_t));
    if (!toks || lkv_tokenize(m, text, len, 1, 0, toks, n) != n) {
        fprintf(stderr, "%s: cannot tokenize the text\n", CMD);
        goto done;
    }
    if (o.max_tokens > 0 && n > o.max_tokens)
        n = (int)o.max_tokens;
    if (n < 2) {
        fprintf(stderr, "%s: the text has %d token(s); at least 2 are needed\n", CMD, n);
        status = 2;
        goto done;
    }
    if (lkv_threadpool_create((int)o.threads, &tp) < 0) {
        fprintf(stderr, "%s: %s\n", CMD, lkv_last_error());
        goto done;
    }
    int win = (int)(o.n_ctx < n ? o.n_ctx : n);
    int batch = (int)(o.batch < win ? o.batch : win);
    lkv_ctx_params cp = lkv_ctx_default_params();
    cp.n_ctx = win;
    cp.n_batch = batch;
    cp.kv_dtype = o.kv_type;
    cp.tp = tp;
    if (cli_make_press(CMD, o.press, &press) < 0)
        goto done;
    cp.press = press;
    if (lkv_ctx_create(m, &cp, &ctx) < 0) {
        fprintf(stderr, "%s: %s\n", CMD, lkv_last_error());
        goto done;
    }
    const int V = lkv_model_n_vocab(m);
    chunk_logits = malloc((size_t)batch * (size_t)V * sizeof(float));
    if (!chunk_logits) {
        fprintf(stderr, "%s: out of memory for %d x %d logits\n", CMD, batch, V);
        goto done;
    }
    if (o.dump) {
        st.dump = fopen(o.dump, "w");
        if (!st.dump) {
            fprintf(stderr, "%s: cannot write '%s'\n", CMD, o.dump);
            goto done;
        }
    }
    if (o.dump_logits) {
        st.dump_logits = fopen(o.dump_logits, "wb");
        if (!st.dump_logits) {
            fprintf(stderr, "%s: cannot write '%s'\n", CMD, o.dump_logits);
            goto done;
        }
    }
    int n_windows = 0;
    for (int start = 0; start + 1 < n; start += win) {
        if (o.max_windows > 0 && n_windows >= o.max_windows)
            break;
        int wn = n - start < win ? n - start : win;
        if (wn < 2)
            break;
        if (eval_window(ctx, toks + start, wn, start, batch, V, chunk_logits, &st) < 0)
            goto done;
        n_windows++;
    }
    double ppl = exp(st.nll / (double)st.scored);
    printf("perplexity: %.4f over %ld scored tokens (%d tokens, %d window%s of up to %d, "
           "first %d of each prefilled)\n",
           ppl, st.scored, n, n_windows, n_windows == 1 ? "" : "s", win, batch);
    printf("argmax == next token: %.2f%%\n", 100.0 * (double)st.agree / (double)st.scored);
    fprintf(stderr, "prefill: %ld tokens, %.1f tokens/s; decode: %ld tokens, %.1f tokens/s; "
                    "kv cache: %zu bytes at %d tokens; %ld threads\n",
            st.n_prefill, st.t_prefill > 0 ? st.n_prefill / st.t_prefill : 0.0, st.n_decode,
            st.t_decode > 0 ? st.n_decode / st.t_decode : 0.0, st.kv_bytes_max,
            st.kv_tokens_at_max, o.threads);
    status = 0;
done:
    if (st.dump && fclose(st.dump) != 0) {
        fprintf(stderr, "%s: writing '%s' failed\n", CMD, o.dump);
        status = 1;
    }
    if (st.dump_logits && (fclose(st.dump_logits) != 0 || st.dump_failed)) {
        fprintf(stderr, "%s: writing '%s' failed\n", CMD, o.dump_logits);
        status = 1;
    }
    free(chunk_logits);
    if (ctx && status == 0)
        cli_print_press_report(ctx);
    lkv_ctx_free(ctx);
    lkv_press_free(press);
    lkv_threadpool_free(tp);
    lkv_model_free(m);
    free(toks);
    free(text);
    return status;
}
