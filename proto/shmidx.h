/*
 * proto/shmidx.h - the lookup index segment: a read-only shared-memory table
 * that vkvd publishes so that libvkv answers LOOKUP in-process, without a
 * round trip (docs/ARCHITECTURE.md decision 27, docs/PROTOCOL.md section 8a).
 *
 * This header defines the segment's layout, shared by the writer (vkvd,
 * store/shmidx_writer.h) and the reader below (libvkv). The segment is a
 * sealed memfd passed once per session over the fd side channel; the writer
 * maps it read-write, every reader PROT_READ.
 *
 * Layout (all integers little-endian, as the host; offsets in bytes):
 *
 *   0     header (struct vkvp_shmidx_hdr, 256 bytes)
 *   256   namespace table: ns_max entries of 264 bytes
 *         (u32 len, u32 reserved, len bytes of the namespace, zero padded)
 *   ...   slot table (slots_off, 64-byte aligned): nslots slots of 64 bytes
 *
 * One table holds every namespace: a slot is keyed by (namespace index,
 * 32-byte key), the full key, so a hit is never a hash collision. The
 * namespace index is the position of the namespace in the namespace table
 * (the writer appends a namespace when it publishes its first entry; entries
 * of the table never change once `nns` covers them).
 *
 * Slot (8 words of 64 bits, each read with relaxed atomics):
 *   w[0] seq   per-slot sequence: odd while the writer changes the slot
 *   w[1] meta  bits 0-7 kind (EMPTY / LIVE / TOMB), bits 8-15 state
 *              (READY / COLD / RESTORING), bits 32-63 namespace index
 *   w[2] gen   the writer's change counter when the slot was last written
 *              (grows with every published change: a re-created entry has a
 *              larger generation than the one it replaces)
 *   w[3..6]    the key (32 bytes)
 *   w[7]       reserved (0)
 *
 * Open addressing, linear probing from XXH3_64(key, seed + ns index) &
 * (nslots - 1). Removed entries leave tombstones, so an entry never moves
 * while it is live and a reader never misses a stable entry because of an
 * unrelated removal; when tombstones pile up the writer rebuilds the table
 * in place under the header's table_seq (odd while rebuilding).
 *
 * Memory ordering (per-slot seqlock, Boehm's recipe): the writer stores
 * seq+1 (relaxed), a release fence, the data words (relaxed), then seq+2
 * (release). A reader loads seq (acquire), the data words (relaxed), an
 * acquire fence, seq again (relaxed), and uses the data only if both seq
 * loads are equal and even. Readers never write, never block the writer,
 * and give up after a bounded number of retries (the caller then asks the
 * daemon).
 */
#ifndef VKV_PROTO_SHMIDX_H
#define VKV_PROTO_SHMIDX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vkv/key.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VKVP_SHMIDX_MAGIC     0x3158444958564b56ull /* "VKVXIDX1" little-endian */
#define VKVP_SHMIDX_VERSION   1u
#define VKVP_SHMIDX_HDR_SIZE  256u
#define VKVP_SHMIDX_SLOT_SIZE 64u
#define VKVP_SHMIDX_NS_ENTRY  264u /* u32 len + u32 reserved + 256 bytes */
#define VKVP_SHMIDX_NS_LEN    255u /* longest namespace (VKVS_NS_MAX) */

/* Slot kinds (meta bits 0-7). */
enum { VKVP_SHMIDX_EMPTY = 0, VKVP_SHMIDX_LIVE = 1, VKVP_SHMIDX_TOMB = 2 };

/* Published states (meta bits 8-15): the entry's state as LOOKUP sees it.
 * Same numbers as the store's enum vkvs_state. */
enum { VKVP_SHMIDX_READY = 2, VKVP_SHMIDX_COLD = 3, VKVP_SHMIDX_RESTORING = 4 };

/* The fd side channel (docs/PROTOCOL.md 8a): a client asks for the segment
 * by sending these 8 bytes ("VKVLIDX1", LE) right after its session id, in
 * the same write; the daemon answers after the slabs with one message
 * [VKVP_SHMIDX_FD_ID, size] carrying the segment's memfd. */
#define VKVP_SHMIDX_WANT  0x315844494c564b56ull
#define VKVP_SHMIDX_FD_ID UINT64_MAX

/* Header flags. */
#define VKVP_SHMIDX_F_OPEN   0x1u /* the writer maintains the table; readers may answer */
#define VKVP_SHMIDX_F_NSFULL 0x2u /* a namespace could not be published */
#define VKVP_SHMIDX_F_BROKEN 0x4u /* the writer lost track (e.g. out of memory): never answer */
#define VKVP_SHMIDX_F_ASKMISS                                                                      \
    0x8u /* a prefix shorter than asked is not final: the daemon has a tier                        \
          * beyond the segment (remote), so ask it for the rest */

/* The robust futex word of the writer's liveness mutex holds its thread id
 * while the writer lives; the kernel sets this bit when the writer dies. */
#define VKVP_SHMIDX_OWNER_DIED 0x40000000u
#define VKVP_SHMIDX_TID_MASK   0x3fffffffu

/* The segment header. Fields marked (const) are written once before the
 * segment is handed out; the others are atomics the writer updates. */
typedef struct vkvp_shmidx_hdr {
    uint64_t magic;               /* (const) VKVP_SHMIDX_MAGIC */
    uint32_t version;             /* (const) VKVP_SHMIDX_VERSION */
    uint32_t hdr_size;            /* (const) VKVP_SHMIDX_HDR_SIZE */
    uint64_t epoch;               /* (const) the daemon epoch this segment belongs to */
    uint64_t seed;                /* (const) hash seed */
    uint64_t seg_size;            /* (const) bytes of the whole segment */
    uint32_t nslots;              /* (const) power of two */
    uint32_t ns_max;              /* (const) entries of the namespace table */
    uint64_t ns_off;              /* (const) offset of the namespace table */
    uint64_t slots_off;           /* (const) offset of the slot table */
    uint32_t owner_tid;           /* (const) writer thread id in the liveness word; 0 = none */
    uint32_t live_off;            /* (const) offset of the 32-bit liveness word in the header */
    _Atomic uint32_t flags;       /* VKVP_SHMIDX_F_* */
    _Atomic uint32_t nns;         /* namespace table entries published */
    _Atomic uint64_t table_seq;   /* odd while the table is rebuilt */
    _Atomic uint64_t unpublished; /* live entries missing from the table (it
                                   * was full): readers must not answer while
                                   * this is nonzero */
    _Atomic uint32_t max_probe;   /* longest probe distance of any live slot */
    uint32_t reserved0;
    _Atomic uint64_t changes; /* published changes (the generation clock) */
    _Atomic uint64_t live;    /* live slots (for tools and tests) */
    _Atomic uint64_t tombs;   /* tombstone slots */
    uint8_t pad_[64];
    /* offset 192: the writer's liveness mutex (pthread_mutex_t, robust,
     * process-shared); only the writer calls pthread on it, readers load its
     * futex word at live_off */
    uint8_t live_mutex[64];
} vkvp_shmidx_hdr;

_Static_assert(sizeof(vkvp_shmidx_hdr) == VKVP_SHMIDX_HDR_SIZE, "header is 256 bytes");

/* One slot of the table (see the layout above). */
typedef struct vkvp_shmidx_slot {
    _Atomic uint64_t w[8];
} vkvp_shmidx_slot;

_Static_assert(sizeof(vkvp_shmidx_slot) == VKVP_SHMIDX_SLOT_SIZE, "slot is 64 bytes");

/* Segment size for `nslots` slots and `ns_max` namespaces. */
static inline uint64_t vkvp_shmidx_size(uint32_t nslots, uint32_t ns_max)
{
    uint64_t off = VKVP_SHMIDX_HDR_SIZE + (uint64_t)ns_max * VKVP_SHMIDX_NS_ENTRY;
    off = (off + 63) & ~(uint64_t)63;
    return off + (uint64_t)nslots * VKVP_SHMIDX_SLOT_SIZE;
}

/* Home slot hash of (namespace index, key) for a segment with `seed`. */
uint64_t vkvp_shmidx_hash(uint64_t seed, uint32_t ns_idx, const vkv_key *key);

/* ---- reader ------------------------------------------------------------- */

typedef struct vkvp_shmidx_reader vkvp_shmidx_reader;

/* Checks that `fd` is a segment a reader may map (a memfd sealed against
 * shrinking and growing, `size` bytes, a valid header of this version for
 * daemon epoch `epoch`), maps it PROT_READ and returns a reader for
 * namespace `ns` (NUL-terminated, <= 255 bytes). The reader keeps the
 * mapping, not the fd (the caller still owns and closes `fd`). *out is owned
 * by the caller until vkvp_shmidx_reader_close. Errors: VKV_EPROTO (not a
 * valid segment), VKV_ESTALE (another epoch), VKV_EINVAL, VKV_ENOMEM,
 * VKV_ESYS (mmap). */
int vkvp_shmidx_reader_open(int fd, uint64_t size, uint64_t epoch, const char *ns,
                            vkvp_shmidx_reader **out);

/* Unmaps and frees the reader. NULL is a no-op. No lookup may be running on
 * it. */
void vkvp_shmidx_reader_close(vkvp_shmidx_reader *r);

/* Answers a LOOKUP of keys[0..n) from the segment: *hits = length of the
 * longest prefix whose keys are published as READY, COLD or RESTORING, *cold
 * = how many of them are COLD or RESTORING (exactly the daemon's LOOKUP
 * rules). Lock-free and bounded; never writes to the segment. Safe from any
 * number of threads at once. Returns 0, or VKV_EBUSY when the segment
 * cannot answer now (writer gone or closed, table incomplete, rebuild in
 * progress, namespace not published while the namespace table is full, too
 * many retries; or, with VKVP_SHMIDX_F_ASKMISS, a prefix shorter than n):
 * ask the daemon instead. */
int vkvp_shmidx_lookup(vkvp_shmidx_reader *r, const vkv_key *keys, size_t n, size_t *hits,
                       size_t *cold);

/* One key's published state: VKVP_SHMIDX_READY/COLD/RESTORING, 0 when
 * absent; *gen (may be NULL) its generation. Returns 0 or VKV_EBUSY as
 * vkvp_shmidx_lookup. */
int vkvp_shmidx_get(vkvp_shmidx_reader *r, const vkv_key *key, int *state, uint64_t *gen);

/* True while the writer of the segment is alive and keeps it open. */
bool vkvp_shmidx_reader_live(const vkvp_shmidx_reader *r);

#ifdef __cplusplus
}
#endif
#endif /* VKV_PROTO_SHMIDX_H */
