/*
 * store/store.c - sessions, leases and the operations of the store
 * (store/store.h). One thread owns a store; nothing here locks.
 *
 * Invariants kept by every function:
 *  - an entry holds pages iff its state is WRITING, READY or RESTORING, or
 *    it is COLD and SPILLING (st->spilling_pages counts those);
 *  - a SPILLING entry's pages are freed only by vkvs_spill_done;
 *  - st->evictable_pages = pages of entries with vkvs_evictable() true;
 *  - an entry is linked in the policy iff it is READY and not DELPEND;
 *  - a pinned READY entry that is deleted is DETACHED (out of the hash
 *    table, invisible) and freed by the last unpin.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/clock.h"
#include "store/store_int.h"
#include "vkv/error.h"

enum { LEASE_FETCH = 1, LEASE_ALLOC = 2 };

/* A client session (one HELLO). Slot free when id == 0. */
typedef struct vkvs_sess {
    uint64_t id;
    uint64_t last_seen;
    uint64_t opened; /* TTL clock at HELLO */
    pid_t pid;
    uint32_t ns_id;
    bool admin;
    bool bound;          /* pid came from the kernel (vkvs_session_bind_pid) */
    uint64_t held;       /* bytes under its leases (session_quota) */
    uint32_t lease_head; /* lease slot + 1 */
    uint32_t nleases;
    uint32_t next_free; /* slot + 1 */
} vkvs_sess;

/* A lease: pins (FETCH) or owns a WRITING entry (ALLOC). Free when id == 0. */
typedef struct vkvs_lease {
    uint64_t id;
    uint64_t expires;
    uint32_t sess; /* session slot */
    uint32_t kind;
    uint32_t zombie;     /* expired, resources kept until its session ends */
    uint64_t bytes;      /* entry bytes it pins or reserves (quota) */
    uint32_t n;          /* entries */
    uint32_t one;        /* the entry when n == 1 */
    uint32_t *many;      /* n > 1: malloc'ed entry ids */
    uint32_t prev, next; /* session list, slot + 1 */
    uint32_t next_free;
} vkvs_lease;

struct vkvs_store {
    vkvs_config cfg;
    const vkvs_backend *be;
    vkvs_slab *slabs; /* cfg.max_slabs, never moved */
    uint32_t nslabs;
    vkvs_arena arena;
    vkvs_index ix;
    vkvs_policy pol;
    vkvs_hooks hooks;
    vkvs_observe_fn observe; /* vkvs_set_observer */
    void *observe_arg;
    bool fetch_quiet; /* vkvs_set_fetch_quiet: re-runs are not counted */
    bool room_wait;   /* vkvs_set_room_wait: VKVS_WAIT instead of more evictions */
    uint64_t spilling_pages, spilling_entries;
    char **ns;
    uint32_t nns, ns_cap;
    vkvs_sess *sess;
    uint32_t sess_slots, sess_free, nsess;
    vkvs_lease *lease;
    uint32_t lease_slots, lease_free, nlease, nzombie;
    uint64_t rng;
    uint64_t evictable_pages;
    uint64_t state_count[5];
    uint64_t bytes_used, bytes_cold, extents_total, heap_ext_bytes;
    vkvs_stats c; /* the monotonic counters */
};

#define NS_ALL  UINT32_MAX       /* admin without a filter */
#define NS_NONE (UINT32_MAX - 1) /* a namespace nobody has used */

/* ---- small helpers -------------------------------------------------------- */

/* The store's TTL clock (cfg.clock_ms or the monotonic clock). */
static uint64_t now_ms(const vkvs_store *st)
{
    return st->cfg.clock_ms ? st->cfg.clock_ms(st->cfg.clock_arg) : vkv_now_ms();
}

/* Wall-clock stamp for entries' last access (shown to users, persisted). */
static uint64_t wall_ms(const vkvs_store *st)
{
    return st->cfg.wall_ms ? st->cfg.wall_ms(st->cfg.clock_arg) : vkv_wall_ms();
}

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

/* Pages held by e. */
static uint32_t epages(const vkvs_store *st, const vkvs_entry *e)
{
    return vkvs_pages_for(e->size, st->arena.page_size);
}

/* Adjusts evictable_pages after a change to e, given whether e was
 * evictable before it. */
static void ev_fix(vkvs_store *st, const vkvs_entry *e, bool was)
{
    bool is = vkvs_evictable(e);
    if (was && !is)
        st->evictable_pages -= epages(st, e);
    else if (!was && is)
        st->evictable_pages += epages(st, e);
}

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
static void set_state(vkvs_store *st, vkvs_entry *e, int s)
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

/* Finds interned namespace `ns`; its id, or NS_NONE. */
static uint32_t ns_find(const vkvs_store *st, const char *ns)
{
    for (uint32_t i = 0; i < st->nns; i++)
        if (strcmp(st->ns[i], ns) == 0)
            return i;
    return NS_NONE;
}

/* Interns `ns` (copied; kept until vkvs_close). Errors: VKV_EINVAL,
 * VKV_ENOMEM, VKV_ENOSPC (65536 namespaces). */
static int ns_intern(vkvs_store *st, const char *ns, uint32_t *id)
{
    size_t len = strnlen(ns, VKVS_NS_MAX + 1);

    if (len > VKVS_NS_MAX)
        return VKV_EINVAL;
    if ((*id = ns_find(st, ns)) != NS_NONE)
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

/* ---- entries --------------------------------------------------------------- */

/* Gives e (no pages yet) `npages` pages from the arena. Errors as
 * vkvs_arena_alloc. */
static int entry_take_pages(vkvs_store *st, vkvs_entry *e, uint64_t size)
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
static void entry_drop_pages(vkvs_store *st, vkvs_entry *e)
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
static void entry_destroy(vkvs_store *st, uint32_t id, bool hook)
{
    vkvs_entry *e = vkvs_ent(&st->ix, id);

    if (hook && st->hooks.drop)
        st->hooks.drop(st->hooks.arg, e->ns_id, st->ns[e->ns_id], &e->key);
    vkvs_policy_remove(&st->pol, id);
    entry_drop_pages(st, e);
    set_state(st, e, 0);
    vkvs_index_release(&st->ix, id);
}

/* Takes evictable entry id out of the policy (if still linked) and of
 * evictable_pages, and counts the eviction; the caller then turns it COLD or
 * destroys it. */
static void evict_unlink(vkvs_store *st, uint32_t id)
{
    vkvs_policy_remove(&st->pol, id);
    st->evictable_pages -= epages(st, vkvs_ent(&st->ix, id));
    st->c.evictions++;
}

/* Evicts evictable entry id (already unlinked from the policy or not): with
 * to_cold and an evict hook, the hook copies it (or, when it may hold the
 * pages, has the cold tier read them in place: SPILLING) and it becomes
 * COLD; a block restored from the cold tier becomes COLD without the hook
 * (the cold copy is the same immutable bytes); else it is dropped. Returns
 * 0, or VKV_EBUSY when the hook answered that the cold tier is behind (its
 * queue is full): then nothing happened to the entry (it is READY,
 * evictable and where it was in the policy, or unlinked if the caller took
 * it as a victim). */
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
    }
    evict_unlink(st, id);
    if (spill && rv == VKVS_SPILL_HELD) {
        st->c.spills++;
        st->c.spills_held++;
        e->flags |= VKVS_EF_SPILLING;
        st->spilling_pages += epages(st, e);
        st->spilling_entries++;
        set_state(st, e, VKVS_COLD);
        return 0;
    }
    if (keep_copy || (spill && rv == 0)) {
        if (keep_copy)
            st->c.spills_skipped++;
        else
            st->c.spills++;
        e->flags &= (uint8_t)~VKVS_EF_COLDCOPY;
        entry_drop_pages(st, e);
        set_state(st, e, VKVS_COLD);
        return 0;
    }
    if (spill)
        st->c.spill_failures++;
    entry_destroy(st, id, true);
    return 0;
}

/* Makes `need` pages free by evicting policy victims. With room waiting on
 * it answers VKVS_WAIT as soon as the spills in flight will free enough, or
 * when the cold tier cannot take another victim while some are in flight.
 * Errors: VKV_ENOSPC (free + evictable + spilling < need; nothing
 * evicted). */
static int make_room(vkvs_store *st, uint32_t need)
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
            entry_destroy(st, id, false);
        }
    }
    return 0;
}

/* ---- sessions and leases ---------------------------------------------------- */

/* The live session `sid`, touched; NULL if unknown. */
static vkvs_sess *sess_get(vkvs_store *st, uint64_t sid)
{
    uint32_t slot = (uint32_t)sid - 1;

    if (sid == 0 || slot >= st->sess_slots || st->sess[slot].id != sid)
        return NULL;
    st->sess[slot].last_seen = now_ms(st);
    return &st->sess[slot];
}

/* The lease `lid` of session slot `ss`, or NULL. */
static vkvs_lease *lease_get(vkvs_store *st, uint32_t ss, uint64_t lid)
{
    uint32_t slot = (uint32_t)lid - 1;

    if (lid == 0 || slot >= st->lease_slots || st->lease[slot].id != lid ||
        st->lease[slot].sess != ss)
        return NULL;
    return &st->lease[slot];
}

/* Creates a lease of `kind` for session slot ss; *slot gets its slot.
 * Errors: VKV_ENOSPC (max_leases), VKV_ENOMEM. */
static int lease_new(vkvs_store *st, uint32_t ss, uint32_t kind, uint32_t *slot)
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
    l->expires = now_ms(st) + st->cfg.lease_ttl_ms;
    l->next = s->lease_head;
    if (s->lease_head)
        st->lease[s->lease_head - 1].prev = *slot + 1;
    s->lease_head = *slot + 1;
    s->nleases++;
    st->nlease++;
    return 0;
}

/* Frees lease slot (unlinks it from its session); entries untouched. */
static void lease_free(vkvs_store *st, uint32_t slot)
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
        entry_destroy(st, id, false);
        return;
    }
    ev_fix(st, e, was);
}

/* Ends lease slot: a fetch lease unpins its entries, an alloc lease aborts
 * its WRITING entry; then the lease is freed. */
static void lease_end(vkvs_store *st, uint32_t slot)
{
    vkvs_lease *l = &st->lease[slot];

    if (l->kind == LEASE_FETCH) {
        for (uint32_t i = 0; i < l->n; i++)
            unpin(st, l->n == 1 ? l->one : l->many[i]);
    } else if (l->n == 1) {
        vkvs_entry *e = vkvs_ent(&st->ix, l->one);
        if (e->state == VKVS_WRITING && e->writer == slot + 1) {
            entry_destroy(st, l->one, false);
            st->c.aborts++;
        }
    }
    lease_free(st, slot);
}

/* Expires lease slot. Without quarantine it simply ends. With quarantine
 * (the default) the lease becomes a zombie: a fetch lease keeps its pins and
 * an alloc lease keeps its WRITING entry's pages (taken out of the index, so
 * another writer may take the key), because the holder may still read or
 * write them through its mapping. A zombie ends when its session closes or
 * the holder releases, aborts or commits it (it then answers VKV_ELEASE). */
static void lease_expire(vkvs_store *st, uint32_t slot)
{
    vkvs_lease *l = &st->lease[slot];

    if (l->zombie)
        return;
    st->c.leases_expired++;
    if (!st->cfg.quarantine) {
        lease_end(st, slot);
        return;
    }
    l->zombie = 1;
    st->nzombie++;
    if (l->kind == LEASE_ALLOC && l->n == 1) {
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
        lease_end(st, s->lease_head - 1);
    memset(s, 0, sizeof(*s));
    s->next_free = st->sess_free;
    st->sess_free = ss + 1;
    st->nsess--;
}

/* Resolves the namespace argument of an admin-capable op: non-admin: NULL or
 * its own; admin: NULL (NS_ALL, or VKV_EINVAL when `required`) or a name
 * (NS_NONE if never interned). */
static int resolve_ns(const vkvs_store *st, const vkvs_sess *s, const char *ns, bool required,
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
        *id = NS_ALL;
        return 0;
    }
    *id = ns_find(st, ns);
    return 0;
}

/* Entry id visible to lookups for (ns_id, key): present, not WRITING, not
 * delete-pending. 0 otherwise. */
static uint32_t find_visible(const vkvs_store *st, uint32_t ns_id, const vkv_key *key)
{
    uint32_t id;
    const vkvs_entry *e;

    if (ns_id >= NS_NONE)
        return 0;
    id = vkvs_index_find(&st->ix, ns_id, key);
    if (id == 0)
        return 0;
    e = vkvs_ent(&st->ix, id);
    if (e->state == VKVS_WRITING || (e->flags & VKVS_EF_DELPEND))
        return 0;
    return id;
}

/* ---- open / close ------------------------------------------------------------ */

/* Fills *cfg with the documented defaults. */
void vkvs_config_default(vkvs_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->backend = &vkvs_backend_host;
    cfg->slab_size = 256ULL << 20;
    cfg->nslabs = 4;
    cfg->max_slabs = 4;
    cfg->page_size = 256u << 10;
    cfg->lease_ttl_ms = 30000;
    cfg->session_ttl_ms = 120000;
    cfg->policy = VKVS_POLICY_DEFAULT;
    cfg->max_sessions = 4096;
    cfg->max_leases = 65536;
    cfg->max_fetch_keys = 4096;
    cfg->quarantine = true;
}

/* See store.h. Unwinds in reverse order on failure. */
int vkvs_open(const vkvs_config *cfg, vkvs_store **out)
{
    vkvs_store *st;
    uint64_t pps;
    int rv;

    *out = NULL;
    if (cfg->page_size < 4096 || (cfg->page_size & (cfg->page_size - 1)) != 0 ||
        cfg->slab_size == 0 || cfg->slab_size % cfg->page_size != 0 || cfg->nslabs == 0 ||
        (cfg->max_slabs != 0 && cfg->max_slabs < cfg->nslabs) || cfg->max_slabs > 4096)
        return VKV_EINVAL;
    pps = cfg->slab_size / cfg->page_size;
    if (pps > (1u << 24))
        return VKV_EINVAL;
    if ((st = calloc(1, sizeof(*st))) == NULL)
        return VKV_ENOMEM;
    st->cfg = *cfg;
    if (st->cfg.backend == NULL)
        st->cfg.backend = &vkvs_backend_host;
    if (st->cfg.max_slabs == 0)
        st->cfg.max_slabs = st->cfg.nslabs;
    if (st->cfg.policy == 0)
        st->cfg.policy = VKVS_POLICY_DEFAULT;
    if (st->cfg.max_sessions == 0)
        st->cfg.max_sessions = 4096;
    if (st->cfg.max_leases == 0)
        st->cfg.max_leases = 65536;
    if (st->cfg.max_fetch_keys == 0)
        st->cfg.max_fetch_keys = 4096;
    st->be = st->cfg.backend;
    if (getrandom(&st->rng, sizeof(st->rng), 0) != (ssize_t)sizeof(st->rng)) {
        rv = VKV_ESYS;
        goto fail_store;
    }
    if ((st->slabs = calloc(st->cfg.max_slabs, sizeof(vkvs_slab))) == NULL) {
        rv = VKV_ENOMEM;
        goto fail_store;
    }
    if ((rv = vkvs_arena_init(&st->arena, cfg->page_size, (uint32_t)pps, st->cfg.max_slabs)) != 0)
        goto fail_slabs;
    if ((rv = vkvs_index_init(&st->ix, 1024)) != 0)
        goto fail_arena;
    if ((rv = vkvs_policy_init(&st->pol, st->cfg.policy, &st->ix, cfg->page_size, 0,
                               pps * st->cfg.max_slabs)) != 0)
        goto fail_index;
    for (uint32_t i = 0; i < st->cfg.nslabs; i++)
        if ((rv = vkvs_add_slab(st, NULL)) != 0)
            goto fail_all;
    *out = st;
    return 0;

fail_all:
    for (uint32_t i = st->nslabs; i > 0; i--)
        st->be->slab_destroy(&st->slabs[i - 1]);
    vkvs_policy_destroy(&st->pol);
fail_index:
    vkvs_index_destroy(&st->ix);
fail_arena:
    vkvs_arena_destroy(&st->arena);
fail_slabs:
    free(st->slabs);
fail_store:
    free(st);
    return rv;
}

/* See store.h. */
void vkvs_close(vkvs_store *st)
{
    if (st == NULL)
        return;
    for (uint32_t i = 0; i < st->lease_slots; i++)
        free(st->lease[i].many);
    free(st->lease);
    free(st->sess);
    for (uint32_t i = 0; i < st->nns; i++)
        free(st->ns[i]);
    free(st->ns);
    for (uint32_t i = st->nslabs; i > 0; i--)
        st->be->slab_destroy(&st->slabs[i - 1]);
    vkvs_policy_destroy(&st->pol);
    vkvs_index_destroy(&st->ix);
    vkvs_arena_destroy(&st->arena);
    free(st->slabs);
    free(st);
}

/* See store.h. */
int vkvs_add_slab(vkvs_store *st, uint32_t *id)
{
    int rv;

    if (st->nslabs >= st->cfg.max_slabs)
        return VKV_ENOSPC;
    rv = st->be->slab_create(st->cfg.backend_arg, st->nslabs, st->cfg.slab_size,
                             &st->slabs[st->nslabs]);
    if (rv != 0)
        return rv;
    vkvs_arena_add_slab(&st->arena);
    st->pol.cap_pages = st->arena.total_pages;
    if (id)
        *id = st->nslabs;
    st->nslabs++;
    return 0;
}

uint32_t vkvs_slab_count(const vkvs_store *st)
{
    return st->nslabs;
}

const vkvs_slab *vkvs_slab_get(const vkvs_store *st, uint32_t id)
{
    return id < st->nslabs ? &st->slabs[id] : NULL;
}

uint32_t vkvs_page_size(const vkvs_store *st)
{
    return st->arena.page_size;
}

const vkvs_backend *vkvs_backend_of(const vkvs_store *st)
{
    return st->be;
}

void vkvs_set_fetch_quiet(vkvs_store *st, bool quiet)
{
    st->fetch_quiet = quiet;
}

void vkvs_set_observer(vkvs_store *st, vkvs_observe_fn fn, void *arg)
{
    st->observe = fn;
    st->observe_arg = arg;
}

void vkvs_set_room_wait(vkvs_store *st, bool wait)
{
    st->room_wait = wait;
}

void vkvs_set_hooks(vkvs_store *st, const vkvs_hooks *hooks)
{
    if (hooks)
        st->hooks = *hooks;
    else
        memset(&st->hooks, 0, sizeof(st->hooks));
}

/* Shared body of vkvs_read/vkvs_write: walks the extents covering
 * [off, off+len) and copies piecewise through the backend. */
static int copy_extents(const vkvs_store *st, const vkvs_extent *ext, uint32_t n, uint64_t off,
                        void *buf, size_t len, bool out)
{
    uint64_t ps = st->arena.page_size, base = 0;
    char *p = buf;

    for (uint32_t i = 0; i < n && len > 0; i++) {
        uint64_t elen = (uint64_t)ext[i].npages * ps;
        if (ext[i].slab >= st->nslabs)
            return VKV_EINVAL;
        if (off < base + elen) {
            uint64_t in = off - base, take = elen - in < len ? elen - in : len;
            uint64_t soff = (uint64_t)ext[i].first_page * ps + in;
            int rv = out ? st->be->copy_out(&st->slabs[ext[i].slab], soff, p, (size_t)take)
                         : st->be->copy_in(&st->slabs[ext[i].slab], soff, p, (size_t)take);
            if (rv != 0)
                return rv;
            p += take;
            off += take;
            len -= (size_t)take;
        }
        base += elen;
    }
    return len == 0 ? 0 : VKV_EINVAL;
}

int vkvs_read(const vkvs_store *st, const vkvs_extent *ext, uint32_t n, uint64_t off, void *dst,
              size_t len)
{
    return copy_extents(st, ext, n, off, dst, len, true);
}

int vkvs_write(const vkvs_store *st, const vkvs_extent *ext, uint32_t n, uint64_t off,
               const void *src, size_t len)
{
    return copy_extents(st, ext, n, off, (void *)src, len, false);
}

/* ---- sessions -------------------------------------------------------------- */

int vkvs_session_open(vkvs_store *st, const char *ns, pid_t pid, bool admin, uint64_t *sid)
{
    uint32_t ns_id = NS_ALL, slot;
    int rv;

    *sid = 0;
    if (!admin && (ns == NULL || ns[0] == '\0'))
        return VKV_EINVAL;
    if (ns != NULL && ns[0] != '\0' && !admin && (rv = ns_intern(st, ns, &ns_id)) != 0)
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
    st->sess[slot].last_seen = now_ms(st);
    st->sess[slot].opened = st->sess[slot].last_seen;
    st->nsess++;
    *sid = st->sess[slot].id;
    return 0;
}

int vkvs_session_close(vkvs_store *st, uint64_t sid)
{
    if (sess_get(st, sid) == NULL)
        return VKV_ESESSION;
    sess_close(st, (uint32_t)sid - 1);
    return 0;
}

int vkvs_session_bind_pid(vkvs_store *st, uint64_t sid, pid_t pid)
{
    vkvs_sess *s = sess_get(st, sid);

    if (s == NULL)
        return VKV_ESESSION;
    if (pid <= 0)
        return VKV_EINVAL;
    s->pid = pid;
    s->bound = true;
    return 0;
}

int vkvs_session_touch(vkvs_store *st, uint64_t sid)
{
    return sess_get(st, sid) ? 0 : VKV_ESESSION;
}

int vkvs_session_ns(const vkvs_store *st, uint64_t sid, uint32_t *ns_id, const char **ns)
{
    uint32_t slot = (uint32_t)sid - 1;

    if (sid == 0 || slot >= st->sess_slots || st->sess[slot].id != sid)
        return VKV_ESESSION;
    *ns_id = st->sess[slot].ns_id;
    *ns = st->sess[slot].ns_id < st->nns ? st->ns[st->sess[slot].ns_id] : "";
    return 0;
}

int vkvs_reap(vkvs_store *st, uint64_t now, vkvs_alive_fn alive_cb, void *arg)
{
    int closed = 0;

    for (uint32_t i = 0; i < st->lease_slots; i++)
        if (st->lease[i].id != 0 && !st->lease[i].zombie && st->lease[i].expires <= now)
            lease_expire(st, i);
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

/* ---- operations ------------------------------------------------------------ */

int vkvs_lookup(vkvs_store *st, uint64_t sid, const vkv_key *keys, size_t n, size_t *prefix,
                size_t *ncold)
{
    vkvs_sess *s = sess_get(st, sid);
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
        uint32_t id = find_visible(st, s->ns_id, &keys[i]);
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
    vkvs_sess *s = sess_get(st, sid);
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
        uint32_t id = find_visible(st, s->ns_id, &keys[nready]);
        if (id == 0 || vkvs_ent(&st->ix, id)->state != VKVS_READY)
            break;
        nready++;
    }
    for (size_t j = nready; j < n; j++) {
        uint32_t id = find_visible(st, s->ns_id, &keys[j]);
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
            uint64_t sz = vkvs_ent(&st->ix, find_visible(st, s->ns_id, &keys[fit]))->size;
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
    if ((rv = lease_new(st, (uint32_t)(s - st->sess), LEASE_FETCH, &slot)) != 0) {
        free(many);
        return rv;
    }
    now = wall_ms(st);
    for (size_t i = 0; i < nready; i++) {
        uint32_t id = vkvs_index_find(&st->ix, s->ns_id, &keys[i]);
        vkvs_entry *e = vkvs_ent(&st->ix, id);
        bool was = vkvs_evictable(e);
        e->pins++;
        ev_fix(st, e, was);
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

int vkvs_alloc(vkvs_store *st, uint64_t sid, const vkv_key *key, uint64_t size, uint64_t *lease,
               vkvs_block *out)
{
    vkvs_sess *s = sess_get(st, sid);
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
    id = vkvs_index_find(&st->ix, s->ns_id, key);
    if (id != 0) {
        e = vkvs_ent(&st->ix, id);
        if (e->state != VKVS_WRITING)
            return (e->flags & VKVS_EF_DELPEND) ? VKV_EBUSY : VKV_EEXIST;
        if (st->lease[e->writer - 1].expires > now_ms(st))
            return VKV_EBUSY;
        lease_expire(st, e->writer - 1); /* the writer's lease ran out: take over */
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
    pages = vkvs_pages_for(size, st->arena.page_size);
    if ((rv = lease_new(st, (uint32_t)(s - st->sess), LEASE_ALLOC, &slot)) != 0)
        goto fail;
    if ((rv = make_room(st, pages)) == VKVS_WAIT) {
        lease_free(st, slot);
        return VKVS_WAIT;
    }
    if (rv != 0)
        goto fail_lease;
    if ((rv = vkvs_index_new(&st->ix, s->ns_id, key, &id)) != 0)
        goto fail_lease;
    e = vkvs_ent(&st->ix, id);
    st->state_count[0]++; /* set_state moves it out of "none" */
    set_state(st, e, VKVS_WRITING);
    if ((rv = entry_take_pages(st, e, size)) != 0)
        goto fail_entry;
    e->writer = slot + 1;
    e->last_ms = wall_ms(st);
    st->lease[slot].n = 1;
    st->lease[slot].one = id;
    st->lease[slot].bytes = size;
    s->held += size;
    st->c.allocs++;
    *lease = st->lease[slot].id;
    *out = (vkvs_block){size, e->nextents, vkvs_entry_ext(e)};
    return 0;

fail_entry:
    entry_destroy(st, id, false);
fail_lease:
    lease_free(st, slot);
fail:
    st->c.allocs_failed++;
    return rv;
}

/* The live ALLOC lease `lid` of session s. NULL if unknown, not an alloc
 * lease, or expired; an expired one (zombie or past its TTL) is ended here,
 * since its holder is done with the pages (it commits or aborts). */
static vkvs_lease *alloc_lease(vkvs_store *st, vkvs_sess *s, uint64_t lid)
{
    vkvs_lease *l = lease_get(st, (uint32_t)(s - st->sess), lid);

    if (l == NULL || l->kind != LEASE_ALLOC)
        return NULL;
    if (l->zombie || l->expires <= now_ms(st)) {
        uint32_t slot = (uint32_t)(l - st->lease);
        lease_expire(st, slot);
        if (st->lease[slot].id == lid) /* a zombie: end it now */
            lease_end(st, slot);
        return NULL;
    }
    return l;
}

int vkvs_commit(vkvs_store *st, uint64_t sid, uint64_t lease, vkvs_validate_fn validate, void *arg)
{
    vkvs_sess *s = sess_get(st, sid);
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
    set_state(st, e, VKVS_READY);
    e->writer = 0;
    e->last_ms = wall_ms(st);
    vkvs_policy_insert(&st->pol, l->one);
    ev_fix(st, e, false);
    lease_free(st, (uint32_t)(l - st->lease));
    st->c.commits++;
    return 0;
}

int vkvs_abort(vkvs_store *st, uint64_t sid, uint64_t lease)
{
    vkvs_sess *s = sess_get(st, sid);
    vkvs_lease *l;

    if (s == NULL)
        return VKV_ESESSION;
    if (s->admin)
        return VKV_EPERM;
    if ((l = alloc_lease(st, s, lease)) == NULL)
        return VKV_ELEASE;
    lease_end(st, (uint32_t)(l - st->lease));
    return 0;
}

int vkvs_release(vkvs_store *st, uint64_t sid, const uint64_t *leases, size_t n, size_t *nreleased)
{
    vkvs_sess *s = sess_get(st, sid);
    size_t done = 0;

    if (nreleased)
        *nreleased = 0;
    if (s == NULL)
        return VKV_ESESSION;
    if (s->admin)
        return VKV_EPERM;
    for (size_t i = 0; i < n; i++) {
        vkvs_lease *l = lease_get(st, (uint32_t)(s - st->sess), leases[i]);
        if (l == NULL)
            continue;
        bool live = !l->zombie && l->expires > now_ms(st);
        if (!live)
            st->c.leases_expired += l->zombie ? 0 : 1;
        lease_end(st, (uint32_t)(l - st->lease));
        done += live;
    }
    if (nreleased)
        *nreleased = done;
    return 0;
}

int vkvs_renew(vkvs_store *st, uint64_t sid, const uint64_t *leases, size_t n, size_t *nrenewed)
{
    vkvs_sess *s = sess_get(st, sid);
    size_t done = 0;
    uint64_t now = now_ms(st);

    if (nrenewed)
        *nrenewed = 0;
    if (s == NULL)
        return VKV_ESESSION;
    if (s->admin)
        return VKV_EPERM;
    if (n > 0 && leases == NULL)
        return VKV_EINVAL;
    for (size_t i = 0; i < n; i++) {
        vkvs_lease *l = lease_get(st, (uint32_t)(s - st->sess), leases[i]);
        if (l == NULL || l->zombie)
            continue;
        if (l->expires <= now) {
            lease_expire(st, (uint32_t)(l - st->lease));
            continue;
        }
        l->expires = now + st->cfg.lease_ttl_ms;
        done++;
    }
    if (nrenewed)
        *nrenewed = done;
    return 0;
}

/* Deletes entry id (any visible state but WRITING); see vkvs_delete. */
static void delete_entry(vkvs_store *st, uint32_t id)
{
    vkvs_entry *e = vkvs_ent(&st->ix, id);
    bool was = vkvs_evictable(e);

    st->c.deletes++;
    if (e->state == VKVS_READY && e->pins == 0) {
        st->evictable_pages -= was ? epages(st, e) : 0;
        entry_destroy(st, id, true);
        return;
    }
    if (e->state == VKVS_COLD && !(e->flags & VKVS_EF_SPILLING)) {
        entry_destroy(st, id, true);
        return;
    }
    /* pinned READY, RESTORING or SPILLING: invisible now, freed later */
    if (st->hooks.drop)
        st->hooks.drop(st->hooks.arg, e->ns_id, st->ns[e->ns_id], &e->key);
    vkvs_policy_remove(&st->pol, id);
    int seen = seen_state(e);
    e->flags |= VKVS_EF_DELPEND;
    observe(st, e, seen);
    ev_fix(st, e, was);
    if (e->state == VKVS_READY)
        vkvs_index_unlink(&st->ix, id);
}

int vkvs_delete(vkvs_store *st, uint64_t sid, const char *ns, const vkv_key *keys, size_t n,
                size_t *ndeleted)
{
    vkvs_sess *s = sess_get(st, sid);
    uint32_t ns_id;
    size_t done = 0;
    int rv;

    if (ndeleted)
        *ndeleted = 0;
    if (s == NULL)
        return VKV_ESESSION;
    if ((rv = resolve_ns(st, s, ns, true, &ns_id)) != 0)
        return rv;
    if (n > 0 && keys == NULL)
        return VKV_EINVAL;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = find_visible(st, ns_id, &keys[i]);
        if (id == 0)
            continue;
        delete_entry(st, id);
        done++;
    }
    if (ndeleted)
        *ndeleted = done;
    return 0;
}

int vkvs_evict(vkvs_store *st, uint64_t sid, const char *ns, const vkv_key *keys, size_t n,
               bool to_cold, size_t *nevicted)
{
    vkvs_sess *s = sess_get(st, sid);
    uint32_t ns_id;
    size_t done = 0;
    int rv;

    if (nevicted)
        *nevicted = 0;
    if (s == NULL)
        return VKV_ESESSION;
    if ((rv = resolve_ns(st, s, ns, keys != NULL, &ns_id)) != 0)
        return rv;
    rv = 0;
    if (keys != NULL) {
        for (size_t i = 0; i < n && rv == 0; i++) {
            uint32_t id = find_visible(st, ns_id, &keys[i]);
            if (id != 0 && vkvs_evictable(vkvs_ent(&st->ix, id)) &&
                (rv = evict_entry(st, id, to_cold, false)) == 0)
                done++;
        }
    } else if (ns_id != NS_NONE) {
        for (uint32_t id = 1; id <= st->ix.hwm && rv == 0; id++) {
            vkvs_entry *e = vkvs_ent(&st->ix, id);
            if ((e->flags & VKVS_EF_USED) && vkvs_evictable(e) &&
                (ns_id == NS_ALL || e->ns_id == ns_id) &&
                (rv = evict_entry(st, id, to_cold, false)) == 0)
                done++;
        }
    }
    if (nevicted)
        *nevicted = done;
    return rv;
}

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

int vkvs_list(vkvs_store *st, uint64_t sid, const char *ns, uint64_t cursor, size_t limit,
              vkvs_info *out, size_t *nout, uint64_t *next)
{
    vkvs_sess *s = sess_get(st, sid);
    uint32_t ns_id;
    size_t k = 0;
    int rv;

    *nout = 0;
    *next = 0;
    if (s == NULL)
        return VKV_ESESSION;
    if ((rv = resolve_ns(st, s, ns, false, &ns_id)) != 0)
        return rv;
    if (limit == 0 || out == NULL)
        return VKV_EINVAL;
    if (ns_id == NS_NONE)
        return 0;
    for (uint64_t id = cursor ? cursor : 1; id <= st->ix.hwm; id++) {
        vkvs_entry *e = vkvs_ent(&st->ix, (uint32_t)id);
        if (!(e->flags & VKVS_EF_USED) || (e->flags & (VKVS_EF_DETACHED | VKVS_EF_DELPEND)) ||
            e->state == VKVS_WRITING || (ns_id != NS_ALL && e->ns_id != ns_id))
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

int vkvs_info_get(vkvs_store *st, uint64_t sid, const char *ns, const vkv_key *key, vkvs_info *out)
{
    vkvs_sess *s = sess_get(st, sid);
    uint32_t ns_id, id;
    int rv;

    if (s == NULL)
        return VKV_ESESSION;
    if ((rv = resolve_ns(st, s, ns, true, &ns_id)) != 0)
        return rv;
    if (key == NULL)
        return VKV_EINVAL;
    if ((id = find_visible(st, ns_id, key)) == 0)
        return VKV_ENOTFOUND;
    fill_info(st, vkvs_ent(&st->ix, id), out);
    return 0;
}

/* ---- cold tier -------------------------------------------------------------- */

int vkvs_add_cold(vkvs_store *st, const char *ns, const vkv_key *key, uint64_t size,
                  uint64_t last_ms)
{
    uint32_t ns_id, id;
    vkvs_entry *e;
    int rv;

    if (ns == NULL || ns[0] == '\0' || key == NULL || size == 0)
        return VKV_EINVAL;
    if ((rv = ns_intern(st, ns, &ns_id)) != 0)
        return rv;
    if (vkvs_index_find(&st->ix, ns_id, key) != 0)
        return VKV_EEXIST;
    if ((rv = vkvs_index_new(&st->ix, ns_id, key, &id)) != 0)
        return rv;
    e = vkvs_ent(&st->ix, id);
    e->size = size;
    e->last_ms = last_ms;
    st->state_count[0]++;
    set_state(st, e, VKVS_COLD);
    return 0;
}

/* Entry id for (ns, key) regardless of state, or 0. */
static uint32_t find_any(const vkvs_store *st, const char *ns, const vkv_key *key)
{
    uint32_t ns_id;

    if (ns == NULL || key == NULL || (ns_id = ns_find(st, ns)) == NS_NONE)
        return 0;
    return vkvs_index_find(&st->ix, ns_id, key);
}

int vkvs_cold_copy_gone(vkvs_store *st, const char *ns, const vkv_key *key)
{
    uint32_t id = find_any(st, ns, key);

    if (id == 0)
        return VKV_ENOTFOUND;
    vkvs_entry *e = vkvs_ent(&st->ix, id);
    if (e->flags & VKVS_EF_SPILLING)
        return 0; /* about an older record: the write in flight makes a new one */
    if (e->state == VKVS_COLD) {
        entry_destroy(st, id, false);
        return 0;
    }
    e->flags &= (uint8_t)~VKVS_EF_COLDCOPY;
    return 0;
}

int vkvs_forget_cold(vkvs_store *st, const char *ns, const vkv_key *key)
{
    uint32_t id = find_any(st, ns, key);

    if (id == 0)
        return VKV_ENOTFOUND;
    vkvs_entry *e = vkvs_ent(&st->ix, id);
    if (e->state != VKVS_COLD || (e->flags & VKVS_EF_SPILLING))
        return VKV_ESTATE;
    entry_destroy(st, id, false);
    return 0;
}

int vkvs_spill_done(vkvs_store *st, const char *ns, const vkv_key *key, int status)
{
    uint32_t id = find_any(st, ns, key);

    if (id == 0)
        return VKV_ENOTFOUND;
    vkvs_entry *e = vkvs_ent(&st->ix, id);
    if (e->state != VKVS_COLD || !(e->flags & VKVS_EF_SPILLING))
        return VKV_ESTATE;
    e->flags &= (uint8_t)~VKVS_EF_SPILLING;
    st->spilling_pages -= epages(st, e);
    st->spilling_entries--;
    if (e->flags & VKVS_EF_DELPEND) {
        entry_destroy(st, id, false); /* the drop hook ran at the delete */
        return 0;
    }
    if (status == 0) {
        entry_drop_pages(st, e);
        return 0;
    }
    if (vkvs_spill_block_bad(status)) {
        st->c.spill_failures++;
        entry_destroy(st, id, true);
        return 0;
    }
    /* Nothing was written and the immutable block is intact in its pages:
     * serve it hot again rather than lose it. */
    st->c.spill_failures++;
    st->c.spills_reverted++;
    set_state(st, e, VKVS_READY);
    vkvs_policy_insert(&st->pol, id);
    ev_fix(st, e, false);
    return 0;
}

int vkvs_restore_begin(vkvs_store *st, const char *ns, const vkv_key *key, vkvs_block *out)
{
    uint32_t id = find_any(st, ns, key);
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
    if ((rv = make_room(st, epages(st, e))) != 0)
        return rv;
    uint64_t size = e->size;
    if ((rv = entry_take_pages(st, e, size)) != 0)
        return rv;
    set_state(st, e, VKVS_RESTORING);
    *out = (vkvs_block){e->size, e->nextents, vkvs_entry_ext(e)};
    return 0;
}

int vkvs_restoring_block(vkvs_store *st, const char *ns, const vkv_key *key, vkvs_block *out)
{
    uint32_t id = find_any(st, ns, key);
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

int vkvs_restore_end(vkvs_store *st, const char *ns, const vkv_key *key, int status)
{
    uint32_t id = find_any(st, ns, key);
    vkvs_entry *e;

    if (id == 0)
        return VKV_ENOTFOUND;
    e = vkvs_ent(&st->ix, id);
    if (e->state != VKVS_RESTORING)
        return VKV_ESTATE;
    if (e->flags & VKVS_EF_DELPEND) {
        entry_destroy(st, id, false);
        return 0;
    }
    if (status != 0) {
        entry_drop_pages(st, e);
        set_state(st, e, VKVS_COLD);
        return 0;
    }
    set_state(st, e, VKVS_READY);
    e->flags |= VKVS_EF_COLDCOPY;
    e->last_ms = wall_ms(st);
    vkvs_policy_insert(&st->pol, id);
    ev_fix(st, e, false);
    st->c.restores++;
    return 0;
}

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
