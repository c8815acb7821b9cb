/*
 * client/vkvctl/status.c - `vkvctl status`, `stats` and `ping`: the
 * daemon's counters (STATS) as a status screen or a list, and a round trip.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/client_internal.h"
#include "client/vkvctl/vkvctl.h"
#include "daemon/counters.h"
#include "proto/proto.h"
#include "vkv/vkv.h"

vkvp_reply *vkvctl_get_stats(vkv_client *c, int *ex)
{
    vkvp_request rq;
    vkvp_reply *rep;
    char why[256] = "";
    vkvp_request_init(&rq, VKVP_STATS, 0);
    rq.u.stats.has_session = true;
    rq.u.stats.session = vkvc_session(c);
    int rc = vkvc_call(c, &rq, &rep, why, sizeof why);
    if (rc) {
        *ex = vkvctl_fail(rc, why);
        return NULL;
    }
    return rep;
}

uint64_t vkvctl_ctr(const vkvp_reply *rep, const char *name)
{
    for (uint32_t i = 0; i < rep->u.stats.ncounters; i++) {
        const vkvp_counter *k = &rep->u.stats.counters[i];
        if (k->name.len == strlen(name) && memcmp(k->name.ptr, name, k->name.len) == 0)
            return k->value;
    }
    return 0;
}

int vkvctl_cmd_stats(vkv_client *c, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    int ex = 0;
    vkvp_reply *rep = vkvctl_get_stats(c, &ex);
    if (!rep)
        return ex;
    if (vkvctl.json) {
        cJSON *o = cJSON_CreateObject();
        for (uint32_t i = 0; i < rep->u.stats.ncounters; i++) {
            const vkvp_counter *k = &rep->u.stats.counters[i];
            char name[80];
            snprintf(name, sizeof name, "%.*s", (int)k->name.len, k->name.ptr);
            cJSON_AddNumberToObject(o, name, (double)k->value);
        }
        vkvctl_emit(o);
    } else {
        for (uint32_t i = 0; i < rep->u.stats.ncounters; i++) {
            const vkvp_counter *k = &rep->u.stats.counters[i];
            printf("%-24.*s %" PRIu64 "\n", (int)k->name.len, k->name.ptr, k->value);
        }
    }
    vkvp_reply_free(rep);
    return VKVCTL_EX_OK;
}

/* Hits (a cold hit is a hit too: the block was restored and served), misses
 * and the hit rate of a STATS reply. */
struct status_hits {
    uint64_t hits, misses;
    double rate;
};

/* The status_hits of rep. */
static struct status_hits status_hits(const vkvp_reply *rep)
{
    struct status_hits h;
    h.hits = vkvctl_ctr(rep, VKVD_COUNTER(hits)) + vkvctl_ctr(rep, VKVD_COUNTER(cold_hits));
    h.misses = vkvctl_ctr(rep, VKVD_COUNTER(misses));
    h.rate = h.hits + h.misses ? (double)h.hits / (double)(h.hits + h.misses) : 0.0;
    return h;
}

/* Mean time of a remote fetch in ms (0 before the first remote hit). */
static double remote_mean_fetch_ms(const vkvp_reply *rep)
{
    uint64_t rh = vkvctl_ctr(rep, VKVD_COUNTER(remote_hits));
    return rh ? (double)vkvctl_ctr(rep, VKVD_COUNTER(remote_fetch_ns)) / 1e6 / (double)rh : 0.0;
}

/* Adds counter `name` of rep to the JSON object o as field `field`. */
static void add_ctr(cJSON *o, const char *field, const vkvp_reply *rep, const char *name)
{
    cJSON_AddNumberToObject(o, field, (double)vkvctl_ctr(rep, name));
}

/* Adds the "hot", "cold" and (when the daemon has one) "remote" objects of
 * the status screen to o. */
static void status_json_tiers(cJSON *o, const vkvp_reply *rep)
{
    cJSON *hot = cJSON_AddObjectToObject(o, "hot");
    add_ctr(hot, "capacity_bytes", rep, VKVD_COUNTER(bytes_capacity));
    add_ctr(hot, "used_bytes", rep, VKVD_COUNTER(bytes_used));
    add_ctr(hot, "free_bytes", rep, VKVD_COUNTER(bytes_free));
    add_ctr(hot, "entries", rep, VKVD_COUNTER(entries_ready));
    add_ctr(hot, "writing", rep, VKVD_COUNTER(entries_writing));
    cJSON *cold = cJSON_AddObjectToObject(o, "cold");
    add_ctr(cold, "entries", rep, VKVD_COUNTER(entries_cold));
    add_ctr(cold, "bytes", rep, VKVD_COUNTER(bytes_cold));
    add_ctr(cold, "shards", rep, VKVD_COUNTER(cold_shards));
    add_ctr(cold, "shards_failed", rep, VKVD_COUNTER(cold_shards_failed));
    if (!vkvctl_ctr(rep, VKVD_COUNTER(remote_available)))
        return;
    cJSON *rt = cJSON_AddObjectToObject(o, "remote");
    add_ctr(rt, "hits", rep, VKVD_COUNTER(remote_hits));
    add_ctr(rt, "misses", rep, VKVD_COUNTER(remote_misses));
    add_ctr(rt, "errors", rep, VKVD_COUNTER(remote_errors));
    add_ctr(rt, "bytes_in", rep, VKVD_COUNTER(remote_fetch_bytes));
    add_ctr(rt, "published", rep, VKVD_COUNTER(remote_publishes));
    add_ctr(rt, "publish_dropped", rep, VKVD_COUNTER(remote_publish_refused));
    add_ctr(rt, "publish_errors", rep, VKVD_COUNTER(remote_publish_errors));
    add_ctr(rt, "queue_bytes", rep, VKVD_COUNTER(remote_queue_bytes));
    cJSON_AddNumberToObject(rt, "mean_fetch_ms", remote_mean_fetch_ms(rep));
}

/* Emits one status screen from a STATS reply as a JSON object. */
static void status_json(vkv_client *c, const vkvp_reply *rep)
{
    struct status_hits h = status_hits(rep);
    cJSON *o = cJSON_CreateObject();
    char ep[24];
    snprintf(ep, sizeof ep, "%016" PRIx64, vkv_client_epoch(c));
    cJSON_AddStringToObject(o, "epoch", ep);
    cJSON_AddStringToObject(o, "backend",
                            vkvctl_ctr(rep, VKVD_COUNTER(backend_cuda)) ? "cuda" : "host");
    status_json_tiers(o, rep);
    cJSON_AddNumberToObject(o, "hits", (double)h.hits);
    cJSON_AddNumberToObject(o, "misses", (double)h.misses);
    cJSON_AddNumberToObject(o, "hit_rate", h.rate);
    add_ctr(o, "sessions", rep, VKVD_COUNTER(sessions));
    add_ctr(o, "leases", rep, VKVD_COUNTER(leases_active));
    vkvctl_emit(o);
}

/* Prints the `remote:` line of the status screen. */
static void status_print_remote(const vkvp_reply *rep)
{
    char a[32], b[32];
    printf("remote: %" PRIu64 " hits (%s, mean %.2f ms), %" PRIu64 " misses, %" PRIu64
           " errors; %" PRIu64 " published, %" PRIu64 " dropped, %" PRIu64 " failed, %s queued\n",
           vkvctl_ctr(rep, VKVD_COUNTER(remote_hits)),
           vkvctl_hsize(vkvctl_ctr(rep, VKVD_COUNTER(remote_fetch_bytes)), a, sizeof a),
           remote_mean_fetch_ms(rep), vkvctl_ctr(rep, VKVD_COUNTER(remote_misses)),
           vkvctl_ctr(rep, VKVD_COUNTER(remote_errors)),
           vkvctl_ctr(rep, VKVD_COUNTER(remote_publishes)),
           vkvctl_ctr(rep, VKVD_COUNTER(remote_publish_refused)),
           vkvctl_ctr(rep, VKVD_COUNTER(remote_publish_errors)),
           vkvctl_hsize(vkvctl_ctr(rep, VKVD_COUNTER(remote_queue_bytes)), b, sizeof b));
}

/* Prints one status screen from a STATS reply for people. */
static void status_print(vkv_client *c, const vkvp_reply *rep)
{
    struct status_hits h = status_hits(rep);
    char a[32], b[32], d[32];
    printf("vkvd epoch %016" PRIx64 ", backend %s\n", vkv_client_epoch(c),
           vkvctl_ctr(rep, VKVD_COUNTER(backend_cuda)) ? "cuda" : "host");
    printf("hot:  %s used of %s (%s free), %" PRIu64 " entries, %" PRIu64 " being written\n",
           vkvctl_hsize(vkvctl_ctr(rep, VKVD_COUNTER(bytes_used)), a, sizeof a),
           vkvctl_hsize(vkvctl_ctr(rep, VKVD_COUNTER(bytes_capacity)), b, sizeof b),
           vkvctl_hsize(vkvctl_ctr(rep, VKVD_COUNTER(bytes_free)), d, sizeof d),
           vkvctl_ctr(rep, VKVD_COUNTER(entries_ready)),
           vkvctl_ctr(rep, VKVD_COUNTER(entries_writing)));
    uint64_t shards = vkvctl_ctr(rep, VKVD_COUNTER(cold_shards));
    uint64_t failed = vkvctl_ctr(rep, VKVD_COUNTER(cold_shards_failed));
    printf("cold: %" PRIu64 " entries, %s", vkvctl_ctr(rep, VKVD_COUNTER(entries_cold)),
           vkvctl_hsize(vkvctl_ctr(rep, VKVD_COUNTER(bytes_cold)), a, sizeof a));
    if (!vkvctl_ctr(rep, VKVD_COUNTER(cold_available)))
        printf(" (no cold tier: memory only)");
    else if (shards > 0)
        printf(" in %" PRIu64 " LMDB shard%s", shards, shards == 1 ? "" : "s");
    if (failed > 0)
        printf(", %" PRIu64 " FAILED", failed);
    printf("\n");
    if (vkvctl_ctr(rep, VKVD_COUNTER(remote_available)))
        status_print_remote(rep);
    printf("fetch: %" PRIu64 " hits (%" PRIu64 " from the cold tier), %" PRIu64
           " misses (hit rate %.1f%%), %" PRIu64 " evictions, %" PRIu64 " spills, %" PRIu64
           " restores\n",
           h.hits, vkvctl_ctr(rep, VKVD_COUNTER(cold_hits)), h.misses, 100.0 * h.rate,
           vkvctl_ctr(rep, VKVD_COUNTER(evictions)), vkvctl_ctr(rep, VKVD_COUNTER(spills)),
           vkvctl_ctr(rep, VKVD_COUNTER(restores)));
    printf("sessions %" PRIu64 " (reaped %" PRIu64 "), leases %" PRIu64 "\n",
           vkvctl_ctr(rep, VKVD_COUNTER(sessions)), vkvctl_ctr(rep, VKVD_COUNTER(sessions_reaped)),
           vkvctl_ctr(rep, VKVD_COUNTER(leases_active)));
}

/* Prints (or emits) one status screen from a STATS reply. */
static void print_status(vkv_client *c, const vkvp_reply *rep)
{
    if (vkvctl.json)
        status_json(c, rep);
    else
        status_print(c, rep);
}

/* Prints the usage of `status` to fp. */
static void usage_status(FILE *fp)
{
    fprintf(fp, "usage: vkvctl status [--watch [--interval-ms MS] [--iterations N]]\n"
                "  Capacity and use per tier, hit/miss counts, sessions, epoch. --watch\n"
                "  repeats it every second (--interval-ms) until interrupted or N screens,\n"
                "  redrawing the screen on a terminal; with --json one object per line.\n");
}

int vkvctl_cmd_status(vkv_client *c, int argc, char **argv)
{
    static const struct option opts[] = {{"watch", no_argument, NULL, 'w'},
                                         {"interval-ms", required_argument, NULL, 'i'},
                                         {"iterations", required_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    long interval = 1000, iterations = -1;
    int o, watch = 0;
    optind = 1;
    while ((o = getopt_long(argc, argv, "wi:n:h", opts, NULL)) != -1) {
        switch (o) {
        case 'w':
            watch = 1;
            break;
        case 'i':
            interval = strtol(optarg, NULL, 10);
            break;
        case 'n':
            iterations = strtol(optarg, NULL, 10);
            break;
        case 'h':
            usage_status(stdout);
            return VKVCTL_EX_OK;
        default:
            usage_status(stderr);
            return VKVCTL_EX_USAGE;
        }
    }
    if (optind < argc || interval < 10 || interval > 3600000 || iterations == 0 ||
        iterations < -1 || (!watch && iterations != -1)) {
        usage_status(stderr);
        return VKVCTL_EX_USAGE;
    }
    if (!watch)
        iterations = 1;
    int redraw = watch && !vkvctl.json && isatty(STDOUT_FILENO);
    for (long it = 0; iterations < 0 || it < iterations; it++) {
        if (it) {
            struct timespec ts = {interval / 1000, (interval % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        int ex = 0;
        vkvp_reply *rep = vkvctl_get_stats(c, &ex);
        if (!rep)
            return ex;
        if (redraw)
            fputs("\033[H\033[2J", stdout);
        print_status(c, rep);
        vkvp_reply_free(rep);
        fflush(stdout);
    }
    return VKVCTL_EX_OK;
}

int vkvctl_cmd_ping(vkv_client *c, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    int rc = vkv_ping(c);
    if (rc)
        return vkvctl_fail(rc, NULL);
    if (vkvctl.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "ok", 1);
        vkvctl_emit(o);
    } else {
        puts("pong");
    }
    return VKVCTL_EX_OK;
}
