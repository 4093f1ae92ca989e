/* test_press_arkvale.c -- ArkVale on crafted inputs: the page bound is never
 * below the true best logit of its page (pages in backup included); a page
 * holding the dominant key, once moved to the backup tier, is recalled and
 * attended when a matching query arrives; while decoding, every (layer, head)
 * keeps at most page_budget pages in the pool (page_budget + 1 right after an
 * append opened a page) and the pool's committed bytes follow; bad specs are
 * clear errors. Seeded (LONGKV_TEST_SEED); LONGKV_TEST_QUICK=1 shortens the
 * decode loop. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "press/evict.h"
#include "testutil.h"

/* d = 64, 32-token f16 pages: K + V of a page = 8192 bytes, whole OS pages */
enum { L = 3, HK = 2, H = 4, G = H / HK, D = 64, PT = 32, NP = 25, N = NP * PT - 5 };
enum { HOT_PAGE = 10, HOT_SLOT = HOT_PAGE * PT + 7, PB = 6, TOPK = 4, STRIDE = 256 };
#define SPEC "arkvale:page=32,page_budget=6,topk=4,sink_pages=1,recent_pages=1,dense_layers=1"
#define KV_PAGE_BYTES ((size_t)2 * PT * D * 2)
#define META_MAX 1024 /* per page in the pool: header, 32 positions, min/max digest (704 B) */

typedef struct fixture {
    lkv_cache *c;
    lkv_seq *s;
    struct lkv_press p;
    lkv_press_state *st;
    float hot[D]; /* direction of the dominant key (KV head 1) */
} fixture;

static void setup(fixture *f, lkv_rng *r) {
    memset(f, 0, sizeof *f);
    lkv_cache_params cp = lkv_cache_default_params();
    cp.n_layers = L;
    cp.kv_heads = HK;
    cp.head_dim = D;
    cp.page_tokens = PT;
    cp.budget_bytes = (size_t)64 << 20;
    CHECK_OK(lkv_cache_create(&cp, &f->c));
    CHECK_OK(lkv_seq_create(f->c, &f->s));
    float *k = malloc(sizeof(float) * N * HK * D), *v = malloc(sizeof(float) * N * HK * D);
    lkv_test_fill_normal(r, k, (size_t)N * HK * D, 0.3f);
    lkv_test_fill_normal(r, v, (size_t)N * HK * D, 1.0f);
    lkv_test_fill_normal(r, f->hot, D, 1.0f);
    for (int ch = 0; ch < D; ch++) /* q_hot . k_hot = 3 |hot|^2, far above any other key */
        k[((size_t)HOT_SLOT * HK + 1) * D + ch] = 3.0f * f->hot[ch];
    for (int l = 0; l < L; l++)
        CHECK_OK(lkv_seq_append(f->s, l, N, NULL, k, v));
    free(k);
    free(v);
    CHECK_OK(lkv_press_parse(SPEC, &f->p));
    lkv_press_geom g = {L, H, HK, D};
    CHECK_OK(lkv_press_state_create(&f->p, &g, &f->st));
    CHECK_OK(lkv_press_check_cache(f->st, &cp));
    cp.page_tokens = 16;
    CHECK(lkv_press_check_cache(f->st, &cp) == LKV_ERR_INVALID, "page size mismatch rejected");
}

static void teardown(fixture *f) {
    lkv_press_state_free(f->st);
    lkv_seq_free(f->s);
    lkv_cache_free(f->c);
}

static int in_backup(const lkv_seq *s, int l, int h, int p) {
    lkv_page_info pi;
    CHECK_OK(lkv_seq_page_info(s, l, h, p, &pi));
    return pi.in_backup;
}

static int resident(const lkv_seq *s, int l, int h) {
    int n = 0;
    for (int p = 0; p < lkv_seq_n_pages(s, l, h); p++)
        n += !in_backup(s, l, h, p);
    return n;
}

/* bound >= the true best q.k of the page, for every page (resident or not) */
static int bound_violations(const lkv_seq *s, int layer, const float *q) {
    int bad = 0;
    float rows[PT * D];
    for (int h = 0; h < HK; h++)
        for (int p = 0; p < lkv_seq_n_pages(s, layer, h); p++) {
            lkv_page_info pi;
            CHECK_OK(lkv_seq_page_info(s, layer, h, p, &pi));
            CHECK_OK(lkv_seq_read(s, layer, h, pi.first_slot, pi.n, rows, NULL));
            for (int g = 0; g < G; g++) {
                const float *qq = q + (size_t)(h * G + g) * D;
                float u = lkv_quest_bound(qq, pi.key_min, pi.key_max, D);
                double best = -1e300;
                for (int t = 0; t < pi.n; t++) {
                    double dot = 0;
                    for (int ch = 0; ch < D; ch++)
                        dot += (double)qq[ch] * rows[t * D + ch];
                    best = dot > best ? dot : best;
                }
                if ((double)u < best - 1e-5 * (1 + fabs(best)))
                    bad++;
            }
        }
    return bad;
}

static void test_recall(lkv_rng *r) {
    fixture f;
    setup(&f, r);
    CHECK_OK(lkv_press_begin_prompt(f.st, N, 0));
    /* no window queries: after prefill the lists are cut by recency */
    CHECK_OK(lkv_press_after_prefill(f.st, f.s, NULL, NULL, NULL));
    for (int l = 0; l < L; l++)
        for (int h = 0; h < HK; h++)
            CHECK(resident(f.s, l, h) == (l == 0 ? NP : PB), "layer %d head %d: %d pages in the "
                  "pool after prefill", l, h, resident(f.s, l, h));
    CHECK(in_backup(f.s, 1, 1, HOT_PAGE) && in_backup(f.s, 2, 1, HOT_PAGE),
          "the hot page went to the backup tier");
    CHECK(!in_backup(f.s, 1, 1, 0) && !in_backup(f.s, 1, 1, NP - 1), "sink and newest stay");

    float q[H * D];
    lkv_test_fill_normal(r, q, H * D, 1.0f);
    memcpy(q + 2 * D, f.hot, sizeof f.hot); /* query head 2 (KV head 1) matches the hot key */
    int bad = 0;
    for (int i = 0; i < 20; i++) { /* random queries, then the crafted one */
        float qr[H * D];
        lkv_test_fill_normal(r, qr, H * D, 2.0f);
        bad += bound_violations(f.s, 1, qr);
    }
    bad += bound_violations(f.s, 1, q);
    CHECK(bad == 0, "%d page bounds below the true max q.k", bad);

    lkv_attn_params ap = lkv_attn_default_params();
    ap.head_dim = D;
    ap.q_heads = H;
    ap.kv_heads = HK;
    float dense[H * D], o[H * D];
    int32_t qp = N - 1;
    CHECK_OK(lkv_seq_attend(f.s, 1, &ap, 1, q, &qp, dense, NULL, NULL));

    int sel[HK * STRIDE], cnt[HK];
    CHECK(lkv_press_select(f.st, f.s, 0, q, 1, sel, cnt, STRIDE) == 0, "dense layer 0");
    int64_t recalls0 = f.st->ark_recalls;
    CHECK(lkv_press_select(f.st, f.s, 1, q, 1, sel, cnt, STRIDE) == 1, "layer 1 selects");
    CHECK(cnt[0] == TOPK && cnt[1] == TOPK, "top %d pages (%d, %d)", TOPK, cnt[0], cnt[1]);
    int hot = 0, asc = 1, sink = 0, newest = 0;
    for (int i = 0; i < cnt[1]; i++) {
        int p = sel[STRIDE + i];
        hot |= p == HOT_PAGE;
        sink |= p == 0;
        newest |= p == NP - 1;
        asc &= i == 0 || p > sel[STRIDE + i - 1];
    }
    CHECK(hot, "the hot page is attended");
    CHECK(sink && newest && asc, "sink and newest attended, ascending");
    CHECK(!in_backup(f.s, 1, 1, HOT_PAGE), "the hot page was recalled into the pool");
    CHECK(f.st->ark_recalls > recalls0, "recall counted");
    for (int h = 0; h < HK; h++) {
        CHECK(resident(f.s, 1, h) <= PB, "head %d: %d pages in the pool > %d", h,
              resident(f.s, 1, h), PB);
        for (int i = 0; i < cnt[h]; i++)
            CHECK(!in_backup(f.s, 1, h, sel[h * STRIDE + i]), "attended page %d resident",
                  sel[h * STRIDE + i]);
    }
    CHECK(in_backup(f.s, 2, 1, HOT_PAGE), "layer 2 untouched until its own step");
    CHECK_OK(lkv_seq_attend_pages(f.s, 1, &ap, 1, q, &qp, sel, cnt, STRIDE, o, NULL, NULL, 0, NULL));
    double err = lkv_test_rel_err(o + 2 * D, dense + 2 * D, D, 1e-3);
    CHECK(err < 0.02, "the dominated query head matches dense attention (%g)", err);

    char rep[4096];
    size_t n = lkv_press_state_report(f.st, rep, sizeof rep);
    CHECK(n < sizeof rep && strstr(rep, "recalls") && strstr(rep, "in backup") &&
              strstr(rep, "fast memory"),
          "report: %s", rep);
    teardown(&f);
}

/* decoding: pages in the pool per list and the pool's committed bytes */
static void test_decode_budget(lkv_rng *r, int steps) {
    fixture f;
    setup(&f, r);
    const size_t os = (size_t)sysconf(_SC_PAGESIZE);
    CHECK_OK(lkv_press_begin_prompt(f.st, N, 0));
    float *qw[L];
    for (int l = 0; l < L; l++) { /* the last prompt query of every layer */
        qw[l] = malloc(sizeof(float) * H * D);
        lkv_test_fill_normal(r, qw[l], H * D, 1.0f);
    }
    CHECK_OK(lkv_press_after_prefill(f.st, f.s, (const float *const *)qw, NULL, NULL));
    for (int l = 0; l < L; l++)
        free(qw[l]);
    float k[HK * D], v[HK * D], q[H * D];
    int sel[HK * STRIDE], cnt[HK], worst_before = 0, worst_after = 0, over = 0, bytes_bad = 0;
    for (int t = 0; t < steps; t++) {
        for (int l = 0; l < L; l++) { /* the model's order: append, select, attend */
            lkv_test_fill_normal(r, k, HK * D, 0.3f);
            lkv_test_fill_normal(r, v, HK * D, 1.0f);
            lkv_test_fill_normal(r, q, H * D, 1.0f);
            CHECK_OK(lkv_seq_append(f.s, l, 1, NULL, k, v));
            for (int h = 0; h < HK && l > 0; h++)
                worst_before = resident(f.s, l, h) > worst_before ? resident(f.s, l, h) : worst_before;
            int rc = lkv_press_select(f.st, f.s, l, q, 1, sel, cnt, STRIDE);
            CHECK(rc >= 0, "select: %s", lkv_last_error());
            for (int h = 0; h < HK && l > 0; h++)
                worst_after = resident(f.s, l, h) > worst_after ? resident(f.s, l, h) : worst_after;
        }
        CHECK_OK(lkv_press_after_decode(f.st, f.s, NULL));
        /* the pool: dense layer 0 whole; other lists page_budget + the current page */
        lkv_cache_stats cs;
        CHECK_OK(lkv_cache_get_stats(f.c, &cs));
        int64_t allowed = 0, pages = 0;
        for (int l = 0; l < L; l++)
            for (int h = 0; h < HK; h++) {
                int np = lkv_seq_n_pages(f.s, l, h);
                allowed += l == 0 ? np : (np < PB + 1 ? np : PB + 1);
                pages += np;
            }
        over += cs.n_pages - cs.n_backup_pages > allowed;
        size_t bound = (size_t)allowed * KV_PAGE_BYTES + (size_t)pages * META_MAX +
                       (size_t)L * HK * 3 * os;
        bytes_bad += cs.committed > bound;
        bytes_bad += cs.backup_bytes != (size_t)cs.n_backup_pages * KV_PAGE_BYTES;
        if (t == steps - 1)
            printf("after %d steps: %lld pages, %lld in backup; committed %zu <= %zu; "
                   "recalls %lld, offloads %lld\n",
                   steps, (long long)cs.n_pages, (long long)cs.n_backup_pages, cs.committed, bound,
                   (long long)f.st->ark_recalls, (long long)f.st->ark_offloads);
    }
    CHECK(worst_after <= PB, "a list held %d pages in the pool after its step (budget %d)",
          worst_after, PB);
    CHECK(worst_before <= PB + 1, "a list held %d pages before its step", worst_before);
    CHECK(over == 0 && bytes_bad == 0, "%d steps over the page budget, %d over the byte bound",
          over, bytes_bad);
    CHECK(f.st->ark_steps == steps, "steps counted %lld", (long long)f.st->ark_steps);
    teardown(&f);
}

static void invalid(const char *spec, const char *needle) {
    lkv_press *p = (lkv_press *)1;
    CHECK(lkv_press_create(spec, &p) == LKV_ERR_INVALID && p == NULL, "'%s' invalid", spec);
    CHECK(strstr(lkv_last_error(), needle) != NULL, "'%s': '%s' lacks '%s'", spec,
          lkv_last_error(), needle);
}

static void test_specs(void) {
    lkv_press *p = NULL;
    CHECK_OK(lkv_press_create("arkvale", &p));
    CHECK(p && !strcmp(lkv_press_canonical(p), "arkvale:page=32,page_budget=128,topk=32,"
                                                "sink_pages=1,recent_pages=2,dense_layers=2"),
          "canonical %s", p ? lkv_press_canonical(p) : "");
    lkv_press_free(p);
    invalid("arkvale:topk=200,page_budget=100", "exceeds page_budget");
    invalid("arkvale:page_budget=8,topk=16", "fast memory");
    invalid("arkvale:page_budget=2", "out of range");
    invalid("arkvale:topk=2,sink_pages=2", "exceed topk");
    invalid("arkvale:topk=3,sink_pages=1,recent_pages=3", "exceed topk");
    invalid("arkvale:topk=1,sink_pages=1,recent_pages=0", "newest page");
    invalid("arkvale:budget=100", "accepted");
    invalid("arkvale+quest", "at most one");
}

int main(void) {
    lkv_rng r;
    lkv_rng_seed(&r, lkv_test_seed());
    const char *qk = getenv("LONGKV_TEST_QUICK");
    int quick = qk && atoi(qk);
    test_specs();
    test_recall(&r);
    test_decode_budget(&r, quick ? 70 : 200);
    return lkv_test_finish("test_press_arkvale");
}
