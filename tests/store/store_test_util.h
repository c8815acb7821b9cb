/* tests/store/store_test_util.h - helpers shared by the store tests: a fake
 * clock and small stores. Header-only (static functions). */
#ifndef VKV_STORE_TEST_UTIL_H
#define VKV_STORE_TEST_UTIL_H

#include <string.h>

#include "store/store.h"

static uint64_t fake_now_ms = 1000000;

/* Fake clock for vkvs_config.clock_ms: returns fake_now_ms. */
static uint64_t fake_clock(void *arg)
{
    (void)arg;
    return fake_now_ms;
}

/* A config of `nslabs` slabs of `pages` 4 KiB pages each, fake clock. */
static vkvs_config small_config(uint32_t nslabs, uint32_t pages, int policy)
{
    vkvs_config c;
    vkvs_config_default(&c);
    c.page_size = 4096;
    c.slab_size = (uint64_t)pages * 4096;
    c.nslabs = nslabs;
    c.max_slabs = nslabs;
    c.policy = policy;
    c.clock_ms = fake_clock;
    c.lease_ttl_ms = 30000;
    c.session_ttl_ms = 120000;
    return c;
}

/* Distinct key for number i. */
static vkv_key tkey(uint32_t i)
{
    vkv_key k;
    memset(&k, 0x42, sizeof(k));
    memcpy(k.b, &i, sizeof(i));
    return k;
}

#endif
