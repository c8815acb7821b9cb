/*
 * client/client_internal.h - libvkv internals. The first part is shared with
 * vkvctl and the tests (one raw request/reply round trip over the client's
 * session); the second is what libvkv's own files share: the handles and
 * the calls between connection (client.c), fd channel and slab mappings
 * (slabs.c), the shared-memory LOOKUP index (lookup.c), contiguous views of
 * page runs (view.c) and the block ops (fetch.c, put.c).
 */
#ifndef VKV_CLIENT_INTERNAL_H
#define VKV_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/client_cuda.h"
#include "proto/proto.h"
#include "proto/shmidx.h"
#include "vkv/vkv.h"

/* ---- shared with vkvctl and the tests ------------------------------------ */

/* Sends `rq` (its req_id is assigned here; a session field in the body must
 * be filled by the caller with vkvc_session()) and waits for the reply.
 * On VKV_OK *rep is a decoded reply the caller frees with vkvp_reply_free.
 * A daemon error status is returned as the error code, and its message is
 * copied into why (if not NULL). */
int vkvc_call(vkv_client *c, vkvp_request *rq, vkvp_reply **rep, char *why, size_t why_len);

/* The lease id of a reservation (tests send COMMIT by hand with it). */
uint64_t vkvc_put_lease(const vkv_put *p);

/* The session id of the client's current session. */
uint64_t vkvc_session(const vkv_client *c);

/* Resolves the runtime directory the same way vkvd does (opts value,
 * $VKV_RUNDIR, $XDG_RUNTIME_DIR/vkv, /tmp/vkv-$UID) into buf. */
void vkvc_default_rundir(const char *given, char *buf, size_t cap);

/* ---- libvkv's own files only ------------------------------------------- */

#define VKVC_NS_MAX 255

/* One host slab: the memfd the fd channel passed and its two mappings. */
struct vkvc_slab_map {
    uint64_t id;
    uint64_t size;
    int fd;
    uint8_t *base; /* MAP_SHARED RW mapping of the whole slab (put buffers) */
    uint8_t *ro;   /* MAP_SHARED read-only mapping of it (fetch views): a
                    * stray write through a view faults instead of changing
                    * a READY block other workers read */
};

/* The mappings of one daemon incarnation (one HELLO). Reference-counted:
 * the client holds one reference while the set is current, every fetch and
 * put obtained through it one more, so views and put buffers handed out
 * before a daemon restart keep pointing at the memory they were given (the
 * old daemon's memfd pages stay alive while mapped) and never at the new
 * daemon's blocks. Freed (unmapped) when the last reference goes. Guarded by
 * the client's mutex. */
struct vkvc_slabset {
    struct vkvc_slabset *next; /* the client's list of live sets */
    int refs;
    struct vkvc_slab_map *slabs; /* host backend */
    uint32_t nslabs;
    vkvc_cuda_slab *cslabs; /* cuda backend */
    uint32_t ncslabs;
};

/* A lookup index reader replaced at a reconnect, freed once no lookup uses
 * readers (lookup.c). */
struct vkvc_lidx_retired {
    struct vkvc_lidx_retired *next;
    vkvp_shmidx_reader *r;
};

struct vkv_client {
    pthread_mutex_t mu;
    int nn;
    int timeout_ms;
    int admin;
    char rundir[512];
    char url[600];
    char ns[VKVC_NS_MAX + 1]; /* fingerprint + "#" + codec spec */
    char name[65];
    vkv_codec_spec spec;
    uint64_t session;
    uint64_t epoch;
    uint64_t gen; /* bumps at every reconnect; handles of older gens are dead */
    uint64_t page_size;
    int backend;               /* vkvp_backend */
    struct vkvc_slabset *set;  /* current mappings (NULL when admin/disconnected) */
    struct vkvc_slabset *sets; /* every live set, current and retired */
    uint64_t rid_next;
    int in_hello; /* hello() is running: no reconnect from inside it */
    /* LOOKUP from the daemon's lookup index segment (PROTOCOL.md 8a).
     * `lidx` is the current daemon's reader (NULL: none; swapped under mu
     * at HELLO); lookups read through it without the mutex while counted in
     * lidx_users, so a reader replaced at a reconnect is kept on
     * lidx_retired until no lookup can hold it. */
    vkvp_shmidx_reader *_Atomic lidx;
    atomic_int lidx_users;
    struct vkvc_lidx_retired *lidx_retired;
    bool lidx_off;                 /* VKV_LOOKUP_SHM=0 */
    _Atomic uint64_t last_rt_ms;   /* monotonic time of the last reply */
    _Atomic uint64_t keepalive_ms; /* a LOOKUP takes the round trip after this
                                    * much silence, keeping the session alive */
    int lidx_fd;                   /* index fd from the side channel (-1) */
    uint64_t lidx_size;
};

/* How a block spread over several page runs was made contiguous. Host: a
 * window of MAP_FIXED mappings of the slab memfd (shared, so writes land in
 * the arena). CUDA: a device buffer gathered from the runs (fetch) or
 * scattered back to them before COMMIT (put). Zeroed when the block is one
 * run and the view points straight into the slab. Freed by
 * vkvc_stitch_free. */
struct vkvc_stitch {
    void *base;
    size_t len;
    int device;     /* base is a device buffer */
    uint32_t nruns; /* device: the runs the buffer mirrors */
    void **runs;
    size_t *run_len;
};

struct vkv_fetch {
    uint64_t gen;
    uint64_t lease;
    size_t n;
    vkv_view *views;
    struct vkvc_stitch *st;          /* per view */
    uint8_t (*ident)[VKV_IDENT_LEN]; /* per view: (namespace, key) identity */
    struct vkvc_slabset *set;        /* a reference: the mappings the views point into */
    int backend;
};

struct vkv_put {
    uint64_t gen;
    uint64_t lease;
    void *data;
    size_t size;
    struct vkvc_stitch st;
    int device; /* data is device memory */
    uint8_t ident[VKV_IDENT_LEN];
    struct vkvc_slabset *set; /* a reference, as in vkv_fetch */
};

/* client.c: vkvc_call with c->mu already held by the caller. On a changed
 * epoch it reconnects and returns VKV_ESTALE; on VKV_ESESSION (the session
 * was reaped) it opens a new session and still returns VKV_ESESSION. */
int vkvc_call_locked(vkv_client *c, vkvp_request *rq, vkvp_reply **rep, char *why, size_t why_len);

/* slabs.c: maps the slabs a HELLO reply h announces (host: their memfds
 * over the fd channel; cuda: their IPC handles, the fd channel telling the
 * daemon our pid) as a new set, made current and put on c->sets. Also
 * receives the lookup index fd into c->lidx_fd when the daemon sends one.
 * Returns 0 or an error (nothing is mapped then). */
int vkvc_slabs_map(vkv_client *c, const vkvp_hello_rep *h);

/* slabs.c: drops one reference to `set` (may be NULL; caller holds c->mu);
 * the last one unmaps it and takes it off the client's list. */
void vkvc_set_unref(vkv_client *c, struct vkvc_slabset *set);

/* slabs.c: retires the current mappings: they live on while fetches or
 * puts made through them exist. Caller holds c->mu (or is the only user). */
void vkvc_slabs_retire(vkv_client *c);

/* slabs.c: unmaps every set, retired ones included (vkv_close: views and
 * put buffers still held are invalid now). */
void vkvc_slabs_free_all(vkv_client *c);

/* lookup.c: makes `r` (may be NULL) the current lookup index reader,
 * retiring the previous one until no lookup can hold it (c->mu held). */
void vkvc_lidx_swap(vkv_client *c, vkvp_shmidx_reader *r);

/* lookup.c: opens the index segment whose fd the fd channel passed
 * (c->lidx_fd, closed here) for the current epoch and namespace and makes
 * it the current reader; none (LOOKUP takes the round trip) when there was
 * no fd or the segment is refused (logged). c->mu held. */
void vkvc_lidx_open(vkv_client *c);

/* view.c: builds a contiguous view of block b from its extents into *data,
 * validating every extent against the current slabs (c->mu held). A
 * single-run block points into the slab (host mapping, read-only unless
 * for_write, or device pointer); others are stitched into *st, released
 * with vkvc_stitch_free. Returns 0, VKV_ECONN (no mappings), VKV_EPROTO (an
 * extent outside them), VKV_ENOMEM or VKV_ESYS. */
int vkvc_make_view(vkv_client *c, const vkvp_block *b, int for_write, void **data,
                   struct vkvc_stitch *st);

/* view.c: frees what a stitch holds and zeroes it. */
void vkvc_stitch_free(struct vkvc_stitch *st);

/* view.c: the identity of `key` in this client's namespace. */
void vkvc_key_ident(const vkv_client *c, const vkv_key *key, uint8_t out[VKV_IDENT_LEN]);

/* fetch.c: sends RENEW for one lease of generation gen (c->mu held).
 * Returns VKV_OK (also for lease 0), VKV_ESTALE (an older session's lease),
 * VKV_ELEASE (it had expired or is unknown) or a call error. */
int vkvc_renew_lease(vkv_client *c, uint64_t gen, uint64_t lease);

#endif
