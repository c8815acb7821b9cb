/*
 * store/fetch.c - the read path of the store (store/store.h): LOOKUP and
 * FETCH (a FETCH lease pins the ready prefix of the keys). One thread owns a
 * store; nothing here locks.
 */
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"
#include "vkv/error.h"

/* See store.h. */
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

/* Counts the keys of a FETCH in namespace ns_id: *nready gets the length of
 * the READY prefix, *ncold the number of visible, not READY keys right after
 * it (the cold tier may bring those back). */
static void fetch_scan(const vkvs_store *st, uint32_t ns_id, const vkv_key *keys, size_t n,
                       size_t *nready, size_t *ncold)
{
    *nready = *ncold = 0;
    while (*nready < n) {
        uint32_t id = vkvs_find_visible(st, ns_id, &keys[*nready]);
        if (id == 0 || vkvs_ent(&st->ix, id)->state != VKVS_READY)
            break;
        (*nready)++;
    }
    for (size_t j = *nready; j < n; j++) {
        uint32_t id = vkvs_find_visible(st, ns_id, &keys[j]);
        if (id == 0 || vkvs_ent(&st->ix, id)->state == VKVS_READY)
            break;
        (*ncold)++;
    }
}

/* With a session quota: ends the READY prefix (*nready) where session s's
 * quota would be exceeded, and puts the bytes of what is left in *bytes.
 * A prefix cut short counts a quota refusal and drops the cold keys
 * (*ncold = 0). Returns 0, or VKV_ENOSPC when not even the first block
 * fits. */
static int fetch_fit_quota(vkvs_store *st, const vkvs_sess *s, const vkv_key *keys, size_t *nready,
                           size_t *ncold, uint64_t *bytes)
{
    size_t fit = 0;

    *bytes = 0;
    for (; fit < *nready; fit++) {
        uint64_t sz = vkvs_ent(&st->ix, vkvs_find_visible(st, s->ns_id, &keys[fit]))->size;
        if (s->held + *bytes + sz > st->cfg.session_quota)
            break;
        *bytes += sz;
    }
    if (fit < *nready) {
        st->c.quota_refusals++;
        *ncold = 0;
        if (fit == 0)
            return VKV_ENOSPC;
        *nready = fit;
    }
    return 0;
}

/* Pins the first `nready` (READY) keys under a new FETCH lease of session s
 * and fills blocks[0..nready) with their extents, which stay valid while the
 * lease pins them; `bytes` is their total size when a quota computed it, else
 * 0. Fills res->lease and res->nready. Errors: VKV_ENOMEM, and those of
 * vkvs_lease_new; then nothing is pinned. */
static int fetch_pin(vkvs_store *st, vkvs_sess *s, const vkv_key *keys, size_t nready,
                     uint64_t bytes, vkvs_block *blocks, vkvs_fetch_result *res)
{
    uint32_t slot, *many = NULL;
    uint64_t now;
    int rv;

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

/* See store.h: counts the keys (fetch_scan), trims the ready prefix to the
 * session quota (fetch_fit_quota), then pins it (fetch_pin). */
int vkvs_fetch(vkvs_store *st, uint64_t sid, const vkv_key *keys, size_t n, vkvs_block *blocks,
               vkvs_fetch_result *res)
{
    vkvs_sess *s = vkvs_sess_get(st, sid);
    size_t nready, ncold;
    uint64_t bytes = 0;
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
    fetch_scan(st, s->ns_id, keys, n, &nready, &ncold);
    if (!st->fetch_quiet) {
        st->c.misses += n - nready - ncold;
        st->c.cold_hits += ncold;
    }
    if (st->cfg.session_quota && (rv = fetch_fit_quota(st, s, keys, &nready, &ncold, &bytes)) != 0)
        return rv;
    res->ncold = ncold;
    if (nready == 0)
        return 0;
    return fetch_pin(st, s, keys, nready, bytes, blocks, res);
}
