/*
 * tests/integration/integration_integrity_test.c - a worker reads the block committed
 * under its key, or an error, never another key's KV. Real vkvd, real worker
 * processes, real signals, short lease TTLs:
 *   - a writer that outlives its lease cannot overwrite another key's block;
 *   - a reader that outlives its lease still sees its own block;
 *   - views and put buffers held across a daemon restart never alias the new
 *     daemon's blocks;
 *   - a block of another geometry is refused by every decoder, nothing
 *     written (ASan sees any stray byte);
 *   - a block bound to another key, or not bound, is refused at COMMIT;
 *   - a runtime dir that is not private to the user is refused;
 *   - a session whose self-reported pid is meaningless (another pid
 *     namespace) is kept while its real process lives, reaped when it dies;
 *   - CLOSE ends a session: connect/close cycles leave nothing behind.
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/client_internal.h"
#include "vkv/attend.h"
#include "harness.h"
#include "proto/proto.h"

/* 64 pages of 16 KiB, one small chunk per page; leases of 300 ms. */
static const char *const g_flags[] = {"--capacity",
                                      "1M",
                                      "--slab-size",
                                      "1M",
                                      "--page-size",
                                      "16K",
                                      "--lease-ttl-ms",
                                      "300",
                                      "--reap-interval-ms",
                                      "50",
                                      "--cold-max",
                                      "0",
                                      "--policy",
                                      "lru",
                                      NULL};
#define PAGES       64
#define TTL_WAIT_MS 600 /* past the lease TTL and a few reap rounds */

static vkv_shape shape(void)
{
    return vkvt_small_shape(0, 64); /* all visual: about 10 KiB, one page */
}

static int setup(void **state)
{
    vkvt_daemon *d = calloc(1, sizeof *d);
    if (!d || vkvt_prepare(d) != 0 || vkvt_start(d, g_flags) != 0) {
        fprintf(stderr, "cannot start vkvd\n");
        return -1;
    }
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    vkvt_daemon *d = *state;
    vkvt_stop(d, SIGTERM);
    vkvt_cleanup(d);
    free(d);
    return 0;
}

typedef int (*child_fn)(const vkvt_daemon *, uint64_t, int);

static const char *child_name(child_fn fn);

/* Runs worker `fn` (seed, n) in a new process: fork + exec of this test
 * binary (`--child NAME RUNDIR SEED N`), since nanomsg cannot be used in a
 * forked child of a process that has a client open. Returns its status. */
static pid_t spawn_child(child_fn fn, const vkvt_daemon *d, uint64_t seed, int n)
{
    char sseed[32], sn[16];
    snprintf(sseed, sizeof sseed, "%llu", (unsigned long long)seed);
    snprintf(sn, sizeof sn, "%d", n);
    pid_t p = fork();
    if (p == 0) {
        char *const argv[] = {"integrity_test",
                              "--child",
                              (char *)child_name(fn),
                              (char *)d->rundir,
                              sseed,
                              sn,
                              NULL};
        execv("/proc/self/exe", argv);
        _exit(99);
    }
    return p;
}

static int in_child(child_fn fn, const vkvt_daemon *d, uint64_t seed, int n)
{
    pid_t p = spawn_child(fn, d, seed, n);
    int st = 0;
    waitpid(p, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

/* Child: puts keys (seed, 0..n) with their own data; exit 0 when every put
 * succeeded (stored or already there). */
static int child_put(const vkvt_daemon *d, uint64_t seed, int n)
{
    vkv_client *c;
    if (vkvt_connect(d, "integrity", &c) != 0)
        return 10;
    vkv_shape s = shape();
    int rc = vkvt_put_range(c, &s, seed, 0, n);
    vkv_close(c);
    return rc ? 11 : 0;
}

/* Child: every key (seed, 0..n) is either absent or bit-identical to its own
 * data; never another key's. Exit 0, or 20 + the first bad index. */
static int child_check(const vkvt_daemon *d, uint64_t seed, int n)
{
    vkv_client *c;
    if (vkvt_connect(d, "integrity", &c) != 0)
        return 10;
    vkv_shape s = shape();
    int bad = 0;
    for (int i = 0; i < n && !bad; i++)
        if (vkvt_check_one(c, &s, seed, i) < 0)
            bad = 20 + i;
    vkv_close(c);
    return bad;
}

/* Case 1: A reserves K1 and stalls past its lease; B then fills the whole
 * arena with its own keys. Without quarantine B's last block would land in
 * A's page and A's late write would become B's block (with valid checksums).
 * Now A's page stays A's: A's late bytes reach no other key, its commit
 * fails with VKV_ELEASE, and every key B stored reads back as B's data. */
static void late_writer_never_reaches_another_key(void **state)
{
    vkvt_daemon *d = *state;
    vkv_client *a;
    assert_int_equal(vkvt_connect(d, "integrity", &a), 0);
    vkv_shape s = shape();
    size_t sz;
    void *mine = vkvt_encode_local(&s, vkv_client_codec(a), 999, &sz);
    assert_non_null(mine);
    vkv_key k1 = vkvt_key(1000, 0);
    vkv_put *p;
    assert_int_equal(vkv_put_begin(a, &k1, sz, &p), 0);
    vkvt_sleep_ms(TTL_WAIT_MS);
    assert_int_equal(in_child(child_put, d, 1100, PAGES), 0);
    memcpy(vkv_put_data(p), mine, sz); /* the late write */
    assert_int_equal(vkv_put_commit(a, p), VKV_ELEASE);
    assert_int_equal(in_child(child_check, d, 1100, PAGES), 0);
    assert_int_equal(vkvt_check_one(a, &s, 1000, 0), 0); /* K1 was never stored */
    uint64_t expired = vkvt_stat(a, "leases_expired");
    assert_true(expired >= 1 && expired != UINT64_MAX);
    free(mine);
    vkv_close(a);
}

/* Child: deletes key (seed, 0) and fills the arena with keys of seed + 1. */
static int child_delete_and_refill(const vkvt_daemon *d, uint64_t seed, int n)
{
    vkv_client *c;
    if (vkvt_connect(d, "integrity", &c) != 0)
        return 10;
    vkv_key k = vkvt_key(seed, 0);
    size_t del = 0;
    if (vkv_delete(c, &k, 1, &del) != 0 || del != 1)
        return 11;
    vkv_shape s = shape();
    int rc = vkvt_put_range(c, &s, seed + 1, 0, n);
    vkv_close(c);
    return rc ? 12 : 0;
}

/* Case 2: A fetches K1 and holds the view past its lease; K1 is deleted and
 * the arena refilled with other keys. A's view still holds K1's block (its
 * identity and bytes), decodes to K1's data, and release says the lease had
 * expired. */
static void late_reader_keeps_its_own_block(void **state)
{
    vkvt_daemon *d = *state;
    vkv_client *a;
    assert_int_equal(vkvt_connect(d, "integrity", &a), 0);
    vkv_shape s = shape();
    assert_int_equal(vkvt_put_range(a, &s, 2000, 0, 1), 0);
    vkv_key k1 = vkvt_key(2000, 0);
    vkv_fetch *f;
    assert_int_equal(vkv_fetch_begin(a, &k1, 1, &f), 0);
    assert_int_equal(vkv_fetch_count(f), 1);
    vkvt_sleep_ms(TTL_WAIT_MS);
    assert_int_equal(vkv_fetch_renew(a, f), VKV_ELEASE); /* too late to renew */
    assert_int_equal(in_child(child_delete_and_refill, d, 2000, PAGES), 0);
    size_t sz;
    void *ref = vkvt_encode_local(&s, vkv_client_codec(a), 2000, &sz);
    assert_int_equal(vkvt_bind_like(f, 0, ref, sz), 0);
    vkv_view v = vkv_fetch_view(f, 0);
    assert_int_equal(v.size, sz);
    assert_memory_equal(v.data, ref, sz);
    size_t nel = (size_t)s.tokens * s.kv_heads * s.head_dim;
    uint16_t *k[4], *vv[4];
    for (int l = 0; l < 4; l++) {
        k[l] = calloc(nel, 2);
        vv[l] = calloc(nel, 2);
    }
    vkv_kv_dst dst = {(void *const *)k, (void *const *)vv,   (size_t)s.kv_heads * s.head_dim,
                      s.head_dim,       vkv_geometry_of(&s), NULL};
    assert_int_equal(vkv_fetch_decode(f, 0, VKV_DECODE_VERIFY, &dst), VKV_OK);
    for (int l = 0; l < 4; l++) {
        free(k[l]);
        free(vv[l]);
    }
    assert_int_equal(vkv_fetch_release(a, f), VKV_ELEASE);
    assert_int_equal(in_child(child_check, d, 2001, PAGES), 0);
    free(ref);
    vkv_close(a);
}

/* Renewal keeps a lease alive across several TTLs. */
static void renewed_lease_outlives_its_ttl(void **state)
{
    vkvt_daemon *d = *state;
    vkv_client *a;
    assert_int_equal(vkvt_connect(d, "integrity", &a), 0);
    vkv_shape s = shape();
    assert_int_equal(vkvt_put_range(a, &s, 2500, 0, 1), 0);
    vkv_key k = vkvt_key(2500, 0);
    vkv_fetch *f;
    assert_int_equal(vkv_fetch_begin(a, &k, 1, &f), 0);
    for (int i = 0; i < 6; i++) {
        vkvt_sleep_ms(150);
        assert_int_equal(vkv_fetch_renew(a, f), VKV_OK);
    }
    assert_int_equal(vkv_fetch_release(a, f), VKV_OK);
    vkv_close(a);
}

/* Case 3: A holds a view of K1 and a put buffer for K9, both past their
 * leases, when vkvd restarts; in the new daemon C fills the arena. A's view
 * still shows K1's block, A's late write into its old put buffer reaches
 * none of C's blocks, and its commit reports the restart. */
static void views_across_a_restart_never_alias(void **state)
{
    vkvt_daemon *d = *state;
    vkv_client *a;
    assert_int_equal(vkvt_connect(d, "integrity", &a), 0);
    vkv_shape s = shape();
    assert_int_equal(vkvt_put_range(a, &s, 3000, 0, 1), 0);
    vkv_key k1 = vkvt_key(3000, 0), k9 = vkvt_key(3900, 0);
    vkv_fetch *f;
    assert_int_equal(vkv_fetch_begin(a, &k1, 1, &f), 0);
    size_t sz;
    void *ref = vkvt_encode_local(&s, vkv_client_codec(a), 3000, &sz);
    vkv_put *p;
    assert_int_equal(vkv_put_begin(a, &k9, sz, &p), 0);
    vkvt_sleep_ms(TTL_WAIT_MS); /* both leases expire (quarantined) before the restart */
    assert_int_equal(vkvt_stop(d, SIGTERM), 0);
    assert_int_equal(vkvt_start(d, g_flags), 0);
    assert_int_equal(in_child(child_put, d, 3100, PAGES), 0);
    void *late = vkvt_encode_local(&s, vkv_client_codec(a), 3900, &sz);
    memcpy(vkv_put_data(p), late, sz); /* a late write into the old buffer */
    free(late);
    assert_int_equal(vkv_put_commit(a, p), VKV_ESTALE);
    assert_int_equal(vkvt_bind_like(f, 0, ref, sz), 0);
    vkv_view v = vkv_fetch_view(f, 0);
    assert_memory_equal(v.data, ref, sz); /* still the old daemon's K1 */
    assert_int_equal(vkv_fetch_release(a, f), VKV_OK);
    assert_int_equal(in_child(child_check, d, 3100, PAGES), 0);
    free(ref);
    vkv_close(a);
}

/* Case 4: two workers of one namespace with different geometry. A block of
 * 2 KV heads decoded into a 1-head destination (dense, paged, through the
 * fetch) is refused and nothing is written. */
static void other_geometry_is_refused_by_every_decoder(void **state)
{
    vkvt_daemon *d = *state;
    vkv_client *a;
    assert_int_equal(vkvt_connect(d, "integrity", &a), 0);
    vkv_shape s = shape();
    assert_int_equal(vkvt_put_range(a, &s, 4000, 0, 1), 0);
    vkv_key k = vkvt_key(4000, 0);
    vkv_fetch *f;
    assert_int_equal(vkv_fetch_begin(a, &k, 1, &f), 0);
    vkv_shape mine = s;
    mine.kv_heads = 1; /* the second worker's cache holds one head per token */
    size_t nel = (size_t)mine.tokens * mine.kv_heads * mine.head_dim;
    uint16_t *kb[4], *vb[4];
    for (int l = 0; l < 4; l++) {
        kb[l] = malloc(nel * 2); /* exactly sized: ASan catches an overflow */
        vb[l] = malloc(nel * 2);
        memset(kb[l], 0x77, nel * 2);
        memset(vb[l], 0x77, nel * 2);
    }
    vkv_kv_dst dst = {(void *const *)kb, (void *const *)vb,      (size_t)mine.head_dim,
                      mine.head_dim,     vkv_geometry_of(&mine), NULL};
    vkv_view v = vkv_fetch_view(f, 0);
    assert_int_equal(vkv_fetch_decode(f, 0, 0, &dst), VKV_EGEOMETRY);
    assert_int_equal(vkv_decode(v.data, v.size, 0, &dst), VKV_EGEOMETRY);
    int32_t table[4] = {0, 1, 2, 3};
    vkv_paged_dst pd = {(void *const *)kb,
                        (void *const *)vb,
                        4,
                        16,
                        table,
                        4,
                        0,
                        0,
                        0,
                        0,
                        0,
                        vkv_geometry_of(&mine),
                        NULL};
    assert_int_equal(vkv_fetch_decode_paged(f, 0, 0, &pd), VKV_EGEOMETRY);
    assert_int_equal(vkv_decode_paged(v.data, v.size, 0, &pd), VKV_EGEOMETRY);
    mine = s;
    mine.tokens = 32; /* a destination with room for fewer tokens */
    dst.geom = vkv_geometry_of(&mine);
    assert_int_equal(vkv_fetch_decode(f, 0, 0, &dst), VKV_EGEOMETRY);
    mine = s;
    mine.dtype = VKV_DTYPE_BF16;
    dst.geom = vkv_geometry_of(&mine);
    assert_int_equal(vkv_fetch_decode(f, 0, 0, &dst), VKV_EGEOMETRY);
    /* a view decoded with another key's identity is refused too */
    uint8_t other[VKV_IDENT_LEN];
    vkv_key k2 = vkvt_key(4001, 0);
    vkv_block_ident("integrity", 9, k2.b, other);
    vkv_kv_dst any = {(void *const *)kb, (void *const *)vb, 0, 0, vkv_geometry_of(&s), other};
    assert_int_equal(vkv_decode(v.data, v.size, 0, &any), VKV_EIDENT);
    /* attention straight over the block: the same two refusals */
    float q[4 * 64], out[4 * 64], lse[4];
    for (int i = 0; i < 4 * 64; i++)
        q[i] = (float)(i % 7) * 0.1f;
    vkv_attend_args aa = {0};
    aa.kv_heads = s.kv_heads;
    aa.head_dim = s.head_dim;
    aa.layer = 1;
    aa.n_q = 1;
    aa.n_heads = 4;
    aa.q_dtype = VKV_ATTEND_F32;
    aa.q = q;
    aa.scale = 0.125f;
    aa.out = out;
    aa.lse = lse;
    assert_int_equal(vkv_fetch_attend(f, 0, 0, &aa), VKV_OK);
    aa.ident = other;
    assert_int_equal(vkv_attend(v.data, v.size, 0, &aa), VKV_EIDENT);
    assert_int_equal(vkv_fetch_attend(f, 0, 0, &aa), VKV_OK); /* its own identity wins */
    aa.ident = NULL;
    aa.kv_heads = 1;
    aa.n_heads = 1;
    assert_int_equal(vkv_fetch_attend(f, 0, 0, &aa), VKV_ESHAPE);
    for (int l = 0; l < 4; l++) {
        for (size_t i = 0; i < nel; i++)
            assert_true(kb[l][i] == 0x7777 && vb[l][i] == 0x7777);
        free(kb[l]);
        free(vb[l]);
    }
    assert_int_equal(vkv_fetch_release(a, f), VKV_OK);
    vkv_close(a);
}

/* Fetch views are read-only mappings: a stray write through one faults
 * (here in a forked child) instead of changing a READY block that other
 * workers read; the block is unchanged. */
static void a_write_through_a_view_faults(void **state)
{
    vkvt_daemon *d = *state;
    vkv_client *a;
    assert_int_equal(vkvt_connect(d, "integrity", &a), 0);
    vkv_shape s = shape();
    assert_int_equal(vkvt_put_range(a, &s, 4500, 0, 1), 0);
    vkv_key k = vkvt_key(4500, 0);
    vkv_fetch *f;
    assert_int_equal(vkv_fetch_begin(a, &k, 1, &f), 0);
    vkv_view v = vkv_fetch_view(f, 0);
    pid_t p = fork();
    if (p == 0) {
        signal(SIGSEGV, SIG_DFL); /* cmocka catches it in the test process */
        signal(SIGBUS, SIG_DFL);
        ((volatile uint8_t *)(uintptr_t)v.data)[300] ^= 1;
        _exit(0);
    }
    int st = 0;
    waitpid(p, &st, 0);
    assert_true(WIFSIGNALED(st));
#if defined(__SANITIZE_ADDRESS__)
    /* ASan reports the fault and aborts (abort_on_error) */
    assert_true(WTERMSIG(st) == SIGSEGV || WTERMSIG(st) == SIGBUS || WTERMSIG(st) == SIGABRT);
#else
    assert_true(WTERMSIG(st) == SIGSEGV || WTERMSIG(st) == SIGBUS);
#endif
    assert_int_equal(vkv_fetch_release(a, f), VKV_OK);
    assert_int_equal(vkvt_check_one(a, &s, 4500, 0), 1);
    vkv_close(a);
}

/* Writes `blk` into a fresh reservation for `key` through the raw protocol
 * (no binding by libvkv) and commits it; returns COMMIT's status. */
static int raw_put(vkv_client *c, const vkv_key *key, const void *blk, size_t sz)
{
    vkv_put *p;
    int rc = vkv_put_begin(c, key, sz, &p);
    if (rc)
        return rc;
    memcpy(vkv_put_data(p), blk, sz);
    /* vkv_put_commit would bind the block; send COMMIT by hand instead */
    vkvp_request rq;
    vkvp_reply *rep = NULL;
    vkvp_request_init(&rq, VKVP_COMMIT, 0);
    rq.u.commit.session = vkvc_session(c);
    rq.u.commit.lease = vkvc_put_lease(p);
    rc = vkvc_call(c, &rq, &rep, NULL, 0);
    if (rc == 0)
        vkvp_reply_free(rep);
    vkv_put_abort(c, p);
    return rc;
}

/* A block bound to another key, or to another namespace, or not bound at
 * all, is refused at COMMIT and counted; the key stays absent. */
static void commit_refuses_a_block_of_another_key(void **state)
{
    vkvt_daemon *d = *state;
    vkv_client *a;
    assert_int_equal(vkvt_connect(d, "integrity", &a), 0);
    vkv_shape s = shape();
    size_t sz;
    void *blk = vkvt_encode_local(&s, vkv_client_codec(a), 5000, &sz);
    vkv_key k = vkvt_key(5000, 0), other = vkvt_key(5001, 0);
    assert_int_equal(raw_put(a, &k, blk, sz), VKV_EIDENT); /* unbound */
    char ns[300];
    snprintf(ns, sizeof ns, "integrity#");
    uint8_t id[VKV_IDENT_LEN];
    /* bound to the right key of the namespace but another codec part */
    vkv_block_ident(ns, strlen(ns), k.b, id);
    assert_int_equal(vkv_block_bind(blk, sz, id), 0);
    assert_int_equal(raw_put(a, &k, blk, sz), VKV_EIDENT);
    /* bound to another key of our namespace (planted) */
    char full[300], spec[128];
    vkv_codec_spec_format(vkv_client_codec(a), spec, sizeof spec);
    snprintf(full, sizeof full, "integrity#%s", spec);
    vkv_block_ident(full, strlen(full), other.b, id);
    assert_int_equal(vkv_block_bind(blk, sz, id), 0);
    assert_int_equal(raw_put(a, &k, blk, sz), VKV_EIDENT);
    assert_true(vkvt_stat(a, "identity_failures") >= 3);
    assert_int_equal(vkvt_check_one(a, &s, 5000, 0), 0);
    /* the right identity is accepted */
    vkv_block_ident(full, strlen(full), k.b, id);
    assert_int_equal(vkv_block_bind(blk, sz, id), 0);
    assert_int_equal(raw_put(a, &k, blk, sz), VKV_OK);
    assert_int_equal(vkvt_check_one(a, &s, 5000, 0), 1);
    free(blk);
    vkv_close(a);
}

/* The client talks only to a daemon whose runtime dir is private to the
 * user: a dir open to others, or (as root) owned by another uid, is refused
 * with VKV_EPERM. */
static void runtime_dir_not_ours_is_refused(void **state)
{
    vkvt_daemon *d = *state;
    vkv_client *c;
    assert_int_equal(chmod(d->rundir, 0755), 0);
    assert_int_equal(vkvt_connect(d, "integrity", &c), VKV_EPERM);
    assert_int_equal(chmod(d->rundir, 0700), 0);
    if (geteuid() == 0) {
        assert_int_equal(chown(d->rundir, 65534, 65534), 0);
        assert_int_equal(vkvt_connect(d, "integrity", &c), VKV_EPERM);
        assert_int_equal(chown(d->rundir, 0, 0), 0);
    }
    assert_int_equal(vkvt_connect(d, "integrity", &c), 0);
    vkv_close(c);
}

/* One raw round trip on a REQ socket; the decoded reply or NULL. */
static vkvp_reply *raw_call(int s, vkvp_request *rq)
{
    void *frame = NULL, *buf = NULL;
    size_t len = 0;
    vkvp_reply *rep = NULL;
    char why[VKVP_WHY_LEN];
    if (vkvp_encode_request(rq, &frame, &len) != 0)
        return NULL;
    int ok = nn_send(s, frame, len, 0) >= 0;
    free(frame);
    int n = ok ? nn_recv(s, &buf, NN_MSG, 0) : -1;
    if (n >= 0) {
        if (vkvp_decode_reply(buf, (size_t)n, rq->op, &rep, why, sizeof why) != 0)
            rep = NULL;
        nn_freemsg(buf);
    }
    return rep;
}

/* Child: a worker as seen from another pid namespace: says HELLO with a pid
 * that means nothing to the daemon (an exited process), then visits the fd
 * channel like libvkv, so the daemon learns its real pid; then waits to be
 * killed. */
static int child_foreign_pid(const vkvt_daemon *d, uint64_t fake_pid, int unused)
{
    (void)unused;
    int s = nn_socket(AF_SP, NN_REQ);
    char url[400];
    snprintf(url, sizeof url, "ipc://%s/vkvd.sock", d->rundir);
    if (s < 0 || nn_connect(s, url) < 0)
        return 10;
    vkvp_request rq;
    vkvp_request_init(&rq, VKVP_HELLO, 77);
    rq.u.hello.ns = vkvp_cstr("integrity");
    rq.u.hello.pid = fake_pid;
    vkvp_reply *rep = raw_call(s, &rq);
    if (!rep || rep->status != 0)
        return 11;
    uint64_t sid = rep->u.hello.session;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%.*s", (int)rep->u.hello.fd_path.len,
             rep->u.hello.fd_path.ptr);
    vkvp_reply_free(rep);
    int fs = socket(AF_UNIX, SOCK_STREAM, 0);
    uint8_t sidb[8];
    for (int i = 0; i < 8; i++)
        sidb[i] = (uint8_t)(sid >> (8 * i));
    if (fs < 0 || connect(fs, (struct sockaddr *)&sa, sizeof sa) != 0 || send(fs, sidb, 8, 0) != 8)
        return 12;
    char buf[64];
    while (recv(fs, buf, sizeof buf, 0) > 0) /* slab records (fds closed with us) */
        ;
    close(fs);
    printf("foreign-pid worker: session %016llx\n", (unsigned long long)sid);
    fflush(stdout);
    for (;;)
        pause();
}

/* A worker whose self-reported pid is that of no process here (as in a
 * container) keeps its session past the bind grace period, because the
 * daemon checks the pid the kernel gave on the fd channel; it is reaped soon
 * after that process is killed. */
static void session_follows_the_kernel_pid_not_the_reported_one(void **state)
{
    vkvt_daemon *d = *state;
    vkv_client *obs;
    pid_t gone = fork(); /* a pid that is free once reaped */
    if (gone == 0)
        _exit(0);
    waitpid(gone, NULL, 0);
    pid_t w = spawn_child(child_foreign_pid, d, (uint64_t)gone, 0);
    vkvt_sleep_ms(300);
    assert_int_equal(vkvt_connect(d, "integrity-observer", &obs), 0);
    uint64_t before = 1; /* the observer */
    assert_int_equal(vkvt_stat(obs, "sessions"), before + 1);
    vkvt_sleep_ms(5000 + 500); /* VKVS_BIND_GRACE_MS and a few reap rounds */
    assert_int_equal(vkvt_stat(obs, "sessions"), before + 1);
    kill(w, SIGKILL);
    waitpid(w, NULL, 0);
    int ok = 0;
    for (int i = 0; i < 40 && !ok; i++) {
        vkvt_sleep_ms(50);
        ok = vkvt_stat(obs, "sessions") == before;
    }
    assert_true(ok);
    vkv_close(obs);
}

#define FAKETIME_LIB "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

/* Writes `text` to the faketime control file. */
static void set_fake_offset(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* An NTP-like step of the wall clock expires nothing: leases and sessions
 * run on the monotonic clock. vkvd runs under libfaketime (its wall clock
 * jumps a day ahead mid-run, its monotonic clock untouched); the jump is
 * seen (an entry stamped after it carries the future wall time), yet the
 * fetch lease taken before it renews fine. */
static void a_wall_clock_step_expires_nothing(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    print_message("AddressSanitizer build: cannot preload libfaketime; skipped\n");
    skip();
#endif
    if (access(FAKETIME_LIB, R_OK) != 0) {
        print_message("libfaketime not installed; skipped\n");
        skip();
    }
    vkvt_daemon d;
    assert_int_equal(vkvt_prepare(&d), 0);
    char ctl[400];
    snprintf(ctl, sizeof ctl, "%s/faketime", d.dir);
    set_fake_offset(ctl, "+0\n");
    static const char *const flags[] = {"--capacity",
                                        "1M",
                                        "--slab-size",
                                        "1M",
                                        "--page-size",
                                        "16K",
                                        "--lease-ttl-ms",
                                        "2000",
                                        "--reap-interval-ms",
                                        "50",
                                        "--cold-max",
                                        "0",
                                        NULL};
    setenv("LD_PRELOAD", FAKETIME_LIB, 1);
    setenv("FAKETIME_TIMESTAMP_FILE", ctl, 1);
    setenv("FAKETIME_NO_CACHE", "1", 1);
    setenv("FAKETIME_DONT_FAKE_MONOTONIC", "1", 1);
    int started = vkvt_start(&d, flags);
    unsetenv("LD_PRELOAD");
    unsetenv("FAKETIME_TIMESTAMP_FILE");
    unsetenv("FAKETIME_NO_CACHE");
    unsetenv("FAKETIME_DONT_FAKE_MONOTONIC");
    assert_int_equal(started, 0);
    vkv_client *c;
    assert_int_equal(vkvt_connect(&d, "clock", &c), 0);
    vkv_shape s = shape();
    assert_int_equal(vkvt_put_range(c, &s, 6000, 0, 1), 0);
    vkv_key k = vkvt_key(6000, 0);
    vkv_fetch *f;
    assert_int_equal(vkv_fetch_begin(c, &k, 1, &f), 0);
    set_fake_offset(ctl, "+1d\n"); /* the daemon's wall clock steps a day ahead */
    vkvt_sleep_ms(400);            /* several reap rounds */
    assert_int_equal(vkv_fetch_renew(c, f), VKV_OK);
    assert_int_equal(vkvt_put_range(c, &s, 6001, 0, 1), 0);
    vkvp_request rq;
    vkvp_reply *rep = NULL;
    vkvp_request_init(&rq, VKVP_INFO, 0);
    rq.u.info.session = vkvc_session(c);
    rq.u.info.key = vkvt_key(6001, 0);
    assert_int_equal(vkvc_call(c, &rq, &rep, NULL, 0), 0);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t real_ms = (uint64_t)now.tv_sec * 1000u;
    assert_true(rep->u.info.entry.last_ms > real_ms + 23ull * 3600 * 1000); /* the step is real */
    vkvp_reply_free(rep);
    assert_int_equal(vkv_fetch_release(c, f), VKV_OK);
    vkv_close(c);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    vkvt_cleanup(&d);
}

/* Peers that connect to the fd channel and stall do not keep others out:
 * each is served on its own thread. */
static void idle_fd_channel_peers_do_not_block_connect(void **state)
{
    vkvt_daemon *d = *state;
    int idle[16];
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char path[400];
    snprintf(path, sizeof path, "%s/vkvd.fds", d->rundir);
    assert_true(strlen(path) < sizeof sa.sun_path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    for (int i = 0; i < 16; i++) {
        idle[i] = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_int_equal(connect(idle[i], (struct sockaddr *)&sa, sizeof sa), 0);
    }
    vkv_client *c;
    assert_int_equal(vkvt_connect(d, "integrity", &c), 0); /* 5 s timeout */
    vkv_close(c);
    for (int i = 0; i < 16; i++)
        close(idle[i]);
}

/* Child, run inside its own pid namespace by unshare(1): a real worker that
 * sees itself as a low pid the daemon cannot see. Puts and fetches a block,
 * holds it past the bind grace period, then its session must still be
 * there (renew works, no VKV_ESESSION). */
static int child_pidns_worker(const vkvt_daemon *d, uint64_t seed, int unused)
{
    (void)unused;
    vkv_client *c;
    if (vkvt_connect(d, "integrity", &c) != 0)
        return 10;
    printf("pid-namespace worker: getpid() = %d\n", (int)getpid());
    fflush(stdout);
    vkv_shape s = shape();
    if (vkvt_put_range(c, &s, seed, 0, 1) != 0)
        return 11;
    vkv_key k = vkvt_key(seed, 0);
    vkv_fetch *f;
    if (vkv_fetch_begin(c, &k, 1, &f) != 0 || vkv_fetch_count(f) != 1)
        return 12;
    for (int i = 0; i < 70; i++) { /* 7 s, past the 5 s grace, renewing (TTL 300 ms) */
        vkvt_sleep_ms(100);
        if (vkv_fetch_renew(c, f) != 0)
            return 13;
    }
    if (vkv_fetch_release(c, f) != 0)
        return 14;
    if (vkvt_check_one(c, &s, seed, 0) != 1)
        return 15;
    vkv_close(c);
    return 0;
}

/* A worker in its own pid namespace (as in a container) keeps its session:
 * the daemon binds the pid the kernel translated on the fd channel. Needs
 * unshare(1) and the right to create a pid namespace (root in CI). */
static void worker_in_its_own_pid_namespace_keeps_its_session(void **state)
{
    vkvt_daemon *d = *state;
    if (system("unshare -pf true >/dev/null 2>&1") != 0) {
        print_message("cannot create a pid namespace here (unshare -pf); skipped\n");
        skip();
    }
    char self[512];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = '\0';
    pid_t p = fork();
    if (p == 0) {
        char *const argv[] = {"unshare",         "-pf",  "--", self, "--child", "pidns_worker",
                              (char *)d->rundir, "7000", "0",  NULL};
        execvp("unshare", argv);
        _exit(99);
    }
    int st = 0;
    waitpid(p, &st, 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* vkv_close ends the session at once (CLOSE): more connect/close cycles
 * than the daemon has session slots leave no session behind and the daemon
 * serving (every connect succeeds). */
static void connect_close_cycles_leave_no_sessions(void **state)
{
    vkvt_daemon *d = *state;
    vkv_client *obs;
    assert_int_equal(vkvt_connect(d, "integrity-observer", &obs), 0);
    uint64_t before = vkvt_stat(obs, "sessions");
    for (int i = 0; i < 4200; i++) { /* more than max_sessions (4096) */
        vkv_client *c;
        assert_int_equal(vkvt_connect(d, "integrity", &c), 0);
        vkv_close(c);
    }
    assert_int_equal(vkvt_stat(obs, "sessions"), before);
    assert_true(vkvt_stat(obs, "req_close") >= 4200);
    vkv_close(obs);
}

static const struct {
    const char *name;
    child_fn fn;
} g_children[] = {
    {"put", child_put},
    {"check", child_check},
    {"delete_and_refill", child_delete_and_refill},
    {"foreign_pid", child_foreign_pid},
    {"pidns_worker", child_pidns_worker},
};

static const char *child_name(child_fn fn)
{
    for (size_t i = 0; i < sizeof g_children / sizeof g_children[0]; i++)
        if (g_children[i].fn == fn)
            return g_children[i].name;
    return "?";
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "--child") == 0) {
        vkvt_daemon d;
        memset(&d, 0, sizeof d);
        snprintf(d.rundir, sizeof d.rundir, "%s", argv[3]);
        for (size_t i = 0; i < sizeof g_children / sizeof g_children[0]; i++)
            if (strcmp(g_children[i].name, argv[2]) == 0)
                return g_children[i].fn(&d, strtoull(argv[4], NULL, 10), atoi(argv[5]));
        return 98;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(late_writer_never_reaches_another_key, setup, teardown),
        cmocka_unit_test_setup_teardown(late_reader_keeps_its_own_block, setup, teardown),
        cmocka_unit_test_setup_teardown(renewed_lease_outlives_its_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(views_across_a_restart_never_alias, setup, teardown),
        cmocka_unit_test_setup_teardown(other_geometry_is_refused_by_every_decoder, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(commit_refuses_a_block_of_another_key, setup, teardown),
        cmocka_unit_test_setup_teardown(a_write_through_a_view_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(runtime_dir_not_ours_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(session_follows_the_kernel_pid_not_the_reported_one, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(idle_fd_channel_peers_do_not_block_connect, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(connect_close_cycles_leave_no_sessions, setup, teardown),
        cmocka_unit_test(a_wall_clock_step_expires_nothing),
        cmocka_unit_test_setup_teardown(worker_in_its_own_pid_namespace_keeps_its_session, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
