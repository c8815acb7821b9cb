/*
 * kernels/attend.c - vkv_attend / vkv_attend_merge (vkv/attend.h): decode
 * attention straight over a block's packed codes, and the split-KV merge.
 *
 * The driver validates everything, converts the queries to fp32, and per KV
 * head turns the block's rule into the four kernel loops of
 * attend_internal.h:
 *
 *   keys, rotsign TOKEN   k = mf + neg(c_t * H s_t): q.k = q.mf + c_t *
 *                         (H neg(q)) . s_t  (query rotated once per row)
 *   keys, rotsign CHANNEL k = a_t * (b o s_t): q.k = a_t * (q o b) . s_t
 *   keys, level CHANNEL   k = lo + bit*(hi-lo) per group: q.k = q.lo +
 *                         (q o (hi-lo)) . bit_t
 *   keys, level TOKEN     per token and group select (scalar loop)
 *   values, rotsign CHAN. sum_t p_t v_t = b o sum_t (p_t a_t) s_t
 *   values, rotsign TOKEN sum_t p_t v_t = mf * P + neg(H sum_t (p_t c_t) s_t)
 *   values, level CHANNEL per group: lo * P_g + (hi-lo) o sum_t p_t bit_t
 *   values, level TOKEN   per token and group select (scalar loop)
 *   raw tokens            fp32 dot products / weighted sums of the rows
 *
 * The scalar kernels below are the reference (the ground truth the AVX2
 * kernels and the CUDA twin are tested against); tests/kernels compares the
 * reference itself with decode-to-dtype + exact softmax.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attend_internal.h"
#include "kernels/codec_tc.h"
#include "kernels/codec_internal.h"

/* ---- scalar reference kernels -------------------------------------------- */

/* Reference bitdot (attend_internal.h): channels in order, one sum per row. */
static void vkvk_att_ref_bitdot(const uint8_t *bits, size_t bstride, uint32_t n, const float *u,
                                uint32_t R, uint32_t hd, int sgn, float *dot, size_t ost,
                                float *scratch)
{
    (void)scratch;
    for (uint32_t t = 0; t < n; t++) {
        const uint8_t *b = bits + t * bstride;
        for (uint32_t r = 0; r < R; r++) {
            const float *ur = u + (size_t)r * hd;
            float s = 0.0f;
            for (uint32_t d = 0; d < hd; d++) {
                int bit = (b[d >> 3] >> (d & 7u)) & 1;
                s += bit ? ur[d] : sgn ? -ur[d] : 0.0f;
            }
            dot[(size_t)r * ost + t] = s;
        }
    }
}

/* Reference bitacc: tokens in order. */
static void vkvk_att_ref_bitacc(const uint8_t *bits, size_t bstride, uint32_t n, const float *w,
                                size_t wst, uint32_t R, uint32_t hd, int sgn, float *acc,
                                float *scratch)
{
    (void)scratch;
    for (uint32_t t = 0; t < n; t++) {
        const uint8_t *b = bits + t * bstride;
        for (uint32_t r = 0; r < R; r++) {
            float wt = w[(size_t)r * wst + t];
            float *ar = acc + (size_t)r * hd;
            for (uint32_t d = 0; d < hd; d++) {
                int bit = (b[d >> 3] >> (d & 7u)) & 1;
                ar[d] += bit ? wt : sgn ? -wt : 0.0f;
            }
        }
    }
}

/* Reference rawdot: elements converted exactly, channels in order. */
static void vkvk_att_ref_rawdot(const uint8_t *raw, size_t rstride, uint32_t n, int dtype,
                                const float *u, uint32_t R, uint32_t hd, float *dot, size_t ost)
{
    for (uint32_t t = 0; t < n; t++) {
        const uint8_t *x = raw + t * rstride;
        for (uint32_t r = 0; r < R; r++) {
            const float *ur = u + (size_t)r * hd;
            float s = 0.0f;
            for (uint32_t d = 0; d < hd; d++)
                s += ur[d] * vkvk_to_f32(vkvk_ld16(x + 2u * d), dtype);
            dot[(size_t)r * ost + t] = s;
        }
    }
}

/* Reference rawacc: tokens in order; a zero weight skips the token (a
 * masked-out raw row holding Inf/NaN then does not poison the sum). */
static void vkvk_att_ref_rawacc(const uint8_t *raw, size_t rstride, uint32_t n, int dtype,
                                const float *w, size_t wst, uint32_t R, uint32_t hd, float *acc)
{
    for (uint32_t t = 0; t < n; t++) {
        const uint8_t *x = raw + t * rstride;
        for (uint32_t r = 0; r < R; r++) {
            float wt = w[(size_t)r * wst + t];
            if (wt == 0.0f)
                continue;
            float *ar = acc + (size_t)r * hd;
            for (uint32_t d = 0; d < hd; d++)
                ar[d] += wt * vkvk_to_f32(vkvk_ld16(x + 2u * d), dtype);
        }
    }
}

/* Reference expsum: s[i] = expf(s[i] - m) (0 for -Inf), returns the sum in
 * order. */
static float vkvk_att_ref_expsum(float *s, uint32_t n, float m)
{
    float sum = 0.0f;
    for (uint32_t i = 0; i < n; i++) {
        s[i] = s[i] == -INFINITY ? 0.0f : expf(s[i] - m);
        sum += s[i];
    }
    return sum;
}

const vkvk_attend_kernels vkvk_attend_scalar = {
    "scalar",
    vkvk_att_ref_bitdot,
    vkvk_att_ref_bitacc,
    vkvk_att_ref_rawdot,
    vkvk_att_ref_rawacc,
    vkvk_att_ref_expsum,
    vkvk_fwht,
};

/* The kernel table for the codec implementation in use (static storage). */
static const vkvk_attend_kernels *vkvk_att_kern(void)
{
#ifdef VKVK_X86
    enum vkv_impl impl = vkv_codec_impl();
    if (impl == VKV_IMPL_AVX2 || impl == VKV_IMPL_AVX512)
        return &vkvk_attend_avx2;
#endif
    return &vkvk_attend_scalar;
}

/* ---- the driver ------------------------------------------------------------ */

/* Sign of channel d of the rotsign sign vector as a float bit mask. */
static inline uint32_t vkvk_att_negbit(uint32_t d)
{
    return (uint32_t)((vkvk_rot_negw[d / 64u] >> (d % 64u)) & 1u) << 31;
}

/* Largest score buffer (rows x tokens floats) of one pass: 16 MiB. */
#define VKVK_ATT_SCORE_FLOATS (4u << 20)

/* Everything one call needs, set up once (all memory owned by the call). */
typedef struct vkvk_att {
    const vkvk_attend_kernels *k;
    const uint8_t *blk;
    vkv_block_header h;
    vkvk_layout L;
    const vkv_attend_args *a;
    uint32_t gq;    /* query heads per KV head */
    uint32_t R;     /* rows in this pass (of the n_q * gq rows per KV head) */
    uint32_t r0;    /* first row of this pass */
    uint32_t T;     /* block tokens */
    uint32_t nv;    /* visual tokens (scores [0, nv)), raw after them */
    uint32_t *tok;  /* [T] block token number of score index i */
    float *qf;      /* [n_q][n_heads][hd] queries in fp32 */
    float *qrow;    /* [R][hd] this head's query rows times the scale */
    float *u;       /* [R][hd] per-rule query vectors */
    float *base;    /* [R] per-row constants */
    float *sc;      /* [R][T] scores, then weights p */
    float *w;       /* [R][nv] value weights */
    float *cs;      /* [nv] per-token scales of one head */
    float *acc;     /* [R][hd] output accumulators */
    float *accs;    /* [R][hd] code accumulators */
    float *rowv;    /* [R][4]: max, sum, P_vis, scratch */
    float *scratch; /* VKVK_ATT_SCRATCH_FLOATS(hd, T), 32-byte aligned */
    float *tcb;     /* rule 5: [8][hd] (mean, scale, one decoded row, allocation bytes,
                       coded channels' levels, their channel numbers and bit offsets) */
    float sc8[256]; /* vkvk_sc8_value of every 8-bit scale code */
    uint32_t negm[VKV_BLOCK_MAX_HEAD_DIM]; /* rotsign sign flips as float sign masks */
} vkvk_att;

/* Element (d) of a dtype row at p. */
static inline float vkvk_att_el(const uint8_t *p, uint32_t d, int dt)
{
    return vkvk_to_f32(vkvk_ld16(p + 2u * d), dt);
}

/* Per-token rotsign scales of one head: out[v] = scale of visual token v
 * (code at scl + v*sstride, sbits wide) times f; sc8 is the 256-entry
 * table of vkvk_sc8_value. */
static void vkvk_att_scales(const float *sc8, const uint8_t *scl, size_t sstride, uint32_t nv,
                            uint32_t sbits, int dt, float f, float *restrict out)
{
    if (sbits == 8) {
        for (uint32_t v = 0; v < nv; v++)
            out[v] = sc8[scl[(size_t)v * sstride]] * f;
        return;
    }
    for (uint32_t v = 0; v < nv; v++)
        out[v] = vkvk_rot_scale_get(scl + (size_t)v * sstride, 16, dt) * f;
}

/* Rule 5 over KV head h of tensor s (bits, lev: the layer's sections):
 * each visual token is decoded in fp32 (vkvk_tc_dec_f32, no rounding) and
 * then keys (s = 0) give the scores c->sc[r][v] = qrow_r . k_v, values
 * (s = 1) add c->sc[r][v] * v_v to acc[r]. */
static void vkvk_att_tc(vkvk_att *c, int s, uint32_t h, const uint8_t *bits, const uint8_t *lev,
                        float *acc)
{
    const vkv_block_header *H = &c->h;
    const uint32_t hd = H->head_dim, heads = H->kv_heads, R = c->R;
    const size_t cb = vkvk_tc_code_bytes(H, s);
    const int coded = s == 0 || H->v_mode == VKV_GROUP_TOKEN;
    const uint8_t *scl = lev + (size_t)heads * vkvk_tc_rec_bytes(coded, hd);
    float *row = c->tcb + 2u * (size_t)hd;
    vkvk_tc_head th = {0, 0, 0.0f, c->tcb, c->tcb + hd, (uint8_t *)(c->tcb + 3u * (size_t)hd)};
    vkvk_tc_head_load(H, s, lev, h, &th);
#ifdef VKVK_X86
    uint32_t *off = (uint32_t *)(void *)(c->tcb + 4u * (size_t)hd);
    const int simd = vkv_codec_impl() != VKV_IMPL_SCALAR;
    vkvk_tc_offsets(&th, off);
#endif
    for (uint32_t v = 0; v < c->nv; v++) {
        const uint8_t *cd = bits + ((size_t)v * heads + h) * cb;
#ifdef VKVK_X86
        if (simd)
            vkvk_tc_dec_f32_avx2(&th, off, cd, (uint32_t)cb, scl[(size_t)v * heads + h], row);
        else
#endif
            vkvk_tc_dec_f32(&th, cd, scl[(size_t)v * heads + h], row);
        for (uint32_t r = 0; r < R; r++) {
            if (s == 0) {
                const float *q = c->qrow + (size_t)r * hd;
                float d0 = 0.0f;
                for (uint32_t d = 0; d < hd; d++)
                    d0 += q[d] * row[d];
                c->sc[(size_t)r * c->T + v] = d0;
            } else {
                const float p = c->sc[(size_t)r * c->T + v];
                float *ar = acc + (size_t)r * hd;
                for (uint32_t d = 0; d < hd; d++)
                    ar[d] += p * row[d];
            }
        }
    }
}

/* Rule-5 keys of KV head h (bits, lev: the layer's BITS_K / LEV_K): with
 * k_td = (a_t * L_td) * sc_d + mu_d, q.k_t = a_t * sum_{coded d} (q_d sc_d)
 * L_td + q.mu, the query folded with the channel scales once per row and
 * only the channels with bits visited per token (their bit offsets fixed by
 * the head's allocation). Scores into c->sc[r][v]. */
static void vkvk_att_tc_keys(vkvk_att *c, uint32_t h, const uint8_t *bits, const uint8_t *lev)
{
    const vkv_block_header *H = &c->h;
    const uint32_t hd = H->head_dim, heads = H->kv_heads, R = c->R;
    const size_t cb = vkvk_tc_code_bytes(H, 0);
    const uint8_t *scl = lev + (size_t)heads * vkvk_tc_rec_bytes(1, hd);
    float *lv = c->tcb + 4u * (size_t)hd;
    uint16_t *cd = (uint16_t *)(void *)(c->tcb + 5u * (size_t)hd);
    uint16_t *off = (uint16_t *)(void *)(c->tcb + 6u * (size_t)hd);
    uint8_t *lo = (uint8_t *)(c->tcb + 7u * (size_t)hd);
    vkvk_tc_head th = {0, 0, 0.0f, c->tcb, c->tcb + hd, (uint8_t *)(c->tcb + 3u * (size_t)hd)};
    vkvk_tc_head_load(H, 0, lev, h, &th);
    uint32_t n = 0, pos = 0;
    for (uint32_t d = 0; d < hd; d++)
        if (th.nb[d]) {
            cd[n] = (uint16_t)d;
            off[n] = (uint16_t)pos;
            lo[n] = th.nb[d];
            pos += th.nb[d];
            n++;
        }
    for (uint32_t r = 0; r < R; r++) {
        const float *q = c->qrow + (size_t)r * hd;
        float *ur = c->u + (size_t)r * hd, b0 = 0.0f;
        for (uint32_t d = 0; d < hd; d++)
            b0 += q[d] * th.mu[d];
        for (uint32_t k = 0; k < n; k++)
            ur[k] = q[cd[k]] * th.sc[cd[k]];
        for (uint32_t k = n; k < hd && k % 8u; k++)
            ur[k] = 0.0f; /* the AVX2 loop reads up to n rounded to 8 */
        c->base[r] = b0;
    }
#ifdef VKVK_X86
    if (vkv_codec_impl() != VKV_IMPL_SCALAR) {
        const vkvk_tc_keys kk = {n, (uint32_t)cb, R, th.top, off, lo, c->u, c->base, hd};
        vkvk_tc_scores_avx2(&kk, bits + (size_t)h * cb, (size_t)heads * cb, scl + h, heads, c->nv,
                            lv, c->sc, c->T);
        return;
    }
#endif
    uint8_t buf[VKV_BLOCK_MAX_HEAD_DIM * 3u / 8u + 2u];
    for (uint32_t v = 0; v < c->nv; v++) {
        memcpy(buf, bits + ((size_t)v * heads + h) * cb, cb);
        buf[cb] = buf[cb + 1u] = 0;
        for (uint32_t k = 0; k < n; k++) {
            uint32_t o = off[k], b = lo[k];
            uint32_t w = ((uint32_t)buf[o >> 3] | (uint32_t)buf[(o >> 3) + 1u] << 8) >> (o & 7u);
            lv[k] = vkvk_tc_level(b, w);
        }
        const float a = vkvk_tc_scale(th.top, scl[(size_t)v * heads + h]);
        for (uint32_t r = 0; r < R; r++) {
            const float *ur = c->u + (size_t)r * hd;
            float d0 = 0.0f;
            for (uint32_t k = 0; k < n; k++)
                d0 += ur[k] * lv[k];
            c->sc[(size_t)r * c->T + v] = a * d0 + c->base[r];
        }
    }
}

/* Scores of KV head h of the layer's keys into c->sc; c->qrow holds the
 * query rows already multiplied by the softmax scale. */
static void vkvk_att_scores(vkvk_att *c, uint32_t h)
{
    const vkv_block_header *H = &c->h;
    const vkvk_layout *L = &c->L;
    const uint32_t hd = H->head_dim, R = c->R, heads = H->kv_heads, nv = c->nv;
    const int dt = H->dtype;
    const uint32_t l = c->a->layer;
    const uint8_t *raw = c->blk + L->off[VKV_SEC_RAW_K] + l * L->raw_layer;
    const uint8_t *bits = c->blk + L->off[VKV_SEC_BITS_K] + l * L->bits_layer;
    const uint8_t *lev = c->blk + L->off[VKV_SEC_LEV_K] + l * L->lev_layer[0];
    const size_t brow = (size_t)heads * (hd / 8u), rrow = (size_t)heads * hd * 2u;
    const uint8_t *hb = bits + (size_t)h * (hd / 8u);
    if (nv > 0 && H->rule == VKV_RULE_TC) {
        vkvk_att_tc_keys(c, h, bits, lev);
    } else if (nv > 0 && H->rule == VKV_RULE_ROTSIGN) {
        const uint8_t *vec = lev + (size_t)h * hd * 2u;
        const size_t sb = H->k_group / 8u;
        const uint8_t *scl = lev + (size_t)heads * hd * 2u + (size_t)h * sb;
        float fenc, fdec;
        vkvk_rot_factors(hd, &fenc, &fdec);
        for (uint32_t r = 0; r < R; r++) {
            const float *q = c->qrow + (size_t)r * hd;
            float *ur = c->u + (size_t)r * hd;
            if (H->k_mode == VKV_GROUP_TOKEN) {
                float qm = 0.0f;
                for (uint32_t d = 0; d < hd; d++) {
                    qm += q[d] * vkvk_att_el(vec, d, dt);
                    ur[d] = vkvk_bits_f32(vkvk_f32_bits(q[d]) ^ c->negm[d]);
                }
                c->k->fwht(ur, hd);
                c->base[r] = qm;
            } else {
                for (uint32_t d = 0; d < hd; d++)
                    ur[d] = q[d] * vkvk_att_el(vec, d, dt);
                c->base[r] = 0.0f;
            }
        }
        c->k->bitdot(hb, brow, nv, c->u, R, hd, 1, c->sc, c->T, c->scratch);
        vkvk_att_scales(c->sc8, scl, heads * sb, nv, H->k_group, dt,
                        H->k_mode == VKV_GROUP_TOKEN ? fdec : 1.0f, c->cs);
        const float *restrict cs = c->cs;
        for (uint32_t r = 0; r < R; r++) {
            float *restrict sr = c->sc + (size_t)r * c->T;
            const float br = c->base[r];
            for (uint32_t v = 0; v < nv; v++)
                sr[v] = br + cs[v] * sr[v];
        }
    } else if (nv > 0 && H->k_mode == VKV_GROUP_CHANNEL) {
        const uint32_t g = H->k_group;
        size_t v = 0, grp = 0;
        for (uint32_t rg = 0; rg < H->n_ranges; rg++) {
            uint32_t end = H->ranges[rg].start + H->ranges[rg].len;
            for (uint32_t t0 = H->ranges[rg].start; t0 < end; t0 += g, grp++) {
                uint32_t n = end - t0 < g ? end - t0 : g;
                const uint8_t *lo = lev + (grp * heads + h) * 4u * hd, *hi = lo + 2u * hd;
                for (uint32_t r = 0; r < R; r++) {
                    const float *q = c->qrow + (size_t)r * hd;
                    float *ur = c->u + (size_t)r * hd, b0 = 0.0f;
                    for (uint32_t d = 0; d < hd; d++) {
                        float fl = vkvk_att_el(lo, d, dt), fh = vkvk_att_el(hi, d, dt);
                        b0 += q[d] * fl;
                        ur[d] = q[d] * (fh - fl);
                    }
                    c->base[r] = b0;
                }
                float *dot = c->sc + v;
                c->k->bitdot(hb + v * brow, brow, n, c->u, R, hd, 0, dot, c->T, c->scratch);
                for (uint32_t r = 0; r < R; r++)
                    for (uint32_t i = 0; i < n; i++)
                        dot[(size_t)r * c->T + i] += c->base[r];
                v += n;
            }
        }
    } else if (nv > 0) { /* level rules, TOKEN mode: a select per element */
        const uint32_t g = H->k_group, ng = hd / g;
        for (uint32_t v = 0; v < nv; v++) {
            const uint8_t *b = hb + (size_t)v * brow;
            const uint8_t *lv = lev + ((size_t)v * heads + h) * ng * 4u;
            for (uint32_t r = 0; r < R; r++) {
                const float *q = c->qrow + (size_t)r * hd;
                float s = 0.0f;
                for (uint32_t d = 0; d < hd; d++) {
                    const uint8_t *pair = lv + (d / g) * 4u;
                    int bit = (b[d >> 3] >> (d & 7u)) & 1;
                    s += q[d] * vkvk_att_el(pair, bit ? 1u : 0u, dt);
                }
                c->sc[(size_t)r * c->T + v] = s;
            }
        }
    }
    if (c->T > nv)
        c->k->rawdot(raw + (size_t)h * hd * 2u, rrow, c->T - nv, dt, c->qrow, R, hd, c->sc + nv,
                     c->T);
}

/* Largest of x[0..n) (-Inf for n = 0); eight independent maxima. */
static float vkvk_att_max(const float *x, uint32_t n)
{
    float m[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                  -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            m[k] = vkvk_maxf(x[i + k], m[k]);
    for (; i < n; i++)
        m[0] = vkvk_maxf(x[i], m[0]);
    for (int k = 1; k < 8; k++)
        m[0] = vkvk_maxf(m[k], m[0]);
    return m[0];
}

/* Sum of x[0..n) in eight interleaved partial sums. */
static float vkvk_att_sum(const float *x, uint32_t n)
{
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            s[k] += x[i + k];
    for (; i < n; i++)
        s[0] += x[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* Masks, then turns scores into p = exp(s - max) per row; fills rowv[r]
 * with (max, sum p). A row with nothing unmasked gets max = -Inf, p = 0. */
static void vkvk_att_softmax(vkvk_att *c)
{
    const uint32_t R = c->R, T = c->T, gq = c->gq;
    const uint8_t *mask = c->a->mask;
    for (uint32_t r = 0; r < R; r++) {
        float *sr = c->sc + (size_t)r * T, m = -INFINITY;
        if (mask) {
            const uint8_t *mq = mask + (size_t)((c->r0 + r) / gq) * T;
            for (uint32_t i = 0; i < T; i++)
                if (mq[c->tok[i]] == 0)
                    sr[i] = -INFINITY;
        }
        m = vkvk_att_max(sr, T);
        float sum = 0.0f;
        if (m == -INFINITY)
            memset(sr, 0, T * sizeof(float));
        else
            sum = c->k->expsum(sr, T, m);
        c->rowv[4 * r] = m;
        c->rowv[4 * r + 1] = sum;
    }
}

/* Weighted sum of KV head h's values with weights c->sc into c->acc. */
static void vkvk_att_values(vkvk_att *c, uint32_t h)
{
    const vkv_block_header *H = &c->h;
    const vkvk_layout *L = &c->L;
    const uint32_t hd = H->head_dim, R = c->R, heads = H->kv_heads, nv = c->nv;
    const int dt = H->dtype;
    const uint32_t l = c->a->layer;
    const uint8_t *raw = c->blk + L->off[VKV_SEC_RAW_V] + l * L->raw_layer;
    const uint8_t *bits = c->blk + L->off[VKV_SEC_BITS_V] + l * L->bits_layer_v;
    const uint8_t *lev = c->blk + L->off[VKV_SEC_LEV_V] + l * L->lev_layer[1];
    const size_t brow = (size_t)heads * (hd / 8u), rrow = (size_t)heads * hd * 2u;
    const uint8_t *hb = bits + (size_t)h * (hd / 8u);
    memset(c->acc, 0, (size_t)R * hd * sizeof(float));
    if (nv > 0 && H->rule == VKV_RULE_TC && H->v_mode == VKV_GROUP_CHANNEL) {
        /* rank-1 values as rotsign CHANNEL: sum_t p_t v_t = b o sum_t (p_t a_t) s_t */
        vkvk_tc_head th = {0, 0, 0.0f, c->tcb, c->tcb + hd, (uint8_t *)(c->tcb + 3u * (size_t)hd)};
        vkvk_tc_head_load(H, 1, lev, h, &th);
        const uint8_t *scl = lev + (size_t)heads * vkvk_tc_rec_bytes(0, hd);
        for (uint32_t v = 0; v < nv; v++)
            c->cs[v] = vkvk_tc_scale(th.top, scl[(size_t)v * heads + h]);
        for (uint32_t r = 0; r < R; r++) {
            const float *restrict pr = c->sc + (size_t)r * c->T;
            float *restrict wr = c->w + (size_t)r * nv;
            for (uint32_t v = 0; v < nv; v++)
                wr[v] = pr[v] * c->cs[v];
        }
        memset(c->accs, 0, (size_t)R * hd * sizeof(float));
        c->k->bitacc(hb, brow, nv, c->w, nv, R, hd, 1, c->accs, c->scratch);
        for (uint32_t r = 0; r < R; r++)
            for (uint32_t d = 0; d < hd; d++)
                c->acc[(size_t)r * hd + d] = th.sc[d] * c->accs[(size_t)r * hd + d];
    } else if (nv > 0 && H->rule == VKV_RULE_TC) {
        vkvk_att_tc(c, 1, h, bits, lev, c->acc);
    } else if (nv > 0 && H->rule == VKV_RULE_ROTSIGN) {
        const uint8_t *vec = lev + (size_t)h * hd * 2u;
        const size_t sb = H->v_group / 8u;
        const uint8_t *scl = lev + (size_t)heads * hd * 2u + (size_t)h * sb;
        float fenc, fdec;
        vkvk_rot_factors(hd, &fenc, &fdec);
        float f = H->v_mode == VKV_GROUP_TOKEN ? fdec : 1.0f;
        vkvk_att_scales(c->sc8, scl, heads * sb, nv, H->v_group, dt, f, c->cs);
        const float *restrict cs = c->cs;
        for (uint32_t r = 0; r < R; r++) {
            const float *restrict pr = c->sc + (size_t)r * c->T;
            float *restrict wr = c->w + (size_t)r * nv;
            for (uint32_t v = 0; v < nv; v++)
                wr[v] = pr[v] * cs[v];
            c->rowv[4 * r + 2] = vkvk_att_sum(pr, nv);
        }
        memset(c->accs, 0, (size_t)R * hd * sizeof(float));
        c->k->bitacc(hb, brow, nv, c->w, nv, R, hd, 1, c->accs, c->scratch);
        for (uint32_t r = 0; r < R; r++) {
            float *as = c->accs + (size_t)r * hd, *ar = c->acc + (size_t)r * hd;
            if (H->v_mode == VKV_GROUP_TOKEN) {
                float P = c->rowv[4 * r + 2];
                c->k->fwht(as, hd);
                for (uint32_t d = 0; d < hd; d++)
                    ar[d] = vkvk_bits_f32(vkvk_f32_bits(as[d]) ^ c->negm[d]) +
                            vkvk_att_el(vec, d, dt) * P;
            } else {
                for (uint32_t d = 0; d < hd; d++)
                    ar[d] = vkvk_att_el(vec, d, dt) * as[d];
            }
        }
    } else if (nv > 0 && H->v_mode == VKV_GROUP_CHANNEL) {
        const uint32_t g = H->v_group;
        size_t v = 0, grp = 0;
        for (uint32_t rg = 0; rg < H->n_ranges; rg++) {
            uint32_t end = H->ranges[rg].start + H->ranges[rg].len;
            for (uint32_t t0 = H->ranges[rg].start; t0 < end; t0 += g, grp++) {
                uint32_t n = end - t0 < g ? end - t0 : g;
                const uint8_t *lo = lev + (grp * heads + h) * 4u * hd, *hi = lo + 2u * hd;
                const float *p = c->sc + v;
                memset(c->accs, 0, (size_t)R * hd * sizeof(float));
                c->k->bitacc(hb + v * brow, brow, n, p, c->T, R, hd, 0, c->accs, c->scratch);
                for (uint32_t r = 0; r < R; r++) {
                    float P = 0.0f;
                    for (uint32_t i = 0; i < n; i++)
                        P += p[(size_t)r * c->T + i];
                    float *as = c->accs + (size_t)r * hd, *ar = c->acc + (size_t)r * hd;
                    for (uint32_t d = 0; d < hd; d++) {
                        float fl = vkvk_att_el(lo, d, dt), fh = vkvk_att_el(hi, d, dt);
                        ar[d] += fl * P + (fh - fl) * as[d];
                    }
                }
                v += n;
            }
        }
    } else if (nv > 0) { /* level rules, TOKEN mode */
        const uint32_t g = H->v_group, ng = hd / g;
        for (uint32_t v = 0; v < nv; v++) {
            const uint8_t *b = hb + (size_t)v * brow;
            const uint8_t *lv = lev + ((size_t)v * heads + h) * ng * 4u;
            for (uint32_t r = 0; r < R; r++) {
                float p = c->sc[(size_t)r * c->T + v];
                float *ar = c->acc + (size_t)r * hd;
                for (uint32_t d = 0; d < hd; d++) {
                    const uint8_t *pair = lv + (d / g) * 4u;
                    int bit = (b[d >> 3] >> (d & 7u)) & 1;
                    ar[d] += p * vkvk_att_el(pair, bit ? 1u : 0u, dt);
                }
            }
        }
    }
    if (c->T > nv)
        c->k->rawacc(raw + (size_t)h * hd * 2u, rrow, c->T - nv, dt, c->sc + nv, c->T, R, hd,
                     c->acc);
}

/* Checks the arguments against the validated header (attend_internal.h). */
int vkvk_attend_check_args(const vkv_block_header *h, const vkv_attend_args *a)
{
    if (a->q == NULL || a->out == NULL || a->lse == NULL || a->n_q == 0)
        return VKV_EINVAL;
    if (a->q_dtype != VKV_ATTEND_F16 && a->q_dtype != VKV_ATTEND_BF16 &&
        a->q_dtype != VKV_ATTEND_F32)
        return VKV_EINVAL;
    if (a->kv_heads != h->kv_heads || a->head_dim != h->head_dim ||
        (a->layers != 0 && a->layers != h->layers))
        return VKV_ESHAPE;
    if (a->n_heads == 0 || a->n_heads % h->kv_heads != 0)
        return VKV_ESHAPE;
    if (a->layer >= h->layers)
        return VKV_EINVAL;
    if ((uint64_t)a->n_q * a->n_heads > VKV_ATTEND_MAX_ROWS)
        return VKV_EINVAL;
    if (a->mask != NULL && a->mask_tokens != h->tokens)
        return VKV_EINVAL;
    if (!isfinite(a->scale))
        return VKV_ENONFINITE;
    if (a->ident != NULL && vkv_block_check_ident(h, a->ident) != VKV_OK)
        return VKV_EIDENT;
    return VKV_OK;
}

/* Converts the queries to fp32 into qf; VKV_ENONFINITE on NaN/Inf. */
static int vkvk_att_load_q(const vkv_attend_args *a, size_t n, float *qf)
{
    for (size_t i = 0; i < n; i++) {
        float x;
        if (a->q_dtype == VKV_ATTEND_F32)
            memcpy(&x, (const uint8_t *)a->q + 4u * i, 4);
        else
            x = vkvk_to_f32(vkvk_ld16((const uint8_t *)a->q + 2u * i), a->q_dtype);
        if (!isfinite(x))
            return VKV_ENONFINITE;
        qf[i] = x;
    }
    return VKV_OK;
}

/* vkv/attend.h. All scratch (queries in fp32, per-row buffers, the kernel
 * scratch) is one malloc freed before returning; a->out / a->lse are
 * written only after every check passed. */
int vkv_attend(const void *block, size_t size, unsigned flags, const vkv_attend_args *a)
{
    vkvk_att c;
    memset(&c, 0, sizeof(c));
    if (a == NULL)
        return VKV_EINVAL;
    int rc = vkv_block_check(block, size, flags, &c.h);
    if (rc != VKV_OK)
        return rc;
    if (vkvk_layout_of(&c.h, &c.L) != 0) /* cannot fail after the check */
        return VKV_ECORRUPT;
    if ((rc = vkvk_attend_check_args(&c.h, a)) != VKV_OK)
        return rc;
    const uint32_t hd = c.h.head_dim;
    c.k = vkvk_att_kern();
    c.blk = block;
    c.a = a;
    c.gq = a->n_heads / c.h.kv_heads;
    /* rows per KV head, processed in passes of at most RB rows so that the
     * [rows][tokens] score buffer stays within VKVK_ATT_SCORE_FLOATS */
    const uint32_t Rall = a->n_q * c.gq;
    uint32_t RB = VKVK_ATT_SCORE_FLOATS / c.h.tokens;
    RB = RB < 1u ? 1u : RB > Rall ? Rall : RB;
    c.R = RB;
    c.T = c.h.tokens;
    c.nv = (uint32_t)c.L.n_vis;
    const size_t nq = (size_t)a->n_q * a->n_heads * hd, Rh = (size_t)c.R * hd;
    const size_t nf = nq + 4u * Rh + (size_t)c.R * 5u + (size_t)c.T * c.R + (size_t)c.nv * c.R +
                      c.nv + 8u + VKVK_ATT_SCRATCH_FLOATS(hd, c.T) + 8u * (size_t)hd;
    float *mem = malloc(nf * sizeof(float));
    c.tok = malloc((size_t)c.T * sizeof(uint32_t));
    if (mem == NULL || c.tok == NULL) {
        free(mem);
        free(c.tok);
        return VKV_ENOMEM;
    }
    c.qf = mem;
    c.qrow = c.qf + nq;
    c.u = c.qrow + Rh;
    c.acc = c.u + Rh;
    c.accs = c.acc + Rh;
    c.base = c.accs + Rh;
    c.rowv = c.base + c.R;
    c.sc = c.rowv + 4u * (size_t)c.R;
    c.w = c.sc + (size_t)c.T * c.R;
    c.cs = c.w + (size_t)c.nv * c.R;
    c.scratch = c.cs + c.nv;
    c.scratch += (8u - ((uintptr_t)c.scratch / sizeof(float)) % 8u) % 8u; /* 32-byte aligned */
    c.tcb = c.scratch + VKVK_ATT_SCRATCH_FLOATS(hd, c.T);
    if ((rc = vkvk_att_load_q(a, nq, c.qf)) != VKV_OK)
        goto out;
    for (uint32_t b = 0; b < 256; b++)
        c.sc8[b] = vkvk_sc8_value(b);
    for (uint32_t d = 0; d < hd; d++)
        c.negm[d] = vkvk_att_negbit(d);
    /* score index -> block token: visual tokens in order, then raw ones */
    {
        uint32_t iv = 0, ir = c.nv, rg = 0;
        for (uint32_t t = 0; t < c.T; t++) {
            while (rg < c.h.n_ranges && c.h.ranges[rg].start + c.h.ranges[rg].len <= t)
                rg++;
            int vis = rg < c.h.n_ranges && t >= c.h.ranges[rg].start;
            c.tok[vis ? iv++ : ir++] = t;
        }
    }
    for (uint32_t h = 0; h < c.h.kv_heads; h++) {
        for (c.r0 = 0; c.r0 < Rall; c.r0 += RB) {
            c.R = Rall - c.r0 < RB ? Rall - c.r0 : RB;
            for (uint32_t r = 0; r < c.R; r++) {
                uint32_t gr = c.r0 + r, i = gr / c.gq, qh = h * c.gq + gr % c.gq;
                const float *src = c.qf + ((size_t)i * a->n_heads + qh) * hd;
                for (uint32_t d = 0; d < hd; d++)
                    c.qrow[(size_t)r * hd + d] = src[d] * a->scale;
            }
            vkvk_att_scores(&c, h);
            vkvk_att_softmax(&c);
            vkvk_att_values(&c, h);
            for (uint32_t r = 0; r < c.R; r++) {
                uint32_t gr = c.r0 + r, i = gr / c.gq, qh = h * c.gq + gr % c.gq;
                float m = c.rowv[4 * r], sum = c.rowv[4 * r + 1];
                float *o = a->out + ((size_t)i * a->n_heads + qh) * hd;
                const float *ar = c.acc + (size_t)r * hd;
                if (m == -INFINITY || !(sum > 0.0f)) {
                    memset(o, 0, hd * sizeof(float));
                    a->lse[(size_t)i * a->n_heads + qh] = -INFINITY;
                    continue;
                }
                for (uint32_t d = 0; d < hd; d++)
                    o[d] = ar[d] / sum;
                a->lse[(size_t)i * a->n_heads + qh] = m + logf(sum);
            }
        }
    }
out:
    free(mem);
    free(c.tok);
    return rc;
}

/* vkv/attend.h. Validates every lse first; per row reads all parts into a
 * stack accumulator before writing, so out/lse may alias an input. */
int vkv_attend_merge(size_t n, const float *const *outs, const float *const *lses, size_t rows,
                     uint32_t head_dim, float *out, float *lse)
{
    if (n == 0 || outs == NULL || lses == NULL || out == NULL || head_dim == 0 ||
        head_dim > VKV_BLOCK_MAX_HEAD_DIM)
        return VKV_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (outs[i] == NULL || lses[i] == NULL)
            return VKV_EINVAL;
        for (size_t r = 0; r < rows; r++)
            if (isnan(lses[i][r]) || lses[i][r] == INFINITY)
                return VKV_ENONFINITE;
    }
    float acc[VKV_BLOCK_MAX_HEAD_DIM];
    for (size_t r = 0; r < rows; r++) {
        float m = -INFINITY;
        for (size_t i = 0; i < n; i++)
            m = vkvk_maxf(lses[i][r], m);
        memset(acc, 0, head_dim * sizeof(float));
        float sw = 0.0f;
        if (m != -INFINITY) {
            for (size_t i = 0; i < n; i++) {
                if (lses[i][r] == -INFINITY)
                    continue;
                float wi = expf(lses[i][r] - m);
                const float *oi = outs[i] + r * head_dim;
                sw += wi;
                for (uint32_t d = 0; d < head_dim; d++)
                    acc[d] += wi * oi[d];
            }
        }
        float *o = out + r * head_dim;
        if (m == -INFINITY) {
            memset(o, 0, head_dim * sizeof(float));
            if (lse)
                lse[r] = -INFINITY;
            continue;
        }
        for (uint32_t d = 0; d < head_dim; d++)
            o[d] = acc[d] / sw;
        if (lse)
            lse[r] = m + logf(sw);
    }
    return VKV_OK;
}
