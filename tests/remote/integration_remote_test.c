/*
 * tests/remote/integration_remote_test.c - two real vkvd processes (their
 * own rundirs, state dirs and arenas) sharing image prefixes through a real
 * 3-master Redis Cluster: A puts, B serves bit-identical blocks to its
 * worker, B restarted with empty local tiers still hits, a foreign value is
 * never served, and a killed master leaves B answering from what it has,
 * with the failures counted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "redis_cluster.h"

#define N 12 /* chunks of the shared "image" */

static vkvt_redis g_rc;
static char g_remote[300];

/* About 10 KiB blocks. */
static vkv_shape small_shape(void)
{
    return vkvt_small_shape(4, 56);
}

/* Daemon flags: small arena, the cluster as the remote tier, small pieces
 * so each block is several Redis values. */
static void flags(const char **out)
{
    const char *f[] = {"--capacity",
                       "4M",
                       "--slab-size",
                       "1M",
                       "--page-size",
                       "64K",
                       "--reap-interval-ms",
                       "100",
                       "--cold-max",
                       "64M",
                       "--remote",
                       g_remote,
                       "--remote-piece-size",
                       "4K",
                       "--remote-timeout-ms",
                       "500",
                       "--remote-wait-ms",
                       "3000",
                       "--remote-miss-ms",
                       "200",
                       NULL};
    memcpy(out, f, sizeof f);
}

/* Waits (up to 10 s) until STATS counter `name` of c reaches `want`;
 * returns its last value. */
static uint64_t wait_stat(vkv_client *c, const char *name, uint64_t want)
{
    uint64_t v = 0;
    for (int i = 0; i < 200; i++) {
        v = vkvt_stat(c, name);
        if (v != UINT64_MAX && v >= want)
            return v;
        vkvt_sleep_ms(50);
    }
    return v;
}

static void keys_of(uint64_t seed, vkv_key *keys, int n)
{
    for (int i = 0; i < n; i++)
        keys[i] = vkvt_key(seed, (uint32_t)i);
}

static int group_setup(void **state)
{
    (void)state;
    int rc = vkvt_redis_start(&g_rc, 3, NULL);
    if (rc == 77)
        exit(77);
    snprintf(g_remote, sizeof g_remote, "redis://%s", g_rc.nodes);
    return rc;
}

static int group_teardown(void **state)
{
    (void)state;
    vkvt_redis_stop(&g_rc);
    return 0;
}

/* Starts B with empty local tiers (its state directory wiped). */
static void start_empty(vkvt_daemon *d, const char **f)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'/*", d->statedir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(vkvt_start(d, f), 0);
}

/* Starts daemons A and B (their own dirs), connects a worker to each and
 * has A put and publish chunks [0, N) of `seed`. */
static void start_pair(vkvt_daemon *a, vkvt_daemon *b, const char **f, vkv_client **ca,
                       vkv_client **cb, uint64_t seed)
{
    assert_int_equal(vkvt_prepare(a), 0);
    assert_int_equal(vkvt_prepare(b), 0);
    assert_int_equal(vkvt_start(a, f), 0);
    assert_int_equal(vkvt_start(b, f), 0);
    assert_int_equal(vkvt_connect(a, "llava-test", ca), 0);
    assert_int_equal(vkvt_connect(b, "llava-test", cb), 0);
    vkv_shape s = small_shape();
    assert_int_equal(vkvt_put_range(*ca, &s, seed, 0, N), 0);
    assert_int_equal(wait_stat(*ca, "remote_publishes", N), N);
}

/* Closes the workers, stops both daemons (SIGTERM, exit 0) and removes
 * their directories. */
static void stop_pair(vkvt_daemon *a, vkvt_daemon *b, vkv_client *ca, vkv_client *cb)
{
    vkv_close(ca);
    vkv_close(cb);
    assert_int_equal(vkvt_stop(a, SIGTERM), 0);
    assert_int_equal(vkvt_stop(b, SIGTERM), 0);
    vkvt_cleanup(a);
    vkvt_cleanup(b);
}

static void image_is_shared_across_daemons(void **state)
{
    (void)state;
    const char *f[32];
    flags(f);
    vkvt_daemon a, b;
    vkv_client *ca, *cb;
    start_pair(&a, &b, f, &ca, &cb, 500);
    vkv_shape s = small_shape();

    /* B has never seen the image: LOOKUP fetches it from the cluster. */
    vkv_key keys[N];
    keys_of(500, keys, N);
    size_t hits = 0, cold = 0;
    assert_int_equal(vkv_lookup(cb, keys, N, &hits, &cold), 0);
    assert_int_equal(hits, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(vkvt_check_one(cb, &s, 500, i), 1); /* bit-identical */
    assert_int_equal(vkvt_stat(cb, "remote_installed"), N);
    assert_int_equal(vkvt_stat(cb, "remote_hits"), N);
    assert_int_equal(vkvt_stat(cb, "remote_errors"), 0);
    /* B does not publish what it got from the cluster. */
    assert_int_equal(vkvt_stat(cb, "remote_publishes"), 0);
    /* vkvctl status shows the tier. */
    char cmd[700], line[512] = "";
    snprintf(cmd, sizeof cmd, "%s --rundir '%s' status | grep '^remote:'", VKVCTL_PATH, b.rundir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(line, sizeof line, p));
    pclose(p);
    assert_non_null(strstr(line, "12 hits"));
    vkv_close(cb);

    /* B restarted with empty local tiers: still a hit, through FETCH. */
    assert_int_equal(vkvt_stop(&b, SIGTERM), 0);
    start_empty(&b, f);
    assert_int_equal(vkvt_connect(&b, "llava-test", &cb), 0);
    assert_int_equal(vkvt_stat(cb, "entries_cold"), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(vkvt_check_one(cb, &s, 500, i), 1);
    assert_int_equal(vkvt_stat(cb, "remote_installed"), N);

    /* Another namespace never sees them. */
    vkv_client *other;
    assert_int_equal(vkvt_connect(&b, "other-model", &other), 0);
    assert_int_equal(vkv_lookup(other, keys, N, &hits, &cold), 0);
    assert_int_equal(hits, 0);
    vkv_close(other);

    stop_pair(&a, &b, ca, cb);
}

/* The 64 hex digits of a key (as in its Redis key names) into hex[65]. */
static void key_hex(const vkv_key *k, char *hex)
{
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", k->b[i]);
}

/* Overwrites every manifest in the cluster whose key contains `hex` (the
 * key's 64 hex digits) with garbage. Returns how many. */
static int plant_garbage(const char *hex)
{
    int n = 0;
    for (int i = 0; i < g_rc.n; i++) {
        redisReply *x = vkvt_redis_cmd(&g_rc, i, "KEYS *{%s}/m", hex);
        for (size_t k = 0; x && k < x->elements; k++) {
            redisReply *y = vkvt_redis_cmd(&g_rc, i, "SET %b not-a-manifest", x->element[k]->str,
                                           x->element[k]->len);
            freeReplyObject(y);
            n++;
        }
        if (x)
            freeReplyObject(x);
    }
    return n;
}

static void foreign_value_and_dead_master_give_local_answers(void **state)
{
    (void)state;
    const char *f[32];
    flags(f);
    vkvt_daemon a, b;
    vkv_client *ca, *cb;
    start_pair(&a, &b, f, &ca, &cb, 700);
    vkv_shape s = small_shape();

    /* A foreign value under chunk 0's manifest: B serves nothing of it. */
    vkv_key keys[N];
    keys_of(700, keys, N);
    char hex[65];
    key_hex(&keys[0], hex);
    assert_int_equal(plant_garbage(hex), 1);
    size_t hits = 9, cold = 9;
    assert_int_equal(vkv_lookup(cb, keys, N, &hits, &cold), 0);
    assert_int_equal(hits, 0);
    assert_int_equal(vkvt_check_one(cb, &s, 700, 0), 0);
    assert_true(vkvt_stat(cb, "remote_foreign") >= 1);
    assert_true(vkvt_stat(cb, "remote_errors") >= 1);

    /* A master dies: B answers each FETCH with what it can get (a miss
     * for the chunks on the dead master), counts the errors; A keeps
     * committing locally (its publishes there fail, counted). */
    uint64_t before = vkvt_stat(ca, "remote_publishes");
    assert_int_equal(vkvt_put_range(ca, &s, 750, 0, N), 0);
    assert_int_equal(wait_stat(ca, "remote_publishes", before + N), before + N);
    keys_of(750, keys, N);
    key_hex(&keys[0], hex);
    int dead = -1;
    bool on_dead[N];
    for (int m = 0; m < g_rc.n && dead < 0; m++) {
        redisReply *x = vkvt_redis_cmd(&g_rc, m, "KEYS *{%s}/m", hex);
        if (x && x->elements == 1)
            dead = m; /* the master holding chunk 0 */
        if (x)
            freeReplyObject(x);
    }
    assert_true(dead >= 0);
    for (int i = 0; i < N; i++) {
        key_hex(&keys[i], hex);
        redisReply *x = vkvt_redis_cmd(&g_rc, dead, "KEYS *{%s}/m", hex);
        on_dead[i] = x && x->elements == 1;
        if (x)
            freeReplyObject(x);
    }
    uint64_t errors0 = vkvt_stat(cb, "remote_errors");
    assert_int_equal(vkvt_redis_signal(&g_rc, dead, SIGKILL), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(vkvt_check_one(cb, &s, 750, i), on_dead[i] ? 0 : 1);
    assert_true(vkvt_stat(cb, "remote_errors") > errors0);
    uint64_t perr0 = vkvt_stat(ca, "remote_publish_errors");
    assert_int_equal(vkvt_put_range(ca, &s, 800, 0, N), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(vkvt_check_one(ca, &s, 800, i), 1);
    assert_true(wait_stat(ca, "remote_publish_errors", perr0 + 1) > perr0);

    /* The master comes back (empty): the tier reconnects by itself. */
    assert_int_equal(vkvt_redis_restart(&g_rc, dead), 0);
    vkvt_sleep_ms(1200); /* past the 1 s retry interval of a failed node */
    before = vkvt_stat(ca, "remote_publishes");
    assert_int_equal(vkvt_put_range(ca, &s, 900, 0, 4), 0);
    assert_int_equal(wait_stat(ca, "remote_publishes", before + 4), before + 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(vkvt_check_one(cb, &s, 900, i), 1);

    stop_pair(&a, &b, ca, cb);
}

/* Flips one byte of the first piece of the block whose key has 64-digit
 * `hex` (whichever master holds it). Returns 1 if a piece was changed. */
static int flip_piece(const char *hex)
{
    for (int i = 0; i < g_rc.n; i++) {
        redisReply *x = vkvt_redis_cmd(&g_rc, i, "KEYS *{%s}/*/0", hex);
        int done = 0;
        if (x && x->elements == 1) {
            redisReply *y = vkvt_redis_cmd(&g_rc, i, "GETRANGE %b 300 300", x->element[0]->str,
                                           x->element[0]->len);
            char c = (char)(y->str[0] ^ 0x01);
            freeReplyObject(y);
            y = vkvt_redis_cmd(&g_rc, i, "SETRANGE %b 300 %b", x->element[0]->str,
                               x->element[0]->len, &c, (size_t)1);
            freeReplyObject(y);
            done = 1;
        }
        if (x)
            freeReplyObject(x);
        if (done)
            return 1;
    }
    return 0;
}

/* A flipped byte in a stored piece is refused (counted), and a cluster at
 * its maxmemory refuses publishes while the commits succeed locally. */
static void flipped_piece_and_full_cluster_give_local_answers(void **state)
{
    (void)state;
    const char *f[32];
    flags(f);
    vkvt_daemon a, b;
    vkv_client *ca, *cb;
    start_pair(&a, &b, f, &ca, &cb, 1100);
    vkv_shape s = small_shape();
    vkv_key keys[N];
    keys_of(1100, keys, N);
    char hex[65];
    key_hex(&keys[3], hex);
    assert_int_equal(flip_piece(hex), 1);
    for (int i = 0; i < N; i++)
        assert_int_equal(vkvt_check_one(cb, &s, 1100, i), i == 3 ? 0 : 1);
    assert_int_equal(vkvt_stat(cb, "remote_corrupt"), 1);
    assert_int_equal(vkvt_stat(cb, "remote_installed"), N - 1);

    /* Every master at its maxmemory, noeviction. */
    for (int m = 0; m < g_rc.n; m++) {
        redisReply *x = vkvt_redis_cmd(&g_rc, m, "CONFIG SET maxmemory 1");
        freeReplyObject(x);
    }
    uint64_t perr = vkvt_stat(ca, "remote_publish_errors");
    assert_int_equal(vkvt_put_range(ca, &s, 1200, 0, 4), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(vkvt_check_one(ca, &s, 1200, i), 1); /* served locally */
    assert_int_equal(wait_stat(ca, "remote_publish_errors", perr + 4), perr + 4);
    for (int m = 0; m < g_rc.n; m++) {
        redisReply *x = vkvt_redis_cmd(&g_rc, m, "CONFIG SET maxmemory 0");
        freeReplyObject(x);
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(vkvt_check_one(cb, &s, 1200, i), 0); /* nothing half-published */
    stop_pair(&a, &b, ca, cb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(image_is_shared_across_daemons),
        cmocka_unit_test(foreign_value_and_dead_master_give_local_answers),
        cmocka_unit_test(flipped_piece_and_full_cluster_give_local_answers),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
