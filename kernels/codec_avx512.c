/*
 * kernels/codec_avx512.c - AVX-512 F/BW/VL/DQ + F16C kernels (compiled with
 * the matching -m flags, called only after a CPUID check). CHANNEL encode
 * uses 16 channels per zmm; TOKEN encode is the AVX2 kernel (its 8-lane
 * reduction tree is the format's definition); decode selects 32 elements per
 * 32 code bits with masked blends. Bit-identical to the reference.
 */
#include <immintrin.h>
#include <math.h>

#include "codec_internal.h"

#define VKVK_SFX(name) vkvk_avx512_##name

/* Loads 16 elements of `dtype` as floats and ORs an Inf/NaN class mask into *bad. */
static inline __attribute__((always_inline)) __m512 vkvk_avx512_ldh(const uint16_t *p, int dtype,
                                                                      __mmask16 *bad)
{
    __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)p);
    __m512 v = dtype == VKV_DTYPE_BF16
                   ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
                   : _mm512_cvtph_ps(h);
    *bad |= _mm512_fpclass_ps_mask(v, 0x01 | 0x08 | 0x10 | 0x80); /* QNaN, +Inf, -Inf, SNaN */
    return v;
}

#define VKVK_VW 16
typedef __m512 vkvk_vf;
typedef __mmask16 vkvk_vm;
typedef __m512i vkvk_vc;
typedef __mmask16 vkvk_vb;
#define V_ZERO()         _mm512_setzero_ps()
#define V_SET1(x)        _mm512_set1_ps(x)
#define V_ADD(a, b)      _mm512_add_ps(a, b)
#define V_MIN(a, b)      _mm512_min_ps(a, b)
#define V_MAX(a, b)      _mm512_max_ps(a, b)
#define V_LD(p)          _mm512_loadu_ps(p)
#define V_ST(p, v)       _mm512_storeu_ps(p, v)
#define V_LDH(p, dt, b)  vkvk_avx512_ldh(p, dt, b)
#define V_BZERO()        ((__mmask16)0)
#define V_BANY(b)        ((b) != 0)
#define V_GE(x, t)       _mm512_cmp_ps_mask(x, t, _CMP_GE_OQ)
#define V_MADD(a, m, x)  _mm512_mask_add_ps(a, m, a, x)
#define V_MADDN(a, m, x) _mm512_mask_add_ps(a, (__mmask16)~(m), a, x)
#define V_CZERO()        _mm512_setzero_si512()
#define V_CADD(c, m)     _mm512_mask_add_epi32(c, m, c, _mm512_set1_epi32(1))
#define V_CST(p, c)      _mm512_storeu_si512((void *)(p), c)
#define V_STBITS(p, m)   vkvk_st16(p, (uint16_t)(m))

#include "codec_simd_channel.h"

/* Loads n (8..32, multiple of 8) code bits at b as a lane mask. */
static inline __mmask32 vkvk_avx512_bits(const uint8_t *b, uint32_t n)
{
    uint32_t m = 0;
    memcpy(&m, b, n / 8u);
    return (__mmask32)m;
}

/* CHANNEL decoder of one visual token, all heads (see codec_internal.h). */
static void vkvk_avx512_dec_channel(const uint8_t *bits, const uint8_t *lev, uint32_t heads,
                                    uint32_t hd, uint16_t *dst, size_t head_stride)
{
    for (uint32_t h = 0; h < heads; h++) {
        const uint8_t *b = bits + (size_t)h * (hd / 8u);
        const uint8_t *lo = lev + (size_t)h * 4u * hd;
        const uint8_t *hi = lo + 2u * (size_t)hd;
        uint16_t *o = dst + h * head_stride;
        uint32_t d = 0;
        for (; d + 32 <= hd; d += 32) {
            __m512i l = _mm512_loadu_si512((const void *)(lo + 2u * d));
            __m512i u = _mm512_loadu_si512((const void *)(hi + 2u * d));
            _mm512_storeu_si512((void *)(o + d),
                                _mm512_mask_blend_epi16(vkvk_avx512_bits(b + d / 8u, 32), l, u));
        }
        if (d < hd) {
            __mmask32 k = (__mmask32)((1u << (hd - d)) - 1u);
            __m512i l = _mm512_maskz_loadu_epi16(k, (const void *)(lo + 2u * d));
            __m512i u = _mm512_maskz_loadu_epi16(k, (const void *)(hi + 2u * d));
            _mm512_mask_storeu_epi16((void *)(o + d), k,
                                     _mm512_mask_blend_epi16(vkvk_avx512_bits(b + d / 8u, hd - d), l, u));
        }
    }
}

/* TOKEN decoder of one visual token, all heads (see codec_internal.h). */
static void vkvk_avx512_dec_token(const uint8_t *bits, const uint8_t *lev, uint32_t heads,
                                  uint32_t hd, uint32_t g, uint16_t *dst, size_t head_stride)
{
    uint32_t ng = hd / g;
    for (uint32_t h = 0; h < heads; h++) {
        const uint8_t *b = bits + (size_t)h * (hd / 8u);
        const uint8_t *lv = lev + (size_t)h * ng * 4u;
        uint16_t *o = dst + h * head_stride;
        for (uint32_t gi = 0; gi < ng; gi++) {
            __m512i l = _mm512_set1_epi16((short)vkvk_ld16(lv + 4u * gi));
            __m512i u = _mm512_set1_epi16((short)vkvk_ld16(lv + 4u * gi + 2u));
            uint32_t d = gi * g, end = d + g;
            for (; d + 32 <= end; d += 32)
                _mm512_storeu_si512((void *)(o + d),
                                    _mm512_mask_blend_epi16(vkvk_avx512_bits(b + d / 8u, 32), l, u));
            if (d < end) {
                __mmask32 k = (__mmask32)((1u << (end - d)) - 1u);
                _mm512_mask_storeu_epi16(
                    (void *)(o + d), k,
                    _mm512_mask_blend_epi16(vkvk_avx512_bits(b + d / 8u, end - d), l, u));
            }
        }
    }
}

const vkvk_kernels vkvk_kernels_avx512 = {
    "avx512", vkvk_avx512_enc_channel, vkvk_avx2_enc_token, vkvk_avx512_dec_channel,
    vkvk_avx512_dec_token, vkvk_ref_enc_rot, vkvk_ref_dec_rot,
};
