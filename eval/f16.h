/*
 * eval/f16.h - transitional: the old eval names of tensor/f16.h, kept only
 * for eval/codecs.c. Delete this file once codecs.c includes "tensor/f16.h"
 * and calls vkvtn_* (issue 17).
 */
#ifndef VKVE_F16_H
#define VKVE_F16_H

#include "tensor/f16.h"

#define vkve_f32_to_f16  vkvtn_f32_to_f16
#define vkve_f16_to_f32  vkvtn_f16_to_f32
#define vkve_f32_to_bf16 vkvtn_f32_to_bf16
#define vkve_bf16_to_f32 vkvtn_bf16_to_f32
#define vkve_round_dtype vkvtn_round_dtype

#endif
