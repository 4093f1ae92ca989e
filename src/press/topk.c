/* topk.c -- quickselect for the policies' top-k choices (see topk.h). A sort
 * per decode step (H2O and TOVA evict one token per step; Quest picks its
 * pages every step) measured as a visible part of decoding at 4k tokens. */
#include "press/topk.h"

#include <string.h>

static void swap_elems(unsigned char *a, unsigned char *b, size_t size) {
    unsigned char t[64];
    memcpy(t, a, size);
    memcpy(a, b, size);
    memcpy(b, t, size);
}

void lkv_press_top_k(void *base, int n, size_t size, int (*cmp)(const void *, const void *),
                     int k) {
    unsigned char *t = base;
#define AT(i) (t + (size_t)(i) * size)
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2; /* median of AT(lo), AT(mid), AT(hi) to AT(hi) */
        if (cmp(AT(mid), AT(lo)) < 0)
            swap_elems(AT(mid), AT(lo), size);
        if (cmp(AT(hi), AT(lo)) < 0)
            swap_elems(AT(hi), AT(lo), size);
        if (cmp(AT(mid), AT(hi)) < 0)
            swap_elems(AT(mid), AT(hi), size);
        int store = lo; /* [lo, store) come before the pivot AT(hi) */
        for (int i = lo; i < hi; i++)
            if (cmp(AT(i), AT(hi)) < 0)
                swap_elems(AT(i), AT(store++), size);
        swap_elems(AT(store), AT(hi), size); /* the pivot, at its sorted place */
        if (store == k || store == k - 1)
            return;
        if (store > k)
            hi = store - 1;
        else
            lo = store + 1;
    }
#undef AT
}
