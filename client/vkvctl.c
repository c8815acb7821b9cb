/*
 * vkvctl - inspect and manage a running vkvd.
 *
 *   vkvctl [--rundir DIR] [--json] [--color auto|always|never] COMMAND [ARGS]
 *
 * Commands: status, stats, ls, namespaces, show, evict, delete, flush,
 * verify, export, top, ping. `vkvctl help` and `vkvctl COMMAND --help`
 * describe each; see also the man page (docs/vkvctl.1). `--json` (before or
 * after the command) prints one JSON value per result with stable field
 * names (docs/vkvctl.1 lists them).
 *
 * What `ls` prints can be pasted back: a KEY argument is any unique prefix
 * of at least 8 hex digits of a key (as git and docker take ids), resolved
 * through LIST against every entry, and `--ns` takes the full namespace, a
 * unique prefix of it (a shortened one as `ls` prints it, "..." included)
 * or the model part alone. Without `--ns` a key prefix is looked up in every
 * namespace. An ambiguous prefix lists its candidates and exits 2.
 *
 * Human output fits the terminal (TIOCGWINSZ; $COLUMNS when stdout is not
 * one) and is coloured only on a terminal (never with NO_COLOR set).
 *
 * Exit codes: 0 ok, 1 the daemon answered an error (or `verify` found corrupt
 * entries), 2 usage error (an ambiguous or too short prefix included), 3
 * cannot reach the daemon, 4 not found, 5 local I/O error (export could not
 * write its file).
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "client/client_internal.h"
#include "daemon/counters.h"
#include "kernels/codec_math.h"
#include "kernels/codec_tc.h"
#include "common/errbuf.h"
#include "proto/proto.h"
#include "tensor/f16.h"
#include "tensor/safetensors.h"
#include "vkv/vkv.h"

enum { EX_OK = 0, EX_ERR = 1, EX_USAGE = 2, EX_CONN = 3, EX_NOTFOUND = 4, EX_IO = 5 };

static int g_json;
static const char *g_rundir;
static int g_color;      /* 1: ANSI colours on stdout (decided once in main) */
static int g_color_err;  /* 1: ANSI colours on stderr */
static unsigned g_width; /* columns of the terminal; 0 = unlimited (not a terminal) */

#define KEY_MIN_HEX  8  /* shortest key prefix accepted */
#define KEY_SHOW_HEX 16 /* key digits `ls` prints (more when needed to be unique) */

/* ANSI escape for `code` ("1" bold, "32" green, ...) when colour is on for
 * stdout, else "". Static strings, never freed. */
static const char *col(const char *code)
{
    if (!g_color)
        return "";
    if (!strcmp(code, "1"))
        return "\033[1m";
    if (!strcmp(code, "2"))
        return "\033[2m";
    if (!strcmp(code, "31"))
        return "\033[31m";
    if (!strcmp(code, "32"))
        return "\033[32m";
    if (!strcmp(code, "33"))
        return "\033[33m";
    if (!strcmp(code, "34"))
        return "\033[34m";
    if (!strcmp(code, "36"))
        return "\033[36m";
    return "";
}

/* The reset sequence matching col(), or "". */
static const char *rst(void)
{
    return g_color ? "\033[0m" : "";
}

/* Whether colour is wanted on fd: `when` is "always", "never" or "auto"
 * (a terminal, NO_COLOR unset or empty, TERM not "dumb"). */
static int want_color(const char *when, int fd)
{
    if (!strcmp(when, "always"))
        return 1;
    if (!strcmp(when, "never"))
        return 0;
    const char *nc = getenv("NO_COLOR"), *term = getenv("TERM");
    if (nc && *nc)
        return 0;
    if (term && !strcmp(term, "dumb"))
        return 0;
    return isatty(fd);
}

/* Width of stdout's terminal (TIOCGWINSZ), else $COLUMNS, else 0 (unlimited). */
static unsigned term_width(void)
{
    struct winsize ws;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    const char *cols = getenv("COLUMNS");
    long v = cols ? strtol(cols, NULL, 10) : 0;
    return v > 0 && v < 100000 ? (unsigned)v : 0;
}

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
        fprintf(stderr, "%svkvctl:%s %s\n", g_color_err ? "\033[31m" : "",
                g_color_err ? "\033[0m" : "", what && *what ? what : vkv_strerror(rc));
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

/* Counter by name from a STATS reply (0 if absent); callers name it with
 * VKVD_COUNTER(name), checked against daemon/counters.h at compile time. */
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

/* Prints (or emits) one status screen from a STATS reply. */
static void print_status(vkv_client *c, const vkvp_reply *rep)
{
    /* A cold hit is a hit too (the block was restored and served). */
    uint64_t hits = ctr(rep, VKVD_COUNTER(hits)) + ctr(rep, VKVD_COUNTER(cold_hits)),
             misses = ctr(rep, VKVD_COUNTER(misses));
    double rate = hits + misses ? (double)hits / (double)(hits + misses) : 0.0;
    if (g_json) {
        cJSON *o = cJSON_CreateObject();
        char ep[24];
        snprintf(ep, sizeof ep, "%016" PRIx64, vkv_client_epoch(c));
        cJSON_AddStringToObject(o, "epoch", ep);
        cJSON_AddStringToObject(o, "backend",
                                ctr(rep, VKVD_COUNTER(backend_cuda)) ? "cuda" : "host");
        cJSON *hot = cJSON_AddObjectToObject(o, "hot");
        cJSON_AddNumberToObject(hot, "capacity_bytes",
                                (double)ctr(rep, VKVD_COUNTER(bytes_capacity)));
        cJSON_AddNumberToObject(hot, "used_bytes", (double)ctr(rep, VKVD_COUNTER(bytes_used)));
        cJSON_AddNumberToObject(hot, "free_bytes", (double)ctr(rep, VKVD_COUNTER(bytes_free)));
        cJSON_AddNumberToObject(hot, "entries", (double)ctr(rep, VKVD_COUNTER(entries_ready)));
        cJSON_AddNumberToObject(hot, "writing", (double)ctr(rep, VKVD_COUNTER(entries_writing)));
        cJSON *cold = cJSON_AddObjectToObject(o, "cold");
        cJSON_AddNumberToObject(cold, "entries", (double)ctr(rep, VKVD_COUNTER(entries_cold)));
        cJSON_AddNumberToObject(cold, "bytes", (double)ctr(rep, VKVD_COUNTER(bytes_cold)));
        if (ctr(rep, VKVD_COUNTER(remote_available))) {
            cJSON *rt = cJSON_AddObjectToObject(o, "remote");
            cJSON_AddNumberToObject(rt, "hits", (double)ctr(rep, VKVD_COUNTER(remote_hits)));
            cJSON_AddNumberToObject(rt, "misses", (double)ctr(rep, VKVD_COUNTER(remote_misses)));
            cJSON_AddNumberToObject(rt, "errors", (double)ctr(rep, VKVD_COUNTER(remote_errors)));
            cJSON_AddNumberToObject(rt, "bytes_in",
                                    (double)ctr(rep, VKVD_COUNTER(remote_fetch_bytes)));
            cJSON_AddNumberToObject(rt, "published",
                                    (double)ctr(rep, VKVD_COUNTER(remote_publishes)));
            cJSON_AddNumberToObject(rt, "publish_dropped",
                                    (double)ctr(rep, VKVD_COUNTER(remote_publish_refused)));
            cJSON_AddNumberToObject(rt, "publish_errors",
                                    (double)ctr(rep, VKVD_COUNTER(remote_publish_errors)));
            cJSON_AddNumberToObject(rt, "queue_bytes",
                                    (double)ctr(rep, VKVD_COUNTER(remote_queue_bytes)));
            uint64_t rh = ctr(rep, VKVD_COUNTER(remote_hits));
            cJSON_AddNumberToObject(
                rt, "mean_fetch_ms",
                rh ? (double)ctr(rep, VKVD_COUNTER(remote_fetch_ns)) / 1e6 / (double)rh : 0.0);
        }
        cJSON_AddNumberToObject(o, "hits", (double)hits);
        cJSON_AddNumberToObject(o, "misses", (double)misses);
        cJSON_AddNumberToObject(o, "hit_rate", rate);
        cJSON_AddNumberToObject(o, "sessions", (double)ctr(rep, VKVD_COUNTER(sessions)));
        cJSON_AddNumberToObject(o, "leases", (double)ctr(rep, VKVD_COUNTER(leases_active)));
        emit(o);
    } else {
        char a[32], b[32], d[32];
        printf("vkvd epoch %016" PRIx64 ", backend %s\n", vkv_client_epoch(c),
               ctr(rep, VKVD_COUNTER(backend_cuda)) ? "cuda" : "host");
        printf("hot:  %s used of %s (%s free), %" PRIu64 " entries, %" PRIu64 " being written\n",
               hsize(ctr(rep, VKVD_COUNTER(bytes_used)), a, sizeof a),
               hsize(ctr(rep, VKVD_COUNTER(bytes_capacity)), b, sizeof b),
               hsize(ctr(rep, VKVD_COUNTER(bytes_free)), d, sizeof d),
               ctr(rep, VKVD_COUNTER(entries_ready)), ctr(rep, VKVD_COUNTER(entries_writing)));
        printf("cold: %" PRIu64 " entries, %s\n", ctr(rep, VKVD_COUNTER(entries_cold)),
               hsize(ctr(rep, VKVD_COUNTER(bytes_cold)), a, sizeof a));
        if (ctr(rep, VKVD_COUNTER(remote_available))) {
            uint64_t rh = ctr(rep, VKVD_COUNTER(remote_hits));
            printf("remote: %" PRIu64 " hits (%s, mean %.2f ms), %" PRIu64 " misses, %" PRIu64
                   " errors; %" PRIu64 " published, %" PRIu64 " dropped, %" PRIu64
                   " failed, %s queued\n",
                   rh, hsize(ctr(rep, VKVD_COUNTER(remote_fetch_bytes)), a, sizeof a),
                   rh ? (double)ctr(rep, VKVD_COUNTER(remote_fetch_ns)) / 1e6 / (double)rh : 0.0,
                   ctr(rep, VKVD_COUNTER(remote_misses)), ctr(rep, VKVD_COUNTER(remote_errors)),
                   ctr(rep, VKVD_COUNTER(remote_publishes)),
                   ctr(rep, VKVD_COUNTER(remote_publish_refused)),
                   ctr(rep, VKVD_COUNTER(remote_publish_errors)),
                   hsize(ctr(rep, VKVD_COUNTER(remote_queue_bytes)), b, sizeof b));
        }
        printf("fetch: %" PRIu64 " hits (%" PRIu64 " from the cold tier), %" PRIu64
               " misses (hit rate %.1f%%), %" PRIu64 " evictions, %" PRIu64 " spills, %" PRIu64
               " restores\n",
               hits, ctr(rep, VKVD_COUNTER(cold_hits)), misses, 100.0 * rate,
               ctr(rep, VKVD_COUNTER(evictions)), ctr(rep, VKVD_COUNTER(spills)),
               ctr(rep, VKVD_COUNTER(restores)));
        printf("sessions %" PRIu64 " (reaped %" PRIu64 "), leases %" PRIu64 "\n",
               ctr(rep, VKVD_COUNTER(sessions)), ctr(rep, VKVD_COUNTER(sessions_reaped)),
               ctr(rep, VKVD_COUNTER(leases_active)));
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

static int cmd_status(vkv_client *c, int argc, char **argv)
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
            return EX_OK;
        default:
            usage_status(stderr);
            return EX_USAGE;
        }
    }
    if (optind < argc || interval < 10 || interval > 3600000 || iterations == 0 ||
        iterations < -1 || (!watch && iterations != -1)) {
        usage_status(stderr);
        return EX_USAGE;
    }
    if (!watch)
        iterations = 1;
    int redraw = watch && !g_json && isatty(STDOUT_FILENO);
    for (long it = 0; iterations < 0 || it < iterations; it++) {
        if (it) {
            struct timespec ts = {interval / 1000, (interval % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        int ex = 0;
        vkvp_reply *rep = get_stats(c, &ex);
        if (!rep)
            return ex;
        if (redraw)
            fputs("\033[H\033[2J", stdout);
        print_status(c, rep);
        vkvp_reply_free(rep);
        fflush(stdout);
    }
    return EX_OK;
}

/* Writes last-access time last_ms (ms since the epoch; 0: never) into the
 * caller's when[cap] as local "YYYY-MM-DD HH:MM:SS", or "-" for never. */
static void format_when(uint64_t last_ms, char *when, size_t cap)
{
    snprintf(when, cap, "-");
    if (last_ms) {
        time_t t = (time_t)(last_ms / 1000);
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(when, cap, "%Y-%m-%d %H:%M:%S", &tm);
    }
}

/* Adds one entry (its strings may be unterminated wire strings) to a JSON
 * array, or prints it in the `show` form (one field per line). */
static void show_entry(const vkvp_entry *e, cJSON *arr)
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
    char sz[32], when[32];
    format_when(e->last_ms, when, sizeof when);
    printf("%skey:%s      %s\n%sns:%s       %.*s\n", col("1"), rst(), hex, col("1"), rst(),
           (int)e->ns.len, e->ns.ptr ? e->ns.ptr : "");
    printf("state:    %s\ntier:     %s\nsize:     %s\nhits:     %" PRIu64 "\nlast:     %s\n"
           "pins:     %" PRIu64 "\nshape:    %.*s\n",
           vkvp_state_name(e->state), vkvp_tier_name(e->tier), hsize(e->size, sz, sizeof sz),
           e->hits, when, e->pins, (int)e->shape.len, e->shape.ptr ? e->shape.ptr : "");
}

/* ---- listing every entry, and resolving what the user typed ---------------- */

/* One listed entry. e.ns and e.shape point into the scan that holds it. */
struct ent {
    vkvp_entry e;
    size_t ns_ix; /* index into scan.ns */
};

/* Entries listed through LIST (every page), with the namespaces interned.
 * Owns every string; release with scan_free. */
struct scan {
    struct ent *v;
    size_t n, cap;
    char **ns; /* distinct namespaces in order of first appearance, malloc'ed */
    size_t nns, nscap;
};

/* Frees everything a scan owns and zeroes it. */
static void scan_free(struct scan *s)
{
    for (size_t i = 0; i < s->n; i++)
        free((char *)s->v[i].e.shape.ptr);
    for (size_t i = 0; i < s->nns; i++)
        free(s->ns[i]);
    free(s->v);
    free(s->ns);
    memset(s, 0, sizeof *s);
}

/* Index of namespace text (len bytes) in s, interning a copy when new;
 * (size_t)-1 when out of memory. */
static size_t scan_intern(struct scan *s, const char *p, size_t len)
{
    for (size_t i = 0; i < s->nns; i++)
        if (strlen(s->ns[i]) == len && memcmp(s->ns[i], p, len) == 0)
            return i;
    if (s->nns == s->nscap) {
        size_t nc = s->nscap ? 2 * s->nscap : 16;
        char **na = realloc(s->ns, nc * sizeof *na);
        if (!na)
            return (size_t)-1;
        s->ns = na;
        s->nscap = nc;
    }
    char *d = malloc(len + 1);
    if (!d)
        return (size_t)-1;
    memcpy(d, p, len);
    d[len] = '\0';
    s->ns[s->nns] = d;
    return s->nns++;
}

/* Lists entries page by page (LIST with a cursor) into *s (zeroed first):
 * only namespace `ns` when not NULL (exact, as the daemon filters), only
 * tier `tier` ("hot"/"cold") when not NULL, and at most `max` entries when
 * max >= 0. Returns 0, or the exit code after reporting. */
static int scan_entries(vkv_client *c, const char *ns, const char *tier, long max, struct scan *s)
{
    memset(s, 0, sizeof *s);
    uint64_t cursor = 0;
    do {
        vkvp_request rq;
        vkvp_reply *rep;
        char why[256] = "";
        vkvp_request_init(&rq, VKVP_LIST, 0);
        rq.u.list.session = vkvc_session(c);
        rq.u.list.cursor = cursor;
        rq.u.list.limit = VKVP_MAX_LIST;
        if (ns) {
            rq.u.list.has_ns = true;
            rq.u.list.ns = vkvp_cstr(ns);
        }
        int rc = vkvc_call(c, &rq, &rep, why, sizeof why);
        if (rc) {
            scan_free(s);
            return fail(rc, why);
        }
        for (uint32_t i = 0; i < rep->u.list.nentries; i++) {
            const vkvp_entry *e = &rep->u.list.entries[i];
            if (tier && strcmp(vkvp_tier_name(e->tier), tier))
                continue;
            if (max >= 0 && (long)s->n >= max)
                break;
            if (s->n == s->cap) {
                size_t nc = s->cap ? 2 * s->cap : 256;
                struct ent *na = realloc(s->v, nc * sizeof *na);
                if (!na)
                    goto oom;
                s->v = na;
                s->cap = nc;
            }
            size_t ix = scan_intern(s, e->ns.ptr ? e->ns.ptr : "", e->ns.len);
            char *shape = malloc(e->shape.len + 1);
            if (ix == (size_t)-1 || !shape) {
                free(shape);
                goto oom;
            }
            memcpy(shape, e->shape.ptr ? e->shape.ptr : "", e->shape.len);
            shape[e->shape.len] = '\0';
            struct ent *d = &s->v[s->n++];
            d->e = *e;
            d->ns_ix = ix;
            d->e.shape = vkvp_cstr(shape);
            continue;
        oom:
            vkvp_reply_free(rep);
            scan_free(s);
            return fail(VKV_ENOMEM, NULL);
        }
        cursor = rep->u.list.next;
        vkvp_reply_free(rep);
    } while (cursor && (max < 0 || (long)s->n < max));
    for (size_t i = 0; i < s->n; i++) /* ns array is final now */
        s->v[i].e.ns = vkvp_cstr(s->ns[s->v[i].ns_ix]);
    return 0;
}

/* Length of the model part of namespace ns: the text before the first '@',
 * '|' or '#'. */
static size_t ns_model_len(const char *ns)
{
    return strcspn(ns, "@|#");
}

/* Number of leading characters that tell namespace ix apart from every
 * other namespace of s (its whole length at most). */
static size_t ns_unique_len(const struct scan *s, size_t ix)
{
    const char *a = s->ns[ix];
    size_t need = 1, n = strlen(a);
    for (size_t j = 0; j < s->nns; j++) {
        if (j == ix)
            continue;
        const char *b = s->ns[j];
        size_t k = 0;
        while (a[k] && a[k] == b[k])
            k++;
        if (k + 1 > need)
            need = k + 1;
    }
    return need < n ? need : n;
}

/* Whether namespace ns matches pattern pat[0..plen), in which "..." stands
 * for any text (as `ls` shortens names): ns starts with the text before the
 * first "...", holds the pieces between in order, and ends with the text
 * after the last one (anything when pat ends in "..."). */
static int ns_glob(const char *ns, const char *pat, size_t plen)
{
    const char *pe = pat + plen, *d = strstr(pat, "...");
    if (!d || d >= pe)
        return strlen(ns) == plen && !memcmp(ns, pat, plen);
    size_t n = (size_t)(d - pat);
    if (strncmp(ns, pat, n))
        return 0;
    const char *at = ns + n;
    pat = d + 3;
    while (pat < pe) {
        d = strstr(pat, "...");
        if (!d || d > pe)
            d = pe;
        n = (size_t)(d - pat);
        if (d == pe) { /* the last piece: a suffix of what is left */
            size_t left = strlen(at);
            return left >= n && !memcmp(at + left - n, pat, n);
        }
        char piece[VKVP_MAX_NS + 1];
        snprintf(piece, sizeof piece, "%.*s", (int)n, pat);
        const char *f = strstr(at, piece);
        if (!f)
            return 0;
        at = f + n;
        pat = d + 3;
    }
    return 1; /* pattern ended in "..." */
}

/* Number of namespaces of s that pattern pat matches (see ns_glob). */
static size_t ns_glob_count(const struct scan *s, const char *pat)
{
    size_t n = 0, plen = strlen(pat);
    for (size_t i = 0; i < s->nns; i++)
        n += (size_t)ns_glob(s->ns[i], pat, plen);
    return n;
}

/* Writes to out (VKVP_MAX_NS + 4 bytes) how `ls` prints namespace ix of s
 * in at most `avail` columns (0 = unlimited): whole when it fits; else
 * "HEAD...", "MODEL...PIECE..." or "HEAD...TAIL", the first such form that
 * fits and that resolve_ns maps back to this namespace alone; else (too
 * narrow) its shortest unique prefix and "...", wider than avail. */
static void ns_short(const struct scan *s, size_t ix, size_t avail, char *out)
{
    const char *ns = s->ns[ix];
    size_t n = strlen(ns);
    if (avail == 0 || n <= avail) {
        memcpy(out, ns, n + 1);
        return;
    }
    size_t u = ns_unique_len(s, ix), h;
    /* (a piece never ends in '.' next to "...", which would read as part of it) */
    if (u + 3 <= avail) { /* HEAD... */
        for (h = avail - 3; h > 0 && ns[h - 1] == '.'; h--)
            ;
        snprintf(out, VKVP_MAX_NS + 4, "%.*s...", (int)h, ns);
        if (ns_glob(ns, out, strlen(out)) && ns_glob_count(s, out) == 1)
            return;
    }
    /* MODEL...PIECE...: the piece from the separator before the first
     * character that tells this name apart */
    size_t sep = u - 1;
    while (sep > 0 && !strchr("@|#:,/", ns[sep]))
        sep--;
    if (avail > 6 + (u - sep)) {
        size_t ml = ns_model_len(ns);
        h = avail - 6 - (u - sep);
        if (h > ml)
            h = ml;
        if (h > sep)
            h = sep;
        while (h > 0 && ns[h - 1] == '.')
            h--;
        size_t m = avail - 6 - h;
        if (sep + m > n)
            m = n - sep;
        while (m > 0 && ns[sep + m - 1] == '.')
            m--;
        if (h > 0 && m > 0) {
            snprintf(out, VKVP_MAX_NS + 4, "%.*s...%.*s...", (int)h, ns, (int)m, ns + sep);
            if (ns_glob(ns, out, strlen(out)) && ns_glob_count(s, out) == 1)
                return;
        }
    }
    for (size_t t = 1; avail > 3 + t; t++) { /* HEAD...TAIL */
        for (h = avail - 3 - t; h > 0 && ns[h - 1] == '.'; h--)
            ;
        if (ns[n - t] == '.')
            continue;
        snprintf(out, VKVP_MAX_NS + 4, "%.*s...%s", (int)h, ns, ns + n - t);
        if (ns_glob(ns, out, strlen(out)) && ns_glob_count(s, out) == 1)
            return;
    }
    /* too narrow for all of these: the model part and the distinguishing
     * piece, wider than avail but shorter than the unique prefix */
    size_t ml = ns_model_len(ns), m = u - sep;
    while (m > 0 && sep + m < n && ns[sep + m - 1] == '.')
        m++;
    if (ml > 0 && ml <= sep && ns[ml - 1] != '.' && ml + 6 + m < u + 3) {
        snprintf(out, VKVP_MAX_NS + 4, "%.*s...%.*s...", (int)ml, ns, (int)m, ns + sep);
        if (ns_glob(ns, out, strlen(out)) && ns_glob_count(s, out) == 1)
            return;
    }
    if (u >= n)
        memcpy(out, ns, n + 1);
    else
        snprintf(out, VKVP_MAX_NS + 4, "%.*s...", (int)u, ns);
}

/* Prints (or, with --json, emits) that `what` is ambiguous, listing the
 * candidate lines cand[0..n) (each "KEY  NS" or "NS"). Returns EX_USAGE. */
static int ambiguous(const char *what, const char *const *cand, size_t n, const char *hint)
{
    if (g_json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "error", "ambiguous");
        char msg[512];
        snprintf(msg, sizeof msg, "%s is ambiguous: %zu candidates", what, n);
        cJSON_AddStringToObject(o, "message", msg);
        cJSON *arr = cJSON_AddArrayToObject(o, "candidates");
        for (size_t i = 0; i < n; i++)
            cJSON_AddItemToArray(arr, cJSON_CreateString(cand[i]));
        emit(o);
        return EX_USAGE;
    }
    fprintf(stderr, "vkvctl: %s is ambiguous; %zu candidates:\n", what, n);
    for (size_t i = 0; i < n && i < 20; i++)
        fprintf(stderr, "  %s\n", cand[i]);
    if (n > 20)
        fprintf(stderr, "  ... and %zu more\n", n - 20);
    if (hint)
        fprintf(stderr, "%s\n", hint);
    return EX_USAGE;
}

/* Marks in mask[0..s->nns) the namespaces of s that `arg` (what the user
 * gave --ns) names: the exact name alone if there is one; else, when arg
 * holds "..." (a name `ls` shortened), those it matches with "..." standing
 * for any text (ns_glob); else those whose model part or fingerprint (text
 * before '#') is arg, or failing that those arg is a prefix of. Returns how
 * many it marked. */
static size_t ns_candidates(const struct scan *s, const char *arg, char *mask)
{
    size_t len = strlen(arg), n = 0;
    memset(mask, 0, s->nns);
    for (size_t i = 0; i < s->nns; i++)
        if (!strcmp(s->ns[i], arg)) {
            mask[i] = 1;
            return 1;
        }
    if (strstr(arg, "...")) {
        for (size_t i = 0; i < s->nns; i++)
            n += (size_t)(mask[i] = (char)ns_glob(s->ns[i], arg, len));
        return n;
    }
    for (size_t i = 0; i < s->nns; i++) {
        const char *ns = s->ns[i];
        size_t fp = strcspn(ns, "#");
        n += (size_t)(mask[i] =
                          (char)((ns_model_len(ns) == len || fp == len) && !strncmp(ns, arg, len)));
    }
    if (n == 0)
        for (size_t i = 0; i < s->nns; i++)
            n += (size_t)(mask[i] = (char)!strncmp(s->ns[i], arg, len));
    return n;
}

/* Reports that `arg` names no namespace (EX_NOTFOUND) or several of them,
 * those marked in mask (EX_USAGE), and returns that exit code. */
static int ns_report(const struct scan *s, const char *arg, const char *mask, size_t n)
{
    if (n == 0) {
        char msg[VKVP_MAX_NS + 64];
        snprintf(msg, sizeof msg, "no namespace matches '%s' (vkvctl namespaces lists them)", arg);
        return fail(VKV_ENOTFOUND, msg);
    }
    const char **cand = calloc(n, sizeof *cand);
    if (!cand)
        return fail(VKV_ENOMEM, NULL);
    size_t k = 0;
    for (size_t i = 0; i < s->nns && k < n; i++)
        if (mask[i])
            cand[k++] = s->ns[i];
    char what[VKVP_MAX_NS + 32];
    snprintf(what, sizeof what, "namespace '%s'", arg);
    int ex = ambiguous(what, cand, k, "give more of the namespace (vkvctl namespaces lists them)");
    free(cand);
    return ex;
}

/* Resolves `arg` (what the user gave --ns) to the one namespace of s it
 * names (ns_candidates). Returns its index, or (size_t)-1 after reporting,
 * with the exit code in *ex (EX_NOTFOUND: none; EX_USAGE: several). */
static size_t resolve_ns(const struct scan *s, const char *arg, int *ex)
{
    char *mask = malloc(s->nns + 1);
    if (!mask) {
        *ex = fail(VKV_ENOMEM, NULL);
        return (size_t)-1;
    }
    size_t n = ns_candidates(s, arg, mask), found = (size_t)-1;
    if (n == 1) {
        for (size_t i = 0; i < s->nns; i++)
            if (mask[i])
                found = i;
    } else {
        *ex = ns_report(s, arg, mask, n);
    }
    free(mask);
    return found;
}

/* Checks a KEY argument: 8..64 hex digits. Writes it in lower case to
 * hex[]. Returns 0, or EX_USAGE after saying why. */
static int key_prefix_arg(const char *arg, char hex[65])
{
    size_t n = strlen(arg);
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)arg[i]) || i >= 64) {
            char msg[200];
            snprintf(msg, sizeof msg,
                     "'%.80s' is not a key: give 8 to 64 hex digits "
                     "(the KEY column of vkvctl ls)",
                     arg);
            fail(VKV_EINVAL, msg);
            return EX_USAGE;
        }
    if (n < KEY_MIN_HEX) {
        char msg[200];
        snprintf(msg, sizeof msg, "key prefix '%s' is too short: give at least %d hex digits", arg,
                 KEY_MIN_HEX);
        fail(VKV_EINVAL, msg);
        return EX_USAGE;
    }
    for (size_t i = 0; i <= n; i++)
        hex[i] = (char)tolower((unsigned char)arg[i]);
    return 0;
}

/* An entry a KEY argument resolved to: its whole key and namespace. */
struct target {
    vkv_key key;
    size_t ns_ix; /* into the scan */
};

/* Where resolve_keys looks for keys: a full listing and the namespaces of
 * it that --ns allows. Borrows the scan; owns the mask (key_scope_free). */
struct key_scope {
    const struct scan *s;
    const char *ns_arg; /* --ns as given, or NULL */
    char *allowed;      /* malloc'ed mask over s->ns; NULL: every namespace */
    size_t nallowed;    /* how many namespaces the mask allows */
    size_t want_ns;     /* the one allowed namespace, or (size_t)-1 */
};

/* Frees what a key_scope owns. */
static void key_scope_free(struct key_scope *sc)
{
    free(sc->allowed);
    sc->allowed = NULL;
}

/* Whether namespace ix of the scan may hold the keys. */
static bool key_scope_allows(const struct key_scope *sc, size_t ix)
{
    return !sc->allowed || sc->allowed[ix];
}

/* Lists every entry into *s (the daemon's exact --ns filter first, every
 * namespace when that finds nothing) and sets *sc to the namespaces
 * ns_arg names (all of them when ns_arg is NULL). The caller frees *s with
 * scan_free (also on failure) and *sc with key_scope_free (only on
 * success). Returns 0 or the exit code after reporting (EX_NOTFOUND /
 * EX_USAGE when --ns names no namespace). */
static int key_scope_open(vkv_client *c, const char *ns_arg, struct scan *s, struct key_scope *sc)
{
    int ex;
    memset(sc, 0, sizeof *sc);
    sc->s = s;
    sc->ns_arg = ns_arg;
    sc->want_ns = (size_t)-1;
    if (!ns_arg)
        return scan_entries(c, NULL, NULL, -1, s);
    /* the daemon filters an exact namespace itself; anything else is
     * resolved against every namespace */
    if ((ex = scan_entries(c, ns_arg, NULL, -1, s)) != 0)
        return ex;
    if (s->n == 0) {
        scan_free(s);
        if ((ex = scan_entries(c, NULL, NULL, -1, s)) != 0)
            return ex;
    }
    if (!(sc->allowed = malloc(s->nns + 1)))
        return fail(VKV_ENOMEM, NULL);
    if ((sc->nallowed = ns_candidates(s, ns_arg, sc->allowed)) == 0) {
        key_scope_free(sc);
        return ns_report(s, ns_arg, NULL, 0);
    }
    for (size_t i = 0; sc->nallowed == 1 && i < s->nns; i++)
        if (sc->allowed[i])
            sc->want_ns = i;
    return 0;
}

/* Number of entries of the scope whose key starts with hex (lower case);
 * the index of the first of them into *first. */
static size_t key_matches(const struct key_scope *sc, const char *hex, size_t *first)
{
    size_t plen = strlen(hex), nm = 0;
    char kh[65];
    for (size_t j = 0; j < sc->s->n; j++) {
        const struct ent *e = &sc->s->v[j];
        vkv_key_hex(&e->e.key, kh);
        if (key_scope_allows(sc, e->ns_ix) && !strncmp(kh, hex, plen) && nm++ == 0)
            *first = j;
    }
    return nm;
}

/* Reports that KEY argument arg matches nothing in the scope. Returns
 * EX_NOTFOUND. */
static int key_not_found(const struct key_scope *sc, const char *arg)
{
    char msg[VKVP_MAX_NS + 160];
    if (sc->want_ns != (size_t)-1)
        snprintf(msg, sizeof msg, "no entry matches key '%s' in namespace '%s'", arg,
                 sc->s->ns[sc->want_ns]);
    else if (sc->allowed)
        snprintf(msg, sizeof msg,
                 "no entry matches key '%s' in the %zu namespaces '%s' "
                 "names",
                 arg, sc->nallowed, sc->ns_arg);
    else
        snprintf(msg, sizeof msg, "no entry matches key '%s'", arg);
    return fail(VKV_ENOTFOUND, msg);
}

/* Reports that KEY argument arg (hex in lower case) matches the nm > 1
 * entries of the scope, the first at index first, listing them as "KEY  NS"
 * lines (its own memory, freed here). Returns EX_USAGE, or the exit code of
 * running out of memory. */
static int key_ambiguous(const struct key_scope *sc, const char *arg, const char *hex, size_t nm,
                         size_t first)
{
    const struct scan *s = sc->s;
    size_t plen = strlen(hex), k = 0;
    char **cand = calloc(nm, sizeof *cand), kh[65];
    int same_key = 1;
    for (size_t j = 0; cand && j < s->n && k < nm; j++) {
        const struct ent *e = &s->v[j];
        vkv_key_hex(&e->e.key, kh);
        if (!key_scope_allows(sc, e->ns_ix) || strncmp(kh, hex, plen))
            continue;
        if (memcmp(e->e.key.b, s->v[first].e.key.b, VKV_KEY_LEN))
            same_key = 0;
        size_t cap = 64 + 2 + strlen(s->ns[e->ns_ix]) + 1;
        if (!(cand[k] = malloc(cap)))
            break;
        snprintf(cand[k++], cap, "%s  %s", kh, s->ns[e->ns_ix]);
    }
    char what[128];
    snprintf(what, sizeof what, "key prefix '%s'", arg);
    int ex = cand && k == nm ? ambiguous(what, (const char *const *)cand, nm,
                                         same_key ? "the key is in several namespaces: "
                                                    "add --ns NS"
                                                  : "give more hex digits of the key")
                             : fail(VKV_ENOMEM, NULL);
    for (size_t j = 0; cand && j < k; j++)
        free(cand[j]);
    free(cand);
    return ex;
}

/* Resolves KEY argument arg (already checked by key_prefix_arg) to the one
 * entry of the scope it names, into *out; see resolve_keys for missing_ok.
 * Returns 0 or the exit code after reporting. */
static int resolve_key(const struct key_scope *sc, const char *arg, int missing_ok,
                       struct target *out)
{
    char hex[65];
    size_t first = 0;
    key_prefix_arg(arg, hex);
    size_t nm = key_matches(sc, hex, &first);
    if (nm == 0 && missing_ok && strlen(hex) == 64 && sc->want_ns != (size_t)-1) {
        vkv_key_parse(hex, &out->key);
        out->ns_ix = sc->want_ns;
        return 0;
    }
    if (nm == 0)
        return key_not_found(sc, arg);
    if (nm > 1)
        return key_ambiguous(sc, arg, hex, nm, first);
    out->key = sc->s->v[first].e.key;
    out->ns_ix = sc->s->v[first].ns_ix;
    return 0;
}

/* Resolves KEY arguments args[0..n) (with --ns value ns_arg, or NULL: every
 * namespace) into out[0..n) through a full listing, kept in *s for the
 * namespace strings (caller frees it with scan_free, also on failure).
 * --ns may name several namespaces (a model part with two codecs) as long
 * as each key is then found in one of them.
 * Returns 0 or the exit code after reporting: EX_USAGE for a malformed,
 * too short or ambiguous prefix, EX_NOTFOUND when nothing matches. With
 * missing_ok, a whole key (64 digits) that matches nothing in a namespace
 * --ns resolved to is passed on as it is (the daemon then counts 0), as
 * all commands did before prefixes (so INFO still shows an entry being
 * written, which LIST leaves out). */
static int resolve_keys(vkv_client *c, const char *ns_arg, char **args, int n, struct scan *s,
                        struct target *out, int missing_ok)
{
    char hex[65];
    int ex;
    for (int i = 0; i < n; i++)
        if ((ex = key_prefix_arg(args[i], hex)) != 0) {
            memset(s, 0, sizeof *s);
            return ex;
        }
    struct key_scope sc;
    if ((ex = key_scope_open(c, ns_arg, s, &sc)) != 0)
        return ex;
    for (int i = 0; i < n && ex == 0; i++)
        ex = resolve_key(&sc, args[i], missing_ok, &out[i]);
    key_scope_free(&sc);
    return ex;
}

/* qsort comparator: keys in byte order. */
static int cmp_key(const void *a, const void *b)
{
    return memcmp(((const vkv_key *)a)->b, ((const vkv_key *)b)->b, VKV_KEY_LEN);
}

/* Hex digits `ls` prints per key: KEY_SHOW_HEX, more when two different
 * keys of s would share that prefix (so every printed prefix resolves). */
static size_t key_show_len(const struct scan *s)
{
    size_t n = s->n, need = KEY_SHOW_HEX;
    vkv_key *k = malloc((n + 1) * sizeof *k);
    if (!k)
        return 64;
    for (size_t i = 0; i < n; i++)
        k[i] = s->v[i].e.key;
    qsort(k, n, sizeof *k, cmp_key);
    for (size_t i = 1; i < n; i++) {
        char a[65], b[65];
        vkv_key_hex(&k[i - 1], a);
        vkv_key_hex(&k[i], b);
        size_t c = 0;
        while (c < 64 && a[c] == b[c])
            c++;
        if (c < 64 && c + 1 > need) /* c == 64: the same key in two namespaces */
            need = c + 1;
    }
    free(k);
    return need;
}

/* ---- ls, namespaces ---------------------------------------------------------- */

static int g_sort_field; /* 0 none, 1 recency, 2 size, 3 hits */

/* qsort comparator: descending by the chosen field, then by key. */
static int cmp_entry(const void *a, const void *b)
{
    const vkvp_entry *x = &((const struct ent *)a)->e;
    const vkvp_entry *y = &((const struct ent *)b)->e;
    uint64_t u = 0, v = 0;
    switch (g_sort_field) {
    case 1:
        u = x->last_ms, v = y->last_ms;
        break;
    case 2:
        u = x->size, v = y->size;
        break;
    case 3:
        u = x->hits, v = y->hits;
        break;
    default:
        break;
    }
    if (u != v)
        return u > v ? -1 : 1;
    return memcmp(x->key.b, y->key.b, VKV_KEY_LEN);
}

/* Prints the usage of `ls` to fp. */
static void usage_ls(FILE *fp)
{
    fprintf(fp, "usage: vkvctl ls [--ns NS] [--tier hot|cold] [--sort recency|size|hits] "
                "[--limit N] [--long] [--quiet]\n"
                "  Lists entries (every namespace unless --ns; NS may be a unique prefix or\n"
                "  the model part). The KEY column is a unique key prefix and a long\n"
                "  namespace is shortened to fit the terminal, ending in \"...\": both can be\n"
                "  pasted into show, evict, delete and export. --long prints whole keys and\n"
                "  namespaces; --quiet only the keys. --sort orders by last access, size or\n"
                "  hits, largest first; without it entries come in the daemon's order.\n"
                "  --json prints an array of entry objects (whole keys and namespaces).\n");
}

/* Colour of a state name in `ls`. */
static const char *state_col(int state)
{
    switch (state) {
    case VKVP_STATE_READY:
        return col("32");
    case VKVP_STATE_COLD:
        return col("34");
    default:
        return col("33");
    }
}

/* Options of `ls`, as ls_parse reads them. The strings point into argv. */
struct ls_opts {
    const char *ns;   /* --ns as given, or NULL: every namespace */
    const char *tier; /* "hot", "cold", or NULL: both */
    long limit;       /* at most this many rows; -1: all */
    int sort;         /* the order (g_sort_field's values): 0 the daemon's */
    int long_form;    /* --long: whole keys and namespaces */
    int quiet;        /* --quiet: only the keys */
};

/* The g_sort_field value of a --sort name into *field. Returns false when
 * the name is not one of recency, size, hits. */
static bool ls_sort_field(const char *name, int *field)
{
    static const char *const names[] = {"recency", "size", "hits"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, names[i])) {
            *field = i + 1;
            return true;
        }
    return false;
}

/* Parses the options of `ls` into *o. Returns true to go on; else false
 * with the exit code in *ex (help printed: EX_OK; a bad option or operand:
 * EX_USAGE after printing the usage to stderr). */
static bool ls_parse(int argc, char **argv, struct ls_opts *o, int *ex)
{
    static const struct option opts[] = {
        {"ns", required_argument, NULL, 'n'},   {"limit", required_argument, NULL, 'l'},
        {"tier", required_argument, NULL, 't'}, {"sort", required_argument, NULL, 's'},
        {"long", no_argument, NULL, 'L'},       {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},       {0, 0, 0, 0}};
    const char *sort = NULL;
    int opt;
    memset(o, 0, sizeof *o);
    o->limit = -1;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "n:l:t:s:Lqh", opts, NULL)) != -1) {
        switch (opt) {
        case 'n':
            o->ns = optarg;
            break;
        case 'l':
            o->limit = strtol(optarg, NULL, 10);
            break;
        case 't':
            o->tier = optarg;
            break;
        case 's':
            sort = optarg;
            break;
        case 'L':
            o->long_form = 1;
            break;
        case 'q':
            o->quiet = 1;
            break;
        case 'h':
            usage_ls(stdout);
            *ex = EX_OK;
            return false;
        default:
            usage_ls(stderr);
            *ex = EX_USAGE;
            return false;
        }
    }
    if ((sort && !ls_sort_field(sort, &o->sort)) ||
        (o->tier && strcmp(o->tier, "hot") && strcmp(o->tier, "cold")) || o->limit == 0 ||
        optind < argc) {
        usage_ls(stderr);
        *ex = EX_USAGE;
        return false;
    }
    return true;
}

/* Moves the rows `ls` shows to the front of s->v (only namespace want_ns
 * unless it is (size_t)-1, only tier o->tier when set), sorts them as
 * o->sort asks and cuts them to o->limit. Returns how many rows to show. */
static size_t ls_select(struct scan *s, size_t want_ns, const struct ls_opts *o)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct ent *e = &s->v[i];
        if ((want_ns != (size_t)-1 && e->ns_ix != want_ns) ||
            (o->tier && strcmp(vkvp_tier_name(e->e.tier), o->tier)))
            continue;
        struct ent t = s->v[i];
        s->v[i] = s->v[n];
        s->v[n++] = t;
    }
    g_sort_field = o->sort;
    if (g_sort_field && n > 1)
        qsort(s->v, n, sizeof *s->v, cmp_entry);
    if (o->limit > 0 && (long)n > o->limit)
        n = (size_t)o->limit;
    return n;
}

/* Columns of the `ls` table: how many key digits, which optional columns,
 * and the width left to the namespace (0 = unlimited). */
struct ls_layout {
    size_t klen, avail;
    int show_when, show_hits, show_state;
};

/* Width the NAMESPACE column needs for rows s->v[0..n) to stay unique
 * (about a name's unique prefix + "...", at most 24 for a long name) into
 * *need. Returns false when out of memory (its scratch is freed). */
static bool ls_ns_need(const struct scan *s, size_t n, size_t *need)
{
    size_t *uniq = calloc(s->nns + 1, sizeof *uniq);
    if (!uniq)
        return false;
    size_t ns_need = 9; /* "NAMESPACE" */
    for (size_t i = 0; i < s->nns; i++)
        uniq[i] = ns_unique_len(s, i);
    for (size_t i = 0; i < n; i++) {
        /* the narrowest a name can get is about its unique prefix + "..." */
        size_t ix = s->v[i].ns_ix, full = strlen(s->ns[ix]);
        size_t w = uniq[ix] + 3 < full ? uniq[ix] + 3 : full;
        if (w > 24 && full > 24) /* a HEAD...TAIL form may be shorter */
            w = 24;
        if (w > ns_need)
            ns_need = w;
    }
    free(uniq);
    *need = ns_need;
    return true;
}

/* Fits the table to the terminal: the namespace gets what the other
 * columns leave; when that is less than ns_need, drop LAST ACCESS, then
 * HITS, then STATE. Nothing is dropped with --long or off a terminal. */
static struct ls_layout ls_fit(size_t klen, int long_form, size_t ns_need)
{
    struct ls_layout lay = {klen, 0, 1, 1, 1};
    /* key, state, tier, size, hits, last access, the space before the namespace */
    size_t fixed = klen + 2 + 10 + 5 + 11 + 7 + 21 + 1;
    if (g_width && !long_form && fixed + ns_need > g_width)
        lay.show_when = 0, fixed -= 21;
    if (g_width && !long_form && fixed + ns_need > g_width)
        lay.show_hits = 0, fixed -= 7;
    if (g_width && !long_form && fixed + ns_need > g_width)
        lay.show_state = 0, fixed -= 10;
    lay.avail = long_form || !g_width ? 0 : g_width > fixed ? g_width - fixed : 1;
    return lay;
}

/* Prints the header line of the `ls` table laid out as lay. */
static void ls_print_header(const struct ls_layout *lay)
{
    printf("%s%-*s  ", col("1"), (int)lay->klen, "KEY");
    if (lay->show_state)
        printf("%-9s ", "STATE");
    printf("%-4s %10s ", "TIER", "SIZE");
    if (lay->show_hits)
        printf("%6s ", "HITS");
    if (lay->show_when)
        printf(" %-19s ", "LAST ACCESS");
    printf(" NAMESPACE%s\n", rst());
}

/* Prints the `ls` row of entry d of s laid out as lay. shown (the caller's,
 * VKVP_MAX_NS + 4 bytes per namespace of s, zeroed) caches each namespace
 * as printed, shortened once. */
static void ls_print_row(const struct scan *s, const struct ent *d, const struct ls_layout *lay,
                         char *shown)
{
    const vkvp_entry *e = &d->e;
    char hex[65], sz[32], when[32];
    vkv_key_hex(&e->key, hex);
    format_when(e->last_ms, when, sizeof when);
    printf("%s%-*.*s%s  ", col("36"), (int)lay->klen, (int)lay->klen, hex, rst());
    if (lay->show_state)
        printf("%s%-9s%s ", state_col(e->state), vkvp_state_name(e->state), rst());
    printf("%-4s %10s ", vkvp_tier_name(e->tier), hsize(e->size, sz, sizeof sz));
    if (lay->show_hits)
        printf("%6" PRIu64 " ", e->hits);
    if (lay->show_when)
        printf(" %-19s ", when);
    char *sh = shown + d->ns_ix * (VKVP_MAX_NS + 4); /* once per namespace */
    if (!sh[0])
        ns_short(s, d->ns_ix, lay->avail, sh);
    printf(" %s\n", sh);
}

/* Prints rows s->v[0..n) as the `ls` table (klen key digits, fitted to the
 * terminal unless long_form). Returns EX_OK, or the exit code after
 * reporting that memory ran out. */
static int ls_print_table(const struct scan *s, size_t n, size_t klen, int long_form)
{
    size_t ns_need;
    if (!ls_ns_need(s, n, &ns_need))
        return fail(VKV_ENOMEM, NULL);
    char *shown = calloc(s->nns + 1, VKVP_MAX_NS + 4); /* each namespace as printed */
    if (!shown)
        return fail(VKV_ENOMEM, NULL);
    struct ls_layout lay = ls_fit(klen, long_form, ns_need);
    ls_print_header(&lay);
    for (size_t i = 0; i < n; i++)
        ls_print_row(s, &s->v[i], &lay, shown);
    free(shown);
    return EX_OK;
}

/* Prints rows s->v[0..n) as `ls` does with --json (an array of entry
 * objects) or --quiet (the first klen digits of each key, one a line). */
static void ls_print_plain(const struct scan *s, size_t n, size_t klen)
{
    if (g_json) {
        cJSON *arr = cJSON_CreateArray();
        for (size_t i = 0; i < n; i++)
            show_entry(&s->v[i].e, arr);
        emit(arr);
        return;
    }
    char hex[65];
    for (size_t i = 0; i < n; i++) {
        vkv_key_hex(&s->v[i].e.key, hex);
        printf("%.*s\n", (int)klen, hex);
    }
}

/* `vkvctl ls`: lists the entries asked for as a table, keys only or JSON.
 * Returns the exit code. */
static int cmd_ls(vkv_client *c, int argc, char **argv)
{
    struct ls_opts o;
    int ex;
    if (!ls_parse(argc, argv, &o, &ex))
        return ex;
    /* Every entry is listed, even with --ns or --limit: the printed key and
     * namespace prefixes must be unique among all of them. */
    struct scan s;
    if ((ex = scan_entries(c, NULL, NULL, -1, &s)) != 0)
        return ex;
    size_t want_ns = (size_t)-1;
    if (o.ns && (want_ns = resolve_ns(&s, o.ns, &ex)) == (size_t)-1) {
        scan_free(&s);
        return ex;
    }
    size_t klen = o.long_form ? 64 : key_show_len(&s);
    size_t n = ls_select(&s, want_ns, &o);
    if (g_json || o.quiet)
        ls_print_plain(&s, n, klen);
    else
        ex = ls_print_table(&s, n, klen, o.long_form);
    scan_free(&s);
    return ex;
}

/* Prints the usage of `namespaces` to fp. */
static void usage_namespaces(FILE *fp)
{
    fprintf(fp, "usage: vkvctl namespaces [--quiet]\n"
                "  Every namespace that holds entries, with its entry counts per tier and\n"
                "  bytes; --quiet prints the names only. JSON: an array of {ns, model,\n"
                "  entries, hot, cold, bytes}.\n");
}

static int cmd_namespaces(vkv_client *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"quiet", no_argument, NULL, 'q'}, {"help", no_argument, NULL, 'h'}, {0, 0, 0, 0}};
    int o, quiet = 0;
    optind = 1;
    while ((o = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        if (o == 'q') {
            quiet = 1;
        } else if (o == 'h') {
            usage_namespaces(stdout);
            return EX_OK;
        } else {
            usage_namespaces(stderr);
            return EX_USAGE;
        }
    }
    if (optind < argc) {
        usage_namespaces(stderr);
        return EX_USAGE;
    }
    struct scan s;
    int ex = scan_entries(c, NULL, NULL, -1, &s);
    if (ex)
        return ex;
    uint64_t(*agg)[4] = calloc(s.nns + 1, sizeof *agg); /* entries, hot, cold, bytes */
    if (!agg) {
        scan_free(&s);
        return fail(VKV_ENOMEM, NULL);
    }
    for (size_t i = 0; i < s.n; i++) {
        uint64_t *a = agg[s.v[i].ns_ix];
        a[0]++;
        a[s.v[i].e.tier == VKVP_TIER_COLD ? 2 : 1]++;
        a[3] += s.v[i].e.size;
    }
    cJSON *arr = g_json ? cJSON_CreateArray() : NULL;
    if (!g_json && !quiet)
        printf("%s%8s %8s %8s %10s  NAMESPACE%s\n", col("1"), "ENTRIES", "HOT", "COLD", "SIZE",
               rst());
    for (size_t i = 0; i < s.nns; i++) {
        if (arr) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "ns", s.ns[i]);
            char model[VKVP_MAX_NS + 1];
            snprintf(model, sizeof model, "%.*s", (int)ns_model_len(s.ns[i]), s.ns[i]);
            cJSON_AddStringToObject(j, "model", model);
            cJSON_AddNumberToObject(j, "entries", (double)agg[i][0]);
            cJSON_AddNumberToObject(j, "hot", (double)agg[i][1]);
            cJSON_AddNumberToObject(j, "cold", (double)agg[i][2]);
            cJSON_AddNumberToObject(j, "bytes", (double)agg[i][3]);
            cJSON_AddItemToArray(arr, j);
        } else if (quiet) {
            puts(s.ns[i]);
        } else {
            char sz[32];
            printf("%8" PRIu64 " %8" PRIu64 " %8" PRIu64 " %10s  %s\n", agg[i][0], agg[i][1],
                   agg[i][2], hsize(agg[i][3], sz, sizeof sz), s.ns[i]);
        }
    }
    if (arr)
        emit(arr);
    free(agg);
    scan_free(&s);
    return EX_OK;
}

/* ---- fetching one block ------------------------------------------------------ */

/* Opens a worker-like session in namespace ns (full), fetches key (a cold
 * block is restored first; the fetch counts as a hit), and hands the view
 * to fn(view, arg, err, errlen), which returns 0 or a VKV_E* code with a
 * message in err. Releases the lease and the session before returning.
 * Returns 0, or the exit code after reporting (EX_IO when fn failed with
 * VKV_EIO). */
static int with_block(const char *ns, const vkv_key *key,
                      int (*fn)(const vkv_view *, void *, char *, size_t), void *arg)
{
    char keyhex[65], why[VKVP_MAX_NS + 200];
    vkv_key_hex(key, keyhex);
    vkv_options opt = {0};
    opt.rundir = g_rundir;
    opt.ns = ns;
    opt.ns_is_full = 1;
    opt.name = "vkvctl-fetch";
    opt.timeout_ms = 30000;
    vkv_client *w = NULL;
    int rc = vkv_connect(&opt, &w);
    if (rc) {
        snprintf(why, sizeof why, "cannot open a session in namespace '%s': %s", ns,
                 vkv_strerror(rc));
        return fail(rc, why);
    }
    vkv_fetch *f = NULL;
    if ((rc = vkv_fetch_begin(w, key, 1, &f)) != 0) {
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
    char err[256] = "";
    rc = fn(&view, arg, err, sizeof err);
    vkv_fetch_release(w, f);
    vkv_close(w);
    if (rc == VKV_EIO) {
        fail(rc, err);
        return EX_IO;
    }
    return rc ? fail(rc, err) : EX_OK;
}

/* ---- show ------------------------------------------------------------------ */

/* min / mean / max of the finite values added to it. */
struct stat3 {
    double min, max, sum;
    uint64_t n;
};

/* Adds v to st unless it is NaN or infinite. */
static void stat_add(struct stat3 *st, double v)
{
    if (!isfinite(v))
        return;
    if (st->n == 0 || v < st->min)
        st->min = v;
    if (st->n == 0 || v > st->max)
        st->max = v;
    st->sum += v;
    st->n++;
}

/* {min, mean, max, count} of st as JSON, or null when it saw no value. */
static cJSON *stat_json(const struct stat3 *st)
{
    if (st->n == 0)
        return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "min", st->min);
    cJSON_AddNumberToObject(o, "mean", st->sum / (double)st->n);
    cJSON_AddNumberToObject(o, "max", st->max);
    cJSON_AddNumberToObject(o, "count", (double)st->n);
    return o;
}

/* Little-endian 16-bit element at p, as a float of dtype. */
static float elem_f32(const uint8_t *p, int dtype)
{
    return vkvk_to_f32((uint16_t)(p[0] | (p[1] << 8)), dtype);
}

/* Scale statistics of one layer's LEV section of K or V (lev: its bytes,
 * levl: their count). rotsign: the per-token scales after the [kv_heads]
 * [head_dim] vector (scale bits sbits); tc: the per-token scales (each
 * head's top times its 8-bit code); the other rules: the spread
 * high - low of every group's two levels (CHANNEL rows or TOKEN pairs).
 * Returns 0, or VKV_ECORRUPT when levl does not match that layout. */
static int lev_stats(const vkv_block_header *h, int is_v, const uint8_t *lev, uint64_t levl,
                     uint32_t n_vis, struct stat3 *st)
{
    uint32_t H = h->kv_heads, D = h->head_dim;
    int mode = is_v ? h->v_mode : h->k_mode;
    memset(st, 0, sizeof *st);
    if (levl == 0)
        return 0;
    if (h->rule == VKV_RULE_TC) { /* per head a record ending in `top`, then the scale bytes */
        int coded = !is_v || mode == VKV_GROUP_TOKEN;
        uint64_t rec = vkvk_tc_rec_bytes(coded, D);
        if (levl != (uint64_t)H * rec + (uint64_t)n_vis * H)
            return VKV_ECORRUPT;
        for (uint64_t i = 0; i < (uint64_t)n_vis * H; i++)
            stat_add(st, vkvk_tc_scale(elem_f32(lev + (i % H) * rec + rec - 2, h->dtype),
                                       lev[(uint64_t)H * rec + i]));
        return 0;
    }
    if (h->rule == VKV_RULE_ROTSIGN) {
        int sbits = is_v ? h->v_group : h->k_group;
        uint64_t sb = (uint64_t)sbits / 8, vec = (uint64_t)H * D * 2;
        if (levl != vec + (uint64_t)n_vis * H * sb)
            return VKV_ECORRUPT;
        for (uint64_t i = 0; i < (uint64_t)n_vis * H; i++)
            stat_add(st, vkvk_rot_scale_get(lev + vec + i * sb, sbits, h->dtype));
        return 0;
    }
    if (mode == VKV_GROUP_CHANNEL) {
        uint64_t row = (uint64_t)D * 2, per = (uint64_t)H * 2 * row; /* one group, every head */
        if (levl % per)
            return VKV_ECORRUPT;
        for (uint64_t g = 0; g < levl / per; g++)
            for (uint32_t hh = 0; hh < H; hh++) {
                const uint8_t *lo = lev + g * per + (uint64_t)hh * 2 * row, *hi = lo + row;
                for (uint32_t d = 0; d < D; d++)
                    stat_add(st, (double)elem_f32(hi + 2 * d, h->dtype) -
                                     (double)elem_f32(lo + 2 * d, h->dtype));
            }
        return 0;
    }
    if (levl % 4)
        return VKV_ECORRUPT;
    for (uint64_t p = 0; p < levl / 4; p++)
        stat_add(st, (double)elem_f32(lev + 4 * p + 2, h->dtype) -
                         (double)elem_f32(lev + 4 * p, h->dtype));
    return 0;
}

/* Describes the block in view layer by layer into the JSON object arg:
 * codec, shape, visual ranges, raw-token share, bytes per section, and
 * per layer its bytes and K/V scale statistics. fn of with_block. */
static int block_layers(const vkv_view *view, void *arg, char *err, size_t errlen)
{
    cJSON *o = arg;
    vkv_block_header h;
    int rc = vkv_block_check(view->data, view->size, VKV_DECODE_VERIFY, &h);
    if (rc)
        return vkv_errbuf(err, errlen, rc, "block check failed: %s", vkv_strerror(rc));
    vkv_shape sh;
    vkv_codec_spec spec;
    vkv_block_shape(&h, &sh, &spec);
    char codec[128];
    vkv_codec_spec_format(&spec, codec, sizeof codec);
    uint32_t L = h.layers, n_vis = 0;
    for (uint32_t r = 0; r < h.n_ranges; r++)
        n_vis += h.ranges[r].len;
    uint64_t per[VKV_SEC_COUNT], sum = 0;
    for (int i = 0; i < VKV_SEC_COUNT; i++) {
        if (L == 0 || h.sections[i].size % L) {
            snprintf(err, errlen, "section %d of %llu bytes does not split into %u layers", i,
                     (unsigned long long)h.sections[i].size, L);
            return VKV_ECORRUPT;
        }
        per[i] = h.sections[i].size / L;
        sum += h.sections[i].size;
    }
    cJSON_AddStringToObject(o, "codec", codec);
    cJSON_AddStringToObject(o, "dtype", h.dtype == VKV_DTYPE_BF16 ? "bf16" : "f16");
    cJSON_AddNumberToObject(o, "layers", L);
    cJSON_AddNumberToObject(o, "tokens", h.tokens);
    cJSON_AddNumberToObject(o, "kv_heads", h.kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", h.head_dim);
    cJSON *vr = cJSON_AddArrayToObject(o, "visual_ranges");
    for (uint32_t r = 0; r < h.n_ranges; r++) {
        cJSON *p = cJSON_CreateArray();
        cJSON_AddItemToArray(p, cJSON_CreateNumber(h.ranges[r].start));
        cJSON_AddItemToArray(p, cJSON_CreateNumber(h.ranges[r].start + h.ranges[r].len));
        cJSON_AddItemToArray(vr, p);
    }
    cJSON_AddNumberToObject(o, "visual_tokens", n_vis);
    cJSON_AddNumberToObject(o, "raw_tokens", h.tokens - n_vis);
    cJSON_AddNumberToObject(o, "raw_token_share",
                            h.tokens ? (double)(h.tokens - n_vis) / h.tokens : 0.0);
    uint64_t raw = h.sections[VKV_SEC_RAW_K].size + h.sections[VKV_SEC_RAW_V].size;
    uint64_t bits = h.sections[VKV_SEC_BITS_K].size + h.sections[VKV_SEC_BITS_V].size;
    uint64_t lev = h.sections[VKV_SEC_LEV_K].size + h.sections[VKV_SEC_LEV_V].size;
    cJSON_AddNumberToObject(o, "bytes", (double)view->size);
    cJSON_AddNumberToObject(o, "header_bytes", h.header_size);
    cJSON_AddNumberToObject(o, "raw_bytes", (double)raw);
    cJSON_AddNumberToObject(o, "bits_bytes", (double)bits);
    cJSON_AddNumberToObject(o, "lev_bytes", (double)lev);
    cJSON_AddNumberToObject(o, "padding_bytes", (double)(h.total_size - h.header_size - sum));
    cJSON_AddNumberToObject(o, "raw_byte_share", (double)raw / (double)view->size);
    cJSON_AddNumberToObject(o, "bits_per_element", vkv_codec_bits_per_element(&sh, view->size));
    cJSON_AddStringToObject(
        o, "scale_kind", h.rule == VKV_RULE_ROTSIGN || h.rule == VKV_RULE_TC ? "scale" : "spread");
    cJSON *layers = cJSON_AddArrayToObject(o, "per_layer");
    const uint8_t *base = view->data;
    for (uint32_t l = 0; l < L; l++) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "layer", l);
        uint64_t b = 0;
        for (int i = 0; i < VKV_SEC_COUNT; i++)
            b += per[i];
        cJSON_AddNumberToObject(j, "bytes", (double)b);
        cJSON_AddNumberToObject(j, "raw_bytes", (double)(per[VKV_SEC_RAW_K] + per[VKV_SEC_RAW_V]));
        cJSON_AddNumberToObject(j, "bits_bytes",
                                (double)(per[VKV_SEC_BITS_K] + per[VKV_SEC_BITS_V]));
        cJSON_AddNumberToObject(j, "lev_bytes", (double)(per[VKV_SEC_LEV_K] + per[VKV_SEC_LEV_V]));
        for (int kv = 0; kv < 2; kv++) {
            int sec = kv ? VKV_SEC_LEV_V : VKV_SEC_LEV_K;
            struct stat3 st;
            const uint8_t *p = base + h.sections[sec].offset + (uint64_t)l * per[sec];
            if (lev_stats(&h, kv, p, per[sec], n_vis, &st) != 0) {
                cJSON_Delete(j);
                snprintf(err, errlen, "layer %u: %s section does not have the %s layout", l,
                         kv ? "LEV_V" : "LEV_K", codec);
                return VKV_ECORRUPT;
            }
            cJSON_AddItemToObject(j, kv ? "v_scale" : "k_scale", stat_json(&st));
        }
        cJSON_AddItemToArray(layers, j);
    }
    return 0;
}

/* Prints one min/mean/max triple of a per_layer item (or "-"), 26 columns. */
static void print_stat(const cJSON *st)
{
    if (!cJSON_IsObject(st)) {
        printf("  %-24s", "-");
        return;
    }
    char buf[64];
    snprintf(buf, sizeof buf, "%.3g / %.3g / %.3g", cJSON_GetObjectItem(st, "min")->valuedouble,
             cJSON_GetObjectItem(st, "mean")->valuedouble,
             cJSON_GetObjectItem(st, "max")->valuedouble);
    printf("  %-24s", buf);
}

/* Number field of a JSON object (0 when absent). */
static double jnum(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItem(o, name);
    return cJSON_IsNumber(v) ? v->valuedouble : 0.0;
}

/* Prints what block_layers put in o for a person. */
static void print_layers(const cJSON *o)
{
    char a[32], b[32], d[32], e[32];
    printf("%scodec:%s    %s\n", col("1"), rst(), cJSON_GetObjectItem(o, "codec")->valuestring);
    printf("%sblock:%s    %s, %.0f layers x %.0f tokens x %.0f kv heads x %.0f head dim\n",
           col("1"), rst(), cJSON_GetObjectItem(o, "dtype")->valuestring, jnum(o, "layers"),
           jnum(o, "tokens"), jnum(o, "kv_heads"), jnum(o, "head_dim"));
    printf("%svisual:%s   ", col("1"), rst());
    const cJSON *r;
    int first = 1;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(o, "visual_ranges"))
    {
        printf("%s%d:%d", first ? "tokens " : ",", cJSON_GetArrayItem(r, 0)->valueint,
               cJSON_GetArrayItem(r, 1)->valueint);
        first = 0;
    }
    printf("%s(%.0f visual, %.0f raw = %.1f%% of the tokens)\n", first ? "none " : " ",
           jnum(o, "visual_tokens"), jnum(o, "raw_tokens"), 100 * jnum(o, "raw_token_share"));
    printf("%sbytes:%s    %s = header %.0f B + raw %s (%.1f%%) + sign bits %s + %s %s + "
           "padding %.0f B; %.3f bits/element\n",
           col("1"), rst(), hsize((uint64_t)jnum(o, "bytes"), a, sizeof a), jnum(o, "header_bytes"),
           hsize((uint64_t)jnum(o, "raw_bytes"), b, sizeof b), 100 * jnum(o, "raw_byte_share"),
           hsize((uint64_t)jnum(o, "bits_bytes"), d, sizeof d),
           strcmp(cJSON_GetObjectItem(o, "scale_kind")->valuestring, "scale") ? "levels"
                                                                              : "means+scales",
           hsize((uint64_t)jnum(o, "lev_bytes"), e, sizeof e), jnum(o, "padding_bytes"),
           jnum(o, "bits_per_element"));
    const char *kind =
        strcmp(cJSON_GetObjectItem(o, "scale_kind")->valuestring, "scale") ? "SPREAD" : "SCALE";
    char kh[40], vh[40];
    snprintf(kh, sizeof kh, "K %s min/mean/max", kind);
    snprintf(vh, sizeof vh, "V %s min/mean/max", kind);
    printf("%s%5s %10s %10s %10s %10s  %-24s  %-24s%s\n", col("1"), "LAYER", "BYTES", "RAW", "BITS",
           "LEVELS", kh, vh, rst());
    const cJSON *l;
    cJSON_ArrayForEach(l, cJSON_GetObjectItem(o, "per_layer"))
    {
        printf("%5.0f %10s %10s %10s %10s", jnum(l, "layer"),
               hsize((uint64_t)jnum(l, "bytes"), a, sizeof a),
               hsize((uint64_t)jnum(l, "raw_bytes"), b, sizeof b),
               hsize((uint64_t)jnum(l, "bits_bytes"), d, sizeof d),
               hsize((uint64_t)jnum(l, "lev_bytes"), e, sizeof e));
        print_stat(cJSON_GetObjectItem(l, "k_scale"));
        print_stat(cJSON_GetObjectItem(l, "v_scale"));
        putchar('\n');
    }
}

/* Parses the options of a command that takes --ns NS, --help and, when
 * layers is not NULL, --layers (show, delete, export). Returns true to go on
 * (*ns set or NULL, optind at the first operand), else false with *ex the
 * exit code to return (help printed: EX_OK; bad option: EX_USAGE after
 * printing the usage to stderr). */
static bool parse_ns_opts(int argc, char **argv, void (*usage)(FILE *), const char **ns,
                          int *layers, int *ex)
{
    static const struct option opts[] = {{"ns", required_argument, NULL, 'n'},
                                         {"layers", no_argument, NULL, 'y'},
                                         {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    int o;
    *ns = NULL;
    optind = 1;
    while ((o = getopt_long(argc, argv, "n:h", opts, NULL)) != -1) {
        if (o == 'n') {
            *ns = optarg;
        } else if (o == 'y' && layers) {
            *layers = 1;
        } else if (o == 'h') {
            usage(stdout);
            *ex = EX_OK;
            return false;
        } else {
            usage(stderr);
            *ex = EX_USAGE;
            return false;
        }
    }
    return true;
}

/* Prints the usage of `show` to fp. */
static void usage_show(FILE *fp)
{
    fprintf(fp, "usage: vkvctl show [--ns NS] [--layers] KEY\n"
                "  One entry: namespace, state, tier, size, hits, last access, pins, shape.\n"
                "  KEY is a unique prefix of >= 8 hex digits (as ls prints it); NS is needed\n"
                "  only when the key is in several namespaces (a unique prefix will do).\n"
                "  --layers also fetches the block (a cold one is restored; it counts as a\n"
                "  hit) and shows its codec, visual ranges, raw-token share, bytes per\n"
                "  section and per layer, and per layer the K and V scale statistics\n"
                "  (rotsign: per-token scales; other rules: high - low of each group).\n");
}

static int cmd_show(vkv_client *c, int argc, char **argv)
{
    const char *ns;
    int layers = 0;
    int ex;
    if (!parse_ns_opts(argc, argv, usage_show, &ns, &layers, &ex))
        return ex;
    if (optind + 1 != argc) {
        usage_show(stderr);
        return EX_USAGE;
    }
    struct scan s;
    struct target t;
    if ((ex = resolve_keys(c, ns, argv + optind, 1, &s, &t, 1)) != 0) {
        scan_free(&s);
        return ex;
    }
    const char *full_ns = s.ns[t.ns_ix];
    vkvp_request rq;
    vkvp_reply *rep;
    char why[256] = "";
    vkvp_request_init(&rq, VKVP_INFO, 0);
    rq.u.info.session = vkvc_session(c);
    rq.u.info.key = t.key;
    rq.u.info.has_ns = true;
    rq.u.info.ns = vkvp_cstr(full_ns);
    int rc = vkvc_call(c, &rq, &rep, why, sizeof why);
    if (rc) {
        scan_free(&s);
        return fail(rc, why);
    }
    cJSON *arr = cJSON_CreateArray();
    show_entry(&rep->u.info.entry, arr);
    cJSON *one = cJSON_DetachItemFromArray(arr, 0);
    cJSON_Delete(arr);
    if (!g_json)
        show_entry(&rep->u.info.entry, NULL);
    vkvp_reply_free(rep);
    if (layers) {
        cJSON *blk = cJSON_CreateObject();
        ex = with_block(full_ns, &t.key, block_layers, blk);
        if (ex) {
            cJSON_Delete(blk);
            cJSON_Delete(one);
            scan_free(&s);
            return ex;
        }
        if (!g_json)
            print_layers(blk);
        cJSON_AddItemToObject(one, "block", blk);
    }
    if (g_json)
        emit(one);
    else
        cJSON_Delete(one);
    scan_free(&s);
    return EX_OK;
}

/* ---- evict, delete, flush ------------------------------------------------------ */

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

/* EVICT (--all or keys, optionally in namespace ns), DELETE (keys in ns) or
 * FLUSH. keys may be NULL with nkeys 0 for --all / FLUSH. Adds the count
 * the daemon answered to *count. Returns 0 or the exit code after
 * reporting. */
static int keys_op(vkv_client *c, vkvp_op op, int to_drop, const char *ns, const vkv_key *keys,
                   size_t nkeys, int all, uint64_t *count)
{
    vkvp_request rq;
    vkvp_reply *rep;
    char why[256] = "";
    vkvp_request_init(&rq, op, 0);
    if (op == VKVP_FLUSH) {
        rq.u.flush.session = vkvc_session(c);
    } else if (op == VKVP_DELETE) {
        rq.u.del.session = vkvc_session(c);
        rq.u.del.keys = keys;
        rq.u.del.nkeys = (uint32_t)nkeys;
        rq.u.del.has_ns = true;
        rq.u.del.ns = vkvp_cstr(ns);
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
    *count += op == VKVP_FLUSH    ? rep->u.flush.count
              : op == VKVP_DELETE ? rep->u.del.count
                                  : rep->u.evict.count;
    vkvp_reply_free(rep);
    return 0;
}

/* Resolves the KEY arguments argv[from..argc) (with --ns ns_arg) and sends
 * op (EVICT or DELETE) once per namespace they resolved to. Adds the
 * counts to *count. Returns 0 or the exit code after reporting. */
static int keys_op_resolved(vkv_client *c, vkvp_op op, int to_drop, const char *ns_arg, int argc,
                            char **argv, int from, uint64_t *count)
{
    int n = argc - from;
    struct target *t = calloc((size_t)n, sizeof *t);
    vkv_key *keys = calloc((size_t)n, sizeof *keys);
    struct scan s;
    memset(&s, 0, sizeof s);
    int ex =
        !t || !keys ? fail(VKV_ENOMEM, NULL) : resolve_keys(c, ns_arg, argv + from, n, &s, t, 1);
    char *done = ex ? NULL : calloc((size_t)n, 1);
    if (!ex && !done)
        ex = fail(VKV_ENOMEM, NULL);
    for (int i = 0; !ex && i < n; i++) {
        if (done[i])
            continue;
        size_t nk = 0;
        for (int j = i; j < n; j++)
            if (!done[j] && t[j].ns_ix == t[i].ns_ix) {
                keys[nk++] = t[j].key;
                done[j] = 1;
            }
        ex = keys_op(c, op, to_drop, s.ns[t[i].ns_ix], keys, nk, 0, count);
    }
    free(done);
    free(keys);
    free(t);
    scan_free(&s);
    return ex;
}

/* Prints the usage of `evict` to fp. */
static void usage_evict(FILE *fp)
{
    fprintf(fp, "usage: vkvctl evict [--ns NS] [--to cold|drop] KEY...\n"
                "       vkvctl evict --all [--ns NS] [--to cold|drop]\n"
                "  Evicts entries from the hot tier: to the cold tier (default) or dropped.\n"
                "  KEY is a unique prefix of >= 8 hex digits; NS a unique prefix or the\n"
                "  model part of a namespace.\n");
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
    uint64_t count = 0;
    int ex;
    if (all) {
        if (optind < argc) {
            usage_evict(stderr);
            return EX_USAGE;
        }
        if (!ns) {
            ex = keys_op(c, VKVP_EVICT, drop, NULL, NULL, 0, 1, &count);
        } else {
            struct scan s;
            if ((ex = scan_entries(c, NULL, NULL, -1, &s)) != 0)
                return ex;
            size_t ix = resolve_ns(&s, ns, &ex);
            if (ix != (size_t)-1)
                ex = keys_op(c, VKVP_EVICT, drop, s.ns[ix], NULL, 0, 1, &count);
            scan_free(&s);
        }
    } else {
        if (optind >= argc || argc - optind > VKVP_MAX_KEYS) {
            usage_evict(stderr);
            return EX_USAGE;
        }
        ex = keys_op_resolved(c, VKVP_EVICT, drop, ns, argc, argv, optind, &count);
    }
    if (ex)
        return ex;
    print_count("evicted", count);
    return EX_OK;
}

/* Prints the usage of `delete` to fp. */
static void usage_delete(FILE *fp)
{
    fprintf(fp, "usage: vkvctl delete [--ns NS] KEY...\n"
                "  Deletes entries from both tiers. KEY is a unique prefix of >= 8 hex\n"
                "  digits (as ls prints it); NS a unique prefix or the model part of a\n"
                "  namespace, needed only when a key is in several. Exit 4 when none\n"
                "  was deleted.\n");
}

static int cmd_delete(vkv_client *c, int argc, char **argv)
{
    const char *ns;
    int ex;
    if (!parse_ns_opts(argc, argv, usage_delete, &ns, NULL, &ex))
        return ex;
    if (optind >= argc || argc - optind > VKVP_MAX_KEYS) {
        usage_delete(stderr);
        return EX_USAGE;
    }
    uint64_t deleted = 0;
    if ((ex = keys_op_resolved(c, VKVP_DELETE, 0, ns, argc, argv, optind, &deleted)) != 0)
        return ex;
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
    uint64_t n = 0;
    int ex = keys_op(c, VKVP_FLUSH, 0, NULL, NULL, 0, 1, &n);
    if (ex)
        return ex;
    print_count("spilled", n);
    return EX_OK;
}

/* ---- export ---------------------------------------------------------------- */

/* Prints the usage of `export` to fp. */
static void usage_export(FILE *fp)
{
    fprintf(fp, "usage: vkvctl export [--ns NS] KEY OUT.safetensors\n"
                "  Fetches one block, decodes it and writes layers.{i}.k / layers.{i}.v\n"
                "  [tokens, kv_heads, head_dim] in the block's dtype, with __metadata__\n"
                "  visual_ranges (docs/FIDELITY.md naming). KEY is a unique prefix of >= 8\n"
                "  hex digits; NS a unique prefix or the model part of a namespace.\n");
}

/* Decodes the block in view into per-layer float tensors and writes them to
 * path. Returns 0 or a VKV_E* code with a message in err. */
static int export_block(const vkv_view *view, const char *path, const char *ns, const char *keyhex,
                        char *err, size_t errlen, cJSON *info)
{
    vkv_block_header hdr;
    int rc = vkv_block_check(view->data, view->size, VKV_DECODE_VERIFY, &hdr);
    if (rc)
        return vkv_errbuf(err, errlen, rc, "block check failed: %s", vkv_strerror(rc));
    vkv_shape sh;
    vkv_codec_spec spec;
    vkv_block_shape(&hdr, &sh, &spec);
    size_t per = (size_t)sh.tokens * sh.kv_heads * sh.head_dim;
    size_t L = sh.layers;
    size_t nel = 2 * L * per + 1, nt = 2 * L + 1; /* +1: never calloc(0) */
    uint16_t *raw = calloc(nel, sizeof *raw);
    float *f32 = calloc(nel, sizeof *f32);
    void **kp = calloc(L + 1, sizeof *kp), **vp = calloc(L + 1, sizeof *vp);
    vkvtn_st_out *outs = calloc(nt, sizeof *outs);
    char(*names)[32] = calloc(nt, sizeof *names);
    rc = VKV_ENOMEM;
    if (!raw || !f32 || !kp || !vp || !outs || !names)
        goto out;
    for (size_t l = 0; l < L; l++) {
        kp[l] = raw + (2 * l) * per;
        vp[l] = raw + (2 * l + 1) * per;
    }
    vkv_kv_dst dst = {(void *const *)kp, (void *const *)vp,    (size_t)sh.kv_heads * sh.head_dim,
                      sh.head_dim,       vkv_geometry_of(&sh), NULL};
    if ((rc = vkv_decode(view->data, view->size, VKV_DECODE_VERIFY, &dst)) != 0) {
        snprintf(err, errlen, "decode failed: %s", vkv_strerror(rc));
        goto out;
    }
    for (size_t i = 0; i < 2 * L * per; i++)
        f32[i] = vkvtn_to_f32(raw[i], sh.dtype);
    for (size_t l = 0; l < L; l++)
        for (int kv = 0; kv < 2; kv++) {
            size_t j = 2 * l + (size_t)kv;
            snprintf(names[j], sizeof names[j], "layers.%zu.%c", l, kv ? 'v' : 'k');
            outs[j].name = names[j];
            outs[j].dtype = sh.dtype == VKV_DTYPE_BF16 ? VKVTN_ST_BF16 : VKVTN_ST_F16;
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
    const char *meta[] = {"visual_ranges", ranges, "vkv_key",   keyhex,
                          "vkv_ns",        ns,     "vkv_codec", codec};
    /* an empty visual_ranges would mean "all visual" to vkv-eval: omit it
     * only when the block really has no visual tokens */
    size_t nmeta = 4;
    const char *const *m = meta;
    if (sh.n_ranges == 0) {
        m = meta + 2;
        nmeta = 3;
    }
    if ((rc = vkvtn_st_write(path, outs, 2 * L, m, nmeta, err, errlen)) != 0)
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

/* What cmd_export hands export_one through with_block. */
struct export_arg {
    const char *path, *ns, *keyhex;
    cJSON *info;
};

/* fn of with_block for export: export_block with the arguments of a. */
static int export_one(const vkv_view *view, void *arg, char *err, size_t errlen)
{
    struct export_arg *a = arg;
    return export_block(view, a->path, a->ns, a->keyhex, err, errlen, a->info);
}

static int cmd_export(vkv_client *c, int argc, char **argv)
{
    const char *ns;
    int ex;
    if (!parse_ns_opts(argc, argv, usage_export, &ns, NULL, &ex))
        return ex;
    if (optind + 2 != argc) {
        usage_export(stderr);
        return EX_USAGE;
    }
    struct scan s;
    struct target t;
    if ((ex = resolve_keys(c, ns, argv + optind, 1, &s, &t, 1)) != 0) {
        scan_free(&s);
        return ex;
    }
    const char *path = argv[optind + 1];
    char keyhex[65];
    vkv_key_hex(&t.key, keyhex);
    cJSON *info = cJSON_CreateObject();
    cJSON_AddStringToObject(info, "key", keyhex);
    cJSON_AddStringToObject(info, "ns", s.ns[t.ns_ix]);
    cJSON_AddStringToObject(info, "path", path);
    struct export_arg a = {path, s.ns[t.ns_ix], keyhex, info};
    ex = with_block(s.ns[t.ns_ix], &t.key, export_one, &a);
    scan_free(&s);
    if (ex) {
        cJSON_Delete(info);
        return ex;
    }
    if (g_json) {
        emit(info);
    } else {
        cJSON *tk = cJSON_GetObjectItem(info, "tokens");
        cJSON *l = cJSON_GetObjectItem(info, "layers");
        printf("wrote %s: %d layers x %d tokens (%s)\n", path, l ? l->valueint : 0,
               tk ? tk->valueint : 0, cJSON_GetObjectItem(info, "dtype")->valuestring);
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
    s->hits = ctr(rep, VKVD_COUNTER(hits)) + ctr(rep, VKVD_COUNTER(cold_hits));
    s->misses = ctr(rep, VKVD_COUNTER(misses));
    s->lookups = ctr(rep, VKVD_COUNTER(req_lookup));
    s->fetches = ctr(rep, VKVD_COUNTER(req_fetch));
    s->commits = ctr(rep, VKVD_COUNTER(commits));
    s->evictions = ctr(rep, VKVD_COUNTER(evictions));
    s->spills = ctr(rep, VKVD_COUNTER(spills));
    s->restores = ctr(rep, VKVD_COUNTER(restores));
    s->bytes_hot = ctr(rep, VKVD_COUNTER(bytes_used));
    s->bytes_cold = ctr(rep, VKVD_COUNTER(bytes_cold));
    s->entries_hot = ctr(rep, VKVD_COUNTER(entries_ready));
    s->entries_cold = ctr(rep, VKVD_COUNTER(entries_cold));
    s->sessions = ctr(rep, VKVD_COUNTER(sessions));
    s->leases = ctr(rep, VKVD_COUNTER(leases_active));
    s->capacity = ctr(rep, VKVD_COUNTER(bytes_capacity));
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
 * *ex (help printed: EX_OK; a bad option or value: EX_USAGE after printing
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
            *ex = EX_OK;
            return false;
        default:
            usage_top(stderr);
            *ex = EX_USAGE;
            return false;
        }
    }
    if (*iterations == 0 || *iterations < -1 || *interval < 10 || *interval > 3600000 ||
        optind < argc) {
        usage_top(stderr);
        *ex = EX_USAGE;
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
    emit(j);
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
    unsigned w = g_width ? g_width : 80;
    int per = w >= 24 ? (int)((w - 2) / 22) : 1;
    if (per > 3 && !g_width)
        per = 3;
    if (per < 1)
        per = 1;
    if (tty)
        fputs("\033[H\033[2J", stdout);
    char head[96];
    snprintf(head, sizeof head, "vkvd epoch %016" PRIx64 "   interval %.2f s", vkv_client_epoch(c),
             r->dt);
    printf("%s%.*s%s\n\n", col("1"), (int)w, head, rst());
    for (int i = 0; i < nc; i++)
        printf("  %-20s%s", cell[i], i % per == per - 1 || i == nc - 1 ? "\n" : "");
    char hot[128], cold[128];
    snprintf(hot, sizeof hot, "hot  %10s of %-10s %8" PRIu64 " entries",
             hsize(b->bytes_hot, x, sizeof x), hsize(b->capacity, y, sizeof y), b->entries_hot);
    snprintf(cold, sizeof cold, "cold %10s               %8" PRIu64 " entries",
             hsize(b->bytes_cold, z, sizeof z), b->entries_cold);
    printf("\n  %.*s\n  %.*s\n", (int)(w > 2 ? w - 2 : 1), hot, (int)(w > 2 ? w - 2 : 1), cold);
}

/* `vkvctl top`: samples the counters every interval and shows the rates
 * (JSON lines with --json). Returns the exit code. */
static int cmd_top(vkv_client *c, int argc, char **argv)
{
    long iterations, interval;
    int ex;
    if (!top_parse(argc, argv, &iterations, &interval, &ex))
        return ex;
    int tty = !g_json && isatty(STDOUT_FILENO);
    struct sample a, b;
    if ((ex = take_sample(c, &a)) != 0)
        return ex;
    for (long it = 0; iterations < 0 || it < iterations; it++) {
        struct timespec ts = {interval / 1000, (interval % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        if ((ex = take_sample(c, &b)) != 0)
            return ex;
        struct rates r = top_rates(&a, &b);
        if (g_json)
            top_emit_json(&r, &b);
        else
            top_print_screen(c, &r, &b, tty);
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
    {"status", cmd_status, "backend, capacity and use per tier, hit rate, sessions [--watch]",
     NULL},
    {"stats", cmd_stats, "every counter of the daemon",
     "usage: vkvctl stats\n  Every STATS counter of the daemon (name value).\n"},
    {"ls", cmd_ls,
     "list entries [--ns NS] [--tier T] [--sort recency|size|hits] [--limit N] [--long] [-q]",
     NULL},
    {"namespaces", cmd_namespaces, "namespaces with entry counts and bytes [--quiet]", NULL},
    {"show", cmd_show, "one entry: [--ns NS] [--layers] KEY", NULL},
    {"evict", cmd_evict, "evict [--ns NS] KEY... | --all [--to cold|drop]", NULL},
    {"delete", cmd_delete, "delete [--ns NS] KEY...", NULL},
    {"flush", cmd_flush, "spill every hot entry to the cold tier", NULL},
    {"verify", cmd_verify, "check the cold tier's checksums [--drop]", NULL},
    {"export", cmd_export, "export [--ns NS] KEY OUT.safetensors (decoded tensors)", NULL},
    {"top", cmd_top, "live rates [--once | --iterations N] [--interval-ms MS]", NULL},
    {"ping", cmd_ping, "check that vkvd answers", "usage: vkvctl ping\n  Round trip to vkvd.\n"},
};
#define NCMDS (sizeof g_cmds / sizeof g_cmds[0])

/* Top-level usage. */
static void usage(FILE *fp)
{
    fprintf(fp, "usage: vkvctl [--rundir DIR] [--json] [--color auto|always|never] COMMAND "
                "[ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < NCMDS; i++)
        fprintf(fp, "  %-10s %s\n", g_cmds[i].name, g_cmds[i].help);
    fprintf(fp, "\nKEY: any unique prefix of >= 8 hex digits (the KEY column of ls). NS: the\n"
                "full namespace, a unique prefix of it, or its model part.\n"
                "`vkvctl COMMAND --help` describes one command; man vkvctl for all.\n"
                "exit codes: 0 ok, 1 daemon error (verify: corrupt entries found), 2 usage\n"
                "            (also an ambiguous prefix), 3 daemon unreachable, 4 not found,\n"
                "            5 local I/O error\n");
}

/* Reads the options before the command (--json, --rundir, --color, --help)
 * into the globals and *color (points into argv or a static string), and
 * the index of the command into *first. Returns true to go on; else false
 * with the exit code in *ex (help printed: EX_OK; an unknown option or a
 * bad --color: EX_USAGE after saying so). */
static bool parse_globals(int argc, char **argv, int *first, const char **color, int *ex)
{
    int i = 1;
    *color = "auto";
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--json"))
            g_json = 1;
        else if (!strcmp(argv[i], "--rundir") && i + 1 < argc)
            g_rundir = argv[++i];
        else if (!strncmp(argv[i], "--color=", 8) || !strncmp(argv[i], "--colour=", 9))
            *color = strchr(argv[i], '=') + 1;
        else if ((!strcmp(argv[i], "--color") || !strcmp(argv[i], "--colour")) && i + 1 < argc)
            *color = argv[++i];
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            *ex = EX_OK;
            return false;
        } else {
            fprintf(stderr, "vkvctl: unknown option %s\n", argv[i]);
            usage(stderr);
            *ex = EX_USAGE;
            return false;
        }
    }
    if (strcmp(*color, "auto") && strcmp(*color, "always") && strcmp(*color, "never")) {
        fprintf(stderr, "vkvctl: --color takes auto, always or never, not '%s'\n", *color);
        *ex = EX_USAGE;
        return false;
    }
    *first = i;
    return true;
}

/* The command named `name` in g_cmds, or NULL. */
static const struct command *find_command(const char *name)
{
    for (size_t k = 0; k < NCMDS; k++)
        if (!strcmp(name, g_cmds[k].name))
            return &g_cmds[k];
    return NULL;
}

/* Prints the usage of cmd to stdout, with no daemon (its usage text, or
 * its own --help given argv[0..argc)). Returns its exit code. */
static int command_help(const struct command *cmd, int argc, char **argv)
{
    if (cmd->usage) {
        fputs(cmd->usage, stdout);
        return EX_OK;
    }
    return cmd->fn(NULL, argc, argv);
}

/* `vkvctl` alone or `vkvctl help [COMMAND]`: args[0..n) are "help" and
 * what follows it (n == 0: no command given). Returns the exit code. */
static int cmd_help(int n, char **args)
{
    const struct command *cmd = n > 1 ? find_command(args[1]) : NULL;
    if (cmd) { /* vkvctl help COMMAND */
        char *hv[] = {args[1], "--help", NULL};
        return command_help(cmd, 2, hv);
    }
    usage(n == 0 ? stderr : stdout);
    return n == 0 ? EX_USAGE : EX_OK;
}

/* Runs cmd with its arguments args[0..n) (args[0] its name). --json and
 * --help may follow the command: --json is taken out here so that the
 * commands' option parsers never see it, --help describes the command
 * without a daemon. Connects to vkvd only to run it. Returns the exit
 * code. */
static int run_command(const struct command *cmd, int n, char **args)
{
    int sub_argc = 0, want_help = 0, ex;
    char **sub = calloc((size_t)n + 1, sizeof *sub); /* borrows args' strings */
    if (!sub)
        return fail(VKV_ENOMEM, NULL);
    for (int j = 0; j < n; j++) {
        if (j > 0 && !strcmp(args[j], "--json")) {
            g_json = 1;
            continue;
        }
        if (j > 0 && (!strcmp(args[j], "--help") || !strcmp(args[j], "-h")))
            want_help = 1;
        sub[sub_argc++] = args[j];
    }
    if (want_help) {
        ex = command_help(cmd, sub_argc, sub);
    } else if (cmd->usage && sub_argc > 1) {
        fputs(cmd->usage, stderr);
        ex = EX_USAGE;
    } else {
        vkv_client *c = NULL;
        ex = connect_admin(&c);
        if (!ex) {
            ex = cmd->fn(c, sub_argc, sub);
            vkv_close(c);
        }
    }
    free(sub);
    return ex;
}

/* Entry point: the global options, then one command. Returns its exit code. */
int main(int argc, char **argv)
{
    int i, ex;
    const char *color;
    if (!parse_globals(argc, argv, &i, &color, &ex))
        return ex;
    g_color = want_color(color, STDOUT_FILENO);
    g_color_err = want_color(color, STDERR_FILENO);
    g_width = term_width();
    if (i < argc && !strcmp(argv[i], "ns")) /* short for namespaces */
        argv[i] = "namespaces";
    if (i >= argc || !strcmp(argv[i], "help"))
        return cmd_help(argc - i, argv + i);
    const struct command *cmd = find_command(argv[i]);
    if (cmd)
        return run_command(cmd, argc - i, argv + i);
    fprintf(stderr, "vkvctl: unknown command '%s'\n", argv[i]);
    usage(stderr);
    return EX_USAGE;
}
