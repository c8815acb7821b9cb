/* eval/codecs_lib.c - the codecs run through the block codec library
 * (vkv/codec.h): encode and decode a chunk, as a worker would (see
 * codecs.h; codecs_impl.h for the file map). */
#include <stdlib.h>
#include <string.h>

#include "eval/codecs_impl.h"
#include "common/errbuf.h"
#include "tensor/f16.h"
#include "vkv/error.h"

/* See codecs.h. */
int vkve_have_codec(void)
{
    return 1;
}

/* Fills *sh with the block shape of chunk ck of `in`. Returns VKV_OK or
 * VKV_ERANGES (more visual ranges than a block holds; message in err). */
static int vkve_chunk_shape(const vkve_data *in, const vkve_chunk *ck, int dtype, vkv_shape *sh,
                            char *err, size_t errlen)
{
    memset(sh, 0, sizeof *sh);
    sh->layers = in->layers;
    sh->kv_heads = in->kv_heads;
    sh->head_dim = in->head_dim;
    sh->tokens = ck->n;
    sh->dtype = (uint8_t)dtype;
    if (ck->nr > VKV_BLOCK_MAX_RANGES)
        return vkv_errbuf(err, errlen, VKV_ERANGES,
                          "chunk at token %u has %u visual ranges (max %u)", ck->t0, ck->nr,
                          VKV_BLOCK_MAX_RANGES);
    sh->n_ranges = ck->nr;
    memcpy(sh->ranges, ck->r, ck->nr * sizeof ck->r[0]);
    return VKV_OK;
}

/* Converts chunk ck of every layer of `in` to dtype halves in buf (4 * n
 * per layer, n = the chunk's elements: keys, values, decoded keys, decoded
 * values) and points sp (sources) and dp (decode targets) at them: [l] keys,
 * [L + l] values. */
static void vkve_to_half(const vkve_data *in, const vkve_chunk *ck, int dtype, uint16_t *buf,
                         const void **sp, void **dp)
{
    uint32_t L = in->layers;
    size_t row = (size_t)in->kv_heads * in->head_dim, n = (size_t)ck->n * row;
    for (uint32_t l = 0; l < L; l++) {
        uint16_t *ks = buf + (4 * (size_t)l) * n, *vs = ks + n;
        const float *kf = in->k[l] + ck->t0 * row, *vf = in->v[l] + ck->t0 * row;
        for (size_t i = 0; i < n; i++) {
            ks[i] = dtype == VKV_DTYPE_BF16 ? vkvtn_f32_to_bf16(kf[i]) : vkvtn_f32_to_f16(kf[i]);
            vs[i] = dtype == VKV_DTYPE_BF16 ? vkvtn_f32_to_bf16(vf[i]) : vkvtn_f32_to_f16(vf[i]);
        }
        sp[l] = ks;
        sp[L + l] = vs;
        dp[l] = vs + n;
        dp[L + l] = vs + 2 * n;
    }
}

/* Writes the decoded halves dp (as vkve_to_half set them) of chunk ck back
 * as floats into ko / vo (the whole-data arrays of L layers). */
static void vkve_from_half(void *const *dp, uint32_t L, size_t row, const vkve_chunk *ck, int dtype,
                           float **ko, float **vo)
{
    size_t n = (size_t)ck->n * row;
    for (uint32_t l = 0; l < L; l++) {
        const uint16_t *kd = dp[l], *vd = dp[L + l];
        float *kf = ko[l] + ck->t0 * row, *vf = vo[l] + ck->t0 * row;
        for (size_t i = 0; i < n; i++) {
            kf[i] = dtype == VKV_DTYPE_BF16 ? vkvtn_bf16_to_f32(kd[i]) : vkvtn_f16_to_f32(kd[i]);
            vf[i] = dtype == VKV_DTYPE_BF16 ? vkvtn_bf16_to_f32(vd[i]) : vkvtn_f16_to_f32(vd[i]);
        }
    }
}

/* See codecs_impl.h. */
int vkve_block_chunk(const vkve_codec *c, const vkve_data *in, const vkve_chunk *ck, int dtype,
                     float **ko, float **vo, char *err, size_t errlen)
{
    uint32_t L = in->layers, D = in->head_dim;
    size_t row = (size_t)in->kv_heads * D, n = (size_t)ck->n * row;
    vkv_shape sh;
    int rc = vkve_chunk_shape(in, ck, dtype, &sh, err, errlen);
    if (rc != VKV_OK)
        return rc;
    size_t bsz = 0;
    rc = vkv_codec_encoded_size(&sh, &c->spec, &bsz);
    if (rc != VKV_OK)
        return vkv_errbuf(err, errlen, rc, "%s: %s", c->text, vkv_strerror(rc));
    uint16_t *buf = malloc(4 * (size_t)L * n * sizeof(uint16_t) + 1);
    const void **sp = malloc(2 * (size_t)L * sizeof(void *) + 1);
    void **dp = malloc(2 * (size_t)L * sizeof(void *) + 1);
    void *blk = malloc(bsz);
    if (!buf || !sp || !dp || !blk) {
        rc = vkv_errbuf(err, errlen, VKV_ENOMEM, "out of memory");
        goto out;
    }
    vkve_to_half(in, ck, dtype, buf, sp, dp);
    vkv_kv_src src = {.k = sp, .v = sp + L, .token_stride = row, .head_stride = D};
    vkv_kv_dst dst = {
        .k = dp, .v = dp + L, .token_stride = row, .head_stride = D, .geom = vkv_geometry_of(&sh)};
    /* tc aw=1: the dump's prefill-query channel weights steer the keys */
    const float *const *kw = c->tc_aw && in->qw ? (const float *const *)in->qw : NULL;
    rc = vkv_encode_weighted(&sh, &c->spec, &src, kw, blk, bsz);
    if (rc == VKV_OK)
        rc = vkv_decode(blk, bsz, VKV_DECODE_VERIFY, &dst);
    if (rc != VKV_OK) {
        rc = vkv_errbuf(err, errlen, rc, "%s: block codec failed: %s", c->text, vkv_strerror(rc));
        goto out;
    }
    vkve_from_half(dp, L, row, ck, dtype, ko, vo);
out:
    free(buf);
    free(sp);
    free(dp);
    free(blk);
    return rc;
}
