/*
 * tests/daemon/daemon_metrics_test.c - unit tests of daemon/metrics.c: the
 * Prometheus text rendering of published counters and latency histograms,
 * and (when built with libmicrohttpd) a real scrape over HTTP of an endpoint
 * on a free localhost port, read by python3's urllib in a child process.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/metrics.h"
#include "proto/proto.h"

/* Renders m into a malloc'ed string the test frees. */
static char *render(vkvd_metrics *m)
{
    char *t = NULL;
    size_t len = 0;
    assert_int_equal(vkvd_metrics_render(m, &t, &len), 0);
    assert_non_null(t);
    assert_int_equal(strlen(t), len);
    return t;
}

/* True when `line` appears as a whole line of text. */
static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p += n)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return 1;
    return 0;
}

static void metrics_counters_render_under_stable_names(void **state)
{
    (void)state;
    vkvd_metrics *m = NULL;
    assert_int_equal(vkvd_metrics_open(0, &m), 0);
    const char *names[] = {
        "hits",          "cold_hits",  "misses",    "bytes_used",        "bytes_cold",
        "evictions",     "spills",     "restores",  "checksum_failures", "sessions",
        "leases_active", "req_lookup", "req_fetch", "fdchan_served"};
    uint64_t values[] = {10, 3, 4, 4096, 8192, 5, 2, 1, 7, 2, 1, 11, 12, 9};
    assert_int_equal(vkvd_metrics_publish(m, names, values, 14), 0);
    /* the caller's arrays may change after publish */
    values[0] = 999;
    char *t = render(m);
    assert_true(has_line(t, "vkvd_hits_total{tier=\"hot\"} 7"));
    assert_true(has_line(t, "vkvd_hits_total{tier=\"cold\"} 3"));
    assert_true(has_line(t, "vkvd_misses_total 4"));
    assert_true(has_line(t, "vkvd_bytes{tier=\"hot\"} 4096"));
    assert_true(has_line(t, "vkvd_bytes{tier=\"cold\"} 8192"));
    assert_true(has_line(t, "vkvd_evictions_total 5"));
    assert_true(has_line(t, "vkvd_spills_total 2"));
    assert_true(has_line(t, "vkvd_restores_total 1"));
    assert_true(has_line(t, "vkvd_checksum_failures_total 7"));
    assert_true(has_line(t, "vkvd_sessions 2"));
    assert_true(has_line(t, "vkvd_leases 1"));
    assert_true(has_line(t, "vkvd_requests_total{op=\"lookup\"} 11"));
    assert_true(has_line(t, "vkvd_stat{name=\"fdchan_served\"} 9"));
    /* one HELP and one TYPE per family, right before its first series */
    assert_true(has_line(t, "# TYPE vkvd_hits_total counter"));
    assert_true(has_line(t, "# TYPE vkvd_bytes gauge"));
    const char *p = strstr(t, "# TYPE vkvd_hits_total");
    assert_non_null(p);
    assert_null(strstr(p + 1, "# TYPE vkvd_hits_total"));
    assert_true(strstr(t, "# HELP vkvd_hits_total") < p);
    /* absent counters produce no series */
    assert_null(strstr(t, "vkvd_commits_total"));
    free(t);
    /* a later snapshot replaces the former one */
    const char *n2[] = {"hits"};
    uint64_t v2[] = {42};
    assert_int_equal(vkvd_metrics_publish(m, n2, v2, 1), 0);
    t = render(m);
    assert_true(has_line(t, "vkvd_hits_total{tier=\"hot\"} 42"));
    assert_null(strstr(t, "tier=\"cold\""));
    free(t);
    vkvd_metrics_close(m);
}

static void metrics_histograms_are_cumulative_per_op(void **state)
{
    (void)state;
    vkvd_metrics *m = NULL;
    assert_int_equal(vkvd_metrics_open(0, &m), 0);
    vkvd_metrics_observe(m, VKVP_LOOKUP, 0.000001);
    vkvd_metrics_observe(m, VKVP_LOOKUP, 0.0003);
    vkvd_metrics_observe(m, VKVP_LOOKUP, 100.0);
    vkvd_metrics_observe(m, VKVP_FETCH, 0.002);
    vkvd_metrics_observe(m, 0, 1.0);   /* ignored */
    vkvd_metrics_observe(m, 999, 1.0); /* ignored */
    vkvd_metrics_observe(NULL, VKVP_FETCH, 1.0);
    char *t = render(m);
    assert_true(has_line(t, "# TYPE vkvd_request_duration_seconds histogram"));
    assert_true(has_line(t, "vkvd_request_duration_seconds_bucket{op=\"lookup\",le=\"1e-05\"} 1"));
    assert_true(
        has_line(t, "vkvd_request_duration_seconds_bucket{op=\"lookup\",le=\"0.00025\"} 1"));
    assert_true(has_line(t, "vkvd_request_duration_seconds_bucket{op=\"lookup\",le=\"0.0005\"} 2"));
    assert_true(has_line(t, "vkvd_request_duration_seconds_bucket{op=\"lookup\",le=\"10\"} 2"));
    assert_true(has_line(t, "vkvd_request_duration_seconds_bucket{op=\"lookup\",le=\"+Inf\"} 3"));
    assert_true(has_line(t, "vkvd_request_duration_seconds_count{op=\"lookup\"} 3"));
    assert_true(has_line(t, "vkvd_request_duration_seconds_count{op=\"fetch\"} 1"));
    assert_true(has_line(t, "vkvd_request_duration_seconds_bucket{op=\"fetch\",le=\"0.001\"} 0"));
    assert_true(has_line(t, "vkvd_request_duration_seconds_bucket{op=\"fetch\",le=\"0.0025\"} 1"));
    assert_true(has_line(t, "vkvd_request_duration_seconds_count{op=\"ping\"} 0"));
    assert_non_null(strstr(t, "vkvd_request_duration_seconds_sum{op=\"lookup\"} 100.000301"));
    /* every sample line is NAME[{labels}] VALUE */
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#')
            continue;
        assert_non_null(strncmp(line, "vkvd_", 5) == 0 ? line : NULL);
        assert_non_null(strchr(line, ' '));
    }
    free(t);
    vkvd_metrics_close(m);
    vkvd_metrics_close(NULL);
    assert_int_equal(vkvd_metrics_publish(NULL, NULL, NULL, 0), 0);
}

static void metrics_bad_ports_are_refused(void **state)
{
    (void)state;
    vkvd_metrics *m = (vkvd_metrics *)1;
    assert_int_equal(vkvd_metrics_open(-1, &m), VKV_EINVAL);
    assert_null(m);
    assert_int_equal(vkvd_metrics_open(70000, &m), VKV_EINVAL);
    assert_int_equal(vkvd_metrics_render(NULL, NULL, NULL), VKV_EINVAL);
}

#ifdef VKVD_HAVE_MHD
/* A TCP port on 127.0.0.1 that was free a moment ago. */
static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
    close(s);
    return ntohs(sa.sin_port);
}

/* GETs http://127.0.0.1:port/path with python3 urllib; returns the body
 * (malloc'ed) or NULL; *status gets the HTTP status. */
static char *scrape(int port, const char *path, int *status)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import urllib.request,urllib.error,sys\n"
             "try:\n r=urllib.request.urlopen(\"http://127.0.0.1:%d%s\",timeout=10)\n"
             " print(r.status);sys.stdout.write(r.read().decode())\n"
             "except urllib.error.HTTPError as e:\n print(e.code)\n'",
             port, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 20, n = 0;
    char *buf = calloc(1, cap);
    assert_non_null(buf);
    size_t k;
    while ((k = fread(buf + n, 1, cap - 1 - n, p)) > 0)
        n += k;
    int rc = pclose(p);
    if (rc != 0 || n == 0) {
        free(buf);
        return NULL;
    }
    *status = atoi(buf);
    return buf;
}

static void metrics_are_served_over_http_on_localhost(void **state)
{
    (void)state;
    vkvd_metrics *m = NULL;
    int port = free_port();
    assert_int_equal(vkvd_metrics_open(port, &m), 0);
    assert_int_equal(vkvd_metrics_port(m), port);
    /* a second endpoint on the same port cannot listen */
    vkvd_metrics *m2 = NULL;
    assert_int_equal(vkvd_metrics_open(port, &m2), VKV_ESYS);
    const char *names[] = {"hits", "sessions"};
    uint64_t values[] = {5, 1};
    assert_int_equal(vkvd_metrics_publish(m, names, values, 2), 0);
    vkvd_metrics_observe(m, VKVP_PING, 0.0001);
    int status = 0;
    char *body = scrape(port, "/metrics", &status);
    assert_non_null(body);
    assert_int_equal(status, 200);
    assert_true(has_line(body, "vkvd_hits_total{tier=\"hot\"} 5"));
    assert_true(has_line(body, "vkvd_request_duration_seconds_count{op=\"ping\"} 1"));
    free(body);
    values[0] = 6;
    assert_int_equal(vkvd_metrics_publish(m, names, values, 2), 0);
    body = scrape(port, "/metrics", &status);
    assert_non_null(body);
    assert_true(has_line(body, "vkvd_hits_total{tier=\"hot\"} 6"));
    free(body);
    body = scrape(port, "/nope", &status);
    assert_non_null(body);
    assert_int_equal(status, 404);
    free(body);
    vkvd_metrics_close(m);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(metrics_counters_render_under_stable_names),
        cmocka_unit_test(metrics_histograms_are_cumulative_per_op),
        cmocka_unit_test(metrics_bad_ports_are_refused),
#ifdef VKVD_HAVE_MHD
        cmocka_unit_test(metrics_are_served_over_http_on_localhost),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
