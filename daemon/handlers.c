/*
 * daemon/handlers.c - one handler per protocol op (server_int.h).
 *
 * vkvd_dispatch looks the op up in g_handlers, a table generated from
 * VKVP_OPS (proto/proto.h): every op must have a handle_<op> here or the
 * file does not compile. A handler runs on the loop thread against the store
 * and fills the reply, whose pointers may reference the call's scratch.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "daemon/server_int.h"
#include "vkv/codec.h"

/* One request being handled: its server, request, reply, scratch, the
 * reason buffer of an error reply, and whether a FETCH may wait. */
struct call {
    vkvd_server *srv;
    const vkvp_request *rq;
    vkvp_reply *rep;
    struct vkvd_scratch *sc;
    char *why;
    size_t why_len;
    bool allow_defer;
};

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

int vkvd_check_ident(vkvd_server *srv, const vkv_block_header *h, const char *ns,
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
int vkvd_validate_block(void *arg, const vkvs_store *st, const char *ns, const vkv_key *key,
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
    if ((rc = vkvd_check_ident(srv, &h, ns, key)) != 0)
        return rc;
    /* without VKV_DECODE_VERIFY vkv_block_check reads only the 256 header
     * bytes: the copy stands in for the block (scattered or device memory
     * alike), and total_size was checked against the real size above */
    return vkv_block_check(&h, b->size, 0, NULL);
}

/* Returns the namespace filter string of an optional wire field, or NULL. */
static const char *opt_ns(bool has, vkvp_str s)
{
    return has ? s.ptr : NULL;
}

/* HELLO: opens a session and describes the arena (slabs, page size, lease
 * TTL, the fd channel's path). */
static int handle_hello(struct call *c)
{
    vkvs_store *st = c->srv->st;
    const vkvp_hello_req *h = &c->rq->u.hello;
    uint64_t sid;
    if (h->pid == 0 || h->pid > INT32_MAX)
        return VKV_EINVAL;
    if (h->ns.len && memchr(h->ns.ptr, '\0', h->ns.len)) {
        snprintf(c->why, c->why_len, "namespace contains a NUL byte");
        return VKV_EINVAL;
    }
    int rc = vkvs_session_open(st, h->ns.len ? h->ns.ptr : NULL, (pid_t)h->pid, h->admin, &sid);
    if (rc)
        return rc;
    vkvp_hello_rep *r = &c->rep->u.hello;
    uint32_t ns = vkvs_slab_count(st);
    c->sc->slabs = calloc(ns ? ns : 1, sizeof *c->sc->slabs);
    if (!c->sc->slabs) {
        vkvs_session_close(st, sid);
        return VKV_ENOMEM;
    }
    for (uint32_t i = 0; i < ns; i++) {
        const vkvs_slab *s = vkvs_slab_get(st, i);
        c->sc->slabs[i].id = s->id;
        c->sc->slabs[i].size = s->size;
        if (s->kind == VKVS_BACKEND_CUDA) {
            memcpy(c->sc->slabs[i].handle, s->ipc, VKVP_HANDLE_LEN);
            c->sc->slabs[i].handle_len = VKVP_HANDLE_LEN;
        }
    }
    vkvd_live_add(c->srv, sid);
    r->session = sid;
    r->epoch = c->srv->epoch;
    r->backend =
        vkvs_backend_of(st)->kind == VKVS_BACKEND_CUDA ? VKVP_BACKEND_CUDA : VKVP_BACKEND_HOST;
    r->lease_ttl_ms = c->srv->cfg.lease_ttl_ms;
    r->page_size = vkvs_page_size(st);
    r->fd_path = vkvp_cstr(c->srv->fd_path);
    r->slabs = c->sc->slabs;
    r->nslabs = ns;
    VKV_INFO("session %016" PRIx64 " opened: pid %" PRIu64 " ns '%.*s'%s", sid, h->pid,
             (int)h->ns.len, h->ns.ptr ? h->ns.ptr : "", h->admin ? " (admin)" : "");
    return 0;
}

/* LOOKUP: the length of the cached prefix (hot and cold). */
static int handle_lookup(struct call *c)
{
    size_t n = 0, m = 0;
    const vkvp_keys_req *l = &c->rq->u.lookup;
    int rc = vkvs_lookup(c->srv->st, l->session, l->keys, l->nkeys, &n, &m);
    if (rc == 0 && n < l->nkeys && c->srv->remote && c->allow_defer) {
        /* The rest may be on another node: fetch it into the local tiers
         * and answer when it is there (or after remote-wait-ms). */
        uint32_t ns_id;
        const char *ns = NULL;
        if (vkvs_session_ns(c->srv->st, l->session, &ns_id, &ns) == 0 &&
            vkvd_remote_start(c->srv, l->session, ns, l->keys + n, l->nkeys - n) > 0)
            return VKVD_DEFER;
    }
    c->rep->u.lookup.hits = n;
    c->rep->u.lookup.cold = m;
    return rc;
}

/* FETCH: pins the hot prefix under one lease and returns its extents; cold
 * keys right after it are restored first (VKVD_DEFER) when allowed. */
static int handle_fetch(struct call *c)
{
    vkvs_store *st = c->srv->st;
    struct vkvd_scratch *sc = c->sc;
    const vkvp_keys_req *f = &c->rq->u.fetch;
    vkvs_fetch_result res;
    sc->sblocks = calloc(f->nkeys ? f->nkeys : 1, sizeof *sc->sblocks);
    vkvp_block *wb = calloc(f->nkeys ? f->nkeys : 1, sizeof *wb);
    sc->blocks = wb;
    if (!sc->sblocks || !wb)
        return VKV_ENOMEM;
    int rc = vkvs_fetch(st, f->session, f->keys, f->nkeys, sc->sblocks, &res);
    if (rc)
        return rc;
    if (res.ncold > 0 && c->srv->cold && c->allow_defer) {
        uint32_t ns_id;
        const char *ns = NULL;
        if (vkvs_session_ns(st, f->session, &ns_id, &ns) == 0 &&
            vkvd_cold_start_restores(c->srv, ns, f->keys + res.nready, res.ncold) > 0) {
            if (res.lease)
                vkvs_release(st, f->session, &res.lease, 1, NULL);
            return VKVD_DEFER;
        }
    }
    if (res.ncold == 0 && res.nready < f->nkeys && c->srv->remote && c->allow_defer) {
        /* Past the local prefix: ask the remote tier (remote_tier.c). */
        uint32_t ns_id;
        const char *ns = NULL;
        if (vkvs_session_ns(st, f->session, &ns_id, &ns) == 0 &&
            vkvd_remote_start(c->srv, f->session, ns, f->keys + res.nready, f->nkeys - res.nready) >
                0) {
            if (res.lease)
                vkvs_release(st, f->session, &res.lease, 1, NULL);
            return VKVD_DEFER;
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
    c->rep->u.fetch.lease = res.lease;
    c->rep->u.fetch.blocks = wb;
    c->rep->u.fetch.nblocks = (uint32_t)res.nready;
    return 0;
}

/* ALLOC: reserves pages for a new block under a lease; waits (VKVD_DEFER,
 * when allowed) while spills in flight free its room. */
static int handle_alloc(struct call *c)
{
    const vkvp_alloc_req *a = &c->rq->u.alloc;
    vkvs_block b;
    uint64_t lease;
    /* Room held by spills in flight: wait for them (deferred, re-run at
     * their completions) rather than copy more victims on the loop. */
    vkvs_set_room_wait(c->srv->st, c->allow_defer && c->srv->cold);
    int rc = vkvs_alloc(c->srv->st, a->session, &a->key, a->size, &lease, &b);
    vkvs_set_room_wait(c->srv->st, false);
    if (rc == VKVS_WAIT)
        return VKVD_DEFER;
    if (rc)
        return rc;
    vkvp_extent *e = wire_extents(&b);
    if (!e) {
        vkvs_abort(c->srv->st, a->session, lease);
        return VKV_ENOMEM;
    }
    c->sc->ext[c->sc->next++] = e;
    c->rep->u.alloc.lease = lease;
    c->rep->u.alloc.block.len = b.size;
    c->rep->u.alloc.block.ext = e;
    c->rep->u.alloc.block.next = b.nextents;
    return 0;
}

/* COMMIT's check: vkvd_validate_block; a block that passes is also queued
 * for the remote tier (write-behind copy; validate success means the
 * commit succeeds). */
static int commit_validate(void *arg, const vkvs_store *st, const char *ns, const vkv_key *key,
                           const vkvs_block *b)
{
    int rc = vkvd_validate_block(arg, st, ns, key, b);
    if (rc == 0)
        vkvd_remote_publish(arg, ns, key, b);
    return rc;
}

/* COMMIT: validates the block's header and identity, publishes it. */
static int handle_commit(struct call *c)
{
    const vkvp_lease_req *r = &c->rq->u.commit;
    int rc = vkvs_commit(c->srv->st, r->session, r->lease, commit_validate, c->srv);
    if (rc && rc != VKV_ELEASE && rc != VKV_ESESSION) {
        c->srv->commit_rejected++;
        snprintf(c->why, c->why_len, "block rejected at commit: %s", vkv_strerror(rc));
    }
    return rc;
}

/* ABORT: drops a reservation. */
static int handle_abort(struct call *c)
{
    return vkvs_abort(c->srv->st, c->rq->u.abort.session, c->rq->u.abort.lease);
}

/* RELEASE: ends fetch leases (unpins). */
static int handle_release(struct call *c)
{
    size_t n = 0;
    const vkvp_release_req *r = &c->rq->u.release;
    int rc = vkvs_release(c->srv->st, r->session, r->leases, r->nleases, &n);
    c->rep->u.release.count = n;
    return rc;
}

/* RENEW: extends live leases. */
static int handle_renew(struct call *c)
{
    size_t n = 0;
    const vkvp_release_req *r = &c->rq->u.renew;
    int rc = vkvs_renew(c->srv->st, r->session, r->leases, r->nleases, &n);
    c->rep->u.renew.count = n;
    return rc;
}

/* CLOSE: ends the caller's session. */
static int handle_close(struct call *c)
{
    uint64_t sid = c->rq->u.close.session;
    int rc = vkvs_session_close(c->srv->st, sid);
    if (rc == 0)
        VKV_INFO("session %016" PRIx64 " closed by its client", sid);
    return rc;
}

/* DELETE: removes keys from every tier. */
static int handle_delete(struct call *c)
{
    size_t n = 0;
    const vkvp_delete_req *d = &c->rq->u.del;
    int rc = vkvs_delete(c->srv->st, d->session, opt_ns(d->has_ns, d->ns), d->keys, d->nkeys, &n);
    c->rep->u.del.count = n;
    return rc;
}

/* EVICT: moves entries out of the hot tier (to cold or dropped). */
static int handle_evict(struct call *c)
{
    size_t n = 0;
    const vkvp_evict_req *e = &c->rq->u.evict;
    int rc =
        vkvs_evict(c->srv->st, e->session, opt_ns(e->has_ns, e->ns), e->has_keys ? e->keys : NULL,
                   e->has_keys ? e->nkeys : 0, e->to == VKVP_EVICT_COLD, &n);
    c->rep->u.evict.count = n;
    return rc;
}

/* FLUSH: spills every unpinned hot entry; past the spill-queue bound the
 * rest follows as the writer drains (vkvd_cold_flush_continue). */
static int handle_flush(struct call *c)
{
    vkvd_server *srv = c->srv;
    size_t n = 0;
    uint64_t sid = c->rq->u.flush.session;
    int rc = vkvs_evict(srv->st, sid, NULL, NULL, 0, true, &n);
    if (rc == VKV_EBUSY) {
        uint32_t ns_id;
        const char *ns = "";
        int admin = vkvs_session_ns(srv->st, sid, &ns_id, &ns) == 0 && !*ns;
        snprintf(srv->flush_ns, sizeof srv->flush_ns, "%s", admin ? "" : ns);
        srv->flush_more = true;
        rc = 0;
    }
    c->rep->u.flush.count = n;
    return rc;
}

/* STATS: every counter (daemon/counters.h). */
static int handle_stats(struct call *c)
{
    const vkvp_opt_session_req *s = &c->rq->u.stats;
    int rc;
    if (s->has_session && (rc = vkvs_session_touch(c->srv->st, s->session)))
        return rc;
    vkvd_collect_counters(c->srv, &c->sc->counters);
    c->rep->u.stats.counters = c->sc->counters.c;
    c->rep->u.stats.ncounters = c->sc->counters.n;
    return 0;
}

/* LIST: one page of entries with their shapes. */
static int handle_list(struct call *c)
{
    struct vkvd_scratch *sc = c->sc;
    const vkvp_list_req *l = &c->rq->u.list;
    uint64_t next = 0;
    size_t n = 0;
    sc->infos = calloc(l->limit, sizeof *sc->infos);
    sc->entries = calloc(l->limit, sizeof *sc->entries);
    sc->shapes = calloc(l->limit, sizeof *sc->shapes);
    if (!sc->infos || !sc->entries || !sc->shapes)
        return VKV_ENOMEM;
    int rc = vkvs_list(c->srv->st, l->session, opt_ns(l->has_ns, l->ns), l->cursor, l->limit,
                       sc->infos, &n, &next);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++)
        wire_entry(c->srv, &sc->infos[i], &sc->entries[i], sc->shapes[i], sizeof sc->shapes[i]);
    c->rep->u.list.entries = sc->entries;
    c->rep->u.list.nentries = (uint32_t)n;
    c->rep->u.list.next = next;
    return 0;
}

/* INFO: one entry. */
static int handle_info(struct call *c)
{
    struct vkvd_scratch *sc = c->sc;
    const vkvp_info_req *in = &c->rq->u.info;
    sc->infos = calloc(1, sizeof *sc->infos);
    sc->shapes = calloc(1, sizeof *sc->shapes);
    if (!sc->infos || !sc->shapes)
        return VKV_ENOMEM;
    int rc =
        vkvs_info_get(c->srv->st, in->session, opt_ns(in->has_ns, in->ns), &in->key, sc->infos);
    if (rc)
        return rc;
    wire_entry(c->srv, sc->infos, &c->rep->u.info.entry, sc->shapes[0], sizeof sc->shapes[0]);
    return 0;
}

/* PING: liveness, and a session keep-alive when one is named. */
static int handle_ping(struct call *c)
{
    const vkvp_opt_session_req *p = &c->rq->u.ping;
    return p->has_session ? vkvs_session_touch(c->srv->st, p->session) : 0;
}

/* VERIFY: starts or reports the background cold-tier verification. */
static int handle_verify(struct call *c)
{
    const vkvp_verify_req *v = &c->rq->u.verify;
    int rc = vkvs_session_touch(c->srv->st, v->session);
    if (rc)
        return rc;
    return vkvd_verify_op(c->srv, v->start, v->drop, &c->rep->u.verify);
}

typedef int (*handler_fn)(struct call *c);

/* The handler of each op, by op value. */
static const handler_fn g_handlers[VKVP_OP_MAX_ + 1] = {
#define HANDLER_(name, value, lower, req, rep) [value] = handle_##lower,
    VKVP_OPS(HANDLER_)
#undef HANDLER_
};

void vkvd_scratch_free(struct vkvd_scratch *sc)
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

int vkvd_dispatch(vkvd_server *srv, const vkvp_request *rq, vkvp_reply *rep,
                  struct vkvd_scratch *sc, char *why, size_t why_len, bool allow_defer)
{
    if (rq->op < 1 || rq->op > VKVP_OP_MAX_ || !g_handlers[rq->op])
        return VKV_ENOTSUP;
    struct call c = {srv, rq, rep, sc, why, why_len, allow_defer};
    return g_handlers[rq->op](&c);
}
