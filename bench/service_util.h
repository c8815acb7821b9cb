/*
 * bench/service_util.h - helpers shared by the benchmarks that run real vkvd
 * processes (service_bench.c, remote_bench.c): clocks and quantiles, starting
 * and stopping a daemon (VKVD_PATH), fp16 test chunks and keys. Header-only
 * (static functions).
 */
#ifndef VKV_BENCH_SERVICE_UTIL_H
#define VKV_BENCH_SERVICE_UTIL_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
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

#endif /* VKV_BENCH_SERVICE_UTIL_H */
