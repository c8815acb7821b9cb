/*
 * proto/proto_desc.c - the field tables that describe every wire body once
 * (vkvp_fdesc, proto_desc.h), the per-op descriptor tables generated from
 * VKVP_OPS, the wire names of ops and enums, and the message init helpers.
 *
 * The encoder (proto_enc.c), the decoder (proto_dec.c, proto_frame.c) and
 * the JSON renderer (proto_json.c) all walk these tables, so they can never
 * disagree on a field's name, type, limit or optionality. Everything here is
 * static, read-only data; nothing allocates.
 */
#include "proto/proto.h"
#include "proto/proto_desc.h"

#include <string.h>

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

/* See proto.h. */
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

/* See proto.h. */
void vkvp_reply_init(vkvp_reply *rep, vkvp_op op, uint64_t req_id, uint64_t epoch)
{
    memset(rep, 0, sizeof(*rep));
    rep->version = VKVP_VERSION;
    rep->op = op;
    rep->req_id = req_id;
    rep->epoch = epoch;
}

/* See proto.h. */
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

/* See proto.h. */
const char *vkvp_op_name(int op)
{
#define VKVP_OP_NAME_(name, value, lower, req, rep) [value] = #name,
    static const char *const n[VKVP_OP_MAX_ + 1] = {VKVP_OPS(VKVP_OP_NAME_)};
#undef VKVP_OP_NAME_
    return (op >= 1 && op <= VKVP_OP_MAX_) ? n[op] : "?";
}

/* See proto.h. */
const char *vkvp_op_lower(int op)
{
#define VKVP_OP_LOWER_(name, value, lower, req, rep) [value] = #lower,
    static const char *const n[VKVP_OP_MAX_ + 1] = {VKVP_OPS(VKVP_OP_LOWER_)};
#undef VKVP_OP_LOWER_
    return (op >= 1 && op <= VKVP_OP_MAX_) ? n[op] : "?";
}

/* See proto.h. */
const char *vkvp_backend_name(int b)
{
    return vkvp_name_of(vkvp_backend_names, b);
}

/* See proto.h. */
const char *vkvp_state_name(int s)
{
    return vkvp_name_of(vkvp_state_names, s);
}

/* See proto.h. */
const char *vkvp_tier_name(int t)
{
    return vkvp_name_of(vkvp_tier_names, t);
}

/* See proto.h. */
const char *vkvp_evict_to_name(int t)
{
    return vkvp_name_of(vkvp_evict_names, t);
}

/* See proto_desc.h. */
bool vkvp_present(const vkvp_fdesc *f, const void *obj)
{
    return !(f->flags & VKVP_F_HAS) || *CAT(obj, f->has_off, bool);
}
