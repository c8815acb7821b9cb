/* eval/codecs_tc.c - sim-tc: this module's transform coder with per-channel
 * bit allocation, the eval-only twin of block rule 5 (see codecs.h;
 * codecs_impl.h for the file map). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/codecs_impl.h"
#include "tensor/f16.h"

/* Bits one token and head of keys gets under tc: round(kb * head_dim). */
static uint64_t vkve_tc_budget(const vkve_codec *c, uint32_t D)
{
    return (uint64_t)llround(c->tc_kb * D);
}

/* The tc settings that code values when vb > 0: keys' quantizer with the
 * value budget, unweighted. */
static vkve_codec vkve_tc_vcodec(const vkve_codec *c)
{
    vkve_codec v = *c;
    v.tc_kb = c->tc_vb;
    v.tc_alpha = 0;
    v.tc_aw = 0;
    v.tc_minb = 0;
    return v;
}

/* See codecs_impl.h. */
void vkve_tc_sections(const vkve_codec *c, const vkv_shape *s, uint64_t sec[4])
{
    uint64_t L = s->layers, H = s->kv_heads, D = s->head_dim, T = s->tokens;
    uint64_t elems = L * T * H * D;
    /* keys: the allocated bits of every token and head, then per layer
     * and head mean, channel scale (fp16 each), 2-bit allocation per
     * channel, the fp16 top of the token-scale code, then one byte per
     * token and head; values: sign bits, b_d fp16, top fp16, a_t bytes */
    uint64_t kbits = vkve_tc_budget(c, s->head_dim);
    sec[0] = (L * T * H * kbits + 7) / 8;
    sec[1] = elems / 8;
    sec[2] = L * H * (D * 2 + D * 2 + (D * 2 + 7) / 8 + 2) + L * T * H;
    sec[3] = L * H * (D * 2 + 2) + L * T * H;
    if (c->tc_vb > 0) {
        vkve_codec vc = vkve_tc_vcodec(c);
        sec[1] = (L * T * H * vkve_tc_budget(&vc, s->head_dim) + 7) / 8;
        sec[3] = sec[2];
    }
}

/* Gaussian Lloyd-Max quantizers of 1..3 bits (unit variance): thresholds,
 * levels and mean squared error. */
static const float vkve_lm_thr[4][7] = {
    {0},
    {0},
    {-0.9816f, 0.0f, 0.9816f},
    {-1.748f, -1.05f, -0.5006f, 0.0f, 0.5006f, 1.05f, 1.748f},
};
static const float vkve_lm_lev[4][8] = {
    {0},
    {-0.7979f, 0.7979f},
    {-1.5104f, -0.4528f, 0.4528f, 1.5104f},
    {-2.152f, -1.344f, -0.756f, -0.2451f, 0.2451f, 0.756f, 1.344f, 2.152f},
};
static const double vkve_lm_mse[4] = {1.0, 0.3634, 0.1175, 0.03454};

/* Level of the b-bit Lloyd-Max quantizer for z. */
static float vkve_lm_q(float z, uint32_t b)
{
    uint32_t n = (1u << b) - 1u, i = 0;
    while (i < n && z >= vkve_lm_thr[b][i])
        i++;
    return vkve_lm_lev[b][i];
}

/* Replaces the positive scales a[0..n) by their 8-bit log code relative to
 * the largest (rounded to dtype): a = top * 2^(-q/16), q in 0..255. */
static void vkve_logcode8(float *a, uint32_t n, int dtype)
{
    float top = 0;
    for (uint32_t j = 0; j < n; j++)
        top = a[j] > top ? a[j] : top;
    top = vkvtn_round_dtype(top, dtype);
    for (uint32_t j = 0; j < n; j++) {
        if (!(top > 0) || !(a[j] > 0)) {
            a[j] = 0;
            continue;
        }
        double q = nearbyint(-16.0 * log2(a[j] / top));
        q = q < 0 ? 0 : q > 255 ? 255 : q;
        a[j] = (float)(top * exp2(-q / 16.0));
    }
}

/* tc keys, step 1: centres the rows y[nv][D] per channel (mean rounded to
 * dtype into mu), and fills the variance var[D], the channel weights w[D]
 * (qw when given, else the key-energy proxy (E[k_d^2] / mean)^alpha) and
 * bits[D] = minb. */
static void vkve_tc_stats(const vkve_codec *c, float *y, uint32_t nv, uint32_t D, int dtype,
                          const float *qw, float *mu, float *var, float *w, uint8_t *bits)
{
    double e2m = 0;
    for (uint32_t d = 0; d < D; d++) {
        double s = 0, s2 = 0;
        for (uint32_t j = 0; j < nv; j++) {
            s += y[(size_t)j * D + d];
            s2 += (double)y[(size_t)j * D + d] * y[(size_t)j * D + d];
        }
        mu[d] = vkvtn_round_dtype((float)(s / nv), dtype);
        w[d] = (float)(s2 / nv);
        e2m += s2 / nv;
    }
    e2m /= D;
    for (uint32_t d = 0; d < D; d++) {
        double s2 = 0;
        for (uint32_t j = 0; j < nv; j++) {
            float x = y[(size_t)j * D + d] -= mu[d];
            s2 += (double)x * x;
        }
        var[d] = (float)(s2 / nv);
        w[d] = e2m > 0 ? (float)pow(w[d] / e2m, c->tc_alpha) : 1.0f;
        if (qw)
            w[d] = qw[d];
        bits[d] = (uint8_t)c->tc_minb;
    }
}

/* tc keys, step 2: greedy reverse water-filling of the bit budget above
 * minb each: every further bit goes to the channel whose w_d * var_d * MSE
 * drops most, at most maxb per channel. */
static void vkve_tc_allocate(const vkve_codec *c, uint32_t D, const float *w, const float *var,
                             uint8_t *bits)
{
    uint64_t budget = vkve_tc_budget(c, D);
    for (uint64_t i = (uint64_t)c->tc_minb * D; i < budget; i++) {
        double best = 0;
        int at = -1;
        for (uint32_t d = 0; d < D; d++) {
            if (bits[d] >= c->tc_maxb)
                continue;
            double g = (double)w[d] * var[d] * (vkve_lm_mse[bits[d]] - vkve_lm_mse[bits[d] + 1]);
            if (g > best)
                best = g, at = (int)d;
        }
        if (at < 0)
            break;
        bits[at]++;
    }
}

/* tc keys, step 3: the per-token scales a[nv] (rms over coded channels of
 * y / sd, 8-bit log code), then y replaced by its coded levels times a
 * least-squares per-channel scale (rounded to dtype). */
static void vkve_tc_code(float *y, uint32_t nv, uint32_t D, int dtype, const float *var,
                         const uint8_t *bits, float *a)
{
    for (uint32_t j = 0; j < nv; j++) {
        double s = 0;
        uint32_t m = 0;
        for (uint32_t d = 0; d < D; d++)
            if (bits[d] && var[d] > 0) {
                double z = y[(size_t)j * D + d] / sqrt(var[d]);
                s += z * z, m++;
            }
        a[j] = m ? (float)sqrt(s / m) : 0.0f;
    }
    vkve_logcode8(a, nv, dtype);
    /* code, then the least-squares channel scale of the coded levels */
    for (uint32_t d = 0; d < D; d++) {
        double sd = sqrt(var[d]), num = 0, den = 0;
        for (uint32_t j = 0; j < nv; j++) {
            float *x = y + (size_t)j * D + d;
            float r = 0;
            if (bits[d] && sd > 0 && a[j] > 0)
                r = a[j] * vkve_lm_q((float)(*x / (sd * a[j])), bits[d]);
            num += (double)*x * r;
            den += (double)r * r;
            *x = r; /* the unscaled reconstruction */
        }
        float sc = vkvtn_round_dtype(den > 0 ? (float)(num / den) : 0.0f, dtype);
        for (uint32_t j = 0; j < nv; j++)
            y[(size_t)j * D + d] *= sc;
    }
}

/* tc keys on one (layer, head) of a chunk: y[nv][D], a[nv], mu/var/w[D]
 * scratch; bits[D] scratch (uint8); qw[D] the head's prefill-query weights
 * or NULL (then the key-energy proxy). Writes the reconstruction into dst
 * rows (dst may be src). */
static void vkve_tc_keys(const vkve_codec *c, const float *src, float *dst, const vkve_chunk *ck,
                         uint32_t H, uint32_t D, uint32_t h, int dtype, const float *qw, float *y,
                         float *a, float *mu, float *var, float *w, uint8_t *bits)
{
    size_t row = (size_t)H * D;
    uint32_t nv = ck->nv;
    for (uint32_t j = 0; j < nv; j++)
        memcpy(y + (size_t)j * D, src + ck->vt[j] * row + (size_t)h * D, D * sizeof *y);
    vkve_tc_stats(c, y, nv, D, dtype, qw, mu, var, w, bits);
    vkve_tc_allocate(c, D, w, var, bits);
    vkve_tc_code(y, nv, D, dtype, var, bits, a);
    for (uint32_t j = 0; j < nv; j++) {
        float *o = dst + ck->vt[j] * row + (size_t)h * D;
        for (uint32_t d = 0; d < D; d++)
            o[d] = vkvtn_round_dtype(y[(size_t)j * D + d] + mu[d], dtype);
    }
}

/* tc values on one (layer, head): signs times a_t * b_d, b_d the column mean
 * of |v| (fp16), a_t the least-squares fit (8-bit log code). */
static void vkve_tc_values(const float *src, float *dst, const vkve_chunk *ck, uint32_t H,
                           uint32_t D, uint32_t h, int dtype, float *a, float *b)
{
    size_t row = (size_t)H * D;
    uint32_t nv = ck->nv;
    for (uint32_t d = 0; d < D; d++) {
        double s = 0;
        for (uint32_t j = 0; j < nv; j++)
            s += fabsf(src[ck->vt[j] * row + (size_t)h * D + d]);
        b[d] = vkvtn_round_dtype((float)(s / nv), dtype);
    }
    double bb = 0;
    for (uint32_t d = 0; d < D; d++)
        bb += (double)b[d] * b[d];
    for (uint32_t j = 0; j < nv; j++) {
        const float *x = src + ck->vt[j] * row + (size_t)h * D;
        double s = 0;
        for (uint32_t d = 0; d < D; d++)
            s += fabsf(x[d]) * b[d];
        a[j] = bb > 0 ? (float)(s / bb) : 0.0f;
    }
    vkve_logcode8(a, nv, dtype);
    for (uint32_t j = 0; j < nv; j++) {
        const float *x = src + ck->vt[j] * row + (size_t)h * D;
        float *o = dst + ck->vt[j] * row + (size_t)h * D;
        for (uint32_t d = 0; d < D; d++)
            o[d] = vkvtn_round_dtype((x[d] >= 0 ? 1.0f : -1.0f) * a[j] * b[d], dtype);
    }
}
/* See codecs_impl.h. */
void vkve_tc_layer(const vkve_codec *c, float *ks, float *vs, const float *qw, const vkve_chunk *ck,
                   uint32_t H, uint32_t D, int dtype, vkve_scratch *s)
{
    for (uint32_t h = 0; h < H; h++) {
        const float *hw = qw ? qw + (size_t)h * D : NULL;
        vkve_tc_keys(c, ks, ks, ck, H, D, h, dtype, hw, s->y, s->a, s->mu, s->b, s->scr, s->tcb);
        if (c->tc_vb > 0) {
            vkve_codec vc = vkve_tc_vcodec(c);
            vkve_tc_keys(&vc, vs, vs, ck, H, D, h, dtype, NULL, s->y, s->a, s->mu, s->b, s->scr,
                         s->tcb);
        } else {
            vkve_tc_values(vs, vs, ck, H, D, h, dtype, s->a, s->b);
        }
    }
}
