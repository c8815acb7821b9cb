/*
 * tests/kernels/kernels_math_test.c - the shared per-group math
 * (codec_math.h): dtype conversions against F16C and known values, the level
 * rules on hand-worked groups, the section layout, and spec strings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "kernels/codec_internal.h"
#include "kernels_util.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
/* F16C conversions, compiled for this function only and called after a
 * CPUID check. */
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f)
{
    return (uint16_t)_cvtss_sh(f, 0);
}
__attribute__((target("f16c"))) static float hw_f16_to_f32(uint16_t h)
{
    return _cvtsh_ss(h);
}
#endif

static void fp16_conversion_matches_known_values(void **state)
{
    (void)state;
    assert_int_equal(vkvk_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(vkvk_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(vkvk_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(vkvk_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(vkvk_f32_to_f16(65520.0f), 0x7c00);              /* tie rounds to even = Inf */
    assert_int_equal(vkvk_f32_to_f16(5.9604645e-8f), 0x0001);         /* 2^-24 */
    assert_int_equal(vkvk_f32_to_f16(2.9802322e-8f), 0x0000);         /* 2^-25: tie to even 0 */
    assert_int_equal(vkvk_f32_to_f16(1.0f + 1.0f / 2048.0f), 0x3c00); /* tie to even */
    assert_int_equal(vkvk_f32_to_f16(1.0f + 3.0f / 2048.0f), 0x3c02); /* tie to even (up) */
    assert_int_equal(vkvk_f32_to_f16(-0.0f), 0x8000);
    assert_true(vkvk_f16_to_f32(0x0001) == 5.9604645e-8f);
    assert_true(vkvk_f16_to_f32(0xfbff) == -65504.0f);
    assert_int_equal(vkvk_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(vkvk_f32_to_bf16(vkvk_bits_f32(0x3f808000u)), 0x3f80); /* tie to even */
    assert_int_equal(vkvk_f32_to_bf16(vkvk_bits_f32(0x3f818000u)), 0x3f82);
    assert_true(vkvk_bf16_to_f32(0xc040) == -3.0f);
    /* every half round-trips exactly (NaNs stay NaN) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = vkvk_f16_to_f32((uint16_t)h);
        if (isnan(f))
            assert_true(isnan(vkvk_f16_to_f32(vkvk_f32_to_f16(f))));
        else
            assert_int_equal(vkvk_f32_to_f16(f), h);
        assert_int_equal(vkvk_f32_to_bf16(vkvk_bf16_to_f32((uint16_t)h)) |
                             (isnan(vkvk_bf16_to_f32((uint16_t)h)) ? 0x40 : 0),
                         h | (isnan(vkvk_bf16_to_f32((uint16_t)h)) ? 0x40 : 0));
    }
}

static void fp16_conversion_matches_f16c(void **state)
{
    (void)state;
#if defined(__x86_64__)
    /* F16C by CPUID (leaf 1, ECX bit 29); clang has no "f16c" string for
     * __builtin_cpu_supports. */
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 29)))
        skip();
    for (uint32_t h = 0; h < 65536; h++) {
        float a = vkvk_f16_to_f32((uint16_t)h), b = hw_f16_to_f32((uint16_t)h);
        if (!isnan(a))
            assert_true(vkvk_f32_bits(a) == vkvk_f32_bits(b));
    }
    uint64_t s = 1;
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = (uint32_t)ku_rand(&s);
        if (i % 2)
            u = (u & 0x8fffffffu) | 0x30000000u; /* bias toward the half range */
        float f = vkvk_bits_f32(u);
        if (isnan(f))
            continue;
        assert_int_equal(vkvk_f32_to_f16(f), hw_f32_to_f16(f));
    }
#else
    skip();
#endif
}

static void level_rules_on_hand_worked_groups(void **state)
{
    (void)state;
    float lo, hi;
    vkvk_minmax_levels(-1.0f, 3.0f, 0.5f, &lo, &hi); /* shrink 0.5: quarter of 4 from each end */
    assert_true(lo == 0.0f && hi == 2.0f);
    vkvk_minmax_levels(-1.0f, 3.0f, 0.0f, &lo, &hi);
    assert_true(lo == -1.0f && hi == 3.0f);
    /* quantile: n = 11 sorted 0..10, p = 0.2 -> k = 2, levels v[2], v[8] */
    float v[11] = {7, 3, 10, 0, 5, 1, 9, 2, 8, 6, 4};
    vkvk_quantile_levels(v, 11, 0.2f, &lo, &hi);
    assert_true(lo == 2.0f && hi == 8.0f);
    float z[3] = {-0.0f, -0.0f, 1.0f};
    vkvk_quantile_levels(z, 3, 0.2f, &lo, &hi);
    assert_int_equal(vkvk_f32_bits(lo), 0); /* -0 normalised to +0 */
    /* lloyd update: empty side takes the other's level */
    float thr = vkvk_lloyd_update(0.0f, 0, 6.0f, 3, &lo, &hi);
    assert_true(lo == 2.0f && hi == 2.0f && thr == 2.0f);
    thr = vkvk_lloyd_update(-4.0f, 2, 9.0f, 3, &lo, &hi);
    assert_true(lo == -2.0f && hi == 3.0f && thr == 0.5f);
    /* finish: constant group exact, levels clamped, midpoint of rounded levels */
    uint16_t lh, hh;
    float mid = vkvk_group_finish(VKV_DTYPE_F16, 123.0f, -7.0f, 0.3f, 0.3f, &lh, &hh);
    assert_int_equal(lh, vkvk_f32_to_f16(0.3f));
    assert_int_equal(hh, lh);
    assert_true(mid == vkvk_f16_to_f32(lh));
    mid = vkvk_group_finish(VKV_DTYPE_F16, -5.0f, 5.0f, -1.0f, 2.0f, &lh, &hh);
    assert_true(vkvk_f16_to_f32(lh) == -1.0f && vkvk_f16_to_f32(hh) == 2.0f && mid == 0.5f);
    /* the 32-lane tree's exact order: (1e8 + 1) - 1e8 style cancellation */
    float s[32] = {0};
    s[0] = 1e8f;
    s[16] = 1.0f;
    s[8] = -1e8f;
    assert_true(vkvk_tree32_sum(s) == 0.0f); /* (1e8 + 1) + (-1e8) = 0 in float */
}

static void layout_is_canonical_and_overflow_safe(void **state)
{
    (void)state;
    vkv_block_header h;
    memset(&h, 0, sizeof(h));
    h.layers = 2;
    h.kv_heads = 3;
    h.head_dim = 16;
    h.tokens = 10;
    h.n_ranges = 2;
    h.ranges[0] = (vkv_block_range){1, 4};
    h.ranges[1] = (vkv_block_range){6, 3};
    h.k_mode = VKV_GROUP_CHANNEL;
    h.k_group = 3;
    h.v_mode = VKV_GROUP_TOKEN;
    h.v_group = 8;
    vkvk_layout L;
    assert_int_equal(vkvk_layout_of(&h, &L), 0);
    assert_int_equal(L.n_vis, 7);
    assert_int_equal(L.n_raw, 3);
    assert_int_equal(L.ngrp[0], 3); /* ceil(4/3) + ceil(3/3) */
    assert_int_equal(L.size[VKV_SEC_RAW_K], 2 * 3 * 3 * 16 * 2);
    assert_int_equal(L.size[VKV_SEC_BITS_K], 2 * 7 * 3 * 2);
    assert_int_equal(L.size[VKV_SEC_LEV_K], 2 * 3 * 3 * 2 * 16 * 2);
    assert_int_equal(L.size[VKV_SEC_LEV_V], 2 * 7 * 3 * 2 * 2 * 2);
    assert_int_equal(L.off[0], 256);
    for (int s = 1; s < VKV_SEC_COUNT; s++) {
        assert_int_equal(L.off[s] % 64, 0);
        assert_true(L.off[s] >= L.off[s - 1] + L.size[s - 1]);
        assert_true(L.off[s] < L.off[s - 1] + L.size[s - 1] + 64);
    }
    assert_int_equal(L.total, L.off[5] + L.size[5]);
    h.layers = 0xffffffffu;
    h.kv_heads = 0xffffffffu;
    h.head_dim = 0xfffffff8u;
    h.tokens = 0xffffffffu;
    assert_int_equal(vkvk_layout_of(&h, &L), -1);
    h.head_dim = 12;
    assert_int_equal(vkvk_layout_of(&h, &L), -1);
}

static void spec_strings_round_trip(void **state)
{
    (void)state;
    const char *texts[] = {"lloyd",
                           "minmax",
                           "quantile",
                           "lloyd:kg=64,vmode=channel,vg=32,iters=5",
                           "minmax:kp=0.25,vp=0,kmode=token,kg=8",
                           "quantile:vp=0.125,vg=64",
                           "rotsign",
                           "rotsign:kmode=channel,vbits=16,iters=5",
                           "rotsign:vmode=token,kbits=16"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        vkv_codec_spec a, b;
        char buf[160];
        assert_int_equal(vkv_codec_spec_parse(texts[i], &a), VKV_OK);
        int n = vkv_codec_spec_format(&a, buf, sizeof(buf));
        assert_true(n > 0 && (size_t)n < sizeof(buf));
        assert_int_equal(vkv_codec_spec_parse(buf, &b), VKV_OK);
        assert_memory_equal(&a, &b, sizeof(a));
    }
    vkv_codec_spec d, p;
    vkv_codec_spec_default(&d);
    assert_int_equal(vkv_codec_spec_parse("rotsign", &p), VKV_OK);
    assert_memory_equal(&d, &p, sizeof(d));
    assert_int_equal(d.rule, VKV_RULE_ROTSIGN);
    assert_int_equal(d.k_mode, VKV_GROUP_TOKEN);
    assert_int_equal(d.k_group, 8);
    assert_int_equal(d.v_mode, VKV_GROUP_CHANNEL);
    assert_int_equal(d.v_group, 8);
    assert_int_equal(d.iters, 0);
    /* naming a level rule alone gives its own defaults, not the default's */
    assert_int_equal(vkv_codec_spec_parse("lloyd", &p), VKV_OK);
    assert_int_equal(p.k_mode, VKV_GROUP_CHANNEL);
    assert_int_equal(p.k_group, 256);
    assert_int_equal(p.v_mode, VKV_GROUP_TOKEN);
    assert_int_equal(p.v_group, 0);
    assert_int_equal(p.iters, 3);
    char rb[160];
    vkv_codec_spec_format(&d, rb, sizeof(rb));
    assert_string_equal(rb, "rotsign:kmode=token,kbits=8,vmode=channel,vbits=8,iters=0");
    assert_int_equal(vkv_codec_spec_parse("minmax", &p), VKV_OK);
    assert_true(p.k_param == 0.5f && p.v_param == 0.3f);
    assert_int_equal(vkv_codec_spec_parse("quantile", &p), VKV_OK);
    assert_true(p.k_param == 0.2f && p.v_param == 0.2f);
    char small[8];
    int need = vkv_codec_spec_format(&d, small, sizeof(small));
    assert_true(need > 7);
    assert_int_equal(strlen(small), 7);
}

/* The rotsign helpers: 8-bit scale codes are exact powers 2^((c-128)/8)
 * (within binary32 rounding), strictly increasing, and encode to the nearest
 * code; the Hadamard transform applied twice multiplies by n; the sign
 * vector is the documented splitmix64 stream. */
static void rotsign_helpers_match_their_definitions(void **state)
{
    (void)state;
    assert_true(vkvk_sc8_value(0) == 0.0f);
    assert_true(vkvk_sc8_value(128) == 1.0f);
    assert_true(vkvk_sc8_value(136) == 2.0f);
    assert_true(vkvk_sc8_value(120) == 0.5f);
    for (uint32_t c = 1; c < 256; c++) {
        double want = 1.0; /* 2^((c-128)/8) by repeated products (no libm) */
        for (int q = 128; q < (int)c; q++)
            want *= 1.0905077326652577; /* 2^(1/8) */
        for (int q = (int)c; q < 128; q++)
            want /= 1.0905077326652577;
        assert_true((vkvk_sc8_value(c) - want) <= want * 1e-7 &&
                    (want - vkvk_sc8_value(c)) <= want * 1e-7);
        assert_true(vkvk_sc8_value(c) > vkvk_sc8_value(c - 1));
        assert_int_equal(vkvk_sc8_encode(vkvk_sc8_value(c)), c);
        /* just below the midpoint to the next code stays, just above goes up */
        if (c < 255) {
            float mid = (vkvk_sc8_value(c) + vkvk_sc8_value(c + 1)) * 0.5f;
            assert_int_equal(vkvk_sc8_encode(mid * 0.9999f), c);
            assert_int_equal(vkvk_sc8_encode(mid * 1.0001f), c + 1);
        }
    }
    assert_int_equal(vkvk_sc8_encode(0.0f), 0);
    assert_int_equal(vkvk_sc8_encode(vkvk_sc8_value(1) * 0.49f), 0);
    assert_int_equal(vkvk_sc8_encode(vkvk_sc8_value(1) * 0.51f), 1);
    assert_int_equal(vkvk_sc8_encode(INFINITY), 255);
    assert_int_equal(vkvk_sc8_encode(1e30f), 255);
    assert_int_equal(vkvk_sc8_encode(NAN), 0);
    float x[64], y[64];
    uint64_t s = 99;
    for (int i = 0; i < 64; i++)
        x[i] = y[i] = (float)(int)(ku_rand(&s) % 17) - 8.0f; /* small integers: exact */
    vkvk_fwht(y, 64);
    float want0 = 0.0f;
    for (int i = 0; i < 64; i++)
        want0 += x[i];
    assert_true(y[0] == want0);
    vkvk_fwht(y, 64);
    for (int i = 0; i < 64; i++)
        assert_true(y[i] == 64.0f * x[i]);
    uint64_t z = VKVK_ROT_SEED + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    int neg = 0;
    for (uint32_t d = 0; d < 64; d++) {
        assert_int_equal(vkvk_rot_neg(d), (int)((z >> d) & 1u));
        neg += vkvk_rot_neg(d);
    }
    assert_true(neg > 16 && neg < 48);
}

/* The precomputed sign-vector words equal vkvk_rot_neg for every channel, and
 * vkvk_sc8_encode_fast equals vkvk_sc8_encode on every code's value, its
 * float neighbours and midpoints, special values and a million random bit
 * patterns. */
static void rotsign_fast_helpers_match_the_definitions(void **state)
{
    (void)state;
    for (uint32_t d = 0; d < VKV_BLOCK_MAX_HEAD_DIM; d++)
        assert_int_equal((int)((vkvk_rot_negw[d / 64u] >> (d % 64u)) & 1u), vkvk_rot_neg(d));
    const float sp[] = {0.0f, -0.0f,  INFINITY, -INFINITY, NAN,
                        -NAN, 1e-45f, 1e-38f,   3.4e38f,   -1.0f};
    for (size_t i = 0; i < sizeof(sp) / sizeof(sp[0]); i++)
        assert_int_equal(vkvk_sc8_encode_fast(sp[i]), vkvk_sc8_encode(sp[i]));
    for (uint32_t c = 0; c < 256; c++) {
        float v = vkvk_sc8_value(c);
        uint32_t u = vkvk_f32_bits(v);
        for (int32_t k = -3; k <= 3; k++) {
            float x = vkvk_bits_f32(u + (uint32_t)k);
            if (u == 0 && k < 0)
                continue;
            assert_int_equal(vkvk_sc8_encode_fast(x), vkvk_sc8_encode(x));
        }
        if (c < 255) {
            float m = (v + vkvk_sc8_value(c + 1)) * 0.5f;
            uint32_t mu = vkvk_f32_bits(m);
            for (int32_t k = -2; k <= 2; k++) {
                float x = vkvk_bits_f32(mu + (uint32_t)k);
                assert_int_equal(vkvk_sc8_encode_fast(x), vkvk_sc8_encode(x));
            }
        }
    }
    uint64_t s = 99;
    for (int i = 0; i < 1000000; i++) {
        float x = vkvk_bits_f32((uint32_t)ku_rand(&s) & 0x7fffffffu);
        assert_int_equal(vkvk_sc8_encode_fast(x), vkvk_sc8_encode(x));
    }
}

/* Code bytes of the SIMD scale-code encoders (when the CPU has them) for
 * n floats at a, compared with vkvk_sc8_encode one by one. The unaligned
 * count exercises their scalar tails too. */
static void check_sc8_simd(const float *a, size_t n)
{
#if defined(VKVK_X86)
    uint8_t out[64];
    assert_true(n <= sizeof(out));
    for (int isa = 0; isa < 2; isa++) {
        if (vkv_codec_set_impl(isa ? VKV_IMPL_AVX512 : VKV_IMPL_AVX2) != VKV_OK)
            continue;
        memset(out, 0xAA, sizeof(out));
        if (isa)
            vkvk_avx512_sc8_encode_n(a, n, out);
        else
            vkvk_avx2_sc8_encode_n(a, n, out);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(out[i], vkvk_sc8_encode(a[i]));
    }
    vkv_codec_set_impl(VKV_IMPL_AUTO);
#else
    (void)a;
    (void)n;
#endif
}

/* The vector scale-code encoders equal vkvk_sc8_encode on every code's value
 * and its float neighbours, the midpoints and their neighbours, special
 * values (zeros, infinities, NaNs, subnormals, negatives, huge) and random
 * bit patterns of either sign. (Every one of the 2^32 floats was also
 * compared once, outside the test suite, when the encoders were written.) */
static void rotsign_simd_scale_codes_match_the_definition(void **state)
{
    (void)state;
    float buf[61];
    size_t n = 0;
    const float sp[] = {0.0f,   -0.0f,   INFINITY, -INFINITY, NAN,  -NAN,    1e-45f,
                        1e-38f, 3.4e38f, -1.0f,    65504.0f,  1e5f, 60000.0f};
    for (size_t i = 0; i < sizeof(sp) / sizeof(sp[0]); i++)
        buf[n++] = sp[i];
    for (uint32_t c = 0; c < 256; c++) {
        uint32_t u = vkvk_f32_bits(vkvk_sc8_value(c));
        for (int32_t k = -3; k <= 3; k++) {
            if (u == 0 && k < 0)
                continue;
            buf[n++] = vkvk_bits_f32(u + (uint32_t)k);
            if (n == 61) {
                check_sc8_simd(buf, n);
                n = 0;
            }
        }
        if (c < 255) {
            uint32_t mu = vkvk_f32_bits((vkvk_sc8_value(c) + vkvk_sc8_value(c + 1)) * 0.5f);
            for (int32_t k = -2; k <= 2; k++) {
                buf[n++] = vkvk_bits_f32(mu + (uint32_t)k);
                if (n == 61) {
                    check_sc8_simd(buf, n);
                    n = 0;
                }
            }
        }
    }
    check_sc8_simd(buf, n);
    uint64_t s = 7;
    for (int i = 0; i < 20000; i++) {
        for (size_t j = 0; j < 61; j++)
            buf[j] = vkvk_bits_f32((uint32_t)ku_rand(&s));
        check_sc8_simd(buf, 61);
    }
}

/* Every row of vkvk_rot_pm8 equals vkvk_fwht of its +-1 vector. */
static void rotsign_pm8_table_matches_fwht(void **state)
{
    (void)state;
    for (uint32_t b = 0; b < 256; b++) {
        float w[8];
        for (uint32_t j = 0; j < 8; j++)
            w[j] = ((b >> j) & 1u) ? 1.0f : -1.0f;
        vkvk_fwht(w, 8);
        for (uint32_t j = 0; j < 8; j++)
            assert_true(vkvk_f32_bits(w[j]) == vkvk_f32_bits(vkvk_rot_pm8[b][j]));
        assert_true(((uintptr_t)vkvk_rot_pm8[b] & 31u) == 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rotsign_helpers_match_their_definitions),
        cmocka_unit_test(rotsign_fast_helpers_match_the_definitions),
        cmocka_unit_test(rotsign_simd_scale_codes_match_the_definition),
        cmocka_unit_test(rotsign_pm8_table_matches_fwht),
        cmocka_unit_test(fp16_conversion_matches_known_values),
        cmocka_unit_test(fp16_conversion_matches_f16c),
        cmocka_unit_test(level_rules_on_hand_worked_groups),
        cmocka_unit_test(layout_is_canonical_and_overflow_safe),
        cmocka_unit_test(spec_strings_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
