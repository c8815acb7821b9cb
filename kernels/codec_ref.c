/*
 * kernels/codec_ref.c - the scalar reference kernels: the ground truth that
 * every other implementation reproduces bit for bit.
 *
 * CHANNEL groups: one channel at a time, tokens accumulated in order from
 * 0.0f (sum) / +Inf (min) / -Inf (max), exactly as one SIMD lane does.
 * TOKEN groups: element i of the group accumulates into lane i % 32, lanes
 * combined with vkvk_tree32_* (the SIMD reduction tree).
 */
#include <math.h>

#include "codec_internal.h"

/* Levels of one CHANNEL group whose values are x[0..n-1] (finite floats)
 * with their in-order sum, min and max. Lloyd's conditional sums run over
 * x in token order; quantile works on `tmp` (n floats, overwritten). Writes
 * the rounded levels and returns the code threshold. */
static float vkvk_ref_channel_levels(const vkvk_rule_args *ra, const float *x, uint32_t n,
                                     float sum, float mn, float mx, float *tmp, uint16_t *lo_h,
                                     uint16_t *hi_h)
{
    float lo = mn, hi = mx;
    if (mn != mx) {
        if (ra->rule == VKV_RULE_MINMAX) {
            vkvk_minmax_levels(mn, mx, ra->param, &lo, &hi);
        } else if (ra->rule == VKV_RULE_QUANTILE) {
            memcpy(tmp, x, n * sizeof(float));
            vkvk_quantile_levels(tmp, n, ra->param, &lo, &hi);
        } else {
            float thr = vkvk_lloyd_start(sum, n);
            for (unsigned it = 0; it < ra->iters; it++) {
                float slo = 0.0f, shi = 0.0f;
                uint32_t nhi = 0;
                for (uint32_t t = 0; t < n; t++) {
                    if (x[t] >= thr) {
                        shi += x[t];
                        nhi++;
                    } else {
                        slo += x[t];
                    }
                }
                thr = vkvk_lloyd_update(slo, n - nhi, shi, nhi, &lo, &hi);
            }
        }
    }
    return vkvk_group_finish(ra->dtype, lo, hi, mn, mx, lo_h, hi_h);
}

/* Reference CHANNEL encoder over channels [d0, d1); see codec_internal.h.
 * scratch needs 2*n floats. */
int vkvk_ref_enc_channel_part(const vkvk_rule_args *ra, const uint16_t *src, size_t tstride,
                              uint32_t n, uint32_t d0, uint32_t d1, uint8_t *bits, size_t bstride,
                              uint8_t *lev_lo, uint8_t *lev_hi, float *scratch)
{
    float *x = scratch, *tmp = scratch + n;
    for (uint32_t t = 0; t < n; t++)
        memset(bits + t * bstride + d0 / 8u, 0, (d1 - d0) / 8u);
    for (uint32_t d = d0; d < d1; d++) {
        float sum = 0.0f, mn = INFINITY, mx = -INFINITY;
        for (uint32_t t = 0; t < n; t++) {
            uint16_t h = src[t * tstride + d];
            if (vkvk_nonfinite(h, ra->dtype))
                return VKV_ENONFINITE;
            float v = vkvk_to_f32(h, ra->dtype);
            x[t] = v;
            sum += v;
            mn = vkvk_minf(v, mn);
            mx = vkvk_maxf(v, mx);
        }
        uint16_t lo_h, hi_h;
        float mid = vkvk_ref_channel_levels(ra, x, n, sum, mn, mx, tmp, &lo_h, &hi_h);
        vkvk_st16(lev_lo + 2 * (size_t)d, lo_h);
        vkvk_st16(lev_hi + 2 * (size_t)d, hi_h);
        uint8_t bit = (uint8_t)(1u << (d & 7u));
        for (uint32_t t = 0; t < n; t++)
            if (x[t] >= mid)
                bits[t * bstride + d / 8u] |= bit;
    }
    return 0;
}

/* Table entry: the whole row of channels. */
static int vkvk_ref_enc_channel(const vkvk_rule_args *ra, const uint16_t *src, size_t tstride,
                                uint32_t n, uint32_t hd, uint8_t *bits, size_t bstride,
                                uint8_t *lev_lo, uint8_t *lev_hi, float *scratch)
{
    return vkvk_ref_enc_channel_part(ra, src, tstride, n, 0, hd, bits, bstride, lev_lo, lev_hi,
                                     scratch);
}

/* Reference TOKEN encoder; see codec_internal.h. scratch needs 2*g floats. */
static int vkvk_ref_enc_token(const vkvk_rule_args *ra, const uint16_t *src, uint32_t hd,
                              uint32_t g, uint8_t *bits, uint8_t *lev, float *scratch)
{
    float *x = scratch, *tmp = scratch + g;
    for (uint32_t c0 = 0; c0 < hd; c0 += g) {
        float s[VKVK_TOKEN_LANES], m0[VKVK_TOKEN_LANES], m1[VKVK_TOKEN_LANES];
        for (int j = 0; j < VKVK_TOKEN_LANES; j++) {
            s[j] = 0.0f;
            m0[j] = INFINITY;
            m1[j] = -INFINITY;
        }
        for (uint32_t i = 0; i < g; i++) {
            uint16_t h = src[c0 + i];
            if (vkvk_nonfinite(h, ra->dtype))
                return VKV_ENONFINITE;
            float v = vkvk_to_f32(h, ra->dtype);
            unsigned j = i % VKVK_TOKEN_LANES;
            x[i] = v;
            s[j] += v;
            m0[j] = vkvk_minf(v, m0[j]);
            m1[j] = vkvk_maxf(v, m1[j]);
        }
        float sum = vkvk_tree32_sum(s), mn = vkvk_tree32_min(m0), mx = vkvk_tree32_max(m1);
        float lo = mn, hi = mx;
        if (mn != mx) {
            if (ra->rule == VKV_RULE_MINMAX) {
                vkvk_minmax_levels(mn, mx, ra->param, &lo, &hi);
            } else if (ra->rule == VKV_RULE_QUANTILE) {
                memcpy(tmp, x, g * sizeof(float));
                vkvk_quantile_levels(tmp, g, ra->param, &lo, &hi);
            } else {
                float thr = vkvk_lloyd_start(sum, g);
                for (unsigned it = 0; it < ra->iters; it++) {
                    float slo[VKVK_TOKEN_LANES], shi[VKVK_TOKEN_LANES];
                    uint32_t nhi = 0;
                    for (int j = 0; j < VKVK_TOKEN_LANES; j++)
                        slo[j] = shi[j] = 0.0f;
                    for (uint32_t i = 0; i < g; i++) {
                        unsigned j = i % VKVK_TOKEN_LANES;
                        if (x[i] >= thr) {
                            shi[j] += x[i];
                            nhi++;
                        } else {
                            slo[j] += x[i];
                        }
                    }
                    thr = vkvk_lloyd_update(vkvk_tree32_sum(slo), g - nhi, vkvk_tree32_sum(shi),
                                            nhi, &lo, &hi);
                }
            }
        }
        uint16_t lo_h, hi_h;
        float mid = vkvk_group_finish(ra->dtype, lo, hi, mn, mx, &lo_h, &hi_h);
        uint8_t *lv = lev + (size_t)(c0 / g) * 4u;
        vkvk_st16(lv, lo_h);
        vkvk_st16(lv + 2, hi_h);
        for (uint32_t i = 0; i < g; i += 8) {
            unsigned byte = 0;
            for (unsigned k = 0; k < 8; k++)
                byte |= (unsigned)(x[i + k] >= mid) << k;
            bits[(c0 + i) / 8u] = (uint8_t)byte;
        }
    }
    return 0;
}

/* Reference CHANNEL decoder of one visual token (all heads). */
static void vkvk_ref_dec_channel(const uint8_t *bits, const uint8_t *lev, uint32_t heads,
                                 uint32_t hd, uint16_t *dst, size_t head_stride)
{
    for (uint32_t h = 0; h < heads; h++) {
        const uint8_t *b = bits + (size_t)h * (hd / 8u);
        const uint8_t *lo = lev + (size_t)h * 4u * hd;
        const uint8_t *hi = lo + 2u * (size_t)hd;
        uint16_t *o = dst + h * head_stride;
        for (uint32_t d = 0; d < hd; d++)
            o[d] = ((b[d >> 3] >> (d & 7u)) & 1u) ? vkvk_ld16(hi + 2u * d) : vkvk_ld16(lo + 2u * d);
    }
}

/* Reference TOKEN decoder of one visual token (all heads). */
static void vkvk_ref_dec_token(const uint8_t *bits, const uint8_t *lev, uint32_t heads,
                               uint32_t hd, uint32_t g, uint16_t *dst, size_t head_stride)
{
    uint32_t ng = hd / g;
    for (uint32_t h = 0; h < heads; h++) {
        const uint8_t *b = bits + (size_t)h * (hd / 8u);
        const uint8_t *lv = lev + (size_t)h * ng * 4u;
        uint16_t *o = dst + h * head_stride;
        for (uint32_t d = 0; d < hd; d++) {
            const uint8_t *pair = lv + (d / g) * 4u;
            o[d] = ((b[d >> 3] >> (d & 7u)) & 1u) ? vkvk_ld16(pair + 2) : vkvk_ld16(pair);
        }
    }
}

const vkvk_kernels vkvk_kernels_scalar = {
    "scalar", vkvk_ref_enc_channel, vkvk_ref_enc_token, vkvk_ref_dec_channel, vkvk_ref_dec_token,
};
