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

/* Prints (or emits) one status screen from a STATS reply. */
static void print_status(vkv_client *c, const vkvp_reply *rep)
{
    /* A cold hit is a hit too (the block was restored and served). */
    uint64_t hits = vkvctl_ctr(rep, VKVD_COUNTER(hits)) + vkvctl_ctr(rep, VKVD_COUNTER(cold_hits)),
             misses = vkvctl_ctr(rep, VKVD_COUNTER(misses));
    double rate = hits + misses ? (double)hits / (double)(hits + misses) : 0.0;
    if (vkvctl.json) {
        cJSON *o = cJSON_CreateObject();
        char ep[24];
        snprintf(ep, sizeof ep, "%016" PRIx64, vkv_client_epoch(c));
        cJSON_AddStringToObject(o, "epoch", ep);
        cJSON_AddStringToObject(o, "backend",
                                vkvctl_ctr(rep, VKVD_COUNTER(backend_cuda)) ? "cuda" : "host");
        cJSON *hot = cJSON_AddObjectToObject(o, "hot");
        cJSON_AddNumberToObject(hot, "capacity_bytes",
                                (double)vkvctl_ctr(rep, VKVD_COUNTER(bytes_capacity)));
        cJSON_AddNumberToObject(hot, "used_bytes",
                                (double)vkvctl_ctr(rep, VKVD_COUNTER(bytes_used)));
        cJSON_AddNumberToObject(hot, "free_bytes",
                                (double)vkvctl_ctr(rep, VKVD_COUNTER(bytes_free)));
        cJSON_AddNumberToObject(hot, "entries",
                                (double)vkvctl_ctr(rep, VKVD_COUNTER(entries_ready)));
        cJSON_AddNumberToObject(hot, "writing",
                                (double)vkvctl_ctr(rep, VKVD_COUNTER(entries_writing)));
        cJSON *cold = cJSON_AddObjectToObject(o, "cold");
        cJSON_AddNumberToObject(cold, "entries",
                                (double)vkvctl_ctr(rep, VKVD_COUNTER(entries_cold)));
        cJSON_AddNumberToObject(cold, "bytes", (double)vkvctl_ctr(rep, VKVD_COUNTER(bytes_cold)));
        if (vkvctl_ctr(rep, VKVD_COUNTER(remote_available))) {
            cJSON *rt = cJSON_AddObjectToObject(o, "remote");
            cJSON_AddNumberToObject(rt, "hits", (double)vkvctl_ctr(rep, VKVD_COUNTER(remote_hits)));
            cJSON_AddNumberToObject(rt, "misses",
                                    (double)vkvctl_ctr(rep, VKVD_COUNTER(remote_misses)));
            cJSON_AddNumberToObject(rt, "errors",
                                    (double)vkvctl_ctr(rep, VKVD_COUNTER(remote_errors)));
            cJSON_AddNumberToObject(rt, "bytes_in",
                                    (double)vkvctl_ctr(rep, VKVD_COUNTER(remote_fetch_bytes)));
            cJSON_AddNumberToObject(rt, "published",
                                    (double)vkvctl_ctr(rep, VKVD_COUNTER(remote_publishes)));
            cJSON_AddNumberToObject(rt, "publish_dropped",
                                    (double)vkvctl_ctr(rep, VKVD_COUNTER(remote_publish_refused)));
            cJSON_AddNumberToObject(rt, "publish_errors",
                                    (double)vkvctl_ctr(rep, VKVD_COUNTER(remote_publish_errors)));
            cJSON_AddNumberToObject(rt, "queue_bytes",
                                    (double)vkvctl_ctr(rep, VKVD_COUNTER(remote_queue_bytes)));
            uint64_t rh = vkvctl_ctr(rep, VKVD_COUNTER(remote_hits));
            cJSON_AddNumberToObject(rt, "mean_fetch_ms",
                                    rh ? (double)vkvctl_ctr(rep, VKVD_COUNTER(remote_fetch_ns)) /
                                             1e6 / (double)rh
                                       : 0.0);
        }
        cJSON_AddNumberToObject(o, "hits", (double)hits);
        cJSON_AddNumberToObject(o, "misses", (double)misses);
        cJSON_AddNumberToObject(o, "hit_rate", rate);
        cJSON_AddNumberToObject(o, "sessions", (double)vkvctl_ctr(rep, VKVD_COUNTER(sessions)));
        cJSON_AddNumberToObject(o, "leases", (double)vkvctl_ctr(rep, VKVD_COUNTER(leases_active)));
        vkvctl_emit(o);
    } else {
        char a[32], b[32], d[32];
        printf("vkvd epoch %016" PRIx64 ", backend %s\n", vkv_client_epoch(c),
               vkvctl_ctr(rep, VKVD_COUNTER(backend_cuda)) ? "cuda" : "host");
        printf("hot:  %s used of %s (%s free), %" PRIu64 " entries, %" PRIu64 " being written\n",
               vkvctl_hsize(vkvctl_ctr(rep, VKVD_COUNTER(bytes_used)), a, sizeof a),
               vkvctl_hsize(vkvctl_ctr(rep, VKVD_COUNTER(bytes_capacity)), b, sizeof b),
               vkvctl_hsize(vkvctl_ctr(rep, VKVD_COUNTER(bytes_free)), d, sizeof d),
               vkvctl_ctr(rep, VKVD_COUNTER(entries_ready)),
               vkvctl_ctr(rep, VKVD_COUNTER(entries_writing)));
        printf("cold: %" PRIu64 " entries, %s\n", vkvctl_ctr(rep, VKVD_COUNTER(entries_cold)),
               vkvctl_hsize(vkvctl_ctr(rep, VKVD_COUNTER(bytes_cold)), a, sizeof a));
        if (vkvctl_ctr(rep, VKVD_COUNTER(remote_available))) {
            uint64_t rh = vkvctl_ctr(rep, VKVD_COUNTER(remote_hits));
            printf("remote: %" PRIu64 " hits (%s, mean %.2f ms), %" PRIu64 " misses, %" PRIu64
                   " errors; %" PRIu64 " published, %" PRIu64 " dropped, %" PRIu64
                   " failed, %s queued\n",
                   rh, vkvctl_hsize(vkvctl_ctr(rep, VKVD_COUNTER(remote_fetch_bytes)), a, sizeof a),
                   rh ? (double)vkvctl_ctr(rep, VKVD_COUNTER(remote_fetch_ns)) / 1e6 / (double)rh
                      : 0.0,
                   vkvctl_ctr(rep, VKVD_COUNTER(remote_misses)),
                   vkvctl_ctr(rep, VKVD_COUNTER(remote_errors)),
                   vkvctl_ctr(rep, VKVD_COUNTER(remote_publishes)),
                   vkvctl_ctr(rep, VKVD_COUNTER(remote_publish_refused)),
                   vkvctl_ctr(rep, VKVD_COUNTER(remote_publish_errors)),
                   vkvctl_hsize(vkvctl_ctr(rep, VKVD_COUNTER(remote_queue_bytes)), b, sizeof b));
        }
        printf("fetch: %" PRIu64 " hits (%" PRIu64 " from the cold tier), %" PRIu64
               " misses (hit rate %.1f%%), %" PRIu64 " evictions, %" PRIu64 " spills, %" PRIu64
               " restores\n",
               hits, vkvctl_ctr(rep, VKVD_COUNTER(cold_hits)), misses, 100.0 * rate,
               vkvctl_ctr(rep, VKVD_COUNTER(evictions)), vkvctl_ctr(rep, VKVD_COUNTER(spills)),
               vkvctl_ctr(rep, VKVD_COUNTER(restores)));
        printf("sessions %" PRIu64 " (reaped %" PRIu64 "), leases %" PRIu64 "\n",
               vkvctl_ctr(rep, VKVD_COUNTER(sessions)),
               vkvctl_ctr(rep, VKVD_COUNTER(sessions_reaped)),
               vkvctl_ctr(rep, VKVD_COUNTER(leases_active)));
    }
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
