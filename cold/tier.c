/*
 * cold/tier.c - the cold tier as its callers see it (cold.h): one or
 * several LMDB environments ("shards") in one directory, one completion
 * queue and eventfd for all of them, and every public vkvs_cold_* call
 * routed to the environment that owns the key.
 *
 * Layout (docs/COLD_TIER.md, "Shards"):
 *   one environment:  <dir>/data.mdb, lock.mdb, vkv-cold.lock (the layout
 *                     of every tier before shards existed, and of a new
 *                     tier with shards = 1)
 *   N >= 2 shards:    <dir>/shards (the count, one decimal line, written
 *                     once at creation), <dir>/vkv-cold.lock, and
 *                     <dir>/shard-K/ (K = 0..N-1), each a whole
 *                     environment with its own lock file
 * A key lives in shard XXH3-64(key bytes, seed XXH3-64(namespace)) mod N,
 * so the count is part of the format: it is fixed at creation and an
 * existing tier keeps it whatever the configuration asks.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cold/cold_int.h"
#include "common/clock.h"
#include "common/errbuf.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "vkv/error.h"

#define VKVS_COLD_PATH_MAX 4200

struct vkvs_cold {
    char *dir;
    int lockfd; /* flock of <dir>/vkv-cold.lock: one process per tier */
    int n;      /* shards */
    vkvs_cold_env *env[VKVS_COLD_SHARDS_MAX];
    vkvs_cold_sink sink;
    uint64_t quarantined; /* envs moved aside by this open */
};

/* ---- routing -------------------------------------------------------------- */

/* The shard of (ns, key) among t->n; ns is valid (vkvs_cold_ns_len >= 0).
 * Part of the on-disk format: never change it for an existing count. */
static int vkvs_cold_route_index(const vkvs_cold *t, const char *ns, const vkv_key *key)
{
    if (t->n == 1)
        return 0;
    XXH64_hash_t seed = XXH3_64bits(ns, strlen(ns));
    return (int)(XXH3_64bits_withSeed(key->b, VKV_KEY_LEN, seed) % (uint64_t)t->n);
}

/* The environment of (ns, key)'s shard (vkvs_cold_route_index). */
static vkvs_cold_env *vkvs_cold_route(vkvs_cold *t, const char *ns, const vkv_key *key)
{
    return t->env[vkvs_cold_route_index(t, ns, key)];
}

/* See cold.h. */
int vkvs_cold_shard_of(vkvs_cold *t, const char *ns, const vkv_key *key)
{
    if (t == NULL || key == NULL || vkvs_cold_ns_len(ns) < 0)
        return -1;
    return vkvs_cold_route_index(t, ns, key);
}

/* Validates the arguments every routed call needs and returns the shard of
 * (ns, key), or NULL (VKV_EINVAL for the caller). */
static vkvs_cold_env *vkvs_cold_route_checked(vkvs_cold *t, const char *ns, const vkv_key *key)
{
    if (t == NULL || key == NULL || vkvs_cold_ns_len(ns) < 0)
        return NULL;
    return vkvs_cold_route(t, ns, key);
}

/* See cold_int.h. */
vkvs_cold_env *vkvs_cold_shard_env(vkvs_cold *t, int k)
{
    return t != NULL && k >= 0 && k < t->n ? t->env[k] : NULL;
}

/* ---- layout --------------------------------------------------------------- */

/* Writes the shard count of a new tier: <dir>/shards.tmp, fsync, rename to
 * <dir>/shards, fsync of the directory, so a crash leaves either no count
 * (the tier is created again; no shard was opened yet) or the whole one.
 * A failed step (the directory's fsync included: without it the count may
 * not survive a power loss while the shards' data does) removes the
 * temporary file and fails the open. Returns 0 or a VKV_E* code (why set). */
static int vkvs_cold_write_count(const char *dir, int n, char *why)
{
    char tmp[VKVS_COLD_PATH_MAX], path[VKVS_COLD_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/shards.tmp", dir);
    snprintf(path, sizeof path, "%s/shards", dir);
    char line[16];
    const int len = snprintf(line, sizeof line, "%d\n", n);
    int e = 0, dfd = -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, vkv_errno_code(errno), "cannot write '%s': %s",
                          tmp, strerror(errno));
    ssize_t w = write(fd, line, (size_t)len);
    if (w != len)
        e = w < 0 ? errno : ENOSPC; /* a short write of 2-3 bytes: the disk is full */
    else if (fsync(fd) != 0)
        e = errno;
    close(fd);
    if (e == 0 && rename(tmp, path) != 0)
        e = errno;
    if (e != 0) {
        unlink(tmp);
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, vkv_errno_code(e), "cannot write '%s': %s", path,
                          strerror(e));
    }
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || fsync(dfd) != 0)
        e = errno;
    if (dfd >= 0)
        close(dfd);
    if (e == EINVAL || e == ENOTSUP) { /* a filesystem without directory fsync */
        VKV_WARN("cold tier: '%s' cannot be fsynced (%s): the shard count is not known durable "
                 "until the filesystem writes the directory back",
                 dir, strerror(e));
        e = 0;
    }
    if (e != 0) { /* not known to be durable: the next open creates the tier again */
        unlink(path);
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, vkv_errno_code(e),
                          "cannot make '%s' durable (fsync of '%s'): %s", path, dir, strerror(e));
    }
    return 0;
}

/* Reads <dir>/shards into *n. Returns 0, VKV_ENOTFOUND (no such file),
 * VKV_ECORRUPT (not a count 2..VKVS_COLD_SHARDS_MAX) or an I/O error (why
 * set on errors). */
static int vkvs_cold_read_count(const char *dir, int *n, char *why)
{
    char path[VKVS_COLD_PATH_MAX], line[32] = "";
    snprintf(path, sizeof path, "%s/shards", dir);
    FILE *fp = fopen(path, "re");
    if (fp == NULL) {
        if (errno == ENOENT)
            return VKV_ENOTFOUND;
        int e = errno;
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, vkv_errno_code(e), "cannot read '%s': %s", path,
                          strerror(e));
    }
    char *got = fgets(line, sizeof line, fp);
    fclose(fp);
    char *end = NULL;
    long v = got ? strtol(line, &end, 10) : 0;
    if (got == NULL || end == line || (*end != '\n' && *end != '\0') || v < 2 ||
        v > VKVS_COLD_SHARDS_MAX)
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, VKV_ECORRUPT,
                          "'%s' does not hold a shard count 2..%d", path, VKVS_COLD_SHARDS_MAX);
    *n = (int)v;
    return 0;
}

/* The directory of shard k: <dir>/shard-k, or <dir> for a one-env tier. */
static void vkvs_cold_shard_dir(const vkvs_cold *t, int k, char *out, size_t len)
{
    if (t->n == 1)
        snprintf(out, len, "%s", t->dir);
    else
        snprintf(out, len, "%s/shard-%d", t->dir, k);
}

/* Nonzero when some shard-K directory of `dir` (K < VKVS_COLD_SHARDS_MAX)
 * holds an environment (data.mdb): the tier was opened with a shard count,
 * whatever its count file now says. */
static int vkvs_cold_has_shard_data(const char *dir)
{
    char path[VKVS_COLD_PATH_MAX];
    for (int k = 0; k < VKVS_COLD_SHARDS_MAX; k++) {
        snprintf(path, sizeof path, "%s/shard-%d/data.mdb", dir, k);
        if (access(path, F_OK) == 0)
            return 1;
    }
    return 0;
}

/* Decides t->n under the tier lock: an existing environment at the top
 * (data.mdb) is a one-env tier; an existing count file gives N; otherwise
 * the tier is new and gets `want` shards (their directories and the count
 * file are created here). Two layouts that contradict each other are
 * refused with VKV_ECOLD and nothing is moved or created, as neither can be
 * chosen without hiding the other's committed entries: an environment at
 * the top beside a count file or shard data (a one-env vkv, such as an
 * older release, opened the sharded tier), or shard data without a count
 * file (the count was lost: the routing of every key depends on it).
 * Returns 0 or a VKV_E* code (why set). */
static int vkvs_cold_layout(vkvs_cold *t, int want, char *why)
{
    char path[VKVS_COLD_PATH_MAX];
    snprintf(path, sizeof path, "%s/shards", t->dir);
    const int has_count = access(path, F_OK) == 0, has_shards = vkvs_cold_has_shard_data(t->dir);
    snprintf(path, sizeof path, "%s/data.mdb", t->dir);
    if (access(path, F_OK) == 0) {
        if (has_count || has_shards)
            return vkv_errbuf(why, VKVS_COLD_WHY_MAX, VKV_ECOLD,
                              "'%s' holds both a one-environment tier (data.mdb) and a sharded "
                              "one (%s): opened by another vkv version? Refusing to choose; move "
                              "one of them out of the directory",
                              t->dir, has_count ? "the 'shards' count file" : "shard-K/data.mdb");
        t->n = 1;
        return 0;
    }
    int rc = vkvs_cold_read_count(t->dir, &t->n, why);
    if (rc != VKV_ENOTFOUND)
        return rc;
    if (has_shards)
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, VKV_ECOLD,
                          "'%s/shards' is missing but shard directories hold data: write the "
                          "tier's shard count (its number of shard-K directories) into it, or "
                          "move the directory aside",
                          t->dir);
    t->n = want;
    if (want == 1)
        return 0;
    for (int k = 0; k < want; k++) {
        vkvs_cold_shard_dir(t, k, path, sizeof path);
        if ((rc = vkv_private_dir(path, 0, why, VKVS_COLD_WHY_MAX)) != 0)
            return rc;
    }
    return vkvs_cold_write_count(t->dir, want, why);
}

/* ---- open and close ------------------------------------------------------- */

/* The configuration of shard k of n: cfg with its share of the byte
 * bounds (bound, map sizes, queue bound; divided by n, the queue bound and
 * map sizes rounded up) and of the restore threads (reader_threads dealt
 * over the shards, at least one each), and its directory `dir` (the
 * caller's buffer). */
static vkvs_cold_config vkvs_cold_shard_cfg(const vkvs_cold_config *cfg, int k, int n,
                                            const char *dir)
{
    vkvs_cold_config s = *cfg;
    uint64_t un = (uint64_t)n;
    s.dir = dir;
    s.reader_threads = cfg->reader_threads / n + (k < cfg->reader_threads % n);
    if (s.reader_threads < 1)
        s.reader_threads = 1;
    s.max_bytes = cfg->max_bytes / un ? cfg->max_bytes / un : 1; /* a bound below n bytes */
    s.map_cap_bytes = (cfg->map_cap_bytes + un - 1) / un;
    s.map_initial_bytes = (cfg->map_initial_bytes + un - 1) / un;
    s.queue_max_bytes = (cfg->queue_max_bytes + un - 1) / un;
    return s;
}

/* Moves the damaged environment directory `dir` aside to
 * <dir>.corrupt-<wall ms> and creates an empty one in its place. Returns 0
 * or a VKV_E* code (why set). */
static int vkvs_cold_move_aside(const char *dir, const char *reason, char *why)
{
    char aside[VKVS_COLD_PATH_MAX + 32];
    snprintf(aside, sizeof aside, "%s.corrupt-%" PRIu64, dir, vkv_wall_ms());
    if (rename(dir, aside) != 0) {
        int e = errno;
        return vkv_errbuf(why, VKVS_COLD_WHY_MAX, VKV_ECORRUPT,
                          "%s is damaged (%s) and cannot be moved aside: %s", dir, reason,
                          strerror(e));
    }
    VKV_ERROR("cold tier: %s is damaged (%s): moved aside to %s; starting an empty one", dir,
              reason, aside);
    return vkv_private_dir(dir, 0, why, VKVS_COLD_WHY_MAX);
}

/* Opens every shard of t (layout decided). A damaged shard of a sharded
 * tier is moved aside and opened empty when cfg asks for it. Returns 0 or
 * the first shard's error (why set); shards opened so far stay in t->env. */
static int vkvs_cold_open_shards(vkvs_cold *t, const vkvs_cold_config *cfg, char *why)
{
    for (int k = 0; k < t->n; k++) {
        char dir[VKVS_COLD_PATH_MAX];
        vkvs_cold_shard_dir(t, k, dir, sizeof dir);
        vkvs_cold_config sc = vkvs_cold_shard_cfg(cfg, k, t->n, dir);
        /* a shard directory that went missing (removed by hand, or a crash
         * while it was moved aside) is created again, empty */
        if (t->n > 1 && access(dir, F_OK) != 0 && errno == ENOENT)
            VKV_WARN("cold tier: shard directory %s is missing: starting it empty (its entries, "
                     "if it had any, are gone)",
                     dir);
        int rc = vkv_private_dir(dir, 0, why, VKVS_COLD_WHY_MAX);
        if (rc == 0)
            rc = vkvs_cold_env_open(&sc, k, t->n, &t->sink, &t->env[k], why, VKVS_COLD_WHY_MAX);
        if (rc == VKV_ECORRUPT && cfg->quarantine_damaged && t->n > 1) {
            char reason[VKVS_COLD_WHY_MAX];
            snprintf(reason, sizeof reason, "%s", why);
            rc = vkvs_cold_move_aside(dir, reason, why);
            if (rc == 0) {
                t->quarantined++;
                rc = vkvs_cold_env_open(&sc, k, t->n, &t->sink, &t->env[k], why, VKVS_COLD_WHY_MAX);
            }
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Moves the whole tier directory aside (a damaged one-env tier, or a
 * damaged shard count) and locks the new, empty one. The old lock is held
 * until then (an flock stays on the moved file), so no other process can
 * take the damaged tier meanwhile; one that creates and locks the new
 * directory first makes this open fail with VKV_EBUSY. Returns 0 or a
 * VKV_E* code (why set). */
static int vkvs_cold_quarantine_all(vkvs_cold *t, char *why)
{
    char reason[VKVS_COLD_WHY_MAX];
    snprintf(reason, sizeof reason, "%s", why);
    int old = t->lockfd;
    t->lockfd = -1;
    int rc = vkvs_cold_move_aside(t->dir, reason, why);
    if (rc == 0) {
        t->quarantined++;
        rc = vkvs_cold_lock_dir(t->dir, &t->lockfd, why);
    }
    close(old);
    return rc;
}

/* Closes every open shard and frees t (the sink after the shards: their
 * threads post to it until they stop). Returns the first close error. */
static int vkvs_cold_free_tier(vkvs_cold *t)
{
    int rc = 0;
    for (int k = 0; k < VKVS_COLD_SHARDS_MAX; k++) {
        int r = vkvs_cold_env_close(t->env[k]);
        if (r != 0 && rc == 0)
            rc = r;
    }
    free(t->sink.comp);
    if (t->sink.efd >= 0)
        close(t->sink.efd);
    pthread_mutex_destroy(&t->sink.lock);
    if (t->lockfd >= 0)
        close(t->lockfd);
    free(t->dir);
    free(t);
    return rc;
}

/* See cold.h. */
int vkvs_cold_open(const vkvs_cold_config *cfg, vkvs_cold **out, char *err, size_t errlen)
{
    char why[VKVS_COLD_WHY_MAX] = "";
    if (out == NULL)
        return VKV_EINVAL;
    *out = NULL;
    if (err != NULL && errlen > 0)
        err[0] = 0;
    int rc = vkvs_cold_check_config(cfg, why);
    if (rc == 0)
        rc = vkv_private_dir(cfg->dir, 0, why, sizeof why);
    vkvs_cold *t = NULL;
    if (rc == 0 && (t = calloc(1, sizeof *t)) == NULL)
        rc = vkv_errbuf(why, sizeof why, VKV_ENOMEM, "out of memory");
    if (t != NULL) {
        t->lockfd = -1;
        pthread_mutex_init(&t->sink.lock, NULL);
        t->sink.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        t->dir = strdup(cfg->dir);
        /* "x/" would not rename to "x/.corrupt-..." */
        for (size_t l = t->dir ? strlen(t->dir) : 0; l > 1 && t->dir[l - 1] == '/'; l--)
            t->dir[l - 1] = '\0';
        if (t->sink.efd < 0 || t->dir == NULL)
            rc = vkv_errbuf(why, sizeof why, t->dir ? VKV_ESYS : VKV_ENOMEM,
                            "cannot create the completion eventfd: %s", strerror(errno));
    }
    if (rc == 0) {
        vkvs_cold_malloc_tune(cfg);
        rc = vkvs_cold_lock_dir(t->dir, &t->lockfd, why);
    }
    /* a damaged count or one-env tier is moved aside once (when cfg asks)
     * and the tier created again */
    for (int attempt = 0; rc == 0 && attempt < 2; attempt++) {
        rc = vkvs_cold_layout(t, cfg->shards, why);
        if (rc == 0)
            rc = vkvs_cold_open_shards(t, cfg, why);
        /* (a sharded tier quarantines its damaged shards one by one) */
        if (rc != VKV_ECORRUPT || !cfg->quarantine_damaged || attempt > 0 || t->n > 1)
            break;
        rc = vkvs_cold_quarantine_all(t, why);
    }
    if (rc != 0) {
        if (t != NULL)
            vkvs_cold_free_tier(t);
        VKV_ERROR("cold tier unavailable: %s", why);
        return vkv_errbuf(err, errlen, rc, "%s", why);
    }
    if (t->n != cfg->shards)
        VKV_INFO("cold tier '%s' keeps the %d shard(s) it was created with (asked for %d)", t->dir,
                 t->n, cfg->shards);
    *out = t;
    return 0;
}

/* See cold.h. */
int vkvs_cold_close(vkvs_cold *t)
{
    return t ? vkvs_cold_free_tier(t) : 0;
}

/* ---- completions ---------------------------------------------------------- */

/* See cold.h. */
int vkvs_cold_fd(const vkvs_cold *t)
{
    return t ? t->sink.efd : -1;
}

/* See cold.h. */
int vkvs_cold_poll(vkvs_cold *t, vkvs_cold_completion *out, int max)
{
    int n = 0;
    if (t == NULL || out == NULL || max <= 0)
        return 0;
    vkvs_cold_sink *k = &t->sink;
    pthread_mutex_lock(&k->lock);
    while (n < max && k->len > 0) {
        out[n++] = k->comp[k->head];
        k->head = (k->head + 1) % k->cap;
        k->len--;
    }
    if (k->len == 0) {
        uint64_t v;
        ssize_t r = read(k->efd, &v, sizeof v); /* reset; EAGAIN when already 0 */
        (void)r;
    }
    pthread_mutex_unlock(&k->lock);
    return n;
}

/* ---- routed calls --------------------------------------------------------- */

/* See cold.h. */
int vkvs_cold_spill(vkvs_cold *t, const char *ns, const vkv_key *key, void *buf, size_t len,
                    uint64_t tag)
{
    vkvs_cold_env *c = vkvs_cold_route_checked(t, ns, key);
    return c ? vkvs_cold_env_spill(c, ns, key, buf, len, tag) : VKV_EINVAL;
}

/* See cold.h. */
int vkvs_cold_spill_iov(vkvs_cold *t, const char *ns, const vkv_key *key, const struct iovec *src,
                        int nsrc, uint64_t tag)
{
    vkvs_cold_env *c = vkvs_cold_route_checked(t, ns, key);
    return c ? vkvs_cold_env_spill_iov(c, ns, key, src, nsrc, tag) : VKV_EINVAL;
}

/* See cold.h. */
int vkvs_cold_restore(vkvs_cold *t, const char *ns, const vkv_key *key, const struct iovec *dst,
                      int ndst, uint64_t tag)
{
    vkvs_cold_env *c = vkvs_cold_route_checked(t, ns, key);
    return c ? vkvs_cold_env_restore(c, ns, key, dst, ndst, tag) : VKV_EINVAL;
}

/* See cold.h. */
int vkvs_cold_delete(vkvs_cold *t, const char *ns, const vkv_key *key, uint64_t tag)
{
    vkvs_cold_env *c = vkvs_cold_route_checked(t, ns, key);
    return c ? vkvs_cold_env_delete(c, ns, key, tag) : VKV_EINVAL;
}

/* See cold.h. */
int vkvs_cold_lookup(vkvs_cold *t, const char *ns, const vkv_key *key, vkvs_cold_entry_info *info)
{
    vkvs_cold_env *c = vkvs_cold_route_checked(t, ns, key);
    return c ? vkvs_cold_env_lookup(c, ns, key, info) : VKV_EINVAL;
}

/* ---- calls over every shard ----------------------------------------------- */

/* The caller's foreach callback, and whether it stopped the walk: tells a
 * callback's nonzero value (returned at once) from a shard's error (the
 * other shards are still listed). */
typedef struct vkvs_cold_fe {
    vkvs_cold_foreach_cb cb;
    void *ctx;
    int stopped;
} vkvs_cold_fe;

/* Foreach callback handed to each shard: calls the caller's, notes a stop. */
static int vkvs_cold_fe_cb(void *arg, const vkvs_cold_entry_info *e)
{
    vkvs_cold_fe *f = arg;
    int rc = f->cb(f->ctx, e);
    f->stopped = rc != 0;
    return rc;
}

/* See cold.h. */
int vkvs_cold_foreach(vkvs_cold *t, vkvs_cold_foreach_cb cb, void *ctx)
{
    if (t == NULL || cb == NULL)
        return VKV_EINVAL;
    vkvs_cold_fe f = {cb, ctx, 0};
    int first = 0;
    for (int k = 0; k < t->n; k++) {
        int rc = vkvs_cold_env_foreach(t->env[k], vkvs_cold_fe_cb, &f);
        if (f.stopped)
            return rc;
        /* a failed or unreadable shard: the others are still listed */
        if (rc != 0 && first == 0)
            first = rc;
    }
    return first;
}

/* The whole tier's progress while verify walks shard `k`: the caller's
 * callback with the shards before k counted as done and those after it at
 * their entry and byte counts when verify began. */
typedef struct vkvs_cold_vprog {
    vkvs_cold_progress_cb cb;
    void *ctx;
    uint64_t done_e, done_b; /* shards before k, as verified */
    uint64_t rest_e, rest_b; /* shards after k, as counted at start */
    uint64_t last_e, last_b; /* shard k's totals as last reported */
    int stopped;             /* the caller's callback returned nonzero */
} vkvs_cold_vprog;

/* Progress callback handed to one shard's verify: adds the other shards. */
static int vkvs_cold_vprog_cb(void *arg, uint64_t de, uint64_t te, uint64_t db, uint64_t tb)
{
    vkvs_cold_vprog *p = arg;
    p->last_e = te;
    p->last_b = tb;
    int rc = p->cb(p->ctx, p->done_e + de, p->done_e + te + p->rest_e, p->done_b + db,
                   p->done_b + tb + p->rest_b);
    p->stopped = rc != 0;
    return rc;
}

/* See cold.h. The report sums the shards'. */
int vkvs_cold_verify(vkvs_cold *t, unsigned flags, vkvs_cold_progress_cb progress, void *ctx,
                     vkvs_cold_verify_report *report)
{
    if (report != NULL)
        memset(report, 0, sizeof *report);
    if (t == NULL)
        return VKV_EINVAL;
    vkvs_cold_vprog p = {.cb = progress, .ctx = ctx};
    int first = 0;
    vkvs_cold_stats s[VKVS_COLD_SHARDS_MAX];
    for (int k = 0; k < t->n; k++) {
        vkvs_cold_env_stats_get(t->env[k], &s[k]);
        if (k > 0) {
            p.rest_e += s[k].entries;
            p.rest_b += s[k].bytes;
        }
    }
    for (int k = 0; k < t->n; k++) {
        vkvs_cold_verify_report r;
        p.last_e = s[k].entries;
        p.last_b = s[k].bytes;
        int rc =
            vkvs_cold_env_verify(t->env[k], flags, progress ? vkvs_cold_vprog_cb : NULL, &p, &r);
        if (report != NULL) {
            report->entries += r.entries;
            report->bytes += r.bytes;
            report->corrupt += r.corrupt;
            report->dropped += r.dropped;
            report->vanished += r.vanished;
            report->read_errors += r.read_errors;
        }
        if (p.stopped || rc == VKV_ENOMEM)
            return rc;
        if (rc != 0 && first == 0) /* a shard that cannot be read: the others are checked */
            first = rc;
        p.done_e += p.last_e;
        p.done_b += p.last_b;
        if (k + 1 < t->n) {
            p.rest_e -= s[k + 1].entries;
            p.rest_b -= s[k + 1].bytes;
        }
    }
    return first;
}

/* Runs fn over every shard; returns the first error, having run it on all. */
static int vkvs_cold_each(vkvs_cold *t, int (*fn)(vkvs_cold_env *))
{
    if (t == NULL)
        return VKV_EINVAL;
    int rc = 0;
    for (int k = 0; k < t->n; k++) {
        int r = fn(t->env[k]);
        if (r != 0 && rc == 0)
            rc = r;
    }
    return rc;
}

/* See cold.h. */
int vkvs_cold_sync(vkvs_cold *t)
{
    return vkvs_cold_each(t, vkvs_cold_env_sync);
}

/* See cold.h. */
int vkvs_cold_flush_wait(vkvs_cold *t)
{
    return vkvs_cold_each(t, vkvs_cold_env_flush_wait);
}

/* See cold.h. Counters and gauges are the sums over the shards; failed is
 * 1 when any shard failed, last_error the newest of theirs. */
void vkvs_cold_stats_get(vkvs_cold *t, vkvs_cold_stats *out)
{
    memset(out, 0, sizeof *out);
    if (t == NULL)
        return;
    for (int k = 0; k < t->n; k++) {
        vkvs_cold_stats s;
        vkvs_cold_env_stats_get(t->env[k], &s);
#define VKVS_COLD_ADD(f) out->f += s.f
        VKVS_COLD_ADD(entries);
        VKVS_COLD_ADD(bytes);
        VKVS_COLD_ADD(max_bytes);
        VKVS_COLD_ADD(map_size);
        VKVS_COLD_ADD(map_cap);
        VKVS_COLD_ADD(map_used);
        VKVS_COLD_ADD(file_bytes);
        VKVS_COLD_ADD(spills);
        VKVS_COLD_ADD(spill_bytes);
        VKVS_COLD_ADD(spill_errors);
        VKVS_COLD_ADD(spill_txns);
        VKVS_COLD_ADD(restores);
        VKVS_COLD_ADD(restore_bytes);
        VKVS_COLD_ADD(restore_misses);
        VKVS_COLD_ADD(restore_errors);
        VKVS_COLD_ADD(evictions);
        VKVS_COLD_ADD(evicted_bytes);
        VKVS_COLD_ADD(deletes);
        VKVS_COLD_ADD(checksum_failures);
        VKVS_COLD_ADD(write_errors);
        VKVS_COLD_ADD(enospc);
        VKVS_COLD_ADD(eio);
        VKVS_COLD_ADD(map_full);
        VKVS_COLD_ADD(map_grows);
        VKVS_COLD_ADD(syncs);
        VKVS_COLD_ADD(stale_readers);
        VKVS_COLD_ADD(queue_ops);
        VKVS_COLD_ADD(queue_bytes);
        VKVS_COLD_ADD(restores_inflight);
#undef VKVS_COLD_ADD
        out->shards_failed += s.failed ? 1u : 0u;
        if (s.last_error_ms >= out->last_error_ms && s.last_error[0]) {
            out->last_error_ms = s.last_error_ms;
            memcpy(out->last_error, s.last_error, sizeof out->last_error);
        }
    }
    out->shards = (uint64_t)t->n;
    out->envs_quarantined = t->quarantined;
    out->failed = out->shards_failed > 0;
}
