/*
 * proto/proto.c - encoder and strict decoder of vkv wire frames.
 *
 * Every body (and every nested map: slab, block, entry) is described once by
 * a table of fields (vkvp_fdesc, proto_desc.h). The encoder, the decoder and
 * the JSON renderer (proto_json.c) all walk the same tables, so the three can
 * never disagree on a field's name, type, limit or optionality.
 *
 * Decoding runs in three stages:
 *   1. raw_value(): a pass over the raw bytes that bounds every container
 *      count and str/bin length by the bytes that remain, limits nesting,
 *      refuses ext types and the reserved byte, and demands exact consumption.
 *      Only then is msgpack-c allowed to allocate anything.
 *   2. msgpack_unpack() into the message's own zone.
 *   3. dec_struct(): type, range and key checks on every field, copying all
 *      variable-length data into the same zone (never pointing into the
 *      caller's frame).
 */
#include "proto/proto.h"
#include "proto/proto_desc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "common/errbuf.h"

_Static_assert(sizeof(vkvp_op) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(vkvp_state) == sizeof(int), "enums are stored as int");

/* ------------------------------------------------------------------------- */
/* field tables                                                               */

#define VKVP_NF(a) ((unsigned)(sizeof(a) / sizeof((a)[0])))

#define FU(T, name, m, fl, lo, hi)                                                                 \
    {                                                                                              \
        name, VKVP_K_UINT, fl, offsetof(T, m), 0, 0, lo, hi, NULL, NULL                            \
    }
#define FUH(T, name, m, has, lo, hi)                                                               \
    {                                                                                              \
        name, VKVP_K_UINT, VKVP_F_HAS, offsetof(T, m), 0, offsetof(T, has), lo, hi, NULL, NULL     \
    }
#define FB(T, name, m)                                                                             \
    {                                                                                              \
        name, VKVP_K_BOOL, 0, offsetof(T, m), 0, 0, 0, 1, NULL, NULL                               \
    }
#define FS(T, name, m, fl, lo, hi)                                                                 \
    {                                                                                              \
        name, VKVP_K_STR, fl, offsetof(T, m), 0, 0, lo, hi, NULL, NULL                             \
    }
#define FSH(T, name, m, has, hi)                                                                   \
    {                                                                                              \
        name, VKVP_K_STR, VKVP_F_HAS, offsetof(T, m), 0, offsetof(T, has), 0, hi, NULL, NULL       \
    }
#define FK(T, name, m)                                                                             \
    {                                                                                              \
        name, VKVP_K_KEY, VKVP_F_REQ, offsetof(T, m), 0, 0, 0, 0, NULL, NULL                       \
    }
#define FA(T, kind, name, m, cnt, fl, has, lo, hi, sub)                                            \
    {                                                                                              \
        name, kind, fl, offsetof(T, m), offsetof(T, cnt), has, lo, hi, NULL, sub                   \
    }
#define FE(T, name, m, fl, names)                                                                  \
    {                                                                                              \
        name, VKVP_K_ENUM, fl, offsetof(T, m), 0, 0, 0, 0, names, NULL                             \
    }

#define R VKVP_F_REQ

static const char *const vkvp_backend_names[] = {"host", "cuda", NULL};
static const char *const vkvp_state_names[] = {"writing", "ready", "cold", "restoring", NULL};
static const char *const vkvp_tier_names[] = {"hot", "cold", NULL};
static const char *const vkvp_evict_names[] = {"cold", "drop", NULL};

/* cross-field checks */
static const char *vkvp_chk_hello_req(const void *o)
{
    const vkvp_hello_req *h = o;
    return (h->ns.len == 0 && !h->admin) ? "ns: empty namespace needs admin=true" : NULL;
}

static const char *vkvp_chk_evict_req(const void *o)
{
    const vkvp_evict_req *e = o;
    if (e->has_keys == e->all)
        return "needs exactly one of keys / all=true";
    return NULL;
}

static const char *vkvp_chk_lookup_rep(const void *o)
{
    const vkvp_lookup_rep *l = o;
    return l->cold > l->hits ? "cold: larger than hits" : NULL;
}

static const char *vkvp_chk_hello_rep(const void *o)
{
    const vkvp_hello_rep *h = o;
    return (h->page_size & (h->page_size - 1)) ? "page_size: not a power of two" : NULL;
}

/* --- requests --- */
static const vkvp_fdesc vkvp_f_hello_req[] = {
    FS(vkvp_hello_req, "ns", ns, R, 0, VKVP_MAX_NS),
    FU(vkvp_hello_req, "pid", pid, R, 1, INT32_MAX),
    FSH(vkvp_hello_req, "name", name, has_name, VKVP_MAX_NAME),
    FB(vkvp_hello_req, "admin", admin),
};
static const vkvp_fdesc vkvp_f_keys_req[] = {
    FU(vkvp_keys_req, "session", session, R, 0, UINT64_MAX),
    FA(vkvp_keys_req, VKVP_K_KEYS, "keys", keys, nkeys, R, 0, 0, VKVP_MAX_KEYS, NULL),
};
static const vkvp_fdesc vkvp_f_delete_req[] = {
    FU(vkvp_delete_req, "session", session, R, 0, UINT64_MAX),
    FA(vkvp_delete_req, VKVP_K_KEYS, "keys", keys, nkeys, R, 0, 0, VKVP_MAX_KEYS, NULL),
    FSH(vkvp_delete_req, "ns", ns, has_ns, VKVP_MAX_NS),
};
static const vkvp_fdesc vkvp_f_alloc_req[] = {
    FU(vkvp_alloc_req, "session", session, R, 0, UINT64_MAX),
    FK(vkvp_alloc_req, "key", key),
    FU(vkvp_alloc_req, "size", size, R, 1, VKVP_MAX_ALLOC),
};
static const vkvp_fdesc vkvp_f_lease_req[] = {
    FU(vkvp_lease_req, "session", session, R, 0, UINT64_MAX),
    FU(vkvp_lease_req, "lease", lease, R, 0, UINT64_MAX),
};
static const vkvp_fdesc vkvp_f_release_req[] = {
    FU(vkvp_release_req, "session", session, R, 0, UINT64_MAX),
    FA(vkvp_release_req, VKVP_K_UINTS, "leases", leases, nleases, R, 0, 1, VKVP_MAX_LEASES, NULL),
};
static const vkvp_fdesc vkvp_f_evict_req[] = {
    FU(vkvp_evict_req, "session", session, R, 0, UINT64_MAX),
    FA(vkvp_evict_req, VKVP_K_KEYS, "keys", keys, nkeys, VKVP_F_HAS,
       offsetof(vkvp_evict_req, has_keys), 0, VKVP_MAX_KEYS, NULL),
    FB(vkvp_evict_req, "all", all),
    FE(vkvp_evict_req, "to", to, 0, vkvp_evict_names),
    FSH(vkvp_evict_req, "ns", ns, has_ns, VKVP_MAX_NS),
};
static const vkvp_fdesc vkvp_f_session_req[] = {
    FU(vkvp_session_req, "session", session, R, 0, UINT64_MAX),
};
static const vkvp_fdesc vkvp_f_opt_session_req[] = {
    FUH(vkvp_opt_session_req, "session", session, has_session, 0, UINT64_MAX),
};
static const vkvp_fdesc vkvp_f_list_req[] = {
    FU(vkvp_list_req, "session", session, R, 0, UINT64_MAX),
    FU(vkvp_list_req, "cursor", cursor, 0, 0, UINT64_MAX),
    FU(vkvp_list_req, "limit", limit, 0, 1, VKVP_MAX_LIST),
    FSH(vkvp_list_req, "ns", ns, has_ns, VKVP_MAX_NS),
};
static const vkvp_fdesc vkvp_f_info_req[] = {
    FU(vkvp_info_req, "session", session, R, 0, UINT64_MAX),
    FK(vkvp_info_req, "key", key),
    FSH(vkvp_info_req, "ns", ns, has_ns, VKVP_MAX_NS),
};
static const vkvp_fdesc vkvp_f_verify_req[] = {
    FU(vkvp_verify_req, "session", session, R, 0, UINT64_MAX),
    FB(vkvp_verify_req, "start", start),
    FB(vkvp_verify_req, "drop", drop),
};

#define SD(fields, T, chk)                                                                         \
    {                                                                                              \
        fields, VKVP_NF(fields), sizeof(T), chk                                                    \
    }
static const vkvp_sdesc vkvp_s_hello_req = SD(vkvp_f_hello_req, vkvp_hello_req, vkvp_chk_hello_req);
static const vkvp_sdesc vkvp_s_keys_req = SD(vkvp_f_keys_req, vkvp_keys_req, NULL);
static const vkvp_sdesc vkvp_s_delete_req = SD(vkvp_f_delete_req, vkvp_delete_req, NULL);
static const vkvp_sdesc vkvp_s_alloc_req = SD(vkvp_f_alloc_req, vkvp_alloc_req, NULL);
static const vkvp_sdesc vkvp_s_lease_req = SD(vkvp_f_lease_req, vkvp_lease_req, NULL);
static const vkvp_sdesc vkvp_s_release_req = SD(vkvp_f_release_req, vkvp_release_req, NULL);
static const vkvp_sdesc vkvp_s_evict_req = SD(vkvp_f_evict_req, vkvp_evict_req, vkvp_chk_evict_req);
static const vkvp_sdesc vkvp_s_session_req = SD(vkvp_f_session_req, vkvp_session_req, NULL);
static const vkvp_sdesc vkvp_s_opt_session_req =
    SD(vkvp_f_opt_session_req, vkvp_opt_session_req, NULL);
static const vkvp_sdesc vkvp_s_list_req = SD(vkvp_f_list_req, vkvp_list_req, NULL);
static const vkvp_sdesc vkvp_s_info_req = SD(vkvp_f_info_req, vkvp_info_req, NULL);
static const vkvp_sdesc vkvp_s_verify_req = SD(vkvp_f_verify_req, vkvp_verify_req, NULL);
static const vkvp_sdesc vkvp_s_empty = {NULL, 0, 0, NULL};

/* --- replies --- */
static const vkvp_fdesc vkvp_f_slab[] = {
    FU(vkvp_slab, "id", id, R, 0, UINT32_MAX),
    FU(vkvp_slab, "size", size, R, 0, UINT64_MAX),
    FA(vkvp_slab, VKVP_K_HANDLE, "handle", handle, handle_len, R, 0, 0, VKVP_HANDLE_LEN, NULL),
};
static const vkvp_sdesc vkvp_s_slab = SD(vkvp_f_slab, vkvp_slab, NULL);

static const vkvp_fdesc vkvp_f_hello_rep[] = {
    FU(vkvp_hello_rep, "session", session, R, 0, UINT64_MAX),
    FU(vkvp_hello_rep, "epoch", epoch, R, 0, UINT64_MAX),
    FE(vkvp_hello_rep, "backend", backend, R, vkvp_backend_names),
    FU(vkvp_hello_rep, "lease_ttl_ms", lease_ttl_ms, R, 0, UINT64_MAX),
    FU(vkvp_hello_rep, "page_size", page_size, R, 1, VKVP_MAX_PAGE_SIZE),
    FS(vkvp_hello_rep, "fd_path", fd_path, R, 0, VKVP_MAX_PATH),
    FA(vkvp_hello_rep, VKVP_K_OBJS, "slabs", slabs, nslabs, R, 0, 0, VKVP_MAX_SLABS, &vkvp_s_slab),
};
static const vkvp_fdesc vkvp_f_lookup_rep[] = {
    FU(vkvp_lookup_rep, "hits", hits, R, 0, VKVP_MAX_KEYS),
    FU(vkvp_lookup_rep, "cold", cold, R, 0, VKVP_MAX_KEYS),
};
static const vkvp_fdesc vkvp_f_block[] = {
    FU(vkvp_block, "len", len, R, 0, VKVP_MAX_ALLOC),
    FA(vkvp_block, VKVP_K_EXTENTS, "ext", ext, next, R, 0, 1, VKVP_MAX_EXTENTS, NULL),
};
static const vkvp_sdesc vkvp_s_block = SD(vkvp_f_block, vkvp_block, NULL);
static const vkvp_fdesc vkvp_f_fetch_rep[] = {
    FU(vkvp_fetch_rep, "lease", lease, R, 0, UINT64_MAX),
    FA(vkvp_fetch_rep, VKVP_K_OBJS, "blocks", blocks, nblocks, R, 0, 0, VKVP_MAX_KEYS,
       &vkvp_s_block),
};
static const vkvp_fdesc vkvp_f_alloc_rep[] = {
    FU(vkvp_alloc_rep, "lease", lease, R, 0, UINT64_MAX),
    FU(vkvp_alloc_rep, "len", block.len, R, 0, VKVP_MAX_ALLOC),
    FA(vkvp_alloc_rep, VKVP_K_EXTENTS, "ext", block.ext, block.next, R, 0, 1, VKVP_MAX_EXTENTS,
       NULL),
};
static const vkvp_fdesc vkvp_f_released[] = {
    FU(vkvp_count_rep, "released", count, R, 0, UINT64_MAX)};
static const vkvp_fdesc vkvp_f_renewed[] = {FU(vkvp_count_rep, "renewed", count, R, 0, UINT64_MAX)};
static const vkvp_fdesc vkvp_f_deleted[] = {FU(vkvp_count_rep, "deleted", count, R, 0, UINT64_MAX)};
static const vkvp_fdesc vkvp_f_evicted[] = {FU(vkvp_count_rep, "evicted", count, R, 0, UINT64_MAX)};
static const vkvp_fdesc vkvp_f_spilled[] = {FU(vkvp_count_rep, "spilled", count, R, 0, UINT64_MAX)};
static const vkvp_fdesc vkvp_f_stats_rep[] = {
    FA(vkvp_stats_rep, VKVP_K_COUNTERS, "counters", counters, ncounters, R, 0, 0, VKVP_MAX_COUNTERS,
       NULL),
};
static const vkvp_fdesc vkvp_f_entry[] = {
    FS(vkvp_entry, "ns", ns, R, 0, VKVP_MAX_NS),
    FK(vkvp_entry, "key", key),
    FE(vkvp_entry, "state", state, R, vkvp_state_names),
    FE(vkvp_entry, "tier", tier, R, vkvp_tier_names),
    FU(vkvp_entry, "size", size, R, 0, UINT64_MAX),
    FU(vkvp_entry, "hits", hits, R, 0, UINT64_MAX),
    FU(vkvp_entry, "last_ms", last_ms, R, 0, UINT64_MAX),
    FU(vkvp_entry, "pins", pins, R, 0, UINT64_MAX),
    FS(vkvp_entry, "shape", shape, R, 0, VKVP_MAX_SHAPE),
};
static const vkvp_sdesc vkvp_s_entry = SD(vkvp_f_entry, vkvp_entry, NULL);
static const vkvp_fdesc vkvp_f_list_rep[] = {
    FA(vkvp_list_rep, VKVP_K_OBJS, "entries", entries, nentries, R, 0, 0, VKVP_MAX_LIST,
       &vkvp_s_entry),
    FU(vkvp_list_rep, "next", next, R, 0, UINT64_MAX),
};
static const vkvp_fdesc vkvp_f_info_rep[] = {
    {"entry", VKVP_K_OBJ, R, offsetof(vkvp_info_rep, entry), 0, 0, 0, 0, NULL, &vkvp_s_entry},
};
static const vkvp_fdesc vkvp_f_verify_rep[] = {
    {"running", VKVP_K_BOOL, R, offsetof(vkvp_verify_rep, running), 0, 0, 0, 1, NULL, NULL},
    FU(vkvp_verify_rep, "entries_done", entries_done, R, 0, UINT64_MAX),
    FU(vkvp_verify_rep, "entries_total", entries_total, R, 0, UINT64_MAX),
    FU(vkvp_verify_rep, "bytes_done", bytes_done, R, 0, UINT64_MAX),
    FU(vkvp_verify_rep, "bytes_total", bytes_total, R, 0, UINT64_MAX),
    FU(vkvp_verify_rep, "corrupt", corrupt, R, 0, UINT64_MAX),
    FU(vkvp_verify_rep, "dropped", dropped, R, 0, UINT64_MAX),
};
static const vkvp_fdesc vkvp_f_error[] = {
    FS(vkvp_reply, "msg", msg, R, 0, VKVP_MAX_MSG),
};

static const vkvp_sdesc vkvp_s_hello_rep = SD(vkvp_f_hello_rep, vkvp_hello_rep, vkvp_chk_hello_rep);
static const vkvp_sdesc vkvp_s_lookup_rep =
    SD(vkvp_f_lookup_rep, vkvp_lookup_rep, vkvp_chk_lookup_rep);
static const vkvp_sdesc vkvp_s_fetch_rep = SD(vkvp_f_fetch_rep, vkvp_fetch_rep, NULL);
static const vkvp_sdesc vkvp_s_alloc_rep = SD(vkvp_f_alloc_rep, vkvp_alloc_rep, NULL);
static const vkvp_sdesc vkvp_s_released = SD(vkvp_f_released, vkvp_count_rep, NULL);
static const vkvp_sdesc vkvp_s_renewed = SD(vkvp_f_renewed, vkvp_count_rep, NULL);
static const vkvp_sdesc vkvp_s_deleted = SD(vkvp_f_deleted, vkvp_count_rep, NULL);
static const vkvp_sdesc vkvp_s_evicted = SD(vkvp_f_evicted, vkvp_count_rep, NULL);
static const vkvp_sdesc vkvp_s_spilled = SD(vkvp_f_spilled, vkvp_count_rep, NULL);
static const vkvp_sdesc vkvp_s_stats_rep = SD(vkvp_f_stats_rep, vkvp_stats_rep, NULL);
static const vkvp_sdesc vkvp_s_list_rep = SD(vkvp_f_list_rep, vkvp_list_rep, NULL);
static const vkvp_sdesc vkvp_s_info_rep = SD(vkvp_f_info_rep, vkvp_info_rep, NULL);
static const vkvp_sdesc vkvp_s_verify_rep = SD(vkvp_f_verify_rep, vkvp_verify_rep, NULL);
static const vkvp_sdesc vkvp_s_error = SD(vkvp_f_error, vkvp_reply, NULL);

#undef R

/* Body descriptors by op (VKVP_OPS), index = wire value. */
#define VKVP_REQ_DESC_(name, value, lower, req, rep) [value] = &req,
#define VKVP_REP_DESC_(name, value, lower, req, rep) [value] = &rep,
static const vkvp_sdesc *const vkvp_req_descs[VKVP_OP_MAX_ + 1] = {VKVP_OPS(VKVP_REQ_DESC_)};
static const vkvp_sdesc *const vkvp_rep_descs[VKVP_OP_MAX_ + 1] = {VKVP_OPS(VKVP_REP_DESC_)};
#undef VKVP_REQ_DESC_
#undef VKVP_REP_DESC_

/* See proto_desc.h. */
const vkvp_sdesc *vkvp_req_desc(int op)
{
    return op >= 1 && op <= VKVP_OP_MAX_ ? vkvp_req_descs[op] : NULL;
}

/* See proto_desc.h. */
const vkvp_sdesc *vkvp_rep_desc(int op)
{
    return op >= 1 && op <= VKVP_OP_MAX_ ? vkvp_rep_descs[op] : NULL;
}

/* See proto_desc.h. */
const vkvp_sdesc *vkvp_err_desc(void)
{
    return &vkvp_s_error;
}

/* ------------------------------------------------------------------------- */
/* small helpers                                                              */

void vkvp_request_init(vkvp_request *req, vkvp_op op, uint64_t req_id)
{
    memset(req, 0, sizeof(*req));
    req->version = VKVP_VERSION;
    req->op = op;
    req->req_id = req_id;
    if (op == VKVP_LIST)
        req->u.list.limit = VKVP_LIST_DEFAULT;
    if (op == VKVP_EVICT)
        req->u.evict.to = VKVP_EVICT_COLD;
}

void vkvp_reply_init(vkvp_reply *rep, vkvp_op op, uint64_t req_id, uint64_t epoch)
{
    memset(rep, 0, sizeof(*rep));
    rep->version = VKVP_VERSION;
    rep->op = op;
    rep->req_id = req_id;
    rep->epoch = epoch;
}

vkvp_str vkvp_cstr(const char *s)
{
    vkvp_str r = {s ? s : "", 0};
    size_t n = s ? strlen(s) : 0;
    r.len = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    return r;
}

/* See proto_desc.h. */
const char *vkvp_name_of(const char *const *names, int v)
{
    for (int i = 0; names[i]; i++)
        if (i == v)
            return names[i];
    return "?";
}

const char *vkvp_op_name(int op)
{
#define VKVP_OP_NAME_(name, value, lower, req, rep) [value] = #name,
    static const char *const n[VKVP_OP_MAX_ + 1] = {VKVP_OPS(VKVP_OP_NAME_)};
#undef VKVP_OP_NAME_
    return (op >= 1 && op <= VKVP_OP_MAX_) ? n[op] : "?";
}

const char *vkvp_op_lower(int op)
{
#define VKVP_OP_LOWER_(name, value, lower, req, rep) [value] = #lower,
    static const char *const n[VKVP_OP_MAX_ + 1] = {VKVP_OPS(VKVP_OP_LOWER_)};
#undef VKVP_OP_LOWER_
    return (op >= 1 && op <= VKVP_OP_MAX_) ? n[op] : "?";
}

const char *vkvp_backend_name(int b)
{
    return vkvp_name_of(vkvp_backend_names, b);
}
const char *vkvp_state_name(int s)
{
    return vkvp_name_of(vkvp_state_names, s);
}
const char *vkvp_tier_name(int t)
{
    return vkvp_name_of(vkvp_tier_names, t);
}
const char *vkvp_evict_to_name(int t)
{
    return vkvp_name_of(vkvp_evict_names, t);
}

/* ------------------------------------------------------------------------- */
/* encoding                                                                   */

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

/* Packs one extent list after checking count and each extent's range. */
static int vkvp_enc_extents(msgpack_packer *pk, const vkvp_extent *e, uint32_t n,
                            const vkvp_fdesc *f)
{
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

/* Packs the value of field f of obj (the key was packed by the caller). */
static int vkvp_enc_field(msgpack_packer *pk, const vkvp_fdesc *f, const void *obj)
{
    int rc;
    switch (f->kind) {
    case VKVP_K_UINT: {
        uint64_t v = *CAT(obj, f->off, uint64_t);
        if (v < f->min || v > f->max)
            return VKV_EINVAL;
        PK(msgpack_pack_uint64(pk, v));
        return 0;
    }
    case VKVP_K_BOOL:
        PK(*CAT(obj, f->off, bool) ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
        return 0;
    case VKVP_K_STR: {
        const vkvp_str *s = CAT(obj, f->off, vkvp_str);
        if ((rc = vkvp_str_ok(s, f->min, f->max)) != 0)
            return rc;
        PK(msgpack_pack_str_with_body(pk, s->ptr ? s->ptr : "", s->len));
        return 0;
    }
    case VKVP_K_KEY:
        PK(msgpack_pack_bin_with_body(pk, CAT(obj, f->off, vkv_key)->b, VKV_KEY_LEN));
        return 0;
    case VKVP_K_KEYS: {
        const vkv_key *k = *CAT(obj, f->off, vkv_key *);
        uint32_t n = *CAT(obj, f->cnt_off, uint32_t);
        if (n < f->min || n > f->max || (n && !k))
            return VKV_EINVAL;
        PK(msgpack_pack_array(pk, n));
        for (uint32_t i = 0; i < n; i++)
            PK(msgpack_pack_bin_with_body(pk, k[i].b, VKV_KEY_LEN));
        return 0;
    }
    case VKVP_K_UINTS: {
        const uint64_t *u = *CAT(obj, f->off, const uint64_t *);
        uint32_t n = *CAT(obj, f->cnt_off, uint32_t);
        if (n < f->min || n > f->max || (n && !u))
            return VKV_EINVAL;
        PK(msgpack_pack_array(pk, n));
        for (uint32_t i = 0; i < n; i++)
            PK(msgpack_pack_uint64(pk, u[i]));
        return 0;
    }
    case VKVP_K_ENUM: {
        int v = *CAT(obj, f->off, int);
        const char *name = vkvp_name_of(f->names, v);
        if (name[0] == '?')
            return VKV_EINVAL;
        PK(msgpack_pack_str_with_body(pk, name, strlen(name)));
        return 0;
    }
    case VKVP_K_HANDLE: {
        uint32_t n = *CAT(obj, f->cnt_off, uint32_t);
        if (n != 0 && n != VKVP_HANDLE_LEN)
            return VKV_EINVAL;
        PK(msgpack_pack_bin_with_body(pk, CAT(obj, f->off, uint8_t), n));
        return 0;
    }
    case VKVP_K_EXTENTS:
        return vkvp_enc_extents(pk, *CAT(obj, f->off, vkvp_extent *),
                                *CAT(obj, f->cnt_off, uint32_t), f);
    case VKVP_K_OBJ:
        return vkvp_enc_struct(pk, f->sub, CAT(obj, f->off, char));
    case VKVP_K_OBJS: {
        const char *a = *CAT(obj, f->off, char *);
        uint32_t n = *CAT(obj, f->cnt_off, uint32_t);
        if (n < f->min || n > f->max || (n && !a))
            return VKV_EINVAL;
        PK(msgpack_pack_array(pk, n));
        for (uint32_t i = 0; i < n; i++)
            if ((rc = vkvp_enc_struct(pk, f->sub, a + (size_t)i * f->sub->size)) != 0)
                return rc;
        return 0;
    }
    case VKVP_K_COUNTERS: {
        const vkvp_counter *c = *CAT(obj, f->off, vkvp_counter *);
        uint32_t n = *CAT(obj, f->cnt_off, uint32_t);
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
    }
    return VKV_EINVAL;
}

/* See proto_desc.h. */
bool vkvp_present(const vkvp_fdesc *f, const void *obj)
{
    return !(f->flags & VKVP_F_HAS) || *CAT(obj, f->has_off, bool);
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
    const vkvp_sdesc *sd = rep->status == 0 ? vkvp_rep_desc(rep->op) : &vkvp_s_error;
    if (!sd || rep->version != VKVP_VERSION || rep->status > 0)
        return VKV_EINVAL;
    PK(msgpack_pack_array(pk, 5));
    PK(msgpack_pack_uint32(pk, rep->version));
    PK(msgpack_pack_int32(pk, rep->status));
    PK(msgpack_pack_uint64(pk, rep->req_id));
    PK(msgpack_pack_uint64(pk, rep->epoch));
    return vkvp_enc_struct(pk, sd, rep->status == 0 ? (const void *)&rep->u : (const void *)rep);
}

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
/* stage 3: typed decoding                                                    */

typedef struct vkvp_dec {
    msgpack_zone *zone;
    char *why;
    size_t why_len;
} vkvp_dec;

static const char *vkvp_type_name(msgpack_object_type t)
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

/* Decodes a uint in [min, max]. */
static int vkvp_dec_uint(vkvp_dec *d, const msgpack_object *o, uint64_t min, uint64_t max,
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

static int vkvp_dec_struct(vkvp_dec *d, const vkvp_sdesc *sd, const msgpack_object *o,
                           const char *path, void *obj);

/* Decodes an extent list. */
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

/* Decodes a counters map (str -> uint, unique names). */
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

/* Decodes the value o of field f into obj. */
static int vkvp_dec_field(vkvp_dec *d, const vkvp_fdesc *f, const msgpack_object *o,
                          const char *path, void *obj)
{
    int rc;
    char p[96];
    switch (f->kind) {
    case VKVP_K_UINT:
        return vkvp_dec_uint(d, o, f->min, f->max, path, AT(obj, f->off, uint64_t));
    case VKVP_K_BOOL:
        if ((rc = vkvp_want(d, o, MSGPACK_OBJECT_BOOLEAN, path)) != 0)
            return rc;
        *AT(obj, f->off, bool) = o->via.boolean;
        return 0;
    case VKVP_K_STR:
        return vkvp_dec_str(d, o, f->min, f->max, path, AT(obj, f->off, vkvp_str));
    case VKVP_K_KEY:
        return vkvp_dec_key(d, o, path, AT(obj, f->off, vkv_key));
    case VKVP_K_KEYS: {
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
    case VKVP_K_UINTS: {
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
    case VKVP_K_ENUM:
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
    case VKVP_K_HANDLE:
        if ((rc = vkvp_want(d, o, MSGPACK_OBJECT_BIN, path)) != 0)
            return rc;
        if (o->via.bin.size != 0 && o->via.bin.size != VKVP_HANDLE_LEN)
            return vkv_errbuf(d->why, d->why_len, VKV_EPROTO,
                              "%s: bin of %u bytes, expected 0 or %d", path, o->via.bin.size,
                              VKVP_HANDLE_LEN);
        memcpy(AT(obj, f->off, uint8_t), o->via.bin.ptr, o->via.bin.size);
        *AT(obj, f->cnt_off, uint32_t) = o->via.bin.size;
        return 0;
    case VKVP_K_EXTENTS:
        return vkvp_dec_extents(d, f, o, path, obj);
    case VKVP_K_OBJ:
        return vkvp_dec_struct(d, f->sub, o, path, AT(obj, f->off, char));
    case VKVP_K_OBJS: {
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
    case VKVP_K_COUNTERS:
        return vkvp_dec_counters(d, f, o, path, obj);
    }
    return VKV_EINVAL;
}

/* Decodes map o into obj by the fields of sd: string keys, known keys only,
 * no duplicates, required ones present, then the cross-field check. obj must
 * be pre-set to the defaults. */
static int vkvp_dec_struct(vkvp_dec *d, const vkvp_sdesc *sd, const msgpack_object *o,
                           const char *path, void *obj)
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

/* A decoded message and the zone that owns everything it points to. The
 * message comes first so that a message pointer is a box pointer. */
typedef struct vkvp_req_box {
    vkvp_request req;
    msgpack_zone zone;
} vkvp_req_box;

typedef struct vkvp_rep_box {
    vkvp_reply rep;
    msgpack_zone zone;
} vkvp_rep_box;

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

int vkvp_decode_request(const void *frame, size_t len, vkvp_request **out, char *why,
                        size_t why_len)
{
    vkvp_req_box *box;
    msgpack_object top;
    int rc;
    *out = NULL;
    if (why && why_len)
        why[0] = '\0';
    if (!(box = calloc(1, sizeof(*box))))
        return VKV_ENOMEM;
    if (!msgpack_zone_init(&box->zone, MSGPACK_ZONE_CHUNK_SIZE)) {
        free(box);
        return VKV_ENOMEM;
    }
    vkvp_dec d = {&box->zone, why, why_len};
    if ((rc = vkvp_unpack(frame, len, 4, &box->zone, &top, why, why_len)) != 0 ||
        (rc = vkvp_dec_request(&d, &top, &box->req)) != 0) {
        msgpack_zone_destroy(&box->zone);
        free(box);
        return rc;
    }
    *out = &box->req;
    return 0;
}

void vkvp_request_free(vkvp_request *req)
{
    vkvp_req_box *box = (vkvp_req_box *)req;
    if (!box)
        return;
    msgpack_zone_destroy(&box->zone);
    free(box);
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
        return vkvp_dec_struct(d, &vkvp_s_error, &a[4], "body", rep);
    return vkvp_dec_struct(d, vkvp_rep_desc(rep->op), &a[4], "body", &rep->u);
}

int vkvp_decode_reply(const void *frame, size_t len, vkvp_op op, vkvp_reply **out, char *why,
                      size_t why_len)
{
    vkvp_rep_box *box;
    msgpack_object top;
    int rc;
    *out = NULL;
    if (why && why_len)
        why[0] = '\0';
    if (!vkvp_rep_desc(op))
        return vkv_errbuf(why, why_len, VKV_EINVAL, "unknown op %d", (int)op);
    if (!(box = calloc(1, sizeof(*box))))
        return VKV_ENOMEM;
    if (!msgpack_zone_init(&box->zone, MSGPACK_ZONE_CHUNK_SIZE)) {
        free(box);
        return VKV_ENOMEM;
    }
    vkvp_dec d = {&box->zone, why, why_len};
    vkvp_reply_init(&box->rep, op, 0, 0);
    if ((rc = vkvp_unpack(frame, len, 5, &box->zone, &top, why, why_len)) != 0 ||
        (rc = vkvp_dec_reply(&d, &top, &box->rep)) != 0) {
        msgpack_zone_destroy(&box->zone);
        free(box);
        return rc;
    }
    *out = &box->rep;
    return 0;
}

void vkvp_reply_free(vkvp_reply *rep)
{
    vkvp_rep_box *box = (vkvp_rep_box *)rep;
    if (!box)
        return;
    msgpack_zone_destroy(&box->zone);
    free(box);
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
