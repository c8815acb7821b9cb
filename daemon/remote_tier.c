/*
 * daemon/remote_tier.c - vkvd's glue to the remote tier (remote/remote.h,
 * docs/REMOTE.md; server_int.h).
 *
 * A LOOKUP or FETCH whose prefix ends at a key neither the arena nor LMDB
 * holds asks the remote tier for the rest of its keys and waits (deferred,
 * at most remote-wait-ms). The tier's I/O threads fetch and verify each
 * block into a buffer of their own; the completion, on the loop thread,
 * checks it once more as COMMIT does (header, total size, identity), copies
 * it into freshly reserved arena pages (the entry is RESTORING meanwhile,
 * served by nobody) and hands the buffer to the LMDB writer, then re-runs
 * the waiting requests, which now find the blocks hot. A miss or a failure
 * is remembered for remote-miss-ms so the same key does not wait again.
 * Committed blocks are copied out and queued for publishing (write-behind);
 * past remote-queue bytes a commit is not published (counted).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/clock.h"
#include "common/log.h"
#include "daemon/server_int.h"
#include "vkv/codec.h"

#define MISS_SLOTS 4096 /* direct-mapped memory of recent misses */
#define AHEAD_MAX  64   /* keys of one request asked for at most */

/* A remote fetch in flight, by completion tag. */
struct remote_op {
    struct remote_op *next;
    uint64_t tag;
    char ns[VKVR_NS_MAX + 1];
    vkv_key key;
};

/* Recent misses: (ns, key) hash -> monotonic ms until which it is not
 * asked again. */
struct remote_miss {
    uint64_t h[MISS_SLOTS];
    uint64_t until_ms[MISS_SLOTS];
};

/* Hash of (ns, key) for the miss memory. */
static uint64_t miss_hash(const char *ns, const vkv_key *key)
{
    return XXH3_64bits_withSeed(key->b, sizeof key->b, XXH3_64bits(ns, strlen(ns))) | 1u;
}

/* True if (ns, key) missed or failed less than remote-miss-ms ago. */
static bool missed_recently(vkvd_server *srv, const char *ns, const vkv_key *key)
{
    uint64_t h = miss_hash(ns, key);
    size_t i = h % MISS_SLOTS;
    return srv->rmiss->h[i] == h && vkv_now_ms() < srv->rmiss->until_ms[i];
}

/* Remembers a miss/failure of (ns, key). */
static void remember_miss(vkvd_server *srv, const char *ns, const vkv_key *key)
{
    uint64_t h = miss_hash(ns, key);
    size_t i = h % MISS_SLOTS;
    srv->rmiss->h[i] = h;
    srv->rmiss->until_ms[i] = vkv_now_ms() + srv->cfg.remote_miss_ms;
}

/* True if a fetch of (ns, key) is in flight. */
static bool rop_pending(const vkvd_server *srv, const char *ns, const vkv_key *key)
{
    for (const struct remote_op *o = srv->rops; o; o = o->next)
        if (memcmp(&o->key, key, sizeof *key) == 0 && strcmp(o->ns, ns) == 0)
            return true;
    return false;
}

void vkvd_remote_open(vkvd_server *srv)
{
    const vkvd_config *cfg = &srv->cfg;
    srv->remote_fd = -1;
    if (!cfg->remote[0])
        return;
    srv->rmiss = calloc(1, sizeof *srv->rmiss);
    vkvr_config rc;
    vkvr_config_default(&rc);
    rc.nodes = cfg->remote;
    rc.user = cfg->remote_user;
    rc.password = cfg->remote_password;
    rc.prefix = cfg->remote_prefix;
    rc.ttl_ms = cfg->remote_ttl_s * 1000;
    rc.max_block = cfg->remote_max_block;
    rc.queue_bytes = cfg->remote_queue;
    rc.piece_size = cfg->remote_piece;
    rc.timeout_ms = cfg->remote_timeout_ms;
    rc.threads = (int)cfg->remote_threads;
    char err[200] = "";
    int r = srv->rmiss ? vkvr_open(&rc, &srv->remote, err, sizeof err) : VKV_ENOMEM;
    if (r) {
        VKV_ERROR("remote tier %s unavailable (%s): %s; serving from the local tiers only",
                  cfg->remote, vkv_strerror(r), err);
        free(srv->rmiss);
        srv->rmiss = NULL;
        srv->remote = NULL;
        return;
    }
    srv->remote_fd = vkvr_fd(srv->remote);
    VKV_INFO("remote tier: Redis Cluster %s, prefix '%s', ttl %llu s, %s", cfg->remote,
             cfg->remote_prefix, (unsigned long long)cfg->remote_ttl_s,
             cfg->remote_publish ? "publishing commits" : "not publishing");
}

void vkvd_remote_close(vkvd_server *srv)
{
    vkvr_close(srv->remote); /* drops queued work; frees unpolled buffers */
    srv->remote = NULL;
    while (srv->rops) {
        struct remote_op *o = srv->rops;
        srv->rops = o->next;
        free(o);
    }
    free(srv->rmiss);
    srv->rmiss = NULL;
}

size_t vkvd_remote_start(vkvd_server *srv, uint64_t sid, const char *ns, const vkv_key *keys,
                         size_t n)
{
    size_t inflight = 0;
    if (!srv->remote)
        return 0;
    for (size_t i = 0; i < n && i < AHEAD_MAX; i++) {
        if (rop_pending(srv, ns, &keys[i])) {
            inflight++;
            continue;
        }
        size_t have = 0, cold = 0;
        if (vkvs_lookup(srv->st, sid, &keys[i], 1, &have, &cold) == 0 && have == 1)
            continue; /* fetched already (a later key may arrive first) */
        if (missed_recently(srv, ns, &keys[i]))
            break; /* the remote prefix ends here */
        struct remote_op *o = calloc(1, sizeof *o);
        if (!o)
            break;
        o->tag = ++srv->next_tag;
        snprintf(o->ns, sizeof o->ns, "%s", ns);
        o->key = keys[i];
        if (vkvr_fetch(srv->remote, ns, &keys[i], NULL, 0, o->tag) != 0) {
            free(o);
            break;
        }
        o->next = srv->rops;
        srv->rops = o;
        inflight++;
    }
    if (inflight) {
        srv->remote_waits++;
        srv->defer_limit_next_ms = srv->cfg.remote_wait_ms;
    }
    return inflight;
}

/* Removes and frees the op with `tag`; false if there was none. */
static bool rop_take(vkvd_server *srv, uint64_t tag)
{
    for (struct remote_op **pp = &srv->rops; *pp; pp = &(*pp)->next) {
        if ((*pp)->tag == tag) {
            struct remote_op *o = *pp;
            *pp = o->next;
            free(o);
            return true;
        }
    }
    return false;
}

/* Makes a verified remote block hot: a COLD index entry, restored into new
 * pages from buf, checked like a COMMIT; then the buffer goes to LMDB.
 * Takes buf. Returns 0 or the reason it was not installed. */
static int install(vkvd_server *srv, const vkvr_completion *c, void *buf)
{
    int rc = vkvs_add_cold(srv->st, c->ns, &c->key, c->size, vkv_wall_ms());
    if (rc) {
        free(buf); /* VKV_EEXIST: put or restored locally meanwhile */
        return rc;
    }
    vkvs_block b;
    rc = vkvs_restore_begin(srv->st, c->ns, &c->key, &b);
    if (rc) {
        vkvs_forget_cold(srv->st, c->ns, &c->key);
        free(buf);
        return rc;
    }
    rc = vkvs_write(srv->st, b.extents, b.nextents, 0, buf, (size_t)c->size);
    if (rc == 0)
        rc = vkvd_validate_block(srv, srv->st, c->ns, &c->key, &b);
    vkvs_restore_end(srv->st, c->ns, &c->key, rc);
    if (rc) {
        vkvs_forget_cold(srv->st, c->ns, &c->key);
        free(buf);
        return rc;
    }
    vkvd_cold_store_copy(srv, c->ns, &c->key, buf, c->size);
    return 0;
}

void vkvd_remote_on_ready(vkvd_server *srv)
{
    vkvr_completion c[32];
    int n, any = 0;
    while ((n = vkvr_poll(srv->remote, c, 32)) > 0) {
        for (int i = 0; i < n; i++) {
            if (c[i].op != VKVR_OP_FETCH) {
                free(c[i].buf);
                continue; /* publish results are counted by the tier */
            }
            if (!rop_take(srv, c[i].tag)) {
                free(c[i].buf);
                continue;
            }
            any = 1;
            if (c[i].status != 0) {
                remember_miss(srv, c[i].ns, &c[i].key);
                continue;
            }
            int rc = install(srv, &c[i], c[i].buf);
            if (rc == 0) {
                srv->remote_installed++;
                srv->remote_install_bytes += c[i].size;
            } else if (rc != VKV_EEXIST) {
                if (rc != VKV_ENOSPC) {
                    srv->remote_refused++;
                    VKV_WARN("remote block of '%s' refused: %s", c[i].ns, vkv_strerror(rc));
                }
                remember_miss(srv, c[i].ns, &c[i].key);
            }
        }
    }
    if (any && srv->deferred)
        vkvd_rerun_deferred(srv);
}

void vkvd_remote_publish(vkvd_server *srv, const char *ns, const vkv_key *key, const vkvs_block *b)
{
    if (!srv->remote || !srv->cfg.remote_publish)
        return;
    vkvr_stats s;
    vkvr_stats_get(srv->remote, &s);
    if (b->size > srv->cfg.remote_max_block || s.queue_bytes + b->size > srv->cfg.remote_queue) {
        srv->remote_publish_dropped++;
        return;
    }
    void *buf = malloc(b->size);
    if (!buf || vkvs_read(srv->st, b->extents, b->nextents, 0, buf, b->size) != 0) {
        srv->remote_publish_dropped++;
        free(buf);
        return;
    }
    if (vkvr_publish(srv->remote, ns, key, buf, b->size, ++srv->next_tag) != 0) {
        srv->remote_publish_dropped++;
        free(buf);
    }
}
