/*
 * tests/daemon/security/security_test.c - the daemon's local security
 * properties, checked against a real vkvd (see SECURITY.md):
 *  1. the runtime directory is 0700 and ours; the sockets are not
 *     accessible to others;
 *  2. another uid (a child that setuid()s to nobody, 65534) can connect to
 *     neither socket; and even with the directory and the fd socket opened
 *     up on purpose, the fd channel's SO_PEERCRED check sends it no fds
 *     (needs root; skipped with a note otherwise);
 *  3. namespace isolation for non-admin sessions, over the raw protocol: a
 *     session of namespace B cannot look up, fetch, list, describe (INFO) or
 *     delete namespace A's keys;
 *  4. the memfd slabs received over the fd channel (docs/PROTOCOL.md §8)
 *     are sealed: ftruncate to shrink or grow fails with EPERM, and the
 *     seals themselves are sealed.
 * Exit 0 on success, 1 with a message.
 */
#include <grp.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common.h"
#include "vkv/codec.h"

static const char *const g_flags[] = {
    "--capacity",         "16M", "--slab-size", "8M", "--page-size", "64K",
    "--reap-interval-ms", "100", "--cold-max",  "0",  NULL};

/* One request/reply exchange on a REQ socket. Returns the reply (caller
 * frees with vkvp_reply_free); exits the test on a transport error. */
static vkvp_reply *rpc(int s, const vkvp_request *req)
{
    void *frame = NULL;
    size_t len = 0;
    CHECK(vkvp_encode_request(req, &frame, &len) == 0, "encode %s", vkvp_op_name((int)req->op));
    CHECK(nn_send(s, frame, len, 0) == (int)len, "nn_send");
    free(frame);
    void *buf = NULL;
    int n = nn_recv(s, &buf, NN_MSG, 0);
    CHECK(n >= 0, "nn_recv: %s", nn_strerror(nn_errno()));
    vkvp_reply *rep = NULL;
    char why[VKVP_WHY_LEN];
    int rc = vkvp_decode_reply(buf, (size_t)n, req->op, &rep, why, sizeof why);
    nn_freemsg(buf);
    CHECK(rc == 0, "decode reply: %s", why);
    return rep;
}

/* Opens a raw REQ socket to the daemon. */
static int raw_socket(const vkvt_daemon *d)
{
    char url[400];
    snprintf(url, sizeof url, "ipc://%s/vkvd.sock", d->rundir);
    int s = nn_socket(AF_SP, NN_REQ);
    CHECK(s >= 0, "nn_socket");
    int to = 5000;
    CHECK(nn_setsockopt(s, NN_SOL_SOCKET, NN_RCVTIMEO, &to, sizeof to) == 0, "rcvtimeo");
    CHECK(nn_connect(s, url) >= 0, "nn_connect");
    return s;
}

/* Raw HELLO for namespace `ns` (full, with "#spec"); returns the session id
 * and copies the fd channel path into fd_path (cap bytes). */
static uint64_t hello(int s, const char *ns, char *fd_path, size_t cap)
{
    vkvp_request r;
    vkvp_request_init(&r, VKVP_HELLO, 1);
    r.u.hello.ns = vkvp_cstr(ns);
    r.u.hello.pid = (uint64_t)getpid();
    vkvp_reply *rep = rpc(s, &r);
    CHECK(rep->status == 0, "HELLO: %s", vkv_strerror(rep->status));
    uint64_t sid = rep->u.hello.session;
    if (fd_path)
        snprintf(fd_path, cap, "%.*s", (int)rep->u.hello.fd_path.len, rep->u.hello.fd_path.ptr);
    vkvp_reply_free(rep);
    return sid;
}

/* Receives the slab fds from the fd channel at `path` for session `sid`
 * (8-byte LE id out, one SCM_RIGHTS message per slab in). Stores up to cap
 * fds in fds[] (caller closes them); returns how many arrived. */
static int recv_slabs(const char *path, uint64_t sid, int *fds, int cap)
{
    int s = vkvh_unix_connect(path);
    if (s < 0)
        return -1;
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(sid >> (8 * i));
    if (vkvh_write_all(s, b, 8) != 0) {
        /* The server refused us before our id arrived (EPIPE/ECONNRESET):
         * connected, but no fds. */
        close(s);
        return 0;
    }
    int n = 0;
    while (n < cap) {
        uint8_t payload[16];
        struct iovec iov = {payload, sizeof payload};
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } u;
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = u.buf;
        m.msg_controllen = sizeof u.buf;
        ssize_t r = recvmsg(s, &m, MSG_CMSG_CLOEXEC | MSG_WAITALL);
        if (r <= 0)
            break;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            break;
        memcpy(&fds[n++], CMSG_DATA(c), sizeof(int));
    }
    close(s);
    return n;
}

/* Full namespace string as libvkv builds it: "<fingerprint>#<default spec>". */
static void full_ns(const char *fp, char *out, size_t cap)
{
    vkv_codec_spec spec;
    vkv_codec_spec_default(&spec);
    char sp[128];
    vkv_codec_spec_format(&spec, sp, sizeof sp);
    snprintf(out, cap, "%s#%s", fp, sp);
}

/* 1. directory and socket modes. */
static void check_modes(const vkvt_daemon *d)
{
    struct stat st;
    CHECK(stat(d->rundir, &st) == 0, "stat rundir");
    CHECK(S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700, "rundir mode %o",
          (unsigned)(st.st_mode & 0777));
    CHECK(st.st_uid == geteuid(), "rundir owner %u", (unsigned)st.st_uid);
    const char *names[] = {"vkvd.sock", "vkvd.fds"};
    for (int i = 0; i < 2; i++) {
        char p[400];
        snprintf(p, sizeof p, "%s/%s", d->rundir, names[i]);
        CHECK(stat(p, &st) == 0, "stat %s", p);
        CHECK((st.st_mode & 0077) == 0, "%s is accessible to others: %o", names[i],
              (unsigned)(st.st_mode & 0777));
    }
    printf("modes: rundir 0700 and ours, sockets private\n");
}

/* Child for part 2: drops to nobody and tries the sockets. Exit codes:
 * 0 = everything refused as expected; 10+ = a failure. */
static int nobody_child(const vkvt_daemon *d, int opened_up, uint64_t sid)
{
    if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
        return 10;
    char fdp[400], sock[400];
    snprintf(fdp, sizeof fdp, "%s/vkvd.fds", d->rundir);
    snprintf(sock, sizeof sock, "%s/vkvd.sock", d->rundir);
    if (!opened_up) {
        int s = vkvh_unix_connect(sock);
        if (s >= 0)
            return 11; /* reached the nanomsg socket */
        s = vkvh_unix_connect(fdp);
        if (s >= 0)
            return 12;
        return 0;
    }
    int fds[64];
    int n = recv_slabs(fdp, sid, fds, 64);
    if (n < 0)
        return 13; /* could not even connect: the opening up failed */
    return n == 0 ? 0 : 14;
}

/* Runs nobody_child in a fork and returns its exit status. */
static int run_nobody(const vkvt_daemon *d, int opened_up, uint64_t sid)
{
    pid_t p = fork();
    CHECK(p >= 0, "fork");
    if (p == 0)
        _exit(nobody_child(d, opened_up, sid));
    int st = 0;
    CHECK(waitpid(p, &st, 0) == p, "waitpid");
    return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

/* 2. another uid is refused. */
static void check_other_uid(const vkvt_daemon *d, uint64_t sid)
{
    if (geteuid() != 0) {
        printf("other uid: SKIPPED (not root, cannot setuid)\n");
        return;
    }
    int rc = run_nobody(d, 0, sid);
    CHECK(rc == 0, "nobody reached a socket (child status %d)", rc);
    /* Open the directory and the fd socket to everyone: now only the
     * SO_PEERCRED check stands between nobody and the slabs. */
    char fdp[400];
    snprintf(fdp, sizeof fdp, "%s/vkvd.fds", d->rundir);
    CHECK(chmod(d->rundir, 0711) == 0 && chmod(fdp, 0666) == 0, "chmod");
    rc = run_nobody(d, 1, sid);
    CHECK(chmod(d->rundir, 0700) == 0 && chmod(fdp, 0600) == 0, "chmod back");
    CHECK(rc == 0, "SO_PEERCRED let uid 65534 in (child status %d)", rc);
    printf("other uid: sockets unreachable; fd channel refuses uid 65534 by SO_PEERCRED\n");
}

/* 3. namespace isolation over the raw protocol. */
static void check_namespaces(const vkvt_daemon *d)
{
    /* A stores two blocks through the library. */
    vkv_client *a = NULL;
    CHECK(vkvt_connect(d, "tenant-a", &a) == 0, "connect a");
    vkv_key keys[2] = {vkvt_key(8100, 0), vkvt_key(8100, 1)};
    vkv_shape s;
    memset(&s, 0, sizeof s);
    s.layers = 1;
    s.kv_heads = 1;
    s.head_dim = 16;
    s.tokens = 16;
    s.dtype = VKV_DTYPE_F16;
    for (int i = 0; i < 2; i++) {
        size_t sz = 0;
        void *blk = vkvt_encode_local(&s, vkv_client_codec(a), 8100u + (unsigned)i, &sz);
        vkv_put *p = NULL;
        CHECK(blk && vkv_put_begin(a, &keys[i], sz, &p) == 0, "put_begin");
        memcpy(vkv_put_data(p), blk, sz);
        CHECK(vkv_put_commit(a, p) == 0, "commit");
        free(blk);
    }
    char ns_a[300], ns_b[300];
    full_ns("tenant-a", ns_a, sizeof ns_a);
    full_ns("tenant-b", ns_b, sizeof ns_b);
    int sock = raw_socket(d);
    uint64_t sb = hello(sock, ns_b, NULL, 0);
    vkvp_request r;
    vkvp_reply *rep;

    vkvp_request_init(&r, VKVP_LOOKUP, 2);
    r.u.lookup.session = sb;
    r.u.lookup.keys = keys;
    r.u.lookup.nkeys = 2;
    rep = rpc(sock, &r);
    CHECK(rep->status == 0 && rep->u.lookup.hits == 0, "B's LOOKUP sees A's keys");
    vkvp_reply_free(rep);

    vkvp_request_init(&r, VKVP_FETCH, 3);
    r.u.fetch.session = sb;
    r.u.fetch.keys = keys;
    r.u.fetch.nkeys = 2;
    rep = rpc(sock, &r);
    CHECK(rep->status == 0 && rep->u.fetch.nblocks == 0, "B's FETCH got A's blocks");
    vkvp_reply_free(rep);

    vkvp_request_init(&r, VKVP_LIST, 4);
    r.u.list.session = sb;
    r.u.list.has_ns = true;
    r.u.list.ns = vkvp_cstr(ns_a);
    rep = rpc(sock, &r);
    CHECK(rep->status != 0 || rep->u.list.nentries == 0, "B listed A's entries");
    vkvp_reply_free(rep);
    vkvp_request_init(&r, VKVP_LIST, 5);
    r.u.list.session = sb;
    rep = rpc(sock, &r);
    CHECK(rep->status == 0 && rep->u.list.nentries == 0, "B's own LIST shows %u entries",
          rep->u.list.nentries);
    vkvp_reply_free(rep);

    vkvp_request_init(&r, VKVP_INFO, 6);
    r.u.info.session = sb;
    r.u.info.key = keys[0];
    r.u.info.has_ns = true;
    r.u.info.ns = vkvp_cstr(ns_a);
    rep = rpc(sock, &r);
    CHECK(rep->status != 0, "B got INFO on A's key");
    vkvp_reply_free(rep);
    vkvp_request_init(&r, VKVP_INFO, 7);
    r.u.info.session = sb;
    r.u.info.key = keys[0];
    rep = rpc(sock, &r);
    CHECK(rep->status == VKV_ENOTFOUND, "B's INFO in its own ns: %d", rep->status);
    vkvp_reply_free(rep);

    vkvp_request_init(&r, VKVP_DELETE, 8);
    r.u.del.session = sb;
    r.u.del.keys = keys;
    r.u.del.nkeys = 2;
    rep = rpc(sock, &r);
    CHECK(rep->status == 0 && rep->u.del.count == 0, "B deleted A's keys");
    vkvp_reply_free(rep);
    vkvp_request_init(&r, VKVP_EVICT, 9);
    r.u.evict.session = sb;
    r.u.evict.all = true;
    r.u.evict.to = VKVP_EVICT_DROP;
    rep = rpc(sock, &r);
    CHECK(rep->status != 0 || rep->u.evict.count == 0, "B evicted A's keys");
    vkvp_reply_free(rep);
    nn_close(sock);

    size_t hits = 0;
    CHECK(vkv_lookup(a, keys, 2, &hits, NULL) == 0 && hits == 2, "A lost its keys (%zu)", hits);
    vkv_close(a);
    printf("namespaces: B cannot lookup/fetch/list/info/delete/evict A's keys\n");
}

/* 4. memfd seals on the slabs. */
static void check_seals(const vkvt_daemon *d)
{
    char ns[300], fdp[400];
    full_ns("sealcheck", ns, sizeof ns);
    int sock = raw_socket(d);
    uint64_t sid = hello(sock, ns, fdp, sizeof fdp);
    int fds[64];
    int n = recv_slabs(fdp, sid, fds, 64);
    CHECK(n >= 1, "no slab fds received (%d)", n);
    for (int i = 0; i < n; i++) {
        struct stat st;
        CHECK(fstat(fds[i], &st) == 0 && st.st_size > 0, "fstat");
        int seals = fcntl(fds[i], F_GET_SEALS);
        CHECK(seals >= 0, "F_GET_SEALS: %s", strerror(errno));
        CHECK((seals & (F_SEAL_SHRINK | F_SEAL_GROW)) == (F_SEAL_SHRINK | F_SEAL_GROW),
              "slab %d seals %#x", i, seals);
        errno = 0;
        CHECK(ftruncate(fds[i], st.st_size / 2) != 0 && errno == EPERM, "shrink allowed");
        errno = 0;
        CHECK(ftruncate(fds[i], st.st_size * 2) != 0 && errno == EPERM, "grow allowed");
        CHECK(ftruncate(fds[i], 0) != 0, "truncate to 0 allowed");
        if (seals & F_SEAL_SEAL)
            CHECK(fcntl(fds[i], F_ADD_SEALS, F_SEAL_WRITE) != 0, "seals not sealed");
        else
            printf("seals: note: slab %d lacks F_SEAL_SEAL\n", i);
        close(fds[i]);
    }
    nn_close(sock);
    printf("seals: %d slab fds, shrink/grow refused with EPERM\n", n);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    vkvt_daemon d;
    CHECK(vkvt_prepare(&d) == 0, "prepare");
    CHECK(vkvt_start(&d, g_flags) == 0, "start vkvd (log %s)", d.logpath);
    /* The scratch root must let nobody traverse to rundir for part 2. */
    CHECK(chmod(d.dir, 0711) == 0, "chmod scratch");
    check_modes(&d);
    char ns[300], fdp[400];
    full_ns("uidcheck", ns, sizeof ns);
    int sock = raw_socket(&d);
    uint64_t sid = hello(sock, ns, fdp, sizeof fdp);
    check_other_uid(&d, sid);
    nn_close(sock);
    check_namespaces(&d);
    check_seals(&d);
    CHECK(vkvt_stop(&d, SIGTERM) == 0, "clean exit (log %s)", d.logpath);
    vkvt_cleanup(&d);
    printf("ok\n");
    return 0;
}
