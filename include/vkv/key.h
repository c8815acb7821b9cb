/*
 * vkv/key.h - the 32-byte cache key, shared by the public client API and the
 * wire protocol.
 *
 * A key is 32 opaque bytes (for example a vLLM block hash, or the chained
 * prefix key libvkv derives). Keys are compared bytewise and never truncated.
 */
#ifndef VKV_KEY_H
#define VKV_KEY_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VKV_KEY_LEN 32

/* One cache key: a plain value type, copy it freely. */
typedef struct vkv_key {
    uint8_t b[VKV_KEY_LEN];
} vkv_key;

#ifdef __cplusplus
static_assert(sizeof(vkv_key) == VKV_KEY_LEN, "vkv_key must be exactly 32 bytes");
#else
_Static_assert(sizeof(vkv_key) == VKV_KEY_LEN, "vkv_key must be exactly 32 bytes");
#endif

#ifdef __cplusplus
}
#endif
#endif /* VKV_KEY_H */
