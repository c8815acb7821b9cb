/*
 * eval/codecs_impl.h - internals shared by the codec files of eval/ (not
 * used outside them; the interface is codecs.h):
 *   codecs.c       the driver (vkve_codec_apply), storage sizes, chunking
 *   codecs_spec.c  spec strings -> vkve_codec (vkve_codec_parse)
 *   codecs_ref.c   the reference quantizers run here: simulated block rules,
 *                  CalibQuant, the 2-bit reference, rotsign
 *   codecs_tc.c    sim-tc, this module's transform coder with bit allocation
 *   codecs_lib.c   the block codec library (vkv_encode_weighted/vkv_decode)
 */
#ifndef VKVE_CODECS_IMPL_H
#define VKVE_CODECS_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "eval/codecs.h"
#include "eval/data.h"

/* One chunk of the data: the block unit the codecs work on. */
typedef struct vkve_chunk {
    uint32_t t0, n; /* tokens [t0, t0 + n) of the data */
    uint32_t nr;
    vkv_block_range r[VKVE_MAX_RANGES]; /* visual ranges, chunk-relative */
    uint32_t nv;
    uint32_t *vt; /* visual tokens, chunk-relative, owned by the caller */
} vkve_chunk;

/* Scratch space of the reference codecs for one vkve_codec_apply call,
 * owned by the driver: `chunk` is the chunk size in tokens, D the head_dim,
 * big = max(chunk, D). */
typedef struct vkve_scratch {
    uint32_t *vt;       /* chunk: the chunk's visual tokens (vkve_chunk.vt) */
    float *buf, *scr;   /* big each */
    float *y;           /* chunk * D */
    float *a;           /* chunk */
    float *b, *mu, *sg; /* D each; sg: the rotsign sign vector */
    uint8_t *tcb;       /* D: tc bits per channel */
} vkve_scratch;

/* Quantizes and dequantizes layer tensors ks and vs of chunk ck in place
 * (both point at the chunk's first token, row stride H*D, already rounded
 * to dtype) with a reference codec: a simulated block rule (BLOCK with
 * sim), CALIBQUANT, REF2BIT or ROTSIGN. `s` is the driver's scratch. */
void vkve_ref_layer(const vkve_codec *c, float *ks, float *vs, const vkve_chunk *ck, uint32_t H,
                    uint32_t D, int dtype, vkve_scratch *s);

/* The same for TC (sim-tc): qw is the layer's prefill-query weights
 * ([kv_heads][head_dim]) or NULL. */
void vkve_tc_layer(const vkve_codec *c, float *ks, float *vs, const float *qw, const vkve_chunk *ck,
                   uint32_t H, uint32_t D, int dtype, vkve_scratch *s);

/* Sizes of TC's four coded sections for shape s (all tokens visual): sec[0]
 * key codes, sec[1] value codes, sec[2] key metadata, sec[3] value metadata,
 * in bytes. */
void vkve_tc_sections(const vkve_codec *c, const vkv_shape *s, uint64_t sec[4]);

/* Encodes and decodes chunk ck of `in` with the block codec library
 * (c->spec, tc aw=1 with the data's qw) and writes the decoded floats of all
 * the chunk's tokens into ko/vo (the whole-data arrays). Returns VKV_OK or
 * VKV_ERANGES, VKV_ENOMEM or the codec's error (message in err). */
int vkve_block_chunk(const vkve_codec *c, const vkve_data *in, const vkve_chunk *ck, int dtype,
                     float **ko, float **vo, char *err, size_t errlen);

#endif
