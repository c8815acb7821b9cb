/*
 * vkv/attend_cuda.h - vkv_attend on an NVIDIA GPU: decode attention over a
 * block held in device memory (a vkv_view of the daemon's CUDA slabs, or any
 * device copy), without an fp16 copy of its K or V.
 *
 * Same definitions, layouts and argument checks as vkv/attend.h; results
 * agree with the CPU reference within fp32 rounding (tests/gpu). Memory:
 * the block, a->q, a->mask, a->out and a->lse are DEVICE pointers; `hdr`
 * and `a` itself are host memory read during the call. `stream` is a
 * cudaStream_t as void* (NULL = legacy default stream); the attention runs
 * asynchronously on it, temporary device memory comes from cudaMallocAsync
 * on it and is freed stream-ordered. Built only with CUDA (target
 * vkv_codec_cuda).
 */
#ifndef VKV_ATTEND_CUDA_H
#define VKV_ATTEND_CUDA_H

#include "vkv/api.h"

#include <stddef.h>

#include "vkv/attend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest head_dim the CUDA kernel takes (shared-memory rows). */
#define VKV_CUDA_ATTEND_MAX_HEAD_DIM 1024u

/* Computes vkv_attend's out/lse for a device block. `hdr` (host, may be
 * NULL) is the block's header if the caller has it; when NULL the 256 header
 * bytes are copied to the host first (synchronizing `stream`). The header is
 * validated as by vkv_block_check (VKV_DECODE_VERIFY copies the whole block
 * to the host to check the payload: slow), then the arguments as by
 * vkv_attend. The queries live on the device and are not inspected by the
 * host: a query row holding NaN/Inf yields NaN in that row's out/lse
 * instead of VKV_ENONFINITE (the scale is still checked). Errors: those of
 * vkv_attend except the query check, VKV_ENOTSUP (head_dim >
 * VKV_CUDA_ATTEND_MAX_HEAD_DIM, a rule-5 (tc) block, or no device), VKV_ENOMEM, VKV_EIO (a CUDA
 * error; logged). */
VKV_API int vkv_cuda_attend(const void *block, size_t size, const vkv_block_header *hdr,
                            unsigned flags, const vkv_attend_args *a, void *stream);

#ifdef __cplusplus
}
#endif
#endif /* VKV_ATTEND_CUDA_H */
