/*
 * vkv/block.h - the vkv block format: one chunk of a prompt's KV cache
 * (every layer, K and V) with its visual tokens quantized to 1 bit.
 *
 * Defined once here and included by C, C++ and CUDA (nvcc) code alike; the
 * layout is fixed little-endian and guarded by static asserts. A block is
 *
 *     [vkv_block_header: 256 bytes][section 0][section 1]...[section 5]
 *
 * Every section starts at a multiple of VKV_BLOCK_ALIGN from the block start
 * and the sections appear in enum order, each directly after the previous
 * one rounded up to the alignment. Their sizes follow from the header's shape
 * and codec fields alone (see docs/BLOCK_FORMAT.md), and a reader must reject
 * a block whose section table differs from that canonical layout.
 *
 * Within the block, tokens are split into "visual" tokens (those inside one
 * of the visual ranges; quantized) and "raw" tokens (all others; stored in the
 * source dtype bit for bit). Visual tokens are numbered 0..n_vis-1 in token
 * order, raw tokens likewise 0..n_raw-1.
 *
 * Sections (all arrays in C order, element types in the source dtype unless
 * stated):
 *   RAW_K, RAW_V  [layers][n_raw][kv_heads][head_dim]           source dtype
 *   BITS_K,BITS_V [layers][n_vis][kv_heads][head_dim/8]          uint8; bit j of
 *                 byte b is channel 8b+j; 1 selects the high level
 *   LEV_K, LEV_V  levels, two per group (low, high), source dtype:
 *     CHANNEL mode (group = up to G consecutive visual tokens of one channel;
 *                   groups restart at each visual range, a range's last group
 *                   may be shorter; n_groups = sum over ranges ceil(len/G)):
 *                   [layers][n_groups][kv_heads][2][head_dim]  (low row, high row)
 *     TOKEN mode   (group = G consecutive channels of one token and head;
 *                   G divides head_dim):
 *                   [layers][n_vis][kv_heads][head_dim/G][2]
 *
 *
 * Rule VKV_RULE_ROTSIGN reinterprets the codec fields and the LEV sections
 * (docs/BLOCK_FORMAT.md states the arithmetic byte-exactly):
 *   k_mode/v_mode  TOKEN: subtract the per-channel mean over the block's
 *                  visual tokens, rotate each head by a fixed random-sign
 *                  Walsh-Hadamard transform, keep the signs and one scale per
 *                  token and head. CHANNEL: keep the signs of the unrotated
 *                  values and a rank-1 magnitude a[token,head] * b[head,d].
 *   k_group/v_group  width of the per-token scales in bits: 16 (source dtype)
 *                  or 8 (the log-domain code of docs/BLOCK_FORMAT.md).
 *   k_param/v_param  zero. iters: rank-1 refinement passes (0..16).
 *   BITS_K,BITS_V  as above (bit 1: the element / rotated element is >= 0).
 *   LEV_K, LEV_V   per layer, empty when there are no visual tokens, else
 *                  [kv_heads][head_dim] vector (the mean, or b) in the source
 *                  dtype, then [n_vis][kv_heads] scales of 2 or 1 bytes.
 *
 * Rule VKV_RULE_TC (docs/BLOCK_FORMAT.md "Rule 5"):
 *   k_mode         TOKEN. k_group: key bits per element in 1/64 bit (1..192);
 *                  each token and head has B = (k_group*head_dim + 32) / 64
 *                  bits, stored in ceil(B/8) bytes.
 *   v_mode/v_group CHANNEL, 0: values are sign bits times a rank-1 magnitude
 *                  a[token,head] * b[head,d]; TOKEN, 1..192: values coded like
 *                  keys with that budget.
 *   k_param/v_param zero. iters: 1 if the allocation was asked to follow the
 *                  caller's attention weights (aw=1), else 0 (informational).
 *   BITS_K (BITS_V when TOKEN) [layers][n_vis][kv_heads][ceil(B/8)] codes of
 *                  the channels in order, LSB first, unused bits zero;
 *                  BITS_V when CHANNEL: sign bits as rotsign.
 *   LEV_K, LEV_V   per layer, empty when there are no visual tokens, else
 *                  [kv_heads] records (coded: mean[head_dim] in the source
 *                  dtype, 8-bit channel-scale codes [head_dim] (sc = stop *
 *                  2^(-c/16)), 2-bit allocation [head_dim/4] bytes, top of
 *                  the token scale code and stop, both in the source dtype;
 *                  rank-1: b[head_dim], top), then [n_vis][kv_heads] 8-bit
 *                  scale codes (a = top * 2^(-c/16), c = 255: 0).
 *
 * Identity: ident[16] binds a block to the (namespace, key) it is stored
 * under (vkv_block_ident in vkv/codec.h). An encoder leaves it zero; libvkv
 * binds the block just before COMMIT, and the daemon refuses a COMMIT, spill
 * or restore whose identity is not that of its own (namespace, key). It is
 * covered by header_xxh3.
 *
 * Checksums are XXH3-64 (seed 0): payload_xxh3 covers bytes
 * [header_size, total_size); header_xxh3 covers the 256 header bytes with
 * both checksum fields set to zero.
 */
#ifndef VKV_BLOCK_H
#define VKV_BLOCK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VKV_BLOCK_MAGIC       0x31564B56u /* bytes 'V' 'K' 'V' '1' */
#define VKV_BLOCK_VERSION     1u
#define VKV_BLOCK_HEADER_SIZE 256u
#define VKV_BLOCK_MAX_RANGES  8u
#define VKV_BLOCK_ALIGN       64u

/* Hard limits a reader enforces before trusting any size arithmetic. */
#define VKV_BLOCK_MAX_LAYERS   1024u
#define VKV_BLOCK_MAX_HEADS    1024u
#define VKV_BLOCK_MAX_HEAD_DIM 4096u
#define VKV_BLOCK_MAX_TOKENS   65536u

/* Source (and decoded) element type. */
enum vkv_dtype {
    VKV_DTYPE_F16 = 1,
    VKV_DTYPE_BF16 = 2,
};

/* Rule that picks the two reconstruction levels of a group. */
enum vkv_rule {
    VKV_RULE_MINMAX = 1,   /* min/max shrunk toward the mean by `param` (CalibQuant) */
    VKV_RULE_QUANTILE = 2, /* levels at the p and 1-p quantiles, p = `param` */
    VKV_RULE_LLOYD = 3,    /* two-level Lloyd-Max, `iters` iterations */
    VKV_RULE_ROTSIGN = 4,  /* sign bits times a per-token scale; keys centred and
                              Hadamard-rotated (TOKEN mode) or a rank-1 scale
                              (CHANNEL mode); see "rotsign" below */
    VKV_RULE_TC = 5,       /* transform coding: keys centred per channel, a
                              per-token-and-head bit budget spread over the
                              channels (0..3 bits, Gaussian Lloyd-Max levels);
                              see "tc" below */
};

/* How elements are grouped (each group has its own two levels). */
enum vkv_group_mode {
    VKV_GROUP_CHANNEL = 1, /* G consecutive visual tokens of one channel */
    VKV_GROUP_TOKEN = 2,   /* G consecutive channels of one token and head */
};

enum vkv_section {
    VKV_SEC_RAW_K = 0,
    VKV_SEC_RAW_V = 1,
    VKV_SEC_BITS_K = 2,
    VKV_SEC_BITS_V = 3,
    VKV_SEC_LEV_K = 4,
    VKV_SEC_LEV_V = 5,
    VKV_SEC_COUNT = 6,
};

/* Half-open token interval [start, start + len) of visual tokens. */
typedef struct vkv_block_range {
    uint32_t start;
    uint32_t len;
} vkv_block_range;

typedef struct vkv_block_section {
    uint64_t offset; /* from the first byte of the block */
    uint64_t size;   /* bytes */
} vkv_block_section;

typedef struct vkv_block_header {
    uint32_t magic;        /*   0: VKV_BLOCK_MAGIC */
    uint16_t version;      /*   4: VKV_BLOCK_VERSION */
    uint16_t header_size;  /*   6: VKV_BLOCK_HEADER_SIZE */
    uint64_t total_size;   /*   8: bytes of the whole block */
    uint64_t payload_xxh3; /*  16: XXH3-64 of [header_size, total_size) */
    uint64_t header_xxh3;  /*  24: XXH3-64 of the header, checksums zeroed */
    uint8_t rule;          /*  32: enum vkv_rule */
    uint8_t dtype;         /*  33: enum vkv_dtype */
    uint8_t k_mode;        /*  34: enum vkv_group_mode */
    uint8_t v_mode;        /*  35: enum vkv_group_mode */
    uint16_t k_group;      /*  36: G for keys (tokens or channels per group) */
    uint16_t v_group;      /*  38: G for values */
    float k_param;         /*  40: rule parameter for keys (shrink or p) */
    float v_param;         /*  44: rule parameter for values */
    uint32_t layers;       /*  48 */
    uint32_t kv_heads;     /*  52 */
    uint32_t head_dim;     /*  56: multiple of 8 */
    uint32_t tokens;       /*  60 */
    uint32_t n_ranges;     /*  64: visual ranges used, <= VKV_BLOCK_MAX_RANGES */
    uint8_t iters;         /*  68: Lloyd iterations (0 for other rules) */
    uint8_t reserved0[3];  /*  69: zero */
    uint8_t ident[16];     /*  72: identity: XXH3-128 of (namespace, key), see
                            *      vkv_block_ident(); all zero = not bound */
    uint8_t reserved[8];   /*  88: zero */
    vkv_block_range ranges[VKV_BLOCK_MAX_RANGES]; /*  96: sorted, disjoint */
    vkv_block_section sections[VKV_SEC_COUNT];    /* 160 */
} vkv_block_header;

#if defined(__cplusplus)
#define VKV_STATIC_ASSERT_(c, m) static_assert(c, m)
#else
#define VKV_STATIC_ASSERT_(c, m) _Static_assert(c, m)
#endif
VKV_STATIC_ASSERT_(sizeof(float) == 4, "float must be IEEE binary32");
VKV_STATIC_ASSERT_(sizeof(vkv_block_range) == 8, "range layout");
VKV_STATIC_ASSERT_(sizeof(vkv_block_section) == 16, "section layout");
VKV_STATIC_ASSERT_(sizeof(vkv_block_header) == VKV_BLOCK_HEADER_SIZE, "header is 256 bytes");
VKV_STATIC_ASSERT_(__builtin_offsetof(vkv_block_header, rule) == 32, "rule offset");
VKV_STATIC_ASSERT_(__builtin_offsetof(vkv_block_header, layers) == 48, "layers offset");
VKV_STATIC_ASSERT_(__builtin_offsetof(vkv_block_header, n_ranges) == 64, "n_ranges offset");
VKV_STATIC_ASSERT_(__builtin_offsetof(vkv_block_header, ident) == 72, "ident offset");
VKV_STATIC_ASSERT_(__builtin_offsetof(vkv_block_header, ranges) == 96, "ranges offset");
VKV_STATIC_ASSERT_(__builtin_offsetof(vkv_block_header, sections) == 160, "sections offset");
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "vkv blocks are little-endian; a big-endian port needs byte-swapping readers"
#endif

#ifdef __cplusplus
}
#endif
#endif /* VKV_BLOCK_H */
