/*
 * longkv.h -- the one public header of liblongkv.
 *
 * OVERVIEW
 *   longkv runs long-context LLM inference on CPUs within a memory budget. It holds
 *   the KV cache in a paged, budgeted store, compresses it with named policies
 *   ("presses"), computes attention directly over the compressed or sparse cache,
 *   and measures what each choice costs.
 *
 *   The API is layered like the library:
 *     1. common     errors, thread pools, CPU/ISA information.
 *     2. kernels    exact attention (prefill / decode / merge) over contiguous or
 *                   paged ("runs of tokens") K/V, usable without anything else.
 *     3. kv         the paged, budgeted cache (added by later sections).
 *     4. press      compression and selection policies.
 *     5. model      GGUF models, tokenizer, forward pass.
 *     6. eval       tasks, metrics and reports.
 *
 * CONVENTIONS
 *   - Every function that can fail returns an int: 0 (LKV_OK) on success or a
 *     negative lkv_error code. lkv_strerror() names a code; lkv_last_error() gives
 *     the calling thread's last detailed message.
 *   - Handles are opaque, created by lkv_X_create() and released by lkv_X_free();
 *     lkv_X_free(NULL) is a no-op.
 *   - Parameter structs are initialised with lkv_X_default_params().
 *   - Thread count and scratch memory are explicit parameters: the library keeps
 *     no hidden global thread pool.
 *   - The library never calls exit() or abort() on user input; running out of
 *     memory is an error like any other (LKV_ERR_NOMEM).
 *
 * WORKED EXAMPLE (attention without the rest of the library)
 *
 *     lkv_threadpool *tp = NULL;
 *     lkv_threadpool_create(2, &tp);
 *     lkv_attn_params p = lkv_attn_default_params();
 *     p.head_dim = 64; p.q_heads = 9; p.kv_heads = 3; p.causal = 1;
 *     lkv_kv_tensor kv = {LKV_DTYPE_F16, k, v, n_kv, 3 * 64, 64, NULL, 0};
 *     // k, v: [n_kv][3][64] f16; q: [n_q][9][64] f32; o: [n_q][9][64] f32
 *     int rc = lkv_attn_prefill(&p, n_q, q, NULL, n_kv - n_q, &kv, o, NULL, NULL, tp);
 *     if (rc < 0) fprintf(stderr, "%s\n", lkv_last_error());
 *     lkv_threadpool_free(tp);
 */
#ifndef LONGKV_H
#define LONGKV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ================================================================== version */

#define LKV_VERSION_MAJOR 0
#define LKV_VERSION_MINOR 1
#define LKV_VERSION_PATCH 0
#define LKV_VERSION_STRING "0.1.0"

/* Returns the library's version string (may differ from the header's). */
const char *lkv_version(void);

/* =================================================================== errors */

/* Error codes. Enums only grow: values are stable across versions. */
typedef enum lkv_error {
    LKV_OK = 0,
    LKV_ERR_INVALID = -1,     /* an argument is out of range, NULL or inconsistent */
    LKV_ERR_NOMEM = -2,       /* an allocation (or OS commit) failed */
    LKV_ERR_BUDGET = -3,      /* the operation would exceed a memory budget */
    LKV_ERR_UNSUPPORTED = -4, /* valid request that this build does not implement */
    LKV_ERR_IO = -5,          /* reading or writing a file or socket failed */
    LKV_ERR_FORMAT = -6,      /* a file or message is malformed or corrupt */
    LKV_ERR_VERSION = -7,     /* a file's version or identity does not match */
    LKV_ERR_NOT_FOUND = -8,   /* a key, name or file does not exist */
    LKV_ERR_THREAD = -9,      /* creating a thread failed */
    LKV_ERR_STATE = -10,      /* the handle is not in a state that allows the call */
    LKV_ERR_RANGE = -11       /* a position, token or index is outside what is held */
} lkv_error;

/* Short, static description of an error code ("invalid argument", ...). */
const char *lkv_strerror(int code);

/* The calling thread's last error message, with details (never NULL; "" if none).
 * Valid until the next failing call on the same thread. */
const char *lkv_last_error(void);

/* ============================================================ thread pools */

typedef struct lkv_threadpool lkv_threadpool;

/* Creates a pool of n_threads workers (the calling thread counts as one, so
 * n_threads = 1 starts no thread). 1 <= n_threads <= 256.
 * Returns LKV_OK, LKV_ERR_INVALID, LKV_ERR_NOMEM or LKV_ERR_THREAD. */
int lkv_threadpool_create(int n_threads, lkv_threadpool **out);

/* Number of threads of the pool (1 for NULL). */
int lkv_threadpool_size(const lkv_threadpool *tp);

/* Stops and joins the workers. NULL is a no-op. */
void lkv_threadpool_free(lkv_threadpool *tp);

/* Runs fn(arg, task, thread) for task = 0..n_tasks-1 on the pool and the calling
 * thread; returns when all tasks are done. thread is in [0, size). With tp ==
 * NULL runs everything on the caller. Not reentrant: one run per pool at a time. */
void lkv_threadpool_run(lkv_threadpool *tp, int n_tasks,
                        void (*fn)(void *arg, int task, int thread), void *arg);

/* ================================================= CPU features and kernels */

/* Instruction-set levels, in increasing order. */
typedef enum lkv_isa {
    LKV_ISA_REF = 0,    /* portable scalar C (the specification) */
    LKV_ISA_AVX2 = 1,   /* AVX2 + FMA + F16C */
    LKV_ISA_AVX512 = 2  /* AVX-512 F/BW/DQ/VL (+ BF16, VNNI where present) */
} lkv_isa;

/* Highest level the CPU and OS support (cpuid + XGETBV checks). */
lkv_isa lkv_cpu_isa(void);

/* Level the kernel table uses: the CPU's level, lowered by the environment
 * variable LONGKV_ISA=ref|avx2|avx512 (a request above what the CPU supports is
 * clamped down and reported by lkv_kernels_describe). */
lkv_isa lkv_active_isa(void);

/* Forces the kernel table to a level (clamped to the CPU's). For tests and
 * benchmarks; not thread-safe with concurrent kernel calls. Returns the level set. */
lkv_isa lkv_set_isa(lkv_isa isa);

/* Name of a level: "ref", "avx2", "avx512". */
const char *lkv_isa_name(lkv_isa isa);

/* Writes a one-line-per-op description of the active kernels into buf
 * ("attn.f16: avx512", ...), NUL-terminated, truncated to cap bytes.
 * Returns the length it wanted to write. */
size_t lkv_kernels_describe(char *buf, size_t cap);

/* ================================================================ attention */

/* Element types of cached K/V. Enums only grow (quantized formats come later). */
typedef enum lkv_dtype {
    LKV_DTYPE_F32 = 0,
    LKV_DTYPE_F16 = 1,
    LKV_DTYPE_BF16 = 2,
    LKV_DTYPE_COUNT_ /* not a type */
} lkv_dtype;

/* Size in bytes of one element of a plain dtype (0 for packed/quantized ones). */
size_t lkv_dtype_size(lkv_dtype t);
const char *lkv_dtype_name(lkv_dtype t);

/* Shape and masking of one attention call. Positions: every query and key carries
 * a position (its index in the original sequence). Key j is visible to query i iff
 *     (!causal || pos_k[j] <= pos_q[i])
 * and (window == 0 || pos_q[i] - pos_k[j] < window || pos_k[j] < n_sink).   */
typedef struct lkv_attn_params {
    int head_dim;   /* d: a multiple of 8, 8 <= d <= 256 (64, 80, 128, 256 typical) */
    int q_heads;    /* H: query heads */
    int kv_heads;   /* Hk: KV heads; H % Hk == 0 (G = H / Hk queries share a KV head) */
    float scale;    /* logit scale; 0 means 1/sqrt(d) */
    float softcap;  /* 0 = off; else logits become softcap * tanh(logit / softcap) */
    int causal;     /* 1 = causal mask by position */
    int window;     /* 0 = off; else sliding window of this many positions */
    int n_sink;     /* with a window: keys at positions < n_sink stay visible */
} lkv_attn_params;

/* head_dim 0 (must be set), 1 head each, scale 0 (= 1/sqrt(d)), causal 1, no
 * window, no sinks, no soft-cap. */
lkv_attn_params lkv_attn_default_params(void);

/* Contiguous K/V of kv_heads heads, n tokens. Element (token t, head h, channel c)
 * of K is at k + t*token_stride + h*head_stride + c (strides in elements), the
 * same for V. Common layouts: token-major [n][Hk][d] (token_stride = Hk*d,
 * head_stride = d) and head-major [Hk][n][d] (token_stride = d, head_stride = n*d). */
typedef struct lkv_kv_tensor {
    lkv_dtype dtype;
    const void *k;
    const void *v;
    int n;                /* tokens */
    size_t token_stride;  /* elements */
    size_t head_stride;   /* elements */
    const int32_t *pos;   /* [n] strictly ascending positions, or NULL: pos0 + t */
    int32_t pos0;
} lkv_kv_tensor;

/* One run of consecutive cache slots of one KV head (e.g. one page), rows of
 * head_dim elements packed densely ([n][d]). Runs of a head are given in
 * ascending position order; positions inside a run are strictly ascending. */
typedef struct lkv_kv_run {
    lkv_dtype dtype;
    const void *k;        /* [n][d] */
    const void *v;        /* [n][d] */
    const void *k_aux;    /* format metadata (scales...) for quantized dtypes, else NULL */
    const void *v_aux;
    const int32_t *pos;   /* [n] positions, or NULL: pos0 + t */
    int32_t pos0;
    int n;                /* tokens in the run, >= 0 */
    float *obs;           /* [n] observer accumulator for these slots, or NULL */
} lkv_kv_run;

/* The runs of one KV head. */
typedef struct lkv_kv_head_runs {
    const lkv_kv_run *runs;
    int n_runs;
} lkv_kv_head_runs;

/* Exact attention of n_q query tokens (FlashAttention-style tiling with online
 * softmax; never materialises the score matrix). Threads split query tiles and
 * heads.
 *   q     [n_q][H][d] f32
 *   q_pos [n_q] positions of the queries, or NULL: q_pos0 + i
 *   kv    contiguous K/V with kv_heads heads
 *   o     [n_q][H][d] f32 output (may not alias q)
 *   lse   [n_q][H] log-sum-exp of each row's scaled logits, or NULL. A row that
 *         sees no key gets o = 0 and lse = -INFINITY.
 *   obs   [Hk][kv->n] observer, or NULL. When given, the attention probability of
 *         each key, summed over the queries (and the G heads) that share its KV
 *         head, is ADDED to obs (the caller zeroes it). Costs a second QK pass.
 *   tp    thread pool or NULL (single-threaded).
 * Returns LKV_OK, LKV_ERR_INVALID (with a message) or LKV_ERR_NOMEM. */
int lkv_attn_prefill(const lkv_attn_params *p, int n_q, const float *q,
                     const int32_t *q_pos, int32_t q_pos0, const lkv_kv_tensor *kv,
                     float *o, float *lse, float *obs, lkv_threadpool *tp);

/* Same contract as lkv_attn_prefill, tuned for few queries against a long KV:
 * splits the key range across threads (split-KV / flash-decoding) and merges the
 * partial (output, LSE) pairs exactly. */
int lkv_attn_decode(const lkv_attn_params *p, int n_q, const float *q,
                    const int32_t *q_pos, int32_t q_pos0, const lkv_kv_tensor *kv,
                    float *o, float *lse, float *obs, lkv_threadpool *tp);

/* Attention over runs (pages): heads[h] lists the runs of KV head h (heads may
 * hold different numbers of tokens). Observer masses go to each run's obs.
 * Splits keys across threads when n_q is small, queries otherwise. */
int lkv_attn_runs(const lkv_attn_params *p, int n_q, const float *q,
                  const int32_t *q_pos, int32_t q_pos0,
                  const lkv_kv_head_runs *heads, float *o, float *lse,
                  lkv_threadpool *tp);

/* Merges two partial results over disjoint key sets into the exact result over
 * their union: lse = log(e^lse_a + e^lse_b), o = e^(lse_a-lse)*o_a + e^(lse_b-lse)*o_b.
 * rows rows of d floats. Writes into (o_a, lse_a). Rows with lse -INF are empty. */
void lkv_attn_merge(int rows, int d, float *o_a, float *lse_a,
                    const float *o_b, const float *lse_b);

/* ============================================================ conversions */

uint16_t lkv_fp32_to_fp16(float f);
float lkv_fp16_to_fp32(uint16_t h);
uint16_t lkv_fp32_to_bf16(float f);   /* round to nearest even; NaN stays NaN */
float lkv_bf16_to_fp32(uint16_t b);

/* Converts n floats to dtype t (F32/F16/BF16) at dst. */
int lkv_convert_from_f32(lkv_dtype t, void *dst, const float *src, size_t n);

/* @@ SECTION kv (the paged cache) -- added by the kv layer */

/* @@ SECTION press (policies) */

/* @@ SECTION model */

/* @@ SECTION eval */

#ifdef __cplusplus
}
#endif
#endif /* LONGKV_H */
