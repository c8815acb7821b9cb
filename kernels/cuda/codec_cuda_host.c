/*
 * kernels/cuda/codec_cuda_host.c - the block header for GPU-encoded blocks,
 * built on the host with the same rules as kernels/codec.c.
 */
#include <string.h>

#include "codec_cuda_internal.h"

/* Resolved group field of one tensor: TOKEN G = 0 means head_dim; rotsign
 * keeps the scale width. Caller checked the spec with vkv_codec_check. */
static uint16_t vkvk_cuda_group(const vkv_codec_spec *spec, uint8_t mode, uint16_t g,
                                uint32_t head_dim)
{
    if (spec->rule != VKV_RULE_ROTSIGN && mode == VKV_GROUP_TOKEN && g == 0)
        return (uint16_t)head_dim;
    return g;
}

int vkvk_cuda_make_header(const vkv_shape *shape, const vkv_codec_spec *spec, vkv_block_header *h,
                          vkvk_layout *L)
{
    memset(h, 0, sizeof(*h));
    h->magic = VKV_BLOCK_MAGIC;
    h->version = VKV_BLOCK_VERSION;
    h->header_size = VKV_BLOCK_HEADER_SIZE;
    h->rule = spec->rule;
    h->dtype = shape->dtype;
    h->k_mode = spec->k_mode;
    h->v_mode = spec->v_mode;
    h->k_group = vkvk_cuda_group(spec, spec->k_mode, spec->k_group, shape->head_dim);
    h->v_group = vkvk_cuda_group(spec, spec->v_mode, spec->v_group, shape->head_dim);
    if (spec->rule == VKV_RULE_LLOYD || spec->rule == VKV_RULE_ROTSIGN) {
        h->iters = spec->iters;
    } else {
        h->k_param = spec->k_param;
        h->v_param = spec->v_param;
    }
    h->layers = shape->layers;
    h->kv_heads = shape->kv_heads;
    h->head_dim = shape->head_dim;
    h->tokens = shape->tokens;
    h->n_ranges = shape->n_ranges;
    for (uint32_t r = 0; r < shape->n_ranges && r < VKV_BLOCK_MAX_RANGES; r++)
        h->ranges[r] = shape->ranges[r];
    if (vkvk_layout_of(h, L) != 0)
        return VKV_ESHAPE;
    for (int s = 0; s < VKV_SEC_COUNT; s++) {
        h->sections[s].offset = L->off[s];
        h->sections[s].size = L->size[s];
    }
    h->total_size = L->total;
    return VKV_OK;
}
