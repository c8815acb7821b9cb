/*
 * tests/fuzz/fuzz_block.c - fuzz target for the block codec's reader side
 * (include/vkv/codec.h): vkv_block_check, vkv_decode, vkv_decode_paged on
 * arbitrary bytes.
 *
 * Input layout: byte 0 is a control byte, the rest is the block.
 *   bit 0     recompute both XXH3 checksums before checking (otherwise almost
 *             no mutated header would get past the header checksum)
 *   bit 1     pass VKV_DECODE_VERIFY
 *   bits 2-5  page size of the paged destination - 1 (1..16 tokens)
 *   bits 6-7  first_pos of the paged destination / 3
 * The block is copied into a heap buffer of exactly its size, so a read past
 * its end is a sanitizer report. When the header validates, the outputs are
 * allocated at exactly the size the validated header implies and decoded
 * with every implementation this CPU has; properties:
 *  - every implementation writes the same bytes as the scalar reference;
 *  - the paged decode (reversed block table) puts the same bytes at the
 *    mapped positions, and a block table one entry short is refused with
 *    nothing written;
 *  - a check failure is a negative VKV_E* code.
 * All memory is local to one call.
 */
#include <string.h>
#include <xxhash.h>

#include "fuzz.h"
#include "vkv/codec.h"

#define MAX_OUT_BYTES (64u << 20) /* skip decoding absurdly large shapes */

/* Recomputes header_xxh3 and (when total_size fits) payload_xxh3 in place. */
static void fix_checksums(uint8_t *blk, size_t n)
{
    vkv_block_header h;
    if (n < sizeof h)
        return;
    memcpy(&h, blk, sizeof h);
    h.payload_xxh3 = 0;
    h.header_xxh3 = 0;
    uint64_t ph = 0;
    if (h.total_size >= VKV_BLOCK_HEADER_SIZE && h.total_size <= n)
        ph = XXH3_64bits(blk + VKV_BLOCK_HEADER_SIZE,
                         (size_t)(h.total_size - VKV_BLOCK_HEADER_SIZE));
    uint64_t hh = XXH3_64bits(&h, sizeof h);
    h.header_xxh3 = hh;
    h.payload_xxh3 = ph;
    memcpy(blk, &h, sizeof h);
}

/* Per-layer heap buffers (K and V), each `bytes` long, filled with `fill`.
 * Returns an array of 2*layers pointers (K of layer l at [l], V at
 * [layers+l]) owned by the caller (free_layers), or NULL. */
static uint8_t **alloc_layers(uint32_t layers, size_t bytes, int fill)
{
    uint8_t **p = calloc(2 * (size_t)layers, sizeof *p);
    if (!p)
        return NULL;
    for (uint32_t i = 0; i < 2 * layers; i++) {
        p[i] = malloc(bytes ? bytes : 1);
        VKVF_CHECK(p[i] != NULL, "out of memory");
        memset(p[i], fill, bytes);
    }
    return p;
}

/* Frees what alloc_layers returned. */
static void free_layers(uint8_t **p, uint32_t layers)
{
    if (!p)
        return;
    for (uint32_t i = 0; i < 2 * layers; i++)
        free(p[i]);
    free(p);
}

/* The destination geometry a block's own header describes. */
static vkv_geometry geom_of(const vkv_block_header *h)
{
    vkv_geometry g = {h->layers, h->kv_heads, h->head_dim, h->tokens, h->dtype};
    return g;
}

/* Dense decode with implementation `impl` into fresh buffers; returns them
 * (caller frees) or NULL when the implementation is not available. */
static uint8_t **decode_dense(const uint8_t *blk, size_t n, unsigned flags,
                              const vkv_block_header *h, size_t layer_bytes, enum vkv_impl impl)
{
    if (vkv_codec_set_impl(impl) != 0)
        return NULL;
    uint8_t **bufs = alloc_layers(h->layers, layer_bytes, 0x5c);
    VKVF_CHECK(bufs != NULL, "out of memory");
    vkv_kv_dst dst = {(void *const *)bufs,
                      (void *const *)(bufs + h->layers),
                      (size_t)h->kv_heads * h->head_dim,
                      h->head_dim,
                      geom_of(h),
                      NULL};
    /* A destination of another geometry is refused before anything is written. */
    vkv_kv_dst other = dst;
    other.geom.kv_heads = h->kv_heads + 1;
    VKVF_CHECK(vkv_decode(blk, n, flags, &other) == VKV_EGEOMETRY, "wrong heads accepted");
    other.geom = geom_of(h);
    other.geom.tokens = h->tokens - 1;
    VKVF_CHECK(h->tokens == 1 || vkv_decode(blk, n, flags, &other) == VKV_EGEOMETRY,
               "too many tokens accepted");
    int rc = vkv_decode(blk, n, flags, &dst);
    VKVF_CHECK(rc == 0, "decode of a checked block failed: %d (impl %d)", rc, (int)impl);
    return bufs;
}

/* Paged decode + comparison with the dense reference. */
static void check_paged(const uint8_t *blk, size_t n, unsigned flags, const vkv_block_header *h,
                        uint8_t **ref, uint32_t page_size, uint32_t first_pos)
{
    size_t tok_bytes = (size_t)h->kv_heads * h->head_dim * 2;
    uint32_t npos = first_pos + h->tokens;
    uint32_t npages = (npos + page_size - 1) / page_size;
    size_t cache_bytes = (size_t)npages * page_size * tok_bytes;
    int32_t *table = malloc((size_t)npages * sizeof *table);
    VKVF_CHECK(table != NULL, "out of memory");
    for (uint32_t i = 0; i < npages; i++)
        table[i] = (int32_t)(npages - 1 - i); /* reversed: mapping matters */
    uint8_t **cache = alloc_layers(h->layers, cache_bytes, 0xa5);
    VKVF_CHECK(cache != NULL, "out of memory");
    vkv_paged_dst pd = {(void *const *)cache,
                        (void *const *)(cache + h->layers),
                        npages,
                        page_size,
                        table,
                        npages,
                        first_pos,
                        0,
                        0,
                        0,
                        0,
                        geom_of(h),
                        NULL};
    /* One entry short: refused, nothing written. */
    if (npages > 0 && (uint64_t)(npages - 1) * page_size < npos) {
        pd.block_table_len = npages - 1;
        int rc = vkv_decode_paged(blk, n, flags, &pd);
        VKVF_CHECK(rc == VKV_EINVAL, "short block table gave %d", rc);
        for (uint32_t i = 0; i < 2 * h->layers; i++)
            for (size_t b = 0; b < cache_bytes; b++)
                VKVF_CHECK(cache[i][b] == 0xa5, "refused paged decode wrote layer %u", i);
        pd.block_table_len = npages;
    }
    int rc = vkv_decode_paged(blk, n, flags, &pd);
    VKVF_CHECK(rc == 0, "paged decode of a checked block failed: %d", rc);
    for (uint32_t l = 0; l < 2 * h->layers; l++)
        for (uint32_t t = 0; t < h->tokens; t++) {
            uint32_t p = first_pos + t;
            size_t at = ((size_t)table[p / page_size] * page_size + p % page_size) * tok_bytes;
            VKVF_CHECK(memcmp(cache[l] + at, ref[l] + (size_t)t * tok_bytes, tok_bytes) == 0,
                       "paged differs from dense: layer %u token %u", l, t);
        }
    free_layers(cache, h->layers);
    free(table);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t ctrl = data[0];
    size_t n = size - 1;
    uint8_t *blk = malloc(n ? n : 1);
    VKVF_CHECK(blk != NULL, "out of memory");
    memcpy(blk, data + 1, n);
    if (ctrl & 1)
        fix_checksums(blk, n);
    unsigned flags = (ctrl & 2) ? VKV_DECODE_VERIFY : 0;

    vkv_block_header h;
    int rc = vkv_block_check(blk, n, flags, &h);
    if (rc != 0) {
        VKVF_CHECK(rc < 0, "check returned %d", rc);
        /* The decoders must refuse what the check refuses. */
        uint8_t *ptrs[1] = {NULL};
        vkv_kv_dst dst = {(void *const *)ptrs, (void *const *)ptrs, 0, 0, {1, 1, 8, 1, 1}, NULL};
        VKVF_CHECK(vkv_decode(blk, n, flags, &dst) < 0, "decode accepted a refused block");
        free(blk);
        return 0;
    }
    VKVF_CHECK(h.total_size <= n && h.total_size >= VKV_BLOCK_HEADER_SIZE, "total_size %llu",
               (unsigned long long)h.total_size);
    VKVF_CHECK(h.dtype == VKV_DTYPE_F16 || h.dtype == VKV_DTYPE_BF16, "dtype %u", h.dtype);
    vkv_shape shape;
    vkv_codec_spec spec;
    vkv_block_shape(&h, &shape, &spec);
    size_t enc = 0;
    VKVF_CHECK(vkv_codec_encoded_size(&shape, &spec, &enc) == 0 && enc == h.total_size,
               "header shape disagrees with its size");

    size_t layer_bytes = (size_t)h.tokens * h.kv_heads * h.head_dim * 2;
    if (layer_bytes * 2 * h.layers <= MAX_OUT_BYTES) {
        enum vkv_impl saved = vkv_codec_impl();
        uint8_t **ref = decode_dense(blk, n, flags, &h, layer_bytes, VKV_IMPL_SCALAR);
        VKVF_CHECK(ref != NULL, "scalar implementation unavailable");
        static const enum vkv_impl others[] = {VKV_IMPL_AVX2, VKV_IMPL_AVX512};
        for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
            uint8_t **o = decode_dense(blk, n, flags, &h, layer_bytes, others[i]);
            if (!o)
                continue;
            for (uint32_t l = 0; l < 2 * h.layers; l++)
                VKVF_CHECK(memcmp(o[l], ref[l], layer_bytes) == 0,
                           "impl %d differs from scalar in %s of layer %u", (int)others[i],
                           l < h.layers ? "K" : "V", l % h.layers);
            free_layers(o, h.layers);
        }
        VKVF_CHECK(vkv_codec_set_impl(saved) == 0, "restore impl");
        uint32_t page_size = 1u + ((ctrl >> 2) & 15u);
        uint32_t first_pos = (uint32_t)(ctrl >> 6) * 3u;
        check_paged(blk, n, flags, &h, ref, page_size, first_pos);
        free_layers(ref, h.layers);
    }
    free(blk);
    return 0;
}
