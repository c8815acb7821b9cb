/*
 * store/store.h - the vkvd store: index, paged arena, sessions and leases,
 * eviction. Owned by ONE thread (the daemon's event loop); there are no locks
 * inside, so every function here must be called from that thread only
 * (exception: vkvs_read/vkvs_write on extents the caller keeps pinned).
 *
 * Model
 *  - Memory: a few slabs from a backend (store/backend.h), cut into fixed
 *    pages (page_size, a power of two). An entry's bytes live in a list of
 *    extents (slab, first page, page count); byte i of an entry is at the
 *    concatenation of its extents in order. Allocation prefers one contiguous
 *    run and falls back to several runs, so it never fails while free pages
 *    plus evictable pages (unpinned READY entries) suffice.
 *  - Index: (namespace id, 32-byte key) -> entry, O(1), keyed XXH3 with a
 *    random seed. Namespaces are interned strings -> small ids; a key of one
 *    namespace never matches another.
 *  - Entry states: WRITING (allocated by an ALLOC lease, invisible to lookup
 *    and fetch), READY, COLD (in the cold tier only, no pages; counted by
 *    lookup), RESTORING (COLD being copied back into fresh pages).
 *  - Sessions (one per client HELLO) own leases. A FETCH lease pins entries;
 *    an ALLOC lease owns one WRITING entry. Leases expire after lease_ttl_ms
 *    (renewable) on a monotonic clock. An expired lease is QUARANTINED (a
 *    "zombie"): its pins and its WRITING pages are kept, since the holder may
 *    still read or write them through its mapping, until the holder releases
 *    it or its session ends; an expired ALLOC lease gives up its key at once
 *    (the entry leaves the index) so another writer can take it over.
 *    Sessions are reaped when their process is gone, or when silent past
 *    session_ttl_ms while holding no lease.
 *  - Eviction picks only unpinned READY entries, in policy order (LRU or
 *    S3-FIFO). With to_cold, the evict hook sees the victim's bytes before
 *    its pages are freed and, on success, the entry becomes COLD.
 *
 * Errors: every int function returns 0 (VKV_OK) or a negative VKV_E* code
 * (include/vkv/error.h). Session-taking functions return VKV_ESESSION for an
 * unknown/closed session id and touch the session (last_seen) otherwise.
 * Admin sessions may only call list/info/stats/evict/delete/flush
 * (others: VKV_EPERM); non-admin sessions are confined to their namespace.
 */
#ifndef VKV_STORE_STORE_H
#define VKV_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store/backend.h"
#include "vkv/error.h"
#include "vkv/key.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vkvs_store vkvs_store;

/* Entry states. */
enum vkvs_state {
    VKVS_WRITING = 1,   /* being written under an ALLOC lease; invisible */
    VKVS_READY = 2,     /* hot, readable */
    VKVS_COLD = 3,      /* in the cold tier only; no pages (unless SPILLING:
                         * vkvs_info.spilling, pages held until the write
                         * that reads them is done, vkvs_spill_done) */
    VKVS_RESTORING = 4, /* cold -> hot copy in progress; pages allocated */
};

/* Eviction policies. */
enum vkvs_policy_kind {
    VKVS_POLICY_LRU = 1,
    VKVS_POLICY_S3FIFO = 2,
};

/* The policy used when the config says 0 (chosen by bench/store_evict.c). */
#define VKVS_POLICY_DEFAULT VKVS_POLICY_S3FIFO

/* Maximum namespace string length in bytes (without the NUL). */
#define VKVS_NS_MAX 255

/* One run of pages. Byte offset in the slab = first_page * page_size,
 * length = npages * page_size (the entry's last extent may be only partly
 * used; the entry size says how much). */
typedef struct vkvs_extent {
    uint32_t slab;       /* slab id (vkvs_slab.id) */
    uint32_t first_page; /* page index inside the slab */
    uint32_t npages;     /* >= 1 */
} vkvs_extent;

/* A block handed out by fetch/alloc/restore: its size and extents. The
 * extents array belongs to the store and stays valid (and the pages it names
 * are not reused) until the lease that returned it is released, expires or
 * is reaped (restore: until vkvs_restore_end). */
typedef struct vkvs_block {
    uint64_t size;              /* bytes of payload */
    uint32_t nextents;          /* >= 1 for hot entries */
    const vkvs_extent *extents; /* store-owned; see above */
} vkvs_block;

/* Store configuration. Fill with vkvs_config_default() then override. */
typedef struct vkvs_config {
    const vkvs_backend *backend; /* NULL = &vkvs_backend_host */
    void *backend_arg;           /* passed to backend->slab_create */
    uint64_t slab_size;          /* bytes per slab (multiple of page_size);
                                  * default 256 MiB */
    uint32_t nslabs;             /* slabs created at open; default 4 */
    uint32_t max_slabs;          /* upper bound for vkvs_add_slab; default
                                  * nslabs (0 = same as nslabs) */
    uint32_t page_size;          /* power of two >= 4096; default 256 KiB */
    uint64_t lease_ttl_ms;       /* default 30000 */
    uint64_t session_ttl_ms;     /* default 120000 */
    int policy;                  /* enum vkvs_policy_kind; 0 = default */
    uint32_t max_sessions;       /* default 4096 */
    uint32_t max_leases;         /* across all sessions; default 65536 */
    uint32_t max_fetch_keys;     /* keys per fetch/lookup call; default 4096 */
    uint64_t session_quota;      /* bytes one session may hold under its
                                  * leases (pinned + reserved, quarantined
                                  * included); 0 = no limit (default) */
    bool quarantine;             /* keep an expired lease's pages until its
                                  * holder lets go (default true; false: the
                                  * old behaviour, pages freed at expiry) */
    /* Clock in milliseconds for lease/session expiry. NULL = vkv_now_ms
     * (monotonic: a wall-clock step expires nothing). Tests inject a fake. */
    uint64_t (*clock_ms)(void *arg);
    /* Wall clock for entries' last-access stamps (LIST, the cold tier).
     * NULL = vkv_wall_ms. Called with clock_arg. */
    uint64_t (*wall_ms)(void *arg);
    void *clock_arg;
} vkvs_config;

/* Fills *cfg with the defaults listed above. */
void vkvs_config_default(vkvs_config *cfg);

/* Opens a store: creates cfg->nslabs slabs through the backend and empty
 * index/session tables. *out is owned by the caller until vkvs_close().
 * Errors: VKV_EINVAL (bad page/slab size, policy...), VKV_ENOMEM, backend
 * errors. On error nothing is left allocated. */
int vkvs_open(const vkvs_config *cfg, vkvs_store **out);

/* Destroys the store: all sessions, leases, entries and slabs (the slab fds
 * are closed; clients keep their own mappings). NULL is a no-op. Hooks are
 * NOT called. */
void vkvs_close(vkvs_store *st);

/* Adds one slab (up to cfg.max_slabs). *id (if not NULL) gets its id.
 * Errors: VKV_ENOSPC (max_slabs reached), backend errors. Existing slab
 * pointers stay valid. */
int vkvs_add_slab(vkvs_store *st, uint32_t *id);

/* Number of slabs. */
uint32_t vkvs_slab_count(const vkvs_store *st);

/* Slab `id`, or NULL if out of range. The pointer stays valid until
 * vkvs_close() (slabs never move). */
const vkvs_slab *vkvs_slab_get(const vkvs_store *st, uint32_t id);

/* Page size in bytes. */
uint32_t vkvs_page_size(const vkvs_store *st);

/* The backend in use (static). */
const vkvs_backend *vkvs_backend_of(const vkvs_store *st);

/* Copies `len` bytes starting at byte `off` of the block described by
 * `ext[0..n)` into `dst`, through the backend (host: memcpy).
 * Errors: VKV_EINVAL (range beyond the extents or unknown slab), backend
 * errors. Safe from another thread while the extents stay pinned. */
int vkvs_read(const vkvs_store *st, const vkvs_extent *ext, uint32_t n, uint64_t off, void *dst,
              size_t len);

/* Same in the other direction: copies `src` into the block at `off`. */
int vkvs_write(const vkvs_store *st, const vkvs_extent *ext, uint32_t n, uint64_t off,
               const void *src, size_t len);

/* ---- hooks (cold tier) --------------------------------------------------- */

/* What the evict hook sees. All pointers are valid only during the call. */
typedef struct vkvs_victim {
    uint32_t ns_id;
    const char *ns; /* interned namespace string */
    const vkv_key *key;
    uint64_t size;
    uint32_t nextents;
    const vkvs_extent *extents; /* read the bytes with vkvs_read() */
    uint32_t hits;
    uint64_t last_ms;
    bool for_room; /* evicted to make room for an allocation (else
                    * FLUSH / EVICT) */
    bool may_hold; /* the hook may answer VKVS_SPILL_HELD (keep the pages
                    * until vkvs_spill_done); false when the room is needed
                    * now: copy, or answer VKV_EBUSY */
} vkvs_victim;

/* Evict hook answer: the cold tier reads the victim's pages in place; they
 * stay reserved (the entry is COLD and SPILLING) until vkvs_spill_done. */
#define VKVS_SPILL_HELD 1

/* vkvs_alloc / vkvs_restore_begin answer (not an error) while room waiting
 * is on (vkvs_set_room_wait): there is not enough free memory now, but
 * spills in flight will free enough; ask again after vkvs_spill_done. */
#define VKVS_WAIT 2

typedef struct vkvs_hooks {
    /* Called for an eviction to the cold tier, BEFORE the victim's pages are
     * freed. Copy what is needed synchronously (vkvs_read) and return 0 (the
     * entry becomes COLD, its pages are freed), or, when v->may_hold, return
     * VKVS_SPILL_HELD to have the cold tier read the pages in place (the
     * entry becomes COLD and SPILLING; the pages stay until vkvs_spill_done
     * for it), VKV_EBUSY if the cold tier
     * cannot take more right now (the entry stays READY; an eviction for
     * room then drops it instead, FLUSH/EVICT stop there), or another error
     * (counted as a failed spill: an eviction for room drops the entry;
     * FLUSH/EVICT leave it READY and go on with the others). Must not call
     * back into mutating store functions. NULL: evictions simply drop. */
    int (*evict)(void *arg, vkvs_store *st, const vkvs_victim *v);
    /* Called when a committed entry leaves the index for good (DELETE, an
     * eviction that drops instead of spilling, a deleted COLD entry), so the
     * cold tier can remove any copy it holds. Not called for aborted WRITING
     * entries nor for vkvs_forget_cold. May be NULL. */
    void (*drop)(void *arg, uint32_t ns_id, const char *ns, const vkv_key *key);
    void *arg;
} vkvs_hooks;

/* Installs the hooks (copied). Pass NULL to clear. */
void vkvs_set_hooks(vkvs_store *st, const vkvs_hooks *hooks);

/* The observer: called each time what vkvs_lookup answers for an entry
 * changes. `was` and `now` (was != now) are its state as lookups see it:
 * VKVS_READY, VKVS_COLD, VKVS_RESTORING, or 0 when lookups do not see it
 * (absent, WRITING, delete-pending). Covers commit, delete (pinned or not),
 * eviction to cold or drop, restore start and end, cold entries added or
 * forgotten, aborts, expiry and reaping. `ns` and `key` are valid during the
 * call only. Must not call back into the store. vkvd mirrors these into the
 * lookup index segment (store/shmidx_writer.h). */
typedef void (*vkvs_observe_fn)(void *arg, uint32_t ns_id, const char *ns, const vkv_key *key,
                                int was, int now);

/* Installs the observer (NULL to clear); `arg` is passed to it. */
void vkvs_set_observer(vkvs_store *st, vkvs_observe_fn fn, void *arg);

/* ---- sessions ------------------------------------------------------------ */

/* Opens a session for namespace `ns` (NUL-terminated, 1..VKVS_NS_MAX bytes;
 * may be "" or NULL only when `admin`), owned by process `pid`. *sid gets a
 * random-ish nonzero id, valid until the session is closed or reaped.
 * Errors: VKV_EINVAL, VKV_ENOMEM, VKV_ENOSPC (max_sessions). */
int vkvs_session_open(vkvs_store *st, const char *ns, pid_t pid, bool admin, uint64_t *sid);

/* Closes a session: releases its fetch leases (unpinning), aborts its
 * WRITING entries (never visible). Errors: VKV_ESESSION. */
int vkvs_session_close(vkvs_store *st, uint64_t sid);

/* Sessions whose pid was not bound are pid-checked only this long after
 * HELLO (their self-reported pid may belong to another pid namespace). */
#define VKVS_BIND_GRACE_MS 5000

/* Replaces the session's self-reported pid by `pid` as the kernel reported it
 * (SO_PEERCRED on the fd channel, translated into the daemon's pid
 * namespace); from now on the reaper checks that pid. Errors: VKV_ESESSION,
 * VKV_EINVAL (pid <= 0). */
int vkvs_session_bind_pid(vkvs_store *st, uint64_t sid, pid_t pid);

/* Marks the session alive now. Errors: VKV_ESESSION. */
int vkvs_session_touch(vkvs_store *st, uint64_t sid);

/* Namespace id of a session (for the daemon's logs/metrics). */
int vkvs_session_ns(const vkvs_store *st, uint64_t sid, uint32_t *ns_id, const char **ns);

/* Returns true if process `pid` still exists. `arg` is reap's `arg`. */
typedef bool (*vkvs_alive_fn)(void *arg, pid_t pid);

/* Housekeeping; call periodically (e.g. every second). Expires leases past
 * their TTL (quarantine, see the model) and closes sessions whose pid is gone
 * (alive_cb returns false; NULL = skip the pid check) or that were silent past
 * session_ttl_ms at `now_ms` (same clock as cfg.clock_ms) and hold no lease.
 * Returns the number of sessions closed (>= 0). */
int vkvs_reap(vkvs_store *st, uint64_t now_ms, vkvs_alive_fn alive_cb, void *arg);

/* ---- operations ---------------------------------------------------------- */

/* Longest prefix of keys[0..n) present as READY or COLD (WRITING and
 * RESTORING count as absent / as cold respectively: RESTORING counts like
 * COLD) in the session's namespace; *ncold = how many of that prefix are not
 * hot (COLD/RESTORING). NO side effects besides touching the session: no
 * hits, no recency. Errors: VKV_ESESSION, VKV_EPERM (admin), VKV_EINVAL. */
int vkvs_lookup(vkvs_store *st, uint64_t sid, const vkv_key *keys, size_t n, size_t *prefix,
                size_t *ncold);

/* Result of vkvs_fetch. */
typedef struct vkvs_fetch_result {
    uint64_t lease; /* 0 when nready == 0 (nothing pinned) */
    size_t nready;  /* blocks[0..nready) filled, pinned under `lease` */
    size_t ncold;   /* COLD/RESTORING entries directly following the
                     * ready prefix (the prefix continues in the cold
                     * tier for that many keys) */
} vkvs_fetch_result;

/* While `quiet` is true, vkvs_fetch does not count fetches, hits, misses or
 * cold hits: the daemon re-runs a FETCH that waited for restores and counts
 * each request once, at its first run. */
void vkvs_set_fetch_quiet(vkvs_store *st, bool quiet);

/* While `wait` is true, an ALLOC or a restore that lacks free memory while
 * spills in flight (SPILLING pages) would free enough answers VKVS_WAIT
 * instead of evicting more, and evictions for room may keep their pages
 * (VKVS_SPILL_HELD); the caller asks again after vkvs_spill_done. While
 * false (the default) room is made at once: the evict hook must copy (or
 * the victim is dropped). */
void vkvs_set_room_wait(vkvs_store *st, bool wait);

/* Pins the longest READY prefix of keys[0..n) under one new lease, bumps
 * hits and recency, and fills blocks[0..nready) (caller array of n). Stops at
 * the first absent/WRITING key or at the first COLD/RESTORING one (then
 * counts how many cold ones follow, for the caller to restore), and where
 * the session's quota would be exceeded (then ncold is 0). Errors:
 * VKV_ESESSION, VKV_EPERM, VKV_EINVAL (n too large), VKV_ENOSPC (max_leases,
 * or not even the first block fits the session's quota), VKV_ENOMEM. */
int vkvs_fetch(vkvs_store *st, uint64_t sid, const vkv_key *keys, size_t n, vkvs_block *blocks,
               vkvs_fetch_result *res);

/* Reserves `size` bytes (> 0) for `key` as a WRITING entry under a new ALLOC
 * lease (*lease) and returns its extents in *out (valid while the lease
 * lives). Evicts unpinned READY entries (to the cold tier when an evict hook
 * is set) as needed; with room waiting on, may answer VKVS_WAIT instead
 * (see vkvs_set_room_wait; nothing is reserved). A COLD key is reported as
 * existing. Errors:
 * VKV_EEXIST (READY/COLD/RESTORING exists), VKV_EBUSY (another live lease is
 * writing it; poll lookup then fetch), VKV_ENOSPC (free + evictable pages
 * too few, size > capacity, or the session's quota would be exceeded), VKV_ESESSION, VKV_EPERM,
 * VKV_EINVAL. */
int vkvs_alloc(vkvs_store *st, uint64_t sid, const vkv_key *key, uint64_t size, uint64_t *lease,
               vkvs_block *out);

/* Validates a written block before it becomes visible; returns 0 or an
 * error (e.g. VKV_ECHECKSUM, VKV_EIDENT). `ns` (interned), `key` and `b` are
 * the entry's and valid during the call only. */
typedef int (*vkvs_validate_fn)(void *arg, const vkvs_store *st, const char *ns, const vkv_key *key,
                                const vkvs_block *b);

/* Commits ALLOC lease `lease`: runs `validate` (may be NULL) and on success
 * makes the entry READY and ends the lease. If validate fails its error is
 * returned and the entry stays WRITING under the lease (abort it or retry).
 * Errors: VKV_ELEASE (unknown/expired/not this session's/not an alloc
 * lease), VKV_ESESSION, validate's error. */
int vkvs_commit(vkvs_store *st, uint64_t sid, uint64_t lease, vkvs_validate_fn validate, void *arg);

/* Aborts ALLOC lease `lease`: the entry and its pages are freed, never having
 * been visible. Errors: VKV_ELEASE, VKV_ESESSION. */
int vkvs_abort(vkvs_store *st, uint64_t sid, uint64_t lease);

/* Releases leases[0..n) of this session (fetch: unpin; alloc: abort).
 * Unknown ids are skipped; expired (quarantined) ones are ended too but not
 * counted, so a caller can tell that its lease had expired. *nreleased (may
 * be NULL) counts the live ones released. Errors: VKV_ESESSION. */
int vkvs_release(vkvs_store *st, uint64_t sid, const uint64_t *leases, size_t n, size_t *nreleased);

/* Extends leases[0..n) of this session by lease_ttl_ms from now. Unknown
 * and expired leases are not renewed (an expired one stays quarantined);
 * *nrenewed (may be NULL) counts the renewed. Errors: VKV_ESESSION,
 * VKV_EPERM (admin), VKV_EINVAL. */
int vkvs_renew(vkvs_store *st, uint64_t sid, const uint64_t *leases, size_t n, size_t *nrenewed);

/* Deletes keys[0..n) in namespace `ns` (non-admin: NULL or the session's
 * own namespace; admin: required). READY unpinned entries are freed at once;
 * pinned or RESTORING ones are marked and freed when unpinned (invisible
 * from now on); COLD ones leave the index; WRITING ones are skipped. The drop
 * hook is called for each. *ndeleted (may be NULL) counts the deleted/marked.
 * Errors: VKV_ESESSION, VKV_EPERM, VKV_EINVAL. */
int vkvs_delete(vkvs_store *st, uint64_t sid, const char *ns, const vkv_key *keys, size_t n,
                size_t *ndeleted);

/* Evicts keys[0..n) of namespace `ns` (same rule as delete), or, with
 * keys == NULL, every READY entry (of `ns` if not NULL, else all
 * namespaces: admin only). Only unpinned READY entries are evicted; with
 * `to_cold` through the evict hook (-> COLD), else dropped. *nevicted (may
 * be NULL) counts them. FLUSH = vkvs_evict(st, sid, NULL, NULL, 0, true, n).
 * Returns VKV_EBUSY (with *nevicted set) when it stopped early because the
 * evict hook was busy: call again once the cold tier has drained.
 * Errors: VKV_ESESSION, VKV_EPERM, VKV_EINVAL. */
int vkvs_evict(vkvs_store *st, uint64_t sid, const char *ns, const vkv_key *keys, size_t n,
               bool to_cold, size_t *nevicted);

/* Counters (a snapshot). */
typedef struct vkvs_stats {
    uint64_t entries_writing, entries_ready, entries_cold, entries_restoring;
    uint64_t bytes_used;     /* sum of sizes of entries holding pages */
    uint64_t bytes_free;     /* free pages * page_size */
    uint64_t bytes_capacity; /* all pages * page_size */
    uint64_t bytes_cold;     /* sum of sizes of COLD entries */
    uint64_t pages_total, pages_free, pages_pinned, pages_evictable;
    uint64_t extents_total; /* over entries holding pages */
    uint64_t hits;          /* fetch: blocks found hot and returned */
    uint64_t misses;        /* fetch: keys past the cached prefix (in
                             * neither tier) */
    uint64_t cold_hits;     /* fetch: keys found only in the cold tier
                             * (the daemon restores and then serves them) */
    uint64_t lookups, fetches;
    uint64_t allocs, allocs_failed, commits, aborts, deletes;
    uint64_t evictions;                        /* entries evicted (all causes) */
    uint64_t spills;                           /* evictions taken by the evict hook */
    uint64_t spill_failures;                   /* evict hook returned an error */
    uint64_t spills_deferred;                  /* evict hook said VKV_EBUSY (cold tier behind) */
    uint64_t spills_dropped_busy;              /* eviction victims dropped, not spilled,
                                                * because the cold tier was behind */
    uint64_t spills_skipped;                   /* evictions of restored entries the cold tier
                                                * still held: no spill needed */
    uint64_t spills_held;                      /* spills that read the arena in place */
    uint64_t spills_reverted;                  /* held spills that failed: back to READY */
    uint64_t room_waits;                       /* ALLOC/restore answered VKVS_WAIT */
    uint64_t entries_spilling, pages_spilling; /* SPILLING now (gauges) */
    uint64_t restores;
    uint64_t leases_active, leases_expired;
    uint64_t leases_quarantined; /* expired, pages kept (see the model) */
    uint64_t quota_refusals;     /* ALLOC/FETCH cut short by session_quota */
    uint64_t sessions, sessions_reaped;
    uint64_t namespaces;
    uint64_t meta_bytes; /* heap bytes of index + entries + tables */
    uint32_t slabs;
    uint32_t policy; /* enum vkvs_policy_kind */
} vkvs_stats;

/* Fills *out. Never fails. */
void vkvs_stats_get(const vkvs_store *st, vkvs_stats *out);

/* One entry as listed. Pointers valid until the next mutating store call. */
typedef struct vkvs_info {
    uint32_t ns_id;
    const char *ns; /* interned; valid until vkvs_close() */
    vkv_key key;
    uint32_t state; /* enum vkvs_state */
    bool delete_pending;
    bool spilling; /* COLD with its pages still held (being written) */
    uint64_t size;
    uint32_t pins;
    uint32_t hits;
    uint64_t last_ms;
    uint32_t nextents;
    const vkvs_extent *extents; /* NULL for COLD */
} vkvs_info;

/* Lists up to `limit` entries (WRITING ones excluded) starting at `cursor`
 * (0 = start) of namespace `ns` (NULL: admin sees all, non-admin its own).
 * *next gets the cursor to pass next (0 when done). The cursor is stable:
 * entries that live throughout a listing are returned exactly once.
 * Errors: VKV_ESESSION, VKV_EPERM, VKV_EINVAL. */
int vkvs_list(vkvs_store *st, uint64_t sid, const char *ns, uint64_t cursor, size_t limit,
              vkvs_info *out, size_t *nout, uint64_t *next);

/* Describes one key of namespace `ns` (rule as delete). No side effects.
 * Errors: VKV_ENOTFOUND (absent or WRITING), VKV_ESESSION, VKV_EPERM. */
int vkvs_info_get(vkvs_store *st, uint64_t sid, const char *ns, const vkv_key *key, vkvs_info *out);

/* ---- cold tier support (no session; the daemon calls these) -------------- */

/* Adds a COLD entry (start-up loading from LMDB). Interns `ns`. Errors:
 * VKV_EEXIST (key present in any state), VKV_EINVAL, VKV_ENOMEM. */
int vkvs_add_cold(vkvs_store *st, const char *ns, const vkv_key *key, uint64_t size,
                  uint64_t last_ms);

/* The cold tier no longer holds (ns, key) (it evicted or dropped its copy,
 * or a copy meant for it failed): a COLD entry leaves the index (as
 * vkvs_forget_cold) and 1 is returned (the block existed only there); a
 * hot entry restored from it must be spilled again when evicted, and so
 * must one being restored now, whose read may still succeed (0). A
 * SPILLING entry is unchanged (the notice is about an older record; the
 * write in flight makes a new one). Errors: VKV_ENOTFOUND. */
int vkvs_cold_copy_gone(vkvs_store *st, const char *ns, const vkv_key *key);

/* Removes a COLD entry from the index (the cold tier dropped it). Does not
 * call the drop hook. Errors: VKV_ENOTFOUND, VKV_ESTATE (not COLD). */
int vkvs_forget_cold(vkvs_store *st, const char *ns, const vkv_key *key);

/* Ends the spill of SPILLING entry (ns, key) that its evict hook answered
 * VKVS_SPILL_HELD for. status 0: the cold tier holds the block; its pages
 * are freed (it stays COLD). status VKV_ECHECKSUM, VKV_EIDENT or
 * VKV_ECORRUPT: the block itself is bad; the entry is dropped (drop hook
 * called). Any other error (I/O, full disk, no cold tier): nothing was
 * written and the block is intact in its pages, so the entry is READY
 * again (counted in spills_reverted). A delete that arrived meanwhile is
 * completed now. Errors: VKV_ENOTFOUND, VKV_ESTATE (not SPILLING). */
int vkvs_spill_done(vkvs_store *st, const char *ns, const vkv_key *key, int status);

/* True when a spill failed because the block itself is bad (its checksum,
 * identity or header): vkvs_spill_done drops such a block; any other
 * failure leaves it intact and READY again. */
static inline bool vkvs_spill_block_bad(int status)
{
    return status == VKV_ECHECKSUM || status == VKV_EIDENT || status == VKV_ECORRUPT;
}

/* Turns COLD entry (ns, key) into RESTORING with freshly allocated pages
 * (evicting as needed) and returns them in *out (valid until
 * vkvs_restore_end). May answer VKVS_WAIT (room waiting on, nothing
 * changed). Errors: VKV_ENOTFOUND, VKV_ESTATE (not COLD), VKV_EBUSY (COLD
 * but still SPILLING: restore after vkvs_spill_done), VKV_ENOSPC. */
int vkvs_restore_begin(vkvs_store *st, const char *ns, const vkv_key *key, vkvs_block *out);

/* The pages of RESTORING entry (ns, key) in *out (valid until
 * vkvs_restore_end), so the daemon can check what was restored before it is
 * served. Errors: VKV_ENOTFOUND, VKV_ESTATE. */
int vkvs_restoring_block(vkvs_store *st, const char *ns, const vkv_key *key, vkvs_block *out);

/* Ends a restore: status 0 -> READY (inserted in the policy as new);
 * status < 0 -> pages freed and the entry is COLD again (the cold tier calls
 * vkvs_forget_cold if it dropped its copy). A delete that arrived meanwhile is
 * applied now. Errors: VKV_ENOTFOUND, VKV_ESTATE (not RESTORING). */
int vkvs_restore_end(vkvs_store *st, const char *ns, const vkv_key *key, int status);

/* Name of a state / policy ("ready", "s3fifo"); static strings. */
const char *vkvs_state_name(int state);
const char *vkvs_policy_name(int policy);

#ifdef __cplusplus
}
#endif
#endif /* VKV_STORE_STORE_H */
