/*
 * tests/daemon/fault/client_fault_test.c - misbehaving clients against a real
 * vkvd (forked processes, real SIGKILL):
 *  1. half a request, then death: children connect to the nanomsg socket,
 *     send a partial handshake / partial frame header / a frame header whose
 *     body never fully arrives, and SIGKILL themselves. The daemon keeps
 *     serving and its fd count returns to the baseline.
 *  2. a client that never reads: sends thousands of complete PING requests
 *     on one connection without reading a reply. While it is connected, a
 *     well-behaved client's PINGs, LOOKUPs and a put + fetch succeed; after
 *     it closes, the fds return to the baseline.
 * Exit 0 on success, 1 with a message.
 */
#include <signal.h>
#include <sys/wait.h>

#include "../common.h"

static const char *const g_flags[] = {
    "--capacity",         "16M", "--slab-size", "8M", "--page-size", "64K",
    "--reap-interval-ms", "100", "--cold-max",  "0",  NULL};

/* A well-behaved client: ping, lookup, put one small raw block and fetch it
 * back bit-identical. Returns 0 or a step number. */
static int good_client(const vkvt_daemon *d, uint32_t idx)
{
    vkv_client *c = NULL;
    if (vkvt_connect(d, "fault-good", &c) != 0)
        return 1;
    int rc = 0;
    vkv_key k = vkvt_key(77, idx);
    size_t hits = 0;
    vkv_shape s;
    memset(&s, 0, sizeof s);
    s.layers = 1;
    s.kv_heads = 1;
    s.head_dim = 16;
    s.tokens = 16;
    s.dtype = VKV_DTYPE_F16;
    size_t sz = 0;
    void *blk = vkvt_encode_local(&s, vkv_client_codec(c), idx, &sz);
    vkv_put *p = NULL;
    vkv_fetch *f = NULL;
    if (vkv_ping(c) != 0)
        rc = 2;
    else if (vkv_lookup(c, &k, 1, &hits, NULL) != 0)
        rc = 3;
    else if (!blk || vkv_put_begin(c, &k, sz, &p) != 0)
        rc = 4;
    else {
        memcpy(vkv_put_data(p), blk, sz);
        if (vkv_put_commit(c, p) != 0)
            rc = 5;
        else if (vkv_fetch_begin(c, &k, 1, &f) != 0 || vkv_fetch_count(f) != 1)
            rc = 6;
        else {
            vkv_view v = vkv_fetch_view(f, 0);
            if (vkvt_bind_like(f, 0, blk, sz) != 0 || v.size != sz || memcmp(v.data, blk, sz) != 0)
                rc = 7;
            if (vkv_fetch_release(c, f) != 0 && !rc)
                rc = 8;
        }
    }
    free(blk);
    vkv_close(c);
    return rc;
}

/* Child: connect, send the first `n` bytes of a handshake + a message whose
 * header claims 4096 body bytes, then die by SIGKILL. */
static void half_request_child(const char *sock, size_t n)
{
    uint8_t buf[8 + 9 + 100];
    memcpy(buf, vkvh_sp_req_hdr, 8);
    buf[8] = 1;
    memset(buf + 9, 0, 8);
    buf[8 + 7] = 0x10; /* length 4096 (big-endian, bytes 1..8 of the header) */
    for (size_t i = 17; i < sizeof buf; i++)
        buf[i] = (uint8_t)(0x90 + i);
    int s = vkvh_unix_connect(sock);
    if (s < 0)
        _exit(3);
    if (n > sizeof buf)
        n = sizeof buf;
    if (vkvh_write_all(s, buf, n) != 0)
        _exit(4);
    vkvt_sleep_ms(20);
    raise(SIGKILL);
    _exit(5);
}

/* Forks half_request_child and reaps it; returns 0 when it died by SIGKILL. */
static int run_half_request(const char *sock, size_t n)
{
    pid_t p = fork();
    if (p < 0)
        return -1;
    if (p == 0)
        half_request_child(sock, n);
    int st = 0;
    if (waitpid(p, &st, 0) != p)
        return -1;
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL ? 0 : -1;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    vkvt_daemon d;
    CHECK(vkvt_prepare(&d) == 0, "prepare");
    CHECK(vkvt_start(&d, g_flags) == 0, "start vkvd (log %s)", d.logpath);
    char sock[400];
    snprintf(sock, sizeof sock, "%s/vkvd.sock", d.rundir);
    CHECK(good_client(&d, 0) == 0, "baseline client");
    int base = vkvh_fd_count(d.pid);
    CHECK(base > 0, "fd count");

    /* 1. half requests: cut inside the handshake, inside the frame header,
     * inside the body. */
    static const size_t cuts[] = {0, 3, 8, 12, 17, 60, 117};
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
            CHECK(run_half_request(sock, cuts[i]) == 0, "child cut %zu", cuts[i]);
    CHECK(kill(d.pid, 0) == 0, "daemon died after half requests (log %s)", d.logpath);
    CHECK(good_client(&d, 1) == 0, "client after half requests");
    int n = vkvh_wait_fds(d.pid, base, 5000);
    printf("half requests: 21 killed clients; daemon fds %d (baseline %d)\n", n, base);
    CHECK(n <= base, "fds leaked: %d > %d", n, base);

    /* 2. a client that never reads. */
    int s = vkvh_unix_connect(sock);
    CHECK(s >= 0, "connect: %s", strerror(errno));
    CHECK(vkvh_write_all(s, vkvh_sp_req_hdr, 8) == 0, "handshake");
    int fl = fcntl(s, F_GETFL);
    CHECK(fl >= 0 && fcntl(s, F_SETFL, fl | O_NONBLOCK) == 0, "nonblock");
    uint8_t msg[256];
    size_t sent = 0, bytes = 0;
    for (uint32_t i = 1; i <= 20000; i++) {
        size_t len = vkvh_ping_msg(i, msg, sizeof msg);
        CHECK(len > 0, "encode");
        size_t off = 0;
        int spins = 0;
        while (off < len) {
            ssize_t w = write(s, msg + off, len - off);
            if (w > 0) {
                off += (size_t)w;
                continue;
            }
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && spins++ < 100) {
                vkvt_sleep_ms(5); /* the daemon drains at its own pace */
                continue;
            }
            break;
        }
        if (off < len)
            break; /* the daemon stopped reading us: fine, it must stay up */
        sent++;
        bytes += len;
    }
    printf("non-reader: %zu requests (%zu bytes) sent, no reply read\n", sent, bytes);
    CHECK(sent > 100, "daemon accepted too few requests (%zu)", sent);
    for (uint32_t i = 2; i < 12; i++)
        CHECK(good_client(&d, i) == 0, "good client %u while a client does not read", i);
    close(s);
    CHECK(good_client(&d, 12) == 0, "client after the non-reader closed");
    n = vkvh_wait_fds(d.pid, base, 5000);
    printf("non-reader closed: daemon fds %d (baseline %d)\n", n, base);
    CHECK(n <= base, "fds leaked: %d > %d", n, base);
    CHECK(vkvt_stop(&d, SIGTERM) == 0, "clean SIGTERM exit (log %s)", d.logpath);
    vkvt_cleanup(&d);
    printf("ok\n");
    return 0;
}
