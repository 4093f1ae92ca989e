/* topk.h -- the k first elements of an array under a strict total order,
 * without sorting the rest (eviction and page selection keep a set, not an
 * order). */
#ifndef LKV_PRESS_TOPK_H
#define LKV_PRESS_TOPK_H

#include <stddef.h>

/* Reorders base[0..n) (elements of `size` <= 64 bytes) so that its first k
 * elements are the k first under cmp, in no particular order among themselves:
 * quickselect (Lomuto partition around a median-of-three pivot), O(n) on
 * average. cmp must be a strict total order (break ties, e.g. by index): the
 * set chosen is then exactly the one a full sort would put first. */
void lkv_press_top_k(void *base, int n, size_t size, int (*cmp)(const void *, const void *),
                     int k);

#endif
