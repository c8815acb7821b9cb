/*
 * store/shmidx_writer.h - the writer of the lookup index segment
 * (proto/shmidx.h has the layout and the reader): vkvd mirrors into it what
 * LOOKUP would answer for every entry, from the store's observe hook, so
 * libvkv can answer LOOKUP from shared memory.
 *
 * One thread owns a writer (the daemon's event loop): it must create it,
 * call every function and close it, and it must live as long as the writer
 * is open, because the writer's liveness mutex is locked by that thread
 * (readers see the daemon die through it: the kernel marks a robust mutex of
 * a dead thread). Nothing here locks; updates never wait for readers.
 */
#ifndef VKV_STORE_SHMIDX_WRITER_H
#define VKV_STORE_SHMIDX_WRITER_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/shmidx.h"
#include "vkv/key.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vkvs_shmidx vkvs_shmidx;

/* Counters of a writer (a snapshot). */
typedef struct vkvs_shmidx_stats {
    uint64_t nslots;      /* capacity of the table */
    uint64_t live;        /* entries published */
    uint64_t tombs;       /* tombstones */
    uint64_t unpublished; /* live entries the full table could not take */
    uint64_t changes;     /* published changes */
    uint64_t rebuilds;    /* in-place rebuilds (tombstones purged) */
    uint64_t full;        /* inserts refused because the table was full */
    uint64_t seg_bytes;   /* size of the segment */
} vkvs_shmidx_stats;

/* Creates a segment with at least `nslots` slots (rounded up to a power of
 * two, >= 64) and room for `ns_max` namespaces (1..65536), for daemon epoch
 * `epoch`: a memfd sealed against shrinking and growing (and against new
 * writable mappings where the kernel can), mapped read-write here. It is
 * created closed (readers ask the daemon) until vkvs_shmidx_set_open(true).
 * *out is owned by the caller until vkvs_shmidx_close. Errors: VKV_EINVAL,
 * VKV_ENOMEM, VKV_ESYS. */
int vkvs_shmidx_open(uint32_t nslots, uint32_t ns_max, uint64_t epoch, vkvs_shmidx **out);

/* The segment's fd (owned by the writer; pass it, do not close it) and size. */
int vkvs_shmidx_fd(const vkvs_shmidx *w);
uint64_t vkvs_shmidx_seg_size(const vkvs_shmidx *w);

/* Publishes that lookups now see entry (ns_id, key) of namespace `ns` as
 * `now` and saw it as `was` (VKVP_SHMIDX_READY / _COLD / _RESTORING, or 0
 * for "not seen": absent, WRITING, delete-pending). `ns` is the interned
 * namespace string of ns_id (copied when first published). This is the
 * store's observe hook (store.h); every change of the store's lookup view
 * must come through here, in order, or the mirror is wrong. */
void vkvs_shmidx_change(vkvs_shmidx *w, uint32_t ns_id, const char *ns, const vkv_key *key, int was,
                        int now);

/* Opens (readers may answer) or closes (readers ask the daemon: shutdown)
 * the segment. */
void vkvs_shmidx_set_open(vkvs_shmidx *w, bool open);

/* Sets or clears VKVP_SHMIDX_F_ASKMISS: readers then send a LOOKUP whose
 * prefix ends early to the daemon (it has a tier the segment does not
 * mirror, the remote one). */
void vkvs_shmidx_set_askmiss(vkvs_shmidx *w, bool on);

/* Fills *out. */
void vkvs_shmidx_stats_get(const vkvs_shmidx *w, vkvs_shmidx_stats *out);

/* Closes the segment for readers, releases the liveness mutex, unmaps and
 * closes the fd, frees `w`. Readers keep their own mappings (and see the
 * writer gone). Must run on the thread that opened it. NULL is a no-op. */
void vkvs_shmidx_close(vkvs_shmidx *w);

#ifdef __cplusplus
}
#endif
#endif /* VKV_STORE_SHMIDX_WRITER_H */
