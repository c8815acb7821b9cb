/*
 * tests/store/store_lease_test.c - leases past their TTL under quarantine
 * (the default): the memory an expired lease handed out is never reused
 * while its holder's session lives, renewals, release of an expired lease,
 * and which sessions the reaper may close (pid binding, silent sessions).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "store_test_util.h"
#include "vkv/error.h"

/* Allocates key i (size bytes) under a new lease and fills it with `fill`. */
static uint64_t reserve(vkvs_store *st, uint64_t sid, uint32_t i, uint64_t size, int fill,
                        vkvs_block *b)
{
    vkv_key k = tkey(i);
    uint64_t lease;
    char *buf = malloc(size);
    assert_non_null(buf);
    memset(buf, fill, size);
    assert_int_equal(vkvs_alloc(st, sid, &k, size, &lease, b), 0);
    assert_int_equal(vkvs_write(st, b->extents, b->nextents, 0, buf, size), 0);
    free(buf);
    return lease;
}

/* Commits key i filled with byte i. */
static void put(vkvs_store *st, uint64_t sid, uint32_t i, uint64_t size)
{
    vkvs_block b;
    uint64_t lease = reserve(st, sid, i, size, (int)(i & 0xff), &b);
    assert_int_equal(vkvs_commit(st, sid, lease, NULL, NULL), 0);
}

/* Every byte of the block is `want`. */
static void expect_bytes(vkvs_store *st, const vkvs_block *b, int want)
{
    char *buf = malloc(b->size);
    assert_non_null(buf);
    assert_int_equal(vkvs_read(st, b->extents, b->nextents, 0, buf, b->size), 0);
    for (uint64_t i = 0; i < b->size; i++)
        assert_int_equal((unsigned char)buf[i], (unsigned char)want);
    free(buf);
}

/* A late writer: its lease expires, another writer takes the key and fills
 * the arena; the late writer's pages are never handed to anyone, its late
 * bytes stay in them, and its commit fails and frees them. */
static void expired_alloc_pages_are_not_reused(void **state)
{
    vkvs_config c = small_config(1, 4, VKVS_POLICY_LRU);
    vkvs_store *st;
    uint64_t a, b, la, lb;
    vkvs_block ba, bb;
    vkvs_stats s;
    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    assert_int_equal(vkvs_session_open(st, "m", 1, false, &a), 0);
    assert_int_equal(vkvs_session_open(st, "m", 2, false, &b), 0);
    la = reserve(st, a, 1, 4096, 0xaa, &ba);
    fake_now_ms += c.lease_ttl_ms;
    assert_int_equal(vkvs_reap(st, fake_now_ms, NULL, NULL), 0);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.leases_quarantined, 1);
    assert_int_equal(s.leases_active, 0);
    assert_int_equal(s.pages_free, 3); /* still held for a */
    /* b takes the key over and the rest of the arena */
    lb = reserve(st, b, 1, 3 * 4096, 0xbb, &bb);
    assert_int_equal(vkvs_commit(st, b, lb, NULL, NULL), 0);
    for (uint32_t i = 0; i < bb.nextents; i++)
        assert_false(bb.extents[i].first_page == ba.extents[0].first_page);
    vkvs_fetch_result fr;
    vkvs_block got;
    vkv_key k1 = tkey(1), k2 = tkey(2);
    assert_int_equal(vkvs_fetch(st, b, &k1, 1, &got, &fr), 0);
    assert_int_equal(fr.nready, 1);
    uint64_t l2;
    vkvs_block b2;
    assert_int_equal(vkvs_alloc(st, b, &k2, 4096, &l2, &b2), VKV_ENOSPC); /* not a's page */
    /* a writes late, into its own page: b's block is untouched */
    char late[4096];
    memset(late, 0xcc, sizeof late);
    assert_int_equal(vkvs_write(st, ba.extents, ba.nextents, 0, late, sizeof late), 0);
    expect_bytes(st, &got, 0xbb);
    assert_int_equal(vkvs_release(st, b, &fr.lease, 1, NULL), 0);
    /* a's commit: the lease had expired; its pages go back now */
    assert_int_equal(vkvs_commit(st, a, la, NULL, NULL), VKV_ELEASE);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.leases_quarantined, 0);
    assert_int_equal(s.pages_free, 1);
    assert_int_equal(s.entries_writing, 0);
    vkvs_close(st);
}

/* A late reader: its fetch lease expires; the entry is deleted and the
 * arena refilled; the reader's pages still hold its own block. RELEASE ends
 * the zombie but does not count it as a live release. */
static void expired_fetch_keeps_its_block(void **state)
{
    vkvs_config c = small_config(1, 3, VKVS_POLICY_LRU);
    vkvs_store *st;
    uint64_t r, w;
    vkvs_stats s;
    size_t n;
    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    assert_int_equal(vkvs_session_open(st, "m", 1, false, &r), 0);
    assert_int_equal(vkvs_session_open(st, "m", 2, false, &w), 0);
    put(st, w, 7, 4096);
    vkv_key k7 = tkey(7);
    vkvs_block got;
    vkvs_fetch_result fr;
    assert_int_equal(vkvs_fetch(st, r, &k7, 1, &got, &fr), 0);
    fake_now_ms += c.lease_ttl_ms + 1;
    assert_int_equal(vkvs_reap(st, fake_now_ms, NULL, NULL), 0);
    assert_int_equal(vkvs_delete(st, w, NULL, &k7, 1, &n), 0);
    assert_int_equal(n, 1);
    put(st, w, 8, 4096); /* the arena is full now: had key 7's page been */
    put(st, w, 9, 4096); /* reused, it would hold 8 or 9 */
    expect_bytes(st, &got, 7);
    assert_int_equal(vkvs_renew(st, r, &fr.lease, 1, &n), 0);
    assert_int_equal(n, 0); /* an expired lease is not renewed */
    assert_int_equal(vkvs_release(st, r, &fr.lease, 1, &n), 0);
    assert_int_equal(n, 0); /* it had expired */
    vkvs_stats_get(st, &s);
    assert_int_equal(s.leases_quarantined, 0);
    assert_int_equal(s.pages_free, 1); /* the deleted entry is gone now */
    vkvs_close(st);
}

/* Renewing keeps a lease live past its first TTL; closing the session ends
 * zombies and frees their pages. */
static void renew_extends_and_close_frees_zombies(void **state)
{
    vkvs_config c = small_config(1, 4, VKVS_POLICY_LRU);
    vkvs_store *st;
    uint64_t a, la;
    vkvs_block ba;
    vkvs_stats s;
    size_t n;
    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    assert_int_equal(vkvs_session_open(st, "m", 1, false, &a), 0);
    la = reserve(st, a, 1, 4096, 1, &ba);
    fake_now_ms += c.lease_ttl_ms - 1;
    assert_int_equal(vkvs_renew(st, a, &la, 1, &n), 0);
    assert_int_equal(n, 1);
    fake_now_ms += c.lease_ttl_ms - 1;
    assert_int_equal(vkvs_reap(st, fake_now_ms, NULL, NULL), 0);
    assert_int_equal(vkvs_commit(st, a, la, NULL, NULL), 0); /* still live */
    vkv_key k1 = tkey(1);
    vkvs_block got;
    vkvs_fetch_result fr;
    assert_int_equal(vkvs_fetch(st, a, &k1, 1, &got, &fr), 0);
    la = reserve(st, a, 2, 4096, 2, &ba);
    fake_now_ms += c.lease_ttl_ms;
    assert_int_equal(vkvs_reap(st, fake_now_ms, NULL, NULL), 0);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.leases_quarantined, 2);
    assert_int_equal(s.pages_free, 2);
    assert_int_equal(s.pages_evictable, 0);
    assert_int_equal(vkvs_session_close(st, a), 0);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.leases_quarantined, 0);
    assert_int_equal(s.pages_free, 3);
    assert_int_equal(s.pages_evictable, 1);
    vkvs_close(st);
}

static pid_t g_dead_pid;

/* Liveness: every pid is alive but g_dead_pid. */
static bool alive_unless_dead(void *arg, pid_t pid)
{
    (void)arg;
    return pid != g_dead_pid;
}

/* A silent session holding a zombie stays while its process lives and is
 * closed when it dies; a silent session holding nothing is closed. */
static void silent_sessions_holding_pages_stay_while_alive(void **state)
{
    vkvs_config c = small_config(1, 4, VKVS_POLICY_LRU);
    vkvs_store *st;
    uint64_t holder, idle;
    vkvs_block b;
    vkvs_stats s;
    (void)state;
    g_dead_pid = 0;
    assert_int_equal(vkvs_open(&c, &st), 0);
    assert_int_equal(vkvs_session_open(st, "m", 100, false, &holder), 0);
    assert_int_equal(vkvs_session_open(st, "m", 101, false, &idle), 0);
    (void)reserve(st, holder, 1, 4096, 1, &b);
    fake_now_ms += c.session_ttl_ms + 1;
    assert_int_equal(vkvs_reap(st, fake_now_ms, alive_unless_dead, NULL), 1);
    assert_int_equal(vkvs_session_touch(st, idle), VKV_ESESSION);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.leases_quarantined, 1);
    assert_int_equal(s.pages_free, 3);
    g_dead_pid = 100;
    assert_int_equal(vkvs_reap(st, fake_now_ms, alive_unless_dead, NULL), 1);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.sessions, 0);
    assert_int_equal(s.pages_free, 4);
    vkvs_close(st);
}

/* A self-reported pid that means nothing here (another pid namespace) is
 * not trusted during the grace period; once the kernel's pid is bound it is
 * the one checked. */
static void bound_pid_replaces_the_reported_one(void **state)
{
    vkvs_config c = small_config(1, 4, VKVS_POLICY_LRU);
    vkvs_store *st;
    uint64_t boundsid, unbound;
    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    g_dead_pid = 7; /* the pid both containers' workers report */
    assert_int_equal(vkvs_session_open(st, "m", 7, false, &boundsid), 0);
    assert_int_equal(vkvs_session_open(st, "m", 7, false, &unbound), 0);
    assert_int_equal(vkvs_reap(st, fake_now_ms, alive_unless_dead, NULL), 0); /* grace */
    assert_int_equal(vkvs_session_bind_pid(st, boundsid, 4242), 0);
    assert_int_equal(vkvs_session_bind_pid(st, boundsid, 0), VKV_EINVAL);
    fake_now_ms += VKVS_BIND_GRACE_MS;
    assert_int_equal(vkvs_reap(st, fake_now_ms, alive_unless_dead, NULL), 1);
    assert_int_equal(vkvs_session_touch(st, boundsid), 0);
    assert_int_equal(vkvs_session_touch(st, unbound), VKV_ESESSION);
    g_dead_pid = 4242;
    assert_int_equal(vkvs_reap(st, fake_now_ms, alive_unless_dead, NULL), 1);
    assert_int_equal(vkvs_session_touch(st, boundsid), VKV_ESESSION);
    vkvs_close(st);
}

/* A session cannot hold more than session_quota bytes under its leases:
 * ALLOC past it is VKV_ENOSPC, FETCH returns the prefix that fits, and
 * quarantined leases still count until released. */
static void session_quota_bounds_what_one_session_holds(void **state)
{
    vkvs_config c = small_config(1, 8, VKVS_POLICY_LRU);
    c.session_quota = 3 * 4096;
    vkvs_store *st;
    uint64_t a, b, l1, l2, l3;
    vkvs_block bl;
    vkvs_stats s;
    (void)state;
    assert_int_equal(vkvs_open(&c, &st), 0);
    assert_int_equal(vkvs_session_open(st, "m", 1, false, &a), 0);
    assert_int_equal(vkvs_session_open(st, "m", 2, false, &b), 0);
    l1 = reserve(st, a, 1, 2 * 4096, 1, &bl);
    vkv_key k2 = tkey(2);
    assert_int_equal(vkvs_alloc(st, a, &k2, 2 * 4096, &l2, &bl), VKV_ENOSPC);
    assert_int_equal(vkvs_commit(st, a, l1, NULL, NULL), 0); /* releases the bytes */
    for (uint32_t i = 10; i < 14; i++)
        put(st, b, i, 4096);
    vkv_key keys[4] = {tkey(10), tkey(11), tkey(12), tkey(13)};
    vkvs_block got[4];
    vkvs_fetch_result fr;
    assert_int_equal(vkvs_fetch(st, a, keys, 4, got, &fr), 0);
    assert_int_equal(fr.nready, 3); /* the fourth would pass the quota */
    assert_int_equal(fr.ncold, 0);
    vkvs_fetch_result fr2;
    assert_int_equal(vkvs_fetch(st, a, keys, 4, got, &fr2), VKV_ENOSPC); /* full */
    l3 = reserve(st, b, 3, 3 * 4096, 3, &bl);                            /* b has its own quota */
    /* a's fetch lease expires: quarantined, it still counts */
    fake_now_ms += c.lease_ttl_ms;
    assert_int_equal(vkvs_reap(st, fake_now_ms, NULL, NULL), 0);
    vkv_key k4 = tkey(4);
    assert_int_equal(vkvs_alloc(st, a, &k4, 4096, &l2, &bl), VKV_ENOSPC);
    size_t n;
    assert_int_equal(vkvs_release(st, a, &fr.lease, 1, &n), 0);
    assert_int_equal(vkvs_alloc(st, a, &k4, 4096, &l2, &bl), 0);
    vkvs_stats_get(st, &s);
    assert_int_equal(s.quota_refusals, 4);
    (void)l3;
    vkvs_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(expired_alloc_pages_are_not_reused),
        cmocka_unit_test(expired_fetch_keeps_its_block),
        cmocka_unit_test(renew_extends_and_close_frees_zombies),
        cmocka_unit_test(silent_sessions_holding_pages_stay_while_alive),
        cmocka_unit_test(bound_pid_replaces_the_reported_one),
        cmocka_unit_test(session_quota_bounds_what_one_session_holds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
