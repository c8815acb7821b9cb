/* bench/store_bench_util.h - helpers shared by the store benchmarks:
 * a seeded PRNG and percentile of a sample. Header-only. */
#ifndef VKV_STORE_BENCH_UTIL_H
#define VKV_STORE_BENCH_UTIL_H

#include <stdint.h>
#include <stdlib.h>

/* xorshift64* step; never returns the same stream for different seeds. */
static inline uint64_t sb_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

/* Uniform double in [0, 1). */
static inline double sb_unif(uint64_t *s)
{
    return (double)(sb_rand(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* qsort comparator for uint64_t. */
static int sb_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v[0..n) in place and returns its q-quantile (0..1); 0 if n == 0. */
static inline uint64_t sb_pct(uint64_t *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), sb_cmp_u64);
    size_t i = (size_t)(q * (double)(n - 1));
    return v[i];
}

#endif
