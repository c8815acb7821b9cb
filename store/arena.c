/*
 * store/arena.c - the paged arena: free-page bitmaps over equal-sized slabs.
 *
 * An allocation of n pages takes the best-fitting single free run (smallest
 * run >= n, exact fit stops the search). When no run is long enough it takes
 * the longest runs first until the remainder fits in one run, so an
 * allocation succeeds whenever n pages are free in total and uses few runs.
 * Slabs hold few pages (256 MiB / 256 KiB = 1024 pages = 16 words), so a
 * scan of the bitmaps is short; bench/store_churn.c measures it.
 */
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"
#include "vkv/error.h"

/* Sets up bitmaps for up to `max_slabs` slabs of `pages_per_slab` pages (no
 * slab active yet). Owns a.bits until vkvs_arena_destroy. Errors:
 * VKV_EINVAL, VKV_ENOMEM. */
int vkvs_arena_init(vkvs_arena *a, uint32_t page_size, uint32_t pages_per_slab, uint32_t max_slabs)
{
    memset(a, 0, sizeof(*a));
    if (pages_per_slab == 0 || max_slabs == 0)
        return VKV_EINVAL;
    a->page_size = page_size;
    a->pages_per_slab = pages_per_slab;
    a->words_per_slab = (pages_per_slab + 63) / 64;
    a->max_slabs = max_slabs;
    a->bits = calloc((size_t)max_slabs * a->words_per_slab, sizeof(uint64_t));
    return a->bits == NULL ? VKV_ENOMEM : 0;
}

/* Frees the bitmaps. */
void vkvs_arena_destroy(vkvs_arena *a)
{
    free(a->bits);
    memset(a, 0, sizeof(*a));
}

/* Marks pages [p, p+n) of slab s free (1) or used (0). */
static void arena_mark(vkvs_arena *a, uint32_t s, uint32_t p, uint32_t n, bool free_)
{
    uint64_t *w = a->bits + (size_t)s * a->words_per_slab;

    while (n > 0) {
        uint32_t bit = p & 63, take = 64 - bit < n ? 64 - bit : n;
        uint64_t m = (take == 64 ? ~0ULL : ((1ULL << take) - 1)) << bit;
        if (free_)
            w[p >> 6] |= m;
        else
            w[p >> 6] &= ~m;
        p += take;
        n -= take;
    }
}

/* Activates the next slab with all its pages free. The caller checks
 * nslabs < max_slabs first. */
void vkvs_arena_add_slab(vkvs_arena *a)
{
    arena_mark(a, a->nslabs, 0, a->pages_per_slab, true);
    a->nslabs++;
    a->free_pages += a->pages_per_slab;
    a->total_pages += a->pages_per_slab;
}

/* True if page `page` of slab `slab` is free. */
bool vkvs_arena_is_free(const vkvs_arena *a, uint32_t slab, uint32_t page)
{
    const uint64_t *w = a->bits + (size_t)slab * a->words_per_slab;
    return (w[page >> 6] >> (page & 63)) & 1;
}

/* First position >= p in [0, nbits) whose bit equals `want`, or nbits. */
static uint32_t bit_find(const uint64_t *w, uint32_t nbits, uint32_t p, bool want)
{
    while (p < nbits) {
        uint64_t x = want ? w[p >> 6] : ~w[p >> 6];
        x &= ~0ULL << (p & 63);
        if (x != 0) {
            uint32_t r = (p & ~63u) + (uint32_t)__builtin_ctzll(x);
            return r < nbits ? r : nbits;
        }
        p = (p & ~63u) + 64;
    }
    return nbits;
}

/* Scans every free run: *best = smallest run >= need (len 0 if none; an
 * exact fit ends the scan), *big = longest run. */
static void arena_scan(const vkvs_arena *a, uint32_t need, vkvs_extent *best, vkvs_extent *big)
{
    memset(best, 0, sizeof(*best));
    memset(big, 0, sizeof(*big));
    for (uint32_t s = 0; s < a->nslabs; s++) {
        const uint64_t *w = a->bits + (size_t)s * a->words_per_slab;
        uint32_t p = 0, n = a->pages_per_slab;
        while ((p = bit_find(w, n, p, true)) < n) {
            uint32_t end = bit_find(w, n, p, false), len = end - p;
            if (len >= need && (best->npages == 0 || len < best->npages)) {
                *best = (vkvs_extent){s, p, len};
                if (len == need)
                    return;
            }
            if (len > big->npages)
                *big = (vkvs_extent){s, p, len};
            p = end;
        }
    }
}

/* Allocates `npages` pages as a list of extents. Up to two extents go to
 * `inl` (caller storage of 2); more go to a malloc'ed array in *heap (owned
 * by the caller afterwards; NULL when inl was enough). *nout = extent count.
 * Errors: VKV_ENOSPC (fewer free pages than npages; nothing taken),
 * VKV_ENOMEM (nothing taken). */
int vkvs_arena_alloc(vkvs_arena *a, uint32_t npages, vkvs_extent *inl, vkvs_extent **heap,
                     uint32_t *nout)
{
    vkvs_extent *list = inl, best, big;
    uint32_t n = 0, cap = 2, rem = npages;

    *heap = NULL;
    *nout = 0;
    if (npages == 0 || npages > a->free_pages)
        return VKV_ENOSPC;
    while (rem > 0) {
        arena_scan(a, rem, &best, &big);
        vkvs_extent take = best.npages ? (vkvs_extent){best.slab, best.first_page, rem} : big;
        if (n == cap) {
            vkvs_extent *nl = malloc(sizeof(*nl) * cap * 2);
            if (nl == NULL) {
                vkvs_arena_free(a, list, n);
                if (list != inl)
                    free(list);
                return VKV_ENOMEM;
            }
            memcpy(nl, list, sizeof(*nl) * n);
            if (list != inl)
                free(list);
            list = nl;
            cap *= 2;
        }
        list[n++] = take;
        arena_mark(a, take.slab, take.first_page, take.npages, false);
        a->free_pages -= take.npages;
        rem -= take.npages;
    }
    if (list != inl) {
        *heap = list;
    }
    *nout = n;
    return 0;
}

/* Returns the pages of `ext[0..n)` to the free bitmaps. */
void vkvs_arena_free(vkvs_arena *a, const vkvs_extent *ext, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        arena_mark(a, ext[i].slab, ext[i].first_page, ext[i].npages, true);
        a->free_pages += ext[i].npages;
    }
}
