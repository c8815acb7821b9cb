/* eval/codecs_ref.c - the reference quantizers this module runs itself:
 * simulated block rules, CalibQuant, the 2-bit reference and the eval-only
 * rotsign design (see codecs.h; codecs_impl.h for the file map). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/codecs_impl.h"
#include "tensor/f16.h"

/* ---- simulated block rules (mirror kernels/codec_math.h) ---------------- */

/* qsort comparator for floats, ascending. */
static int vkve_fcmp(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : (x > y);
}

/* Quantizes the n values x[] in place with two levels chosen by the block
 * codec's `rule` (param, iters) and rounded to dtype; scratch holds n
 * floats. Mirrors the codec: constant group -> both levels the constant;
 * levels clamped to [min, max]; code 1 iff x >= midpoint of rounded levels. */
static void vkve_sim_group(float *x, uint32_t n, int rule, float param, int iters, int dtype,
                           float *scratch)
{
    float mn = x[0], mx = x[0];
    for (uint32_t i = 1; i < n; i++) {
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
    }
    float lo = mn, hi = mx;
    if (rule == VKV_RULE_MINMAX) {
        float h = param * 0.5f, r = mx - mn;
        lo = mn + h * r;
        hi = mx - h * r;
    } else if (rule == VKV_RULE_QUANTILE) {
        for (uint32_t i = 0; i < n; i++)
            scratch[i] = x[i] + 0.0f;
        qsort(scratch, n, sizeof *scratch, vkve_fcmp);
        uint32_t k = (uint32_t)((double)param * (double)(n - 1u));
        lo = scratch[k];
        hi = scratch[n - 1 - k];
    } else {
        float sum = 0;
        for (uint32_t i = 0; i < n; i++)
            sum += x[i];
        float thr = sum / (float)n;
        for (int it = 0; it < iters; it++) {
            float sl = 0, sh = 0;
            uint32_t nl = 0, nh = 0;
            for (uint32_t i = 0; i < n; i++) {
                if (x[i] >= thr)
                    sh += x[i], nh++;
                else
                    sl += x[i], nl++;
            }
            lo = nl ? sl / (float)nl : 0;
            hi = nh ? sh / (float)nh : 0;
            if (!nl)
                lo = hi;
            if (!nh)
                hi = lo;
            thr = (lo + hi) * 0.5f;
        }
    }
    if (mn == mx)
        lo = hi = mn;
    lo = fmaxf(fminf(lo, mx), mn);
    hi = fmaxf(fminf(hi, mx), mn);
    lo = vkvtn_round_dtype(lo, dtype);
    hi = vkvtn_round_dtype(hi, dtype);
    float thr = (lo + hi) * 0.5f;
    for (uint32_t i = 0; i < n; i++)
        x[i] = x[i] >= thr ? hi : lo;
}

/* Quantizer callback: quantizes x[0..n) in place (scratch: n floats). */
typedef void (*vkve_group_fn)(float *x, uint32_t n, const void *arg, int dtype, float *scratch);

typedef struct vkve_rule_arg {
    int rule, iters;
    float param;
} vkve_rule_arg;

/* vkve_group_fn adapter for the block rules. */
static void vkve_rule_fn(float *x, uint32_t n, const void *arg, int dtype, float *scratch)
{
    const vkve_rule_arg *a = arg;
    vkve_sim_group(x, n, a->rule, a->param, a->iters, dtype, scratch);
}

/* Uniform 2-bit quantizer: 4 levels min + q * step, step = (max-min)/3,
 * min and step rounded to dtype. */
static void vkve_2bit_fn(float *x, uint32_t n, const void *arg, int dtype, float *scratch)
{
    float mn = x[0], mx = x[0];
    for (uint32_t i = 1; i < n; i++) {
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
    }
    mn = vkvtn_round_dtype(mn, dtype);
    float st = vkvtn_round_dtype((mx - mn) / 3.0f, dtype);
    for (uint32_t i = 0; i < n; i++) {
        float q = st > 0 ? nearbyintf((x[i] - mn) / st) : 0.0f;
        q = q < 0 ? 0 : q > 3 ? 3 : q;
        x[i] = vkvtn_round_dtype(mn + q * st, dtype);
    }
}

typedef struct vkve_cq_arg {
    float scale;
} vkve_cq_arg;

/* CalibQuant's 1-bit quant(): x_min = min * scale, x_max = max * scale,
 * step = x_max - x_min, code = round(clamp((x - x_min) / step, 0, 1)) with
 * round-half-to-even (exactly 0.5 -> 0), reconstruction x_min or x_max. */
static void vkve_cq_fn(float *x, uint32_t n, const void *arg, int dtype, float *scratch)
{
    const vkve_cq_arg *a = arg;
    float mn = x[0], mx = x[0];
    for (uint32_t i = 1; i < n; i++) {
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
    }
    float lo = vkvtn_round_dtype(mn * a->scale, dtype),
          hi = vkvtn_round_dtype(mx * a->scale, dtype);
    float st = hi - lo;
    for (uint32_t i = 0; i < n; i++) {
        float u = st > 0 ? (x[i] - lo) / st : 0.0f;
        x[i] = u > 0.5f ? hi : lo;
    }
}

/* Applies fn to every group of one layer's chunk tensor (src -> dst, both
 * pointing at the chunk's first token, row stride H*D). CHANNEL mode: groups
 * of G consecutive visual tokens of one (head, channel), restarting at each
 * range; G = 0 means all visual tokens of the chunk as one group (across
 * ranges). TOKEN mode: G consecutive channels (0 = head_dim) of one token
 * and head. buf/scratch hold max(chunk tokens, head_dim) floats. */
static void vkve_groups(const float *src, float *dst, const vkve_chunk *ck, uint32_t H, uint32_t D,
                        int mode, uint32_t G, vkve_group_fn fn, const void *arg, int dtype,
                        float *buf, float *scratch)
{
    size_t row = (size_t)H * D;
    if (mode == VKV_GROUP_TOKEN) {
        uint32_t g = G ? G : D;
        for (uint32_t j = 0; j < ck->nv; j++)
            for (uint32_t h = 0; h < H; h++)
                for (uint32_t c0 = 0; c0 < D; c0 += g) {
                    size_t at = ck->vt[j] * row + (size_t)h * D + c0;
                    memcpy(buf, src + at, g * sizeof *buf);
                    fn(buf, g, arg, dtype, scratch);
                    memcpy(dst + at, buf, g * sizeof *buf);
                }
        return;
    }
    /* CHANNEL: list the groups as [first, count) spans over ck->vt */
    uint32_t first = 0;
    for (uint32_t ri = 0; ri < ck->nr || (G == 0 && ri == 0); ri++) {
        uint32_t len = G == 0 ? ck->nv : ck->r[ri].len;
        uint32_t gs = G == 0 ? ck->nv : G;
        for (uint32_t g0 = 0; g0 < len; g0 += gs) {
            uint32_t cnt = len - g0 < gs ? len - g0 : gs;
            for (uint32_t h = 0; h < H; h++)
                for (uint32_t d = 0; d < D; d++) {
                    size_t off = (size_t)h * D + d;
                    for (uint32_t j = 0; j < cnt; j++)
                        buf[j] = src[ck->vt[first + g0 + j] * row + off];
                    fn(buf, cnt, arg, dtype, scratch);
                    for (uint32_t j = 0; j < cnt; j++)
                        dst[ck->vt[first + g0 + j] * row + off] = buf[j];
                }
        }
        first += len;
        if (G == 0)
            break;
    }
}

/* ---- rotsign ------------------------------------------------------------- */

/* See codecs.h. */
void vkve_fwht(float *x, uint32_t n)
{
    for (uint32_t h = 1; h < n; h <<= 1)
        for (uint32_t i = 0; i < n; i += h << 1)
            for (uint32_t j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
    float s = 1.0f / sqrtf((float)n);
    for (uint32_t i = 0; i < n; i++)
        x[i] *= s;
}

/* rotsign: subtracts the per-channel mean over the nv rows of y[nv][D] and
 * stores it, rounded to dtype, in mu[D]. */
static void vkve_rs_centre(float *y, uint32_t nv, uint32_t D, int dtype, float *mu)
{
    for (uint32_t j = 0; j < nv; j++)
        for (uint32_t d = 0; d < D; d++)
            mu[d] += y[(size_t)j * D + d];
    for (uint32_t d = 0; d < D; d++)
        mu[d] = vkvtn_round_dtype(mu[d] / (float)nv, dtype);
    for (uint32_t j = 0; j < nv; j++)
        for (uint32_t d = 0; d < D; d++)
            y[(size_t)j * D + d] -= mu[d];
}

/* rotsign per-token scale: a[j] = mean |y_j| (optimal for signs), b = 1. */
static void vkve_rs_token_scale(const float *y, uint32_t nv, uint32_t D, int dtype, float *a,
                                float *b)
{
    for (uint32_t d = 0; d < D; d++)
        b[d] = 1.0f;
    for (uint32_t j = 0; j < nv; j++) {
        double s = 0;
        for (uint32_t d = 0; d < D; d++)
            s += fabsf(y[(size_t)j * D + d]);
        a[j] = vkvtn_round_dtype((float)(s / D), dtype); /* mean |y|: optimal for signs */
    }
}

/* One half-step of the rank-1 fit |y| ~ a b^T: out[i] = sum_k |y[i*si +
 * k*sk]| f[k] / |f|^2 for i < n, k < m (0 when f is all zero). */
static void vkve_ls_factor(const float *y, uint32_t n, uint32_t m, size_t si, size_t sk,
                           const float *f, float *out)
{
    double ff = 0;
    for (uint32_t k = 0; k < m; k++)
        ff += (double)f[k] * f[k];
    for (uint32_t i = 0; i < n; i++) {
        double s = 0;
        for (uint32_t k = 0; k < m; k++)
            s += fabsf(y[i * si + k * sk]) * f[k];
        out[i] = ff > 0 ? (float)(s / ff) : 0.0f;
    }
}

/* rotsign rank-1 scale: fits |y_jd| ~ a_j b_d by alternating least squares
 * and stores b normalised to max 1 (a takes the factor), both rounded to
 * dtype. */
static void vkve_rs_rank1(const float *y, uint32_t nv, uint32_t D, int dtype, float *a, float *b)
{
    for (uint32_t d = 0; d < D; d++) {
        double s = 0;
        for (uint32_t j = 0; j < nv; j++)
            s += fabsf(y[(size_t)j * D + d]);
        b[d] = (float)(s / nv);
    }
    for (int it = 0; it < 3; it++) {
        vkve_ls_factor(y, nv, D, D, 1, b, a);
        vkve_ls_factor(y, D, nv, 1, D, a, b);
    }
    /* store b normalised to max 1 so both fit fp16 comfortably */
    float bm = 0;
    for (uint32_t d = 0; d < D; d++)
        bm = b[d] > bm ? b[d] : bm;
    for (uint32_t d = 0; d < D; d++)
        b[d] = vkvtn_round_dtype(bm > 0 ? b[d] / bm : 0.0f, dtype);
    for (uint32_t j = 0; j < nv; j++)
        a[j] = vkvtn_round_dtype(a[j] * bm, dtype);
}

/* rotsign on one (layer, head) of a chunk for tensor t (0 keys, 1 values):
 * y[nv][D] is scratch filled with the visual rows; sg the sign vector;
 * a[nv], b[D], mu[D] scratch. Writes the reconstruction into dst rows (dst
 * may be src). */
static void vkve_rotsign_head(const vkve_codec *c, int t, const float *src, float *dst,
                              const vkve_chunk *ck, uint32_t H, uint32_t D, uint32_t h,
                              const float *sg, int dtype, float *y, float *a, float *b, float *mu)
{
    size_t row = (size_t)H * D;
    uint32_t nv = ck->nv;
    for (uint32_t j = 0; j < nv; j++)
        memcpy(y + (size_t)j * D, src + ck->vt[j] * row + (size_t)h * D, D * sizeof *y);
    for (uint32_t d = 0; d < D; d++)
        mu[d] = 0;
    if (c->center[t])
        vkve_rs_centre(y, nv, D, dtype, mu);
    if (c->rot[t])
        for (uint32_t j = 0; j < nv; j++) {
            float *r = y + (size_t)j * D;
            for (uint32_t d = 0; d < D; d++)
                r[d] *= sg[d];
            vkve_fwht(r, D);
        }
    if (c->scale[t] == VKVE_SCALE_TOKEN)
        vkve_rs_token_scale(y, nv, D, dtype, a, b);
    else
        vkve_rs_rank1(y, nv, D, dtype, a, b);
    for (uint32_t j = 0; j < nv; j++) {
        float *r = y + (size_t)j * D;
        for (uint32_t d = 0; d < D; d++)
            r[d] = (r[d] >= 0 ? 1.0f : -1.0f) * a[j] * b[d];
        if (c->rot[t]) {
            vkve_fwht(r, D);
            for (uint32_t d = 0; d < D; d++)
                r[d] *= sg[d];
        }
        float *o = dst + ck->vt[j] * row + (size_t)h * D;
        for (uint32_t d = 0; d < D; d++)
            o[d] = vkvtn_round_dtype(r[d] + mu[d], dtype);
    }
}

/* See codecs_impl.h. */
void vkve_ref_layer(const vkve_codec *c, float *ks, float *vs, const vkve_chunk *ck, uint32_t H,
                    uint32_t D, int dtype, vkve_scratch *s)
{
    if (c->kind == VKVE_BLOCK) {
        vkve_rule_arg ka = {c->spec.rule, c->spec.iters, c->spec.k_param};
        vkve_rule_arg va = {c->spec.rule, c->spec.iters, c->spec.v_param};
        vkve_groups(ks, ks, ck, H, D, c->spec.k_mode, c->spec.k_group, vkve_rule_fn, &ka, dtype,
                    s->buf, s->scr);
        vkve_groups(vs, vs, ck, H, D, c->spec.v_mode, c->spec.v_group, vkve_rule_fn, &va, dtype,
                    s->buf, s->scr);
    } else if (c->kind == VKVE_CALIBQUANT) {
        vkve_cq_arg ka = {c->ks}, va = {c->vs};
        vkve_groups(ks, ks, ck, H, D, VKV_GROUP_CHANNEL, 0, vkve_cq_fn, &ka, dtype, s->buf, s->scr);
        vkve_groups(vs, vs, ck, H, D, VKV_GROUP_CHANNEL, 0, vkve_cq_fn, &va, dtype, s->buf, s->scr);
    } else if (c->kind == VKVE_REF2BIT) {
        vkve_groups(ks, ks, ck, H, D, VKV_GROUP_CHANNEL, 256, vkve_2bit_fn, NULL, dtype, s->buf,
                    s->scr);
        vkve_groups(vs, vs, ck, H, D, VKV_GROUP_TOKEN, 0, vkve_2bit_fn, NULL, dtype, s->buf,
                    s->scr);
    } else {
        for (uint32_t h = 0; h < H; h++) {
            vkve_rotsign_head(c, 0, ks, ks, ck, H, D, h, s->sg, dtype, s->y, s->a, s->b, s->mu);
            vkve_rotsign_head(c, 1, vs, vs, ck, H, D, h, s->sg, dtype, s->y, s->a, s->b, s->mu);
        }
    }
}
