/*
 * eval/rng.h - a small deterministic random generator (splitmix64 seeding a
 * xoshiro256**), so that profiles and rotations are identical on every
 * machine for a given seed. State lives in the caller's struct; nothing is
 * allocated.
 */
#ifndef VKVE_RNG_H
#define VKVE_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct vkve_rng {
    uint64_t s[4];
} vkve_rng;

/* Advances a splitmix64 state and returns the next output. */
static inline uint64_t vkve_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Seeds r from `seed` (any value, 0 included). */
static inline void vkve_rng_seed(vkve_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = vkve_splitmix64(&seed);
}

/* Returns 64 random bits (xoshiro256**). */
static inline uint64_t vkve_rng_u64(vkve_rng *r)
{
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5;
    uint64_t res = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return res;
}

/* Uniform double in [0, 1). */
static inline double vkve_rng_unif(vkve_rng *r)
{
    return (double)(vkve_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Standard normal (Box-Muller; one value per call). */
static inline double vkve_rng_norm(vkve_rng *r)
{
    double u1 = vkve_rng_unif(r), u2 = vkve_rng_unif(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

#endif
