/*
 * daemon/metrics.c - Prometheus text rendering of vkvd's counters and request
 * latency histograms, served by libmicrohttpd on 127.0.0.1 (metrics.h).
 *
 * Stable names: g_defs, generated from daemon/counters.h, maps STATS counter names onto metric
 * families; docs/METRICS.md lists the same families. Lines of one family are
 * always adjacent and preceded by one HELP and one TYPE line, as the text
 * format requires.
 */
#include "daemon/metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef VKVD_HAVE_MHD
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#endif

#include "daemon/counters.h"
#include "common/log.h"
#include "proto/proto.h"
#include "vkv/error.h"

/* Upper bounds (seconds) of the latency buckets; +Inf is implicit. */
static const double g_bounds[] = {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
                                  0.001,   0.0025,   0.005,   0.01,   0.025,   0.05,
                                  0.1,     0.25,     0.5,     1.0,    2.5,     10.0};
#define NBOUNDS (sizeof g_bounds / sizeof g_bounds[0])

/* One stable series: STATS counter `stat` (minus counter `minus` when set,
 * clamped at 0) is exported as family `family` with label set `labels`. */
struct mdef {
    const char *stat;
    const char *minus;
    const char *family;
    const char *labels; /* "" or e.g. tier="hot" */
    const char *type;   /* counter | gauge */
    const char *help;   /* for the first series of a family */
};

/* The stable series, generated from daemon/counters.h: counters with a
 * family; the help text sits on a family's first entry. */
#define MDEF_NONE(name, minus, family, labels, help)
#define MDEF_COUNTER(name, minus, family, labels, help)                                            \
    {#name, minus, family, labels, "counter", help},
#define MDEF_GAUGE(name, minus, family, labels, help) {#name, minus, family, labels, "gauge", help},
#define MDEF_(name, value, minus, family, labels, type, help)                                      \
    MDEF_##type(name, minus, family, labels, help)
static const struct mdef g_defs[] = {VKVD_COUNTERS_ALL(MDEF_)};
#undef MDEF_
#undef MDEF_GAUGE
#undef MDEF_COUNTER
#undef MDEF_NONE
#define NDEFS (sizeof g_defs / sizeof g_defs[0])

/* A published copy of the daemon's counters (owned by the metrics object). */
struct snapshot {
    size_t n;
    char **names;
    uint64_t *values;
    struct timespec at; /* CLOCK_MONOTONIC of the publish */
};

struct vkvd_metrics {
    int port;
    pthread_mutex_t lock; /* guards snap */
    struct snapshot *snap;
    atomic_uint_fast64_t buckets[VKVD_METRICS_MAX_OP + 1][NBOUNDS + 1]; /* non-cumulative */
    atomic_uint_fast64_t sum_ns[VKVD_METRICS_MAX_OP + 1];
#ifdef VKVD_HAVE_MHD
    struct MHD_Daemon *httpd;
#endif
};

/* Frees a snapshot and everything it owns (NULL is fine). */
static void snap_free(struct snapshot *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->names[i]);
    free(s->names);
    free(s->values);
    free(s);
}

void vkvd_metrics_observe(vkvd_metrics *m, int op, double seconds)
{
    if (!m || op < 1 || op > VKVD_METRICS_MAX_OP)
        return;
    if (!(seconds >= 0)) /* also NaN */
        seconds = 0;
    size_t b = 0;
    while (b < NBOUNDS && seconds > g_bounds[b])
        b++;
    atomic_fetch_add_explicit(&m->buckets[op][b], 1, memory_order_relaxed);
    double ns = seconds * 1e9;
    uint64_t add = ns > 1.8e19 ? UINT64_C(18000000000000000000) : (uint64_t)ns;
    atomic_fetch_add_explicit(&m->sum_ns[op], add, memory_order_relaxed);
}

int vkvd_metrics_publish(vkvd_metrics *m, const char *const *names, const uint64_t *values,
                         size_t n)
{
    if (!m)
        return 0;
    if (n && (!names || !values))
        return VKV_EINVAL;
    struct snapshot *s = calloc(1, sizeof *s);
    if (!s)
        return VKV_ENOMEM;
    s->names = calloc(n ? n : 1, sizeof *s->names);
    s->values = calloc(n ? n : 1, sizeof *s->values);
    if (!s->names || !s->values) {
        snap_free(s);
        return VKV_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (!names[i])
            continue;
        if (!(s->names[s->n] = strdup(names[i]))) {
            snap_free(s);
            return VKV_ENOMEM;
        }
        s->values[s->n++] = values[i];
    }
    clock_gettime(CLOCK_MONOTONIC, &s->at);
    pthread_mutex_lock(&m->lock);
    struct snapshot *old = m->snap;
    m->snap = s;
    pthread_mutex_unlock(&m->lock);
    snap_free(old);
    return 0;
}

/* Value of counter `name` in s; false when absent. */
static bool snap_get(const struct snapshot *s, const char *name, uint64_t *v)
{
    for (size_t i = 0; s && i < s->n; i++)
        if (!strcmp(s->names[i], name)) {
            *v = s->values[i];
            return true;
        }
    return false;
}

/* True when `name` is consumed by the stable table or the request family. */
static bool is_stable(const char *name)
{
    if (!strncmp(name, "req_", 4))
        return true;
    for (size_t i = 0; i < NDEFS; i++)
        if (!strcmp(g_defs[i].stat, name))
            return true;
    return false;
}

/* Writes a label value with the escapes of the text format (\\, \", \n). */
static void put_label_value(FILE *f, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fprintf(f, "\\%c", *v);
        else if (*v == '\n')
            fputs("\\n", f);
        else
            fputc(*v, f);
    }
}

/* Renders the stable families of the snapshot (caller holds the lock): each
 * family once, at its first table entry, with all its series together. */
static void render_stable(FILE *f, const struct snapshot *s)
{
    for (size_t i = 0; i < NDEFS; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = !strcmp(g_defs[j].family, g_defs[i].family);
        if (seen)
            continue;
        bool head = false;
        for (size_t k = i; k < NDEFS; k++) {
            const struct mdef *d = &g_defs[k];
            uint64_t v, sub = 0;
            if (strcmp(d->family, g_defs[i].family) || !snap_get(s, d->stat, &v))
                continue;
            if (d->minus && snap_get(s, d->minus, &sub))
                v = v > sub ? v - sub : 0;
            if (!head) {
                const char *help = g_defs[i].help;
                fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", d->family, help ? help : "", d->family,
                        d->type);
                head = true;
            }
            if (d->labels[0])
                fprintf(f, "%s{%s} %llu\n", d->family, d->labels, (unsigned long long)v);
            else
                fprintf(f, "%s %llu\n", d->family, (unsigned long long)v);
        }
    }
}

/* Renders vkvd_requests_total{op} from the req_* counters and vkvd_stat for
 * counters outside the stable table (caller holds the lock). */
static void render_rest(FILE *f, const struct snapshot *s)
{
    bool any = false;
    for (size_t i = 0; s && i < s->n; i++) {
        if (strncmp(s->names[i], "req_", 4))
            continue;
        if (!any)
            fputs("# HELP vkvd_requests_total Requests received, by op.\n"
                  "# TYPE vkvd_requests_total counter\n",
                  f);
        any = true;
        fputs("vkvd_requests_total{op=\"", f);
        put_label_value(f, s->names[i] + 4);
        fprintf(f, "\"} %llu\n", (unsigned long long)s->values[i]);
    }
    any = false;
    for (size_t i = 0; s && i < s->n; i++) {
        if (is_stable(s->names[i]))
            continue;
        if (!any)
            fputs("# HELP vkvd_stat Other STATS counters of vkvd, by name (not stable).\n"
                  "# TYPE vkvd_stat untyped\n",
                  f);
        any = true;
        fputs("vkvd_stat{name=\"", f);
        put_label_value(f, s->names[i]);
        fprintf(f, "\"} %llu\n", (unsigned long long)s->values[i]);
    }
}

/* Renders the latency histograms of every known op. */
static void render_histograms(FILE *f, vkvd_metrics *m)
{
    fputs("# HELP vkvd_request_duration_seconds Time from receiving a request to sending its "
          "reply, by op.\n# TYPE vkvd_request_duration_seconds histogram\n",
          f);
    for (int op = 1; op <= VKVD_METRICS_MAX_OP; op++) {
        const char *lower = vkvp_op_lower(op);
        if (!strcmp(lower, "?"))
            continue;
        uint64_t cum = 0;
        for (size_t b = 0; b <= NBOUNDS; b++) {
            cum += atomic_load_explicit(&m->buckets[op][b], memory_order_relaxed);
            if (b < NBOUNDS)
                fprintf(f, "vkvd_request_duration_seconds_bucket{op=\"%s\",le=\"%g\"} %llu\n",
                        lower, g_bounds[b], (unsigned long long)cum);
            else
                fprintf(f, "vkvd_request_duration_seconds_bucket{op=\"%s\",le=\"+Inf\"} %llu\n",
                        lower, (unsigned long long)cum);
        }
        uint64_t ns = atomic_load_explicit(&m->sum_ns[op], memory_order_relaxed);
        fprintf(f, "vkvd_request_duration_seconds_sum{op=\"%s\"} %.9f\n", lower, (double)ns / 1e9);
        fprintf(f, "vkvd_request_duration_seconds_count{op=\"%s\"} %llu\n", lower,
                (unsigned long long)cum);
    }
}

int vkvd_metrics_render(vkvd_metrics *m, char **out, size_t *len)
{
    if (!m || !out || !len)
        return VKV_EINVAL;
    *out = NULL;
    *len = 0;
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f)
        return VKV_ENOMEM;
    pthread_mutex_lock(&m->lock);
    const struct snapshot *s = m->snap;
    double age = -1;
    if (s) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        age = (double)(now.tv_sec - s->at.tv_sec) + (double)(now.tv_nsec - s->at.tv_nsec) / 1e9;
    }
    render_stable(f, s);
    render_rest(f, s);
    pthread_mutex_unlock(&m->lock);
    render_histograms(f, m);
    if (age >= 0)
        fprintf(f,
                "# HELP vkvd_snapshot_age_seconds Age of the counter snapshot served here.\n"
                "# TYPE vkvd_snapshot_age_seconds gauge\nvkvd_snapshot_age_seconds %.3f\n",
                age);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || !buf) {
        free(buf);
        return VKV_ENOMEM;
    }
    *out = buf;
    *len = size;
    return 0;
}

int vkvd_metrics_port(const vkvd_metrics *m)
{
    return m ? m->port : 0;
}

#ifdef VKVD_HAVE_MHD
/* libmicrohttpd access handler (runs on the HTTP thread): GET /metrics
 * renders, GET / points there, anything else is 404/405. The response
 * buffer is handed to libmicrohttpd, which frees it. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    vkvd_metrics *m = cls;
    (void)version;
    (void)upload_data;
    (void)con_cls;
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return MHD_NO; /* closes the connection */
    if (*upload_data_size)
        return MHD_NO;
    unsigned status = MHD_HTTP_OK;
    char *body = NULL;
    size_t len = 0;
    const char *type = "text/plain; version=0.0.4; charset=utf-8";
    if (!strcmp(url, "/metrics")) {
        if (vkvd_metrics_render(m, &body, &len) != 0) {
            status = MHD_HTTP_INTERNAL_SERVER_ERROR;
            body = strdup("render failed\n");
        }
    } else if (!strcmp(url, "/")) {
        body = strdup("vkvd metrics: see /metrics\n");
        type = "text/plain; charset=utf-8";
    } else {
        status = MHD_HTTP_NOT_FOUND;
        body = strdup("not found\n");
        type = "text/plain; charset=utf-8";
    }
    if (!body)
        return MHD_NO;
    if (!len)
        len = strlen(body);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}
#endif

int vkvd_metrics_open(int port, vkvd_metrics **out)
{
    if (!out)
        return VKV_EINVAL;
    *out = NULL;
    if (port < 0 || port > 65535)
        return VKV_EINVAL;
#ifndef VKVD_HAVE_MHD
    if (port > 0) {
        VKV_ERROR("metrics not built: vkvd was compiled without libmicrohttpd "
                  "(--metrics-port %d ignored)",
                  port);
        return VKV_ENOTSUP;
    }
#endif
    vkvd_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return VKV_ENOMEM;
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return VKV_ESYS;
    }
    for (int op = 0; op <= VKVD_METRICS_MAX_OP; op++) {
        for (size_t b = 0; b <= NBOUNDS; b++)
            atomic_init(&m->buckets[op][b], 0);
        atomic_init(&m->sum_ns[op], 0);
    }
#ifdef VKVD_HAVE_MHD
    if (port > 0) {
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t)port);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        m->httpd =
            MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port,
                             NULL, NULL, &on_request, m, MHD_OPTION_SOCK_ADDR,
                             (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
                             MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
        if (!m->httpd) {
            VKV_ERROR("metrics: cannot serve on 127.0.0.1:%d (port taken?)", port);
            pthread_mutex_destroy(&m->lock);
            free(m);
            return VKV_ESYS;
        }
        m->port = port;
        VKV_INFO("metrics on http://127.0.0.1:%d/metrics", port);
    }
#endif
    *out = m;
    return 0;
}

void vkvd_metrics_close(vkvd_metrics *m)
{
    if (!m)
        return;
#ifdef VKVD_HAVE_MHD
    if (m->httpd)
        MHD_stop_daemon(m->httpd);
#endif
    snap_free(m->snap);
    pthread_mutex_destroy(&m->lock);
    free(m);
}
