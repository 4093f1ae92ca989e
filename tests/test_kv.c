/* test_kv.c -- the paged cache: attention over pages equals the contiguous
 * kernels (every format, page size, head layout, heads of different lengths,
 * observer, page subsets), digests, fork / copy-on-write, truncate / keep,
 * reference counts and committed bytes, prefix reuse and eviction, budget
 * errors without partial state, and allocation-failure injection.
 * Seeded (LONGKV_TEST_SEED); LONGKV_TEST_QUICK=1 shrinks the sizes. */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "kv_testlib.h"

static int quick;
static lkv_rng rng;

static int irand(int n) { return (int)lkv_rng_below(&rng, (uint64_t)n); }

static lkv_cache *make_cache(int L, int Hk, int d, int pt, lkv_dtype t, size_t budget) {
    return lkv_test_cache(L, Hk, d, pt, t, budget, 0xC0FFEE);
}

/* Appends n tokens to every head of `layer` (and the shadows lists[0..Hk)). */
static int append_tokens(lkv_seq *s, kvt_list *lists, lkv_dtype t, int layer, int Hk, int d, int n,
                         int32_t *next_pos, int gaps) {
    float *k = malloc((size_t)n * Hk * d * 4 + 4), *v = malloc((size_t)n * Hk * d * 4 + 4);
    int32_t *pos = malloc((size_t)n * 4 + 4);
    lkv_test_fill_normal(&rng, k, (size_t)n * Hk * d, 1.0f);
    lkv_test_fill_normal(&rng, v, (size_t)n * Hk * d, 1.0f);
    for (int i = 0; i < n; i++) {
        pos[i] = *next_pos;
        *next_pos += gaps ? 1 + irand(3) : 1;
    }
    int rc = lkv_seq_append(s, layer, n, pos, k, v);
    if (rc == 0 && lists)
        for (int h = 0; h < Hk; h++)
            for (int i = 0; i < n; i++)
                kvt_list_push(&lists[h], t, pos[i], k + ((size_t)i * Hk + h) * d,
                              v + ((size_t)i * Hk + h) * d);
    free(k), free(v), free(pos);
    return rc;
}

static double lse_err(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        if (isinf(a[i]) || isinf(b[i])) {
            if (a[i] != b[i])
                return INFINITY;
            continue;
        }
        double e = fabs((double)a[i] - b[i]);
        if (e > m || e != e)
            m = e;
    }
    return m;
}

/* Digest of every page == min/max of the stored keys. */
static int digests_ok(const lkv_seq *s, int layer, int head, int d) {
    int np = lkv_seq_n_pages(s, layer, head);
    float *k = malloc((size_t)4096 * d * 4);
    int ok = 1;
    for (int j = 0; j < np && ok; j++) {
        lkv_page_info pi;
        if (lkv_seq_page_info(s, layer, head, j, &pi) != 0)
            ok = 0;
        else if (lkv_seq_read(s, layer, head, pi.first_slot, pi.n, k, NULL) != 0)
            ok = 0;
        for (int c = 0; c < d && ok; c++) {
            float mn = FLT_MAX, mx = -FLT_MAX;
            for (int t = 0; t < pi.n; t++) {
                mn = fminf(mn, k[(size_t)t * d + c]);
                mx = fmaxf(mx, k[(size_t)t * d + c]);
            }
            ok = mn == pi.key_min[c] && mx == pi.key_max[c];
        }
    }
    free(k);
    return ok;
}

/* Runs paged vs reference for one layer with n_q queries; also observer and
 * a random page subset. */
static void check_attention(lkv_seq *s, kvt_list *lists, lkv_dtype t, int layer, int H, int Hk,
                            int d, int pt, int n_q, int window, const char *what) {
    lkv_attn_params p = lkv_attn_default_params();
    p.head_dim = d;
    p.q_heads = H;
    p.kv_heads = Hk;
    p.causal = 1;
    p.window = window;
    p.n_sink = window ? 3 : 0;
    int32_t last = 0;
    int maxn = 0;
    for (int h = 0; h < Hk; h++) {
        if (lists[h].n && lists[h].pos[lists[h].n - 1] > last)
            last = lists[h].pos[lists[h].n - 1];
        maxn = lists[h].n > maxn ? lists[h].n : maxn;
    }
    /* queries: the last n_q - 1 held positions and one beyond (mixed masking) */
    int32_t *qp = malloc((size_t)n_q * 4);
    for (int i = 0; i < n_q; i++)
        qp[i] = last - (n_q - 1) + i + 1 - (i < n_q - 1 ? 1 : 0) * 0;
    size_t no = (size_t)n_q * H * d;
    float *q = malloc(no * 4), *o = malloc(no * 4), *o_ref = malloc(no * 4);
    float *lse = malloc((size_t)n_q * H * 4), *lse_ref = malloc((size_t)n_q * H * 4);
    int stride = maxn + 3;
    float *obs = calloc((size_t)Hk * stride, 4), *obs_ref = calloc((size_t)Hk * stride, 4);
    lkv_test_fill_normal(&rng, q, no, 1.0f);
    CHECK_OK(lkv_seq_attend_observe(s, layer, &p, n_q, q, qp, o, lse, obs, stride, NULL));
    CHECK_OK(kvt_reference(&p, t, lists, NULL, n_q, q, qp, o_ref, lse_ref, obs_ref, stride, NULL));
    double eo = lkv_test_rel_err(o, o_ref, no, 1e-3), el = lse_err(lse, lse_ref, (size_t)n_q * H),
           eb = lkv_test_max_abs_err(obs, obs_ref, (size_t)Hk * stride);
    CHECK(eo < 1e-4 && el < 1e-4 && eb < 1e-4, "%s: paged vs contiguous: o %.3g lse %.3g obs %.3g",
          what, eo, el, eb);
    /* plain attend (no observer) must give the same output */
    float *o2 = malloc(no * 4);
    CHECK_OK(lkv_seq_attend(s, layer, &p, n_q, q, qp, o2, NULL, NULL));
    CHECK(!memcmp(o, o2, no * 4), "%s: attend differs from attend_observe", what);
    /* a random subset of pages */
    int *sel = malloc((size_t)Hk * 4096 * sizeof(int)), *cnt = calloc((size_t)Hk, sizeof(int));
    unsigned char **mask = calloc((size_t)Hk, sizeof *mask);
    for (int h = 0; h < Hk; h++) {
        int np = lkv_seq_n_pages(s, layer, h);
        mask[h] = calloc((size_t)lists[h].n + 1, 1);
        for (int j = 0; j < np; j++)
            if (irand(2)) {
                sel[h * 4096 + cnt[h]++] = j;
                for (int x = j * pt; x < (j + 1) * pt && x < lists[h].n; x++)
                    mask[h][x] = 1;
            }
    }
    memset(obs, 0, (size_t)Hk * stride * 4);
    memset(obs_ref, 0, (size_t)Hk * stride * 4);
    CHECK_OK(lkv_seq_attend_pages(s, layer, &p, n_q, q, qp, sel, cnt, 4096, o, lse, obs, stride,
                                  NULL));
    CHECK_OK(kvt_reference(&p, t, lists, (const unsigned char *const *)mask, n_q, q, qp, o_ref,
                           lse_ref, obs_ref, stride, NULL));
    eo = lkv_test_rel_err(o, o_ref, no, 1e-3);
    el = lse_err(lse, lse_ref, (size_t)n_q * H);
    eb = lkv_test_max_abs_err(obs, obs_ref, (size_t)Hk * stride);
    CHECK(eo < 1e-4 && el < 1e-4 && eb < 1e-4, "%s: page subset: o %.3g lse %.3g obs %.3g", what,
          eo, el, eb);
    for (int h = 0; h < Hk; h++)
        free(mask[h]);
    free(mask), free(sel), free(cnt), free(o2);
    free(qp), free(q), free(o), free(o_ref), free(lse), free(lse_ref), free(obs), free(obs_ref);
}

static void test_paged_equals_contiguous(void) {
    const int pts[] = {1, 3, 16, 64};
    const int layouts[][2] = {{4, 4}, {6, 2}, {8, 1}};
    int n_tok = quick ? 60 : 200;
    for (int t = 0; t < 3; t++)
        for (int ip = 0; ip < 4; ip++)
            for (int il = 0; il < 3; il++) {
                lkv_dtype dt = (lkv_dtype)t;
                int pt = pts[ip], H = layouts[il][0], Hk = layouts[il][1];
                int d = (ip + il) % 2 ? 64 : 16, L = 2;
                char what[96];
                snprintf(what, sizeof what, "%s pt=%d H=%d Hk=%d d=%d", lkv_dtype_name(dt), pt, H,
                         Hk, d);
                lkv_cache *c = make_cache(L, Hk, d, pt, dt, (size_t)64 << 20);
                lkv_seq *s = NULL;
                CHECK_OK(lkv_seq_create(c, &s));
                if (!s)
                    continue;
                kvt_list lists[2][8];
                memset(lists, 0, sizeof lists);
                for (int l = 0; l < L; l++)
                    for (int h = 0; h < Hk; h++)
                        lists[l][h].d = d;
                for (int l = 0; l < L; l++) {
                    int32_t next = 0;
                    /* prefill chunks of odd sizes, then single decode tokens */
                    for (int done = 0; done < n_tok;) {
                        int m = done < n_tok * 3 / 4 ? 1 + irand(37) : 1;
                        if (m > n_tok - done)
                            m = n_tok - done;
                        CHECK_OK(append_tokens(s, lists[l], dt, l, Hk, d, m, &next, l == 1));
                        done += m;
                    }
                }
                /* layer 1: heads of different lengths (keep a random subset on
                 * some heads, extra tokens on the last one) */
                for (int h = 0; h < Hk; h++) {
                    if (h % 2 == 1 || Hk == 1) {
                        int n = lists[1][h].n, *slots = malloc((size_t)n * sizeof(int)), m = 0;
                        for (int i = 0; i < n; i++)
                            if (irand(3) || i < 4)
                                slots[m++] = i;
                        CHECK_OK(lkv_seq_keep(s, 1, h, slots, m));
                        kvt_list_keep(&lists[1][h], slots, m);
                        free(slots);
                    }
                }
                {
                    int h = Hk - 1, m = 5 + irand(20);
                    int32_t p0 = lists[1][h].pos[lists[1][h].n - 1] + 1;
                    float *k = malloc((size_t)m * d * 4), *v = malloc((size_t)m * d * 4);
                    int32_t *pos = malloc((size_t)m * 4);
                    lkv_test_fill_normal(&rng, k, (size_t)m * d, 1.0f);
                    lkv_test_fill_normal(&rng, v, (size_t)m * d, 1.0f);
                    for (int i = 0; i < m; i++)
                        pos[i] = p0 + i;
                    CHECK_OK(lkv_seq_append_head(s, 1, h, m, pos, k, v));
                    for (int i = 0; i < m; i++)
                        kvt_list_push(&lists[1][h], dt, pos[i], k + (size_t)i * d, v + (size_t)i * d);
                    free(k), free(v), free(pos);
                }
                for (int l = 0; l < L; l++)
                    for (int h = 0; h < Hk; h++) {
                        CHECK(kvt_list_equal(s, l, h, &lists[l][h]), "%s: layer %d head %d content",
                              what, l, h);
                        CHECK(digests_ok(s, l, h, d), "%s: layer %d head %d digests", what, l, h);
                    }
                for (int l = 0; l < L; l++) {
                    check_attention(s, lists[l], dt, l, H, Hk, d, pt, 1, 0, what);
                    check_attention(s, lists[l], dt, l, H, Hk, d, pt, 7, 0, what);
                    if (ip == 2)
                        check_attention(s, lists[l], dt, l, H, Hk, d, pt, 5, 24, what);
                }
                lkv_seq_free(s);
                lkv_cache_stats st;
                lkv_cache_get_stats(c, &st);
                CHECK(st.committed == 0 && st.n_pages == 0 && st.in_use == 0,
                      "%s: after free committed %zu pages %lld", what, st.committed,
                      (long long)st.n_pages);
                lkv_cache_free(c);
                for (int l = 0; l < L; l++)
                    for (int h = 0; h < Hk; h++)
                        kvt_list_free(&lists[l][h]);
            }
}

/* q_pos NULL means "the last n_q held positions". */
static void test_qpos_default(void) {
    lkv_cache *c = make_cache(1, 2, 16, 16, LKV_DTYPE_F32, 1 << 20);
    lkv_seq *s;
    CHECK_OK(lkv_seq_create(c, &s));
    kvt_list lists[2] = {{0, 0, 16, 0, 0, 0}, {0, 0, 16, 0, 0, 0}};
    int32_t next = 0;
    CHECK_OK(append_tokens(s, lists, LKV_DTYPE_F32, 0, 2, 16, 40, &next, 0));
    lkv_attn_params p = lkv_attn_default_params();
    p.head_dim = 16;
    p.q_heads = 4;
    p.kv_heads = 2;
    float q[3 * 4 * 16], o1[3 * 4 * 16], o2[3 * 4 * 16];
    lkv_test_fill_normal(&rng, q, 3 * 4 * 16, 1.0f);
    int32_t qp[3] = {37, 38, 39};
    CHECK_OK(lkv_seq_attend(s, 0, &p, 3, q, qp, o1, NULL, NULL));
    CHECK_OK(lkv_seq_attend(s, 0, &p, 3, q, NULL, o2, NULL, NULL));
    CHECK(!memcmp(o1, o2, sizeof o1), "q_pos NULL should mean positions 37..39");
    p.kv_heads = 1;
    CHECK(lkv_seq_attend(s, 0, &p, 3, q, NULL, o2, NULL, NULL) == LKV_ERR_INVALID,
          "mismatched kv_heads must be refused");
    lkv_cache_free(c); /* frees s too */
    kvt_list_free(&lists[0]);
    kvt_list_free(&lists[1]);
}


/* Pages appended together are merged into one run only when their positions
 * continue: a jump exactly at a page boundary must stay visible to the mask. */
static void test_run_merging(void) {
    const int d = 64, pt = 16, n = 64;
    lkv_cache *c = make_cache(1, 1, d, pt, LKV_DTYPE_F16, 1 << 20);
    lkv_seq *s;
    CHECK_OK(lkv_seq_create(c, &s));
    kvt_list list = {0, 0, d, 0, 0, 0};
    float *k = malloc((size_t)n * d * 4), *v = malloc((size_t)n * d * 4);
    lkv_test_fill_normal(&rng, k, (size_t)n * d, 1.0f);
    lkv_test_fill_normal(&rng, v, (size_t)n * d, 1.0f);
    int32_t pos[64];
    for (int i = 0; i < n; i++)
        pos[i] = i < 32 ? i : 1000 + i; /* jump at the page boundary 32 */
    CHECK_OK(lkv_seq_append(s, 0, n, pos, k, v));
    for (int i = 0; i < n; i++)
        kvt_list_push(&list, LKV_DTYPE_F16, pos[i], k + (size_t)i * d, v + (size_t)i * d);
    lkv_attn_params p = lkv_attn_default_params();
    p.head_dim = d, p.q_heads = 2, p.kv_heads = 1;
    float q[2 * 2 * 64], o[2 * 2 * 64], o_ref[2 * 2 * 64];
    lkv_test_fill_normal(&rng, q, sizeof q / 4, 1.0f);
    int32_t qp[2] = {20, 1040};
    CHECK_OK(lkv_seq_attend(s, 0, &p, 2, q, qp, o, NULL, NULL));
    CHECK_OK(kvt_reference(&p, LKV_DTYPE_F16, &list, NULL, 2, q, qp, o_ref, NULL, NULL, 0, NULL));
    double e = lkv_test_rel_err(o, o_ref, sizeof o / 4, 1e-3);
    CHECK(e < 1e-4, "position jump at a page boundary: error %.3g", e);
    p.window = 8;
    CHECK_OK(lkv_seq_attend(s, 0, &p, 2, q, qp, o, NULL, NULL));
    CHECK_OK(kvt_reference(&p, LKV_DTYPE_F16, &list, NULL, 2, q, qp, o_ref, NULL, NULL, 0, NULL));
    e = lkv_test_rel_err(o, o_ref, sizeof o / 4, 1e-3);
    CHECK(e < 1e-4, "position jump with a window: error %.3g", e);
    free(k), free(v);
    kvt_list_free(&list);
    lkv_cache_free(c);
}

static void stats(const lkv_cache *c, lkv_cache_stats *st) { lkv_cache_get_stats(c, st); }

static void test_fork_cow(void) {
    const int Hk = 2, d = 16, pt = 16, L = 2;
    lkv_cache *c = make_cache(L, Hk, d, pt, LKV_DTYPE_F16, 8 << 20);
    lkv_seq *a, *b, *b2;
    CHECK_OK(lkv_seq_create(c, &a));
    kvt_list la[2][2], lb[2][2];
    memset(la, 0, sizeof la);
    memset(lb, 0, sizeof lb);
    int32_t next[2] = {0, 0};
    for (int l = 0; l < L; l++) {
        for (int h = 0; h < Hk; h++)
            la[l][h].d = d;
        CHECK_OK(append_tokens(a, la[l], LKV_DTYPE_F16, l, Hk, d, 37, &next[l], 0));
    }
    lkv_cache_stats s0, s1;
    stats(c, &s0);
    CHECK_OK(lkv_seq_fork(a, &b));
    stats(c, &s1);
    CHECK(s1.committed == s0.committed && s1.n_pages == s0.n_pages, "fork must not copy pages");
    lkv_page_info pi;
    CHECK_OK(lkv_seq_page_info(b, 0, 0, 2, &pi));
    CHECK(pi.refcount == 2 && pi.n == 5, "fork shares the tail: refcount %d n %d", pi.refcount,
          pi.n);
    for (int l = 0; l < L; l++)
        for (int h = 0; h < Hk; h++)
            kvt_list_copy(&lb[l][h], &la[l][h]);
    /* b writes: its tail is copied, a is untouched */
    int32_t nb[2] = {next[0], next[1]};
    CHECK_OK(append_tokens(b, lb[0], LKV_DTYPE_F16, 0, Hk, d, 3, &nb[0], 0));
    CHECK_OK(lkv_seq_page_info(a, 0, 0, 2, &pi));
    CHECK(pi.refcount == 1 && pi.n == 5, "after b's write a's tail: refcount %d n %d", pi.refcount,
          pi.n);
    CHECK_OK(lkv_seq_page_info(a, 0, 0, 0, &pi));
    CHECK(pi.refcount == 2, "full pages stay shared (refcount %d)", pi.refcount);
    /* a writes different data in place (its tail is now its own) */
    CHECK_OK(append_tokens(a, la[0], LKV_DTYPE_F16, 0, Hk, d, 20, &next[0], 0));
    /* b truncates into a shared full page, then writes: copy on write again */
    CHECK_OK(lkv_seq_truncate(b, 20));
    for (int l = 0; l < L; l++)
        for (int h = 0; h < Hk; h++)
            lb[l][h].n = 20;
    nb[0] = 20;
    nb[1] = 20;
    CHECK_OK(append_tokens(b, lb[1], LKV_DTYPE_F16, 1, Hk, d, 9, &nb[1], 0));
    /* fork of a fork, then keep() on a shared list */
    CHECK_OK(lkv_seq_fork(b, &b2));
    {
        int slots[] = {0, 2, 3, 17, 18, 19, 25, 28};
        CHECK_OK(lkv_seq_keep(b, 1, 0, slots, 8));
        kvt_list tmp = {0, 0, d, 0, 0, 0};
        kvt_list_copy(&tmp, &lb[1][0]);
        kvt_list_keep(&lb[1][0], slots, 8);
        CHECK(kvt_list_equal(b2, 1, 0, &tmp), "keep on b changed its fork b2");
        kvt_list_free(&tmp);
    }
    for (int l = 0; l < L; l++)
        for (int h = 0; h < Hk; h++) {
            CHECK(kvt_list_equal(a, l, h, &la[l][h]), "parent a changed at layer %d head %d", l, h);
            CHECK(kvt_list_equal(b, l, h, &lb[l][h]), "fork b wrong at layer %d head %d", l, h);
        }
    lkv_seq_free(b2);
    /* free in both orders leaves nothing */
    lkv_seq_free(a);
    for (int l = 0; l < L; l++)
        for (int h = 0; h < Hk; h++)
            CHECK(kvt_list_equal(b, l, h, &lb[l][h]), "b changed when a was freed");
    lkv_seq_free(b);
    stats(c, &s1);
    CHECK(s1.committed == 0 && s1.n_pages == 0 && s1.in_use == 0 && s1.n_sequences == 0,
          "everything freed: committed %zu pages %lld in_use %zu", s1.committed,
          (long long)s1.n_pages, s1.in_use);
    CHECK(s1.n_releases == s1.n_commits, "every commit released (%lld vs %lld)",
          (long long)s1.n_releases, (long long)s1.n_commits);
    lkv_cache_free(c);
    for (int l = 0; l < L; l++)
        for (int h = 0; h < Hk; h++) {
            kvt_list_free(&la[l][h]);
            kvt_list_free(&lb[l][h]);
        }
}

/* keep() really gives memory back, and heads hold different lengths. */
static void test_keep_frees(void) {
    const int Hk = 2, d = 64, pt = 16, n = quick ? 400 : 2000;
    lkv_cache *c = make_cache(1, Hk, d, pt, LKV_DTYPE_F32, 64 << 20);
    lkv_seq *s;
    CHECK_OK(lkv_seq_create(c, &s));
    int32_t next = 0;
    CHECK_OK(append_tokens(s, NULL, LKV_DTYPE_F32, 0, Hk, d, n, &next, 0));
    lkv_cache_stats a, b;
    stats(c, &a);
    size_t h1_before = lkv_cache_bytes(c, 0, 1);
    int slots[40];
    for (int i = 0; i < 40; i++)
        slots[i] = i < 4 ? i : n - 36 + (i - 4);
    CHECK_OK(lkv_seq_keep(s, 0, 1, slots, 40));
    stats(c, &b);
    CHECK(b.committed < a.committed - (size_t)(n / pt - 4) * d * 4 * pt,
          "keep must release memory: %zu -> %zu", a.committed, b.committed);
    CHECK(lkv_seq_n_tokens(s, 0, 0) == n && lkv_seq_n_tokens(s, 0, 1) == 40,
          "head lengths %d / %d", lkv_seq_n_tokens(s, 0, 0), lkv_seq_n_tokens(s, 0, 1));
    /* 40 slots need 3 pages of the n / pt the head had; head 0 keeps all of its */
    CHECK(lkv_cache_bytes(c, 0, 1) * (size_t)(n / pt) == h1_before * 3 &&
              lkv_cache_bytes(c, 0, 0) == h1_before,
          "per-head bytes %zu / %zu", lkv_cache_bytes(c, 0, 0), lkv_cache_bytes(c, 0, 1));
    int32_t pos[40];
    CHECK_OK(lkv_seq_get_positions(s, 0, 1, 0, 40, pos));
    CHECK(pos[3] == 3 && pos[4] == n - 36 && pos[39] == n - 1, "original positions kept");
    /* the rewritten pages' digests are recomputed when read (stale after keep) */
    CHECK(digests_ok(s, 0, 1, d), "digests after keep");
    int one[39]; /* drop one slot in the middle, as a decode-time eviction does */
    for (int i = 0; i < 39; i++)
        one[i] = i < 20 ? i : i + 1;
    CHECK_OK(lkv_seq_keep(s, 0, 1, one, 39));
    CHECK_OK(lkv_seq_offload(s, 0, 1, 1)); /* the digest is refreshed before the keys leave */
    CHECK(digests_ok(s, 0, 1, d), "digests after keep and offload");
    CHECK_OK(lkv_seq_recall(s, 0, 1, 1));
    int bad[] = {3, 2};
    CHECK(lkv_seq_keep(s, 0, 1, bad, 2) == LKV_ERR_RANGE, "unsorted slots refused");
    lkv_cache_free(c);
}

static void fill_tokens(int32_t *tok, int n, int salt) {
    for (int i = 0; i < n; i++)
        tok[i] = (i * 7919 + salt * 31) % 50000;
}

static void test_prefix(void) {
    const int L = 2, Hk = 2, H = 4, d = 16, pt = 16, n = 50;
    lkv_cache *c = make_cache(L, Hk, d, pt, LKV_DTYPE_BF16, 8 << 20);
    lkv_seq *a, *b, *x;
    CHECK_OK(lkv_seq_create(c, &a));
    /* the same K/V for both sequences: a deterministic generator per token */
    float *k = malloc((size_t)n * Hk * d * 4), *v = malloc((size_t)n * Hk * d * 4);
    lkv_test_fill_normal(&rng, k, (size_t)n * Hk * d, 1.0f);
    lkv_test_fill_normal(&rng, v, (size_t)n * Hk * d, 1.0f);
    int32_t tok[50], tok2[50];
    fill_tokens(tok, n, 1);
    memcpy(tok2, tok, sizeof tok);
    tok2[40] ^= 1; /* differs in block 2 */
    for (int l = 0; l < L; l++)
        CHECK_OK(lkv_seq_append(a, l, n, NULL, k, v));
    int pub = -1;
    CHECK_OK(lkv_seq_publish(a, tok, n, 7, &pub));
    CHECK(pub == 48, "published %d tokens, want 48", pub);
    lkv_cache_stats s0, s1;
    stats(c, &s0);
    CHECK(s0.n_prefix_entries == 3 && s0.n_prefix_pages == 3 * L * Hk, "prefix entries %lld",
          (long long)s0.n_prefix_entries);
    CHECK_OK(lkv_seq_create(c, &b));
    int reused = -1;
    CHECK_OK(lkv_seq_attach_prefix(b, tok, n, 7, &reused));
    stats(c, &s1);
    CHECK(reused == 48, "reused %d", reused);
    CHECK(s1.n_commits == s0.n_commits && s1.committed == s0.committed && s1.n_pages == s0.n_pages,
          "attach must not commit (%lld -> %lld commits)", (long long)s0.n_commits,
          (long long)s1.n_commits);
    for (int l = 0; l < L; l++)
        CHECK_OK(lkv_seq_append(b, l, n - reused, NULL, k + (size_t)reused * Hk * d,
                                v + (size_t)reused * Hk * d));
    lkv_attn_params p = lkv_attn_default_params();
    p.head_dim = d;
    p.q_heads = H;
    p.kv_heads = Hk;
    float q[2 * 4 * 16], oa[2 * 4 * 16], ob[2 * 4 * 16];
    lkv_test_fill_normal(&rng, q, sizeof q / 4, 1.0f);
    for (int l = 0; l < L; l++) {
        CHECK_OK(lkv_seq_attend(a, l, &p, 2, q, NULL, oa, NULL, NULL));
        CHECK_OK(lkv_seq_attend(b, l, &p, 2, q, NULL, ob, NULL, NULL));
        CHECK(!memcmp(oa, ob, sizeof oa), "prefix-reused sequence must attend identically");
    }
    /* other tokens or another policy: partial / no reuse; non-empty: refused */
    CHECK_OK(lkv_seq_create(c, &x));
    CHECK_OK(lkv_seq_attach_prefix(x, tok2, n, 7, &reused));
    CHECK(reused == 32, "differing third block: reused %d, want 32", reused);
    CHECK(lkv_seq_attach_prefix(x, tok, n, 7, &reused) == LKV_ERR_STATE, "non-empty refused");
    lkv_seq_free(x);
    CHECK_OK(lkv_seq_create(c, &x));
    CHECK_OK(lkv_seq_attach_prefix(x, tok, n, 8, &reused));
    CHECK(reused == 0, "other policy id: reused %d", reused);
    lkv_seq_free(x);
    /* the same pages published under a second policy id: two entries share them */
    lkv_seq *y;
    CHECK_OK(lkv_seq_create(c, &y));
    CHECK_OK(lkv_seq_attach_prefix(y, tok, n, 7, &reused));
    CHECK_OK(lkv_seq_publish(y, tok, reused, 9, &pub));
    CHECK(pub == 48, "republished %d", pub);
    lkv_seq_free(y);
    /* entries outlive their sequences; explicit eviction releases everything */
    lkv_seq_free(a);
    lkv_seq_free(b);
    stats(c, &s1);
    CHECK(s1.committed > 0 && s1.n_pages == 3 * L * Hk, "cached pages survive: %lld",
          (long long)s1.n_pages);
    int found = 0;
    CHECK_OK(lkv_cache_pin_prefix(c, tok, 20, 7, 1, &found));
    CHECK(found == 16, "pinned %d tokens", found);
    CHECK(lkv_cache_evict_prefix(c, SIZE_MAX) == 5, "five unpinned blocks evicted");
    CHECK_OK(lkv_cache_pin_prefix(c, tok, 20, 7, 0, &found));
    CHECK(lkv_cache_evict_prefix(c, SIZE_MAX) == 1, "unpinned block evicted");
    stats(c, &s1);
    CHECK(s1.committed == 0 && s1.n_pages == 0, "all released: committed %zu", s1.committed);
    lkv_cache_free(c);

    /* budget pressure: unreferenced cached pages are evicted (LRU) instead of failing */
    c = make_cache(1, 1, 64, 16, LKV_DTYPE_F32, 40 * 4096);
    CHECK_OK(lkv_seq_create(c, &a));
    float *kk = malloc(600 * 64 * 4), *vv = malloc(600 * 64 * 4);
    lkv_test_fill_normal(&rng, kk, 600 * 64, 1.0f);
    lkv_test_fill_normal(&rng, vv, 600 * 64, 1.0f);
    int32_t tk[600];
    fill_tokens(tk, 600, 3);
    int got = 0;
    while (lkv_seq_append(a, 0, 16, NULL, kk + (size_t)got * 64, vv + (size_t)got * 64) == 0)
        got += 16;
    CHECK(got > 100 && got < 600, "filled the budget with %d tokens", got);
    CHECK_OK(lkv_seq_publish(a, tk, got, 0, &pub));
    CHECK_OK(lkv_cache_pin_prefix(c, tk, 16, 0, 1, NULL));
    lkv_seq_free(a);
    CHECK_OK(lkv_seq_create(c, &b));
    int got2 = 0;
    while (lkv_seq_append(b, 0, 16, NULL, kk + (size_t)got2 * 64, vv + (size_t)got2 * 64) == 0)
        got2 += 16;
    stats(c, &s1);
    CHECK(s1.n_evictions >= got / 16 - 1 - 1 && got2 >= got - 32,
          "pressure evicted %lld entries, second sequence got %d of %d", (long long)s1.n_evictions,
          got2, got);
    CHECK(s1.n_prefix_entries == 1, "the pinned entry survives (%lld)", (long long)s1.n_prefix_entries);
    lkv_cache_free(c);
    free(k), free(v), free(kk), free(vv);
}

static void test_budget(void) {
    const int L = 3, Hk = 3, d = 32, pt = 16;
    lkv_cache *c = make_cache(L, Hk, d, pt, LKV_DTYPE_F16, 256 * 1024);
    lkv_seq *s;
    CHECK_OK(lkv_seq_create(c, &s));
    kvt_list lists[3][3];
    memset(lists, 0, sizeof lists);
    for (int l = 0; l < L; l++)
        for (int h = 0; h < Hk; h++)
            lists[l][h].d = d;
    int32_t next[3] = {0, 0, 0};
    int failures = 0;
    for (int step = 0; step < 200 && failures < 6; step++) {
        int l = step % L, m = 1 + irand(40);
        lkv_cache_stats a, b;
        stats(c, &a);
        int32_t before = next[l];
        int rc = append_tokens(s, lists[l], LKV_DTYPE_F16, l, Hk, d, m, &next[l], 0);
        stats(c, &b);
        CHECK(b.committed <= b.budget, "committed %zu over budget %zu", b.committed, b.budget);
        if (rc != 0) {
            failures++;
            next[l] = before;
            CHECK(rc == LKV_ERR_BUDGET, "over budget gives LKV_ERR_BUDGET, got %d", rc);
            CHECK(a.committed == b.committed && a.in_use == b.in_use && a.n_pages == b.n_pages,
                  "failed append left pages behind");
            for (int h = 0; h < Hk; h++)
                CHECK(kvt_list_equal(s, l, h, &lists[l][h]), "failed append changed the list");
        }
    }
    CHECK(failures > 0, "the budget was never reached");
    /* after truncation there is room again */
    CHECK_OK(lkv_seq_truncate(s, 10));
    for (int l = 0; l < L; l++)
        for (int h = 0; h < Hk; h++)
            lists[l][h].n = lists[l][h].n < 10 ? lists[l][h].n : 10;
    CHECK_OK(append_tokens(s, lists[0], LKV_DTYPE_F16, 0, Hk, d, 30, &next[0], 0));
    for (int h = 0; h < Hk; h++)
        CHECK(kvt_list_equal(s, 0, h, &lists[0][h]), "append after truncate");
    lkv_cache_free(c);
    for (int l = 0; l < L; l++)
        for (int h = 0; h < Hk; h++)
            kvt_list_free(&lists[l][h]);
    /* argument errors */
    lkv_cache_params cp = lkv_cache_default_params();
    lkv_cache *bad = NULL;
    CHECK(lkv_cache_create(&cp, &bad) == LKV_ERR_INVALID && !bad, "zero geometry refused");
    cp.n_layers = 1, cp.kv_heads = 1, cp.head_dim = 12;
    CHECK(lkv_cache_create(&cp, &bad) == LKV_ERR_INVALID, "head_dim 12 refused");
    cp.head_dim = 64, cp.budget_bytes = 100;
    CHECK(lkv_cache_create(&cp, &bad) == LKV_ERR_INVALID, "budget below one OS page refused");
    lkv_cache_free(NULL);
    lkv_seq_free(NULL);
}

/* Fail the N-th allocation (heap or page commit) for every N until the call
 * succeeds: each failure is clean (state unchanged, nothing leaked) and the
 * cache stays usable. */
static void test_alloc_failures(void) {
    const int L = 2, Hk = 2, d = 16, pt = 8;
    size_t live0 = lkv_alloc_count_live(), bytes0 = lkv_alloc_bytes_in_use();
    /* create */
    int n_fail = 0;
    for (long N = 0;; N++) {
        lkv_cache_params cp = lkv_cache_default_params();
        cp.n_layers = L, cp.kv_heads = Hk, cp.head_dim = d, cp.page_tokens = pt;
        lkv_cache *c = NULL;
        lkv_seq *s = NULL;
        lkv_alloc_fail_after(N);
        int rc = lkv_cache_create(&cp, &c);
        if (rc == 0)
            rc = lkv_seq_create(c, &s);
        lkv_alloc_fail_after(-1);
        if (rc == 0) {
            lkv_cache_free(c);
            break;
        }
        n_fail++;
        CHECK(rc == LKV_ERR_NOMEM, "create N=%ld: rc %d", N, rc);
        lkv_cache_free(c);
        CHECK(lkv_alloc_count_live() == live0, "create N=%ld leaked", N);
    }
    CHECK(n_fail > 0, "create never failed");
    /* append (with a copy on write of a shared tail), fork, keep, publish/attach, load */
    lkv_cache *c = make_cache(L, Hk, d, pt, LKV_DTYPE_F16, 4 << 20);
    lkv_seq *a;
    CHECK_OK(lkv_seq_create(c, &a));
    int32_t next = 0;
    for (int l = 0; l < L; l++) {
        next = 0;
        CHECK_OK(append_tokens(a, NULL, LKV_DTYPE_F16, l, Hk, d, 13, &next, 0));
    }
    int32_t tok[64];
    fill_tokens(tok, 64, 9);
    size_t snap_size = 0;
    CHECK_OK(lkv_seq_snapshot_size(a, -1, &snap_size));
    void *snap = malloc(snap_size);
    CHECK_OK(lkv_seq_save_mem(a, -1, snap, snap_size, NULL));
    float k[40 * 2 * 16], v[40 * 2 * 16];
    lkv_test_fill_normal(&rng, k, sizeof k / 4, 1.0f);
    lkv_test_fill_normal(&rng, v, sizeof v / 4, 1.0f);
    for (int op = 0; op < 5; op++) {
        int fails = 0;
        for (long N = 0; N < 1000; N++) {
            lkv_seq *b = NULL, *f = NULL;
            CHECK_OK(lkv_seq_fork(a, &b)); /* b's tail is shared with a */
            lkv_cache_stats s0, s1;
            stats(c, &s0);
            size_t live = lkv_alloc_count_live();
            int n0 = lkv_seq_n_tokens(b, 0, 1);
            int reused = 0;
            int32_t ps[40];
            for (int i = 0; i < 40; i++)
                ps[i] = 13 + i;
            int slots[] = {0, 5, 9, 10, 12};
            lkv_alloc_fail_after(N);
            int rc;
            switch (op) {
            case 0: rc = lkv_seq_append(b, 0, 40, ps, k, v); break;
            case 1: rc = lkv_seq_fork(b, &f); break;
            case 2: rc = lkv_seq_keep(b, 0, 1, slots, 5); break;
            case 3:
                rc = lkv_seq_publish(a, tok, 13, 1, NULL);
                if (rc == 0)
                    rc = lkv_seq_create(c, &f);
                if (rc == 0)
                    rc = lkv_seq_attach_prefix(f, tok, 13, 1, &reused);
                break;
            default: rc = lkv_seq_load_mem(c, snap, snap_size, &f); break;
            }
            lkv_alloc_fail_after(-1);
            stats(c, &s1);
            if (rc == 0) {
                CHECK(op != 0 || lkv_seq_n_tokens(b, 0, 1) == n0 + 40, "append after failures");
                CHECK(op != 3 || reused == 8, "attach after failures: %d", reused);
                lkv_seq_free(f);
                lkv_seq_free(b);
                lkv_cache_evict_prefix(c, SIZE_MAX);
                break;
            }
            fails++;
            CHECK(rc == LKV_ERR_NOMEM, "op %d N=%ld: rc %d (%s)", op, N, rc, lkv_last_error());
            if (op != 3) {
                CHECK(lkv_seq_n_tokens(b, 0, 1) == n0, "op %d N=%ld changed the sequence", op, N);
                CHECK(s0.committed == s1.committed && s0.n_pages == s1.n_pages &&
                          s0.n_sequences == s1.n_sequences && lkv_alloc_count_live() <= live + 0 +
                          (op == 0 || op == 2), /* a grown scratch/list buffer may stay */
                      "op %d N=%ld left state behind (%zu->%zu, %lld->%lld pages)", op, N,
                      s0.committed, s1.committed, (long long)s0.n_pages, (long long)s1.n_pages);
            }
            lkv_seq_free(f);
            lkv_seq_free(b);
            lkv_cache_evict_prefix(c, SIZE_MAX);
        }
        CHECK(fails > 0, "op %d never failed", op);
        lkv_cache_stats st;
        stats(c, &st);
        CHECK(st.n_sequences == 1, "op %d: sequences %lld", op, (long long)st.n_sequences);
    }
    free(snap);
    lkv_cache_free(c);
    CHECK(lkv_alloc_count_live() == live0 && lkv_alloc_bytes_in_use() == bytes0,
          "leak after failure injection: %zu blocks, %zu bytes", lkv_alloc_count_live() - live0,
          lkv_alloc_bytes_in_use() - bytes0);
}

int main(void) {
    quick = kvt_quick();
    lkv_rng_seed(&rng, lkv_test_seed());
    test_paged_equals_contiguous();
    test_qpos_default();
    test_run_merging();
    test_fork_cow();
    test_keep_frees();
    test_prefix();
    test_budget();
    test_alloc_failures();
    return lkv_test_finish("test_kv");
}
