/* fuzz_snapshot.c -- libFuzzer target for the snapshot loader (from memory).
 *
 * Loads the input into a small cache; a load that succeeds must give a
 * sequence that attends without error and re-saves to exactly the same bytes
 * (the format has one encoding per content; a version-1 or -2 input differs
 * only in its version field and header CRC, since saves write version 3); a
 * load that fails must leave
 * the cache empty. Seed corpus: fuzz/corpus/fuzz_snapshot/, written by
 * `test_kv_snapshot --write-corpus DIR` (same cache identity as below).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "longkv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what) {
    /* a broken invariant in the library: crash so the fuzzer records it */
    (void)what;
    __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lkv_cache_params cp = lkv_cache_default_params();
    cp.n_layers = 2;
    cp.kv_heads = 2;
    cp.head_dim = 8;
    cp.page_tokens = 4;
    cp.model_id = 0x5EED;
    cp.budget_bytes = 1 << 20;
    lkv_cache *c = NULL;
    if (lkv_cache_create(&cp, &c) != 0)
        return 0;
    lkv_seq *s = NULL;
    int rc = lkv_seq_load_mem(c, data, size, &s);
    lkv_cache_stats st;
    lkv_cache_get_stats(c, &st);
    if (rc != 0) {
        if (s || st.n_pages != 0 || st.committed != 0 || st.n_sequences != 0)
            fail("failed load changed the cache");
        if (rc != LKV_ERR_FORMAT && rc != LKV_ERR_VERSION && rc != LKV_ERR_BUDGET)
            fail("unexpected error code");
    } else {
        size_t n = 0;
        if (lkv_seq_snapshot_size(s, -1, &n) != 0 || n != size)
            fail("re-saved size differs");
        uint8_t *out = malloc(n ? n : 1);
        if (out) {
            if (lkv_seq_save_mem(s, -1, out, n, NULL) != 0)
                fail("re-save failed");
            /* an older version re-saves as version 3: equal but for the version
             * field and the header CRC (at header_size - 4) */
            size_t hcrc = (size_t)data[12] | (size_t)data[13] << 8 | (size_t)data[14] << 16;
            for (size_t i = 0; i < n; i++) {
                int old_field = (data[8] == 1 || data[8] == 2) &&
                                ((i >= 8 && i < 12) || (i >= hcrc - 4 && i < hcrc));
                if (out[i] != data[i] && !old_field)
                    fail("re-saved bytes differ");
            }
            free(out);
        }
        lkv_attn_params p = lkv_attn_default_params();
        p.head_dim = 8;
        p.q_heads = 2;
        p.kv_heads = 2;
        float q[2 * 8], o[2 * 8];
        for (int i = 0; i < 16; i++)
            q[i] = (float)(i % 5) - 2.0f;
        for (int l = 0; l < 2; l++)
            if (lkv_seq_attend(s, l, &p, 1, q, NULL, o, NULL, NULL) != 0)
                fail("attention over a loaded sequence failed");
        lkv_seq_free(s);
    }
    lkv_cache_free(c);
    return 0;
}
