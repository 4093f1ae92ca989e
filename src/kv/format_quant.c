/* format_quant.c -- the quantized page formats: int8 per token (q8) and KIVI
 * 4/2-bit (kivi4, kivi2). One row of traits each (kv.h); the byte layouts are
 * the run layouts of include/longkv.h (lkv_dtype) and kernels/kv_quant.h, so
 * attention reads a page in place.
 *
 * A page of pt slots, head dim d (all offsets from the start of each array):
 *
 *   q8     K extent   [pt][d] int8           code of (slot t, channel c) at t*d + c
 *          V extent   [pt][d] int8
 *          k_aux      [pt] half              scale of key row t (symmetric: x' = s*q)
 *          v_aux      [pt] half              scale of value row t
 *   kiviB  (B = 4 or 2; tiles of 16 slots, S = pt rounded up to 16; R =
 *          row_bytes bytes per slot; layouts in kernels/kv_quant.h)
 *          K extent   [S/16] tiles of 16R    16 slots x 32/B channels per vector
 *          V extent   [S/16] tiles of 16R    16 channels x 32/B slots per vector
 *          k_aux      [d] half scale, then [d] half min: the key group is the
 *                                            whole page (KIVI: per channel over
 *                                            the group's tokens)
 *          v_aux      [S/16][ceil(d/32)][2][16] half   (scale, min) per slot
 *                                            and group of 32 channels
 *
 * KIVI pages are normally written whole, by lkv_seq_convert (kv/convert.c),
 * which encodes the keys of all slots at once. The write trait below also
 * accepts partial writes (append after a truncate, compaction by
 * lkv_seq_keep, copy-on-write of a shared tail): values are per slot and
 * simply encoded; keys are re-encoded for the whole page, per channel, over
 * the page's current (decoded) slots plus the new ones -- lossy in the same
 * bound, since the range only grows.
 */
#include <string.h>

#include "common/fp16.h"
#include "kernels/kv_quant.h"
#include "kv/kv.h"

#define MAX_PT 4096 /* lkv_cache_params.page_tokens upper bound */

/* ------------------------------------------------------------ q8 */

static size_t q8_rows(int pt, int d) { return (size_t)pt * (size_t)d; }
static size_t q8_aux(int pt, int d) {
    (void)d;
    return (size_t)pt * 2;
}

static void q8_write(const kv_page_ptrs *pg, int pt, int d, int slot, int n, const float *k,
                     size_t ks, const float *v, size_t vs) {
    (void)pt;
    for (int t = 0; t < n; t++) {
        size_t row = (size_t)(slot + t);
        lkv_kvq_encode_q8_row(k + t * ks, d, (int8_t *)pg->k + row * d, (uint16_t *)pg->k_aux + row);
        lkv_kvq_encode_q8_row(v + t * vs, d, (int8_t *)pg->v + row * d, (uint16_t *)pg->v_aux + row);
    }
}

static void quant_read(lkv_dtype dt, const kv_page_ptrs *pg, int d, int slot, int n, float *k,
                       float *v) {
    lkv_kvq_decode(dt, d, pg->k, pg->k_aux, pg->v, pg->v_aux, slot, n, k, v);
}

static void q8_read(const kv_page_ptrs *pg, int pt, int d, int slot, int n, float *k, float *v) {
    (void)pt;
    quant_read(LKV_DTYPE_Q8, pg, d, slot, n, k, v);
}

/* ------------------------------------------------------------ kivi */

static size_t kivi4_rows(int pt, int d) {
    return (size_t)lkv_kvq_slots(LKV_DTYPE_KIVI4, pt) * lkv_kvq_row_bytes(LKV_DTYPE_KIVI4, d);
}
static size_t kivi2_rows(int pt, int d) {
    return (size_t)lkv_kvq_slots(LKV_DTYPE_KIVI2, pt) * lkv_kvq_row_bytes(LKV_DTYPE_KIVI2, d);
}
static size_t kivi_kaux(int pt, int d) {
    (void)pt;
    return lkv_kvq_kaux_fixed_bytes(LKV_DTYPE_KIVI4, d);
}
static size_t kivi_vaux(int pt, int d) {
    return (size_t)lkv_kvq_slots(LKV_DTYPE_KIVI4, pt) * lkv_kvq_vaux_row_bytes(LKV_DTYPE_KIVI4, d);
}

/* Zero codes and scales: a value word holds several slots (written one by
 * one), and free slots must read as code 0 with scale 0. */
static void kivi_init(lkv_dtype dt, const kv_page_ptrs *pg, int pt, int d) {
    const size_t rows = (size_t)lkv_kvq_slots(dt, pt) * lkv_kvq_row_bytes(dt, d);
    memset(pg->k, 0, rows);
    memset(pg->v, 0, rows);
    memset(pg->k_aux, 0, lkv_kvq_kaux_fixed_bytes(dt, d));
    memset(pg->v_aux, 0, kivi_vaux(pt, d));
}

static void kivi_write(lkv_dtype dt, const kv_page_ptrs *pg, int pt, int d, int slot, int n,
                       const float *k, size_t ks, const float *v, size_t vs) {
    const int bits = lkv_kvq_bits(dt);
    for (int t = 0; t < n; t++) /* values: per slot */
        lkv_kvq_encode_kivi_vrow(bits, d, v + t * vs, slot + t, pg->v, pg->v_aux);
    /* keys: one channel at a time over all pt slots (decoded, new rows in place) */
    uint16_t *aux = pg->k_aux;
    uint8_t *codes = pg->k;
    float col[MAX_PT];
    const int L = (1 << bits) - 1;
    uint16_t new_aux[2];
    for (int c = 0; c < d; c++) {
        float s = lkv_half_to_float(aux[c]), m = lkv_half_to_float(aux[d + c]);
        for (int t = 0; t < pt; t++)
            col[t] = (t >= slot && t < slot + n) ? k[(size_t)(t - slot) * ks + c]
                                                : m + s * (float)lkv_kvq_kcode(codes, bits, d, t, c);
        /* encode the column as a one-channel key group: reuse the channel encoder
         * on a [pt][1] view, then splice the codes into the packed rows */
        uint8_t one[LKV_KVQ_TILE * 8]; /* a tile of one channel (4-byte rows) */
        float mn = col[0], mx = col[0];
        for (int t = 1; t < pt; t++) {
            mn = col[t] < mn ? col[t] : mn;
            mx = col[t] > mx ? col[t] : mx;
        }
        float pair[2] = {mn, mx};
        lkv_kvq_encode_kivi_keys(bits, 1, 2, pair, 1, one, new_aux); /* scale/min of [mn, mx] */
        aux[c] = new_aux[0];
        aux[d + c] = new_aux[1];
        float ns = lkv_half_to_float(new_aux[0]), nm = lkv_half_to_float(new_aux[1]);
        float inv = ns > 0.0f ? 1.0f / ns : 0.0f;
        for (int t = 0; t < pt; t++) {
            float q = (col[t] - nm) * inv + 0.5f;
            int code = q < 0.0f ? 0 : q >= (float)L ? L : (int)q;
            int shift;
            size_t off = lkv_kvq_kword(bits, d, t, c, &shift);
            lkv_kvq_put(codes, off, shift, bits, code);
        }
    }
}

/* The key digest of a KIVI page, derived instead of stored: channel c's keys
 * decode to min_c + scale_c * code with code in [0, 2^b - 1], so
 * [min_c, min_c + (2^b - 1) scale_c] holds every stored key. The encoder sets
 * min_c to the channel's minimum rounded down to a half and scale_c to the
 * span over 2^b - 1 rounded up, so the extreme codes occur and the box is the
 * one a scan of the decoded keys gives (up to that rounding). */
static void kivi_digest(int bits, const kv_page_ptrs *pg, int d, float *kmin, float *kmax) {
    const uint16_t *aux = pg->k_aux; /* [2][d]: scale, min */
    const float L = (float)((1 << bits) - 1);
    for (int c = 0; c < d; c++) {
        float s = lkv_half_to_float(aux[c]), m = lkv_half_to_float(aux[d + c]);
        kmin[c] = m;
        kmax[c] = m + s * L;
    }
}

#define KIVI_FNS(name, DT)                                                                   \
    static void name##_init(const kv_page_ptrs *pg, int pt, int d) { kivi_init(DT, pg, pt, d); } \
    static void name##_write(const kv_page_ptrs *pg, int pt, int d, int slot, int n,          \
                             const float *k, size_t ks, const float *v, size_t vs) {          \
        kivi_write(DT, pg, pt, d, slot, n, k, ks, v, vs);                                    \
    }                                                                                        \
    static void name##_read(const kv_page_ptrs *pg, int pt, int d, int slot, int n, float *k, \
                            float *v) {                                                      \
        (void)pt;                                                                            \
        quant_read(DT, pg, d, slot, n, k, v);                                                \
    }                                                                                        \
    static void name##_digest(const kv_page_ptrs *pg, int pt, int d, float *kmin, float *kmax) { \
        (void)pt;                                                                            \
        kivi_digest(lkv_kvq_bits(DT), pg, d, kmin, kmax);                                    \
    }
KIVI_FNS(kivi4, LKV_DTYPE_KIVI4)
KIVI_FNS(kivi2, LKV_DTYPE_KIVI2)

static const kv_format quant_formats[3] = {
    {"q8", LKV_DTYPE_Q8, LKV_DTYPE_Q8, q8_rows, q8_rows, q8_aux, q8_aux, 0, q8_write, q8_read,
     NULL, NULL, 1},
    {"kivi4", LKV_DTYPE_KIVI4, LKV_DTYPE_KIVI4, kivi4_rows, kivi4_rows, kivi_kaux, kivi_vaux, 0,
     kivi4_write, kivi4_read, kivi4_init, kivi4_digest, 1},
    {"kivi2", LKV_DTYPE_KIVI2, LKV_DTYPE_KIVI2, kivi2_rows, kivi2_rows, kivi_kaux, kivi_vaux, 0,
     kivi2_write, kivi2_read, kivi2_init, kivi2_digest, 1},
};

const kv_format *kv_format_quant(int tag) {
    if (tag < LKV_DTYPE_Q8 || tag > LKV_DTYPE_KIVI2)
        return NULL;
    return &quant_formats[tag - LKV_DTYPE_Q8];
}
