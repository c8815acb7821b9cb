/*
 * vkv/codec_cuda.h - the vkv codec on an NVIDIA GPU: encode a chunk held in
 * device memory into a block in device memory, and decode a block in device
 * memory into a dense or paged (vLLM) KV cache in device memory.
 *
 * Same block format and arithmetic as vkv/codec.h: blocks written here are
 * byte-identical to those of vkv_encode (tests/gpu checks it), and decoded
 * elements are bit-identical to vkv_decode / vkv_decode_paged.
 *
 * Memory: every tensor and block pointer below is a DEVICE pointer (or a
 * pointer the current device can access, such as a CUDA IPC mapping), except
 * where a comment says "host". The per-layer pointer arrays (vkv_kv_src.k,
 * .v, vkv_kv_dst.k, .v, vkv_paged_dst.k_cache, .v_cache) and the paged
 * block table are HOST arrays of device pointers / page ids; they are read
 * during the call only. `stream` is a cudaStream_t passed as void* (NULL =
 * the legacy default stream). All work runs on the caller's current device.
 *
 * Threading: reentrant; no function keeps a pointer to its arguments after
 * it returns. Temporary device memory comes from cudaMallocAsync on `stream`
 * and is freed stream-ordered. Library built only with CUDA (target
 * vkv_codec_cuda); without a usable device every call returns VKV_ENOTSUP.
 */
#ifndef VKV_CODEC_CUDA_H
#define VKV_CODEC_CUDA_H

#include "vkv/api.h"

#include <stddef.h>
#include <stdint.h>

#include "vkv/codec.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Flags of vkv_cuda_encode. */
#define VKV_CUDA_ASYNC                                                                             \
    1u /* do not wait for the stream: payload_xxh3 is left                                         \
        * 0 (header_xxh3 is valid) and non-finite input is                                         \
        * NOT reported (the block is then unspecified).                                            \
        * Checksum later with vkv_cuda_block_seal. */

/* Encodes a chunk whose K/V tensors live in device memory (addressing of
 * vkv_kv_src, strides in elements) into dst (device, dst_size bytes >= the
 * encoded size, 16-byte alignment recommended). Supported rules: rotsign
 * (the project default); other rules return VKV_ENOTSUP (encode them on the
 * CPU with vkv_encode). Without VKV_CUDA_ASYNC the call synchronizes
 * `stream`, copies the payload back to the host to compute its XXH3 (XXH3
 * does not run on the device) and writes the complete header: the block is
 * then identical to vkv_encode's. Errors: those of vkv_encode
 * (VKV_ENONFINITE only without ASYNC), VKV_ENOTSUP, VKV_ENOMEM, VKV_EIO
 * (a CUDA error; logged). */
VKV_API int vkv_cuda_encode(const vkv_shape *shape, const vkv_codec_spec *spec,
                            const vkv_kv_src *src, void *dst, size_t dst_size, unsigned flags,
                            void *stream);

/* Computes the payload XXH3 of a device block written with VKV_CUDA_ASYNC
 * (a D2H copy of the block, then the host checksum) and stores it in the
 * device header. Synchronizes `stream`. Errors: those of vkv_block_check,
 * VKV_ENOMEM, VKV_EIO. */
VKV_API int vkv_cuda_block_seal(void *block, size_t size, void *stream);

/* Decodes a device block into dense device tensors (vkv_kv_dst addressing).
 * `hdr` (host, may be NULL) is the block's header if the caller already has
 * it (for example from an earlier vkv_block_check); when NULL the 256 header
 * bytes are copied to the host first (synchronizing `stream`). The header is
 * validated as by vkv_block_check; VKV_DECODE_VERIFY in flags additionally
 * copies the whole block to the host and checks its payload XXH3 (slow).
 * The decode itself is asynchronous on `stream`. Errors: those of
 * vkv_decode, VKV_ENOMEM, VKV_EIO; VKV_ENOTSUP for a rule-5 (tc) block,
 * which only the CPU decodes (after the header check, nothing launched). */
VKV_API int vkv_cuda_decode(const void *block, size_t size, const vkv_block_header *hdr,
                            unsigned flags, const vkv_kv_dst *dst, void *stream);

/* Same into a paged cache [num_pages][page_size][kv_heads][head_dim] per
 * layer (vkv_paged_dst; its block_table is a HOST array, validated before
 * anything is launched: VKV_EINVAL and nothing written if a position falls
 * outside the table or a page id outside [0, num_pages)). */
VKV_API int vkv_cuda_decode_paged(const void *block, size_t size, const vkv_block_header *hdr,
                                  unsigned flags, const vkv_paged_dst *dst, void *stream);

/* 1 if a CUDA device is present and usable from this process, else 0. */
VKV_API int vkv_cuda_available(void);

#ifdef __cplusplus
}
#endif
#endif /* VKV_CODEC_CUDA_H */
