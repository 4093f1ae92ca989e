/* quant.c -- the weight-format traits table, dequantization entry points and
 * the matmul driver (activation quantization + threads over rows). The inner
 * loops live in ref/quant_ref.c and the per-ISA files. */
#include "kernels/quant.h"

#include <string.h>

#include "common/alloc.h"
#include "common/error.h"
#include "kernels/kernels.h"
#include "kernels/quant_blocks.h"

_Static_assert(sizeof(lkv_block_q4_0) == 18, "q4_0 block is 18 bytes");
_Static_assert(sizeof(lkv_block_q4_1) == 20, "q4_1 block is 20 bytes");
_Static_assert(sizeof(lkv_block_q5_0) == 22, "q5_0 block is 22 bytes");
_Static_assert(sizeof(lkv_block_q5_1) == 24, "q5_1 block is 24 bytes");
_Static_assert(sizeof(lkv_block_q8_0) == 34, "q8_0 block is 34 bytes");
_Static_assert(sizeof(lkv_block_q8_1) == 36, "q8_1 block is 36 bytes");
_Static_assert(sizeof(lkv_block_q4_k) == 144, "q4_K block is 144 bytes");
_Static_assert(sizeof(lkv_block_q6_k) == 210, "q6_K block is 210 bytes");
_Static_assert(sizeof(lkv_block_q8_k) == 292, "q8_K block is 292 bytes");
_Static_assert(sizeof(lkv_act_q8) == 40, "act q8 block is 40 bytes");
_Static_assert(sizeof(lkv_act_q8k) == 292, "act q8k block is 292 bytes");

/* One row per GGML type number. Types with a name but supported = 0 are
 * recognised (the GGUF reader accepts their sizes) but cannot be computed. */
static const lkv_qtraits traits[LKV_Q_COUNT_] = {
    [LKV_Q_F32] = {"f32", 1, 4, 1},
    [LKV_Q_F16] = {"f16", 1, 2, 1},
    [LKV_Q_Q4_0] = {"q4_0", LKV_QK, sizeof(lkv_block_q4_0), 1},
    [LKV_Q_Q4_1] = {"q4_1", LKV_QK, sizeof(lkv_block_q4_1), 1},
    [LKV_Q_Q5_0] = {"q5_0", LKV_QK, sizeof(lkv_block_q5_0), 1},
    [LKV_Q_Q5_1] = {"q5_1", LKV_QK, sizeof(lkv_block_q5_1), 1},
    [LKV_Q_Q8_0] = {"q8_0", LKV_QK, sizeof(lkv_block_q8_0), 1},
    [LKV_Q_Q8_1] = {"q8_1", LKV_QK, sizeof(lkv_block_q8_1), 0},
    [LKV_Q_Q2_K] = {"q2_K", LKV_QK_K, 84, 0},
    [LKV_Q_Q3_K] = {"q3_K", LKV_QK_K, 110, 0},
    [LKV_Q_Q4_K] = {"q4_K", LKV_QK_K, sizeof(lkv_block_q4_k), 1},
    [LKV_Q_Q5_K] = {"q5_K", LKV_QK_K, 176, 0},
    [LKV_Q_Q6_K] = {"q6_K", LKV_QK_K, sizeof(lkv_block_q6_k), 1},
    [LKV_Q_Q8_K] = {"q8_K", LKV_QK_K, sizeof(lkv_block_q8_k), 0},
    [LKV_Q_BF16] = {"bf16", 1, 2, 1},
};

static const lkv_qtraits no_traits = {0};

const lkv_qtraits *lkv_qtype_traits(int type) {
    if (type < 0 || type >= LKV_Q_COUNT_ || !traits[type].name)
        return &no_traits;
    return &traits[type];
}

size_t lkv_qtype_row_bytes(int type, int64_t n) {
    const lkv_qtraits *t = lkv_qtype_traits(type);
    if (!t->name || n <= 0 || n % t->block)
        return 0;
    size_t out;
    if (lkv_mul_size((size_t)(n / t->block), t->block_bytes, &out) < 0)
        return 0;
    return out;
}

int lkv_qact_block(int type) {
    switch (type) {
    case LKV_Q_Q4_0: case LKV_Q_Q4_1: case LKV_Q_Q5_0: case LKV_Q_Q5_1: case LKV_Q_Q8_0:
        return LKV_QK;
    case LKV_Q_Q4_K: case LKV_Q_Q6_K:
        return LKV_QK_K;
    default:
        return 0;
    }
}

size_t lkv_qact_row_bytes(int64_t cols) {
    /* the widest layout (AVX-512 nibble formats) is 3 bytes per element */
    size_t b = (size_t)cols * 4 + 256;
    return (b + 63) & ~(size_t)63;
}

/* Per-type dequantizers (ref/quant_ref.c). */
void lkv_dequant_ref(int type, const void *src, float *dst, int64_t n);

int lkv_dequantize(int type, const void *src, float *dst, int64_t n) {
    const lkv_qtraits *t = lkv_qtype_traits(type);
    if (!t->name || !t->supported)
        LKV_FAIL(LKV_ERR_UNSUPPORTED, "dequantize: tensor type %d is not supported", type);
    if (n < 0 || n % t->block)
        LKV_FAIL(LKV_ERR_INVALID, "dequantize: %lld elements is not a multiple of the %s block %d",
                 (long long)n, t->name, t->block);
    if (n == 0)
        return 0;
    if (!src || !dst)
        LKV_FAIL(LKV_ERR_INVALID, "dequantize: NULL buffer");
    lkv_dequant_ref(type, src, dst, n);
    return 0;
}

int lkv_get_row(int type, const void *w, int64_t cols, int64_t r, float *dst) {
    size_t rb = lkv_qtype_row_bytes(type, cols);
    if (!rb)
        LKV_FAIL(LKV_ERR_INVALID, "get_row: %lld columns do not fit type %d", (long long)cols,
                 type);
    if (r < 0 || !w)
        LKV_FAIL(LKV_ERR_INVALID, "get_row: bad row %lld", (long long)r);
    return lkv_dequantize(type, (const uint8_t *)w + (size_t)r * rb, dst, cols);
}

size_t lkv_matmul_scratch_bytes(int type, int64_t cols, int n_tok) {
    if (lkv_qact_block(type) == 0 || cols <= 0 || n_tok <= 0)
        return 0;
    return lkv_qact_row_bytes(cols) * (size_t)n_tok;
}

/* ------------------------------------------------------------------ driver */

typedef struct mm_job {
    const lkv_qmm_kernel *k;
    const void *w;
    size_t w_row_bytes;
    int64_t rows, cols, chunk;
    const void *act;
    size_t act_stride;
    int n_tok;
    float *y;
    /* activation quantization, split by token */
    const float *x;
    uint8_t *qdst;
} mm_job;

static void mm_task(void *arg, int task, int thread) {
    (void)thread;
    const mm_job *j = arg;
    int64_t r0 = (int64_t)task * j->chunk;
    int64_t r1 = r0 + j->chunk < j->rows ? r0 + j->chunk : j->rows;
    if (r0 < r1)
        j->k->rows(j->w, j->w_row_bytes, j->cols, r0, r1, j->act, j->act_stride, j->n_tok, j->y,
                   (size_t)j->rows);
}

static void quant_task(void *arg, int task, int thread) {
    (void)thread;
    const mm_job *j = arg;
    int per = (j->n_tok + 15) / 16;
    for (int t = task * per; t < (task + 1) * per && t < j->n_tok; t++)
        j->k->quantize(j->x + (size_t)t * (size_t)j->cols, j->cols, j->qdst + (size_t)t * j->act_stride);
}

int lkv_matmul_with(const lkv_kernel_table *kt, int type, const void *w, int64_t rows,
                    int64_t cols, const float *x, int n_tok, float *y, void *scratch,
                    lkv_threadpool *tp) {
    const lkv_qtraits *t = lkv_qtype_traits(type);
    if (!t->name || !t->supported || !kt->qmm[type].rows)
        LKV_FAIL(LKV_ERR_UNSUPPORTED, "matmul: tensor type %d (%s) is not supported", type,
                 t->name ? t->name : "unknown");
    size_t rb = lkv_qtype_row_bytes(type, cols);
    if (!rb || rows < 0 || n_tok < 1)
        LKV_FAIL(LKV_ERR_INVALID, "matmul: bad shape rows=%lld cols=%lld n_tok=%d for %s",
                 (long long)rows, (long long)cols, n_tok, t->name);
    if (!w || !x || !y)
        LKV_FAIL(LKV_ERR_INVALID, "matmul: NULL buffer");
    if (rows == 0)
        return 0;
    mm_job j = {.k = &kt->qmm[type], .w = w, .w_row_bytes = rb, .rows = rows, .cols = cols,
                .n_tok = n_tok, .y = y, .x = x};
    void *owned = NULL;
    if (j.k->quantize) {
        j.act_stride = lkv_qact_row_bytes(cols);
        if (!scratch) {
            owned = lkv_malloc(j.act_stride * (size_t)n_tok);
            if (!owned)
                LKV_FAIL(LKV_ERR_NOMEM, "matmul: no memory for %d quantized activation rows",
                         n_tok);
            scratch = owned;
        }
        j.qdst = scratch;
        if (n_tok >= 32 && tp)
            lkv_threadpool_run(tp, 16, quant_task, &j);
        else
            for (int i = 0; i < n_tok; i++)
                j.k->quantize(x + (size_t)i * (size_t)cols, cols,
                              j.qdst + (size_t)i * j.act_stride);
        j.act = scratch;
    } else {
        j.act = x;
        j.act_stride = (size_t)cols * sizeof(float);
    }
    /* Contiguous row chunks, multiples of 4 so the micro-kernels see whole
     * row groups. Decode: 4 equal chunks per thread (a slow core does not hold
     * up the rest; equal sizes keep the split even). Prefill: 32-row chunks,
     * taken dynamically, since each is long enough to pay for the scheduling. */
    int nth = lkv_threadpool_size(tp);
    int64_t want = nth > 1 ? (int64_t)nth * 4 : 1;
    if (nth > 1 && n_tok >= 8 && rows / 32 > want)
        want = rows / 32;
    int64_t chunk = (rows + want - 1) / want;
    chunk = (chunk + 3) & ~(int64_t)3;
    j.chunk = chunk;
    int n_tasks = (int)((rows + chunk - 1) / chunk);
    if (n_tasks == 1 || !tp)
        for (int i = 0; i < n_tasks; i++)
            mm_task(&j, i, 0);
    else
        lkv_threadpool_run(tp, n_tasks, mm_task, &j);
    lkv_free(owned);
    return 0;
}

int lkv_matmul(int type, const void *w, int64_t rows, int64_t cols, const float *x, int n_tok,
               float *y, void *scratch, lkv_threadpool *tp) {
    return lkv_matmul_with(lkv_kernels(), type, w, rows, cols, x, n_tok, y, scratch, tp);
}
