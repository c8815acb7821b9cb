/*
 * client/lookup.c - LOOKUP answered from the daemon's shared-memory lookup
 * index (PROTOCOL.md 8a) without the round trip or the client's mutex, and
 * the readers' lifetime across reconnects (retired until no lookup can
 * hold them); the round trip when the index cannot answer.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "client/client_internal.h"
#include "common/clock.h"
#include "common/log.h"
#include "proto/proto.h"
#include "proto/shmidx.h"
#include "vkv/vkv.h"

/* Frees the retired readers when no lookup is reading through any reader
 * (c->mu held). */
static void lidx_reclaim(vkv_client *c)
{
    if (atomic_load(&c->lidx_users) != 0)
        return;
    while (c->lidx_retired) {
        struct vkvc_lidx_retired *n = c->lidx_retired->next;
        vkvp_shmidx_reader_close(c->lidx_retired->r);
        free(c->lidx_retired);
        c->lidx_retired = n;
    }
}

/* A lookup that counted itself in lidx_users before the exchange below may
 * still read the old reader; one that counts itself after it loads the new
 * one (both sides seq_cst), so the old one is freed only when lidx_users
 * is seen at 0 after the exchange. */
void vkvc_lidx_swap(vkv_client *c, vkvp_shmidx_reader *r)
{
    vkvp_shmidx_reader *old = atomic_exchange(&c->lidx, r);
    if (old) {
        struct vkvc_lidx_retired *rt = malloc(sizeof *rt);
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

void vkvc_lidx_open(vkv_client *c)
{
    vkvp_shmidx_reader *r = NULL;
    if (c->lidx_fd >= 0) {
        int lrc = vkvp_shmidx_reader_open(c->lidx_fd, c->lidx_size, c->epoch, c->ns, &r);
        if (lrc)
            VKV_WARN("libvkv: lookup index segment refused (%s): LOOKUP takes the round trip",
                     vkv_strerror(lrc));
        close(c->lidx_fd);
        c->lidx_fd = -1;
    }
    vkvc_lidx_swap(c, r);
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
