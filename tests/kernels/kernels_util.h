/*
 * tests/kernels/kernels_util.h - helpers shared by the codec tests: a
 * deterministic RNG, synthetic KV chunks with padded strides, and an
 * independent reader of block sections (written from vkv/block.h, not from
 * the codec's own code).
 */
#ifndef VKV_TESTS_KERNELS_UTIL_H
#define VKV_TESTS_KERNELS_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/codec_math.h"
#include "vkv/codec.h"

/* splitmix64: returns the next 64-bit value of *s. */
static inline uint64_t ku_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform float in [-1, 1). */
static inline float ku_unif(uint64_t *s)
{
    return (float)((double)(ku_rand(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

/* A chunk in memory: per layer, K and V buffers with padded strides. The
 * struct owns every buffer (ku_chunk_free releases them). */
typedef struct ku_chunk {
    vkv_shape shape;
    size_t token_stride, head_stride, layer_elems;
    uint16_t **k, **v;
} ku_chunk;

/* Allocates a chunk for `shape`; head rows padded by pad elements. Returns 0. */
static inline int ku_chunk_alloc(ku_chunk *c, const vkv_shape *shape, size_t pad)
{
    memset(c, 0, sizeof(*c));
    c->shape = *shape;
    c->head_stride = shape->head_dim + pad;
    c->token_stride = c->head_stride * shape->kv_heads + pad;
    c->layer_elems = c->token_stride * shape->tokens;
    c->k = calloc(shape->layers, sizeof(*c->k));
    c->v = calloc(shape->layers, sizeof(*c->v));
    if (c->k == NULL || c->v == NULL)
        return -1;
    for (uint32_t l = 0; l < shape->layers; l++) {
        c->k[l] = calloc(c->layer_elems ? c->layer_elems : 1, 2);
        c->v[l] = calloc(c->layer_elems ? c->layer_elems : 1, 2);
        if (c->k[l] == NULL || c->v[l] == NULL)
            return -1;
    }
    return 0;
}

/* Frees every buffer of c. */
static inline void ku_chunk_free(ku_chunk *c)
{
    for (uint32_t l = 0; c->k && l < c->shape.layers; l++) {
        free(c->k[l]);
        free(c->v[l]);
    }
    free(c->k);
    free(c->v);
    memset(c, 0, sizeof(*c));
}

/* Pointer to element (t, h, d) of tensor s (0 = K, 1 = V) of layer l. */
static inline uint16_t *ku_at(const ku_chunk *c, int s, uint32_t l, uint32_t t, uint32_t h,
                              uint32_t d)
{
    return (s ? c->v[l] : c->k[l]) + t * c->token_stride + h * c->head_stride + d;
}

/* Fills a chunk with structured data: a per-channel offset and scale (keys
 * have outlier channels), a few constant channels, random noise. */
static inline void ku_chunk_fill(ku_chunk *c, uint64_t seed)
{
    const vkv_shape *sh = &c->shape;
    for (int s = 0; s < 2; s++)
        for (uint32_t l = 0; l < sh->layers; l++)
            for (uint32_t h = 0; h < sh->kv_heads; h++)
                for (uint32_t d = 0; d < sh->head_dim; d++) {
                    uint64_t cs =
                        seed ^ ((uint64_t)s << 60) ^ ((uint64_t)l << 40) ^ ((uint64_t)h << 20) ^ d;
                    float off = 2.0f * ku_unif(&cs), scale = 0.1f + fabsf(ku_unif(&cs));
                    if (s == 0 && d % 16 == 3)
                        scale *= 20.0f;
                    int constant = d % 29 == 7;
                    for (uint32_t t = 0; t < sh->tokens; t++) {
                        float x = constant ? off : off + scale * ku_unif(&cs);
                        *ku_at(c, s, l, t, h, d) = vkvk_from_f32(x, sh->dtype);
                    }
                }
}

/* Source / dense-destination views of a chunk. */
static inline vkv_kv_src ku_src(const ku_chunk *c)
{
    vkv_kv_src s = {(const void *const *)c->k, (const void *const *)c->v, c->token_stride,
                    c->head_stride};
    return s;
}

static inline vkv_kv_dst ku_dst(const ku_chunk *c)
{
    vkv_kv_dst d = {(void *const *)c->k, (void *const *)c->v,        c->token_stride,
                    c->head_stride,      vkv_geometry_of(&c->shape), NULL};
    return d;
}

/* Index of the visual range holding token t, or -1 if t is raw. */
static inline int ku_range_of(const vkv_shape *sh, uint32_t t)
{
    for (uint32_t r = 0; r < sh->n_ranges; r++)
        if (t >= sh->ranges[r].start && t - sh->ranges[r].start < sh->ranges[r].len)
            return (int)r;
    return -1;
}

#endif
