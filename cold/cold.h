/*
 * cold/cold.h - the LMDB cold tier: spill, restore, bound, verify.
 *
 * One LMDB environment, or several ("shards", each holding the keys that
 * hash to it), in a private directory (mode 0700) holds every block that
 * left the hot arena. It is the system of record for cold entries: an
 * entry is written with its metadata and all its payload pieces in ONE write
 * transaction, so after kill -9 at any moment it is either whole or absent.
 * Every payload is checksummed (XXH3-64) and verified on restore; an entry
 * that fails the check is reported VKV_ECHECKSUM, deleted and counted, and is
 * never handed out. See docs/COLD_TIER.md for layout, durability and sizing.
 *
 * Threading model
 *   - The caller (the daemon's event-loop thread) calls every function here;
 *     none of them blocks on disk I/O except open, foreach, lookup, verify,
 *     sync, flush_wait and close, which say so.
 *   - One writer thread per shard owns every write transaction of its
 *     environment (spills, deletes, its own evictions, lazy access-time
 *     updates, periodic syncs, map growth).
 *   - `reader_threads` I/O threads (dealt over the shards) serve restores;
 *     a slow restore never blocks the caller or other restores beyond the
 *     thread count.
 *   - Results come back as completions: one mutex-protected queue for all
 *     shards plus an eventfd (vkvs_cold_fd) the caller polls;
 *     vkvs_cold_poll drains it.
 *   - Functions may be called from any thread (internally locked), but
 *     foreach/verify callbacks must not call flush_wait/sync/close.
 *
 * Ordering: operations on one key submitted by one thread are applied by
 * its shard's writer in submission order (spill, delete); completions of
 * different shards interleave. Restores run concurrently on the reader
 * threads and see only committed entries: restore a key only after its SPILL
 * completion arrived (before that it may answer VKV_ENOTFOUND).
 *
 * Keys: 32 opaque bytes (vkv_key) plus a namespace string of at most
 * VKVS_COLD_NS_MAX bytes (NUL-terminated; the empty string is allowed).
 *
 * Errors: every int-returning function returns 0 or a negative VKV_E* code
 * (include/vkv/error.h).
 */
#ifndef VKV_COLD_COLD_H
#define VKV_COLD_COLD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/sched.h"
#include "vkv/key.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VKVS_COLD_NS_MAX        256         /* bytes, without the NUL */
#define VKVS_COLD_PIECE_DEFAULT (1u << 20)  /* 1 MiB payload pieces */
#define VKVS_COLD_PIECE_MIN     (4u << 10)  /* 4 KiB */
#define VKVS_COLD_PIECE_MAX     (16u << 20) /* 16 MiB */
#define VKVS_COLD_ERRSTR_MAX    160
#define VKVS_COLD_SHARDS_MAX    16

typedef struct vkvs_cold vkvs_cold; /* opaque handle */

/* Configuration of vkvs_cold_open. Fill with vkvs_cold_config_default()
 * first, then set what you need. Nothing here is kept by pointer after open
 * returns (the dir string is copied). */
typedef struct vkvs_cold_config {
    const char *dir;            /* directory of the env; created (and its
                                 * parents) with mode 0700 if missing */
    uint64_t max_bytes;         /* bound on stored payload bytes; the writer
                                 * evicts least recently used entries to stay
                                 * under it (default 1 GiB) */
    uint64_t map_cap_bytes;     /* hard cap on the LMDB map size; 0 = 4 x
                                 * max_bytes + slack. The map starts at
                                 * min(2 x max_bytes + slack, cap) and grows
                                 * on MDB_MAP_FULL up to the cap */
    uint32_t sync_interval_ms;  /* periodic mdb_env_sync on the writer while
                                 * there are unsynced commits; 0 = only explicit
                                 * syncs (vkvs_cold_sync / flush_wait / close).
                                 * Default 1000 */
    uint32_t piece_size;        /* payload piece size for NEW entries, bytes,
                                 * VKVS_COLD_PIECE_MIN..MAX (default 1 MiB);
                                 * entries keep the piece size they were
                                 * written with */
    int reader_threads;         /* restore threads, 1..64 (default 2), over
                                 * all shards (at least one per shard) */
    uint64_t queue_max_bytes;   /* bound on payload bytes queued for the writer
                                 * but not yet written (each shard's writer:
                                 * queue_max_bytes / N, rounded up); a spill
                                 * that would pass it is refused with VKV_EBUSY
                                 * (caller keeps its buffer), so a spill larger
                                 * than that share always is. 0 = unbounded
                                 * (default) */
    uint32_t reader_check_ms;   /* period of mdb_reader_check on the writer
                                 * (default 10000; it also runs at open) */
    uint64_t map_initial_bytes; /* initial map size; 0 = the default above
                                 * (tests set it small to exercise growth) */
    int thread_nice;            /* nice value (0..19) the writer and reader
                                 * threads give themselves: background I/O
                                 * that should yield the CPU to the caller's
                                 * latency-bound thread (vkvd: 10). Default
                                 * 0 (unchanged) */
    int thread_policy;          /* scheduling policy of the writer and reader
                                 * threads (enum vkvs_cold_sched), which each
                                 * thread sets for itself at start together
                                 * with thread_nice and the kernel's default
                                 * slice (one sched_setattr). Default
                                 * VKVS_COLD_SCHED_NORMAL (vkvd: its
                                 * cold-thread-policy, default normal) */
    uint64_t group_max_bytes;   /* group commit: the writer takes the spills
                                 * queued behind each other (up to 64 of
                                 * them) into one write txn, one commit and
                                 * one sync, while their payload stays under
                                 * this many bytes (the first always goes).
                                 * 0 = one spill per txn. Default 16 MiB
                                 * (BENCHMARKS.md: larger groups were not
                                 * faster on the shared VM) */
    uint64_t malloc_keep_bytes; /* process-wide glibc malloc setting made at
                                 * open: allocations up to 16 MiB + 64 KiB
                                 * come from the arenas (M_MMAP_THRESHOLD)
                                 * and an arena keeps up to this many free
                                 * bytes instead of returning them
                                 * (M_TRIM_THRESHOLD), so LMDB's dirty pages
                                 * (malloc'ed per commit) are not faulted in
                                 * and zeroed again for every commit.
                                 * 0 = leave malloc alone. Default 64 MiB
                                 * (BENCHMARKS.md, "where the spill time
                                 * goes") */
    int shards;                 /* LMDB environments of a NEW tier, 1..
                                 * VKVS_COLD_SHARDS_MAX (default 1): each
                                 * has its own writer thread, so N spills
                                 * commit at once (docs/COLD_TIER.md,
                                 * "Shards"). Fixed when the directory is
                                 * created; an existing tier keeps its
                                 * count whatever this says. Each shard
                                 * holds max_bytes / N (so does the map
                                 * cap and the queue bound), and the
                                 * reader_threads are dealt over the
                                 * shards (at least one each) */
    int quarantine_damaged;     /* nonzero: an environment LMDB refuses to
                                 * open (damaged) is moved aside to
                                 * <dir>.corrupt-<ms> (one-env tier) or
                                 * <dir>/shard-K.corrupt-<ms> (that shard
                                 * only), counted in envs_quarantined, and
                                 * an empty one takes its place; so is the
                                 * whole tier when its `shards` count file
                                 * is damaged (healthy shards included). An
                                 * environment of another format version
                                 * (VKV_ECORRUPT too) counts as damaged.
                                 * 0 (the default): open fails with
                                 * VKV_ECORRUPT */
    /* Optional check of every spill, run on the writer thread of the
     * key's shard (so on several threads at once when there are several
     * shards: it must be thread-safe) before anything is written, over the whole block (contiguous;
     * gathered into a writer-owned buffer when the spill's source is several pieces). Nonzero
     * refuses the spill: its SPILL completion carries that status (a VKV_E* code) and nothing is
     * written. `block` is valid only during the call. vkvd checks the block's own checksum and
     * identity here, off its event loop. NULL = no check (default). */
    int (*spill_check)(void *arg, const char *ns, const vkv_key *key, const void *block,
                       size_t len);
    void *spill_check_arg;
} vkvs_cold_config;

/* vkvs_cold_config.thread_policy: the Linux scheduling policy the writer
 * and reader threads run under (sched(7); unprivileged in every case, since
 * a thread may always lower its own policy, though without CAP_SYS_NICE or
 * a raised RLIMIT_NICE it cannot leave SCHED_IDLE again). The threads are
 * named "vkv-cold-w" and "vkv-cold-rN" (N = 0..reader_threads-1), or in a
 * tier of several shards "vkv-coldK-w" and "vkv-coldK-rN" (shard K), and have
 * set both before vkvs_cold_open returns, so they can be checked in
 * /proc/PID/task/TID/{comm,stat}. */
enum vkvs_cold_sched {
    /* SCHED_OTHER at thread_nice */
    VKVS_COLD_SCHED_NORMAL = VKV_SCHED_NORMAL,
    /* SCHED_BATCH at thread_nice: as NORMAL, but a waking cold thread never
     * preempts the running one */
    VKVS_COLD_SCHED_BATCH = VKV_SCHED_BATCH,
    /* SCHED_IDLE: the lowest weight the fair scheduler has (about 1/340 of a
     * nice-0 thread; thread_nice no longer matters) and any waking
     * SCHED_OTHER thread preempts a running cold thread at once. Not
     * starved: it still runs whenever a CPU is idle, and gets that small
     * share when every CPU is busy, slow enough there for callers waiting on
     * spills to time out (docs/COLD_TIER.md) */
    VKVS_COLD_SCHED_IDLE = VKV_SCHED_IDLE,
};

/* Operation a completion reports. */
enum vkvs_cold_op {
    VKVS_COLD_OP_SPILL = 1,   /* a spill finished: status 0 = entry stored */
    VKVS_COLD_OP_RESTORE = 2, /* a restore finished: status 0 = dst holds the
                               * verified payload (size bytes) */
    VKVS_COLD_OP_DELETE = 3,  /* a delete finished: 0 or VKV_ENOTFOUND */
    VKVS_COLD_OP_EVICTED = 4, /* the writer evicted (ns, key) to respect
                               * max_bytes; tag is 0, status 0. The entry is
                               * gone from LMDB when this is posted */
    VKVS_COLD_OP_DROPPED = 5, /* a corrupt entry (ns, key) was deleted (found
                               * by restore or verify); tag 0, status
                               * VKV_ECHECKSUM. Posted in addition to the
                               * RESTORE completion that found it */
};

/* One completion. Plain value: it owns no memory and points to nothing;
 * copy it freely. */
typedef struct vkvs_cold_completion {
    uint64_t tag;  /* the caller's tag from spill/restore/delete (0 for
                    * EVICTED/DROPPED) */
    int op;        /* enum vkvs_cold_op */
    int status;    /* 0 or a negative VKV_E* code (see each function) */
    uint64_t size; /* payload bytes (spill: bytes written; restore: bytes
                    * copied, or the entry size when status is VKV_ETRUNC;
                    * evicted/dropped: entry size) */
    vkv_key key;
    char ns[VKVS_COLD_NS_MAX + 1]; /* NUL-terminated namespace */
} vkvs_cold_completion;

/* What foreach / lookup report about one entry. */
typedef struct vkvs_cold_entry_info {
    const char *ns; /* namespace; foreach: valid only during the
                     * callback; lookup: the caller's ns pointer */
    vkv_key key;
    uint64_t size;           /* payload bytes */
    uint64_t checksum;       /* XXH3-64 of the payload */
    uint64_t created_ms;     /* wall clock (ms since epoch) of the spill */
    uint64_t last_access_ms; /* wall clock of the last restore (or spill) */
    uint64_t hits;           /* successful restores */
    uint32_t piece_size;     /* bytes per piece this entry was written with */
    uint32_t pieces;
} vkvs_cold_entry_info;

/* Counters and gauges; a snapshot copied out by vkvs_cold_stats. */
typedef struct vkvs_cold_stats {
    uint64_t entries;    /* entries stored (committed) */
    uint64_t bytes;      /* payload bytes stored (committed) */
    uint64_t max_bytes;  /* the bound: the sum of the shards' max_bytes / N
                          * (the configured one rounded down to a multiple
                          * of N) */
    uint64_t map_size;   /* current LMDB map size */
    uint64_t map_cap;    /* hard cap of the map size */
    uint64_t map_used;   /* bytes of the map in use (last page + 1) */
    uint64_t file_bytes; /* size of data.mdb on disk (st_size) */
    uint64_t spills;     /* spills committed */
    uint64_t spill_bytes;
    uint64_t spill_errors; /* spills that failed (any reason) */
    uint64_t spill_txns;   /* committed write txns that carried spills
                            * (group commit: spills / spill_txns is the
                            * mean group size) */
    uint64_t restores;     /* restores served successfully */
    uint64_t restore_bytes;
    uint64_t restore_misses; /* restores answered VKV_ENOTFOUND */
    uint64_t restore_errors; /* restores failed (other than not found) */
    uint64_t evictions;      /* entries evicted to respect max_bytes */
    uint64_t evicted_bytes;
    uint64_t deletes;                      /* entries deleted on request */
    uint64_t checksum_failures;            /* entries found corrupt (restore/verify) */
    uint64_t write_errors;                 /* failed write transactions (any cause) */
    uint64_t enospc;                       /* ENOSPC / EFBIG / EDQUOT seen on write */
    uint64_t eio;                          /* EIO (and other I/O errors) seen */
    uint64_t map_full;                     /* MDB_MAP_FULL at the cap (spill refused) */
    uint64_t map_grows;                    /* map size increases */
    uint64_t syncs;                        /* mdb_env_sync calls that succeeded */
    uint64_t stale_readers;                /* reader slots cleared by mdb_reader_check */
    uint64_t queue_ops;                    /* ops waiting for the writer now */
    uint64_t queue_bytes;                  /* payload bytes waiting for the writer now */
    uint64_t restores_inflight;            /* restores queued or running now */
    uint64_t shards;                       /* LMDB environments of the tier */
    uint64_t shards_failed;                /* of those, failed (MDB_PANIC) */
    uint64_t envs_quarantined;             /* damaged envs moved aside at open
                                            * (quarantine_damaged) */
    int failed;                            /* 1 when an env hit a fatal error
                                            * (MDB_PANIC): every later op on the
                                            * keys of that shard fails with
                                            * VKV_ECOLD; reopen to recover */
    uint64_t last_error_ms;                /* wall clock of last_error, 0 if none */
    char last_error[VKVS_COLD_ERRSTR_MAX]; /* "" if none */
} vkvs_cold_stats;

/* Result of vkvs_cold_verify. */
typedef struct vkvs_cold_verify_report {
    uint64_t entries;     /* entries checked */
    uint64_t bytes;       /* payload bytes read */
    uint64_t corrupt;     /* entries whose size or checksum did not match */
    uint64_t dropped;     /* of those, deleted (VKVS_COLD_VERIFY_DROP) */
    uint64_t vanished;    /* listed at start but gone when read (evicted or
                           * deleted meanwhile); not an error */
    uint64_t read_errors; /* entries that could not be read (LMDB error) */
} vkvs_cold_verify_report;

#define VKVS_COLD_VERIFY_DROP 1u /* delete corrupt entries (DROPPED posted) */

/* foreach callback: return 0 to continue, nonzero to stop (foreach then
 * returns that value). `e` and e->ns are valid only during the call. */
typedef int (*vkvs_cold_foreach_cb)(void *ctx, const vkvs_cold_entry_info *e);

/* verify progress callback, called after each entry (and once at the end):
 * return 0 to continue, nonzero to stop early (verify returns that value). */
typedef int (*vkvs_cold_progress_cb)(void *ctx, uint64_t done_entries, uint64_t total_entries,
                                     uint64_t done_bytes, uint64_t total_bytes);

/* Fills *cfg with the defaults (dir NULL: the caller must set it). */
void vkvs_cold_config_default(vkvs_cold_config *cfg);

/* Opens (creating if needed) the cold tier in cfg->dir and starts its writer
 * and reader threads. Blocking (file I/O). Runs mdb_reader_check, scans the
 * metadata to learn entries/bytes, and takes an exclusive lock on the
 * directory (one process per directory). If the stored bytes exceed
 * cfg->max_bytes (bound lowered since last run), the writer evicts down to it
 * right away (EVICTED completions follow).
 * On success *out is a handle the caller owns until vkvs_cold_close.
 * On failure *out is NULL, the reason is logged (common/log.h) and, when
 * `err` is non-NULL, copied into err[0..errlen) as one line.
 * Returns 0, VKV_EINVAL (bad config, or dir exists and is not a directory),
 * VKV_EPERM (permission denied / read-only filesystem), VKV_ENOSPC (disk
 * full), VKV_EBUSY (another process holds the directory), VKV_ECORRUPT (not
 * an LMDB env / wrong format version), VKV_ENOMEM, VKV_ESYS (threads,
 * eventfd), VKV_EIO (anything else). */
int vkvs_cold_open(const vkvs_cold_config *cfg, vkvs_cold **out, char *err, size_t errlen);

/* Drains the writer queue (every queued spill/delete is applied), waits for
 * in-flight restores, syncs, stops the threads and closes the env; frees
 * `cold`. Completions produced during the drain are discarded (poll first
 * via vkvs_cold_flush_wait if you need them). Blocking. Returns 0, or the
 * error of the final sync (the handle is freed either way). NULL is a no-op. */
int vkvs_cold_close(vkvs_cold *cold);

/* The eventfd (nonblocking, close-on-exec) that becomes readable when
 * completions are ready. Owned by `cold`; valid until vkvs_cold_close. Do not
 * read it yourself: vkvs_cold_poll resets it when it empties the queue. */
int vkvs_cold_fd(const vkvs_cold *cold);

/* Copies up to `max` ready completions into out[0..) in the order they were
 * posted and returns how many (0 if none; never blocks). */
int vkvs_cold_poll(vkvs_cold *cold, vkvs_cold_completion *out, int max);

/* Queues `buf` (len bytes, from malloc) to be written as (ns, key),
 * replacing any existing entry of that key. Returns immediately.
 * Ownership: on success (0) the cold tier owns buf and frees it after the
 * write; on any error return the caller still owns buf.
 * Returns 0, VKV_EINVAL (NULL/len 0/ns too long), VKV_ETOOBIG (len >
 * max_bytes / N, the bound of one of the tier's N shards), VKV_EBUSY (the
 * shard's share of queue_max_bytes reached), VKV_ENOMEM, VKV_ESHUTDOWN
 * (closing), VKV_ECOLD (the key's shard failed).
 * Later one SPILL completion {tag, status} arrives: 0 (stored), VKV_ENOSPC
 * (map at its cap, or disk full), VKV_EIO, VKV_ECOLD. On error nothing of
 * the entry was written (a previous entry of the key stays as it was).
 * EVICTED completions for entries evicted to make room precede it. */
int vkvs_cold_spill(vkvs_cold *cold, const char *ns, const vkv_key *key, void *buf, size_t len,
                    uint64_t tag);

/* As vkvs_cold_spill but reads the payload from caller memory (for example
 * the hot arena pages of the entry) instead of taking a buffer: the iovec
 * array is copied, the memory it points to must stay valid and unchanged
 * until the SPILL completion for `tag` has been polled. Same returns. */
int vkvs_cold_spill_iov(vkvs_cold *cold, const char *ns, const vkv_key *key,
                        const struct iovec *src, int nsrc, uint64_t tag);

/* Queues a restore of (ns, key) into the caller memory dst[0..ndst) (host
 * pointers; the iovec array is copied, the memory must stay valid until the
 * RESTORE completion for `tag` has been polled). Returns immediately: 0,
 * VKV_EINVAL, VKV_ENOMEM, VKV_ESHUTDOWN, VKV_ECOLD.
 * Completion status: 0 (size bytes copied to the start of dst, verified),
 * VKV_ENOTFOUND, VKV_ETRUNC (dst smaller than the entry: nothing useful
 * copied; size = entry size), VKV_ECHECKSUM (stored size or checksum wrong:
 * the entry is deleted by the writer, a DROPPED completion follows; never
 * use the bytes), VKV_EIO. On any nonzero status the content of dst is
 * unspecified. A successful restore updates last_access_ms/hits lazily. */
int vkvs_cold_restore(vkvs_cold *cold, const char *ns, const vkv_key *key, const struct iovec *dst,
                      int ndst, uint64_t tag);

/* Queues a delete of (ns, key). Returns 0, VKV_EINVAL, VKV_ENOMEM,
 * VKV_ESHUTDOWN, VKV_ECOLD; a DELETE completion {tag, 0 | VKV_ENOTFOUND |
 * VKV_EIO} follows. */
int vkvs_cold_delete(vkvs_cold *cold, const char *ns, const vkv_key *key, uint64_t tag);

/* The shard (0 .. shards-1) that holds or would hold (ns, key), for a
 * caller that keeps per-shard state (vkvd pauses spilling per shard);
 * -1 for invalid arguments. Does no I/O. */
int vkvs_cold_shard_of(vkvs_cold *cold, const char *ns, const vkv_key *key);

/* Reads the metadata of (ns, key) synchronously (one short read
 * transaction, no payload I/O). Fills *info (info->ns = ns). Returns 0,
 * VKV_ENOTFOUND, VKV_EINVAL, VKV_EIO. */
int vkvs_cold_lookup(vkvs_cold *cold, const char *ns, const vkv_key *key,
                     vkvs_cold_entry_info *info);

/* Calls cb for every committed entry, shard by shard, in (namespace id,
 * key) order within a shard, inside one read transaction per shard
 * (blocking; reads metadata only). Used at start-up so the daemon's index
 * knows every cold entry. Returns 0 or the callback's nonzero value (the
 * walk stops there); a shard that cannot be walked does not stop it: the
 * other shards' entries are all listed and the first shard's error is
 * returned at the end (VKV_EIO, VKV_EBUSY when the reader table is full,
 * or VKV_ECOLD when a shard has failed). */
int vkvs_cold_foreach(vkvs_cold *cold, vkvs_cold_foreach_cb cb, void *ctx);

/* Reads every entry's payload on the calling thread and checks size and
 * checksum; each entry is read in its own short read transaction. With
 * VKVS_COLD_VERIFY_DROP, corrupt entries are deleted (DROPPED completions)
 * and verify waits for those deletes. progress may be NULL. *report is
 * filled (may be NULL; the sums over the shards). Blocking. Returns 0 (even
 * if corrupt entries were found: see the report), the progress callback's
 * nonzero value (verify stops there) or VKV_ENOMEM; a shard that cannot be
 * read does not stop it: the other shards are all checked and the first
 * shard's error is returned at the end (VKV_EIO, VKV_EBUSY, or VKV_ECOLD
 * when a shard has failed). */
int vkvs_cold_verify(vkvs_cold *cold, unsigned flags, vkvs_cold_progress_cb progress, void *ctx,
                     vkvs_cold_verify_report *report);

/* Asks the writer for an mdb_env_sync (forced) and waits for it. Blocking.
 * Returns 0, VKV_EIO, VKV_ENOSPC, VKV_ECOLD, VKV_ESHUTDOWN. */
int vkvs_cold_sync(vkvs_cold *cold);

/* Waits until every operation submitted before the call (spills, deletes,
 * restores, their follow-ups) has finished and its completion is posted,
 * then syncs. Blocking. Returns as vkvs_cold_sync. */
int vkvs_cold_flush_wait(vkvs_cold *cold);

/* Copies a consistent snapshot of the counters into *out. Never blocks on
 * I/O (stat of data.mdb only). */
void vkvs_cold_stats_get(vkvs_cold *cold, vkvs_cold_stats *out);

/* Name of an op ("spill", "restore", ...); static string. */
const char *vkvs_cold_op_name(int op);

#ifdef __cplusplus
}
#endif
#endif /* VKV_COLD_COLD_H */
