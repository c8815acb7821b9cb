/*
 * kernels/codec_math.h - the per-group arithmetic of the vkv codec, written
 * once and included by the CPU reference, the SIMD kernels and CUDA code.
 *
 * Everything here is `static inline`, allocation-free and free of compiler
 * intrinsics, so it compiles as C11 and under nvcc (VKV_HD marks the
 * functions __host__ __device__ there). The exact floating-point operations
 * and their order are the ground truth of the block format: every
 * implementation must reproduce them bit for bit (docs/BLOCK_FORMAT.md).
 * Translation units including this header must be built with
 * -ffp-contract=off (no fused multiply-add) and without -ffast-math.
 */
#ifndef VKVK_CODEC_MATH_H
#define VKVK_CODEC_MATH_H

#include <stdint.h>

#include "vkv/block.h"

#ifdef __CUDACC__
#define VKV_HD __host__ __device__
#else
#define VKV_HD
#endif

/* Lanes of partial sums in a TOKEN-mode group: element i of the group goes
 * to lane i % 32; lanes are combined by the fixed tree of vkvk_tree32. */
#define VKVK_TOKEN_LANES 32

/* Largest Lloyd iteration count a spec may ask for. */
#define VKVK_MAX_ITERS 16

/* ---- bit casts and dtype conversion (round to nearest, ties to even) ---- */

typedef union vkvk_fu {
    float f;
    uint32_t u;
} vkvk_fu;

/* Returns the IEEE binary32 bit pattern of f. */
VKV_HD static inline uint32_t vkvk_f32_bits(float f)
{
    vkvk_fu x;
    x.f = f;
    return x.u;
}

/* Returns the float whose bit pattern is u. */
VKV_HD static inline float vkvk_bits_f32(uint32_t u)
{
    vkvk_fu x;
    x.u = u;
    return x.f;
}

/* Converts an IEEE binary16 bit pattern to float (exact, subnormals kept). */
VKV_HD static inline float vkvk_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0) {
        if (man == 0)
            return vkvk_bits_f32(sign);
        uint32_t e = 113; /* 127 - 15 + 1 */
        while ((man & 0x400u) == 0) {
            man <<= 1;
            e--;
        }
        return vkvk_bits_f32(sign | (e << 23) | ((man & 0x3ffu) << 13));
    }
    if (exp == 31)
        return vkvk_bits_f32(sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0u));
    return vkvk_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

/* Converts float to binary16 bits, rounding to nearest even (IEEE, as F16C
 * VCVTPS2PH with imm 0): overflow gives Inf, tiny values subnormals or 0. */
VKV_HD static inline uint16_t vkvk_f32_to_f16(float f)
{
    uint32_t u = vkvk_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) /* Inf or NaN (NaN stays quiet NaN) */
        return (uint16_t)(sign | 0x7c00u |
                          (a > 0x7f800000u ? (0x200u | ((a >> 13) & 0x3ffu)) : 0u));
    if (a >= 0x477ff000u) /* >= 65520 rounds to Inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) {    /* below 2^-14: subnormal half or zero */
        if (a <= 0x33000000u) /* <= 2^-25 rounds to zero (tie to even) */
            return sign;
        uint32_t e = a >> 23;
        uint32_t man = (a & 0x7fffffu) | 0x800000u;
        uint32_t s = 126u - e; /* 14..24 */
        uint32_t q = man >> s;
        uint32_t rem = man & ((1u << s) - 1u);
        uint32_t half = 1u << (s - 1u);
        if (rem > half || (rem == half && (q & 1u)))
            q++;
        return (uint16_t)(sign | q);
    }
    return (uint16_t)(sign | ((a + 0xfffu + ((a >> 13) & 1u) - 0x38000000u) >> 13));
}

/* Converts a bfloat16 bit pattern to float (exact). */
VKV_HD static inline float vkvk_bf16_to_f32(uint16_t h)
{
    return vkvk_bits_f32((uint32_t)h << 16);
}

/* Converts float to bfloat16 bits, rounding to nearest even (NaN stays NaN). */
VKV_HD static inline uint16_t vkvk_f32_to_bf16(float f)
{
    uint32_t u = vkvk_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* Source-dtype element bits -> float. */
VKV_HD static inline float vkvk_to_f32(uint16_t h, int dtype)
{
    return dtype == VKV_DTYPE_BF16 ? vkvk_bf16_to_f32(h) : vkvk_f16_to_f32(h);
}

/* float -> source-dtype element bits (round to nearest even). */
VKV_HD static inline uint16_t vkvk_from_f32(float f, int dtype)
{
    return dtype == VKV_DTYPE_BF16 ? vkvk_f32_to_bf16(f) : vkvk_f32_to_f16(f);
}

/* Nonzero when element bits h are Inf or NaN in `dtype`. */
VKV_HD static inline int vkvk_nonfinite(uint16_t h, int dtype)
{
    uint16_t em = dtype == VKV_DTYPE_BF16 ? 0x7f80u : 0x7c00u;
    return (h & em) == em;
}

/* ---- the operations every implementation mirrors ---- */

/* a < b ? a : b: the semantics of x86 MINPS(a, b) (ties and -0/+0 pick b). */
VKV_HD static inline float vkvk_minf(float a, float b)
{
    return a < b ? a : b;
}

/* a > b ? a : b: the semantics of x86 MAXPS(a, b). */
VKV_HD static inline float vkvk_maxf(float a, float b)
{
    return a > b ? a : b;
}

/* Combines 32 lane values s[0..31] with the fixed tree that the SIMD code
 * mirrors: u[j] = (s[j] OP s[j+16]) OP (s[j+8] OP s[j+24]) for j < 8,
 * v[j] = u[j] OP u[j+4] for j < 4, result (v0 OP v2) OP (v1 OP v3). */
#define VKVK_TREE32_(name, OP)                                                                     \
    VKV_HD static inline float name(const float *s)                                                \
    {                                                                                              \
        float u[8], v[4];                                                                          \
        for (int j = 0; j < 8; j++)                                                                \
            u[j] = OP(OP(s[j], s[j + 16]), OP(s[j + 8], s[j + 24]));                               \
        for (int j = 0; j < 4; j++)                                                                \
            v[j] = OP(u[j], u[j + 4]);                                                             \
        return OP(OP(v[0], v[2]), OP(v[1], v[3]));                                                 \
    }
#define VKVK_ADDF_(a, b) ((a) + (b))
VKVK_TREE32_(vkvk_tree32_sum, VKVK_ADDF_)
VKVK_TREE32_(vkvk_tree32_min, vkvk_minf)
VKVK_TREE32_(vkvk_tree32_max, vkvk_maxf)

/* ---- level rules ---- */

/* minmax: the range [mn, mx] shrunk toward its centre by `shrink`:
 * lo = mn + (shrink*0.5)*(mx-mn), hi = mx - (shrink*0.5)*(mx-mn). */
VKV_HD static inline void vkvk_minmax_levels(float mn, float mx, float shrink, float *lo, float *hi)
{
    float h = shrink * 0.5f;
    float r = mx - mn;
    *lo = mn + h * r;
    *hi = mx - h * r;
}

/* Lloyd start: the threshold is the group mean sum / n. */
VKV_HD static inline float vkvk_lloyd_start(float sum, uint32_t n)
{
    return sum / (float)n;
}

/* One Lloyd update from the conditional sums: the low level is the mean of
 * the elements below the threshold, the high level the mean of those at or
 * above it; an empty side takes the other side's level. Returns the next
 * threshold (lo + hi) * 0.5. */
VKV_HD static inline float vkvk_lloyd_update(float sum_lo, uint32_t n_lo, float sum_hi,
                                             uint32_t n_hi, float *lo, float *hi)
{
    float l = n_lo ? sum_lo / (float)n_lo : 0.0f;
    float h = n_hi ? sum_hi / (float)n_hi : 0.0f;
    if (n_lo == 0)
        l = h;
    if (n_hi == 0)
        h = l;
    *lo = l;
    *hi = h;
    return (l + h) * 0.5f;
}

/* Returns the k-th smallest of v[0..n-1] (Wirth's selection; reorders v). */
VKV_HD static inline float vkvk_select(float *v, int32_t n, int32_t k)
{
    int32_t l = 0, r = n - 1;
    while (l < r) {
        float x = v[k];
        int32_t i = l, j = r;
        do {
            while (v[i] < x)
                i++;
            while (x < v[j])
                j--;
            if (i <= j) {
                float t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                j--;
            }
        } while (i <= j);
        if (j < k)
            l = i;
        if (k < i)
            r = j;
    }
    return v[k];
}

/* quantile: with v sorted ascending (after -0 is replaced by +0), lo is
 * v[k] and hi is v[n-1-k] for k = floor(p * (n-1)) computed in double from
 * the binary32 p. v (n values) is scratch and gets reordered. */
VKV_HD static inline void vkvk_quantile_levels(float *v, uint32_t n, float p, float *lo, float *hi)
{
    for (uint32_t i = 0; i < n; i++)
        v[i] = v[i] + 0.0f; /* -0 -> +0 so that the order is total */
    uint32_t k = (uint32_t)((double)p * (double)(n - 1u));
    *lo = vkvk_select(v, (int32_t)n, (int32_t)k);
    *hi = vkvk_select(v, (int32_t)n, (int32_t)(n - 1u - k));
}

/* Finishes a group: a constant group (mn == mx) gets lo = hi = mn; otherwise
 * each level is clamped to [mn, mx] (min then max, x86 semantics). Both are
 * rounded to the source dtype into *lo_h / *hi_h. Returns the code
 * threshold: the midpoint (lo' + hi') * 0.5 of the ROUNDED levels; an element
 * x gets code 1 (high level) iff x >= the threshold. */
VKV_HD static inline float vkvk_group_finish(int dtype, float lo, float hi, float mn, float mx,
                                             uint16_t *lo_h, uint16_t *hi_h)
{
    if (mn == mx) {
        lo = mn;
        hi = mn;
    }
    lo = vkvk_maxf(vkvk_minf(lo, mx), mn);
    hi = vkvk_maxf(vkvk_minf(hi, mx), mn);
    *lo_h = vkvk_from_f32(lo, dtype);
    *hi_h = vkvk_from_f32(hi, dtype);
    return (vkvk_to_f32(*lo_h, dtype) + vkvk_to_f32(*hi_h, dtype)) * 0.5f;
}

/* ---- rotsign ---- */

/* Seed of the fixed random-sign vector of the rotsign Hadamard rotation. */
#define VKVK_ROT_SEED 0x766b76726f74ull /* "vkvrot" */

/* Nonzero when channel d (< 4096) is negated before the rotation: bit d % 64
 * of splitmix64 output number d / 64 (z = VKVK_ROT_SEED + (d/64 + 1) *
 * 0x9e3779b97f4a7c15, then the splitmix64 finaliser). */
VKV_HD static inline int vkvk_rot_neg(uint32_t d)
{
    uint64_t z = VKVK_ROT_SEED + (uint64_t)(d / 64u + 1u) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (int)((z >> (d % 64u)) & 1u);
}

/* Unnormalised in-place Walsh-Hadamard transform of x[0..n) (n a power of
 * two): for len = 1, 2, 4, ..., n/2, for every i with (i & len) == 0:
 * (x[i], x[i+len]) <- (x[i] + x[i+len], x[i] - x[i+len]). Applying it twice
 * multiplies by n. Every implementation performs exactly these operations. */
VKV_HD static inline void vkvk_fwht(float *x, uint32_t n)
{
    for (uint32_t len = 1; len < n; len <<= 1)
        for (uint32_t i = 0; i < n; i += len << 1)
            for (uint32_t k = i; k < i + len; k++) {
                float a = x[k], b = x[k + len];
                x[k] = a + b;
                x[k + len] = a - b;
            }
}

/* Mantissas 2^(f/8), f = 0..7, rounded to binary32 (bit patterns). */
VKV_HD static inline float vkvk_sc8_mant(uint32_t f)
{
    const uint32_t m[8] = {0x3f800000u, 0x3f8b95c2u, 0x3f9837f0u, 0x3fa5fed7u,
                           0x3fb504f3u, 0x3fc5672au, 0x3fd744fdu, 0x3feac0c7u};
    return vkvk_bits_f32(m[f & 7u]);
}

/* Value of an 8-bit log-domain scale code: 0 -> 0.0f, else with q = c - 128
 * (-127..127), e = floor(q / 8), f = q - 8e: vkvk_sc8_mant(f) * 2^e (exact). */
VKV_HD static inline float vkvk_sc8_value(uint32_t c)
{
    if (c == 0)
        return 0.0f;
    int32_t q = (int32_t)c - 128;
    int32_t e = (q >= 0 ? q : q - 7) / 8; /* floor(q / 8) */
    uint32_t f = (uint32_t)(q - 8 * e);
    return vkvk_sc8_mant(f) * vkvk_bits_f32((uint32_t)(e + 127) << 23);
}

/* Nearest 8-bit code of a >= 0: c = the largest code with value(c) <= a
 * (binary search; 0 when a is NaN), then c + 1 when value(c+1) - a <
 * a - value(c) (ties go down). +Inf and values past the top give 255. */
VKV_HD static inline uint8_t vkvk_sc8_encode(float a)
{
    if (!(a >= 0.0f))
        return 0;
    uint32_t lo = 0, hi = 255; /* invariant: value(lo) <= a */
    if (vkvk_sc8_value(255) <= a)
        return 255;
    while (hi - lo > 1) { /* value(hi) > a */
        uint32_t mid = (lo + hi) / 2u;
        if (vkvk_sc8_value(mid) <= a)
            lo = mid;
        else
            hi = mid;
    }
    return (uint8_t)(vkvk_sc8_value(hi) - a < a - vkvk_sc8_value(lo) ? hi : lo);
}

/* Largest finite value of `dtype` as a float. */
VKV_HD static inline float vkvk_dtype_max(int dtype)
{
    return dtype == VKV_DTYPE_BF16 ? vkvk_bits_f32(0x7f7f0000u) : 65504.0f;
}

/* Stores scale a (>= 0 or NaN) at p: sbits 16 -> vkvk_from_f32(min(a, max
 * finite of dtype)) little-endian (NaN becomes the max, MINPS semantics);
 * sbits 8 -> vkvk_sc8_encode(a). */
VKV_HD static inline void vkvk_rot_scale_put(uint8_t *p, float a, int sbits, int dtype)
{
    if (sbits == 8) {
        p[0] = vkvk_sc8_encode(a);
    } else {
        uint16_t h = vkvk_from_f32(vkvk_minf(a, vkvk_dtype_max(dtype)), dtype);
        p[0] = (uint8_t)h;
        p[1] = (uint8_t)(h >> 8);
    }
}

/* Rounds a rotsign reconstruction to `dtype` after clamping it to the
 * dtype's finite range (min then max, x86 semantics; NaN becomes +max). */
VKV_HD static inline uint16_t vkvk_rot_out(float v, int dtype)
{
    float m = vkvk_dtype_max(dtype);
    return vkvk_from_f32(vkvk_maxf(vkvk_minf(v, m), -m), dtype);
}

/* Reads the scale stored at p (the inverse of vkvk_rot_scale_put). */
VKV_HD static inline float vkvk_rot_scale_get(const uint8_t *p, int sbits, int dtype)
{
    if (sbits == 8)
        return vkvk_sc8_value(p[0]);
    return vkvk_to_f32((uint16_t)(p[0] | (p[1] << 8)), dtype);
}

/* TOKEN-mode scale factors for head_dim n = 2^e (e >= 3): with k = (e+1)/2,
 * the stored scale is mean|z| * 2^-k, i.e. sum|z| * 2^-(e+k) (*enc), and
 * decode multiplies it by 2^(k-e) (*dec); both exact powers of two. */
VKV_HD static inline void vkvk_rot_factors(uint32_t n, float *enc, float *dec)
{
    uint32_t e = 0;
    while ((1u << e) < n)
        e++;
    uint32_t k = (e + 1u) / 2u;
    *enc = vkvk_bits_f32((127u - (e + k)) << 23);
    *dec = vkvk_bits_f32((127u + k - e) << 23);
}

/* Nonzero when n is a power of two (n > 0). */
VKV_HD static inline int vkvk_pow2(uint32_t n)
{
    return n != 0 && (n & (n - 1u)) == 0;
}

/* ---- canonical section layout ---- */

/* Sizes and offsets of a block's sections, derived from header fields. */
typedef struct vkvk_layout {
    uint64_t n_vis;        /* visual tokens */
    uint64_t n_raw;        /* raw tokens */
    uint64_t ngrp[2];      /* K, V: CHANNEL: groups along tokens (per layer);
                              TOKEN: groups per token and head (head_dim / G) */
    uint64_t raw_layer;    /* bytes of RAW_K (= RAW_V) per layer */
    uint64_t bits_layer;   /* bytes of BITS_K per layer (= BITS_V for rules 1-4) */
    uint64_t bits_layer_v; /* bytes of BITS_V per layer */
    uint64_t lev_layer[2]; /* bytes of LEV_K, LEV_V per layer */
    uint64_t off[VKV_SEC_COUNT];
    uint64_t size[VKV_SEC_COUNT];
    uint64_t total; /* end of the last section: the block's total_size */
} vkvk_layout;

/* *r = a * b; returns 0, or -1 on 64-bit overflow. */
VKV_HD static inline int vkvk_mul64(uint64_t a, uint64_t b, uint64_t *r)
{
    if (b != 0 && a > UINT64_MAX / b)
        return -1;
    *r = a * b;
    return 0;
}

/* *r = a + b; returns 0, or -1 on 64-bit overflow. */
VKV_HD static inline int vkvk_add64(uint64_t a, uint64_t b, uint64_t *r)
{
    if (a > UINT64_MAX - b)
        return -1;
    *r = a + b;
    return 0;
}

/* Places the sections of L (per-layer sizes raw_layer, bits_layer,
 * bits_layer_v, lev_layer[] already set) in enum order, the first at
 * VKV_BLOCK_HEADER_SIZE, each at the previous end rounded up to
 * VKV_BLOCK_ALIGN, and sets total. Returns 0 or -1 on 64-bit overflow. */
VKV_HD static inline int vkvk_layout_place(const vkv_block_header *h, vkvk_layout *L)
{
    uint64_t per[VKV_SEC_COUNT] = {L->raw_layer,    L->raw_layer,    L->bits_layer,
                                   L->bits_layer_v, L->lev_layer[0], L->lev_layer[1]};
    uint64_t pos = VKV_BLOCK_HEADER_SIZE, x;
    for (int s = 0; s < VKV_SEC_COUNT; s++) {
        if (vkvk_add64(pos, VKV_BLOCK_ALIGN - 1u, &x))
            return -1;
        pos = x / VKV_BLOCK_ALIGN * VKV_BLOCK_ALIGN;
        if (vkvk_mul64(per[s], h->layers, &L->size[s]))
            return -1;
        L->off[s] = pos;
        if (vkvk_add64(pos, L->size[s], &pos))
            return -1;
    }
    L->total = pos;
    return 0;
}

/* ---- rule 5 (tc) sizes ---- */

/* Largest tc budget in 1/64 bit per element (3 bits: the widest channel). */
#define VKVK_TC_MAX_B64 192u

/* Bits of one token and head under a tc budget of b64/64 bits per element:
 * (b64 * head_dim + 32) / 64 (round half up). */
VKV_HD static inline uint32_t vkvk_tc_bits(uint32_t b64, uint32_t head_dim)
{
    return (uint32_t)(((uint64_t)b64 * head_dim + 32u) / 64u);
}

/* Bytes of one tc per-head record in LEV: coded (mean, 8-bit channel
 * scale codes, 2-bit allocation, top, channel-scale top) or rank-1 (b,
 * top). */
VKV_HD static inline uint64_t vkvk_tc_rec_bytes(int coded, uint32_t head_dim)
{
    return coded ? 3u * (uint64_t)head_dim + head_dim / 4u + 4u : 2u * (uint64_t)head_dim + 2u;
}

/* Per-layer sizes of a rule-5 block (k_mode TOKEN with k_group 1..192;
 * v_mode CHANNEL with v_group 0, or TOKEN with 1..192), then the placement.
 * Returns 0 or -1 (invalid fields or overflow). */
VKV_HD static inline int vkvk_tc_layout_of(const vkv_block_header *h, vkvk_layout *L)
{
    const uint64_t heads = h->kv_heads, hd = h->head_dim;
    uint64_t t;
    if (h->k_mode != VKV_GROUP_TOKEN || h->k_group == 0 || h->k_group > VKVK_TC_MAX_B64)
        return -1;
    if (h->v_mode == VKV_GROUP_TOKEN ? (h->v_group == 0 || h->v_group > VKVK_TC_MAX_B64)
                                     : (h->v_mode != VKV_GROUP_CHANNEL || h->v_group != 0))
        return -1;
    L->ngrp[0] = L->ngrp[1] = 1;
    for (int s = 0; s < 2; s++) {
        int coded = s == 0 || h->v_mode == VKV_GROUP_TOKEN;
        uint64_t cb =
            coded ? (vkvk_tc_bits(s ? h->v_group : h->k_group, h->head_dim) + 7u) / 8u : hd / 8u;
        if (vkvk_mul64(L->n_vis, heads * cb, s ? &L->bits_layer_v : &L->bits_layer))
            return -1;
        if (vkvk_mul64(L->n_vis, heads, &t) ||
            vkvk_add64(t, L->n_vis ? heads * vkvk_tc_rec_bytes(coded, h->head_dim) : 0u,
                       &L->lev_layer[s]))
            return -1;
    }
    return vkvk_layout_place(h, L);
}

/* Computes the canonical layout of a block from the header's shape and codec
 * fields (dtype, layers, kv_heads, head_dim, tokens, n_ranges, ranges,
 * k_mode/v_mode, k_group/v_group; G already resolved, never 0). Sections are
 * laid out in enum order, the first at VKV_BLOCK_HEADER_SIZE, each at the
 * previous end rounded up to VKV_BLOCK_ALIGN. Returns 0, or -1 if a field
 * makes the layout undefined (G = 0, too many ranges, ranges past `tokens`)
 * or a size overflows 64 bits. Does not check sortedness or other limits. */
VKV_HD static inline int vkvk_layout_of(const vkv_block_header *h, vkvk_layout *L)
{
    uint64_t esz = 2, vis = 0, t;
    if (h->n_ranges > VKV_BLOCK_MAX_RANGES || h->head_dim % 8u != 0)
        return -1;
    for (uint32_t r = 0; r < h->n_ranges; r++)
        vis += h->ranges[r].len;
    if (vis > h->tokens)
        return -1;
    L->n_vis = vis;
    L->n_raw = h->tokens - vis;
    uint64_t row = (uint64_t)h->kv_heads * h->head_dim; /* < 2^32 */
    if (vkvk_mul64(L->n_raw, row, &t) || vkvk_mul64(t, esz, &L->raw_layer))
        return -1;
    if (vkvk_mul64(L->n_vis, row / 8u, &L->bits_layer))
        return -1;
    L->bits_layer_v = L->bits_layer;
    if (h->rule == VKV_RULE_TC)
        return vkvk_tc_layout_of(h, L);
    for (int s = 0; s < 2; s++) {
        uint8_t mode = s == 0 ? h->k_mode : h->v_mode;
        uint64_t g = s == 0 ? h->k_group : h->v_group;
        if (g == 0)
            return -1;
        if (h->rule == VKV_RULE_ROTSIGN) {
            /* per layer: [kv_heads][head_dim] vector, [n_vis][kv_heads] scales */
            if ((g != 8 && g != 16) || (mode != VKV_GROUP_TOKEN && mode != VKV_GROUP_CHANNEL))
                return -1;
            L->ngrp[s] = 1;
            if (vkvk_mul64(L->n_vis, (uint64_t)h->kv_heads * (g / 8u), &t) ||
                vkvk_add64(t, L->n_vis ? row * esz : 0u, &L->lev_layer[s]))
                return -1;
        } else if (mode == VKV_GROUP_TOKEN) {
            if (h->head_dim % g != 0)
                return -1;
            L->ngrp[s] = h->head_dim / g;
            /* [n_vis][kv_heads][head_dim/G][2] */
            if (vkvk_mul64(L->n_vis, (uint64_t)h->kv_heads * L->ngrp[s], &t) ||
                vkvk_mul64(t, 2 * esz, &L->lev_layer[s]))
                return -1;
        } else if (mode == VKV_GROUP_CHANNEL) {
            uint64_t ng = 0;
            for (uint32_t r = 0; r < h->n_ranges; r++)
                ng += ((uint64_t)h->ranges[r].len + g - 1) / g;
            L->ngrp[s] = ng;
            /* [n_groups][kv_heads][2][head_dim] */
            if (vkvk_mul64(ng, row, &t) || vkvk_mul64(t, 2 * esz, &L->lev_layer[s]))
                return -1;
        } else {
            return -1;
        }
    }
    return vkvk_layout_place(h, L);
}

#endif /* VKVK_CODEC_MATH_H */
