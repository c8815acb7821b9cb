/*
 * kill -9 of vkvd at random moments while a worker puts blocks fast enough
 * to keep the cold tier spilling, repeated (label slow). After every restart
 * the store must open, and every block it serves must be bit-identical to
 * what was put; a block whose spill did not complete is simply absent.
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

#include "harness.h"

#define ROUNDS 20
#define SEED   900000ull

static vkv_shape small_shape(void)
{
    return vkvt_small_shape(0, 64);
}

/* Worker: puts keys base, base+1, ... until the daemon goes away; reports
 * progress through the shared counter file descriptor (one int per put). */
static void writer(const vkvt_daemon *d, int base, int out_fd)
{
    vkv_client *c;
    if (vkvt_connect(d, "crash", &c) != 0)
        _exit(1);
    vkv_shape s = small_shape();
    for (int i = base;; i++) {
        int32_t idx = i;
        /* Announce the index before putting: the parent then knows every key
         * that may exist. */
        if (write(out_fd, &idx, 4) != 4)
            _exit(2);
        uint16_t **k, **v;
        vkvt_chunk_make(&s, SEED + (uint64_t)i, &k, &v);
        vkv_kv_src src = {(const void *const *)k, (const void *const *)v,
                          (size_t)s.kv_heads * s.head_dim, s.head_dim};
        vkv_key key = vkvt_key(SEED, (uint32_t)i);
        int rc = vkv_put_chunk(c, &key, &s, &src, NULL);
        vkvt_chunk_free(&s, k, v);
        if (rc)
            _exit(0);
    }
}

/* 1 served identical, 0 absent, -1 served wrong, -2 error. */
static int check_one(vkv_client *c, int i)
{
    vkv_shape s = small_shape();
    return vkvt_check_one(c, &s, SEED, i);
}

static void kill_9_during_spills_never_corrupts_the_store(void **state)
{
    (void)state;
    static const char *const flags[] = {"--capacity",     "2M",  "--slab-size", "1M",
                                        "--page-size",    "64K", "--cold-max",  "64M",
                                        "--cold-sync-ms", "20",  NULL};
    vkvt_daemon d;
    assert_int_equal(vkvt_prepare(&d), 0);
    uint64_t rng = 12345;
    int next = 0, served_total = 0, absent_total = 0;
    for (int round = 0; round < ROUNDS; round++) {
        assert_int_equal(vkvt_start(&d, flags), 0);
        /* The store opened: check a sample of everything ever attempted. */
        vkv_client *c;
        assert_int_equal(vkvt_connect(&d, "crash", &c), 0);
        assert_int_equal(vkvt_stat(c, "cold_available"), 1);
        for (int i = next > 48 ? next - 48 : 0; i < next; i++) {
            int r = check_one(c, i);
            if (r < 0)
                fail_msg("round %d key %d: check returned %d", round, i, r);
            served_total += r;
            absent_total += r == 0;
        }
        vkv_close(c);
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        pid_t w = fork();
        if (w == 0) {
            close(pfd[0]);
            writer(&d, next, pfd[1]);
        }
        close(pfd[1]);
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        vkvt_sleep_ms(80 + (int)((rng >> 33) % 400));
        kill(d.pid, SIGKILL);
        int st;
        waitpid(d.pid, &st, 0);
        d.pid = 0;
        kill(w, SIGKILL);
        waitpid(w, &st, 0);
        int32_t idx;
        while (read(pfd[0], &idx, 4) == 4)
            if (idx + 1 > next)
                next = idx + 1;
        close(pfd[0]);
    }
    /* Final full check after one more restart: every key ever attempted. */
    assert_int_equal(vkvt_start(&d, flags), 0);
    vkv_client *c;
    assert_int_equal(vkvt_connect(&d, "crash", &c), 0);
    int served = 0;
    for (int i = 0; i < next; i++) {
        int r = check_one(c, i);
        if (r < 0)
            fail_msg("final check key %d: %d", i, r);
        served += r;
    }
    printf("crash loop: %d rounds, %d keys attempted, %d served identical at the end, "
           "%d sampled absent during rounds (%d sampled served)\n",
           ROUNDS, next, served, absent_total, served_total);
    assert_true(next > ROUNDS);
    assert_true(served > 0);
    vkv_close(c);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    vkvt_cleanup(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kill_9_during_spills_never_corrupts_the_store),
    };
    return cmocka_run_group_tests_name("crash", tests, NULL, NULL);
}
