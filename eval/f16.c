/* eval/f16.c - float <-> binary16 / bfloat16 conversions (see f16.h). */
#include "f16.h"

#include <string.h>

#include "vkv/block.h"

/* Reinterprets the bits of a float as uint32 (no aliasing issues). */
static uint32_t vkve_f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Reinterprets uint32 bits as a float. */
static float vkve_u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* See f16.h. Handles normals, subnormals, overflow and NaN with
 * round-to-nearest-even on the dropped mantissa bits. */
uint16_t vkve_f32_to_f16(float f)
{
    uint32_t x = vkve_f2u(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* Inf or NaN */
        return (uint16_t)(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
    if (absx >= 0x477ff000u) /* rounds to >= 65520: overflow to Inf */
        return (uint16_t)(sign | 0x7c00u);
    if (absx < 0x38800000u) {   /* below the smallest normal half: subnormal or 0 */
        if (absx < 0x33000000u) /* below half the smallest subnormal */
            return (uint16_t)sign;
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* 14 + (112 - e) + ... yields mantissa of half */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u)))
            r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((absx - 0x38000000u) >> 13);
    uint32_t rem = absx & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u)))
        r++;
    return (uint16_t)(sign | r);
}

/* See f16.h. */
float vkve_f16_to_f32(uint16_t h)
{
    uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    if (e == 0) {
        /* zero or subnormal: m * 2^-24 is exact in float */
        float v = (float)m * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    if (e == 31)
        return vkve_u2f(sign | 0x7f800000u | (m << 13));
    return vkve_u2f(sign | ((e + 112u) << 23) | (m << 13));
}

/* See f16.h. */
uint16_t vkve_f32_to_bf16(float f)
{
    uint32_t x = vkve_f2u(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    uint32_t lsb = (x >> 16) & 1u;
    x += 0x7fffu + lsb;
    return (uint16_t)(x >> 16);
}

/* See f16.h. */
float vkve_bf16_to_f32(uint16_t b)
{
    return vkve_u2f((uint32_t)b << 16);
}

/* See f16.h. */
float vkve_round_dtype(float f, int dtype)
{
    if (dtype == VKV_DTYPE_F16)
        return vkve_f16_to_f32(vkve_f32_to_f16(f));
    if (dtype == VKV_DTYPE_BF16)
        return vkve_bf16_to_f32(vkve_f32_to_bf16(f));
    return f;
}
