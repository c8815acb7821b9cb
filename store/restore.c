/*
 * store/restore.c - the store's side of the cold tier (store/store.h): COLD
 * entries found at start-up, the cold copy going away, and restores
 * (COLD -> RESTORING -> READY). One thread owns a store; nothing here locks.
 */
#include <string.h>

#include "store/store_int.h"
#include "vkv/error.h"

/* See store.h. */
int vkvs_add_cold(vkvs_store *st, const char *ns, const vkv_key *key, uint64_t size,
                  uint64_t last_ms)
{
    uint32_t ns_id, id;
    vkvs_entry *e;
    int rv;

    if (ns == NULL || ns[0] == '\0' || key == NULL || size == 0)
        return VKV_EINVAL;
    if ((rv = vkvs_ns_intern(st, ns, &ns_id)) != 0)
        return rv;
    if (vkvs_index_find(&st->ix, ns_id, key) != 0)
        return VKV_EEXIST;
    if ((rv = vkvs_index_new(&st->ix, ns_id, key, &id)) != 0)
        return rv;
    e = vkvs_ent(&st->ix, id);
    e->size = size;
    e->last_ms = last_ms;
    st->state_count[0]++;
    vkvs_set_state(st, e, VKVS_COLD);
    return 0;
}

/* See store.h. */
int vkvs_cold_copy_gone(vkvs_store *st, const char *ns, const vkv_key *key)
{
    uint32_t id = vkvs_find_any(st, ns, key);

    if (id == 0)
        return VKV_ENOTFOUND;
    vkvs_entry *e = vkvs_ent(&st->ix, id);
    if (e->flags & VKVS_EF_SPILLING)
        return 0; /* about an older record: the write in flight makes a new one */
    if (e->state == VKVS_COLD) {
        vkvs_entry_destroy(st, id, false);
        return 1;
    }
    if (e->state == VKVS_RESTORING) /* its read may still succeed: remembered */
        e->flags |= VKVS_EF_COPYGONE;
    e->flags &= (uint8_t)~VKVS_EF_COLDCOPY;
    return 0;
}

/* See store.h. */
int vkvs_forget_cold(vkvs_store *st, const char *ns, const vkv_key *key)
{
    uint32_t id = vkvs_find_any(st, ns, key);

    if (id == 0)
        return VKV_ENOTFOUND;
    vkvs_entry *e = vkvs_ent(&st->ix, id);
    if (e->state != VKVS_COLD || (e->flags & VKVS_EF_SPILLING))
        return VKV_ESTATE;
    vkvs_entry_destroy(st, id, false);
    return 0;
}

/* See store.h. */
int vkvs_restore_begin(vkvs_store *st, const char *ns, const vkv_key *key, vkvs_block *out)
{
    uint32_t id = vkvs_find_any(st, ns, key);
    vkvs_entry *e;
    int rv;

    memset(out, 0, sizeof(*out));
    if (id == 0)
        return VKV_ENOTFOUND;
    e = vkvs_ent(&st->ix, id);
    if (e->state != VKVS_COLD)
        return VKV_ESTATE;
    if (e->flags & VKVS_EF_SPILLING)
        return VKV_EBUSY;
    if ((rv = vkvs_make_room(st, vkvs_epages(st, e))) != 0)
        return rv;
    uint64_t size = e->size;
    if ((rv = vkvs_entry_take_pages(st, e, size)) != 0)
        return rv;
    vkvs_set_state(st, e, VKVS_RESTORING);
    *out = (vkvs_block){e->size, e->nextents, vkvs_entry_ext(e)};
    return 0;
}

/* See store.h. */
int vkvs_restoring_block(vkvs_store *st, const char *ns, const vkv_key *key, vkvs_block *out)
{
    uint32_t id = vkvs_find_any(st, ns, key);
    vkvs_entry *e;

    memset(out, 0, sizeof(*out));
    if (id == 0)
        return VKV_ENOTFOUND;
    e = vkvs_ent(&st->ix, id);
    if (e->state != VKVS_RESTORING)
        return VKV_ESTATE;
    *out = (vkvs_block){e->size, e->nextents, vkvs_entry_ext(e)};
    return 0;
}

/* See store.h. */
int vkvs_restore_end(vkvs_store *st, const char *ns, const vkv_key *key, int status)
{
    uint32_t id = vkvs_find_any(st, ns, key);
    vkvs_entry *e;

    if (id == 0)
        return VKV_ENOTFOUND;
    e = vkvs_ent(&st->ix, id);
    if (e->state != VKVS_RESTORING)
        return VKV_ESTATE;
    const bool gone = (e->flags & VKVS_EF_COPYGONE) != 0;
    e->flags &= (uint8_t)~VKVS_EF_COPYGONE;
    /* deleted meanwhile, or failed with no cold record left to retry from */
    if ((e->flags & VKVS_EF_DELPEND) || (status != 0 && gone)) {
        vkvs_entry_destroy(st, id, false);
        return 0;
    }
    if (status != 0) {
        vkvs_entry_drop_pages(st, e);
        vkvs_set_state(st, e, VKVS_COLD);
        return 0;
    }
    vkvs_set_state(st, e, VKVS_READY);
    if (!gone) /* the cold tier still holds this (immutable) block */
        e->flags |= VKVS_EF_COLDCOPY;
    e->last_ms = vkvs_wall_ms(st);
    vkvs_policy_insert(&st->pol, id);
    vkvs_ev_fix(st, e, false);
    st->c.restores++;
    return 0;
}
