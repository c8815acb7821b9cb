/*
 * vkv/api.h - VKV_API marks the functions libvkv.so exports. libvkv is built
 * with hidden visibility (CMake's VISIBILITY_PRESET hidden), so everything
 * not marked (the kernels' vkvk_*, the protocol's vkvp_*, libvkv's own
 * vkvc_*, logging) stays inside the library; tests/client/exports_test.py
 * checks that `nm -D libvkv.so` lists exactly the VKV_API functions.
 */
#ifndef VKV_API_H
#define VKV_API_H

#if defined(__GNUC__) || defined(__clang__)
#define VKV_API __attribute__((visibility("default")))
#else
#define VKV_API
#endif

#endif /* VKV_API_H */
