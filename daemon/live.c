/* daemon/live.c - the sessions the fd channel may serve (server_int.h). The
 * loop writes the set; the fd channel's thread reads it and records the
 * kernel's pid of each peer; both under srv->live_mu. */
#include <inttypes.h>
#include <stdlib.h>

#include "common/log.h"
#include "daemon/server_int.h"

/* Adds `sid` to the set the fd channel checks (best effort on ENOMEM). */
void vkvd_live_add(vkvd_server *srv, uint64_t sid)
{
    pthread_mutex_lock(&srv->live_mu);
    if (srv->nlive == srv->caplive) {
        size_t cap = srv->caplive ? 2 * srv->caplive : 64;
        struct live_sess *n = realloc(srv->live, cap * sizeof *n);
        if (n) {
            srv->live = n;
            srv->caplive = cap;
        }
    }
    if (srv->nlive < srv->caplive)
        srv->live[srv->nlive++] = (struct live_sess){sid, 0, false};
    pthread_mutex_unlock(&srv->live_mu);
}

/* Drops ids of sessions the store no longer knows (after reaping). */
void vkvd_live_prune(vkvd_server *srv)
{
    pthread_mutex_lock(&srv->live_mu);
    size_t k = 0;
    for (size_t i = 0; i < srv->nlive; i++) {
        uint32_t ns_id;
        const char *ns;
        if (vkvs_session_ns(srv->st, srv->live[i].sid, &ns_id, &ns) == 0)
            srv->live[k++] = srv->live[i];
    }
    srv->nlive = k;
    pthread_mutex_unlock(&srv->live_mu);
}

/* fd channel check (its own thread): is `sid` a live session? Records the
 * kernel's pid for it, bound in the store by vkvd_live_bind on the loop. */
int vkvd_live_check(void *arg, uint64_t sid, pid_t pid)
{
    vkvd_server *srv = arg;
    int ok = 0;
    pthread_mutex_lock(&srv->live_mu);
    for (size_t i = 0; i < srv->nlive && !ok; i++) {
        if (srv->live[i].sid != sid)
            continue;
        ok = 1;
        if (pid > 0 && srv->live[i].pid != pid) {
            srv->live[i].pid = pid;
            srv->live[i].applied = false;
        }
    }
    pthread_mutex_unlock(&srv->live_mu);
    return ok;
}

/* Loop thread: binds the pids the fd channel saw to their sessions, so the
 * reaper checks the process the kernel names, not the one a client reports
 * (which means nothing across pid namespaces). */
void vkvd_live_bind(vkvd_server *srv)
{
    pthread_mutex_lock(&srv->live_mu);
    for (size_t i = 0; i < srv->nlive; i++) {
        if (srv->live[i].pid <= 0 || srv->live[i].applied)
            continue;
        srv->live[i].applied = true;
        if (vkvs_session_bind_pid(srv->st, srv->live[i].sid, srv->live[i].pid) == 0)
            VKV_DEBUG("session %016" PRIx64 " bound to pid %d", srv->live[i].sid,
                      (int)srv->live[i].pid);
    }
    pthread_mutex_unlock(&srv->live_mu);
}
