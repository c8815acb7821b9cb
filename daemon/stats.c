/* daemon/stats.c - vkvd's STATS counters, generated from daemon/counters.h,
 * and their publishing to the metrics endpoint (server_int.h). */
#include "daemon/server_int.h"

/* Appends one counter (name must be a static string). */
static void counter(struct vkvd_counters *cs, const char *name, uint64_t v)
{
    if (cs->n < VKVD_MAX_COUNTERS) {
        cs->c[cs->n].name = vkvp_cstr(name);
        cs->c[cs->n].value = v;
        cs->n++;
    }
}

#define VKVD_COUNTER_ADD_(name, value, minus, family, labels, type, help)                          \
    counter(cs, #name, (uint64_t)(value));

void vkvd_collect_counters(vkvd_server *srv, struct vkvd_counters *cs)
{
    vkvs_stats s;
    vkvs_stats_get(srv->st, &s);
    cs->n = 0;
    VKVD_COUNTERS_CORE(VKVD_COUNTER_ADD_)
#define REQ_COUNTER_NAME_(name, value, lower, req, rep) [value] = "req_" #lower,
    static const char *const req_names[VKVP_OP_MAX_ + 1] = {VKVP_OPS(REQ_COUNTER_NAME_)};
#undef REQ_COUNTER_NAME_
    for (int i = 1; i <= VKVP_OP_MAX_; i++)
        counter(cs, req_names[i], srv->req_count[i]);
    VKVD_COUNTERS_CORE2(VKVD_COUNTER_ADD_)
    if (srv->cold) {
        vkvs_cold_stats c;
        vkvs_cold_stats_get(srv->cold, &c);
        VKVD_COUNTERS_COLD(VKVD_COUNTER_ADD_)
    }
    if (srv->fc) {
        uint64_t served, refused;
        vkvd_fdchan_counts(srv->fc, &served, &refused);
        VKVD_COUNTERS_FDCHAN(VKVD_COUNTER_ADD_)
    }
    VKVD_COUNTERS_REMOTE_D(VKVD_COUNTER_ADD_)
    if (srv->remote) {
        vkvr_stats r;
        vkvr_stats_get(srv->remote, &r);
        VKVD_COUNTERS_REMOTE(VKVD_COUNTER_ADD_)
    }
    if (srv->lidx) {
        vkvs_shmidx_stats li;
        vkvs_shmidx_stats_get(srv->lidx, &li);
        VKVD_COUNTERS_LIDX(VKVD_COUNTER_ADD_)
    }
}

#undef VKVD_COUNTER_ADD_

void vkvd_publish_metrics(vkvd_server *srv)
{
    if (!srv->metrics)
        return;
    struct vkvd_counters cs;
    const char *names[VKVD_MAX_COUNTERS];
    uint64_t values[VKVD_MAX_COUNTERS];
    vkvd_collect_counters(srv, &cs);
    for (uint32_t i = 0; i < cs.n; i++) {
        names[i] = cs.c[i].name.ptr;
        values[i] = cs.c[i].value;
    }
    vkvd_metrics_publish(srv->metrics, names, values, cs.n);
}
