/*
 * kernels/codec_tc_avx2.c - the AVX2 (+F16C) decoder of block rule 5
 * (VKV_RULE_TC): one token and head at a time, 8 channels per step, with
 * the same binary32 operations in the same order as the scalar
 * vkvk_tc_dec_f32 (codec_tc.h), so its output is bit-identical
 * (tests/kernels/kernels_tc_test.c checks it). Coded heads: each lane
 * fetches the 32-bit little-endian word holding its channel's code (the
 * channel's bit offset in the token's codes is fixed by the head's
 * allocation, vkvk_tc_offsets), shifts and masks it, and looks the
 * Lloyd-Max level up in two 8-entry permute tables. Rank-1 heads: each
 * code bit selects +a or -a. Allocation-free; nothing here owns memory.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/codec_tc.h"

/* The 14 levels of vkvk_tc_level in row order (1, 2, 3 bits; the same
 * binary32 literals), padded to 16: entries 0..7 and 8..15 are the two
 * permute tables. */
static const float vkvk_tc_lv16[16] = {-0.7979f, 0.7979f, -1.5104f, -0.4528f, 0.4528f, 1.5104f,
                                       -2.152f,  -1.344f, -0.756f,  -0.2451f, 0.2451f, 0.756f,
                                       1.344f,   2.152f,  0.0f,     0.0f};

/* Lanes d0..d0+7 of a coded head's row before the output step: levels from
 * the padded codes buf (4 readable bytes past every offset), times a, masked
 * to +0 where a channel has no bits, times sc, plus mu. */
static inline __m256 vkvk_tc_lanes(const vkvk_tc_head *c, const uint32_t *off, const uint8_t *buf,
                                   __m256 va, __m256 t0, __m256 t1, uint32_t d0)
{
    const __m256i o = _mm256_loadu_si256((const __m256i *)(const void *)(off + d0));
    const __m128i nb8 = _mm_loadl_epi64((const __m128i *)(const void *)(c->nb + d0));
    const __m256i nb = _mm256_cvtepu8_epi32(nb8);
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i w =
        _mm256_i32gather_epi32((const int *)(const void *)buf, _mm256_srli_epi32(o, 3), 1);
    const __m256i sh = _mm256_srlv_epi32(w, _mm256_and_si256(o, _mm256_set1_epi32(7)));
    const __m256i p2 = _mm256_sllv_epi32(one, nb); /* 2^nb */
    const __m256i code = _mm256_and_si256(sh, _mm256_sub_epi32(p2, one));
    const __m256i has = _mm256_cmpgt_epi32(nb, _mm256_setzero_si256());
    /* row offset 2^nb - 2 (nb = 0: -1 & mask -> unused, masked below) */
    const __m256i idx =
        _mm256_and_si256(_mm256_add_epi32(code, _mm256_sub_epi32(p2, _mm256_set1_epi32(2))), has);
    const __m256 lo = _mm256_permutevar8x32_ps(t0, idx), hi = _mm256_permutevar8x32_ps(t1, idx);
    const __m256 hsel = _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(7)));
    const __m256 lv = _mm256_blendv_ps(lo, hi, hsel);
    const __m256 r = _mm256_and_ps(_mm256_mul_ps(va, lv), _mm256_castsi256_ps(has));
    return _mm256_add_ps(_mm256_mul_ps(r, _mm256_loadu_ps(c->sc + d0)),
                         _mm256_loadu_ps(c->mu + d0));
}

/* Lanes d0..d0+7 of a rank-1 head's row: ((bit ? 1 : -1) * a) * b. */
static inline __m256 vkvk_tc_sign_lanes(const vkvk_tc_head *c, const uint8_t *codes, __m256 va,
                                        uint32_t d0)
{
    const __m256i bitsel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i by = _mm256_set1_epi32(codes[d0 >> 3]);
    const __m256 set =
        _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(by, bitsel), bitsel));
    const __m256 sg = _mm256_blendv_ps(_mm256_mul_ps(_mm256_set1_ps(-1.0f), va), va, set);
    return _mm256_mul_ps(sg, _mm256_loadu_ps(c->sc + d0));
}

/* See codec_tc.h. */
void vkvk_tc_dec_f32_avx2(const vkvk_tc_head *c, const uint32_t *off, const uint8_t *codes,
                          uint32_t cb, uint32_t q, float *out)
{
    const __m256 va = _mm256_set1_ps(vkvk_tc_scale(c->top, q));
    if (!c->coded) {
        for (uint32_t d = 0; d < c->hd; d += 8)
            _mm256_storeu_ps(out + d, vkvk_tc_sign_lanes(c, codes, va, d));
        return;
    }
    uint8_t buf[VKVK_TC_MAX_CODE_BYTES + 4u];
    memcpy(buf, codes, cb);
    memset(buf + cb, 0, 4u);
    const __m256 t0 = _mm256_loadu_ps(vkvk_tc_lv16), t1 = _mm256_loadu_ps(vkvk_tc_lv16 + 8);
    for (uint32_t d = 0; d < c->hd; d += 8)
        _mm256_storeu_ps(out + d, vkvk_tc_lanes(c, off, buf, va, t0, t1, d));
}

/* vkvk_rot_out of 8 lanes (clamp min then max, x86 NaN semantics; round
 * to nearest even) stored at o. */
static inline void vkvk_tc_store_out(__m256 v, int dtype, uint16_t *o)
{
    const __m256 m = _mm256_set1_ps(vkvk_dtype_max(dtype));
    v = _mm256_max_ps(_mm256_min_ps(v, m), _mm256_sub_ps(_mm256_setzero_ps(), m));
    if (dtype == VKV_DTYPE_F16) {
        _mm_storeu_si128((__m128i *)(void *)o, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
        return;
    }
    /* bf16: (u + 0x7fff + ((u >> 16) & 1)) >> 16, finite after the clamp */
    const __m256i u = _mm256_castps_si256(v);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), odd), 16);
    const __m128i p = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    _mm_storeu_si128((__m128i *)(void *)o, p);
}

/* See codec_tc.h. */
void vkvk_tc_dec_out_avx2(const vkvk_tc_head *c, const uint32_t *off, const uint8_t *codes,
                          uint32_t cb, uint32_t q, int dtype, uint16_t *out)
{
    const __m256 va = _mm256_set1_ps(vkvk_tc_scale(c->top, q));
    if (!c->coded) {
        for (uint32_t d = 0; d < c->hd; d += 8)
            vkvk_tc_store_out(vkvk_tc_sign_lanes(c, codes, va, d), dtype, out + d);
        return;
    }
    uint8_t buf[VKVK_TC_MAX_CODE_BYTES + 4u];
    memcpy(buf, codes, cb);
    memset(buf + cb, 0, 4u);
    const __m256 t0 = _mm256_loadu_ps(vkvk_tc_lv16), t1 = _mm256_loadu_ps(vkvk_tc_lv16 + 8);
    for (uint32_t d = 0; d < c->hd; d += 8)
        vkvk_tc_store_out(vkvk_tc_lanes(c, off, buf, va, t0, t1, d), dtype, out + d);
}

/* Sum of the 8 lanes of v. */
static inline float vkvk_tc_hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* See codec_tc.h. */
__attribute__((target("avx2,fma"))) void
vkvk_tc_scores_avx2(const vkvk_tc_keys *kk, const uint8_t *bits, size_t tstride, const uint8_t *scl,
                    size_t sstride, uint32_t nv, float *lv, float *sc, size_t T)
{
    const uint32_t n = kk->n, cb = kk->cb;
    const __m256 t0 = _mm256_loadu_ps(vkvk_tc_lv16), t1 = _mm256_loadu_ps(vkvk_tc_lv16 + 8);
    const __m256i one = _mm256_set1_epi32(1), lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    uint8_t buf[VKVK_TC_MAX_CODE_BYTES + 4u];
    for (uint32_t v = 0; v < nv; v++) {
        memcpy(buf, bits + (size_t)v * tstride, cb);
        memset(buf + cb, 0, 4u);
        for (uint32_t k = 0; k < n; k += 8) {
            const __m256i in = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - k)), lane);
            const __m256i o = _mm256_and_si256(_mm256_cvtepu16_epi32(_mm_loadu_si128(
                                                   (const __m128i *)(const void *)(kk->off + k))),
                                               in);
            const __m256i b = _mm256_and_si256(
                _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(kk->nb + k))),
                in);
            const __m256i w =
                _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), (const int *)(const void *)buf,
                                            _mm256_srli_epi32(o, 3), in, 1);
            const __m256i sh = _mm256_srlv_epi32(w, _mm256_and_si256(o, _mm256_set1_epi32(7)));
            const __m256i p2 = _mm256_sllv_epi32(one, b);
            const __m256i code = _mm256_and_si256(sh, _mm256_sub_epi32(p2, one));
            const __m256i idx = _mm256_and_si256(
                _mm256_add_epi32(code, _mm256_sub_epi32(p2, _mm256_set1_epi32(2))), in);
            const __m256 lo = _mm256_permutevar8x32_ps(t0, idx);
            const __m256 hi = _mm256_permutevar8x32_ps(t1, idx);
            const __m256 hs = _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(7)));
            _mm256_storeu_ps(lv + k,
                             _mm256_and_ps(_mm256_blendv_ps(lo, hi, hs), _mm256_castsi256_ps(in)));
        }
        const float a = vkvk_tc_scale(kk->top, scl[(size_t)v * sstride]);
        for (uint32_t r = 0; r < kk->R; r++) {
            const float *ur = kk->u + (size_t)r * kk->ustride;
            __m256 acc = _mm256_setzero_ps();
            for (uint32_t k = 0; k < n; k += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(ur + k), _mm256_loadu_ps(lv + k), acc);
            sc[(size_t)r * T + v] = a * vkvk_tc_hsum(acc) + kk->base[r];
        }
    }
}
