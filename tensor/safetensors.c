/* tensor/safetensors.c - strict safetensors reader and writer (see
 * safetensors.h). */
#include "tensor/safetensors.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/errbuf.h"
#include "tensor/f16.h"
#include "vkv/error.h"

struct vkvtn_st_file {
    uint8_t *data; /* copy of the data section, owned */
    size_t data_size;
    vkvtn_st_tensor *t; /* sorted by offset, owned; names owned via names[] */
    char **names;
    size_t n;
    char **meta; /* key, value pairs, owned */
    size_t n_meta;
};

/* See safetensors.h. */
const char *vkvtn_st_dtype_name(int dtype)
{
    switch (dtype) {
    case VKVTN_ST_F16:
        return "F16";
    case VKVTN_ST_BF16:
        return "BF16";
    case VKVTN_ST_F32:
        return "F32";
    default:
        return "?";
    }
}

/* See safetensors.h. */
size_t vkvtn_st_dtype_size(int dtype)
{
    switch (dtype) {
    case VKVTN_ST_F16:
    case VKVTN_ST_BF16:
        return 2;
    case VKVTN_ST_F32:
        return 4;
    default:
        return 0;
    }
}

/* Maps a dtype string to enum vkvtn_st_dtype; 0 if unsupported. */
static int vkvtn_st_dtype_parse(const char *s)
{
    if (strcmp(s, "F16") == 0)
        return VKVTN_ST_F16;
    if (strcmp(s, "BF16") == 0)
        return VKVTN_ST_BF16;
    if (strcmp(s, "F32") == 0)
        return VKVTN_ST_F32;
    return 0;
}

/* Reads a JSON number that must be a non-negative integer below 2^53 into
 * *v. Returns 0 or -1. */
static int vkvtn_st_json_u64(const cJSON *j, uint64_t *v)
{
    if (!cJSON_IsNumber(j))
        return -1;
    double d = j->valuedouble;
    if (!(d >= 0.0) || d > 9007199254740992.0 || d != (double)(uint64_t)d)
        return -1;
    *v = (uint64_t)d;
    return 0;
}

/* qsort comparator: tensors by begin offset (ties by end). */
static int vkvtn_st_cmp(const void *a, const void *b)
{
    const vkvtn_st_tensor *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : (x->nbytes > y->nbytes);
}

/* See safetensors.h. */
void vkvtn_st_free(vkvtn_st_file *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++)
        free(f->names[i]);
    for (size_t i = 0; i < 2 * f->n_meta; i++)
        free(f->meta[i]);
    free(f->names);
    free(f->meta);
    free(f->t);
    free(f->data);
    free(f);
}

/* Fills tensor *t from JSON entry e (name `name`) against a data section of
 * `data_size` bytes; t->data is set later, once the section is copied.
 * Returns VKV_OK or an error with a message. */
static int vkvtn_st_entry(const char *name, const cJSON *e, size_t data_size, vkvtn_st_tensor *t,
                          char *err, size_t errlen)
{
    if (!cJSON_IsObject(e))
        return vkv_errbuf(err, errlen, VKV_ECORRUPT, "tensor '%s': entry is not an object", name);
    const cJSON *dt = NULL, *sh = NULL, *off = NULL;
    for (const cJSON *c = e->child; c; c = c->next) {
        if (strcmp(c->string, "dtype") == 0)
            dt = c;
        else if (strcmp(c->string, "shape") == 0)
            sh = c;
        else if (strcmp(c->string, "data_offsets") == 0)
            off = c;
        else
            return vkv_errbuf(err, errlen, VKV_ECORRUPT, "tensor '%s': unknown field '%s'", name,
                              c->string);
    }
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off))
        return vkv_errbuf(err, errlen, VKV_ECORRUPT,
                          "tensor '%s': needs string dtype, array shape, array data_offsets", name);
    t->dtype = vkvtn_st_dtype_parse(dt->valuestring);
    if (!t->dtype)
        return vkv_errbuf(err, errlen, VKV_ENOTSUP,
                          "tensor '%s': dtype '%s' not supported (F16, BF16, F32 only)", name,
                          dt->valuestring);
    int nd = cJSON_GetArraySize(sh);
    if (nd > (int)VKVTN_ST_MAX_DIMS)
        return vkv_errbuf(err, errlen, VKV_ESHAPE, "tensor '%s': %d dims (max %u)", name, nd,
                          VKVTN_ST_MAX_DIMS);
    t->ndim = (uint32_t)nd;
    uint64_t numel = 1;
    int i = 0;
    for (const cJSON *c = sh->child; c; c = c->next, i++) {
        if (vkvtn_st_json_u64(c, &t->shape[i]) != 0)
            return vkv_errbuf(err, errlen, VKV_ESHAPE,
                              "tensor '%s': shape[%d] is not a non-negative integer", name, i);
        if (t->shape[i] != 0 && numel > UINT64_MAX / 8 / t->shape[i])
            return vkv_errbuf(err, errlen, VKV_ESHAPE, "tensor '%s': shape overflows", name);
        numel *= t->shape[i];
    }
    t->numel = numel;
    uint64_t b = 0, en = 0;
    if (cJSON_GetArraySize(off) != 2 || vkvtn_st_json_u64(off->child, &b) != 0 ||
        vkvtn_st_json_u64(off->child->next, &en) != 0)
        return vkv_errbuf(err, errlen, VKV_ECORRUPT,
                          "tensor '%s': data_offsets must be two non-negative integers", name);
    if (b > en || en > data_size)
        return vkv_errbuf(
            err, errlen, VKV_ECORRUPT,
            "tensor '%s': data_offsets [%llu, %llu] outside data section of %zu bytes", name,
            (unsigned long long)b, (unsigned long long)en, data_size);
    if (numel * vkvtn_st_dtype_size(t->dtype) != en - b)
        return vkv_errbuf(err, errlen, VKV_ESHAPE,
                          "tensor '%s': shape needs %llu bytes but data_offsets span %llu", name,
                          (unsigned long long)(numel * vkvtn_st_dtype_size(t->dtype)),
                          (unsigned long long)(en - b));
    t->offset = b;
    t->nbytes = (size_t)(en - b);
    return VKV_OK;
}

/* Checks the header JSON `root` and fills f's tables (data pointers are set
 * by the caller once the data section is copied). */
static int vkvtn_st_tables(const cJSON *root, size_t data_size, vkvtn_st_file *f, char *err,
                           size_t errlen)
{
    if (!cJSON_IsObject(root))
        return vkv_errbuf(err, errlen, VKV_ECORRUPT, "header is not a JSON object");
    size_t n = 0;
    for (const cJSON *c = root->child; c; c = c->next)
        if (strcmp(c->string, "__metadata__") != 0)
            n++;
    f->t = calloc(n ? n : 1, sizeof *f->t);
    f->names = calloc(n ? n : 1, sizeof *f->names);
    if (!f->t || !f->names)
        return vkv_errbuf(err, errlen, VKV_ENOMEM, "out of memory");
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(c))
                return vkv_errbuf(err, errlen, VKV_ECORRUPT, "__metadata__ is not an object");
            if (f->meta)
                return vkv_errbuf(err, errlen, VKV_ECORRUPT, "__metadata__ appears twice");
            size_t m = (size_t)cJSON_GetArraySize(c);
            f->meta = calloc(2 * m + 1, sizeof *f->meta);
            if (!f->meta)
                return vkv_errbuf(err, errlen, VKV_ENOMEM, "out of memory");
            for (const cJSON *k = c->child; k; k = k->next) {
                if (!cJSON_IsString(k))
                    return vkv_errbuf(err, errlen, VKV_ECORRUPT,
                                      "__metadata__ value of '%s' is not a string", k->string);
                f->meta[2 * f->n_meta] = strdup(k->string);
                f->meta[2 * f->n_meta + 1] = strdup(k->valuestring);
                f->n_meta++;
                if (!f->meta[2 * f->n_meta - 2] || !f->meta[2 * f->n_meta - 1])
                    return vkv_errbuf(err, errlen, VKV_ENOMEM, "out of memory");
            }
            continue;
        }
        for (size_t i = 0; i < f->n; i++)
            if (strcmp(f->names[i], c->string) == 0)
                return vkv_errbuf(err, errlen, VKV_ECORRUPT, "tensor '%s' appears twice",
                                  c->string);
        int rc = vkvtn_st_entry(c->string, c, data_size, &f->t[f->n], err, errlen);
        if (rc != VKV_OK)
            return rc;
        f->names[f->n] = strdup(c->string);
        if (!f->names[f->n])
            return vkv_errbuf(err, errlen, VKV_ENOMEM, "out of memory");
        f->t[f->n].name = f->names[f->n];
        f->n++;
    }
    /* Sort by offset and demand an exact tiling of the data section. The
     * names array is kept in JSON order; only the tensors move. */
    qsort(f->t, f->n, sizeof *f->t, vkvtn_st_cmp);
    size_t pos = 0;
    for (size_t i = 0; i < f->n; i++) {
        size_t b = (size_t)f->t[i].offset;
        if (b < pos)
            return vkv_errbuf(err, errlen, VKV_ECORRUPT,
                              "tensor '%s' overlaps the previous tensor (begins at %zu < %zu)",
                              f->t[i].name, b, pos);
        if (b > pos)
            return vkv_errbuf(err, errlen, VKV_ECORRUPT,
                              "gap in the data section before tensor '%s' (%zu..%zu)", f->t[i].name,
                              pos, b);
        pos = b + f->t[i].nbytes;
    }
    if (pos != data_size)
        return vkv_errbuf(err, errlen, VKV_ECORRUPT,
                          "data section has %zu bytes but tensors cover %zu", data_size, pos);
    return VKV_OK;
}

/* See safetensors.h. */
int vkvtn_st_parse(const uint8_t *buf, size_t size, vkvtn_st_file **out, char *err, size_t errlen)
{
    *out = NULL;
    if (size < 8)
        return vkv_errbuf(err, errlen, VKV_ETRUNC,
                          "file has %zu bytes, fewer than the 8-byte header length", size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | buf[i];
    if (hlen > VKVTN_ST_MAX_HEADER)
        return vkv_errbuf(err, errlen, VKV_ETOOBIG, "header length %llu exceeds the %u-byte cap",
                          (unsigned long long)hlen, VKVTN_ST_MAX_HEADER);
    if (hlen > size - 8)
        return vkv_errbuf(err, errlen, VKV_ETRUNC,
                          "header length %llu runs past the end of the %zu-byte file",
                          (unsigned long long)hlen, size);
    if (hlen < 2 || buf[8] != '{')
        return vkv_errbuf(err, errlen, VKV_ECORRUPT, "header does not start with '{'");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)buf + 8, (size_t)hlen, &end, 0);
    if (!root)
        return vkv_errbuf(err, errlen, VKV_ECORRUPT, "header is not valid JSON (near byte %lld)",
                          end ? (long long)(end - (const char *)buf) : -1LL);
    /* Only spaces may follow the JSON value inside the header. */
    for (const char *p = end; p < (const char *)buf + 8 + hlen; p++)
        if (*p != ' ') {
            cJSON_Delete(root);
            return vkv_errbuf(err, errlen, VKV_ECORRUPT, "trailing bytes after the header JSON");
        }
    vkvtn_st_file *f = calloc(1, sizeof *f);
    if (!f) {
        cJSON_Delete(root);
        return vkv_errbuf(err, errlen, VKV_ENOMEM, "out of memory");
    }
    f->data_size = size - 8 - (size_t)hlen;
    int rc = vkvtn_st_tables(root, f->data_size, f, err, errlen);
    cJSON_Delete(root);
    if (rc == VKV_OK) {
        f->data = malloc(f->data_size ? f->data_size : 1);
        if (!f->data)
            rc = vkv_errbuf(err, errlen, VKV_ENOMEM, "out of memory");
    }
    if (rc != VKV_OK) {
        vkvtn_st_free(f);
        return rc;
    }
    memcpy(f->data, buf + 8 + hlen, f->data_size);
    for (size_t i = 0; i < f->n; i++)
        f->t[i].data = f->data + f->t[i].offset;
    *out = f;
    return VKV_OK;
}

/* See safetensors.h. */
int vkvtn_st_read_file(const char *path, vkvtn_st_file **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return vkv_errbuf(err, errlen, VKV_EIO, "%s: %s", path, strerror(errno));
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 1u << 16;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                fclose(fp);
                return vkv_errbuf(err, errlen, VKV_ENOMEM, "out of memory reading %s", path);
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, fp);
        len += got;
        if (got == 0)
            break;
    }
    int rd_err = ferror(fp);
    fclose(fp);
    if (rd_err) {
        free(buf);
        return vkv_errbuf(err, errlen, VKV_EIO, "%s: read error", path);
    }
    int rc = vkvtn_st_parse(buf, len, out, err, errlen);
    free(buf);
    return rc;
}

/* See safetensors.h. */
size_t vkvtn_st_count(const vkvtn_st_file *f)
{
    return f->n;
}

/* See safetensors.h. */
const vkvtn_st_tensor *vkvtn_st_at(const vkvtn_st_file *f, size_t i)
{
    return i < f->n ? &f->t[i] : NULL;
}

/* See safetensors.h. */
const vkvtn_st_tensor *vkvtn_st_find(const vkvtn_st_file *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0)
            return &f->t[i];
    return NULL;
}

/* See safetensors.h. */
const char *vkvtn_st_meta(const vkvtn_st_file *f, const char *key)
{
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], key) == 0)
            return f->meta[2 * i + 1];
    return NULL;
}

/* See safetensors.h. Elements are little-endian and possibly unaligned. */
int vkvtn_st_to_f32(const vkvtn_st_tensor *t, float *dst)
{
    const uint8_t *p = t->data;
    for (uint64_t i = 0; i < t->numel; i++) {
        switch (t->dtype) {
        case VKVTN_ST_F16:
            dst[i] = vkvtn_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
            break;
        case VKVTN_ST_BF16:
            dst[i] = vkvtn_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
            break;
        default: {
            uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                         (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
            memcpy(&dst[i], &u, 4);
        }
        }
    }
    return VKV_OK;
}

/* Writes n bytes; false on a short write. */
static bool vkvtn_st_put(FILE *fp, const void *p, size_t n)
{
    return fwrite(p, 1, n, fp) == n;
}

/* Elements of tensor t (the product of its shape). */
static uint64_t vkvtn_st_numel(const vkvtn_st_out *t)
{
    uint64_t numel = 1;
    for (uint32_t d = 0; d < t->ndim; d++)
        numel *= t->shape[d];
    return numel;
}

/* Builds the JSON header of tensors t[0..n) (names, dtypes, shapes, data
 * offsets in order) with metadata pairs meta[0..2*n_meta). On success
 * *json is a malloc'ed string the caller frees. Errors: VKV_EINVAL (a bad
 * or duplicate tensor), VKV_ENOMEM; the reason goes to err. */
static int vkvtn_st_header(const vkvtn_st_out *t, size_t n, const char *const *meta, size_t n_meta,
                           char **json, char *err, size_t errlen)
{
    int rc = VKV_OK;
    cJSON *root = cJSON_CreateObject();
    *json = NULL;
    if (!root)
        return vkv_errbuf(err, errlen, VKV_ENOMEM, "out of memory");
    if (n_meta) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (size_t i = 0; m && i < n_meta; i++)
            if (!cJSON_AddStringToObject(m, meta[2 * i], meta[2 * i + 1]))
                m = NULL;
        if (!m)
            rc = vkv_errbuf(err, errlen, VKV_ENOMEM, "out of memory");
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n && rc == VKV_OK; i++) {
        size_t es = vkvtn_st_dtype_size(t[i].dtype);
        if (!es || t[i].ndim > VKVTN_ST_MAX_DIMS || !t[i].name ||
            strcmp(t[i].name, "__metadata__") == 0 ||
            cJSON_GetObjectItemCaseSensitive(root, t[i].name)) {
            rc = vkv_errbuf(err, errlen, VKV_EINVAL, "bad or duplicate tensor '%s'",
                            t[i].name ? t[i].name : "(null)");
            break;
        }
        cJSON *e = cJSON_AddObjectToObject(root, t[i].name);
        cJSON *sh = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *of = e ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        if (!of || !cJSON_AddStringToObject(e, "dtype", vkvtn_st_dtype_name(t[i].dtype))) {
            rc = vkv_errbuf(err, errlen, VKV_ENOMEM, "out of memory");
            break;
        }
        for (uint32_t d = 0; d < t[i].ndim; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t[i].shape[d]));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        off += vkvtn_st_numel(&t[i]) * es;
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
    }
    if (rc == VKV_OK && !(*json = cJSON_PrintUnformatted(root)))
        rc = vkv_errbuf(err, errlen, VKV_ENOMEM, "out of memory");
    cJSON_Delete(root);
    return rc;
}

/* Writes tensor t's data (t->data floats converted to its dtype, little
 * endian). false on a short write. */
static bool vkvtn_st_put_data(FILE *fp, const vkvtn_st_out *t)
{
    uint64_t numel = vkvtn_st_numel(t);
    for (uint64_t j = 0; j < numel; j++) {
        uint8_t b[4];
        size_t nb = 2;
        if (t->dtype == VKVTN_ST_F32) {
            uint32_t u;
            memcpy(&u, &t->data[j], 4);
            b[0] = (uint8_t)u, b[1] = (uint8_t)(u >> 8), b[2] = (uint8_t)(u >> 16),
            b[3] = (uint8_t)(u >> 24);
            nb = 4;
        } else {
            uint16_t h = t->dtype == VKVTN_ST_F16 ? vkvtn_f32_to_f16(t->data[j])
                                                  : vkvtn_f32_to_bf16(t->data[j]);
            b[0] = (uint8_t)h, b[1] = (uint8_t)(h >> 8);
        }
        if (!vkvtn_st_put(fp, b, nb))
            return false;
    }
    return true;
}

/* See safetensors.h. */
int vkvtn_st_write(const char *path, const vkvtn_st_out *t, size_t n, const char *const *meta,
                   size_t n_meta, char *err, size_t errlen)
{
    char *json = NULL;
    int rc = vkvtn_st_header(t, n, meta, n_meta, &json, err, errlen);
    if (rc)
        return rc;
    size_t jl = strlen(json), hl = (jl + 7) & ~(size_t)7;
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        rc = vkv_errbuf(err, errlen, VKV_EIO, "%s: %s", path, strerror(errno));
        free(json);
        return rc;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    bool ok = vkvtn_st_put(fp, len8, 8) && vkvtn_st_put(fp, json, jl);
    for (size_t i = jl; ok && i < hl; i++)
        ok = vkvtn_st_put(fp, " ", 1);
    for (size_t i = 0; ok && i < n; i++)
        ok = vkvtn_st_put_data(fp, &t[i]);
    if (fclose(fp) != 0)
        ok = false;
    free(json);
    return ok ? VKV_OK : vkv_errbuf(err, errlen, VKV_EIO, "%s: write failed", path);
}
