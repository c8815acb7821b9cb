/* tests/store/store_test_ops.h - cmocka-checked store steps shared by the
 * store tests (include after <cmocka.h> and store_test_util.h). Header-only
 * (static functions). */
#ifndef VKV_STORE_TEST_OPS_H
#define VKV_STORE_TEST_OPS_H

#include "vkv/error.h"

/* Allocates and commits key tkey(i) of one 4 KiB page; fails the test on
 * any error. */
static void put(vkvs_store *st, uint64_t sid, uint32_t i)
{
    vkv_key k = tkey(i);
    uint64_t lease;
    vkvs_block b;
    assert_int_equal(vkvs_alloc(st, sid, &k, 4096, &lease, &b), 0);
    assert_int_equal(vkvs_commit(st, sid, lease, NULL, NULL), 0);
}

/* LOOKUP of key tkey(i): the prefix length (hot + cold, 0 or 1); *cold
 * gets the cold part. */
static size_t present(vkvs_store *st, uint64_t sid, uint32_t i, size_t *cold)
{
    vkv_key k = tkey(i);
    size_t p;
    assert_int_equal(vkvs_lookup(st, sid, &k, 1, &p, cold), 0);
    return p;
}

#endif
