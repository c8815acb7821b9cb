/*
 * tests/kernels/kernels_errors_test.c - every bad input the codec rejects,
 * each with its specific error, and tampered blocks: the decoder returns the
 * error and leaves the destination untouched.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>
#include <xxhash.h>

#include "kernels_util.h"

static const enum vkv_impl impls[] = {VKV_IMPL_SCALAR, VKV_IMPL_AVX2, VKV_IMPL_AVX512};

/* A small valid shape with two visual ranges. */
static vkv_shape base_shape(void)
{
    vkv_shape sh = {2, 2, 32, 24, VKV_DTYPE_F16, 2, {{2, 9}, {12, 10}}};
    return sh;
}

static void bad_shapes_are_eshape(void **state)
{
    (void)state;
    vkv_codec_spec spec;
    vkv_codec_spec_default(&spec);
    vkv_shape sh = base_shape();
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_OK);
    sh.layers = 0;
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ESHAPE);
    sh = base_shape();
    sh.kv_heads = 0;
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ESHAPE);
    sh = base_shape();
    sh.head_dim = 0;
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ESHAPE);
    sh = base_shape();
    sh.tokens = 0;
    sh.n_ranges = 0;
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ESHAPE);
    sh = base_shape();
    sh.head_dim = 36; /* not a multiple of 8 */
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ESHAPE);
    sh = base_shape();
    sh.head_dim = VKV_BLOCK_MAX_HEAD_DIM + 8;
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ESHAPE);
    sh = base_shape();
    sh.tokens = VKV_BLOCK_MAX_TOKENS + 1;
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ESHAPE);
    sh = base_shape();
    sh.dtype = 3;
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ESHAPE);
    size_t size = 0;
    assert_int_equal(vkv_codec_encoded_size(&sh, &spec, &size), VKV_ESHAPE);
}

static void bad_group_sizes_are_egroup(void **state)
{
    (void)state;
    vkv_shape sh = base_shape();
    vkv_codec_spec spec;
    assert_int_equal(vkv_codec_spec_parse("lloyd", &spec), VKV_OK);
    spec.v_group = 12; /* TOKEN: not a multiple of 8 */
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_EGROUP);
    spec.v_group = 24; /* TOKEN: does not divide head_dim 32 */
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_EGROUP);
    spec.v_group = 64; /* TOKEN: larger than head_dim */
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_EGROUP);
    spec.v_group = 16;
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_OK);
    spec.k_group = 0; /* CHANNEL: zero */
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_EGROUP);
    /* G > 65535 cannot be stored; the parser refuses it */
    assert_int_equal(vkv_codec_spec_parse("lloyd:kg=65536", &spec), VKV_ESPEC);
    assert_int_equal(vkv_codec_spec_parse("lloyd:kg=65535", &spec), VKV_OK);
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_OK);
    /* rotsign TOKEN mode rotates: head_dim must be a power of two */
    assert_int_equal(vkv_codec_spec_parse("rotsign", &spec), VKV_OK);
    sh.head_dim = 24;
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_EGROUP);
    assert_int_equal(vkv_codec_spec_parse("rotsign:kmode=channel", &spec), VKV_OK);
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_OK);
}

static void bad_ranges_are_eranges(void **state)
{
    (void)state;
    vkv_codec_spec spec;
    vkv_codec_spec_default(&spec);
    vkv_shape sh = base_shape();
    sh.ranges[1].start = 10; /* overlaps [2, 11) */
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ERANGES);
    sh = base_shape();
    vkv_block_range t = sh.ranges[0];
    sh.ranges[0] = sh.ranges[1];
    sh.ranges[1] = t; /* unsorted */
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ERANGES);
    sh = base_shape();
    sh.ranges[1].len = 13; /* ends past tokens */
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ERANGES);
    sh = base_shape();
    sh.ranges[1].start = 0xfffffff0u; /* start + len wraps 32 bits */
    sh.ranges[1].len = 0x20;
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ERANGES);
    sh = base_shape();
    sh.ranges[0].len = 0; /* empty */
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ERANGES);
    sh = base_shape();
    sh.n_ranges = VKV_BLOCK_MAX_RANGES + 1; /* too many */
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ERANGES);
    sh = base_shape();
    sh.n_ranges = 8;
    for (uint32_t r = 0; r < 8; r++)
        sh.ranges[r] = (vkv_block_range){r * 3, 2};
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_OK);
}

static void bad_specs_are_espec(void **state)
{
    (void)state;
    vkv_shape sh = base_shape();
    vkv_codec_spec spec;
    vkv_codec_spec_default(&spec);
    spec.rule = 0;
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ESPEC);
    assert_int_equal(vkv_codec_spec_parse("lloyd", &spec), VKV_OK);
    spec.iters = 0;
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ESPEC);
    spec.iters = 17;
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ESPEC);
    vkv_codec_spec_default(&spec);
    spec.k_mode = 3;
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ESPEC);
    /* rotsign: scale widths 8 or 16, no parameters, iters <= 16 */
    assert_int_equal(vkv_codec_spec_parse("rotsign", &spec), VKV_OK);
    spec.k_group = 12;
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ESPEC);
    assert_int_equal(vkv_codec_spec_parse("rotsign", &spec), VKV_OK);
    spec.v_param = 0.5f;
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ESPEC);
    assert_int_equal(vkv_codec_spec_parse("rotsign", &spec), VKV_OK);
    spec.iters = 17;
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ESPEC);
    assert_int_equal(vkv_codec_spec_parse("minmax", &spec), VKV_OK);
    spec.k_param = 1.0f; /* shrink must be < 1 */
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ESPEC);
    spec.k_param = NAN;
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ESPEC);
    assert_int_equal(vkv_codec_spec_parse("quantile", &spec), VKV_OK);
    spec.v_param = 0.5f; /* p must be < 0.5 */
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ESPEC);
    spec.v_param = 0.0f;
    assert_int_equal(vkv_codec_check(&sh, &spec), VKV_ESPEC);
    const char *bad[] = {"",
                         "median",
                         "lloyd:",
                         "lloyd:kg",
                         "lloyd:x=1",
                         "lloyd:kg=1,kg=2",
                         "lloyd:kp=0.3",
                         "minmax:iters=2",
                         "minmax:kp=1",
                         "quantile:vp=0.6",
                         "lloyd:kmode=row",
                         "lloyd:iters=0",
                         "lloyd:kg=-1",
                         "minmax:kp=0.5x",
                         "lloyd:kg=12,",
                         "lloyd:iters=99",
                         "rotsign:kg=8",
                         "rotsign:kbits=4",
                         "rotsign:vbits=32",
                         "rotsign:kp=0",
                         "rotsign:iters=17",
                         "lloyd:kbits=8",
                         "rotsign:kbits=8,kbits=16",
                         "rotsign:vmode=rank"};
    vkv_codec_spec keep;
    vkv_codec_spec_default(&keep);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        spec = keep;
        assert_int_equal(vkv_codec_spec_parse(bad[i], &spec), VKV_ESPEC);
        assert_memory_equal(&spec, &keep, sizeof(spec)); /* untouched on error */
    }
    assert_int_equal(vkv_codec_spec_parse(NULL, &spec), VKV_ESPEC);
}

/* NaN or Inf in a visual token fails with every implementation and both
 * dtypes; the same values in raw tokens are copied as they are. */
static void nonfinite_visual_values_are_enonfinite(void **state)
{
    (void)state;
    const char *specs[] = {"lloyd", "minmax:kmode=token,kg=8,vmode=channel,vg=3", "quantile",
                           "rotsign",
                           "rotsign:kmode=channel,kbits=16,vmode=token,vbits=16,iters=2"};
    for (int dt = VKV_DTYPE_F16; dt <= VKV_DTYPE_BF16; dt++)
        for (size_t ii = 0; ii < 3; ii++) {
            if (vkv_codec_set_impl(impls[ii]) != VKV_OK)
                continue;
            for (int which = 0; which < 3; which++)
                for (int s = 0; s < 2; s++)
                    for (size_t si = 0; si < sizeof(specs) / sizeof(specs[0]); si++) {
                        vkv_shape sh = base_shape();
                        sh.dtype = (uint8_t)dt;
                        ku_chunk c;
                        assert_int_equal(ku_chunk_alloc(&c, &sh, 0), 0);
                        ku_chunk_fill(&c, 3);
                        vkv_codec_spec spec;
                        assert_int_equal(vkv_codec_spec_parse(specs[si], &spec), VKV_OK);
                        size_t size;
                        assert_int_equal(vkv_codec_encoded_size(&sh, &spec, &size), VKV_OK);
                        uint8_t *blk = malloc(size);
                        vkv_kv_src src = ku_src(&c);
                        uint16_t bad = dt == VKV_DTYPE_F16 ? (which == 0   ? 0x7c00
                                                              : which == 1 ? 0xfc00
                                                                           : 0x7e01)
                                                           : (which == 0   ? 0x7f80
                                                              : which == 1 ? 0xff80
                                                                           : 0x7fc1);
                        /* raw token 0 and 11: fine */
                        *ku_at(&c, s, 1, 0, 1, 5) = bad;
                        *ku_at(&c, s, 0, 11, 0, 31) = bad;
                        assert_int_equal(vkv_encode(&sh, &spec, &src, blk, size), VKV_OK);
                        /* visual token 20, last channel of the last head */
                        *ku_at(&c, s, 1, 20, 1, 31) = bad;
                        assert_int_equal(vkv_encode(&sh, &spec, &src, blk, size), VKV_ENONFINITE);
                        free(blk);
                        ku_chunk_free(&c);
                    }
        }
    vkv_codec_set_impl(VKV_IMPL_AUTO);
}

/* The rotsign SIMD encoders check fp16 inputs through their per-channel
 * sums (codec_simd_rot.h): finite extremes (every visual value +-65504,
 * sums far from overflow) still encode, and +Inf and -Inf in one channel
 * (a NaN sum) or a NaN among extremes still fail, as in the reference. */
static void rotsign_fp16_extremes_and_mixed_infinities(void **state)
{
    (void)state;
    const char *specs[] = {"rotsign", "rotsign:kmode=channel,vmode=token"};
    for (size_t ii = 0; ii < 3; ii++) {
        if (vkv_codec_set_impl(impls[ii]) != VKV_OK)
            continue;
        for (size_t si = 0; si < 2; si++)
            for (int s = 0; s < 2; s++) {
                vkv_shape sh = base_shape();
                ku_chunk c;
                assert_int_equal(ku_chunk_alloc(&c, &sh, 0), 0);
                for (uint32_t l = 0; l < sh.layers; l++)
                    for (uint32_t t = 0; t < sh.tokens; t++)
                        for (uint32_t h = 0; h < sh.kv_heads; h++)
                            for (uint32_t d = 0; d < sh.head_dim; d++) {
                                *ku_at(&c, 0, l, t, h, d) = (t + d) % 3 ? 0x7bff : 0xfbff;
                                *ku_at(&c, 1, l, t, h, d) = 0x7bff;
                            }
                vkv_codec_spec spec;
                assert_int_equal(vkv_codec_spec_parse(specs[si], &spec), VKV_OK);
                size_t size;
                assert_int_equal(vkv_codec_encoded_size(&sh, &spec, &size), VKV_OK);
                uint8_t *blk = malloc(size);
                assert_non_null(blk);
                vkv_kv_src src = ku_src(&c);
                assert_int_equal(vkv_encode(&sh, &spec, &src, blk, size), VKV_OK);
                *ku_at(&c, s, 1, 20, 1, 7) = 0x7c00;
                *ku_at(&c, s, 1, 21, 1, 7) = 0xfc00;
                assert_int_equal(vkv_encode(&sh, &spec, &src, blk, size), VKV_ENONFINITE);
                *ku_at(&c, s, 1, 20, 1, 7) = 0x7bff;
                *ku_at(&c, s, 1, 21, 1, 7) = 0x7e00;
                assert_int_equal(vkv_encode(&sh, &spec, &src, blk, size), VKV_ENONFINITE);
                free(blk);
                ku_chunk_free(&c);
            }
    }
    vkv_codec_set_impl(VKV_IMPL_AUTO);
}

/* Spec of make_block's blocks (the tamper edits below assume lloyd). */
static const char *make_block_spec = "lloyd";

/* Encodes a valid block of base_shape into *blk (caller frees). */
static size_t make_block(uint8_t **blk, ku_chunk *c)
{
    vkv_shape sh = base_shape();
    assert_int_equal(ku_chunk_alloc(c, &sh, 0), 0);
    ku_chunk_fill(c, 17);
    vkv_codec_spec spec;
    assert_int_equal(vkv_codec_spec_parse(make_block_spec, &spec), VKV_OK);
    size_t size;
    assert_int_equal(vkv_codec_encoded_size(&sh, &spec, &size), VKV_OK);
    *blk = malloc(size);
    vkv_kv_src src = ku_src(c);
    assert_int_equal(vkv_encode(&sh, &spec, &src, *blk, size - 1), VKV_ETRUNC);
    assert_int_equal(vkv_encode(&sh, &spec, &src, *blk, size), VKV_OK);
    return size;
}

/* Decodes (dense, then paged) into sentinel-filled buffers; asserts the
 * error `want` both times and that no byte of either destination changed. */
static void expect_decode_error(const uint8_t *blk, size_t size, unsigned flags, int want)
{
    vkv_shape sh = base_shape();
    ku_chunk d;
    assert_int_equal(ku_chunk_alloc(&d, &sh, 0), 0);
    for (uint32_t l = 0; l < sh.layers; l++) {
        memset(d.k[l], 0x3b, 2 * d.layer_elems);
        memset(d.v[l], 0x3b, 2 * d.layer_elems);
    }
    vkv_kv_dst dd = ku_dst(&d);
    assert_int_equal(vkv_decode(blk, size, flags, &dd), want);
    int32_t table[4] = {3, 1, 0, 2};
    size_t lay = 4 * 8 * (size_t)sh.kv_heads * sh.head_dim;
    uint16_t *kc[2], *vc[2];
    for (int l = 0; l < 2; l++) {
        kc[l] = malloc(2 * lay);
        vc[l] = malloc(2 * lay);
        memset(kc[l], 0x3b, 2 * lay);
        memset(vc[l], 0x3b, 2 * lay);
    }
    vkv_paged_dst pd = {(void *const *)kc,
                        (void *const *)vc,
                        4,
                        8,
                        table,
                        4,
                        5,
                        0,
                        0,
                        0,
                        0,
                        vkv_geometry_of(&sh),
                        NULL};
    assert_int_equal(vkv_decode_paged(blk, size, flags, &pd), want);
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < d.layer_elems; i++)
            assert_true(d.k[l][i] == 0x3b3b && d.v[l][i] == 0x3b3b);
        for (size_t i = 0; i < lay; i++)
            assert_true(kc[l][i] == 0x3b3b && vc[l][i] == 0x3b3b);
        free(kc[l]);
        free(vc[l]);
    }
    ku_chunk_free(&d);
}

/* Recomputes the header checksum after a deliberate header edit. */
static void rehash(uint8_t *blk)
{
    vkv_block_header h;
    memcpy(&h, blk, sizeof(h));
    h.header_xxh3 = 0;
    h.payload_xxh3 = 0;
    uint64_t x = XXH3_64bits(&h, sizeof(h));
    memcpy(blk + 24, &x, 8);
}

static void tampered_blocks_fail_without_touching_dst(void **state)
{
    (void)state;
    ku_chunk c;
    uint8_t *blk;
    size_t size = make_block(&blk, &c);
    uint8_t *t = malloc(size);
    /* magic, version */
    memcpy(t, blk, size);
    t[0] ^= 1;
    expect_decode_error(t, size, 0, VKV_EMAGIC);
    memcpy(t, blk, size);
    t[4] ^= 2;
    expect_decode_error(t, size, 0, VKV_EVERSION);
    /* every other header byte flipped: header_size is checked first, the
     * rest fails the header checksum (or, for the payload checksum field,
     * the payload check) */
    for (size_t i = 6; i < VKV_BLOCK_HEADER_SIZE; i++) {
        memcpy(t, blk, size);
        t[i] ^= 0x40;
        int want = i < 8 ? VKV_ECORRUPT : VKV_ECHECKSUM;
        expect_decode_error(t, size, VKV_DECODE_VERIFY, want);
    }
    /* payload bytes: checksum mismatch under VERIFY */
    for (size_t i = VKV_BLOCK_HEADER_SIZE; i < size; i += 97) {
        memcpy(t, blk, size);
        t[i] ^= 0x01;
        expect_decode_error(t, size, VKV_DECODE_VERIFY, VKV_ECHECKSUM);
        assert_int_equal(vkv_block_check(t, size, 0, NULL), VKV_OK);
    }
    /* truncation below the header, and at and around every section boundary */
    vkv_block_header h;
    assert_int_equal(vkv_block_check(blk, size, VKV_DECODE_VERIFY, &h), VKV_OK);
    expect_decode_error(blk, 0, 0, VKV_ETRUNC);
    expect_decode_error(blk, VKV_BLOCK_HEADER_SIZE - 1, 0, VKV_ETRUNC);
    for (int s = 0; s < VKV_SEC_COUNT; s++) {
        size_t cuts[3] = {h.sections[s].offset, h.sections[s].offset + h.sections[s].size - 1,
                          h.sections[s].offset + 1};
        for (int k = 0; k < 3; k++)
            if (cuts[k] < size && cuts[k] >= VKV_BLOCK_HEADER_SIZE)
                expect_decode_error(blk, cuts[k], 0, VKV_ETRUNC);
    }
    expect_decode_error(blk, size - 1, VKV_DECODE_VERIFY, VKV_ETRUNC);
    /* inconsistent fields with a valid header checksum: corrupt */
    struct {
        size_t off;
        uint32_t val;
        int width;
    } edits[] = {
        {offsetof(vkv_block_header, head_dim), 36, 4},        /* not a multiple of 8 */
        {offsetof(vkv_block_header, tokens), 21, 4},          /* ranges past tokens */
        {offsetof(vkv_block_header, layers), 0, 4},           /* zero */
        {offsetof(vkv_block_header, layers), 3, 4},           /* sizes no longer match */
        {offsetof(vkv_block_header, rule), 9, 1},             /* unknown rule */
        {offsetof(vkv_block_header, dtype), 0, 1},            /* unknown dtype */
        {offsetof(vkv_block_header, v_group), 0, 2},          /* unresolved TOKEN G */
        {offsetof(vkv_block_header, v_group), 24, 2},         /* G not dividing head_dim */
        {offsetof(vkv_block_header, n_ranges), 9, 4},         /* too many ranges */
        {offsetof(vkv_block_header, iters), 0, 1},            /* lloyd without iterations */
        {offsetof(vkv_block_header, reserved) + 3, 1, 1},     /* reserved not zero */
        {offsetof(vkv_block_header, ranges) + 8, 1, 4},       /* overlapping ranges */
        {offsetof(vkv_block_header, ranges) + 16, 30, 4},     /* unused range not zero */
        {offsetof(vkv_block_header, sections) + 16, 320, 4},  /* section moved */
        {offsetof(vkv_block_header, sections) + 8, 64, 4},    /* section resized */
        {offsetof(vkv_block_header, total_size), 1 << 20, 4}, /* total size wrong */
        {6, 255, 2},                                          /* header_size */
    };
    for (size_t e = 0; e < sizeof(edits) / sizeof(edits[0]); e++) {
        memcpy(t, blk, size);
        memset(t + edits[e].off, 0, (size_t)edits[e].width);
        memcpy(t + edits[e].off, &edits[e].val, (size_t)edits[e].width);
        rehash(t);
        expect_decode_error(t, size, 0, VKV_ECORRUPT);
    }
    /* rotsign blocks: scale widths other than 8/16, a parameter, an unknown
     * mode or too many passes are corrupt too */
    free(blk);
    ku_chunk_free(&c);
    make_block_spec = "rotsign";
    size_t rsize = make_block(&blk, &c);
    make_block_spec = "lloyd";
    t = realloc(t, rsize);
    struct {
        size_t off;
        uint32_t val;
        int width;
    } redits[] = {
        {offsetof(vkv_block_header, k_group), 12, 2},
        {offsetof(vkv_block_header, v_group), 0, 2},
        {offsetof(vkv_block_header, v_group), 16, 2}, /* sizes no longer match */
        {offsetof(vkv_block_header, k_param), 0x3f800000u, 4},
        {offsetof(vkv_block_header, k_mode), 3, 1},
        {offsetof(vkv_block_header, iters), 17, 1},
    };
    for (size_t e = 0; e < sizeof(redits) / sizeof(redits[0]); e++) {
        memcpy(t, blk, rsize);
        memset(t + redits[e].off, 0, (size_t)redits[e].width);
        memcpy(t + redits[e].off, &redits[e].val, (size_t)redits[e].width);
        rehash(t);
        expect_decode_error(t, rsize, 0, VKV_ECORRUPT);
    }
    /* wrong payload checksum field with a re-hashed header (blk and t now
     * hold the rotsign block: rsize bytes) */
    memcpy(t, blk, rsize);
    t[16] ^= 0xff;
    rehash(t);
    assert_int_equal(vkv_block_check(t, rsize, 0, NULL), VKV_OK);
    expect_decode_error(t, rsize, VKV_DECODE_VERIFY, VKV_ECHECKSUM);
    /* unknown flags */
    assert_int_equal(vkv_block_check(blk, size, 0x80, NULL), VKV_EINVAL);
    free(t);
    free(blk);
    ku_chunk_free(&c);
}

/* Paged destinations that a position would leave: EINVAL, nothing written. */
static void paged_destination_errors_are_einval(void **state)
{
    (void)state;
    ku_chunk c;
    uint8_t *blk;
    size_t size = make_block(&blk, &c);
    size_t lay = 4 * 8 * 2 * 32;
    uint16_t *kc[2], *vc[2];
    for (int l = 0; l < 2; l++) {
        kc[l] = calloc(lay, 2);
        vc[l] = calloc(lay, 2);
    }
    int32_t table[4] = {0, 1, 2, 3};
    vkv_paged_dst pd = {(void *const *)kc,
                        (void *const *)vc,
                        4,
                        8,
                        table,
                        4,
                        5,
                        0,
                        0,
                        0,
                        0,
                        vkv_geometry_of(&c.shape),
                        NULL};
    assert_int_equal(vkv_decode_paged(blk, size, 0, &pd), VKV_OK);
    for (int l = 0; l < 2; l++)
        memset(kc[l], 0, 2 * lay);
    pd.first_pos = 9; /* 24 tokens from 9 end at 32: page 4 does not exist in the table */
    assert_int_equal(vkv_decode_paged(blk, size, 0, &pd), VKV_EINVAL);
    pd.first_pos = 0;
    table[2] = 4; /* page id past num_pages */
    assert_int_equal(vkv_decode_paged(blk, size, 0, &pd), VKV_EINVAL);
    table[2] = -1;
    assert_int_equal(vkv_decode_paged(blk, size, 0, &pd), VKV_EINVAL);
    table[2] = 2;
    pd.page_size = 0;
    assert_int_equal(vkv_decode_paged(blk, size, 0, &pd), VKV_EINVAL);
    pd.page_size = 8;
    pd.block_table_len = 2;
    assert_int_equal(vkv_decode_paged(blk, size, 0, &pd), VKV_EINVAL);
    pd.block_table_len = 4;
    pd.first_pos = 0xfffffff0u; /* positions past 2^32 */
    assert_int_equal(vkv_decode_paged(blk, size, 0, &pd), VKV_EINVAL);
    for (int l = 0; l < 2; l++)
        for (size_t i = 0; i < lay; i++)
            assert_int_equal(kc[l][i], 0);
    /* dense: a null layer pointer */
    vkv_kv_dst dd = ku_dst(&c);
    uint16_t *keep = c.k[1];
    c.k[1] = NULL;
    assert_int_equal(vkv_decode(blk, size, 0, &dd), VKV_EINVAL);
    c.k[1] = keep;
    assert_int_equal(vkv_decode(blk, size, 0, NULL), VKV_EINVAL);
    for (int l = 0; l < 2; l++) {
        free(kc[l]);
        free(vc[l]);
    }
    free(blk);
    ku_chunk_free(&c);
}

static void implementation_selection(void **state)
{
    (void)state;
    assert_int_equal(vkv_codec_set_impl((enum vkv_impl)9), VKV_EINVAL);
    assert_int_equal(vkv_codec_set_impl(VKV_IMPL_SCALAR), VKV_OK);
    assert_int_equal(vkv_codec_impl(), VKV_IMPL_SCALAR);
    assert_string_equal(vkv_codec_impl_name(vkv_codec_impl()), "scalar");
    assert_int_equal(vkv_codec_set_impl(VKV_IMPL_AUTO), VKV_OK);
    assert_true(vkv_codec_impl() != VKV_IMPL_AUTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_shapes_are_eshape),
        cmocka_unit_test(bad_group_sizes_are_egroup),
        cmocka_unit_test(bad_ranges_are_eranges),
        cmocka_unit_test(bad_specs_are_espec),
        cmocka_unit_test(nonfinite_visual_values_are_enonfinite),
        cmocka_unit_test(rotsign_fp16_extremes_and_mixed_infinities),
        cmocka_unit_test(tampered_blocks_fail_without_touching_dst),
        cmocka_unit_test(paged_destination_errors_are_einval),
        cmocka_unit_test(implementation_selection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
