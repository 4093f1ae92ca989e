/* test_press_select.c -- Quest: the page bound is never below the true best
 * logit of its page; a page holding a dominant key is selected; selecting
 * every page equals dense attention; dense layers and short caches select
 * nothing. */
#include <stdlib.h>
#include <string.h>

#include "press/evict.h"
#include "press/topk.h"
#include "testutil.h"

enum { HK = 2, H = 6, D = 32, PAGE = 16 };

static void run(lkv_dtype dt, lkv_rng *r) {
    const int n = 1000;
    lkv_cache_params cp = lkv_cache_default_params();
    cp.n_layers = 3;
    cp.kv_heads = HK;
    cp.head_dim = D;
    cp.page_tokens = PAGE;
    cp.dtype = dt;
    cp.budget_bytes = 64u << 20;
    lkv_cache *c = NULL;
    lkv_seq *s = NULL;
    CHECK_OK(lkv_cache_create(&cp, &c));
    CHECK_OK(lkv_seq_create(c, &s));
    float *k = malloc(sizeof(float) * n * HK * D), *v = malloc(sizeof(float) * n * HK * D);
    float q[H * D];
    lkv_test_fill_normal(r, k, (size_t)n * HK * D, 1.0f);
    lkv_test_fill_normal(r, v, (size_t)n * HK * D, 1.0f);
    lkv_test_fill_normal(r, q, H * D, 1.0f);
    /* a dominant key for KV head 1 at slot 85 (page 5): aligned with query head 3 */
    for (int ch = 0; ch < D; ch++)
        k[((size_t)85 * HK + 1) * D + ch] = 4.0f * q[3 * D + ch];
    for (int l = 0; l < 3; l++)
        CHECK_OK(lkv_seq_append(s, l, n, NULL, k, v));

    struct lkv_press p;
    CHECK_OK(lkv_press_parse("quest:budget=128,page=16,dense_layers=1", &p));
    lkv_press_geom g = {3, H, HK, D};
    lkv_press_state *st = NULL;
    CHECK_OK(lkv_press_state_create(&p, &g, &st));
    CHECK_OK(lkv_press_check_cache(st, &cp));

    /* property: bound >= true max q.k of the page, for every page and head */
    int np = lkv_seq_n_pages(s, 1, 0), bad = 0;
    float rows[PAGE * D];
    for (int h = 0; h < HK; h++)
        for (int pg = 0; pg < np; pg++) {
            lkv_page_info info;
            CHECK_OK(lkv_seq_page_info(s, 1, h, pg, &info));
            CHECK_OK(lkv_seq_read(s, 1, h, info.first_slot, info.n, rows, NULL));
            for (int gq = 0; gq < H / HK; gq++) {
                const float *qq = q + (size_t)(h * (H / HK) + gq) * D;
                float u = lkv_quest_bound(qq, info.key_min, info.key_max, D), best = -1e30f;
                for (int t = 0; t < info.n; t++) {
                    float dot = 0;
                    for (int ch = 0; ch < D; ch++)
                        dot += qq[ch] * rows[t * D + ch];
                    best = dot > best ? dot : best;
                }
                if (u < best - 1e-3f * (1 + fabsf(best)))
                    bad++;
            }
        }
    CHECK(bad == 0, "%s: %d page bounds below the true max", lkv_dtype_name(dt), bad);

    int sel[HK * 128], cnt[HK];
    CHECK(lkv_press_select(st, s, 0, q, 1, sel, cnt, 128) == 0, "dense layer selects nothing");
    CHECK(lkv_press_select(st, s, 1, q, 1, sel, cnt, 128) == 1, "layer 1 selects");
    CHECK(cnt[0] == 8 && cnt[1] == 8, "top 128/16 = 8 pages (%d, %d)", cnt[0], cnt[1]);
    int found = 0, last = 0, asc = 1;
    for (int i = 0; i < cnt[1]; i++) {
        found |= sel[128 + i] == 5;
        last |= sel[128 + i] == np - 1;
        if (i && sel[128 + i] <= sel[128 + i - 1])
            asc = 0;
    }
    CHECK(found, "page with the dominant key selected");
    CHECK(last && asc, "newest page selected, ascending order");

    /* all pages selected == dense attention */
    lkv_attn_params ap = lkv_attn_default_params();
    ap.head_dim = D;
    ap.q_heads = H;
    ap.kv_heads = HK;
    int all[HK * 128], all_cnt[HK] = {np, np};
    for (int h = 0; h < HK; h++)
        for (int i = 0; i < np; i++)
            all[h * 128 + i] = i;
    float o1[H * D], o2[H * D];
    int32_t qp = n - 1;
    CHECK_OK(lkv_seq_attend(s, 1, &ap, 1, q, &qp, o1, NULL, NULL));
    CHECK_OK(lkv_seq_attend_pages(s, 1, &ap, 1, q, &qp, all, all_cnt, 128, o2, NULL, NULL, 0, NULL));
    CHECK(lkv_test_max_abs_err(o1, o2, H * D) < 1e-5, "all pages == dense");
    /* the selected subset: query head 3 (KV head 1) is dominated by slot 85 */
    CHECK_OK(lkv_seq_attend_pages(s, 1, &ap, 1, q, &qp, sel, cnt, 128, o2, NULL, NULL, 0, NULL));
    CHECK(lkv_test_rel_err(o2 + 3 * D, o1 + 3 * D, D, 1e-3) < 0.05,
          "quest output of the dominated head close to dense (%g)",
          lkv_test_rel_err(o2 + 3 * D, o1 + 3 * D, D, 1e-3));
    cp.page_tokens = 32;
    CHECK(lkv_press_check_cache(st, &cp) == LKV_ERR_INVALID, "page size mismatch rejected");
    lkv_press_state_free(st);
    free(k);
    free(v);
    lkv_seq_free(s);
    lkv_cache_free(c);
}

typedef struct item {
    float score;
    int index;
} item;

static int item_desc(const void *a, const void *b) { /* a strict total order */
    const item *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    return x->index - y->index;
}

static int int_cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* The top-k set of lkv_press_top_k equals the first k of a full sort, on
 * random arrays with and without ties, every k from 0 to n. */
static void top_k_vs_sort(lkv_rng *r) {
    item a[300], b[300];
    int ia[300], ib[300], bad = 0, cases = 0;
    for (int n = 0; n <= 300; n += 1 + n / 8)
        for (int ties = 0; ties < 2; ties++)
            for (int k = 0; k <= n; k += 1 + n / 16) {
                for (int i = 0; i < n; i++)
                    a[i] = (item){ties ? (float)lkv_rng_below(r, 4) : (float)lkv_rng_uniform(r), i};
                memcpy(b, a, sizeof(item) * (size_t)n);
                qsort(b, (size_t)n, sizeof *b, item_desc);
                lkv_press_top_k(a, n, sizeof *a, item_desc, k);
                for (int i = 0; i < k; i++) {
                    ia[i] = a[i].index;
                    ib[i] = b[i].index;
                }
                qsort(ia, (size_t)k, sizeof *ia, int_cmp);
                qsort(ib, (size_t)k, sizeof *ib, int_cmp);
                bad += memcmp(ia, ib, sizeof(int) * (size_t)k) != 0;
                cases++;
            }
    CHECK(bad == 0, "top-k differs from a sort in %d of %d cases", bad, cases);
}

int main(void) {
    lkv_rng r;
    lkv_rng_seed(&r, lkv_test_seed());
    top_k_vs_sort(&r);
    run(LKV_DTYPE_F32, &r);
    run(LKV_DTYPE_F16, &r);
    run(LKV_DTYPE_BF16, &r);
    return lkv_test_finish("test_press_select");
}
