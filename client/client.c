/*
 * client/client.c - libvkv's connection: the options and runtime dir, the
 * request/reply round trip over nanomsg (req ids, epoch changes, reaped
 * sessions), HELLO and reconnects, close, and the ops that are one round
 * trip (DELETE, STATS, PING). The fd channel and slab mappings are in
 * slabs.c, the LOOKUP index in lookup.c, the block ops in fetch.c and
 * put.c; see vkv/vkv.h for the API.
 */
#include <errno.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/client_internal.h"
#include "common/clock.h"
#include "common/log.h"
#include "proto/proto.h"
#include "vkv/vkv.h"

/* Longer than the daemon's 10 s wait for cold restores (daemon/server.c
 * DEFER_LIMIT_MS), so a FETCH that restores is answered, not timed out. */
#define DEFAULT_TIMEOUT_MS 15000

void vkvc_default_rundir(const char *given, char *buf, size_t cap)
{
    const char *env = getenv("VKV_RUNDIR");
    const char *xrd = getenv("XDG_RUNTIME_DIR");
    if (given && *given)
        snprintf(buf, cap, "%s", given);
    else if (env && *env)
        snprintf(buf, cap, "%s", env);
    else if (xrd && *xrd && access(xrd, W_OK) == 0)
        snprintf(buf, cap, "%s/vkv", xrd);
    else
        snprintf(buf, cap, "/tmp/vkv-%u", (unsigned)getuid());
}

uint64_t vkvc_session(const vkv_client *c)
{
    return c->session;
}

const vkv_codec_spec *vkv_client_codec(const vkv_client *c)
{
    return &c->spec;
}

uint64_t vkv_client_epoch(const vkv_client *c)
{
    return c->epoch;
}

/* The client trusts only a daemon of its own user: `dir` must be a real
 * directory owned by our uid and closed to everyone else (the daemon makes
 * it so), and `sock`, when given, a socket in it owned by our uid. Returns
 * VKV_OK or VKV_EPERM (logged), VKV_ECONN when absent. */
static int check_rundir(const char *dir, const char *sock)
{
    struct stat sb;
    if (lstat(dir, &sb) != 0)
        return VKV_ECONN;
    if (!S_ISDIR(sb.st_mode) || sb.st_uid != geteuid() || (sb.st_mode & 077) != 0) {
        VKV_WARN("libvkv: refusing runtime dir %s (owner uid %u, mode %03o): it must be a "
                 "directory of uid %u with mode 0700",
                 dir, (unsigned)sb.st_uid, (unsigned)(sb.st_mode & 0777), (unsigned)geteuid());
        return VKV_EPERM;
    }
    if (sock) {
        if (lstat(sock, &sb) != 0)
            return VKV_ECONN;
        if (!S_ISSOCK(sb.st_mode) || sb.st_uid != geteuid()) {
            VKV_WARN("libvkv: refusing %s: not a socket of uid %u", sock, (unsigned)geteuid());
            return VKV_EPERM;
        }
    }
    return VKV_OK;
}

/* Sends one frame and receives the reply frame (nanomsg-owned buffer, freed
 * by the caller with nn_freemsg). */
static int exchange(vkv_client *c, const void *frame, size_t len, void **rbuf, int *rlen)
{
    if (nn_send(c->nn, frame, len, 0) < 0)
        return nn_errno() == ETIMEDOUT ? VKV_ETIMEDOUT : VKV_ECONN;
    *rbuf = NULL;
    int n = nn_recv(c->nn, rbuf, NN_MSG, 0);
    if (n < 0)
        return nn_errno() == ETIMEDOUT ? VKV_ETIMEDOUT : VKV_ECONN;
    *rlen = n;
    return 0;
}

/* One round trip without epoch handling. */
static int call_raw(vkv_client *c, vkvp_request *rq, vkvp_reply **rep, char *why, size_t wl)
{
    void *frame = NULL, *rbuf = NULL;
    size_t len = 0;
    int rlen = 0;
    rq->req_id = c->rid_next++;
    if (rq->req_id == 0)
        rq->req_id = c->rid_next++;
    int rc = vkvp_encode_request(rq, &frame, &len);
    if (rc)
        return rc;
    rc = exchange(c, frame, len, &rbuf, &rlen);
    free(frame);
    if (rc)
        return rc;
    char dwhy[VKVP_WHY_LEN];
    rc = vkvp_decode_reply(rbuf, (size_t)rlen, rq->op, rep, dwhy, sizeof dwhy);
    nn_freemsg(rbuf);
    if (rc) {
        VKV_WARN("undecodable reply to %s: %s", vkvp_op_name(rq->op), dwhy);
        return rc;
    }
    if ((*rep)->req_id != rq->req_id) {
        vkvp_reply_free(*rep);
        *rep = NULL;
        return VKV_EPROTO;
    }
    if ((*rep)->status != 0 && why && wl)
        snprintf(why, wl, "%.*s", (int)(*rep)->msg.len, (*rep)->msg.ptr ? (*rep)->msg.ptr : "");
    return 0;
}

/* Takes the session of a successful HELLO reply rep: session id, epoch,
 * keepalive (a third of the lease TTL, within 100 ms .. 10 s), page size,
 * backend; a new generation. */
static void hello_adopt(vkv_client *c, const vkvp_reply *rep)
{
    c->session = rep->u.hello.session;
    c->epoch = rep->epoch;
    uint64_t ka = rep->u.hello.lease_ttl_ms / 3;
    atomic_store_explicit(&c->keepalive_ms,
                          ka < 100     ? 100
                          : ka > 10000 ? 10000
                                       : ka,
                          memory_order_relaxed);
    atomic_store(&c->last_rt_ms, vkv_now_ms());
    c->page_size = rep->u.hello.page_size;
    c->backend = rep->u.hello.backend;
    c->gen++;
}

/* HELLO + slab mapping (+ the lookup index). Leaves the client
 * disconnected on error. */
static int hello(vkv_client *c)
{
    vkvp_request rq;
    vkvp_reply *rep = NULL;
    vkvp_request_init(&rq, VKVP_HELLO, 0);
    rq.u.hello.ns = vkvp_cstr(c->ns);
    rq.u.hello.pid = (uint64_t)getpid();
    if (c->name[0]) {
        rq.u.hello.has_name = true;
        rq.u.hello.name = vkvp_cstr(c->name);
    }
    rq.u.hello.admin = c->admin != 0;
    int rc = call_raw(c, &rq, &rep, NULL, 0);
    if (rc)
        return rc;
    if (rep->status) {
        rc = rep->status;
        vkvp_reply_free(rep);
        return rc;
    }
    hello_adopt(c, rep);
    if (c->admin) {
        vkvp_reply_free(rep);
        return 0;
    }
    rc = vkvc_slabs_map(c, &rep->u.hello);
    vkvp_reply_free(rep);
    if (rc)
        return rc;
    vkvc_lidx_open(c);
    return 0;
}

/* Sends CLOSE for the current session (best effort; errors ignored). */
static void say_close(vkv_client *c)
{
    vkvp_request rq;
    vkvp_reply *rep = NULL;
    vkvp_request_init(&rq, VKVP_CLOSE, 0);
    rq.u.close.session = c->session;
    if (call_raw(c, &rq, &rep, NULL, 0) == 0)
        vkvp_reply_free(rep);
}

/* Starts a new session after the old one ended (daemon restart or session
 * reaped): the old mappings are retired, not unmapped (see struct vkvc_slabset),
 * then HELLO maps the daemon's current slabs. Caller holds c->mu. */
static int reconnect(vkv_client *c)
{
    vkvc_slabs_retire(c);
    vkvc_lidx_swap(c, NULL);
    c->in_hello = 1;
    int rc = hello(c);
    c->in_hello = 0;
    return rc;
}

int vkvc_call_locked(vkv_client *c, vkvp_request *rq, vkvp_reply **rep, char *why, size_t why_len)
{
    *rep = NULL;
    int rc = call_raw(c, rq, rep, why, why_len);
    if (rc == 0 && (*rep)->epoch != c->epoch) {
        /* The daemon restarted: every lease we held is gone. */
        VKV_INFO("vkvd epoch changed (%016llx -> %016llx): reconnecting",
                 (unsigned long long)c->epoch, (unsigned long long)(*rep)->epoch);
        vkvp_reply_free(*rep);
        *rep = NULL;
        rc = reconnect(c);
        return rc ? rc : VKV_ESTALE;
    }
    if (rc == 0 && (*rep)->status != 0) {
        rc = (*rep)->status;
        vkvp_reply_free(*rep);
        *rep = NULL;
        if (rc == VKV_ESESSION && rq->op != VKVP_HELLO && rq->op != VKVP_CLOSE && !c->in_hello) {
            /* The daemon ended our session (reaped): say HELLO again so the
             * next call works; this one reports VKV_ESESSION once. */
            VKV_INFO("vkvd session %016llx ended: opening a new one",
                     (unsigned long long)c->session);
            int hrc = reconnect(c);
            if (hrc)
                rc = hrc;
        }
    }
    return rc;
}

int vkvc_call(vkv_client *c, vkvp_request *rq, vkvp_reply **rep, char *why, size_t why_len)
{
    pthread_mutex_lock(&c->mu);
    int rc = vkvc_call_locked(c, rq, rep, why, why_len);
    if (rc != VKV_ECONN && rc != VKV_ETIMEDOUT)
        atomic_store_explicit(&c->last_rt_ms, vkv_now_ms(), memory_order_relaxed);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* Takes the options into c: the namespace (fingerprint + "#" + codec spec,
 * or the full one as given), the codec spec, the name, the runtime dir and
 * socket URL; picks a random first request id. Returns 0, VKV_EINVAL or
 * the codec spec's parse error. */
static int client_options(vkv_client *c, const vkv_options *opts)
{
    int rc = VKV_EINVAL;
    if (opts->ns_is_full) {
        const char *hash = opts->ns ? strrchr(opts->ns, '#') : NULL;
        if (opts->codec || opts->admin || !hash || strlen(opts->ns) > VKVC_NS_MAX ||
            (rc = vkv_codec_spec_parse(hash + 1, &c->spec)) != 0)
            return rc ? rc : VKV_EINVAL;
        snprintf(c->ns, sizeof c->ns, "%s", opts->ns);
    } else if (opts->codec) {
        if ((rc = vkv_codec_spec_parse(opts->codec, &c->spec)) != 0)
            return rc;
    } else {
        vkv_codec_spec_default(&c->spec);
    }
    if (!opts->admin && !opts->ns_is_full) {
        char spec[128];
        vkv_codec_spec_format(&c->spec, spec, sizeof spec);
        int n = snprintf(c->ns, sizeof c->ns, "%s#%s", opts->ns, spec);
        if (n < 0 || (size_t)n >= sizeof c->ns)
            return VKV_EINVAL;
    }
    if (opts->name)
        snprintf(c->name, sizeof c->name, "%s", opts->name);
    vkvc_default_rundir(opts->rundir, c->rundir, sizeof c->rundir);
    snprintf(c->url, sizeof c->url, "ipc://%s/vkvd.sock", c->rundir);
    if (getrandom(&c->rid_next, sizeof c->rid_next, 0) != sizeof c->rid_next)
        c->rid_next = ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)c;
    return 0;
}

/* Opens c's nanomsg REQ socket to the daemon's socket in c->rundir (which
 * must exist and be ours: check_rundir), with c's timeouts and no reply
 * size limit. Returns 0, VKV_ECONN or VKV_EPERM; c->nn may be open on
 * failure (the caller closes it). */
static int client_dial(vkv_client *c)
{
    char sockpath[600];
    snprintf(sockpath, sizeof sockpath, "%s/vkvd.sock", c->rundir);
    if (access(sockpath, F_OK) != 0)
        return VKV_ECONN; /* nanomsg would silently wait for a daemon forever */
    int rc = check_rundir(c->rundir, sockpath);
    if (rc)
        return rc;
    c->nn = nn_socket(AF_SP, NN_REQ);
    if (c->nn < 0)
        return VKV_ECONN;
    nn_setsockopt(c->nn, NN_SOL_SOCKET, NN_SNDTIMEO, &c->timeout_ms, sizeof c->timeout_ms);
    nn_setsockopt(c->nn, NN_SOL_SOCKET, NN_RCVTIMEO, &c->timeout_ms, sizeof c->timeout_ms);
    int maxsz = -1;
    nn_setsockopt(c->nn, NN_SOL_SOCKET, NN_RCVMAXSIZE, &maxsz, sizeof maxsz);
    if (nn_connect(c->nn, c->url) < 0)
        return VKV_ECONN;
    return 0;
}

int vkv_connect(const vkv_options *opts, vkv_client **out)
{
    if (!opts || !out)
        return VKV_EINVAL;
    if (!opts->admin && (!opts->ns || !*opts->ns))
        return VKV_EINVAL;
    vkv_client *c = calloc(1, sizeof *c);
    if (!c)
        return VKV_ENOMEM;
    pthread_mutex_init(&c->mu, NULL);
    c->nn = -1;
    c->lidx_fd = -1;
    const char *shm = getenv("VKV_LOOKUP_SHM");
    c->lidx_off = shm && strcmp(shm, "0") == 0;
    c->admin = opts->admin;
    c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    int rc;
    if ((rc = client_options(c, opts)) != 0 || (rc = client_dial(c)) != 0 || (rc = hello(c)) != 0) {
        if (c->nn >= 0)
            nn_close(c->nn);
        vkvc_slabs_retire(c);
        vkvc_lidx_swap(c, NULL);
        pthread_mutex_destroy(&c->mu);
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void vkv_close(vkv_client *c)
{
    if (!c)
        return;
    /* CLOSE ends the session and its leases at once (a session of a process
     * that dies without closing is reaped when the daemon sees it exit). */
    pthread_mutex_lock(&c->mu);
    if (c->nn >= 0) {
        /* best effort and brief: a daemon that is gone must not hold up a
         * worker's shutdown for a whole call timeout */
        int brief = c->timeout_ms < 1000 ? c->timeout_ms : 1000;
        nn_setsockopt(c->nn, NN_SOL_SOCKET, NN_SNDTIMEO, &brief, sizeof brief);
        nn_setsockopt(c->nn, NN_SOL_SOCKET, NN_RCVTIMEO, &brief, sizeof brief);
        say_close(c);
    }
    pthread_mutex_unlock(&c->mu);
    nn_close(c->nn);
    /* Views and put buffers still held are invalid now (vkv.h): every set
     * goes, retired ones included. */
    vkvc_slabs_free_all(c);
    vkvc_lidx_swap(c, NULL); /* no lookup runs any more (vkv.h) */
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int vkv_delete(vkv_client *c, const vkv_key *keys, size_t n, size_t *deleted)
{
    if (!c || (n && !keys) || n > VKVP_MAX_KEYS)
        return VKV_EINVAL;
    vkvp_request rq;
    vkvp_reply *rep;
    vkvp_request_init(&rq, VKVP_DELETE, 0);
    rq.u.del.session = c->session;
    rq.u.del.keys = keys;
    rq.u.del.nkeys = (uint32_t)n;
    int rc = vkvc_call(c, &rq, &rep, NULL, 0);
    if (rc)
        return rc;
    if (deleted)
        *deleted = rep->u.del.count;
    vkvp_reply_free(rep);
    return 0;
}

int vkv_stats(vkv_client *c, vkv_stat *out, size_t cap, size_t *n)
{
    if (!c || (cap && !out))
        return VKV_EINVAL;
    vkvp_request rq;
    vkvp_reply *rep;
    vkvp_request_init(&rq, VKVP_STATS, 0);
    rq.u.stats.has_session = true;
    rq.u.stats.session = c->session;
    int rc = vkvc_call(c, &rq, &rep, NULL, 0);
    if (rc)
        return rc;
    size_t k = rep->u.stats.ncounters;
    for (size_t i = 0; i < k && i < cap; i++) {
        snprintf(out[i].name, sizeof out[i].name, "%.*s", (int)rep->u.stats.counters[i].name.len,
                 rep->u.stats.counters[i].name.ptr);
        out[i].value = rep->u.stats.counters[i].value;
    }
    if (n)
        *n = k;
    vkvp_reply_free(rep);
    return 0;
}

uint64_t vkv_stat_get(const vkv_stat *stats, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(stats[i].name, name) == 0)
            return stats[i].value;
    return 0;
}

int vkv_ping(vkv_client *c)
{
    if (!c)
        return VKV_EINVAL;
    vkvp_request rq;
    vkvp_reply *rep;
    vkvp_request_init(&rq, VKVP_PING, 0);
    rq.u.ping.has_session = true;
    rq.u.ping.session = c->session;
    int rc = vkvc_call(c, &rq, &rep, NULL, 0);
    if (rc == 0)
        vkvp_reply_free(rep);
    return rc;
}
