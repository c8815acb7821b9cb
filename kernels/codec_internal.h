/*
 * kernels/codec_internal.h - private contract between the codec driver
 * (codec.c) and its kernel implementations (scalar reference, AVX2,
 * AVX-512). Not installed.
 *
 * A kernel table holds six hot loops. The driver does all validation,
 * section addressing and raw-token copies; kernels only see one group (encode)
 * or one visual token (decode) at a time, except the rotsign encoder, which
 * sees one tensor of one layer (every head and visual token) so that it can
 * walk whole token rows in memory order. Pointers into a block (bits, lev)
 * may have any alignment: kernels access them bytewise or with unaligned
 * loads. Source and destination tensors hold 16-bit elements, 2-byte aligned.
 */
#ifndef VKVK_CODEC_INTERNAL_H
#define VKVK_CODEC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/codec_math.h"
#include "vkv/codec.h"

/* Rule parameters of one tensor (K or V) as the kernels need them. */
typedef struct vkvk_rule_args {
    uint8_t rule;  /* enum vkv_rule */
    uint8_t dtype; /* enum vkv_dtype */
    uint8_t iters; /* Lloyd iterations */
    float param;   /* shrink (minmax) or p (quantile) */
} vkvk_rule_args;

/* Scratch floats a kernel may use for a CHANNEL group of n tokens or a
 * TOKEN row of head_dim channels (the driver allocates this many). */
#define VKVK_SCRATCH_FLOATS(n, head_dim) ((size_t)(n)*66u + 2u * (size_t)(head_dim) + 64u)

/* Parameters of one rotsign tensor. */
typedef struct vkvk_rot_args {
    uint8_t mode;  /* VKV_GROUP_TOKEN (centre + rotate) or VKV_GROUP_CHANNEL (rank-1) */
    uint8_t dtype; /* enum vkv_dtype */
    uint8_t sbits; /* scale width: 8 or 16 */
    uint8_t iters; /* rank-1 refinement passes */
    /* Encode only: the next layer's source (same strides and visual tokens)
     * that a kernel may prefetch while it works on this one, or NULL. Only
     * read through prefetch hints. */
    const uint16_t *next;
    /* Decode only: 1 + the largest magnitude pattern (h & 0x7fff) of the
     * layer's vector section (vkvk_rot_amax16), computed once per tensor by
     * the driver; 0 = not known (a kernel that needs it computes it). */
    uint16_t vamax1;
} vkvk_rot_args;

/* Scratch floats a rotsign encoder needs for nv visual tokens of `heads`
 * heads: the per-head part (converted rows, scales, vectors) plus the
 * all-heads part (heads*head_dim channel sums, nv*heads scale values and
 * heads dot products). */
#define VKVK_ROT_SCRATCH_FLOATS(nv, heads, head_dim)                                               \
    ((size_t)(nv) * (head_dim) + (size_t)(nv) + 4u * (size_t)(head_dim) +                          \
     (size_t)(heads) * ((size_t)(head_dim) + (size_t)(nv) + 1u) + 64u)

typedef struct vkvk_kernels {
    const char *name;
    /* Encodes a CHANNEL group: tokens 0..n-1 of one head, all hd channels.
     * src points at (first token, head, channel 0), tstride elements between
     * tokens. Writes code bits for token i at bits + i*bstride (hd/8 bytes),
     * the low levels (hd elements) at lev_lo and the high ones at lev_hi.
     * Returns 0 or VKV_ENONFINITE. */
    int (*enc_channel)(const vkvk_rule_args *ra, const uint16_t *src, size_t tstride, uint32_t n,
                       uint32_t hd, uint8_t *bits, size_t bstride, uint8_t *lev_lo, uint8_t *lev_hi,
                       float *scratch);
    /* Encodes the TOKEN groups of one token and head: hd channels at src in
     * groups of g. Writes hd/8 bytes of bits and hd/g (low, high) pairs at
     * lev. Returns 0 or VKV_ENONFINITE. */
    int (*enc_token)(const vkvk_rule_args *ra, const uint16_t *src, uint32_t hd, uint32_t g,
                     uint8_t *bits, uint8_t *lev, float *scratch);
    /* Decodes one visual token of every head, CHANNEL mode: bits is the
     * token's row [heads][hd/8], lev its group's [heads][2][hd]; head h goes
     * to dst + h*head_stride. */
    void (*dec_channel)(const uint8_t *bits, const uint8_t *lev, uint32_t heads, uint32_t hd,
                        uint16_t *dst, size_t head_stride);
    /* Same for TOKEN mode: lev is the token's [heads][hd/g][2]. */
    void (*dec_token)(const uint8_t *bits, const uint8_t *lev, uint32_t heads, uint32_t hd,
                      uint32_t g, uint16_t *dst, size_t head_stride);
    /* Encodes one rotsign tensor of one layer, every head, over the block's
     * nv visual tokens: head h of token j has its hd channels at
     * src + vt[j]*tstride + h*hstride (src points at block token 0, head 0).
     * Writes the layer's code bytes bits [nv][heads][hd/8], its vectors
     * (mean or b) vec [heads][hd] in the source dtype and its scales scl
     * [nv][heads][sbits/8]; all are caller memory. scratch holds
     * VKVK_ROT_SCRATCH_FLOATS(nv, heads, hd). Returns 0 or VKV_ENONFINITE
     * (the outputs are then unspecified). */
    int (*enc_rot)(const vkvk_rot_args *ra, const uint16_t *src, size_t tstride, size_t hstride,
                   const uint32_t *vt, uint32_t nv, uint32_t heads, uint32_t hd, uint8_t *bits,
                   uint8_t *vec, uint8_t *scl, float *scratch);
    /* Decodes one rotsign visual token of every head: bits [heads][hd/8],
     * vec the layer's [heads][hd] vectors, scl the token's [heads] scales;
     * head h goes to dst + h*head_stride. */
    void (*dec_rot)(const vkvk_rot_args *ra, const uint8_t *bits, const uint8_t *vec,
                    const uint8_t *scl, uint32_t heads, uint32_t hd, uint16_t *dst,
                    size_t head_stride);
} vkvk_kernels;

extern const vkvk_kernels vkvk_kernels_scalar;

/* Builds the header of a block (checksums zero) and its layout for a shape
 * and spec already accepted by vkv_codec_check (kernels/codec.c). */
void vkvk_make_header(const vkv_shape *shape, const vkv_codec_spec *spec, vkv_block_header *h,
                      vkvk_layout *L);

/* Checks a validated header against a destination's geometry and expected
 * identity (NULL: not checked); `dense` requires a token capacity. Returns
 * VKV_OK, VKV_EINVAL (geometry not given), VKV_EGEOMETRY or VKV_EIDENT.
 * Shared by the CPU and CUDA decoders (kernels/codec.c). */
int vkvk_check_dst(const vkv_block_header *h, const vkv_geometry *g, const uint8_t *ident,
                   int dense);

#ifdef VKVK_X86
extern const vkvk_kernels vkvk_kernels_avx2;
extern const vkvk_kernels vkvk_kernels_avx512;
/* The AVX2 TOKEN encoder, reused by the AVX-512 table. */
int vkvk_avx2_enc_token(const vkvk_rule_args *ra, const uint16_t *src, uint32_t hd, uint32_t g,
                        uint8_t *bits, uint8_t *lev, float *scratch);
/* The AVX2 rotsign kernels (table entries), reused by the AVX-512 table for
 * head dims that are not a multiple of 16. */
int vkvk_avx2_enc_rot_entry(const vkvk_rot_args *ra, const uint16_t *src, size_t tstride,
                            size_t hstride, const uint32_t *vt, uint32_t nv, uint32_t heads,
                            uint32_t hd, uint8_t *bits, uint8_t *vec, uint8_t *scl, float *scratch);
void vkvk_avx2_dec_rot_entry(const vkvk_rot_args *ra, const uint8_t *bits, const uint8_t *vec,
                             const uint8_t *scl, uint32_t heads, uint32_t hd, uint16_t *dst,
                             size_t head_stride);
/* vkvk_sc8_encode_fast of a[0..n) into code bytes out[0..n) (caller
 * memory), 16 (AVX-512) or 8 (AVX2) floats per step; same bytes.
 * kernels_math_test compares them with vkvk_sc8_encode. Call only when the
 * CPU has the instruction set. */
void vkvk_avx512_sc8_encode_n(const float *a, size_t n, uint8_t *out);
void vkvk_avx2_sc8_encode_n(const float *a, size_t n, uint8_t *out);
#endif

/* The scalar rotsign kernels (SIMD tables use them for shapes they do not
 * specialise). */
int vkvk_ref_enc_rot(const vkvk_rot_args *ra, const uint16_t *src, size_t tstride, size_t hstride,
                     const uint32_t *vt, uint32_t nv, uint32_t heads, uint32_t hd, uint8_t *bits,
                     uint8_t *vec, uint8_t *scl, float *scratch);
void vkvk_ref_dec_rot(const vkvk_rot_args *ra, const uint8_t *bits, const uint8_t *vec,
                      const uint8_t *scl, uint32_t heads, uint32_t hd, uint16_t *dst,
                      size_t head_stride);

/* The reference CHANNEL encoder restricted to channels [d0, d1) (multiples
 * of 8); SIMD kernels use it for channel tails and stay bit-identical. */
int vkvk_ref_enc_channel_part(const vkvk_rule_args *ra, const uint16_t *src, size_t tstride,
                              uint32_t n, uint32_t d0, uint32_t d1, uint8_t *bits, size_t bstride,
                              uint8_t *lev_lo, uint8_t *lev_hi, float *scratch);

/* The rotsign sign vector as bits: bit d % 64 of vkvk_rot_negw[d / 64] is
 * vkvk_rot_neg(d) for d < 4096 (a precomputed table; kernels_math_test checks
 * it against vkvk_rot_neg). Defined in codec_ref.c. */
extern const uint64_t vkvk_rot_negw[VKV_BLOCK_MAX_HEAD_DIM / 64u];

/* Row b: the first three FWHT stages (len 1, 2, 4) of the +-1 vector of the
 * 8 code bits b (bit 1 -> +1.0f), exact integers; 32-byte aligned rows.
 * Decoders start their FWHT from it. Defined in codec_ref.c. */
extern const float vkvk_rot_pm8[256][8];

/* The same code as vkvk_sc8_encode (codec_math.h) for every float, without
 * its 8-step binary search: a guess from the exponent and mantissa bits is
 * corrected to the largest code c with value(c) <= a, then rounded exactly as
 * vkvk_sc8_encode does. kernels_math_test compares the two. */
static inline uint8_t vkvk_sc8_encode_fast(float a)
{
    if (!(a >= 0.0f))
        return 0;
    if (vkvk_sc8_value(255) <= a)
        return 255;
    uint32_t u = vkvk_f32_bits(a);
    int32_t g = 128 + 8 * ((int32_t)(u >> 23) - 127) + (int32_t)((u >> 20) & 7u);
    g = g < 0 ? 0 : g > 254 ? 254 : g;
    while (g < 254 && vkvk_sc8_value((uint32_t)g + 1u) <= a)
        g++;
    while (g > 0 && vkvk_sc8_value((uint32_t)g) > a)
        g--;
    uint32_t lo = (uint32_t)g, hi = lo + 1u;
    return (uint8_t)(vkvk_sc8_value(hi) - a < a - vkvk_sc8_value(lo) ? hi : lo);
}

/* vkvk_rot_scale_put (codec_math.h) with vkvk_sc8_encode_fast: same bytes. */
static inline void vkvk_rot_scale_put_fast(uint8_t *p, float a, int sbits, int dtype)
{
    if (sbits == 8)
        p[0] = vkvk_sc8_encode_fast(a);
    else
        vkvk_rot_scale_put(p, a, sbits, dtype);
}

/* Unaligned little-endian 16-bit load/store into block memory. */
static inline uint16_t vkvk_ld16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline void vkvk_st16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

/* Largest magnitude bit pattern (h & 0x7fff) of the n 16-bit elements at p
 * (any alignment): for fp16 and bf16 alike the patterns order the
 * magnitudes, and Inf/NaN are exactly the patterns >= the Inf pattern. */
static inline uint16_t vkvk_rot_amax16(const uint8_t *p, size_t n)
{
    uint16_t r = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = (uint16_t)(vkvk_ld16(p + 2u * i) & 0x7fffu);
        r = h > r ? h : r;
    }
    return r;
}

#endif /* VKVK_CODEC_INTERNAL_H */
