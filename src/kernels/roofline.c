/* roofline.c -- measures the machine's limits: read bandwidth (DRAM- or
 * cache-resident working sets) and f32 FMA peak, for one thread or a pool.
 *
 * The inner loops are kernel-table entries (ref/, x86/avx2/, x86/avx512/
 * roofline.c); this file is the driver: buffers, threads, timing. Timing keeps
 * the best repetition after a warm-up, the usual way to estimate a ceiling on a
 * machine with other load: noise only ever makes a repetition slower.
 */
#include "common/alloc.h"
#include "common/error.h"
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>
#include <time.h>

#define DEFAULT_SECONDS 0.2
#define MIN_REPS 3
#define MAX_BYTES ((size_t)1 << 40)
/* Bytes each thread reads per repetition of a cache-resident set, at least
 * (by passing over it several times): short repetitions would measure the
 * pool's wake-up instead of the memory system. */
#define READ_BYTES_PER_REP ((size_t)64 << 20)
/* Larger working sets are read this much per thread and repetition, moving on
 * through the slice: repetitions stay short (below a millisecond from DRAM),
 * so that on a busy machine some of them run undisturbed, as the kernels'
 * own best-of timings do; the slice is still read in full every few
 * repetitions, so a chunk is long gone from the caches when it comes back.
 * Each chunk is read once per repetition (16 MiB: ~0.3 ms at 50 GB/s). */
#define READ_CHUNK_BYTES ((size_t)16 << 20)
/* Wall time of one FMA repetition, at least. */
#define FMA_SECONDS_PER_REP 0.001
/* Per-thread results are spaced one cache line apart (no false sharing). */
#define SLOT 16

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int check_seconds(const char *fn, double *min_seconds) {
    if (!(*min_seconds >= 0.0 && *min_seconds <= 60.0)) /* also rejects NaN */
        LKV_FAIL(LKV_ERR_INVALID, "%s: min_seconds=%g not in [0, 60]", fn, *min_seconds);
    if (*min_seconds == 0.0)
        *min_seconds = DEFAULT_SECONDS;
    return LKV_OK;
}

/* ------------------------------------------------------- read bandwidth */

/* A working set of one slice per thread, and what the next repetition reads:
 * [pos, pos + chunk) of every slice (wrapping at the slice's end), passes
 * times. Shared by lkv_measure_read_bandwidth and the read probe. */
typedef struct read_job {
    lkv_read_sum_fn sum;
    lkv_threadpool *tp;
    int n;                 /* threads */
    float *buf;            /* [n][slice] */
    size_t slice;          /* floats per thread, a multiple of 16 */
    size_t chunk, pos;     /* each repetition reads [pos, pos + chunk) of the slice */
    int passes;            /* passes over the chunk per repetition */
    double *out;           /* [n * SLOT] sums, so the loads are not dead */
} read_job;

/* Task = one thread's share. The slice is chosen by the thread, not the task,
 * so a cache-resident slice stays in the cache of the core that reads it. */
static void read_task(void *arg, int task, int thread) {
    (void)task;
    read_job *j = arg;
    const float *x = j->buf + (size_t)thread * j->slice;
    size_t first = j->slice - j->pos < j->chunk ? j->slice - j->pos : j->chunk;
    double s = 0.0;
    for (int p = 0; p < j->passes; p++) {
        s += j->sum(x + j->pos, first);
        if (first < j->chunk)
            s += j->sum(x, j->chunk - first);
    }
    j->out[(size_t)thread * SLOT] += s;
}

/* First touch by the thread that will read the slice (NUMA-local pages). */
static void fill_task(void *arg, int task, int thread) {
    (void)task;
    read_job *j = arg;
    float *x = j->buf + (size_t)thread * j->slice;
    for (size_t i = 0; i < j->slice; i++)
        x[i] = (float)(i & 255) * (1.0f / 256.0f);
}

static void read_set_free(read_job *j) {
    lkv_free(j->buf);
    lkv_free(j->out);
}

/* Checks `bytes`, allocates the working set on the best read kernel and
 * touches it from its readers; chunk = slice, one pass, pos 0. fn names the
 * caller in error messages. */
static int read_set_init(const char *fn, size_t bytes, lkv_threadpool *tp, read_job *j) {
    memset(j, 0, sizeof *j);
    int n = lkv_threadpool_size(tp);
    if (bytes < (size_t)4096 * (size_t)n || bytes > MAX_BYTES)
        LKV_FAIL(LKV_ERR_INVALID, "%s: bytes=%zu not in [4096 * %d threads, 2^40]", fn, bytes, n);
    lkv_kernel_table t;
    lkv_kernels_build(&t, lkv_cpu_isa());
    j->sum = t.read_sum;
    j->tp = tp;
    j->n = n;
    j->slice = j->chunk = (bytes / sizeof(float) / (size_t)n) & ~(size_t)15;
    j->passes = 1;
    j->buf = lkv_malloc(j->slice * sizeof(float) * (size_t)n);
    j->out = lkv_calloc((size_t)n * SLOT, sizeof(double));
    if (!j->buf || !j->out) {
        read_set_free(j);
        LKV_FAIL(LKV_ERR_NOMEM, "%s: cannot allocate %zu bytes", fn, bytes);
    }
    lkv_threadpool_run(tp, n, fill_task, j);
    return LKV_OK;
}

int lkv_measure_read_bandwidth(size_t bytes, double min_seconds, lkv_threadpool *tp,
                               double *gbps) {
    if (!gbps)
        LKV_FAIL(LKV_ERR_INVALID, "measure_read_bandwidth: gbps is NULL");
    *gbps = 0.0;
    LKV_TRY(check_seconds("measure_read_bandwidth", &min_seconds));
    read_job j;
    LKV_TRY(read_set_init("measure_read_bandwidth", bytes, tp, &j));
    if (j.chunk > READ_CHUNK_BYTES / sizeof(float))
        j.chunk = READ_CHUNK_BYTES / sizeof(float);
    size_t chunk_bytes = j.chunk * sizeof(float);
    /* Several passes only over a slice read whole (a cache-resident set): a
     * chunk of a larger slice read twice in one repetition would come from
     * the L3 the second time, and a DRAM figure would include cache hits. */
    if (j.chunk == j.slice && chunk_bytes < READ_BYTES_PER_REP)
        j.passes = (int)((READ_BYTES_PER_REP + chunk_bytes - 1) / chunk_bytes);
    lkv_threadpool_run(tp, j.n, read_task, &j); /* warm-up */

    double best = INFINITY, start = now_seconds(), t1 = start;
    for (int reps = 0; reps < MIN_REPS || t1 - start < min_seconds; reps++) {
        j.pos = j.pos + 2 * j.chunk <= j.slice ? j.pos + j.chunk : 0;
        double t0 = now_seconds();
        lkv_threadpool_run(tp, j.n, read_task, &j);
        t1 = now_seconds();
        if (t1 - t0 < best)
            best = t1 - t0;
    }
    double bytes_per_rep = (double)chunk_bytes * (double)j.n * (double)j.passes;
    *gbps = bytes_per_rep / (best > 1e-9 ? best : 1e-9) * 1e-9;
    read_set_free(&j);
    return LKV_OK;
}

/* ------------------------------------------------------------ read probe */

struct lkv_read_probe {
    read_job j; /* each step: one pass over the next chunk, wrapping */
};

int lkv_read_probe_create(size_t bytes, lkv_threadpool *tp, lkv_read_probe **out) {
    if (!out)
        LKV_FAIL(LKV_ERR_INVALID, "read_probe_create: out is NULL");
    *out = NULL;
    lkv_read_probe *p = lkv_calloc(1, sizeof *p);
    if (!p)
        LKV_FAIL(LKV_ERR_NOMEM, "read_probe_create: out of memory");
    int rc = read_set_init("read_probe_create", bytes, tp, &p->j);
    if (rc < 0) {
        lkv_free(p);
        return rc;
    }
    *out = p;
    return LKV_OK;
}

int lkv_read_probe_step(lkv_read_probe *p, size_t bytes, double *seconds) {
    if (!p || !seconds)
        LKV_FAIL(LKV_ERR_INVALID, "read_probe_step: NULL argument");
    *seconds = 0.0;
    read_job *j = &p->j;
    size_t len = (bytes / sizeof(float) / (size_t)j->n) & ~(size_t)15;
    if (len == 0 || len > j->slice)
        LKV_FAIL(LKV_ERR_INVALID, "read_probe_step: bytes=%zu not in [64 * %d threads, %zu]",
                 bytes, j->n, j->slice * sizeof(float) * (size_t)j->n);
    j->chunk = len;
    double t0 = now_seconds();
    lkv_threadpool_run(j->tp, j->n, read_task, j);
    *seconds = now_seconds() - t0;
    j->pos = (j->pos + len) % j->slice; /* move on: the next step reads fresh lines */
    return LKV_OK;
}

void lkv_read_probe_destroy(lkv_read_probe *p) {
    if (!p)
        return;
    read_set_free(&p->j);
    lkv_free(p);
}

/* ------------------------------------------------------------- FMA peak */

typedef struct fma_job {
    lkv_fma_loop_fn loop;
    long iters;
    float sink[256 * SLOT];  /* one line per thread (pool size <= 256) */
    double flops[256];       /* flops of the last repetition, per task */
} fma_job;

static void fma_task(void *arg, int task, int thread) {
    fma_job *j = arg;
    j->flops[task] = j->loop(&j->sink[(size_t)thread * SLOT], j->iters);
}

/* One repetition on every thread; returns its wall time and total flops. */
static double fma_rep(lkv_threadpool *tp, int n, fma_job *j, double *flops) {
    double t0 = now_seconds();
    lkv_threadpool_run(tp, n, fma_task, j);
    double dt = now_seconds() - t0;
    *flops = 0.0;
    for (int i = 0; i < n; i++)
        *flops += j->flops[i];
    return dt;
}

int lkv_measure_fma_peak(double min_seconds, lkv_threadpool *tp, double *gflops) {
    if (!gflops)
        LKV_FAIL(LKV_ERR_INVALID, "measure_fma_peak: gflops is NULL");
    *gflops = 0.0;
    LKV_TRY(check_seconds("measure_fma_peak", &min_seconds));
    int n = lkv_threadpool_size(tp);

    lkv_kernel_table t;
    lkv_kernels_build(&t, lkv_cpu_isa());
    fma_job *j = lkv_calloc(1, sizeof *j);
    if (!j)
        LKV_FAIL(LKV_ERR_NOMEM, "measure_fma_peak: out of memory");
    j->loop = t.fma_loop;
    j->iters = 1 << 14;
    double flops, dt;
    /* Warm-up doubles as calibration: grow the repetition until it is long
     * enough that thread wake-up and clock reads do not matter. */
    while ((dt = fma_rep(tp, n, j, &flops)) < FMA_SECONDS_PER_REP && j->iters < (1L << 40))
        j->iters *= 2;

    double best = 0.0, start = now_seconds(), t1 = start;
    for (int reps = 0; reps < MIN_REPS || t1 - start < min_seconds; reps++) {
        dt = fma_rep(tp, n, j, &flops);
        t1 = now_seconds();
        double rate = flops / (dt > 1e-9 ? dt : 1e-9);
        if (rate > best)
            best = rate;
    }
    *gflops = best * 1e-9;
    lkv_free(j);
    return LKV_OK;
}
