/* rng.h -- small seeded PRNG (xoshiro256**, seeded by splitmix64): reproducible
 * tests, random baselines and sampling. Not for cryptography. */
#ifndef LKV_COMMON_RNG_H
#define LKV_COMMON_RNG_H

#include <stdint.h>

typedef struct lkv_rng {
    uint64_t s[4];
} lkv_rng;

static inline uint64_t lkv_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline void lkv_rng_seed(lkv_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++)
        r->s[i] = lkv_splitmix64(&seed);
}

static inline uint64_t lkv_rng_next(lkv_rng *r) {
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5;
    uint64_t result = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Uniform in [0, 1). */
static inline double lkv_rng_uniform(lkv_rng *r) {
    return (double)(lkv_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform integer in [0, n), n > 0. */
static inline uint64_t lkv_rng_below(lkv_rng *r, uint64_t n) {
    return (uint64_t)(lkv_rng_uniform(r) * (double)n) % n;
}

/* Standard normal (Box-Muller). */
double lkv_rng_normal(lkv_rng *r);

#endif
