/*
 * cold/spill.c - the writer's spill and eviction: make room under
 * max_bytes by evicting least recently used entries (in their own
 * committed txn, reported as EVICTED after it commits), then write one
 * entry (all pieces, meta and lru rows) in one txn. Writer thread only.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "common/clock.h"
#include "cold/cold_int.h"
#include "common/log.h"
#include "vkv/error.h"

/* An evicted entry, reported after the eviction txn commits. */
typedef struct vkvs_cold_victim {
    char ns[VKVS_COLD_NS_MAX + 1];
    vkv_key key;
    uint64_t size;
} vkvs_cold_victim;

/* Arguments/results of the eviction txn body. */
typedef struct vkvs_cold_evict_arg {
    uint64_t target; /* evict until bytes <= target */
    int has_keep;    /* do not evict (keep_nsid, keep_key) */
    uint32_t keep_nsid;
    vkv_key keep_key;
    uint64_t bytes;      /* out: stored bytes after the txn */
    uint64_t entries;    /* out: entries after */
    vkvs_cold_victim *v; /* out: victims (array grown by the body) */
    size_t nv, cap;
} vkvs_cold_evict_arg;

/* Write-txn body: evicts least recently accessed entries until the stored
 * bytes fit a->target. */
static int vkvs_cold_evict_fn(vkvs_cold *c, MDB_txn *txn, void *arg)
{
    vkvs_cold_evict_arg *a = arg;
    MDB_cursor *cur;
    a->nv = 0;
    a->bytes = c->st.bytes; /* writer-owned fields: read without slock */
    a->entries = c->st.entries;
    int rc = mdb_cursor_open(txn, c->db_lru, &cur);
    if (rc != 0)
        return rc;
    MDB_val k, v;
    MDB_cursor_op op = MDB_FIRST;
    while (a->bytes > a->target) {
        rc = mdb_cursor_get(cur, &k, &v, op);
        if (rc != 0)
            break; /* nothing left to evict */
        if (v.mv_size != 4 + VKV_KEY_LEN) {
            rc = MDB_CORRUPTED;
            break;
        }
        uint32_t nsid;
        vkv_key key;
        memcpy(&nsid, v.mv_data, 4);
        memcpy(key.b, (uint8_t *)v.mv_data + 4, VKV_KEY_LEN);
        if (a->has_keep && nsid == a->keep_nsid && memcmp(key.b, a->keep_key.b, VKV_KEY_LEN) == 0) {
            op = MDB_NEXT;
            continue;
        }
        vkvs_cold_meta_rec m;
        rc = vkvs_cold_meta_get(c, txn, nsid, &key, &m);
        if (rc == MDB_NOTFOUND) { /* stray lru row: drop it */
            rc = mdb_cursor_del(cur, 0);
            if (rc != 0)
                break;
            op = MDB_FIRST;
            continue;
        }
        if (rc != 0)
            break;
        if (a->nv == a->cap) {
            size_t ncap = a->cap ? a->cap * 2 : 16;
            vkvs_cold_victim *nv = realloc(a->v, ncap * sizeof *nv);
            if (nv == NULL) {
                rc = ENOMEM;
                break;
            }
            a->v = nv;
            a->cap = ncap;
        }
        vkvs_cold_victim *vi = &a->v[a->nv];
        vkvs_cold_ns_name(c, txn, nsid, vi->ns);
        vi->key = key;
        vi->size = m.size;
        rc = vkvs_cold_del_entry(c, txn, nsid, &key, &m);
        if (rc != 0)
            break;
        a->nv++;
        a->bytes -= m.size;
        a->entries--;
        op = MDB_FIRST; /* the cursor row was deleted: restart from the oldest */
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Evicts down to `target` stored bytes, keeping (keep_nsid, keep_key) when
 * has_keep, in its own committed txn (so the freed pages are reusable by
 * the next one), then posts EVICTED completions. Writer thread. */
int vkvs_cold_evict_to(vkvs_cold *c, uint64_t target, int has_keep, uint32_t keep_nsid,
                       const vkv_key *keep_key)
{
    vkvs_cold_evict_arg a;
    memset(&a, 0, sizeof a);
    a.target = target;
    a.has_keep = has_keep;
    a.keep_nsid = keep_nsid;
    if (keep_key)
        a.keep_key = *keep_key;
    int rc = vkvs_cold_wtxn(c, vkvs_cold_evict_fn, &a, 1 << 20);
    if (rc != 0) {
        vkvs_cold_note_error(c, rc, "eviction failed: %s", mdb_strerror(rc));
        free(a.v);
        return rc;
    }
    uint64_t ebytes = 0;
    for (size_t i = 0; i < a.nv; i++)
        ebytes += a.v[i].size;
    pthread_mutex_lock(&c->slock);
    c->st.bytes = a.bytes;
    c->st.entries = a.entries;
    c->st.evictions += a.nv;
    c->st.evicted_bytes += ebytes;
    pthread_mutex_unlock(&c->slock);
    for (size_t i = 0; i < a.nv; i++)
        vkvs_cold_complete(c, VKVS_COLD_OP_EVICTED, 0, 0, a.v[i].size, a.v[i].ns, &a.v[i].key);
    if (a.nv > 0)
        VKV_DEBUG("cold tier: evicted %zu entries (%" PRIu64 " bytes)", a.nv, ebytes);
    free(a.v);
    return 0;
}

/* Finds or creates the ns id of `ns` inside write txn. */
static int vkvs_cold_nsid_ensure(vkvs_cold *c, MDB_txn *txn, const char *ns, uint32_t *id,
                                 int *created)
{
    int nslen = (int)strlen(ns);
    int rc = vkvs_cold_nsid_get(c, txn, ns, nslen, id);
    *created = 0;
    if (rc != MDB_NOTFOUND)
        return rc;
    uint32_t nid = c->next_nsid;
    MDB_val k = {(size_t)nslen + 1, (void *)ns}, v = {4, &nid};
    rc = mdb_put(txn, c->db_ns, &k, &v, MDB_NOOVERWRITE);
    if (rc != 0)
        return rc;
    uint8_t ib[4];
    vkvs_cold_put_be32(ib, nid);
    MDB_val ik = {4, ib}, iv = {(size_t)nslen + 1, (void *)ns};
    rc = mdb_put(txn, c->db_nsid, &ik, &iv, 0);
    if (rc != 0)
        return rc;
    *id = nid;
    *created = 1;
    return 0;
}

/* Arguments/results of the spill txn body. */
typedef struct vkvs_cold_spill_arg {
    vkvs_cold_wop *op;
    int ns_created;    /* out */
    uint64_t old_size; /* out: size of the replaced entry (0 if none) */
    int replaced;      /* out */
} vkvs_cold_spill_arg;

/* Write-txn body: writes all pieces, then the meta and lru rows, of one
 * spill under a fresh entry id, replacing an older entry of the key. */
static int vkvs_cold_spill_fn(vkvs_cold *c, MDB_txn *txn, void *arg)
{
    vkvs_cold_spill_arg *a = arg;
    vkvs_cold_wop *op = a->op;
    uint32_t nsid;
    a->replaced = 0;
    a->old_size = 0;
    int rc = vkvs_cold_nsid_ensure(c, txn, op->ns, &nsid, &a->ns_created);
    if (rc != 0)
        return rc;
    vkvs_cold_meta_rec old;
    rc = vkvs_cold_meta_get(c, txn, nsid, &op->key, &old);
    if (rc == 0) {
        rc = vkvs_cold_del_entry(c, txn, nsid, &op->key, &old);
        if (rc != 0)
            return rc;
        a->replaced = 1;
        a->old_size = old.size;
    } else if (rc != MDB_NOTFOUND) {
        return rc;
    }

    vkvs_cold_meta_rec m;
    memset(&m, 0, sizeof m);
    m.version = VKVS_COLD_FORMAT;
    m.piece_size = c->cfg.piece_size;
    m.size = op->len;
    m.entry_id = c->next_id;
    m.created_ms = vkv_wall_ms();
    m.last_access_ms = m.created_ms;
    m.pieces = vkvs_cold_npieces(op->len, m.piece_size);
    m.lru_seq = c->next_seq;

    vkvs_cold_iovpos pos = {op->iov, op->niov, 0, 0};
    XXH3_64bits_reset(c->wxxh);
    for (uint32_t i = 0; i < m.pieces; i++) {
        uint8_t kb[VKVS_COLD_DATA_KLEN];
        vkvs_cold_data_key(kb, m.entry_id, i);
        MDB_val k = {sizeof kb, kb};
        MDB_val v = {vkvs_cold_piece_len(m.size, m.piece_size, i), NULL};
        /* entry ids only grow, so data keys arrive in order: APPEND */
        rc = mdb_put(txn, c->db_data, &k, &v, MDB_RESERVE | MDB_APPEND);
        if (rc != 0)
            return rc;
        vkvs_cold_iov_gather(&pos, v.mv_data, v.mv_size);
        XXH3_64bits_update(c->wxxh, v.mv_data, v.mv_size);
    }
    m.xxh = XXH3_64bits_digest(c->wxxh);

    uint8_t mk[VKVS_COLD_META_KLEN];
    vkvs_cold_meta_key(mk, nsid, &op->key);
    MDB_val k = {sizeof mk, mk}, v = {sizeof m, &m};
    rc = mdb_put(txn, c->db_meta, &k, &v, 0);
    if (rc != 0)
        return rc;
    uint8_t lk[VKVS_COLD_LRU_KLEN], lv[4 + VKV_KEY_LEN];
    vkvs_cold_lru_key(lk, m.lru_seq);
    vkvs_cold_lru_val(lv, nsid, &op->key);
    MDB_val l = {sizeof lk, lk}, lval = {sizeof lv, lv};
    return mdb_put(txn, c->db_lru, &l, &lval, 0);
}

/* Makes room for spill `op` before it is written: when the stored bytes
 * after it (the size of an entry it replaces counts as freed; looked up in
 * a short read txn) would pass max_bytes, evicts least recently used
 * entries, never the key being replaced, in a separate committed txn.
 * Returns 0 or the LMDB error of the eviction. */
static int vkvs_cold_w_spill_room(vkvs_cold *c, const vkvs_cold_wop *op)
{
    uint64_t old_size = 0;
    uint32_t nsid = 0;
    int have_ns = 0;
    MDB_txn *rt;
    if (vkvs_cold_rtxn_begin(c, &rt) == 0) {
        vkvs_cold_meta_rec m;
        if (vkvs_cold_nsid_get(c, rt, op->ns, (int)strlen(op->ns), &nsid) == 0) {
            have_ns = 1;
            if (vkvs_cold_meta_get(c, rt, nsid, &op->key, &m) == 0)
                old_size = m.size;
        }
        vkvs_cold_rtxn_end(c, rt);
    }
    uint64_t after = c->st.bytes - old_size + op->len;
    if (after <= c->cfg.max_bytes)
        return 0;
    return vkvs_cold_evict_to(c, c->cfg.max_bytes - op->len + old_size, have_ns, nsid, &op->key);
}

/* Writes spill `op` in one txn (growing the map as needed). Returns 0 or
 * the LMDB/errno code, with an EIO on a nearly full filesystem reported as
 * ENOSPC; *a receives the txn body's results. */
static int vkvs_cold_w_spill_write(vkvs_cold *c, vkvs_cold_wop *op, vkvs_cold_spill_arg *a)
{
    uint64_t need = op->len + (op->len / 16) + (1 << 20);
    int rc = vkvs_cold_wtxn(c, vkvs_cold_spill_fn, a, need);
    if (rc == EIO) {
        /* LMDB reports a short write (the usual symptom of a full disk) as
         * EIO: call it ENOSPC when the filesystem is indeed nearly full */
        struct statvfs vs;
        if (statvfs(c->dir, &vs) == 0 && (uint64_t)vs.f_bavail * vs.f_frsize < need)
            rc = ENOSPC;
    }
    if (rc == MDB_MAP_FULL)
        vkvs_cold_note_error(c, rc,
                             "spill of %zu bytes refused: map full at its cap of %" PRIu64 " MiB",
                             op->len, c->map_cap >> 20);
    else if (rc != 0)
        vkvs_cold_note_error(c, rc, "spill of %zu bytes failed (nothing written): %s", op->len,
                             mdb_strerror(rc));
    return rc;
}

/* Runs the configured spill_check over spill `op`'s block (contiguous
 * when it has one piece, else gathered into a temporary buffer). Returns 0
 * or the check's VKV_E* status (VKV_ENOMEM when the gather buffer cannot be
 * had). */
static int vkvs_cold_w_spill_check(vkvs_cold *c, const vkvs_cold_wop *op)
{
    if (!c->cfg.spill_check)
        return 0;
    if (op->niov == 1 && op->iov[0].iov_len >= op->len)
        return c->cfg.spill_check(c->cfg.spill_check_arg, op->ns, &op->key, op->iov[0].iov_base,
                                  op->len);
    uint8_t *buf = malloc(op->len ? op->len : 1);
    if (!buf)
        return VKV_ENOMEM;
    vkvs_cold_iovpos pos = {op->iov, op->niov, 0, 0};
    vkvs_cold_iov_gather(&pos, buf, op->len);
    int rc = c->cfg.spill_check(c->cfg.spill_check_arg, op->ns, &op->key, buf, op->len);
    free(buf);
    return rc;
}

/* Writer: handles one SPILL op (check, evict for room, write, count,
 * complete). */
void vkvs_cold_w_spill(vkvs_cold *c, vkvs_cold_wop *op)
{
    vkvs_cold_spill_arg a = {.op = op};
    int checked = c->failed ? 0 : vkvs_cold_w_spill_check(c, op);
    int rc = c->failed ? MDB_PANIC : checked ? 0 : vkvs_cold_w_spill_room(c, op);
    if (rc == 0 && !checked)
        rc = vkvs_cold_w_spill_write(c, op, &a);
    int status = checked ? checked : vkvs_cold_map_err(c, rc);
    pthread_mutex_lock(&c->slock);
    if (status != 0) {
        c->st.spill_errors++;
    } else {
        c->st.bytes = c->st.bytes - a.old_size + op->len;
        if (!a.replaced)
            c->st.entries++;
        c->st.spills++;
        c->st.spill_bytes += op->len;
    }
    pthread_mutex_unlock(&c->slock);
    if (status == 0) {
        c->next_id++;
        c->next_seq++;
        if (a.ns_created)
            c->next_nsid++;
    }
    vkvs_cold_complete(c, VKVS_COLD_OP_SPILL, op->tag, status, op->len, op->ns, &op->key);
}
