/* cli_run.c -- `longkv run`: generate text with a model through the longkv cache.
 *
 * Streams the generated text to stdout as it is produced; at the end prints the
 * prompt and generation speeds and the KV bytes held to stderr. With
 * --prompt-cache FILE the prompt's KV is restored from FILE when it belongs to
 * the same model and prompt prefix (otherwise the file is reported, ignored and
 * rewritten after the prefill). With --press the file holds the compressed
 * cache the policy left after the prompt, and its spec: it is reused only for
 * the same policy and the identical prompt, else reported and recomputed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_model.h"
#include "longkv.h"

static const char *CMD = "longkv run";

static void usage(FILE *f) {
    fprintf(f,
            "usage: longkv run -m MODEL (-p PROMPT | -f PROMPTFILE) [options]\n\n"
            "  -m MODEL            GGUF file, or the alias 'smollm2'\n"
            "  -p PROMPT           prompt text\n"
            "  -f PROMPTFILE       read the prompt from a file\n"
            "  -n N                tokens to generate (default 256; stops early at end of turn)\n"
            "  -c CTX              context size in tokens (default: the model's)\n"
            "  -t THREADS          threads (default: the CPUs available)\n"
            "  -b BATCH            prefill chunk in tokens (default 256)\n"
            "  --chat              wrap the prompt in the model's chat template\n"
            "  --system TEXT       system message for --chat (default: an empty one when the\n"
            "                      template would insert its own default, see below)\n"
            "  --template-system   --chat without --system: keep the system message the\n"
            "                      template inserts (SmolLM2's \"You are a helpful AI\n"
            "                      assistant named SmolLM...\"), as llama.cpp and HF do\n"
            "  --temp T            temperature; 0 = greedy (default 0.8)\n"
            "  --top-p P           nucleus sampling mass (default 0.95)\n"
            "  --top-k K           keep the K most likely tokens; 0 = off (default 0)\n"
            "  --seed S            sampling seed (default: from the clock, printed)\n"
            "  --kv-type T         f16 | bf16 | f32 (default f16)\n"
            "  --prompt-cache FILE save the prompt's KV after prefill / reuse it next time\n"
            "  --press SPEC        KV compression policy, e.g. snapkv:ratio=0.5 (see `longkv presses`)\n"
            "  --question TEXT     appended to the prompt; its tokens are kept out of\n"
            "                      compression (unless the policy has query_aware=1)\n");
}

typedef struct run_opts {
    const char *model, *prompt, *prompt_file, *cache_file, *press, *system, *question;
    long n_predict, n_ctx, threads, batch, top_k;
    double temp, top_p;
    uint64_t seed;
    int seed_set, chat, template_system;
    lkv_dtype kv_type;
} run_opts;

/* Returns 0 ok, 1 --help, -1 usage error (printed). */
static int parse_args(int argc, char **argv, run_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_predict = 256;
    o->threads = cli_default_threads();
    o->batch = 256;
    o->temp = 0.8;
    o->top_p = 0.95;
    o->kv_type = LKV_DTYPE_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VAL()                                                      \
    do {                                                                \
        if (!val) {                                                     \
            fprintf(stderr, "%s: %s needs a value\n", CMD, a);          \
            return -1;                                                  \
        }                                                               \
        i++;                                                            \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            return 1;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            NEED_VAL();
            o->model = val;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            NEED_VAL();
            o->prompt = val;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            NEED_VAL();
            o->prompt_file = val;
        } else if (!strcmp(a, "-n")) {
            NEED_VAL();
            if (cli_parse_int(CMD, a, val, 0, 1 << 24, &o->n_predict) < 0)
                return -1;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            NEED_VAL();
            if (cli_parse_int(CMD, a, val, 1, 1 << 24, &o->n_ctx) < 0)
                return -1;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NEED_VAL();
            if (cli_parse_int(CMD, a, val, 1, 256, &o->threads) < 0)
                return -1;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) {
            NEED_VAL();
            if (cli_parse_int(CMD, a, val, 1, 4096, &o->batch) < 0)
                return -1;
        } else if (!strcmp(a, "--chat")) {
            o->chat = 1;
        } else if (!strcmp(a, "--template-system")) {
            o->template_system = 1;
        } else if (!strcmp(a, "--system")) {
            NEED_VAL();
            o->system = val;
        } else if (!strcmp(a, "--temp")) {
            NEED_VAL();
            if (cli_parse_float(CMD, a, val, 0.0, 100.0, &o->temp) < 0)
                return -1;
        } else if (!strcmp(a, "--top-p")) {
            NEED_VAL();
            if (cli_parse_float(CMD, a, val, 1e-6, 1.0, &o->top_p) < 0)
                return -1;
        } else if (!strcmp(a, "--top-k")) {
            NEED_VAL();
            if (cli_parse_int(CMD, a, val, 0, 1 << 24, &o->top_k) < 0)
                return -1;
        } else if (!strcmp(a, "--seed")) {
            NEED_VAL();
            char *end = NULL;
            unsigned long long s = strtoull(val, &end, 10);
            if (!*val || *end || val[0] == '-') {
                fprintf(stderr, "%s: --seed expects a non-negative integer, got '%s'\n", CMD,
                        val);
                return -1;
            }
            o->seed = s;
            o->seed_set = 1;
        } else if (!strcmp(a, "--kv-type")) {
            NEED_VAL();
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
        } else if (!strcmp(a, "--prompt-cache")) {
            NEED_VAL();
            o->cache_file = val;
        } else if (!strcmp(a, "--question")) {
            NEED_VAL();
            o->question = val;
        } else if (!strcmp(a, "--press")) {
            NEED_VAL();
            o->press = val;
        } else {
            fprintf(stderr, "%s: unknown option '%s'\n", CMD, a);
            return -1;
        }
#undef NEED_VAL
    }
    if (!o->model) {
        fprintf(stderr, "%s: -m MODEL is required\n", CMD);
        return -1;
    }
    if (!o->prompt == !o->prompt_file) {
        fprintf(stderr, "%s: give exactly one of -p PROMPT and -f PROMPTFILE\n", CMD);
        return -1;
    }
    if (cli_check_press(CMD, o->press) < 0)
        return -1;
    return 0;
}

/* Formats msgs[0..n) with the model's chat template and the assistant header.
 * Returns a malloc'ed string or NULL (error printed). */
static char *chat_format(lkv_model *m, const lkv_chat_msg *msgs, int n) {
    int len = lkv_chat_format(m, msgs, n, 1, NULL, 0);
    if (len < 0) {
        fprintf(stderr, "%s: --chat: %s\n", CMD, lkv_last_error());
        return NULL;
    }
    char *buf = malloc((size_t)len + 1);
    if (!buf || lkv_chat_format(m, msgs, n, 1, buf, (size_t)len + 1) != len) {
        fprintf(stderr, "%s: --chat: cannot format the prompt\n", CMD);
        free(buf);
        return NULL;
    }
    return buf;
}

/* Builds the text to tokenize: the prompt, or the chat-formatted prompt.
 *
 * --chat without --system: when the template, given no system message, writes
 * a default one of its own (SmolLM2's "You are a helpful AI assistant named
 * SmolLM, trained by Hugging Face"), we send an empty system message instead,
 * which the template renders as an empty system turn. With SmolLM2-135M's
 * default, greedy decoding answers "What is the capital of France?" with
 * "L'Etoile, la Marseillaise..." and the Italian question in Italian (llama.cpp
 * does the same; the first token is a near-tie: "L" over "The" by 0.2-0.3
 * logit under int8 activations, "The" by 0.08 in float64); with the empty
 * system turn it answers "The capital of France is Paris." A template inserts
 * a default exactly when the prompt it writes for [user] is longer than the one
 * for [empty system, user]; templates without a default (Gemma, plain ChatML)
 * keep getting no system message. --template-system keeps the default.
 * Returns a malloc'ed string or NULL (error printed). */
static char *build_prompt(const run_opts *o, lkv_model *m, const char *prompt) {
    if (!o->chat)
        return strdup(prompt);
    lkv_chat_msg msgs[2] = {{"system", o->system ? o->system : ""}, {"user", prompt}};
    if (o->system)
        return chat_format(m, msgs, 2);
    char *plain = chat_format(m, msgs + 1, 1);
    if (!plain || o->template_system)
        return plain;
    char *empty = chat_format(m, msgs, 2);
    if (!empty || strlen(plain) <= strlen(empty)) {
        free(empty);
        return plain; /* no default system message of the template's own */
    }
    free(plain);
    return empty;
}

/* Tokenizes text into a malloc'ed array; NULL on error (printed). */
static int32_t *tokenize(lkv_model *m, const char *text, int parse_special, int *n_out) {
    size_t len = strlen(text);
    int n = lkv_tokenize(m, text, len, 1, parse_special, NULL, 0);
    if (n < 0) {
        fprintf(stderr, "%s: cannot tokenize the prompt: %s\n", CMD, lkv_last_error());
        return NULL;
    }
    int32_t *ids = malloc(((size_t)n + 1) * sizeof(int32_t));
    if (!ids || lkv_tokenize(m, text, len, 1, parse_special, ids, n) != n) {
        fprintf(stderr, "%s: cannot tokenize the prompt\n", CMD);
        free(ids);
        return NULL;
    }
    *n_out = n;
    return ids;
}

/* Restores the prompt's KV from the cache file when it matches (with a
 * policy: the same policy, prompt and question split; the whole prompt step is
 * restored then). Returns the number of prompt tokens restored (0 when not
 * usable; reported). */
static int load_prompt_cache(lkv_ctx *ctx, const char *path, const int32_t *ids, int n,
                             int n_question) {
    if (access(path, F_OK) != 0)
        return 0;
    int got = 0;
    int rc = lkv_ctx_load_prompt_question(ctx, path, ids, n, n_question, &got);
    if (rc < 0) {
        fprintf(stderr, "%s: prompt cache '%s' not used (%s): %s; recomputing\n", CMD, path,
                lkv_strerror(rc), lkv_last_error());
        lkv_ctx_reset(ctx);
        return 0;
    }
    fprintf(stderr, "%s: prompt cache '%s': reused %d of %d prompt tokens\n", CMD, path, got,
            n);
    return got;
}

static int generate(const run_opts *o, lkv_model *m, lkv_threadpool *tp, const char *prompt) {
    int status = 1;
    char *text = NULL;
    int32_t *ids = NULL;
    lkv_ctx *ctx = NULL;
    lkv_sampler *smp = NULL;
    lkv_press *press = NULL;
    int n_prompt = 0;

    char *joined = NULL;
    if (o->question) {
        size_t lp = strlen(prompt), lq = strlen(o->question);
        joined = malloc(lp + lq + 3);
        if (!joined)
            goto done;
        snprintf(joined, lp + lq + 3, "%s\n\n%s", prompt, o->question);
    }
    text = build_prompt(o, m, joined ? joined : prompt);
    free(joined);
    if (!text)
        goto done;
    ids = tokenize(m, text, o->chat, &n_prompt);
    if (!ids)
        goto done;
    int n_question = 0;
    if (o->question) {
        /* the question and everything after it (chat suffix) is the question part */
        const char *at = NULL;
        for (const char *s2 = strstr(text, o->question); s2; s2 = strstr(s2 + 1, o->question))
            at = s2;
        if (at) {
            int n_prefix = lkv_tokenize(m, text, (size_t)(at - text), 1, o->chat, NULL, 0);
            if (n_prefix >= 0 && n_prefix <= n_prompt)
                n_question = n_prompt - n_prefix;
        }
    }
    if (cli_make_press(CMD, o->press, &press) < 0)
        goto done;
    if (n_prompt == 0) {
        fprintf(stderr, "%s: the prompt is empty\n", CMD);
        status = 2;
        goto done;
    }

    lkv_ctx_params cp = lkv_ctx_default_params();
    cp.n_ctx = (int)o->n_ctx;
    cp.n_batch = (int)o->batch;
    cp.kv_dtype = o->kv_type;
    cp.tp = tp;
    cp.press = press;
    int rc = lkv_ctx_create(m, &cp, &ctx);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", CMD, lkv_last_error());
        goto done;
    }
    if (n_prompt >= lkv_ctx_n_ctx(ctx)) {
        fprintf(stderr, "%s: the prompt has %d tokens, the context only %d (-c)\n", CMD,
                n_prompt, lkv_ctx_n_ctx(ctx));
        status = 2;
        goto done;
    }
    lkv_sampler_params sp = lkv_sampler_default_params();
    sp.temperature = (float)o->temp;
    sp.top_p = (float)o->top_p;
    sp.top_k = (int)o->top_k;
    sp.seed = o->seed;
    if (!o->seed_set && o->temp > 0) {
        sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        fprintf(stderr, "%s: seed %llu\n", CMD, (unsigned long long)sp.seed);
    }
    if (lkv_sampler_create(&sp, &smp) < 0) {
        fprintf(stderr, "%s: %s\n", CMD, lkv_last_error());
        goto done;
    }

    /* prompt: restore what the cache file holds, evaluate the rest */
    int reused =
        o->cache_file ? load_prompt_cache(ctx, o->cache_file, ids, n_prompt, n_question) : 0;
    double t0 = cli_now();
    rc = LKV_OK; /* all of it restored (a policy's prompt step): nothing to evaluate */
    if (reused < n_prompt)
        rc = lkv_ctx_prefill_prompt(ctx, ids + reused, n_prompt - reused,
                                    n_question <= n_prompt - reused ? n_question : 0);
    double t_prompt = cli_now() - t0;
    if (rc < 0) {
        fprintf(stderr, "%s: prefill failed: %s\n", CMD, lkv_last_error());
        goto done;
    }
    if (o->cache_file && reused < n_prompt - 1) {
        rc = lkv_ctx_save_prompt(ctx, o->cache_file, ids, n_prompt);
        if (rc < 0)
            fprintf(stderr, "%s: cannot save the prompt cache '%s': %s\n", CMD, o->cache_file,
                    lkv_last_error());
        else
            fprintf(stderr, "%s: prompt cache saved to '%s' (%d tokens)\n", CMD,
                    o->cache_file, n_prompt);
    }

    /* generation: sample, print, feed back */
    const int V = lkv_model_n_vocab(m);
    int n_gen = 0, n_decoded = 0;
    double t1 = cli_now();
    char piece[256];
    status = 0;
    while (n_gen < o->n_predict) {
        int32_t tok;
        if (lkv_sampler_sample(smp, lkv_ctx_logits(ctx), V, &tok) < 0) {
            fprintf(stderr, "%s: %s\n", CMD, lkv_last_error());
            status = 1;
            break;
        }
        if (lkv_token_is_eog(m, tok))
            break;
        int len = lkv_token_to_piece(m, tok, piece, sizeof piece);
        if (len > 0) {
            fwrite(piece, 1, (size_t)(len < (int)sizeof piece ? len : (int)sizeof piece),
                   stdout);
            fflush(stdout);
        }
        n_gen++;
        if (n_gen >= o->n_predict)
            break;
        if (lkv_ctx_pos(ctx) >= lkv_ctx_n_ctx(ctx)) {
            fprintf(stderr, "\n%s: context full (%d tokens)\n", CMD, lkv_ctx_n_ctx(ctx));
            break;
        }
        rc = lkv_ctx_decode(ctx, tok);
        if (rc < 0) {
            fprintf(stderr, "\n%s: decode failed: %s\n", CMD, lkv_last_error());
            status = 1;
            break;
        }
        n_decoded++;
    }
    double t_gen = cli_now() - t1;
    printf("\n");
    fflush(stdout);

    int evaluated = n_prompt - reused;
    size_t kvb = lkv_ctx_kv_bytes(ctx);
    fprintf(stderr, "\nprompt:     %d tokens (%d reused) in %.3f s, %.1f tokens/s\n", n_prompt,
            reused, t_prompt, t_prompt > 0 ? evaluated / t_prompt : 0.0);
    fprintf(stderr, "generation: %d tokens in %.3f s, %.1f tokens/s (%d decode steps)\n",
            n_gen, t_gen, t_gen > 0 ? n_decoded / t_gen : 0.0, n_decoded);
    fprintf(stderr, "kv cache:   %zu bytes (%.2f MiB) for %d tokens, %ld threads\n", kvb,
            (double)kvb / (1024.0 * 1024.0), lkv_ctx_pos(ctx), o->threads);
    cli_print_press_report(ctx);

done:
    lkv_sampler_free(smp);
    lkv_ctx_free(ctx);
    lkv_press_free(press);
    free(ids);
    free(text);
    return status;
}

int cli_run(int argc, char **argv) {
    run_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0) {
        usage(rc > 0 ? stdout : stderr);
        return rc > 0 ? 0 : 2;
    }
    char *file_prompt = NULL;
    if (o.prompt_file) {
        file_prompt = cli_read_file(CMD, o.prompt_file, NULL);
        if (!file_prompt)
            return 1;
    }
    lkv_model *m = cli_load_model(CMD, o.model);
    if (!m) {
        free(file_prompt);
        return 1;
    }
    lkv_threadpool *tp = NULL;
    if (lkv_threadpool_create((int)o.threads, &tp) < 0) {
        fprintf(stderr, "%s: %s\n", CMD, lkv_last_error());
        lkv_model_free(m);
        free(file_prompt);
        return 1;
    }
    int status = generate(&o, m, tp, file_prompt ? file_prompt : o.prompt);
    lkv_threadpool_free(tp);
    lkv_model_free(m);
    free(file_prompt);
    return status;
}
