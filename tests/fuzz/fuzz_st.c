/*
 * tests/fuzz/fuzz_st.c - fuzz target for the safetensors reader
 * (tensor/safetensors.h: vkvtn_st_parse) on arbitrary bytes.
 *
 * The input is copied into a heap buffer of exactly its size (a read past
 * the end is a sanitizer report), parsed, and freed right after parsing to
 * prove the file object copied what it needs. Properties:
 *  - failure: a negative VKV_E* code, *out NULL, a NUL-terminated message;
 *  - success: every tensor has a known dtype, ndim <= VKVTN_ST_MAX_DIMS,
 *    numel = product of the shape, nbytes = numel * element size, its
 *    offsets lie inside the data section and tensors tile it in order;
 *    vkvtn_st_find returns each tensor by name; vkvtn_st_to_f32 converts
 *    every element (into a buffer of exactly numel floats).
 * All memory is local to one call.
 */
#include <string.h>

#include "fuzz.h"
#include "tensor/safetensors.h"
#include "vkv/error.h"

#define MAX_CONVERT (16u << 20) /* floats converted per input at most */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    VKVF_CHECK(buf != NULL, "out of memory");
    memcpy(buf, data, size);
    vkvtn_st_file *f = NULL;
    char err[256];
    err[0] = 0;
    int rc = vkvtn_st_parse(buf, size, &f, err, sizeof err);
    free(buf); /* the parsed object must not point into the input */
    if (rc != 0) {
        VKVF_CHECK(rc < 0, "rc %d", rc);
        VKVF_CHECK(f == NULL, "out set on error");
        VKVF_CHECK(memchr(err, 0, sizeof err) != NULL, "message not terminated");
        return 0;
    }
    VKVF_CHECK(f != NULL, "no object on success");
    size_t n = vkvtn_st_count(f);
    uint64_t expect_off = 0;
    size_t converted = 0;
    for (size_t i = 0; i < n; i++) {
        const vkvtn_st_tensor *t = vkvtn_st_at(f, i);
        VKVF_CHECK(t != NULL && t->name != NULL, "tensor %zu missing", i);
        size_t es = vkvtn_st_dtype_size(t->dtype);
        VKVF_CHECK(es != 0, "dtype %d", t->dtype);
        VKVF_CHECK(t->ndim <= VKVTN_ST_MAX_DIMS, "ndim %u", t->ndim);
        uint64_t numel = 1;
        for (uint32_t d = 0; d < t->ndim; d++)
            numel *= t->shape[d];
        VKVF_CHECK(numel == t->numel, "numel");
        VKVF_CHECK(t->nbytes == numel * es, "nbytes");
        VKVF_CHECK(t->offset == expect_off, "tensors do not tile the data section");
        expect_off += t->nbytes;
        VKVF_CHECK(vkvtn_st_find(f, t->name) != NULL, "find(%s)", t->name);
        if (t->numel && converted + t->numel <= MAX_CONVERT) {
            float *dst = malloc(t->numel * sizeof *dst);
            VKVF_CHECK(dst != NULL, "out of memory");
            VKVF_CHECK(vkvtn_st_to_f32(t, dst) == VKV_OK, "to_f32");
            free(dst);
            converted += t->numel;
        }
    }
    VKVF_CHECK(vkvtn_st_at(f, n) == NULL, "at(count) not NULL");
    (void)vkvtn_st_meta(f, "format");
    vkvtn_st_free(f);
    return 0;
}
