/*
 * kernels/codec_tc.c - the scalar encoder of block rule 5 (VKV_RULE_TC):
 * per (layer, tensor, KV head) channel means, a greedy reverse water-filling
 * of the per-token-and-head bit budget over the channels (weighted by the
 * key energy or by the caller's attention weights), Gaussian Lloyd-Max codes
 * times an 8-bit per-token scale and a least-squares channel scale. Values
 * without a budget (v_mode CHANNEL) are sign bits times a rank-1 magnitude.
 * docs/BLOCK_FORMAT.md "Rule 5: tc" states the steps; docs/FIDELITY.md
 * measures them. The decoder arithmetic is codec_tc.h.
 *
 * The encoder is the one implementation (every vkv_impl uses it); it may use
 * double arithmetic and libm sqrt, whose results are correctly rounded, so
 * its bytes do not depend on the C library.
 */
#include <math.h>
#include <string.h>

#include "codec_internal.h"
#include "codec_tc.h"

/* Lloyd-Max decision thresholds (between consecutive levels) of 1..3 bits
 * and the quantizers' mean squared errors for a unit Gaussian. */
static const float vkvk_tc_thr[4][7] = {
    {0.0f},
    {0.0f},
    {-0.9816f, 0.0f, 0.9816f},
    {-1.748f, -1.05f, -0.5006f, 0.0f, 0.5006f, 1.05f, 1.748f},
};
static const double vkvk_tc_mse[4] = {1.0, 0.3634, 0.1175, 0.03454};

/* Code of z under the b-bit quantizer: the number of thresholds <= z. */
static uint32_t vkvk_tc_code(float z, uint32_t b)
{
    uint32_t n = (1u << b) - 1u, i = 0;
    while (i < n && z >= vkvk_tc_thr[b][i])
        i++;
    return i;
}

/* Appends the n low bits of v at bit position *pos of p (LSB first; p
 * zeroed beforehand) and advances. */
static void vkvk_tc_putbits(uint8_t *p, uint32_t *pos, uint32_t v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++, (*pos)++)
        p[*pos >> 3] |= (uint8_t)(((v >> i) & 1u) << (*pos & 7u));
}

/* Rounds f to the dtype after clamping it to the finite range; returns bits. */
static uint16_t vkvk_tc_round(float f, int dtype)
{
    return vkvk_rot_out(f, dtype);
}

/* Stores dtype bits v little-endian at p. */
static void vkvk_tc_st(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* The scale byte of a >= 0 under top > 0: the code c in 0..254 whose
 * vkvk_tc_scale(top, c) is nearest to a (ties to the smaller c, i.e. the
 * larger scale); 255 (zero) when a or top is not positive. */
static uint32_t vkvk_tc_scale_code(float a, float top)
{
    if (!(a > 0.0f) || !(top > 0.0f))
        return VKVK_TC_ZERO_CODE;
    /* the values decrease with c: find the first c with value(c) <= a */
    uint32_t lo = 0, hi = VKVK_TC_ZERO_CODE - 1u;
    if (vkvk_tc_scale(top, hi) > a)
        return hi;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2u;
        if (vkvk_tc_scale(top, mid) <= a)
            hi = mid;
        else
            lo = mid + 1u;
    }
    if (lo > 0 && vkvk_tc_scale(top, lo - 1u) - a <= a - vkvk_tc_scale(top, lo))
        return lo - 1u;
    return lo;
}

/* Replaces a[0..n) (>= 0) by their decoded 8-bit codes under top =
 * max a rounded to the dtype; writes the codes to q[j * qstride] and the
 * top's dtype bits to *top_h. */
static void vkvk_tc_code_scales(float *a, uint32_t n, int dtype, uint8_t *q, size_t qstride,
                                uint16_t *top_h)
{
    float mx = 0.0f;
    for (uint32_t j = 0; j < n; j++)
        mx = a[j] > mx ? a[j] : mx;
    *top_h = vkvk_tc_round(mx, dtype);
    float top = vkvk_to_f32(*top_h, dtype);
    for (uint32_t j = 0; j < n; j++) {
        uint32_t c = vkvk_tc_scale_code(a[j], top);
        q[(size_t)j * qstride] = (uint8_t)c;
        a[j] = vkvk_tc_scale(top, c);
    }
}

/* Codes one head with the transform coder: y[nv][hd] the head's visual
 * rows as floats (overwritten), budget bits per token, w[hd] channel
 * weights or NULL (then the key energy when `energy`, else 1). Writes the
 * record at rec, the scale bytes at q (stride qstride) and the codes at
 * codes (ceil(budget/8) bytes per token, zeroed here, cstride bytes apart).
 * t: 6 * hd + nv floats of scratch. */
static void vkvk_tc_code_head(int dtype, uint32_t nv, uint32_t hd, uint32_t budget, float *y,
                              const float *w, int energy, uint8_t *rec, uint8_t *q, size_t qstride,
                              uint8_t *codes, size_t cstride, float *t)
{
    float *mu = t, *var = t + hd, *wt = t + 2u * hd, *a = t + 3u * hd + 3u * hd;
    uint8_t *nb = (uint8_t *)(t + 3u * hd); /* hd bytes inside 3*hd floats */
    double e2m = 0.0;
    for (uint32_t d = 0; d < hd; d++) {
        double s = 0.0, s2 = 0.0;
        for (uint32_t j = 0; j < nv; j++) {
            float x = y[(size_t)j * hd + d];
            s += x;
            s2 += (double)x * x;
        }
        uint16_t m = vkvk_tc_round((float)(s / nv), dtype);
        vkvk_tc_st(rec + 2u * d, m);
        mu[d] = vkvk_to_f32(m, dtype);
        wt[d] = (float)(s2 / nv);
        e2m += s2 / nv;
    }
    e2m /= hd;
    for (uint32_t d = 0; d < hd; d++) {
        double s2 = 0.0;
        for (uint32_t j = 0; j < nv; j++) {
            float x = y[(size_t)j * hd + d] -= mu[d];
            s2 += (double)x * x;
        }
        var[d] = (float)(s2 / nv);
        if (w)
            wt[d] = w[d];
        else if (energy)
            wt[d] = e2m > 0.0 ? (float)(wt[d] / e2m) : 1.0f;
        else
            wt[d] = 1.0f;
        nb[d] = 0;
    }
    /* greedy reverse water-filling: each next bit where it removes the most
     * weighted distortion (first channel on ties); stops when no bit helps */
    for (uint32_t i = 0; i < budget; i++) {
        double best = 0.0;
        int at = -1;
        for (uint32_t d = 0; d < hd; d++) {
            if (nb[d] >= 3u)
                continue;
            double g = (double)wt[d] * var[d] * (vkvk_tc_mse[nb[d]] - vkvk_tc_mse[nb[d] + 1u]);
            if (g > best) {
                best = g;
                at = (int)d;
            }
        }
        if (at < 0)
            break;
        nb[at]++;
    }
    /* per-token scale: rms over the coded channels of y / sd (sd kept in
     * wt, which the allocation no longer needs; 0 marks an uncoded channel) */
    uint32_t m = 0;
    for (uint32_t d = 0; d < hd; d++) {
        wt[d] = nb[d] && var[d] > 0.0f ? (float)0 : -1.0f;
        m += wt[d] == 0.0f;
    }
    for (uint32_t j = 0; j < nv; j++) {
        double s = 0.0;
        const float *yr = y + (size_t)j * hd;
        for (uint32_t d = 0; d < hd; d++)
            if (wt[d] == 0.0f) {
                double z = yr[d] / sqrt((double)var[d]);
                s += z * z;
            }
        a[j] = m ? (float)sqrt(s / m) : 0.0f;
    }
    uint8_t *al = rec + 4u * (size_t)hd;
    uint16_t top_h;
    vkvk_tc_code_scales(a, nv, dtype, q, qstride, &top_h);
    vkvk_tc_st(al + hd / 4u, top_h);
    memset(al, 0, hd / 4u);
    for (uint32_t j = 0; j < nv; j++)
        memset(codes + (size_t)j * cstride, 0, (budget + 7u) / 8u);
    /* codes, channel by channel, then the least-squares channel scale */
    uint32_t pos0 = 0;
    for (uint32_t d = 0; d < hd; d++) {
        al[d >> 2] |= (uint8_t)(nb[d] << (2u * (d & 3u)));
        double sd = sqrt((double)var[d]), num = 0.0, den = 0.0;
        for (uint32_t j = 0; nb[d] && j < nv; j++) {
            float x = y[(size_t)j * hd + d], r = 0.0f;
            uint32_t c = 0;
            if (sd > 0.0 && a[j] > 0.0f) {
                c = vkvk_tc_code((float)(x / (sd * a[j])), nb[d]);
                r = a[j] * vkvk_tc_level(nb[d], c);
            }
            uint32_t pos = pos0;
            vkvk_tc_putbits(codes + (size_t)j * cstride, &pos, c, nb[d]);
            num += (double)x * r;
            den += (double)r * r;
        }
        pos0 += nb[d];
        vkvk_tc_st(rec + 2u * ((size_t)hd + d),
                   vkvk_tc_round(den > 0.0 ? (float)(num / den) : 0.0f, dtype));
    }
}

/* Codes one head's values as signs times a rank-1 magnitude: b[d] = mean
 * |v| (dtype), a[j] the least-squares fit to |v|, 8-bit coded. x[nv][hd]
 * the rows; writes the record (b, top), scale bytes and sign bytes. */
static void vkvk_tc_rank1_head(int dtype, uint32_t nv, uint32_t hd, const float *x, uint8_t *rec,
                               uint8_t *q, size_t qstride, uint8_t *sgn, size_t sstride, float *t)
{
    float *b = t, *a = t + hd;
    for (uint32_t d = 0; d < hd; d++) {
        double s = 0.0;
        for (uint32_t j = 0; j < nv; j++)
            s += fabsf(x[(size_t)j * hd + d]);
        uint16_t bh = vkvk_tc_round((float)(s / nv), dtype);
        vkvk_tc_st(rec + 2u * d, bh);
        b[d] = vkvk_to_f32(bh, dtype);
    }
    double bb = 0.0;
    for (uint32_t d = 0; d < hd; d++)
        bb += (double)b[d] * b[d];
    for (uint32_t j = 0; j < nv; j++) {
        const float *r = x + (size_t)j * hd;
        double s = 0.0;
        uint8_t *o = sgn + (size_t)j * sstride;
        memset(o, 0, hd / 8u);
        for (uint32_t d = 0; d < hd; d++) {
            s += fabsf(r[d]) * b[d];
            if (r[d] >= 0.0f)
                o[d >> 3] |= (uint8_t)(1u << (d & 7u));
        }
        a[j] = bb > 0.0 ? (float)(s / bb) : 0.0f;
    }
    uint16_t top_h;
    vkvk_tc_code_scales(a, nv, dtype, q, qstride, &top_h);
    vkvk_tc_st(rec + 2u * (size_t)hd, top_h);
}

/* See codec_tc.h. */
int vkvk_tc_enc_tensor(const vkv_block_header *h, int s, const uint16_t *src, size_t tstride,
                       size_t hstride, const uint32_t *vt, uint32_t nv, const float *w,
                       uint8_t *bits, uint8_t *lev, float *scratch)
{
    const uint32_t heads = h->kv_heads, hd = h->head_dim;
    const int dt = h->dtype;
    if (nv == 0)
        return VKV_OK;
    const int coded = s == 0 || h->v_mode == VKV_GROUP_TOKEN;
    const uint32_t budget = vkvk_tc_bits(s ? h->v_group : h->k_group, hd);
    const size_t cb = vkvk_tc_code_bytes(h, s);
    const uint64_t rec = vkvk_tc_rec_bytes(coded, hd);
    uint8_t *scl = lev + (size_t)heads * rec;
    float *y = scratch, *t = scratch + (size_t)nv * hd;
    for (uint32_t hh = 0; hh < heads; hh++) {
        for (uint32_t j = 0; j < nv; j++) {
            const uint16_t *p = src + (size_t)vt[j] * tstride + (size_t)hh * hstride;
            for (uint32_t d = 0; d < hd; d++) {
                if (vkvk_nonfinite(p[d], dt))
                    return VKV_ENONFINITE;
                y[(size_t)j * hd + d] = vkvk_to_f32(p[d], dt);
            }
        }
        uint8_t *r = lev + (size_t)hh * rec;
        if (coded)
            vkvk_tc_code_head(dt, nv, hd, budget, y, s == 0 && w ? w + (size_t)hh * hd : NULL,
                              s == 0, r, scl + hh, heads, bits + (size_t)hh * cb, heads * cb, t);
        else
            vkvk_tc_rank1_head(dt, nv, hd, y, r, scl + hh, heads, bits + (size_t)hh * cb,
                               heads * cb, t);
    }
    return VKV_OK;
}
