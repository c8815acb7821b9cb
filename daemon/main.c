/*
 * vkvd - the vkv cache daemon. See README.md and docs/ARCHITECTURE.md.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/config.h"
#include "common/log.h"
#include "common/sched.h"
#include "store/backend.h"
#include "daemon/server.h"

/* Logs the one start-up line an operator looks for: backend, capacity,
 * directories, cold-tier bound and metrics address, as configured (the
 * server logs separately when the cold tier or the metrics endpoint could
 * not be opened). */
static void log_startup(const vkvd_config *cfg)
{
    char cold[64], metrics[64];
    if (cfg->cold_max)
        snprintf(cold, sizeof cold, "%llu MiB", (unsigned long long)(cfg->cold_max >> 20));
    else
        snprintf(cold, sizeof cold, "off");
    if (cfg->metrics_port > 0)
        snprintf(metrics, sizeof metrics, "http://127.0.0.1:%d/metrics", cfg->metrics_port);
    else
        snprintf(metrics, sizeof metrics, "off");
    VKV_INFO("started: backend %s, capacity %llu MiB, rundir %s, state dir %s, cold bound %s, "
             "metrics %s",
             cfg->backend, (unsigned long long)(cfg->capacity >> 20), cfg->rundir, cfg->state_dir,
             cold, metrics);
}

int main(int argc, char **argv)
{
    vkvd_config cfg;
    vkv_log_init("vkvd", -1);
    int rc = vkvd_config_from_args(&cfg, argc, argv);
    if (rc != 0)
        return rc == VKVD_CONFIG_DONE ? 0 : 2;
    vkv_log_set_level(cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    /* Under a file-size limit (RLIMIT_FSIZE) a cold-tier write past it must
     * fail with EFBIG (the spill fails, the block stays hot), not kill us. */
    signal(SIGXFSZ, SIG_IGN);
    /* Block the shutdown signals before any thread exists (nanomsg, the fd
     * channel and the cold tier start threads), so only the event loop's
     * signalfd ever receives them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    /* The same moment for the CPU slice: the event loop and the threads
     * nanomsg and the fd channel start inherit it; the cold tier's threads
     * set their own (serve-slice-us, docs/CONFIG.md). */
    if (cfg.serve_slice_us && vkv_sched_lower_self(VKV_SCHED_NORMAL, -20, cfg.serve_slice_us))
        VKV_WARN("serve-slice-us %u not applied: %s", cfg.serve_slice_us, strerror(errno));

    /* Resolve --backend auto here, as vkvd_server_open would (cuda when a
     * device is usable), so the start-up line names the backend in use. */
    if (!strcmp(cfg.backend, "auto")) {
        const vkvs_backend *be;
        void *arg;
        char why[128];
        if (vkvs_backend_find("auto", &be, &arg, why, sizeof why) == 0)
            snprintf(cfg.backend, sizeof cfg.backend, "%s", be->name);
    }
    vkvd_server *srv = NULL;
    if (vkvd_server_open(&cfg, &srv) != 0)
        return 1;
    log_startup(&cfg);
    rc = vkvd_server_run(srv);
    vkvd_server_close(srv);
    return rc == 0 ? 0 : 1;
}
