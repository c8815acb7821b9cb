/*
 * tests/daemon/common.h - small helpers shared by the hardening tests
 * (fault/, soak/, security/): assertions that print and exit, raw access to
 * the daemon's nanomsg socket, /proc readings of the daemon process.
 * Header-only (static functions); each test program includes it once.
 */
#ifndef VKV_TESTS_DAEMON_COMMON_H
#define VKV_TESTS_DAEMON_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "harness.h"
#include "proto/proto.h"

/* Fails the test program (exit 1) with a message when `c` is false. */
#define CHECK(c, ...)                                                                              \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #c);                           \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Number of open fds of process `pid` (/proc/PID/fd), -1 on error. */
static inline int vkvh_fd_count(pid_t pid)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(p);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* VmRSS of process `pid` in KiB, -1 on error. */
static inline long vkvh_rss_kb(pid_t pid)
{
    return vkvt_proc_kb(pid, "VmRSS");
}

/* Connects a raw AF_UNIX stream socket to `path`; returns the fd or -1. */
static inline int vkvh_unix_connect(const char *path)
{
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        int e = errno;
        close(s);
        errno = e;
        return -1;
    }
    return s;
}

/* The nanomsg ipc transport handshake of a REQ socket ("\0SP\0", protocol
 * 48 = NN_REQ, big-endian, two reserved bytes). */
static const unsigned char vkvh_sp_req_hdr[8] = {0, 'S', 'P', 0, 0, 48, 0, 0};

/* Builds one complete nanomsg ipc message carrying a REQ request: type byte
 * 1, 8-byte big-endian length, 4-byte request id (top bit set), then the
 * encoded vkv PING request. Writes at most cap bytes to buf; returns the
 * length or 0 on error. */
static inline size_t vkvh_ping_msg(uint32_t reqid, uint8_t *buf, size_t cap)
{
    vkvp_request r;
    vkvp_request_init(&r, VKVP_PING, reqid);
    void *frame = NULL;
    size_t flen = 0;
    if (vkvp_encode_request(&r, &frame, &flen) != 0)
        return 0;
    size_t body = 4 + flen, total = 9 + body;
    if (total > cap) {
        free(frame);
        return 0;
    }
    buf[0] = 1;
    for (int i = 0; i < 8; i++)
        buf[1 + i] = (uint8_t)((uint64_t)body >> (56 - 8 * i));
    uint32_t id = reqid | 0x80000000u;
    buf[9] = (uint8_t)(id >> 24);
    buf[10] = (uint8_t)(id >> 16);
    buf[11] = (uint8_t)(id >> 8);
    buf[12] = (uint8_t)id;
    memcpy(buf + 13, frame, flen);
    free(frame);
    return total;
}

/* Writes all n bytes (blocking socket). Returns 0 or -1. */
static inline int vkvh_write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Waits (polling every 20 ms, up to `ms`) until the daemon's fd count is
 * <= want; returns the last count. Not a timing assertion: the wait only
 * bounds how long we give the daemon to notice closed connections. */
static inline int vkvh_wait_fds(pid_t pid, int want, int ms)
{
    int n = vkvh_fd_count(pid);
    for (int t = 0; t < ms && n > want; t += 20) {
        vkvt_sleep_ms(20);
        n = vkvh_fd_count(pid);
    }
    return n;
}

#endif
