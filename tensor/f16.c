/* tensor/f16.c - float <-> binary16 / bfloat16 (see f16.h): the codec's
 * conversions from kernels/codec_math.h, exported as functions. */
#include "tensor/f16.h"

#include "kernels/codec_math.h"
#include "vkv/block.h"

/* See f16.h. */
uint16_t vkvtn_f32_to_f16(float f)
{
    return vkvk_f32_to_f16(f);
}

/* See f16.h. */
float vkvtn_f16_to_f32(uint16_t h)
{
    return vkvk_f16_to_f32(h);
}

/* See f16.h. */
uint16_t vkvtn_f32_to_bf16(float f)
{
    return vkvk_f32_to_bf16(f);
}

/* See f16.h. */
float vkvtn_bf16_to_f32(uint16_t b)
{
    return vkvk_bf16_to_f32(b);
}

/* See f16.h. */
float vkvtn_to_f32(uint16_t h, int dtype)
{
    return vkvk_to_f32(h, dtype);
}

/* See f16.h. */
float vkvtn_round_dtype(float f, int dtype)
{
    if (dtype == VKV_DTYPE_F16)
        return vkvk_f16_to_f32(vkvk_f32_to_f16(f));
    if (dtype == VKV_DTYPE_BF16)
        return vkvk_bf16_to_f32(vkvk_f32_to_bf16(f));
    return f;
}
