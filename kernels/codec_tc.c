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
 * This encoder is the reference (VKV_IMPL_SCALAR); the AVX2 and AVX-512
 * impls run its byte-identical twin codec_tc_enc_avx2.c. It may use double
 * arithmetic and libm sqrt, whose results are correctly rounded, so its
 * bytes do not depend on the C library.
 */
#include <math.h>
#include <string.h>

#include "kernels/codec_internal.h"
#include "kernels/codec_tc.h"

/* Lloyd-Max decision thresholds (between consecutive levels) of 1..3 bits
 * and the quantizers' mean squared errors for a unit Gaussian. */
static const float vkvk_tc_thr[4][7] = {
    {0.0f},
    {0.0f},
    {-0.9816f, 0.0f, 0.9816f},
    {-1.748f, -1.05f, -0.5006f, 0.0f, 0.5006f, 1.05f, 1.748f},
};
const double vkvk_tc_mse[4] = {1.0, 0.3634, 0.1175, 0.03454};

/* Code of z under the b-bit quantizer (b 2 or 3): the number of thresholds
 * <= z (the thresholds ascend). */
static uint32_t vkvk_tc_code(float z, uint32_t b)
{
    const float *t = vkvk_tc_thr[b];
    uint32_t i = (z >= t[1]) + (z >= t[0]) + (z >= t[2]);
    if (b == 3u)
        i += (z >= t[3]) + (z >= t[4]) + (z >= t[5]) + (z >= t[6]);
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

/* See codec_tc.h. */
void vkvk_tc_st(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* See codec_tc.h. The scales do not increase with c, so the first c with
 * scale(c) <= a is unique; the walk from a guess of -16 log2(a / top)
 * finds it (the guess only sets where the walk starts, so libm's log2f
 * cannot change the result), then the tie rule picks between c - 1 and c.
 * kernels_tc_test checks it against a bisection. */
uint32_t vkvk_tc_scale_code(float a, float top)
{
    if (!(a > 0.0f) || !(top > 0.0f))
        return VKVK_TC_ZERO_CODE;
    const uint32_t last = VKVK_TC_ZERO_CODE - 1u;
    if (vkvk_tc_scale(top, last) > a)
        return last;
    const float g = -16.0f * log2f(a / top);
    uint32_t c = g > 0.0f ? (g < (float)last ? (uint32_t)g : last) : 0u;
    while (c > 0 && vkvk_tc_scale(top, c - 1u) <= a)
        c--;
    while (vkvk_tc_scale(top, c) > a)
        c++;
    if (c > 0 && vkvk_tc_scale(top, c - 1u) - a <= a - vkvk_tc_scale(top, c))
        return c - 1u;
    return c;
}

/* See codec_tc.h. */
void vkvk_tc_code_scales(float *a, uint32_t n, int dtype, uint8_t *q, size_t qstride,
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

/* The state of one head's fit (every array caller scratch of hd entries,
 * cj of nv * hd): y the centred rows, nb the allocation, sd the channel
 * deviations (0: no bits), wt the allocation weights, cj the codes, scf
 * the channel scales as decoded floats, cs their 8-bit codes (the record's
 * bytes) under the dtype bits *stop; num / den the least-squares sums. */
typedef struct vkvk_tc_fit {
    int dtype;
    uint32_t nv, hd;
    const float *y, *wt;
    const uint8_t *nb;
    const double *sd;
    uint8_t *cj;
    float *scf, *iu;
    uint8_t *cs;
    uint16_t *stop;
    double *num, *den;
} vkvk_tc_fit;

/* Picks the code of every coded element under the (decoded) token scales a
 * (nearest level: z = y / (sd * a) on the first pass, y / (sc * a) with
 * the current channel scale on later ones where sc > 0), then fits each
 * channel scale by least squares to the reconstructions a * L[code] and
 * codes the scales in 8 bits under their rounded maximum (p->cs, p->stop;
 * p->scf the decoded values). */
static void vkvk_tc_pick_codes(vkvk_tc_fit *p, const float *a, int use_sc)
{
    const uint32_t hd = p->hd;
    for (uint32_t d = 0; d < hd; d++) {
        p->num[d] = p->den[d] = 0.0;
        double u = use_sc && p->scf[d] > 0.0f ? (double)p->scf[d] : p->sd[d];
        p->iu[d] = u > 0.0 ? (float)(1.0 / u) : 0.0f;
    }
    for (uint32_t j = 0; j < p->nv; j++) {
        const float *yr = p->y + (size_t)j * hd;
        uint8_t *cr = p->cj + (size_t)j * hd;
        const float aj = a[j], ia = aj > 0.0f ? 1.0f / aj : 0.0f;
        for (uint32_t d = 0; d < hd; d++) {
            const uint32_t b = p->nb[d];
            cr[d] = 0;
            if (!b)
                continue;
            float x = yr[d], r = 0.0f;
            if (aj > 0.0f) {
                /* 1 bit: the sign; more: z = (x * (1/u)) * (1/a) */
                cr[d] = (uint8_t)(b == 1u ? x >= 0.0f : vkvk_tc_code((x * p->iu[d]) * ia, b));
                r = aj * vkvk_tc_level(b, cr[d]);
            }
            p->num[d] += (double)x * r;
            p->den[d] += (double)r * r;
        }
    }
    for (uint32_t d = 0; d < hd; d++)
        p->scf[d] = p->den[d] > 0.0 ? (float)(p->num[d] / p->den[d]) : 0.0f;
    vkvk_tc_code_scales(p->scf, hd, p->dtype, p->cs, 1, p->stop);
}

/* Replaces each token scale a[j] by the weighted least-squares fit of the
 * token's centred row to its current reconstruction L[code] * sc (weights
 * wt, coded channels only); 0 when the fit is not positive. */
static void vkvk_tc_refit_scales(const vkvk_tc_fit *p, float *a)
{
    const uint32_t hd = p->hd;
    for (uint32_t j = 0; j < p->nv; j++) {
        const float *yr = p->y + (size_t)j * hd;
        const uint8_t *cr = p->cj + (size_t)j * hd;
        double num = 0.0, den = 0.0;
        for (uint32_t d = 0; d < hd; d++) {
            if (!p->nb[d] || !(p->sd[d] > 0.0))
                continue;
            double r = (double)p->scf[d] * vkvk_tc_level(p->nb[d], cr[d]);
            num += (double)p->wt[d] * yr[d] * r;
            den += (double)p->wt[d] * r * r;
        }
        a[j] = den > 0.0 && num > 0.0 ? (float)(num / den) : 0.0f;
    }
}

/* Codes one head with the transform coder: y[nv][hd] the head's visual
 * rows as floats (overwritten), budget bits per token, w[hd] channel
 * weights or NULL (then the key energy when `energy`, else 1). Writes the
 * record at rec, the scale bytes at q (stride qstride) and the codes at
 * codes (ceil(budget/8) bytes per token, zeroed here, cstride bytes apart).
 * Scratch: a[nv] and t[6*hd] floats, dd[5*hd] doubles, cj[nv*hd] bytes.
 * Every per-channel
 * sum runs over the tokens in order (j outer, channels inner, one
 * accumulator per channel). */
static void vkvk_tc_code_head(int dtype, uint32_t nv, uint32_t hd, uint32_t budget, float *y,
                              const float *w, int energy, uint8_t *rec, uint8_t *q, size_t qstride,
                              uint8_t *codes, size_t cstride, float *a, float *t, double *dd,
                              uint8_t *cj)
{
    float *mu = t, *var = t + hd, *wt = t + 2u * hd;
    uint8_t *nb = (uint8_t *)(t + 3u * hd); /* hd bytes inside hd floats */
    uint16_t stop_h = 0;
    vkvk_tc_fit p = {.dtype = dtype,
                     .nv = nv,
                     .hd = hd,
                     .y = y,
                     .wt = wt,
                     .nb = nb,
                     .sd = dd + 4u * hd,
                     .cj = cj,
                     .scf = t + 4u * hd,
                     .iu = t + 5u * hd,
                     .cs = rec + 2u * hd,
                     .stop = &stop_h,
                     .num = dd + 2u * hd,
                     .den = dd + 3u * hd};
    double *s1 = dd, *s2 = dd + hd, *sd = dd + 4u * hd;
    for (uint32_t d = 0; d < hd; d++)
        s1[d] = s2[d] = 0.0;
    for (uint32_t j = 0; j < nv; j++) {
        const float *yr = y + (size_t)j * hd;
        for (uint32_t d = 0; d < hd; d++) {
            s1[d] += yr[d];
            s2[d] += (double)yr[d] * yr[d];
        }
    }
    double e2m = 0.0;
    for (uint32_t d = 0; d < hd; d++) {
        uint16_t m = vkvk_tc_round((float)(s1[d] / nv), dtype);
        vkvk_tc_st(rec + 2u * d, m);
        mu[d] = vkvk_to_f32(m, dtype);
        wt[d] = (float)(s2[d] / nv);
        e2m += s2[d] / nv;
        s2[d] = 0.0;
    }
    e2m /= hd;
    for (uint32_t j = 0; j < nv; j++) {
        float *yr = y + (size_t)j * hd;
        for (uint32_t d = 0; d < hd; d++) {
            float x = yr[d] -= mu[d];
            s2[d] += (double)x * x;
        }
    }
    for (uint32_t d = 0; d < hd; d++) {
        var[d] = (float)(s2[d] / nv);
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
    /* per-token scale: rms over the coded channels of y / sd; sd = 0 marks
     * a channel without bits (a coded channel has var > 0) */
    uint32_t m = 0;
    for (uint32_t d = 0; d < hd; d++) {
        sd[d] = nb[d] && var[d] > 0.0f ? sqrt((double)var[d]) : 0.0;
        m += sd[d] > 0.0;
    }
    for (uint32_t j = 0; j < nv; j++) {
        double acc = 0.0;
        const float *yr = y + (size_t)j * hd;
        for (uint32_t d = 0; d < hd; d++)
            if (sd[d] > 0.0) {
                double z = yr[d] / sd[d];
                acc += z * z;
            }
        a[j] = m ? (float)sqrt(acc / m) : 0.0f;
    }
    /* alternate: scale bytes, codes, channel scales; then the weighted
     * least-squares token scales for the next pass */
    uint16_t top_h = 0;
    for (uint32_t it = 0;; it++) {
        vkvk_tc_code_scales(a, nv, dtype, q, qstride, &top_h);
        vkvk_tc_pick_codes(&p, a, it > 0);
        if (it == VKVK_TC_PASSES)
            break;
        vkvk_tc_refit_scales(&p, a);
    }
    uint8_t *al = rec + 3u * (size_t)hd;
    vkvk_tc_st(al + hd / 4u, top_h);
    vkvk_tc_st(al + hd / 4u + 2u, stop_h);
    memset(al, 0, hd / 4u);
    for (uint32_t d = 0; d < hd; d++)
        al[d >> 2] |= (uint8_t)(nb[d] << (2u * (d & 3u)));
    /* codes token by token in channel order */
    const uint32_t cb = (budget + 7u) / 8u;
    for (uint32_t j = 0; j < nv; j++) {
        uint8_t *c = codes + (size_t)j * cstride;
        const uint8_t *cr = cj + (size_t)j * hd;
        memset(c, 0, cb);
        uint32_t pos = 0;
        for (uint32_t d = 0; d < hd; d++)
            if (nb[d])
                vkvk_tc_putbits(c, &pos, cr[d], nb[d]);
    }
}

/* Codes one head's values as signs times a rank-1 magnitude: b[d] = mean
 * |v| (dtype), a[j] the least-squares fit to |v|, 8-bit coded. x[nv][hd]
 * the rows; writes the record (b, top), scale bytes and sign bytes.
 * Scratch: a[nv] and b[hd] floats, s1[hd] doubles. */
static void vkvk_tc_rank1_head(int dtype, uint32_t nv, uint32_t hd, const float *x, uint8_t *rec,
                               uint8_t *q, size_t qstride, uint8_t *sgn, size_t sstride, float *a,
                               float *b, double *s1)
{
    for (uint32_t d = 0; d < hd; d++)
        s1[d] = 0.0;
    for (uint32_t j = 0; j < nv; j++)
        for (uint32_t d = 0; d < hd; d++)
            s1[d] += fabsf(x[(size_t)j * hd + d]);
    for (uint32_t d = 0; d < hd; d++) {
        uint16_t bh = vkvk_tc_round((float)(s1[d] / nv), dtype);
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
    /* scratch: y[nv][hd], a[nv], t[6][hd] floats, then (8-byte aligned)
     * dd[5][hd] doubles, then cj[nv][hd] code bytes */
    float *y = scratch, *a = y + (size_t)nv * hd, *t = a + nv;
    size_t dof = (size_t)nv * hd + nv + 6u * (size_t)hd;
    double *dd = (double *)(void *)(scratch + dof + (dof & 1u));
    uint8_t *cj = (uint8_t *)(dd + 5u * (size_t)hd);
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
                              s == 0, r, scl + hh, heads, bits + (size_t)hh * cb, heads * cb, a, t,
                              dd, cj);
        else
            vkvk_tc_rank1_head(dt, nv, hd, y, r, scl + hh, heads, bits + (size_t)hh * cb,
                               heads * cb, a, t, dd);
    }
    return VKV_OK;
}
