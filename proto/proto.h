/*
 * proto/proto.h - the vkv wire protocol: message structs, encoders and the
 * strict decoder for untrusted frames.
 *
 * One nanomsg message = one frame = exactly one msgpack value:
 *   request: [version=1, op:uint, req_id:uint64, body:map]
 *   reply:   [version=1, status:int, req_id:uint64, epoch:uint64, body:map]
 * status is 0 (VKV_OK) or a negative vkv_err code (include/vkv/error.h); an
 * error reply's body is {"msg": str}. docs/PROTOCOL.md is the normative
 * description (every op, field, type and limit); this header mirrors it.
 *
 * Conventions of this module (prefix vkvp_):
 * - Every function returns 0 or a negative VKV_E* code.
 * - All numeric fields are uint64_t in the structs (the wire range of each is
 *   checked by both the encoder and the decoder), counts are uint32_t.
 * - Strings are byte strings (vkvp_str: pointer + length, no NUL needed when
 *   encoding). Decoded strings are additionally NUL-terminated.
 * - Optional fields: a `has_x` flag where absence differs from any value;
 *   otherwise a documented default that vkvp_request_init() fills in.
 * - Decoded messages (vkvp_request / vkvp_reply returned by the decoders) own
 *   all their variable-length data (keys, leases, strings, extents, slabs,
 *   entries, counters) in one arena; every pointer inside stays valid until
 *   the message is passed to vkvp_request_free / vkvp_reply_free. They never
 *   point into the frame buffer, so the frame may be freed right after decode.
 * - Messages the caller builds for encoding point to caller memory; the
 *   encoders only read it during the call.
 * - Thread-safety: no global state; distinct messages may be used from
 *   distinct threads.
 */
#ifndef VKV_PROTO_H
#define VKV_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vkv/error.h"
#include "vkv/key.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --- limits (all enforced by encoder and decoder) -------------------------- */
#define VKVP_VERSION       1u
#define VKVP_MAX_FRAME     (1u << 20)   /* bytes per frame; larger -> VKV_ETOOBIG */
#define VKVP_MAX_DEPTH     8            /* container nesting (top array = depth 1) */
#define VKVP_MAX_KEYS      4096         /* keys in one key list */
#define VKVP_MAX_LEASES    4096         /* leases in one RELEASE (min 1) */
#define VKVP_MAX_EXTENTS   4096         /* extents of one block (min 1) */
#define VKVP_MAX_SLABS     1024         /* slabs in a HELLO reply */
#define VKVP_MAX_COUNTERS  256          /* counters in a STATS reply */
#define VKVP_MAX_LIST      1000         /* LIST limit / entries in a LIST reply */
#define VKVP_LIST_DEFAULT  100          /* LIST limit when absent */
#define VKVP_MAX_NS        255          /* namespace bytes (the store's limit) */
#define VKVP_MAX_NAME      64           /* HELLO name, counter name bytes */
#define VKVP_MAX_MSG       512          /* error message bytes */
#define VKVP_MAX_SHAPE     256          /* entry shape text bytes */
#define VKVP_MAX_PATH      107          /* fd_path bytes (sun_path minus NUL) */
#define VKVP_MAX_ALLOC     (1ull << 40) /* ALLOC size: 1 .. 2^40 bytes */
#define VKVP_HANDLE_LEN    64           /* CUDA IPC handle bytes (0 for host) */
#define VKVP_MAX_PAGE_SIZE (1ull << 30) /* page_size: power of two, <= 1 GiB */
#define VKVP_WHY_LEN       160          /* a comfortable size for `why` buffers */

/* --- enums (values are wire values and never change) ----------------------- */
/* The one list of operations: X(NAME, wire value, lower-case name, request
 * body descriptor, reply body descriptor). It generates the enum, the names
 * (vkvp_op_name), the codec's descriptor tables (proto_desc.c), the daemon's
 * req_<name> counters and the metrics' op labels. Values are contiguous from
 * 1 and never change; the descriptor names are those of proto_desc.c. */
#define VKVP_OPS(X)                                                                                \
    X(HELLO, 1, hello, vkvp_s_hello_req, vkvp_s_hello_rep)                                         \
    X(LOOKUP, 2, lookup, vkvp_s_keys_req, vkvp_s_lookup_rep)                                       \
    X(FETCH, 3, fetch, vkvp_s_keys_req, vkvp_s_fetch_rep)                                          \
    X(ALLOC, 4, alloc, vkvp_s_alloc_req, vkvp_s_alloc_rep)                                         \
    X(COMMIT, 5, commit, vkvp_s_lease_req, vkvp_s_empty)                                           \
    X(ABORT, 6, abort, vkvp_s_lease_req, vkvp_s_empty)                                             \
    X(RELEASE, 7, release, vkvp_s_release_req, vkvp_s_released)                                    \
    X(DELETE, 8, delete, vkvp_s_delete_req, vkvp_s_deleted)                                        \
    X(EVICT, 9, evict, vkvp_s_evict_req, vkvp_s_evicted)                                           \
    X(FLUSH, 10, flush, vkvp_s_session_req, vkvp_s_spilled)                                        \
    X(STATS, 11, stats, vkvp_s_opt_session_req, vkvp_s_stats_rep)                                  \
    X(LIST, 12, list, vkvp_s_list_req, vkvp_s_list_rep)                                            \
    X(INFO, 13, info, vkvp_s_info_req, vkvp_s_info_rep)                                            \
    X(PING, 14, ping, vkvp_s_opt_session_req, vkvp_s_empty)                                        \
    X(VERIFY, 15, verify, vkvp_s_verify_req, vkvp_s_verify_rep)                                    \
    X(RENEW, 16, renew, vkvp_s_release_req, vkvp_s_renewed) /* extend leases */                    \
    X(CLOSE, 17, close, vkvp_s_session_req, vkvp_s_empty)   /* end the session */

typedef enum vkvp_op {
#define VKVP_OP_ENUM_(name, value, lower, req, rep) VKVP_##name = value,
    VKVP_OPS(VKVP_OP_ENUM_)
#undef VKVP_OP_ENUM_
#define VKVP_OP_COUNT_(name, value, lower, req, rep) +1
        VKVP_OP_MAX_ = 0 VKVP_OPS(VKVP_OP_COUNT_)
#undef VKVP_OP_COUNT_
} vkvp_op;

/* Lower-case name of op ("lookup"), "?" if unknown; static string. */
const char *vkvp_op_lower(int op);

/* Wire strings: "host", "cuda". */
typedef enum vkvp_backend { VKVP_BACKEND_HOST = 0, VKVP_BACKEND_CUDA = 1 } vkvp_backend;

/* Wire strings: "writing", "ready", "cold", "restoring". */
typedef enum vkvp_state {
    VKVP_STATE_WRITING = 0,
    VKVP_STATE_READY = 1,
    VKVP_STATE_COLD = 2,
    VKVP_STATE_RESTORING = 3
} vkvp_state;

/* Wire strings: "hot", "cold". */
typedef enum vkvp_tier { VKVP_TIER_HOT = 0, VKVP_TIER_COLD = 1 } vkvp_tier;

/* Wire strings: "cold" (spill to the cold tier first), "drop". */
typedef enum vkvp_evict_to { VKVP_EVICT_COLD = 0, VKVP_EVICT_DROP = 1 } vkvp_evict_to;

/* A byte string: `len` bytes at `ptr` (ptr may be NULL when len is 0). */
typedef struct vkvp_str {
    const char *ptr;
    uint32_t len;
} vkvp_str;

/* --- request bodies -------------------------------------------------------- */
typedef struct vkvp_hello_req {
    vkvp_str ns;   /* namespace, <= 256 bytes; empty only when admin */
    uint64_t pid;  /* 1 .. INT32_MAX */
    bool has_name; /* name present on the wire */
    vkvp_str name; /* <= 64 bytes (e.g. "worker-3") */
    bool admin;    /* default false */
} vkvp_hello_req;

/* LOOKUP, FETCH. */
typedef struct vkvp_keys_req {
    uint64_t session;
    const vkv_key *keys; /* nkeys keys, 0 .. VKVP_MAX_KEYS, prompt order */
    uint32_t nkeys;
} vkvp_keys_req;

/* DELETE: the first three members match vkvp_keys_req. */
typedef struct vkvp_delete_req {
    uint64_t session;
    const vkv_key *keys; /* nkeys keys, 0 .. VKVP_MAX_KEYS */
    uint32_t nkeys;
    bool has_ns; /* admin sessions: delete in this namespace */
    vkvp_str ns; /* <= 256 bytes */
} vkvp_delete_req;

typedef struct vkvp_alloc_req {
    uint64_t session;
    vkv_key key;
    uint64_t size; /* 1 .. VKVP_MAX_ALLOC */
} vkvp_alloc_req;

/* COMMIT, ABORT. */
typedef struct vkvp_lease_req {
    uint64_t session;
    uint64_t lease;
} vkvp_lease_req;

typedef struct vkvp_release_req {
    uint64_t session;
    const uint64_t *leases; /* nleases, 1 .. VKVP_MAX_LEASES */
    uint32_t nleases;
} vkvp_release_req;

typedef struct vkvp_evict_req {
    uint64_t session;
    bool has_keys;       /* exactly one of has_keys / all */
    const vkv_key *keys; /* when has_keys: 0 .. VKVP_MAX_KEYS */
    uint32_t nkeys;
    bool all;         /* default false */
    vkvp_evict_to to; /* default VKVP_EVICT_COLD */
    bool has_ns;      /* admin sessions: evict in this namespace */
    vkvp_str ns;      /* <= 256 bytes */
} vkvp_evict_req;

/* FLUSH. */
typedef struct vkvp_session_req {
    uint64_t session;
} vkvp_session_req;

/* STATS, PING: the session is optional. */
typedef struct vkvp_opt_session_req {
    bool has_session;
    uint64_t session;
} vkvp_opt_session_req;

typedef struct vkvp_list_req {
    uint64_t session;
    uint64_t cursor; /* default 0 (start) */
    uint64_t limit;  /* 1 .. VKVP_MAX_LIST, default VKVP_LIST_DEFAULT */
    bool has_ns;     /* filter by namespace (admin sessions list all) */
    vkvp_str ns;     /* <= 256 bytes */
} vkvp_list_req;

typedef struct vkvp_info_req {
    uint64_t session;
    vkv_key key;
    bool has_ns; /* look in this namespace instead of the session's */
    vkvp_str ns; /* <= 256 bytes */
} vkvp_info_req;

/* VERIFY: start (or poll) the cold tier's checksum verification. */
typedef struct vkvp_verify_req {
    uint64_t session;
    bool start; /* default false: only report progress */
    bool drop;  /* default false: delete corrupt entries (with start) */
} vkvp_verify_req;

typedef struct vkvp_request {
    uint32_t version; /* VKVP_VERSION */
    vkvp_op op;       /* selects the member of u */
    uint64_t req_id;  /* fresh random 64-bit id per logical request */
    union {
        vkvp_hello_req hello;
        vkvp_keys_req lookup;
        vkvp_keys_req fetch;
        vkvp_alloc_req alloc;
        vkvp_lease_req commit;
        vkvp_lease_req abort;
        vkvp_release_req release;
        vkvp_release_req renew; /* RENEW: same body as RELEASE */
        vkvp_session_req close; /* CLOSE */
        vkvp_delete_req del;    /* DELETE */
        vkvp_evict_req evict;
        vkvp_session_req flush;
        vkvp_opt_session_req stats;
        vkvp_list_req list;
        vkvp_info_req info;
        vkvp_opt_session_req ping;
        vkvp_verify_req verify;
    } u;
} vkvp_request;

/* --- reply bodies ---------------------------------------------------------- */
/* A run of pages: bytes [first_page*page_size, (first_page+npages)*page_size)
 * of slab `slab`. */
typedef struct vkvp_extent {
    uint64_t slab;       /* 0 .. UINT32_MAX */
    uint64_t first_page; /* first_page + npages must not overflow */
    uint64_t npages;     /* >= 1 */
} vkvp_extent;

/* A block's bytes = concatenation of its extents, truncated to len. */
typedef struct vkvp_block {
    uint64_t len;           /* 0 .. VKVP_MAX_ALLOC */
    const vkvp_extent *ext; /* next extents, 1 .. VKVP_MAX_EXTENTS */
    uint32_t next;
} vkvp_block;

typedef struct vkvp_slab {
    uint64_t id;   /* 0 .. UINT32_MAX */
    uint64_t size; /* bytes */
    uint8_t handle[VKVP_HANDLE_LEN];
    uint32_t handle_len; /* 0 (host) or VKVP_HANDLE_LEN (cuda) */
} vkvp_slab;

typedef struct vkvp_hello_rep {
    uint64_t session;
    uint64_t epoch;
    vkvp_backend backend;
    uint64_t lease_ttl_ms;
    uint64_t page_size;     /* power of two, 1 .. VKVP_MAX_PAGE_SIZE */
    vkvp_str fd_path;       /* <= VKVP_MAX_PATH bytes; may be empty for cuda */
    const vkvp_slab *slabs; /* nslabs, 0 .. VKVP_MAX_SLABS */
    uint32_t nslabs;
} vkvp_hello_rep;

typedef struct vkvp_lookup_rep {
    uint64_t hits; /* longest cached prefix, 0 .. VKVP_MAX_KEYS */
    uint64_t cold; /* of those, in the cold tier; <= hits */
} vkvp_lookup_rep;

typedef struct vkvp_fetch_rep {
    uint64_t lease;           /* pins all returned blocks */
    const vkvp_block *blocks; /* nblocks, 0 .. VKVP_MAX_KEYS */
    uint32_t nblocks;
} vkvp_fetch_rep;

typedef struct vkvp_alloc_rep {
    uint64_t lease;
    vkvp_block block; /* wire: len and ext at the top level of the body */
} vkvp_alloc_rep;

/* RELEASE {released}, FLUSH {spilled}, DELETE {deleted}, EVICT {evicted}. */
typedef struct vkvp_count_rep {
    uint64_t count;
} vkvp_count_rep;

typedef struct vkvp_counter {
    vkvp_str name; /* 1 .. VKVP_MAX_NAME bytes, unique within the map */
    uint64_t value;
} vkvp_counter;

typedef struct vkvp_stats_rep {
    const vkvp_counter *counters; /* ncounters, 0 .. VKVP_MAX_COUNTERS */
    uint32_t ncounters;
} vkvp_stats_rep;

typedef struct vkvp_entry {
    vkvp_str ns; /* <= VKVP_MAX_NS */
    vkv_key key;
    vkvp_state state;
    vkvp_tier tier;
    uint64_t size;
    uint64_t hits;
    uint64_t last_ms; /* wall clock, ms since the Unix epoch */
    uint64_t pins;
    vkvp_str shape; /* free text, <= VKVP_MAX_SHAPE, may be empty */
} vkvp_entry;

typedef struct vkvp_list_rep {
    const vkvp_entry *entries; /* nentries, 0 .. VKVP_MAX_LIST */
    uint32_t nentries;
    uint64_t next; /* cursor for the next page, 0 = end */
} vkvp_list_rep;

typedef struct vkvp_info_rep {
    vkvp_entry entry;
} vkvp_info_rep;

/* VERIFY: progress of the current or last verification run. */
typedef struct vkvp_verify_rep {
    bool running;
    uint64_t entries_done, entries_total;
    uint64_t bytes_done, bytes_total;
    uint64_t corrupt; /* records whose checksum failed */
    uint64_t dropped; /* of those, deleted (drop=true) */
} vkvp_verify_rep;

typedef struct vkvp_reply {
    uint32_t version; /* VKVP_VERSION */
    vkvp_op op;       /* NOT on the wire: the op of the request this answers;
                         selects the member of u (ignored when status != 0) */
    int32_t status;   /* 0 or a negative vkv_err code */
    uint64_t req_id;
    uint64_t epoch;
    vkvp_str msg; /* status != 0 only: <= VKVP_MAX_MSG bytes */
    union {
        vkvp_hello_rep hello;
        vkvp_lookup_rep lookup;
        vkvp_fetch_rep fetch;
        vkvp_alloc_rep alloc;
        /* COMMIT, ABORT, PING, CLOSE: empty body {} */
        vkvp_count_rep release; /* {released} */
        vkvp_count_rep renew;   /* {renewed} */
        vkvp_count_rep del;     /* {deleted} */
        vkvp_count_rep evict;   /* {evicted} */
        vkvp_count_rep flush;   /* {spilled} */
        vkvp_stats_rep stats;
        vkvp_list_rep list;
        vkvp_info_rep info;
        vkvp_verify_rep verify;
    } u;
} vkvp_reply;

/* --- helpers --------------------------------------------------------------- */

/* Zeroes *req and sets version, op, req_id and the defaults of optional
 * fields (LIST limit = VKVP_LIST_DEFAULT, EVICT to = VKVP_EVICT_COLD). */
void vkvp_request_init(vkvp_request *req, vkvp_op op, uint64_t req_id);

/* Zeroes *rep and sets version, op, status 0, req_id and epoch. */
void vkvp_reply_init(vkvp_reply *rep, vkvp_op op, uint64_t req_id, uint64_t epoch);

/* Returns a vkvp_str viewing the NUL-terminated `s` (NULL -> empty). The
 * result points into `s`; it is valid as long as `s` is. */
vkvp_str vkvp_cstr(const char *s);

/* Static wire/display names ("HELLO", "host", "ready", "hot", "drop"); an
 * unknown value yields "?". Never NULL; do not free. */
const char *vkvp_op_name(int op);
const char *vkvp_backend_name(int backend);
const char *vkvp_state_name(int state);
const char *vkvp_tier_name(int tier);
const char *vkvp_evict_to_name(int to);

/* --- encoding -------------------------------------------------------------- */
/* The encoders check every field against the limits above (so they never
 * produce a frame the decoder would reject) and return:
 *   0 and *frame = a malloc'ed buffer of *len bytes that the caller free()s;
 *   VKV_EINVAL   a field is out of range (nothing allocated);
 *   VKV_ETOOBIG  the frame would exceed VKVP_MAX_FRAME;
 *   VKV_ENOMEM.
 * On error *frame is set to NULL and *len to 0. */

/* Encodes request `req` (req->op selects the body). */
int vkvp_encode_request(const vkvp_request *req, void **frame, size_t *len);

/* Encodes reply `rep`: status 0 -> the body of rep->op; status < 0 -> the
 * body {"msg": rep->msg} (msg longer than VKVP_MAX_MSG -> VKV_EINVAL). */
int vkvp_encode_reply(const vkvp_reply *rep, void **frame, size_t *len);

/* Encodes an error reply [1, status, req_id, epoch, {"msg": msg}]. `status`
 * must be negative (else VKV_EINVAL); `msg` (NUL-terminated, NULL = "") is
 * truncated to VKVP_MAX_MSG bytes rather than refused, so the daemon can
 * always answer. */
int vkvp_encode_error(uint64_t req_id, uint64_t epoch, int status, const char *msg, void **frame,
                      size_t *len);

/* --- decoding of untrusted frames ------------------------------------------ */
/* The decoders never trust the frame: size cap, a raw pre-pass over the bytes
 * (every container count and str/bin length bounded by the bytes that remain,
 * depth <= VKVP_MAX_DEPTH, no ext types, no reserved byte 0xc1, exactly one
 * value and nothing after it) before msgpack-c sees it, then type and range
 * checks on every field, known keys only, required keys present, no
 * duplicates. They return:
 *   0 and *out = a heap message (free with the matching free function);
 *   VKV_ETOOBIG  frame > VKVP_MAX_FRAME, or a string / list longer than its
 *                limit;
 *   VKV_EPROTO   anything else that is malformed;
 *   VKV_ENOMEM;
 * On error *out is NULL and, when why != NULL && why_len > 0, a short
 * NUL-terminated human-readable reason (e.g. "body.keys[3]: bin of 31 bytes,
 * expected 32") is written to why (truncated to why_len). The frame buffer is
 * only read during the call. */

/* Decodes a request frame. */
int vkvp_decode_request(const void *frame, size_t len, vkvp_request **out, char *why,
                        size_t why_len);

/* Frees a request returned by vkvp_decode_request (NULL is fine). Every
 * pointer obtained from it becomes invalid. */
void vkvp_request_free(vkvp_request *req);

/* Decodes a reply frame that answers a request of op `op` (the reply does not
 * carry the op; the caller knows what it sent). (*out)->op is set to `op`.
 * An unknown `op` -> VKV_EINVAL. */
int vkvp_decode_reply(const void *frame, size_t len, vkvp_op op, vkvp_reply **out, char *why,
                      size_t why_len);

/* Frees a reply returned by vkvp_decode_reply (NULL is fine). */
void vkvp_reply_free(vkvp_reply *rep);

/* Best effort: the req_id of a frame that may be malformed, so the daemon can
 * address its error reply. Reads [version, op/status, req_id, ...] from the
 * front of the frame without decoding the rest; returns 0 when the frame is
 * too damaged to tell. Never reads past frame + len. */
uint64_t vkvp_peek_req_id(const void *frame, size_t len);

/* --- rendering ------------------------------------------------------------ */
/* Render a message as one line of JSON (proto_json.c, library vkv_proto_json:
 * tests, fuzzers, vkvp_dump; vkvd does not link it):
 *   {"version":1,"op":"LOOKUP","req_id":7,"body":{...}}
 *   {"version":1,"op":"LOOKUP","status":0,"req_id":7,"epoch":3,"body":{...}}
 * Body fields appear in table order with wire names; optional fields whose
 * presence flag is false are omitted; keys and handles are lower-case hex
 * strings; strings escape '"', '\\' and every byte outside 0x20..0x7e as
 * \u00XX (bytes, not UTF-8); enums as their wire strings; extents as
 * [slab,first_page,npages]. An error reply's body is {"msg":...}.
 * Returns 0 and *out = a malloc'ed NUL-terminated string the caller free()s;
 * VKV_EINVAL for an unknown op; VKV_ENOMEM. */
int vkvp_request_to_json(const vkvp_request *req, char **out);
int vkvp_reply_to_json(const vkvp_reply *rep, char **out);

#ifdef __cplusplus
}
#endif
#endif /* VKV_PROTO_H */
