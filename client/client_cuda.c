/*
 * client/client_cuda.c - opening the daemon's CUDA slabs (see client_cuda.h).
 *
 * The cache is a process-wide list of (handle bytes, device) -> mapping with
 * a reference count, guarded by one mutex: cudaIpcOpenMemHandle must not be
 * called twice for the same handle in one process, and several vkv_client
 * handles of one process may share the daemon's slabs.
 */
#include "client/client_cuda.h"

#include "vkv/error.h"

#ifdef VKV_WITH_CUDA
#include <cuda_runtime.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

struct ipc_map {
    uint8_t handle[VKVC_CUDA_HANDLE_LEN];
    int device;
    void *dev;
    uint32_t refs;
    struct ipc_map *next;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ipc_map *g_maps; /* owned here; entries freed at refs == 0 */

/* Finds the cache entry of (handle, device); caller holds g_mu. */
static struct ipc_map *find_map(const uint8_t *handle, int device)
{
    for (struct ipc_map *m = g_maps; m; m = m->next)
        if (m->device == device && memcmp(m->handle, handle, VKVC_CUDA_HANDLE_LEN) == 0)
            return m;
    return NULL;
}

/* Drops one reference to the mapping at device pointer p on `device`;
 * closes and frees it at zero. Caller holds g_mu. */
static void unref_map(void *p, int device)
{
    for (struct ipc_map **pp = &g_maps; *pp; pp = &(*pp)->next) {
        struct ipc_map *m = *pp;
        if (m->dev != p || m->device != device)
            continue;
        if (--m->refs == 0) {
            int cur = 0;
            cudaGetDevice(&cur);
            cudaSetDevice(m->device);
            cudaError_t e = cudaIpcCloseMemHandle(m->dev);
            if (e != cudaSuccess)
                VKV_WARN("libvkv: cudaIpcCloseMemHandle: %s", cudaGetErrorString(e));
            cudaSetDevice(cur);
            *pp = m->next;
            free(m);
        }
        return;
    }
}

int vkvc_cuda_open_slabs(vkvc_cuda_slab *slabs, uint32_t n)
{
    int device = 0, count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0 ||
        cudaGetDevice(&device) != cudaSuccess) {
        (void)cudaGetLastError();
        return VKV_ENOTSUP;
    }
    int rc = VKV_OK;
    uint32_t i;
    pthread_mutex_lock(&g_mu);
    for (i = 0; i < n; i++) {
        struct ipc_map *m = find_map(slabs[i].handle, device);
        if (m == NULL) {
            cudaIpcMemHandle_t h;
            void *p = NULL;
            memcpy(&h, slabs[i].handle, sizeof h);
            cudaError_t e = cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess);
            if (e != cudaSuccess) {
                VKV_ERROR("libvkv: cudaIpcOpenMemHandle(slab %llu) on device %d: %s",
                          (unsigned long long)slabs[i].id, device, cudaGetErrorString(e));
                (void)cudaGetLastError();
                rc = VKV_ESYS;
                break;
            }
            m = calloc(1, sizeof *m);
            if (m == NULL) {
                cudaIpcCloseMemHandle(p);
                rc = VKV_ENOMEM;
                break;
            }
            memcpy(m->handle, slabs[i].handle, VKVC_CUDA_HANDLE_LEN);
            m->device = device;
            m->dev = p;
            m->next = g_maps;
            g_maps = m;
        }
        m->refs++;
        slabs[i].dev = m->dev;
    }
    if (rc != VKV_OK)
        for (uint32_t j = 0; j < i; j++) {
            unref_map(slabs[j].dev, device);
            slabs[j].dev = NULL;
        }
    pthread_mutex_unlock(&g_mu);
    return rc;
}

void vkvc_cuda_close_slabs(vkvc_cuda_slab *slabs, uint32_t n)
{
    pthread_mutex_lock(&g_mu);
    for (uint32_t i = 0; i < n; i++) {
        if (slabs[i].dev == NULL)
            continue;
        for (struct ipc_map *m = g_maps; m; m = m->next)
            if (m->dev == slabs[i].dev) {
                unref_map(m->dev, m->device);
                break;
            }
        slabs[i].dev = NULL;
    }
    pthread_mutex_unlock(&g_mu);
}

int vkvc_cuda_gather(void *dst, const void *const *src, const size_t *len, uint32_t n)
{
    uint8_t *d = dst;
    for (uint32_t i = 0; i < n; i++, d += len[i - 1]) {
        cudaError_t e = cudaMemcpy(d, src[i], len[i], cudaMemcpyDeviceToDevice);
        if (e != cudaSuccess) {
            VKV_ERROR("libvkv: gather cudaMemcpy: %s", cudaGetErrorString(e));
            return VKV_EIO;
        }
    }
    return VKV_OK;
}

int vkvc_cuda_scatter(void *const *dst, const size_t *len, uint32_t n, const void *src)
{
    const uint8_t *s = src;
    for (uint32_t i = 0; i < n; i++, s += len[i - 1]) {
        cudaError_t e = cudaMemcpy(dst[i], s, len[i], cudaMemcpyDeviceToDevice);
        if (e != cudaSuccess) {
            VKV_ERROR("libvkv: scatter cudaMemcpy: %s", cudaGetErrorString(e));
            return VKV_EIO;
        }
    }
    return VKV_OK;
}

int vkvc_cuda_copy(void *dst, const void *src, size_t n)
{
    cudaError_t e = cudaMemcpy(dst, src, n, cudaMemcpyDefault);
    if (e != cudaSuccess) {
        VKV_ERROR("libvkv: cudaMemcpy(%zu): %s", n, cudaGetErrorString(e));
        return VKV_EIO;
    }
    return VKV_OK;
}

int vkvc_cuda_alloc(void **p, size_t len)
{
    cudaError_t e = cudaMalloc(p, len ? len : 1);
    if (e != cudaSuccess) {
        VKV_ERROR("libvkv: cudaMalloc(%zu): %s", len, cudaGetErrorString(e));
        *p = NULL;
        return e == cudaErrorMemoryAllocation ? VKV_ENOMEM : VKV_EIO;
    }
    return VKV_OK;
}

void vkvc_cuda_free(void *p)
{
    if (p)
        cudaFree(p);
}

#else /* no CUDA in this build */

int vkvc_cuda_open_slabs(vkvc_cuda_slab *slabs, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        slabs[i].dev = NULL;
    return VKV_ENOTSUP;
}

void vkvc_cuda_close_slabs(vkvc_cuda_slab *slabs, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        slabs[i].dev = NULL;
}

int vkvc_cuda_gather(void *dst, const void *const *src, const size_t *len, uint32_t n)
{
    return VKV_ENOTSUP;
}

int vkvc_cuda_scatter(void *const *dst, const size_t *len, uint32_t n, const void *src)
{
    return VKV_ENOTSUP;
}

int vkvc_cuda_copy(void *dst, const void *src, size_t n)
{
    (void)dst;
    (void)src;
    (void)n;
    return VKV_ENOTSUP;
}

int vkvc_cuda_alloc(void **p, size_t len)
{
    *p = NULL;
    return VKV_ENOTSUP;
}

void vkvc_cuda_free(void *p)
{
}
#endif
