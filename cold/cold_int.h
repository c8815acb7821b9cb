/*
 * cold/cold_int.h - the cold tier's internal header: one environment's
 * handle (a tier is 1..16 of them, cold/tier.c), the on-disk records and keys, the queue items, and
 * the functions the files of cold/ call across each other. Not for use outside cold/ (the API is
 * cold.h).
 *
 * Files (docs/COLD_TIER.md, "Code map"):
 *   record.c  record format: keys, big-endian fields, pieces, iovec cursors,
 *             the metadata validity rule and the metadata walker, reads
 *             inside a transaction
 *   reader.c  the reader pool: restore jobs, payload verification
 *   writer.c  the writer thread and its queue: write txns and map growth,
 *             delete/drop, touch, sync, reader check
 *   spill.c   the writer's spill and eviction
 *   open.c    open (in steps), close, the open-time scan
 *   verify.c  vkvs_cold_verify
 *   cold.c    one env's submit calls, posting completions, lookup, foreach,
 *             stats, errors
 *   tier.c    the public API: the shards of a tier, routing, the sink
 *
 * LMDB layout (named DBs in one env, MDB_NOMETASYNC | MDB_NOTLS, no
 * MDB_WRITEMAP):
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
#ifndef VKV_COLD_INT_H
#define VKV_COLD_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <xxhash.h>

#include "cold/cold.h"

typedef struct vkvs_cold_env vkvs_cold_env;

/* Most spills one group commit takes (their bytes are bounded by
 * cfg.group_max_bytes). */
#define VKVS_COLD_GROUP_OPS 64u

/* Restores queue an access-time update only while fewer writer ops wait. */
#define VKVS_COLD_TOUCH_QUEUE_MAX 1024u

#define VKVS_COLD_WHY_MAX 512 /* bytes of an open failure's reason */

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

/* One row of the meta DB as the walker hands it out. `valid` is the one
 * validity rule (vkvs_cold_meta_decode): the key is VKVS_COLD_META_KLEN
 * bytes (u32 ns id, 32-byte key) AND the value is exactly one record. For
 * an invalid row only raw/rawlen/vlen are meaningful; raw points into LMDB
 * memory, valid only during the walker's callback. */
typedef struct vkvs_cold_meta_row {
    bool valid;
    uint32_t nsid;
    vkv_key key;
    vkvs_cold_meta_rec m;
    const uint8_t *raw; /* the row's key bytes as stored */
    size_t rawlen;
    size_t vlen; /* the row's value bytes as stored */
} vkvs_cold_meta_row;

enum vkvs_cold_opkind {
    VKVS_COLD_K_SPILL = 1,
    VKVS_COLD_K_DELETE,
    VKVS_COLD_K_TOUCH,    /* lazy access-time update after a restore */
    VKVS_COLD_K_DROP,     /* delete a corrupt entry if still the same id */
    VKVS_COLD_K_SYNC,     /* forced mdb_env_sync, wakes a waiter */
    VKVS_COLD_K_TRIM,     /* evict down to max_bytes (after open) */
    VKVS_COLD_K_DROP_ROW, /* delete a malformed meta row by its raw key */
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
    void *owned;       /* spill: malloc'ed payload freed after the write;
                        * drop_row: malloc'ed raw meta key */
    struct iovec *iov; /* spill: source pieces (malloc'ed array) */
    int niov;
    size_t len;               /* spill: payload bytes */
    size_t rowlen;            /* drop_row: bytes of `owned` */
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

/* Where every environment of one tier posts its completions: one queue and
 * one eventfd (vkvs_cold_fd), owned by the tier (cold/tier.c); each env
 * holds a pointer to it. */
typedef struct vkvs_cold_sink {
    pthread_mutex_t lock;
    vkvs_cold_completion *comp; /* ring of comp_cap entries */
    size_t head, len, cap;
    int efd;
} vkvs_cold_sink;

/* One LMDB environment (one shard of a tier, or the whole of a one-shard
 * tier): its own lock file, writer, readers, bound and counters. */
struct vkvs_cold_env {
    vkvs_cold_config cfg; /* this env's share (max_bytes, map caps, queue
                           * bound divided by the shard count) */
    char *dir;
    int shard;            /* index in the tier; names the threads */
    int nshards;          /* shards in the tier (1: names as before) */
    vkvs_cold_sink *sink; /* not owned */
    int lockfd;
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
    int reader_seq;           /* names the readers vkv-cold-r0, -r1, ... (under rlock) */
    int threads_ready;        /* writer and readers past their setup (rlock) */
    pthread_cond_t readycond; /* open waits on it for threads_ready */

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

/* ---- one environment's API (open.c, cold.c, verify.c) ------------------
 * The tier (cold/tier.c) routes each public vkvs_cold_* call to these;
 * each has the contract of its public namesake in cold.h for the entries
 * of its own environment. */

int vkvs_cold_env_open(const vkvs_cold_config *cfg, int shard, int nshards, vkvs_cold_sink *sink,
                       vkvs_cold_env **out, char *why, size_t whylen);
int vkvs_cold_env_close(vkvs_cold_env *c);
int vkvs_cold_env_spill(vkvs_cold_env *c, const char *ns, const vkv_key *key, void *buf, size_t len,
                        uint64_t tag);
int vkvs_cold_env_spill_iov(vkvs_cold_env *c, const char *ns, const vkv_key *key,
                            const struct iovec *src, int nsrc, uint64_t tag);
int vkvs_cold_env_restore(vkvs_cold_env *c, const char *ns, const vkv_key *key,
                          const struct iovec *dst, int ndst, uint64_t tag);
int vkvs_cold_env_delete(vkvs_cold_env *c, const char *ns, const vkv_key *key, uint64_t tag);
int vkvs_cold_env_lookup(vkvs_cold_env *c, const char *ns, const vkv_key *key,
                         vkvs_cold_entry_info *info);
int vkvs_cold_env_foreach(vkvs_cold_env *c, vkvs_cold_foreach_cb cb, void *ctx);
int vkvs_cold_env_verify(vkvs_cold_env *c, unsigned flags, vkvs_cold_progress_cb progress,
                         void *ctx, vkvs_cold_verify_report *report);
int vkvs_cold_env_sync(vkvs_cold_env *c);
int vkvs_cold_env_flush_wait(vkvs_cold_env *c);
void vkvs_cold_env_stats_get(vkvs_cold_env *c, vkvs_cold_stats *out);
int vkvs_cold_ns_len(const char *ns);

/* tier.c: shard k's environment of the open tier t (NULL when k is not one
 * of its shards); owned by t. For tests that need one shard's state (such as
 * a shard that has failed). */
vkvs_cold_env *vkvs_cold_shard_env(vkvs_cold *t, int k);

/* open.c: checks a configuration (0, or VKV_EINVAL with why[0..
 * VKVS_COLD_WHY_MAX) set); applies cfg->malloc_keep_bytes (process-wide). */
int vkvs_cold_check_config(const vkvs_cold_config *cfg, char *why);

/* open.c: one process per directory (LMDB's own lock allows several): an
 * flock on dir/vkv-cold.lock, its fd in *fd (the caller's, closed to
 * release it; -1 on failure). Returns 0 or a VKV_E* code (why[0..
 * VKVS_COLD_WHY_MAX) set: VKV_EBUSY when another process holds it). */
int vkvs_cold_lock_dir(const char *dir, int *fd, char *why);
void vkvs_cold_malloc_tune(const vkvs_cold_config *cfg);

/* ---- record.c: format, keys, pieces, reads in a txn ---------------------- */

void vkvs_cold_put_be32(uint8_t *p, uint32_t v);
uint32_t vkvs_cold_get_be32(const uint8_t *p);
uint64_t vkvs_cold_get_be64(const uint8_t *p);
void vkvs_cold_meta_key(uint8_t *k, uint32_t nsid, const vkv_key *key);
void vkvs_cold_data_key(uint8_t *k, uint64_t id, uint32_t piece);
void vkvs_cold_lru_key(uint8_t *k, uint64_t seq);
void vkvs_cold_lru_val(uint8_t *v, uint32_t nsid, const vkv_key *key);
uint32_t vkvs_cold_npieces(uint64_t size, uint32_t piece);
size_t vkvs_cold_piece_len(uint64_t size, uint32_t piece, uint32_t i);
size_t vkvs_cold_iov_total(const struct iovec *iov, int n);

/* A position inside an iovec array, advanced by the iov_* copies. */
typedef struct vkvs_cold_iovpos {
    const struct iovec *iov;
    int n, i;
    size_t off;
} vkvs_cold_iovpos;

void vkvs_cold_iov_gather(vkvs_cold_iovpos *p, uint8_t *dst, size_t n);
void vkvs_cold_iov_scatter(vkvs_cold_iovpos *p, const uint8_t *src, size_t n);
void vkvs_cold_iov_hash(vkvs_cold_iovpos *p, XXH3_state_t *st, size_t n);

bool vkvs_cold_meta_value(const MDB_val *v, vkvs_cold_meta_rec *m);
bool vkvs_cold_meta_decode(const MDB_val *k, const MDB_val *v, vkvs_cold_meta_row *row);

/* Walker callback: return 0 to go on, nonzero to stop the walk. */
typedef int (*vkvs_cold_meta_fn)(void *ctx, MDB_txn *txn, const vkvs_cold_meta_row *row);
int vkvs_cold_meta_walk(vkvs_cold_env *c, MDB_txn *txn, vkvs_cold_meta_fn fn, void *ctx, int *stop);

int vkvs_cold_nsid_get(vkvs_cold_env *c, MDB_txn *txn, const char *ns, int nslen, uint32_t *id);
int vkvs_cold_meta_get(vkvs_cold_env *c, MDB_txn *txn, uint32_t nsid, const vkv_key *key,
                       vkvs_cold_meta_rec *m);
int vkvs_cold_ns_name(vkvs_cold_env *c, MDB_txn *txn, uint32_t nsid, char *out);
void vkvs_cold_info_fill(vkvs_cold_entry_info *e, const char *ns, const vkv_key *key,
                         const vkvs_cold_meta_rec *m);

/* ---- cold.c: errors, completions, queues, read txns ---------------------- */

void vkvs_cold_note_error(vkvs_cold_env *c, int mdb_rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int vkvs_cold_map_err(vkvs_cold_env *c, int rc);
void vkvs_cold_complete(vkvs_cold_env *c, int op, uint64_t tag, int status, uint64_t size,
                        const char *ns, const vkv_key *key);
int vkvs_cold_rtxn_begin(vkvs_cold_env *c, MDB_txn **txn);
int vkvs_cold_rtxn_api(vkvs_cold_env *c, MDB_txn **txn);
void vkvs_cold_rtxn_end(vkvs_cold_env *c, MDB_txn *txn);
void vkvs_cold_wait_idle(vkvs_cold_env *c);

/* ---- writer.c: the writer queue and thread ------------------------------- */

/* Body of a write transaction; returns 0 or an LMDB/errno code. Must be
 * safe to run again after an abort (keep results in `arg` reset per try). */
typedef int (*vkvs_cold_wfn)(vkvs_cold_env *c, MDB_txn *txn, void *arg);

void vkvs_cold_thread_setup(vkvs_cold_env *c, const char *name);
void vkvs_cold_wpush_locked(vkvs_cold_env *c, vkvs_cold_wop *op);
int vkvs_cold_wtxn(vkvs_cold_env *c, vkvs_cold_wfn fn, void *arg, uint64_t need);
int vkvs_cold_del_entry(vkvs_cold_env *c, MDB_txn *txn, uint32_t nsid, const vkv_key *key,
                        const vkvs_cold_meta_rec *m);

int vkvs_cold_wenqueue(vkvs_cold_env *c, vkvs_cold_wop *op);
uint64_t vkvs_cold_queue_len(vkvs_cold_env *c);
void vkvs_cold_queue_drop(vkvs_cold_env *c, const char *ns, uint32_t nsid, const vkv_key *key,
                          uint64_t id);
void vkvs_cold_queue_drop_row(vkvs_cold_env *c, const uint8_t *raw, size_t rawlen);
void vkvs_cold_retire(vkvs_cold_env *c, uint64_t ops, uint64_t bytes, uint64_t pending,
                      vkvs_cold_waiter *w, int wrc);
void vkvs_cold_op_free(vkvs_cold_wop *op);
void *vkvs_cold_writer_main(void *arg);

/* ---- spill.c: the writer's spill and eviction ----------------------------- */

/* An entry eviction must not take (a spill of the group replaces it). */
typedef struct vkvs_cold_keep {
    uint32_t nsid;
    vkv_key key;
} vkvs_cold_keep;

int vkvs_cold_evict_to(vkvs_cold_env *c, uint64_t target, const vkvs_cold_keep *keep, size_t nkeep);
void vkvs_cold_w_spill_group(vkvs_cold_env *c, vkvs_cold_wop **ops, size_t n);

/* ---- reader.c: the reader pool -------------------------------------------- */

int vkvs_cold_read_payload(vkvs_cold_env *c, MDB_txn *txn, const vkvs_cold_meta_rec *m,
                           const struct iovec *dst, int ndst, XXH3_state_t *st);
void vkvs_cold_rpush(vkvs_cold_env *c, vkvs_cold_rjob *j);
void *vkvs_cold_reader_main(void *arg);

#endif /* VKV_COLD_INT_H */
