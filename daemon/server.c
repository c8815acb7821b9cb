/*
 * daemon/server.c - vkvd's event loop (server.h, server_int.h): nanomsg raw
 * REP + signalfd + timerfd + the cold tier's eventfd; frames, the reply
 * cache, deferred FETCHes, open/run/close. The op handlers are in
 * handlers.c, the cold-tier glue in cold_tier.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/clock.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "daemon/server_int.h"

/* ---- reply cache ---------------------------------------------------------- */

/* Returns the cached reply for a resend of request (req_id, req_hash): the
 * same id AND the same bytes, so a different request that reuses an id is
 * executed, not answered from the cache. NULL if none. */
static struct rcache_slot *rcache_find(vkvd_server *srv, uint64_t req_id, uint64_t req_hash)
{
    struct rcache_slot *s = &srv->rcache[req_id % VKVD_RCACHE_SLOTS];
    return (s->frame && s->req_id == req_id && s->req_hash == req_hash) ? s : NULL;
}

/* Remembers a copy of `frame` as the reply to the request being handled
 * (srv->cur_hash is its frame hash). Best effort. */
static void rcache_put(vkvd_server *srv, uint64_t req_id, const void *frame, size_t len)
{
    if (req_id == 0)
        return;
    struct rcache_slot *s = &srv->rcache[req_id % VKVD_RCACHE_SLOTS];
    void *copy = malloc(len);
    if (!copy)
        return;
    memcpy(copy, frame, len);
    srv->rcache_bytes -= s->len;
    free(s->frame);
    s->frame = copy;
    s->len = len;
    s->req_id = req_id;
    s->req_hash = srv->cur_hash;
    srv->rcache_bytes += len;
    for (uint32_t n = 0; srv->rcache_bytes > VKVD_RCACHE_MAX_BYTES && n < VKVD_RCACHE_SLOTS; n++) {
        struct rcache_slot *o = &srv->rcache[srv->rcache_sweep];
        srv->rcache_sweep = (srv->rcache_sweep + 1) % VKVD_RCACHE_SLOTS;
        if (o == s || !o->frame)
            continue;
        srv->rcache_bytes -= o->len;
        free(o->frame);
        memset(o, 0, sizeof *o);
    }
}

/* Prepares a nanomsg header for a zero-copy body and a routing header:
 * iov/hdr describe `*body` and `*control` as NN_MSG buffers. */
static void nn_hdr_init(struct nn_msghdr *hdr, struct nn_iovec *iov, void **body, void **control)
{
    iov->iov_base = body;
    iov->iov_len = NN_MSG;
    memset(hdr, 0, sizeof *hdr);
    hdr->msg_iov = iov;
    hdr->msg_iovlen = 1;
    hdr->msg_control = control;
    hdr->msg_controllen = NN_MSG;
}

/* ---- sending -------------------------------------------------------------- */

/* Sends `len` bytes of `frame` back along routing header `control` (a
 * nanomsg message the call consumes in every case). */
static void send_frame(vkvd_server *srv, void *control, const void *frame, size_t len)
{
    void *msg = nn_allocmsg(len, 0);
    if (!msg) {
        nn_freemsg(control);
        srv->send_failures++;
        return;
    }
    memcpy(msg, frame, len);
    struct nn_iovec iov;
    struct nn_msghdr hdr;
    nn_hdr_init(&hdr, &iov, &msg, &control);
    if (nn_sendmsg(srv->nn, &hdr, NN_DONTWAIT) < 0) {
        /* The peer is gone or its pipe is full: drop the reply. */
        VKV_DEBUG("reply dropped: %s", nn_strerror(nn_errno()));
        nn_freemsg(msg);
        nn_freemsg(control);
        srv->send_failures++;
    }
}

/* Encodes and sends an error reply, and caches it. */
static void send_error(vkvd_server *srv, void *control, uint64_t req_id, int status,
                       const char *msg)
{
    void *frame = NULL;
    size_t len = 0;
    srv->req_errors++;
    if (vkvp_encode_error(req_id, srv->epoch, status, msg, &frame, &len) != 0) {
        nn_freemsg(control);
        return;
    }
    rcache_put(srv, req_id, frame, len);
    send_frame(srv, control, frame, len);
    free(frame);
}

/* ---- requests ---------------------------------------------------------------- */

static int run_request(vkvd_server *srv, void *control, vkvp_request *rq, uint64_t req_hash,
                       uint64_t t_arrival, bool allow_defer);

/* Handles one received frame; consumes `control`. */
static void handle_frame(vkvd_server *srv, const void *body, size_t len, void *control)
{
    uint64_t t_arrival = vkv_now_ns();
    uint64_t rid = vkvp_peek_req_id(body, len);
    srv->cur_hash = XXH3_64bits(body, len);
    struct rcache_slot *cached = rcache_find(srv, rid, srv->cur_hash);
    if (cached && rid != 0) {
        srv->resent_replies++;
        send_frame(srv, control, cached->frame, cached->len);
        return;
    }
    char why[VKVP_WHY_LEN] = "";
    vkvp_request *rq = NULL;
    int rc = vkvp_decode_request(body, len, &rq, why, sizeof why);
    if (rc) {
        srv->bad_frames++;
        VKV_DEBUG("bad frame (%zu bytes): %s", len, why);
        send_error(srv, control, rid, rc, why[0] ? why : vkv_strerror(rc));
        return;
    }
    srv->req_count[rq->op]++;
    if (srv->stopping) {
        send_error(srv, control, rq->req_id, VKV_ESHUTDOWN, "vkvd is shutting down");
        vkvp_request_free(rq);
        return;
    }
    for (struct deferred *d = srv->deferred; d; d = d->next) {
        if (d->rq->req_id == rq->req_id && d->req_hash == srv->cur_hash) {
            /* A resend of a FETCH still waiting for restores: one reply
             * will answer both. */
            nn_freemsg(control);
            vkvp_request_free(rq);
            return;
        }
    }
    if (run_request(srv, control, rq, srv->cur_hash, t_arrival, true) == VKVD_DEFER)
        return; /* rq and control now belong to the deferred list */
    vkvp_request_free(rq);
}

/* A FETCH or ALLOC whose reply cannot be delivered (too big to encode)
 * must not leave its lease behind: the client never learns its id. */
static void undo_leases(vkvd_server *srv, const vkvp_request *rq, const vkvp_reply *rep)
{
    if (rq->op == VKVP_FETCH && rep->u.fetch.lease)
        vkvs_release(srv->st, rq->u.fetch.session, &rep->u.fetch.lease, 1, NULL);
    else if (rq->op == VKVP_ALLOC && rep->u.alloc.lease)
        vkvs_abort(srv->st, rq->u.alloc.session, rep->u.alloc.lease);
}

/* Runs a decoded request and sends its reply along `control`. With
 * allow_defer, a FETCH that must wait for restores is queued on the deferred
 * list instead (taking rq and control) and VKVD_DEFER is returned; otherwise the
 * reply is sent, control consumed, and 0 returned (rq stays the caller's). */
static int run_request(vkvd_server *srv, void *control, vkvp_request *rq, uint64_t req_hash,
                       uint64_t t_arrival, bool allow_defer)
{
    char why[VKVP_WHY_LEN] = "";
    vkvp_reply rep;
    struct vkvd_scratch sc;
    memset(&sc, 0, sizeof sc);
    vkvp_reply_init(&rep, rq->op, rq->req_id, srv->epoch);
    srv->defer_limit_next_ms = 0;
    int rc = vkvd_dispatch(srv, rq, &rep, &sc, why, sizeof why, allow_defer);
    if (rc == VKVD_DEFER) {
        vkvd_scratch_free(&sc);
        struct deferred *d = calloc(1, sizeof *d);
        if (d) {
            d->control = control;
            d->rq = rq;
            d->req_hash = req_hash;
            d->t_arrival = t_arrival;
            d->deadline_ms = vkv_now_ms() + (srv->defer_limit_next_ms ? srv->defer_limit_next_ms
                                                                      : VKVD_DEFER_LIMIT_MS);
            srv->defer_limit_next_ms = 0;
            d->next = srv->deferred;
            srv->deferred = d;
            if (rq->op == VKVP_ALLOC)
                srv->alloc_deferred++;
            else
                srv->fetch_deferred++;
            return VKVD_DEFER;
        }
        rc = VKV_ENOMEM;
    }
    srv->cur_hash = req_hash;
    if (rc) {
        send_error(srv, control, rq->req_id, rc, why[0] ? why : vkv_strerror(rc));
    } else {
        void *frame = NULL;
        size_t flen = 0;
        int erc = vkvp_encode_reply(&rep, &frame, &flen);
        if (erc) {
            VKV_ERROR("cannot encode %s reply: %s", vkvp_op_name(rq->op), vkv_strerror(erc));
            undo_leases(srv, rq, &rep);
            send_error(srv, control, rq->req_id, erc, "reply could not be encoded");
        } else {
            rcache_put(srv, rq->req_id, frame, flen);
            send_frame(srv, control, frame, flen);
            free(frame);
        }
    }
    vkvd_scratch_free(&sc);
    if (srv->metrics)
        vkvd_metrics_observe(srv->metrics, rq->op, (double)(vkv_now_ns() - t_arrival) * 1e-9);
    return 0;
}

/* Runs every deferred FETCH again after restores progressed: those whose
 * prefix is now hot (or that waited VKVD_DEFER_LIMIT_MS) are answered. Waiting is
 * bounded by time, not by completions, so other clients' restores finishing
 * first never cut a FETCH short. */
void vkvd_rerun_deferred(vkvd_server *srv)
{
    struct deferred *list = srv->deferred;
    srv->deferred = NULL;
    while (list) {
        struct deferred *d = list;
        list = d->next;
        bool allow = vkv_now_ms() < d->deadline_ms && !srv->stopping;
        if (d->rq->op == VKVP_ALLOC) /* run_request counts it again if it stays */
            srv->alloc_deferred--;
        else
            srv->fetch_deferred--;
        vkvs_set_fetch_quiet(srv->st, true); /* counted at its first run */
        int rr = run_request(srv, d->control, d->rq, d->req_hash, d->t_arrival, allow);
        vkvs_set_fetch_quiet(srv->st, false);
        if (rr == VKVD_DEFER) {
            srv->deferred->deadline_ms = d->deadline_ms; /* the new node heads the list */
        } else {
            vkvp_request_free(d->rq);
        }
        free(d);
    }
}

/* Drains every frame nanomsg has ready. */
static void drain_socket(vkvd_server *srv)
{
    for (;;) {
        void *body = NULL;
        void *control = NULL;
        struct nn_iovec iov;
        struct nn_msghdr hdr;
        nn_hdr_init(&hdr, &iov, &body, &control);
        int n = nn_recvmsg(srv->nn, &hdr, NN_DONTWAIT);
        if (n < 0) {
            int e = nn_errno();
            if (e != EAGAIN && e != EINTR)
                VKV_WARN("nn_recvmsg: %s", nn_strerror(e));
            return;
        }
        if (!control) {
            nn_freemsg(body);
            continue;
        }
        handle_frame(srv, body, (size_t)n, control);
        nn_freemsg(body);
    }
}

/* kill(pid, 0) liveness for the reaper. */
static bool pid_alive(void *arg, pid_t pid)
{
    (void)arg;
    return kill(pid, 0) == 0 || errno == EPERM;
}

/* Periodic housekeeping: reap dead sessions and expired leases, answer
 * deferred requests past their limit, publish the metrics. */
static void on_timer(vkvd_server *srv)
{
    uint64_t ticks;
    ssize_t r = read(srv->timerfd, &ticks, sizeof ticks);
    (void)r;
    vkvd_live_bind(srv);
    int closed = vkvs_reap(srv->st, vkv_now_ms(), pid_alive, NULL);
    if (closed > 0)
        VKV_INFO("reaped %d session(s)", closed);
    vkvd_live_prune(srv);
    vkvd_cold_tick(srv);
    /* a request waits at most VKVD_DEFER_LIMIT_MS even when no completion
     * arrives (a cold tier stuck on its disk) */
    uint64_t now = vkv_now_ms();
    for (struct deferred *d = srv->deferred; d; d = d->next)
        if (now >= d->deadline_ms) {
            vkvd_rerun_deferred(srv);
            break;
        }
    vkvd_publish_metrics(srv);
}

/* ---- open / run / close ---------------------------------------------------------- */

/* Creates the runtime directory (private, ours) and takes its lock (one
 * daemon per directory), and draws the epoch. Returns 0 or the error after
 * logging. */
static int open_rundir(vkvd_server *srv)
{
    char why[512], lockp[VKVD_PATH_MAX + 16];
    int rc = vkv_private_dir(srv->cfg.rundir, VKV_DIR_OWNED, why, sizeof why);
    if (rc != 0) {
        VKV_ERROR("%s", why);
        return rc;
    }
    snprintf(lockp, sizeof lockp, "%s/vkvd.lock", srv->cfg.rundir);
    rc = vkv_lock_file(lockp, &srv->lockfd, why, sizeof why);
    if (rc != 0) {
        VKV_ERROR("another vkvd already serves %s (%s)", srv->cfg.rundir, why);
        return rc;
    }
    if (getrandom(&srv->epoch, sizeof srv->epoch, 0) != sizeof srv->epoch)
        srv->epoch = vkv_now_ns() ^ ((uint64_t)getpid() << 32);
    if (srv->epoch == 0)
        srv->epoch = 1;
    return 0;
}

/* Opens the store on the configured backend (--backend). Returns 0 or the
 * error after logging. */
static int open_store(vkvd_server *srv)
{
    const vkvd_config *cfg = &srv->cfg;
    char why[128] = "";
    vkvs_config sc;
    vkvs_config_default(&sc);
    int rc = vkvs_backend_find(cfg->backend, &sc.backend, &sc.backend_arg, why, sizeof why);
    if (rc) {
        VKV_ERROR("%s", why);
        return rc;
    }
    sc.page_size = cfg->page_size;
    sc.slab_size = cfg->slab_size;
    sc.nslabs = (uint32_t)(cfg->capacity / cfg->slab_size);
    sc.max_slabs = sc.nslabs;
    sc.lease_ttl_ms = cfg->lease_ttl_ms;
    sc.session_ttl_ms = cfg->session_ttl_ms;
    sc.policy = strcmp(cfg->policy, "lru") == 0 ? VKVS_POLICY_LRU : VKVS_POLICY_S3FIFO;
    sc.session_quota =
        cfg->session_quota == VKVD_QUOTA_AUTO ? cfg->capacity / 2 : cfg->session_quota;
    rc = vkvs_open(&sc, &srv->st);
    if (rc)
        VKV_ERROR("cannot create the %llu-byte %s arena: %s", (unsigned long long)cfg->capacity,
                  sc.backend->name, vkv_strerror(rc));
    return rc;
}

/* Starts the fd side channel and gives it the host slabs to hand out. */
static int open_fdchan(vkvd_server *srv)
{
    snprintf(srv->fd_path, sizeof srv->fd_path, "%s/vkvd.fds", srv->cfg.rundir);
    int rc = vkvd_fdchan_open(srv->fd_path, srv->cfg.allow_gid, vkvd_live_check, srv, &srv->fc);
    if (rc)
        return rc;
    uint32_t n = vkvs_slab_count(srv->st);
    uint32_t ids[VKVP_MAX_SLABS];
    uint64_t sizes[VKVP_MAX_SLABS];
    int fds[VKVP_MAX_SLABS];
    if (vkvs_backend_of(srv->st)->kind != VKVS_BACKEND_HOST)
        n = 0; /* device slabs travel as IPC handles in HELLO, not as fds */
    for (uint32_t i = 0; i < n && i < VKVP_MAX_SLABS; i++) {
        const vkvs_slab *s = vkvs_slab_get(srv->st, i);
        ids[i] = s->id;
        sizes[i] = s->size;
        fds[i] = s->fd;
    }
    if (srv->lidx && (rc = vkvd_fdchan_set_index(srv->fc, vkvs_shmidx_fd(srv->lidx),
                                                 vkvs_shmidx_seg_size(srv->lidx))) != 0)
        return rc;
    return vkvd_fdchan_set_slabs(srv->fc, ids, sizes, fds, n);
}

/* Binds the raw REP socket at $RUNDIR/vkvd.sock (mode 0600). */
static int open_socket(vkvd_server *srv)
{
    snprintf(srv->sock_path, sizeof srv->sock_path, "%s/vkvd.sock", srv->cfg.rundir);
    char url[VKVD_PATH_MAX + 32];
    snprintf(url, sizeof url, "ipc://%s", srv->sock_path);
    unlink(srv->sock_path); /* stale socket of a crashed daemon (we hold the lock) */
    srv->nn = nn_socket(AF_SP_RAW, NN_REP);
    if (srv->nn < 0) {
        VKV_ERROR("nn_socket: %s", nn_strerror(nn_errno()));
        return VKV_ESYS;
    }
    int maxsz = VKVP_MAX_FRAME;
    nn_setsockopt(srv->nn, NN_SOL_SOCKET, NN_RCVMAXSIZE, &maxsz, sizeof maxsz);
    mode_t old = umask(0177);
    int brc = nn_bind(srv->nn, url);
    umask(old);
    if (brc < 0) {
        VKV_ERROR("cannot bind %s: %s", url, nn_strerror(nn_errno()));
        return VKV_ESYS;
    }
    size_t sz = sizeof srv->nn_rcvfd;
    if (nn_getsockopt(srv->nn, NN_SOL_SOCKET, NN_RCVFD, &srv->nn_rcvfd, &sz) < 0) {
        VKV_ERROR("NN_RCVFD: %s", nn_strerror(nn_errno()));
        return VKV_ESYS;
    }
    return 0;
}

/* Blocks SIGTERM/SIGINT into a signalfd and arms the reap timer. */
static int open_signals(vkvd_server *srv)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    srv->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    srv->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (srv->sigfd < 0 || srv->timerfd < 0) {
        VKV_ERROR("signalfd/timerfd: %s", strerror(errno));
        return VKV_ESYS;
    }
    struct itimerspec its = {0};
    its.it_interval.tv_sec = srv->cfg.reap_interval_ms / 1000;
    its.it_interval.tv_nsec = (long)(srv->cfg.reap_interval_ms % 1000) * 1000000L;
    its.it_value = its.it_interval;
    timerfd_settime(srv->timerfd, 0, &its, NULL);
    return 0;
}

/* Starts the metrics endpoint when configured; a failure only logs. */
static void open_metrics(vkvd_server *srv)
{
    int port = srv->cfg.metrics_port;
    if (port <= 0)
        return;
    if (vkvd_metrics_open(port, &srv->metrics) != 0)
        VKV_WARN("metrics endpoint on 127.0.0.1:%d unavailable; serving without it", port);
    else
        VKV_INFO("metrics on http://127.0.0.1:%d/metrics", port);
}

int vkvd_server_open(const vkvd_config *cfg, vkvd_server **out)
{
    vkvd_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return VKV_ENOMEM;
    srv->cfg = *cfg;
    srv->nn = -1;
    srv->sigfd = srv->timerfd = srv->lockfd = srv->cold_fd = srv->remote_fd = -1;
    pthread_mutex_init(&srv->live_mu, NULL);
    int rc;
    if ((rc = open_rundir(srv)) != 0 || (rc = open_store(srv)) != 0)
        goto fail;
    vkvd_lookup_index_open(srv);
    vkvd_cold_open(srv);
    vkvd_remote_open(srv);
    if ((rc = open_fdchan(srv)) != 0 || (rc = open_socket(srv)) != 0 ||
        (rc = open_signals(srv)) != 0)
        goto fail;
    open_metrics(srv);
    VKV_INFO("serving ipc://%s (backend %s, %llu MiB in %u slabs of %llu MiB, page %u KiB, "
             "policy %s, epoch %016" PRIx64 ")",
             srv->sock_path, vkvs_backend_of(srv->st)->name,
             (unsigned long long)(cfg->capacity >> 20), vkvs_slab_count(srv->st),
             (unsigned long long)(cfg->slab_size >> 20), cfg->page_size >> 10, cfg->policy,
             srv->epoch);
    *out = srv;
    return 0;
fail:
    vkvd_server_close(srv);
    return rc ? rc : VKV_ESYS;
}

/* Graceful shutdown, first part: no new fd-channel clients; answers what is
 * queued (new requests get VKV_ESHUTDOWN) and lets waiting FETCHes finish
 * their restores (bounded), then answers the rest with what is hot. */
static void drain_for_shutdown(vkvd_server *srv)
{
    vkvd_lookup_index_stop(srv);
    vkvd_fdchan_close(srv->fc);
    srv->fc = NULL;
    drain_socket(srv);
    uint64_t deadline = vkv_now_ms() + 10000;
    while (srv->deferred && (srv->cold || srv->remote) && vkv_now_ms() < deadline) {
        struct pollfd cp[2] = {{srv->cold ? srv->cold_fd : -1, POLLIN, 0},
                               {srv->remote ? srv->remote_fd : -1, POLLIN, 0}};
        if (poll(cp, 2, 100) > 0) {
            if (cp[0].revents & POLLIN)
                vkvd_cold_on_ready(srv);
            if (cp[1].revents & POLLIN)
                vkvd_remote_on_ready(srv);
        }
        drain_socket(srv);
    }
    if (srv->deferred)
        vkvd_rerun_deferred(srv); /* stopping: answers with what is hot */
}

int vkvd_server_run(vkvd_server *srv)
{
    struct pollfd pf[5] = {{srv->nn_rcvfd, POLLIN, 0},
                           {srv->sigfd, POLLIN, 0},
                           {srv->timerfd, POLLIN, 0},
                           {srv->cold ? srv->cold_fd : -1, POLLIN, 0},
                           {srv->remote ? srv->remote_fd : -1, POLLIN, 0}};
    while (!srv->stopping) {
        int r = poll(pf, 5, -1); /* poll ignores the -1 fds */
        if (r < 0) {
            if (errno == EINTR)
                continue;
            VKV_ERROR("poll: %s", strerror(errno));
            return VKV_ESYS;
        }
        if (pf[0].revents & POLLIN)
            drain_socket(srv);
        if (pf[2].revents & POLLIN)
            on_timer(srv);
        if (srv->cold && (pf[3].revents & POLLIN))
            vkvd_cold_on_ready(srv);
        if (srv->remote && (pf[4].revents & POLLIN))
            vkvd_remote_on_ready(srv);
        if (pf[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(srv->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
                VKV_INFO("signal %u: shutting down", si.ssi_signo);
                srv->stopping = true;
            }
        }
    }
    drain_for_shutdown(srv);
    vkvd_verify_join(srv); /* it stops at its next entry */
    int rc = vkvd_cold_shutdown(srv);
    VKV_INFO("stopped");
    return rc;
}

void vkvd_server_close(vkvd_server *srv)
{
    if (!srv)
        return;
    if (srv->nn >= 0) {
        nn_close(srv->nn);
        unlink(srv->sock_path);
    }
    vkvd_fdchan_close(srv->fc);
    vkvd_metrics_close(srv->metrics);
    vkvd_verify_join(srv);
    vkvd_remote_close(srv);
    vkvd_cold_close(srv);
    while (srv->deferred) {
        struct deferred *d = srv->deferred;
        srv->deferred = d->next;
        nn_freemsg(d->control);
        vkvp_request_free(d->rq);
        free(d);
    }
    vkvd_lookup_index_close(srv);
    vkvs_close(srv->st);
    if (srv->sigfd >= 0)
        close(srv->sigfd);
    if (srv->timerfd >= 0)
        close(srv->timerfd);
    if (srv->lockfd >= 0)
        close(srv->lockfd);
    for (size_t i = 0; i < VKVD_RCACHE_SLOTS; i++)
        free(srv->rcache[i].frame);
    free(srv->live);
    pthread_mutex_destroy(&srv->live_mu);
    free(srv);
}
