/*
 * kernels/codec_avx2.c - AVX2 + F16C kernels (compiled with -mavx2 -mf16c
 * -mfma, called only after a CPUID check). Bit-identical to the reference:
 * encoders accumulate in the reference's order (one lane per channel, or the
 * 32-lane TOKEN tree); decoders are pure selects.
 */
#include <immintrin.h>
#include <math.h>

#include "codec_internal.h"

#define VKVK_SFX(name) vkvk_avx2_##name

/* ---- CHANNEL encoder: 8 channels per __m256 ---- */
#define VKVK_VW 8
typedef __m256 vkvk_vf;
typedef __m256 vkvk_vm;
typedef __m256i vkvk_vc;
typedef __m256 vkvk_vb;
#define V_ZERO()         _mm256_setzero_ps()
#define V_SET1(x)        _mm256_set1_ps(x)
#define V_ADD(a, b)      _mm256_add_ps(a, b)
#define V_MIN(a, b)      _mm256_min_ps(a, b)
#define V_MAX(a, b)      _mm256_max_ps(a, b)
#define V_LD(p)          _mm256_loadu_ps(p)
#define V_ST(p, v)       _mm256_storeu_ps(p, v)
#define V_LDH(p, dt, b)  vkvk_avx2_tk_ld8(p, dt, b)
#define V_BZERO()        _mm256_setzero_ps()
#define V_BANY(b)        (!_mm256_testz_si256(_mm256_castps_si256(b), _mm256_castps_si256(b)))
#define V_GE(x, t)       _mm256_cmp_ps(x, t, _CMP_GE_OQ)
#define V_MADD(a, m, x)  _mm256_blendv_ps(a, _mm256_add_ps(a, x), m)
#define V_MADDN(a, m, x) _mm256_blendv_ps(_mm256_add_ps(a, x), a, m)
#define V_CZERO()        _mm256_setzero_si256()
#define V_CADD(c, m)     _mm256_sub_epi32(c, _mm256_castps_si256(m))
#define V_CST(p, c)      _mm256_storeu_si256((__m256i *)(void *)(p), c)
#define V_STBITS(p, m)   (*(p) = (uint8_t)_mm256_movemask_ps(m))

#include "codec_simd_token.h"
#include "codec_simd_channel.h"

/* TOKEN encoder entry (also used by the AVX-512 table). */
int vkvk_avx2_enc_token(const vkvk_rule_args *ra, const uint16_t *src, uint32_t hd, uint32_t g,
                        uint8_t *bits, uint8_t *lev, float *scratch)
{
    if (ra->dtype == VKV_DTYPE_BF16)
        return vkvk_avx2_tk_enc_dt(ra, VKV_DTYPE_BF16, src, hd, g, bits, lev, scratch);
    return vkvk_avx2_tk_enc_dt(ra, VKV_DTYPE_F16, src, hd, g, bits, lev, scratch);
}

/* 16 code bits -> a 16-lane 16-bit select mask (all ones where the bit is 1). */
static inline __m256i vkvk_avx2_mask16(unsigned bits16)
{
    const __m256i pat = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096,
                                          8192, 16384, (short)0x8000);
    __m256i v = _mm256_and_si256(_mm256_set1_epi16((short)bits16), pat);
    return _mm256_cmpeq_epi16(v, pat);
}

/* 8 code bits -> an 8-lane 16-bit select mask. */
static inline __m128i vkvk_avx2_mask8(unsigned bits8)
{
    const __m128i pat = _mm_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128);
    __m128i v = _mm_and_si128(_mm_set1_epi16((short)bits8), pat);
    return _mm_cmpeq_epi16(v, pat);
}

/* CHANNEL decoder of one visual token, all heads (see codec_internal.h). */
static void vkvk_avx2_dec_channel(const uint8_t *bits, const uint8_t *lev, uint32_t heads,
                                  uint32_t hd, uint16_t *dst, size_t head_stride)
{
    for (uint32_t h = 0; h < heads; h++) {
        const uint8_t *b = bits + (size_t)h * (hd / 8u);
        const uint8_t *lo = lev + (size_t)h * 4u * hd;
        const uint8_t *hi = lo + 2u * (size_t)hd;
        uint16_t *o = dst + h * head_stride;
        uint32_t d = 0;
        for (; d + 16 <= hd; d += 16) {
            __m256i l = _mm256_loadu_si256((const __m256i *)(const void *)(lo + 2u * d));
            __m256i u = _mm256_loadu_si256((const __m256i *)(const void *)(hi + 2u * d));
            __m256i m = vkvk_avx2_mask16(vkvk_ld16(b + d / 8u));
            _mm256_storeu_si256((__m256i *)(void *)(o + d), _mm256_blendv_epi8(l, u, m));
        }
        if (d < hd) {
            __m128i l = _mm_loadu_si128((const __m128i *)(const void *)(lo + 2u * d));
            __m128i u = _mm_loadu_si128((const __m128i *)(const void *)(hi + 2u * d));
            _mm_storeu_si128((__m128i *)(void *)(o + d),
                             _mm_blendv_epi8(l, u, vkvk_avx2_mask8(b[d / 8u])));
        }
    }
}

/* TOKEN decoder of one visual token, all heads (see codec_internal.h). */
static void vkvk_avx2_dec_token(const uint8_t *bits, const uint8_t *lev, uint32_t heads,
                                uint32_t hd, uint32_t g, uint16_t *dst, size_t head_stride)
{
    uint32_t ng = hd / g;
    for (uint32_t h = 0; h < heads; h++) {
        const uint8_t *b = bits + (size_t)h * (hd / 8u);
        const uint8_t *lv = lev + (size_t)h * ng * 4u;
        uint16_t *o = dst + h * head_stride;
        for (uint32_t gi = 0; gi < ng; gi++) {
            uint16_t lo = vkvk_ld16(lv + 4u * gi), hi = vkvk_ld16(lv + 4u * gi + 2u);
            __m256i l = _mm256_set1_epi16((short)lo), u = _mm256_set1_epi16((short)hi);
            uint32_t d = gi * g, end = d + g;
            for (; d + 16 <= end; d += 16)
                _mm256_storeu_si256((__m256i *)(void *)(o + d),
                                    _mm256_blendv_epi8(l, u, vkvk_avx2_mask16(vkvk_ld16(b + d / 8u))));
            if (d < end)
                _mm_storeu_si128((__m128i *)(void *)(o + d),
                                 _mm_blendv_epi8(_mm256_castsi256_si128(l), _mm256_castsi256_si128(u),
                                                 vkvk_avx2_mask8(b[d / 8u])));
        }
    }
}

const vkvk_kernels vkvk_kernels_avx2 = {
    "avx2",           vkvk_avx2_enc_channel, vkvk_avx2_enc_token, vkvk_avx2_dec_channel,
    vkvk_avx2_dec_token, vkvk_ref_enc_rot,   vkvk_ref_dec_rot,
};
