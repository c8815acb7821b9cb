/*
 * cold/writer.c - the cold tier's writer thread: the only thread that
 * opens write transactions. It applies the queued ops in submission order
 * (spill, delete, drop, touch runs, trim, sync), evicts to respect
 * max_bytes, grows the map on MDB_MAP_FULL, and runs the periodic sync and
 * mdb_reader_check.
 */
#include <errno.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/sched.h"
#include "cold/cold_int.h"
#include "common/log.h"
#include "vkv/error.h"

/* Names the calling thread (the writer or a reader) `name`, gives it the
 * configured scheduling policy (thread_policy) and nice value, with the
 * kernel's default slice (a short slice the creating thread asked for, as
 * vkvd's event loop does, is not inherited); best effort (a refusal is
 * logged, the thread runs on as it is), and counts it ready for open
 * (threads_ready). Linux threads have their own policy, nice value and
 * slice; lowering them needs no privilege. */
void vkvs_cold_thread_setup(vkvs_cold_env *c, const char *name)
{
    pthread_setname_np(pthread_self(), name);
    /* enum vkvs_cold_sched takes its values from enum vkv_sched_policy */
    if (vkv_sched_lower_self(c->cfg.thread_policy, c->cfg.thread_nice, 0) != 0)
        VKV_WARN("cold tier: cannot set this I/O thread's scheduling (%s, nice %d): %s", name,
                 c->cfg.thread_nice, strerror(errno));
    pthread_mutex_lock(&c->rlock);
    c->threads_ready++;
    pthread_cond_broadcast(&c->readycond);
    pthread_mutex_unlock(&c->rlock);
}

/* ---- the queue ------------------------------------------------------------ */

/* Appends op to the writer queue and wakes the writer; the caller holds
 * qlock. Counts the op and its payload bytes in the queue gauges (not in
 * `pending`). The queue owns op from now on. */
void vkvs_cold_wpush_locked(vkvs_cold_env *c, vkvs_cold_wop *op)
{
    op->next = NULL;
    if (c->qtail)
        c->qtail->next = op;
    else
        c->qhead = op;
    c->qtail = op;
    c->queue_ops++;
    c->queue_bytes += op->len;
    pthread_cond_signal(&c->qcond);
}

/* Queues an op for the writer, counting it as pending (flush_wait waits
 * for it). The queue owns op from now on. Returns 0. */
int vkvs_cold_wenqueue(vkvs_cold_env *c, vkvs_cold_wop *op)
{
    pthread_mutex_lock(&c->qlock);
    vkvs_cold_wpush_locked(c, op);
    c->pending++;
    pthread_mutex_unlock(&c->qlock);
    return 0;
}

/* Ops queued for the writer now (any thread). */
uint64_t vkvs_cold_queue_len(vkvs_cold_env *c)
{
    pthread_mutex_lock(&c->qlock);
    uint64_t n = c->queue_ops;
    pthread_mutex_unlock(&c->qlock);
    return n;
}

/* Allocates and queues a DROP of entry (nsid, key, id) for the writer.
 * Best effort: out of memory skips it (logged); a corrupt entry is found
 * again next time. */
void vkvs_cold_queue_drop(vkvs_cold_env *c, const char *ns, uint32_t nsid, const vkv_key *key,
                          uint64_t id)
{
    vkvs_cold_wop *op = calloc(1, sizeof *op);
    if (op == NULL) {
        VKV_ERROR("cold tier: out of memory queueing the drop of a corrupt entry");
        return;
    }
    op->kind = VKVS_COLD_K_DROP;
    snprintf(op->ns, sizeof op->ns, "%s", ns);
    op->key = *key;
    op->nsid = nsid;
    op->entry_id = id;
    vkvs_cold_wenqueue(c, op);
}

/* Allocates and queues the delete of the malformed meta row whose key is
 * raw[0..rawlen) (copied). Best effort, as vkvs_cold_queue_drop. */
void vkvs_cold_queue_drop_row(vkvs_cold_env *c, const uint8_t *raw, size_t rawlen)
{
    vkvs_cold_wop *op = calloc(1, sizeof *op);
    uint8_t *copy = malloc(rawlen ? rawlen : 1);
    if (op == NULL || copy == NULL) {
        free(op);
        free(copy);
        VKV_ERROR("cold tier: out of memory queueing the drop of a malformed metadata record");
        return;
    }
    memcpy(copy, raw, rawlen);
    op->kind = VKVS_COLD_K_DROP_ROW;
    op->owned = copy;
    op->rowlen = rawlen;
    vkvs_cold_wenqueue(c, op);
}

/* Records finished work, under qlock: takes `ops` items carrying `bytes`
 * payload bytes off the queue gauges and `pending` ops off the count
 * flush_wait waits on, completes the sync waiter w (when non-NULL) with
 * wrc, and wakes everyone waiting for progress. Any thread. */
void vkvs_cold_retire(vkvs_cold_env *c, uint64_t ops, uint64_t bytes, uint64_t pending,
                      vkvs_cold_waiter *w, int wrc)
{
    pthread_mutex_lock(&c->qlock);
    c->queue_ops -= ops;
    c->queue_bytes -= bytes;
    c->pending -= pending;
    if (w != NULL) {
        w->rc = wrc;
        w->done = 1;
    }
    pthread_cond_broadcast(&c->donecond);
    pthread_mutex_unlock(&c->qlock);
}

/* Frees one op and what it owns (payload or raw key, iovec array). */
void vkvs_cold_op_free(vkvs_cold_wop *op)
{
    free(op->owned);
    free(op->iov);
    free(op);
}

/* ---- transactions, map growth --------------------------------------------- */

/* Refreshes the map_used gauge from the env (writer thread, no txn open). */
static void vkvs_cold_refresh_map_used(vkvs_cold_env *c)
{
    MDB_envinfo ei;
    MDB_stat ms;
    if (mdb_env_info(c->env, &ei) == 0 && mdb_env_stat(c->env, &ms) == 0) {
        pthread_mutex_lock(&c->slock);
        c->st.map_used = ((uint64_t)ei.me_last_pgno + 1) * ms.ms_psize;
        c->st.map_size = ei.me_mapsize;
        pthread_mutex_unlock(&c->slock);
    }
}

/* Grows the map toward the cap after MDB_MAP_FULL (writer thread, no txn
 * of this thread open). Takes maplock's write side so no read txn is
 * active. Returns 0 if the map grew, MDB_MAP_FULL at the cap, or the LMDB
 * error. */
static int vkvs_cold_grow(vkvs_cold_env *c, uint64_t need)
{
    if (c->map_size >= c->map_cap)
        return MDB_MAP_FULL;
    uint64_t nsz = c->map_size + c->map_size / 2;
    if (nsz < c->map_size + need + need / 4)
        nsz = c->map_size + need + need / 4;
    if (nsz > c->map_cap)
        nsz = c->map_cap;
    pthread_rwlock_wrlock(&c->maplock);
    int rc = mdb_env_set_mapsize(c->env, (size_t)nsz);
    pthread_rwlock_unlock(&c->maplock);
    if (rc != 0)
        return rc;
    VKV_INFO("cold tier: map grown from %" PRIu64 " to %" PRIu64 " MiB", c->map_size >> 20,
             nsz >> 20);
    c->map_size = nsz;
    pthread_mutex_lock(&c->slock);
    c->st.map_grows++;
    c->st.map_size = nsz;
    pthread_mutex_unlock(&c->slock);
    return 0;
}

/* Runs fn in a write txn and commits; on MDB_MAP_FULL aborts, grows the map
 * (need = hint of bytes needed) and retries. Returns 0 or the LMDB/errno
 * code of the final failure (the txn is aborted then: nothing written). */
int vkvs_cold_wtxn(vkvs_cold_env *c, vkvs_cold_wfn fn, void *arg, uint64_t need)
{
    for (;;) {
        MDB_txn *txn;
        int rc = mdb_txn_begin(c->env, NULL, 0, &txn);
        if (rc == MDB_MAP_RESIZED) { /* cannot happen single-process; adopt */
            rc = mdb_env_set_mapsize(c->env, 0);
            if (rc == 0)
                continue;
        }
        if (rc != 0) {
            vkvs_cold_map_err(c, rc);
            return rc;
        }
        rc = fn(c, txn, arg);
        if (rc == 0) {
            rc = mdb_txn_commit(txn); /* frees txn on error too */
            if (rc == 0) {
                c->dirty = 1;
                return 0;
            }
        } else {
            mdb_txn_abort(txn);
        }
        if (rc != MDB_MAP_FULL) {
            vkvs_cold_map_err(c, rc);
            pthread_mutex_lock(&c->slock);
            c->st.write_errors++;
            pthread_mutex_unlock(&c->slock);
            return rc;
        }
        int grc = vkvs_cold_grow(c, need);
        if (grc != 0) {
            pthread_mutex_lock(&c->slock);
            c->st.write_errors++;
            pthread_mutex_unlock(&c->slock);
            return grc == MDB_MAP_FULL ? MDB_MAP_FULL : grc;
        }
    }
}

/* Deletes every data piece of entry `id` in txn (re-seeking after each
 * delete, so it does not depend on cursor-after-delete semantics). */
static int vkvs_cold_del_pieces(vkvs_cold_env *c, MDB_txn *txn, uint64_t id)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, c->db_data, &cur);
    if (rc != 0)
        return rc;
    for (;;) {
        uint8_t kb[VKVS_COLD_DATA_KLEN];
        vkvs_cold_data_key(kb, id, 0);
        MDB_val k = {sizeof kb, kb}, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc != 0)
            break;
        if (k.mv_size != VKVS_COLD_DATA_KLEN || vkvs_cold_get_be64(k.mv_data) != id)
            break;
        rc = mdb_cursor_del(cur, 0);
        if (rc != 0)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Deletes entry (nsid, key) described by m: meta record, pieces, lru. */
int vkvs_cold_del_entry(vkvs_cold_env *c, MDB_txn *txn, uint32_t nsid, const vkv_key *key,
                        const vkvs_cold_meta_rec *m)
{
    uint8_t mk[VKVS_COLD_META_KLEN], lk[VKVS_COLD_LRU_KLEN];
    vkvs_cold_meta_key(mk, nsid, key);
    vkvs_cold_lru_key(lk, m->lru_seq);
    MDB_val k = {sizeof mk, mk};
    int rc = mdb_del(txn, c->db_meta, &k, NULL);
    if (rc != 0)
        return rc;
    MDB_val l = {sizeof lk, lk};
    rc = mdb_del(txn, c->db_lru, &l, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    return vkvs_cold_del_pieces(c, txn, m->entry_id);
}

/* Arguments of the delete/drop txn body. */
typedef struct vkvs_cold_del_arg {
    const char *ns; /* delete by name (DELETE) ... */
    uint32_t nsid;  /* ... or by id (DROP) */
    int by_id;
    uint64_t entry_id; /* DROP: only if still this entry */
    const vkv_key *key;
    int found;     /* out */
    uint64_t size; /* out */
} vkvs_cold_del_arg;

/* Write-txn body: deletes one entry if present (and, for a drop, still the
 * same entry id). */
static int vkvs_cold_del_fn(vkvs_cold_env *c, MDB_txn *txn, void *arg)
{
    vkvs_cold_del_arg *a = arg;
    uint32_t nsid = a->nsid;
    a->found = 0;
    if (!a->by_id) {
        int rc = vkvs_cold_nsid_get(c, txn, a->ns, (int)strlen(a->ns), &nsid);
        if (rc == MDB_NOTFOUND)
            return 0;
        if (rc != 0)
            return rc;
    }
    vkvs_cold_meta_rec m;
    int rc = vkvs_cold_meta_get(c, txn, nsid, a->key, &m);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc == MDB_CORRUPTED) { /* malformed record: remove the row itself */
        uint8_t mk[VKVS_COLD_META_KLEN];
        vkvs_cold_meta_key(mk, nsid, a->key);
        MDB_val k = {sizeof mk, mk};
        return mdb_del(txn, c->db_meta, &k, NULL);
    }
    if (rc != 0)
        return rc;
    if (a->by_id && m.entry_id != a->entry_id)
        return 0; /* replaced meanwhile by a fresh spill: keep it */
    rc = vkvs_cold_del_entry(c, txn, nsid, a->key, &m);
    if (rc != 0)
        return rc;
    a->found = 1;
    a->size = m.size;
    return 0;
}

/* Writer: handles DELETE and DROP ops. */
static void vkvs_cold_w_delete(vkvs_cold_env *c, vkvs_cold_wop *op)
{
    vkvs_cold_del_arg a = {.ns = op->ns, .nsid = op->nsid, .key = &op->key};
    a.by_id = op->kind == VKVS_COLD_K_DROP;
    a.entry_id = op->entry_id;
    int status = 0;
    int rc = c->failed ? MDB_PANIC : vkvs_cold_wtxn(c, vkvs_cold_del_fn, &a, 1 << 20);
    if (rc != 0) {
        status = vkvs_cold_map_err(c, rc);
        vkvs_cold_note_error(c, rc, "delete failed: %s", mdb_strerror(rc));
    } else if (!a.found) {
        status = VKV_ENOTFOUND;
    } else {
        pthread_mutex_lock(&c->slock);
        c->st.bytes -= a.size;
        c->st.entries--;
        if (op->kind == VKVS_COLD_K_DELETE)
            c->st.deletes++;
        pthread_mutex_unlock(&c->slock);
    }
    if (op->kind == VKVS_COLD_K_DELETE)
        vkvs_cold_complete(c, VKVS_COLD_OP_DELETE, op->tag, status, a.size, op->ns, &op->key);
    else if (a.found)
        vkvs_cold_complete(c, VKVS_COLD_OP_DROPPED, 0, VKV_ECHECKSUM, a.size, op->ns, &op->key);
}

/* Arguments of the touch txn body: a run of consecutive TOUCH ops. */
typedef struct vkvs_cold_touch_arg {
    vkvs_cold_wop **ops;
    size_t n;
    uint64_t used; /* out: sequence numbers consumed */
} vkvs_cold_touch_arg;

/* Write-txn body: moves each touched entry to the young end of the LRU and
 * bumps its hit count (skipping entries replaced or gone meanwhile). */
static int vkvs_cold_touch_fn(vkvs_cold_env *c, MDB_txn *txn, void *arg)
{
    vkvs_cold_touch_arg *a = arg;
    a->used = 0;
    for (size_t i = 0; i < a->n; i++) {
        vkvs_cold_wop *op = a->ops[i];
        vkvs_cold_meta_rec m;
        int rc = vkvs_cold_meta_get(c, txn, op->nsid, &op->key, &m);
        if (rc == MDB_NOTFOUND || (rc == 0 && m.entry_id != op->entry_id))
            continue;
        if (rc != 0)
            return rc;
        uint8_t lk[VKVS_COLD_LRU_KLEN], lv[4 + VKV_KEY_LEN];
        vkvs_cold_lru_key(lk, m.lru_seq);
        MDB_val l = {sizeof lk, lk};
        rc = mdb_del(txn, c->db_lru, &l, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return rc;
        if (op->access_ms > m.last_access_ms)
            m.last_access_ms = op->access_ms;
        m.hits++;
        m.lru_seq = c->next_seq + a->used++;
        vkvs_cold_lru_key(lk, m.lru_seq);
        vkvs_cold_lru_val(lv, op->nsid, &op->key);
        MDB_val lval = {sizeof lv, lv};
        rc = mdb_put(txn, c->db_lru, &l, &lval, 0);
        if (rc != 0)
            return rc;
        uint8_t mk[VKVS_COLD_META_KLEN];
        vkvs_cold_meta_key(mk, op->nsid, &op->key);
        MDB_val k = {sizeof mk, mk}, v = {sizeof m, &m};
        rc = mdb_put(txn, c->db_meta, &k, &v, 0);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Writer: syncs the env to disk (forced). Returns a VKV_E* code. */
static int vkvs_cold_w_sync(vkvs_cold_env *c)
{
    int rc = mdb_env_sync(c->env, 1);
    c->last_sync_ms = vkv_now_ms();
    if (rc != 0) {
        vkvs_cold_note_error(c, rc, "sync failed: %s", mdb_strerror(rc));
        return vkvs_cold_map_err(c, rc);
    }
    c->dirty = 0;
    pthread_mutex_lock(&c->slock);
    c->st.syncs++;
    pthread_mutex_unlock(&c->slock);
    return 0;
}

/* Writer: runs mdb_reader_check and counts the stale slots it cleared. */
static void vkvs_cold_w_reader_check(vkvs_cold_env *c)
{
    int dead = 0;
    int rc = mdb_reader_check(c->env, &dead);
    c->last_rcheck_ms = vkv_now_ms();
    if (rc != 0) {
        VKV_WARN("cold tier: mdb_reader_check failed: %s", mdb_strerror(rc));
        return;
    }
    if (dead > 0) {
        VKV_WARN("cold tier: cleared %d stale LMDB reader slots", dead);
        pthread_mutex_lock(&c->slock);
        c->st.stale_readers += (uint64_t)dead;
        pthread_mutex_unlock(&c->slock);
    }
}
/* Write-txn body: deletes the meta row whose raw key is the op's `owned`
 * bytes (a row that breaks the validity rule, found by verify). */
static int vkvs_cold_drop_row_fn(vkvs_cold_env *c, MDB_txn *txn, void *arg)
{
    vkvs_cold_wop *op = arg;
    MDB_val k = {op->rowlen, op->owned};
    int rc = mdb_del(txn, c->db_meta, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Writer: handles a DROP_ROW op. No completion: the row was never an
 * entry anyone knew of (foreach and the open-time scan skip it). */
static void vkvs_cold_w_drop_row(vkvs_cold_env *c, vkvs_cold_wop *op)
{
    if (c->failed)
        return;
    int rc = vkvs_cold_wtxn(c, vkvs_cold_drop_row_fn, op, 1 << 20);
    if (rc != 0)
        vkvs_cold_note_error(c, rc, "drop of a malformed metadata record failed: %s",
                             mdb_strerror(rc));
}

/* ---- the thread ----------------------------------------------------------- */

/* Waits (under qlock) until ops are queued, a stop is requested, or the
 * next periodic sync / reader check is due; then takes the whole queue.
 * Returns the batch (owned by the caller, possibly NULL) and sets *stop. */
static vkvs_cold_wop *vkvs_cold_w_take(vkvs_cold_env *c, int *stop)
{
    pthread_mutex_lock(&c->qlock);
    while (c->qhead == NULL && !c->wstop) {
        uint64_t now = vkv_now_ms();
        uint64_t wake = c->last_rcheck_ms + c->cfg.reader_check_ms;
        if (c->dirty && c->cfg.sync_interval_ms > 0 &&
            c->last_sync_ms + c->cfg.sync_interval_ms < wake)
            wake = c->last_sync_ms + c->cfg.sync_interval_ms;
        if (wake <= now)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (wake - now) * 1000000ull;
        ts.tv_sec += (time_t)(ns / 1000000000ull);
        ts.tv_nsec = (long)(ns % 1000000000ull);
        pthread_cond_timedwait(&c->qcond, &c->qlock, &ts);
    }
    vkvs_cold_wop *batch = c->qhead;
    c->qhead = c->qtail = NULL;
    *stop = c->wstop;
    pthread_mutex_unlock(&c->qlock);
    return batch;
}

/* Applies the run of consecutive TOUCH ops at the head of batch (up to
 * 256) in one txn, retires and frees them. Returns the rest of the batch. */
static vkvs_cold_wop *vkvs_cold_w_touch_run(vkvs_cold_env *c, vkvs_cold_wop *batch)
{
    vkvs_cold_wop *run[256];
    size_t n = 0;
    while (batch != NULL && batch->kind == VKVS_COLD_K_TOUCH && n < 256) {
        run[n++] = batch;
        batch = batch->next;
    }
    vkvs_cold_touch_arg ta = {run, n, 0};
    if (!c->failed) {
        int rc = vkvs_cold_wtxn(c, vkvs_cold_touch_fn, &ta, 1 << 20);
        if (rc == 0)
            c->next_seq += ta.used;
        else
            VKV_WARN("cold tier: access-time update failed: %s", mdb_strerror(rc));
    }
    vkvs_cold_retire(c, n, 0, n, NULL, 0);
    for (size_t i = 0; i < n; i++)
        vkvs_cold_op_free(run[i]);
    return batch;
}

/* Takes the run of consecutive SPILL ops at the head of batch (at most
 * VKVS_COLD_GROUP_OPS of them and, past the first, cfg.group_max_bytes of
 * payload; 0 = one per run) and writes them by group commit (spill.c),
 * then retires and frees them. Stopping at any other op keeps the
 * submission order with deletes. Returns the rest of the batch. */
static vkvs_cold_wop *vkvs_cold_w_spill_run(vkvs_cold_env *c, vkvs_cold_wop *batch)
{
    vkvs_cold_wop *run[VKVS_COLD_GROUP_OPS];
    size_t n = 0;
    uint64_t bytes = 0;
    while (batch != NULL && batch->kind == VKVS_COLD_K_SPILL && n < VKVS_COLD_GROUP_OPS &&
           (n == 0 || bytes + batch->len <= c->cfg.group_max_bytes)) {
        bytes += batch->len;
        run[n++] = batch;
        batch = batch->next;
    }
    vkvs_cold_w_spill_group(c, run, n);
    vkvs_cold_retire(c, n, bytes, n, NULL, 0);
    for (size_t i = 0; i < n; i++)
        vkvs_cold_op_free(run[i]);
    return batch;
}

/* Applies one op other than TOUCH and SPILL, retires and frees it. A SYNC op wakes its
 * waiter (on the caller's stack) and was never counted as pending. */
static void vkvs_cold_w_apply(vkvs_cold_env *c, vkvs_cold_wop *op)
{
    switch (op->kind) {
    case VKVS_COLD_K_DELETE:
    case VKVS_COLD_K_DROP:
        vkvs_cold_w_delete(c, op);
        break;
    case VKVS_COLD_K_DROP_ROW:
        vkvs_cold_w_drop_row(c, op);
        break;
    case VKVS_COLD_K_TRIM:
        if (!c->failed)
            vkvs_cold_evict_to(c, c->cfg.max_bytes, NULL, 0);
        break;
    case VKVS_COLD_K_SYNC: {
        int rc = c->failed ? VKV_ECOLD : vkvs_cold_w_sync(c);
        vkvs_cold_retire(c, 1, 0, 0, op->waiter, rc);
        free(op);
        return;
    }
    }
    vkvs_cold_retire(c, 1, op->len, 1, NULL, 0);
    vkvs_cold_op_free(op);
}

/* After a batch: refreshes the map gauge, syncs when the interval passed
 * with unsynced commits, and runs the reader check when it is due. */
static void vkvs_cold_w_periodic(vkvs_cold_env *c)
{
    if (!c->failed)
        vkvs_cold_refresh_map_used(c);
    uint64_t now = vkv_now_ms();
    if (!c->failed && c->dirty && c->cfg.sync_interval_ms > 0 &&
        now >= c->last_sync_ms + c->cfg.sync_interval_ms)
        vkvs_cold_w_sync(c);
    if (!c->failed && now >= c->last_rcheck_ms + c->cfg.reader_check_ms)
        vkvs_cold_w_reader_check(c);
}

/* Writer thread: pops batches of ops in order and applies them; runs the
 * periodic sync and reader check; exits after draining once told to stop
 * (close then runs the final sync). */
void *vkvs_cold_writer_main(void *arg)
{
    vkvs_cold_env *c = arg;
    char name[16];
    if (c->nshards > 1)
        snprintf(name, sizeof name, "vkv-cold%d-w", c->shard);
    else
        snprintf(name, sizeof name, "vkv-cold-w");
    vkvs_cold_thread_setup(c, name);
    for (;;) {
        int stop;
        vkvs_cold_wop *batch = vkvs_cold_w_take(c, &stop);
        while (batch != NULL) {
            if (batch->kind == VKVS_COLD_K_TOUCH) {
                batch = vkvs_cold_w_touch_run(c, batch);
                continue;
            }
            if (batch->kind == VKVS_COLD_K_SPILL) {
                batch = vkvs_cold_w_spill_run(c, batch);
                continue;
            }
            vkvs_cold_wop *op = batch;
            batch = op->next;
            vkvs_cold_w_apply(c, op);
        }
        vkvs_cold_w_periodic(c);
        if (stop) {
            pthread_mutex_lock(&c->qlock);
            int empty = c->qhead == NULL;
            pthread_mutex_unlock(&c->qlock);
            if (empty)
                break;
        }
    }
    return NULL;
}
