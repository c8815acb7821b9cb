/*
 * client/slabs.c - libvkv's slab mappings: the fd side channel (its path
 * and peer checked, the session id sent, each slab's memfd received,
 * checked and mapped twice, the lookup index fd after them), the cuda
 * backend's IPC handles, and the reference-counted sets of one daemon
 * incarnation's mappings (struct vkvc_slabset).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "client/client_cuda.h"
#include "client/client_internal.h"
#include "common/log.h"
#include "proto/fdrec.h"
#include "proto/proto.h"
#include "proto/shmidx.h"
#include "vkv/vkv.h"

/* Unmaps and closes every slab of `set` and frees it. */
static void set_free(struct vkvc_slabset *set)
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

void vkvc_set_unref(vkv_client *c, struct vkvc_slabset *set)
{
    if (!set || --set->refs > 0)
        return;
    for (struct vkvc_slabset **pp = &c->sets; *pp; pp = &(*pp)->next)
        if (*pp == set) {
            *pp = set->next;
            break;
        }
    set_free(set);
}

void vkvc_slabs_retire(vkv_client *c)
{
    struct vkvc_slabset *set = c->set;
    c->set = NULL;
    vkvc_set_unref(c, set);
}

/* CUDA backend: opens every slab's IPC handle on the current device (the
 * mappings are cached process-wide by handle bytes). */
static int map_slabs_cuda(struct vkvc_slabset *set, const vkvp_hello_rep *h)
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
 * an index) just closes. Keeps the fd in c->lidx_fd (vkvc_lidx_open maps it). */
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

/* Fills set's host slab table from the HELLO reply's (no fd yet; none at
 * all on the cuda backend, whose fd channel carries no fds). Returns 0 or
 * VKV_ENOMEM. */
static int slabs_table(const vkv_client *c, struct vkvc_slabset *set, const vkvp_hello_rep *h)
{
    set->slabs = calloc(h->nslabs ? h->nslabs : 1, sizeof *set->slabs);
    if (!set->slabs)
        return VKV_ENOMEM;
    for (uint32_t i = 0; i < h->nslabs; i++) {
        set->slabs[i].id = h->slabs[i].id;
        set->slabs[i].size = h->slabs[i].size;
        set->slabs[i].fd = -1;
    }
    set->nslabs = c->backend == VKVP_BACKEND_CUDA ? 0 : h->nslabs;
    return 0;
}

/* Connects to the fd channel at sa (with c's timeouts) and checks that our
 * own uid or root serves it. On success *s is the socket (the caller
 * closes it). Returns 0, VKV_ESYS, VKV_ECONN or VKV_EPERM (logged). */
static int fdchan_connect(const vkv_client *c, const struct sockaddr_un *sa, int *s)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return VKV_ESYS;
    struct timeval tv = {c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) != 0) {
        close(fd);
        return VKV_ECONN;
    }
    struct ucred cr;
    socklen_t crl = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) != 0 ||
        (cr.uid != geteuid() && cr.uid != 0)) {
        VKV_WARN("libvkv: fd channel %s is served by uid %u, not by us (uid %u): refused",
                 sa->sun_path, (unsigned)cr.uid, (unsigned)geteuid());
        close(fd);
        return VKV_EPERM;
    }
    *s = fd;
    return 0;
}

/* Sends the session id, then (in the same write) the request for the
 * lookup index unless VKV_LOOKUP_SHM=0. Returns 0 or VKV_ECONN. */
static int fdchan_send_hello(const vkv_client *c, int s)
{
    uint8_t sid[VKVP_FD_HELLO_LEN + 8];
    vkvp_fd_hello_encode(sid, c->session);
    vkvp_put_le64(sid + VKVP_FD_HELLO_LEN, VKVP_SHMIDX_WANT);
    size_t slen = c->lidx_off ? VKVP_FD_HELLO_LEN : sizeof sid;
    return send(s, sid, slen, MSG_NOSIGNAL) == (ssize_t)slen ? 0 : VKV_ECONN;
}

/* Receives one slab's memfd from the side channel s, checks it against
 * set's table entry of that id (announced, not yet received, the same
 * size; see check_slab_fd) and maps it read-write and read-only into the
 * entry, which then owns the fd. Returns 0, a recv_fd_msg error,
 * VKV_EPROTO or VKV_ESYS. */
static int recv_slab(struct vkvc_slabset *set, int s)
{
    int fd;
    uint64_t id = 0, size = 0;
    int rc = recv_fd_msg(s, &id, &size, &fd);
    if (rc) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    struct vkvc_slab_map *m = NULL;
    for (uint32_t i = 0; i < set->nslabs; i++)
        if (set->slabs[i].id == id)
            m = &set->slabs[i];
    if (!m || m->fd >= 0 || m->size != size || check_slab_fd(fd, size) != 0) {
        close(fd);
        return VKV_EPROTO;
    }
    m->fd = fd;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return VKV_ESYS;
    m->base = p;
    p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return VKV_ESYS;
    m->ro = p;
    return 0;
}

/* Receives the slab fds over the side channel the HELLO reply h names and
 * maps them into set; then the lookup index fd (into c->lidx_fd). Returns
 * 0 or an error (what was mapped is freed with the set). */
static int map_slabs(vkv_client *c, struct vkvc_slabset *set, const vkvp_hello_rep *h)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int rc = check_fd_path(c, &h->fd_path, sa.sun_path, sizeof sa.sun_path);
    if (rc)
        return rc;
    if ((rc = slabs_table(c, set, h)) != 0)
        return rc;
    int s;
    if ((rc = fdchan_connect(c, &sa, &s)) != 0)
        return rc;
    rc = fdchan_send_hello(c, s);
    for (uint32_t got = 0; rc == 0 && got < set->nslabs; got++)
        rc = recv_slab(set, s);
    if (rc == 0 && !c->lidx_off)
        recv_index(c, s);
    if (rc == 0 && c->backend == VKVP_BACKEND_CUDA) {
        /* No fds for device slabs: wait for the daemon to close, so it has
         * bound our pid before HELLO returns. */
        char x;
        (void)recv(s, &x, 1, 0);
    }
    close(s);
    return rc;
}

int vkvc_slabs_map(vkv_client *c, const vkvp_hello_rep *h)
{
    struct vkvc_slabset *set = calloc(1, sizeof *set);
    if (!set)
        return VKV_ENOMEM;
    set->refs = 1;
    int rc;
    if (c->backend == VKVP_BACKEND_CUDA) {
        rc = map_slabs_cuda(set, h);
        /* the fd channel (no fds) tells the daemon our real pid */
        if (rc == 0 && h->fd_path.len)
            rc = map_slabs(c, set, h);
    } else {
        rc = map_slabs(c, set, h);
    }
    if (rc) {
        set_free(set);
        return rc;
    }
    c->set = set;
    set->next = c->sets;
    c->sets = set;
    return 0;
}

void vkvc_slabs_free_all(vkv_client *c)
{
    while (c->sets) {
        struct vkvc_slabset *n = c->sets->next;
        set_free(c->sets);
        c->sets = n;
    }
    c->set = NULL;
}
