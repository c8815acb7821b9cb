/*
 * client/client_cuda.h - libvkv's CUDA mapping path: opens the daemon's
 * cudaMalloc slabs through their legacy IPC handles (HELLO reply) on the
 * caller's current device. Without CUDA in the build every function returns
 * VKV_ENOTSUP (or does nothing), so client.c can call them unconditionally.
 */
#ifndef VKV_CLIENT_CUDA_H
#define VKV_CLIENT_CUDA_H

#include <stddef.h>
#include <stdint.h>

#define VKVC_CUDA_HANDLE_LEN 64

/* One slab as the client sees it on the cuda backend. `dev` is filled by
 * vkvc_cuda_open_slabs and cleared by vkvc_cuda_close_slabs. */
typedef struct vkvc_cuda_slab {
    uint64_t id;
    uint64_t size;
    uint8_t handle[VKVC_CUDA_HANDLE_LEN]; /* cudaIpcMemHandle_t bytes */
    void *dev;                            /* device pointer of byte 0 */
} vkvc_cuda_slab;

/* Opens every slab of slabs[0..n) on the calling thread's current device
 * with cudaIpcMemLazyEnablePeerAccess. Mappings are cached process-wide by
 * (handle bytes, device) and reference-counted, so a handle is opened once
 * however many clients hold it. On failure the slabs opened by this call are
 * closed again and every dev is NULL. Errors: VKV_ENOTSUP (no CUDA build or
 * no device), VKV_ENOMEM, VKV_ESYS (cudaIpcOpenMemHandle failed; logged). */
int vkvc_cuda_open_slabs(vkvc_cuda_slab *slabs, uint32_t n);

/* Drops this caller's references to slabs[0..n) (those with dev != NULL)
 * and sets dev = NULL; a mapping whose last reference goes is closed with
 * cudaIpcCloseMemHandle. Call on epoch change and at close. */
void vkvc_cuda_close_slabs(vkvc_cuda_slab *slabs, uint32_t n);

/* Copies n device runs (src[i], len[i] bytes) back to back into device
 * buffer dst, synchronously (for blocks whose pages are not contiguous).
 * Errors: VKV_ENOTSUP, VKV_EIO. */
int vkvc_cuda_gather(void *dst, const void *const *src, const size_t *len, uint32_t n);

/* The inverse: splits device buffer src into the n runs dst[i], len[i]. */
int vkvc_cuda_scatter(void *const *dst, const size_t *len, uint32_t n, const void *src);

/* Copies n bytes between host and device memory in either direction
 * (cudaMemcpyDefault, synchronous): used to bind a device block's header.
 * Errors: VKV_ENOTSUP, VKV_EIO. */
int vkvc_cuda_copy(void *dst, const void *src, size_t n);

/* Allocates / frees a device staging buffer (cudaMalloc) for the above. */
int vkvc_cuda_alloc(void **p, size_t len);
void vkvc_cuda_free(void *p);

#endif /* VKV_CLIENT_CUDA_H */
