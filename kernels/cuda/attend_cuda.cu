/*
 * kernels/cuda/attend_cuda.cu - vkv_cuda_attend (vkv/attend_cuda.h): the
 * CUDA twin of vkv_attend, over a block in device memory.
 *
 * One thread block per query row (query i, query head j; KV head j / gq).
 * Phase 1: the row's query, times the scale, into shared memory, and the
 *   per-rule query vector u (rotsign TOKEN keys: the sign-flipped query
 *   rotated by a cooperative FWHT; rotsign CHANNEL: q o b).
 * Phase 2: each thread scores whole tokens from their code bits (level
 *   rules: a select of the group's two levels per channel) or raw rows,
 *   applies the mask, and the block reduces max and sum of exp.
 * Phase 3: each thread owns channels and sums p_t times the token's value
 *   reconstructed from codes on the fly (rotsign: the sign-weighted sum,
 *   then b o acc or one FWHT of acc plus mf * P), never storing K or V.
 * The same definitions as the CPU reference (kernels/attend.c); the order of
 * the fp32 sums differs, so tests/gpu compares within rounding bounds.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "common/log.h"
}
#include "kernels/attend_internal.h"
#include "kernels/codec_math.h"
#include "vkv/attend_cuda.h"
#include "vkv/codec.h"

#define VKVK_CUA_THREADS 256u

/* Turns a CUDA error into a VKV_E* code and logs where it happened. */
static int vkvk_cua_check(cudaError_t e, const char *what, const char *file, int line)
{
    if (e == cudaSuccess)
        return VKV_OK;
    VKV_ERROR("cuda: %s failed at %s:%d: %s", what, file, line, cudaGetErrorString(e));
    return e == cudaErrorMemoryAllocation ? VKV_ENOMEM : VKV_EIO;
}
#define VKVK_CUA(call) vkvk_cua_check((call), #call, __FILE__, __LINE__)

/* What the kernel needs of the header and the call, by value. */
struct vkvk_cua_par {
    uint32_t heads, hd, T, nv, gq, n_heads, ng_k, ng_v;
    uint32_t kg, vg; /* groups, or scale bits (rotsign) */
    uint8_t rule, dtype, kmode, vmode, qdt, has_mask;
    uint64_t raw[2], bits[2], lev[2]; /* byte offsets of this layer's sections */
    float scale, fdec;
};

/* Unaligned little-endian 16-bit load. */
__device__ static inline uint16_t vkvk_cua_ld16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

/* Element d of a dtype row at p as a float. */
__device__ static inline float vkvk_cua_el(const uint8_t *p, uint32_t d, int dt)
{
    return vkvk_to_f32(vkvk_cua_ld16(p + 2u * d), dt);
}

/* Code bit of channel d in the bit row b. */
__device__ static inline int vkvk_cua_bit(const uint8_t *b, uint32_t d)
{
    return (b[d >> 3] >> (d & 7u)) & 1;
}

/* Block-wide reduction (max or sum) of v; every thread gets the result. */
__device__ static float vkvk_cua_reduce(float v, int is_max, float *red)
{
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, w) : v + w;
    }
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0)
        red[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (blockDim.x >> 5) ? red[lane] : (is_max ? -INFINITY : 0.0f);
        for (int o = 16; o > 0; o >>= 1) {
            float w = __shfl_xor_sync(0xffffffffu, v, o);
            v = is_max ? fmaxf(v, w) : v + w;
        }
        if (lane == 0)
            red[32] = v;
    }
    __syncthreads();
    return red[32];
}

/* Cooperative unnormalised FWHT of x[0..n) in shared memory. */
__device__ static void vkvk_cua_fwht(float *x, uint32_t n)
{
    for (uint32_t len = 1; len < n; len <<= 1) {
        __syncthreads();
        for (uint32_t idx = threadIdx.x; idx < n / 2u; idx += blockDim.x) {
            uint32_t i = (idx / len) * 2u * len + idx % len;
            float a = x[i], b = x[i + len];
            x[i] = a + b;
            x[i + len] = a - b;
        }
    }
    __syncthreads();
}

/* One query row per block; see the file comment. sc: [rows][T] scratch,
 * tok: [T] score index -> block token, kgrp / vgrp: [nv] visual token ->
 * its CHANNEL group of K / V (unused for other modes). Shared memory: 3 * hd + 40 floats. */
__global__ static void vkvk_cua_attend(const uint8_t *blk, vkvk_cua_par P, const void *q,
                                       const uint8_t *mask, float *out, float *lse, float *scg,
                                       const uint32_t *tok, const uint32_t *kgrp,
                                       const uint32_t *vgrp)
{
    extern __shared__ float sm[];
    const uint32_t hd = P.hd, T = P.T, nv = P.nv, heads = P.heads;
    const uint32_t row = blockIdx.x, iq = row / P.n_heads, qh = row % P.n_heads, h = qh / P.gq;
    const int dt = P.dtype;
    float *qs = sm, *u = sm + hd, *acc = sm + 2u * hd, *red = sm + 3u * hd;
    float *sc = scg + (size_t)row * T;
    for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x) {
        size_t i = (size_t)row * hd + d;
        float x = P.qdt == VKV_ATTEND_F32 ? ((const float *)q)[i]
                                          : vkvk_to_f32(((const uint16_t *)q)[i], P.qdt);
        qs[d] = x * P.scale;
    }
    __syncthreads();
    const uint8_t *levk = blk + P.lev[0], *bitk = blk + P.bits[0];
    float base = 0.0f;
    if (P.rule == VKV_RULE_ROTSIGN && nv > 0) {
        const uint8_t *vec = levk + (size_t)h * hd * 2u;
        float part = 0.0f;
        for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x) {
            float m = vkvk_cua_el(vec, d, dt);
            if (P.kmode == VKV_GROUP_TOKEN) {
                part += qs[d] * m;
                u[d] = vkvk_rot_neg(d) ? -qs[d] : qs[d];
            } else {
                u[d] = qs[d] * m;
            }
        }
        base = vkvk_cua_reduce(part, 0, red);
        if (P.kmode == VKV_GROUP_TOKEN)
            vkvk_cua_fwht(u, hd);
        if (P.kmode != VKV_GROUP_TOKEN)
            base = 0.0f;
    }
    __syncthreads();
    /* phase 2: scores */
    float mx = -INFINITY;
    for (uint32_t i = threadIdx.x; i < T; i += blockDim.x) {
        float s = 0.0f;
        if (i < nv) {
            const uint8_t *b = bitk + ((size_t)i * heads + h) * (hd / 8u);
            if (P.rule == VKV_RULE_ROTSIGN) {
                const uint32_t sb = P.kg / 8u;
                const uint8_t *scl = levk + (size_t)heads * hd * 2u + ((size_t)i * heads + h) * sb;
                float dot = 0.0f;
                for (uint32_t d = 0; d < hd; d++)
                    dot += vkvk_cua_bit(b, d) ? u[d] : -u[d];
                float c = vkvk_rot_scale_get(scl, (int)P.kg, dt);
                if (P.kmode == VKV_GROUP_TOKEN)
                    c *= P.fdec;
                s = base + c * dot;
            } else if (P.kmode == VKV_GROUP_CHANNEL) {
                const uint8_t *lo = levk + ((size_t)kgrp[i] * heads + h) * 4u * hd,
                              *hi = lo + 2u * hd;
                for (uint32_t d = 0; d < hd; d++)
                    s += qs[d] * vkvk_cua_el(vkvk_cua_bit(b, d) ? hi : lo, d, dt);
            } else {
                const uint8_t *lv = levk + ((size_t)i * heads + h) * P.ng_k * 4u;
                for (uint32_t d = 0; d < hd; d++)
                    s += qs[d] * vkvk_cua_el(lv + (d / P.kg) * 4u, vkvk_cua_bit(b, d), dt);
            }
        } else {
            const uint8_t *x = blk + P.raw[0] + (((size_t)(i - nv)) * heads + h) * hd * 2u;
            for (uint32_t d = 0; d < hd; d++)
                s += qs[d] * vkvk_cua_el(x, d, dt);
        }
        if (P.has_mask && mask[(size_t)iq * T + tok[i]] == 0)
            s = -INFINITY;
        sc[i] = s;
        mx = fmaxf(mx, s);
    }
    mx = vkvk_cua_reduce(mx, 1, red);
    float part = 0.0f;
    for (uint32_t i = threadIdx.x; i < T; i += blockDim.x) {
        float p = mx == -INFINITY || sc[i] == -INFINITY ? 0.0f : expf(sc[i] - mx);
        sc[i] = p;
        part += p;
    }
    float sum = vkvk_cua_reduce(part, 0, red);
    /* phase 3: values (sc is complete: the reduction synchronised) */
    const uint8_t *levv = blk + P.lev[1], *bitv = blk + P.bits[1];
    const int rot = P.rule == VKV_RULE_ROTSIGN;
    float Pv = 0.0f;
    for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x) {
        float a = 0.0f, as = 0.0f;
        Pv = 0.0f;
        for (uint32_t i = 0; i < T; i++) {
            float p = sc[i];
            if (p == 0.0f)
                continue;
            if (i < nv) {
                const uint8_t *b = bitv + ((size_t)i * heads + h) * (hd / 8u);
                int bit = vkvk_cua_bit(b, d);
                if (rot) {
                    const uint32_t sb = P.vg / 8u;
                    const uint8_t *scl =
                        levv + (size_t)heads * hd * 2u + ((size_t)i * heads + h) * sb;
                    float w = p * vkvk_rot_scale_get(scl, (int)P.vg, dt);
                    as += bit ? w : -w;
                    Pv += p;
                } else if (P.vmode == VKV_GROUP_CHANNEL) {
                    const uint8_t *lo = levv + ((size_t)vgrp[i] * heads + h) * 4u * hd;
                    a += p * vkvk_cua_el(bit ? lo + 2u * hd : lo, d, dt);
                } else {
                    const uint8_t *lv = levv + ((size_t)i * heads + h) * P.ng_v * 4u;
                    a += p * vkvk_cua_el(lv + (d / P.vg) * 4u, (uint32_t)bit, dt);
                }
            } else {
                const uint8_t *x = blk + P.raw[1] + (((size_t)(i - nv)) * heads + h) * hd * 2u;
                a += p * vkvk_cua_el(x, d, dt);
            }
        }
        acc[d] = a;
        u[d] = as; /* the code accumulator (u is free after phase 2) */
    }
    if (rot && nv > 0) {
        const uint8_t *vec = levv + (size_t)h * hd * 2u;
        if (P.vmode == VKV_GROUP_TOKEN) {
            vkvk_cua_fwht(u, hd); /* synchronises first */
            for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x) {
                float w = u[d] * P.fdec;
                acc[d] += (vkvk_rot_neg(d) ? -w : w) + vkvk_cua_el(vec, d, dt) * Pv;
            }
        } else {
            for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x)
                acc[d] += vkvk_cua_el(vec, d, dt) * u[d];
        }
    }
    __syncthreads();
    for (uint32_t d = threadIdx.x; d < hd; d += blockDim.x)
        out[(size_t)row * hd + d] = mx == -INFINITY ? 0.0f : acc[d] / sum;
    if (threadIdx.x == 0)
        lse[row] = mx == -INFINITY ? -INFINITY : mx + logf(sum);
}

/* Writes the CHANNEL group number of each visual token (groups of g tokens
 * restarting at each range, docs/BLOCK_FORMAT.md) into out[n_vis]. */
static void vkvk_cua_groups(const vkv_block_header *h, uint32_t g, uint32_t *out)
{
    uint32_t v = 0, grp = 0;
    if (h->rule == VKV_RULE_ROTSIGN || g == 0)
        g = 1; /* not CHANNEL groups: any map will do, the kernel ignores it */
    for (uint32_t r = 0; r < h->n_ranges; r++)
        for (uint32_t t0 = 0; t0 < h->ranges[r].len; t0 += g, grp++)
            for (uint32_t k = t0; k < h->ranges[r].len && k < t0 + g; k++)
                out[v++] = grp;
}

/* vkv/attend_cuda.h. Host code: validates, builds the token and group maps
 * (host memory, freed here), uploads them into one stream-ordered scratch
 * allocation with the score buffer, launches, frees the scratch on the
 * stream. */
extern "C" int vkv_cuda_attend(const void *block, size_t size, const vkv_block_header *hdr,
                               unsigned flags, const vkv_attend_args *a, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    vkv_block_header tmp, h;
    vkvk_layout L;
    int rc;
    if (block == NULL || a == NULL || (flags & ~VKV_DECODE_VERIFY) != 0)
        return VKV_EINVAL;
    if (size < VKV_BLOCK_HEADER_SIZE)
        return VKV_ETRUNC;
    if (hdr == NULL) {
        if ((rc = VKVK_CUA(cudaMemcpyAsync(&tmp, block, sizeof tmp, cudaMemcpyDeviceToHost, st))) ||
            (rc = VKVK_CUA(cudaStreamSynchronize(st))))
            return rc;
        hdr = &tmp;
    }
    if ((rc = vkv_block_check(hdr, size, 0, &h)) != VKV_OK)
        return rc;
    if (h.rule == VKV_RULE_TC)
        return VKV_ENOTSUP; /* rule 5: CPU vkv_attend only (docs/ATTEND.md) */
    if (flags & VKV_DECODE_VERIFY) {
        uint8_t *buf = (uint8_t *)malloc((size_t)h.total_size);
        if (buf == NULL)
            return VKV_ENOMEM;
        rc =
            VKVK_CUA(cudaMemcpyAsync(buf, block, (size_t)h.total_size, cudaMemcpyDeviceToHost, st));
        if (rc == VKV_OK)
            rc = VKVK_CUA(cudaStreamSynchronize(st));
        if (rc == VKV_OK)
            rc = vkv_block_check(buf, (size_t)h.total_size, VKV_DECODE_VERIFY, NULL);
        if (rc == VKV_OK && memcmp(buf, hdr, sizeof *hdr) != 0)
            rc = VKV_ECORRUPT; /* the caller's header is not this block's */
        free(buf);
        if (rc != VKV_OK)
            return rc;
    }
    if (vkvk_layout_of(&h, &L) != 0)
        return VKV_ECORRUPT;
    if ((rc = vkvk_attend_check_args(&h, a)) != VKV_OK)
        return rc;
    if (h.head_dim > VKV_CUDA_ATTEND_MAX_HEAD_DIM)
        return VKV_ENOTSUP;
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        (void)cudaGetLastError();
        return VKV_ENOTSUP;
    }
    const uint32_t T = h.tokens, nv = (uint32_t)L.n_vis, rows = a->n_q * a->n_heads;
    const size_t nsc = (size_t)rows * T, nidx = (size_t)T + 2u * nv + 1u;
    uint32_t *idx = (uint32_t *)malloc(nidx * sizeof(uint32_t));
    if (idx == NULL)
        return VKV_ENOMEM;
    /* score index -> token (visual first, then raw), visual -> CHANNEL group */
    uint32_t iv = 0, ir = nv, rg = 0;
    for (uint32_t t = 0; t < T; t++) {
        while (rg < h.n_ranges && h.ranges[rg].start + h.ranges[rg].len <= t)
            rg++;
        int vis = rg < h.n_ranges && t >= h.ranges[rg].start;
        idx[vis ? iv++ : ir++] = t;
    }
    vkvk_cua_groups(&h, h.k_group, idx + T);
    vkvk_cua_groups(&h, h.v_group, idx + T + nv);
    vkvk_cua_par P;
    memset(&P, 0, sizeof(P));
    P.heads = h.kv_heads;
    P.hd = h.head_dim;
    P.T = T;
    P.nv = nv;
    P.gq = a->n_heads / h.kv_heads;
    P.n_heads = a->n_heads;
    P.kg = h.k_group;
    P.vg = h.v_group;
    P.ng_k = (uint32_t)L.ngrp[0];
    P.ng_v = (uint32_t)L.ngrp[1];
    P.rule = h.rule;
    P.dtype = h.dtype;
    P.kmode = h.k_mode;
    P.vmode = h.v_mode;
    P.qdt = a->q_dtype;
    P.has_mask = a->mask != NULL;
    for (int s = 0; s < 2; s++) {
        P.raw[s] = L.off[VKV_SEC_RAW_K + s] + a->layer * L.raw_layer;
        P.bits[s] = L.off[VKV_SEC_BITS_K + s] + a->layer * L.bits_layer;
        P.lev[s] = L.off[VKV_SEC_LEV_K + s] + a->layer * L.lev_layer[s];
    }
    P.scale = a->scale;
    float fenc;
    vkvk_rot_factors(h.head_dim, &fenc, &P.fdec);
    uint8_t *dev = NULL;
    const size_t bytes = nsc * sizeof(float) + nidx * sizeof(uint32_t);
    rc = VKVK_CUA(cudaMallocAsync((void **)&dev, bytes, st));
    if (rc == VKV_OK) {
        uint32_t *didx = (uint32_t *)(dev + nsc * sizeof(float));
        /* pageable source: staged before the call returns, so idx may go */
        rc = VKVK_CUA(
            cudaMemcpyAsync(didx, idx, nidx * sizeof(uint32_t), cudaMemcpyHostToDevice, st));
        if (rc == VKV_OK) {
            size_t smem = (3u * (size_t)h.head_dim + 40u) * sizeof(float);
            vkvk_cua_attend<<<rows, VKVK_CUA_THREADS, smem, st>>>(
                (const uint8_t *)block, P, a->q, a->mask, a->out, a->lse, (float *)dev, didx,
                didx + T, didx + T + nv);
            rc = VKVK_CUA(cudaGetLastError());
        }
        int rc2 = VKVK_CUA(cudaFreeAsync(dev, st));
        if (rc == VKV_OK)
            rc = rc2;
    }
    free(idx);
    return rc;
}
