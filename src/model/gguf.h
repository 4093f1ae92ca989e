/* gguf.h -- GGUF v3 reader (internal API of the model layer).
 *
 * The file is memory-mapped read-only; every count, offset, size and string
 * length is bounds-checked against the file before use, so a corrupt or hostile
 * file yields LKV_ERR_FORMAT with a message naming what is wrong, never a crash
 * or a huge allocation. Strings returned point into the mapping (not
 * NUL-terminated: use the lengths).
 */
#ifndef LKV_MODEL_GGUF_H
#define LKV_MODEL_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/quant.h"

/* GGUF metadata value types (numbering from the GGUF specification). */
typedef enum lkv_gguf_vtype {
    LKV_GGUF_U8 = 0, LKV_GGUF_I8 = 1, LKV_GGUF_U16 = 2, LKV_GGUF_I16 = 3,
    LKV_GGUF_U32 = 4, LKV_GGUF_I32 = 5, LKV_GGUF_F32 = 6, LKV_GGUF_BOOL = 7,
    LKV_GGUF_STRING = 8, LKV_GGUF_ARRAY = 9, LKV_GGUF_U64 = 10, LKV_GGUF_I64 = 11,
    LKV_GGUF_F64 = 12
} lkv_gguf_vtype;

typedef struct lkv_gguf_str {
    const char *ptr; /* into the mapping, not NUL-terminated */
    uint64_t len;
} lkv_gguf_str;

typedef struct lkv_gguf_kv {
    lkv_gguf_str key;
    lkv_gguf_vtype type;
    /* scalar value (for non-array, non-string types), widened */
    union { uint64_t u; int64_t i; double f; } val;
    lkv_gguf_str str;            /* type == STRING */
    lkv_gguf_vtype arr_type;     /* type == ARRAY: element type */
    uint64_t arr_n;              /* type == ARRAY: element count */
    const uint8_t *arr_data;     /* type == ARRAY: first element in the mapping */
} lkv_gguf_kv;

typedef struct lkv_gguf_tensor {
    lkv_gguf_str name;
    lkv_qtype type;              /* ggml type number (kernels/quant.h) */
    int n_dims;                  /* 1..4 */
    int64_t ne[4];               /* ne[0] = row length (contiguous), unused dims = 1 */
    const void *data;            /* into the mapping, aligned as the file says */
    size_t nbytes;
    uint64_t offset;             /* of the data, from the start of the data section */
} lkv_gguf_tensor;

typedef struct lkv_gguf lkv_gguf;

/* Opens and validates the whole file (header, every key/value, every tensor
 * info, data ranges inside the file and non-overlapping). */
int lkv_gguf_open(const char *path, lkv_gguf **out);
/* Same, over a caller's buffer (must outlive the handle; used by the fuzzer). */
int lkv_gguf_open_memory(const void *data, size_t size, lkv_gguf **out);
void lkv_gguf_close(lkv_gguf *g);

uint32_t lkv_gguf_version(const lkv_gguf *g);
uint64_t lkv_gguf_n_kv(const lkv_gguf *g);
const lkv_gguf_kv *lkv_gguf_kv_at(const lkv_gguf *g, uint64_t i);
/* Finds a key (exact match); NULL if absent. */
const lkv_gguf_kv *lkv_gguf_find(const lkv_gguf *g, const char *key);

/* Typed getters: LKV_ERR_NOT_FOUND if absent, LKV_ERR_FORMAT if the type does
 * not convert (integers convert among themselves when the value fits). */
int lkv_gguf_get_i64(const lkv_gguf *g, const char *key, int64_t *out);
int lkv_gguf_get_f64(const lkv_gguf *g, const char *key, double *out);
int lkv_gguf_get_str(const lkv_gguf *g, const char *key, lkv_gguf_str *out);

/* Array access: element i of an array of strings / numbers. Bounds-checked. */
int lkv_gguf_arr_str(const lkv_gguf_kv *kv, uint64_t i, lkv_gguf_str *out);
int lkv_gguf_arr_i64(const lkv_gguf_kv *kv, uint64_t i, int64_t *out);
int lkv_gguf_arr_f64(const lkv_gguf_kv *kv, uint64_t i, double *out);

uint64_t lkv_gguf_n_tensors(const lkv_gguf *g);
const lkv_gguf_tensor *lkv_gguf_tensor_at(const lkv_gguf *g, uint64_t i);
const lkv_gguf_tensor *lkv_gguf_find_tensor(const lkv_gguf *g, const char *name);

/* Compares a GGUF string with a C string. */
int lkv_gguf_str_eq(lkv_gguf_str s, const char *c);

#endif
