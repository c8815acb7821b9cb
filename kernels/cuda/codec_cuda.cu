/*
 * kernels/cuda/codec_cuda.cu - the vkv codec on the GPU (vkv/codec_cuda.h).
 *
 * Every per-element operation comes from kernels/codec_math.h (the same
 * static inline code the CPU reference runs) and follows the order of
 * kernels/codec_ref.c; built with -fmad=false so no multiply-add is fused.
 * Where the reference reduces sequentially (a channel over tokens, a lane
 * over channels) one thread does the same sequential loop; 32-lane sums use
 * vkvk_tree32_sum. Walsh-Hadamard butterflies run stage by stage in shared
 * memory: each output is the same single add/sub of the same two inputs as
 * in vkvk_fwht, so the results are identical.
 *
 * Kernels (one CUDA block each):
 *   decode         (token, layer, K/V): raw copy or reconstruction of one
 *                  token row (all heads) into a dense or paged destination
 *   enc_raw        (token, layer, K/V): raw-token copy into RAW_K/RAW_V
 *   enc_rot_mean   (head, layer): rotsign TOKEN per-channel means
 *   enc_rot_token  (visual token, layer): rotsign TOKEN signs + scales
 *   enc_rot_chan   (head, layer): rotsign CHANNEL signs, b vector, scales
 */
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

extern "C" {
#include "common/log.h"
}
#include "kernels/cuda/codec_cuda_internal.h"
#include "kernels/codec_paged.h"
#include "kernels/codec_math.h"
#include "vkv/codec_cuda.h"

/* Shared-memory floats a decode/encode block may use (32 KiB). */
#define VKVK_CU_SMEM_FLOATS 8192u
#define VKVK_CU_THREADS     256u

/* Turns a CUDA error into a VKV_E* code and logs where it happened. */
static int vkvk_cu_check(cudaError_t e, const char *what, const char *file, int line)
{
    if (e == cudaSuccess)
        return VKV_OK;
    VKV_ERROR("cuda: %s failed at %s:%d: %s", what, file, line, cudaGetErrorString(e));
    return e == cudaErrorMemoryAllocation ? VKV_ENOMEM : VKV_EIO;
}
#define VKVK_CU(call) vkvk_cu_check((call), #call, __FILE__, __LINE__)

/* Header fields the kernels need, passed by value. */
struct vkvk_cu_blk {
    uint32_t layers, heads, hd, tokens, n_ranges;
    uint32_t g[2];
    uint8_t rule, dtype, iters, mode[2];
    uint32_t rstart[VKV_BLOCK_MAX_RANGES], rlen[VKV_BLOCK_MAX_RANGES];
    uint64_t off[VKV_SEC_COUNT];
    uint64_t raw_layer, bits_layer, lev_layer[2];
    uint32_t nv; /* visual tokens */
};

/* Where decoded token t of a layer goes (dense strides or a block table). */
struct vkvk_cu_dst {
    uint16_t *const *k; /* device array of layer bases */
    uint16_t *const *v;
    uint64_t ts, hs;                 /* dense token stride; head stride (both) */
    const int32_t *table;            /* device slice of the block table, or NULL */
    uint64_t page_size, pos0, page0; /* page0: table index of table[0] */
    uint64_t page_elems, row_elems;  /* page stride, slot stride */
    uint32_t skip;                   /* tokens [0, skip) are not written */
};

/* Encoder source and scratch. */
struct vkvk_cu_src {
    const uint16_t *const *k; /* device array of layer bases */
    const uint16_t *const *v;
    uint64_t ts, hs;
    const uint32_t *vt; /* visual token numbers in block order */
    int *flag;          /* set to 1 on a non-finite visual element */
    float *ascr;        /* rotsign CHANNEL refinement: [layers][heads][nv] */
};

/* Fills the kernel view of a validated header h with layout L. */
static void vkvk_cu_blk_of(const vkv_block_header *h, const vkvk_layout *L, vkvk_cu_blk *b)
{
    memset(b, 0, sizeof(*b));
    b->layers = h->layers;
    b->heads = h->kv_heads;
    b->hd = h->head_dim;
    b->tokens = h->tokens;
    b->n_ranges = h->n_ranges;
    b->g[0] = h->k_group;
    b->g[1] = h->v_group;
    b->rule = h->rule;
    b->dtype = h->dtype;
    b->iters = h->iters;
    b->mode[0] = h->k_mode;
    b->mode[1] = h->v_mode;
    for (uint32_t r = 0; r < h->n_ranges; r++) {
        b->rstart[r] = h->ranges[r].start;
        b->rlen[r] = h->ranges[r].len;
    }
    for (int s = 0; s < VKV_SEC_COUNT; s++)
        b->off[s] = L->off[s];
    b->raw_layer = L->raw_layer;
    b->bits_layer = L->bits_layer;
    b->lev_layer[0] = L->lev_layer[0];
    b->lev_layer[1] = L->lev_layer[1];
    b->nv = (uint32_t)L->n_vis;
}

/* ---- device helpers ---- */

/* Classifies token t: returns 1 for a visual token (its visual number in
 * *vis and its CHANNEL group number for group size g in *grp), else 0 with
 * its raw number in *raw. */
__device__ static inline int vkvk_cu_tok(const vkvk_cu_blk &b, uint32_t t, uint32_t g,
                                         uint64_t *vis, uint64_t *raw, uint64_t *grp)
{
    uint64_t before = 0, gb = 0;
    for (uint32_t r = 0; r < b.n_ranges; r++) {
        uint32_t s = b.rstart[r], n = b.rlen[r];
        if (t < s)
            break;
        if (t < s + n) {
            *vis = before + (t - s);
            *grp = gb + (t - s) / g;
            return 1;
        }
        before += n;
        gb += (n + g - 1u) / g;
    }
    *raw = t - before;
    return 0;
}

/* Loads 8 little-endian 16-bit elements from p (any 2-byte alignment). */
__device__ static inline void vkvk_cu_ld8(const void *p, uint16_t v[8])
{
    if (((uintptr_t)p & 15u) == 0) {
        uint4 q = *(const uint4 *)p;
        memcpy(v, &q, 16);
    } else {
        const uint16_t *s = (const uint16_t *)p;
        for (int k = 0; k < 8; k++)
            v[k] = s[k];
    }
}

/* Stores 8 16-bit elements at p (any 2-byte alignment). */
__device__ static inline void vkvk_cu_st8(void *p, const uint16_t v[8])
{
    if (((uintptr_t)p & 15u) == 0) {
        uint4 q;
        memcpy(&q, v, 16);
        *(uint4 *)p = q;
    } else {
        uint16_t *d = (uint16_t *)p;
        for (int k = 0; k < 8; k++)
            d[k] = v[k];
    }
}

/* Loads one 16-bit little-endian value from block memory bytewise. */
__device__ static inline uint16_t vkvk_cu_ld16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

/* In-place vkvk_fwht of nh rows of hd floats at x (shared memory), all
 * threads of the block cooperating; ends with a barrier. */
__device__ static void vkvk_cu_fwht(float *x, uint32_t nh, uint32_t hd)
{
    uint32_t half = hd / 2u, np = nh * half;
    for (uint32_t len = 1; len < hd; len <<= 1) {
        for (uint32_t p = threadIdx.x; p < np; p += blockDim.x) {
            uint32_t hh = p / half, q = p % half;
            uint32_t i = hh * hd + (q / len) * (2u * len) + q % len;
            float a = x[i], c = x[i + len];
            x[i] = a + c;
            x[i + len] = a - c;
        }
        __syncthreads();
    }
}

/* Element offset of token t's head 0 from its layer base. */
__device__ static inline uint64_t vkvk_cu_off(const vkvk_cu_dst &m, uint32_t t)
{
    if (m.table == NULL)
        return (uint64_t)t * m.ts;
    uint64_t p = m.pos0 + t;
    return (uint64_t)m.table[p / m.page_size - m.page0] * m.page_elems +
           (p % m.page_size) * m.row_elems;
}

/* Heads per shared-memory pass for rows of hd floats plus `extra` each. */
__host__ __device__ static inline uint32_t vkvk_cu_chunk(uint32_t heads, uint32_t hd,
                                                         uint32_t extra)
{
    uint32_t c = VKVK_CU_SMEM_FLOATS / (hd + extra);
    if (c < 1u)
        c = 1u;
    return c < heads ? c : heads;
}

/* ---- decode ---- */

/* Decodes token blockIdx.x of layer blockIdx.y, tensor blockIdx.z (0 K,
 * 1 V) of block `in` into m. Mirrors vkvk_decode_tensor + the reference
 * dec_* kernels. */
__global__ void vkvk_cu_decode(const uint8_t *in, vkvk_cu_blk b, vkvk_cu_dst m)
{
    extern __shared__ float sm[];
    const uint32_t t = blockIdx.x, l = blockIdx.y, s = blockIdx.z;
    if (t < m.skip)
        return; /* the whole thread block: no barrier is reached */
    const uint32_t heads = b.heads, hd = b.hd, oct = hd / 8u, n = heads * oct;
    const uint64_t row = (uint64_t)hd * 2u, brow = (uint64_t)heads * oct;
    const int dt = b.dtype;
    const uint8_t *raw = in + b.off[VKV_SEC_RAW_K + s] + l * b.raw_layer;
    const uint8_t *bits = in + b.off[VKV_SEC_BITS_K + s] + l * b.bits_layer;
    const uint8_t *lev = in + b.off[VKV_SEC_LEV_K + s] + l * b.lev_layer[s];
    uint16_t *o = (s ? m.v : m.k)[l] + vkvk_cu_off(m, t);
    const uint8_t mode = b.mode[s];
    const uint32_t g = b.g[s];
    uint64_t vis = 0, rawi = 0, grp = 0;
    uint16_t x[8], lo[8], hi[8];
    if (!vkvk_cu_tok(b, t, g, &vis, &rawi, &grp)) {
        for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) {
            uint32_t h = i / oct, c = i % oct;
            vkvk_cu_ld8(raw + ((rawi * heads + h) * hd + 8u * c) * 2u, x);
            vkvk_cu_st8(o + h * m.hs + 8u * c, x);
        }
        return;
    }
    const uint8_t *bt = bits + vis * brow;
    if (b.rule == VKV_RULE_ROTSIGN) {
        const uint32_t sb = g / 8u;
        const uint8_t *scl = lev + heads * row + vis * heads * sb;
        if (mode == VKV_GROUP_CHANNEL) {
            for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) {
                uint32_t h = i / oct, c = i % oct;
                float A = vkvk_rot_scale_get(scl + h * sb, (int)g, dt);
                unsigned byte = bt[h * oct + c];
                vkvk_cu_ld8(lev + h * row + 16u * c, lo);
                for (int k = 0; k < 8; k++) {
                    float p = A * vkvk_to_f32(lo[k], dt);
                    x[k] = vkvk_rot_out(((byte >> k) & 1u) ? p : -p, dt);
                }
                vkvk_cu_st8(o + h * m.hs + 8u * c, x);
            }
            return;
        }
        float fenc, fdec;
        vkvk_rot_factors(hd, &fenc, &fdec);
        const uint32_t hc = vkvk_cu_chunk(heads, hd, 0);
        for (uint32_t h0 = 0; h0 < heads; h0 += hc) {
            uint32_t nh = heads - h0 < hc ? heads - h0 : hc;
            for (uint32_t i = threadIdx.x; i < nh * hd; i += blockDim.x) {
                uint32_t hh = i / hd, d = i % hd;
                sm[i] = ((bt[(h0 + hh) * oct + d / 8u] >> (d & 7u)) & 1u) ? 1.0f : -1.0f;
            }
            __syncthreads();
            vkvk_cu_fwht(sm, nh, hd);
            for (uint32_t i = threadIdx.x; i < nh * oct; i += blockDim.x) {
                uint32_t hh = i / oct, c = i % oct, h = h0 + hh;
                float cc = vkvk_rot_scale_get(scl + h * sb, (int)g, dt) * fdec;
                vkvk_cu_ld8(lev + h * row + 16u * c, lo);
                for (uint32_t k = 0; k < 8; k++) {
                    uint32_t d = 8u * c + k;
                    float p = cc * sm[hh * hd + d];
                    if (vkvk_rot_neg(d))
                        p = -p;
                    x[k] = vkvk_rot_out(p + vkvk_to_f32(lo[k], dt), dt);
                }
                vkvk_cu_st8(o + h * m.hs + 8u * c, x);
            }
            __syncthreads();
        }
        return;
    }
    if (mode == VKV_GROUP_CHANNEL) {
        const uint8_t *lv = lev + grp * heads * 2u * row;
        for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) {
            uint32_t h = i / oct, c = i % oct;
            unsigned byte = bt[h * oct + c];
            const uint8_t *pl = lv + (uint64_t)h * 4u * hd + 16u * c;
            vkvk_cu_ld8(pl, lo);
            vkvk_cu_ld8(pl + 2u * hd, hi);
            for (int k = 0; k < 8; k++)
                x[k] = ((byte >> k) & 1u) ? hi[k] : lo[k];
            vkvk_cu_st8(o + h * m.hs + 8u * c, x);
        }
        return;
    }
    const uint32_t ng = hd / g;
    const uint8_t *lv = lev + vis * heads * ng * 4u;
    for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) {
        uint32_t h = i / oct, c = i % oct;
        unsigned byte = bt[h * oct + c];
        const uint8_t *pair = lv + ((uint64_t)h * ng + (8u * c) / g) * 4u; /* G % 8 == 0 */
        uint16_t l0 = vkvk_cu_ld16(pair), h0 = vkvk_cu_ld16(pair + 2);
        for (int k = 0; k < 8; k++)
            x[k] = ((byte >> k) & 1u) ? h0 : l0;
        vkvk_cu_st8(o + h * m.hs + 8u * c, x);
    }
}

/* ---- encode ---- */

/* Copies raw token blockIdx.x of layer blockIdx.y, tensor blockIdx.z into
 * the RAW section of out; visual tokens return at once. */
__global__ void vkvk_cu_enc_raw(uint8_t *out, vkvk_cu_blk b, vkvk_cu_src src)
{
    const uint32_t t = blockIdx.x, l = blockIdx.y, s = blockIdx.z;
    uint64_t vis, rawi = 0, grp;
    if (vkvk_cu_tok(b, t, 1u, &vis, &rawi, &grp))
        return;
    const uint32_t heads = b.heads, hd = b.hd, oct = hd / 8u;
    const uint16_t *in = (s ? src.v : src.k)[l] + (uint64_t)t * src.ts;
    uint8_t *raw = out + b.off[VKV_SEC_RAW_K + s] + l * b.raw_layer;
    uint16_t x[8];
    for (uint32_t i = threadIdx.x; i < heads * oct; i += blockDim.x) {
        uint32_t h = i / oct, c = i % oct;
        vkvk_cu_ld8(in + h * src.hs + 8u * c, x);
        vkvk_cu_st8(raw + ((rawi * heads + h) * hd + 8u * c) * 2u, x);
    }
}

/* rotsign TOKEN, head blockIdx.x of layer blockIdx.y of tensor s: the mean
 * of every channel over the visual tokens (sequential in token order, as
 * the reference), rounded to the dtype and stored as the LEV vector. */
__global__ void vkvk_cu_enc_rot_mean(uint8_t *out, vkvk_cu_blk b, vkvk_cu_src src, uint32_t s)
{
    const uint32_t h = blockIdx.x, l = blockIdx.y, hd = b.hd;
    const int dt = b.dtype;
    const uint16_t *in = (s ? src.v : src.k)[l] + h * src.hs;
    uint8_t *vec = out + b.off[VKV_SEC_LEV_K + s] + l * b.lev_layer[s] + (uint64_t)h * hd * 2u;
    for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x) {
        float sum = 0.0f;
        int bad = 0;
        for (uint32_t j = 0; j < b.nv; j++) {
            uint16_t x = in[(uint64_t)src.vt[j] * src.ts + d];
            bad |= vkvk_nonfinite(x, dt);
            sum += vkvk_to_f32(x, dt);
        }
        if (bad)
            *src.flag = 1;
        uint16_t m = vkvk_from_f32(sum / (float)b.nv, dt);
        vec[2u * d] = (uint8_t)m;
        vec[2u * d + 1u] = (uint8_t)(m >> 8);
    }
}

/* rotsign TOKEN, visual token blockIdx.x of layer blockIdx.y of tensor s
 * (all heads): centre with the stored mean, flip the fixed signs, rotate,
 * keep the signs and the scale sum|z| * fenc (32-lane order). */
__global__ void vkvk_cu_enc_rot_token(uint8_t *out, vkvk_cu_blk b, vkvk_cu_src src, uint32_t s)
{
    extern __shared__ float sm[];
    const uint32_t j = blockIdx.x, l = blockIdx.y, heads = b.heads, hd = b.hd, oct = hd / 8u;
    const int dt = b.dtype;
    const uint32_t g = b.g[s], sb = g / 8u;
    const uint64_t row = (uint64_t)hd * 2u;
    const uint16_t *in = (s ? src.v : src.k)[l] + (uint64_t)src.vt[j] * src.ts;
    uint8_t *bits = out + b.off[VKV_SEC_BITS_K + s] + l * b.bits_layer + (uint64_t)j * heads * oct;
    const uint8_t *lev = out + b.off[VKV_SEC_LEV_K + s] + l * b.lev_layer[s];
    uint8_t *scl = (uint8_t *)lev + heads * row + (uint64_t)j * heads * sb;
    float fenc, fdec;
    vkvk_rot_factors(hd, &fenc, &fdec);
    const uint32_t hc = vkvk_cu_chunk(heads, hd, VKVK_TOKEN_LANES);
    for (uint32_t h0 = 0; h0 < heads; h0 += hc) {
        uint32_t nh = heads - h0 < hc ? heads - h0 : hc;
        float *z = sm, *lanes = sm + nh * hd;
        for (uint32_t i = threadIdx.x; i < nh * hd; i += blockDim.x) {
            uint32_t hh = i / hd, d = i % hd, h = h0 + hh;
            float y = vkvk_to_f32(in[h * src.hs + d], dt) -
                      vkvk_to_f32(vkvk_cu_ld16(lev + h * row + 2u * d), dt);
            z[i] = vkvk_rot_neg(d) ? -y : y;
        }
        __syncthreads();
        vkvk_cu_fwht(z, nh, hd);
        for (uint32_t i = threadIdx.x; i < nh * oct; i += blockDim.x) {
            uint32_t hh = i / oct, c = i % oct;
            unsigned byte = 0;
            for (unsigned k = 0; k < 8; k++)
                byte |= (unsigned)(z[hh * hd + 8u * c + k] >= 0.0f) << k;
            bits[(h0 + hh) * oct + c] = (uint8_t)byte;
        }
        for (uint32_t i = threadIdx.x; i < nh * VKVK_TOKEN_LANES; i += blockDim.x) {
            uint32_t hh = i / VKVK_TOKEN_LANES, L = i % VKVK_TOKEN_LANES;
            float acc = 0.0f;
            for (uint32_t d = L; d < hd; d += VKVK_TOKEN_LANES)
                acc += fabsf(z[hh * hd + d]);
            lanes[i] = acc;
        }
        __syncthreads();
        for (uint32_t hh = threadIdx.x; hh < nh; hh += blockDim.x)
            vkvk_rot_scale_put(scl + (h0 + hh) * sb,
                               vkvk_tree32_sum(lanes + hh * VKVK_TOKEN_LANES) * fenc, (int)g, dt);
        __syncthreads();
    }
}

/* sum_d |x[d]| * b[d] in the reference's 32-lane order (vkvk_ref_dot32 of
 * u = |x| and b). */
__device__ static float vkvk_cu_dot_u(const uint16_t *x, const float *bv, uint32_t hd, int dt)
{
    float s[VKVK_TOKEN_LANES];
    for (int k = 0; k < VKVK_TOKEN_LANES; k++)
        s[k] = 0.0f;
    for (uint32_t d = 0; d < hd; d++)
        s[d % VKVK_TOKEN_LANES] += fabsf(vkvk_to_f32(x[d], dt)) * bv[d];
    return vkvk_tree32_sum(s);
}

/* vkvk_ref_dot32(b, b). */
__device__ static float vkvk_cu_dot_bb(const float *bv, uint32_t hd)
{
    float s[VKVK_TOKEN_LANES];
    for (int k = 0; k < VKVK_TOKEN_LANES; k++)
        s[k] = 0.0f;
    for (uint32_t d = 0; d < hd; d++)
        s[d % VKVK_TOKEN_LANES] += bv[d] * bv[d];
    return vkvk_tree32_sum(s);
}

/* rotsign CHANNEL, head blockIdx.x of layer blockIdx.y of tensor s: signs
 * of the unrotated values, the rank-1 magnitude b (refined `iters` times)
 * normalised by its max, and one scale per token. Shared memory: hd + 4
 * floats. */
__global__ void vkvk_cu_enc_rot_chan(uint8_t *out, vkvk_cu_blk b, vkvk_cu_src src, uint32_t s)
{
    extern __shared__ float sm[];
    float *bv = sm, *red = sm + b.hd; /* red[0] bb, red[1] aa, red[2] bm */
    const uint32_t h = blockIdx.x, l = blockIdx.y, heads = b.heads, hd = b.hd, oct = hd / 8u;
    const uint32_t nv = b.nv, g = b.g[s], sb = g / 8u;
    const int dt = b.dtype;
    const uint64_t row = (uint64_t)hd * 2u, brow = (uint64_t)heads * oct;
    const uint16_t *in = (s ? src.v : src.k)[l] + h * src.hs;
    uint8_t *bits = out + b.off[VKV_SEC_BITS_K + s] + l * b.bits_layer + h * oct;
    uint8_t *lev = out + b.off[VKV_SEC_LEV_K + s] + l * b.lev_layer[s];
    uint8_t *vec = lev + h * row, *scl = lev + heads * row + h * sb;
    float *a = src.ascr ? src.ascr + ((uint64_t)l * heads + h) * nv : NULL;
    for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x) {
        float sum = 0.0f;
        int bad = 0;
        for (uint32_t j = 0; j < nv; j++) {
            uint16_t x = in[(uint64_t)src.vt[j] * src.ts + d];
            bad |= vkvk_nonfinite(x, dt);
            sum += fabsf(vkvk_to_f32(x, dt));
        }
        if (bad)
            *src.flag = 1;
        bv[d] = sum / (float)nv;
    }
    for (uint64_t i = threadIdx.x; i < (uint64_t)nv * oct; i += blockDim.x) {
        uint64_t j = i / oct, c = i % oct;
        const uint16_t *x = in + (uint64_t)src.vt[j] * src.ts + 8u * c;
        unsigned byte = 0;
        for (unsigned k = 0; k < 8; k++)
            byte |= (unsigned)(vkvk_to_f32(x[k], dt) >= 0.0f) << k;
        bits[j * brow + c] = (uint8_t)byte;
    }
    __syncthreads();
    for (unsigned it = 0; it < b.iters && a != NULL; it++) {
        if (threadIdx.x == 0)
            red[0] = vkvk_cu_dot_bb(bv, hd);
        __syncthreads();
        const float bb = red[0];
        for (uint32_t j = threadIdx.x; j < nv; j += blockDim.x)
            a[j] = bb > 0.0f ? vkvk_cu_dot_u(in + (uint64_t)src.vt[j] * src.ts, bv, hd, dt) / bb
                             : 0.0f;
        __syncthreads();
        if (threadIdx.x == 0) {
            float aa = 0.0f;
            for (uint32_t j = 0; j < nv; j++)
                aa += a[j] * a[j];
            red[1] = aa;
        }
        __syncthreads();
        const float aa = red[1];
        for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x) {
            float q = 0.0f;
            for (uint32_t j = 0; j < nv; j++)
                q += fabsf(vkvk_to_f32(in[(uint64_t)src.vt[j] * src.ts + d], dt)) * a[j];
            bv[d] = aa > 0.0f ? q / aa : 0.0f;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        float bm = 0.0f;
        for (uint32_t d = 0; d < hd; d++)
            bm = vkvk_maxf(bv[d], bm);
        red[2] = bm;
    }
    __syncthreads();
    const float bm = red[2];
    for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x) {
        uint16_t q = vkvk_from_f32(bm > 0.0f ? bv[d] / bm : 0.0f, dt);
        vec[2u * d] = (uint8_t)q;
        vec[2u * d + 1u] = (uint8_t)(q >> 8);
        bv[d] = vkvk_to_f32(q, dt);
    }
    __syncthreads();
    if (threadIdx.x == 0)
        red[0] = vkvk_cu_dot_bb(bv, hd);
    __syncthreads();
    const float bb = red[0];
    for (uint32_t j = threadIdx.x; j < nv; j += blockDim.x) {
        float aj =
            bb > 0.0f ? vkvk_cu_dot_u(in + (uint64_t)src.vt[j] * src.ts, bv, hd, dt) / bb : 0.0f;
        vkvk_rot_scale_put(scl + (uint64_t)j * heads * sb, aj, (int)g, dt);
    }
}

/* ---- host API ---- */

extern "C" int vkv_cuda_available(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* clear the sticky-free error state */
        return 0;
    }
    return n > 0;
}

/* Rounds n up to a multiple of 16. */
static size_t vkvk_cu_al(size_t n)
{
    return (n + 15u) & ~(size_t)15u;
}

/* Reads and validates the header of a device block (see vkv_cuda_decode);
 * fills *h and *L. With VKV_DECODE_VERIFY copies the block to a temporary
 * host buffer (freed here) and checks its payload checksum. */
static int vkvk_cu_header(const void *block, size_t size, const vkv_block_header *hdr,
                          unsigned flags, cudaStream_t st, vkv_block_header *h, vkvk_layout *L)
{
    vkv_block_header tmp;
    int rc;
    if (block == NULL || (flags & ~VKV_DECODE_VERIFY) != 0)
        return VKV_EINVAL;
    if (size < VKV_BLOCK_HEADER_SIZE)
        return VKV_ETRUNC;
    if (hdr == NULL) {
        if ((rc = VKVK_CU(cudaMemcpyAsync(&tmp, block, sizeof tmp, cudaMemcpyDeviceToHost, st))) ||
            (rc = VKVK_CU(cudaStreamSynchronize(st))))
            return rc;
        hdr = &tmp;
    }
    if ((rc = vkv_block_check(hdr, size, 0, h)) != VKV_OK)
        return rc;
    if (h->rule == VKV_RULE_TC)
        return VKV_ENOTSUP; /* rule 5 has a CPU decoder only (docs/BLOCK_FORMAT.md) */
    if (flags & VKV_DECODE_VERIFY) {
        uint8_t *buf = (uint8_t *)malloc((size_t)h->total_size);
        if (buf == NULL)
            return VKV_ENOMEM;
        rc =
            VKVK_CU(cudaMemcpyAsync(buf, block, (size_t)h->total_size, cudaMemcpyDeviceToHost, st));
        if (rc == VKV_OK)
            rc = VKVK_CU(cudaStreamSynchronize(st));
        if (rc == VKV_OK)
            rc = vkv_block_check(buf, (size_t)h->total_size, VKV_DECODE_VERIFY, NULL);
        if (rc == VKV_OK && memcmp(buf, hdr, sizeof *hdr) != 0)
            rc = VKV_ECORRUPT; /* the caller's header is not this block's */
        free(buf);
        if (rc != VKV_OK)
            return rc;
    }
    return vkvk_layout_of(h, L) == 0 ? VKV_OK : VKV_ECORRUPT;
}

/* Uploads the layer pointer arrays (and an optional table slice of `ntab`
 * int32) into one stream-ordered device allocation *scr; fills m. */
static int vkvk_cu_decode_run(const void *block, const vkv_block_header *h, const vkvk_layout *L,
                              void *const *k, void *const *v, vkvk_cu_dst *m, const int32_t *tab,
                              size_t ntab, cudaStream_t st)
{
    const size_t pb = (size_t)h->layers * sizeof(void *);
    for (uint32_t l = 0; l < h->layers; l++)
        if (k[l] == NULL || v[l] == NULL)
            return VKV_EINVAL;
    size_t total = 2u * vkvk_cu_al(pb) + ntab * sizeof(int32_t);
    uint8_t *host = (uint8_t *)malloc(total), *dev = NULL;
    if (host == NULL)
        return VKV_ENOMEM;
    memcpy(host, k, pb);
    memcpy(host + vkvk_cu_al(pb), v, pb);
    if (ntab)
        memcpy(host + 2u * vkvk_cu_al(pb), tab, ntab * sizeof(int32_t));
    int rc = VKVK_CU(cudaMallocAsync((void **)&dev, total, st));
    if (rc == VKV_OK) {
        /* pageable source: staged before the call returns, so `host` may go */
        rc = VKVK_CU(cudaMemcpyAsync(dev, host, total, cudaMemcpyHostToDevice, st));
        m->k = (uint16_t *const *)dev;
        m->v = (uint16_t *const *)(dev + vkvk_cu_al(pb));
        m->table = ntab ? (const int32_t *)(dev + 2u * vkvk_cu_al(pb)) : NULL;
        vkvk_cu_blk b;
        vkvk_cu_blk_of(h, L, &b);
        int rot_tok = h->rule == VKV_RULE_ROTSIGN &&
                      (h->k_mode == VKV_GROUP_TOKEN || h->v_mode == VKV_GROUP_TOKEN);
        size_t smem =
            rot_tok ? (size_t)vkvk_cu_chunk(h->kv_heads, h->head_dim, 0) * h->head_dim * 4u : 0;
        if (rc == VKV_OK) {
            dim3 grid(h->tokens, h->layers, 2);
            vkvk_cu_decode<<<grid, VKVK_CU_THREADS, smem, st>>>((const uint8_t *)block, b, *m);
            rc = VKVK_CU(cudaGetLastError());
        }
        int rc2 = VKVK_CU(cudaFreeAsync(dev, st));
        if (rc == VKV_OK)
            rc = rc2;
    }
    free(host);
    return rc;
}

extern "C" int vkv_cuda_decode(const void *block, size_t size, const vkv_block_header *hdr,
                               unsigned flags, const vkv_kv_dst *dst, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    vkv_block_header h;
    vkvk_layout L;
    int rc = vkvk_cu_header(block, size, hdr, flags, st, &h, &L);
    if (rc != VKV_OK)
        return rc;
    if (dst == NULL || dst->k == NULL || dst->v == NULL)
        return VKV_EINVAL;
    if ((rc = vkvk_check_dst(&h, &dst->geom, dst->ident, 1)) != VKV_OK)
        return rc;
    vkvk_cu_dst m;
    memset(&m, 0, sizeof m);
    m.ts = dst->token_stride;
    m.hs = dst->head_stride;
    return vkvk_cu_decode_run(block, &h, &L, dst->k, dst->v, &m, NULL, 0, st);
}

extern "C" int vkv_cuda_decode_paged(const void *block, size_t size, const vkv_block_header *hdr,
                                     unsigned flags, const vkv_paged_dst *dst, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    vkv_block_header h;
    vkvk_layout L;
    vkvk_paged_geom g;
    int rc = vkvk_cu_header(block, size, hdr, flags, st, &h, &L);
    if (rc != VKV_OK)
        return rc;
    if (dst == NULL)
        return VKV_EINVAL;
    if ((rc = vkvk_check_dst(&h, &dst->geom, dst->ident, 0)) != VKV_OK)
        return rc;
    if ((rc = vkvk_paged_geom_of(&h, dst, &g)) != VKV_OK)
        return rc;
    if (g.p0 > g.p1)
        return VKV_OK; /* every token skipped */
    vkvk_cu_dst m;
    memset(&m, 0, sizeof m);
    m.hs = g.head_stride;
    m.page_size = dst->page_size;
    m.pos0 = dst->first_pos;
    m.page0 = g.p0;
    m.page_elems = g.page_stride;
    m.row_elems = g.slot_stride;
    m.skip = g.skip;
    return vkvk_cu_decode_run(block, &h, &L, dst->k_cache, dst->v_cache, &m,
                              dst->block_table + g.p0, (size_t)(g.p1 - g.p0 + 1u), st);
}

/* Launches the encoder kernels of every section into `out` (device). */
static int vkvk_cu_encode_launch(uint8_t *out, const vkv_block_header *h, const vkvk_layout *L,
                                 const vkvk_cu_src &src, cudaStream_t st)
{
    vkvk_cu_blk b;
    vkvk_cu_blk_of(h, L, &b);
    if (L->n_raw) {
        dim3 grid(h->tokens, h->layers, 2);
        vkvk_cu_enc_raw<<<grid, VKVK_CU_THREADS, 0, st>>>(out, b, src);
    }
    for (uint32_t s = 0; s < 2 && L->n_vis; s++) {
        uint8_t mode = s ? h->v_mode : h->k_mode;
        if (mode == VKV_GROUP_TOKEN) {
            dim3 gm(h->kv_heads, h->layers), gt((uint32_t)L->n_vis, h->layers);
            vkvk_cu_enc_rot_mean<<<gm, 128, 0, st>>>(out, b, src, s);
            size_t smem = (size_t)vkvk_cu_chunk(h->kv_heads, h->head_dim, VKVK_TOKEN_LANES) *
                          (h->head_dim + VKVK_TOKEN_LANES) * 4u;
            vkvk_cu_enc_rot_token<<<gt, VKVK_CU_THREADS, smem, st>>>(out, b, src, s);
        } else {
            dim3 gc(h->kv_heads, h->layers);
            vkvk_cu_enc_rot_chan<<<gc, 128, (h->head_dim + 4u) * 4u, st>>>(out, b, src, s);
        }
    }
    /* Zero the alignment padding in front of each section. */
    uint64_t pos = VKV_BLOCK_HEADER_SIZE;
    for (int s = 0; s < VKV_SEC_COUNT; s++) {
        if (L->off[s] > pos) {
            int rc = VKVK_CU(cudaMemsetAsync(out + pos, 0, (size_t)(L->off[s] - pos), st));
            if (rc != VKV_OK)
                return rc;
        }
        pos = L->off[s] + L->size[s];
    }
    return VKVK_CU(cudaGetLastError());
}

extern "C" int vkv_cuda_encode(const vkv_shape *shape, const vkv_codec_spec *spec,
                               const vkv_kv_src *src, void *dst, size_t dst_size, unsigned flags,
                               void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    int rc = vkv_codec_check(shape, spec);
    if (rc != VKV_OK)
        return rc;
    if (spec->rule != VKV_RULE_ROTSIGN)
        return VKV_ENOTSUP;
    if (src == NULL || src->k == NULL || src->v == NULL || dst == NULL || (flags & ~VKV_CUDA_ASYNC))
        return VKV_EINVAL;
    vkv_block_header h;
    vkvk_layout L;
    if ((rc = vkvk_cuda_make_header(shape, spec, &h, &L)) != VKV_OK)
        return rc;
    if (dst_size < L.total)
        return VKV_ETRUNC;
    for (uint32_t l = 0; l < h.layers; l++)
        if (src->k[l] == NULL || src->v[l] == NULL)
            return VKV_EINVAL;
    const size_t pb = vkvk_cu_al((size_t)h.layers * sizeof(void *));
    const size_t vtb = vkvk_cu_al((size_t)L.n_vis * 4u);
    const int need_a =
        h.iters > 0 && (h.k_mode == VKV_GROUP_CHANNEL || h.v_mode == VKV_GROUP_CHANNEL);
    const size_t ab = need_a ? (size_t)h.layers * h.kv_heads * L.n_vis * 4u : 0;
    const size_t up = 2u * pb + vtb; /* uploaded part */
    const size_t total = up + 16u + ab;
    uint8_t *host = (uint8_t *)calloc(1, up), *dev = NULL;
    if (host == NULL)
        return VKV_ENOMEM;
    memcpy(host, src->k, (size_t)h.layers * sizeof(void *));
    memcpy(host + pb, src->v, (size_t)h.layers * sizeof(void *));
    uint32_t *vt = (uint32_t *)(host + 2u * pb), nv = 0;
    for (uint32_t r = 0; r < h.n_ranges; r++)
        for (uint32_t t = 0; t < h.ranges[r].len; t++)
            vt[nv++] = h.ranges[r].start + t;
    if ((rc = VKVK_CU(cudaMallocAsync((void **)&dev, total, st))) != VKV_OK) {
        free(host);
        return rc;
    }
    vkvk_cu_src s;
    s.k = (const uint16_t *const *)dev;
    s.v = (const uint16_t *const *)(dev + pb);
    s.ts = src->token_stride;
    s.hs = src->head_stride;
    s.vt = (const uint32_t *)(dev + 2u * pb);
    s.flag = (int *)(dev + up);
    s.ascr = need_a ? (float *)(dev + up + 16u) : NULL;
    uint8_t *out = (uint8_t *)dst;
    int flag = 0;
    rc = VKVK_CU(cudaMemcpyAsync(dev, host, up, cudaMemcpyHostToDevice, st));
    if (rc == VKV_OK)
        rc = VKVK_CU(cudaMemsetAsync(dev + up, 0, 16u, st));
    if (rc == VKV_OK)
        rc = vkvk_cu_encode_launch(out, &h, &L, s, st);
    h.header_xxh3 = XXH3_64bits(&h, sizeof h); /* both checksum fields zero */
    uint8_t *pay = NULL;
    if (rc == VKV_OK && !(flags & VKV_CUDA_ASYNC)) {
        pay = (uint8_t *)malloc((size_t)L.total);
        rc = pay ? VKV_OK : VKV_ENOMEM;
        if (rc == VKV_OK)
            rc = VKVK_CU(cudaMemcpyAsync(pay, out, (size_t)L.total, cudaMemcpyDeviceToHost, st));
        if (rc == VKV_OK)
            rc = VKVK_CU(cudaMemcpyAsync(&flag, s.flag, sizeof flag, cudaMemcpyDeviceToHost, st));
        if (rc == VKV_OK)
            rc = VKVK_CU(cudaStreamSynchronize(st));
        if (rc == VKV_OK && flag)
            rc = VKV_ENONFINITE;
        if (rc == VKV_OK)
            h.payload_xxh3 =
                XXH3_64bits(pay + VKV_BLOCK_HEADER_SIZE, (size_t)(L.total - VKV_BLOCK_HEADER_SIZE));
    }
    if (rc == VKV_OK)
        rc = VKVK_CU(cudaMemcpyAsync(out, &h, sizeof h, cudaMemcpyHostToDevice, st));
    if (rc == VKV_OK && !(flags & VKV_CUDA_ASYNC))
        rc = VKVK_CU(cudaStreamSynchronize(st)); /* `h` is on this stack */
    int rc2 = VKVK_CU(cudaFreeAsync(dev, st));
    free(pay);
    free(host);
    return rc != VKV_OK ? rc : rc2;
}

extern "C" int vkv_cuda_block_seal(void *block, size_t size, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    vkv_block_header h;
    vkvk_layout L;
    int rc = vkvk_cu_header(block, size, NULL, 0, st, &h, &L);
    if (rc != VKV_OK)
        return rc;
    uint8_t *buf = (uint8_t *)malloc((size_t)h.total_size);
    if (buf == NULL)
        return VKV_ENOMEM;
    rc = VKVK_CU(cudaMemcpyAsync(buf, block, (size_t)h.total_size, cudaMemcpyDeviceToHost, st));
    if (rc == VKV_OK)
        rc = VKVK_CU(cudaStreamSynchronize(st));
    if (rc == VKV_OK) {
        uint64_t x = XXH3_64bits(buf + VKV_BLOCK_HEADER_SIZE,
                                 (size_t)(h.total_size - VKV_BLOCK_HEADER_SIZE));
        rc = VKVK_CU(
            cudaMemcpyAsync((uint8_t *)block + 16, &x, sizeof x, cudaMemcpyHostToDevice, st));
        if (rc == VKV_OK)
            rc = VKVK_CU(cudaStreamSynchronize(st));
    }
    free(buf);
    return rc;
}
