/*
 * cold/cold.c - one environment's front: the submit calls (spill, restore,
 * delete, sync, flush_wait), posting completions to the tier's sink,
 * lookup, foreach, stats, and the error bookkeeping every thread uses. See cold.h
 * for the contract, cold_int.h for the map of cold/ and docs/COLD_TIER.md.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "cold/cold_int.h"
#include "common/errbuf.h"
#include "common/log.h"
#include "vkv/error.h"

/* ---- errors --------------------------------------------------------------- */

/* Records a failure: counts it by class, keeps a copy of the message as
 * last_error and logs it at error level. Thread-safe. */
void vkvs_cold_note_error(vkvs_cold_env *c, int mdb_rc, const char *fmt, ...)
{
    char msg[VKVS_COLD_ERRSTR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vkv_verrbuf(msg, sizeof msg, 0, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&c->slock);
    if (mdb_rc == ENOSPC || mdb_rc == EFBIG || mdb_rc == EDQUOT)
        c->st.enospc++;
    else if (mdb_rc == MDB_MAP_FULL)
        c->st.map_full++;
    else if (mdb_rc != 0)
        c->st.eio++;
    snprintf(c->st.last_error, sizeof c->st.last_error, "%s", msg);
    c->st.last_error_ms = vkv_wall_ms();
    pthread_mutex_unlock(&c->slock);
    VKV_ERROR("cold tier: %s", msg);
}

/* Maps an LMDB / errno code to a VKV_E* code (0 stays 0). Marks the env
 * failed on MDB_PANIC (c may be NULL during open). */
int vkvs_cold_map_err(vkvs_cold_env *c, int rc)
{
    switch (rc) {
    case 0:
        return 0;
    case MDB_NOTFOUND:
        return VKV_ENOTFOUND;
    case MDB_MAP_FULL:
    case ENOSPC:
    case EFBIG:
    case EDQUOT:
        return VKV_ENOSPC;
    case ENOMEM:
        return VKV_ENOMEM;
    case EACCES:
    case EPERM:
    case EROFS:
        return VKV_EPERM;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
        return VKV_ECORRUPT;
    case MDB_READERS_FULL:
        return VKV_EBUSY;
    case MDB_PANIC:
        if (c != NULL && !c->failed) {
            c->failed = 1;
            pthread_mutex_lock(&c->slock);
            c->st.failed = 1;
            pthread_mutex_unlock(&c->slock);
        }
        return VKV_ECOLD;
    default:
        return VKV_EIO;
    }
}

/* Validates and measures a namespace string: its length, or VKV_EINVAL
 * when ns is NULL or longer than VKVS_COLD_NS_MAX. */
int vkvs_cold_ns_len(const char *ns)
{
    if (ns == NULL)
        return VKV_EINVAL;
    size_t n = strnlen(ns, VKVS_COLD_NS_MAX + 1);
    return n > VKVS_COLD_NS_MAX ? VKV_EINVAL : (int)n;
}

/* ---- completions ---------------------------------------------------------- */

/* Appends one completion (copied) to the tier's sink and signals its
 * eventfd. Returns 0 or VKV_ENOMEM (then the completion is lost and
 * logged). */
static int vkvs_cold_post(vkvs_cold_env *c, const vkvs_cold_completion *cp)
{
    vkvs_cold_sink *k = c->sink;
    pthread_mutex_lock(&k->lock);
    if (k->len == k->cap) {
        size_t ncap = k->cap ? k->cap * 2 : 64;
        vkvs_cold_completion *n = malloc(ncap * sizeof *n);
        if (n == NULL) {
            pthread_mutex_unlock(&k->lock);
            VKV_ERROR("cold tier: out of memory posting a %s completion",
                      vkvs_cold_op_name(cp->op));
            return VKV_ENOMEM;
        }
        for (size_t i = 0; i < k->len; i++)
            n[i] = k->comp[(k->head + i) % k->cap];
        free(k->comp);
        k->comp = n;
        k->cap = ncap;
        k->head = 0;
    }
    k->comp[(k->head + k->len) % k->cap] = *cp;
    k->len++;
    /* Only the completion that makes the queue non-empty signals, and it
     * does so after unlocking: the write wakes the caller's thread, which
     * (scheduled ahead of a low-priority cold thread) would otherwise find
     * the lock still held by the thread it just preempted. No wakeup is
     * lost: vkvs_cold_poll resets the eventfd only after emptying the
     * queue, so every completion posted after that reset finds the queue
     * empty and signals; an early reset followed by this write is a
     * spurious wakeup that the next poll absorbs. */
    int wake = k->len == 1;
    pthread_mutex_unlock(&k->lock);
    if (wake) {
        uint64_t one = 1;
        ssize_t w = write(k->efd, &one, sizeof one);
        (void)w; /* EAGAIN only at counter overflow: the fd is readable anyway */
    }
    return 0;
}

/* Builds and posts a completion (ns and key may be NULL). */
void vkvs_cold_complete(vkvs_cold_env *c, int op, uint64_t tag, int status, uint64_t size,
                        const char *ns, const vkv_key *key)
{
    vkvs_cold_completion cp;
    memset(&cp, 0, sizeof cp);
    cp.op = op;
    cp.tag = tag;
    cp.status = status;
    cp.size = size;
    if (key != NULL)
        cp.key = *key;
    if (ns != NULL)
        snprintf(cp.ns, sizeof cp.ns, "%s", ns);
    vkvs_cold_post(c, &cp);
}

/* See cold.h. */
const char *vkvs_cold_op_name(int op)
{
    switch (op) {
    case VKVS_COLD_OP_SPILL:
        return "spill";
    case VKVS_COLD_OP_RESTORE:
        return "restore";
    case VKVS_COLD_OP_DELETE:
        return "delete";
    case VKVS_COLD_OP_EVICTED:
        return "evicted";
    case VKVS_COLD_OP_DROPPED:
        return "dropped";
    default:
        return "?";
    }
}

/* ---- read transactions ---------------------------------------------------- */

/* Begins a read txn under the read side of maplock. Returns 0 (the caller
 * ends it with vkvs_cold_rtxn_end) or the LMDB error (*txn NULL). */
int vkvs_cold_rtxn_begin(vkvs_cold_env *c, MDB_txn **txn)
{
    pthread_rwlock_rdlock(&c->maplock);
    int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, txn);
    if (rc != 0) {
        pthread_rwlock_unlock(&c->maplock);
        *txn = NULL;
    }
    return rc;
}

/* Begins the read txn of an API call (lookup, foreach, verify): VKV_ECOLD
 * when the env has failed, else 0 (end it with vkvs_cold_rtxn_end) or the
 * LMDB error mapped to VKV_E*. */
int vkvs_cold_rtxn_api(vkvs_cold_env *c, MDB_txn **txn)
{
    if (c->failed)
        return VKV_ECOLD;
    int rc = vkvs_cold_rtxn_begin(c, txn);
    return rc != 0 ? vkvs_cold_map_err(c, rc) : 0;
}

/* Aborts a read txn and releases maplock. */
void vkvs_cold_rtxn_end(vkvs_cold_env *c, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&c->maplock);
}

/* ---- submitting work ------------------------------------------------------ */

/* Validates the common arguments of the queueing calls: 0, VKV_EINVAL or
 * VKV_ECOLD. */
static int vkvs_cold_check_submit(vkvs_cold_env *c, const char *ns, const vkv_key *key)
{
    if (c == NULL || key == NULL || vkvs_cold_ns_len(ns) < 0)
        return VKV_EINVAL;
    if (c->failed)
        return VKV_ECOLD;
    return 0;
}

/* Validates the arguments of a queueing call that takes an iovec array:
 * those of vkvs_cold_check_submit plus a non-NULL array of n >= 1.
 * Returns 0, VKV_EINVAL or VKV_ECOLD. */
static int vkvs_cold_check_iov(vkvs_cold_env *c, const char *ns, const vkv_key *key,
                               const struct iovec *iov, int n)
{
    int rc = vkvs_cold_check_submit(c, ns, key);
    if (rc == 0 && (iov == NULL || n <= 0))
        rc = VKV_EINVAL;
    return rc;
}

/* Returns a malloc'ed copy of iov[0..n) (the caller frees it), or NULL. */
static struct iovec *vkvs_cold_iov_dup(const struct iovec *iov, int n)
{
    struct iovec *copy = malloc((size_t)n * sizeof *copy);
    if (copy != NULL)
        memcpy(copy, iov, (size_t)n * sizeof *copy);
    return copy;
}

/* Queues a user op (spill/delete) unless closing or the byte bound is hit.
 * Returns 0 (the queue owns op), VKV_ESHUTDOWN or VKV_EBUSY (not queued:
 * the caller frees op). */
static int vkvs_cold_submit(vkvs_cold_env *c, vkvs_cold_wop *op)
{
    pthread_mutex_lock(&c->qlock);
    if (c->closing) {
        pthread_mutex_unlock(&c->qlock);
        return VKV_ESHUTDOWN;
    }
    if (op->len > 0 && c->cfg.queue_max_bytes > 0 &&
        c->queue_bytes + op->len > c->cfg.queue_max_bytes) {
        pthread_mutex_unlock(&c->qlock);
        return VKV_EBUSY;
    }
    pthread_mutex_unlock(&c->qlock);
    return vkvs_cold_wenqueue(c, op);
}

/* Common body of the two spill calls: the op takes `iov` (malloc'ed array,
 * freed here on any error) and, on success only, `owned`. Returns as
 * vkvs_cold_spill. */
static int vkvs_cold_spill_common(vkvs_cold_env *c, const char *ns, const vkv_key *key,
                                  struct iovec *iov, int niov, size_t len, void *owned,
                                  uint64_t tag)
{
    vkvs_cold_wop *op = calloc(1, sizeof *op);
    if (op == NULL) {
        free(iov);
        return VKV_ENOMEM;
    }
    op->kind = VKVS_COLD_K_SPILL;
    op->tag = tag;
    snprintf(op->ns, sizeof op->ns, "%s", ns);
    op->key = *key;
    op->iov = iov;
    op->niov = niov;
    op->len = len;
    op->owned = owned;
    int rc = vkvs_cold_submit(c, op);
    if (rc != 0) { /* not queued: the caller keeps `owned` */
        free(op->iov);
        free(op);
    }
    return rc;
}

/* See cold.h (vkvs_cold_spill), for one environment (cold_int.h). */
int vkvs_cold_env_spill(vkvs_cold_env *c, const char *ns, const vkv_key *key, void *buf, size_t len,
                        uint64_t tag)
{
    int rc = vkvs_cold_check_submit(c, ns, key);
    if (rc != 0)
        return rc;
    if (buf == NULL || len == 0)
        return VKV_EINVAL;
    if (len > c->cfg.max_bytes)
        return VKV_ETOOBIG;
    struct iovec *iov = malloc(sizeof *iov);
    if (iov == NULL)
        return VKV_ENOMEM;
    iov->iov_base = buf;
    iov->iov_len = len;
    /* buf is freed by the writer; handed back to the caller on error */
    return vkvs_cold_spill_common(c, ns, key, iov, 1, len, buf, tag);
}

/* See cold.h (vkvs_cold_spill_iov), for one environment (cold_int.h). */
int vkvs_cold_env_spill_iov(vkvs_cold_env *c, const char *ns, const vkv_key *key,
                            const struct iovec *src, int nsrc, uint64_t tag)
{
    int rc = vkvs_cold_check_iov(c, ns, key, src, nsrc);
    if (rc != 0)
        return rc;
    size_t len = vkvs_cold_iov_total(src, nsrc);
    if (len == 0)
        return VKV_EINVAL;
    if (len > c->cfg.max_bytes)
        return VKV_ETOOBIG;
    struct iovec *iov = vkvs_cold_iov_dup(src, nsrc);
    if (iov == NULL)
        return VKV_ENOMEM;
    return vkvs_cold_spill_common(c, ns, key, iov, nsrc, len, NULL, tag);
}

/* See cold.h (vkvs_cold_restore), for one environment (cold_int.h). */
int vkvs_cold_env_restore(vkvs_cold_env *c, const char *ns, const vkv_key *key,
                          const struct iovec *dst, int ndst, uint64_t tag)
{
    int rc = vkvs_cold_check_iov(c, ns, key, dst, ndst);
    if (rc != 0)
        return rc;
    vkvs_cold_rjob *j = calloc(1, sizeof *j);
    struct iovec *iov = vkvs_cold_iov_dup(dst, ndst);
    if (j == NULL || iov == NULL) {
        free(j);
        free(iov);
        return VKV_ENOMEM;
    }
    j->tag = tag;
    snprintf(j->ns, sizeof j->ns, "%s", ns);
    j->key = *key;
    j->iov = iov;
    j->niov = ndst;

    pthread_mutex_lock(&c->qlock);
    if (c->closing) {
        pthread_mutex_unlock(&c->qlock);
        free(iov);
        free(j);
        return VKV_ESHUTDOWN;
    }
    c->pending++;
    pthread_mutex_unlock(&c->qlock);
    pthread_mutex_lock(&c->slock);
    c->st.restores_inflight++;
    pthread_mutex_unlock(&c->slock);
    vkvs_cold_rpush(c, j);
    return 0;
}

/* See cold.h (vkvs_cold_delete), for one environment (cold_int.h). */
int vkvs_cold_env_delete(vkvs_cold_env *c, const char *ns, const vkv_key *key, uint64_t tag)
{
    int rc = vkvs_cold_check_submit(c, ns, key);
    if (rc != 0)
        return rc;
    vkvs_cold_wop *op = calloc(1, sizeof *op);
    if (op == NULL)
        return VKV_ENOMEM;
    op->kind = VKVS_COLD_K_DELETE;
    op->tag = tag;
    snprintf(op->ns, sizeof op->ns, "%s", ns);
    op->key = *key;
    rc = vkvs_cold_submit(c, op);
    if (rc != 0)
        free(op);
    return rc;
}

/* Blocks until every submitted op (pending) has finished. */
void vkvs_cold_wait_idle(vkvs_cold_env *c)
{
    pthread_mutex_lock(&c->qlock);
    while (c->pending > 0)
        pthread_cond_wait(&c->donecond, &c->qlock);
    pthread_mutex_unlock(&c->qlock);
}

/* See cold.h (vkvs_cold_sync), for one environment (cold_int.h). */
int vkvs_cold_env_sync(vkvs_cold_env *c)
{
    if (c == NULL)
        return VKV_EINVAL;
    vkvs_cold_waiter w = {0, 0};
    vkvs_cold_wop *op = calloc(1, sizeof *op);
    if (op == NULL)
        return VKV_ENOMEM;
    op->kind = VKVS_COLD_K_SYNC;
    op->waiter = &w;
    pthread_mutex_lock(&c->qlock);
    if (c->closing) {
        pthread_mutex_unlock(&c->qlock);
        free(op);
        return VKV_ESHUTDOWN;
    }
    vkvs_cold_wpush_locked(c, op); /* not pending: flush_wait does not wait for it */
    while (!w.done)
        pthread_cond_wait(&c->donecond, &c->qlock);
    pthread_mutex_unlock(&c->qlock);
    return w.rc;
}

/* See cold.h (vkvs_cold_flush_wait), for one environment (cold_int.h). */
int vkvs_cold_env_flush_wait(vkvs_cold_env *c)
{
    if (c == NULL)
        return VKV_EINVAL;
    vkvs_cold_wait_idle(c);
    return vkvs_cold_env_sync(c);
}

/* ---- reading the metadata ------------------------------------------------- */

/* See cold.h (vkvs_cold_lookup), for one environment (cold_int.h). */
int vkvs_cold_env_lookup(vkvs_cold_env *c, const char *ns, const vkv_key *key,
                         vkvs_cold_entry_info *info)
{
    int nslen = vkvs_cold_ns_len(ns);
    if (c == NULL || key == NULL || info == NULL || nslen < 0)
        return VKV_EINVAL;
    MDB_txn *txn;
    int rc = vkvs_cold_rtxn_api(c, &txn);
    if (rc != 0)
        return rc;
    uint32_t nsid;
    vkvs_cold_meta_rec m;
    rc = vkvs_cold_nsid_get(c, txn, ns, nslen, &nsid);
    if (rc == 0)
        rc = vkvs_cold_meta_get(c, txn, nsid, key, &m);
    vkvs_cold_rtxn_end(c, txn);
    if (rc == MDB_NOTFOUND)
        return VKV_ENOTFOUND;
    if (rc != 0)
        return VKV_EIO;
    vkvs_cold_info_fill(info, ns, key, &m);
    return 0;
}

/* State of a foreach walk: the caller's callback and the namespace name
 * of the ns id seen last (rows come in ns id order). */
typedef struct vkvs_cold_foreach_ctx {
    vkvs_cold_env *c;
    vkvs_cold_foreach_cb cb;
    void *ctx;
    char ns[VKVS_COLD_NS_MAX + 1];
    uint32_t nsid;
    int have_ns;
} vkvs_cold_foreach_ctx;

/* Walker callback of foreach: skips an invalid row, hands a valid one to
 * the caller's callback and returns its value. */
static int vkvs_cold_foreach_row(void *arg, MDB_txn *txn, const vkvs_cold_meta_row *row)
{
    vkvs_cold_foreach_ctx *f = arg;
    if (!row->valid)
        return 0;
    if (!f->have_ns || row->nsid != f->nsid) {
        vkvs_cold_ns_name(f->c, txn, row->nsid, f->ns);
        f->nsid = row->nsid;
        f->have_ns = 1;
    }
    vkvs_cold_entry_info e;
    vkvs_cold_info_fill(&e, f->ns, &row->key, &row->m);
    return f->cb(f->ctx, &e);
}

/* See cold.h (vkvs_cold_foreach), for one environment (cold_int.h). */
int vkvs_cold_env_foreach(vkvs_cold_env *c, vkvs_cold_foreach_cb cb, void *ctx)
{
    if (c == NULL || cb == NULL)
        return VKV_EINVAL;
    MDB_txn *txn;
    int rc = vkvs_cold_rtxn_api(c, &txn);
    if (rc != 0)
        return rc;
    vkvs_cold_foreach_ctx f = {.c = c, .cb = cb, .ctx = ctx};
    int stop;
    rc = vkvs_cold_meta_walk(c, txn, vkvs_cold_foreach_row, &f, &stop);
    vkvs_cold_rtxn_end(c, txn);
    if (stop != 0)
        return stop;
    return rc == 0 ? 0 : VKV_EIO;
}

/* See cold.h (vkvs_cold_stats_get), for one environment (cold_int.h). */
void vkvs_cold_env_stats_get(vkvs_cold_env *c, vkvs_cold_stats *out)
{
    memset(out, 0, sizeof *out);
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->slock);
    *out = c->st;
    pthread_mutex_unlock(&c->slock);
    pthread_mutex_lock(&c->qlock);
    out->queue_ops = c->queue_ops;
    out->queue_bytes = c->queue_bytes;
    pthread_mutex_unlock(&c->qlock);
    out->failed = c->failed;
    char dpath[4200];
    struct stat sb;
    snprintf(dpath, sizeof dpath, "%s/data.mdb", c->dir);
    if (stat(dpath, &sb) == 0)
        out->file_bytes = (uint64_t)sb.st_size;
}
