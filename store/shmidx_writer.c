/*
 * store/shmidx_writer.c - writes the lookup index segment (layout and reader
 * in proto/shmidx.h). Open addressing with linear probing and tombstones;
 * every slot write follows the per-slot seqlock protocol, an in-place rebuild
 * (purging tombstones) runs under the header's table_seq.
 */
#include "store/shmidx_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/log.h"
#include "vkv/error.h"

/* The mirror's published states are the store's states. */
#include "store/store.h"
_Static_assert((int)VKVP_SHMIDX_READY == (int)VKVS_READY &&
                   (int)VKVP_SHMIDX_COLD == (int)VKVS_COLD &&
                   (int)VKVP_SHMIDX_RESTORING == (int)VKVS_RESTORING,
               "published states are the store's");
_Static_assert(sizeof(pthread_mutex_t) <= 64, "the liveness mutex fits its header field");

#define NS_UNKNOWN (-1) /* not published yet */
#define NS_NOROOM  (-2) /* the namespace table was full */

struct vkvs_shmidx {
    int fd;
    uint8_t *base; /* RW mapping */
    uint64_t size;
    vkvp_shmidx_hdr *h;
    vkvp_shmidx_slot *slots;
    uint32_t mask;
    uint32_t max_fill; /* live + tombs may not exceed this (3/4 of the slots) */
    uint64_t seed;
    pid_t owner; /* thread that locked the liveness mutex */
    bool locked;
    int32_t *nsmap; /* store ns_id -> namespace index (or NS_*) */
    uint32_t nsmap_len;
    /* writer-private copies of the counters the header publishes */
    uint64_t live, tombs, unpublished, changes;
    uint32_t nns, max_probe;
    uint32_t ns_max; /* namespace table entries (the header's, never read back) */
    uint64_t rebuilds, full;
};

/* Writes slot `s` under its seqlock: meta, gen and key words. */
static void slot_write(vkvp_shmidx_slot *s, uint64_t meta, uint64_t gen, const uint64_t k[4])
{
    uint64_t seq = atomic_load_explicit(&s->w[0], memory_order_relaxed);
    atomic_store_explicit(&s->w[0], seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&s->w[1], meta, memory_order_relaxed);
    atomic_store_explicit(&s->w[2], gen, memory_order_relaxed);
    for (int j = 0; j < 4; j++)
        atomic_store_explicit(&s->w[3 + j], k[j], memory_order_relaxed);
    atomic_store_explicit(&s->w[0], seq + 2, memory_order_release);
}

/* The slot's meta word (only the writer changes it, so relaxed is exact). */
static uint64_t slot_meta(const vkvp_shmidx_slot *s)
{
    return atomic_load_explicit(&s->w[1], memory_order_relaxed);
}

/* True if slot `s` is live and holds (ns_idx, k). */
static bool slot_is(const vkvp_shmidx_slot *s, uint32_t ns_idx, const uint64_t k[4])
{
    uint64_t m = slot_meta(s);
    if ((m & 0xff) != VKVP_SHMIDX_LIVE || (uint32_t)(m >> 32) != ns_idx)
        return false;
    for (int j = 0; j < 4; j++)
        if (atomic_load_explicit(&s->w[3 + j], memory_order_relaxed) != k[j])
            return false;
    return true;
}

/* Meta word of a live slot. */
static uint64_t live_meta(uint32_t ns_idx, int state)
{
    return (uint64_t)ns_idx << 32 | (uint64_t)(uint8_t)state << 8 | VKVP_SHMIDX_LIVE;
}

/* Publishes the writer's counters in the header (release: a reader that
 * sees a count sees the slots it counts). */
static void publish_counts(vkvs_shmidx *w)
{
    atomic_store_explicit(&w->h->live, w->live, memory_order_relaxed);
    atomic_store_explicit(&w->h->tombs, w->tombs, memory_order_relaxed);
    atomic_store_explicit(&w->h->changes, w->changes, memory_order_relaxed);
    atomic_store_explicit(&w->h->unpublished, w->unpublished, memory_order_release);
}

/* Raises the published probe bound to `d` before a slot at distance d is
 * written (a reader with the old bound may miss only that new entry). */
static void note_probe(vkvs_shmidx *w, uint32_t d)
{
    if (d > w->max_probe) {
        w->max_probe = d;
        atomic_store_explicit(&w->h->max_probe, d, memory_order_release);
    }
}

/* Places (ns_idx, k) with `state` in a free slot (empty or tombstone) on its
 * probe path; the caller checked that it is not present and that there is
 * room. */
static void place(vkvs_shmidx *w, uint32_t ns_idx, const vkv_key *key, const uint64_t k[4],
                  int state)
{
    uint32_t i = (uint32_t)vkvp_shmidx_hash(w->seed, ns_idx, key) & w->mask;
    for (uint32_t d = 0;; d++, i = (i + 1) & w->mask) {
        uint64_t kind = slot_meta(&w->slots[i]) & 0xff;
        if (kind == VKVP_SHMIDX_LIVE)
            continue;
        if (kind == VKVP_SHMIDX_TOMB)
            w->tombs--;
        note_probe(w, d);
        slot_write(&w->slots[i], live_meta(ns_idx, state), ++w->changes, k);
        w->live++;
        return;
    }
}

/* Rebuilds the table in place without tombstones, under table_seq (readers
 * retry or ask the daemon meanwhile). Returns false when out of memory (the
 * table is left as it was). */
static bool rebuild(vkvs_shmidx *w)
{
    uint32_t n = 0, nslots = w->mask + 1;
    struct ent {
        uint64_t meta, gen, k[4];
    } *e = malloc((w->live ? w->live : 1) * sizeof *e);
    if (!e)
        return false;
    for (uint32_t i = 0; i < nslots; i++) {
        vkvp_shmidx_slot *s = &w->slots[i];
        if ((slot_meta(s) & 0xff) != VKVP_SHMIDX_LIVE)
            continue;
        e[n].meta = slot_meta(s);
        e[n].gen = atomic_load_explicit(&s->w[2], memory_order_relaxed);
        for (int j = 0; j < 4; j++)
            e[n].k[j] = atomic_load_explicit(&s->w[3 + j], memory_order_relaxed);
        n++;
    }
    uint64_t t = atomic_load_explicit(&w->h->table_seq, memory_order_relaxed);
    atomic_store_explicit(&w->h->table_seq, t + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    static const uint64_t zero[4];
    for (uint32_t i = 0; i < nslots; i++)
        if ((slot_meta(&w->slots[i]) & 0xff) != VKVP_SHMIDX_EMPTY)
            slot_write(&w->slots[i], VKVP_SHMIDX_EMPTY, 0, zero);
    uint32_t maxp = 0;
    for (uint32_t j = 0; j < n; j++) {
        vkv_key key;
        memcpy(key.b, e[j].k, sizeof key.b);
        uint32_t ns_idx = (uint32_t)(e[j].meta >> 32);
        uint32_t i = (uint32_t)vkvp_shmidx_hash(w->seed, ns_idx, &key) & w->mask;
        uint32_t d = 0;
        while ((slot_meta(&w->slots[i]) & 0xff) != VKVP_SHMIDX_EMPTY) {
            i = (i + 1) & w->mask;
            d++;
        }
        if (d > maxp)
            maxp = d;
        slot_write(&w->slots[i], e[j].meta, e[j].gen, e[j].k);
    }
    free(e);
    w->tombs = 0;
    w->max_probe = maxp;
    w->rebuilds++;
    atomic_store_explicit(&w->h->max_probe, maxp, memory_order_relaxed);
    atomic_store_explicit(&w->h->tombs, 0, memory_order_relaxed);
    atomic_store_explicit(&w->h->table_seq, t + 2, memory_order_release);
    return true;
}

/* The live slot holding (ns_idx, key) (k: its words), or NULL. */
static vkvp_shmidx_slot *find_live(vkvs_shmidx *w, uint32_t ns_idx, const vkv_key *key,
                                   const uint64_t k[4])
{
    uint32_t i = (uint32_t)vkvp_shmidx_hash(w->seed, ns_idx, key) & w->mask;
    for (uint32_t d = 0; d <= w->max_probe; d++, i = (i + 1) & w->mask) {
        vkvp_shmidx_slot *s = &w->slots[i];
        if ((slot_meta(s) & 0xff) == VKVP_SHMIDX_EMPTY)
            return NULL;
        if (slot_is(s, ns_idx, k))
            return s;
    }
    return NULL;
}

/* Result of upsert. */
enum { UPS_UPDATED, UPS_INSERTED, UPS_FULL };

/* Sets (ns_idx, key) to `state`: updates the live slot holding it, or
 * inserts it when there is room (rebuilding first when tombstones take the
 * room). */
static int upsert(vkvs_shmidx *w, uint32_t ns_idx, const vkv_key *key, int state)
{
    uint64_t k[4];
    memcpy(k, key->b, sizeof k);
    vkvp_shmidx_slot *s = find_live(w, ns_idx, key, k);
    if (s) {
        slot_write(s, live_meta(ns_idx, state), ++w->changes, k);
        return UPS_UPDATED;
    }
    if (w->live + w->tombs + 1 > w->max_fill) {
        /* purge tombstones if that frees a useful amount of room */
        if (w->tombs < (uint64_t)(w->mask + 1) / 16 || !rebuild(w) ||
            w->live + w->tombs + 1 > w->max_fill) {
            w->full++;
            return UPS_FULL;
        }
    }
    place(w, ns_idx, key, k, state);
    return UPS_INSERTED;
}

/* Removes (ns_idx, key); false if it was not in the table. A freed slot
 * followed by an empty one becomes empty itself (and so do tombstones right
 * before it): no probe path can pass through it to a live entry. */
static bool removekey(vkvs_shmidx *w, uint32_t ns_idx, const vkv_key *key)
{
    static const uint64_t zero[4];
    uint64_t k[4];
    memcpy(k, key->b, sizeof k);
    vkvp_shmidx_slot *s = find_live(w, ns_idx, key, k);
    if (!s)
        return false;
    uint32_t i = (uint32_t)(s - w->slots);
    w->live--;
    ++w->changes;
    if ((slot_meta(&w->slots[(i + 1) & w->mask]) & 0xff) != VKVP_SHMIDX_EMPTY) {
        slot_write(s, VKVP_SHMIDX_TOMB, w->changes, zero);
        w->tombs++;
        return true;
    }
    slot_write(s, VKVP_SHMIDX_EMPTY, w->changes, zero);
    for (uint32_t j = (i - 1) & w->mask;
         (slot_meta(&w->slots[j]) & 0xff) == VKVP_SHMIDX_TOMB && j != i; j = (j - 1) & w->mask) {
        slot_write(&w->slots[j], VKVP_SHMIDX_EMPTY, w->changes, zero);
        w->tombs--;
    }
    return true;
}

/* The namespace index of store namespace ns_id, publishing it when
 * `publish` (its first visible entry); NS_UNKNOWN / NS_NOROOM otherwise. */
static int32_t ns_index(vkvs_shmidx *w, uint32_t ns_id, const char *ns, bool publish)
{
    if (ns_id >= w->nsmap_len) {
        if (!publish)
            return NS_UNKNOWN;
        uint32_t len = w->nsmap_len ? w->nsmap_len : 16;
        while (len <= ns_id)
            len *= 2;
        int32_t *m = realloc(w->nsmap, len * sizeof *m);
        if (!m) {
            /* this change cannot be published, so no reader may trust the
             * segment from now on: they all take the round trip */
            atomic_fetch_or_explicit(&w->h->flags, VKVP_SHMIDX_F_BROKEN, memory_order_release);
            VKV_ERROR("lookup index: out of memory for namespace '%s': segment marked broken, "
                      "lookups take the round trip",
                      ns ? ns : "");
            return NS_NOROOM;
        }
        for (uint32_t i = w->nsmap_len; i < len; i++)
            m[i] = NS_UNKNOWN;
        w->nsmap = m;
        w->nsmap_len = len;
    }
    if (w->nsmap[ns_id] != NS_UNKNOWN || !publish)
        return w->nsmap[ns_id];
    size_t len = ns ? strlen(ns) : 0;
    if (w->nns >= w->ns_max || len > VKVP_SHMIDX_NS_LEN) {
        w->nsmap[ns_id] = NS_NOROOM;
        atomic_fetch_or_explicit(&w->h->flags, VKVP_SHMIDX_F_NSFULL, memory_order_release);
        VKV_WARN("lookup index: namespace '%s' not published (table of %u full): its lookups "
                 "take the round trip",
                 ns ? ns : "", w->ns_max);
        return NS_NOROOM;
    }
    uint8_t *e = w->base + VKVP_SHMIDX_HDR_SIZE + (uint64_t)w->nns * VKVP_SHMIDX_NS_ENTRY;
    uint32_t l32 = (uint32_t)len;
    memcpy(e, &l32, sizeof l32);
    memcpy(e + 8, ns, len);
    w->nsmap[ns_id] = (int32_t)w->nns;
    w->nns++;
    atomic_store_explicit(&w->h->nns, w->nns, memory_order_release);
    return w->nsmap[ns_id];
}

void vkvs_shmidx_change(vkvs_shmidx *w, uint32_t ns_id, const char *ns, const vkv_key *key, int was,
                        int now)
{
    if (!w || was == now)
        return;
    int32_t idx = ns_index(w, ns_id, ns, now != 0);
    if (idx < 0)
        return; /* never published (no room for its namespace): its readers ask */
    if (now == 0) {
        if (!removekey(w, (uint32_t)idx, key) && was != 0 && w->unpublished > 0)
            w->unpublished--; /* it was one the full table could not take */
    } else {
        int r = upsert(w, (uint32_t)idx, key, now);
        if (r == UPS_INSERTED && was != 0 && w->unpublished > 0)
            w->unpublished--;
        else if (r == UPS_FULL && was == 0)
            w->unpublished++;
    }
    publish_counts(w);
}

void vkvs_shmidx_set_open(vkvs_shmidx *w, bool open)
{
    if (!w)
        return;
    if (open)
        atomic_fetch_or_explicit(&w->h->flags, VKVP_SHMIDX_F_OPEN, memory_order_release);
    else
        atomic_fetch_and_explicit(&w->h->flags, ~VKVP_SHMIDX_F_OPEN, memory_order_release);
}

void vkvs_shmidx_set_askmiss(vkvs_shmidx *w, bool on)
{
    if (!w)
        return;
    if (on)
        atomic_fetch_or_explicit(&w->h->flags, VKVP_SHMIDX_F_ASKMISS, memory_order_release);
    else
        atomic_fetch_and_explicit(&w->h->flags, ~VKVP_SHMIDX_F_ASKMISS, memory_order_release);
}

int vkvs_shmidx_fd(const vkvs_shmidx *w)
{
    return w->fd;
}

uint64_t vkvs_shmidx_seg_size(const vkvs_shmidx *w)
{
    return w->size;
}

void vkvs_shmidx_stats_get(const vkvs_shmidx *w, vkvs_shmidx_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!w)
        return;
    out->nslots = w->mask + 1;
    out->live = w->live;
    out->tombs = w->tombs;
    out->unpublished = w->unpublished;
    out->changes = w->changes;
    out->rebuilds = w->rebuilds;
    out->full = w->full;
    out->seg_bytes = w->size;
}

/* Initializes and locks the robust, process-shared liveness mutex in the
 * header and records the futex word's owner. Readers answer only while the
 * word names this thread: the kernel sets OWNER_DIED in it when the thread
 * (the daemon) dies. Where the C library keeps another word there, owner_tid
 * stays 0 and readers never answer. */
static void lock_liveness(vkvs_shmidx *w)
{
    pthread_mutexattr_t a;
    pthread_mutex_t *m = (pthread_mutex_t *)(void *)w->h->live_mutex;
    w->h->live_off = (uint32_t)offsetof(vkvp_shmidx_hdr, live_mutex);
    if (pthread_mutexattr_init(&a) != 0)
        return;
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    int rc = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    if (rc != 0 || pthread_mutex_lock(m) != 0)
        return;
    w->locked = true;
    w->owner = gettid();
    uint32_t word = atomic_load((_Atomic uint32_t *)(void *)w->h->live_mutex);
    if ((word & VKVP_SHMIDX_TID_MASK) == (uint32_t)w->owner)
        w->h->owner_tid = (uint32_t)w->owner;
    else
        VKV_WARN("lookup index: cannot read this C library's mutex owner; LOOKUP stays a round "
                 "trip");
}

int vkvs_shmidx_open(uint32_t nslots, uint32_t ns_max, uint64_t epoch, vkvs_shmidx **out)
{
    *out = NULL;
    if (nslots == 0 || nslots > (1u << 28) || ns_max == 0 || ns_max > 65536)
        return VKV_EINVAL;
    uint32_t n = 64;
    while (n < nslots)
        n <<= 1;
    vkvs_shmidx *w = calloc(1, sizeof *w);
    if (!w)
        return VKV_ENOMEM;
    w->size = vkvp_shmidx_size(n, ns_max);
    w->mask = n - 1;
    w->max_fill = n / 4 * 3;
    int rc = VKV_ESYS;
    w->fd = memfd_create("vkvd-lookup-index", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (w->fd < 0) {
        VKV_ERROR("lookup index: memfd_create: %s", strerror(errno));
        goto fail;
    }
    if (ftruncate(w->fd, (off_t)w->size) != 0) {
        rc = errno == ENOMEM || errno == ENOSPC ? VKV_ENOMEM : VKV_ESYS;
        goto fail_fd;
    }
    void *p = mmap(NULL, (size_t)w->size, PROT_READ | PROT_WRITE, MAP_SHARED, w->fd, 0);
    if (p == MAP_FAILED) {
        rc = VKV_ENOMEM;
        goto fail_fd;
    }
    w->base = p;
    /* Readers may map it only read-only (F_SEAL_FUTURE_WRITE, Linux 5.1+):
     * a worker can neither corrupt another worker's answers nor the state
     * this writer reads back (slot kinds). Without that seal there is no
     * segment (VKV_ENOTSUP): lookups take the round trip. */
    if (fcntl(w->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0 ||
        fcntl(w->fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE) != 0 ||
        fcntl(w->fd, F_ADD_SEALS, F_SEAL_SEAL) != 0) {
        if (errno == EINVAL)
            rc = VKV_ENOTSUP;
        VKV_ERROR("lookup index: sealing the segment read-only for readers: %s%s", strerror(errno),
                  errno == EINVAL ? " (F_SEAL_FUTURE_WRITE needs Linux 5.1+)" : "");
        goto fail_map;
    }
    if (getrandom(&w->seed, sizeof w->seed, 0) != (ssize_t)sizeof w->seed)
        w->seed = (uint64_t)(uintptr_t)w ^ epoch;
    w->h = (vkvp_shmidx_hdr *)w->base;
    w->slots = (vkvp_shmidx_slot *)(w->base + vkvp_shmidx_size(0, ns_max));
    w->h->magic = VKVP_SHMIDX_MAGIC;
    w->h->version = VKVP_SHMIDX_VERSION;
    w->h->hdr_size = VKVP_SHMIDX_HDR_SIZE;
    w->h->epoch = epoch;
    w->h->seed = w->seed;
    w->h->seg_size = w->size;
    w->h->nslots = n;
    w->h->ns_max = ns_max;
    w->ns_max = ns_max;
    w->h->ns_off = VKVP_SHMIDX_HDR_SIZE;
    w->h->slots_off = vkvp_shmidx_size(0, ns_max);
    lock_liveness(w);
    *out = w;
    return 0;
fail_map:
    munmap(w->base, (size_t)w->size);
fail_fd:
    close(w->fd);
fail:
    free(w);
    return rc;
}

void vkvs_shmidx_close(vkvs_shmidx *w)
{
    if (!w)
        return;
    vkvs_shmidx_set_open(w, false);
    if (w->locked) {
        if (gettid() != w->owner) {
            /* Our robust-list entry points into the mapping: unmapping it
             * under another thread would corrupt the C library's list. */
            VKV_WARN("lookup index closed off its owner thread: mapping kept");
            close(w->fd);
            free(w->nsmap);
            free(w);
            return;
        }
        pthread_mutex_unlock((pthread_mutex_t *)(void *)w->h->live_mutex);
    }
    munmap(w->base, (size_t)w->size);
    close(w->fd);
    free(w->nsmap);
    free(w);
}
