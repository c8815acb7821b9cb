/*
 * eval/synth.h - synthetic visual KV caches with named profiles and seeds.
 *
 * Each profile is a small multimodal prompt: a system prompt whose first
 * token is an attention sink, one or more image tiles of visual tokens, text
 * after the image, and decode-time queries placed after the text. System and
 * text tokens are raw (kept in full precision by the codec); only the tiles
 * are visual ranges. What is modelled (docs/FIDELITY.md lists the numbers):
 *  - keys: latent patch features projected per layer and head, scaled per
 *    RoPE channel pair by a log-normal factor, with per-channel offsets and a
 *    few "massive" channel pairs in the lowest RoPE frequencies, present in
 *    keys and queries and not in values; RoPE applied at the token position;
 *  - visual features: a smooth random field over each tile's patch grid
 *    (bilinear from a 4x coarser grid) plus per-patch noise: spatially
 *    correlated neighbours, as image patches are;
 *  - values: no channel outliers; log-normal per-token magnitudes and a
 *    fraction of high-norm tokens;
 *  - queries: aimed at a random image patch (its latent feature plus noise),
 *    own channel scales and the same massive pairs, RoPE at their decode
 *    positions; scaled so the visual logits have a given spread, and the
 *    sink key is set so that it draws a given logit margin.
 *  - qw (encoder-side channel weights): the mean square of 32 unit-normalised
 *    prefill queries per query head, drawn like the scored queries but from
 *    an independent random stream, at random image tokens' positions;
 *  - rope_base <= 0: no RoPE (ViT-style profiles).
 * Everything is rounded to fp16 and identical for a given (profile, seed).
 */
#ifndef VKVE_SYNTH_H
#define VKVE_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "eval/data.h"

typedef struct vkve_profile {
    const char *name;
    const char *about;
    uint32_t layers, kv_heads, gqa, head_dim;
    uint32_t sys_tokens, text_tokens;
    uint32_t tiles, grid_h, grid_w, tile_sep; /* tile_sep raw tokens between tiles */
    double rope_base;
    uint32_t n_massive; /* massive RoPE channel pairs (lowest frequencies) */
    double massive_mag; /* their magnitude, in units of a typical channel */
    double ch_sigma;    /* log-normal sigma of per-pair key/query scales */
    double ch_bias;     /* per-channel key offset, in units of its scale */
    double spatial;     /* share of the smooth field in patch features (0..1) */
    uint32_t latent;    /* latent feature dimension */
    double v_tok_sigma; /* log-normal sigma of per-token value magnitude */
    double v_hi_frac;   /* fraction of high-norm visual value tokens */
    double v_hi_mult;   /* their magnitude multiplier */
    double logit_std;   /* spread of visual logits seen by a query */
    double sink_logit;  /* sink logit minus the mean visual logit */
    uint32_t n_queries;
    uint64_t seed; /* default seed */
} vkve_profile;

/* The built-in profiles (static table) and their count. */
const vkve_profile *vkve_profiles(size_t *n);

/* The profile called `name`, or NULL. */
const vkve_profile *vkve_profile_find(const char *name);

/* Generates profile p with `seed` into *d (allocates; free with
 * vkve_data_free). Returns VKV_OK, VKV_ENOMEM or VKV_EINVAL (bad profile). */
int vkve_synth(const vkve_profile *p, uint64_t seed, vkve_data *d);

#endif
