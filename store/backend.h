/*
 * store/backend.h - the memory backend contract of the store (redis-style
 * static interface: one struct of function pointers, one file per backend).
 *
 *   store/backend_host.c  memfd slabs in shared host memory (default; CI)
 *   store/backend_cuda.c  cudaMalloc slabs exported by legacy IPC handle (later)
 *
 * A slab is one large region created once and never freed while the daemon
 * runs (clients may have it mapped); the arena grows by adding slabs. The
 * store addresses memory as extents of fixed-size pages inside slabs; the
 * backend only creates/destroys slabs and copies bytes in and out of them.
 *
 * Threading: a backend is used by the one thread that owns the store, except
 * copy_out/copy_in, which may be called from any thread on a range the caller
 * keeps pinned (the spill/restore I/O threads do that).
 */
#ifndef VKV_STORE_BACKEND_H
#define VKV_STORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VKVS_IPC_HANDLE_LEN 64

/* Which kind of memory a backend hands out. */
enum vkvs_backend_kind {
    VKVS_BACKEND_HOST = 1, /* memfd; clients map `fd` with mmap */
    VKVS_BACKEND_CUDA = 2, /* device memory; clients open `ipc` */
};

/* One slab as the daemon sees it. Filled by slab_create; owned by the store,
 * which keeps it (at a stable address) until vkvs_close(). */
typedef struct vkvs_slab {
    uint32_t id;                      /* index of the slab in the store, 0.. */
    uint32_t kind;                    /* enum vkvs_backend_kind */
    uint64_t size;                    /* bytes; a multiple of the page size */
    void *host;                       /* daemon-side RW mapping of the whole slab (host
                                       * backend); NULL where the memory is not host-visible
                                       * (cuda: use copy_out/copy_in) */
    void *dev;                        /* device pointer (cuda); NULL for host */
    int fd;                           /* host: the sealed memfd (O_CLOEXEC) the daemon passes
                                       * to clients with SCM_RIGHTS; -1 for cuda */
    uint8_t ipc[VKVS_IPC_HANDLE_LEN]; /* cuda: cudaIpcMemHandle_t bytes;
                                       * zero for host */
    void *priv;                       /* backend-private state */
} vkvs_slab;

/* The backend contract. All functions return 0 or a negative VKV_E* code. */
typedef struct vkvs_backend {
    const char *name; /* "host", "cuda" (static string) */
    uint32_t kind;    /* enum vkvs_backend_kind */

    /* Creates slab number `id` of `size` bytes (size > 0; the store passes a
     * multiple of its page size) and fills *out. `arg` is the store config's
     * backend_arg (cuda: device ordinal; host: unused). On failure *out holds
     * nothing to release. Host: memfd_create("vkv-slab-<id>",
     * MFD_CLOEXEC|MFD_ALLOW_SEALING), ftruncate, posix_fallocate (so a later
     * page fault cannot SIGBUS on a full tmpfs), seals
     * F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL, mmap RW shared.
     * Errors: VKV_ENOMEM (no room for the slab), VKV_ESYS, VKV_EINVAL. */
    int (*slab_create)(void *arg, uint32_t id, uint64_t size, vkvs_slab *out);

    /* Releases everything slab_create acquired (unmaps, closes the fd) and
     * zeroes *s. Only called at vkvs_close(). Safe on a zeroed slab. */
    void (*slab_destroy)(vkvs_slab *s);

    /* Copies `len` bytes at byte offset `off` of slab `s` into host buffer
     * `dst`. Errors: VKV_EINVAL (range outside the slab), VKV_EIO. */
    int (*copy_out)(const vkvs_slab *s, uint64_t off, void *dst, size_t len);

    /* Copies `len` bytes from host buffer `src` to byte offset `off` of
     * slab `s`. Errors: VKV_EINVAL (range outside the slab), VKV_EIO. */
    int (*copy_in)(const vkvs_slab *s, uint64_t off, const void *src, size_t len);
} vkvs_backend;

/* The host (memfd) backend; static, never freed. */
extern const vkvs_backend vkvs_backend_host;

/* Resolves a --backend name (store/backend.c): "host"; "cuda" (refused with
 * VKV_ENOTSUP and a reason in `why` when this build has no CUDA or no device
 * is usable); "auto" (cuda when a device is usable, else host). On success
 * *be is the (static) backend and *arg its slab_create argument (static, or
 * NULL). Errors: VKV_EINVAL (unknown name), VKV_ENOTSUP. */
int vkvs_backend_find(const char *name, const vkvs_backend **be, void **arg, char *why,
                      size_t why_len);

/* True if --backend `name` can work in this build at all: "auto" and
 * "host" always, "cuda" only in a CUDA build (whether a device is usable
 * is vkvs_backend_find's question). */
bool vkvs_backend_built(const char *name);

#ifdef __cplusplus
}
#endif
#endif /* VKV_STORE_BACKEND_H */
