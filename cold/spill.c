/*
 * cold/spill.c - the writer's spill and eviction: make room under
 * max_bytes by evicting least recently used entries (in their own
 * committed txn, reported as EVICTED after it commits), then write a
 * group of queued spills (each entry's pieces, meta and lru rows) in one
 * txn: one commit, one sync for the group (group commit). Writer thread
 * only.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "common/clock.h"
#include "cold/cold_int.h"
#include "common/log.h"
#include "vkv/error.h"

/* Bytes copied into LMDB's reserved space before they are hashed. */
#define VKVS_COLD_HASH_STEP (64u << 10)

/* An evicted entry, reported after the eviction txn commits. */
typedef struct vkvs_cold_victim {
    char ns[VKVS_COLD_NS_MAX + 1];
    vkv_key key;
    uint64_t size;
} vkvs_cold_victim;

/* Arguments/results of the eviction txn body. */
typedef struct vkvs_cold_evict_arg {
    uint64_t target;            /* evict until bytes <= target */
    const vkvs_cold_keep *keep; /* do not evict these entries */
    size_t nkeep;
    uint64_t bytes;      /* out: stored bytes after the txn */
    uint64_t entries;    /* out: entries after */
    vkvs_cold_victim *v; /* out: victims (array grown by the body) */
    size_t nv, cap;
} vkvs_cold_evict_arg;

/* True when (nsid, key) is one of the entries eviction must keep. */
static bool vkvs_cold_kept(const vkvs_cold_evict_arg *a, uint32_t nsid, const vkv_key *key)
{
    for (size_t i = 0; i < a->nkeep; i++)
        if (a->keep[i].nsid == nsid && memcmp(a->keep[i].key.b, key->b, VKV_KEY_LEN) == 0)
            return true;
    return false;
}

/* Write-txn body: evicts least recently accessed entries until the stored
 * bytes fit a->target. */
static int vkvs_cold_evict_fn(vkvs_cold_env *c, MDB_txn *txn, void *arg)
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
        if (vkvs_cold_kept(a, nsid, &key)) {
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

/* Evicts down to `target` stored bytes, keeping the entries keep[0..nkeep)
 * (caller memory, read during the call), in its own committed txn (so the
 * freed pages are reusable by the next one), then posts EVICTED
 * completions. Writer thread. */
int vkvs_cold_evict_to(vkvs_cold_env *c, uint64_t target, const vkvs_cold_keep *keep, size_t nkeep)
{
    vkvs_cold_evict_arg a;
    memset(&a, 0, sizeof a);
    a.target = target;
    a.keep = keep;
    a.nkeep = nkeep;
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

/* Finds or creates the ns id of `ns` inside write txn; a created one gets
 * id `nid` (the caller's next free id, advanced per namespace created in
 * the txn). */
static int vkvs_cold_nsid_ensure(vkvs_cold_env *c, MDB_txn *txn, const char *ns, uint32_t nid,
                                 uint32_t *id, int *created)
{
    int nslen = (int)strlen(ns);
    int rc = vkvs_cold_nsid_get(c, txn, ns, nslen, id);
    *created = 0;
    if (rc != MDB_NOTFOUND)
        return rc;
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

/* One spill as the writer handles it: the op, its status so far (the
 * check's), the ids the txn body gives it and the body's results. */
typedef struct vkvs_cold_spill_arg {
    vkvs_cold_wop *op;
    int status;        /* 0, or the check's / write's VKV_E* status */
    uint64_t id, seq;  /* in: entry id and lru sequence to use */
    uint32_t nid;      /* in: ns id to give a namespace created here */
    int ns_created;    /* out */
    uint64_t old_size; /* out: size of the replaced entry (0 if none) */
    int replaced;      /* out */
} vkvs_cold_spill_arg;

/* Writes all pieces, then the meta and lru rows, of one spill under entry
 * id a->id inside txn, replacing an older entry of the key (also one
 * written earlier in the same txn). Copies and hashes the payload straight
 * from the op's iovecs into LMDB's reserved space. */
static int vkvs_cold_spill_put(vkvs_cold_env *c, MDB_txn *txn, vkvs_cold_spill_arg *a)
{
    vkvs_cold_wop *op = a->op;
    uint32_t nsid;
    a->replaced = 0;
    a->old_size = 0;
    int rc = vkvs_cold_nsid_ensure(c, txn, op->ns, a->nid, &nsid, &a->ns_created);
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
    m.entry_id = a->id;
    m.created_ms = vkv_wall_ms();
    m.last_access_ms = m.created_ms;
    m.pieces = vkvs_cold_npieces(op->len, m.piece_size);
    m.lru_seq = a->seq;

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
        /* copy and hash in cache-sized steps: the hash reads what the
         * copy just wrote from the cache, not from memory */
        for (size_t off = 0; off < v.mv_size; off += VKVS_COLD_HASH_STEP) {
            size_t n =
                v.mv_size - off < VKVS_COLD_HASH_STEP ? v.mv_size - off : VKVS_COLD_HASH_STEP;
            vkvs_cold_iov_gather(&pos, (uint8_t *)v.mv_data + off, n);
            XXH3_64bits_update(c->wxxh, (uint8_t *)v.mv_data + off, n);
        }
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

/* A group of spills written in one txn (group commit). */
typedef struct vkvs_cold_group {
    vkvs_cold_spill_arg *m; /* members in submission order */
    size_t n;
    uint64_t used;  /* out: members written (ids and sequences consumed) */
    uint32_t nsids; /* out: namespaces created */
} vkvs_cold_group;

/* Write-txn body: writes every member whose status is still 0, in order,
 * giving each the next entry id / lru sequence / ns id. Restartable: all
 * results are recomputed on each try. */
static int vkvs_cold_group_fn(vkvs_cold_env *c, MDB_txn *txn, void *arg)
{
    vkvs_cold_group *g = arg;
    g->used = 0;
    g->nsids = 0;
    for (size_t i = 0; i < g->n; i++) {
        vkvs_cold_spill_arg *a = &g->m[i];
        if (a->status != 0)
            continue;
        a->id = c->next_id + g->used;
        a->seq = c->next_seq + g->used;
        a->nid = c->next_nsid + g->nsids;
        int rc = vkvs_cold_spill_put(c, txn, a);
        if (rc != 0)
            return rc;
        g->used++;
        g->nsids += (uint32_t)a->ns_created;
    }
    return 0;
}

/* Size of the entry stored now under (ns, key), looked up in read txn rt
 * (0 when absent); *nsid and *have_ns receive the namespace's id. */
static uint64_t vkvs_cold_stored_size(vkvs_cold_env *c, MDB_txn *rt, const vkvs_cold_wop *op,
                                      uint32_t *nsid, int *have_ns)
{
    vkvs_cold_meta_rec m;
    *have_ns = 0;
    if (rt == NULL || vkvs_cold_nsid_get(c, rt, op->ns, (int)strlen(op->ns), nsid) != 0)
        return 0;
    *have_ns = 1;
    return vkvs_cold_meta_get(c, rt, *nsid, &op->key, &m) == 0 ? m.size : 0;
}

/* Makes room for the group's members with status 0 before they are
 * written: computes the stored bytes after applying them in order (a
 * member replacing a stored entry, or an earlier member of the same key,
 * frees that size; sizes looked up in one short read txn) and, when that
 * passes max_bytes, evicts least recently used entries, never one of the
 * members' keys, in a separate committed txn. Returns 0, the LMDB error of
 * the eviction, or MDB_MAP_FULL when the members together add more than
 * max_bytes (the caller then writes them one by one). */
static int vkvs_cold_group_room(vkvs_cold_env *c, vkvs_cold_group *g)
{
    vkvs_cold_keep keep[VKVS_COLD_GROUP_OPS];
    size_t nkeep = 0;
    uint64_t add = 0, freed = 0, total = 0;
    MDB_txn *rt = NULL;
    if (vkvs_cold_rtxn_begin(c, &rt) != 0)
        rt = NULL;
    for (size_t i = 0; i < g->n; i++) {
        const vkvs_cold_wop *op = g->m[i].op;
        if (g->m[i].status != 0)
            continue;
        total += op->len;
        add += op->len;
        size_t j = i;
        while (j-- > 0)
            if (g->m[j].status == 0 && memcmp(&g->m[j].op->key, &op->key, sizeof op->key) == 0 &&
                strcmp(g->m[j].op->ns, op->ns) == 0)
                break;
        if (j != (size_t)-1) { /* replaces member j, written just before */
            freed += g->m[j].op->len;
            continue;
        }
        uint32_t nsid;
        int have_ns;
        freed += vkvs_cold_stored_size(c, rt, op, &nsid, &have_ns);
        if (have_ns && nkeep < VKVS_COLD_GROUP_OPS) {
            keep[nkeep].nsid = nsid;
            keep[nkeep].key = op->key;
            nkeep++;
        }
    }
    if (rt != NULL)
        vkvs_cold_rtxn_end(c, rt);
    if (total > c->cfg.max_bytes)
        return MDB_MAP_FULL;
    uint64_t after = c->st.bytes + add - freed; /* writer-owned: no slock */
    if (after <= c->cfg.max_bytes)
        return 0;
    return vkvs_cold_evict_to(c, c->st.bytes - (after - c->cfg.max_bytes), keep, nkeep);
}

/* Writes the group's members with status 0 in one txn (growing the map as
 * needed). Returns 0 or the LMDB/errno code (nothing of the group written
 * then); an EIO on a nearly full filesystem is reported as ENOSPC. */
static int vkvs_cold_group_write(vkvs_cold_env *c, vkvs_cold_group *g)
{
    uint64_t need = 1 << 20;
    for (size_t i = 0; i < g->n; i++)
        if (g->m[i].status == 0)
            need += g->m[i].op->len + g->m[i].op->len / 16 + 4096;
    int rc = vkvs_cold_wtxn(c, vkvs_cold_group_fn, g, need);
    if (rc == EIO) {
        /* LMDB reports a short write (the usual symptom of a full disk) as
         * EIO: call it ENOSPC when the filesystem is indeed nearly full */
        struct statvfs vs;
        if (statvfs(c->dir, &vs) == 0 && (uint64_t)vs.f_bavail * vs.f_frsize < need)
            rc = ENOSPC;
    }
    return rc;
}

/* Runs the configured spill_check over spill `op`'s block (contiguous
 * when it has one piece, else gathered into a temporary buffer). Returns 0
 * or the check's VKV_E* status (VKV_ENOMEM when the gather buffer cannot be
 * had). */
static int vkvs_cold_w_spill_check(vkvs_cold_env *c, const vkvs_cold_wop *op)
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

/* Logs and records why the write of spill `op` failed (LMDB/errno rc). */
static void vkvs_cold_spill_failed(vkvs_cold_env *c, const vkvs_cold_wop *op, int rc)
{
    if (rc == MDB_MAP_FULL)
        vkvs_cold_note_error(c, rc,
                             "spill of %zu bytes refused: map full at its cap of %" PRIu64 " MiB",
                             op->len, c->map_cap >> 20);
    else
        vkvs_cold_note_error(c, rc, "spill of %zu bytes failed (nothing written): %s", op->len,
                             mdb_strerror(rc));
}

/* Applies the results of written members (status 0) to the stats and the
 * writer's counters, counts failed ones, and posts every member's SPILL
 * completion in submission order. `txns` is the number of committed write
 * txns that carried them. */
static void vkvs_cold_group_finish(vkvs_cold_env *c, vkvs_cold_group *g, uint64_t txns)
{
    pthread_mutex_lock(&c->slock);
    for (size_t i = 0; i < g->n; i++) {
        vkvs_cold_spill_arg *a = &g->m[i];
        if (a->status != 0) {
            c->st.spill_errors++;
            continue;
        }
        c->st.bytes = c->st.bytes - a->old_size + a->op->len;
        if (!a->replaced)
            c->st.entries++;
        c->st.spills++;
        c->st.spill_bytes += a->op->len;
    }
    c->st.spill_txns += txns;
    pthread_mutex_unlock(&c->slock);
    for (size_t i = 0; i < g->n; i++) {
        const vkvs_cold_wop *op = g->m[i].op;
        vkvs_cold_complete(c, VKVS_COLD_OP_SPILL, op->tag, g->m[i].status, op->len, op->ns,
                           &op->key);
    }
}

/* The status of a spill whose write failed with LMDB/errno code rc: as
 * vkvs_cold_map_err, except that a damaged environment (MDB_CORRUPTED and
 * the like, VKV_ECORRUPT there) is VKV_EIO here: the tier failed, not the
 * block, which the caller must not drop as a bad block. */
static int vkvs_cold_spill_err(vkvs_cold_env *c, int rc)
{
    int e = vkvs_cold_map_err(c, rc);
    return e == VKV_ECORRUPT ? VKV_EIO : e;
}

/* Writes member `i` of g alone: room, then its own txn. Sets its status
 * and, on success, advances the writer's ids. Returns 1 if it committed. */
static int vkvs_cold_spill_alone(vkvs_cold_env *c, vkvs_cold_group *g, size_t i)
{
    vkvs_cold_group one = {&g->m[i], 1, 0, 0};
    int rc = vkvs_cold_group_room(c, &one);
    if (rc == 0)
        rc = vkvs_cold_group_write(c, &one);
    if (rc != 0) {
        vkvs_cold_spill_failed(c, g->m[i].op, rc);
        g->m[i].status = vkvs_cold_spill_err(c, rc);
        return 0;
    }
    c->next_id += one.used;
    c->next_seq += one.used;
    c->next_nsid += one.nsids;
    return 1;
}

/* Writer: handles ops[0..n), a run of consecutive SPILL ops (n <=
 * VKVS_COLD_GROUP_OPS), by group commit. Each spill is checked on its own
 * (a failed check gives that spill its status and nothing else); the rest
 * are written in ONE write txn, so one commit and one sync carry them all,
 * and every completion is posted only after that commit. If the group txn
 * fails (map full at its cap, a full disk, an I/O error) nothing of it was
 * written, and each member is then retried alone in its own txn, so each
 * gets the status it would have had without neighbours (a small one may
 * still fit where the group did not). A failed env (MDB_PANIC) fails every
 * member. */
void vkvs_cold_w_spill_group(vkvs_cold_env *c, vkvs_cold_wop **ops, size_t n)
{
    vkvs_cold_spill_arg m[VKVS_COLD_GROUP_OPS];
    vkvs_cold_group g = {m, n, 0, 0};
    size_t live = 0;
    for (size_t i = 0; i < n; i++) {
        memset(&m[i], 0, sizeof m[i]);
        m[i].op = ops[i];
        m[i].status =
            c->failed ? vkvs_cold_map_err(c, MDB_PANIC) : vkvs_cold_w_spill_check(c, ops[i]);
        live += m[i].status == 0;
    }
    uint64_t txns = 0;
    int rc = live > 1 ? vkvs_cold_group_room(c, &g) : MDB_MAP_FULL;
    if (rc == 0)
        rc = vkvs_cold_group_write(c, &g);
    if (rc == 0) {
        c->next_id += g.used;
        c->next_seq += g.used;
        c->next_nsid += g.nsids;
        txns = 1;
    } else if (live > 1 && (rc == MDB_PANIC || c->failed)) {
        for (size_t i = 0; i < n; i++)
            if (m[i].status == 0) {
                vkvs_cold_spill_failed(c, ops[i], rc);
                m[i].status = vkvs_cold_spill_err(c, rc);
            }
    } else {
        if (live > 1)
            VKV_DEBUG("cold tier: group of %zu spills failed (%s): writing them one by one", live,
                      mdb_strerror(rc));
        for (size_t i = 0; i < n; i++)
            if (m[i].status == 0)
                txns += (uint64_t)vkvs_cold_spill_alone(c, &g, i);
    }
    vkvs_cold_group_finish(c, &g, txns);
}
