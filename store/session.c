/*
 * store/session.c - sessions and leases (store/store.h): ids, a lease's
 * life (new, end, expiry into quarantine, free), pins, the session calls,
 * the reaper, RELEASE and RENEW. One thread owns a store; nothing here
 * locks.
 */
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"
#include "vkv/error.h"

/* ---- ids --------------------------------------------------------------------- */

/* splitmix64 step: ids need to be unguessable-ish and nonzero, not secret. */
static uint64_t rng_next(vkvs_store *st)
{
    uint64_t z = (st->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* An id whose low 32 bits are slot + 1 and high 32 bits random nonzero. */
static uint64_t make_id(vkvs_store *st, uint32_t slot)
{
    return ((rng_next(st) | 1) << 32) | (uint64_t)(slot + 1);
}

/* ---- sessions and leases ---------------------------------------------------- */

/* The live session `sid`, touched; NULL if unknown. */
vkvs_sess *vkvs_sess_get(vkvs_store *st, uint64_t sid)
{
    uint32_t slot = (uint32_t)sid - 1;

    if (sid == 0 || slot >= st->sess_slots || st->sess[slot].id != sid)
        return NULL;
    st->sess[slot].last_seen = vkvs_now_ms(st);
    return &st->sess[slot];
}

/* The lease `lid` of session slot `ss`, or NULL. */
vkvs_lease *vkvs_lease_get(vkvs_store *st, uint32_t ss, uint64_t lid)
{
    uint32_t slot = (uint32_t)lid - 1;

    if (lid == 0 || slot >= st->lease_slots || st->lease[slot].id != lid ||
        st->lease[slot].sess != ss)
        return NULL;
    return &st->lease[slot];
}

/* Creates a lease of `kind` for session slot ss; *slot gets its slot.
 * Errors: VKV_ENOSPC (max_leases), VKV_ENOMEM. */
int vkvs_lease_new(vkvs_store *st, uint32_t ss, uint32_t kind, uint32_t *slot)
{
    vkvs_lease *l;
    vkvs_sess *s = &st->sess[ss];

    if (st->lease_free == 0) {
        uint32_t n = st->lease_slots ? st->lease_slots * 2 : 64;
        if (st->lease_slots >= st->cfg.max_leases)
            return VKV_ENOSPC;
        if (n > st->cfg.max_leases)
            n = st->cfg.max_leases;
        vkvs_lease *nl = realloc(st->lease, n * sizeof(*nl));
        if (nl == NULL)
            return VKV_ENOMEM;
        memset(nl + st->lease_slots, 0, (n - st->lease_slots) * sizeof(*nl));
        for (uint32_t i = n; i > st->lease_slots; i--) {
            nl[i - 1].next_free = st->lease_free;
            st->lease_free = i;
        }
        st->lease = nl;
        st->lease_slots = n;
    }
    *slot = st->lease_free - 1;
    l = &st->lease[*slot];
    st->lease_free = l->next_free;
    memset(l, 0, sizeof(*l));
    l->id = make_id(st, *slot);
    l->sess = ss;
    l->kind = kind;
    l->expires = vkvs_now_ms(st) + st->cfg.lease_ttl_ms;
    l->next = s->lease_head;
    if (s->lease_head)
        st->lease[s->lease_head - 1].prev = *slot + 1;
    s->lease_head = *slot + 1;
    s->nleases++;
    st->nlease++;
    return 0;
}

/* Frees lease slot (unlinks it from its session); entries untouched. */
void vkvs_lease_free(vkvs_store *st, uint32_t slot)
{
    vkvs_lease *l = &st->lease[slot];
    vkvs_sess *s = &st->sess[l->sess];

    if (l->prev)
        st->lease[l->prev - 1].next = l->next;
    else
        s->lease_head = l->next;
    if (l->next)
        st->lease[l->next - 1].prev = l->prev;
    s->nleases--;
    s->held -= l->bytes;
    st->nlease--;
    if (l->zombie)
        st->nzombie--;
    free(l->many);
    memset(l, 0, sizeof(*l));
    l->next_free = st->lease_free;
    st->lease_free = slot + 1;
}

/* Drops one pin of entry id; the last unpin frees a delete-pending entry. */
static void unpin(vkvs_store *st, uint32_t id)
{
    vkvs_entry *e = vkvs_ent(&st->ix, id);
    bool was = vkvs_evictable(e);

    e->pins--;
    if (e->pins == 0 && (e->flags & VKVS_EF_DELPEND)) {
        vkvs_entry_destroy(st, id, false);
        return;
    }
    vkvs_ev_fix(st, e, was);
}

/* Ends lease slot: a fetch lease unpins its entries, an alloc lease aborts
 * its WRITING entry; then the lease is freed. */
void vkvs_lease_end(vkvs_store *st, uint32_t slot)
{
    vkvs_lease *l = &st->lease[slot];

    if (l->kind == VKVS_LEASE_FETCH) {
        for (uint32_t i = 0; i < l->n; i++)
            unpin(st, l->n == 1 ? l->one : l->many[i]);
    } else if (l->n == 1) {
        vkvs_entry *e = vkvs_ent(&st->ix, l->one);
        if (e->state == VKVS_WRITING && e->writer == slot + 1) {
            vkvs_entry_destroy(st, l->one, false);
            st->c.aborts++;
        }
    }
    vkvs_lease_free(st, slot);
}

/* Expires lease slot. Without quarantine it simply ends. With quarantine
 * (the default) the lease becomes a zombie: a fetch lease keeps its pins and
 * an alloc lease keeps its WRITING entry's pages (taken out of the index, so
 * another writer may take the key), because the holder may still read or
 * write them through its mapping. A zombie ends when its session closes or
 * the holder releases, aborts or commits it (it then answers VKV_ELEASE). */
void vkvs_lease_expire(vkvs_store *st, uint32_t slot)
{
    vkvs_lease *l = &st->lease[slot];

    if (l->zombie)
        return;
    st->c.leases_expired++;
    if (!st->cfg.quarantine) {
        vkvs_lease_end(st, slot);
        return;
    }
    l->zombie = 1;
    st->nzombie++;
    if (l->kind == VKVS_LEASE_ALLOC && l->n == 1) {
        vkvs_entry *e = vkvs_ent(&st->ix, l->one);
        if (e->state == VKVS_WRITING && e->writer == slot + 1)
            vkvs_index_unlink(&st->ix, l->one);
    }
}

/* Closes session slot ss: ends all its leases, frees the slot. */
static void sess_close(vkvs_store *st, uint32_t ss)
{
    vkvs_sess *s = &st->sess[ss];

    while (s->lease_head)
        vkvs_lease_end(st, s->lease_head - 1);
    memset(s, 0, sizeof(*s));
    s->next_free = st->sess_free;
    st->sess_free = ss + 1;
    st->nsess--;
}

/* ---- sessions -------------------------------------------------------------- */

/* See store.h. */
int vkvs_session_open(vkvs_store *st, const char *ns, pid_t pid, bool admin, uint64_t *sid)
{
    uint32_t ns_id = VKVS_NS_ALL, slot;
    int rv;

    *sid = 0;
    if (!admin && (ns == NULL || ns[0] == '\0'))
        return VKV_EINVAL;
    if (ns != NULL && ns[0] != '\0' && !admin && (rv = vkvs_ns_intern(st, ns, &ns_id)) != 0)
        return rv;
    if (st->sess_free == 0) {
        uint32_t n = st->sess_slots ? st->sess_slots * 2 : 16;
        if (st->sess_slots >= st->cfg.max_sessions)
            return VKV_ENOSPC;
        if (n > st->cfg.max_sessions)
            n = st->cfg.max_sessions;
        vkvs_sess *ns_ = realloc(st->sess, n * sizeof(*ns_));
        if (ns_ == NULL)
            return VKV_ENOMEM;
        memset(ns_ + st->sess_slots, 0, (n - st->sess_slots) * sizeof(*ns_));
        for (uint32_t i = n; i > st->sess_slots; i--) {
            ns_[i - 1].next_free = st->sess_free;
            st->sess_free = i;
        }
        st->sess = ns_;
        st->sess_slots = n;
    }
    slot = st->sess_free - 1;
    st->sess_free = st->sess[slot].next_free;
    memset(&st->sess[slot], 0, sizeof(st->sess[slot]));
    st->sess[slot].id = make_id(st, slot);
    st->sess[slot].pid = pid;
    st->sess[slot].admin = admin;
    st->sess[slot].ns_id = ns_id;
    st->sess[slot].last_seen = vkvs_now_ms(st);
    st->sess[slot].opened = st->sess[slot].last_seen;
    st->nsess++;
    *sid = st->sess[slot].id;
    return 0;
}

/* See store.h. */
int vkvs_session_close(vkvs_store *st, uint64_t sid)
{
    if (vkvs_sess_get(st, sid) == NULL)
        return VKV_ESESSION;
    sess_close(st, (uint32_t)sid - 1);
    return 0;
}

/* See store.h. */
int vkvs_session_bind_pid(vkvs_store *st, uint64_t sid, pid_t pid)
{
    vkvs_sess *s = vkvs_sess_get(st, sid);

    if (s == NULL)
        return VKV_ESESSION;
    if (pid <= 0)
        return VKV_EINVAL;
    s->pid = pid;
    s->bound = true;
    return 0;
}

/* See store.h. */
int vkvs_session_touch(vkvs_store *st, uint64_t sid)
{
    return vkvs_sess_get(st, sid) ? 0 : VKV_ESESSION;
}

/* See store.h. */
int vkvs_session_ns(const vkvs_store *st, uint64_t sid, uint32_t *ns_id, const char **ns)
{
    uint32_t slot = (uint32_t)sid - 1;

    if (sid == 0 || slot >= st->sess_slots || st->sess[slot].id != sid)
        return VKV_ESESSION;
    *ns_id = st->sess[slot].ns_id;
    *ns = st->sess[slot].ns_id < st->nns ? st->ns[st->sess[slot].ns_id] : "";
    return 0;
}

/* See store.h. */
int vkvs_reap(vkvs_store *st, uint64_t now, vkvs_alive_fn alive_cb, void *arg)
{
    int closed = 0;

    for (uint32_t i = 0; i < st->lease_slots; i++)
        if (st->lease[i].id != 0 && !st->lease[i].zombie && st->lease[i].expires <= now)
            vkvs_lease_expire(st, i);
    for (uint32_t i = 0; i < st->sess_slots; i++) {
        vkvs_sess *s = &st->sess[i];
        if (s->id == 0)
            continue;
        /* A worker's self-reported pid means nothing in another pid
         * namespace: until the kernel's pid is bound, it is checked only
         * after a grace period (sessions that never bind: CUDA, old
         * clients). */
        bool checkable = s->admin || s->bound || now - s->opened >= VKVS_BIND_GRACE_MS;
        bool dead = alive_cb && checkable && !alive_cb(arg, s->pid);
        bool silent = now > s->last_seen && now - s->last_seen > st->cfg.session_ttl_ms;
        /* A silent session that still holds leases (zombies included) stays
         * while its process lives: it may still touch their pages. */
        if (dead || (silent && (s->nleases == 0 || !st->cfg.quarantine))) {
            sess_close(st, i);
            st->c.sessions_reaped++;
            closed++;
        }
    }
    return closed;
}

/* ---- RELEASE, RENEW ---------------------------------------------------------- */

/* See store.h. */
int vkvs_release(vkvs_store *st, uint64_t sid, const uint64_t *leases, size_t n, size_t *nreleased)
{
    vkvs_sess *s = vkvs_sess_get(st, sid);
    size_t done = 0;

    if (nreleased)
        *nreleased = 0;
    if (s == NULL)
        return VKV_ESESSION;
    if (s->admin)
        return VKV_EPERM;
    for (size_t i = 0; i < n; i++) {
        vkvs_lease *l = vkvs_lease_get(st, (uint32_t)(s - st->sess), leases[i]);
        if (l == NULL)
            continue;
        bool live = !l->zombie && l->expires > vkvs_now_ms(st);
        if (!live)
            st->c.leases_expired += l->zombie ? 0 : 1;
        vkvs_lease_end(st, (uint32_t)(l - st->lease));
        done += live;
    }
    if (nreleased)
        *nreleased = done;
    return 0;
}

/* See store.h. */
int vkvs_renew(vkvs_store *st, uint64_t sid, const uint64_t *leases, size_t n, size_t *nrenewed)
{
    vkvs_sess *s = vkvs_sess_get(st, sid);
    size_t done = 0;
    uint64_t now = vkvs_now_ms(st);

    if (nrenewed)
        *nrenewed = 0;
    if (s == NULL)
        return VKV_ESESSION;
    if (s->admin)
        return VKV_EPERM;
    if (n > 0 && leases == NULL)
        return VKV_EINVAL;
    for (size_t i = 0; i < n; i++) {
        vkvs_lease *l = vkvs_lease_get(st, (uint32_t)(s - st->sess), leases[i]);
        if (l == NULL || l->zombie)
            continue;
        if (l->expires <= now) {
            vkvs_lease_expire(st, (uint32_t)(l - st->lease));
            continue;
        }
        l->expires = now + st->cfg.lease_ttl_ms;
        done++;
    }
    if (nrenewed)
        *nrenewed = done;
    return 0;
}
