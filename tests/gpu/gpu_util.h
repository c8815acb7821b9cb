/*
 * tests/gpu/gpu_util.h - deterministic test chunks shared by the GPU test,
 * the two-process pair and bench/cuda_bench.cu (header-only, host code),
 * and their error-exit macros.
 */
#ifndef VKV_TESTS_GPU_UTIL_H
#define VKV_TESTS_GPU_UTIL_H

#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/codec_math.h"
#include "vkv/codec.h"

/* Exits with a message when a CUDA call fails (the program cannot go on). */
#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Exits with a message when a vkv call fails. */
#define VK(call)                                                                                   \
    do {                                                                                           \
        int r_ = (call);                                                                           \
        if (r_ != VKV_OK) {                                                                        \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, vkv_strerror(r_));       \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* xorshift64* step; returns the next value of *s (s != 0). */
static inline uint64_t vkvt_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* A roughly normal value (sum of 4 uniforms, centred) times `scale`. */
static inline float vkvt_normal(uint64_t *s, float scale)
{
    float a = 0.0f;
    for (int i = 0; i < 4; i++)
        a += (float)(vkvt_rand(s) >> 40) / (float)(1u << 24);
    return (a - 2.0f) * scale;
}

/* Fills n elements of `dtype` at p with KV-like values: a per-channel
 * offset plus noise (keys have outlier channels), seeded by `seed`. */
static inline void vkvt_fill(uint16_t *p, size_t n, size_t hd, int dtype, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1u;
    for (size_t i = 0; i < n; i++) {
        size_t d = i % hd;
        float off = (d % 17u == 3u) ? 4.0f : (float)(d % 5u) * 0.25f - 0.5f;
        p[i] = vkvk_from_f32(off + vkvt_normal(&s, 1.0f), dtype);
    }
}

/* Sets up `shape` as a chunk of `tokens` tokens whose visual part is the
 * range [vstart, vstart + vlen) (vlen 0: no visual tokens). */
static inline void vkvt_shape(vkv_shape *sh, uint32_t layers, uint32_t heads, uint32_t hd,
                              uint32_t tokens, uint32_t vstart, uint32_t vlen, int dtype)
{
    memset(sh, 0, sizeof(*sh));
    sh->layers = layers;
    sh->kv_heads = heads;
    sh->head_dim = hd;
    sh->tokens = tokens;
    sh->dtype = (uint8_t)dtype;
    if (vlen) {
        sh->n_ranges = 1;
        sh->ranges[0].start = vstart;
        sh->ranges[0].len = vlen;
    }
}

#endif
