/* The remote tier: job queues, I/O threads, completions; see remote.h. */
#include "remote/remote.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/clock.h"
#include "remote/cluster.h"
#include "common/log.h"
#include "remote/pieces.h"
#include "vkv/block.h"
#include "vkv/codec.h"
#include "vkv/error.h"

#define SEEDS_MAX    32
#define LOG_EVERY_MS 10000 /* at most one error line per kind per interval */

/* One queued operation. Owns buf (publish) and dst (copied iovec array). */
struct job {
    struct job *next;
    int op;
    uint64_t tag;
    uint64_t t_submit;
    vkv_key key;
    char ns[VKVR_NS_MAX + 1];
    void *buf; /* publish: the block (owned) */
    size_t len;
    struct iovec *dst; /* fetch: the caller's memory (array owned) */
    int ndst;
};

/* A FIFO of jobs. */
struct jobq {
    struct job *head, *tail;
    uint64_t n;
};

/* Rate limiter of one kind of error line. */
struct logrl {
    uint64_t last_ms;
    uint64_t suppressed;
};

struct worker {
    vkvr *r;
    pthread_t thr;
    bool started;
    vkvr_cluster *cl;
    vkvr_cluster_counters seen; /* router counters already added to stats */
};

struct vkvr {
    vkvr_config cfg;
    char *nodes, *user, *password;
    char prefix[VKVR_PREFIX_MAX + 1];
    vkvr_addr seeds[SEEDS_MAX];
    int nseeds;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    struct jobq fetchq, pubq;
    int publishing, pub_max;
    vkvr_completion *done;
    size_t ndone, capdone;
    int efd;
    vkvr_stats st;
    struct logrl rl_fetch, rl_pub;
    struct worker *w;
    int nw;
};

void vkvr_config_default(vkvr_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->prefix = "vkv:";
    cfg->ttl_ms = 24ull * 3600 * 1000;
    cfg->max_block = 256ull << 20;
    cfg->queue_bytes = 256ull << 20;
    cfg->piece_size = VKVR_PIECE_DEFAULT;
    cfg->timeout_ms = 2000;
    cfg->retry_ms = 1000;
    cfg->threads = 2;
}

const char *vkvr_op_name(int op)
{
    switch (op) {
    case VKVR_OP_PROBE:
        return "probe";
    case VKVR_OP_FETCH:
        return "fetch";
    case VKVR_OP_PUBLISH:
        return "publish";
    default:
        return "?";
    }
}

/* ---- queues ------------------------------------------------------------------ */

static void q_push(struct jobq *q, struct job *j)
{
    j->next = NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    q->n++;
}

static struct job *q_pop(struct jobq *q)
{
    struct job *j = q->head;
    if (j) {
        q->head = j->next;
        if (!q->head)
            q->tail = NULL;
        q->n--;
    }
    return j;
}

/* Frees a job and what it owns. */
static void job_free(struct job *j)
{
    free(j->buf);
    free(j->dst);
    free(j);
}

/* ---- completions ------------------------------------------------------------- */

/* Logs one error line for `rl` unless one was logged in the last
 * LOG_EVERY_MS (then counts it as suppressed). Called with r->mu held. */
static void log_limited(struct logrl *rl, const char *what, const vkvr_completion *c,
                        const char *detail)
{
    uint64_t now = vkv_now_ms();
    if (rl->last_ms && now - rl->last_ms < LOG_EVERY_MS) {
        rl->suppressed++;
        return;
    }
    VKV_WARN("remote tier: %s of a '%s' block failed: %s%s%s (%llu more since the last line)", what,
             c->ns, vkv_strerror(c->status), detail[0] ? ": " : "", detail,
             (unsigned long long)rl->suppressed);
    rl->last_ms = now;
    rl->suppressed = 0;
}

/* Adds the router's counter deltas to the stats. Called with r->mu held. */
static void add_router_counts(vkvr *r, struct worker *w)
{
    const vkvr_cluster_counters *n = vkvr_cluster_counts(w->cl);
    r->st.moved += n->moved - w->seen.moved;
    r->st.ask += n->ask - w->seen.ask;
    r->st.slot_refreshes += n->refreshes - w->seen.refreshes;
    r->st.connects += n->connects - w->seen.connects;
    r->st.conn_errors += n->conn_errors - w->seen.conn_errors;
    r->st.timeouts += n->timeouts - w->seen.timeouts;
    w->seen = *n;
}

/* Counts a finished publish (c->status) in the stats and frees its queue
 * room and publish slot. Called with r->mu held. */
static void count_publish(vkvr *r, const struct job *j, const vkvr_completion *c,
                          const char *detail)
{
    r->st.queue_bytes -= j->len;
    r->publishing--;
    if (c->status == 0) {
        r->st.publishes++;
        r->st.publish_bytes += j->len;
    } else if (c->status == VKV_EEXIST) {
        r->st.publish_skipped++;
    } else {
        r->st.publish_errors++;
        r->st.publish_oom += c->status == VKV_ENOSPC ? 1 : 0;
        log_limited(&r->rl_pub, "publish", c, c->status == VKV_ENOSPC ? "" : detail);
    }
}

/* Counts a finished probe or fetch (c->status, c->size, c->latency_ns) in
 * the stats. Called with r->mu held. */
static void count_fetch(vkvr *r, const vkvr_completion *c, const char *detail)
{
    if (c->op == VKVR_OP_PROBE) {
        r->st.probes++;
        r->st.probe_hits += c->status == 0 ? 1 : 0;
    } else {
        r->st.fetches++;
    }
    if (c->status == 0) {
        r->st.hits++;
        if (c->op == VKVR_OP_FETCH) {
            r->st.fetch_bytes += c->size;
            r->st.fetch_ns_total += c->latency_ns;
            if (c->latency_ns > r->st.fetch_ns_max)
                r->st.fetch_ns_max = c->latency_ns;
        }
    } else if (c->status == VKV_ENOTFOUND) {
        r->st.misses++;
    } else {
        r->st.errors++;
        log_limited(&r->rl_fetch, vkvr_op_name(c->op), c,
                    c->status == VKV_ECHECKSUM || c->status == VKV_EIDENT ? "" : detail);
    }
}

/* Appends c to the completion list, growing it as needed: 0, or VKV_ENOMEM
 * when it cannot grow (c is then not posted). Called with r->mu held. */
static int push_done(vkvr *r, const vkvr_completion *c)
{
    if (r->ndone == r->capdone) {
        size_t cap = r->capdone ? 2 * r->capdone : 64;
        vkvr_completion *nd = realloc(r->done, cap * sizeof *nd);
        if (!nd)
            return VKV_ENOMEM;
        r->done = nd;
        r->capdone = cap;
    }
    r->done[r->ndone++] = *c;
    return 0;
}

/* Posts the completion of job j (status, size, buf) and updates the stats;
 * frees j (except what `buf` hands to the caller). When the completion
 * cannot be posted (out of memory) buf is freed too. */
static void complete(struct worker *w, struct job *j, int status, uint64_t size, void *buf,
                     const vkvr_io_report *rep)
{
    vkvr *r = w->r;
    vkvr_completion c;
    memset(&c, 0, sizeof c);
    c.tag = j->tag;
    c.op = j->op;
    c.status = status;
    c.size = size;
    c.buf = buf;
    c.latency_ns = vkv_now_ns() - j->t_submit;
    c.key = j->key;
    memcpy(c.ns, j->ns, sizeof c.ns);
    const char *detail = vkvr_cluster_errstr(w->cl);
    pthread_mutex_lock(&r->mu);
    add_router_counts(r, w);
    r->st.corrupt += rep->corrupt ? 1 : 0;
    r->st.foreign += rep->foreign ? 1 : 0;
    r->st.dangling += rep->dangling ? 1 : 0;
    if (j->op == VKVR_OP_PUBLISH)
        count_publish(r, j, &c, detail);
    else
        count_fetch(r, &c, detail);
    if (status && status != VKV_ENOTFOUND && status != VKV_EEXIST) {
        r->st.last_error_ms = vkv_wall_ms();
        snprintf(r->st.last_error, sizeof r->st.last_error, "%s: %s%s%.100s", vkvr_op_name(j->op),
                 vkv_strerror(status), detail[0] ? ": " : "", detail);
    }
    r->st.queue_ops = r->fetchq.n + r->pubq.n;
    int post_rc = push_done(r, &c);
    pthread_cond_broadcast(&r->cv); /* a publish slot may be free */
    pthread_mutex_unlock(&r->mu);
    if (post_rc) {
        VKV_ERROR("remote tier: completion of tag %llu lost (out of memory)",
                  (unsigned long long)c.tag);
        free(buf);
    } else {
        uint64_t one = 1;
        ssize_t wr = write(r->efd, &one, sizeof one);
        (void)wr;
    }
    job_free(j);
}

/* ---- I/O threads -------------------------------------------------------------- */

/* Runs a probe or fetch job. */
static void run_read(struct worker *w, struct job *j)
{
    vkvr *r = w->r;
    vkvr_io_report rep = {0, 0, 0, 0};
    vkvr_manifest m;
    void *mbuf = NULL, *own = NULL;
    int rc =
        vkvr_manifest_read(w->cl, r->prefix, j->ns, &j->key, r->cfg.max_block, &m, &mbuf, &rep);
    uint64_t size = rc == 0 ? m.size : 0;
    if (rc == 0 && j->op == VKVR_OP_FETCH) {
        struct iovec one;
        const struct iovec *dst = j->dst;
        int ndst = j->ndst;
        if (ndst == 0) {
            own = malloc((size_t)m.size);
            if (!own) {
                rc = VKV_ENOMEM;
            } else {
                one.iov_base = own;
                one.iov_len = (size_t)m.size;
                dst = &one;
                ndst = 1;
            }
        }
        if (rc == 0)
            rc = vkvr_block_read(w->cl, r->prefix, j->ns, &j->key, &m, dst, ndst, &rep);
        if (rc) {
            free(own);
            own = NULL;
        }
    }
    free(mbuf);
    complete(w, j, rc, size, own, &rep);
}

/* Runs a publish job. */
static void run_publish(struct worker *w, struct job *j)
{
    vkvr *r = w->r;
    vkvr_io_report rep = {0, 0, 0, 0};
    /* Only a sound block bound to (ns, key) leaves the node (checked here,
     * not at submit: one XXH3 pass the event loop does not pay). */
    vkv_block_header h;
    uint8_t ident[VKV_IDENT_LEN];
    int rc = vkv_block_check(j->buf, j->len, VKV_DECODE_VERIFY, &h);
    if (rc == 0 && h.total_size != j->len)
        rc = VKV_ECORRUPT;
    if (rc == 0) {
        vkv_block_ident(j->ns, strlen(j->ns), j->key.b, ident);
        rc = vkv_block_check_ident(&h, ident);
    }
    if (rc == 0)
        rc = vkvr_block_write(w->cl, r->prefix, j->ns, &j->key, j->buf, j->len, r->cfg.piece_size,
                              r->cfg.ttl_ms, &rep);
    complete(w, j, rc, j->len, NULL, &rep);
}

/* Thread body: fetches and probes first; a publish when a publish slot is
 * free. */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    vkvr *r = w->r;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        if (r->stop)
            break;
        struct job *j = q_pop(&r->fetchq);
        if (!j && r->publishing < r->pub_max) {
            j = q_pop(&r->pubq);
            if (j)
                r->publishing++;
        }
        if (!j) {
            pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        r->st.queue_ops = r->fetchq.n + r->pubq.n;
        pthread_mutex_unlock(&r->mu);
        if (j->op == VKVR_OP_PUBLISH)
            run_publish(w, j);
        else
            run_read(w, j);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- open / close --------------------------------------------------------------- */

/* Copies a one-line reason into err (if given). */
static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

int vkvr_open(const vkvr_config *cfg, vkvr **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg || !cfg->nodes || !*cfg->nodes) {
        set_err(err, errlen, "remote tier: no nodes given");
        return VKV_EINVAL;
    }
    const char *prefix = cfg->prefix ? cfg->prefix : "vkv:";
    if (strlen(prefix) > VKVR_PREFIX_MAX || strpbrk(prefix, "{}")) {
        set_err(err, errlen, "remote tier: prefix longer than 64 bytes or holds '{' or '}'");
        return VKV_EINVAL;
    }
    if (cfg->piece_size < VKVR_PIECE_MIN || cfg->piece_size > VKVR_PIECE_MAX || cfg->threads < 1 ||
        cfg->threads > 32 || cfg->max_block == 0 || cfg->max_block > VKVR_BLOCK_MAX ||
        (cfg->max_block + cfg->piece_size - 1) / cfg->piece_size > VKVR_PIECES_MAX) {
        set_err(err, errlen, "remote tier: piece size, thread count or block bound out of range");
        return VKV_EINVAL;
    }
    vkvr *r = calloc(1, sizeof *r);
    if (!r) {
        set_err(err, errlen, "remote tier: out of memory");
        return VKV_ENOMEM;
    }
    r->cfg = *cfg;
    r->efd = -1;
    snprintf(r->prefix, sizeof r->prefix, "%s", prefix);
    r->nseeds = vkvr_parse_nodes(cfg->nodes, r->seeds, SEEDS_MAX);
    if (r->nseeds < 0) {
        set_err(err, errlen, "remote tier: node list is not host:port[,host:port...]");
        free(r);
        return VKV_EINVAL;
    }
    r->nodes = strdup(cfg->nodes);
    r->user = cfg->user ? strdup(cfg->user) : NULL;
    r->password = cfg->password ? strdup(cfg->password) : NULL;
    r->cfg.nodes = r->nodes;
    r->cfg.user = r->user;
    r->cfg.password = r->password;
    r->cfg.prefix = r->prefix;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->pub_max = cfg->threads > 1 ? cfg->threads - 1 : 1;
    r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    r->w = calloc((size_t)cfg->threads, sizeof *r->w);
    if (!r->nodes || (cfg->user && !r->user) || (cfg->password && !r->password) || !r->w ||
        r->efd < 0) {
        set_err(err, errlen, "remote tier: out of memory or no eventfd");
        vkvr_close(r);
        return r->efd < 0 ? VKV_ESYS : VKV_ENOMEM;
    }
    for (int i = 0; i < cfg->threads; i++) {
        struct worker *w = &r->w[i];
        w->r = r;
        w->cl = vkvr_cluster_new(r->seeds, r->nseeds, r->user, r->password, cfg->timeout_ms,
                                 cfg->retry_ms);
        if (!w->cl || pthread_create(&w->thr, NULL, worker_main, w) != 0) {
            set_err(err, errlen, "remote tier: cannot start I/O threads");
            r->nw = i + 1;
            vkvr_close(r);
            return VKV_ESYS;
        }
        w->started = true;
        r->nw = i + 1;
    }
    *out = r;
    return 0;
}

void vkvr_close(vkvr *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < r->nw; i++) {
        if (r->w[i].started)
            pthread_join(r->w[i].thr, NULL);
        vkvr_cluster_free(r->w[i].cl);
    }
    struct job *j;
    while ((j = q_pop(&r->fetchq)) != NULL)
        job_free(j);
    while ((j = q_pop(&r->pubq)) != NULL)
        job_free(j);
    for (size_t i = 0; i < r->ndone; i++)
        free(r->done[i].buf);
    free(r->done);
    free(r->w);
    if (r->efd >= 0)
        close(r->efd);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r->nodes);
    free(r->user);
    free(r->password);
    free(r);
}

int vkvr_fd(const vkvr *r)
{
    return r->efd;
}

int vkvr_poll(vkvr *r, vkvr_completion *out, int max)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->ndone < (size_t)max ? r->ndone : (size_t)max;
    if (n) {
        memcpy(out, r->done, n * sizeof *out);
        memmove(r->done, r->done + n, (r->ndone - n) * sizeof *r->done);
        r->ndone -= n;
    }
    if (r->ndone == 0) {
        uint64_t v;
        ssize_t rd = read(r->efd, &v, sizeof v);
        (void)rd;
    }
    pthread_mutex_unlock(&r->mu);
    return (int)n;
}

void vkvr_stats_get(vkvr *r, vkvr_stats *out)
{
    pthread_mutex_lock(&r->mu);
    *out = r->st;
    out->queue_ops = r->fetchq.n + r->pubq.n;
    pthread_mutex_unlock(&r->mu);
}

/* ---- submit ------------------------------------------------------------------------ */

/* A new job for (ns, key), or NULL with *rc set. */
static struct job *job_new(const char *ns, const vkv_key *key, int op, uint64_t tag, int *rc)
{
    if (!ns || !key || strlen(ns) > VKVR_NS_MAX) {
        *rc = VKV_EINVAL;
        return NULL;
    }
    struct job *j = calloc(1, sizeof *j);
    if (!j) {
        *rc = VKV_ENOMEM;
        return NULL;
    }
    j->op = op;
    j->tag = tag;
    j->key = *key;
    snprintf(j->ns, sizeof j->ns, "%s", ns);
    j->t_submit = vkv_now_ns();
    return j;
}

/* Queues j (on fetchq or pubq); VKV_ESHUTDOWN when closing (j not taken). */
static int enqueue(vkvr *r, struct job *j)
{
    pthread_mutex_lock(&r->mu);
    if (r->stop) {
        pthread_mutex_unlock(&r->mu);
        return VKV_ESHUTDOWN;
    }
    q_push(j->op == VKVR_OP_PUBLISH ? &r->pubq : &r->fetchq, j);
    r->st.queue_ops = r->fetchq.n + r->pubq.n;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return 0;
}

int vkvr_probe(vkvr *r, const char *ns, const vkv_key *key, uint64_t tag)
{
    int rc = 0;
    struct job *j = job_new(ns, key, VKVR_OP_PROBE, tag, &rc);
    if (!j)
        return rc;
    if ((rc = enqueue(r, j)) != 0)
        job_free(j);
    return rc;
}

int vkvr_fetch(vkvr *r, const char *ns, const vkv_key *key, const struct iovec *dst, int ndst,
               uint64_t tag)
{
    if (ndst < 0 || (ndst > 0 && !dst))
        return VKV_EINVAL;
    int rc = 0;
    struct job *j = job_new(ns, key, VKVR_OP_FETCH, tag, &rc);
    if (!j)
        return rc;
    if (ndst > 0) {
        j->dst = malloc((size_t)ndst * sizeof *j->dst);
        if (!j->dst) {
            job_free(j);
            return VKV_ENOMEM;
        }
        memcpy(j->dst, dst, (size_t)ndst * sizeof *dst);
        j->ndst = ndst;
    }
    if ((rc = enqueue(r, j)) != 0)
        job_free(j);
    return rc;
}

int vkvr_publish(vkvr *r, const char *ns, const vkv_key *key, void *buf, size_t len, uint64_t tag)
{
    if (!buf || len == 0)
        return VKV_EINVAL;
    if (len > r->cfg.max_block)
        return VKV_ETOOBIG;
    int rc = 0;
    struct job *j = job_new(ns, key, VKVR_OP_PUBLISH, tag, &rc);
    if (!j)
        return rc;
    pthread_mutex_lock(&r->mu);
    if (r->stop) {
        rc = VKV_ESHUTDOWN;
    } else if (r->st.queue_bytes + len > r->cfg.queue_bytes) {
        r->st.publish_refused++;
        rc = VKV_EBUSY;
    } else {
        j->buf = buf;
        j->len = len;
        r->st.queue_bytes += len;
        q_push(&r->pubq, j);
        r->st.queue_ops = r->fetchq.n + r->pubq.n;
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    if (rc)
        free(j); /* buf stays the caller's */
    return rc;
}
