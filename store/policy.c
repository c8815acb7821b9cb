/*
 * store/policy.c - eviction policies over READY entries: LRU and S3-FIFO.
 *
 * Both keep entries on intrusive doubly linked lists (entry.prev/next, ids;
 * head = newest). Only READY entries are linked; pinned ones stay linked but
 * are never returned by vkvs_policy_victim: when one reaches the tail it is
 * rotated to the head (it is being read right now, so that is fair).
 *
 * S3-FIFO (Yang et al., SOSP'23): new entries enter a small FIFO (target 10%
 * of the capacity, counted in pages) unless their hash is in the ghost queue,
 * then they go straight to the main FIFO. Evicting from the small FIFO moves
 * an entry that was accessed at least once to main, else evicts it (and
 * remembers its hash in the ghost). Main is a FIFO with reinsertion: an
 * entry with freq > 0 is reinserted with freq - 1. freq saturates at 3.
 */
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"
#include "vkv/error.h"

/* Sets up policy `kind` over the entries of `ix`; the ghost table is sized
 * for up to `max_pages` entries. Owns the ghost arrays until
 * vkvs_policy_destroy. Errors: VKV_EINVAL, VKV_ENOMEM. */
int vkvs_policy_init(vkvs_policy *p, int kind, vkvs_index *ix, uint32_t page_size,
                     uint64_t cap_pages, uint64_t max_pages)
{
    uint64_t n = 1024;

    memset(p, 0, sizeof(*p));
    if (kind != VKVS_POLICY_LRU && kind != VKVS_POLICY_S3FIFO)
        return VKV_EINVAL;
    p->kind = kind;
    p->ix = ix;
    p->page_size = page_size;
    p->cap_pages = cap_pages;
    if (kind == VKVS_POLICY_S3FIFO) {
        while (n < 2 * max_pages && n < (1u << 26))
            n <<= 1;
        p->ghost_hash = calloc(n, sizeof(uint64_t));
        p->ghost_seq = calloc(n, sizeof(uint64_t));
        if (p->ghost_hash == NULL || p->ghost_seq == NULL) {
            free(p->ghost_seq);
            free(p->ghost_hash);
            return VKV_ENOMEM;
        }
        p->ghost_mask = (uint32_t)(n - 1);
    }
    return 0;
}

/* Frees the ghost table. Entries are not touched. */
void vkvs_policy_destroy(vkvs_policy *p)
{
    free(p->ghost_seq);
    free(p->ghost_hash);
    memset(p, 0, sizeof(*p));
}

/* Pages held by entry e. */
static uint32_t ent_pages(const vkvs_policy *p, const vkvs_entry *e)
{
    return vkvs_pages_for(e->size, p->page_size);
}

/* Links entry id at the head of list l. */
static void plist_push(vkvs_policy *p, vkvs_plist *l, uint32_t id)
{
    vkvs_entry *e = vkvs_ent(p->ix, id);

    e->prev = 0;
    e->next = l->head;
    if (l->head)
        vkvs_ent(p->ix, l->head)->prev = id;
    else
        l->tail = id;
    l->head = id;
    l->count++;
    l->pages += ent_pages(p, e);
}

/* Unlinks entry id from list l. */
static void plist_unlink(vkvs_policy *p, vkvs_plist *l, uint32_t id)
{
    vkvs_entry *e = vkvs_ent(p->ix, id);

    if (e->prev)
        vkvs_ent(p->ix, e->prev)->next = e->next;
    else
        l->head = e->next;
    if (e->next)
        vkvs_ent(p->ix, e->next)->prev = e->prev;
    else
        l->tail = e->prev;
    e->prev = e->next = 0;
    l->count--;
    l->pages -= ent_pages(p, e);
}

/* Ghost membership window: about the number of entries cached. */
static uint64_t ghost_window(const vkvs_policy *p)
{
    uint64_t w = (uint64_t)p->small.count + p->main.count;
    return w < 16 ? 16 : w;
}

/* True (and forgets it) if hash h was evicted from the small queue recently. */
static bool ghost_take(vkvs_policy *p, uint64_t h)
{
    uint32_t i = (uint32_t)h & p->ghost_mask;

    if (h != 0 && p->ghost_hash[i] == h && p->ghost_now - p->ghost_seq[i] < ghost_window(p)) {
        p->ghost_hash[i] = 0;
        return true;
    }
    return false;
}

/* Remembers hash h in the ghost. */
static void ghost_put(vkvs_policy *p, uint64_t h)
{
    uint32_t i = (uint32_t)h & p->ghost_mask;

    p->ghost_hash[i] = h;
    p->ghost_seq[i] = ++p->ghost_now;
}

/* Adds READY entry id (not yet linked) to the policy as newly inserted. */
void vkvs_policy_insert(vkvs_policy *p, uint32_t id)
{
    vkvs_entry *e = vkvs_ent(p->ix, id);

    e->freq = 0;
    e->flags &= (uint8_t)~VKVS_EF_SMALL;
    if (p->kind == VKVS_POLICY_S3FIFO &&
        !ghost_take(p, vkvs_index_hash(p->ix, e->ns_id, &e->key))) {
        e->flags |= VKVS_EF_SMALL;
        plist_push(p, &p->small, id);
    } else {
        plist_push(p, &p->main, id);
    }
    e->flags |= VKVS_EF_INPOL;
}

/* Records an access (fetch) to linked entry id. */
void vkvs_policy_access(vkvs_policy *p, uint32_t id)
{
    vkvs_entry *e = vkvs_ent(p->ix, id);

    if (!(e->flags & VKVS_EF_INPOL))
        return;
    if (p->kind == VKVS_POLICY_LRU) {
        plist_unlink(p, &p->main, id);
        plist_push(p, &p->main, id);
    } else if (e->freq < 3) {
        e->freq++;
    }
}

/* Unlinks entry id if linked (delete, evict by key, state change). */
void vkvs_policy_remove(vkvs_policy *p, uint32_t id)
{
    vkvs_entry *e = vkvs_ent(p->ix, id);

    if (!(e->flags & VKVS_EF_INPOL))
        return;
    plist_unlink(p, (e->flags & VKVS_EF_SMALL) ? &p->small : &p->main, id);
    e->flags &= (uint8_t) ~(VKVS_EF_INPOL | VKVS_EF_SMALL);
}

/* LRU victim: the least recently used unpinned entry, unlinked; 0 if none. */
static uint32_t lru_victim(vkvs_policy *p)
{
    for (uint32_t seen = 0, n = p->main.count; seen < n; seen++) {
        uint32_t id = p->main.tail;
        vkvs_entry *e = vkvs_ent(p->ix, id);
        plist_unlink(p, &p->main, id);
        if (vkvs_evictable(e)) {
            e->flags &= (uint8_t)~VKVS_EF_INPOL;
            return id;
        }
        plist_push(p, &p->main, id); /* pinned: rotate */
    }
    return 0;
}

/* S3-FIFO victim (see the file comment), unlinked; 0 if every linked entry
 * is pinned. Terminates: each step evicts, moves an entry S->M once,
 * decrements a freq, or rotates a pinned entry (counted per queue). */
static uint32_t s3_victim(vkvs_policy *p)
{
    uint32_t s_pinned = 0, m_pinned = 0;

    for (;;) {
        bool s_ok = p->small.count > s_pinned, m_ok = p->main.count > m_pinned;
        if (!s_ok && !m_ok)
            return 0;
        bool from_small = s_ok && (!m_ok || p->small.pages * 10 >= p->cap_pages);
        vkvs_plist *l = from_small ? &p->small : &p->main;
        uint32_t id = l->tail;
        vkvs_entry *e = vkvs_ent(p->ix, id);

        plist_unlink(p, l, id);
        if (!vkvs_evictable(e)) {
            plist_push(p, l, id);
            if (from_small)
                s_pinned++;
            else
                m_pinned++;
            continue;
        }
        if (from_small) {
            if (e->freq >= 1) {
                e->freq = 0;
                e->flags &= (uint8_t)~VKVS_EF_SMALL;
                plist_push(p, &p->main, id);
                continue;
            }
            ghost_put(p, vkvs_index_hash(p->ix, e->ns_id, &e->key));
        } else if (e->freq > 0) {
            e->freq--;
            plist_push(p, &p->main, id);
            continue;
        }
        e->flags &= (uint8_t) ~(VKVS_EF_INPOL | VKVS_EF_SMALL);
        return id;
    }
}

/* Picks, unlinks and returns the next victim (an evictable entry), or 0 when
 * no linked entry is evictable. The caller evicts it. */
uint32_t vkvs_policy_victim(vkvs_policy *p)
{
    return p->kind == VKVS_POLICY_LRU ? lru_victim(p) : s3_victim(p);
}

/* Heap bytes held by the policy (the ghost table). */
size_t vkvs_policy_bytes(const vkvs_policy *p)
{
    return p->ghost_hash ? ((size_t)p->ghost_mask + 1) * 2 * sizeof(uint64_t) : 0;
}
