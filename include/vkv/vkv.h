/*
 * vkv/vkv.h - libvkv, the client library inference workers link.
 *
 * A worker connects to the local vkvd, asks which prefix of a prompt's chunk
 * keys is cached, fetches (pins) the cached blocks and decodes them straight
 * from the daemon's memory into its own KV cache, and puts the blocks it
 * computed itself. The codec (vkv/codec.h) runs here, in the worker.
 *
 * Conventions
 *  - Every int function returns VKV_OK (0) or a negative vkv_err code
 *    (vkv/error.h); vkv_strerror() describes it.
 *  - A vkv_client is an opaque handle; one handle may be shared by threads
 *    (calls are serialized inside), but one handle per thread scales better.
 *  - Every call has a timeout (vkv_options.timeout_ms, default 15 s: longer
 *    than the daemon's 10 s wait for cold restores); on expiry it returns
 *    VKV_ETIMEDOUT and the request may or may not have been applied. A
 *    retried call is a new request: a retried put_begin may answer
 *    VKV_EBUSY until the first reservation's lease expires.
 *  - fork(): a child must not use a client handle of its parent, and (a
 *    nanomsg limitation) a child may only connect its own clients if the
 *    parent had no client open at the time of the fork; fork first, or exec.
 *  - If the daemon restarted (its epoch changed), the library reconnects and
 *    returns VKV_ESTALE once; if the daemon ended the session (reaped), it
 *    says HELLO again and returns VKV_ESESSION once. Either way, look up and
 *    fetch again. Views and put buffers obtained before stay mapped to the
 *    memory they were given until released (they never alias the new
 *    daemon's blocks); their leases are gone, so release/commit report it.
 *  - Leases: a fetch or put lease lasts the daemon's lease TTL (HELLO
 *    reports it; renew with vkv_fetch_renew / vkv_put_renew). When a lease
 *    expires the daemon does NOT reuse its memory while this session lives:
 *    a late reader still sees the block it fetched, a late writer's bytes
 *    never reach another key (the commit fails with VKV_ELEASE). The memory
 *    is freed when the handle is released or the session ends.
 *  - Identity: every block libvkv commits is bound to (namespace, key) in
 *    its header; vkv_fetch_decode[_paged] refuse a block bound to anything
 *    else (VKV_EIDENT) and a block whose geometry differs from the
 *    destination (VKV_EGEOMETRY), before writing a byte.
 *  - The library talks only to a daemon of the same user: the runtime dir
 *    must be owned by the caller's uid with mode 0700, the fd channel's peer
 *    must be that uid (or root) and lie in that dir; else VKV_EPERM.
 */
#ifndef VKV_VKV_H
#define VKV_VKV_H

#include "vkv/api.h"

#include <stddef.h>
#include <stdint.h>

#include "vkv/codec.h"
#include "vkv/error.h"
#include "vkv/key.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VKV_VERSION_MAJOR 0
#define VKV_VERSION_MINOR 1

typedef struct vkv_client vkv_client;

/* Connection options. Zero-initialize, then set what you need. */
typedef struct vkv_options {
    const char *rundir; /* daemon runtime dir; NULL = $VKV_RUNDIR or the
                         * daemon's default ($XDG_RUNTIME_DIR/vkv or
                         * /tmp/vkv-$UID) */
    const char *ns;     /* namespace: model fingerprint (model id,
                         * revision, TP rank, dtype). The codec spec is
                         * appended by the library. Required unless admin. */
    const char *codec;  /* codec spec string; NULL = the default */
    const char *name;   /* client name for logs (optional) */
    int timeout_ms;     /* per call; 0 = 5000 */
    int admin;          /* nonzero: an inspection session (vkvctl) that can
                         * list/inspect/evict across namespaces but not
                         * put or fetch */
    int ns_is_full;     /* nonzero: `ns` already ends in "#<codec spec>"
                         * (as vkvctl ls prints it); the library parses the
                         * spec from it instead of appending one, and
                         * `codec` must be NULL */
} vkv_options;

/* Connects and says HELLO: opens a session, maps the daemon's slabs once.
 * `opts` is only read during the call. On success *out is a handle the caller
 * owns until vkv_close(). Errors: VKV_ECONN (no daemon), VKV_ETIMEDOUT,
 * VKV_EINVAL, VKV_ESPEC (bad codec), VKV_EPERM, VKV_ENOMEM, VKV_ESYS. */
VKV_API int vkv_connect(const vkv_options *opts, vkv_client **out);

/* Ends the session (CLOSE: every lease of the handle is released at once),
 * unmaps everything and frees `c`. Views and put buffers obtained from it
 * become invalid, and fetch/put handles not yet released must not be used.
 * NULL is a no-op. */
VKV_API void vkv_close(vkv_client *c);

/* The codec spec this client encodes with (valid until vkv_close). */
VKV_API const vkv_codec_spec *vkv_client_codec(const vkv_client *c);

/* The daemon's epoch as seen at the last reply. */
VKV_API uint64_t vkv_client_epoch(const vkv_client *c);

/* Length of the longest prefix of keys[0..n) that is cached (hot or cold)
 * in *hits; *cold (may be NULL) gets how many of them are in the cold tier.
 * No side effects in the daemon: safe to call speculatively. Answered
 * in-process from the daemon's shared-memory lookup index when it can
 * (docs/PROTOCOL.md 8a: advisory, as always, FETCH confirms), else by a
 * round trip; VKV_LOOKUP_SHM=0 in the environment at vkv_connect makes
 * every lookup a round trip. Thread-safe. */
VKV_API int vkv_lookup(vkv_client *c, const vkv_key *keys, size_t n, size_t *hits, size_t *cold);

/* A read-only view of one cached block in the daemon's memory. */
typedef struct vkv_view {
    const void *data; /* the block bytes (host backend: mapped shared memory;
                       * cuda backend: a device pointer) */
    size_t size;
} vkv_view;

/* A set of pinned blocks (one FETCH). Opaque. */
typedef struct vkv_fetch vkv_fetch;

/* Pins the longest cached prefix of keys[0..n): cold blocks are restored
 * into memory first (the call then takes longer). On success *out is a
 * handle owning the pins, released with vkv_fetch_release(); it may hold 0
 * blocks. Errors: as vkv_lookup plus VKV_ENOSPC. */
VKV_API int vkv_fetch_begin(vkv_client *c, const vkv_key *keys, size_t n, vkv_fetch **out);

/* Number of blocks pinned (the cached prefix length). */
VKV_API size_t vkv_fetch_count(const vkv_fetch *f);

/* View of block i (< vkv_fetch_count). The memory stays mapped and holds
 * the block committed under keys[i] until vkv_fetch_release(f) (even past
 * the lease TTL or a daemon restart; see the conventions above). Prefer
 * vkv_fetch_decode[_paged], which check the block's identity. */
VKV_API vkv_view vkv_fetch_view(const vkv_fetch *f, size_t i);

/* Copies into out the identity block i must carry: that of (this client's
 * namespace, keys[i]); pass it as vkv_kv_dst.ident / vkv_paged_dst.ident to
 * any decoder (the CUDA ones included). Errors: VKV_EINVAL. */
VKV_API int vkv_fetch_ident(const vkv_fetch *f, size_t i, uint8_t out[VKV_IDENT_LEN]);

/* Decodes block i into `dst` (host memory; dst->ident is ignored and
 * replaced by block i's expected identity) as vkv_decode / vkv_decode_paged
 * do: a block of another key (VKV_EIDENT) or geometry (VKV_EGEOMETRY) is
 * refused and nothing is written. `dst` is read during the call only.
 * Errors: those of vkv_decode, VKV_ENOTSUP on the cuda backend (use
 * vkv_cuda_decode with vkv_fetch_ident). */
VKV_API int vkv_fetch_decode(const vkv_fetch *f, size_t i, unsigned flags, const vkv_kv_dst *dst);
VKV_API int vkv_fetch_decode_paged(const vkv_fetch *f, size_t i, unsigned flags,
                                   const vkv_paged_dst *dst);

/* Partial attention of decode queries over layer a->layer of block i, on its
 * 1-bit codes in the daemon's memory (vkv/attend.h; host backend): as
 * vkv_attend with a->ident replaced by block i's expected identity, so a
 * block of another key is refused (VKV_EIDENT). `a` is read during the call
 * only. Errors: those of vkv_attend, VKV_ENOTSUP on the cuda backend (use
 * vkv_cuda_attend with vkv_fetch_ident). */
struct vkv_attend_args;
VKV_API int vkv_fetch_attend(const vkv_fetch *f, size_t i, unsigned flags,
                             const struct vkv_attend_args *a);

/* Extends the fetch's lease by the daemon's lease TTL. Errors: VKV_ELEASE
 * (it already expired: the views still hold their blocks, but release soon),
 * VKV_ESTALE (obtained before a daemon restart), call errors. */
VKV_API int vkv_fetch_renew(vkv_client *c, vkv_fetch *f);

/* Unpins and frees `f` (also unmaps views). Returns VKV_ELEASE if the lease
 * had expired (the handle is freed all the same). NULL is a no-op. */
VKV_API int vkv_fetch_release(vkv_client *c, vkv_fetch *f);

/* A region reserved for writing one block. Opaque. */
typedef struct vkv_put vkv_put;

/* Reserves `size` bytes for key. On success *out owns the reservation and
 * vkv_put_data() is writable memory of `size` bytes. Errors: VKV_EEXIST (the
 * key is cached already: nothing to do), VKV_EBUSY (another worker is
 * writing it right now: wait, then look it up), VKV_ENOSPC. */
VKV_API int vkv_put_begin(vkv_client *c, const vkv_key *key, size_t size, vkv_put **out);

/* The writable memory of a reservation (valid until commit/abort). */
VKV_API void *vkv_put_data(vkv_put *p);
VKV_API size_t vkv_put_size(const vkv_put *p);

/* Extends the reservation's lease. Errors as vkv_fetch_renew. */
VKV_API int vkv_put_renew(vkv_client *c, vkv_put *p);

/* Binds the written block to (namespace, key) (vkv_block_bind), publishes
 * it (the daemon checks its header and identity) and frees `p` in every
 * case. Errors: VKV_ECORRUPT/VKV_EMAGIC/... (bad block, the reservation is
 * aborted), VKV_ELEASE (it expired: the block was not published, and no
 * byte written after the expiry reached another key). */
VKV_API int vkv_put_commit(vkv_client *c, vkv_put *p);

/* Drops the reservation unpublished and frees `p`. */
VKV_API int vkv_put_abort(vkv_client *c, vkv_put *p);

/* Convenience: encodes one chunk with the client's codec (on the CPU; src
 * is host memory) straight into a fresh reservation (cuda backend: through a
 * host copy) and commits it. Returns VKV_OK also when the key already
 * existed (VKV_EEXIST is folded into success; *stored (may be NULL) tells
 * 1 = stored, 0 = someone else had it or is writing it). */
VKV_API int vkv_put_chunk(vkv_client *c, const vkv_key *key, const vkv_shape *shape,
                          const vkv_kv_src *src, int *stored);

/* Deletes keys[0..n) of this namespace; *deleted (may be NULL) counts them. */
VKV_API int vkv_delete(vkv_client *c, const vkv_key *keys, size_t n, size_t *deleted);

/* One named counter of STATS. */
typedef struct vkv_stat {
    char name[64];
    uint64_t value;
} vkv_stat;

/* Fills out[0..cap) with the daemon's counters; *n gets how many exist
 * (may exceed cap). */
VKV_API int vkv_stats(vkv_client *c, vkv_stat *out, size_t cap, size_t *n);

/* Looks one counter up by name in a vkv_stats() result; 0 if absent. */
VKV_API uint64_t vkv_stat_get(const vkv_stat *stats, size_t n, const char *name);

/* Round trip to the daemon (keeps the session alive). */
VKV_API int vkv_ping(vkv_client *c);

/* ---- chained prefix keys (for callers without vLLM's block hashes) -------- */

/* An image that overlaps a chunk: its content hash (e.g. SHA-256 of the
 * pixels or of the file) and where its tokens sit in the chunk. */
typedef struct vkv_image_ref {
    uint8_t hash[32];
    uint32_t offset; /* first token of the image inside this chunk */
    uint32_t length; /* tokens of the image inside this chunk */
} vkv_image_ref;

/* Derives the key of one chunk: SHA-256 over the exact byte string given in
 * docs/KEYS.md ("vkv-chain-v1", parent key (32 zero bytes for the first
 * chunk), token count and ids, image count and refs, all little-endian).
 * Reads its inputs only during the call. Errors: VKV_EINVAL. */
VKV_API int vkv_key_chain(const vkv_key *parent, const uint32_t *tokens, size_t ntokens,
                          const vkv_image_ref *images, size_t nimages, vkv_key *out);

/* Formats a key as 64 lowercase hex chars + NUL into hex[65]. */
VKV_API void vkv_key_hex(const vkv_key *key, char hex[65]);

/* Parses 64 hex chars into *key. Returns VKV_OK or VKV_EINVAL. */
VKV_API int vkv_key_parse(const char *hex, vkv_key *key);

#ifdef __cplusplus
}
#endif
#endif /* VKV_VKV_H */
