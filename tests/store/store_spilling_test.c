/*
 * tests/store/store_spilling_test.c - the SPILLING state: an evict hook that
 * answers VKVS_SPILL_HELD has the cold tier read the victim's pages in
 * place; the pages stay reserved until vkvs_spill_done, a failed write
 * gives the block back hot, a delete meanwhile completes at the end, an
 * ALLOC that needs those pages waits (VKVS_WAIT) instead of evicting more,
 * and a cold copy reported gone during a restore is not forgotten.
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

/* What the hooks saw. The hook holds pages when allowed (else it "copies"
 * and answers 0); past `busy_after` held spills in flight it is busy. */
typedef struct hook_state {
    int held, copied, drops, busy_calls, busy_after;
    bool last_may_hold;
    vkv_key keys[64]; /* held spills in order */
} hook_state;

static int evict_hook(void *arg, vkvs_store *st, const vkvs_victim *v)
{
    hook_state *h = arg;
    (void)st;
    h->last_may_hold = v->may_hold;
    if (!v->may_hold) {
        h->copied++;
        return 0;
    }
    if (h->busy_after && h->held >= h->busy_after) {
        h->busy_calls++;
        return VKV_EBUSY;
    }
    h->keys[h->held++ % 64] = *v->key;
    return VKVS_SPILL_HELD;
}

static void drop_hook(void *arg, uint32_t ns_id, const char *ns, const vkv_key *key)
{
    (void)ns_id;
    (void)ns;
    (void)key;
    ((hook_state *)arg)->drops++;
}

/* A store of one 4-page slab with the holding hooks, a session in "m". */
static vkvs_store *open_store(hook_state *h, uint64_t *sid)
{
    vkvs_config c = small_config(1, 4, VKVS_POLICY_LRU);
    vkvs_store *st;
    vkvs_hooks hooks = {evict_hook, drop_hook, h};
    assert_int_equal(vkvs_open(&c, &st), 0);
    vkvs_set_hooks(st, &hooks);
    assert_int_equal(vkvs_session_open(st, "m", 1, false, sid), 0);
    return st;
}

static void held_spill_keeps_pages_until_done(void **state)
{
    hook_state h = {0};
    uint64_t sid;
    vkvs_store *st = open_store(&h, &sid);
    vkvs_stats s;
    vkvs_info in;
    vkvs_block b;
    size_t n, cold;
    (void)state;
    put(st, sid, 1);
    put(st, sid, 2);
    assert_int_equal(vkvs_evict(st, sid, NULL, NULL, 0, true, &n), 0); /* FLUSH */
    assert_int_equal(n, 2);
    assert_int_equal(h.held, 2);
    assert_true(h.last_may_hold); /* not for room: holding is always fine */
    vkvs_stats_get(st, &s);
    assert_int_equal(s.entries_cold, 2);
    assert_int_equal(s.entries_spilling, 2);
    assert_int_equal(s.pages_spilling, 2);
    assert_int_equal(s.pages_free, 2); /* the pages are still reserved */
    assert_int_equal(s.pages_pinned, 0);
    assert_int_equal(s.spills_held, 2);
    assert_int_equal(present(st, sid, 1, &cold), 1);
    assert_int_equal(cold, 1);
    vkv_key k1 = tkey(1);
    assert_int_equal(vkvs_info_get(st, sid, NULL, &k1, &in), 0);
    assert_true(in.spilling);
    assert_int_equal(in.state, VKVS_COLD);
    /* no restore, no forget while the cold tier reads the pages */
    assert_int_equal(vkvs_restore_begin(st, "m", &k1, &b), VKV_EBUSY);
    assert_int_equal(vkvs_forget_cold(st, "m", &k1), VKV_ESTATE);
    assert_int_equal(vkvs_cold_copy_gone(st, "m", &k1), 0); /* an older record */
    assert_int_equal(present(st, sid, 1, &cold), 1);
    /* the write is done: the pages are free, the entry COLD */
    assert_int_equal(vkvs_spill_done(st, "m", &k1, 0), 0);
    assert_int_equal(vkvs_spill_done(st, "m", &k1, 0), VKV_ESTATE);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.pages_free, 3);
    assert_int_equal(s.entries_spilling, 1);
    assert_int_equal(vkvs_info_get(st, sid, NULL, &k1, &in), 0);
    assert_false(in.spilling);
    assert_int_equal(vkvs_restore_begin(st, "m", &k1, &b), 0);
    assert_int_equal(vkvs_restore_end(st, "m", &k1, 0), 0);
    vkv_key k2 = tkey(2);
    assert_int_equal(vkvs_spill_done(st, "m", &k2, 0), 0);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.pages_spilling, 0);
    assert_int_equal(s.pages_free, 3);
    vkvs_close(st);
}

static void failed_write_gives_the_block_back_hot(void **state)
{
    hook_state h = {0};
    uint64_t sid;
    vkvs_store *st = open_store(&h, &sid);
    vkvs_stats s;
    vkvs_fetch_result res;
    vkvs_block b[1];
    size_t n, cold;
    (void)state;
    put(st, sid, 1);
    put(st, sid, 2);
    assert_int_equal(vkvs_evict(st, sid, NULL, NULL, 0, true, &n), 0);
    vkv_key k1 = tkey(1), k2 = tkey(2);
    /* an I/O error: nothing written, the block is intact: READY again */
    assert_int_equal(vkvs_spill_done(st, "m", &k1, VKV_EIO), 0);
    assert_int_equal(present(st, sid, 1, &cold), 1);
    assert_int_equal(cold, 0);
    assert_int_equal(vkvs_fetch(st, sid, &k1, 1, b, &res), 0);
    assert_int_equal(res.nready, 1);
    assert_int_equal(vkvs_release(st, sid, &res.lease, 1, NULL), 0);
    /* a block that failed its own checksum is dropped, cold copy too */
    assert_int_equal(vkvs_spill_done(st, "m", &k2, VKV_ECHECKSUM), 0);
    assert_int_equal(present(st, sid, 2, &cold), 0);
    assert_int_equal(h.drops, 1);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.spills_reverted, 1);
    assert_int_equal(s.spill_failures, 2);
    assert_int_equal(s.pages_free, 3);
    assert_int_equal(s.entries_ready, 1);
    /* the reverted entry is evictable (and spillable) again */
    assert_int_equal(vkvs_evict(st, sid, NULL, &k1, 1, true, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(h.held, 3);
    vkvs_close(st);
}

static void delete_while_spilling_completes_at_the_end(void **state)
{
    hook_state h = {0};
    uint64_t sid, lease;
    vkvs_store *st = open_store(&h, &sid);
    vkvs_stats s;
    vkvs_block b;
    size_t n, cold;
    (void)state;
    put(st, sid, 1);
    vkv_key k1 = tkey(1);
    assert_int_equal(vkvs_evict(st, sid, NULL, &k1, 1, true, &n), 0);
    assert_int_equal(vkvs_delete(st, sid, NULL, &k1, 1, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(h.drops, 1); /* the cold tier deletes after the write */
    assert_int_equal(present(st, sid, 1, &cold), 0);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.pages_free, 3); /* still read by the writer */
    /* a new put of the key waits for the old entry to go */
    assert_int_equal(vkvs_alloc(st, sid, &k1, 4096, &lease, &b), VKV_EBUSY);
    assert_int_equal(vkvs_spill_done(st, "m", &k1, 0), 0);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.pages_free, 4);
    assert_int_equal(s.entries_cold, 0);
    put(st, sid, 1);
    assert_int_equal(present(st, sid, 1, &cold), 1);
    assert_int_equal(cold, 0);
    vkvs_close(st);
}

static void alloc_waits_for_spills_that_free_its_room(void **state)
{
    hook_state h = {0};
    uint64_t sid, lease;
    vkvs_store *st = open_store(&h, &sid);
    vkvs_stats s;
    vkvs_block b;
    size_t cold;
    (void)state;
    for (uint32_t i = 0; i < 4; i++)
        put(st, sid, i);
    vkv_key k9 = tkey(9);
    /* without room waiting the hook must copy: the ALLOC is served now */
    assert_int_equal(vkvs_alloc(st, sid, &k9, 4096, &lease, &b), 0);
    assert_false(h.last_may_hold);
    assert_int_equal(h.copied, 1);
    assert_int_equal(vkvs_abort(st, sid, lease), 0);
    /* with it, the victim's pages are read in place and the ALLOC waits */
    vkvs_set_room_wait(st, true);
    vkv_key k8 = tkey(8);
    assert_int_equal(vkvs_alloc(st, sid, &k9, 2 * 4096, &lease, &b), VKVS_WAIT);
    assert_true(h.last_may_hold);
    assert_int_equal(h.held, 1); /* one free page + one spilling suffice */
    assert_int_equal(present(st, sid, 9, &cold), 0);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.room_waits, 1);
    assert_int_equal(s.allocs_failed, 0);
    assert_int_equal(s.leases_active, 0); /* nothing reserved */
    /* asking again before the write is done waits again, evicting nothing */
    assert_int_equal(vkvs_alloc(st, sid, &k9, 2 * 4096, &lease, &b), VKVS_WAIT);
    assert_int_equal(h.held, 1);
    assert_int_equal(vkvs_spill_done(st, "m", &h.keys[0], 0), 0);
    assert_int_equal(vkvs_alloc(st, sid, &k9, 2 * 4096, &lease, &b), 0);
    assert_int_equal(vkvs_commit(st, sid, lease, NULL, NULL), 0);
    /* a busy cold tier with spills in flight: wait, the victim stays hot */
    h.busy_after = 2; /* one more held spill, then busy */
    assert_int_equal(vkvs_evict(st, sid, NULL, NULL, 0, true, NULL), VKV_EBUSY);
    vkvs_stats_get(st, &s);
    uint64_t ready = s.entries_ready;
    assert_int_equal(vkvs_alloc(st, sid, &k8, 3 * 4096, &lease, &b), VKVS_WAIT);
    assert_true(h.busy_calls >= 1);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.entries_ready, ready);
    assert_int_equal(s.spills_dropped_busy, 0);
    /* without waiting, the same ALLOC drops busy victims to make room */
    vkvs_set_room_wait(st, false);
    assert_int_equal(vkvs_alloc(st, sid, &k8, 4096, &lease, &b), 0);
    vkvs_stats_get(st, &s);
    assert_true(s.spills_dropped_busy + h.copied >= 2);
    vkvs_close(st);
}

/* The cold tier reports its record gone (EVICTED) while the key is being
 * restored from it, and the read still succeeds (its transaction began
 * first): the restored block has no cold copy, so evicting it spills it
 * again instead of dropping it as "still in the cold tier". A restore that
 * fails after such a notice leaves no COLD ghost behind. */
static void copy_gone_during_restore_is_not_forgotten(void **state)
{
    hook_state h = {0};
    uint64_t sid;
    vkvs_store *st = open_store(&h, &sid);
    vkvs_block b;
    size_t n, cold;
    (void)state;
    put(st, sid, 1);
    vkv_key k1 = tkey(1);
    assert_int_equal(vkvs_evict(st, sid, NULL, &k1, 1, true, &n), 0);
    assert_int_equal(vkvs_spill_done(st, "m", &k1, 0), 0);
    assert_int_equal(h.held, 1);
    assert_int_equal(vkvs_restore_begin(st, "m", &k1, &b), 0);
    assert_int_equal(vkvs_cold_copy_gone(st, "m", &k1), 0); /* EVICTED meanwhile */
    assert_int_equal(vkvs_restore_end(st, "m", &k1, 0), 0);
    assert_int_equal(vkvs_evict(st, sid, NULL, &k1, 1, true, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(h.held, 2); /* spilled again */
    assert_int_equal(vkvs_spill_done(st, "m", &k1, 0), 0);
    /* a restore that fails after the notice: the key is gone, not COLD */
    assert_int_equal(vkvs_restore_begin(st, "m", &k1, &b), 0);
    assert_int_equal(vkvs_cold_copy_gone(st, "m", &k1), 0);
    assert_int_equal(vkvs_restore_end(st, "m", &k1, VKV_ENOTFOUND), 0);
    assert_int_equal(present(st, sid, 1, &cold), 0);
    /* without a notice, a restored block keeps its cold copy (no spill) */
    put(st, sid, 2);
    vkv_key k2 = tkey(2);
    assert_int_equal(vkvs_evict(st, sid, NULL, &k2, 1, true, &n), 0);
    assert_int_equal(vkvs_spill_done(st, "m", &k2, 0), 0);
    assert_int_equal(h.held, 3);
    assert_int_equal(vkvs_restore_begin(st, "m", &k2, &b), 0);
    assert_int_equal(vkvs_restore_end(st, "m", &k2, 0), 0);
    assert_int_equal(vkvs_evict(st, sid, NULL, &k2, 1, true, &n), 0);
    assert_int_equal(h.held, 3);
    assert_int_equal(present(st, sid, 2, &cold), 1);
    assert_int_equal(cold, 1);
    vkvs_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(held_spill_keeps_pages_until_done),
        cmocka_unit_test(failed_write_gives_the_block_back_hot),
        cmocka_unit_test(delete_while_spilling_completes_at_the_end),
        cmocka_unit_test(alloc_waits_for_spills_that_free_its_room),
        cmocka_unit_test(copy_gone_during_restore_is_not_forgotten),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
