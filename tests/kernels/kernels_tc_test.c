/*
 * tests/kernels/kernels_tc_test.c - block rule 5 (VKV_RULE_TC): spec strings,
 * exact sizes, the canonical header and sections, an independent decoder
 * written from docs/BLOCK_FORMAT.md "Rule 5" that must reproduce vkv_decode
 * bit for bit, error bounds that fall with the bit budget, the attention
 * weights of vkv_encode_weighted, paged decode, identity, geometry, and
 * tampered headers/payloads (rejected, or decoded without reading out of
 * bounds).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <xxhash.h>

#include "kernels/codec_tc.h"
#include "kernels_util.h"

static const enum vkv_impl impls[] = {VKV_IMPL_SCALAR, VKV_IMPL_AVX2, VKV_IMPL_AVX512};

/* Parses a spec that must be valid. */
static vkv_codec_spec spec_of(const char *text)
{
    vkv_codec_spec s;
    assert_int_equal(vkv_codec_spec_parse(text, &s), VKV_OK);
    return s;
}

/* An encoded chunk: the source, the block (exactly `size` bytes) and its
 * dense decode; all owned by the struct (tb_free). */
typedef struct tb {
    ku_chunk src, dec;
    uint8_t *blk;
    size_t size;
    vkv_codec_spec spec;
} tb;

/* Encodes a filled chunk of shape `sh` with `spec` (weights w or NULL) and
 * decodes it with VKV_DECODE_VERIFY. */
static void tb_make(tb *b, const vkv_shape *sh, const char *spec, uint64_t seed,
                    const float *const *w)
{
    memset(b, 0, sizeof *b);
    b->spec = spec_of(spec);
    assert_int_equal(ku_chunk_alloc(&b->src, sh, 3), 0);
    assert_int_equal(ku_chunk_alloc(&b->dec, sh, 1), 0);
    ku_chunk_fill(&b->src, seed);
    assert_int_equal(vkv_codec_encoded_size(sh, &b->spec, &b->size), VKV_OK);
    b->blk = malloc(b->size);
    assert_non_null(b->blk);
    vkv_kv_src s = ku_src(&b->src);
    assert_int_equal(vkv_encode_weighted(sh, &b->spec, &s, w, b->blk, b->size), VKV_OK);
    vkv_kv_dst d = ku_dst(&b->dec);
    assert_int_equal(vkv_decode(b->blk, b->size, VKV_DECODE_VERIFY, &d), VKV_OK);
}

static void tb_free(tb *b)
{
    ku_chunk_free(&b->src);
    ku_chunk_free(&b->dec);
    free(b->blk);
}

/* Little-endian u16 at p. */
static uint16_t ld16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

/* Rounds up to 64. */
static uint64_t al64(uint64_t x)
{
    return (x + 63u) / 64u * 64u;
}

/* Per-layer bytes of the six sections of a rule-5 block, from the format
 * text alone: RAW n_raw*H*D*2; BITS_K n_vis*H*ceil(B/8) with B =
 * (k_group*D + 32) / 64; BITS_V the same with v_group, or n_vis*H*D/8 for
 * rank-1 values; LEV H records (coded 4D + D/4 + 2 bytes, rank-1 2D + 2)
 * plus n_vis*H scale bytes, empty without visual tokens. */
static void doc_sizes(const vkv_shape *sh, const vkv_codec_spec *sp, uint64_t per[6])
{
    uint64_t nv = 0, H = sh->kv_heads, D = sh->head_dim;
    for (uint32_t r = 0; r < sh->n_ranges; r++)
        nv += sh->ranges[r].len;
    uint64_t nr = sh->tokens - nv;
    uint64_t kb = ((sp->k_group * D + 32) / 64 + 7) / 8;
    uint64_t vb = sp->v_group ? ((sp->v_group * D + 32) / 64 + 7) / 8 : D / 8;
    per[0] = per[1] = nr * H * D * 2;
    per[2] = nv * H * kb;
    per[3] = nv * H * vb;
    per[4] = nv ? H * (3 * D + D / 4 + 4) + nv * H : 0;
    per[5] = nv ? H * (sp->v_group ? 3 * D + D / 4 + 4 : 2 * D + 2) + nv * H : 0;
}

/* The scale of byte c under top, from the format text: 0 for 255, else
 * top * (2^(-(c % 16)/16) * 2^-(c / 16)) in binary32. */
static float doc_scale(float top, uint32_t c)
{
    if (c == 255)
        return 0.0f;
    float m = (float)exp2(-(double)(c % 16u) / 16.0); /* binary32 of 2^(-f/16) */
    return top * (m * ldexpf(1.0f, -(int)(c / 16u)));
}

/* Independent decode of element (visual token v, head h, channel d) of
 * tensor s, layer l, from the format text (fp32, before rounding). */
static float doc_element(const uint8_t *blk, const vkv_block_header *hd, int s, uint32_t l,
                         uint64_t v, uint32_t h, uint32_t d)
{
    const uint32_t D = hd->head_dim, H = hd->kv_heads;
    const int dt = hd->dtype;
    const int coded = s == 0 || hd->v_mode == VKV_GROUP_TOKEN;
    const uint64_t rec = coded ? 3u * D + D / 4u + 4u : 2u * D + 2u;
    const uint64_t lev_layer = hd->sections[VKV_SEC_LEV_K + s].size / hd->layers;
    const uint64_t bits_layer = hd->sections[VKV_SEC_BITS_K + s].size / hd->layers;
    const uint8_t *lev = blk + hd->sections[VKV_SEC_LEV_K + s].offset + l * lev_layer;
    const uint8_t *r = lev + h * rec;
    uint64_t nv = 0;
    for (uint32_t i = 0; i < hd->n_ranges; i++)
        nv += hd->ranges[i].len;
    const uint64_t cb = bits_layer / (nv * H);
    const uint8_t *codes =
        blk + hd->sections[VKV_SEC_BITS_K + s].offset + l * bits_layer + (v * H + h) * cb;
    const uint8_t c = lev[H * rec + v * H + h];
    const float top = vkvk_to_f32(ld16(r + (coded ? 3u * D + D / 4u : 2u * D)), dt);
    float a = 0.0f;
    a = doc_scale(top, c);
    if (!coded) {
        float sg = (codes[d / 8] >> (d % 8)) & 1 ? 1.0f : -1.0f;
        return (sg * a) * vkvk_to_f32(ld16(r + 2u * d), dt);
    }
    static const float lv[4][8] = {
        {0},
        {-0.7979f, 0.7979f},
        {-1.5104f, -0.4528f, 0.4528f, 1.5104f},
        {-2.152f, -1.344f, -0.756f, -0.2451f, 0.2451f, 0.756f, 1.344f, 2.152f},
    };
    uint32_t pos = 0, nb = 0;
    for (uint32_t e = 0; e <= d; e++) {
        nb = (r[3u * D + e / 4u] >> (2u * (e % 4u))) & 3u;
        if (e < d)
            pos += nb;
    }
    float q = 0.0f;
    if (nb) {
        uint32_t code = 0;
        for (uint32_t i = 0; i < nb; i++)
            code |= (uint32_t)((codes[(pos + i) / 8] >> ((pos + i) % 8)) & 1u) << i;
        q = a * lv[nb][code];
    }
    /* channel scale: its byte at 2D + d under stop (after top) */
    const float stop = vkvk_to_f32(ld16(r + 3u * D + D / 4u + 2u), dt);
    return q * doc_scale(stop, r[2u * D + d]) + vkvk_to_f32(ld16(r + 2u * d), dt);
}

static void specs_parse_format_and_refuse(void **state)
{
    (void)state;
    vkv_codec_spec s = spec_of("tc");
    assert_int_equal(s.rule, VKV_RULE_TC);
    assert_int_equal(s.k_mode, VKV_GROUP_TOKEN);
    assert_int_equal(s.k_group, 72); /* 1.125 bits */
    assert_int_equal(s.v_mode, VKV_GROUP_CHANNEL);
    assert_int_equal(s.v_group, 0);
    assert_int_equal(s.iters, 0);
    char buf[96];
    vkv_codec_spec_format(&s, buf, sizeof buf);
    assert_string_equal(buf, "tc:kb=1.125,vb=0,aw=0");
    s = spec_of("tc:kb=2,aw=1,vb=1.5");
    assert_int_equal(s.k_group, 128);
    assert_int_equal(s.v_mode, VKV_GROUP_TOKEN);
    assert_int_equal(s.v_group, 96);
    assert_int_equal(s.iters, 1);
    vkv_codec_spec_format(&s, buf, sizeof buf);
    assert_string_equal(buf, "tc:kb=2,vb=1.5,aw=1");
    vkv_codec_spec t = spec_of(buf);
    assert_memory_equal(&s, &t, sizeof s);
    s = spec_of("tc:kb=0.015625,vb=3"); /* the extremes: 1/64 and 3 bits */
    assert_int_equal(s.k_group, 1);
    assert_int_equal(s.v_group, 192);
    static const char *const bad[] = {
        "tc:",        "tc:kb=0",    "tc:kb=3.015625", "tc:kb=1.1", "tc:kb=-1",   "tc:vb=4",
        "tc:vb=0.01", "tc:aw=2",    "tc:kb=1,kb=2",   "tc:kg=8",   "tc:alpha=1", "tc:kb=1,",
        "tc:kb",      "tc:iters=1", "tc:kb=nan",      "tcx",       "tc:kbits=8", "tc:kb=1;vb=1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vkv_codec_spec x;
        memset(&x, 0x5a, sizeof x);
        vkv_codec_spec y = x;
        assert_int_equal(vkv_codec_spec_parse(bad[i], &x), VKV_ESPEC);
        assert_memory_equal(&x, &y, sizeof x); /* untouched on failure */
    }
    /* a hand-made spec outside the rule's fields */
    vkv_shape sh = {1, 1, 64, 8, VKV_DTYPE_F16, 1, {{0, 8}}};
    s = spec_of("tc");
    assert_int_equal(vkv_codec_check(&sh, &s), VKV_OK);
    vkv_codec_spec e = s;
    e.k_group = 193;
    assert_int_equal(vkv_codec_check(&sh, &e), VKV_ESPEC);
    e = s;
    e.k_mode = VKV_GROUP_CHANNEL;
    assert_int_equal(vkv_codec_check(&sh, &e), VKV_ESPEC);
    e = s;
    e.v_group = 8; /* CHANNEL values take no budget */
    assert_int_equal(vkv_codec_check(&sh, &e), VKV_ESPEC);
    e = s;
    e.v_mode = VKV_GROUP_TOKEN; /* a TOKEN value budget of 0 */
    assert_int_equal(vkv_codec_check(&sh, &e), VKV_ESPEC);
    e = s;
    e.iters = 2;
    assert_int_equal(vkv_codec_check(&sh, &e), VKV_ESPEC);
    e = s;
    e.k_param = 0.5f;
    assert_int_equal(vkv_codec_check(&sh, &e), VKV_ESPEC);
}

/* Shapes: head_dim 64, 96, 128 (tc needs no power of two), raw tokens
 * between and around ranges, bf16, all raw, a budget that is not a whole
 * byte per token and head. */
static const vkv_shape shapes[] = {
    {2, 2, 64, 40, VKV_DTYPE_F16, 3, {{3, 9}, {12, 10}, {30, 7}}},
    {1, 3, 96, 33, VKV_DTYPE_BF16, 2, {{0, 13}, {20, 13}}},
    {2, 1, 128, 48, VKV_DTYPE_F16, 1, {{0, 48}}},
    {1, 2, 8, 20, VKV_DTYPE_F16, 1, {{2, 17}}},
    {1, 2, 32, 12, VKV_DTYPE_BF16, 0, {{0, 0}}},
};
static const char *const specs[] = {"tc",
                                    "tc:kb=1,aw=1",
                                    "tc:kb=2,vb=1.5",
                                    "tc:kb=0.375,vb=3",
                                    "tc:kb=3,vb=0.125",
                                    "tc:kb=1.625,vb=0.5"};

static void sizes_header_and_sections_are_canonical(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (size_t p = 0; p < sizeof specs / sizeof specs[0]; p++) {
            const vkv_shape *sh = &shapes[k];
            tb b;
            tb_make(&b, sh, specs[p], 10 + k * 7 + p, NULL);
            uint64_t per[6], pos = 256;
            doc_sizes(sh, &b.spec, per);
            vkv_block_header h;
            assert_int_equal(vkv_block_check(b.blk, b.size, VKV_DECODE_VERIFY, &h), VKV_OK);
            for (int s = 0; s < 6; s++) {
                assert_int_equal(h.sections[s].offset, al64(pos));
                assert_int_equal(h.sections[s].size, per[s] * sh->layers);
                for (uint64_t i = pos; i < h.sections[s].offset; i++)
                    assert_int_equal(b.blk[i], 0); /* padding */
                pos = h.sections[s].offset + h.sections[s].size;
            }
            assert_int_equal(b.size, pos);
            assert_int_equal(h.total_size, pos);
            assert_int_equal(h.rule, VKV_RULE_TC);
            assert_int_equal(h.k_mode, VKV_GROUP_TOKEN);
            assert_int_equal(h.k_group, b.spec.k_group);
            assert_int_equal(h.v_mode, b.spec.v_mode);
            assert_int_equal(h.v_group, b.spec.v_group);
            assert_int_equal(h.iters, b.spec.iters);
            assert_true(h.k_param == 0.0f && h.v_param == 0.0f);
            /* every allocation fits the budget; unused code bits are zero */
            uint64_t nv = 0;
            for (uint32_t r = 0; r < sh->n_ranges; r++)
                nv += sh->ranges[r].len;
            const uint32_t D = sh->head_dim, H = sh->kv_heads;
            for (int s = 0; s < 2 && nv; s++) {
                int coded = s == 0 || b.spec.v_group;
                if (!coded)
                    continue;
                uint32_t budget = ((s ? b.spec.v_group : b.spec.k_group) * D + 32) / 64;
                uint64_t cb = (budget + 7) / 8;
                for (uint32_t l = 0; l < sh->layers; l++)
                    for (uint32_t hh = 0; hh < H; hh++) {
                        const uint8_t *r = b.blk + h.sections[VKV_SEC_LEV_K + s].offset +
                                           l * per[4 + s] + hh * (3u * D + D / 4u + 4u);
                        uint32_t used = 0;
                        for (uint32_t d = 0; d < D; d++)
                            used += (r[3u * D + d / 4u] >> (2u * (d % 4u))) & 3u;
                        assert_true(used <= budget);
                        for (uint64_t v = 0; v < nv; v++) {
                            const uint8_t *c = b.blk + h.sections[VKV_SEC_BITS_K + s].offset +
                                               l * per[2 + s] + (v * H + hh) * cb;
                            for (uint32_t i = used; i < cb * 8; i++)
                                assert_int_equal((c[i / 8] >> (i % 8)) & 1, 0);
                        }
                    }
            }
            tb_free(&b);
        }
}

static void decode_matches_the_format_text_and_errors_fall_with_bits(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (size_t p = 0; p < sizeof specs / sizeof specs[0]; p++) {
            const vkv_shape *sh = &shapes[k];
            tb b;
            tb_make(&b, sh, specs[p], 100 + k * 7 + p, NULL);
            vkv_block_header h;
            assert_int_equal(vkv_block_check(b.blk, b.size, 0, &h), VKV_OK);
            const float mx = sh->dtype == VKV_DTYPE_BF16 ? 3.389531389e38f : 65504.0f;
            for (int s = 0; s < 2; s++)
                for (uint32_t l = 0; l < sh->layers; l++) {
                    uint64_t v = 0;
                    for (uint32_t t = 0; t < sh->tokens; t++) {
                        int vis = ku_range_of(sh, t) >= 0;
                        for (uint32_t hh = 0; hh < sh->kv_heads; hh++)
                            for (uint32_t d = 0; d < sh->head_dim; d++) {
                                uint16_t got = *ku_at(&b.dec, s, l, t, hh, d);
                                uint16_t want = *ku_at(&b.src, s, l, t, hh, d);
                                if (vis) {
                                    float f = doc_element(b.blk, &h, s, l, v, hh, d);
                                    f = f > mx ? mx : f < -mx ? -mx : f;
                                    want = vkvk_from_f32(f, sh->dtype);
                                }
                                assert_int_equal(got, want); /* raw: bit for bit */
                            }
                        v += vis;
                    }
                }
            tb_free(&b);
        }
    /* key NMSE falls with the budget; at 3 bits it is small */
    vkv_shape sh = {2, 2, 64, 64, VKV_DTYPE_F16, 1, {{0, 64}}};
    static const char *const ladder[] = {"tc:kb=0.5", "tc:kb=1", "tc:kb=2", "tc:kb=3"};
    double prev = 1e9;
    for (int i = 0; i < 4; i++) {
        tb b;
        tb_make(&b, &sh, ladder[i], 4242, NULL);
        double num = 0, den = 0;
        for (uint32_t l = 0; l < sh.layers; l++)
            for (uint32_t t = 0; t < sh.tokens; t++)
                for (uint32_t hh = 0; hh < sh.kv_heads; hh++)
                    for (uint32_t d = 0; d < sh.head_dim; d++) {
                        double x = vkvk_to_f32(*ku_at(&b.src, 0, l, t, hh, d), sh.dtype);
                        double y = vkvk_to_f32(*ku_at(&b.dec, 0, l, t, hh, d), sh.dtype);
                        num += (x - y) * (x - y);
                        den += x * x;
                    }
        double nmse = num / den;
        print_message("%s: key NMSE %.4g\n", ladder[i], nmse);
        assert_true(nmse < prev);
        prev = nmse;
        tb_free(&b);
    }
    /* 3 bits everywhere: a unit Gaussian's Lloyd-Max error is 0.0345 of its
     * variance (<= the energy); 0.05 leaves room for this uniform test
     * data and the 8-bit token scales */
    assert_true(prev < 0.05);
}

static void weights_steer_the_key_allocation(void **state)
{
    (void)state;
    vkv_shape sh = {2, 2, 64, 32, VKV_DTYPE_F16, 1, {{0, 32}}};
    float *wl[2];
    for (int l = 0; l < 2; l++) {
        wl[l] = calloc(2 * 64, sizeof(float));
        for (uint32_t i = 0; i < 2 * 64; i++)
            wl[l][i] = i % 64 < 16 ? 1.0f : 0.0f; /* only channels 0..15 matter */
    }
    const float *const *w = (const float *const *)wl;
    tb plain, aw, aw0;
    tb_make(&plain, &sh, "tc:kb=0.5", 7, NULL);
    tb_make(&aw, &sh, "tc:kb=0.5,aw=1", 7, w);
    tb_make(&aw0, &sh, "tc:kb=0.5", 7, w); /* aw=0: the weights are ignored */
    assert_int_equal(plain.size, aw.size);
    assert_memory_equal(plain.blk, aw0.blk, plain.size);
    vkv_block_header h;
    assert_int_equal(vkv_block_check(aw.blk, aw.size, 0, &h), VKV_OK);
    assert_int_equal(h.iters, 1);
    const uint32_t D = 64, rec = 3u * D + D / 4u + 4u;
    const uint64_t lev_layer = h.sections[VKV_SEC_LEV_K].size / h.layers;
    int differs = 0;
    for (uint32_t l = 0; l < 2; l++)
        for (uint32_t hh = 0; hh < 2; hh++) {
            const uint8_t *r = aw.blk + h.sections[VKV_SEC_LEV_K].offset + l * lev_layer + hh * rec;
            const uint8_t *r0 =
                plain.blk + h.sections[VKV_SEC_LEV_K].offset + l * lev_layer + hh * rec;
            uint32_t inside = 0, outside = 0;
            for (uint32_t d = 0; d < D; d++) {
                uint32_t nb = (r[3u * D + d / 4u] >> (2u * (d % 4u))) & 3u;
                *(d < 16 ? &inside : &outside) += nb;
                differs |= nb != ((r0[3u * D + d / 4u] >> (2u * (d % 4u))) & 3u);
            }
            assert_int_equal(outside, 0); /* weight 0: never a bit */
            assert_int_equal(inside, 32); /* the whole budget, 0.5 * 64 */
        }
    assert_true(differs);
    /* the error of the weighted channels is lower with the weights */
    double e_aw = 0, e_plain = 0;
    for (uint32_t t = 0; t < 32; t++)
        for (uint32_t d = 0; d < 16; d++) {
            double x = vkvk_f16_to_f32(*ku_at(&aw.src, 0, 1, t, 1, d));
            double a = vkvk_f16_to_f32(*ku_at(&aw.dec, 0, 1, t, 1, d));
            double p = vkvk_f16_to_f32(*ku_at(&plain.dec, 0, 1, t, 1, d));
            e_aw += (x - a) * (x - a);
            e_plain += (x - p) * (x - p);
        }
    assert_true(e_aw < e_plain);
    /* bad weights */
    vkv_codec_spec sp = spec_of("tc:aw=1");
    size_t size;
    assert_int_equal(vkv_codec_encoded_size(&sh, &sp, &size), VKV_OK);
    uint8_t *blk = malloc(size);
    vkv_kv_src src = ku_src(&aw.src);
    wl[1][5] = -1.0f;
    assert_int_equal(vkv_encode_weighted(&sh, &sp, &src, w, blk, size), VKV_EINVAL);
    wl[1][5] = NAN;
    assert_int_equal(vkv_encode_weighted(&sh, &sp, &src, w, blk, size), VKV_EINVAL);
    wl[1][5] = INFINITY;
    assert_int_equal(vkv_encode_weighted(&sh, &sp, &src, w, blk, size), VKV_EINVAL);
    const float *half[2] = {wl[0], NULL};
    assert_int_equal(vkv_encode_weighted(&sh, &sp, &src, half, blk, size), VKV_EINVAL);
    /* other rules ignore weights: same bytes as vkv_encode */
    vkv_codec_spec rs = spec_of("rotsign");
    size_t rsz;
    assert_int_equal(vkv_codec_encoded_size(&sh, &rs, &rsz), VKV_OK);
    uint8_t *r1 = malloc(rsz), *r2 = malloc(rsz);
    assert_int_equal(vkv_encode(&sh, &rs, &src, r1, rsz), VKV_OK);
    assert_int_equal(vkv_encode_weighted(&sh, &rs, &src, half, r2, rsz), VKV_OK);
    assert_memory_equal(r1, r2, rsz);
    free(r1);
    free(r2);
    free(blk);
    tb_free(&plain);
    tb_free(&aw);
    tb_free(&aw0);
    free(wl[0]);
    free(wl[1]);
}

static void every_impl_writes_the_same_bytes_and_paged_equals_dense(void **state)
{
    (void)state;
    vkv_shape sh = {2, 2, 96, 37, VKV_DTYPE_F16, 2, {{1, 20}, {24, 10}}};
    tb ref;
    assert_int_equal(vkv_codec_set_impl(VKV_IMPL_SCALAR), VKV_OK);
    tb_make(&ref, &sh, "tc:kb=1.5,vb=1", 55, NULL);
    for (size_t i = 1; i < sizeof impls / sizeof impls[0]; i++) {
        if (vkv_codec_set_impl(impls[i]) != VKV_OK)
            continue;
        tb b;
        tb_make(&b, &sh, "tc:kb=1.5,vb=1", 55, NULL);
        assert_int_equal(b.size, ref.size);
        assert_memory_equal(b.blk, ref.blk, b.size);
        for (uint32_t l = 0; l < sh.layers; l++) {
            assert_memory_equal(b.dec.k[l], ref.dec.k[l], b.dec.layer_elems * 2);
            assert_memory_equal(b.dec.v[l], ref.dec.v[l], b.dec.layer_elems * 2);
        }
        tb_free(&b);
    }
    (void)vkv_codec_set_impl(VKV_IMPL_AUTO);
    /* paged, NHD default strides, page size 8, first_pos 5, reversed pages,
     * the first 3 tokens skipped */
    const uint32_t ps = 8, first = 5, skip = 3, np = (first + sh.tokens + ps - 1) / ps;
    size_t pe = (size_t)ps * sh.kv_heads * sh.head_dim;
    uint16_t *kc[2], *vc[2];
    for (int l = 0; l < 2; l++) {
        kc[l] = calloc(np * pe, 2);
        vc[l] = calloc(np * pe, 2);
    }
    int32_t table[16];
    for (uint32_t i = 0; i < np; i++)
        table[i] = (int32_t)(np - 1 - i);
    vkv_paged_dst pd;
    memset(&pd, 0, sizeof pd);
    pd.k_cache = (void *const *)kc;
    pd.v_cache = (void *const *)vc;
    pd.num_pages = np;
    pd.page_size = ps;
    pd.block_table = table;
    pd.block_table_len = np;
    pd.first_pos = first;
    pd.skip_tokens = skip;
    pd.geom = vkv_geometry_of(&sh);
    pd.geom.tokens = 0;
    assert_int_equal(vkv_decode_paged(ref.blk, ref.size, VKV_DECODE_VERIFY, &pd), VKV_OK);
    for (int s = 0; s < 2; s++)
        for (uint32_t l = 0; l < sh.layers; l++)
            for (uint32_t t = 0; t < sh.tokens; t++) {
                uint32_t p = first + t;
                const uint16_t *row = (s ? vc : kc)[l] + (size_t)table[p / ps] * pe +
                                      (size_t)(p % ps) * sh.kv_heads * sh.head_dim;
                for (uint32_t hh = 0; hh < sh.kv_heads; hh++)
                    for (uint32_t d = 0; d < sh.head_dim; d++) {
                        uint16_t want = t < skip ? 0 : *ku_at(&ref.dec, s, l, t, hh, d);
                        assert_int_equal(row[hh * sh.head_dim + d], want);
                    }
            }
    for (int l = 0; l < 2; l++) {
        free(kc[l]);
        free(vc[l]);
    }
    tb_free(&ref);
}

/* Recomputes the header checksum of a block in place. */
static void rehash(uint8_t *blk)
{
    vkv_block_header h;
    memcpy(&h, blk, sizeof h);
    uint64_t p = h.payload_xxh3;
    h.payload_xxh3 = 0;
    h.header_xxh3 = 0;
    h.header_xxh3 = XXH3_64bits(&h, sizeof h);
    h.payload_xxh3 = p;
    memcpy(blk, &h, sizeof h);
}

static void identity_geometry_and_tampering(void **state)
{
    (void)state;
    vkv_shape sh = {2, 2, 64, 24, VKV_DTYPE_F16, 2, {{2, 9}, {12, 10}}};
    tb b;
    tb_make(&b, &sh, "tc:kb=1.125,aw=1", 9, NULL);
    vkv_kv_dst d = ku_dst(&b.dec);
    /* identity */
    uint8_t id[16], other[16];
    static const uint8_t key[32] = {1, 2, 3};
    vkv_block_ident("ns", 2, key, id);
    vkv_block_ident("nt", 2, key, other);
    uint8_t *blk = malloc(b.size);
    memcpy(blk, b.blk, b.size);
    assert_int_equal(vkv_block_bind(blk, b.size, id), VKV_OK);
    d.ident = id;
    assert_int_equal(vkv_decode(blk, b.size, VKV_DECODE_VERIFY, &d), VKV_OK);
    d.ident = other;
    assert_int_equal(vkv_decode(blk, b.size, VKV_DECODE_VERIFY, &d), VKV_EIDENT);
    d.ident = NULL;
    /* geometry */
    vkv_kv_dst g = d;
    g.geom.head_dim = 32;
    assert_int_equal(vkv_decode(b.blk, b.size, 0, &g), VKV_EGEOMETRY);
    g = d;
    g.geom.tokens = 23;
    assert_int_equal(vkv_decode(b.blk, b.size, 0, &g), VKV_EGEOMETRY);
    g = d;
    g.geom.dtype = VKV_DTYPE_BF16;
    assert_int_equal(vkv_decode(b.blk, b.size, 0, &g), VKV_EGEOMETRY);
    /* payload corruption: the checksum catches it */
    memcpy(blk, b.blk, b.size);
    blk[b.size - 1] ^= 0x10;
    assert_int_equal(vkv_decode(blk, b.size, VKV_DECODE_VERIFY, &d), VKV_ECHECKSUM);
    /* inconsistent rule-5 header fields, checksum fixed: rejected */
    struct {
        size_t off;
        int width;
        uint32_t val;
    } bad[] = {
        {offsetof(vkv_block_header, k_group), 2, 0},
        {offsetof(vkv_block_header, k_group), 2, 193},
        {offsetof(vkv_block_header, k_group), 2, 73}, /* sizes no longer match */
        {offsetof(vkv_block_header, v_group), 2, 8},  /* CHANNEL values with a budget */
        {offsetof(vkv_block_header, v_mode), 1, VKV_GROUP_TOKEN},
        {offsetof(vkv_block_header, k_mode), 1, VKV_GROUP_CHANNEL},
        {offsetof(vkv_block_header, iters), 1, 2},
        {offsetof(vkv_block_header, k_param), 4, 0x3f000000u},
        {offsetof(vkv_block_header, rule), 1, 6},
        {offsetof(vkv_block_header, head_dim), 4, 96},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(blk, b.blk, b.size);
        memcpy(blk + bad[i].off, &bad[i].val, (size_t)bad[i].width);
        rehash(blk);
        int rc = vkv_block_check(blk, b.size, 0, NULL);
        assert_true(rc == VKV_ECORRUPT || rc == VKV_ETRUNC);
        assert_int_equal(vkv_decode(blk, b.size, 0, &d), rc);
    }
    /* an altered payload decodes without VERIFY and without reading out of
     * bounds (ASan): every allocation field set to 3 bits, scales 0xff,
     * the codes all ones */
    memcpy(blk, b.blk, b.size);
    vkv_block_header h;
    assert_int_equal(vkv_block_check(blk, b.size, 0, &h), VKV_OK);
    for (int s = 0; s < 2; s++) {
        uint8_t *lev = blk + h.sections[VKV_SEC_LEV_K + s].offset;
        memset(lev, 0xff, h.sections[VKV_SEC_LEV_K + s].size);
        memset(blk + h.sections[VKV_SEC_BITS_K + s].offset, 0xff,
               h.sections[VKV_SEC_BITS_K + s].size);
    }
    uint8_t *exact = malloc(b.size);
    memcpy(exact, blk, b.size);
    assert_int_equal(vkv_decode(exact, b.size, 0, &d), VKV_OK);
    assert_int_equal(vkv_decode(exact, b.size, VKV_DECODE_VERIFY, &d), VKV_ECHECKSUM);
    free(exact);
    free(blk);
    tb_free(&b);
}

static void nonfinite_and_head_dim_96(void **state)
{
    (void)state;
    vkv_shape sh = {1, 2, 96, 10, VKV_DTYPE_F16, 1, {{2, 6}}};
    vkv_codec_spec rs = spec_of("rotsign"), tc = spec_of("tc");
    assert_int_equal(vkv_codec_check(&sh, &rs), VKV_EGROUP);
    assert_int_equal(vkv_codec_check(&sh, &tc), VKV_OK);
    ku_chunk c;
    assert_int_equal(ku_chunk_alloc(&c, &sh, 0), 0);
    ku_chunk_fill(&c, 3);
    size_t size;
    assert_int_equal(vkv_codec_encoded_size(&sh, &tc, &size), VKV_OK);
    uint8_t *blk = malloc(size);
    vkv_kv_src src = ku_src(&c);
    *ku_at(&c, 0, 0, 0, 1, 5) = 0x7c00; /* Inf in a raw token: copied */
    assert_int_equal(vkv_encode(&sh, &tc, &src, blk, size), VKV_OK);
    *ku_at(&c, 1, 0, 4, 1, 5) = 0x7e00; /* NaN in a visual value */
    assert_int_equal(vkv_encode(&sh, &tc, &src, blk, size), VKV_ENONFINITE);
    assert_int_equal(vkv_encode(&sh, &tc, &src, blk, size - 1), VKV_ETRUNC);
    free(blk);
    ku_chunk_free(&c);
}

/* A xorshift64 step. */
static uint64_t xs64(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* The AVX2 row decoders against the scalar vkvk_tc_dec_f32 (+ vkvk_rot_out)
 * on random records: every allocation 0..3 (cut to the code bytes like a
 * tampered one), random dtype bit patterns for mu / sc / top (NaN, Inf,
 * subnormals, huge: the clamp and rounding paths), every scale byte, random
 * codes, rank-1 and coded heads, f16 and bf16: bit for bit. Skips where the
 * CPU has no AVX2. */
static void avx2_rows_are_bit_identical_to_scalar(void **state)
{
    (void)state;
#ifdef VKVK_X86
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("f16c"))
        skip();
    static const uint32_t hds[] = {8, 64, 96, 128, 256};
    uint64_t x = 0x9e3779b97f4a7c15ull;
    float mu[256], sc[256], ref[256], got[256];
    uint8_t nb[256], codes[96 + 8];
    uint32_t off[256];
    uint16_t ro[256], go[256];
    for (int it = 0; it < 4000; it++) {
        const uint32_t hd = hds[it % 5];
        const int dt = (it / 5) % 2 ? VKV_DTYPE_BF16 : VKV_DTYPE_F16;
        const int coded = it % 3 != 0, wild = it % 4 == 0;
        vkvk_tc_head c = {hd, coded, 0.0f, mu, sc, nb};
        const uint32_t cb = coded ? (uint32_t)(xs64(&x) % (3u * hd / 8u)) + 1u : hd / 8u;
        uint32_t left = 8u * cb;
        for (uint32_t d = 0; d < hd; d++) {
            uint64_t r = xs64(&x);
            uint16_t mh = wild ? (uint16_t)r : (uint16_t)(0x3000u + (r & 0x1fffu));
            uint16_t sh = wild ? (uint16_t)(r >> 16) : (uint16_t)(0x3400u + ((r >> 16) & 0xfffu));
            if (dt == VKV_DTYPE_BF16 && !wild) {
                mh = (uint16_t)(0x3e00u + (r & 0x1ffu));
                sh = (uint16_t)(0x3e80u + ((r >> 16) & 0xffu));
            }
            mu[d] = vkvk_to_f32(mh, dt);
            sc[d] = vkvk_to_f32(sh, dt);
            uint32_t b = (uint32_t)(r >> 32) & 3u;
            b = b <= left ? b : 0u;
            left -= b;
            nb[d] = (uint8_t)b;
        }
        uint64_t tr = xs64(&x);
        c.top = vkvk_to_f32(wild ? (uint16_t)tr : (uint16_t)(0x3c00u + (tr & 0x7ffu)), dt);
        for (uint32_t i = 0; i < cb; i++)
            codes[i] = (uint8_t)xs64(&x);
        const uint32_t q = (uint32_t)(xs64(&x) & 0xffu);
        vkvk_tc_offsets(&c, off);
        vkvk_tc_dec_f32(&c, codes, q, ref);
        vkvk_tc_dec_f32_avx2(&c, off, codes, cb, q, got);
        for (uint32_t d = 0; d < hd; d++) {
            ro[d] = vkvk_rot_out(ref[d], dt);
            /* NaN rows (wild records) compare by bits of the output step */
            if (ref[d] == ref[d])
                assert_int_equal(vkvk_f32_bits(got[d]), vkvk_f32_bits(ref[d]));
            else
                assert_true(got[d] != got[d]);
        }
        vkvk_tc_dec_out_avx2(&c, off, codes, cb, q, dt, go);
        assert_memory_equal(go, ro, hd * 2u);
    }
#else
    skip();
#endif
}

/* Whole blocks: the AVX2 decode (dense and paged through the same path)
 * equals the scalar one bit for bit for rank-1 and coded values, 1..3 key
 * bits, f16 and bf16, head_dim 64 / 96 / 128, and for a tampered payload. */
static void avx2_block_decode_equals_scalar(void **state)
{
    (void)state;
    if (vkv_codec_set_impl(VKV_IMPL_AVX2) != VKV_OK)
        skip();
    static const char *const sp[] = {"tc", "tc:kb=1.125,aw=1", "tc:kb=3,vb=3", "tc:kb=0.5,vb=2"};
    static const uint32_t hds[] = {64, 96, 128};
    for (size_t i = 0; i < 4; i++)
        for (size_t k = 0; k < 3; k++) {
            vkv_shape sh = {
                2, 3, hds[k], 41, k == 1 ? VKV_DTYPE_BF16 : VKV_DTYPE_F16, 2, {{2, 25}, {30, 9}}};
            assert_int_equal(vkv_codec_set_impl(VKV_IMPL_SCALAR), VKV_OK);
            tb ref;
            tb_make(&ref, &sh, sp[i], 900 + i * 3 + k, NULL);
            for (int tamper = 0; tamper < 2; tamper++) {
                if (tamper) { /* allocation bytes and scales garbled (no VERIFY) */
                    vkv_block_header h;
                    assert_int_equal(vkv_block_check(ref.blk, ref.size, 0, &h), VKV_OK);
                    uint8_t *lev = ref.blk + h.sections[VKV_SEC_LEV_K].offset;
                    for (uint64_t j = 0; j < h.sections[VKV_SEC_LEV_K].size; j += 7)
                        lev[j] ^= 0xa5;
                }
                ku_chunk a, b;
                assert_int_equal(ku_chunk_alloc(&a, &sh, 1), 0);
                assert_int_equal(ku_chunk_alloc(&b, &sh, 1), 0);
                vkv_kv_dst da = ku_dst(&a), db = ku_dst(&b);
                assert_int_equal(vkv_codec_set_impl(VKV_IMPL_SCALAR), VKV_OK);
                assert_int_equal(vkv_decode(ref.blk, ref.size, 0, &da), VKV_OK);
                assert_int_equal(vkv_codec_set_impl(VKV_IMPL_AVX2), VKV_OK);
                assert_int_equal(vkv_decode(ref.blk, ref.size, 0, &db), VKV_OK);
                for (uint32_t l = 0; l < sh.layers; l++) {
                    assert_memory_equal(a.k[l], b.k[l], a.layer_elems * 2);
                    assert_memory_equal(a.v[l], b.v[l], a.layer_elems * 2);
                }
                ku_chunk_free(&a);
                ku_chunk_free(&b);
            }
            tb_free(&ref);
        }
    (void)vkv_codec_set_impl(VKV_IMPL_AUTO);
}

/* Fills every element of c: per (tensor, layer, head, channel) one of
 * several laws (uniform, heavy-tailed, constant, zero, huge, tiny, -0,
 * two far levels, tokens of zeros), so that zero scales, ties, zero
 * channels and binary32 overflow (infinite variances) all occur. */
static void fill_mixed(ku_chunk *c, uint64_t seed)
{
    const vkv_shape *sh = &c->shape;
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1u;
    const float big = sh->dtype == VKV_DTYPE_F16 ? 6.0e4f : 1.0e30f;
    const float top = sh->dtype == VKV_DTYPE_F16 ? 6.0e4f : 3.0e38f;
    for (int s = 0; s < 2; s++)
        for (uint32_t l = 0; l < sh->layers; l++)
            for (uint32_t h = 0; h < sh->kv_heads; h++)
                for (uint32_t d = 0; d < sh->head_dim; d++) {
                    uint32_t law = (uint32_t)(xs64(&x) % 16u);
                    float off = (float)((int64_t)(xs64(&x) % 2001u) - 1000) / 500.0f;
                    float sc = (float)(xs64(&x) % 1000u + 1u) / 250.0f;
                    for (uint32_t t = 0; t < sh->tokens; t++) {
                        float u = (float)((int64_t)(xs64(&x) % 20001u) - 10000) / 10000.0f;
                        float v = off + sc * u;
                        if (law == 1)
                            v = off + sc * u * u * u * 30.0f; /* heavy tail */
                        else if (law == 2)
                            v = off; /* constant */
                        else if (law == 3)
                            v = 0.0f;
                        else if (law == 4)
                            v = big * u; /* near the dtype's top */
                        else if (law == 5)
                            v = 1.0e-6f * u; /* subnormal in f16 */
                        else if (law == 6 && t % 3 == 0)
                            v = -0.0f;
                        else if (law == 7) /* y = x - mu overflows binary32 in bf16 */
                            v = t % 5 == 0 ? top : -0.9f * top;
                        if (t % 11 == 5 && law < 8)
                            v = 0.0f; /* tokens with many zero channels */
                        *ku_at(c, s, l, t, h, d) = vkvk_from_f32(v, sh->dtype);
                    }
                }
}

/* Encodes c with spec (weights w or NULL) under impl into a buffer of
 * `size` bytes preset to 0xa5; returns the buffer (caller frees) and the
 * return code in *rc. */
static uint8_t *encode_with(enum vkv_impl impl, const ku_chunk *c, const vkv_codec_spec *sp,
                            const float *const *w, size_t size, int *rc)
{
    assert_int_equal(vkv_codec_set_impl(impl), VKV_OK);
    uint8_t *blk = malloc(size);
    assert_non_null(blk);
    memset(blk, 0xa5, size);
    vkv_kv_src s = ku_src(c);
    *rc = vkv_encode_weighted(&c->shape, sp, &s, w, blk, size);
    return blk;
}

/* The AVX2 encoder (vkvk_tc_enc_tensor_avx2, the AVX2 and AVX-512 impls)
 * against the scalar reference: byte for byte over random chunks of every
 * head_dim 64/96/128 (and 8, 32), f16 and bf16, visual counts with and
 * without a multiple of 8, every spec (aw=1 with random weights holding
 * zeros and ties), and NaN / Inf planted in a visual element (the same
 * code and the same bytes left in the buffer). */
static void avx2_encoder_writes_the_scalar_bytes(void **state)
{
    (void)state;
    if (vkv_codec_set_impl(VKV_IMPL_AVX2) != VKV_OK)
        skip();
    static const vkv_shape sh[] = {
        {2, 2, 64, 40, VKV_DTYPE_F16, 3, {{3, 9}, {12, 10}, {30, 7}}},
        {1, 3, 96, 33, VKV_DTYPE_BF16, 2, {{0, 13}, {20, 13}}},
        {2, 2, 128, 70, VKV_DTYPE_F16, 1, {{0, 70}}},
        {1, 2, 128, 64, VKV_DTYPE_BF16, 1, {{0, 64}}},
        {1, 1, 96, 29, VKV_DTYPE_F16, 1, {{2, 27}}},
        {1, 2, 64, 5, VKV_DTYPE_BF16, 1, {{0, 5}}},
        {1, 2, 8, 20, VKV_DTYPE_F16, 1, {{2, 17}}},
        {1, 1, 32, 9, VKV_DTYPE_BF16, 1, {{0, 1}}},
    };
    static const char *const sp[] = {"tc",
                                     "tc:kb=1.1875",
                                     "tc:kb=1,aw=1",
                                     "tc:kb=2,vb=1.5",
                                     "tc:kb=0.375,vb=3",
                                     "tc:kb=3,vb=0.125,aw=1",
                                     "tc:kb=1.625,vb=0.5"};
    uint64_t x = 77;
    int compared = 0;
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++)
        for (size_t k = 0; k < sizeof sp / sizeof sp[0]; k++)
            for (uint64_t seed = 1; seed <= 3; seed++) {
                ku_chunk c;
                assert_int_equal(ku_chunk_alloc(&c, &sh[i], seed == 2 ? 3 : 0), 0);
                if (seed == 3)
                    ku_chunk_fill(&c, seed + 100 * i);
                else
                    fill_mixed(&c, seed + 100 * i + 10 * k);
                vkv_codec_spec spec = spec_of(sp[k]);
                const size_t nw = (size_t)sh[i].kv_heads * sh[i].head_dim;
                float **wl = calloc(sh[i].layers, sizeof(float *));
                assert_non_null(wl);
                for (uint32_t l = 0; l < sh[i].layers; l++) {
                    wl[l] = malloc(nw * sizeof(float));
                    assert_non_null(wl[l]);
                    for (size_t e = 0; e < nw; e++) {
                        uint64_t r = xs64(&x) % 8u; /* zeros and ties */
                        wl[l][e] = r < 2 ? 0.0f : r < 4 ? 1.0f : (float)(xs64(&x) % 997u) / 97.0f;
                    }
                }
                const float *const *w = spec.iters ? (const float *const *)wl : NULL;
                size_t size;
                assert_int_equal(vkv_codec_encoded_size(&sh[i], &spec, &size), VKV_OK);
                for (int bad = 0; bad < 3; bad++) {
                    if (bad) { /* NaN (1) or Inf (2) in a random visual element */
                        const vkv_shape *s = &sh[i];
                        uint32_t r = (uint32_t)(xs64(&x) % s->n_ranges);
                        uint32_t t = s->ranges[r].start + (uint32_t)(xs64(&x) % s->ranges[r].len);
                        uint16_t nan = s->dtype == VKV_DTYPE_F16 ? 0x7e00 : 0x7fc0;
                        uint16_t inf = s->dtype == VKV_DTYPE_F16 ? 0xfc00 : 0xff80;
                        *ku_at(&c, (int)(xs64(&x) % 2u), (uint32_t)(xs64(&x) % s->layers), t,
                               (uint32_t)(xs64(&x) % s->kv_heads),
                               (uint32_t)(xs64(&x) % s->head_dim)) = bad == 1 ? nan : inf;
                    }
                    int rs, rf;
                    uint8_t *a = encode_with(VKV_IMPL_SCALAR, &c, &spec, w, size, &rs);
                    uint8_t *b = encode_with(VKV_IMPL_AVX2, &c, &spec, w, size, &rf);
                    assert_int_equal(rs, bad ? VKV_ENONFINITE : VKV_OK);
                    assert_int_equal(rf, rs);
                    assert_memory_equal(a, b, size);
                    compared++;
                    free(a);
                    free(b);
                }
                for (uint32_t l = 0; l < sh[i].layers; l++)
                    free(wl[l]);
                free(wl);
                ku_chunk_free(&c);
            }
    assert_int_equal(compared,
                     (int)(sizeof sh / sizeof sh[0] * (sizeof sp / sizeof sp[0]) * 3 * 3));
    (void)vkv_codec_set_impl(VKV_IMPL_AUTO);
}

/* The scale byte by bisection: the first c in 0..254 with scale(c) <= a,
 * then the tie rule (what vkvk_tc_scale_code must return; the encoder
 * finds it by a walk from a log2 guess). */
static uint32_t bisect_scale_code(float a, float top)
{
    if (!(a > 0.0f) || !(top > 0.0f))
        return VKVK_TC_ZERO_CODE;
    uint32_t lo = 0, hi = VKVK_TC_ZERO_CODE - 1u;
    if (vkvk_tc_scale(top, hi) > a)
        return hi;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2u;
        if (vkvk_tc_scale(top, mid) <= a)
            hi = mid;
        else
            lo = mid + 1u;
    }
    if (lo > 0 && vkvk_tc_scale(top, lo - 1u) - a <= a - vkvk_tc_scale(top, lo))
        return lo - 1u;
    return lo;
}

/* Returns the float whose bits are u. */
static float bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* vkvk_tc_scale_code equals the bisection: random positive a and top over
 * the whole float range (subnormals, Inf, NaN, a far above or below top),
 * every code's own value, and the values one ulp around each midpoint
 * between neighbouring codes (the ties). */
static void scale_code_walk_equals_bisection(void **state)
{
    (void)state;
    uint64_t seed = 0x5ca1e;
    size_t checked = 0;
    for (int i = 0; i < 200000; i++) {
        float a = bits_to_f32((uint32_t)ku_rand(&seed) & 0x7fffffffu);
        float top = bits_to_f32((uint32_t)ku_rand(&seed) & 0x7fffffffu);
        if (i & 1) /* a near top, where the scales are dense */
            a = top * (float)(ku_rand(&seed) >> 40) / (float)(1u << 24);
        assert_int_equal(vkvk_tc_scale_code(a, top), bisect_scale_code(a, top));
        checked++;
    }
    const float tops[] = {1.0f, 0.3f, 65504.0f, 6.1e-5f, 3.0e38f};
    for (size_t t = 0; t < sizeof tops / sizeof tops[0]; t++)
        for (uint32_t c = 0; c < VKVK_TC_ZERO_CODE; c++) {
            float v = vkvk_tc_scale(tops[t], c);
            float m = c + 1u < VKVK_TC_ZERO_CODE ? 0.5f * (v + vkvk_tc_scale(tops[t], c + 1u)) : v;
            const float probe[] = {v, nextafterf(v, 0.0f), nextafterf(v, INFINITY),
                                   m, nextafterf(m, 0.0f), nextafterf(m, INFINITY)};
            for (size_t k = 0; k < sizeof probe / sizeof probe[0]; k++) {
                assert_int_equal(vkvk_tc_scale_code(probe[k], tops[t]),
                                 bisect_scale_code(probe[k], tops[t]));
                checked++;
            }
        }
    assert_int_equal(vkvk_tc_scale_code(0.0f, 1.0f), VKVK_TC_ZERO_CODE);
    assert_int_equal(vkvk_tc_scale_code(NAN, 1.0f), VKVK_TC_ZERO_CODE);
    assert_int_equal(vkvk_tc_scale_code(1.0f, 0.0f), VKVK_TC_ZERO_CODE);
    assert_true(checked > 200000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(specs_parse_format_and_refuse),
        cmocka_unit_test(sizes_header_and_sections_are_canonical),
        cmocka_unit_test(decode_matches_the_format_text_and_errors_fall_with_bits),
        cmocka_unit_test(weights_steer_the_key_allocation),
        cmocka_unit_test(every_impl_writes_the_same_bytes_and_paged_equals_dense),
        cmocka_unit_test(identity_geometry_and_tampering),
        cmocka_unit_test(nonfinite_and_head_dim_96),
        cmocka_unit_test(avx2_rows_are_bit_identical_to_scalar),
        cmocka_unit_test(avx2_block_decode_equals_scalar),
        cmocka_unit_test(avx2_encoder_writes_the_scalar_bytes),
        cmocka_unit_test(scale_code_walk_equals_bisection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
