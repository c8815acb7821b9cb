/*
 * daemon/metrics.h - Prometheus metrics of vkvd (docs/METRICS.md).
 *
 * The event loop is single-threaded and must never block on a scraper, so the
 * metrics object splits the work in two:
 *  - the loop calls vkvd_metrics_observe() after every request (a few relaxed
 *    atomic adds, no lock, no allocation) and vkvd_metrics_publish() every
 *    ~500 ms with a snapshot of its STATS counters (one short mutex hold to
 *    swap the snapshot in; the copy is made before the lock is taken);
 *  - libmicrohttpd's own thread answers GET /metrics on 127.0.0.1:PORT by
 *    rendering the latest snapshot and the histograms into a fresh buffer.
 *
 * When vkv is built without libmicrohttpd (VKVD_HAVE_MHD undefined) the
 * object still exists and renders (so the tests and the daemon code are the
 * same), but vkvd_metrics_open() with a port > 0 logs "metrics not built" and
 * fails with VKV_ENOTSUP.
 *
 * Thread-safety: observe/publish from one thread (the loop), render from any
 * thread; open and close from the loop only. Every function accepts m == NULL
 * as "metrics off" and then does nothing.
 */
#ifndef VKVD_METRICS_H
#define VKVD_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct vkvd_metrics vkvd_metrics;

/* Ops with a latency histogram: 1 .. VKVD_METRICS_MAX_OP (proto op values). */
#define VKVD_METRICS_MAX_OP 31

/* Creates the metrics object and, when port is 1..65535, starts the HTTP
 * endpoint on 127.0.0.1:port in its own thread. port 0 creates an object that
 * only renders (tests). On success *out is owned by the caller until
 * vkvd_metrics_close(). Errors: VKV_EINVAL (port out of range), VKV_ENOMEM,
 * VKV_ESYS (cannot listen, e.g. the port is taken; logged), VKV_ENOTSUP
 * (built without libmicrohttpd; logged). *out is NULL on error. */
int vkvd_metrics_open(int port, vkvd_metrics **out);

/* Records one request of proto op `op` that took `seconds` (wall clock, from
 * frame received to reply sent). Ops outside 1..VKVD_METRICS_MAX_OP are
 * ignored. Lock-free; safe to call on every request. */
void vkvd_metrics_observe(vkvd_metrics *m, int op, double seconds);

/* Publishes a snapshot of the daemon's counters: names[i] (NUL-terminated,
 * the STATS counter names such as "hits", "bytes_cold") has value values[i].
 * The arrays are copied; the caller keeps ownership and may reuse them at
 * once. A name that appears in the stable table of docs/METRICS.md is
 * exported under its stable metric; any other one as
 * vkvd_stat{name="..."}. Returns 0 or VKV_ENOMEM (the previous snapshot
 * then stays). */
int vkvd_metrics_publish(vkvd_metrics *m, const char *const *names, const uint64_t *values,
                         size_t n);

/* Renders the exposition text (Prometheus text format 0.0.4) of the latest
 * snapshot and the histograms. On success *out is a malloc'ed NUL-terminated
 * buffer of *len bytes that the caller free()s. Errors: VKV_EINVAL (m NULL),
 * VKV_ENOMEM. Callable from any thread. */
int vkvd_metrics_render(vkvd_metrics *m, char **out, size_t *len);

/* The TCP port the endpoint listens on (0 when none). */
int vkvd_metrics_port(const vkvd_metrics *m);

/* Stops the HTTP thread (waits for a scrape in progress) and frees m. */
void vkvd_metrics_close(vkvd_metrics *m);

#endif
