/*
 * daemon/cold_tier.c - vkvd's glue to the LMDB cold tier (server_int.h).
 *
 * The store calls hook_evict for each victim it spills (read in place from
 * its pages, which stay SPILLING until the write is done, or copied when
 * the room is needed at once; checked by the writer before it writes;
 * bounded by spill-queue) and hook_drop for
 * each entry that leaves for good. FETCH starts restores of the cold keys
 * after its hot prefix into reserved pages and waits (deferred); completions
 * arrive on the cold tier's eventfd and are applied on the loop thread.
 * VERIFY runs the tier's checksum verification on a thread of its own.
 */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/sched.h"
#include "daemon/server_int.h"
#include "vkv/codec.h"

/* The cold-thread-policy setting as an enum vkvs_cold_sched (whose values
 * are those of enum vkv_sched_policy). */
static int vkvd_cold_policy(const vkvd_config *cfg)
{
    return !strcmp(cfg->cold_thread_policy, "idle")    ? VKVS_COLD_SCHED_IDLE
           : !strcmp(cfg->cold_thread_policy, "batch") ? VKVS_COLD_SCHED_BATCH
                                                       : VKVS_COLD_SCHED_NORMAL;
}

/* ---- VERIFY: cold-tier checksum verification in the background ---- */

/* A cold-tier checksum verification running on its own thread (VERIFY). */
struct verify_job {
    pthread_t thr;
    vkvs_cold *cold;
    atomic_bool cancel; /* set by verify_join: stop at the next entry */
    bool drop;
    bool started;     /* thr was created (join it before the next) */
    int policy, nice; /* the thread's scheduling: the cold threads' */
    atomic_bool running;
    atomic_uint_fast64_t entries_done, entries_total, bytes_done, bytes_total;
    atomic_uint_fast64_t corrupt, dropped;
};

/* Progress callback of vkvs_cold_verify: publishes the counts; stops the
 * run when the daemon shuts down. */
static int verify_progress(void *ctx, uint64_t done, uint64_t total, uint64_t done_bytes,
                           uint64_t total_bytes)
{
    struct verify_job *j = ctx;
    j->entries_done = done;
    j->entries_total = total;
    j->bytes_done = done_bytes;
    j->bytes_total = total_bytes;
    return j->cancel ? 1 : 0;
}

/* Thread body: one full verification of the cold tier. */
static void *verify_main(void *arg)
{
    struct verify_job *j = arg;
    /* a full read of the tier: background work, as the cold threads
     * (best effort, and never above the daemon's own nice value) */
    (void)vkv_sched_lower_self(j->policy, j->nice, 0);
    vkvs_cold_verify_report rep;
    memset(&rep, 0, sizeof rep);
    int rc =
        vkvs_cold_verify(j->cold, j->drop ? VKVS_COLD_VERIFY_DROP : 0, verify_progress, j, &rep);
    j->corrupt = rep.corrupt;
    j->dropped = rep.dropped;
    VKV_INFO("cold-tier verification %s: %llu entries, %llu corrupt, %llu dropped",
             rc == 0 ? "done" : "stopped", (unsigned long long)rep.entries,
             (unsigned long long)rep.corrupt, (unsigned long long)rep.dropped);
    j->running = false;
    return NULL;
}

/* VERIFY: with `start`, starts a run unless one is running; always reports
 * the progress of the current or last run. */
int vkvd_verify_op(vkvd_server *srv, bool start, bool drop, vkvp_verify_rep *out)
{
    if (!srv->cold)
        return VKV_ECOLD;
    struct verify_job *j = srv->verify;
    if (!j) {
        j = srv->verify = calloc(1, sizeof *j);
        if (!j)
            return VKV_ENOMEM;
    }
    if (start && !j->running) {
        if (j->started)
            pthread_join(j->thr, NULL);
        j->started = false;
        j->cold = srv->cold;
        j->policy = vkvd_cold_policy(&srv->cfg);
        j->nice = (int)srv->cfg.cold_thread_nice;
        j->cancel = false;
        j->drop = drop;
        j->entries_done = j->entries_total = j->bytes_done = j->bytes_total = 0;
        j->corrupt = j->dropped = 0;
        j->running = true;
        if (pthread_create(&j->thr, NULL, verify_main, j) != 0) {
            j->running = false;
            return VKV_ESYS;
        }
        j->started = true;
    }
    out->running = j->running;
    out->entries_done = j->entries_done;
    out->entries_total = j->entries_total;
    out->bytes_done = j->bytes_done;
    out->bytes_total = j->bytes_total;
    out->corrupt = j->corrupt;
    out->dropped = j->dropped;
    return 0;
}

/* Stops and waits for a verification thread (shutdown). */
void vkvd_verify_join(vkvd_server *srv)
{
    if (srv->verify && srv->verify->started) {
        srv->verify->cancel = true;
        pthread_join(srv->verify->thr, NULL);
    }
    free(srv->verify);
    srv->verify = NULL;
}

/* ---- cold tier ------------------------------------------------------------------ */

/* Records an in-flight cold operation (*out, if not NULL, gets it). Returns
 * 0 or VKV_ENOMEM. */
static int op_add_ex(vkvd_server *srv, uint64_t tag, int op, const char *ns, const vkv_key *key,
                     struct pending_op **out)
{
    struct pending_op *o = calloc(1, sizeof *o);
    if (!o)
        return VKV_ENOMEM;
    if (out)
        *out = o;
    o->tag = tag;
    o->op = op;
    snprintf(o->ns, sizeof o->ns, "%s", ns);
    o->key = *key;
    o->next = srv->ops;
    srv->ops = o;
    return 0;
}

/* Frees an op's restore staging. */
static void op_free(struct pending_op *o)
{
    free(o->staging);
    free(o->ext);
    free(o);
}

/* Finds the op with `tag`, or NULL. */
static struct pending_op *op_find(vkvd_server *srv, uint64_t tag)
{
    for (struct pending_op *o = srv->ops; o; o = o->next)
        if (o->tag == tag)
            return o;
    return NULL;
}

/* Removes the op with `tag` (if any). */
static void op_remove(vkvd_server *srv, uint64_t tag)
{
    for (struct pending_op **pp = &srv->ops; *pp; pp = &(*pp)->next) {
        if ((*pp)->tag == tag) {
            struct pending_op *o = *pp;
            *pp = o->next;
            op_free(o);
            return;
        }
    }
}

/* True if an op of kind `op` (VKVS_COLD_OP_SPILL / _RESTORE; 0: either)
 * on (ns, key) is in flight. */
static bool op_pending(const vkvd_server *srv, int op, const char *ns, const vkv_key *key)
{
    for (const struct pending_op *o = srv->ops; o; o = o->next)
        if ((op == 0 || o->op == op) && memcmp(&o->key, key, sizeof *key) == 0 &&
            strcmp(o->ns, ns) == 0)
            return true;
    return false;
}

/* True if a spill of (ns, key) is in flight: it will write a newer cold
 * record than the one a failure, EVICTED or DROPPED notice is about (a
 * restore in flight does not count: it reads the record the notice is
 * about). */
static bool spill_pending(const vkvd_server *srv, const char *ns, const vkv_key *key)
{
    return op_pending(srv, VKVS_COLD_OP_SPILL, ns, key);
}

/* Fills iov[0..*n) with the host addresses of the first `size` bytes of
 * extents[0..next) (page runs of host slabs; the last run is cut at
 * `size`). Returns false when a slab is not host-addressable (device
 * memory) or the runs do not fit in `cap`. */
static bool host_iov(vkvs_store *st, const vkvs_extent *ext, uint32_t next, uint64_t size,
                     struct iovec *iov, int cap, int *n)
{
    uint32_t ps = vkvs_page_size(st);
    if (next > (uint32_t)cap)
        return false;
    int k = 0;
    for (uint32_t e = 0; e < next && size > 0; e++) {
        const vkvs_slab *sl = vkvs_slab_get(st, ext[e].slab);
        if (!sl->host)
            return false;
        uint64_t run = (uint64_t)ext[e].npages * ps;
        iov[k].iov_base = (uint8_t *)sl->host + (uint64_t)ext[e].first_page * ps;
        iov[k].iov_len = (size_t)(run < size ? run : size);
        size -= iov[k].iov_len;
        k++;
    }
    *n = k;
    return size == 0;
}

/* True while spilling to shard k is paused (server_int.h). */
static bool shard_paused(const vkvd_server *srv, int k)
{
    return k >= 0 && k < VKVS_COLD_SHARDS_MAX && srv->cold_pause_until_ms[k] != 0 &&
           vkv_now_ms() < srv->cold_pause_until_ms[k];
}

/* See server_int.h. */
bool vkvd_cold_paused(const vkvd_server *srv)
{
    for (int k = 0; k < VKVS_COLD_SHARDS_MAX; k++)
        if (shard_paused(srv, k))
            return true;
    return false;
}

/* The longest run of failed spills of any shard now. */
static uint32_t max_fail_streak(const vkvd_server *srv)
{
    uint32_t m = 0;
    for (int k = 0; k < VKVS_COLD_SHARDS_MAX; k++)
        m = srv->cold_fail_streak[k] > m ? srv->cold_fail_streak[k] : m;
    return m;
}

/* Notes the outcome of a spill of (ns, key) for its shard's pause
 * (server_int.h): a success ends it, a failure for the tier's sake (not
 * one about the block) extends it. */
static void note_spill_outcome(vkvd_server *srv, int status, const char *ns, const vkv_key *key)
{
    int k = vkvs_cold_shard_of(srv->cold, ns, key);
    if (k < 0 || k >= VKVS_COLD_SHARDS_MAX)
        return;
    if (status == 0) {
        if (srv->cold_fail_streak[k] > 0)
            VKV_INFO("cold shard %d takes spills again (after %u failed)", k,
                     srv->cold_fail_streak[k]);
        srv->cold_fail_streak[k] = 0;
        srv->cold_pause_until_ms[k] = 0;
        return;
    }
    /* only the tier's own failures pause; anything else is about one block
     * (a bad block is dropped, a block too large for the tier stays hot) */
    if (status != VKV_ENOSPC && status != VKV_EIO && status != VKV_ECOLD && status != VKV_EPERM &&
        status != VKV_ENOMEM)
        return;
    uint32_t n = srv->cold_fail_streak[k] < 7 ? srv->cold_fail_streak[k] : 7;
    uint64_t ms = 100ull << n; /* 100 ms .. 12.8 s */
    if (ms > 10000)
        ms = 10000;
    if (!shard_paused(srv, k)) {
        srv->cold_spill_pauses++;
        VKV_WARN("spill of a '%s' block to cold shard %d failed: %s: spilling to it paused for "
                 "%llu ms (its victims stay hot, or are dropped when room is needed)",
                 ns, k, vkv_strerror(status), (unsigned long long)ms);
    }
    srv->cold_fail_streak[k]++;
    srv->cold_pause_until_ms[k] = vkv_now_ms() + ms;
}

/* Queues a spill of victim `v`: in place from its host pages (the store
 * keeps them SPILLING until the completion; no copy, no hash on the loop)
 * when the store allows holding them, else through a copy (device slabs,
 * or room needed now). The cold tier's writer checks the block (its own
 * checksum and (namespace, key) identity, spill_check) before anything is
 * written. Returns VKVS_SPILL_HELD, 0 (copied), VKV_EBUSY (past the
 * spill-queue bound) or an error. */
static int hook_evict(void *arg, vkvs_store *st, const vkvs_victim *v)
{
    vkvd_server *srv = arg;
    if (!srv->cold)
        return VKV_ECOLD;
    if (shard_paused(srv, vkvs_cold_shard_of(srv->cold, v->ns, v->key)))
        return VKV_EBUSY; /* stays hot (FLUSH, EVICT) or is dropped (room) */
    struct iovec iov[64];
    int niov = 0;
    bool held = v->may_hold && host_iov(st, v->extents, v->nextents, v->size, iov, 64, &niov);
    /* Bounded: past spill-queue bytes in flight FLUSH/EVICT stop (and
     * continue as the writer drains) and an ALLOC waits; a copy-out to make
     * room now may go to 4x that before the store drops the victim's hot
     * copy instead. */
    uint64_t bound = v->for_room && !held ? 4 * srv->cfg.spill_queue : srv->cfg.spill_queue;
    if (srv->spill_queued > 0 && srv->spill_queued + v->size > bound)
        return VKV_EBUSY;
    void *buf = NULL;
    if (!held) {
        if (!(buf = malloc(v->size)))
            return VKV_ENOMEM;
        int rc = vkvs_read(st, v->extents, v->nextents, 0, buf, v->size);
        if (rc) {
            free(buf);
            return rc;
        }
    }
    uint64_t tag = ++srv->next_tag;
    struct pending_op *o = NULL;
    int rc = op_add_ex(srv, tag, VKVS_COLD_OP_SPILL, v->ns, v->key, &o);
    if (rc == 0)
        rc = held ? vkvs_cold_spill_iov(srv->cold, v->ns, v->key, iov, niov, tag)
                  : vkvs_cold_spill(srv->cold, v->ns, v->key, buf, v->size, tag);
    if (rc) {
        if (o)
            op_remove(srv, tag);
        free(buf);
        return rc;
    }
    o->size = v->size;
    o->held = held;
    srv->spill_queued += v->size;
    if (srv->spill_queued > srv->spill_queued_peak)
        srv->spill_queued_peak = srv->spill_queued;
    return held ? VKVS_SPILL_HELD : 0;
}

/* The cold tier's pre-write check (its writer thread, any spill): the
 * block must pass its own payload checksum and be bound to (ns, key), so a
 * block a client corrupted in shared memory is never made durable.
 * Returns VKV_OK or the error the SPILL completion then carries. */
static int spill_check(void *arg, const char *ns, const vkv_key *key, const void *block, size_t len)
{
    (void)arg;
    vkv_block_header h;
    int rc = vkv_block_check(block, len, VKV_DECODE_VERIFY, &h);
    if (rc) /* any unsound block is a bad block (vkvs_spill_block_bad) */
        return rc == VKV_ECHECKSUM ? rc : VKV_ECORRUPT;
    uint8_t id[VKV_IDENT_LEN];
    vkv_block_ident(ns, strlen(ns), key->b, id);
    return vkv_block_check_ident(&h, id);
}

void vkvd_cold_store_copy(vkvd_server *srv, const char *ns, const vkv_key *key, void *buf,
                          uint64_t size)
{
    uint64_t tag = ++srv->next_tag;
    struct pending_op *o = NULL;
    /* When no copy reaches LMDB, the entry must be spilled when evicted
     * (the store treats it as restored from the cold tier otherwise). */
    if (!srv->cold || srv->spill_queued + size > srv->cfg.spill_queue ||
        op_add_ex(srv, tag, VKVS_COLD_OP_SPILL, ns, key, &o) != 0) {
        free(buf);
        vkvs_cold_copy_gone(srv->st, ns, key);
        return;
    }
    if (vkvs_cold_spill(srv->cold, ns, key, buf, size, tag) != 0) {
        op_remove(srv, tag);
        free(buf);
        vkvs_cold_copy_gone(srv->st, ns, key);
        return;
    }
    o->size = size;
    srv->spill_queued += size;
    if (srv->spill_queued > srv->spill_queued_peak)
        srv->spill_queued_peak = srv->spill_queued;
}

/* Store drop hook: a deleted or dropped entry leaves the cold tier too. */
static void hook_drop(void *arg, uint32_t ns_id, const char *ns, const vkv_key *key)
{
    vkvd_server *srv = arg;
    (void)ns_id;
    if (srv->cold)
        vkvs_cold_delete(srv->cold, ns, key, ++srv->next_tag);
}

/* Queues the restore of COLD key (ns, key), whose pages `b` were just
 * reserved, straight into host slabs or through a staging buffer (device
 * slabs; copied in at completion). Returns 0 or an error (nothing queued). */
static int queue_restore(vkvd_server *srv, const char *ns, const vkv_key *key, const vkvs_block *b)
{
    struct iovec iov[64];
    int niov = 0;
    bool host = host_iov(srv->st, b->extents, b->nextents, b->size, iov, 64, &niov);
    uint64_t tag = ++srv->next_tag;
    struct pending_op *o = NULL;
    int rc = op_add_ex(srv, tag, VKVS_COLD_OP_RESTORE, ns, key, &o);
    if (rc)
        return rc;
    if (!host) {
        o->staging = malloc(b->size);
        o->ext = malloc(b->nextents * sizeof *o->ext);
        if (!o->staging || !o->ext) {
            op_remove(srv, tag);
            return VKV_ENOMEM;
        }
        memcpy(o->ext, b->extents, b->nextents * sizeof *o->ext);
        o->next_n = b->nextents;
        o->size = b->size;
        iov[0].iov_base = o->staging;
        iov[0].iov_len = b->size;
        niov = 1;
    }
    rc = vkvs_cold_restore(srv->cold, ns, key, iov, niov, tag);
    if (rc)
        op_remove(srv, tag);
    return rc;
}

/* Starts restores of the cold keys[0..n) (those following a FETCH's ready
 * prefix, namespace `ns`) into freshly reserved arena pages. Returns how many
 * of them are now in flight (started here or earlier, still spilling, or
 * waiting for spills to free their room). */
size_t vkvd_cold_start_restores(vkvd_server *srv, const char *ns, const vkv_key *keys, size_t n)
{
    size_t inflight = 0;
    for (size_t i = 0; i < n; i++) {
        if (op_pending(srv, 0, ns, &keys[i])) {
            inflight++;
            continue;
        }
        vkvs_block b;
        vkvs_set_room_wait(srv->st, true);
        int rc = vkvs_restore_begin(srv->st, ns, &keys[i], &b);
        vkvs_set_room_wait(srv->st, false);
        if (rc == VKVS_WAIT) {
            inflight++; /* spills in flight free its room: wait for them */
            break;
        }
        if (rc)
            break; /* absent, or no room: the prefix ends here */
        if ((rc = queue_restore(srv, ns, &keys[i], &b)) != 0) {
            vkvs_restore_end(srv->st, ns, &keys[i], rc);
            break;
        }
        inflight++;
    }
    return inflight;
}

/* Loads every cold entry into the index so LOOKUP counts them at once. */
static int load_cold_entry(void *ctx, const vkvs_cold_entry_info *e)
{
    vkvd_server *srv = ctx;
    int rc = vkvs_add_cold(srv->st, e->ns, &e->key, e->size, e->last_access_ms);
    if (rc && rc != VKV_EEXIST)
        VKV_WARN("cold entry of '%s' not indexed: %s", e->ns, vkv_strerror(rc));
    return 0;
}

/* Opens the cold tier under state_dir/cold and indexes its entries. A
 * failure is logged and leaves the daemon running hot-only. */
void vkvd_cold_open(vkvd_server *srv)
{
    char dir[VKVD_PATH_MAX + 16], err[256] = "";
    if (srv->cfg.cold_max == 0) {
        VKV_INFO("cold tier disabled (cold-max 0)");
        return;
    }
    snprintf(dir, sizeof dir, "%s/cold", srv->cfg.state_dir);
    vkvs_cold_config cc;
    vkvs_cold_config_default(&cc);
    cc.dir = dir;
    cc.max_bytes = srv->cfg.cold_max;
    cc.sync_interval_ms = srv->cfg.cold_sync_ms;
    cc.spill_check = spill_check;
    cc.spill_check_arg = srv;
    /* the writer and readers are background I/O: on a small machine the
     * event loop must win the CPU when a request arrives (issue 14;
     * cold-thread-policy, cold-thread-nice in docs/CONFIG.md) */
    cc.thread_nice = (int)srv->cfg.cold_thread_nice;
    cc.thread_policy = vkvd_cold_policy(&srv->cfg);
    cc.shards = (int)srv->cfg.cold_shards;
    /* A damaged environment (a power cut with a lying disk, a bad copy...)
     * is never served and never silently dropped: the tier moves it aside
     * for inspection (the whole tier, or just the damaged shard) and starts
     * an empty one in its place. */
    cc.quarantine_damaged = 1;
    int rc = vkvs_cold_open(&cc, &srv->cold, err, sizeof err);
    if (rc) {
        VKV_ERROR("cold tier at %s unavailable (%s): %s; serving from memory only", dir,
                  vkv_strerror(rc), err);
        srv->cold = NULL;
        return;
    }
    srv->cold_fd = vkvs_cold_fd(srv->cold);
    vkvs_cold_stats cs;
    vkvs_cold_stats_get(srv->cold, &cs);
    srv->cold_envs_quarantined += cs.envs_quarantined;
    uint64_t t0 = vkv_now_ms();
    rc = vkvs_cold_foreach(srv->cold, load_cold_entry, srv);
    if (rc != 0) /* the readable shards were still indexed */
        VKV_ERROR("cold tier %s: the entries of a shard that cannot be read are not indexed "
                  "(not served until it is repaired): %s",
                  dir, vkv_strerror(rc));
    vkvs_stats s;
    vkvs_stats_get(srv->st, &s);
    VKV_INFO("cold tier %s (%llu shard%s): %llu entries (%llu MiB) indexed in %llu ms", dir,
             (unsigned long long)cs.shards, cs.shards == 1 ? "" : "s",
             (unsigned long long)s.entries_cold, (unsigned long long)(s.bytes_cold >> 20),
             (unsigned long long)(vkv_now_ms() - t0));
    vkvs_hooks h = {hook_evict, hook_drop, srv};
    vkvs_set_hooks(srv->st, &h);
}

/* A restored block must be the one committed under (ns, key): the same
 * header and identity check as at COMMIT (validate_block), on the entry's
 * pages (it is RESTORING, its pages held). VKV_OK or the error (the entry
 * is then dropped). */
static int restored_ident_ok(vkvd_server *srv, const char *ns, const vkv_key *key)
{
    vkvs_block b;
    int rc = vkvs_restoring_block(srv->st, ns, key, &b);
    if (rc == 0)
        rc = vkvd_validate_block(srv, srv->st, ns, key, &b);
    if (rc)
        VKV_WARN("restored block of '%s' refused (%s): dropped", ns, vkv_strerror(rc));
    return rc;
}

/* Applies one cold-tier completion to the index. */
static void apply_completion(vkvd_server *srv, const vkvs_cold_completion *c)
{
    switch (c->op) {
    case VKVS_COLD_OP_SPILL: {
        struct pending_op *o = op_find(srv, c->tag);
        bool held = o && o->held;
        if (o)
            srv->spill_queued -= o->size;
        op_remove(srv, c->tag);
        if (c->status == VKV_EIDENT)
            srv->identity_failures++;
        bool bad = vkvs_spill_block_bad(c->status);
        /* a bad block: one line each; the tier's own failures (disk full,
         * I/O): one line when they pause spilling (note_spill_outcome) */
        if (bad)
            VKV_WARN("spill of a '%s' block failed: %s", c->ns, vkv_strerror(c->status));
        note_spill_outcome(srv, c->status, c->ns, &c->key);
        if (held) {
            /* the pages are released (or the block is READY again) */
            vkvs_spill_done(srv->st, c->ns, &c->key, c->status);
            if (bad)
                srv->cold_spill_lost++;
        } else if (c->status && !spill_pending(srv, c->ns, &c->key)) {
            /* A copy that never reached LMDB. Evicted by copy: the entry
             * left the arena, so it is gone (counted lost). A remote
             * install's cold copy: the block is still hot, and must be
             * spilled when evicted (copy_gone clears COLDCOPY). A later
             * spill of the same key still in flight (it was deleted, put
             * and evicted again meanwhile) is the newer one's, and stays. */
            if (vkvs_cold_copy_gone(srv->st, c->ns, &c->key) == 1)
                srv->cold_spill_lost++;
        }
        break;
    }
    case VKVS_COLD_OP_RESTORE: {
        int status = c->status;
        struct pending_op *o = op_find(srv, c->tag);
        if (status == 0 && o && o->staging)
            status = vkvs_write(srv->st, o->ext, o->next_n, 0, o->staging, o->size);
        if (status == 0)
            status = restored_ident_ok(srv, c->ns, &c->key);
        op_remove(srv, c->tag);
        vkvs_restore_end(srv->st, c->ns, &c->key, status);
        if (status) {
            srv->cold_restore_failed++;
            VKV_WARN("restore of a '%s' block failed: %s", c->ns, vkv_strerror(status));
            if (status != VKV_EIO)
                vkvs_forget_cold(srv->st, c->ns, &c->key);
        }
        break;
    }
    case VKVS_COLD_OP_EVICTED:
        /* a notice about the record the cold tier held; a spill of the key
         * still queued will write a newer one */
        if (!spill_pending(srv, c->ns, &c->key))
            vkvs_cold_copy_gone(srv->st, c->ns, &c->key);
        break;
    case VKVS_COLD_OP_DROPPED:
        srv->cold_corrupt_dropped++;
        VKV_WARN("corrupt cold block of '%s' dropped (checksum)", c->ns);
        /* about the corrupt record: a spill of a newer version queued since
         * (the key was put again after the failed restore) writes its own */
        if (!spill_pending(srv, c->ns, &c->key))
            vkvs_cold_copy_gone(srv->st, c->ns, &c->key);
        break;
    default:
        break;
    }
}

/* Continues a FLUSH that stopped at the spill-queue bound, or the final
 * spill at shutdown: evicts (to cold) what the queue takes now, through a
 * short-lived admin session. Returns the store's status (VKV_EBUSY: more
 * to do once the writer drains). */
int vkvd_cold_flush_continue(vkvd_server *srv)
{
    uint64_t sid;
    size_t n = 0;
    int rc = vkvs_session_open(srv->st, NULL, getpid(), true, &sid);
    if (rc)
        return rc;
    rc = vkvs_evict(srv->st, sid, srv->flush_ns[0] ? srv->flush_ns : NULL, NULL, 0, true, &n);
    vkvs_session_close(srv->st, sid);
    srv->flush_more = rc == VKV_EBUSY;
    return rc;
}

/* Drains cold-tier completions, applies them, and re-runs waiting FETCHes. */
void vkvd_cold_on_ready(vkvd_server *srv)
{
    vkvs_cold_completion c[64];
    int n, any = 0;
    while ((n = vkvs_cold_poll(srv->cold, c, 64)) > 0) {
        for (int i = 0; i < n; i++)
            apply_completion(srv, &c[i]);
        any = 1;
    }
    /* the FETCHes waiting for these restores first: their leases keep the
     * restored blocks from a FLUSH continuation (which would evict them to
     * cold again before they were served, and again, in a loop) */
    if (any && srv->deferred)
        vkvd_rerun_deferred(srv);
    if (any && srv->flush_more && !vkvd_cold_paused(srv))
        vkvd_cold_flush_continue(srv);
}

/* See server_int.h. */
void vkvd_cold_tick(vkvd_server *srv)
{
    /* a FLUSH that stopped while spilling was paused resumes when the pause
     * ends, even if no completion arrives then */
    if (srv->cold && srv->flush_more && !vkvd_cold_paused(srv) && srv->spill_queued == 0)
        vkvd_cold_flush_continue(srv);
}

int vkvd_cold_shutdown(vkvd_server *srv)
{
    if (!srv->cold)
        return 0;
    if (srv->cfg.spill_on_exit) {
        /* End every session first so pinned entries become evictable. */
        int closed = vkvs_reap(srv->st, UINT64_MAX, NULL, NULL);
        vkvs_stats before;
        vkvs_stats_get(srv->st, &before);
        srv->flush_ns[0] = '\0';
        /* in rounds of at most spill-queue bytes, waiting for the writer */
        uint64_t idle_since = vkv_now_ms(), last = srv->spill_queued;
        while (vkvd_cold_flush_continue(srv) == VKV_EBUSY) {
            struct pollfd cp = {srv->cold_fd, POLLIN, 0};
            if (poll(&cp, 1, 100) > 0)
                vkvd_cold_on_ready(srv);
            /* a tier that keeps failing its writes (a full disk) ends the
             * final spill once the pauses reach 1.6 s, not after 60 s */
            if (vkvd_cold_paused(srv) && srv->spill_queued == 0 && max_fail_streak(srv) >= 5) {
                VKV_ERROR("the cold tier fails its writes (%u in a row): the rest of the hot "
                          "tier is not spilled",
                          max_fail_streak(srv));
                break;
            }
            if (srv->spill_queued != last) {
                last = srv->spill_queued;
                idle_since = vkv_now_ms();
            } else if (vkv_now_ms() - idle_since > 60000) {
                VKV_ERROR("the cold-tier writer made no progress for 60 s: the rest of "
                          "the hot tier is not spilled");
                break;
            }
        }
        vkvs_stats after;
        vkvs_stats_get(srv->st, &after);
        VKV_INFO("spilled %llu hot entries to the cold tier (%d sessions ended)",
                 (unsigned long long)(after.spills - before.spills), closed);
    }
    int rc = vkvs_cold_flush_wait(srv->cold);
    vkvd_cold_on_ready(srv);
    if (rc)
        VKV_ERROR("final cold-tier sync failed: %s", vkv_strerror(rc));
    return rc;
}

void vkvd_cold_close(vkvd_server *srv)
{
    if (srv->cold) {
        vkvs_cold_close(srv->cold);
        srv->cold = NULL;
    }
    while (srv->ops) {
        struct pending_op *o = srv->ops;
        srv->ops = o->next;
        op_free(o);
    }
}
