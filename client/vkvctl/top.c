/*
 * client/vkvctl/top.c - `vkvctl top`: the counters sampled every interval,
 * shown as per-second rates (a screen, or JSON lines).
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "client/vkvctl/vkvctl.h"
#include "daemon/counters.h"
#include "proto/proto.h"
#include "vkv/vkv.h"

/* The counters `top` shows, sampled at one instant. */
struct sample {
    struct timespec at;
    uint64_t hits, misses, lookups, fetches, commits, evictions, spills, restores;
    uint64_t bytes_hot, bytes_cold, entries_hot, entries_cold, sessions, leases, capacity;
};

/* Takes one sample; returns 0 or the exit code after reporting. */
static int take_sample(vkv_client *c, struct sample *s)
{
    int ex = 0;
    vkvp_reply *rep = vkvctl_get_stats(c, &ex);
    if (!rep)
        return ex;
    clock_gettime(CLOCK_MONOTONIC, &s->at);
    s->hits = vkvctl_ctr(rep, VKVD_COUNTER(hits)) + vkvctl_ctr(rep, VKVD_COUNTER(cold_hits));
    s->misses = vkvctl_ctr(rep, VKVD_COUNTER(misses));
    s->lookups = vkvctl_ctr(rep, VKVD_COUNTER(req_lookup));
    s->fetches = vkvctl_ctr(rep, VKVD_COUNTER(req_fetch));
    s->commits = vkvctl_ctr(rep, VKVD_COUNTER(commits));
    s->evictions = vkvctl_ctr(rep, VKVD_COUNTER(evictions));
    s->spills = vkvctl_ctr(rep, VKVD_COUNTER(spills));
    s->restores = vkvctl_ctr(rep, VKVD_COUNTER(restores));
    s->bytes_hot = vkvctl_ctr(rep, VKVD_COUNTER(bytes_used));
    s->bytes_cold = vkvctl_ctr(rep, VKVD_COUNTER(bytes_cold));
    s->entries_hot = vkvctl_ctr(rep, VKVD_COUNTER(entries_ready));
    s->entries_cold = vkvctl_ctr(rep, VKVD_COUNTER(entries_cold));
    s->sessions = vkvctl_ctr(rep, VKVD_COUNTER(sessions));
    s->leases = vkvctl_ctr(rep, VKVD_COUNTER(leases_active));
    s->capacity = vkvctl_ctr(rep, VKVD_COUNTER(bytes_capacity));
    vkvp_reply_free(rep);
    return 0;
}

/* Per-second rate of a counter between two samples (0 if it went back). */
static double rate(uint64_t a, uint64_t b, double dt)
{
    return b >= a && dt > 0 ? (double)(b - a) / dt : 0.0;
}

/* Prints the usage of `top` to fp. */
static void usage_top(FILE *fp)
{
    fprintf(fp, "usage: vkvctl top [--once | --iterations N] [--interval-ms MS]\n"
                "  Live rates, refreshed every second (default): hits/s, misses/s,\n"
                "  lookups/s, fetches/s, puts/s, evictions/s, bytes per tier, sessions.\n"
                "  --once prints one screen (rates over one interval) and exits;\n"
                "  with --json each screen is one JSON object on its own line.\n");
}

/* Parses the options of `top` into *iterations (-1: until killed) and
 * *interval (ms). Returns true to go on; else false with the exit code in
 * *ex (help printed: VKVCTL_EX_OK; a bad option or value: VKVCTL_EX_USAGE after printing
 * the usage to stderr). */
static bool top_parse(int argc, char **argv, long *iterations, long *interval, int *ex)
{
    static const struct option opts[] = {{"once", no_argument, NULL, '1'},
                                         {"iterations", required_argument, NULL, 'n'},
                                         {"interval-ms", required_argument, NULL, 'i'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    int o;
    *iterations = -1;
    *interval = 1000;
    optind = 1;
    while ((o = getopt_long(argc, argv, "1n:i:h", opts, NULL)) != -1) {
        switch (o) {
        case '1':
            *iterations = 1;
            break;
        case 'n':
            *iterations = strtol(optarg, NULL, 10);
            break;
        case 'i':
            *interval = strtol(optarg, NULL, 10);
            break;
        case 'h':
            usage_top(stdout);
            *ex = VKVCTL_EX_OK;
            return false;
        default:
            usage_top(stderr);
            *ex = VKVCTL_EX_USAGE;
            return false;
        }
    }
    if (*iterations == 0 || *iterations < -1 || *interval < 10 || *interval > 3600000 ||
        optind < argc) {
        usage_top(stderr);
        *ex = VKVCTL_EX_USAGE;
        return false;
    }
    return true;
}

/* Per-second rates between two samples, as `top` shows them. */
struct rates {
    double dt; /* seconds between the samples */
    double hits, misses, lookups, fetches, puts, evictions, spills, restores;
};

/* The rates from sample a to the later sample b. */
static struct rates top_rates(const struct sample *a, const struct sample *b)
{
    struct rates r;
    r.dt = (double)(b->at.tv_sec - a->at.tv_sec) + (double)(b->at.tv_nsec - a->at.tv_nsec) / 1e9;
    r.hits = rate(a->hits, b->hits, r.dt);
    r.misses = rate(a->misses, b->misses, r.dt);
    r.lookups = rate(a->lookups, b->lookups, r.dt);
    r.fetches = rate(a->fetches, b->fetches, r.dt);
    r.puts = rate(a->commits, b->commits, r.dt);
    r.evictions = rate(a->evictions, b->evictions, r.dt);
    r.spills = rate(a->spills, b->spills, r.dt);
    r.restores = rate(a->restores, b->restores, r.dt);
    return r;
}

/* Emits one `top` screen as a JSON object: rates r and the levels of the
 * latest sample b. */
static void top_emit_json(const struct rates *r, const struct sample *b)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "interval_s", r->dt);
    cJSON_AddNumberToObject(j, "hits_per_s", r->hits);
    cJSON_AddNumberToObject(j, "misses_per_s", r->misses);
    cJSON_AddNumberToObject(j, "lookups_per_s", r->lookups);
    cJSON_AddNumberToObject(j, "fetches_per_s", r->fetches);
    cJSON_AddNumberToObject(j, "puts_per_s", r->puts);
    cJSON_AddNumberToObject(j, "evictions_per_s", r->evictions);
    cJSON_AddNumberToObject(j, "spills_per_s", r->spills);
    cJSON_AddNumberToObject(j, "restores_per_s", r->restores);
    cJSON_AddNumberToObject(j, "hits", (double)b->hits);
    cJSON_AddNumberToObject(j, "misses", (double)b->misses);
    cJSON_AddNumberToObject(j, "hot_bytes", (double)b->bytes_hot);
    cJSON_AddNumberToObject(j, "hot_capacity_bytes", (double)b->capacity);
    cJSON_AddNumberToObject(j, "cold_bytes", (double)b->bytes_cold);
    cJSON_AddNumberToObject(j, "hot_entries", (double)b->entries_hot);
    cJSON_AddNumberToObject(j, "cold_entries", (double)b->entries_cold);
    cJSON_AddNumberToObject(j, "sessions", (double)b->sessions);
    cJSON_AddNumberToObject(j, "leases", (double)b->leases);
    vkvctl_emit(j);
}

/* Writes the 20-column cells of a `top` screen (rates r, sessions and
 * leases of sample b) into the caller's cell[]; returns how many. */
static int top_cells(const struct rates *r, const struct sample *b, char cell[12][48])
{
    int nc = 0;
    snprintf(cell[nc++], 48, "hits/s %13.1f", r->hits);
    snprintf(cell[nc++], 48, "misses/s %11.1f", r->misses);
    snprintf(cell[nc++], 48, "hit rate %10.1f%%",
             r->hits + r->misses > 0 ? 100.0 * r->hits / (r->hits + r->misses) : 0.0);
    snprintf(cell[nc++], 48, "lookups/s %10.1f", r->lookups);
    snprintf(cell[nc++], 48, "fetches/s %10.1f", r->fetches);
    snprintf(cell[nc++], 48, "puts/s %13.1f", r->puts);
    snprintf(cell[nc++], 48, "evictions/s %8.1f", r->evictions);
    snprintf(cell[nc++], 48, "spills/s %11.1f", r->spills);
    snprintf(cell[nc++], 48, "restores/s %9.1f", r->restores);
    snprintf(cell[nc++], 48, "sessions %11" PRIu64, b->sessions);
    snprintf(cell[nc++], 48, "leases %13" PRIu64, b->leases);
    return nc;
}

/* Prints one `top` screen for people: a header with c's epoch, the rate
 * cells, and the bytes per tier of sample b; clears the terminal first
 * when tty. */
static void top_print_screen(vkv_client *c, const struct rates *r, const struct sample *b, int tty)
{
    char x[32], y[32], z[32], cell[12][48];
    int nc = top_cells(r, b, cell);
    /* as many 20-column cells per row as the terminal holds (3 when
     * it is not a terminal), each row at most the terminal's width */
    unsigned w = vkvctl.width ? vkvctl.width : 80;
    int per = w >= 24 ? (int)((w - 2) / 22) : 1;
    if (per > 3 && !vkvctl.width)
        per = 3;
    if (per < 1)
        per = 1;
    if (tty)
        fputs("\033[H\033[2J", stdout);
    char head[96];
    snprintf(head, sizeof head, "vkvd epoch %016" PRIx64 "   interval %.2f s", vkv_client_epoch(c),
             r->dt);
    printf("%s%.*s%s\n\n", vkvctl_col("1"), (int)w, head, vkvctl_rst());
    for (int i = 0; i < nc; i++)
        printf("  %-20s%s", cell[i], i % per == per - 1 || i == nc - 1 ? "\n" : "");
    char hot[128], cold[128];
    snprintf(hot, sizeof hot, "hot  %10s of %-10s %8" PRIu64 " entries",
             vkvctl_hsize(b->bytes_hot, x, sizeof x), vkvctl_hsize(b->capacity, y, sizeof y),
             b->entries_hot);
    snprintf(cold, sizeof cold, "cold %10s               %8" PRIu64 " entries",
             vkvctl_hsize(b->bytes_cold, z, sizeof z), b->entries_cold);
    printf("\n  %.*s\n  %.*s\n", (int)(w > 2 ? w - 2 : 1), hot, (int)(w > 2 ? w - 2 : 1), cold);
}

int vkvctl_cmd_top(vkv_client *c, int argc, char **argv)
{
    long iterations, interval;
    int ex;
    if (!top_parse(argc, argv, &iterations, &interval, &ex))
        return ex;
    int tty = !vkvctl.json && isatty(STDOUT_FILENO);
    struct sample a, b;
    if ((ex = take_sample(c, &a)) != 0)
        return ex;
    for (long it = 0; iterations < 0 || it < iterations; it++) {
        struct timespec ts = {interval / 1000, (interval % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        if ((ex = take_sample(c, &b)) != 0)
            return ex;
        struct rates r = top_rates(&a, &b);
        if (vkvctl.json)
            top_emit_json(&r, &b);
        else
            top_print_screen(c, &r, &b, tty);
        fflush(stdout);
        a = b;
    }
    return VKVCTL_EX_OK;
}
