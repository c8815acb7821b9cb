/*
 * proto/proto_json.c - renders decoded messages as one line of JSON
 * (vkvp_request_to_json, vkvp_reply_to_json in proto.h) by walking the same
 * field tables as the codec (proto_desc.h). A library of its own
 * (vkv_proto_json) for tests, fuzzers and tools: vkvd does not link it.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"
#include "proto/proto_desc.h"

/* ------------------------------------------------------------------------- */
/* JSON rendering                                                             */

/* Writes n bytes as a JSON string: printable ASCII as is, '"' and '\\'
 * escaped, every other byte as \u00XX. */
static void vkvp_json_str(FILE *f, const char *p, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f)
            fputc(c, f);
        else
            fprintf(f, "\\u%04x", c);
    }
    fputc('"', f);
}

/* Writes n bytes as a lower-case hex JSON string. */
static void vkvp_json_hex(FILE *f, const uint8_t *p, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%02x", p[i]);
    fputc('"', f);
}

/* Writes obj as a JSON object of the present fields of sd (below). */
static void vkvp_json_struct(FILE *f, const vkvp_sdesc *sd, const void *obj);

/* VKVP_K_KEYS: an array of hex keys. */
static void vkvp_json_keys(FILE *f, const vkvp_fdesc *fd, const void *obj)
{
    const vkv_key *k = *CAT(obj, fd->off, vkv_key *);
    uint32_t n = *CAT(obj, fd->cnt_off, uint32_t);
    fputc('[', f);
    for (uint32_t i = 0; k && i < n; i++) {
        fputs(i ? "," : "", f);
        vkvp_json_hex(f, k[i].b, VKV_KEY_LEN);
    }
    fputc(']', f);
}

/* VKVP_K_UINTS: an array of numbers. */
static void vkvp_json_uints(FILE *f, const vkvp_fdesc *fd, const void *obj)
{
    const uint64_t *u = *CAT(obj, fd->off, uint64_t *);
    uint32_t n = *CAT(obj, fd->cnt_off, uint32_t);
    fputc('[', f);
    for (uint32_t i = 0; u && i < n; i++)
        fprintf(f, "%s%" PRIu64, i ? "," : "", u[i]);
    fputc(']', f);
}

/* VKVP_K_EXTENTS: an array of [slab, first_page, npages]. */
static void vkvp_json_extents(FILE *f, const vkvp_fdesc *fd, const void *obj)
{
    const vkvp_extent *e = *CAT(obj, fd->off, vkvp_extent *);
    uint32_t n = *CAT(obj, fd->cnt_off, uint32_t);
    fputc('[', f);
    for (uint32_t i = 0; e && i < n; i++)
        fprintf(f, "%s[%" PRIu64 ",%" PRIu64 ",%" PRIu64 "]", i ? "," : "", e[i].slab,
                e[i].first_page, e[i].npages);
    fputc(']', f);
}

/* VKVP_K_OBJS: an array of objects. */
static void vkvp_json_objs(FILE *f, const vkvp_fdesc *fd, const void *obj)
{
    const char *a = *CAT(obj, fd->off, char *);
    uint32_t n = *CAT(obj, fd->cnt_off, uint32_t);
    fputc('[', f);
    for (uint32_t i = 0; a && i < n; i++) {
        fputs(i ? "," : "", f);
        vkvp_json_struct(f, fd->sub, a + (size_t)i * fd->sub->size);
    }
    fputc(']', f);
}

/* VKVP_K_COUNTERS: an object of name: number. */
static void vkvp_json_counters(FILE *f, const vkvp_fdesc *fd, const void *obj)
{
    const vkvp_counter *c = *CAT(obj, fd->off, vkvp_counter *);
    uint32_t n = *CAT(obj, fd->cnt_off, uint32_t);
    fputc('{', f);
    for (uint32_t i = 0; c && i < n; i++) {
        fputs(i ? "," : "", f);
        vkvp_json_str(f, c[i].name.ptr ? c[i].name.ptr : "", c[i].name.ptr ? c[i].name.len : 0);
        fprintf(f, ":%" PRIu64, c[i].value);
    }
    fputc('}', f);
}

/* Writes the value of field fd of obj: scalars here, lists and nested
 * objects by one writer per kind. */
static void vkvp_json_field(FILE *f, const vkvp_fdesc *fd, const void *obj)
{
    switch (fd->kind) {
    case VKVP_K_UINT:
        fprintf(f, "%" PRIu64, *CAT(obj, fd->off, uint64_t));
        break;
    case VKVP_K_BOOL:
        fputs(*CAT(obj, fd->off, bool) ? "true" : "false", f);
        break;
    case VKVP_K_STR: {
        const vkvp_str *s = CAT(obj, fd->off, vkvp_str);
        vkvp_json_str(f, s->ptr ? s->ptr : "", s->ptr ? s->len : 0);
        break;
    }
    case VKVP_K_KEY:
        vkvp_json_hex(f, CAT(obj, fd->off, vkv_key)->b, VKV_KEY_LEN);
        break;
    case VKVP_K_KEYS:
        vkvp_json_keys(f, fd, obj);
        break;
    case VKVP_K_UINTS:
        vkvp_json_uints(f, fd, obj);
        break;
    case VKVP_K_ENUM: {
        const char *nm = vkvp_name_of(fd->names, *CAT(obj, fd->off, int));
        vkvp_json_str(f, nm, strlen(nm));
        break;
    }
    case VKVP_K_HANDLE: {
        uint32_t n = *CAT(obj, fd->cnt_off, uint32_t);
        vkvp_json_hex(f, CAT(obj, fd->off, uint8_t), n > VKVP_HANDLE_LEN ? VKVP_HANDLE_LEN : n);
        break;
    }
    case VKVP_K_EXTENTS:
        vkvp_json_extents(f, fd, obj);
        break;
    case VKVP_K_OBJ:
        vkvp_json_struct(f, fd->sub, CAT(obj, fd->off, char));
        break;
    case VKVP_K_OBJS:
        vkvp_json_objs(f, fd, obj);
        break;
    case VKVP_K_COUNTERS:
        vkvp_json_counters(f, fd, obj);
        break;
    }
}

/* Writes obj as a JSON object of the present fields of sd. */
static void vkvp_json_struct(FILE *f, const vkvp_sdesc *sd, const void *obj)
{
    bool first = true;
    fputc('{', f);
    for (unsigned i = 0; i < sd->n; i++) {
        if (!vkvp_present(&sd->f[i], obj))
            continue;
        fprintf(f, "%s\"%s\":", first ? "" : ",", sd->f[i].name);
        vkvp_json_field(f, &sd->f[i], obj);
        first = false;
    }
    fputc('}', f);
}

/* Opens a memory stream for *out; the caller renders, then vkvp_json_close. */
static FILE *vkvp_json_open(char **out, size_t *n)
{
    *out = NULL;
    return open_memstream(out, n);
}

/* Closes the stream; returns 0 or VKV_ENOMEM (then *out is freed). */
static int vkvp_json_close(FILE *f, char **out)
{
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        free(*out);
        *out = NULL;
        return VKV_ENOMEM;
    }
    return 0;
}

/* See proto.h. */
int vkvp_request_to_json(const vkvp_request *req, char **out)
{
    size_t n;
    FILE *f;
    const vkvp_sdesc *sd = vkvp_req_desc(req->op);
    *out = NULL;
    if (!sd)
        return VKV_EINVAL;
    if (!(f = vkvp_json_open(out, &n)))
        return VKV_ENOMEM;
    fprintf(f, "{\"version\":%u,\"op\":\"%s\",\"req_id\":%" PRIu64 ",\"body\":", req->version,
            vkvp_op_name(req->op), req->req_id);
    vkvp_json_struct(f, sd, &req->u);
    fputc('}', f);
    return vkvp_json_close(f, out);
}

/* See proto.h. */
int vkvp_reply_to_json(const vkvp_reply *rep, char **out)
{
    size_t n;
    FILE *f;
    const vkvp_sdesc *sd = rep->status == 0 ? vkvp_rep_desc(rep->op) : vkvp_err_desc();
    *out = NULL;
    if (!sd || !vkvp_rep_desc(rep->op))
        return VKV_EINVAL;
    if (!(f = vkvp_json_open(out, &n)))
        return VKV_ENOMEM;
    fprintf(f,
            "{\"version\":%u,\"op\":\"%s\",\"status\":%" PRId32 ",\"req_id\":%" PRIu64
            ",\"epoch\":%" PRIu64 ",\"body\":",
            rep->version, vkvp_op_name(rep->op), rep->status, rep->req_id, rep->epoch);
    vkvp_json_struct(f, sd, rep->status == 0 ? (const void *)&rep->u : (const void *)rep);
    fputc('}', f);
    return vkvp_json_close(f, out);
}
