/*
 * bench/service_util.h - the yardsticks the service benchmarks share
 * (service_bench.c, lookup_bench.c): a monotonic clock, percentiles, a bare
 * nanomsg REQ/REP echo of a frame on ipc://, and redis-server on loopback
 * with a GET timing loop. Header-only (static functions).
 */
#ifndef VKV_BENCH_SERVICE_UTIL_H
#define VKV_BENCH_SERVICE_UTIL_H

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

/* Monotonic microseconds. */
static inline double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

/* qsort comparator for doubles. */
static inline int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v[0..n) and returns the q-quantile. */
static inline double pct(double *v, size_t n, double q)
{
    qsort(v, n, sizeof *v, cmp_d);
    return v[(size_t)(q * (double)(n - 1) + 0.5)];
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

/* Times `iters` REQ/REP echoes of frame[0..flen) (after 1000 unmeasured
 * ones) over ipc://dir/echo.sock into lat[0..iters). */
static inline void svc_time_echo(const char *dir, const void *frame, size_t flen, int iters,
                                 double *lat)
{
    char url[600];
    snprintf(url, sizeof url, "ipc://%s/echo.sock", dir);
    int es = nn_socket(AF_SP, NN_REP), to = 200;
    nn_setsockopt(es, NN_SOL_SOCKET, NN_RCVTIMEO, &to, sizeof to);
    nn_bind(es, url);
    pthread_t th;
    svc_echo_stop = 0;
    pthread_create(&th, NULL, svc_echo_main, &es);
    int ec = nn_socket(AF_SP, NN_REQ);
    nn_connect(ec, url);
    for (int i = 0; i < 1000 + iters; i++) {
        double t0 = now_us();
        nn_send(ec, frame, flen, 0);
        void *buf = NULL;
        nn_recv(ec, &buf, NN_MSG, 0);
        nn_freemsg(buf);
        if (i >= 1000)
            lat[i - 1000] = now_us() - t0;
    }
    svc_echo_stop = 1;
    nn_close(ec);
    pthread_join(th, NULL);
    nn_close(es);
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

/* The yardsticks of a one-key LOOKUP, `iters` calls each, in one go: a
 * nanomsg echo of that LOOKUP's frame (over dir) and a redis-server GET of a
 * 16-byte value on 127.0.0.1:port. Fills their p50/p99 (redis: 0 when not
 * installed) using lat[0..iters) as scratch; *r and *pid as
 * svc_redis_start, for the caller's later use and svc_redis_stop. */
static inline void svc_yardsticks(const char *dir, const vkv_key *key, int iters, double *lat,
                                  int port, double ec[2], double rd[2], redisContext **r,
                                  pid_t *pid)
{
    vkvp_request rq;
    vkvp_request_init(&rq, VKVP_LOOKUP, 0x1234567890ull);
    rq.u.lookup.session = 42;
    rq.u.lookup.keys = key;
    rq.u.lookup.nkeys = 1;
    void *frame;
    size_t flen;
    vkvp_encode_request(&rq, &frame, &flen);
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

#endif
