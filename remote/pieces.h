/*
 * remote/pieces.h - how one vkv block is laid out in Redis, and the write
 * and read procedures over a slot router (docs/REMOTE.md, "Keys").
 *
 * Keys (every key of one block shares the hash tag {<key hex>}, so they live
 * in one slot and travel in one pipeline):
 *
 *     <prefix><ns>/{<64 hex digits of the key>}/m             the manifest
 *     <prefix><ns>/{<64 hex digits of the key>}/<nonce>/<i>   piece i
 *
 * <ns> is the namespace with every byte outside 0x21..0x7e and each of
 * '%', '/', '{', '}' written as %XX, so ACL key patterns can select a
 * tenant's namespaces and no namespace can forge a hash tag. <nonce> (16 hex
 * digits, random per publish) keeps two nodes that publish the same key at
 * once from mixing their pieces: a manifest names only its own.
 *
 * Manifest (little-endian; written LAST with SET NX, so a reader that finds
 * one finds every piece it names, unless Redis evicted or expired a piece,
 * which reads as a miss):
 *
 *     0   "VKVRMAN1"            8 bytes
 *     8   u32 version (1)       12  u32 header bytes (104)
 *     16  u64 block bytes       24  u32 piece size      28  u32 pieces
 *     32  u64 XXH3-64 of the whole block
 *     40  u64 nonce             48  u64 created (wall ms)
 *     56  16 bytes identity (vkv_block_ident of (ns, key))
 *     72  32 bytes key
 *     104 u64 XXH3-64 of each piece, `pieces` of them
 *     ... u64 XXH3-64 of every manifest byte before it
 *
 * A reader verifies the manifest's own hash, that it names (ns, key) (key
 * bytes and identity), each piece's size and hash as it arrives, the whole
 * block's hash, then the block itself: vkv_block_check of its header with
 * total_size equal to the manifest's size, its payload XXH3 and its
 * identity. Not thread-safe beyond the router's rules (one caller per
 * router).
 */
#ifndef VKV_REMOTE_PIECES_H
#define VKV_REMOTE_PIECES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "remote/cluster.h"
#include "vkv/codec.h"
#include "vkv/key.h"

#define VKVR_MAN_MAGIC   "VKVRMAN1"
#define VKVR_MAN_VERSION 1u
#define VKVR_MAN_HDR     104u
#define VKVR_PIECES_MAX  65536u
/* The largest manifest (VKVR_PIECES_MAX pieces): reads of a manifest stop
 * one byte past it (GETRANGE), so an oversized value is refused unread. */
#define VKVR_MAN_MAX     (VKVR_MAN_HDR + 8u * VKVR_PIECES_MAX + 8u)
#define VKVR_KEYNAME_MAX (64 + 3 * 255 + 100)

/* A decoded, checked manifest. `piece_xxh3` points into storage the caller
 * owns (vkvr_manifest_parse's input or vkvr_manifest_build's output). */
typedef struct vkvr_manifest {
    uint64_t size;
    uint32_t piece_size;
    uint32_t pieces;
    uint64_t block_xxh3;
    uint64_t nonce;
    uint64_t created_ms;
    uint8_t ident[VKV_IDENT_LEN];
    vkv_key key;
    const uint8_t *piece_xxh3; /* pieces x 8 bytes LE */
} vkvr_manifest;

/* Writes the manifest key of (prefix, ns, key) into out (NUL-terminated).
 * Returns its length, or VKV_EINVAL when it does not fit `cap`. */
int vkvr_name_manifest(char *out, size_t cap, const char *prefix, const char *ns,
                       const vkv_key *key);

/* Writes the key of piece i of publish `nonce`. Returns its length or
 * VKV_EINVAL. */
int vkvr_name_piece(char *out, size_t cap, const char *prefix, const char *ns, const vkv_key *key,
                    uint64_t nonce, uint32_t i);

/* Encodes the manifest of block[0..size) cut in piece_size pieces under
 * (ns, key) with `nonce` into a malloc'ed buffer (*out, *outlen; caller
 * frees). Hashes every piece. Returns 0, VKV_EINVAL, VKV_ENOMEM. */
int vkvr_manifest_build(const void *block, uint64_t size, uint32_t piece_size, const char *ns,
                        const vkv_key *key, uint64_t nonce, void **out, size_t *outlen);

/* Decodes and checks buf[0..len) as the manifest of (ns, key): VKV_OK,
 * VKV_ECORRUPT (not a manifest: magic, version, length, own hash, sizes),
 * VKV_EIDENT (a manifest of another key or namespace), VKV_ETOOBIG (block
 * over max_block). *m points into buf. */
int vkvr_manifest_parse(const void *buf, size_t len, const char *ns, const vkv_key *key,
                        uint64_t max_block, vkvr_manifest *m);

/* What one write or read did, for the caller's counters. */
typedef struct vkvr_io_report {
    int oom;      /* a write was refused by maxmemory */
    int corrupt;  /* a checksum failed */
    int foreign;  /* a value was not this key's manifest or block */
    int dangling; /* a piece was missing: the manifest was deleted */
} vkvr_io_report;

/* Publishes block[0..size) (already checked by the caller) as (ns, key):
 * EXISTS on the manifest (VKV_EEXIST: skip), the pieces in one pipeline with
 * PX ttl_ms + 60 s (0: no expiry), then the manifest with SET NX PX ttl_ms.
 * On failure or a lost NX race the pieces written are deleted (best
 * effort). Returns 0, VKV_EEXIST, VKV_ENOSPC (OOM), VKV_EPERM (NOPERM/
 * NOAUTH), VKV_EIO, VKV_ETIMEDOUT, VKV_ENOMEM. */
int vkvr_block_write(vkvr_cluster *c, const char *prefix, const char *ns, const vkv_key *key,
                     const void *block, uint64_t size, uint32_t piece_size, uint64_t ttl_ms,
                     vkvr_io_report *rep);

/* Reads the manifest of (ns, key) into *m, with its storage in *mbuf
 * (malloc'ed, caller frees on 0). Returns 0, VKV_ENOTFOUND and the errors of
 * vkvr_manifest_parse and of the router (VKV_ECORRUPT also for a value of
 * the wrong Redis type). */
int vkvr_manifest_read(vkvr_cluster *c, const char *prefix, const char *ns, const vkv_key *key,
                       uint64_t max_block, vkvr_manifest *m, void **mbuf, vkvr_io_report *rep);

/* Reads the block of manifest *m into dst[0..ndst) (total room must be >=
 * m->size; VKV_ETRUNC otherwise) and verifies it (pieces, whole block,
 * vkv_block_check + payload hash + identity). Returns 0, VKV_ENOTFOUND (a
 * piece is gone: the manifest is then deleted, rep->dangling), VKV_ECHECKSUM, VKV_ECORRUPT,
 * VKV_EIDENT, VKV_ETRUNC, and router errors. On error dst holds garbage. */
int vkvr_block_read(vkvr_cluster *c, const char *prefix, const char *ns, const vkv_key *key,
                    const vkvr_manifest *m, const struct iovec *dst, int ndst, vkvr_io_report *rep);

/* Maps a Redis error reply text to a VKV_E* code (OOM -> VKV_ENOSPC,
 * NOAUTH/NOPERM/WRONGPASS -> VKV_EPERM, WRONGTYPE -> VKV_ECORRUPT, else
 * VKV_EIO). */
int vkvr_redis_error(const char *msg);

#endif /* VKV_REMOTE_PIECES_H */
