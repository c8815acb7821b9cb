/*
 * tests/kernels/kernels_attend_test.c - vkv_attend and vkv_attend_merge.
 *
 * Ground truth ("naive"): decode the block with the existing decoder
 * (vkv_decode, source dtype), widen to double and run an exact softmax
 * attention in double precision. The scalar reference of vkv_attend must
 * agree within NAMED bounds derived per query from the naive pass (below);
 * the AVX2 kernels must agree with the scalar reference within the fp32
 * part of the same bounds (times 2: both sides round).
 *
 * Bounds, for one query row q (scale s) over tokens t with decoded keys
 * k^_t and values v^_t, kmax / vmax the largest |element| of the head:
 *   score error  E_t = s * (U * sum_d |q_d||k^_td|
 *                           + C32 * hd^1.5 * sum_d |q_d| * kmax)
 *     U   = the dtype's rounding unit (2^-11 fp16, 2^-8 bf16) for rotsign and tc,
 *           whose decode rounds a fp32 reconstruction that vkv_attend uses
 *           unrounded; 0 for the level rules (decode is an exact select) -
 *           DTYPE_U(rule, dtype)
 *     C32 = 4 * 2^-24: fp32 evaluation in the rotated domain (an FWHT of
 *           the query and a +-1 sum of hd terms) - ATT_C32
 *   output error |dout_d| <= (U + expm1(2 max_t E_t) + C32 * (T + hd^1.5))
 *                            * sum_t p_t (|v^_td| + vmax)
 *   lse error    <= max_t E_t + C32 * T * (|lse| + 1)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <dirent.h>

#include <cmocka.h>
#include <xxhash.h>

#include "kernels_util.h"
#include "vkv/attend.h"

#define ATT_C32 (4.0 / 16777216.0)
/* SIMD vs scalar reference: both evaluate the same fp32 expressions in
 * different orders (table lookups, histogram folds, FMA), so they differ by
 * a few roundings per term of the longest chain (hd channels + T tokens):
 * |d out_d| < ATT_SIMD_TOL * (hd + T) * sum_t p_t (|v^_td| + vmax), and
 * |d lse| < ATT_SIMD_TOL * (hd + T) * (|lse| + 1). */
#define ATT_SIMD_TOL (8.0 / 16777216.0)

/* Rounding unit of decoded visual elements relative to vkv_attend's fp32. */
static double dtype_u(int rule, int dtype)
{
    if (rule != VKV_RULE_ROTSIGN && rule != VKV_RULE_TC)
        return 0.0;
    return dtype == VKV_DTYPE_BF16 ? 1.0 / 256.0 : 1.0 / 2048.0;
}

/* An encoded block (owns data, malloc'ed to exactly `size` bytes). */
typedef struct tblock {
    uint8_t *data;
    size_t size;
    vkv_shape shape;
    ku_chunk src; /* the encoded source */
    ku_chunk dec; /* vkv_decode of the block */
    int rule;
} tblock;

/* Encodes a filled chunk of `shape` with spec text `spec` and decodes it. */
static void tblock_make(tblock *b, const vkv_shape *shape, const char *spec_text, uint64_t seed)
{
    vkv_codec_spec spec;
    memset(b, 0, sizeof(*b));
    assert_int_equal(vkv_codec_spec_parse(spec_text, &spec), VKV_OK);
    assert_int_equal(ku_chunk_alloc(&b->src, shape, 3), 0);
    assert_int_equal(ku_chunk_alloc(&b->dec, shape, 0), 0);
    ku_chunk_fill(&b->src, seed);
    assert_int_equal(vkv_codec_encoded_size(shape, &spec, &b->size), VKV_OK);
    b->data = malloc(b->size);
    assert_non_null(b->data);
    vkv_kv_src s = ku_src(&b->src);
    assert_int_equal(vkv_encode(shape, &spec, &s, b->data, b->size), VKV_OK);
    vkv_kv_dst d = ku_dst(&b->dec);
    assert_int_equal(vkv_decode(b->data, b->size, VKV_DECODE_VERIFY, &d), VKV_OK);
    b->shape = *shape;
    b->rule = spec.rule;
}

static void tblock_free(tblock *b)
{
    free(b->data);
    ku_chunk_free(&b->src);
    ku_chunk_free(&b->dec);
}

/* Float rows of one head of a decoded chunk layer: K/V [T][hd]. */
static void gather(const ku_chunk *c, uint32_t l, uint32_t h, double *K, double *V)
{
    const vkv_shape *sh = &c->shape;
    for (uint32_t t = 0; t < sh->tokens; t++)
        for (uint32_t d = 0; d < sh->head_dim; d++) {
            K[(size_t)t * sh->head_dim + d] = vkvk_to_f32(*ku_at(c, 0, l, t, h, d), sh->dtype);
            V[(size_t)t * sh->head_dim + d] = vkvk_to_f32(*ku_at(c, 1, l, t, h, d), sh->dtype);
        }
}

/* Exact attention of one query row over T tokens (K, V [T][hd] doubles;
 * keep[t] 0 masks token t out; u[t] the rounding unit of token t) with the
 * bounds of the file comment. */
typedef struct naive_res {
    double out[VKV_BLOCK_MAX_HEAD_DIM];
    double lse;
    double bound_out[VKV_BLOCK_MAX_HEAD_DIM];
    double bound_lse;
    double mag_out[VKV_BLOCK_MAX_HEAD_DIM]; /* sum_t p_t (|v^_td| + vmax) */
} naive_res;

static void naive_attend(const double *q, double scale, uint32_t hd, uint32_t T, const double *K,
                         const double *V, const uint8_t *keep, const double *u, double extra_u,
                         naive_res *res)
{
    double kmax = 0, vmax = 0, qa = 0, umax = extra_u;
    for (size_t i = 0; i < (size_t)T * hd; i++) {
        kmax = fmax(kmax, fabs(K[i]));
        vmax = fmax(vmax, fabs(V[i]));
    }
    for (uint32_t d = 0; d < hd; d++)
        qa += fabs(q[d]);
    double *s = malloc(T * sizeof(double)), m = -INFINITY, emax = 0;
    for (uint32_t t = 0; t < T; t++) {
        double dot = 0, mag = 0;
        for (uint32_t d = 0; d < hd; d++) {
            dot += q[d] * K[(size_t)t * hd + d];
            mag += fabs(q[d] * K[(size_t)t * hd + d]);
        }
        s[t] = scale * dot;
        if (keep[t]) {
            m = fmax(m, s[t]);
            double e = fabs(scale) * (u[t] * mag + ATT_C32 * pow(hd, 1.5) * qa * kmax);
            emax = fmax(emax, e);
            umax = fmax(umax, u[t]);
        }
    }
    memset(res, 0, sizeof(*res));
    if (m == -INFINITY) {
        res->lse = -INFINITY;
        free(s);
        return;
    }
    double sum = 0;
    for (uint32_t t = 0; t < T; t++)
        sum += keep[t] ? exp(s[t] - m) : 0.0;
    res->lse = m + log(sum);
    double f = umax + expm1(2 * emax) + ATT_C32 * (T + pow(hd, 1.5));
    for (uint32_t t = 0; t < T; t++) {
        if (!keep[t])
            continue;
        double p = exp(s[t] - m) / sum;
        for (uint32_t d = 0; d < hd; d++) {
            res->out[d] += p * V[(size_t)t * hd + d];
            res->bound_out[d] += f * p * (fabs(V[(size_t)t * hd + d]) + vmax);
            res->mag_out[d] += p * (fabs(V[(size_t)t * hd + d]) + vmax);
        }
    }
    for (uint32_t d = 0; d < hd; d++)
        res->bound_out[d] += 1e-30;
    res->bound_lse = emax + ATT_C32 * T * (fabs(res->lse) + 1.0);
    free(s);
}

/* Queries [n_q][n_heads][hd] in q_dtype, and their exact values as doubles. */
typedef struct tquery {
    uint32_t n_q, n_heads, hd;
    uint8_t dtype;
    void *q;
    double *qd;
} tquery;

static void tquery_make(tquery *tq, uint32_t n_q, uint32_t n_heads, uint32_t hd, uint8_t dtype,
                        uint64_t seed)
{
    size_t n = (size_t)n_q * n_heads * hd;
    tq->n_q = n_q;
    tq->n_heads = n_heads;
    tq->hd = hd;
    tq->dtype = dtype;
    tq->q = malloc(n * 4);
    tq->qd = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        float x = 1.5f * ku_unif(&seed);
        if (dtype == VKV_ATTEND_F32) {
            memcpy((uint8_t *)tq->q + 4 * i, &x, 4);
            tq->qd[i] = x;
        } else {
            uint16_t hb = vkvk_from_f32(x, dtype);
            memcpy((uint8_t *)tq->q + 2 * i, &hb, 2);
            tq->qd[i] = vkvk_to_f32(hb, dtype);
        }
    }
}

static void tquery_free(tquery *tq)
{
    free(tq->q);
    free(tq->qd);
}

/* Args for attending tq over layer l of block b (out/lse caller buffers). */
static vkv_attend_args args_for(const tblock *b, const tquery *tq, uint32_t l, float scale,
                                const uint8_t *mask, float *out, float *lse)
{
    vkv_attend_args a;
    memset(&a, 0, sizeof(a));
    a.kv_heads = b->shape.kv_heads;
    a.head_dim = b->shape.head_dim;
    a.layers = b->shape.layers;
    a.layer = l;
    a.n_q = tq->n_q;
    a.n_heads = tq->n_heads;
    a.q_dtype = tq->dtype;
    a.q = tq->q;
    a.scale = scale;
    a.mask = mask;
    a.mask_tokens = mask ? b->shape.tokens : 0;
    a.out = out;
    a.lse = lse;
    return a;
}

/* Compares vkv_attend (impl `impl`) on every layer of b with the naive path
 * and, for SIMD impls, with the scalar reference. Returns the largest
 * error / bound ratio seen (< 1 passes). */
/* Largest SIMD-vs-reference error / bound ratio seen so far. */
static double worst_simd;

static double check_block(const tblock *b, const tquery *tq, const uint8_t *mask)
{
    const vkv_shape *sh = &b->shape;
    const uint32_t hd = sh->head_dim, T = sh->tokens, gq = tq->n_heads / sh->kv_heads;
    const float scale = 1.0f / sqrtf((float)hd);
    size_t rows = (size_t)tq->n_q * tq->n_heads;
    float *out = malloc(rows * hd * 4), *lse = malloc(rows * 4);
    float *out2 = malloc(rows * hd * 4), *lse2 = malloc(rows * 4);
    double *K = malloc((size_t)T * hd * sizeof(double)),
           *V = malloc((size_t)T * hd * sizeof(double));
    double *u = malloc(T * sizeof(double));
    uint8_t *keep = malloc(T);
    naive_res *nr = malloc(sizeof(*nr));
    double worst = 0;
    for (uint32_t t = 0; t < T; t++)
        u[t] = ku_range_of(sh, t) >= 0 ? dtype_u(b->rule, sh->dtype) : 0.0;
    for (uint32_t l = 0; l < sh->layers; l++) {
        vkv_attend_args a = args_for(b, tq, l, scale, mask, out, lse);
        assert_int_equal(vkv_codec_set_impl(VKV_IMPL_SCALAR), VKV_OK);
        assert_int_equal(vkv_attend(b->data, b->size, 0, &a), VKV_OK);
        int have2 = vkv_codec_set_impl(VKV_IMPL_AVX2) == VKV_OK;
        if (have2) {
            vkv_attend_args a2 = args_for(b, tq, l, scale, mask, out2, lse2);
            assert_int_equal(vkv_attend(b->data, b->size, 0, &a2), VKV_OK);
        }
        for (uint32_t h = 0; h < sh->kv_heads; h++) {
            gather(&b->dec, l, h, K, V);
            for (uint32_t i = 0; i < tq->n_q; i++)
                for (uint32_t j = 0; j < gq; j++) {
                    size_t row = (size_t)i * tq->n_heads + h * gq + j;
                    for (uint32_t t = 0; t < T; t++)
                        keep[t] = mask ? mask[(size_t)i * T + t] != 0 : 1;
                    naive_attend(tq->qd + row * hd, scale, hd, T, K, V, keep, u, 0.0, nr);
                    if (nr->lse == -INFINITY) {
                        assert_true(lse[row] == -INFINITY);
                        for (uint32_t d = 0; d < hd; d++)
                            assert_true(out[row * hd + d] == 0.0f);
                        continue;
                    }
                    double e = fabs(lse[row] - nr->lse) / nr->bound_lse;
                    worst = fmax(worst, e);
                    if (!(e < 1.0))
                        fail_msg("lse row %zu layer %u: %.9g vs %.9g (bound %.3g)", row, l,
                                 (double)lse[row], nr->lse, nr->bound_lse);
                    for (uint32_t d = 0; d < hd; d++) {
                        e = fabs(out[row * hd + d] - nr->out[d]) / nr->bound_out[d];
                        worst = fmax(worst, e);
                        if (!(e < 1.0))
                            fail_msg("out row %zu d %u layer %u: %.9g vs %.9g (bound %.3g)", row, d,
                                     l, (double)out[row * hd + d], nr->out[d], nr->bound_out[d]);
                    }
                    /* SIMD twin vs the reference: ATT_SIMD_TOL */
                    if (have2) {
                        double tol = ATT_SIMD_TOL * (hd + T);
                        double el = fabs(lse2[row] - lse[row]) / (tol * (fabs(nr->lse) + 1.0));
                        worst_simd = fmax(worst_simd, el);
                        if (!(el < 1.0))
                            fail_msg("avx2 lse row %zu: %.9g vs %.9g", row, (double)lse2[row],
                                     (double)lse[row]);
                        for (uint32_t d = 0; d < hd; d++) {
                            double eo = fabs(out2[row * hd + d] - out[row * hd + d]) /
                                        (tol * nr->mag_out[d] + 1e-30);
                            worst_simd = fmax(worst_simd, eo);
                            if (!(eo < 1.0))
                                fail_msg("avx2 out row %zu d %u: %.9g vs %.9g (tol %.3g)", row, d,
                                         (double)out2[row * hd + d], (double)out[row * hd + d],
                                         tol * nr->mag_out[d]);
                        }
                    }
                }
        }
    }
    free(out);
    free(lse);
    free(out2);
    free(lse2);
    free(K);
    free(V);
    free(u);
    free(keep);
    free(nr);
    (void)vkv_codec_set_impl(VKV_IMPL_AUTO);
    return worst;
}

static const char *const specs[] = {
    "rotsign",
    "rotsign:kmode=channel,kbits=16,vmode=token,vbits=16,iters=2",
    "rotsign:kmode=token,kbits=16,vmode=token,vbits=8",
    "minmax",
    "minmax:kmode=token,kg=16,vmode=channel,vg=5",
    "quantile",
    "quantile:kmode=token,kg=8,vmode=token,vg=16",
    "lloyd",
    "lloyd:kmode=token,kg=32,vmode=channel,vg=7,iters=2",
    "tc",
    "tc:kb=2,vb=1.5,aw=1",
    "tc:kb=0.5,vb=3",
};

/* Shapes: several images with raw tokens between and at the edges, visual
 * ranges on the chunk edges, all raw, all visual, one token. */
static const vkv_shape shapes[] = {
    {2, 2, 32, 40, VKV_DTYPE_F16, 3, {{3, 9}, {12, 10}, {30, 7}}},
    {1, 2, 64, 33, VKV_DTYPE_BF16, 2, {{0, 13}, {20, 13}}},
    {2, 1, 128, 24, VKV_DTYPE_F16, 0, {{0, 0}}},
    {1, 3, 32, 50, VKV_DTYPE_F16, 1, {{0, 50}}},
    {1, 2, 128, 1, VKV_DTYPE_BF16, 1, {{0, 1}}},
};

static void every_rule_shape_dtype_and_gqa_matches_naive(void **state)
{
    (void)state;
    uint64_t seed = 1;
    double worst = 0;
    int cases = 0;
    for (size_t s = 0; s < sizeof(specs) / sizeof(specs[0]); s++)
        for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
            vkv_shape sh = shapes[k];
            tblock b;
            tblock_make(&b, &sh, specs[s], 100 + s * 10 + k);
            static const uint32_t ratios[] = {1, 2, 3};
            static const uint8_t qdt[] = {VKV_ATTEND_F32, VKV_ATTEND_F16, VKV_ATTEND_BF16};
            uint32_t ratio = ratios[(s + k) % 3], nq = 1 + (uint32_t)((s + k) % 2);
            tquery tq;
            tquery_make(&tq, nq, sh.kv_heads * ratio, sh.head_dim, qdt[(s + 2 * k) % 3], seed++);
            worst = fmax(worst, check_block(&b, &tq, NULL));
            cases++;
            tquery_free(&tq);
            tblock_free(&b);
        }
    print_message("attend vs naive: %d cases, worst error/bound %.3g; avx2 vs scalar %.3g\n", cases,
                  worst, worst_simd);
}

static void masks_and_empty_rows(void **state)
{
    (void)state;
    vkv_shape sh = {2, 2, 64, 45, VKV_DTYPE_F16, 2, {{0, 20}, {25, 18}}};
    for (int s = 0; s < 4; s++) {
        const char *sp = s == 0 ? "rotsign" : s == 1 ? "minmax" : s == 2 ? "lloyd" : "quantile";
        tblock b;
        tblock_make(&b, &sh, sp, 77 + s);
        tquery tq;
        tquery_make(&tq, 3, 8, 64, VKV_ATTEND_F32, 9 + s); /* 12 rows per KV head */
        uint8_t *mask = malloc(3 * sh.tokens);
        uint64_t ms = 5 + s;
        for (uint32_t t = 0; t < sh.tokens; t++) {
            mask[t] = (ku_rand(&ms) & 3) != 0;        /* query 0: random */
            mask[sh.tokens + t] = 0;                  /* query 1: nothing */
            mask[2 * sh.tokens + t] = t < 22 ? 1 : 0; /* query 2: a prefix */
        }
        check_block(&b, &tq, mask);
        free(mask);
        tquery_free(&tq);
        tblock_free(&b);
    }
}

/* The longest block (65536 tokens) with more rows per KV head than one
 * pass of the driver's score buffer holds (72 rows > 64 per pass). */
static void long_blocks_take_several_row_passes(void **state)
{
    (void)state;
    vkv_shape sh = {1, 1, 8, 65536, VKV_DTYPE_F16, 2, {{0, 40000}, {40100, 25000}}};
    tblock b;
    tblock_make(&b, &sh, "rotsign", 606);
    tquery tq;
    tquery_make(&tq, 9, 8, 8, VKV_ATTEND_F32, 607);
    uint8_t *mask = malloc((size_t)9 * sh.tokens);
    uint64_t ms = 608;
    for (size_t i = 0; i < (size_t)9 * sh.tokens; i++)
        mask[i] = (ku_rand(&ms) % 3) != 0 || i / sh.tokens == 8; /* query 8 sees all */
    check_block(&b, &tq, mask);
    free(mask);
    tquery_free(&tq);
    tblock_free(&b);
}

/* Two blocks (an image split over two chunks) and the worker's own fp16
 * tokens, merged, equal one softmax over all of them. */
static void merge_equals_one_softmax(void **state)
{
    (void)state;
    const uint32_t hd = 128, kvh = 2, nh = 8, nq = 2, Town = 11;
    vkv_shape sa = {1, kvh, hd, 30, VKV_DTYPE_F16, 2, {{0, 4}, {4, 26}}};
    vkv_shape sb = {1, kvh, hd, 25, VKV_DTYPE_F16, 1, {{0, 19}}};
    tblock A, B;
    tblock_make(&A, &sa, "rotsign", 501);
    tblock_make(&B, &sb, "rotsign", 502);
    tquery tq;
    tquery_make(&tq, nq, nh, hd, VKV_ATTEND_F16, 503);
    const float scale = 1.0f / sqrtf((float)hd);
    const size_t rows = (size_t)nq * nh;
    float *oa = malloc(rows * hd * 4), *la = malloc(rows * 4);
    float *ob = malloc(rows * hd * 4), *lb = malloc(rows * 4);
    float *ow = malloc(rows * hd * 4), *lw = malloc(rows * 4);
    float *om = malloc(rows * hd * 4), *lm = malloc(rows * 4);
    vkv_attend_args a = args_for(&A, &tq, 0, scale, NULL, oa, la);
    assert_int_equal(vkv_attend(A.data, A.size, 0, &a), VKV_OK);
    a = args_for(&B, &tq, 0, scale, NULL, ob, lb);
    assert_int_equal(vkv_attend(B.data, B.size, 0, &a), VKV_OK);
    /* the worker's own tokens: fp16 K/V [Town][kvh][hd] */
    uint16_t *wk = malloc((size_t)Town * kvh * hd * 2), *wv = malloc((size_t)Town * kvh * hd * 2);
    uint64_t seed = 504;
    for (size_t i = 0; i < (size_t)Town * kvh * hd; i++) {
        wk[i] = vkvk_from_f32(2.0f * ku_unif(&seed), VKV_DTYPE_F16);
        wv[i] = vkvk_from_f32(ku_unif(&seed), VKV_DTYPE_F16);
    }
    const uint32_t T = sa.tokens + sb.tokens + Town;
    double *K = malloc((size_t)T * hd * 8), *V = malloc((size_t)T * hd * 8);
    double *K1 = malloc((size_t)sa.tokens * hd * 8), *V1 = malloc((size_t)sa.tokens * hd * 8);
    double *K2 = malloc((size_t)sb.tokens * hd * 8), *V2 = malloc((size_t)sb.tokens * hd * 8);
    double *u = malloc(T * 8);
    uint8_t *keep = malloc(T);
    naive_res *nr = malloc(sizeof(*nr));
    for (uint32_t h = 0; h < kvh; h++) {
        /* own attention in fp32 (what the worker's kernel would give) */
        for (uint32_t r = 0; r < rows; r++) {
            if ((r % nh) / (nh / kvh) != h)
                continue;
            const double *q = tq.qd + (size_t)r * hd;
            float s[16], m = -INFINITY, sum = 0;
            for (uint32_t t = 0; t < Town; t++) {
                float dot = 0;
                for (uint32_t d = 0; d < hd; d++)
                    dot += (float)q[d] * vkvk_f16_to_f32(wk[((size_t)t * kvh + h) * hd + d]);
                s[t] = dot * scale;
                m = fmaxf(m, s[t]);
            }
            for (uint32_t d = 0; d < hd; d++)
                ow[r * hd + d] = 0;
            for (uint32_t t = 0; t < Town; t++) {
                float p = expf(s[t] - m);
                sum += p;
                for (uint32_t d = 0; d < hd; d++)
                    ow[r * hd + d] += p * vkvk_f16_to_f32(wv[((size_t)t * kvh + h) * hd + d]);
            }
            for (uint32_t d = 0; d < hd; d++)
                ow[r * hd + d] /= sum;
            lw[r] = m + logf(sum);
        }
    }
    const float *outs[3] = {oa, ob, ow}, *lses[3] = {la, lb, lw};
    assert_int_equal(vkv_attend_merge(3, outs, lses, rows, hd, om, lm), VKV_OK);
    /* in place, pairwise: ((A + B) + own) into oa/la */
    const float *o2[2] = {oa, ob}, *l2[2] = {la, lb};
    assert_int_equal(vkv_attend_merge(2, o2, l2, rows, hd, oa, la), VKV_OK);
    const float *o3[2] = {oa, ow}, *l3[2] = {la, lw};
    assert_int_equal(vkv_attend_merge(2, o3, l3, rows, hd, oa, la), VKV_OK);
    for (uint32_t h = 0; h < kvh; h++) {
        gather(&A.dec, 0, h, K1, V1);
        gather(&B.dec, 0, h, K2, V2);
        memcpy(K, K1, (size_t)sa.tokens * hd * 8);
        memcpy(V, V1, (size_t)sa.tokens * hd * 8);
        memcpy(K + (size_t)sa.tokens * hd, K2, (size_t)sb.tokens * hd * 8);
        memcpy(V + (size_t)sa.tokens * hd, V2, (size_t)sb.tokens * hd * 8);
        for (uint32_t t = 0; t < Town; t++)
            for (uint32_t d = 0; d < hd; d++) {
                size_t o = (size_t)(sa.tokens + sb.tokens + t) * hd + d;
                K[o] = vkvk_f16_to_f32(wk[((size_t)t * kvh + h) * hd + d]);
                V[o] = vkvk_f16_to_f32(wv[((size_t)t * kvh + h) * hd + d]);
            }
        for (uint32_t t = 0; t < T; t++) {
            keep[t] = 1;
            uint32_t ta = t, tb = t - sa.tokens;
            u[t] = t < sa.tokens               ? (ku_range_of(&sa, ta) >= 0 ? 1.0 / 2048 : 0)
                   : t < sa.tokens + sb.tokens ? (ku_range_of(&sb, tb) >= 0 ? 1.0 / 2048 : 0)
                                               : 0.0;
        }
        for (uint32_t r = 0; r < rows; r++) {
            if ((r % nh) / (nh / kvh) != h)
                continue;
            /* the merge itself adds a few fp32 roundings: 8 * 2^-24 relative */
            naive_attend(tq.qd + (size_t)r * hd, scale, hd, T, K, V, keep, u, 8.0 / 16777216.0, nr);
            assert_true(fabs(lm[r] - nr->lse) < nr->bound_lse + 8.0 / 16777216.0 * fabs(nr->lse));
            assert_true(fabs(la[r] - nr->lse) < nr->bound_lse + 8.0 / 16777216.0 * fabs(nr->lse));
            for (uint32_t d = 0; d < hd; d++) {
                if (!(fabs(om[r * hd + d] - nr->out[d]) < nr->bound_out[d]))
                    fail_msg("merged row %u d %u: %.9g vs %.9g (bound %.3g)", r, d,
                             (double)om[r * hd + d], nr->out[d], nr->bound_out[d]);
                assert_true(fabs(oa[r * hd + d] - nr->out[d]) < nr->bound_out[d]);
            }
        }
    }
    free(oa);
    free(la);
    free(ob);
    free(lb);
    free(ow);
    free(lw);
    free(om);
    free(lm);
    free(wk);
    free(wv);
    free(K);
    free(V);
    free(K1);
    free(V1);
    free(K2);
    free(V2);
    free(u);
    free(keep);
    free(nr);
    tquery_free(&tq);
    tblock_free(&A);
    tblock_free(&B);
}

static void merge_edge_cases_and_errors(void **state)
{
    (void)state;
    float o1[8] = {1, 2, 3, 4, 5, 6, 7, 8}, o2[8] = {8, 7, 6, 5, 4, 3, 2, 1};
    float l1[1] = {0.5f}, l2[1] = {-INFINITY}, out[8], lse[1];
    const float *outs[2] = {o1, o2}, *lses[2] = {l1, l2};
    /* a part with no tokens carries no weight */
    assert_int_equal(vkv_attend_merge(2, outs, lses, 1, 8, out, lse), VKV_OK);
    for (int d = 0; d < 8; d++)
        assert_true(out[d] == o1[d]);
    assert_true(lse[0] == 0.5f);
    /* equal lse: the mean, and lse + log 2 */
    l2[0] = 0.5f;
    assert_int_equal(vkv_attend_merge(2, outs, lses, 1, 8, out, lse), VKV_OK);
    for (int d = 0; d < 8; d++)
        assert_true(fabsf(out[d] - 4.5f) < 1e-6f);
    assert_true(fabsf(lse[0] - (0.5f + logf(2.0f))) < 1e-6f);
    /* every part empty */
    l1[0] = l2[0] = -INFINITY;
    assert_int_equal(vkv_attend_merge(2, outs, lses, 1, 8, out, NULL), VKV_OK);
    for (int d = 0; d < 8; d++)
        assert_true(out[d] == 0.0f);
    /* errors: nothing written */
    float keep[8];
    memcpy(keep, out, sizeof(out));
    l1[0] = NAN;
    assert_int_equal(vkv_attend_merge(2, outs, lses, 1, 8, out, lse), VKV_ENONFINITE);
    l1[0] = INFINITY;
    assert_int_equal(vkv_attend_merge(2, outs, lses, 1, 8, out, lse), VKV_ENONFINITE);
    assert_memory_equal(keep, out, sizeof(out));
    l1[0] = 0;
    assert_int_equal(vkv_attend_merge(0, outs, lses, 1, 8, out, lse), VKV_EINVAL);
    assert_int_equal(vkv_attend_merge(2, NULL, lses, 1, 8, out, lse), VKV_EINVAL);
    assert_int_equal(vkv_attend_merge(2, outs, lses, 1, 0, out, lse), VKV_EINVAL);
    assert_int_equal(vkv_attend_merge(2, outs, lses, 1, 8, NULL, lse), VKV_EINVAL);
    const float *bad[2] = {o1, NULL};
    assert_int_equal(vkv_attend_merge(2, bad, lses, 1, 8, out, lse), VKV_EINVAL);
}

/* Sentinel-filled out/lse (EXP_OUT / EXP_LSE floats, the buffers of
 * bad_input_gets_specific_errors) stay untouched by a failing call. */
#define EXP_OUT (2 * 4 * 32)
#define EXP_LSE 8
static void expect_error(const void *blk, size_t size, unsigned flags, const vkv_attend_args *a,
                         int want)
{
    for (size_t i = 0; i < EXP_OUT && a->out; i++)
        a->out[i] = 12345.0f;
    for (size_t i = 0; i < EXP_LSE && a->lse; i++)
        a->lse[i] = 54321.0f;
    assert_int_equal(vkv_attend(blk, size, flags, a), want);
    for (size_t i = 0; i < EXP_OUT && a->out; i++)
        assert_true(a->out[i] == 12345.0f);
    for (size_t i = 0; i < EXP_LSE && a->lse; i++)
        assert_true(a->lse[i] == 54321.0f);
}

static void bad_input_gets_specific_errors(void **state)
{
    (void)state;
    vkv_shape sh = {3, 2, 32, 20, VKV_DTYPE_F16, 1, {{4, 12}}};
    tblock b;
    tblock_make(&b, &sh, "rotsign", 900);
    tquery tq;
    tquery_make(&tq, 2, 4, 32, VKV_ATTEND_F32, 901);
    float out[EXP_OUT], lse[EXP_LSE];
    vkv_attend_args a0 = args_for(&b, &tq, 2, 0.2f, NULL, out, lse), a;
    assert_int_equal(vkv_attend(b.data, b.size, VKV_DECODE_VERIFY, &a0), VKV_OK);
    assert_int_equal(vkv_attend(b.data, b.size, 0, NULL), VKV_EINVAL);
    a = a0;
    expect_error(NULL, b.size, 0, &a, VKV_EINVAL);
    expect_error(b.data, b.size, 4u, &a, VKV_EINVAL); /* unknown flag */
    /* geometry versus the caller's model */
    a = a0;
    a.kv_heads = 4;
    a.n_heads = 8;
    expect_error(b.data, b.size, 0, &a, VKV_ESHAPE);
    a = a0;
    a.head_dim = 64;
    expect_error(b.data, b.size, 0, &a, VKV_ESHAPE);
    a = a0;
    a.layers = 4;
    expect_error(b.data, b.size, 0, &a, VKV_ESHAPE);
    a = a0;
    a.n_heads = 3; /* not a multiple of kv_heads 2 */
    expect_error(b.data, b.size, 0, &a, VKV_ESHAPE);
    a = a0;
    a.layer = 3;
    expect_error(b.data, b.size, 0, &a, VKV_EINVAL);
    a = a0;
    a.n_q = 0;
    assert_int_equal(vkv_attend(b.data, b.size, 0, &a), VKV_EINVAL);
    a = a0;
    a.q_dtype = 0;
    expect_error(b.data, b.size, 0, &a, VKV_EINVAL);
    a = a0;
    a.q = NULL;
    expect_error(b.data, b.size, 0, &a, VKV_EINVAL);
    a = a0;
    a.n_q = 70000;
    a.out = NULL; /* never touched: rejected first */
    assert_int_equal(vkv_attend(b.data, b.size, 0, &a), VKV_EINVAL);
    uint8_t mask[2 * 20];
    memset(mask, 1, sizeof(mask));
    a = a0;
    a.mask = mask;
    a.mask_tokens = 19;
    expect_error(b.data, b.size, 0, &a, VKV_EINVAL);
    a.mask_tokens = 20;
    assert_int_equal(vkv_attend(b.data, b.size, 0, &a), VKV_OK);
    /* non-finite queries and scale */
    a = a0;
    a.scale = INFINITY;
    expect_error(b.data, b.size, 0, &a, VKV_ENONFINITE);
    a.scale = NAN;
    expect_error(b.data, b.size, 0, &a, VKV_ENONFINITE);
    float *qf = tq.q;
    float keepq = qf[77];
    qf[77] = NAN;
    a = a0;
    expect_error(b.data, b.size, 0, &a, VKV_ENONFINITE);
    qf[77] = -INFINITY;
    expect_error(b.data, b.size, 0, &a, VKV_ENONFINITE);
    qf[77] = keepq;
    tquery th;
    tquery_make(&th, 2, 4, 32, VKV_ATTEND_BF16, 902);
    ((uint16_t *)th.q)[5] = 0x7f80; /* bf16 +Inf */
    a = a0;
    a.q = th.q;
    a.q_dtype = VKV_ATTEND_BF16;
    expect_error(b.data, b.size, 0, &a, VKV_ENONFINITE);
    tquery_free(&th);
    /* the block: truncated (exact-size copies, so a read past the end is an
     * ASan error), bad magic, version, tampered header and payload */
    a = a0;
    for (size_t cut = 0; cut < b.size; cut += (cut < 300 ? 1 : 97)) {
        uint8_t *t = malloc(cut ? cut : 1);
        memcpy(t, b.data, cut);
        expect_error(t, cut, 0, &a, VKV_ETRUNC);
        free(t);
    }
    uint8_t *t = malloc(b.size);
    memcpy(t, b.data, b.size);
    t[0] ^= 1;
    expect_error(t, b.size, 0, &a, VKV_EMAGIC);
    memcpy(t, b.data, b.size);
    t[4] = 9;
    expect_error(t, b.size, 0, &a, VKV_EVERSION);
    memcpy(t, b.data, b.size);
    t[60] ^= 1; /* tokens, checksum not updated */
    expect_error(t, b.size, 0, &a, VKV_ECHECKSUM);
    /* tokens changed and the header checksum recomputed: the section
     * table no longer matches the shape */
    vkv_block_header hh;
    memcpy(&hh, b.data, sizeof(hh));
    hh.tokens += 1;
    hh.payload_xxh3 = hh.header_xxh3 = 0;
    uint64_t x = XXH3_64bits(&hh, sizeof(hh));
    memcpy(&hh, b.data, sizeof(hh));
    hh.tokens += 1;
    hh.header_xxh3 = x;
    memcpy(t, &hh, sizeof(hh));
    expect_error(t, b.size, 0, &a, VKV_ECORRUPT);
    /* payload flipped: caught with VERIFY; without it the call stays
     * inside the block (values unspecified) */
    memcpy(t, b.data, b.size);
    for (size_t i = 256; i < b.size; i += 7)
        t[i] ^= 0xa5;
    expect_error(t, b.size, VKV_DECODE_VERIFY, &a, VKV_ECHECKSUM);
    assert_int_equal(vkv_attend(t, b.size, 0, &a), VKV_OK);
    free(t);
    tquery_free(&tq);
    tblock_free(&b);
}

/* Recomputes both checksums of a block in place (as tests/fuzz/fuzz_block.c
 * does for inputs whose control bit 0 is set). */
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
    h.header_xxh3 = XXH3_64bits(&h, sizeof h);
    h.payload_xxh3 = ph;
    memcpy(blk, &h, sizeof h);
}

/* Every block of the block fuzzer's corpus: vkv_attend agrees with
 * vkv_block_check on acceptance and never reads outside the buffer (an
 * exact-size copy; run under ASan in CI). */
static void fuzz_corpus_blocks_are_safe(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/block", VKV_SOURCE_DIR);
    DIR *dp = opendir(dir);
    if (dp == NULL) {
        print_message("no corpus at %s\n", dir);
        skip();
    }
    struct dirent *de;
    int n = 0, ok = 0;
    while ((de = readdir(dp)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[2048];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "rb");
        if (f == NULL)
            continue;
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        uint8_t *raw = malloc(len > 0 ? (size_t)len : 1);
        size_t got = fread(raw, 1, (size_t)len, f);
        fclose(f);
        if (got == 0) {
            free(raw);
            continue;
        }
        /* the fuzzer's input layout: control byte (bit 0: fix checksums,
         * bit 1: VKV_DECODE_VERIFY), then the block */
        unsigned ctl = raw[0], flags = (ctl & 2u) ? VKV_DECODE_VERIFY : 0u;
        got--;
        uint8_t *buf = malloc(got ? got : 1);
        memcpy(buf, raw + 1, got);
        free(raw);
        if (ctl & 1u)
            fix_checksums(buf, got);
        vkv_block_header h;
        int crc = vkv_block_check(buf, got, flags, &h);
        vkv_attend_args a;
        memset(&a, 0, sizeof(a));
        uint32_t hd = crc == VKV_OK ? h.head_dim : 8, kvh = crc == VKV_OK ? h.kv_heads : 1;
        float *q = calloc((size_t)kvh * hd, 4), *out = calloc((size_t)kvh * hd, 4);
        float *lse = calloc(kvh, 4);
        for (size_t i = 0; i < (size_t)kvh * hd; i++)
            q[i] = (float)(i % 7) * 0.1f;
        a.kv_heads = kvh;
        a.head_dim = hd;
        a.n_q = 1;
        a.n_heads = kvh;
        a.q_dtype = VKV_ATTEND_F32;
        a.q = q;
        a.scale = 0.125f;
        a.out = out;
        a.lse = lse;
        uint32_t layers = crc == VKV_OK ? h.layers : 1;
        for (uint32_t l = 0; l < layers && l < 4; l++) {
            a.layer = l;
            int rc = vkv_attend(buf, got, flags, &a);
            assert_int_equal(rc, crc);
        }
        ok += crc == VKV_OK;
        n++;
        free(q);
        free(out);
        free(lse);
        free(buf);
    }
    closedir(dp);
    print_message("corpus: %d blocks, %d valid\n", n, ok);
    assert_true(n > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_rule_shape_dtype_and_gqa_matches_naive),
        cmocka_unit_test(masks_and_empty_rows),
        cmocka_unit_test(long_blocks_take_several_row_passes),
        cmocka_unit_test(merge_equals_one_softmax),
        cmocka_unit_test(merge_edge_cases_and_errors),
        cmocka_unit_test(bad_input_gets_specific_errors),
        cmocka_unit_test(fuzz_corpus_blocks_are_safe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
