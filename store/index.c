/*
 * store/index.c - the entry pool and the hash index of the store.
 *
 * Entries live in fixed chunks of VKVS_CHUNK so that their addresses never
 * change (fetch hands out pointers to their extents). The index is an open
 * addressing table with linear probing over two parallel arrays (32-bit hash,
 * 32-bit entry id: 8 bytes a slot), kept at most 3/4 full and shrunk by
 * backward-shift deletion, so there are no tombstones. Keys are hashed with
 * XXH3-64 keyed by a seed from getrandom() so that clients cannot aim
 * collisions at one bucket.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <xxhash.h>

#include "store/store_int.h"
#include "vkv/error.h"

/* Fills *ix with an empty pool and a table of `initial_cap` slots (rounded
 * up to a power of two, >= 16), seeded from getrandom(). Owns the arrays
 * until vkvs_index_destroy. Errors: VKV_ENOMEM, VKV_ESYS. */
int vkvs_index_init(vkvs_index *ix, uint32_t initial_cap)
{
    uint32_t cap = 16;

    memset(ix, 0, sizeof(*ix));
    while (cap < initial_cap && cap < (1u << 30))
        cap <<= 1;
    if (getrandom(&ix->seed, sizeof(ix->seed), 0) != (ssize_t)sizeof(ix->seed))
        return VKV_ESYS;
    ix->slot_hash = calloc(cap, sizeof(uint32_t));
    ix->slot_id = calloc(cap, sizeof(uint32_t));
    if (ix->slot_hash == NULL || ix->slot_id == NULL) {
        free(ix->slot_id);
        free(ix->slot_hash);
        return VKV_ENOMEM;
    }
    ix->cap = cap;
    return 0;
}

/* Frees the table and every chunk, including heap extents of live entries. */
void vkvs_index_destroy(vkvs_index *ix)
{
    for (uint32_t id = 1; id <= ix->hwm; id++) {
        vkvs_entry *e = vkvs_ent(ix, id);
        if ((e->flags & VKVS_EF_USED) && e->nextents > 2)
            free(e->ext.heap);
    }
    for (uint32_t c = 0; c < ix->nchunks; c++)
        free(ix->chunks[c]);
    free(ix->chunks);
    free(ix->slot_id);
    free(ix->slot_hash);
    memset(ix, 0, sizeof(*ix));
}

/* Keyed XXH3-64 of (ns id, key). */
uint64_t vkvs_index_hash(const vkvs_index *ix, uint32_t ns_id, const vkv_key *key)
{
    uint8_t buf[4 + VKV_KEY_LEN];

    memcpy(buf, &ns_id, 4);
    memcpy(buf + 4, key->b, VKV_KEY_LEN);
    return XXH3_64bits_withSeed(buf, sizeof(buf), ix->seed);
}

/* Returns the id of the entry (ns_id, key) in the table, or 0. */
uint32_t vkvs_index_find(const vkvs_index *ix, uint32_t ns_id, const vkv_key *key)
{
    uint32_t h = (uint32_t)vkvs_index_hash(ix, ns_id, key);
    uint32_t mask = ix->cap - 1;

    for (uint32_t pos = h & mask;; pos = (pos + 1) & mask) {
        uint32_t id = ix->slot_id[pos];
        if (id == 0)
            return 0;
        if (ix->slot_hash[pos] == h) {
            const vkvs_entry *e = vkvs_ent(ix, id);
            if (e->ns_id == ns_id && memcmp(e->key.b, key->b, VKV_KEY_LEN) == 0)
                return id;
        }
    }
}

/* Puts id with hash h into the first empty slot of its probe sequence. */
static void index_place(vkvs_index *ix, uint32_t h, uint32_t id)
{
    uint32_t mask = ix->cap - 1;
    uint32_t pos = h & mask;

    while (ix->slot_id[pos] != 0)
        pos = (pos + 1) & mask;
    ix->slot_hash[pos] = h;
    ix->slot_id[pos] = id;
}

/* Doubles the table and re-places every slot (the stored 32-bit hash gives
 * the new position; nothing is rehashed). Errors: VKV_ENOMEM (table kept). */
static int index_grow(vkvs_index *ix)
{
    uint32_t oldcap = ix->cap, *oh = ix->slot_hash, *oi = ix->slot_id;
    uint32_t *nh, *ni;

    if (oldcap >= (1u << 31))
        return VKV_ENOMEM;
    nh = calloc((size_t)oldcap * 2, sizeof(uint32_t));
    ni = calloc((size_t)oldcap * 2, sizeof(uint32_t));
    if (nh == NULL || ni == NULL) {
        free(ni);
        free(nh);
        return VKV_ENOMEM;
    }
    ix->slot_hash = nh;
    ix->slot_id = ni;
    ix->cap = oldcap * 2;
    for (uint32_t i = 0; i < oldcap; i++)
        if (oi[i] != 0)
            index_place(ix, oh[i], oi[i]);
    free(oi);
    free(oh);
    return 0;
}

/* Takes a zeroed pool slot and marks it used; *id gets its id. Errors:
 * VKV_ENOMEM. */
static int pool_take(vkvs_index *ix, uint32_t *id)
{
    vkvs_entry *e;

    if (ix->free_head != 0) {
        *id = ix->free_head;
        e = vkvs_ent(ix, *id);
        ix->free_head = e->next;
    } else {
        if (ix->hwm == UINT32_MAX - 1)
            return VKV_ENOMEM;
        if ((ix->hwm >> VKVS_CHUNK_SHIFT) >= ix->nchunks) {
            vkvs_entry **nc = realloc(ix->chunks, (ix->nchunks + 1) * sizeof(*nc));
            if (nc == NULL)
                return VKV_ENOMEM;
            ix->chunks = nc;
            nc[ix->nchunks] = calloc(VKVS_CHUNK, sizeof(vkvs_entry));
            if (nc[ix->nchunks] == NULL)
                return VKV_ENOMEM;
            ix->nchunks++;
        }
        *id = ++ix->hwm;
        e = vkvs_ent(ix, *id);
    }
    memset(e, 0, sizeof(*e));
    e->flags = VKVS_EF_USED;
    ix->count++;
    return 0;
}

/* Creates an entry for (ns_id, key), which must be absent, in the pool and
 * the table; all other fields zero. *id gets its id; the entry pointer
 * (vkvs_ent) is stable until vkvs_index_release. Errors: VKV_ENOMEM. */
int vkvs_index_new(vkvs_index *ix, uint32_t ns_id, const vkv_key *key, uint32_t *id)
{
    int rv;
    vkvs_entry *e;

    if ((uint64_t)(ix->used + 1) * 4 > (uint64_t)ix->cap * 3) {
        if ((rv = index_grow(ix)) != 0)
            return rv;
    }
    if ((rv = pool_take(ix, id)) != 0)
        return rv;
    e = vkvs_ent(ix, *id);
    e->ns_id = ns_id;
    e->key = *key;
    index_place(ix, (uint32_t)vkvs_index_hash(ix, ns_id, key), *id);
    ix->used++;
    return 0;
}

/* Removes entry `id` from the table (it stays in the pool, flagged
 * DETACHED). Backward-shift deletion keeps probe chains intact. No-op if the
 * entry is already detached. */
void vkvs_index_unlink(vkvs_index *ix, uint32_t id)
{
    vkvs_entry *e = vkvs_ent(ix, id);
    uint32_t mask = ix->cap - 1, pos, next;

    if (e->flags & VKVS_EF_DETACHED)
        return;
    pos = (uint32_t)vkvs_index_hash(ix, e->ns_id, &e->key) & mask;
    while (ix->slot_id[pos] != id)
        pos = (pos + 1) & mask;
    /* Shift later members of the cluster back over the hole when their home
     * slot does not lie cyclically in (hole, their position]. */
    for (next = (pos + 1) & mask; ix->slot_id[next] != 0; next = (next + 1) & mask) {
        uint32_t home = ix->slot_hash[next] & mask;
        if (((next - home) & mask) >= ((next - pos) & mask)) {
            ix->slot_hash[pos] = ix->slot_hash[next];
            ix->slot_id[pos] = ix->slot_id[next];
            pos = next;
        }
    }
    ix->slot_id[pos] = 0;
    ix->slot_hash[pos] = 0;
    ix->used--;
    e->flags |= VKVS_EF_DETACHED;
}

/* Unlinks (if needed) and frees entry `id`: its heap extents, then its pool
 * slot. Pointers to the entry become invalid. */
void vkvs_index_release(vkvs_index *ix, uint32_t id)
{
    vkvs_entry *e = vkvs_ent(ix, id);

    vkvs_index_unlink(ix, id);
    if (e->nextents > 2)
        free(e->ext.heap);
    memset(e, 0, sizeof(*e));
    e->next = ix->free_head;
    ix->free_head = id;
    ix->count--;
}

/* Heap bytes held by the pool and the table. */
size_t vkvs_index_bytes(const vkvs_index *ix)
{
    return (size_t)ix->nchunks * (VKVS_CHUNK * sizeof(vkvs_entry) + sizeof(vkvs_entry *)) +
           (size_t)ix->cap * 2 * sizeof(uint32_t);
}
