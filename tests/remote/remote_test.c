/*
 * tests/remote/remote_test.c - the remote tier (remote/) against a real
 * 3-master Redis Cluster on loopback (tests/remote/redis_cluster.h): slot
 * routing, multi-piece round trips, once-per-key publishing, flipped bytes,
 * foreign and planted values, a full cluster, a master stopped or killed
 * mid-fetch and mid-publish, a slot range resharded while traffic runs, an
 * evicted piece, slots assigned after the tier opened, and a node that
 * trickles its replies (a fake one).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "remote/cluster.h"
#include "remote/pieces.h"
#include "redis_cluster.h"
#include "remote/remote.h"
#include "vkv/block.h"
#include "vkv/codec.h"
#include "vkv/error.h"

static vkvt_redis g_rc;
static const char *NS = "test-model|rev1|tp0|f16#rotsign";

/* ---- helpers ------------------------------------------------------------------ */

static uint64_t mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static vkv_key key_of(uint64_t seed)
{
    vkv_key k;
    for (int i = 0; i < 4; i++) {
        uint64_t x = mix(&seed);
        memcpy(k.b + 8 * i, &x, 8);
    }
    return k;
}

/* An encoded block of `layers` x 8 heads x 128 x `tokens` (all visual),
 * bound to (ns, key); malloc'ed, *size bytes. */
static void *block_make(const char *ns, const vkv_key *key, uint64_t seed, uint32_t layers,
                        uint32_t tokens, size_t *size)
{
    vkv_shape s = {layers, 8, 128, tokens, VKV_DTYPE_F16, 1, {{0, tokens}}};
    vkv_codec_spec spec;
    vkv_codec_spec_default(&spec);
    assert_int_equal(vkv_codec_encoded_size(&s, &spec, size), 0);
    size_t n = (size_t)tokens * 8 * 128;
    _Float16 **k = calloc(layers, sizeof *k), **v = calloc(layers, sizeof *v);
    for (uint32_t l = 0; l < layers; l++) {
        k[l] = malloc(n * 2);
        v[l] = malloc(n * 2);
        for (size_t i = 0; i < n; i++) {
            k[l][i] = (_Float16)((double)(mix(&seed) >> 11) / 9007199254740992.0 - 0.5);
            v[l][i] = (_Float16)((double)(mix(&seed) >> 11) / 9007199254740992.0 - 0.5);
        }
    }
    void *blk = malloc(*size);
    vkv_kv_src src = {(const void *const *)k, (const void *const *)v, 8 * 128, 128};
    assert_int_equal(vkv_encode(&s, &spec, &src, blk, *size), 0);
    for (uint32_t l = 0; l < layers; l++) {
        free(k[l]);
        free(v[l]);
    }
    free(k);
    free(v);
    uint8_t id[VKV_IDENT_LEN];
    vkv_block_ident(ns, strlen(ns), key->b, id);
    assert_int_equal(vkv_block_bind(blk, *size, id), 0);
    return blk;
}

/* A copy of buf[0..n). */
static void *dup_mem(const void *buf, size_t n)
{
    void *p = malloc(n);
    memcpy(p, buf, n);
    return p;
}

/* Waits up to 20 s for the completion of `tag` (other completions are
 * dropped, their buffers freed). */
static vkvr_completion wait_tag(vkvr *r, uint64_t tag)
{
    vkvr_completion c[16];
    for (int waited = 0; waited < 20000;) {
        int n = vkvr_poll(r, c, 16);
        for (int i = 0; i < n; i++) {
            if (c[i].tag == tag) {
                for (int j = i + 1; j < n; j++)
                    free(c[j].buf); /* not expected: one op at a time */
                return c[i];
            }
            free(c[i].buf);
        }
        struct pollfd p = {vkvr_fd(r), POLLIN, 0};
        poll(&p, 1, 50);
        waited += 50;
    }
    fail_msg("no completion for tag %llu", (unsigned long long)tag);
    vkvr_completion none = {0};
    return none;
}

static uint64_t g_tag = 1;

/* Publishes a copy of blk synchronously; returns the completion status. */
static int publish_sync(vkvr *r, const char *ns, const vkv_key *k, const void *blk, size_t n)
{
    void *copy = dup_mem(blk, n);
    uint64_t tag = g_tag++;
    int rc = vkvr_publish(r, ns, k, copy, n, tag);
    if (rc) {
        free(copy);
        return rc;
    }
    return wait_tag(r, tag).status;
}

/* Fetches (ns, k) into a tier-allocated buffer: status, *out (caller frees). */
static int fetch_sync(vkvr *r, const char *ns, const vkv_key *k, void **out, uint64_t *size)
{
    uint64_t tag = g_tag++;
    int rc = vkvr_fetch(r, ns, k, NULL, 0, tag);
    if (rc)
        return rc;
    vkvr_completion c = wait_tag(r, tag);
    *out = c.buf;
    *size = c.size;
    assert_true(c.status == 0 || c.buf == NULL);
    return c.status;
}

/* Publishes blk[0..n) as (NS, k), which must succeed (not VKV_EEXIST), and
 * fetches it back bit-identical; then frees blk (the caller's, malloc'ed). */
static void publish_and_fetch_back(vkvr *r, const vkv_key *k, void *blk, size_t n)
{
    void *got = NULL;
    uint64_t sz = 0;
    assert_int_equal(publish_sync(r, NS, k, blk, n), 0);
    assert_int_equal(fetch_sync(r, NS, k, &got, &sz), 0);
    assert_int_equal(sz, n);
    assert_memory_equal(got, blk, n);
    free(got);
    free(blk);
}

static vkvr *open_tier(uint32_t piece, uint32_t timeout_ms)
{
    vkvr_config cfg;
    vkvr_config_default(&cfg);
    cfg.nodes = g_rc.nodes;
    cfg.piece_size = piece;
    cfg.timeout_ms = timeout_ms;
    cfg.retry_ms = 200;
    cfg.ttl_ms = 600000;
    vkvr *r = NULL;
    char err[200];
    assert_int_equal(vkvr_open(&cfg, &r, err, sizeof err), 0);
    return r;
}

/* Master serving the keys of (NS, k). */
static int owner_of(const vkv_key *k)
{
    char name[VKVR_KEYNAME_MAX];
    int n = vkvr_name_manifest(name, sizeof name, "vkv:", NS, k);
    return vkvt_redis_owner(&g_rc, vkvr_key_slot(name, (size_t)n));
}

/* Reads the stored manifest of (NS, k) raw (for tampering tests). */
static void manifest_of(const vkv_key *k, vkvr_manifest *m, void **buf)
{
    char name[VKVR_KEYNAME_MAX];
    vkvr_name_manifest(name, sizeof name, "vkv:", NS, k);
    redisReply *x = vkvt_redis_cmd(&g_rc, owner_of(k), "GET %s", name);
    assert_non_null(x);
    assert_int_equal(x->type, REDIS_REPLY_STRING);
    *buf = dup_mem(x->str, x->len);
    assert_int_equal(vkvr_manifest_parse(*buf, x->len, NS, k, 1ull << 32, m), 0);
    freeReplyObject(x);
}

/* ---- setup ------------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    int rc = vkvt_redis_start(&g_rc, 3, NULL);
    if (rc == 77)
        exit(77);
    return rc;
}

static int group_teardown(void **state)
{
    (void)state;
    vkvt_redis_stop(&g_rc);
    return 0;
}

/* ---- tests -------------------------------------------------------------------- */

/* CRC16 and key slots match the spec's test vector and the servers. */
static void test_slots(void **state)
{
    (void)state;
    assert_int_equal(vkvr_crc16("123456789", 9), 0x31C3);
    assert_int_equal(vkvr_key_slot("{user1000}.following", 20),
                     vkvr_key_slot("{user1000}.followers", 20));
    assert_int_equal(vkvr_key_slot("foo{}{bar}", 10), vkvr_crc16("foo{}{bar}", 10) & 16383);
    const char *samples[] = {"foo", "bar", "{a}b", "a{b}", "{}x", "x{y", "vkv:ns/{00ff}/m", ""};
    for (size_t i = 0; i < sizeof samples / sizeof *samples + 40; i++) {
        char buf[VKVR_KEYNAME_MAX];
        const char *k = buf;
        if (i < sizeof samples / sizeof *samples) {
            k = samples[i];
        } else {
            vkv_key kk = key_of(i);
            vkvr_name_piece(buf, sizeof buf, "vkv:", NS, &kk, i * 77, (uint32_t)i);
        }
        redisReply *x = vkvt_redis_cmd(&g_rc, 0, "CLUSTER KEYSLOT %b", k, strlen(k));
        assert_non_null(x);
        assert_int_equal(x->type, REDIS_REPLY_INTEGER);
        assert_int_equal(x->integer, vkvr_key_slot(k, strlen(k)));
        freeReplyObject(x);
    }
    vkvr_addr a[4];
    assert_int_equal(vkvr_parse_nodes("redis://h1:1,h2:65535", a, 4), 2);
    assert_string_equal(a[0].host, "h1");
    assert_int_equal(a[1].port, 65535);
    assert_int_equal(vkvr_parse_nodes("h1", a, 4), VKV_EINVAL);
    assert_int_equal(vkvr_parse_nodes("h1:0", a, 4), VKV_EINVAL);
    assert_int_equal(vkvr_parse_nodes("h1:1,", a, 4), 1);
}

/* A multi-piece block goes out once and comes back bit-identical, into a
 * split destination or a buffer of the tier's. */
static void test_roundtrip(void **state)
{
    (void)state;
    vkvr *r = open_tier(VKVR_PIECE_MIN, 2000);
    vkv_key k = key_of(1001);
    size_t n;
    void *blk = block_make(NS, &k, 1, 4, 96, &n);
    assert_true(n > 8 * VKVR_PIECE_MIN);
    assert_int_equal(publish_sync(r, NS, &k, blk, n), 0);
    assert_int_equal(publish_sync(r, NS, &k, blk, n), VKV_EEXIST); /* once per key */

    uint64_t tag = g_tag++;
    assert_int_equal(vkvr_probe(r, NS, &k, tag), 0);
    vkvr_completion c = wait_tag(r, tag);
    assert_int_equal(c.status, 0);
    assert_int_equal(c.size, n);

    /* Into three uneven runs of caller memory. */
    uint8_t *dst = calloc(1, n + 100);
    struct iovec iov[3] = {{dst, 1000}, {dst + 1000, 5000}, {dst + 6000, n + 100 - 6000}};
    tag = g_tag++;
    assert_int_equal(vkvr_fetch(r, NS, &k, iov, 3, tag), 0);
    c = wait_tag(r, tag);
    assert_int_equal(c.status, 0);
    assert_int_equal(c.size, n);
    assert_memory_equal(dst, blk, n);

    void *got = NULL;
    uint64_t sz = 0;
    assert_int_equal(fetch_sync(r, NS, &k, &got, &sz), 0);
    assert_int_equal(sz, n);
    assert_memory_equal(got, blk, n);
    free(got);

    /* Too small a destination; an absent key; another namespace. */
    struct iovec small = {dst, n - 1};
    tag = g_tag++;
    assert_int_equal(vkvr_fetch(r, NS, &k, &small, 1, tag), 0);
    assert_int_equal(wait_tag(r, tag).status, VKV_ETRUNC);
    vkv_key absent = key_of(999999);
    assert_int_equal(fetch_sync(r, NS, &absent, &got, &sz), VKV_ENOTFOUND);
    assert_int_equal(fetch_sync(r, "other-model", &k, &got, &sz), VKV_ENOTFOUND);

    /* Only sound blocks bound to (ns, key) are published. */
    assert_int_equal(publish_sync(r, NS, &absent, blk, n), VKV_EIDENT);
    uint8_t *copy = dup_mem(blk, n);
    copy[n - 1] ^= 1;
    assert_int_equal(publish_sync(r, NS, &k, copy, n), VKV_ECHECKSUM);
    free(copy);
    assert_int_equal(fetch_sync(r, NS, &absent, &got, &sz), VKV_ENOTFOUND);

    vkvr_stats s;
    vkvr_stats_get(r, &s);
    assert_int_equal(s.publishes, 1);
    assert_int_equal(s.publish_skipped, 1);
    assert_int_equal(s.publish_errors, 2);
    assert_int_equal(s.hits, 3); /* probe + 2 fetches */
    assert_int_equal(s.misses, 3);
    assert_int_equal(s.errors, 1); /* ETRUNC */
    assert_int_equal(s.fetch_bytes, 2 * n);
    assert_int_equal(s.corrupt + s.foreign, 0);
    free(dst);
    free(blk);
    vkvr_close(r);
}

/* A flipped byte in a stored piece, a truncated piece and a missing piece:
 * errors (or a miss), never a result. */
static void test_flipped_piece(void **state)
{
    (void)state;
    vkvr *r = open_tier(VKVR_PIECE_MIN, 2000);
    vkv_key k = key_of(2002);
    size_t n;
    void *blk = block_make(NS, &k, 2, 4, 64, &n);
    assert_int_equal(publish_sync(r, NS, &k, blk, n), 0);
    vkvr_manifest m;
    void *mbuf;
    manifest_of(&k, &m, &mbuf);
    int owner = owner_of(&k);
    char piece[VKVR_KEYNAME_MAX];
    vkvr_name_piece(piece, sizeof piece, "vkv:", NS, &k, m.nonce, 2);
    /* Flip one byte of piece 2 in place. */
    redisReply *x = vkvt_redis_cmd(&g_rc, owner, "GETRANGE %s 100 100", piece);
    char flipped = (char)(x->str[0] ^ 0x10);
    freeReplyObject(x);
    x = vkvt_redis_cmd(&g_rc, owner, "SETRANGE %s 100 %b", piece, &flipped, (size_t)1);
    freeReplyObject(x);
    void *got = NULL;
    uint64_t sz;
    assert_int_equal(fetch_sync(r, NS, &k, &got, &sz), VKV_ECHECKSUM);
    assert_null(got);
    /* Truncated piece. */
    x = vkvt_redis_cmd(&g_rc, owner, "SET %s %b", piece, "short", (size_t)5);
    freeReplyObject(x);
    assert_int_equal(fetch_sync(r, NS, &k, &got, &sz), VKV_ECHECKSUM);
    /* Missing piece (expired or evicted): a miss. */
    x = vkvt_redis_cmd(&g_rc, owner, "DEL %s", piece);
    freeReplyObject(x);
    assert_int_equal(fetch_sync(r, NS, &k, &got, &sz), VKV_ENOTFOUND);
    vkvr_stats s;
    vkvr_stats_get(r, &s);
    assert_int_equal(s.corrupt, 2);
    assert_int_equal(s.errors, 2);
    assert_int_equal(s.misses, 1);
    free(mbuf);
    free(blk);
    vkvr_close(r);
}

/* Foreign values under vkv keys: garbage, another Redis type, a manifest
 * copied from another key, and a sound manifest over a block bound to
 * another key (what an attacker with write access could plant). */
static void test_foreign(void **state)
{
    (void)state;
    vkvr *r = open_tier(VKVR_PIECE_MIN, 2000);
    vkv_key ka = key_of(3003), kb = key_of(3004), kc = key_of(3005);
    char mb[VKVR_KEYNAME_MAX], mc[VKVR_KEYNAME_MAX];
    vkvr_name_manifest(mb, sizeof mb, "vkv:", NS, &kb);
    vkvr_name_manifest(mc, sizeof mc, "vkv:", NS, &kc);
    void *got = NULL;
    uint64_t sz;

    redisReply *x = vkvt_redis_cmd(&g_rc, owner_of(&kb), "SET %s hello", mb);
    freeReplyObject(x);
    assert_int_equal(fetch_sync(r, NS, &kb, &got, &sz), VKV_ECORRUPT);
    x = vkvt_redis_cmd(&g_rc, owner_of(&kb), "DEL %s", mb);
    freeReplyObject(x);
    x = vkvt_redis_cmd(&g_rc, owner_of(&kb), "HSET %s f v", mb);
    freeReplyObject(x);
    assert_int_equal(fetch_sync(r, NS, &kb, &got, &sz), VKV_ECORRUPT);
    x = vkvt_redis_cmd(&g_rc, owner_of(&kb), "DEL %s", mb);
    freeReplyObject(x);

    /* Key A's real manifest copied under key B's name. */
    size_t n;
    void *blk = block_make(NS, &ka, 3, 4, 64, &n);
    assert_int_equal(publish_sync(r, NS, &ka, blk, n), 0);
    vkvr_manifest m;
    void *mbuf;
    manifest_of(&ka, &m, &mbuf);
    size_t mlen = VKVR_MAN_HDR + 8u * m.pieces + 8u;
    x = vkvt_redis_cmd(&g_rc, owner_of(&kb), "SET %s %b", mb, mbuf, mlen);
    freeReplyObject(x);
    assert_int_equal(fetch_sync(r, NS, &kb, &got, &sz), VKV_EIDENT);

    /* A planted block: a manifest of key C that hashes right, over pieces
     * holding key A's block (bound to A). The block's own identity fails. */
    void *man;
    size_t manlen;
    uint64_t nonce = 42;
    assert_int_equal(vkvr_manifest_build(blk, n, VKVR_PIECE_MIN, NS, &kc, nonce, &man, &manlen), 0);
    int oc = owner_of(&kc);
    for (uint32_t i = 0; i * (uint64_t)VKVR_PIECE_MIN < n; i++) {
        char p[VKVR_KEYNAME_MAX];
        vkvr_name_piece(p, sizeof p, "vkv:", NS, &kc, nonce, i);
        size_t off = (size_t)i * VKVR_PIECE_MIN,
               len = n - off < VKVR_PIECE_MIN ? n - off : VKVR_PIECE_MIN;
        x = vkvt_redis_cmd(&g_rc, oc, "SET %s %b", p, (char *)blk + off, len);
        freeReplyObject(x);
    }
    x = vkvt_redis_cmd(&g_rc, oc, "SET %s %b", mc, man, manlen);
    freeReplyObject(x);
    assert_int_equal(fetch_sync(r, NS, &kc, &got, &sz), VKV_EIDENT);
    assert_null(got);

    vkvr_stats s;
    vkvr_stats_get(r, &s);
    assert_int_equal(s.foreign, 4);
    assert_int_equal(s.errors, 4);
    assert_int_equal(s.hits, 0);
    free(man);
    free(mbuf);
    free(blk);
    vkvr_close(r);
}

/* A cluster at its maxmemory (noeviction) refuses a publish: counted, no
 * manifest left behind; publishing works again once there is room. */
static void test_maxmemory(void **state)
{
    (void)state;
    vkvr *r = open_tier(64 << 10, 2000);
    vkv_key k = key_of(4004);
    size_t n;
    void *blk = block_make(NS, &k, 4, 16, 128, &n);
    int o = owner_of(&k);
    redisReply *x = vkvt_redis_cmd(&g_rc, o, "INFO memory");
    const char *u = strstr(x->str, "used_memory:");
    long long used = atoll(u + 12);
    freeReplyObject(x);
    x = vkvt_redis_cmd(&g_rc, o, "CONFIG SET maxmemory %lld", used + (long long)n / 2);
    freeReplyObject(x);
    x = vkvt_redis_cmd(&g_rc, o, "CONFIG SET maxmemory-policy noeviction");
    freeReplyObject(x);
    assert_int_equal(publish_sync(r, NS, &k, blk, n), VKV_ENOSPC);
    void *got = NULL;
    uint64_t sz;
    assert_int_equal(fetch_sync(r, NS, &k, &got, &sz), VKV_ENOTFOUND);
    vkvr_stats s;
    vkvr_stats_get(r, &s);
    assert_int_equal(s.publish_errors, 1);
    assert_int_equal(s.publish_oom, 1);
    x = vkvt_redis_cmd(&g_rc, o, "CONFIG SET maxmemory 0");
    freeReplyObject(x);
    publish_and_fetch_back(r, &k, blk, n);
    vkvr_close(r);
}

/* The publish queue is bounded: past it a publish is refused (EBUSY,
 * counted) and the caller keeps its buffer. */
static void test_queue_bound(void **state)
{
    (void)state;
    vkvr_config cfg;
    vkvr_config_default(&cfg);
    cfg.nodes = g_rc.nodes;
    cfg.queue_bytes = 1;
    vkvr *r = NULL;
    assert_int_equal(vkvr_open(&cfg, &r, NULL, 0), 0);
    vkv_key k = key_of(5005);
    size_t n;
    void *blk = block_make(NS, &k, 5, 2, 32, &n);
    assert_int_equal(vkvr_publish(r, NS, &k, blk, n, 1), VKV_EBUSY);
    vkvr_stats s;
    vkvr_stats_get(r, &s);
    assert_int_equal(s.publish_refused, 1);
    free(blk); /* still ours */
    vkvr_close(r);
}

/* A master stopped (slow) then killed in the middle of a fetch and of a
 * publish: the operations fail (counted), nothing half-published is ever
 * served, and the tier reconnects by itself once the master is back. */
static void test_kill_master(void **state)
{
    (void)state;
    vkvr *r = open_tier(64 << 10, 600);
    vkv_key k = key_of(6006);
    size_t n;
    void *blk = block_make(NS, &k, 6, 16, 128, &n);
    assert_int_equal(publish_sync(r, NS, &k, blk, n), 0);
    int o = owner_of(&k);

    /* A stopped master: the fetch times out. */
    assert_int_equal(vkvt_redis_signal(&g_rc, o, SIGSTOP), 0);
    void *got = NULL;
    uint64_t sz;
    int rc = fetch_sync(r, NS, &k, &got, &sz);
    assert_true(rc == VKV_ETIMEDOUT || rc == VKV_EIO);
    assert_int_equal(vkvt_redis_signal(&g_rc, o, SIGCONT), 0);

    /* Mid-fetch: stopped while the fetch waits on it, then killed. */
    vkvt_redis_signal(&g_rc, o, SIGSTOP);
    uint64_t tag = g_tag++;
    assert_int_equal(vkvr_fetch(r, NS, &k, NULL, 0, tag), 0);
    usleep(150 * 1000);
    vkvt_redis_signal(&g_rc, o, SIGKILL);
    vkvr_completion c = wait_tag(r, tag);
    assert_int_not_equal(c.status, 0);
    assert_null(c.buf);
    assert_int_equal(vkvt_redis_restart(&g_rc, o), 0);

    /* Mid-publish of another key on the same master. */
    vkv_key k2 = key_of(6007);
    for (uint64_t s = 6008; owner_of(&k2) != o; s++)
        k2 = key_of(s);
    void *blk2 = block_make(NS, &k2, 7, 16, 128, &n);
    vkvt_redis_signal(&g_rc, o, SIGSTOP);
    tag = g_tag++;
    assert_int_equal(vkvr_publish(r, NS, &k2, dup_mem(blk2, n), n, tag), 0);
    usleep(150 * 1000);
    vkvt_redis_signal(&g_rc, o, SIGKILL);
    c = wait_tag(r, tag);
    assert_int_not_equal(c.status, 0);
    assert_int_equal(vkvt_redis_restart(&g_rc, o), 0);

    /* Back: the restarted master is empty (no persistence): misses, not
     * errors; then the tier publishes and serves again. */
    usleep(300 * 1000); /* past retry_ms */
    assert_int_equal(fetch_sync(r, NS, &k2, &got, &sz), VKV_ENOTFOUND);
    assert_int_equal(fetch_sync(r, NS, &k, &got, &sz), VKV_ENOTFOUND);
    assert_int_equal(publish_sync(r, NS, &k2, blk2, n), 0);
    assert_int_equal(fetch_sync(r, NS, &k2, &got, &sz), 0);
    assert_memory_equal(got, blk2, n);
    free(got);
    vkvr_stats s;
    vkvr_stats_get(r, &s);
    assert_true(s.errors >= 2);
    assert_true(s.publish_errors >= 1);
    assert_true(s.timeouts + s.conn_errors >= 2);
    assert_true(s.connects >= 2);
    assert_int_equal(s.corrupt + s.foreign, 0);
    free(blk);
    free(blk2);
    vkvr_close(r);
}

/* ---- resharding ------------------------------------------------------------------ */

#define RS_KEYS 6

struct traffic {
    vkvr *r;
    vkv_key keys[RS_KEYS];
    void *blk[RS_KEYS];
    size_t n[RS_KEYS];
    atomic_bool stop;
    uint64_t ops, failures, published;
};

/* Fetches every key in turn (and publishes fresh keys into the moving
 * slots) until told to stop; counts anything that is not a verified,
 * identical block. */
static void *traffic_main(void *arg)
{
    struct traffic *t = arg;
    uint64_t tag = 1u << 30;
    while (!atomic_load(&t->stop)) {
        for (int i = 0; i < RS_KEYS; i++) {
            uint64_t my = tag++;
            if (vkvr_fetch(t->r, NS, &t->keys[i], NULL, 0, my) != 0) {
                t->failures++;
                continue;
            }
            vkvr_completion c = wait_tag(t->r, my);
            t->ops++;
            if (c.status != 0 || c.size != t->n[i] || memcmp(c.buf, t->blk[i], t->n[i]) != 0) {
                fprintf(stderr, "reshard traffic: fetch %d: %s\n", i, vkv_errname(c.status));
                t->failures++;
            }
            free(c.buf);
        }
    }
    return NULL;
}

/* The node id of master i. */
static void node_id(int i, char *out, size_t cap)
{
    redisReply *x = vkvt_redis_cmd(&g_rc, i, "CLUSTER MYID");
    snprintf(out, cap, "%s", x->str);
    freeReplyObject(x);
}

/* Moves `slot` from master src to master dst the way redis-cli --cluster
 * reshard does (IMPORTING/MIGRATING, MIGRATE key by key, SETSLOT NODE),
 * pausing between keys so traffic sees the slot half-moved (ASK). */
static void move_slot(int slot, int src, int dst, bool cli_order)
{
    char sid[64], did[64];
    node_id(src, sid, sizeof sid);
    node_id(dst, did, sizeof did);
    redisReply *x = vkvt_redis_cmd(&g_rc, dst, "CLUSTER SETSLOT %d IMPORTING %s", slot, sid);
    assert_int_equal(x->type, REDIS_REPLY_STATUS);
    freeReplyObject(x);
    x = vkvt_redis_cmd(&g_rc, src, "CLUSTER SETSLOT %d MIGRATING %s", slot, did);
    assert_int_equal(x->type, REDIS_REPLY_STATUS);
    freeReplyObject(x);
    for (;;) {
        x = vkvt_redis_cmd(&g_rc, src, "CLUSTER GETKEYSINSLOT %d 1", slot);
        assert_int_equal(x->type, REDIS_REPLY_ARRAY);
        if (x->elements == 0) {
            freeReplyObject(x);
            break;
        }
        redisReply *m = vkvt_redis_cmd(&g_rc, src, "MIGRATE 127.0.0.1 %d %b 0 5000", g_rc.port[dst],
                                       x->element[0]->str, x->element[0]->len);
        assert_non_null(m);
        if (m->type == REDIS_REPLY_ERROR)
            fail_msg("MIGRATE: %s", m->str);
        freeReplyObject(m);
        freeReplyObject(x);
        usleep(20 * 1000);
    }
    /* Finalize on the target, the source, then the others, as redis-cli
     * does, or (cli_order false) the source first: then the slot bounces
     * between them (MOVED both ways) until the target learns it owns it,
     * which the router must ride out. */
    int order[VKVT_REDIS_MAX], n = 0;
    order[n++] = cli_order ? dst : src;
    order[n++] = cli_order ? src : dst;
    for (int i = 0; i < g_rc.n; i++)
        if (i != dst && i != src)
            order[n++] = i;
    for (int i = 0; i < n; i++) {
        x = vkvt_redis_cmd(&g_rc, order[i], "CLUSTER SETSLOT %d NODE %s", slot, did);
        freeReplyObject(x);
    }
}

/* Slots holding live keys move between masters while a thread fetches
 * them continuously: every fetch succeeds, through ASK and MOVED. */
static void test_reshard(void **state)
{
    (void)state;
    struct traffic t;
    memset(&t, 0, sizeof t);
    t.r = open_tier(VKVR_PIECE_MIN, 2000);
    int src = 0;
    for (int i = 0, s = 7000; i < RS_KEYS; s++) {
        vkv_key k = key_of((uint64_t)s);
        if (owner_of(&k) != src)
            continue;
        t.keys[i] = k;
        t.blk[i] = block_make(NS, &k, (uint64_t)s, 4, 64, &t.n[i]);
        assert_int_equal(publish_sync(t.r, NS, &k, t.blk[i], t.n[i]), 0);
        i++;
    }
    pthread_t thr;
    assert_int_equal(pthread_create(&thr, NULL, traffic_main, &t), 0);
    usleep(100 * 1000);
    for (int i = 0; i < RS_KEYS; i++) {
        char name[VKVR_KEYNAME_MAX];
        int len = vkvr_name_manifest(name, sizeof name, "vkv:", NS, &t.keys[i]);
        int slot = vkvr_key_slot(name, (size_t)len);
        if (vkvt_redis_owner(&g_rc, slot) == src)
            move_slot(slot, src, 1 + i % 2, i % 2 == 0);
    }
    usleep(200 * 1000);
    atomic_store(&t.stop, true);
    pthread_join(thr, NULL);
    vkvr_stats s;
    vkvr_stats_get(t.r, &s);
    fprintf(stderr, "reshard: %llu fetches, %llu failures, %llu ASK, %llu MOVED\n",
            (unsigned long long)t.ops, (unsigned long long)t.failures, (unsigned long long)s.ask,
            (unsigned long long)s.moved);
    assert_int_equal(t.failures, 0);
    assert_true(t.ops > 0);
    assert_true(s.ask > 0);
    assert_true(s.moved > 0);
    for (int i = 0; i < RS_KEYS; i++) {
        assert_int_not_equal(owner_of(&t.keys[i]), src);
        free(t.blk[i]);
    }
    vkvr_close(t.r);
}

/* A piece evicted under its manifest (an LRU policy keeps the small,
 * often-read manifest) makes the fetch miss and drops the manifest, so a
 * node holding the block publishes it again and the key is served, instead
 * of missing everywhere until the manifest's TTL. */
static void test_evicted_piece(void **state)
{
    (void)state;
    vkvr *r = open_tier(64 << 10, 2000);
    vkv_key k = key_of(19009);
    size_t n;
    void *blk = block_make(NS, &k, 9, 16, 128, &n);
    assert_int_equal(publish_sync(r, NS, &k, blk, n), 0);
    vkvr_manifest m;
    void *mb;
    manifest_of(&k, &m, &mb);
    assert_true(m.pieces >= 2);
    char name[VKVR_KEYNAME_MAX];
    vkvr_name_piece(name, sizeof name, "vkv:", NS, &k, m.nonce, 1);
    free(mb);
    redisReply *x = vkvt_redis_cmd(&g_rc, owner_of(&k), "DEL %s", name); /* "evicted" */
    assert_non_null(x);
    assert_int_equal(x->integer, 1);
    freeReplyObject(x);
    void *got = NULL;
    uint64_t sz = 0;
    assert_int_equal(fetch_sync(r, NS, &k, &got, &sz), VKV_ENOTFOUND);
    vkvr_stats st;
    vkvr_stats_get(r, &st);
    assert_int_equal(st.dangling, 1);
    vkvr_name_manifest(name, sizeof name, "vkv:", NS, &k);
    x = vkvt_redis_cmd(&g_rc, owner_of(&k), "EXISTS %s", name);
    assert_non_null(x);
    assert_int_equal(x->integer, 0);
    freeReplyObject(x);
    publish_and_fetch_back(r, &k, blk, n); /* not VKV_EEXIST */
    vkvr_close(r);
}

/* A tier opened while the cluster has no slots yet (vkvd started before
 * `redis-cli --cluster create`, as container set-ups do) answers errors
 * until the slots are assigned, then works: the map of a slot no node
 * served is asked for again. */
static void test_slots_assigned_late(void **state)
{
    (void)state;
    vkvt_redis late;
    assert_int_equal(vkvt_redis_start_bare(&late, 3, NULL), 0);
    vkvr_config cfg;
    vkvr_config_default(&cfg);
    cfg.nodes = late.nodes;
    cfg.timeout_ms = 2000;
    cfg.retry_ms = 200;
    vkvr *r = NULL;
    assert_int_equal(vkvr_open(&cfg, &r, NULL, 0), 0);
    vkv_key k = key_of(14242);
    void *got = NULL;
    uint64_t sz = 0;
    int rc = fetch_sync(r, NS, &k, &got, &sz);
    assert_true(rc != 0 && rc != VKV_ENOTFOUND);
    assert_int_equal(vkvt_redis_create(&late), 0);
    for (int i = 0; i < 100 && rc != VKV_ENOTFOUND; i++) { /* up to 10 s */
        usleep(100 * 1000);
        rc = fetch_sync(r, NS, &k, &got, &sz);
    }
    assert_int_equal(rc, VKV_ENOTFOUND);
    size_t n;
    void *blk = block_make(NS, &k, 42, 2, 16, &n);
    publish_and_fetch_back(r, &k, blk, n);
    vkvr_close(r);
    vkvt_redis_stop(&late);
}

/* A fake cluster node on loopback: answers CLUSTER SLOTS with itself for
 * every slot at once, and any other command with an 11-byte reply sent one
 * byte every 250 ms (2.75 s in all: each byte arrives well within a read
 * timeout). */
typedef struct trickler {
    int lfd, port;
    atomic_int stop;
    pthread_t th;
} trickler;

/* Sends s[0..n) one byte per 250 ms until done or told to stop. */
static void trickle(trickler *t, int fd, const char *s, size_t n)
{
    for (size_t i = 0; i < n && !atomic_load(&t->stop); i++) {
        if (send(fd, s + i, 1, MSG_NOSIGNAL) != 1) /* the client may be gone */
            return;
        usleep(250 * 1000);
    }
}

/* The node's thread: one connection at a time, commands read with hiredis's
 * reader (requests are RESP arrays too). */
static void *trickler_main(void *arg)
{
    trickler *t = arg;
    while (!atomic_load(&t->stop)) {
        struct pollfd p = {t->lfd, POLLIN, 0};
        if (poll(&p, 1, 100) != 1)
            continue;
        int fd = accept(t->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        redisReader *rd = redisReaderCreate();
        char buf[4096];
        ssize_t got;
        while (!atomic_load(&t->stop) && (got = read(fd, buf, sizeof buf)) > 0) {
            redisReaderFeed(rd, buf, (size_t)got);
            void *req = NULL;
            while (redisReaderGetReply(rd, &req) == REDIS_OK && req != NULL) {
                redisReply *q = req;
                if (q->type == REDIS_REPLY_ARRAY && q->elements > 0 &&
                    strcasecmp(q->element[0]->str, "CLUSTER") == 0) {
                    char slots[128];
                    int len = snprintf(
                        slots, sizeof slots,
                        "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:%d\r\n", t->port);
                    if (send(fd, slots, (size_t)len, MSG_NOSIGNAL) != len)
                        break;
                } else {
                    trickle(t, fd, "$5\r\nhello\r\n", 11);
                }
                freeReplyObject(q);
            }
        }
        redisReaderFree(rd);
        close(fd);
    }
    return NULL;
}

/* A node that trickles its reply never holds a request past the command
 * timeout: before, each read(2) got the whole timeout again and the fetch
 * waited for the complete (foreign) reply. */
static void test_trickled_reply_times_out(void **state)
{
    (void)state;
    trickler t = {.stop = 0};
    t.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(t.lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    assert_int_equal(bind(t.lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(t.lfd, 4), 0);
    assert_int_equal(getsockname(t.lfd, (struct sockaddr *)&a, &alen), 0);
    t.port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&t.th, NULL, trickler_main, &t), 0);
    char nodes[64];
    snprintf(nodes, sizeof nodes, "127.0.0.1:%d", t.port);
    vkvr_config cfg;
    vkvr_config_default(&cfg);
    cfg.nodes = nodes;
    cfg.timeout_ms = 600;
    cfg.retry_ms = 200;
    cfg.threads = 1;
    vkvr *r = NULL;
    assert_int_equal(vkvr_open(&cfg, &r, NULL, 0), 0);
    vkv_key k = key_of(10077);
    void *got = NULL;
    uint64_t sz = 0;
    assert_int_equal(fetch_sync(r, NS, &k, &got, &sz), VKV_ETIMEDOUT);
    vkvr_stats st;
    vkvr_stats_get(r, &st);
    assert_true(st.timeouts >= 1);
    assert_int_equal(st.foreign, 0); /* the reply was never taken whole */
    atomic_store(&t.stop, 1);
    vkvr_close(r);
    pthread_join(t.th, NULL);
    close(t.lfd);
}

/* Bytes master i has sent to its clients so far (INFO stats). */
static long long net_out(int i)
{
    redisReply *x = vkvt_redis_cmd(&g_rc, i, "INFO stats");
    assert_non_null(x);
    assert_int_equal(x->type, REDIS_REPLY_STRING);
    const char *p = strstr(x->str, "total_net_output_bytes:");
    assert_non_null(p);
    long long v = atoll(p + strlen("total_net_output_bytes:"));
    freeReplyObject(x);
    return v;
}

/* Oversized values planted under a manifest's or a piece's name are refused
 * without being read whole: the node sends at most the largest manifest,
 * or one byte more than the piece, not the 8 MiB planted. */
static void test_oversized_values_read_bounded(void **state)
{
    (void)state;
    vkvr *r = open_tier(64 << 10, 2000);
    enum { BIG = 8 << 20 };
    char *big = malloc(BIG);
    memset(big, 'x', BIG);
    vkv_key kd = key_of(15005), ke = key_of(15006);
    char name[VKVR_KEYNAME_MAX];
    vkvr_name_manifest(name, sizeof name, "vkv:", NS, &kd);
    int od = owner_of(&kd);
    redisReply *x = vkvt_redis_cmd(&g_rc, od, "SET %s %b", name, big, (size_t)BIG);
    assert_non_null(x);
    freeReplyObject(x);
    void *got = NULL;
    uint64_t sz = 0;
    long long before = net_out(od);
    assert_int_equal(fetch_sync(r, NS, &kd, &got, &sz), VKV_ECORRUPT);
    assert_true(net_out(od) - before < (long long)VKVR_MAN_MAX + (64 << 10));

    size_t n;
    void *blk = block_make(NS, &ke, 5, 16, 128, &n);
    assert_int_equal(publish_sync(r, NS, &ke, blk, n), 0);
    vkvr_manifest m;
    void *mb;
    manifest_of(&ke, &m, &mb);
    vkvr_name_piece(name, sizeof name, "vkv:", NS, &ke, m.nonce, 0);
    free(mb);
    int oe = owner_of(&ke);
    x = vkvt_redis_cmd(&g_rc, oe, "SET %s %b", name, big, (size_t)BIG);
    freeReplyObject(x);
    before = net_out(oe);
    assert_int_equal(fetch_sync(r, NS, &ke, &got, &sz), VKV_ECHECKSUM);
    /* the manifest and at most one pipeline of 4 pieces, each cut at 64 KiB + 1 */
    assert_true(net_out(oe) - before < (long long)VKVR_MAN_MAX + 5 * (64 << 10) + (64 << 10));
    vkvr_stats st;
    vkvr_stats_get(r, &st);
    assert_int_equal(st.foreign, 1);
    assert_int_equal(st.corrupt, 1);
    free(blk);
    free(big);
    vkvr_close(r);
}

/* A fleet whose ACL user lacks GETRANGE (set up from an older REMOTE.md)
 * still works: the first refusal switches the reads to GET. */
static void test_acl_without_getrange(void **state)
{
    (void)state;
    for (int i = 0; i < g_rc.n; i++) {
        redisReply *x = vkvt_redis_cmd(&g_rc, i,
                                       "ACL SETUSER nogr on >pw ~vkv:* +get +set +exists +del "
                                       "+cluster|slots +asking +auth");
        assert_non_null(x);
        assert_int_equal(x->type, REDIS_REPLY_STATUS);
        freeReplyObject(x);
    }
    vkvr_config cfg;
    vkvr_config_default(&cfg);
    cfg.nodes = g_rc.nodes;
    cfg.user = "nogr";
    cfg.password = "pw";
    cfg.piece_size = 64 << 10;
    cfg.timeout_ms = 2000;
    cfg.retry_ms = 200;
    vkvr *r = NULL;
    assert_int_equal(vkvr_open(&cfg, &r, NULL, 0), 0);
    vkv_key k = key_of(16006), miss = key_of(16007);
    size_t n;
    void *blk = block_make(NS, &k, 6, 8, 128, &n);
    void *got = NULL;
    uint64_t sz = 0;
    assert_int_equal(fetch_sync(r, NS, &miss, &got, &sz), VKV_ENOTFOUND);
    publish_and_fetch_back(r, &k, blk, n);
    vkvr_close(r);
    for (int i = 0; i < g_rc.n; i++)
        freeReplyObject(vkvt_redis_cmd(&g_rc, i, "ACL DELUSER nogr"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slots),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_flipped_piece),
        cmocka_unit_test(test_foreign),
        cmocka_unit_test(test_maxmemory),
        cmocka_unit_test(test_queue_bound),
        cmocka_unit_test(test_reshard),
        cmocka_unit_test(test_kill_master),
        cmocka_unit_test(test_evicted_piece),
        cmocka_unit_test(test_slots_assigned_late),
        cmocka_unit_test(test_trickled_reply_times_out),
        cmocka_unit_test(test_oversized_values_read_bounded),
        cmocka_unit_test(test_acl_without_getrange),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
