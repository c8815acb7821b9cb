/*
 * bench/store_churn.c - fragmentation churn of the paged arena at 95%
 * occupancy: random sizes (100 KB .. 25 MB), random deletes and allocs,
 * about 10% of the entries pinned at any time. Prints failed allocations
 * (an allocation that fails while free + evictable pages suffice is a bug;
 * the count must be 0), mean extents (page runs) per entry, and vkvs_alloc
 * latency p50/p99 beside malloc+free of the same sizes (the yardstick).
 *
 * Above 95% half the steps allocate anyway, so allocations also evict.
 *
 * usage: store_churn [ops]   (default 200000; 1 GiB = 4 x 256 MiB slabs,
 *                             256 KiB pages: the daemon's defaults)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "store/store.h"
#include "store_bench_util.h"
#include "vkv/error.h"

#define MAXLIVE 4096

/* Random size in [100 KB, 25 MB], log-uniform-ish (many small, some big). */
static uint64_t rnd_size(uint64_t *rng)
{
    double u = sb_unif(rng);
    return (uint64_t)(100e3 * __builtin_pow(250.0, u));
}

int main(int argc, char **argv)
{
    size_t ops = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000;
    vkvs_config c;
    vkvs_store *st;
    uint64_t sid, rng = 7, next_key = 1;
    static uint64_t live[MAXLIVE], pinlease[MAXLIVE];
    size_t nlive = 0, nalloc = 0, bad_fail = 0, nospc = 0, nsamples = 0;
    uint64_t *lat = malloc(ops * sizeof(uint64_t)), *mlat = malloc(ops * sizeof(uint64_t));
    uint64_t *sizes = malloc(ops * sizeof(uint64_t));
    double ext_sum = 0;
    vkvs_stats s;

    if (!lat || !mlat || !sizes)
        return 1;
    vkvs_config_default(&c);
    c.policy = VKVS_POLICY_DEFAULT;
    if (vkvs_open(&c, &st) != 0 || vkvs_session_open(st, "churn", 1, false, &sid) != 0) {
        fprintf(stderr, "open failed\n");
        return 1;
    }
    memset(pinlease, 0, sizeof(pinlease));
    for (size_t op = 0; op < ops; op++) {
        vkvs_stats_get(st, &s);
        /* below 95% occupancy: allocate; above: allocate (evicting) or
         * delete a random entry, half and half */
        if ((s.pages_total - s.pages_free) * 100 < s.pages_total * 95 || nlive == 0 ||
            sb_rand(&rng) % 2 == 0) {
            uint64_t size = rnd_size(&rng), lease, t0, t1;
            uint32_t need = (uint32_t)((size + c.page_size - 1) / c.page_size);
            vkvs_block b;
            vkv_key k;
            memset(&k, 0, sizeof(k));
            memcpy(k.b, &next_key, 8);
            t0 = vkv_now_ns();
            int rv = vkvs_alloc(st, sid, &k, size, &lease, &b);
            t1 = vkv_now_ns();
            if (rv == 0) {
                lat[nalloc] = t1 - t0;
                sizes[nalloc++] = size;
                vkvs_commit(st, sid, lease, NULL, NULL);
                if (nlive < MAXLIVE) {
                    live[nlive] = next_key;
                    /* pin ~10%: fetch and keep the lease */
                    if (sb_rand(&rng) % 10 == 0) {
                        vkvs_fetch_result fr;
                        vkvs_fetch(st, sid, &k, 1, &b, &fr);
                        pinlease[nlive] = fr.lease;
                    } else {
                        pinlease[nlive] = 0;
                    }
                    nlive++;
                }
                next_key++;
            } else if (rv == VKV_ENOSPC) {
                nospc++;
                if (s.pages_free + s.pages_evictable >= need)
                    bad_fail++;
            } else {
                fprintf(stderr, "alloc: %s\n", vkv_strerror(rv));
                return 1;
            }
        } else {
            size_t i = sb_rand(&rng) % nlive;
            vkv_key k;
            memset(&k, 0, sizeof(k));
            memcpy(k.b, &live[i], 8);
            if (pinlease[i])
                vkvs_release(st, sid, &pinlease[i], 1, NULL);
            vkvs_delete(st, sid, NULL, &k, 1, NULL);
            live[i] = live[--nlive];
            pinlease[i] = pinlease[nlive];
        }
        if (op % 16 == 0) {
            vkvs_stats_get(st, &s);
            uint64_t ents = s.entries_ready + s.entries_writing;
            if (ents) {
                ext_sum += (double)s.extents_total / (double)ents;
                nsamples++;
            }
        }
        /* entries evicted by the store drop out of `live` lazily */
        if (op % 64 == 0) {
            for (size_t i = 0; i < nlive;) {
                vkv_key k;
                size_t p, cold;
                memset(&k, 0, sizeof(k));
                memcpy(k.b, &live[i], 8);
                vkvs_lookup(st, sid, &k, 1, &p, &cold);
                if (p == 0) {
                    live[i] = live[--nlive];
                    pinlease[i] = pinlease[nlive];
                } else {
                    i++;
                }
            }
        }
    }
    vkvs_stats_get(st, &s);
    /* yardstick: malloc + free of the same sizes, same count, in one run */
    for (size_t i = 0; i < nalloc; i++) {
        uint64_t t0 = vkv_now_ns();
        void *p = malloc(sizes[i]);
        uint64_t t1 = vkv_now_ns();
        if (p == NULL)
            return 1;
        ((volatile char *)p)[0] = 1;
        free(p);
        mlat[i] = t1 - t0;
    }
    printf("store_churn: %zu ops, capacity %llu MiB in %u slabs, page %u KiB, sizes 100 KB..25 MB, "
           "~10%% pinned, policy %s\n",
           ops, (unsigned long long)(s.bytes_capacity >> 20), s.slabs, c.page_size >> 10,
           vkvs_policy_name(c.policy));
    printf("allocations ok %zu, ENOSPC %zu, failed while free+evictable sufficed %zu, evictions "
           "%llu\n",
           nalloc, nospc, bad_fail, (unsigned long long)s.evictions);
    printf("mean extents (page runs) per entry: %.3f\n", nsamples ? ext_sum / nsamples : 0.0);
    uint64_t a50 = sb_pct(lat, nalloc, 0.50), a99 = sb_pct(lat, nalloc, 0.99);
    uint64_t m50 = sb_pct(mlat, nalloc, 0.50), m99 = sb_pct(mlat, nalloc, 0.99);
    printf("%-28s %10s %10s\n", "latency (ns)", "p50", "p99");
    printf("%-28s %10llu %10llu\n", "vkvs_alloc (incl. eviction)", (unsigned long long)a50,
           (unsigned long long)a99);
    printf("%-28s %10llu %10llu\n", "malloc (yardstick)", (unsigned long long)m50,
           (unsigned long long)m99);
    vkvs_close(st);
    free(sizes);
    free(mlat);
    free(lat);
    return 0;
}
