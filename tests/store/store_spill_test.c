/*
 * tests/store/store_spill_test.c - the store's side of a cold tier that
 * falls behind: an evict hook answering VKV_EBUSY stops FLUSH/EVICT (the
 * entries stay hot and readable), makes an eviction for room drop the
 * victim's hot copy without telling the drop hook, and a block restored
 * from the cold tier is evicted again without a second spill.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store_test_util.h"
#include "store_test_ops.h"
#include "vkv/error.h"

/* What the hooks saw; `busy_after` spills are taken, later ones are busy. */
typedef struct hook_state {
    int spills, drops, busy_after, busy_calls;
    bool last_for_room;
} hook_state;

static int evict_hook(void *arg, vkvs_store *st, const vkvs_victim *v)
{
    hook_state *h = arg;
    (void)st;
    h->last_for_room = v->for_room;
    if (h->spills >= h->busy_after) {
        h->busy_calls++;
        return VKV_EBUSY;
    }
    h->spills++;
    return 0;
}

static void drop_hook(void *arg, uint32_t ns_id, const char *ns, const vkv_key *key)
{
    (void)ns_id;
    (void)ns;
    (void)key;
    ((hook_state *)arg)->drops++;
}

static void busy_hook_stops_flush_and_keeps_entries_hot(void **state)
{
    vkvs_config c = small_config(1, 8, VKVS_POLICY_LRU);
    vkvs_store *st;
    uint64_t sid;
    hook_state h = {.busy_after = 2};
    vkvs_hooks hooks = {evict_hook, drop_hook, &h};
    size_t n, cold;
    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    vkvs_set_hooks(st, &hooks);
    assert_int_equal(vkvs_session_open(st, "m", 1, false, &sid), 0);
    for (uint32_t i = 0; i < 5; i++)
        put(st, sid, i);
    assert_int_equal(vkvs_evict(st, sid, NULL, NULL, 0, true, &n), VKV_EBUSY);
    assert_int_equal(n, 2);
    assert_false(h.last_for_room);
    vkvs_stats s;
    vkvs_stats_get(st, &s);
    assert_int_equal(s.entries_cold, 2);
    assert_int_equal(s.entries_ready, 3);
    assert_int_equal(s.spills_deferred, 1);
    for (uint32_t i = 0; i < 5; i++)
        assert_int_equal(present(st, sid, i, &cold), 1);
    h.busy_after = 100; /* the writer caught up: the rest goes */
    assert_int_equal(vkvs_evict(st, sid, NULL, NULL, 0, true, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(h.drops, 0);
    vkvs_close(st);
}

static void busy_hook_drops_room_victims_without_the_drop_hook(void **state)
{
    vkvs_config c = small_config(1, 4, VKVS_POLICY_LRU);
    vkvs_store *st;
    uint64_t sid;
    hook_state h = {.busy_after = 0};
    vkvs_hooks hooks = {evict_hook, drop_hook, &h};
    size_t cold;
    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    vkvs_set_hooks(st, &hooks);
    assert_int_equal(vkvs_session_open(st, "m", 1, false, &sid), 0);
    for (uint32_t i = 0; i < 5; i++) /* the fifth needs room */
        put(st, sid, i);
    assert_true(h.last_for_room);
    assert_int_equal(present(st, sid, 0, &cold), 0); /* its hot copy is gone */
    assert_int_equal(h.drops, 0);                    /* a cold copy would stay */
    vkvs_stats s;
    vkvs_stats_get(st, &s);
    assert_int_equal(s.spills_dropped_busy, 1);
    assert_int_equal(s.entries_ready, 4);
    vkvs_close(st);
}

static void restored_blocks_are_evicted_without_a_second_spill(void **state)
{
    vkvs_config c = small_config(1, 4, VKVS_POLICY_LRU);
    vkvs_store *st;
    uint64_t sid;
    hook_state h = {.busy_after = 100};
    vkvs_hooks hooks = {evict_hook, drop_hook, &h};
    vkv_key k = tkey(1);
    vkvs_block b;
    size_t n, cold;
    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    vkvs_set_hooks(st, &hooks);
    assert_int_equal(vkvs_session_open(st, "m", 1, false, &sid), 0);
    put(st, sid, 1);
    assert_int_equal(vkvs_evict(st, sid, NULL, &k, 1, true, &n), 0);
    assert_int_equal(h.spills, 1);
    assert_int_equal(vkvs_restore_begin(st, "m", &k, &b), 0);
    assert_int_equal(vkvs_restore_end(st, "m", &k, 0), 0);
    assert_int_equal(vkvs_evict(st, sid, NULL, &k, 1, true, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(h.spills, 1); /* no second copy written */
    assert_int_equal(present(st, sid, 1, &cold), 1);
    assert_int_equal(cold, 1);
    vkvs_stats s;
    vkvs_stats_get(st, &s);
    assert_int_equal(s.spills_skipped, 1);
    /* once the cold tier lets its copy go, a restored block spills again */
    assert_int_equal(vkvs_restore_begin(st, "m", &k, &b), 0);
    assert_int_equal(vkvs_restore_end(st, "m", &k, 0), 0);
    assert_int_equal(vkvs_cold_copy_gone(st, "m", &k), 0);
    assert_int_equal(vkvs_evict(st, sid, NULL, &k, 1, true, &n), 0);
    assert_int_equal(h.spills, 2);
    /* and a COLD entry whose copy is gone leaves the index (1: it was lost) */
    assert_int_equal(vkvs_cold_copy_gone(st, "m", &k), 1);
    assert_int_equal(present(st, sid, 1, &cold), 0);
    vkvs_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(busy_hook_stops_flush_and_keeps_entries_hot),
        cmocka_unit_test(busy_hook_drops_room_victims_without_the_drop_hook),
        cmocka_unit_test(restored_blocks_are_evicted_without_a_second_spill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
