/* bench/cold_bench.c - cold tier throughput beside its yardstick.
 *
 *   vkv_bench_cold [dir] [total_MiB]
 *
 * For blocks of 2.6 MB and 22 MB (total_MiB of each, default 512):
 *   spill   = spill_iov of every block + vkvs_cold_sync at the end
 *   write   = write(2) of the same bytes to one file in the same dir + fsync
 *             (also shown: the same with an fdatasync after every block,
 *             the sync pattern of one spill per commit without LMDB, and
 *             each spill's ratio to the faster of the two in its repetition)
 *   restore = vkvs_cold_restore of every block (2 reader threads, <= 4 in
 *             flight), page cache dropped first (posix_fadvise DONTNEED)
 *   read    = read(2) of the file, page cache dropped first
 * and prints MB/s and the ratios: spills in seven variants (one
 * environment: a window of 4 queued, or what vkvd's 64 MiB spill-queue
 * allows; group commit off, at its 16 MiB default, or at 64 MiB; then 4
 * and 2 shards, vkvd's default, at that window and group), each run REPS
 * times right after its yardstick, median and range. The restore round
 * reads the 2-shard tier. Then a churn run per piece
 * size (256 KiB, 1 MiB, 4 MiB): 3x the bound spilled in mixed sizes with evictions, and the file
 * size / map use relative to the stored bytes. */
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "cold/cold.h"
#include "common/log.h"

/* Drops the page cache of one file (clean pages only: call after fsync). */
static void drop_cache(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
}

/* Waits for `want` completions of op, returns how many had status 0. */
static int drain(vkvs_cold *c, int op, int want)
{
    int ok = 0, seen = 0;
    vkvs_cold_completion cp[64];
    while (seen < want) {
        struct pollfd p = {vkvs_cold_fd(c), POLLIN, 0};
        poll(&p, 1, 100);
        int room = want - seen < 64 ? want - seen : 64; /* never take more than wanted */
        int n = vkvs_cold_poll(c, cp, room);
        for (int i = 0; i < n; i++)
            if (cp[i].op == op) {
                seen++;
                ok += cp[i].status == 0;
            }
    }
    return ok;
}

static const char *const env_files[] = {"data.mdb", "lock.mdb", "vkv-cold.lock"};

/* Removes the env files, the shard directories and the yardstick file
 * under dir. */
static void clean(const char *dir)
{
    char p[4200];
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, env_files[i]);
        unlink(p);
    }
    for (int k = 0; k < VKVS_COLD_SHARDS_MAX; k++) {
        for (int i = 0; i < 3; i++) {
            snprintf(p, sizeof p, "%s/shard-%d/%s", dir, k, env_files[i]);
            unlink(p);
        }
        snprintf(p, sizeof p, "%s/shard-%d", dir, k);
        rmdir(p);
    }
    snprintf(p, sizeof p, "%s/shards", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/plain.bin", dir);
    unlink(p);
}

/* Drops the page cache of every environment's data file under dir. */
static void drop_env_caches(const char *dir)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/data.mdb", dir);
    drop_cache(p);
    for (int k = 0; k < VKVS_COLD_SHARDS_MAX; k++) {
        snprintf(p, sizeof p, "%s/shard-%d/data.mdb", dir, k);
        drop_cache(p);
    }
}

/* Seconds to write n blocks of bsize bytes (blk, its first byte varied)
 * to one fresh file in dir and fsync it: the yardstick; with per_block,
 * fdatasync after every block too (the sync pattern of one spill per
 * commit, without LMDB). Negative on error. */
static double yard_write(const char *dir, uint8_t *blk, size_t bsize, int n, int per_block)
{
    char fpath[4200];
    snprintf(fpath, sizeof fpath, "%s/plain.bin", dir);
    clean(dir);
    uint64_t t0 = vkv_now_ns();
    int fd = open(fpath, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    if (fd < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        blk[0] = (uint8_t)i;
        if (write(fd, blk, bsize) != (ssize_t)bsize) {
            close(fd);
            return -1;
        }
        if (per_block)
            fdatasync(fd);
    }
    fsync(fd);
    close(fd);
    return (double)(vkv_now_ns() - t0) / 1e9;
}

/* Opens a fresh cold tier of `shards` environments in dir for n blocks of
 * bsize bytes (each shard bounded with room for all of them), group
 * commit bounded at `group` bytes (0 = one spill per txn). NULL on error. */
static vkvs_cold *open_fresh(const char *dir, size_t bsize, int n, uint64_t group, int shards)
{
    clean(dir);
    vkvs_cold_config cfg;
    vkvs_cold_config_default(&cfg);
    cfg.dir = dir;
    cfg.max_bytes = ((uint64_t)bsize * n + (64u << 20)) * (uint64_t)shards;
    cfg.sync_interval_ms = 0;
    cfg.group_max_bytes = group;
    cfg.shards = shards;
    vkvs_cold *c = NULL;
    return vkvs_cold_open(&cfg, &c, NULL, 0) == 0 ? c : NULL;
}

/* Seconds to spill n blocks (spill_iov of blk) into c, keeping at most
 * `window` queued, then vkvs_cold_sync; *ok counts committed spills and
 * *per_txn receives spills per spill txn. */
static double spill_all(vkvs_cold *c, uint8_t *blk, size_t bsize, int n, int window, int *ok,
                        double *per_txn)
{
    uint64_t t0 = vkv_now_ns();
    *ok = 0;
    for (int i = 0; i < n; i++) {
        vkv_key k;
        memset(&k, 0, sizeof k);
        memcpy(k.b, &i, sizeof i);
        struct iovec iov = {blk, bsize};
        vkvs_cold_spill_iov(c, "bench", &k, &iov, 1, (uint64_t)i); /* blk is read-only here */
        if (i >= window - 1)
            *ok += drain(c, VKVS_COLD_OP_SPILL, 1);
    }
    *ok += drain(c, VKVS_COLD_OP_SPILL, n < window - 1 ? n : window - 1);
    vkvs_cold_sync(c);
    double s = (double)(vkv_now_ns() - t0) / 1e9;
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    *per_txn = st.spill_txns ? (double)st.spills / st.spill_txns : 0.0;
    return s;
}

/* Sorts v[0..n) (n small) ascending. */
static void sort_d(double *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
}

#define REPS  5
#define NVARS 7

/* Spill throughput for blocks of `bsize` bytes, `n` of them, REPS times:
 * each repetition writes the yardstick and then every variant (window of
 * queued spills x group commit off/on) right after it, so each ratio
 * compares runs seconds apart on this shared machine; prints the median
 * ratio with its range. Then one restore round. Returns 0 if every spill
 * and restore succeeded. */
static int run_size(const char *dir, size_t bsize, int n)
{
    uint8_t *blk = malloc(bsize);
    uint8_t *dst[4];
    if (blk == NULL)
        return 1;
    for (size_t i = 0; i < bsize; i++)
        blk[i] = (uint8_t)(i * 131 + (i >> 12));
    for (int i = 0; i < 4; i++)
        dst[i] = malloc(bsize);
    double mb = (double)bsize * n / 1e6;
    char fpath[4200];
    snprintf(fpath, sizeof fpath, "%s/plain.bin", dir);
    /* window 4: one spill at a time behind 3 queued (the earlier rounds'
     * bench); wd: what vkvd's default spill-queue (64 MiB) lets it queue */
    int wd = (int)((64u << 20) / bsize);
    wd = wd > 1 ? wd : 1;
    int window[NVARS] = {4, 4, wd, wd, wd, wd, wd};
    uint64_t group[NVARS] = {0,         16u << 20, 0,        16u << 20,
                             64u << 20, 16u << 20, 16u << 20}; /* 16 MiB: the default */
    int shards[NVARS] = {1, 1, 1, 1, 1, 4, 2}; /* 2: vkvd's default (last: restored from) */
    double ratio[NVARS][REPS], fast[NVARS][REPS], rate[NVARS][REPS], yrate[REPS], srate[REPS],
        per_txn[NVARS] = {0};
    int rc = 0;
    vkvs_cold *c = NULL;
    for (int r = 0; r < REPS; r++) {
        double w_s = yard_write(dir, blk, bsize, n, 0);
        double ws_s = yard_write(dir, blk, bsize, n, 1);
        if (w_s <= 0 || ws_s <= 0)
            return 1;
        yrate[r] = mb / w_s;
        srate[r] = mb / ws_s;
        for (int v = 0; v < NVARS; v++) {
            if (c)
                vkvs_cold_close(c);
            if (!(c = open_fresh(dir, bsize, n, group[v], shards[v])))
                return 1;
            int ok;
            double s_s = spill_all(c, blk, bsize, n, window[v], &ok, &per_txn[v]);
            rc |= ok != n;
            rate[v][r] = mb / s_s;
            ratio[v][r] = w_s / s_s;
            fast[v][r] = (w_s < ws_s ? w_s : ws_s) / s_s;
        }
    }
    /* the shards' own gain, free of the yardstick's swings: 2 shards (the
     * last variant) against 1 environment at the same window and group
     * (variant 3), per repetition */
    double gain[REPS];
    for (int r = 0; r < REPS; r++)
        gain[r] = rate[NVARS - 1][r] / rate[3][r];
    sort_d(yrate, REPS);
    sort_d(srate, REPS);
    printf("block %5.1f MB x %3d, %d repetitions: write+fsync median %.0f MB/s [%.0f-%.0f]; "
           "write+fdatasync per block %.0f MB/s [%.0f-%.0f]\n",
           bsize / 1e6, n, REPS, yrate[REPS / 2], yrate[0], yrate[REPS - 1], srate[REPS / 2],
           srate[0], srate[REPS - 1]);
    for (int v = 0; v < NVARS; v++) {
        sort_d(ratio[v], REPS);
        sort_d(fast[v], REPS);
        sort_d(rate[v], REPS);
        printf("  shards %d, window %2d, group %2d MiB (%4.1f spills/txn): spill median %4.0f "
               "MB/s, ratio to write+fsync median %.2fx [%.2f-%.2f], to the faster yardstick "
               "%.2fx [%.2f-%.2f]\n",
               shards[v], window[v], (int)(group[v] >> 20), per_txn[v], rate[v][REPS / 2],
               ratio[v][REPS / 2], ratio[v][0], ratio[v][REPS - 1], fast[v][REPS / 2], fast[v][0],
               fast[v][REPS - 1]);
    }

    sort_d(gain, REPS);
    printf("  2 shards / 1 environment (window %d, group 16 MiB), per repetition: median %.2fx "
           "[%.2f-%.2f]\n",
           wd, gain[REPS / 2], gain[0], gain[REPS - 1]);

    /* restore from the last env (written with the last variant) */
    int fd = open(fpath, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    for (int i = 0; fd >= 0 && i < n; i++)
        if (write(fd, blk, bsize) != (ssize_t)bsize)
            rc = 1;
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    drop_cache(fpath);
    fd = open(fpath, O_RDONLY);
    uint64_t t0 = vkv_now_ns();
    for (int i = 0; fd >= 0 && i < n; i++)
        if (read(fd, dst[0], bsize) != (ssize_t)bsize)
            rc = 1;
    double r_s = (double)(vkv_now_ns() - t0) / 1e9;
    if (fd >= 0)
        close(fd);

    drop_env_caches(dir);
    t0 = vkv_now_ns();
    int rok = 0, inflight = 0;
    for (int i = 0; i < n; i++) {
        vkv_key k;
        memset(&k, 0, sizeof k);
        memcpy(k.b, &i, sizeof i);
        struct iovec iov = {dst[i % 4], bsize};
        if (inflight == 4) {
            rok += drain(c, VKVS_COLD_OP_RESTORE, 1);
            inflight--;
        }
        vkvs_cold_restore(c, "bench", &k, &iov, 1, (uint64_t)i);
        inflight++;
    }
    rok += drain(c, VKVS_COLD_OP_RESTORE, inflight);
    double x_s = (double)(vkv_now_ns() - t0) / 1e9;
    vkvs_cold_close(c);
    clean(dir);
    printf("  restore %7.0f MB/s vs read %7.0f MB/s = %.2fx  (spills ok: %s, restores ok %d/%d)\n",
           mb / x_s, mb / r_s, r_s / x_s, rc ? "NO" : "all", rok, n);
    free(blk);
    for (int i = 0; i < 4; i++)
        free(dst[i]);
    return rc == 0 && rok == n ? 0 : 1;
}

/* Churn: spill 3x the bound in mixed sizes (evicting), report growth. */
static int run_churn(const char *dir, uint32_t piece, uint64_t bound)
{
    clean(dir);
    vkvs_cold_config cfg;
    vkvs_cold_config_default(&cfg);
    cfg.dir = dir;
    cfg.max_bytes = bound;
    cfg.piece_size = piece;
    cfg.sync_interval_ms = 0;
    vkvs_cold *c = NULL;
    if (vkvs_cold_open(&cfg, &c, NULL, 0) != 0)
        return 1;
    size_t maxb = 22u << 20;
    uint8_t *blk = malloc(maxb);
    memset(blk, 0x3c, maxb);
    uint64_t spilled = 0, seed = 7;
    int i = 0, fails = 0;
    while (spilled < 3 * bound) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t len = 100000 + (size_t)((seed >> 33) % (maxb - 100000));
        vkv_key k;
        memset(&k, 0, sizeof k);
        memcpy(k.b, &i, sizeof i);
        struct iovec iov = {blk, len};
        vkvs_cold_spill_iov(c, "churn", &k, &iov, 1, (uint64_t)i);
        fails += 1 - drain(c, VKVS_COLD_OP_SPILL, 1);
        spilled += len;
        i++;
    }
    vkvs_cold_sync(c);
    vkvs_cold_stats st;
    vkvs_cold_stats_get(c, &st);
    printf("churn piece %5u KiB: %d spills (%.0f MB), stored %.0f MB, file %.0f MB = %.2fx stored,"
           " map used %.2fx, map grows %" PRIu64 ", failed %d\n",
           piece >> 10, i, spilled / 1e6, st.bytes / 1e6, st.file_bytes / 1e6,
           (double)st.file_bytes / st.bytes, (double)st.map_used / st.bytes, st.map_grows, fails);
    vkvs_cold_close(c);
    clean(dir);
    free(blk);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    vkv_log_init("vkv_bench_cold", VKV_LOG_WARN);
    char tmpl[] = "/tmp/vkv-coldbench-XXXXXX";
    const char *dir = argc > 1 ? argv[1] : mkdtemp(tmpl);
    int total_mib = argc > 2 ? atoi(argv[2]) : 512;
    if (dir == NULL || total_mib <= 0)
        return 2;
    mkdir(dir, 0700);
    int rc = 0;
    rc |= run_size(dir, 2600000, (int)(((uint64_t)total_mib << 20) / 2600000));
    rc |= run_size(dir, 22000000, (int)(((uint64_t)total_mib << 20) / 22000000));
    uint32_t pieces[] = {256u << 10, 1u << 20, 4u << 20};
    for (int i = 0; i < 3; i++)
        rc |= run_churn(dir, pieces[i], 256ull << 20);
    if (argc <= 1)
        rmdir(dir);
    return rc;
}
