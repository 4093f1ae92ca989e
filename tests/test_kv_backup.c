/* test_kv_backup.c -- the backup tier (lkv_seq_offload / lkv_seq_recall):
 * offloading really uncommits the page's K/V (the pool's committed bytes drop
 * by exactly K+V when they fill whole OS pages) while the digest, positions
 * and data stay readable; attention over offloaded pages reads the backup
 * copy; a recall puts the page back at its own addresses, so attention is
 * bit-identical again; shared pages, truncation, snapshots, a full budget and
 * failed allocations behave. Seeded (LONGKV_TEST_SEED). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "testutil.h"

/* d = 64, 32-token f16 pages: K and V are 4096 bytes each, one OS page apiece */
enum { L = 2, HK = 2, H = 4, D = 64, PT = 32, N = 300 };

static lkv_cache *make_cache(size_t budget) {
    return lkv_test_cache(L, HK, D, PT, LKV_DTYPE_F16, budget, 0);
}

static lkv_cache_stats stats(const lkv_cache *c) {
    lkv_cache_stats s;
    CHECK_OK(lkv_cache_get_stats(c, &s));
    return s;
}

static void attend(lkv_seq *s, int layer, const float *q, float *o) {
    lkv_attn_params ap = lkv_attn_default_params();
    ap.head_dim = D;
    ap.q_heads = H;
    ap.kv_heads = HK;
    CHECK_OK(lkv_seq_attend(s, layer, &ap, 1, q, NULL, o, NULL, NULL));
}

static int page_in_backup(const lkv_seq *s, int layer, int head, int page) {
    lkv_page_info pi;
    CHECK_OK(lkv_seq_page_info(s, layer, head, page, &pi));
    return pi.in_backup;
}

static void test_round_trip(lkv_rng *r) {
    const size_t os = (size_t)sysconf(_SC_PAGESIZE);
    lkv_cache *c = make_cache((size_t)64 << 20);
    lkv_seq *s = NULL;
    CHECK_OK(lkv_seq_create(c, &s));
    float *k = malloc(sizeof(float) * N * HK * D), *v = malloc(sizeof(float) * N * HK * D);
    float q[H * D], o0[H * D], o1[H * D], o2[H * D];
    lkv_test_fill_normal(r, k, (size_t)N * HK * D, 1.0f);
    lkv_test_fill_normal(r, v, (size_t)N * HK * D, 1.0f);
    lkv_test_fill_normal(r, q, H * D, 1.0f);
    for (int l = 0; l < L; l++)
        CHECK_OK(lkv_seq_append(s, l, N, NULL, k, v));
    attend(s, 1, q, o0);
    float before[PT * D], after[PT * D];
    CHECK_OK(lkv_seq_read(s, 1, 0, 2 * PT, PT, before, NULL));
    lkv_page_info pi;
    CHECK_OK(lkv_seq_page_info(s, 1, 0, 2, &pi));
    float kmin0 = pi.key_min[5], kmax0 = pi.key_max[5];

    lkv_cache_stats a = stats(c);
    CHECK(a.n_backup_pages == 0 && a.backup_bytes == 0, "nothing in backup yet");
    size_t bytes1 = lkv_cache_bytes(c, 1, 0);
    /* pages 1..5 of (layer 1, head 0), and page 2 of head 1 */
    for (int p = 1; p <= 5; p++)
        CHECK_OK(lkv_seq_offload(s, 1, 0, p));
    CHECK_OK(lkv_seq_offload(s, 1, 1, 2));
    CHECK_OK(lkv_seq_offload(s, 1, 1, 2)); /* twice: no-op */
    lkv_cache_stats b = stats(c);
    size_t kv = 2 * (size_t)PT * D * 2; /* K + V bytes of one page */
    CHECK(b.n_backup_pages == 6 && b.backup_bytes == 6 * kv, "6 pages, %zu bytes in backup (%lld, %zu)",
          6 * kv, (long long)b.n_backup_pages, b.backup_bytes);
    if (kv % os == 0)
        CHECK(a.committed - b.committed == 6 * kv, "committed dropped by %zu, want %zu",
              a.committed - b.committed, 6 * kv);
    CHECK(b.committed < a.committed && b.in_use == a.in_use - 6 * kv, "pool in_use dropped");
    CHECK(b.n_offloads == 6 && b.n_recalls == 0, "counters %lld/%lld", (long long)b.n_offloads,
          (long long)b.n_recalls);
    CHECK(lkv_cache_bytes(c, 1, 0) == bytes1 - 5 * kv, "list bytes count fast memory only");
    CHECK(page_in_backup(s, 1, 0, 3) && !page_in_backup(s, 1, 0, 0) && !page_in_backup(s, 0, 0, 3),
          "in_backup flags");
    /* the digest and the data stay readable */
    CHECK_OK(lkv_seq_page_info(s, 1, 0, 2, &pi));
    CHECK(pi.key_min[5] == kmin0 && pi.key_max[5] == kmax0 && pi.n == PT, "digest kept");
    CHECK_OK(lkv_seq_read(s, 1, 0, 2 * PT, PT, after, NULL));
    CHECK(memcmp(before, after, sizeof before) == 0, "offloaded rows read back");
    attend(s, 1, q, o1);
    CHECK(lkv_test_max_abs_err(o0, o1, H * D) < 1e-5, "attention over backup pages (%g)",
          lkv_test_max_abs_err(o0, o1, H * D));

    for (int p = 1; p <= 5; p++)
        CHECK_OK(lkv_seq_recall(s, 1, 0, p));
    CHECK_OK(lkv_seq_recall(s, 1, 1, 2));
    CHECK_OK(lkv_seq_recall(s, 1, 1, 2)); /* twice: no-op */
    lkv_cache_stats d = stats(c);
    CHECK(d.n_backup_pages == 0 && d.backup_bytes == 0 && d.committed == a.committed &&
              d.in_use == a.in_use && d.n_recalls == 6,
          "recalled: committed %zu (was %zu), backup %zu", d.committed, a.committed, d.backup_bytes);
    CHECK(lkv_cache_bytes(c, 1, 0) == bytes1, "list bytes restored");
    attend(s, 1, q, o2);
    CHECK(memcmp(o0, o2, sizeof o0) == 0, "recalled pages at their own addresses: bit-identical");

    /* argument errors */
    CHECK(lkv_seq_offload(NULL, 0, 0, 0) == LKV_ERR_INVALID, "NULL seq");
    CHECK(lkv_seq_offload(s, L, 0, 0) == LKV_ERR_INVALID, "bad layer");
    CHECK(lkv_seq_recall(s, 0, HK, 0) == LKV_ERR_INVALID, "bad head");
    CHECK(lkv_seq_offload(s, 0, 0, 99) == LKV_ERR_RANGE, "bad page");
    CHECK(lkv_seq_recall(s, 0, 0, -1) == LKV_ERR_RANGE, "negative page");

    /* an offloaded page shared with a fork: both read it; freeing releases it once */
    CHECK_OK(lkv_seq_offload(s, 0, 1, 1));
    lkv_seq *f = NULL;
    CHECK_OK(lkv_seq_fork(s, &f));
    CHECK(page_in_backup(f, 0, 1, 1), "the fork sees the page in backup");
    attend(s, 0, q, o0);
    lkv_seq_free(s);
    attend(f, 0, q, o1);
    CHECK(memcmp(o0, o1, sizeof o0) == 0, "fork attends the same");
    CHECK_OK(lkv_seq_recall(f, 0, 1, 1));
    CHECK_OK(lkv_seq_offload(f, 0, 1, 4));
    /* truncation drops offloaded pages: their backup goes, nothing leaks */
    CHECK_OK(lkv_seq_offload(f, 0, 0, 8));
    CHECK_OK(lkv_seq_truncate(f, 4 * PT));
    lkv_cache_stats e = stats(c);
    CHECK(e.n_backup_pages == 0 && e.backup_bytes == 0, "truncated away: %lld in backup",
          (long long)e.n_backup_pages);
    CHECK_OK(lkv_seq_offload(f, 0, 0, 1));
    lkv_seq_free(f);
    lkv_cache_stats z = stats(c);
    CHECK(z.committed == 0 && z.n_backup_pages == 0 && z.backup_bytes == 0 && z.in_use == 0,
          "all released: committed %zu, backup %zu, in_use %zu", z.committed, z.backup_bytes,
          z.in_use);
    lkv_cache_free(c);
    free(k);
    free(v);
}

/* keep (compaction) and snapshots see the backup copy like the pool copy */
static void test_keep_snapshot(lkv_rng *r) {
    lkv_cache *c = make_cache((size_t)64 << 20);
    lkv_seq *s = NULL, *ref = NULL;
    CHECK_OK(lkv_seq_create(c, &s));
    CHECK_OK(lkv_seq_create(c, &ref));
    float *k = malloc(sizeof(float) * N * HK * D), *v = malloc(sizeof(float) * N * HK * D);
    lkv_test_fill_normal(r, k, (size_t)N * HK * D, 1.0f);
    lkv_test_fill_normal(r, v, (size_t)N * HK * D, 1.0f);
    for (int l = 0; l < L; l++) {
        CHECK_OK(lkv_seq_append(s, l, N, NULL, k, v));
        CHECK_OK(lkv_seq_append(ref, l, N, NULL, k, v));
    }
    for (int p = 0; p < 9; p += 2)
        CHECK_OK(lkv_seq_offload(s, 1, 1, p));
    size_t n1 = 0, n2 = 0;
    CHECK_OK(lkv_seq_snapshot_size(s, -1, &n1));
    CHECK_OK(lkv_seq_snapshot_size(ref, -1, &n2));
    CHECK(n1 == n2, "snapshot sizes %zu vs %zu", n1, n2);
    unsigned char *b1 = malloc(n1), *b2 = malloc(n2);
    size_t w1 = 0, w2 = 0;
    CHECK_OK(lkv_seq_save_mem(s, -1, b1, n1, &w1));
    CHECK_OK(lkv_seq_save_mem(ref, -1, b2, n2, &w2));
    CHECK(w1 == w2 && memcmp(b1, b2, w1) == 0, "snapshot with pages in backup == all resident");
    free(b1);
    free(b2);
    /* keep every third slot: compaction reads and writes offloaded pages */
    int slots[N], n = 0;
    for (int t = 0; t < N; t += 3)
        slots[n++] = t;
    CHECK_OK(lkv_seq_keep(s, 1, 1, slots, n));
    CHECK_OK(lkv_seq_keep(ref, 1, 1, slots, n));
    float *x = malloc(sizeof(float) * N * D * 2), *y = malloc(sizeof(float) * N * D * 2);
    CHECK_OK(lkv_seq_read(s, 1, 1, 0, n, x, x + (size_t)N * D));
    CHECK_OK(lkv_seq_read(ref, 1, 1, 0, n, y, y + (size_t)N * D));
    CHECK(memcmp(x, y, sizeof(float) * (size_t)n * D) == 0 &&
              memcmp(x + (size_t)N * D, y + (size_t)N * D, sizeof(float) * (size_t)n * D) == 0,
          "keep over offloaded pages");
    for (int p = 0; p < lkv_seq_n_pages(s, 1, 1); p++)
        CHECK_OK(lkv_seq_recall(s, 1, 1, p));
    lkv_seq_free(s);
    lkv_seq_free(ref);
    CHECK(stats(c).backup_bytes == 0 && stats(c).committed == 0, "released");
    lkv_cache_free(c);
    free(k);
    free(v);
    free(x);
    free(y);
}

/* a recall needs budget: with the pool full it fails cleanly and the page
 * stays in backup; allocation failures change nothing */
static void test_budget_and_failures(lkv_rng *r) {
    const size_t os = (size_t)sysconf(_SC_PAGESIZE);
    lkv_cache *c = make_cache((size_t)64 << 20);
    lkv_seq *s = NULL;
    CHECK_OK(lkv_seq_create(c, &s));
    float *k = malloc(sizeof(float) * N * HK * D), *v = malloc(sizeof(float) * N * HK * D);
    lkv_test_fill_normal(r, k, (size_t)N * HK * D, 1.0f);
    lkv_test_fill_normal(r, v, (size_t)N * HK * D, 1.0f);
    for (int l = 0; l < L; l++)
        CHECK_OK(lkv_seq_append(s, l, PT * 4, NULL, k, v));
    size_t used = stats(c).committed;
    lkv_seq_free(s);
    lkv_cache_free(c);

    /* a budget that holds exactly what 4 pages per list need */
    c = make_cache(used);
    CHECK_OK(lkv_seq_create(c, &s));
    for (int l = 0; l < L; l++)
        CHECK_OK(lkv_seq_append(s, l, PT * 4, NULL, k, v));
    CHECK(lkv_seq_append(s, 0, PT, NULL, k, v) == LKV_ERR_BUDGET, "pool full");
    CHECK_OK(lkv_seq_offload(s, 0, 0, 1));
    CHECK_OK(lkv_seq_offload(s, 0, 1, 1));
    /* the freed room takes a new page per head... */
    CHECK_OK(lkv_seq_append(s, 0, PT, NULL, k + (size_t)PT * 4 * HK * D, v));
    /* ...so the recall cannot fit */
    if ((2 * (size_t)PT * D * 2) % os == 0) {
        CHECK(lkv_seq_recall(s, 0, 0, 1) == LKV_ERR_BUDGET, "recall over budget: %s",
              lkv_last_error());
        CHECK(page_in_backup(s, 0, 0, 1), "still in backup after the failed recall");
        float row[D];
        CHECK_OK(lkv_seq_read(s, 0, 0, PT + 3, 1, row, NULL));
        CHECK(row[0] == lkv_fp16_to_fp32(lkv_fp32_to_fp16(k[((size_t)(PT + 3) * HK) * D])),
              "data intact after the failed recall");
        CHECK_OK(lkv_seq_offload(s, 0, 1, 0));
        CHECK_OK(lkv_seq_recall(s, 0, 0, 1)); /* now there is room */
    }
    /* injected allocation failures: the offload's backup block, the recall's commits */
    lkv_alloc_fail_after(0);
    int rc = lkv_seq_offload(s, 1, 0, 2);
    lkv_alloc_fail_after(-1);
    CHECK(rc == LKV_ERR_NOMEM && !page_in_backup(s, 1, 0, 2), "offload NOMEM changes nothing");
    CHECK_OK(lkv_seq_offload(s, 1, 0, 2));
    for (long n = 0; n < 3; n++) {
        lkv_alloc_fail_after(n);
        rc = lkv_seq_recall(s, 1, 0, 2);
        lkv_alloc_fail_after(-1);
        if (rc == LKV_OK)
            break;
        CHECK(rc == LKV_ERR_NOMEM && page_in_backup(s, 1, 0, 2),
              "failed recall (n=%ld) keeps the page in backup, rc %d", n, rc);
    }
    CHECK(!page_in_backup(s, 1, 0, 2), "recall eventually succeeds");
    lkv_seq_free(s);
    CHECK(stats(c).backup_bytes == 0 && stats(c).committed == 0, "released");
    lkv_cache_free(c);
    free(k);
    free(v);
}

int main(void) {
    lkv_rng r;
    lkv_rng_seed(&r, lkv_test_seed());
    test_round_trip(&r);
    test_keep_snapshot(&r);
    test_budget_and_failures(&r);
    return lkv_test_finish("test_kv_backup");
}
