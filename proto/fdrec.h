/*
 * proto/fdrec.h - the two records of the fd side channel (docs/PROTOCOL.md,
 * section 8), encoded and decoded in one place for the daemon
 * (daemon/fdchan.c) and libvkv (client/client.c).
 *
 *   client -> daemon  VKVP_FD_HELLO_LEN bytes: the session id, u64 LE
 *   daemon -> client  VKVP_FD_SLAB_LEN bytes per slab, with its memfd as
 *                     SCM_RIGHTS: [slab id u64 LE, size u64 LE]
 * and, for the lookup index (section 8a, proto/shmidx.h), 8 more client bytes
 * after the hello (VKVP_SHMIDX_WANT, LE) and one more record of the same
 * form after the slabs, with id VKVP_SHMIDX_FD_ID.
 *
 * Header-only, allocation-free; every buffer is the caller's.
 */
#ifndef VKVP_FDREC_H
#define VKVP_FDREC_H

#include <stdint.h>

#define VKVP_FD_HELLO_LEN 8
#define VKVP_FD_SLAB_LEN  16

/* Writes v as 8 little-endian bytes at p[0..8). */
static inline void vkvp_put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Reads 8 little-endian bytes at p[0..8). */
static inline uint64_t vkvp_get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Encodes the client's hello (its session id) into out. */
static inline void vkvp_fd_hello_encode(uint8_t out[VKVP_FD_HELLO_LEN], uint64_t session)
{
    vkvp_put_le64(out, session);
}

/* Returns the session id of a received hello. */
static inline uint64_t vkvp_fd_hello_decode(const uint8_t in[VKVP_FD_HELLO_LEN])
{
    return vkvp_get_le64(in);
}

/* Encodes one slab record (the fd travels beside it) into out. */
static inline void vkvp_fd_slab_encode(uint8_t out[VKVP_FD_SLAB_LEN], uint64_t id, uint64_t size)
{
    vkvp_put_le64(out, id);
    vkvp_put_le64(out + 8, size);
}

/* Decodes one slab record into *id and *size. */
static inline void vkvp_fd_slab_decode(const uint8_t in[VKVP_FD_SLAB_LEN], uint64_t *id,
                                       uint64_t *size)
{
    *id = vkvp_get_le64(in);
    *size = vkvp_get_le64(in + 8);
}

#endif /* VKVP_FDREC_H */
