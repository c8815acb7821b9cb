/*
 * cold/verify.c - vkvs_cold_verify: a snapshot of the metadata (the one
 * walker), then every listed entry's payload read and checked in its own
 * short read transaction on the calling thread. Rows that break the
 * validity rule are reported corrupt like a bad payload (and dropped with
 * VKVS_COLD_VERIFY_DROP).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cold/cold_int.h"
#include "common/log.h"
#include "vkv/error.h"

/* One listed entry, for verify's snapshot. A malformed row (valid false)
 * keeps a malloc'ed copy of its raw key so it can be dropped. */
typedef struct vkvs_cold_vitem {
    bool valid;
    uint32_t nsid;
    vkv_key key;
    uint64_t size;
    uint8_t *raw; /* malformed row only: its key bytes (owned) */
    size_t rawlen, vlen;
} vkvs_cold_vitem;

/* The snapshot the walker fills. */
typedef struct vkvs_cold_vlist {
    vkvs_cold_vitem *items;
    size_t n, cap;
    uint64_t total_bytes;
} vkvs_cold_vlist;

/* Frees a snapshot and the raw keys it holds. */
static void vkvs_cold_vlist_free(vkvs_cold_vlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i].raw);
    free(l->items);
}

/* Walker callback: appends every row, valid or not, to the snapshot.
 * Returns 0, or VKV_ENOMEM to stop the walk. */
static int vkvs_cold_verify_list_row(void *ctx, MDB_txn *txn, const vkvs_cold_meta_row *row)
{
    vkvs_cold_vlist *l = ctx;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 256;
        vkvs_cold_vitem *ni = realloc(l->items, ncap * sizeof *ni);
        if (ni == NULL)
            return VKV_ENOMEM;
        l->items = ni;
        l->cap = ncap;
    }
    vkvs_cold_vitem *it = &l->items[l->n];
    memset(it, 0, sizeof *it);
    it->valid = row->valid;
    if (row->valid) {
        it->nsid = row->nsid;
        it->key = row->key;
        it->size = row->m.size;
    } else {
        it->raw = malloc(row->rawlen ? row->rawlen : 1);
        if (it->raw == NULL)
            return VKV_ENOMEM;
        memcpy(it->raw, row->raw, row->rawlen);
        it->rawlen = row->rawlen;
        it->vlen = row->vlen;
    }
    l->total_bytes += it->size;
    l->n++;
    return 0;
}

/* Lists every meta row in one read txn. Returns 0, VKV_ENOMEM or
 * VKV_EIO (the list is freed on error). */
static int vkvs_cold_verify_list(vkvs_cold_env *c, vkvs_cold_vlist *l)
{
    MDB_txn *txn;
    int stop;
    memset(l, 0, sizeof *l);
    int rc = vkvs_cold_rtxn_api(c, &txn);
    if (rc != 0)
        return rc;
    rc = vkvs_cold_meta_walk(c, txn, vkvs_cold_verify_list_row, l, &stop);
    vkvs_cold_rtxn_end(c, txn);
    if (rc == 0 && stop == 0)
        return 0;
    vkvs_cold_vlist_free(l);
    return stop == VKV_ENOMEM ? VKV_ENOMEM : VKV_EIO;
}

/* Checks one valid listed entry in its own read txn. Returns 0 (intact),
 * VKV_ECHECKSUM (corrupt: ns and *entry_id are set for the drop), 1 (gone
 * meanwhile, r->vanished counted, or unreadable, r->read_errors counted)
 * or 2 (no read txn: r->read_errors counted; the entry is skipped without
 * a progress call). */
static int vkvs_cold_verify_entry(vkvs_cold_env *c, const vkvs_cold_vitem *it, XXH3_state_t *st,
                                  char *ns, uint64_t *entry_id, vkvs_cold_verify_report *r)
{
    MDB_txn *txn;
    if (vkvs_cold_rtxn_begin(c, &txn) != 0) {
        r->read_errors++;
        return 2;
    }
    vkvs_cold_meta_rec m;
    memset(&m, 0, sizeof m);
    int rc = vkvs_cold_meta_get(c, txn, it->nsid, &it->key, &m);
    int status;
    if (rc == MDB_NOTFOUND) {
        r->vanished++;
        status = 1;
    } else if (rc == MDB_CORRUPTED) {
        status = VKV_ECHECKSUM;
    } else if (rc != 0) {
        r->read_errors++;
        status = 1;
    } else {
        status = vkvs_cold_read_payload(c, txn, &m, NULL, 0, st);
        if (status != VKV_ECHECKSUM && status != 0) {
            r->read_errors++;
            status = 1;
        }
    }
    if (status == VKV_ECHECKSUM)
        vkvs_cold_ns_name(c, txn, it->nsid, ns);
    vkvs_cold_rtxn_end(c, txn);
    *entry_id = m.entry_id;
    return status;
}

/* Counts one corrupt entry or malformed row (report and checksum_failures),
 * logs it and, with VKVS_COLD_VERIFY_DROP, queues its removal. */
static void vkvs_cold_verify_corrupt(vkvs_cold_env *c, const vkvs_cold_vitem *it, const char *ns,
                                     uint64_t entry_id, unsigned flags, vkvs_cold_verify_report *r)
{
    bool drop = (flags & VKVS_COLD_VERIFY_DROP) != 0;
    r->corrupt++;
    pthread_mutex_lock(&c->slock);
    c->st.checksum_failures++;
    pthread_mutex_unlock(&c->slock);
    if (it->valid) {
        VKV_ERROR("cold tier: verify: entry of %" PRIu64 " bytes in namespace '%s' is "
                  "corrupt%s",
                  it->size, ns, drop ? "; dropping it" : "");
        if (drop)
            vkvs_cold_queue_drop(c, ns, it->nsid, &it->key, entry_id);
    } else {
        VKV_ERROR("cold tier: verify: malformed metadata record (key %zu bytes, value %zu "
                  "bytes)%s",
                  it->rawlen, it->vlen, drop ? "; dropping it" : "");
        if (drop)
            vkvs_cold_queue_drop_row(c, it->raw, it->rawlen);
    }
    if (drop)
        r->dropped++;
}

/* See cold.h (vkvs_cold_verify), for one environment (cold_int.h). */
int vkvs_cold_env_verify(vkvs_cold_env *c, unsigned flags, vkvs_cold_progress_cb progress,
                         void *ctx, vkvs_cold_verify_report *report)
{
    vkvs_cold_verify_report r;
    memset(&r, 0, sizeof r);
    if (report)
        *report = r;
    if (c == NULL)
        return VKV_EINVAL;
    if (c->failed)
        return VKV_ECOLD;

    vkvs_cold_vlist l;
    int rc = vkvs_cold_verify_list(c, &l);
    if (rc != 0)
        return rc;
    XXH3_state_t *st = XXH3_createState();
    if (st == NULL) {
        vkvs_cold_vlist_free(&l);
        return VKV_ENOMEM;
    }
    int ret = 0;
    for (size_t i = 0; i < l.n && ret == 0; i++) {
        const vkvs_cold_vitem *it = &l.items[i];
        char ns[VKVS_COLD_NS_MAX + 1] = "";
        uint64_t entry_id = 0;
        int status =
            it->valid ? vkvs_cold_verify_entry(c, it, st, ns, &entry_id, &r) : VKV_ECHECKSUM;
        if (status == 2)
            continue; /* no read txn: no progress call for this one */
        if (status != 1) {
            r.entries++;
            r.bytes += it->size;
        }
        if (status == VKV_ECHECKSUM)
            vkvs_cold_verify_corrupt(c, it, ns, entry_id, flags, &r);
        if (progress != NULL)
            ret = progress(ctx, i + 1, l.n, r.bytes, l.total_bytes);
    }
    XXH3_freeState(st);
    vkvs_cold_vlist_free(&l);
    if (r.dropped > 0)
        vkvs_cold_wait_idle(c);
    if (report)
        *report = r;
    return ret;
}
