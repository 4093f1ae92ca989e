#include "common/rng.h"

#include <math.h>

double lkv_rng_normal(lkv_rng *r) {
    double u1 = lkv_rng_uniform(r), u2 = lkv_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
