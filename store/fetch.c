/*
 * store/fetch.c - the read path of the store (store/store.h): LOOKUP and
 * FETCH (a FETCH lease pins the ready prefix of the keys). One thread owns a
 * store; nothing here locks.
 */
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"
#include "vkv/error.h"

int vkvs_lookup(vkvs_store *st, uint64_t sid, const vkv_key *keys, size_t n, size_t *prefix,
                size_t *ncold)
{
    vkvs_sess *s = vkvs_sess_get(st, sid);
    size_t i, cold = 0;

    *prefix = *ncold = 0;
    if (s == NULL)
        return VKV_ESESSION;
    if (s->admin)
        return VKV_EPERM;
    if (n > st->cfg.max_fetch_keys || (n > 0 && keys == NULL))
        return VKV_EINVAL;
    st->c.lookups++;
    for (i = 0; i < n; i++) {
        uint32_t id = vkvs_find_visible(st, s->ns_id, &keys[i]);
        if (id == 0)
            break;
        if (vkvs_ent(&st->ix, id)->state != VKVS_READY)
            cold++;
    }
    *prefix = i;
    *ncold = cold;
    return 0;
}

int vkvs_fetch(vkvs_store *st, uint64_t sid, const vkv_key *keys, size_t n, vkvs_block *blocks,
               vkvs_fetch_result *res)
{
    vkvs_sess *s = vkvs_sess_get(st, sid);
    size_t nready = 0, ncold = 0;
    uint32_t slot, *many = NULL;
    uint64_t now;
    int rv;

    memset(res, 0, sizeof(*res));
    if (s == NULL)
        return VKV_ESESSION;
    if (s->admin)
        return VKV_EPERM;
    if (n > st->cfg.max_fetch_keys || (n > 0 && (keys == NULL || blocks == NULL)))
        return VKV_EINVAL;
    if (!st->fetch_quiet)
        st->c.fetches++;
    while (nready < n) {
        uint32_t id = vkvs_find_visible(st, s->ns_id, &keys[nready]);
        if (id == 0 || vkvs_ent(&st->ix, id)->state != VKVS_READY)
            break;
        nready++;
    }
    for (size_t j = nready; j < n; j++) {
        uint32_t id = vkvs_find_visible(st, s->ns_id, &keys[j]);
        if (id == 0 || vkvs_ent(&st->ix, id)->state == VKVS_READY)
            break;
        ncold++;
    }
    if (!st->fetch_quiet) {
        st->c.misses += n - nready - ncold;
        st->c.cold_hits += ncold;
    }
    uint64_t bytes = 0;
    if (st->cfg.session_quota) {
        /* the prefix ends where the session's quota would be exceeded */
        size_t fit = 0;
        for (; fit < nready; fit++) {
            uint64_t sz = vkvs_ent(&st->ix, vkvs_find_visible(st, s->ns_id, &keys[fit]))->size;
            if (s->held + bytes + sz > st->cfg.session_quota)
                break;
            bytes += sz;
        }
        if (fit < nready) {
            st->c.quota_refusals++;
            ncold = 0;
            if (fit == 0)
                return VKV_ENOSPC;
            nready = fit;
        }
    }
    res->ncold = ncold;
    if (nready == 0)
        return 0;
    if (nready > 1 && (many = malloc(nready * sizeof(*many))) == NULL)
        return VKV_ENOMEM;
    if ((rv = vkvs_lease_new(st, (uint32_t)(s - st->sess), VKVS_LEASE_FETCH, &slot)) != 0) {
        free(many);
        return rv;
    }
    now = vkvs_wall_ms(st);
    for (size_t i = 0; i < nready; i++) {
        uint32_t id = vkvs_index_find(&st->ix, s->ns_id, &keys[i]);
        vkvs_entry *e = vkvs_ent(&st->ix, id);
        bool was = vkvs_evictable(e);
        e->pins++;
        vkvs_ev_fix(st, e, was);
        e->hits++;
        e->last_ms = now;
        vkvs_policy_access(&st->pol, id);
        if (many)
            many[i] = id;
        else
            st->lease[slot].one = id;
        blocks[i] = (vkvs_block){e->size, e->nextents, vkvs_entry_ext(e)};
    }
    st->lease[slot].n = (uint32_t)nready;
    st->lease[slot].many = many;
    if (!st->cfg.session_quota)
        for (size_t i = 0; i < nready; i++)
            bytes += blocks[i].size;
    st->lease[slot].bytes = bytes;
    s->held += bytes;
    if (!st->fetch_quiet)
        st->c.hits += nready;
    res->lease = st->lease[slot].id;
    res->nready = nready;
    return 0;
}
