/* bench_attn.c -- `longkv bench attn`: attention kernels against the machine's
 * limits, measured in the same run (DESIGN.md, "Performance model").
 *
 *   decode   1 query token per head against n_kv cached tokens. Memory-bound:
 *            effective GB/s = bytes of K and V read / time, compared with the
 *            measured read bandwidth of the level the K/V lives in.
 *   prefill  n_q = n_kv query tokens, causal (--causal 0: no mask).
 *            Compute-bound: GFLOP/s with flops = 4 * n_q * n_kv * d * H, halved
 *            when causal, compared with the measured f32 FMA peak.
 *
 * Limits: read bandwidth (DRAM, L3, L2 working sets) and the FMA peak, for one
 * thread and for each thread count of the cases, measured before and after the
 * cases; the higher of the two is used, and results are printed at the end.
 * A DRAM-regime decode case is compared instead with DRAM reads of its own
 * size interleaved with its repetitions (lkv_read_probe): the two then share
 * the machine's conditions, which on a shared host swing the bandwidth 2x.
 *
 * Timing: one warm-up call, then repetitions until the case has run for the
 * target time (and at least 3 times, or 2 when one call is longer than the
 * target); best and median are reported and GB/s and GFLOP/s use the best.
 * A warm-up call of 1 s or more is itself the one measurement (a second call
 * would add time, not information).
 *
 * K/V layout: head-major, [Hk][n_max][d] per (shape, dtype), filled once with
 * random data for the largest context; a case with n_kv < n_max reads the first
 * n_kv rows of each head (head_stride = n_max * d).
 *
 * Quantized dtypes (q8, kivi4, kivi2; decode only): per head, codes [n_max][row]
 * and scales encoded from random data in pages of QPAGE tokens (one run per
 * page, as lkv_seq_attend passes them), attended with lkv_attn_runs. GB/s
 * counts the bytes actually read (codes + scales/mins), and the text report
 * ends with the decode time of each dtype relative to f16 for the same case.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "longkv.h"

#define QPAGE 32 /* tokens per page (= KIVI key group) of the quantized decode cases */

#define MAX_LIST 16
#define MAX_REPS 20000
#define LONG_CALL_SECONDS 1.0

typedef struct shape {
    int q_heads, kv_heads, head_dim;
} shape;

typedef struct options {
    int json, quick;
    int progress; /* a progress line on stderr (when it is a terminal) */
    int do_decode, do_prefill;
    int threads[MAX_LIST], n_threads;
    int isa; /* -1: keep the active level */
    int dtypes[MAX_LIST], n_dtypes;
    long ctx[MAX_LIST];
    int n_ctx;
    long nq[MAX_LIST];
    int n_nq;
    shape shapes[MAX_LIST];
    int n_shapes;
    double seconds; /* target time per case */
    int causal;     /* prefill mask */
} options;

/* Measured limits for one thread count. Each is measured twice, before and
 * after the cases, and the higher value is used: other load on the machine
 * can only make a measurement lower, and a limit measured low would inflate
 * every ratio computed from it. */
enum { LIM_DRAM, LIM_L3, LIM_L2, LIM_FMA, LIM_COUNT };
static const char *const lim_name[LIM_COUNT] = {"dram", "l3", "l2", "fma"};

typedef struct limits {
    int threads;
    lkv_threadpool *tp;
    double pass[2][LIM_COUNT]; /* read GB/s or GFLOP/s per measurement; 0 = failed */
    double dram, l3, l2, fma;  /* the higher of the two passes */
    lkv_read_probe *probe;     /* DRAM reads interleaved with the DRAM decode cases (lazy) */
    int probe_failed;          /* its creation failed once: not retried for every case */
} limits;

typedef struct case_result case_result;

typedef struct machine {
    size_t l2_bytes, l3_bytes;   /* per core / shared, from sysfs */
    size_t dram_ws, l3_ws;       /* working sets of the DRAM and L3 measurements */
    size_t l2_ws_per_thread;     /* working set per thread of the L2 measurement */
    limits lim[MAX_LIST + 1];
    int n_lim;
    case_result *results;        /* finished cases, printed at the end */
    int n_results, cap_results;
} machine;

/* ------------------------------------------------------------ helpers */

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Size of the cache of this level from sysfs ("1024K", "32M"), or 0. */
static size_t sysfs_cache_bytes(int level) {
    for (int i = 0; i < 16; i++) {
        char path[128], buf[64];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        int lv = 0;
        int ok = fscanf(f, "%d", &lv) == 1;
        fclose(f);
        if (!ok || lv != level)
            continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
        if ((f = fopen(path, "r"))) {
            ok = fgets(buf, sizeof buf, f) != NULL;
            fclose(f);
            if (ok && !strncmp(buf, "Instruction", 11))
                continue;
        }
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        if (!(f = fopen(path, "r")))
            continue;
        ok = fgets(buf, sizeof buf, f) != NULL;
        fclose(f);
        if (!ok)
            continue;
        char *end;
        unsigned long long v = strtoull(buf, &end, 10);
        if (*end == 'K')
            v <<= 10;
        else if (*end == 'M')
            v <<= 20;
        else if (*end == 'G')
            v <<= 30;
        return (size_t)v;
    }
    return 0;
}

/* Small, fast PRNG for filling buffers (splitmix64). */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* 64-byte aligned allocation (one cache line, one AVX-512 vector). */
static void *alloc64(size_t bytes) {
    return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
}

#define FILL_CHUNK 4096

typedef struct fill_job {
    lkv_dtype dtype;
    void *dst;
    size_t n; /* elements */
    uint64_t seed;
    int failed;
} fill_job;

/* Chunk `task` of the buffer: uniform values in [-1, 1), converted to the
 * dtype. Seeded per chunk, so the data does not depend on the thread count. */
static void fill_task(void *arg, int task, int thread) {
    (void)thread;
    fill_job *j = arg;
    float tmp[FILL_CHUNK];
    size_t i0 = (size_t)task * FILL_CHUNK;
    size_t cnt = j->n - i0 < FILL_CHUNK ? j->n - i0 : FILL_CHUNK;
    uint64_t s = j->seed ^ ((uint64_t)task * 0x632be59bd9b4e019ull);
    for (size_t i = 0; i < cnt; i++)
        tmp[i] = (float)(splitmix64(&s) >> 40) * (2.0f / 16777216.0f) - 1.0f;
    if (lkv_convert_from_f32(j->dtype, (char *)j->dst + i0 * lkv_dtype_size(j->dtype), tmp, cnt) < 0)
        j->failed = 1;
}

/* Fills n elements of dtype at dst with random data, on the pool. Chunks are
 * run in groups so the task count fits in an int for any buffer size. */
static int fill_random(lkv_threadpool *tp, lkv_dtype dtype, void *dst, size_t n, uint64_t seed) {
    size_t chunks = (n + FILL_CHUNK - 1) / FILL_CHUNK;
    const size_t group = (size_t)1 << 20;
    for (size_t c0 = 0; c0 < chunks; c0 += group) {
        size_t nc = chunks - c0 < group ? chunks - c0 : group;
        size_t e0 = c0 * FILL_CHUNK;
        size_t ne = n - e0 < nc * FILL_CHUNK ? n - e0 : nc * FILL_CHUNK;
        fill_job j = {dtype, (char *)dst + e0 * lkv_dtype_size(dtype), ne, seed + c0, 0};
        lkv_threadpool_run(tp, (int)nc, fill_task, &j);
        if (j.failed)
            return -1;
    }
    return 0;
}

static const char *human_bytes(double b, char *buf, size_t cap) {
    if (b >= 1024.0 * 1024 * 1024)
        snprintf(buf, cap, "%.3g GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024)
        snprintf(buf, cap, "%.3g MiB", b / (1024.0 * 1024));
    else
        snprintf(buf, cap, "%.3g KiB", b / 1024.0);
    return buf;
}

/* Writes s as a JSON string literal. */
static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* ------------------------------------------------------------ options */

static void usage(FILE *f) {
    fprintf(f,
            "usage: longkv bench attn [options]\n"
            "\n"
            "Measures the machine's limits (read bandwidth from DRAM, L3 and L2; f32 FMA\n"
            "peak; for 1 thread and for the benchmark's thread counts), then times the\n"
            "attention kernels: decode (1 query token, memory-bound: GB/s) and causal\n"
            "prefill (compute-bound: GFLOP/s), each with its ratio to the matching limit.\n"
            "\n"
            "options:\n"
            "  --json              one JSON object per line (limits, then one per case)\n"
            "  --quick             a subset that runs in about 20 s: f16, n_kv 4k,32k,128k\n"
            "  --threads N[,N..]   thread counts to run the cases with (default: all CPUs)\n"
            "  --isa ref|avx2|avx512|avx512vnni  kernel level (default: the active one, see `longkv info`)\n"
            "  --dtype LIST        K/V types, from f32,f16,bf16,q8,kivi4,kivi2 (quantized: decode\n"
            "                      only, pages of 32 tokens; default: all; --quick: f16)\n"
            "  --ctx LIST          decode n_kv values, 'k' = 1024 (default: 4k,8k,16k,32k,64k,128k)\n"
            "  --nq LIST           prefill n_q = n_kv values (default: 512,4096)\n"
            "  --shape LIST        HxHkxd head configurations (default: 9x3x64,32x8x128)\n"
            "  --op decode|prefill|all   which cases to run (default: all)\n"
            "  --causal 0|1        prefill with the causal mask (default 1) or without\n"
            "  --seconds S         target time per case (default 0.2; --quick: 0.1)\n"
            "  -h, --help          this text\n"
            "\n"
            "Decode regime: 'dram' when K+V is larger than the L3 cache, else 'cache'; a\n"
            "cache case is compared with the L2 bandwidth when K+V fits in the L2 caches of\n"
            "the threads, else with the L3 bandwidth (JSON key 'limit_name'). Limits are\n"
            "measured before and after the cases and the higher value is used. A dram case\n"
            "is compared with DRAM reads of its own size interleaved with its repetitions\n"
            "(best of each; JSON 'dram_paired', the run-wide figure is 'dram_run'): on a\n"
            "shared machine the bandwidth left to one program moves by 2x within seconds.\n"
            "Results are printed at the end (progress goes to stderr when it is a terminal).\n");
}

/* Splits a comma-separated list; calls parse_one on each item. */
static int parse_list(const char *s, int max, int (*parse_one)(const char *item, void *out, int i),
                      void *out, int *count) {
    char buf[512];
    if (strlen(s) >= sizeof buf)
        return -1;
    strcpy(buf, s);
    int n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n >= max || parse_one(tok, out, n) < 0)
            return -1;
        n++;
    }
    if (n == 0)
        return -1;
    *count = n;
    return 0;
}

static int parse_threads(const char *s, void *out, int i) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 1 || v > 256)
        return -1;
    ((int *)out)[i] = (int)v;
    return 0;
}

static int parse_tokens(const char *s, void *out, int i) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s)
        return -1;
    if (*end == 'k' || *end == 'K') {
        v *= 1024;
        end++;
    }
    if (*end || v < 1 || v > (1L << 24))
        return -1;
    ((long *)out)[i] = v;
    return 0;
}

static int parse_dtype(const char *s, void *out, int i) {
    for (int d = 0; d < LKV_DTYPE_COUNT_; d++)
        if (!strcmp(s, lkv_dtype_name((lkv_dtype)d))) {
            ((int *)out)[i] = d;
            return 0;
        }
    return -1;
}

static int parse_shape(const char *s, void *out, int i) {
    shape sh;
    char tail;
    if (sscanf(s, "%dx%dx%d%c", &sh.q_heads, &sh.kv_heads, &sh.head_dim, &tail) != 3)
        return -1;
    if (sh.q_heads < 1 || sh.kv_heads < 1 || sh.q_heads % sh.kv_heads || sh.q_heads > 1024 ||
        sh.head_dim < 8 || sh.head_dim > 256 || sh.head_dim % 8)
        return -1;
    ((shape *)out)[i] = sh;
    return 0;
}

static int parse_isa(const char *s) {
    for (int i = LKV_ISA_REF; i <= LKV_ISA_AVX512VNNI; i++)
        if (!strcmp(s, lkv_isa_name((lkv_isa)i)))
            return i;
    return -1;
}

/* Returns 0, or 2 after printing a usage error; 1 means --help was printed. */
static int parse_options(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    o->do_decode = o->do_prefill = 1;
    o->isa = -1;
    o->causal = 1;
    int set_dtype = 0, set_ctx = 0, set_nq = 0, set_shape = 0, set_threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        char name[32];
        const char *eq = strchr(a, '=');
        if (eq && (size_t)(eq - a) < sizeof name) {
            memcpy(name, a, (size_t)(eq - a));
            name[eq - a] = '\0';
            val = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", a);
        }
        if (!strcmp(name, "-h") || !strcmp(name, "--help")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(name, "--json")) {
            o->json = 1;
            continue;
        }
        if (!strcmp(name, "--quick")) {
            o->quick = 1;
            continue;
        }
        static const char *const with_value[] = {"--threads", "--isa", "--dtype", "--ctx", "--nq",
                                                 "--shape", "--op", "--seconds", "--causal"};
        int known = 0;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++)
            known |= !strcmp(name, with_value[k]);
        if (!known) {
            fprintf(stderr, "longkv bench attn: unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "longkv bench attn: %s needs a value\n", name);
                return 2;
            }
            val = argv[++i];
        }
        int bad = 0;
        if (!strcmp(name, "--threads")) {
            bad = parse_list(val, MAX_LIST, parse_threads, o->threads, &o->n_threads);
            set_threads = 1;
        } else if (!strcmp(name, "--isa")) {
            bad = (o->isa = parse_isa(val)) < 0;
        } else if (!strcmp(name, "--dtype")) {
            bad = parse_list(val, MAX_LIST, parse_dtype, o->dtypes, &o->n_dtypes);
            set_dtype = 1;
        } else if (!strcmp(name, "--ctx")) {
            bad = parse_list(val, MAX_LIST, parse_tokens, o->ctx, &o->n_ctx);
            set_ctx = 1;
        } else if (!strcmp(name, "--nq")) {
            bad = parse_list(val, MAX_LIST, parse_tokens, o->nq, &o->n_nq);
            set_nq = 1;
        } else if (!strcmp(name, "--shape")) {
            bad = parse_list(val, MAX_LIST, parse_shape, o->shapes, &o->n_shapes);
            set_shape = 1;
        } else if (!strcmp(name, "--op")) {
            o->do_decode = !strcmp(val, "decode") || !strcmp(val, "all");
            o->do_prefill = !strcmp(val, "prefill") || !strcmp(val, "all");
            bad = !o->do_decode && !o->do_prefill;
        } else if (!strcmp(name, "--causal")) {
            bad = strcmp(val, "0") && strcmp(val, "1");
            o->causal = !strcmp(val, "1");
        } else if (!strcmp(name, "--seconds")) {
            char *end;
            o->seconds = strtod(val, &end);
            bad = *end || !(o->seconds > 0 && o->seconds <= 60);
        }
        if (bad) {
            fprintf(stderr, "longkv bench attn: bad value '%s' for %s (see --help)\n", val, name);
            return 2;
        }
    }
    if (!set_threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o->threads[0] = n < 1 ? 1 : n > 256 ? 256 : (int)n;
        o->n_threads = 1;
    }
    if (!set_dtype) {
        if (o->quick) {
            o->dtypes[0] = LKV_DTYPE_F16;
            o->n_dtypes = 1;
        } else {
            for (int d = 0; d < LKV_DTYPE_COUNT_; d++)
                o->dtypes[d] = d;
            o->n_dtypes = LKV_DTYPE_COUNT_;
        }
    }
    if (!set_ctx) {
        static const long full[] = {4096, 8192, 16384, 32768, 65536, 131072};
        static const long quick[] = {4096, 32768, 131072};
        const long *src = o->quick ? quick : full;
        o->n_ctx = o->quick ? 3 : 6;
        memcpy(o->ctx, src, (size_t)o->n_ctx * sizeof(long));
    }
    if (!set_nq) {
        o->nq[0] = 512;
        o->nq[1] = 4096;
        o->n_nq = 2;
    }
    if (!set_shape) {
        o->shapes[0] = (shape){9, 3, 64};   /* SmolLM2-135M */
        o->shapes[1] = (shape){32, 8, 128}; /* Llama-3-8B class */
        o->n_shapes = 2;
    }
    if (o->seconds == 0)
        o->seconds = o->quick ? 0.1 : 0.2;
    o->progress = isatty(STDERR_FILENO);
    return 0;
}

/* ------------------------------------------------------ machine limits */

static limits *limits_for(machine *m, int threads) {
    for (int i = 0; i < m->n_lim; i++)
        if (m->lim[i].threads == threads)
            return &m->lim[i];
    return NULL;
}

static void print_limits_json(const machine *m) {
    for (int i = 0; i < m->n_lim; i++) {
        const limits *L = &m->lim[i];
        for (int k = 0; k < LIM_COUNT; k++) {
            double v = k == LIM_DRAM ? L->dram : k == LIM_L3 ? L->l3 : k == LIM_L2 ? L->l2 : L->fma;
            const char *unit = k == LIM_FMA ? "gflops" : "gbps";
            printf("{\"op\":\"limit\",\"kind\":\"%s\"", k == LIM_FMA ? "fma" : "read");
            if (k != LIM_FMA) {
                size_t bytes = k == LIM_DRAM ? m->dram_ws
                               : k == LIM_L3 ? m->l3_ws
                                             : m->l2_ws_per_thread * (size_t)L->threads;
                printf(",\"level\":\"%s\",\"regime\":\"%s\",\"bytes\":%zu", lim_name[k],
                       k == LIM_DRAM ? "dram" : "cache", bytes);
            }
            printf(",\"threads\":%d,\"isa\":\"%s\",\"%s\":%.4g,\"%s_before\":%.4g,"
                   "\"%s_after\":%.4g}\n",
                   L->threads, lkv_isa_name(lkv_cpu_isa()), unit, v, unit, L->pass[0][k], unit,
                   L->pass[1][k]);
        }
    }
}

/* Measures every limit for every thread count (pass 0: before the cases, 1:
 * after) and keeps the higher value. Returns the number of failures (printed). */
static int measure_limits(machine *m, const options *o, int pass) {
    double secs = o->quick ? 0.1 : 0.2;
    int failures = 0;
    for (int i = 0; i < m->n_lim; i++) {
        limits *L = &m->lim[i];
        int n = L->threads;
        double *v = L->pass[pass];
        size_t bytes[3] = {m->dram_ws, m->l3_ws, m->l2_ws_per_thread * (size_t)n};
        for (int k = 0; k < LIM_COUNT; k++) {
            if (o->progress)
                fprintf(stderr, "\r  measuring %s, %d thread(s) ...     ", lim_name[k], n);
            int rc = k == LIM_FMA ? lkv_measure_fma_peak(secs, L->tp, &v[k])
                                  : lkv_measure_read_bandwidth(bytes[k], secs, L->tp, &v[k]);
            if (o->progress)
                fprintf(stderr, "\r%*s\r", 60, "");
            if (rc < 0) {
                fprintf(stderr, "longkv bench attn: measuring %s (%d threads): %s: %s\n",
                        lim_name[k], n, lkv_strerror(rc), lkv_last_error());
                failures++;
            }
        }
        double *a = L->pass[0], *b = L->pass[1];
        L->dram = a[LIM_DRAM] > b[LIM_DRAM] ? a[LIM_DRAM] : b[LIM_DRAM];
        L->l3 = a[LIM_L3] > b[LIM_L3] ? a[LIM_L3] : b[LIM_L3];
        L->l2 = a[LIM_L2] > b[LIM_L2] ? a[LIM_L2] : b[LIM_L2];
        L->fma = a[LIM_FMA] > b[LIM_FMA] ? a[LIM_FMA] : b[LIM_FMA];
    }
    return failures;
}

static void print_limits_table(const machine *m) {
    char b1[32], b2[32], b3[32];
    printf("machine limits (measured with %s kernels before and after the cases; the higher\n"
           "of the two is used -- other load can only lower a measurement)\n",
           lkv_isa_name(lkv_cpu_isa()));
    printf("  %-28s %-8s", "", "");
    for (int i = 0; i < m->n_lim; i++) {
        char head[32];
        snprintf(head, sizeof head, "%d thread%s", m->lim[i].threads, m->lim[i].threads > 1 ? "s" : "");
        printf("  %10s %-15s", head, "(before/after)");
    }
    printf("\n");
    char rows[LIM_COUNT][64];
    snprintf(rows[0], sizeof rows[0], "read dram (%s)", human_bytes((double)m->dram_ws, b1, sizeof b1));
    snprintf(rows[1], sizeof rows[1], "read l3 (%s)", human_bytes((double)m->l3_ws, b2, sizeof b2));
    snprintf(rows[2], sizeof rows[2], "read l2 (%s/thread)",
             human_bytes((double)m->l2_ws_per_thread, b3, sizeof b3));
    snprintf(rows[3], sizeof rows[3], "fma f32 peak");
    for (int k = 0; k < LIM_COUNT; k++) {
        printf("  %-28s %-8s", rows[k], k < LIM_FMA ? "GB/s" : "GFLOP/s");
        for (int i = 0; i < m->n_lim; i++) {
            const limits *L = &m->lim[i];
            double v = k == LIM_DRAM ? L->dram : k == LIM_L3 ? L->l3 : k == LIM_L2 ? L->l2 : L->fma;
            char both[32];
            snprintf(both, sizeof both, "(%.0f/%.0f)", L->pass[0][k], L->pass[1][k]);
            if (v > 0)
                printf("  %10.1f %-15s", v, both);
            else
                printf("  %10s %-15s", "failed", "");
        }
        printf("\n");
    }
}

/* ------------------------------------------------------------- cases */

typedef struct attn_case {
    int decode; /* 1: lkv_attn_decode, 0: lkv_attn_prefill */
    lkv_attn_params p;
    int n_q;
    const float *q;
    int32_t q_pos0;
    lkv_kv_tensor kv;
    float *o;
    lkv_threadpool *tp;
    const lkv_kv_head_runs *heads; /* quantized decode: runs instead of kv (kv.n, kv.dtype describe it) */
    double kv_bytes;               /* quantized decode: bytes of K/V read (codes + aux) */
} attn_case;

typedef struct timing {
    double best, median;
    int reps;
    double probe_best; /* best time of the interleaved probe reads (0: none) */
} timing;

static int call_case(const attn_case *c) {
    if (c->heads)
        return lkv_attn_runs(&c->p, c->n_q, c->q, NULL, c->q_pos0, c->heads, c->o, NULL, c->tp);
    if (c->decode)
        return lkv_attn_decode(&c->p, c->n_q, c->q, NULL, c->q_pos0, &c->kv, c->o, NULL, NULL,
                               c->tp);
    return lkv_attn_prefill(&c->p, c->n_q, c->q, NULL, c->q_pos0, &c->kv, c->o, NULL, NULL, c->tp);
}

/* With a probe, every repetition of the case is followed by a probe read of
 * probe_bytes, and t->probe_best is the best of those reads: the DRAM limit
 * under the same conditions as the case (see limit_value). */
static int time_case(const attn_case *c, double target, timing *t, lkv_read_probe *probe,
                     size_t probe_bytes) {
    static double times[MAX_REPS];
    t->probe_best = 0.0;
    double t0 = now_seconds();
    int rc = call_case(c);
    double w = now_seconds() - t0;
    if (rc < 0)
        return rc;
    if (w >= LONG_CALL_SECONDS) {
        t->best = t->median = w;
        t->reps = 1;
        return probe ? lkv_read_probe_step(probe, probe_bytes, &t->probe_best) : 0;
    }
    int min_reps = w > target ? 2 : 3, n = 0;
    double start = now_seconds(), t1 = start, pt;
    while (n < MAX_REPS && (n < min_reps || t1 - start < (probe ? 2 * target : target))) {
        t0 = now_seconds();
        rc = call_case(c);
        t1 = now_seconds();
        if (rc < 0)
            return rc;
        times[n++] = t1 - t0;
        if (probe) {
            if ((rc = lkv_read_probe_step(probe, probe_bytes, &pt)) < 0)
                return rc;
            if (t->probe_best == 0.0 || pt < t->probe_best)
                t->probe_best = pt;
            t1 = now_seconds();
        }
    }
    qsort(times, (size_t)n, sizeof times[0], cmp_double);
    t->best = times[0] > 1e-9 ? times[0] : 1e-9; /* rates stay finite */
    t->median = n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
    t->reps = n;
    return 0;
}

/* Which ISA runs attention for this dtype, from the kernels' description
 * ("attn.f16: avx512, ..."); the active level if the line is not found. */
static const char *kernel_isa(lkv_dtype dt, char *buf, size_t cap) {
    char desc[4096], key[32];
    lkv_kernels_describe(desc, sizeof desc);
    snprintf(key, sizeof key, "attn.%s: ", lkv_dtype_name(dt));
    const char *at = strstr(desc, key);
    if (!at) {
        snprintf(buf, cap, "%s", lkv_isa_name(lkv_active_isa()));
        return buf;
    }
    at += strlen(key);
    size_t len = strcspn(at, ",\n ");
    snprintf(buf, cap, "%.*s", (int)(len < cap ? len : cap - 1), at);
    return buf;
}

static void case_error(const attn_case *c, const char *dtype, int rc) {
    fprintf(stderr, "longkv bench attn: %s %s %d/%d/%d n_q=%d n_kv=%d threads=%d: %s: %s\n",
            c->decode ? "decode" : "prefill", dtype, c->p.q_heads, c->p.kv_heads, c->p.head_dim,
            c->n_q, c->kv.n, lkv_threadpool_size(c->tp), lkv_strerror(rc), lkv_last_error());
}

/* One finished case. Its limit is looked up when it is printed, after the
 * limits have been measured a second time. */
struct case_result {
    int decode, causal;
    char isa[16];
    lkv_dtype dtype;
    int q_heads, kv_heads, head_dim, n_q, n_kv, threads;
    timing t;
    double work;            /* decode: bytes of K+V; prefill: flops */
    double rate;            /* GB/s or GFLOP/s, from the best time */
    double paired;          /* dram decode: GB/s of the interleaved probe reads (0: none) */
    const char *regime;     /* decode: "dram" | "cache"; prefill: "-" */
    const char *limit_name; /* "dram" | "l3" | "l2" | "fma" */
};

static double limit_value(const machine *m, const case_result *r) {
    const limits *L = limits_for((machine *)m, r->threads);
    if (!L)
        return 0.0;
    switch (r->limit_name[0]) {
    case 'd': return r->paired > 0 ? r->paired : L->dram;
    case 'f': return L->fma;
    default: return !strcmp(r->limit_name, "l3") ? L->l3 : L->l2;
    }
}

static void print_case_json(const machine *m, const case_result *r) {
    double limit = limit_value(m, r);
    printf("{\"op\":\"%s\",\"isa\":\"%s\",\"dtype\":\"%s\",\"head_dim\":%d,\"q_heads\":%d,"
           "\"kv_heads\":%d,\"n_kv\":%d,\"n_q\":%d,\"threads\":%d,\"causal\":%d,"
           "\"seconds\":%.6g,\"seconds_median\":%.6g,\"reps\":%d,",
           r->decode ? "decode" : "prefill", r->isa, lkv_dtype_name(r->dtype), r->head_dim,
           r->q_heads, r->kv_heads, r->n_kv, r->n_q, r->threads, r->causal, r->t.best,
           r->t.median, r->t.reps);
    if (r->decode)
        printf("\"bytes\":%.0f,\"gbps\":%.4g,\"regime\":\"%s\",\"dram_paired\":%.4g,"
               "\"dram_run\":%.4g,",
               r->work, r->rate, r->regime, r->paired, limits_for((machine *)m, r->threads)->dram);
    else
        printf("\"flops\":%.0f,\"gflops\":%.4g,", r->work, r->rate);
    printf("\"limit_name\":\"%s\",\"limit\":%.4g,\"ratio\":%.4g}\n", r->limit_name, limit,
           limit > 0 ? r->rate / limit : 0.0);
}

static void print_case_row(const machine *m, const case_result *r) {
    double limit = limit_value(m, r);
    char sh[32], ratio[16];
    snprintf(sh, sizeof sh, "%d/%d/%d", r->q_heads, r->kv_heads, r->head_dim);
    if (limit > 0)
        snprintf(ratio, sizeof ratio, "%.2f", r->rate / limit);
    else
        snprintf(ratio, sizeof ratio, "-");
    printf("  %-6s %-5s %-10s %7d %7d %3d %10.3f %10.3f %5d %9.1f  %-6s %-5s %7.1f  %5s\n", r->isa,
           lkv_dtype_name(r->dtype), sh, r->n_q, r->n_kv, r->threads, r->t.best * 1e3,
           r->t.median * 1e3, r->t.reps, r->rate, r->regime, r->limit_name, limit, ratio);
}

static void print_table_header(const char *title, const char *rate_unit) {
    printf("\n%s\n", title);
    printf("  %-6s %-5s %-10s %7s %7s %3s %10s %10s %5s %9s  %-6s %-5s %7s  %5s\n", "isa",
           "dtype", "H/Hk/d", "n_q", "n_kv", "thr", "best ms", "median ms", "reps", rate_unit,
           "regime", "vs", "limit", "ratio");
}

/* Runs one case and records it in m->results; returns 0 or 1 (failed). */
static int run_case(const options *o, machine *m, attn_case *c) {
    case_result r;
    memset(&r, 0, sizeof r);
    r.decode = c->decode;
    r.causal = c->p.causal;
    r.dtype = c->kv.dtype;
    r.q_heads = c->p.q_heads;
    r.kv_heads = c->p.kv_heads;
    r.head_dim = c->p.head_dim;
    r.n_q = c->n_q;
    r.n_kv = c->kv.n;
    r.threads = lkv_threadpool_size(c->tp);
    if (o->progress)
        fprintf(stderr, "\r  %s %s %d/%d/%d n_q=%d n_kv=%d threads=%d ...     ",
                r.decode ? "decode" : "prefill", lkv_dtype_name(r.dtype), r.q_heads, r.kv_heads,
                r.head_dim, r.n_q, r.n_kv, r.threads);
    r.regime = "-";
    lkv_read_probe *probe = NULL;
    size_t probe_bytes = 0;
    if (r.decode) {
        r.work = c->heads ? c->kv_bytes
                          : 2.0 * r.n_kv * r.kv_heads * r.head_dim * (double)lkv_dtype_size(r.dtype);
        r.regime = r.work > (double)m->l3_bytes ? "dram" : "cache";
        limits *L = limits_for(m, r.threads);
        if (r.regime[0] == 'd' && !L->probe && !L->probe_failed &&
            lkv_read_probe_create(2 * m->dram_ws, L->tp, &L->probe) < 0) {
            L->probe_failed = 1;
            fprintf(stderr, "longkv bench attn: no paired DRAM reads (%s); the run-wide limit "
                            "is used\n", lkv_last_error());
        }
        if (r.regime[0] == 'd' && L->probe) {
            probe = L->probe; /* reads of the case's size, at most half the probe's set */
            probe_bytes = r.work < (double)m->dram_ws ? (size_t)r.work : m->dram_ws;
        }
    }
    int rc = time_case(c, o->seconds, &r.t, probe, probe_bytes);
    if (o->progress)
        fprintf(stderr, "\r%*s\r", 72, "");
    if (rc < 0) {
        case_error(c, lkv_dtype_name(r.dtype), rc);
        return 1;
    }
    kernel_isa(r.dtype, r.isa, sizeof r.isa);
    if (r.decode) {
        r.rate = r.work / r.t.best * 1e-9;
        if (r.t.probe_best > 0)
            r.paired = (double)probe_bytes / r.t.probe_best * 1e-9;
        r.limit_name = r.work > (double)m->l3_bytes                           ? "dram"
                       : r.work <= (double)m->l2_ws_per_thread * r.threads ? "l2"
                                                                            : "l3";
    } else {
        r.work = 4.0 * r.n_q * (double)r.n_kv * r.head_dim * r.q_heads * (r.causal ? 0.5 : 1.0);
        r.rate = r.work / r.t.best * 1e-9;
        r.limit_name = "fma";
    }
    if (m->n_results == m->cap_results) {
        int cap = m->cap_results ? 2 * m->cap_results : 64;
        case_result *v = realloc(m->results, (size_t)cap * sizeof *v);
        if (!v) {
            fprintf(stderr, "longkv bench attn: out of memory\n");
            return 1;
        }
        m->results = v;
        m->cap_results = cap;
    }
    m->results[m->n_results++] = r;
    return 0;
}

static int is_quant(lkv_dtype dt) {
    return dt == LKV_DTYPE_Q8 || dt == LKV_DTYPE_KIVI4 || dt == LKV_DTYPE_KIVI2;
}

/* Decode cases over quantized pages (see the top of the file). */
static int run_decode_quant(const options *o, machine *m, shape sh, lkv_dtype dt) {
    long n_max = 0;
    for (int i = 0; i < o->n_ctx; i++)
        n_max = o->ctx[i] > n_max ? o->ctx[i] : n_max;
    const int d = sh.head_dim, Hk = sh.kv_heads;
    const long pages = (n_max + QPAGE - 1) / QPAGE;
    size_t kcb, kab, vcb, vab; /* bytes of one full page's arrays */
    if (lkv_kv_quant_bytes(dt, d, QPAGE, &kcb, &kab, &vcb, &vab) < 0) {
        fprintf(stderr, "longkv bench attn: %s\n", lkv_last_error());
        return o->n_ctx * o->n_threads;
    }
    size_t qn = (size_t)sh.q_heads * (size_t)d, np_all = (size_t)Hk * (size_t)pages;
    uint8_t *kc = alloc64(np_all * kcb), *vc = alloc64(np_all * vcb);
    uint8_t *ka = alloc64(np_all * kab), *va = alloc64(np_all * vab);
    float *q = alloc64(qn * sizeof(float)), *out = alloc64(qn * sizeof(float));
    float *tk = alloc64((size_t)QPAGE * d * sizeof(float)), *tv = alloc64((size_t)QPAGE * d * sizeof(float));
    lkv_kv_run *runs = calloc(np_all, sizeof *runs);
    lkv_kv_head_runs *heads = calloc((size_t)Hk, sizeof *heads);
    int failures = 0;
    if (!kc || !vc || !ka || !va || !q || !out || !tk || !tv || !runs || !heads) {
        fprintf(stderr, "longkv bench attn: cannot allocate %s K/V for %ld tokens\n",
                lkv_dtype_name(dt), n_max);
        failures = o->n_ctx * o->n_threads;
        goto done;
    }
    uint64_t seed = 77;
    for (size_t i = 0; i < np_all; i++) { /* page i of head i / pages; pages back to back */
        for (int e = 0; e < QPAGE * d; e++) { /* uniform in [-2, 2) */
            tk[e] = (float)((double)(splitmix64(&seed) >> 40) * (4.0 / 16777216.0) - 2.0);
            tv[e] = (float)((double)(splitmix64(&seed) >> 40) * (4.0 / 16777216.0) - 2.0);
        }
        if (lkv_kv_quantize(dt, d, QPAGE, tk, tv, kc + i * kcb, ka + i * kab, vc + i * vcb,
                            va + i * vab) < 0) {
            fprintf(stderr, "longkv bench attn: %s\n", lkv_last_error());
            failures = o->n_ctx * o->n_threads;
            goto done;
        }
        lkv_kv_run *r = &runs[i];
        r->dtype = dt;
        r->k = kc + i * kcb;
        r->v = vc + i * vcb;
        r->k_aux = ka + i * kab;
        r->v_aux = va + i * vab;
        r->pos0 = (int32_t)((long)(i % (size_t)pages) * QPAGE);
        r->n = QPAGE;
    }
    if (fill_random(NULL, LKV_DTYPE_F32, q, qn, 3) < 0) {
        failures = o->n_ctx * o->n_threads;
        goto done;
    }
    memset(out, 0, qn * sizeof(float));
    for (int ti = 0; ti < o->n_threads; ti++)
        for (int ci = 0; ci < o->n_ctx; ci++) {
            long n = o->ctx[ci] / QPAGE * QPAGE; /* whole pages */
            if (n < QPAGE)
                n = QPAGE;
            for (int h = 0; h < Hk; h++) {
                heads[h].runs = runs + (size_t)h * pages;
                heads[h].n_runs = (int)(n / QPAGE);
            }
            attn_case c;
            memset(&c, 0, sizeof c);
            c.decode = 1;
            c.p = lkv_attn_default_params();
            c.p.q_heads = sh.q_heads;
            c.p.kv_heads = Hk;
            c.p.head_dim = d;
            c.n_q = 1;
            c.q = q;
            c.q_pos0 = (int32_t)n - 1;
            c.kv.dtype = dt;
            c.kv.n = (int)n;
            c.heads = heads;
            c.kv_bytes = (double)Hk * (double)(n / QPAGE) * (double)(kcb + kab + vcb + vab);
            c.o = out;
            c.tp = limits_for(m, o->threads[ti])->tp;
            failures += run_case(o, m, &c);
        }
done:
    free(kc); free(vc); free(ka); free(va); free(q); free(out); free(tk); free(tv);
    free(runs); free(heads);
    return failures;
}

/* All decode cases of one shape and dtype, on every thread count. */
static int run_decode_group(const options *o, machine *m, shape sh, lkv_dtype dt) {
    if (is_quant(dt))
        return run_decode_quant(o, m, sh, dt);
    long n_max = 0;
    for (int i = 0; i < o->n_ctx; i++)
        if (o->ctx[i] > n_max)
            n_max = o->ctx[i];
    size_t es = lkv_dtype_size(dt);
    size_t elems = (size_t)sh.kv_heads * (size_t)n_max * (size_t)sh.head_dim;
    size_t qn = (size_t)sh.q_heads * (size_t)sh.head_dim;
    void *k = alloc64(elems * es), *v = alloc64(elems * es);
    float *q = alloc64(qn * sizeof(float)), *out = alloc64(qn * sizeof(float));
    int failures = 0;
    if (!k || !v || !q || !out) {
        fprintf(stderr, "longkv bench attn: cannot allocate K/V of %d/%d/%d %s for %ld tokens\n",
                sh.q_heads, sh.kv_heads, sh.head_dim, lkv_dtype_name(dt), n_max);
        failures = o->n_ctx * o->n_threads;
        goto done;
    }
    lkv_threadpool *fill_tp = limits_for(m, o->threads[0])->tp;
    if (fill_random(fill_tp, dt, k, elems, 1) < 0 || fill_random(fill_tp, dt, v, elems, 2) < 0 ||
        fill_random(NULL, LKV_DTYPE_F32, q, qn, 3) < 0) {
        fprintf(stderr, "longkv bench attn: filling buffers failed: %s\n", lkv_last_error());
        failures = o->n_ctx * o->n_threads;
        goto done;
    }
    memset(out, 0, qn * sizeof(float));
    for (int ti = 0; ti < o->n_threads; ti++) {
        for (int ci = 0; ci < o->n_ctx; ci++) {
            attn_case c;
            memset(&c, 0, sizeof c);
            c.decode = 1;
            c.p = lkv_attn_default_params();
            c.p.q_heads = sh.q_heads;
            c.p.kv_heads = sh.kv_heads;
            c.p.head_dim = sh.head_dim;
            c.n_q = 1;
            c.q = q;
            c.q_pos0 = (int32_t)o->ctx[ci] - 1; /* the newest token: sees every key */
            c.kv = (lkv_kv_tensor){dt, k, v, (int)o->ctx[ci], (size_t)sh.head_dim,
                                   (size_t)n_max * (size_t)sh.head_dim, NULL, 0};
            c.o = out;
            c.tp = limits_for(m, o->threads[ti])->tp;
            failures += run_case(o, m, &c);
        }
    }
done:
    free(k);
    free(v);
    free(q);
    free(out);
    return failures;
}

/* One prefill case: n_q = n_kv = n (causal unless --causal 0), fresh buffers. */
static int run_prefill_case(const options *o, machine *m, shape sh, lkv_dtype dt, long n,
                            lkv_threadpool *tp) {
    size_t es = lkv_dtype_size(dt);
    size_t kv_elems = (size_t)sh.kv_heads * (size_t)n * (size_t)sh.head_dim;
    size_t q_elems = (size_t)n * (size_t)sh.q_heads * (size_t)sh.head_dim;
    void *k = alloc64(kv_elems * es), *v = alloc64(kv_elems * es);
    float *q = alloc64(q_elems * sizeof(float)), *out = alloc64(q_elems * sizeof(float));
    int failed = 0;
    if (!k || !v || !q || !out) {
        fprintf(stderr, "longkv bench attn: cannot allocate prefill buffers for n=%ld\n", n);
        failed = 1;
    } else if (fill_random(tp, dt, k, kv_elems, 11) < 0 || fill_random(tp, dt, v, kv_elems, 12) < 0 ||
               fill_random(tp, LKV_DTYPE_F32, q, q_elems, 13) < 0) {
        fprintf(stderr, "longkv bench attn: filling buffers failed: %s\n", lkv_last_error());
        failed = 1;
    } else {
        memset(out, 0, q_elems * sizeof(float));
        attn_case c;
        memset(&c, 0, sizeof c);
        c.decode = 0;
        c.p = lkv_attn_default_params();
        c.p.q_heads = sh.q_heads;
        c.p.kv_heads = sh.kv_heads;
        c.p.head_dim = sh.head_dim;
        c.p.causal = o->causal;
        c.n_q = (int)n;
        c.q = q;
        c.q_pos0 = 0;
        c.kv = (lkv_kv_tensor){dt, k, v, (int)n, (size_t)sh.head_dim,
                               (size_t)n * (size_t)sh.head_dim, NULL, 0};
        c.o = out;
        c.tp = tp;
        failed = run_case(o, m, &c);
    }
    free(k);
    free(v);
    free(q);
    free(out);
    return failed;
}

/* --------------------------------------------------------------- main */

int bench_attn(int argc, char **argv) {
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;

    if (o.isa >= 0) {
        lkv_isa got = lkv_set_isa((lkv_isa)o.isa);
        if ((int)got != o.isa)
            fprintf(stderr, "longkv bench attn: this CPU supports up to %s; using %s\n",
                    lkv_isa_name(lkv_cpu_isa()), lkv_isa_name(got));
    }

    machine m;
    memset(&m, 0, sizeof m);
    m.l2_bytes = sysfs_cache_bytes(2);
    m.l3_bytes = sysfs_cache_bytes(3);
    if (!m.l2_bytes)
        m.l2_bytes = (size_t)1 << 20;
    if (!m.l3_bytes)
        m.l3_bytes = (size_t)32 << 20;
    m.dram_ws = (size_t)256 << 20;
    if (m.dram_ws < 8 * m.l3_bytes)
        m.dram_ws = 8 * m.l3_bytes;
    m.l3_ws = m.l3_bytes / 2;
    m.l2_ws_per_thread = m.l2_bytes / 2;

    /* Limits for 1 thread and for every thread count of the cases. */
    int failures = 0;
    m.lim[m.n_lim++].threads = 1;
    for (int i = 0; i < o.n_threads; i++)
        if (!limits_for(&m, o.threads[i]))
            m.lim[m.n_lim++].threads = o.threads[i];
    for (int i = 0; i < m.n_lim; i++) {
        rc = lkv_threadpool_create(m.lim[i].threads, &m.lim[i].tp);
        if (rc < 0) {
            fprintf(stderr, "longkv bench attn: cannot start %d threads: %s\n", m.lim[i].threads,
                    lkv_last_error());
            for (int j = 0; j < i; j++)
                lkv_threadpool_free(m.lim[j].tp);
            return 1;
        }
    }

    char kernels[4096];
    lkv_kernels_describe(kernels, sizeof kernels);
    if (o.json) {
        printf("{\"op\":\"machine\",\"version\":\"%s\",\"cpu_isa\":\"%s\",\"active_isa\":\"%s\","
               "\"cpus\":%ld,\"l2_bytes\":%zu,\"l3_bytes\":%zu,\"kernels\":",
               lkv_version(), lkv_isa_name(lkv_cpu_isa()), lkv_isa_name(lkv_active_isa()),
               sysconf(_SC_NPROCESSORS_ONLN), m.l2_bytes, m.l3_bytes);
        json_string(stdout, kernels);
        printf("}\n");
    } else {
        char b1[32], b2[32];
        printf("longkv %s bench attn -- %ld CPUs, L2 %s/core, L3 %s%s\n", lkv_version(),
               sysconf(_SC_NPROCESSORS_ONLN), human_bytes((double)m.l2_bytes, b1, sizeof b1),
               human_bytes((double)m.l3_bytes, b2, sizeof b2), o.quick ? " (quick)" : "");
        printf("active kernels:\n");
        for (const char *line = kernels; *line;) {
            size_t len = strcspn(line, "\n");
            printf("  %.*s\n", (int)len, line);
            line += len + (line[len] == '\n');
        }
    }
    fflush(stdout);

    double t_start = now_seconds();
    failures += measure_limits(&m, &o, 0);
    if (o.do_decode)
        for (int si = 0; si < o.n_shapes; si++)
            for (int di = 0; di < o.n_dtypes; di++)
                failures += run_decode_group(&o, &m, o.shapes[si], (lkv_dtype)o.dtypes[di]);
    if (o.do_prefill)
        for (int ti = 0; ti < o.n_threads; ti++)
            for (int si = 0; si < o.n_shapes; si++)
                for (int di = 0; di < o.n_dtypes; di++)
                    for (int ni = 0; ni < o.n_nq && !is_quant((lkv_dtype)o.dtypes[di]); ni++)
                        failures += run_prefill_case(&o, &m, o.shapes[si], (lkv_dtype)o.dtypes[di],
                                                     o.nq[ni], limits_for(&m, o.threads[ti])->tp);
    failures += measure_limits(&m, &o, 1);

    /* Report: limits, then the cases with their ratios to the final limits. */
    int over = 0;
    for (int i = 0; i < m.n_results; i++) {
        double limit = limit_value(&m, &m.results[i]);
        over += limit > 0 && m.results[i].rate > 1.05 * limit;
    }
    if (o.json) {
        print_limits_json(&m);
        for (int i = 0; i < m.n_results; i++)
            print_case_json(&m, &m.results[i]);
    } else {
        print_limits_table(&m);
        for (int pass = 0; pass < 2; pass++) {
            int header = 0;
            for (int i = 0; i < m.n_results; i++) {
                const case_result *r = &m.results[i];
                if (r->decode != !pass)
                    continue;
                if (!header++ && r->decode)
                    print_table_header("decode: 1 query token per head, K/V head-major, GB/s = K+V "
                                       "bytes / best time", "GB/s");
                else if (header == 1)
                    print_table_header(o.causal ? "prefill: causal, n_kv = n_q, GFLOP/s = "
                                                  "2*n_q*n_kv*d*H / best time"
                                                : "prefill: no mask, n_kv = n_q, GFLOP/s = "
                                                  "4*n_q*n_kv*d*H / best time",
                                       "GFLOP/s");
                print_case_row(&m, r);
            }
        }
        /* quantized decode vs f16 on the same shape, n_kv and threads */
        int hdr = 0;
        for (int i = 0; i < m.n_results; i++) {
            const case_result *r = &m.results[i];
            if (!r->decode || !is_quant(r->dtype))
                continue;
            for (int j = 0; j < m.n_results; j++) {
                const case_result *f = &m.results[j];
                if (!f->decode || f->dtype != LKV_DTYPE_F16 || f->n_kv != r->n_kv ||
                    f->threads != r->threads || f->q_heads != r->q_heads ||
                    f->kv_heads != r->kv_heads || f->head_dim != r->head_dim)
                    continue;
                if (!hdr++)
                    printf("\ndecode vs f16 (same case): bytes read and speed-up\n"
                           "  %-6s %-10s %7s %3s %12s %12s %9s %9s\n", "dtype", "H/Hk/d", "n_kv",
                           "thr", "bytes", "f16 bytes", "bytes x", "speed-up");
                char sh[32];
                snprintf(sh, sizeof sh, "%d/%d/%d", r->q_heads, r->kv_heads, r->head_dim);
                printf("  %-6s %-10s %7d %3d %12.0f %12.0f %8.2fx %8.2fx\n", lkv_dtype_name(r->dtype),
                       sh, r->n_kv, r->threads, r->work, f->work, f->work / r->work,
                       f->t.best / r->t.best);
            }
        }
        printf("\n%d case(s), %d failure(s), %.1f s\n", m.n_results, failures,
               now_seconds() - t_start);
    }
    fflush(stdout);
    if (over)
        fprintf(stderr, "longkv bench attn: %d case(s) ran faster than their measured limit: the "
                        "machine was busy while the limits were measured (rerun when it is "
                        "quiet), or a kernel streaming K and V with prefetches outran the "
                        "one-stream read that measures DRAM\n",
                over);
    free(m.results);
    for (int i = 0; i < m.n_lim; i++) {
        lkv_read_probe_destroy(m.lim[i].probe);
        lkv_threadpool_free(m.lim[i].tp);
    }
    return failures ? 1 : 0;
}
