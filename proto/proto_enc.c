/*
 * proto/proto_enc.c - the encoder: packs a request or a reply frame (the
 * header array, then the body) by walking the body's field table
 * (proto_desc.h), checking every value against the table's limits first.
 *
 * Output goes to an sbuffer that refuses to grow past VKVP_MAX_FRAME; on
 * success the caller owns the returned frame (free()), on failure nothing is
 * left allocated.
 */
#include "proto/proto.h"
#include "proto/proto_desc.h"

#include <string.h>

#include <msgpack.h>

/* Output sink: an sbuffer that refuses to grow past VKVP_MAX_FRAME. */
typedef struct vkvp_sink {
    msgpack_sbuffer sb;
    int err; /* first failure: VKV_ETOOBIG or VKV_ENOMEM */
} vkvp_sink;

/* msgpack_packer write callback; returns non-zero to stop the packer. */
static int vkvp_sink_write(void *data, const char *buf, size_t len)
{
    vkvp_sink *s = data;
    if (s->err)
        return -1;
    if (len > VKVP_MAX_FRAME - s->sb.size) {
        s->err = VKV_ETOOBIG;
        return -1;
    }
    if (msgpack_sbuffer_write(&s->sb, buf, len) != 0) {
        s->err = VKV_ENOMEM;
        return -1;
    }
    return 0;
}

/* The packer's return value is not distinctive; the sink's err is. */
#define PK(call)                                                                                   \
    do {                                                                                           \
        if ((call) != 0)                                                                           \
            return pk_err((vkvp_sink *)pk->data);                                                  \
    } while (0)

/* Error for a failed packer call (always non-zero). */
static int pk_err(const vkvp_sink *s)
{
    return s->err ? s->err : VKV_ENOMEM;
}

static int vkvp_enc_struct(msgpack_packer *pk, const vkvp_sdesc *sd, const void *obj);

/* Checks a byte string against [min, max]; VKV_EINVAL when it does not fit. */
static int vkvp_str_ok(const vkvp_str *s, uint64_t min, uint64_t max)
{
    if (s->len < min || s->len > max || (s->len && !s->ptr))
        return VKV_EINVAL;
    return 0;
}

/* VKVP_K_UINT: a uint64_t in [min, max]. */
static int vkvp_enc_uint(msgpack_packer *pk, const vkvp_fdesc *f, const void *obj)
{
    uint64_t v = *CAT(obj, f->off, uint64_t);
    if (v < f->min || v > f->max)
        return VKV_EINVAL;
    PK(msgpack_pack_uint64(pk, v));
    return 0;
}

/* VKVP_K_BOOL: true or false. */
static int vkvp_enc_bool(msgpack_packer *pk, const vkvp_fdesc *f, const void *obj)
{
    PK(*CAT(obj, f->off, bool) ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
    return 0;
}

/* VKVP_K_STR: a str of [min, max] bytes. */
static int vkvp_enc_str(msgpack_packer *pk, const vkvp_fdesc *f, const void *obj)
{
    const vkvp_str *s = CAT(obj, f->off, vkvp_str);
    int rc;
    if ((rc = vkvp_str_ok(s, f->min, f->max)) != 0)
        return rc;
    PK(msgpack_pack_str_with_body(pk, s->ptr ? s->ptr : "", s->len));
    return 0;
}

/* VKVP_K_KEY: a bin of VKV_KEY_LEN bytes. */
static int vkvp_enc_key(msgpack_packer *pk, const vkvp_fdesc *f, const void *obj)
{
    PK(msgpack_pack_bin_with_body(pk, CAT(obj, f->off, vkv_key)->b, VKV_KEY_LEN));
    return 0;
}

/* VKVP_K_KEYS: an array of [min, max] keys. */
static int vkvp_enc_keys(msgpack_packer *pk, const vkvp_fdesc *f, const void *obj)
{
    const vkv_key *k = *CAT(obj, f->off, vkv_key *);
    uint32_t n = *CAT(obj, f->cnt_off, uint32_t);
    if (n < f->min || n > f->max || (n && !k))
        return VKV_EINVAL;
    PK(msgpack_pack_array(pk, n));
    for (uint32_t i = 0; i < n; i++)
        PK(msgpack_pack_bin_with_body(pk, k[i].b, VKV_KEY_LEN));
    return 0;
}

/* VKVP_K_UINTS: an array of [min, max] uints. */
static int vkvp_enc_uints(msgpack_packer *pk, const vkvp_fdesc *f, const void *obj)
{
    const uint64_t *u = *CAT(obj, f->off, uint64_t *);
    uint32_t n = *CAT(obj, f->cnt_off, uint32_t);
    if (n < f->min || n > f->max || (n && !u))
        return VKV_EINVAL;
    PK(msgpack_pack_array(pk, n));
    for (uint32_t i = 0; i < n; i++)
        PK(msgpack_pack_uint64(pk, u[i]));
    return 0;
}

/* VKVP_K_ENUM: the wire name of the value (EINVAL when it has none). */
static int vkvp_enc_enum(msgpack_packer *pk, const vkvp_fdesc *f, const void *obj)
{
    int v = *CAT(obj, f->off, int);
    const char *name = vkvp_name_of(f->names, v);
    if (name[0] == '?')
        return VKV_EINVAL;
    PK(msgpack_pack_str_with_body(pk, name, strlen(name)));
    return 0;
}

/* VKVP_K_HANDLE: a bin of 0 or VKVP_HANDLE_LEN bytes. */
static int vkvp_enc_handle(msgpack_packer *pk, const vkvp_fdesc *f, const void *obj)
{
    uint32_t n = *CAT(obj, f->cnt_off, uint32_t);
    if (n != 0 && n != VKVP_HANDLE_LEN)
        return VKV_EINVAL;
    PK(msgpack_pack_bin_with_body(pk, CAT(obj, f->off, uint8_t), n));
    return 0;
}

/* VKVP_K_EXTENTS: an array of [slab, first_page, npages] after checking the
 * count and each extent's range. */
static int vkvp_enc_extents(msgpack_packer *pk, const vkvp_fdesc *f, const void *obj)
{
    const vkvp_extent *e = *CAT(obj, f->off, vkvp_extent *);
    uint32_t n = *CAT(obj, f->cnt_off, uint32_t);
    if (n < f->min || n > f->max || (n && !e))
        return VKV_EINVAL;
    PK(msgpack_pack_array(pk, n));
    for (uint32_t i = 0; i < n; i++) {
        if (e[i].slab > UINT32_MAX || e[i].npages == 0 ||
            e[i].first_page > UINT64_MAX - e[i].npages)
            return VKV_EINVAL;
        PK(msgpack_pack_array(pk, 3));
        PK(msgpack_pack_uint64(pk, e[i].slab));
        PK(msgpack_pack_uint64(pk, e[i].first_page));
        PK(msgpack_pack_uint64(pk, e[i].npages));
    }
    return 0;
}

/* VKVP_K_OBJS: an array of [min, max] nested structs. */
static int vkvp_enc_objs(msgpack_packer *pk, const vkvp_fdesc *f, const void *obj)
{
    const char *a = *CAT(obj, f->off, char *);
    uint32_t n = *CAT(obj, f->cnt_off, uint32_t);
    int rc;
    if (n < f->min || n > f->max || (n && !a))
        return VKV_EINVAL;
    PK(msgpack_pack_array(pk, n));
    for (uint32_t i = 0; i < n; i++)
        if ((rc = vkvp_enc_struct(pk, f->sub, a + (size_t)i * f->sub->size)) != 0)
            return rc;
    return 0;
}

/* VKVP_K_COUNTERS: a map of at most max counters, names unique and of
 * 1..VKVP_MAX_NAME bytes. */
static int vkvp_enc_counters(msgpack_packer *pk, const vkvp_fdesc *f, const void *obj)
{
    const vkvp_counter *c = *CAT(obj, f->off, vkvp_counter *);
    uint32_t n = *CAT(obj, f->cnt_off, uint32_t);
    int rc;
    if (n > f->max || (n && !c))
        return VKV_EINVAL;
    PK(msgpack_pack_map(pk, n));
    for (uint32_t i = 0; i < n; i++) {
        if ((rc = vkvp_str_ok(&c[i].name, 1, VKVP_MAX_NAME)) != 0)
            return rc;
        for (uint32_t j = 0; j < i; j++)
            if (c[j].name.len == c[i].name.len &&
                memcmp(c[j].name.ptr, c[i].name.ptr, c[i].name.len) == 0)
                return VKV_EINVAL;
        PK(msgpack_pack_str_with_body(pk, c[i].name.ptr, c[i].name.len));
        PK(msgpack_pack_uint64(pk, c[i].value));
    }
    return 0;
}

/* Packs the value of field f of obj (the key was packed by the caller):
 * one encoder per kind. 0, VKV_EINVAL (a value outside the table's limits),
 * VKV_ETOOBIG or VKV_ENOMEM. */
static int vkvp_enc_field(msgpack_packer *pk, const vkvp_fdesc *f, const void *obj)
{
    switch (f->kind) {
    case VKVP_K_UINT:
        return vkvp_enc_uint(pk, f, obj);
    case VKVP_K_BOOL:
        return vkvp_enc_bool(pk, f, obj);
    case VKVP_K_STR:
        return vkvp_enc_str(pk, f, obj);
    case VKVP_K_KEY:
        return vkvp_enc_key(pk, f, obj);
    case VKVP_K_KEYS:
        return vkvp_enc_keys(pk, f, obj);
    case VKVP_K_UINTS:
        return vkvp_enc_uints(pk, f, obj);
    case VKVP_K_ENUM:
        return vkvp_enc_enum(pk, f, obj);
    case VKVP_K_HANDLE:
        return vkvp_enc_handle(pk, f, obj);
    case VKVP_K_EXTENTS:
        return vkvp_enc_extents(pk, f, obj);
    case VKVP_K_OBJ:
        return vkvp_enc_struct(pk, f->sub, CAT(obj, f->off, char));
    case VKVP_K_OBJS:
        return vkvp_enc_objs(pk, f, obj);
    case VKVP_K_COUNTERS:
        return vkvp_enc_counters(pk, f, obj);
    }
    return VKV_EINVAL;
}

/* Packs obj as a map of the fields of sd, after the cross-field check. */
static int vkvp_enc_struct(msgpack_packer *pk, const vkvp_sdesc *sd, const void *obj)
{
    uint32_t n = 0;
    int rc;
    if (sd->check && sd->check(obj))
        return VKV_EINVAL;
    for (unsigned i = 0; i < sd->n; i++)
        n += vkvp_present(&sd->f[i], obj);
    PK(msgpack_pack_map(pk, n));
    for (unsigned i = 0; i < sd->n; i++) {
        const vkvp_fdesc *f = &sd->f[i];
        if (!vkvp_present(f, obj))
            continue;
        PK(msgpack_pack_str_with_body(pk, f->name, strlen(f->name)));
        if ((rc = vkvp_enc_field(pk, f, obj)) != 0)
            return rc;
    }
    return 0;
}

/* Runs the packing, then hands the buffer over or frees it. */
static int vkvp_finish(vkvp_sink *s, int rc, void **frame, size_t *len)
{
    if (rc != 0) {
        msgpack_sbuffer_destroy(&s->sb);
        return rc;
    }
    *len = s->sb.size;
    *frame = msgpack_sbuffer_release(&s->sb);
    msgpack_sbuffer_destroy(&s->sb);
    return 0;
}

/* Packs the request header and body. */
static int vkvp_pack_request(msgpack_packer *pk, const vkvp_request *req)
{
    const vkvp_sdesc *sd = vkvp_req_desc(req->op);
    if (!sd || req->version != VKVP_VERSION)
        return VKV_EINVAL;
    PK(msgpack_pack_array(pk, 4));
    PK(msgpack_pack_uint32(pk, req->version));
    PK(msgpack_pack_uint32(pk, (uint32_t)req->op));
    PK(msgpack_pack_uint64(pk, req->req_id));
    return vkvp_enc_struct(pk, sd, &req->u);
}

/* See proto.h. */
int vkvp_encode_request(const vkvp_request *req, void **frame, size_t *len)
{
    vkvp_sink s = {.err = 0};
    msgpack_packer pk;
    *frame = NULL;
    *len = 0;
    msgpack_sbuffer_init(&s.sb);
    msgpack_packer_init(&pk, &s, vkvp_sink_write);
    return vkvp_finish(&s, vkvp_pack_request(&pk, req), frame, len);
}

/* Packs the reply header and the OK body or the error body. */
static int vkvp_pack_reply(msgpack_packer *pk, const vkvp_reply *rep)
{
    const vkvp_sdesc *sd = rep->status == 0 ? vkvp_rep_desc(rep->op) : vkvp_err_desc();
    if (!sd || rep->version != VKVP_VERSION || rep->status > 0)
        return VKV_EINVAL;
    PK(msgpack_pack_array(pk, 5));
    PK(msgpack_pack_uint32(pk, rep->version));
    PK(msgpack_pack_int32(pk, rep->status));
    PK(msgpack_pack_uint64(pk, rep->req_id));
    PK(msgpack_pack_uint64(pk, rep->epoch));
    return vkvp_enc_struct(pk, sd, rep->status == 0 ? (const void *)&rep->u : (const void *)rep);
}

/* See proto.h. */
int vkvp_encode_reply(const vkvp_reply *rep, void **frame, size_t *len)
{
    vkvp_sink s = {.err = 0};
    msgpack_packer pk;
    *frame = NULL;
    *len = 0;
    msgpack_sbuffer_init(&s.sb);
    msgpack_packer_init(&pk, &s, vkvp_sink_write);
    return vkvp_finish(&s, vkvp_pack_reply(&pk, rep), frame, len);
}

/* See proto.h. */
int vkvp_encode_error(uint64_t req_id, uint64_t epoch, int status, const char *msg, void **frame,
                      size_t *len)
{
    vkvp_reply rep;
    *frame = NULL;
    *len = 0;
    if (status >= 0)
        return VKV_EINVAL;
    vkvp_reply_init(&rep, VKVP_PING, req_id, epoch);
    rep.status = status;
    rep.msg = vkvp_cstr(msg);
    if (rep.msg.len > VKVP_MAX_MSG)
        rep.msg.len = VKVP_MAX_MSG;
    return vkvp_encode_reply(&rep, frame, len);
}
