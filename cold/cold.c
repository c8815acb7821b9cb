/*
 * store/cold.c - the LMDB cold tier (see cold.h and docs/COLD_TIER.md).
 *
 * Layout (named DBs in one env, MDB_NOMETASYNC | MDB_NOTLS, no MDB_WRITEMAP):
 *   info  "format" -> u32 format version
 *   ns    namespace bytes + NUL -> u32 ns id
 *   nsid  u32 ns id (BE) -> namespace bytes + NUL
 *   meta  (u32 ns id BE, 32-byte key) -> struct vkvs_cold_meta_rec
 *   data  (u64 entry id BE, u32 piece BE) -> piece bytes (piece_size, last
 *         piece shorter)
 *   lru   (u64 access sequence BE) -> (u32 ns id, key); the sequence is a
 *         logical clock bumped on every spill and restore, so the order
 *         never depends on wall-clock resolution
 *
 * Threads: one writer (all write txns, map growth), N readers (restores),
 * the caller. Every read transaction in this process runs under the read
 * side of `maplock`; the writer takes the write side to call
 * mdb_env_set_mapsize, which LMDB allows only with no active txn.
 */
#include "cold.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "clock.h"
#include "log.h"
#include "vkv/error.h"

/* Restores queue an access-time update only while fewer writer ops wait. */
#define VKVS_COLD_TOUCH_QUEUE_MAX 1024u

#define VKVS_COLD_FORMAT    1u
#define VKVS_COLD_SLACK     (16ull << 20) /* map slack for metadata and the free list */
#define VKVS_COLD_META_KLEN (4 + VKV_KEY_LEN)
#define VKVS_COLD_DATA_KLEN 12
#define VKVS_COLD_LRU_KLEN  8

/* The fixed metadata record of one entry (native endian; the env is a
 * private, single-machine file). */
typedef struct vkvs_cold_meta_rec {
    uint32_t version;    /* VKVS_COLD_FORMAT */
    uint32_t piece_size; /* bytes per piece */
    uint64_t size;       /* payload bytes */
    uint64_t xxh;        /* XXH3-64 of the payload */
    uint64_t entry_id;   /* data key prefix */
    uint64_t created_ms;
    uint64_t last_access_ms;
    uint64_t hits;
    uint32_t pieces;
    uint32_t reserved;
    uint64_t lru_seq; /* key of this entry's lru row */
} vkvs_cold_meta_rec;
_Static_assert(sizeof(vkvs_cold_meta_rec) == 72, "meta record is 72 bytes");

enum vkvs_cold_opkind {
    VKVS_COLD_K_SPILL = 1,
    VKVS_COLD_K_DELETE,
    VKVS_COLD_K_TOUCH, /* lazy access-time update after a restore */
    VKVS_COLD_K_DROP,  /* delete a corrupt entry if still the same id */
    VKVS_COLD_K_SYNC,  /* forced mdb_env_sync, wakes a waiter */
    VKVS_COLD_K_TRIM,  /* evict down to max_bytes (after open) */
};

/* A caller blocked until the writer handled one op. */
typedef struct vkvs_cold_waiter {
    int done;
    int rc;
} vkvs_cold_waiter;

/* One writer-queue item. Owned by the queue, then by the writer, which
 * frees it (and `owned`) after posting its completion. */
typedef struct vkvs_cold_wop {
    struct vkvs_cold_wop *next;
    int kind;
    uint64_t tag;
    char ns[VKVS_COLD_NS_MAX + 1];
    vkv_key key;
    void *owned;       /* spill: malloc'ed payload freed after the write */
    struct iovec *iov; /* spill: source pieces (malloc'ed array) */
    int niov;
    size_t len;               /* spill: payload bytes */
    uint32_t nsid;            /* touch/drop */
    uint64_t entry_id;        /* touch/drop */
    uint64_t access_ms;       /* touch */
    vkvs_cold_waiter *waiter; /* sync */
} vkvs_cold_wop;

/* One restore job (reader queue). Owned by the queue, then the reader. */
typedef struct vkvs_cold_rjob {
    struct vkvs_cold_rjob *next;
    uint64_t tag;
    char ns[VKVS_COLD_NS_MAX + 1];
    vkv_key key;
    struct iovec *iov;
    int niov;
} vkvs_cold_rjob;

struct vkvs_cold {
    vkvs_cold_config cfg;
    char *dir;
    int lockfd;
    int efd;
    MDB_env *env;
    MDB_dbi db_info, db_ns, db_nsid, db_meta, db_data, db_lru;
    pthread_rwlock_t maplock; /* read side: any read txn; write side: resize */

    /* writer queue */
    pthread_mutex_t qlock;
    pthread_cond_t qcond;    /* writer waits for work */
    pthread_cond_t donecond; /* waiters / flush wait for progress */
    vkvs_cold_wop *qhead, *qtail;
    uint64_t queue_ops, queue_bytes;
    uint64_t pending; /* ops submitted (spill/delete/restore/touch/drop) not finished */
    int wstop;
    int closing;
    pthread_t writer;
    int writer_started;

    /* reader queue */
    pthread_mutex_t rlock;
    pthread_cond_t rcond;
    vkvs_cold_rjob *rhead, *rtail;
    int rstop;
    pthread_t *readers;
    int nreaders_started;

    /* completions */
    pthread_mutex_t clock;
    vkvs_cold_completion *comp;
    size_t comp_head, comp_len, comp_cap;

    /* stats (under slock) */
    pthread_mutex_t slock;
    vkvs_cold_stats st;

    /* writer-only state */
    uint64_t next_id;
    uint64_t next_seq;
    uint32_t next_nsid;
    uint64_t map_size;
    uint64_t map_cap;
    int dirty;
    uint64_t last_sync_ms, last_rcheck_ms;
    XXH3_state_t *wxxh;
    volatile int failed;
};

/* ---- small helpers ------------------------------------------------------- */

/* Writes v big-endian into p[0..4). */
static void vkvs_cold_put_be32(uint8_t *p, uint32_t v)
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
static uint32_t vkvs_cold_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Reads a big-endian u64 from p. */
static uint64_t vkvs_cold_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Builds the meta key (ns id, key) into k[VKVS_COLD_META_KLEN]. */
static void vkvs_cold_meta_key(uint8_t *k, uint32_t nsid, const vkv_key *key)
{
    vkvs_cold_put_be32(k, nsid);
    memcpy(k + 4, key->b, VKV_KEY_LEN);
}

/* Builds the data key (entry id, piece) into k[VKVS_COLD_DATA_KLEN]. */
static void vkvs_cold_data_key(uint8_t *k, uint64_t id, uint32_t piece)
{
    vkvs_cold_put_be64(k, id);
    vkvs_cold_put_be32(k + 8, piece);
}

/* Builds the lru key (access sequence) into k[VKVS_COLD_LRU_KLEN]. */
static void vkvs_cold_lru_key(uint8_t *k, uint64_t seq)
{
    vkvs_cold_put_be64(k, seq);
}

/* Returns the number of pieces of a payload of `size` bytes. */
static uint32_t vkvs_cold_npieces(uint64_t size, uint32_t piece)
{
    return (uint32_t)((size + piece - 1) / piece);
}

/* Returns the byte length of piece `i` of a `size`-byte payload. */
static size_t vkvs_cold_piece_len(uint64_t size, uint32_t piece, uint32_t i)
{
    uint64_t off = (uint64_t)i * piece;
    uint64_t left = size - off;
    return (size_t)(left < piece ? left : piece);
}

/* Sums the lengths of iov[0..n). */
static size_t vkvs_cold_iov_total(const struct iovec *iov, int n)
{
    size_t t = 0;
    for (int i = 0; i < n; i++)
        t += iov[i].iov_len;
    return t;
}

/* A position inside an iovec array, advanced by vkvs_cold_iov_copy_*. */
typedef struct vkvs_cold_iovpos {
    const struct iovec *iov;
    int n, i;
    size_t off;
} vkvs_cold_iovpos;

/* Copies n bytes from the iovec position into dst and advances it. The
 * caller guarantees the iovecs hold at least n more bytes. */
static void vkvs_cold_iov_gather(vkvs_cold_iovpos *p, uint8_t *dst, size_t n)
{
    while (n > 0) {
        const struct iovec *v = &p->iov[p->i];
        size_t take = v->iov_len - p->off;
        if (take > n)
            take = n;
        memcpy(dst, (const uint8_t *)v->iov_base + p->off, take);
        dst += take;
        n -= take;
        p->off += take;
        if (p->off == v->iov_len) {
            p->i++;
            p->off = 0;
        }
    }
}

/* Copies n bytes from src to the iovec position and advances it. The caller
 * guarantees the iovecs have room for n more bytes. */
static void vkvs_cold_iov_scatter(vkvs_cold_iovpos *p, const uint8_t *src, size_t n)
{
    while (n > 0) {
        const struct iovec *v = &p->iov[p->i];
        size_t take = v->iov_len - p->off;
        if (take > n)
            take = n;
        memcpy((uint8_t *)v->iov_base + p->off, src, take);
        src += take;
        n -= take;
        p->off += take;
        if (p->off == v->iov_len) {
            p->i++;
            p->off = 0;
        }
    }
}

/* Records a failure: counts it by class, keeps a copy of the message as
 * last_error and logs it at error level. Thread-safe. */
static void vkvs_cold_note_error(vkvs_cold *c, int mdb_rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void vkvs_cold_note_error(vkvs_cold *c, int mdb_rc, const char *fmt, ...)
{
    char msg[VKVS_COLD_ERRSTR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
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
 * failed on MDB_PANIC. */
static int vkvs_cold_map_err(vkvs_cold *c, int rc)
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

/* Validates and measures a namespace string; returns its length or -1. */
static int vkvs_cold_ns_len(const char *ns)
{
    if (ns == NULL)
        return -1;
    size_t n = strnlen(ns, VKVS_COLD_NS_MAX + 1);
    return n > VKVS_COLD_NS_MAX ? -1 : (int)n;
}

/* ---- completions --------------------------------------------------------- */

/* Appends one completion (copied) and signals the eventfd. Returns 0 or
 * VKV_ENOMEM (then the completion is lost and logged). */
static int vkvs_cold_post(vkvs_cold *c, const vkvs_cold_completion *cp)
{
    pthread_mutex_lock(&c->clock);
    if (c->comp_len == c->comp_cap) {
        size_t ncap = c->comp_cap ? c->comp_cap * 2 : 64;
        vkvs_cold_completion *n = malloc(ncap * sizeof *n);
        if (n == NULL) {
            pthread_mutex_unlock(&c->clock);
            VKV_ERROR("cold tier: out of memory posting a %s completion",
                      vkvs_cold_op_name(cp->op));
            return VKV_ENOMEM;
        }
        for (size_t i = 0; i < c->comp_len; i++)
            n[i] = c->comp[(c->comp_head + i) % c->comp_cap];
        free(c->comp);
        c->comp = n;
        c->comp_cap = ncap;
        c->comp_head = 0;
    }
    c->comp[(c->comp_head + c->comp_len) % c->comp_cap] = *cp;
    c->comp_len++;
    uint64_t one = 1;
    ssize_t w = write(c->efd, &one, sizeof one);
    (void)w; /* EAGAIN only at counter overflow: the fd is readable anyway */
    pthread_mutex_unlock(&c->clock);
    return 0;
}

/* Builds and posts a completion. */
static void vkvs_cold_complete(vkvs_cold *c, int op, uint64_t tag, int status, uint64_t size,
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

int vkvs_cold_poll(vkvs_cold *c, vkvs_cold_completion *out, int max)
{
    int n = 0;
    if (c == NULL || out == NULL || max <= 0)
        return 0;
    pthread_mutex_lock(&c->clock);
    while (n < max && c->comp_len > 0) {
        out[n++] = c->comp[c->comp_head];
        c->comp_head = (c->comp_head + 1) % c->comp_cap;
        c->comp_len--;
    }
    if (c->comp_len == 0) {
        uint64_t v;
        ssize_t r = read(c->efd, &v, sizeof v); /* reset; EAGAIN when already 0 */
        (void)r;
    }
    pthread_mutex_unlock(&c->clock);
    return n;
}

int vkvs_cold_fd(const vkvs_cold *c)
{
    return c ? c->efd : -1;
}

/* Marks one op finished (pending--), waking flush waiters. */
static void vkvs_cold_op_finished(vkvs_cold *c)
{
    pthread_mutex_lock(&c->qlock);
    c->pending--;
    pthread_cond_broadcast(&c->donecond);
    pthread_mutex_unlock(&c->qlock);
}

/* ---- read side ------------------------------------------------------------ */

/* Begins a read txn under the read side of maplock. On success the caller
 * must end it with vkvs_cold_rtxn_end. */
static int vkvs_cold_rtxn_begin(vkvs_cold *c, MDB_txn **txn)
{
    pthread_rwlock_rdlock(&c->maplock);
    int rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, txn);
    if (rc != 0) {
        pthread_rwlock_unlock(&c->maplock);
        *txn = NULL;
    }
    return rc;
}

/* Aborts a read txn and releases maplock. */
static void vkvs_cold_rtxn_end(vkvs_cold *c, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&c->maplock);
}

/* Looks up the ns id of `ns` (nslen bytes) in txn: 0 or MDB_NOTFOUND. */
static int vkvs_cold_nsid_get(vkvs_cold *c, MDB_txn *txn, const char *ns, int nslen, uint32_t *id)
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
 * MDB_CORRUPTED (wrong record size). */
static int vkvs_cold_meta_get(vkvs_cold *c, MDB_txn *txn, uint32_t nsid, const vkv_key *key,
                              vkvs_cold_meta_rec *m)
{
    uint8_t kb[VKVS_COLD_META_KLEN];
    vkvs_cold_meta_key(kb, nsid, key);
    MDB_val k = {sizeof kb, kb}, v;
    int rc = mdb_get(txn, c->db_meta, &k, &v);
    if (rc != 0)
        return rc;
    if (v.mv_size != sizeof *m)
        return MDB_CORRUPTED;
    memcpy(m, v.mv_data, sizeof *m);
    return 0;
}

/* Reads every piece of entry `m` in txn, copying into dst (when non-NULL;
 * its capacity was checked by the caller) and hashing with st.
 * Returns 0 (payload intact), VKV_ECHECKSUM (missing/short piece, size or
 * hash mismatch) or another VKV_E* from LMDB. */
static int vkvs_cold_read_payload(vkvs_cold *c, MDB_txn *txn, const vkvs_cold_meta_rec *m,
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
            /* hash what landed in dst (hot in cache), piece by piece */
            size_t left = v.mv_size;
            while (left > 0) {
                const struct iovec *iv = &start.iov[start.i];
                size_t take = iv->iov_len - start.off;
                if (take > left)
                    take = left;
                XXH3_64bits_update(st, (const uint8_t *)iv->iov_base + start.off, take);
                left -= take;
                start.off += take;
                if (start.off == iv->iov_len) {
                    start.i++;
                    start.off = 0;
                }
            }
        } else {
            XXH3_64bits_update(st, v.mv_data, v.mv_size);
        }
    }
    return XXH3_64bits_digest(st) == m->xxh ? 0 : VKV_ECHECKSUM;
}

/* Queues an internal op (touch/drop/trim) for the writer, counting it as
 * pending. Returns 0 or VKV_ENOMEM (the op is then skipped: touch and drop
 * are best-effort; a corrupt entry will be found again next time). */
static int vkvs_cold_wenqueue(vkvs_cold *c, vkvs_cold_wop *op)
{
    pthread_mutex_lock(&c->qlock);
    op->next = NULL;
    if (c->qtail)
        c->qtail->next = op;
    else
        c->qhead = op;
    c->qtail = op;
    c->queue_ops++;
    c->queue_bytes += op->len;
    c->pending++;
    pthread_cond_signal(&c->qcond);
    pthread_mutex_unlock(&c->qlock);
    return 0;
}

/* Ops queued for the writer now (any thread). */
static uint64_t vkvs_cold_queue_len(vkvs_cold *c)
{
    pthread_mutex_lock(&c->qlock);
    uint64_t n = c->queue_ops;
    pthread_mutex_unlock(&c->qlock);
    return n;
}

/* Allocates and queues a DROP of entry (nsid, key, id) for the writer. */
static void vkvs_cold_queue_drop(vkvs_cold *c, const char *ns, uint32_t nsid, const vkv_key *key,
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

/* Runs one restore job on a reader thread and posts its completion. */
static void vkvs_cold_do_restore(vkvs_cold *c, vkvs_cold_rjob *j, XXH3_state_t *st)
{
    MDB_txn *txn;
    vkvs_cold_meta_rec m;
    uint32_t nsid = 0;
    int nslen = (int)strlen(j->ns);
    int status;
    uint64_t size = 0;
    int corrupt = 0;
    int rc;

    memset(&m, 0, sizeof m);
    if (c->failed) {
        status = VKV_ECOLD;
        goto done;
    }
    rc = vkvs_cold_rtxn_begin(c, &txn);
    if (rc != 0) {
        status = vkvs_cold_map_err(c, rc);
        vkvs_cold_note_error(c, rc, "restore: cannot begin read txn: %s", mdb_strerror(rc));
        goto done;
    }
    rc = vkvs_cold_nsid_get(c, txn, j->ns, nslen, &nsid);
    if (rc == 0)
        rc = vkvs_cold_meta_get(c, txn, nsid, &j->key, &m);
    if (rc == MDB_NOTFOUND) {
        status = VKV_ENOTFOUND;
    } else if (rc == MDB_CORRUPTED) {
        status = VKV_EIO;
        vkvs_cold_note_error(c, rc, "restore: malformed metadata record");
    } else if (rc != 0) {
        status = vkvs_cold_map_err(c, rc);
        vkvs_cold_note_error(c, rc, "restore: metadata read failed: %s", mdb_strerror(rc));
    } else {
        size = m.size;
        if (vkvs_cold_iov_total(j->iov, j->niov) < m.size) {
            status = VKV_ETRUNC;
        } else {
            status = vkvs_cold_read_payload(c, txn, &m, j->iov, j->niov, st);
            if (status == VKV_ECHECKSUM)
                corrupt = 1;
            else if (status != 0)
                vkvs_cold_note_error(c, EIO, "restore: payload read failed: %s",
                                     vkv_strerror(status));
        }
    }
    vkvs_cold_rtxn_end(c, txn);

done:
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
    } else if (status == 0 && vkvs_cold_queue_len(c) < VKVS_COLD_TOUCH_QUEUE_MAX) {
        /* the access-time update is best effort: a writer that is behind
         * (thousands of ops queued) skips it rather than grow the queue */
        vkvs_cold_wop *op = calloc(1, sizeof *op);
        if (op != NULL) {
            op->kind = VKVS_COLD_K_TOUCH;
            op->nsid = nsid;
            op->key = j->key;
            op->entry_id = m.entry_id;
            op->access_ms = vkv_wall_ms();
            vkvs_cold_wenqueue(c, op);
        }
    }
    vkvs_cold_complete(c, VKVS_COLD_OP_RESTORE, j->tag, status, size, j->ns, &j->key);
}

/* Reader thread body: serves restore jobs until told to stop with an empty
 * queue. */
static void *vkvs_cold_reader_main(void *arg)
{
    vkvs_cold *c = arg;
    XXH3_state_t *st = XXH3_createState();
    for (;;) {
        pthread_mutex_lock(&c->rlock);
        while (c->rhead == NULL && !c->rstop)
            pthread_cond_wait(&c->rcond, &c->rlock);
        vkvs_cold_rjob *j = c->rhead;
        if (j == NULL) { /* stop requested and nothing left */
            pthread_mutex_unlock(&c->rlock);
            break;
        }
        c->rhead = j->next;
        if (c->rhead == NULL)
            c->rtail = NULL;
        pthread_mutex_unlock(&c->rlock);
        if (st == NULL) {
            vkvs_cold_complete(c, VKVS_COLD_OP_RESTORE, j->tag, VKV_ENOMEM, 0, j->ns, &j->key);
        } else {
            vkvs_cold_do_restore(c, j, st);
        }
        free(j->iov);
        free(j);
        pthread_mutex_lock(&c->slock);
        c->st.restores_inflight--;
        pthread_mutex_unlock(&c->slock);
        vkvs_cold_op_finished(c);
    }
    XXH3_freeState(st);
    return NULL;
}

/* ---- write side ----------------------------------------------------------- */

/* Refreshes the map_used gauge from the env (writer thread, no txn open). */
static void vkvs_cold_refresh_map_used(vkvs_cold *c)
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
static int vkvs_cold_grow(vkvs_cold *c, uint64_t need)
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

/* Body of a write transaction; returns 0 or an LMDB/errno code. Must be
 * safe to run again after an abort (keep results in `arg` reset per try). */
typedef int (*vkvs_cold_wfn)(vkvs_cold *c, MDB_txn *txn, void *arg);

/* Runs fn in a write txn and commits; on MDB_MAP_FULL aborts, grows the map
 * (need = hint of bytes needed) and retries. Returns 0 or the LMDB/errno
 * code of the final failure (the txn is aborted then: nothing written). */
static int vkvs_cold_wtxn(vkvs_cold *c, vkvs_cold_wfn fn, void *arg, uint64_t need)
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
static int vkvs_cold_del_pieces(vkvs_cold *c, MDB_txn *txn, uint64_t id)
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
static int vkvs_cold_del_entry(vkvs_cold *c, MDB_txn *txn, uint32_t nsid, const vkv_key *key,
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

/* Reads the namespace string of ns id `nsid` into out (size > NS_MAX). */
static int vkvs_cold_ns_name(vkvs_cold *c, MDB_txn *txn, uint32_t nsid, char *out)
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
static int vkvs_cold_evict_to(vkvs_cold *c, uint64_t target, int has_keep, uint32_t keep_nsid,
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
    memcpy(lv, &nsid, 4);
    memcpy(lv + 4, op->key.b, VKV_KEY_LEN);
    MDB_val l = {sizeof lk, lk}, lval = {sizeof lv, lv};
    return mdb_put(txn, c->db_lru, &l, &lval, 0);
}

/* Writer: handles one SPILL op (evict for room, write, complete). */
static void vkvs_cold_w_spill(vkvs_cold *c, vkvs_cold_wop *op)
{
    int status = 0;
    if (c->failed) {
        status = VKV_ECOLD;
        goto out;
    }
    /* Room: evict LRU entries (never the key being replaced) first, in a
     * separate committed txn. Size of an entry being replaced counts as
     * freed: look it up in a short read txn. */
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
    if (after > c->cfg.max_bytes) {
        int rc =
            vkvs_cold_evict_to(c, c->cfg.max_bytes - op->len + old_size, have_ns, nsid, &op->key);
        if (rc != 0) {
            status = vkvs_cold_map_err(c, rc);
            goto out;
        }
    }
    vkvs_cold_spill_arg a = {.op = op};
    uint64_t need = op->len + (op->len / 16) + (1 << 20);
    int rc = vkvs_cold_wtxn(c, vkvs_cold_spill_fn, &a, need);
    if (rc == EIO) {
        /* LMDB reports a short write (the usual symptom of a full disk) as
         * EIO: call it ENOSPC when the filesystem is indeed nearly full */
        struct statvfs vs;
        if (statvfs(c->dir, &vs) == 0 && (uint64_t)vs.f_bavail * vs.f_frsize < need)
            rc = ENOSPC;
    }
    if (rc != 0) {
        status = vkvs_cold_map_err(c, rc);
        if (rc == MDB_MAP_FULL)
            vkvs_cold_note_error(
                c, rc, "spill of %zu bytes refused: map full at its cap of %" PRIu64 " MiB",
                op->len, c->map_cap >> 20);
        else
            vkvs_cold_note_error(c, rc, "spill of %zu bytes failed (nothing written): %s", op->len,
                                 mdb_strerror(rc));
        goto out;
    }
    c->next_id++;
    c->next_seq++;
    if (a.ns_created)
        c->next_nsid++;
    pthread_mutex_lock(&c->slock);
    c->st.bytes = c->st.bytes - a.old_size + op->len;
    if (!a.replaced)
        c->st.entries++;
    c->st.spills++;
    c->st.spill_bytes += op->len;
    pthread_mutex_unlock(&c->slock);
out:
    if (status != 0) {
        pthread_mutex_lock(&c->slock);
        c->st.spill_errors++;
        pthread_mutex_unlock(&c->slock);
    }
    vkvs_cold_complete(c, VKVS_COLD_OP_SPILL, op->tag, status, op->len, op->ns, &op->key);
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
static int vkvs_cold_del_fn(vkvs_cold *c, MDB_txn *txn, void *arg)
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
static void vkvs_cold_w_delete(vkvs_cold *c, vkvs_cold_wop *op)
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
static int vkvs_cold_touch_fn(vkvs_cold *c, MDB_txn *txn, void *arg)
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
        memcpy(lv, &op->nsid, 4);
        memcpy(lv + 4, op->key.b, VKV_KEY_LEN);
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
static int vkvs_cold_w_sync(vkvs_cold *c)
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
static void vkvs_cold_w_reader_check(vkvs_cold *c)
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

/* Frees one op and its owned payload. */
static void vkvs_cold_op_free(vkvs_cold_wop *op)
{
    free(op->owned);
    free(op->iov);
    free(op);
}

/* Writer thread: pops batches of ops in order and applies them; runs the
 * periodic sync and reader check; exits after draining once told to stop,
 * with a final sync. */
static void *vkvs_cold_writer_main(void *arg)
{
    vkvs_cold *c = arg;
    for (;;) {
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
        int stop = c->wstop;
        pthread_mutex_unlock(&c->qlock);

        while (batch != NULL) {
            vkvs_cold_wop *op = batch;
            if (op->kind == VKVS_COLD_K_TOUCH) {
                /* gather the run of consecutive touches into one txn */
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
                pthread_mutex_lock(&c->qlock);
                c->queue_ops -= n;
                c->pending -= n;
                pthread_cond_broadcast(&c->donecond);
                pthread_mutex_unlock(&c->qlock);
                for (size_t i = 0; i < n; i++)
                    vkvs_cold_op_free(run[i]);
                continue;
            }
            batch = op->next;
            int counted = 1;
            switch (op->kind) {
            case VKVS_COLD_K_SPILL:
                vkvs_cold_w_spill(c, op);
                break;
            case VKVS_COLD_K_DELETE:
            case VKVS_COLD_K_DROP:
                vkvs_cold_w_delete(c, op);
                break;
            case VKVS_COLD_K_TRIM:
                if (!c->failed)
                    vkvs_cold_evict_to(c, c->cfg.max_bytes, 0, 0, NULL);
                break;
            case VKVS_COLD_K_SYNC: {
                int rc = c->failed ? VKV_ECOLD : vkvs_cold_w_sync(c);
                pthread_mutex_lock(&c->qlock);
                op->waiter->rc = rc;
                op->waiter->done = 1;
                c->queue_ops--;
                pthread_cond_broadcast(&c->donecond);
                pthread_mutex_unlock(&c->qlock);
                free(op); /* the waiter lives on the caller's stack */
                counted = 0;
                break;
            }
            }
            if (counted) {
                pthread_mutex_lock(&c->qlock);
                c->queue_ops--;
                c->queue_bytes -= op->len;
                c->pending--;
                pthread_cond_broadcast(&c->donecond);
                pthread_mutex_unlock(&c->qlock);
                vkvs_cold_op_free(op);
            }
        }
        if (!c->failed)
            vkvs_cold_refresh_map_used(c);

        uint64_t now = vkv_now_ms();
        if (!c->failed && c->dirty && c->cfg.sync_interval_ms > 0 &&
            now >= c->last_sync_ms + c->cfg.sync_interval_ms)
            vkvs_cold_w_sync(c);
        if (!c->failed && now >= c->last_rcheck_ms + c->cfg.reader_check_ms)
            vkvs_cold_w_reader_check(c);

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

/* ---- public API ----------------------------------------------------------- */

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

void vkvs_cold_config_default(vkvs_cold_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_bytes = 1ull << 30;
    cfg->sync_interval_ms = 1000;
    cfg->piece_size = VKVS_COLD_PIECE_DEFAULT;
    cfg->reader_threads = 2;
    cfg->reader_check_ms = 10000;
}

/* Formats an open error into err (if given), logs it and returns code. */
static int vkvs_cold_open_fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int vkvs_cold_open_fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    VKV_ERROR("cold tier unavailable: %s", msg);
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
    return code;
}

/* Maps an errno from directory/file set-up to a VKV_E* code. */
static int vkvs_cold_errno_code(int e)
{
    switch (e) {
    case EACCES:
    case EPERM:
    case EROFS:
        return VKV_EPERM;
    case ENOSPC:
    case EDQUOT:
        return VKV_ENOSPC;
    case ENOTDIR:
    case ENAMETOOLONG:
    case ELOOP:
        return VKV_EINVAL;
    case ENOMEM:
        return VKV_ENOMEM;
    default:
        return VKV_EIO;
    }
}

/* Creates `dir` and missing parents with mode 0700 (like mkdir -p).
 * Returns 0 or an errno value; *bad receives the component that failed
 * (a pointer into a static-free local copy is not kept: copied to bad). */
static int vkvs_cold_mkdirs(const char *dir, char *bad, size_t badlen)
{
    char path[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path)
        return ENAMETOOLONG;
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != 0)
            continue;
        char saved = path[i];
        path[i] = 0;
        struct stat sb;
        if (stat(path, &sb) != 0) {
            if (errno != ENOENT || (mkdir(path, 0700) != 0 && errno != EEXIST)) {
                int e = errno;
                snprintf(bad, badlen, "%s", path);
                return e;
            }
        } else if (!S_ISDIR(sb.st_mode)) {
            snprintf(bad, badlen, "%s", path);
            return ENOTDIR;
        }
        path[i] = saved;
    }
    return 0;
}

/* Open-time scan: counts entries and bytes, and finds the next entry id and
 * ns id. Runs in a read txn. */
static int vkvs_cold_scan(vkvs_cold *c)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = vkvs_cold_rtxn_begin(c, &txn);
    if (rc != 0)
        return rc;
    c->next_id = 1;
    c->next_seq = 1;
    c->next_nsid = 1;
    rc = mdb_cursor_open(txn, c->db_meta, &cur);
    if (rc == 0) {
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            vkvs_cold_meta_rec m;
            if (v.mv_size != sizeof m)
                continue;
            memcpy(&m, v.mv_data, sizeof m);
            c->st.entries++;
            c->st.bytes += m.size;
            if (m.entry_id >= c->next_id)
                c->next_id = m.entry_id + 1;
        }
        mdb_cursor_close(cur);
    }
    if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_open(txn, c->db_data, &cur);
    if (rc == 0) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
        if (rc == 0 && k.mv_size == VKVS_COLD_DATA_KLEN &&
            vkvs_cold_get_be64(k.mv_data) >= c->next_id)
            c->next_id = vkvs_cold_get_be64(k.mv_data) + 1;
        mdb_cursor_close(cur);
    }
    if (rc == 0 || rc == MDB_NOTFOUND)
        rc = mdb_cursor_open(txn, c->db_lru, &cur);
    if (rc == 0) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
        if (rc == 0 && k.mv_size == VKVS_COLD_LRU_KLEN)
            c->next_seq = vkvs_cold_get_be64(k.mv_data) + 1;
        mdb_cursor_close(cur);
    }
    if (rc == 0 || rc == MDB_NOTFOUND)
        rc = mdb_cursor_open(txn, c->db_nsid, &cur);
    if (rc == 0) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
        if (rc == 0 && k.mv_size == 4)
            c->next_nsid = vkvs_cold_get_be32(k.mv_data) + 1;
        mdb_cursor_close(cur);
    }
    vkvs_cold_rtxn_end(c, txn);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Opens the named DBs (creating them) and checks the format version. */
static int vkvs_cold_open_dbs(vkvs_cold *c, int *bad_format)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(c->env, NULL, 0, &txn);
    if (rc != 0)
        return rc;
    *bad_format = 0;
    if ((rc = mdb_dbi_open(txn, "info", MDB_CREATE, &c->db_info)) != 0 ||
        (rc = mdb_dbi_open(txn, "ns", MDB_CREATE, &c->db_ns)) != 0 ||
        (rc = mdb_dbi_open(txn, "nsid", MDB_CREATE, &c->db_nsid)) != 0 ||
        (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &c->db_meta)) != 0 ||
        (rc = mdb_dbi_open(txn, "data", MDB_CREATE, &c->db_data)) != 0 ||
        (rc = mdb_dbi_open(txn, "lru", MDB_CREATE, &c->db_lru)) != 0)
        goto fail;
    MDB_val k = {6, "format"}, v;
    rc = mdb_get(txn, c->db_info, &k, &v);
    if (rc == MDB_NOTFOUND) {
        uint32_t f = VKVS_COLD_FORMAT;
        MDB_val nv = {4, &f};
        rc = mdb_put(txn, c->db_info, &k, &nv, 0);
    } else if (rc == 0) {
        uint32_t f = 0;
        if (v.mv_size == 4)
            memcpy(&f, v.mv_data, 4);
        if (f != VKVS_COLD_FORMAT) {
            *bad_format = (int)f ? (int)f : -1;
            rc = MDB_INCOMPATIBLE;
        }
    }
    if (rc != 0)
        goto fail;
    return mdb_txn_commit(txn);
fail:
    mdb_txn_abort(txn);
    return rc;
}

/* Frees the queues, completion array and sync primitives of a handle
 * (threads already joined, env closed). */
static void vkvs_cold_free(vkvs_cold *c)
{
    while (c->qhead) {
        vkvs_cold_wop *n = c->qhead->next;
        vkvs_cold_op_free(c->qhead);
        c->qhead = n;
    }
    while (c->rhead) {
        vkvs_cold_rjob *n = c->rhead->next;
        free(c->rhead->iov);
        free(c->rhead);
        c->rhead = n;
    }
    if (c->wxxh)
        XXH3_freeState(c->wxxh);
    free(c->comp);
    free(c->readers);
    if (c->efd >= 0)
        close(c->efd);
    if (c->lockfd >= 0)
        close(c->lockfd);
    pthread_rwlock_destroy(&c->maplock);
    pthread_mutex_destroy(&c->qlock);
    pthread_cond_destroy(&c->qcond);
    pthread_cond_destroy(&c->donecond);
    pthread_mutex_destroy(&c->rlock);
    pthread_cond_destroy(&c->rcond);
    pthread_mutex_destroy(&c->clock);
    pthread_mutex_destroy(&c->slock);
    free(c->dir);
    free(c);
}

/* Stops and joins the threads that were started (readers first: they may
 * queue touches/drops for the writer, which then drains everything). */
static void vkvs_cold_stop_threads(vkvs_cold *c)
{
    pthread_mutex_lock(&c->rlock);
    c->rstop = 1;
    pthread_cond_broadcast(&c->rcond);
    pthread_mutex_unlock(&c->rlock);
    for (int i = 0; i < c->nreaders_started; i++)
        pthread_join(c->readers[i], NULL);
    c->nreaders_started = 0;
    if (c->writer_started) {
        pthread_mutex_lock(&c->qlock);
        c->wstop = 1;
        pthread_cond_signal(&c->qcond);
        pthread_mutex_unlock(&c->qlock);
        pthread_join(c->writer, NULL);
        c->writer_started = 0;
    }
}

int vkvs_cold_open(const vkvs_cold_config *cfg, vkvs_cold **out, char *err, size_t errlen)
{
    if (out == NULL)
        return VKV_EINVAL;
    *out = NULL;
    if (err != NULL && errlen > 0)
        err[0] = 0;
    if (cfg == NULL || cfg->dir == NULL || cfg->dir[0] == 0)
        return vkvs_cold_open_fail(err, errlen, VKV_EINVAL, "no directory configured");
    if (cfg->max_bytes == 0 || cfg->piece_size < VKVS_COLD_PIECE_MIN ||
        cfg->piece_size > VKVS_COLD_PIECE_MAX || cfg->reader_threads < 1 ||
        cfg->reader_threads > 64)
        return vkvs_cold_open_fail(err, errlen, VKV_EINVAL,
                                   "invalid config (max_bytes %" PRIu64
                                   ", piece_size %u, reader_threads %d)",
                                   cfg->max_bytes, cfg->piece_size, cfg->reader_threads);

    char bad[4096];
    int e = vkvs_cold_mkdirs(cfg->dir, bad, sizeof bad);
    if (e != 0)
        return vkvs_cold_open_fail(err, errlen, vkvs_cold_errno_code(e),
                                   "cannot create directory '%s' (at '%s'): %s", cfg->dir, bad,
                                   strerror(e));
    if (access(cfg->dir, R_OK | W_OK | X_OK) != 0) {
        e = errno;
        return vkvs_cold_open_fail(err, errlen, vkvs_cold_errno_code(e),
                                   "directory '%s' is not writable: %s", cfg->dir, strerror(e));
    }

    vkvs_cold *c = calloc(1, sizeof *c);
    if (c == NULL)
        return vkvs_cold_open_fail(err, errlen, VKV_ENOMEM, "out of memory");
    c->cfg = *cfg;
    c->efd = -1;
    c->lockfd = -1;
    if (c->cfg.reader_check_ms == 0)
        c->cfg.reader_check_ms = 10000;
    c->dir = strdup(cfg->dir);
    c->cfg.dir = c->dir;

    pthread_rwlockattr_t rwa;
    pthread_rwlockattr_init(&rwa);
    /* writer preference: a waiting map resize is not starved by readers */
    pthread_rwlockattr_setkind_np(&rwa, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&c->maplock, &rwa);
    pthread_rwlockattr_destroy(&rwa);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&c->qlock, NULL);
    pthread_cond_init(&c->qcond, &ca);
    pthread_cond_init(&c->donecond, NULL);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&c->rlock, NULL);
    pthread_cond_init(&c->rcond, NULL);
    pthread_mutex_init(&c->clock, NULL);
    pthread_mutex_init(&c->slock, NULL);

    int code;
    int rc;
    if (c->dir == NULL) {
        code = vkvs_cold_open_fail(err, errlen, VKV_ENOMEM, "out of memory");
        goto fail_free;
    }

    /* one process per directory: LMDB's own lock allows several */
    char lpath[4200];
    snprintf(lpath, sizeof lpath, "%s/vkv-cold.lock", c->dir);
    c->lockfd = open(lpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (c->lockfd < 0) {
        e = errno;
        code = vkvs_cold_open_fail(err, errlen, vkvs_cold_errno_code(e), "cannot open '%s': %s",
                                   lpath, strerror(e));
        goto fail_free;
    }
    if (flock(c->lockfd, LOCK_EX | LOCK_NB) != 0) {
        e = errno;
        code = vkvs_cold_open_fail(err, errlen, e == EWOULDBLOCK ? VKV_EBUSY : VKV_EIO,
                                   "directory '%s' is in use by another process (%s)", c->dir,
                                   strerror(e));
        goto fail_free;
    }

    /* map sizing: start at 2 x bound + slack, never below the file size */
    uint64_t want = cfg->max_bytes * 2 + VKVS_COLD_SLACK;
    c->map_cap = cfg->map_cap_bytes ? cfg->map_cap_bytes : cfg->max_bytes * 4 + VKVS_COLD_SLACK;
    if (cfg->map_initial_bytes)
        want = cfg->map_initial_bytes;
    if (want > c->map_cap)
        want = c->map_cap;
    char dpath[4200];
    snprintf(dpath, sizeof dpath, "%s/data.mdb", c->dir);
    struct stat sb;
    if (stat(dpath, &sb) == 0 && (uint64_t)sb.st_size > want)
        want = (uint64_t)sb.st_size;
    if (want > c->map_cap)
        c->map_cap = want;
    want = (want + 4095) & ~4095ull;

    if ((rc = mdb_env_create(&c->env)) != 0) {
        code = vkvs_cold_open_fail(err, errlen, vkvs_cold_map_err(NULL, rc), "mdb_env_create: %s",
                                   mdb_strerror(rc));
        goto fail_free;
    }
    if ((rc = mdb_env_set_maxdbs(c->env, 8)) != 0 ||
        (rc = mdb_env_set_maxreaders(c->env, (unsigned)cfg->reader_threads + 64)) != 0 ||
        (rc = mdb_env_set_mapsize(c->env, (size_t)want)) != 0) {
        code = vkvs_cold_open_fail(err, errlen, vkvs_cold_map_err(NULL, rc), "LMDB set-up: %s",
                                   mdb_strerror(rc));
        goto fail_env;
    }
    /* MDB_NOMETASYNC, not MDB_NOSYNC: every commit flushes its data pages
     * and only the meta page waits for the next explicit sync, so a power
     * cut can lose the newest transactions but never corrupt older ones
     * (with MDB_NOSYNC, LMDB may reuse pages freed since the last sync and a
     * crash can damage more than the newest transaction). */
    rc = mdb_env_open(c->env, c->dir, MDB_NOMETASYNC | MDB_NOTLS, 0600);
    if (rc != 0) {
        code = vkvs_cold_open_fail(err, errlen, vkvs_cold_map_err(NULL, rc),
                                   "cannot open LMDB environment in '%s': %s", c->dir,
                                   mdb_strerror(rc));
        goto fail_env;
    }
    MDB_envinfo ei;
    mdb_env_info(c->env, &ei);
    c->map_size = ei.me_mapsize;
    if (c->map_size > c->map_cap)
        c->map_cap = c->map_size;

    int dead = 0;
    mdb_reader_check(c->env, &dead);
    c->st.stale_readers = (uint64_t)dead;
    c->last_rcheck_ms = vkv_now_ms();
    c->last_sync_ms = c->last_rcheck_ms;

    int bad_format = 0;
    rc = vkvs_cold_open_dbs(c, &bad_format);
    if (rc != 0) {
        if (bad_format)
            code = vkvs_cold_open_fail(err, errlen, VKV_ECORRUPT,
                                       "'%s' holds cold-tier format %d, expected %u", c->dir,
                                       bad_format, VKVS_COLD_FORMAT);
        else
            code = vkvs_cold_open_fail(err, errlen, vkvs_cold_map_err(NULL, rc),
                                       "cannot initialise LMDB databases in '%s': %s", c->dir,
                                       mdb_strerror(rc));
        goto fail_env;
    }
    if ((rc = mdb_env_sync(c->env, 1)) != 0) {
        code = vkvs_cold_open_fail(err, errlen, vkvs_cold_map_err(NULL, rc),
                                   "cannot sync LMDB environment in '%s': %s", c->dir,
                                   mdb_strerror(rc));
        goto fail_env;
    }
    if ((rc = vkvs_cold_scan(c)) != 0) {
        code =
            vkvs_cold_open_fail(err, errlen, vkvs_cold_map_err(NULL, rc),
                                "cannot read the cold index in '%s': %s", c->dir, mdb_strerror(rc));
        goto fail_env;
    }
    c->st.max_bytes = cfg->max_bytes;
    c->st.map_size = c->map_size;
    c->st.map_cap = c->map_cap;

    c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    c->wxxh = XXH3_createState();
    c->readers = calloc((size_t)cfg->reader_threads, sizeof *c->readers);
    if (c->efd < 0 || c->wxxh == NULL || c->readers == NULL) {
        code = vkvs_cold_open_fail(err, errlen, c->efd < 0 ? VKV_ESYS : VKV_ENOMEM,
                                   "cannot create eventfd/state: %s", strerror(errno));
        goto fail_env;
    }
    if (pthread_create(&c->writer, NULL, vkvs_cold_writer_main, c) != 0) {
        code = vkvs_cold_open_fail(err, errlen, VKV_ESYS, "cannot start the writer thread");
        goto fail_env;
    }
    c->writer_started = 1;
    for (int i = 0; i < cfg->reader_threads; i++) {
        if (pthread_create(&c->readers[i], NULL, vkvs_cold_reader_main, c) != 0) {
            code = vkvs_cold_open_fail(err, errlen, VKV_ESYS, "cannot start reader thread %d", i);
            goto fail_threads;
        }
        c->nreaders_started++;
    }
    if (c->st.bytes > cfg->max_bytes) {
        vkvs_cold_wop *op = calloc(1, sizeof *op);
        if (op != NULL) {
            op->kind = VKVS_COLD_K_TRIM;
            vkvs_cold_wenqueue(c, op);
        }
    }
    VKV_INFO("cold tier: opened '%s': %" PRIu64 " entries, %" PRIu64 " MiB stored, bound %" PRIu64
             " MiB, map %" PRIu64 " MiB (cap %" PRIu64 " MiB)",
             c->dir, c->st.entries, c->st.bytes >> 20, cfg->max_bytes >> 20, c->map_size >> 20,
             c->map_cap >> 20);
    *out = c;
    return 0;

fail_threads:
    vkvs_cold_stop_threads(c);
fail_env:
    mdb_env_close(c->env);
fail_free:
    vkvs_cold_free(c);
    return code;
}

/* Validates the common arguments of the queueing calls. */
static int vkvs_cold_check_submit(vkvs_cold *c, const char *ns, const vkv_key *key)
{
    if (c == NULL || key == NULL || vkvs_cold_ns_len(ns) < 0)
        return VKV_EINVAL;
    if (c->failed)
        return VKV_ECOLD;
    return 0;
}

/* Queues a user op (spill/delete) unless closing or the byte bound is hit.
 * On error the op is not queued (the caller frees it). */
static int vkvs_cold_submit(vkvs_cold *c, vkvs_cold_wop *op)
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

/* Common body of the two spill calls: the op takes `iov` (malloc'ed array)
 * and, on success only, `owned`. */
static int vkvs_cold_spill_common(vkvs_cold *c, const char *ns, const vkv_key *key,
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

int vkvs_cold_spill(vkvs_cold *c, const char *ns, const vkv_key *key, void *buf, size_t len,
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
    vkvs_cold_wop *op = calloc(1, sizeof *op);
    if (iov == NULL || op == NULL) {
        free(iov);
        free(op);
        return VKV_ENOMEM;
    }
    iov->iov_base = buf;
    iov->iov_len = len;
    op->kind = VKVS_COLD_K_SPILL;
    op->tag = tag;
    snprintf(op->ns, sizeof op->ns, "%s", ns);
    op->key = *key;
    op->iov = iov;
    op->niov = 1;
    op->len = len;
    op->owned = buf; /* freed by the writer; handed back below on error */
    rc = vkvs_cold_submit(c, op);
    if (rc != 0) {
        free(op->iov);
        free(op);
    }
    return rc;
}

int vkvs_cold_spill_iov(vkvs_cold *c, const char *ns, const vkv_key *key, const struct iovec *src,
                        int nsrc, uint64_t tag)
{
    int rc = vkvs_cold_check_submit(c, ns, key);
    if (rc != 0)
        return rc;
    if (src == NULL || nsrc <= 0)
        return VKV_EINVAL;
    size_t len = vkvs_cold_iov_total(src, nsrc);
    if (len == 0)
        return VKV_EINVAL;
    if (len > c->cfg.max_bytes)
        return VKV_ETOOBIG;
    struct iovec *iov = malloc((size_t)nsrc * sizeof *iov);
    if (iov == NULL)
        return VKV_ENOMEM;
    memcpy(iov, src, (size_t)nsrc * sizeof *iov);
    return vkvs_cold_spill_common(c, ns, key, iov, nsrc, len, NULL, tag);
}

int vkvs_cold_restore(vkvs_cold *c, const char *ns, const vkv_key *key, const struct iovec *dst,
                      int ndst, uint64_t tag)
{
    int rc = vkvs_cold_check_submit(c, ns, key);
    if (rc != 0)
        return rc;
    if (dst == NULL || ndst <= 0)
        return VKV_EINVAL;
    vkvs_cold_rjob *j = calloc(1, sizeof *j);
    struct iovec *iov = malloc((size_t)ndst * sizeof *iov);
    if (j == NULL || iov == NULL) {
        free(j);
        free(iov);
        return VKV_ENOMEM;
    }
    memcpy(iov, dst, (size_t)ndst * sizeof *iov);
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
    pthread_mutex_lock(&c->rlock);
    if (c->rtail)
        c->rtail->next = j;
    else
        c->rhead = j;
    c->rtail = j;
    pthread_cond_signal(&c->rcond);
    pthread_mutex_unlock(&c->rlock);
    return 0;
}

int vkvs_cold_delete(vkvs_cold *c, const char *ns, const vkv_key *key, uint64_t tag)
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

int vkvs_cold_lookup(vkvs_cold *c, const char *ns, const vkv_key *key, vkvs_cold_entry_info *info)
{
    int nslen = vkvs_cold_ns_len(ns);
    if (c == NULL || key == NULL || info == NULL || nslen < 0)
        return VKV_EINVAL;
    if (c->failed)
        return VKV_ECOLD;
    MDB_txn *txn;
    int rc = vkvs_cold_rtxn_begin(c, &txn);
    if (rc != 0)
        return vkvs_cold_map_err(c, rc);
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
    info->ns = ns;
    info->key = *key;
    info->size = m.size;
    info->checksum = m.xxh;
    info->created_ms = m.created_ms;
    info->last_access_ms = m.last_access_ms;
    info->hits = m.hits;
    info->piece_size = m.piece_size;
    info->pieces = m.pieces;
    return 0;
}

int vkvs_cold_foreach(vkvs_cold *c, vkvs_cold_foreach_cb cb, void *ctx)
{
    if (c == NULL || cb == NULL)
        return VKV_EINVAL;
    if (c->failed)
        return VKV_ECOLD;
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = vkvs_cold_rtxn_begin(c, &txn);
    if (rc != 0)
        return vkvs_cold_map_err(c, rc);
    rc = mdb_cursor_open(txn, c->db_meta, &cur);
    if (rc != 0) {
        vkvs_cold_rtxn_end(c, txn);
        return VKV_EIO;
    }
    char ns[VKVS_COLD_NS_MAX + 1] = "";
    uint32_t cur_nsid = 0;
    int have_ns = 0;
    MDB_val k, v;
    int ret = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        vkvs_cold_meta_rec m;
        if (k.mv_size != VKVS_COLD_META_KLEN || v.mv_size != sizeof m)
            continue;
        memcpy(&m, v.mv_data, sizeof m);
        uint32_t nsid = vkvs_cold_get_be32(k.mv_data);
        if (!have_ns || nsid != cur_nsid) {
            vkvs_cold_ns_name(c, txn, nsid, ns);
            cur_nsid = nsid;
            have_ns = 1;
        }
        vkvs_cold_entry_info e;
        e.ns = ns;
        memcpy(e.key.b, (uint8_t *)k.mv_data + 4, VKV_KEY_LEN);
        e.size = m.size;
        e.checksum = m.xxh;
        e.created_ms = m.created_ms;
        e.last_access_ms = m.last_access_ms;
        e.hits = m.hits;
        e.piece_size = m.piece_size;
        e.pieces = m.pieces;
        ret = cb(ctx, &e);
        if (ret != 0)
            break;
    }
    mdb_cursor_close(cur);
    vkvs_cold_rtxn_end(c, txn);
    if (ret != 0)
        return ret;
    return rc == MDB_NOTFOUND ? 0 : VKV_EIO;
}

/* Blocks until every submitted op (pending) has finished. */
static void vkvs_cold_wait_idle(vkvs_cold *c)
{
    pthread_mutex_lock(&c->qlock);
    while (c->pending > 0)
        pthread_cond_wait(&c->donecond, &c->qlock);
    pthread_mutex_unlock(&c->qlock);
}

int vkvs_cold_sync(vkvs_cold *c)
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
    if (c->qtail)
        c->qtail->next = op;
    else
        c->qhead = op;
    c->qtail = op;
    c->queue_ops++;
    pthread_cond_signal(&c->qcond);
    while (!w.done)
        pthread_cond_wait(&c->donecond, &c->qlock);
    pthread_mutex_unlock(&c->qlock);
    return w.rc;
}

int vkvs_cold_flush_wait(vkvs_cold *c)
{
    if (c == NULL)
        return VKV_EINVAL;
    vkvs_cold_wait_idle(c);
    return vkvs_cold_sync(c);
}

/* One listed entry, for verify's snapshot. */
typedef struct vkvs_cold_vitem {
    uint32_t nsid;
    vkv_key key;
    uint64_t size;
} vkvs_cold_vitem;

int vkvs_cold_verify(vkvs_cold *c, unsigned flags, vkvs_cold_progress_cb progress, void *ctx,
                     vkvs_cold_verify_report *report)
{
    vkvs_cold_verify_report r;
    memset(&r, 0, sizeof r);
    if (report)
        *report = r;
    if (c == NULL)
        return VKV_EINVAL;
    if (c->failed)
        return VKV_ECOLD;

    /* 1. snapshot the list of entries (metadata only) */
    vkvs_cold_vitem *items = NULL;
    size_t n = 0, cap = 0;
    uint64_t total_bytes = 0;
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = vkvs_cold_rtxn_begin(c, &txn);
    if (rc != 0)
        return vkvs_cold_map_err(c, rc);
    rc = mdb_cursor_open(txn, c->db_meta, &cur);
    if (rc == 0) {
        MDB_val k, v;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (k.mv_size != VKVS_COLD_META_KLEN)
                continue;
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 256;
                vkvs_cold_vitem *ni = realloc(items, ncap * sizeof *ni);
                if (ni == NULL) {
                    rc = ENOMEM;
                    break;
                }
                items = ni;
                cap = ncap;
            }
            vkvs_cold_meta_rec m;
            memset(&m, 0, sizeof m);
            if (v.mv_size == sizeof m)
                memcpy(&m, v.mv_data, sizeof m);
            items[n].nsid = vkvs_cold_get_be32(k.mv_data);
            memcpy(items[n].key.b, (uint8_t *)k.mv_data + 4, VKV_KEY_LEN);
            items[n].size = m.size;
            total_bytes += m.size;
            n++;
        }
        mdb_cursor_close(cur);
    }
    vkvs_cold_rtxn_end(c, txn);
    if (rc != MDB_NOTFOUND) {
        free(items);
        return rc == ENOMEM ? VKV_ENOMEM : VKV_EIO;
    }

    /* 2. read and check each entry in its own short read txn */
    XXH3_state_t *st = XXH3_createState();
    if (st == NULL) {
        free(items);
        return VKV_ENOMEM;
    }
    int ret = 0;
    for (size_t i = 0; i < n && ret == 0; i++) {
        vkvs_cold_vitem *it = &items[i];
        rc = vkvs_cold_rtxn_begin(c, &txn);
        if (rc != 0) {
            r.read_errors++;
            continue;
        }
        vkvs_cold_meta_rec m;
        char ns[VKVS_COLD_NS_MAX + 1] = "";
        memset(&m, 0, sizeof m);
        rc = vkvs_cold_meta_get(c, txn, it->nsid, &it->key, &m);
        int status;
        if (rc == MDB_NOTFOUND) {
            r.vanished++;
            status = 1;
        } else if (rc == MDB_CORRUPTED) {
            status = VKV_ECHECKSUM;
        } else if (rc != 0) {
            r.read_errors++;
            status = 1;
        } else {
            status = vkvs_cold_read_payload(c, txn, &m, NULL, 0, st);
            if (status != VKV_ECHECKSUM && status != 0) {
                r.read_errors++;
                status = 1;
            }
        }
        if (status == VKV_ECHECKSUM)
            vkvs_cold_ns_name(c, txn, it->nsid, ns);
        vkvs_cold_rtxn_end(c, txn);
        if (status != 1) {
            r.entries++;
            r.bytes += it->size;
        }
        if (status == VKV_ECHECKSUM) {
            r.corrupt++;
            pthread_mutex_lock(&c->slock);
            c->st.checksum_failures++;
            pthread_mutex_unlock(&c->slock);
            VKV_ERROR("cold tier: verify: entry of %" PRIu64 " bytes in namespace '%s' is "
                      "corrupt%s",
                      it->size, ns, (flags & VKVS_COLD_VERIFY_DROP) ? "; dropping it" : "");
            if (flags & VKVS_COLD_VERIFY_DROP) {
                vkvs_cold_queue_drop(c, ns, it->nsid, &it->key, m.entry_id);
                r.dropped++;
            }
        }
        if (progress != NULL)
            ret = progress(ctx, i + 1, n, r.bytes, total_bytes);
    }
    XXH3_freeState(st);
    free(items);
    if (r.dropped > 0)
        vkvs_cold_wait_idle(c);
    if (report)
        *report = r;
    return ret;
}

void vkvs_cold_stats_get(vkvs_cold *c, vkvs_cold_stats *out)
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

int vkvs_cold_close(vkvs_cold *c)
{
    if (c == NULL)
        return 0;
    pthread_mutex_lock(&c->qlock);
    c->closing = 1;
    pthread_mutex_unlock(&c->qlock);
    vkvs_cold_stop_threads(c); /* readers finish their queue; writer drains */
    int rc = 0;
    if (!c->failed) {
        int mrc = mdb_env_sync(c->env, 1);
        if (mrc != 0) {
            VKV_ERROR("cold tier: final sync failed: %s", mdb_strerror(mrc));
            rc = vkvs_cold_map_err(c, mrc);
        }
    }
    mdb_env_close(c->env);
    vkvs_cold_free(c);
    return rc;
}
