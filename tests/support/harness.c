/* Real-daemon helpers for the integration tests; see harness.h. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void vkvt_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int vkvt_prepare(vkvt_daemon *d)
{
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "/tmp/vkvt-XXXXXX");
    if (!mkdtemp(d->dir))
        return -1;
    snprintf(d->rundir, sizeof d->rundir, "%s/run", d->dir);
    snprintf(d->statedir, sizeof d->statedir, "%s/state", d->dir);
    snprintf(d->logpath, sizeof d->logpath, "%s/vkvd.log", d->dir);
    return 0;
}

/* Daemons started and not yet stopped: killed at exit, so a failing test
 * (cmocka failure, CHECK's exit) never leaves a vkvd holding ctest's pipes. */
static pid_t g_live[64];

/* atexit handler: SIGKILL every daemon still running. */
static void kill_leftovers(void)
{
    for (size_t i = 0; i < sizeof g_live / sizeof g_live[0]; i++) {
        /* Only a child that is still ours and unreaped (a test may have
         * reaped it itself; then the pid may belong to someone else). */
        if (g_live[i] > 0 && waitpid(g_live[i], NULL, WNOHANG) == 0) {
            kill(g_live[i], SIGKILL);
            waitpid(g_live[i], NULL, 0);
        }
        g_live[i] = 0;
    }
}

/* Adds (add != 0) or removes a pid from the leftovers table. */
static void track(pid_t pid, int add)
{
    static int registered;
    if (!registered) {
        atexit(kill_leftovers);
        registered = 1;
    }
    for (size_t i = 0; i < sizeof g_live / sizeof g_live[0]; i++) {
        if (add && g_live[i] == 0) {
            g_live[i] = pid;
            return;
        }
        if (!add && g_live[i] == pid) {
            g_live[i] = 0;
            return;
        }
    }
}

int vkvt_start(vkvt_daemon *d, const char *const *extra)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = VKVD_PATH;
    argv[n++] = "--rundir";
    argv[n++] = d->rundir;
    argv[n++] = "--state-dir";
    argv[n++] = d->statedir;
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(d->logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        /* the daemon sets up its own signal dispositions, as when a shell
         * starts it: nothing ignored here carries over */
        signal(SIGXFSZ, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        execv(VKVD_PATH, (char *const *)argv);
        _exit(127);
    }
    d->pid = pid;
    track(pid, 1);
    for (int i = 0; i < 1000; i++) {
        vkv_client *c = NULL;
        vkv_options o = {0};
        o.rundir = d->rundir;
        o.admin = 1;
        o.timeout_ms = 500;
        if (vkv_connect(&o, &c) == 0) {
            int rc = vkv_ping(c);
            vkv_close(c);
            if (rc == 0)
                return 0;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            track(pid, 0);
            d->pid = 0;
            return -1;
        }
        vkvt_sleep_ms(10);
    }
    return -1;
}

int vkvt_stop(vkvt_daemon *d, int sig)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, sig);
    int st = 0;
    if (waitpid(d->pid, &st, 0) != d->pid)
        return -1;
    track(d->pid, 0);
    d->pid = 0;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    return 128 + WTERMSIG(st);
}

void vkvt_cleanup(vkvt_daemon *d)
{
    if (d->pid > 0)
        vkvt_stop(d, SIGKILL);
    if (d->dir[0]) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", d->dir);
        int rc = system(cmd);
        (void)rc;
    }
}

int vkvt_connect(const vkvt_daemon *d, const char *ns, vkv_client **out)
{
    vkv_options o = {0};
    o.rundir = d->rundir;
    o.ns = ns;
    o.timeout_ms = 5000;
    return vkv_connect(&o, out);
}

/* splitmix64 step: deterministic test data. */
static uint64_t mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* fp32 -> fp16 bits (round to nearest even; test data is in normal range). */
static uint16_t to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    int32_t e = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t m = x & 0x7fffffu;
    if (e <= 0)
        return (uint16_t)sign;
    if (e >= 31)
        return (uint16_t)(sign | 0x7bffu);
    uint32_t h = sign | ((uint32_t)e << 10) | (m >> 13);
    uint32_t rest = m & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++;
    return (uint16_t)h;
}

void vkvt_chunk_make(const vkv_shape *s, uint64_t seed, uint16_t ***k, uint16_t ***v)
{
    size_t n = (size_t)s->tokens * s->kv_heads * s->head_dim;
    *k = calloc(s->layers, sizeof **k);
    *v = calloc(s->layers, sizeof **v);
    uint64_t st = seed * 0x2545f4914f6cdd1dull + 1;
    for (uint32_t l = 0; l < s->layers; l++) {
        (*k)[l] = malloc(n * 2);
        (*v)[l] = malloc(n * 2);
        for (size_t i = 0; i < n; i++) {
            size_t d = i % s->head_dim;
            float chan = (float)((d * 2654435761u) % 97) / 24.0f - 2.0f; /* per-channel offset */
            float a = (float)(mix(&st) >> 11) / 9007199254740992.0f - 0.5f;
            float b = (float)(mix(&st) >> 11) / 9007199254740992.0f - 0.5f;
            (*k)[l][i] = to_f16(chan + 2.0f * a);
            (*v)[l][i] = to_f16(1.5f * b);
        }
    }
}

void vkvt_chunk_free(const vkv_shape *s, uint16_t **k, uint16_t **v)
{
    for (uint32_t l = 0; l < s->layers; l++) {
        free(k[l]);
        free(v[l]);
    }
    free(k);
    free(v);
}

void *vkvt_encode_local(const vkv_shape *s, const vkv_codec_spec *spec, uint64_t seed, size_t *size)
{
    uint16_t **k, **v;
    if (vkv_codec_encoded_size(s, spec, size) != 0)
        return NULL;
    void *blk = malloc(*size);
    vkvt_chunk_make(s, seed, &k, &v);
    vkv_kv_src src = {(const void *const *)k, (const void *const *)v,
                      (size_t)s->kv_heads * s->head_dim, s->head_dim};
    int rc = vkv_encode(s, spec, &src, blk, *size);
    vkvt_chunk_free(s, k, v);
    if (rc) {
        free(blk);
        return NULL;
    }
    return blk;
}

vkv_key vkvt_key(uint64_t seed, uint32_t index)
{
    vkv_key k;
    uint64_t st = seed ^ ((uint64_t)index << 40);
    for (int i = 0; i < 4; i++) {
        uint64_t x = mix(&st);
        memcpy(k.b + 8 * i, &x, 8);
    }
    return k;
}

uint64_t vkvt_stat(vkv_client *c, const char *name)
{
    vkv_stat st[128];
    size_t n = 0;
    if (vkv_stats(c, st, 128, &n) != 0)
        return UINT64_MAX;
    return vkv_stat_get(st, n < 128 ? n : 128, name);
}

vkv_shape vkvt_small_shape(uint32_t vis_start, uint32_t vis_len)
{
    vkv_shape s;
    memset(&s, 0, sizeof s);
    s.layers = 4;
    s.kv_heads = 2;
    s.head_dim = 64;
    s.tokens = 64;
    s.dtype = VKV_DTYPE_F16;
    s.n_ranges = 1;
    s.ranges[0].start = vis_start;
    s.ranges[0].len = vis_len;
    return s;
}

int vkvt_put_range(vkv_client *c, const vkv_shape *s, uint64_t seed, int from, int to)
{
    for (int i = from; i < to; i++) {
        uint16_t **k, **v;
        vkvt_chunk_make(s, seed + (uint64_t)i, &k, &v);
        vkv_kv_src src = {(const void *const *)k, (const void *const *)v,
                          (size_t)s->kv_heads * s->head_dim, s->head_dim};
        vkv_key key = vkvt_key(seed, (uint32_t)i);
        int rc = vkv_put_chunk(c, &key, s, &src, NULL);
        vkvt_chunk_free(s, k, v);
        if (rc)
            return rc;
    }
    return 0;
}

int vkvt_bind_like(const vkv_fetch *f, size_t i, void *ref, size_t size)
{
    uint8_t id[VKV_IDENT_LEN];
    int rc = vkv_fetch_ident(f, i, id);
    return rc ? rc : vkv_block_bind(ref, size, id);
}

int vkvt_check_one(vkv_client *c, const vkv_shape *s, uint64_t seed, int i)
{
    vkv_key key = vkvt_key(seed, (uint32_t)i);
    vkv_fetch *f;
    if (vkv_fetch_begin(c, &key, 1, &f) != 0)
        return -2;
    int res = 0;
    if (vkv_fetch_count(f) == 1) {
        size_t sz;
        void *ref = vkvt_encode_local(s, vkv_client_codec(c), seed + (uint64_t)i, &sz);
        vkv_view v = vkv_fetch_view(f, 0);
        res = (ref && vkvt_bind_like(f, 0, ref, sz) == 0 && v.size == sz &&
               memcmp(v.data, ref, sz) == 0)
                  ? 1
                  : -1;
        free(ref);
    }
    vkv_fetch_release(c, f);
    return res;
}

long vkvt_proc_kb(pid_t pid, const char *field)
{
    char p[64], line[256];
    size_t fl = strlen(field);
    snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
    FILE *f = fopen(p, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, fl) == 0 && line[fl] == ':' &&
            sscanf(line + fl + 1, " %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}
