/*
 * Integration tests of vkvd + libvkv with real processes: a real daemon
 * binary, forked worker processes, real signals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "proto/proto.h"

static const char *const g_flags[] = {
    "--capacity",         "32M", "--slab-size", "8M", "--page-size", "64K",
    "--reap-interval-ms", "100", "--cold-max",  "0",  NULL};

/* The small test chunk with visual tokens [8, 56). */
static vkv_shape test_shape(void)
{
    return vkvt_small_shape(8, 48);
}

static int setup_daemon(void **state)
{
    vkvt_daemon *d = calloc(1, sizeof *d);
    if (!d || vkvt_prepare(d) != 0 || vkvt_start(d, g_flags) != 0) {
        fprintf(stderr, "cannot start vkvd\n");
        return -1;
    }
    *state = d;
    return 0;
}

static int teardown_daemon(void **state)
{
    vkvt_daemon *d = *state;
    if (d) {
        vkvt_cleanup(d);
        free(d);
    }
    return 0;
}

/* Child body: put `n` chunks of `seed` under keys (seed, i). Exit code 0 ok. */
static int worker_put(const vkvt_daemon *d, const char *ns, uint64_t seed, int n)
{
    vkv_client *c;
    if (vkvt_connect(d, ns, &c) != 0)
        return 10;
    vkv_shape s = test_shape();
    int rc = vkvt_put_range(c, &s, seed, 0, n);
    if (rc)
        return 11;
    vkv_close(c);
    return 0;
}

/* Child body: look up and fetch n chunks, check every block is bit-identical
 * to a local encoding and decodes to the same tensors. */
static int worker_get(const vkvt_daemon *d, const char *ns, uint64_t seed, int n)
{
    vkv_client *c;
    if (vkvt_connect(d, ns, &c) != 0)
        return 20;
    vkv_key keys[16];
    for (int i = 0; i < n; i++)
        keys[i] = vkvt_key(seed, (uint32_t)i);
    size_t hits = 0, cold = 0;
    if (vkv_lookup(c, keys, (size_t)n, &hits, &cold) != 0 || hits != (size_t)n)
        return 21;
    vkv_fetch *f;
    if (vkv_fetch_begin(c, keys, (size_t)n, &f) != 0 || vkv_fetch_count(f) != (size_t)n)
        return 22;
    vkv_shape s = test_shape();
    size_t nel = (size_t)s.tokens * s.kv_heads * s.head_dim;
    for (int i = 0; i < n; i++) {
        size_t sz;
        void *ref = vkvt_encode_local(&s, vkv_client_codec(c), seed + (uint64_t)i, &sz);
        vkv_view v = vkv_fetch_view(f, (size_t)i);
        if (!ref || vkvt_bind_like(f, (size_t)i, ref, sz) != 0 || v.size != sz ||
            memcmp(v.data, ref, sz) != 0)
            return 23;
        uint16_t *ka[4], *va[4], *kb[4], *vb[4];
        for (int l = 0; l < 4; l++) {
            ka[l] = malloc(nel * 2);
            va[l] = malloc(nel * 2);
            kb[l] = malloc(nel * 2);
            vb[l] = malloc(nel * 2);
        }
        vkv_kv_dst da = {(void *const *)ka, (void *const *)va,   (size_t)s.kv_heads * s.head_dim,
                         s.head_dim,        vkv_geometry_of(&s), NULL};
        vkv_kv_dst db = {(void *const *)kb, (void *const *)vb,   (size_t)s.kv_heads * s.head_dim,
                         s.head_dim,        vkv_geometry_of(&s), NULL};
        if (vkv_fetch_decode(f, (size_t)i, VKV_DECODE_VERIFY, &da) != 0 ||
            vkv_decode(ref, sz, 0, &db) != 0)
            return 24;
        for (int l = 0; l < 4; l++) {
            if (memcmp(ka[l], kb[l], nel * 2) || memcmp(va[l], vb[l], nel * 2))
                return 25;
            free(ka[l]);
            free(va[l]);
            free(kb[l]);
            free(vb[l]);
        }
        free(ref);
    }
    if (vkv_fetch_release(c, f) != 0)
        return 26;
    vkv_close(c);
    return 0;
}

/* Forks a child running fn and returns its exit status. */
static int run_child(int (*fn)(const vkvt_daemon *, const char *, uint64_t, int),
                     const vkvt_daemon *d, const char *ns, uint64_t seed, int n)
{
    pid_t p = fork();
    if (p == 0)
        _exit(fn(d, ns, seed, n));
    int st = 0;
    waitpid(p, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

static void second_worker_reuses_first_workers_prefix(void **state)
{
    vkvt_daemon *d = *state;
    assert_int_equal(run_child(worker_put, d, "llava-7b|tp0|f16", 1000, 6), 0);
    assert_int_equal(run_child(worker_get, d, "llava-7b|tp0|f16", 1000, 6), 0);
}

static void namespaces_never_share_keys(void **state)
{
    vkvt_daemon *d = *state;
    assert_int_equal(run_child(worker_put, d, "model-a", 2000, 2), 0);
    vkv_client *c;
    assert_int_equal(vkvt_connect(d, "model-b", &c), 0);
    vkv_key keys[2] = {vkvt_key(2000, 0), vkvt_key(2000, 1)};
    size_t hits = 99;
    assert_int_equal(vkv_lookup(c, keys, 2, &hits, NULL), 0);
    assert_int_equal(hits, 0);
    vkv_close(c);
    assert_int_equal(vkvt_connect(d, "model-a", &c), 0);
    assert_int_equal(vkv_lookup(c, keys, 2, &hits, NULL), 0);
    assert_int_equal(hits, 2);
    vkv_close(c);
}

static void lookup_stops_at_first_missing_key(void **state)
{
    vkvt_daemon *d = *state;
    assert_int_equal(run_child(worker_put, d, "m", 3000, 3), 0);
    vkv_client *c;
    assert_int_equal(vkvt_connect(d, "m", &c), 0);
    vkv_key keys[4] = {vkvt_key(3000, 0), vkvt_key(3000, 1), vkvt_key(9999, 0), vkvt_key(3000, 2)};
    size_t hits = 99;
    assert_int_equal(vkv_lookup(c, keys, 4, &hits, NULL), 0);
    assert_int_equal(hits, 2);
    vkv_fetch *f;
    assert_int_equal(vkv_fetch_begin(c, keys, 4, &f), 0);
    assert_int_equal(vkv_fetch_count(f), 2);
    assert_int_equal(vkv_fetch_release(c, f), 0);
    vkv_close(c);
}

/* Racing writers: both children reserve the same key after a barrier; one
 * wins, the other is told EBUSY; the winner commits. */
static void racing_writers_are_deduplicated(void **state)
{
    vkvt_daemon *d = *state;
    int go[2], res[2], commit[2];
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(commit), 0);
    assert_int_equal(pipe(res), 0);
    pid_t kids[2];
    for (int w = 0; w < 2; w++) {
        kids[w] = fork();
        if (kids[w] == 0) {
            vkv_client *c;
            if (vkvt_connect(d, "race", &c) != 0)
                _exit(1);
            char b;
            if (read(go[0], &b, 1) != 1)
                _exit(2);
            vkv_key key = vkvt_key(4000, 0);
            vkv_shape s = test_shape();
            size_t sz;
            vkv_codec_encoded_size(&s, vkv_client_codec(c), &sz);
            vkv_put *p = NULL;
            int rc = vkv_put_begin(c, &key, sz, &p);
            int32_t out = rc;
            if (write(res[1], &out, 4) != 4)
                _exit(3);
            if (rc == 0) {
                if (read(commit[0], &b, 1) != 1) /* second go: commit */
                    _exit(4);
                void *blk = vkvt_encode_local(&s, vkv_client_codec(c), 4000, &sz);
                memcpy(vkv_put_data(p), blk, sz);
                free(blk);
                if (vkv_put_commit(c, p) != 0)
                    _exit(5);
            }
            vkv_close(c);
            _exit(0);
        }
    }
    assert_int_equal(write(go[1], "gg", 2), 2);
    int32_t r[2];
    assert_int_equal(read(res[0], &r[0], 4), 4);
    assert_int_equal(read(res[0], &r[1], 4), 4);
    int ok = (r[0] == 0) + (r[1] == 0);
    int busy = (r[0] == VKV_EBUSY) + (r[1] == VKV_EBUSY);
    assert_int_equal(ok, 1);
    assert_int_equal(busy, 1);
    assert_int_equal(write(commit[1], "c", 1), 1);
    for (int w = 0; w < 2; w++) {
        int st;
        waitpid(kids[w], &st, 0);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    assert_int_equal(run_child(worker_get, d, "race", 4000, 1), 0);
    close(go[0]);
    close(go[1]);
    close(res[0]);
    close(res[1]);
    close(commit[0]);
    close(commit[1]);
}

/* A worker holding a fetch lease and a half-written reservation is killed
 * with SIGKILL: the daemon reaps its session, the half write never becomes
 * visible, and another client is served throughout. */
static void killed_worker_is_reaped_and_half_write_never_visible(void **state)
{
    vkvt_daemon *d = *state;
    assert_int_equal(run_child(worker_put, d, "kill", 5000, 1), 0);
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t victim = fork();
    if (victim == 0) {
        vkv_client *c;
        if (vkvt_connect(d, "kill", &c) != 0)
            _exit(1);
        vkv_key k0 = vkvt_key(5000, 0), k1 = vkvt_key(5000, 1);
        vkv_fetch *f;
        if (vkv_fetch_begin(c, &k0, 1, &f) != 0 || vkv_fetch_count(f) != 1)
            _exit(2);
        vkv_put *p;
        if (vkv_put_begin(c, &k1, 100000, &p) != 0)
            _exit(3);
        memset(vkv_put_data(p), 0xab, 5000); /* half a write */
        if (write(ready[1], "r", 1) != 1)
            _exit(4);
        for (;;)
            pause();
    }
    char b;
    assert_int_equal(read(ready[0], &b, 1), 1);
    vkv_client *c;
    assert_int_equal(vkvt_connect(d, "kill", &c), 0);
    assert_true(vkvt_stat(c, "leases_active") >= 2);
    assert_true(vkvt_stat(c, "entries_writing") >= 1);
    vkv_key k1 = vkvt_key(5000, 1);
    vkv_put *p = NULL;
    assert_int_equal(vkv_put_begin(c, &k1, 1000, &p), VKV_EBUSY);
    kill(victim, SIGKILL);
    int st;
    waitpid(victim, &st, 0);
    /* Served throughout; the reaper (100 ms period) notices the dead pid. */
    int reaped = 0;
    for (int i = 0; i < 300 && !reaped; i++) {
        size_t hits;
        vkv_key k0 = vkvt_key(5000, 0);
        assert_int_equal(vkv_lookup(c, &k0, 1, &hits, NULL), 0);
        assert_int_equal(hits, 1);
        reaped = vkvt_stat(c, "leases_active") == 0 && vkvt_stat(c, "entries_writing") == 0;
        if (!reaped)
            vkvt_sleep_ms(20);
    }
    assert_true(reaped);
    size_t hits = 9;
    assert_int_equal(vkv_lookup(c, &k1, 1, &hits, NULL), 0);
    assert_int_equal(hits, 0);
    assert_true(vkvt_stat(c, "sessions_reaped") >= 1);
    /* The key is free to be written again. */
    assert_int_equal(vkv_put_begin(c, &k1, 1000, &p), 0);
    assert_int_equal(vkv_put_abort(c, p), 0);
    vkv_close(c);
    close(ready[0]);
    close(ready[1]);
}

static void commit_of_a_garbage_block_is_refused(void **state)
{
    vkvt_daemon *d = *state;
    vkv_client *c;
    assert_int_equal(vkvt_connect(d, "garbage", &c), 0);
    vkv_key k = vkvt_key(6000, 0);
    vkv_put *p;
    assert_int_equal(vkv_put_begin(c, &k, 4096, &p), 0);
    memset(vkv_put_data(p), 0x5a, 4096);
    int rc = vkv_put_commit(c, p);
    assert_true(rc < 0);
    size_t hits = 9;
    assert_int_equal(vkv_lookup(c, &k, 1, &hits, NULL), 0);
    assert_int_equal(hits, 0);
    assert_int_equal(vkv_put_begin(c, &k, 4096, &p), 0); /* not stuck WRITING */
    assert_int_equal(vkv_put_abort(c, p), 0);
    vkv_close(c);
}

/* Sends one raw frame on a REQ socket and returns the decoded status of the
 * reply (1 if no reply arrived). */
static int raw_exchange(int s, const void *frame, size_t len)
{
    if (nn_send(s, frame, len, 0) < 0)
        return 1;
    void *buf = NULL;
    int n = nn_recv(s, &buf, NN_MSG, 0);
    if (n < 0)
        return 1;
    vkvp_reply *rep = NULL;
    char why[160];
    int rc = vkvp_decode_reply(buf, (size_t)n, VKVP_PING, &rep, why, sizeof why);
    nn_freemsg(buf);
    if (rc)
        return 2;
    int st = rep->status;
    vkvp_reply_free(rep);
    return st;
}

static void malformed_frames_get_error_replies_and_daemon_lives(void **state)
{
    vkvt_daemon *d = *state;
    char url[400];
    snprintf(url, sizeof url, "ipc://%s/vkvd.sock", d->rundir);
    int s = nn_socket(AF_SP, NN_REQ);
    assert_true(s >= 0);
    int to = 3000;
    nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVTIMEO, &to, sizeof to);
    assert_true(nn_connect(s, url) >= 0);
    static const uint8_t f_empty_map[] = {0x80};
    static const uint8_t f_short[] = {0x94, 0x01, 0x0e};
    static const uint8_t f_huge_array[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t f_huge_bin[] = {0x94, 0x01, 0x02, 0x01, 0x81, 0xa4, 'k', 'e',
                                         'y',  's',  0xc6, 0x7f, 0xff, 0xff, 0xff};
    static const uint8_t f_bad_op[] = {0x94, 0x01, 0x63, 0x07, 0x80};
    static const uint8_t f_bad_version[] = {0x94, 0x09, 0x0e, 0x07, 0x80};
    static const uint8_t f_trailing[] = {0x94, 0x01, 0x0e, 0x07, 0x80, 0x00};
    static const uint8_t f_unknown_key[] = {0x94, 0x01, 0x0e, 0x07, 0x81,
                                            0xa3, 'z',  'z',  'z',  0x01};
    uint8_t deep[64];
    for (size_t i = 0; i < sizeof deep; i++)
        deep[i] = 0x91; /* arrays nested 64 deep */
    uint8_t random_bytes[256];
    uint64_t x = 42;
    for (size_t i = 0; i < sizeof random_bytes; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        random_bytes[i] = (uint8_t)(x >> 56);
    }
    struct {
        const void *p;
        size_t n;
    } frames[] = {{f_empty_map, sizeof f_empty_map},
                  {f_short, sizeof f_short},
                  {f_huge_array, sizeof f_huge_array},
                  {f_huge_bin, sizeof f_huge_bin},
                  {f_bad_op, sizeof f_bad_op},
                  {f_bad_version, sizeof f_bad_version},
                  {f_trailing, sizeof f_trailing},
                  {f_unknown_key, sizeof f_unknown_key},
                  {deep, sizeof deep},
                  {random_bytes, sizeof random_bytes},
                  {"", 0}};
    for (size_t i = 0; i < sizeof frames / sizeof frames[0]; i++) {
        int st = raw_exchange(s, frames[i].p, frames[i].n);
        if (st >= 0)
            fail_msg("frame %zu: expected an error reply, got %d", i, st);
    }
    nn_close(s);
    vkv_client *c;
    assert_int_equal(vkvt_connect(d, "after-garbage", &c), 0);
    assert_int_equal(vkv_ping(c), 0);
    assert_true(vkvt_stat(c, "bad_frames") >= 10);
    vkv_close(c);
}

static void sigterm_exits_zero_and_removes_sockets(void **state)
{
    (void)state;
    vkvt_daemon d;
    assert_int_equal(vkvt_prepare(&d), 0);
    assert_int_equal(vkvt_start(&d, g_flags), 0);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    char p[400];
    snprintf(p, sizeof p, "%s/vkvd.sock", d.rundir);
    assert_int_not_equal(access(p, F_OK), 0);
    vkvt_cleanup(&d);
}

static void restart_is_seen_as_stale_then_recovers(void **state)
{
    (void)state;
    vkvt_daemon d;
    assert_int_equal(vkvt_prepare(&d), 0);
    assert_int_equal(vkvt_start(&d, g_flags), 0);
    vkv_client *c;
    assert_int_equal(vkvt_connect(&d, "restart", &c), 0);
    uint64_t e1 = vkv_client_epoch(c);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    assert_int_equal(vkvt_start(&d, g_flags), 0);
    vkv_key k = vkvt_key(7000, 0);
    size_t hits;
    int rc = VKV_ECONN;
    for (int i = 0; i < 50 && (rc == VKV_ECONN || rc == VKV_ETIMEDOUT); i++)
        rc = vkv_lookup(c, &k, 1, &hits, NULL);
    assert_int_equal(rc, VKV_ESTALE);
    assert_int_not_equal(vkv_client_epoch(c), e1);
    assert_int_equal(vkv_lookup(c, &k, 1, &hits, NULL), 0);
    vkv_close(c);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    vkvt_cleanup(&d);
}

static void second_daemon_on_same_rundir_is_refused(void **state)
{
    vkvt_daemon *d = *state;
    vkvt_daemon d2 = *d;
    d2.pid = 0;
    snprintf(d2.logpath, sizeof d2.logpath, "%s/vkvd2.log", d->dir);
    /* The first daemon answers the readiness ping, so look at the second
     * process itself: it must exit with status 1 on its own. */
    if (vkvt_start(&d2, g_flags) == 0 && d2.pid > 0) {
        int st = 0, exited = 0;
        for (int i = 0; i < 500 && !exited; i++) {
            exited = waitpid(d2.pid, &st, WNOHANG) == d2.pid;
            if (!exited)
                vkvt_sleep_ms(10);
        }
        if (!exited)
            kill(d2.pid, SIGKILL);
        assert_true(exited);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    }
    vkv_client *c;
    assert_int_equal(vkvt_connect(d, "still-there", &c), 0);
    assert_int_equal(vkv_ping(c), 0);
    vkv_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(second_worker_reuses_first_workers_prefix),
        cmocka_unit_test(namespaces_never_share_keys),
        cmocka_unit_test(lookup_stops_at_first_missing_key),
        cmocka_unit_test(racing_writers_are_deduplicated),
        cmocka_unit_test(killed_worker_is_reaped_and_half_write_never_visible),
        cmocka_unit_test(commit_of_a_garbage_block_is_refused),
        cmocka_unit_test(malformed_frames_get_error_replies_and_daemon_lives),
        cmocka_unit_test(second_daemon_on_same_rundir_is_refused),
    };
    const struct CMUnitTest solo[] = {
        cmocka_unit_test(sigterm_exits_zero_and_removes_sockets),
        cmocka_unit_test(restart_is_seen_as_stale_then_recovers),
    };
    int rc = cmocka_run_group_tests_name("service", tests, setup_daemon, teardown_daemon);
    rc += cmocka_run_group_tests_name("lifecycle", solo, NULL, NULL);
    return rc;
}
