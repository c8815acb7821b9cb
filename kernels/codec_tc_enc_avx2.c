/*
 * kernels/codec_tc_enc_avx2.c - the AVX2 (+F16C) encoder of block rule 5
 * (VKV_RULE_TC), the twin of the scalar reference vkvk_tc_enc_tensor
 * (codec_tc.c): the same steps with the same binary32 / binary64
 * operations in the same order, so it writes the same bytes
 * (tests/kernels/kernels_tc_test.c compares them). Sums over the tokens
 * with one accumulator per channel run 4 or 8 channels per step; sums over
 * a token's channels (token scales, rank-1 magnitudes) run 8 tokens per
 * step, one lane per token, each lane adding the channels in the scalar
 * order. The source is converted to binary32 once per head; the greedy
 * allocation keeps each channel's gain instead of recomputing it.
 * No fused multiply-add (the file is built without -mfma and with
 * -ffp-contract=off). Allocation-free; nothing here owns memory.
 */
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "kernels/codec_internal.h"
#include "kernels/codec_tc.h"

/* The levels of vkvk_tc_level per bit count b (row b, 2^b entries, padded
 * to 8 with zeros): the table an 8-lane permute looks codes up in. */
static const float vkvk_tce_rows[4][8] = {
    {0.0f},
    {-0.7979f, 0.7979f},
    {-1.5104f, -0.4528f, 0.4528f, 1.5104f},
    {-2.152f, -1.344f, -0.756f, -0.2451f, 0.2451f, 0.756f, 1.344f, 2.152f},
};

/* The 14 levels in row order padded to 16 (two permute tables), as
 * codec_tc_avx2.c. */
static const float vkvk_tce_lv16[16] = {-0.7979f, 0.7979f, -1.5104f, -0.4528f, 0.4528f, 1.5104f,
                                        -2.152f,  -1.344f, -0.756f,  -0.2451f, 0.2451f, 0.756f,
                                        1.344f,   2.152f,  0.0f,     0.0f};

/* Converts head hh of the nv visual rows of src to binary32 rows y[nv][hd];
 * returns false when an element is Inf or NaN (y then partly written). */
static bool vkvk_tce_load(const uint16_t *src, size_t tstride, size_t hstride, const uint32_t *vt,
                          uint32_t nv, uint32_t hd, int dt, uint32_t hh, float *y)
{
    const __m128i em = _mm_set1_epi16((short)(dt == VKV_DTYPE_BF16 ? 0x7f80 : 0x7c00));
    __m128i bad = _mm_setzero_si128();
    for (uint32_t j = 0; j < nv; j++) {
        const uint16_t *p = src + (size_t)vt[j] * tstride + (size_t)hh * hstride;
        float *yr = y + (size_t)j * hd;
        for (uint32_t d = 0; d < hd; d += 8) {
            const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + d));
            bad = _mm_or_si128(bad, _mm_cmpeq_epi16(_mm_and_si128(v, em), em));
            __m256 f;
            if (dt == VKV_DTYPE_BF16)
                f = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
            else
                f = _mm256_cvtph_ps(v);
            _mm256_storeu_ps(yr + d, f);
        }
    }
    return _mm_movemask_epi8(bad) == 0;
}

/* Per-channel sums over the tokens of y[nv][hd] in token order: s1 of x,
 * s2 of x^2 (binary64, 4 channels per step). When mu is not NULL, y is
 * first centred in place (x = y - mu, binary32) and only s2 is summed. */
static void vkvk_tce_sums(float *y, uint32_t nv, uint32_t hd, const float *mu, double *s1,
                          double *s2)
{
    for (uint32_t d = 0; d < hd; d++)
        s1[d] = s2[d] = 0.0;
    for (uint32_t j = 0; j < nv; j++) {
        float *yr = y + (size_t)j * hd;
        for (uint32_t d = 0; d < hd; d += 4) {
            __m128 xf = _mm_loadu_ps(yr + d);
            if (mu) {
                xf = _mm_sub_ps(xf, _mm_loadu_ps(mu + d));
                _mm_storeu_ps(yr + d, xf);
            }
            const __m256d x = _mm256_cvtps_pd(xf);
            if (!mu)
                _mm256_storeu_pd(s1 + d, _mm256_add_pd(_mm256_loadu_pd(s1 + d), x));
            _mm256_storeu_pd(s2 + d, _mm256_add_pd(_mm256_loadu_pd(s2 + d), _mm256_mul_pd(x, x)));
        }
    }
}

/* The allocation gain of channel d at nb bits, the reference's expression;
 * 0 where the reference never picks the channel: at 3 bits, and where the
 * gain is not positive (NaN included: 0 * an infinite variance). */
static double vkvk_tce_gain(const float *wt, const float *var, uint32_t d, uint32_t nb)
{
    if (nb >= 3u)
        return 0.0;
    const double g = (double)wt[d] * var[d] * (vkvk_tc_mse[nb] - vkvk_tc_mse[nb + 1u]);
    return g > 0.0 ? g : 0.0;
}

/* The reference's greedy reverse water-filling with each channel's gain
 * kept in g[hd] (scratch): budget times the first channel of the largest
 * positive gain gets a bit. Writes nb[hd]. */
static void vkvk_tce_allocate(const float *wt, const float *var, uint32_t hd, uint32_t budget,
                              uint8_t *nb, double *g)
{
    for (uint32_t d = 0; d < hd; d++) {
        nb[d] = 0;
        g[d] = vkvk_tce_gain(wt, var, d, 0);
    }
    for (uint32_t i = 0; i < budget; i++) {
        __m256d mx = _mm256_setzero_pd();
        for (uint32_t d = 0; d < hd; d += 4)
            mx = _mm256_max_pd(_mm256_loadu_pd(g + d), mx);
        __m128d m2 = _mm_max_pd(_mm256_castpd256_pd128(mx), _mm256_extractf128_pd(mx, 1));
        const double best = _mm_cvtsd_f64(_mm_max_sd(m2, _mm_unpackhi_pd(m2, m2)));
        if (!(best > 0.0))
            break;
        uint32_t at = 0;
        while (g[at] != best)
            at++;
        nb[at]++;
        g[at] = vkvk_tce_gain(wt, var, at, nb[at]);
    }
}

/* yt[d * nv + j] = y[j * hd + d]: 8 x 8 blocks through registers (pure
 * data movement), the last nv % 8 tokens one by one. */
static void vkvk_tce_transpose(const float *y, uint32_t nv, uint32_t hd, float *yt)
{
    uint32_t j = 0;
    for (; j + 8u <= nv; j += 8)
        for (uint32_t d = 0; d < hd; d += 8) {
            __m256 r[8], t[8], u[8];
            for (int i = 0; i < 8; i++)
                r[i] = _mm256_loadu_ps(y + (size_t)(j + i) * hd + d);
            for (int i = 0; i < 8; i += 2) {
                t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
            }
            for (int i = 0; i < 8; i += 4) {
                u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
                u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
                u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
                u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
            }
            for (int i = 0; i < 4; i++) {
                float *o = yt + (size_t)(d + (uint32_t)i) * nv + j;
                _mm256_storeu_ps(o, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
                _mm256_storeu_ps(o + 4u * (size_t)nv, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
            }
        }
    for (; j < nv; j++)
        for (uint32_t d = 0; d < hd; d++)
            yt[(size_t)d * nv + j] = y[(size_t)j * hd + d];
}

/* ct[d * nv + j] = cj[j * hd + d] for the tokens below nv rounded down to
 * 8, in 8 x 8 byte blocks. */
static void vkvk_tce_transpose_codes(const uint8_t *cj, uint32_t nv, uint32_t hd, uint8_t *ct)
{
    for (uint32_t j = 0; j + 8u <= nv; j += 8)
        for (uint32_t d = 0; d < hd; d += 8) {
            __m128i a[8], b[4], c[4], e[4];
            for (int i = 0; i < 8; i++)
                a[i] =
                    _mm_loadl_epi64((const __m128i *)(const void *)(cj + (size_t)(j + i) * hd + d));
            for (int i = 0; i < 4; i++)
                b[i] = _mm_unpacklo_epi8(a[2 * i], a[2 * i + 1]);
            c[0] = _mm_unpacklo_epi16(b[0], b[1]);
            c[1] = _mm_unpackhi_epi16(b[0], b[1]);
            c[2] = _mm_unpacklo_epi16(b[2], b[3]);
            c[3] = _mm_unpackhi_epi16(b[2], b[3]);
            e[0] = _mm_unpacklo_epi32(c[0], c[2]);
            e[1] = _mm_unpackhi_epi32(c[0], c[2]);
            e[2] = _mm_unpacklo_epi32(c[1], c[3]);
            e[3] = _mm_unpackhi_epi32(c[1], c[3]);
            for (int i = 0; i < 4; i++) {
                uint8_t *o = ct + (size_t)(d + 2u * (uint32_t)i) * nv + j;
                _mm_storel_epi64((__m128i *)(void *)o, e[i]);
                _mm_storel_epi64((__m128i *)(void *)(o + nv), _mm_unpackhi_epi64(e[i], e[i]));
            }
        }
}

/* The reference's first token scales: a[j] = sqrt(mean over the m coded
 * channels (sd > 0) of (y_jd / sd_d)^2), 8 tokens per step (from yt, y
 * transposed), each lane summing its channels in order (binary64). */
static void vkvk_tce_first_scales(const float *y, const float *yt, uint32_t nv, uint32_t hd,
                                  const double *sd, uint32_t m, float *a)
{
    uint32_t j = 0;
    for (; m && j + 8u <= nv; j += 8) {
        __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
        for (uint32_t d = 0; d < hd; d++) {
            if (!(sd[d] > 0.0))
                continue;
            const __m256 x = _mm256_loadu_ps(yt + (size_t)d * nv + j);
            const __m256d s = _mm256_set1_pd(sd[d]);
            const __m256d zl = _mm256_div_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)), s);
            const __m256d zh = _mm256_div_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)), s);
            lo = _mm256_add_pd(lo, _mm256_mul_pd(zl, zl));
            hi = _mm256_add_pd(hi, _mm256_mul_pd(zh, zh));
        }
        double acc[8];
        _mm256_storeu_pd(acc, lo);
        _mm256_storeu_pd(acc + 4, hi);
        for (uint32_t k = 0; k < 8u; k++)
            a[j + k] = (float)sqrt(acc[k] / m);
    }
    for (; j < nv; j++) {
        double acc = 0.0;
        const float *yr = y + (size_t)j * hd;
        for (uint32_t d = 0; d < hd; d++)
            if (sd[d] > 0.0) {
                double z = yr[d] / sd[d];
                acc += z * z;
            }
        a[j] = m ? (float)sqrt(acc / m) : 0.0f;
    }
}

/* The state of one head's fit, as the reference's vkvk_tc_fit (every array
 * caller scratch of hd entries, cj and ct of nv * hd code bytes, yt of
 * nv * hd floats, ia of nv floats). */
typedef struct vkvk_tce_fit {
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
    const float *yt; /* y transposed: yt[d * nv + j] */
    uint8_t *ct;     /* the codes transposed: ct[d * nv + j] */
    float *ia;       /* nv inverse token scales */
} vkvk_tce_fit;

/* The codes of lanes d0..d0+7 of one token (x the centred values, b the
 * bit counts, iu the inverse channel scales, ia the inverse token scale):
 * the reference's vkvk_tc_code for 2 and 3 bits, the sign for 1, 0 for 0. */
static __m256i vkvk_tce_codes8(__m256 x, __m256i b, __m256 iu, __m256 ia)
{
    static const float t3[7] = {-1.748f, -1.05f, -0.5006f, 0.0f, 0.5006f, 1.05f, 1.748f};
    const __m256 z = _mm256_mul_ps(_mm256_mul_ps(x, iu), ia);
    __m256i c2 = _mm256_setzero_si256(), c3 = _mm256_setzero_si256();
    for (int k = 0; k < 7; k++) {
        const __m256i ge = _mm256_castps_si256(_mm256_cmp_ps(z, _mm256_set1_ps(t3[k]), _CMP_GE_OQ));
        c3 = _mm256_sub_epi32(c3, ge);
    }
    c2 = _mm256_sub_epi32(
        c2, _mm256_castps_si256(_mm256_cmp_ps(z, _mm256_set1_ps(-0.9816f), _CMP_GE_OQ)));
    c2 = _mm256_sub_epi32(c2,
                          _mm256_castps_si256(_mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_GE_OQ)));
    c2 = _mm256_sub_epi32(
        c2, _mm256_castps_si256(_mm256_cmp_ps(z, _mm256_set1_ps(0.9816f), _CMP_GE_OQ)));
    const __m256i c1 = _mm256_srli_epi32(
        _mm256_castps_si256(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ)), 31);
    const __m256i is1 = _mm256_cmpeq_epi32(b, _mm256_set1_epi32(1));
    const __m256i is2 = _mm256_cmpeq_epi32(b, _mm256_set1_epi32(2));
    const __m256i is3 = _mm256_cmpeq_epi32(b, _mm256_set1_epi32(3));
    return _mm256_or_si256(_mm256_or_si256(_mm256_and_si256(c1, is1), _mm256_and_si256(c2, is2)),
                           _mm256_and_si256(c3, is3));
}

/* The levels L[b][code] of 8 lanes (0 where b = 0). */
static __m256 vkvk_tce_levels8(__m256i code, __m256i b)
{
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i p2 = _mm256_sllv_epi32(one, b);
    const __m256i has = _mm256_cmpgt_epi32(b, _mm256_setzero_si256());
    const __m256i idx =
        _mm256_and_si256(_mm256_add_epi32(code, _mm256_sub_epi32(p2, _mm256_set1_epi32(2))), has);
    const __m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(vkvk_tce_lv16), idx);
    const __m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(vkvk_tce_lv16 + 8), idx);
    const __m256 hs = _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(7)));
    return _mm256_and_ps(_mm256_blendv_ps(lo, hi, hs), _mm256_castsi256_ps(has));
}

/* Stores the low bytes of the 8 lanes of c at o. */
static void vkvk_tce_store_bytes(__m256i c, uint8_t *o)
{
    const __m256i p = _mm256_packus_epi16(_mm256_packus_epi32(c, c), _mm256_setzero_si256());
    const uint32_t lo = (uint32_t)_mm_cvtsi128_si32(_mm256_castsi256_si128(p));
    const uint32_t hi = (uint32_t)_mm_cvtsi128_si32(_mm256_extracti128_si256(p, 1));
    const uint64_t v = lo | (uint64_t)hi << 32;
    memcpy(o, &v, 8);
}

/* Channels d0..d0+7 over every token (in order): the codes and the
 * channel least-squares sums num += x * r, den += r * r with r = a * L[code]
 * (binary64 sums, r binary32) kept in registers; ia[j] = 1 / a[j]. A token
 * with a <= 0 gets zero codes and adds x * 0 to num. Channels without bits
 * add zeros too (x * 0 to num, 0 to den): their den stays 0, so their
 * scale is 0 as in the reference, which skips them. */
static void vkvk_tce_pick_block(const vkvk_tce_fit *p, const float *a, const float *ia, uint32_t d0)
{
    const uint32_t hd = p->hd;
    const __m256i b =
        _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(p->nb + d0)));
    const __m256 iu = _mm256_loadu_ps(p->iu + d0);
    __m256d n0 = _mm256_loadu_pd(p->num + d0), n1 = _mm256_loadu_pd(p->num + d0 + 4);
    __m256d e0 = _mm256_loadu_pd(p->den + d0), e1 = _mm256_loadu_pd(p->den + d0 + 4);
    for (uint32_t j = 0; j < p->nv; j++) {
        const __m256 x = _mm256_loadu_ps(p->y + (size_t)j * hd + d0);
        const __m256d x0 = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
        const __m256d x1 = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
        uint8_t *cr = p->cj + (size_t)j * hd + d0;
        if (!(a[j] > 0.0f)) {
            memset(cr, 0, 8);
            n0 = _mm256_add_pd(n0, _mm256_mul_pd(x0, _mm256_setzero_pd()));
            n1 = _mm256_add_pd(n1, _mm256_mul_pd(x1, _mm256_setzero_pd()));
            continue;
        }
        const __m256i code = vkvk_tce_codes8(x, b, iu, _mm256_set1_ps(ia[j]));
        vkvk_tce_store_bytes(code, cr);
        const __m256 r = _mm256_mul_ps(_mm256_set1_ps(a[j]), vkvk_tce_levels8(code, b));
        const __m256d r0 = _mm256_cvtps_pd(_mm256_castps256_ps128(r));
        const __m256d r1 = _mm256_cvtps_pd(_mm256_extractf128_ps(r, 1));
        n0 = _mm256_add_pd(n0, _mm256_mul_pd(x0, r0));
        n1 = _mm256_add_pd(n1, _mm256_mul_pd(x1, r1));
        e0 = _mm256_add_pd(e0, _mm256_mul_pd(r0, r0));
        e1 = _mm256_add_pd(e1, _mm256_mul_pd(r1, r1));
    }
    _mm256_storeu_pd(p->num + d0, n0);
    _mm256_storeu_pd(p->num + d0 + 4, n1);
    _mm256_storeu_pd(p->den + d0, e0);
    _mm256_storeu_pd(p->den + d0 + 4, e1);
}

/* The reference's vkvk_tc_pick_codes: codes of every token under the token
 * scales a, least-squares channel scales, their 8-bit codes. */
static void vkvk_tce_pick_codes(vkvk_tce_fit *p, const float *a, int use_sc)
{
    const uint32_t hd = p->hd;
    for (uint32_t d = 0; d < hd; d++) {
        p->num[d] = p->den[d] = 0.0;
        double u = use_sc && p->scf[d] > 0.0f ? (double)p->scf[d] : p->sd[d];
        p->iu[d] = u > 0.0 ? (float)(1.0 / u) : 0.0f;
    }
    for (uint32_t j = 0; j < p->nv; j++)
        p->ia[j] = a[j] > 0.0f ? 1.0f / a[j] : 0.0f;
    for (uint32_t d = 0; d < hd; d += 8)
        vkvk_tce_pick_block(p, a, p->ia, d);
    for (uint32_t d = 0; d < hd; d++)
        p->scf[d] = p->den[d] > 0.0 ? (float)(p->num[d] / p->den[d]) : 0.0f;
    vkvk_tc_code_scales(p->scf, hd, p->dtype, p->cs, 1, p->stop);
}

/* The reference's vkvk_tc_refit_scales for tokens j0 .. j0+7 (one lane
 * each; the channels in order). */
static void vkvk_tce_refit8(const vkvk_tce_fit *p, uint32_t j0, float *a)
{
    const uint32_t hd = p->hd;
    const float *yb = p->yt + j0;
    const uint8_t *cb = p->ct + j0;
    __m256d n0 = _mm256_setzero_pd(), n1 = n0, e0 = n0, e1 = n0;
    for (uint32_t d = 0; d < hd; d++) {
        const uint32_t b = p->nb[d];
        if (!b || !(p->sd[d] > 0.0))
            continue;
        const size_t o = (size_t)d * p->nv;
        const __m256i c =
            _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(cb + o)));
        const __m256 lv = _mm256_permutevar8x32_ps(_mm256_loadu_ps(vkvk_tce_rows[b]), c);
        const __m256 x = _mm256_loadu_ps(yb + o);
        const __m256d sc = _mm256_set1_pd((double)p->scf[d]), w = _mm256_set1_pd((double)p->wt[d]);
        const __m256d r0 = _mm256_mul_pd(sc, _mm256_cvtps_pd(_mm256_castps256_ps128(lv)));
        const __m256d r1 = _mm256_mul_pd(sc, _mm256_cvtps_pd(_mm256_extractf128_ps(lv, 1)));
        const __m256d x0 = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
        const __m256d x1 = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
        n0 = _mm256_add_pd(n0, _mm256_mul_pd(_mm256_mul_pd(w, x0), r0));
        n1 = _mm256_add_pd(n1, _mm256_mul_pd(_mm256_mul_pd(w, x1), r1));
        e0 = _mm256_add_pd(e0, _mm256_mul_pd(_mm256_mul_pd(w, r0), r0));
        e1 = _mm256_add_pd(e1, _mm256_mul_pd(_mm256_mul_pd(w, r1), r1));
    }
    double num[8], den[8];
    _mm256_storeu_pd(num, n0);
    _mm256_storeu_pd(num + 4, n1);
    _mm256_storeu_pd(den, e0);
    _mm256_storeu_pd(den + 4, e1);
    for (uint32_t k = 0; k < 8u; k++)
        a[j0 + k] = den[k] > 0.0 && num[k] > 0.0 ? (float)(num[k] / den[k]) : 0.0f;
}

/* The reference's vkvk_tc_refit_scales: 8 tokens at a time (the codes
 * transposed into p->ct first), the rest one by one. */
static void vkvk_tce_refit_scales(const vkvk_tce_fit *p, float *a)
{
    const uint32_t hd = p->hd;
    uint32_t j = 0;
    vkvk_tce_transpose_codes(p->cj, p->nv, hd, p->ct);
    for (; j + 8u <= p->nv; j += 8)
        vkvk_tce_refit8(p, j, a);
    for (; j < p->nv; j++) {
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

/* Packs each token's codes (cj rows, nb[d] bits each, channel order, LSB
 * first) into its cb bytes at codes + j * cstride, unused bits zero. */
static void vkvk_tce_pack(const uint8_t *cj, const uint8_t *nb, uint32_t nv, uint32_t hd,
                          uint32_t cb, uint8_t *codes, size_t cstride)
{
    for (uint32_t j = 0; j < nv; j++) {
        uint8_t *o = codes + (size_t)j * cstride, *e = o + cb;
        const uint8_t *cr = cj + (size_t)j * hd;
        uint32_t acc = 0, have = 0;
        for (uint32_t d = 0; d < hd; d++) {
            acc |= (uint32_t)cr[d] << have;
            have += nb[d];
            if (have >= 8u) {
                *o++ = (uint8_t)acc;
                acc >>= 8;
                have -= 8u;
            }
        }
        if (have)
            *o++ = (uint8_t)acc;
        memset(o, 0, (size_t)(e - o));
    }
}

/* The reference's channel statistics of one head: writes the means into
 * the record, centres y, sets var[hd] and the allocation weights wt[hd]. */
static void vkvk_tce_stats(int dtype, uint32_t nv, uint32_t hd, float *y, const float *w,
                           int energy, uint8_t *rec, float *mu, float *var, float *wt, double *s1,
                           double *s2)
{
    vkvk_tce_sums(y, nv, hd, NULL, s1, s2);
    double e2m = 0.0;
    for (uint32_t d = 0; d < hd; d++) {
        uint16_t m = vkvk_rot_out((float)(s1[d] / nv), dtype);
        rec[2u * d] = (uint8_t)m;
        rec[2u * d + 1u] = (uint8_t)(m >> 8);
        mu[d] = vkvk_to_f32(m, dtype);
        wt[d] = (float)(s2[d] / nv);
        e2m += s2[d] / nv;
    }
    e2m /= hd;
    vkvk_tce_sums(y, nv, hd, mu, s1, s2);
    for (uint32_t d = 0; d < hd; d++) {
        var[d] = (float)(s2[d] / nv);
        if (w)
            wt[d] = w[d];
        else if (energy)
            wt[d] = e2m > 0.0 ? (float)(wt[d] / e2m) : 1.0f;
        else
            wt[d] = 1.0f;
    }
}

/* The reference's vkvk_tc_code_head (the same arguments, a of 2 * nv
 * floats: the scales, then their inverses; scratch t[6*hd]
 * floats, dd[6*hd] doubles, cj[nv*hd] bytes, and yt[nv*hd] floats and
 * ct[nv*hd] bytes for the transposed rows and codes). */
static void vkvk_tce_code_head(int dtype, uint32_t nv, uint32_t hd, uint32_t budget, float *y,
                               const float *w, int energy, uint8_t *rec, uint8_t *q, size_t qstride,
                               uint8_t *codes, size_t cstride, float *a, float *t, double *dd,
                               uint8_t *cj, float *yt, uint8_t *ct)
{
    float *mu = t, *var = t + hd, *wt = t + 2u * hd;
    uint8_t *nb = (uint8_t *)(t + 3u * hd);
    uint16_t stop_h = 0;
    double *sd = dd + 4u * hd;
    vkvk_tce_fit p = {.dtype = dtype,
                      .nv = nv,
                      .hd = hd,
                      .y = y,
                      .wt = wt,
                      .nb = nb,
                      .sd = sd,
                      .cj = cj,
                      .scf = t + 4u * hd,
                      .iu = t + 5u * hd,
                      .cs = rec + 2u * hd,
                      .stop = &stop_h,
                      .num = dd + 2u * hd,
                      .den = dd + 3u * hd,
                      .yt = yt,
                      .ct = ct,
                      .ia = a + nv};
    vkvk_tce_stats(dtype, nv, hd, y, w, energy, rec, mu, var, wt, dd, dd + hd);
    vkvk_tce_allocate(wt, var, hd, budget, nb, dd + 5u * hd);
    uint32_t m = 0;
    for (uint32_t d = 0; d < hd; d++) {
        sd[d] = nb[d] && var[d] > 0.0f ? sqrt((double)var[d]) : 0.0;
        m += sd[d] > 0.0;
    }
    vkvk_tce_transpose(y, nv, hd, yt);
    vkvk_tce_first_scales(y, yt, nv, hd, sd, m, a);
    uint16_t top_h = 0;
    for (uint32_t it = 0;; it++) {
        vkvk_tc_code_scales(a, nv, dtype, q, qstride, &top_h);
        vkvk_tce_pick_codes(&p, a, it > 0);
        if (it == VKVK_TC_PASSES)
            break;
        vkvk_tce_refit_scales(&p, a);
    }
    uint8_t *al = rec + 3u * (size_t)hd;
    vkvk_tc_st(al + hd / 4u, top_h);
    vkvk_tc_st(al + hd / 4u + 2u, stop_h);
    memset(al, 0, hd / 4u);
    for (uint32_t d = 0; d < hd; d++)
        al[d >> 2] |= (uint8_t)(nb[d] << (2u * (d & 3u)));
    vkvk_tce_pack(cj, nb, nv, hd, (budget + 7u) / 8u, codes, cstride);
}

/* The reference's vkvk_tc_rank1_head (the same arguments; s1[hd] doubles
 * and yt[nv*hd] floats of scratch): channel sums 4 per step, token sums 8
 * tokens per step over x transposed. */
static void vkvk_tce_rank1_head(int dtype, uint32_t nv, uint32_t hd, const float *x, uint8_t *rec,
                                uint8_t *q, size_t qstride, uint8_t *sgn, size_t sstride, float *a,
                                float *b, double *s1, float *yt)
{
    const __m256 ab = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (uint32_t d = 0; d < hd; d++)
        s1[d] = 0.0;
    for (uint32_t j = 0; j < nv; j++)
        for (uint32_t d = 0; d < hd; d += 4) {
            const __m128 v =
                _mm_and_ps(_mm_loadu_ps(x + (size_t)j * hd + d), _mm256_castps256_ps128(ab));
            _mm256_storeu_pd(s1 + d, _mm256_add_pd(_mm256_loadu_pd(s1 + d), _mm256_cvtps_pd(v)));
        }
    double bb = 0.0;
    for (uint32_t d = 0; d < hd; d++) {
        uint16_t bh = vkvk_rot_out((float)(s1[d] / nv), dtype);
        vkvk_tc_st(rec + 2u * d, bh);
        b[d] = vkvk_to_f32(bh, dtype);
    }
    for (uint32_t d = 0; d < hd; d++)
        bb += (double)b[d] * b[d];
    vkvk_tce_transpose(x, nv, hd, yt);
    uint32_t j = 0;
    for (; j + 8u <= nv; j += 8) {
        __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
        for (uint32_t d = 0; d < hd; d++) {
            const __m256 v = _mm256_mul_ps(
                _mm256_and_ps(_mm256_loadu_ps(yt + (size_t)d * nv + j), ab), _mm256_set1_ps(b[d]));
            lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
            hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
        }
        double s[8];
        _mm256_storeu_pd(s, lo);
        _mm256_storeu_pd(s + 4, hi);
        for (uint32_t k = 0; k < 8u; k++)
            a[j + k] = bb > 0.0 ? (float)(s[k] / bb) : 0.0f;
    }
    for (; j < nv; j++) {
        const float *r = x + (size_t)j * hd;
        double s = 0.0;
        for (uint32_t d = 0; d < hd; d++)
            s += fabsf(r[d]) * b[d];
        a[j] = bb > 0.0 ? (float)(s / bb) : 0.0f;
    }
    for (j = 0; j < nv; j++) {
        uint8_t *o = sgn + (size_t)j * sstride;
        for (uint32_t d = 0; d < hd; d += 8) {
            const __m256 v = _mm256_loadu_ps(x + (size_t)j * hd + d);
            o[d >> 3] =
                (uint8_t)_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GE_OQ));
        }
    }
    uint16_t top_h;
    vkvk_tc_code_scales(a, nv, dtype, q, qstride, &top_h);
    vkvk_tc_st(rec + 2u * (size_t)hd, top_h);
}

/* See codec_tc.h. */
int vkvk_tc_enc_tensor_avx2(const vkv_block_header *h, int s, const uint16_t *src, size_t tstride,
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
    /* scratch: y[nv][hd], yt[hd][nv], a[2][nv], t[6][hd] floats, then
     * (8-byte aligned) dd[6][hd] doubles, then cj[nv][hd] and ct[hd][nv]
     * code bytes */
    float *y = scratch, *yt = y + (size_t)nv * hd, *a = yt + (size_t)nv * hd, *t = a + 2u * nv;
    size_t dof = 2u * (size_t)nv * hd + 2u * nv + 6u * (size_t)hd;
    double *dd = (double *)(void *)(scratch + dof + (dof & 1u));
    uint8_t *cj = (uint8_t *)(dd + 6u * (size_t)hd), *ct = cj + (size_t)nv * hd;
    for (uint32_t hh = 0; hh < heads; hh++) {
        if (!vkvk_tce_load(src, tstride, hstride, vt, nv, hd, dt, hh, y))
            return VKV_ENONFINITE;
        uint8_t *r = lev + (size_t)hh * rec;
        if (coded)
            vkvk_tce_code_head(dt, nv, hd, budget, y, s == 0 && w ? w + (size_t)hh * hd : NULL,
                               s == 0, r, scl + hh, heads, bits + (size_t)hh * cb, heads * cb, a, t,
                               dd, cj, yt, ct);
        else
            vkvk_tce_rank1_head(dt, nv, hd, y, r, scl + hh, heads, bits + (size_t)hh * cb,
                                heads * cb, a, t, dd, yt);
    }
    return VKV_OK;
}
