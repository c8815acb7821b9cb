/*
 * eval/codecs.h - every codec the fidelity table compares, behind one
 * interface: parse a spec, quantize -> dequantize a whole vkve_data chunk by
 * chunk, and count its exact storage in bits per element.
 *
 * Spec strings:
 *   default                       the library's default (vkv_codec_spec_default)
 *   fp16                          identity (values rounded to the source dtype)
 *   minmax|quantile|lloyd[:...]   the block codec (vkv/codec.h spec syntax),
 *                                 run through vkv_encode/vkv_decode when the
 *                                 codec library is linked; "sim-" prefix (or
 *                                 no library) uses this module's simulation
 *   calibquant[:ks=0.5,vs=0.3,calib=0|1,off=3]
 *                                 CalibQuant's quantizer exactly as its code:
 *                                 per-channel min/max over the chunk's visual
 *                                 tokens multiplied by ks (keys) / vs (values),
 *                                 levels at the scaled min and max, rounding
 *                                 at their midpoint; calib=1 adds its logit
 *                                 post-scaling ([min,max] -> [min,max-off])
 *   rotsign:kmode=..,kbits=..,vmode=..,vbits=..,iters=N
 *                                 the block rule VKV_RULE_ROTSIGN (library
 *                                 only; a spec whose first key is a block key)
 *   rotsign[:kc=1,kr=1,ks=token,vc=0,vr=0,vs=rank1,seed=N]
 *                                 eval-only design: per tensor optional
 *                                 per-channel centring (c), a fixed random-sign
 *                                 Hadamard rotation of each head (r), then sign
 *                                 bits times a scale: per token (token) or a
 *                                 rank-1 product a_t * b_d (rank1)
 *   tc[:kb=K,vb=V,aw=0|1]         block rule 5 (VKV_RULE_TC) through the library:
 *                                 vkv_encode_weighted with the data's qw as the
 *                                 key weights when aw=1 (docs/BLOCK_FORMAT.md)
 *   sim-tc[:kb=1,alpha=1,maxb=3,minb=0,aw=0,vb=0]  this module's simulation of
 *                                 the same design (also used for tc specs naming
 *                                 alpha, maxb or minb, or without the library): keys
 *                                 centred per channel over the chunk, no
 *                                 rotation, kb*head_dim bits per token and head
 *                                 allocated across channels by greedy reverse
 *                                 water-filling on w_d * var_d (w_d = (E[k_d^2] /
 *                                 mean)^alpha, an attention proxy; aw=1: w_d = the
 *                                 data's qw prefill-query weights, attention-
 *                                 aware, known to the encoder), 0..maxb bits
 *                                 each (at least minb), Gaussian Lloyd-Max levels times a per-token
 *                                 scale (8-bit log code) and a least-squares
 *                                 per-channel scale (fp16); values: signs times
 *                                 a rank-1 magnitude, b_d fp16, a_t 8-bit log;
 *                                 vb > 0: values coded like keys with vb bits
 *                                 per element, unweighted (alpha 0, no aw)
 *   ref2bit                       2-bit reference: keys per-channel over the
 *                                 chunk, values per-token, uniform 4 levels
 *                                 between min and max (KIVI-style)
 */
#ifndef VKVE_CODECS_H
#define VKVE_CODECS_H

#include <stddef.h>
#include <stdint.h>

#include "eval/data.h"
#include "vkv/codec.h"

enum vkve_kind {
    VKVE_FP16 = 1,
    VKVE_BLOCK = 2,
    VKVE_CALIBQUANT = 3,
    VKVE_ROTSIGN = 4,
    VKVE_REF2BIT = 5,
    VKVE_TC = 6,
};

enum vkve_scale_mode {
    VKVE_SCALE_TOKEN = 1,
    VKVE_SCALE_RANK1 = 2,
};

typedef struct vkve_codec {
    int kind;                            /* enum vkve_kind */
    int sim;                             /* BLOCK: 1 = this module's simulation, 0 = the library */
    char text[160];                      /* the spec as given (canonical for BLOCK) */
    vkv_codec_spec spec;                 /* BLOCK */
    float ks, vs;                        /* CALIBQUANT scale factors */
    double calib;                        /* CALIBQUANT: logit offset, 0 = off */
    uint8_t center[2], rot[2], scale[2]; /* ROTSIGN, [0] keys, [1] values */
    uint64_t seed;                       /* ROTSIGN sign vector seed */
    double tc_kb, tc_alpha;              /* TC: key bits per element, weight exponent */
    uint32_t tc_maxb, tc_minb;           /* TC: most / fewest bits of one channel */
    int tc_aw;                           /* TC: weights from the data's qw (1) */
    double tc_vb;                        /* TC: value bits per element, 0 = sign rank-1 */
} vkve_codec;

/* 1 when the real block codec library is linked into this build. */
int vkve_have_codec(void);

/* Parses `text` into *c. Returns VKV_OK or VKV_ESPEC (message in err). */
int vkve_codec_parse(const char *text, vkve_codec *c, char *err, size_t errlen);

/* Quantizes and dequantizes `in` in chunks of `chunk` tokens (the block
 * unit; visual ranges are cut at chunk borders) into k_out / v_out, caller-
 * allocated arrays of in->layers pointers to the same size as in->k[l].
 * Raw tokens are copied rounded to the codec dtype (F16, or BF16 for BF16
 * sources). Reads `in` only. Returns VKV_OK or an error (message in err):
 * VKV_ERANGES (more than 8 ranges in a chunk), VKV_EGROUP / VKV_ESHAPE
 * (spec does not fit the shape), VKV_ENOMEM, or a codec error. */
int vkve_codec_apply(const vkve_codec *c, const vkve_data *in, uint32_t chunk, float **k_out,
                     float **v_out, char *err, size_t errlen);

/* Bits per element of the codec on the reference chunk: 32 layers, 8 KV
 * heads, head_dim 128, 256 tokens all visual, F16 - header, alignment and
 * all metadata included (for BLOCK from vkv_codec_encoded_size when the
 * library is linked, otherwise from the same canonical layout computed
 * here). Returns VKV_OK or VKV_ESPEC/VKV_EGROUP. */
int vkve_codec_bits(const vkve_codec *c, double *bpe);

/* Bytes the codec stores for `shape` (all tokens visual) by the canonical
 * block layout: a 256-byte header, then each section starting 64-byte
 * aligned, the total ending with the last section. Used
 * for simulated and eval-only codecs. */
int vkve_codec_layout_bytes(const vkve_codec *c, const vkv_shape *shape, uint64_t *bytes);

/* In-place orthonormal Walsh-Hadamard transform of x[0..n) (n a power of
 * two): x <- H x / sqrt(n). Its own inverse. */
void vkve_fwht(float *x, uint32_t n);

#endif
