/*
 * kernels/codec_simd_token.h - the TOKEN-mode encoder with 8-lane AVX2
 * vectors, bit-identical to vkvk_ref_enc_token (codec_ref.c).
 *
 * Included by codec_avx2.c (and usable from any TU compiled with AVX2 and
 * F16C) after defining VKVK_SFX(name). The 32 partial-sum lanes of the
 * reference are four __m256 accumulators: vector k of the group (elements
 * 8k..8k+7) goes to accumulator k % 4; the reference's tree is
 * ((a0 OP a2) OP (a1 OP a3)) lane-wise, then the 8-lane tree of vkvk_h8.
 */
#ifndef VKVK_SFX
#error "define VKVK_SFX before including codec_simd_token.h"
#endif

/* Loads 8 elements of `dtype` (compile-time constant after inlining) as floats
 * and ORs x - x into *bad (NaN exactly where x is Inf or NaN). */
static inline __attribute__((always_inline)) __m256 VKVK_SFX(tk_ld8)(const uint16_t *p, int dtype,
                                                                     __m256 *bad)
{
    __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m256 v = dtype == VKV_DTYPE_BF16
                   ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                   : _mm256_cvtph_ps(h);
    *bad = _mm256_or_ps(*bad, _mm256_sub_ps(v, v));
    return v;
}

/* The reference's tree over four 8-lane accumulators, for + / min / max. */
#define VKVK_TK_TREE_(name, VOP, SOP)                                                              \
    static inline __attribute__((always_inline)) float VKVK_SFX(name)(const __m256 *a)             \
    {                                                                                              \
        __m256 u = VOP(VOP(a[0], a[2]), VOP(a[1], a[3]));                                          \
        __m128 v = SOP##_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));               \
        __m128 x = SOP##_ps(v, _mm_movehl_ps(v, v));                                               \
        return _mm_cvtss_f32(SOP##_ss(x, _mm_shuffle_ps(x, x, 1)));                                \
    }
VKVK_TK_TREE_(tk_sum, _mm256_add_ps, _mm_add)
VKVK_TK_TREE_(tk_min, _mm256_min_ps, _mm_min)
VKVK_TK_TREE_(tk_max, _mm256_max_ps, _mm_max)

/* Encodes the hd/g TOKEN groups of one token and head for a constant dtype. */
static inline __attribute__((always_inline)) int
VKVK_SFX(tk_enc_dt)(const vkvk_rule_args *ra, const int dtype, const uint16_t *src, uint32_t hd,
                    uint32_t g, uint8_t *bits, uint8_t *lev, float *scratch)
{
    float *x = scratch, *tmp = scratch + g;
    for (uint32_t c0 = 0; c0 < hd; c0 += g) {
        const uint16_t *p = src + c0;
        __m256 s[4], m0[4], m1[4], bad = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            s[k] = _mm256_setzero_ps();
            m0[k] = _mm256_set1_ps(INFINITY);
            m1[k] = _mm256_set1_ps(-INFINITY);
        }
#define VKVK_TK_P1_(k, i)                                                                          \
    do {                                                                                           \
        __m256 v_ = VKVK_SFX(tk_ld8)(p + (i), dtype, &bad);                                        \
        _mm256_storeu_ps(x + (i), v_);                                                             \
        s[k] = _mm256_add_ps(s[k], v_);                                                            \
        m0[k] = _mm256_min_ps(v_, m0[k]);                                                          \
        m1[k] = _mm256_max_ps(v_, m1[k]);                                                          \
    } while (0)
        uint32_t i = 0;
        for (; i + 32 <= g; i += 32) {
            VKVK_TK_P1_(0, i);
            VKVK_TK_P1_(1, i + 8);
            VKVK_TK_P1_(2, i + 16);
            VKVK_TK_P1_(3, i + 24);
        }
        if (i + 8 <= g)
            VKVK_TK_P1_(0, i);
        if (i + 16 <= g)
            VKVK_TK_P1_(1, i + 8);
        if (i + 24 <= g)
            VKVK_TK_P1_(2, i + 16);
#undef VKVK_TK_P1_
        if (!_mm256_testz_si256(_mm256_castps_si256(bad), _mm256_castps_si256(bad)))
            return VKV_ENONFINITE;
        float sum = VKVK_SFX(tk_sum)(s), mn = VKVK_SFX(tk_min)(m0), mx = VKVK_SFX(tk_max)(m1);
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
                    __m256 vt = _mm256_set1_ps(thr), sl[4], sh[4];
                    uint32_t nhi = 0;
                    for (int k = 0; k < 4; k++)
                        sl[k] = sh[k] = _mm256_setzero_ps();
#define VKVK_TK_LL_(k, i)                                                                          \
    do {                                                                                           \
        __m256 v_ = _mm256_loadu_ps(x + (i));                                                      \
        __m256 m_ = _mm256_cmp_ps(v_, vt, _CMP_GE_OQ);                                             \
        sh[k] = _mm256_blendv_ps(sh[k], _mm256_add_ps(sh[k], v_), m_);                             \
        sl[k] = _mm256_blendv_ps(_mm256_add_ps(sl[k], v_), sl[k], m_);                             \
        nhi += (uint32_t)__builtin_popcount((unsigned)_mm256_movemask_ps(m_));                     \
    } while (0)
                    uint32_t j = 0;
                    for (; j + 32 <= g; j += 32) {
                        VKVK_TK_LL_(0, j);
                        VKVK_TK_LL_(1, j + 8);
                        VKVK_TK_LL_(2, j + 16);
                        VKVK_TK_LL_(3, j + 24);
                    }
                    if (j + 8 <= g)
                        VKVK_TK_LL_(0, j);
                    if (j + 16 <= g)
                        VKVK_TK_LL_(1, j + 8);
                    if (j + 24 <= g)
                        VKVK_TK_LL_(2, j + 16);
#undef VKVK_TK_LL_
                    thr = vkvk_lloyd_update(VKVK_SFX(tk_sum)(sl), g - nhi, VKVK_SFX(tk_sum)(sh),
                                            nhi, &lo, &hi);
                }
            }
        }
        uint16_t lo_h, hi_h;
        float mid = vkvk_group_finish(dtype, lo, hi, mn, mx, &lo_h, &hi_h);
        uint8_t *lv = lev + (size_t)(c0 / g) * 4u;
        vkvk_st16(lv, lo_h);
        vkvk_st16(lv + 2, hi_h);
        __m256 vm = _mm256_set1_ps(mid);
        for (uint32_t k = 0; k < g; k += 8)
            bits[(c0 + k) / 8u] =
                (uint8_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + k), vm, _CMP_GE_OQ));
    }
    return VKV_OK;
}
