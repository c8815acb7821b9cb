/* libvkv: connection, session, slab mappings, lookup/fetch/put; see vkv/vkv.h. */
#include <errno.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "client_internal.h"
#include "log.h"
#include "proto.h"
#include "vkv/vkv.h"

#define DEFAULT_TIMEOUT_MS 5000
#define NS_MAX 256

struct slab_map {
    uint64_t id;
    uint64_t size;
    int fd;
    uint8_t *base; /* MAP_SHARED RW mapping of the whole slab */
};

struct vkv_client {
    pthread_mutex_t mu;
    int nn;
    int timeout_ms;
    int admin;
    char rundir[512];
    char url[600];
    char ns[NS_MAX + 1]; /* fingerprint + "#" + codec spec */
    char name[65];
    vkv_codec_spec spec;
    uint64_t session;
    uint64_t epoch;
    uint64_t gen; /* bumps at every reconnect; handles of older gens are dead */
    uint64_t page_size;
    int backend; /* vkvp_backend */
    struct slab_map *slabs;
    uint32_t nslabs;
    uint64_t rid_next;
};

struct vkv_fetch {
    uint64_t gen;
    uint64_t lease;
    size_t n;
    vkv_view *views;
    void **stitched; /* per view: separate mapping to munmap, or NULL */
    size_t *stitched_len;
};

struct vkv_put {
    uint64_t gen;
    uint64_t lease;
    void *data;
    size_t size;
    void *stitched;
    size_t stitched_len;
};

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

/* Unmaps and closes every slab. */
static void unmap_slabs(vkv_client *c)
{
    for (uint32_t i = 0; i < c->nslabs; i++) {
        if (c->slabs[i].base)
            munmap(c->slabs[i].base, c->slabs[i].size);
        if (c->slabs[i].fd >= 0)
            close(c->slabs[i].fd);
    }
    free(c->slabs);
    c->slabs = NULL;
    c->nslabs = 0;
}

/* Receives the slab fds over the side channel and maps them. `slabs` is the
 * HELLO reply's table. Returns 0 or an error. */
static int map_slabs(vkv_client *c, const vkvp_hello_rep *h)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (h->fd_path.len == 0 || h->fd_path.len >= sizeof sa.sun_path)
        return VKV_EPROTO;
    memcpy(sa.sun_path, h->fd_path.ptr, h->fd_path.len);
    c->slabs = calloc(h->nslabs ? h->nslabs : 1, sizeof *c->slabs);
    if (!c->slabs)
        return VKV_ENOMEM;
    for (uint32_t i = 0; i < h->nslabs; i++) {
        c->slabs[i].id = h->slabs[i].id;
        c->slabs[i].size = h->slabs[i].size;
        c->slabs[i].fd = -1;
    }
    c->nslabs = h->nslabs;
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return VKV_ESYS;
    struct timeval tv = {c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int rc = VKV_ECONN;
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) != 0)
        goto out;
    uint8_t sid[8];
    for (int i = 0; i < 8; i++)
        sid[i] = (uint8_t)(c->session >> (8 * i));
    if (send(s, sid, sizeof sid, MSG_NOSIGNAL) != (ssize_t)sizeof sid)
        goto out;
    for (uint32_t got = 0; got < h->nslabs; got++) {
        uint8_t payload[16];
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } u;
        struct iovec iov = {payload, sizeof payload};
        struct msghdr mh = {0};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = u.buf;
        mh.msg_controllen = sizeof u.buf;
        ssize_t r = recvmsg(s, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
        if (r != (ssize_t)sizeof payload) {
            rc = r < 0 && errno == EAGAIN ? VKV_ETIMEDOUT : VKV_ECONN;
            goto out;
        }
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        if (!cm || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len != CMSG_LEN(sizeof(int))) {
            rc = VKV_EPROTO;
            goto out;
        }
        int fd;
        memcpy(&fd, CMSG_DATA(cm), sizeof fd);
        uint64_t id = 0, size = 0;
        for (int i = 7; i >= 0; i--) {
            id = id << 8 | payload[i];
            size = size << 8 | payload[8 + i];
        }
        struct slab_map *m = NULL;
        for (uint32_t i = 0; i < c->nslabs; i++)
            if (c->slabs[i].id == id)
                m = &c->slabs[i];
        if (!m || m->fd >= 0 || m->size != size) {
            close(fd);
            rc = VKV_EPROTO;
            goto out;
        }
        m->fd = fd;
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            rc = VKV_ESYS;
            goto out;
        }
        m->base = p;
    }
    rc = 0;
out:
    close(s);
    return rc;
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

/* HELLO + slab mapping. Leaves the client disconnected on error. */
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
    c->session = rep->u.hello.session;
    c->epoch = rep->epoch;
    c->page_size = rep->u.hello.page_size;
    c->backend = rep->u.hello.backend;
    c->gen++;
    if (c->backend != VKVP_BACKEND_HOST)
        rc = VKV_ENOTSUP; /* the CUDA mapping path lives in client_cuda.c (later) */
    else if (!c->admin)
        rc = map_slabs(c, &rep->u.hello);
    vkvp_reply_free(rep);
    if (rc)
        unmap_slabs(c);
    return rc;
}

int vkvc_call(vkv_client *c, vkvp_request *rq, vkvp_reply **rep, char *why, size_t why_len)
{
    pthread_mutex_lock(&c->mu);
    *rep = NULL;
    int rc = call_raw(c, rq, rep, why, why_len);
    if (rc == 0 && (*rep)->epoch != c->epoch) {
        /* The daemon restarted: everything we hold is gone. */
        VKV_INFO("vkvd epoch changed (%016llx -> %016llx): reconnecting",
                 (unsigned long long)c->epoch, (unsigned long long)(*rep)->epoch);
        vkvp_reply_free(*rep);
        *rep = NULL;
        unmap_slabs(c);
        rc = hello(c);
        pthread_mutex_unlock(&c->mu);
        return rc ? rc : VKV_ESTALE;
    }
    if (rc == 0 && (*rep)->status != 0) {
        rc = (*rep)->status;
        vkvp_reply_free(*rep);
        *rep = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
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
    c->admin = opts->admin;
    c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    int rc = VKV_EINVAL;
    if (opts->ns_is_full) {
        const char *hash = opts->ns ? strrchr(opts->ns, '#') : NULL;
        if (opts->codec || opts->admin || !hash || strlen(opts->ns) > NS_MAX ||
            (rc = vkv_codec_spec_parse(hash + 1, &c->spec)) != 0) {
            rc = rc ? rc : VKV_EINVAL;
            goto fail;
        }
        snprintf(c->ns, sizeof c->ns, "%s", opts->ns);
    } else if (opts->codec) {
        if ((rc = vkv_codec_spec_parse(opts->codec, &c->spec)) != 0)
            goto fail;
    } else {
        vkv_codec_spec_default(&c->spec);
    }
    if (!opts->admin && !opts->ns_is_full) {
        char spec[128];
        vkv_codec_spec_format(&c->spec, spec, sizeof spec);
        int n = snprintf(c->ns, sizeof c->ns, "%s#%s", opts->ns, spec);
        if (n < 0 || (size_t)n >= sizeof c->ns) {
            rc = VKV_EINVAL;
            goto fail;
        }
    }
    if (opts->name)
        snprintf(c->name, sizeof c->name, "%s", opts->name);
    vkvc_default_rundir(opts->rundir, c->rundir, sizeof c->rundir);
    snprintf(c->url, sizeof c->url, "ipc://%s/vkvd.sock", c->rundir);
    if (getrandom(&c->rid_next, sizeof c->rid_next, 0) != sizeof c->rid_next)
        c->rid_next = ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)c;
    rc = VKV_ECONN;
    char sockpath[600];
    snprintf(sockpath, sizeof sockpath, "%s/vkvd.sock", c->rundir);
    if (access(sockpath, F_OK) != 0)
        goto fail; /* nanomsg would silently wait for a daemon forever */
    c->nn = nn_socket(AF_SP, NN_REQ);
    if (c->nn < 0)
        goto fail;
    nn_setsockopt(c->nn, NN_SOL_SOCKET, NN_SNDTIMEO, &c->timeout_ms, sizeof c->timeout_ms);
    nn_setsockopt(c->nn, NN_SOL_SOCKET, NN_RCVTIMEO, &c->timeout_ms, sizeof c->timeout_ms);
    int maxsz = -1;
    nn_setsockopt(c->nn, NN_SOL_SOCKET, NN_RCVMAXSIZE, &maxsz, sizeof maxsz);
    if (nn_connect(c->nn, c->url) < 0)
        goto fail;
    if ((rc = hello(c)) != 0)
        goto fail;
    *out = c;
    return 0;
fail:
    if (c->nn >= 0)
        nn_close(c->nn);
    unmap_slabs(c);
    pthread_mutex_destroy(&c->mu);
    free(c);
    return rc;
}

void vkv_close(vkv_client *c)
{
    if (!c)
        return;
    /* Leases die with the session: the daemon reaps a closed socket's
     * session when its pid exits or its TTL passes; there is no CLOSE op. */
    nn_close(c->nn);
    unmap_slabs(c);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int vkv_lookup(vkv_client *c, const vkv_key *keys, size_t n, size_t *hits, size_t *cold)
{
    if (!c || (n && !keys) || n > VKVP_MAX_KEYS || !hits)
        return VKV_EINVAL;
    vkvp_request rq;
    vkvp_reply *rep;
    vkvp_request_init(&rq, VKVP_LOOKUP, 0);
    rq.u.lookup.session = c->session;
    rq.u.lookup.keys = keys;
    rq.u.lookup.nkeys = (uint32_t)n;
    int rc = vkvc_call(c, &rq, &rep, NULL, 0);
    if (rc)
        return rc;
    *hits = rep->u.lookup.hits;
    if (cold)
        *cold = rep->u.lookup.cold;
    vkvp_reply_free(rep);
    return 0;
}

/* Builds a contiguous view of a block from its extents. Single-run blocks
 * point into the slab mapping; others get a stitched mapping of their page
 * runs (returned in *stitched for munmap). Validates every extent. */
static int make_view(vkv_client *c, const vkvp_block *b, void **data, void **stitched,
                     size_t *stitched_len)
{
    uint64_t ps = c->page_size, total = 0;
    *stitched = NULL;
    *stitched_len = 0;
    for (uint32_t i = 0; i < b->next; i++) {
        const vkvp_extent *e = &b->ext[i];
        if (e->slab >= c->nslabs || !c->slabs[e->slab].base ||
            (e->first_page + e->npages) * ps > c->slabs[e->slab].size)
            return VKV_EPROTO;
        total += e->npages * ps;
    }
    if (b->next == 0 || total < b->len)
        return VKV_EPROTO;
    if (b->next == 1) {
        *data = c->slabs[b->ext[0].slab].base + b->ext[0].first_page * ps;
        return 0;
    }
    uint8_t *base = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return VKV_ENOMEM;
    uint64_t off = 0;
    for (uint32_t i = 0; i < b->next; i++) {
        const vkvp_extent *e = &b->ext[i];
        void *p = mmap(base + off, e->npages * ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                       c->slabs[e->slab].fd, (off_t)(e->first_page * ps));
        if (p == MAP_FAILED) {
            munmap(base, total);
            return VKV_ESYS;
        }
        off += e->npages * ps;
    }
    *data = base;
    *stitched = base;
    *stitched_len = total;
    return 0;
}

/* Frees a fetch handle's local resources (no daemon call). */
static void fetch_free(vkv_fetch *f)
{
    for (size_t i = 0; i < f->n; i++)
        if (f->stitched[i])
            munmap(f->stitched[i], f->stitched_len[i]);
    free(f->views);
    free(f->stitched);
    free(f->stitched_len);
    free(f);
}

/* Sends RELEASE for one lease (best effort). */
static int release_lease(vkv_client *c, uint64_t lease)
{
    vkvp_request rq;
    vkvp_reply *rep;
    vkvp_request_init(&rq, VKVP_RELEASE, 0);
    rq.u.release.session = c->session;
    rq.u.release.leases = &lease;
    rq.u.release.nleases = 1;
    int rc = vkvc_call(c, &rq, &rep, NULL, 0);
    if (rc == 0)
        vkvp_reply_free(rep);
    return rc;
}

int vkv_fetch_begin(vkv_client *c, const vkv_key *keys, size_t n, vkv_fetch **out)
{
    if (!c || (n && !keys) || n > VKVP_MAX_KEYS || !out || c->admin)
        return VKV_EINVAL;
    vkvp_request rq;
    vkvp_reply *rep;
    vkvp_request_init(&rq, VKVP_FETCH, 0);
    rq.u.fetch.session = c->session;
    rq.u.fetch.keys = keys;
    rq.u.fetch.nkeys = (uint32_t)n;
    int rc = vkvc_call(c, &rq, &rep, NULL, 0);
    if (rc)
        return rc;
    vkv_fetch *f = calloc(1, sizeof *f);
    size_t nb = rep->u.fetch.nblocks;
    if (f) {
        f->views = calloc(nb ? nb : 1, sizeof *f->views);
        f->stitched = calloc(nb ? nb : 1, sizeof *f->stitched);
        f->stitched_len = calloc(nb ? nb : 1, sizeof *f->stitched_len);
    }
    if (!f || !f->views || !f->stitched || !f->stitched_len) {
        rc = VKV_ENOMEM;
        goto fail;
    }
    f->gen = c->gen;
    f->lease = rep->u.fetch.lease;
    for (size_t i = 0; i < nb; i++) {
        void *data;
        rc = make_view(c, &rep->u.fetch.blocks[i], &data, &f->stitched[i], &f->stitched_len[i]);
        f->n = i + 1;
        if (rc)
            goto fail;
        f->views[i].data = data;
        f->views[i].size = rep->u.fetch.blocks[i].len;
    }
    f->n = nb;
    vkvp_reply_free(rep);
    *out = f;
    return 0;
fail:
    if (rep->u.fetch.lease)
        release_lease(c, rep->u.fetch.lease);
    vkvp_reply_free(rep);
    if (f)
        fetch_free(f);
    return rc;
}

size_t vkv_fetch_count(const vkv_fetch *f)
{
    return f ? f->n : 0;
}

vkv_view vkv_fetch_view(const vkv_fetch *f, size_t i)
{
    vkv_view v = {NULL, 0};
    if (f && i < f->n)
        v = f->views[i];
    return v;
}

int vkv_fetch_release(vkv_client *c, vkv_fetch *f)
{
    if (!f)
        return 0;
    int rc = 0;
    if (f->lease && f->gen == c->gen)
        rc = release_lease(c, f->lease);
    fetch_free(f);
    return rc == VKV_ESTALE ? 0 : rc;
}

int vkv_put_begin(vkv_client *c, const vkv_key *key, size_t size, vkv_put **out)
{
    if (!c || !key || !size || !out || c->admin)
        return VKV_EINVAL;
    vkvp_request rq;
    vkvp_reply *rep;
    vkvp_request_init(&rq, VKVP_ALLOC, 0);
    rq.u.alloc.session = c->session;
    rq.u.alloc.key = *key;
    rq.u.alloc.size = size;
    int rc = vkvc_call(c, &rq, &rep, NULL, 0);
    if (rc)
        return rc;
    vkv_put *p = calloc(1, sizeof *p);
    if (!p) {
        rc = VKV_ENOMEM;
    } else {
        p->gen = c->gen;
        p->lease = rep->u.alloc.lease;
        p->size = size;
        rc = make_view(c, &rep->u.alloc.block, &p->data, &p->stitched, &p->stitched_len);
    }
    if (rc) {
        vkvp_request ab;
        vkvp_reply *r2;
        vkvp_request_init(&ab, VKVP_ABORT, 0);
        ab.u.abort.session = c->session;
        ab.u.abort.lease = rep->u.alloc.lease;
        if (vkvc_call(c, &ab, &r2, NULL, 0) == 0)
            vkvp_reply_free(r2);
        free(p);
        vkvp_reply_free(rep);
        return rc;
    }
    vkvp_reply_free(rep);
    *out = p;
    return 0;
}

void *vkv_put_data(vkv_put *p)
{
    return p ? p->data : NULL;
}

size_t vkv_put_size(const vkv_put *p)
{
    return p ? p->size : 0;
}

/* Sends COMMIT or ABORT for a reservation and frees it. */
static int put_finish(vkv_client *c, vkv_put *p, vkvp_op op)
{
    int rc = 0;
    if (p->gen != c->gen) {
        rc = VKV_ESTALE;
    } else {
        vkvp_request rq;
        vkvp_reply *rep;
        vkvp_request_init(&rq, op, 0);
        if (op == VKVP_COMMIT) {
            rq.u.commit.session = c->session;
            rq.u.commit.lease = p->lease;
        } else {
            rq.u.abort.session = c->session;
            rq.u.abort.lease = p->lease;
        }
        rc = vkvc_call(c, &rq, &rep, NULL, 0);
        if (rc == 0)
            vkvp_reply_free(rep);
        if (rc && op == VKVP_COMMIT && rc != VKV_ESTALE && rc != VKV_ELEASE &&
            rc != VKV_ESESSION && rc != VKV_ETIMEDOUT && rc != VKV_ECONN) {
            /* The daemon refused the block: do not leave it WRITING. */
            vkvp_request_init(&rq, VKVP_ABORT, 0);
            rq.u.abort.session = c->session;
            rq.u.abort.lease = p->lease;
            if (vkvc_call(c, &rq, &rep, NULL, 0) == 0)
                vkvp_reply_free(rep);
        }
    }
    if (p->stitched)
        munmap(p->stitched, p->stitched_len);
    free(p);
    return rc;
}

int vkv_put_commit(vkv_client *c, vkv_put *p)
{
    if (!c || !p)
        return VKV_EINVAL;
    return put_finish(c, p, VKVP_COMMIT);
}

int vkv_put_abort(vkv_client *c, vkv_put *p)
{
    if (!c || !p)
        return VKV_EINVAL;
    return put_finish(c, p, VKVP_ABORT);
}

int vkv_put_chunk(vkv_client *c, const vkv_key *key, const vkv_shape *shape,
                  const vkv_kv_src *src, int *stored)
{
    size_t size;
    vkv_put *p = NULL;
    if (stored)
        *stored = 0;
    int rc = vkv_codec_encoded_size(shape, &c->spec, &size);
    if (rc)
        return rc;
    rc = vkv_put_begin(c, key, size, &p);
    if (rc == VKV_EEXIST || rc == VKV_EBUSY)
        return 0;
    if (rc)
        return rc;
    rc = vkv_encode(shape, &c->spec, src, vkv_put_data(p), size);
    if (rc) {
        vkv_put_abort(c, p);
        return rc;
    }
    rc = vkv_put_commit(c, p);
    if (rc == 0 && stored)
        *stored = 1;
    return rc;
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
