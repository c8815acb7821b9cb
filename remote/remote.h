/*
 * remote/remote.h - the remote tier: vkv blocks shared across nodes through
 * a Redis Cluster (docs/REMOTE.md).
 *
 * A block is stored as pieces plus a small manifest written LAST (remote/
 * pieces.h has the layout), so a reader never assembles a half-published
 * block; every piece, the whole block, the block's own header and payload
 * checksums and its (namespace, key) identity are verified before a fetch
 * reports success. Anything else under a vkv key (a foreign value, a flipped
 * byte, a block bound to another key) is an error, never a result.
 *
 * Threading model (the cold tier's, store/cold.h)
 *   - The caller (vkvd's event loop) submits probes, fetches and publishes;
 *     every submit returns at once, nothing here blocks on the network
 *     except open (which only validates and starts threads: it never
 *     connects) and close (joins the threads).
 *   - `threads` I/O threads each own their own connections to every node
 *     (remote/cluster.h, a slot router over hiredis); they take fetches and
 *     probes before publishes, and at most threads-1 of them publish at once
 *     (when threads > 1) so a fetch never queues behind a publish backlog.
 *   - Results come back as completions: a mutex-protected queue plus an
 *     eventfd (vkvr_fd) the caller polls; vkvr_poll drains it.
 *   - Every function may be called from any thread (internally locked).
 *
 * Failures (a dead or stopped node, a full cluster, a refused password) are
 * reported per operation, counted in the stats and logged at most once per
 * 10 s per kind. Connections are re-made lazily by the next operation that
 * needs them; a node that failed is not retried for `retry_ms`, so requests
 * fail fast meanwhile instead of each waiting for a timeout.
 *
 * Errors: every int-returning function returns 0 or a negative VKV_E* code
 * (include/vkv/error.h).
 */
#ifndef VKV_REMOTE_REMOTE_H
#define VKV_REMOTE_REMOTE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vkv/key.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VKVR_NS_MAX        255          /* namespace bytes, without the NUL */
#define VKVR_PREFIX_MAX    64           /* key prefix bytes */
#define VKVR_PIECE_DEFAULT (2u << 20)   /* 2 MiB pieces */
#define VKVR_PIECE_MIN     (4u << 10)   /* 4 KiB */
#define VKVR_PIECE_MAX     (64u << 20)  /* 64 MiB */
#define VKVR_BLOCK_MAX     (1ull << 32) /* largest block published/fetched */
#define VKVR_ERRSTR_MAX    160

typedef struct vkvr vkvr; /* opaque handle */

/* Configuration of vkvr_open. Fill with vkvr_config_default() first. Every
 * string is copied by open; nothing is kept by pointer. */
typedef struct vkvr_config {
    const char *nodes;    /* seed nodes: "host:port[,host:port...]",
                           * optionally with a "redis://" prefix (required;
                           * any one reachable seed is enough: the slot map
                           * comes from CLUSTER SLOTS) */
    const char *user;     /* ACL user for AUTH, NULL/"" = "default" */
    const char *password; /* NULL/"" = no AUTH */
    const char *prefix;   /* Redis key prefix, default "vkv:"; must not
                           * contain '{' or '}' (hash tags) */
    uint64_t ttl_ms;      /* expiry of every key written (PX); 0 = none.
                           * Default 24 h */
    uint64_t max_block;   /* blocks larger than this are not published
                           * (VKV_ETOOBIG) nor fetched; default 256 MiB */
    uint64_t queue_bytes; /* bound on bytes waiting to be published; a
                           * publish past it is refused (VKV_EBUSY).
                           * Default 256 MiB */
    uint32_t piece_size;  /* bytes per piece, VKVR_PIECE_MIN..MAX */
    uint32_t timeout_ms;  /* connect and per-command timeout, default 2000:
                           * each write(2) must make progress and each reply
                           * be complete within it */
    uint32_t retry_ms;    /* a failed node is not retried for this long,
                           * default 1000 */
    int threads;          /* I/O threads, 1..32, default 2 */
} vkvr_config;

/* Operation a completion reports. */
enum vkvr_op {
    VKVR_OP_PROBE = 1,   /* status 0: the manifest exists and is sound;
                          * size = block bytes */
    VKVR_OP_FETCH = 2,   /* status 0: the verified block is in the caller's
                          * memory (size bytes) or in buf */
    VKVR_OP_PUBLISH = 3, /* status 0: published; VKV_EEXIST: already there
                          * (skipped); other: not published */
};

/* One completion. `buf` is set only by a fetch submitted without a
 * destination: the caller then owns it (free()); in every other case NULL. */
typedef struct vkvr_completion {
    uint64_t tag;
    int op;              /* enum vkvr_op */
    int status;          /* 0 or a negative VKV_E* code, see each submit function */
    uint64_t size;       /* block bytes (probe/fetch: from the manifest; publish:
                          * bytes submitted) */
    uint64_t latency_ns; /* submit to completion */
    void *buf;
    vkv_key key;
    char ns[VKVR_NS_MAX + 1];
} vkvr_completion;

/* Counters and gauges; a snapshot copied out by vkvr_stats_get. */
typedef struct vkvr_stats {
    uint64_t probes, probe_hits;
    uint64_t fetches;        /* fetches completed (any status) */
    uint64_t hits;           /* fetches and probes answered 0 */
    uint64_t misses;         /* fetches answered VKV_ENOTFOUND (no manifest, or
                              * a piece expired) */
    uint64_t errors;         /* fetches/probes failed otherwise */
    uint64_t fetch_bytes;    /* verified block bytes fetched */
    uint64_t fetch_ns_total; /* sum of successful fetch latencies */
    uint64_t fetch_ns_max;
    uint64_t corrupt;   /* manifest/piece/block checksum mismatches */
    uint64_t foreign;   /* values that are not vkv manifests or carry
                         * another identity */
    uint64_t dangling;  /* manifests deleted because a piece was gone */
    uint64_t publishes; /* blocks published */
    uint64_t publish_bytes;
    uint64_t publish_skipped; /* already present (once per key) */
    uint64_t publish_errors;  /* failed (any cause, including OOM) */
    uint64_t publish_oom;     /* of those, refused by maxmemory */
    uint64_t publish_refused; /* submits refused: queue full (VKV_EBUSY) */
    uint64_t queue_bytes;     /* bytes waiting to be published now */
    uint64_t queue_ops;       /* operations waiting now (all kinds) */
    uint64_t moved, ask;      /* redirects followed */
    uint64_t slot_refreshes;  /* CLUSTER SLOTS reloads */
    uint64_t connects;        /* connections made (first and reconnects) */
    uint64_t conn_errors;     /* connection losses and failed connects */
    uint64_t timeouts;        /* commands that timed out */
    uint64_t last_error_ms;   /* wall clock of last_error, 0 if none */
    char last_error[VKVR_ERRSTR_MAX];
} vkvr_stats;

/* Fills *cfg with the defaults (nodes NULL: the caller must set it). */
void vkvr_config_default(vkvr_config *cfg);

/* Validates cfg, parses the node list and starts the I/O threads. Does not
 * connect (the first operation does), so a cluster that is down at start
 * costs nothing until it is used. On success *out is owned by the caller
 * until vkvr_close. On failure *out is NULL and, when err is non-NULL, one
 * line of reason is copied to err[0..errlen). Returns 0, VKV_EINVAL (bad
 * config or node list), VKV_ENOMEM, VKV_ESYS (threads, eventfd). */
int vkvr_open(const vkvr_config *cfg, vkvr **out, char *err, size_t errlen);

/* Stops the threads after the operation each is running (queued operations
 * are dropped, their buffers freed, no completions), closes every
 * connection and frees r, including completions not yet polled (and their
 * fetch buffers). NULL is a no-op. */
void vkvr_close(vkvr *r);

/* The eventfd (nonblocking, close-on-exec) that becomes readable when
 * completions are ready. Owned by r. Do not read it: vkvr_poll resets it. */
int vkvr_fd(const vkvr *r);

/* Copies up to `max` ready completions into out[0..) in posting order and
 * returns how many (0 if none; never blocks). Ownership of each
 * completion's buf passes to the caller. */
int vkvr_poll(vkvr *r, vkvr_completion *out, int max);

/* Queues a probe of (ns, key): reads and checks the manifest only. Returns
 * 0, VKV_EINVAL, VKV_ENOMEM, VKV_ESHUTDOWN. Completion status: 0 (size =
 * block bytes), VKV_ENOTFOUND, VKV_ECORRUPT / VKV_EIDENT (a value that is
 * not a manifest of this (ns, key)), VKV_ETOOBIG (over max_block), VKV_EIO,
 * VKV_ETIMEDOUT, VKV_EPERM (AUTH/ACL refused). */
int vkvr_probe(vkvr *r, const char *ns, const vkv_key *key, uint64_t tag);

/* Queues a fetch of (ns, key) into dst[0..ndst) (host memory; the iovec
 * array is copied, the memory must stay valid until the FETCH completion for
 * `tag` has been polled). With ndst == 0 the tier allocates the block
 * (completion buf, caller frees). Returns 0, VKV_EINVAL, VKV_ENOMEM,
 * VKV_ESHUTDOWN. Completion status: 0 (size bytes at the start of dst,
 * verified: every piece, the whole-block hash, vkv_block_check with the
 * payload checksum and the identity of (ns, key)), VKV_ENOTFOUND, VKV_ETRUNC
 * (dst smaller than the block; size = block bytes), VKV_ECHECKSUM (a piece or
 * the block does not match), VKV_ECORRUPT / VKV_EIDENT (foreign value),
 * VKV_ETOOBIG, VKV_EIO, VKV_ETIMEDOUT, VKV_EPERM. On any nonzero status the
 * content of dst is unspecified and must not be used. */
int vkvr_fetch(vkvr *r, const char *ns, const vkv_key *key, const struct iovec *dst, int ndst,
               uint64_t tag);

/* Queues a publish of the block buf[0..len) under (ns, key). Ownership: on
 * success (0) the tier owns buf (from malloc) and frees it after the
 * write; on any error return the caller still owns it. The block must pass
 * vkv_block_check with its payload checksum and carry the identity of (ns,
 * key); that is checked on the I/O thread before anything is written
 * (completion status VKV_ECHECKSUM, VKV_EIDENT, VKV_ECORRUPT, ...), so the
 * caller's thread pays no pass over the payload.
 * Returns 0, VKV_EINVAL, VKV_ETOOBIG (len > max_block), VKV_EBUSY (queue
 * bound reached: counted as publish_refused), VKV_ENOMEM, VKV_ESHUTDOWN.
 * Completion status: 0 (pieces and then the manifest written), VKV_EEXIST
 * (a manifest of the key exists: nothing written; once per key), VKV_ENOSPC
 * (the cluster's maxmemory refused a write), VKV_EIO, VKV_ETIMEDOUT,
 * VKV_EPERM. A failed publish leaves no manifest (pieces it wrote expire or
 * are deleted). */
int vkvr_publish(vkvr *r, const char *ns, const vkv_key *key, void *buf, size_t len, uint64_t tag);

/* Copies a consistent snapshot of the counters into *out (never blocks on
 * the network). */
void vkvr_stats_get(vkvr *r, vkvr_stats *out);

/* Name of an op ("probe", "fetch", "publish"); static string. */
const char *vkvr_op_name(int op);

#ifdef __cplusplus
}
#endif
#endif /* VKV_REMOTE_REMOTE_H */
