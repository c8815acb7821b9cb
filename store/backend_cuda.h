/*
 * store/backend_cuda.h - the CUDA backend of the store: slabs of device
 * memory from cudaMalloc, exported to clients by legacy CUDA IPC handle.
 * Compiled only when vkv is built with CUDA (VKV_WITH_CUDA is then defined
 * for everything that links vkv_store).
 */
#ifndef VKV_STORE_BACKEND_CUDA_H
#define VKV_STORE_BACKEND_CUDA_H

#include "store/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The CUDA backend; static, never freed. Its slab_create `arg` is a
 * `const int *` holding the device ordinal (NULL = device 0). Slabs are
 * allocated with cudaMalloc in multiples of 2 MiB, their IPC handle stored
 * in vkvs_slab.ipc, `dev` set and `host` NULL (the store moves bytes with
 * copy_out/copy_in). */
extern const vkvs_backend vkvs_backend_cuda;

/* Returns 1 if CUDA device `device` exists and a context can be created on
 * it from this process, else 0 (logs why at debug level). Cheap enough to
 * call once at daemon start for `--backend auto`. Leaves `device` current
 * on the calling thread when it returns 1. */
int vkvs_cuda_usable(int device);

#ifdef __cplusplus
}
#endif
#endif /* VKV_STORE_BACKEND_CUDA_H */
