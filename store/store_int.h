/*
 * store/store_int.h - private structures of the store shared by its files:
 * the entry pool and hash index (index.c), the paged arena (arena.c), the
 * eviction policies (policy.c), and the store handle with its sessions and
 * leases and the internal calls the store's files share (store.c, entry.c,
 * session.c, fetch.c, evict.c, restore.c, stats.c). Not installed; only
 * store/ and its tests and benchmarks include it.
 */
#ifndef VKV_STORE_INT_H
#define VKV_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/clock.h"
#include "store/store.h"

/* ---- entries ------------------------------------------------------------- */

#define VKVS_EF_DELPEND  0x01 /* deleted while pinned/restoring: free at unpin */
#define VKVS_EF_DETACHED 0x02 /* removed from the hash index (still in pool) */
#define VKVS_EF_SMALL    0x04 /* S3-FIFO: in the small queue (else main) */
#define VKVS_EF_INPOL    0x08 /* linked in the policy's lists */
#define VKVS_EF_COLDCOPY                                                                           \
    0x10 /* READY after a restore: the cold tier still holds                                       \
          * this (immutable) block, so evicting it needs no                                        \
          * spill */
#define VKVS_EF_SPILLING                                                                           \
    0x20 /* COLD, pages still held: the cold tier reads them in place until                        \
          * vkvs_spill_done; they are never freed before that */
#define VKVS_EF_COPYGONE                                                                           \
    0x40                  /* RESTORING: the cold tier reported its record gone meanwhile, so       \
                           * the restored block has no cold copy (no COLDCOPY at the end) */
#define VKVS_EF_USED 0x80 /* pool slot holds a live entry */

/* One index entry: fixed size (104 bytes on LP64). Lives at a stable address
 * in the pool from creation to free. */
typedef struct vkvs_entry {
    vkv_key key;
    uint32_t ns_id;
    uint8_t state; /* enum vkvs_state */
    uint8_t flags; /* VKVS_EF_* */
    uint8_t freq;  /* S3-FIFO access counter, 0..3 */
    uint8_t pad_;
    uint32_t nextents;
    uint32_t pins; /* fetch leases pinning it */
    uint32_t hits;
    uint32_t writer; /* WRITING: lease slot + 1 owning it; else 0 */
    uint32_t prev;   /* policy list links (entry ids); `next` doubles as */
    uint32_t next;   /* the pool free-list link while the slot is free */
    uint64_t size;
    uint64_t last_ms;
    union {
        vkvs_extent in[2]; /* nextents <= 2 */
        vkvs_extent *heap; /* nextents > 2; malloc'ed, owned by the entry */
    } ext;
} vkvs_entry;

/* Returns the extents of `e` (inline or heap); valid while `e` keeps them. */
static inline vkvs_extent *vkvs_entry_ext(vkvs_entry *e)
{
    return e->nextents <= 2 ? e->ext.in : e->ext.heap;
}

#define VKVS_CHUNK_SHIFT 12
#define VKVS_CHUNK       (1u << VKVS_CHUNK_SHIFT)

/* Entry pool (chunked so entries never move) plus the open-addressing hash
 * table of entry ids. Entry id 0 means "none"; ids start at 1. */
typedef struct vkvs_index {
    vkvs_entry **chunks; /* nchunks arrays of VKVS_CHUNK entries */
    uint32_t nchunks;
    uint32_t hwm;        /* highest id ever handed out */
    uint32_t free_head;  /* free-list of ids (via entry.next) */
    uint32_t count;      /* live entries in the pool */
    uint32_t *slot_hash; /* low 32 bits of the key hash per slot */
    uint32_t *slot_id;   /* entry id per slot; 0 = empty */
    uint32_t cap;        /* slots, power of two */
    uint32_t used;       /* occupied slots */
    uint64_t seed;       /* XXH3 seed from getrandom() */
} vkvs_index;

/* Returns entry `id` (1..hwm); no check. Pointer valid until vkvs_index_free
 * of that id. */
static inline vkvs_entry *vkvs_ent(const vkvs_index *ix, uint32_t id)
{
    uint32_t i = id - 1;
    return &ix->chunks[i >> VKVS_CHUNK_SHIFT][i & (VKVS_CHUNK - 1)];
}

int vkvs_index_init(vkvs_index *ix, uint32_t initial_cap);
void vkvs_index_destroy(vkvs_index *ix);
uint64_t vkvs_index_hash(const vkvs_index *ix, uint32_t ns_id, const vkv_key *key);
uint32_t vkvs_index_find(const vkvs_index *ix, uint32_t ns_id, const vkv_key *key);
int vkvs_index_new(vkvs_index *ix, uint32_t ns_id, const vkv_key *key, uint32_t *id);
void vkvs_index_unlink(vkvs_index *ix, uint32_t id);
void vkvs_index_release(vkvs_index *ix, uint32_t id);
size_t vkvs_index_bytes(const vkvs_index *ix);

/* ---- arena --------------------------------------------------------------- */

/* Free-page bitmaps (1 = free), one per slab, all slabs the same size. */
typedef struct vkvs_arena {
    uint32_t page_size;
    uint32_t pages_per_slab;
    uint32_t words_per_slab;
    uint32_t nslabs;
    uint32_t max_slabs;
    uint64_t *bits; /* max_slabs * words_per_slab words */
    uint64_t free_pages;
    uint64_t total_pages;
} vkvs_arena;

int vkvs_arena_init(vkvs_arena *a, uint32_t page_size, uint32_t pages_per_slab, uint32_t max_slabs);
void vkvs_arena_destroy(vkvs_arena *a);
void vkvs_arena_add_slab(vkvs_arena *a);
int vkvs_arena_alloc(vkvs_arena *a, uint32_t npages, vkvs_extent *inl, vkvs_extent **heap,
                     uint32_t *nout);
void vkvs_arena_free(vkvs_arena *a, const vkvs_extent *ext, uint32_t n);
bool vkvs_arena_is_free(const vkvs_arena *a, uint32_t slab, uint32_t page);

/* ---- policy -------------------------------------------------------------- */

/* Doubly linked FIFO/LRU list of entry ids; head = newest. */
typedef struct vkvs_plist {
    uint32_t head, tail;
    uint32_t count;
    uint64_t pages;
} vkvs_plist;

typedef struct vkvs_policy {
    int kind; /* enum vkvs_policy_kind */
    vkvs_index *ix;
    uint32_t page_size;
    vkvs_plist main;    /* LRU: the one list */
    vkvs_plist small;   /* S3-FIFO small queue */
    uint64_t cap_pages; /* total pages, for the 10% small-queue target */
    /* S3-FIFO ghost: direct-mapped (hash, sequence) table; an entry is in
     * the ghost if its hash matches and it was inserted within the last
     * `main.count` ghost insertions (FIFO of about the main queue's size). */
    uint64_t *ghost_hash;
    uint64_t *ghost_seq;
    uint32_t ghost_mask;
    uint64_t ghost_now;
} vkvs_policy;

int vkvs_policy_init(vkvs_policy *p, int kind, vkvs_index *ix, uint32_t page_size,
                     uint64_t cap_pages, uint64_t max_pages);
void vkvs_policy_destroy(vkvs_policy *p);
void vkvs_policy_insert(vkvs_policy *p, uint32_t id);
void vkvs_policy_access(vkvs_policy *p, uint32_t id);
void vkvs_policy_remove(vkvs_policy *p, uint32_t id);
uint32_t vkvs_policy_victim(vkvs_policy *p);
size_t vkvs_policy_bytes(const vkvs_policy *p);

/* Pages an entry of `size` bytes occupies. */
static inline uint32_t vkvs_pages_for(uint64_t size, uint32_t page_size)
{
    return (uint32_t)((size + page_size - 1) / page_size);
}

/* True if entry `e` may be evicted now: READY, unpinned, not being deleted. */
static inline bool vkvs_evictable(const vkvs_entry *e)
{
    return e->state == VKVS_READY && e->pins == 0 && !(e->flags & VKVS_EF_DELPEND);
}

/* ---- the store ----------------------------------------------------------- */

/*
 * Invariants kept by every function of the store's files:
 *  - an entry holds pages iff its state is WRITING, READY or RESTORING, or
 *    it is COLD and SPILLING (st->spilling_pages counts those);
 *  - a SPILLING entry's pages are freed only by vkvs_spill_done;
 *  - st->evictable_pages = pages of entries with vkvs_evictable() true;
 *  - an entry is linked in the policy iff it is READY and not DELPEND;
 *  - a pinned READY entry that is deleted is DETACHED (out of the hash
 *    table, invisible) and freed by the last unpin.
 */

enum { VKVS_LEASE_FETCH = 1, VKVS_LEASE_ALLOC = 2 };

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

#define VKVS_NS_ALL  UINT32_MAX       /* admin without a filter */
#define VKVS_NS_NONE (UINT32_MAX - 1) /* a namespace nobody has used */

/* The store's TTL clock (cfg.clock_ms or the monotonic clock). */
static inline uint64_t vkvs_now_ms(const vkvs_store *st)
{
    return st->cfg.clock_ms ? st->cfg.clock_ms(st->cfg.clock_arg) : vkv_now_ms();
}

/* Wall-clock stamp for entries' last access (shown to users, persisted). */
static inline uint64_t vkvs_wall_ms(const vkvs_store *st)
{
    return st->cfg.wall_ms ? st->cfg.wall_ms(st->cfg.clock_arg) : vkv_wall_ms();
}

/* Pages held by e. */
static inline uint32_t vkvs_epages(const vkvs_store *st, const vkvs_entry *e)
{
    return vkvs_pages_for(e->size, st->arena.page_size);
}

/* Adjusts evictable_pages after a change to e, given whether e was
 * evictable before it. */
static inline void vkvs_ev_fix(vkvs_store *st, const vkvs_entry *e, bool was)
{
    bool is = vkvs_evictable(e);
    if (was && !is)
        st->evictable_pages -= vkvs_epages(st, e);
    else if (!was && is)
        st->evictable_pages += vkvs_epages(st, e);
}

/* entry.c: namespaces and finding entries (each documented there). */
int vkvs_ns_intern(vkvs_store *st, const char *ns, uint32_t *id);
int vkvs_resolve_ns(const vkvs_store *st, const vkvs_sess *s, const char *ns, bool required,
                    uint32_t *id);
uint32_t vkvs_find_visible(const vkvs_store *st, uint32_t ns_id, const vkv_key *key);
uint32_t vkvs_find_any(const vkvs_store *st, const char *ns, const vkv_key *key);

/* entry.c: an entry's state, pages and end. */
void vkvs_set_state(vkvs_store *st, vkvs_entry *e, int s);
int vkvs_entry_take_pages(vkvs_store *st, vkvs_entry *e, uint64_t size);
void vkvs_entry_drop_pages(vkvs_store *st, vkvs_entry *e);
void vkvs_entry_destroy(vkvs_store *st, uint32_t id, bool hook);

/* session.c: sessions and leases. */
vkvs_sess *vkvs_sess_get(vkvs_store *st, uint64_t sid);
vkvs_lease *vkvs_lease_get(vkvs_store *st, uint32_t ss, uint64_t lid);
int vkvs_lease_new(vkvs_store *st, uint32_t ss, uint32_t kind, uint32_t *slot);
void vkvs_lease_free(vkvs_store *st, uint32_t slot);
void vkvs_lease_end(vkvs_store *st, uint32_t slot);
void vkvs_lease_expire(vkvs_store *st, uint32_t slot);

/* evict.c: eviction. */
int vkvs_make_room(vkvs_store *st, uint32_t need);

#endif /* VKV_STORE_INT_H */
