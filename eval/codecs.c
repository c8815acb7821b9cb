/* eval/codecs.c - the compared codecs behind one interface: the driver
 * (vkv_codec_apply: raw tokens, chunks, dispatch to the codec files) and
 * the exact storage of each codec (see codecs.h; codecs_impl.h for the file
 * map). */
#include "eval/codecs.h"

#include <stdlib.h>
#include <string.h>

#include "eval/codecs_impl.h"
#include "eval/rng.h"
#include "common/errbuf.h"
#include "tensor/f16.h"
#include "tensor/safetensors.h"
#include "vkv/error.h"

/* ---- storage ------------------------------------------------------------ */

/* Rounds n up to the block section alignment. */
static uint64_t vkve_al(uint64_t n)
{
    return (n + VKV_BLOCK_ALIGN - 1) / VKV_BLOCK_ALIGN * VKV_BLOCK_ALIGN;
}

/* Bytes of one tensor's level section of a block spec (CHANNEL or TOKEN). */
static int vkve_lev_bytes(int mode, uint32_t G, const vkv_shape *s, uint64_t *out)
{
    uint64_t L = s->layers, H = s->kv_heads, D = s->head_dim;
    if (mode == VKV_GROUP_CHANNEL) {
        if (!G)
            return VKV_EGROUP;
        uint64_t ng = 0;
        for (uint32_t i = 0; i < s->n_ranges; i++)
            ng += (s->ranges[i].len + G - 1) / G;
        *out = L * ng * H * 2 * D * 2;
        return VKV_OK;
    }
    uint32_t g = G ? G : s->head_dim;
    if (D % g)
        return VKV_EGROUP;
    uint64_t nv = 0;
    for (uint32_t i = 0; i < s->n_ranges; i++)
        nv += s->ranges[i].len;
    *out = L * nv * H * (D / g) * 2 * 2;
    return VKV_OK;
}

/* See codecs.h. */
int vkve_codec_layout_bytes(const vkve_codec *c, const vkv_shape *s, uint64_t *bytes)
{
    uint64_t L = s->layers, H = s->kv_heads, D = s->head_dim, T = s->tokens;
    uint64_t elems = L * T * H * D, sec[6] = {0};
    int rc = VKV_OK;
    switch (c->kind) {
    case VKVE_FP16:
        sec[0] = sec[1] = elems * 2;
        break;
    case VKVE_BLOCK:
        sec[2] = sec[3] = elems / 8;
        rc = vkve_lev_bytes(c->spec.k_mode, c->spec.k_group, s, &sec[4]);
        if (rc == VKV_OK)
            rc = vkve_lev_bytes(c->spec.v_mode, c->spec.v_group, s, &sec[5]);
        break;
    case VKVE_CALIBQUANT:
        sec[2] = sec[3] = elems / 8;
        sec[4] = sec[5] = L * H * 2 * D * 2; /* scaled min and max per channel */
        break;
    case VKVE_REF2BIT:
        sec[2] = sec[3] = elems / 4;
        rc = vkve_lev_bytes(VKV_GROUP_CHANNEL, 256, s, &sec[4]); /* min and step */
        if (rc == VKV_OK)
            rc = vkve_lev_bytes(VKV_GROUP_TOKEN, 0, s, &sec[5]);
        break;
    case VKVE_ROTSIGN:
        sec[2] = sec[3] = elems / 8;
        for (int t = 0; t < 2; t++) {
            uint64_t m = 0;
            if (c->center[t])
                m += L * H * D * 2;
            m += L * T * H * 2; /* per-token scale a_t */
            if (c->scale[t] == VKVE_SCALE_RANK1)
                m += L * H * D * 2; /* per-channel factor b_d */
            sec[4 + t] = m;
        }
        break;
    case VKVE_TC:
        vkve_tc_sections(c, s, &sec[2]);
        break;
    default:
        return VKV_ESPEC;
    }
    if (rc != VKV_OK)
        return rc;
    /* each section starts aligned; the block ends where the last one ends */
    uint64_t pos = VKV_BLOCK_HEADER_SIZE;
    for (int i = 0; i < 6; i++)
        pos = vkve_al(pos) + sec[i];
    *bytes = pos;
    return VKV_OK;
}

/* See codecs.h. */
int vkve_codec_bits(const vkve_codec *c, double *bpe)
{
    vkv_shape s;
    memset(&s, 0, sizeof s);
    s.layers = 32;
    s.kv_heads = 8;
    s.head_dim = 128;
    s.tokens = 256;
    s.dtype = VKV_DTYPE_F16;
    s.n_ranges = 1;
    s.ranges[0].start = 0;
    s.ranges[0].len = 256;
    double elems = 2.0 * 32 * 8 * 128 * 256;
    if (c->kind == VKVE_FP16) {
        *bpe = 16.0; /* the plain fp16 cache itself, no block around it */
        return VKV_OK;
    }
    if (c->kind == VKVE_BLOCK && !c->sim) {
        size_t sz;
        int rc = vkv_codec_encoded_size(&s, &c->spec, &sz);
        if (rc != VKV_OK)
            return rc;
        *bpe = 8.0 * (double)sz / elems;
        return VKV_OK;
    }
    uint64_t b;
    int rc = vkve_codec_layout_bytes(c, &s, &b);
    if (rc != VKV_OK)
        return rc;
    *bpe = 8.0 * (double)b / elems;
    return VKV_OK;
}

/* ---- chunks ------------------------------------------------------------- */

/* Fills ck for the chunk starting at t0 (vt must hold `chunk` entries). */
static void vkve_chunk_at(const vkve_data *d, uint32_t t0, uint32_t chunk, vkve_chunk *ck)
{
    ck->t0 = t0;
    ck->n = d->tokens - t0 < chunk ? d->tokens - t0 : chunk;
    ck->nr = 0;
    ck->nv = 0;
    for (uint32_t i = 0; i < d->n_ranges; i++) {
        uint32_t a = d->ranges[i].start, b = a + d->ranges[i].len;
        if (a < t0)
            a = t0;
        if (b > t0 + ck->n)
            b = t0 + ck->n;
        if (a >= b)
            continue;
        ck->r[ck->nr].start = a - t0;
        ck->r[ck->nr].len = b - a;
        ck->nr++;
        for (uint32_t t = a; t < b; t++)
            ck->vt[ck->nv++] = t - t0;
    }
}

/* ---- driver ---------------------------------------------------------------- */

/* Checks that codec c can run on the shape of `in` in chunks of `chunk`.
 * Returns VKV_OK, VKV_EINVAL, VKV_ESHAPE or VKV_EGROUP (message in err). */
static int vkve_apply_check(const vkve_codec *c, const vkve_data *in, uint32_t chunk, char *err,
                            size_t errlen)
{
    uint32_t D = in->head_dim;
    if (chunk == 0)
        return vkv_errbuf(err, errlen, VKV_EINVAL, "chunk size must be positive");
    if (c->kind == VKVE_ROTSIGN && (D & (D - 1)))
        return vkv_errbuf(err, errlen, VKV_ESHAPE, "rotsign needs a power-of-two head_dim (got %u)",
                          D);
    if (c->kind == VKVE_BLOCK && c->spec.rule != VKV_RULE_ROTSIGN && c->spec.rule != VKV_RULE_TC &&
        ((c->spec.k_mode == VKV_GROUP_TOKEN && c->spec.k_group && D % c->spec.k_group) ||
         (c->spec.v_mode == VKV_GROUP_TOKEN && c->spec.v_group && D % c->spec.v_group)))
        return vkv_errbuf(err, errlen, VKV_EGROUP, "%s: token group does not divide head_dim %u",
                          c->text, D);
    return VKV_OK;
}

/* Frees the arrays of s (not s itself). */
static void vkve_scratch_free(vkve_scratch *s)
{
    free(s->vt), free(s->buf), free(s->scr), free(s->y), free(s->a), free(s->b), free(s->mu),
        free(s->sg), free(s->tcb);
}

/* Allocates the scratch of one apply call (sizes in codecs_impl.h) and
 * fills the rotsign sign vector from `seed`. Returns VKV_OK or VKV_ENOMEM
 * (then frees what it took). */
static int vkve_scratch_alloc(vkve_scratch *s, uint32_t chunk, uint32_t D, uint64_t seed)
{
    size_t big = (chunk > D ? chunk : D);
    s->vt = malloc(chunk * sizeof *s->vt);
    s->buf = malloc(big * sizeof(float)), s->scr = malloc(big * sizeof(float));
    s->y = malloc((size_t)chunk * D * sizeof(float)), s->a = malloc(chunk * sizeof(float));
    s->b = malloc(D * sizeof(float)), s->mu = malloc(D * sizeof(float)),
    s->sg = malloc(D * sizeof(float));
    s->tcb = malloc(D);
    if (!s->vt || !s->buf || !s->scr || !s->y || !s->a || !s->b || !s->mu || !s->sg || !s->tcb) {
        vkve_scratch_free(s);
        return VKV_ENOMEM;
    }
    vkve_rng rng;
    vkve_rng_seed(&rng, seed);
    for (uint32_t d = 0; d < D; d++)
        s->sg[d] = (vkve_rng_u64(&rng) >> 63) ? -1.0f : 1.0f;
    return VKV_OK;
}

/* Runs a reference codec (everything but the library's block codec) on
 * chunk ck of every layer, in place in k_out / v_out. */
static void vkve_ref_chunk(const vkve_codec *c, const vkve_data *in, const vkve_chunk *ck,
                           int dtype, float **k_out, float **v_out, vkve_scratch *s)
{
    uint32_t H = in->kv_heads, D = in->head_dim;
    size_t row = (size_t)H * D;
    for (uint32_t l = 0; l < in->layers; l++) {
        /* the sources are the dtype-rounded copies already in k_out/v_out */
        float *ks = k_out[l] + ck->t0 * row, *vs = v_out[l] + ck->t0 * row;
        if (c->kind == VKVE_TC)
            vkve_tc_layer(c, ks, vs, c->tc_aw && in->qw ? in->qw[l] : NULL, ck, H, D, dtype, s);
        else
            vkve_ref_layer(c, ks, vs, ck, H, D, dtype, s);
    }
}

/* See codecs.h. */
int vkve_codec_apply(const vkve_codec *c, const vkve_data *in, uint32_t chunk, float **k_out,
                     float **v_out, char *err, size_t errlen)
{
    uint32_t T = in->tokens;
    int dtype = in->dtype == VKVTN_ST_BF16 ? VKV_DTYPE_BF16 : VKV_DTYPE_F16;
    size_t row = (size_t)in->kv_heads * in->head_dim;
    int rc = vkve_apply_check(c, in, chunk, err, errlen);
    if (rc != VKV_OK)
        return rc;
    /* raw tokens (and the starting point of every codec): the source rounded
     * to the codec dtype */
    for (uint32_t l = 0; l < in->layers; l++)
        for (size_t i = 0; i < (size_t)T * row; i++) {
            k_out[l][i] = vkvtn_round_dtype(in->k[l][i], dtype);
            v_out[l][i] = vkvtn_round_dtype(in->v[l][i], dtype);
        }
    if (c->kind == VKVE_FP16)
        return VKV_OK;
    vkve_scratch s;
    if (vkve_scratch_alloc(&s, chunk, in->head_dim, c->seed) != VKV_OK)
        return vkv_errbuf(err, errlen, VKV_ENOMEM, "out of memory");
    for (uint32_t t0 = 0; t0 < T && rc == VKV_OK; t0 += chunk) {
        vkve_chunk ck;
        ck.vt = s.vt;
        vkve_chunk_at(in, t0, chunk, &ck);
        if (ck.nv == 0)
            continue;
        if (c->kind == VKVE_BLOCK && !c->sim)
            rc = vkve_block_chunk(c, in, &ck, dtype, k_out, v_out, err, errlen);
        else
            vkve_ref_chunk(c, in, &ck, dtype, k_out, v_out, &s);
    }
    vkve_scratch_free(&s);
    return rc;
}
