/* hash.h -- checksums and hashes written for longkv (no third-party code).
 *
 * lkv_crc32c: CRC-32C (Castagnoli polynomial 0x1EDC6F41, reflected 0x82F63B78,
 *   init and final xor 0xFFFFFFFF), table-driven, slicing by 8. Used for
 *   snapshot headers and pages: it detects every error burst of <= 32 bits, so
 *   every single-byte corruption of a checksummed range is caught.
 *   Check value: lkv_crc32c(0, "123456789", 9) == 0xE3069283.
 * lkv_hash64: a fast 64-bit non-cryptographic hash (multiply-xorshift mixing
 *   of 8-byte words), for prefix-cache keys. Seeded, so hashes can be chained:
 *   h_i = lkv_hash64(tokens_i, bytes, h_{i-1} ^ ...).
 */
#ifndef LKV_COMMON_HASH_H
#define LKV_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

/* Continues a CRC: crc = lkv_crc32c(crc, data, n); start with crc = 0. */
uint32_t lkv_crc32c(uint32_t crc, const void *data, size_t n);

uint64_t lkv_hash64(const void *data, size_t n, uint64_t seed);

/* Mixes one 64-bit value into a hash state (for small fixed fields). */
static inline uint64_t lkv_hash_mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h ^= h >> 31;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

#endif
