/* test_kv_snapshot.c -- snapshots: bit-exact round trips (memory and file,
 * mixed page formats, quantized q8/KIVI pages, first-N-tokens), every
 * single-byte flip and every
 * truncation of a small snapshot refused with the cache unchanged, identity
 * and version mismatches, budget failure without partial state; CRC-32C and
 * hash sanity. `test_kv_snapshot --write-corpus DIR` writes the seed corpus
 * of fuzz/fuzz_snapshot.c (same cache identity as that target). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/hash.h"
#include "kv_testlib.h"

static lkv_rng rng;
static int quick;

/* the identity fuzz/fuzz_snapshot.c loads into */
#define FZ_LAYERS 2
#define FZ_HEADS 2
#define FZ_DIM 8
#define FZ_PAGE 4
#define FZ_MODEL 0x5EEDull

static lkv_cache *make_cache(int L, int Hk, int d, int pt, lkv_dtype t, size_t budget,
                             uint64_t model) {
    return lkv_test_cache(L, Hk, d, pt, t, budget, model);
}

/* A sequence with n tokens per list, heads of different lengths. */
static lkv_seq *make_seq(lkv_cache *c, int n) {
    lkv_cache_params cp = lkv_cache_get_params(c);
    int Hk = cp.kv_heads, d = cp.head_dim;
    lkv_seq *s = NULL;
    CHECK_OK(lkv_seq_create(c, &s));
    float *k = malloc((size_t)n * Hk * d * 4), *v = malloc((size_t)n * Hk * d * 4);
    for (int l = 0; l < cp.n_layers; l++) {
        lkv_test_fill_normal(&rng, k, (size_t)n * Hk * d, 1.0f);
        lkv_test_fill_normal(&rng, v, (size_t)n * Hk * d, 1.0f);
        CHECK_OK(lkv_seq_append(s, l, n, NULL, k, v));
    }
    if (Hk > 1 && n > 3) {
        int slots[] = {0, 2, 3};
        CHECK_OK(lkv_seq_keep(s, cp.n_layers - 1, Hk - 1, slots, 3));
    }
    free(k), free(v);
    return s;
}

/* Converts the pages of every list to a quantized format: list i gets
 * formats[i % n_formats]; KIVI only full pages (its key group is the page). */
static void quantize_seq(lkv_seq *s, const lkv_dtype *formats, int n_formats) {
    lkv_cache_params cp = lkv_cache_get_params(lkv_seq_cache(s));
    for (int l = 0; l < cp.n_layers; l++)
        for (int h = 0; h < cp.kv_heads; h++) {
            lkv_dtype to = formats[(l * cp.kv_heads + h) % n_formats];
            int np = to == LKV_DTYPE_Q8 ? lkv_seq_n_pages(s, l, h)
                                        : lkv_seq_n_tokens(s, l, h) / cp.page_tokens;
            CHECK_OK(lkv_seq_convert(s, l, h, 0, np, to));
        }
}

static void *save(const lkv_seq *s, int n_tokens, size_t *size) {
    CHECK_OK(lkv_seq_snapshot_size(s, n_tokens, size));
    void *b = malloc(*size);
    size_t w = 0;
    CHECK_OK(lkv_seq_save_mem(s, n_tokens, b, *size, &w));
    CHECK(w == *size, "written %zu of %zu", w, *size);
    return b;
}

static int seqs_equal(const lkv_seq *a, const lkv_seq *b, int n_tokens) {
    lkv_cache_params cp = lkv_cache_get_params(lkv_seq_cache(a));
    int d = cp.head_dim;
    for (int l = 0; l < cp.n_layers; l++)
        for (int h = 0; h < cp.kv_heads; h++) {
            int n = lkv_seq_n_tokens(a, l, h);
            if (n_tokens >= 0 && n > n_tokens)
                n = n_tokens;
            if (lkv_seq_n_tokens(b, l, h) != n)
                return 0;
            float *k1 = malloc((size_t)(n + 1) * d * 4), *k2 = malloc((size_t)(n + 1) * d * 4);
            float *v1 = malloc((size_t)(n + 1) * d * 4), *v2 = malloc((size_t)(n + 1) * d * 4);
            int32_t *p1 = malloc((size_t)(n + 1) * 4), *p2 = malloc((size_t)(n + 1) * 4);
            lkv_seq_read(a, l, h, 0, n, k1, v1);
            lkv_seq_read(b, l, h, 0, n, k2, v2);
            lkv_seq_get_positions(a, l, h, 0, n, p1);
            lkv_seq_get_positions(b, l, h, 0, n, p2);
            int ok = !memcmp(k1, k2, (size_t)n * d * 4) && !memcmp(v1, v2, (size_t)n * d * 4) &&
                     !memcmp(p1, p2, (size_t)n * 4);
            free(k1), free(k2), free(v1), free(v2), free(p1), free(p2);
            if (!ok)
                return 0;
        }
    return 1;
}

static void test_hashes(void) {
    CHECK(lkv_crc32c(0, "123456789", 9) == 0xE3069283u, "CRC-32C check value: %08x",
          lkv_crc32c(0, "123456789", 9));
    uint32_t c1 = lkv_crc32c(0, "1234", 4);
    CHECK(lkv_crc32c(c1, "56789", 5) == 0xE3069283u, "CRC continuation");
    uint8_t buf[100];
    for (int i = 0; i < 100; i++)
        buf[i] = (uint8_t)i;
    uint64_t h = lkv_hash64(buf, 100, 1);
    CHECK(h == lkv_hash64(buf, 100, 1) && h != lkv_hash64(buf, 100, 2) && h != lkv_hash64(buf, 99, 1),
          "hash64 deterministic and seed/length sensitive");
    int diff = 0;
    for (int i = 0; i < 100; i++) {
        buf[i] ^= 1;
        diff += lkv_hash64(buf, 100, 1) != h;
        buf[i] ^= 1;
    }
    CHECK(diff == 100, "every byte matters to hash64 (%d/100)", diff);
}

static void test_round_trip(void) {
    const lkv_dtype types[] = {LKV_DTYPE_F32, LKV_DTYPE_F16, LKV_DTYPE_BF16};
    for (int t = 0; t < 3; t++) {
        lkv_cache *c = make_cache(3, 2, 16, 8, types[t], 8 << 20, 42);
        lkv_seq *a = make_seq(c, quick ? 37 : 101), *b = NULL;
        size_t n1, n2;
        void *s1 = save(a, -1, &n1);
        CHECK_OK(lkv_seq_load_mem(c, s1, n1, &b));
        CHECK(b && seqs_equal(a, b, -1), "%s: loaded sequence differs", lkv_dtype_name(types[t]));
        if (b) {
            void *s2 = save(b, -1, &n2);
            CHECK(n1 == n2 && !memcmp(s1, s2, n1), "%s: re-saved snapshot differs",
                  lkv_dtype_name(types[t]));
            free(s2);
            /* same attention, bit for bit */
            lkv_attn_params p = lkv_attn_default_params();
            p.head_dim = 16, p.q_heads = 4, p.kv_heads = 2;
            float q[4 * 16], o1[4 * 16], o2[4 * 16];
            lkv_test_fill_normal(&rng, q, 64, 1.0f);
            CHECK_OK(lkv_seq_attend(a, 2, &p, 1, q, NULL, o1, NULL, NULL));
            CHECK_OK(lkv_seq_attend(b, 2, &p, 1, q, NULL, o2, NULL, NULL));
            CHECK(!memcmp(o1, o2, sizeof o1), "attention after load differs");
            /* digests are rebuilt */
            lkv_page_info i1, i2;
            CHECK_OK(lkv_seq_page_info(a, 0, 1, 1, &i1));
            CHECK_OK(lkv_seq_page_info(b, 0, 1, 1, &i2));
            CHECK(!memcmp(i1.key_min, i2.key_min, 64) && !memcmp(i1.key_max, i2.key_max, 64),
                  "digests rebuilt on load");
        }
        /* first N tokens only */
        lkv_seq *p10 = NULL;
        size_t n3;
        void *s3 = save(a, 10, &n3);
        CHECK(n3 < n1, "partial snapshot smaller");
        CHECK_OK(lkv_seq_load_mem(c, s3, n3, &p10));
        CHECK(p10 && seqs_equal(a, p10, 10), "first-10-token snapshot");
        /* mixed formats: an f16/bf16/f32 snapshot loaded into a cache of another
         * dtype keeps its pages' format; new pages use the cache's */
        lkv_cache *c2 = make_cache(3, 2, 16, 8, types[(t + 1) % 3], 8 << 20, 42);
        lkv_seq *m = NULL;
        CHECK_OK(lkv_seq_load_mem(c2, s1, n1, &m));
        if (m) {
            CHECK(seqs_equal(a, m, -1), "cross-dtype load");
            kvt_list lists[2];
            memset(lists, 0, sizeof lists);
            int n_new = 13;
            float k[13 * 2 * 16], v[13 * 2 * 16];
            lkv_test_fill_normal(&rng, k, sizeof k / 4, 1.0f);
            lkv_test_fill_normal(&rng, v, sizeof v / 4, 1.0f);
            CHECK_OK(lkv_seq_append(m, 0, n_new, NULL, k, v));
            lkv_page_info first, last;
            int np = lkv_seq_n_pages(m, 0, 0);
            lkv_seq_page_info(m, 0, 0, 0, &first);
            lkv_seq_page_info(m, 0, 0, np - 1, &last);
            CHECK(first.format == (int)types[t] && last.format == (int)types[(t + 1) % 3],
                  "page formats %d / %d", first.format, last.format);
            for (int h = 0; h < 2; h++) {
                int n = lkv_seq_n_tokens(m, 0, h);
                lists[h].d = 16;
                float *kk = malloc((size_t)n * 64), *vv = malloc((size_t)n * 64);
                int32_t *pp = malloc((size_t)n * 4);
                lkv_seq_read(m, 0, h, 0, n, kk, vv);
                lkv_seq_get_positions(m, 0, h, 0, n, pp);
                for (int i = 0; i < n; i++)
                    kvt_list_push(&lists[h], LKV_DTYPE_F32, pp[i], kk + i * 16, vv + i * 16);
                free(kk), free(vv), free(pp);
            }
            lkv_attn_params p = lkv_attn_default_params();
            p.head_dim = 16, p.q_heads = 2, p.kv_heads = 2;
            float q[3 * 2 * 16], o[3 * 2 * 16], o_ref[3 * 2 * 16];
            lkv_test_fill_normal(&rng, q, sizeof q / 4, 1.0f);
            CHECK_OK(lkv_seq_attend(m, 0, &p, 3, q, NULL, o, NULL, NULL));
            int32_t last_pos = lists[0].pos[lists[0].n - 1];
            int32_t qp[3] = {last_pos - 2, last_pos - 1, last_pos};
            CHECK_OK(kvt_reference(&p, LKV_DTYPE_F32, lists, NULL, 3, q, qp, o_ref, NULL, NULL, 0,
                                   NULL));
            double e = lkv_test_rel_err(o, o_ref, sizeof o / 4, 1e-3);
            CHECK(e < 1e-4, "mixed-format attention error %.3g", e);
            kvt_list_free(&lists[0]);
            kvt_list_free(&lists[1]);
        }
        lkv_cache_free(c2);
        free(s1), free(s3);
        lkv_cache_free(c);
    }
}

static void test_file(void) {
    char dir[] = "/tmp/lkv_snapXXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[256], tmp[300];
    snprintf(path, sizeof path, "%s/seq.lkvsnap", dir);
    lkv_cache *c = make_cache(2, 3, 32, 16, LKV_DTYPE_F16, 8 << 20, 7);
    lkv_seq *a = make_seq(c, 70), *b = NULL;
    CHECK_OK(lkv_seq_save(a, -1, path));
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(access(tmp, F_OK) != 0, "temporary file left behind");
    CHECK_OK(lkv_seq_load(c, path, &b));
    CHECK(b && seqs_equal(a, b, -1), "file round trip");
    /* overwrite atomically with a shorter snapshot */
    CHECK_OK(lkv_seq_save(a, 5, path));
    lkv_seq *e = NULL;
    CHECK_OK(lkv_seq_load(c, path, &e));
    CHECK(e && lkv_seq_n_tokens(e, 0, 0) == 5, "overwritten snapshot");
    snprintf(tmp, sizeof tmp, "%s/none", dir);
    lkv_seq *x = NULL;
    CHECK(lkv_seq_load(c, tmp, &x) == LKV_ERR_NOT_FOUND && !x, "missing file");
    snprintf(tmp, sizeof tmp, "%s/nodir/x", dir);
    CHECK(lkv_seq_save(a, -1, tmp) == LKV_ERR_IO, "unwritable path");
    unlink(path);
    rmdir(dir);
    lkv_cache_free(c);
}

/* Quantized pages (q8, KIVI-4, KIVI-2, mixed with f16 residual pages) round
 * trip exactly: same formats, codes, scales, positions, attention bit for bit,
 * and a re-save gives the same bytes. */
static void test_quant_round_trip(void) {
    const lkv_dtype q[] = {LKV_DTYPE_KIVI4, LKV_DTYPE_KIVI2, LKV_DTYPE_Q8};
    lkv_cache *c = make_cache(3, 2, 40, 8, LKV_DTYPE_F16, 8 << 20, 42);
    lkv_seq *a = make_seq(c, quick ? 37 : 101), *b = NULL;
    quantize_seq(a, q, 3);
    lkv_page_info pi;
    CHECK_OK(lkv_seq_page_info(a, 0, 0, 0, &pi));
    CHECK(pi.format == LKV_DTYPE_KIVI4, "page 0 is %d", pi.format);
    size_t n1, n2, n3;
    uint8_t *s1 = save(a, -1, &n1);
    CHECK(s1[8] == 3, "written as version %d", s1[8]);
    CHECK_OK(lkv_seq_load_mem(c, s1, n1, &b));
    CHECK(b && seqs_equal(a, b, -1), "quantized: loaded sequence differs");
    if (b) {
        for (int l = 0; l < 3; l++)
            for (int h = 0; h < 2; h++)
                for (int j = 0; j < lkv_seq_n_pages(a, l, h); j++) {
                    lkv_page_info i1, i2;
                    CHECK_OK(lkv_seq_page_info(a, l, h, j, &i1));
                    float mn[40], mx[40];
                    memcpy(mn, i1.key_min, sizeof mn);
                    memcpy(mx, i1.key_max, sizeof mx);
                    CHECK_OK(lkv_seq_page_info(b, l, h, j, &i2));
                    CHECK(i1.format == i2.format && i1.n == i2.n &&
                              !memcmp(mn, i2.key_min, sizeof mn) && !memcmp(mx, i2.key_max, sizeof mx),
                          "layer %d head %d page %d: format %d/%d or digest differs", l, h, j,
                          i1.format, i2.format);
                }
        void *s2 = save(b, -1, &n2);
        CHECK(n1 == n2 && !memcmp(s1, s2, n1), "quantized: re-saved snapshot differs");
        free(s2);
        lkv_attn_params p = lkv_attn_default_params();
        p.head_dim = 40, p.q_heads = 4, p.kv_heads = 2;
        float qv[4 * 40], o1[4 * 40], o2[4 * 40];
        lkv_test_fill_normal(&rng, qv, 160, 1.0f);
        for (int l = 0; l < 3; l++) {
            CHECK_OK(lkv_seq_attend(a, l, &p, 1, qv, NULL, o1, NULL, NULL));
            CHECK_OK(lkv_seq_attend(b, l, &p, 1, qv, NULL, o2, NULL, NULL));
            CHECK(!memcmp(o1, o2, sizeof o1), "layer %d: attention after load differs", l);
        }
    }
    /* the first 20 tokens: the partial last page keeps its whole key group */
    lkv_seq *p20 = NULL;
    void *s3 = save(a, 20, &n3);
    CHECK_OK(lkv_seq_load_mem(c, s3, n3, &p20));
    CHECK(p20 && seqs_equal(a, p20, 20), "quantized first-20-token snapshot");
    free(s1), free(s3);
    lkv_cache_free(c);
}

static int same_stats(const lkv_cache_stats *a, const lkv_cache_stats *b) {
    return a->committed == b->committed && a->in_use == b->in_use && a->n_pages == b->n_pages &&
           a->n_sequences == b->n_sequences;
}

/* Sets the version field of a snapshot in memory and reseals its header CRC. */
static void relabel_version(uint8_t *m, int version) {
    uint32_t hs = (uint32_t)m[12] | (uint32_t)m[13] << 8;
    m[8] = (uint8_t)version;
    uint32_t crc = lkv_crc32c(0, m, hs - 4);
    for (int i = 0; i < 4; i++)
        m[hs - 4 + i] = (uint8_t)(crc >> (8 * i));
}

static void test_corruption(int quantized) {
    lkv_cache *c = make_cache(FZ_LAYERS, FZ_HEADS, FZ_DIM, FZ_PAGE, LKV_DTYPE_F16, 1 << 20, FZ_MODEL);
    lkv_seq *a = make_seq(c, quantized ? 9 : 6);
    const lkv_dtype q[] = {LKV_DTYPE_KIVI2, LKV_DTYPE_Q8, LKV_DTYPE_KIVI4};
    if (quantized)
        quantize_seq(a, q, 3);
    size_t n;
    uint8_t *s = save(a, -1, &n);
    lkv_cache_stats st0, st1;
    lkv_cache_get_stats(c, &st0);
    uint8_t *m = malloc(n + 1);
    int undetected = 0, wrong_code = 0, changed = 0;
    const uint8_t flips[] = {0x01, 0x80, 0xFF};
    for (size_t i = 0; i < n; i++)
        for (int f = 0; f < 3; f++) {
            memcpy(m, s, n);
            m[i] ^= flips[f];
            lkv_seq *b = (lkv_seq *)1;
            int rc = lkv_seq_load_mem(c, m, n, &b);
            lkv_cache_get_stats(c, &st1);
            undetected += rc == 0;
            wrong_code += rc != 0 && rc != LKV_ERR_FORMAT && rc != LKV_ERR_VERSION;
            changed += !same_stats(&st0, &st1) || b != NULL;
            if (rc == 0)
                lkv_seq_free(b);
        }
    CHECK(undetected == 0 && wrong_code == 0 && changed == 0,
          "byte flips over %zu bytes: %d undetected, %d wrong codes, %d changed the cache", n,
          undetected, wrong_code, changed);
    undetected = wrong_code = changed = 0;
    for (size_t len = 0; len < n; len++) {
        lkv_seq *b = (lkv_seq *)1;
        int rc = lkv_seq_load_mem(c, s, len, &b);
        lkv_cache_get_stats(c, &st1);
        undetected += rc == 0;
        wrong_code += rc != 0 && rc != LKV_ERR_FORMAT;
        changed += !same_stats(&st0, &st1) || b != NULL;
        if (rc == 0)
            lkv_seq_free(b);
    }
    CHECK(undetected == 0 && wrong_code == 0 && changed == 0,
          "truncations: %d undetected, %d wrong codes, %d changed the cache", undetected,
          wrong_code, changed);
    memcpy(m, s, n);
    m[n] = 0;
    lkv_seq *b = NULL;
    CHECK(lkv_seq_load_mem(c, m, n + 1, &b) == LKV_ERR_FORMAT, "extended file refused");
    /* a well-formed file of another version: VERSION, not FORMAT */
    memcpy(m, s, n);
    relabel_version(m, 4);
    CHECK(lkv_seq_load_mem(c, m, n, &b) == LKV_ERR_VERSION, "version 4 refused as VERSION");
    /* older versions are read: version 2 but for its KIVI pages (rows then,
     * tiles now), version 1 with plain pages only (a quantized one is corrupt) */
    const int old_version[2] = {2, 1}, quantized_rc[2] = {LKV_ERR_VERSION, LKV_ERR_FORMAT};
    for (int i = 0; i < 2; i++) {
        relabel_version(m, old_version[i]);
        int rc = lkv_seq_load_mem(c, m, n, &b);
        CHECK(quantized ? rc == quantized_rc[i] && !b : rc == LKV_OK && b && seqs_equal(a, b, -1),
              "version %d file (quantized %d) gave %d", old_version[i], quantized, rc);
        lkv_seq_free(b);
        b = NULL;
    }
    /* identity mismatches */
    lkv_cache *other[4] = {
        make_cache(FZ_LAYERS, FZ_HEADS, FZ_DIM, FZ_PAGE, LKV_DTYPE_F16, 1 << 20, FZ_MODEL + 1),
        make_cache(FZ_LAYERS, FZ_HEADS, FZ_DIM + 8, FZ_PAGE, LKV_DTYPE_F16, 1 << 20, FZ_MODEL),
        make_cache(FZ_LAYERS, FZ_HEADS, FZ_DIM, FZ_PAGE * 2, LKV_DTYPE_F16, 1 << 20, FZ_MODEL),
        make_cache(FZ_LAYERS + 1, FZ_HEADS, FZ_DIM, FZ_PAGE, LKV_DTYPE_F16, 1 << 20, FZ_MODEL)};
    for (int i = 0; i < 4; i++) {
        CHECK(lkv_seq_load_mem(other[i], s, n, &b) == LKV_ERR_VERSION && !b,
              "identity mismatch %d refused", i);
        lkv_cache_free(other[i]);
    }
    /* budget too small: BUDGET, nothing kept */
    lkv_cache *tiny = make_cache(FZ_LAYERS, FZ_HEADS, FZ_DIM, FZ_PAGE, LKV_DTYPE_F16, 4096, FZ_MODEL);
    lkv_seq *big = make_seq(c, 400);
    size_t nb;
    void *sb = save(big, -1, &nb);
    lkv_cache_get_stats(tiny, &st0);
    CHECK(lkv_seq_load_mem(tiny, sb, nb, &b) == LKV_ERR_BUDGET && !b, "over-budget load refused");
    lkv_cache_get_stats(tiny, &st1);
    CHECK(same_stats(&st0, &st1) && st1.committed == 0, "failed load left pages");
    free(sb);
    lkv_cache_free(tiny);
    free(m), free(s);
    lkv_cache_free(c);
}

static int write_corpus(const char *dir) {
    mkdir(dir, 0755);
    const lkv_dtype types[] = {LKV_DTYPE_F16, LKV_DTYPE_F32, LKV_DTYPE_BF16};
    const int lens[] = {6, 1, 13};
    for (int i = 0; i < 3; i++) {
        lkv_cache *c = make_cache(FZ_LAYERS, FZ_HEADS, FZ_DIM, FZ_PAGE, types[i], 1 << 20, FZ_MODEL);
        lkv_seq *a = make_seq(c, lens[i]);
        size_t n;
        uint8_t *s = save(a, -1, &n);
        char path[512];
        snprintf(path, sizeof path, "%s/valid_%s_%d.bin", dir, lkv_dtype_name(types[i]), lens[i]);
        FILE *f = fopen(path, "wb");
        if (f) {
            fwrite(s, 1, n, f);
            fclose(f);
        }
        /* mutated variants of the first one */
        for (int mu = 0; i == 0 && mu < 4; mu++) {
            uint8_t *m = malloc(n);
            memcpy(m, s, n);
            size_t len = n;
            if (mu == 0)
                m[n / 2] ^= 0x10; /* payload flip */
            else if (mu == 1)
                len = n - 7; /* truncated */
            else if (mu == 2)
                m[8] = 9; /* version */
            else
                m[100] ^= 0xff; /* a page header */
            snprintf(path, sizeof path, "%s/mutated_%d.bin", dir, mu);
            f = fopen(path, "wb");
            if (f) {
                fwrite(m, 1, len, f);
                fclose(f);
            }
            free(m);
        }
        free(s);
        lkv_cache_free(c);
    }
    /* version 2: quantized pages (and a mixed sequence), plus a payload flip */
    const lkv_dtype qf[][3] = {{LKV_DTYPE_Q8, LKV_DTYPE_Q8, LKV_DTYPE_Q8},
                               {LKV_DTYPE_KIVI4, LKV_DTYPE_KIVI4, LKV_DTYPE_KIVI4},
                               {LKV_DTYPE_KIVI2, LKV_DTYPE_KIVI2, LKV_DTYPE_KIVI2},
                               {LKV_DTYPE_KIVI2, LKV_DTYPE_Q8, LKV_DTYPE_KIVI4}};
    const char *qn[] = {"q8_7", "kivi4_9", "kivi2_8", "mixed_13"};
    const int qlens[] = {7, 9, 8, 13};
    for (int i = 0; i < 4; i++) {
        lkv_cache *c = make_cache(FZ_LAYERS, FZ_HEADS, FZ_DIM, FZ_PAGE, LKV_DTYPE_F16, 1 << 20, FZ_MODEL);
        lkv_seq *a = make_seq(c, qlens[i]);
        quantize_seq(a, qf[i], 3);
        size_t n;
        uint8_t *s = save(a, -1, &n);
        for (int mu = 0; mu < (i == 3 ? 2 : 1); mu++) {
            char path[512];
            snprintf(path, sizeof path, "%s/%s_%s.bin", dir, mu ? "mutated_v2" : "valid_v2", qn[i]);
            if (mu)
                s[n - 40] ^= 0x10; /* a flip in the last page's scales */
            FILE *f = fopen(path, "wb");
            if (f) {
                fwrite(s, 1, n, f);
                fclose(f);
            }
        }
        free(s);
        lkv_cache_free(c);
    }
    return 0;
}

int main(int argc, char **argv) {
    quick = kvt_quick();
    lkv_rng_seed(&rng, lkv_test_seed());
    if (argc == 3 && !strcmp(argv[1], "--write-corpus"))
        return write_corpus(argv[2]);
    test_hashes();
    test_round_trip();
    test_file();
    test_quant_round_trip();
    test_corruption(0);
    test_corruption(1);
    return lkv_test_finish("test_kv_snapshot");
}
