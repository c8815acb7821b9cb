/* vkvd's event loop: nanomsg raw REP + signalfd + timerfd; see server.h. */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <xxhash.h>

#include "clock.h"
#include "fdchan.h"
#include "log.h"
#include "metrics.h"
#include "proto.h"
#include "store.h"
#ifdef VKV_WITH_CUDA
#include "backend_cuda.h"
#endif
#include "cold.h"
#include "vkv/codec.h"

/* Replies remembered for idempotent resends, direct-mapped by req_id. */
#define RCACHE_SLOTS 4096
/* Bytes of remembered replies at most (a FETCH reply may be up to 1 MiB, so
 * 4096 slots alone would allow 4 GiB); older slots are dropped to stay
 * under it. A resend of a dropped reply runs the request again. */
#define RCACHE_MAX_BYTES (32u << 20)

struct rcache_slot {
    uint64_t req_id;
    uint64_t req_hash; /* XXH3 of the request frame: a resend is identical */
    void *frame;       /* malloc'ed copy of the encoded reply */
    size_t len;
};

struct vkvd_server {
    vkvd_config cfg;
    vkvs_store *st;
    vkvd_fdchan *fc;
    int nn;       /* AF_SP_RAW NN_REP socket */
    int nn_rcvfd; /* pollable fd of nn */
    int sigfd;
    int timerfd;
    int lockfd;
    uint64_t epoch;
    bool stopping;
    char sock_path[VKVD_PATH_MAX + 16];
    char fd_path[VKVD_PATH_MAX + 16];
    struct rcache_slot rcache[RCACHE_SLOTS];
    uint64_t rcache_bytes; /* sum of rcache[].len */
    uint32_t rcache_sweep; /* next slot to drop when over RCACHE_MAX_BYTES */
    /* counters (exported by STATS) */
    uint64_t req_count[VKVP_OP_MAX_ + 1];
    uint64_t req_errors;
    uint64_t bad_frames;
    uint64_t resent_replies;
    uint64_t send_failures;
    uint64_t commit_rejected;
    uint64_t cur_hash; /* XXH3 of the request frame being handled */
    /* cold tier (NULL when disabled or unavailable) */
    vkvs_cold *cold;
    int cold_fd;
    uint64_t next_tag;
    struct pending_op *ops;       /* spills and restores in flight */
    struct deferred *deferred;    /* FETCHes waiting for restores */
    uint64_t cold_spill_lost;     /* spills that failed after eviction */
    uint64_t cold_restore_failed; /* restores that failed (entry dropped) */
    uint64_t cold_corrupt_dropped;
    uint64_t fetch_deferred;
    vkvd_metrics *metrics; /* NULL when --metrics-port is 0 */
    struct verify_job *verify;
    /* Sessions the fd channel may serve: written by the loop, read by the
     * channel's thread. */
    pthread_mutex_t live_mu;
    struct live_sess *live;
    size_t nlive, caplive;
    uint64_t identity_failures;     /* blocks refused for a wrong (ns, key) */
    uint64_t cold_envs_quarantined; /* damaged LMDB envs moved aside at start */
    uint64_t spill_queued;          /* bytes copied for the LMDB writer, not yet written */
    uint64_t spill_queued_peak;
    bool flush_more;                /* a FLUSH stopped at the spill-queue bound */
    char flush_ns[VKVS_NS_MAX + 1]; /* its namespace ("" = all) */
};

/* A session the fd channel may serve, and the pid the kernel gave for it. */
struct live_sess {
    uint64_t sid;
    pid_t pid;    /* 0 until the client came to the fd channel */
    bool applied; /* pid bound in the store (loop thread) */
};

/* A cold-tier checksum verification running on its own thread (VERIFY). */
struct verify_job {
    pthread_t thr;
    vkvs_cold *cold;
    atomic_bool cancel; /* set by verify_join: stop at the next entry */
    bool drop;
    bool started; /* thr was created (join it before the next) */
    atomic_bool running;
    atomic_uint_fast64_t entries_done, entries_total, bytes_done, bytes_total;
    atomic_uint_fast64_t corrupt, dropped;
};

/* A spill or restore handed to the cold tier, by completion tag. */
struct pending_op {
    struct pending_op *next;
    uint64_t tag;
    int op; /* VKVS_COLD_OP_SPILL / _RESTORE */
    char ns[VKVS_COLD_NS_MAX + 1];
    vkv_key key;
    /* Restore into memory the daemon cannot address (cuda slabs): the cold
     * tier fills this host buffer and the completion copies it in. */
    void *staging;
    uint64_t size;
    vkvs_extent *ext;
    uint32_t next_n;
};

/* A FETCH whose reply waits until cold entries of its prefix are restored. */
struct deferred {
    struct deferred *next;
    void *control;    /* nanomsg routing header of the request */
    vkvp_request *rq; /* decoded request (owned) */
    uint64_t req_hash;
    uint64_t t_arrival;   /* ns, for the latency histogram */
    uint64_t deadline_ms; /* monotonic: answer with what is hot after this */
};

/* ---- runtime directory -------------------------------------------------- */

/* Creates `dir` (and missing parents) with mode 0700 and checks that it is
 * ours and private. Returns 0 or -1 after logging. */
static int make_private_dir(const char *dir)
{
    char tmp[VKVD_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
            VKV_ERROR("cannot create %s: %s", tmp, strerror(errno));
            return -1;
        }
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
        VKV_ERROR("cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (lstat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        VKV_ERROR("%s is not a directory", dir);
        return -1;
    }
    if (sb.st_uid != getuid()) {
        VKV_ERROR("%s belongs to uid %u, not to us (uid %u): refusing to use it", dir,
                  (unsigned)sb.st_uid, (unsigned)getuid());
        return -1;
    }
    if ((sb.st_mode & 077) != 0) {
        if (chmod(dir, 0700) != 0) {
            VKV_ERROR("%s is open to others and chmod failed: %s", dir, strerror(errno));
            return -1;
        }
        VKV_WARN("%s was mode %03o; set it to 0700", dir, (unsigned)(sb.st_mode & 0777));
    }
    return 0;
}

/* ---- reply cache ---------------------------------------------------------- */

/* Returns the cached reply for a resend of request (req_id, req_hash): the
 * same id AND the same bytes, so a different request that reuses an id is
 * executed, not answered from the cache. NULL if none. */
static struct rcache_slot *rcache_find(vkvd_server *srv, uint64_t req_id, uint64_t req_hash)
{
    struct rcache_slot *s = &srv->rcache[req_id % RCACHE_SLOTS];
    return (s->frame && s->req_id == req_id && s->req_hash == req_hash) ? s : NULL;
}

/* Remembers a copy of `frame` as the reply to the request being handled
 * (srv->cur_hash is its frame hash). Best effort. */
static void rcache_put(vkvd_server *srv, uint64_t req_id, const void *frame, size_t len)
{
    if (req_id == 0)
        return;
    struct rcache_slot *s = &srv->rcache[req_id % RCACHE_SLOTS];
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
    for (uint32_t n = 0; srv->rcache_bytes > RCACHE_MAX_BYTES && n < RCACHE_SLOTS; n++) {
        struct rcache_slot *o = &srv->rcache[srv->rcache_sweep];
        srv->rcache_sweep = (srv->rcache_sweep + 1) % RCACHE_SLOTS;
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

/* ---- helpers for building replies ------------------------------------------ */

/* Converts store extents into wire extents; returns a malloc'ed array the
 * caller frees, or NULL on allocation failure. */
static vkvp_extent *wire_extents(const vkvs_block *b)
{
    vkvp_extent *e = calloc(b->nextents ? b->nextents : 1, sizeof *e);
    if (!e)
        return NULL;
    for (uint32_t i = 0; i < b->nextents; i++) {
        e[i].slab = b->extents[i].slab;
        e[i].first_page = b->extents[i].first_page;
        e[i].npages = b->extents[i].npages;
    }
    return e;
}

/* Maps a store state to its wire state and tier. */
static void wire_state(uint32_t st, vkvp_state *state, vkvp_tier *tier)
{
    switch (st) {
    case VKVS_WRITING:
        *state = VKVP_STATE_WRITING;
        *tier = VKVP_TIER_HOT;
        break;
    case VKVS_COLD:
        *state = VKVP_STATE_COLD;
        *tier = VKVP_TIER_COLD;
        break;
    case VKVS_RESTORING:
        *state = VKVP_STATE_RESTORING;
        *tier = VKVP_TIER_COLD;
        break;
    default:
        *state = VKVP_STATE_READY;
        *tier = VKVP_TIER_HOT;
        break;
    }
}

/* Reads the block header of a hot entry and writes a one-line description
 * ("32x8x128 t256 f16 lloyd 1.19 b/e") into buf; empty if unreadable. */
static void describe_shape(vkvd_server *srv, const vkvs_info *in, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (!in->extents || in->nextents == 0 || in->size < VKV_BLOCK_HEADER_SIZE)
        return;
    vkv_block_header h;
    if (vkvs_read(srv->st, in->extents, in->nextents, 0, &h, sizeof h) != 0 ||
        h.magic != VKV_BLOCK_MAGIC)
        return;
    static const char *rules[] = {"?", "minmax", "quantile", "lloyd", "rotsign", "tc"};
    double elems = 2.0 * h.layers * h.kv_heads * h.head_dim * h.tokens;
    snprintf(buf, cap, "layers=%u heads=%u dim=%u tokens=%u %s %s %.3f bits/elem", h.layers,
             h.kv_heads, h.head_dim, h.tokens, h.dtype == VKV_DTYPE_BF16 ? "bf16" : "f16",
             rules[h.rule <= 5 ? h.rule : 0], elems > 0 ? 8.0 * (double)in->size / elems : 0.0);
}

/* Fills a wire entry from store info; shape text goes into shapebuf. */
static void wire_entry(vkvd_server *srv, const vkvs_info *in, vkvp_entry *out, char *shapebuf,
                       size_t cap)
{
    memset(out, 0, sizeof *out);
    out->ns = vkvp_cstr(in->ns);
    out->key = in->key;
    wire_state(in->state, &out->state, &out->tier);
    out->size = in->size;
    out->hits = in->hits;
    out->last_ms = in->last_ms;
    out->pins = in->pins;
    describe_shape(srv, in, shapebuf, cap);
    out->shape = vkvp_cstr(shapebuf);
}

/* VKV_OK if header `h` is bound to (ns, key), else VKV_EIDENT (counted). */
static int check_ident(vkvd_server *srv, const vkv_block_header *h, const char *ns,
                       const vkv_key *key)
{
    uint8_t id[VKV_IDENT_LEN];
    vkv_block_ident(ns, strlen(ns), key->b, id);
    if (vkv_block_check_ident(h, id) == VKV_OK)
        return VKV_OK;
    srv->identity_failures++;
    return VKV_EIDENT;
}

/* Commit-time validation: the block must be bound to the entry's
 * (namespace, key) and carry a valid vkv header whose
 * total size is exactly the allocated size. The header is read from the
 * arena; the payload is not touched (it is checksummed on spill/restore and
 * by clients that ask for VKV_DECODE_VERIFY). */
static int validate_block(void *arg, const vkvs_store *st, const char *ns, const vkv_key *key,
                          const vkvs_block *b)
{
    vkvd_server *srv = arg;
    if (b->size < VKV_BLOCK_HEADER_SIZE)
        return VKV_ETRUNC;
    vkv_block_header h;
    int rc = vkvs_read(st, b->extents, b->nextents, 0, &h, sizeof h);
    if (rc)
        return rc;
    if (h.total_size != b->size)
        return VKV_ECORRUPT;
    if ((rc = check_ident(srv, &h, ns, key)) != 0)
        return rc;
    /* without VKV_DECODE_VERIFY vkv_block_check reads only the 256 header
     * bytes: the copy stands in for the block (scattered or device memory
     * alike), and total_size was checked against the real size above */
    return vkv_block_check(&h, b->size, 0, NULL);
}

/* kill(pid, 0) liveness for the reaper. */
static bool pid_alive(void *arg, pid_t pid)
{
    (void)arg;
    return kill(pid, 0) == 0 || errno == EPERM;
}

/* ---- sessions the fd channel may serve ------------------------------------------ */

/* Adds `sid` to the set the fd channel checks (best effort on ENOMEM). */
static void live_add(vkvd_server *srv, uint64_t sid)
{
    pthread_mutex_lock(&srv->live_mu);
    if (srv->nlive == srv->caplive) {
        size_t cap = srv->caplive ? 2 * srv->caplive : 64;
        struct live_sess *n = realloc(srv->live, cap * sizeof *n);
        if (n) {
            srv->live = n;
            srv->caplive = cap;
        }
    }
    if (srv->nlive < srv->caplive)
        srv->live[srv->nlive++] = (struct live_sess){sid, 0, false};
    pthread_mutex_unlock(&srv->live_mu);
}

/* Drops ids of sessions the store no longer knows (after reaping). */
static void live_prune(vkvd_server *srv)
{
    pthread_mutex_lock(&srv->live_mu);
    size_t k = 0;
    for (size_t i = 0; i < srv->nlive; i++) {
        uint32_t ns_id;
        const char *ns;
        if (vkvs_session_ns(srv->st, srv->live[i].sid, &ns_id, &ns) == 0)
            srv->live[k++] = srv->live[i];
    }
    srv->nlive = k;
    pthread_mutex_unlock(&srv->live_mu);
}

/* fd channel check (its own thread): is `sid` a live session? Records the
 * kernel's pid for it, bound in the store by live_bind on the loop. */
static int live_check(void *arg, uint64_t sid, pid_t pid)
{
    vkvd_server *srv = arg;
    int ok = 0;
    pthread_mutex_lock(&srv->live_mu);
    for (size_t i = 0; i < srv->nlive && !ok; i++) {
        if (srv->live[i].sid != sid)
            continue;
        ok = 1;
        if (pid > 0 && srv->live[i].pid != pid) {
            srv->live[i].pid = pid;
            srv->live[i].applied = false;
        }
    }
    pthread_mutex_unlock(&srv->live_mu);
    return ok;
}

/* Loop thread: binds the pids the fd channel saw to their sessions, so the
 * reaper checks the process the kernel names, not the one a client reports
 * (which means nothing across pid namespaces). */
static void live_bind(vkvd_server *srv)
{
    pthread_mutex_lock(&srv->live_mu);
    for (size_t i = 0; i < srv->nlive; i++) {
        if (srv->live[i].pid <= 0 || srv->live[i].applied)
            continue;
        srv->live[i].applied = true;
        if (vkvs_session_bind_pid(srv->st, srv->live[i].sid, srv->live[i].pid) == 0)
            VKV_DEBUG("session %016" PRIx64 " bound to pid %d", srv->live[i].sid,
                      (int)srv->live[i].pid);
    }
    pthread_mutex_unlock(&srv->live_mu);
}

/* ---- VERIFY: cold-tier checksum verification in the background ------------------- */

/* Progress callback of vkvs_cold_verify: publishes the counts; stops the
 * run when the daemon shuts down. */
static int verify_progress(void *ctx, uint64_t done, uint64_t total, uint64_t done_bytes,
                           uint64_t total_bytes)
{
    struct verify_job *j = ctx;
    j->entries_done = done;
    j->entries_total = total;
    j->bytes_done = done_bytes;
    j->bytes_total = total_bytes;
    return j->cancel ? 1 : 0;
}

/* Thread body: one full verification of the cold tier. */
static void *verify_main(void *arg)
{
    struct verify_job *j = arg;
    vkvs_cold_verify_report rep;
    memset(&rep, 0, sizeof rep);
    int rc =
        vkvs_cold_verify(j->cold, j->drop ? VKVS_COLD_VERIFY_DROP : 0, verify_progress, j, &rep);
    j->corrupt = rep.corrupt;
    j->dropped = rep.dropped;
    VKV_INFO("cold-tier verification %s: %llu entries, %llu corrupt, %llu dropped",
             rc == 0 ? "done" : "stopped", (unsigned long long)rep.entries,
             (unsigned long long)rep.corrupt, (unsigned long long)rep.dropped);
    j->running = false;
    return NULL;
}

/* VERIFY: with `start`, starts a run unless one is running; always reports
 * the progress of the current or last run. */
static int verify_op(vkvd_server *srv, bool start, bool drop, vkvp_verify_rep *out)
{
    if (!srv->cold)
        return VKV_ECOLD;
    struct verify_job *j = srv->verify;
    if (!j) {
        j = srv->verify = calloc(1, sizeof *j);
        if (!j)
            return VKV_ENOMEM;
    }
    if (start && !j->running) {
        if (j->started)
            pthread_join(j->thr, NULL);
        j->started = false;
        j->cold = srv->cold;
        j->cancel = false;
        j->drop = drop;
        j->entries_done = j->entries_total = j->bytes_done = j->bytes_total = 0;
        j->corrupt = j->dropped = 0;
        j->running = true;
        if (pthread_create(&j->thr, NULL, verify_main, j) != 0) {
            j->running = false;
            return VKV_ESYS;
        }
        j->started = true;
    }
    out->running = j->running;
    out->entries_done = j->entries_done;
    out->entries_total = j->entries_total;
    out->bytes_done = j->bytes_done;
    out->bytes_total = j->bytes_total;
    out->corrupt = j->corrupt;
    out->dropped = j->dropped;
    return 0;
}

/* Stops and waits for a verification thread (shutdown). */
static void verify_join(vkvd_server *srv)
{
    if (srv->verify && srv->verify->started) {
        srv->verify->cancel = true;
        pthread_join(srv->verify->thr, NULL);
    }
    free(srv->verify);
    srv->verify = NULL;
}

/* ---- cold tier ------------------------------------------------------------------ */

#define DEFER          1     /* dispatch result: the reply waits for restores */
#define DEFER_LIMIT_MS 10000 /* a waiting FETCH answers with what is hot after this */

/* Records an in-flight cold operation (*out, if not NULL, gets it). Returns
 * 0 or VKV_ENOMEM. */
static int op_add_ex(vkvd_server *srv, uint64_t tag, int op, const char *ns, const vkv_key *key,
                     struct pending_op **out)
{
    struct pending_op *o = calloc(1, sizeof *o);
    if (!o)
        return VKV_ENOMEM;
    if (out)
        *out = o;
    o->tag = tag;
    o->op = op;
    snprintf(o->ns, sizeof o->ns, "%s", ns);
    o->key = *key;
    o->next = srv->ops;
    srv->ops = o;
    return 0;
}

/* Frees an op's restore staging. */
static void op_free(struct pending_op *o)
{
    free(o->staging);
    free(o->ext);
    free(o);
}

/* Finds the op with `tag`, or NULL. */
static struct pending_op *op_find(vkvd_server *srv, uint64_t tag)
{
    for (struct pending_op *o = srv->ops; o; o = o->next)
        if (o->tag == tag)
            return o;
    return NULL;
}

/* Removes the op with `tag` (if any). */
static void op_remove(vkvd_server *srv, uint64_t tag)
{
    for (struct pending_op **pp = &srv->ops; *pp; pp = &(*pp)->next) {
        if ((*pp)->tag == tag) {
            struct pending_op *o = *pp;
            *pp = o->next;
            op_free(o);
            return;
        }
    }
}

/* True if a spill or restore of (ns, key) is in flight. */
static bool op_pending(const vkvd_server *srv, const char *ns, const vkv_key *key)
{
    for (const struct pending_op *o = srv->ops; o; o = o->next)
        if (memcmp(&o->key, key, sizeof *key) == 0 && strcmp(o->ns, ns) == 0)
            return true;
    return false;
}

/* Store evict hook: copies the victim's block out of the arena (its pages
 * are freed when this returns), checks the block's own payload checksum so a
 * corrupt block is never made durable, and queues it to the LMDB writer. */
static int hook_evict(void *arg, vkvs_store *st, const vkvs_victim *v)
{
    vkvd_server *srv = arg;
    if (!srv->cold)
        return VKV_ECOLD;
    /* Bounded copy-out: past spill-queue bytes in flight FLUSH/EVICT stop
     * (and continue as the writer drains); an eviction to make room may go
     * to 4x that before the store drops the victim's hot copy instead. */
    uint64_t bound = v->for_room ? 4 * srv->cfg.spill_queue : srv->cfg.spill_queue;
    if (srv->spill_queued > 0 && srv->spill_queued + v->size > bound)
        return VKV_EBUSY;
    void *buf = malloc(v->size);
    if (!buf)
        return VKV_ENOMEM;
    int rc = vkvs_read(st, v->extents, v->nextents, 0, buf, v->size);
    vkv_block_header h;
    if (rc == 0)
        rc = vkv_block_check(buf, v->size, VKV_DECODE_VERIFY, &h);
    if (rc == 0)
        rc = check_ident(srv, &h, v->ns, v->key);
    if (rc) {
        VKV_WARN("not spilling a block of '%s': %s", v->ns, vkv_strerror(rc));
        free(buf);
        return rc;
    }
    uint64_t tag = ++srv->next_tag;
    struct pending_op *o = NULL;
    if ((rc = op_add_ex(srv, tag, VKVS_COLD_OP_SPILL, v->ns, v->key, &o)) != 0) {
        free(buf);
        return rc;
    }
    rc = vkvs_cold_spill(srv->cold, v->ns, v->key, buf, v->size, tag);
    if (rc) {
        op_remove(srv, tag);
        free(buf);
        return rc;
    }
    o->size = v->size;
    srv->spill_queued += v->size;
    if (srv->spill_queued > srv->spill_queued_peak)
        srv->spill_queued_peak = srv->spill_queued;
    return 0;
}

/* Store drop hook: a deleted or dropped entry leaves the cold tier too. */
static void hook_drop(void *arg, uint32_t ns_id, const char *ns, const vkv_key *key)
{
    vkvd_server *srv = arg;
    (void)ns_id;
    if (srv->cold)
        vkvs_cold_delete(srv->cold, ns, key, ++srv->next_tag);
}

/* Starts restores of the cold keys[0..n) (those following a FETCH's ready
 * prefix, namespace `ns`) into freshly reserved arena pages. Returns how many
 * of them are now in flight (started here or earlier, or still spilling). */
static size_t start_restores(vkvd_server *srv, const char *ns, const vkv_key *keys, size_t n)
{
    size_t inflight = 0;
    uint32_t ps = vkvs_page_size(srv->st);
    for (size_t i = 0; i < n; i++) {
        if (op_pending(srv, ns, &keys[i])) {
            inflight++;
            continue;
        }
        vkvs_block b;
        int rc = vkvs_restore_begin(srv->st, ns, &keys[i], &b);
        if (rc)
            break; /* absent, or no room: the prefix ends here */
        struct iovec iov[64];
        int niov = 0;
        bool host = true;
        for (uint32_t e = 0; e < b.nextents && niov < 64; e++) {
            const vkvs_slab *sl = vkvs_slab_get(srv->st, b.extents[e].slab);
            host = host && sl->host;
            iov[niov].iov_base =
                sl->host ? (uint8_t *)sl->host + (uint64_t)b.extents[e].first_page * ps : NULL;
            iov[niov].iov_len = (size_t)b.extents[e].npages * ps;
            niov++;
        }
        uint64_t tag = ++srv->next_tag;
        struct pending_op *o = NULL;
        rc = b.nextents <= 64 || !host ? op_add_ex(srv, tag, VKVS_COLD_OP_RESTORE, ns, &keys[i], &o)
                                       : VKV_ENOTSUP;
        if (rc == 0 && !host) {
            /* Device slabs: restore into host staging, copy in on completion. */
            o->staging = malloc(b.size);
            o->ext = malloc(b.nextents * sizeof *o->ext);
            if (!o->staging || !o->ext) {
                rc = VKV_ENOMEM;
                op_remove(srv, tag);
            } else {
                memcpy(o->ext, b.extents, b.nextents * sizeof *o->ext);
                o->next_n = b.nextents;
                o->size = b.size;
                iov[0].iov_base = o->staging;
                iov[0].iov_len = b.size;
                niov = 1;
            }
        }
        if (rc == 0) {
            rc = vkvs_cold_restore(srv->cold, ns, &keys[i], iov, niov, tag);
            if (rc)
                op_remove(srv, tag);
        }
        if (rc) {
            vkvs_restore_end(srv->st, ns, &keys[i], rc);
            break;
        }
        inflight++;
    }
    return inflight;
}

/* Loads every cold entry into the index so LOOKUP counts them at once. */
static int load_cold_entry(void *ctx, const vkvs_cold_entry_info *e)
{
    vkvd_server *srv = ctx;
    int rc = vkvs_add_cold(srv->st, e->ns, &e->key, e->size, e->last_access_ms);
    if (rc && rc != VKV_EEXIST)
        VKV_WARN("cold entry of '%s' not indexed: %s", e->ns, vkv_strerror(rc));
    return 0;
}

/* Opens the cold tier under state_dir/cold and indexes its entries. A
 * failure is logged and leaves the daemon running hot-only. */
static void open_cold(vkvd_server *srv)
{
    char dir[VKVD_PATH_MAX + 16], err[256] = "";
    if (srv->cfg.cold_max == 0) {
        VKV_INFO("cold tier disabled (cold-max 0)");
        return;
    }
    snprintf(dir, sizeof dir, "%s/cold", srv->cfg.state_dir);
    vkvs_cold_config cc;
    vkvs_cold_config_default(&cc);
    cc.dir = dir;
    cc.max_bytes = srv->cfg.cold_max;
    cc.sync_interval_ms = srv->cfg.cold_sync_ms;
    int rc = vkvs_cold_open(&cc, &srv->cold, err, sizeof err);
    if (rc == VKV_ECORRUPT) {
        /* A damaged environment (a power cut with a lying disk, a bad
         * copy...) is never served and never silently dropped: it is moved
         * aside for inspection and the tier starts empty. */
        char aside[VKVD_PATH_MAX + 64];
        snprintf(aside, sizeof aside, "%s.corrupt-%llu", dir, (unsigned long long)vkv_wall_ms());
        if (rename(dir, aside) == 0) {
            srv->cold_envs_quarantined++;
            VKV_ERROR("cold tier at %s is damaged (%s): moved aside to %s; starting an empty one",
                      dir, err, aside);
            err[0] = '\0';
            rc = vkvs_cold_open(&cc, &srv->cold, err, sizeof err);
        } else {
            VKV_ERROR("cold tier at %s is damaged (%s) and cannot be moved aside: %s", dir, err,
                      strerror(errno));
        }
    }
    if (rc) {
        VKV_ERROR("cold tier at %s unavailable (%s): %s; serving from memory only", dir,
                  vkv_strerror(rc), err);
        srv->cold = NULL;
        return;
    }
    srv->cold_fd = vkvs_cold_fd(srv->cold);
    uint64_t t0 = vkv_now_ms();
    vkvs_cold_foreach(srv->cold, load_cold_entry, srv);
    vkvs_stats s;
    vkvs_stats_get(srv->st, &s);
    VKV_INFO("cold tier %s: %llu entries (%llu MiB) indexed in %llu ms", dir,
             (unsigned long long)s.entries_cold, (unsigned long long)(s.bytes_cold >> 20),
             (unsigned long long)(vkv_now_ms() - t0));
    vkvs_hooks h = {hook_evict, hook_drop, srv};
    vkvs_set_hooks(srv->st, &h);
}

/* A restored block must be the one committed under (ns, key): the same
 * header and identity check as at COMMIT (validate_block), on the entry's
 * pages (it is RESTORING, its pages held). VKV_OK or the error (the entry
 * is then dropped). */
static int restored_ident_ok(vkvd_server *srv, const char *ns, const vkv_key *key)
{
    vkvs_block b;
    int rc = vkvs_restoring_block(srv->st, ns, key, &b);
    if (rc == 0)
        rc = validate_block(srv, srv->st, ns, key, &b);
    if (rc)
        VKV_WARN("restored block of '%s' refused (%s): dropped", ns, vkv_strerror(rc));
    return rc;
}

/* Applies one cold-tier completion to the index. */
static void apply_completion(vkvd_server *srv, const vkvs_cold_completion *c)
{
    switch (c->op) {
    case VKVS_COLD_OP_SPILL: {
        struct pending_op *o = op_find(srv, c->tag);
        if (o)
            srv->spill_queued -= o->size;
        op_remove(srv, c->tag);
        if (c->status) {
            /* The entry left the arena but never reached LMDB: it is gone,
             * unless a later spill of the same key (it was deleted, put and
             * evicted again meanwhile) is still in flight: that COLD entry
             * is the newer one's and stays. */
            srv->cold_spill_lost++;
            VKV_WARN("spill of a '%s' block failed: %s", c->ns, vkv_strerror(c->status));
            if (!op_pending(srv, c->ns, &c->key))
                vkvs_forget_cold(srv->st, c->ns, &c->key);
        }
        break;
    }
    case VKVS_COLD_OP_RESTORE: {
        int status = c->status;
        struct pending_op *o = op_find(srv, c->tag);
        if (status == 0 && o && o->staging)
            status = vkvs_write(srv->st, o->ext, o->next_n, 0, o->staging, o->size);
        if (status == 0)
            status = restored_ident_ok(srv, c->ns, &c->key);
        op_remove(srv, c->tag);
        vkvs_restore_end(srv->st, c->ns, &c->key, status);
        if (status) {
            srv->cold_restore_failed++;
            VKV_WARN("restore of a '%s' block failed: %s", c->ns, vkv_strerror(status));
            if (status != VKV_EIO)
                vkvs_forget_cold(srv->st, c->ns, &c->key);
        }
        break;
    }
    case VKVS_COLD_OP_EVICTED:
        /* a notice about the record the cold tier held; a spill of the key
         * still queued will write a newer one */
        if (!op_pending(srv, c->ns, &c->key))
            vkvs_cold_copy_gone(srv->st, c->ns, &c->key);
        break;
    case VKVS_COLD_OP_DROPPED:
        srv->cold_corrupt_dropped++;
        VKV_WARN("corrupt cold block of '%s' dropped (checksum)", c->ns);
        vkvs_cold_copy_gone(srv->st, c->ns, &c->key);
        break;
    default:
        break;
    }
}

/* ---- STATS ---------------------------------------------------------------- */

#define MAX_COUNTERS 96

struct counters {
    vkvp_counter c[MAX_COUNTERS];
    uint32_t n;
};

/* Appends one counter (name must be a static string). */
static void counter(struct counters *cs, const char *name, uint64_t v)
{
    if (cs->n < MAX_COUNTERS) {
        cs->c[cs->n].name = vkvp_cstr(name);
        cs->c[cs->n].value = v;
        cs->n++;
    }
}

/* Collects every counter the daemon exports. */
static void collect_counters(vkvd_server *srv, struct counters *cs)
{
    vkvs_stats s;
    vkvs_stats_get(srv->st, &s);
    cs->n = 0;
    counter(cs, "epoch", srv->epoch);
    counter(cs, "backend_cuda", vkvs_backend_of(srv->st)->kind == VKVS_BACKEND_CUDA);
    counter(cs, "entries_writing", s.entries_writing);
    counter(cs, "entries_ready", s.entries_ready);
    counter(cs, "entries_cold", s.entries_cold);
    counter(cs, "entries_restoring", s.entries_restoring);
    counter(cs, "bytes_used", s.bytes_used);
    counter(cs, "bytes_free", s.bytes_free);
    counter(cs, "bytes_capacity", s.bytes_capacity);
    counter(cs, "bytes_cold", s.bytes_cold);
    counter(cs, "pages_total", s.pages_total);
    counter(cs, "pages_free", s.pages_free);
    counter(cs, "pages_pinned", s.pages_pinned);
    counter(cs, "extents_total", s.extents_total);
    counter(cs, "hits", s.hits);
    counter(cs, "misses", s.misses);
    counter(cs, "cold_hits", s.cold_hits);
    counter(cs, "lookups", s.lookups);
    counter(cs, "fetches", s.fetches);
    counter(cs, "allocs", s.allocs);
    counter(cs, "allocs_failed", s.allocs_failed);
    counter(cs, "commits", s.commits);
    counter(cs, "commits_rejected", srv->commit_rejected);
    counter(cs, "identity_failures", srv->identity_failures);
    counter(cs, "cold_envs_quarantined", srv->cold_envs_quarantined);
    counter(cs, "aborts", s.aborts);
    counter(cs, "deletes", s.deletes);
    counter(cs, "evictions", s.evictions);
    counter(cs, "spills", s.spills);
    counter(cs, "spill_failures", s.spill_failures);
    counter(cs, "restores", s.restores);
    counter(cs, "leases_active", s.leases_active);
    counter(cs, "leases_expired", s.leases_expired);
    counter(cs, "leases_quarantined", s.leases_quarantined);
    counter(cs, "quota_refusals", s.quota_refusals);
    counter(cs, "spill_queue_bytes", srv->spill_queued);
    counter(cs, "spill_queue_peak_bytes", srv->spill_queued_peak);
    counter(cs, "spills_deferred", s.spills_deferred);
    counter(cs, "spills_dropped_busy", s.spills_dropped_busy);
    counter(cs, "spills_skipped", s.spills_skipped);
    counter(cs, "sessions", s.sessions);
    counter(cs, "sessions_reaped", s.sessions_reaped);
    counter(cs, "namespaces", s.namespaces);
    counter(cs, "meta_bytes", s.meta_bytes);
    counter(cs, "slabs", s.slabs);
    counter(cs, "requests_errors", srv->req_errors);
    counter(cs, "bad_frames", srv->bad_frames);
    counter(cs, "replies_resent", srv->resent_replies);
    counter(cs, "reply_cache_bytes", srv->rcache_bytes);
    counter(cs, "replies_dropped", srv->send_failures);
#define REQ_COUNTER_NAME_(name, value, lower, req, rep) [value] = "req_" #lower,
    static const char *const req_names[VKVP_OP_MAX_ + 1] = {VKVP_OPS(REQ_COUNTER_NAME_)};
#undef REQ_COUNTER_NAME_
    for (int i = 1; i <= VKVP_OP_MAX_; i++)
        counter(cs, req_names[i], srv->req_count[i]);
    counter(cs, "fetch_deferred", srv->fetch_deferred);
    counter(cs, "cold_available", srv->cold != NULL);
    counter(cs, "cold_spill_lost", srv->cold_spill_lost);
    counter(cs, "cold_restore_failed", srv->cold_restore_failed);
    counter(cs, "cold_corrupt_dropped", srv->cold_corrupt_dropped);
    counter(cs, "checksum_failures", srv->cold_corrupt_dropped + srv->commit_rejected);
    if (srv->cold) {
        vkvs_cold_stats c;
        vkvs_cold_stats_get(srv->cold, &c);
        counter(cs, "cold_store_entries", c.entries);
        counter(cs, "cold_store_bytes", c.bytes);
        counter(cs, "cold_max_bytes", c.max_bytes);
        counter(cs, "cold_map_size", c.map_size);
        counter(cs, "cold_file_bytes", c.file_bytes);
        counter(cs, "cold_spills", c.spills);
        counter(cs, "cold_spill_bytes", c.spill_bytes);
        counter(cs, "cold_spill_errors", c.spill_errors);
        counter(cs, "cold_restores", c.restores);
        counter(cs, "cold_restore_bytes", c.restore_bytes);
        counter(cs, "cold_restore_errors", c.restore_errors);
        counter(cs, "cold_evictions", c.evictions);
        counter(cs, "cold_checksum_failures", c.checksum_failures);
        counter(cs, "cold_write_errors", c.write_errors);
        counter(cs, "cold_enospc", c.enospc);
        counter(cs, "cold_eio", c.eio);
        counter(cs, "cold_map_full", c.map_full);
        counter(cs, "cold_queue_bytes", c.queue_bytes);
        counter(cs, "cold_failed", (uint64_t)c.failed);
    }
    if (srv->fc) {
        uint64_t served, refused;
        vkvd_fdchan_counts(srv->fc, &served, &refused);
        counter(cs, "fdchan_served", served);
        counter(cs, "fdchan_refused", refused);
    }
}

/* ---- dispatch ---------------------------------------------------------------- */

/* Scratch memory of one reply; everything here is freed after encoding. */
struct scratch {
    vkvp_extent *ext[VKVP_MAX_KEYS + 1];
    uint32_t next;
    void *blocks;
    vkvs_block *sblocks;
    vkvp_slab *slabs;
    vkvs_info *infos;
    vkvp_entry *entries;
    char (*shapes)[160];
    struct counters counters;
};

/* Frees what the scratch holds. */
static void scratch_free(struct scratch *sc)
{
    for (uint32_t i = 0; i < sc->next; i++)
        free(sc->ext[i]);
    free(sc->blocks);
    free(sc->sblocks);
    free(sc->slabs);
    free(sc->infos);
    free(sc->entries);
    free(sc->shapes);
}

/* Returns the namespace filter string of an optional wire field, or NULL. */
static const char *opt_ns(bool has, vkvp_str s)
{
    return has ? s.ptr : NULL;
}

/* Executes one decoded request against the store and fills `rep` (whose
 * pointers may reference `sc`). Returns 0, the error status to send, or
 * DEFER (FETCH only, when allow_defer): cold entries of the prefix are being
 * restored and the request must be run again when they are in place. */
static int dispatch(vkvd_server *srv, const vkvp_request *rq, vkvp_reply *rep, struct scratch *sc,
                    char *why, size_t why_len, bool allow_defer)
{
    vkvs_store *st = srv->st;
    int rc = 0;
    size_t n = 0, m = 0;
    switch (rq->op) {
    case VKVP_HELLO: {
        const vkvp_hello_req *h = &rq->u.hello;
        uint64_t sid;
        if (h->pid == 0 || h->pid > INT32_MAX)
            return VKV_EINVAL;
        if (h->ns.len && memchr(h->ns.ptr, '\0', h->ns.len)) {
            snprintf(why, why_len, "namespace contains a NUL byte");
            return VKV_EINVAL;
        }
        rc = vkvs_session_open(st, h->ns.len ? h->ns.ptr : NULL, (pid_t)h->pid, h->admin, &sid);
        if (rc)
            return rc;
        vkvp_hello_rep *r = &rep->u.hello;
        uint32_t ns = vkvs_slab_count(st);
        sc->slabs = calloc(ns ? ns : 1, sizeof *sc->slabs);
        if (!sc->slabs) {
            vkvs_session_close(st, sid);
            return VKV_ENOMEM;
        }
        for (uint32_t i = 0; i < ns; i++) {
            const vkvs_slab *s = vkvs_slab_get(st, i);
            sc->slabs[i].id = s->id;
            sc->slabs[i].size = s->size;
            if (s->kind == VKVS_BACKEND_CUDA) {
                memcpy(sc->slabs[i].handle, s->ipc, VKVP_HANDLE_LEN);
                sc->slabs[i].handle_len = VKVP_HANDLE_LEN;
            }
        }
        live_add(srv, sid);
        r->session = sid;
        r->epoch = srv->epoch;
        r->backend =
            vkvs_backend_of(st)->kind == VKVS_BACKEND_CUDA ? VKVP_BACKEND_CUDA : VKVP_BACKEND_HOST;
        r->lease_ttl_ms = srv->cfg.lease_ttl_ms;
        r->page_size = vkvs_page_size(st);
        r->fd_path = vkvp_cstr(srv->fd_path);
        r->slabs = sc->slabs;
        r->nslabs = ns;
        VKV_INFO("session %016" PRIx64 " opened: pid %" PRIu64 " ns '%.*s'%s", sid, h->pid,
                 (int)h->ns.len, h->ns.ptr ? h->ns.ptr : "", h->admin ? " (admin)" : "");
        return 0;
    }
    case VKVP_LOOKUP:
        rc = vkvs_lookup(st, rq->u.lookup.session, rq->u.lookup.keys, rq->u.lookup.nkeys, &n, &m);
        rep->u.lookup.hits = n;
        rep->u.lookup.cold = m;
        return rc;
    case VKVP_FETCH: {
        const vkvp_keys_req *f = &rq->u.fetch;
        vkvs_fetch_result res;
        sc->sblocks = calloc(f->nkeys ? f->nkeys : 1, sizeof *sc->sblocks);
        vkvp_block *wb = calloc(f->nkeys ? f->nkeys : 1, sizeof *wb);
        sc->blocks = wb;
        if (!sc->sblocks || !wb)
            return VKV_ENOMEM;
        rc = vkvs_fetch(st, f->session, f->keys, f->nkeys, sc->sblocks, &res);
        if (rc)
            return rc;
        if (res.ncold > 0 && srv->cold && allow_defer) {
            uint32_t ns_id;
            const char *ns = NULL;
            if (vkvs_session_ns(st, f->session, &ns_id, &ns) == 0 &&
                start_restores(srv, ns, f->keys + res.nready, res.ncold) > 0) {
                if (res.lease)
                    vkvs_release(st, f->session, &res.lease, 1, NULL);
                return DEFER;
            }
        }
        for (size_t i = 0; i < res.nready; i++) {
            vkvp_extent *e = wire_extents(&sc->sblocks[i]);
            if (!e) {
                vkvs_release(st, f->session, &res.lease, 1, NULL);
                return VKV_ENOMEM;
            }
            sc->ext[sc->next++] = e;
            wb[i].len = sc->sblocks[i].size;
            wb[i].ext = e;
            wb[i].next = sc->sblocks[i].nextents;
        }
        rep->u.fetch.lease = res.lease;
        rep->u.fetch.blocks = wb;
        rep->u.fetch.nblocks = (uint32_t)res.nready;
        return 0;
    }
    case VKVP_ALLOC: {
        const vkvp_alloc_req *a = &rq->u.alloc;
        vkvs_block b;
        uint64_t lease;
        rc = vkvs_alloc(st, a->session, &a->key, a->size, &lease, &b);
        if (rc)
            return rc;
        vkvp_extent *e = wire_extents(&b);
        if (!e) {
            vkvs_abort(st, a->session, lease);
            return VKV_ENOMEM;
        }
        sc->ext[sc->next++] = e;
        rep->u.alloc.lease = lease;
        rep->u.alloc.block.len = b.size;
        rep->u.alloc.block.ext = e;
        rep->u.alloc.block.next = b.nextents;
        return 0;
    }
    case VKVP_COMMIT:
        rc = vkvs_commit(st, rq->u.commit.session, rq->u.commit.lease, validate_block, srv);
        if (rc && rc != VKV_ELEASE && rc != VKV_ESESSION) {
            srv->commit_rejected++;
            snprintf(why, why_len, "block rejected at commit: %s", vkv_strerror(rc));
        }
        return rc;
    case VKVP_ABORT:
        return vkvs_abort(st, rq->u.abort.session, rq->u.abort.lease);
    case VKVP_RELEASE:
        rc = vkvs_release(st, rq->u.release.session, rq->u.release.leases, rq->u.release.nleases,
                          &n);
        rep->u.release.count = n;
        return rc;
    case VKVP_RENEW:
        rc = vkvs_renew(st, rq->u.renew.session, rq->u.renew.leases, rq->u.renew.nleases, &n);
        rep->u.renew.count = n;
        return rc;
    case VKVP_CLOSE:
        rc = vkvs_session_close(st, rq->u.close.session);
        if (rc == 0)
            VKV_INFO("session %016" PRIx64 " closed by its client", rq->u.close.session);
        return rc;
    case VKVP_DELETE:
        rc = vkvs_delete(st, rq->u.del.session, opt_ns(rq->u.del.has_ns, rq->u.del.ns),
                         rq->u.del.keys, rq->u.del.nkeys, &n);
        rep->u.del.count = n;
        return rc;
    case VKVP_EVICT: {
        const vkvp_evict_req *e = &rq->u.evict;
        rc = vkvs_evict(st, e->session, opt_ns(e->has_ns, e->ns), e->has_keys ? e->keys : NULL,
                        e->has_keys ? e->nkeys : 0, e->to == VKVP_EVICT_COLD, &n);
        rep->u.evict.count = n;
        return rc;
    }
    case VKVP_FLUSH:
        rc = vkvs_evict(st, rq->u.flush.session, NULL, NULL, 0, true, &n);
        if (rc == VKV_EBUSY) {
            /* The spill queue is full: the rest follows as the writer
             * drains (flush_continue), at most spill-queue bytes at a time. */
            uint32_t ns_id;
            const char *ns = "";
            int admin = vkvs_session_ns(st, rq->u.flush.session, &ns_id, &ns) == 0 && !*ns;
            snprintf(srv->flush_ns, sizeof srv->flush_ns, "%s", admin ? "" : ns);
            srv->flush_more = true;
            rc = 0;
        }
        rep->u.flush.count = n;
        return rc;
    case VKVP_STATS:
        if (rq->u.stats.has_session && (rc = vkvs_session_touch(st, rq->u.stats.session)))
            return rc;
        collect_counters(srv, &sc->counters);
        rep->u.stats.counters = sc->counters.c;
        rep->u.stats.ncounters = sc->counters.n;
        return 0;
    case VKVP_LIST: {
        const vkvp_list_req *l = &rq->u.list;
        uint64_t next = 0;
        sc->infos = calloc(l->limit, sizeof *sc->infos);
        sc->entries = calloc(l->limit, sizeof *sc->entries);
        sc->shapes = calloc(l->limit, sizeof *sc->shapes);
        if (!sc->infos || !sc->entries || !sc->shapes)
            return VKV_ENOMEM;
        rc = vkvs_list(st, l->session, opt_ns(l->has_ns, l->ns), l->cursor, l->limit, sc->infos, &n,
                       &next);
        if (rc)
            return rc;
        for (size_t i = 0; i < n; i++)
            wire_entry(srv, &sc->infos[i], &sc->entries[i], sc->shapes[i], sizeof sc->shapes[i]);
        rep->u.list.entries = sc->entries;
        rep->u.list.nentries = (uint32_t)n;
        rep->u.list.next = next;
        return 0;
    }
    case VKVP_INFO: {
        const vkvp_info_req *in = &rq->u.info;
        sc->infos = calloc(1, sizeof *sc->infos);
        sc->shapes = calloc(1, sizeof *sc->shapes);
        if (!sc->infos || !sc->shapes)
            return VKV_ENOMEM;
        rc = vkvs_info_get(st, in->session, opt_ns(in->has_ns, in->ns), &in->key, sc->infos);
        if (rc)
            return rc;
        wire_entry(srv, sc->infos, &rep->u.info.entry, sc->shapes[0], sizeof sc->shapes[0]);
        return 0;
    }
    case VKVP_PING:
        if (rq->u.ping.has_session)
            return vkvs_session_touch(st, rq->u.ping.session);
        return 0;
    case VKVP_VERIFY:
        if ((rc = vkvs_session_touch(st, rq->u.verify.session)) != 0)
            return rc;
        return verify_op(srv, rq->u.verify.start, rq->u.verify.drop, &rep->u.verify);
    }
    return VKV_ENOTSUP;
}

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
    if (run_request(srv, control, rq, srv->cur_hash, t_arrival, true) == DEFER)
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
 * list instead (taking rq and control) and DEFER is returned; otherwise the
 * reply is sent, control consumed, and 0 returned (rq stays the caller's). */
static int run_request(vkvd_server *srv, void *control, vkvp_request *rq, uint64_t req_hash,
                       uint64_t t_arrival, bool allow_defer)
{
    char why[VKVP_WHY_LEN] = "";
    vkvp_reply rep;
    struct scratch sc;
    memset(&sc, 0, sizeof sc);
    vkvp_reply_init(&rep, rq->op, rq->req_id, srv->epoch);
    int rc = dispatch(srv, rq, &rep, &sc, why, sizeof why, allow_defer);
    if (rc == DEFER) {
        scratch_free(&sc);
        struct deferred *d = calloc(1, sizeof *d);
        if (d) {
            d->control = control;
            d->rq = rq;
            d->req_hash = req_hash;
            d->t_arrival = t_arrival;
            d->deadline_ms = vkv_now_ms() + DEFER_LIMIT_MS;
            d->next = srv->deferred;
            srv->deferred = d;
            srv->fetch_deferred++;
            return DEFER;
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
    scratch_free(&sc);
    if (srv->metrics)
        vkvd_metrics_observe(srv->metrics, rq->op, (double)(vkv_now_ns() - t_arrival) * 1e-9);
    return 0;
}

/* Runs every deferred FETCH again after restores progressed: those whose
 * prefix is now hot (or that waited DEFER_LIMIT_MS) are answered. Waiting is
 * bounded by time, not by completions, so other clients' restores finishing
 * first never cut a FETCH short. */
static void rerun_deferred(vkvd_server *srv)
{
    struct deferred *list = srv->deferred;
    srv->deferred = NULL;
    while (list) {
        struct deferred *d = list;
        list = d->next;
        bool allow = vkv_now_ms() < d->deadline_ms && !srv->stopping;
        srv->fetch_deferred--;               /* run_request counts it again if it stays */
        vkvs_set_fetch_quiet(srv->st, true); /* counted at its first run */
        int rr = run_request(srv, d->control, d->rq, d->req_hash, d->t_arrival, allow);
        vkvs_set_fetch_quiet(srv->st, false);
        if (rr == DEFER) {
            srv->deferred->deadline_ms = d->deadline_ms; /* the new node heads the list */
        } else {
            vkvp_request_free(d->rq);
        }
        free(d);
    }
}

/* Drains cold-tier completions, applies them, and re-runs waiting FETCHes. */
static void on_cold(vkvd_server *srv);

/* Continues a FLUSH that stopped at the spill-queue bound, or the final
 * spill at shutdown: evicts (to cold) what the queue takes now, through a
 * short-lived admin session. Returns the store's status (VKV_EBUSY: more
 * to do once the writer drains). */
static int flush_continue(vkvd_server *srv)
{
    uint64_t sid;
    size_t n = 0;
    int rc = vkvs_session_open(srv->st, NULL, getpid(), true, &sid);
    if (rc)
        return rc;
    rc = vkvs_evict(srv->st, sid, srv->flush_ns[0] ? srv->flush_ns : NULL, NULL, 0, true, &n);
    vkvs_session_close(srv->st, sid);
    srv->flush_more = rc == VKV_EBUSY;
    return rc;
}

static void on_cold(vkvd_server *srv)
{
    vkvs_cold_completion c[64];
    int n, any = 0;
    while ((n = vkvs_cold_poll(srv->cold, c, 64)) > 0) {
        for (int i = 0; i < n; i++)
            apply_completion(srv, &c[i]);
        any = 1;
    }
    if (any && srv->flush_more)
        flush_continue(srv);
    if (any && srv->deferred)
        rerun_deferred(srv);
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

/* Periodic housekeeping: reap dead sessions and expired leases. */
static void on_timer(vkvd_server *srv)
{
    uint64_t ticks;
    ssize_t r = read(srv->timerfd, &ticks, sizeof ticks);
    (void)r;
    live_bind(srv);
    int closed = vkvs_reap(srv->st, vkv_now_ms(), pid_alive, NULL);
    if (closed > 0)
        VKV_INFO("reaped %d session(s)", closed);
    live_prune(srv);
    if (srv->metrics) {
        struct counters cs;
        const char *names[MAX_COUNTERS];
        uint64_t values[MAX_COUNTERS];
        collect_counters(srv, &cs);
        for (uint32_t i = 0; i < cs.n; i++) {
            names[i] = cs.c[i].name.ptr;
            values[i] = cs.c[i].value;
        }
        vkvd_metrics_publish(srv->metrics, names, values, cs.n);
    }
}

/* ---- open / run / close ---------------------------------------------------------- */

int vkvd_server_open(const vkvd_config *cfg, vkvd_server **out)
{
    vkvd_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return VKV_ENOMEM;
    srv->cfg = *cfg;
    srv->nn = -1;
    srv->sigfd = srv->timerfd = srv->lockfd = -1;
    pthread_mutex_init(&srv->live_mu, NULL);
    int rc = VKV_ESYS;

    if (make_private_dir(cfg->rundir) != 0)
        goto fail;
    char lockp[VKVD_PATH_MAX + 16];
    snprintf(lockp, sizeof lockp, "%s/vkvd.lock", cfg->rundir);
    srv->lockfd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (srv->lockfd < 0 || flock(srv->lockfd, LOCK_EX | LOCK_NB) != 0) {
        VKV_ERROR("another vkvd already serves %s (lock %s: %s)", cfg->rundir, lockp,
                  strerror(errno));
        goto fail;
    }
    if (getrandom(&srv->epoch, sizeof srv->epoch, 0) != sizeof srv->epoch)
        srv->epoch = vkv_now_ns() ^ ((uint64_t)getpid() << 32);
    if (srv->epoch == 0)
        srv->epoch = 1;

    /* --backend: auto = cuda when a device is usable, else host. */
    static int cuda_device = 0;
    const vkvs_backend *be = &vkvs_backend_host;
    bool want_cuda = strcmp(cfg->backend, "cuda") == 0;
#ifdef VKV_WITH_CUDA
    if ((want_cuda || strcmp(cfg->backend, "auto") == 0) && vkvs_cuda_usable(cuda_device))
        be = &vkvs_backend_cuda;
#endif
    if (want_cuda && be == &vkvs_backend_host) {
        VKV_ERROR("backend 'cuda': no usable CUDA device%s",
#ifdef VKV_WITH_CUDA
                  ""
#else
                  " (this build has no CUDA)"
#endif
        );
        rc = VKV_ENOTSUP;
        goto fail;
    }
    vkvs_config sc;
    vkvs_config_default(&sc);
    sc.backend = be;
    sc.backend_arg = be == &vkvs_backend_host ? NULL : &cuda_device;
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
    if (rc) {
        VKV_ERROR("cannot create the %llu-byte host arena: %s", (unsigned long long)cfg->capacity,
                  vkv_strerror(rc));
        goto fail;
    }

    srv->cold_fd = -1;
    open_cold(srv);

    snprintf(srv->fd_path, sizeof srv->fd_path, "%s/vkvd.fds", cfg->rundir);
    rc = vkvd_fdchan_open(srv->fd_path, cfg->allow_gid, live_check, srv, &srv->fc);
    if (rc)
        goto fail;
    {
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
        if ((rc = vkvd_fdchan_set_slabs(srv->fc, ids, sizes, fds, n)) != 0)
            goto fail;
    }

    rc = VKV_ESYS;
    snprintf(srv->sock_path, sizeof srv->sock_path, "%s/vkvd.sock", cfg->rundir);
    char url[VKVD_PATH_MAX + 32];
    snprintf(url, sizeof url, "ipc://%s", srv->sock_path);
    unlink(srv->sock_path); /* stale socket of a crashed daemon (we hold the lock) */
    srv->nn = nn_socket(AF_SP_RAW, NN_REP);
    if (srv->nn < 0) {
        VKV_ERROR("nn_socket: %s", nn_strerror(nn_errno()));
        goto fail;
    }
    int maxsz = VKVP_MAX_FRAME;
    nn_setsockopt(srv->nn, NN_SOL_SOCKET, NN_RCVMAXSIZE, &maxsz, sizeof maxsz);
    mode_t old = umask(0177);
    int brc = nn_bind(srv->nn, url);
    umask(old);
    if (brc < 0) {
        VKV_ERROR("cannot bind %s: %s", url, nn_strerror(nn_errno()));
        goto fail;
    }
    size_t sz = sizeof srv->nn_rcvfd;
    if (nn_getsockopt(srv->nn, NN_SOL_SOCKET, NN_RCVFD, &srv->nn_rcvfd, &sz) < 0) {
        VKV_ERROR("NN_RCVFD: %s", nn_strerror(nn_errno()));
        goto fail;
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    srv->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    srv->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (srv->sigfd < 0 || srv->timerfd < 0) {
        VKV_ERROR("signalfd/timerfd: %s", strerror(errno));
        goto fail;
    }
    struct itimerspec its = {0};
    its.it_interval.tv_sec = cfg->reap_interval_ms / 1000;
    its.it_interval.tv_nsec = (long)(cfg->reap_interval_ms % 1000) * 1000000L;
    its.it_value = its.it_interval;
    timerfd_settime(srv->timerfd, 0, &its, NULL);

    if (cfg->metrics_port > 0) {
        if (vkvd_metrics_open(cfg->metrics_port, &srv->metrics) != 0)
            VKV_WARN("metrics endpoint on 127.0.0.1:%d unavailable; serving without it",
                     cfg->metrics_port);
        else
            VKV_INFO("metrics on http://127.0.0.1:%d/metrics", cfg->metrics_port);
    }
    VKV_INFO("serving %s (backend %s, %llu MiB in %u slabs of %llu MiB, page %u KiB, "
             "policy %s, epoch %016" PRIx64 ")",
             url, be->name, (unsigned long long)(cfg->capacity >> 20), vkvs_slab_count(srv->st),
             (unsigned long long)(cfg->slab_size >> 20), cfg->page_size >> 10, cfg->policy,
             srv->epoch);
    *out = srv;
    return 0;
fail:
    vkvd_server_close(srv);
    return rc ? rc : VKV_ESYS;
}

int vkvd_server_run(vkvd_server *srv)
{
    struct pollfd pf[4] = {{srv->nn_rcvfd, POLLIN, 0},
                           {srv->sigfd, POLLIN, 0},
                           {srv->timerfd, POLLIN, 0},
                           {srv->cold_fd, POLLIN, 0}};
    while (!srv->stopping) {
        int r = poll(pf, srv->cold ? 4 : 3, -1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            VKV_ERROR("poll: %s", strerror(errno));
            return -1;
        }
        if (pf[0].revents & POLLIN)
            drain_socket(srv);
        if (pf[2].revents & POLLIN)
            on_timer(srv);
        if (srv->cold && (pf[3].revents & POLLIN))
            on_cold(srv);
        if (pf[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(srv->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
                VKV_INFO("signal %u: shutting down", si.ssi_signo);
                srv->stopping = true;
            }
        }
    }
    /* Graceful shutdown: no new fd-channel clients; answer what is queued
     * (new requests get VKV_ESHUTDOWN), let waiting FETCHes finish their
     * restores (bounded), then make the hot tier durable. */
    vkvd_fdchan_close(srv->fc);
    srv->fc = NULL;
    drain_socket(srv);
    uint64_t deadline = vkv_now_ms() + 10000;
    while (srv->deferred && srv->cold && vkv_now_ms() < deadline) {
        struct pollfd cp = {srv->cold_fd, POLLIN, 0};
        if (poll(&cp, 1, 100) > 0)
            on_cold(srv);
        drain_socket(srv);
    }
    if (srv->deferred)
        rerun_deferred(srv); /* stopping: answers with what is hot */
    verify_join(srv);        /* it stops at its next entry */
    int rc = 0;
    if (srv->cold) {
        if (srv->cfg.spill_on_exit) {
            /* End every session first so pinned entries become evictable. */
            int closed = vkvs_reap(srv->st, UINT64_MAX, NULL, NULL);
            vkvs_stats before;
            vkvs_stats_get(srv->st, &before);
            srv->flush_ns[0] = '\0';
            /* in rounds of at most spill-queue bytes, waiting for the writer */
            uint64_t idle_since = vkv_now_ms(), last = srv->spill_queued;
            while (flush_continue(srv) == VKV_EBUSY) {
                struct pollfd cp = {srv->cold_fd, POLLIN, 0};
                if (poll(&cp, 1, 100) > 0)
                    on_cold(srv);
                if (srv->spill_queued != last) {
                    last = srv->spill_queued;
                    idle_since = vkv_now_ms();
                } else if (vkv_now_ms() - idle_since > 60000) {
                    VKV_ERROR("the cold-tier writer made no progress for 60 s: the rest of "
                              "the hot tier is not spilled");
                    break;
                }
            }
            vkvs_stats after;
            vkvs_stats_get(srv->st, &after);
            VKV_INFO("spilled %llu hot entries to the cold tier (%d sessions ended)",
                     (unsigned long long)(after.spills - before.spills), closed);
        }
        rc = vkvs_cold_flush_wait(srv->cold);
        on_cold(srv);
        if (rc)
            VKV_ERROR("final cold-tier sync failed: %s", vkv_strerror(rc));
    }
    VKV_INFO("stopped");
    return rc ? -1 : 0;
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
    verify_join(srv);
    if (srv->cold) {
        vkvs_cold_close(srv->cold);
        srv->cold = NULL;
    }
    while (srv->ops) {
        struct pending_op *o = srv->ops;
        srv->ops = o->next;
        op_free(o);
    }
    while (srv->deferred) {
        struct deferred *d = srv->deferred;
        srv->deferred = d->next;
        nn_freemsg(d->control);
        vkvp_request_free(d->rq);
        free(d);
    }
    vkvs_close(srv->st);
    if (srv->sigfd >= 0)
        close(srv->sigfd);
    if (srv->timerfd >= 0)
        close(srv->timerfd);
    if (srv->lockfd >= 0)
        close(srv->lockfd);
    for (size_t i = 0; i < RCACHE_SLOTS; i++)
        free(srv->rcache[i].frame);
    free(srv->live);
    pthread_mutex_destroy(&srv->live_mu);
    free(srv);
}
