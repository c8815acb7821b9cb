/*
 * tests/store/store_shmidx_test.c - the lookup index segment: its writer
 * (store/shmidx_writer.h) and reader (proto/shmidx.h).
 *
 *  - the reader answers what the writer published (a model over random
 *    changes, several namespaces, a full table, rebuilds);
 *  - the store's observer keeps the mirror equal to vkvs_lookup through
 *    every kind of store change (commit, abort, pins, delete while pinned,
 *    eviction to cold and for room, spills reading the arena in place
 *    (SPILLING, reverted or done), restores, cold-tier notices, expiry,
 *    reaping);
 *  - reader processes hammering the segment while the writer changes it see
 *    no torn slot, no hit for a key deleted before they looked, no miss of
 *    a key that never changes;
 *  - a writer that dies (SIGKILL) or closes, or cannot publish a change for
 *    want of memory, leaves readers asking the daemon;
 *  - the reader refuses fds that are not a sealed segment of its epoch.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "proto/shmidx.h"
#include "store/shmidx_writer.h"
#include "store_test_util.h"
#include "vkv/error.h"

#define EPOCH 0x1234abcdull

/* splitmix64: the tests' deterministic random numbers. */
static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Opens a writer of `nslots` and a reader of namespace `ns` on it. */
static void open_pair(uint32_t nslots, uint32_t ns_max, const char *ns, vkvs_shmidx **w,
                      vkvp_shmidx_reader **r)
{
    assert_int_equal(vkvs_shmidx_open(nslots, ns_max, EPOCH, w), 0);
    vkvs_shmidx_set_open(*w, true);
    assert_int_equal(
        vkvp_shmidx_reader_open(vkvs_shmidx_fd(*w), vkvs_shmidx_seg_size(*w), EPOCH, ns, r), 0);
}

/* ---- the reader answers what the writer published ------------------------- */

#define MODEL_KEYS 2000

/* Checks every key of namespace `nsi` against model[]; returns how many
 * were checked (all of them). */
static void check_model(vkvp_shmidx_reader *r, const int *model)
{
    for (uint32_t i = 0; i < MODEL_KEYS; i++) {
        vkv_key k = tkey(i);
        int s = -1;
        assert_int_equal(vkvp_shmidx_get(r, &k, &s, NULL), 0);
        if (s != model[i])
            fail_msg("key %u: published %d, model %d", i, s, model[i]);
    }
}

/* Random changes of two namespaces against a model, enough of them to make
 * the writer rebuild; prefix lookups follow LOOKUP's rules. */
static void test_model(void **state)
{
    (void)state;
    vkvs_shmidx *w;
    vkvp_shmidx_reader *ra, *rb, *rc;
    open_pair(4096, 8, "ns-a", &w, &ra);
    assert_int_equal(
        vkvp_shmidx_reader_open(vkvs_shmidx_fd(w), vkvs_shmidx_seg_size(w), EPOCH, "ns-b", &rb), 0);
    assert_int_equal(
        vkvp_shmidx_reader_open(vkvs_shmidx_fd(w), vkvs_shmidx_seg_size(w), EPOCH, "ns-c", &rc), 0);
    static int ma[MODEL_KEYS], mb[MODEL_KEYS];
    memset(ma, 0, sizeof ma);
    memset(mb, 0, sizeof mb);
    uint64_t seed = 7;
    static const int states[] = {0, 0, 0, VKVP_SHMIDX_READY, VKVP_SHMIDX_READY, VKVP_SHMIDX_COLD};
    for (int round = 0; round < 40; round++) {
        for (int op = 0; op < 2000; op++) {
            uint64_t x = rnd(&seed);
            bool b = x & 1;
            uint32_t i = (uint32_t)(x >> 8) % MODEL_KEYS;
            int now = (x >> 40) % 13 == 0 ? VKVP_SHMIDX_RESTORING : states[(x >> 40) % 6];
            int *m = b ? mb : ma;
            vkv_key k = tkey(i);
            vkvs_shmidx_change(w, b ? 5 : 2, b ? "ns-b" : "ns-a", &k, m[i], now);
            m[i] = now;
        }
        check_model(ra, ma);
        check_model(rb, mb);
        /* prefix lookups: longest prefix of present keys, cold = not READY */
        for (int t = 0; t < 200; t++) {
            vkv_key keys[16];
            size_t n = rnd(&seed) % 16, want = 0, wcold = 0, hits = 99, cold = 99;
            bool open = true;
            for (size_t j = 0; j < n; j++) {
                uint32_t i = (uint32_t)(rnd(&seed) % MODEL_KEYS);
                keys[j] = tkey(i);
                if (open && ma[i] != 0) {
                    want++;
                    wcold += ma[i] != VKVP_SHMIDX_READY;
                } else {
                    open = false;
                }
            }
            assert_int_equal(vkvp_shmidx_lookup(ra, keys, n, &hits, &cold), 0);
            assert_int_equal(hits, want);
            assert_int_equal(cold, wcold);
        }
        /* a namespace never published: everything misses */
        vkv_key k = tkey(1);
        size_t hits = 9;
        assert_int_equal(vkvp_shmidx_lookup(rc, &k, 1, &hits, NULL), 0);
        assert_int_equal(hits, 0);
    }
    vkvs_shmidx_stats s;
    vkvs_shmidx_stats_get(w, &s);
    assert_true(s.rebuilds > 0); /* tombstones were purged under readers */
    assert_int_equal(s.unpublished, 0);
    vkvp_shmidx_reader_close(ra);
    vkvp_shmidx_reader_close(rb);
    vkvp_shmidx_reader_close(rc);
    vkvs_shmidx_close(w);
}

/* A full table: entries it cannot take make every reader ask the daemon
 * until they are gone (or have been placed after room was made). */
static void test_full(void **state)
{
    (void)state;
    vkvs_shmidx *w;
    vkvp_shmidx_reader *r;
    open_pair(64, 4, "ns", &w, &r); /* room for 48 */
    vkv_key k;
    size_t hits;
    for (uint32_t i = 0; i < 50; i++) {
        k = tkey(i);
        vkvs_shmidx_change(w, 0, "ns", &k, 0, VKVP_SHMIDX_READY);
    }
    vkvs_shmidx_stats s;
    vkvs_shmidx_stats_get(w, &s);
    assert_int_equal(s.live, 48);
    assert_int_equal(s.unpublished, 2);
    k = tkey(0);
    assert_int_equal(vkvp_shmidx_lookup(r, &k, 1, &hits, NULL), VKV_EBUSY);
    /* removing one unpublished key and changing the other (now placed,
     * after a published one made room) makes the table complete again */
    k = tkey(49);
    vkvs_shmidx_change(w, 0, "ns", &k, VKVP_SHMIDX_READY, 0);
    assert_int_equal(vkvp_shmidx_lookup(r, &k, 1, &hits, NULL), VKV_EBUSY);
    for (uint32_t i = 0; i < 8; i++) {
        k = tkey(i);
        vkvs_shmidx_change(w, 0, "ns", &k, VKVP_SHMIDX_READY, 0);
    }
    k = tkey(48);
    vkvs_shmidx_change(w, 0, "ns", &k, VKVP_SHMIDX_READY, VKVP_SHMIDX_COLD);
    vkvs_shmidx_stats_get(w, &s);
    assert_int_equal(s.unpublished, 0);
    int st = 0;
    assert_int_equal(vkvp_shmidx_get(r, &k, &st, NULL), 0);
    assert_int_equal(st, VKVP_SHMIDX_COLD);
    k = tkey(0);
    assert_int_equal(vkvp_shmidx_get(r, &k, &st, NULL), 0);
    assert_int_equal(st, 0);
    /* a closed segment never answers */
    vkvs_shmidx_set_open(w, false);
    assert_int_equal(vkvp_shmidx_lookup(r, &k, 1, &hits, NULL), VKV_EBUSY);
    vkvs_shmidx_set_open(w, true);
    assert_int_equal(vkvp_shmidx_lookup(r, &k, 1, &hits, NULL), 0);
    vkvp_shmidx_reader_close(r);
    vkvs_shmidx_close(w);
}

/* A namespace table that is full: readers of the namespaces left out ask the
 * daemon, the others still answer. */
static void test_ns_full(void **state)
{
    (void)state;
    vkvs_shmidx *w;
    vkvp_shmidx_reader *r1, *r3;
    open_pair(256, 2, "n1", &w, &r1);
    assert_int_equal(
        vkvp_shmidx_reader_open(vkvs_shmidx_fd(w), vkvs_shmidx_seg_size(w), EPOCH, "n3", &r3), 0);
    vkv_key k = tkey(3);
    vkvs_shmidx_change(w, 10, "n1", &k, 0, VKVP_SHMIDX_READY);
    vkvs_shmidx_change(w, 11, "n2", &k, 0, VKVP_SHMIDX_READY);
    vkvs_shmidx_change(w, 12, "n3", &k, 0, VKVP_SHMIDX_READY); /* no room for n3 */
    size_t hits = 0;
    assert_int_equal(vkvp_shmidx_lookup(r1, &k, 1, &hits, NULL), 0);
    assert_int_equal(hits, 1);
    assert_int_equal(vkvp_shmidx_lookup(r3, &k, 1, &hits, NULL), VKV_EBUSY);
    vkvp_shmidx_reader_close(r1);
    vkvp_shmidx_reader_close(r3);
    vkvs_shmidx_close(w);
}

/* realloc, linked with -Wl,--wrap=realloc: fails once when armed. */
void *__real_realloc(void *p, size_t n);
void *__wrap_realloc(void *p, size_t n);
static int fail_next_realloc;
void *__wrap_realloc(void *p, size_t n)
{
    if (fail_next_realloc) {
        fail_next_realloc = 0;
        return NULL;
    }
    return __real_realloc(p, n);
}

/* A change the writer cannot publish for want of memory (a new namespace's
 * map) marks the segment broken: the reader never answers from it again
 * (VKV_EBUSY: ask the daemon), instead of reporting the key absent for
 * good. */
static void test_oom_marks_broken(void **state)
{
    (void)state;
    vkvs_shmidx *w;
    vkvp_shmidx_reader *r;
    open_pair(256, 4, "ns", &w, &r);
    vkv_key k1 = tkey(1), k2 = tkey(2), keys[2] = {k2, k1};
    size_t hits = 0;
    fail_next_realloc = 1;
    vkvs_shmidx_change(w, 0, "ns", &k1, 0, VKVP_SHMIDX_READY);
    assert_int_equal(fail_next_realloc, 0); /* the namespace map did grow here */
    vkvs_shmidx_change(w, 0, "ns", &k2, 0, VKVP_SHMIDX_READY);
    assert_int_equal(vkvp_shmidx_lookup(r, keys, 2, &hits, NULL), VKV_EBUSY);
    assert_int_equal(vkvp_shmidx_lookup(r, &k2, 1, &hits, NULL), VKV_EBUSY);
    vkvp_shmidx_reader_close(r);
    vkvs_shmidx_close(w);
}

/* ---- the store's observer keeps the mirror equal to vkvs_lookup ------------ */

#define MKEYS 160

/* The cold tier the store sees: every spill succeeds; every other one that
 * may hold its pages reads them in place (SPILLING until vkvs_spill_done). */
static int spill_ok(void *arg, vkvs_store *st, const vkvs_victim *v)
{
    int *n = arg;
    (void)st;
    return v->may_hold && (++*n & 1) ? VKVS_SPILL_HELD : 0;
}

/* The observer: forwards to the writer. */
static void observe_fw(void *arg, uint32_t ns_id, const char *ns, const vkv_key *key, int was,
                       int now)
{
    vkvs_shmidx_change(arg, ns_id, ns, key, was, now);
}

/* Every key of session sid (namespace of reader r): the segment answers as
 * vkvs_lookup (per key, with the exact state from vkvs_info_get), and random
 * prefixes the same as vkvs_lookup. */
static void check_mirror(vkvs_store *st, uint64_t sid, vkvp_shmidx_reader *r, uint64_t *seed)
{
    for (uint32_t i = 0; i < MKEYS; i++) {
        vkv_key k = tkey(i);
        size_t p = 0, c = 0;
        assert_int_equal(vkvs_lookup(st, sid, &k, 1, &p, &c), 0);
        vkvs_info in;
        int want = vkvs_info_get(st, sid, NULL, &k, &in) == 0 ? (int)in.state : 0;
        assert_int_equal(want != 0, p);
        int got = -1;
        assert_int_equal(vkvp_shmidx_get(r, &k, &got, NULL), 0);
        if (got != want)
            fail_msg("key %u: segment says %d, store %d", i, got, want);
    }
    for (int t = 0; t < 50; t++) {
        vkv_key keys[12];
        size_t n = rnd(seed) % 12, p, c, h, hc;
        for (size_t j = 0; j < n; j++)
            keys[j] = tkey((uint32_t)(rnd(seed) % 24)); /* small range: long prefixes */
        assert_int_equal(vkvs_lookup(st, sid, keys, n, &p, &c), 0);
        assert_int_equal(vkvp_shmidx_lookup(r, keys, n, &h, &hc), 0);
        assert_int_equal(h, p);
        assert_int_equal(hc, c);
    }
}

/* One random store operation of session s (one of two namespaces). */
static void store_op(vkvs_store *st, uint64_t *sid, const char *const *nsn, uint64_t *seed,
                     uint64_t (*leases)[8])
{
    uint64_t x = rnd(seed);
    int s = (int)(x & 1);
    vkv_key k = tkey((uint32_t)((x >> 8) % MKEYS));
    if ((x >> 16) % 4 == 0)
        k = tkey((uint32_t)((x >> 8) % 24));
    uint64_t lease;
    vkvs_block b;
    size_t n;
    uint64_t *ls = leases[s];
    int slot = (int)((x >> 24) % 8);
    switch ((x >> 32) % 16) {
    case 0:
    case 1:
    case 2: /* put */
        if (vkvs_alloc(st, sid[s], &k, 4096 * (1 + (x >> 40) % 3), &lease, &b) == 0)
            vkvs_commit(st, sid[s], lease, NULL, NULL);
        break;
    case 3: /* abort */
        if (vkvs_alloc(st, sid[s], &k, 4096, &lease, &b) == 0)
            vkvs_abort(st, sid[s], lease);
        break;
    case 4: /* alloc left open (may expire: quarantine) */
        if (ls[slot] == 0 && vkvs_alloc(st, sid[s], &k, 4096, &lease, &b) == 0)
            ls[slot] = lease;
        break;
    case 5: { /* pin */
        vkvs_fetch_result res;
        vkvs_block blk[4];
        vkv_key keys[4] = {k, tkey(1), tkey(2), tkey(3)};
        if (ls[slot] == 0 && vkvs_fetch(st, sid[s], keys, 4, blk, &res) == 0 && res.lease)
            ls[slot] = res.lease;
        break;
    }
    case 6: /* release / commit a held lease */
        if (ls[slot]) {
            if (vkvs_commit(st, sid[s], ls[slot], NULL, NULL) != 0)
                vkvs_release(st, sid[s], &ls[slot], 1, NULL);
            ls[slot] = 0;
        }
        break;
    case 7:
    case 8: /* delete (pinned ones become delete-pending) */
        vkvs_delete(st, sid[s], NULL, &k, 1, &n);
        break;
    case 9: /* evict to cold or drop */
        vkvs_evict(st, sid[s], NULL, &k, 1, (x >> 40) & 1, &n);
        break;
    case 10: { /* restore, ending now or later, ok or failed */
        if (vkvs_restore_begin(st, nsn[s], &k, &b) == 0 && (x >> 40) % 3 != 0)
            vkvs_restore_end(st, nsn[s], &k, (x >> 44) & 1 ? 0 : VKV_EIO);
        break;
    }
    case 11: /* finish any restore of this key */
        vkvs_restore_end(st, nsn[s], &k, (x >> 40) & 1 ? 0 : VKV_EIO);
        break;
    case 12: /* the cold tier lost its copy / dropped it / ended a spill */
        if ((x >> 40) % 3 == 2)
            vkvs_spill_done(st, nsn[s], &k, (x >> 44) & 1 ? 0 : VKV_EIO);
        else if ((x >> 40) & 1)
            vkvs_cold_copy_gone(st, nsn[s], &k);
        else
            vkvs_forget_cold(st, nsn[s], &k);
        break;
    case 13: /* cold entries indexed at start-up */
        vkvs_add_cold(st, nsn[s], &k, 4096, 1);
        break;
    case 14: /* time passes: leases expire (quarantine), sessions end */
        fake_now_ms += 20000;
        vkvs_reap(st, fake_now_ms, NULL, NULL);
        for (int j = 0; j < 2; j++)
            vkvs_session_touch(st, sid[j]);
        break;
    case 15: /* flush or a session closing with its leases */
        if ((x >> 40) % 4 == 0) {
            vkvs_session_close(st, sid[s]);
            assert_int_equal(vkvs_session_open(st, nsn[s], getpid(), false, &sid[s]), 0);
            memset(ls, 0, sizeof leases[s]);
        } else {
            vkvs_evict(st, sid[s], NULL, NULL, 0, true, &n);
        }
        break;
    }
}

static void test_store_mirror(void **state)
{
    (void)state;
    vkvs_config cfg = small_config(1, 64, VKVS_POLICY_S3FIFO);
    vkvs_store *st;
    assert_int_equal(vkvs_open(&cfg, &st), 0);
    vkvs_shmidx *w;
    vkvp_shmidx_reader *r[2];
    static const char *const nsn[2] = {"model-a#spec", "model-b#spec"};
    open_pair(1024, 16, nsn[0], &w, &r[0]);
    assert_int_equal(
        vkvp_shmidx_reader_open(vkvs_shmidx_fd(w), vkvs_shmidx_seg_size(w), EPOCH, nsn[1], &r[1]),
        0);
    int nspills = 0;
    vkvs_hooks h = {spill_ok, NULL, &nspills};
    vkvs_set_hooks(st, &h);
    vkvs_set_room_wait(st, true);
    vkvs_set_observer(st, observe_fw, w);
    uint64_t sid[2], seed = 11, leases[2][8];
    memset(leases, 0, sizeof leases);
    for (int s = 0; s < 2; s++)
        assert_int_equal(vkvs_session_open(st, nsn[s], getpid(), false, &sid[s]), 0);
    for (int round = 0; round < 300; round++) {
        for (int i = 0; i < 40; i++)
            store_op(st, sid, nsn, &seed, leases);
        for (int s = 0; s < 2; s++)
            check_mirror(st, sid[s], r[s], &seed);
    }
    vkvs_stats ss;
    vkvs_stats_get(st, &ss);
    /* the run went through what it is meant to cover */
    assert_true(ss.spills > 0 && ss.restores > 0 && ss.deletes > 0 && ss.aborts > 0);
    assert_true(ss.leases_expired > 0 && ss.evictions > ss.spills);
    assert_true(ss.spills_held > 0 && ss.spills_reverted > 0);
    vkvs_close(st);
    vkvp_shmidx_reader_close(r[0]);
    vkvp_shmidx_reader_close(r[1]);
    vkvs_shmidx_close(w);
}

/* ---- readers in other processes, hammering ---------------------------------- */

#define HK_STABLE 256  /* keys 0..255: published once, never changed */
#define HK_CHURN  1024 /* keys 256..1279: inserted, changed, removed */
#define HK_DEAD   512  /* keys 1280..1791: published, then removed for good */
#define HK_NEVER  256  /* keys 1792..2047: never published */
#define HK_ALL    (HK_STABLE + HK_CHURN + HK_DEAD + HK_NEVER)
#define READERS   3

/* What reader processes report (shared anonymous memory). */
struct hctl {
    _Atomic int stop;
    _Atomic uint8_t dead[HK_ALL]; /* 1 once the writer removed the key for good */
    struct {
        _Atomic uint64_t checks, busy, torn, false_hits, stable_miss, gen_back, prefix_bad;
    } r[READERS];
};

/* The only state fixed-state key i ever has; cycling keys (churn keys
 * divisible by 4) go COLD -> RESTORING -> READY -> COLD. */
static int derived_state(uint32_t i)
{
    static const int s[3] = {VKVP_SHMIDX_READY, VKVP_SHMIDX_COLD, VKVP_SHMIDX_RESTORING};
    return s[(i * 2654435761u >> 7) % 3];
}

static bool cycling(uint32_t i)
{
    return i >= HK_STABLE && i < HK_STABLE + HK_CHURN && i % 4 == 0;
}

/* Reader process body: random single-key reads and prefix reads of stable
 * keys until told to stop. */
static void hammer_reader(int fd, uint64_t size, struct hctl *c, int me)
{
    vkvp_shmidx_reader *r;
    if (vkvp_shmidx_reader_open(fd, size, EPOCH, "ham", &r) != 0)
        _exit(3);
    static uint64_t last_gen[HK_ALL];
    uint64_t seed = 1000 + (uint64_t)me;
    vkv_key pk[8];
    size_t pcold = 0;
    for (int j = 0; j < 8; j++) {
        pk[j] = tkey((uint32_t)j * 31);
        pcold += derived_state((uint32_t)j * 31) != VKVP_SHMIDX_READY;
    }
    while (!atomic_load(&c->stop)) {
        uint32_t i = (uint32_t)(rnd(&seed) % HK_ALL);
        vkv_key k = tkey(i);
        uint8_t dead = atomic_load_explicit(&c->dead[i], memory_order_acquire);
        int s = -1;
        uint64_t g = 0;
        atomic_fetch_add(&c->r[me].checks, 1);
        if (vkvp_shmidx_get(r, &k, &s, &g) != 0) {
            atomic_fetch_add(&c->r[me].busy, 1);
            continue;
        }
        bool never = i >= HK_STABLE + HK_CHURN + HK_DEAD;
        if (s != 0 && (dead || never))
            atomic_fetch_add(&c->r[me].false_hits, 1);
        if (i < HK_STABLE && s == 0)
            atomic_fetch_add(&c->r[me].stable_miss, 1);
        if (s != 0) {
            bool ok = cycling(i) ? (s == VKVP_SHMIDX_READY || s == VKVP_SHMIDX_COLD ||
                                    s == VKVP_SHMIDX_RESTORING)
                                 : s == derived_state(i);
            if (!ok)
                atomic_fetch_add(&c->r[me].torn, 1);
            if (g < last_gen[i])
                atomic_fetch_add(&c->r[me].gen_back, 1);
            last_gen[i] = g;
        }
        if (i % 16 == 0) {
            size_t h = 0, hc = 0;
            if (vkvp_shmidx_lookup(r, pk, 8, &h, &hc) == 0 && (h != 8 || hc != pcold))
                atomic_fetch_add(&c->r[me].prefix_bad, 1);
        }
    }
    vkvp_shmidx_reader_close(r);
    _exit(0);
}

static void test_hammer(void **state)
{
    (void)state;
    struct hctl *c =
        mmap(NULL, sizeof *c, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(c != MAP_FAILED);
    memset(c, 0, sizeof *c);
    vkvs_shmidx *w;
    assert_int_equal(vkvs_shmidx_open(2048, 4, EPOCH, &w), 0);
    int cur[HK_ALL];
    memset(cur, 0, sizeof cur);
    for (uint32_t i = 0; i < HK_STABLE + HK_CHURN + HK_DEAD; i++) {
        if (i >= HK_STABLE && i < HK_STABLE + HK_CHURN)
            continue;
        vkv_key k = tkey(i);
        vkvs_shmidx_change(w, 0, "ham", &k, 0, derived_state(i));
        cur[i] = derived_state(i);
    }
    vkvs_shmidx_set_open(w, true);
    pid_t kids[READERS];
    for (int i = 0; i < READERS; i++) {
        kids[i] = fork();
        assert_true(kids[i] >= 0);
        if (kids[i] == 0)
            hammer_reader(vkvs_shmidx_fd(w), vkvs_shmidx_seg_size(w), c, i);
    }
    uint64_t seed = 5, ops = 0;
    uint32_t next_dead = HK_STABLE + HK_CHURN;
    for (;;) {
        bool enough = ops >= 400000;
        for (int i = 0; i < READERS; i++)
            enough = enough && atomic_load(&c->r[i].checks) >= 100000;
        if (enough && next_dead == HK_STABLE + HK_CHURN + HK_DEAD)
            break;
        uint64_t x = rnd(&seed);
        uint32_t i = HK_STABLE + (uint32_t)(x % HK_CHURN);
        vkv_key k = tkey(i);
        int now;
        if (cur[i] == 0)
            now = (x >> 32) % 2 ? 0 : cycling(i) ? VKVP_SHMIDX_COLD : derived_state(i);
        else if ((x >> 32) % 2 == 0)
            now = 0;
        else if (cycling(i))
            now = cur[i] == VKVP_SHMIDX_COLD        ? VKVP_SHMIDX_RESTORING
                  : cur[i] == VKVP_SHMIDX_RESTORING ? VKVP_SHMIDX_READY
                                                    : VKVP_SHMIDX_COLD;
        else
            now = cur[i];
        vkvs_shmidx_change(w, 0, "ham", &k, cur[i], now);
        cur[i] = now;
        ops++;
        if (ops % 512 == 0 && next_dead < HK_STABLE + HK_CHURN + HK_DEAD && ops > 20000) {
            vkv_key kd = tkey(next_dead);
            vkvs_shmidx_change(w, 0, "ham", &kd, cur[next_dead], 0);
            cur[next_dead] = 0;
            atomic_store_explicit(&c->dead[next_dead], 1, memory_order_release);
            next_dead++;
        }
    }
    atomic_store(&c->stop, 1);
    for (int i = 0; i < READERS; i++) {
        int ws = 0;
        assert_int_equal(waitpid(kids[i], &ws, 0), kids[i]);
        assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    }
    vkvs_shmidx_stats s;
    vkvs_shmidx_stats_get(w, &s);
    uint64_t checks = 0, busy = 0;
    for (int i = 0; i < READERS; i++) {
        checks += c->r[i].checks;
        busy += c->r[i].busy;
        assert_int_equal(c->r[i].torn, 0);
        assert_int_equal(c->r[i].false_hits, 0);
        assert_int_equal(c->r[i].stable_miss, 0);
        assert_int_equal(c->r[i].gen_back, 0);
        assert_int_equal(c->r[i].prefix_bad, 0);
    }
    print_message("%llu reads in %d processes (%llu asked the daemon), %llu changes, %llu "
                  "rebuilds\n",
                  (unsigned long long)checks, READERS, (unsigned long long)busy,
                  (unsigned long long)s.changes, (unsigned long long)s.rebuilds);
    assert_true(s.rebuilds > 0);
    assert_true(busy < checks); /* the segment answered */
    vkvs_shmidx_close(w);
    munmap(c, sizeof *c);
}

/* ---- the writer's end ------------------------------------------------------ */

/* A writer process killed with SIGKILL: the kernel marks its liveness mutex
 * and readers stop answering; one that closes the segment likewise. */
static void test_writer_death(void **state)
{
    (void)state;
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        vkvs_shmidx *w;
        if (vkvs_shmidx_open(128, 4, EPOCH, &w) != 0)
            _exit(3);
        vkv_key k = tkey(1);
        vkvs_shmidx_change(w, 0, "ns", &k, 0, VKVP_SHMIDX_READY);
        vkvs_shmidx_set_open(w, true);
        int info[2] = {vkvs_shmidx_fd(w), (int)vkvs_shmidx_seg_size(w)};
        if (write(pfd[1], info, sizeof info) != (ssize_t)sizeof info)
            _exit(4);
        for (;;)
            pause();
    }
    int info[2];
    assert_int_equal(read(pfd[0], info, sizeof info), (ssize_t)sizeof info);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)kid, info[0]);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    vkvp_shmidx_reader *r;
    assert_int_equal(vkvp_shmidx_reader_open(fd, (uint64_t)info[1], EPOCH, "ns", &r), 0);
    close(fd);
    vkv_key k = tkey(1);
    size_t hits = 0;
    assert_true(vkvp_shmidx_reader_live(r));
    assert_int_equal(vkvp_shmidx_lookup(r, &k, 1, &hits, NULL), 0);
    assert_int_equal(hits, 1);
    kill(kid, SIGKILL);
    int ws;
    assert_int_equal(waitpid(kid, &ws, 0), kid);
    assert_false(vkvp_shmidx_reader_live(r));
    assert_int_equal(vkvp_shmidx_lookup(r, &k, 1, &hits, NULL), VKV_EBUSY);
    vkvp_shmidx_reader_close(r);
    close(pfd[0]);
    close(pfd[1]);

    /* closed by its owner */
    vkvs_shmidx *w;
    open_pair(128, 4, "ns", &w, &r);
    assert_true(vkvp_shmidx_reader_live(r));
    vkvs_shmidx_close(w);
    assert_false(vkvp_shmidx_reader_live(r));
    assert_int_equal(vkvp_shmidx_lookup(r, &k, 1, &hits, NULL), VKV_EBUSY);
    vkvp_shmidx_reader_close(r);
}

/* The reader maps only a sealed memfd segment of the expected size and epoch,
 * and cannot make it writable. */
static void test_reader_checks(void **state)
{
    (void)state;
    vkvs_shmidx *w;
    vkvp_shmidx_reader *r = NULL;
    assert_int_equal(vkvs_shmidx_open(64, 4, EPOCH, &w), 0);
    int fd = vkvs_shmidx_fd(w);
    uint64_t size = vkvs_shmidx_seg_size(w);
    assert_int_equal(vkvp_shmidx_reader_open(fd, size, EPOCH + 1, "ns", &r), VKV_ESTALE);
    assert_int_equal(vkvp_shmidx_reader_open(fd, size - 64, EPOCH, "ns", &r), VKV_EPROTO);
    /* not sealed */
    int mfd = memfd_create("t", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(mfd >= 0);
    assert_int_equal(ftruncate(mfd, (off_t)size), 0);
    assert_int_equal(vkvp_shmidx_reader_open(mfd, size, EPOCH, "ns", &r), VKV_EPROTO);
    /* sealed, right size, but no segment in it */
    assert_int_equal(fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    assert_int_equal(vkvp_shmidx_reader_open(mfd, size, EPOCH, "ns", &r), VKV_EPROTO);
    close(mfd);
    /* a pipe is no memfd */
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(vkvp_shmidx_reader_open(p[0], size, EPOCH, "ns", &r), VKV_EPROTO);
    close(p[0]);
    close(p[1]);
    assert_null(r);
    /* where the kernel has F_SEAL_FUTURE_WRITE nobody maps it writable */
    if (fcntl(fd, F_GET_SEALS) & F_SEAL_FUTURE_WRITE) {
        void *m = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        assert_true(m == MAP_FAILED);
        m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
        assert_true(m != MAP_FAILED);
        assert_int_not_equal(mprotect(m, (size_t)size, PROT_READ | PROT_WRITE), 0);
        munmap(m, (size_t)size);
    }
    vkvs_shmidx_close(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model),        cmocka_unit_test(test_full),
        cmocka_unit_test(test_ns_full),      cmocka_unit_test(test_oom_marks_broken),
        cmocka_unit_test(test_store_mirror), cmocka_unit_test(test_hammer),
        cmocka_unit_test(test_writer_death), cmocka_unit_test(test_reader_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
