/* A real Redis Cluster on loopback for tests; see redis_cluster.h. */
#include "redis_cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Milliseconds on the monotonic clock. */
static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps ms milliseconds. */
static void nap(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* True if TCP port p on 127.0.0.1 can be bound now. */
static bool port_free(int p)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = bind(s, (struct sockaddr *)&a, sizeof a) == 0;
    close(s);
    return ok;
}

/* True if `prog` is an executable on PATH. */
static bool on_path(const char *prog)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
    return system(cmd) == 0;
}

/* Forks redis-server for master i. Returns 0 or -1. */
static int spawn(vkvt_redis *rc, int i)
{
    char port[16], conf[256], dir[160], log[256], cmdline[1024];
    snprintf(port, sizeof port, "%d", rc->port[i]);
    snprintf(dir, sizeof dir, "%s/%d", rc->dir, rc->port[i]);
    mkdir(dir, 0700);
    snprintf(conf, sizeof conf, "%s/nodes.conf", dir);
    snprintf(log, sizeof log, "%s/redis.log", dir);
    snprintf(cmdline, sizeof cmdline, "%s", rc->extra);
    const char *argv[64] = {"redis-server",
                            "--port",
                            port,
                            "--bind",
                            "127.0.0.1",
                            "--cluster-enabled",
                            "yes",
                            "--cluster-config-file",
                            conf,
                            "--cluster-node-timeout",
                            "2000",
                            "--cluster-require-full-coverage",
                            "no",
                            "--dir",
                            dir,
                            "--save",
                            "",
                            "--appendonly",
                            "no",
                            "--protected-mode",
                            "no",
                            "--logfile",
                            log,
                            "--daemonize",
                            "no"};
    int argc = 25;
    for (char *tok = strtok(cmdline, " "); tok && argc < 62; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    argv[argc] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
        }
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    rc->pid[i] = pid;
    /* Wait until it answers PING. */
    for (long long t0 = mono_ms(); mono_ms() - t0 < 5000; nap(20)) {
        redisContext *c = vkvt_redis_conn(rc, i);
        if (c) {
            redisReply *r = redisCommand(c, "PING");
            bool ok = r && r->type == REDIS_REPLY_STATUS;
            if (r)
                freeReplyObject(r);
            redisFree(c);
            if (ok)
                return 0;
        }
    }
    fprintf(stderr, "redis-server on port %d did not start (see %s)\n", rc->port[i], log);
    return -1;
}

redisContext *vkvt_redis_conn(const vkvt_redis *rc, int i)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", rc->port[i], tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

redisReply *vkvt_redis_cmd(const vkvt_redis *rc, int i, const char *fmt, ...)
{
    redisContext *c = vkvt_redis_conn(rc, i);
    if (!c)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

/* Number of slots master i's CLUSTER SLOTS says are served, or -1. */
static int slots_known(const vkvt_redis *rc, int i)
{
    redisReply *r = vkvt_redis_cmd(rc, i, "CLUSTER SLOTS");
    if (!r)
        return -1;
    int n = 0;
    if (r->type == REDIS_REPLY_ARRAY)
        for (size_t k = 0; k < r->elements; k++)
            n += (int)(r->element[k]->element[1]->integer - r->element[k]->element[0]->integer + 1);
    freeReplyObject(r);
    return n;
}

int vkvt_redis_wait_ok(vkvt_redis *rc, int timeout_ms)
{
    for (long long t0 = mono_ms(); mono_ms() - t0 < timeout_ms; nap(50)) {
        bool all = true;
        for (int i = 0; i < rc->n && all; i++) {
            if (rc->pid[i] <= 0)
                continue;
            redisReply *r = vkvt_redis_cmd(rc, i, "CLUSTER INFO");
            all = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok") &&
                  slots_known(rc, i) == 16384;
            if (r)
                freeReplyObject(r);
        }
        if (all)
            return 0;
    }
    fprintf(stderr, "redis cluster in %s not ok after %d ms\n", rc->dir, timeout_ms);
    return -1;
}

int vkvt_redis_start_bare(vkvt_redis *rc, int n, const char *extra)
{
    memset(rc, 0, sizeof *rc);
    if (!on_path("redis-server") || !on_path("redis-cli")) {
        fprintf(stderr, "redis-server/redis-cli not installed: skipping\n");
        return 77;
    }
    if (n < 3 || n > VKVT_REDIS_MAX)
        return -1;
    rc->n = n;
    snprintf(rc->extra, sizeof rc->extra, "%s", extra ? extra : "");
    snprintf(rc->dir, sizeof rc->dir, "/tmp/vkv-redis-XXXXXX");
    if (!mkdtemp(rc->dir))
        return -1;
    /* Ports p and p + 10000 (the cluster bus) must both be free. */
    srand((unsigned)(getpid() ^ mono_ms()));
    int base = 20000 + rand() % 9000, found = 0;
    for (int p = base; p < 30000 && found < n; p++)
        if (port_free(p) && port_free(p + 10000))
            rc->port[found++] = p;
    if (found < n)
        return -1;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (spawn(rc, i) != 0) {
            vkvt_redis_stop(rc);
            return -1;
        }
        off += (size_t)snprintf(rc->nodes + off, sizeof rc->nodes - off, "%s127.0.0.1:%d",
                                i ? "," : "", rc->port[i]);
    }
    return 0;
}

int vkvt_redis_create(vkvt_redis *rc)
{
    char cmd[512];
    int n = rc->n;
    size_t off = (size_t)snprintf(cmd, sizeof cmd, "redis-cli --cluster create");
    for (int i = 0; i < n; i++)
        off += (size_t)snprintf(cmd + off, sizeof cmd - off, " 127.0.0.1:%d", rc->port[i]);
    snprintf(cmd + off, sizeof cmd - off, " --cluster-yes >%s/create.log 2>&1", rc->dir);
    if (system(cmd) != 0 || vkvt_redis_wait_ok(rc, 15000) != 0) {
        fprintf(stderr, "redis-cli --cluster create failed (see %s/create.log)\n", rc->dir);
        vkvt_redis_stop(rc);
        return -1;
    }
    return 0;
}

int vkvt_redis_start(vkvt_redis *rc, int n, const char *extra)
{
    int rc0 = vkvt_redis_start_bare(rc, n, extra);
    return rc0 != 0 ? rc0 : vkvt_redis_create(rc);
}

int vkvt_redis_signal(vkvt_redis *rc, int i, int sig)
{
    if (i < 0 || i >= rc->n || rc->pid[i] <= 0 || kill(rc->pid[i], sig) != 0)
        return -1;
    if (sig == SIGKILL) {
        waitpid(rc->pid[i], NULL, 0);
        rc->pid[i] = 0;
    }
    return 0;
}

int vkvt_redis_restart(vkvt_redis *rc, int i)
{
    if (rc->pid[i] > 0)
        vkvt_redis_signal(rc, i, SIGKILL);
    if (spawn(rc, i) != 0)
        return -1;
    return vkvt_redis_wait_ok(rc, 15000);
}

int vkvt_redis_owner(const vkvt_redis *rc, int slot)
{
    for (int i = 0; i < rc->n; i++) {
        if (rc->pid[i] <= 0)
            continue;
        redisReply *r = vkvt_redis_cmd(rc, i, "CLUSTER SLOTS");
        if (!r)
            continue;
        int owner = -1;
        for (size_t k = 0; r->type == REDIS_REPLY_ARRAY && k < r->elements; k++) {
            redisReply *e = r->element[k];
            if (slot >= e->element[0]->integer && slot <= e->element[1]->integer)
                for (int j = 0; j < rc->n; j++)
                    if (rc->port[j] == (int)e->element[2]->element[1]->integer)
                        owner = j;
        }
        freeReplyObject(r);
        return owner;
    }
    return -1;
}

void vkvt_redis_stop(vkvt_redis *rc)
{
    for (int i = 0; i < rc->n; i++) {
        if (rc->pid[i] > 0) {
            kill(rc->pid[i], SIGCONT);
            kill(rc->pid[i], SIGKILL);
            waitpid(rc->pid[i], NULL, 0);
            rc->pid[i] = 0;
        }
    }
    if (rc->dir[0]) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", rc->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", rc->dir);
        rc->dir[0] = '\0';
    }
}
