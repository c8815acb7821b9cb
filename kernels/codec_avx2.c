/*
 * kernels/codec_avx2.c - AVX2 + F16C kernels (compiled with -mavx2 -mf16c
 * -mfma, called only after a CPUID check). Bit-identical to the reference:
 * encoders accumulate in the reference's order (one lane per channel, or the
 * 32-lane TOKEN tree); decoders are pure selects.
 */
#include <immintrin.h>
#include <math.h>

#include "kernels/codec_internal.h"

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

#include "kernels/codec_simd_token.h"
#include "kernels/codec_simd_channel.h"

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
                _mm256_storeu_si256(
                    (__m256i *)(void *)(o + d),
                    _mm256_blendv_epi8(l, u, vkvk_avx2_mask16(vkvk_ld16(b + d / 8u))));
            if (d < end)
                _mm_storeu_si128((__m128i *)(void *)(o + d),
                                 _mm_blendv_epi8(_mm256_castsi256_si128(l),
                                                 _mm256_castsi256_si128(u),
                                                 vkvk_avx2_mask8(b[d / 8u])));
        }
    }
}

/* ---- rotsign: 8-lane primitives for codec_simd_rot.h ---- */

/* Lane i holds 1 << i: expands 8 bits into lanes. */
#define VKVK_A2_PAT() _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128)

/* 8 elements of `dt` at p (any alignment) as floats. */
static inline __attribute__((always_inline)) __m256 vkvk_avx2_rldh(const void *p, int dt)
{
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    return dt == VKV_DTYPE_BF16
               ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
               : _mm256_cvtph_ps(h);
}

/* Same, ORing x - x (NaN exactly where x is Inf or NaN) into *bad. */
static inline __attribute__((always_inline)) __m256 vkvk_avx2_rldhc(const void *p, int dt,
                                                                    __m256 *bad)
{
    __m256 v = vkvk_avx2_rldh(p, dt);
    *bad = _mm256_or_ps(*bad, _mm256_sub_ps(v, v));
    return v;
}

/* Stores 8 floats rounded to `dt` exactly as vkvk_from_f32 (F16C VCVTPS2PH
 * round-to-nearest-even; bf16 by the integer rule, NaN -> (u >> 16) | 0x40). */
static inline __attribute__((always_inline)) void vkvk_avx2_rsth(void *p, __m256 v, int dt)
{
    __m128i r;
    if (dt == VKV_DTYPE_BF16) {
        __m256i u = _mm256_castps_si256(v), hi = _mm256_srli_epi32(u, 16);
        __m256i x = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)),
                                     _mm256_and_si256(hi, _mm256_set1_epi32(1)));
        x = _mm256_srli_epi32(x, 16);
        __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        x = _mm256_blendv_epi8(x, _mm256_or_si256(hi, _mm256_set1_epi32(0x40)), nan);
        r = _mm_packus_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
    } else {
        r = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
    }
    _mm_storeu_si128((__m128i *)p, r);
}

/* vkvk_avx2_sgn8[b]: the sign bit in lane i where bit i of the code byte b
 * is 0 (the CHANNEL decode's sign selection as one 32-byte load). */
#define VKVK_A2_SG(b, i) ((((b) >> (i)) & 1) ? 0u : 0x80000000u)
#define VKVK_A2_SGROW(b)                                                                           \
    {                                                                                              \
        VKVK_A2_SG(b, 0), VKVK_A2_SG(b, 1), VKVK_A2_SG(b, 2), VKVK_A2_SG(b, 3), VKVK_A2_SG(b, 4),  \
            VKVK_A2_SG(b, 5), VKVK_A2_SG(b, 6), VKVK_A2_SG(b, 7)                                   \
    }
#define VKVK_A2_SG4(b)                                                                             \
    VKVK_A2_SGROW(b), VKVK_A2_SGROW((b) + 1), VKVK_A2_SGROW((b) + 2), VKVK_A2_SGROW((b) + 3)
#define VKVK_A2_SG16(b)                                                                            \
    VKVK_A2_SG4(b), VKVK_A2_SG4((b) + 4), VKVK_A2_SG4((b) + 8), VKVK_A2_SG4((b) + 12)
#define VKVK_A2_SG64(b)                                                                            \
    VKVK_A2_SG16(b), VKVK_A2_SG16((b) + 16), VKVK_A2_SG16((b) + 32), VKVK_A2_SG16((b) + 48)
static _Alignas(32) const uint32_t vkvk_avx2_sgn8[256][8] = {VKVK_A2_SG64(0), VKVK_A2_SG64(64),
                                                             VKVK_A2_SG64(128), VKVK_A2_SG64(192)};

/* Sign bit in lane i where bit i of `m` is 1 (eq = 1) or 0 (eq = 0). */
static inline __attribute__((always_inline)) __m256 vkvk_avx2_rsign(unsigned m, int eq)
{
    __m256i t = _mm256_and_si256(_mm256_set1_epi32((int)m), VKVK_A2_PAT());
    __m256i c = _mm256_cmpeq_epi32(t, eq ? VKVK_A2_PAT() : _mm256_setzero_si256());
    return _mm256_castsi256_ps(_mm256_and_si256(c, _mm256_set1_epi32((int)0x80000000u)));
}

/* +1.0f in lanes whose bit in the 8-bit blend mask m is clear, else -1.0f. */
#define VKVK_A2_PM(m) _mm256_blend_ps(_mm256_set1_ps(1.0f), _mm256_set1_ps(-1.0f), m)

/* FWHT stages len = 1, 2, 4 inside one vector: lanes with the len bit clear
 * get a + b, the others a - b (a = lane i - len, b = lane i). Each stage is
 * one FMA v * (+-1) + s: the product is exact, so the single rounding gives
 * exactly the reference's v + s or s - v (see vkvk_avx512_rfwht). */
static inline __attribute__((always_inline)) __m256 vkvk_avx2_rfwht(__m256 v)
{
    v = _mm256_fmadd_ps(v, VKVK_A2_PM(0xAA), _mm256_permute_ps(v, 0xB1));
    v = _mm256_fmadd_ps(v, VKVK_A2_PM(0xCC), _mm256_permute_ps(v, 0x4E));
    return _mm256_fmadd_ps(v, VKVK_A2_PM(0xF0), _mm256_permute2f128_ps(v, v, 1));
}

/* Max over the 8 lanes (non-NaN values: any order gives the same result). */
static inline __attribute__((always_inline)) float vkvk_avx2_rhmax(__m256 v)
{
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_max_ss(x, _mm_shuffle_ps(x, x, 1)));
}

/* The reference's 32-lane tree (vkvk_tree32_sum) after its lane-wise part
 * u = (a0 + a2) + (a1 + a3) of the four accumulators: v = u[j] + u[j+4],
 * then (v0 + v2) + (v1 + v3). */
static inline __attribute__((always_inline)) float vkvk_avx2_rtreeh(__m256 u)
{
    __m128 v = _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
    __m128 x = _mm_add_ps(v, _mm_movehl_ps(v, v));
    return _mm_cvtss_f32(_mm_add_ss(x, _mm_shuffle_ps(x, x, 1)));
}

/* vkvk_avx2_rtreeh of eight vectors u[0..8) at once, lane i = the sum of
 * u[i]: the same adds of the same operands (u[i][j] + u[i][j+4], then
 * (v0 + v2) + (v1 + v3)), with the lanes gathered by shuffles in between. */
static inline __attribute__((always_inline)) __m256 vkvk_avx2_rtree8(const __m256 *u)
{
    __m256 v[4], w[2];
    for (int i = 0; i < 4; i++) /* [v of u[i] | v of u[i+4]] */
        v[i] = _mm256_add_ps(_mm256_permute2f128_ps(u[i], u[i + 4], 0x20),
                             _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
    for (int i = 0; i < 2; i++) /* [v0+v2, v1+v3] of u[2i], u[2i+1] | of u[2i+4], u[2i+5] */
        w[i] = _mm256_add_ps(_mm256_shuffle_ps(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm256_shuffle_ps(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    return _mm256_add_ps(_mm256_shuffle_ps(w[0], w[1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm256_shuffle_ps(w[0], w[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

/* Value of the 8-bit scale codes c (0..255) as floats, exactly
 * vkvk_sc8_value: 0 for code 0, else the mantissa M[(c-128) & 7] with
 * floor((c-128) / 8) added to its exponent (always a normal number). */
static inline __attribute__((always_inline)) __m256 vkvk_avx2_sc8val(__m256i c)
{
    const __m256i mt = _mm256_setr_epi32(0x3f800000, 0x3f8b95c2, 0x3f9837f0, 0x3fa5fed7, 0x3fb504f3,
                                         0x3fc5672a, 0x3fd744fd, 0x3feac0c7);
    __m256i q = _mm256_sub_epi32(c, _mm256_set1_epi32(128));
    __m256i v = _mm256_add_epi32(_mm256_permutevar8x32_epi32(mt, q),
                                 _mm256_slli_epi32(_mm256_srai_epi32(q, 3), 23));
    __m256i nz = _mm256_cmpeq_epi32(c, _mm256_setzero_si256());
    return _mm256_castsi256_ps(_mm256_andnot_si256(nz, v));
}

/* vkvk_sc8_encode_fast of 8 floats, stored as 8 code bytes at p (see
 * vkvk_avx512_sc8 in codec_avx512.c for the steps; same arithmetic). */
static inline __attribute__((always_inline)) void vkvk_avx2_sc8(uint8_t *p, __m256 a)
{
    const __m256i one = _mm256_set1_epi32(1), top = _mm256_set1_epi32(254);
    __m256i u = _mm256_castps_si256(a);
    __m256i g = _mm256_add_epi32(_mm256_slli_epi32(_mm256_srli_epi32(u, 23), 3),
                                 _mm256_and_si256(_mm256_srli_epi32(u, 20), _mm256_set1_epi32(7)));
    g = _mm256_add_epi32(g, _mm256_set1_epi32(128 - 8 * 127));
    g = _mm256_min_epi32(_mm256_max_epi32(g, _mm256_setzero_si256()), top);
    for (int i = 0; i < 2; i++) { /* masks are all-ones (-1) lanes: subtracting adds 1 */
        __m256i up =
            _mm256_and_si256(_mm256_cmpgt_epi32(top, g),
                             _mm256_castps_si256(_mm256_cmp_ps(
                                 vkvk_avx2_sc8val(_mm256_add_epi32(g, one)), a, _CMP_LE_OQ)));
        g = _mm256_sub_epi32(g, up);
    }
    __m256i dn =
        _mm256_and_si256(_mm256_cmpgt_epi32(g, _mm256_setzero_si256()),
                         _mm256_castps_si256(_mm256_cmp_ps(vkvk_avx2_sc8val(g), a, _CMP_GT_OQ)));
    g = _mm256_add_epi32(g, dn);
    __m256 lo = vkvk_avx2_sc8val(g), hi = vkvk_avx2_sc8val(_mm256_add_epi32(g, one));
    g = _mm256_sub_epi32(g, _mm256_castps_si256(_mm256_cmp_ps(_mm256_sub_ps(hi, a),
                                                              _mm256_sub_ps(a, lo), _CMP_LT_OQ)));
    __m256i top255 =
        _mm256_castps_si256(_mm256_cmp_ps(_mm256_set1_ps(vkvk_sc8_value(255)), a, _CMP_LE_OQ));
    g = _mm256_blendv_epi8(g, _mm256_set1_epi32(255), top255);
    g = _mm256_and_si256(g, _mm256_castps_si256(_mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_GT_OQ)));
    __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(g), _mm256_extracti128_si256(g, 1));
    _mm_storel_epi64((__m128i *)(void *)p, _mm_packus_epi16(w, w));
}

/* See codec_internal.h. */
void vkvk_avx2_sc8_encode_n(const float *a, size_t n, uint8_t *out)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        vkvk_avx2_sc8(out + i, _mm256_loadu_ps(a + i));
    for (; i < n; i++)
        out[i] = vkvk_sc8_encode_fast(a[i]);
}

#define RW 8
typedef __m256 rf;
typedef __m256 rbad;
#define R_ZERO()        _mm256_setzero_ps()
#define R_SET1(x)       _mm256_set1_ps(x)
#define R_ADD(a, b)     _mm256_add_ps(a, b)
#define R_SUB(a, b)     _mm256_sub_ps(a, b)
#define R_MUL(a, b)     _mm256_mul_ps(a, b)
#define R_DIV(a, b)     _mm256_div_ps(a, b)
#define R_MIN(a, b)     _mm256_min_ps(a, b)
#define R_MAX(a, b)     _mm256_max_ps(a, b)
#define R_XOR(a, b)     _mm256_xor_ps(a, b)
#define R_ABS(v)        _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v)
#define R_LD(p)         _mm256_loadu_ps(p)
#define R_ST(p, v)      _mm256_storeu_ps(p, v)
#define R_LDH(p, dt, b) vkvk_avx2_rldhc(p, dt, b)
#define R_LDHN(p, dt)   vkvk_avx2_rldh(p, dt)
#define R_BAD0()        _mm256_setzero_ps()
#define R_BADANY(b)     (!_mm256_testz_si256(_mm256_castps_si256(b), _mm256_castps_si256(b)))
#define R_CHK(v, b)     (*(b) = _mm256_or_ps(*(b), _mm256_sub_ps(v, v)))
#define R_STH(p, v, dt) vkvk_avx2_rsth(p, v, dt)
#define R_GE0(p, v)                                                                                \
    (*(p) = (uint8_t)_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GE_OQ)))
#define R_SGN(p)              _mm256_load_ps((const float *)vkvk_avx2_sgn8[*(p)])
#define R_NEG(d)              vkvk_avx2_rsign((unsigned)(vkvk_rot_negw[(d) >> 6] >> ((d)&63u)) & 0xffu, 1)
#define R_FWHT_IN(v)          vkvk_avx2_rfwht(v)
#define R_PM1_IN(p)           _mm256_load_ps(vkvk_rot_pm8[*(p)])
#define R_SUM32(acc)          vkvk_avx2_tk_sum(acc)
#define R_FMA(a, b, c)        _mm256_fmadd_ps(a, b, c)
#define R_LTBITS(v)           ((unsigned)_mm256_movemask_ps(v))
#define R_TREEU(acc)          _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]))
#define R_TREEH(u)            vkvk_avx2_rtreeh(u)
#define R_TREE8(u)            vkvk_avx2_rtree8(u)
#define R_GT0SEL(b, x)        _mm256_and_ps(_mm256_cmp_ps(b, _mm256_setzero_ps(), _CMP_GT_OQ), x)
#define R_HMAX(v)             vkvk_avx2_rhmax(v)
#define R_SC8(p, v)           vkvk_avx2_sc8(p, v)
#define VKVK_ROT_FALLBACK_ENC vkvk_ref_enc_rot
#define VKVK_ROT_FALLBACK_DEC vkvk_ref_dec_rot

#include "kernels/codec_simd_rot.h"

/* The AVX2 rotsign kernels, exported for the AVX-512 table's fallback. */
int vkvk_avx2_enc_rot_entry(const vkvk_rot_args *ra, const uint16_t *src, size_t tstride,
                            size_t hstride, const uint32_t *vt, uint32_t nv, uint32_t heads,
                            uint32_t hd, uint8_t *bits, uint8_t *vec, uint8_t *scl, float *scratch)
{
    return vkvk_avx2_enc_rot(ra, src, tstride, hstride, vt, nv, heads, hd, bits, vec, scl, scratch);
}

void vkvk_avx2_dec_rot_entry(const vkvk_rot_args *ra, const uint8_t *bits, const uint8_t *vec,
                             const uint8_t *scl, uint32_t heads, uint32_t hd, uint16_t *dst,
                             size_t head_stride)
{
    vkvk_avx2_dec_rot(ra, bits, vec, scl, heads, hd, dst, head_stride);
}

const vkvk_kernels vkvk_kernels_avx2 = {
    "avx2",
    vkvk_avx2_enc_channel,
    vkvk_avx2_enc_token,
    vkvk_avx2_dec_channel,
    vkvk_avx2_dec_token,
    vkvk_avx2_enc_rot,
    vkvk_avx2_dec_rot,
};
