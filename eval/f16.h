/*
 * eval/f16.h - scalar conversions between float and the 16-bit source
 * dtypes (IEEE binary16 and bfloat16), round-to-nearest-even.
 *
 * The eval tool keeps its own copy instead of borrowing the codec's so that
 * it can read and write safetensors files even when the codec is not built.
 */
#ifndef VKVE_F16_H
#define VKVE_F16_H

#include <stddef.h>
#include <stdint.h>

/* Returns the binary16 bit pattern nearest to f (NaN stays NaN, overflow
 * becomes Inf). */
uint16_t vkve_f32_to_f16(float f);

/* Returns the float value of binary16 bits h (exact). */
float vkve_f16_to_f32(uint16_t h);

/* Returns the bfloat16 bit pattern nearest to f (NaN stays NaN). */
uint16_t vkve_f32_to_bf16(float f);

/* Returns the float value of bfloat16 bits b (exact). */
float vkve_bf16_to_f32(uint16_t b);

/* Rounds f to the nearest value representable in `dtype` (VKV_DTYPE_F16 or
 * VKV_DTYPE_BF16; any other value returns f unchanged). */
float vkve_round_dtype(float f, int dtype);

#endif
