/*
 * bench/store_index.c - LOOKUP latency of the store index with 1k and 1M
 * entries, and metadata bytes per entry. Entries are COLD (vkvs_add_cold:
 * index-only, no pages) so 1M of them fit without 1M pages; vkvs_lookup
 * counts COLD entries exactly like READY ones (same hash probe).
 * Yardstick: bsearch over a sorted array of the same 36-byte (ns, key)
 * records (memcmp), with the same query order, in the same run.
 * Latency per call is measured with clock_gettime around each call; the
 * clock's own cost (printed) is included in both columns.
 *
 * usage: store_index [queries]   (default 1000000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "store/store.h"
#include "store_bench_util.h"
#include "store/store_int.h"

typedef struct rec {
    uint32_t ns;
    vkv_key key;
} rec;

/* memcmp order of records. */
static int rec_cmp(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(rec));
}

/* Random key for number i (deterministic). */
static vkv_key rkey(uint64_t i)
{
    vkv_key k;
    uint64_t s = 0x1234567ULL + i * 0x9E3779B97F4A7C15ULL;
    for (int j = 0; j < 4; j++) {
        uint64_t v = sb_rand(&s);
        memcpy(k.b + 8 * j, &v, 8);
    }
    return k;
}

/* One scale point: n entries, q random queries of present keys. */
static void scale(size_t n, size_t q)
{
    vkvs_config c;
    vkvs_store *st;
    uint64_t sid, rng = 99;
    vkvs_stats s0, s1;
    rec *arr = malloc(n * sizeof(rec));
    uint64_t *lat = malloc(q * sizeof(uint64_t)), *blat = malloc(q * sizeof(uint64_t));
    uint64_t *qi = malloc(q * sizeof(uint64_t));
    size_t found = 0, bfound = 0;

    if (!arr || !lat || !blat || !qi)
        exit(1);
    vkvs_config_default(&c);
    c.page_size = 4096;
    c.slab_size = 1 << 20;
    c.nslabs = c.max_slabs = 1;
    if (vkvs_open(&c, &st) != 0 || vkvs_session_open(st, "ns", 1, false, &sid) != 0)
        exit(1);
    vkvs_stats_get(st, &s0);
    memset(arr, 0, n * sizeof(rec));
    for (size_t i = 0; i < n; i++) {
        vkv_key k = rkey(i);
        if (vkvs_add_cold(st, "ns", &k, 1000, 0) != 0)
            exit(1);
        arr[i].ns = 0;
        arr[i].key = k;
    }
    vkvs_stats_get(st, &s1);
    qsort(arr, n, sizeof(rec), rec_cmp);
    for (size_t i = 0; i < q; i++)
        qi[i] = sb_rand(&rng) % n;
    for (size_t i = 0; i < q; i++) {
        vkv_key k = rkey(qi[i]);
        size_t p, cold;
        uint64_t t0 = vkv_now_ns();
        vkvs_lookup(st, sid, &k, 1, &p, &cold);
        lat[i] = vkv_now_ns() - t0;
        found += p;
    }
    for (size_t i = 0; i < q; i++) {
        rec r;
        memset(&r, 0, sizeof(r));
        r.key = rkey(qi[i]);
        uint64_t t0 = vkv_now_ns();
        const void *hit = bsearch(&r, arr, n, sizeof(rec), rec_cmp);
        blat[i] = vkv_now_ns() - t0;
        bfound += hit != NULL;
    }
    if (found != q || bfound != q) {
        fprintf(stderr, "lookup missed keys\n");
        exit(1);
    }
    double per = (double)(s1.meta_bytes - s0.meta_bytes) / (double)n;
    printf("%9zu %12llu %12llu %14llu %14llu %12.1f\n", n, (unsigned long long)sb_pct(lat, q, 0.5),
           (unsigned long long)sb_pct(lat, q, 0.99), (unsigned long long)sb_pct(blat, q, 0.5),
           (unsigned long long)sb_pct(blat, q, 0.99), per);
    vkvs_close(st);
    free(qi);
    free(blat);
    free(lat);
    free(arr);
}

int main(int argc, char **argv)
{
    size_t q = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    uint64_t clk[1000];

    for (int i = 0; i < 1000; i++) {
        uint64_t t0 = vkv_now_ns();
        clk[i] = vkv_now_ns() - t0;
    }
    printf("store_index: vkvs_lookup of 1 present key (keyed XXH3, open addressing) vs bsearch "
           "on a sorted array of the same records; %zu random queries; clock cost p50 %llu ns\n",
           q, (unsigned long long)sb_pct(clk, 1000, 0.5));
    printf("sizeof(vkvs_entry) = %zu B; table slot = 8 B at <= 75%% load\n", sizeof(vkvs_entry));
    printf("%9s %12s %12s %14s %14s %12s\n", "entries", "lookup p50", "lookup p99", "bsearch p50",
           "bsearch p99", "meta B/entry");
    scale(1000, q);
    scale(1000000, q);
    return 0;
}
