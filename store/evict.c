/*
 * store/evict.c - eviction and the SPILLING state: evicting one entry
 * (through the evict hook, or dropping it), making room for an ALLOC or a
 * restore, EVICT, and vkvs_spill_done, which ends a spill that read the
 * pages in place. One thread owns a store; nothing here locks.
 */
#include "store/store_int.h"
#include "vkv/error.h"

/* Takes evictable entry id out of the policy (if still linked) and of
 * evictable_pages, and counts the eviction; the caller then turns it COLD or
 * destroys it. */
static void evict_unlink(vkvs_store *st, uint32_t id)
{
    vkvs_policy_remove(&st->pol, id);
    st->evictable_pages -= vkvs_epages(st, vkvs_ent(&st->ix, id));
    st->c.evictions++;
}

/* evict_entry's answer (not an error) when FLUSH/EVICT leave the entry hot
 * because the cold tier refused it. */
#define EVICT_KEPT 3

/* Evicts evictable entry id (already unlinked from the policy or not): with
 * to_cold and an evict hook, the hook copies it (or, when it may hold the
 * pages, has the cold tier read them in place: SPILLING) and it becomes
 * COLD; a block restored from the cold tier becomes COLD without the hook
 * (the cold copy is the same immutable bytes); else it is dropped. Returns
 * 0, or VKV_EBUSY when the hook answered that the cold tier is behind (its
 * queue is full): then nothing happened to the entry (it is READY,
 * evictable and where it was in the policy, or unlinked if the caller took
 * it as a victim); or, for FLUSH/EVICT (not for room), EVICT_KEPT when the
 * hook refused the block with an error: the entry is likewise untouched
 * and READY (a spill failure is counted). */
static int evict_entry(vkvs_store *st, uint32_t id, bool to_cold, bool for_room)
{
    vkvs_entry *e = vkvs_ent(&st->ix, id);
    bool keep_copy = to_cold && (e->flags & VKVS_EF_COLDCOPY);
    bool spill = to_cold && !keep_copy && st->hooks.evict;
    int rv = 0;

    if (spill) {
        vkvs_victim v = {
            .ns_id = e->ns_id,
            .ns = st->ns[e->ns_id],
            .key = &e->key,
            .size = e->size,
            .nextents = e->nextents,
            .extents = vkvs_entry_ext(e),
            .hits = e->hits,
            .last_ms = e->last_ms,
            .for_room = for_room,
            .may_hold = !for_room || st->room_wait,
        };
        rv = st->hooks.evict(st->hooks.arg, st, &v);
        if (rv == VKV_EBUSY) {
            st->c.spills_deferred++;
            return VKV_EBUSY;
        }
        if (rv < 0 && !for_room) {
            /* the cold tier refused this block (too large for it, a failed
             * shard): FLUSH/EVICT leave it hot, and go on with the others */
            st->c.spill_failures++;
            return EVICT_KEPT;
        }
    }
    evict_unlink(st, id);
    if (spill && rv == VKVS_SPILL_HELD) {
        st->c.spills++;
        st->c.spills_held++;
        e->flags |= VKVS_EF_SPILLING;
        st->spilling_pages += vkvs_epages(st, e);
        st->spilling_entries++;
        vkvs_set_state(st, e, VKVS_COLD);
        return 0;
    }
    if (keep_copy || (spill && rv == 0)) {
        if (keep_copy)
            st->c.spills_skipped++;
        else
            st->c.spills++;
        e->flags &= (uint8_t)~VKVS_EF_COLDCOPY;
        vkvs_entry_drop_pages(st, e);
        vkvs_set_state(st, e, VKVS_COLD);
        return 0;
    }
    if (spill)
        st->c.spill_failures++;
    vkvs_entry_destroy(st, id, true);
    return 0;
}

/* Makes `need` pages free by evicting policy victims. With room waiting on
 * it answers VKVS_WAIT as soon as the spills in flight will free enough, or
 * when the cold tier cannot take another victim while some are in flight.
 * Errors: VKV_ENOSPC (free + evictable + spilling < need; nothing
 * evicted). */
int vkvs_make_room(vkvs_store *st, uint32_t need)
{
    if (st->arena.free_pages >= need)
        return 0;
    if (st->arena.free_pages + st->evictable_pages + (st->room_wait ? st->spilling_pages : 0) <
        need)
        return VKV_ENOSPC;
    while (st->arena.free_pages < need) {
        if (st->room_wait && st->arena.free_pages + st->spilling_pages >= need) {
            st->c.room_waits++;
            return VKVS_WAIT;
        }
        uint32_t id = vkvs_policy_victim(&st->pol);
        if (id == 0) {
            if (st->room_wait && st->spilling_pages > 0) {
                st->c.room_waits++;
                return VKVS_WAIT;
            }
            return VKV_ENOSPC; /* only SPILLING pages left, and no waiting */
        }
        if (evict_entry(st, id, true, true) == VKV_EBUSY) {
            if (st->room_wait && st->spilling_pages > 0) {
                /* the writer is behind but making progress: wait for it
                 * (backpressure) rather than forget this victim */
                vkvs_policy_insert(&st->pol, id);
                st->c.room_waits++;
                return VKVS_WAIT;
            }
            /* The cold tier is far behind: this victim's hot copy is dropped
             * instead of spilled (a cache may forget; it never blocks the
             * loop). Not through the drop hook: a copy the cold tier may
             * hold stays there. */
            st->c.spills_dropped_busy++;
            evict_unlink(st, id);
            vkvs_entry_destroy(st, id, false);
        }
    }
    return 0;
}

/* One entry of EVICT/FLUSH: evict_entry, counting it in *done when it
 * left the hot tier. Returns 0 (evicted, or kept hot because the cold tier
 * refused it) or VKV_EBUSY (stop: the cold tier is behind). */
static int evict_counted(vkvs_store *st, uint32_t id, bool to_cold, size_t *done)
{
    int r = evict_entry(st, id, to_cold, false);
    if (r == 0)
        (*done)++;
    return r == EVICT_KEPT ? 0 : r;
}

/* See store.h. */
int vkvs_evict(vkvs_store *st, uint64_t sid, const char *ns, const vkv_key *keys, size_t n,
               bool to_cold, size_t *nevicted)
{
    vkvs_sess *s = vkvs_sess_get(st, sid);
    uint32_t ns_id;
    size_t done = 0;
    int rv;

    if (nevicted)
        *nevicted = 0;
    if (s == NULL)
        return VKV_ESESSION;
    if ((rv = vkvs_resolve_ns(st, s, ns, keys != NULL, &ns_id)) != 0)
        return rv;
    rv = 0;
    if (keys != NULL) {
        for (size_t i = 0; i < n && rv == 0; i++) {
            uint32_t id = vkvs_find_visible(st, ns_id, &keys[i]);
            if (id != 0 && vkvs_evictable(vkvs_ent(&st->ix, id)))
                rv = evict_counted(st, id, to_cold, &done);
        }
    } else if (ns_id != VKVS_NS_NONE) {
        for (uint32_t id = 1; id <= st->ix.hwm && rv == 0; id++) {
            vkvs_entry *e = vkvs_ent(&st->ix, id);
            if ((e->flags & VKVS_EF_USED) && vkvs_evictable(e) &&
                (ns_id == VKVS_NS_ALL || e->ns_id == ns_id))
                rv = evict_counted(st, id, to_cold, &done);
        }
    }
    if (nevicted)
        *nevicted = done;
    return rv;
}

int vkvs_spill_done(vkvs_store *st, const char *ns, const vkv_key *key, int status)
{
    uint32_t id = vkvs_find_any(st, ns, key);

    if (id == 0)
        return VKV_ENOTFOUND;
    vkvs_entry *e = vkvs_ent(&st->ix, id);
    if (e->state != VKVS_COLD || !(e->flags & VKVS_EF_SPILLING))
        return VKV_ESTATE;
    e->flags &= (uint8_t)~VKVS_EF_SPILLING;
    st->spilling_pages -= vkvs_epages(st, e);
    st->spilling_entries--;
    if (e->flags & VKVS_EF_DELPEND) {
        vkvs_entry_destroy(st, id, false); /* the drop hook ran at the delete */
        return 0;
    }
    if (status == 0) {
        vkvs_entry_drop_pages(st, e);
        return 0;
    }
    if (vkvs_spill_block_bad(status)) {
        st->c.spill_failures++;
        vkvs_entry_destroy(st, id, true);
        return 0;
    }
    /* Nothing was written and the immutable block is intact in its pages:
     * serve it hot again rather than lose it. */
    st->c.spill_failures++;
    st->c.spills_reverted++;
    vkvs_set_state(st, e, VKVS_READY);
    vkvs_policy_insert(&st->pol, id);
    vkvs_ev_fix(st, e, false);
    return 0;
}
