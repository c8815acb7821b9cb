/*
 * vkv/attend.h - decode-time attention computed directly on a vkv block
 * (the 1-bit codes, scales and levels in the daemon's memory), without an
 * fp16 copy of the block's K or V, plus the merge of partial results.
 *
 * A worker that holds a cached image prefix in vkvd computes, per layer,
 *
 *     (out_i, lse_i) = vkv_attend(block_i, layer, q)      for each block i
 *     (out_w, lse_w) = its own attention over its other tokens (fp16 pages)
 *     (out, lse)     = vkv_attend_merge({out_i..., out_w}, {lse_i..., lse_w})
 *
 * and `out` equals one softmax attention over the union of the tokens (the
 * split-KV / cascade merge; docs/ATTEND.md states the recipe and bounds).
 *
 * Definitions, per query i and query head j (KV head h = j / (n_heads /
 * kv_heads), grouped-query attention):
 *     s_t   = scale * (q_ij . k_th)           for each token t not masked out
 *     lse   = log(sum_t exp(s_t))             natural log
 *     out   = sum_t exp(s_t - lse) * v_th     fp32
 * Visual tokens are used as the block's codec reconstructs them, but in
 * fp32: no rounding of K or V to the source dtype and no clamp to its
 * finite range (vkv_decode rounds and clamps; docs/ATTEND.md). Raw tokens
 * take part exactly as stored. A query whose tokens are all masked out gets
 * out = 0 and lse = -INFINITY (the merge then gives it weight 0).
 *
 * Threading: reentrant; no function keeps a pointer to its arguments after
 * it returns. vkv_attend allocates scratch memory internally and frees it
 * before returning. The implementation (scalar reference or AVX2) is the one
 * chosen for the codec by vkv_codec_set_impl (AVX-512 selects the AVX2
 * attention kernels).
 */
#ifndef VKV_ATTEND_H
#define VKV_ATTEND_H

#include "vkv/api.h"

#include <stddef.h>
#include <stdint.h>

#include "vkv/block.h"
#include "vkv/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Element type of the queries. */
enum vkv_attend_dtype {
    VKV_ATTEND_F16 = 1,  /* IEEE binary16 (= VKV_DTYPE_F16) */
    VKV_ATTEND_BF16 = 2, /* bfloat16 (= VKV_DTYPE_BF16) */
    VKV_ATTEND_F32 = 3,  /* IEEE binary32 */
};

/* Largest n_q * n_heads a call accepts. */
#define VKV_ATTEND_MAX_ROWS 65536u

/* One vkv_attend call. Every pointer is caller memory, read (q, mask) or
 * written (out, lse) during the call only. */
typedef struct vkv_attend_args {
    /* What the caller expects of the block; checked against its header
     * before any payload byte is read (VKV_ESHAPE on a mismatch). */
    uint32_t kv_heads; /* the model's KV heads */
    uint32_t head_dim; /* the model's head dimension */
    uint32_t layers;   /* the model's layer count, or 0 to accept any */
    uint32_t layer;    /* the layer to attend over: < the block's layers */
    /* Queries: q[n_q][n_heads][head_dim], contiguous, of q_dtype. */
    uint32_t n_q;     /* >= 1 */
    uint32_t n_heads; /* a multiple of kv_heads */
    uint8_t q_dtype;  /* enum vkv_attend_dtype */
    const void *q;
    float scale; /* softmax scale (usually 1/sqrt(head_dim)); finite */
    /* Optional position mask: NULL (every token takes part) or
     * mask[n_q][mask_tokens] bytes, nonzero = block token t takes part in
     * query i's attention. mask_tokens must equal the block's tokens. */
    const uint8_t *mask;
    uint32_t mask_tokens;
    /* Results: out[n_q][n_heads][head_dim] and lse[n_q][n_heads], fp32. */
    float *out;
    float *lse;
    /* NULL, or the VKV_IDENT_LEN-byte identity the block must carry (its
     * (namespace, key), vkv_block_ident / vkv_fetch_ident): another one is
     * VKV_EIDENT, before any payload byte is read. */
    const uint8_t *ident;
} vkv_attend_args;

/* Computes the attention of a->q over the tokens of one layer of a block
 * (block: `size` readable bytes, e.g. a vkv_view's data/size; host memory,
 * read only) and writes a->out and a->lse. The header is validated as by
 * vkv_block_check(flags) (VKV_DECODE_VERIFY in flags also checks the payload
 * checksum), then the caller's expectations, then the queries; on any error
 * nothing is written. Never reads past block + size.
 * Errors: those of vkv_block_check; VKV_EINVAL (NULL pointers, unknown
 * flags or q_dtype, n_q = 0, mask_tokens != tokens, layer >= layers,
 * n_q * n_heads > VKV_ATTEND_MAX_ROWS); VKV_ESHAPE (kv_heads, head_dim or
 * layers differ from the block's, or n_heads is not a positive multiple of
 * kv_heads); VKV_ENONFINITE (a query element or the scale is NaN/Inf);
 * VKV_EIDENT (a->ident given and the block bound to something else);
 * VKV_ENOMEM. A block whose header is valid but whose payload was altered
 * (without VKV_DECODE_VERIFY) gives unspecified values, never an
 * out-of-bounds read. */
VKV_API int vkv_attend(const void *block, size_t size, unsigned flags, const vkv_attend_args *a);

/* Merges n partial attention results over disjoint token sets into one:
 * for each of `rows` rows (n_q * n_heads), with M = max_i lse_i[row] and
 * w_i = exp(lse_i[row] - M):
 *     lse[row] = M + log(sum_i w_i)
 *     out[row] = sum_i w_i * out_i[row] / sum_i w_i    (head_dim floats)
 * Parts with lse = -INFINITY carry no weight; if every part has it the row
 * gets out = 0 and lse = -INFINITY. outs[i] is [rows][head_dim], lses[i]
 * [rows]; out / lse may be the same memory as any outs[i] / lses[i] (each
 * row is read completely before it is written). lse may be NULL.
 * Errors: VKV_EINVAL (n = 0, NULL pointers, head_dim = 0 or > 4096),
 * VKV_ENONFINITE (an lse is NaN or +Inf); nothing is written then. */
VKV_API int vkv_attend_merge(size_t n, const float *const *outs, const float *const *lses,
                             size_t rows, uint32_t head_dim, float *out, float *lse);

#ifdef __cplusplus
}
#endif
#endif /* VKV_ATTEND_H */
