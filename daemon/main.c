/*
 * vkvd - the vkv cache daemon. See README.md and docs/ARCHITECTURE.md.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "log.h"
#include "server.h"

int main(int argc, char **argv)
{
    vkvd_config cfg;
    vkv_log_init("vkvd", -1);
    int rc = vkvd_config_from_args(&cfg, argc, argv);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    vkv_log_set_level(cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    /* Block the shutdown signals before any thread exists (nanomsg, the fd
     * channel and the cold tier start threads), so only the event loop's
     * signalfd ever receives them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    vkvd_server *srv = NULL;
    if (vkvd_server_open(&cfg, &srv) != 0)
        return 1;
    rc = vkvd_server_run(srv);
    vkvd_server_close(srv);
    return rc == 0 ? 0 : 1;
}
