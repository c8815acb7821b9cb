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
 *   R_CHK(v,&bad)      notes the Inf/NaN lanes of float vector v in bad
 *   R_STH(p,v,dt)      RW floats rounded to dt (vkvk_from_f32) stored at p
 *   R_GE0(p,v)         RW/8 code bytes at p: bit i = (v[i] >= 0.0f)
 *   R_SGN(p)           sign bit set in lane i where code bit i at p is 0
 *   R_NEG(d)           sign bit set in lane i where vkvk_rot_neg(d + i)
 *   R_FWHT_IN(v)       the FWHT stages len = 1 .. RW/2 inside one vector
 *   R_PM1_IN(p)        R_FWHT_IN of the +-1 vector of the RW code bits at p
 *                      (bit 1 -> +1.0f), from vkvk_rot_pm8
 *   R_SUM32(acc)       vkvk_tree32_sum of the 32 lanes held by acc[32/RW]
 *   R_HMAX(v)          max over lanes (all lanes non-NaN and >= +0)
 *   R_SC8(p,v)         RW 8-bit scale codes of v (vkvk_sc8_encode_fast) at p
 *   R_FMA(a,b,c)       a * b + c, one rounding
 *   R_LTBITS(v)        RW bits, bit i = (v[i] < 0.0f), for v with no -0
 *                      and no NaN lane (AVX2: the sign bits); its complement
 *                      is bit i = (v[i] >= 0.0f)
 *   R_TREEU(acc)       the lane-wise first adds of R_SUM32 (one vector)
 *   R_TREEH(u)         the rest of R_SUM32: R_SUM32(acc) = R_TREEH(R_TREEU(acc))
 *   R_TREE8(u), R_GT0SEL(b,x)  (RW 8 only) R_TREEH of u[0..8) as the 8
 *                      lanes of one vector; x where b > 0, else +0
 *
 * Exactness: every float operation is the reference's, per element, in the
 * reference's order. The FWHT does the same stages in the same order (each
 * output element sees the same adds/subtracts); the 32-lane sums put vector
 * k into accumulator k % (32/RW), i.e. element d into lane d % 32, in
 * increasing d, then the reference tree; the channel sums over tokens are
 * per-lane in token order; the max of the non-negative, non-NaN b is
 * order-independent (NaN lanes are skipped exactly as MAXPS(b, bm) does).
 * The AVX-512 in-vector stages are FMAs with +-1 factors (exact products,
 * one rounding: the same values as the add/sub); decode's +-1 FWHT values
 * are small integers, exact in any order.
 */
/*
 * Structure (all measured on the default spec, see BENCHMARKS.md): encode
 * works on one layer's tensor with every head at once: a first pass over
 * whole token rows in memory order (channel sums in L1 scratch), a second
 * pass over the same rows (now in L2) that also prefetches the next layer's
 * rows into L2 (vkvk_rot_args.next), and the 8-bit scale codes RW at a time
 * (R_SC8). Decode starts each TOKEN-mode FWHT from vkvk_rot_pm8 rows (the
 * first three stages of a +-1 vector are a table lookup) and takes the
 * vector section's magnitude bound from the driver (vamax1: once per tensor
 * instead of once per token, -21% TOKEN / -23% CHANNEL decode time of one
 * L2-resident layer). TOKEN encode rows (rot_tok_row): one FMA per vector
 * for the centring and sign flip, code bits from the sign bits, eight
 * heads' sum trees in one vector (-7% per layer). Tried and not kept, no
 * measurable gain on the 2-core VM: non-temporal stores and write-prefetches
 * of the decode output, software prefetch in the first pass; on the AMD
 * EPYC (Zen 3) VM: the TOKEN row in two phases of four vectors through a
 * stack buffer (phase 2's groups are exactly the accumulators' inputs), 8%
 * slower, and the same with two heads interleaved, 6% slower (the one-pass
 * row spills too but schedules better); each all-heads kernel as its own
 * noinline function, 6-10% slower at full size. Third round, same VM: the
 * TOKEN row complements its code bits once per 64-bit word (R_LTBITS), not
 * per vector (-2..-5% TOKEN encode); tried and not kept: an integer fp16
 * conversion (value * 2^-112, the 2^112 folded into G; exact, but 2-3
 * instructions for F16C's one) in element order, 4-5% slower, and from
 * 32-byte loads in unpack order with the FWHT's len 4 stage whole-vector,
 * 20% slower; the sign bits of four vectors by packs and one movemask,
 * 7-10% slower; the whole-vector butterflies as FMAs with +-1 factors,
 * 6-12% slower; a T0 prefetch of the current layer's rows in the second
 * passes, 3-10% slower; other hints for the next-layer prefetch, no
 * change; the CHANNEL first pass with rows as offsets or as one flat run,
 * 4-10% slower.
 */
#ifndef VKVK_SFX
#error "define VKVK_SFX before including codec_simd_rot.h"
#endif

#define VKVK_RV_MAX (VKV_BLOCK_MAX_HEAD_DIM / RW) /* vectors in the largest head */

/* Loads of the all-heads first passes. fp16 elements are loaded unchecked:
 * every finite fp16 is at most 65504, so the per-channel sums of up to
 * 65536 of them (or of their magnitudes) stay finite, and a sum is Inf or
 * NaN exactly when one of its inputs is; the passes then check the sums
 * (VKVK_RV_CHKSUM). bf16 sums of finite inputs can overflow, so bf16
 * elements are checked one by one. The result, VKV_ENONFINITE exactly when
 * a visual element is Inf or NaN, is the reference's. */
#define VKVK_RV_LD(p, dt, bad) ((dt) == VKV_DTYPE_F16 ? R_LDHN(p, dt) : R_LDH(p, dt, bad))
#define VKVK_RV_CHKSUM(S, cnt, dt, bad)                                                            \
    do {                                                                                           \
        if ((dt) == VKV_DTYPE_F16)                                                                 \
            for (size_t i_ = 0; i_ < (cnt); i_ += RW)                                              \
                R_CHK(R_LD((S) + i_), bad);                                                        \
    } while (0)
#define VKVK_RV_ACC (32 / RW) /* accumulators of a 32-lane sum */
#define VKVK_AI     static inline __attribute__((always_inline))

#define VKVK_RV_PF 6 /* tokens to prefetch ahead in a first pass over the rows */

/* GCC keeps a head's vectors in registers only when the FWHT's stage loop
 * (lv doubling) is unrolled too; clang unrolls it by itself and rejects the
 * pragma on a loop whose trip count it cannot compute (-Wpass-failed). */
#if defined(__clang__)
#define VKVK_RV_UNROLL_LV
#else
#define VKVK_RV_UNROLL_LV _Pragma("GCC unroll 8")
#endif

/* Prefetches the cache lines of n elements at p (a hint; never faults). */
VKVK_AI void VKVK_SFX(rot_prefetch)(const uint16_t *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i += 32)
        _mm_prefetch((const char *)(p + i), _MM_HINT_T0);
}

/* Prefetches into L2 every head's hd elements of token vt[j] (row base
 * src + vt[j]*ts, heads hs apart): the second passes fetch the next layer's
 * rows this way, so that its first pass reads from L2 while this layer's
 * arithmetic hides the memory latency. A hint; never faults. */
VKVK_AI void VKVK_SFX(rot_prefetch_l2)(const uint16_t *src, size_t ts, size_t hs,
                                       const uint32_t *vt, uint32_t j, uint32_t heads, uint32_t hd)
{
    const uint16_t *row = src + vt[j] * ts;
    const uint32_t len = hs == hd ? heads * hd : hd; /* heads contiguous: one run */
    for (uint32_t h = 0; h < (hs == hd ? 1u : heads); h++)
        for (uint32_t i = 0; i < len; i += 32)
            _mm_prefetch((const char *)(row + h * hs + i), _MM_HINT_T1);
}

/* The FWHT stages len = RW, 2*RW, ... of nv vectors z[0..nv), in place, as
 * whole-vector butterflies. */
VKVK_AI void VKVK_SFX(rot_fwht_x)(rf *z, uint32_t nv)
{
    VKVK_RV_UNROLL_LV /* all stages unrolled: z stays in registers */
        for (uint32_t lv = 1; lv < nv; lv <<= 1)
#pragma GCC unroll 32
            for (uint32_t i = 0; i < nv; i += lv << 1)
#pragma GCC unroll 32
                for (uint32_t k = i; k < i + lv; k++)
    {
        rf a = z[k], b = z[k + lv];
        z[k] = R_ADD(a, b);
        z[k + lv] = R_SUB(a, b);
    }
}

/* In-place FWHT of nv vectors z[0..nv) (head_dim nv*RW): the in-vector
 * stages, then len = RW, 2*RW, ... as whole-vector butterflies. */
VKVK_AI void VKVK_SFX(rot_fwht)(rf *z, uint32_t nv)
{
#pragma GCC unroll 32
    for (uint32_t k = 0; k < nv; k++)
        z[k] = R_FWHT_IN(z[k]);
    VKVK_SFX(rot_fwht_x)(z, nv);
}

/* The reference's sum32(x*y) over nv vectors of floats x, y. */
VKVK_AI float VKVK_SFX(rot_dot32)(const float *x, const float *y, uint32_t nv)
{
    rf acc[VKVK_RV_ACC];
    for (int i = 0; i < VKVK_RV_ACC; i++)
        acc[i] = R_ZERO();
#pragma GCC unroll 16
    for (uint32_t k = 0; k < nv; k++)
        acc[k % VKVK_RV_ACC] =
            R_ADD(acc[k % VKVK_RV_ACC], R_MUL(R_LD(x + k * RW), R_LD(y + k * RW)));
    return R_SUM32(acc);
}

/* The lane-wise part (R_TREEU) of sum32(|x_j| * y) with x_j the nv*RW
 * source elements at row. */
VKVK_AI rf VKVK_SFX(rot_dot32hu)(const uint16_t *row, const int dt, const float *y, uint32_t nv)
{
    rf acc[VKVK_RV_ACC];
    for (int i = 0; i < VKVK_RV_ACC; i++)
        acc[i] = R_ZERO();
#pragma GCC unroll 16
    for (uint32_t k = 0; k < nv; k++)
        acc[k % VKVK_RV_ACC] =
            R_ADD(acc[k % VKVK_RV_ACC], R_MUL(R_ABS(R_LDHN(row + k * RW, dt)), R_LD(y + k * RW)));
    return R_TREEU(acc);
}

/* sum32(|x_j| * y) with x_j the nv*RW source elements at row. */
VKVK_AI float VKVK_SFX(rot_dot32h)(const uint16_t *row, const int dt, const float *y, uint32_t nv)
{
    return R_TREEH(VKVK_SFX(rot_dot32hu)(row, dt, y, nv));
}

/* CHANNEL-mode encode of one head (see vkvk_ref_enc_rot), hd = nv*RW, any
 * number of refinement passes (rot_enc_chan_all below is the iters = 0
 * path). Writes the head's bits (stride bstride), vector and scales
 * (stride sstride) into caller memory. scratch: 2*hd + n floats. */
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
                R_ST(q + k * RW,
                     R_ADD(R_LD(q + k * RW), R_MUL(R_ABS(R_LDHN(row + k * RW, dt)), va)));
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

/* Writes the n scale values a[0..n) (scratch) as codes at scl (caller
 * memory, sbits/8 bytes each): 8-bit codes RW at a time (R_SC8), the rest
 * and 16-bit scales one by one; the same bytes as vkvk_rot_scale_put_fast. */
VKVK_AI void VKVK_SFX(rot_scales)(const vkvk_rot_args *ra, const int dt, const float *a, size_t n,
                                  uint8_t *scl)
{
    size_t i = 0;
    const size_t sb = ra->sbits / 8u;
    if (ra->sbits == 8)
        for (; i + RW <= n; i += RW)
            R_SC8(scl + i, R_LD(a + i));
    for (; i < n; i++)
        vkvk_rot_scale_put_fast(scl + i * sb, a[i], ra->sbits, dt);
}

/* TOKEN-mode second pass of one (token, head) row x of hd = nv*RW source
 * elements: z = x * G + C (one FMA: G[d] = -1 where neg(d), else +1, and
 * C = -(m ^ s) + 0, so z = round(+-x -+ m), the reference's (x - m) ^ s up
 * to the sign of a zero, but never -0: an exact zero sum is +0 unless both
 * addends are -0, and C never is), the FWHT (adds, subtracts and FMAs with
 * +-1 factors: again no -0 can arise from operands that are not -0), then
 * the code bits at b and the lane-wise part of the reference's 32-lane sum
 * of |z| (R_TREEH or R_TREE8 finish it). As no z is -0 or NaN, z >= 0 is the
 * clear sign bit (R_LTBITS gathers the sign bits; the word is complemented
 * once per 64 bits, not per vector), and every value equals the reference's
 * up to the sign of a zero, which neither the bits nor |z| see. z: caller
 * storage for nv vectors. The bits of 64/RW vectors are stored as one
 * 64-bit word. */
VKVK_AI rf VKVK_SFX(rot_tok_row)(const int dt, const uint16_t *x, const float *C, const float *G,
                                 uint8_t *b, rf *z, const uint32_t nv)
{
#pragma GCC unroll 32
    for (uint32_t k = 0; k < nv; k++)
        z[k] = R_FMA(R_LDHN(x + k * RW, dt), R_LD(G + k * RW), R_LD(C + k * RW));
    VKVK_SFX(rot_fwht)(z, nv);
    rf acc[VKVK_RV_ACC];
#pragma GCC unroll 32
    for (uint32_t k = 0; k < VKVK_RV_ACC; k++)
        acc[k] = k < nv ? R_ABS(z[k]) : R_ZERO(); /* 0 + |z| = |z| exactly */
    uint64_t w = 0;
    unsigned nb = 0;
#pragma GCC unroll 32
    for (uint32_t k = 0; k < nv; k++) {
        if (k >= VKVK_RV_ACC)
            acc[k % VKVK_RV_ACC] = R_ADD(acc[k % VKVK_RV_ACC], R_ABS(z[k]));
        w |= (uint64_t)R_LTBITS(z[k]) << nb;
        nb += RW;
        if (nb == 64) {
            w = ~w; /* bits z >= 0: one complement per word */
            memcpy(b, &w, 8);
            b += 8;
            w = 0;
            nb = 0;
        }
    }
    if (nb != 0) {
        w = ~w;
        memcpy(b, &w, nb / 8u);
    }
    return R_TREEU(acc);
}

/* TOKEN-mode encode of every head of one layer (the reference's
 * arithmetic, see vkvk_ref_enc_rot) with nv = hd/RW vectors per head. The
 * first pass walks whole token rows in memory order and adds each row into
 * the heads*hd channel sums S (scratch; 4 tokens per load/store of S, still
 * one add per token in token order); the second pass rotates every
 * (token, head) row, writes its code bits and keeps its scale value in
 * scratch; the scale codes are written at the end in one vector sweep.
 * z: caller storage for nv vectors. Outputs as vkvk_kernels.enc_rot. */
VKVK_AI int VKVK_SFX(rot_enc_tok_all)(const vkvk_rot_args *ra, const int dt, const uint16_t *src,
                                      size_t ts, size_t hs, const uint32_t *vt, uint32_t n,
                                      uint32_t heads, uint32_t hd, uint8_t *bits, uint8_t *vec,
                                      uint8_t *scl, float *scratch, rf *z, const uint32_t nv)
{
    float fenc, fdec;
    vkvk_rot_factors(hd, &fenc, &fdec);
    float *S = scratch, *av = scratch + (size_t)heads * hd, *G = av + (size_t)n * heads;
    const size_t brow = (size_t)heads * (hd / 8u);
    rbad bad = R_BAD0();
    for (size_t i = 0; i < (size_t)heads * hd; i += RW)
        R_ST(S + i, R_ZERO());
    uint32_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const uint16_t *r0 = src + vt[j] * ts, *r1 = src + vt[j + 1] * ts;
        const uint16_t *r2 = src + vt[j + 2] * ts, *r3 = src + vt[j + 3] * ts;
        for (uint32_t h = 0; h < heads; h++) {
            const size_t o = h * hs;
            float *sh = S + (size_t)h * hd;
#pragma GCC unroll 16
            for (uint32_t k = 0; k < nv; k++) {
                rf acc = R_ADD(R_LD(sh + k * RW), VKVK_RV_LD(r0 + o + k * RW, dt, &bad));
                acc = R_ADD(acc, VKVK_RV_LD(r1 + o + k * RW, dt, &bad));
                acc = R_ADD(acc, VKVK_RV_LD(r2 + o + k * RW, dt, &bad));
                R_ST(sh + k * RW, R_ADD(acc, VKVK_RV_LD(r3 + o + k * RW, dt, &bad)));
            }
        }
    }
    for (; j < n; j++) {
        const uint16_t *r0 = src + vt[j] * ts;
        for (uint32_t h = 0; h < heads; h++) {
            float *sh = S + (size_t)h * hd;
            for (uint32_t k = 0; k < nv; k++)
                R_ST(sh + k * RW,
                     R_ADD(R_LD(sh + k * RW), VKVK_RV_LD(r0 + h * hs + k * RW, dt, &bad)));
        }
    }
    VKVK_RV_CHKSUM(S, (size_t)heads * hd, dt, &bad);
    if (R_BADANY(bad))
        return VKV_ENONFINITE;
    const rf vn = R_SET1((float)n), nz = R_SET1(-0.0f);
    for (size_t i = 0; i < (size_t)heads * hd; i += RW) { /* S: the addends C */
        R_STH(vec + 2u * i, R_DIV(R_LD(S + i), vn), dt);
        rf m = R_LDHN((const void *)(vec + 2u * i), dt);
        R_ST(S + i, R_ADD(R_XOR(R_XOR(m, R_NEG((uint32_t)(i % hd))), nz), R_ZERO()));
    }
    for (uint32_t k = 0; k < nv; k++) /* G: the factors */
        R_ST(G + k * RW, R_XOR(R_SET1(1.0f), R_NEG(k * RW)));
    for (j = 0; j < n; j++) {
        const uint16_t *row = src + vt[j] * ts;
        uint8_t *bj = bits + j * brow;
        if (ra->next != NULL)
            VKVK_SFX(rot_prefetch_l2)(ra->next, ts, hs, vt, j, heads, hd);
        float *aj = av + (size_t)j * heads;
        uint32_t h = 0;
#if RW == 8
        for (; h + 8 <= heads; h += 8) {
            rf u[8];
            for (uint32_t i = 0; i < 8; i++)
                u[i] = VKVK_SFX(rot_tok_row)(dt, row + (h + i) * hs, S + (size_t)(h + i) * hd, G,
                                             bj + (size_t)(h + i) * (hd / 8u), z, nv);
            R_ST(aj + h, R_MUL(R_TREE8(u), R_SET1(fenc)));
        }
#endif
        for (; h < heads; h++) {
            rf u = VKVK_SFX(rot_tok_row)(dt, row + h * hs, S + (size_t)h * hd, G,
                                         bj + (size_t)h * (hd / 8u), z, nv);
            aj[h] = R_TREEH(u) * fenc;
        }
    }
    VKVK_SFX(rot_scales)(ra, dt, av, (size_t)n * heads, scl);
    return VKV_OK;
}

/* CHANNEL-mode encode without refinement passes (iters = 0) of every head
 * of one layer, nv = hd/RW vectors per head: one pass over whole token rows
 * writes the code bits and sums |x| per channel in token order (4 tokens
 * per load/store of the sums), then per head b, bm, the stored vector and
 * B; a second pass over the rows computes every scale value into scratch;
 * the scale codes are written in one vector sweep. */
VKVK_AI int VKVK_SFX(rot_enc_chan_all)(const vkvk_rot_args *ra, const int dt, const uint16_t *src,
                                       size_t ts, size_t hs, const uint32_t *vt, uint32_t n,
                                       uint32_t heads, uint32_t hd, uint8_t *bits, uint8_t *vec,
                                       uint8_t *scl, float *scratch, const uint32_t nv)
{
    float *B = scratch, *av = scratch + (size_t)heads * hd, *bb = av + (size_t)n * heads;
    const size_t brow = (size_t)heads * (hd / 8u);
    rbad bad = R_BAD0();
    for (size_t i = 0; i < (size_t)heads * hd; i += RW)
        R_ST(B + i, R_ZERO());
    uint32_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const uint16_t *r0 = src + vt[j] * ts, *r1 = src + vt[j + 1] * ts;
        const uint16_t *r2 = src + vt[j + 2] * ts, *r3 = src + vt[j + 3] * ts;
        uint8_t *b0 = bits + j * brow;
        for (uint32_t h = 0; h < heads; h++) {
            const size_t o = h * hs, ob = (size_t)h * (hd / 8u);
            float *sh = B + (size_t)h * hd;
#pragma GCC unroll 16
            for (uint32_t k = 0; k < nv; k++) {
                rf x0 = VKVK_RV_LD(r0 + o + k * RW, dt, &bad),
                   x1 = VKVK_RV_LD(r1 + o + k * RW, dt, &bad);
                rf x2 = VKVK_RV_LD(r2 + o + k * RW, dt, &bad),
                   x3 = VKVK_RV_LD(r3 + o + k * RW, dt, &bad);
                uint8_t *bk = b0 + ob + k * (RW / 8u);
                R_GE0(bk, x0);
                R_GE0(bk + brow, x1);
                R_GE0(bk + 2u * brow, x2);
                R_GE0(bk + 3u * brow, x3);
                rf acc = R_ADD(R_ADD(R_LD(sh + k * RW), R_ABS(x0)), R_ABS(x1));
                R_ST(sh + k * RW, R_ADD(R_ADD(acc, R_ABS(x2)), R_ABS(x3)));
            }
        }
    }
    for (; j < n; j++) {
        const uint16_t *r0 = src + vt[j] * ts;
        uint8_t *b0 = bits + j * brow;
        for (uint32_t h = 0; h < heads; h++) {
            float *sh = B + (size_t)h * hd;
            for (uint32_t k = 0; k < nv; k++) {
                rf x0 = VKVK_RV_LD(r0 + h * hs + k * RW, dt, &bad);
                R_GE0(b0 + (size_t)h * (hd / 8u) + k * (RW / 8u), x0);
                R_ST(sh + k * RW, R_ADD(R_LD(sh + k * RW), R_ABS(x0)));
            }
        }
    }
    VKVK_RV_CHKSUM(B, (size_t)heads * hd, dt, &bad);
    if (R_BADANY(bad))
        return VKV_ENONFINITE;
    const rf vn = R_SET1((float)n);
    for (uint32_t h = 0; h < heads; h++) {
        float *b = B + (size_t)h * hd;
        uint8_t *vh = vec + (size_t)h * hd * 2u;
        rf mx = R_ZERO();
        for (uint32_t k = 0; k < nv; k++) {
            rf x = R_DIV(R_LD(b + k * RW), vn);
            R_ST(b + k * RW, x);
            mx = R_MAX(x, mx);
        }
        const float bm = R_HMAX(mx);
        const rf vbm = R_SET1(bm);
        for (uint32_t k = 0; k < nv; k++) {
            R_STH(vh + 2u * k * RW, bm > 0.0f ? R_DIV(R_LD(b + k * RW), vbm) : R_ZERO(), dt);
            R_ST(b + k * RW, R_LDHN((const void *)(vh + 2u * k * RW), dt));
        }
        bb[h] = VKVK_SFX(rot_dot32)(b, b, nv);
    }
    for (j = 0; j < n; j++) {
        const uint16_t *row = src + vt[j] * ts;
        if (ra->next != NULL)
            VKVK_SFX(rot_prefetch_l2)(ra->next, ts, hs, vt, j, heads, hd);
        uint32_t h = 0;
#if RW == 8
        for (; h + 8 <= heads; h += 8) { /* eight heads' trees and divisions at once */
            rf u[8];
            for (uint32_t i = 0; i < 8; i++)
                u[i] = VKVK_SFX(rot_dot32hu)(row + (h + i) * hs, dt, B + (size_t)(h + i) * hd, nv);
            const rf vb = R_LD(bb + h);
            R_ST(av + (size_t)j * heads + h, R_GT0SEL(vb, R_DIV(R_TREE8(u), vb)));
        }
#endif
        for (; h < heads; h++) {
            const float Bh = bb[h];
            av[(size_t)j * heads + h] =
                Bh > 0.0f ? VKVK_SFX(rot_dot32h)(row + h * hs, dt, B + (size_t)h * hd, nv) / Bh
                          : 0.0f;
        }
    }
    VKVK_SFX(rot_scales)(ra, dt, av, (size_t)n * heads, scl);
    return VKV_OK;
}

/* Encode of one layer's tensor for one dtype: the all-heads kernels with
 * constant vector counts for the common sizes; CHANNEL mode with refinement
 * passes runs rot_enc_chan head by head. Caller guarantees hd % RW == 0 and,
 * for TOKEN mode, a power of two. Outputs as vkvk_kernels.enc_rot. */
VKVK_AI int VKVK_SFX(rot_enc_dt)(const vkvk_rot_args *ra, const int dt, const uint16_t *src,
                                 size_t ts, size_t hs, const uint32_t *vt, uint32_t n,
                                 uint32_t heads, uint32_t hd, uint8_t *bits, uint8_t *vec,
                                 uint8_t *scl, float *scratch)
{
    if (ra->mode != VKV_GROUP_TOKEN && ra->iters > 0) {
        const size_t sb = ra->sbits / 8u, brow = (size_t)heads * (hd / 8u);
        for (uint32_t h = 0; h < heads; h++) {
            int rc = VKVK_SFX(rot_enc_chan)(
                ra, dt, src + h * hs, ts, vt, n, hd, bits + (size_t)h * (hd / 8u), brow,
                vec + (size_t)h * hd * 2u, scl + h * sb, heads * sb, scratch);
            if (rc != VKV_OK)
                return rc;
        }
        return VKV_OK;
    }
#define VKVK_RT_CASE_(NV)                                                                          \
    case NV: {                                                                                     \
        rf z[NV];                                                                                  \
        if (ra->mode != VKV_GROUP_TOKEN)                                                           \
            return VKVK_SFX(rot_enc_chan_all)(ra, dt, src, ts, hs, vt, n, heads, hd, bits, vec,    \
                                              scl, scratch, NV);                                   \
        return VKVK_SFX(rot_enc_tok_all)(ra, dt, src, ts, hs, vt, n, heads, hd, bits, vec, scl,    \
                                         scratch, z, NV);                                          \
    }
    switch (hd / RW) {
        VKVK_RT_CASE_(2)
        VKVK_RT_CASE_(4)
        VKVK_RT_CASE_(8)
        VKVK_RT_CASE_(16)
    default: {
        rf z[VKVK_RV_MAX];
        if (ra->mode != VKV_GROUP_TOKEN)
            return VKVK_SFX(rot_enc_chan_all)(ra, dt, src, ts, hs, vt, n, heads, hd, bits, vec, scl,
                                              scratch, hd / RW);
        return VKVK_SFX(rot_enc_tok_all)(ra, dt, src, ts, hs, vt, n, heads, hd, bits, vec, scl,
                                         scratch, z, hd / RW);
    }
    }
#undef VKVK_RT_CASE_
}

/* Largest magnitude bit pattern (h & 0x7fff) of the n 16-bit elements at p
 * (any alignment). For fp16 and bf16 alike the patterns order the
 * magnitudes, and Inf/NaN are exactly the patterns >= the Inf pattern. */
VKVK_AI uint16_t VKVK_SFX(rot_amax16)(const uint8_t *p, size_t n)
{
    const __m256i m7 = _mm256_set1_epi16(0x7fff);
    __m256i m = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        m = _mm256_max_epu16(
            m,
            _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(const void *)(p + 2u * i)), m7));
    __m128i x = _mm_max_epu16(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
    x = _mm_max_epu16(x, _mm_srli_si128(x, 8));
    x = _mm_max_epu16(x, _mm_srli_si128(x, 4));
    x = _mm_max_epu16(x, _mm_srli_si128(x, 2));
    uint16_t r = (uint16_t)_mm_extract_epi16(x, 0);
    for (; i < n; i++) {
        uint16_t h = (uint16_t)(vkvk_ld16(p + 2u * i) & 0x7fffu);
        r = h > r ? h : r;
    }
    return r;
}

/* Decode of one token, every head, for one dtype (see vkvk_ref_dec_rot);
 * w and ng are caller storage for nv = hd/RW vectors each. TOKEN mode
 * starts each head's FWHT from the vkvk_rot_pm8 rows (exact integers, so
 * the values equal the reference's) and takes the sign vector, computed
 * once per call, from ng. The reference clamps every output to the dtype's
 * finite range; a head whose outputs provably lie inside it skips the
 * clamp (which is then the identity): vmag bounds |vector element| over
 * the layer, |w| <= hd in TOKEN mode, so |output| <= |c|*hd + vmag
 * (TOKEN) or |A|*vmag (CHANNEL) before a monotone rounding; the test uses a
 * margin far above double rounding and fails for Inf/NaN. */
VKVK_AI void VKVK_SFX(rot_dec_dt)(const vkvk_rot_args *ra, const int dt, const uint8_t *bits,
                                  const uint8_t *vec, const uint8_t *scl, uint32_t heads,
                                  uint32_t hd, uint16_t *dst, size_t head_stride, rf *w, rf *ng,
                                  const uint32_t nv)
{
    const float dmax = vkvk_dtype_max(dt);
    const rf vmax = R_SET1(dmax), vmin = R_SET1(-dmax);
    float fenc, fdec;
    vkvk_rot_factors(hd, &fenc, &fdec);
    const uint16_t mb = ra->vamax1 != 0 ? (uint16_t)(ra->vamax1 - 1u)
                                        : VKVK_SFX(rot_amax16)(vec, (size_t)heads * hd);
    const int vfin = mb < (dt == VKV_DTYPE_BF16 ? 0x7f80u : 0x7c00u);
    const double vmag = vkvk_to_f32(mb, dt), lim = 0.999 * (double)dmax;
#pragma GCC unroll 32
    for (uint32_t k = 0; k < nv; k++)
        ng[k] = R_NEG(k * RW);
    for (uint32_t h = 0; h < heads; h++) {
        const uint8_t *b = bits + (size_t)h * (hd / 8u);
        const uint8_t *v = vec + (size_t)h * hd * 2u;
        float A = vkvk_rot_scale_get(scl + (size_t)h * (ra->sbits / 8u), ra->sbits, dt);
        uint16_t *o = dst + h * head_stride;
        if (ra->mode == VKV_GROUP_TOKEN) {
            const float c = A * fdec;
            const rf vc = R_SET1(c);
#pragma GCC unroll 32
            for (uint32_t k = 0; k < nv; k++)
                w[k] = R_PM1_IN(b + k * (RW / 8u));
            VKVK_SFX(rot_fwht_x)(w, nv);
            if (vfin && (double)fabsf(c * (float)hd) + vmag <= lim) {
#pragma GCC unroll 32
                for (uint32_t k = 0; k < nv; k++) {
                    rf p = R_XOR(R_MUL(vc, w[k]), ng[k]);
                    R_STH(o + k * RW, R_ADD(p, R_LDHN((const void *)(v + 2u * k * RW), dt)), dt);
                }
            } else {
#pragma GCC unroll 32
                for (uint32_t k = 0; k < nv; k++) {
                    rf p = R_XOR(R_MUL(vc, w[k]), ng[k]);
                    rf x = R_ADD(p, R_LDHN((const void *)(v + 2u * k * RW), dt));
                    R_STH(o + k * RW, R_MAX(R_MIN(x, vmax), vmin), dt);
                }
            }
        } else {
            const rf va = R_SET1(A);
            if (vfin && (double)fabsf(A) * vmag <= lim) {
#pragma GCC unroll 16
                for (uint32_t k = 0; k < nv; k++) {
                    rf p = R_MUL(va, R_LDHN((const void *)(v + 2u * k * RW), dt));
                    R_STH(o + k * RW, R_XOR(p, R_SGN(b + k * (RW / 8u))), dt);
                }
            } else {
#pragma GCC unroll 16
                for (uint32_t k = 0; k < nv; k++) {
                    rf p = R_MUL(va, R_LDHN((const void *)(v + 2u * k * RW), dt));
                    p = R_XOR(p, R_SGN(b + k * (RW / 8u)));
                    R_STH(o + k * RW, R_MAX(R_MIN(p, vmax), vmin), dt);
                }
            }
        }
    }
}

/* Decode entry for one dtype: constant vector counts for common sizes. */
VKVK_AI void VKVK_SFX(rot_dec_sz)(const vkvk_rot_args *ra, const int dt, const uint8_t *bits,
                                  const uint8_t *vec, const uint8_t *scl, uint32_t heads,
                                  uint32_t hd, uint16_t *dst, size_t head_stride)
{
#define VKVK_RD_CASE_(NV)                                                                          \
    case NV: {                                                                                     \
        rf w[NV], ng[NV];                                                                          \
        VKVK_SFX(rot_dec_dt)(ra, dt, bits, vec, scl, heads, hd, dst, head_stride, w, ng, NV);      \
        return;                                                                                    \
    }
    switch (hd / RW) {
        VKVK_RD_CASE_(4)
        VKVK_RD_CASE_(8)
        VKVK_RD_CASE_(16)
    default: {
        rf w[VKVK_RV_MAX], ng[VKVK_RV_MAX];
        VKVK_SFX(rot_dec_dt)(ra, dt, bits, vec, scl, heads, hd, dst, head_stride, w, ng, hd / RW);
        return;
    }
    }
#undef VKVK_RD_CASE_
}

/* Table entries: see vkvk_kernels.enc_rot / dec_rot in codec_internal.h.
 * Shapes this file does not handle (hd % RW != 0, or a TOKEN head_dim that
 * is not a power of two, which the driver never passes) go to `fallback`. */
static int VKVK_SFX(enc_rot)(const vkvk_rot_args *ra, const uint16_t *src, size_t tstride,
                             size_t hstride, const uint32_t *vt, uint32_t n, uint32_t heads,
                             uint32_t hd, uint8_t *bits, uint8_t *vec, uint8_t *scl, float *scratch)
{
    if (hd % RW != 0 || (ra->mode == VKV_GROUP_TOKEN && !vkvk_pow2(hd)))
        return VKVK_ROT_FALLBACK_ENC(ra, src, tstride, hstride, vt, n, heads, hd, bits, vec, scl,
                                     scratch);
    if (ra->dtype == VKV_DTYPE_BF16)
        return VKVK_SFX(rot_enc_dt)(ra, VKV_DTYPE_BF16, src, tstride, hstride, vt, n, heads, hd,
                                    bits, vec, scl, scratch);
    return VKVK_SFX(rot_enc_dt)(ra, VKV_DTYPE_F16, src, tstride, hstride, vt, n, heads, hd, bits,
                                vec, scl, scratch);
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
#undef VKVK_RV_LD
#undef VKVK_RV_CHKSUM
#undef VKVK_RV_PF
#undef VKVK_RV_UNROLL_LV
#undef VKVK_RV_ACC
#undef VKVK_AI
