/*
 * kernels/codec_avx512.c - AVX-512 F/BW/VL/DQ + F16C kernels (compiled with
 * the matching -m flags, called only after a CPUID check). CHANNEL encode
 * uses 16 channels per zmm; TOKEN encode is the AVX2 kernel (its 8-lane
 * reduction tree is the format's definition); decode selects 32 elements per
 * 32 code bits with masked blends. Bit-identical to the reference.
 */
#include <immintrin.h>
#include <math.h>

#include "kernels/codec_internal.h"

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
#define V_MADDN(a, m, x) _mm512_mask_add_ps(a, (__mmask16) ~(m), a, x)
#define V_CZERO()        _mm512_setzero_si512()
#define V_CADD(c, m)     _mm512_mask_add_epi32(c, m, c, _mm512_set1_epi32(1))
#define V_CST(p, c)      _mm512_storeu_si512((void *)(p), c)
#define V_STBITS(p, m)   vkvk_st16(p, (uint16_t)(m))

#include "kernels/codec_simd_channel.h"

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
            _mm512_mask_storeu_epi16(
                (void *)(o + d), k,
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
                _mm512_storeu_si512((void *)(o + d), _mm512_mask_blend_epi16(
                                                         vkvk_avx512_bits(b + d / 8u, 32), l, u));
            if (d < end) {
                __mmask32 k = (__mmask32)((1u << (end - d)) - 1u);
                _mm512_mask_storeu_epi16(
                    (void *)(o + d), k,
                    _mm512_mask_blend_epi16(vkvk_avx512_bits(b + d / 8u, end - d), l, u));
            }
        }
    }
}

/* ---- rotsign: 16-lane primitives for codec_simd_rot.h ---- */

/* 16 elements of `dt` at p (any alignment) as floats. */
static inline __attribute__((always_inline)) __m512 vkvk_avx512_rldh(const void *p, int dt)
{
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    return dt == VKV_DTYPE_BF16
               ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
               : _mm512_cvtph_ps(h);
}

/* Same, ORing an Inf/NaN lane mask into *bad. */
static inline __attribute__((always_inline)) __m512 vkvk_avx512_rldhc(const void *p, int dt,
                                                                      __mmask16 *bad)
{
    __m512 v = vkvk_avx512_rldh(p, dt);
    *bad |= _mm512_fpclass_ps_mask(v, 0x01 | 0x08 | 0x10 | 0x80); /* QNaN, +Inf, -Inf, SNaN */
    return v;
}

/* Stores 16 floats rounded to `dt` exactly as vkvk_from_f32 (F16C VCVTPS2PH
 * round-to-nearest-even; bf16 by the integer rule, NaN -> (u >> 16) | 0x40). */
static inline __attribute__((always_inline)) void vkvk_avx512_rsth(void *p, __m512 v, int dt)
{
    __m256i r;
    if (dt == VKV_DTYPE_BF16) {
        __m512i u = _mm512_castps_si512(v), hi = _mm512_srli_epi32(u, 16);
        __m512i x = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)),
                                     _mm512_and_si512(hi, _mm512_set1_epi32(1)));
        x = _mm512_srli_epi32(x, 16);
        __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        x = _mm512_mask_or_epi32(x, nan, hi, _mm512_set1_epi32(0x40));
        r = _mm512_cvtepi32_epi16(x);
    } else {
        r = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
    }
    _mm256_storeu_si256((__m256i *)p, r);
}

/* Sign bit in the lanes set in m. */
static inline __attribute__((always_inline)) __m512 vkvk_avx512_rsign(__mmask16 m)
{
    return _mm512_castsi512_ps(_mm512_maskz_set1_epi32(m, (int)0x80000000u));
}

/* +1.0f in lanes whose bit in m is clear, -1.0f where it is set. */
#define VKVK_A512_PM(m)                                                                            \
    _mm512_mask_blend_ps((__mmask16)(m), _mm512_set1_ps(1.0f), _mm512_set1_ps(-1.0f))

/* FWHT stages len = 1, 2, 4, 8 inside one vector: lanes with the len bit
 * clear get a + b, the others a - b (a = lane i - len, b = lane i). Each
 * stage is one FMA v * (+-1) + s: the product is exact, so the single
 * rounding gives exactly the reference's v + s or s - v (zeros' signs and
 * Inf - Inf included; only a NaN's payload could differ, and no output
 * depends on a payload). */
static inline __attribute__((always_inline)) __m512 vkvk_avx512_rfwht(__m512 v)
{
    v = _mm512_fmadd_ps(v, VKVK_A512_PM(0xAAAA), _mm512_permute_ps(v, 0xB1));
    v = _mm512_fmadd_ps(v, VKVK_A512_PM(0xCCCC), _mm512_permute_ps(v, 0x4E));
    v = _mm512_fmadd_ps(v, VKVK_A512_PM(0xF0F0), _mm512_shuffle_f32x4(v, v, 0xB1));
    return _mm512_fmadd_ps(v, VKVK_A512_PM(0xFF00), _mm512_shuffle_f32x4(v, v, 0x4E));
}

/* R_PM1_IN: the FWHT stages len = 1..8 of the +-1 vector of the 16 code
 * bits at b: two vkvk_rot_pm8 rows, then the len = 8 stage (exact). */
static inline __attribute__((always_inline)) __m512 vkvk_avx512_rpm1(const uint8_t *b)
{
    __m512 w = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_load_ps(vkvk_rot_pm8[b[0]])),
                                  _mm256_load_ps(vkvk_rot_pm8[b[1]]), 1);
    return _mm512_fmadd_ps(w, VKVK_A512_PM(0xFF00), _mm512_shuffle_f32x4(w, w, 0x4E));
}

/* vkvk_tree32_sum of lanes 0..15 in a[0] and 16..31 in a[1]. */
static inline __attribute__((always_inline)) float vkvk_avx512_rsum32(const __m512 *a)
{
    __m512 c = _mm512_add_ps(a[0], a[1]);
    __m256 u = _mm256_add_ps(_mm512_castps512_ps256(c), _mm512_extractf32x8_ps(c, 1));
    __m128 v = _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
    __m128 x = _mm_add_ps(v, _mm_movehl_ps(v, v));
    return _mm_cvtss_f32(_mm_add_ss(x, _mm_shuffle_ps(x, x, 1)));
}

/* vkvk_avx512_rsum32 after its first add c = a0 + a1 (R_TREEU). */
static inline __attribute__((always_inline)) float vkvk_avx512_rtreeh(__m512 c)
{
    __m256 u = _mm256_add_ps(_mm512_castps512_ps256(c), _mm512_extractf32x8_ps(c, 1));
    __m128 v = _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
    __m128 x = _mm_add_ps(v, _mm_movehl_ps(v, v));
    return _mm_cvtss_f32(_mm_add_ss(x, _mm_shuffle_ps(x, x, 1)));
}

/* Value of the 8-bit scale codes c (0..255) as floats, exactly
 * vkvk_sc8_value: 0 for code 0, else the mantissa M[(c-128) & 7] with
 * floor((c-128) / 8) added to its exponent (always a normal number). */
static inline __attribute__((always_inline)) __m512 vkvk_avx512_sc8val(__m512i c)
{
    const __m512i mt =
        _mm512_setr_epi32(0x3f800000, 0x3f8b95c2, 0x3f9837f0, 0x3fa5fed7, 0x3fb504f3, 0x3fc5672a,
                          0x3fd744fd, 0x3feac0c7, 0x3f800000, 0x3f8b95c2, 0x3f9837f0, 0x3fa5fed7,
                          0x3fb504f3, 0x3fc5672a, 0x3fd744fd, 0x3feac0c7);
    __m512i q = _mm512_sub_epi32(c, _mm512_set1_epi32(128));
    __m512i v = _mm512_add_epi32(_mm512_permutexvar_epi32(q, mt),
                                 _mm512_slli_epi32(_mm512_srai_epi32(q, 3), 23));
    return _mm512_castsi512_ps(_mm512_maskz_mov_epi32(_mm512_test_epi32_mask(c, c), v));
}

/* vkvk_sc8_encode_fast of 16 floats, stored as 16 code bytes at p. The
 * exponent/mantissa guess is corrected by two steps up and one down (enough
 * for every float: kernels_math_test compares with vkvk_sc8_encode), then
 * rounded as the scalar does; lanes with !(a > 0) give 0 (the scalar's
 * result for NaN, negatives and both zeros), value(255) <= a gives 255. */
static inline __attribute__((always_inline)) void vkvk_avx512_sc8(uint8_t *p, __m512 a)
{
    const __m512i one = _mm512_set1_epi32(1), top = _mm512_set1_epi32(254);
    __m512i u = _mm512_castps_si512(a);
    __m512i g = _mm512_add_epi32(_mm512_slli_epi32(_mm512_srli_epi32(u, 23), 3),
                                 _mm512_and_si512(_mm512_srli_epi32(u, 20), _mm512_set1_epi32(7)));
    g = _mm512_add_epi32(g, _mm512_set1_epi32(128 - 8 * 127));
    g = _mm512_min_epi32(_mm512_max_epi32(g, _mm512_setzero_si512()), top);
    for (int i = 0; i < 2; i++) {
        __mmask16 up =
            _mm512_cmplt_epi32_mask(g, top) &
            _mm512_cmp_ps_mask(vkvk_avx512_sc8val(_mm512_add_epi32(g, one)), a, _CMP_LE_OQ);
        g = _mm512_mask_add_epi32(g, up, g, one);
    }
    __mmask16 dn = _mm512_cmpgt_epi32_mask(g, _mm512_setzero_si512()) &
                   _mm512_cmp_ps_mask(vkvk_avx512_sc8val(g), a, _CMP_GT_OQ);
    g = _mm512_mask_sub_epi32(g, dn, g, one);
    __m512 lo = vkvk_avx512_sc8val(g), hi = vkvk_avx512_sc8val(_mm512_add_epi32(g, one));
    g = _mm512_mask_add_epi32(
        g, _mm512_cmp_ps_mask(_mm512_sub_ps(hi, a), _mm512_sub_ps(a, lo), _CMP_LT_OQ), g, one);
    g = _mm512_mask_mov_epi32(
        g, _mm512_cmp_ps_mask(_mm512_set1_ps(vkvk_sc8_value(255)), a, _CMP_LE_OQ),
        _mm512_set1_epi32(255));
    g = _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_GT_OQ), g);
    _mm_storeu_si128((__m128i *)(void *)p, _mm512_cvtepi32_epi8(g));
}

/* See codec_internal.h. */
void vkvk_avx512_sc8_encode_n(const float *a, size_t n, uint8_t *out)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        vkvk_avx512_sc8(out + i, _mm512_loadu_ps(a + i));
    for (; i < n; i++)
        out[i] = vkvk_sc8_encode_fast(a[i]);
}

#define RW 16
typedef __m512 rf;
typedef __mmask16 rbad;
#define R_ZERO()              _mm512_setzero_ps()
#define R_SET1(x)             _mm512_set1_ps(x)
#define R_ADD(a, b)           _mm512_add_ps(a, b)
#define R_SUB(a, b)           _mm512_sub_ps(a, b)
#define R_MUL(a, b)           _mm512_mul_ps(a, b)
#define R_DIV(a, b)           _mm512_div_ps(a, b)
#define R_MIN(a, b)           _mm512_min_ps(a, b)
#define R_MAX(a, b)           _mm512_max_ps(a, b)
#define R_XOR(a, b)           _mm512_xor_ps(a, b)
#define R_ABS(v)              _mm512_abs_ps(v)
#define R_LD(p)               _mm512_loadu_ps(p)
#define R_ST(p, v)            _mm512_storeu_ps(p, v)
#define R_LDH(p, dt, b)       vkvk_avx512_rldhc(p, dt, b)
#define R_LDHN(p, dt)         vkvk_avx512_rldh(p, dt)
#define R_BAD0()              ((__mmask16)0)
#define R_BADANY(b)           ((b) != 0)
#define R_CHK(v, b)           (*(b) |= _mm512_fpclass_ps_mask(v, 0x01 | 0x08 | 0x10 | 0x80))
#define R_STH(p, v, dt)       vkvk_avx512_rsth(p, v, dt)
#define R_GE0(p, v)           vkvk_st16(p, (uint16_t)_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GE_OQ))
#define R_SGN(p)              vkvk_avx512_rsign((__mmask16)~vkvk_ld16(p))
#define R_NEG(d)              vkvk_avx512_rsign((__mmask16)(vkvk_rot_negw[(d) >> 6] >> ((d)&63u)))
#define R_FWHT_IN(v)          vkvk_avx512_rfwht(v)
#define R_PM1_IN(p)           vkvk_avx512_rpm1(p)
#define R_SUM32(acc)          vkvk_avx512_rsum32(acc)
#define R_FMA(a, b, c)        _mm512_fmadd_ps(a, b, c)
#define R_LTBITS(v)           ((unsigned)_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ))
#define R_TREEU(acc)          _mm512_add_ps(acc[0], acc[1])
#define R_TREEH(c)            vkvk_avx512_rtreeh(c)
#define R_HMAX(v)             _mm512_reduce_max_ps(v)
#define R_SC8(p, v)           vkvk_avx512_sc8(p, v)
#define VKVK_ROT_FALLBACK_ENC vkvk_avx2_enc_rot_entry
#define VKVK_ROT_FALLBACK_DEC vkvk_avx2_dec_rot_entry

#include "kernels/codec_simd_rot.h"

const vkvk_kernels vkvk_kernels_avx512 = {
    "avx512",
    vkvk_avx512_enc_channel,
    vkvk_avx2_enc_token,
    vkvk_avx512_dec_channel,
    vkvk_avx512_dec_token,
    vkvk_avx512_enc_rot,
    vkvk_avx512_dec_rot,
};
