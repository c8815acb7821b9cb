/*
 * kernels/codec_simd_channel.h - the CHANNEL-mode encoder written once over
 * a vector width, bit-identical to vkvk_ref_enc_channel_part (codec_ref.c):
 * one SIMD lane per channel, tokens accumulated in order, per-lane level
 * math done by the shared scalar helpers of codec_math.h.
 *
 * The including file defines, for its instruction set:
 *   VKVK_SFX(name)            name suffix
 *   VKVK_VW                   lanes (channels) per vector: 8 or 16
 *   vkvk_vf, vkvk_vm, vkvk_vc, vkvk_vb   float vector, compare mask, count vector, bad flag
 *   V_ZERO() V_SET1(x) V_ADD(a,b) V_MIN(a,b) V_MAX(a,b) V_LD(p) V_ST(p,v)
 *   V_LDH(p, dtype, &bad)     load VW 16-bit elements as floats, flag Inf/NaN
 *   V_BZERO() V_BANY(b)       bad flag init / test
 *   V_GE(x,t)                 mask of x >= t (ordered)
 *   V_MADD(a,m,x) V_MADDN(a,m,x)  m ? a+x : a  /  m ? a : a+x
 *   V_CZERO() V_CADD(c,m) V_CST(uint32_t *p, c)   per-lane counts of m
 *   V_STBITS(uint8_t *p, m)   store the mask as VW/8 bytes, lane j = bit j
 * MINPS/MAXPS operand order matters for -0/+0: V_MIN(x, acc) mirrors
 * vkvk_minf(x, acc).
 */
#ifndef VKVK_SFX
#error "define the vector macros before including codec_simd_channel.h"
#endif

#define VKVK_NB_MAX 4 /* vectors (of VW channels) processed together */

/* Encodes channels [d0, d0 + NB*VW) of a CHANNEL group (see enc_channel in
 * codec_internal.h). scratch holds n * NB*VW floats of the group plus n more
 * for quantile selection. NB and dtype are constants after inlining. */
static inline __attribute__((always_inline)) int
VKVK_SFX(ch_batch)(const vkvk_rule_args *ra, const int dtype, const int NB, const uint16_t *src,
                   size_t tstride, uint32_t n, uint32_t d0, uint8_t *bits, size_t bstride,
                   uint8_t *lev_lo, uint8_t *lev_hi, float *scratch)
{
    enum { MAXW = VKVK_NB_MAX * VKVK_VW };
    const int W = NB * VKVK_VW;
    vkvk_vf sum[VKVK_NB_MAX], mn[VKVK_NB_MAX], mx[VKVK_NB_MAX];
    vkvk_vb bad = V_BZERO();
    _Pragma("GCC unroll 4") for (int c = 0; c < NB; c++)
    {
        sum[c] = V_ZERO();
        mn[c] = V_SET1(INFINITY);
        mx[c] = V_SET1(-INFINITY);
    }
    for (uint32_t t = 0; t < n; t++) {
        const uint16_t *p = src + t * tstride + d0;
        float *x = scratch + (size_t)t * W;
        if (t + 8 < n) { /* strided rows: help the hardware prefetcher */
            __builtin_prefetch(p + 8 * tstride);
            if (W * 2 > 64)
                __builtin_prefetch(p + 8 * tstride + 32);
        }
        _Pragma("GCC unroll 4") for (int c = 0; c < NB; c++)
        {
            vkvk_vf v = V_LDH(p + c * VKVK_VW, dtype, &bad);
            V_ST(x + c * VKVK_VW, v);
            sum[c] = V_ADD(sum[c], v);
            mn[c] = V_MIN(v, mn[c]);
            mx[c] = V_MAX(v, mx[c]);
        }
    }
    if (V_BANY(bad))
        return VKV_ENONFINITE;
    float fs[MAXW], fmn[MAXW], fmx[MAXW], lo[MAXW], hi[MAXW], mid[MAXW];
    _Pragma("GCC unroll 4") for (int c = 0; c < NB; c++)
    {
        V_ST(fs + c * VKVK_VW, sum[c]);
        V_ST(fmn + c * VKVK_VW, mn[c]);
        V_ST(fmx + c * VKVK_VW, mx[c]);
    }
    for (int j = 0; j < W; j++) {
        lo[j] = fmn[j];
        hi[j] = fmx[j];
    }
    if (ra->rule == VKV_RULE_MINMAX) {
        for (int j = 0; j < W; j++)
            if (fmn[j] != fmx[j])
                vkvk_minmax_levels(fmn[j], fmx[j], ra->param, &lo[j], &hi[j]);
    } else if (ra->rule == VKV_RULE_QUANTILE) {
        float *tmp = scratch + (size_t)n * W;
        for (int j = 0; j < W; j++) {
            if (fmn[j] == fmx[j])
                continue;
            for (uint32_t t = 0; t < n; t++)
                tmp[t] = scratch[(size_t)t * W + j];
            vkvk_quantile_levels(tmp, n, ra->param, &lo[j], &hi[j]);
        }
    } else {
        float thr[MAXW], a[MAXW], b[MAXW];
        uint32_t k[MAXW];
        for (int j = 0; j < W; j++)
            thr[j] = vkvk_lloyd_start(fs[j], n);
        for (unsigned it = 0; it < ra->iters; it++) {
            vkvk_vf vt[VKVK_NB_MAX], sh[VKVK_NB_MAX], sl[VKVK_NB_MAX];
            vkvk_vc cnt[VKVK_NB_MAX];
            _Pragma("GCC unroll 4") for (int c = 0; c < NB; c++)
            {
                vt[c] = V_LD(thr + c * VKVK_VW);
                sh[c] = V_ZERO();
                sl[c] = V_ZERO();
                cnt[c] = V_CZERO();
            }
            for (uint32_t t = 0; t < n; t++) {
                const float *x = scratch + (size_t)t * W;
                _Pragma("GCC unroll 4") for (int c = 0; c < NB; c++)
                {
                    vkvk_vf v = V_LD(x + c * VKVK_VW);
                    vkvk_vm m = V_GE(v, vt[c]);
                    sh[c] = V_MADD(sh[c], m, v);
                    sl[c] = V_MADDN(sl[c], m, v);
                    cnt[c] = V_CADD(cnt[c], m);
                }
            }
            _Pragma("GCC unroll 4") for (int c = 0; c < NB; c++)
            {
                V_ST(a + c * VKVK_VW, sh[c]);
                V_ST(b + c * VKVK_VW, sl[c]);
                V_CST(k + c * VKVK_VW, cnt[c]);
            }
            for (int j = 0; j < W; j++)
                thr[j] = vkvk_lloyd_update(b[j], n - k[j], a[j], k[j], &lo[j], &hi[j]);
        }
    }
    for (int j = 0; j < W; j++) {
        uint16_t lh, hh;
        mid[j] = vkvk_group_finish(dtype, lo[j], hi[j], fmn[j], fmx[j], &lh, &hh);
        vkvk_st16(lev_lo + 2u * (d0 + (uint32_t)j), lh);
        vkvk_st16(lev_hi + 2u * (d0 + (uint32_t)j), hh);
    }
    vkvk_vf vm[VKVK_NB_MAX];
    _Pragma("GCC unroll 4") for (int c = 0; c < NB; c++) vm[c] = V_LD(mid + c * VKVK_VW);
    for (uint32_t t = 0; t < n; t++) {
        const float *x = scratch + (size_t)t * W;
        uint8_t *o = bits + t * bstride + d0 / 8u;
        _Pragma("GCC unroll 4") for (int c = 0; c < NB; c++)
            V_STBITS(o + c * (VKVK_VW / 8), V_GE(V_LD(x + c * VKVK_VW), vm[c]));
    }
    return VKV_OK;
}

/* Whole-row CHANNEL encoder for a constant dtype: batches of NB_MAX vectors,
 * then single vectors, then the reference for a tail narrower than VW. */
static inline __attribute__((always_inline)) int
VKVK_SFX(ch_enc_dt)(const vkvk_rule_args *ra, const int dtype, const uint16_t *src, size_t tstride,
                    uint32_t n, uint32_t hd, uint8_t *bits, size_t bstride, uint8_t *lev_lo,
                    uint8_t *lev_hi, float *scratch)
{
    uint32_t d = 0;
    int rc;
    for (; d + VKVK_NB_MAX * VKVK_VW <= hd; d += VKVK_NB_MAX * VKVK_VW)
        if ((rc = VKVK_SFX(ch_batch)(ra, dtype, VKVK_NB_MAX, src, tstride, n, d, bits, bstride,
                                     lev_lo, lev_hi, scratch)) != VKV_OK)
            return rc;
    for (; d + VKVK_VW <= hd; d += VKVK_VW)
        if ((rc = VKVK_SFX(ch_batch)(ra, dtype, 1, src, tstride, n, d, bits, bstride, lev_lo,
                                     lev_hi, scratch)) != VKV_OK)
            return rc;
    if (d < hd)
        return vkvk_ref_enc_channel_part(ra, src, tstride, n, d, hd, bits, bstride, lev_lo, lev_hi,
                                         scratch);
    return VKV_OK;
}

/* Kernel-table entry: dispatches on the dtype once per group. */
static int VKVK_SFX(enc_channel)(const vkvk_rule_args *ra, const uint16_t *src, size_t tstride,
                                 uint32_t n, uint32_t hd, uint8_t *bits, size_t bstride,
                                 uint8_t *lev_lo, uint8_t *lev_hi, float *scratch)
{
    if (ra->dtype == VKV_DTYPE_BF16)
        return VKVK_SFX(ch_enc_dt)(ra, VKV_DTYPE_BF16, src, tstride, n, hd, bits, bstride, lev_lo,
                                   lev_hi, scratch);
    return VKVK_SFX(ch_enc_dt)(ra, VKV_DTYPE_F16, src, tstride, n, hd, bits, bstride, lev_lo,
                               lev_hi, scratch);
}
