/*
 * store/stats.c - what the store shows about itself (store/store.h): STATS,
 * LIST and INFO, and the names of states and policies. One thread owns a
 * store; nothing here locks.
 */
#include "store/store_int.h"
#include "vkv/error.h"

/* See store.h. */
void vkvs_stats_get(const vkvs_store *st, vkvs_stats *out)
{
    *out = st->c;
    out->entries_writing = st->state_count[VKVS_WRITING];
    out->entries_ready = st->state_count[VKVS_READY];
    out->entries_cold = st->state_count[VKVS_COLD];
    out->entries_restoring = st->state_count[VKVS_RESTORING];
    out->bytes_used = st->bytes_used;
    out->bytes_free = st->arena.free_pages * st->arena.page_size;
    out->bytes_capacity = st->arena.total_pages * st->arena.page_size;
    out->bytes_cold = st->bytes_cold;
    out->pages_total = st->arena.total_pages;
    out->pages_free = st->arena.free_pages;
    out->pages_evictable = st->evictable_pages;
    out->pages_pinned =
        st->arena.total_pages - st->arena.free_pages - st->evictable_pages - st->spilling_pages;
    out->extents_total = st->extents_total;
    out->leases_active = st->nlease - st->nzombie;
    out->leases_quarantined = st->nzombie;
    out->sessions = st->nsess;
    out->namespaces = st->nns;
    out->meta_bytes = sizeof(*st) + vkvs_index_bytes(&st->ix) + vkvs_policy_bytes(&st->pol) +
                      st->heap_ext_bytes + (uint64_t)st->sess_slots * sizeof(vkvs_sess) +
                      (uint64_t)st->lease_slots * sizeof(vkvs_lease) +
                      (uint64_t)st->arena.max_slabs * st->arena.words_per_slab * 8;
    out->slabs = st->nslabs;
    out->policy = (uint32_t)st->cfg.policy;
    out->entries_spilling = st->spilling_entries;
    out->pages_spilling = st->spilling_pages;
}

/* Fills *out from entry e. */
static void fill_info(const vkvs_store *st, vkvs_entry *e, vkvs_info *out)
{
    out->ns_id = e->ns_id;
    out->ns = st->ns[e->ns_id];
    out->key = e->key;
    out->state = e->state;
    out->delete_pending = (e->flags & VKVS_EF_DELPEND) != 0;
    out->spilling = (e->flags & VKVS_EF_SPILLING) != 0;
    out->size = e->size;
    out->pins = e->pins;
    out->hits = e->hits;
    out->last_ms = e->last_ms;
    out->nextents = e->nextents;
    out->extents = e->nextents ? vkvs_entry_ext(e) : NULL;
}

/* See store.h. */
int vkvs_list(vkvs_store *st, uint64_t sid, const char *ns, uint64_t cursor, size_t limit,
              vkvs_info *out, size_t *nout, uint64_t *next)
{
    vkvs_sess *s = vkvs_sess_get(st, sid);
    uint32_t ns_id;
    size_t k = 0;
    int rv;

    *nout = 0;
    *next = 0;
    if (s == NULL)
        return VKV_ESESSION;
    if ((rv = vkvs_resolve_ns(st, s, ns, false, &ns_id)) != 0)
        return rv;
    if (limit == 0 || out == NULL)
        return VKV_EINVAL;
    if (ns_id == VKVS_NS_NONE)
        return 0;
    for (uint64_t id = cursor ? cursor : 1; id <= st->ix.hwm; id++) {
        vkvs_entry *e = vkvs_ent(&st->ix, (uint32_t)id);
        if (!(e->flags & VKVS_EF_USED) || (e->flags & (VKVS_EF_DETACHED | VKVS_EF_DELPEND)) ||
            e->state == VKVS_WRITING || (ns_id != VKVS_NS_ALL && e->ns_id != ns_id))
            continue;
        fill_info(st, e, &out[k++]);
        if (k == limit) {
            *next = id < st->ix.hwm ? id + 1 : 0;
            break;
        }
    }
    *nout = k;
    return 0;
}

/* See store.h. */
int vkvs_info_get(vkvs_store *st, uint64_t sid, const char *ns, const vkv_key *key, vkvs_info *out)
{
    vkvs_sess *s = vkvs_sess_get(st, sid);
    uint32_t ns_id, id;
    int rv;

    if (s == NULL)
        return VKV_ESESSION;
    if ((rv = vkvs_resolve_ns(st, s, ns, true, &ns_id)) != 0)
        return rv;
    if (key == NULL)
        return VKV_EINVAL;
    if ((id = vkvs_find_visible(st, ns_id, key)) == 0)
        return VKV_ENOTFOUND;
    fill_info(st, vkvs_ent(&st->ix, id), out);
    return 0;
}

/* See store.h. */
const char *vkvs_state_name(int state)
{
    switch (state) {
    case VKVS_WRITING:
        return "writing";
    case VKVS_READY:
        return "ready";
    case VKVS_COLD:
        return "cold";
    case VKVS_RESTORING:
        return "restoring";
    default:
        return "?";
    }
}

/* See store.h. */
const char *vkvs_policy_name(int policy)
{
    switch (policy) {
    case VKVS_POLICY_LRU:
        return "lru";
    case VKVS_POLICY_S3FIFO:
        return "s3fifo";
    default:
        return "?";
    }
}
