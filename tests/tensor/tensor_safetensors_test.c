/* tests/tensor/tensor_safetensors_test.c - the safetensors reader on good and
 * malformed files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tensor/f16.h"
#include "tensor/safetensors.h"
#include "vkv/block.h"
#include "vkv/error.h"

/* Builds a safetensors image from a header string and `data_len` data bytes
 * (value i = i & 0xff) into a malloc'd buffer; *size receives its length.
 * A `hlen_override` other than UINT64_MAX is written as the length field. */
static uint8_t *make_file(const char *json, size_t data_len, uint64_t hlen_override, size_t *size)
{
    size_t jl = strlen(json);
    uint8_t *b = malloc(8 + jl + data_len + 1);
    assert_non_null(b);
    uint64_t hl = hlen_override != UINT64_MAX ? hlen_override : jl;
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(hl >> (8 * i));
    memcpy(b + 8, json, jl);
    for (size_t i = 0; i < data_len; i++)
        b[8 + jl + i] = (uint8_t)i;
    *size = 8 + jl + data_len;
    return b;
}

/* Parses json + data and returns the error code (file freed). */
static int parse_code(const char *json, size_t data_len, char *msg, size_t n)
{
    size_t size;
    uint8_t *b = make_file(json, data_len, UINT64_MAX, &size);
    vkvtn_st_file *f = NULL;
    int rc = vkvtn_st_parse(b, size, &f, msg, n);
    free(b);
    if (rc == VKV_OK)
        assert_non_null(f);
    else
        assert_null(f);
    vkvtn_st_free(f);
    return rc;
}

static void a_well_formed_file_parses_with_its_metadata(void **state)
{
    (void)state;
    const char *j = "{\"__metadata__\":{\"visual_ranges\":\"1:3\"},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
                    "\"a\":{\"dtype\":\"F16\",\"shape\":[2,1],\"data_offsets\":[0,4]}}";
    size_t size;
    uint8_t *buf = make_file(j, 12, UINT64_MAX, &size);
    vkvtn_st_file *f = NULL;
    char msg[256];
    assert_int_equal(vkvtn_st_parse(buf, size, &f, msg, sizeof msg), VKV_OK);
    free(buf); /* the file object keeps its own copy */
    assert_int_equal(vkvtn_st_count(f), 2);
    const vkvtn_st_tensor *a = vkvtn_st_find(f, "a"), *b = vkvtn_st_find(f, "b");
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->dtype, VKVTN_ST_F16);
    assert_int_equal(a->ndim, 2);
    assert_int_equal(a->shape[0], 2);
    assert_int_equal(b->nbytes, 8);
    assert_int_equal(b->data[0], 4); /* byte 4 of the data section */
    assert_string_equal(vkvtn_st_meta(f, "visual_ranges"), "1:3");
    assert_null(vkvtn_st_meta(f, "nope"));
    assert_null(vkvtn_st_find(f, "c"));
    vkvtn_st_free(f);
}

static void a_file_shorter_than_eight_bytes_is_truncated(void **state)
{
    (void)state;
    uint8_t b[5] = {1, 0, 0, 0, 0};
    vkvtn_st_file *f = NULL;
    assert_int_equal(vkvtn_st_parse(b, sizeof b, &f, NULL, 0), VKV_ETRUNC);
    assert_null(f);
}

static void a_header_longer_than_the_file_is_truncated(void **state)
{
    (void)state;
    size_t size;
    uint8_t *b = make_file("{}", 0, 100, &size);
    vkvtn_st_file *f = NULL;
    char msg[256] = "";
    assert_int_equal(vkvtn_st_parse(b, size, &f, msg, sizeof msg), VKV_ETRUNC);
    assert_non_null(strstr(msg, "runs past"));
    free(b);
}

static void a_huge_header_length_is_refused_before_reading(void **state)
{
    (void)state;
    size_t size;
    uint8_t *b = make_file("{}", 0, UINT64_MAX - 3, &size);
    vkvtn_st_file *f = NULL;
    assert_int_equal(vkvtn_st_parse(b, size, &f, NULL, 0), VKV_ETOOBIG);
    free(b);
}

static void bad_json_is_corrupt(void **state)
{
    (void)state;
    char msg[256];
    assert_int_equal(parse_code("{\"a\":{\"dtype\":\"F16\",", 0, msg, sizeof msg), VKV_ECORRUPT);
    assert_int_equal(parse_code("[1,2,3]", 0, msg, sizeof msg), VKV_ECORRUPT);
    assert_int_equal(parse_code("{} x", 0, msg, sizeof msg), VKV_ECORRUPT);
    assert_int_equal(parse_code("{\"a\":5}", 0, msg, sizeof msg), VKV_ECORRUPT);
}

static void offsets_outside_the_data_section_are_corrupt(void **state)
{
    (void)state;
    char msg[256];
    assert_int_equal(parse_code("{\"a\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]}}",
                                6, msg, sizeof msg),
                     VKV_ECORRUPT);
    assert_non_null(strstr(msg, "outside"));
    assert_int_equal(parse_code("{\"a\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[4,2]}}",
                                6, msg, sizeof msg),
                     VKV_ECORRUPT);
    assert_int_equal(parse_code("{\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[-2,0]}}",
                                6, msg, sizeof msg),
                     VKV_ECORRUPT);
}

static void overlapping_tensors_are_corrupt(void **state)
{
    (void)state;
    char msg[256];
    assert_int_equal(parse_code("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                                "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[2,6]}}",
                                6, msg, sizeof msg),
                     VKV_ECORRUPT);
    assert_non_null(strstr(msg, "overlaps"));
}

static void gaps_and_uncovered_bytes_are_corrupt(void **state)
{
    (void)state;
    char msg[256];
    assert_int_equal(parse_code("{\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[2,4]}}",
                                4, msg, sizeof msg),
                     VKV_ECORRUPT);
    assert_int_equal(parse_code("{\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]}}",
                                4, msg, sizeof msg),
                     VKV_ECORRUPT);
}

static void unsupported_dtypes_are_refused(void **state)
{
    (void)state;
    char msg[256];
    assert_int_equal(parse_code("{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}",
                                8, msg, sizeof msg),
                     VKV_ENOTSUP);
    assert_non_null(strstr(msg, "I64"));
    assert_int_equal(parse_code("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,2]}}", 2,
                                msg, sizeof msg),
                     VKV_ECORRUPT);
}

static void a_shape_that_disagrees_with_the_byte_size_is_refused(void **state)
{
    (void)state;
    char msg[256];
    assert_int_equal(parse_code("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
                                8, msg, sizeof msg),
                     VKV_ESHAPE);
    assert_int_equal(
        parse_code("{\"a\":{\"dtype\":\"F16\",\"shape\":[1.5],\"data_offsets\":[0,2]}}", 2, msg,
                   sizeof msg),
        VKV_ESHAPE);
    assert_int_equal(parse_code("{\"a\":{\"dtype\":\"F16\",\"shape\":[4294967296,4294967296,4],"
                                "\"data_offsets\":[0,2]}}",
                                2, msg, sizeof msg),
                     VKV_ESHAPE);
}

static void duplicate_names_and_unknown_fields_are_corrupt(void **state)
{
    (void)state;
    char msg[256];
    assert_int_equal(parse_code("{\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]},"
                                "\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[2,4]}}",
                                4, msg, sizeof msg),
                     VKV_ECORRUPT);
    assert_int_equal(
        parse_code("{\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2],\"x\":1}}", 2,
                   msg, sizeof msg),
        VKV_ECORRUPT);
    /* Found by fuzz_st: a second __metadata__ object overflowed the first
     * one's table. */
    assert_int_equal(parse_code("{\"__metadata__\":{\"a\":\"1\"},\"__metadata__\":{\"b\":\"2\","
                                "\"c\":\"3\"},\"a\":{\"dtype\":\"F16\",\"shape\":[1],"
                                "\"data_offsets\":[0,2]}}",
                                2, msg, sizeof msg),
                     VKV_ECORRUPT);
}

static void written_files_read_back_with_the_same_values(void **state)
{
    (void)state;
    char path[] = "/tmp/vkv_st_testXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    float a[6] = {1.0f, -2.5f, 0.333333f, 65504.0f, -0.0f, 1e-7f};
    float b[2] = {3.14159265f, -1e30f};
    vkvtn_st_out t[3] = {
        {.name = "x.f16", .dtype = VKVTN_ST_F16, .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "x.bf16", .dtype = VKVTN_ST_BF16, .ndim = 1, .shape = {6}, .data = a},
        {.name = "y", .dtype = VKVTN_ST_F32, .ndim = 1, .shape = {2}, .data = b},
    };
    const char *meta[2] = {"visual_ranges", "0:2"};
    char msg[256];
    assert_int_equal(vkvtn_st_write(path, t, 3, meta, 1, msg, sizeof msg), VKV_OK);
    vkvtn_st_file *f = NULL;
    assert_int_equal(vkvtn_st_read_file(path, &f, msg, sizeof msg), VKV_OK);
    unlink(path);
    float out[6];
    const vkvtn_st_tensor *x = vkvtn_st_find(f, "x.f16");
    assert_non_null(x);
    assert_int_equal(vkvtn_st_to_f32(x, out), VKV_OK);
    for (int i = 0; i < 6; i++)
        assert_true(out[i] == vkvtn_round_dtype(a[i], VKV_DTYPE_F16));
    x = vkvtn_st_find(f, "x.bf16");
    assert_int_equal(vkvtn_st_to_f32(x, out), VKV_OK);
    for (int i = 0; i < 6; i++)
        assert_true(out[i] == vkvtn_round_dtype(a[i], VKV_DTYPE_BF16));
    x = vkvtn_st_find(f, "y");
    assert_int_equal(vkvtn_st_to_f32(x, out), VKV_OK);
    assert_true(out[0] == b[0] && out[1] == b[1]);
    assert_string_equal(vkvtn_st_meta(f, "visual_ranges"), "0:2");
    vkvtn_st_free(f);
}

static void a_missing_file_is_an_io_error(void **state)
{
    (void)state;
    vkvtn_st_file *f = NULL;
    char msg[256];
    assert_int_equal(vkvtn_st_read_file("/nonexistent/dir/x.safetensors", &f, msg, sizeof msg),
                     VKV_EIO);
}

static void half_conversion_rounds_to_nearest_even(void **state)
{
    (void)state;
    assert_int_equal(vkvtn_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(vkvtn_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(vkvtn_f32_to_f16(65520.0f), 0x7c00);           /* rounds up to Inf */
    assert_int_equal(vkvtn_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie to even */
    assert_int_equal(vkvtn_f32_to_f16(5.9604645e-08f), 0x0001);     /* smallest subnormal */
    assert_true(vkvtn_f16_to_f32(0x0001) == 5.9604644775390625e-08f);
    assert_int_equal(vkvtn_f32_to_bf16(1.0f), 0x3f80);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_well_formed_file_parses_with_its_metadata),
        cmocka_unit_test(a_file_shorter_than_eight_bytes_is_truncated),
        cmocka_unit_test(a_header_longer_than_the_file_is_truncated),
        cmocka_unit_test(a_huge_header_length_is_refused_before_reading),
        cmocka_unit_test(bad_json_is_corrupt),
        cmocka_unit_test(offsets_outside_the_data_section_are_corrupt),
        cmocka_unit_test(overlapping_tensors_are_corrupt),
        cmocka_unit_test(gaps_and_uncovered_bytes_are_corrupt),
        cmocka_unit_test(unsupported_dtypes_are_refused),
        cmocka_unit_test(a_shape_that_disagrees_with_the_byte_size_is_refused),
        cmocka_unit_test(duplicate_names_and_unknown_fields_are_corrupt),
        cmocka_unit_test(written_files_read_back_with_the_same_values),
        cmocka_unit_test(a_missing_file_is_an_io_error),
        cmocka_unit_test(half_conversion_rounds_to_nearest_even),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
