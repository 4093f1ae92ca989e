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
    LKV_ISA_AVX512 = 2, /* AVX-512 F/BW/DQ/VL (+ BF16 where present) */
    LKV_ISA_AVX512VNNI = 3 /* AVX-512 + VNNI (integer dot products: the
                              quantized weight products) */
} lkv_isa;

/* Highest level the CPU and OS support (cpuid + XGETBV checks). */
lkv_isa lkv_cpu_isa(void);

/* Level the kernel table uses: the CPU's level, lowered by the environment
 * variable LONGKV_ISA=ref|avx2|avx512|avx512vnni (a request above what the CPU supports is
 * clamped down and reported by lkv_kernels_describe). */
lkv_isa lkv_active_isa(void);

/* Forces the kernel table to a level (clamped to the CPU's). For tests and
 * benchmarks; not thread-safe with concurrent kernel calls. Returns the level set. */
lkv_isa lkv_set_isa(lkv_isa isa);

/* Name of a level: "ref", "avx2", "avx512", "avx512vnni". */
const char *lkv_isa_name(lkv_isa isa);

/* Writes a one-line-per-op description of the active kernels into buf
 * ("attn.f16: avx512", ...), NUL-terminated, truncated to cap bytes.
 * Returns the length it wanted to write. */
size_t lkv_kernels_describe(char *buf, size_t cap);

/* ================================================================ attention */

/* Element types of cached K/V. Enums only grow.
 *
 * Quantized dtypes (Q8, KIVI4, KIVI2) are accepted by lkv_attn_runs only (not
 * by the contiguous lkv_attn_prefill / lkv_attn_decode). Their runs pack K/V as
 * below; every scale and min is an IEEE half (uint16). Dequantized value x'
 * of code q:
 *   Q8     k [n][d] int8, k_aux [n] scale per key row;    x' = scale * q
 *          v [n][d] int8, v_aux [n] scale per value row   (symmetric, q in -127..127)
 *          A Q8 run may start at any token of its page.
 *   KIVIb  (b = 4 or 2 bits; asymmetric min-max, KIVI, Liu et al. 2024)
 *          keys quantized per channel over the run's key group (a whole page):
 *          k_aux [2][d]: scale[d] then min[d], shared by every token of the run
 *          (so a KIVI run never spans two pages);        x' = min_c + scale_c * q
 *          values per token over groups of 32 channels (the last group of a
 *          row may be shorter when d % 32 != 0).
 *          Tokens come in tiles of 16 (a run starts at a tile; the slots of its
 *          last tile past n hold code 0, value scale 0). With P = 32/b codes per
 *          32-bit word and C = d rounded up to a multiple of P, a tile holds
 *          16 * R bytes of K and of V codes, R = b*C/8 per token:
 *          k     [C/P][16] words: word (j, i) has the codes of channels j*P + m
 *                of the tile's token i in bits [b*m, b*m + b) (a vector of 16
 *                words = 16 tokens x P channels: no dot product needs a
 *                horizontal sum);
 *          v     [16/P][C] words: word (h, c) has the codes of channel c of
 *                tokens h*P + m in bits [b*m, b*m + b) (16 channels x P tokens);
 *          v_aux per tile [ceil(d/32)][2][16]: the scales of the 16 tokens for
 *                group 0, then their mins, then group 1, ...
 *          lkv_kv_quant_bytes gives the sizes, lkv_kv_quantize encodes.
 *          The SIMD kernels take the dot products in integers: q o scale rounded
 *          to int16 per run, p o vscale per row and block (error about 2^-15 of
 *          the largest term; the reference kernel is f32 throughout).
 */
typedef enum lkv_dtype {
    LKV_DTYPE_F32 = 0,
    LKV_DTYPE_F16 = 1,
    LKV_DTYPE_BF16 = 2,
    LKV_DTYPE_Q8 = 3,    /* int8 per token (K and V rows each with one scale) */
    LKV_DTYPE_KIVI4 = 4, /* KIVI 4-bit: keys per channel over the page, values per token */
    LKV_DTYPE_KIVI2 = 5, /* KIVI 2-bit */
    LKV_DTYPE_COUNT_ /* not a type */
} lkv_dtype;

/* Size in bytes of one element of a plain dtype (0 for packed/quantized ones). */
size_t lkv_dtype_size(lkv_dtype t);
/* "f32", "f16", "bf16", "q8", "kivi4", "kivi2" ("unknown" otherwise). */
const char *lkv_dtype_name(lkv_dtype t);

/* Bytes of the four arrays of an n-token run of quantized dtype t with head
 * dim d (layouts above; KIVI: whole tiles): K codes, k_aux, V codes, v_aux. Any pointer may be
 * NULL. Returns LKV_OK or LKV_ERR_INVALID (not a quantized dtype, d not a
 * multiple of 8 in [8, 256], n < 0). */
int lkv_kv_quant_bytes(lkv_dtype t, int d, int n, size_t *k_codes, size_t *k_aux,
                       size_t *v_codes, size_t *v_aux);

/* Encodes n tokens of one KV head, k and v [n][d] f32, into the arrays of one
 * quantized run (sized by lkv_kv_quant_bytes), e.g. for a runtime that keeps
 * its own cache and calls lkv_attn_runs. For KIVI the n tokens are one key
 * group (one run). Element error is at most half the stored scale.
 * Returns LKV_OK or LKV_ERR_INVALID. Thread-safe. */
int lkv_kv_quantize(lkv_dtype t, int d, int n, const float *k, const float *v, void *k_codes,
                    void *k_aux, void *v_codes, void *v_aux);

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
    const int32_t *pos;   /* [n] strictly ascending positions >= 0, or NULL: pos0 + t */
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
    const int32_t *pos;   /* [n] positions (>= 0), or NULL: pos0 + t */
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
 *   q_pos [n_q] positions of the queries (>= 0, non-decreasing), or NULL: q_pos0 + i
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

/* ================================================================ roofline */

/* Machine limits, measured (not looked up), so that benchmarks can report what
 * fraction of the hardware a kernel achieves in the same run. Both functions use
 * the best kernels the CPU supports (lkv_cpu_isa()), whatever the active level,
 * because they measure the machine, not a kernel. Both take a few tenths of a
 * second, keep the best of several repetitions, and are not thread-safe with
 * other runs on the same pool.
 *
 * min_seconds: how long to keep repeating, 0 < min_seconds <= 60, or 0 for the
 *   default (0.2 s). The first repetition is a warm-up and is not counted.
 * tp: the threads to measure with (NULL = the calling thread only); every
 *   thread of the pool works at once.
 */

/* Read bandwidth: the threads stream through a working set of `bytes` bytes
 * (split into one contiguous slice per thread) and sum it, over and over; one
 * repetition reads at most 16 MiB per thread (moving on through the slice), so
 * that short quiet moments of a busy machine are enough for a good estimate.
 * Choose bytes much larger than the last-level cache for DRAM bandwidth (e.g.
 * 256 MiB), or at most half the L2 size times the thread count for cache
 * bandwidth. 4096 * threads <= bytes <= 2^40. The buffer is allocated (and
 * freed) inside; *gbps receives 1e9 bytes per second.
 * Returns LKV_OK, LKV_ERR_INVALID or LKV_ERR_NOMEM. */
int lkv_measure_read_bandwidth(size_t bytes, double min_seconds, lkv_threadpool *tp,
                               double *gbps);

/* A read probe: DRAM read bandwidth measured step by step, so that a benchmark
 * can interleave its own repetitions with reads of the same size and compare
 * the two under the same conditions (on a shared machine the bandwidth left
 * to one program moves by 2x within seconds). create allocates a working set
 * of `bytes` (split into one slice per thread of tp, NULL = the calling
 * thread; choose it much larger than the last-level cache) and touches it
 * from the threads that will read it. Each step streams the next `bytes`
 * bytes of the working set (wrapping around; every thread its share of its
 * slice) and returns the wall time in *seconds; bytes / seconds is the
 * bandwidth of that step. A step reads lines no earlier step read recently
 * as long as the working set is much larger than the last-level cache.
 * create returns LKV_OK, LKV_ERR_INVALID (4096 * threads <= bytes <= 2^40)
 * or LKV_ERR_NOMEM; step returns LKV_OK or LKV_ERR_INVALID (64 * threads <=
 * bytes <= the working set). Not thread-safe with other runs on the pool. */
typedef struct lkv_read_probe lkv_read_probe;
int lkv_read_probe_create(size_t bytes, lkv_threadpool *tp, lkv_read_probe **out);
int lkv_read_probe_step(lkv_read_probe *p, size_t bytes, double *seconds);
void lkv_read_probe_destroy(lkv_read_probe *p);

/* Peak f32 multiply-add throughput: every thread runs independent FMA chains on
 * registers (no memory traffic). Counts 2 flops per vector lane per FMA;
 * *gflops receives 1e9 flops per second over all threads.
 * Returns LKV_OK or LKV_ERR_INVALID. */
int lkv_measure_fma_peak(double min_seconds, lkv_threadpool *tp, double *gflops);

/* @@ SECTION kv (the paged cache) -- added by the kv layer */

/* ====================================================================== kv */
/*
 * THE PAGED, BUDGETED KV CACHE
 *
 *   A cache (lkv_cache) owns one memory pool with a hard byte budget and any
 *   number of sequences (lkv_seq). A sequence holds, for every (layer, KV head),
 *   a list of pages; a page holds up to page_tokens consecutive cache slots of
 *   that one (layer, head): per slot the key and value rows (in the page's
 *   format) and the token's original position; per page a format tag, a fill
 *   count and a key digest (per-channel min and max over its slots). Heads of a
 *   layer may hold different numbers of slots (head-wise policies free real
 *   memory). Every page except the last of a list is full.
 *
 *   Memory: the pool reserves address space once (mmap PROT_NONE), commits OS
 *   pages when cache pages are first placed on them, and returns them to the
 *   OS (madvise MADV_DONTNEED) when no cache page uses them any more. The
 *   budget caps the committed bytes (cache pages including their per-slot
 *   positions, digests and headers). Keys and values of all pages live in two
 *   separate address ranges, and each (layer, head) list takes its pages from
 *   its own reserved (uncommitted) run of 64 page slots, so a list's pages lie
 *   back to back even when it grows one token at a time, and attention streams
 *   them like contiguous arrays. The price: a list holding any page commits at
 *   least one OS page per array (header, K, V), i.e. 12 KiB with 4 KiB pages --
 *   1 MiB for 30 layers x 3 heads, but relevant for tiny budgets. Sequence page tables are
 *   ordinary heap memory (a few bytes per page), reported as meta_bytes and
 *   not charged to the budget.
 *
 *   Sharing: full pages are shared by reference count between forks and with
 *   the prefix cache; a shared partial tail page is copied on the first write.
 *
 *   Thread-safety: a cache and its sequences form one unit. Calls that modify
 *   anything (append, truncate, keep, fork, free, publish, attach, load...)
 *   must be serialised by the caller for the whole cache. lkv_seq_attend*,
 *   lkv_seq_n_tokens and the other read-only queries may run concurrently on
 *   DIFFERENT sequences while nothing modifies the cache (each sequence keeps
 *   its own scratch space, so one sequence is not attended by two threads).
 *
 *   Example (one layer, decode step):
 *     lkv_cache_params cp = lkv_cache_default_params();
 *     cp.n_layers = 30; cp.kv_heads = 3; cp.head_dim = 64; cp.budget_bytes = 1 << 30;
 *     lkv_cache *c; lkv_seq *s;
 *     lkv_cache_create(&cp, &c); lkv_seq_create(c, &s);
 *     lkv_seq_append(s, layer, 1, &pos, k, v);           // k, v: [1][3][64] f32
 *     lkv_seq_attend(s, layer, &ap, 1, q, &pos, o, NULL, tp);
 *     lkv_seq_free(s); lkv_cache_free(c);
 */

typedef struct lkv_cache lkv_cache;
typedef struct lkv_seq lkv_seq;

/* Page formats: the lkv_dtype values (f32, f16, bf16, q8, kivi4, kivi2; the
 * byte layouts are those of the runs, see lkv_dtype). A cache may mix formats
 * (recent pages exact, old pages quantized). KIVI pages are made only by
 * lkv_seq_convert of full pages: their key group is the page, so a KIVI cache
 * is created with page_tokens = the KIVI group (32 by default). Enums only grow. */
#define LKV_PAGE_FORMAT_COUNT 6 /* formats this build can store */

/* Cache parameters. */
typedef struct lkv_cache_params {
    int n_layers;           /* L >= 1 */
    int kv_heads;           /* Hk >= 1 */
    int head_dim;           /* d: a multiple of 8, 8..256 (the attention kernels' range) */
    int page_tokens;        /* slots per page, 1..4096; 0 = default 16 (see lkv_cache_default_params) */
    lkv_dtype dtype;        /* storage format of new pages (F32/F16/BF16, or Q8: int8 written at append) */
    size_t budget_bytes;    /* hard cap on committed bytes (pages + per-slot metadata), >= 1 OS page */
    uint64_t model_id;      /* identity used in prefix hashes and snapshots (any value) */
} lkv_cache_params;

/* Defaults: page_tokens 16 -- the granularity of Quest and vLLM: small enough
 * that selection (Quest/ArkVale) and eviction work at a fine grain and that the
 * copy-on-write of a partial page is cheap, large enough that per-page costs
 * (digest, header, one run per page in the attention loop) stay a few percent;
 * with d = 64 in f16 a page's K+V is exactly one 4 KiB OS page. dtype F16,
 * budget 1 GiB, model_id 0; n_layers, kv_heads and head_dim are 0 and must be
 * set. */
lkv_cache_params lkv_cache_default_params(void);

/* Creates a cache: validates p, reserves the pool's address space (nothing is
 * committed yet). *out is owned by the caller (lkv_cache_free).
 * Returns LKV_OK, LKV_ERR_INVALID or LKV_ERR_NOMEM. */
int lkv_cache_create(const lkv_cache_params *p, lkv_cache **out);

/* Frees the cache, every sequence still alive in it (their handles become
 * invalid), the prefix cache and the pool's memory. NULL is a no-op. */
void lkv_cache_free(lkv_cache *c);

/* The parameters the cache was created with (page_tokens resolved). */
lkv_cache_params lkv_cache_get_params(const lkv_cache *c);

/* Pool counters, in bytes unless said otherwise. */
typedef struct lkv_cache_stats {
    size_t budget;          /* the hard cap on committed (rounded down to OS pages) */
    size_t reserved;        /* address space reserved by the pool */
    size_t committed;       /* bytes of OS pages committed (counted against budget) */
    size_t in_use;          /* bytes of live cache pages (<= committed + OS-page slack) */
    size_t free_bytes;      /* budget - committed */
    size_t peak_committed;  /* highest committed since creation */
    size_t meta_bytes;      /* heap bytes of page tables and scratch (not in budget) */
    int64_t n_pages;        /* live cache pages */
    int64_t n_prefix_pages; /* pages held by the prefix cache */
    int64_t n_prefix_entries; /* published prefix blocks (page_tokens tokens each) */
    int64_t n_sequences;    /* live sequences */
    int64_t n_commits;      /* OS-page commits since creation */
    int64_t n_releases;     /* OS-page releases (madvise) since creation */
    int64_t n_evictions;    /* prefix entries evicted under budget pressure */
    /* backup tier (lkv_seq_offload / lkv_seq_recall): K/V held outside the pool */
    int64_t n_backup_pages; /* pages whose K/V are in the backup tier now */
    size_t backup_bytes;    /* heap bytes of those K/V (not counted in committed) */
    int64_t n_offloads;     /* pages moved to the backup tier since creation */
    int64_t n_recalls;      /* pages brought back into the pool since creation */
} lkv_cache_stats;

/* Fills *out. Returns LKV_OK or LKV_ERR_INVALID (NULL arguments). */
int lkv_cache_get_stats(const lkv_cache *c, lkv_cache_stats *out);

/* Bytes of live pages of one (layer, head), over all sequences and the prefix
 * cache (each shared page counted once; the K/V of pages in the backup tier,
 * lkv_seq_offload, are not counted); layer or head < 0 sums over it.
 * Returns the byte count, or 0 for out-of-range arguments. */
size_t lkv_cache_bytes(const lkv_cache *c, int layer, int head);

/* ------------------------------------------------------------- sequences */

/* Creates an empty sequence in c. Owned by the caller (lkv_seq_free) but
 * freed with the cache at the latest. Returns LKV_OK, LKV_ERR_INVALID, LKV_ERR_NOMEM. */
int lkv_seq_create(lkv_cache *c, lkv_seq **out);

/* Releases the sequence's page references (pages nobody else holds go back to
 * the pool, their memory to the OS). NULL is a no-op. */
void lkv_seq_free(lkv_seq *s);

/* New sequence sharing every page of src (reference counts; no copy). The
 * first write to a shared partial tail page copies it. On failure nothing
 * changes. Returns LKV_OK, LKV_ERR_INVALID or LKV_ERR_NOMEM. */
int lkv_seq_fork(lkv_seq *src, lkv_seq **out);

/* The cache a sequence belongs to. */
lkv_cache *lkv_seq_cache(const lkv_seq *s);

/* Appends n tokens' K/V for one layer to every KV head of that layer.
 *   k, v  [n][kv_heads][head_dim] f32 (converted to each page's format)
 *   pos   [n] original positions (>= 0), strictly ascending and greater than every
 *         position held by any head of the layer; NULL: continue from the
 *         head's last position + 1 (0 if empty).
 * All-or-nothing: every page needed (new pages, copies of shared tails) is
 * obtained first; on failure the sequence is unchanged. When the pool is full,
 * unreferenced, unpinned prefix-cache pages are evicted (LRU) first.
 * Returns LKV_OK, LKV_ERR_INVALID, LKV_ERR_RANGE (positions not ascending),
 * LKV_ERR_BUDGET (would exceed the budget) or LKV_ERR_NOMEM. */
int lkv_seq_append(lkv_seq *s, int layer, int n, const int32_t *pos, const float *k,
                   const float *v);

/* Same for one KV head only: k, v [n][head_dim] f32. Lets heads differ in length. */
int lkv_seq_append_head(lkv_seq *s, int layer, int head, int n, const int32_t *pos,
                        const float *k, const float *v);

/* Slots held by (layer, head); -1 for out-of-range arguments. */
int lkv_seq_n_tokens(const lkv_seq *s, int layer, int head);

/* Largest slot count over the heads of a layer (the observer row stride to use);
 * -1 for out-of-range arguments. */
int lkv_seq_max_tokens(const lkv_seq *s, int layer);

/* Keeps the first n_tokens slots of every (layer, head) (heads holding fewer are
 * unchanged); pages beyond go back to the pool. Never fails for n_tokens >= 0
 * except LKV_ERR_INVALID. Returns LKV_OK. */
int lkv_seq_truncate(lkv_seq *s, int n_tokens);

/* Eviction / compaction hook for policies: keeps only the given slots of one
 * (layer, head), in order (slots[] strictly ascending slot indices < n_tokens),
 * moving them to the front; pages left empty return to the pool (committed
 * bytes drop). Shared pages are copied only where kept slots must move into
 * them; a run of untouched full pages at the front stays shared. May need new
 * pages for that copy: on failure (LKV_ERR_BUDGET/NOMEM) nothing changes.
 * Returns LKV_OK, LKV_ERR_INVALID, LKV_ERR_RANGE, LKV_ERR_BUDGET, LKV_ERR_NOMEM. */
int lkv_seq_keep(lkv_seq *s, int layer, int head, const int *slots, int n);

/* Re-encodes full pages [first_page, first_page + n_pages) of (layer, head) into
 * format `to` (any storable lkv_dtype; e.g. KIVI2 for old pages of a KIVI
 * policy). Pages already in that format are left alone; the page digest is
 * recomputed from the stored values (for KIVI it follows from the key scales).
 * All-or-nothing: every new page is obtained first, so on LKV_ERR_BUDGET or
 * LKV_ERR_NOMEM nothing changes. A page shared with a fork or the prefix cache
 * is replaced in this sequence's list only (the other holders keep the old
 * page); pages nobody else holds are freed, so the committed bytes drop.
 * Partial pages (the tail) cannot be converted to KIVI (LKV_ERR_RANGE).
 * Returns LKV_OK, LKV_ERR_INVALID, LKV_ERR_RANGE, LKV_ERR_BUDGET, LKV_ERR_NOMEM. */
int lkv_seq_convert(lkv_seq *s, int layer, int head, int first_page, int n_pages, lkv_dtype to);

/* Copies positions of slots [slot0, slot0 + n) of (layer, head) into pos[n].
 * Returns LKV_OK, LKV_ERR_INVALID or LKV_ERR_RANGE. */
int lkv_seq_get_positions(const lkv_seq *s, int layer, int head, int slot0, int n, int32_t *pos);

/* Decodes K and V rows of slots [slot0, slot0 + n) of (layer, head) to f32:
 * k, v [n][head_dim] (either may be NULL). Returns as lkv_seq_get_positions. */
int lkv_seq_read(const lkv_seq *s, int layer, int head, int slot0, int n, float *k, float *v);

/* One page of a (layer, head) list, for selection policies. Pointers stay
 * valid until the sequence or that page is next modified; key_min/key_max of
 * a KIVI page (whose digest is derived from its per-channel scale and min, not
 * stored) and pos of a quantized (int8/KIVI) page whose positions are
 * consecutive (such a page stores only the first; the array is made on
 * request) point into scratch of the sequence and stay valid only until the
 * next lkv_seq_page_info call on it (so one thread per sequence). */
typedef struct lkv_page_info {
    int n;                  /* slots of this page used by the sequence */
    int first_slot;         /* slot index of its first slot in the list */
    int format;             /* page format (an lkv_dtype value for plain formats) */
    int refcount;           /* holders: sequences + the prefix cache */
    const int32_t *pos;     /* [n] original positions (see above for how long it lives) */
    const float *key_min;   /* [head_dim] per-channel min of the page's keys (stored values;
                               KIVI: the channel's min, a bound the extreme code reaches) */
    const float *key_max;   /* [head_dim] per-channel max (KIVI: min + (2^bits - 1) scale) */
    int in_backup;          /* 1: K/V are in the backup tier (lkv_seq_offload), else 0 */
} lkv_page_info;

/* Pages of (layer, head); -1 for out-of-range arguments. */
int lkv_seq_n_pages(const lkv_seq *s, int layer, int head);

/* Fills *out for page `page` of (layer, head). Returns LKV_OK, LKV_ERR_INVALID, LKV_ERR_RANGE. */
int lkv_seq_page_info(const lkv_seq *s, int layer, int head, int page, lkv_page_info *out);

/* ------------------------------------------------------------ backup tier */
/*
 * A page's K and V can be moved out of the pool into a backup tier (heap
 * memory outside the budget) and recalled later (ArkVale's recallable
 * eviction). The page stays in its list at the same slots: its header,
 * positions and key digest stay in the pool, so selection policies can still
 * rank it; only the K and V extents are uncommitted (the committed bytes drop
 * when no other extent shares their OS pages). Their pool indices stay
 * reserved, so a recalled page returns to the same addresses and still merges
 * with its neighbours into one run. Every reader (attention, lkv_seq_read,
 * snapshots, conversion, copy-on-write) keeps working on an offloaded page; it
 * reads the backup copy, i.e. the slow tier. A page shared with a fork or the
 * prefix cache is offloaded for all its holders.
 */

/* Moves the K/V of page `page` of (layer, head) to the backup tier. No-op if
 * it is there already. On failure nothing changes.
 * Returns LKV_OK, LKV_ERR_INVALID, LKV_ERR_RANGE (bad page) or LKV_ERR_NOMEM. */
int lkv_seq_offload(lkv_seq *s, int layer, int head, int page);

/* Brings the K/V of page `page` of (layer, head) back into the pool (no-op if
 * resident). Under budget pressure unused prefix-cache pages are evicted
 * first. On failure the page stays in the backup tier.
 * Returns LKV_OK, LKV_ERR_INVALID, LKV_ERR_RANGE, LKV_ERR_BUDGET or LKV_ERR_NOMEM. */
int lkv_seq_recall(lkv_seq *s, int layer, int head, int page);

/* ------------------------------------------------------ attention over pages */

/* Attention of n_q queries over this layer's cache, directly over the pages
 * (builds lkv_kv_run lists and calls lkv_attn_runs; nothing is gathered).
 *   p      shape and masks; p->kv_heads and p->head_dim must match the cache
 *   q      [n_q][q_heads][head_dim] f32
 *   q_pos  [n_q] query positions, or NULL: the queries are the last n_q
 *          positions held, i.e. q_pos[i] = last - n_q + 1 + i where last is the
 *          largest position held by the layer (n_q - 1 when empty).
 *   o      [n_q][q_heads][head_dim] f32 output; lse [n_q][q_heads] or NULL.
 *   tp     thread pool or NULL.
 * Consecutive pages that are adjacent in the pool and hold consecutive
 * positions are passed as one run (fewer, longer runs for the kernel).
 * Uses the sequence's scratch (one attend per sequence at a time).
 * Returns LKV_OK, LKV_ERR_INVALID, LKV_ERR_NOMEM (scratch growth). */
int lkv_seq_attend(lkv_seq *s, int layer, const lkv_attn_params *p, int n_q, const float *q,
                   const int32_t *q_pos, float *o, float *lse, lkv_threadpool *tp);

/* lkv_seq_attend with the observer output: obs [kv_heads][obs_stride] f32,
 * obs_stride >= lkv_seq_max_tokens(s, layer); the attention probability of each
 * slot, summed over the queries and the query heads sharing its KV head, is
 * ADDED to obs[h * obs_stride + slot] (the caller zeroes it). */
int lkv_seq_attend_observe(lkv_seq *s, int layer, const lkv_attn_params *p, int n_q,
                           const float *q, const int32_t *q_pos, float *o, float *lse,
                           float *obs, int obs_stride, lkv_threadpool *tp);

/* Attention over a caller-chosen subset of pages (Quest / ArkVale): KV head h
 * attends only pages sel[h * sel_stride + i], i < sel_count[h], which must be
 * strictly ascending page indices of its list. obs as above (or NULL; slots of
 * unselected pages get nothing). Returns as lkv_seq_attend, plus LKV_ERR_RANGE
 * for a bad page index. */
int lkv_seq_attend_pages(lkv_seq *s, int layer, const lkv_attn_params *p, int n_q,
                         const float *q, const int32_t *q_pos, const int *sel,
                         const int *sel_count, int sel_stride, float *o, float *lse,
                         float *obs, int obs_stride, lkv_threadpool *tp);

/* Attention over slots [slot0, slot1) of every KV head of the layer only
 * (clipped to what each head holds; a head holding none of them gives its
 * query rows o = 0 and lse = -INFINITY). The runs are cut inside pages where
 * needed, in every page format, so e.g. a cache's first slots (attention
 * sinks) and the others can be attended separately -- with differently rotated
 * queries, as StreamingLLM's cache positions do -- and merged exactly with
 * lkv_attn_merge. Masks still use the stored positions; q_pos NULL means the
 * last n_q positions of the whole layer, as in lkv_seq_attend. slot1 may be
 * INT_MAX. Returns as lkv_seq_attend, plus LKV_ERR_RANGE when slot0 < 0 or
 * slot1 < slot0. */
int lkv_seq_attend_slots(lkv_seq *s, int layer, const lkv_attn_params *p, int n_q,
                         const float *q, const int32_t *q_pos, int slot0, int slot1, float *o,
                         float *lse, lkv_threadpool *tp);

/* ------------------------------------------------------------ prefix cache */

/* Publishes the sequence's leading full pages as prefix-cache entries: block j
 * (tokens[j*P .. (j+1)*P), P = page_tokens) is keyed by the chained hash
 *   h_j = H(h_{j-1}, tokens of block j, model_id, policy_id),  h_{-1} = 0
 * and holds (a reference to) page j of every (layer, head). Only blocks for
 * which every list has a full page j are published, and only while all lists
 * hold exactly the first n_tokens slots unchanged (the caller's promise:
 * positions are checked to be j*P + t). Blocks already published are skipped.
 *   tokens [n_tokens] token ids of the sequence's first n_tokens slots.
 * *n_published (may be NULL) receives the number of tokens now covered.
 * Returns LKV_OK, LKV_ERR_INVALID, LKV_ERR_NOMEM. */
int lkv_seq_publish(lkv_seq *s, const int32_t *tokens, int n_tokens, uint64_t policy_id,
                    int *n_published);

/* Attaches to an EMPTY sequence the longest published prefix of tokens[n_tokens]:
 * the pages are shared (no commit, no copy); appending continues after them.
 * *n_reused receives the tokens attached (a multiple of page_tokens, maybe 0).
 * Returns LKV_OK, LKV_ERR_INVALID, LKV_ERR_STATE (sequence not empty), LKV_ERR_NOMEM. */
int lkv_seq_attach_prefix(lkv_seq *s, const int32_t *tokens, int n_tokens, uint64_t policy_id,
                          int *n_reused);

/* Pins (pin = 1) or unpins (pin = 0) the published blocks covering the first
 * n_tokens of tokens: pinned blocks are never evicted. Pins nest (counted).
 * *n_found (may be NULL) receives the tokens covered by published blocks.
 * Returns LKV_OK or LKV_ERR_INVALID. */
int lkv_cache_pin_prefix(lkv_cache *c, const int32_t *tokens, int n_tokens, uint64_t policy_id,
                         int pin, int *n_found);

/* Evicts unpinned prefix blocks that no sequence uses, least recently used
 * first, until at least `bytes` have been committed-freed or none is left
 * (bytes = SIZE_MAX: all of them). Returns the number of blocks evicted. */
int lkv_cache_evict_prefix(lkv_cache *c, size_t bytes);

/* --------------------------------------------------------------- snapshots */
/* Snapshot files are specified byte by byte at the top of src/kv/snapshot.c
 * (versioned; CRC-32C per header and per page). */

/* Size in bytes of the snapshot of the first n_tokens slots of every list of s
 * (n_tokens < 0: all). Returns LKV_OK or LKV_ERR_INVALID. */
int lkv_seq_snapshot_size(const lkv_seq *s, int n_tokens, size_t *size);

/* Writes the snapshot into buf[cap]; *written receives its size.
 * Returns LKV_OK, LKV_ERR_INVALID or LKV_ERR_RANGE (cap too small). */
int lkv_seq_save_mem(const lkv_seq *s, int n_tokens, void *buf, size_t cap, size_t *written);

/* Writes the snapshot to path atomically (path.tmp.<pid>, fsync, rename, fsync
 * of the directory): readers see the old file or the complete new one.
 * Returns LKV_OK, LKV_ERR_INVALID, LKV_ERR_NOMEM or LKV_ERR_IO. */
int lkv_seq_save(const lkv_seq *s, int n_tokens, const char *path);

/* Loads a snapshot into a new sequence of c. The whole input is validated
 * (magic, version, identity, checksums, sizes, positions) before the cache is
 * touched; on any failure the cache is unchanged (apart from prefix entries a
 * budget shortage may have evicted) and *out is NULL.
 * Returns LKV_OK, LKV_ERR_INVALID, LKV_ERR_FORMAT (truncated/corrupt),
 * LKV_ERR_VERSION (other version, or model/geometry mismatch), LKV_ERR_BUDGET,
 * LKV_ERR_NOMEM, and for lkv_seq_load also LKV_ERR_IO / LKV_ERR_NOT_FOUND. */
int lkv_seq_load_mem(lkv_cache *c, const void *data, size_t size, lkv_seq **out);
int lkv_seq_load(lkv_cache *c, const char *path, lkv_seq **out);


/* @@ SECTION press (policies) */

/* =================================================================== press
 *
 * KV compression and selection policies ("presses"), created from a spec
 * string: one or more stages joined by '+', each `name[:key=value,...]`, e.g.
 *     "snapkv:ratio=0.5,window=32"    "streamingllm:sinks=4,recent=252"
 *     "snapkv:ratio=0.5+kivi:bits=4"  "full" (the baseline: nothing removed)
 * Budgets are a token count per (layer, KV head) (`budget=`) or the fraction of
 * the prompt removed (`ratio=`, as kvpress defines it). `longkv presses` lists
 * every policy with its parameters and defaults (taken from the papers).
 * A policy that longkv knows but has not implemented is an error
 * (LKV_ERR_UNSUPPORTED), never a silent no-op.
 */
typedef struct lkv_press lkv_press;

/* Parses and validates spec; *out is owned by the caller (lkv_press_free).
 * Returns LKV_OK, LKV_ERR_INVALID (unknown name or key, value out of range,
 * contradictory budgets -- the message says what is accepted),
 * LKV_ERR_UNSUPPORTED (known but not implemented) or LKV_ERR_NOMEM. */
int lkv_press_create(const char *spec, lkv_press **out);

/* NULL is a no-op. */
void lkv_press_free(lkv_press *p);

/* The spec with every parameter spelled out (defaults resolved), e.g.
 * "snapkv:ratio=0.5,query_aware=0,agg=mean,window=32,kernel=7,pool=max,every=0".
 * Valid while p lives. */
const char *lkv_press_canonical(const lkv_press *p);

/* 1 if the policy is the full cache (nothing removed, selected or quantized). */
int lkv_press_is_full(const lkv_press *p);

/* Writes a human-readable list of every policy (implemented or not) with its
 * parameters, defaults, ranges and source into buf (NUL-terminated, truncated
 * to cap). Returns the length it wanted to write. */
size_t lkv_press_list(char *buf, size_t cap);

/* @@ SECTION model */

/* ==================================================================== model
 *
 * A GGUF model (Llama family: SmolLM2) whose attention runs through the longkv
 * cache. Weights stay memory-mapped and quantized; a context (lkv_ctx) is one
 * sequence being evaluated: a KV cache, scratch buffers and the logits of the
 * last token.
 *
 *     lkv_model *m = NULL;
 *     if (lkv_model_load("SmolLM2-135M-Instruct.Q4_1.gguf", NULL, &m) < 0) ...
 *     lkv_ctx_params cp = lkv_ctx_default_params();
 *     cp.tp = tp;                                  // optional thread pool
 *     lkv_ctx *ctx = NULL;
 *     lkv_ctx_create(m, &cp, &ctx);
 *     int32_t ids[512];
 *     int n = lkv_tokenize(m, text, strlen(text), 1, 0, ids, 512);
 *     lkv_ctx_prefill(ctx, ids, n);
 *     lkv_sampler *s = NULL;
 *     lkv_sampler_params sp = lkv_sampler_default_params(); // greedy
 *     lkv_sampler_create(&sp, &s);
 *     for (;;) {
 *         int32_t t;
 *         lkv_sampler_sample(s, lkv_ctx_logits(ctx), lkv_model_n_vocab(m), &t);
 *         if (lkv_token_is_eog(m, t) || lkv_ctx_decode(ctx, t) < 0) break;
 *     }
 *
 * Thread-safety: a model is immutable after loading and may be shared by any
 * number of contexts on any threads. A context (and a sampler) must be used by
 * one thread at a time.
 */

typedef struct lkv_model lkv_model;
typedef struct lkv_ctx lkv_ctx;

typedef struct lkv_model_params {
    int load_tokenizer;  /* 1 (default): build the tokenizer from the GGUF metadata;
                            0: weights only (tokenizer calls fail with LKV_ERR_STATE) */
} lkv_model_params;

lkv_model_params lkv_model_default_params(void);

/* Loads a GGUF model: maps the file read-only, validates the architecture, the
 * hyperparameters and the shape and type of every tensor the forward pass uses.
 *   path  GGUF v3 file
 *   p     parameters, or NULL for the defaults
 *   out   receives the model (free with lkv_model_free); untouched on error
 * Returns LKV_OK; LKV_ERR_IO (cannot open / map), LKV_ERR_FORMAT (corrupt file,
 * missing key or tensor, wrong shape), LKV_ERR_UNSUPPORTED (architecture, tensor
 * type or RoPE variant this build does not run), LKV_ERR_NOMEM. The message
 * (lkv_last_error) names the key or tensor at fault. */
int lkv_model_load(const char *path, const lkv_model_params *p, lkv_model **out);

/* Unmaps and frees the model. Every context of the model must be freed first.
 * NULL is a no-op. */
void lkv_model_free(lkv_model *m);

/* Hyperparameters and facts about a loaded model. */
typedef struct lkv_model_info {
    const char *arch;     /* "llama"; valid while the model lives */
    const char *name;     /* general.name, or "" */
    int n_layers;
    int n_embd;           /* hidden size */
    int n_ff;             /* feed-forward size */
    int n_heads;          /* query heads */
    int n_kv_heads;       /* KV heads */
    int head_dim;
    int n_vocab;
    int n_ctx_train;      /* context length the model was trained for */
    float rope_theta;
    float rms_eps;
    int tied_output;      /* 1 if the output head is the token embedding */
    size_t n_params;      /* weight elements */
    size_t weight_bytes;  /* bytes of weights in the file */
    uint64_t model_id;    /* identity of the file (hash of its metadata and size) */
} lkv_model_info;

/* Fills *info. Returns LKV_OK or LKV_ERR_INVALID (NULL argument). */
int lkv_model_get_info(const lkv_model *m, lkv_model_info *info);

/* Vocabulary size (0 for NULL). */
int lkv_model_n_vocab(const lkv_model *m);

/* ------------------------------------------------------------ tokenizer */

/* Encodes text[0..len) into token ids.
 *   add_bos        1: prepend BOS if the model asks for it (tokenizer.ggml.add_bos_token)
 *   parse_special  1: text like "<|im_start|>" becomes the special token; 0: plain text
 *   ids, cap       output buffer (may be NULL with cap 0 to measure)
 * Returns the number of tokens the text needs (>= 0; when larger than cap only
 * the first cap ids are written, so call again with a bigger buffer), or a
 * negative error (LKV_ERR_STATE without tokenizer, LKV_ERR_NOMEM, LKV_ERR_INVALID). */
int lkv_tokenize(const lkv_model *m, const char *text, size_t len, int add_bos,
                 int parse_special, int32_t *ids, int cap);

/* Writes the bytes of one token's text (special tokens as their text, byte
 * tokens as the raw byte) to buf[0..cap). Not NUL-terminated. Returns the
 * length the piece needs (call again when larger than cap) or a negative error
 * (LKV_ERR_RANGE for an id outside the vocabulary). A piece may be part of a
 * UTF-8 character: concatenate pieces before displaying. */
int lkv_token_to_piece(const lkv_model *m, int32_t token, char *buf, size_t cap);

/* Decodes n ids into text at buf[0..cap) and NUL-terminates it when it fits.
 * Returns the text length (without NUL; call again when >= cap) or a negative
 * error. Special tokens are rendered as their text when render_special is 1,
 * skipped when 0. */
int lkv_detokenize(const lkv_model *m, const int32_t *ids, int n, int render_special,
                   char *buf, size_t cap);

/* 1 if the token ends a generation (end of turn / end of text), else 0. */
int lkv_token_is_eog(const lkv_model *m, int32_t token);

/* BOS id, or -1 if the model has none. */
int32_t lkv_token_bos(const lkv_model *m);

/* One message of a chat. */
typedef struct lkv_chat_msg {
    const char *role;    /* "system", "user", "assistant" */
    const char *content; /* NUL-terminated */
} lkv_chat_msg;

/* Formats a chat with the model's template (ChatML for SmolLM2; a default
 * system message is inserted when the template does so), ending with the
 * assistant header when add_assistant is 1. Output at buf[0..cap),
 * NUL-terminated when it fits. Tokenize the result with parse_special = 1.
 * Returns the text length (call again when >= cap), LKV_ERR_UNSUPPORTED when
 * the model's template is not one this build knows, or another negative error. */
int lkv_chat_format(const lkv_model *m, const lkv_chat_msg *msgs, int n_msgs,
                    int add_assistant, char *buf, size_t cap);

/* ------------------------------------------------------------- contexts */

/* Called once per layer and chunk, after that layer's attention, with the
 * chunk's queries and keys after RoPE, its values and the attention output
 * (before the output projection). Buffers are valid only during the call.
 *   pos [n_tok]; q [n_tok][H][d]; k, v [n_tok][Hk][d]; o [n_tok][H][d]
 * A negative return aborts the evaluation with that code. Runs on the thread
 * that called lkv_ctx_eval. */
typedef int (*lkv_layer_hook)(void *user, int layer, int n_tok, const int32_t *pos,
                              const float *q, const float *k, const float *v,
                              const float *o);

typedef struct lkv_ctx_params {
    int n_ctx;               /* most tokens the context holds; 0 = the model's training
                                context (default 0) */
    int n_batch;             /* tokens per forward chunk while prefilling (default 256) */
    lkv_dtype kv_dtype;      /* element type of the cached K/V (default F16) */
    int page_tokens;         /* tokens per cache page; 0 = the cache's default */
    size_t kv_budget_bytes;  /* hard limit for the KV cache; 0 = no limit */
    lkv_threadpool *tp;      /* threads for the forward pass; not owned; NULL = caller only */
    lkv_layer_hook hook;     /* optional per-layer observer (NULL = none) */
    void *hook_user;         /* passed to hook */
    const lkv_press *press;  /* KV policy (not owned; must outlive the context);
                                NULL = the full cache */
} lkv_ctx_params;

/* n_ctx 0, n_batch 256, kv_dtype F16, page_tokens 0, no budget, no pool, no hook. */
lkv_ctx_params lkv_ctx_default_params(void);

/* Creates a context for model m (which must outlive it) with an empty cache.
 *   p    parameters, or NULL for the defaults (copied; tp must outlive the context)
 *   out  receives the context; untouched on error
 * Returns LKV_OK, LKV_ERR_INVALID (n_ctx < 0 or above 1<<24, n_batch < 1...),
 * LKV_ERR_NOMEM. Scratch memory for n_batch tokens is allocated here. */
int lkv_ctx_create(const lkv_model *m, const lkv_ctx_params *p, lkv_ctx **out);

/* Frees the context and its cache. NULL is a no-op. */
void lkv_ctx_free(lkv_ctx *ctx);

/* Evaluates n tokens appended after the ones the context holds (positions
 * lkv_ctx_pos(ctx) .. +n-1), in chunks of n_batch, storing their K/V in the cache.
 *   tokens  [n] ids in [0, n_vocab)
 *   logits  [n][n_vocab] receives the next-token logits after every token, or NULL
 *           (caller-owned; only the last token's logits are computed then)
 * Afterwards lkv_ctx_logits() gives the logits after the last token.
 * Returns LKV_OK; LKV_ERR_RANGE (a token outside the vocabulary, or the context
 * would exceed n_ctx), LKV_ERR_BUDGET (the cache is full), LKV_ERR_NOMEM, or the
 * hook's error. On error the context keeps the tokens that were fully
 * evaluated before the failing chunk (see lkv_ctx_pos). */
int lkv_ctx_eval(lkv_ctx *ctx, const int32_t *tokens, int n, float *logits);

/* Evaluates a prompt whose last n_question tokens are the question, then runs
 * the context's policy (lkv_ctx_params.press) once over the cache: eviction
 * after prefill (SnapKV, H2O, ...), quantization of old pages. The question is
 * kept out of compression unless the policy says query_aware=1. With no policy
 * it is lkv_ctx_prefill. Returns as lkv_ctx_eval. */
int lkv_ctx_prefill_prompt(lkv_ctx *ctx, const int32_t *tokens, int n, int n_question);

/* lkv_ctx_prefill_prompt that also returns every prompt token's logits, as
 * lkv_ctx_eval does: logits [n][n_vocab] or NULL (perplexity over a prompt). */
int lkv_ctx_eval_prompt(lkv_ctx *ctx, const int32_t *tokens, int n, int n_question,
                        float *logits);

/* What the context's policy did so far (tokens kept per layer/head, bytes
 * before/after, pages attended), as text into buf (NUL-terminated, truncated to
 * cap). Returns the length it wanted to write; 0 without a policy. */
size_t lkv_ctx_press_report(const lkv_ctx *ctx, char *buf, size_t cap);

/* lkv_ctx_eval(ctx, tokens, n, NULL): the prompt. */
int lkv_ctx_prefill(lkv_ctx *ctx, const int32_t *tokens, int n);

/* lkv_ctx_eval(ctx, &token, 1, NULL): one generated token. */
int lkv_ctx_decode(lkv_ctx *ctx, int32_t token);

/* Logits [n_vocab] after the last evaluated token, owned by the context and
 * valid until its next eval/reset/free; NULL before the first eval. */
const float *lkv_ctx_logits(const lkv_ctx *ctx);

/* Number of tokens the context holds (= the position of the next token). */
int lkv_ctx_pos(const lkv_ctx *ctx);

/* Largest number of tokens the context can hold. */
int lkv_ctx_n_ctx(const lkv_ctx *ctx);

/* Forgets tokens at positions >= n (n = 0 empties the context). Returns LKV_OK
 * or LKV_ERR_RANGE (n < 0 or n > pos). Logits become unavailable. */
int lkv_ctx_truncate(lkv_ctx *ctx, int n);

/* lkv_ctx_truncate(ctx, 0). */
int lkv_ctx_reset(lkv_ctx *ctx);

/* Bytes of KV cache the context holds now, measured from the cache's pool. */
size_t lkv_ctx_kv_bytes(const lkv_ctx *ctx);

/* Saves the context's KV cache and the tokens that produced it (a prompt
 * snapshot) to path, atomically (temp file + rename), with checksums.
 *   tokens [n] must be the tokens the context holds (n == lkv_ctx_pos(ctx)).
 * With a policy (lkv_ctx_params.press) the file holds the cache the policy left
 * after its prompt step, its canonical spec, the question split and the logits;
 * save right after lkv_ctx_eval_prompt (before decoding).
 * Returns LKV_OK, LKV_ERR_INVALID, LKV_ERR_IO, LKV_ERR_NOMEM; LKV_ERR_STATE
 * (a policy's cache after decoding or without a prompt step), LKV_ERR_UNSUPPORTED
 * (a policy whose later steps need state a snapshot does not hold: arkvale,
 * h2o with decode=1). */
int lkv_ctx_save_prompt(lkv_ctx *ctx, const char *path, const int32_t *tokens, int n);

/* Loads a prompt snapshot into an empty context when it belongs to this model,
 * keeping the longest common prefix of its tokens and tokens[0..n) (a snapshot
 * is never trusted: identity, version and checksums are verified first).
 *   n_loaded  receives the number of tokens restored (0 on error)
 * The caller then evaluates tokens[*n_loaded..n). At most n - 1 tokens are
 * restored (a snapshot covering all n is truncated to n - 1), so the last token
 * is always evaluated again and its logits are available.
 * Returns LKV_OK; LKV_ERR_NOT_FOUND (no file), LKV_ERR_FORMAT (corrupt or
 * truncated), LKV_ERR_VERSION (another model, format version or cache layout),
 * LKV_ERR_RANGE (the first tokens already differ), LKV_ERR_STATE (the context is
 * not empty), LKV_ERR_BUDGET, LKV_ERR_IO, LKV_ERR_NOMEM. On error the context is
 * left empty. */
int lkv_ctx_load_prompt(lkv_ctx *ctx, const char *path, const int32_t *tokens, int n,
                        int *n_loaded);

/* lkv_ctx_load_prompt for a prompt whose last n_question tokens are the
 * question (as given to lkv_ctx_eval_prompt). A file made with a policy is used
 * only by a context with the same policy (canonical spec) for the identical
 * tokens and n_question; it then restores all n tokens and the logits after
 * the last (*n_loaded == n: nothing is left to evaluate, the policy's prompt
 * step is not run again). Any other combination -- a policy file in a
 * full-cache context or the other way round, another policy -- is refused with
 * LKV_ERR_VERSION, a different prompt with LKV_ERR_RANGE; the caller then
 * recomputes. Other returns as lkv_ctx_load_prompt. */
int lkv_ctx_load_prompt_question(lkv_ctx *ctx, const char *path, const int32_t *tokens, int n,
                                 int n_question, int *n_loaded);

/* ------------------------------------------------------------- sampling */

typedef struct lkv_sampler lkv_sampler;

typedef struct lkv_sampler_params {
    float temperature;  /* <= 0: greedy (argmax; ties to the lowest id). Default 0 */
    float top_p;        /* nucleus mass in (0, 1]; 1 = off. Default 1 */
    int top_k;          /* keep the k most likely tokens; 0 = off. Default 0 */
    uint64_t seed;      /* seed of the sampler's random generator. Default 0 */
} lkv_sampler_params;

lkv_sampler_params lkv_sampler_default_params(void);

/* Creates a sampler (it owns a seeded random generator: the same seed and the
 * same logits give the same tokens). Returns LKV_OK, LKV_ERR_INVALID (top_p
 * outside (0, 1], top_k < 0, non-finite temperature) or LKV_ERR_NOMEM. */
int lkv_sampler_create(const lkv_sampler_params *p, lkv_sampler **out);

/* Frees the sampler. NULL is a no-op. */
void lkv_sampler_free(lkv_sampler *s);

/* Picks the next token from logits[n_vocab] (not modified). Returns LKV_OK,
 * LKV_ERR_INVALID (NULL logits, n_vocab < 1) or LKV_ERR_NOMEM. NaN logits are
 * treated as -infinity; if every logit is, token 0 is returned. */
int lkv_sampler_sample(lkv_sampler *s, const float *logits, int n_vocab, int32_t *token);


/* @@ SECTION eval
 *
 * Tasks, scores, reports and progress for honest accuracy/memory/speed numbers.
 *
 *   corpora   real prose (Jane Austen, the King James Bible: scripts/get_texts.sh
 *             extracts them from Debian packages into data/texts/) split into
 *             sentences, the haystacks of needle-in-a-haystack tasks.
 *   tasks     seeded, deterministic prompt generators: passkey retrieval and
 *             RULER-style needle-in-a-haystack (single, multi-key, multi-value,
 *             multi-query), sized in tokens by a caller-supplied counter.
 *   scores    answer extraction and scoring (exact match, string match).
 *   reports   result rows written as JSON lines, CSV (RFC 4180) and Markdown;
 *             scripts/plot_results.py draws the plots from the JSON lines.
 *   progress  items done, rate and time left on long runs.
 *
 * EXAMPLE
 *     lkv_corpus *c = NULL;
 *     lkv_corpus_load("data/texts/austen.txt", &c);
 *     lkv_task_params p = lkv_task_default_params();
 *     lkv_task_params_preset("niah_multikey", &p);
 *     p.ctx_tokens = 4096; p.depth = 25; p.seed = 7;
 *     p.count_tokens = lkv_count_tokens_model; p.count_ctx = model;
 *     lkv_task_sample s = {0};
 *     if (lkv_task_generate(&p, c, &s) == LKV_OK) {
 *         // feed s.context (compressible) then s.question and s.answer_prefix
 *         double score = lkv_task_score(&s, generated_text);
 *     }
 *     lkv_task_sample_clear(&s);
 *     lkv_corpus_free(c);
 */

/* ------------------------------------------------------------ token counting */

/* Counts the tokens of text[0..len) (not NUL-terminated) for some tokenizer.
 * Returns the count (>= 0) or a negative lkv_error code, which callers forward.
 * The model layer provides one for its tokenizer; tests use a stand-in. */
typedef int (*lkv_count_tokens_fn)(void *ctx, const char *text, size_t len);

/* A stand-in counter: the number of whitespace-separated words (ctx unused).
 * Additive over text joined at whitespace, which makes depths easy to check. */
int lkv_count_words(void *ctx, const char *text, size_t len);

/* The counter for a loaded model (ctx: the lkv_model *): tokens of the text
 * alone, without BOS, special-token text counted as plain text. A prompt fed
 * with BOS or inside a chat template is that many tokens longer. */
int lkv_count_tokens_model(void *model, const char *text, size_t len);

/* ------------------------------------------------------------ corpora */

/* Prose split into sentences. Immutable after creation: thread-safe to read. */
typedef struct lkv_corpus lkv_corpus;

/* Loads a UTF-8 text file as a corpus. Paragraphs are separated by blank lines;
 * inside a paragraph runs of whitespace become one space. Sentences end at
 * . ! ? (plus closing quotes/brackets) followed by a space and a word that does
 * not start in lower case, except after common abbreviations ("Mr.", "St.") and
 * initials. The corpus name is the file's base name without extension.
 * Returns LKV_OK, LKV_ERR_INVALID, LKV_ERR_IO, LKV_ERR_FORMAT (no sentence, or
 * a sentence over 1 MiB) or LKV_ERR_NOMEM. */
int lkv_corpus_load(const char *path, lkv_corpus **out);

/* The same from memory (text[0..len) is copied); name may be NULL ("text"). */
int lkv_corpus_from_text(const char *name, const char *text, size_t len, lkv_corpus **out);

/* A small built-in set of paragraphs (original text written for longkv), for
 * tests and demos when the real texts are absent. Its name is "builtin". */
int lkv_corpus_builtin(lkv_corpus **out);

void lkv_corpus_free(lkv_corpus *c);
const char *lkv_corpus_name(const lkv_corpus *c);
size_t lkv_corpus_n_sentences(const lkv_corpus *c);

/* Sentence i (0 <= i < n): *text points into the corpus (not NUL-terminated),
 * *len bytes; *para_end = 1 if a paragraph ends after it (may be NULL).
 * Returns LKV_OK or LKV_ERR_RANGE. */
int lkv_corpus_sentence(const lkv_corpus *c, size_t i, const char **text, size_t *len,
                        int *para_end);

/* ------------------------------------------------------------ tasks */

typedef enum lkv_task_kind {
    /* "The pass key is NNNNN. Remember it. NNNNN is the pass key." hidden in
     * repeated filler ("The grass is green. ..."); a 5-digit key. */
    LKV_TASK_PASSKEY = 0,
    /* RULER needle-in-a-haystack over a corpus: needles "One of the special
     * magic numbers for {key} is: {value}." with word keys and 7-digit values. */
    LKV_TASK_NIAH = 1
} lkv_task_kind;

#define LKV_TASK_MAX_NEEDLES 32

typedef struct lkv_task_params {
    lkv_task_kind kind;
    int ctx_tokens;    /* target length of the whole prompt (context + question +
                        * answer prefix) in tokens; the result is <= ctx_tokens and
                        * short of it by less than one haystack sentence (or filler
                        * unit) plus tokenizer joins */
    double depth;      /* 0..100: where the first asked needle sits, as the share of
                        * haystack tokens before it; placed at the nearest sentence
                        * boundary (the achieved depth is reported) */
    uint64_t seed;     /* everything random (key, values, words, haystack start,
                        * other needles' depths) derives from it; none of it
                        * depends on depth or ctx_tokens, so a depth x length
                        * grid with one seed varies only what it names */
    int n_keys;        /* NIAH: needles with distinct keys, 1.. (multi-key: the
                        * others are distractors) */
    int n_values;      /* NIAH: values per key, 1.. (multi-value) */
    int n_queries;     /* NIAH: keys asked about, 1..n_keys (multi-query) */
    lkv_count_tokens_fn count_tokens; /* NULL: lkv_count_words */
    void *count_ctx;
} lkv_task_params;

/* passkey, ctx_tokens 1024, depth 50, seed 0, one key/value/query, word counter. */
lkv_task_params lkv_task_default_params(void);

/* Sets kind and n_keys/n_values/n_queries from a task name (other fields kept):
 *   passkey, niah_single (1/1/1), niah_multikey (4/1/1), niah_multivalue (1/4/1),
 *   niah_multiquery (4/1/4)       -- the RULER variants' needle counts.
 * Returns LKV_OK or LKV_ERR_NOT_FOUND. */
int lkv_task_params_preset(const char *name, lkv_task_params *p);

/* One needle as placed in the prompt. */
typedef struct lkv_needle {
    char key[40];     /* NIAH key ("amber-lantern"); "" for passkey */
    char value[16];   /* digits */
    size_t offset;    /* byte offset of the needle sentence in prompt */
    size_t len;       /* its length in bytes */
    int token_pos;    /* tokens of prompt[0..offset) */
    double depth;     /* achieved depth in percent: tokens of the haystack text
                       * before it / tokens of the whole haystack, both counted as
                       * whole texts with the needles' own tokens taken out */
    int asked;        /* 1 if the question asks for this needle's value */
} lkv_needle;

/* A generated prompt. The four strings are NUL-terminated and owned by the
 * sample; prompt = context + "\n" + question + " " + answer_prefix, where context
 * is the instruction and the haystack (what a press may compress) and the question
 * is kept out of compression unless a run is query-aware. Chat models wrap
 * context + question in the user turn and start the reply with answer_prefix. */
typedef struct lkv_task_sample {
    char *prompt, *context, *question, *answer_prefix;
    size_t prompt_len, context_len;
    char task[24];            /* preset name ("passkey", "niah_multikey", ...) or "niah" */
    char corpus[32];          /* haystack source: corpus name or "filler" */
    uint64_t seed;
    int ctx_target;           /* params.ctx_tokens */
    int n_tokens;             /* tokens of prompt */
    int context_tokens;       /* tokens of context */
    int haystack_tokens;      /* tokens of the haystack (counted whole, joins
                               * included) less the needles' own tokens */
    int haystack_sentences;   /* sentences (filler units for passkey) used */
    size_t haystack_offset;   /* bytes [haystack_offset, haystack_end) of prompt hold */
    size_t haystack_end;      /* the haystack with its needles */
    size_t corpus_start;      /* first corpus sentence used */
    int wrapped;              /* 1 if the haystack ran past the corpus end and
                               * continued from its start (repeated text) */
    double depth;             /* requested depth (percent) */
    double depth_actual;      /* achieved depth of the first asked needle */
    int n_needles;
    lkv_needle needles[LKV_TASK_MAX_NEEDLES];
    int n_expected;           /* values the answer must contain, in asked order */
    char expected[LKV_TASK_MAX_NEEDLES][16];
} lkv_task_sample;

/* Generates one sample. corpus: the haystack for NIAH (required), ignored for
 * passkey. *out is overwritten (clear a previous sample first, or it leaks); on
 * failure it is left cleared. Deterministic: the same params, corpus and counter
 * give the same sample. Thread-safe for distinct samples if the counter is.
 * Cost: every haystack sentence is counted once, the whole prompt two or three
 * times, and the prompt prefix before each needle once (for token_pos).
 * Returns LKV_OK, LKV_ERR_INVALID (bad params, or ctx_tokens too small for the
 * template: the message says how many tokens it needs), LKV_ERR_NOMEM, or the
 * counter's error. */
int lkv_task_generate(const lkv_task_params *p, const lkv_corpus *corpus,
                      lkv_task_sample *out);

/* Frees the sample's strings and zeroes it. NULL or a zeroed sample is fine. */
void lkv_task_sample_clear(lkv_task_sample *s);

/* ------------------------------------------------------------ scores */

/* Finds the first run of exactly five ASCII digits in text (a run of 4 or 6+
 * digits is not a 5-digit number and is skipped). Copies it into out (NUL-
 * terminated) and returns 1, or returns 0 (out = ""). */
int lkv_extract_passkey(const char *text, char out[6]);

/* 1 if the first 5-digit number of output equals expected, else 0. */
double lkv_score_passkey(const char *output, const char *expected);

/* RULER's string match: the fraction of expected[0..n) that occur in output as
 * substrings, ignoring ASCII case. 0 for NULL output; 0 if n <= 0. */
double lkv_score_string_match(const char *output, const char *const *expected, int n);

/* Scores a generated text against a sample: passkey exact match, NIAH string
 * match. NaN if s is NULL or has no expected answer. */
double lkv_task_score(const lkv_task_sample *s, const char *output);

/* ------------------------------------------------------------ reports */

typedef enum lkv_value_kind {
    LKV_VALUE_NULL = 0,
    LKV_VALUE_INT = 1,  /* i */
    LKV_VALUE_NUM = 2,  /* num; NaN and infinities are written as null / empty */
    LKV_VALUE_STR = 3,  /* str (UTF-8; NULL is null) */
    LKV_VALUE_BOOL = 4  /* i != 0 */
} lkv_value_kind;

/* An extra column of a result row (depth, samples, n_tokens, ...). */
typedef struct lkv_report_field {
    const char *key;
    lkv_value_kind kind;
    int64_t i;
    double num;
    const char *str;
} lkv_report_field;

/* One result: a task at one (press, ratio, ctx). Strings are copied by
 * lkv_report_add. Unknown numbers: NaN for doubles, -1 for byte counts; both are
 * written as null in JSON and as empty cells in CSV/Markdown. */
typedef struct lkv_result_row {
    const char *task;     /* "passkey", "niah_single", "ppl", ... */
    const char *model;    /* model name or file */
    const char *press;    /* policy spec; "full" for the full-cache baseline */
    double ratio;         /* compression ratio: fraction of the KV removed (0 = full) */
    int64_t ctx;          /* context length, tokens */
    double score;         /* task score (0..1 for passkey/NIAH; perplexity for ppl) */
    int64_t kv_bytes;     /* KV bytes held, measured from the pool */
    int64_t peak_rss;     /* bytes */
    double prefill_tps;   /* tokens/s */
    double decode_tps;    /* tokens/s */
    uint64_t seed;
    const lkv_report_field *extra; /* [n_extra] more columns, keys distinct from the above */
    int n_extra;
} lkv_result_row;

/* Strings NULL (null), numbers unknown (NaN / -1), seed 0, no extras. */
lkv_result_row lkv_result_row_default(void);

typedef enum lkv_report_format {
    LKV_REPORT_JSONL = 0,    /* one JSON object per line, keys in column order */
    LKV_REPORT_CSV = 1,      /* RFC 4180: header line, CRLF line ends */
    LKV_REPORT_MARKDOWN = 2  /* a GitHub-flavoured Markdown table */
} lkv_report_format;

/* A table of result rows. Columns: the eleven standard keys, then extra keys in
 * first-seen order; a row lacking a column has null / an empty cell there. Not
 * thread-safe: one thread adds rows. */
typedef struct lkv_report lkv_report;

int lkv_report_create(lkv_report **out);
void lkv_report_free(lkv_report *r); /* closes the stream too */

/* Appends every row added from now on to the JSON-lines file at path (created
 * if missing, appended to otherwise), flushed after each row, so a long run
 * that stops early keeps what it measured. Returns LKV_OK or LKV_ERR_IO. */
int lkv_report_stream_jsonl(lkv_report *r, const char *path);

/* Adds a row (copied). Returns LKV_OK, LKV_ERR_INVALID (NULL, an extra key
 * that is empty, repeats or shadows a standard key), LKV_ERR_NOMEM or
 * LKV_ERR_IO (the stream's write failed; the row is kept in memory). */
int lkv_report_add(lkv_report *r, const lkv_result_row *row);

int lkv_report_n_rows(const lkv_report *r);

/* Renders all rows in a format into buf (NUL-terminated, truncated to cap; buf
 * may be NULL when cap is 0); *len receives the full length without the NUL, so
 * a caller can size a second call. Returns LKV_OK, LKV_ERR_INVALID or
 * LKV_ERR_NOMEM. */
int lkv_report_render(const lkv_report *r, lkv_report_format fmt, char *buf, size_t cap,
                      size_t *len);

/* Writes all rows to path atomically (temporary file, then rename).
 * Returns LKV_OK, LKV_ERR_INVALID, LKV_ERR_NOMEM or LKV_ERR_IO. */
int lkv_report_write(const lkv_report *r, lkv_report_format fmt, const char *path);

/* ------------------------------------------------------------ memory */

/* Peak resident set size of this process in bytes (Linux VmHWM from
 * /proc/self/status, else getrusage's ru_maxrss); -1 if unknown. */
int64_t lkv_peak_rss_bytes(void);

/* Current resident set size in bytes (VmRSS); -1 if unknown. */
int64_t lkv_rss_bytes(void);

/* Resets the peak to the current RSS (Linux: writes 5 to /proc/self/clear_refs)
 * so one process can measure the peak of each configuration of a sweep.
 * Returns LKV_OK or LKV_ERR_UNSUPPORTED (then peaks are since process start). */
int lkv_peak_rss_reset(void);

/* ------------------------------------------------------------ progress */

typedef enum lkv_progress_mode {
    LKV_PROGRESS_AUTO = 0,  /* TTY if fd is a terminal, else LINES */
    LKV_PROGRESS_TTY = 1,   /* one line redrawn in place (\r), at most every tty_interval */
    LKV_PROGRESS_LINES = 2, /* a plain line every line_interval seconds (logs, CI) */
    LKV_PROGRESS_OFF = 3
} lkv_progress_mode;

typedef struct lkv_progress_params {
    const char *label;      /* shown first ("eval"); copied */
    int64_t total;          /* items in the run; <= 0 if unknown (no % or ETA) */
    int fd;                 /* file descriptor written to (2 = stderr) */
    lkv_progress_mode mode;
    double tty_interval;    /* seconds between redraws (0.2) */
    double line_interval;   /* seconds between plain lines (10) */
} lkv_progress_params;

/* label "progress", total 0, fd 2, AUTO, 0.2 s, 10 s. */
lkv_progress_params lkv_progress_default_params(void);

typedef struct lkv_progress lkv_progress;

int lkv_progress_create(const lkv_progress_params *p, lkv_progress **out);

/* Records that `done` items are finished (absolute count) and may draw:
 * "label  12/100  12.0%  0.85/s  ETA 1m43s  note". note (may be NULL) names the
 * current item. Never fails; write errors are ignored. */
void lkv_progress_update(lkv_progress *pg, int64_t done, const char *note);

/* Draws the final state (with the elapsed time) and ends the line. */
void lkv_progress_finish(lkv_progress *pg);

void lkv_progress_free(lkv_progress *pg);

/* ------------------------------------------------------------ sweeps */

/* One `longkv eval` sweep: tasks x context lengths x policies x ratios (x depths
 * x samples for the question tasks), always with the full-cache baseline ("full")
 * first in every (task, ctx), every row added to a report.
 *
 * Tasks (comma-separated):
 *   passkey, niah_single, niah_multikey, niah_multivalue, niah_multiquery
 *       the prompt in the model's chat template (system message "You are a
 *       helpful assistant.", the same for every policy): context + question in
 *       the user turn, the reply started with the answer prefix; prefilled with
 *       lkv_ctx_prefill_prompt (the question kept out of compression unless
 *       query_aware), then greedy generation. One row per (task, ctx, depth,
 *       press, ratio): score = mean over the samples.
 *   ppl       a real text of ctx tokens: the first ppl_prefix tokens are
 *             prefilled (and compressed once), every later token is evaluated
 *             one at a time with the policy active while decoding and scored
 *             (StreamingLLM's protocol). Rows: one per position bucket
 *             (pos_start, pos_end; score = the bucket's perplexity) and one for
 *             all scored tokens (scope "all").
 *   fidelity  the same text through the full cache and the policy side by side:
 *             mean KL(full || policy) of the next-token distribution, top-1
 *             agreement (the score), and the relative error of every layer's
 *             attention output (through lkv_layer_hook; errors of earlier layers
 *             propagate, so layer l's error is end-to-end up to l).
 * Ratio substitution: a stage of a spec whose method takes `ratio` and that was
 * given neither `ratio` nor `budget` gets ratio=R for every R of the sweep; a
 * method with only `budget` (quest) gets budget = round((1 - R) * ctx); a spec
 * with its own amount, or a method without one (kivi, int8), runs once and its
 * row's ratio is the measured 1 - kv_bytes / kv_bytes(full) (ratio_source
 * "measured"). */
typedef struct lkv_eval_params {
    const lkv_model *model;   /* required; not owned */
    const char *model_name;   /* the rows' "model" column (default "model") */
    const char *tasks;        /* comma-separated task names (default "passkey") */
    const char *presses;      /* ';'-separated specs (NULL: only the baseline) */
    const double *ratios;     /* [n_ratios] fractions removed (default {0.5}) */
    int n_ratios;
    const int *ctxs;          /* [n_ctxs] context lengths in tokens (default {1024}) */
    int n_ctxs;
    const double *depths;     /* [n_depths] needle depths in percent (default {50}) */
    int n_depths;
    int samples;              /* samples per (task, ctx, depth) (default 4) */
    uint64_t seed;            /* sample k uses seed + k (default 0) */
    int query_aware;          /* 1: query_aware=1 on the policies (default 0) */
    const lkv_corpus *corpus; /* NIAH haystacks and ppl/fidelity text (required for
                                 niah, ppl and fidelity); not owned */
    int ppl_prefix;           /* tokens prefilled before token-by-token scoring;
                                 0 = ctx / 2 (default 0) */
    int ppl_bucket;           /* position bucket width in tokens; 0 = ctx / 8 */
    int n_batch;              /* prefill chunk (default 256) */
    lkv_threadpool *tp;       /* not owned; NULL = the calling thread only */
    lkv_progress_mode progress; /* progress on stderr (default AUTO) */
    int log_fd;               /* one line per finished configuration; -1 = none
                                 (default 2) */
} lkv_eval_params;

lkv_eval_params lkv_eval_default_params(void);

/* Counts the runs (model passes) the sweep will do, for planning; < 0 on a bad
 * parameter (message set). */
int64_t lkv_eval_count_runs(const lkv_eval_params *p);

/* Runs the sweep, adding rows to r (stream it with lkv_report_stream_jsonl to
 * keep rows of an interrupted run). Returns LKV_OK, LKV_ERR_INVALID (bad task,
 * spec or parameter: nothing was run), or the first error of the model or the
 * policy (the rows measured before it stay in r). */
int lkv_eval_run(const lkv_eval_params *p, lkv_report *r);

#ifdef __cplusplus
}
#endif
#endif /* LONGKV_H */
