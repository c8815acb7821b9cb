/*
 * store/backend_cuda.c - the CUDA backend: each slab is one cudaMalloc
 * allocation (2 MiB multiple) on the daemon's device, exported with
 * cudaIpcGetMemHandle; clients open the handle (client/client_cuda.c) and
 * read/write the slab directly from their own GPU. The daemon itself only
 * moves bytes for spill/restore, with synchronous cudaMemcpy from any thread
 * (each call first makes the slab's device current on that thread).
 *
 * Slabs are never freed while the daemon runs (clients may have them
 * mapped); slab_destroy runs only at vkvs_close().
 */
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include "store/backend_cuda.h"
#include "common/log.h"
#include "vkv/error.h"

#define CUDA_SLAB_ALIGN (2ull << 20)

/* Logs a failed CUDA call and maps it to a VKV_E* code (VKV_ENOMEM for an
 * allocation failure, `other` for the rest). */
static int cuda_err(cudaError_t e, const char *what, int other)
{
    VKV_ERROR("store: cuda %s: %s", what, cudaGetErrorString(e));
    return e == cudaErrorMemoryAllocation ? VKV_ENOMEM : other;
}
#define CUDA_CHECK(call, other)                                                                    \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return cuda_err(e_, #call, other);                                                     \
    } while (0)

/* Device ordinal kept in vkvs_slab.priv (stored as ordinal + 1). */
static int slab_device(const vkvs_slab *s)
{
    return (int)((intptr_t)s->priv - 1);
}

int vkvs_cuda_usable(int device)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || device < 0 || device >= n) {
        VKV_DEBUG("store: cuda device %d not usable: %s", device,
                  e != cudaSuccess ? cudaGetErrorString(e) : "no such device");
        (void)cudaGetLastError();
        return 0;
    }
    if ((e = cudaSetDevice(device)) != cudaSuccess || (e = cudaFree(NULL)) != cudaSuccess) {
        VKV_DEBUG("store: cuda device %d: no context: %s", device, cudaGetErrorString(e));
        (void)cudaGetLastError();
        return 0;
    }
    return 1;
}

/* Allocates slab `id` (size rounded up to 2 MiB for the allocation; the
 * slab reports `size`) on the device *(const int *)arg and exports its IPC
 * handle. The device memory is owned by *out until cuda_slab_destroy. */
static int cuda_slab_create(void *arg, uint32_t id, uint64_t size, vkvs_slab *out)
{
    int dev = arg ? *(const int *)arg : 0;
    void *p = NULL;
    cudaIpcMemHandle_t h;
    cudaError_t e;

    memset(out, 0, sizeof(*out));
    out->fd = -1;
    if (size == 0 || size > UINT64_MAX - CUDA_SLAB_ALIGN)
        return VKV_EINVAL;
    uint64_t alloc = (size + CUDA_SLAB_ALIGN - 1) / CUDA_SLAB_ALIGN * CUDA_SLAB_ALIGN;
    CUDA_CHECK(cudaSetDevice(dev), VKV_ESYS);
    if ((e = cudaMalloc(&p, (size_t)alloc)) != cudaSuccess) {
        VKV_ERROR("store: cudaMalloc slab %u (%llu bytes) on device %d: %s", id,
                  (unsigned long long)alloc, dev, cudaGetErrorString(e));
        (void)cudaGetLastError();
        return VKV_ENOMEM;
    }
    if ((e = cudaIpcGetMemHandle(&h, p)) != cudaSuccess) {
        cudaFree(p);
        return cuda_err(e, "cudaIpcGetMemHandle", VKV_ESYS);
    }
    _Static_assert(sizeof(h) == VKVS_IPC_HANDLE_LEN, "legacy IPC handle is 64 bytes");
    out->id = id;
    out->kind = VKVS_BACKEND_CUDA;
    out->size = size;
    out->host = NULL;
    out->dev = p;
    memcpy(out->ipc, &h, sizeof(h));
    out->priv = (void *)(intptr_t)(dev + 1);
    return 0;
}

/* Frees the slab's device memory and zeroes *s. Safe on a zeroed slab. */
static void cuda_slab_destroy(vkvs_slab *s)
{
    if (s->dev != NULL) {
        cudaSetDevice(slab_device(s));
        cudaError_t e = cudaFree(s->dev);
        if (e != cudaSuccess)
            VKV_WARN("store: cudaFree slab %u: %s", s->id, cudaGetErrorString(e));
    }
    memset(s, 0, sizeof(*s));
    s->fd = -1;
}

/* Copies slab bytes [off, off+len) to host memory `dst` (synchronous). */
static int cuda_copy_out(const vkvs_slab *s, uint64_t off, void *dst, size_t len)
{
    if (s->dev == NULL || off > s->size || len > s->size - off)
        return VKV_EINVAL;
    CUDA_CHECK(cudaSetDevice(slab_device(s)), VKV_EIO);
    CUDA_CHECK(cudaMemcpy(dst, (const uint8_t *)s->dev + off, len, cudaMemcpyDeviceToHost),
               VKV_EIO);
    return 0;
}

/* Copies host memory `src` to slab bytes [off, off+len) (synchronous). */
static int cuda_copy_in(const vkvs_slab *s, uint64_t off, const void *src, size_t len)
{
    if (s->dev == NULL || off > s->size || len > s->size - off)
        return VKV_EINVAL;
    CUDA_CHECK(cudaSetDevice(slab_device(s)), VKV_EIO);
    CUDA_CHECK(cudaMemcpy((uint8_t *)s->dev + off, src, len, cudaMemcpyHostToDevice), VKV_EIO);
    return 0;
}

const vkvs_backend vkvs_backend_cuda = {
    .name = "cuda",
    .kind = VKVS_BACKEND_CUDA,
    .slab_create = cuda_slab_create,
    .slab_destroy = cuda_slab_destroy,
    .copy_out = cuda_copy_out,
    .copy_in = cuda_copy_in,
};
