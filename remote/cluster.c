/* Redis Cluster slot router over hiredis; see cluster.h. */
#include "remote/cluster.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "vkv/error.h"

#define NO_NODE        0xFFFFu
#define MAX_REDIRECTS  16 /* with growing pauses: about 0.5 s in all */
#define TRYAGAIN_MS    20
#define REFRESH_MIN_MS 50 /* a stale map is reloaded at most this often */
/* A slot no node served at the last reload (a cluster still being created,
 * slots not assigned yet) makes the map be reloaded at most this often. */
#define UNKNOWN_REFRESH_MS 1000

struct node {
    char host[VKVR_HOST_MAX];
    int port;
    redisContext *ctx;
    uint64_t down_until_ms; /* monotonic; 0 = may connect */
};

#define READ_CHUNK (1u << 20) /* bytes per read(2) of a reply (hiredis: 16 KiB) */

struct vkvr_cluster {
    char *rbuf; /* READ_CHUNK bytes: replies are read through it */
    struct node nodes[VKVR_NODES_MAX];
    int nnodes;
    int nseeds; /* nodes[0..nseeds) are the configured seeds */
    uint16_t slot[VKVR_SLOTS];
    bool stale;       /* reload the map before the next command */
    bool no_getrange; /* the ACL refused GETRANGE: reads use GET */
    uint64_t last_refresh_ms;
    char *user, *password;
    uint32_t timeout_ms, retry_ms;
    vkvr_cluster_counters n;
    char err[160];
};

/* ---- CRC16 / key slot --------------------------------------------------- */

static uint16_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

/* Builds the CRC16-XMODEM table (polynomial 0x1021, MSB first). */
static void crc_init(void)
{
    for (int i = 0; i < 256; i++) {
        uint16_t c = (uint16_t)(i << 8);
        for (int b = 0; b < 8; b++)
            c = (uint16_t)((c & 0x8000) ? (c << 1) ^ 0x1021 : c << 1);
        crc_table[i] = c;
    }
}

uint16_t vkvr_crc16(const void *buf, size_t len)
{
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = buf;
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++)
        crc = (uint16_t)((crc << 8) ^ crc_table[((crc >> 8) ^ p[i]) & 0xFF]);
    return crc;
}

uint16_t vkvr_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1)
            return vkvr_crc16(open + 1, (size_t)(close - open - 1)) & (VKVR_SLOTS - 1);
    }
    return vkvr_crc16(key, len) & (VKVR_SLOTS - 1);
}

/* ---- node list ------------------------------------------------------------- */

int vkvr_parse_nodes(const char *list, vkvr_addr *out, int max)
{
    int n = 0;
    const char *p = list;
    if (!list || !*list)
        return VKV_EINVAL;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[VKVR_HOST_MAX + 32];
        if (len == 0 || len >= sizeof item || n >= max)
            return VKV_EINVAL;
        memcpy(item, p, len);
        item[len] = '\0';
        char *s = item;
        if (strncmp(s, "redis://", 8) == 0)
            s += 8;
        char *slash = strchr(s, '/');
        if (slash)
            *slash = '\0'; /* "redis://h:p/" */
        char *colon = strrchr(s, ':');
        if (!colon || colon == s || (size_t)(colon - s) >= VKVR_HOST_MAX)
            return VKV_EINVAL;
        char *e = NULL;
        long port = strtol(colon + 1, &e, 10);
        if (!e || *e || port <= 0 || port > 65535)
            return VKV_EINVAL;
        memcpy(out[n].host, s, (size_t)(colon - s));
        out[n].host[colon - s] = '\0';
        out[n].port = (int)port;
        n++;
        if (!end)
            break;
        p = end + 1;
    }
    return n > 0 ? n : VKV_EINVAL;
}

/* Finds or adds the node host:port; returns its index or -1 when full. */
static int node_index(vkvr_cluster *c, const char *host, int port)
{
    for (int i = 0; i < c->nnodes; i++)
        if (c->nodes[i].port == port && strcmp(c->nodes[i].host, host) == 0)
            return i;
    if (c->nnodes >= VKVR_NODES_MAX || strlen(host) >= VKVR_HOST_MAX)
        return -1;
    struct node *nd = &c->nodes[c->nnodes];
    memset(nd, 0, sizeof *nd);
    snprintf(nd->host, sizeof nd->host, "%s", host);
    nd->port = port;
    return c->nnodes++;
}

vkvr_cluster *vkvr_cluster_new(const vkvr_addr *seeds, int nseeds, const char *user,
                               const char *password, uint32_t timeout_ms, uint32_t retry_ms)
{
    vkvr_cluster *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    for (int i = 0; i < nseeds; i++)
        node_index(c, seeds[i].host, seeds[i].port);
    c->nseeds = c->nnodes;
    c->rbuf = malloc(READ_CHUNK);
    for (int i = 0; i < VKVR_SLOTS; i++)
        c->slot[i] = NO_NODE;
    c->stale = true;
    c->timeout_ms = timeout_ms ? timeout_ms : 2000;
    c->retry_ms = retry_ms;
    if (!c->rbuf || (user && *user && !(c->user = strdup(user))) ||
        (password && *password && !(c->password = strdup(password)))) {
        vkvr_cluster_free(c);
        return NULL;
    }
    return c;
}

void vkvr_cluster_free(vkvr_cluster *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->nnodes; i++)
        if (c->nodes[i].ctx)
            redisFree(c->nodes[i].ctx);
    free(c->user);
    free(c->password);
    free(c->rbuf);
    free(c);
}

bool vkvr_cluster_getrange(const vkvr_cluster *c)
{
    return !c->no_getrange;
}

void vkvr_cluster_no_getrange(vkvr_cluster *c)
{
    if (!c->no_getrange)
        VKV_WARN("remote tier: the cluster's ACL refuses GETRANGE: values are read whole with GET, "
                 "so an oversized value planted in the cluster costs memory as large (add "
                 "+getrange to the fleet's ACL user, docs/REMOTE.md)");
    c->no_getrange = true;
}

const vkvr_cluster_counters *vkvr_cluster_counts(const vkvr_cluster *c)
{
    return &c->n;
}

const char *vkvr_cluster_errstr(const vkvr_cluster *c)
{
    return c->err;
}

/* ---- connections ----------------------------------------------------------- */

/* Drops node i's connection after an error on it and keeps it down for
 * retry_ms; the slot map is reloaded before the next command. Returns the
 * VKV_E* code for the hiredis error `err` (REDIS_ERR_*) with errno `e`. */
static int node_fail(vkvr_cluster *c, int i, int err, int e, const char *what)
{
    struct node *nd = &c->nodes[i];
    bool timeout = err == REDIS_ERR_IO &&
                   (e == EAGAIN || e == EWOULDBLOCK || e == ETIMEDOUT || e == EINPROGRESS);
    snprintf(c->err, sizeof c->err, "%s:%d: %s (%s)", nd->host, nd->port,
             timeout ? "timed out" : (nd->ctx && nd->ctx->errstr[0] ? nd->ctx->errstr : what),
             what);
    if (nd->ctx) {
        redisFree(nd->ctx);
        nd->ctx = NULL;
    }
    nd->down_until_ms = vkv_now_ms() + c->retry_ms;
    c->stale = true;
    if (timeout)
        c->n.timeouts++;
    else
        c->n.conn_errors++;
    return timeout ? VKV_ETIMEDOUT : VKV_EIO;
}

/* True when a failure on a connection made before this call (`reused`)
 * is worth one retry on a fresh connection: the peer closed or reset it
 * (a node restarted while this router's connection sat idle), not a
 * timeout. Drops the dead connection without marking the node down. */
static bool stale_conn(vkvr_cluster *c, int i, bool reused, int err, int e)
{
    struct node *nd = &c->nodes[i];
    bool timeout = err == REDIS_ERR_IO &&
                   (e == EAGAIN || e == EWOULDBLOCK || e == ETIMEDOUT || e == EINPROGRESS);
    if (!reused || timeout || (err != REDIS_ERR_EOF && err != REDIS_ERR_IO))
        return false;
    if (nd->ctx) {
        redisFree(nd->ctx);
        nd->ctx = NULL;
    }
    c->n.conn_errors++;
    return true;
}

/* Returns node i's connection, connecting (and authenticating) if needed, or
 * NULL with *rc set. */
static redisContext *node_conn(vkvr_cluster *c, int i, int *rc)
{
    struct node *nd = &c->nodes[i];
    if (nd->ctx)
        return nd->ctx;
    if (nd->down_until_ms && vkv_now_ms() < nd->down_until_ms) {
        snprintf(c->err, sizeof c->err, "%s:%d: down (retrying in %llu ms)", nd->host, nd->port,
                 (unsigned long long)(nd->down_until_ms - vkv_now_ms()));
        *rc = VKV_EIO;
        return NULL;
    }
    struct timeval tv = {c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000};
    redisContext *x = redisConnectWithTimeout(nd->host, nd->port, tv);
    if (!x) {
        *rc = VKV_ENOMEM;
        return NULL;
    }
    nd->ctx = x;
    if (x->err) {
        *rc = node_fail(c, i, x->err, errno, "connect");
        return NULL;
    }
    /* Keep up to a few pieces' worth of read buffer between replies
     * instead of hiredis's 16 KiB (it would be freed and regrown per piece). */
    x->reader->maxbuf = 4u << 20;
    if (redisSetTimeout(x, tv) != REDIS_OK) {
        *rc = node_fail(c, i, x->err, errno, "set timeout");
        return NULL;
    }
    c->n.connects++;
    if (c->password) {
        const char *av[3] = {"AUTH", c->user ? c->user : c->password, c->password};
        int ac = c->user ? 3 : 2;
        redisReply *r = redisCommandArgv(x, ac, av, NULL);
        if (!r) {
            *rc = node_fail(c, i, x->err, errno, "AUTH");
            return NULL;
        }
        bool ok = r->type != REDIS_REPLY_ERROR;
        if (!ok) {
            snprintf(c->err, sizeof c->err, "%s:%d: AUTH refused: %.100s", nd->host, nd->port,
                     r->str);
            redisFree(x);
            nd->ctx = NULL;
            nd->down_until_ms = vkv_now_ms() + c->retry_ms;
        }
        freeReplyObject(r);
        if (!ok) {
            *rc = VKV_EPERM;
            return NULL;
        }
    }
    nd->down_until_ms = 0;
    return x;
}

/* ---- slot map -------------------------------------------------------------- */

/* Applies a CLUSTER SLOTS reply `r` got from node `from`. Returns 0 or
 * VKV_EIO (malformed). */
static int apply_slots(vkvr_cluster *c, int from, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY)
        return VKV_EIO;
    uint16_t map[VKVR_SLOTS];
    for (int i = 0; i < VKVR_SLOTS; i++)
        map[i] = NO_NODE;
    for (size_t k = 0; k < r->elements; k++) {
        const redisReply *e = r->element[k];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
            return VKV_EIO;
        const redisReply *m = e->element[2];
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        if (lo < 0 || hi >= VKVR_SLOTS || lo > hi || m->element[0]->type != REDIS_REPLY_STRING ||
            m->element[1]->type != REDIS_REPLY_INTEGER)
            return VKV_EIO;
        /* An empty or "?" host means the node we asked (Redis 7). */
        const char *host = m->element[0]->str;
        if (!host[0] || strcmp(host, "?") == 0)
            host = c->nodes[from].host;
        int idx = node_index(c, host, (int)m->element[1]->integer);
        if (idx < 0)
            return VKV_EIO;
        for (long long s = lo; s <= hi; s++)
            map[s] = (uint16_t)idx;
    }
    memcpy(c->slot, map, sizeof map);
    return 0;
}

static int read_reply(vkvr_cluster *c, redisContext *x, void **out);

int vkvr_cluster_refresh(vkvr_cluster *c)
{
    int last = VKV_EIO;
    c->last_refresh_ms = vkv_now_ms();
    c->n.refreshes++;
    /* Nodes with a live connection first, then every other known node. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < c->nnodes; i++) {
            if ((pass == 0) != (c->nodes[i].ctx != NULL))
                continue;
            int rc = 0;
            redisContext *x = node_conn(c, i, &rc);
            if (!x) {
                last = rc;
                continue;
            }
            const char *av[2] = {"CLUSTER", "SLOTS"};
            void *rv = NULL; /* read_reply: the socket's timeouts are per command */
            if (redisAppendCommandArgv(x, 2, av, NULL) == REDIS_OK &&
                read_reply(c, x, &rv) != REDIS_OK)
                rv = NULL;
            redisReply *r = rv;
            if (!r) {
                /* an idle connection to a restarted node: pass 1 retries */
                if (pass == 0 && stale_conn(c, i, true, x->err, errno))
                    continue;
                last = node_fail(c, i, x->err, errno, "CLUSTER SLOTS");
                continue;
            }
            rc = r->type == REDIS_REPLY_ERROR ? VKV_EIO : apply_slots(c, i, r);
            if (rc)
                snprintf(c->err, sizeof c->err, "%s:%d: CLUSTER SLOTS: %.100s", c->nodes[i].host,
                         c->nodes[i].port, r->type == REDIS_REPLY_ERROR ? r->str : "malformed");
            freeReplyObject(r);
            if (rc == 0) {
                c->stale = false;
                return 0;
            }
            last = rc;
        }
    }
    return last;
}

/* ---- commands -------------------------------------------------------------- */

/* The node serving `slot`, reloading a stale map first, and a map in
 * which no node serves `slot` at most once per UNKNOWN_REFRESH_MS (the
 * slots may have been assigned since: a tier opened before `redis-cli
 * --cluster create` ran works once it has); -1 with *rc set. */
static int route(vkvr_cluster *c, uint16_t slot, int *rc)
{
    const bool unknown = c->slot[slot] == NO_NODE;
    const uint64_t since = vkv_now_ms() - c->last_refresh_ms;
    if ((c->stale && (unknown || since >= REFRESH_MIN_MS)) ||
        (unknown && since >= UNKNOWN_REFRESH_MS)) {
        int r = vkvr_cluster_refresh(c);
        if (r && c->slot[slot] == NO_NODE) {
            *rc = r;
            return -1;
        }
    }
    if (c->slot[slot] == NO_NODE) {
        snprintf(c->err, sizeof c->err, "slot %u is served by no node", slot);
        *rc = VKV_EIO;
        return -1;
    }
    return c->slot[slot];
}

/* True when the map may be reloaded after a failed command: at most once
 * per REFRESH_MIN_MS, so that while a master is down its failed commands do
 * not each send CLUSTER SLOTS to the healthy ones. */
static bool refresh_due(const vkvr_cluster *c)
{
    return vkv_now_ms() - c->last_refresh_ms >= REFRESH_MIN_MS;
}

enum redir { R_NONE, R_MOVED, R_ASK, R_TRYAGAIN, R_DOWN };

/* Pauses ms milliseconds (TRYAGAIN and MOVED ping-pong back-off). */
static void pause_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* Classifies an error reply; for MOVED/ASK *target gets the node index
 * (added if new) or -1. */
static enum redir redirect_of(vkvr_cluster *c, const redisReply *r, int *target)
{
    if (r->type != REDIS_REPLY_ERROR)
        return R_NONE;
    enum redir kind;
    const char *rest;
    if (strncmp(r->str, "MOVED ", 6) == 0) {
        kind = R_MOVED;
        rest = r->str + 6;
    } else if (strncmp(r->str, "ASK ", 4) == 0) {
        kind = R_ASK;
        rest = r->str + 4;
    } else if (strncmp(r->str, "TRYAGAIN", 8) == 0) {
        return R_TRYAGAIN;
    } else if (strncmp(r->str, "CLUSTERDOWN", 11) == 0) {
        return R_DOWN;
    } else {
        return R_NONE;
    }
    unsigned slot;
    char addr[VKVR_HOST_MAX + 16];
    *target = -1;
    if (sscanf(rest, "%u %79s", &slot, addr) != 2 || slot >= VKVR_SLOTS)
        return kind;
    char *colon = strrchr(addr, ':');
    if (!colon)
        return kind;
    *colon = '\0';
    int port = atoi(colon + 1);
    /* An empty host (possible with cluster-announce settings) is the
     * current node's; the caller never hits that with loopback clusters. */
    *target = addr[0] ? node_index(c, addr, port) : -1;
    if (kind == R_MOVED && *target >= 0) {
        c->slot[slot] = (uint16_t)*target;
        c->stale = true; /* other slots probably moved too */
    }
    return kind;
}

/* Sets socket option `opt` (SO_RCVTIMEO or SO_SNDTIMEO) of x's fd to the
 * time left until deadline_ms (monotonic), so that the next blocking
 * read(2) or write(2) ends by then. Returns false, with x->err and errno set
 * as for a timed-out read (REDIS_ERR_IO, EAGAIN), when no time is left. */
static bool arm_deadline(redisContext *x, int opt, uint64_t deadline_ms)
{
    const uint64_t now = vkv_now_ms();
    if (now >= deadline_ms) {
        x->err = REDIS_ERR_IO;
        snprintf(x->errstr, sizeof x->errstr, "%s", strerror(EAGAIN));
        errno = EAGAIN;
        return false;
    }
    const uint64_t left = deadline_ms - now;
    struct timeval tv = {(time_t)(left / 1000), (suseconds_t)((left % 1000) * 1000)};
    (void)setsockopt(x->fd, SOL_SOCKET, opt, &tv, sizeof tv);
    return true;
}

/* redisGetReply with reads of READ_CHUNK bytes instead of hiredis's 16 KiB
 * (a 2 MiB piece in 2-3 read(2) calls instead of 128): flushes what is
 * queued (each write(2) must make progress within timeout_ms), then feeds
 * the reader until it has a reply, which must be complete within timeout_ms
 * of the flush (each read(2) gets the time left, so a node that trickles
 * its reply a byte at a time cannot hold the thread longer). Returns
 * REDIS_OK with *out, or REDIS_ERR with x->err set (REDIS_ERR_IO with
 * errno, EAGAIN for a timeout; REDIS_ERR_EOF; REDIS_ERR_PROTOCOL). */
static int read_reply(vkvr_cluster *c, redisContext *x, void **out)
{
    *out = NULL;
    if (redisGetReplyFromReader(x, out) != REDIS_OK)
        return REDIS_ERR;
    if (*out)
        return REDIS_OK;
    int done = 0;
    do {
        if (!arm_deadline(x, SO_SNDTIMEO, vkv_now_ms() + c->timeout_ms) ||
            redisBufferWrite(x, &done) != REDIS_OK)
            return REDIS_ERR;
    } while (!done);
    const uint64_t deadline = vkv_now_ms() + c->timeout_ms;
    for (;;) {
        if (redisGetReplyFromReader(x, out) != REDIS_OK)
            return REDIS_ERR;
        if (*out)
            return REDIS_OK;
        if (!arm_deadline(x, SO_RCVTIMEO, deadline))
            return REDIS_ERR;
        ssize_t n = read(x->fd, c->rbuf, READ_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = errno;
            x->err = n == 0 ? REDIS_ERR_EOF : REDIS_ERR_IO;
            snprintf(x->errstr, sizeof x->errstr, "%s",
                     n == 0 ? "Server closed the connection" : strerror(e));
            errno = e;
            return REDIS_ERR;
        }
        if (redisReaderFeed(x->reader, c->rbuf, (size_t)n) != REDIS_OK) {
            x->err = x->reader->err ? x->reader->err : REDIS_ERR_PROTOCOL;
            snprintf(x->errstr, sizeof x->errstr, "%s", x->reader->errstr);
            return REDIS_ERR;
        }
    }
}

/* Sends one command to node i (preceded by ASKING when `asking`) and reads
 * its reply. Returns 0 with *out, or an error. */
static int send_to(vkvr_cluster *c, int i, bool asking, int argc, const char **argv,
                   const size_t *argvlen, redisReply **out)
{
    for (int attempt = 0;; attempt++) {
        int rc = 0;
        bool reused = attempt == 0 && c->nodes[i].ctx != NULL;
        redisContext *x = node_conn(c, i, &rc);
        if (!x)
            return rc;
        const char *what = argv[0];
        void *r = NULL;
        if (asking) {
            const char *av[1] = {"ASKING"};
            if (redisAppendCommandArgv(x, 1, av, NULL) != REDIS_OK)
                goto fail;
        }
        if (redisAppendCommandArgv(x, argc, argv, argvlen) != REDIS_OK)
            goto fail;
        if (asking) {
            if (read_reply(c, x, &r) != REDIS_OK)
                goto fail;
            freeReplyObject(r);
            r = NULL;
        }
        if (read_reply(c, x, &r) != REDIS_OK)
            goto fail;
        *out = r;
        return 0;
    fail:
        if (stale_conn(c, i, reused, x->err, errno))
            continue;
        return node_fail(c, i, x->err, errno, what);
    }
}

int vkvr_cluster_command(vkvr_cluster *c, int argc, const char **argv, const size_t *argvlen,
                         int key_arg, redisReply **out)
{
    size_t klen = argvlen ? argvlen[key_arg] : strlen(argv[key_arg]);
    uint16_t slot = vkvr_key_slot(argv[key_arg], klen);
    int rc = 0, target = -1;
    bool asking = false, retried_conn = false;
    *out = NULL;
    for (int hop = 0; hop <= MAX_REDIRECTS; hop++) {
        int i = target >= 0 ? target : route(c, slot, &rc);
        if (i < 0)
            return rc;
        redisReply *r = NULL;
        rc = send_to(c, i, asking, argc, argv, argvlen, &r);
        asking = false;
        target = -1;
        if (rc) {
            /* One more try after the map was reloaded: the slot may have a
             * new owner (a failover, a reshard that just finished). */
            if (retried_conn || rc == VKV_ENOMEM || rc == VKV_EPERM)
                return rc;
            retried_conn = true;
            int before = c->slot[slot];
            if (!refresh_due(c) || vkvr_cluster_refresh(c) != 0 || c->slot[slot] == before)
                return rc;
            continue;
        }
        enum redir k = redirect_of(c, r, &target);
        if (k == R_NONE) {
            *out = r;
            return 0;
        }
        snprintf(c->err, sizeof c->err, "%s", r->str);
        freeReplyObject(r);
        if (k == R_MOVED) {
            /* While a migration is being finalized, the old owner may
             * already point at the new one while the new one (still
             * IMPORTING) points back: wait for the SETSLOTs to land. */
            c->n.moved++;
            if (hop >= 2)
                pause_ms(hop * 5 < 50 ? hop * 5 : 50);
        } else if (k == R_ASK) {
            c->n.ask++;
            asking = true;
        } else if (k == R_TRYAGAIN) {
            c->n.tryagain++;
            pause_ms(TRYAGAIN_MS);
        } else {
            return VKV_EIO; /* CLUSTERDOWN */
        }
        if ((k == R_MOVED || k == R_ASK) && target < 0)
            return VKV_EIO;
    }
    snprintf(c->err, sizeof c->err, "too many redirects for slot %u", slot);
    return VKV_EIO;
}

/*
 * Sends the n commands on connection x in one write and reads their n
 * replies into out[0..n). True on success (the caller owns every out[k]).
 * On a connection error frees the replies read so far, stores hiredis's
 * error and errno in *cerr / *cerrno and returns false.
 */
static bool pipeline_exchange(vkvr_cluster *c, redisContext *x, int n, const int *argc,
                              const char *const *const *argv, const size_t *const *argvlen,
                              redisReply **out, int *cerr, int *cerrno)
{
    for (int k = 0; k < n; k++) {
        if (redisAppendCommandArgv(x, argc[k], (const char **)argv[k], argvlen[k]) != REDIS_OK) {
            *cerr = x->err;
            *cerrno = errno;
            return false;
        }
    }
    for (int k = 0; k < n; k++) {
        void *r = NULL;
        if (read_reply(c, x, &r) != REDIS_OK) {
            *cerr = x->err;
            *cerrno = errno;
            for (int j = 0; j < k; j++)
                freeReplyObject(out[j]);
            return false;
        }
        out[k] = r;
    }
    return true;
}

/*
 * Replaces each redirected reply in out[0..n) (a migrating slot, a moved
 * one) by the answer of its command run alone through vkvr_cluster_command.
 * Returns 0 (the caller owns every out[k]) or a VKV_E* after freeing all of
 * out.
 */
static int pipeline_redirects(vkvr_cluster *c, int n, const int *argc,
                              const char *const *const *argv, const size_t *const *argvlen,
                              int key_arg, redisReply **out)
{
    for (int k = 0; k < n; k++) {
        int target = -1;
        enum redir kind = redirect_of(c, out[k], &target);
        if (kind == R_NONE)
            continue;
        freeReplyObject(out[k]);
        out[k] = NULL;
        if (kind == R_MOVED)
            c->n.moved++;
        else if (kind == R_ASK)
            c->n.ask++;
        int rr = kind == R_DOWN ? VKV_EIO
                                : vkvr_cluster_command(c, argc[k], (const char **)argv[k],
                                                       argvlen[k], key_arg, &out[k]);
        if (rr) {
            for (int j = 0; j < n; j++)
                if (out[j])
                    freeReplyObject(out[j]);
            return rr;
        }
    }
    return 0;
}

int vkvr_cluster_pipeline(vkvr_cluster *c, int n, const int *argc, const char *const *const *argv,
                          const size_t *const *argvlen, int key_arg, redisReply **out)
{
    if (n <= 0)
        return 0;
    size_t klen = argvlen[0] ? argvlen[0][key_arg] : strlen(argv[0][key_arg]);
    uint16_t slot = vkvr_key_slot(argv[0][key_arg], klen);
    int rc = 0;
    bool fresh_retry = false;
    int cerr = 0, cerrno = 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        int i = route(c, slot, &rc);
        if (i < 0)
            return rc;
        bool reused = !fresh_retry && c->nodes[i].ctx != NULL;
        fresh_retry = false;
        redisContext *x = node_conn(c, i, &rc);
        if (!x)
            goto retry;
        if (pipeline_exchange(c, x, n, argc, argv, argvlen, out, &cerr, &cerrno))
            return pipeline_redirects(c, n, argc, argv, argvlen, key_arg, out);
        if (stale_conn(c, i, reused, cerr, cerrno)) {
            fresh_retry = true;
            continue;
        }
        rc = node_fail(c, i, cerr, cerrno, "pipeline");
    retry:
        if (rc == VKV_ENOMEM || rc == VKV_EPERM || attempt > 0)
            return rc;
        int before = c->slot[slot];
        if (!refresh_due(c) || vkvr_cluster_refresh(c) != 0 || c->slot[slot] == before)
            return rc;
    }
    return rc;
}
