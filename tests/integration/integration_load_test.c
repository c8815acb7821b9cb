/*
 * tests/integration/integration_load_test.c - one client cannot exhaust vkvd or starve
 * another. A flooding worker process loops FLUSH of a full 64 MiB arena,
 * FETCH of the flushed keys (restores), ALLOC past its session quota and
 * puts, while this process measures its own LOOKUP round trips and samples
 * the daemon's anonymous memory (heap: RssAnon, the arena is shared memory).
 *
 * Asserted: every LOOKUP of the observer succeeds; the flooder's oversized
 * ALLOC is refused by the quota; the daemon's heap stays within the spill
 * queue bound (+ reply cache + slack) instead of growing with what is
 * flushed. Printed, not asserted (no timing thresholds in tests): the
 * observer's LOOKUP p50/p99 under the flood beside idle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/client_internal.h"
#include "harness.h"
#include "proto/proto.h"

/* 64 MiB arena of 64 KiB pages; the spill queue holds 2 MiB. */
static const char *const g_flags[] = {"--capacity",
                                      "64M",
                                      "--slab-size",
                                      "16M",
                                      "--page-size",
                                      "64K",
                                      "--cold-max",
                                      "1G",
                                      "--spill-queue",
                                      "2M",
                                      "--reap-interval-ms",
                                      "100",
                                      "--cold-sync-ms",
                                      "200",
                                      NULL};
#define NKEYS 900 /* ~34 KiB blocks, one page each: more than the arena holds */

static vkv_shape shape(void)
{
    return vkvt_small_shape(4, 56);
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The flooder: until killed, fills the arena, FLUSHes it (admin session),
 * fetches everything back (restores), and asks for more than its quota.
 * Exit 3 if the oversized ALLOC was ever accepted. */
static int flooder(const vkvt_daemon *d)
{
    vkv_client *c, *adm;
    vkv_options o = {0};
    o.rundir = d->rundir;
    o.admin = 1;
    if (vkvt_connect(d, "flood", &c) != 0 || vkv_connect(&o, &adm) != 0)
        return 1;
    vkv_shape s = shape();
    if (vkvt_put_range(c, &s, 9000, 0, NKEYS) != 0)
        return 2;
    for (;;) {
        vkv_key big = vkvt_key(9999, 0);
        vkv_put *p;
        if (vkv_put_begin(c, &big, 48u << 20, &p) == 0) /* > half the arena */
            return 3;
        vkvp_request rq;
        vkvp_reply *rep;
        vkvp_request_init(&rq, VKVP_FLUSH, 0);
        rq.u.flush.session = vkvc_session(adm);
        if (vkvc_call(adm, &rq, &rep, NULL, 0) == 0)
            vkvp_reply_free(rep);
        for (int i = 0; i < NKEYS; i += 64) {
            vkv_key keys[64];
            for (int j = 0; j < 64; j++)
                keys[j] = vkvt_key(9000, (uint32_t)((i + j) % NKEYS));
            vkv_fetch *f;
            if (vkv_fetch_begin(c, keys, 64, &f) == 0)
                vkv_fetch_release(c, f);
        }
    }
}

static void a_flooding_client_cannot_exhaust_the_daemon(void **state)
{
    (void)state;
    vkvt_daemon d;
    assert_int_equal(vkvt_prepare(&d), 0);
    assert_int_equal(vkvt_start(&d, g_flags), 0);
    long base = vkvt_proc_kb(d.pid, "RssAnon");
    assert_true(base > 0);
    pid_t fl = fork();
    if (fl == 0)
        _exit(flooder(&d));
    vkv_client *c;
    assert_int_equal(vkvt_connect(&d, "observer", &c), 0);
    vkv_key k = vkvt_key(1, 0);
    enum { N = 3000 };
    static double lat[N];
    size_t hits, cold;
    double idle[200];
    for (int i = 0; i < 200; i++) {
        double t0 = now_us();
        assert_int_equal(vkv_lookup(c, &k, 1, &hits, &cold), 0);
        idle[i] = now_us() - t0;
    }
    long peak = base;
    for (int i = 0; i < N; i++) {
        double t0 = now_us();
        assert_int_equal(vkv_lookup(c, &k, 1, &hits, &cold), 0);
        lat[i] = now_us() - t0;
        if (i % 10 == 0) {
            long r = vkvt_proc_kb(d.pid, "RssAnon");
            if (r > peak)
                peak = r;
        }
        usleep(1000);
    }
    uint64_t flushes = vkvt_stat(c, "req_flush"), deferred = vkvt_stat(c, "spills_deferred");
    uint64_t qpeak = vkvt_stat(c, "spill_queue_peak_bytes");
    uint64_t refused = vkvt_stat(c, "quota_refusals");
    kill(fl, SIGKILL);
    int st = 0;
    waitpid(fl, &st, 0);
    assert_false(WIFEXITED(st)); /* killed, not exited with a failure */
    qsort(idle, 200, sizeof idle[0], cmp_double);
    qsort(lat, N, sizeof lat[0], cmp_double);
    printf("load: observer LOOKUP idle p50 %.1f us p99 %.1f us; under the flood p50 %.1f us "
           "p99 %.1f us (%d lookups)\n",
           idle[100], idle[198], lat[N / 2], lat[N * 99 / 100], N);
    printf("load: flooder FLUSHes %llu, spills deferred %llu, spill queue peak %llu KiB, quota "
           "refusals %llu; daemon RssAnon %ld kB idle, %ld kB peak\n",
           (unsigned long long)flushes, (unsigned long long)deferred,
           (unsigned long long)(qpeak >> 10), (unsigned long long)refused, base, peak);
    assert_true(flushes >= 1);
    assert_true(refused >= 1);
    assert_true(qpeak <= 4 * (2u << 20)); /* evictions for room may reach 4x */
    /* heap: the spill queue (<= 8 MiB) + reply cache (<= 32 MiB) + slack,
     * not the 64 MiB arena the flooder flushes over and over (not checked
     * in an AddressSanitizer build: its quarantine keeps freed memory) */
#if !defined(__SANITIZE_ADDRESS__)
    assert_true(peak - base < 48 * 1024);
#endif
    vkv_close(c);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    vkvt_cleanup(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_flooding_client_cannot_exhaust_the_daemon),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
