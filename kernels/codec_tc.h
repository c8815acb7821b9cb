/*
 * kernels/codec_tc.h - block rule 5 (VKV_RULE_TC, transform coding with bit
 * allocation): the decode arithmetic, written once as static inline
 * (VKV_HD: compiles under nvcc too), and the private contract between the
 * codec driver (codec.c), the attention driver (attend.c) and the scalar
 * encoder / decoder in codec_tc.c. Not installed.
 *
 * The format (docs/BLOCK_FORMAT.md "Rule 5: tc"): per layer, tensor and KV
 * head a record of the channel means mu[d] (source dtype), 8-bit channel
 * scale codes (sc = stop * 2^(-c/16), as the token scales), a 2-bit
 * allocation nb[d] in 0..3, the top of the token scale code and stop;
 * per visual token and head one scale byte c (a = top * 2^(-c/16), c = 255:
 * a = 0) and the codes of the channels with nb[d] > 0, packed LSB first.
 * A key element decodes to (a * lev[nb][code]) * sc[d] + mu[d] in binary32
 * (no fused multiply-add), rounded to the dtype after a clamp to its finite
 * range; a rank-1 value element to ((+-1) * a) * b[d].
 */
#ifndef VKVK_CODEC_TC_H
#define VKVK_CODEC_TC_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/codec_math.h"
#include "vkv/block.h"

/* Gaussian Lloyd-Max reconstruction levels of 1..3 bits (unit variance;
 * Max 1960), as binary32 literals; row b holds 2^b levels, ascending. */
VKV_HD static inline float vkvk_tc_level(uint32_t b, uint32_t i)
{
    /* row b at offset 2^b - 2: 1 bit [0, 2), 2 bits [2, 6), 3 bits [6, 14) */
    static const float lv[14] = {-0.7979f, 0.7979f, -1.5104f, -0.4528f, 0.4528f, 1.5104f, -2.152f,
                                 -1.344f,  -0.756f, -0.2451f, 0.2451f,  0.756f,  1.344f,  2.152f};
    return lv[(1u << b) - 2u + (i & ((1u << b) - 1u))];
}

/* Mantissas 2^(-f/16), f = 0..15, rounded to binary32 (bit patterns). */
VKV_HD static inline float vkvk_tc_mant(uint32_t f)
{
    static const uint32_t m[16] = {0x3f800000u, 0x3f75257du, 0x3f6ac0c7u, 0x3f60ccdfu,
                                   0x3f5744fdu, 0x3f4e248cu, 0x3f45672au, 0x3f3d08a4u,
                                   0x3f3504f3u, 0x3f2d583fu, 0x3f25fed7u, 0x3f1ef532u,
                                   0x3f1837f0u, 0x3f11c3d3u, 0x3f0b95c2u, 0x3f05aac3u};
    return vkvk_bits_f32(m[f & 15u]);
}

/* Code 255 of the tc scale byte: the scale is zero. */
#define VKVK_TC_ZERO_CODE 255u

/* The tc scale of code c under top: c = 255 -> 0.0f, else top *
 * (vkvk_tc_mant(c % 16) * 2^-(c / 16)) (the product in parentheses exact). */
VKV_HD static inline float vkvk_tc_scale(float top, uint32_t c)
{
    if (c >= VKVK_TC_ZERO_CODE)
        return 0.0f;
    return top * (vkvk_tc_mant(c & 15u) * vkvk_bits_f32((127u - (c >> 4)) << 23));
}

/* One (layer, tensor, head) of a tc block, unpacked for decoding. The
 * arrays are caller memory of head_dim entries each. */
typedef struct vkvk_tc_head {
    uint32_t hd;
    int coded;   /* 1: mean / scale / allocation record; 0: rank-1 signs */
    float top;   /* top of the scale code */
    float *mu;   /* coded: channel means (unused for rank-1) */
    float *sc;   /* coded: channel scales; rank-1: b */
    uint8_t *nb; /* coded: bits per channel */
} vkvk_tc_head;

/* Bytes of one token and head's codes in tensor s of a tc block. */
VKV_HD static inline uint32_t vkvk_tc_code_bytes(const vkv_block_header *h, int s)
{
    if (s == 1 && h->v_mode != VKV_GROUP_TOKEN)
        return h->head_dim / 8u;
    return (vkvk_tc_bits(s ? h->v_group : h->k_group, h->head_dim) + 7u) / 8u;
}

/* Unpacks the record of head `hh` from a layer's LEV bytes `lev` of tensor
 * s (0 keys, 1 values) into c (whose mu/sc/nb point at caller memory). An
 * allocation whose bits exceed the token's code bytes (only an altered
 * payload has one) is cut: the channels past the budget get 0 bits, so a
 * decoder never reads past the token's codes. */
VKV_HD static inline void vkvk_tc_head_load(const vkv_block_header *h, int s, const uint8_t *lev,
                                            uint32_t hh, vkvk_tc_head *c)
{
    const uint32_t hd = h->head_dim;
    const int dt = h->dtype;
    c->hd = hd;
    c->coded = s == 0 || h->v_mode == VKV_GROUP_TOKEN;
    const uint8_t *rec = lev + (size_t)hh * vkvk_tc_rec_bytes(c->coded, hd);
    if (c->coded) {
        const uint8_t *cs = rec + 2u * (size_t)hd, *al = rec + 3u * (size_t)hd;
        const uint8_t *tp = al + hd / 4u;
        c->top = vkvk_to_f32((uint16_t)(tp[0] | (tp[1] << 8)), dt);
        const float stop = vkvk_to_f32((uint16_t)(tp[2] | (tp[3] << 8)), dt);
        uint32_t left = 8u * vkvk_tc_code_bytes(h, s);
        for (uint32_t d = 0; d < hd; d++) {
            c->mu[d] = vkvk_to_f32((uint16_t)(rec[2u * d] | (rec[2u * d + 1u] << 8)), dt);
            c->sc[d] = vkvk_tc_scale(stop, cs[d]);
            uint32_t nb = (al[d >> 2] >> (2u * (d & 3u))) & 3u;
            nb = nb <= left ? nb : 0u;
            left -= nb;
            c->nb[d] = (uint8_t)nb;
        }
    } else {
        for (uint32_t d = 0; d < hd; d++)
            c->sc[d] = vkvk_to_f32((uint16_t)(rec[2u * d] | (rec[2u * d + 1u] << 8)), dt);
        const uint8_t *tp = rec + 2u * (size_t)hd;
        c->top = vkvk_to_f32((uint16_t)(tp[0] | (tp[1] << 8)), dt);
    }
}

/* Decodes one token of one head in binary32 (no rounding, no clamp) into
 * out[hd]: codes are the token's code (or sign) bytes, q its scale byte. */
VKV_HD static inline void vkvk_tc_dec_f32(const vkvk_tc_head *c, const uint8_t *codes, uint32_t q,
                                          float *out)
{
    const float a = vkvk_tc_scale(c->top, q);
    if (!c->coded) {
        for (uint32_t d = 0; d < c->hd; d++) {
            float sg = (codes[d >> 3] >> (d & 7u)) & 1u ? 1.0f : -1.0f;
            out[d] = (sg * a) * c->sc[d];
        }
        return;
    }
    /* a bit buffer refilled one byte at a time only when it holds fewer
     * bits than the next channel needs: the allocation fits the code bytes
     * (vkvk_tc_head_load), so no byte past them is read */
    uint32_t buf = 0, have = 0;
    const uint8_t *p = codes;
    for (uint32_t d = 0; d < c->hd; d++) {
        const uint32_t nb = c->nb[d];
        float r = 0.0f;
        if (nb) {
            if (have < nb) {
                buf |= (uint32_t)*p++ << have;
                have += 8u;
            }
            r = a * vkvk_tc_level(nb, buf & ((1u << nb) - 1u));
            buf >>= nb;
            have -= nb;
        }
        out[d] = r * c->sc[d] + c->mu[d];
    }
}

/* Most code bytes of one token and head (3 bits per channel). */
#define VKVK_TC_MAX_CODE_BYTES (VKV_BLOCK_MAX_HEAD_DIM * 3u / 8u)

/* The bit offset of each channel's code in a token's code bytes under the
 * head's allocation c->nb (off[hd], caller memory; a channel without bits
 * gets the offset of the next code). */
VKV_HD static inline void vkvk_tc_offsets(const vkvk_tc_head *c, uint32_t *off)
{
    uint32_t pos = 0;
    for (uint32_t d = 0; d < c->hd; d++) {
        off[d] = pos;
        pos += c->nb[d];
    }
}

#if !defined(__CUDACC__) && defined(VKVK_X86)
/* AVX2 twins of the decoder (codec_tc_avx2.c), bit-identical to the scalar
 * code: vkvk_tc_dec_f32_avx2 writes what vkvk_tc_dec_f32 writes (out[hd]
 * floats); vkvk_tc_dec_out_avx2 that row after vkvk_rot_out (out[hd] dtype
 * bits). off: vkvk_tc_offsets of c (coded heads only); codes: the token's
 * cb code bytes (vkvk_tc_code_bytes); q its scale byte. Caller memory. */
void vkvk_tc_dec_f32_avx2(const vkvk_tc_head *c, const uint32_t *off, const uint8_t *codes,
                          uint32_t cb, uint32_t q, float *out);
void vkvk_tc_dec_out_avx2(const vkvk_tc_head *c, const uint32_t *off, const uint8_t *codes,
                          uint32_t cb, uint32_t q, int dtype, uint16_t *out);

/* One KV head's rule-5 keys folded for vkv_attend: the n coded channels'
 * bit offsets off[n] and widths nb[n] (each array readable up to n rounded
 * up to 8), R query rows u (ustride apart, n entries each, zero from n up
 * to n rounded to 8: q_d * sc_d of the coded channels), base[R] = q . mu,
 * top of the token scales, cb code bytes per token. Caller memory. */
typedef struct vkvk_tc_keys {
    uint32_t n, cb, R;
    float top;
    const uint16_t *off;
    const uint8_t *nb;
    const float *u, *base;
    size_t ustride;
} vkvk_tc_keys;

/* Scores of nv tokens (codes at bits + v*tstride, scale bytes at
 * scl[v*sstride]): sc[r*T + v] = a_v * (u_r . L_v) + base[r], the levels
 * L_v into lv (n rounded up to 8 floats of scratch). AVX2 + FMA: equal to
 * the scalar loop of attend.c within fp32 reordering, not bit for bit. */
void vkvk_tc_scores_avx2(const vkvk_tc_keys *kk, const uint8_t *bits, size_t tstride,
                         const uint8_t *scl, size_t sstride, uint32_t nv, float *lv, float *sc,
                         size_t T);
#endif

#ifndef __CUDACC__
/* Scratch floats the tc encoder of one tensor needs for nv visual tokens
 * (the driver's malloc: suitably aligned for the doubles inside). */
#define VKVK_TC_SCRATCH_FLOATS(nv, hd)                                                             \
    ((size_t)(nv) * (2u * (size_t)(hd) + 2u) + 18u * (size_t)(hd) + 64u +                          \
     (2u * (size_t)(nv) * (size_t)(hd) + 3u) / 4u)

/* Encodes tensor s (0 keys, 1 values) of one layer of a rule-5 block, every
 * head, over the nv visual tokens: head h of token j has its hd channels at
 * src + vt[j]*tstride + h*hstride. w: NULL, or the layer's [heads][hd]
 * channel weights steering the key allocation (finite, >= 0; keys only).
 * Writes the layer's code bytes `bits` and its LEV bytes `lev` (caller
 * memory, the sizes of vkvk_tc_layout_of). scratch holds
 * VKVK_TC_SCRATCH_FLOATS(nv, hd) floats. Returns 0 or VKV_ENONFINITE.
 * (codec_tc.c) */
int vkvk_tc_enc_tensor(const vkv_block_header *h, int s, const uint16_t *src, size_t tstride,
                       size_t hstride, const uint32_t *vt, uint32_t nv, const float *w,
                       uint8_t *bits, uint8_t *lev, float *scratch);

/* Encoder pieces both rule-5 encoders (codec_tc.c, codec_tc_enc_avx2.c)
 * call, defined in codec_tc.c. vkvk_tc_st stores dtype bits v
 * little-endian at p. vkvk_tc_scale_code: the scale byte of a >= 0 under
 * top > 0, the code c in 0..254 whose vkvk_tc_scale(top, c) is nearest to
 * a (ties to the smaller c, i.e. the larger scale); 255 (zero) when a or
 * top is not positive. vkvk_tc_code_scales replaces a[0..n) (>= 0) by
 * their decoded 8-bit codes under top = max a rounded to the dtype; writes
 * the codes to q[j * qstride] and the top's dtype bits to *top_h (all
 * caller memory). */
void vkvk_tc_st(uint8_t *p, uint16_t v);
uint32_t vkvk_tc_scale_code(float a, float top);
void vkvk_tc_code_scales(float *a, uint32_t n, int dtype, uint8_t *q, size_t qstride,
                         uint16_t *top_h);

/* Refinement passes of the tc key coder after the first (codes, channel
 * scales, token scales alternate; docs/BLOCK_FORMAT.md "Rule 5"). */
#define VKVK_TC_PASSES 4u

/* Mean squared errors of the 0..3-bit Gaussian Lloyd-Max quantizers (unit
 * variance; the allocation's gains). (codec_tc.c) */
extern const double vkvk_tc_mse[4];

#ifdef VKVK_X86
/* The AVX2 + F16C twin of vkvk_tc_enc_tensor (the same arguments, the same
 * scratch): writes the same bytes and returns the same code
 * (codec_tc_enc_avx2.c). */
int vkvk_tc_enc_tensor_avx2(const vkv_block_header *h, int s, const uint16_t *src, size_t tstride,
                            size_t hstride, const uint32_t *vt, uint32_t nv, const float *w,
                            uint8_t *bits, uint8_t *lev, float *scratch);
#endif
#endif

#endif /* VKVK_CODEC_TC_H */
