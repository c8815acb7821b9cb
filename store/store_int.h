/*
 * store/store_int.h - private structures of the store shared by its files:
 * the entry pool and hash index (index.c), the paged arena (arena.c) and the
 * eviction policies (policy.c). Not installed; only store/ and its tests and
 * benchmarks include it.
 */
#ifndef VKV_STORE_INT_H
#define VKV_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
    0x20                  /* COLD, pages still held: the cold tier reads them in place until       \
                           * vkvs_spill_done; they are never freed before that */
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

#endif /* VKV_STORE_INT_H */
