/*
 * tensor/safetensors.h - a strict reader and a writer for safetensors files.
 *
 * Format: an 8-byte little-endian header length N, N bytes of UTF-8 JSON,
 * then the data section. The JSON is an object mapping tensor names to
 * {"dtype": "F16"|"BF16"|"F32", "shape": [...], "data_offsets": [begin, end]}
 * (offsets relative to the data section) plus an optional "__metadata__"
 * object of string -> string. The header is parsed with cJSON.
 *
 * The reader trusts nothing: the header length must fit the file and a cap,
 * the JSON must be an object of well-typed entries, every dtype must be one of
 * the three supported, shape x element size must equal the byte range, and
 * the byte ranges, sorted, must tile the data section exactly (no gaps, no
 * overlap, nothing out of bounds), as the reference implementation demands.
 * Every failure returns a negative VKV_E* code and a one-line message.
 */
#ifndef VKVTN_SAFETENSORS_H
#define VKVTN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define VKVTN_ST_MAX_DIMS   8
#define VKVTN_ST_MAX_HEADER (100u << 20) /* 100 MiB, as the reference reader */

/* Element types read and written. */
enum vkvtn_st_dtype {
    VKVTN_ST_F16 = 1, /* same numbers as enum vkv_dtype */
    VKVTN_ST_BF16 = 2,
    VKVTN_ST_F32 = 3,
};

/* One tensor of a parsed file. `name` and `data` point into the file object
 * and live as long as it does. */
typedef struct vkvtn_st_tensor {
    const char *name;
    int dtype; /* enum vkvtn_st_dtype */
    uint32_t ndim;
    uint64_t shape[VKVTN_ST_MAX_DIMS];
    uint64_t numel;
    uint64_t offset;     /* begin of its bytes inside the data section */
    const uint8_t *data; /* unaligned; little-endian elements */
    size_t nbytes;
} vkvtn_st_tensor;

typedef struct vkvtn_st_file vkvtn_st_file; /* opaque */

/* Parses a whole safetensors image held in buf[0..size). The file object
 * copies what it needs: the caller keeps ownership of buf and may free it
 * at once. On success *out is a new object the caller frees with
 * vkvtn_st_free. On failure *out is NULL, err (if non-NULL) holds a message
 * and the return is one of VKV_ETRUNC (shorter than its header says),
 * VKV_ETOOBIG (header length over VKVTN_ST_MAX_HEADER), VKV_ECORRUPT (bad JSON
 * or entry, offsets out of range, overlapping or leaving gaps), VKV_ENOTSUP
 * (a dtype other than F16/BF16/F32), VKV_ESHAPE (shape disagrees with the byte
 * size), VKV_ENOMEM. */
int vkvtn_st_parse(const uint8_t *buf, size_t size, vkvtn_st_file **out, char *err, size_t errlen);

/* Reads and parses the file at `path` (errors as vkvtn_st_parse plus VKV_EIO
 * when it cannot be opened or read). */
int vkvtn_st_read_file(const char *path, vkvtn_st_file **out, char *err, size_t errlen);

/* Frees a file object and everything that points into it (NULL is a no-op). */
void vkvtn_st_free(vkvtn_st_file *f);

/* Number of tensors and the i-th one in data-offset order (NULL if out of
 * range). The pointer lives as long as f. */
size_t vkvtn_st_count(const vkvtn_st_file *f);
const vkvtn_st_tensor *vkvtn_st_at(const vkvtn_st_file *f, size_t i);

/* The tensor called `name`, or NULL. Lives as long as f. */
const vkvtn_st_tensor *vkvtn_st_find(const vkvtn_st_file *f, const char *name);

/* The "__metadata__" string for `key`, or NULL. Lives as long as f. */
const char *vkvtn_st_meta(const vkvtn_st_file *f, const char *key);

/* Converts all elements of t to float into dst (caller-owned, t->numel
 * floats). Returns VKV_OK. */
int vkvtn_st_to_f32(const vkvtn_st_tensor *t, float *dst);

/* A tensor to write: data is `numel` floats owned by the caller, converted
 * to `dtype` on the way out. */
typedef struct vkvtn_st_out {
    const char *name;
    int dtype;
    uint32_t ndim;
    uint64_t shape[VKVTN_ST_MAX_DIMS];
    const float *data;
} vkvtn_st_out;

/* Writes a safetensors file at `path` holding the n tensors in the given
 * order and the metadata pairs meta[0..2*n_meta) (key, value, key, value...;
 * may be NULL when n_meta is 0). The header is padded with spaces to a
 * multiple of 8 bytes. Reads the caller's buffers only. Returns VKV_OK,
 * VKV_EINVAL (bad dtype/shape/duplicate name), VKV_ENOMEM or VKV_EIO. */
int vkvtn_st_write(const char *path, const vkvtn_st_out *t, size_t n, const char *const *meta,
                   size_t n_meta, char *err, size_t errlen);

/* Name of a dtype ("F16", "BF16", "F32") or "?". Static string. */
const char *vkvtn_st_dtype_name(int dtype);

/* Bytes per element of a dtype (0 if unknown). */
size_t vkvtn_st_dtype_size(int dtype);

#endif
