/*
 * daemon/server.h - vkvd's request loop.
 *
 * One event-loop thread owns the store (index, arena, sessions). It polls the
 * nanomsg raw REP socket (raw so a reply can be deferred and sent later,
 * addressed by the request's routing header), a signalfd (SIGTERM/SIGINT), a
 * timerfd (lease/session reaping, cold-tier syncs) and the cold tier's
 * completion eventfd. The fd side channel runs on its own thread.
 */
#ifndef VKVD_SERVER_H
#define VKVD_SERVER_H

#include "daemon/config.h"

typedef struct vkvd_server vkvd_server;

/* Creates the runtime directory (0700, refusing one another user owns or
 * that others can enter), takes its lock file (one daemon per directory),
 * opens the store, the cold tier (if configured; failure only disables it),
 * binds the sockets and blocks SIGTERM/SIGINT for the signalfd. `cfg` is
 * copied. Returns 0 or a negative VKV_E* code after logging why. */
int vkvd_server_open(const vkvd_config *cfg, vkvd_server **out);

/* Serves until SIGTERM/SIGINT (or vkvd_server_stop), then shuts down
 * gracefully: stops accepting, answers deferred requests, spills hot entries
 * if configured, syncs. Returns 0 on a clean shutdown, else a negative
 * VKV_E* code (poll failed, or the final cold-tier sync failed). */
int vkvd_server_run(vkvd_server *srv);

/* Releases everything vkvd_server_open acquired; removes the sockets. */
void vkvd_server_close(vkvd_server *srv);

#endif
