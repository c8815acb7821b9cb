/*
 * daemon/lookup_index.c - vkvd's side of the lookup index segment
 * (proto/shmidx.h, store/shmidx_writer.h): the writer is created with the
 * store, mirrors every change of the store's lookup view from the store's
 * observer, and travels to clients over the fd channel. A daemon that cannot
 * create it serves without it (clients take the round trip).
 */
#include "daemon/server_int.h"

#include "common/log.h"
#include "vkv/error.h"

/* Namespaces the segment can publish (the store interns up to 65536). */
#define LIDX_NS_MAX 1024

/* The store's observer: the event loop publishes each change at once, so a
 * reply sent after a change is never followed by a reader seeing the state
 * before it. */
static void lidx_observe(void *arg, uint32_t ns_id, const char *ns, const vkv_key *key, int was,
                         int now)
{
    vkvd_server *srv = arg;
    vkvs_shmidx_change(srv->lidx, ns_id, ns, key, was, now);
}

void vkvd_lookup_index_open(vkvd_server *srv)
{
    if (srv->cfg.lookup_index_slots == 0) {
        VKV_INFO("lookup index segment disabled (lookup-index-slots 0): LOOKUP is a round trip");
        return;
    }
    int rc = vkvs_shmidx_open(srv->cfg.lookup_index_slots, LIDX_NS_MAX, srv->epoch, &srv->lidx);
    if (rc) {
        VKV_WARN("lookup index segment unavailable (%s): LOOKUP is a round trip", vkv_strerror(rc));
        srv->lidx = NULL;
        return;
    }
    vkvs_set_observer(srv->st, lidx_observe, srv);
    /* a remote tier answers past the local prefix: misses go to the daemon */
    vkvs_shmidx_set_askmiss(srv->lidx, srv->cfg.remote[0] != '\0');
    vkvs_shmidx_set_open(srv->lidx, true);
    vkvs_shmidx_stats s;
    vkvs_shmidx_stats_get(srv->lidx, &s);
    VKV_INFO("lookup index segment: %llu slots, %llu KiB", (unsigned long long)s.nslots,
             (unsigned long long)(s.seg_bytes >> 10));
}

void vkvd_lookup_index_stop(vkvd_server *srv)
{
    vkvs_shmidx_set_open(srv->lidx, false);
}

void vkvd_lookup_index_close(vkvd_server *srv)
{
    if (srv->st)
        vkvs_set_observer(srv->st, NULL, NULL);
    vkvs_shmidx_close(srv->lidx);
    srv->lidx = NULL;
}
