/*
 * proto/proto_dec.c - stage 3 of decoding (see proto_frame.c): the typed
 * field decoder. Walks a body's field table (proto_desc.h) over an unpacked
 * msgpack object and checks every field's type, range and key; all
 * variable-length data is copied into the message's zone (never pointing
 * into the caller's frame). Every failure leaves a reason naming the path
 * ("body.keys[3]") in the caller's buffer.
 */
#include "proto/proto_dec.h"
#include "proto/proto.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/errbuf.h"

/* See proto_dec.h. */
const char *vkvp_type_name(msgpack_object_type t)
{
    switch (t) {
    case MSGPACK_OBJECT_NIL:
        return "nil";
    case MSGPACK_OBJECT_BOOLEAN:
        return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return "uint";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return "negative int";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return "float";
    case MSGPACK_OBJECT_STR:
        return "str";
    case MSGPACK_OBJECT_ARRAY:
        return "array";
    case MSGPACK_OBJECT_MAP:
        return "map";
    case MSGPACK_OBJECT_BIN:
        return "bin";
    default:
        return "ext";
    }
}

/* Rejects a value of the wrong type at `path`. */
static int vkvp_want(vkvp_dec *d, const msgpack_object *o, msgpack_object_type t, const char *path)
{
    if (o->type == t)
        return 0;
    return vkv_errbuf(d->why, d->why_len, VKV_EPROTO, "%s: expected %s, got %s", path,
                      vkvp_type_name(t), vkvp_type_name(o->type));
}

/* Allocates n bytes in the message zone (n may be 0 -> a valid pointer). */
static void *vkvp_zalloc(vkvp_dec *d, size_t n)
{
    return msgpack_zone_malloc(d->zone, n ? n : 1);
}

/* See proto_dec.h. */
int vkvp_dec_uint(vkvp_dec *d, const msgpack_object *o, uint64_t min, uint64_t max,
                  const char *path, uint64_t *out)
{
    int rc;
    if ((rc = vkvp_want(d, o, MSGPACK_OBJECT_POSITIVE_INTEGER, path)) != 0)
        return rc;
    if (o->via.u64 < min || o->via.u64 > max)
        return vkv_errbuf(d->why, d->why_len, VKV_EPROTO,
                          "%s: %" PRIu64 " out of range %" PRIu64 "..%" PRIu64, path, o->via.u64,
                          min, max);
    *out = o->via.u64;
    return 0;
}

/* Decodes an array header with a count in [min, max] (over max: ETOOBIG). */
static int vkvp_dec_array(vkvp_dec *d, const msgpack_object *o, uint64_t min, uint64_t max,
                          const char *path)
{
    int rc;
    if ((rc = vkvp_want(d, o, MSGPACK_OBJECT_ARRAY, path)) != 0)
        return rc;
    if (o->via.array.size > max)
        return vkv_errbuf(d->why, d->why_len, VKV_ETOOBIG, "%s: %u elements, at most %" PRIu64,
                          path, o->via.array.size, max);
    if (o->via.array.size < min)
        return vkv_errbuf(d->why, d->why_len, VKV_EPROTO, "%s: %u elements, at least %" PRIu64,
                          path, o->via.array.size, min);
    return 0;
}

/* Decodes a 32-byte bin into k. */
static int vkvp_dec_key(vkvp_dec *d, const msgpack_object *o, const char *path, vkv_key *k)
{
    int rc;
    if ((rc = vkvp_want(d, o, MSGPACK_OBJECT_BIN, path)) != 0)
        return rc;
    if (o->via.bin.size != VKV_KEY_LEN)
        return vkv_errbuf(d->why, d->why_len, VKV_EPROTO, "%s: bin of %u bytes, expected %d", path,
                          o->via.bin.size, VKV_KEY_LEN);
    memcpy(k->b, o->via.bin.ptr, VKV_KEY_LEN);
    return 0;
}

/* Decodes a str of [min, max] bytes into a NUL-terminated zone copy. */
static int vkvp_dec_str(vkvp_dec *d, const msgpack_object *o, uint64_t min, uint64_t max,
                        const char *path, vkvp_str *s)
{
    int rc;
    char *c;
    if ((rc = vkvp_want(d, o, MSGPACK_OBJECT_STR, path)) != 0)
        return rc;
    if (o->via.str.size > max)
        return vkv_errbuf(d->why, d->why_len, VKV_ETOOBIG, "%s: %u bytes, at most %" PRIu64, path,
                          o->via.str.size, max);
    if (o->via.str.size < min)
        return vkv_errbuf(d->why, d->why_len, VKV_EPROTO, "%s: %u bytes, at least %" PRIu64, path,
                          o->via.str.size, min);
    if (!(c = vkvp_zalloc(d, (size_t)o->via.str.size + 1)))
        return VKV_ENOMEM;
    memcpy(c, o->via.str.ptr, o->via.str.size);
    c[o->via.str.size] = '\0';
    s->ptr = c;
    s->len = o->via.str.size;
    return 0;
}

/* Copies up to 32 bytes of a map key into buf for messages, replacing
 * anything unprintable by '?'. */
static void vkvp_printable(char *buf, size_t cap, const char *p, uint32_t n)
{
    size_t k = 0;
    for (; k + 1 < cap && k < n && k < 32; k++)
        buf[k] = (p[k] >= 0x20 && p[k] < 0x7f && p[k] != '\'') ? p[k] : '?';
    buf[k] = '\0';
}

/* Builds "path[i]" into p (truncated to cap, always NUL-terminated). */
static void vkvp_path_idx(char *p, size_t cap, const char *path, uint32_t i)
{
    if (snprintf(p, cap, "%s[%u]", path, i) < 0)
        p[0] = '\0';
}

/* Builds "path.name" into p (truncated to cap, always NUL-terminated). */
static void vkvp_path_key(char *p, size_t cap, const char *path, const char *name)
{
    if (snprintf(p, cap, "%s.%s", path, name) < 0)
        p[0] = '\0';
}

/* VKVP_K_EXTENTS: an array of [min, max] [slab, first_page, npages]. */
static int vkvp_dec_extents(vkvp_dec *d, const vkvp_fdesc *f, const msgpack_object *o,
                            const char *path, void *obj)
{
    int rc;
    char p[96];
    vkvp_extent *e;
    if ((rc = vkvp_dec_array(d, o, f->min, f->max, path)) != 0)
        return rc;
    uint32_t n = o->via.array.size;
    if (!(e = vkvp_zalloc(d, (size_t)n * sizeof(*e))))
        return VKV_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *x = &o->via.array.ptr[i];
        vkvp_path_idx(p, sizeof(p), path, i);
        if ((rc = vkvp_dec_array(d, x, 3, 3, p)) != 0)
            return rc;
        if ((rc = vkvp_dec_uint(d, &x->via.array.ptr[0], 0, UINT32_MAX, p, &e[i].slab)) != 0 ||
            (rc = vkvp_dec_uint(d, &x->via.array.ptr[1], 0, UINT64_MAX, p, &e[i].first_page)) !=
                0 ||
            (rc = vkvp_dec_uint(d, &x->via.array.ptr[2], 1, UINT64_MAX, p, &e[i].npages)) != 0)
            return rc;
        if (e[i].first_page > UINT64_MAX - e[i].npages)
            return vkv_errbuf(d->why, d->why_len, VKV_EPROTO, "%s: page range overflows", p);
    }
    *AT(obj, f->off, const vkvp_extent *) = e;
    *AT(obj, f->cnt_off, uint32_t) = n;
    return 0;
}

/* VKVP_K_COUNTERS: a map str -> uint of at most max unique names. */
static int vkvp_dec_counters(vkvp_dec *d, const vkvp_fdesc *f, const msgpack_object *o,
                             const char *path, void *obj)
{
    int rc;
    char p[96];
    vkvp_counter *c;
    if ((rc = vkvp_want(d, o, MSGPACK_OBJECT_MAP, path)) != 0)
        return rc;
    uint32_t n = o->via.map.size;
    if (n > f->max)
        return vkv_errbuf(d->why, d->why_len, VKV_ETOOBIG, "%s: %u counters, at most %" PRIu64,
                          path, n, f->max);
    if (!(c = vkvp_zalloc(d, (size_t)n * sizeof(*c))))
        return VKV_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        vkvp_path_idx(p, sizeof(p), path, i);
        if ((rc = vkvp_dec_str(d, &o->via.map.ptr[i].key, 1, VKVP_MAX_NAME, p, &c[i].name)) != 0)
            return rc;
        for (uint32_t j = 0; j < i; j++)
            if (c[j].name.len == c[i].name.len &&
                memcmp(c[j].name.ptr, c[i].name.ptr, c[i].name.len) == 0)
                return vkv_errbuf(d->why, d->why_len, VKV_EPROTO, "%s: duplicate counter name", p);
        if ((rc = vkvp_dec_uint(d, &o->via.map.ptr[i].val, 0, UINT64_MAX, p, &c[i].value)) != 0)
            return rc;
    }
    *AT(obj, f->off, const vkvp_counter *) = c;
    *AT(obj, f->cnt_off, uint32_t) = n;
    return 0;
}

/* VKVP_K_BOOL: true or false. */
static int vkvp_dec_bool(vkvp_dec *d, const vkvp_fdesc *f, const msgpack_object *o,
                         const char *path, void *obj)
{
    int rc;
    if ((rc = vkvp_want(d, o, MSGPACK_OBJECT_BOOLEAN, path)) != 0)
        return rc;
    *AT(obj, f->off, bool) = o->via.boolean;
    return 0;
}

/* VKVP_K_KEYS: an array of [min, max] keys. */
static int vkvp_dec_keys(vkvp_dec *d, const vkvp_fdesc *f, const msgpack_object *o,
                         const char *path, void *obj)
{
    int rc;
    char p[96];
    vkv_key *k;
    if ((rc = vkvp_dec_array(d, o, f->min, f->max, path)) != 0)
        return rc;
    if (!(k = vkvp_zalloc(d, (size_t)o->via.array.size * sizeof(*k))))
        return VKV_ENOMEM;
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        vkvp_path_idx(p, sizeof(p), path, i);
        if ((rc = vkvp_dec_key(d, &o->via.array.ptr[i], p, &k[i])) != 0)
            return rc;
    }
    *AT(obj, f->off, const vkv_key *) = k;
    *AT(obj, f->cnt_off, uint32_t) = o->via.array.size;
    return 0;
}

/* VKVP_K_UINTS: an array of [min, max] uints. */
static int vkvp_dec_uints(vkvp_dec *d, const vkvp_fdesc *f, const msgpack_object *o,
                          const char *path, void *obj)
{
    int rc;
    char p[96];
    uint64_t *u;
    if ((rc = vkvp_dec_array(d, o, f->min, f->max, path)) != 0)
        return rc;
    if (!(u = vkvp_zalloc(d, (size_t)o->via.array.size * sizeof(*u))))
        return VKV_ENOMEM;
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        vkvp_path_idx(p, sizeof(p), path, i);
        if ((rc = vkvp_dec_uint(d, &o->via.array.ptr[i], 0, UINT64_MAX, p, &u[i])) != 0)
            return rc;
    }
    *AT(obj, f->off, const uint64_t *) = u;
    *AT(obj, f->cnt_off, uint32_t) = o->via.array.size;
    return 0;
}

/* VKVP_K_ENUM: a str that is one of f->names; stores its index. */
static int vkvp_dec_enum(vkvp_dec *d, const vkvp_fdesc *f, const msgpack_object *o,
                         const char *path, void *obj)
{
    int rc;
    char p[96];
    if ((rc = vkvp_want(d, o, MSGPACK_OBJECT_STR, path)) != 0)
        return rc;
    for (int i = 0; f->names[i]; i++)
        if (strlen(f->names[i]) == o->via.str.size &&
            memcmp(f->names[i], o->via.str.ptr, o->via.str.size) == 0) {
            *AT(obj, f->off, int) = i;
            return 0;
        }
    vkvp_printable(p, sizeof(p), o->via.str.ptr, o->via.str.size);
    return vkv_errbuf(d->why, d->why_len, VKV_EPROTO, "%s: unknown value '%s'", path, p);
}

/* VKVP_K_HANDLE: a bin of 0 or VKVP_HANDLE_LEN bytes, copied with its
 * length. */
static int vkvp_dec_handle(vkvp_dec *d, const vkvp_fdesc *f, const msgpack_object *o,
                           const char *path, void *obj)
{
    int rc;
    if ((rc = vkvp_want(d, o, MSGPACK_OBJECT_BIN, path)) != 0)
        return rc;
    if (o->via.bin.size != 0 && o->via.bin.size != VKVP_HANDLE_LEN)
        return vkv_errbuf(d->why, d->why_len, VKV_EPROTO, "%s: bin of %u bytes, expected 0 or %d",
                          path, o->via.bin.size, VKVP_HANDLE_LEN);
    memcpy(AT(obj, f->off, uint8_t), o->via.bin.ptr, o->via.bin.size);
    *AT(obj, f->cnt_off, uint32_t) = o->via.bin.size;
    return 0;
}

/* VKVP_K_OBJS: an array of [min, max] nested structs (zeroed, then
 * decoded). */
static int vkvp_dec_objs(vkvp_dec *d, const vkvp_fdesc *f, const msgpack_object *o,
                         const char *path, void *obj)
{
    int rc;
    char p[96];
    char *a;
    if ((rc = vkvp_dec_array(d, o, f->min, f->max, path)) != 0)
        return rc;
    if (!(a = vkvp_zalloc(d, (size_t)o->via.array.size * f->sub->size)))
        return VKV_ENOMEM;
    memset(a, 0, (size_t)o->via.array.size * f->sub->size);
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        vkvp_path_idx(p, sizeof(p), path, i);
        if ((rc = vkvp_dec_struct(d, f->sub, &o->via.array.ptr[i], p,
                                  a + (size_t)i * f->sub->size)) != 0)
            return rc;
    }
    *AT(obj, f->off, char *) = a;
    *AT(obj, f->cnt_off, uint32_t) = o->via.array.size;
    return 0;
}

/* Decodes the value o of field f into obj: one decoder per kind. */
static int vkvp_dec_field(vkvp_dec *d, const vkvp_fdesc *f, const msgpack_object *o,
                          const char *path, void *obj)
{
    switch (f->kind) {
    case VKVP_K_UINT:
        return vkvp_dec_uint(d, o, f->min, f->max, path, AT(obj, f->off, uint64_t));
    case VKVP_K_BOOL:
        return vkvp_dec_bool(d, f, o, path, obj);
    case VKVP_K_STR:
        return vkvp_dec_str(d, o, f->min, f->max, path, AT(obj, f->off, vkvp_str));
    case VKVP_K_KEY:
        return vkvp_dec_key(d, o, path, AT(obj, f->off, vkv_key));
    case VKVP_K_KEYS:
        return vkvp_dec_keys(d, f, o, path, obj);
    case VKVP_K_UINTS:
        return vkvp_dec_uints(d, f, o, path, obj);
    case VKVP_K_ENUM:
        return vkvp_dec_enum(d, f, o, path, obj);
    case VKVP_K_HANDLE:
        return vkvp_dec_handle(d, f, o, path, obj);
    case VKVP_K_EXTENTS:
        return vkvp_dec_extents(d, f, o, path, obj);
    case VKVP_K_OBJ:
        return vkvp_dec_struct(d, f->sub, o, path, AT(obj, f->off, char));
    case VKVP_K_OBJS:
        return vkvp_dec_objs(d, f, o, path, obj);
    case VKVP_K_COUNTERS:
        return vkvp_dec_counters(d, f, o, path, obj);
    }
    return VKV_EINVAL;
}

/* See proto_dec.h. */
int vkvp_dec_struct(vkvp_dec *d, const vkvp_sdesc *sd, const msgpack_object *o, const char *path,
                    void *obj)
{
    int rc;
    uint32_t seen = 0;
    char p[96], kb[40];
    const char *why;
    if ((rc = vkvp_want(d, o, MSGPACK_OBJECT_MAP, path)) != 0)
        return rc;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        unsigned j;
        if (k->type != MSGPACK_OBJECT_STR)
            return vkv_errbuf(d->why, d->why_len, VKV_EPROTO, "%s: key #%u is a %s, not a str",
                              path, i, vkvp_type_name(k->type));
        for (j = 0; j < sd->n; j++)
            if (strlen(sd->f[j].name) == k->via.str.size &&
                memcmp(sd->f[j].name, k->via.str.ptr, k->via.str.size) == 0)
                break;
        vkvp_printable(kb, sizeof(kb), k->via.str.ptr, k->via.str.size);
        if (j == sd->n)
            return vkv_errbuf(d->why, d->why_len, VKV_EPROTO, "%s: unknown key '%s'", path, kb);
        if (seen & (1u << j))
            return vkv_errbuf(d->why, d->why_len, VKV_EPROTO, "%s: duplicate key '%s'", path, kb);
        seen |= 1u << j;
        vkvp_path_key(p, sizeof(p), path, sd->f[j].name);
        if ((rc = vkvp_dec_field(d, &sd->f[j], &o->via.map.ptr[i].val, p, obj)) != 0)
            return rc;
        if (sd->f[j].flags & VKVP_F_HAS)
            *AT(obj, sd->f[j].has_off, bool) = true;
    }
    for (unsigned j = 0; j < sd->n; j++)
        if ((sd->f[j].flags & VKVP_F_REQ) && !(seen & (1u << j)))
            return vkv_errbuf(d->why, d->why_len, VKV_EPROTO, "%s: missing key '%s'", path,
                              sd->f[j].name);
    if (sd->check && (why = sd->check(obj)) != NULL)
        return vkv_errbuf(d->why, d->why_len, VKV_EPROTO, "%s: %s", path, why);
    return 0;
}
