/* tests/store/store_index_test.c - the hash index and entry pool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "store/store_int.h"

/* Deterministic distinct key for number i (tag varies the bytes). */
static vkv_key key_of(uint32_t i, uint8_t tag)
{
    vkv_key k;
    memset(&k, tag, sizeof(k));
    memcpy(k.b, &i, sizeof(i));
    return k;
}

/* An inserted key is found; an absent one is not; a released one is gone. */
static void insert_find_and_delete(void **state)
{
    vkvs_index ix;
    uint32_t id, id2;
    vkv_key a = key_of(1, 0xaa), b = key_of(2, 0xaa);

    (void)state;
    assert_int_equal(vkvs_index_init(&ix, 16), 0);
    assert_int_equal(vkvs_index_find(&ix, 0, &a), 0);
    assert_int_equal(vkvs_index_new(&ix, 0, &a, &id), 0);
    assert_int_not_equal(id, 0);
    assert_int_equal(vkvs_index_find(&ix, 0, &a), id);
    assert_int_equal(vkvs_index_find(&ix, 0, &b), 0);
    assert_int_equal(vkvs_index_new(&ix, 0, &b, &id2), 0);
    assert_int_equal(vkvs_index_find(&ix, 0, &b), id2);
    vkvs_index_release(&ix, id);
    assert_int_equal(vkvs_index_find(&ix, 0, &a), 0);
    assert_int_equal(vkvs_index_find(&ix, 0, &b), id2);
    assert_int_equal(ix.count, 1);
    vkvs_index_destroy(&ix);
}

/* The same 32 bytes in two namespaces are two distinct entries. */
static void same_key_in_two_namespaces_is_two_entries(void **state)
{
    vkvs_index ix;
    uint32_t i0, i1;
    vkv_key k = key_of(7, 0x11);

    (void)state;
    assert_int_equal(vkvs_index_init(&ix, 16), 0);
    assert_int_equal(vkvs_index_new(&ix, 0, &k, &i0), 0);
    assert_int_equal(vkvs_index_find(&ix, 1, &k), 0);
    assert_int_equal(vkvs_index_new(&ix, 1, &k, &i1), 0);
    assert_int_not_equal(i0, i1);
    assert_int_equal(vkvs_index_find(&ix, 0, &k), i0);
    assert_int_equal(vkvs_index_find(&ix, 1, &k), i1);
    vkvs_index_release(&ix, i0);
    assert_int_equal(vkvs_index_find(&ix, 0, &k), 0);
    assert_int_equal(vkvs_index_find(&ix, 1, &k), i1);
    vkvs_index_destroy(&ix);
}

/* 100k inserts grow the table many times; every key stays findable, and
 * deleting every other key (backward-shift deletion) keeps the rest. */
static void growth_and_deletion_with_100k_entries(void **state)
{
    enum { N = 100000 };
    static uint32_t ids[N];
    vkvs_index ix;

    (void)state;
    assert_int_equal(vkvs_index_init(&ix, 16), 0);
    for (uint32_t i = 0; i < N; i++) {
        vkv_key k = key_of(i, 0x5c);
        assert_int_equal(vkvs_index_new(&ix, i % 3, &k, &ids[i]), 0);
    }
    assert_true(ix.cap >= N * 4 / 3);
    for (uint32_t i = 0; i < N; i++) {
        vkv_key k = key_of(i, 0x5c);
        assert_int_equal(vkvs_index_find(&ix, i % 3, &k), ids[i]);
        assert_int_equal(vkvs_index_find(&ix, (i + 1) % 3, &k), 0);
    }
    for (uint32_t i = 0; i < N; i += 2)
        vkvs_index_release(&ix, ids[i]);
    for (uint32_t i = 0; i < N; i++) {
        vkv_key k = key_of(i, 0x5c);
        assert_int_equal(vkvs_index_find(&ix, i % 3, &k), (i % 2) ? ids[i] : 0);
    }
    assert_int_equal(ix.used, N / 2);
    vkvs_index_destroy(&ix);
}

/* Entry addresses stay put while the pool grows (fetch relies on it). */
static void entries_do_not_move_when_the_pool_grows(void **state)
{
    vkvs_index ix;
    uint32_t first, id;
    vkvs_entry *p;
    vkv_key k = key_of(0, 1);

    (void)state;
    assert_int_equal(vkvs_index_init(&ix, 16), 0);
    assert_int_equal(vkvs_index_new(&ix, 0, &k, &first), 0);
    p = vkvs_ent(&ix, first);
    for (uint32_t i = 1; i < 3 * VKVS_CHUNK; i++) {
        k = key_of(i, 1);
        assert_int_equal(vkvs_index_new(&ix, 0, &k, &id), 0);
    }
    k = key_of(0, 1);
    assert_ptr_equal(vkvs_ent(&ix, vkvs_index_find(&ix, 0, &k)), p);
    vkvs_index_destroy(&ix);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(insert_find_and_delete),
        cmocka_unit_test(same_key_in_two_namespaces_is_two_entries),
        cmocka_unit_test(growth_and_deletion_with_100k_entries),
        cmocka_unit_test(entries_do_not_move_when_the_pool_grows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
