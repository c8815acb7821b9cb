/*
 * vkvctl - inspect and manage a running vkvd.
 *
 *   vkvctl [--rundir DIR] [--json] COMMAND [ARGS]
 *
 * Commands: status, stats, ls, show, evict, flush, ping. `vkvctl help`
 * and `vkvctl COMMAND --help` describe each; see also the man page
 * (docs/vkvctl.1). Exit codes: 0 ok, 1 the daemon answered an error, 2 usage
 * error, 3 cannot reach the daemon, 4 not found.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client_internal.h"
#include "proto.h"
#include "vkv/vkv.h"

enum { EX_OK = 0, EX_ERR = 1, EX_USAGE = 2, EX_CONN = 3, EX_NOTFOUND = 4 };

static int g_json;
static const char *g_rundir;

/* Prints a cJSON object to stdout and frees it. */
static void emit(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    if (s) {
        puts(s);
        free(s);
    }
    cJSON_Delete(o);
}

/* Reports an error (as JSON when --json) and returns the exit code for it. */
static int fail(int rc, const char *what)
{
    int ex = rc == VKV_ECONN || rc == VKV_ETIMEDOUT ? EX_CONN
             : rc == VKV_ENOTFOUND                  ? EX_NOTFOUND
                                                    : EX_ERR;
    if (g_json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "error", vkv_errname(rc));
        cJSON_AddStringToObject(o, "message", what && *what ? what : vkv_strerror(rc));
        emit(o);
    } else {
        fprintf(stderr, "vkvctl: %s\n", what && *what ? what : vkv_strerror(rc));
    }
    return ex;
}

/* Connects an admin session. */
static int connect_admin(vkv_client **c)
{
    vkv_options o = {0};
    o.rundir = g_rundir;
    o.admin = 1;
    o.name = "vkvctl";
    o.timeout_ms = 10000;
    int rc = vkv_connect(&o, c);
    if (rc) {
        char msg[800];
        char dir[512];
        vkvc_default_rundir(g_rundir, dir, sizeof dir);
        snprintf(msg, sizeof msg, "cannot reach vkvd at %s/vkvd.sock: %s", dir, vkv_strerror(rc));
        return fail(rc, msg);
    }
    return 0;
}

/* Fetches all counters; returns the reply (caller frees) or NULL after
 * reporting. */
static vkvp_reply *get_stats(vkv_client *c, int *ex)
{
    vkvp_request rq;
    vkvp_reply *rep;
    char why[256] = "";
    vkvp_request_init(&rq, VKVP_STATS, 0);
    rq.u.stats.has_session = true;
    rq.u.stats.session = vkvc_session(c);
    int rc = vkvc_call(c, &rq, &rep, why, sizeof why);
    if (rc) {
        *ex = fail(rc, why);
        return NULL;
    }
    return rep;
}

/* Counter by name from a STATS reply (0 if absent). */
static uint64_t ctr(const vkvp_reply *rep, const char *name)
{
    for (uint32_t i = 0; i < rep->u.stats.ncounters; i++) {
        const vkvp_counter *k = &rep->u.stats.counters[i];
        if (k->name.len == strlen(name) && memcmp(k->name.ptr, name, k->name.len) == 0)
            return k->value;
    }
    return 0;
}

/* Human size. */
static const char *hsize(uint64_t b, char *buf, size_t cap)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    snprintf(buf, cap, i ? "%.1f %s" : "%.0f %s", v, u[i]);
    return buf;
}

static int cmd_stats(vkv_client *c, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    int ex = 0;
    vkvp_reply *rep = get_stats(c, &ex);
    if (!rep)
        return ex;
    if (g_json) {
        cJSON *o = cJSON_CreateObject();
        for (uint32_t i = 0; i < rep->u.stats.ncounters; i++) {
            const vkvp_counter *k = &rep->u.stats.counters[i];
            char name[80];
            snprintf(name, sizeof name, "%.*s", (int)k->name.len, k->name.ptr);
            cJSON_AddNumberToObject(o, name, (double)k->value);
        }
        emit(o);
    } else {
        for (uint32_t i = 0; i < rep->u.stats.ncounters; i++) {
            const vkvp_counter *k = &rep->u.stats.counters[i];
            printf("%-24.*s %" PRIu64 "\n", (int)k->name.len, k->name.ptr, k->value);
        }
    }
    vkvp_reply_free(rep);
    return EX_OK;
}

static int cmd_status(vkv_client *c, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    int ex = 0;
    vkvp_reply *rep = get_stats(c, &ex);
    if (!rep)
        return ex;
    uint64_t hits = ctr(rep, "hits"), misses = ctr(rep, "misses");
    double rate = hits + misses ? (double)hits / (double)(hits + misses) : 0.0;
    if (g_json) {
        cJSON *o = cJSON_CreateObject();
        char ep[24];
        snprintf(ep, sizeof ep, "%016" PRIx64, vkv_client_epoch(c));
        cJSON_AddStringToObject(o, "epoch", ep);
        cJSON_AddStringToObject(o, "backend", "host");
        cJSON *hot = cJSON_AddObjectToObject(o, "hot");
        cJSON_AddNumberToObject(hot, "capacity_bytes", (double)ctr(rep, "bytes_capacity"));
        cJSON_AddNumberToObject(hot, "used_bytes", (double)ctr(rep, "bytes_used"));
        cJSON_AddNumberToObject(hot, "free_bytes", (double)ctr(rep, "bytes_free"));
        cJSON_AddNumberToObject(hot, "entries", (double)ctr(rep, "entries_ready"));
        cJSON_AddNumberToObject(hot, "writing", (double)ctr(rep, "entries_writing"));
        cJSON *cold = cJSON_AddObjectToObject(o, "cold");
        cJSON_AddNumberToObject(cold, "entries", (double)ctr(rep, "entries_cold"));
        cJSON_AddNumberToObject(cold, "bytes", (double)ctr(rep, "bytes_cold"));
        cJSON_AddNumberToObject(o, "hits", (double)hits);
        cJSON_AddNumberToObject(o, "misses", (double)misses);
        cJSON_AddNumberToObject(o, "hit_rate", rate);
        cJSON_AddNumberToObject(o, "sessions", (double)ctr(rep, "sessions"));
        cJSON_AddNumberToObject(o, "leases", (double)ctr(rep, "leases_active"));
        emit(o);
    } else {
        char a[32], b[32], d[32];
        printf("vkvd epoch %016" PRIx64 ", backend host\n", vkv_client_epoch(c));
        printf("hot:  %s used of %s (%s free), %" PRIu64 " entries, %" PRIu64 " being written\n",
               hsize(ctr(rep, "bytes_used"), a, sizeof a),
               hsize(ctr(rep, "bytes_capacity"), b, sizeof b),
               hsize(ctr(rep, "bytes_free"), d, sizeof d), ctr(rep, "entries_ready"),
               ctr(rep, "entries_writing"));
        printf("cold: %" PRIu64 " entries, %s\n", ctr(rep, "entries_cold"),
               hsize(ctr(rep, "bytes_cold"), a, sizeof a));
        printf("fetch: %" PRIu64 " hits, %" PRIu64 " misses (hit rate %.1f%%), %" PRIu64
               " evictions, %" PRIu64 " spills, %" PRIu64 " restores\n",
               hits, misses, 100.0 * rate, ctr(rep, "evictions"), ctr(rep, "spills"),
               ctr(rep, "restores"));
        printf("sessions %" PRIu64 " (reaped %" PRIu64 "), leases %" PRIu64 "\n",
               ctr(rep, "sessions"), ctr(rep, "sessions_reaped"), ctr(rep, "leases_active"));
    }
    vkvp_reply_free(rep);
    return EX_OK;
}

/* Adds one wire entry to a JSON array or prints it as a table row. */
static void show_entry(const vkvp_entry *e, cJSON *arr, int long_form)
{
    char hex[65];
    vkv_key_hex(&e->key, hex);
    if (arr) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "key", hex);
        char ns[VKVP_MAX_NS + 1];
        snprintf(ns, sizeof ns, "%.*s", (int)e->ns.len, e->ns.ptr ? e->ns.ptr : "");
        cJSON_AddStringToObject(o, "ns", ns);
        cJSON_AddStringToObject(o, "state", vkvp_state_name(e->state));
        cJSON_AddStringToObject(o, "tier", vkvp_tier_name(e->tier));
        cJSON_AddNumberToObject(o, "size", (double)e->size);
        cJSON_AddNumberToObject(o, "hits", (double)e->hits);
        cJSON_AddNumberToObject(o, "last_ms", (double)e->last_ms);
        cJSON_AddNumberToObject(o, "pins", (double)e->pins);
        char shape[VKVP_MAX_SHAPE + 1];
        snprintf(shape, sizeof shape, "%.*s", (int)e->shape.len, e->shape.ptr ? e->shape.ptr : "");
        cJSON_AddStringToObject(o, "shape", shape);
        cJSON_AddItemToArray(arr, o);
        return;
    }
    char sz[32], when[32] = "-";
    if (e->last_ms) {
        time_t t = (time_t)(e->last_ms / 1000);
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    }
    if (long_form) {
        printf("key:      %s\nns:       %.*s\nstate:    %s\ntier:     %s\nsize:     %s\n"
               "hits:     %" PRIu64 "\nlast:     %s\npins:     %" PRIu64 "\nshape:    %.*s\n",
               hex, (int)e->ns.len, e->ns.ptr ? e->ns.ptr : "", vkvp_state_name(e->state),
               vkvp_tier_name(e->tier), hsize(e->size, sz, sizeof sz), e->hits, when, e->pins,
               (int)e->shape.len, e->shape.ptr ? e->shape.ptr : "");
    } else {
        printf("%.16s  %-9s %-4s %10s %6" PRIu64 "  %s  %.*s\n", hex, vkvp_state_name(e->state),
               vkvp_tier_name(e->tier), hsize(e->size, sz, sizeof sz), e->hits, when,
               (int)e->ns.len, e->ns.ptr ? e->ns.ptr : "");
    }
}

static int cmd_ls(vkv_client *c, int argc, char **argv)
{
    static const struct option opts[] = {{"ns", required_argument, NULL, 'n'},
                                         {"limit", required_argument, NULL, 'l'},
                                         {"tier", required_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    const char *ns = NULL, *tier = NULL;
    long limit = 1000000;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "n:l:t:h", opts, NULL)) != -1) {
        switch (o) {
        case 'n': ns = optarg; break;
        case 'l': limit = strtol(optarg, NULL, 10); break;
        case 't': tier = optarg; break;
        case 'h':
            printf("usage: vkvctl ls [--ns NS] [--tier hot|cold] [--limit N]\n");
            return EX_OK;
        default: return EX_USAGE;
        }
    }
    if (limit <= 0 || (tier && strcmp(tier, "hot") && strcmp(tier, "cold"))) {
        fprintf(stderr, "vkvctl ls: bad --limit or --tier\n");
        return EX_USAGE;
    }
    cJSON *arr = g_json ? cJSON_CreateArray() : NULL;
    uint64_t cursor = 0;
    long shown = 0;
    if (!g_json)
        printf("%-16s  %-9s %-4s %10s %6s  %-19s  %s\n", "KEY", "STATE", "TIER", "SIZE", "HITS",
               "LAST ACCESS", "NAMESPACE");
    do {
        vkvp_request rq;
        vkvp_reply *rep;
        char why[256] = "";
        vkvp_request_init(&rq, VKVP_LIST, 0);
        rq.u.list.session = vkvc_session(c);
        rq.u.list.cursor = cursor;
        rq.u.list.limit = VKVP_LIST_DEFAULT;
        if (ns) {
            rq.u.list.has_ns = true;
            rq.u.list.ns = vkvp_cstr(ns);
        }
        int rc = vkvc_call(c, &rq, &rep, why, sizeof why);
        if (rc) {
            cJSON_Delete(arr);
            return fail(rc, why);
        }
        for (uint32_t i = 0; i < rep->u.list.nentries && shown < limit; i++) {
            const vkvp_entry *e = &rep->u.list.entries[i];
            if (tier && strcmp(vkvp_tier_name(e->tier), tier))
                continue;
            show_entry(e, arr, 0);
            shown++;
        }
        cursor = rep->u.list.next;
        vkvp_reply_free(rep);
    } while (cursor && shown < limit);
    if (arr)
        emit(arr);
    return EX_OK;
}

static int cmd_show(vkv_client *c, int argc, char **argv)
{
    static const struct option opts[] = {{"ns", required_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    const char *ns = NULL;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "n:h", opts, NULL)) != -1) {
        if (o == 'n')
            ns = optarg;
        else if (o == 'h') {
            printf("usage: vkvctl show --ns NS KEY\n");
            return EX_OK;
        } else
            return EX_USAGE;
    }
    vkv_key key;
    if (optind >= argc || vkv_key_parse(argv[optind], &key) != 0 || !ns) {
        fprintf(stderr, "usage: vkvctl show --ns NS KEY (64 hex digits)\n");
        return EX_USAGE;
    }
    vkvp_request rq;
    vkvp_reply *rep;
    char why[256] = "";
    vkvp_request_init(&rq, VKVP_INFO, 0);
    rq.u.info.session = vkvc_session(c);
    rq.u.info.key = key;
    rq.u.info.has_ns = true;
    rq.u.info.ns = vkvp_cstr(ns);
    int rc = vkvc_call(c, &rq, &rep, why, sizeof why);
    if (rc)
        return fail(rc, why);
    if (g_json) {
        cJSON *arr = cJSON_CreateArray();
        show_entry(&rep->u.info.entry, arr, 1);
        cJSON *one = cJSON_DetachItemFromArray(arr, 0);
        cJSON_Delete(arr);
        emit(one);
    } else {
        show_entry(&rep->u.info.entry, NULL, 1);
    }
    vkvp_reply_free(rep);
    return EX_OK;
}

/* EVICT --all or FLUSH. */
static int evict_all(vkv_client *c, vkvp_op op, int to_drop)
{
    vkvp_request rq;
    vkvp_reply *rep;
    char why[256] = "";
    vkvp_request_init(&rq, op, 0);
    uint64_t n;
    if (op == VKVP_FLUSH) {
        rq.u.flush.session = vkvc_session(c);
    } else {
        rq.u.evict.session = vkvc_session(c);
        rq.u.evict.all = true;
        rq.u.evict.to = to_drop ? VKVP_EVICT_DROP : VKVP_EVICT_COLD;
    }
    int rc = vkvc_call(c, &rq, &rep, why, sizeof why);
    if (rc)
        return fail(rc, why);
    n = op == VKVP_FLUSH ? rep->u.flush.count : rep->u.evict.count;
    vkvp_reply_free(rep);
    if (g_json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, op == VKVP_FLUSH ? "spilled" : "evicted", (double)n);
        emit(o);
    } else {
        printf("%s %" PRIu64 " entries\n", op == VKVP_FLUSH ? "spilled" : "evicted", n);
    }
    return EX_OK;
}

static int cmd_evict(vkv_client *c, int argc, char **argv)
{
    static const struct option opts[] = {{"all", no_argument, NULL, 'a'},
                                         {"to", required_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    int all = 0, drop = 0, o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "at:h", opts, NULL)) != -1) {
        if (o == 'a')
            all = 1;
        else if (o == 't' && (!strcmp(optarg, "cold") || !strcmp(optarg, "drop")))
            drop = !strcmp(optarg, "drop");
        else if (o == 'h') {
            printf("usage: vkvctl evict --all [--to cold|drop]\n");
            return EX_OK;
        } else
            return EX_USAGE;
    }
    if (!all) {
        fprintf(stderr, "usage: vkvctl evict --all [--to cold|drop]\n");
        return EX_USAGE;
    }
    return evict_all(c, VKVP_EVICT, drop);
}

static int cmd_flush(vkv_client *c, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return evict_all(c, VKVP_FLUSH, 0);
}

static int cmd_ping(vkv_client *c, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    int rc = vkv_ping(c);
    if (rc)
        return fail(rc, NULL);
    if (g_json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "ok", 1);
        emit(o);
    } else {
        puts("pong");
    }
    return EX_OK;
}

struct command {
    const char *name;
    int (*fn)(vkv_client *, int, char **);
    const char *help;
};

static const struct command g_cmds[] = {
    {"status", cmd_status, "backend, capacity and use per tier, hit rate, sessions, epoch"},
    {"stats", cmd_stats, "every counter of the daemon"},
    {"ls", cmd_ls, "list entries [--ns NS] [--tier hot|cold] [--limit N]"},
    {"show", cmd_show, "one entry: --ns NS KEY"},
    {"evict", cmd_evict, "evict --all [--to cold|drop]"},
    {"flush", cmd_flush, "spill every hot entry to the cold tier"},
    {"ping", cmd_ping, "check that vkvd answers"},
};

/* Top-level usage. */
static void usage(FILE *fp)
{
    fprintf(fp, "usage: vkvctl [--rundir DIR] [--json] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof g_cmds / sizeof g_cmds[0]; i++)
        fprintf(fp, "  %-8s %s\n", g_cmds[i].name, g_cmds[i].help);
    fprintf(fp, "\nexit codes: 0 ok, 1 daemon error, 2 usage, 3 daemon unreachable, 4 not found\n");
}

int main(int argc, char **argv)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--json"))
            g_json = 1;
        else if (!strcmp(argv[i], "--rundir") && i + 1 < argc)
            g_rundir = argv[++i];
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return EX_OK;
        } else {
            fprintf(stderr, "vkvctl: unknown option %s\n", argv[i]);
            usage(stderr);
            return EX_USAGE;
        }
    }
    if (i >= argc || !strcmp(argv[i], "help")) {
        usage(i >= argc ? stderr : stdout);
        return i >= argc ? EX_USAGE : EX_OK;
    }
    for (size_t k = 0; k < sizeof g_cmds / sizeof g_cmds[0]; k++) {
        if (strcmp(argv[i], g_cmds[k].name))
            continue;
        for (int j = i + 1; j < argc; j++)
            if (!strcmp(argv[j], "--json"))
                g_json = 1;
        vkv_client *c = NULL;
        int ex = connect_admin(&c);
        if (ex)
            return ex;
        ex = g_cmds[k].fn(c, argc - i, argv + i);
        vkv_close(c);
        return ex;
    }
    fprintf(stderr, "vkvctl: unknown command '%s'\n", argv[i]);
    usage(stderr);
    return EX_USAGE;
}
