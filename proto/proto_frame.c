/*
 * proto/proto_frame.c - reading a frame: the envelope of requests
 * ([version, op, req_id, body]) and replies ([version, status, req_id,
 * epoch, body]), the boxes that own a decoded message, and req_id recovery
 * from a damaged frame. The bodies are decoded by proto_dec.c.
 *
 * Decoding runs in three stages:
 *   1. vkvp_raw_value(): a pass over the raw bytes that bounds every
 *      container count and str/bin length by the bytes that remain, limits
 *      nesting, refuses ext types and the reserved byte, and demands exact
 *      consumption. Only then is msgpack-c allowed to allocate anything.
 *   2. msgpack_unpack() into the message's own zone.
 *   3. vkvp_dec_struct() (proto_dec.c): type, range and key checks on every
 *      field, copying all variable-length data into the same zone (never
 *      pointing into the caller's frame).
 */
#include "proto/proto.h"
#include "proto/proto_dec.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "common/errbuf.h"

/* ------------------------------------------------------------------------- */
/* stage 1: raw pre-validation                                                */

/* Reads a big-endian unsigned of `n` bytes (1, 2, 4 or 8) at p. */
static uint64_t vkvp_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* The stage-1 reader: the frame, the read position and the reason buffer. */
typedef struct vkvp_raw {
    const uint8_t *p;
    size_t n;   /* frame length */
    size_t pos; /* read position */
    char *why;
    size_t why_len;
} vkvp_raw;

/* Needs `k` more bytes at the read position. */
static int vkvp_raw_need(vkvp_raw *r, size_t k)
{
    if (k > r->n - r->pos)
        return vkv_errbuf(r->why, r->why_len, VKV_EPROTO,
                          "truncated frame: need %zu bytes at offset %zu, %zu left", k, r->pos,
                          r->n - r->pos);
    return 0;
}

/* The layout of a msgpack value by its first byte, outside the fix ranges:
 * the size of its length field (lsz), the values per container element
 * (per: 1 array, 2 map, 0 not a container) or the payload size of a
 * fixed-size scalar (fixed). Returns false for 0xc1 and the ext types,
 * which the protocol never uses. */
static bool vkvp_raw_layout(uint8_t b, unsigned *lsz, unsigned *per, unsigned *fixed)
{
    static const struct {
        uint8_t b, lsz, per, fixed;
    } tab[] = {
        {0xc4, 1, 0, 0}, {0xd9, 1, 0, 0},                  /* bin8, str8 */
        {0xc5, 2, 0, 0}, {0xda, 2, 0, 0},                  /* bin16, str16 */
        {0xc6, 4, 0, 0}, {0xdb, 4, 0, 0},                  /* bin32, str32 */
        {0xcc, 0, 0, 1}, {0xd0, 0, 0, 1},                  /* (u)int8 */
        {0xcd, 0, 0, 2}, {0xd1, 0, 0, 2},                  /* (u)int16 */
        {0xce, 0, 0, 4}, {0xd2, 0, 0, 4}, {0xca, 0, 0, 4}, /* (u)int32, float32 */
        {0xcf, 0, 0, 8}, {0xd3, 0, 0, 8}, {0xcb, 0, 0, 8}, /* (u)int64, float64 */
        {0xdc, 2, 1, 0}, {0xdd, 4, 1, 0},                  /* array16, array32 */
        {0xde, 2, 2, 0}, {0xdf, 4, 2, 0},                  /* map16, map32 */
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (tab[i].b == b) {
            *lsz = tab[i].lsz;
            *per = tab[i].per;
            *fixed = tab[i].fixed;
            return true;
        }
    return false;
}

/* Reads the header of the value at r->pos (its first byte at `at` already
 * consumed as `b`): its element count (containers, *per > 0) or body length
 * (str/bin), or skips a fixed-size scalar (*done). Errors: VKV_EPROTO. */
static int vkvp_raw_header(vkvp_raw *r, uint8_t b, size_t at, uint64_t *count, uint64_t *len,
                           unsigned *per, bool *done)
{
    unsigned lsz = 0, fixed = 0;
    int rc;
    *done = false;
    if (b >= 0x80 && b <= 0x8f) {
        *count = b & 0x0f;
        *per = 2;
        return 0;
    }
    if (b >= 0x90 && b <= 0x9f) {
        *count = b & 0x0f;
        *per = 1;
        return 0;
    }
    if (b >= 0xa0 && b <= 0xbf) {
        *len = b & 0x1f;
        return 0;
    }
    if (!vkvp_raw_layout(b, &lsz, per, &fixed)) {
        if (b == 0xc1)
            return vkv_errbuf(r->why, r->why_len, VKV_EPROTO, "reserved byte 0xc1 at offset %zu",
                              at);
        return vkv_errbuf(r->why, r->why_len, VKV_EPROTO,
                          "ext type 0x%02x at offset %zu not allowed", b, at);
    }
    if (fixed) {
        if ((rc = vkvp_raw_need(r, fixed)) != 0)
            return rc;
        r->pos += fixed;
        *done = true;
        return 0;
    }
    if ((rc = vkvp_raw_need(r, lsz)) != 0)
        return rc;
    if (*per)
        *count = vkvp_be(r->p + r->pos, lsz);
    else
        *len = vkvp_be(r->p + r->pos, lsz);
    r->pos += lsz;
    return 0;
}

/* Validates one msgpack value at r->pos and advances past it. A container at
 * depth `depth` (the top value has depth 1) holds `count` values; `count`
 * must not exceed the bytes that remain, since every value is >= 1 byte. */
static int vkvp_raw_value(vkvp_raw *r, unsigned depth)
{
    int rc;
    size_t at = r->pos;
    uint64_t count = 0, len = 0;
    unsigned per = 0; /* values per element */
    bool done;
    if ((rc = vkvp_raw_need(r, 1)) != 0)
        return rc;
    uint8_t b = r->p[r->pos++];
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 0;
    if ((rc = vkvp_raw_header(r, b, at, &count, &len, &per, &done)) != 0 || done)
        return rc;
    if (!per) { /* str or bin body */
        if (len > r->n - r->pos)
            return vkv_errbuf(r->why, r->why_len, VKV_EPROTO,
                              "length %" PRIu64 " at offset %zu exceeds the %zu bytes left", len,
                              at, r->n - r->pos);
        r->pos += (size_t)len;
        return 0;
    }
    if (depth > VKVP_MAX_DEPTH)
        return vkv_errbuf(r->why, r->why_len, VKV_EPROTO, "nesting deeper than %d at offset %zu",
                          VKVP_MAX_DEPTH, at);
    if (count * per > r->n - r->pos)
        return vkv_errbuf(r->why, r->why_len, VKV_EPROTO,
                          "container of %" PRIu64 " at offset %zu exceeds the %zu bytes left",
                          count, at, r->n - r->pos);
    for (uint64_t i = 0; i < count * per; i++)
        if ((rc = vkvp_raw_value(r, depth + 1)) != 0)
            return rc;
    return 0;
}

/* Stage 1 over a whole frame: size cap, one valid value, nothing after it. */
static int vkvp_raw_frame(const void *frame, size_t len, char *why, size_t why_len)
{
    vkvp_raw r = {frame, len, 0, why, why_len};
    int rc;
    if (len > VKVP_MAX_FRAME)
        return vkv_errbuf(why, why_len, VKV_ETOOBIG, "frame of %zu bytes exceeds %u", len,
                          VKVP_MAX_FRAME);
    if (!frame || len == 0)
        return vkv_errbuf(why, why_len, VKV_EPROTO, "empty frame");
    if ((rc = vkvp_raw_value(&r, 1)) != 0)
        return rc;
    if (r.pos != len)
        return vkv_errbuf(why, why_len, VKV_EPROTO, "%zu trailing bytes after the message",
                          len - r.pos);
    return 0;
}

/* ------------------------------------------------------------------------- */
/* stage 2 and the envelope                                                   */

/* A decoded message and the zone that owns everything it points to. The
 * message comes first so that a message pointer is a box pointer; one box
 * type serves requests and replies. */
typedef struct vkvp_box {
    union {
        vkvp_request req;
        vkvp_reply rep;
    } m;
    msgpack_zone zone;
} vkvp_box;

/* A zeroed box with an initialised zone, or NULL (out of memory). The
 * caller frees it with vkvp_box_free. */
static vkvp_box *vkvp_box_new(void)
{
    vkvp_box *box = calloc(1, sizeof(*box));
    if (box && !msgpack_zone_init(&box->zone, MSGPACK_ZONE_CHUNK_SIZE)) {
        free(box);
        return NULL;
    }
    return box;
}

/* Frees a box, its zone and everything decoded into it; NULL is a no-op. */
static void vkvp_box_free(vkvp_box *box)
{
    if (!box)
        return;
    msgpack_zone_destroy(&box->zone);
    free(box);
}

/* Stages 1 and 2: validates the raw frame and unpacks it into zone; on
 * success *top is an array of exactly `n` elements whose first is version 1. */
static int vkvp_unpack(const void *frame, size_t len, unsigned n, msgpack_zone *zone,
                       msgpack_object *top, char *why, size_t why_len)
{
    int rc;
    size_t off = 0;
    if ((rc = vkvp_raw_frame(frame, len, why, why_len)) != 0)
        return rc;
    switch (msgpack_unpack(frame, len, &off, zone, top)) {
    case MSGPACK_UNPACK_SUCCESS:
        break;
    case MSGPACK_UNPACK_NOMEM_ERROR:
        return VKV_ENOMEM;
    default:
        return vkv_errbuf(why, why_len, VKV_EPROTO, "msgpack parse error");
    }
    if (off != len) /* unreachable after stage 1; kept as a guard */
        return vkv_errbuf(why, why_len, VKV_EPROTO, "trailing bytes");
    if (top->type != MSGPACK_OBJECT_ARRAY)
        return vkv_errbuf(why, why_len, VKV_EPROTO, "frame: expected array, got %s",
                          vkvp_type_name(top->type));
    if (top->via.array.size != n)
        return vkv_errbuf(why, why_len, VKV_EPROTO, "frame: array of %u, expected %u",
                          top->via.array.size, n);
    const msgpack_object *v = &top->via.array.ptr[0];
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return vkv_errbuf(why, why_len, VKV_EPROTO, "version: expected uint, got %s",
                          vkvp_type_name(v->type));
    if (v->via.u64 != VKVP_VERSION)
        return vkv_errbuf(why, why_len, VKV_EPROTO, "version %" PRIu64 " unsupported (want %u)",
                          v->via.u64, VKVP_VERSION);
    return 0;
}

/* Decodes the unpacked request array into req. */
static int vkvp_dec_request(vkvp_dec *d, const msgpack_object *top, vkvp_request *req)
{
    const msgpack_object *a = top->via.array.ptr;
    const vkvp_sdesc *sd;
    uint64_t op, id;
    int rc;
    if ((rc = vkvp_dec_uint(d, &a[1], 0, UINT64_MAX, "op", &op)) != 0)
        return rc;
    if (!(sd = vkvp_req_desc(op > INT32_MAX ? 0 : (int)op)))
        return vkv_errbuf(d->why, d->why_len, VKV_EPROTO, "unknown op %" PRIu64, op);
    if ((rc = vkvp_dec_uint(d, &a[2], 0, UINT64_MAX, "req_id", &id)) != 0)
        return rc;
    vkvp_request_init(req, (vkvp_op)op, id);
    return vkvp_dec_struct(d, sd, &a[3], "body", &req->u);
}

/* See proto.h. */
int vkvp_decode_request(const void *frame, size_t len, vkvp_request **out, char *why,
                        size_t why_len)
{
    vkvp_box *box;
    msgpack_object top;
    int rc;
    *out = NULL;
    if (why && why_len)
        why[0] = '\0';
    if (!(box = vkvp_box_new()))
        return VKV_ENOMEM;
    vkvp_dec d = {&box->zone, why, why_len};
    if ((rc = vkvp_unpack(frame, len, 4, &box->zone, &top, why, why_len)) != 0 ||
        (rc = vkvp_dec_request(&d, &top, &box->m.req)) != 0) {
        vkvp_box_free(box);
        return rc;
    }
    *out = &box->m.req;
    return 0;
}

/* See proto.h. */
void vkvp_request_free(vkvp_request *req)
{
    vkvp_box_free((vkvp_box *)(void *)req);
}

/* Decodes the unpacked reply array into rep (whose op is already set). */
static int vkvp_dec_reply(vkvp_dec *d, const msgpack_object *top, vkvp_reply *rep)
{
    const msgpack_object *a = top->via.array.ptr;
    int rc;
    if (a[1].type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        if (a[1].via.i64 < INT32_MIN)
            return vkv_errbuf(d->why, d->why_len, VKV_EPROTO, "status: out of range");
        rep->status = (int32_t)a[1].via.i64;
    } else if (a[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (a[1].via.u64 != 0)
            return vkv_errbuf(d->why, d->why_len, VKV_EPROTO, "status: positive value %" PRIu64,
                              a[1].via.u64);
        rep->status = 0;
    } else {
        return vkv_errbuf(d->why, d->why_len, VKV_EPROTO, "status: expected int, got %s",
                          vkvp_type_name(a[1].type));
    }
    if ((rc = vkvp_dec_uint(d, &a[2], 0, UINT64_MAX, "req_id", &rep->req_id)) != 0 ||
        (rc = vkvp_dec_uint(d, &a[3], 0, UINT64_MAX, "epoch", &rep->epoch)) != 0)
        return rc;
    if (rep->status != 0)
        return vkvp_dec_struct(d, vkvp_err_desc(), &a[4], "body", rep);
    return vkvp_dec_struct(d, vkvp_rep_desc(rep->op), &a[4], "body", &rep->u);
}

/* See proto.h. */
int vkvp_decode_reply(const void *frame, size_t len, vkvp_op op, vkvp_reply **out, char *why,
                      size_t why_len)
{
    vkvp_box *box;
    msgpack_object top;
    int rc;
    *out = NULL;
    if (why && why_len)
        why[0] = '\0';
    if (!vkvp_rep_desc(op))
        return vkv_errbuf(why, why_len, VKV_EINVAL, "unknown op %d", (int)op);
    if (!(box = vkvp_box_new()))
        return VKV_ENOMEM;
    vkvp_dec d = {&box->zone, why, why_len};
    vkvp_reply_init(&box->m.rep, op, 0, 0);
    if ((rc = vkvp_unpack(frame, len, 5, &box->zone, &top, why, why_len)) != 0 ||
        (rc = vkvp_dec_reply(&d, &top, &box->m.rep)) != 0) {
        vkvp_box_free(box);
        return rc;
    }
    *out = &box->m.rep;
    return 0;
}

/* See proto.h. */
void vkvp_reply_free(vkvp_reply *rep)
{
    vkvp_box_free((vkvp_box *)(void *)rep);
}

/* ------------------------------------------------------------------------- */
/* req_id recovery from a damaged frame                                       */

/* Skips one integer at p[*pos] (any msgpack int format); false if there is
 * none or it is truncated. */
static bool vkvp_skip_int(const uint8_t *p, size_t n, size_t *pos)
{
    static const unsigned sz[] = {1, 2, 4, 8};
    if (*pos >= n)
        return false;
    uint8_t b = p[*pos];
    if (b <= 0x7f || b >= 0xe0) {
        *pos += 1;
        return true;
    }
    if ((b >= 0xcc && b <= 0xcf) || (b >= 0xd0 && b <= 0xd3)) {
        unsigned k = sz[(b - 0xcc) & 3];
        if (n - *pos < 1 + (size_t)k)
            return false;
        *pos += 1 + k;
        return true;
    }
    return false;
}

/* See proto.h. */
uint64_t vkvp_peek_req_id(const void *frame, size_t len)
{
    const uint8_t *p = frame;
    size_t pos = 1;
    uint64_t count;
    if (!p || len < 4)
        return 0;
    if (p[0] >= 0x90 && p[0] <= 0x9f) {
        count = p[0] & 0x0f;
    } else if (p[0] == 0xdc && len >= 3) {
        count = vkvp_be(p + 1, 2);
        pos = 3;
    } else if (p[0] == 0xdd && len >= 5) {
        count = vkvp_be(p + 1, 4);
        pos = 5;
    } else {
        return 0;
    }
    if (count < 3 || !vkvp_skip_int(p, len, &pos) || !vkvp_skip_int(p, len, &pos) || pos >= len)
        return 0;
    uint8_t b = p[pos];
    if (b <= 0x7f)
        return b;
    if (b >= 0xcc && b <= 0xcf) {
        static const unsigned sz[] = {1, 2, 4, 8};
        unsigned k = sz[b - 0xcc];
        if (len - pos < 1 + (size_t)k)
            return 0;
        return vkvp_be(p + pos + 1, k);
    }
    if (b >= 0xd0 && b <= 0xd3) {
        /* A signed encoding the decoder also accepts when the value is
         * non-negative. */
        static const unsigned sz[] = {1, 2, 4, 8};
        unsigned k = sz[b - 0xd0];
        if (len - pos < 1 + (size_t)k || (p[pos + 1] & 0x80))
            return 0;
        return vkvp_be(p + pos + 1, k);
    }
    return 0;
}
