/*
 * tests/kernels/kernels_codec_test.c - round trips of the codec over many
 * shapes, every rule, group mode and dtype, checked against an independent
 * reading of the block; SIMD implementations bit-identical to the scalar
 * reference; dense vs paged decode; sizes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>
#include <xxhash.h>

#include "kernels_util.h"

static const enum vkv_impl impls[] = {VKV_IMPL_SCALAR, VKV_IMPL_AVX2, VKV_IMPL_AVX512};

/* Fills the chunk with awkward values: signed zeros, subnormals, the largest
 * finite values, long runs of equal values, mixed with noise. */
static void fill_edges(ku_chunk *c, uint64_t seed)
{
    const vkv_shape *sh = &c->shape;
    const uint16_t f16[] = {0x0000, 0x8000, 0x0001, 0x83ff, 0x7bff, 0xfbff, 0x3c00, 0x0400, 0x3555};
    const uint16_t b16[] = {0x0000, 0x8000, 0x0001, 0x807f, 0x7f7f, 0xff7f, 0x3f80, 0x0080, 0x3eaa};
    uint64_t s = seed;
    for (int k = 0; k < 2; k++)
        for (uint32_t l = 0; l < sh->layers; l++)
            for (uint32_t t = 0; t < sh->tokens; t++)
                for (uint32_t h = 0; h < sh->kv_heads; h++)
                    for (uint32_t d = 0; d < sh->head_dim; d++) {
                        uint64_t r = ku_rand(&s);
                        uint16_t v;
                        if (d % 5 == 1)
                            v = sh->dtype == VKV_DTYPE_F16 ? 0x4248 : 0x4049; /* constant */
                        else if (r % 3 == 0)
                            v = (sh->dtype == VKV_DTYPE_F16 ? f16 : b16)[(r >> 8) % 9];
                        else
                            v = vkvk_from_f32(ku_unif(&s) * 3.0f, sh->dtype);
                        *ku_at(c, k, l, t, h, d) = v;
                    }
}

/* Checks a decoded chunk against its source and the block's own sections:
 * raw tokens bit-exact; each visual element equals the level its code bit
 * selects; levels lie in the group's [min, max]; the code is 1 exactly when
 * x >= the midpoint of the two levels; constant groups decode exactly; the
 * error is at most the group's range. */
static void verify(const ku_chunk *src, const ku_chunk *dec, const uint8_t *block)
{
    vkv_block_header h;
    memcpy(&h, block, sizeof(h));
    const vkv_shape *sh = &src->shape;
    const uint32_t H = sh->kv_heads, D = sh->head_dim;
    const int dt = sh->dtype;
    uint32_t nvis = 0;
    for (uint32_t r = 0; r < sh->n_ranges; r++)
        nvis += sh->ranges[r].len;
    for (int s = 0; s < 2; s++) {
        const uint8_t *bits = block + h.sections[VKV_SEC_BITS_K + s].offset;
        const uint8_t *lev = block + h.sections[VKV_SEC_LEV_K + s].offset;
        uint8_t mode = s ? h.v_mode : h.k_mode;
        uint32_t G = s ? h.v_group : h.k_group;
        assert_true(G > 0);
        uint32_t ngrp_layer = 0;
        for (uint32_t r = 0; r < sh->n_ranges; r++)
            ngrp_layer += (sh->ranges[r].len + G - 1) / G;
        for (uint32_t l = 0; l < sh->layers; l++) {
            uint32_t v = 0, grp = 0;
            for (uint32_t t = 0; t < sh->tokens; t++)
                if (ku_range_of(sh, t) < 0)
                    for (uint32_t hh = 0; hh < H; hh++)
                        assert_memory_equal(ku_at(dec, s, l, t, hh, 0), ku_at(src, s, l, t, hh, 0),
                                            2 * D);
            for (uint32_t r = 0; r < sh->n_ranges; r++) {
                uint32_t st = sh->ranges[r].start, end = st + sh->ranges[r].len;
                if (mode == VKV_GROUP_CHANNEL) {
                    for (uint32_t t0 = st; t0 < end; t0 += G, grp++) {
                        uint32_t n = end - t0 < G ? end - t0 : G;
                        for (uint32_t hh = 0; hh < H; hh++)
                            for (uint32_t d = 0; d < D; d++) {
                                float mn = INFINITY, mx = -INFINITY;
                                for (uint32_t t = t0; t < t0 + n; t++) {
                                    float x = vkvk_to_f32(*ku_at(src, s, l, t, hh, d), dt);
                                    mn = x < mn ? x : mn;
                                    mx = x > mx ? x : mx;
                                }
                                size_t li = (((size_t)l * ngrp_layer + grp) * H + hh) * 2 * D + d;
                                uint16_t lo, hi;
                                memcpy(&lo, lev + 2 * li, 2);
                                memcpy(&hi, lev + 2 * (li + D), 2);
                                for (uint32_t t = t0; t < t0 + n; t++) {
                                    size_t vi = (size_t)l * nvis + v + (t - t0);
                                    int bit =
                                        (bits[(vi * H + hh) * (D / 8) + d / 8] >> (d % 8)) & 1;
                                    uint16_t x = *ku_at(src, s, l, t, hh, d),
                                             y = *ku_at(dec, s, l, t, hh, d);
                                    float lf = vkvk_to_f32(lo, dt), hf = vkvk_to_f32(hi, dt);
                                    float xf = vkvk_to_f32(x, dt), yf = vkvk_to_f32(y, dt);
                                    assert_int_equal(y, bit ? hi : lo);
                                    assert_true(lf >= mn && lf <= mx && hf >= mn && hf <= mx);
                                    assert_int_equal(bit, xf >= (lf + hf) * 0.5f);
                                    if (mn == mx)
                                        assert_true(yf == xf);
                                    assert_true(fabsf(xf - yf) <= mx - mn);
                                }
                            }
                        v += n;
                    }
                } else {
                    for (uint32_t t = st; t < end; t++, v++)
                        for (uint32_t hh = 0; hh < H; hh++)
                            for (uint32_t g0 = 0; g0 < D; g0 += G) {
                                float mn = INFINITY, mx = -INFINITY;
                                for (uint32_t d = g0; d < g0 + G; d++) {
                                    float x = vkvk_to_f32(*ku_at(src, s, l, t, hh, d), dt);
                                    mn = x < mn ? x : mn;
                                    mx = x > mx ? x : mx;
                                }
                                size_t vi = (size_t)l * nvis + v;
                                size_t li = ((vi * H + hh) * (D / G) + g0 / G) * 2;
                                uint16_t lo, hi;
                                memcpy(&lo, lev + 2 * li, 2);
                                memcpy(&hi, lev + 2 * li + 2, 2);
                                float lf = vkvk_to_f32(lo, dt), hf = vkvk_to_f32(hi, dt);
                                assert_true(lf >= mn && lf <= mx && hf >= mn && hf <= mx);
                                for (uint32_t d = g0; d < g0 + G; d++) {
                                    int bit =
                                        (bits[(vi * H + hh) * (D / 8) + d / 8] >> (d % 8)) & 1;
                                    uint16_t x = *ku_at(src, s, l, t, hh, d),
                                             y = *ku_at(dec, s, l, t, hh, d);
                                    float xf = vkvk_to_f32(x, dt), yf = vkvk_to_f32(y, dt);
                                    assert_int_equal(y, bit ? hi : lo);
                                    assert_int_equal(bit, xf >= (lf + hf) * 0.5f);
                                    if (mn == mx)
                                        assert_true(yf == xf);
                                    assert_true(fabsf(xf - yf) <= mx - mn);
                                }
                            }
                }
            }
        }
    }
}

/* Checks a decoded rotsign chunk against its source and block: raw tokens
 * bit-exact; every visual element equals an independent decode of the
 * block's sections by docs/BLOCK_FORMAT.md; TOKEN mode stores the rounded
 * per-channel mean, CHANNEL mode codes the sign of each element; and the
 * squared error of each token and head is at most 1.02x that of
 * reconstructing it by the stored vector alone (TOKEN: the mean; CHANNEL:
 * zero), plus output rounding. */
static void verify_rot(const ku_chunk *src, const ku_chunk *dec, const uint8_t *block)
{
    vkv_block_header h;
    memcpy(&h, block, sizeof(h));
    const vkv_shape *sh = &src->shape;
    const uint32_t H = sh->kv_heads, D = sh->head_dim;
    const int dt = sh->dtype;
    uint32_t nvis = 0;
    for (uint32_t r = 0; r < sh->n_ranges; r++)
        nvis += sh->ranges[r].len;
    float *w = malloc(D * sizeof(float));
    assert_non_null(w);
    for (int s = 0; s < 2; s++) {
        const uint8_t *bits = block + h.sections[VKV_SEC_BITS_K + s].offset;
        const uint8_t *lev = block + h.sections[VKV_SEC_LEV_K + s].offset;
        uint8_t mode = s ? h.v_mode : h.k_mode;
        uint32_t sb = (s ? h.v_group : h.k_group) / 8u;
        size_t lev_layer = nvis ? (size_t)H * D * 2 + (size_t)nvis * H * sb : 0;
        assert_int_equal(h.sections[VKV_SEC_LEV_K + s].size, lev_layer * sh->layers);
        for (uint32_t l = 0; l < sh->layers; l++) {
            const uint8_t *vec = lev + l * lev_layer, *scl = vec + (size_t)H * D * 2;
            for (uint32_t t = 0; t < sh->tokens; t++)
                if (ku_range_of(sh, t) < 0)
                    for (uint32_t hh = 0; hh < H; hh++)
                        assert_memory_equal(ku_at(dec, s, l, t, hh, 0), ku_at(src, s, l, t, hh, 0),
                                            2 * D);
            for (uint32_t hh = 0; hh < H && mode == VKV_GROUP_TOKEN && nvis; hh++)
                for (uint32_t d = 0; d < D; d++) {
                    float sum = 0.0f;
                    for (uint32_t t = 0; t < sh->tokens; t++)
                        if (ku_range_of(sh, t) >= 0)
                            sum += vkvk_to_f32(*ku_at(src, s, l, t, hh, d), dt);
                    uint16_t m;
                    memcpy(&m, vec + 2 * ((size_t)hh * D + d), 2);
                    assert_int_equal(m, vkvk_from_f32(sum / (float)nvis, dt));
                }
            uint32_t v = 0;
            for (uint32_t t = 0; t < sh->tokens; t++) {
                if (ku_range_of(sh, t) < 0)
                    continue;
                for (uint32_t hh = 0; hh < H; hh++) {
                    const uint8_t *b = bits + (((size_t)l * nvis + v) * H + hh) * (D / 8);
                    const uint8_t *sp = scl + ((size_t)v * H + hh) * sb;
                    float A = sb == 1 ? vkvk_sc8_value(sp[0])
                                      : vkvk_to_f32((uint16_t)(sp[0] | sp[1] << 8), dt);
                    double err = 0, base = 0, mx = 0;
                    if (mode == VKV_GROUP_TOKEN) {
                        for (uint32_t d = 0; d < D; d++)
                            w[d] = (b[d / 8] >> (d % 8)) & 1 ? 1.0f : -1.0f;
                        vkvk_fwht(w, D);
                    }
                    for (uint32_t d = 0; d < D; d++) {
                        uint16_t vm;
                        memcpy(&vm, vec + 2 * ((size_t)hh * D + d), 2);
                        float vf = vkvk_to_f32(vm, dt), want;
                        int bit = (b[d / 8] >> (d % 8)) & 1;
                        float xf = vkvk_to_f32(*ku_at(src, s, l, t, hh, d), dt);
                        if (mode == VKV_GROUP_TOKEN) {
                            float fe, fd;
                            vkvk_rot_factors(D, &fe, &fd);
                            float p = A * fd * w[d];
                            want = (vkvk_rot_neg(d) ? -p : p) + vf;
                            base += ((double)xf - vf) * ((double)xf - vf);
                        } else {
                            float p = A * vf;
                            want = bit ? p : -p;
                            assert_int_equal(bit, xf >= 0.0f);
                            base += (double)xf * xf;
                        }
                        uint16_t y = *ku_at(dec, s, l, t, hh, d);
                        assert_int_equal(y, vkvk_rot_out(want, dt));
                        float yf = vkvk_to_f32(y, dt);
                        err += ((double)xf - yf) * ((double)xf - yf);
                        mx = (double)xf > mx ? (double)xf : -(double)xf > mx ? -(double)xf : mx;
                    }
                    double ulp = dt == VKV_DTYPE_F16 ? 1.0 / 1024 : 1.0 / 128;
                    /* a scale clamped at its largest code bounds nothing, nor do
                     * bf16 magnitudes whose float sums overflow (defined, not accurate) */
                    int clamped = sb == 1 ? sp[0] == 255
                                          : (uint16_t)(sp[0] | sp[1] << 8) ==
                                                (dt == VKV_DTYPE_F16 ? 0x7bff : 0x7f7f);
                    double hmx = 0; /* the head's largest magnitude over visual tokens */
                    for (uint32_t t2 = 0; t2 < sh->tokens; t2++)
                        for (uint32_t d = 0; d < D && ku_range_of(sh, t2) >= 0; d++) {
                            double a = vkvk_to_f32(*ku_at(src, s, l, t2, hh, d), dt);
                            hmx = a > hmx ? a : -a > hmx ? -a : hmx;
                        }
                    if (!clamped && hmx < 1e15)
                        assert_true(err <= 1.02 * base + D * (mx * ulp) * (mx * ulp) + 1e-12);
                }
                v++;
            }
        }
    }
    free(w);
}

/* Compares every element of two chunks of the same shape. */
static void assert_chunks_equal(const ku_chunk *a, const ku_chunk *b)
{
    const vkv_shape *sh = &a->shape;
    for (int s = 0; s < 2; s++)
        for (uint32_t l = 0; l < sh->layers; l++)
            for (uint32_t t = 0; t < sh->tokens; t++)
                for (uint32_t h = 0; h < sh->kv_heads; h++)
                    assert_memory_equal(ku_at(a, s, l, t, h, 0), ku_at(b, s, l, t, h, 0),
                                        2 * sh->head_dim);
}

typedef struct shape_case {
    uint32_t layers, heads, hd, tokens, n_ranges;
    vkv_block_range ranges[4];
} shape_case;

static const shape_case shapes[] = {
    {1, 1, 8, 1, 1, {{0, 1}}},                     /* one token, all visual */
    {2, 3, 24, 37, 3, {{0, 5}, {9, 17}, {30, 7}}}, /* ranges at start and end */
    {1, 8, 256, 20, 0, {{0, 0}}},                  /* no visual tokens */
    {2, 2, 128, 70, 1, {{0, 70}}},                 /* all visual */
    {1, 5, 40, 33, 3, {{3, 1}, {4, 28}, {32, 1}}}, /* adjacent and single-token ranges */
    {1, 4, 72, 65, 1, {{1, 63}}},                  /* odd head_dim / 8 */
    {1, 6, 16, 300, 2, {{10, 260}, {271, 29}}},    /* groups longer than a range */
};

/* Encodes `c` with every implementation, checks the blocks are identical to
 * the scalar one, decodes with every implementation, checks the outputs are
 * identical, and verifies the scalar decode. */
static void roundtrip_all_impls(const ku_chunk *c, const vkv_codec_spec *spec)
{
    size_t size = 0;
    assert_int_equal(vkv_codec_encoded_size(&c->shape, spec, &size), VKV_OK);
    uint8_t *ref = malloc(size), *blk = malloc(size);
    assert_non_null(ref);
    assert_non_null(blk);
    ku_chunk dref, dec;
    assert_int_equal(ku_chunk_alloc(&dref, &c->shape, 3), 0);
    assert_int_equal(ku_chunk_alloc(&dec, &c->shape, 3), 0);
    vkv_kv_src src = ku_src(c);
    assert_int_equal(vkv_codec_set_impl(VKV_IMPL_SCALAR), VKV_OK);
    assert_int_equal(vkv_encode(&c->shape, spec, &src, ref, size), VKV_OK);
    assert_int_equal(vkv_block_check(ref, size, VKV_DECODE_VERIFY, NULL), VKV_OK);
    vkv_kv_dst dd = ku_dst(&dref);
    assert_int_equal(vkv_decode(ref, size, VKV_DECODE_VERIFY, &dd), VKV_OK);
    if (spec->rule == VKV_RULE_ROTSIGN)
        verify_rot(c, &dref, ref);
    else
        verify(c, &dref, ref);
    for (size_t i = 1; i < sizeof(impls) / sizeof(impls[0]); i++) {
        if (vkv_codec_set_impl(impls[i]) != VKV_OK)
            continue; /* this CPU lacks it */
        memset(blk, 0xa5, size);
        assert_int_equal(vkv_encode(&c->shape, spec, &src, blk, size), VKV_OK);
        assert_memory_equal(blk, ref, size);
        vkv_kv_dst d2 = ku_dst(&dec);
        assert_int_equal(vkv_decode(ref, size, 0, &d2), VKV_OK);
        assert_chunks_equal(&dec, &dref);
    }
    vkv_codec_set_impl(VKV_IMPL_AUTO);
    ku_chunk_free(&dref);
    ku_chunk_free(&dec);
    free(ref);
    free(blk);
}

/* Every shape x rule x K mode x V mode x dtype x group-size choice. */
static void roundtrip_every_rule_mode_dtype_and_shape(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
        for (int dt = VKV_DTYPE_F16; dt <= VKV_DTYPE_BF16; dt++) {
            const shape_case *sc = &shapes[i];
            vkv_shape sh = {sc->layers,  sc->heads,    sc->hd,  sc->tokens,
                            (uint8_t)dt, sc->n_ranges, {{0, 0}}};
            memcpy(sh.ranges, sc->ranges, sizeof(sc->ranges));
            ku_chunk c;
            assert_int_equal(ku_chunk_alloc(&c, &sh, i % 2 ? 8 : 0), 0);
            if (i % 2)
                fill_edges(&c, 1000 + i);
            else
                ku_chunk_fill(&c, 1000 + i);
            for (int rule = VKV_RULE_MINMAX; rule <= VKV_RULE_LLOYD; rule++)
                for (int km = VKV_GROUP_CHANNEL; km <= VKV_GROUP_TOKEN; km++)
                    for (int vm = VKV_GROUP_CHANNEL; vm <= VKV_GROUP_TOKEN; vm++)
                        for (int gc = 0; gc < 3; gc++) {
                            vkv_codec_spec spec;
                            static const char *rn[] = {"", "minmax", "quantile", "lloyd"};
                            assert_int_equal(vkv_codec_spec_parse(rn[rule], &spec), VKV_OK);
                            static const uint16_t chg[] = {5, 256, 1}, tkg[] = {8, 0, 8};
                            spec.k_mode = (uint8_t)km;
                            spec.v_mode = (uint8_t)vm;
                            spec.k_group = km == VKV_GROUP_CHANNEL ? chg[gc] : tkg[gc];
                            spec.v_group = vm == VKV_GROUP_CHANNEL ? chg[(gc + 1) % 3] : tkg[gc];
                            if (rule == VKV_RULE_LLOYD)
                                spec.iters = (uint8_t)(1 + gc * 2);
                            roundtrip_all_impls(&c, &spec);
                        }
            ku_chunk_free(&c);
        }
}

/* rotsign over the same shapes: both modes for K and V, 8- and 16-bit
 * scales, 0..3 rank-1 passes; TOKEN mode on a head_dim that is not a power
 * of two is VKV_EGROUP. */
static void rotsign_roundtrips_every_mode_dtype_and_shape(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
        for (int dt = VKV_DTYPE_F16; dt <= VKV_DTYPE_BF16; dt++) {
            const shape_case *sc = &shapes[i];
            vkv_shape sh = {sc->layers,  sc->heads,    sc->hd,  sc->tokens,
                            (uint8_t)dt, sc->n_ranges, {{0, 0}}};
            memcpy(sh.ranges, sc->ranges, sizeof(sc->ranges));
            ku_chunk c;
            assert_int_equal(ku_chunk_alloc(&c, &sh, i % 2 ? 8 : 0), 0);
            if (i % 2)
                fill_edges(&c, 2000 + i);
            else
                ku_chunk_fill(&c, 2000 + i);
            for (int km = VKV_GROUP_CHANNEL; km <= VKV_GROUP_TOKEN; km++)
                for (int vm = VKV_GROUP_CHANNEL; vm <= VKV_GROUP_TOKEN; vm++)
                    for (int var = 0; var < 2; var++) {
                        vkv_codec_spec spec;
                        assert_int_equal(vkv_codec_spec_parse("rotsign", &spec), VKV_OK);
                        spec.k_mode = (uint8_t)km;
                        spec.v_mode = (uint8_t)vm;
                        spec.k_group = var ? 16 : 8;
                        spec.v_group = var ? 8 : 16;
                        spec.iters = (uint8_t)(var * 3);
                        int pow2 = (sh.head_dim & (sh.head_dim - 1)) == 0;
                        if (!pow2 && (km == VKV_GROUP_TOKEN || vm == VKV_GROUP_TOKEN)) {
                            size_t sz;
                            assert_int_equal(vkv_codec_encoded_size(&sh, &spec, &sz), VKV_EGROUP);
                            continue;
                        }
                        roundtrip_all_impls(&c, &spec);
                    }
            ku_chunk_free(&c);
        }
}

/* rotsign: a single visual token in TOKEN mode and a head constant over its
 * visual tokens decode exactly (in value: -0 may come back as +0); all-zero
 * values in CHANNEL mode decode to zero. */
static void rotsign_single_token_and_constant_heads_are_exact(void **state)
{
    (void)state;
    for (int dt = VKV_DTYPE_F16; dt <= VKV_DTYPE_BF16; dt++)
        for (int cse = 0; cse < 2; cse++) {
            vkv_shape sh = {2, 3, 32, 19, (uint8_t)dt, 2, {{0, 7}, {9, 10}}};
            if (cse == 0) {
                sh.n_ranges = 1;
                sh.ranges[0].start = 4;
                sh.ranges[0].len = 1;
            }
            ku_chunk c, dec;
            assert_int_equal(ku_chunk_alloc(&c, &sh, 0), 0);
            assert_int_equal(ku_chunk_alloc(&dec, &sh, 0), 0);
            ku_chunk_fill(&c, 70 + cse);
            if (cse == 1) /* every channel constant over tokens; V all zero */
                for (uint32_t l = 0; l < sh.layers; l++) {
                    for (uint32_t t = 1; t < sh.tokens; t++)
                        memcpy(ku_at(&c, 0, l, t, 0, 0), ku_at(&c, 0, l, 0, 0, 0),
                               2 * c.token_stride);
                    memset(c.v[l], 0, 2 * c.layer_elems);
                }
            vkv_codec_spec spec;
            assert_int_equal(vkv_codec_spec_parse("rotsign", &spec), VKV_OK);
            for (size_t ii = 0; ii < sizeof(impls) / sizeof(impls[0]); ii++) {
                if (vkv_codec_set_impl(impls[ii]) != VKV_OK)
                    continue;
                size_t size;
                assert_int_equal(vkv_codec_encoded_size(&sh, &spec, &size), VKV_OK);
                uint8_t *blk = malloc(size);
                vkv_kv_src src = ku_src(&c);
                assert_int_equal(vkv_encode(&sh, &spec, &src, blk, size), VKV_OK);
                vkv_kv_dst dd = ku_dst(&dec);
                assert_int_equal(vkv_decode(blk, size, VKV_DECODE_VERIFY, &dd), VKV_OK);
                for (uint32_t l = 0; l < sh.layers; l++)
                    for (uint32_t t = 0; t < sh.tokens; t++)
                        for (uint32_t h = 0; h < sh.kv_heads; h++)
                            for (uint32_t d = 0; d < sh.head_dim; d++) {
                                assert_true(vkvk_to_f32(*ku_at(&dec, 0, l, t, h, d), dt) ==
                                            vkvk_to_f32(*ku_at(&c, 0, l, t, h, d), dt));
                                if (cse == 1)
                                    assert_true(vkvk_to_f32(*ku_at(&dec, 1, l, t, h, d), dt) ==
                                                0.0f);
                            }
                free(blk);
            }
            vkv_codec_set_impl(VKV_IMPL_AUTO);
            ku_chunk_free(&c);
            ku_chunk_free(&dec);
        }
}

/* A realistic chunk (256 tokens, 8 heads, head_dim 128) with the default spec
 * and each rule: blocks bit-identical across implementations. */
static void simd_blocks_identical_on_realistic_chunk(void **state)
{
    (void)state;
    vkv_shape sh = {2, 8, 128, 256, VKV_DTYPE_F16, 2, {{0, 200}, {210, 46}}};
    for (int dt = VKV_DTYPE_F16; dt <= VKV_DTYPE_BF16; dt++) {
        sh.dtype = (uint8_t)dt;
        ku_chunk c;
        assert_int_equal(ku_chunk_alloc(&c, &sh, 0), 0);
        ku_chunk_fill(&c, 77 + dt);
        const char *specs[] = {NULL,
                               "minmax",
                               "quantile",
                               "lloyd:iters=5",
                               "rotsign:kbits=16,vbits=16,iters=3",
                               "rotsign:kmode=channel,vmode=token,iters=1"};
        for (size_t i = 0; i < 6; i++) {
            vkv_codec_spec spec;
            if (specs[i] == NULL)
                vkv_codec_spec_default(&spec);
            else
                assert_int_equal(vkv_codec_spec_parse(specs[i], &spec), VKV_OK);
            roundtrip_all_impls(&c, &spec);
        }
        ku_chunk_free(&c);
    }
}

/* The default spec stays within 1.25 bits per element, all metadata included. */
static void default_spec_is_at_most_1_25_bits_per_element(void **state)
{
    (void)state;
    vkv_shape sh = {32, 8, 128, 256, VKV_DTYPE_F16, 1, {{0, 256}}};
    vkv_codec_spec spec;
    vkv_codec_spec_default(&spec);
    size_t size = 0;
    assert_int_equal(vkv_codec_encoded_size(&sh, &spec, &size), VKV_OK);
    double bpe = vkv_codec_bits_per_element(&sh, size);
    assert_true(bpe <= 1.25);
    assert_true(bpe > 1.0);
}

/* The size function equals the bytes encode writes: the header says so and
 * not a byte past it is touched. */
static void encoded_size_equals_bytes_written(void **state)
{
    (void)state;
    vkv_shape sh = {3, 2, 48, 41, VKV_DTYPE_BF16, 2, {{2, 11}, {20, 19}}};
    ku_chunk c;
    assert_int_equal(ku_chunk_alloc(&c, &sh, 0), 0);
    ku_chunk_fill(&c, 5);
    vkv_codec_spec spec;
    assert_int_equal(vkv_codec_spec_parse("quantile:kg=4,vmode=channel,vg=7", &spec), VKV_OK);
    size_t size;
    assert_int_equal(vkv_codec_encoded_size(&sh, &spec, &size), VKV_OK);
    uint8_t *buf = malloc(size + 4096 + 1);
    assert_non_null(buf);
    uint8_t *blk = buf + 1; /* an odd address: any alignment must work */
    memset(blk, 0x5c, size + 4096);
    vkv_kv_src src = ku_src(&c);
    assert_int_equal(vkv_encode(&sh, &spec, &src, blk, size + 4096), VKV_OK);
    vkv_block_header h;
    assert_int_equal(vkv_block_check(blk, size, VKV_DECODE_VERIFY, &h), VKV_OK);
    assert_int_equal(h.total_size, size);
    for (size_t i = size; i < size + 4096; i++)
        assert_int_equal(blk[i], 0x5c);
    ku_chunk dec;
    assert_int_equal(ku_chunk_alloc(&dec, &sh, 0), 0);
    vkv_kv_dst dd = ku_dst(&dec);
    assert_int_equal(vkv_decode(blk, size, VKV_DECODE_VERIFY, &dd), VKV_OK);
    verify(&c, &dec, blk);
    ku_chunk_free(&dec);
    ku_chunk_free(&c);
    free(buf);
}

/* G = 1 (every group a single token) and constant channels reproduce the
 * source exactly, for every rule. */
static void single_token_groups_and_constant_channels_are_exact(void **state)
{
    (void)state;
    vkv_shape sh = {2, 3, 32, 19, VKV_DTYPE_F16, 2, {{0, 7}, {9, 10}}};
    const char *specs[] = {"minmax:kg=1,vmode=channel,vg=1", "quantile:kg=1,vmode=channel,vg=1",
                           "lloyd:kg=1,vmode=channel,vg=1"};
    for (int dt = VKV_DTYPE_F16; dt <= VKV_DTYPE_BF16; dt++)
        for (int i = 0; i < 3; i++) {
            sh.dtype = (uint8_t)dt;
            ku_chunk c, dec;
            assert_int_equal(ku_chunk_alloc(&c, &sh, 0), 0);
            assert_int_equal(ku_chunk_alloc(&dec, &sh, 0), 0);
            ku_chunk_fill(&c, 9 + i);
            vkv_codec_spec spec;
            assert_int_equal(vkv_codec_spec_parse(specs[i], &spec), VKV_OK);
            size_t size;
            assert_int_equal(vkv_codec_encoded_size(&sh, &spec, &size), VKV_OK);
            uint8_t *blk = malloc(size);
            vkv_kv_src src = ku_src(&c);
            assert_int_equal(vkv_encode(&sh, &spec, &src, blk, size), VKV_OK);
            vkv_kv_dst dd = ku_dst(&dec);
            assert_int_equal(vkv_decode(blk, size, 0, &dd), VKV_OK);
            assert_chunks_equal(&dec, &c);
            /* Now every channel constant over tokens, TOKEN mode for V:
             * keys (CHANNEL groups) must come back exactly. */
            for (uint32_t l = 0; l < sh.layers; l++)
                for (uint32_t t = 1; t < sh.tokens; t++)
                    memcpy(ku_at(&c, 0, l, t, 0, 0), ku_at(&c, 0, l, 0, 0, 0), 2 * c.token_stride);
            assert_int_equal(vkv_codec_spec_parse("lloyd:kg=256", &spec), VKV_OK);
            size_t size2;
            assert_int_equal(vkv_codec_encoded_size(&sh, &spec, &size2), VKV_OK);
            blk = realloc(blk, size2);
            assert_int_equal(vkv_encode(&sh, &spec, &src, blk, size2), VKV_OK);
            assert_int_equal(vkv_decode(blk, size2, 0, &dd), VKV_OK);
            for (uint32_t l = 0; l < sh.layers; l++)
                assert_memory_equal(dec.k[l], c.k[l], 2 * c.layer_elems);
            free(blk);
            ku_chunk_free(&c);
            ku_chunk_free(&dec);
        }
}

/* Paged decode into a vLLM-style cache equals dense decode, for page sizes
 * that do not divide the token count and an unaligned first position. */
static void paged_decode_matches_dense_decode(void **state)
{
    (void)state;
    vkv_shape sh = {2, 4, 64, 53, VKV_DTYPE_F16, 2, {{0, 20}, {25, 28}}};
    ku_chunk c, dense;
    assert_int_equal(ku_chunk_alloc(&c, &sh, 0), 0);
    assert_int_equal(ku_chunk_alloc(&dense, &sh, 0), 0);
    ku_chunk_fill(&c, 31);
    for (int which = 0; which < 2; which++) {
        vkv_codec_spec spec;
        if (which == 0)
            vkv_codec_spec_default(&spec);
        else
            assert_int_equal(vkv_codec_spec_parse("lloyd:vmode=channel,vg=9", &spec), VKV_OK);
        size_t size;
        assert_int_equal(vkv_codec_encoded_size(&sh, &spec, &size), VKV_OK);
        uint8_t *blk = malloc(size);
        vkv_kv_src src = ku_src(&c);
        assert_int_equal(vkv_encode(&sh, &spec, &src, blk, size), VKV_OK);
        vkv_kv_dst dd = ku_dst(&dense);
        assert_int_equal(vkv_decode(blk, size, 0, &dd), VKV_OK);
        const uint32_t page_sizes[] = {1, 7, 16, 64};
        const uint32_t firsts[] = {0, 3, 13, 100};
        uint64_t seed = 4242;
        for (int pi = 0; pi < 4; pi++)
            for (int fi = 0; fi < 4; fi++)
                for (size_t ii = 0; ii < sizeof(impls) / sizeof(impls[0]); ii++) {
                    if (vkv_codec_set_impl(impls[ii]) != VKV_OK)
                        continue;
                    uint32_t ps = page_sizes[pi], first = firsts[fi];
                    uint32_t tl = (first + sh.tokens + ps - 1) / ps + 2, np = tl + 5;
                    size_t row = (size_t)sh.kv_heads * sh.head_dim, lay = (size_t)np * ps * row;
                    int32_t *table = malloc(tl * sizeof(int32_t));
                    /* a random permutation of the pages */
                    int32_t *perm = malloc(np * sizeof(int32_t));
                    for (uint32_t i = 0; i < np; i++)
                        perm[i] = (int32_t)i;
                    for (uint32_t i = np - 1; i > 0; i--) {
                        uint32_t j = (uint32_t)(ku_rand(&seed) % (i + 1));
                        int32_t t = perm[i];
                        perm[i] = perm[j];
                        perm[j] = t;
                    }
                    memcpy(table, perm, tl * sizeof(int32_t));
                    uint16_t *kc[2], *vc[2];
                    for (int l = 0; l < 2; l++) {
                        kc[l] = malloc(lay * 2);
                        vc[l] = malloc(lay * 2);
                        memset(kc[l], 0xee, lay * 2);
                        memset(vc[l], 0xee, lay * 2);
                    }
                    vkv_paged_dst pd = {(void *const *)kc,
                                        (void *const *)vc,
                                        np,
                                        ps,
                                        table,
                                        tl,
                                        first,
                                        0,
                                        0,
                                        0,
                                        0,
                                        vkv_geometry_of(&sh),
                                        NULL};
                    assert_int_equal(vkv_decode_paged(blk, size, VKV_DECODE_VERIFY, &pd), VKV_OK);
                    size_t written = 0;
                    for (int s = 0; s < 2; s++)
                        for (uint32_t l = 0; l < sh.layers; l++)
                            for (uint32_t t = 0; t < sh.tokens; t++) {
                                uint32_t p = first + t;
                                const uint16_t *o =
                                    (s ? vc : kc)[l] + ((size_t)table[p / ps] * ps + p % ps) * row;
                                for (uint32_t h = 0; h < sh.kv_heads; h++)
                                    assert_memory_equal(o + h * sh.head_dim,
                                                        ku_at(&dense, s, l, t, h, 0),
                                                        2 * sh.head_dim);
                            }
                    /* and nothing else in the cache was touched */
                    for (int s = 0; s < 2; s++)
                        for (int l = 0; l < 2; l++)
                            for (size_t i = 0; i < lay; i++)
                                written += (s ? vc : kc)[l][i] != 0xeeee;
                    assert_true(written <= (size_t)2 * sh.layers * sh.tokens * row);
                    for (int l = 0; l < 2; l++) {
                        free(kc[l]);
                        free(vc[l]);
                    }
                    free(table);
                    free(perm);
                }
        vkv_codec_set_impl(VKV_IMPL_AUTO);
        free(blk);
    }
    ku_chunk_free(&c);
    ku_chunk_free(&dense);
}

/* Paged decode with explicit strides (vLLM's HND order, and K/V pages
 * interleaved as FlashInfer lays them out) and with skip_tokens writes
 * exactly the dense decode's elements at the strided addresses, leaves the
 * skipped tokens' slots and every other element untouched, and needs no
 * table entry for skipped pages. Bad strides and skips are refused. */
static void paged_decode_strides_and_skip(void **state)
{
    (void)state;
    vkv_shape sh = {2, 3, 32, 40, VKV_DTYPE_BF16, 1, {{6, 30}}};
    ku_chunk c, dense;
    assert_int_equal(ku_chunk_alloc(&c, &sh, 0), 0);
    assert_int_equal(ku_chunk_alloc(&dense, &sh, 0), 0);
    ku_chunk_fill(&c, 77);
    vkv_codec_spec spec;
    vkv_codec_spec_default(&spec);
    size_t size;
    assert_int_equal(vkv_codec_encoded_size(&sh, &spec, &size), VKV_OK);
    uint8_t *blk = malloc(size);
    vkv_kv_src src = ku_src(&c);
    assert_int_equal(vkv_encode(&sh, &spec, &src, blk, size), VKV_OK);
    vkv_kv_dst dd = ku_dst(&dense);
    assert_int_equal(vkv_decode(blk, size, 0, &dd), VKV_OK);
    const uint32_t ps = 16, np = 9, H = sh.kv_heads, D = sh.head_dim, first = 16;
    const size_t page = (size_t)ps * H * D;
    /* layout 0: HND pages; layout 1: NHD pages with K and V of a page
     * interleaved ([np][2][ps][H][D]): page stride 2*page, V base = K base + page */
    for (int layout = 0; layout < 2; layout++)
        for (uint32_t skip = 0; skip <= sh.tokens; skip += 16) {
            size_t ss = layout == 0 ? D : (size_t)H * D, hs = layout == 0 ? (size_t)ps * D : D;
            size_t pstride = layout == 0 ? page : 2 * page, lay = (size_t)np * 2 * page;
            uint16_t *buf[2];
            void *kc[2], *vc[2];
            for (int l = 0; l < 2; l++) {
                buf[l] = malloc(lay * 2);
                memset(buf[l], 0xee, lay * 2);
                kc[l] = buf[l];
                vc[l] = buf[l] + (layout == 0 ? (size_t)np * page : page);
            }
            /* positions 16..55: pages 1..3 of the table; entry 1 is bad
             * unless skipped (skip >= 16 leaves page 1 unwritten) */
            int32_t table[4] = {-1, skip >= 16 ? -1 : 5, 2, 7};
            vkv_paged_dst pd = {
                kc, vc, np, ps, table, 4, first, pstride, ss, hs, skip, vkv_geometry_of(&sh), NULL};
            assert_int_equal(vkv_decode_paged(blk, size, VKV_DECODE_VERIFY, &pd), VKV_OK);
            size_t written = 0;
            for (int s = 0; s < 2; s++)
                for (uint32_t l = 0; l < sh.layers; l++)
                    for (uint32_t t = skip; t < sh.tokens; t++) {
                        uint32_t p = first + t;
                        const uint16_t *o = (const uint16_t *)(s ? vc : kc)[l] +
                                            (size_t)table[p / ps] * pstride + (p % ps) * ss;
                        for (uint32_t h = 0; h < H; h++)
                            assert_memory_equal(o + h * hs, ku_at(&dense, s, l, t, h, 0), 2 * D);
                    }
            for (int l = 0; l < 2; l++)
                for (size_t i = 0; i < lay; i++)
                    written += buf[l][i] != 0xeeee;
            assert_true(written <= (size_t)2 * sh.layers * (sh.tokens - skip) * H * D);
            if (skip == sh.tokens)
                assert_int_equal(written, 0);
            for (int l = 0; l < 2; l++)
                free(buf[l]);
        }
    /* refused: skip past the block, a stride that overflows, a bad page */
    uint16_t one[2][64];
    void *k1[2] = {one[0], one[1]}, *v1[2] = {one[0], one[1]};
    int32_t t1[4] = {0, 0, 0, 0};
    vkv_paged_dst bad = {k1,  v1, 1, 64, t1, 4, 0, 0, 0, 0, sh.tokens + 1, vkv_geometry_of(&sh),
                         NULL};
    assert_int_equal(vkv_decode_paged(blk, size, 0, &bad), VKV_EINVAL);
    vkv_paged_dst ovf = {k1,  v1, 2, 64, t1, 4, 0, SIZE_MAX / 2, 0, 0, 0, vkv_geometry_of(&sh),
                         NULL};
    assert_int_equal(vkv_decode_paged(blk, size, 0, &ovf), VKV_EINVAL);
    int32_t t2[1] = {3};
    vkv_paged_dst oob = {k1, v1, 2, 64, t2, 1, 0, 0, 0, 0, 0, vkv_geometry_of(&sh), NULL};
    assert_int_equal(vkv_decode_paged(blk, size, 0, &oob), VKV_EINVAL);
    free(blk);
    ku_chunk_free(&c);
    ku_chunk_free(&dense);
}

/* Hashes (XXH3-64) of rotsign blocks and of their decoded tensors for
 * head_dim 8..512, recorded from the scalar reference before its loops were
 * restructured and before any SIMD rotsign kernel existed. Every
 * implementation must still produce them: a change here is a change of the
 * block format's arithmetic (docs/BLOCK_FORMAT.md) and must be deliberate.
 * Row i is head_dim 8 << i: {blocks, decoded tensors}, each hash folding 2
 * dtypes x 2 fills x 3 specs. Set VKV_PRINT_GOLDEN=1 to print fresh rows. */
static const uint64_t rot_golden[7][2] = {
    {0x4378aeb9c6b138deull, 0x87eb0eba4d51ba5bull}, /* head_dim 8 */
    {0xb4800c29a9ba7677ull, 0x344ac067524e8941ull}, /* head_dim 16 */
    {0xdbf77bcb3e5b8cccull, 0xdaabcb62f5524d6bull}, /* head_dim 32 */
    {0x6f6b3bcbe2ba78b2ull, 0x8c0a9aaeea1b8f8eull}, /* head_dim 64 */
    {0x84d772bd130bc0ccull, 0xfede762439fe7f61ull}, /* head_dim 128 */
    {0x4a70ceb239749b6aull, 0xabf1c0220bb77175ull}, /* head_dim 256 */
    {0xe287f78cde960e74ull, 0x76a539ae99c7b4f7ull}, /* head_dim 512 */
};

/* Encodes and decodes the golden configurations of one head_dim with the
 * current implementation; stores the two folded hashes in out[2]. */
static void rot_golden_hashes(uint32_t hd, uint64_t out[2])
{
    XXH3_state_t *eh = XXH3_createState(), *dh = XXH3_createState();
    assert_non_null(eh);
    assert_non_null(dh);
    XXH3_64bits_reset(eh);
    XXH3_64bits_reset(dh);
    static const char *specs[] = {"rotsign", "rotsign:kbits=16,vbits=16,iters=3",
                                  "rotsign:kmode=channel,vmode=token,kbits=16,iters=1"};
    for (int dt = VKV_DTYPE_F16; dt <= VKV_DTYPE_BF16; dt++)
        for (int fill = 0; fill < 2; fill++) {
            vkv_shape sh = {2, 3, hd, 21, (uint8_t)dt, 2, {{0, 9}, {12, 9}}};
            ku_chunk c, dec;
            assert_int_equal(ku_chunk_alloc(&c, &sh, 0), 0);
            assert_int_equal(ku_chunk_alloc(&dec, &sh, 0), 0);
            if (fill)
                fill_edges(&c, 4000 + hd);
            else
                ku_chunk_fill(&c, 3000 + hd);
            for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
                vkv_codec_spec spec;
                size_t size;
                assert_int_equal(vkv_codec_spec_parse(specs[i], &spec), VKV_OK);
                assert_int_equal(vkv_codec_encoded_size(&sh, &spec, &size), VKV_OK);
                uint8_t *blk = malloc(size);
                assert_non_null(blk);
                vkv_kv_src src = ku_src(&c);
                assert_int_equal(vkv_encode(&sh, &spec, &src, blk, size), VKV_OK);
                XXH3_64bits_update(eh, blk, size);
                vkv_kv_dst dd = ku_dst(&dec);
                assert_int_equal(vkv_decode(blk, size, 0, &dd), VKV_OK);
                for (uint32_t l = 0; l < sh.layers; l++) {
                    XXH3_64bits_update(dh, dec.k[l], 2 * dec.layer_elems);
                    XXH3_64bits_update(dh, dec.v[l], 2 * dec.layer_elems);
                }
                free(blk);
            }
            ku_chunk_free(&c);
            ku_chunk_free(&dec);
        }
    out[0] = XXH3_64bits_digest(eh);
    out[1] = XXH3_64bits_digest(dh);
    XXH3_freeState(eh);
    XXH3_freeState(dh);
}

/* Every implementation reproduces the recorded rotsign hashes for every
 * power-of-two head_dim from 8 to 512. */
static void rotsign_blocks_match_recorded_hashes(void **state)
{
    (void)state;
    const char *pr = getenv("VKV_PRINT_GOLDEN");
    for (size_t ii = 0; ii < sizeof(impls) / sizeof(impls[0]); ii++) {
        if (vkv_codec_set_impl(impls[ii]) != VKV_OK)
            continue;
        for (uint32_t i = 0; i < 7; i++) {
            uint64_t h[2];
            rot_golden_hashes(8u << i, h);
            if (pr != NULL && ii == 0)
                printf("    {0x%016llxull, 0x%016llxull}, /* head_dim %u */\n",
                       (unsigned long long)h[0], (unsigned long long)h[1], 8u << i);
            else {
                assert_true(h[0] == rot_golden[i][0]);
                assert_true(h[1] == rot_golden[i][1]);
            }
        }
    }
    vkv_codec_set_impl(VKV_IMPL_AUTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(roundtrip_every_rule_mode_dtype_and_shape),
        cmocka_unit_test(rotsign_roundtrips_every_mode_dtype_and_shape),
        cmocka_unit_test(rotsign_single_token_and_constant_heads_are_exact),
        cmocka_unit_test(simd_blocks_identical_on_realistic_chunk),
        cmocka_unit_test(default_spec_is_at_most_1_25_bits_per_element),
        cmocka_unit_test(encoded_size_equals_bytes_written),
        cmocka_unit_test(single_token_groups_and_constant_channels_are_exact),
        cmocka_unit_test(paged_decode_matches_dense_decode),
        cmocka_unit_test(paged_decode_strides_and_skip),
        cmocka_unit_test(rotsign_blocks_match_recorded_hashes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
