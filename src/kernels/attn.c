/* attn.c -- the public attention driver (lkv_attn_prefill / decode / runs /
 * merge).
 *
 * The math lives in the kernels (ref/attn.c is the specification; the SIMD
 * files implement the same contract). This file validates the request, turns
 * it into "blocks" (the query rows of one KV head, with their online-softmax
 * state) and "runs" (the keys a block needs), spreads the work over the thread
 * pool, merges split-KV partial results and finalises:
 *
 *     o   = acc / l,   lse = m + log(l)       (o = 0, lse = -inf for a row that saw no key)
 *
 * Work split. A task is (KV head h, tile of query tokens, chunk of keys):
 *   - prefill: one key chunk; query tiles small enough that the block state
 *     ((d + 2) floats per row) stays in L2. Under causal / window masks each
 *     tile only gets the keys some of its queries can see (trimmed by position
 *     with a binary search), and tiles run from the last (most keys) to the
 *     first so the dynamic task queue stays balanced.
 *   - decode: few queries against many keys, so the keys of each (head, tile)
 *     are cut into chunks with their own state (flash-decoding), each chunk is
 *     finalised to (o, lse), and the chunks are merged exactly in order.
 * Contiguous K/V becomes one run per head by pointer arithmetic; chunks and
 * trims are sub-runs. K/V are never copied.
 *
 * Observer. When requested, a second pass (after every row's final lse is
 * known) adds exp(logit - lse), summed over a head's query rows, to each key's
 * slot. Tasks split keys, so no two tasks write the same slot.
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "kernels/kernels.h"
#include "kernels/kv_quant.h"

#define MAX_Q_TILE 64                  /* query tokens per task, at most */
#define STATE_BUDGET_FLOATS (32 * 1024) /* (m, l, acc) of one task: 128 KiB, L2-sized */
#define MIN_CHUNK_KEYS 64               /* split-KV: smaller chunks cost more than they save */
#define MAX_HEADS 65536                 /* keeps every size computation far from overflow */
#define RUNS_SPLIT_MAX_Q 16             /* lkv_attn_runs: split keys up to this many queries */

lkv_attn_params lkv_attn_default_params(void) {
    lkv_attn_params p;
    memset(&p, 0, sizeof p);
    p.head_dim = 0;
    p.q_heads = 1;
    p.kv_heads = 1;
    p.scale = 0.0f;
    p.softcap = 0.0f;
    p.causal = 1;
    p.window = 0;
    p.n_sink = 0;
    return p;
}

/* ------------------------------------------------------------------ merge */

/* (o_a, lse_a) <- exact combination of two partial results over disjoint keys. */
static void merge_rows(int rows, int d, float *o_a, float *lse_a, const float *o_b,
                       const float *lse_b) {
    for (int r = 0; r < rows; r++) {
        float *oa = o_a + (size_t)r * d;      /* [d] */
        const float *ob = o_b + (size_t)r * d; /* [d] */
        float la = lse_a[r], lb = lse_b[r];
        if (lb == -INFINITY)
            continue; /* b saw no key: a stands */
        if (la == -INFINITY) {
            memcpy(oa, ob, (size_t)d * sizeof(float));
            lse_a[r] = lb;
            continue;
        }
        float mx = la > lb ? la : lb;
        float wa = expf(la - mx), wb = expf(lb - mx); /* one of them is 1 */
        float sum = wa + wb;
        wa /= sum;
        wb /= sum;
        for (int c = 0; c < d; c++)
            oa[c] = wa * oa[c] + wb * ob[c];
        lse_a[r] = mx + logf(sum);
    }
}

void lkv_attn_merge(int rows, int d, float *o_a, float *lse_a, const float *o_b,
                    const float *lse_b) {
    if (rows <= 0 || d <= 0 || !o_a || !lse_a || !o_b || !lse_b)
        return;
    merge_rows(rows, d, o_a, lse_a, o_b, lse_b);
}

/* ------------------------------------------------------------ the call */

/* A validated call: shapes, positions, the keys of every KV head as runs, and
 * how the work is split. */
typedef struct attn_call {
    const char *fn;                /* public function name, for messages */
    int d, H, Hk, G;
    float scale, softcap;
    int causal, window, n_sink;
    int n_q;
    const float *q;                /* [n_q][H][d] */
    const int32_t *q_pos;          /* [n_q] non-decreasing */
    float *o;                      /* [n_q][H][d] */
    float *lse;                    /* [n_q][H] or NULL */
    const lkv_kv_head_runs *heads; /* [Hk] */
    size_t kv_stride;              /* elements between K/V rows in every run; 0 = d */
    int max_runs;                  /* most runs of any head */
    int64_t max_keys;              /* most keys of any head */
    int has_obs;
    const lkv_kernel_table *kt;

    /* work split */
    int n_threads;
    int q_tile;    /* query tokens per tile */
    int n_qt;      /* query tiles */
    int n_chunks;  /* key chunks per (head, tile); 1 = no split */
    int obs_chunks; /* key chunks per head in the observer pass */

    /* scratch */
    int run_cap;          /* sub-runs one task may need */
    lkv_kv_run *runs_tmp; /* [n_threads][run_cap] */
    size_t state_floats;  /* floats of one task's state */
    float *state;         /* [n_threads][state_floats]: acc [rows][d], m [rows], l [rows] */
    float *part_o;        /* [Hk][n_qt][n_chunks][q_tile * G][d] when n_chunks > 1 */
    float *part_lse;      /* [Hk][n_qt][n_chunks][q_tile * G] */
    float *lse_rows;      /* [Hk][n_q * G] final lse in block-row order (observer) */
} attn_call;

static inline int32_t run_pos(const lkv_kv_run *run, int t) {
    return run->pos ? run->pos[t] : run->pos0 + t;
}

/* First index t of run with position >= p (run->n if none). */
static int lower_bound(const lkv_kv_run *run, int64_t p) {
    int lo = 0, hi = run->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (run_pos(run, mid) < p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Keys [a, b) of run, as a run of its own (pointer arithmetic, no copy). A
 * KIVI run can only be cut at tiles (a % LKV_KVQ_TILE == 0): callers round. */
static lkv_kv_run sub_run(const attn_call *c, const lkv_kv_run *run, int a, int b) {
    size_t stride = c->kv_stride ? c->kv_stride : (size_t)c->d;
    size_t skip = (size_t)a * stride * lkv_dtype_size(run->dtype); /* bytes */
    lkv_kv_run s = *run;
    if (lkv_kvq_is_quant(run->dtype)) { /* quantized runs: whole packed rows (kv_quant.h) */
        skip = (size_t)a * lkv_kvq_row_bytes(run->dtype, c->d);
        s.k_aux = run->k_aux ? (const char *)run->k_aux + (size_t)a * lkv_kvq_kaux_row_bytes(run->dtype, c->d) : NULL;
        s.v_aux = run->v_aux ? (const char *)run->v_aux + (size_t)a * lkv_kvq_vaux_row_bytes(run->dtype, c->d) : NULL;
    }
    s.k = (const char *)run->k + skip;
    s.v = (const char *)run->v + skip;
    if (run->pos)
        s.pos = run->pos + a;
    else
        s.pos0 = run->pos0 + a;
    s.obs = run->obs ? run->obs + a : NULL;
    s.n = b - a;
    return s;
}

/* The keys of head `hr` that a query in [q_first, q_last] can see, as sub-runs
 * in out[] (at most 2 per run). Returns how many. */
static int trim_keys(const attn_call *c, const lkv_kv_head_runs *hr, int32_t q_first,
                     int32_t q_last, lkv_kv_run *out) {
    /* visible positions: one interval, or sinks + window as two */
    int64_t lo[2], hi[2];
    int n_iv = 1;
    lo[0] = INT64_MIN;
    hi[0] = c->causal ? (int64_t)q_last : INT64_MAX;
    if (c->window > 0) {
        int64_t win_lo = (int64_t)q_first - c->window + 1;
        int64_t sink_hi = (int64_t)c->n_sink - 1;
        if (sink_hi + 1 < win_lo) { /* a gap between the sinks and the window */
            lo[0] = INT64_MIN;
            hi[0] = sink_hi < hi[0] ? sink_hi : hi[0];
            lo[1] = win_lo;
            hi[1] = c->causal ? (int64_t)q_last : INT64_MAX;
            n_iv = 2;
        }
    }
    int n = 0;
    for (int i = 0; i < hr->n_runs; i++) {
        const lkv_kv_run *run = &hr->runs[i];
        int pa = 0, pb = -1; /* the run's last KIVI range, rounded to tiles */
        for (int iv = 0; iv < n_iv; iv++) {
            if (lo[iv] > hi[iv])
                continue;
            int a = lower_bound(run, lo[iv]);
            int b = hi[iv] == INT64_MAX ? run->n : lower_bound(run, hi[iv] + 1);
            if (a >= b)
                continue;
            if (lkv_kvq_bits(run->dtype)) { /* whole tiles; the kernels mask the extra keys */
                a -= a % LKV_KVQ_TILE;
                b = lkv_kvq_slots(run->dtype, b) < run->n ? lkv_kvq_slots(run->dtype, b) : run->n;
                if (a <= pb) { /* the sinks' tiles reach the window's: one range */
                    out[n - 1] = sub_run(c, run, pa, b);
                    pb = b;
                    continue;
                }
                pa = a;
                pb = b;
            }
            out[n++] = sub_run(c, run, a, b);
        }
    }
    return n;
}

/* Chunk `chunk` of n_chunks equal parts (by key count) of the runs in[n_in],
 * as sub-runs in out[] (out may equal in). Returns how many. */
static int key_chunk(const attn_call *c, const lkv_kv_run *in, int n_in, int chunk,
                     int n_chunks, lkv_kv_run *out) {
    int64_t total = 0;
    for (int i = 0; i < n_in; i++)
        total += in[i].n;
    int64_t lo = total * chunk / n_chunks, hi = total * (chunk + 1) / n_chunks;
    int64_t start = 0; /* key index of in[i]'s first key */
    int n = 0;
    for (int i = 0; i < n_in; i++) {
        lkv_kv_run run = in[i]; /* copy: out may overwrite in[i] */
        int64_t a = lo > start ? lo - start : 0;
        int64_t b = hi - start < run.n ? hi - start : run.n;
        if (lkv_kvq_bits(run.dtype)) { /* cut at tiles (both sides round alike) */
            a -= a % LKV_KVQ_TILE;
            if (b < run.n)
                b -= b % LKV_KVQ_TILE;
        }
        if (a < b)
            out[n++] = sub_run(c, &run, (int)a, (int)b);
        start += run.n;
    }
    return n;
}

/* Calls the table's kernel once per maximal group of same-dtype runs. */
static void fold_runs(const attn_call *c, const lkv_attn_block *b, const lkv_kv_run *runs, int n) {
    for (int i = 0; i < n;) {
        int j = i + 1;
        while (j < n && runs[j].dtype == runs[i].dtype)
            j++;
        c->kt->attn[runs[i].dtype](b, runs + i, j - i);
        i = j;
    }
}

static void observe_runs(const attn_call *c, const lkv_attn_block *b, const float *lse,
                         const lkv_kv_run *runs, int n) {
    for (int i = 0; i < n;) {
        int j = i + 1;
        while (j < n && runs[j].dtype == runs[i].dtype)
            j++;
        c->kt->attn_observe[runs[i].dtype](b, lse, runs + i, j - i);
        i = j;
    }
}

/* A block for query tokens [i0, i0 + n_tok) of KV head h (state pointers unset). */
static lkv_attn_block make_block(const attn_call *c, int h, int i0, int n_tok) {
    lkv_attn_block b;
    memset(&b, 0, sizeof b);
    b.d = c->d;
    b.G = c->G;
    b.n_rows = n_tok * c->G;
    b.q = c->q + (size_t)i0 * c->H * c->d + (size_t)h * c->G * c->d;
    b.q_stride = (size_t)c->H * c->d;
    b.q_pos = c->q_pos + i0;
    b.scale = c->scale;
    b.softcap = c->softcap;
    b.causal = c->causal;
    b.window = c->window;
    b.n_sink = c->n_sink;
    b.kv_stride = c->kv_stride;
    return b;
}

/* In place: acc [rows][d] becomes o, m [rows] becomes lse. */
static void finalise(int rows, int d, float *m, const float *l, float *acc) {
    for (int r = 0; r < rows; r++) {
        float *a = acc + (size_t)r * d;
        if (l[r] > 0.0f) {
            float inv = 1.0f / l[r];
            for (int ch = 0; ch < d; ch++)
                a[ch] *= inv;
            m[r] = m[r] + logf(l[r]);
        } else {
            memset(a, 0, (size_t)d * sizeof(float));
            m[r] = -INFINITY;
        }
    }
}

/* Writes finished rows (block order) of head h, tokens [i0, i0 + n_tok) to the outputs. */
static void store_rows(const attn_call *c, int h, int i0, int n_tok, const float *o_rows,
                       const float *lse_rows) {
    for (int i = 0; i < n_tok; i++) {
        for (int g = 0; g < c->G; g++) {
            int r = i * c->G + g;
            size_t at = (size_t)(i0 + i) * c->H + (size_t)h * c->G + g; /* [n_q][H] index */
            memcpy(c->o + at * c->d, o_rows + (size_t)r * c->d, (size_t)c->d * sizeof(float));
            if (c->lse)
                c->lse[at] = lse_rows[r];
            if (c->lse_rows)
                c->lse_rows[(size_t)h * c->n_q * c->G + (size_t)i0 * c->G + r] = lse_rows[r];
        }
    }
}

/* Task (chunk, head, tile): tiles from the last to the first (the most keys first). */
static void attn_task(void *arg, int task, int thread) {
    attn_call *c = arg;
    int chunk = task % c->n_chunks;
    int rest = task / c->n_chunks;
    int h = rest % c->Hk;
    int qt = c->n_qt - 1 - rest / c->Hk;
    int i0 = qt * c->q_tile;
    int n_tok = c->n_q - i0 < c->q_tile ? c->n_q - i0 : c->q_tile;
    int rows = n_tok * c->G;

    lkv_attn_block b = make_block(c, h, i0, n_tok);
    float *st = c->state + (size_t)thread * c->state_floats;
    b.acc = st;                                  /* [rows][d] */
    b.m = st + (size_t)c->q_tile * c->G * c->d;  /* [rows] */
    b.l = b.m + (size_t)c->q_tile * c->G;        /* [rows] */
    for (int r = 0; r < rows; r++) {
        b.m[r] = -INFINITY;
        b.l[r] = 0.0f;
    }
    memset(b.acc, 0, (size_t)rows * c->d * sizeof(float));

    lkv_kv_run *runs = c->runs_tmp + (size_t)thread * c->run_cap;
    int n = trim_keys(c, &c->heads[h], b.q_pos[0], b.q_pos[n_tok - 1], runs);
    if (c->n_chunks > 1)
        n = key_chunk(c, runs, n, chunk, c->n_chunks, runs);
    fold_runs(c, &b, runs, n);
    finalise(rows, c->d, b.m, b.l, b.acc);

    if (c->n_chunks == 1) {
        store_rows(c, h, i0, n_tok, b.acc, b.m);
    } else {
        size_t slot = ((size_t)h * c->n_qt + qt) * c->n_chunks + chunk;
        size_t cap = (size_t)c->q_tile * c->G; /* rows per slot */
        memcpy(c->part_o + slot * cap * c->d, b.acc, (size_t)rows * c->d * sizeof(float));
        memcpy(c->part_lse + slot * cap, b.m, (size_t)rows * sizeof(float));
    }
}

/* Task (head, tile): merges the key chunks in order and stores the result. */
static void merge_task(void *arg, int task, int thread) {
    (void)thread;
    attn_call *c = arg;
    int h = task % c->Hk, qt = task / c->Hk;
    int i0 = qt * c->q_tile;
    int n_tok = c->n_q - i0 < c->q_tile ? c->n_q - i0 : c->q_tile;
    int rows = n_tok * c->G;
    size_t cap = (size_t)c->q_tile * c->G;
    size_t slot0 = ((size_t)h * c->n_qt + qt) * c->n_chunks;
    float *o0 = c->part_o + slot0 * cap * c->d, *lse0 = c->part_lse + slot0 * cap;
    for (int k = 1; k < c->n_chunks; k++)
        merge_rows(rows, c->d, o0, lse0, c->part_o + (slot0 + k) * cap * c->d,
                   c->part_lse + (slot0 + k) * cap);
    store_rows(c, h, i0, n_tok, o0, lse0);
}

/* Task (chunk, head): the observer pass over one chunk of a head's keys, all queries. */
static void observe_task(void *arg, int task, int thread) {
    attn_call *c = arg;
    int chunk = task % c->obs_chunks, h = task / c->obs_chunks;
    lkv_attn_block b = make_block(c, h, 0, c->n_q);
    lkv_kv_run *runs = c->runs_tmp + (size_t)thread * c->run_cap;
    int n = key_chunk(c, c->heads[h].runs, c->heads[h].n_runs, chunk, c->obs_chunks, runs);
    observe_runs(c, &b, c->lse_rows + (size_t)h * c->n_q * c->G, runs, n);
}

static int ceil_div(int64_t a, int64_t b) { return (int)((a + b - 1) / b); }

/* Chooses tiles and chunks. split_keys: 1 = flash-decoding allowed. */
static void plan(attn_call *c, int split_keys) {
    int nt = c->n_threads;
    int tile = STATE_BUDGET_FLOATS / (c->d + 2) / c->G;
    tile = tile < 1 ? 1 : tile > MAX_Q_TILE ? MAX_Q_TILE : tile;
    if (tile > c->n_q)
        tile = c->n_q;
    int64_t want = 2 * (int64_t)nt; /* tasks to keep every thread busy */
    if (!split_keys && nt > 1 && (int64_t)c->Hk * ceil_div(c->n_q, tile) < want) {
        tile = ceil_div((int64_t)c->n_q * c->Hk, want);
        tile = tile < 1 ? 1 : tile;
    }
    c->q_tile = tile;
    c->n_qt = ceil_div(c->n_q, tile);
    c->n_chunks = 1;
    if (split_keys && nt > 1) {
        int64_t tasks = (int64_t)c->Hk * c->n_qt;
        int64_t chunks = tasks < want ? (want + tasks - 1) / tasks : 1;
        int64_t most = c->max_keys / MIN_CHUNK_KEYS;
        if (chunks > most)
            chunks = most;
        c->n_chunks = chunks < 1 ? 1 : (int)chunks;
    }
    int64_t oc = (want + c->Hk - 1) / c->Hk;
    int64_t most = c->max_keys / MIN_CHUNK_KEYS;
    if (oc > most)
        oc = most;
    c->obs_chunks = oc < 1 ? 1 : (int)oc;
}

/* count * each floats (or runs), NULL on overflow or failure. */
static void *alloc_n(size_t count, size_t each) {
    size_t bytes;
    if (lkv_mul_size(count, each, &bytes))
        return NULL;
    return lkv_malloc(bytes ? bytes : 1);
}

static int execute(attn_call *c, int split_keys, lkv_threadpool *tp) {
    c->kt = lkv_kernels();
    c->n_threads = lkv_threadpool_size(tp);
    plan(c, split_keys);
    int64_t n_tasks = (int64_t)c->Hk * c->n_qt * c->n_chunks;
    if (n_tasks > INT_MAX || (int64_t)c->Hk * c->obs_chunks > INT_MAX)
        LKV_FAIL(LKV_ERR_INVALID, "%s: too much work for one call (%lld tasks)", c->fn,
                 (long long)n_tasks);

    int rc = LKV_OK;
    size_t rows_cap = (size_t)c->q_tile * c->G;
    c->run_cap = 2 * c->max_runs + 2;
    c->state_floats = (rows_cap * (c->d + 2) + 15) / 16 * 16; /* keep each slab 64-byte aligned */
    c->runs_tmp = alloc_n((size_t)c->n_threads * c->run_cap, sizeof(lkv_kv_run));
    c->state = alloc_n((size_t)c->n_threads * c->state_floats, sizeof(float));
    if (!c->runs_tmp || !c->state)
        goto nomem;
    if (c->n_chunks > 1) {
        size_t slots = (size_t)c->Hk * c->n_qt * c->n_chunks;
        c->part_o = alloc_n(slots * rows_cap, (size_t)c->d * sizeof(float));
        c->part_lse = alloc_n(slots * rows_cap, sizeof(float));
        if (!c->part_o || !c->part_lse)
            goto nomem;
    }
    if (c->has_obs) {
        c->lse_rows = alloc_n((size_t)c->Hk * c->n_q * c->G, sizeof(float));
        if (!c->lse_rows)
            goto nomem;
    }

    lkv_threadpool_run(tp, (int)n_tasks, attn_task, c);
    if (c->n_chunks > 1)
        lkv_threadpool_run(tp, c->Hk * c->n_qt, merge_task, c);
    if (c->has_obs)
        lkv_threadpool_run(tp, c->Hk * c->obs_chunks, observe_task, c);
    goto done;

nomem:
    rc = lkv_set_error(LKV_ERR_NOMEM, "%s: out of memory for attention scratch", c->fn);
done:
    lkv_free(c->runs_tmp);
    lkv_free(c->state);
    lkv_free(c->part_o);
    lkv_free(c->part_lse);
    lkv_free(c->lse_rows);
    return rc;
}

/* -------------------------------------------------------------- validation */

static int check_dtype(const char *fn, lkv_dtype dt, int need_observe) {
    if ((int)dt < 0 || (int)dt >= LKV_DTYPE_COUNT_)
        LKV_FAIL(LKV_ERR_INVALID, "%s: K/V dtype %d is not a known dtype", fn, (int)dt);
    const lkv_kernel_table *t = lkv_kernels();
    if (!t->attn[dt] || (need_observe && !t->attn_observe[dt]))
        LKV_FAIL(LKV_ERR_UNSUPPORTED, "%s: no attention kernel for K/V dtype %s", fn,
                 lkv_dtype_name(dt));
    return LKV_OK;
}

/* Fills the shape part of c from p, n_q and the query/output buffers. */
static int check_common(attn_call *c, const char *fn, const lkv_attn_params *p, int n_q,
                        const float *q, float *o) {
    memset(c, 0, sizeof *c);
    c->fn = fn;
    if (!p)
        LKV_FAIL(LKV_ERR_INVALID, "%s: params is NULL", fn);
    if (p->head_dim < 8 || p->head_dim > LKV_ATTN_MAX_HEAD_DIM || p->head_dim % 8 != 0)
        LKV_FAIL(LKV_ERR_INVALID, "%s: head_dim=%d must be a multiple of 8 in [8, %d]", fn,
                 p->head_dim, LKV_ATTN_MAX_HEAD_DIM);
    if (p->q_heads <= 0 || p->kv_heads <= 0 || p->q_heads > MAX_HEADS)
        LKV_FAIL(LKV_ERR_INVALID, "%s: q_heads=%d and kv_heads=%d must be in [1, %d]", fn,
                 p->q_heads, p->kv_heads, MAX_HEADS);
    if (p->q_heads % p->kv_heads != 0)
        LKV_FAIL(LKV_ERR_INVALID, "%s: q_heads=%d is not a multiple of kv_heads=%d", fn,
                 p->q_heads, p->kv_heads);
    if (!isfinite(p->scale) || p->scale < 0.0f)
        LKV_FAIL(LKV_ERR_INVALID, "%s: scale=%g must be finite and >= 0 (0 = 1/sqrt(d))", fn,
                 (double)p->scale);
    if (!isfinite(p->softcap) || p->softcap < 0.0f)
        LKV_FAIL(LKV_ERR_INVALID, "%s: softcap=%g must be finite and >= 0 (0 = off)", fn,
                 (double)p->softcap);
    if (p->window < 0 || p->n_sink < 0)
        LKV_FAIL(LKV_ERR_INVALID, "%s: window=%d and n_sink=%d must be >= 0", fn, p->window,
                 p->n_sink);
    if (n_q < 0)
        LKV_FAIL(LKV_ERR_INVALID, "%s: n_q=%d is negative", fn, n_q);
    if (n_q > 0 && (!q || !o))
        LKV_FAIL(LKV_ERR_INVALID, "%s: q or o is NULL", fn);
    if (n_q > 0 && (const float *)o == q)
        LKV_FAIL(LKV_ERR_INVALID, "%s: o may not alias q", fn);
    c->d = p->head_dim;
    c->H = p->q_heads;
    c->Hk = p->kv_heads;
    c->G = c->H / c->Hk;
    c->scale = p->scale > 0.0f ? p->scale : 1.0f / sqrtf((float)c->d);
    c->softcap = p->softcap;
    c->causal = p->causal != 0;
    c->window = p->window;
    c->n_sink = p->n_sink;
    c->n_q = n_q;
    c->q = q;
    c->o = o;
    return LKV_OK;
}

/* Positions of n keys: given (strictly ascending) or pos0 + t; all >= 0. */
static int check_positions(const char *fn, const char *what, const int32_t *pos, int32_t pos0,
                           int n, int strict) {
    if (n <= 0)
        return LKV_OK;
    if (!pos) {
        if (pos0 < 0 || (int64_t)pos0 + n - 1 > INT32_MAX)
            LKV_FAIL(LKV_ERR_INVALID, "%s: %s positions %d..%lld must be in [0, INT32_MAX]", fn,
                     what, pos0, (long long)pos0 + n - 1);
        return LKV_OK;
    }
    for (int i = 0; i < n; i++) {
        if (pos[i] < 0)
            LKV_FAIL(LKV_ERR_INVALID, "%s: %s position %d at index %d is negative", fn, what,
                     pos[i], i);
        if (i > 0 && (strict ? pos[i] <= pos[i - 1] : pos[i] < pos[i - 1]))
            LKV_FAIL(LKV_ERR_INVALID, "%s: %s positions must be %s (index %d: %d after %d)", fn,
                     what, strict ? "strictly ascending" : "non-decreasing", i, pos[i],
                     pos[i - 1]);
    }
    return LKV_OK;
}

/* Query positions into c->q_pos; *owned receives an allocation to free (or NULL). */
static int resolve_q_pos(attn_call *c, const int32_t *q_pos, int32_t q_pos0, int32_t **owned) {
    *owned = NULL;
    LKV_TRY(check_positions(c->fn, "query", q_pos, q_pos0, c->n_q, 0));
    if (q_pos) {
        c->q_pos = q_pos;
        return LKV_OK;
    }
    int32_t *qp = alloc_n((size_t)c->n_q, sizeof(int32_t));
    if (!qp)
        LKV_FAIL(LKV_ERR_NOMEM, "%s: out of memory for query positions", c->fn);
    for (int i = 0; i < c->n_q; i++)
        qp[i] = q_pos0 + i;
    c->q_pos = qp;
    *owned = qp;
    return LKV_OK;
}

/* ------------------------------------------------------------ public API */

static int attn_contiguous(const char *fn, int split_keys, const lkv_attn_params *p, int n_q,
                           const float *q, const int32_t *q_pos, int32_t q_pos0,
                           const lkv_kv_tensor *kv, float *o, float *lse, float *obs,
                           lkv_threadpool *tp) {
    attn_call c;
    LKV_TRY(check_common(&c, fn, p, n_q, q, o));
    if (!kv)
        LKV_FAIL(LKV_ERR_INVALID, "%s: kv is NULL", fn);
    LKV_TRY(check_dtype(fn, kv->dtype, obs != NULL));
    if (lkv_kvq_is_quant(kv->dtype)) /* packed rows have no element strides: use runs */
        LKV_FAIL(LKV_ERR_UNSUPPORTED, "%s: quantized K/V (%s) is only accepted by lkv_attn_runs",
                 fn, lkv_dtype_name(kv->dtype));
    if (kv->n < 0)
        LKV_FAIL(LKV_ERR_INVALID, "%s: kv->n=%d is negative", fn, kv->n);
    if (kv->n > 0 && (!kv->k || !kv->v))
        LKV_FAIL(LKV_ERR_INVALID, "%s: kv->k or kv->v is NULL", fn);
    if (kv->n > 1 && kv->token_stride < (size_t)c.d)
        LKV_FAIL(LKV_ERR_INVALID, "%s: kv->token_stride=%zu is smaller than head_dim=%d", fn,
                 kv->token_stride, c.d);
    if (kv->n > 0 && c.Hk > 1 && kv->head_stride < (size_t)c.d)
        LKV_FAIL(LKV_ERR_INVALID, "%s: kv->head_stride=%zu is smaller than head_dim=%d", fn,
                 kv->head_stride, c.d);
    LKV_TRY(check_positions(fn, "key", kv->pos, kv->pos0, kv->n, 1));
    if (n_q == 0)
        return LKV_OK;

    int32_t *owned_q_pos;
    LKV_TRY(resolve_q_pos(&c, q_pos, q_pos0, &owned_q_pos));
    /* one run per KV head, pointing into the tensor */
    size_t bytes = (size_t)c.Hk * (sizeof(lkv_kv_head_runs) + sizeof(lkv_kv_run));
    void *mem = lkv_malloc(bytes);
    if (!mem) {
        lkv_free(owned_q_pos);
        LKV_FAIL(LKV_ERR_NOMEM, "%s: out of memory for the run table", fn);
    }
    lkv_kv_head_runs *heads = mem;                        /* [Hk] */
    lkv_kv_run *runs = (lkv_kv_run *)(heads + c.Hk);      /* [Hk] */
    size_t esz = lkv_dtype_size(kv->dtype);
    for (int h = 0; h < c.Hk; h++) {
        lkv_kv_run *r = &runs[h];
        memset(r, 0, sizeof *r);
        r->dtype = kv->dtype;
        r->k = kv->n ? (const char *)kv->k + (size_t)h * kv->head_stride * esz : NULL;
        r->v = kv->n ? (const char *)kv->v + (size_t)h * kv->head_stride * esz : NULL;
        r->pos = kv->pos;
        r->pos0 = kv->pos0;
        r->n = kv->n;
        r->obs = obs ? obs + (size_t)h * kv->n : NULL;
        heads[h].runs = r;
        heads[h].n_runs = 1;
    }
    c.lse = lse;
    c.heads = heads;
    c.kv_stride = kv->token_stride;
    c.max_runs = 1;
    c.max_keys = kv->n;
    c.has_obs = obs != NULL;
    int rc = execute(&c, split_keys, tp);
    lkv_free(mem);
    lkv_free(owned_q_pos);
    return rc;
}

int lkv_attn_prefill(const lkv_attn_params *p, int n_q, const float *q, const int32_t *q_pos,
                     int32_t q_pos0, const lkv_kv_tensor *kv, float *o, float *lse, float *obs,
                     lkv_threadpool *tp) {
    return attn_contiguous("attn_prefill", 0, p, n_q, q, q_pos, q_pos0, kv, o, lse, obs, tp);
}

int lkv_attn_decode(const lkv_attn_params *p, int n_q, const float *q, const int32_t *q_pos,
                    int32_t q_pos0, const lkv_kv_tensor *kv, float *o, float *lse, float *obs,
                    lkv_threadpool *tp) {
    return attn_contiguous("attn_decode", 1, p, n_q, q, q_pos, q_pos0, kv, o, lse, obs, tp);
}

int lkv_attn_runs(const lkv_attn_params *p, int n_q, const float *q, const int32_t *q_pos,
                  int32_t q_pos0, const lkv_kv_head_runs *heads, float *o, float *lse,
                  lkv_threadpool *tp) {
    const char *fn = "attn_runs";
    attn_call c;
    LKV_TRY(check_common(&c, fn, p, n_q, q, o));
    if (!heads)
        LKV_FAIL(LKV_ERR_INVALID, "%s: heads is NULL", fn);
    int max_runs = 0, has_obs = 0;
    int64_t max_keys = 0;
    for (int h = 0; h < c.Hk; h++) {
        const lkv_kv_head_runs *hr = &heads[h];
        if (hr->n_runs < 0 || (hr->n_runs > 0 && !hr->runs))
            LKV_FAIL(LKV_ERR_INVALID, "%s: head %d: n_runs=%d with runs %s", fn, h, hr->n_runs,
                     hr->runs ? "set" : "NULL");
        if (hr->n_runs > (INT_MAX - 2) / 2)
            LKV_FAIL(LKV_ERR_INVALID, "%s: head %d: too many runs (%d)", fn, h, hr->n_runs);
        int64_t keys = 0, last = -1;
        for (int i = 0; i < hr->n_runs; i++) {
            const lkv_kv_run *r = &hr->runs[i];
            if (r->n < 0)
                LKV_FAIL(LKV_ERR_INVALID, "%s: head %d run %d: n=%d is negative", fn, h, i, r->n);
            if (r->n == 0)
                continue;
            LKV_TRY(check_dtype(fn, r->dtype, r->obs != NULL));
            if (!r->k || !r->v)
                LKV_FAIL(LKV_ERR_INVALID, "%s: head %d run %d: k or v is NULL", fn, h, i);
            if (lkv_kvq_is_quant(r->dtype) && (!r->k_aux || !r->v_aux))
                LKV_FAIL(LKV_ERR_INVALID, "%s: head %d run %d: %s run without k_aux/v_aux", fn,
                         h, i, lkv_dtype_name(r->dtype));
            LKV_TRY(check_positions(fn, "key", r->pos, r->pos0, r->n, 1));
            if (run_pos(r, 0) <= last)
                LKV_FAIL(LKV_ERR_INVALID,
                         "%s: head %d run %d starts at position %d, not after the previous "
                         "run's last position %lld",
                         fn, h, i, run_pos(r, 0), (long long)last);
            last = run_pos(r, r->n - 1);
            keys += r->n;
            has_obs |= r->obs != NULL;
        }
        max_runs = hr->n_runs > max_runs ? hr->n_runs : max_runs;
        max_keys = keys > max_keys ? keys : max_keys;
    }
    if (n_q == 0)
        return LKV_OK;
    int32_t *owned_q_pos;
    LKV_TRY(resolve_q_pos(&c, q_pos, q_pos0, &owned_q_pos));
    c.lse = lse;
    c.heads = heads;
    c.kv_stride = 0;
    c.max_runs = max_runs;
    c.max_keys = max_keys;
    c.has_obs = has_obs;
    int rc = execute(&c, n_q <= RUNS_SPLIT_MAX_Q, tp);
    lkv_free(owned_q_pos);
    return rc;
}
