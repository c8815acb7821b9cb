/*
 * store/store.c - the store handle (store/store.h): defaults, open/close,
 * slabs, settings, and byte copies through the backend. The store's
 * structure and the invariants every file keeps are in store/store_int.h.
 * One thread owns a store; nothing here locks.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "store/store_int.h"
#include "vkv/error.h"

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

/* True if cfg describes an arena vkvs_open can build: pages a power of two
 * >= 4096 that cut slabs evenly into at most 2^24 pages, 1..4096 slabs. */
static bool config_valid(const vkvs_config *cfg)
{
    if (cfg->page_size < 4096 || (cfg->page_size & (cfg->page_size - 1)) != 0 ||
        cfg->slab_size == 0 || cfg->slab_size % cfg->page_size != 0 || cfg->nslabs == 0 ||
        (cfg->max_slabs != 0 && cfg->max_slabs < cfg->nslabs) || cfg->max_slabs > 4096)
        return false;
    return cfg->slab_size / cfg->page_size <= (1u << 24);
}

/* Replaces the zero (or NULL) fields of the store's copy of the config that
 * mean "the default" by their values. */
static void config_fill(vkvs_config *c)
{
    if (c->backend == NULL)
        c->backend = &vkvs_backend_host;
    if (c->max_slabs == 0)
        c->max_slabs = c->nslabs;
    if (c->policy == 0)
        c->policy = VKVS_POLICY_DEFAULT;
    if (c->max_sessions == 0)
        c->max_sessions = 4096;
    if (c->max_leases == 0)
        c->max_leases = 65536;
    if (c->max_fetch_keys == 0)
        c->max_fetch_keys = 4096;
}

/* See store.h. Unwinds in reverse order on failure. */
int vkvs_open(const vkvs_config *cfg, vkvs_store **out)
{
    vkvs_store *st;
    uint64_t pps;
    int rv;

    *out = NULL;
    if (!config_valid(cfg))
        return VKV_EINVAL;
    pps = cfg->slab_size / cfg->page_size;
    if ((st = calloc(1, sizeof(*st))) == NULL)
        return VKV_ENOMEM;
    st->cfg = *cfg;
    config_fill(&st->cfg);
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

/* ---- accessors and settings ---------------------------------------------------- */

/* See store.h. */
uint32_t vkvs_slab_count(const vkvs_store *st)
{
    return st->nslabs;
}

/* See store.h. */
const vkvs_slab *vkvs_slab_get(const vkvs_store *st, uint32_t id)
{
    return id < st->nslabs ? &st->slabs[id] : NULL;
}

/* See store.h. */
uint32_t vkvs_page_size(const vkvs_store *st)
{
    return st->arena.page_size;
}

/* See store.h. */
const vkvs_backend *vkvs_backend_of(const vkvs_store *st)
{
    return st->be;
}

/* See store.h. */
void vkvs_set_fetch_quiet(vkvs_store *st, bool quiet)
{
    st->fetch_quiet = quiet;
}

/* See store.h. */
void vkvs_set_observer(vkvs_store *st, vkvs_observe_fn fn, void *arg)
{
    st->observe = fn;
    st->observe_arg = arg;
}

/* See store.h. */
void vkvs_set_room_wait(vkvs_store *st, bool wait)
{
    st->room_wait = wait;
}

/* See store.h. */
void vkvs_set_hooks(vkvs_store *st, const vkvs_hooks *hooks)
{
    if (hooks)
        st->hooks = *hooks;
    else
        memset(&st->hooks, 0, sizeof(st->hooks));
}

/* ---- byte copies ------------------------------------------------------------- */

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

/* See store.h. */
int vkvs_read(const vkvs_store *st, const vkvs_extent *ext, uint32_t n, uint64_t off, void *dst,
              size_t len)
{
    return copy_extents(st, ext, n, off, dst, len, true);
}

/* See store.h. */
int vkvs_write(const vkvs_store *st, const vkvs_extent *ext, uint32_t n, uint64_t off,
               const void *src, size_t len)
{
    return copy_extents(st, ext, n, off, (void *)src, len, false);
}
