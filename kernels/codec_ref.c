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

#include "kernels/codec_internal.h"

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
static void vkvk_ref_dec_token(const uint8_t *bits, const uint8_t *lev, uint32_t heads, uint32_t hd,
                               uint32_t g, uint16_t *dst, size_t head_stride)
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

/* ---- rotsign ---- */

/* vkvk_rot_pm8[b]: the FWHT stages len = 1, 2, 4 (vkvk_fwht on 8 elements)
 * of the vector whose element j is +1.0f where bit j of b is 1, else -1.0f:
 * element i is sum_j s_j * (-1)^popcount(i & j), an exact small integer, so
 * any evaluation order gives these values. Written out by the preprocessor;
 * kernels_math_test checks every row against vkvk_fwht. */
#define VKVK_PM_S(b, j)    ((((b) >> (j)) & 1) * 2 - 1)
#define VKVK_PM_P(x)       (((x) ^ ((x) >> 1) ^ ((x) >> 2)) & 1)
#define VKVK_PM_H(i, j)    (1 - 2 * VKVK_PM_P((i) & (j)))
#define VKVK_PM_T(b, i, j) (VKVK_PM_S(b, j) * VKVK_PM_H(i, j))
#define VKVK_PM_E(b, i)                                                                            \
    (float)(VKVK_PM_T(b, i, 0) + VKVK_PM_T(b, i, 1) + VKVK_PM_T(b, i, 2) + VKVK_PM_T(b, i, 3) +    \
            VKVK_PM_T(b, i, 4) + VKVK_PM_T(b, i, 5) + VKVK_PM_T(b, i, 6) + VKVK_PM_T(b, i, 7))
#define VKVK_PM_ROW(b)                                                                             \
    {                                                                                              \
        VKVK_PM_E(b, 0), VKVK_PM_E(b, 1), VKVK_PM_E(b, 2), VKVK_PM_E(b, 3), VKVK_PM_E(b, 4),       \
            VKVK_PM_E(b, 5), VKVK_PM_E(b, 6), VKVK_PM_E(b, 7)                                      \
    }
#define VKVK_PM_R4(b)                                                                              \
    VKVK_PM_ROW(b), VKVK_PM_ROW((b) + 1), VKVK_PM_ROW((b) + 2), VKVK_PM_ROW((b) + 3)
#define VKVK_PM_R16(b) VKVK_PM_R4(b), VKVK_PM_R4((b) + 4), VKVK_PM_R4((b) + 8), VKVK_PM_R4((b) + 12)
#define VKVK_PM_R64(b)                                                                             \
    VKVK_PM_R16(b), VKVK_PM_R16((b) + 16), VKVK_PM_R16((b) + 32), VKVK_PM_R16((b) + 48)
_Alignas(32) const float vkvk_rot_pm8[256][8] = {VKVK_PM_R64(0), VKVK_PM_R64(64), VKVK_PM_R64(128),
                                                 VKVK_PM_R64(192)};
#undef VKVK_PM_S
#undef VKVK_PM_P
#undef VKVK_PM_H
#undef VKVK_PM_T
#undef VKVK_PM_E
#undef VKVK_PM_ROW
#undef VKVK_PM_R4
#undef VKVK_PM_R16
#undef VKVK_PM_R64

const uint64_t vkvk_rot_negw[VKV_BLOCK_MAX_HEAD_DIM / 64u] = {
    0xd32c005780cbd14full, 0x47e8f7dd28b8e3a1ull, 0x7f4cff700f1f761eull, 0xe13aafcd978a9cafull,
    0xc3360b4c16093456ull, 0xab2b66d79a1a72bcull, 0x6ef7885190b1c58eull, 0x39375a7e7db2e38bull,
    0x611168e958686020ull, 0x7a29136107e308bfull, 0xa33f00068b925c7full, 0xc0f29bd32b7c75e9ull,
    0xf5f84b1232feaba4ull, 0xb95d425489e71936ull, 0x8fc7930ee00f0254ull, 0x72a5e76497fd6cd8ull,
    0x62ac1f321121b88full, 0x3c30661db76cdf3dull, 0xa4d8f7d5dffadfa0ull, 0x8bca03533c8096dcull,
    0x4c027350e3a0b78bull, 0x2f71e03a0160c9f4ull, 0x6a06ae25b1967ea6ull, 0x8ba97dfb455d2383ull,
    0xff8bfeb8437f5f29ull, 0x7991985b8f2da712ull, 0x29bd6ab06685b516ull, 0xd1951f632bfea4edull,
    0x72961cf8792bac08ull, 0x535e99c2323aa458ull, 0x345829c474cdc91bull, 0xa379b473f5d10485ull,
    0x0206d9c468968e84ull, 0x5a0305962c6282d9ull, 0xff52aab16e2c32a1ull, 0x1cdc9a50ca2837beull,
    0x45f065f7b663fe8full, 0xc63dbc4adc05f985ull, 0xdc21315fe8dd6c93ull, 0xa692d5c79d084bd2ull,
    0x3ab3dd5248e3d7baull, 0x2125f63a3df034cbull, 0x7467d34e606dfc5bull, 0xb2eb7345858b6a78ull,
    0x0b03c5a7fcdbcdbfull, 0x67177a64bafe75eeull, 0x70244375637aad79ull, 0x67e6e288c7c5d56eull,
    0x5b9787474e19736dull, 0x783a26839d09f257ull, 0xdf0dc83f8e6e26bdull, 0xc02cbf84f3069927ull,
    0xf256a886be852333ull, 0x65719c53cede8d9bull, 0x617abcfd199c6789ull, 0x2ee7511fa03a9de7ull,
    0x854d23874c824964ull, 0xbb970ea7364a37d0ull, 0x2b2ce97161bfee3full, 0xf37307d8424a6425ull,
    0xe4382dc292305b3dull, 0x9c17ffc9e46f0448ull, 0xd79a4873bb6d05d0ull, 0xe260bfa5c242e0f2ull,
};

/* sum_d x[d] * y[d] over d < n with lane d % 32 accumulated in order from
 * 0.0f, lanes combined by vkvk_tree32_sum (the SIMD order). */
static float vkvk_ref_dot32(const float *x, const float *y, uint32_t n)
{
    float s[VKVK_TOKEN_LANES];
    for (int j = 0; j < VKVK_TOKEN_LANES; j++)
        s[j] = 0.0f;
    for (uint32_t d = 0; d < n; d++)
        s[d % VKVK_TOKEN_LANES] += x[d] * y[d];
    return vkvk_tree32_sum(s);
}

/* Sign bit of channel d in the rotsign sign vector, as a float bit mask. */
static inline uint32_t vkvk_ref_negbit(uint32_t d)
{
    return (uint32_t)((vkvk_rot_negw[d / 64u] >> (d % 64u)) & 1u) << 31;
}

/* Reference rotsign encoder of one head for a constant dtype `dt` (inlined
 * into vkvk_ref_enc_rot per dtype); see codec_internal.h and
 * docs/BLOCK_FORMAT.md ("rotsign") for the operations. The sign vector comes
 * from the precomputed vkvk_rot_negw, and TOKEN mode converts each element
 * once (the converted rows are kept in scratch for the second pass). */
static inline __attribute__((always_inline)) int
vkvk_ref_enc_rot_dt(const vkvk_rot_args *ra, const int dt, const uint16_t *src, size_t tstride,
                    const uint32_t *vt, uint32_t nv, uint32_t hd, uint8_t *bits, size_t bstride,
                    uint8_t *vec, uint8_t *scl, size_t sstride, float *scratch)
{
    float *m = scratch, *z = scratch + hd, *a = scratch + 2u * (size_t)hd;
    float *u = a + nv;
    float fenc, fdec;
    vkvk_rot_factors(hd, &fenc, &fdec);
    if (ra->mode == VKV_GROUP_TOKEN) {
        for (uint32_t d = 0; d < hd; d++)
            m[d] = 0.0f;
        for (uint32_t j = 0; j < nv; j++) {
            const uint16_t *row = src + vt[j] * tstride;
            float *xj = u + (size_t)j * hd;
            for (uint32_t d = 0; d < hd; d++) {
                if (vkvk_nonfinite(row[d], dt))
                    return VKV_ENONFINITE;
                xj[d] = vkvk_to_f32(row[d], dt);
                m[d] += xj[d];
            }
        }
        for (uint32_t d = 0; d < hd; d++) {
            uint16_t h = vkvk_from_f32(m[d] / (float)nv, dt);
            vkvk_st16(vec + 2u * d, h);
            m[d] = vkvk_to_f32(h, dt);
        }
        for (uint32_t j = 0; j < nv; j++) {
            const float *xj = u + (size_t)j * hd;
            for (uint32_t d = 0; d < hd; d++) /* y, negated where neg(d) */
                z[d] = vkvk_bits_f32(vkvk_f32_bits(xj[d] - m[d]) ^ vkvk_ref_negbit(d));
            vkvk_fwht(z, hd);
            float s[VKVK_TOKEN_LANES];
            for (int k = 0; k < VKVK_TOKEN_LANES; k++)
                s[k] = 0.0f;
            uint8_t *b = bits + j * bstride;
            for (uint32_t d = 0; d < hd; d += 8) {
                unsigned byte = 0;
                for (unsigned k = 0; k < 8; k++) {
                    byte |= (unsigned)(z[d + k] >= 0.0f) << k;
                    s[(d + k) % VKVK_TOKEN_LANES] += fabsf(z[d + k]);
                }
                b[d / 8u] = (uint8_t)byte;
            }
            vkvk_rot_scale_put_fast(scl + j * sstride, vkvk_tree32_sum(s) * fenc, ra->sbits, dt);
        }
        return 0;
    }
    /* CHANNEL: rank-1 magnitude a_j * b_d of the signs */
    float *b = m, *q = z;
    for (uint32_t d = 0; d < hd; d++)
        b[d] = 0.0f;
    for (uint32_t j = 0; j < nv; j++) {
        const uint16_t *row = src + vt[j] * tstride;
        float *uj = u + (size_t)j * hd;
        uint8_t *bb = bits + j * bstride;
        for (uint32_t d = 0; d < hd; d += 8) {
            unsigned byte = 0;
            for (unsigned k = 0; k < 8; k++) {
                if (vkvk_nonfinite(row[d + k], dt))
                    return VKV_ENONFINITE;
                float x = vkvk_to_f32(row[d + k], dt);
                byte |= (unsigned)(x >= 0.0f) << k;
                uj[d + k] = fabsf(x);
                b[d + k] += uj[d + k];
            }
            bb[d / 8u] = (uint8_t)byte;
        }
    }
    for (uint32_t d = 0; d < hd; d++)
        b[d] = b[d] / (float)nv;
    for (unsigned it = 0; it < ra->iters; it++) {
        float bb = vkvk_ref_dot32(b, b, hd), aa = 0.0f;
        for (uint32_t j = 0; j < nv; j++) {
            a[j] = bb > 0.0f ? vkvk_ref_dot32(u + (size_t)j * hd, b, hd) / bb : 0.0f;
            aa += a[j] * a[j];
        }
        for (uint32_t d = 0; d < hd; d++)
            q[d] = 0.0f;
        for (uint32_t j = 0; j < nv; j++)
            for (uint32_t d = 0; d < hd; d++)
                q[d] += u[(size_t)j * hd + d] * a[j];
        for (uint32_t d = 0; d < hd; d++)
            b[d] = aa > 0.0f ? q[d] / aa : 0.0f;
    }
    float bm = 0.0f;
    for (uint32_t d = 0; d < hd; d++)
        bm = vkvk_maxf(b[d], bm);
    for (uint32_t d = 0; d < hd; d++) {
        uint16_t h = vkvk_from_f32(bm > 0.0f ? b[d] / bm : 0.0f, dt);
        vkvk_st16(vec + 2u * d, h);
        b[d] = vkvk_to_f32(h, dt);
    }
    float bb = vkvk_ref_dot32(b, b, hd);
    for (uint32_t j = 0; j < nv; j++) {
        float aj = bb > 0.0f ? vkvk_ref_dot32(u + (size_t)j * hd, b, hd) / bb : 0.0f;
        vkvk_rot_scale_put_fast(scl + j * sstride, aj, ra->sbits, dt);
    }
    return 0;
}

/* Reference rotsign encoder of one tensor of one layer (table entry; see
 * codec_internal.h): each head in turn, one dtype-specialised pass per head.
 * Writes into the caller's bits/vec/scl; scratch is caller memory. */
int vkvk_ref_enc_rot(const vkvk_rot_args *ra, const uint16_t *src, size_t tstride, size_t hstride,
                     const uint32_t *vt, uint32_t nv, uint32_t heads, uint32_t hd, uint8_t *bits,
                     uint8_t *vec, uint8_t *scl, float *scratch)
{
    const size_t sb = ra->sbits / 8u, brow = (size_t)heads * (hd / 8u);
    for (uint32_t h = 0; h < heads; h++) {
        const uint16_t *s = src + h * hstride;
        uint8_t *b = bits + (size_t)h * (hd / 8u), *v = vec + (size_t)h * hd * 2u,
                *c = scl + h * sb;
        int rc = ra->dtype == VKV_DTYPE_BF16
                     ? vkvk_ref_enc_rot_dt(ra, VKV_DTYPE_BF16, s, tstride, vt, nv, hd, b, brow, v,
                                           c, heads * sb, scratch)
                     : vkvk_ref_enc_rot_dt(ra, VKV_DTYPE_F16, s, tstride, vt, nv, hd, b, brow, v, c,
                                           heads * sb, scratch);
        if (rc != VKV_OK)
            return rc;
    }
    return VKV_OK;
}

/* Reference rotsign decoder of one visual token (all heads) for a constant
 * dtype `dt` (inlined into vkvk_ref_dec_rot per dtype). */
static inline __attribute__((always_inline)) void
vkvk_ref_dec_rot_dt(const vkvk_rot_args *ra, const int dt, const uint8_t *bits, const uint8_t *vec,
                    const uint8_t *scl, uint32_t heads, uint32_t hd, uint16_t *dst,
                    size_t head_stride)
{
    float w[VKV_BLOCK_MAX_HEAD_DIM];
    float fenc, fdec;
    vkvk_rot_factors(hd, &fenc, &fdec);
    for (uint32_t h = 0; h < heads; h++) {
        const uint8_t *b = bits + (size_t)h * (hd / 8u);
        const uint8_t *v = vec + (size_t)h * hd * 2u;
        float A = vkvk_rot_scale_get(scl + (size_t)h * (ra->sbits / 8u), ra->sbits, dt);
        uint16_t *o = dst + h * head_stride;
        if (ra->mode == VKV_GROUP_TOKEN) {
            float c = A * fdec;
            for (uint32_t d = 0; d < hd; d++)
                w[d] = ((b[d >> 3] >> (d & 7u)) & 1u) ? 1.0f : -1.0f;
            vkvk_fwht(w, hd);
            for (uint32_t d = 0; d < hd; d++) {
                float p = vkvk_bits_f32(vkvk_f32_bits(c * w[d]) ^ vkvk_ref_negbit(d));
                o[d] = vkvk_rot_out(p + vkvk_to_f32(vkvk_ld16(v + 2u * d), dt), dt);
            }
        } else {
            for (uint32_t d = 0; d < hd; d++) {
                float p = A * vkvk_to_f32(vkvk_ld16(v + 2u * d), dt);
                o[d] = vkvk_rot_out(((b[d >> 3] >> (d & 7u)) & 1u) ? p : -p, dt);
            }
        }
    }
}

/* Reference rotsign decoder of one visual token (table entry). */
void vkvk_ref_dec_rot(const vkvk_rot_args *ra, const uint8_t *bits, const uint8_t *vec,
                      const uint8_t *scl, uint32_t heads, uint32_t hd, uint16_t *dst,
                      size_t head_stride)
{
    if (ra->dtype == VKV_DTYPE_BF16)
        vkvk_ref_dec_rot_dt(ra, VKV_DTYPE_BF16, bits, vec, scl, heads, hd, dst, head_stride);
    else
        vkvk_ref_dec_rot_dt(ra, VKV_DTYPE_F16, bits, vec, scl, heads, hd, dst, head_stride);
}

const vkvk_kernels vkvk_kernels_scalar = {
    "scalar",           vkvk_ref_enc_channel, vkvk_ref_enc_token, vkvk_ref_dec_channel,
    vkvk_ref_dec_token, vkvk_ref_enc_rot,     vkvk_ref_dec_rot,
};
