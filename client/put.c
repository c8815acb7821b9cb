/*
 * client/put.c - libvkv's write side: ALLOC a reservation and its buffer,
 * bind the written block to its (namespace, key), COMMIT or ABORT, RENEW;
 * vkv_put_chunk encodes and stores in one call.
 */
#include <pthread.h>
#include <stdlib.h>

#include "client/client_cuda.h"
#include "client/client_internal.h"
#include "proto/proto.h"
#include "vkv/vkv.h"

/* Sends ABORT for a lease (best effort). c->mu held. */
static void abort_lease(vkv_client *c, uint64_t lease)
{
    vkvp_request rq;
    vkvp_reply *rep;
    vkvp_request_init(&rq, VKVP_ABORT, 0);
    rq.u.abort.session = c->session;
    rq.u.abort.lease = lease;
    if (vkvc_call_locked(c, &rq, &rep, NULL, 0) == 0)
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
    int rc = vkvc_call_locked(c, &rq, &rep, NULL, 0);
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
        vkvc_key_ident(c, key, p->ident);
        rc = vkvc_make_view(c, &rep->u.alloc.block, 1, &p->data, &p->st);
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
    int rc = vkvc_renew_lease(c, p->gen, p->lease);
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
        int crc = vkvc_call_locked(c, &rq, &rep, NULL, 0);
        if (crc == 0)
            vkvp_reply_free(rep);
        rc = rc ? rc : crc;
        if (rc && op == VKVP_COMMIT && rc != VKV_ESTALE && rc != VKV_ELEASE && rc != VKV_ESESSION &&
            rc != VKV_ETIMEDOUT && rc != VKV_ECONN)
            abort_lease(c, p->lease); /* the daemon refused the block: not WRITING */
    }
    vkvc_stitch_free(&p->st);
    vkvc_set_unref(c, p->set);
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
