/* eval/synth.c - synthetic visual KV profiles (see synth.h). */
#include "eval/synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/rng.h"
#include "tensor/f16.h"
#include "tensor/safetensors.h"
#include "vkv/error.h"

/* The built-in profiles (fields described in synth.h); vkve_synth builds
 * each from these parameters alone. */
static const vkve_profile vkve_profile_table[] = {
    {.name = "llava-like",
     .about = "LLaVA-1.5-style: MHA, one 24x24 image, RoPE 1e4",
     .layers = 4,
     .kv_heads = 4,
     .gqa = 1,
     .head_dim = 128,
     .sys_tokens = 35,
     .text_tokens = 40,
     .tiles = 1,
     .grid_h = 24,
     .grid_w = 24,
     .tile_sep = 0,
     .rope_base = 1e4,
     .n_massive = 2,
     .massive_mag = 12.0,
     .ch_sigma = 0.5,
     .ch_bias = 0.5,
     .spatial = 0.8,
     .latent = 32,
     .v_tok_sigma = 0.35,
     .v_hi_frac = 0.01,
     .v_hi_mult = 5.0,
     .logit_std = 2.0,
     .sink_logit = 6.0,
     .n_queries = 8,
     .seed = 1},
    {.name = "qwen-like",
     .about = "Qwen2-VL-style: GQA 7, dynamic 18x26 image, RoPE 1e6",
     .layers = 4,
     .kv_heads = 2,
     .gqa = 7,
     .head_dim = 128,
     .sys_tokens = 20,
     .text_tokens = 30,
     .tiles = 1,
     .grid_h = 18,
     .grid_w = 26,
     .tile_sep = 0,
     .rope_base = 1e6,
     .n_massive = 3,
     .massive_mag = 20.0,
     .ch_sigma = 0.7,
     .ch_bias = 0.8,
     .spatial = 0.8,
     .latent = 32,
     .v_tok_sigma = 0.4,
     .v_hi_frac = 0.01,
     .v_hi_mult = 6.0,
     .logit_std = 2.5,
     .sink_logit = 8.0,
     .n_queries = 8,
     .seed = 2},
    {.name = "internvl-like",
     .about = "InternVL2.5-style: GQA 4, three 16x16 tiles, RoPE 1e6",
     .layers = 4,
     .kv_heads = 4,
     .gqa = 4,
     .head_dim = 128,
     .sys_tokens = 40,
     .text_tokens = 30,
     .tiles = 3,
     .grid_h = 16,
     .grid_w = 16,
     .tile_sep = 1,
     .rope_base = 1e6,
     .n_massive = 2,
     .massive_mag = 15.0,
     .ch_sigma = 0.6,
     .ch_bias = 0.6,
     .spatial = 0.75,
     .latent = 32,
     .v_tok_sigma = 0.4,
     .v_hi_frac = 0.01,
     .v_hi_mult = 6.0,
     .logit_std = 2.2,
     .sink_logit = 7.0,
     .n_queries = 8,
     .seed = 3},
    {.name = "outlier-heavy",
     .about = "harsh: 4 massive pairs x40, wide scales, 3% x12 value tokens",
     .layers = 4,
     .kv_heads = 4,
     .gqa = 2,
     .head_dim = 128,
     .sys_tokens = 16,
     .text_tokens = 16,
     .tiles = 1,
     .grid_h = 24,
     .grid_w = 24,
     .tile_sep = 0,
     .rope_base = 1e4,
     .n_massive = 4,
     .massive_mag = 40.0,
     .ch_sigma = 1.0,
     .ch_bias = 1.0,
     .spatial = 0.6,
     .latent = 32,
     .v_tok_sigma = 0.7,
     .v_hi_frac = 0.03,
     .v_hi_mult = 12.0,
     .logit_std = 3.5,
     .sink_logit = 9.0,
     .n_queries = 8,
     .seed = 4},
    /* profiles without planted massive channels (issue 16) */
    {.name = "vit-like",
     .about = "ViT self-attention: no RoPE, no massive channels, head_dim 64, 16x16",
     .layers = 4,
     .kv_heads = 6,
     .gqa = 1,
     .head_dim = 64,
     .sys_tokens = 1,
     .text_tokens = 1,
     .tiles = 1,
     .grid_h = 16,
     .grid_w = 16,
     .tile_sep = 0,
     .rope_base = 0.0,
     .n_massive = 0,
     .massive_mag = 0.0,
     .ch_sigma = 0.35,
     .ch_bias = 0.63,
     .spatial = 0.8,
     .latent = 32,
     .v_tok_sigma = 0.3,
     .v_hi_frac = 0.0,
     .v_hi_mult = 1.0,
     .logit_std = 2.0,
     .sink_logit = 2.0,
     .n_queries = 8,
     .seed = 6},
    {.name = "mild-spread",
     .about = "no massive channels, mild channel spread (sigma 0.2), RoPE 1e4",
     .layers = 4,
     .kv_heads = 4,
     .gqa = 2,
     .head_dim = 128,
     .sys_tokens = 24,
     .text_tokens = 24,
     .tiles = 1,
     .grid_h = 24,
     .grid_w = 24,
     .tile_sep = 0,
     .rope_base = 1e4,
     .n_massive = 0,
     .massive_mag = 0.0,
     .ch_sigma = 0.2,
     .ch_bias = 0.3,
     .spatial = 0.8,
     .latent = 32,
     .v_tok_sigma = 0.35,
     .v_hi_frac = 0.01,
     .v_hi_mult = 5.0,
     .logit_std = 2.0,
     .sink_logit = 6.0,
     .n_queries = 8,
     .seed = 7},
    {.name = "heavy-spread",
     .about = "no massive channels, heavy channel spread (sigma 1.0), RoPE 1e6",
     .layers = 4,
     .kv_heads = 4,
     .gqa = 4,
     .head_dim = 128,
     .sys_tokens = 24,
     .text_tokens = 24,
     .tiles = 1,
     .grid_h = 24,
     .grid_w = 24,
     .tile_sep = 0,
     .rope_base = 1e6,
     .n_massive = 0,
     .massive_mag = 0.0,
     .ch_sigma = 1.0,
     .ch_bias = 1.0,
     .spatial = 0.7,
     .latent = 32,
     .v_tok_sigma = 0.5,
     .v_hi_frac = 0.02,
     .v_hi_mult = 8.0,
     .logit_std = 3.0,
     .sink_logit = 8.0,
     .n_queries = 8,
     .seed = 8},
    {.name = "hd64-rope1e5",
     .about = "SmolLM2-shaped: head_dim 64, GQA 3, RoPE 1e5, no massive channels",
     .layers = 4,
     .kv_heads = 3,
     .gqa = 3,
     .head_dim = 64,
     .sys_tokens = 16,
     .text_tokens = 16,
     .tiles = 1,
     .grid_h = 20,
     .grid_w = 20,
     .tile_sep = 0,
     .rope_base = 1e5,
     .n_massive = 0,
     .massive_mag = 0.0,
     .ch_sigma = 0.5,
     .ch_bias = 0.5,
     .spatial = 0.75,
     .latent = 32,
     .v_tok_sigma = 0.4,
     .v_hi_frac = 0.01,
     .v_hi_mult = 6.0,
     .logit_std = 2.2,
     .sink_logit = 6.0,
     .n_queries = 8,
     .seed = 9},
    {.name = "hd96-rope5e5",
     .about = "head_dim 96, RoPE 5e5, one mild massive pair x8",
     .layers = 4,
     .kv_heads = 4,
     .gqa = 2,
     .head_dim = 96,
     .sys_tokens = 20,
     .text_tokens = 20,
     .tiles = 1,
     .grid_h = 20,
     .grid_w = 20,
     .tile_sep = 0,
     .rope_base = 5e5,
     .n_massive = 1,
     .massive_mag = 8.0,
     .ch_sigma = 0.5,
     .ch_bias = 0.5,
     .spatial = 0.75,
     .latent = 32,
     .v_tok_sigma = 0.4,
     .v_hi_frac = 0.01,
     .v_hi_mult = 6.0,
     .logit_std = 2.2,
     .sink_logit = 6.0,
     .n_queries = 8,
     .seed = 10},
    {.name = "tiny",
     .about = "test-sized: 2 layers, head_dim 32, two 6x6 tiles",
     .layers = 2,
     .kv_heads = 2,
     .gqa = 2,
     .head_dim = 32,
     .sys_tokens = 4,
     .text_tokens = 4,
     .tiles = 2,
     .grid_h = 6,
     .grid_w = 6,
     .tile_sep = 1,
     .rope_base = 1e4,
     .n_massive = 1,
     .massive_mag = 10.0,
     .ch_sigma = 0.5,
     .ch_bias = 0.5,
     .spatial = 0.8,
     .latent = 8,
     .v_tok_sigma = 0.35,
     .v_hi_frac = 0.05,
     .v_hi_mult = 5.0,
     .logit_std = 2.0,
     .sink_logit = 5.0,
     .n_queries = 3,
     .seed = 5},
};

/* See synth.h. */
const vkve_profile *vkve_profiles(size_t *n)
{
    *n = sizeof vkve_profile_table / sizeof vkve_profile_table[0];
    return vkve_profile_table;
}

/* See synth.h. */
const vkve_profile *vkve_profile_find(const char *name)
{
    size_t n;
    const vkve_profile *p = vkve_profiles(&n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(p[i].name, name) == 0)
            return &p[i];
    return NULL;
}

/* Rotates one vector x (head_dim D) in place by RoPE at position pos with
 * the rotate-half pairing (i, i + D/2) and frequency base^(-2i/D). */
static void vkve_rope(float *x, uint32_t D, double pos, double base)
{
    if (base <= 0)
        return; /* a profile without RoPE (ViT) */
    uint32_t h = D / 2;
    for (uint32_t i = 0; i < h; i++) {
        double th = pos * pow(base, -2.0 * i / D);
        double c = cos(th), s = sin(th);
        double a = x[i], b = x[i + h];
        x[i] = (float)(a * c - b * s);
        x[i + h] = (float)(b * c + a * s);
    }
}

/* Prefill queries per query head behind the qw weights. */
#define VKVE_QW_QUERIES 32u

/* Token index of the k-th visual token of d (k < vkve_n_visual(d)). */
static uint32_t vkve_visual_at(const vkve_data *d, uint32_t k)
{
    for (uint32_t r = 0; r < d->n_ranges; r++) {
        if (k < d->ranges[r].len)
            return d->ranges[r].start + k;
        k -= d->ranges[r].len;
    }
    return d->ranges[d->n_ranges - 1].start;
}

/* Index of the m-th massive pair's first channel: the lowest frequencies,
 * spaced 3 apart (D/2-1, D/2-4, ...). */
static uint32_t vkve_massive_pair(uint32_t D, uint32_t m)
{
    return D / 2 - 1 - 3 * m;
}

/* The working state of one vkve_synth run: the profile, the data being
 * filled, the two random streams and the scratch arrays (owned here, freed
 * by vkve_synth_ctx_free). Per (layer, KV head): W the projection, sig/qs
 * the key/query channel scales, vsig the value channel scales, bias
 * the key offsets, mass the massive channels, lg the mean visual logit of
 * each query. */
typedef struct vkve_synth_ctx {
    const vkve_profile *p;
    vkve_data *d;
    vkve_rng rng, rng_w; /* rng_w: the prefill queries behind qw */
    uint32_t D, H, R, NQ, T, nvis;
    uint32_t ch, cw;                      /* coarse grid of the smooth field */
    float *f;                             /* [T][R] latent features */
    float *coarse;                        /* [ch][cw][R] */
    float *W;                             /* [D][R] */
    float *sig, *vsig, *bias, *qs, *mass; /* [D] each */
    double *lg;                           /* [NQ * gqa] */
    uint32_t *focus;                      /* [NQ][n_heads] focus token of each query */
} vkve_synth_ctx;

/* Checks profile p and sets the shape, ranges and name of *d (zeroed
 * first). Returns VKV_OK or VKV_EINVAL. */
static int vkve_synth_shape(const vkve_profile *p, vkve_data *d)
{
    memset(d, 0, sizeof *d);
    uint32_t D = p->head_dim, tile_n = p->grid_h * p->grid_w;
    if (!p->tiles || !tile_n || D < 8 || D % 8 || p->tiles > VKVE_MAX_RANGES ||
        3 * p->n_massive > D / 2 || !p->latent || !p->n_queries)
        return VKV_EINVAL;
    d->layers = p->layers;
    d->kv_heads = p->kv_heads;
    d->head_dim = D;
    d->n_heads = p->kv_heads * p->gqa;
    d->n_queries = p->n_queries;
    d->dtype = VKVTN_ST_F16;
    d->tokens = p->sys_tokens + p->tiles * tile_n + (p->tiles - 1) * p->tile_sep + p->text_tokens;
    d->n_ranges = p->tiles;
    for (uint32_t i = 0; i < p->tiles; i++) {
        d->ranges[i].start = p->sys_tokens + i * (tile_n + p->tile_sep);
        d->ranges[i].len = tile_n;
    }
    snprintf(d->name, sizeof d->name, "%s", p->name);
    return VKV_OK;
}

/* Frees the scratch arrays of x. */
static void vkve_synth_ctx_free(vkve_synth_ctx *x)
{
    free(x->f), free(x->coarse), free(x->W), free(x->sig), free(x->vsig), free(x->bias),
        free(x->qs), free(x->mass), free(x->lg), free(x->focus);
}

/* Sets up x for profile p and seed on the shaped data d: sizes, random
 * streams, scratch. Returns VKV_OK or VKV_ENOMEM (then frees what it took). */
static int vkve_synth_ctx_init(vkve_synth_ctx *x, const vkve_profile *p, uint64_t seed,
                               vkve_data *d)
{
    memset(x, 0, sizeof *x);
    x->p = p;
    x->d = d;
    x->D = p->head_dim, x->H = p->kv_heads, x->R = p->latent, x->NQ = p->n_queries;
    x->T = d->tokens;
    x->nvis = vkve_n_visual(d);
    vkve_rng_seed(&x->rng, seed * 0x9E3779B97F4A7C15ull + 17);
    vkve_rng_seed(&x->rng_w, seed * 0xD1B54A32D192ED03ull + 29); /* prefill queries (qw) */
    x->f = malloc((size_t)x->T * x->R * sizeof(float));
    x->ch = p->grid_h / 4 + 2, x->cw = p->grid_w / 4 + 2;
    x->coarse = malloc((size_t)x->ch * x->cw * x->R * sizeof(float));
    x->W = malloc((size_t)x->D * x->R * sizeof(float));
    x->sig = malloc(x->D * sizeof(float)), x->bias = malloc(x->D * sizeof(float));
    x->vsig = malloc(x->D * sizeof(float));
    x->qs = malloc(x->D * sizeof(float)), x->mass = malloc(x->D * sizeof(float));
    x->lg = malloc(((size_t)x->T + (size_t)x->NQ * p->gqa) * sizeof(double));
    x->focus = malloc((size_t)x->NQ * d->n_heads * sizeof(uint32_t));
    if (!x->f || !x->coarse || !x->W || !x->sig || !x->vsig || !x->bias || !x->qs || !x->mass ||
        !x->lg || !x->focus) {
        vkve_synth_ctx_free(x);
        return VKV_ENOMEM;
    }
    return VKV_OK;
}

/* Mixes the smooth random field of tile ti (bilinear from the coarse grid)
 * into the tile's latent features. */
static void vkve_synth_tile(vkve_synth_ctx *x, uint32_t ti)
{
    const vkve_profile *p = x->p;
    uint32_t R = x->R, cw = x->cw;
    const float *coarse = x->coarse;
    for (size_t i = 0; i < (size_t)x->ch * cw * R; i++)
        x->coarse[i] = (float)vkve_rng_norm(&x->rng);
    double a = p->spatial, bnoise = sqrt(1.0 - a * a);
    for (uint32_t y = 0; y < p->grid_h; y++)
        for (uint32_t xx = 0; xx < p->grid_w; xx++) {
            double fy = y / 4.0, fx = xx / 4.0;
            uint32_t y0 = (uint32_t)fy, x0 = (uint32_t)fx;
            double wy = fy - y0, wx = fx - x0;
            float *o = x->f + (size_t)(x->d->ranges[ti].start + y * p->grid_w + xx) * R;
            for (uint32_t r = 0; r < R; r++) {
                double v = (1 - wy) * (1 - wx) * coarse[((size_t)y0 * cw + x0) * R + r] +
                           (1 - wy) * wx * coarse[((size_t)y0 * cw + x0 + 1) * R + r] +
                           wy * (1 - wx) * coarse[((size_t)(y0 + 1) * cw + x0) * R + r] +
                           wy * wx * coarse[((size_t)(y0 + 1) * cw + x0 + 1) * R + r];
                o[r] = (float)(a * v * 1.6 + bnoise * o[r]); /* 1.6: undo interpolation shrink */
            }
        }
}

/* The latent features shared by all layers (the same image and prompt),
 * then the decode-time query focus: a random visual token per (query,
 * head). */
static void vkve_synth_features(vkve_synth_ctx *x)
{
    vkve_data *d = x->d;
    for (uint32_t t = 0; t < x->T; t++)
        for (uint32_t r = 0; r < x->R; r++)
            x->f[(size_t)t * x->R + r] = (float)vkve_rng_norm(&x->rng);
    for (uint32_t ti = 0; ti < x->p->tiles; ti++)
        vkve_synth_tile(x, ti);
    for (uint32_t i = 0; i < x->NQ * d->n_heads; i++) {
        uint32_t k = (uint32_t)(vkve_rng_unif(&x->rng) * x->nvis), t = 0;
        for (uint32_t r = 0; r < d->n_ranges; r++) {
            if (k < d->ranges[r].len) {
                t = d->ranges[r].start + k;
                break;
            }
            k -= d->ranges[r].len;
        }
        x->focus[i] = t;
    }
}

/* Draws the key model of (layer l, KV head h) - projection, channel scales,
 * offsets, massive pairs - and writes every token's key, RoPE applied. */
static void vkve_synth_keys(vkve_synth_ctx *x, uint32_t l, uint32_t h)
{
    const vkve_profile *p = x->p;
    uint32_t D = x->D, R = x->R;
    double invr = 1.0 / sqrt((double)R);
    for (size_t i = 0; i < (size_t)D * R; i++)
        x->W[i] = (float)(vkve_rng_norm(&x->rng) * invr);
    for (uint32_t i = 0; i < D / 2; i++) {
        double s = exp(p->ch_sigma * vkve_rng_norm(&x->rng));
        double sq = sqrt(s) * exp(0.5 * p->ch_sigma * vkve_rng_norm(&x->rng));
        x->sig[i] = x->sig[i + D / 2] = (float)s;
        x->qs[i] = x->qs[i + D / 2] = (float)sq;
    }
    for (uint32_t i = 0; i < D; i++) {
        x->bias[i] = (float)(p->ch_bias * x->sig[i] * vkve_rng_norm(&x->rng));
        x->mass[i] = 0;
    }
    for (uint32_t m = 0; m < p->n_massive; m++) {
        uint32_t i = vkve_massive_pair(D, m);
        double sgn = vkve_rng_unif(&x->rng) < 0.5 ? -1.0 : 1.0;
        x->mass[i] = (float)(sgn * p->massive_mag);
        x->mass[i + D / 2] = (float)(0.4 * p->massive_mag * vkve_rng_norm(&x->rng));
    }
    for (uint32_t t = 0; t < x->T; t++) {
        float *k = x->d->k[l] + ((size_t)t * x->H + h) * D;
        const float *ft = x->f + (size_t)t * R;
        for (uint32_t i = 0; i < D; i++) {
            double u = 0;
            for (uint32_t r = 0; r < R; r++)
                u += x->W[(size_t)i * R + r] * ft[r];
            if (x->mass[i] != 0)
                k[i] = (float)(x->mass[i] * (1.0 + 0.05 * vkve_rng_norm(&x->rng)) + 0.5 * u);
            else
                k[i] = (float)(x->sig[i] * u + x->bias[i]);
        }
        vkve_rope(k, D, t, p->rope_base);
    }
}

/* Values of (layer l, KV head h): their own projection and channel scales
 * (vsig), per-token magnitudes, a fraction of high-norm visual
 * tokens, a weak sink. */
static void vkve_synth_values(vkve_synth_ctx *x, uint32_t l, uint32_t h)
{
    const vkve_profile *p = x->p;
    uint32_t D = x->D, R = x->R;
    double invr = 1.0 / sqrt((double)R);
    for (size_t i = 0; i < (size_t)D * R; i++)
        x->W[i] = (float)(vkve_rng_norm(&x->rng) * invr);
    for (uint32_t i = 0; i < D; i++)
        x->vsig[i] = (float)exp(0.2 * vkve_rng_norm(&x->rng));
    for (uint32_t t = 0; t < x->T; t++) {
        float *v = x->d->v[l] + ((size_t)t * x->H + h) * D;
        const float *ft = x->f + (size_t)t * R;
        double mag = exp(p->v_tok_sigma * vkve_rng_norm(&x->rng));
        if (vkve_is_visual(x->d, t) && vkve_rng_unif(&x->rng) < p->v_hi_frac)
            mag *= p->v_hi_mult;
        if (t == 0)
            mag = 0.2; /* the sink carries little value */
        for (uint32_t i = 0; i < D; i++) {
            double u = 0;
            for (uint32_t r = 0; r < R; r++)
                u += x->W[(size_t)i * R + r] * ft[r];
            v[i] = (float)(mag * (x->vsig[i] * u + 0.3 * vkve_rng_norm(&x->rng)));
        }
    }
}

/* A query of (layer l, KV head h) aimed at token ft_t, before RoPE: the
 * focus key's pre-RoPE direction through the channel model (massive pairs
 * at a fixed share), plus noise from `rng`, times the query scales; into
 * q[D]. */
static void vkve_synth_aim(const vkve_synth_ctx *x, uint32_t l, uint32_t h, uint32_t ft_t,
                           vkve_rng *rng, float *q)
{
    const vkve_profile *p = x->p;
    uint32_t D = x->D;
    float kp[VKV_BLOCK_MAX_HEAD_DIM];
    memcpy(kp, x->d->k[l] + ((size_t)ft_t * x->H + h) * D, D * sizeof(float));
    vkve_rope(kp, D, -(double)ft_t, p->rope_base);
    for (uint32_t i = 0; i < D; i++) {
        double base = x->mass[i] != 0 ? (x->mass[i] > 0 ? 1.0 : -1.0) * p->massive_mag * 0.3
                                      : (kp[i] - x->bias[i]) / (x->sig[i] * x->sig[i]);
        q[i] = (float)(x->qs[i] * (base + 0.7 * vkve_rng_norm(rng)));
    }
}

/* The scored queries of the heads reading (layer l, KV head h): aimed at
 * their focus tokens, RoPE at their decode positions, scaled so the visual
 * logits spread logit_std; their mean visual logits go to lg. */
static void vkve_synth_queries(vkve_synth_ctx *x, uint32_t l, uint32_t h)
{
    const vkve_profile *p = x->p;
    vkve_data *d = x->d;
    uint32_t D = x->D, H = x->H;
    for (uint32_t g = 0; g < p->gqa; g++) {
        uint32_t qh = h * p->gqa + g;
        for (uint32_t j = 0; j < x->NQ; j++) {
            float *q = d->q[l] + ((size_t)j * d->n_heads + qh) * D;
            vkve_synth_aim(x, l, h, x->focus[j * d->n_heads + qh], &x->rng, q);
            double pos = x->T + 4 + j;
            vkve_rope(q, D, pos, p->rope_base);
            /* scale: visual logits spread logit_std */
            double s1 = 0, s2 = 0;
            for (uint32_t t = 0; t < x->T; t++) {
                if (!vkve_is_visual(d, t))
                    continue;
                const float *k = d->k[l] + ((size_t)t * H + h) * D;
                double a = 0;
                for (uint32_t i = 0; i < D; i++)
                    a += (double)q[i] * k[i];
                a /= sqrt((double)D);
                s1 += a;
                s2 += a * a;
            }
            double mean = s1 / x->nvis, sd = sqrt(fmax(s2 / x->nvis - mean * mean, 1e-12));
            double sc = p->logit_std / sd;
            for (uint32_t i = 0; i < D; i++)
                q[i] = vkvtn_round_dtype((float)(q[i] * sc), VKV_DTYPE_F16);
            x->lg[j * p->gqa + g] = mean * sc; /* mean visual logit, reused below */
        }
    }
}

/* Encoder-side weights qw of (layer l, KV head h): prefill queries of the
 * image's own tokens (same model as the scored queries, an independent
 * stream, each at its own token's position, unit-normalised), their mean
 * square per channel. */
static void vkve_synth_qw(vkve_synth_ctx *x, uint32_t l, uint32_t h)
{
    const vkve_profile *p = x->p;
    uint32_t D = x->D;
    for (uint32_t g = 0; g < p->gqa; g++)
        for (uint32_t j = 0; j < VKVE_QW_QUERIES; j++) {
            uint32_t ft_t = vkve_visual_at(x->d, (uint32_t)(vkve_rng_unif(&x->rng_w) * x->nvis));
            float q[VKV_BLOCK_MAX_HEAD_DIM];
            vkve_synth_aim(x, l, h, ft_t, &x->rng_w, q);
            double nn = 0;
            vkve_rope(q, D, ft_t, p->rope_base);
            for (uint32_t i = 0; i < D; i++)
                nn += (double)q[i] * q[i];
            for (uint32_t i = 0; i < D; i++)
                x->d->qw[l][(size_t)h * D + i] +=
                    (float)(nn > 0 ? q[i] * q[i] / nn / (p->gqa * VKVE_QW_QUERIES) : 0.0);
        }
}

/* The attention sink of (layer l, KV head h): k_0 along the mean query
 * direction, scaled to draw sink_logit above the mean visual logit. */
static void vkve_synth_sink(vkve_synth_ctx *x, uint32_t l, uint32_t h)
{
    const vkve_profile *p = x->p;
    vkve_data *d = x->d;
    uint32_t D = x->D;
    float *k0 = d->k[l] + (size_t)h * D;
    double dir[VKV_BLOCK_MAX_HEAD_DIM] = {0};
    for (uint32_t g = 0; g < p->gqa; g++)
        for (uint32_t j = 0; j < x->NQ; j++) {
            const float *q = d->q[l] + ((size_t)j * d->n_heads + h * p->gqa + g) * D;
            for (uint32_t i = 0; i < D; i++)
                dir[i] += q[i];
        }
    double want = 0, got = 0;
    for (uint32_t g = 0; g < p->gqa; g++)
        for (uint32_t j = 0; j < x->NQ; j++) {
            const float *q = d->q[l] + ((size_t)j * d->n_heads + h * p->gqa + g) * D;
            double a = 0;
            for (uint32_t i = 0; i < D; i++)
                a += q[i] * dir[i];
            got += a / sqrt((double)D);
            want += x->lg[j * p->gqa + g] + p->sink_logit;
        }
    double c = got != 0 ? want / got : 0;
    for (uint32_t i = 0; i < D; i++)
        k0[i] = (float)(c * dir[i]);
}

/* See synth.h. */
int vkve_synth(const vkve_profile *p, uint64_t seed, vkve_data *d)
{
    int rc = vkve_synth_shape(p, d);
    if (rc != VKV_OK)
        return rc;
    if (vkve_data_alloc(d) != VKV_OK || vkve_data_alloc_qw(d) != VKV_OK) {
        vkve_data_free(d);
        return VKV_ENOMEM;
    }
    vkve_synth_ctx x;
    if (vkve_synth_ctx_init(&x, p, seed, d) != VKV_OK) {
        vkve_data_free(d);
        return VKV_ENOMEM;
    }
    vkve_synth_features(&x);
    for (uint32_t l = 0; l < p->layers; l++)
        for (uint32_t h = 0; h < x.H; h++) {
            vkve_synth_keys(&x, l, h);
            vkve_synth_values(&x, l, h);
            vkve_synth_queries(&x, l, h);
            vkve_synth_qw(&x, l, h);
            vkve_synth_sink(&x, l, h);
            for (uint32_t t = 0; t < x.T; t++)
                for (uint32_t i = 0; i < x.D; i++) {
                    size_t at = ((size_t)t * x.H + h) * x.D + i;
                    d->k[l][at] = vkvtn_round_dtype(d->k[l][at], VKV_DTYPE_F16);
                    d->v[l][at] = vkvtn_round_dtype(d->v[l][at], VKV_DTYPE_F16);
                }
        }
    vkve_synth_ctx_free(&x);
    return VKV_OK;
}
