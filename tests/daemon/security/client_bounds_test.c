/*
 * libvkv against a hostile (fake) daemon: every offset and length a reply
 * carries is checked against the slabs before the client touches memory.
 * The fake serves HELLO and a real memfd slab over the fd channel, then
 * answers FETCH and ALLOC with extents that are out of bounds in one way
 * each; the client must refuse them (VKV_EPROTO) and never crash.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto/proto.h"
#include "vkv/vkv.h"

#define PAGE       (64u << 10)
#define SLAB_PAGES 16u

/* What the fake answers to FETCH / ALLOC. */
struct scenario {
    uint64_t slab, first, npages, len;
};

static struct {
    char dir[64];
    char fds_path[100];
    int memfd;
    int nn;
    int lfd;
    volatile int stop;
    struct scenario sc;
    const char *hello_fd_path; /* what HELLO names (default fds_path) */
    int send_fd;               /* the fd the channel passes (default memfd) */
} g;

/* fd channel: one slab, fd attached, for every connection. */
static void *fd_thread(void *arg)
{
    (void)arg;
    while (!g.stop) {
        int c = accept(g.lfd, NULL, NULL);
        if (c < 0)
            continue;
        uint8_t sid[8];
        if (recv(c, sid, 8, MSG_WAITALL) == 8) {
            uint8_t payload[16] = {0};
            uint64_t size = (uint64_t)PAGE * SLAB_PAGES;
            for (int i = 0; i < 8; i++)
                payload[8 + i] = (uint8_t)(size >> (8 * i));
            struct iovec iov = {payload, sizeof payload};
            union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr a;
            } u;
            memset(&u, 0, sizeof u);
            struct msghdr m = {0};
            m.msg_iov = &iov;
            m.msg_iovlen = 1;
            m.msg_control = u.buf;
            m.msg_controllen = sizeof u.buf;
            struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(cm), &g.send_fd, sizeof(int));
            if (sendmsg(c, &m, MSG_NOSIGNAL) < 0)
                perror("sendmsg");
        }
        close(c);
    }
    return NULL;
}

/* Request loop of the fake daemon. */
static void *rep_thread(void *arg)
{
    (void)arg;
    while (!g.stop) {
        void *buf = NULL;
        int n = nn_recv(g.nn, &buf, NN_MSG, 0);
        if (n < 0)
            continue;
        vkvp_request *rq = NULL;
        char why[160];
        if (vkvp_decode_request(buf, (size_t)n, &rq, why, sizeof why) != 0) {
            nn_freemsg(buf);
            continue;
        }
        nn_freemsg(buf);
        vkvp_reply rep;
        vkvp_reply_init(&rep, rq->op, rq->req_id, 7);
        vkvp_slab slab = {0, (uint64_t)PAGE * SLAB_PAGES, {0}, 0};
        vkvp_extent ext = {g.sc.slab, g.sc.first, g.sc.npages};
        vkvp_block blk = {g.sc.len, &ext, 1};
        switch (rq->op) {
        case VKVP_HELLO:
            rep.u.hello.session = 1;
            rep.u.hello.epoch = 7;
            rep.u.hello.backend = VKVP_BACKEND_HOST;
            rep.u.hello.lease_ttl_ms = 1000;
            rep.u.hello.page_size = PAGE;
            rep.u.hello.fd_path = vkvp_cstr(g.hello_fd_path ? g.hello_fd_path : g.fds_path);
            rep.u.hello.slabs = &slab;
            rep.u.hello.nslabs = 1;
            break;
        case VKVP_FETCH:
            rep.u.fetch.lease = 5;
            rep.u.fetch.blocks = &blk;
            rep.u.fetch.nblocks = 1;
            break;
        case VKVP_ALLOC:
            rep.u.alloc.lease = 6;
            rep.u.alloc.block = blk;
            break;
        default:
            break;
        }
        void *frame;
        size_t len;
        if (vkvp_encode_reply(&rep, &frame, &len) == 0) {
            nn_send(g.nn, frame, len, 0);
            free(frame);
        }
        vkvp_request_free(rq);
    }
    return NULL;
}

static pthread_t g_t1, g_t2;

static int setup(void **state)
{
    (void)state;
    snprintf(g.dir, sizeof g.dir, "/tmp/vkv-fake-XXXXXX");
    if (!mkdtemp(g.dir))
        return -1;
    snprintf(g.fds_path, sizeof g.fds_path, "%s/vkvd.fds", g.dir);
    g.memfd = memfd_create("fake-slab", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (g.memfd < 0 || ftruncate(g.memfd, (off_t)PAGE * SLAB_PAGES) != 0 ||
        fcntl(g.memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) /* as vkvd does */
        return -1;
    g.send_fd = g.memfd;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", g.fds_path);
    g.lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(g.lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(g.lfd, 8) != 0)
        return -1;
    char url[300];
    snprintf(url, sizeof url, "ipc://%s/vkvd.sock", g.dir);
    g.nn = nn_socket(AF_SP, NN_REP);
    int to = 200;
    nn_setsockopt(g.nn, NN_SOL_SOCKET, NN_RCVTIMEO, &to, sizeof to);
    if (nn_bind(g.nn, url) < 0)
        return -1;
    pthread_create(&g_t1, NULL, fd_thread, NULL);
    pthread_create(&g_t2, NULL, rep_thread, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    g.stop = 1;
    shutdown(g.lfd, SHUT_RDWR);
    close(g.lfd);
    pthread_join(g_t1, NULL);
    pthread_join(g_t2, NULL);
    nn_close(g.nn);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g.dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Connects, runs FETCH and ALLOC under scenario `sc`, returns both codes. */
static void try_scenario(struct scenario sc, int *fetch_rc, int *alloc_rc)
{
    g.sc = sc;
    vkv_options o = {0};
    o.rundir = g.dir;
    o.ns = "fake";
    o.timeout_ms = 2000;
    vkv_client *c;
    assert_int_equal(vkv_connect(&o, &c), 0);
    vkv_key k;
    memset(&k, 7, sizeof k);
    vkv_fetch *f = NULL;
    *fetch_rc = vkv_fetch_begin(c, &k, 1, &f);
    if (*fetch_rc == 0)
        vkv_fetch_release(c, f);
    vkv_put *p = NULL;
    *alloc_rc = vkv_put_begin(c, &k, 4096, &p);
    if (*alloc_rc == 0)
        vkv_put_abort(c, p);
    vkv_close(c);
}

static void an_in_bounds_block_is_accepted(void **state)
{
    (void)state;
    int f, a;
    try_scenario((struct scenario){0, 2, 1, 4096}, &f, &a);
    assert_int_equal(f, 0);
    assert_int_equal(a, 0);
}

static void unknown_slab_is_refused(void **state)
{
    (void)state;
    int f, a;
    try_scenario((struct scenario){3, 0, 1, 4096}, &f, &a);
    assert_int_equal(f, VKV_EPROTO);
    assert_int_equal(a, VKV_EPROTO);
}

static void pages_past_the_slab_end_are_refused(void **state)
{
    (void)state;
    int f, a;
    try_scenario((struct scenario){0, SLAB_PAGES - 1, 2, 4096}, &f, &a);
    assert_int_equal(f, VKV_EPROTO);
    assert_int_equal(a, VKV_EPROTO);
}

static void length_beyond_the_extents_is_refused(void **state)
{
    (void)state;
    int f, a;
    try_scenario((struct scenario){0, 0, 1, (uint64_t)PAGE + 1}, &f, &a);
    assert_int_equal(f, VKV_EPROTO);
    assert_int_equal(a, VKV_EPROTO);
}

static void overflowing_page_numbers_are_refused(void **state)
{
    (void)state;
    int f, a;
    /* first_page * page_size wraps around 2^64 to a small number. */
    try_scenario((struct scenario){0, (1ull << 48), 1, 4096}, &f, &a);
    assert_int_equal(f, VKV_EPROTO);
    assert_int_equal(a, VKV_EPROTO);
}

/* Connects to the fake with the current HELLO settings; vkv_connect's code. */
static int try_connect(void)
{
    vkv_options o = {0};
    o.rundir = g.dir;
    o.ns = "fake";
    o.timeout_ms = 2000;
    vkv_client *c;
    int rc = vkv_connect(&o, &c);
    if (rc == 0)
        vkv_close(c);
    return rc;
}

/* A daemon that names an fd channel outside the runtime dir is refused. */
static void fd_path_outside_the_rundir_is_refused(void **state)
{
    (void)state;
    const char *bad[] = {"/tmp/vkvd.fds", "/tmp/vkv-fake-elsewhere/vkvd.fds"};
    char sub_path[200];
    snprintf(sub_path, sizeof sub_path, "%s/sub/vkvd.fds", g.dir);
    for (int i = 0; i < 3; i++) {
        g.hello_fd_path = i < 2 ? bad[i] : sub_path;
        assert_int_equal(try_connect(), VKV_EPROTO);
    }
    g.hello_fd_path = NULL;
    assert_int_equal(try_connect(), 0);
}

/* A slab fd that could shrink under the mapping (no seals), or of another
 * size than announced, is refused. */
static void unsealed_or_wrong_size_slab_is_refused(void **state)
{
    (void)state;
    int loose = memfd_create("loose", MFD_CLOEXEC);
    assert_true(loose >= 0);
    assert_int_equal(ftruncate(loose, (off_t)PAGE * SLAB_PAGES), 0);
    g.send_fd = loose;
    assert_int_equal(try_connect(), VKV_EPROTO);
    int small = memfd_create("small", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_int_equal(ftruncate(small, (off_t)PAGE), 0);
    assert_int_equal(fcntl(small, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    g.send_fd = small;
    assert_int_equal(try_connect(), VKV_EPROTO);
    g.send_fd = g.memfd;
    close(loose);
    close(small);
    assert_int_equal(try_connect(), 0);
}

/* An fd channel served by a process of another uid is refused, even inside
 * our own runtime dir (root only: the test needs setuid). */
static void fd_channel_of_another_uid_is_refused(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        print_message("not root: cannot run a peer of another uid; skipped\n");
        skip();
    }
    char path[100];
    snprintf(path, sizeof path, "%s/other.fds", g.dir);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(chmod(path, 0666), 0);
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t p = fork();
    if (p == 0) {
        /* SO_PEERCRED reports the credentials in force at listen() */
        if (setgid(65534) != 0 || setuid(65534) != 0 || listen(ls, 4) != 0)
            _exit(1);
        if (write(ready[1], "x", 1) != 1)
            _exit(1);
        for (;;) {
            int c = accept(ls, NULL, NULL);
            if (c >= 0)
                close(c);
        }
    }
    char x;
    assert_int_equal(read(ready[0], &x, 1), 1);
    g.hello_fd_path = path;
    assert_int_equal(try_connect(), VKV_EPERM);
    g.hello_fd_path = NULL;
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
    close(ls);
    close(ready[0]);
    close(ready[1]);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(an_in_bounds_block_is_accepted),
        cmocka_unit_test(unknown_slab_is_refused),
        cmocka_unit_test(pages_past_the_slab_end_are_refused),
        cmocka_unit_test(length_beyond_the_extents_is_refused),
        cmocka_unit_test(overflowing_page_numbers_are_refused),
        cmocka_unit_test(fd_path_outside_the_rundir_is_refused),
        cmocka_unit_test(unsealed_or_wrong_size_slab_is_refused),
        cmocka_unit_test(fd_channel_of_another_uid_is_refused),
    };
    return cmocka_run_group_tests_name("client_bounds", tests, setup, teardown);
}
