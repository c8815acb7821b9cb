/*
 * store/entry.c - entries and namespaces: interning, finding an entry, state
 * changes (the observe hook), an entry's pages and its end; and the write
 * path of the store (store/store.h): ALLOC, COMMIT, ABORT and DELETE.
 * One thread owns a store; nothing here locks.
 */
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"
#include "vkv/error.h"

/* ---- namespaces and finding entries ------------------------------------------ */

/* Finds interned namespace `ns`; its id, or VKVS_NS_NONE. */
static uint32_t ns_find(const vkvs_store *st, const char *ns)
{
    for (uint32_t i = 0; i < st->nns; i++)
        if (strcmp(st->ns[i], ns) == 0)
            return i;
    return VKVS_NS_NONE;
}

/* Interns `ns` (copied; kept until vkvs_close). Errors: VKV_EINVAL,
 * VKV_ENOMEM, VKV_ENOSPC (65536 namespaces). */
int vkvs_ns_intern(vkvs_store *st, const char *ns, uint32_t *id)
{
    size_t len = strnlen(ns, VKVS_NS_MAX + 1);

    if (len > VKVS_NS_MAX)
        return VKV_EINVAL;
    if ((*id = ns_find(st, ns)) != VKVS_NS_NONE)
        return 0;
    if (st->nns >= 65536)
        return VKV_ENOSPC;
    if (st->nns == st->ns_cap) {
        uint32_t cap = st->ns_cap ? st->ns_cap * 2 : 8;
        char **n = realloc(st->ns, cap * sizeof(*n));
        if (n == NULL)
            return VKV_ENOMEM;
        st->ns = n;
        st->ns_cap = cap;
    }
    if ((st->ns[st->nns] = strdup(ns)) == NULL)
        return VKV_ENOMEM;
    *id = st->nns++;
    return 0;
}

/* Resolves the namespace argument of an admin-capable op: non-admin: NULL or
 * its own; admin: NULL (VKVS_NS_ALL, or VKV_EINVAL when `required`) or a name
 * (VKVS_NS_NONE if never interned). */
int vkvs_resolve_ns(const vkvs_store *st, const vkvs_sess *s, const char *ns, bool required,
                    uint32_t *id)
{
    if (!s->admin) {
        if (ns != NULL && strcmp(ns, st->ns[s->ns_id]) != 0)
            return VKV_EPERM;
        *id = s->ns_id;
        return 0;
    }
    if (ns == NULL) {
        if (required)
            return VKV_EINVAL;
        *id = VKVS_NS_ALL;
        return 0;
    }
    *id = ns_find(st, ns);
    return 0;
}

/* Entry id visible to lookups for (ns_id, key): present, not WRITING, not
 * delete-pending. 0 otherwise. */
uint32_t vkvs_find_visible(const vkvs_store *st, uint32_t ns_id, const vkv_key *key)
{
    uint32_t id;
    const vkvs_entry *e;

    if (ns_id >= VKVS_NS_NONE)
        return 0;
    id = vkvs_index_find(&st->ix, ns_id, key);
    if (id == 0)
        return 0;
    e = vkvs_ent(&st->ix, id);
    if (e->state == VKVS_WRITING || (e->flags & VKVS_EF_DELPEND))
        return 0;
    return id;
}

/* Entry id for (ns, key) regardless of state, or 0. */
uint32_t vkvs_find_any(const vkvs_store *st, const char *ns, const vkv_key *key)
{
    uint32_t ns_id;

    if (ns == NULL || key == NULL || (ns_id = ns_find(st, ns)) == VKVS_NS_NONE)
        return 0;
    return vkvs_index_find(&st->ix, ns_id, key);
}

/* ---- entries --------------------------------------------------------------- */

/* e's state as lookups see it (0: not at all), for the observe hook. */
static int seen_state(const vkvs_entry *e)
{
    return e->state == VKVS_WRITING || (e->flags & VKVS_EF_DELPEND) ? 0 : e->state;
}

/* Tells the observe hook that e's lookup view changed from `was`. */
static void observe(vkvs_store *st, const vkvs_entry *e, int was)
{
    int now = seen_state(e);
    if (was != now && st->observe)
        st->observe(st->observe_arg, e->ns_id, st->ns[e->ns_id], &e->key, was, now);
}

/* Changes e's state, keeping the per-state counts (and the observer). */
void vkvs_set_state(vkvs_store *st, vkvs_entry *e, int s)
{
    int was = seen_state(e);
    st->state_count[e->state]--;
    if (e->state == VKVS_COLD)
        st->bytes_cold -= e->size;
    e->state = (uint8_t)s;
    st->state_count[s]++;
    if (s == VKVS_COLD)
        st->bytes_cold += e->size;
    observe(st, e, was);
}

/* Gives e (no pages yet) `npages` pages from the arena. Errors as
 * vkvs_arena_alloc. */
int vkvs_entry_take_pages(vkvs_store *st, vkvs_entry *e, uint64_t size)
{
    vkvs_extent *heap = NULL;
    uint32_t n = 0;
    int rv = vkvs_arena_alloc(&st->arena, vkvs_pages_for(size, st->arena.page_size), e->ext.in,
                              &heap, &n);
    if (rv != 0)
        return rv;
    if (heap != NULL) {
        e->ext.heap = heap;
        st->heap_ext_bytes += (size_t)n * sizeof(vkvs_extent);
    }
    e->nextents = n;
    e->size = size;
    st->bytes_used += size;
    st->extents_total += n;
    return 0;
}

/* Returns e's pages to the arena and forgets its extents (size kept). */
void vkvs_entry_drop_pages(vkvs_store *st, vkvs_entry *e)
{
    if (e->nextents == 0)
        return;
    vkvs_arena_free(&st->arena, vkvs_entry_ext(e), e->nextents);
    if (e->nextents > 2) {
        free(e->ext.heap);
        st->heap_ext_bytes -= (size_t)e->nextents * sizeof(vkvs_extent);
    }
    st->bytes_used -= e->size;
    st->extents_total -= e->nextents;
    e->nextents = 0;
    memset(&e->ext, 0, sizeof(e->ext));
}

/* Frees entry id completely (pages, policy link, index slot), calling the
 * drop hook first when `hook`. The caller has already taken it out of
 * evictable_pages. */
void vkvs_entry_destroy(vkvs_store *st, uint32_t id, bool hook)
{
    vkvs_entry *e = vkvs_ent(&st->ix, id);

    if (hook && st->hooks.drop)
        st->hooks.drop(st->hooks.arg, e->ns_id, st->ns[e->ns_id], &e->key);
    vkvs_policy_remove(&st->pol, id);
    vkvs_entry_drop_pages(st, e);
    vkvs_set_state(st, e, 0);
    vkvs_index_release(&st->ix, id);
}

/* ---- ALLOC, COMMIT, ABORT ----------------------------------------------------- */

/* Decides whether session s may ALLOC `key` with `size` bytes now: the key
 * must be free, or WRITING under a lease that ran out (that lease expires
 * here and the new writer takes the key over), and the block must fit the
 * arena and the session quota. Returns 0, VKV_EEXIST, VKV_EBUSY (WRITING
 * under a live lease, or delete-pending) or VKV_ENOSPC (counted). */
static int alloc_admit(vkvs_store *st, const vkvs_sess *s, const vkv_key *key, uint64_t size)
{
    uint32_t id = vkvs_index_find(&st->ix, s->ns_id, key);

    if (id != 0) {
        vkvs_entry *e = vkvs_ent(&st->ix, id);
        if (e->state != VKVS_WRITING)
            return (e->flags & VKVS_EF_DELPEND) ? VKV_EBUSY : VKV_EEXIST;
        if (st->lease[e->writer - 1].expires > vkvs_now_ms(st))
            return VKV_EBUSY;
        vkvs_lease_expire(st, e->writer - 1); /* the writer's lease ran out: take over */
    }
    if (size > (uint64_t)st->arena.page_size * st->arena.total_pages) {
        st->c.allocs_failed++;
        return VKV_ENOSPC;
    }
    if (st->cfg.session_quota && s->held + size > st->cfg.session_quota) {
        st->c.allocs_failed++;
        st->c.quota_refusals++;
        return VKV_ENOSPC;
    }
    return 0;
}

/* See store.h: admits the ALLOC (alloc_admit), makes room, then creates the
 * WRITING entry with its pages under a new ALLOC lease. */
int vkvs_alloc(vkvs_store *st, uint64_t sid, const vkv_key *key, uint64_t size, uint64_t *lease,
               vkvs_block *out)
{
    vkvs_sess *s = vkvs_sess_get(st, sid);
    uint32_t id, slot, pages;
    vkvs_entry *e;
    int rv;

    *lease = 0;
    memset(out, 0, sizeof(*out));
    if (s == NULL)
        return VKV_ESESSION;
    if (s->admin)
        return VKV_EPERM;
    if (key == NULL || size == 0)
        return VKV_EINVAL;
    if ((rv = alloc_admit(st, s, key, size)) != 0)
        return rv;
    pages = vkvs_pages_for(size, st->arena.page_size);
    if ((rv = vkvs_lease_new(st, (uint32_t)(s - st->sess), VKVS_LEASE_ALLOC, &slot)) != 0)
        goto fail;
    if ((rv = vkvs_make_room(st, pages)) == VKVS_WAIT) {
        vkvs_lease_free(st, slot);
        return VKVS_WAIT;
    }
    if (rv != 0)
        goto fail_lease;
    if ((rv = vkvs_index_new(&st->ix, s->ns_id, key, &id)) != 0)
        goto fail_lease;
    e = vkvs_ent(&st->ix, id);
    st->state_count[0]++; /* vkvs_set_state moves it out of "none" */
    vkvs_set_state(st, e, VKVS_WRITING);
    if ((rv = vkvs_entry_take_pages(st, e, size)) != 0)
        goto fail_entry;
    e->writer = slot + 1;
    e->last_ms = vkvs_wall_ms(st);
    st->lease[slot].n = 1;
    st->lease[slot].one = id;
    st->lease[slot].bytes = size;
    s->held += size;
    st->c.allocs++;
    *lease = st->lease[slot].id;
    *out = (vkvs_block){size, e->nextents, vkvs_entry_ext(e)};
    return 0;

fail_entry:
    vkvs_entry_destroy(st, id, false);
fail_lease:
    vkvs_lease_free(st, slot);
fail:
    st->c.allocs_failed++;
    return rv;
}

/* The live ALLOC lease `lid` of session s. NULL if unknown, not an alloc
 * lease, or expired; an expired one (zombie or past its TTL) is ended here,
 * since its holder is done with the pages (it commits or aborts). */
static vkvs_lease *alloc_lease(vkvs_store *st, vkvs_sess *s, uint64_t lid)
{
    vkvs_lease *l = vkvs_lease_get(st, (uint32_t)(s - st->sess), lid);

    if (l == NULL || l->kind != VKVS_LEASE_ALLOC)
        return NULL;
    if (l->zombie || l->expires <= vkvs_now_ms(st)) {
        uint32_t slot = (uint32_t)(l - st->lease);
        vkvs_lease_expire(st, slot);
        if (st->lease[slot].id == lid) /* a zombie: end it now */
            vkvs_lease_end(st, slot);
        return NULL;
    }
    return l;
}

/* See store.h. */
int vkvs_commit(vkvs_store *st, uint64_t sid, uint64_t lease, vkvs_validate_fn validate, void *arg)
{
    vkvs_sess *s = vkvs_sess_get(st, sid);
    vkvs_lease *l;
    vkvs_entry *e;
    int rv;

    if (s == NULL)
        return VKV_ESESSION;
    if (s->admin)
        return VKV_EPERM;
    if ((l = alloc_lease(st, s, lease)) == NULL)
        return VKV_ELEASE;
    e = vkvs_ent(&st->ix, l->one);
    if (validate) {
        vkvs_block b = {e->size, e->nextents, vkvs_entry_ext(e)};
        if ((rv = validate(arg, st, st->ns[e->ns_id], &e->key, &b)) != 0)
            return rv;
    }
    vkvs_set_state(st, e, VKVS_READY);
    e->writer = 0;
    e->last_ms = vkvs_wall_ms(st);
    vkvs_policy_insert(&st->pol, l->one);
    vkvs_ev_fix(st, e, false);
    vkvs_lease_free(st, (uint32_t)(l - st->lease));
    st->c.commits++;
    return 0;
}

/* See store.h. */
int vkvs_abort(vkvs_store *st, uint64_t sid, uint64_t lease)
{
    vkvs_sess *s = vkvs_sess_get(st, sid);
    vkvs_lease *l;

    if (s == NULL)
        return VKV_ESESSION;
    if (s->admin)
        return VKV_EPERM;
    if ((l = alloc_lease(st, s, lease)) == NULL)
        return VKV_ELEASE;
    vkvs_lease_end(st, (uint32_t)(l - st->lease));
    return 0;
}

/* ---- DELETE ------------------------------------------------------------------ */

/* Deletes entry id (any visible state but WRITING); see vkvs_delete. */
static void delete_entry(vkvs_store *st, uint32_t id)
{
    vkvs_entry *e = vkvs_ent(&st->ix, id);
    bool was = vkvs_evictable(e);

    st->c.deletes++;
    if (e->state == VKVS_READY && e->pins == 0) {
        st->evictable_pages -= was ? vkvs_epages(st, e) : 0;
        vkvs_entry_destroy(st, id, true);
        return;
    }
    if (e->state == VKVS_COLD && !(e->flags & VKVS_EF_SPILLING)) {
        vkvs_entry_destroy(st, id, true);
        return;
    }
    /* pinned READY, RESTORING or SPILLING: invisible now, freed later */
    if (st->hooks.drop)
        st->hooks.drop(st->hooks.arg, e->ns_id, st->ns[e->ns_id], &e->key);
    vkvs_policy_remove(&st->pol, id);
    int seen = seen_state(e);
    e->flags |= VKVS_EF_DELPEND;
    observe(st, e, seen);
    vkvs_ev_fix(st, e, was);
    if (e->state == VKVS_READY)
        vkvs_index_unlink(&st->ix, id);
}

/* See store.h. */
int vkvs_delete(vkvs_store *st, uint64_t sid, const char *ns, const vkv_key *keys, size_t n,
                size_t *ndeleted)
{
    vkvs_sess *s = vkvs_sess_get(st, sid);
    uint32_t ns_id;
    size_t done = 0;
    int rv;

    if (ndeleted)
        *ndeleted = 0;
    if (s == NULL)
        return VKV_ESESSION;
    if ((rv = vkvs_resolve_ns(st, s, ns, true, &ns_id)) != 0)
        return rv;
    if (n > 0 && keys == NULL)
        return VKV_EINVAL;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = vkvs_find_visible(st, ns_id, &keys[i]);
        if (id == 0)
            continue;
        delete_entry(st, id);
        done++;
    }
    if (ndeleted)
        *ndeleted = done;
    return 0;
}
