/*
 * vkv/codec.h - encode one chunk of KV cache into a vkv block and decode it
 * back. The codec runs in the worker (client) process; the daemon never
 * touches payload bytes on the hot path.
 *
 * Threading: every function is reentrant; none keeps a pointer to its
 * arguments after it returns. No function allocates memory that the caller
 * must free.
 */
#ifndef VKV_CODEC_H
#define VKV_CODEC_H

#include "vkv/api.h"

#include <stddef.h>
#include <stdint.h>

#include "vkv/block.h"
#include "vkv/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How to quantize the visual tokens. Parsed from / formatted to a string
 * such as "lloyd:kg=256,vmode=token,vg=128,iters=4" (see vkv_codec_spec_parse). */
typedef struct vkv_codec_spec {
    uint8_t rule;   /* enum vkv_rule */
    uint8_t k_mode; /* enum vkv_group_mode */
    uint8_t v_mode; /* enum vkv_group_mode */
    uint8_t iters;  /* Lloyd iterations, 1..16 (ignored by other rules) */
    uint16_t k_group;
    uint16_t v_group;
    float k_param; /* minmax: shrink in [0,1); quantile: p in (0,0.5) */
    float v_param;
} vkv_codec_spec;

/* The shape of one chunk: every layer has K and V of [tokens][kv_heads][head_dim]. */
typedef struct vkv_shape {
    uint32_t layers;
    uint32_t kv_heads;
    uint32_t head_dim; /* multiple of 8 */
    uint32_t tokens;
    uint8_t dtype;     /* enum vkv_dtype */
    uint32_t n_ranges; /* visual ranges, sorted, disjoint, inside [0, tokens) */
    vkv_block_range ranges[VKV_BLOCK_MAX_RANGES];
} vkv_shape;

/* Dense, read-only source tensors. k[l] and v[l] point at element (0,0,0) of
 * layer l; element (t,h,d) is at index t*token_stride + h*head_stride + d.
 * Strides are in elements; head_dim elements of one head are contiguous. */
typedef struct vkv_kv_src {
    const void *const *k;
    const void *const *v;
    size_t token_stride;
    size_t head_stride;
} vkv_kv_src;

/* What a destination holds, checked against a block before anything is
 * written: a block whose layers, kv_heads, head_dim or dtype differ, or that
 * has more tokens than `tokens`, is refused with VKV_EGEOMETRY. Every field
 * is required (zero layers/kv_heads/head_dim/dtype: VKV_EINVAL). */
typedef struct vkv_geometry {
    uint32_t layers;
    uint32_t kv_heads;
    uint32_t head_dim;
    uint32_t tokens; /* dense: token capacity of each layer's buffer; paged:
                      * 0 (the block table bounds the tokens) or a cap */
    uint8_t dtype;   /* enum vkv_dtype of the destination buffers */
} vkv_geometry;

/* The geometry of buffers laid out for `shape` (tokens = shape->tokens). */
static inline vkv_geometry vkv_geometry_of(const vkv_shape *shape)
{
    vkv_geometry g = {shape->layers, shape->kv_heads, shape->head_dim, shape->tokens, shape->dtype};
    return g;
}

/* Dense destination, same addressing as vkv_kv_src. */
typedef struct vkv_kv_dst {
    void *const *k;
    void *const *v;
    size_t token_stride;
    size_t head_stride;
    vkv_geometry geom;    /* what k/v can hold (required) */
    const uint8_t *ident; /* NULL, or the 16-byte identity the block must
                           * carry (vkv_block_ident); else VKV_EIDENT */
} vkv_kv_dst;

/* Paged destination, as vLLM lays out its KV cache. Token t of the block
 * sits at sequence position p = first_pos + t, stored in page
 * block_table[p / page_size], slot p % page_size; element (slot, head h,
 * channel d) of page g is at base + g*page_stride + slot*slot_stride +
 * h*head_stride + d (in elements; channels contiguous). Strides left 0 take
 * the dense default [num_pages][page_size][kv_heads][head_dim] (vLLM's NHD):
 * page_stride = page_size*kv_heads*head_dim, slot_stride =
 * kv_heads*head_dim, head_stride = head_dim. vLLM's HND order
 * ([num_pages][kv_heads][page_size][head_dim]) is slot_stride = head_dim,
 * head_stride = page_size*head_dim. Zero-initialize, then set fields. */
typedef struct vkv_paged_dst {
    void *const *k_cache; /* [layers] base pointers */
    void *const *v_cache;
    uint32_t num_pages;
    uint32_t page_size;
    const int32_t *block_table; /* page ids, one per page_size positions */
    uint32_t block_table_len;
    uint32_t first_pos;
    size_t page_stride;   /* elements between pages; 0 = dense default */
    size_t slot_stride;   /* elements between the slots (tokens) of a page; 0 = default */
    size_t head_stride;   /* elements between the heads of a slot; 0 = default */
    uint32_t skip_tokens; /* tokens [0, skip_tokens) of the block are not
                           * written and need no block table entry (the
                           * caller already holds them); <= the block's tokens */
    vkv_geometry geom;    /* what the caches hold (required; tokens 0 = any) */
    const uint8_t *ident; /* NULL or the identity the block must carry */
} vkv_paged_dst;

/* Which implementation the encode/decode entry points dispatch to. */
enum vkv_impl {
    VKV_IMPL_AUTO = 0,   /* best the CPU supports (default) */
    VKV_IMPL_SCALAR = 1, /* the reference: ground truth */
    VKV_IMPL_AVX2 = 2,   /* AVX2 + F16C + FMA */
    VKV_IMPL_AVX512 = 3, /* AVX-512 F/BW/VL + F16C */
};

/* Flags for vkv_decode / vkv_decode_paged. */
#define VKV_DECODE_VERIFY 1u /* also check the payload checksum (XXH3) */

/* Fills `spec` with the project default codec (chosen by docs/FIDELITY.md). */
VKV_API void vkv_codec_spec_default(vkv_codec_spec *spec);

/* Parses a spec string: "RULE[:key=value,...]" with RULE one of minmax,
 * quantile, lloyd, rotsign and keys kmode|vmode (channel|token), kg|vg (group
 * size), kp|vp (rule parameter), iters; rotsign takes kbits|vbits (scale
 * width 8|16, stored in k_group/v_group) instead of kg/vg/kp/vp, and iters
 * 0..16; tc takes only kb (key bits per element, a multiple of 1/64 in
 * (0, 3], default 1.125; k_group = 64 kb), vb (value bits, 0 = sign bits
 * times a rank-1 magnitude, the default, v_mode CHANNEL; else as kb, v_mode
 * TOKEN) and aw (0|1: use vkv_encode_weighted's weights; iters).
 * Unnamed fields take the defaults of RULE.
 * Returns VKV_OK or VKV_ESPEC; `spec` is written only on success. */
VKV_API int vkv_codec_spec_parse(const char *text, vkv_codec_spec *spec);

/* Writes the canonical string of `spec` into buf (NUL-terminated, truncated
 * to n). Returns the length it needed, like snprintf. */
VKV_API int vkv_codec_spec_format(const vkv_codec_spec *spec, char *buf, size_t n);

/* Checks `spec` against `shape` (group sizes, modes, parameters, ranges).
 * Returns VKV_OK or the specific error (VKV_ESPEC, VKV_ESHAPE, VKV_EGROUP,
 * VKV_ERANGES). */
VKV_API int vkv_codec_check(const vkv_shape *shape, const vkv_codec_spec *spec);

/* Stores in *size the exact byte size of the block vkv_encode would write for
 * `shape` and `spec`, header and all metadata included. Same errors as
 * vkv_codec_check. */
VKV_API int vkv_codec_encoded_size(const vkv_shape *shape, const vkv_codec_spec *spec,
                                   size_t *size);

/* Encodes a chunk into dst (dst_size bytes, at least the encoded size; any
 * alignment). Reads src only. On error, dst contents are unspecified and
 * must not be used. Errors: those of vkv_codec_check, VKV_ETRUNC (dst too
 * small), VKV_ENONFINITE (NaN/Inf in a visual token; raw tokens are copied
 * as they are). Uses the implementation chosen by vkv_codec_set_impl. */
VKV_API int vkv_encode(const vkv_shape *shape, const vkv_codec_spec *spec, const vkv_kv_src *src,
                       void *dst, size_t dst_size);

/* vkv_encode with per-(layer, KV head) channel weights that steer rule 5's
 * key bit allocation (VKV_RULE_TC with aw=1, spec iters = 1): key_weights[l]
 * points at [kv_heads][head_dim] floats, finite and >= 0 (else VKV_EINVAL),
 * e.g. the mean square of the span's own unit-normalised prefill queries
 * per channel over the query heads of each KV head (docs/FIDELITY.md). Only
 * their ratios matter. The decoder does not need them: the allocation they
 * produce is stored in the block. NULL, another rule or aw=0: exactly
 * vkv_encode (tc then weights channel d by its key energy E[k_d^2]). Read
 * during the call only. Errors: those of vkv_encode. */
VKV_API int vkv_encode_weighted(const vkv_shape *shape, const vkv_codec_spec *spec,
                                const vkv_kv_src *src, const float *const *key_weights, void *dst,
                                size_t dst_size);

/* Validates a block's header (magic, version, header checksum, field ranges,
 * canonical section table, total_size <= size) and, with VKV_DECODE_VERIFY
 * in flags, the payload checksum. On success copies the header into *hdr
 * (may be NULL). Never reads past block + size; without VKV_DECODE_VERIFY it
 * reads only the 256 header bytes, so a copy of the header can be checked
 * against the size of the memory the block lives in. */
VKV_API int vkv_block_check(const void *block, size_t size, unsigned flags, vkv_block_header *hdr);

/* Bytes of a block identity. */
#define VKV_IDENT_LEN 16

/* Computes the identity of (namespace, key) into out[16]: XXH3-128 (seed 0)
 * of the bytes "vkv-ident-v1", the namespace length as 4 little-endian
 * bytes, the namespace bytes and the 32 key bytes; out is the 128-bit hash
 * as 8 little-endian bytes of the low half then 8 of the high half
 * (docs/BLOCK_FORMAT.md). `ns` is ns_len bytes (no NUL needed); `key` is 32
 * bytes. Reads its inputs only during the call. */
VKV_API void vkv_block_ident(const char *ns, size_t ns_len, const uint8_t key[32],
                             uint8_t out[VKV_IDENT_LEN]);

/* Binds a block (size bytes, header valid as for vkv_block_check) to
 * `ident`: writes it into the header and recomputes the header checksum.
 * Reads and writes only the 256 header bytes (so a host copy of a device
 * block's header can be bound with the block's real size). Errors: those of
 * vkv_block_check. */
VKV_API int vkv_block_bind(void *block, size_t size, const uint8_t ident[VKV_IDENT_LEN]);

/* VKV_OK if the checked header `hdr` carries `ident`, else VKV_EIDENT
 * (an unbound block, identity all zero, never matches). */
VKV_API int vkv_block_check_ident(const vkv_block_header *hdr, const uint8_t ident[VKV_IDENT_LEN]);

/* Fills `shape` and `spec` from a validated header. */
VKV_API void vkv_block_shape(const vkv_block_header *hdr, vkv_shape *shape, vkv_codec_spec *spec);

/* Decodes every token (raw copied, visual reconstructed) into dense dst in
 * the block's dtype. Validates the block as vkv_block_check(flags) first,
 * from one copy of its header, then checks it against dst->geom
 * (VKV_EGEOMETRY) and dst->ident (VKV_EIDENT); nothing is written unless
 * every check passed. */
VKV_API int vkv_decode(const void *block, size_t size, unsigned flags, const vkv_kv_dst *dst);

/* Same into a paged cache; VKV_EINVAL if a written position maps outside
 * the block table, a page id is outside [0, num_pages), skip_tokens exceeds
 * the block's tokens, or the strides make an offset overflow (the cache must
 * span (num_pages-1)*page_stride + (page_size-1)*slot_stride +
 * (kv_heads-1)*head_stride + head_dim elements per layer; strides are not
 * otherwise checked), VKV_EGEOMETRY / VKV_EIDENT as vkv_decode. Nothing is
 * written then. */
VKV_API int vkv_decode_paged(const void *block, size_t size, unsigned flags,
                             const vkv_paged_dst *dst);

/* Selects the implementation for this process. Returns VKV_ENOTSUP (and
 * changes nothing) if the CPU lacks it. */
VKV_API int vkv_codec_set_impl(enum vkv_impl impl);

/* The implementation in use now (never VKV_IMPL_AUTO) and its name. */
VKV_API enum vkv_impl vkv_codec_impl(void);
VKV_API const char *vkv_codec_impl_name(enum vkv_impl impl);

/* Bits per element of a block: 8 * encoded size / (2 * layers * tokens *
 * kv_heads * head_dim). */
VKV_API double vkv_codec_bits_per_element(const vkv_shape *shape, size_t encoded_size);

#ifdef __cplusplus
}
#endif
#endif /* VKV_CODEC_H */
