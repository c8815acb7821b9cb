/* store/backend.c - backend choice by name (backend.h); the one place that
 * knows whether this build has CUDA. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "store/backend.h"
#include "vkv/error.h"
#ifdef VKV_WITH_CUDA
#include "store/backend_cuda.h"
#endif

int vkvs_backend_find(const char *name, const vkvs_backend **be, void **arg, char *why,
                      size_t why_len)
{
    bool want_cuda = strcmp(name, "cuda") == 0;
    if (!want_cuda && strcmp(name, "auto") != 0 && strcmp(name, "host") != 0) {
        snprintf(why, why_len, "unknown backend '%s' (auto, host or cuda)", name);
        return VKV_EINVAL;
    }
    *be = &vkvs_backend_host;
    *arg = NULL;
#ifdef VKV_WITH_CUDA
    static int cuda_device = 0;
    if (strcmp(name, "host") != 0 && vkvs_cuda_usable(cuda_device)) {
        *be = &vkvs_backend_cuda;
        *arg = &cuda_device;
        return VKV_OK;
    }
    if (want_cuda) {
        snprintf(why, why_len, "backend 'cuda': no usable CUDA device");
        return VKV_ENOTSUP;
    }
#else
    if (want_cuda) {
        snprintf(why, why_len, "backend 'cuda': no usable CUDA device (this build has no CUDA)");
        return VKV_ENOTSUP;
    }
#endif
    return VKV_OK;
}

bool vkvs_backend_built(const char *name)
{
#ifdef VKV_WITH_CUDA
    return true;
#else
    return strcmp(name, "cuda") != 0;
#endif
}
