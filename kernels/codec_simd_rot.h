/*
 * kernels/codec_simd_rot.h - rotsign encode/decode with RW-lane float
 * vectors, bit-identical to vkvk_ref_enc_rot / vkvk_ref_dec_rot (codec_ref.c).
 *
 * Included by codec_avx2.c (RW 8) and codec_avx512.c (RW 16) after they
 * define VKVK_SFX(name) and the primitives below; head_dim must be a
 * multiple of RW (the entry points check and fall back otherwise).
 *
 *   rf                 float vector type; rbad its Inf/NaN accumulator type
 *   R_ZERO() R_SET1(x) R_ADD R_SUB R_MUL R_DIV R_MIN R_MAX R_XOR R_ABS(v)
 *   R_LD(p) R_ST(p,v)  RW floats, unaligned
 *   R_LDH(p,dt,&bad)   RW source-dtype elements at p (any alignment) as
 *                      floats, Inf/NaN noted in bad; R_LDHN without the check
 *   R_BAD0() R_BADANY(bad)
 *   R_STH(p,v,dt)      RW floats rounded to dt (vkvk_from_f32) stored at p
 *   R_GE0(p,v)         RW/8 code bytes at p: bit i = (v[i] >= 0.0f)
 *   R_SGN(p)           sign bit set in lane i where code bit i at p is 0
 *   R_NEG(d)           sign bit set in lane i where vkvk_rot_neg(d + i)
 *   R_FWHT_IN(v)       the FWHT stages len = 1 .. RW/2 inside one vector
 *   R_SUM32(acc)       vkvk_tree32_sum of the 32 lanes held by acc[32/RW]
 *   R_HMAX(v)          max over lanes (all lanes non-NaN and >= +0)
 *
 * Exactness: every float operation is the reference's, per element, in the
 * reference's order. The FWHT does the same stages in the same order (each
 * output element sees the same adds/subtracts); the 32-lane sums put vector
 * k into accumulator k % (32/RW), i.e. element d into lane d % 32, in
 * increasing d, then the reference tree; the channel sums over tokens are
 * per-lane in token order; the max of the non-negative, non-NaN b is
 * order-independent (NaN lanes are skipped exactly as MAXPS(b, bm) does).
 */
#ifndef VKVK_SFX
#error "define VKVK_SFX before including codec_simd_rot.h"
#endif

#define VKVK_RV_MAX (VKV_BLOCK_MAX_HEAD_DIM / RW) /* vectors in the largest head */
#define VKVK_RV_ACC (32 / RW)                     /* accumulators of a 32-lane sum */
#define VKVK_AI static inline __attribute__((always_inline))

#define VKVK_RV_PF 6 /* tokens to prefetch ahead in a first pass over the rows */

/* Prefetches the cache lines of n elements at p (a hint; never faults). */
VKVK_AI void VKVK_SFX(rot_prefetch)(const uint16_t *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i += 32)
        _mm_prefetch((const char *)(p + i), _MM_HINT_T0);
}

/* In-place FWHT of nv vectors z[0..nv) (head_dim nv*RW): the in-vector
 * stages, then len = RW, 2*RW, ... as whole-vector butterflies. */
VKVK_AI void VKVK_SFX(rot_fwht)(rf *z, uint32_t nv)
{
#pragma GCC unroll 32
    for (uint32_t k = 0; k < nv; k++)
        z[k] = R_FWHT_IN(z[k]);
    for (uint32_t lv = 1; lv < nv; lv <<= 1)
#pragma GCC unroll 32
        for (uint32_t i = 0; i < nv; i += lv << 1)
#pragma GCC unroll 32
            for (uint32_t k = i; k < i + lv; k++) {
                rf a = z[k], b = z[k + lv];
                z[k] = R_ADD(a, b);
                z[k + lv] = R_SUB(a, b);
            }
}

/* The reference's sum32(x*y) over nv vectors of floats x, y. */
VKVK_AI float VKVK_SFX(rot_dot32)(const float *x, const float *y, uint32_t nv)
{
    rf acc[VKVK_RV_ACC];
    for (int i = 0; i < VKVK_RV_ACC; i++)
        acc[i] = R_ZERO();
    for (uint32_t k = 0; k < nv; k++)
        acc[k % VKVK_RV_ACC] = R_ADD(acc[k % VKVK_RV_ACC], R_MUL(R_LD(x + k * RW), R_LD(y + k * RW)));
    return R_SUM32(acc);
}

/* sum32(|x_j| * y) with x_j the nv*RW source elements at row. */
VKVK_AI float VKVK_SFX(rot_dot32h)(const uint16_t *row, const int dt, const float *y, uint32_t nv)
{
    rf acc[VKVK_RV_ACC];
    for (int i = 0; i < VKVK_RV_ACC; i++)
        acc[i] = R_ZERO();
    for (uint32_t k = 0; k < nv; k++)
        acc[k % VKVK_RV_ACC] =
            R_ADD(acc[k % VKVK_RV_ACC], R_MUL(R_ABS(R_LDHN(row + k * RW, dt)), R_LD(y + k * RW)));
    return R_SUM32(acc);
}

/* TOKEN-mode encode of one head (see vkvk_ref_enc_rot) with nv = hd/RW
 * vectors; z is caller storage for nv vectors (a small local array when nv
 * is a constant, so that it lives in registers). scratch: hd floats. */
VKVK_AI int VKVK_SFX(rot_enc_tok)(const vkvk_rot_args *ra, const int dt, const uint16_t *src,
                                  size_t tstride, const uint32_t *vt, uint32_t n, uint32_t hd,
                                  uint8_t *bits, size_t bstride, uint8_t *vec, uint8_t *scl,
                                  size_t sstride, float *scratch, rf *z, const uint32_t nv)
{
    float fenc, fdec;
    vkvk_rot_factors(hd, &fenc, &fdec);
    float *mf = scratch;
    rbad bad = R_BAD0();
    /* S_d = sum over tokens in token order, 8 vectors at a time */
    for (uint32_t k0 = 0; k0 < nv; k0 += 8) {
        const uint32_t kn = nv - k0 < 8 ? nv - k0 : 8;
        rf acc[8];
#pragma GCC unroll 8
        for (uint32_t k = 0; k < 8; k++)
            acc[k] = R_ZERO();
        for (uint32_t j = 0; j < n; j++) {
            const uint16_t *row = src + vt[j] * tstride + k0 * RW;
            if (j + VKVK_RV_PF < n) /* rows are strided: fetch ahead of the first pass */
                VKVK_SFX(rot_prefetch)(src + vt[j + VKVK_RV_PF] * tstride + k0 * RW, kn * RW);
#pragma GCC unroll 8
            for (uint32_t k = 0; k < 8; k++)
                if (k < kn)
                    acc[k] = R_ADD(acc[k], R_LDH(row + k * RW, dt, &bad));
        }
#pragma GCC unroll 8
        for (uint32_t k = 0; k < 8; k++)
            if (k < kn)
                R_ST(mf + (k0 + k) * RW, acc[k]);
    }
    if (R_BADANY(bad))
        return VKV_ENONFINITE;
    const rf vn = R_SET1((float)n);
    for (uint32_t k = 0; k < nv; k++) {
        R_STH(vec + 2u * k * RW, R_DIV(R_LD(mf + k * RW), vn), dt);
        R_ST(mf + k * RW, R_LDHN((const void *)(vec + 2u * k * RW), dt));
    }
    for (uint32_t j = 0; j < n; j++) {
        const uint16_t *row = src + vt[j] * tstride;
#pragma GCC unroll 32
        for (uint32_t k = 0; k < nv; k++)
            z[k] = R_XOR(R_SUB(R_LDHN(row + k * RW, dt), R_LD(mf + k * RW)), R_NEG(k * RW));
        VKVK_SFX(rot_fwht)(z, nv);
        uint8_t *b = bits + j * bstride;
        rf acc[VKVK_RV_ACC];
        for (int i = 0; i < VKVK_RV_ACC; i++)
            acc[i] = R_ZERO();
#pragma GCC unroll 32
        for (uint32_t k = 0; k < nv; k++) {
            R_GE0(b + k * (RW / 8u), z[k]);
            acc[k % VKVK_RV_ACC] = R_ADD(acc[k % VKVK_RV_ACC], R_ABS(z[k]));
        }
        vkvk_rot_scale_put_fast(scl + j * sstride, R_SUM32(acc) * fenc, ra->sbits, dt);
    }
    return VKV_OK;
}

/* CHANNEL-mode encode of one head (see vkvk_ref_enc_rot), hd = nv*RW.
 * scratch: 2*hd + n floats. */
VKVK_AI int VKVK_SFX(rot_enc_chan)(const vkvk_rot_args *ra, const int dt, const uint16_t *src,
                                   size_t tstride, const uint32_t *vt, uint32_t n, uint32_t hd,
                                   uint8_t *bits, size_t bstride, uint8_t *vec, uint8_t *scl,
                                   size_t sstride, float *scratch)
{
    const uint32_t nv = hd / RW;
    float *b = scratch, *q = scratch + hd, *a = scratch + 2u * (size_t)hd;
    rbad bad = R_BAD0();
    for (uint32_t k = 0; k < nv; k++)
        R_ST(b + k * RW, R_ZERO());
    for (uint32_t j = 0; j < n; j++) {
        const uint16_t *row = src + vt[j] * tstride;
        uint8_t *bb = bits + j * bstride;
        if (j + VKVK_RV_PF < n) /* rows are strided: fetch ahead of the first pass */
            VKVK_SFX(rot_prefetch)(src + vt[j + VKVK_RV_PF] * tstride, hd);
        for (uint32_t k = 0; k < nv; k++) {
            rf x = R_LDH(row + k * RW, dt, &bad);
            R_GE0(bb + k * (RW / 8u), x);
            R_ST(b + k * RW, R_ADD(R_LD(b + k * RW), R_ABS(x)));
        }
    }
    if (R_BADANY(bad))
        return VKV_ENONFINITE;
    const rf vn = R_SET1((float)n);
    for (uint32_t k = 0; k < nv; k++)
        R_ST(b + k * RW, R_DIV(R_LD(b + k * RW), vn));
    for (unsigned it = 0; it < ra->iters; it++) {
        float bb = VKVK_SFX(rot_dot32)(b, b, nv), aa = 0.0f;
        for (uint32_t j = 0; j < n; j++) {
            a[j] = bb > 0.0f ? VKVK_SFX(rot_dot32h)(src + vt[j] * tstride, dt, b, nv) / bb : 0.0f;
            aa += a[j] * a[j];
        }
        for (uint32_t k = 0; k < nv; k++)
            R_ST(q + k * RW, R_ZERO());
        for (uint32_t j = 0; j < n; j++) {
            const uint16_t *row = src + vt[j] * tstride;
            const rf va = R_SET1(a[j]);
            for (uint32_t k = 0; k < nv; k++)
                R_ST(q + k * RW, R_ADD(R_LD(q + k * RW), R_MUL(R_ABS(R_LDHN(row + k * RW, dt)), va)));
        }
        const rf vaa = R_SET1(aa);
        for (uint32_t k = 0; k < nv; k++)
            R_ST(b + k * RW, aa > 0.0f ? R_DIV(R_LD(q + k * RW), vaa) : R_ZERO());
    }
    rf mx = R_ZERO();
    for (uint32_t k = 0; k < nv; k++)
        mx = R_MAX(R_LD(b + k * RW), mx);
    const float bm = R_HMAX(mx);
    const rf vbm = R_SET1(bm);
    for (uint32_t k = 0; k < nv; k++) {
        R_STH(vec + 2u * k * RW, bm > 0.0f ? R_DIV(R_LD(b + k * RW), vbm) : R_ZERO(), dt);
        R_ST(b + k * RW, R_LDHN((const void *)(vec + 2u * k * RW), dt));
    }
    const float B = VKVK_SFX(rot_dot32)(b, b, nv);
    for (uint32_t j = 0; j < n; j++) {
        float aj = B > 0.0f ? VKVK_SFX(rot_dot32h)(src + vt[j] * tstride, dt, b, nv) / B : 0.0f;
        vkvk_rot_scale_put_fast(scl + j * sstride, aj, ra->sbits, dt);
    }
    return VKV_OK;
}

/* Encode entry for one dtype: dispatches on mode and head_dim (constant
 * vector counts for the common sizes). Caller guarantees hd % RW == 0 and,
 * for TOKEN mode, a power of two. */
VKVK_AI int VKVK_SFX(rot_enc_dt)(const vkvk_rot_args *ra, const int dt, const uint16_t *src,
                                 size_t tstride, const uint32_t *vt, uint32_t n, uint32_t hd,
                                 uint8_t *bits, size_t bstride, uint8_t *vec, uint8_t *scl,
                                 size_t sstride, float *scratch)
{
    if (ra->mode != VKV_GROUP_TOKEN)
        return VKVK_SFX(rot_enc_chan)(ra, dt, src, tstride, vt, n, hd, bits, bstride, vec, scl,
                                      sstride, scratch);
#define VKVK_RT_CASE_(NV)                                                                        \
    case NV: {                                                                                   \
        rf z[NV];                                                                                \
        return VKVK_SFX(rot_enc_tok)(ra, dt, src, tstride, vt, n, hd, bits, bstride, vec, scl,   \
                                     sstride, scratch, z, NV);                                   \
    }
    switch (hd / RW) {
        VKVK_RT_CASE_(2)
        VKVK_RT_CASE_(4)
        VKVK_RT_CASE_(8)
        VKVK_RT_CASE_(16)
    default: {
        rf z[VKVK_RV_MAX];
        return VKVK_SFX(rot_enc_tok)(ra, dt, src, tstride, vt, n, hd, bits, bstride, vec, scl,
                                     sstride, scratch, z, hd / RW);
    }
    }
#undef VKVK_RT_CASE_
}

/* Decode of one token, every head, for one dtype (see vkvk_ref_dec_rot);
 * w is caller storage for nv = hd/RW vectors. */
VKVK_AI void VKVK_SFX(rot_dec_dt)(const vkvk_rot_args *ra, const int dt, const uint8_t *bits,
                                  const uint8_t *vec, const uint8_t *scl, uint32_t heads,
                                  uint32_t hd, uint16_t *dst, size_t head_stride, rf *w,
                                  const uint32_t nv)
{
    const float dmax = vkvk_dtype_max(dt);
    const rf vmax = R_SET1(dmax), vmin = R_SET1(-dmax);
    float fenc, fdec;
    vkvk_rot_factors(hd, &fenc, &fdec);
    for (uint32_t h = 0; h < heads; h++) {
        const uint8_t *b = bits + (size_t)h * (hd / 8u);
        const uint8_t *v = vec + (size_t)h * hd * 2u;
        float A = vkvk_rot_scale_get(scl + (size_t)h * (ra->sbits / 8u), ra->sbits, dt);
        uint16_t *o = dst + h * head_stride;
        if (ra->mode == VKV_GROUP_TOKEN) {
            const rf one = R_SET1(1.0f), vc = R_SET1(A * fdec);
#pragma GCC unroll 32
            for (uint32_t k = 0; k < nv; k++)
                w[k] = R_XOR(one, R_SGN(b + k * (RW / 8u)));
            VKVK_SFX(rot_fwht)(w, nv);
#pragma GCC unroll 32
            for (uint32_t k = 0; k < nv; k++) {
                rf p = R_XOR(R_MUL(vc, w[k]), R_NEG(k * RW));
                rf x = R_ADD(p, R_LDHN((const void *)(v + 2u * k * RW), dt));
                R_STH(o + k * RW, R_MAX(R_MIN(x, vmax), vmin), dt);
            }
        } else {
            const rf va = R_SET1(A);
            for (uint32_t k = 0; k < nv; k++) {
                rf p = R_MUL(va, R_LDHN((const void *)(v + 2u * k * RW), dt));
                p = R_XOR(p, R_SGN(b + k * (RW / 8u)));
                R_STH(o + k * RW, R_MAX(R_MIN(p, vmax), vmin), dt);
            }
        }
    }
}

/* Decode entry for one dtype: constant vector counts for common sizes. */
VKVK_AI void VKVK_SFX(rot_dec_sz)(const vkvk_rot_args *ra, const int dt, const uint8_t *bits,
                                  const uint8_t *vec, const uint8_t *scl, uint32_t heads,
                                  uint32_t hd, uint16_t *dst, size_t head_stride)
{
#define VKVK_RD_CASE_(NV)                                                                        \
    case NV: {                                                                                   \
        rf w[NV];                                                                                \
        VKVK_SFX(rot_dec_dt)(ra, dt, bits, vec, scl, heads, hd, dst, head_stride, w, NV);        \
        return;                                                                                  \
    }
    switch (hd / RW) {
        VKVK_RD_CASE_(4)
        VKVK_RD_CASE_(8)
        VKVK_RD_CASE_(16)
    default: {
        rf w[VKVK_RV_MAX];
        VKVK_SFX(rot_dec_dt)(ra, dt, bits, vec, scl, heads, hd, dst, head_stride, w, hd / RW);
        return;
    }
    }
#undef VKVK_RD_CASE_
}

/* Table entries: see vkvk_kernels.enc_rot / dec_rot in codec_internal.h.
 * Shapes this file does not handle (hd % RW != 0, or a TOKEN head_dim that
 * is not a power of two, which the driver never passes) go to `fallback`. */
static int VKVK_SFX(enc_rot)(const vkvk_rot_args *ra, const uint16_t *src, size_t tstride,
                             const uint32_t *vt, uint32_t n, uint32_t hd, uint8_t *bits,
                             size_t bstride, uint8_t *vec, uint8_t *scl, size_t sstride,
                             float *scratch)
{
    if (hd % RW != 0 || (ra->mode == VKV_GROUP_TOKEN && !vkvk_pow2(hd)))
        return VKVK_ROT_FALLBACK_ENC(ra, src, tstride, vt, n, hd, bits, bstride, vec, scl, sstride,
                                     scratch);
    if (ra->dtype == VKV_DTYPE_BF16)
        return VKVK_SFX(rot_enc_dt)(ra, VKV_DTYPE_BF16, src, tstride, vt, n, hd, bits, bstride, vec,
                                    scl, sstride, scratch);
    return VKVK_SFX(rot_enc_dt)(ra, VKV_DTYPE_F16, src, tstride, vt, n, hd, bits, bstride, vec, scl,
                                sstride, scratch);
}

static void VKVK_SFX(dec_rot)(const vkvk_rot_args *ra, const uint8_t *bits, const uint8_t *vec,
                              const uint8_t *scl, uint32_t heads, uint32_t hd, uint16_t *dst,
                              size_t head_stride)
{
    if (hd % RW != 0 || (ra->mode == VKV_GROUP_TOKEN && !vkvk_pow2(hd))) {
        VKVK_ROT_FALLBACK_DEC(ra, bits, vec, scl, heads, hd, dst, head_stride);
        return;
    }
    if (ra->dtype == VKV_DTYPE_BF16)
        VKVK_SFX(rot_dec_sz)(ra, VKV_DTYPE_BF16, bits, vec, scl, heads, hd, dst, head_stride);
    else
        VKVK_SFX(rot_dec_sz)(ra, VKV_DTYPE_F16, bits, vec, scl, heads, hd, dst, head_stride);
}

#undef VKVK_RV_MAX
#undef VKVK_RV_PF
#undef VKVK_RV_ACC
#undef VKVK_AI
