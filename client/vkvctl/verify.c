/*
 * client/vkvctl/verify.c - `vkvctl verify`: starts (or joins) the daemon's
 * checksum verification of the cold tier, shows its progress and sums it up.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "client/client_internal.h"
#include "client/vkvctl/vkvctl.h"
#include "proto/proto.h"
#include "vkv/vkv.h"

/* Prints the usage of `verify` to fp. */
static void usage_verify(FILE *fp)
{
    fprintf(fp, "usage: vkvctl verify [--drop] [--interval-ms MS]\n"
                "  Starts a checksum verification of the cold tier in the daemon (or joins\n"
                "  the one running), shows its progress (a bar on stderr when it is a\n"
                "  terminal) and prints a summary. --drop deletes corrupt entries.\n"
                "  Exit code 1 when corrupt entries were found.\n");
}

/* Sends one VERIFY; on success fills *out (copied) and returns 0, else the
 * exit code after reporting. */
static int verify_call(vkv_client *c, bool start, bool drop, vkvp_verify_rep *out)
{
    vkvp_request rq;
    vkvp_reply *rep;
    char why[256] = "";
    vkvp_request_init(&rq, VKVP_VERIFY, 0);
    rq.u.verify.session = vkvc_session(c);
    rq.u.verify.start = start;
    rq.u.verify.drop = drop;
    int rc = vkvc_call(c, &rq, &rep, why, sizeof why);
    if (rc)
        return vkvctl_fail(rc, why);
    *out = rep->u.verify;
    vkvp_reply_free(rep);
    return 0;
}

/* Draws the progress bar on stderr (only called when it is a terminal). */
static void draw_bar(const vkvp_verify_rep *v)
{
    double frac = v->bytes_total     ? (double)v->bytes_done / (double)v->bytes_total
                  : v->entries_total ? (double)v->entries_done / (double)v->entries_total
                                     : 1.0;
    if (frac > 1)
        frac = 1;
    int w = 40, fill = (int)(frac * w);
    fprintf(stderr, "\rverify [");
    for (int i = 0; i < w; i++)
        fputc(i < fill ? '#' : '.', stderr);
    fprintf(stderr, "] %5.1f%%  %" PRIu64 "/%" PRIu64 " entries, %" PRIu64 " corrupt", 100 * frac,
            v->entries_done, v->entries_total, v->corrupt);
    fflush(stderr);
}

/* Parses the options of `verify` into *drop and *interval (ms). Returns
 * true to go on; else false with the exit code in *ex (help printed:
 * VKVCTL_EX_OK; a bad option or value: VKVCTL_EX_USAGE after printing the
 * usage to stderr). */
static bool verify_parse(int argc, char **argv, bool *drop, long *interval, int *ex)
{
    static const struct option opts[] = {{"drop", no_argument, NULL, 'd'},
                                         {"interval-ms", required_argument, NULL, 'i'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    int o;
    *drop = false;
    *interval = 200;
    optind = 1;
    while ((o = getopt_long(argc, argv, "di:h", opts, NULL)) != -1) {
        if (o == 'd')
            *drop = true;
        else if (o == 'i')
            *interval = strtol(optarg, NULL, 10);
        else if (o == 'h') {
            usage_verify(stdout);
            *ex = VKVCTL_EX_OK;
            return false;
        } else {
            usage_verify(stderr);
            *ex = VKVCTL_EX_USAGE;
            return false;
        }
    }
    if (optind < argc || *interval < 10 || *interval > 60000) {
        usage_verify(stderr);
        *ex = VKVCTL_EX_USAGE;
        return false;
    }
    return true;
}

/* Prints (or emits) the summary of a finished verification v that took
 * secs seconds. */
static void verify_report(const vkvp_verify_rep *v, double secs)
{
    if (vkvctl.json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "entries_done", (double)v->entries_done);
        cJSON_AddNumberToObject(j, "entries_total", (double)v->entries_total);
        cJSON_AddNumberToObject(j, "bytes_done", (double)v->bytes_done);
        cJSON_AddNumberToObject(j, "bytes_total", (double)v->bytes_total);
        cJSON_AddNumberToObject(j, "corrupt", (double)v->corrupt);
        cJSON_AddNumberToObject(j, "dropped", (double)v->dropped);
        cJSON_AddNumberToObject(j, "seconds", secs);
        cJSON_AddBoolToObject(j, "ok", v->corrupt == 0);
        vkvctl_emit(j);
    } else {
        char a[32];
        printf("verified %" PRIu64 " of %" PRIu64 " cold entries (%s) in %.1f s: %" PRIu64
               " corrupt, %" PRIu64 " dropped\n",
               v->entries_done, v->entries_total, vkvctl_hsize(v->bytes_done, a, sizeof a), secs,
               v->corrupt, v->dropped);
    }
}

int vkvctl_cmd_verify(vkv_client *c, int argc, char **argv)
{
    bool drop;
    long interval;
    int ex;
    if (!verify_parse(argc, argv, &drop, &interval, &ex))
        return ex;
    int tty = isatty(STDERR_FILENO);
    vkvp_verify_rep v;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ex = verify_call(c, true, drop, &v);
    while (!ex && v.running) {
        if (tty)
            draw_bar(&v);
        struct timespec ts = {interval / 1000, (interval % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        ex = verify_call(c, false, drop, &v);
    }
    if (ex)
        return ex;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (tty) {
        draw_bar(&v);
        fputc('\n', stderr);
    }
    verify_report(&v, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return v.corrupt ? VKVCTL_EX_ERR : VKVCTL_EX_OK;
}
