/*
 * client/fetch.c - libvkv's read side: FETCH and the views it hands out,
 * decode/attend on a fetched block, RENEW and RELEASE of the lease.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_internal.h"
#include "proto/proto.h"
#include "vkv/attend.h"
#include "vkv/vkv.h"

/* Frees a fetch handle's local resources (no daemon call). c->mu held. */
static void fetch_free(vkv_client *c, vkv_fetch *f)
{
    for (size_t i = 0; i < f->n; i++)
        vkvc_stitch_free(&f->st[i]);
    vkvc_set_unref(c, f->set);
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
    int rc = vkvc_call_locked(c, &rq, &rep, NULL, 0);
    if (rc == 0) {
        if (released)
            *released = rep->u.release.count;
        vkvp_reply_free(rep);
    }
    return rc;
}

/* Makes f the handle of FETCH reply fr to keys[0..fr->nblocks) (checked
 * by the caller): its lease, a reference to the current mappings and one
 * view per block answered (c->mu held, f zeroed). Returns 0, VKV_ENOMEM or
 * a vkvc_make_view error; the caller frees f with fetch_free then. */
static int fetch_fill(vkv_client *c, const vkvp_fetch_rep *fr, const vkv_key *keys, vkv_fetch *f)
{
    size_t nb = fr->nblocks;
    f->views = calloc(nb ? nb : 1, sizeof *f->views);
    f->st = calloc(nb ? nb : 1, sizeof *f->st);
    f->ident = calloc(nb ? nb : 1, sizeof *f->ident);
    if (!f->views || !f->st || !f->ident)
        return VKV_ENOMEM;
    f->gen = c->gen;
    f->lease = fr->lease;
    f->backend = c->backend;
    f->set = c->set;
    if (f->set)
        f->set->refs++;
    for (size_t i = 0; i < nb; i++) {
        void *data;
        int rc = vkvc_make_view(c, &fr->blocks[i], 0, &data, &f->st[i]);
        f->n = i + 1;
        if (rc)
            return rc;
        f->views[i].data = data;
        f->views[i].size = fr->blocks[i].len;
        vkvc_key_ident(c, &keys[i], f->ident[i]);
    }
    f->n = nb;
    return 0;
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
    int rc = vkvc_call_locked(c, &rq, &rep, NULL, 0);
    if (rc) {
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    vkv_fetch *f = calloc(1, sizeof *f);
    if (rep->u.fetch.nblocks > n) /* a daemon may not answer more blocks than keys asked */
        rc = VKV_EPROTO;
    else
        rc = f ? fetch_fill(c, &rep->u.fetch, keys, f) : VKV_ENOMEM;
    if (rc) {
        if (rep->u.fetch.lease)
            release_lease(c, rep->u.fetch.lease, NULL);
        vkvp_reply_free(rep);
        if (f)
            fetch_free(c, f);
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    vkvp_reply_free(rep);
    pthread_mutex_unlock(&c->mu);
    *out = f;
    return 0;
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

int vkvc_renew_lease(vkv_client *c, uint64_t gen, uint64_t lease)
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
    int rc = vkvc_call_locked(c, &rq, &rep, NULL, 0);
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
    int rc = vkvc_renew_lease(c, f->gen, f->lease);
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
