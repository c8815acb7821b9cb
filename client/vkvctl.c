/*
 * vkvctl - inspect and manage a running vkvd.
 *
 *   vkvctl [--rundir DIR] [--json] COMMAND [ARGS]
 *
 * Commands: status, stats, ls, show, evict, delete, flush, verify, export,
 * top, ping. `vkvctl help` and `vkvctl COMMAND --help` describe each; see
 * also the man page (docs/vkvctl.1). Keys are accepted and printed as 64 hex
 * digits. `--json` (before or after the command) prints one JSON value per
 * result with stable field names (docs/vkvctl.1 lists them).
 *
 * Exit codes: 0 ok, 1 the daemon answered an error (or `verify` found corrupt
 * entries), 2 usage error, 3 cannot reach the daemon, 4 not found, 5 local
 * I/O error (export could not write its file).
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client_internal.h"
#include "f16.h"
#include "proto.h"
#include "st.h"
#include "vkv/vkv.h"

enum { EX_OK = 0, EX_ERR = 1, EX_USAGE = 2, EX_CONN = 3, EX_NOTFOUND = 4, EX_IO = 5 };

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
    /* A cold hit is a hit too (the block was restored and served). */
    uint64_t hits = ctr(rep, "hits") + ctr(rep, "cold_hits"), misses = ctr(rep, "misses");
    double rate = hits + misses ? (double)hits / (double)(hits + misses) : 0.0;
    if (g_json) {
        cJSON *o = cJSON_CreateObject();
        char ep[24];
        snprintf(ep, sizeof ep, "%016" PRIx64, vkv_client_epoch(c));
        cJSON_AddStringToObject(o, "epoch", ep);
        cJSON_AddStringToObject(o, "backend", ctr(rep, "backend_cuda") ? "cuda" : "host");
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
        printf("vkvd epoch %016" PRIx64 ", backend %s\n", vkv_client_epoch(c),
               ctr(rep, "backend_cuda") ? "cuda" : "host");
        printf("hot:  %s used of %s (%s free), %" PRIu64 " entries, %" PRIu64 " being written\n",
               hsize(ctr(rep, "bytes_used"), a, sizeof a),
               hsize(ctr(rep, "bytes_capacity"), b, sizeof b),
               hsize(ctr(rep, "bytes_free"), d, sizeof d), ctr(rep, "entries_ready"),
               ctr(rep, "entries_writing"));
        printf("cold: %" PRIu64 " entries, %s\n", ctr(rep, "entries_cold"),
               hsize(ctr(rep, "bytes_cold"), a, sizeof a));
        printf("fetch: %" PRIu64 " hits (%" PRIu64 " from the cold tier), %" PRIu64
               " misses (hit rate %.1f%%), %" PRIu64 " evictions, %" PRIu64 " spills, %" PRIu64
               " restores\n",
               hits, ctr(rep, "cold_hits"), misses, 100.0 * rate, ctr(rep, "evictions"),
               ctr(rep, "spills"), ctr(rep, "restores"));
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

/* One listed entry with its own copies of the strings (for sorting). */
struct owned_entry {
    vkvp_entry e;
    char ns[VKVP_MAX_NS + 1];
    char shape[VKVP_MAX_SHAPE + 1];
};

static int g_sort_field; /* 0 none, 1 recency, 2 size, 3 hits */

/* qsort comparator: descending by the chosen field, then by key. */
static int cmp_entry(const void *a, const void *b)
{
    const vkvp_entry *x = &((const struct owned_entry *)a)->e;
    const vkvp_entry *y = &((const struct owned_entry *)b)->e;
    uint64_t u = 0, v = 0;
    switch (g_sort_field) {
    case 1: u = x->last_ms, v = y->last_ms; break;
    case 2: u = x->size, v = y->size; break;
    case 3: u = x->hits, v = y->hits; break;
    default: break;
    }
    if (u != v)
        return u > v ? -1 : 1;
    return memcmp(x->key.b, y->key.b, VKV_KEY_LEN);
}

/* Prints the usage of `ls` to fp. */
static void usage_ls(FILE *fp)
{
    fprintf(fp, "usage: vkvctl ls [--ns NS] [--tier hot|cold] [--sort recency|size|hits] "
                "[--limit N]\n"
                "  Lists entries (admin view: every namespace unless --ns). --sort orders\n"
                "  by last access, size or hits, largest first; without it entries come in\n"
                "  the daemon's order. --json prints an array of entry objects.\n");
}

static int cmd_ls(vkv_client *c, int argc, char **argv)
{
    static const struct option opts[] = {{"ns", required_argument, NULL, 'n'},
                                         {"limit", required_argument, NULL, 'l'},
                                         {"tier", required_argument, NULL, 't'},
                                         {"sort", required_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    const char *ns = NULL, *tier = NULL, *sort = NULL;
    long limit = 1000000;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "n:l:t:s:h", opts, NULL)) != -1) {
        switch (o) {
        case 'n': ns = optarg; break;
        case 'l': limit = strtol(optarg, NULL, 10); break;
        case 't': tier = optarg; break;
        case 's': sort = optarg; break;
        case 'h': usage_ls(stdout); return EX_OK;
        default: usage_ls(stderr); return EX_USAGE;
        }
    }
    g_sort_field = !sort                      ? 0
                   : !strcmp(sort, "recency") ? 1
                   : !strcmp(sort, "size")    ? 2
                   : !strcmp(sort, "hits")    ? 3
                                              : -1;
    if (limit <= 0 || g_sort_field < 0 || optind < argc ||
        (tier && strcmp(tier, "hot") && strcmp(tier, "cold"))) {
        usage_ls(stderr);
        return EX_USAGE;
    }
    /* collect everything that passes the filters, then sort and cut */
    struct owned_entry *all = NULL;
    size_t n = 0, cap = 0;
    uint64_t cursor = 0;
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
            free(all);
            return fail(rc, why);
        }
        for (uint32_t i = 0; i < rep->u.list.nentries; i++) {
            const vkvp_entry *e = &rep->u.list.entries[i];
            if (tier && strcmp(vkvp_tier_name(e->tier), tier))
                continue;
            if (!g_sort_field && (long)n >= limit)
                break;
            if (n == cap) {
                size_t nc = cap ? 2 * cap : 256;
                struct owned_entry *na = realloc(all, nc * sizeof *na);
                if (!na) {
                    free(all);
                    vkvp_reply_free(rep);
                    return fail(VKV_ENOMEM, NULL);
                }
                all = na;
                cap = nc;
            }
            struct owned_entry *d = &all[n++];
            d->e = *e;
            snprintf(d->ns, sizeof d->ns, "%.*s", (int)e->ns.len, e->ns.ptr ? e->ns.ptr : "");
            snprintf(d->shape, sizeof d->shape, "%.*s", (int)e->shape.len,
                     e->shape.ptr ? e->shape.ptr : "");
            d->e.ns = vkvp_cstr(NULL);
            d->e.shape = vkvp_cstr(NULL);
        }
        cursor = rep->u.list.next;
        vkvp_reply_free(rep);
    } while (cursor && (g_sort_field || (long)n < limit));
    if (g_sort_field && n > 1)
        qsort(all, n, sizeof *all, cmp_entry);
    if ((long)n > limit)
        n = (size_t)limit;
    cJSON *arr = g_json ? cJSON_CreateArray() : NULL;
    if (!g_json)
        printf("%-16s  %-9s %-4s %10s %6s  %-19s  %s\n", "KEY", "STATE", "TIER", "SIZE", "HITS",
               "LAST ACCESS", "NAMESPACE");
    for (size_t i = 0; i < n; i++) {
        all[i].e.ns = vkvp_cstr(all[i].ns);
        all[i].e.shape = vkvp_cstr(all[i].shape);
        show_entry(&all[i].e, arr, 0);
    }
    free(all);
    if (arr)
        emit(arr);
    return EX_OK;
}

/* Parses the options of a command that takes only --ns NS and --help
 * (show, delete, export). Returns -1 to go on (*ns set or NULL, optind at the
 * first operand), else the exit code to return (help printed: EX_OK; bad
 * option: EX_USAGE after printing the usage to stderr). */
static int parse_ns_only(int argc, char **argv, void (*usage)(FILE *), const char **ns)
{
    static const struct option opts[] = {{"ns", required_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    int o;
    *ns = NULL;
    optind = 1;
    while ((o = getopt_long(argc, argv, "n:h", opts, NULL)) != -1) {
        if (o == 'n') {
            *ns = optarg;
        } else if (o == 'h') {
            usage(stdout);
            return EX_OK;
        } else {
            usage(stderr);
            return EX_USAGE;
        }
    }
    return -1;
}

/* Prints the usage of `show` to fp. */
static void usage_show(FILE *fp)
{
    fprintf(fp, "usage: vkvctl show --ns NS KEY\n"
                "  One entry: namespace, state, tier, size, hits, last access, pins, shape.\n");
}

static int cmd_show(vkv_client *c, int argc, char **argv)
{
    const char *ns;
    int ex = parse_ns_only(argc, argv, usage_show, &ns);
    if (ex >= 0)
        return ex;
    vkv_key key;
    if (optind + 1 != argc || vkv_key_parse(argv[optind], &key) != 0 || !ns) {
        usage_show(stderr);
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

/* Parses argv[from..argc) as hex keys into a malloc'ed array (*keys, caller
 * frees). Returns the count, or -1 after printing which argument is bad. */
static long parse_keys(int argc, char **argv, int from, vkv_key **keys)
{
    long n = argc - from;
    *keys = calloc(n > 0 ? (size_t)n : 1, sizeof **keys);
    if (!*keys)
        return -1;
    for (long i = 0; i < n; i++)
        if (vkv_key_parse(argv[from + i], &(*keys)[i]) != 0) {
            fprintf(stderr, "vkvctl: '%s' is not a key (64 hex digits)\n", argv[from + i]);
            free(*keys);
            *keys = NULL;
            return -1;
        }
    return n;
}

/* Prints `{"<field>": n}` or "<field> n entries". */
static void print_count(const char *field, uint64_t n)
{
    if (g_json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, field, (double)n);
        emit(o);
    } else {
        printf("%s %" PRIu64 " entries\n", field, n);
    }
}

/* EVICT (--all or keys, optionally in namespace ns) or FLUSH. keys may be
 * NULL with nkeys 0 for --all / FLUSH. */
static int evict_or_flush(vkv_client *c, vkvp_op op, int to_drop, const char *ns,
                          const vkv_key *keys, size_t nkeys, int all)
{
    vkvp_request rq;
    vkvp_reply *rep;
    char why[256] = "";
    vkvp_request_init(&rq, op, 0);
    if (op == VKVP_FLUSH) {
        rq.u.flush.session = vkvc_session(c);
    } else {
        rq.u.evict.session = vkvc_session(c);
        rq.u.evict.all = all;
        rq.u.evict.has_keys = !all;
        rq.u.evict.keys = keys;
        rq.u.evict.nkeys = (uint32_t)nkeys;
        rq.u.evict.to = to_drop ? VKVP_EVICT_DROP : VKVP_EVICT_COLD;
        if (ns) {
            rq.u.evict.has_ns = true;
            rq.u.evict.ns = vkvp_cstr(ns);
        }
    }
    int rc = vkvc_call(c, &rq, &rep, why, sizeof why);
    if (rc)
        return fail(rc, why);
    uint64_t n = op == VKVP_FLUSH ? rep->u.flush.count : rep->u.evict.count;
    vkvp_reply_free(rep);
    print_count(op == VKVP_FLUSH ? "spilled" : "evicted", n);
    return EX_OK;
}

/* Prints the usage of `evict` to fp. */
static void usage_evict(FILE *fp)
{
    fprintf(fp, "usage: vkvctl evict --ns NS [--to cold|drop] KEY...\n"
                "       vkvctl evict --all [--ns NS] [--to cold|drop]\n"
                "  Evicts entries from the hot tier: to the cold tier (default) or dropped.\n");
}

static int cmd_evict(vkv_client *c, int argc, char **argv)
{
    static const struct option opts[] = {{"all", no_argument, NULL, 'a'},
                                         {"to", required_argument, NULL, 't'},
                                         {"ns", required_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    int all = 0, drop = 0, o;
    const char *ns = NULL;
    optind = 1;
    while ((o = getopt_long(argc, argv, "at:n:h", opts, NULL)) != -1) {
        if (o == 'a')
            all = 1;
        else if (o == 'n')
            ns = optarg;
        else if (o == 't' && (!strcmp(optarg, "cold") || !strcmp(optarg, "drop")))
            drop = !strcmp(optarg, "drop");
        else if (o == 'h') {
            usage_evict(stdout);
            return EX_OK;
        } else {
            usage_evict(stderr);
            return EX_USAGE;
        }
    }
    if (all) {
        if (optind < argc) {
            usage_evict(stderr);
            return EX_USAGE;
        }
        return evict_or_flush(c, VKVP_EVICT, drop, ns, NULL, 0, 1);
    }
    vkv_key *keys = NULL;
    long n = optind < argc && ns ? parse_keys(argc, argv, optind, &keys) : -1;
    if (n <= 0 || n > VKVP_MAX_KEYS) {
        free(keys);
        usage_evict(stderr);
        return EX_USAGE;
    }
    int ex = evict_or_flush(c, VKVP_EVICT, drop, ns, keys, (size_t)n, 0);
    free(keys);
    return ex;
}

/* Prints the usage of `delete` to fp. */
static void usage_delete(FILE *fp)
{
    fprintf(fp, "usage: vkvctl delete --ns NS KEY...\n"
                "  Deletes entries of namespace NS (as `ls` prints it) from both tiers.\n");
}

static int cmd_delete(vkv_client *c, int argc, char **argv)
{
    const char *ns;
    int ex = parse_ns_only(argc, argv, usage_delete, &ns);
    if (ex >= 0)
        return ex;
    vkv_key *keys = NULL;
    long n = optind < argc && ns ? parse_keys(argc, argv, optind, &keys) : -1;
    if (n <= 0 || n > VKVP_MAX_KEYS) {
        free(keys);
        usage_delete(stderr);
        return EX_USAGE;
    }
    vkvp_request rq;
    vkvp_reply *rep;
    char why[256] = "";
    vkvp_request_init(&rq, VKVP_DELETE, 0);
    rq.u.del.session = vkvc_session(c);
    rq.u.del.keys = keys;
    rq.u.del.nkeys = (uint32_t)n;
    rq.u.del.has_ns = true;
    rq.u.del.ns = vkvp_cstr(ns);
    int rc = vkvc_call(c, &rq, &rep, why, sizeof why);
    free(keys);
    if (rc)
        return fail(rc, why);
    uint64_t deleted = rep->u.del.count;
    vkvp_reply_free(rep);
    print_count("deleted", deleted);
    return deleted ? EX_OK : EX_NOTFOUND;
}

static int cmd_flush(vkv_client *c, int argc, char **argv)
{
    if (argc > 1) {
        fprintf(argv[1][0] == '-' && argv[1][1] == 'h' ? stdout : stderr,
                "usage: vkvctl flush\n  Spills every hot entry to the cold tier.\n");
        return strcmp(argv[1], "--help") && strcmp(argv[1], "-h") ? EX_USAGE : EX_OK;
    }
    return evict_or_flush(c, VKVP_FLUSH, 0, NULL, NULL, 0, 1);
}

/* ---- export ---------------------------------------------------------------- */

/* Prints the usage of `export` to fp. */
static void usage_export(FILE *fp)
{
    fprintf(fp, "usage: vkvctl export --ns NS KEY OUT.safetensors\n"
                "  Fetches one block, decodes it and writes layers.{i}.k / layers.{i}.v\n"
                "  [tokens, kv_heads, head_dim] in the block's dtype, with __metadata__\n"
                "  visual_ranges (docs/FIDELITY.md naming). NS is the full namespace as\n"
                "  `ls` prints it (fingerprint#codec).\n");
}

/* Decodes the block in view into per-layer float tensors and writes them to
 * path. Returns 0 or a VKV_E* code with a message in err. */
static int export_block(const vkv_view *view, const char *path, const char *ns,
                        const char *keyhex, char *err, size_t errlen, cJSON *info)
{
    vkv_block_header hdr;
    int rc = vkv_block_check(view->data, view->size, VKV_DECODE_VERIFY, &hdr);
    if (rc) {
        snprintf(err, errlen, "block check failed: %s", vkv_strerror(rc));
        return rc;
    }
    vkv_shape sh;
    vkv_codec_spec spec;
    vkv_block_shape(&hdr, &sh, &spec);
    size_t per = (size_t)sh.tokens * sh.kv_heads * sh.head_dim;
    size_t L = sh.layers;
    size_t nel = 2 * L * per + 1, nt = 2 * L + 1; /* +1: never calloc(0) */
    uint16_t *raw = calloc(nel, sizeof *raw);
    float *f32 = calloc(nel, sizeof *f32);
    void **kp = calloc(L + 1, sizeof *kp), **vp = calloc(L + 1, sizeof *vp);
    vkve_st_out *outs = calloc(nt, sizeof *outs);
    char (*names)[32] = calloc(nt, sizeof *names);
    rc = VKV_ENOMEM;
    if (!raw || !f32 || !kp || !vp || !outs || !names)
        goto out;
    for (size_t l = 0; l < L; l++) {
        kp[l] = raw + (2 * l) * per;
        vp[l] = raw + (2 * l + 1) * per;
    }
    vkv_kv_dst dst = {(void *const *)kp, (void *const *)vp, (size_t)sh.kv_heads * sh.head_dim,
                      sh.head_dim, vkv_geometry_of(&sh), NULL};
    if ((rc = vkv_decode(view->data, view->size, VKV_DECODE_VERIFY, &dst)) != 0) {
        snprintf(err, errlen, "decode failed: %s", vkv_strerror(rc));
        goto out;
    }
    for (size_t i = 0; i < 2 * L * per; i++)
        f32[i] = sh.dtype == VKV_DTYPE_BF16 ? vkve_bf16_to_f32(raw[i]) : vkve_f16_to_f32(raw[i]);
    for (size_t l = 0; l < L; l++)
        for (int kv = 0; kv < 2; kv++) {
            size_t j = 2 * l + (size_t)kv;
            snprintf(names[j], sizeof names[j], "layers.%zu.%c", l, kv ? 'v' : 'k');
            outs[j].name = names[j];
            outs[j].dtype = sh.dtype == VKV_DTYPE_BF16 ? VKVE_ST_BF16 : VKVE_ST_F16;
            outs[j].ndim = 3;
            outs[j].shape[0] = sh.tokens;
            outs[j].shape[1] = sh.kv_heads;
            outs[j].shape[2] = sh.head_dim;
            outs[j].data = f32 + j * per;
        }
    char ranges[VKV_BLOCK_MAX_RANGES * 24 + 1] = "";
    size_t at = 0;
    for (uint32_t r = 0; r < sh.n_ranges && at < sizeof ranges; r++)
        at += (size_t)snprintf(ranges + at, sizeof ranges - at, "%s%u:%u", r ? "," : "",
                               sh.ranges[r].start, sh.ranges[r].start + sh.ranges[r].len);
    char codec[128];
    vkv_codec_spec_format(&spec, codec, sizeof codec);
    const char *meta[] = {"visual_ranges", ranges, "vkv_key", keyhex, "vkv_ns", ns,
                          "vkv_codec", codec};
    /* an empty visual_ranges would mean "all visual" to vkv-eval: omit it
     * only when the block really has no visual tokens */
    size_t nmeta = 4;
    const char *const *m = meta;
    if (sh.n_ranges == 0) {
        m = meta + 2;
        nmeta = 3;
    }
    if ((rc = vkve_st_write(path, outs, 2 * L, m, nmeta, err, errlen)) != 0)
        goto out;
    cJSON_AddStringToObject(info, "dtype", sh.dtype == VKV_DTYPE_BF16 ? "bf16" : "f16");
    cJSON_AddNumberToObject(info, "layers", sh.layers);
    cJSON_AddNumberToObject(info, "tokens", sh.tokens);
    cJSON_AddNumberToObject(info, "kv_heads", sh.kv_heads);
    cJSON_AddNumberToObject(info, "head_dim", sh.head_dim);
    cJSON_AddStringToObject(info, "visual_ranges", ranges);
    cJSON_AddStringToObject(info, "codec", codec);
    cJSON_AddNumberToObject(info, "block_bytes", (double)view->size);
out:
    free(raw);
    free(f32);
    free(kp);
    free(vp);
    free(outs);
    free(names);
    return rc;
}

static int cmd_export(vkv_client *c, int argc, char **argv)
{
    (void)c;
    const char *ns;
    int ex = parse_ns_only(argc, argv, usage_export, &ns);
    if (ex >= 0)
        return ex;
    vkv_key key;
    if (!ns || optind + 2 != argc || vkv_key_parse(argv[optind], &key) != 0) {
        usage_export(stderr);
        return EX_USAGE;
    }
    const char *path = argv[optind + 1];
    char keyhex[65];
    vkv_key_hex(&key, keyhex);
    /* a worker-like session in the entry's namespace can fetch the block */
    vkv_options opt = {0};
    opt.rundir = g_rundir;
    opt.ns = ns;
    opt.ns_is_full = 1;
    opt.name = "vkvctl-export";
    opt.timeout_ms = 30000;
    vkv_client *w = NULL;
    char why[512];
    int rc = vkv_connect(&opt, &w);
    if (rc) {
        snprintf(why, sizeof why, "cannot open a session in namespace '%s': %s", ns,
                 vkv_strerror(rc));
        return fail(rc, why);
    }
    vkv_fetch *f = NULL;
    if ((rc = vkv_fetch_begin(w, &key, 1, &f)) != 0) {
        vkv_close(w);
        return fail(rc, NULL);
    }
    if (vkv_fetch_count(f) != 1) {
        vkv_fetch_release(w, f);
        vkv_close(w);
        snprintf(why, sizeof why, "no entry %s in namespace '%s'", keyhex, ns);
        return fail(VKV_ENOTFOUND, why);
    }
    vkv_view view = vkv_fetch_view(f, 0);
    cJSON *info = cJSON_CreateObject();
    cJSON_AddStringToObject(info, "key", keyhex);
    cJSON_AddStringToObject(info, "ns", ns);
    cJSON_AddStringToObject(info, "path", path);
    char err[256] = "";
    rc = export_block(&view, path, ns, keyhex, err, sizeof err, info);
    vkv_fetch_release(w, f);
    vkv_close(w);
    if (rc) {
        cJSON_Delete(info);
        if (rc == VKV_EIO) {
            fail(rc, err);
            return EX_IO;
        }
        return fail(rc, err);
    }
    if (g_json) {
        emit(info);
    } else {
        cJSON *t = cJSON_GetObjectItem(info, "tokens");
        cJSON *l = cJSON_GetObjectItem(info, "layers");
        printf("wrote %s: %d layers x %d tokens (%s)\n", path, l ? l->valueint : 0,
               t ? t->valueint : 0, cJSON_GetObjectItem(info, "dtype")->valuestring);
        cJSON_Delete(info);
    }
    return EX_OK;
}

/* ---- top ------------------------------------------------------------------- */

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
    vkvp_reply *rep = get_stats(c, &ex);
    if (!rep)
        return ex;
    clock_gettime(CLOCK_MONOTONIC, &s->at);
    s->hits = ctr(rep, "hits") + ctr(rep, "cold_hits");
    s->misses = ctr(rep, "misses");
    s->lookups = ctr(rep, "req_lookup");
    s->fetches = ctr(rep, "req_fetch");
    s->commits = ctr(rep, "commits");
    s->evictions = ctr(rep, "evictions");
    s->spills = ctr(rep, "spills");
    s->restores = ctr(rep, "restores");
    s->bytes_hot = ctr(rep, "bytes_used");
    s->bytes_cold = ctr(rep, "bytes_cold");
    s->entries_hot = ctr(rep, "entries_ready");
    s->entries_cold = ctr(rep, "entries_cold");
    s->sessions = ctr(rep, "sessions");
    s->leases = ctr(rep, "leases_active");
    s->capacity = ctr(rep, "bytes_capacity");
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

static int cmd_top(vkv_client *c, int argc, char **argv)
{
    static const struct option opts[] = {{"once", no_argument, NULL, '1'},
                                         {"iterations", required_argument, NULL, 'n'},
                                         {"interval-ms", required_argument, NULL, 'i'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    long iterations = -1, interval = 1000;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "1n:i:h", opts, NULL)) != -1) {
        switch (o) {
        case '1': iterations = 1; break;
        case 'n': iterations = strtol(optarg, NULL, 10); break;
        case 'i': interval = strtol(optarg, NULL, 10); break;
        case 'h': usage_top(stdout); return EX_OK;
        default: usage_top(stderr); return EX_USAGE;
        }
    }
    if (iterations == 0 || iterations < -1 || interval < 10 || interval > 3600000 ||
        optind < argc) {
        usage_top(stderr);
        return EX_USAGE;
    }
    int tty = !g_json && isatty(STDOUT_FILENO);
    struct sample a, b;
    int ex = take_sample(c, &a);
    if (ex)
        return ex;
    for (long it = 0; iterations < 0 || it < iterations; it++) {
        struct timespec ts = {interval / 1000, (interval % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        if ((ex = take_sample(c, &b)) != 0)
            return ex;
        double dt = (double)(b.at.tv_sec - a.at.tv_sec) + (double)(b.at.tv_nsec - a.at.tv_nsec) / 1e9;
        double hr = rate(a.hits, b.hits, dt), mr = rate(a.misses, b.misses, dt);
        double lr = rate(a.lookups, b.lookups, dt), fr = rate(a.fetches, b.fetches, dt);
        double pr = rate(a.commits, b.commits, dt), er = rate(a.evictions, b.evictions, dt);
        double sr = rate(a.spills, b.spills, dt), rr = rate(a.restores, b.restores, dt);
        if (g_json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddNumberToObject(j, "interval_s", dt);
            cJSON_AddNumberToObject(j, "hits_per_s", hr);
            cJSON_AddNumberToObject(j, "misses_per_s", mr);
            cJSON_AddNumberToObject(j, "lookups_per_s", lr);
            cJSON_AddNumberToObject(j, "fetches_per_s", fr);
            cJSON_AddNumberToObject(j, "puts_per_s", pr);
            cJSON_AddNumberToObject(j, "evictions_per_s", er);
            cJSON_AddNumberToObject(j, "spills_per_s", sr);
            cJSON_AddNumberToObject(j, "restores_per_s", rr);
            cJSON_AddNumberToObject(j, "hits", (double)b.hits);
            cJSON_AddNumberToObject(j, "misses", (double)b.misses);
            cJSON_AddNumberToObject(j, "hot_bytes", (double)b.bytes_hot);
            cJSON_AddNumberToObject(j, "hot_capacity_bytes", (double)b.capacity);
            cJSON_AddNumberToObject(j, "cold_bytes", (double)b.bytes_cold);
            cJSON_AddNumberToObject(j, "hot_entries", (double)b.entries_hot);
            cJSON_AddNumberToObject(j, "cold_entries", (double)b.entries_cold);
            cJSON_AddNumberToObject(j, "sessions", (double)b.sessions);
            cJSON_AddNumberToObject(j, "leases", (double)b.leases);
            emit(j);
        } else {
            char x[32], y[32], z[32];
            if (tty)
                fputs("\033[H\033[2J", stdout);
            printf("vkvd epoch %016" PRIx64 "   interval %.2f s\n\n", vkv_client_epoch(c), dt);
            printf("  hits/s %10.1f   misses/s %10.1f   hit rate %5.1f%%\n", hr, mr,
                   hr + mr > 0 ? 100.0 * hr / (hr + mr) : 0.0);
            printf("  lookups/s %7.1f   fetches/s %9.1f   puts/s %8.1f\n", lr, fr, pr);
            printf("  evictions/s %5.1f   spills/s %10.1f   restores/s %6.1f\n\n", er, sr, rr);
            printf("  hot   %10s of %-10s %8" PRIu64 " entries\n", hsize(b.bytes_hot, x, sizeof x),
                   hsize(b.capacity, y, sizeof y), b.entries_hot);
            printf("  cold  %10s               %8" PRIu64 " entries\n",
                   hsize(b.bytes_cold, z, sizeof z), b.entries_cold);
            printf("  sessions %" PRIu64 "   leases %" PRIu64 "\n", b.sessions, b.leases);
        }
        fflush(stdout);
        a = b;
    }
    return EX_OK;
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

/* ---- verify ---------------------------------------------------------------- */

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
        return fail(rc, why);
    *out = rep->u.verify;
    vkvp_reply_free(rep);
    return 0;
}

/* Draws the progress bar on stderr (only called when it is a terminal). */
static void draw_bar(const vkvp_verify_rep *v)
{
    double frac = v->bytes_total ? (double)v->bytes_done / (double)v->bytes_total
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

static int cmd_verify(vkv_client *c, int argc, char **argv)
{
    static const struct option opts[] = {{"drop", no_argument, NULL, 'd'},
                                         {"interval-ms", required_argument, NULL, 'i'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    int drop = 0, o;
    long interval = 200;
    optind = 1;
    while ((o = getopt_long(argc, argv, "di:h", opts, NULL)) != -1) {
        if (o == 'd')
            drop = 1;
        else if (o == 'i')
            interval = strtol(optarg, NULL, 10);
        else if (o == 'h') {
            usage_verify(stdout);
            return EX_OK;
        } else {
            usage_verify(stderr);
            return EX_USAGE;
        }
    }
    if (optind < argc || interval < 10 || interval > 60000) {
        usage_verify(stderr);
        return EX_USAGE;
    }
    int tty = isatty(STDERR_FILENO);
    vkvp_verify_rep v;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int ex = verify_call(c, true, drop, &v);
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
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (g_json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "entries_done", (double)v.entries_done);
        cJSON_AddNumberToObject(j, "entries_total", (double)v.entries_total);
        cJSON_AddNumberToObject(j, "bytes_done", (double)v.bytes_done);
        cJSON_AddNumberToObject(j, "bytes_total", (double)v.bytes_total);
        cJSON_AddNumberToObject(j, "corrupt", (double)v.corrupt);
        cJSON_AddNumberToObject(j, "dropped", (double)v.dropped);
        cJSON_AddNumberToObject(j, "seconds", secs);
        cJSON_AddBoolToObject(j, "ok", v.corrupt == 0);
        emit(j);
    } else {
        char a[32];
        printf("verified %" PRIu64 " of %" PRIu64 " cold entries (%s) in %.1f s: %" PRIu64
               " corrupt, %" PRIu64 " dropped\n",
               v.entries_done, v.entries_total, hsize(v.bytes_done, a, sizeof a), secs, v.corrupt,
               v.dropped);
    }
    return v.corrupt ? EX_ERR : EX_OK;
}

struct command {
    const char *name;
    int (*fn)(vkv_client *, int, char **);
    const char *help;
    const char *usage; /* printed by `vkvctl COMMAND --help` when fn does not parse options */
};

static const struct command g_cmds[] = {
    {"status", cmd_status, "backend, capacity and use per tier, hit rate, sessions, epoch",
     "usage: vkvctl status\n  Capacity and use per tier, hit/miss counts, sessions, epoch.\n"},
    {"stats", cmd_stats, "every counter of the daemon",
     "usage: vkvctl stats\n  Every STATS counter of the daemon (name value).\n"},
    {"ls", cmd_ls, "list entries [--ns NS] [--tier T] [--sort recency|size|hits] [--limit N]",
     NULL},
    {"show", cmd_show, "one entry: --ns NS KEY", NULL},
    {"evict", cmd_evict, "evict --ns NS KEY... | --all [--to cold|drop]", NULL},
    {"delete", cmd_delete, "delete --ns NS KEY...", NULL},
    {"flush", cmd_flush, "spill every hot entry to the cold tier", NULL},
    {"verify", cmd_verify, "check the cold tier's checksums [--drop]", NULL},
    {"export", cmd_export, "export --ns NS KEY OUT.safetensors (decoded tensors)", NULL},
    {"top", cmd_top, "live rates [--once | --iterations N] [--interval-ms MS]", NULL},
    {"ping", cmd_ping, "check that vkvd answers", "usage: vkvctl ping\n  Round trip to vkvd.\n"},
};
#define NCMDS (sizeof g_cmds / sizeof g_cmds[0])

/* Top-level usage. */
static void usage(FILE *fp)
{
    fprintf(fp, "usage: vkvctl [--rundir DIR] [--json] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < NCMDS; i++)
        fprintf(fp, "  %-8s %s\n", g_cmds[i].name, g_cmds[i].help);
    fprintf(fp, "\n`vkvctl COMMAND --help` describes one command; man vkvctl for all.\n"
                "exit codes: 0 ok, 1 daemon error (verify: corrupt entries found), 2 usage,\n"
                "            3 daemon unreachable, 4 not found, 5 local I/O error\n");
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
        if (i < argc && i + 1 < argc) /* vkvctl help COMMAND */
            for (size_t k = 0; k < NCMDS; k++)
                if (!strcmp(argv[i + 1], g_cmds[k].name)) {
                    char *hv[] = {argv[i + 1], "--help", NULL};
                    return g_cmds[k].usage ? (fputs(g_cmds[k].usage, stdout), EX_OK)
                                           : g_cmds[k].fn(NULL, 2, hv);
                }
        usage(i >= argc ? stderr : stdout);
        return i >= argc ? EX_USAGE : EX_OK;
    }
    for (size_t k = 0; k < NCMDS; k++) {
        if (strcmp(argv[i], g_cmds[k].name))
            continue;
        /* --json and --help may follow the command; --json is removed here
         * so that the commands' option parsers never see it */
        int sub_argc = 0, want_help = 0;
        char **sub = calloc((size_t)(argc - i + 1), sizeof *sub);
        if (!sub)
            return fail(VKV_ENOMEM, NULL);
        for (int j = i; j < argc; j++) {
            if (j > i && !strcmp(argv[j], "--json")) {
                g_json = 1;
                continue;
            }
            if (j > i && (!strcmp(argv[j], "--help") || !strcmp(argv[j], "-h")))
                want_help = 1;
            sub[sub_argc++] = argv[j];
        }
        int ex;
        if (want_help) {
            /* no daemon needed to describe a command */
            if (g_cmds[k].usage) {
                fputs(g_cmds[k].usage, stdout);
                ex = EX_OK;
            } else {
                ex = g_cmds[k].fn(NULL, sub_argc, sub);
            }
            free(sub);
            return ex;
        }
        if (g_cmds[k].usage && sub_argc > 1) {
            fputs(g_cmds[k].usage, stderr);
            free(sub);
            return EX_USAGE;
        }
        vkv_client *c = NULL;
        ex = connect_admin(&c);
        if (!ex) {
            ex = g_cmds[k].fn(c, sub_argc, sub);
            vkv_close(c);
        }
        free(sub);
        return ex;
    }
    fprintf(stderr, "vkvctl: unknown command '%s'\n", argv[i]);
    usage(stderr);
    return EX_USAGE;
}
