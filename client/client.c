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

#include "client_cuda.h"
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
    struct slab_map *slabs;     /* host backend */
    uint32_t nslabs;
    vkvc_cuda_slab *cslabs;     /* cuda backend */
    uint32_t ncslabs;
    uint64_t rid_next;
};

/* How a block spread over several page runs was made contiguous. Host: a
 * window of MAP_FIXED mappings of the slab memfd (shared, so writes land in
 * the arena). CUDA: a device buffer gathered from the runs (fetch) or
 * scattered back to them before COMMIT (put). Zeroed when the block is one
 * run and the view points straight into the slab. Freed by stitch_free. */
struct stitch {
    void *base;
    size_t len;
    int device;      /* base is a device buffer */
    uint32_t nruns;  /* device: the runs the buffer mirrors */
    void **runs;
    size_t *run_len;
};

struct vkv_fetch {
    uint64_t gen;
    uint64_t lease;
    size_t n;
    vkv_view *views;
    struct stitch *st; /* per view */
};

struct vkv_put {
    uint64_t gen;
    uint64_t lease;
    void *data;
    size_t size;
    struct stitch st;
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
    if (c->cslabs) {
        vkvc_cuda_close_slabs(c->cslabs, c->ncslabs);
        free(c->cslabs);
        c->cslabs = NULL;
        c->ncslabs = 0;
    }
}

/* CUDA backend: opens every slab's IPC handle on the current device (the
 * mappings are cached process-wide by handle bytes). */
static int map_slabs_cuda(vkv_client *c, const vkvp_hello_rep *h)
{
    c->cslabs = calloc(h->nslabs ? h->nslabs : 1, sizeof *c->cslabs);
    if (!c->cslabs)
        return VKV_ENOMEM;
    for (uint32_t i = 0; i < h->nslabs; i++) {
        if (h->slabs[i].handle_len != VKVC_CUDA_HANDLE_LEN || h->slabs[i].id != i)
            return VKV_EPROTO;
        c->cslabs[i].id = h->slabs[i].id;
        c->cslabs[i].size = h->slabs[i].size;
        memcpy(c->cslabs[i].handle, h->slabs[i].handle, VKVC_CUDA_HANDLE_LEN);
    }
    int rc = vkvc_cuda_open_slabs(c->cslabs, h->nslabs);
    if (rc == 0)
        c->ncslabs = h->nslabs;
    return rc;
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
    if (c->admin)
        rc = 0;
    else if (c->backend == VKVP_BACKEND_CUDA)
        rc = map_slabs_cuda(c, &rep->u.hello);
    else
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

/* Frees what a stitch holds and zeroes it. */
static void stitch_free(struct stitch *st)
{
    if (st->base) {
        if (st->device)
            vkvc_cuda_free(st->base);
        else
            munmap(st->base, st->len);
    }
    free(st->runs);
    free(st->run_len);
    memset(st, 0, sizeof *st);
}

/* Address of byte 0 of page run `e` (validated by the caller). */
static uint8_t *run_addr(const vkv_client *c, const vkvp_extent *e)
{
    uint64_t off = e->first_page * c->page_size;
    if (c->backend == VKVP_BACKEND_CUDA)
        return (uint8_t *)c->cslabs[e->slab].dev + off;
    return c->slabs[e->slab].base + off;
}

/* Device-memory view of a multi-run block: a buffer the size of the runs,
 * gathered from them now (fetch) or scattered to them at commit (put). */
static int stitch_device(vkv_client *c, const vkvp_block *b, uint64_t total, int for_write,
                         struct stitch *st)
{
    st->device = 1;
    st->nruns = b->next;
    st->runs = calloc(b->next, sizeof *st->runs);
    st->run_len = calloc(b->next, sizeof *st->run_len);
    if (!st->runs || !st->run_len)
        return VKV_ENOMEM;
    for (uint32_t i = 0; i < b->next; i++) {
        st->runs[i] = run_addr(c, &b->ext[i]);
        st->run_len[i] = (size_t)(b->ext[i].npages * c->page_size);
    }
    int rc = vkvc_cuda_alloc(&st->base, (size_t)total);
    if (rc)
        return rc;
    st->len = (size_t)total;
    if (!for_write)
        rc = vkvc_cuda_gather(st->base, (const void *const *)st->runs, st->run_len, st->nruns);
    return rc;
}

/* Builds a contiguous view of a block from its extents, validating every
 * extent against the slabs. Single-run blocks point into the slab (host
 * mapping or device pointer); others are stitched (see struct stitch) and
 * must be released with stitch_free. */
static int make_view(vkv_client *c, const vkvp_block *b, int for_write, void **data,
                     struct stitch *st)
{
    uint64_t ps = c->page_size, total = 0;
    int cuda = c->backend == VKVP_BACKEND_CUDA;
    uint32_t nslabs = cuda ? c->ncslabs : c->nslabs;
    memset(st, 0, sizeof *st);
    for (uint32_t i = 0; i < b->next; i++) {
        const vkvp_extent *e = &b->ext[i];
        uint64_t size = e->slab < nslabs ? (cuda ? c->cslabs[e->slab].size
                                                 : c->slabs[e->slab].size)
                                         : 0;
        int mapped = e->slab < nslabs && (cuda ? c->cslabs[e->slab].dev != NULL
                                               : c->slabs[e->slab].base != NULL);
        uint64_t pages = size / ps; /* no multiplication of untrusted numbers */
        if (!mapped || e->npages == 0 || e->first_page >= pages ||
            e->npages > pages - e->first_page)
            return VKV_EPROTO;
        total += e->npages * ps;
    }
    if (b->next == 0 || total < b->len)
        return VKV_EPROTO;
    if (b->next == 1) {
        *data = run_addr(c, &b->ext[0]);
        return 0;
    }
    int rc;
    if (cuda) {
        rc = stitch_device(c, b, total, for_write, st);
        if (rc) {
            stitch_free(st);
            return rc;
        }
        *data = st->base;
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
    st->base = base;
    st->len = total;
    return 0;
}

/* Frees a fetch handle's local resources (no daemon call). */
static void fetch_free(vkv_fetch *f)
{
    for (size_t i = 0; i < f->n; i++)
        stitch_free(&f->st[i]);
    free(f->views);
    free(f->st);
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
        f->st = calloc(nb ? nb : 1, sizeof *f->st);
    }
    if (!f || !f->views || !f->st) {
        rc = VKV_ENOMEM;
        goto fail;
    }
    f->gen = c->gen;
    f->lease = rep->u.fetch.lease;
    for (size_t i = 0; i < nb; i++) {
        void *data;
        rc = make_view(c, &rep->u.fetch.blocks[i], 0, &data, &f->st[i]);
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
        rc = make_view(c, &rep->u.alloc.block, 1, &p->data, &p->st);
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
        if (op == VKVP_COMMIT && p->st.device) {
            /* A device-staged multi-run block: copy it into its page runs
             * (synchronously) before the daemon may read it. */
            rc = vkvc_cuda_scatter(p->st.runs, p->st.run_len, p->st.nruns, p->st.base);
            if (rc)
                op = VKVP_ABORT;
        }
        vkvp_request_init(&rq, op, 0);
        if (op == VKVP_COMMIT) {
            rq.u.commit.session = c->session;
            rq.u.commit.lease = p->lease;
        } else {
            rq.u.abort.session = c->session;
            rq.u.abort.lease = p->lease;
        }
        int crc = vkvc_call(c, &rq, &rep, NULL, 0);
        if (crc == 0)
            vkvp_reply_free(rep);
        rc = rc ? rc : crc;
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
    stitch_free(&p->st);
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
