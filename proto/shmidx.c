/* The lookup index segment: hash and reader side; see shmidx.h. */
#include "proto/shmidx.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "vkv/error.h"

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2,
               "the segment's atomics must be lock-free (address-free across processes)");

/* A reader gives up on a slot after this many changes seen mid-read, and on
 * a whole lookup after this many table rebuilds: then the daemon answers. */
#define SLOT_SPINS   256
#define LOOKUP_TRIES 4

struct vkvp_shmidx_reader {
    const uint8_t *base; /* PROT_READ mapping of the whole segment */
    size_t size;
    const vkvp_shmidx_hdr *h;
    const vkvp_shmidx_slot *slots;
    const _Atomic uint32_t *live_word;
    uint32_t owner_tid;
    uint32_t mask;
    uint32_t ns_max;
    uint64_t seed;
    _Atomic int64_t ns_idx; /* namespace index once found, else -1 */
    uint32_t ns_len;
    char ns[VKVP_SHMIDX_NS_LEN + 1];
};

/* Tells the CPU we are spinning (x86 PAUSE), elsewhere nothing. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

uint64_t vkvp_shmidx_hash(uint64_t seed, uint32_t ns_idx, const vkv_key *key)
{
    return XXH3_64bits_withSeed(key->b, VKV_KEY_LEN,
                                seed + (uint64_t)ns_idx * 0x9e3779b97f4a7c15ull);
}

/* True if the header at `h` describes a segment of exactly `size` bytes of
 * this format for `epoch`. */
static bool header_ok(const vkvp_shmidx_hdr *h, uint64_t size, uint64_t epoch)
{
    uint64_t slots_off =
        (VKVP_SHMIDX_HDR_SIZE + (uint64_t)h->ns_max * VKVP_SHMIDX_NS_ENTRY + 63) & ~(uint64_t)63;
    return h->magic == VKVP_SHMIDX_MAGIC && h->version == VKVP_SHMIDX_VERSION &&
           h->hdr_size == VKVP_SHMIDX_HDR_SIZE && h->seg_size == size && h->nslots >= 8 &&
           (h->nslots & (h->nslots - 1)) == 0 && h->nslots <= (1u << 28) && h->ns_max >= 1 &&
           h->ns_max <= 65536 && h->ns_off == VKVP_SHMIDX_HDR_SIZE && h->slots_off == slots_off &&
           vkvp_shmidx_size(h->nslots, h->ns_max) == size &&
           h->live_off == offsetof(vkvp_shmidx_hdr, live_mutex) && h->epoch == epoch;
}

int vkvp_shmidx_reader_open(int fd, uint64_t size, uint64_t epoch, const char *ns,
                            vkvp_shmidx_reader **out)
{
    struct stat sb;
    *out = NULL;
    if (fd < 0 || ns == NULL || strlen(ns) > VKVP_SHMIDX_NS_LEN || size < VKVP_SHMIDX_HDR_SIZE)
        return VKV_EINVAL;
    /* F_GET_SEALS works on memfds only; a segment that could shrink could
     * make a reader fault (SIGBUS), one that could grow is not the size we
     * checked. */
    int seals = fcntl(fd, F_GET_SEALS);
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != size || seals < 0 ||
        (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
        return VKV_EPROTO;
    void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return VKV_ESYS;
    const vkvp_shmidx_hdr *h = p;
    int rc = VKV_EPROTO;
    if (!header_ok(h, size, epoch)) {
        if (h->magic == VKVP_SHMIDX_MAGIC && h->epoch != epoch)
            rc = VKV_ESTALE;
        munmap(p, (size_t)size);
        return rc;
    }
    vkvp_shmidx_reader *r = calloc(1, sizeof *r);
    if (!r) {
        munmap(p, (size_t)size);
        return VKV_ENOMEM;
    }
    r->base = p;
    r->size = (size_t)size;
    r->h = h;
    r->slots = (const vkvp_shmidx_slot *)(r->base + h->slots_off);
    r->live_word = (const _Atomic uint32_t *)(r->base + h->live_off);
    r->owner_tid = h->owner_tid;
    r->mask = h->nslots - 1;
    r->ns_max = h->ns_max;
    r->seed = h->seed;
    atomic_init(&r->ns_idx, -1);
    r->ns_len = (uint32_t)strlen(ns);
    memcpy(r->ns, ns, r->ns_len + 1);
    *out = r;
    return 0;
}

void vkvp_shmidx_reader_close(vkvp_shmidx_reader *r)
{
    if (!r)
        return;
    munmap((void *)r->base, r->size);
    free(r);
}

bool vkvp_shmidx_reader_live(const vkvp_shmidx_reader *r)
{
    uint32_t f = atomic_load_explicit(&r->h->flags, memory_order_acquire);
    if ((f & (VKVP_SHMIDX_F_OPEN | VKVP_SHMIDX_F_BROKEN)) != VKVP_SHMIDX_F_OPEN ||
        r->owner_tid == 0)
        return false;
    uint32_t w = atomic_load_explicit(r->live_word, memory_order_acquire);
    return (w & VKVP_SHMIDX_TID_MASK) == r->owner_tid && !(w & VKVP_SHMIDX_OWNER_DIED);
}

/* Resolves the reader's namespace: 1 with *idx set, 0 when it is not
 * published (no entry of it was ever visible: every key misses), VKV_EBUSY
 * when it may exist but could not be published (namespace table full). */
static int resolve_ns(vkvp_shmidx_reader *r, uint32_t *idx)
{
    int64_t v = atomic_load_explicit(&r->ns_idx, memory_order_relaxed);
    if (v >= 0) {
        *idx = (uint32_t)v;
        return 1;
    }
    /* entries below nns were written before nns was raised (release) and
     * never change afterwards */
    uint32_t n = atomic_load_explicit(&r->h->nns, memory_order_acquire);
    if (n > r->ns_max)
        n = r->ns_max;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = r->base + VKVP_SHMIDX_HDR_SIZE + (uint64_t)i * VKVP_SHMIDX_NS_ENTRY;
        uint32_t len;
        memcpy(&len, e, sizeof len);
        if (len == r->ns_len && memcmp(e + 8, r->ns, len) == 0) {
            atomic_store_explicit(&r->ns_idx, i, memory_order_relaxed);
            *idx = i;
            return 1;
        }
    }
    if (atomic_load_explicit(&r->h->flags, memory_order_acquire) & VKVP_SHMIDX_F_NSFULL)
        return VKV_EBUSY;
    return 0;
}

/* Looks up one key of namespace `ns_idx` probing at most `maxp + 1` slots.
 * Returns its published state (0 = absent) with *gen, or -1 when a slot kept
 * changing under the reader (SLOT_SPINS). */
static int probe(const vkvp_shmidx_reader *r, uint32_t ns_idx, const vkv_key *key, uint32_t maxp,
                 uint64_t *gen)
{
    uint64_t k[4];
    memcpy(k, key->b, sizeof k);
    uint32_t i = (uint32_t)vkvp_shmidx_hash(r->seed, ns_idx, key) & r->mask;
    for (uint32_t d = 0; d <= maxp && d <= r->mask; d++, i = (i + 1) & r->mask) {
        const vkvp_shmidx_slot *s = &r->slots[i];
        uint64_t meta, g, kw[4];
        for (int spins = 0;; spins++) {
            uint64_t s1 = atomic_load_explicit(&s->w[0], memory_order_acquire);
            if (!(s1 & 1)) {
                meta = atomic_load_explicit(&s->w[1], memory_order_relaxed);
                g = atomic_load_explicit(&s->w[2], memory_order_relaxed);
                for (int j = 0; j < 4; j++)
                    kw[j] = atomic_load_explicit(&s->w[3 + j], memory_order_relaxed);
                atomic_thread_fence(memory_order_acquire);
                if (atomic_load_explicit(&s->w[0], memory_order_relaxed) == s1)
                    break;
            }
            if (spins >= SLOT_SPINS)
                return -1;
            cpu_relax();
        }
        uint32_t kind = (uint32_t)(meta & 0xff);
        if (kind == VKVP_SHMIDX_EMPTY)
            return 0;
        if (kind == VKVP_SHMIDX_LIVE && (uint32_t)(meta >> 32) == ns_idx && kw[0] == k[0] &&
            kw[1] == k[1] && kw[2] == k[2] && kw[3] == k[3]) {
            if (gen)
                *gen = g;
            return (int)((meta >> 8) & 0xff);
        }
    }
    return 0;
}

/* Shared body of lookup/get: runs `n` probes under one table_seq window.
 * With states != NULL, fills states[i] (and gens[i]) for every key; else
 * stops at the first absent key. Returns the number of keys answered before
 * the first absent one and *ncold, or VKV_EBUSY. */
static int run(vkvp_shmidx_reader *r, const vkv_key *keys, size_t n, size_t *ncold, int *states,
               uint64_t *gens)
{
    const vkvp_shmidx_hdr *h = r->h;
    for (int t = 0; t < LOOKUP_TRIES; t++) {
        if (!vkvp_shmidx_reader_live(r))
            return VKV_EBUSY;
        uint64_t t1 = atomic_load_explicit(&h->table_seq, memory_order_acquire);
        if (t1 & 1) {
            cpu_relax();
            continue;
        }
        if (atomic_load_explicit(&h->unpublished, memory_order_acquire) != 0)
            return VKV_EBUSY;
        uint32_t ns_idx = 0;
        int rn = resolve_ns(r, &ns_idx);
        if (rn < 0)
            return rn;
        size_t i = 0, cold = 0;
        if (rn == 0) { /* namespace never published: every key misses */
            if (states)
                for (size_t j = 0; j < n; j++)
                    states[j] = 0;
            *ncold = 0;
            return 0;
        }
        uint32_t maxp = atomic_load_explicit(&h->max_probe, memory_order_acquire);
        bool busy = false;
        for (; i < n; i++) {
            uint64_t g = 0;
            int s = probe(r, ns_idx, &keys[i], maxp, &g);
            if (s < 0) {
                busy = true;
                break;
            }
            if (states) {
                states[i] = s;
                if (gens)
                    gens[i] = g;
                continue;
            }
            if (s == 0)
                break;
            if (s != VKVP_SHMIDX_READY)
                cold++;
        }
        if (busy)
            return VKV_EBUSY;
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&h->table_seq, memory_order_relaxed) != t1)
            continue; /* rebuilt meanwhile: the probes may have missed */
        *ncold = cold;
        return (int)i;
    }
    return VKV_EBUSY;
}

int vkvp_shmidx_lookup(vkvp_shmidx_reader *r, const vkv_key *keys, size_t n, size_t *hits,
                       size_t *cold)
{
    size_t c = 0;
    if (n > (size_t)INT32_MAX || (n && !keys))
        return VKV_EINVAL;
    int rc = run(r, keys, n, &c, NULL, NULL);
    if (rc < 0)
        return rc;
    if ((size_t)rc < n &&
        (atomic_load_explicit(&r->h->flags, memory_order_acquire) & VKVP_SHMIDX_F_ASKMISS))
        return VKV_EBUSY; /* the remote tier may hold the rest */
    *hits = (size_t)rc;
    if (cold)
        *cold = c;
    return 0;
}

int vkvp_shmidx_get(vkvp_shmidx_reader *r, const vkv_key *key, int *state, uint64_t *gen)
{
    size_t c = 0;
    uint64_t g = 0;
    int rc = run(r, key, 1, &c, state, &g);
    if (rc < 0)
        return rc;
    if (gen)
        *gen = g;
    return 0;
}
