/* fuzz_gguf.c -- libFuzzer target for the GGUF reader: whatever the bytes,
 * opening must either fail cleanly or yield a handle whose every key, array
 * element and tensor can be read without touching memory outside the input.
 * The corpus (fuzz/corpus/fuzz_gguf) comes from `test_gguf --write-corpus`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "model/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* an exact-size copy, so the sanitizer sees any read past the end */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    if (size)
        memcpy(copy, data, size);
    lkv_gguf *g = NULL;
    if (lkv_gguf_open_memory(copy, size, &g) == 0) {
        volatile uint64_t sink = 0;
        for (uint64_t i = 0; i < lkv_gguf_n_kv(g); i++) {
            const lkv_gguf_kv *kv = lkv_gguf_kv_at(g, i);
            char key[128];
            size_t kl = kv->key.len < sizeof key - 1 ? (size_t)kv->key.len : sizeof key - 1;
            memcpy(key, kv->key.ptr, kl);
            key[kl] = 0;
            int64_t iv;
            double dv;
            lkv_gguf_str s;
            if (kl == kv->key.len) {
                lkv_gguf_get_i64(g, key, &iv);
                lkv_gguf_get_f64(g, key, &dv);
                if (lkv_gguf_get_str(g, key, &s) == 0 && s.len)
                    sink += (uint8_t)s.ptr[s.len - 1];
            }
            if (kv->type == LKV_GGUF_ARRAY) {
                uint64_t n = kv->arr_n < 4096 ? kv->arr_n : 4096;
                for (uint64_t j = 0; j < n; j++) {
                    if (lkv_gguf_arr_str(kv, j, &s) == 0 && s.len)
                        sink += (uint8_t)s.ptr[0] + (uint8_t)s.ptr[s.len - 1];
                    if (lkv_gguf_arr_i64(kv, j, &iv) == 0)
                        sink += (uint64_t)iv;
                    lkv_gguf_arr_f64(kv, j, &dv);
                }
                lkv_gguf_arr_str(kv, kv->arr_n, &s); /* one past the end */
            }
        }
        for (uint64_t i = 0; i < lkv_gguf_n_tensors(g); i++) {
            const lkv_gguf_tensor *t = lkv_gguf_tensor_at(g, i);
            char name[128];
            size_t nl = t->name.len < sizeof name - 1 ? (size_t)t->name.len : sizeof name - 1;
            memcpy(name, t->name.ptr, nl);
            name[nl] = 0;
            lkv_gguf_find_tensor(g, name);
            if (t->nbytes)
                sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
            /* dequantize the first and last rows of small tensors */
            if (t->ne[0] <= 4096 && lkv_qtype_traits(t->type)->supported) {
                float *row = lkv_malloc((size_t)t->ne[0] * sizeof(float));
                int64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
                if (row) {
                    lkv_get_row(t->type, t->data, t->ne[0], 0, row);
                    lkv_get_row(t->type, t->data, t->ne[0], rows - 1, row);
                }
                lkv_free(row);
            }
        }
        (void)sink;
        lkv_gguf_close(g);
    }
    free(copy);
    return 0;
}
