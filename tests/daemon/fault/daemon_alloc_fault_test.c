/*
 * Allocation failures inside a running vkvd: a test build of the daemon
 * (vkvd_faulty, see alloc_wrap.c) fails every Nth allocation of vkv's own
 * code while a client drives puts, lookups, fetches, listings and deletes.
 * For each phase of the schedule: every call answers OK or a proper error,
 * the daemon never dies, and once injection is switched off the store is
 * consistent (no stuck leases or half-written entries, new blocks round
 * trip bit-identical) and SIGTERM exits 0.
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
#include <unistd.h>

#include "client/client_internal.h"
#include "harness.h"
#include "proto/proto.h"

#define PERIOD 6

static const char *const g_flags[] = {
    "--capacity", "2M",  "--slab-size",    "1M",   "--page-size", "64K", "--reap-interval-ms", "50",
    "--cold-max", "64M", "--lease-ttl-ms", "2000", NULL};

/* True for 0 and every code in the vkv error list. */
static int proper(int rc)
{
    return rc == 0 || (rc < 0 && rc >= VKV_ERR_MIN_);
}

/* One admin LIST round trip; returns its status. */
static int admin_list(const vkvt_daemon *d)
{
    vkv_options o = {0};
    o.rundir = d->rundir;
    o.admin = 1;
    o.timeout_ms = 3000;
    vkv_client *a;
    int rc = vkv_connect(&o, &a);
    if (rc)
        return rc;
    vkvp_request rq;
    vkvp_reply *rep;
    vkvp_request_init(&rq, VKVP_LIST, 0);
    rq.u.list.session = vkvc_session(a);
    rc = vkvc_call(a, &rq, &rep, NULL, 0);
    if (rc == 0)
        vkvp_reply_free(rep);
    vkv_close(a);
    return rc;
}

static void every_phase_of_allocation_failures_leaves_the_daemon_consistent(void **state)
{
    (void)state;
    vkv_shape s = vkvt_small_shape(0, 64);
    char ps[8];
    snprintf(ps, sizeof ps, "%d", PERIOD);
    setenv("VKV_FAULT_PERIOD", ps, 1);
    int errors_seen = 0;
    for (int phase = 0; phase < PERIOD; phase++) {
        char ph[8];
        snprintf(ph, sizeof ph, "%d", phase);
        setenv("VKV_FAULT_PHASE", ph, 1);
        vkvt_daemon d;
        assert_int_equal(vkvt_prepare(&d), 0);
        assert_int_equal(vkvt_start(&d, g_flags), 0);
        vkv_client *c;
        assert_int_equal(vkvt_connect(&d, "fault", &c), 0);
        kill(d.pid, SIGUSR1); /* arm */
        uint64_t seed = 10000u * (uint64_t)(phase + 1);
        for (int i = 0; i < 40; i++) {
            int rc = vkvt_put_range(c, &s, seed, i, i + 1);
            if (!proper(rc))
                fail_msg("phase %d put %d: %d", phase, i, rc);
            errors_seen += rc != 0;
            vkv_key k = vkvt_key(seed, (uint32_t)i);
            size_t hits;
            rc = vkv_lookup(c, &k, 1, &hits, NULL);
            assert_true(proper(rc));
            int r = vkvt_check_one(c, &s, seed, i);
            assert_true(r >= 0 || r == -2); /* never served wrong */
            if (i % 8 == 7) {
                rc = admin_list(&d);
                assert_true(proper(rc));
                size_t n;
                rc = vkv_delete(c, &k, 1, &n);
                assert_true(proper(rc));
            }
            if (rc == VKV_ESTALE)
                fail_msg("phase %d: the daemon restarted", phase);
        }
        kill(d.pid, SIGUSR2); /* disarm */
        int st;
        assert_int_equal(waitpid(d.pid, &st, WNOHANG), 0); /* still alive */
        vkv_close(c);
        /* Consistency without injection: a fresh client is served. */
        assert_int_equal(vkvt_connect(&d, "fault", &c), 0);
        uint64_t fresh = seed + 5000;
        assert_int_equal(vkvt_put_range(c, &s, fresh, 0, 4), 0);
        for (int i = 0; i < 4; i++)
            assert_int_equal(vkvt_check_one(c, &s, fresh, i), 1);
        /* Leases of the armed phase are released or expire (TTL 2 s). */
        int clean = 0;
        for (int i = 0; i < 200 && !clean; i++) {
            clean = vkvt_stat(c, "leases_active") == 0 && vkvt_stat(c, "entries_writing") == 0;
            if (!clean)
                vkvt_sleep_ms(25);
        }
        assert_true(clean);
        vkv_close(c);
        assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
        vkvt_cleanup(&d);
    }
    printf("allocation faults: %d client calls saw an error across %d phases\n", errors_seen,
           PERIOD);
    assert_true(errors_seen > 0); /* the injection did reach the daemon */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_phase_of_allocation_failures_leaves_the_daemon_consistent),
    };
    return cmocka_run_group_tests_name("daemon_alloc_fault", tests, NULL, NULL);
}
