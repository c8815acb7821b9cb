/*
 * bench/store_evict.c - hit rate of the eviction policies (LRU, S3-FIFO) on
 * Zipf traces, through the real store API: each request FETCHes its key;
 * a hit RELEASEs the lease, a miss ALLOCs + COMMITs the entry (evicting).
 * Yardstick: the static optimum for an independent-reference Zipf trace
 * (the most popular keys that fit, by probability per page), computed from
 * the same distribution.
 *
 * usage: store_evict [requests] [keys]   (defaults 1000000 100000)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "store/store.h"
#include "store_bench_util.h"
#include "vkv/error.h"

#define PAGE 4096u

/* Pages of key k: 1..8, fixed per key (variable entry sizes). */
static uint32_t key_pages(uint32_t k)
{
    uint64_t s = 0x9E3779B97F4A7C15ULL * (k + 1);
    return 1 + (uint32_t)(sb_rand(&s) % 8);
}

/* Runs one trace through a store with `cap_pages` pages and `policy`;
 * returns the hit rate. trace[] holds key numbers. */
static double run(const uint32_t *trace, size_t nreq, uint32_t cap_pages, int policy, double *secs)
{
    vkvs_config c;
    vkvs_store *st;
    uint64_t sid, hits = 0, t0;
    vkvs_block b;
    vkvs_fetch_result fr;

    vkvs_config_default(&c);
    c.page_size = PAGE;
    c.slab_size = (uint64_t)cap_pages * PAGE;
    c.nslabs = c.max_slabs = 1;
    c.policy = policy;
    if (vkvs_open(&c, &st) != 0 || vkvs_session_open(st, "bench", 1, false, &sid) != 0) {
        fprintf(stderr, "store open failed\n");
        exit(1);
    }
    t0 = vkv_now_ns();
    for (size_t i = 0; i < nreq; i++) {
        vkv_key k;
        memset(&k, 0, sizeof(k));
        memcpy(k.b, &trace[i], 4);
        if (vkvs_fetch(st, sid, &k, 1, &b, &fr) != 0) {
            fprintf(stderr, "fetch failed\n");
            exit(1);
        }
        if (fr.nready == 1) {
            hits++;
            vkvs_release(st, sid, &fr.lease, 1, NULL);
        } else {
            uint64_t lease;
            if (vkvs_alloc(st, sid, &k, (uint64_t)key_pages(trace[i]) * PAGE - 100, &lease, &b) !=
                    0 ||
                vkvs_commit(st, sid, lease, NULL, NULL) != 0) {
                fprintf(stderr, "alloc failed\n");
                exit(1);
            }
        }
    }
    *secs = (double)(vkv_now_ns() - t0) / 1e9;
    vkvs_close(st);
    return (double)hits / (double)nreq;
}

/* Index for qsort of keys by probability per page (desc). */
static const double *g_dens;
static int by_density(const void *a, const void *b)
{
    double x = g_dens[*(const uint32_t *)a], y = g_dens[*(const uint32_t *)b];
    return x < y ? 1 : x > y ? -1 : 0;
}

int main(int argc, char **argv)
{
    size_t nreq = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    uint32_t nkeys = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 100000;
    const double alphas[] = {0.8, 1.0, 1.2};
    const double fracs[] = {0.01, 0.05, 0.10, 0.25};
    double *cdf = malloc(nkeys * sizeof(double)), *prob = malloc(nkeys * sizeof(double));
    double *dens = malloc(nkeys * sizeof(double));
    uint32_t *perm = malloc(nkeys * sizeof(uint32_t)), *order = malloc(nkeys * sizeof(uint32_t));
    uint32_t *trace = malloc(nreq * sizeof(uint32_t));
    uint64_t total_pages = 0, rng = 42;
    double wins[2] = {0, 0};

    if (!cdf || !prob || !dens || !perm || !order || !trace)
        return 1;
    for (uint32_t k = 0; k < nkeys; k++)
        total_pages += key_pages(k);
    /* rank -> key: a random permutation so popularity is unrelated to size */
    for (uint32_t i = 0; i < nkeys; i++)
        perm[i] = i;
    for (uint32_t i = nkeys - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(sb_rand(&rng) % (i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    printf("store_evict: %zu requests over %u keys, entry sizes 1..8 pages of %u B "
           "(mean %.2f pages), through fetch/alloc/commit/release\n",
           nreq, nkeys, PAGE, (double)total_pages / nkeys);
    printf("%-6s %-6s %10s %10s %10s %12s %10s\n", "alpha", "cache", "LRU", "S3-FIFO", "diff",
           "static-opt", "Mreq/s");
    for (size_t ai = 0; ai < 3; ai++) {
        double sum = 0;
        for (uint32_t r = 0; r < nkeys; r++)
            sum += 1.0 / pow((double)(r + 1), alphas[ai]);
        double acc = 0;
        for (uint32_t r = 0; r < nkeys; r++) {
            double p = 1.0 / pow((double)(r + 1), alphas[ai]) / sum;
            acc += p;
            cdf[r] = acc;
            prob[perm[r]] = p;
        }
        for (size_t i = 0; i < nreq; i++) {
            double u = sb_unif(&rng) * acc;
            uint32_t lo = 0, hi = nkeys - 1;
            while (lo < hi) {
                uint32_t mid = (lo + hi) / 2;
                if (cdf[mid] < u)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            trace[i] = perm[lo];
        }
        for (uint32_t k = 0; k < nkeys; k++) {
            dens[k] = prob[k] / key_pages(k);
            order[k] = k;
        }
        g_dens = dens;
        qsort(order, nkeys, sizeof(uint32_t), by_density);
        for (size_t fi = 0; fi < 4; fi++) {
            uint32_t cap = (uint32_t)(fracs[fi] * (double)total_pages);
            double opt = 0, s1, s2;
            uint64_t used = 0;
            for (uint32_t i = 0; i < nkeys; i++) {
                if (used + key_pages(order[i]) <= cap) {
                    used += key_pages(order[i]);
                    opt += prob[order[i]];
                }
            }
            double lru = run(trace, nreq, cap, VKVS_POLICY_LRU, &s1);
            double s3 = run(trace, nreq, cap, VKVS_POLICY_S3FIFO, &s2);
            wins[s3 > lru]++;
            printf("%-6.1f %5.0f%% %9.2f%% %9.2f%% %+9.2f%% %11.2f%% %5.2f/%.2f\n", alphas[ai],
                   fracs[fi] * 100, lru * 100, s3 * 100, (s3 - lru) * 100, opt * 100,
                   (double)nreq / s1 / 1e6, (double)nreq / s2 / 1e6);
        }
    }
    printf("S3-FIFO beats LRU in %.0f of %.0f configurations -> default policy: %s\n", wins[1],
           wins[0] + wins[1], wins[1] >= wins[0] ? "s3fifo" : "lru");
    free(trace);
    free(order);
    free(perm);
    free(dens);
    free(prob);
    free(cdf);
    return 0;
}
