/*
 * tensor/f16.h - scalar conversions between float and the 16-bit source
 * dtypes (IEEE binary16 and bfloat16), round to nearest, ties to even.
 *
 * One implementation: these are the codec's own conversions
 * (kernels/codec_math.h, the block format's ground truth, shared with the
 * SIMD and CUDA kernels) as plain functions, for code that reads or writes
 * tensors without running the codec (vkvctl, vkv-eval, the safetensors
 * reader). NaN stays NaN (quiet), overflow becomes Inf, subnormals are kept.
 */
#ifndef VKVTN_F16_H
#define VKVTN_F16_H

#include <stdint.h>

/* Returns the binary16 bit pattern nearest to f. */
uint16_t vkvtn_f32_to_f16(float f);

/* Returns the float value of binary16 bits h (exact). */
float vkvtn_f16_to_f32(uint16_t h);

/* Returns the bfloat16 bit pattern nearest to f. */
uint16_t vkvtn_f32_to_bf16(float f);

/* Returns the float value of bfloat16 bits b (exact). */
float vkvtn_bf16_to_f32(uint16_t b);

/* Element bits h of `dtype` (VKV_DTYPE_BF16, else binary16) as a float. */
float vkvtn_to_f32(uint16_t h, int dtype);

/* Rounds f to the nearest value representable in `dtype` (VKV_DTYPE_F16 or
 * VKV_DTYPE_BF16; any other value returns f unchanged). */
float vkvtn_round_dtype(float f, int dtype);

#endif
