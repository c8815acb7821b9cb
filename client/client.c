/* libvkv: connection, session, slab mappings, lookup/fetch/put; see vkv/vkv.h. */
#include <errno.h>
#include <fcntl.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "client/client_cuda.h"
#include "client/client_internal.h"
#include "proto/fdrec.h"
#include "common/clock.h"
#include "common/log.h"
#include "proto/proto.h"
#include "proto/shmidx.h"
#include "vkv/attend.h"
#include "vkv/vkv.h"

/* Longer than the daemon's 10 s wait for cold restores (daemon/server.c
 * DEFER_LIMIT_MS), so a FETCH that restores is answered, not timed out. */
#define DEFAULT_TIMEOUT_MS 15000
#define NS_MAX             255

struct slab_map {
    uint64_t id;
    uint64_t size;
    int fd;
    uint8_t *base; /* MAP_SHARED RW mapping of the whole slab (put buffers) */
    uint8_t *ro;   /* MAP_SHARED read-only mapping of it (fetch views): a
                    * stray write through a view faults instead of changing
                    * a READY block other workers read */
};

/* The mappings of one daemon incarnation (one HELLO). Reference-counted:
 * the client holds one reference while the set is current, every fetch and
 * put obtained through it one more, so views and put buffers handed out
 * before a daemon restart keep pointing at the memory they were given (the
 * old daemon's memfd pages stay alive while mapped) and never at the new
 * daemon's blocks. Freed (unmapped) when the last reference goes. Guarded by
 * the client's mutex. */
struct slabset {
    struct slabset *next; /* the client's list of live sets */
    int refs;
    struct slab_map *slabs; /* host backend */
    uint32_t nslabs;
    vkvc_cuda_slab *cslabs; /* cuda backend */
    uint32_t ncslabs;
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
    int backend;          /* vkvp_backend */
    struct slabset *set;  /* current mappings (NULL when admin/disconnected) */
    struct slabset *sets; /* every live set, current and retired */
    uint64_t rid_next;
    int in_hello; /* hello() is running: no reconnect from inside it */
    /* LOOKUP from the daemon's lookup index segment (PROTOCOL.md 8a).
     * `lidx` is the current daemon's reader (NULL: none; swapped under mu
     * at HELLO); lookups read through it without the mutex while counted in
     * lidx_users, so a reader replaced at a reconnect is kept on
     * lidx_retired until no lookup can hold it. */
    vkvp_shmidx_reader *_Atomic lidx;
    atomic_int lidx_users;
    struct lidx_retired *lidx_retired;
    bool lidx_off;                 /* VKV_LOOKUP_SHM=0 */
    _Atomic uint64_t last_rt_ms;   /* monotonic time of the last reply */
    _Atomic uint64_t keepalive_ms; /* a LOOKUP takes the round trip after this
                                    * much silence, keeping the session alive */
    int lidx_fd;                   /* index fd from the side channel (-1) */
    uint64_t lidx_size;
};

/* A reader replaced at a reconnect, freed once no lookup uses readers. */
struct lidx_retired {
    struct lidx_retired *next;
    vkvp_shmidx_reader *r;
};

/* How a block spread over several page runs was made contiguous. Host: a
 * window of MAP_FIXED mappings of the slab memfd (shared, so writes land in
 * the arena). CUDA: a device buffer gathered from the runs (fetch) or
 * scattered back to them before COMMIT (put). Zeroed when the block is one
 * run and the view points straight into the slab. Freed by stitch_free. */
struct stitch {
    void *base;
    size_t len;
    int device;     /* base is a device buffer */
    uint32_t nruns; /* device: the runs the buffer mirrors */
    void **runs;
    size_t *run_len;
};

struct vkv_fetch {
    uint64_t gen;
    uint64_t lease;
    size_t n;
    vkv_view *views;
    struct stitch *st;               /* per view */
    uint8_t (*ident)[VKV_IDENT_LEN]; /* per view: (namespace, key) identity */
    struct slabset *set;             /* a reference: the mappings the views point into */
    int backend;
};

struct vkv_put {
    uint64_t gen;
    uint64_t lease;
    void *data;
    size_t size;
    struct stitch st;
    int device; /* data is device memory */
    uint8_t ident[VKV_IDENT_LEN];
    struct slabset *set; /* a reference, as in vkv_fetch */
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

/* Unmaps and closes every slab of `set` and frees it. */
static void set_free(struct slabset *set)
{
    if (!set)
        return;
    for (uint32_t i = 0; i < set->nslabs; i++) {
        if (set->slabs[i].base)
            munmap(set->slabs[i].base, set->slabs[i].size);
        if (set->slabs[i].ro)
            munmap(set->slabs[i].ro, set->slabs[i].size);
        if (set->slabs[i].fd >= 0)
            close(set->slabs[i].fd);
    }
    free(set->slabs);
    if (set->cslabs) {
        vkvc_cuda_close_slabs(set->cslabs, set->ncslabs);
        free(set->cslabs);
    }
    free(set);
}

/* Drops one reference to `set` (caller holds c->mu); the last one unmaps
 * it and takes it off the client's list. */
static void set_unref(vkv_client *c, struct slabset *set)
{
    if (!set || --set->refs > 0)
        return;
    for (struct slabset **pp = &c->sets; *pp; pp = &(*pp)->next)
        if (*pp == set) {
            *pp = set->next;
            break;
        }
    set_free(set);
}

/* Retires the current mappings: they live on while fetches or puts made
 * through them exist. Caller holds c->mu (or is the only user). */
static void unmap_slabs(vkv_client *c)
{
    struct slabset *set = c->set;
    c->set = NULL;
    set_unref(c, set);
}

/* CUDA backend: opens every slab's IPC handle on the current device (the
 * mappings are cached process-wide by handle bytes). */
static int map_slabs_cuda(struct slabset *set, const vkvp_hello_rep *h)
{
    set->cslabs = calloc(h->nslabs ? h->nslabs : 1, sizeof *set->cslabs);
    if (!set->cslabs)
        return VKV_ENOMEM;
    for (uint32_t i = 0; i < h->nslabs; i++) {
        if (h->slabs[i].handle_len != VKVC_CUDA_HANDLE_LEN || h->slabs[i].id != i)
            return VKV_EPROTO;
        set->cslabs[i].id = h->slabs[i].id;
        set->cslabs[i].size = h->slabs[i].size;
        memcpy(set->cslabs[i].handle, h->slabs[i].handle, VKVC_CUDA_HANDLE_LEN);
    }
    int rc = vkvc_cuda_open_slabs(set->cslabs, h->nslabs);
    if (rc == 0)
        set->ncslabs = h->nslabs;
    return rc;
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

/* The fd path a HELLO reply names must be a file directly inside the
 * client's own runtime dir. Returns VKV_OK or VKV_EPROTO. */
static int check_fd_path(const vkv_client *c, const vkvp_str *p, char *out, size_t cap)
{
    size_t dl = strlen(c->rundir);
    if (p->len == 0 || p->len >= cap || memchr(p->ptr, '\0', p->len))
        return VKV_EPROTO;
    memcpy(out, p->ptr, p->len);
    out[p->len] = '\0';
    if (p->len <= dl + 1 || strncmp(out, c->rundir, dl) != 0 || out[dl] != '/' ||
        strchr(out + dl + 1, '/') != NULL) {
        VKV_WARN("libvkv: daemon named fd channel %s outside its runtime dir %s", out, c->rundir);
        return VKV_EPROTO;
    }
    return VKV_OK;
}

/* A slab fd from the side channel must be a memfd of the announced size,
 * sealed against shrinking and growing (so a mapping can never fault).
 * Returns VKV_OK or VKV_EPROTO. */
static int check_slab_fd(int fd, uint64_t size)
{
    struct stat sb;
    int seals = fcntl(fd, F_GET_SEALS);
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != size || seals < 0 ||
        (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
        return VKV_EPROTO;
    return VKV_OK;
}

/* Receives one side-channel message: a 16-byte payload [id, size] (u64 LE
 * each) with one fd attached. *fd gets the fd when one came (the caller
 * closes it), else -1. Returns 0, VKV_ETIMEDOUT, VKV_ECONN (short read or
 * end of file) or VKV_EPROTO (no fd). */
static int recv_fd_msg(int s, uint64_t *id, uint64_t *size, int *fd)
{
    uint8_t payload[VKVP_FD_SLAB_LEN];
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
    *fd = -1;
    ssize_t r = recvmsg(s, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
    struct cmsghdr *cm = r > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
    if (cm && cm->cmsg_type == SCM_RIGHTS && cm->cmsg_len == CMSG_LEN(sizeof(int)))
        memcpy(fd, CMSG_DATA(cm), sizeof *fd);
    if (r != (ssize_t)sizeof payload)
        return r < 0 && errno == EAGAIN ? VKV_ETIMEDOUT : VKV_ECONN;
    if (*fd < 0)
        return VKV_EPROTO;
    vkvp_fd_slab_decode(payload, id, size);
    return 0;
}

/* After the slabs, a daemon that has a lookup index sends it as one more
 * message [VKVP_SHMIDX_FD_ID, size] + fd; an older daemon (or one without
 * an index) just closes. Keeps the fd in c->lidx_fd (hello() maps it). */
static void recv_index(vkv_client *c, int s)
{
    int fd = -1;
    uint64_t id = 0, size = 0;
    int r = recv_fd_msg(s, &id, &size, &fd);
    if (fd >= 0 && (r != 0 || id != VKVP_SHMIDX_FD_ID)) {
        close(fd);
        fd = -1;
    }
    c->lidx_fd = fd;
    c->lidx_size = size;
}

/* Frees the retired readers when no lookup is reading through any reader
 * (c->mu held). */
static void lidx_reclaim(vkv_client *c)
{
    if (atomic_load(&c->lidx_users) != 0)
        return;
    while (c->lidx_retired) {
        struct lidx_retired *n = c->lidx_retired->next;
        vkvp_shmidx_reader_close(c->lidx_retired->r);
        free(c->lidx_retired);
        c->lidx_retired = n;
    }
}

/* Makes `r` (may be NULL) the current reader, retiring the previous one
 * (c->mu held). A lookup that counted itself in lidx_users before this
 * exchange may still read the old one; one that counts itself after it
 * loads the new one (both sides seq_cst), so the old one is freed only when
 * lidx_users is seen at 0 after the exchange. */
static void lidx_swap(vkv_client *c, vkvp_shmidx_reader *r)
{
    vkvp_shmidx_reader *old = atomic_exchange(&c->lidx, r);
    if (old) {
        struct lidx_retired *rt = malloc(sizeof *rt);
        if (rt) {
            rt->r = old;
            rt->next = c->lidx_retired;
            c->lidx_retired = rt;
        } else {
            VKV_WARN("libvkv: out of memory retiring a lookup index mapping: it stays mapped");
        }
    }
    lidx_reclaim(c);
}

/* Receives the slab fds over the side channel and maps them. `slabs` is the
 * HELLO reply's table. Returns 0 or an error. */
static int map_slabs(vkv_client *c, struct slabset *set, const vkvp_hello_rep *h)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int rc = check_fd_path(c, &h->fd_path, sa.sun_path, sizeof sa.sun_path);
    if (rc)
        return rc;
    set->slabs = calloc(h->nslabs ? h->nslabs : 1, sizeof *set->slabs);
    if (!set->slabs)
        return VKV_ENOMEM;
    for (uint32_t i = 0; i < h->nslabs; i++) {
        set->slabs[i].id = h->slabs[i].id;
        set->slabs[i].size = h->slabs[i].size;
        set->slabs[i].fd = -1;
    }
    set->nslabs = c->backend == VKVP_BACKEND_CUDA ? 0 : h->nslabs;
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return VKV_ESYS;
    struct timeval tv = {c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    rc = VKV_ECONN;
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) != 0)
        goto out;
    struct ucred cr;
    socklen_t crl = sizeof cr;
    if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &crl) != 0 ||
        (cr.uid != geteuid() && cr.uid != 0)) {
        VKV_WARN("libvkv: fd channel %s is served by uid %u, not by us (uid %u): refused",
                 sa.sun_path, (unsigned)cr.uid, (unsigned)geteuid());
        rc = VKV_EPERM;
        goto out;
    }
    /* the session id, then (one write) the request for the lookup index */
    uint8_t sid[VKVP_FD_HELLO_LEN + 8];
    vkvp_fd_hello_encode(sid, c->session);
    vkvp_put_le64(sid + VKVP_FD_HELLO_LEN, VKVP_SHMIDX_WANT);
    size_t slen = c->lidx_off ? VKVP_FD_HELLO_LEN : sizeof sid;
    if (send(s, sid, slen, MSG_NOSIGNAL) != (ssize_t)slen)
        goto out;
    for (uint32_t got = 0; got < set->nslabs; got++) {
        int fd;
        uint64_t id = 0, size = 0;
        if ((rc = recv_fd_msg(s, &id, &size, &fd)) != 0) {
            if (fd >= 0)
                close(fd);
            goto out;
        }
        struct slab_map *m = NULL;
        for (uint32_t i = 0; i < set->nslabs; i++)
            if (set->slabs[i].id == id)
                m = &set->slabs[i];
        if (!m || m->fd >= 0 || m->size != size || check_slab_fd(fd, size) != 0) {
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
        p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            rc = VKV_ESYS;
            goto out;
        }
        m->ro = p;
    }
    if (!c->lidx_off)
        recv_index(c, s);
    if (c->backend == VKVP_BACKEND_CUDA) {
        /* No fds for device slabs: wait for the daemon to close, so it has
         * bound our pid before HELLO returns. */
        char x;
        (void)recv(s, &x, 1, 0);
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
    if (c->admin) {
        vkvp_reply_free(rep);
        return 0;
    }
    struct slabset *set = calloc(1, sizeof *set);
    if (!set) {
        vkvp_reply_free(rep);
        return VKV_ENOMEM;
    }
    set->refs = 1;
    if (c->backend == VKVP_BACKEND_CUDA) {
        rc = map_slabs_cuda(set, &rep->u.hello);
        /* the fd channel (no fds) tells the daemon our real pid */
        if (rc == 0 && rep->u.hello.fd_path.len)
            rc = map_slabs(c, set, &rep->u.hello);
    } else {
        rc = map_slabs(c, set, &rep->u.hello);
    }
    vkvp_reply_free(rep);
    if (rc) {
        set_free(set);
        return rc;
    }
    c->set = set;
    set->next = c->sets;
    c->sets = set;
    vkvp_shmidx_reader *r = NULL;
    if (c->lidx_fd >= 0) {
        int lrc = vkvp_shmidx_reader_open(c->lidx_fd, c->lidx_size, c->epoch, c->ns, &r);
        if (lrc)
            VKV_WARN("libvkv: lookup index segment refused (%s): LOOKUP takes the round trip",
                     vkv_strerror(lrc));
        close(c->lidx_fd);
        c->lidx_fd = -1;
    }
    lidx_swap(c, r);
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
 * reaped): the old mappings are retired, not unmapped (see struct slabset),
 * then HELLO maps the daemon's current slabs. Caller holds c->mu. */
static int reconnect(vkv_client *c)
{
    unmap_slabs(c);
    lidx_swap(c, NULL);
    c->in_hello = 1;
    int rc = hello(c);
    c->in_hello = 0;
    return rc;
}

/* vkvc_call with c->mu already held by the caller. */
static int call_locked(vkv_client *c, vkvp_request *rq, vkvp_reply **rep, char *why, size_t why_len)
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
    int rc = call_locked(c, rq, rep, why, why_len);
    if (rc != VKV_ECONN && rc != VKV_ETIMEDOUT)
        atomic_store_explicit(&c->last_rt_ms, vkv_now_ms(), memory_order_relaxed);
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
    c->lidx_fd = -1;
    const char *shm = getenv("VKV_LOOKUP_SHM");
    c->lidx_off = shm && strcmp(shm, "0") == 0;
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
    if ((rc = check_rundir(c->rundir, sockpath)) != 0)
        goto fail;
    rc = VKV_ECONN;
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
    lidx_swap(c, NULL);
    pthread_mutex_destroy(&c->mu);
    free(c);
    return rc;
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
    while (c->sets) {
        struct slabset *n = c->sets->next;
        set_free(c->sets);
        c->sets = n;
    }
    c->set = NULL;
    lidx_swap(c, NULL); /* no lookup runs any more (vkv.h) */
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* Answers a LOOKUP from the lookup index segment, without the mutex.
 * Returns 0, or VKV_EBUSY when the round trip must answer: no segment, the
 * segment cannot answer now (see vkvp_shmidx_lookup), or the session has
 * been silent for keepalive_ms (the round trip keeps it from being reaped). */
static int lookup_shm(vkv_client *c, const vkv_key *keys, size_t n, size_t *hits, size_t *cold)
{
    if (vkv_now_ms() - atomic_load_explicit(&c->last_rt_ms, memory_order_relaxed) >=
        atomic_load_explicit(&c->keepalive_ms, memory_order_relaxed))
        return VKV_EBUSY;
    atomic_fetch_add(&c->lidx_users, 1);
    vkvp_shmidx_reader *r = atomic_load(&c->lidx);
    int rc = r ? vkvp_shmidx_lookup(r, keys, n, hits, cold) : VKV_EBUSY;
    atomic_fetch_sub(&c->lidx_users, 1);
    return rc;
}

int vkv_lookup(vkv_client *c, const vkv_key *keys, size_t n, size_t *hits, size_t *cold)
{
    if (!c || (n && !keys) || n > VKVP_MAX_KEYS || !hits)
        return VKV_EINVAL;
    if (!c->admin && lookup_shm(c, keys, n, hits, cold) == 0)
        return 0;
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
static uint8_t *run_addr(const vkv_client *c, const struct slabset *set, const vkvp_extent *e,
                         int for_write)
{
    uint64_t off = e->first_page * c->page_size;
    if (c->backend == VKVP_BACKEND_CUDA)
        return (uint8_t *)set->cslabs[e->slab].dev + off;
    return (for_write ? set->slabs[e->slab].base : set->slabs[e->slab].ro) + off;
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
        st->runs[i] = run_addr(c, c->set, &b->ext[i], 1);
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
 * extent against the current slabs (c->mu held, c->set not NULL).
 * Single-run blocks point into the slab (host mapping or device pointer);
 * others are stitched (see struct stitch) and must be released with
 * stitch_free. */
static int make_view(vkv_client *c, const vkvp_block *b, int for_write, void **data,
                     struct stitch *st)
{
    uint64_t ps = c->page_size, total = 0;
    int cuda = c->backend == VKVP_BACKEND_CUDA;
    const struct slabset *set = c->set;
    memset(st, 0, sizeof *st);
    if (!set)
        return VKV_ECONN;
    uint32_t nslabs = cuda ? set->ncslabs : set->nslabs;
    for (uint32_t i = 0; i < b->next; i++) {
        const vkvp_extent *e = &b->ext[i];
        uint64_t size =
            e->slab < nslabs ? (cuda ? set->cslabs[e->slab].size : set->slabs[e->slab].size) : 0;
        int mapped = e->slab < nslabs &&
                     (cuda ? set->cslabs[e->slab].dev != NULL : set->slabs[e->slab].base != NULL);
        uint64_t pages = size / ps; /* no multiplication of untrusted numbers */
        if (!mapped || e->npages == 0 || e->first_page >= pages ||
            e->npages > pages - e->first_page)
            return VKV_EPROTO;
        total += e->npages * ps;
    }
    if (b->next == 0 || total < b->len)
        return VKV_EPROTO;
    if (b->next == 1) {
        *data = run_addr(c, set, &b->ext[0], for_write);
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
        void *p = mmap(base + off, e->npages * ps, for_write ? PROT_READ | PROT_WRITE : PROT_READ,
                       MAP_SHARED | MAP_FIXED, set->slabs[e->slab].fd, (off_t)(e->first_page * ps));
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

/* Frees a fetch handle's local resources (no daemon call). c->mu held. */
static void fetch_free(vkv_client *c, vkv_fetch *f)
{
    for (size_t i = 0; i < f->n; i++)
        stitch_free(&f->st[i]);
    set_unref(c, f->set);
    free(f->views);
    free(f->st);
    free(f->ident);
    free(f);
}

/* Sends RELEASE for one lease (best effort). c->mu held. *released (may be
 * NULL) gets how many live leases the daemon released (0: it had expired). */
static int release_lease(vkv_client *c, uint64_t lease, uint64_t *released)
{
    vkvp_request rq;
    vkvp_reply *rep;
    vkvp_request_init(&rq, VKVP_RELEASE, 0);
    rq.u.release.session = c->session;
    rq.u.release.leases = &lease;
    rq.u.release.nleases = 1;
    int rc = call_locked(c, &rq, &rep, NULL, 0);
    if (rc == 0) {
        if (released)
            *released = rep->u.release.count;
        vkvp_reply_free(rep);
    }
    return rc;
}

/* The identity of `key` in this client's namespace. */
static void key_ident(const vkv_client *c, const vkv_key *key, uint8_t out[VKV_IDENT_LEN])
{
    vkv_block_ident(c->ns, strlen(c->ns), key->b, out);
}

int vkv_fetch_begin(vkv_client *c, const vkv_key *keys, size_t n, vkv_fetch **out)
{
    if (!c || (n && !keys) || n > VKVP_MAX_KEYS || !out || c->admin)
        return VKV_EINVAL;
    vkvp_request rq;
    vkvp_reply *rep;
    vkvp_request_init(&rq, VKVP_FETCH, 0);
    /* One critical section from the request to the views: a reconnect in
     * another thread cannot swap the mappings in between. */
    pthread_mutex_lock(&c->mu);
    rq.u.fetch.session = c->session;
    rq.u.fetch.keys = keys;
    rq.u.fetch.nkeys = (uint32_t)n;
    int rc = call_locked(c, &rq, &rep, NULL, 0);
    if (rc) {
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    vkv_fetch *f = calloc(1, sizeof *f);
    size_t nb = rep->u.fetch.nblocks;
    if (nb > n) { /* a daemon may not answer more blocks than keys asked */
        rc = VKV_EPROTO;
        goto fail;
    }
    if (f) {
        f->views = calloc(nb ? nb : 1, sizeof *f->views);
        f->st = calloc(nb ? nb : 1, sizeof *f->st);
        f->ident = calloc(nb ? nb : 1, sizeof *f->ident);
    }
    if (!f || !f->views || !f->st || !f->ident) {
        rc = VKV_ENOMEM;
        goto fail;
    }
    f->gen = c->gen;
    f->lease = rep->u.fetch.lease;
    f->backend = c->backend;
    f->set = c->set;
    if (f->set)
        f->set->refs++;
    for (size_t i = 0; i < nb; i++) {
        void *data;
        rc = make_view(c, &rep->u.fetch.blocks[i], 0, &data, &f->st[i]);
        f->n = i + 1;
        if (rc)
            goto fail;
        f->views[i].data = data;
        f->views[i].size = rep->u.fetch.blocks[i].len;
        key_ident(c, &keys[i], f->ident[i]);
    }
    f->n = nb;
    vkvp_reply_free(rep);
    pthread_mutex_unlock(&c->mu);
    *out = f;
    return 0;
fail:
    if (rep->u.fetch.lease)
        release_lease(c, rep->u.fetch.lease, NULL);
    vkvp_reply_free(rep);
    if (f)
        fetch_free(c, f);
    pthread_mutex_unlock(&c->mu);
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

int vkv_fetch_ident(const vkv_fetch *f, size_t i, uint8_t out[VKV_IDENT_LEN])
{
    if (!f || i >= f->n || !out)
        return VKV_EINVAL;
    memcpy(out, f->ident[i], VKV_IDENT_LEN);
    return 0;
}

/* The shared checks of the fetch_decode/attend calls: block i exists, the
 * caller gave its argument, and the view is host memory (device views go to
 * the CUDA entry points with vkv_fetch_ident). */
static int fetch_host_block(const vkv_fetch *f, size_t i, const void *arg)
{
    if (!f || i >= f->n || !arg)
        return VKV_EINVAL;
    return f->backend == VKVP_BACKEND_CUDA ? VKV_ENOTSUP : VKV_OK;
}

int vkv_fetch_decode(const vkv_fetch *f, size_t i, unsigned flags, const vkv_kv_dst *dst)
{
    int rc = fetch_host_block(f, i, dst);
    if (rc)
        return rc;
    vkv_kv_dst d = *dst;
    d.ident = f->ident[i];
    return vkv_decode(f->views[i].data, f->views[i].size, flags, &d);
}

int vkv_fetch_decode_paged(const vkv_fetch *f, size_t i, unsigned flags, const vkv_paged_dst *dst)
{
    int rc = fetch_host_block(f, i, dst);
    if (rc)
        return rc;
    vkv_paged_dst d = *dst;
    d.ident = f->ident[i];
    return vkv_decode_paged(f->views[i].data, f->views[i].size, flags, &d);
}

int vkv_fetch_attend(const vkv_fetch *f, size_t i, unsigned flags, const vkv_attend_args *a)
{
    int rc = fetch_host_block(f, i, a);
    if (rc)
        return rc;
    vkv_attend_args b = *a;
    b.ident = f->ident[i];
    return vkv_attend(f->views[i].data, f->views[i].size, flags, &b);
}

/* Sends RENEW for one lease of the current session. c->mu held. Returns
 * VKV_OK, VKV_ELEASE (it had expired or is unknown) or a call error. */
static int renew_lease(vkv_client *c, uint64_t gen, uint64_t lease)
{
    if (gen != c->gen)
        return VKV_ESTALE;
    if (lease == 0)
        return 0;
    vkvp_request rq;
    vkvp_reply *rep;
    vkvp_request_init(&rq, VKVP_RENEW, 0);
    rq.u.renew.session = c->session;
    rq.u.renew.leases = &lease;
    rq.u.renew.nleases = 1;
    int rc = call_locked(c, &rq, &rep, NULL, 0);
    if (rc)
        return rc;
    rc = rep->u.renew.count == 1 ? 0 : VKV_ELEASE;
    vkvp_reply_free(rep);
    return rc;
}

int vkv_fetch_renew(vkv_client *c, vkv_fetch *f)
{
    if (!c || !f)
        return VKV_EINVAL;
    pthread_mutex_lock(&c->mu);
    int rc = renew_lease(c, f->gen, f->lease);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int vkv_fetch_release(vkv_client *c, vkv_fetch *f)
{
    if (!f)
        return 0;
    if (!c)
        return VKV_EINVAL;
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    if (f->lease && f->gen == c->gen) {
        uint64_t released = 1;
        rc = release_lease(c, f->lease, &released);
        if (rc == 0 && released == 0)
            rc = VKV_ELEASE; /* it had expired: the daemon kept the pages for us */
    }
    fetch_free(c, f);
    pthread_mutex_unlock(&c->mu);
    return rc == VKV_ESTALE || rc == VKV_ESESSION ? 0 : rc;
}

/* Sends ABORT for a lease (best effort). c->mu held. */
static void abort_lease(vkv_client *c, uint64_t lease)
{
    vkvp_request rq;
    vkvp_reply *rep;
    vkvp_request_init(&rq, VKVP_ABORT, 0);
    rq.u.abort.session = c->session;
    rq.u.abort.lease = lease;
    if (call_locked(c, &rq, &rep, NULL, 0) == 0)
        vkvp_reply_free(rep);
}

int vkv_put_begin(vkv_client *c, const vkv_key *key, size_t size, vkv_put **out)
{
    if (!c || !key || !size || !out || c->admin)
        return VKV_EINVAL;
    vkvp_request rq;
    vkvp_reply *rep;
    vkvp_request_init(&rq, VKVP_ALLOC, 0);
    pthread_mutex_lock(&c->mu);
    rq.u.alloc.session = c->session;
    rq.u.alloc.key = *key;
    rq.u.alloc.size = size;
    int rc = call_locked(c, &rq, &rep, NULL, 0);
    if (rc) {
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    vkv_put *p = calloc(1, sizeof *p);
    if (!p) {
        rc = VKV_ENOMEM;
    } else if (rep->u.alloc.block.len != size) {
        rc = VKV_EPROTO; /* the reservation must be exactly what was asked */
    } else {
        p->gen = c->gen;
        p->lease = rep->u.alloc.lease;
        p->size = size;
        p->device = c->backend == VKVP_BACKEND_CUDA;
        key_ident(c, key, p->ident);
        rc = make_view(c, &rep->u.alloc.block, 1, &p->data, &p->st);
    }
    if (rc) {
        abort_lease(c, rep->u.alloc.lease);
        free(p);
        vkvp_reply_free(rep);
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    p->set = c->set;
    p->set->refs++;
    vkvp_reply_free(rep);
    pthread_mutex_unlock(&c->mu);
    *out = p;
    return 0;
}

uint64_t vkvc_put_lease(const vkv_put *p)
{
    return p ? p->lease : 0;
}

void *vkv_put_data(vkv_put *p)
{
    return p ? p->data : NULL;
}

size_t vkv_put_size(const vkv_put *p)
{
    return p ? p->size : 0;
}

int vkv_put_renew(vkv_client *c, vkv_put *p)
{
    if (!c || !p)
        return VKV_EINVAL;
    pthread_mutex_lock(&c->mu);
    int rc = renew_lease(c, p->gen, p->lease);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* Binds the written block to the reservation's (namespace, key) in place,
 * so the daemon (at COMMIT, spill, restore) and readers can tell it from any
 * other key's block. Device memory: through a host copy of the header. */
static int bind_put(vkv_put *p)
{
    if (!p->device)
        return vkv_block_bind(p->data, p->size, p->ident);
    if (p->size < VKV_BLOCK_HEADER_SIZE)
        return VKV_ETRUNC;
    uint8_t hdr[VKV_BLOCK_HEADER_SIZE];
    int rc = vkvc_cuda_copy(hdr, p->data, sizeof hdr);
    /* vkv_block_bind touches only the 256 header bytes */
    if (rc == 0)
        rc = vkv_block_bind(hdr, p->size, p->ident);
    if (rc == 0)
        rc = vkvc_cuda_copy(p->data, hdr, sizeof hdr);
    return rc;
}

/* Sends COMMIT or ABORT for a reservation and frees it. */
static int put_finish(vkv_client *c, vkv_put *p, vkvp_op op)
{
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    if (p->gen != c->gen) {
        rc = VKV_ESTALE;
    } else {
        vkvp_request rq;
        vkvp_reply *rep;
        if (op == VKVP_COMMIT) {
            rc = bind_put(p);
            if (rc)
                op = VKVP_ABORT;
        }
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
        int crc = call_locked(c, &rq, &rep, NULL, 0);
        if (crc == 0)
            vkvp_reply_free(rep);
        rc = rc ? rc : crc;
        if (rc && op == VKVP_COMMIT && rc != VKV_ESTALE && rc != VKV_ELEASE && rc != VKV_ESESSION &&
            rc != VKV_ETIMEDOUT && rc != VKV_ECONN)
            abort_lease(c, p->lease); /* the daemon refused the block: not WRITING */
    }
    stitch_free(&p->st);
    set_unref(c, p->set);
    pthread_mutex_unlock(&c->mu);
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

int vkv_put_chunk(vkv_client *c, const vkv_key *key, const vkv_shape *shape, const vkv_kv_src *src,
                  int *stored)
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
    if (p->device) {
        /* cuda backend: the reservation is device memory, the CPU encoder
         * writes a host copy that is then moved in (GPU workers encode in
         * place with vkv_cuda_encode into vkv_put_data instead) */
        void *host = malloc(size);
        rc = host ? vkv_encode(shape, &c->spec, src, host, size) : VKV_ENOMEM;
        if (rc == 0)
            rc = vkvc_cuda_copy(p->data, host, size);
        free(host);
    } else {
        rc = vkv_encode(shape, &c->spec, src, vkv_put_data(p), size);
    }
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
