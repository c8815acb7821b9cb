/*
 * cold/record.c - the cold tier's record format (see cold_int.h for the
 * LMDB layout): big-endian key fields, the meta/data/lru keys, payload
 * pieces, iovec cursors, THE metadata validity rule with the one walker
 * that scan, foreach and verify use, and the reads every thread does inside
 * a transaction it already holds.
 */
#include <string.h>

#include "cold/cold_int.h"

/* ---- big-endian fields and keys ------------------------------------------ */

/* Writes v big-endian into p[0..4). */
void vkvs_cold_put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* Writes v big-endian into p[0..8). */
static void vkvs_cold_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* Reads a big-endian u32 from p. */
uint32_t vkvs_cold_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Reads a big-endian u64 from p. */
uint64_t vkvs_cold_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Builds the meta key (ns id, key) into k[VKVS_COLD_META_KLEN]. */
void vkvs_cold_meta_key(uint8_t *k, uint32_t nsid, const vkv_key *key)
{
    vkvs_cold_put_be32(k, nsid);
    memcpy(k + 4, key->b, VKV_KEY_LEN);
}

/* Builds the data key (entry id, piece) into k[VKVS_COLD_DATA_KLEN]. */
void vkvs_cold_data_key(uint8_t *k, uint64_t id, uint32_t piece)
{
    vkvs_cold_put_be64(k, id);
    vkvs_cold_put_be32(k + 8, piece);
}

/* Builds the lru key (access sequence) into k[VKVS_COLD_LRU_KLEN]. */
void vkvs_cold_lru_key(uint8_t *k, uint64_t seq)
{
    vkvs_cold_put_be64(k, seq);
}

/* Builds the lru value (ns id in native order, key) into v[4 + VKV_KEY_LEN]. */
void vkvs_cold_lru_val(uint8_t *v, uint32_t nsid, const vkv_key *key)
{
    memcpy(v, &nsid, 4);
    memcpy(v + 4, key->b, VKV_KEY_LEN);
}

/* ---- pieces and iovec cursors -------------------------------------------- */

/* Returns the number of pieces of a payload of `size` bytes. */
uint32_t vkvs_cold_npieces(uint64_t size, uint32_t piece)
{
    return (uint32_t)((size + piece - 1) / piece);
}

/* Returns the byte length of piece `i` of a `size`-byte payload. */
size_t vkvs_cold_piece_len(uint64_t size, uint32_t piece, uint32_t i)
{
    uint64_t off = (uint64_t)i * piece;
    uint64_t left = size - off;
    return (size_t)(left < piece ? left : piece);
}

/* Sums the lengths of iov[0..n). */
size_t vkvs_cold_iov_total(const struct iovec *iov, int n)
{
    size_t t = 0;
    for (int i = 0; i < n; i++)
        t += iov[i].iov_len;
    return t;
}

/* Returns how many of the next n bytes at p lie in its current iovec. */
static size_t vkvs_cold_iov_span(const vkvs_cold_iovpos *p, size_t n)
{
    size_t take = p->iov[p->i].iov_len - p->off;
    return take > n ? n : take;
}

/* Advances p by `take` bytes within its current iovec. */
static void vkvs_cold_iov_advance(vkvs_cold_iovpos *p, size_t take)
{
    p->off += take;
    if (p->off == p->iov[p->i].iov_len) {
        p->i++;
        p->off = 0;
    }
}

/* Copies n bytes from the iovec position into dst and advances it. The
 * caller guarantees the iovecs hold at least n more bytes. */
void vkvs_cold_iov_gather(vkvs_cold_iovpos *p, uint8_t *dst, size_t n)
{
    while (n > 0) {
        size_t take = vkvs_cold_iov_span(p, n);
        memcpy(dst, (const uint8_t *)p->iov[p->i].iov_base + p->off, take);
        dst += take;
        n -= take;
        vkvs_cold_iov_advance(p, take);
    }
}

/* Copies n bytes from src to the iovec position and advances it. The caller
 * guarantees the iovecs have room for n more bytes. */
void vkvs_cold_iov_scatter(vkvs_cold_iovpos *p, const uint8_t *src, size_t n)
{
    while (n > 0) {
        size_t take = vkvs_cold_iov_span(p, n);
        memcpy((uint8_t *)p->iov[p->i].iov_base + p->off, src, take);
        src += take;
        n -= take;
        vkvs_cold_iov_advance(p, take);
    }
}

/* Feeds the next n bytes at the iovec position into st and advances it.
 * The caller guarantees the iovecs hold at least n more bytes. */
void vkvs_cold_iov_hash(vkvs_cold_iovpos *p, XXH3_state_t *st, size_t n)
{
    while (n > 0) {
        size_t take = vkvs_cold_iov_span(p, n);
        XXH3_64bits_update(st, (const uint8_t *)p->iov[p->i].iov_base + p->off, take);
        n -= take;
        vkvs_cold_iov_advance(p, take);
    }
}

/* ---- metadata rows: the validity rule and the walker ---------------------- */

/* The value half of the rule: copies the record out of v into *m when v is
 * exactly one record. Returns false (m untouched) otherwise. */
bool vkvs_cold_meta_value(const MDB_val *v, vkvs_cold_meta_rec *m)
{
    if (v->mv_size != sizeof *m)
        return false;
    memcpy(m, v->mv_data, sizeof *m);
    return true;
}

/* THE validity rule for a meta row: the key is VKVS_COLD_META_KLEN bytes
 * (u32 ns id BE, 32-byte key) and the value is one vkvs_cold_meta_rec.
 * Fills *row (valid, nsid, key, m for a valid row; raw/rawlen/vlen always,
 * pointing into k's memory) and returns row->valid. */
bool vkvs_cold_meta_decode(const MDB_val *k, const MDB_val *v, vkvs_cold_meta_row *row)
{
    memset(row, 0, sizeof *row);
    row->raw = k->mv_data;
    row->rawlen = k->mv_size;
    row->vlen = v->mv_size;
    if (k->mv_size != VKVS_COLD_META_KLEN || !vkvs_cold_meta_value(v, &row->m))
        return false;
    row->nsid = vkvs_cold_get_be32(k->mv_data);
    memcpy(row->key.b, (const uint8_t *)k->mv_data + 4, VKV_KEY_LEN);
    row->valid = true;
    return true;
}

/* Calls fn for every row of the meta DB in key order (ns id, key) inside
 * txn, the caller's read or write transaction, each row decoded by
 * vkvs_cold_meta_decode; fn decides what an invalid row means to it. The
 * row is valid only during the call. Stops early when fn returns nonzero,
 * which is stored in *stop (0 when the walk reached the end).
 * Returns 0 (end reached or stopped) or the LMDB error of the cursor. */
int vkvs_cold_meta_walk(vkvs_cold_env *c, MDB_txn *txn, vkvs_cold_meta_fn fn, void *ctx, int *stop)
{
    MDB_cursor *cur;
    MDB_val k, v;
    *stop = 0;
    int rc = mdb_cursor_open(txn, c->db_meta, &cur);
    if (rc != 0)
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        vkvs_cold_meta_row row;
        vkvs_cold_meta_decode(&k, &v, &row);
        *stop = fn(ctx, txn, &row);
        if (*stop != 0)
            break;
    }
    mdb_cursor_close(cur);
    return *stop != 0 || rc == MDB_NOTFOUND ? 0 : rc;
}

/* ---- reads inside a transaction the caller holds -------------------------- */

/* Looks up the ns id of `ns` (nslen bytes) in txn: 0, MDB_NOTFOUND, or
 * MDB_CORRUPTED (the stored id is not 4 bytes). */
int vkvs_cold_nsid_get(vkvs_cold_env *c, MDB_txn *txn, const char *ns, int nslen, uint32_t *id)
{
    MDB_val k = {(size_t)nslen + 1, (void *)ns}, v;
    int rc = mdb_get(txn, c->db_ns, &k, &v);
    if (rc != 0)
        return rc;
    if (v.mv_size != 4)
        return MDB_CORRUPTED;
    memcpy(id, v.mv_data, 4);
    return 0;
}

/* Reads the meta record of (nsid, key) in txn: 0, MDB_NOTFOUND or
 * MDB_CORRUPTED (a row that breaks the validity rule). */
int vkvs_cold_meta_get(vkvs_cold_env *c, MDB_txn *txn, uint32_t nsid, const vkv_key *key,
                       vkvs_cold_meta_rec *m)
{
    uint8_t kb[VKVS_COLD_META_KLEN];
    vkvs_cold_meta_key(kb, nsid, key);
    MDB_val k = {sizeof kb, kb}, v;
    int rc = mdb_get(txn, c->db_meta, &k, &v);
    if (rc != 0)
        return rc;
    return vkvs_cold_meta_value(&v, m) ? 0 : MDB_CORRUPTED;
}

/* Reads the namespace string of ns id `nsid` into out (size > NS_MAX;
 * "" when missing). Returns 0 or the LMDB error. */
int vkvs_cold_ns_name(vkvs_cold_env *c, MDB_txn *txn, uint32_t nsid, char *out)
{
    uint8_t kb[4];
    vkvs_cold_put_be32(kb, nsid);
    MDB_val k = {4, kb}, v;
    int rc = mdb_get(txn, c->db_nsid, &k, &v);
    if (rc != 0) {
        out[0] = 0;
        return rc;
    }
    size_t n = v.mv_size > 0 ? v.mv_size - 1 : 0;
    if (n > VKVS_COLD_NS_MAX)
        n = VKVS_COLD_NS_MAX;
    memcpy(out, v.mv_data, n);
    out[n] = 0;
    return 0;
}

/* Fills the caller's *e from a meta record; e->ns = ns (the pointer is
 * stored, not copied). */
void vkvs_cold_info_fill(vkvs_cold_entry_info *e, const char *ns, const vkv_key *key,
                         const vkvs_cold_meta_rec *m)
{
    e->ns = ns;
    e->key = *key;
    e->size = m->size;
    e->checksum = m->xxh;
    e->created_ms = m->created_ms;
    e->last_access_ms = m->last_access_ms;
    e->hits = m->hits;
    e->piece_size = m->piece_size;
    e->pieces = m->pieces;
}
