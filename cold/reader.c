/*
 * cold/reader.c - the cold tier's reader pool: `reader_threads` threads
 * that serve restore jobs (vkvs_cold_restore queues them), each in its own
 * short read transaction, verifying piece count, piece sizes and the XXH3
 * of what landed in the caller's memory before reporting success.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "cold/cold_int.h"
#include "common/log.h"
#include "vkv/error.h"

/* Reads every piece of entry `m` in txn, copying into dst (when non-NULL;
 * its capacity was checked by the caller) and hashing with st (hashing
 * what landed in dst, hot in cache, piece by piece).
 * Returns 0 (payload intact), VKV_ECHECKSUM (missing/short piece, size or
 * hash mismatch) or another VKV_E* from LMDB. */
int vkvs_cold_read_payload(vkvs_cold_env *c, MDB_txn *txn, const vkvs_cold_meta_rec *m,
                           const struct iovec *dst, int ndst, XXH3_state_t *st)
{
    vkvs_cold_iovpos pos = {dst, ndst, 0, 0};
    if (m->piece_size == 0 || m->pieces != vkvs_cold_npieces(m->size, m->piece_size))
        return VKV_ECHECKSUM;
    XXH3_64bits_reset(st);
    for (uint32_t i = 0; i < m->pieces; i++) {
        uint8_t kb[VKVS_COLD_DATA_KLEN];
        vkvs_cold_data_key(kb, m->entry_id, i);
        MDB_val k = {sizeof kb, kb}, v;
        int rc = mdb_get(txn, c->db_data, &k, &v);
        if (rc == MDB_NOTFOUND)
            return VKV_ECHECKSUM;
        if (rc != 0)
            return vkvs_cold_map_err(c, rc);
        if (v.mv_size != vkvs_cold_piece_len(m->size, m->piece_size, i))
            return VKV_ECHECKSUM;
        if (dst != NULL) {
            vkvs_cold_iovpos start = pos;
            vkvs_cold_iov_scatter(&pos, v.mv_data, v.mv_size);
            vkvs_cold_iov_hash(&start, st, v.mv_size);
        } else {
            XXH3_64bits_update(st, v.mv_data, v.mv_size);
        }
    }
    return XXH3_64bits_digest(st) == m->xxh ? 0 : VKV_ECHECKSUM;
}

/* Reads job j's entry into its iovecs inside one read txn. Sets *size to
 * the entry size, *m to its record (entry id for a drop/touch), *nsid and
 * *corrupt (1 when the stored bytes failed the check). Returns the
 * completion status: 0, VKV_ENOTFOUND, VKV_ETRUNC, VKV_ECHECKSUM, VKV_EIO
 * or another mapped LMDB error. */
static int vkvs_cold_restore_read(vkvs_cold_env *c, vkvs_cold_rjob *j, XXH3_state_t *st,
                                  vkvs_cold_meta_rec *m, uint32_t *nsid, uint64_t *size,
                                  int *corrupt)
{
    MDB_txn *txn;
    int status;
    int rc = vkvs_cold_rtxn_begin(c, &txn);
    if (rc != 0) {
        vkvs_cold_note_error(c, rc, "restore: cannot begin read txn: %s", mdb_strerror(rc));
        return vkvs_cold_map_err(c, rc);
    }
    rc = vkvs_cold_nsid_get(c, txn, j->ns, (int)strlen(j->ns), nsid);
    if (rc == 0)
        rc = vkvs_cold_meta_get(c, txn, *nsid, &j->key, m);
    if (rc == MDB_NOTFOUND) {
        status = VKV_ENOTFOUND;
    } else if (rc == MDB_CORRUPTED) {
        status = VKV_EIO;
        vkvs_cold_note_error(c, rc, "restore: malformed metadata record");
    } else if (rc != 0) {
        status = vkvs_cold_map_err(c, rc);
        vkvs_cold_note_error(c, rc, "restore: metadata read failed: %s", mdb_strerror(rc));
    } else {
        *size = m->size;
        if (vkvs_cold_iov_total(j->iov, j->niov) < m->size) {
            status = VKV_ETRUNC;
        } else {
            status = vkvs_cold_read_payload(c, txn, m, j->iov, j->niov, st);
            if (status == VKV_ECHECKSUM)
                *corrupt = 1;
            else if (status != 0)
                vkvs_cold_note_error(c, EIO, "restore: payload read failed: %s",
                                     vkv_strerror(status));
        }
    }
    vkvs_cold_rtxn_end(c, txn);
    return status;
}

/* Queues the best-effort access-time update of a restored entry: skipped
 * when the writer is behind (thousands of ops queued) rather than grow the
 * queue, or when out of memory. */
static void vkvs_cold_queue_touch(vkvs_cold_env *c, uint32_t nsid, const vkv_key *key, uint64_t id)
{
    if (vkvs_cold_queue_len(c) >= VKVS_COLD_TOUCH_QUEUE_MAX)
        return;
    vkvs_cold_wop *op = calloc(1, sizeof *op);
    if (op == NULL)
        return;
    op->kind = VKVS_COLD_K_TOUCH;
    op->nsid = nsid;
    op->key = *key;
    op->entry_id = id;
    op->access_ms = vkv_wall_ms();
    vkvs_cold_wenqueue(c, op);
}

/* Runs one restore job on a reader thread: reads, counts, queues the drop
 * of a corrupt entry or the touch of a restored one, and posts the RESTORE
 * completion. */
static void vkvs_cold_do_restore(vkvs_cold_env *c, vkvs_cold_rjob *j, XXH3_state_t *st)
{
    vkvs_cold_meta_rec m;
    uint32_t nsid = 0;
    uint64_t size = 0;
    int corrupt = 0;
    int status;

    memset(&m, 0, sizeof m);
    if (c->failed)
        status = VKV_ECOLD;
    else
        status = vkvs_cold_restore_read(c, j, st, &m, &nsid, &size, &corrupt);

    pthread_mutex_lock(&c->slock);
    if (status == 0) {
        c->st.restores++;
        c->st.restore_bytes += size;
    } else if (status == VKV_ENOTFOUND) {
        c->st.restore_misses++;
    } else {
        c->st.restore_errors++;
        if (corrupt)
            c->st.checksum_failures++;
    }
    pthread_mutex_unlock(&c->slock);

    if (corrupt) {
        VKV_ERROR("cold tier: entry of %" PRIu64 " bytes in namespace '%s' failed its checksum; "
                  "dropping it",
                  size, j->ns);
        vkvs_cold_queue_drop(c, j->ns, nsid, &j->key, m.entry_id);
    } else if (status == 0) {
        vkvs_cold_queue_touch(c, nsid, &j->key, m.entry_id);
    }
    vkvs_cold_complete(c, VKVS_COLD_OP_RESTORE, j->tag, status, size, j->ns, &j->key);
}

/* Appends restore job j (owned by the queue from now on) to the reader
 * queue and wakes one reader. */
void vkvs_cold_rpush(vkvs_cold_env *c, vkvs_cold_rjob *j)
{
    pthread_mutex_lock(&c->rlock);
    if (c->rtail)
        c->rtail->next = j;
    else
        c->rhead = j;
    c->rtail = j;
    pthread_cond_signal(&c->rcond);
    pthread_mutex_unlock(&c->rlock);
}

/* Pops the next restore job, waiting for one; NULL once told to stop with
 * an empty queue. The caller owns the job. */
static vkvs_cold_rjob *vkvs_cold_rpop(vkvs_cold_env *c)
{
    pthread_mutex_lock(&c->rlock);
    while (c->rhead == NULL && !c->rstop)
        pthread_cond_wait(&c->rcond, &c->rlock);
    vkvs_cold_rjob *j = c->rhead;
    if (j != NULL) {
        c->rhead = j->next;
        if (c->rhead == NULL)
            c->rtail = NULL;
    }
    pthread_mutex_unlock(&c->rlock);
    return j;
}

/* Reader thread body: serves restore jobs until told to stop with an empty
 * queue. */
void *vkvs_cold_reader_main(void *arg)
{
    vkvs_cold_env *c = arg;
    char name[16];
    pthread_mutex_lock(&c->rlock);
    int idx = c->reader_seq++;
    pthread_mutex_unlock(&c->rlock);
    if (c->nshards > 1)
        snprintf(name, sizeof name, "vkv-cold%d-r%d", c->shard, idx);
    else
        snprintf(name, sizeof name, "vkv-cold-r%d", idx);
    vkvs_cold_thread_setup(c, name);
    XXH3_state_t *st = XXH3_createState();
    vkvs_cold_rjob *j;
    while ((j = vkvs_cold_rpop(c)) != NULL) {
        if (st == NULL)
            vkvs_cold_complete(c, VKVS_COLD_OP_RESTORE, j->tag, VKV_ENOMEM, 0, j->ns, &j->key);
        else
            vkvs_cold_do_restore(c, j, st);
        free(j->iov);
        free(j);
        pthread_mutex_lock(&c->slock);
        c->st.restores_inflight--;
        pthread_mutex_unlock(&c->slock);
        vkvs_cold_retire(c, 0, 0, 1, NULL, 0);
    }
    XXH3_freeState(st);
    return NULL;
}
