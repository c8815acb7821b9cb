/*
 * LOOKUP from the lookup index segment, against a real vkvd
 * (docs/PROTOCOL.md 8a):
 *  - on a quiescent daemon the shared-memory answer equals the round trip
 *    (VKV_LOOKUP_SHM=0) for many prefixes over hot, cold, restored and
 *    deleted keys, and the daemon did not answer those lookups itself;
 *  - reader processes hammering LOOKUP while a worker puts (evicting to the
 *    cold tier), restores, deletes and flushes, and while the daemon restarts
 *    (SIGTERM, then SIGKILL: new epochs), get sane answers, never a hit for a
 *    key deleted before they looked or for a key never put, and always the
 *    pinned prefix;
 *  - a daemon without the segment (lookup-index-slots 0) still answers every
 *    LOOKUP by the round trip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/client_internal.h"
#include "harness.h"
#include "proto/proto.h"

static const char *const g_flags[] = {
    "--capacity", "4M",   "--slab-size",    "1M", "--page-size", "64K", "--reap-interval-ms", "100",
    "--cold-max", "256M", "--cold-sync-ms", "50", NULL};

/* One STATS counter (up to 256 of them), UINT64_MAX when absent. */
static uint64_t stat_of(vkv_client *c, const char *name)
{
    vkv_stat st[256];
    size_t n = 0;
    if (vkv_stats(c, st, 256, &n) != 0)
        return UINT64_MAX;
    for (size_t i = 0; i < n && i < 256; i++)
        if (strcmp(st[i].name, name) == 0)
            return st[i].value;
    return UINT64_MAX;
}

/* Connects to d with the shared-memory path on or off. */
static int connect_shm(const vkvt_daemon *d, const char *ns, bool shm, int timeout_ms,
                       vkv_client **out)
{
    if (shm)
        unsetenv("VKV_LOOKUP_SHM");
    else
        setenv("VKV_LOOKUP_SHM", "0", 1);
    vkv_options o = {0};
    o.rundir = d->rundir;
    o.ns = ns;
    o.timeout_ms = timeout_ms;
    int rc = vkv_connect(&o, out);
    unsetenv("VKV_LOOKUP_SHM");
    return rc;
}

/* EVICT to cold of keys[0..n) in the client's namespace; the count. */
static uint64_t evict_keys(vkv_client *c, const vkv_key *keys, size_t n)
{
    vkvp_request rq;
    vkvp_reply *rep;
    vkvp_request_init(&rq, VKVP_EVICT, 0);
    rq.u.evict.session = vkvc_session(c);
    rq.u.evict.has_keys = true;
    rq.u.evict.keys = keys;
    rq.u.evict.nkeys = (uint32_t)n;
    rq.u.evict.to = VKVP_EVICT_COLD;
    uint64_t cnt = UINT64_MAX;
    if (vkvc_call(c, &rq, &rep, NULL, 0) == 0) {
        cnt = rep->u.evict.count;
        vkvp_reply_free(rep);
    }
    return cnt;
}

/* FLUSH (every hot entry to the cold tier); the count. */
static uint64_t flush_all(vkv_client *c)
{
    vkvp_request rq;
    vkvp_reply *rep;
    vkvp_request_init(&rq, VKVP_FLUSH, 0);
    rq.u.flush.session = vkvc_session(c);
    uint64_t cnt = UINT64_MAX;
    if (vkvc_call(c, &rq, &rep, NULL, 0) == 0) {
        cnt = rep->u.flush.count;
        vkvp_reply_free(rep);
    }
    return cnt;
}

/* splitmix64 for the tests' random choices. */
static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#define SEED 4200

static void equal_to_round_trip_on_a_quiescent_daemon(void **state)
{
    (void)state;
    vkvt_daemon d;
    assert_int_equal(vkvt_prepare(&d), 0);
    assert_int_equal(vkvt_start(&d, g_flags), 0);
    vkv_client *a, *b;
    assert_int_equal(connect_shm(&d, "quiet", true, 5000, &a), 0);
    assert_int_equal(connect_shm(&d, "quiet", false, 5000, &b), 0);
    vkv_shape s = vkvt_small_shape(4, 56);
    /* 80 keys: 60 put, of which some evicted to cold, some restored again,
     * some deleted (hot and cold); 20 never put */
    assert_int_equal(vkvt_put_range(a, &s, SEED, 0, 60), 0);
    vkv_key keys[80];
    for (int i = 0; i < 80; i++)
        keys[i] = vkvt_key(SEED, (uint32_t)i);
    assert_true(evict_keys(a, keys, 30) > 0);
    vkv_fetch *f; /* restores 0..9 (a prefix of cold keys) */
    assert_int_equal(vkv_fetch_begin(a, keys, 10, &f), 0);
    assert_int_equal(vkv_fetch_count(f), 10);
    assert_int_equal(vkv_fetch_release(a, f), 0);
    vkv_key del[6] = {keys[3], keys[15], keys[31], keys[45], keys[52], keys[59]};
    size_t ndel = 0;
    assert_int_equal(vkv_delete(b, del, 6, &ndel), 0);
    assert_int_equal(ndel, 6);
    size_t h = 0, cold = 0;
    assert_int_equal(vkv_lookup(b, keys + 10, 20, &h, &cold), 0);
    assert_true(h > 0 && cold > 0); /* the cold tier is in the picture */

    uint64_t before = stat_of(b, "lookups");
    uint64_t seed = 9, asked_b = 0, asked_a = 0;
    for (int t = 0; t < 3000; t++) {
        vkv_key q[16];
        size_t n = rnd(&seed) % 16;
        uint32_t start = (uint32_t)(rnd(&seed) % 80);
        for (size_t j = 0; j < n; j++) /* mostly runs, sometimes random keys */
            q[j] = rnd(&seed) % 4 ? keys[(start + j) % 80] : keys[rnd(&seed) % 80];
        size_t ha = 99, ca = 99, hb = 98, cb = 98;
        assert_int_equal(vkv_lookup(a, q, n, &ha, &ca), 0);
        assert_int_equal(vkv_lookup(b, q, n, &hb, &cb), 0);
        asked_a++;
        asked_b++;
        if (ha != hb || ca != cb)
            fail_msg("lookup %d of %zu keys from %u: shm %zu/%zu, round trip %zu/%zu", t, n, start,
                     ha, ca, hb, cb);
    }
    uint64_t after = stat_of(b, "lookups");
    /* the daemon answered b's lookups, not a's (but for a keepalive round
     * trip or two) */
    assert_true(after - before >= asked_b);
    assert_true(after - before <= asked_b + 2);
    (void)asked_a;
    /* what the segment holds: the entries of this namespace */
    uint64_t live = stat_of(b, "lookup_index_live");
    uint64_t ready = stat_of(b, "entries_ready"), ecold = stat_of(b, "entries_cold");
    assert_int_equal(live, ready + ecold);
    assert_int_equal(stat_of(b, "lookup_index_unpublished"), 0);
    vkv_close(a);
    vkv_close(b);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    vkvt_cleanup(&d);
}

/* ---- readers hammering while the daemon works and restarts ------------------ */

#define NREADERS 3
#define NSTABLE  8   /* pinned by the worker: always a hit (outside restarts) */
#define NDEAD    48  /* put, then deleted one by one */
#define NCHURN   400 /* put, evicted, restored, deleted at random */
#define NNEVER   32  /* never put */
#define K_STABLE 0
#define K_DEAD   100
#define K_CHURN  1000
#define K_NEVER  5000

struct ctl {
    _Atomic int stop;
    _Atomic uint64_t grace; /* odd while the daemon restarts (phase counter) */
    _Atomic uint8_t dead[NDEAD];
    struct {
        _Atomic uint64_t lookups, ok, errors, false_dead, false_never, stable_miss, insane;
    } r[NREADERS];
};

/* Reader process (this program run again with --reader: nanomsg does not
 * survive a fork): its own client, random checks until told to stop. */
static void reader_main(const vkvt_daemon *d, struct ctl *c, int me)
{
    vkv_client *cl = NULL;
    uint64_t seed = 77 + (uint64_t)me;
    for (int i = 0; i < 100 && connect_shm(d, "ham", true, 2000, &cl) != 0; i++)
        vkvt_sleep_ms(50);
    if (!cl)
        _exit(3);
    vkv_key stable[NSTABLE];
    for (int i = 0; i < NSTABLE; i++)
        stable[i] = vkvt_key(SEED, K_STABLE + (uint32_t)i);
    while (!atomic_load(&c->stop)) {
        uint64_t x = rnd(&seed);
        uint64_t g0 = atomic_load(&c->grace);
        vkv_key q[8];
        size_t n = 1, h = 0, cold = 0;
        int kind = (int)(x % 4);
        uint32_t di = (uint32_t)((x >> 8) % NDEAD);
        uint8_t dead = 0;
        switch (kind) {
        case 0:
            memcpy(q, stable, sizeof stable);
            n = NSTABLE;
            break;
        case 1:
            dead = atomic_load(&c->dead[di]);
            q[0] = vkvt_key(SEED, K_DEAD + di);
            break;
        case 2:
            q[0] = vkvt_key(SEED, K_NEVER + (uint32_t)((x >> 8) % NNEVER));
            break;
        default:
            n = 1 + (x >> 40) % 8;
            for (size_t j = 0; j < n; j++)
                q[j] = vkvt_key(SEED, K_CHURN + (uint32_t)((x >> 8) + j) % NCHURN);
        }
        atomic_fetch_add(&c->r[me].lookups, 1);
        int rc = vkv_lookup(cl, q, n, &h, &cold);
        uint64_t g1 = atomic_load(&c->grace);
        if (rc != 0) {
            /* the daemon is away or restarted: the round trip says so */
            atomic_fetch_add(&c->r[me].errors, 1);
            if (rc != VKV_ECONN && rc != VKV_ETIMEDOUT && rc != VKV_ESTALE && rc != VKV_ESESSION &&
                rc != VKV_ESHUTDOWN)
                atomic_fetch_add(&c->r[me].insane, 1);
            if (rc == VKV_ECONN)
                vkvt_sleep_ms(20);
            continue;
        }
        atomic_fetch_add(&c->r[me].ok, 1);
        if (h > n || cold > h)
            atomic_fetch_add(&c->r[me].insane, 1);
        bool calm = g0 == g1 && !(g0 & 1);
        if (kind == 0 && calm && (h != NSTABLE || cold != 0))
            atomic_fetch_add(&c->r[me].stable_miss, 1);
        if (kind == 1 && calm && dead && h != 0)
            atomic_fetch_add(&c->r[me].false_dead, 1);
        if (kind == 2 && h != 0)
            atomic_fetch_add(&c->r[me].false_never, 1);
    }
    vkv_close(cl);
    _exit(0);
}

/* The worker's client after a restart: a new connection, the stable keys put
 * (if lost) and pinned again, every dead key deleted again (a SIGKILL may
 * lose the cold tier's last deletes: docs/COLD_TIER.md). */
static vkv_client *worker_reconnect(const vkvt_daemon *d, const struct ctl *c, vkv_fetch **pin)
{
    vkv_client *w;
    assert_int_equal(connect_shm(d, "ham", true, 5000, &w), 0);
    vkv_shape s = vkvt_small_shape(4, 56);
    vkv_key k[NSTABLE > NDEAD ? NSTABLE : NDEAD];
    size_t nd = 0;
    for (int i = 0; i < NDEAD; i++)
        if (atomic_load(&c->dead[i]))
            k[nd++] = vkvt_key(SEED, K_DEAD + (uint32_t)i);
    assert_int_equal(vkv_delete(w, k, nd, &nd), 0);
    for (int i = 0; i < NSTABLE; i++) {
        k[i] = vkvt_key(SEED, K_STABLE + (uint32_t)i);
        size_t h = 0;
        assert_int_equal(vkv_lookup(w, &k[i], 1, &h, NULL), 0);
        if (h == 0)
            assert_int_equal(vkvt_put_range(w, &s, SEED, K_STABLE + i, K_STABLE + i + 1), 0);
    }
    assert_int_equal(vkv_fetch_begin(w, k, NSTABLE, pin), 0); /* restores cold ones */
    assert_int_equal(vkv_fetch_count(*pin), NSTABLE);
    return w;
}

static void readers_during_churn_and_restarts(void **state)
{
    (void)state;
    int cfd = memfd_create("lookup-shm-test", 0); /* inherited by the readers */
    assert_true(cfd >= 0);
    assert_int_equal(ftruncate(cfd, sizeof(struct ctl)), 0);
    struct ctl *c = mmap(NULL, sizeof *c, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
    assert_true(c != MAP_FAILED);
    memset(c, 0, sizeof *c);
    vkvt_daemon d;
    assert_int_equal(vkvt_prepare(&d), 0);
    assert_int_equal(vkvt_start(&d, g_flags), 0);
    vkv_client *w;
    assert_int_equal(connect_shm(&d, "ham", true, 5000, &w), 0);
    vkv_shape s = vkvt_small_shape(4, 56);
    assert_int_equal(vkvt_put_range(w, &s, SEED, K_STABLE, K_STABLE + NSTABLE), 0);
    assert_int_equal(vkvt_put_range(w, &s, SEED, K_DEAD, K_DEAD + NDEAD), 0);
    vkv_key stable[NSTABLE];
    for (int i = 0; i < NSTABLE; i++)
        stable[i] = vkvt_key(SEED, K_STABLE + (uint32_t)i);
    vkv_fetch *pin;
    assert_int_equal(vkv_fetch_begin(w, stable, NSTABLE, &pin), 0);
    assert_int_equal(vkv_fetch_count(pin), NSTABLE);
    fflush(NULL);
    pid_t kids[NREADERS];
    for (int i = 0; i < NREADERS; i++) {
        char fds[16], mes[16];
        snprintf(fds, sizeof fds, "%d", cfd);
        snprintf(mes, sizeof mes, "%d", i);
        kids[i] = fork();
        assert_true(kids[i] >= 0);
        if (kids[i] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test leaves no reader behind */
            execl("/proc/self/exe", "lookup_shm_reader", "--reader", d.rundir, fds, mes,
                  (char *)NULL);
            _exit(127);
        }
    }
    uint64_t seed = 3, restores = 0, flushes = 0;
    int next_dead = 0;
    for (int round = 0; round < 10; round++) {
        /* puts past the 64-page arena: evictions to the cold tier */
        int from = (int)(rnd(&seed) % (NCHURN - 40));
        int prc = vkvt_put_range(w, &s, SEED, K_CHURN + from, K_CHURN + from + 40);
        if (prc != 0 && prc != VKV_EEXIST)
            fail_msg("round %d: put_range: %s", round, vkv_strerror(prc));
        /* restores of churned keys, deletes of some */
        for (int t = 0; t < 10; t++) {
            vkv_key q[4];
            uint32_t st = (uint32_t)(rnd(&seed) % (NCHURN - 4));
            for (int j = 0; j < 4; j++)
                q[j] = vkvt_key(SEED, K_CHURN + st + (uint32_t)j);
            size_t h = 0, cold = 0;
            assert_int_equal(vkv_lookup(w, q, 4, &h, &cold), 0);
            vkv_fetch *f;
            if (cold > 0 && vkv_fetch_begin(w, q, 4, &f) == 0) {
                restores += cold;
                vkv_fetch_release(w, f);
            }
            if (t % 3 == 0) {
                size_t nd;
                assert_int_equal(vkv_delete(w, q, 2, &nd), 0);
            }
        }
        /* dead keys go one by one; a reader that sees the mark must miss */
        for (int j = 0; j < 5 && next_dead < NDEAD; j++, next_dead++) {
            vkv_key k = vkvt_key(SEED, K_DEAD + (uint32_t)next_dead);
            size_t nd = 0;
            assert_int_equal(vkv_delete(w, &k, 1, &nd), 0);
            assert_true(nd <= 1); /* 0: the cache forgot it (a drop, a SIGKILL) */
            atomic_store(&c->dead[next_dead], 1);
        }
        if (round % 3 == 1 && flush_all(w) != UINT64_MAX)
            flushes++;
        if (round == 3 || round == 6) {
            /* restart: SIGTERM (clean, spills), then SIGKILL */
            atomic_fetch_add(&c->grace, 1);
            vkv_fetch_release(w, pin);
            vkv_close(w);
            int sig = round == 3 ? SIGTERM : SIGKILL;
            int st = vkvt_stop(&d, sig);
            assert_int_equal(st, sig == SIGTERM ? 0 : 128 + SIGKILL);
            assert_int_equal(vkvt_start(&d, g_flags), 0);
            w = worker_reconnect(&d, c, &pin);
            atomic_fetch_add(&c->grace, 1);
        }
        vkv_fetch_renew(w, pin);
    }
    /* the readers answer from shared memory: over a window, the daemon's
     * LOOKUP count grows by less than the lookups the readers made */
    uint64_t l0 = stat_of(w, "lookups"), r0 = 0, r1 = 0;
    for (int i = 0; i < NREADERS; i++)
        r0 += atomic_load(&c->r[i].lookups);
    vkvt_sleep_ms(500);
    uint64_t l1 = stat_of(w, "lookups");
    for (int i = 0; i < NREADERS; i++)
        r1 += atomic_load(&c->r[i].lookups);
    atomic_store(&c->stop, 1);
    for (int i = 0; i < NREADERS; i++) {
        int ws = 0;
        assert_int_equal(waitpid(kids[i], &ws, 0), kids[i]);
        assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    }
    uint64_t total = 0, ok = 0, errs = 0;
    for (int i = 0; i < NREADERS; i++) {
        total += c->r[i].lookups;
        ok += c->r[i].ok;
        errs += c->r[i].errors;
        assert_int_equal(c->r[i].insane, 0);
        assert_int_equal(c->r[i].false_dead, 0);
        assert_int_equal(c->r[i].false_never, 0);
        assert_int_equal(c->r[i].stable_miss, 0);
    }
    print_message("%llu lookups by %d readers (%llu answered, %llu errors around restarts); "
                  "window: %llu reader lookups, %llu by the daemon; %llu restored, %llu flushes\n",
                  (unsigned long long)total, NREADERS, (unsigned long long)ok,
                  (unsigned long long)errs, (unsigned long long)(r1 - r0),
                  (unsigned long long)(l1 - l0), (unsigned long long)restores,
                  (unsigned long long)flushes);
    assert_true(r1 - r0 > l1 - l0);
    assert_true(stat_of(w, "spills") > 0);
    assert_true(next_dead == NDEAD);
    vkv_fetch_release(w, pin);
    vkv_close(w);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    vkvt_cleanup(&d);
    munmap(c, sizeof *c);
    close(cfd);
}

/* Without the segment every LOOKUP is a round trip, with the same answers. */
static void no_segment_means_round_trips(void **state)
{
    (void)state;
    static const char *const flags[] = {"--capacity",           "4M",  "--slab-size", "1M",
                                        "--page-size",          "64K", "--cold-max",  "0",
                                        "--lookup-index-slots", "0",   NULL};
    vkvt_daemon d;
    assert_int_equal(vkvt_prepare(&d), 0);
    assert_int_equal(vkvt_start(&d, flags), 0);
    vkv_client *a;
    assert_int_equal(connect_shm(&d, "none", true, 5000, &a), 0);
    vkv_shape s = vkvt_small_shape(4, 56);
    assert_int_equal(vkvt_put_range(a, &s, SEED, 0, 5), 0);
    vkv_key keys[6];
    for (int i = 0; i < 6; i++)
        keys[i] = vkvt_key(SEED, (uint32_t)i);
    uint64_t before = stat_of(a, "lookups");
    for (int t = 0; t < 50; t++) {
        size_t h = 0;
        assert_int_equal(vkv_lookup(a, keys, 6, &h, NULL), 0);
        assert_int_equal(h, 5);
    }
    assert_int_equal(stat_of(a, "lookups") - before, 50);
    assert_int_equal(stat_of(a, "lookup_index_live"), UINT64_MAX); /* no such counter */
    vkv_close(a);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    vkvt_cleanup(&d);
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--reader") == 0) {
        vkvt_daemon d;
        memset(&d, 0, sizeof d);
        snprintf(d.rundir, sizeof d.rundir, "%s", argv[2]);
        void *m =
            mmap(NULL, sizeof(struct ctl), PROT_READ | PROT_WRITE, MAP_SHARED, atoi(argv[3]), 0);
        if (m == MAP_FAILED)
            return 3;
        reader_main(&d, m, atoi(argv[4]));
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(equal_to_round_trip_on_a_quiescent_daemon),
        cmocka_unit_test(readers_during_churn_and_restarts),
        cmocka_unit_test(no_segment_means_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
