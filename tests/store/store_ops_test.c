/* tests/store/store_ops_test.c - sessions, leases, reaping, dedupe,
 * eviction policies and hooks, lookup/fetch/delete semantics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store_test_util.h"
#include "vkv/error.h"

/* Allocates and commits key i with `size` bytes filled with byte (i & 0xff). */
static void put(vkvs_store *st, uint64_t sid, uint32_t i, uint64_t size)
{
    vkv_key k = tkey(i);
    uint64_t lease;
    vkvs_block b;
    char *buf = malloc(size);

    assert_non_null(buf);
    memset(buf, (int)(i & 0xff), size);
    assert_int_equal(vkvs_alloc(st, sid, &k, size, &lease, &b), 0);
    assert_int_equal(vkvs_write(st, b.extents, b.nextents, 0, buf, size), 0);
    assert_int_equal(vkvs_commit(st, sid, lease, NULL, NULL), 0);
    free(buf);
}

/* Prefix length lookup reports for key i alone. */
static size_t present(vkvs_store *st, uint64_t sid, uint32_t i)
{
    vkv_key k = tkey(i);
    size_t p, c;
    assert_int_equal(vkvs_lookup(st, sid, &k, 1, &p, &c), 0);
    return p;
}

/* Fetches key i and releases the lease at once (an access). */
static void touch(vkvs_store *st, uint64_t sid, uint32_t i)
{
    vkv_key k = tkey(i);
    vkvs_block b;
    vkvs_fetch_result fr;
    assert_int_equal(vkvs_fetch(st, sid, &k, 1, &b, &fr), 0);
    assert_int_equal(fr.nready, 1);
    assert_int_equal(vkvs_release(st, sid, &fr.lease, 1, NULL), 0);
}

/* Lookup returns the longest present prefix and never changes hits or
 * recency: under LRU, entries looked up many times are still evicted first. */
static void lookup_has_no_side_effects(void **state)
{
    vkvs_config c = small_config(1, 4, VKVS_POLICY_LRU);
    vkvs_store *st;
    uint64_t sid;
    vkv_key ks[3] = {tkey(0), tkey(1), tkey(9)};
    size_t p, cold;
    vkvs_info info;

    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    assert_int_equal(vkvs_session_open(st, "m", 1, false, &sid), 0);
    for (uint32_t i = 0; i < 4; i++)
        put(st, sid, i, 4096);
    for (int r = 0; r < 10; r++) {
        assert_int_equal(vkvs_lookup(st, sid, ks, 3, &p, &cold), 0);
        assert_int_equal(p, 2);
        assert_int_equal(cold, 0);
    }
    assert_int_equal(vkvs_info_get(st, sid, NULL, &ks[0], &info), 0);
    assert_int_equal(info.hits, 0);
    put(st, sid, 4, 4096); /* evicts the LRU entry: key 0 despite lookups */
    assert_int_equal(present(st, sid, 0), 0);
    assert_int_equal(present(st, sid, 1), 1);
    vkvs_close(st);
}

/* LRU evicts in least-recently-fetched order. */
static void lru_evicts_least_recently_used(void **state)
{
    vkvs_config c = small_config(1, 4, VKVS_POLICY_LRU);
    vkvs_store *st;
    uint64_t sid;

    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    assert_int_equal(vkvs_session_open(st, "m", 1, false, &sid), 0);
    for (uint32_t i = 0; i < 4; i++)
        put(st, sid, i, 4096);
    touch(st, sid, 0);
    touch(st, sid, 2);
    /* recency now, oldest first: 1, 3, 0, 2 */
    put(st, sid, 10, 4096);
    assert_int_equal(present(st, sid, 1), 0);
    put(st, sid, 11, 4096);
    assert_int_equal(present(st, sid, 3), 0);
    put(st, sid, 12, 4096);
    assert_int_equal(present(st, sid, 0), 0);
    assert_int_equal(present(st, sid, 2), 1);
    vkvs_close(st);
}

/* S3-FIFO: entries fetched after insertion survive while one-hit wonders
 * (never fetched) are evicted first, even when the wonders are newer. */
static void s3fifo_evicts_one_hit_wonders_first(void **state)
{
    vkvs_config c = small_config(1, 20, VKVS_POLICY_S3FIFO);
    vkvs_store *st;
    uint64_t sid;

    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    assert_int_equal(vkvs_session_open(st, "m", 1, false, &sid), 0);
    for (uint32_t i = 0; i < 20; i++)
        put(st, sid, i, 4096);
    for (uint32_t i = 0; i < 10; i++) /* the "popular" half is the OLDER half */
        touch(st, sid, i);
    for (uint32_t i = 100; i < 110; i++) /* 10 new one-hit wonders */
        put(st, sid, i, 4096);
    for (uint32_t i = 0; i < 10; i++)
        assert_int_equal(present(st, sid, i), 1);
    for (uint32_t i = 10; i < 20; i++)
        assert_int_equal(present(st, sid, i), 0);
    vkvs_close(st);
}

/* Pinned entries are never evicted; with everything pinned alloc says
 * ENOSPC, and after the release it succeeds by evicting. */
static void pinned_entries_are_never_evicted(void **state)
{
    for (int pol = VKVS_POLICY_LRU; pol <= VKVS_POLICY_S3FIFO; pol++) {
        vkvs_config c = small_config(1, 4, pol);
        vkvs_store *st;
        uint64_t sid, lease;
        vkv_key ks[4] = {tkey(0), tkey(1), tkey(2), tkey(3)}, k = tkey(50);
        vkvs_block b[4];
        vkvs_fetch_result fr;
        vkvs_stats s;

        (void)state;
        assert_int_equal(vkvs_open(&c, &st), 0);
        assert_int_equal(vkvs_session_open(st, "m", 1, false, &sid), 0);
        for (uint32_t i = 0; i < 4; i++)
            put(st, sid, i, 4096);
        assert_int_equal(vkvs_fetch(st, sid, ks, 3, b, &fr), 0);
        assert_int_equal(fr.nready, 3);
        put(st, sid, 50, 4096); /* evicts the one unpinned entry, key 3 */
        assert_int_equal(present(st, sid, 3), 0);
        vkvs_fetch_result fr50;
        assert_int_equal(vkvs_fetch(st, sid, &k, 1, &b[3], &fr50), 0); /* pin 50 too */
        assert_int_equal(fr50.nready, 1);
        k = tkey(51);
        assert_int_equal(vkvs_alloc(st, sid, &k, 4096, &lease, &b[3]), VKV_ENOSPC);
        vkvs_stats_get(st, &s);
        assert_int_equal(s.allocs_failed, 1);
        for (uint32_t i = 0; i < 3; i++)
            assert_int_equal(present(st, sid, i), 1);
        assert_int_equal(vkvs_release(st, sid, &fr.lease, 1, NULL), 0);
        assert_int_equal(vkvs_alloc(st, sid, &k, 4096, &lease, &b[3]), 0);
        vkvs_close(st);
    }
}

/* Data the evict hook saw. */
typedef struct hook_log {
    int calls, drops;
    vkv_key key;
    char ns[32];
    uint64_t size;
    unsigned char first, last;
    int ret;
} hook_log;

/* Evict hook: records the victim and copies its bytes through vkvs_read. */
static int record_hook(void *arg, vkvs_store *st, const vkvs_victim *v)
{
    hook_log *h = arg;
    char *buf = malloc(v->size);

    h->calls++;
    h->key = *v->key;
    strncpy(h->ns, v->ns, sizeof(h->ns) - 1);
    h->size = v->size;
    assert_int_equal(vkvs_read(st, v->extents, v->nextents, 0, buf, v->size), 0);
    h->first = (unsigned char)buf[0];
    h->last = (unsigned char)buf[v->size - 1];
    free(buf);
    return h->ret;
}

/* Drop hook: counts. */
static void drop_hook(void *arg, uint32_t ns_id, const char *ns, const vkv_key *key)
{
    (void)ns_id;
    (void)ns;
    (void)key;
    ((hook_log *)arg)->drops++;
}

/* The evict hook gets namespace, key, size and the victim's bytes before
 * its pages are freed; the entry becomes COLD (counted by lookup, not
 * fetched), and restore turns it READY again. */
static void eviction_hook_gets_the_victim_and_entry_turns_cold(void **state)
{
    vkvs_config c = small_config(1, 4, VKVS_POLICY_LRU);
    vkvs_store *st;
    uint64_t sid;
    hook_log h = {0};
    vkvs_hooks hooks = {record_hook, drop_hook, &h};
    vkv_key k0 = tkey(7), ks[2] = {tkey(7), tkey(8)};
    size_t p, cold;
    vkvs_block b[2];
    vkvs_fetch_result fr;
    vkvs_stats s;

    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    vkvs_set_hooks(st, &hooks);
    assert_int_equal(vkvs_session_open(st, "model-x", 1, false, &sid), 0);
    put(st, sid, 7, 2 * 4096 + 5);
    put(st, sid, 8, 4096);
    put(st, sid, 9, 2 * 4096); /* needs room: evicts key 7 (LRU) */
    assert_int_equal(h.calls, 1);
    assert_memory_equal(h.key.b, k0.b, 32);
    assert_string_equal(h.ns, "model-x");
    assert_int_equal(h.size, 2 * 4096 + 5);
    assert_int_equal(h.first, 7);
    assert_int_equal(h.last, 7);
    assert_int_equal(vkvs_lookup(st, sid, ks, 2, &p, &cold), 0);
    assert_int_equal(p, 2);
    assert_int_equal(cold, 1);
    assert_int_equal(vkvs_fetch(st, sid, ks, 2, b, &fr), 0);
    assert_int_equal(fr.nready, 0);
    assert_int_equal(fr.ncold, 1);
    assert_int_equal(fr.lease, 0);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.entries_cold, 1);
    assert_int_equal(s.spills, 1);
    /* restore: back to READY with fresh pages (evicting 8 to make room) */
    assert_int_equal(vkvs_restore_begin(st, "model-x", &k0, &b[0]), 0);
    assert_int_equal(b[0].size, 2 * 4096 + 5);
    assert_int_equal(vkvs_lookup(st, sid, ks, 1, &p, &cold), 0);
    assert_int_equal(cold, 1); /* RESTORING still counts as cold */
    assert_int_equal(vkvs_restore_end(st, "model-x", &k0, 0), 0);
    assert_int_equal(vkvs_fetch(st, sid, ks, 1, b, &fr), 0);
    assert_int_equal(fr.nready, 1);
    assert_int_equal(vkvs_release(st, sid, &fr.lease, 1, NULL), 0);
    /* a failing hook drops the entry instead, and the drop hook hears it
     * (key 7's cold copy is gone first: a restored block the cold tier still
     * holds is evicted without the hook, see store_spill_test) */
    assert_int_equal(vkvs_cold_copy_gone(st, "model-x", &k0), 0);
    h.ret = VKV_EIO;
    int drops = h.drops;
    put(st, sid, 20, 2 * 4096);
    assert_int_equal(vkvs_lookup(st, sid, ks, 1, &p, &cold), 0);
    assert_int_equal(p, 0);
    vkvs_stats_get(st, &s);
    assert_true(s.spill_failures >= 1);
    assert_true(h.drops > drops);
    /* FLUSH/EVICT with a cold tier that refuses the blocks: nothing is
     * dropped, every block stays hot (no room was needed) */
    uint64_t failures = s.spill_failures;
    drops = h.drops;
    size_t n = 1;
    vkv_key k20 = tkey(20);
    assert_int_equal(vkvs_evict(st, sid, NULL, NULL, 0, true, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(vkvs_evict(st, sid, NULL, &k20, 1, true, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(vkvs_lookup(st, sid, &k20, 1, &p, &cold), 0);
    assert_int_equal(p, 1);
    assert_int_equal(cold, 0);
    vkvs_stats_get(st, &s);
    assert_true(s.spill_failures > failures);
    assert_int_equal(h.drops, drops);
    vkvs_close(st);
}

/* Add_cold/forget_cold manage COLD entries for start-up loading. */
static void cold_entries_can_be_added_and_forgotten(void **state)
{
    vkvs_config c = small_config(1, 4, VKVS_POLICY_S3FIFO);
    vkvs_store *st;
    uint64_t sid, lease;
    vkv_key k = tkey(3);
    size_t p, cold;
    vkvs_block b;

    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    assert_int_equal(vkvs_add_cold(st, "m", &k, 1000, 5), 0);
    assert_int_equal(vkvs_add_cold(st, "m", &k, 1000, 5), VKV_EEXIST);
    assert_int_equal(vkvs_session_open(st, "m", 1, false, &sid), 0);
    assert_int_equal(vkvs_lookup(st, sid, &k, 1, &p, &cold), 0);
    assert_int_equal(p, 1);
    assert_int_equal(cold, 1);
    assert_int_equal(vkvs_alloc(st, sid, &k, 10, &lease, &b), VKV_EEXIST);
    assert_int_equal(vkvs_forget_cold(st, "m", &k), 0);
    assert_int_equal(vkvs_lookup(st, sid, &k, 1, &p, &cold), 0);
    assert_int_equal(p, 0);
    assert_int_equal(vkvs_forget_cold(st, "m", &k), VKV_ENOTFOUND);
    vkvs_close(st);
}

/* A second writer of the same key gets EBUSY while the first writes, the
 * WRITING entry is invisible, and after commit ALLOC says EEXIST. */
static void alloc_dedupes_concurrent_writers(void **state)
{
    vkvs_config c = small_config(1, 8, VKVS_POLICY_S3FIFO);
    vkvs_store *st;
    uint64_t a, bsid, la, lb;
    vkv_key k = tkey(1);
    vkvs_block blk[1];
    vkvs_fetch_result fr;

    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    assert_int_equal(vkvs_session_open(st, "m", 1, false, &a), 0);
    assert_int_equal(vkvs_session_open(st, "m", 2, false, &bsid), 0);
    assert_int_equal(vkvs_alloc(st, a, &k, 5000, &la, blk), 0);
    assert_int_equal(vkvs_alloc(st, bsid, &k, 5000, &lb, blk), VKV_EBUSY);
    assert_int_equal(present(st, bsid, 1), 0);
    assert_int_equal(vkvs_fetch(st, bsid, &k, 1, blk, &fr), 0);
    assert_int_equal(fr.nready, 0);
    assert_int_equal(vkvs_commit(st, bsid, la, NULL, NULL), VKV_ELEASE); /* not b's lease */
    assert_int_equal(vkvs_commit(st, a, la, NULL, NULL), 0);
    assert_int_equal(vkvs_commit(st, a, la, NULL, NULL), VKV_ELEASE);
    assert_int_equal(vkvs_alloc(st, bsid, &k, 5000, &lb, blk), VKV_EEXIST);
    assert_int_equal(present(st, bsid, 1), 1);
    vkvs_close(st);
}

/* Validator that rejects. */
static int reject(void *arg, const vkvs_store *st, const char *ns, const vkv_key *key,
                  const vkvs_block *b)
{
    (void)st;
    assert_string_equal(ns, "m"); /* the entry's own namespace and key */
    assert_int_equal(key->b[0], tkey(1).b[0]);
    *(uint64_t *)arg = b->size;
    return VKV_ECHECKSUM;
}

/* A failing validation keeps the entry invisible; abort frees it. */
static void commit_validation_failure_keeps_entry_invisible(void **state)
{
    vkvs_config c = small_config(1, 8, VKVS_POLICY_S3FIFO);
    vkvs_store *st;
    uint64_t sid, lease, seen = 0;
    vkv_key k = tkey(1);
    vkvs_block b;
    vkvs_stats s;

    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    assert_int_equal(vkvs_session_open(st, "m", 1, false, &sid), 0);
    assert_int_equal(vkvs_alloc(st, sid, &k, 9000, &lease, &b), 0);
    assert_int_equal(vkvs_commit(st, sid, lease, reject, &seen), VKV_ECHECKSUM);
    assert_int_equal(seen, 9000);
    assert_int_equal(present(st, sid, 1), 0);
    assert_int_equal(vkvs_abort(st, sid, lease), 0);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.pages_free, 8);
    assert_int_equal(s.entries_writing, 0);
    vkvs_close(st);
}

/* Keys of one namespace never match another's. */
static void namespaces_are_isolated(void **state)
{
    vkvs_config c = small_config(1, 8, VKVS_POLICY_S3FIFO);
    vkvs_store *st;
    uint64_t a, b, lease;
    vkv_key k = tkey(1);
    vkvs_block blk;

    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    assert_int_equal(vkvs_session_open(st, "llava-7b|tp0", 1, false, &a), 0);
    assert_int_equal(vkvs_session_open(st, "llava-7b|tp1", 1, false, &b), 0);
    put(st, a, 1, 100);
    assert_int_equal(present(st, a, 1), 1);
    assert_int_equal(present(st, b, 1), 0);
    assert_int_equal(vkvs_alloc(st, b, &k, 100, &lease, &blk), 0);
    assert_int_equal(vkvs_delete(st, b, "llava-7b|tp0", &k, 1, NULL), VKV_EPERM);
    vkvs_close(st);
}

/* Admin sessions cannot read or write, but can list, info, evict, delete. */
static void admin_sessions_only_inspect_and_evict(void **state)
{
    vkvs_config c = small_config(1, 8, VKVS_POLICY_S3FIFO);
    vkvs_store *st;
    uint64_t w, adm, lease;
    vkv_key k = tkey(1);
    size_t p, cold, n;
    vkvs_block blk;
    vkvs_info info[4];
    uint64_t next;

    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    assert_int_equal(vkvs_session_open(st, "m", 1, false, &w), 0);
    assert_int_equal(vkvs_session_open(st, "", 1, true, &adm), 0);
    put(st, w, 1, 100);
    put(st, w, 2, 100);
    assert_int_equal(vkvs_lookup(st, adm, &k, 1, &p, &cold), VKV_EPERM);
    assert_int_equal(vkvs_alloc(st, adm, &k, 1, &lease, &blk), VKV_EPERM);
    assert_int_equal(vkvs_list(st, adm, NULL, 0, 1, info, &n, &next), 0);
    assert_int_equal(n, 1);
    assert_int_not_equal(next, 0);
    assert_int_equal(vkvs_list(st, adm, NULL, next, 4, info, &n, &next), 0);
    assert_int_equal(n, 1);
    assert_int_equal(next, 0);
    assert_int_equal(vkvs_list(st, adm, "other", 0, 4, info, &n, &next), 0);
    assert_int_equal(n, 0);
    assert_int_equal(vkvs_info_get(st, adm, "m", &k, info), 0);
    assert_string_equal(info[0].ns, "m");
    assert_int_equal(info[0].size, 100);
    assert_int_equal(vkvs_evict(st, adm, NULL, NULL, 0, false, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(present(st, w, 1), 0);
    assert_int_equal(vkvs_lookup(st, 12345, &k, 1, &p, &cold), VKV_ESESSION);
    vkvs_close(st);
}

/* Deleting a pinned entry hides it at once but frees its pages only when
 * the lease is released; its bytes stay intact meanwhile. */
static void delete_of_pinned_entry_is_deferred(void **state)
{
    vkvs_config c = small_config(1, 4, VKVS_POLICY_LRU);
    vkvs_store *st;
    uint64_t sid, lease;
    vkv_key k = tkey(5);
    vkvs_block b, nb;
    vkvs_fetch_result fr;
    vkvs_stats s;
    size_t nd;
    char buf[3 * 4096];

    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    assert_int_equal(vkvs_session_open(st, "m", 1, false, &sid), 0);
    put(st, sid, 5, sizeof(buf));
    assert_int_equal(vkvs_fetch(st, sid, &k, 1, &b, &fr), 0);
    assert_int_equal(vkvs_delete(st, sid, NULL, &k, 1, &nd), 0);
    assert_int_equal(nd, 1);
    assert_int_equal(present(st, sid, 5), 0);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.pages_free, 1);
    /* the same key can be written again; it must not reuse the pinned pages */
    assert_int_equal(vkvs_alloc(st, sid, &k, 4096, &lease, &nb), 0);
    assert_int_not_equal(nb.extents[0].first_page, b.extents[0].first_page);
    assert_int_equal(vkvs_abort(st, sid, lease), 0);
    assert_int_equal(vkvs_alloc(st, sid, &k, 2 * 4096, &lease, &nb), VKV_ENOSPC);
    assert_int_equal(vkvs_read(st, b.extents, b.nextents, 0, buf, sizeof(buf)), 0);
    for (size_t i = 0; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 5);
    assert_int_equal(vkvs_release(st, sid, &fr.lease, 1, NULL), 0);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.pages_free, 4);
    assert_int_equal(s.entries_ready, 0);
    vkvs_close(st);
}

/* Leases expire without quarantine (vkvs_config.quarantine = false): an
 * expired fetch lease unpins (the entry becomes evictable again), an expired
 * alloc lease aborts (entry gone, pages free, the writer's commit fails) and
 * another writer can take the key. The default, quarantine, is tested in
 * store_lease_test.c. */
static void expired_leases_unpin_and_abort(void **state)
{
    vkvs_config c = small_config(1, 4, VKVS_POLICY_LRU);
    c.quarantine = false;
    vkvs_store *st;
    uint64_t sid, other, lease, l2;
    vkv_key k1 = tkey(1), k2 = tkey(2);
    vkvs_block b;
    vkvs_fetch_result fr;
    vkvs_stats s;

    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    assert_int_equal(vkvs_session_open(st, "m", 1, false, &sid), 0);
    assert_int_equal(vkvs_session_open(st, "m", 2, false, &other), 0);
    put(st, sid, 1, 4096);
    assert_int_equal(vkvs_fetch(st, sid, &k1, 1, &b, &fr), 0);
    assert_int_equal(vkvs_alloc(st, sid, &k2, 4096, &lease, &b), 0);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.pages_evictable, 0);
    assert_int_equal(s.leases_active, 2);
    fake_now_ms += 29999;
    assert_int_equal(vkvs_reap(st, fake_now_ms, NULL, NULL), 0);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.leases_active, 2);
    assert_int_equal(vkvs_alloc(st, other, &k2, 4096, &l2, &b), VKV_EBUSY);
    fake_now_ms += 1;
    assert_int_equal(vkvs_reap(st, fake_now_ms, NULL, NULL), 0);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.leases_active, 0);
    assert_int_equal(s.leases_expired, 2);
    assert_int_equal(s.pages_evictable, 1);
    assert_int_equal(s.pages_free, 3);
    assert_int_equal(s.entries_writing, 0);
    assert_int_equal(vkvs_commit(st, sid, lease, NULL, NULL), VKV_ELEASE);
    assert_int_equal(present(st, sid, 2), 0);
    assert_int_equal(vkvs_alloc(st, other, &k2, 4096, &l2, &b), 0);
    vkvs_close(st);
}

/* Liveness callback: pid 666 is "dead". */
static bool alive_unless_666(void *arg, pid_t pid)
{
    (void)arg;
    return pid != 666;
}

/* Reaping a dead pid and a silent session releases their leases and aborts
 * their WRITING entries, which never become visible. */
static void reap_closes_dead_and_silent_sessions(void **state)
{
    vkvs_config c = small_config(1, 8, VKVS_POLICY_S3FIFO);
    vkvs_store *st;
    uint64_t dead, silent, live, lease;
    vkv_key k1 = tkey(1), k2 = tkey(2), k3 = tkey(3);
    vkvs_block b;
    vkvs_fetch_result fr;
    vkvs_stats s;
    size_t p, cold;

    (void)state;
    c.lease_ttl_ms = 1000000; /* leases outlive the sessions here */
    c.quarantine = false;     /* silent sessions holding leases: see store_lease_test */
    assert_int_equal(vkvs_open(&c, &st), 0);
    assert_int_equal(vkvs_session_open(st, "m", 666, false, &dead), 0);
    assert_int_equal(vkvs_session_open(st, "m", 100, false, &silent), 0);
    assert_int_equal(vkvs_session_open(st, "m", 101, false, &live), 0);
    /* pids as the kernel reports them (else checked only after a grace) */
    assert_int_equal(vkvs_session_bind_pid(st, dead, 666), 0);
    assert_int_equal(vkvs_session_bind_pid(st, silent, 100), 0);
    assert_int_equal(vkvs_session_bind_pid(st, live, 101), 0);
    put(st, live, 3, 4096);
    assert_int_equal(vkvs_alloc(st, dead, &k1, 4096, &lease, &b), 0);
    assert_int_equal(vkvs_alloc(st, silent, &k2, 4096, &lease, &b), 0);
    assert_int_equal(vkvs_fetch(st, silent, &k3, 1, &b, &fr), 0);
    assert_int_equal(vkvs_reap(st, fake_now_ms, alive_unless_666, NULL), 1);
    assert_int_equal(vkvs_session_touch(st, dead), VKV_ESESSION);
    assert_int_equal(present(st, live, 1), 0);
    fake_now_ms += 100000;
    assert_int_equal(vkvs_session_touch(st, live), 0);
    fake_now_ms += 20001; /* silent for 120001 ms, live for 20001 */
    assert_int_equal(vkvs_reap(st, fake_now_ms, alive_unless_666, NULL), 1);
    assert_int_equal(vkvs_session_touch(st, silent), VKV_ESESSION);
    assert_int_equal(vkvs_lookup(st, live, &k2, 1, &p, &cold), 0);
    assert_int_equal(p, 0);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.sessions, 1);
    assert_int_equal(s.sessions_reaped, 2);
    assert_int_equal(s.leases_active, 0);
    assert_int_equal(s.entries_writing, 0);
    assert_int_equal(s.pages_evictable, 1); /* key 3 unpinned again */
    assert_int_equal(s.pages_free, 7);
    /* an explicit close does the same */
    assert_int_equal(vkvs_alloc(st, live, &k1, 4096, &lease, &b), 0);
    assert_int_equal(vkvs_session_close(st, live), 0);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.entries_writing, 0);
    assert_int_equal(s.pages_free, 7);
    vkvs_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lookup_has_no_side_effects),
        cmocka_unit_test(lru_evicts_least_recently_used),
        cmocka_unit_test(s3fifo_evicts_one_hit_wonders_first),
        cmocka_unit_test(pinned_entries_are_never_evicted),
        cmocka_unit_test(eviction_hook_gets_the_victim_and_entry_turns_cold),
        cmocka_unit_test(cold_entries_can_be_added_and_forgotten),
        cmocka_unit_test(alloc_dedupes_concurrent_writers),
        cmocka_unit_test(commit_validation_failure_keeps_entry_invisible),
        cmocka_unit_test(namespaces_are_isolated),
        cmocka_unit_test(admin_sessions_only_inspect_and_evict),
        cmocka_unit_test(delete_of_pinned_entry_is_deferred),
        cmocka_unit_test(expired_leases_unpin_and_abort),
        cmocka_unit_test(reap_closes_dead_and_silent_sessions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
