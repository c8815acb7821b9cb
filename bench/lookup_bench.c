/*
 * bench/lookup_bench.c - LOOKUP from the lookup index segment (shared
 * memory, docs/PROTOCOL.md 8a) beside its yardsticks, in one run:
 *   1. latency p50/p99 of one LOOKUP (1 key, a hit): shared memory, the
 *      round trip (VKV_LOOKUP_SHM=0), a bare nanomsg REQ/REP echo of the
 *      same frame on ipc://, and a redis-server GET on loopback (hiredis);
 *   2. lookups per second from 1, 2 and 8 client processes at once (shared
 *      memory, round trip) beside `redis-benchmark -c 1/2/8 -t get`.
 * Per-call latencies are taken with clock_gettime around each call; the
 * timer's own cost (printed) is included in every row.
 *
 * usage: vkv_bench_lookup [iters (default 200000)]
 * Starts its own vkvd and redis-server (when installed) in a temp dir.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto/proto.h"
#include "service_util.h"
#include "vkv/vkv.h"

static char g_dir[256];

/* A key of the benchmark (index i). */
static vkv_key bench_key(uint32_t i)
{
    vkv_key k;
    memset(&k, 0x5a, sizeof k);
    memcpy(k.b, &i, sizeof i);
    return k;
}

/* Connects a client of the benchmark namespace, shared-memory path on/off. */
static vkv_client *connect_mode(const char *rundir, int shm)
{
    setenv("VKV_LOOKUP_SHM", shm ? "1" : "0", 1);
    vkv_options o = {0};
    o.rundir = rundir;
    o.ns = "bench|lookup|tp0|f16";
    o.timeout_ms = 60000;
    vkv_client *c = NULL;
    if (vkv_connect(&o, &c) != 0) {
        fprintf(stderr, "cannot connect to vkvd at %s\n", rundir);
        exit(1);
    }
    return c;
}

/* Per-call latency of `iters` single-key lookups (after a warm-up) into lat. */
static void time_lookups(vkv_client *c, int iters, double *lat)
{
    vkv_key k = bench_key(1);
    size_t hits = 0;
    for (int i = 0; i < 2000; i++)
        vkv_lookup(c, &k, 1, &hits, NULL);
    for (int i = 0; i < iters; i++) {
        double t0 = now_us();
        vkv_lookup(c, &k, 1, &hits, NULL);
        lat[i] = now_us() - t0;
        if (hits != 1) {
            fprintf(stderr, "lookup missed\n");
            exit(1);
        }
    }
}

/* Worker process (this program run with --worker): connects, signals ready,
 * waits for the go byte, does `n` lookups, writes how many hit. */
static int worker(const char *rundir, int shm, long n, int go_fd, int done_fd)
{
    vkv_client *c = connect_mode(rundir, shm);
    vkv_key k = bench_key(1);
    size_t hits;
    for (int i = 0; i < 1000; i++)
        vkv_lookup(c, &k, 1, &hits, NULL);
    char b = 'r';
    if (write(done_fd, &b, 1) != 1 || read(go_fd, &b, 1) != 1)
        return 1;
    long ok = 0;
    for (long i = 0; i < n; i++)
        if (vkv_lookup(c, &k, 1, &hits, NULL) == 0 && hits == 1)
            ok++;
    if (write(done_fd, &ok, sizeof ok) != (ssize_t)sizeof ok)
        return 1;
    vkv_close(c);
    return 0;
}

/* Runs `procs` worker processes doing `n` lookups each; lookups per second
 * from the go signal until the last one finished. */
static double run_procs(const char *self, const char *rundir, int shm, int procs, long n)
{
    int go[2], done[2];
    if (pipe(go) != 0 || pipe(done) != 0)
        exit(1);
    pid_t kids[8];
    for (int i = 0; i < procs; i++) {
        char ns[32], gs[16], ds[16];
        snprintf(ns, sizeof ns, "%ld", n);
        snprintf(gs, sizeof gs, "%d", go[0]);
        snprintf(ds, sizeof ds, "%d", done[1]);
        if ((kids[i] = fork()) == 0) {
            execl(self, self, "--worker", rundir, shm ? "1" : "0", ns, gs, ds, (char *)NULL);
            _exit(127);
        }
    }
    char b;
    for (int i = 0; i < procs; i++)
        if (read(done[0], &b, 1) != 1)
            exit(1);
    double t0 = now_us();
    for (int i = 0; i < procs; i++)
        if (write(go[1], "g", 1) != 1)
            exit(1);
    long total = 0;
    for (int i = 0; i < procs; i++) {
        long ok;
        if (read(done[0], &ok, sizeof ok) != (ssize_t)sizeof ok)
            exit(1);
        total += ok;
    }
    double t1 = now_us();
    for (int i = 0; i < procs; i++)
        waitpid(kids[i], NULL, 0);
    close(go[0]);
    close(go[1]);
    close(done[0]);
    close(done[1]);
    if (total != (long)procs * n) {
        fprintf(stderr, "workers missed %ld lookups\n", (long)procs * n - total);
        exit(1);
    }
    return (double)total / ((t1 - t0) * 1e-6);
}

/* `redis-benchmark -c clients -n n -t get` against port: its GET rate. */
static double redis_benchmark(int port, int clients, long n)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "redis-benchmark -h 127.0.0.1 -p %d -c %d -n %ld -t get --csv 2>/dev/null", port,
             clients, n);
    FILE *p = popen(cmd, "r");
    if (!p)
        return 0;
    char line[512];
    double rps = 0;
    while (fgets(line, sizeof line, p))
        if (strncmp(line, "\"GET\",\"", 7) == 0)
            rps = atof(line + 7);
    pclose(p);
    return rps;
}

int main(int argc, char **argv)
{
    if (argc == 7 && strcmp(argv[1], "--worker") == 0)
        return worker(argv[2], atoi(argv[3]), atol(argv[4]), atoi(argv[5]), atoi(argv[6]));
    int iters = argc > 1 ? atoi(argv[1]) : 200000;
    if (iters < 1000)
        iters = 1000;
    char self[512];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0)
        return 1;
    self[sl] = '\0';
    snprintf(g_dir, sizeof g_dir, "/tmp/vkv-lbench-XXXXXX");
    if (!mkdtemp(g_dir))
        return 1;
    signal(SIGPIPE, SIG_IGN);

    /* vkvd, hot only, with 256 small entries in the index */
    char rundir[400], state[400];
    snprintf(rundir, sizeof rundir, "%s/run", g_dir);
    snprintf(state, sizeof state, "%s/state", g_dir);
    pid_t vk = fork();
    if (vk == 0) {
        execl(VKVD_PATH, VKVD_PATH, "--rundir", rundir, "--state-dir", state, "--log-level", "warn",
              "--capacity", "64M", "--slab-size", "64M", "--page-size", "64K", "--cold-max", "0",
              (char *)NULL);
        _exit(127);
    }
    vkv_client *c = NULL;
    for (int i = 0; i < 500 && !c; i++) {
        usleep(10000);
        setenv("VKV_LOOKUP_SHM", "1", 1);
        vkv_options o = {0};
        o.rundir = rundir;
        o.ns = "bench|lookup|tp0|f16";
        if (vkv_connect(&o, &c) != 0)
            c = NULL;
    }
    if (!c) {
        fprintf(stderr, "vkvd did not start\n");
        return 1;
    }
    vkv_close(c);
    c = connect_mode(rundir, 1);
    vkv_shape s;
    memset(&s, 0, sizeof s);
    s.layers = 1;
    s.kv_heads = 1;
    s.head_dim = 64;
    s.tokens = 16;
    s.dtype = VKV_DTYPE_F16;
    s.n_ranges = 1;
    s.ranges[0].len = 16;
    uint16_t kb[16 * 64], vb[16 * 64];
    for (int i = 0; i < 16 * 64; i++) {
        kb[i] = (uint16_t)(0x3800 | (i * 37 % 1024));
        vb[i] = (uint16_t)(0xb400 | (i * 53 % 1024));
    }
    const void *kp[1] = {kb}, *vp[1] = {vb};
    vkv_kv_src src = {kp, vp, 64, 64};
    for (uint32_t i = 0; i < 256; i++) {
        vkv_key k = bench_key(i);
        int stored = 0;
        if (vkv_put_chunk(c, &k, &s, &src, &stored) != 0) {
            fprintf(stderr, "put_chunk failed\n");
            return 1;
        }
    }

    /* ---- 1. latency ---- */
    double *lat = malloc(sizeof(double) * (size_t)iters);
    for (int i = 0; i < iters; i++) {
        double t0 = now_us();
        lat[i] = now_us() - t0;
    }
    double tm50 = pct(lat, (size_t)iters, 0.5);
    time_lookups(c, iters, lat);
    double sh50 = pct(lat, (size_t)iters, 0.5), sh99 = pct(lat, (size_t)iters, 0.99);
    vkv_client *rt = connect_mode(rundir, 0);
    int rt_iters = iters < 20000 ? iters : 20000;
    time_lookups(rt, rt_iters, lat);
    double rt50 = pct(lat, (size_t)rt_iters, 0.5), rt99 = pct(lat, (size_t)rt_iters, 0.99);

    vkv_key k1 = bench_key(1);
    /* yardsticks: nanomsg echo of the same frame, redis-server GET */
    redisContext *r;
    pid_t rp;
    double ec[2], rd[2];
    int port = 20000 + (int)(getpid() % 20000);
    svc_yardsticks(g_dir, &k1, rt_iters, lat, port, ec, rd, &r, &rp);
    double ec50 = ec[0], ec99 = ec[1], rd50 = rd[0], rd99 = rd[1];
    printf("== LOOKUP latency (1 key, a hit; %d shm / %d round-trip calls; timer %.3f us "
           "included)\n",
           iters, rt_iters, tm50);
    printf("%-40s %10s %10s\n", "", "p50 us", "p99 us");
    printf("%-40s %10.3f %10.3f\n", "vkv LOOKUP, shared-memory index", sh50, sh99);
    printf("%-40s %10.3f %10.3f\n", "vkv LOOKUP, round trip (SHM=0)", rt50, rt99);
    printf("%-40s %10.3f %10.3f\n", "nanomsg REQ/REP echo (ipc)", ec50, ec99);
    if (r)
        printf("%-40s %10.3f %10.3f\n", "redis-server GET (tcp loopback)", rd50, rd99);
    printf("ratio round trip / echo: p50 %.2fx, p99 %.2fx (goal <= 1.3x)\n", rt50 / ec50,
           rt99 / ec99);
    if (r)
        printf("ratio shm / redis GET:   p50 %.4fx, p99 %.4fx (goal p50 <= 0.05x, p99 <= 0.2x)\n",
               sh50 / rd50, sh99 / rd99);

    /* ---- 2. throughput from several processes ---- */
    printf("\n== lookups per second, N client processes at once (1 key, a hit)\n");
    printf("%-6s %16s %16s %22s %12s\n", "procs", "vkv shm", "vkv round trip",
           "redis-benchmark GET", "shm/redis");
    static const int np[3] = {1, 2, 8};
    for (int i = 0; i < 3; i++) {
        double sh = run_procs(self, rundir, 1, np[i], 4000000 / np[i]);
        double rtt = run_procs(self, rundir, 0, np[i], 40000 / np[i]);
        double rb = r ? redis_benchmark(port, np[i], 200000) : 0;
        printf("%-6d %16.0f %16.0f %22.0f %11.1fx\n", np[i], sh, rtt, rb, rb > 0 ? sh / rb : 0);
    }
    printf("(redis-benchmark: one process, -c N connections, no pipelining)\n");

    svc_redis_stop(r, rp);
    vkv_close(rt);
    vkv_close(c);
    kill(vk, SIGTERM);
    waitpid(vk, NULL, 0);
    free(lat);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    return 0;
}
