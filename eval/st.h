/*
 * eval/st.h - transitional: the old eval names of tensor/safetensors.h, kept
 * only for eval/codecs.c. Delete this file once codecs.c includes
 * "tensor/safetensors.h" and says VKVTN_ST_* (issue 17).
 */
#ifndef VKVE_ST_H
#define VKVE_ST_H

#include "tensor/safetensors.h"

#define VKVE_ST_F16  VKVTN_ST_F16
#define VKVE_ST_BF16 VKVTN_ST_BF16
#define VKVE_ST_F32  VKVTN_ST_F32

#endif
