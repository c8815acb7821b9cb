/* The SCM_RIGHTS side channel for memfd slabs; see fdchan.h. */
#include "daemon/fdchan.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "proto/fdrec.h"
#include "common/log.h"
#include "vkv/error.h"

struct vkvd_fdchan {
    int lfd; /* listening socket */
    int stop_pipe[2];
    pthread_t thr;
    pthread_mutex_t mu; /* protects the slab table */
    uint32_t n;
    uint32_t *ids;
    uint64_t *sizes;
    int *fds;
    int idx_fd; /* lookup index segment (-1: none), for clients that ask */
    uint64_t idx_size;
    long allow_gid;
    vkvd_session_check_fn check;
    void *arg;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    atomic_uint_fast64_t served, refused;
    atomic_int active; /* connections being served by their own thread */
};

/* At most this many peers are served at once; a stalled peer holds one slot
 * for at most the 1 s socket timeouts. Beyond it, connections are refused. */
#define FDCHAN_MAX_ACTIVE 64

/* Sends one record [id, size] (fdrec.h) with fd attached: a slab, or the
 * lookup index under VKVD_FDCHAN_INDEX_ID. Returns 0 or VKV_ESYS (errno says
 * why). */
static int send_slab(int cfd, uint64_t id, uint64_t size, int fd)
{
    uint8_t payload[VKVP_FD_SLAB_LEN];
    vkvp_fd_slab_encode(payload, id, size);
    struct iovec iov = {payload, sizeof payload};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr mh = {0};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof u.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    ssize_t w;
    do {
        w = sendmsg(cfd, &mh, MSG_NOSIGNAL);
    } while (w < 0 && errno == EINTR);
    return w == (ssize_t)sizeof payload ? 0 : VKV_ESYS;
}

/* Serves one accepted connection: credential check, session id, slabs. */
static void serve(vkvd_fdchan *fc, int cfd)
{
    struct ucred cr;
    socklen_t len = sizeof cr;
    struct timeval tv = {1, 0};
    setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(cfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) {
        VKV_WARN("fd channel: SO_PEERCRED failed: %s", strerror(errno));
        fc->refused++;
        return;
    }
    int ok =
        cr.uid == getuid() || cr.uid == 0 || (fc->allow_gid >= 0 && (long)cr.gid == fc->allow_gid);
    if (!ok) {
        VKV_WARN("fd channel: refused pid %d uid %u gid %u", (int)cr.pid, (unsigned)cr.uid,
                 (unsigned)cr.gid);
        fc->refused++;
        return;
    }
    /* the session id; a client that wants the lookup index sends 8 more
     * bytes (VKVD_FDCHAN_WANT_INDEX, LE) in the same write */
    uint8_t sidb[VKVP_FD_HELLO_LEN + 8];
    size_t got = 0;
    while (got < VKVP_FD_HELLO_LEN) {
        ssize_t r = recv(cfd, sidb + got, sizeof sidb - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            VKV_DEBUG("fd channel: pid %d sent no session id", (int)cr.pid);
            fc->refused++;
            return;
        }
        got += (size_t)r;
    }
    while (got < sizeof sidb) {
        ssize_t r = recv(cfd, sidb + got, sizeof sidb - got, MSG_DONTWAIT);
        if (r <= 0)
            break; /* an older client: the session id alone */
        got += (size_t)r;
    }
    uint64_t sid = vkvp_fd_hello_decode(sidb);
    bool want_index =
        got == sizeof sidb && vkvp_get_le64(sidb + VKVP_FD_HELLO_LEN) == VKVD_FDCHAN_WANT_INDEX;
    if (fc->check && !fc->check(fc->arg, sid, cr.pid)) {
        VKV_WARN("fd channel: pid %d presented unknown session %llx", (int)cr.pid,
                 (unsigned long long)sid);
        fc->refused++;
        return;
    }
    pthread_mutex_lock(&fc->mu);
    int rc = 0;
    for (uint32_t i = 0; i < fc->n && rc == 0; i++)
        rc = send_slab(cfd, fc->ids[i], fc->sizes[i], fc->fds[i]);
    if (rc == 0 && want_index && fc->idx_fd >= 0)
        rc = send_slab(cfd, VKVD_FDCHAN_INDEX_ID, fc->idx_size, fc->idx_fd);
    pthread_mutex_unlock(&fc->mu);
    if (rc == 0)
        fc->served++;
    else
        VKV_WARN("fd channel: sending slabs to pid %d failed: %s", (int)cr.pid, strerror(errno));
}

struct conn {
    vkvd_fdchan *fc;
    int cfd;
};

/* Thread body for one peer: serves it and ends. */
static void *conn_main(void *p)
{
    struct conn *cn = p;
    serve(cn->fc, cn->cfd);
    close(cn->cfd);
    atomic_fetch_sub(&cn->fc->active, 1);
    free(cn);
    return NULL;
}

/* Hands connection cfd to a thread of its own so that a peer that connects
 * and stalls cannot delay the others. Closes cfd when that is impossible. */
static void dispatch_conn(vkvd_fdchan *fc, int cfd)
{
    struct conn *cn = malloc(sizeof *cn);
    pthread_attr_t at;
    pthread_t t;
    if (!cn || atomic_fetch_add(&fc->active, 1) >= FDCHAN_MAX_ACTIVE) {
        if (cn)
            atomic_fetch_sub(&fc->active, 1);
        VKV_WARN("fd channel: %d peers in flight: connection refused", FDCHAN_MAX_ACTIVE);
        fc->refused++;
        free(cn);
        close(cfd);
        return;
    }
    cn->fc = fc;
    cn->cfd = cfd;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 64u << 10);
    if (pthread_create(&t, &at, conn_main, cn) != 0) {
        serve(fc, cfd); /* no thread: serve inline rather than refuse */
        close(cfd);
        atomic_fetch_sub(&fc->active, 1);
        free(cn);
    }
    pthread_attr_destroy(&at);
}

/* Thread body: accept until the stop pipe becomes readable. */
static void *fdchan_main(void *p)
{
    vkvd_fdchan *fc = p;
    struct pollfd pf[2] = {{fc->lfd, POLLIN, 0}, {fc->stop_pipe[0], POLLIN, 0}};
    for (;;) {
        int r = poll(pf, 2, -1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 || (pf[1].revents & POLLIN))
            break;
        if (pf[0].revents & POLLIN) {
            int cfd = accept4(fc->lfd, NULL, NULL, SOCK_CLOEXEC);
            if (cfd < 0)
                continue;
            dispatch_conn(fc, cfd);
        }
    }
    return NULL;
}

int vkvd_fdchan_open(const char *path, long allow_gid, vkvd_session_check_fn check, void *arg,
                     vkvd_fdchan **out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return VKV_EINVAL;
    vkvd_fdchan *fc = calloc(1, sizeof *fc);
    if (!fc)
        return VKV_ENOMEM;
    strcpy(sa.sun_path, path);
    strcpy(fc->path, path);
    fc->allow_gid = allow_gid;
    fc->idx_fd = -1;
    fc->check = check;
    fc->arg = arg;
    pthread_mutex_init(&fc->mu, NULL);
    fc->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fc->lfd < 0)
        goto fail_free;
    unlink(path);
    mode_t old = umask(0177);
    int brc = bind(fc->lfd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (brc != 0 || listen(fc->lfd, 64) != 0)
        goto fail_sock;
    if (pipe2(fc->stop_pipe, O_CLOEXEC) != 0)
        goto fail_unlink;
    if (pthread_create(&fc->thr, NULL, fdchan_main, fc) != 0) {
        errno = EAGAIN;
        goto fail_pipe;
    }
    *out = fc;
    return 0;
fail_pipe:
    close(fc->stop_pipe[0]);
    close(fc->stop_pipe[1]);
fail_unlink:
    unlink(path);
fail_sock:
    VKV_ERROR("fd channel %s: %s", path, strerror(errno));
    close(fc->lfd);
fail_free:
    pthread_mutex_destroy(&fc->mu);
    free(fc);
    return VKV_ESYS;
}

int vkvd_fdchan_set_slabs(vkvd_fdchan *fc, const uint32_t *ids, const uint64_t *sizes,
                          const int *fds, uint32_t n)
{
    uint32_t *i2 = calloc(n ? n : 1, sizeof *i2);
    uint64_t *s2 = calloc(n ? n : 1, sizeof *s2);
    int *f2 = calloc(n ? n : 1, sizeof *f2);
    if (!i2 || !s2 || !f2) {
        free(i2);
        free(s2);
        free(f2);
        return VKV_ENOMEM;
    }
    memcpy(i2, ids, n * sizeof *i2);
    memcpy(s2, sizes, n * sizeof *s2);
    memcpy(f2, fds, n * sizeof *f2);
    pthread_mutex_lock(&fc->mu);
    free(fc->ids);
    free(fc->sizes);
    free(fc->fds);
    fc->ids = i2;
    fc->sizes = s2;
    fc->fds = f2;
    fc->n = n;
    pthread_mutex_unlock(&fc->mu);
    return 0;
}

int vkvd_fdchan_set_index(vkvd_fdchan *fc, int fd, uint64_t size)
{
    pthread_mutex_lock(&fc->mu);
    fc->idx_fd = fd;
    fc->idx_size = size;
    pthread_mutex_unlock(&fc->mu);
    return 0;
}

void vkvd_fdchan_counts(vkvd_fdchan *fc, uint64_t *served, uint64_t *refused)
{
    *served = fc->served;
    *refused = fc->refused;
}

void vkvd_fdchan_close(vkvd_fdchan *fc)
{
    if (!fc)
        return;
    ssize_t w = write(fc->stop_pipe[1], "x", 1);
    (void)w;
    pthread_join(fc->thr, NULL);
    /* connection threads end within their socket timeouts */
    for (int i = 0; i < 500 && atomic_load(&fc->active) > 0; i++)
        usleep(10000);
    if (atomic_load(&fc->active) > 0) {
        VKV_WARN("fd channel: peers still in flight at close; leaving its state allocated");
        return;
    }
    close(fc->stop_pipe[0]);
    close(fc->stop_pipe[1]);
    close(fc->lfd);
    unlink(fc->path);
    free(fc->ids);
    free(fc->sizes);
    free(fc->fds);
    pthread_mutex_destroy(&fc->mu);
    free(fc);
}
