/*
 * daemon/server_int.h - what vkvd's daemon files share (not installed).
 *
 * One event-loop thread owns a vkvd_server and everything it points to; the
 * fd channel's thread touches only the live-session set (live_mu). The files:
 *  - server.c     open/run/close, the event loop, frames, the reply cache,
 *                 deferred FETCHes;
 *  - handlers.c   one handler per protocol op (a table generated from
 *                 VKVP_OPS), block validation, wire conversion;
 *  - cold_tier.c  the LMDB tier's glue: store hooks (spill, drop), restores,
 *                 completions, FLUSH continuation, VERIFY, shutdown spill;
 *  - stats.c      the STATS counters (daemon/counters.h) and their publishing;
 *  - live.c       the sessions the fd channel may serve and their kernel pids;
 *  - remote_tier.c the remote tier's glue (Redis Cluster, docs/REMOTE.md):
 *                 fetches on a local miss, installs, write-behind publishing.
 */
#ifndef VKVD_SERVER_INT_H
#define VKVD_SERVER_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cold/cold.h"
#include "daemon/config.h"
#include "daemon/counters.h"
#include "daemon/fdchan.h"
#include "daemon/metrics.h"
#include "proto/proto.h"
#include "remote/remote.h"
#include "daemon/server.h"
#include "store/shmidx_writer.h"
#include "store/store.h"
#include "vkv/block.h"

/* Replies remembered for idempotent resends, direct-mapped by req_id. */
#define VKVD_RCACHE_SLOTS 4096
/* Bytes of remembered replies at most (a FETCH reply may be up to 1 MiB, so
 * 4096 slots alone would allow 4 GiB); older slots are dropped to stay
 * under it. A resend of a dropped reply runs the request again. */
#define VKVD_RCACHE_MAX_BYTES (32u << 20)

/* Handler result: the reply waits for restores or spills (FETCH, ALLOC). */
#define VKVD_DEFER 1
/* A waiting FETCH answers with what is hot after this. */
#define VKVD_DEFER_LIMIT_MS 10000

struct rcache_slot {
    uint64_t req_id;
    uint64_t req_hash; /* XXH3 of the request frame: a resend is identical */
    void *frame;       /* malloc'ed copy of the encoded reply */
    size_t len;
};

/* A session the fd channel may serve, and the pid the kernel gave for it. */
struct live_sess {
    uint64_t sid;
    pid_t pid;    /* 0 until the client came to the fd channel */
    bool applied; /* pid bound in the store (loop thread) */
};

/* A spill or restore handed to the cold tier, by completion tag. */
struct pending_op {
    struct pending_op *next;
    uint64_t tag;
    int op; /* VKVS_COLD_OP_SPILL / _RESTORE */
    char ns[VKVS_COLD_NS_MAX + 1];
    vkv_key key;
    /* Restore into memory the daemon cannot address (cuda slabs): the cold
     * tier fills this host buffer and the completion copies it in. */
    void *staging;
    uint64_t size;
    bool held; /* SPILL read in place from the entry's SPILLING pages */
    vkvs_extent *ext;
    uint32_t next_n;
};

/* A FETCH whose reply waits until cold entries of its prefix are restored. */
struct deferred {
    struct deferred *next;
    void *control;    /* nanomsg routing header of the request */
    vkvp_request *rq; /* decoded request (owned) */
    uint64_t req_hash;
    uint64_t t_arrival;   /* ns, for the latency histogram */
    uint64_t deadline_ms; /* monotonic: answer with what is hot after this */
};

struct verify_job;  /* cold_tier.c */
struct remote_op;   /* remote_tier.c */
struct remote_miss; /* remote_tier.c */

struct vkvd_server {
    vkvd_config cfg;
    vkvs_store *st;
    vkvd_fdchan *fc;
    int nn;       /* AF_SP_RAW NN_REP socket */
    int nn_rcvfd; /* pollable fd of nn */
    int sigfd;
    int timerfd;
    int lockfd;
    uint64_t epoch;
    bool stopping;
    char sock_path[VKVD_PATH_MAX + 16];
    char fd_path[VKVD_PATH_MAX + 16];
    struct rcache_slot rcache[VKVD_RCACHE_SLOTS];
    uint64_t rcache_bytes; /* sum of rcache[].len */
    uint32_t rcache_sweep; /* next slot to drop when over VKVD_RCACHE_MAX_BYTES */
    /* counters (exported by STATS) */
    uint64_t req_count[VKVP_OP_MAX_ + 1];
    uint64_t req_errors;
    uint64_t bad_frames;
    uint64_t resent_replies;
    uint64_t send_failures;
    uint64_t commit_rejected;
    uint64_t cur_hash; /* XXH3 of the request frame being handled */
    /* cold tier (NULL when disabled or unavailable) */
    vkvs_cold *cold;
    int cold_fd;
    uint64_t next_tag;
    struct pending_op *ops;    /* spills and restores in flight */
    struct deferred *deferred; /* FETCHes waiting for restores */
    uint64_t cold_spill_lost;  /* spills that failed after eviction */
    /* Spills to shard k that fail for the tier's sake (disk full, I/O
     * error, a failed environment) pause new spills to that shard until
     * cold_pause_until_ms[k] (monotonic), for 100 ms doubling per failure
     * in a row up to 10 s; a spill to it that succeeds ends it. Meanwhile
     * its victims stay hot (FLUSH, EVICT) or are dropped (room), instead of
     * being offered again and again; the other shards go on. */
    uint64_t cold_pause_until_ms[VKVS_COLD_SHARDS_MAX];
    uint32_t cold_fail_streak[VKVS_COLD_SHARDS_MAX];
    uint64_t cold_spill_pauses;   /* pauses begun */
    uint64_t cold_restore_failed; /* restores that failed (entry dropped) */
    uint64_t cold_corrupt_dropped;
    uint64_t fetch_deferred; /* FETCHes waiting now */
    uint64_t alloc_deferred; /* ALLOCs waiting now (for spills to free room) */
    vkvd_metrics *metrics;   /* NULL when --metrics-port is 0 */
    struct verify_job *verify;
    /* Sessions the fd channel may serve: written by the loop, read by the
     * channel's thread. */
    pthread_mutex_t live_mu;
    struct live_sess *live;
    size_t nlive, caplive;
    uint64_t identity_failures;     /* blocks refused for a wrong (ns, key) */
    uint64_t cold_envs_quarantined; /* damaged LMDB envs moved aside at start */
    uint64_t spill_queued;          /* bytes copied for the LMDB writer, not yet written */
    uint64_t spill_queued_peak;
    bool flush_more;                /* a FLUSH stopped at the spill-queue bound */
    char flush_ns[VKVS_NS_MAX + 1]; /* its namespace ("" = all) */
    /* remote tier (NULL when off or unavailable; remote_tier.c) */
    vkvr *remote;
    int remote_fd;
    struct remote_op *rops;       /* fetches in flight */
    struct remote_miss *rmiss;    /* recent misses/errors, not asked again */
    uint32_t defer_limit_next_ms; /* a handler's shorter wait for its deferral */
    uint64_t remote_installed;    /* remote blocks verified and made hot */
    uint64_t remote_install_bytes;
    uint64_t remote_refused;         /* fetched blocks the daemon's own check refused */
    uint64_t remote_waits;           /* LOOKUP/FETCH deferred for the remote tier */
    uint64_t remote_publish_dropped; /* commits not published (queue full, no memory) */
    vkvs_shmidx *lidx;               /* lookup index segment (NULL: none) */
};

/* The STATS counters of one reply (names are static strings). */
struct vkvd_counters {
    vkvp_counter c[VKVD_MAX_COUNTERS];
    uint32_t n;
};

/* Scratch memory of one reply; everything here is freed after encoding. */
struct vkvd_scratch {
    vkvp_extent *ext[VKVP_MAX_KEYS + 1];
    uint32_t next;
    void *blocks;
    vkvs_block *sblocks;
    vkvp_slab *slabs;
    vkvs_info *infos;
    vkvp_entry *entries;
    char (*shapes)[160];
    struct vkvd_counters counters;
};

/* ---- handlers.c ---- */

/* Executes one decoded request against the store and fills `rep` (whose
 * pointers may reference `sc`, which the caller frees with
 * vkvd_scratch_free after encoding). `why` receives a reason for an error
 * reply when there is one. Returns 0, the error status to send, or
 * VKVD_DEFER (FETCH and ALLOC, when allow_defer): cold entries of the
 * prefix are being restored, or spills in flight free the room, and the
 * request must be run again when that is done. */
int vkvd_dispatch(vkvd_server *srv, const vkvp_request *rq, vkvp_reply *rep,
                  struct vkvd_scratch *sc, char *why, size_t why_len, bool allow_defer);

/* Frees what the scratch holds (not the scratch itself). */
void vkvd_scratch_free(struct vkvd_scratch *sc);

/* VKV_OK if header `h` is bound to (ns, key), else VKV_EIDENT (counted in
 * srv->identity_failures). */
int vkvd_check_ident(vkvd_server *srv, const vkv_block_header *h, const char *ns,
                     const vkv_key *key);

/* The COMMIT check (a vkvs_validate_fn, `arg` the server): block `b`
 * must be bound to (ns, key) and carry a valid header whose total size is
 * exactly the reserved size. Reads only the 256-byte header. */
int vkvd_validate_block(void *arg, const vkvs_store *st, const char *ns, const vkv_key *key,
                        const vkvs_block *b);

/* ---- cold_tier.c ---- */

/* Opens the cold tier under state_dir/cold (a damaged one is moved aside),
 * indexes its entries and installs the store hooks. A failure is logged and
 * leaves srv->cold NULL (hot-only). */
void vkvd_cold_open(vkvd_server *srv);

/* Starts restores of the cold keys[0..n) of namespace `ns` into freshly
 * reserved arena pages. Returns how many are now in flight. */
size_t vkvd_cold_start_restores(vkvd_server *srv, const char *ns, const vkv_key *keys, size_t n);

/* Drains cold-tier completions, applies them, continues a FLUSH and re-runs
 * waiting FETCHes. */
void vkvd_cold_on_ready(vkvd_server *srv);

/* Continues a FLUSH that stopped at the spill-queue bound (srv->flush_ns):
 * evicts to cold what the queue takes now. Returns the store's status
 * (VKV_EBUSY: more to do once the writer drains). */
int vkvd_cold_flush_continue(vkvd_server *srv);

/* Shutdown: with spill-on-exit, ends every session and spills the hot tier
 * in rounds; then waits for the writer and syncs. Returns 0 or the sync
 * error. No-op without a cold tier. */
int vkvd_cold_shutdown(vkvd_server *srv);

/* True while spilling to some shard is paused after the cold tier failed
 * writes (see cold_pause_until_ms). */
bool vkvd_cold_paused(const vkvd_server *srv);

/* Periodic (the housekeeping timer): resumes a FLUSH that stopped while
 * spilling was paused, once the pause is over. */
void vkvd_cold_tick(vkvd_server *srv);

/* Hands a verified block buf[0..size) (malloc'ed; the cold tier owns it on
 * success, else it is freed) to the LMDB writer as (ns, key), like a spill.
 * No-op (buf freed) without a cold tier. */
void vkvd_cold_store_copy(vkvd_server *srv, const char *ns, const vkv_key *key, void *buf,
                          uint64_t size);

/* Closes the cold tier and frees the in-flight op records. */
void vkvd_cold_close(vkvd_server *srv);

/* VERIFY: with `start`, starts a background verification unless one runs;
 * always reports the progress of the current or last run into `out`. */
int vkvd_verify_op(vkvd_server *srv, bool start, bool drop, vkvp_verify_rep *out);

/* Stops and waits for a verification thread, frees its record. */
void vkvd_verify_join(vkvd_server *srv);

/* ---- remote_tier.c ---- */

/* Opens the remote tier when cfg.remote is set (no connection yet). A
 * failure is logged and leaves srv->remote NULL. */
void vkvd_remote_open(vkvd_server *srv);

/* Closes the remote tier and frees the in-flight records. */
void vkvd_remote_close(vkvd_server *srv);

/* Asks the remote tier for the keys[0..n) of namespace `ns` (session sid)
 * that follow a local prefix (the fetched blocks are installed hot on
 * completion); keys held locally by now are skipped. Keys missed recently
 * are not asked again; asking stops at the first of them.
 * Returns how many of keys[0..n) are in flight now; when > 0 the caller
 * defers and sets srv->defer_limit_next_ms. */
size_t vkvd_remote_start(vkvd_server *srv, uint64_t sid, const char *ns, const vkv_key *keys,
                         size_t n);

/* Drains remote completions: installs verified blocks (arena, then LMDB),
 * remembers misses, and re-runs waiting requests. */
void vkvd_remote_on_ready(vkvd_server *srv);

/* After a successful COMMIT of block `b` (ns, key): copies it and queues it
 * for publishing (write-behind; dropped and counted when the queue is full). */
void vkvd_remote_publish(vkvd_server *srv, const char *ns, const vkv_key *key, const vkvs_block *b);

/* ---- stats.c ---- */

/* Collects every counter the daemon exports, in STATS order. */
void vkvd_collect_counters(vkvd_server *srv, struct vkvd_counters *cs);

/* Publishes a snapshot of the counters to the metrics endpoint (if any). */
void vkvd_publish_metrics(vkvd_server *srv);

/* ---- live.c ---- */

/* Adds `sid` to the set the fd channel serves (best effort on ENOMEM). */
void vkvd_live_add(vkvd_server *srv, uint64_t sid);

/* Drops ids of sessions the store no longer knows (after reaping). */
void vkvd_live_prune(vkvd_server *srv);

/* fd channel check (its thread; a vkvd_session_check_fn, `arg` the server):
 * is `sid` a live session? Records the kernel's pid for it. */
int vkvd_live_check(void *arg, uint64_t sid, pid_t pid);

/* Loop thread: binds the pids the fd channel saw to their sessions. */
void vkvd_live_bind(vkvd_server *srv);

/* ---- lookup_index.c ---- */

/* Creates the lookup index segment (cfg.lookup_index_slots, 0 = none) and
 * installs the store observer that keeps it; before the cold tier is
 * indexed, so its entries are published too. A failure only logs. */
void vkvd_lookup_index_open(vkvd_server *srv);

/* Shutdown begins: readers ask the daemon from now on. */
void vkvd_lookup_index_stop(vkvd_server *srv);

/* Removes the observer and closes the segment (the loop thread, which
 * opened it). */
void vkvd_lookup_index_close(vkvd_server *srv);

/* ---- server.c ---- */

/* Runs every deferred FETCH again; those whose prefix is now hot (or that
 * waited VKVD_DEFER_LIMIT_MS, or all when stopping) are answered. */
void vkvd_rerun_deferred(vkvd_server *srv);

#endif
