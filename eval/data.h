/*
 * eval/data.h - the KV cache a fidelity run measures: per-layer K and V of
 * one prompt, the visual-token ranges and decode-time queries.
 *
 * Safetensors naming convention (read by vkve_data_load, written by
 * vkve_data_save; documented in docs/FIDELITY.md):
 *   layers.{i}.k   [tokens, kv_heads, head_dim]      F16, BF16 or F32
 *   layers.{i}.v   [tokens, kv_heads, head_dim]
 *   layers.{i}.q   [n_queries, n_heads, head_dim]    optional, post-RoPE;
 *                  n_heads a multiple of kv_heads, query head h reads KV
 *                  head h / (n_heads / kv_heads) (grouped-query attention)
 *   layers.{i}.qw  [1, kv_heads, head_dim]           optional: per-channel mean
 *                  square of prefill queries (unit-normalised) of the span's
 *                  own tokens, over the query heads of each KV head; what an
 *                  encoder in the worker can know before decode (tc aw=1)
 *   __metadata__   "visual_ranges": "START:END[,START:END...]" half-open token
 *                  intervals, sorted and disjoint (default: every token);
 *                  "profile", "seed": informative only.
 * Layers are numbered from 0 without holes; every layer has the same shape.
 * Without queries the last raw (non-visual) tokens' keys stand in as queries
 * (proxy; reported as such).
 */
#ifndef VKVE_DATA_H
#define VKVE_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "vkv/block.h"

#define VKVE_MAX_RANGES 64u

typedef struct vkve_data {
    uint32_t layers, kv_heads, head_dim, tokens;
    uint32_t n_heads, n_queries; /* queries per layer, each with n_heads heads */
    int dtype;                   /* source dtype: enum vkvtn_st_dtype */
    int proxy_queries;           /* 1 when queries were taken from keys */
    uint32_t n_ranges;
    vkv_block_range ranges[VKVE_MAX_RANGES];
    float **k, **v; /* [layers] -> [tokens][kv_heads][head_dim], owned */
    float **q;      /* [layers] -> [n_queries][n_heads][head_dim], owned */
    float **qw;     /* [layers] -> [kv_heads][head_dim] encoder-side channel
                       weights (mean squared prefill-query component over the
                       heads reading each KV head), owned; NULL when absent */
    char name[64];  /* profile or file name, for reports */
} vkve_data;

/* Allocates zeroed K, V and Q arrays for the shape already set in d (layers,
 * kv_heads, head_dim, tokens, n_heads, n_queries). Returns VKV_OK or
 * VKV_ENOMEM (then frees what it took). Free with vkve_data_free. */
int vkve_data_alloc(vkve_data *d);

/* Allocates zeroed d->qw for the shape in d. Returns VKV_OK or VKV_ENOMEM. */
int vkve_data_alloc_qw(vkve_data *d);

/* Frees the arrays of d (not d itself) and zeroes the pointers. */
void vkve_data_free(vkve_data *d);

/* Allocates `layers` arrays of n floats each into *out (zeroed). Free with
 * vkve_layers_free(*out, layers). Returns VKV_OK or VKV_ENOMEM. */
int vkve_layers_alloc(uint32_t layers, size_t n, float ***out);
void vkve_layers_free(float **a, uint32_t layers);

/* 1 if token t is inside a visual range of d. */
int vkve_is_visual(const vkve_data *d, uint32_t t);

/* Number of visual tokens. */
uint32_t vkve_n_visual(const vkve_data *d);

/* Parses "a:b,c:d" into ranges (sorted, disjoint, non-empty, inside
 * [0,tokens)). Returns VKV_OK or VKV_ERANGES. */
int vkve_ranges_parse(const char *s, uint32_t tokens, vkv_block_range *r, uint32_t *n);

/* Formats ranges as "a:b,c:d" into buf (truncated to n). */
void vkve_ranges_format(const vkv_block_range *r, uint32_t nr, char *buf, size_t n);

/* Loads a dump following the convention above into *d (which it fills; free
 * with vkve_data_free). Errors: those of vkvtn_st_read_file, VKV_ESHAPE
 * (missing layers.0.k, mismatched shapes), VKV_ERANGES. err gets a message. */
int vkve_data_load(const char *path, vkve_data *d, char *err, size_t errlen);

/* Writes d (K, V, and Q unless proxy) to path in `dtype` with the metadata
 * above, plus extra metadata pairs (may be NULL/0). Returns as vkvtn_st_write. */
int vkve_data_save(const char *path, const vkve_data *d, int dtype, const char *const *meta,
                   size_t n_meta, char *err, size_t errlen);

#endif
