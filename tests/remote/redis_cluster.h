/*
 * tests/remote/redis_cluster.h - a real Redis Cluster for tests: N masters
 * (no replicas) on loopback ports in a private temp directory.
 *
 * vkvt_redis_start forks one `redis-server --cluster-enabled yes` per
 * master (each dies with the test process: PR_SET_PDEATHSIG), joins them
 * with `redis-cli --cluster create --cluster-yes`, and waits until every
 * node reports cluster_state:ok and knows all 16384 slots. Nodes run with
 * cluster-require-full-coverage no, so a killed master makes only its own
 * slots fail. Takes about 1-2 s. Needs redis-server and redis-cli on PATH:
 * vkvt_redis_start returns 77 (the skip code) when they are missing.
 */
#ifndef VKV_TESTS_REDIS_CLUSTER_H
#define VKV_TESTS_REDIS_CLUSTER_H

#include <hiredis/hiredis.h>
#include <sys/types.h>

#define VKVT_REDIS_MAX 6

typedef struct vkvt_redis {
    char dir[128];
    int n;
    int port[VKVT_REDIS_MAX];
    pid_t pid[VKVT_REDIS_MAX];
    char nodes[256]; /* "127.0.0.1:p1,127.0.0.1:p2,..." */
    char extra[256]; /* extra redis-server arguments, space separated */
} vkvt_redis;

/* Starts an n-master cluster (n 3..6). `extra` (may be NULL) is appended to
 * every redis-server command line ("--maxmemory 64mb"). Returns 0, 77 when
 * redis is not installed, or -1 (logged to stderr). */
int vkvt_redis_start(vkvt_redis *rc, int n, const char *extra);

/* vkvt_redis_start in two steps: start_bare starts the n masters (each
 * knows only itself; no slot is assigned: CLUSTER SLOTS is empty; same
 * returns), create joins them and assigns the slots as start does (0 or -1;
 * on failure the masters are stopped). */
int vkvt_redis_start_bare(vkvt_redis *rc, int n, const char *extra);
int vkvt_redis_create(vkvt_redis *rc);

/* Sends `sig` to master i (SIGKILL/SIGSTOP/SIGCONT); after SIGKILL it is
 * reaped. Returns 0 or -1. */
int vkvt_redis_signal(vkvt_redis *rc, int i, int sig);

/* Restarts master i (after SIGKILL) on its port with its nodes.conf, so it
 * rejoins with its slots (empty: no persistence), and waits until the whole
 * cluster is ok again. Returns 0 or -1. */
int vkvt_redis_restart(vkvt_redis *rc, int i);

/* Waits (up to timeout_ms) until every live master says cluster_state:ok
 * and sees every slot served. Returns 0 or -1. */
int vkvt_redis_wait_ok(vkvt_redis *rc, int timeout_ms);

/* A new connection to master i (caller redisFree()s), or NULL. */
redisContext *vkvt_redis_conn(const vkvt_redis *rc, int i);

/* Index of the master serving `slot`, or -1. */
int vkvt_redis_owner(const vkvt_redis *rc, int slot);

/* Runs one command on master i (printf-style, hiredis redisCommand) and
 * returns the reply (caller frees) or NULL. */
redisReply *vkvt_redis_cmd(const vkvt_redis *rc, int i, const char *fmt, ...);

/* Stops every master (SIGKILL) and removes the directory. */
void vkvt_redis_stop(vkvt_redis *rc);

#endif
