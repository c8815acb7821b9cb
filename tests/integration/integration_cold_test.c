/*
 * Cold tier through the real daemon: restart persistence, restore on fetch,
 * corruption on disk, a tiny cold bound, an unusable state directory, a
 * cold disk that fills up, and (label slow) kill -9 of the daemon during
 * heavy spilling, in a loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cold_util.h" /* cu_damage_env */
#include "client/client_internal.h"
#include "common/clock.h"
#include "harness.h"
#include "proto/proto.h"

/* About 10 KiB blocks, one 64 KiB page each. */
static vkv_shape small_shape(void)
{
    return vkvt_small_shape(4, 56);
}

/* Puts chunks [from, to) of `seed` (see vkvt_put_range). */
static int put_range(vkv_client *c, uint64_t seed, int from, int to)
{
    vkv_shape s = small_shape();
    return vkvt_put_range(c, &s, seed, from, to);
}

/* 1 served identical, 0 absent, negative: wrong or failed. */
static int check_one(vkv_client *c, uint64_t seed, int i)
{
    vkv_shape s = small_shape();
    return vkvt_check_one(c, &s, seed, i);
}

static const char *const g_flags[] = {
    "--capacity", "4M",   "--slab-size",    "1M", "--page-size", "64K", "--reap-interval-ms", "100",
    "--cold-max", "256M", "--cold-sync-ms", "50", NULL};

/* g_flags plus the settings extra[] (name, value, ..., NULL), in the
 * caller's out[32] (pointers to the callers' strings; nothing to free).
 * Returns out. */
static const char *const *flags_with(const char *const *extra, const char *out[32])
{
    int n = 0;
    for (; g_flags[n] != NULL && n < 31; n++)
        out[n] = g_flags[n];
    for (; *extra != NULL && n < 31; extra++)
        out[n++] = *extra;
    out[n] = NULL;
    return out;
}

/* Entries spilled at SIGTERM are indexed at the next start and restored
 * on FETCH, bit-identical. The restart asks for 4 cold shards: the tier
 * keeps the 2 it was created with, and every entry is found in its shard. */
static void entries_survive_a_restart_and_are_restored_on_fetch(void **state)
{
    (void)state;
    const char *buf[32];
    const char *const *four = flags_with((const char *const[]){"--cold-shards", "4", NULL}, buf);
    vkvt_daemon d;
    assert_int_equal(vkvt_prepare(&d), 0);
    assert_int_equal(vkvt_start(&d, g_flags), 0);
    vkv_client *c;
    assert_int_equal(vkvt_connect(&d, "persist", &c), 0);
    assert_int_equal(put_range(c, 100, 0, 10), 0);
    vkv_close(c);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0); /* spills the hot tier */
    assert_int_equal(vkvt_start(&d, four), 0);
    assert_int_equal(vkvt_connect(&d, "persist", &c), 0);
    assert_int_equal(vkvt_stat(c, "cold_shards"), 2); /* fixed at creation */
    vkv_key keys[10];
    for (int i = 0; i < 10; i++)
        keys[i] = vkvt_key(100, (uint32_t)i);
    size_t hits = 0, cold = 0;
    assert_int_equal(vkv_lookup(c, keys, 10, &hits, &cold), 0);
    assert_int_equal(hits, 10); /* known before any restore */
    assert_int_equal(cold, 10);
    vkv_fetch *f;
    assert_int_equal(vkv_fetch_begin(c, keys, 10, &f), 0);
    assert_int_equal(vkv_fetch_count(f), 10);
    vkv_shape s = small_shape();
    for (int i = 0; i < 10; i++) {
        size_t sz;
        void *ref = vkvt_encode_local(&s, vkv_client_codec(c), 100 + (uint64_t)i, &sz);
        vkv_view v = vkv_fetch_view(f, (size_t)i);
        assert_int_equal(v.size, sz);
        assert_int_equal(vkvt_bind_like(f, (size_t)i, ref, sz), 0);
        assert_memory_equal(v.data, ref, sz);
        free(ref);
    }
    assert_int_equal(vkv_fetch_release(c, f), 0);
    assert_true(vkvt_stat(c, "cold_restores") >= 10);
    /* One FETCH is counted once, though it ran again after the restores. */
    assert_int_equal(vkvt_stat(c, "cold_hits"), 10);
    assert_int_equal(vkvt_stat(c, "hits"), 0);
    assert_int_equal(vkvt_stat(c, "misses"), 0);
    assert_int_equal(vkvt_stat(c, "fetches"), 1);
    assert_int_equal(vkv_lookup(c, keys, 10, &hits, &cold), 0);
    assert_int_equal(cold, 0); /* hot again */
    assert_int_equal(vkv_fetch_begin(c, keys, 10, &f), 0);
    assert_int_equal(vkv_fetch_release(c, f), 0);
    assert_int_equal(vkvt_stat(c, "hits"), 10);
    vkv_key absent = vkvt_key(99999, 0);
    assert_int_equal(vkv_fetch_begin(c, &absent, 1, &f), 0);
    assert_int_equal(vkv_fetch_count(f), 0);
    assert_int_equal(vkv_fetch_release(c, f), 0);
    assert_int_equal(vkvt_stat(c, "misses"), 1);
    vkv_close(c);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    vkvt_cleanup(&d);
}

static void eviction_pressure_spills_and_nothing_is_lost(void **state)
{
    (void)state;
    vkvt_daemon d;
    assert_int_equal(vkvt_prepare(&d), 0);
    assert_int_equal(vkvt_start(&d, g_flags), 0);
    vkv_client *c;
    assert_int_equal(vkvt_connect(&d, "pressure", &c), 0);
    /* 4 MiB arena = 64 pages; 150 one-page entries force evictions. */
    assert_int_equal(put_range(c, 200, 0, 150), 0);
    assert_true(vkvt_stat(c, "spills") > 0);
    for (int i = 0; i < 150; i++)
        assert_int_equal(check_one(c, 200, i), 1);
    assert_int_equal(vkvt_stat(c, "cold_spill_lost"), 0);
    /* the writer read the victims in place (SPILLING), and the puts that
     * needed their pages waited for it instead of copying on the loop */
    assert_true(vkvt_stat(c, "spills_held") > 0);
    assert_true(vkvt_stat(c, "room_waits") > 0);
    assert_int_equal(vkvt_stat(c, "spills_reverted"), 0);
    vkv_close(c);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    vkvt_cleanup(&d);
}

/* One thread of a process as /proc reports it: its name, scheduling
 * policy (stat field 41), nice value (field 19) and, when the kernel
 * prints it, the fair-class slice in ns (-1 if not printed). */
struct thread_sched {
    char comm[32];
    int policy, nice;
    long long slice;
};

/* Reads /proc/PID/task/TID/{comm,stat,sched} into *t. Returns 0 or -1. */
static int read_thread_sched(pid_t pid, const char *tid, struct thread_sched *t)
{
    char path[320], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/task/%s/comm", (int)pid, tid);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(t->comm, sizeof t->comm, f)) {
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    t->comm[strcspn(t->comm, "\n")] = '\0';
    snprintf(path, sizeof path, "/proc/%d/task/%s/stat", (int)pid, tid);
    if (!(f = fopen(path, "r")) || !fgets(buf, sizeof buf, f)) {
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    /* fields after the ")" that closes comm: 3 (state) is the first */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    p += 2;
    long v[40];
    int n = 0;
    for (char *tok = strtok(p, " "); tok && n < 40; tok = strtok(NULL, " "))
        v[n++] = strtol(tok, NULL, 10);
    if (n < 39)
        return -1;
    t->nice = (int)v[19 - 3];
    t->policy = (int)v[41 - 3];
    t->slice = -1;
    snprintf(path, sizeof path, "/proc/%d/task/%s/sched", (int)pid, tid);
    if ((f = fopen(path, "r")) != NULL) {
        while (fgets(buf, sizeof buf, f))
            if (!strncmp(buf, "se.slice", 8) && strchr(buf, ':'))
                t->slice = strtoll(strchr(buf, ':') + 1, NULL, 10);
        fclose(f);
    }
    return 0;
}

/* Checks every thread of daemon `pid`: the cold writer and both readers
 * run under `policy` (with `nice` unless SCHED_IDLE) with the kernel's
 * default slice, and the event loop (the main thread) under SCHED_OTHER at
 * nice 0 with a slice of `slice_ns` (when the kernel prints slices; 0 =
 * the default, not checked). */
static void check_threads(pid_t pid, int policy, int nice, long long slice_ns)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int writers = 0, readers = 0, loops = 0;
    long long cold_slice = -1;
    struct dirent *e;
    char main_tid[16];
    snprintf(main_tid, sizeof main_tid, "%d", (int)pid);
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        struct thread_sched t;
        if (read_thread_sched(pid, e->d_name, &t) != 0)
            continue;
        /* vkvd's default tier has 2 shards: vkv-coldK-w, vkv-coldK-rN */
        size_t cl = strlen(t.comm);
        if (!strncmp(t.comm, "vkv-cold", 8)) {
            assert_int_equal(t.policy, policy);
            if (policy != 5) /* SCHED_IDLE has no nice level */
                assert_int_equal(t.nice, nice);
            if (t.slice >= 0)
                cold_slice = t.slice;
            writers += cl > 2 && !strcmp(t.comm + cl - 2, "-w");
            readers += strstr(t.comm, "-r") != NULL;
        } else if (!strcmp(e->d_name, main_tid)) {
            assert_int_equal(t.policy, 0);
            assert_int_equal(t.nice, 0);
            if (slice_ns && t.slice >= 0)
                assert_int_equal(t.slice, slice_ns);
            if (slice_ns && t.slice >= 0 && cold_slice >= 0)
                assert_int_not_equal(cold_slice, slice_ns); /* not inherited */
            loops++;
        }
    }
    closedir(d);
    assert_int_equal(writers, 2); /* one per shard */
    assert_int_equal(readers, 2); /* the 2 readers dealt over them */
    assert_int_equal(loops, 1);
}

/* cold-thread-policy / cold-thread-nice / serve-slice-us reach the real
 * daemon's threads, and the cold tier still spills and restores under
 * each policy (SCHED_IDLE threads run whenever a CPU is free). */
static void cold_threads_get_the_configured_scheduling(void **state)
{
    (void)state;
    static const char *const pol[] = {"idle", "batch", "normal"};
    static const int want[] = {5, 3, 0}; /* SCHED_IDLE, SCHED_BATCH, SCHED_OTHER */
    for (int i = 0; i < 3; i++) {
        const char *extra[] = {
            "--cold-thread-policy", pol[i], "--cold-thread-nice", "7", "--serve-slice-us",
            i == 1 ? "0" : "300",   NULL};
        const char *buf[32];
        const char *const *flags = flags_with(extra, buf);
        vkvt_daemon d;
        assert_int_equal(vkvt_prepare(&d), 0);
        assert_int_equal(vkvt_start(&d, flags), 0);
        check_threads(d.pid, want[i], 7, i == 1 ? 0 : 300000);
        vkv_client *c;
        assert_int_equal(vkvt_connect(&d, "sched", &c), 0);
        assert_int_equal(put_range(c, 300 + (uint64_t)i * 1000, 0, 100), 0); /* evictions */
        for (int k = 0; k < 100; k++)
            assert_int_equal(check_one(c, 300 + (uint64_t)i * 1000, k), 1); /* restores */
        assert_true(vkvt_stat(c, "cold_restores") > 0);
        vkv_close(c);
        assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
        vkvt_cleanup(&d);
    }
}

/* The data path across a lease expiry and a restart: a reader keeps a
 * block's view past its lease while a writer's puts push the rest of the
 * arena through in-place spills; the expired lease still keeps its block's
 * pages (never spilled or reused under the view), the view reads the same
 * bytes, and after a SIGTERM restart every block, the reader's included,
 * comes back from the cold tier bit-identical. */
static void expired_lease_and_restart_across_in_place_spills(void **state)
{
    (void)state;
    const char *buf[32];
    const char *const *flags =
        flags_with((const char *const[]){"--lease-ttl-ms", "300", NULL}, buf);
    vkvt_daemon d;
    assert_int_equal(vkvt_prepare(&d), 0);
    assert_int_equal(vkvt_start(&d, flags), 0);
    vkv_client *r, *w;
    assert_int_equal(vkvt_connect(&d, "lease-spill", &r), 0);
    assert_int_equal(vkvt_connect(&d, "lease-spill", &w), 0);
    assert_int_equal(put_range(w, 700, 0, 1), 0);
    vkv_key k0 = vkvt_key(700, 0);
    vkv_fetch *f;
    assert_int_equal(vkv_fetch_begin(r, &k0, 1, &f), 0);
    assert_int_equal(vkv_fetch_count(f), 1);
    vkvt_sleep_ms(700);
    assert_int_equal(vkv_fetch_renew(r, f), VKV_ELEASE); /* expired */
    /* 4 MiB arena = 64 pages: 150 more one-page blocks spill most of it */
    assert_int_equal(put_range(w, 700, 1, 150), 0);
    assert_true(vkvt_stat(w, "spills_held") > 0);
    vkv_shape s = small_shape();
    size_t sz;
    void *ref = vkvt_encode_local(&s, vkv_client_codec(r), 700, &sz);
    assert_int_equal(vkvt_bind_like(f, 0, ref, sz), 0);
    vkv_view v = vkv_fetch_view(f, 0);
    assert_int_equal(v.size, sz);
    assert_memory_equal(v.data, ref, sz);
    free(ref);
    assert_int_equal(vkv_fetch_release(r, f), VKV_ELEASE);
    vkv_close(r);
    vkv_close(w);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0); /* spills the hot tier */
    assert_int_equal(vkvt_start(&d, flags), 0);
    assert_int_equal(vkvt_connect(&d, "lease-spill", &r), 0);
    for (int i = 0; i < 150; i++)
        assert_int_equal(check_one(r, 700, i), 1);
    assert_int_equal(vkvt_stat(r, "cold_spill_lost"), 0);
    vkv_close(r);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    vkvt_cleanup(&d);
}

/* A block whose payload was changed after encoding (its header and
 * identity are valid, so COMMIT takes it) is served as written but never
 * made durable: the LMDB writer checks the payload checksum before it
 * writes. A good block spilled with it survives the restart. */
static void block_corrupted_in_memory_is_never_made_durable(void **state)
{
    (void)state;
    vkvt_daemon d;
    assert_int_equal(vkvt_prepare(&d), 0);
    assert_int_equal(vkvt_start(&d, g_flags), 0);
    vkv_client *c;
    assert_int_equal(vkvt_connect(&d, "scribble", &c), 0);
    assert_int_equal(put_range(c, 500, 0, 1), 0);
    vkv_shape s = small_shape();
    size_t sz;
    void *ref = vkvt_encode_local(&s, vkv_client_codec(c), 501, &sz);
    vkv_key bad = vkvt_key(500, 1);
    vkv_put *p;
    assert_int_equal(vkv_put_begin(c, &bad, sz, &p), 0);
    memcpy(vkv_put_data(p), ref, sz);
    ((uint8_t *)vkv_put_data(p))[sz - 7] ^= 0x20; /* a payload byte */
    assert_int_equal(vkv_put_commit(c, p), 0);
    free(ref);
    vkv_close(c);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0); /* spills both */
    assert_int_equal(vkvt_start(&d, g_flags), 0);
    assert_int_equal(vkvt_connect(&d, "scribble", &c), 0);
    assert_int_equal(check_one(c, 500, 0), 1);
    vkv_key keys[2] = {vkvt_key(500, 0), bad};
    size_t hits = 0, cold = 0;
    assert_int_equal(vkv_lookup(c, keys, 2, &hits, &cold), 0);
    assert_int_equal(hits, 1);
    vkv_close(c);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    vkvt_cleanup(&d);
}

/* Reads a whole file into a malloc'ed buffer. */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n);
    if (b && fread(b, 1, (size_t)n, fp) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(fp);
    *len = (size_t)n;
    return b;
}

static void corrupt_bytes_on_disk_are_detected_and_never_served(void **state)
{
    (void)state;
    vkvt_daemon d;
    assert_int_equal(vkvt_prepare(&d), 0);
    assert_int_equal(vkvt_start(&d, g_flags), 0);
    vkv_client *c;
    assert_int_equal(vkvt_connect(&d, "corrupt", &c), 0);
    assert_int_equal(put_range(c, 300, 0, 2), 0);
    vkv_shape s = small_shape();
    size_t sz;
    void *ref = vkvt_encode_local(&s, vkv_client_codec(c), 300, &sz);
    vkv_close(c);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);

    /* Find block 0's payload in its shard's data.mdb and flip one byte. */
    char path[400];
    size_t flen = 0, at = SIZE_MAX;
    uint8_t *file = NULL;
    const uint8_t *needle = (const uint8_t *)ref + sz / 2;
    size_t nlen = 64;
    for (int k = 0; k < 2 && at == SIZE_MAX; k++) {
        snprintf(path, sizeof path, "%s/cold/shard-%d/data.mdb", d.statedir, k);
        free(file);
        file = slurp(path, &flen);
        assert_non_null(file);
        for (size_t i = 0; i + nlen <= flen; i++)
            if (memcmp(file + i, needle, nlen) == 0) {
                at = i;
                break;
            }
    }
    assert_true(at != SIZE_MAX);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    uint8_t b = (uint8_t)(file[at + 7] ^ 0x40);
    assert_int_equal(pwrite(fd, &b, 1, (off_t)(at + 7)), 1);
    close(fd);
    free(file);

    assert_int_equal(vkvt_start(&d, g_flags), 0);
    assert_int_equal(vkvt_connect(&d, "corrupt", &c), 0);
    assert_int_equal(check_one(c, 300, 0), 0); /* dropped, not served */
    assert_int_equal(check_one(c, 300, 1), 1); /* its neighbour is fine */
    assert_true(vkvt_stat(c, "cold_checksum_failures") >= 1);
    vkv_key k0 = vkvt_key(300, 0);
    size_t hits = 9;
    assert_int_equal(vkv_lookup(c, &k0, 1, &hits, NULL), 0);
    assert_int_equal(hits, 0);
    vkv_close(c);
    free(ref);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    vkvt_cleanup(&d);
}

static void tiny_cold_bound_keeps_the_daemon_serving(void **state)
{
    (void)state;
    static const char *const flags[] = {
        "--capacity", "1M", "--slab-size", "1M", "--page-size", "64K", "--cold-max", "64K", NULL};
    vkvt_daemon d;
    assert_int_equal(vkvt_prepare(&d), 0);
    assert_int_equal(vkvt_start(&d, flags), 0);
    vkv_client *c;
    assert_int_equal(vkvt_connect(&d, "tiny", &c), 0);
    assert_int_equal(put_range(c, 400, 0, 60), 0); /* 16 pages hot, the rest spills */
    int served = 0;
    for (int i = 0; i < 60; i++) {
        int r = check_one(c, 400, i);
        assert_true(r >= 0); /* absent is fine, wrong never */
        served += r;
    }
    assert_true(served >= 10);
    assert_int_equal(vkv_ping(c), 0);
    vkv_close(c);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    vkvt_cleanup(&d);
}

static void unusable_state_dir_serves_hot_only(void **state)
{
    (void)state;
    vkvt_daemon d;
    assert_int_equal(vkvt_prepare(&d), 0);
    /* A regular file where the state directory should be. */
    FILE *fp = fopen(d.statedir, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(vkvt_start(&d, g_flags), 0);
    vkv_client *c;
    assert_int_equal(vkvt_connect(&d, "nocold", &c), 0);
    assert_int_equal(vkvt_stat(c, "cold_available"), 0);
    assert_int_equal(put_range(c, 500, 0, 80), 0);
    assert_int_equal(check_one(c, 500, 79), 1);
    vkv_close(c);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    vkvt_cleanup(&d);
}

/* A cold tier LMDB refuses to open (a damaged env) is moved aside, reported
 * and replaced by an empty one: the daemon keeps a working cold tier and
 * never serves the damaged entries. With one environment (--cold-shards 1)
 * the whole tier goes to cold.corrupt-<ms>; with vkvd's default 2 shards
 * only the damaged shard goes (cold/shard-0.corrupt-<ms>) and every entry
 * of the other shard is still served. */
static void damaged_env_is_moved_aside(void **state)
{
    (void)state;
    const char *buf[32];
    const char *const *one = flags_with((const char *const[]){"--cold-shards", "1", NULL}, buf);
    for (int sharded = 0; sharded < 2; sharded++) {
        const char *const *flags = sharded ? g_flags : one;
        vkvt_daemon d;
        assert_int_equal(vkvt_prepare(&d), 0);
        assert_int_equal(vkvt_start(&d, flags), 0);
        vkv_client *c;
        assert_int_equal(vkvt_connect(&d, "damaged", &c), 0);
        assert_int_equal(put_range(c, 600, 0, 16), 0);
        vkv_close(c);
        assert_int_equal(vkvt_stop(&d, SIGTERM), 0); /* spills to LMDB */
        char dir[400];
        snprintf(dir, sizeof dir, "%s/cold%s", d.statedir, sharded ? "/shard-0" : "");
        assert_int_equal(cu_damage_env(dir), 0);
        assert_int_equal(vkvt_start(&d, flags), 0);
        assert_int_equal(vkvt_connect(&d, "damaged", &c), 0);
        assert_int_equal(vkvt_stat(c, "cold_available"), 1);
        assert_int_equal(vkvt_stat(c, "cold_envs_quarantined"), 1);
        assert_int_equal(vkvt_stat(c, "cold_shards"), sharded ? 2 : 1);
        int served = 0;
        for (int i = 0; i < 16; i++) {
            int r = check_one(c, 600, i);
            assert_true(r == 0 || r == 1); /* absent, or the committed block */
            served += r;
        }
        fprintf(stderr, "  %s: %d of 16 entries still served\n", sharded ? "2 shards" : "1 env",
                served);
        if (sharded)
            assert_true(served > 0 && served < 16); /* shard 1's entries stay */
        else
            assert_int_equal(served, 0);
        assert_int_equal(put_range(c, 610, 0, 80), 0); /* the new tier spills */
        assert_true(vkvt_stat(c, "spills") > 0);
        assert_int_equal(check_one(c, 610, 0), 1);
        vkv_close(c);
        assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "ls -d %s/cold%s.corrupt-* >/dev/null 2>&1", d.statedir,
                 sharded ? "/shard-0" : "");
        assert_int_equal(system(cmd), 0);
        vkvt_cleanup(&d);
    }
}

/* Sends EVICT all (to cold or drop) or FLUSH through an admin session. */
static uint64_t admin_evict_all(const vkvt_daemon *d, vkvp_op op, int drop)
{
    vkv_options o = {0};
    o.rundir = d->rundir;
    o.admin = 1;
    vkv_client *a;
    if (vkv_connect(&o, &a) != 0)
        return UINT64_MAX;
    vkvp_request rq;
    vkvp_reply *rep;
    vkvp_request_init(&rq, op, 0);
    uint64_t n = UINT64_MAX;
    if (op == VKVP_FLUSH) {
        rq.u.flush.session = vkvc_session(a);
    } else {
        rq.u.evict.session = vkvc_session(a);
        rq.u.evict.all = true;
        rq.u.evict.to = drop ? VKVP_EVICT_DROP : VKVP_EVICT_COLD;
    }
    if (vkvc_call(a, &rq, &rep, NULL, 0) == 0) {
        n = op == VKVP_FLUSH ? rep->u.flush.count : rep->u.evict.count;
        vkvp_reply_free(rep);
    }
    vkv_close(a);
    return n;
}

/* The spill queue is bounded: a FLUSH of more than spill-queue bytes queues
 * at most that much at a time and the rest follows as the LMDB writer
 * drains; every entry reaches the cold tier and restores intact. The final
 * spill at SIGTERM goes in rounds too and loses nothing. */
static void bounded_spill_queue_flushes_in_rounds(void **state)
{
    (void)state;
    static const char *const flags[] = {
        "--capacity",         "4M",   "--slab-size", "1M",   "--page-size",    "64K",
        "--reap-interval-ms", "100",  "--cold-max",  "256M", "--cold-sync-ms", "50",
        "--spill-queue",      "128K", NULL};
    vkvt_daemon d;
    assert_int_equal(vkvt_prepare(&d), 0);
    assert_int_equal(vkvt_start(&d, flags), 0);
    vkv_client *c;
    assert_int_equal(vkvt_connect(&d, "rounds", &c), 0);
    assert_int_equal(put_range(c, 700, 0, 60), 0);
    uint64_t queued = admin_evict_all(&d, VKVP_FLUSH, 0);
    assert_true(queued > 0 && queued < 60); /* at most 128 KiB at a time */
    int done = 0;
    for (int i = 0; i < 200 && !done; i++) {
        vkvt_sleep_ms(50);
        done = vkvt_stat(c, "entries_ready") == 0 && vkvt_stat(c, "spill_queue_bytes") == 0;
    }
    assert_true(done);
    assert_true(vkvt_stat(c, "spill_queue_peak_bytes") <= 128u << 10);
    assert_true(vkvt_stat(c, "spills_deferred") > 0);
    assert_int_equal(vkvt_stat(c, "cold_spill_lost"), 0);
    vkv_key keys[60];
    for (int i = 0; i < 60; i++)
        keys[i] = vkvt_key(700, (uint32_t)i);
    size_t hits = 0, cold = 0;
    assert_int_equal(vkv_lookup(c, keys, 60, &hits, &cold), 0);
    assert_int_equal(hits, 60);
    assert_int_equal(cold, 60);
    for (int i = 0; i < 60; i += 6)
        assert_int_equal(check_one(c, 700, i), 1); /* restored intact */
    assert_int_equal(put_range(c, 800, 0, 30), 0);
    vkv_close(c);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    assert_int_equal(vkvt_start(&d, flags), 0);
    assert_int_equal(vkvt_connect(&d, "rounds", &c), 0);
    for (int i = 0; i < 30; i++)
        assert_int_equal(check_one(c, 800, i), 1);
    for (int i = 0; i < 60; i += 6) /* restored then evicted without a re-spill */
        assert_int_equal(check_one(c, 700, i), 1);
    vkv_close(c);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    vkvt_cleanup(&d);
}

/* The settings of the full-disk tests: a 4 MiB arena of 256 KiB slabs,
 * one cold shard, a 128 KiB spill queue, `lease` ms leases. */
#define FULL_DISK_FLAGS(lease)                                                                     \
    {                                                                                              \
        "--capacity", "4M", "--slab-size", "256K", "--page-size", "64K", "--cold-max", "256M",     \
            "--reap-interval-ms", "100", "--cold-sync-ms", "50", "--spill-queue", "128K",          \
            "--cold-shards", "1", "--lease-ttl-ms", lease, NULL                                    \
    }

/* Starts d with flags under a file-size limit of 320 KiB that only vkvd
 * keeps (it inherits it at fork; this process restores its own): 60 blocks
 * of ~10 KiB do not fit in 320 KiB of data.mdb, the 256 KiB slabs (memfds)
 * do. Returns vkvt_start's result. */
static int start_on_a_small_disk(vkvt_daemon *d, const char *const *flags)
{
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 320u << 10;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int started = vkvt_start(d, flags);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    return started;
}

/* Waits up to 5 s for the first pause of spilling (the disk filled up). */
static void wait_for_a_pause(vkv_client *c)
{
    int paused = 0;
    for (int i = 0; i < 100 && !paused; i++) {
        vkvt_sleep_ms(50);
        paused = vkvt_stat(c, "cold_spill_pauses") > 0;
    }
    assert_true(paused);
}

/* A cold disk that fills up (here a file-size limit vkvd inherits: its
 * LMDB writes fail with EFBIG) pauses spilling instead of offering the same
 * blocks to it again and again: the blocks stay hot and are served, the
 * failed writes stop growing, puts that need room go on (dropping LRU
 * victims), nothing committed is lost, and SIGTERM exits at once instead of
 * waiting for a writer that cannot write. */
static void full_cold_disk_pauses_spilling(void **state)
{
    (void)state;
    static const char *const flags[] = FULL_DISK_FLAGS("30000");
    vkvt_daemon d;
    assert_int_equal(vkvt_prepare(&d), 0);
    assert_int_equal(start_on_a_small_disk(&d, flags), 0);
    vkv_client *c;
    assert_int_equal(vkvt_connect(&d, "full", &c), 0);
    assert_int_equal(put_range(c, 900, 0, 60), 0);
    assert_true(admin_evict_all(&d, VKVP_FLUSH, 0) != UINT64_MAX);
    wait_for_a_pause(c); /* the disk did fill up */
    vkvt_sleep_ms(500);
    uint64_t r1 = vkvt_stat(c, "spills_reverted");
    vkvt_sleep_ms(1500);
    uint64_t r2 = vkvt_stat(c, "spills_reverted");
    /* retried after pauses of 100 ms doubling, a spill queue (2 blocks) at a
     * time: a handful in 1.5 s; offered in a loop: thousands */
    assert_true(r2 - r1 < 60);
    assert_int_equal(vkvt_stat(c, "cold_spill_lost"), 0);
    for (int i = 0; i < 60; i++) /* hot or cold, every block is served */
        assert_int_equal(check_one(c, 900, i), 1);
    /* puts that need room go on at once (no 10 s wait for a spill that
     * cannot happen): victims are dropped, as without a cold tier */
    assert_int_equal(put_range(c, 901, 0, 40), 0);
    assert_int_equal(check_one(c, 901, 39), 1);
    assert_true(vkvt_stat(c, "spills_dropped_busy") > 0);
    vkv_close(c);
    uint64_t t0 = vkv_now_ms();
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    assert_true(vkv_now_ms() - t0 < 20000); /* not the 60 s no-progress wait */
    vkvt_cleanup(&d);
}

/* The disk gets room again (the limit raised under the running daemon,
 * prlimit(2)) while a reader's lease on one of the blocks has expired (and
 * is quarantined: its pages stay pinned until the reader lets go): the
 * pause ends at the next spill that succeeds, the interrupted FLUSH resumes
 * on its own and moves every other block to cold, nothing is lost, the
 * quarantined block is spilled at SIGTERM once released, and after a
 * restart every block is restored bit-identical. */
static void full_cold_disk_recovers_across_lease_expiry_and_restart(void **state)
{
    (void)state;
    static const char *const flags[] = FULL_DISK_FLAGS("300");
    vkvt_daemon d;
    assert_int_equal(vkvt_prepare(&d), 0);
    assert_int_equal(start_on_a_small_disk(&d, flags), 0);
    vkv_client *w, *r;
    assert_int_equal(vkvt_connect(&d, "full", &w), 0);
    assert_int_equal(vkvt_connect(&d, "full", &r), 0);
    assert_int_equal(put_range(w, 910, 0, 60), 0);
    assert_true(admin_evict_all(&d, VKVP_FLUSH, 0) != UINT64_MAX);
    wait_for_a_pause(w);
    vkv_key k59 = vkvt_key(910, 59);
    vkv_fetch *f;
    assert_int_equal(vkv_fetch_begin(r, &k59, 1, &f), 0);
    assert_int_equal(vkv_fetch_count(f), 1);
    vkvt_sleep_ms(700);
    assert_int_equal(vkv_fetch_renew(r, f), VKV_ELEASE); /* expired, pin gone */
    struct rlimit room = {RLIM_INFINITY, RLIM_INFINITY};
    assert_int_equal(prlimit(d.pid, RLIMIT_FSIZE, &room, NULL), 0);
    int flushed = 0;
    for (int i = 0; i < 300 && !flushed; i++) { /* up to 30 s: pauses reach 10 s */
        vkvt_sleep_ms(100);
        flushed = vkvt_stat(w, "entries_cold") == 59 && vkvt_stat(w, "spill_queue_bytes") == 0 &&
                  vkvt_stat(w, "cold_spill_paused") == 0;
    }
    assert_true(flushed);
    assert_int_equal(vkvt_stat(w, "entries_ready"), 1); /* the quarantined one */
    assert_int_equal(vkvt_stat(w, "cold_spill_lost"), 0);
    assert_int_equal(vkv_fetch_release(r, f), VKV_ELEASE); /* ends the quarantine */
    vkv_close(r);
    vkv_close(w);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    assert_int_equal(vkvt_start(&d, flags), 0); /* no limit now */
    assert_int_equal(vkvt_connect(&d, "full", &r), 0);
    for (int i = 0; i < 60; i++)
        assert_int_equal(check_one(r, 910, i), 1);
    vkv_close(r);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    vkvt_cleanup(&d);
}

static void flush_moves_hot_entries_to_cold_and_evict_drop_forgets(void **state)
{
    (void)state;
    vkvt_daemon d;
    assert_int_equal(vkvt_prepare(&d), 0);
    assert_int_equal(vkvt_start(&d, g_flags), 0);
    vkv_client *c;
    assert_int_equal(vkvt_connect(&d, "flush", &c), 0);
    assert_int_equal(put_range(c, 600, 0, 8), 0);
    assert_int_equal(admin_evict_all(&d, VKVP_FLUSH, 0), 8);
    vkv_key keys[8];
    for (int i = 0; i < 8; i++)
        keys[i] = vkvt_key(600, (uint32_t)i);
    size_t hits = 0, cold = 0;
    assert_int_equal(vkv_lookup(c, keys, 8, &hits, &cold), 0);
    assert_int_equal(hits, 8);
    assert_int_equal(cold, 8);
    for (int i = 0; i < 8; i++)
        assert_int_equal(check_one(c, 600, i), 1); /* restored, identical */
    /* Evicting with --to drop removes the entries from both tiers (the
     * copies FLUSH wrote are deleted too); a new put stores the key again. */
    assert_int_equal(admin_evict_all(&d, VKVP_EVICT, 1), 8);
    assert_int_equal(vkv_lookup(c, keys, 8, &hits, &cold), 0);
    assert_int_equal(hits, 0);
    assert_int_equal(put_range(c, 600, 0, 1), 0);
    assert_int_equal(check_one(c, 600, 0), 1);
    vkv_close(c);
    assert_int_equal(vkvt_stop(&d, SIGTERM), 0);
    vkvt_cleanup(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(entries_survive_a_restart_and_are_restored_on_fetch),
        cmocka_unit_test(eviction_pressure_spills_and_nothing_is_lost),
        cmocka_unit_test(cold_threads_get_the_configured_scheduling),
        cmocka_unit_test(corrupt_bytes_on_disk_are_detected_and_never_served),
        cmocka_unit_test(block_corrupted_in_memory_is_never_made_durable),
        cmocka_unit_test(expired_lease_and_restart_across_in_place_spills),
        cmocka_unit_test(tiny_cold_bound_keeps_the_daemon_serving),
        cmocka_unit_test(unusable_state_dir_serves_hot_only),
        cmocka_unit_test(damaged_env_is_moved_aside),
        cmocka_unit_test(bounded_spill_queue_flushes_in_rounds),
        cmocka_unit_test(flush_moves_hot_entries_to_cold_and_evict_drop_forgets),
        cmocka_unit_test(full_cold_disk_pauses_spilling),
        cmocka_unit_test(full_cold_disk_recovers_across_lease_expiry_and_restart),
    };
    return cmocka_run_group_tests_name("cold", tests, NULL, NULL);
}
