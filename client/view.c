/*
 * client/view.c - contiguous views of a block's page runs: validated
 * against the current slabs, pointing straight into the slab for one run,
 * stitched for several (host: MAP_FIXED windows of the memfd; cuda: a
 * device buffer gathered from the runs or scattered back at COMMIT); and a
 * block's (namespace, key) identity.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>

#include "client/client_cuda.h"
#include "client/client_internal.h"
#include "proto/proto.h"
#include "vkv/vkv.h"

void vkvc_stitch_free(struct vkvc_stitch *st)
{
    if (st->base) {
        if (st->device)
            vkvc_cuda_free(st->base);
        else
            munmap(st->base, st->len);
    }
    free(st->runs);
    free(st->run_len);
    memset(st, 0, sizeof *st);
}

/* Address of byte 0 of page run `e` (validated by the caller). */
static uint8_t *run_addr(const vkv_client *c, const struct vkvc_slabset *set, const vkvp_extent *e,
                         int for_write)
{
    uint64_t off = e->first_page * c->page_size;
    if (c->backend == VKVP_BACKEND_CUDA)
        return (uint8_t *)set->cslabs[e->slab].dev + off;
    return (for_write ? set->slabs[e->slab].base : set->slabs[e->slab].ro) + off;
}

/* Device-memory view of a multi-run block: a buffer the size of the runs,
 * gathered from them now (fetch) or scattered to them at commit (put). */
static int stitch_device(vkv_client *c, const vkvp_block *b, uint64_t total, int for_write,
                         struct vkvc_stitch *st)
{
    st->device = 1;
    st->nruns = b->next;
    st->runs = calloc(b->next, sizeof *st->runs);
    st->run_len = calloc(b->next, sizeof *st->run_len);
    if (!st->runs || !st->run_len)
        return VKV_ENOMEM;
    for (uint32_t i = 0; i < b->next; i++) {
        st->runs[i] = run_addr(c, c->set, &b->ext[i], 1);
        st->run_len[i] = (size_t)(b->ext[i].npages * c->page_size);
    }
    int rc = vkvc_cuda_alloc(&st->base, (size_t)total);
    if (rc)
        return rc;
    st->len = (size_t)total;
    if (!for_write)
        rc = vkvc_cuda_gather(st->base, (const void *const *)st->runs, st->run_len, st->nruns);
    return rc;
}

int vkvc_make_view(vkv_client *c, const vkvp_block *b, int for_write, void **data,
                   struct vkvc_stitch *st)
{
    uint64_t ps = c->page_size, total = 0;
    int cuda = c->backend == VKVP_BACKEND_CUDA;
    const struct vkvc_slabset *set = c->set;
    memset(st, 0, sizeof *st);
    if (!set)
        return VKV_ECONN;
    uint32_t nslabs = cuda ? set->ncslabs : set->nslabs;
    for (uint32_t i = 0; i < b->next; i++) {
        const vkvp_extent *e = &b->ext[i];
        uint64_t size =
            e->slab < nslabs ? (cuda ? set->cslabs[e->slab].size : set->slabs[e->slab].size) : 0;
        int mapped = e->slab < nslabs &&
                     (cuda ? set->cslabs[e->slab].dev != NULL : set->slabs[e->slab].base != NULL);
        uint64_t pages = size / ps; /* no multiplication of untrusted numbers */
        if (!mapped || e->npages == 0 || e->first_page >= pages ||
            e->npages > pages - e->first_page)
            return VKV_EPROTO;
        total += e->npages * ps;
    }
    if (b->next == 0 || total < b->len)
        return VKV_EPROTO;
    if (b->next == 1) {
        *data = run_addr(c, set, &b->ext[0], for_write);
        return 0;
    }
    int rc;
    if (cuda) {
        rc = stitch_device(c, b, total, for_write, st);
        if (rc) {
            vkvc_stitch_free(st);
            return rc;
        }
        *data = st->base;
        return 0;
    }
    uint8_t *base = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return VKV_ENOMEM;
    uint64_t off = 0;
    for (uint32_t i = 0; i < b->next; i++) {
        const vkvp_extent *e = &b->ext[i];
        void *p = mmap(base + off, e->npages * ps, for_write ? PROT_READ | PROT_WRITE : PROT_READ,
                       MAP_SHARED | MAP_FIXED, set->slabs[e->slab].fd, (off_t)(e->first_page * ps));
        if (p == MAP_FAILED) {
            munmap(base, total);
            return VKV_ESYS;
        }
        off += e->npages * ps;
    }
    *data = base;
    st->base = base;
    st->len = total;
    return 0;
}

void vkvc_key_ident(const vkv_client *c, const vkv_key *key, uint8_t out[VKV_IDENT_LEN])
{
    vkv_block_ident(c->ns, strlen(c->ns), key->b, out);
}
