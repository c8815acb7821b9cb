/*
 * cold/open.c - opening and closing the cold tier. vkvs_cold_open runs in
 * steps, each of which writes the reason of a failure into the caller's
 * `why` buffer (common/errbuf.h) and returns its code; open logs that one
 * line and copies it out. Also the open-time scan (entries, bytes, next
 * ids) and the teardown shared by a failed open and close.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "cold/cold_int.h"
#include "common/errbuf.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "vkv/error.h"

/* See cold.h. */
void vkvs_cold_config_default(vkvs_cold_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_bytes = 1ull << 30;
    cfg->sync_interval_ms = 1000;
    cfg->piece_size = VKVS_COLD_PIECE_DEFAULT;
    cfg->reader_threads = 2;
    cfg->reader_check_ms = 10000;
    cfg->group_max_bytes = 16ull << 20;
    cfg->malloc_keep_bytes = 64ull << 20;
    cfg->shards = 1;
}

/* Applies cfg->malloc_keep_bytes (see cold.h): a process-wide glibc
 * setting, made once per open; later opens set the same values. LMDB
 * mallocs a commit's dirty pages and frees them after the commit; with
 * glibc's defaults the writer's arena is trimmed (madvise) after each
 * commit and the next one faults and zeroes the pages again. */
void vkvs_cold_malloc_tune(const vkvs_cold_config *cfg)
{
#if defined(M_TRIM_THRESHOLD) && defined(M_MMAP_THRESHOLD)
    if (cfg->malloc_keep_bytes == 0)
        return;
    uint64_t keep = cfg->malloc_keep_bytes > (1ull << 30) ? 1ull << 30 : cfg->malloc_keep_bytes;
    if (mallopt(M_MMAP_THRESHOLD, (int)(VKVS_COLD_PIECE_MAX + (64u << 10))) != 1 ||
        mallopt(M_TRIM_THRESHOLD, (int)keep) != 1)
        VKV_WARN("cold tier: mallopt refused the dirty-page settings");
#else
    (void)cfg;
#endif
}

/* ---- the open-time scan --------------------------------------------------- */

/* Walker callback of the scan: counts a valid row's entry and bytes and
 * keeps the next entry id above it; an invalid row is skipped (neither
 * foreach nor restore can reach it). */
static int vkvs_cold_scan_row(void *ctx, MDB_txn *txn, const vkvs_cold_meta_row *row)
{
    vkvs_cold_env *c = ctx;
    if (!row->valid)
        return 0;
    c->st.entries++;
    c->st.bytes += row->m.size;
    if (row->m.entry_id >= c->next_id)
        c->next_id = row->m.entry_id + 1;
    return 0;
}

/* Reads the last key of DB `dbi` in txn into *k: 0 or an LMDB error
 * (MDB_NOTFOUND for an empty DB). */
static int vkvs_cold_last_key(MDB_txn *txn, MDB_dbi dbi, MDB_val *k)
{
    MDB_cursor *cur;
    MDB_val v;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0)
        return rc;
    rc = mdb_cursor_get(cur, k, &v, MDB_LAST);
    mdb_cursor_close(cur);
    return rc;
}

/* Open-time scan: counts entries and bytes (the metadata walker) and finds
 * the next entry id, access sequence and ns id from the last keys of data,
 * lru and nsid. Runs in one read txn. Returns 0 or an LMDB error. */
static int vkvs_cold_scan(vkvs_cold_env *c)
{
    MDB_txn *txn;
    MDB_val k;
    int stop;
    int rc = vkvs_cold_rtxn_begin(c, &txn);
    if (rc != 0)
        return rc;
    c->next_id = 1;
    c->next_seq = 1;
    c->next_nsid = 1;
    rc = vkvs_cold_meta_walk(c, txn, vkvs_cold_scan_row, c, &stop);
    if (rc == 0) {
        rc = vkvs_cold_last_key(txn, c->db_data, &k);
        if (rc == 0 && k.mv_size == VKVS_COLD_DATA_KLEN &&
            vkvs_cold_get_be64(k.mv_data) >= c->next_id)
            c->next_id = vkvs_cold_get_be64(k.mv_data) + 1;
    }
    if (rc == 0 || rc == MDB_NOTFOUND) {
        rc = vkvs_cold_last_key(txn, c->db_lru, &k);
        if (rc == 0 && k.mv_size == VKVS_COLD_LRU_KLEN)
            c->next_seq = vkvs_cold_get_be64(k.mv_data) + 1;
    }
    if (rc == 0 || rc == MDB_NOTFOUND) {
        rc = vkvs_cold_last_key(txn, c->db_nsid, &k);
        if (rc == 0 && k.mv_size == 4)
            c->next_nsid = vkvs_cold_get_be32(k.mv_data) + 1;
    }
    vkvs_cold_rtxn_end(c, txn);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* ---- teardown ------------------------------------------------------------- */

/* Stops and joins the threads that were started (readers first: they may
 * queue touches/drops for the writer, which then drains everything). */
static void vkvs_cold_stop_threads(vkvs_cold_env *c)
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

/* Frees a handle: stops the threads that were started, closes the env if
 * it was created, frees the queues, completion array, fds and sync
 * primitives, then `c` itself. Used by close and by a failed open. */
static void vkvs_cold_free(vkvs_cold_env *c)
{
    vkvs_cold_stop_threads(c);
    if (c->env != NULL)
        mdb_env_close(c->env);
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
    free(c->readers);
    if (c->lockfd >= 0)
        close(c->lockfd);
    pthread_rwlock_destroy(&c->maplock);
    pthread_mutex_destroy(&c->qlock);
    pthread_cond_destroy(&c->qcond);
    pthread_cond_destroy(&c->donecond);
    pthread_mutex_destroy(&c->rlock);
    pthread_cond_destroy(&c->rcond);
    pthread_cond_destroy(&c->readycond);
    pthread_mutex_destroy(&c->slock);
    free(c->dir);
    free(c);
}

/* ---- open, step by step --------------------------------------------------- */

/* Step 1: checks the configuration. Returns 0 or VKV_EINVAL (why set). */
int vkvs_cold_check_config(const vkvs_cold_config *cfg, char *why)
{
    if (cfg == NULL || cfg->dir == NULL || cfg->dir[0] == 0)
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, VKV_EINVAL, "no directory configured");
    if (cfg->max_bytes == 0 || cfg->piece_size < VKVS_COLD_PIECE_MIN ||
        cfg->piece_size > VKVS_COLD_PIECE_MAX || cfg->reader_threads < 1 ||
        cfg->reader_threads > 64 || cfg->thread_nice < 0 || cfg->thread_nice > 19 ||
        cfg->thread_policy < VKVS_COLD_SCHED_NORMAL || cfg->thread_policy > VKVS_COLD_SCHED_IDLE ||
        cfg->shards < 1 || cfg->shards > VKVS_COLD_SHARDS_MAX)
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, VKV_EINVAL,
                          "invalid config (max_bytes %" PRIu64
                          ", piece_size %u, reader_threads %d, thread_nice %d, thread_policy %d, "
                          "shards %d)",
                          cfg->max_bytes, cfg->piece_size, cfg->reader_threads, cfg->thread_nice,
                          cfg->thread_policy, cfg->shards);
    return 0;
}

/* Step 2: allocates a handle for cfg with its locks and condition
 * variables ready and no fds, env or threads yet. Returns 0 and *out (the
 * caller frees it with vkvs_cold_free), or VKV_ENOMEM. */
static int vkvs_cold_alloc(const vkvs_cold_config *cfg, vkvs_cold_env **out, char *why)
{
    vkvs_cold_env *c = calloc(1, sizeof *c);
    *out = c;
    if (c == NULL)
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, VKV_ENOMEM, "out of memory");
    c->cfg = *cfg;
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
    pthread_cond_init(&c->readycond, NULL);
    pthread_mutex_init(&c->slock, NULL);
    if (c->dir == NULL)
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, VKV_ENOMEM, "out of memory");
    return 0;
}

/* See cold_int.h. */
int vkvs_cold_lock_dir(const char *dir, int *fd, char *why)
{
    char lpath[4200], reason[VKVS_COLD_WHY_MAX];
    snprintf(lpath, sizeof lpath, "%s/vkv-cold.lock", dir);
    int rc = vkv_lock_file(lpath, fd, reason, sizeof reason);
    if (rc == VKV_EBUSY)
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, rc,
                          "directory '%s' is in use by another process (%s)", dir, reason);
    if (rc != 0)
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, rc, "%s", reason);
    return 0;
}

/* Returns the initial map size and sets c->map_cap: start at 2 x bound +
 * slack (or cfg's map_initial_bytes), never above the cap and never below
 * the file size (the cap grows to it), rounded up to 4 KiB. */
static uint64_t vkvs_cold_map_plan(vkvs_cold_env *c)
{
    const vkvs_cold_config *cfg = &c->cfg;
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
    return (want + 4095) & ~4095ull;
}

/* Step 4: creates and opens the LMDB env in c->dir with the planned map
 * size, then clears stale reader slots. c->env is set as soon as it is
 * created (vkvs_cold_free closes it). */
static int vkvs_cold_lmdb_open(vkvs_cold_env *c, char *why)
{
    uint64_t want = vkvs_cold_map_plan(c);
    int rc = mdb_env_create(&c->env);
    if (rc != 0) {
        c->env = NULL;
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, vkvs_cold_map_err(NULL, rc), "mdb_env_create: %s",
                          mdb_strerror(rc));
    }
    if ((rc = mdb_env_set_maxdbs(c->env, 8)) != 0 ||
        (rc = mdb_env_set_maxreaders(c->env, (unsigned)c->cfg.reader_threads + 64)) != 0 ||
        (rc = mdb_env_set_mapsize(c->env, (size_t)want)) != 0)
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, vkvs_cold_map_err(NULL, rc), "LMDB set-up: %s",
                          mdb_strerror(rc));
    /* MDB_NOMETASYNC, not MDB_NOSYNC: every commit flushes its data pages
     * and only the meta page waits for the next explicit sync, so a power
     * cut can lose the newest transactions but never corrupt older ones
     * (with MDB_NOSYNC, LMDB may reuse pages freed since the last sync and a
     * crash can damage more than the newest transaction). */
    rc = mdb_env_open(c->env, c->dir, MDB_NOMETASYNC | MDB_NOTLS, 0600);
    if (rc != 0)
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, vkvs_cold_map_err(NULL, rc),
                          "cannot open LMDB environment in '%s': %s", c->dir, mdb_strerror(rc));
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
    return 0;
}

/* Opens the named DBs (creating them) and checks the format version in
 * one write txn. Returns 0 or an LMDB error; *bad_format is the stored
 * version (-1 if unreadable) when the error is MDB_INCOMPATIBLE. */
static int vkvs_cold_open_dbs(vkvs_cold_env *c, int *bad_format)
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

/* Step 5: opens the DBs (checking the format), syncs, and scans the
 * metadata into the counters and next ids. */
static int vkvs_cold_lmdb_init(vkvs_cold_env *c, char *why)
{
    int bad_format = 0;
    int rc = vkvs_cold_open_dbs(c, &bad_format);
    if (rc != 0 && bad_format)
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, VKV_ECORRUPT,
                          "'%s' holds cold-tier format %d, expected %u", c->dir, bad_format,
                          VKVS_COLD_FORMAT);
    if (rc != 0)
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, vkvs_cold_map_err(NULL, rc),
                          "cannot initialise LMDB databases in '%s': %s", c->dir, mdb_strerror(rc));
    if ((rc = mdb_env_sync(c->env, 1)) != 0)
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, vkvs_cold_map_err(NULL, rc),
                          "cannot sync LMDB environment in '%s': %s", c->dir, mdb_strerror(rc));
    if ((rc = vkvs_cold_scan(c)) != 0)
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, vkvs_cold_map_err(NULL, rc),
                          "cannot read the cold index in '%s': %s", c->dir, mdb_strerror(rc));
    c->st.max_bytes = c->cfg.max_bytes;
    c->st.map_size = c->map_size;
    c->st.map_cap = c->map_cap;
    return 0;
}

/* Step 6: creates the hash state, starts the writer and the readers, and
 * queues a trim when the stored bytes exceed the bound. */
static int vkvs_cold_start(vkvs_cold_env *c, char *why)
{
    c->wxxh = XXH3_createState();
    c->readers = calloc((size_t)c->cfg.reader_threads, sizeof *c->readers);
    if (c->wxxh == NULL || c->readers == NULL)
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, VKV_ENOMEM, "cannot create the writer state");
    if (pthread_create(&c->writer, NULL, vkvs_cold_writer_main, c) != 0)
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, VKV_ESYS, "cannot start the writer thread");
    c->writer_started = 1;
    for (int i = 0; i < c->cfg.reader_threads; i++) {
        if (pthread_create(&c->readers[i], NULL, vkvs_cold_reader_main, c) != 0)
            return vkv_errbuf(why, VKVS_COLD_WHY_MAX, VKV_ESYS, "cannot start reader thread %d", i);
        c->nreaders_started++;
    }
    /* open returns once every thread is named and scheduled as configured */
    pthread_mutex_lock(&c->rlock);
    while (c->threads_ready < 1 + c->nreaders_started)
        pthread_cond_wait(&c->readycond, &c->rlock);
    pthread_mutex_unlock(&c->rlock);
    if (c->st.bytes > c->cfg.max_bytes) {
        vkvs_cold_wop *op = calloc(1, sizeof *op);
        if (op != NULL) {
            op->kind = VKVS_COLD_K_TRIM;
            vkvs_cold_wenqueue(c, op);
        }
    }
    return 0;
}

/* See cold_int.h: opens the environment in cfg->dir (which exists; the
 * tier checked cfg and applied the malloc settings) as shard `shard` of
 * `nshards`, posting completions to `sink` (the tier's, not owned). On
 * failure writes one line into why[0..whylen) and returns its code (the
 * tier logs it); *out is the handle the tier closes with
 * vkvs_cold_env_close. */
int vkvs_cold_env_open(const vkvs_cold_config *cfg, int shard, int nshards, vkvs_cold_sink *sink,
                       vkvs_cold_env **out, char *why_out, size_t whylen)
{
    char why[VKVS_COLD_WHY_MAX] = "";
    vkvs_cold_env *c = NULL;
    *out = NULL;
    int rc = vkvs_cold_alloc(cfg, &c, why);
    if (rc == 0) {
        c->shard = shard;
        c->nshards = nshards;
        c->sink = sink;
        /* a shard's own lock keeps a tool that opens the shard directory
         * as a tier of its own out; a one-env tier's directory is locked
         * by the tier already (a second flock on it would fail) */
        if (nshards > 1)
            rc = vkvs_cold_lock_dir(c->dir, &c->lockfd, why);
    }
    if (rc == 0)
        rc = vkvs_cold_lmdb_open(c, why);
    if (rc == 0)
        rc = vkvs_cold_lmdb_init(c, why);
    if (rc == 0)
        rc = vkvs_cold_start(c, why);
    if (rc != 0) {
        if (c != NULL)
            vkvs_cold_free(c);
        return vkv_errbuf(why_out, whylen, rc, "%s", why);
    }
    VKV_INFO("cold tier: opened '%s': %" PRIu64 " entries, %" PRIu64 " MiB stored, bound %" PRIu64
             " MiB, map %" PRIu64 " MiB (cap %" PRIu64 " MiB)",
             c->dir, c->st.entries, c->st.bytes >> 20, c->cfg.max_bytes >> 20, c->map_size >> 20,
             c->map_cap >> 20);
    *out = c;
    return 0;
}

/* See cold.h (vkvs_cold_close), for one environment. */
int vkvs_cold_env_close(vkvs_cold_env *c)
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
    vkvs_cold_free(c);
    return rc;
}
