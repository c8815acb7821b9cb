/*
 * store/backend_host.c - the host-memory backend: each slab is a sealed
 * memfd in shared memory, mapped read-write in the daemon and passed to
 * clients over the fd side channel (SCM_RIGHTS). No /dev/shm name exists, so
 * nothing leaks after a crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "store/backend.h"
#include "common/log.h"
#include "vkv/error.h"

/* Creates one sealed memfd slab of `size` bytes and maps it RW. Fills *out;
 * the fd and mapping are owned by *out until host_slab_destroy. On failure
 * everything acquired so far is released in reverse order. */
static int host_slab_create(void *arg, uint32_t id, uint64_t size, vkvs_slab *out)
{
    char name[32];
    int fd, rv, err;
    void *p;

    (void)arg;
    memset(out, 0, sizeof(*out));
    out->fd = -1;
    if (size == 0 || size > (uint64_t)(off_t)((~(uint64_t)0) >> 1))
        return VKV_EINVAL;
    snprintf(name, sizeof(name), "vkv-slab-%u", id);
    fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        VKV_ERROR("store: memfd_create(%s): %s", name, strerror(errno));
        return VKV_ESYS;
    }
    if (ftruncate(fd, (off_t)size) != 0) {
        err = errno;
        VKV_ERROR("store: ftruncate slab %u: %s", id, strerror(err));
        rv = (err == ENOSPC || err == ENOMEM) ? VKV_ENOMEM : VKV_ESYS;
        goto fail_fd;
    }
    /* posix_fallocate returns the error number instead of setting errno. */
    err = posix_fallocate(fd, 0, (off_t)size);
    if (err != 0) {
        VKV_ERROR("store: posix_fallocate slab %u (%llu bytes): %s", id, (unsigned long long)size,
                  strerror(err));
        rv = (err == ENOSPC || err == ENOMEM) ? VKV_ENOMEM : VKV_ESYS;
        goto fail_fd;
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        VKV_ERROR("store: sealing slab %u: %s", id, strerror(errno));
        rv = VKV_ESYS;
        goto fail_fd;
    }
    p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        VKV_ERROR("store: mmap slab %u: %s", id, strerror(errno));
        rv = VKV_ENOMEM;
        goto fail_fd;
    }
    out->id = id;
    out->kind = VKVS_BACKEND_HOST;
    out->size = size;
    out->host = p;
    out->dev = NULL;
    out->fd = fd;
    return 0;

fail_fd:
    close(fd);
    return rv;
}

/* Unmaps and closes a slab made by host_slab_create and zeroes it (fd -1).
 * Safe on a zeroed slab. */
static void host_slab_destroy(vkvs_slab *s)
{
    if (s->host != NULL) {
        munmap(s->host, (size_t)s->size);
        if (s->fd >= 0)
            close(s->fd);
    }
    memset(s, 0, sizeof(*s));
    s->fd = -1;
}

/* Copies slab bytes [off, off+len) into `dst` (memcpy). */
static int host_copy_out(const vkvs_slab *s, uint64_t off, void *dst, size_t len)
{
    if (s->host == NULL || off > s->size || len > s->size - off)
        return VKV_EINVAL;
    memcpy(dst, (const char *)s->host + off, len);
    return 0;
}

/* Copies `src` into slab bytes [off, off+len) (memcpy). */
static int host_copy_in(const vkvs_slab *s, uint64_t off, const void *src, size_t len)
{
    if (s->host == NULL || off > s->size || len > s->size - off)
        return VKV_EINVAL;
    memcpy((char *)s->host + off, src, len);
    return 0;
}

const vkvs_backend vkvs_backend_host = {
    .name = "host",
    .kind = VKVS_BACKEND_HOST,
    .slab_create = host_slab_create,
    .slab_destroy = host_slab_destroy,
    .copy_out = host_copy_out,
    .copy_in = host_copy_in,
};
