/*
 * bench/bench_util.h - helpers shared by the codec and attention benchmarks:
 * deterministic test data (splitmix64, uniform floats, fp16 bits) and the
 * median of repeated timings. Header-only (static functions); nothing here
 * allocates.
 */
#ifndef VKV_BENCH_UTIL_H
#define VKV_BENCH_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* splitmix64 step. */
static inline uint64_t bench_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform float in [-1, 1). */
static inline float bench_unif(uint64_t *s)
{
    return (float)((double)(bench_rand(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

/* float -> fp16 bits, round to nearest even (normal range is all we need). */
static inline uint16_t bench_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a < 0x38800000u)
        return sign; /* flush tiny values: irrelevant for the benchmark */
    return (uint16_t)(sign | ((a + 0xfffu + ((a >> 13) & 1u) - 0x38000000u) >> 13));
}

static inline int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Median of n samples (sorts them). */
static inline uint64_t median(uint64_t *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_u64);
    return v[n / 2];
}

/* Tells the compiler that the memory at p is read here, so that a yardstick
 * whose result nobody reads (memcpy into a scratch buffer) is not removed as
 * dead code (clang does remove it). Emits no instruction; p stays the
 * caller's. */
static inline void bench_keep(const void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

#endif /* VKV_BENCH_UTIL_H */
