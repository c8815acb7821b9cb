/*
 * kernels/cuda/codec_cuda_host.c - the block header for GPU-encoded blocks,
 * built on the host with the same rules as kernels/codec.c.
 */
#include "kernels/cuda/codec_cuda_internal.h"
#include "kernels/codec_internal.h"

/* The GPU encoder's header: exactly the CPU encoder's (vkvk_make_header in
 * kernels/codec.c). The caller checked shape and spec with vkv_codec_check. */
int vkvk_cuda_make_header(const vkv_shape *shape, const vkv_codec_spec *spec, vkv_block_header *h,
                          vkvk_layout *L)
{
    vkvk_make_header(shape, spec, h, L);
    return VKV_OK;
}
