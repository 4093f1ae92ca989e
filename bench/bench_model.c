/* bench_model.c -- `longkv bench model`: end-to-end tokens/s of a GGUF model.
 *
 *   prefill P   a fresh context evaluates P prompt tokens (chunks of -b)
 *   decode @C   with C tokens in the cache, one token at a time (--gen steps)
 *
 * The decode contexts come from one prefill of the largest C, truncated down
 * (the cache then holds exactly what a prefill of C would have left). Token
 * ids are a fixed pseudo-random stream of ordinary tokens: speed does not
 * depend on the text. Results go to stdout as a table, or as JSON (--json) for
 * bench/compare_model_llamacpp.py, which runs llama.cpp on the same file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli_model.h"
#include "longkv.h"

static const char *CMD = "longkv bench model";

#define MAX_SIZES 16

static void usage(FILE *f) {
    fprintf(f, "usage: longkv bench model [options]\n\n"
               "  -m MODEL        GGUF file or alias (default smollm2)\n"
               "  -t THREADS      threads (default: the CPUs available)\n"
               "  -b BATCH        prefill chunk (default 256)\n"
               "  --prefill LIST  prompt sizes, comma-separated (default 512,4096)\n"
               "  --decode LIST   contexts for decode (default 512,2048,4096,8192)\n"
               "  --gen N         decode steps per context (default 32)\n"
               "  --kv-type T     f16 | bf16 | f32 (default f16)\n"
               "  --json          one JSON object on stdout instead of the table\n");
}

static int parse_list(const char *s, int *out, int *n) {
    *n = 0;
    while (*s) {
        char *end = NULL;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > (1 << 24) || *n == MAX_SIZES)
            return -1;
        out[(*n)++] = (int)v;
        s = end;
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return *n > 0 ? 0 : -1;
}

static int32_t *token_stream(int n, int n_vocab) {
    int32_t *t = malloc((size_t)n * sizeof(int32_t));
    if (!t)
        return NULL;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int lo = n_vocab > 1000 ? 300 : 0; /* skip special and byte tokens */
    for (int i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = lo + (int32_t)((x >> 33) % (uint64_t)(n_vocab - lo));
    }
    return t;
}

static int cmp_desc(const void *a, const void *b) { return *(const int *)b - *(const int *)a; }

int bench_model(int argc, char **argv) {
    const char *model_arg = "smollm2";
    long threads = cli_default_threads(), batch = 256, gen = 32;
    int prefill[MAX_SIZES] = {512, 4096}, n_prefill = 2;
    int decode[MAX_SIZES] = {512, 2048, 4096, 8192}, n_decode = 4;
    int json = 0;
    lkv_dtype kv_type = LKV_DTYPE_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "%s: %s needs a value (or is unknown)\n", CMD, a);
            return 2;
        }
        i++;
        if (!strcmp(a, "-m")) {
            model_arg = v;
        } else if (!strcmp(a, "-t")) {
            if (cli_parse_int(CMD, a, v, 1, 256, &threads) < 0)
                return 2;
        } else if (!strcmp(a, "-b")) {
            if (cli_parse_int(CMD, a, v, 1, 4096, &batch) < 0)
                return 2;
        } else if (!strcmp(a, "--gen")) {
            if (cli_parse_int(CMD, a, v, 1, 1 << 20, &gen) < 0)
                return 2;
        } else if (!strcmp(a, "--prefill") || !strcmp(a, "--decode")) {
            int is_p = a[2] == 'p';
            if (parse_list(v, is_p ? prefill : decode, is_p ? &n_prefill : &n_decode) < 0) {
                fprintf(stderr, "%s: %s expects sizes like 512,4096\n", CMD, a);
                return 2;
            }
        } else if (!strcmp(a, "--kv-type")) {
            kv_type = !strcmp(v, "f32") ? LKV_DTYPE_F32 : !strcmp(v, "bf16") ? LKV_DTYPE_BF16
                                                                              : LKV_DTYPE_F16;
        } else {
            fprintf(stderr, "%s: unknown option '%s'\n", CMD, a);
            return 2;
        }
    }
    qsort(decode, (size_t)n_decode, sizeof(int), cmp_desc);
    int max_ctx = decode[0] + (int)gen;
    for (int i = 0; i < n_prefill; i++)
        if (prefill[i] > max_ctx)
            max_ctx = prefill[i];

    int status = 1;
    lkv_model *m = cli_load_model(CMD, model_arg);
    lkv_threadpool *tp = NULL;
    lkv_ctx *ctx = NULL;
    int32_t *toks = NULL;
    double p_tps[MAX_SIZES] = {0}, d_tps[MAX_SIZES] = {0};
    double p_cpu[MAX_SIZES] = {0}, d_cpu[MAX_SIZES] = {0}; /* CPU seconds per token */
    size_t d_kv[MAX_SIZES] = {0};
    if (!m)
        goto done;
    lkv_model_info info;
    lkv_model_get_info(m, &info);
    if (max_ctx > info.n_ctx_train)
        fprintf(stderr, "%s: note: contexts up to %d exceed the model's training context %d\n",
                CMD, max_ctx, info.n_ctx_train);
    if (lkv_threadpool_create((int)threads, &tp) < 0)
        goto fail;
    lkv_ctx_params cp = lkv_ctx_default_params();
    cp.n_ctx = max_ctx;
    cp.n_batch = (int)batch;
    cp.kv_dtype = kv_type;
    cp.tp = tp;
    if (lkv_ctx_create(m, &cp, &ctx) < 0)
        goto fail;
    toks = token_stream(max_ctx, info.n_vocab);
    if (!toks)
        goto done;

    /* warm-up: touch the weights once */
    if (lkv_ctx_prefill(ctx, toks, 8) < 0)
        goto fail;
    for (int i = 0; i < n_prefill; i++) {
        if (lkv_ctx_reset(ctx) < 0)
            goto fail;
        double t0 = cli_now(), c0 = cli_cpu_now();
        if (lkv_ctx_prefill(ctx, toks, prefill[i]) < 0)
            goto fail;
        double dt = cli_now() - t0;
        p_tps[i] = prefill[i] / dt;
        p_cpu[i] = (cli_cpu_now() - c0) / prefill[i];
        if (!json)
            fprintf(stderr, "  prefill %5d: %8.1f tokens/s\n", prefill[i], p_tps[i]);
    }
    /* one prefill of the largest context, truncated down for the smaller ones */
    if (lkv_ctx_reset(ctx) < 0 || lkv_ctx_prefill(ctx, toks, decode[0]) < 0)
        goto fail;
    for (int i = 0; i < n_decode; i++) {
        if (lkv_ctx_truncate(ctx, decode[i]) < 0)
            goto fail;
        d_kv[i] = lkv_ctx_kv_bytes(ctx);
        double t0 = cli_now(), c0 = cli_cpu_now();
        for (int g = 0; g < gen; g++)
            if (lkv_ctx_decode(ctx, toks[decode[i] + g]) < 0)
                goto fail;
        double dt = cli_now() - t0;
        d_tps[i] = gen / dt;
        d_cpu[i] = (cli_cpu_now() - c0) / gen;
        if (!json)
            fprintf(stderr, "  decode @%5d: %8.1f tokens/s\n", decode[i], d_tps[i]);
        if (lkv_ctx_truncate(ctx, decode[i]) < 0)
            goto fail;
    }

    if (json) {
        printf("{\"engine\": \"longkv\", \"model\": \"%s\", \"threads\": %ld, \"kv_type\": \"%s\", "
               "\"batch\": %ld, \"gen\": %ld, \"prefill\": {",
               info.name, threads, lkv_dtype_name(kv_type), batch, gen);
        for (int i = 0; i < n_prefill; i++)
            printf("%s\"%d\": %.2f", i ? ", " : "", prefill[i], p_tps[i]);
        printf("}, \"decode\": {");
        for (int i = n_decode - 1; i >= 0; i--)
            printf("%s\"%d\": %.2f", i != n_decode - 1 ? ", " : "", decode[i], d_tps[i]);
        printf("}, \"prefill_cpu_s_per_token\": {");
        for (int i = 0; i < n_prefill; i++)
            printf("%s\"%d\": %.6f", i ? ", " : "", prefill[i], p_cpu[i]);
        printf("}, \"decode_cpu_s_per_token\": {");
        for (int i = n_decode - 1; i >= 0; i--)
            printf("%s\"%d\": %.6f", i != n_decode - 1 ? ", " : "", decode[i], d_cpu[i]);
        printf("}, \"kv_bytes\": {");
        for (int i = n_decode - 1; i >= 0; i--)
            printf("%s\"%d\": %zu", i != n_decode - 1 ? ", " : "", decode[i], d_kv[i]);
        printf("}}\n");
    } else {
        printf("model %s (%s), %ld threads, kv %s, prefill chunk %ld, %ld decode steps\n",
               info.name, model_arg, threads, lkv_dtype_name(kv_type), batch, gen);
        printf("%-16s %12s %14s %14s\n", "case", "tokens/s", "cpu ms/token", "kv bytes");
        for (int i = 0; i < n_prefill; i++)
            printf("prefill %-8d %12.1f %14.3f %14s\n", prefill[i], p_tps[i], 1e3 * p_cpu[i], "");
        for (int i = n_decode - 1; i >= 0; i--)
            printf("decode @%-8d %12.1f %14.3f %14zu\n", decode[i], d_tps[i], 1e3 * d_cpu[i],
                   d_kv[i]);
    }
    status = 0;
    goto done;
fail:
    fprintf(stderr, "%s: %s\n", CMD, lkv_last_error());
done:
    free(toks);
    lkv_ctx_free(ctx);
    lkv_threadpool_free(tp);
    lkv_model_free(m);
    return status;
}
