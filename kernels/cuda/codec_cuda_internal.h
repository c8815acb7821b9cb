/*
 * kernels/cuda/codec_cuda_internal.h - host-side helpers shared by the CUDA
 * codec (codec_cuda.cu) and its C helper file (codec_cuda_host.c). Private.
 */
#ifndef VKVK_CODEC_CUDA_INTERNAL_H
#define VKVK_CODEC_CUDA_INTERNAL_H

#include "kernels/codec_math.h"
#include "vkv/codec.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Builds the header vkv_encode would write for a shape/spec that passed
 * vkv_codec_check (both checksum fields zero) and its canonical layout.
 * Mirrors kernels/codec.c (vkvk_make_header, which is static there); tests/gpu
 * compares the result with vkv_encode's header byte for byte. Writes only
 * *h and *L (caller-owned). Returns VKV_OK or VKV_ESHAPE (layout overflow). */
int vkvk_cuda_make_header(const vkv_shape *shape, const vkv_codec_spec *spec, vkv_block_header *h,
                          vkvk_layout *L);

/* Checks a validated header against a destination's geometry and expected
 * identity (NULL: not checked); `dense` requires a token capacity. Returns
 * VKV_OK, VKV_EINVAL (geometry not given), VKV_EGEOMETRY or VKV_EIDENT.
 * Shared by the CPU and CUDA decoders (kernels/codec.c). */
int vkvk_check_dst(const vkv_block_header *h, const vkv_geometry *g, const uint8_t *ident,
                   int dense);

#ifdef __cplusplus
}
#endif
#endif /* VKVK_CODEC_CUDA_INTERNAL_H */
