/* bench/cold_bench.c - cold tier throughput beside its yardstick.
 *
 *   vkv_bench_cold [dir] [total_MiB]
 *
 * For blocks of 2.6 MB and 22 MB (total_MiB of each, default 512):
 *   spill   = spill_iov of every block + vkvs_cold_sync at the end
 *   write   = write(2) of the same bytes to one file in the same dir + fsync
 *   restore = vkvs_cold_restore of every block (2 reader threads, <= 4 in
 *             flight), page cache dropped first (posix_fadvise DONTNEED)
 *   read    = read(2) of the file, page cache dropped first
 * and prints MB/s and the ratios. Then a churn run per piece size (256 KiB,
 * 1 MiB, 4 MiB): 3x the bound spilled in mixed sizes with evictions, and
 * the file size / map use relative to the stored bytes. */
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

/* Removes the env files and the yardstick file under dir. */
static void clean(const char *dir)
{
    char p[4200];
    const char *names[] = {"data.mdb", "lock.mdb", "vkv-cold.lock", "plain.bin"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
}

/* One throughput round for blocks of `bsize` bytes, `n` of them, keeping
 * at most `window` spills queued (the daemon queues up to its spill-queue
 * bound, 64 MiB by default), with group commit bounded at `group` bytes
 * (0 = one spill per txn). */
static int run_size(const char *dir, size_t bsize, int n, int window, uint64_t group)
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
    char fpath[4200], dpath[4200];
    snprintf(fpath, sizeof fpath, "%s/plain.bin", dir);
    snprintf(dpath, sizeof dpath, "%s/data.mdb", dir);
    clean(dir);

    /* yardstick: sequential write + fsync */
    uint64_t t0 = vkv_now_ns();
    int fd = open(fpath, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    for (int i = 0; i < n; i++) {
        blk[0] = (uint8_t)i;
        if (write(fd, blk, bsize) != (ssize_t)bsize)
            return 1;
    }
    fsync(fd);
    close(fd);
    double w_s = (double)(vkv_now_ns() - t0) / 1e9;

    vkvs_cold_config cfg;
    vkvs_cold_config_default(&cfg);
    cfg.dir = dir;
    cfg.max_bytes = (uint64_t)bsize * n + (64u << 20);
    cfg.sync_interval_ms = 0;
    cfg.group_max_bytes = group;
    vkvs_cold *c = NULL;
    if (vkvs_cold_open(&cfg, &c, NULL, 0) != 0)
        return 1;
    t0 = vkv_now_ns();
    int ok = 0;
    for (int i = 0; i < n; i++) {
        vkv_key k;
        memset(&k, 0, sizeof k);
        memcpy(k.b, &i, sizeof i);
        struct iovec iov = {blk, bsize};
        vkvs_cold_spill_iov(c, "bench", &k, &iov, 1, (uint64_t)i); /* blk is read-only here */
        if (i >= window - 1)
            ok += drain(c, VKVS_COLD_OP_SPILL, 1);
    }
    ok += drain(c, VKVS_COLD_OP_SPILL, n < window - 1 ? n : window - 1);
    vkvs_cold_sync(c);
    double s_s = (double)(vkv_now_ns() - t0) / 1e9;
    vkvs_cold_stats sst;
    vkvs_cold_stats_get(c, &sst);

    drop_cache(fpath);
    fd = open(fpath, O_RDONLY);
    t0 = vkv_now_ns();
    for (int i = 0; i < n; i++)
        if (read(fd, dst[0], bsize) != (ssize_t)bsize)
            return 1;
    double r_s = (double)(vkv_now_ns() - t0) / 1e9;
    close(fd);

    drop_cache(dpath);
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

    printf("block %5.1f MB x %3d, window %2d, group %3d MiB: spill %7.0f MB/s vs write+fsync "
           "%7.0f MB/s = %.2fx (%.1f spills/txn) | restore %7.0f MB/s vs read %7.0f MB/s = %.2fx"
           "  (ok %d/%d, %d/%d)\n",
           bsize / 1e6, n, window, (int)(group >> 20), mb / s_s, mb / w_s, w_s / s_s,
           sst.spill_txns ? (double)sst.spills / sst.spill_txns : 0.0, mb / x_s, mb / r_s,
           r_s / x_s, ok, n, rok, n);
    free(blk);
    for (int i = 0; i < 4; i++)
        free(dst[i]);
    return ok == n && rok == n ? 0 : 1;
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
    /* window 4: one spill at a time behind 3 queued (the earlier rounds'
     * bench); 64 MiB: what vkvd's default spill-queue lets it queue; each
     * with group commit off (one txn per spill) and on (the default) */
    size_t sizes[] = {2600000, 22000000};
    for (int s = 0; s < 2; s++) {
        int n = (int)(((uint64_t)total_mib << 20) / sizes[s]);
        int w64 = (int)((64u << 20) / sizes[s]);
        rc |= run_size(dir, sizes[s], n, 4, 0);
        rc |= run_size(dir, sizes[s], n, 4, 64u << 20);
        rc |= run_size(dir, sizes[s], n, w64 > 1 ? w64 : 1, 0);
        rc |= run_size(dir, sizes[s], n, w64 > 1 ? w64 : 1, 64u << 20);
    }
    uint32_t pieces[] = {256u << 10, 1u << 20, 4u << 20};
    for (int i = 0; i < 3; i++)
        rc |= run_churn(dir, pieces[i], 256ull << 20);
    if (argc <= 1)
        rmdir(dir);
    return rc;
}
