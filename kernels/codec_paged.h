/*
 * kernels/codec_paged.h - the checked geometry of a paged decode, shared by
 * the CPU driver (codec.c) and the CUDA driver (cuda/codec_cuda.cu), so
 * both accept and refuse exactly the same vkv_paged_dst. Private.
 */
#ifndef VKVK_CODEC_PAGED_H
#define VKVK_CODEC_PAGED_H

#include <stddef.h>
#include <stdint.h>

#include "vkv/block.h"
#include "vkv/codec.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A validated paged destination: strides resolved (never 0), positions and
 * the table range that the decode writes. */
typedef struct vkvk_paged_geom {
    size_t page_stride, slot_stride, head_stride; /* elements */
    uint32_t skip;                                /* tokens of the block left unwritten */
    uint64_t p0, p1; /* first and last block table index written (p0 > p1: none) */
} vkvk_paged_geom;

/* Checks dst against the block header h (as vkv_decode_paged documents:
 * NULL pointers, page size, table coverage and page ids of the written
 * positions, skip_tokens <= tokens, offset overflow) and fills *g. Reads
 * dst->block_table[p0..p1] only; keeps no pointer. Returns VKV_OK or
 * VKV_EINVAL. */
int vkvk_paged_geom_of(const vkv_block_header *h, const vkv_paged_dst *dst, vkvk_paged_geom *g);

#ifdef __cplusplus
}
#endif
#endif /* VKVK_CODEC_PAGED_H */
