/*
 * kernels/attend_avx2.c - the AVX2 + F16C + FMA attention kernels (the
 * contract is attend_internal.h; tests/kernels compares them with the scalar
 * reference within stated fp32 bounds, they are not bit-identical).
 *
 * bitdot: per query row, one 256-entry table per code byte j holding
 *   T_j[b] = sum_k c(bit k of b) * u[8j + k]
 * (built 8 entries per instruction from a 3-bit and a 5-bit half), then each
 * token costs hd/8 table lookups instead of hd multiply-adds.
 * bitacc, one query row (head_dim a multiple of 64): each code bit is moved
 *   into its lane's sign bit (VPSLLVD) and selects +w_t or -w_t (or w_t / 0)
 *   with VBLENDVPS into 64 register accumulators per pass over the tokens.
 * bitacc, other head dims: a weighted histogram of the code bytes,
 *   W_j[b] += w_t for b = byte j of token t, then acc[8j + k] += sum over b
 *   with bit k of W_j[b] (minus the rest when signed), folded one bit at a
 *   time.
 * With two or more query rows per KV head (GQA, several queries), both use
 * tables / histograms of 8-lane vectors over up to 8 rows, so one lookup or
 * update serves every row.
 * rawdot / rawacc: 8 channels per FMA with F16C / shift conversion.
 * expsum: an 8-lane exp (Cephes polynomial); fwht: in-register stages.
 * All buffers are the caller's (the driver's scratch); nothing is kept.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/attend_internal.h"
#include "kernels/codec_internal.h"

/* Builds the hd/8 tables of row u into tab ([hd/8][256] floats). */
static void vkvk_att_avx2_tables(const float *u, uint32_t hd, int sgn, float *tab)
{
    for (uint32_t j = 0; j < hd / 8u; j++) {
        const float *x = u + 8u * j;
        float lo[8], hi[32];
        /* all bits clear, then each set bit k adds c(1) - c(0) times x_k */
        const float m = sgn ? 2.0f : 1.0f;
        lo[0] = sgn ? -((x[0] + x[1]) + x[2]) : 0.0f;
        for (uint32_t k = 0; k < 3; k++)
            for (uint32_t b = 0; b < (1u << k); b++)
                lo[b | (1u << k)] = lo[b] + m * x[k];
        hi[0] = sgn ? -(((x[3] + x[4]) + (x[5] + x[6])) + x[7]) : 0.0f;
        for (uint32_t k = 0; k < 5; k++)
            for (uint32_t b = 0; b < (1u << k); b++)
                hi[b | (1u << k)] = hi[b] + m * x[3 + k];
        __m256 vlo = _mm256_loadu_ps(lo);
        float *t = tab + 256u * j;
        for (uint32_t b = 0; b < 32; b++)
            _mm256_storeu_ps(t + 8u * b, _mm256_add_ps(vlo, _mm256_set1_ps(hi[b])));
    }
}

/* 8-row tables: tab[j][b] is the 8-lane vector over rows r < rr of
 * T_j[b] for row r (lanes >= rr zero). tab: [hd/8][256][8] floats. */
static void vkvk_att_avx2_tables8(const float *u, uint32_t rr, uint32_t hd, int sgn, float *tab)
{
    const float m = sgn ? 2.0f : 1.0f;
    for (uint32_t j = 0; j < hd / 8u; j++) {
        _Alignas(32) float lo[8][8], hi[32][8];
        memset(lo, 0, sizeof(lo));
        memset(hi, 0, sizeof(hi));
        for (uint32_t r = 0; r < rr; r++) {
            const float *x = u + (size_t)r * hd + 8u * j;
            lo[0][r] = sgn ? -((x[0] + x[1]) + x[2]) : 0.0f;
            for (uint32_t k = 0; k < 3; k++)
                for (uint32_t b = 0; b < (1u << k); b++)
                    lo[b | (1u << k)][r] = lo[b][r] + m * x[k];
            hi[0][r] = sgn ? -(((x[3] + x[4]) + (x[5] + x[6])) + x[7]) : 0.0f;
            for (uint32_t k = 0; k < 5; k++)
                for (uint32_t b = 0; b < (1u << k); b++)
                    hi[b | (1u << k)][r] = hi[b][r] + m * x[3 + k];
        }
        float *t = tab + 2048u * j;
        for (uint32_t h5 = 0; h5 < 32; h5++) {
            __m256 vh = _mm256_load_ps(hi[h5]);
            for (uint32_t l3 = 0; l3 < 8; l3++)
                _mm256_store_ps(t + 8u * (8u * h5 + l3), _mm256_add_ps(vh, _mm256_load_ps(lo[l3])));
        }
    }
}

/* bitdot for rr (2..8) rows at once: one vector lookup per code byte. */
static void vkvk_att_avx2_bitdot8(const uint8_t *bits, size_t bstride, uint32_t n, const float *u,
                                  uint32_t rr, uint32_t hd, int sgn, float *dot, size_t ost,
                                  float *tab)
{
    const uint32_t nb = hd / 8u;
    vkvk_att_avx2_tables8(u, rr, hd, sgn, tab);
    for (uint32_t t = 0; t < n; t++) {
        const uint8_t *b = bits + t * bstride;
        _mm_prefetch((const char *)(b + 16u * bstride), _MM_HINT_T0);
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        uint32_t j = 0;
        for (; j + 2 <= nb; j += 2) {
            a0 = _mm256_add_ps(a0, _mm256_load_ps(tab + 2048u * j + 8u * b[j]));
            a1 = _mm256_add_ps(a1, _mm256_load_ps(tab + 2048u * (j + 1) + 8u * b[j + 1]));
        }
        if (j < nb)
            a0 = _mm256_add_ps(a0, _mm256_load_ps(tab + 2048u * j + 8u * b[j]));
        _Alignas(32) float o[8];
        _mm256_store_ps(o, _mm256_add_ps(a0, a1));
        for (uint32_t r = 0; r < rr; r++)
            dot[(size_t)r * ost + t] = o[r];
    }
}

/* bitdot table entry (attend_internal.h): 8-row vector tables for R >= 2,
 * else per row the scalar byte tables in scratch. Writes dot only. */
static void vkvk_att_avx2_bitdot(const uint8_t *bits, size_t bstride, uint32_t n, const float *u,
                                 uint32_t R, uint32_t hd, int sgn, float *dot, size_t ost,
                                 float *scratch)
{
    const uint32_t nb = hd / 8u;
    if (R >= 2) { /* rows share each lookup, 8 at a time */
        for (uint32_t r0 = 0; r0 < R; r0 += 8)
            vkvk_att_avx2_bitdot8(bits, bstride, n, u + (size_t)r0 * hd, R - r0 < 8 ? R - r0 : 8,
                                  hd, sgn, dot + (size_t)r0 * ost, ost, scratch);
        return;
    }
    for (uint32_t r = 0; r < R; r++) {
        vkvk_att_avx2_tables(u + (size_t)r * hd, hd, sgn, scratch);
        for (uint32_t t = 0; t < n; t++) {
            const uint8_t *b = bits + t * bstride;
            _mm_prefetch((const char *)(b + 16u * bstride), _MM_HINT_T0);
            float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
            uint32_t j = 0;
            for (; j + 8 <= nb; j += 8) { /* 8 code bytes per load */
                uint64_t x;
                memcpy(&x, b + j, 8);
                const float *tj = scratch + 256u * j;
                s0 += tj[x & 0xffu];
                s1 += tj[256u + ((x >> 8) & 0xffu)];
                s2 += tj[512u + ((x >> 16) & 0xffu)];
                s3 += tj[768u + ((x >> 24) & 0xffu)];
                s0 += tj[1024u + ((x >> 32) & 0xffu)];
                s1 += tj[1280u + ((x >> 40) & 0xffu)];
                s2 += tj[1536u + ((x >> 48) & 0xffu)];
                s3 += tj[1792u + (x >> 56)];
            }
            for (; j + 4 <= nb; j += 4) {
                s0 += scratch[256u * j + b[j]];
                s1 += scratch[256u * (j + 1) + b[j + 1]];
                s2 += scratch[256u * (j + 2) + b[j + 2]];
                s3 += scratch[256u * (j + 3) + b[j + 3]];
            }
            for (; j < nb; j++)
                s0 += scratch[256u * j + b[j]];
            dot[(size_t)r * ost + t] = (s0 + s1) + (s2 + s3);
        }
    }
}

/* acc[k] += sum over b with bit k of W[b] (minus the others when sgn), for
 * one byte position: W is 256 floats (destroyed). */
static void vkvk_att_avx2_fold(float *W, int sgn, float *acc8)
{
    /* Fold bits 7..3 across registers: after it, W[0..8) holds for entry
     * e the sum over the higher bits, and hs[k] the "bit k set" sums. */
    float hs[8];
    for (int k = 7; k >= 3; k--) {
        uint32_t half = 1u << k;
        __m256 set = _mm256_setzero_ps();
        for (uint32_t i = 0; i < half; i += 8) {
            __m256 a = _mm256_loadu_ps(W + i), b = _mm256_loadu_ps(W + half + i);
            set = _mm256_add_ps(set, b);
            _mm256_storeu_ps(W + i, _mm256_add_ps(a, b));
        }
        float tmp[8];
        _mm256_storeu_ps(tmp, set);
        hs[k] = ((tmp[0] + tmp[1]) + (tmp[2] + tmp[3])) + ((tmp[4] + tmp[5]) + (tmp[6] + tmp[7]));
    }
    /* bits 2..0 within the last 8 entries */
    float e[8];
    memcpy(e, W, sizeof(e));
    float tot = ((e[0] + e[1]) + (e[2] + e[3])) + ((e[4] + e[5]) + (e[6] + e[7]));
    hs[2] = (e[4] + e[5]) + (e[6] + e[7]);
    hs[1] = (e[2] + e[3]) + (e[6] + e[7]);
    hs[0] = (e[1] + e[3]) + (e[5] + e[7]);
    for (int k = 0; k < 8; k++)
        acc8[k] += sgn ? 2.0f * hs[k] - tot : hs[k];
}

/* bitacc for rr (2..8) rows at once: a histogram of 8-lane weight vectors
 * (hist: [hd/8][256][8] floats, then wt: [n][8]), folded per code byte as
 * vkvk_att_avx2_fold does for one row. */
static void vkvk_att_avx2_bitacc8(const uint8_t *bits, size_t bstride, uint32_t n, const float *w,
                                  size_t wst, uint32_t rr, uint32_t hd, int sgn, float *acc,
                                  float *hist)
{
    const uint32_t nb = hd / 8u;
    float *wt = hist + (size_t)nb * 2048u;
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t r = 0; r < 8; r++)
            wt[8u * t + r] = r < rr ? w[(size_t)r * wst + t] : 0.0f;
    memset(hist, 0, (size_t)nb * 2048u * sizeof(float));
    for (uint32_t t = 0; t < n; t++) {
        const uint8_t *b = bits + t * bstride;
        _mm_prefetch((const char *)(b + 16u * bstride), _MM_HINT_T0);
        __m256 wv = _mm256_load_ps(wt + 8u * t);
        for (uint32_t j = 0; j < nb; j++) {
            float *hp = hist + 2048u * j + 8u * b[j];
            _mm256_store_ps(hp, _mm256_add_ps(_mm256_load_ps(hp), wv));
        }
    }
    const __m256 two = _mm256_set1_ps(2.0f);
    for (uint32_t j = 0; j < nb; j++) {
        float *H = hist + 2048u * j;
        __m256 set[8];
        for (int k = 7; k >= 0; k--) {
            uint32_t half = 1u << k;
            __m256 sk = _mm256_setzero_ps();
            for (uint32_t i = 0; i < half; i++) {
                __m256 up = _mm256_load_ps(H + 8u * (half + i));
                sk = _mm256_add_ps(sk, up);
                _mm256_store_ps(H + 8u * i, _mm256_add_ps(_mm256_load_ps(H + 8u * i), up));
            }
            set[k] = sk;
        }
        __m256 tot = _mm256_load_ps(H);
        for (uint32_t k = 0; k < 8; k++) {
            _Alignas(32) float o[8];
            __m256 v = sgn ? _mm256_sub_ps(_mm256_mul_ps(two, set[k]), tot) : set[k];
            _mm256_store_ps(o, v);
            for (uint32_t r = 0; r < rr; r++)
                acc[(size_t)r * hd + 8u * j + k] += o[r];
        }
    }
}

/* bitacc for one row and hd a multiple of 64: every token adds +-w (or w /
 * 0) to 64 channel accumulators held in registers, selecting by the code
 * bit moved into each lane's sign bit (VPSLLVD + VBLENDVPS); 64 channels
 * per pass over the tokens. */
static void vkvk_att_avx2_bitacc1(const uint8_t *bits, size_t bstride, uint32_t n, const float *w,
                                  uint32_t hd, int sgn, float *acc)
{
    /* lane k of sh[i] shifts bit 8i + k of a 32-bit word into bit 31 */
    const __m256i sh0 = _mm256_setr_epi32(31, 30, 29, 28, 27, 26, 25, 24);
    const __m256i sh1 = _mm256_setr_epi32(23, 22, 21, 20, 19, 18, 17, 16);
    const __m256i sh2 = _mm256_setr_epi32(15, 14, 13, 12, 11, 10, 9, 8);
    const __m256i sh3 = _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0);
    const __m256 neg = _mm256_set1_ps(-0.0f);
    for (uint32_t c0 = 0; c0 < hd; c0 += 64) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
               a7 = a0;
        for (uint32_t t = 0; t < n; t++) {
            const uint8_t *b = bits + t * bstride + c0 / 8u;
            __m256 wp = _mm256_set1_ps(w[t]);
            __m256 wn = sgn ? _mm256_xor_ps(wp, neg) : _mm256_setzero_ps();
            uint32_t x0, x1;
            memcpy(&x0, b, 4);
            memcpy(&x1, b + 4, 4);
            __m256i v0 = _mm256_set1_epi32((int)x0), v1 = _mm256_set1_epi32((int)x1);
#define VKVK_ATT_SEL(v, s) _mm256_blendv_ps(wn, wp, _mm256_castsi256_ps(_mm256_sllv_epi32(v, s)))
            a0 = _mm256_add_ps(a0, VKVK_ATT_SEL(v0, sh0));
            a1 = _mm256_add_ps(a1, VKVK_ATT_SEL(v0, sh1));
            a2 = _mm256_add_ps(a2, VKVK_ATT_SEL(v0, sh2));
            a3 = _mm256_add_ps(a3, VKVK_ATT_SEL(v0, sh3));
            a4 = _mm256_add_ps(a4, VKVK_ATT_SEL(v1, sh0));
            a5 = _mm256_add_ps(a5, VKVK_ATT_SEL(v1, sh1));
            a6 = _mm256_add_ps(a6, VKVK_ATT_SEL(v1, sh2));
            a7 = _mm256_add_ps(a7, VKVK_ATT_SEL(v1, sh3));
#undef VKVK_ATT_SEL
        }
        float *o = acc + c0;
        _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), a0));
        _mm256_storeu_ps(o + 8, _mm256_add_ps(_mm256_loadu_ps(o + 8), a1));
        _mm256_storeu_ps(o + 16, _mm256_add_ps(_mm256_loadu_ps(o + 16), a2));
        _mm256_storeu_ps(o + 24, _mm256_add_ps(_mm256_loadu_ps(o + 24), a3));
        _mm256_storeu_ps(o + 32, _mm256_add_ps(_mm256_loadu_ps(o + 32), a4));
        _mm256_storeu_ps(o + 40, _mm256_add_ps(_mm256_loadu_ps(o + 40), a5));
        _mm256_storeu_ps(o + 48, _mm256_add_ps(_mm256_loadu_ps(o + 48), a6));
        _mm256_storeu_ps(o + 56, _mm256_add_ps(_mm256_loadu_ps(o + 56), a7));
    }
}

/* bitacc table entry (attend_internal.h): 8-row histograms for R >= 2,
 * register accumulators for one row when hd % 64 == 0, else the per-row
 * histogram in scratch. Adds into acc only. */
static void vkvk_att_avx2_bitacc(const uint8_t *bits, size_t bstride, uint32_t n, const float *w,
                                 size_t wst, uint32_t R, uint32_t hd, int sgn, float *acc,
                                 float *scratch)
{
    const uint32_t nb = hd / 8u;
    if (R >= 2) { /* rows share each histogram update, 8 at a time */
        for (uint32_t r0 = 0; r0 < R; r0 += 8)
            vkvk_att_avx2_bitacc8(bits, bstride, n, w + (size_t)r0 * wst, wst,
                                  R - r0 < 8 ? R - r0 : 8, hd, sgn, acc + (size_t)r0 * hd, scratch);
        return;
    }
    if (hd % 64u == 0) {
        vkvk_att_avx2_bitacc1(bits, bstride, n, w, hd, sgn, acc);
        return;
    }
    for (uint32_t r = 0; r < R; r++) {
        memset(scratch, 0, (size_t)nb * 256u * sizeof(float));
        for (uint32_t t = 0; t < n; t++) {
            const uint8_t *b = bits + t * bstride;
            _mm_prefetch((const char *)(b + 16u * bstride), _MM_HINT_T0);
            float wt = w[(size_t)r * wst + t];
            uint32_t j = 0;
            for (; j + 8 <= nb; j += 8) { /* 8 code bytes per load */
                uint64_t x;
                memcpy(&x, b + j, 8);
                float *hj = scratch + 256u * j;
                hj[x & 0xffu] += wt;
                hj[256u + ((x >> 8) & 0xffu)] += wt;
                hj[512u + ((x >> 16) & 0xffu)] += wt;
                hj[768u + ((x >> 24) & 0xffu)] += wt;
                hj[1024u + ((x >> 32) & 0xffu)] += wt;
                hj[1280u + ((x >> 40) & 0xffu)] += wt;
                hj[1536u + ((x >> 48) & 0xffu)] += wt;
                hj[1792u + (x >> 56)] += wt;
            }
            for (; j < nb; j++)
                scratch[256u * j + b[j]] += wt;
        }
        for (uint32_t j = 0; j < nb; j++)
            vkvk_att_avx2_fold(scratch + 256u * j, sgn, acc + (size_t)r * hd + 8u * j);
    }
}

/* Eight elements of a dtype row at p as floats. */
static inline __m256 vkvk_att_avx2_ld8(const uint8_t *p, int dtype)
{
    __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
    if (dtype == VKV_DTYPE_BF16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

/* Horizontal sum of the 8 lanes of v. */
static inline float vkvk_att_avx2_hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* rawdot table entry: one FMA chain pair per (token, row). Writes dot. */
static void vkvk_att_avx2_rawdot(const uint8_t *raw, size_t rstride, uint32_t n, int dtype,
                                 const float *u, uint32_t R, uint32_t hd, float *dot, size_t ost)
{
    for (uint32_t t = 0; t < n; t++) {
        const uint8_t *x = raw + t * rstride;
        for (uint32_t r = 0; r < R; r++) {
            const float *ur = u + (size_t)r * hd;
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            uint32_t d = 0;
            for (; d + 16 <= hd; d += 16) {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(ur + d), vkvk_att_avx2_ld8(x + 2u * d, dtype),
                                     a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(ur + d + 8),
                                     vkvk_att_avx2_ld8(x + 2u * d + 16u, dtype), a1);
            }
            for (; d < hd; d += 8)
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(ur + d), vkvk_att_avx2_ld8(x + 2u * d, dtype),
                                     a0);
            dot[(size_t)r * ost + t] = vkvk_att_avx2_hsum(_mm256_add_ps(a0, a1));
        }
    }
}

/* rawacc table entry: acc += w * row, 8 channels per FMA; zero weights
 * skip the row (a masked-out raw row never enters the sum). */
static void vkvk_att_avx2_rawacc(const uint8_t *raw, size_t rstride, uint32_t n, int dtype,
                                 const float *w, size_t wst, uint32_t R, uint32_t hd, float *acc)
{
    for (uint32_t t = 0; t < n; t++) {
        const uint8_t *x = raw + t * rstride;
        for (uint32_t r = 0; r < R; r++) {
            float wt = w[(size_t)r * wst + t];
            if (wt == 0.0f)
                continue;
            __m256 vw = _mm256_set1_ps(wt);
            float *ar = acc + (size_t)r * hd;
            for (uint32_t d = 0; d < hd; d += 8)
                _mm256_storeu_ps(ar + d, _mm256_fmadd_ps(vw, vkvk_att_avx2_ld8(x + 2u * d, dtype),
                                                         _mm256_loadu_ps(ar + d)));
        }
    }
}

/* expsum, 8 lanes at a time: exp(x) = 2^n * p(r) with n = round(x log2 e),
 * r = x - n ln 2 (ln 2 split in two), p the polynomial of Cephes' expf
 * (about 1 ulp). x < -87.3 (and -Inf: masked tokens) gives 0, where expf
 * underflows. Lanes are summed at the end. */
static float vkvk_att_avx2_expsum(float *s, uint32_t n, float m)
{
    const __m256 vm = _mm256_set1_ps(m), lo = _mm256_set1_ps(-87.33654f);
    const __m256 l2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 c1 = _mm256_set1_ps(0.693359375f), c2 = _mm256_set1_ps(-2.12194440e-4f);
    const __m256 p0 = _mm256_set1_ps(1.9875691500e-4f), p1 = _mm256_set1_ps(1.3981999507e-3f),
                 p2 = _mm256_set1_ps(8.3334519073e-3f), p3 = _mm256_set1_ps(4.1665795894e-2f),
                 p4 = _mm256_set1_ps(1.6666665459e-1f), p5 = _mm256_set1_ps(5.0000001201e-1f),
                 one = _mm256_set1_ps(1.0f);
    __m256 sum = _mm256_setzero_ps();
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_sub_ps(_mm256_loadu_ps(s + i), vm);
        __m256 dead = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
        x = _mm256_max_ps(x, lo);
        __m256 fx =
            _mm256_round_ps(_mm256_mul_ps(x, l2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        x = _mm256_fnmadd_ps(fx, c1, x);
        x = _mm256_fnmadd_ps(fx, c2, x);
        __m256 z = _mm256_mul_ps(x, x);
        __m256 y = _mm256_fmadd_ps(p0, x, p1);
        y = _mm256_fmadd_ps(y, x, p2);
        y = _mm256_fmadd_ps(y, x, p3);
        y = _mm256_fmadd_ps(y, x, p4);
        y = _mm256_fmadd_ps(y, x, p5);
        y = _mm256_fmadd_ps(y, z, _mm256_add_ps(x, one));
        __m256i e =
            _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
        y = _mm256_andnot_ps(dead, _mm256_mul_ps(y, _mm256_castsi256_ps(e)));
        _mm256_storeu_ps(s + i, y);
        sum = _mm256_add_ps(sum, y);
    }
    float tail = 0.0f;
    for (; i < n; i++) {
        s[i] = s[i] == -INFINITY ? 0.0f : expf(s[i] - m);
        tail += s[i];
    }
    return vkvk_att_avx2_hsum(sum) + tail;
}

/* In-place unnormalised FWHT of x[0..n) (n a power of two >= 8), the
 * same butterflies as vkvk_fwht (so the same values): stages 1, 2, 4 inside
 * each 8-lane vector, the others between vectors. */
static void vkvk_att_avx2_fwht(float *x, uint32_t n)
{
    for (uint32_t i = 0; i < n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 s = _mm256_permute_ps(v, 0xB1); /* x[i ^ 1] */
        v = _mm256_blend_ps(_mm256_add_ps(v, s), _mm256_sub_ps(s, v), 0xAA);
        s = _mm256_permute_ps(v, 0x4E); /* x[i ^ 2] */
        v = _mm256_blend_ps(_mm256_add_ps(v, s), _mm256_sub_ps(s, v), 0xCC);
        s = _mm256_permute2f128_ps(v, v, 1); /* x[i ^ 4] */
        v = _mm256_blend_ps(_mm256_add_ps(v, s), _mm256_sub_ps(s, v), 0xF0);
        _mm256_storeu_ps(x + i, v);
    }
    for (uint32_t len = 8; len < n; len <<= 1)
        for (uint32_t i = 0; i < n; i += len << 1)
            for (uint32_t k = i; k < i + len; k += 8) {
                __m256 a = _mm256_loadu_ps(x + k), b = _mm256_loadu_ps(x + k + len);
                _mm256_storeu_ps(x + k, _mm256_add_ps(a, b));
                _mm256_storeu_ps(x + k + len, _mm256_sub_ps(a, b));
            }
}

const vkvk_attend_kernels vkvk_attend_avx2 = {
    "avx2",
    vkvk_att_avx2_bitdot,
    vkvk_att_avx2_bitacc,
    vkvk_att_avx2_rawdot,
    vkvk_att_avx2_rawacc,
    vkvk_att_avx2_expsum,
    vkvk_att_avx2_fwht,
};
