/*
 * bench/service_util.h - helpers shared by the benchmarks that run real vkvd
 * processes (service_bench.c, remote_bench.c, lookup_bench.c): clocks and
 * quantiles, starting and stopping a daemon (VKVD_PATH), fp16 test chunks
 * and keys, and the yardsticks: a bare nanomsg REQ/REP echo of a frame on
 * ipc:// and redis-server on loopback with a GET timing loop. Header-only
 * (static functions).
 */
#ifndef VKV_BENCH_SERVICE_UTIL_H
#define VKV_BENCH_SERVICE_UTIL_H

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "proto/proto.h"
#include "vkv/vkv.h"

/* Monotonic microseconds. */
static inline double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

/* qsort order of doubles. */
static inline int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v[0..n) and returns the q-quantile. */
static inline double pct(double *v, size_t n, double q)
{
    qsort(v, n, sizeof *v, cmp_d);
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i];
}

/* Starts vkvd with the given extra flags on dir/<tag>-run and dir/<tag>-state
 * (log level warn) and waits until it answers; returns its pid (exits the
 * benchmark if it does not start). */
static inline pid_t start_vkvd(const char *dir, const char *tag, const char *const *extra,
                               char *rundir, size_t cap)
{
    snprintf(rundir, cap, "%s/%s-run", dir, tag);
    char state[400];
    snprintf(state, sizeof state, "%s/%s-state", dir, tag);
    const char *argv[40];
    int n = 0;
    argv[n++] = VKVD_PATH;
    argv[n++] = "--rundir";
    argv[n++] = rundir;
    argv[n++] = "--state-dir";
    argv[n++] = state;
    argv[n++] = "--log-level";
    argv[n++] = "warn";
    for (int i = 0; extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t p = fork();
    if (p == 0) {
        execv(VKVD_PATH, (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        vkv_options o = {0};
        o.rundir = rundir;
        o.admin = 1;
        vkv_client *c;
        if (vkv_connect(&o, &c) == 0) {
            vkv_close(c);
            return p;
        }
        usleep(10000);
    }
    fprintf(stderr, "vkvd did not start\n");
    exit(1);
}

/* SIGTERM and wait. */
static inline void stop(pid_t p)
{
    if (p > 0) {
        kill(p, SIGTERM);
        waitpid(p, NULL, 0);
    }
}

/* Fills fp16 K/V of one chunk with structured random values. */
static inline void fill(uint16_t **k, uint16_t **v, uint32_t layers, size_t per_layer,
                        uint64_t seed)
{
    for (uint32_t l = 0; l < layers; l++) {
        uint64_t s = seed ^ l;
        for (size_t i = 0; i < per_layer; i += 4) {
            uint64_t r = bench_rand(&s);
            for (int j = 0; j < 4 && i + (size_t)j < per_layer; j++) {
                uint16_t m = (uint16_t)(r >> (16 * j)) & 0x03ff;
                k[l][i + (size_t)j] = (uint16_t)(((i + (size_t)j) % 7 ? 0x3800 : 0x4000) | m);
                v[l][i + (size_t)j] = (uint16_t)(((r >> (16 * j + 10)) & 1 ? 0xb400 : 0x3400) | m);
            }
        }
    }
}

/* A 32-byte key derived from (a, b). */
static inline vkv_key key_of(uint64_t a, uint32_t b)
{
    vkv_key k;
    uint64_t s = a * 31 + b;
    for (int i = 0; i < 4; i++) {
        uint64_t x = bench_rand(&s);
        memcpy(k.b + 8 * i, &x, 8);
    }
    return k;
}

static volatile int svc_echo_stop;

/* The echo server thread: sends every message back. */
static inline void *svc_echo_main(void *arg)
{
    int s = *(int *)arg;
    while (!svc_echo_stop) {
        void *buf = NULL;
        int n = nn_recv(s, &buf, NN_MSG, 0);
        if (n >= 0)
            nn_send(s, &buf, NN_MSG, 0);
    }
    return NULL;
}

/* A nanomsg REQ/REP echo over ipc://dir/echo.sock: the REP socket with
 * its echo thread, and the REQ socket the caller times. */
typedef struct svc_echo {
    int es, ec;
    pthread_t th;
} svc_echo;

/* Binds the echo server, starts its thread and connects the client. */
static inline void svc_echo_open(const char *dir, svc_echo *e)
{
    char url[600];
    snprintf(url, sizeof url, "ipc://%s/echo.sock", dir);
    e->es = nn_socket(AF_SP, NN_REP);
    int to = 200;
    nn_setsockopt(e->es, NN_SOL_SOCKET, NN_RCVTIMEO, &to, sizeof to);
    nn_bind(e->es, url);
    svc_echo_stop = 0;
    pthread_create(&e->th, NULL, svc_echo_main, &e->es);
    e->ec = nn_socket(AF_SP, NN_REQ);
    nn_connect(e->ec, url);
}

/* One echo of frame[0..flen); returns its round-trip time in us. */
static inline double svc_echo_once(svc_echo *e, const void *frame, size_t flen)
{
    double t0 = now_us();
    nn_send(e->ec, frame, flen, 0);
    void *buf = NULL;
    if (nn_recv(e->ec, &buf, NN_MSG, 0) >= 0)
        nn_freemsg(buf);
    return now_us() - t0;
}

/* Stops the echo thread and closes both sockets. */
static inline void svc_echo_close(svc_echo *e)
{
    svc_echo_stop = 1;
    nn_close(e->ec);
    pthread_join(e->th, NULL);
    nn_close(e->es);
}

/* Times `iters` REQ/REP echoes of frame[0..flen) (after 1000 unmeasured
 * ones) over ipc://dir/echo.sock into lat[0..iters). */
static inline void svc_time_echo(const char *dir, const void *frame, size_t flen, int iters,
                                 double *lat)
{
    svc_echo e;
    svc_echo_open(dir, &e);
    for (int i = 0; i < 1000 + iters; i++) {
        double t = svc_echo_once(&e, frame, flen);
        if (i >= 1000)
            lat[i - 1000] = t;
    }
    svc_echo_close(&e);
}

/* Starts /usr/bin/redis-server on 127.0.0.1:port (no persistence) and
 * connects to it. Returns the connection (NULL when redis is not installed
 * or did not start) and its pid in *pid (-1 if none). */
static inline redisContext *svc_redis_start(int port, pid_t *pid)
{
    *pid = -1;
    if (access("/usr/bin/redis-server", X_OK) != 0)
        return NULL;
    if ((*pid = fork()) == 0) {
        char ps[16];
        snprintf(ps, sizeof ps, "%d", port);
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        execl("/usr/bin/redis-server", "redis-server", "--port", ps, "--bind", "127.0.0.1",
              "--save", "", "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    redisContext *r = NULL;
    for (int i = 0; i < 200 && !r; i++) {
        usleep(20000);
        redisContext *t = redisConnect("127.0.0.1", port);
        if (t && !t->err)
            r = t;
        else if (t)
            redisFree(t);
    }
    return r;
}

/* Closes the connection and stops the server (either may be absent). */
static inline void svc_redis_stop(redisContext *r, pid_t pid)
{
    if (r)
        redisFree(r);
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
}

/* SETs a 16-byte value under `key` and times `iters` GETs of it (after 1000
 * unmeasured ones) into lat[0..iters). */
static inline void svc_time_redis_get(redisContext *r, const char *key, int iters, double *lat)
{
    redisReply *rr = redisCommand(r, "SET %s %b", key, "0123456789abcdef", (size_t)16);
    freeReplyObject(rr);
    for (int i = 0; i < 1000 + iters; i++) {
        double t0 = now_us();
        rr = redisCommand(r, "GET %s", key);
        freeReplyObject(rr);
        if (i >= 1000)
            lat[i - 1000] = now_us() - t0;
    }
}

/* Encodes the frame of a one-key LOOKUP request (the echo yardstick's
 * payload) into *frame (malloc'ed; the caller frees it) and *flen. */
static inline void svc_lookup_frame(const vkv_key *key, void **frame, size_t *flen)
{
    vkvp_request rq;
    vkvp_request_init(&rq, VKVP_LOOKUP, 0x1234567890ull);
    rq.u.lookup.session = 42;
    rq.u.lookup.keys = key;
    rq.u.lookup.nkeys = 1;
    vkvp_encode_request(&rq, frame, flen);
}

/* The yardsticks of a one-key LOOKUP, `iters` calls each, in one go: a
 * nanomsg echo of that LOOKUP's frame (over dir) and a redis-server GET of a
 * 16-byte value on 127.0.0.1:port. Fills their p50/p99 (redis: 0 when not
 * installed) using lat[0..iters) as scratch; *r and *pid as
 * svc_redis_start, for the caller's later use and svc_redis_stop. */
static inline void svc_yardsticks(const char *dir, const vkv_key *key, int iters, double *lat,
                                  int port, double ec[2], double rd[2], redisContext **r,
                                  pid_t *pid)
{
    void *frame;
    size_t flen;
    svc_lookup_frame(key, &frame, &flen);
    svc_time_echo(dir, frame, flen, iters, lat);
    ec[0] = pct(lat, (size_t)iters, 0.5);
    ec[1] = pct(lat, (size_t)iters, 0.99);
    free(frame);
    rd[0] = rd[1] = 0;
    if ((*r = svc_redis_start(port, pid)) != NULL) {
        svc_time_redis_get(*r, "key:000000000001", iters, lat);
        rd[0] = pct(lat, (size_t)iters, 0.5);
        rd[1] = pct(lat, (size_t)iters, 0.99);
    }
}

#endif /* VKV_BENCH_SERVICE_UTIL_H */
