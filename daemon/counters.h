/*
 * daemon/counters.h - the one list of vkvd's STATS counters.
 *
 * Each X(name, value, minus, family, labels, type, help) entry is one STATS
 * counter `name`. The lists generate:
 *  - the STATS reply (daemon/stats.c expands `value`, an expression over the
 *    locals named in each list's comment, in list order; the req_<op> counters,
 *    one per VKVP_OPS entry, sit between CORE and CORE2);
 *  - the Prometheus series (daemon/metrics.c): an entry with a `family`
 *    string is exported as `family{labels}` of type COUNTER or GAUGE (NONE:
 *    exported as vkvd_stat{name="..."} only), minus the counter named `minus`
 *    when that is not NULL; `help` is given by the family's first entry;
 *  - VKVD_COUNTER(name): the name as a string literal, a compile error if no
 *    list has it (for code that reads a STATS reply by name).
 * docs/METRICS.md lists the same families.
 */
#ifndef VKVD_COUNTERS_H
#define VKVD_COUNTERS_H

#include "proto/proto.h"

/* Counters every start, before the req_<op> counters: `s` is the store's vkvs_stats, `srv` the
 * server. */
#define VKVD_COUNTERS_CORE(X)                                                                      \
    X(epoch, srv->epoch, NULL, "vkvd_epoch", "", GAUGE, "Daemon epoch (changes at every start).")  \
    X(backend_cuda, vkvs_backend_of(srv->st)->kind == VKVS_BACKEND_CUDA, NULL, NULL, NULL, NONE,   \
      NULL)                                                                                        \
    X(entries_writing, s.entries_writing, NULL, "vkvd_entries", "state=\"writing\"", GAUGE,        \
      "Entries by state (ready and writing are hot, cold is the cold tier).")                      \
    X(entries_ready, s.entries_ready, NULL, "vkvd_entries", "state=\"ready\"", GAUGE, NULL)        \
    X(entries_cold, s.entries_cold, NULL, "vkvd_entries", "state=\"cold\"", GAUGE, NULL)           \
    X(entries_restoring, s.entries_restoring, NULL, "vkvd_entries", "state=\"restoring\"", GAUGE,  \
      NULL)                                                                                        \
    X(bytes_used, s.bytes_used, NULL, "vkvd_bytes", "tier=\"hot\"", GAUGE,                         \
      "Bytes of cached blocks per tier.")                                                          \
    X(bytes_free, s.bytes_free, NULL, "vkvd_free_bytes", "tier=\"hot\"", GAUGE,                    \
      "Free bytes of a tier.")                                                                     \
    X(bytes_capacity, s.bytes_capacity, NULL, "vkvd_capacity_bytes", "tier=\"hot\"", GAUGE,        \
      "Capacity of a tier in bytes.")                                                              \
    X(bytes_cold, s.bytes_cold, NULL, "vkvd_bytes", "tier=\"cold\"", GAUGE, NULL)                  \
    X(pages_total, s.pages_total, NULL, NULL, NULL, NONE, NULL)                                    \
    X(pages_free, s.pages_free, NULL, NULL, NULL, NONE, NULL)                                      \
    X(pages_pinned, s.pages_pinned, NULL, NULL, NULL, NONE, NULL)                                  \
    X(extents_total, s.extents_total, NULL, NULL, NULL, NONE, NULL)                                \
    X(hits, s.hits, "cold_hits", "vkvd_hits_total", "tier=\"hot\"", COUNTER,                       \
      "Blocks returned by FETCH, by the tier they were found in.")                                 \
    X(misses, s.misses, NULL, "vkvd_misses_total", "", COUNTER,                                    \
      "Keys asked for by FETCH past the cached prefix (in neither tier); each FETCH counts once.") \
    X(cold_hits, s.cold_hits, NULL, "vkvd_hits_total", "tier=\"cold\"", COUNTER, NULL)             \
    X(lookups, s.lookups, NULL, "vkvd_lookups_total", "", COUNTER,                                 \
      "LOOKUP requests served by the store.")                                                      \
    X(fetches, s.fetches, NULL, "vkvd_fetches_total", "", COUNTER,                                 \
      "FETCH requests served by the store.")                                                       \
    X(allocs, s.allocs, NULL, "vkvd_allocs_total", "", COUNTER,                                    \
      "Successful ALLOC reservations (puts).")                                                     \
    X(allocs_failed, s.allocs_failed, NULL, "vkvd_allocs_failed_total", "", COUNTER,               \
      "ALLOC requests refused.")                                                                   \
    X(commits, s.commits, NULL, "vkvd_commits_total", "", COUNTER, "Blocks published by COMMIT.")  \
    X(commits_rejected, srv->commit_rejected, NULL, "vkvd_commits_rejected_total", "", COUNTER,    \
      "COMMITs refused because the block header or identity was invalid.")                         \
    X(identity_failures, srv->identity_failures, NULL, "vkvd_identity_failures_total", "",         \
      COUNTER,                                                                                     \
      "Blocks refused at COMMIT, spill or restore for carrying another (namespace, key).")         \
    X(cold_envs_quarantined, srv->cold_envs_quarantined, NULL, "vkvd_cold_envs_quarantined_total", \
      "", COUNTER, "Damaged cold-tier environments (whole tiers or shards) moved aside at start.") \
    X(aborts, s.aborts, NULL, "vkvd_aborts_total", "", COUNTER, "Reservations dropped by ABORT.")  \
    X(deletes, s.deletes, NULL, "vkvd_deletes_total", "", COUNTER, "Entries removed by DELETE.")   \
    X(evictions, s.evictions, NULL, "vkvd_evictions_total", "", COUNTER,                           \
      "Entries evicted from the hot tier (all causes).")                                           \
    X(spills, s.spills, NULL, "vkvd_spills_total", "", COUNTER,                                    \
      "Evicted entries written to the cold tier.")                                                 \
    X(spill_failures, s.spill_failures, NULL, "vkvd_spill_failures_total", "", COUNTER,            \
      "Spills to the cold tier that failed.")                                                      \
    X(restores, s.restores, NULL, "vkvd_restores_total", "", COUNTER,                              \
      "Entries read back from the cold tier into the hot tier.")                                   \
    X(leases_active, s.leases_active, NULL, "vkvd_leases", "", GAUGE,                              \
      "Live leases (pins and reservations).")                                                      \
    X(leases_expired, s.leases_expired, NULL, "vkvd_leases_expired_total", "", COUNTER,            \
      "Leases that expired.")                                                                      \
    X(leases_quarantined, s.leases_quarantined, NULL, "vkvd_leases_quarantined", "", GAUGE,        \
      "Expired leases whose memory is kept until their holder lets go.")                           \
    X(quota_refusals, s.quota_refusals, NULL, "vkvd_quota_refusals_total", "", COUNTER,            \
      "ALLOC/FETCH cut short by the per-session quota.")                                           \
    X(spill_queue_bytes, srv->spill_queued, NULL, "vkvd_spill_queue_bytes", "", GAUGE,             \
      "Bytes of evicted blocks waiting for the LMDB writer.")                                      \
    X(spill_queue_peak_bytes, srv->spill_queued_peak, NULL, NULL, NULL, NONE, NULL)                \
    X(spills_deferred, s.spills_deferred, NULL, NULL, NULL, NONE, NULL)                            \
    X(spills_dropped_busy, s.spills_dropped_busy, NULL, "vkvd_spills_dropped_busy_total", "",      \
      COUNTER, "Eviction victims dropped instead of spilled because the writer was behind.")       \
    X(spills_skipped, s.spills_skipped, NULL, "vkvd_spills_skipped_total", "", COUNTER,            \
      "Evictions of restored blocks the cold tier still held (no spill needed).")                  \
    X(sessions, s.sessions, NULL, "vkvd_sessions", "", GAUGE, "Open client sessions.")             \
    X(sessions_reaped, s.sessions_reaped, NULL, "vkvd_sessions_reaped_total", "", COUNTER,         \
      "Sessions closed because their process died or went silent.")                                \
    X(namespaces, s.namespaces, NULL, "vkvd_namespaces", "", GAUGE,                                \
      "Namespaces known to the store.")                                                            \
    X(meta_bytes, s.meta_bytes, NULL, "vkvd_meta_bytes", "", GAUGE,                                \
      "Heap bytes of the index and tables.")                                                       \
    X(slabs, s.slabs, NULL, NULL, NULL, NONE, NULL)                                                \
    X(requests_errors, srv->req_errors, NULL, "vkvd_request_errors_total", "", COUNTER,            \
      "Requests answered with an error status.")                                                   \
    X(bad_frames, srv->bad_frames, NULL, "vkvd_bad_frames_total", "", COUNTER,                     \
      "Malformed frames refused.")                                                                 \
    X(replies_resent, srv->resent_replies, NULL, NULL, NULL, NONE, NULL)                           \
    X(reply_cache_bytes, srv->rcache_bytes, NULL, NULL, NULL, NONE, NULL)                          \
    X(replies_dropped, srv->send_failures, NULL, NULL, NULL, NONE, NULL)

/* Counters after the req_<op> counters. */
#define VKVD_COUNTERS_CORE2(X)                                                                     \
    X(fetch_deferred, srv->fetch_deferred, NULL, "vkvd_deferred_requests", "op=\"fetch\"", GAUGE,  \
      "Requests waiting: FETCHes for restores, ALLOCs for spills to free room.")                   \
    X(alloc_deferred, srv->alloc_deferred, NULL, "vkvd_deferred_requests", "op=\"alloc\"", GAUGE,  \
      NULL)                                                                                        \
    X(room_waits, s.room_waits, NULL, "vkvd_room_waits_total", "", COUNTER,                        \
      "ALLOCs and restores that waited for spills in flight to free their room.")                  \
    X(spills_held, s.spills_held, NULL, "vkvd_spills_in_place_total", "", COUNTER,                 \
      "Spills written by the LMDB writer straight from the arena (no copy on the loop).")          \
    X(spills_reverted, s.spills_reverted, NULL, "vkvd_spills_reverted_total", "", COUNTER,         \
      "In-place spills that failed to write: the block stayed hot.")                               \
    X(entries_spilling, s.entries_spilling, NULL, "vkvd_entries", "state=\"spilling\"", GAUGE,     \
      NULL)                                                                                        \
    X(pages_spilling, s.pages_spilling, NULL, NULL, NULL, NONE, NULL)                              \
    X(cold_available, srv->cold != NULL, NULL, NULL, NULL, NONE, NULL)                             \
    X(cold_spill_lost, srv->cold_spill_lost, NULL, NULL, NULL, NONE, NULL)                         \
    X(cold_spill_pauses, srv->cold_spill_pauses, NULL, "vkvd_cold_spill_pauses_total", "",         \
      COUNTER,                                                                                     \
      "Pauses of spilling to a cold shard after it failed writes (disk full, I/O error).")         \
    X(cold_spill_paused, vkvd_cold_paused(srv), NULL, NULL, NULL, NONE, NULL)                      \
    X(cold_restore_failed, srv->cold_restore_failed, NULL, NULL, NULL, NONE, NULL)                 \
    X(cold_corrupt_dropped, srv->cold_corrupt_dropped, NULL, NULL, NULL, NONE, NULL)               \
    X(checksum_failures, srv->cold_corrupt_dropped + srv->commit_rejected, NULL,                   \
      "vkvd_checksum_failures_total", "", COUNTER,                                                 \
      "Cold-tier records whose checksum did not match (restores and verify).")

/* Counters only while the cold tier is open: `c` is its vkvs_cold_stats. */
#define VKVD_COUNTERS_COLD(X)                                                                      \
    X(cold_store_entries, c.entries, NULL, NULL, NULL, NONE, NULL)                                 \
    X(cold_store_bytes, c.bytes, NULL, NULL, NULL, NONE, NULL)                                     \
    X(cold_max_bytes, c.max_bytes, NULL, NULL, NULL, NONE, NULL)                                   \
    X(cold_shards, c.shards, NULL, NULL, NULL, NONE, NULL)                                         \
    X(cold_shards_failed, c.shards_failed, NULL, NULL, NULL, NONE, NULL)                           \
    X(cold_map_size, c.map_size, NULL, NULL, NULL, NONE, NULL)                                     \
    X(cold_file_bytes, c.file_bytes, NULL, NULL, NULL, NONE, NULL)                                 \
    X(cold_spills, c.spills, NULL, NULL, NULL, NONE, NULL)                                         \
    X(cold_spill_bytes, c.spill_bytes, NULL, NULL, NULL, NONE, NULL)                               \
    X(cold_spill_errors, c.spill_errors, NULL, NULL, NULL, NONE, NULL)                             \
    X(cold_spill_txns, c.spill_txns, NULL, NULL, NULL, NONE, NULL)                                 \
    X(cold_restores, c.restores, NULL, NULL, NULL, NONE, NULL)                                     \
    X(cold_restore_bytes, c.restore_bytes, NULL, NULL, NULL, NONE, NULL)                           \
    X(cold_restore_errors, c.restore_errors, NULL, NULL, NULL, NONE, NULL)                         \
    X(cold_evictions, c.evictions, NULL, NULL, NULL, NONE, NULL)                                   \
    X(cold_checksum_failures, c.checksum_failures, NULL, NULL, NULL, NONE, NULL)                   \
    X(cold_write_errors, c.write_errors, NULL, NULL, NULL, NONE, NULL)                             \
    X(cold_enospc, c.enospc, NULL, NULL, NULL, NONE, NULL)                                         \
    X(cold_eio, c.eio, NULL, NULL, NULL, NONE, NULL)                                               \
    X(cold_map_full, c.map_full, NULL, NULL, NULL, NONE, NULL)                                     \
    X(cold_queue_bytes, c.queue_bytes, NULL, NULL, NULL, NONE, NULL)                               \
    X(cold_failed, (uint64_t)c.failed, NULL, NULL, NULL, NONE, NULL)

/* Remote-tier counters of the daemon's own (always present): `srv`. */
#define VKVD_COUNTERS_REMOTE_D(X)                                                                  \
    X(remote_available, srv->remote != NULL, NULL, NULL, NULL, NONE, NULL)                         \
    X(remote_installed, srv->remote_installed, NULL, "vkvd_hits_total", "tier=\"remote\"",         \
      COUNTER, NULL)                                                                               \
    X(remote_install_bytes, srv->remote_install_bytes, NULL, NULL, NULL, NONE, NULL)               \
    X(remote_refused, srv->remote_refused, NULL, NULL, NULL, NONE, NULL)                           \
    X(remote_waits, srv->remote_waits, NULL, NULL, NULL, NONE, NULL)                               \
    X(remote_publish_dropped, srv->remote_publish_dropped, NULL, NULL, NULL, NONE, NULL)

/* Counters only while the remote tier is open: `r` is its vkvr_stats. */
#define VKVD_COUNTERS_REMOTE(X)                                                                    \
    X(remote_fetches, r.fetches, NULL, NULL, NULL, NONE, NULL)                                     \
    X(remote_hits, r.hits, NULL, "vkvd_remote_fetches_total", "result=\"hit\"", COUNTER,           \
      "Remote-tier fetches by result (hit, miss, error: failed, corrupt or foreign).")             \
    X(remote_misses, r.misses, NULL, "vkvd_remote_fetches_total", "result=\"miss\"", COUNTER,      \
      NULL)                                                                                        \
    X(remote_errors, r.errors, NULL, "vkvd_remote_fetches_total", "result=\"error\"", COUNTER,     \
      NULL)                                                                                        \
    X(remote_fetch_bytes, r.fetch_bytes, NULL, "vkvd_remote_bytes_total", "dir=\"in\"", COUNTER,   \
      "Verified block bytes fetched from (in) and published to (out) the remote tier.")            \
    X(remote_publish_bytes, r.publish_bytes, NULL, "vkvd_remote_bytes_total", "dir=\"out\"",       \
      COUNTER, NULL)                                                                               \
    X(remote_fetch_ns, r.fetch_ns_total, NULL, "vkvd_remote_fetch_nanoseconds_total", "", COUNTER, \
      "Sum of successful remote fetch latencies (divide by the hit count for the mean).")          \
    X(remote_fetch_ns_max, r.fetch_ns_max, NULL, NULL, NULL, NONE, NULL)                           \
    X(remote_corrupt, r.corrupt, NULL, "vkvd_remote_rejected_total", "reason=\"checksum\"",        \
      COUNTER, "Remote values refused: a checksum failed, or a foreign value / other identity.")   \
    X(remote_foreign, r.foreign, NULL, "vkvd_remote_rejected_total", "reason=\"foreign\"",         \
      COUNTER, NULL)                                                                               \
    X(remote_dangling, r.dangling, NULL, "vkvd_remote_dangling_dropped_total", "", COUNTER,        \
      "Remote manifests deleted because one of their pieces was gone (evicted or expired).")       \
    X(remote_publishes, r.publishes, NULL, "vkvd_remote_publishes_total", "result=\"ok\"",         \
      COUNTER, "Committed blocks published (ok), already there (exists), failed, or dropped.")     \
    X(remote_publish_skipped, r.publish_skipped, NULL, "vkvd_remote_publishes_total",              \
      "result=\"exists\"", COUNTER, NULL)                                                          \
    X(remote_publish_errors, r.publish_errors, NULL, "vkvd_remote_publishes_total",                \
      "result=\"error\"", COUNTER, NULL)                                                           \
    X(remote_publish_oom, r.publish_oom, NULL, NULL, NULL, NONE, NULL)                             \
    X(remote_publish_refused, r.publish_refused + srv->remote_publish_dropped, NULL,               \
      "vkvd_remote_publishes_total", "result=\"dropped\"", COUNTER, NULL)                          \
    X(remote_queue_bytes, r.queue_bytes, NULL, "vkvd_remote_queue_bytes", "", GAUGE,               \
      "Committed block bytes waiting to be published.")                                            \
    X(remote_moved, r.moved, NULL, NULL, NULL, NONE, NULL)                                         \
    X(remote_ask, r.ask, NULL, NULL, NULL, NONE, NULL)                                             \
    X(remote_slot_refreshes, r.slot_refreshes, NULL, NULL, NULL, NONE, NULL)                       \
    X(remote_connects, r.connects, NULL, NULL, NULL, NONE, NULL)                                   \
    X(remote_conn_errors, r.conn_errors, NULL, "vkvd_remote_conn_errors_total", "kind=\"conn\"",   \
      COUNTER, "Redis connections lost or refused (conn) and commands timed out (timeout).")       \
    X(remote_timeouts, r.timeouts, NULL, "vkvd_remote_conn_errors_total", "kind=\"timeout\"",      \
      COUNTER, NULL)

/* Counters while the fd channel runs: `served`, `refused` are its counts. */
#define VKVD_COUNTERS_FDCHAN(X)                                                                    \
    X(fdchan_served, served, NULL, NULL, NULL, NONE, NULL)                                         \
    X(fdchan_refused, refused, NULL, NULL, NULL, NONE, NULL)
/* Counters while the lookup index segment exists: `li` is its
 * vkvs_shmidx_stats. */
#define VKVD_COUNTERS_LIDX(X)                                                                      \
    X(lookup_index_slots, li.nslots, NULL, NULL, NULL, NONE, NULL)                                 \
    X(lookup_index_live, li.live, NULL, NULL, NULL, NONE, NULL)                                    \
    X(lookup_index_unpublished, li.unpublished, NULL, NULL, NULL, NONE, NULL)                      \
    X(lookup_index_changes, li.changes, NULL, NULL, NULL, NONE, NULL)                              \
    X(lookup_index_rebuilds, li.rebuilds, NULL, NULL, NULL, NONE, NULL)                            \
    X(lookup_index_full, li.full, NULL, NULL, NULL, NONE, NULL)
/* Every list, in STATS order (the req_<op> counters aside). */
#define VKVD_COUNTERS_LOCAL_(X)                                                                    \
    VKVD_COUNTERS_CORE(X) VKVD_COUNTERS_CORE2(X) VKVD_COUNTERS_COLD(X) VKVD_COUNTERS_FDCHAN(X)
#define VKVD_COUNTERS_ALL(X)                                                                       \
    VKVD_COUNTERS_LOCAL_(X) VKVD_COUNTERS_REMOTE_D(X) VKVD_COUNTERS_REMOTE(X) VKVD_COUNTERS_LIDX(X)

/* One enumerator per counter: VKVD_CTR_<name>, the req_<op> ones too. */
enum vkvd_counter_id {
#define VKVD_COUNTER_ID_(name, value, minus, family, labels, type, help) VKVD_CTR_##name,
    VKVD_COUNTERS_ALL(VKVD_COUNTER_ID_)
#undef VKVD_COUNTER_ID_
#define VKVD_REQ_COUNTER_ID_(name, value, lower, req, rep) VKVD_CTR_req_##lower,
        VKVP_OPS(VKVD_REQ_COUNTER_ID_)
#undef VKVD_REQ_COUNTER_ID_
            VKVD_CTR_COUNT_
};

/* Counters at most in one STATS reply. */
#define VKVD_MAX_COUNTERS (VKVD_CTR_COUNT_ + 8)

/* The counter's name as a string literal; unknown names do not compile. */
#define VKVD_COUNTER(name) ((void)VKVD_CTR_##name, #name)

#endif
